"""An in-memory :class:`~.apply.UserRepository`, for dry runs, tests and benchmarks.

It keeps a SHA-256 digest of each handset password, never the password, to behave like a real
store would.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping

from .apply import NewUser
from .model import ExistingUser, FieldValue

_STRING_FIELDS = (
    "sip_uri",
    "display_name",
    "e164",
    "extension",
    "email",
    "upn",
    "entra_object_id",
    "source_id",
    "digest_algorithms",
)


class InMemoryUserRepository:
    """Users kept in a dict; new ids are ``u<n>`` with ``n`` counting up, skipping taken ones."""

    def __init__(self, users: list[ExistingUser] | None = None) -> None:
        self.users: dict[str, ExistingUser] = {u.id: u for u in users or []}
        self.password_digests: dict[str, str] = {}
        self._next_id = len(self.users) + 1

    def existing_users(self) -> list[ExistingUser]:
        return list(self.users.values())

    async def create_user(self, user: NewUser, handset_password: str) -> str:
        user_id = f"u{self._next_id}"
        while user_id in self.users:  # ids given to the constructor may be anything
            self._next_id += 1
            user_id = f"u{self._next_id}"
        self._next_id += 1
        self.users[user_id] = ExistingUser(
            id=user_id,
            sip_uri=user.sip_uri,
            display_name=user.display_name,
            source_id=user.source_id,
            source=user.source,
            extension=user.extension,
            e164=user.e164,
            email=user.email,
            upn=user.upn,
            entra_object_id=user.entra_object_id,
            digest_algorithms=user.digest_algorithms or "",
        )
        self.password_digests[user_id] = hashlib.sha256(handset_password.encode()).hexdigest()
        return user_id

    async def update_user(self, user_id: str, changes: Mapping[str, FieldValue]) -> None:
        user = self.users[user_id]
        values: dict[str, object] = {}
        for name, value in changes.items():
            if name == "enabled":
                if not isinstance(value, bool):
                    raise TypeError("enabled must be a bool")
                values[name] = value
            elif name in _STRING_FIELDS or name == "source":
                if value is not None and not isinstance(value, str):
                    raise TypeError(f"{name} must be a string or None")
                values[name] = value
            else:
                raise KeyError(f"unknown field {name!r}")
        self.users[user_id] = dataclasses.replace(user, **values)  # type: ignore[arg-type]

    async def disable_user(self, user_id: str) -> None:
        self.users[user_id] = dataclasses.replace(self.users[user_id], enabled=False)

    async def delete_user(self, user_id: str) -> None:
        del self.users[user_id]
        self.password_digests.pop(user_id, None)
