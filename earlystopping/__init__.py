"""Early stopping: the rules, the DB manager client and the Trial-status updater (no gRPC server code)."""
