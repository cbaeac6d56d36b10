"""The thin asyncio side of the presence agent: one UDP socket or one TCP/TLS connection to the
server, the agent's timer, and its events handed to the bridge.

`AgentDriver.flush` is called after every input to the agent (a datagram, a timer, the bridge's
calls): it writes what the agent queued, passes its events on, and re-arms the timer at the
agent's next deadline. Over TCP/TLS the connection is re-opened with backoff when it drops; the
agent is told (`disconnected` / `connected`) so that what was in flight is retried and
subscriptions move to the new Contact.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import cast

from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.sip.framing import KeepAlive, StreamFramer

from .agent import AgentEvent, PresenceAgent, hostport

__all__ = ["AgentDriver"]

log = logging.getLogger(__name__)

MAX_RECONNECT_DELAY = 30.0


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, driver: AgentDriver) -> None:
        self.driver = driver
        self.errors = 0

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        host, port = str(addr[0]), int(cast(int, addr[1]))
        self.driver.feed(data, host, port)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while the server is down: the transactions will time out.
        self.errors += 1


class AgentDriver:
    def __init__(
        self,
        agent: PresenceAgent,
        on_events: Callable[[list[AgentEvent]], None],
        clock: Callable[[], float],
        *,
        tls_ca_pem: str = "",
    ) -> None:
        self.agent = agent
        self.server = agent.server
        self.on_events = on_events
        self.clock = clock
        self.tls_ca_pem = tls_ca_pem
        self.connected = False
        self.last_error = ""
        self._timer: asyncio.TimerHandle | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._server_address: tuple[str, int] = (self.server.host, self.server.port)
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self.server.transport is Transport.UDP:
            await self._open_udp()
        else:
            self._task = asyncio.create_task(self._stream_loop(), name="sip presence connection")

    async def close(self) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._udp is not None:
            self._udp.close()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        self.connected = False

    async def _open_udp(self) -> None:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self.server.host, self.server.port, type=socket.SOCK_DGRAM)
        family, _, _, _, address = infos[0]
        # The local address the server's packets reach: what routing picks for the server. The
        # socket itself stays unconnected, so NOTIFYs from another of the server's addresses
        # arrive too.
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(address)
            local_ip = probe.getsockname()[0]
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), local_addr=(local_ip, 0), family=family
        )
        self._udp = transport
        self._server_address = (str(address[0]), int(address[1]))
        host, port = transport.get_extra_info("sockname")[:2]
        self.connected = True
        self.agent.connected(Endpoint(Transport.UDP, str(host), int(port)), self.clock())
        self.flush()

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.tls_ca_pem:
            context.load_verify_locations(cadata=self.tls_ca_pem)
        return context

    async def _stream_loop(self) -> None:
        failures = 0
        tls = self.server.transport is Transport.TLS
        while not self._closing:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        self.server.host,
                        self.server.port,
                        ssl=self._ssl_context() if tls else None,
                        server_hostname=self.server.host if tls else None,
                    ),
                    timeout=10.0,
                )
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                failures += 1
                self.last_error = f"cannot connect to {hostport(self.server)} over {self.server.transport.via_name}: {exc}"
                delay = min(MAX_RECONNECT_DELAY, 0.5 * 2 ** min(failures, 6))
                log.warning("%s; again in %.1fs", self.last_error, delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            self._writer = writer
            host, port = writer.get_extra_info("sockname")[:2]
            self.connected = True
            self.last_error = ""
            self.agent.connected(
                Endpoint(self.server.transport, str(host), int(port)), self.clock()
            )
            self.flush()
            framer = StreamFramer()
            try:
                while True:
                    data = await reader.read(65536)
                    if not data:
                        break
                    for item in framer.feed(data):
                        if isinstance(item, KeepAlive):
                            continue
                        self.feed(item, self.server.host, self.server.port)
            except (OSError, ValueError) as exc:
                self.last_error = f"connection to {hostport(self.server)} failed: {exc}"
            finally:
                self.connected = False
                self._writer = None
                writer.close()
                if not self._closing:
                    log.warning("connection to the presence server %s lost", hostport(self.server))
                    self.agent.disconnected(self.clock())
                    self.flush()
            if not self._closing:
                await asyncio.sleep(0.5)

    # --- driving the agent ---------------------------------------------------------------------

    def feed(self, data: bytes, host: str, port: int) -> None:
        self.agent.receive(data, host, port, self.clock())
        self.flush()

    def _on_timer(self) -> None:
        self._timer = None
        self.agent.handle_timer(self.clock())
        self.flush()

    def flush(self) -> None:
        """Write what the agent queued, hand its events on, re-arm its timer."""
        for data, destination in self.agent.datagrams_to_send():
            if self._udp is not None:
                to_server = (destination.host, destination.port) == (
                    self.server.host,
                    self.server.port,
                )
                self._udp.sendto(
                    data,
                    self._server_address if to_server else (destination.host, destination.port),
                )
            elif self._writer is not None and not self._writer.is_closing():
                self._writer.write(data)
            else:
                log.debug("dropping %d bytes for %s: not connected", len(data), destination)
        events = self.agent.events()
        if events:
            self.on_events(events)
        deadline = self.agent.next_deadline()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None and not self._closing:
            delay = max(0.0, deadline - self.clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)
