"""gRPC servicers: the one place where generated types meet the domain."""
