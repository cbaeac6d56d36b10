"""Carrying out an :class:`~.model.ImportPlan` against a users store.

The store is reached only through :class:`UserRepository`, so the control plane can plug in its
own persistence. New users get a generated handset password which is handed to the repository
(which must keep only digests of it, e.g. the RFC 8760 HA1 values) and returned once in the
:class:`ApplyResult` for provisioning; this module never writes it anywhere else.
"""

from __future__ import annotations

import asyncio
import csv
import os
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Protocol

from .model import FieldValue, ImportPlan, MissingPolicy, PlanAction, PlanItem

#: No 0/O, 1/l/I and similar pairs: these passwords are read off paper and typed on keypads.
PASSWORD_ALPHABET = "23456789abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"  # noqa: S105
PASSWORD_LENGTH = 12


def generate_handset_password(length: int = PASSWORD_LENGTH) -> str:
    """A random password from :data:`PASSWORD_ALPHABET` (about 5.8 bits per character)."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


@dataclass(frozen=True, slots=True, kw_only=True)
class NewUser:
    """Everything the repository needs to create an imported user."""

    sip_uri: str
    display_name: str
    source_id: str
    source: str | None = None
    e164: str | None = None
    extension: str | None = None
    email: str | None = None
    upn: str | None = None
    entra_object_id: str | None = None
    #: Space-separated, most preferred first; ``""`` or ``None``: the sidecar's default.
    digest_algorithms: str | None = None


class UserRepository(Protocol):
    """The part of the users store an import writes to.

    ``update_user`` receives new values keyed by field name: any of ``sip_uri``,
    ``display_name``, ``e164``, ``extension``, ``email``, ``upn``, ``entra_object_id``,
    ``enabled``, ``digest_algorithms``, ``source_id``, ``source``. Errors raised by any method
    are recorded per row; the import carries on.
    """

    async def create_user(self, user: NewUser, handset_password: str) -> str:
        """Create the user, store only digests of ``handset_password``; return the new id."""
        ...

    async def update_user(self, user_id: str, changes: Mapping[str, FieldValue]) -> None: ...

    async def disable_user(self, user_id: str) -> None: ...

    async def delete_user(self, user_id: str) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class CreatedUser:
    """A user created by this run, with the only copy of the handset password."""

    user_id: str
    sip_uri: str
    display_name: str
    extension: str | None
    e164: str | None
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class FailedItem:
    item: PlanItem
    error: str


@dataclass(slots=True, kw_only=True)
class ApplyResult:
    created: list[CreatedUser] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[FailedItem] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"created={len(self.created)} updated={len(self.updated)} "
            f"disabled={len(self.disabled)} deleted={len(self.deleted)} failed={len(self.failed)}"
        )


#: Called after every item with (items done, items to do, the item).
ProgressCallback = Callable[[int, int, PlanItem], None]


class _Step(IntEnum):
    """Deletes, then disables, then updates, then creates: values are freed before reuse."""

    DELETE = 0
    DISABLE = 1
    UPDATE = 2
    CREATE = 3


def _step(item: PlanItem, policy: MissingPolicy) -> _Step | None:
    if item.action is PlanAction.MISSING:
        if policy is MissingPolicy.DELETE:
            return _Step.DELETE
        if policy is MissingPolicy.DISABLE and "enabled" in item.changes:
            return _Step.DISABLE
        return None
    if item.action is PlanAction.UPDATE:
        return _Step.UPDATE
    if item.action is PlanAction.CREATE:
        return _Step.CREATE
    return None


async def apply_plan(
    plan: ImportPlan,
    repo: UserRepository,
    password_generator: Callable[[], str] = generate_handset_password,
    *,
    progress: ProgressCallback | None = None,
    concurrency: int = 32,
) -> ApplyResult:
    """Apply the CREATE, UPDATE and (per the plan's policy) MISSING items of ``plan``.

    SKIP, CONFLICT and UNCHANGED items do nothing. A failing item is recorded in
    :attr:`ApplyResult.failed` and the remaining items are still applied.
    """
    steps = ((_step(item, plan.missing_policy), item) for item in plan.items)
    work = sorted(((s, i) for s, i in steps if s is not None), key=lambda pair: pair[0])
    result = ApplyResult()
    counter = _Progress(len(work), progress)
    # Items of one step are independent (the plan has already set clashing rows aside as
    # conflicts), so they run a few at a time: a database that commits in groups then writes
    # many users per transaction. Steps stay in order, so values are freed before reuse.
    for step in _Step:
        items = [item for s, item in work if s is step]
        await _apply_step(step, items, plan, repo, password_generator, result, counter, concurrency)
    return result


@dataclass(slots=True)
class _Progress:
    total: int
    callback: ProgressCallback | None
    done: int = 0

    def tick(self, item: PlanItem) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total, item)


async def _apply_step(
    step: _Step,
    items: list[PlanItem],
    plan: ImportPlan,
    repo: UserRepository,
    password_generator: Callable[[], str],
    result: ApplyResult,
    counter: _Progress,
    concurrency: int,
) -> None:
    partial = [ApplyResult() for _ in items]
    failures: list[FailedItem | None] = [None] * len(items)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def run(index: int, item: PlanItem) -> None:
        async with gate:
            try:
                await _apply_one(step, item, plan, repo, password_generator, partial[index])
            except Exception as exc:  # the repository is foreign code; one row must not stop all
                failures[index] = FailedItem(item=item, error=f"{type(exc).__name__}: {exc}")
        counter.tick(item)

    await asyncio.gather(*(run(n, item) for n, item in enumerate(items)))
    # Results keep the plan's order whatever order the rows finished in.
    for one, failure in zip(partial, failures, strict=True):
        result.created += one.created
        result.updated += one.updated
        result.disabled += one.disabled
        result.deleted += one.deleted
        if failure is not None:
            result.failed.append(failure)


async def _apply_one(
    step: _Step,
    item: PlanItem,
    plan: ImportPlan,
    repo: UserRepository,
    password_generator: Callable[[], str],
    result: ApplyResult,
) -> None:
    if step is _Step.DELETE:
        assert item.user_id is not None
        await repo.delete_user(item.user_id)
        result.deleted.append(item.user_id)
    elif step is _Step.DISABLE:
        assert item.user_id is not None
        await repo.disable_user(item.user_id)
        result.disabled.append(item.user_id)
    elif step is _Step.UPDATE:
        assert item.user_id is not None
        await repo.update_user(item.user_id, {name: new for name, (_, new) in item.changes.items()})
        result.updated.append(item.user_id)
    else:
        entry = item.entry
        assert entry is not None
        password = password_generator()
        new = NewUser(
            sip_uri=entry.sip_uri,
            display_name=entry.display_name,
            source_id=entry.source_id,
            source=plan.source,
            e164=entry.e164,
            extension=entry.extension,
            email=entry.email,
            upn=entry.upn,
            entra_object_id=entry.entra_object_id,
            digest_algorithms=entry.digest_algorithms,
        )
        user_id = await repo.create_user(new, password)
        result.created.append(
            CreatedUser(
                user_id=user_id,
                sip_uri=entry.sip_uri,
                display_name=entry.display_name,
                extension=entry.extension,
                e164=entry.e164,
                password=password,
            )
        )


PROVISIONING_COLUMNS = ("sip_uri", "username", "display_name", "extension", "e164", "password")


def write_provisioning_csv(path: str | os.PathLike[str], rows: Iterable[CreatedUser]) -> int:
    """Write handset credentials for provisioning to ``path`` with mode 0600; return the count.

    The file is created owner-only before anything is written, so the passwords are never
    readable by others, even briefly; an existing file is truncated and its mode tightened.
    """
    # O_NOFOLLOW: a symlink planted at ``path`` must not redirect the passwords elsewhere.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(Path(path), flags, 0o600)
    os.fchmod(fd, 0o600)
    count = 0
    with open(fd, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(PROVISIONING_COLUMNS)
        for row in rows:
            username = row.sip_uri.removeprefix("sip:").partition("@")[0]
            writer.writerow(
                [
                    row.sip_uri,
                    username,
                    row.display_name,
                    row.extension or "",
                    row.e164 or "",
                    row.password,
                ]
            )
            count += 1
    return count
