"""Click-to-dial (`CallService.PlaceCall`): the caller's own handsets ring first; when one picks
up, the others stop and the target is rung on the caller's behalf (the controller routes it)."""

from __future__ import annotations

from collections.abc import Callable

from ..domain import User
from ..errors import FailedPrecondition, FieldViolation, InvalidArgument
from ..routing.dialplan import PresenceCodeRoute, Rejected
from .commands import CreateLeg, EndLeg
from .model import Call, Leg, LegState
from .party_presence import PartyPresence
from .ports import BindingLookup, SettingsSource, SidecarLinks
from .registry import CallRegistry, new_id
from .routing import CallRouter


class ClickToDial:
    def __init__(
        self,
        registry: CallRegistry,
        router: CallRouter,
        bindings: BindingLookup,
        sidecars: SidecarLinks,
        settings: SettingsSource,
        parties: PartyPresence,
        clock: Callable[[], float],
    ) -> None:
        self.registry = registry
        self.router = router
        self.bindings = bindings
        self.sidecars = sidecars
        self.settings = settings
        self.parties = parties
        self.clock = clock

    def place(self, caller: User, to: str) -> Call:
        """Ring every handset of `caller`; FailedPrecondition when `to` cannot be called or no
        handset of the caller can ring."""
        if not to.strip():
            raise InvalidArgument(FieldViolation("to", "required: an extension, number or URI"))
        route = self.router.classify(to, caller)
        if isinstance(route, Rejected):
            raise FailedPrecondition(
                f"{to!r} cannot be called: {route.reason}", subject=to, kind="UNROUTABLE"
            )
        if isinstance(route, PresenceCodeRoute):
            raise InvalidArgument(FieldViolation("to", "presence codes are dialled on the handset"))
        call = Call(
            id=new_id(),
            caller=caller.name,
            dialled=to,
            caller_user=caller.id,
            start_time=self.clock(),
            click_to_dial=to,
        )
        self.registry.add(call)
        settings = self.settings.current
        started = 0
        for b in self.bindings.for_user(caller.id):
            leg_id = new_id()
            cmd = CreateLeg(
                call_id=call.id,
                leg_id=leg_id,
                request_uri=b.contact_uri,
                host=b.source_host,
                port=b.source_port,
                transport=b.transport,
                from_uri=f"sip:{to}@{settings.sip_domain}" if "@" not in to else to,
                from_display_name=f"Call to {to}",
                to_uri=caller.sip_uri,
                peer_media=None,
                ring_timeout_seconds=int(settings.no_answer_timeout_seconds),
            )
            if not self.sidecars.is_connected(b.sidecar):
                continue
            leg = Leg(
                id=leg_id,
                sidecar=b.sidecar,
                role="caller",
                party=caller.name,
                user_id=caller.id,
                registration=b.name,
            )
            self.registry.add_leg(call, leg)
            if self.sidecars.send(b.sidecar, cmd):
                started += 1
        if not started:
            self.registry.remove(call)
            raise FailedPrecondition(
                f"{caller.name} has no reachable handset to ring",
                subject=caller.name,
                kind="NOT_REGISTERED",
            )
        call.caller_leg = next(iter(call.legs))
        self.parties.started(call, caller.id, ringing=True)
        self.registry.publish(call)
        return call

    def picked_up(self, call: Call, leg: Leg) -> str:
        """One of the caller's handsets answered: it becomes the caller's leg, the others stop.

        Returns the target to ring now; the call stops being "click-to-dial" until the controller
        has routed it (and marks it again so that the target's answer updates the caller's media
        instead of answering a leg that is already answered).
        """
        call.caller_leg = leg.id
        for other in call.legs.values():
            if other.role == "caller" and other.id != leg.id and not other.state.finished:
                other.state = LegState.ENDED
                self.sidecars.send(
                    other.sidecar, EndLeg(call.id, other.id, 0, "answered elsewhere")
                )
        target = call.click_to_dial
        assert target is not None
        call.click_to_dial = None
        return target
