"""SIP over UDP (RFC 3261 §18): a thin asyncio datagram adapter feeding the SIP core."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import cast

from sip2uc_core.sip.endpoint import Endpoint, Transport

from .base import MessageSink, Source, host_of

__all__ = ["UdpTransport", "open_udp"]

_log = logging.getLogger(__name__)
# A burst of REGISTER refreshes after a power cut must not overflow the kernel buffer.
_SOCKET_BUFFER = 4 * 1024 * 1024


class UdpTransport(asyncio.DatagramProtocol):
    def __init__(self, sink: MessageSink) -> None:
        self._sink = sink
        self._transport: asyncio.DatagramTransport | None = None
        self.local_host = ""
        self.local_port = 0
        self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
            self.local_host, self.local_port = host_of(sock.getsockname())

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        host, port = host_of(addr)
        transport = self._transport
        if transport is None:
            return

        def send(payload: bytes, _addr: tuple[str | object, ...] = addr) -> bool:
            if transport.is_closing():
                return False
            transport.sendto(payload, _addr)
            return True

        self._sink(
            data,
            Source(
                Endpoint(Transport.UDP, host, port),
                send,
                local_host=self.local_host,
                local_port=self.local_port,
            ),
        )

    def send_to(self, data: bytes, host: str, port: int) -> bool:
        if self._transport is None or self._transport.is_closing():
            return False
        self._transport.sendto(data, (host, port))
        return True

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a handset that went away: nothing to do but count it.
        self.errors += 1

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def open_udp(host: str, port: int, sink: MessageSink) -> UdpTransport:
    loop = asyncio.get_running_loop()
    _transport, protocol = await loop.create_datagram_endpoint(
        lambda: UdpTransport(sink), local_addr=(host, port)
    )
    _log.info("SIP UDP listening on %s:%d", protocol.local_host, protocol.local_port)
    return protocol
