"""Calls over trunks: out to the UC platform with failover, and in from it.

Out: the trunks whose pattern takes the number are tried by priority (`TrunkLookup.candidates`
skips those that are down, full or on a sidecar that is not connected); a trunk leg that fails
with a 5xx or 408 (no response, RFC 3261 §17.1.1.2 timer B) hands the call to the next one,
like a proxy's serial forking (RFC 3261 §16.6). The number is written the trunk's way and the
caller presented by the trunk's identity policy.

In: a request from a trunk's address carries no credentials; the number it calls (Request-URI
user part, else To) is read the trunk's way and must pass its inbound pattern. It rings a user;
it reaches another trunk only when the trunk allows relaying.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..domain import User
from ..routing.dialplan import Rejected, TrunkRoute
from ..trunks import Trunk, from_trunk_number, to_trunk_number
from .commands import CreateLeg
from .model import Call, Leg, LegState, MediaInfo
from .ports import SettingsSource, SidecarLinks, TrunkLookup, UserLookup
from .registry import CallRegistry, new_id
from .requests import InviteInput, InviteOutcome
from .routing import user_part

#: Outcomes of a trunk leg after which the next trunk is tried: no response (408) or a
#: server failure (5xx); a 4xx or 6xx is the far end's answer and ends the call.
FAILOVER = frozenset({408, *range(500, 600)})
#: A trunk rings this much longer than the callee's no-answer time before the leg gives up.
RING_MARGIN_SECONDS = 30


@dataclass(frozen=True)
class InboundNumber:
    """What a call from a trunk asks for, ready for the dial plan."""

    dialled: str
    rejected: Rejected | None = None


class TrunkCalls:
    def __init__(
        self,
        registry: CallRegistry,
        trunks: TrunkLookup,
        sidecars: SidecarLinks,
        users: UserLookup,
        settings: SettingsSource,
        clock: Callable[[], float],
    ) -> None:
        self.registry = registry
        self.trunks = trunks
        self.sidecars = sidecars
        self.users = users
        self.settings = settings
        self.clock = clock

    # --- out -----------------------------------------------------------------------------------

    def ring(self, call: Call, route: TrunkRoute, offer: MediaInfo | None) -> InviteOutcome | None:
        """Send the call to the first usable trunk; an outcome when there is none."""
        found, why = self.trunks.candidates(route.number, self._busy(), route.emergency)
        # A relayed call never goes back out the trunk it came in on (a loop).
        found = [t for t in found if t.id != call.from_trunk]
        if not found:
            status = 403 if why.startswith("number not allowed") else 503
            return InviteOutcome("reject", status=status, reason=why, retry_after=30)
        call.trunk_number = route.number
        call.trunk_fallbacks = [t.id for t in found[1:]]
        if self._try(call, found[0], offer):
            return None
        return self._next(call, offer) or None

    def failed(self, call: Call, leg: Leg) -> bool:
        """A trunk leg failed: True when the call went on to another trunk."""
        if not leg.trunk or leg.status not in FAILOVER or not call.trunk_fallbacks:
            return False
        caller_leg = call.legs.get(call.caller_leg)
        offer = caller_leg.media if caller_leg else None
        return self._next(call, offer) is None

    def _next(self, call: Call, offer: MediaInfo | None) -> InviteOutcome | None:
        while call.trunk_fallbacks:
            trunk = self.trunks.get(call.trunk_fallbacks.pop(0))
            if trunk is not None and self._try(call, trunk, offer):
                return None
        return InviteOutcome("reject", status=503, reason="no trunk took the call", retry_after=30)

    def _try(self, call: Call, trunk: Trunk, offer: MediaInfo | None) -> bool:
        region = trunk.region or self.settings.current.default_region
        number = to_trunk_number(call.trunk_number, trunk.number_format, region)
        caller_leg = call.legs.get(call.caller_leg)
        leg_id = new_id()
        cmd = CreateLeg(
            call_id=call.id,
            leg_id=leg_id,
            request_uri=f"sip:{number}@{trunk.hostport}",
            host=trunk.address,
            port=trunk.port or trunk.default_port,
            transport=trunk.transport.value,
            from_uri=self._from_uri(call, trunk, region),
            from_display_name=self._display_name(call),
            to_uri=f"sip:{number}@{trunk.hostport}",
            peer_media=offer,
            ring_timeout_seconds=int(self.settings.current.no_answer_timeout_seconds)
            + RING_MARGIN_SECONDS,
            bridge_leg_id=caller_leg.id
            if caller_leg and caller_leg.sidecar == trunk.sidecar
            else "",
            headers=self._identity_headers(call, trunk, region),
            trunk_id=trunk.id,
        )
        leg = Leg(
            id=leg_id, sidecar=trunk.sidecar, role="callee", party=f"tel:{number}", trunk=trunk.id
        )
        self.registry.add_leg(call, leg)
        if not self.sidecars.send(trunk.sidecar, cmd):
            leg.state = LegState.FAILED
            leg.status = 503
            return False
        return True

    def _busy(self) -> dict[str, int]:
        busy: dict[str, int] = {}
        for call in self.registry.live():
            for leg in call.legs.values():
                if leg.trunk and not leg.state.finished:
                    busy[leg.trunk] = busy.get(leg.trunk, 0) + 1
            if call.from_trunk:
                busy[call.from_trunk] = busy.get(call.from_trunk, 0) + 1
        return busy

    def _caller(self, call: Call) -> User | None:
        return self.users.get(call.caller_user) if call.caller_user else None

    def _display_name(self, call: Call) -> str:
        user = self._caller(call)
        return user.display_name if user is not None else ""

    def _caller_number(self, call: Call, trunk: Trunk, region: str) -> str | None:
        user = self._caller(call)
        if user is None or not user.e164:
            return None
        return to_trunk_number(user.e164, trunk.number_format, region)

    def _from_uri(self, call: Call, trunk: Trunk, region: str) -> str:
        number = self._caller_number(call, trunk, region)
        if trunk.identity.caller_e164 and number:
            return f"sip:{number}@{self.settings.current.sip_domain}"
        user = self._caller(call)
        if user is not None:
            return user.sip_uri
        return (
            call.caller
            if call.caller.startswith(("sip:", "sips:", "tel:"))
            else "sip:anonymous@anonymous.invalid"
        )

    def _identity_headers(
        self, call: Call, trunk: Trunk, region: str
    ) -> tuple[tuple[str, str], ...]:
        domain = self.settings.current.sip_domain
        out: list[tuple[str, str]] = []
        number = self._caller_number(call, trunk, region)
        if trunk.identity.p_asserted_identity and number:
            out.append(("P-Asserted-Identity", f"<sip:{number}@{domain}>"))
        forwarder = self.users.get(call.forward_chain[0]) if call.forward_chain else None
        if forwarder is not None and forwarder.id != call.caller_user:
            who = forwarder.e164 or forwarder.extension or forwarder.id
            if forwarder.e164:
                who = to_trunk_number(forwarder.e164, trunk.number_format, region)
            if trunk.identity.diversion:
                out.append(("Diversion", f"<sip:{who}@{domain}>;reason=unknown;counter=1"))
            if trunk.identity.history_info:
                out.append(("History-Info", f"<sip:{who}@{domain}>;index=1"))
        return tuple(out)

    # --- in ------------------------------------------------------------------------------------

    def source(self, inp: InviteInput) -> Trunk | None:
        """The trunk an INVITE without credentials came from, if any."""
        return self.trunks.by_source(inp.sidecar, inp.source_host, inp.source_port)

    def inbound_number(self, trunk: Trunk, inp: InviteInput) -> InboundNumber:
        received = user_part(inp.request_uri) or user_part(inp.to_uri)
        if not received:
            return InboundNumber("", Rejected(status=484, reason="no number in the request"))
        if trunk.inbound_pattern and re.fullmatch(trunk.inbound_pattern, received) is None:
            return InboundNumber(received, Rejected(status=404, reason="number not served"))
        region = trunk.region or self.settings.current.default_region
        return InboundNumber(from_trunk_number(received, trunk.number_format, region))
