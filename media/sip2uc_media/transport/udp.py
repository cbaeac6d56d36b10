"""SIP over UDP (RFC 3261 §18): a thin adapter between one socket and the SIP core.

The socket is read by a loop reader callback that drains up to `READS_PER_WAKEUP` datagrams
each time it becomes readable, rather than by an asyncio datagram transport (which reads a
few dozen per loop turn). The sidecar's intake queues what it reads and serves it a time
budget at a time, so the kernel's buffer stays nearly empty and every message waits where
its age is known and the overload policy can see it; a transport that reads only as fast as
the core serves leaves the backlog in the kernel, invisible, for seconds.

Sending is a plain ``sendto``: a datagram the kernel cannot take is dropped and counted, as
the network would drop it (SIP retransmits over UDP, RFC 3261 §17).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket

from sip2uc_core.sip.endpoint import Endpoint, Transport

from .base import MessageSink, Source, host_of

__all__ = ["READS_PER_WAKEUP", "UdpTransport", "open_udp"]

_log = logging.getLogger(__name__)
# A burst of REGISTER refreshes after a power cut must not overflow the kernel buffer.
_SOCKET_BUFFER = 4 * 1024 * 1024
#: Datagrams read per readiness callback before the loop runs anything else.
READS_PER_WAKEUP = 256
_MAX_DATAGRAM = 65535


class UdpTransport:
    def __init__(
        self, sock: socket.socket, sink: MessageSink, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._sock = sock
        self._sink = sink
        self._loop = loop
        self.local_host, self.local_port = host_of(sock.getsockname())
        #: Receive errors (ICMP port unreachable from a handset that went away).
        self.errors = 0
        #: Datagrams the kernel would not take.
        self.send_failures = 0
        self._closed = False
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        recvfrom = self._sock.recvfrom
        sink = self._sink
        reply = self._reply
        local_host, local_port = self.local_host, self.local_port
        for _ in range(READS_PER_WAKEUP):
            try:
                data, addr = recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.errors += 1
                continue
            host, port = host_of(addr)
            sink(
                data,
                Source(
                    Endpoint(Transport.UDP, host, port),
                    functools.partial(reply, addr),
                    local_host=local_host,
                    local_port=local_port,
                ),
            )

    def _reply(self, addr: tuple[str | object, ...], payload: bytes) -> bool:
        if self._closed:
            return False
        try:
            self._sock.sendto(payload, addr)
        except OSError:
            self.send_failures += 1
            return False
        return True

    def send_to(self, data: bytes, host: str, port: int) -> bool:
        return self._reply((host, port), data)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()


async def open_udp(host: str, port: int, sink: MessageSink) -> UdpTransport:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP)
    if not infos:
        raise OSError(f"cannot resolve {host}")
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
        sock.bind(address)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    transport = UdpTransport(sock, sink, loop)
    _log.info("SIP UDP listening on %s:%d", transport.local_host, transport.local_port)
    return transport
