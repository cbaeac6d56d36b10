"""Python SDK and command-line tool for the sip2uc admin API (`sip2uc.v1`)."""

from sip2uc.client import (
    ClientError,
    ErrorDescription,
    Sip2ucClient,
    describe_rpc_error,
    discover_token,
    format_rpc_error,
    is_loopback,
)

__all__ = [
    "ClientError",
    "ErrorDescription",
    "Sip2ucClient",
    "describe_rpc_error",
    "discover_token",
    "format_rpc_error",
    "is_loopback",
]
