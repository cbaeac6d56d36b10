"""Presence: one engine merging registration, calls and manual/external overrides per user."""

from .engine import OVERRIDE_SOURCES, PresenceEngine, Transition
from .model import (
    NOTE_MAX_LENGTH,
    Activity,
    Availability,
    CallEntry,
    CallPhase,
    EffectivePresence,
    Override,
    PresenceChange,
    PresenceError,
    PresenceRecord,
    Reason,
    Source,
)

__all__ = [
    "NOTE_MAX_LENGTH",
    "OVERRIDE_SOURCES",
    "Activity",
    "Availability",
    "CallEntry",
    "CallPhase",
    "EffectivePresence",
    "Override",
    "PresenceChange",
    "PresenceEngine",
    "PresenceError",
    "PresenceRecord",
    "Reason",
    "Source",
    "Transition",
]
