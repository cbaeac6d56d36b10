"""The user directory in memory: every lookup the registrar, call routing and the API make.

No lookup queries the database: `store/users.py` loads the directory at start and changes it
only after a write committed. Tests use the directory on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .domain import Algorithm, Device, User
from .errors import AlreadyExists, NotFound


@dataclass
class UserIndex:
    by_id: dict[str, User] = field(default_factory=dict)
    by_extension: dict[str, str] = field(default_factory=dict)
    by_e164: dict[str, str] = field(default_factory=dict)
    by_sip_uri: dict[str, str] = field(default_factory=dict)
    by_digest_username: dict[str, tuple[str, str]] = field(default_factory=dict)
    by_entra_object_id: dict[str, str] = field(default_factory=dict)
    by_upn: dict[str, str] = field(default_factory=dict)

    def add(self, user: User) -> None:
        self.by_id[user.id] = user
        if user.extension:
            self.by_extension[user.extension] = user.id
        if user.e164:
            self.by_e164[user.e164] = user.id
        if user.entra_object_id:
            self.by_entra_object_id[user.entra_object_id.lower()] = user.id
        if user.user_principal_name:
            self.by_upn[user.user_principal_name.lower()] = user.id
        self.by_sip_uri[user.sip_uri.lower()] = user.id
        for dev in user.devices:
            if dev.registering is not None:
                self.by_digest_username[dev.registering.digest_username] = (user.id, dev.id)

    def remove(self, user: User) -> None:
        self.by_id.pop(user.id, None)
        for index, key in (
            (self.by_extension, user.extension),
            (self.by_e164, user.e164),
            (self.by_sip_uri, user.sip_uri.lower()),
            (self.by_entra_object_id, user.entra_object_id.lower()),
            (self.by_upn, user.user_principal_name.lower()),
        ):
            if key and index.get(key) == user.id:
                del index[key]
        for dev in user.devices:
            if dev.registering is not None:
                self.by_digest_username.pop(dev.registering.digest_username, None)


class UserDirectory:
    def __init__(self) -> None:
        self.index = UserIndex()

    def get(self, user_id: str) -> User | None:
        return self.index.by_id.get(user_id)

    def require(self, user_id: str) -> User:
        user = self.index.by_id.get(user_id)
        if user is None:
            raise NotFound("user", f"users/{user_id}")
        return user

    def resolve(self, ref: str) -> User | None:
        """A user by resource name, extension, E.164 number or SIP URI."""
        ref = ref.strip()
        if ref.startswith("users/"):
            return self.index.by_id.get(ref[len("users/") :])
        if ref.startswith(("sip:", "sips:")):
            uid = self.index.by_sip_uri.get(ref.lower())
        elif ref.startswith("+"):
            uid = self.index.by_e164.get(ref)
        else:
            uid = self.index.by_extension.get(ref)
            if uid is None and ref in self.index.by_id:
                uid = ref
        return self.index.by_id.get(uid) if uid else None

    def id_by_extension(self, extension: str) -> str | None:
        return self.index.by_extension.get(extension)

    def id_by_e164(self, number: str) -> str | None:
        return self.index.by_e164.get(number)

    def by_digest_username(self, username: str) -> tuple[User, Device] | None:
        found = self.index.by_digest_username.get(username)
        if found is None:
            return None
        user = self.index.by_id[found[0]]
        device = user.device(found[1])
        return (user, device) if device is not None else None

    def device_algorithms(self) -> tuple[tuple[str, tuple[Algorithm, ...]], ...]:
        """Digest user name -> its device's algorithms, for the devices that have their own."""
        out: list[tuple[str, tuple[Algorithm, ...]]] = []
        for user in self.index.by_id.values():
            for dev in user.devices:
                reg = dev.registering
                if reg is not None and reg.digest_algorithms:
                    out.append((reg.digest_username, reg.digest_algorithms))
        out.sort(key=lambda entry: entry[0])
        return tuple(out)

    def each(self) -> Iterator[User]:
        """Every user, in no particular order (no sorting on a per-request path)."""
        return iter(self.index.by_id.values())

    def all(self) -> list[User]:
        return sorted(self.index.by_id.values(), key=lambda u: (u.extension or "~", u.sip_uri))

    def count(self) -> int:
        return len(self.index.by_id)

    def check_unique(self, user: User, prefix: str = "user") -> None:
        idx = self.index

        def clash(index: dict[str, str], key: str, field_name: str) -> None:
            holder = index.get(key)
            if key and holder is not None and holder != user.id:
                raise AlreadyExists(f"{prefix}.{field_name}", key, f"users/{holder}")

        clash(idx.by_extension, user.extension, "extension")
        clash(idx.by_e164, user.e164, "e164")
        clash(idx.by_sip_uri, user.sip_uri.lower(), "sip_uri")
        clash(idx.by_entra_object_id, user.entra_object_id.lower(), "entra_object_id")
        clash(idx.by_upn, user.user_principal_name.lower(), "user_principal_name")
        for i, dev in enumerate(user.devices):
            if dev.registering is None:
                continue
            holder = idx.by_digest_username.get(dev.registering.digest_username)
            if holder is not None and holder[0] != user.id:
                raise AlreadyExists(
                    f"{prefix}.devices[{i}].registering.digest_username",
                    dev.registering.digest_username,
                    f"users/{holder[0]}",
                )
