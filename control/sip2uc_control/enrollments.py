"""Sidecar enrollments: the credential each sidecar connects with, bound to its name.

`sip2uc sidecar enroll NAME` mints a random token (256 bits) and shows it once; the database
keeps only its SHA-256. A token of that entropy needs no slow hash: nobody can search its space,
and a lookup by hash takes the same time whichever token is tried. Revoking deletes the row, so
the token stops working at once; the admin token is never involved.

`ephemeral` mints a credential that lives only in this process's memory, for the sidecar that
`sip2uc up` runs in the same process: it is a sidecar like any other, without a token on disk.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .errors import (
    AlreadyExists,
    FieldViolation,
    InvalidArgument,
    NotFound,
    StorageUnavailable,
)

__all__ = ["TOKEN_PREFIX", "Enrollment", "SidecarEnrollments", "name_problem"]

#: Sidecar tokens start with this, so that a person (or the server's error message) can tell one
#: from an admin token.
TOKEN_PREFIX = "sidecar-"  # noqa: S105 - a prefix, not a secret
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
NAME_RULE = "1-63 letters, digits, '-', '_' or '.', starting with a letter or digit"


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a sidecar's name; None when it can."""
    if not name:
        return f"required: {NAME_RULE}"
    if _NAME_RE.match(name) is None:
        return f"must be {NAME_RULE}"
    return None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Enrollment:
    name: str
    create_time: float
    #: When a sidecar last connected with the credential; None: never.
    last_connect_time: float | None = None


class EnrollmentRecords(Protocol):
    """Where enrollments are kept (`store/enrollments.py`)."""

    async def load(self) -> list[tuple[Enrollment, str]]: ...
    async def replace(self, enrollment: Enrollment, token_hash: str) -> None: ...
    async def delete(self, name: str) -> None: ...
    async def connected(self, name: str, when: float) -> None: ...


class SidecarEnrollments:
    def __init__(self, records: EnrollmentRecords, clock: Callable[[], float]) -> None:
        self._records = records
        self._clock = clock
        self._by_name: dict[str, Enrollment] = {}
        self._name_by_hash: dict[str, str] = {}
        self._hash_by_name: dict[str, str] = {}
        self._ephemeral: dict[str, str] = {}

    async def load(self) -> None:
        for enrollment, digest in await self._records.load():
            self._remember(enrollment, digest)

    # --- who is this ---------------------------------------------------------------------------

    def identify(self, token: str) -> tuple[str, str] | None:
        """The sidecar `token` belongs to and the token's hash; None when it is no sidecar
        credential (or a revoked one)."""
        digest = _digest(token)
        name = self._name_by_hash.get(digest) or self._ephemeral.get(digest)
        return None if name is None else (name, digest)

    def holds(self, digest: str, name: str) -> bool:
        """Whether the credential with hash `digest` still belongs to `name` (not revoked)."""
        return (self._name_by_hash.get(digest) or self._ephemeral.get(digest)) == name

    def is_bound(self, name: str) -> bool:
        """Whether `name` has a credential: then only that credential may act as it."""
        return name in self._by_name or name in self._ephemeral.values()

    def get(self, name: str) -> Enrollment | None:
        return self._by_name.get(name)

    def all(self) -> list[Enrollment]:
        return sorted(self._by_name.values(), key=lambda e: e.name)

    # --- changes -------------------------------------------------------------------------------

    def ephemeral(self, name: str) -> str:
        """A credential for `name` that only this process knows (never stored)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self._ephemeral[_digest(token)] = name
        return token

    async def enroll(self, name: str, *, replace: bool = False) -> tuple[Enrollment, str]:
        """A new credential for `name`; the token is returned only here."""
        problem = name_problem(name)
        if problem is not None:
            raise InvalidArgument(FieldViolation("sidecar", problem))
        if name in self._by_name and not replace:
            raise AlreadyExists(
                "sidecar", name, "an enrollment (revoke it, or enroll with replace)"
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        enrollment = Enrollment(name, self._clock())
        digest = _digest(token)
        await self._records.replace(enrollment, digest)
        self._forget(name)
        self._remember(enrollment, digest)
        return enrollment, token

    async def revoke(self, name: str) -> Enrollment:
        enrollment = self._by_name.get(name)
        if enrollment is None:
            raise NotFound("sidecar enrollment", name)
        await self._records.delete(name)
        self._forget(name)
        return enrollment

    async def connected(self, name: str) -> None:
        """Record that `name` connected with its enrolled credential."""
        enrollment = self._by_name.get(name)
        if enrollment is None:
            return
        now = self._clock()
        try:
            await self._records.connected(name, now)
        except StorageUnavailable:
            return  # a note for operators; the store logs the failure once
        current = self._by_name.get(name)
        if current is not None and current.create_time == enrollment.create_time:
            self._by_name[name] = Enrollment(name, enrollment.create_time, now)

    def _remember(self, enrollment: Enrollment, digest: str) -> None:
        self._by_name[enrollment.name] = enrollment
        self._name_by_hash[digest] = enrollment.name
        self._hash_by_name[enrollment.name] = digest

    def _forget(self, name: str) -> None:
        self._by_name.pop(name, None)
        digest = self._hash_by_name.pop(name, None)
        if digest is not None:
            self._name_by_hash.pop(digest, None)
