"""The Graph requests the bridge makes, as values: method, path, JSON body.

Paths are relative to the versioned service root (`https://graph.microsoft.com/v1.0`). Field names
and shapes follow Graph's v1.0 metadata for the presence actions; the contract stand-in in the
tests checks every request against that metadata.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from .mapping import GraphPair

# getPresencesByUserId takes at most 650 ids per request
# (https://learn.microsoft.com/graph/api/cloudcommunications-getpresencesbyuserid).
MAX_IDS_PER_POLL = 650


class CallKind(enum.StrEnum):
    SET_PRESENCE = "setPresence"
    CLEAR_PRESENCE = "clearPresence"
    SET_PREFERRED = "setUserPreferredPresence"
    CLEAR_PREFERRED = "clearUserPreferredPresence"
    GET_PRESENCES = "getPresencesByUserId"


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphCall:
    kind: CallKind
    method: str
    path: str
    body: Mapping[str, object]
    sent_at: float
    """When the core handed the call out (its clock); replies are judged against it."""
    user_id: str | None = None
    pair: GraphPair | None = None
    user_ids: tuple[str, ...] = field(default=())
    refresh: bool = False
    """A re-post of what Graph already has, to keep the session alive."""

    def describe(self) -> str:
        target = self.user_id if self.user_id is not None else f"{len(self.user_ids)} users"
        pair = f" {self.pair}" if self.pair is not None else ""
        return f"{self.kind}{pair} for {target}"


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphReply:
    status: int
    retry_after: float | None = None
    """Seconds from the Retry-After header, when it had a usable value."""
    body: object = None
    """The decoded JSON body, if any."""
    error_code: str | None = None
    error_message: str | None = None


def _presence_path(user_id: str, action: CallKind) -> str:
    return f"/users/{quote(user_id, safe='@')}/presence/{action.value}"


def set_presence(
    user_id: str, pair: GraphPair, *, session_id: str, expiration: str, now: float, refresh: bool
) -> GraphCall:
    return GraphCall(
        kind=CallKind.SET_PRESENCE,
        method="POST",
        path=_presence_path(user_id, CallKind.SET_PRESENCE),
        body={
            "sessionId": session_id,
            "availability": pair.availability,
            "activity": pair.activity,
            "expirationDuration": expiration,
        },
        sent_at=now,
        user_id=user_id,
        pair=pair,
        refresh=refresh,
    )


def clear_presence(user_id: str, *, session_id: str, now: float) -> GraphCall:
    return GraphCall(
        kind=CallKind.CLEAR_PRESENCE,
        method="POST",
        path=_presence_path(user_id, CallKind.CLEAR_PRESENCE),
        body={"sessionId": session_id},
        sent_at=now,
        user_id=user_id,
    )


def set_preferred(user_id: str, pair: GraphPair, *, now: float, refresh: bool) -> GraphCall:
    # No expirationDuration: Graph then keeps it one day (Busy, DoNotDisturb) or seven days
    # (others); the core re-posts it before a day is over.
    return GraphCall(
        kind=CallKind.SET_PREFERRED,
        method="POST",
        path=_presence_path(user_id, CallKind.SET_PREFERRED),
        body={"availability": pair.availability, "activity": pair.activity},
        sent_at=now,
        user_id=user_id,
        pair=pair,
        refresh=refresh,
    )


def clear_preferred(user_id: str, *, now: float) -> GraphCall:
    # The documented body is an empty JSON object.
    return GraphCall(
        kind=CallKind.CLEAR_PREFERRED,
        method="POST",
        path=_presence_path(user_id, CallKind.CLEAR_PREFERRED),
        body={},
        sent_at=now,
        user_id=user_id,
    )


def get_presences(user_ids: Sequence[str], *, now: float) -> GraphCall:
    if not 0 < len(user_ids) <= MAX_IDS_PER_POLL:
        raise ValueError(
            f"getPresencesByUserId takes 1-{MAX_IDS_PER_POLL} ids, got {len(user_ids)}"
        )
    return GraphCall(
        kind=CallKind.GET_PRESENCES,
        method="POST",
        path="/communications/getPresencesByUserId",
        body={"ids": list(user_ids)},
        sent_at=now,
        user_ids=tuple(user_ids),
    )


def iso_duration(seconds: int) -> str:
    """An ISO 8601 duration (xs:dayTimeDuration without days), e.g. 3600 -> "PT1H"."""
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = "PT"
    if hours:
        text += f"{hours}H"
    if minutes:
        text += f"{minutes}M"
    if secs:
        text += f"{secs}S"
    return text
