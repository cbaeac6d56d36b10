"""Supervising calls: the control plane's half of docs/calls.md.

The controller reacts to sidecar requests (`invite`, `report_leg`, `cancel`, `bye`), API calls
(`end_call`, `send_dtmf`, `place_call`) and the clock (`sweep`, `end_calls_on`) by updating the
call registry and the parties' presence and sending commands to sidecars. It never waits for a
sidecar: commands go out on the sidecars' streams and their results come back as leg reports.

Routing (`routing.py`) decides whom to ring, forking (`forking.py`) rings and picks the first
answer, click-to-dial (`click_to_dial.py`) rings the caller first; the controller ties them
together and ends calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import replace

from sip2uc_core.stream_stats import StreamStats

from ..domain import User
from ..errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    StorageUnavailable,
)
from ..routing.dialplan import (
    Forward,
    ForwardChain,
    PresenceCodeRoute,
    Rejected,
    TrunkRoute,
    UserRoute,
    decide_after_no_answer,
)
from ..trunks import Trunk
from ..watchers import WATCH_QUEUE_LIMIT, WatchQueue
from .click_to_dial import ClickToDial
from .commands import EndLeg, InjectDtmf, UpdateMedia
from .forking import Forking
from .model import Call, CallState, Leg, LegState, MediaInfo, best_final_status
from .party_presence import PartyPresence
from .ports import (
    Authenticate,
    BindingLookup,
    CallRecorder,
    PresenceRecords,
    SaveUserSettings,
    SettingsSource,
    SidecarLinks,
    TrunkLookup,
    UserLookup,
)
from .presence_codes import PresenceCodes
from .reconciliation import HALF_CALL, Reconciliation
from .registry import CallRegistry, new_id
from .requests import InviteInput, InviteOutcome, LegReport, LiveLeg
from .routing import CallRouter, RingTrunk, routing_settings, uri_host, user_part
from .trunk_calls import TrunkCalls

log = logging.getLogger(__name__)

DTMF_DIGITS = set("0123456789*#ABCD")


class CallController:
    def __init__(
        self,
        *,
        users: UserLookup,
        bindings: BindingLookup,
        presence: PresenceRecords,
        settings: SettingsSource,
        sidecars: SidecarLinks,
        history: CallRecorder,
        save_user_settings: SaveUserSettings,
        authenticate: Authenticate,
        clock: Callable[[], float],
        trunks: TrunkLookup,
    ) -> None:
        self.users = users
        self.sidecars = sidecars
        self.history = history
        self.settings = settings
        self.clock = clock
        self.registry = CallRegistry()
        self.parties = PartyPresence(users, presence)
        self.router = CallRouter(users, bindings, presence, settings, authenticate, clock, trunks)
        self.forks = Forking(self.registry, sidecars, users, settings, self.parties, clock)
        self.trunk_calls = TrunkCalls(self.registry, trunks, sidecars, users, settings, clock)
        self.codes = PresenceCodes(presence, save_user_settings)
        self.click_to_dial = ClickToDial(
            self.registry, self.router, bindings, sidecars, settings, self.parties, clock
        )
        self.reconciliation = Reconciliation(
            self.registry, users, presence, self.parties, sidecars, clock
        )

    # --- the registry, for the API -------------------------------------------------------------

    def live(self) -> list[Call]:
        return self.registry.live()

    def get(self, name: str) -> Call | None:
        return self.registry.get(name)

    def ended(self, name: str) -> Call | None:
        """A call that has just ended and whose history row is still being written."""
        return self.registry.ended(name)

    def watch(self, limit: int = WATCH_QUEUE_LIMIT) -> WatchQueue[Call]:
        return self.registry.watch(limit)

    def unwatch(self, q: WatchQueue[Call]) -> None:
        self.registry.unwatch(q)

    def active_count(self) -> int:
        return self.registry.count()

    # --- new calls from handsets ---------------------------------------------------------------

    async def invite(self, inp: InviteInput) -> InviteOutcome:
        caller = self.router.caller(inp)
        if caller is None and inp.credentials is None:
            trunk = self.trunk_calls.source(inp)
            if trunk is not None:
                return await self._invite_from_trunk(inp, trunk)
        if caller is None:
            return InviteOutcome("unauthorized", status=407, reason="Proxy Authentication Required")
        if caller.disabled:
            return InviteOutcome("reject", status=403, reason="User disabled")
        dialled = user_part(inp.request_uri)
        host = uri_host(inp.request_uri)
        route = self.router.classify(dialled if host is None else f"sip:{dialled}@{host}", caller)
        if isinstance(route, PresenceCodeRoute):
            return await self.codes.apply(caller, route)
        if isinstance(route, Rejected):
            return InviteOutcome("reject", status=route.status, reason=route.reason)
        call = Call(
            id=new_id(),
            caller=caller.name,
            dialled=dialled,
            caller_user=caller.id,
            start_time=self.clock(),
            caller_leg=inp.leg_id,
        )
        # The caller's presence moves once the callee rings (forking.py): a call refused before
        # that publishes nothing.
        return await self._place(call, inp, route, party=caller.name, user_id=caller.id)

    async def _invite_from_trunk(self, inp: InviteInput, trunk: Trunk) -> InviteOutcome:
        """A call from the UC platform: to a user (or, if the trunk may relay, out again)."""
        number = self.trunk_calls.inbound_number(trunk, inp)
        route = number.rejected or self.router.classify_from_trunk(number.dialled, trunk)
        if isinstance(route, (Rejected, PresenceCodeRoute)):
            status = route.status if isinstance(route, Rejected) else 404
            reason = route.reason if isinstance(route, Rejected) else "no such number"
            return InviteOutcome("reject", status=status, reason=reason)
        call = Call(
            id=new_id(),
            caller=inp.from_uri,
            dialled=number.dialled,
            caller_user=None,
            start_time=self.clock(),
            caller_leg=inp.leg_id,
            from_trunk=trunk.id,
        )
        return await self._place(call, inp, route, party=inp.from_uri, user_id=None)

    async def _place(
        self,
        call: Call,
        inp: InviteInput,
        route: UserRoute | TrunkRoute,
        *,
        party: str,
        user_id: str | None,
    ) -> InviteOutcome:
        """Register a new call with its caller's leg and route it; a route that fails at once
        ends it (the caller is answered with the outcome)."""
        call.legs[inp.leg_id] = Leg(
            id=inp.leg_id,
            sidecar=inp.sidecar,
            role="caller",
            party=party,
            user_id=user_id,
            state=LegState.TRYING,
            media=inp.offer,
        )
        self.registry.add(call)
        outcome = self._route(call, route, inp.offer, ForwardChain())
        if outcome is not None:
            await self._finish(call, outcome.reason, outcome.status, notify_caller=False)
            return outcome
        self.registry.publish(call)
        return InviteOutcome("routing", call_id=call.id)

    def _route(
        self,
        call: Call,
        route: UserRoute | TrunkRoute,
        offer: MediaInfo | None,
        chain: ForwardChain,
    ) -> InviteOutcome | None:
        """Ring the route's target; an outcome when the call is rejected at once."""
        plan = self.router.plan(call, route, chain)
        if isinstance(plan, Rejected):
            return InviteOutcome("reject", status=plan.status, reason=plan.reason)
        if isinstance(plan, RingTrunk):
            return self.trunk_calls.ring(call, plan.route, offer)
        targets = self.router.targets(plan.user)
        if not self.forks.ring_user(call, plan.user, targets, offer, plan.ring_for):
            return InviteOutcome("reject", status=480, reason="Temporarily Unavailable")
        call.no_answer_target = plan.no_answer_target
        return None

    def _forward(self, call: Call, user: User, target: str) -> bool:
        """Offer the call to `target` instead of `user` (busy or no answer); False if it cannot."""
        route = self.router.classify(target, user)
        if isinstance(route, (Rejected, PresenceCodeRoute)):
            return False
        caller_leg = call.legs.get(call.caller_leg)
        offer = caller_leg.media if caller_leg else None
        chain = ForwardChain(visited=call.forward_chain or (user.id,))
        if call.callee_user:
            self.parties.ended(call, call.callee_user)
        return self._route(call, route, offer, chain) is None

    # --- progress from sidecars ----------------------------------------------------------------

    async def report_leg(self, rep: LegReport) -> None:
        call = self.registry.calls.get(rep.call_id) or self.registry.of_leg(rep.leg_id)
        if call is None:
            return  # a late report about a finished call
        leg = call.legs.get(rep.leg_id)
        if leg is None:
            raise NotFound("leg", rep.leg_id)
        now = self.clock()
        for digit in rep.dtmf_digits:
            if digit in DTMF_DIGITS:
                call.dtmf.append((digit, leg.id, now))
        if rep.stats:
            leg.stats = list(rep.stats)
        if rep.media is not None:
            leg.media = rep.media
        if rep.direction and rep.direction != leg.direction:
            leg.direction = rep.direction
            self._hold_changed(call, leg)
        if rep.state is not None and rep.state != leg.state and not leg.state.finished:
            leg.state = rep.state
            leg.status = rep.status or leg.status
            leg.reason = rep.reason or leg.reason
            if leg.role == "callee":
                await self._callee_progress(call, leg)
            else:
                await self._caller_progress(call, leg)
        self.registry.publish(call)

    async def _callee_progress(self, call: Call, leg: Leg) -> None:
        if leg.state in (LegState.RINGING, LegState.EARLY_MEDIA):
            self.forks.provisional(call, leg)
        elif leg.state is LegState.ANSWERED:
            self.forks.answered(call, leg)
        elif leg.state is LegState.FAILED:
            if call.state is CallState.RINGING and self.trunk_calls.failed(call, leg):
                return
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
        if status == 486 and call.callee_user and (user := self.users.get(call.callee_user)):
            fwd = user.settings.forward_busy
            if fwd.enabled and fwd.target and self._forward(call, user, fwd.target):
                return
        await self._finish(call, f"no fork answered ({status})", status, notify_caller=True)

    async def _caller_progress(self, call: Call, leg: Leg) -> None:
        if (
            call.click_to_dial is not None
            and leg.state is LegState.ANSWERED
            and call.state is CallState.RINGING
        ):
            target = self.click_to_dial.picked_up(call, leg)
            if call.caller_user:
                self.parties.answered(call, call.caller_user)  # on the phone, hearing ringback
            caller = self.users.get(call.caller_user or "")
            route = self.router.classify(target, caller)
            if isinstance(route, (Rejected, PresenceCodeRoute)):
                await self._finish(call, f"target {target} not reachable", 404, notify_caller=True)
                return
            call.click_to_dial = target  # keeps target answers as media updates, not 200s
            outcome = self._route(call, route, leg.media, ForwardChain())
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

    def _hold_changed(self, call: Call, leg: Leg) -> None:
        """A party put the call on hold or resumed it: the other party's media follows (RFC 3264
        §8.4: sendonly is answered recvonly)."""
        other = self._other_party(call, leg)
        if other is None or other.media is None or leg.media is None:
            return
        mirrored = {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}.get(
            leg.direction, "sendrecv"
        )
        media = replace(leg.media, direction=mirrored)
        bridge = leg.id if leg.sidecar == other.sidecar else ""
        self.sidecars.send(other.sidecar, UpdateMedia(call.id, other.id, media, bridge))
        # The other handset is re-INVITEd with the mirrored direction: that is its leg's
        # direction now (its sidecar reports only what its own handset asks for).
        other.direction = mirrored

    def _other_party(self, call: Call, leg: Leg) -> Leg | None:
        if leg.role == "caller":
            return call.legs.get(call.winner) if call.winner else None
        return call.legs.get(call.caller_leg)

    # --- endings -------------------------------------------------------------------------------

    async def cancel(self, sidecar: str, leg_id: str) -> None:
        call = self.registry.of_leg(leg_id)
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
        call = self.registry.of_leg(leg_id)
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
        call = self.registry.get(name)
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
        call.end_time = self.clock()
        call.end_reason = reason
        call.final_status = 0 if was_connected else status
        for leg in call.legs.values():
            if leg.id == skip or leg.state.finished:
                continue
            if leg.id == call.caller_leg and leg.role == "caller" and not notify_caller:
                continue
            end_status = status if (leg.id == call.caller_leg and not was_connected) else 0
            self.sidecars.send(leg.sidecar, EndLeg(call.id, leg.id, end_status, reason))
            leg.state = LegState.ENDED
        self.parties.ended_all(call)
        self.registry.remove(call)
        self.registry.publish(call)
        try:
            await self.history.record(call)
        except StorageUnavailable:
            pass  # the store says so once for every write it refuses
        except Exception as exc:  # history is a record; a failed write must not break calls
            log.warning("call %s not stored in history: %s", call.id, exc)
        finally:
            self.registry.stored(call)
        log.info("call %s ended: %s", call.id, reason)

    # --- timers --------------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Calls nobody answered within the callee's no-answer time: forward or end them; calls
        rebuilt after a restart whose other party never came back: end them."""
        await self.end_half_calls()
        now = self.clock()
        for call in self.registry.snapshot():
            if (
                call.state is CallState.RINGING
                and call.no_answer_deadline
                and now >= call.no_answer_deadline
            ):
                call.no_answer_deadline = None
                user = self.users.get(call.callee_user or "")
                if user is not None and call.click_to_dial is None:
                    decision = decide_after_no_answer(
                        user.id,
                        routing_settings(user),
                        ForwardChain(visited=call.forward_chain or (user.id,)),
                    )
                    if isinstance(decision, Forward):
                        self.forks.end_unanswered(call, "no answer")
                        if self._forward(call, user, decision.target):
                            continue
                await self._finish(call, "no answer", 480, notify_caller=True)

    # --- reconciliation (reconciliation.py) ---------------------------------------------------

    def reconcile_presence(self, user_ids: Collection[str] | None = None) -> int:
        """Drop presence call entries of calls that are not live; returns the users changed."""
        return self.reconciliation.presence_of_calls(user_ids)

    def adopt(self, sidecar: str, legs: Collection[LiveLeg]) -> None:
        """A sidecar's session started with these legs: take back the calls we lost."""
        for call in self.reconciliation.adopt(sidecar, legs):
            log.info(
                "call %s taken back from sidecar %s (%d of its legs known)",
                call.id,
                sidecar,
                len(call.legs),
            )
            self.registry.publish(call)

    async def end_half_calls(self) -> None:
        grace = float(self.settings.current.sidecar_grace_seconds)
        for call in self.reconciliation.half_calls(grace):
            await self._finish(call, HALF_CALL, 480, notify_caller=True)

    async def end_calls_on(self, lost: Collection[str]) -> None:
        """End every call with a live leg on one of the `lost` sidecars (past their grace).

        Such a call can no longer progress or be hung up from that side, yet it would keep its
        users "in a call" (and busy for routing) forever. Legs on connected sidecars get EndLeg.
        """
        for call in self.registry.snapshot():
            if any(leg.sidecar in lost and not leg.state.finished for leg in call.legs.values()):
                await self._finish(call, "sidecar lost", 480, notify_caller=True)

    # --- API-initiated -------------------------------------------------------------------------

    async def send_dtmf(self, name: str, digits: str, towards: User | None) -> None:
        call = self.registry.get(name)
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
        self.sidecars.send(target.sidecar, InjectDtmf(call.id, target.id, digits))

    async def place_call(self, caller: User, to: str) -> Call:
        return self.click_to_dial.place(caller, to)
