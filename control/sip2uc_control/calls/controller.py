"""Routing and supervising calls: the control plane's half of docs/calls.md.

The controller reacts to sidecar RPCs (`invite`, `report_leg`, `cancel`, `bye`) and API calls
(`end_call`, `send_dtmf`, `place_call`) by updating the call registry, the parties' presence and
sending commands to sidecars. It never waits for a sidecar: commands go out on the sidecars'
streams and their results come back as leg reports.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from ipaddress import ip_address, ip_network
from typing import TYPE_CHECKING, Any

from sip2uc_core.sip.digest import Credentials
from sip2uc_core.stream_stats import StreamStats
from sqlalchemy import text

from ..domain import User
from ..errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from ..registrar import Refusal
from ..routing.codes import CodeAction
from ..routing.dialplan import (
    Deliver,
    DialContext,
    Forward,
    ForwardChain,
    Forwarding,
    PresenceCodeRoute,
    Rejected,
    RoutingError,
    TrunkRoute,
    UserRoute,
    UserRoutingSettings,
    apply_forward_code,
    apply_presence_code,
    classify,
    decide_after_no_answer,
    decide_user_target,
)
from ..watchers import WATCH_QUEUE_LIMIT, WatchQueue
from .commands import AnswerLeg, Command, CreateLeg, EndLeg, InjectDtmf, UpdateMedia
from .model import Call, CallState, Leg, LegState, MediaInfo, best_final_status

if TYPE_CHECKING:
    from ..core import ControlCore

log = logging.getLogger(__name__)

HISTORY_LIMIT = 100_000
_INSERT_HISTORY = text(
    "INSERT INTO call_history (id, start_time, users, doc) VALUES (:i, :s, :u, :d)"
)
DTMF_DIGITS = set("0123456789*#ABCD")


@dataclass(frozen=True)
class _Target:
    """One place a user can be rung: a binding or a trunk port."""

    sidecar: str
    request_uri: str
    host: str
    port: int
    transport: str
    registration: str


@dataclass(frozen=True)
class InviteInput:
    sidecar: str
    leg_id: str
    credentials: Credentials | None
    source_host: str
    source_port: int
    request_uri: str
    from_uri: str
    from_display_name: str
    to_uri: str
    offer: MediaInfo | None


@dataclass(frozen=True)
class InviteOutcome:
    disposition: str  # "routing" | "reject" | "unauthorized" | "feedback"
    call_id: str = ""
    status: int = 0
    reason: str = ""
    retry_after: int = 0
    tone_ok: bool = True


@dataclass(frozen=True)
class LegReport:
    sidecar: str
    call_id: str
    leg_id: str
    state: LegState | None
    status: int = 0
    reason: str = ""
    media: MediaInfo | None = None
    dtmf_digits: str = ""
    stats: tuple[StreamStats, ...] = ()
    direction: str = ""


def _user_part(uri: str) -> str:
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    return rest.split("@", 1)[0].split(";", 1)[0]


def _uri_host(uri: str) -> str | None:
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    if "@" not in rest:
        return None
    return rest.split("@", 1)[1].split(";", 1)[0].split(":", 1)[0] or None


def routing_settings(user: User) -> UserRoutingSettings:
    s = user.settings

    def fwd(f: Any) -> Forwarding | None:
        return Forwarding(enabled=f.enabled, target=f.target) if f.target else None

    return UserRoutingSettings(
        dnd_allowed=s.dnd_allowed,
        call_waiting=s.call_waiting,
        forward_always=fwd(s.forward_always),
        forward_busy=fwd(s.forward_busy),
        forward_no_answer=fwd(s.forward_no_answer),
        no_answer_timeout=float(s.no_answer_timeout_seconds)
        if s.no_answer_timeout_seconds
        else None,
    )


class CallController:
    def __init__(self, core: ControlCore, send: Callable[[str, Command], bool]) -> None:
        self.core = core
        self.send = send
        self.calls: dict[str, Call] = {}
        self.by_leg: dict[str, str] = {}
        self._watchers: set[WatchQueue[Call]] = set()

    # --- helpers -------------------------------------------------------------------------------

    def _now(self) -> float:
        return self.core.clock()

    def _new_id(self) -> str:
        return secrets.token_hex(8)

    def _publish(self, call: Call) -> None:
        for q in list(self._watchers):
            if not q.offer(call):
                self._watchers.discard(q)  # cut off: it stopped reading

    def watch(self, limit: int = WATCH_QUEUE_LIMIT) -> WatchQueue[Call]:
        q: WatchQueue[Call] = WatchQueue(limit)
        self._watchers.add(q)
        return q

    def unwatch(self, q: WatchQueue[Call]) -> None:
        self._watchers.discard(q)

    def live(self) -> list[Call]:
        return sorted(self.calls.values(), key=lambda c: c.start_time)

    def get(self, call_id: str) -> Call | None:
        return self.calls.get(call_id.removeprefix("calls/"))

    def _dial_context(self, caller: User | None) -> DialContext:
        settings = self.core.settings.current
        users = self.core.users
        domain = settings.sip_domain

        def find_uri_user(user_part: str, host: str | None) -> str | None:
            if (
                host is not None
                and host.lower() != domain.lower()
                and not host.replace(".", "").isdigit()
            ):
                return None
            u = users.resolve(f"sip:{user_part}@{domain}")
            return u.id if u else None

        def find_ext(ext: str) -> str | None:
            uid = users.index.by_extension.get(ext)
            return uid

        def find_e164(number: str) -> str | None:
            return users.index.by_e164.get(number)

        trunk = settings.upstream_trunk
        return DialContext(
            caller=caller.id if caller else None,
            codes=settings.code_table,
            find_extension=find_ext,
            find_e164=find_e164,
            find_uri_user=find_uri_user,
            default_region=settings.default_region or None,
            trunk="upstream" if trunk.enabled and trunk.address else None,
            caller_may_use_trunk=caller is not None,
            trunk_pattern=settings.trunk_pattern,
        )

    def _trunk_caller(self, sidecar: str, host: str, port: int, from_uri: str) -> User | None:
        """The user a trunk device sends for: source in its network, From user = its RURI user."""
        try:
            source = ip_address(host)
        except ValueError:
            return None
        from_user = _user_part(from_uri)
        for user in self.core.users.index.by_id.values():
            for dev in user.devices:
                t = dev.trunk
                if t is None or (t.sidecar and t.sidecar != sidecar):
                    continue
                if t.source_port and t.source_port != port:
                    continue
                if source not in ip_network(t.source_network, strict=False):
                    continue
                if from_user in (t.request_uri_user, user.extension):
                    return user
        return None

    def _presence(self, user_id: str, step: str, call_id: str, ringing: bool = False) -> None:
        """Move a party's presence with the call. The record changes at once (routing reads it:
        busy, in a call); its commit and the watchers' update follow in the hub's next batch, so
        no answer to a sidecar and no command waits for a database commit."""
        if self.core.users.get(user_id) is None:
            return
        engine = self.core.presence.engine
        if step == "start":
            self.core.presence.apply(
                user_id, lambda r, now: engine.on_call_started(r, call_id, ringing, now)
            )
        elif step == "answer":
            self.core.presence.apply(
                user_id, lambda r, now: engine.on_call_answered(r, call_id, now)
            )
        else:
            self.core.presence.apply(user_id, lambda r, now: engine.on_call_ended(r, call_id, now))

    # --- new calls from handsets ---------------------------------------------------------------

    async def invite(self, inp: InviteInput) -> InviteOutcome:
        caller: User | None = None
        if inp.credentials is not None:
            found = self.core.authenticate(inp.credentials, "INVITE", inp.source_host)
            if isinstance(found, Refusal):
                return InviteOutcome(
                    "unauthorized", status=407, reason="Proxy Authentication Required"
                )
            caller = found[0]
        else:
            caller = self._trunk_caller(inp.sidecar, inp.source_host, inp.source_port, inp.from_uri)
            if caller is None:
                return InviteOutcome(
                    "unauthorized", status=407, reason="Proxy Authentication Required"
                )
        if caller.disabled:
            return InviteOutcome("reject", status=403, reason="User disabled")
        dialled = _user_part(inp.request_uri)
        host = _uri_host(inp.request_uri)
        route = classify(
            dialled if host is None else f"sip:{dialled}@{host}", self._dial_context(caller)
        )
        if isinstance(route, PresenceCodeRoute):
            return await self._apply_code(caller, route)
        if isinstance(route, Rejected):
            return InviteOutcome("reject", status=route.status, reason=route.reason)
        call = Call(
            id=self._new_id(),
            caller=caller.name,
            dialled=dialled,
            caller_user=caller.id,
            start_time=self._now(),
            caller_leg=inp.leg_id,
        )
        call.legs[inp.leg_id] = Leg(
            id=inp.leg_id,
            sidecar=inp.sidecar,
            role="caller",
            party=caller.name,
            user_id=caller.id,
            state=LegState.TRYING,
            media=inp.offer,
        )
        self.calls[call.id] = call
        self.by_leg[inp.leg_id] = call.id
        self._presence(caller.id, "start", call.id, ringing=False)
        call.presence_users.add(caller.id)
        outcome = await self._route(call, route, inp.offer, ForwardChain())
        if outcome is not None:
            await self._finish(call, outcome.reason, outcome.status, notify_caller=False)
            return outcome
        self._publish(call)
        return InviteOutcome("routing", call_id=call.id)

    async def _apply_code(self, caller: User, route: PresenceCodeRoute) -> InviteOutcome:
        action = route.code.action
        try:
            if action.is_presence:
                settings = routing_settings(caller)
                engine = self.core.presence.engine
                await self.core.presence.update(
                    caller.id, lambda r, now: apply_presence_code(engine, r, settings, route, now)
                )
            else:
                await self._apply_forward_code(caller, route)
        except RoutingError as exc:
            log.info("presence code %s refused for %s: %s", route.code.code, caller.name, exc)
            return InviteOutcome("feedback", tone_ok=False, status=403, reason=str(exc))
        log.info("presence code %s (%s) applied for %s", route.code.code, action.value, caller.name)
        return InviteOutcome("feedback", tone_ok=True)

    async def _apply_forward_code(self, caller: User, route: PresenceCodeRoute) -> None:
        new = apply_forward_code(routing_settings(caller), route)
        names = {
            CodeAction.FORWARD_ALWAYS_ON: "forward_always",
            CodeAction.FORWARD_ALWAYS_OFF: "forward_always",
            CodeAction.FORWARD_BUSY_ON: "forward_busy",
            CodeAction.FORWARD_BUSY_OFF: "forward_busy",
            CodeAction.FORWARD_NO_ANSWER_ON: "forward_no_answer",
            CodeAction.FORWARD_NO_ANSWER_OFF: "forward_no_answer",
        }
        name = names[route.code.action]
        rule: Forwarding | None = getattr(new, name)
        from ..domain import Forwarding as DomainForwarding

        value = (
            DomainForwarding(enabled=rule.enabled, target=rule.target)
            if rule
            else DomainForwarding()
        )
        changes: dict[str, Any] = {name: value}
        updated = caller.with_changes(settings=replace(caller.settings, **changes))
        await self.core.update_user(updated, {}, caller)

    async def _route(
        self,
        call: Call,
        route: UserRoute | TrunkRoute,
        offer: MediaInfo | None,
        chain: ForwardChain,
    ) -> InviteOutcome | None:
        """Ring the route's target; an outcome when the call is rejected at once."""
        for _ in range(8):  # forward chains are bounded by ForwardChain's hop limit too
            if isinstance(route, TrunkRoute):
                return self._ring_trunk(call, route, offer)
            user = self.core.users.get(route.user)
            if user is None:
                return InviteOutcome("reject", status=404, reason="Not Found")
            call.callee_user = user.id
            record = self.core.presence.record(user.id)
            decision = decide_user_target(
                user.id,
                routing_settings(user),
                self.core.presence.engine.resolve(record),
                registered=self.core.bindings.count_user(user.id) > 0
                or self._has_trunk_device(user),
                active_calls=len(record.calls),
                now=self._now(),
                chain=chain,
                default_no_answer_timeout=float(
                    self.core.settings.current.no_answer_timeout_seconds
                ),
            )
            if isinstance(decision, Rejected):
                return InviteOutcome("reject", status=decision.status, reason=decision.reason)
            if isinstance(decision, Forward):
                chain = decision.chain
                call.forward_chain = chain.visited
                next_route = classify(decision.target, self._dial_context(user))
                if isinstance(next_route, (Rejected, PresenceCodeRoute)):
                    status = next_route.status if isinstance(next_route, Rejected) else 404
                    return InviteOutcome(
                        "reject",
                        status=status,
                        reason=f"forward target unreachable: {decision.target}",
                    )
                route = next_route
                continue
            assert isinstance(decision, Deliver)
            chain = decision.chain
            call.forward_chain = chain.visited
            ring_for = decision.no_answer_timeout or float(user.settings.no_answer_timeout_seconds)
            started = await self._ring_user(call, user, offer, ring_for or None)
            if not started:
                return InviteOutcome("reject", status=480, reason="Temporarily Unavailable")
            call.no_answer_target = decision.no_answer_target
            return None
        return InviteOutcome("reject", status=483, reason="Too Many Hops")

    def _has_trunk_device(self, user: User) -> bool:
        return any(d.trunk is not None and d.trunk.target for d in user.devices)

    def _user_targets(self, user: User) -> list[_Target]:
        """Where a user's handsets can be rung: every binding, and trunk ports with a target."""
        targets = [
            _Target(b.sidecar, b.contact_uri, b.source_host, b.source_port, b.transport, b.name)
            for b in self.core.bindings.for_user(user.id)
        ]
        for dev in user.devices:
            t = dev.trunk
            if t is None or not t.target or not t.sidecar:
                continue
            host, _, port = t.target.rpartition(":")
            targets.append(
                _Target(
                    t.sidecar,
                    f"sip:{t.request_uri_user or user.extension}@{t.target}",
                    host.strip("[]"),
                    int(port or 5060),
                    t.transport.value,
                    f"{user.name}/devices/{dev.id}",
                )
            )
        return targets

    async def _ring_user(
        self, call: Call, user: User, offer: MediaInfo | None, ring_for: float | None
    ) -> bool:
        settings = self.core.settings.current
        timeout = ring_for or float(settings.no_answer_timeout_seconds)
        caller_leg = call.legs.get(call.caller_leg)
        from_uri = self._caller_uri(call)
        display = ""
        if call.caller_user and (cu := self.core.users.get(call.caller_user)):
            display = cu.display_name
        started = 0
        for target in self._user_targets(user):
            leg_id = self._new_id()
            cmd = CreateLeg(
                call_id=call.id,
                leg_id=leg_id,
                request_uri=target.request_uri,
                host=target.host,
                port=target.port,
                transport=target.transport,
                from_uri=from_uri,
                from_display_name=display,
                to_uri=user.sip_uri,
                peer_media=offer,
                ring_timeout_seconds=int(timeout) + 5,
                bridge_leg_id=caller_leg.id
                if caller_leg and caller_leg.sidecar == target.sidecar
                else "",
            )
            if self._add_fork(call, leg_id, target.sidecar, user, target.registration, cmd):
                started += 1
        if started:
            call.no_answer_deadline = self._now() + timeout
            self._presence(user.id, "start", call.id, ringing=True)
            call.presence_users.add(user.id)
        return started > 0

    def _ring_trunk(
        self, call: Call, route: TrunkRoute, offer: MediaInfo | None
    ) -> InviteOutcome | None:
        trunk = self.core.settings.current.upstream_trunk
        host, _, port = trunk.address.rpartition(":")
        leg_id = self._new_id()
        caller_leg = call.legs.get(call.caller_leg)
        cmd = CreateLeg(
            call_id=call.id,
            leg_id=leg_id,
            request_uri=f"sip:{route.number}@{trunk.address}",
            host=host.strip("[]"),
            port=int(port or 5060),
            transport="udp",
            from_uri=self._caller_uri(call),
            from_display_name="",
            to_uri=f"sip:{route.number}@{trunk.address}",
            peer_media=offer,
            ring_timeout_seconds=int(self.core.settings.current.no_answer_timeout_seconds) + 30,
            bridge_leg_id=caller_leg.id
            if caller_leg and caller_leg.sidecar == trunk.sidecar
            else "",
        )
        leg = Leg(id=leg_id, sidecar=trunk.sidecar, role="callee", party=f"tel:{route.number}")
        call.legs[leg_id] = leg
        self.by_leg[leg_id] = call.id
        if not self.send(trunk.sidecar, cmd):
            leg.state = LegState.FAILED
            leg.status = 503
            return InviteOutcome(
                "reject", status=503, reason="Trunk sidecar unavailable", retry_after=30
            )
        return None

    def _caller_uri(self, call: Call) -> str:
        if call.caller_user and (u := self.core.users.get(call.caller_user)):
            return u.sip_uri
        return call.caller

    def _add_fork(
        self, call: Call, leg_id: str, sidecar: str, user: User, registration: str, cmd: CreateLeg
    ) -> bool:
        info = self.core.sidecars.sidecars.get(sidecar)
        if info is None or not info.connected:
            return False
        leg = Leg(
            id=leg_id,
            sidecar=sidecar,
            role="callee",
            party=user.name,
            user_id=user.id,
            registration=registration,
        )
        call.legs[leg_id] = leg
        self.by_leg[leg_id] = call.id
        if not self.send(sidecar, cmd):
            leg.state = LegState.FAILED
            leg.status = 503
            return False
        return True

    # --- progress from sidecars ----------------------------------------------------------------

    async def report_leg(self, rep: LegReport) -> None:
        call = self.calls.get(rep.call_id) or self.calls.get(self.by_leg.get(rep.leg_id, ""))
        if call is None:
            return  # a late report about a finished call
        leg = call.legs.get(rep.leg_id)
        if leg is None:
            raise NotFound("leg", rep.leg_id)
        now = self._now()
        for digit in rep.dtmf_digits:
            if digit in DTMF_DIGITS:
                call.dtmf.append((digit, leg.id, now))
        if rep.stats:
            leg.stats = list(rep.stats)
        if rep.media is not None:
            leg.media = rep.media
        if rep.direction and rep.direction != leg.direction:
            leg.direction = rep.direction
            await self._hold_changed(call, leg)
        if rep.state is not None and rep.state != leg.state and not leg.state.finished:
            leg.state = rep.state
            leg.status = rep.status or leg.status
            leg.reason = rep.reason or leg.reason
            if leg.role == "callee":
                await self._callee_progress(call, leg)
            else:
                await self._caller_progress(call, leg)
        self._publish(call)

    async def _callee_progress(self, call: Call, leg: Leg) -> None:
        caller_leg = call.legs.get(call.caller_leg)
        if (
            leg.state in (LegState.RINGING, LegState.EARLY_MEDIA)
            and call.state is CallState.RINGING
        ):
            if (
                caller_leg is not None
                and call.click_to_dial is None
                and caller_leg.role == "caller"
            ):
                status = 183 if leg.state is LegState.EARLY_MEDIA else 180
                self.send(
                    caller_leg.sidecar,
                    AnswerLeg(
                        call.id,
                        caller_leg.id,
                        status,
                        leg.media if status == 183 else None,
                        leg.id if leg.sidecar == caller_leg.sidecar else "",
                    ),
                )
        elif leg.state is LegState.ANSWERED:
            if call.winner and call.winner != leg.id:
                self.send(leg.sidecar, EndLeg(call.id, leg.id, 0, "answered elsewhere"))
                return
            call.winner = leg.id
            call.state = CallState.CONNECTED
            call.answer_time = self._now()
            call.no_answer_deadline = None
            for other in call.live_forks():
                if other.id != leg.id:
                    other.state = LegState.ENDED
                    other.reason = "answered elsewhere"
                    self.send(other.sidecar, EndLeg(call.id, other.id, 0, "answered elsewhere"))
            if caller_leg is not None and leg.media is not None:
                bridge = leg.id if leg.sidecar == caller_leg.sidecar else ""
                if call.click_to_dial is not None or caller_leg.state is LegState.ANSWERED:
                    self.send(
                        caller_leg.sidecar, UpdateMedia(call.id, caller_leg.id, leg.media, bridge)
                    )
                else:
                    self.send(
                        caller_leg.sidecar,
                        AnswerLeg(call.id, caller_leg.id, 200, leg.media, bridge),
                    )
            if leg.user_id:
                self._presence(leg.user_id, "answer", call.id)
        elif leg.state is LegState.FAILED:
            if not call.live_forks() and call.state is CallState.RINGING:
                statuses = [
                    f.status for f in call.forks() if f.state is LegState.FAILED and f.status
                ]
                await self._all_forks_failed(call, best_final_status(statuses))
        elif leg.state is LegState.ENDED and call.winner == leg.id:
            await self._finish(
                call, leg.reason or "callee hung up", 0, notify_caller=True, skip=leg.id
            )

    async def _all_forks_failed(self, call: Call, status: int) -> None:
        if status == 486 and call.callee_user and (user := self.core.users.get(call.callee_user)):
            fwd = user.settings.forward_busy
            if fwd.enabled and fwd.target and await self._forward(call, user, fwd.target):
                return
        await self._finish(call, f"no fork answered ({status})", status, notify_caller=True)

    async def _caller_progress(self, call: Call, leg: Leg) -> None:
        if (
            call.click_to_dial is not None
            and leg.state is LegState.ANSWERED
            and call.state is CallState.RINGING
        ):
            # Click-to-dial: the user picked up; now ring the target on their behalf.
            call.caller_leg = leg.id
            for other in call.legs.values():
                if other.role == "caller" and other.id != leg.id and not other.state.finished:
                    other.state = LegState.ENDED
                    self.send(other.sidecar, EndLeg(call.id, other.id, 0, "answered elsewhere"))
            target = call.click_to_dial
            call.click_to_dial = None
            caller = self.core.users.get(call.caller_user or "")
            route = classify(target, self._dial_context(caller))
            if isinstance(route, (Rejected, PresenceCodeRoute)):
                await self._finish(call, f"target {target} not reachable", 404, notify_caller=True)
                return
            call.click_to_dial = target  # keeps target answers as media updates, not 200s
            outcome = await self._route(call, route, leg.media, ForwardChain())
            if outcome is not None:
                await self._finish(call, outcome.reason, outcome.status, notify_caller=True)
        elif leg.state is LegState.FAILED and call.state is CallState.RINGING:
            callers = [lg for lg in call.legs.values() if lg.role == "caller"]
            if all(lg.state.finished for lg in callers):
                await self._finish(
                    call, "caller did not answer", leg.status or 480, notify_caller=False
                )
        elif leg.state is LegState.ENDED:
            await self._finish(
                call, leg.reason or "caller hung up", 0, notify_caller=False, skip=leg.id
            )

    async def _hold_changed(self, call: Call, leg: Leg) -> None:
        other = self._other_party(call, leg)
        if other is None or other.media is None or leg.media is None:
            return
        mirrored = {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}.get(
            leg.direction, "sendrecv"
        )
        media = replace(leg.media, direction=mirrored)
        bridge = leg.id if leg.sidecar == other.sidecar else ""
        self.send(other.sidecar, UpdateMedia(call.id, other.id, media, bridge))

    def _other_party(self, call: Call, leg: Leg) -> Leg | None:
        if leg.role == "caller":
            return call.legs.get(call.winner) if call.winner else None
        return call.legs.get(call.caller_leg)

    async def _forward(self, call: Call, user: User, target: str) -> bool:
        route = classify(target, self._dial_context(user))
        if isinstance(route, (Rejected, PresenceCodeRoute)):
            return False
        caller_leg = call.legs.get(call.caller_leg)
        offer = caller_leg.media if caller_leg else None
        chain = ForwardChain(visited=call.forward_chain or (user.id,))
        if call.callee_user and call.callee_user in call.presence_users:
            self._presence(call.callee_user, "end", call.id)
            call.presence_users.discard(call.callee_user)
        outcome = await self._route(call, route, offer, chain)
        return outcome is None

    # --- endings -------------------------------------------------------------------------------

    async def cancel(self, sidecar: str, leg_id: str) -> None:
        call = self.calls.get(self.by_leg.get(leg_id, ""))
        if call is None:
            return
        leg = call.legs.get(leg_id)
        if leg is not None:
            leg.state = LegState.ENDED
            leg.status = 487
        await self._finish(call, "caller cancelled", 487, notify_caller=False, skip=leg_id)

    async def bye(
        self, sidecar: str, leg_id: str, reason: str, stats: tuple[StreamStats, ...] = ()
    ) -> None:
        call = self.calls.get(self.by_leg.get(leg_id, ""))
        if call is None:
            return
        leg = call.legs.get(leg_id)
        if leg is not None:
            leg.state = LegState.ENDED
            leg.reason = reason
            if stats:
                leg.stats = list(stats)
        who = "caller" if leg is not None and leg.role == "caller" else "callee"
        why = f"{who} hung up" if reason in ("", "bye") else f"{who}: {reason}"
        await self._finish(call, why, 0, notify_caller=who != "caller", skip=leg_id)

    async def end_call(self, name: str) -> Call:
        call = self.get(name)
        if call is None:
            raise NotFound("call", name)
        await self._finish(call, "ended by administrator", 480, notify_caller=True)
        return call

    async def _finish(
        self, call: Call, reason: str, status: int, *, notify_caller: bool, skip: str = ""
    ) -> None:
        if call.state is CallState.ENDED:
            return
        was_connected = call.state is CallState.CONNECTED
        call.state = CallState.ENDED
        call.end_time = self._now()
        call.end_reason = reason
        call.final_status = 0 if was_connected else status
        for leg in call.legs.values():
            if leg.id == skip or leg.state.finished:
                continue
            if leg.id == call.caller_leg and leg.role == "caller" and not notify_caller:
                continue
            end_status = status if (leg.id == call.caller_leg and not was_connected) else 0
            self.send(leg.sidecar, EndLeg(call.id, leg.id, end_status, reason))
            leg.state = LegState.ENDED
        for uid in sorted(call.presence_users):
            self._presence(uid, "end", call.id)
        call.presence_users.clear()
        self.calls.pop(call.id, None)
        for leg_id in call.legs:
            self.by_leg.pop(leg_id, None)
        self._publish(call)
        await self._store_history(call)
        log.info("call %s ended: %s", call.id, reason)

    async def _store_history(self, call: Call) -> None:
        row = {
            "i": call.id,
            "s": call.start_time,
            "u": " ".join(sorted({u for u in (call.caller_user, call.callee_user) if u})),
            "d": json.dumps(call.to_dict()),
        }
        try:
            # Plain rows: the history rows of calls ending together share one executemany.
            await self.core.db.submit_rows([(_INSERT_HISTORY, [row])])
        except Exception as exc:  # history is a record; a failed write must not break calls
            log.warning("call %s not stored in history: %s", call.id, exc)

    async def history(self, user_id: str | None, offset: int, limit: int) -> list[Call]:
        query = "SELECT doc FROM call_history"
        params: dict[str, Any] = {"l": limit, "o": offset}
        if user_id:
            query += " WHERE users LIKE :u"
            params["u"] = f"%{user_id}%"
        query += " ORDER BY start_time DESC LIMIT :l OFFSET :o"
        async with self.core.db.engine.connect() as conn:
            rows = (await conn.execute(text(query), params)).all()
        return [Call.from_dict(json.loads(r.doc)) for r in rows]

    async def stored(self, call_id: str) -> Call | None:
        async with self.core.db.engine.connect() as conn:
            row = (
                await conn.execute(text("SELECT doc FROM call_history WHERE id=:i"), {"i": call_id})
            ).first()
        return Call.from_dict(json.loads(row.doc)) if row else None

    # --- timers --------------------------------------------------------------------------------

    async def sweep(self) -> None:
        now = self._now()
        for call in list(self.calls.values()):
            if (
                call.state is CallState.RINGING
                and call.no_answer_deadline
                and now >= call.no_answer_deadline
            ):
                call.no_answer_deadline = None
                user = self.core.users.get(call.callee_user or "")
                if user is not None and call.click_to_dial is None:
                    decision = decide_after_no_answer(
                        user.id,
                        routing_settings(user),
                        ForwardChain(visited=call.forward_chain or (user.id,)),
                    )
                    if isinstance(decision, Forward):
                        for fork in call.live_forks():
                            fork.state = LegState.ENDED
                            self.send(fork.sidecar, EndLeg(call.id, fork.id, 0, "no answer"))
                        if await self._forward(call, user, decision.target):
                            continue
                await self._finish(call, "no answer", 480, notify_caller=True)

    async def end_calls_on(self, lost: Collection[str]) -> None:
        """End every call with a live leg on one of the `lost` sidecars (past their grace).

        Such a call can no longer progress or be hung up from that side, yet it would keep its
        users "in a call" (and busy for routing) forever. Legs on connected sidecars get EndLeg.
        """
        for call in list(self.calls.values()):
            if any(leg.sidecar in lost and not leg.state.finished for leg in call.legs.values()):
                await self._finish(call, "sidecar lost", 480, notify_caller=True)

    # --- API-initiated -------------------------------------------------------------------------

    async def send_dtmf(self, name: str, digits: str, towards: User | None) -> None:
        call = self.get(name)
        if call is None:
            raise NotFound("call", name)
        bad = [d for d in digits if d not in DTMF_DIGITS]
        if not digits or len(digits) > 32 or bad:
            raise InvalidArgument(FieldViolation("digits", "1-32 of 0-9, *, #, A-D"))
        if call.state is not CallState.CONNECTED:
            raise FailedPrecondition(f"call {call.name} is not connected", subject=call.name)
        target = call.legs.get(call.winner)
        if towards is not None and towards.id == call.caller_user:
            target = call.legs.get(call.caller_leg)
        if target is None:
            raise FailedPrecondition(
                f"call {call.name} has no leg towards that party", subject=call.name
            )
        self.send(target.sidecar, InjectDtmf(call.id, target.id, digits))

    async def place_call(self, caller: User, to: str) -> Call:
        if not to.strip():
            raise InvalidArgument(FieldViolation("to", "required: an extension, number or URI"))
        route = classify(to, self._dial_context(caller))
        if isinstance(route, Rejected):
            raise FailedPrecondition(
                f"{to!r} cannot be called: {route.reason}", subject=to, kind="UNROUTABLE"
            )
        if isinstance(route, PresenceCodeRoute):
            raise InvalidArgument(FieldViolation("to", "presence codes are dialled on the handset"))
        call = Call(
            id=self._new_id(),
            caller=caller.name,
            dialled=to,
            caller_user=caller.id,
            start_time=self._now(),
            click_to_dial=to,
        )
        self.calls[call.id] = call
        started = 0
        for b in self.core.bindings.for_user(caller.id):
            leg_id = self._new_id()
            cmd = CreateLeg(
                call_id=call.id,
                leg_id=leg_id,
                request_uri=b.contact_uri,
                host=b.source_host,
                port=b.source_port,
                transport=b.transport,
                from_uri=f"sip:{to}@{self.core.settings.current.sip_domain}"
                if "@" not in to
                else to,
                from_display_name=f"Call to {to}",
                to_uri=caller.sip_uri,
                peer_media=None,
                ring_timeout_seconds=int(self.core.settings.current.no_answer_timeout_seconds),
            )
            info = self.core.sidecars.sidecars.get(b.sidecar)
            if info is None or not info.connected:
                continue
            leg = Leg(
                id=leg_id,
                sidecar=b.sidecar,
                role="caller",
                party=caller.name,
                user_id=caller.id,
                registration=b.name,
            )
            call.legs[leg_id] = leg
            self.by_leg[leg_id] = call.id
            if self.send(b.sidecar, cmd):
                started += 1
        if not started:
            self.calls.pop(call.id, None)
            for leg_id in call.legs:
                self.by_leg.pop(leg_id, None)
            raise FailedPrecondition(
                f"{caller.name} has no reachable handset to ring",
                subject=caller.name,
                kind="NOT_REGISTERED",
            )
        call.caller_leg = next(iter(call.legs))
        self._presence(caller.id, "start", call.id, ringing=True)
        call.presence_users.add(caller.id)
        self._publish(call)
        return call

    def active_count(self) -> int:
        return len(self.calls)
