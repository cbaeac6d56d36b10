"""sip2uc control plane: users, registrations, presence, routing and settings behind gRPC."""

__version__ = "0.1.0"
