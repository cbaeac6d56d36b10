"""sip2uc states <-> Teams availability/activity, as data.

Graph accepts only some availability/activity pairs, and different ones for an application's
presence session (`setPresence`) and for the user's preferred presence
(`setUserPreferredPresence`):

- https://learn.microsoft.com/graph/api/presence-setpresence (v1.0): Available/Available,
  Busy/InACall, Busy/InAConferenceCall, Away/Away, DoNotDisturb/Presenting.
- https://learn.microsoft.com/graph/api/presence-setuserpreferredpresence (v1.0):
  Available/Available, Busy/Busy, DoNotDisturb/DoNotDisturb, BeRightBack/BeRightBack, Away/Away,
  Offline/OffWork.

The default tables below are what docs/teams.md documents; a connector can override any entry
(`TeamsMapping.from_overrides`), and every entry is checked against the allowed pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .model import Availability


@dataclass(frozen=True, slots=True)
class GraphPair:
    availability: str
    activity: str

    def __str__(self) -> str:
        return f"{self.availability}/{self.activity}"


SESSION_PAIRS: frozenset[GraphPair] = frozenset(
    GraphPair(a, b)
    for a, b in (
        ("Available", "Available"),
        ("Busy", "InACall"),
        ("Busy", "InAConferenceCall"),
        ("Away", "Away"),
        ("DoNotDisturb", "Presenting"),
    )
)
PREFERRED_PAIRS: frozenset[GraphPair] = frozenset(
    GraphPair(a, b)
    for a, b in (
        ("Available", "Available"),
        ("Busy", "Busy"),
        ("DoNotDisturb", "DoNotDisturb"),
        ("BeRightBack", "BeRightBack"),
        ("Away", "Away"),
        ("Offline", "OffWork"),
    )
)
# Graph's availability values (the presence resource type, v1.0).
TEAMS_AVAILABILITIES: frozenset[str] = frozenset(
    (
        "Available",
        "AvailableIdle",
        "Away",
        "BeRightBack",
        "Busy",
        "BusyIdle",
        "DoNotDisturb",
        "Offline",
        "PresenceUnknown",
    )
)

_P = GraphPair
# The bridge's own presence session per automatic (handset) state; None = clearPresence.
DEFAULT_SESSION: Mapping[Availability, GraphPair | None] = MappingProxyType(
    {
        Availability.AVAILABLE: _P("Available", "Available"),
        # A ringing phone is not a call yet, and Teams has no "ringing": stay Available rather
        # than flicker to Busy for every unanswered call.
        Availability.RINGING: _P("Available", "Available"),
        Availability.IN_A_CALL: _P("Busy", "InACall"),
        Availability.BUSY: _P("Busy", "InACall"),
        # The only do-not-disturb pair a session may carry.
        Availability.DO_NOT_DISTURB: _P("DoNotDisturb", "Presenting"),
        Availability.BE_RIGHT_BACK: _P("Away", "Away"),
        Availability.AWAY: _P("Away", "Away"),
        Availability.OFFLINE: None,
    }
)
# The user's preferred presence per manual state; None = clearUserPreferredPresence.
DEFAULT_PREFERRED: Mapping[Availability, GraphPair | None] = MappingProxyType(
    {
        Availability.AVAILABLE: _P("Available", "Available"),
        Availability.RINGING: None,
        Availability.IN_A_CALL: _P("Busy", "Busy"),
        Availability.BUSY: _P("Busy", "Busy"),
        Availability.DO_NOT_DISTURB: _P("DoNotDisturb", "DoNotDisturb"),
        Availability.BE_RIGHT_BACK: _P("BeRightBack", "BeRightBack"),
        Availability.AWAY: _P("Away", "Away"),
        # "Appear offline" in Teams.
        Availability.OFFLINE: _P("Offline", "OffWork"),
    }
)
# What a Teams availability means for sip2uc; None = imposes nothing (sip2uc's own state stands).
DEFAULT_INBOUND: Mapping[str, Availability | None] = MappingProxyType(
    {
        "Available": None,
        "AvailableIdle": None,
        "Busy": Availability.BUSY,
        "BusyIdle": Availability.BUSY,
        "DoNotDisturb": Availability.DO_NOT_DISTURB,
        "BeRightBack": Availability.BE_RIGHT_BACK,
        "Away": Availability.AWAY,
        "Offline": Availability.OFFLINE,
        "PresenceUnknown": None,
    }
)


class MappingError(ValueError):
    """A mapping override names an unknown state or a pair Graph does not accept."""


@dataclass(frozen=True, slots=True)
class TeamsMapping:
    session: Mapping[Availability, GraphPair | None] = field(
        default_factory=lambda: DEFAULT_SESSION
    )
    preferred: Mapping[Availability, GraphPair | None] = field(
        default_factory=lambda: DEFAULT_PREFERRED
    )
    inbound: Mapping[str, Availability | None] = field(default_factory=lambda: DEFAULT_INBOUND)

    def __post_init__(self) -> None:
        _check_table("session", self.session, SESSION_PAIRS, "setPresence")
        _check_table("preferred", self.preferred, PREFERRED_PAIRS, "setUserPreferredPresence")
        unknown = set(self.inbound) - TEAMS_AVAILABILITIES
        if unknown:
            raise MappingError(f"inbound: {sorted(unknown)} are not Teams availability values")

    def session_pair(self, state: Availability) -> GraphPair | None:
        return self.session[state]

    def preferred_pair(self, state: Availability | None) -> GraphPair | None:
        return None if state is None else self.preferred[state]

    def from_teams(self, availability: str) -> Availability | None:
        """The sip2uc state a Teams availability imposes (None for unknown values too)."""
        return self.inbound.get(availability)

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Mapping[str, object]]) -> TeamsMapping:
        """The default tables with some entries replaced, e.g. from a connector's settings:

        `{"session": {"ringing": "Busy/InACall"}, "preferred": {"busy": null},
        "inbound": {"Away": null}}` (pairs as "Availability/Activity", null for "clear" or
        "imposes nothing").
        """
        unknown = set(overrides) - {"session", "preferred", "inbound"}
        if unknown:
            raise MappingError(f"unknown mapping tables {sorted(unknown)}")
        session = dict(DEFAULT_SESSION)
        for key, value in overrides.get("session", {}).items():
            session[_state(f"session.{key}", key)] = _pair(f"session.{key}", value)
        preferred = dict(DEFAULT_PREFERRED)
        for key, value in overrides.get("preferred", {}).items():
            preferred[_state(f"preferred.{key}", key)] = _pair(f"preferred.{key}", value)
        inbound = dict(DEFAULT_INBOUND)
        for key, value in overrides.get("inbound", {}).items():
            inbound[key] = None if value is None else _state(f"inbound.{key}", value)
        return cls(
            session=MappingProxyType(session),
            preferred=MappingProxyType(preferred),
            inbound=MappingProxyType(inbound),
        )


def _check_table(
    name: str,
    table: Mapping[Availability, GraphPair | None],
    allowed: frozenset[GraphPair],
    action: str,
) -> None:
    missing = set(Availability) - set(table)
    if missing:
        raise MappingError(f"{name}: no entry for {sorted(missing)}")
    for state, pair in table.items():
        if pair is not None and pair not in allowed:
            raise MappingError(
                f"{name}.{state}: {pair} is not an availability/activity pair {action} accepts "
                f"({', '.join(sorted(map(str, allowed)))})"
            )


def _state(where: str, value: object) -> Availability:
    try:
        return Availability(str(value))
    except ValueError:
        choices = ", ".join(a.value for a in Availability)
        raise MappingError(f"{where}: {value!r} is not a sip2uc state ({choices})") from None


def _pair(where: str, value: object) -> GraphPair | None:
    if value is None:
        return None
    if isinstance(value, str) and value.count("/") == 1:
        availability, activity = value.split("/")
        return GraphPair(availability.strip(), activity.strip())
    raise MappingError(f"{where}: {value!r} is not 'Availability/Activity' or null")
