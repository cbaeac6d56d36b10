"""The state view's connection to the admin API, with the client package's rules: TLS unless
the control plane is on loopback (an optional CA file to verify it), the admin token as
`authorization: Bearer` metadata on every call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
from sip2uc.client import is_loopback, join_target, split_target

# Snapshots of a large installation (every user's presence) arrive as one message.
MAX_RECEIVE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ControlTarget:
    address: str  # HOST:PORT of the admin API
    token: str | None = None
    tls: bool | None = None  # None: TLS unless the address is loopback
    ca_file: Path | None = None

    @property
    def normalised(self) -> str:
        host, port = split_target(self.address)
        return join_target(host, port)

    @property
    def uses_tls(self) -> bool:
        return (not is_loopback(self.normalised)) if self.tls is None else self.tls

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


def open_channel(target: ControlTarget) -> grpc.aio.Channel:
    options = [
        ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
        # Watch streams can be idle for long stretches: a keepalive notices a control plane that
        # vanished without closing the connection. Not more often than gRPC servers accept pings
        # on a connection without data by default (every 5 minutes), or the server hangs up.
        ("grpc.keepalive_time_ms", 300_000),
        ("grpc.keepalive_timeout_ms", 20_000),
    ]
    if target.uses_tls:
        roots = target.ca_file.read_bytes() if target.ca_file is not None else None
        credentials = grpc.ssl_channel_credentials(root_certificates=roots)
        return grpc.aio.secure_channel(target.normalised, credentials, options)
    return grpc.aio.insecure_channel(target.normalised, options)
