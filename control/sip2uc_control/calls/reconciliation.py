"""Calls the control plane lost track of, put right (docs/calls.md, "Reconciliation").

The registry of live calls is in memory: a control plane that restarts (a crash, an upgrade)
starts with none, while its sidecars may still carry calls whose media flows between handsets.
Two things follow:

- The call layer of presence is derived from calls that exist. At start-up, and whenever asked
  (clearing a user's presence), call entries of presence records whose call is not live are
  dropped; without that a user stays "in a call" across restarts for ever.
- A sidecar says in its hello which legs it carries. An established leg the control plane does
  not know is *adopted*: its call is rebuilt from the legs that come back (the caller's and the
  answering callee's, on whichever sidecars), the parties are in a call again and it shows in
  `ListCalls`, so hanging up, hold and `EndCall` work as before. A leg still being set up is
  ended: the routing state it needs (forks, no-answer timers) is gone, and the caller can dial
  again. A rebuilt call still missing one party when the sidecar grace has passed is ended.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..domain import User
from .commands import EndLeg
from .model import Call, CallState, Leg, LegState
from .party_presence import PartyPresence
from .ports import PresenceRecords, SidecarLinks, UserLookup
from .registry import CallRegistry
from .requests import LiveLeg

#: The end reason of a leg that was being set up when the control plane lost its call.
NOT_KNOWN = "call not known after a control plane restart"
#: The end reason of a rebuilt call whose other party never came back.
HALF_CALL = "other party not back after a control plane restart"


class Reconciliation:
    def __init__(
        self,
        registry: CallRegistry,
        users: UserLookup,
        presence: PresenceRecords,
        parties: PartyPresence,
        sidecars: SidecarLinks,
        clock: Callable[[], float],
    ) -> None:
        self.registry = registry
        self.users = users
        self.presence = presence
        self.parties = parties
        self.sidecars = sidecars
        self.clock = clock

    def presence_of_calls(self, user_ids: Iterable[str] | None = None) -> int:
        """Drop presence call entries whose call is not live (of `user_ids`, or everyone's);
        returns how many users changed."""
        engine = self.presence.engine
        live = frozenset(self.registry.calls)
        wanted = None if user_ids is None else frozenset(user_ids)
        changed = 0
        for uid, calls in self.presence.in_calls().items():
            if (wanted is not None and uid not in wanted) or calls <= live:
                continue
            self.presence.apply(uid, lambda r, now: engine.on_calls_reconciled(r, live, now))
            changed += 1
        return changed

    def adopt(self, sidecar: str, legs: Iterable[LiveLeg]) -> list[Call]:
        """Take back the established legs `sidecar` carries that no live call has; end the
        others. Returns the calls that changed (to publish)."""
        changed: dict[str, Call] = {}
        for live in legs:
            known = self.registry.of_leg(live.leg_id)
            if known is not None:
                continue  # the sidecar came back within its grace: nothing was lost
            if self.registry.ended_here(live.call_id):
                # It ended while the sidecar was away and could not hear of it.
                self.sidecars.send(sidecar, EndLeg(live.call_id, live.leg_id, 0, "call ended"))
                continue
            if not live.established:
                self.sidecars.send(sidecar, EndLeg(live.call_id, live.leg_id, 480, NOT_KNOWN))
                continue
            call = self.registry.calls.get(live.call_id) or self._rebuilt(live.call_id)
            self._add(call, sidecar, live)
            changed[call.id] = call
        return list(changed.values())

    def half_calls(self, grace: float) -> list[Call]:
        """Rebuilt calls still missing a party `grace` seconds after they came back."""
        now = self.clock()
        return [
            call
            for call in self.registry.snapshot()
            if call.adopted_at is not None
            and now - call.adopted_at >= grace
            and not (call.caller_leg and call.winner)
        ]

    def _rebuilt(self, call_id: str) -> Call:
        now = self.clock()
        call = Call(
            id=call_id,
            caller="",
            dialled="",
            caller_user=None,
            start_time=now,
            state=CallState.CONNECTED,
            answer_time=now,
            adopted_at=now,
        )
        self.registry.add(call)
        return call

    def _add(self, call: Call, sidecar: str, live: LiveLeg) -> None:
        user = self._user(live)
        # A leg we asked for answers as the callee, unless the callee is back already: then it
        # is the caller's own handset of a click-to-dial call.
        caller = live.caller or (bool(call.winner) and not call.caller_leg)
        leg = Leg(
            id=live.leg_id,
            sidecar=sidecar,
            role="caller" if caller else "callee",
            party=user.name if user is not None else live.party,
            user_id=user.id if user is not None else None,
            state=LegState.ANSWERED,
            media=live.media,
            direction=live.direction,
        )
        self.registry.add_leg(call, leg)
        if caller:
            call.caller_leg = leg.id
            call.caller = leg.party
            call.caller_user = leg.user_id
        else:
            call.winner = leg.id
            call.callee_user = leg.user_id
            if user is not None:
                call.dialled = user.extension or user.sip_uri
        if leg.user_id is not None:
            self.parties.started(call, leg.user_id, ringing=False)

    def _user(self, live: LiveLeg) -> User | None:
        if not live.party:
            return None  # a trunk's caller: authorised by address, not a user
        if live.caller:
            found = self.users.by_digest_username(live.party)
            return found[0] if found is not None else None
        return self.users.resolve(live.party)
