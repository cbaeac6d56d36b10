"""The dial plan: what a dialled string means, and how a call to a user is handled.

Two pure steps, both returning data the control plane acts on:

1. :func:`classify` turns what a handset put in the Request-URI user part into a route. It first
   normalises it (:func:`normalise`: RFC 3261 §19.1.2 escapes such as ``%23`` for ``#``, RFC 3966
   §5.1.1 visual separators, an optional ``sip:``/``tel:`` scheme, host and parameters), then
   tries, in order:

   a. a presence/forwarding code (``codes.CodeTable``) - only for a known caller;
   b. an emergency number of the configured region, straight to the trunk whatever the caller's
      trunk permission, and before extensions so a clashing extension can never capture it;
   c. an internal extension (lookup callback);
   d. the E.164 number of a user (national and ``00`` forms normalised with the default region);
   e. a user's SIP URI user part (for names such as ``alice``);
   f. the upstream trunk, if configured, for a number that is possible in its region; a caller
      without trunk permission, or a number outside the trunk's allowed pattern, gets 403;
   g. otherwise 404 (484 for an empty string or a forward code without its target).

2. :func:`decide_user_target` says what to do with a call for a user, given the user's
   call-handling settings, effective presence and number of active calls:

   a. a user already on this call's forward chain -> 482 Loop Detected; a chain longer than
      ``max_hops`` -> 483 Too Many Hops (RFC 3261 §21.4.20, §21.4.21);
   b. forward-always enabled -> forward (even when offline or in DND);
   c. DND in effect -> forward-busy target, else 486 Busy Here;
   d. no binding registered -> forward-no-answer target (nobody can answer), else
      480 Temporarily Unavailable;
   e. in a call and call waiting off -> forward-busy target, else 486;
   f. deliver: ring the user's bindings; with forward-no-answer enabled, ring for the no-answer
      timeout and then forward.

   A handset that itself answers busy, or a ring that times out, is handled by
   :func:`decide_after_busy` / :func:`decide_after_no_answer`.

Forward targets are dialled strings: the caller routes them with :func:`classify` (as the
forwarding user, so that user's trunk permission applies) and, for a user, calls
:func:`decide_user_target` again with the returned chain.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Self
from urllib.parse import unquote

import phonenumbers

from sip2uc_control.presence import (
    Availability,
    EffectivePresence,
    PresenceEngine,
    PresenceRecord,
    Source,
    Transition,
)

from .codes import DEFAULT_CODES, CodeAction, CodeMatch, CodeTable, PresenceCode

__all__ = [
    "DEFAULT_MAX_HOPS",
    "DEFAULT_NO_ANSWER_TIMEOUT",
    "Deliver",
    "DialContext",
    "Dialled",
    "Forward",
    "ForwardChain",
    "ForwardReason",
    "Forwarding",
    "MatchedBy",
    "PresenceCodeRoute",
    "Rejected",
    "RouteDecision",
    "RoutingError",
    "TargetDecision",
    "TrunkRoute",
    "UserRoute",
    "UserRoutingSettings",
    "apply_forward_code",
    "apply_presence_code",
    "classify",
    "decide_after_busy",
    "decide_after_no_answer",
    "decide_user_target",
    "normalise",
    "to_e164",
]

# SIP final responses the dial plan can decide (RFC 3261 §21.4).
FORBIDDEN = 403
NOT_FOUND = 404
TEMPORARILY_UNAVAILABLE = 480
LOOP_DETECTED = 482
TOO_MANY_HOPS = 483
ADDRESS_INCOMPLETE = 484
BUSY_HERE = 486

DEFAULT_NO_ANSWER_TIMEOUT = 20.0
DEFAULT_MAX_HOPS = 5
NO_ANSWER_TIMEOUT_RANGE = (5, 300)
TARGET_MAX_LENGTH = 128

# RFC 3966 §5.1.1 visual separators, plus the space people type in the API.
_SEPARATORS = str.maketrans("", "", "-.() \t")
_NUMBER = re.compile(r"\+?[0-9*#]+")
_TARGET = re.compile(r"[^\s<>\"]{1,128}")


class RoutingError(ValueError):
    """Invalid routing input; ``field`` names it and ``status`` is the SIP answer it deserves."""

    def __init__(self, field: str, message: str, status: int = FORBIDDEN) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


# -- normalising ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialled:
    """A normalised dialled string: a number (digits, ``*``, ``#``, leading ``+``) or a name."""

    value: str
    is_number: bool
    host: str | None = None


def normalise(dialled: str) -> Dialled:
    """Reduce what a handset or API sent to the form the dial plan matches on."""
    text = unquote(dialled.strip(), errors="replace")
    lowered = text.lower()
    for scheme in ("sips:", "sip:", "tel:"):
        if lowered.startswith(scheme):
            text = text[len(scheme) :]
            break
    user, _, host = text.partition("@")
    # User parameters (RFC 3261 §19.1.6, e.g. ";phone-context=") and URI parameters are not part
    # of what was dialled.
    user = user.partition(";")[0]
    host = host.partition(";")[0].partition(">")[0] or ""
    compact = user.translate(_SEPARATORS)
    if compact and _NUMBER.fullmatch(compact):
        return Dialled(value=compact, is_number=True, host=host or None)
    return Dialled(value=user, is_number=False, host=host or None)


def to_e164(number: str, region: str | None) -> str | None:
    """``number`` as E.164 (``+4930123456``) if it is a possible number, else None.

    Without a region only numbers written with ``+`` can be understood.
    """
    if not number or "*" in number or "#" in number:
        return None
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def _is_emergency(number: str, region: str | None) -> bool:
    if region is None or not number.isdigit():
        return False
    return bool(phonenumbers.is_emergency_number(number, region))


# -- classify ------------------------------------------------------------------------------------


Lookup = Callable[[str], str | None]
UriLookup = Callable[[str, str | None], str | None]


def _nobody(_: str) -> str | None:
    return None


def _nobody_at(_: str, __: str | None) -> str | None:
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class DialContext:
    """What :func:`classify` needs to know; lookups return a user id or None.

    ``caller`` is the calling user's id, None for calls arriving from the UC side or an API call
    without a user (those may not use codes or the trunk). ``default_region`` is an ISO 3166
    code ("DE") for national numbers; ``trunk`` names the upstream trunk, None when there is none.
    """

    caller: str | None
    codes: CodeTable = DEFAULT_CODES
    find_extension: Lookup = _nobody
    find_e164: Lookup = _nobody
    find_uri_user: UriLookup = _nobody_at
    default_region: str | None = None
    trunk: str | None = None
    caller_may_use_trunk: bool = True
    #: Numbers (E.164) the trunk may be used for; None: any. Emergency numbers always pass.
    trunk_pattern: re.Pattern[str] | None = None


class MatchedBy(StrEnum):
    EXTENSION = "extension"
    E164 = "e164"
    URI = "uri"


@dataclass(frozen=True, slots=True, kw_only=True)
class PresenceCodeRoute:
    """Answer the call with a confirmation and apply the code for the caller."""

    code: PresenceCode
    target: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRoute:
    user: str
    matched_by: MatchedBy


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkRoute:
    trunk: str
    number: str  # E.164, or the digits as dialled for an emergency short number
    emergency: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    status: int
    reason: str


RouteDecision = PresenceCodeRoute | UserRoute | TrunkRoute | Rejected


def classify(dialled: str, ctx: DialContext) -> RouteDecision:
    """Route ``dialled`` (a Request-URI user part, or a URI/number from the API)."""
    target = normalise(dialled)
    if not target.value:
        return Rejected(status=ADDRESS_INCOMPLETE, reason="nothing dialled")
    if not target.is_number:
        user = ctx.find_uri_user(target.value, target.host)
        if user is not None:
            return UserRoute(user=user, matched_by=MatchedBy.URI)
        return Rejected(status=NOT_FOUND, reason="no such user")

    number = target.value
    if number[0] in "*#":
        return _classify_code(number, ctx)

    if ctx.trunk is not None and _is_emergency(number, ctx.default_region):
        return TrunkRoute(trunk=ctx.trunk, number=number, emergency=True)

    if not number.startswith("+"):
        user = ctx.find_extension(number)
        if user is not None:
            return UserRoute(user=user, matched_by=MatchedBy.EXTENSION)

    e164 = to_e164(number, ctx.default_region)
    if e164 is not None:
        user = ctx.find_e164(e164)
        if user is not None:
            return UserRoute(user=user, matched_by=MatchedBy.E164)

    # A number-looking SIP user part ("sip:1234@host") of a user without such an extension.
    user = ctx.find_uri_user(number, target.host)
    if user is not None:
        return UserRoute(user=user, matched_by=MatchedBy.URI)

    if ctx.trunk is not None and e164 is not None:
        if ctx.caller is None or not ctx.caller_may_use_trunk:
            return Rejected(status=FORBIDDEN, reason="not allowed to call external numbers")
        if ctx.trunk_pattern is not None and not ctx.trunk_pattern.fullmatch(e164):
            return Rejected(status=FORBIDDEN, reason="number not allowed on the trunk")
        return TrunkRoute(trunk=ctx.trunk, number=e164)
    return Rejected(status=NOT_FOUND, reason="no such number")


def _classify_code(number: str, ctx: DialContext) -> RouteDecision:
    match: CodeMatch | None = ctx.codes.match(number)
    if match is None:
        return Rejected(status=NOT_FOUND, reason="unknown code")
    if ctx.caller is None:
        return Rejected(status=FORBIDDEN, reason="codes need a calling user")
    if match.code.action.takes_target and match.target is None:
        return Rejected(status=ADDRESS_INCOMPLETE, reason="the code needs a number after it")
    return PresenceCodeRoute(code=match.code, target=match.target)


# -- user settings -------------------------------------------------------------------------------


def _check_target(target: object, field: str) -> str:
    if not isinstance(target, str) or not _TARGET.fullmatch(target):
        raise RoutingError(field, f"expected a number or SIP URI, got {target!r}", 400)
    if target[0] in "*#":
        raise RoutingError(field, "a code cannot be a forward target", 400)
    return target


@dataclass(frozen=True, slots=True, kw_only=True)
class Forwarding:
    """A forwarding rule; switching it off keeps the target for switching it on again."""

    enabled: bool
    target: str

    def __post_init__(self) -> None:
        _check_target(self.target, "target")

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "target": self.target}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], field: str) -> Self:
        if not isinstance(data, Mapping):
            raise RoutingError(field, "expected an object with enabled and target", 400)
        enabled = data.get("enabled")
        if not isinstance(enabled, bool):
            raise RoutingError(f"{field}.enabled", f"expected true or false, got {enabled!r}", 400)
        return cls(enabled=enabled, target=_check_target(data.get("target"), f"{field}.target"))


def _active(rule: Forwarding | None) -> str | None:
    return rule.target if rule is not None and rule.enabled else None


_FORWARD_FIELDS = ("forward_always", "forward_busy", "forward_no_answer")


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRoutingSettings:
    """A user's call handling; ``no_answer_timeout`` None means the server default."""

    dnd_allowed: bool = True
    call_waiting: bool = True
    forward_always: Forwarding | None = None
    forward_busy: Forwarding | None = None
    forward_no_answer: Forwarding | None = None
    no_answer_timeout: float | None = None

    def __post_init__(self) -> None:
        timeout = self.no_answer_timeout
        if timeout is not None:
            low, high = NO_ANSWER_TIMEOUT_RANGE
            if (
                isinstance(timeout, bool)
                or not isinstance(timeout, int | float)
                or not math.isfinite(timeout)
                or not low <= timeout <= high
            ):
                raise RoutingError(
                    "no_answer_timeout", f"expected {low}-{high} seconds, got {timeout!r}", 400
                )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "dnd_allowed": self.dnd_allowed,
            "call_waiting": self.call_waiting,
            "no_answer_timeout": self.no_answer_timeout,
        }
        for name in _FORWARD_FIELDS:
            rule: Forwarding | None = getattr(self, name)
            data[name] = None if rule is None else rule.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        if not isinstance(data, Mapping):
            raise RoutingError("settings", "expected an object", 400)
        flags: dict[str, bool] = {}
        for name in ("dnd_allowed", "call_waiting"):
            value = data.get(name, True)
            if not isinstance(value, bool):
                raise RoutingError(name, f"expected true or false, got {value!r}", 400)
            flags[name] = value
        rules: dict[str, Forwarding | None] = {}
        for name in _FORWARD_FIELDS:
            raw = data.get(name)
            rules[name] = None if raw is None else Forwarding.from_dict(raw, name)
        return cls(
            dnd_allowed=flags["dnd_allowed"],
            call_waiting=flags["call_waiting"],
            forward_always=rules["forward_always"],
            forward_busy=rules["forward_busy"],
            forward_no_answer=rules["forward_no_answer"],
            no_answer_timeout=data.get("no_answer_timeout"),
        )


# -- applying codes ------------------------------------------------------------------------------


_FORWARD_ACTIONS: dict[CodeAction, tuple[str, bool]] = {
    CodeAction.FORWARD_ALWAYS_ON: ("forward_always", True),
    CodeAction.FORWARD_ALWAYS_OFF: ("forward_always", False),
    CodeAction.FORWARD_BUSY_ON: ("forward_busy", True),
    CodeAction.FORWARD_BUSY_OFF: ("forward_busy", False),
    CodeAction.FORWARD_NO_ANSWER_ON: ("forward_no_answer", True),
    CodeAction.FORWARD_NO_ANSWER_OFF: ("forward_no_answer", False),
}


def apply_forward_code(
    settings: UserRoutingSettings, route: PresenceCodeRoute
) -> UserRoutingSettings:
    """The settings after a forwarding code; an "off" code keeps the target for later."""
    try:
        name, enabled = _FORWARD_ACTIONS[route.code.action]
    except KeyError:
        raise RoutingError("action", f"{route.code.action} is not a forwarding code") from None
    current: Forwarding | None = getattr(settings, name)
    if enabled:
        if route.target is None:
            raise RoutingError("target", "a forward-on code needs a target", ADDRESS_INCOMPLETE)
        wanted = Forwarding(enabled=True, target=route.target)
        return settings if current == wanted else _with_rule(settings, name, wanted)
    if current is None or not current.enabled:
        return settings
    return _with_rule(settings, name, Forwarding(enabled=False, target=current.target))


def _with_rule(settings: UserRoutingSettings, name: str, rule: Forwarding) -> UserRoutingSettings:
    if name == "forward_always":
        return replace(settings, forward_always=rule)
    if name == "forward_busy":
        return replace(settings, forward_busy=rule)
    return replace(settings, forward_no_answer=rule)


def apply_presence_code(
    engine: PresenceEngine,
    record: PresenceRecord,
    settings: UserRoutingSettings,
    route: PresenceCodeRoute,
    now: float,
) -> Transition:
    """The caller's presence after a presence code (see the table in ``routing.codes``)."""
    action = route.code.action
    availability = action.sets_availability
    if availability is Availability.DO_NOT_DISTURB and not settings.dnd_allowed:
        raise RoutingError("dnd_allowed", "this user may not set do-not-disturb")
    if availability is not None:
        duration = route.code.duration
        expires_at = None if duration is None else now + duration
        return engine.set_manual(record, availability, now, expires_at=expires_at)
    if action is CodeAction.RESET:
        return engine.clear(record, Source.MANUAL, now)
    if action is CodeAction.DND_OFF:
        manual = record.manual
        if manual is not None and manual.availability is Availability.DO_NOT_DISTURB:
            return engine.clear(record, Source.MANUAL, now)
        return engine.expire(record, now)
    raise RoutingError("action", f"{action} is not a presence code")


# -- deciding a call to a user -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardChain:
    """The users a call has been offered to so far, first the one originally dialled."""

    visited: tuple[str, ...] = ()
    max_hops: int = DEFAULT_MAX_HOPS

    def enter(self, user: str) -> ForwardChain:
        return replace(self, visited=(*self.visited, user))


class ForwardReason(StrEnum):
    ALWAYS = "always"
    DND = "dnd"
    UNREACHABLE = "unreachable"
    BUSY = "busy"
    NO_ANSWER = "no-answer"


@dataclass(frozen=True, slots=True, kw_only=True)
class Deliver:
    """Ring the user's bindings; after ``no_answer_timeout`` forward to ``no_answer_target``.

    Both are None when the user has no no-answer forwarding: ring until the caller gives up.
    """

    user: str
    chain: ForwardChain
    no_answer_timeout: float | None = None
    no_answer_target: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Forward:
    """Route ``target`` (a dialled string) instead, continuing ``chain``."""

    user: str
    target: str
    reason: ForwardReason
    chain: ForwardChain


TargetDecision = Deliver | Forward | Rejected


def decide_user_target(
    user: str,
    settings: UserRoutingSettings,
    presence: EffectivePresence,
    *,
    registered: bool,
    active_calls: int,
    now: float,
    chain: ForwardChain | None = None,
    default_no_answer_timeout: float = DEFAULT_NO_ANSWER_TIMEOUT,
) -> TargetDecision:
    """How to handle a call offered to ``user``; see the module docstring for the order.

    ``active_calls`` counts the user's connected calls; ``now`` lets a DND whose expiry has
    passed (but whose lapse is not yet processed) stop rejecting calls.
    """
    chain = chain if chain is not None else ForwardChain()
    if user in chain.visited:
        return Rejected(status=LOOP_DETECTED, reason="forwarding loops back to this user")
    if len(chain.visited) > chain.max_hops:
        return Rejected(status=TOO_MANY_HOPS, reason="too many forwarding hops")
    chain = chain.enter(user)

    always = _active(settings.forward_always)
    if always is not None:
        return Forward(user=user, target=always, reason=ForwardReason.ALWAYS, chain=chain)

    dnd = presence.availability is Availability.DO_NOT_DISTURB and (
        presence.expires_at is None or presence.expires_at > now
    )
    if dnd:
        return _busy(user, settings, chain, ForwardReason.DND)

    no_answer = _active(settings.forward_no_answer)
    if not registered:
        if no_answer is not None:
            return Forward(
                user=user, target=no_answer, reason=ForwardReason.UNREACHABLE, chain=chain
            )
        return Rejected(status=TEMPORARILY_UNAVAILABLE, reason="no registered handset")

    if active_calls > 0 and not settings.call_waiting:
        return _busy(user, settings, chain, ForwardReason.BUSY)

    if no_answer is None:
        return Deliver(user=user, chain=chain)
    timeout = settings.no_answer_timeout
    return Deliver(
        user=user,
        chain=chain,
        no_answer_timeout=timeout if timeout is not None else default_no_answer_timeout,
        no_answer_target=no_answer,
    )


def decide_after_busy(
    user: str, settings: UserRoutingSettings, chain: ForwardChain
) -> TargetDecision:
    """Every ringing handset of ``user`` answered busy (486/600)."""
    return _busy(user, settings, chain, ForwardReason.BUSY)


def decide_after_no_answer(
    user: str, settings: UserRoutingSettings, chain: ForwardChain
) -> TargetDecision:
    """Nobody answered within the no-answer timeout."""
    target = _active(settings.forward_no_answer)
    if target is None:
        return Rejected(status=TEMPORARILY_UNAVAILABLE, reason="no answer")
    return Forward(user=user, target=target, reason=ForwardReason.NO_ANSWER, chain=chain)


def _busy(
    user: str, settings: UserRoutingSettings, chain: ForwardChain, reason: ForwardReason
) -> TargetDecision:
    target = _active(settings.forward_busy)
    if target is None:
        return Rejected(status=BUSY_HERE, reason="busy" if reason is ForwardReason.BUSY else "dnd")
    return Forward(user=user, target=target, reason=reason, chain=chain)
