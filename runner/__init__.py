"""Local experiment runner: runs Katib experiments on one machine over gRPC."""
