"""Handsets' event subscriptions (RFC 6665): who may watch whom, what a SUBSCRIBE watches, and
the registry of the subscriptions the sidecars hold.

The sidecars keep the subscription dialogs and send the NOTIFYs; the control plane decides. A new
subscription names one user (its SIP URI, extension or E.164 number as the Request-URI's user
part) or the watcher's buddy list (``sip:buddies@<domain>``, RFC 4662, only with ``Supported:
eventlist``). Who may watch a user is the user's ``watch_policy``: everyone of this control plane
(the default), only watchers subscribing through a sidecar the user is registered on, or an
allow-list. A refresh is decided again, so a changed policy ends subscriptions it no longer
allows; so does the re-announcement of a sidecar's subscriptions after a control-plane restart.

Pure: no I/O and no clock; the registry is in memory (the sidecars re-announce what they hold).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sip2uc_core.sip.errors import SipParseError
from sip2uc_core.sip.uri import SipUri, parse_uri

from .domain import User

__all__ = [
    "EVENTS",
    "LIST_USER",
    "MAX_EXPIRES",
    "Action",
    "HeldSubscription",
    "SubscribeDecision",
    "SubscribeInput",
    "SubscriptionRegistry",
    "decide_subscription",
    "may_watch",
]

#: The event packages served (RFC 3856 presence, RFC 4235 dialog).
EVENTS = ("presence", "dialog")
#: The Request-URI user part that names the watcher's own buddy list.
LIST_USER = "buddies"
MAX_EXPIRES = 3600
#: Policies a user's settings may name ("" is the default, everyone).
POLICIES = frozenset({"", "everyone", "same-sidecar", "allow-list"})


class Action(enum.Enum):
    CREATE = "create"
    REFRESH = "refresh"
    END = "end"


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeInput:
    sidecar: str
    subscription_id: str
    action: Action
    event: str
    request_uri: str = ""
    expires: int = MAX_EXPIRES
    eventlist: bool = False
    source_host: str = ""
    source_port: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeDecision:
    status: int
    reason: str = ""
    expires: int = 0
    watcher: User | None = None
    resources: tuple[User, ...] = ()
    list_uri: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldSubscription:
    id: str
    sidecar: str
    watcher: str
    event: str
    resource_uri: str
    users: tuple[str, ...]
    expires_at: float
    source_host: str = ""
    source_port: int = 0


def may_watch(
    watcher: User, watched: User, sidecar: str, sidecars_of: Callable[[str], set[str]]
) -> bool:
    """Whether `watcher`, subscribing through `sidecar`, may watch `watched`."""
    if watched.id == watcher.id:
        return True
    policy = watched.settings.watch_policy
    if policy == "allow-list":
        return watcher.name in watched.settings.allowed_watchers
    if policy == "same-sidecar":
        return sidecar in sidecars_of(watched.id)
    return True


def _resource_user(request_uri: str) -> str | None:
    try:
        uri = parse_uri(request_uri)
    except SipParseError:
        return None
    if not isinstance(uri, SipUri) or not uri.user:
        return None
    return uri.user


def decide_subscription(
    inp: SubscribeInput,
    watcher: User,
    resolve: Callable[[str], User | None],
    sidecars_of: Callable[[str], set[str]],
    domain: str,
) -> SubscribeDecision:
    """What a new or refreshed subscription of an authenticated `watcher` gets (RFC 6665 §4.2)."""
    if inp.event not in EVENTS:
        return SubscribeDecision(status=489, reason="Bad Event")
    user = _resource_user(inp.request_uri)
    if user is None:
        return SubscribeDecision(status=404, reason="Not Found")
    expires = min(inp.expires, MAX_EXPIRES)
    if user == LIST_USER:
        if not inp.eventlist:
            # RFC 4662 §4.1: a list needs a subscriber that understands list notifications.
            return SubscribeDecision(status=421, reason="Extension Required")
        members = [u for ref in watcher.settings.buddies if (u := resolve(ref)) is not None]
        allowed = tuple(u for u in members if may_watch(watcher, u, inp.sidecar, sidecars_of))
        return SubscribeDecision(
            status=200,
            expires=expires,
            watcher=watcher,
            resources=allowed,
            list_uri=f"sip:{LIST_USER}@{domain}",
        )
    # The user part is an extension or E.164 number, or the alias of the user's SIP URI.
    watched = resolve(user) or resolve(f"sip:{user}@{domain}")
    if watched is None:
        return SubscribeDecision(status=404, reason="Not Found")
    if not may_watch(watcher, watched, inp.sidecar, sidecars_of):
        return SubscribeDecision(status=403, reason="Not allowed to watch this user")
    return SubscribeDecision(status=200, expires=expires, watcher=watcher, resources=(watched,))


class SubscriptionRegistry:
    """The subscriptions every sidecar holds, for the API (`ListSubscriptions`)."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], HeldSubscription] = {}

    def put(self, held: HeldSubscription) -> None:
        self._held[(held.sidecar, held.id)] = held

    def get(self, sidecar: str, subscription_id: str) -> HeldSubscription | None:
        return self._held.get((sidecar, subscription_id))

    def remove(self, sidecar: str, subscription_id: str) -> None:
        self._held.pop((sidecar, subscription_id), None)

    def replace_sidecar(self, sidecar: str, held: Iterable[HeldSubscription]) -> None:
        """What a sidecar re-announced replaces what was known of it."""
        for key in [k for k in self._held if k[0] == sidecar]:
            del self._held[key]
        for h in held:
            self.put(h)

    def expire(self, now: float) -> None:
        for key in [k for k, h in self._held.items() if h.expires_at <= now]:
            del self._held[key]

    def listing(self, user_id: str | None, now: float) -> list[HeldSubscription]:
        """Live subscriptions (of or on `user_id` when given), by watcher then resource."""
        self.expire(now)
        found = [
            h
            for h in self._held.values()
            if user_id is None or h.watcher == user_id or user_id in h.users
        ]
        found.sort(key=lambda h: (h.watcher, h.resource_uri, h.event, h.id))
        return found

    def __len__(self) -> int:
        return len(self._held)
