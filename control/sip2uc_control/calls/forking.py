"""Ringing: a leg per place the callee can answer, on whichever sidecar it is; the first answer wins.

Provisional answers travel back to the caller's leg (180, or 183 with early media); the first
fork to answer is connected to the caller and every other fork is ended (RFC 3261 §16.7 step 5:
the proxy cancels the remaining branches). A fork on the caller's sidecar is bridged inside its
relay (`bridge_leg_id`); across sidecars media flows between the two relays.
"""

from __future__ import annotations

from collections.abc import Callable

from ..domain import User
from .commands import AnswerLeg, CreateLeg, EndLeg, UpdateMedia
from .model import Call, CallState, Leg, LegState, MediaInfo
from .party_presence import PartyPresence
from .ports import SettingsSource, SidecarLinks, UserLookup
from .registry import CallRegistry, new_id
from .routing import Target


class Forking:
    def __init__(
        self,
        registry: CallRegistry,
        sidecars: SidecarLinks,
        users: UserLookup,
        settings: SettingsSource,
        parties: PartyPresence,
        clock: Callable[[], float],
    ) -> None:
        self.registry = registry
        self.sidecars = sidecars
        self.users = users
        self.settings = settings
        self.parties = parties
        self.clock = clock

    # --- ringing -------------------------------------------------------------------------------

    def ring_user(
        self,
        call: Call,
        user: User,
        targets: list[Target],
        offer: MediaInfo | None,
        ring_for: float | None,
    ) -> bool:
        """Ring every target; False when none could be rung (no target on a connected sidecar)."""
        timeout = ring_for or float(self.settings.current.no_answer_timeout_seconds)
        caller_leg = call.legs.get(call.caller_leg)
        from_uri = self.caller_uri(call)
        display = ""
        if call.caller_user and (cu := self.users.get(call.caller_user)):
            display = cu.display_name
        started = 0
        for target in targets:
            leg_id = new_id()
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
            call.no_answer_deadline = self.clock() + timeout
            self.parties.started(call, user.id, ringing=True)
        return started > 0

    def caller_uri(self, call: Call) -> str:
        if call.caller_user and (u := self.users.get(call.caller_user)):
            return u.sip_uri
        return call.caller

    def _add_fork(
        self, call: Call, leg_id: str, sidecar: str, user: User, registration: str, cmd: CreateLeg
    ) -> bool:
        if not self.sidecars.is_connected(sidecar):
            return False
        leg = Leg(
            id=leg_id,
            sidecar=sidecar,
            role="callee",
            party=user.name,
            user_id=user.id,
            registration=registration,
        )
        self.registry.add_leg(call, leg)
        if not self.sidecars.send(sidecar, cmd):
            leg.state = LegState.FAILED
            leg.status = 503
            return False
        return True

    # --- answers from the forks ----------------------------------------------------------------

    def provisional(self, call: Call, leg: Leg) -> None:
        """A fork rings (180) or plays early media (183): tell the caller, while nobody answered."""
        if call.state is not CallState.RINGING:
            return
        self._caller_on_the_phone(call)
        caller_leg = call.legs.get(call.caller_leg)
        if caller_leg is not None and call.click_to_dial is None and caller_leg.role == "caller":
            status = 183 if leg.state is LegState.EARLY_MEDIA else 180
            # The caller's sidecar reports nothing of its own leg until it ends: what it was
            # told to send is the leg's state (`call show`).
            caller_leg.state = LegState.EARLY_MEDIA if status == 183 else LegState.RINGING
            self.sidecars.send(
                caller_leg.sidecar,
                AnswerLeg(
                    call.id,
                    caller_leg.id,
                    status,
                    leg.media if status == 183 else None,
                    leg.id if leg.sidecar == caller_leg.sidecar else "",
                ),
            )

    def answered(self, call: Call, leg: Leg) -> None:
        """A fork answered: the first connects the call and ends the others; a later one is ended."""
        if call.winner and call.winner != leg.id:
            self.sidecars.send(leg.sidecar, EndLeg(call.id, leg.id, 0, "answered elsewhere"))
            return
        self._caller_on_the_phone(call)
        caller_leg = call.legs.get(call.caller_leg)
        call.winner = leg.id
        call.state = CallState.CONNECTED
        call.answer_time = self.clock()
        call.no_answer_deadline = None
        for other in call.live_forks():
            if other.id != leg.id:
                other.state = LegState.ENDED
                other.reason = "answered elsewhere"
                self.sidecars.send(
                    other.sidecar, EndLeg(call.id, other.id, 0, "answered elsewhere")
                )
        if caller_leg is not None and leg.media is not None:
            bridge = leg.id if leg.sidecar == caller_leg.sidecar else ""
            if call.click_to_dial is not None or caller_leg.state is LegState.ANSWERED:
                self.sidecars.send(
                    caller_leg.sidecar, UpdateMedia(call.id, caller_leg.id, leg.media, bridge)
                )
            else:
                self.sidecars.send(
                    caller_leg.sidecar, AnswerLeg(call.id, caller_leg.id, 200, leg.media, bridge)
                )
                caller_leg.state = LegState.ANSWERED
        if leg.user_id:
            self.parties.answered(call, leg.user_id)

    def _caller_on_the_phone(self, call: Call) -> None:
        """The callee rings or answered: the caller is in a call from now (a repeat is a no-op,
        and a click-to-dial caller is in it since picking up)."""
        if call.caller_user:
            self.parties.started(call, call.caller_user, ringing=False)

    def end_unanswered(self, call: Call, reason: str) -> None:
        """End every fork still ringing (the callee did not answer in time)."""
        for fork in call.live_forks():
            fork.state = LegState.ENDED
            self.sidecars.send(fork.sidecar, EndLeg(call.id, fork.id, 0, reason))
