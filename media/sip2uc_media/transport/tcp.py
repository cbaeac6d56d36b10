"""SIP over TCP and TLS (RFC 3261 §18.3): thin asyncio stream adapters around `StreamFramer`.

Each connection frames by Content-Length, answers RFC 5626 §4.4.1 double-CRLF pings with a single
CRLF, is closed after a framing error (a stream cannot be resynchronised), and is closed when idle.
A message must also arrive whole within `message_timeout` of its first byte (a new connection's
first message within as long of the connection opening): a peer that trickles a header a byte
at a time (slowloris) would otherwise hold its connection, refreshed by every byte, for ever.
The server caps the number of connections and remembers them by peer address, so that requests
to a handset later reuse the connection it registered over (handsets behind NAT accept nothing
else).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
from collections.abc import Callable
from typing import cast

from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.sip.errors import SipParseError
from sip2uc_core.sip.framing import PONG, KeepAlive, StreamFramer

from .base import MessageSink, Source, host_of

__all__ = ["StreamConnection", "StreamServer", "open_stream_server"]

_log = logging.getLogger(__name__)
_ids = itertools.count(1)

#: A peer that does not read what we send (pings answered, responses) is cut off rather than
#: allowed to grow our write buffer without bound.
MAX_WRITE_BUFFER = 1 << 20
#: Connections one address may hold: a DECT base or gateway uses a few; one host must not be able
#: to take every slot of the server for the idle timeout.
MAX_CONNECTIONS_PER_HOST = 64


class StreamConnection(asyncio.Protocol):
    """One accepted TCP or TLS connection."""

    def __init__(
        self,
        kind: Transport,
        sink: MessageSink,
        *,
        max_message_size: int,
        clock: Callable[[], float],
        on_close: Callable[[StreamConnection], None] = lambda _c: None,
        on_framing_error: Callable[[SipParseError], None] = lambda _e: None,
    ) -> None:
        self.kind = kind
        self.id = next(_ids)
        self._sink = sink
        self._framer = StreamFramer(max_size=max_message_size)
        self._clock = clock
        self._on_close = on_close
        self._on_framing_error = on_framing_error
        self._transport: asyncio.Transport | None = None
        self.source: Source | None = None
        self.last_activity = clock()
        #: Since when a message has been awaited: from the opening until the first message,
        #: then from the first byte of each message until its last; None between messages.
        self.pending_since: float | None = self.last_activity
        self.pings = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        host, port = host_of(transport.get_extra_info("peername"))
        local = transport.get_extra_info("sockname")
        local_host, local_port = host_of(local) if local else ("", 0)
        self.source = Source(
            Endpoint(self.kind, host, port, self.id),
            self.write,
            local_host=local_host,
            local_port=local_port,
        )
        self.last_activity = self.pending_since = self._clock()

    def data_received(self, data: bytes) -> None:
        now = self.last_activity = self._clock()
        try:
            items = self._framer.feed(data)
        except SipParseError as exc:
            # RFC 3261 §18.3: without a trustworthy Content-Length the rest of the stream is noise.
            self._on_framing_error(exc)
            self.close()
            return
        source = self.source
        assert source is not None
        whole = False
        for item in items:
            if isinstance(item, KeepAlive):
                if item.ping:
                    self.pings += 1
                    self.write(PONG)
                continue
            whole = True
            self._sink(item, source)
        if whole:
            # What is left over started in this chunk.
            self.pending_since = now if self._framer.buffered else None
        elif self.pending_since is None and self._framer.buffered:
            self.pending_since = now

    def overdue(self, now: float, timeout: float) -> bool:
        """Whether the message awaited has taken longer than `timeout` to arrive whole."""
        return self.pending_since is not None and now - self.pending_since > timeout

    def write(self, data: bytes) -> bool:
        transport = self._transport
        if transport is None or transport.is_closing():
            return False
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            _log.warning(
                "closing %s connection from %s: peer does not read", self.kind.via_name, self.source
            )
            transport.abort()
            return False
        transport.write(data)
        return True

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._on_close(self)

    def eof_received(self) -> bool | None:
        return None


class StreamServer:
    """Accepts connections of one kind (TCP or TLS), caps and ages them."""

    def __init__(
        self,
        kind: Transport,
        sink: MessageSink,
        *,
        max_message_size: int,
        max_connections: int,
        idle_timeout: float,
        clock: Callable[[], float],
        on_framing_error: Callable[[SipParseError], None] = lambda _e: None,
        message_timeout: float = 20.0,
    ) -> None:
        self.kind = kind
        self._sink = sink
        self._max_message_size = max_message_size
        self._max_connections = max_connections
        self._idle_timeout = idle_timeout
        self._message_timeout = message_timeout
        self._clock = clock
        self._on_framing_error = on_framing_error
        self.connections: dict[int, StreamConnection] = {}
        self._per_host: dict[str, int] = {}
        self._by_peer: dict[tuple[str, int], StreamConnection] = {}
        self._server: asyncio.Server | None = None
        self._reaper: asyncio.TimerHandle | None = None
        self.local_host = ""
        self.local_port = 0
        self.refused = 0
        #: Connections closed because a message did not arrive whole in time.
        self.timed_out = 0

    def _make(self) -> StreamConnection:
        return _CappedConnection(self)

    def _opened(self, connection: StreamConnection) -> bool:
        source = connection.source
        host = source.host if source is not None else ""
        if (
            len(self.connections) >= self._max_connections
            or self._per_host.get(host, 0) >= MAX_CONNECTIONS_PER_HOST
        ):
            self.refused += 1
            return False
        self.connections[connection.id] = connection
        self._per_host[host] = self._per_host.get(host, 0) + 1
        if source is not None:
            self._by_peer[(source.host, source.port)] = connection
        return True

    def _closed(self, connection: StreamConnection) -> None:
        if self.connections.pop(connection.id, None) is not None:
            host = connection.source.host if connection.source is not None else ""
            left = self._per_host.get(host, 1) - 1
            if left > 0:
                self._per_host[host] = left
            else:
                self._per_host.pop(host, None)
        source = connection.source
        if source is not None and self._by_peer.get((source.host, source.port)) is connection:
            del self._by_peer[(source.host, source.port)]

    async def connect(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
    ) -> StreamConnection:
        """Open a connection to host:port ourselves (a trunk); it is served like an accepted one."""
        loop = asyncio.get_running_loop()
        _transport, connection = await loop.create_connection(
            self._make,
            host,
            port,
            ssl=ssl_context,
            server_hostname=server_hostname if ssl_context is not None else None,
        )
        if connection.id not in self.connections:
            raise ConnectionRefusedError("connection limit reached")
        return connection

    def find(self, host: str, port: int) -> StreamConnection | None:
        """The live connection from this peer address, if any."""
        return self._by_peer.get((host, port))

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._make, host, port, ssl=ssl_context, reuse_address=True, backlog=1024
        )
        sockets = self._server.sockets
        if sockets:
            self.local_host, self.local_port = host_of(sockets[0].getsockname())
        _log.info("SIP %s listening on %s:%d", self.kind.via_name, self.local_host, self.local_port)
        self._schedule_reap()

    def start_outbound_only(self) -> None:
        """Serve only the connections we open (`connect`): TLS to a trunk without a TLS
        listener of our own."""
        self._schedule_reap()

    def _schedule_reap(self) -> None:
        loop = asyncio.get_running_loop()
        every = max(0.25, min(self._idle_timeout / 4, self._message_timeout / 4))
        self._reaper = loop.call_later(every, self._reap)

    def _reap(self) -> None:
        self.reap(self._clock())
        self._schedule_reap()

    def reap(self, now: float) -> None:
        """Close the connections idle for `idle_timeout` and those whose message is overdue."""
        idle_since = now - self._idle_timeout
        timeout = self._message_timeout
        for connection in list(self.connections.values()):
            if connection.last_activity < idle_since:
                connection.close()
            elif connection.overdue(now, timeout):
                self.timed_out += 1
                _log.info(
                    "closing %s connection from %s: no whole message within %.0f s",
                    self.kind.via_name,
                    connection.source,
                    timeout,
                )
                connection.close()

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections.values()):
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()


class _CappedConnection(StreamConnection):
    def __init__(self, server: StreamServer) -> None:
        super().__init__(
            server.kind,
            server._sink,
            max_message_size=server._max_message_size,
            clock=server._clock,
            on_close=server._closed,
            on_framing_error=server._on_framing_error,
        )
        self._server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self._server._opened(self):
            transport.close()


async def open_stream_server(
    kind: Transport,
    host: str,
    port: int,
    sink: MessageSink,
    *,
    ssl_context: ssl.SSLContext | None = None,
    max_message_size: int = 65535,
    max_connections: int = 4096,
    idle_timeout: float = 3600.0,
    message_timeout: float = 20.0,
    clock: Callable[[], float],
    on_framing_error: Callable[[SipParseError], None] = lambda _e: None,
) -> StreamServer:
    server = StreamServer(
        kind,
        sink,
        max_message_size=max_message_size,
        max_connections=max_connections,
        idle_timeout=idle_timeout,
        clock=clock,
        on_framing_error=on_framing_error,
        message_timeout=message_timeout,
    )
    await server.start(host, port, ssl_context)
    return server
