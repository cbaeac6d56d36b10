"""sip2uc availability <-> PIDF/RPID (RFC 3863, RFC 4480): the mapping tables, as data.

Out (what the presence server's watchers see for a user)::

    available       open, no activity
    busy            open, <rpid:busy/>
    in a call       open, <rpid:on-the-phone/>
    do not disturb  open, <rpid:busy/> + note "Do not disturb" (RPID has no DND)
    be right back   open, <rpid:away/> + note "Be right back" (nor BRB)
    away            open, <rpid:away/>
    offline         the publication is removed (watchers see closed)

In (states that *other* publishers set for a user, e.g. a UC client set to DND), tried in order,
the first rule matching an activity (and note) wins; of several publishers the most restrictive
state wins (DND > busy > in a call > away > be right back)::

    busy + note containing the DND note ("Do not disturb") or "dnd"   -> do not disturb
    busy, appointment, meeting, presentation, performance           -> busy
    on-the-phone                                                    -> in a call
    away, vacation, holiday, travel, permanent-absence, sleeping,
    in-transit, steering                                            -> away
    breakfast, dinner, meal                                         -> be right back
    anything else (open without activity, closed, unknown)          -> nothing: the
                                                                       handset's own state shows

Both tables can be overridden per connector (``publish_mapping``, ``inbound_mapping``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sip2uc_core.events.pidf import (
    AVAILABILITY_STATES,
    DEFAULT_DND_NOTE,
    ForeignState,
    PidfState,
)

from ..bridge import Activity, Availability

__all__ = [
    "DEFAULT_DND_NOTE",
    "DEFAULT_INBOUND",
    "DEFAULT_PUBLISH",
    "ForeignState",
    "InboundRule",
    "PidfState",
    "dialog_state",
    "element_prefix",
    "inbound_rules",
    "inbound_state",
    "publish_table",
]


def element_prefix(connector_id: str) -> str:
    """The id prefix of the tuple and person elements a connector publishes."""
    return f"sip2uc-{connector_id}"


def dialog_state(activity: Activity) -> str:
    """The dialog state RFC 4235 §4.1.6.1 names for what the handset does (one aggregate
    dialog per user: the bridge does not know the UC side's dialog identifiers)."""
    if activity is Activity.IN_A_CALL:
        return "confirmed"
    if activity is Activity.RINGING:
        return "early"
    return "terminated"


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundRule:
    """An activity (and note text) another publisher shows -> the EXTERNAL state sip2uc sets."""

    activity: str
    availability: Availability | None
    #: Lower-case text the note must contain ("" for any note).
    note_contains: str = ""

    def matches(self, activity: str, note: str) -> bool:
        return activity == self.activity and self.note_contains in note.lower()


DEFAULT_PUBLISH: Mapping[Availability, PidfState] = {
    availability: AVAILABILITY_STATES[availability.value] for availability in Availability
}


def _rules(availability: Availability, *activities: str) -> tuple[InboundRule, ...]:
    return tuple(InboundRule(activity=a, availability=availability) for a in activities)


DEFAULT_INBOUND: tuple[InboundRule, ...] = (
    InboundRule(activity="busy", note_contains="dnd", availability=Availability.DO_NOT_DISTURB),
    *_rules(Availability.BUSY, "busy", "appointment", "meeting", "presentation", "performance"),
    *_rules(Availability.IN_A_CALL, "on-the-phone"),
    *_rules(
        Availability.AWAY,
        "away",
        "vacation",
        "holiday",
        "travel",
        "permanent-absence",
        "sleeping",
        "in-transit",
        "steering",
    ),
    *_rules(Availability.BE_RIGHT_BACK, "breakfast", "dinner", "meal"),
)

# Most restrictive first: of several publishers' states, the one that keeps calls away wins.
_RANK = {
    Availability.DO_NOT_DISTURB: 0,
    Availability.BUSY: 1,
    Availability.IN_A_CALL: 2,
    Availability.AWAY: 3,
    Availability.BE_RIGHT_BACK: 4,
    Availability.AVAILABLE: 5,
}


def publish_table(
    overrides: Iterable[tuple[Availability, PidfState]] = (),
    dnd_note: str = DEFAULT_DND_NOTE,
) -> dict[Availability, PidfState]:
    table = dict(DEFAULT_PUBLISH)
    table[Availability.DO_NOT_DISTURB] = PidfState(activity="busy", note=dnd_note)
    table.update(overrides)
    return table


def inbound_rules(
    overrides: Sequence[InboundRule] = (), dnd_note: str = DEFAULT_DND_NOTE
) -> tuple[InboundRule, ...]:
    """The connector's rules first, then the DND note rule, then the defaults."""
    dnd = InboundRule(
        activity="busy", note_contains=dnd_note.lower(), availability=Availability.DO_NOT_DISTURB
    )
    return (*overrides, dnd, *DEFAULT_INBOUND)


def inbound_state(
    states: Iterable[ForeignState], rules: Sequence[InboundRule]
) -> tuple[Availability | None, str]:
    """The EXTERNAL state other publishers' elements amount to, with its note.

    A closed element says its publisher is offline: it brings nothing in. ``None`` means
    nothing should override the handset's own state.
    """
    best: tuple[int, Availability, str] | None = None
    for state in states:
        if not state.open:
            continue
        for activity in state.activities or frozenset({""}):
            for rule in rules:
                if rule.matches(activity, state.note):
                    if rule.availability is not None:
                        rank = _RANK.get(rule.availability, 9)
                        if best is None or rank < best[0]:
                            best = (rank, rule.availability, state.note)
                    break
    if best is None or best[1] is Availability.AVAILABLE:
        return None, ""
    return best[1], best[2]
