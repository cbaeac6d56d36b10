"""What the transports hand to the SIP core: the bytes of one message and where they came from."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["MessageSink", "Source", "TransportKind"]


class TransportKind(enum.Enum):
    UDP = "UDP"
    TCP = "TCP"
    TLS = "TLS"

    @property
    def reliable(self) -> bool:
        return self is not TransportKind.UDP

    @property
    def via_name(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, eq=False)
class Source:
    """The packet's or connection's source (the NAT's public side, RFC 3581) and a way back.

    `send` reaches the handset the same way the request came: the UDP socket it hit, or the very
    connection it arrived on (RFC 3261 §18.2.2); it returns False if that path is gone.
    `connection_id` is 0 for UDP.
    """

    transport: TransportKind
    host: str
    port: int
    send: Callable[[bytes], bool]
    connection_id: int = 0
    local_host: str = ""
    local_port: int = 0


class MessageSink(Protocol):
    """The SIP core's entry point; must never raise."""

    def __call__(self, data: bytes, source: Source) -> None: ...


def host_of(addr: tuple[object, ...]) -> tuple[str, int]:
    host, port = addr[0], addr[1]
    assert isinstance(host, str) and isinstance(port, int)
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, port
