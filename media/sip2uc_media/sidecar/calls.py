"""The B2BUA's asyncio side: feeds the sans-IO legs and carries out their actions.

`CallHandler` sits between the SIP edge (which hands it INVITE, ACK, BYE, CANCEL, in-dialog
requests, responses and transaction timeouts), the control link (requests out, commands in, all
in the sidecar's own types: `requests.py`, `commands.py`) and the relay engine (ports, bridges, DTMF and media-timeout events).  All
protocol decisions are the legs' (``b2bua/legs.py``); this module only finds the leg a message
belongs to, runs timers, and executes ``b2bua/actions.py`` in order.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sip2uc_core.refusal_log import printable
from sip2uc_core.sip.client_auth import ClientAuth
from sip2uc_core.sip.digest import Credentials
from sip2uc_core.sip.endpoint import Endpoint
from sip2uc_core.sip.message import SipRequest, SipResponse, make_response
from sip2uc_core.sip.transaction import TransactionId
from sip2uc_core.sip.uri import user_or_whole
from sip2uc_core.stream_stats import StreamStats

from ..b2bua.actions import (
    Action,
    ByeRpc,
    CancelRpc,
    CancelTimer,
    Challenge,
    InviteRpc,
    LegFinished,
    LegTimer,
    PlayTone,
    RelayBridge,
    RelayRelease,
    RelayUpdate,
    ReportLeg,
    SendAck,
    SendRequest,
    SendResponse,
    StartTimer,
    Tone,
)
from ..b2bua.legs import (
    Disposition,
    InboundLeg,
    InviteResult,
    LegConfig,
    OutboundLeg,
    peer_relay_id,
)
from ..rtp import tones
from ..rtp.aio import RelayEngine
from ..rtp.ports import PortsExhausted
from ..rtp.relay import DtmfReceived, LegStats, MediaTimeout, RelayError, RelayEvent
from .auth_guard import AuthGuard
from .commands import AnswerLeg, Command, CreateLeg, EndLeg, InjectDtmf, UpdateMedia
from .registrar import Registrar, Rejection
from .requests import ControlUnavailableError, InviteCall, LiveLeg, Origin
from .telemetry import MediaMetrics

__all__ = ["CallControl", "CallHandler", "EdgeHooks"]

_log = logging.getLogger(__name__)

Leg = InboundLeg | OutboundLeg
STATS_INTERVAL = 5.0


class CallControl(Protocol):
    """The control-link requests the B2BUA makes (a fake in unit tests)."""

    @property
    def up(self) -> bool: ...

    async def invite(self, call: InviteCall, rpc: InviteRpc) -> InviteResult: ...

    async def cancel(self, origin: Origin, rpc: CancelRpc) -> None: ...

    async def bye(self, origin: Origin, rpc: ByeRpc, stats: Sequence[StreamStats] = ()) -> None: ...

    async def report_leg(
        self, sidecar: str, report: ReportLeg, stats: Sequence[StreamStats] = ()
    ) -> None: ...


class EdgeHooks(Protocol):
    """What the B2BUA needs from the SIP edge."""

    def respond(self, txn_id: TransactionId, response: SipResponse) -> None: ...

    def send_request(self, request: SipRequest, dest: Endpoint) -> TransactionId | None: ...

    def send_stateless(self, message: SipRequest | SipResponse, dest: Endpoint) -> None: ...

    @property
    def guard(self) -> AuthGuard: ...

    def ignore(self, txn_id: TransactionId, reason: str) -> None: ...

    def refused(
        self, source: Endpoint, reason: str, message: Callable[[], str], level: int = ...
    ) -> None: ...

    def flush(self) -> None: ...


@dataclass(slots=True)
class _LegEntry:
    leg: Leg
    origin: Origin
    invite_txn: TransactionId | None = None
    #: Who the handset is, as the control plane can find the user again: the digest username
    #: a caller authenticated with, the To URI of a leg the control plane asked for.
    party: str = ""
    #: The final statistics went out with the leg's last report (or there were none).
    stats_sent: bool = False


class TrunkPaths(Protocol):
    """What the call handler asks of the trunks this sidecar carries (`trunk/carrier.py`)."""

    def destination(self, trunk_id: str, /) -> Endpoint | None: ...

    def authenticator(self, trunk_id: str, /) -> ClientAuth | None:
        """The trunk's digest credentials, to answer its challenges to our INVITEs."""
        ...

    def is_trunk_source(self, host: str, port: int, /) -> bool: ...


class CallHandler:
    def __init__(
        self,
        *,
        name: str,
        registrar: Registrar,
        control: CallControl,
        relay: RelayEngine,
        config: LegConfig,
        clock: Callable[[], float],
        wall_clock: Callable[[], float] = time.time,
        retry_after: int = 5,
    ) -> None:
        self.name = name
        self.registrar = registrar
        self.control = control
        self.relay = relay
        self.config = config
        self._clock = clock
        # Nonces carry wall-clock time, as REGISTER's do: they share one count tracker, which
        # tells nonces it forgot by their issue time, and they outlive a restart.
        self._wall = wall_clock
        self._retry_after = retry_after
        self.edge: EdgeHooks | None = None
        self.trunk_sources: tuple[
            tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int], ...
        ] = ()
        self.channel_limit = 0
        #: The carried trunks: where their legs go, and whose requests need no digest.
        self.trunks: TrunkPaths | None = None
        self._legs: dict[str, _LegEntry] = {}
        self._by_key: dict[tuple[str, str], str] = {}
        self._by_invite_txn: dict[TransactionId, str] = {}
        self._by_client_txn: dict[TransactionId, tuple[str, str]] = {}
        self._timers: dict[tuple[str, LegTimer], asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stats_task: asyncio.Task[None] | None = None
        self._media_metrics = MediaMetrics(lambda: len(self._legs))

    # -- settings and load ------------------------------------------------------------------------

    def configure(
        self,
        *,
        trunk_sources: tuple[tuple[str, int], ...],
        channel_limit: int,
        media_timeout: float,
    ) -> None:
        sources = []
        for network, port in trunk_sources:
            try:
                sources.append((ipaddress.ip_network(network, strict=False), port))
            except ValueError:
                _log.warning("ignoring malformed trunk source %r", network)
        self.trunk_sources = tuple(sources)
        self.channel_limit = channel_limit
        self.relay.media_timeout = media_timeout

    @property
    def active_legs(self) -> int:
        return len(self._legs)

    def relay_stats(self) -> dict[str, LegStats]:
        """Media counters of every live call leg's handset-facing relay leg."""
        out: dict[str, LegStats] = {}
        for leg_id in self._legs:
            try:
                out[leg_id] = self.relay.leg(leg_id).stats()
            except RelayError:
                continue
        return out

    def live_legs(self) -> tuple[LiveLeg, ...]:
        """Every routed leg, for the hello: a control plane that restarted takes back the
        established ones and ends the others (docs/calls.md, "Reconciliation")."""
        return tuple(
            LiveLeg(
                call_id=entry.leg.call_id,
                leg_id=leg_id,
                caller=isinstance(entry.leg, InboundLeg),
                established=entry.leg.established,
                party=entry.party,
                media=entry.leg.peer_spec(),
                direction=entry.leg.handset_direction,
            )
            for leg_id, entry in self._legs.items()
            if entry.leg.call_id and not entry.leg.finished
        )

    def load(self) -> tuple[int, int]:
        return (len(self._legs), 4 * len(self._legs))

    def _is_trunk(self, source: Endpoint) -> bool:
        if self.trunks is not None and self.trunks.is_trunk_source(source.host, source.port):
            return True
        try:
            address = ipaddress.ip_address(source.host)
        except ValueError:
            return False
        return any(
            address in network and (port == 0 or port == source.port)
            for network, port in self.trunk_sources
        )

    # -- SIP in ---------------------------------------------------------------------------------

    def invite(self, txn_id: TransactionId, request: SipRequest, source: Endpoint) -> None:
        """An INVITE: a re-INVITE within a dialog, or a new call."""
        if request.to.tag is not None:
            self._in_dialog(txn_id, request)
            return
        edge = self._edge
        now = self._clock()
        credentials: Credentials | None = None
        if not self._is_trunk(source):
            registrar = self.registrar
            if edge.guard.user_banned(source.host, lambda: registrar.user_of(request, proxy=True)):
                edge.ignore(txn_id, "banned_user")
                return
            checked = registrar.authenticate(request, source.host, self._wall())
            if isinstance(checked, Rejection):
                if checked.why:
                    edge.guard.refused(source.host, checked.label, checked.why)
                edge.respond(txn_id, checked.response)
                return
            credentials = checked
        if not self.control.up:
            self._reply(txn_id, request, 503, [("Retry-After", str(self._retry_after))])
            self._refused_call(request, source, "control_unavailable", "503", "no control plane")
            return
        if self.channel_limit and len(self._legs) >= self.channel_limit:
            self._reply(txn_id, request, 503, [("Retry-After", str(self._retry_after))])
            self._refused_call(
                request,
                source,
                "channel_limit",
                "503",
                f"channel limit reached ({self.channel_limit} legs)",
                logging.WARNING,
            )
            return
        leg_id = f"{self.name}-{os.urandom(8).hex()}"
        origin = Origin(
            sidecar=self.name,
            source=source,
            user_agent=request.headers.get("User-Agent") or "",
            call_id=request.call_id,
        )
        try:
            relay_port, peer_port = self._open_ports(leg_id)
        except PortsExhausted:
            self._reply(txn_id, request, 503, [("Retry-After", str(self._retry_after))])
            self._refused_call(
                request, source, "relay_ports", "503", "no RTP port pair free", logging.WARNING
            )
            return
        leg = InboundLeg(
            leg_id,
            invite=request,
            txn_id=txn_id,
            source=source,
            relay_port=relay_port,
            peer_port=peer_port,
            config=self.config,
            # The tag of our 407, so that handsets keeping the first tag they saw stay in step.
            to_tag=self.registrar.tag_for(request),
        )
        self._legs[leg_id] = _LegEntry(
            leg, origin, txn_id, party=credentials.username if credentials else ""
        )
        self._by_key[leg.key] = leg_id
        self._by_invite_txn[txn_id] = leg_id
        call = InviteCall(
            origin=origin,
            credentials=credentials,
            request_uri=str(request.uri),
            from_uri=str(request.from_.uri),
            from_display_name=request.from_.display_name or "",
            to_uri=str(request.to.uri),
        )
        self._run(leg_id, leg.start(now), call=call)

    def request(self, txn_id: TransactionId | None, request: SipRequest, source: Endpoint) -> bool:
        """ACK, BYE, OPTIONS, INFO...: True when it belonged to a call (and was handled)."""
        if request.to.tag is None:
            return False
        key = (request.call_id, request.to.tag)
        leg_id = self._by_key.get(key)
        if leg_id is None:
            if txn_id is not None and request.method in ("BYE", "INFO", "INVITE"):
                self._reply(txn_id, request, 481)
                return True
            return request.method == "ACK"
        if txn_id is None and request.method != "ACK":
            return True
        self._in_dialog(txn_id, request)
        return True

    def _in_dialog(self, txn_id: TransactionId | None, request: SipRequest) -> None:
        key = (request.call_id, request.to.tag or "")
        leg_id = self._by_key.get(key)
        if leg_id is None:
            if txn_id is not None:
                self._reply(txn_id, request, 481)
            return
        leg = self._legs[leg_id].leg
        self._run(leg_id, leg.on_request(request, txn_id, self._clock()))

    def cancel(
        self, txn_id: TransactionId, request: SipRequest, invite_txn: TransactionId | None
    ) -> bool:
        leg_id = self._by_invite_txn.get(invite_txn) if invite_txn is not None else None
        if leg_id is None or leg_id not in self._legs:
            return False
        leg = self._legs[leg_id].leg
        assert isinstance(leg, InboundLeg)
        self._run(leg_id, leg.on_cancel(request, txn_id, self._clock()))
        return True

    def response(self, txn_id: TransactionId | None, response: SipResponse) -> None:
        key = (response.call_id, response.from_.tag or "")
        leg_id = self._by_key.get(key)
        if leg_id is None and txn_id is not None:
            leg_id = self._by_client_txn.get(txn_id, ("", ""))[0] or None
        if leg_id is None or leg_id not in self._legs:
            return
        leg = self._legs[leg_id].leg
        self._run(leg_id, leg.on_response(response, self._clock()))

    def transaction_timeout(self, txn_id: TransactionId) -> None:
        entry = self._by_client_txn.pop(txn_id, None)
        if entry is None:
            return
        leg_id, method = entry
        found = self._legs.get(leg_id)
        if found is not None and isinstance(found.leg, OutboundLeg):
            self._run(leg_id, found.leg.on_transaction_timeout(method, self._clock()))

    def transaction_ended(self, txn_id: TransactionId) -> None:
        self._by_client_txn.pop(txn_id, None)
        self._by_invite_txn.pop(txn_id, None)

    # -- relay events ---------------------------------------------------------------------------

    def relay_event(self, session_id: str, event: RelayEvent) -> None:
        try:
            # Only handset-facing relay legs are ours to report; the peer stream's events
            # belong to the other sidecar's handset.
            found = self._legs.get(event.leg_id)
            if found is None:
                return
            now = self._clock()
            if isinstance(event, DtmfReceived):
                self._run(event.leg_id, found.leg.on_dtmf(event.digit, now))
            elif isinstance(event, MediaTimeout):
                self._run(event.leg_id, found.leg.on_media_timeout(now))
        except Exception:
            _log.exception("relay event %r failed", event)

    # -- commands ---------------------------------------------------------------------------------

    async def command(self, command: Command) -> str:
        """Carry out one command of the control plane; "" when done, else the reason it was not."""
        now = self._clock()
        if isinstance(command, CreateLeg):
            return self._create_leg(command, now)
        if isinstance(command, AnswerLeg):
            found = self._legs.get(command.leg_id)
            if found is None or not isinstance(found.leg, InboundLeg):
                return f"no caller leg {command.leg_id}"
            self._run(
                command.leg_id,
                found.leg.on_answer_command(
                    command.status, command.peer_media, command.bridge_leg_id, now
                ),
            )
            return ""
        if isinstance(command, EndLeg):
            found = self._legs.get(command.leg_id)
            if found is None:
                return ""  # already over: ending is idempotent
            self._run(command.leg_id, found.leg.on_end_command(command.status, command.reason, now))
            return ""
        if isinstance(command, UpdateMedia):
            found = self._legs.get(command.leg_id)
            if found is None:
                return f"no leg {command.leg_id}"
            self._run(
                command.leg_id,
                found.leg.on_update_media(command.peer_media, command.bridge_leg_id, now),
            )
            return ""
        if isinstance(command, InjectDtmf):
            if command.leg_id not in self._legs:
                return f"no leg {command.leg_id}"
            media_leg = self.relay.leg(command.leg_id)
            if media_leg.session is None:
                return "leg has no media yet"
            try:
                self.relay.inject_dtmf(
                    media_leg.session.session_id,
                    command.leg_id,
                    command.digits,
                    command.duration_ms,
                )
            except (RelayError, ValueError) as exc:
                return str(exc)
            return ""
        return "not supported by this sidecar"  # short messages and NOTIFY: not yet

    def _create_leg(self, create: CreateLeg, now: float) -> str:
        if create.leg_id in self._legs:
            return f"leg {create.leg_id} exists"
        if self.channel_limit and len(self._legs) >= self.channel_limit:
            return "channel limit reached"
        if create.trunk_id and self.trunks is not None:
            # The trunk's name as this sidecar resolved it (RFC 3263).
            resolved = self.trunks.destination(create.trunk_id)
            if resolved is not None:
                create = replace(create, destination=resolved)
        try:
            relay_port, peer_port = self._open_ports(create.leg_id)
        except PortsExhausted:
            return "relay ports exhausted"
        try:
            leg = OutboundLeg(
                create, relay_port=relay_port, peer_port=peer_port, config=self.config
            )
        except Exception:
            self._release_ports(create.leg_id)
            return "bad CreateLeg"
        if create.trunk_id and self.trunks is not None:
            leg.authenticator = self.trunks.authenticator(create.trunk_id)
        origin = Origin(
            sidecar=self.name, source=create.destination, user_agent="", call_id=leg.sip_call_id
        )
        self._legs[create.leg_id] = _LegEntry(leg, origin, party=create.to_uri)
        self._by_key[leg.key] = create.leg_id
        self._run(create.leg_id, leg.start(now))
        return ""

    # -- executing actions ----------------------------------------------------------------------

    @property
    def _edge(self) -> EdgeHooks:
        assert self.edge is not None
        return self.edge

    def _reply(
        self,
        txn_id: TransactionId,
        request: SipRequest,
        status: int,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        tag = self.registrar.tag_for(request)
        self._edge.respond(
            txn_id, make_response(request, status, to_tag=tag, headers=headers or ())
        )

    def _run(self, leg_id: str, actions: list[Action], *, call: InviteCall | None = None) -> None:
        edge = self._edge
        entry = self._legs.get(leg_id)
        final = self._final_report(entry, actions)
        for action in actions:
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug("leg %s: %s", leg_id, action)
            try:
                if final is not None and action is final[0]:
                    self._send_final(entry, action, final[1])
                else:
                    self._act(leg_id, entry, action, call)
            except Exception:
                _log.exception("leg %s: %s failed", leg_id, type(action).__name__)
        edge.flush()

    def _final_report(
        self, entry: _LegEntry | None, actions: list[Action]
    ) -> tuple[Action, tuple[StreamStats, ...]] | None:
        """When these actions end the leg, its final statistics ride on the Bye or the last
        report of the same step instead of a report of their own (docs/calls.md)."""
        if entry is None or not entry.leg.call_id:
            return None
        if not any(isinstance(a, RelayRelease) for a in actions):
            return None
        carrier = None
        for action in actions:
            if isinstance(action, ByeRpc) or (
                isinstance(action, ReportLeg) and action.leg_id == entry.leg.leg_id
            ):
                carrier = action
        if carrier is None:
            return None
        entry.stats_sent = True  # nothing more to send at release, with or without RTP
        stats = self._stats_for(entry)
        return (carrier, stats) if stats is not None else None

    def _send_final(
        self, entry: _LegEntry | None, action: Action, stats: tuple[StreamStats, ...]
    ) -> None:
        assert entry is not None
        if isinstance(action, ByeRpc):
            self._spawn(self.control.bye(entry.origin, action, stats))
        elif isinstance(action, ReportLeg):
            self._spawn(self.control.report_leg(self.name, action, stats))

    def _act(
        self, leg_id: str, entry: _LegEntry | None, action: Action, call: InviteCall | None
    ) -> None:
        edge = self._edge
        if isinstance(action, SendResponse):
            edge.respond(action.txn_id, action.response)
        elif isinstance(action, SendRequest):
            txn_id = edge.send_request(action.request, action.destination)
            if txn_id is not None:
                self._by_client_txn[txn_id] = (leg_id, action.request.method)
        elif isinstance(action, SendAck):
            edge.send_stateless(action.request, action.destination)
        elif isinstance(action, Challenge):
            host = entry.origin.source.host if entry else ""
            edge.guard.failed(host, self.registrar.user_of(action.request, proxy=True))
            edge.respond(
                action.txn_id, self.registrar.proxy_challenge(action.request, host, self._wall())
            )
        elif isinstance(action, InviteRpc):
            assert call is not None
            self._spawn(self._invite(leg_id, call, action))
        elif isinstance(action, CancelRpc):
            if entry is not None:
                self._spawn(self.control.cancel(entry.origin, action))
        elif isinstance(action, ByeRpc):
            if entry is not None:
                self._spawn(self.control.bye(entry.origin, action))
        elif isinstance(action, ReportLeg):
            self._spawn(self.control.report_leg(self.name, action))
        elif isinstance(action, RelayUpdate):
            self.relay.leg(action.relay_leg).update(action.media)
        elif isinstance(action, RelayBridge):
            self._bridge(action)
        elif isinstance(action, RelayRelease):
            self._release(action.relay_legs, entry)
        elif isinstance(action, PlayTone):
            self._play_tone(action)
        elif isinstance(action, StartTimer):
            self._start_timer(action)
        elif isinstance(action, CancelTimer):
            handle = self._timers.pop((action.leg_id, action.timer), None)
            if handle is not None:
                handle.cancel()
        elif isinstance(action, LegFinished):
            self._forget(action.leg_id)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _invite(self, leg_id: str, call: InviteCall, rpc: InviteRpc) -> None:
        try:
            result = await self.control.invite(call, rpc)
        except ControlUnavailableError:
            result = InviteResult(
                disposition=Disposition.REJECT, status=503, retry_after=self._retry_after
            )
        else:
            if call.credentials is not None and result.disposition is not Disposition.UNAUTHORIZED:
                # The control plane verified the digest, whatever it then decided about the call.
                self._edge.guard.succeeded(call.origin.source.host, call.credentials.username)
        entry = self._legs.get(leg_id)
        if entry is None or not isinstance(entry.leg, InboundLeg):
            return
        if result.disposition is Disposition.REJECT:
            self._refused_call(
                entry.leg.invite,
                entry.origin.source,
                f"call_rejected_{result.status}" if 400 <= result.status < 700 else "call_rejected",
                str(result.status),
                printable(result.reason) or "refused by the control plane",
            )
        self._run(leg_id, entry.leg.on_invite_result(result, self._clock()))

    def _refused_call(
        self,
        request: SipRequest,
        source: Endpoint,
        reason: str,
        status: str,
        why: str,
        level: int = logging.INFO,
    ) -> None:
        def line() -> str:
            caller = printable(user_or_whole(request.from_.uri) or str(request.from_.uri))
            dialled = printable(user_or_whole(request.uri) or str(request.uri))
            return (
                f"call from {caller} ({source.host}:{source.port}) to {dialled} refused with "
                f"{status}: {why}"
            )

        self._edge.refused(source, reason, line, level)

    # -- relay ------------------------------------------------------------------------------------

    def _open_ports(self, leg_id: str) -> tuple[int, int]:
        handset = self.relay.open_leg(leg_id)
        try:
            peer = self.relay.open_leg(peer_relay_id(leg_id), symmetric=False)
        except Exception:
            self.relay.release_leg(leg_id)
            raise
        return handset.local_port, peer.local_port

    def _release_ports(self, leg_id: str) -> None:
        for relay_leg in (leg_id, peer_relay_id(leg_id)):
            self.relay.release_leg(relay_leg)

    def _bridge(self, action: RelayBridge) -> None:
        try:
            a, b = self.relay.leg(action.a), self.relay.leg(action.b)
        except RelayError:
            return  # the other leg ended meanwhile
        if a.session is not None and a.session is b.session:
            return  # bridged already (both local legs ask)
        for joined in (a.session, b.session):
            # The leg joins another party (a fork elsewhere answered after a local one rang):
            # the old bridge goes, the relay legs stay with their call legs.
            if joined is not None:
                self.relay.close_session(joined.session_id, release_legs=False)
        self.relay.bridge(action.session_id, action.a, action.b)

    def _release(self, relay_legs: tuple[str, ...], entry: _LegEntry | None) -> None:
        if entry is not None:
            self._final_stats(entry)
            self._record_media(entry)
        for relay_leg in relay_legs:
            try:
                leg = self.relay.leg(relay_leg)
            except RelayError:
                continue
            if leg.session is not None:
                # A local bridge: the other call leg keeps its ports until it ends itself.
                self.relay.close_session(leg.session.session_id, release_legs=False)
            self.relay.release_leg(relay_leg)

    def _play_tone(self, action: PlayTone) -> None:
        """The tone goes out of the handset's own relay leg, the port its SDP named."""
        law = "PCMA" if action.codec == "PCMA" else "PCMU"
        pattern = tones.ERROR if action.tone is Tone.ERROR else tones.CONFIRM
        frames = tones.tone_frames(pattern, law)
        count = max(1, round(self.config.tone_seconds / 0.02))
        try:
            self.relay.play(
                action.relay_leg,
                [frames[i % len(frames)] for i in range(count)],
                action.payload_type,
            )
        except RelayError:
            return  # the leg ended meanwhile

    # -- timers and bookkeeping -------------------------------------------------------------

    def _start_timer(self, action: StartTimer) -> None:
        key = (action.leg_id, action.timer)
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_at(action.at, self._fire, action.leg_id, action.timer)

    def _fire(self, leg_id: str, timer: LegTimer) -> None:
        self._timers.pop((leg_id, timer), None)
        entry = self._legs.get(leg_id)
        if entry is None:
            return
        try:
            self._run(leg_id, entry.leg.on_timer(timer, self._clock()))
        except Exception:
            _log.exception("leg %s timer %s failed", leg_id, timer)

    def _forget(self, leg_id: str) -> None:
        entry = self._legs.pop(leg_id, None)
        if entry is None:
            return
        self._by_key.pop(entry.leg.key, None)
        if entry.invite_txn is not None:
            self._by_invite_txn.pop(entry.invite_txn, None)
        for key in [k for k in self._timers if k[0] == leg_id]:
            self._timers.pop(key).cancel()

    def _stats_for(self, entry: _LegEntry) -> tuple[StreamStats, ...] | None:
        """The leg's statistics; None when no RTP flowed either way (nothing worth reporting,
        and the quality estimate would be computed for nothing)."""
        try:
            leg = self.relay.leg(entry.leg.leg_id)
        except RelayError:
            return None
        if leg.last_rx is None and leg.tx_packets == 0:
            return None
        negotiated = entry.leg.negotiated
        codec = negotiated.codec if negotiated is not None else ""
        return _stream_stats(leg.stats(), codec)

    def _record_media(self, entry: _LegEntry) -> None:
        try:
            leg = self.relay.leg(entry.leg.leg_id)
        except RelayError:
            return
        if leg.last_rx is not None or leg.tx_packets:
            self._media_metrics.leg_finished(leg.stats())

    def _final_stats(self, entry: _LegEntry) -> None:
        if not entry.leg.call_id or entry.stats_sent:
            return
        stats = self._stats_for(entry)
        if stats is None:
            return
        report = ReportLeg(call_id=entry.leg.call_id, leg_id=entry.leg.leg_id)
        self._spawn(self.control.report_leg(self.name, report, stats))

    async def report_stats_forever(self) -> None:
        """``ReportLeg(stats=…)`` every 5 s for every leg with media (docs/calls.md)."""
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            self.report_stats()

    def report_stats(self) -> int:
        """One round of statistics reports: every routed leg on which RTP flowed, whichever
        side bridged it (the callee's leg of a call within this sidecar is bridged by the
        caller's); returns how many went out."""
        sent = 0
        for entry in list(self._legs.values()):
            if not entry.leg.call_id:
                continue
            stats = self._stats_for(entry)
            if stats is None:
                continue
            report = ReportLeg(call_id=entry.leg.call_id, leg_id=entry.leg.leg_id)
            self._spawn(self.control.report_leg(self.name, report, stats))
            sent += 1
        return sent

    def start(self) -> None:
        self._stats_task = asyncio.get_running_loop().create_task(self.report_stats_forever())

    async def close(self) -> None:
        if self._stats_task is not None:
            self._stats_task.cancel()
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        tasks = list(self._tasks)
        if self._stats_task is not None:
            tasks.append(self._stats_task)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _stream_stats(stats: LegStats, codec: str) -> tuple[StreamStats, ...]:
    received = stats.received
    return (
        StreamStats(
            direction="rx",
            packets=received.packets,
            bytes=received.bytes,
            lost=received.lost,
            jitter_ms=received.jitter_ms,
            mos=received.mos,
            codec=codec,
        ),
        StreamStats(
            direction="tx", packets=stats.sent_packets, bytes=stats.sent_bytes, codec=codec
        ),
    )
