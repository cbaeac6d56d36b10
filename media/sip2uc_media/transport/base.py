"""What the transports hand to the SIP core: the bytes of one message and where they came from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sip2uc_core.sip.endpoint import Endpoint, Transport

__all__ = ["MessageSink", "Source", "Transport"]


@dataclass(frozen=True, slots=True, eq=False)
class Source:
    """The packet's or connection's source and a way back.

    `endpoint` is the NAT's public side (RFC 3581) with, on TCP and TLS, the connection the
    message arrived on. `send` reaches the handset the same way the request came: the UDP socket
    it hit, or that very connection (RFC 3261 §18.2.2); it returns False if that path is gone.
    """

    endpoint: Endpoint
    send: Callable[[bytes], bool]
    local_host: str = ""
    local_port: int = 0

    @property
    def transport(self) -> Transport:
        return self.endpoint.transport

    @property
    def host(self) -> str:
        return self.endpoint.host

    @property
    def port(self) -> int:
        return self.endpoint.port


class MessageSink(Protocol):
    """The SIP core's entry point; must never raise."""

    def __call__(self, data: bytes, source: Source) -> None: ...


def host_of(addr: tuple[object, ...]) -> tuple[str, int]:
    host, port = addr[0], addr[1]
    assert isinstance(host, str) and isinstance(port, int)
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, port
