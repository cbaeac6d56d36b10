"""Value types shared by the directory sources, the planner and the applier.

Sources (LDAP, CSV) turn foreign records into :class:`DirectoryEntry` values or, when a record
cannot be used, into a :class:`RowError`; the planner compares them with :class:`ExistingUser`
snapshots of the users store and produces an :class:`ImportPlan` made of :class:`PlanItem`\\ s.
Nothing here performs I/O.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

#: Fields an import keeps in step with the directory. ``enabled`` is listed so that a user the
#: import disabled earlier (gone from the directory) is re-enabled when it comes back.
#: ``digest_algorithms`` (of the user's handsets) only when the source has a column or attribute
#: for it: ``None`` from a source means "not managed here", ``""`` the sidecar's default.
SYNCED_FIELDS: tuple[str, ...] = (
    "sip_uri",
    "display_name",
    "e164",
    "extension",
    "email",
    "upn",
    "entra_object_id",
    "enabled",
    "digest_algorithms",
)

#: Fields that must be unique across users; two claimants of one value is a conflict.
UNIQUE_FIELDS: tuple[str, ...] = ("sip_uri", "extension", "e164")

FieldValue = str | bool | None


class DirectoryError(Exception):
    """Base class of every error this package raises."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectoryEntry:
    """One usable record of a directory, already normalised.

    ``sip_uri`` is canonical (``sip:user@host``, lower case: Lync/Teams compare SIP addresses
    case-insensitively). ``e164`` is ``+`` followed by digits. ``origin`` locates the record in
    its source for reports (an LDAP DN, ``"row 17"`` of a CSV file).
    """

    source_id: str
    sip_uri: str
    display_name: str
    e164: str | None = None
    extension: str | None = None
    email: str | None = None
    upn: str | None = None
    entra_object_id: str | None = None
    disabled: bool = False
    origin: str = ""
    #: The handsets' digest algorithms, most preferred first, space-separated (``"SHA-256 MD5"``);
    #: ``""`` for the sidecar's default, ``None`` when the source does not say.
    digest_algorithms: str | None = None

    def field_values(self) -> dict[str, FieldValue]:
        """The synced fields as the users store would hold them."""
        return {
            "sip_uri": self.sip_uri,
            "display_name": self.display_name,
            "e164": self.e164,
            "extension": self.extension,
            "email": self.email,
            "upn": self.upn,
            "entra_object_id": self.entra_object_id,
            "enabled": not self.disabled,
            "digest_algorithms": self.digest_algorithms,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RowError:
    """A record that could not be turned into an entry; reported, never raised.

    ``source_id`` and ``sip_uri`` are kept when they could be read, so that the planner does not
    mistake the user behind a broken record for one that left the directory.
    """

    origin: str
    message: str
    source_id: str | None = None
    sip_uri: str | None = None


SourceRecord = DirectoryEntry | RowError


@dataclass(frozen=True, slots=True, kw_only=True)
class ExistingUser:
    """What the planner needs to know about a user already in the store.

    ``overridden`` names fields an administrator set by hand; an import never changes them.
    ``source`` names the import source that created the user (``None`` for users created by
    hand or by an unnamed source); ``source_id`` is that source's stable id for the user.
    """

    id: str
    sip_uri: str
    display_name: str = ""
    source_id: str | None = None
    source: str | None = None
    extension: str | None = None
    e164: str | None = None
    email: str | None = None
    upn: str | None = None
    entra_object_id: str | None = None
    overridden: frozenset[str] = frozenset()
    enabled: bool = True
    #: As :attr:`DirectoryEntry.digest_algorithms`; ``None`` for a user without handsets.
    digest_algorithms: str | None = ""

    def field_values(self) -> dict[str, FieldValue]:
        return {
            "sip_uri": self.sip_uri,
            "display_name": self.display_name,
            "e164": self.e164,
            "extension": self.extension,
            "email": self.email,
            "upn": self.upn,
            "entra_object_id": self.entra_object_id,
            "enabled": self.enabled,
            "digest_algorithms": self.digest_algorithms,
        }


class PlanAction(enum.Enum):
    """What an import would do for one record or user. The order is the report order."""

    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    SKIP = "skip"
    CONFLICT = "conflict"
    MISSING = "missing"


class MissingPolicy(enum.Enum):
    """What applying a plan does to users that left the directory."""

    REPORT = "report"
    DISABLE = "disable"
    DELETE = "delete"


Change = tuple[FieldValue, FieldValue]


def _frozen_changes(changes: Mapping[str, Change]) -> Mapping[str, Change]:
    return MappingProxyType(dict(changes))


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanItem:
    """One line of a plan.

    ``changes`` maps a field to ``(old, new)``; for CREATE ``old`` is ``None``. ``origin`` repeats
    where the record came from (also for SKIP items, which have no entry).
    """

    action: PlanAction
    entry: DirectoryEntry | None = None
    user_id: str | None = None
    changes: Mapping[str, Change] = field(default_factory=dict)
    reason: str = ""
    origin: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "changes", _frozen_changes(self.changes))


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportPlan:
    """The full, ordered result of comparing a directory with the users store."""

    items: tuple[PlanItem, ...]
    missing_policy: MissingPolicy = MissingPolicy.REPORT
    source: str | None = None

    def counts(self) -> dict[PlanAction, int]:
        """Items per action, every action present (zero when unused)."""
        counted = Counter(item.action for item in self.items)
        return {action: counted.get(action, 0) for action in PlanAction}

    def of(self, action: PlanAction) -> tuple[PlanItem, ...]:
        return tuple(item for item in self.items if item.action is action)

    def summary(self) -> str:
        """One line for logs and CLI output, e.g. ``create=3 update=1 unchanged=10 ...``."""
        return " ".join(f"{action.value}={n}" for action, n in self.counts().items())
