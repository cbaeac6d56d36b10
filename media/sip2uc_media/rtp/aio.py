"""asyncio adapter for the relay core: sockets, timers, and nothing else.

Each leg gets two UDP sockets (RTP on an even port, RTCP on the next) with a large
receive buffer, because the default (~208 KB) holds only a few hundred packets and a
few milliseconds' stall would drop audio. ``datagram_received`` hands the bytes to the
session core and writes what comes back on the *other* leg's socket (symmetric RTP:
every endpoint hears from the port it was told to send to). Sockets are read by loop
reader callbacks that drain a batch per wake-up with one clock read; the per-packet
path is ``recvfrom``, the core, ``sendto``: no logging, no per-packet objects beyond
the received and the output bytes.

:class:`RelayEngine` owns the port allocator, the legs and the sessions, arms the
session timers the core asks for (DTMF injection, digits whose end was lost), paces
prepared audio played into a leg (:meth:`RelayEngine.play`, feedback tones), checks
media timeouts periodically, and reports events to one callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final, TypeVar

from .playout import Playout
from .ports import PortAllocator, PortsExhausted
from .relay import (
    Addr,
    LegMedia,
    LegStats,
    MediaLeg,
    RelayError,
    RelayEvent,
    RelaySession,
    StreamOrigin,
)

DEFAULT_RCVBUF: Final = 4 * 1024 * 1024
_BIND_ATTEMPTS: Final = 16
#: Datagrams read per readiness callback before other sockets get their turn.
_BATCH: Final = 32

EventCallback = Callable[[str, RelayEvent], None]
T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed, else on the default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional
        return asyncio.run(main)
    result: T = uvloop.run(main)
    return result


class _Socket:
    """One non-blocking UDP socket of a leg, read by a loop reader callback.

    A reader callback instead of an asyncio transport: when the socket becomes
    readable it drains up to ``_BATCH`` datagrams in one go with a single clock read,
    which measured markedly cheaper per packet than one ``datagram_received`` call
    each, and it sends with plain ``sendto`` (RTP is not queued: a full send buffer
    drops the packet, as the network would).
    """

    __slots__ = ("engine", "leg", "loop", "peer", "rtcp", "sock")

    def __init__(
        self, engine: RelayEngine, leg: MediaLeg, sock: socket.socket, *, rtcp: bool
    ) -> None:
        self.engine = engine
        self.leg = leg
        self.sock = sock
        self.rtcp = rtcp
        self.loop = engine.loop
        #: The other leg's socket of the same kind once bridged: it sends our output.
        self.peer: _Socket | None = None
        self.loop.add_reader(sock.fileno(), self._rtcp_readable if rtcp else self._readable)

    def _readable(self) -> None:
        recvfrom = self.sock.recvfrom
        leg = self.leg
        session = leg.session
        peer = self.peer
        now = self.loop.time()
        if session is None or peer is None:
            # Not bridged yet (early media before the other leg exists): discard.
            for _ in range(_BATCH):
                try:
                    recvfrom(2048)
                except OSError:
                    break
                leg.drops["no_destination"] += 1
            return
        on_rtp = session.on_rtp
        index = leg.index
        sendto = peer.sock.sendto
        for _ in range(_BATCH):
            try:
                data, addr = recvfrom(2048)
            except BlockingIOError:
                break
            except OSError:
                # ICMP errors surface here (a handset went away); the media timeout
                # ends such calls.
                continue
            for packet, dest in on_rtp(index, data, addr, now):
                try:
                    sendto(packet, dest)
                except OSError:
                    leg.drops["send_failed"] += 1
        if session.wants_timer:
            self.engine._arm(session)

    def _rtcp_readable(self) -> None:
        leg = self.leg
        now = self.loop.time()
        for _ in range(_BATCH):
            try:
                data, addr = self.sock.recvfrom(2048)
            except BlockingIOError:
                break
            except OSError:
                continue
            session = leg.session
            peer = self.peer
            if session is None or peer is None:
                leg.drops["no_destination"] += 1
                continue
            for packet, dest in session.on_rtcp(leg.index, data, addr, now):
                try:
                    peer.sock.sendto(packet, dest)
                except OSError:
                    leg.drops["send_failed"] += 1

    def send(self, packet: bytes, dest: Addr) -> None:
        try:
            self.sock.sendto(packet, dest)
        except OSError:
            self.leg.drops["send_failed"] += 1

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class _LegSockets:
    __slots__ = ("rtcp", "rtp")

    def __init__(self, rtp: _Socket, rtcp: _Socket) -> None:
        self.rtp = rtp
        self.rtcp = rtcp

    def close(self) -> None:
        self.rtp.close()
        self.rtcp.close()


class RelayEngine:
    """Owns ports, legs and sessions of one sidecar's media relay."""

    def __init__(
        self,
        host: str,
        ports: PortAllocator,
        *,
        on_event: EventCallback | None = None,
        media_timeout: float = 60.0,
        check_interval: float = 1.0,
        rcvbuf: int = DEFAULT_RCVBUF,
        rng: random.Random | None = None,
    ) -> None:
        self.host = host
        self.ports = ports
        self.on_event = on_event
        self.media_timeout = media_timeout
        self.check_interval = check_interval
        self.rcvbuf = rcvbuf
        self._rng = rng or random.SystemRandom()
        self._legs: dict[str, tuple[MediaLeg, _LegSockets]] = {}
        self._sessions: dict[str, RelaySession] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._timed_out: set[str] = set()
        self._playouts: dict[str, tuple[Playout, asyncio.TimerHandle | None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._checker: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._checker = asyncio.create_task(self._check_timeouts())

    async def close(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
            self._checker = None
        for session_id in list(self._sessions):
            self.close_session(session_id)
        for leg_id in list(self._playouts):
            self.stop_playing(leg_id)
        for leg_id in list(self._legs):
            self.release_leg(leg_id)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RelayError("RelayEngine.start() has not been awaited")
        return self._loop

    # ------------------------------------------------------------------ legs
    def open_leg(
        self, leg_id: str, media: LegMedia | None = None, *, symmetric: bool = True
    ) -> MediaLeg:
        """Bind a port pair for a new leg; raises :class:`PortsExhausted` when full.

        Synchronous (binding a UDP socket never blocks), so that a SIP handler knows the port
        for its SDP in the same step that creates the leg."""
        if leg_id in self._legs:
            raise RelayError(f"leg {leg_id} exists")
        loop = self.loop
        for _ in range(_BIND_ATTEMPTS):
            port = self.ports.allocate()
            try:
                rtp_sock = self._bind(port)
            except OSError:
                self.ports.release(port)
                continue
            try:
                rtcp_sock = self._bind(port + 1)
            except OSError:
                rtp_sock.close()
                self.ports.release(port)
                continue
            break
        else:
            raise PortsExhausted(self.ports.low, self.ports.high)
        leg = MediaLeg(leg_id, port, media=media, symmetric=symmetric, now=loop.time())
        self._legs[leg_id] = (
            leg,
            _LegSockets(
                _Socket(self, leg, rtp_sock, rtcp=False), _Socket(self, leg, rtcp_sock, rtcp=True)
            ),
        )
        return leg

    def _bind(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            sock.bind((self.host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def leg(self, leg_id: str) -> MediaLeg:
        try:
            return self._legs[leg_id][0]
        except KeyError:
            raise RelayError(f"no leg {leg_id}") from None

    def legs(self) -> list[MediaLeg]:
        """Every open leg, in the order they were opened."""
        return [leg for leg, _socks in self._legs.values()]

    def release_leg(self, leg_id: str) -> None:
        self.stop_playing(leg_id)
        entry = self._legs.pop(leg_id, None)
        if entry is None:
            return
        leg, socks = entry
        if leg.session is not None:
            self.close_session(leg.session.session_id)
        socks.close()
        self.ports.release(leg.local_port)

    # ------------------------------------------------------------------ playing audio
    def play(
        self, leg_id: str, frames: Sequence[bytes], payload_type: int, *, ptime_ms: int = 20
    ) -> None:
        """Send ``frames`` to the leg's endpoint, one every ``ptime_ms``, from the leg's own
        RTP port (the one its SDP named, so symmetric-RTP handsets accept it).

        Meant for legs that carry no relayed audio meanwhile (a feedback tone before BYE); a
        new call replaces what is still playing. The packets go where relayed audio would:
        the latched source address, else the SDP address; a leg with neither skips them.
        """
        self.leg(leg_id)
        self.stop_playing(leg_id)
        playout = Playout(
            frames, payload_type, self._origin(), start=self.loop.time(), ptime_ms=ptime_ms
        )
        self._playouts[leg_id] = (playout, None)
        self._play_due(leg_id)

    def playing(self, leg_id: str) -> bool:
        return leg_id in self._playouts

    def stop_playing(self, leg_id: str) -> None:
        entry = self._playouts.pop(leg_id, None)
        if entry is not None and entry[1] is not None:
            entry[1].cancel()

    def _play_due(self, leg_id: str) -> None:
        entry = self._playouts.get(leg_id)
        found = self._legs.get(leg_id)
        if entry is None or found is None:
            self._playouts.pop(leg_id, None)
            return
        playout = entry[0]
        leg, socks = found
        for packet in playout.due(self.loop.time()):
            dest = leg.rtp_destination
            if dest is None:
                leg.drops["no_destination"] += 1
                continue
            socks.rtp.send(packet, dest)
            leg.tx_packets += 1
            leg.tx_bytes += len(packet)
        deadline = playout.next_deadline()
        if deadline is None:
            del self._playouts[leg_id]
            return
        self._playouts[leg_id] = (playout, self.loop.call_at(deadline, self._play_due, leg_id))

    # ------------------------------------------------------------------ sessions
    def _origin(self) -> StreamOrigin:
        r = self._rng
        return StreamOrigin(
            ssrc=r.getrandbits(32), seq=r.getrandbits(16), timestamp=r.getrandbits(32)
        )

    def bridge(self, session_id: str, a_leg_id: str, b_leg_id: str) -> RelaySession:
        """Join two open legs; media flows as soon as both have a destination."""
        if session_id in self._sessions:
            raise RelayError(f"session {session_id} exists")
        (a, a_socks), (b, b_socks) = self._legs[a_leg_id], self._legs[b_leg_id]
        session = RelaySession(session_id, a, b, origins=(self._origin(), self._origin()))
        a_socks.rtp.peer, b_socks.rtp.peer = b_socks.rtp, a_socks.rtp
        a_socks.rtcp.peer, b_socks.rtcp.peer = b_socks.rtcp, a_socks.rtcp
        self._sessions[session_id] = session
        return session

    def session(self, session_id: str) -> RelaySession:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise RelayError(f"no session {session_id}") from None

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    def close_session(self, session_id: str, *, release_legs: bool = True) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        handle = self._timers.pop(session_id, None)
        if handle is not None:
            handle.cancel()
        self._timed_out.discard(session_id)
        legs = [leg.leg_id for leg in session.legs]
        session.close()
        for leg_id in legs:
            socks = self._legs[leg_id][1]
            socks.rtp.peer = socks.rtcp.peer = None
            if release_legs:
                self.release_leg(leg_id)

    def inject_dtmf(
        self, session_id: str, to_leg_id: str, digits: str, duration_ms: int = 100
    ) -> None:
        session = self.session(session_id)
        index = next((i for i, leg in enumerate(session.legs) if leg.leg_id == to_leg_id), -1)
        if index < 0:
            raise RelayError(f"leg {to_leg_id} is not in session {session_id}")
        session.inject_dtmf(index, digits, self.loop.time(), duration_ms)
        self._arm(session)

    def stats(self, session_id: str) -> tuple[LegStats, LegStats]:
        return self.session(session_id).stats()

    # ------------------------------------------------------------------ timers
    def _arm(self, session: RelaySession) -> None:
        session.wants_timer = False
        self._dispatch(session)
        deadline = session.next_deadline()
        sid = session.session_id
        old = self._timers.pop(sid, None)
        if old is not None:
            old.cancel()
        if deadline is not None and sid in self._sessions:
            self._timers[sid] = self.loop.call_at(deadline, self._fire, session)

    def _fire(self, session: RelaySession) -> None:
        self._timers.pop(session.session_id, None)
        if session.session_id not in self._sessions:
            return
        socks = [self._legs[leg.leg_id][1] for leg in session.legs]
        for index, packet, dest in session.handle_timer(self.loop.time()):
            socks[index].rtp.send(packet, dest)
        self._arm(session)

    def _dispatch(self, session: RelaySession) -> None:
        if not session.events:
            return
        events = session.pop_events()
        if self.on_event is not None:
            for event in events:
                self.on_event(session.session_id, event)

    def check_timeouts(self) -> None:
        """Report each session with a silent leg once (the caller ends the call)."""
        now = self.loop.time()
        for sid, session in list(self._sessions.items()):
            if sid in self._timed_out:
                continue
            expired = session.expired(now, self.media_timeout)
            if expired:
                self._timed_out.add(sid)
                if self.on_event is not None:
                    for event in expired:
                        self.on_event(sid, event)

    async def _check_timeouts(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            self.check_timeouts()
