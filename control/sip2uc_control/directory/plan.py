"""Comparing a directory with the users store: what an import would change, and why.

:func:`build_plan` is pure: it reads records and user snapshots and returns an
:class:`~.model.ImportPlan`; nothing is applied here, so a plan doubles as a dry run.

Matching: a record is matched to a user by its stable ``source_id`` first (so a renamed SIP
address updates the user instead of creating a second one), then by SIP URI (so users created by
hand, or whose directory account was re-created with a new id, are adopted).

Conflicts: ``sip_uri``, ``extension`` and ``e164`` identify a user on the SIP side and must be
unique. When two records claim one value, or a record claims a value another user holds today,
every claimant is reported as CONFLICT and left untouched: guessing a winner would silently
re-route someone's calls. Values are compared with users' *current* values, which is also what a
store with unique constraints needs; a number moving from one user to another therefore settles
over two imports (the first frees it, the second assigns it). Users that this plan deletes do not
hold their values any more.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from .model import (
    SYNCED_FIELDS,
    UNIQUE_FIELDS,
    Change,
    DirectoryEntry,
    ExistingUser,
    FieldValue,
    ImportPlan,
    MissingPolicy,
    PlanAction,
    PlanItem,
    RowError,
    SourceRecord,
)

_RANK = {action: rank for rank, action in enumerate(PlanAction)}


def build_plan(
    records: Iterable[SourceRecord],
    existing_users: Iterable[ExistingUser],
    *,
    source: str | None = None,
    disable_missing: bool = False,
    delete_missing: bool = False,
    adopts: frozenset[str] = frozenset(),
) -> ImportPlan:
    """Plan an import of ``records`` into a store holding ``existing_users``.

    ``source`` names the directory; when given, only users created from that source (or from an
    unnamed one) are matched by id or reported MISSING (several directories can feed one store).
    Users of this source that no usable record mentions are MISSING; with ``disable_missing``
    or ``delete_missing`` applying the plan disables or deletes them, otherwise they are only
    reported. Users of a source in ``adopts`` (e.g. CSV imports from before sources were named)
    are matched and taken over when a record lists them, but never reported MISSING.
    """
    if disable_missing and delete_missing:
        raise ValueError("disable_missing and delete_missing are mutually exclusive")
    policy = (
        MissingPolicy.DELETE
        if delete_missing
        else MissingPolicy.DISABLE
        if disable_missing
        else MissingPolicy.REPORT
    )
    planner = _Planner(list(existing_users), source, policy, adopts)
    items = planner.run(list(records))
    items.sort(key=_order)
    return ImportPlan(items=tuple(items), missing_policy=policy, source=source)


def _some(names: list[str], shown: int = 3) -> str:
    """Name a few claimants; a reason line must stay readable when hundreds collide."""
    text = ", ".join(names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _order(item: PlanItem) -> tuple[int, str, str, str]:
    sip = item.entry.sip_uri if item.entry is not None else ""
    return (_RANK[item.action], sip, item.origin, item.user_id or "")


class _Planner:
    def __init__(
        self,
        users: list[ExistingUser],
        source: str | None,
        policy: MissingPolicy,
        adopts: frozenset[str] = frozenset(),
    ) -> None:
        self.users = users
        self.source = source
        self.policy = policy
        self.adopts = adopts
        self.owned = [u for u in users if u.source_id is not None and self._is_ours(u)]
        self.by_source_id = {
            u.source_id: u
            for u in users
            if u.source_id is not None and (self._is_ours(u) or u.source in adopts)
        }
        self.by_sip = {u.sip_uri.lower(): u for u in users}
        # Users some record speaks for; they are never MISSING.
        self.touched: set[str] = set()
        # Users whose directory account is disabled: MISSING, with that reason.
        self.disabled_in_directory: set[str] = set()

    def _is_ours(self, user: ExistingUser) -> bool:
        # Users imported without a source name are adopted by the first named source.
        return self.source is None or user.source in (None, self.source)

    def _may_update(self, user: ExistingUser) -> bool:
        """Ours, or of a source this one adopts (matched when listed, never missing)."""
        return self._is_ours(user) or user.source in self.adopts

    def _find(self, source_id: str | None, sip_uri: str | None) -> ExistingUser | None:
        user = self.by_source_id.get(source_id) if source_id is not None else None
        if user is None and sip_uri is not None:
            user = self.by_sip.get(sip_uri.lower())
        return user

    def run(self, records: list[SourceRecord]) -> list[PlanItem]:
        items: list[PlanItem] = []
        active: list[DirectoryEntry] = []
        for record in records:
            if isinstance(record, RowError):
                items.append(self._row_error(record))
            elif record.disabled:
                items.extend(self._disabled(record))
            else:
                active.append(record)
        matches = self._match(active)
        missing = self._missing_users()
        items.extend(self._entries(active, matches, missing))
        items.extend(self._missing_items(missing))
        return items

    def _row_error(self, error: RowError) -> PlanItem:
        user = self._find(error.source_id, error.sip_uri)
        if user is not None:
            self.touched.add(user.id)
        return PlanItem(
            action=PlanAction.SKIP,
            user_id=user.id if user is not None else None,
            reason=error.message,
            origin=error.origin,
        )

    def _disabled(self, entry: DirectoryEntry) -> list[PlanItem]:
        user = self._find(entry.source_id, entry.sip_uri)
        if user is not None and self._may_update(user) and user.source_id is not None:
            self.disabled_in_directory.add(user.id)
            return []
        return [
            PlanItem(
                action=PlanAction.SKIP,
                entry=entry,
                reason="account disabled in the directory",
                origin=entry.origin,
            )
        ]

    def _match(self, active: list[DirectoryEntry]) -> dict[int, ExistingUser | str]:
        """Map each active entry (by index) to its user, or to a conflict reason."""
        matches: dict[int, ExistingUser | str] = {}
        claimed: set[str] = set()
        for index, entry in enumerate(active):
            user = self.by_source_id.get(entry.source_id)
            if user is not None:
                matches[index] = user
                claimed.add(user.id)
        active_ids = {entry.source_id for entry in active}
        for index, entry in enumerate(active):
            if index in matches:
                continue
            user = self.by_sip.get(entry.sip_uri)
            if user is None or user.id in claimed:
                continue  # a CREATE; a SIP URI still held by someone is caught as a conflict
            if user.source_id is not None and not self._may_update(user):
                matches[index] = (
                    f"SIP URI {entry.sip_uri} belongs to user {user.id} of source {user.source!r}"
                )
            elif (
                user.source_id in active_ids
                or user.id in self.touched
                or user.id in self.disabled_in_directory
            ):
                matches[index] = (
                    f"SIP URI {entry.sip_uri} belongs to user {user.id} "
                    f"(directory id {user.source_id})"
                )
            else:
                # A hand-made user, or one whose account was re-created with a new id: adopt it.
                matches[index] = user
                claimed.add(user.id)
        for match in matches.values():
            if isinstance(match, ExistingUser):
                self.touched.add(match.id)
        return matches

    def _missing_users(self) -> list[ExistingUser]:
        return [u for u in self.owned if u.id not in self.touched]

    def _entries(
        self,
        active: list[DirectoryEntry],
        matches: dict[int, ExistingUser | str],
        missing: list[ExistingUser],
    ) -> list[PlanItem]:
        deleted = {u.id for u in missing} if self.policy is MissingPolicy.DELETE else set()
        finals: list[dict[str, FieldValue]] = []
        claims: dict[tuple[str, FieldValue], list[int]] = defaultdict(list)
        source_ids: dict[str, list[int]] = defaultdict(list)
        for index, entry in enumerate(active):
            match = matches.get(index)
            final = entry.field_values()
            if isinstance(match, ExistingUser):
                current = match.field_values()
                final = {f: current[f] if f in match.overridden else final[f] for f in final}
                if final["digest_algorithms"] is None or current["digest_algorithms"] is None:
                    # Not managed by this source, or a user without handsets to set it on.
                    final["digest_algorithms"] = current["digest_algorithms"]
            finals.append(final)
            source_ids[entry.source_id].append(index)
            for name in UNIQUE_FIELDS:
                if final[name] is not None:
                    claims[(name, final[name])].append(index)
        holders: dict[tuple[str, FieldValue], list[str]] = defaultdict(list)
        for user in self.users:
            if user.id in deleted:
                continue
            values = user.field_values()
            for name in UNIQUE_FIELDS:
                if values[name] is not None:
                    holders[(name, values[name])].append(user.id)

        items: list[PlanItem] = []
        for index, entry in enumerate(active):
            match = matches.get(index)
            owner = match if isinstance(match, ExistingUser) else None
            reasons = [match] if isinstance(match, str) else []
            if len(source_ids[entry.source_id]) > 1:
                reasons.append(f"directory id {entry.source_id} appears more than once")
            for name in UNIQUE_FIELDS:
                value = finals[index][name]
                if value is None:
                    continue
                rivals = [active[i].origin for i in claims[(name, value)] if i != index]
                if rivals:
                    reasons.append(f"{name} {value} also claimed by {_some(rivals)}")
                others = [h for h in holders[(name, value)] if owner is None or h != owner.id]
                if others:
                    reasons.append(f"{name} {value} held by user {_some(others)}")
            if reasons:
                items.append(
                    PlanItem(
                        action=PlanAction.CONFLICT,
                        entry=entry,
                        user_id=owner.id if owner is not None else None,
                        reason="; ".join(reasons),
                        origin=entry.origin,
                    )
                )
            elif owner is None:
                items.append(self._create(entry))
            else:
                items.append(self._update(entry, owner, finals[index]))
        return items

    def _create(self, entry: DirectoryEntry) -> PlanItem:
        changes: dict[str, Change] = {
            name: (None, value)
            for name, value in entry.field_values().items()
            if value is not None and value != ""
        }
        changes["source_id"] = (None, entry.source_id)
        if self.source is not None:
            changes["source"] = (None, self.source)
        return PlanItem(action=PlanAction.CREATE, entry=entry, changes=changes, origin=entry.origin)

    def _update(
        self, entry: DirectoryEntry, user: ExistingUser, final: dict[str, FieldValue]
    ) -> PlanItem:
        current = user.field_values()
        changes: dict[str, Change] = {
            name: (current[name], final[name])
            for name in SYNCED_FIELDS
            if current[name] != final[name]
        }
        if user.source_id != entry.source_id:
            changes["source_id"] = (user.source_id, entry.source_id)
        if self.source is not None and user.source != self.source:
            changes["source"] = (user.source, self.source)
        action = PlanAction.UPDATE if changes else PlanAction.UNCHANGED
        return PlanItem(
            action=action, entry=entry, user_id=user.id, changes=changes, origin=entry.origin
        )

    def _missing_items(self, missing: list[ExistingUser]) -> list[PlanItem]:
        items: list[PlanItem] = []
        for user in missing:
            reason = (
                "account disabled in the directory"
                if user.id in self.disabled_in_directory
                else "no longer in the directory"
            )
            changes: dict[str, Change] = {}
            if self.policy is MissingPolicy.DELETE:
                reason += "; will be deleted"
            elif self.policy is MissingPolicy.DISABLE:
                if not user.enabled:
                    reason += "; already disabled"
                elif "enabled" in user.overridden:
                    reason += "; kept enabled (set by hand)"
                else:
                    reason += "; will be disabled"
                    changes["enabled"] = (True, False)
            items.append(
                PlanItem(
                    action=PlanAction.MISSING,
                    user_id=user.id,
                    changes=changes,
                    reason=reason,
                    origin=user.sip_uri,
                )
            )
        return items
