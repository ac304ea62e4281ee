"""gRPC services: the wire side of the algorithm core (conversion, servicers, server, CLIs)."""
