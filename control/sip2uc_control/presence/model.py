"""Presence state: the values, the per-user record the store persists, and the events.

Everything here is a frozen dataclass with ``to_dict()`` / ``from_dict()`` so the store can keep it
as JSON. ``from_dict`` treats its input as untrusted (a hand-edited row, an older schema) and raises
only :class:`PresenceError`, naming the field that is wrong.

The availability values follow the vocabulary UC platforms show to people (Teams/Graph
``availability``); the activity says what the handset is doing and is reported even when a manual
state hides it (DND while in a call: availability DO_NOT_DISTURB, activity IN_A_CALL).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self, TypeVar

__all__ = [
    "NOTE_MAX_LENGTH",
    "Activity",
    "Availability",
    "CallEntry",
    "CallPhase",
    "EffectivePresence",
    "Override",
    "PresenceChange",
    "PresenceError",
    "PresenceRecord",
    "Reason",
    "Source",
]

# A status message is shown in buddy lists, not stored as a document.
NOTE_MAX_LENGTH = 280


class PresenceError(ValueError):
    """Invalid presence input; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Availability(StrEnum):
    AVAILABLE = "available"
    BUSY = "busy"
    IN_A_CALL = "in-a-call"
    DO_NOT_DISTURB = "do-not-disturb"
    BE_RIGHT_BACK = "be-right-back"
    AWAY = "away"
    OFFLINE = "offline"


class Activity(StrEnum):
    """What the handset is doing, independent of what availability is shown."""

    NONE = "none"
    RINGING = "ringing"
    IN_A_CALL = "in-a-call"


class Source(StrEnum):
    """The layers of presence, lowest precedence first."""

    REGISTRATION = "registration"
    CALL = "call"
    MANUAL = "manual"
    EXTERNAL = "external"


class CallPhase(StrEnum):
    RINGING = "ringing"
    CONNECTED = "connected"


class Reason(StrEnum):
    """Why a presence change happened (the input that caused it)."""

    REGISTERED = "registered"
    UNREGISTERED = "unregistered"
    CALL_STARTED = "call-started"
    CALL_ANSWERED = "call-answered"
    CALL_ENDED = "call-ended"
    #: Calls no longer live were dropped from the record (the control plane restarted).
    CALLS_RECONCILED = "calls-reconciled"
    MANUAL_SET = "manual-set"
    MANUAL_CLEARED = "manual-cleared"
    MANUAL_EXPIRED = "manual-expired"
    EXTERNAL_SET = "external-set"
    EXTERNAL_CLEARED = "external-cleared"
    EXTERNAL_EXPIRED = "external-expired"


_E = TypeVar("_E", bound=StrEnum)


def _field(data: Mapping[str, Any], name: str) -> Any:
    if not isinstance(data, Mapping):
        raise PresenceError(name, "expected an object holding this field")
    if name not in data:
        raise PresenceError(name, "missing")
    return data[name]


def _enum(data: Mapping[str, Any], name: str, kind: type[_E]) -> _E:
    value = _field(data, name)
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise PresenceError(name, f"{value!r} is not one of {allowed}") from None


def _time(data: Mapping[str, Any], name: str) -> float:
    value = _field(data, name)
    # bool is an int subclass; a stored true/false is corruption, not a timestamp.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PresenceError(name, f"expected a finite number of seconds, got {value!r}")
    return float(value)


def _optional_time(data: Mapping[str, Any], name: str) -> float | None:
    if data.get(name) is None:
        return None
    return _time(data, name)


def _text(data: Mapping[str, Any], name: str) -> str:
    value = _field(data, name)
    if not isinstance(value, str) or not value:
        raise PresenceError(name, f"expected a non-empty string, got {value!r}")
    return value


def _optional_note(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PresenceError(name, f"expected a string, got {value!r}")
    return value


def check_note(note: str | None) -> None:
    if note is not None and len(note) > NOTE_MAX_LENGTH:
        raise PresenceError("note", f"longer than {NOTE_MAX_LENGTH} characters")


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEntry:
    """One call the user takes part in; ``since`` is when it entered its current phase."""

    call_id: str
    phase: CallPhase
    since: float

    def to_dict(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "phase": self.phase.value, "since": self.since}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            call_id=_text(data, "call_id"),
            phase=_enum(data, "phase", CallPhase),
            since=_time(data, "since"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Override:
    """A manual or external state; it hides the call and registration layers until cleared."""

    availability: Availability
    set_at: float
    expires_at: float | None = None
    note: str | None = None
    #: The connector that reported an external state (``connectors/{id}``), if any.
    origin: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "availability": self.availability.value,
            "set_at": self.set_at,
            "expires_at": self.expires_at,
            "note": self.note,
        }
        if self.origin is not None:
            out["origin"] = self.origin
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            availability=_enum(data, "availability", Availability),
            set_at=_time(data, "set_at"),
            expires_at=_optional_time(data, "expires_at"),
            note=_optional_note(data, "note"),
            origin=_optional_note(data, "origin"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class EffectivePresence:
    """What everybody sees: the merge of all layers (see ``PresenceEngine.resolve``).

    ``since`` is when this effective state began; ``expires_at`` is when the override that
    produced it lapses (None for the call and registration layers); ``origin`` is the connector
    that reported it when the source is EXTERNAL.
    """

    availability: Availability
    activity: Activity
    source: Source
    since: float
    note: str | None = None
    expires_at: float | None = None
    origin: str | None = None

    def same_state(self, other: EffectivePresence) -> bool:
        """Equal in everything observers see, ignoring ``since``."""
        return (
            self.availability is other.availability
            and self.activity is other.activity
            and self.source is other.source
            and self.note == other.note
            and self.expires_at == other.expires_at
            and self.origin == other.origin
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "availability": self.availability.value,
            "activity": self.activity.value,
            "source": self.source.value,
            "since": self.since,
            "note": self.note,
            "expires_at": self.expires_at,
        }
        if self.origin is not None:
            out["origin"] = self.origin
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            availability=_enum(data, "availability", Availability),
            activity=_enum(data, "activity", Activity),
            source=_enum(data, "source", Source),
            since=_time(data, "since"),
            note=_optional_note(data, "note"),
            expires_at=_optional_time(data, "expires_at"),
            origin=_optional_note(data, "origin"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PresenceRecord:
    """Everything the engine knows about one user; the unit the store persists.

    ``changed_at`` is when the effective presence last changed, so ``resolve`` can report
    ``since`` without reading a clock.
    """

    user: str
    changed_at: float
    registered: bool = False
    calls: tuple[CallEntry, ...] = ()
    manual: Override | None = None
    external: Override | None = None

    @classmethod
    def new(cls, user: str, now: float) -> Self:
        """A user nobody has heard from yet: offline."""
        if not user:
            raise PresenceError("user", "must not be empty")
        return cls(user=user, changed_at=now)

    def call(self, call_id: str) -> CallEntry | None:
        for entry in self.calls:
            if entry.call_id == call_id:
                return entry
        return None

    @property
    def in_call(self) -> bool:
        """True while any call is connected (ringing alone does not make the user busy)."""
        return any(entry.phase is CallPhase.CONNECTED for entry in self.calls)

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "changed_at": self.changed_at,
            "registered": self.registered,
            "calls": [entry.to_dict() for entry in self.calls],
            "manual": None if self.manual is None else self.manual.to_dict(),
            "external": None if self.external is None else self.external.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        registered = _field(data, "registered")
        if not isinstance(registered, bool):
            raise PresenceError("registered", f"expected true or false, got {registered!r}")
        raw_calls = data.get("calls", [])
        if not isinstance(raw_calls, list | tuple):
            raise PresenceError("calls", f"expected a list, got {raw_calls!r}")
        calls = tuple(CallEntry.from_dict(item) for item in raw_calls)
        if len({entry.call_id for entry in calls}) != len(calls):
            raise PresenceError("calls", "the same call_id appears twice")
        manual = data.get("manual")
        external = data.get("external")
        return cls(
            user=_text(data, "user"),
            changed_at=_time(data, "changed_at"),
            registered=registered,
            calls=calls,
            manual=None if manual is None else Override.from_dict(manual),
            external=None if external is None else Override.from_dict(external),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PresenceChange:
    """Published whenever a user's effective presence changes, and only then."""

    user: str
    previous: EffectivePresence
    current: EffectivePresence
    source: Source
    reason: Reason
    at: float
    #: For an external state set, cleared or lapsing: the connector that reported it.
    origin: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "user": self.user,
            "previous": self.previous.to_dict(),
            "current": self.current.to_dict(),
            "source": self.source.value,
            "reason": self.reason.value,
            "at": self.at,
        }
        if self.origin is not None:
            out["origin"] = self.origin
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            user=_text(data, "user"),
            previous=EffectivePresence.from_dict(_field(data, "previous")),
            current=EffectivePresence.from_dict(_field(data, "current")),
            source=_enum(data, "source", Source),
            reason=_enum(data, "reason", Reason),
            at=_time(data, "at"),
            origin=_optional_note(data, "origin"),
        )
