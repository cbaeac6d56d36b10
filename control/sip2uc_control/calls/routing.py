"""Where a call goes: who is calling, what was dialled, and whose handsets are to ring.

The decisions are the dial plan's (`routing/dialplan.py`, pure); this module feeds it the user
directory, bindings, presence and settings, and follows forwarding to the user (or trunk) that
finally rings. It sends nothing: `forking.py` rings what it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from ipaddress import ip_address, ip_network

from ..domain import Forwarding as ForwardingSetting
from ..domain import User
from ..registrar import Refusal
from ..routing.dialplan import (
    Deliver,
    DialContext,
    Forward,
    ForwardChain,
    Forwarding,
    PresenceCodeRoute,
    Rejected,
    RouteDecision,
    TrunkRoute,
    UserRoute,
    UserRoutingSettings,
    classify,
    decide_user_target,
)
from ..trunks import Trunk
from .model import Call
from .ports import (
    Authenticate,
    BindingLookup,
    PresenceRecords,
    SettingsSource,
    TrunkLookup,
    UserLookup,
)
from .requests import InviteInput

# Forward chains are bounded by ForwardChain's hop limit too.
MAX_ROUTING_STEPS = 8


def user_part(uri: str) -> str:
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    return rest.split("@", 1)[0].split(";", 1)[0]


def uri_host(uri: str) -> str | None:
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    if "@" not in rest:
        return None
    return rest.split("@", 1)[1].split(";", 1)[0].split(":", 1)[0] or None


def routing_settings(user: User) -> UserRoutingSettings:
    s = user.settings

    def fwd(f: ForwardingSetting) -> Forwarding | None:
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


@dataclass(frozen=True)
class Target:
    """One place a user can be rung: a binding or a trunk port."""

    sidecar: str
    request_uri: str
    host: str
    port: int
    transport: str
    registration: str


@dataclass(frozen=True)
class RingUser:
    """Ring every target of `user`; after `ring_for` seconds (None: the default) no answer."""

    user: User
    ring_for: float | None
    no_answer_target: str | None


@dataclass(frozen=True)
class RingTrunk:
    route: TrunkRoute


class CallRouter:
    def __init__(
        self,
        users: UserLookup,
        bindings: BindingLookup,
        presence: PresenceRecords,
        settings: SettingsSource,
        authenticate: Authenticate,
        clock: Callable[[], float],
        trunks: TrunkLookup,
    ) -> None:
        self.users = users
        self.bindings = bindings
        self.presence = presence
        self.settings = settings
        self.authenticate = authenticate
        self.clock = clock
        self.trunks = trunks

    # --- who calls, and what they dialled ------------------------------------------------------

    def caller(self, inp: InviteInput) -> User | None:
        """The user an INVITE comes from: its digest credentials, else a trunk device's source.

        None when neither proves anyone (answered 407 whatever the reason, like the registrar).
        """
        if inp.credentials is not None:
            found = self.authenticate(inp.credentials, "INVITE", inp.source_host)
            return None if isinstance(found, Refusal) else found[0]
        return self._trunk_caller(inp.sidecar, inp.source_host, inp.source_port, inp.from_uri)

    def _trunk_caller(self, sidecar: str, host: str, port: int, from_uri: str) -> User | None:
        """The user a trunk device sends for: source in its network, From user = its RURI user."""
        try:
            source = ip_address(host)
        except ValueError:
            return None
        from_user = user_part(from_uri)
        for user in self.users.each():
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

    def classify(self, dialled: str, caller: User | None) -> RouteDecision:
        return classify(dialled, self.dial_context(caller))

    def classify_from_trunk(self, dialled: str, trunk: Trunk) -> RouteDecision:
        """A call from a trunk: users only, unless the trunk may relay to another trunk. It has
        no user, so presence codes are refused."""
        ctx = self.dial_context(None)
        if trunk.allow_relay:
            ctx = replace(ctx, caller=trunk.name, caller_may_use_trunk=True)
        route = classify(dialled, ctx)
        if isinstance(route, PresenceCodeRoute) or (
            isinstance(route, Rejected) and route.status == 403
        ):
            return Rejected(status=404, reason="no such number")
        return route

    def dial_context(self, caller: User | None) -> DialContext:
        settings = self.settings.current
        users = self.users
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

        return DialContext(
            caller=caller.id if caller else None,
            codes=settings.code_table,
            find_extension=users.id_by_extension,
            find_e164=users.id_by_e164,
            find_uri_user=find_uri_user,
            default_region=settings.default_region or None,
            # Each trunk's own pattern decides which numbers it takes (`trunk_calls.py`).
            trunk="trunks" if any(not t.disabled for t in self.trunks.all()) else None,
            caller_may_use_trunk=caller is not None,
        )

    # --- whom to ring --------------------------------------------------------------------------

    def plan(
        self, call: Call, route: UserRoute | TrunkRoute, chain: ForwardChain
    ) -> RingUser | RingTrunk | Rejected:
        """Follow forwarding from `route` to what rings, recording on `call` whom it is for
        (`callee_user`) and the users it passed (`forward_chain`)."""
        for _ in range(MAX_ROUTING_STEPS):
            if isinstance(route, TrunkRoute):
                return RingTrunk(route)
            user = self.users.get(route.user)
            if user is None:
                return Rejected(status=404, reason="Not Found")
            call.callee_user = user.id
            record = self.presence.record(user.id)
            decision = decide_user_target(
                user.id,
                routing_settings(user),
                self.presence.engine.resolve(record),
                registered=self.bindings.count_user(user.id) > 0 or _has_trunk_target(user),
                active_calls=len(record.calls),
                now=self.clock(),
                chain=chain,
                default_no_answer_timeout=float(self.settings.current.no_answer_timeout_seconds),
            )
            if isinstance(decision, Rejected):
                return decision
            chain = decision.chain
            call.forward_chain = chain.visited
            if isinstance(decision, Forward):
                next_route = self.classify(decision.target, user)
                if isinstance(next_route, (Rejected, PresenceCodeRoute)):
                    status = next_route.status if isinstance(next_route, Rejected) else 404
                    return Rejected(
                        status=status, reason=f"forward target unreachable: {decision.target}"
                    )
                route = next_route
                continue
            assert isinstance(decision, Deliver)
            ring_for = decision.no_answer_timeout or float(user.settings.no_answer_timeout_seconds)
            return RingUser(user, ring_for or None, decision.no_answer_target)
        return Rejected(status=483, reason="Too Many Hops")

    def targets(self, user: User) -> list[Target]:
        """Where a user's handsets can be rung: every binding, and trunk ports with a target."""
        targets = [
            Target(b.sidecar, b.contact_uri, b.source_host, b.source_port, b.transport, b.name)
            for b in self.bindings.for_user(user.id)
        ]
        for dev in user.devices:
            t = dev.trunk
            if t is None or not t.target or not t.sidecar:
                continue
            host, _, port = t.target.rpartition(":")
            targets.append(
                Target(
                    t.sidecar,
                    f"sip:{t.request_uri_user or user.extension}@{t.target}",
                    host.strip("[]"),
                    int(port or 5060),
                    t.transport.value,
                    f"{user.name}/devices/{dev.id}",
                )
            )
        return targets


def _has_trunk_target(user: User) -> bool:
    return any(d.trunk is not None and d.trunk.target for d in user.devices)
