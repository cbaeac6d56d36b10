"""Users and devices: rows in the database, an index in memory.

Every read (the registrar looks a device up per REGISTER) is served from the in-memory index,
which is loaded at start and updated only after the database accepted a change, so the two
never disagree about what was committed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain import (
    Algorithm,
    Device,
    DirectoryOrigin,
    RegisteringDevice,
    Transport,
    TrunkDevice,
    User,
    UserSettings,
)
from ..errors import AlreadyExists, NotFound
from .db import Database


@dataclass
class UserIndex:
    by_id: dict[str, User] = field(default_factory=dict)
    by_extension: dict[str, str] = field(default_factory=dict)
    by_e164: dict[str, str] = field(default_factory=dict)
    by_sip_uri: dict[str, str] = field(default_factory=dict)
    by_digest_username: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add(self, user: User) -> None:
        self.by_id[user.id] = user
        if user.extension:
            self.by_extension[user.extension] = user.id
        if user.e164:
            self.by_e164[user.e164] = user.id
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
        ):
            if key and index.get(key) == user.id:
                del index[key]
        for dev in user.devices:
            if dev.registering is not None:
                self.by_digest_username.pop(dev.registering.digest_username, None)


def _device_row(user_id: str, dev: Device) -> dict[str, Any]:
    reg, trunk = dev.registering, dev.trunk
    return {
        "user_id": user_id,
        "device_id": dev.id,
        "label": dev.label,
        "kind": "registering" if reg is not None else "trunk",
        "digest_username": reg.digest_username if reg is not None else None,
        "ha1_md5": reg.ha1_md5 if reg is not None else "",
        "ha1_sha256": reg.ha1_sha256 if reg is not None else "",
        "max_bindings": reg.max_bindings if reg is not None else 0,
        "digest_algorithms": (
            ",".join(a.value for a in reg.digest_algorithms) if reg is not None else ""
        ),
        "trunk": json.dumps(
            {
                "source_network": trunk.source_network,
                "source_port": trunk.source_port,
                "request_uri_user": trunk.request_uri_user,
                "target": trunk.target,
                "transport": trunk.transport.value,
                "sidecar": trunk.sidecar,
            }
            if trunk is not None
            else {}
        ),
    }


def _device_from_row(row: Any) -> Device:
    if row.kind == "registering":
        return Device(
            id=row.device_id,
            label=row.label,
            registering=RegisteringDevice(
                digest_username=row.digest_username,
                ha1_md5=row.ha1_md5,
                ha1_sha256=row.ha1_sha256,
                max_bindings=row.max_bindings,
                digest_algorithms=tuple(
                    Algorithm.parse(name) for name in row.digest_algorithms.split(",") if name
                ),
            ),
        )
    t = json.loads(row.trunk)
    return Device(
        id=row.device_id,
        label=row.label,
        trunk=TrunkDevice(
            source_network=t["source_network"],
            source_port=int(t.get("source_port", 0)),
            request_uri_user=t.get("request_uri_user", ""),
            target=t.get("target", ""),
            transport=Transport(t.get("transport", "udp")),
            sidecar=t.get("sidecar", ""),
        ),
    )


def _origin_dict(origin: DirectoryOrigin) -> dict[str, Any]:
    return {
        "source": origin.source,
        "source_id": origin.source_id,
        "overridden_fields": list(origin.overridden_fields),
        "import_time": origin.import_time,
    }


def _origin_from_dict(d: dict[str, Any]) -> DirectoryOrigin:
    return DirectoryOrigin(
        source=d.get("source", ""),
        source_id=d.get("source_id", ""),
        overridden_fields=tuple(d.get("overridden_fields", ())),
        import_time=float(d.get("import_time", 0.0)),
    )


class UserStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.index = UserIndex()

    async def load(self) -> None:
        async with self.db.engine.connect() as conn:
            users = (await conn.execute(text("SELECT * FROM users"))).all()
            devices = (await conn.execute(text("SELECT * FROM devices ORDER BY device_id"))).all()
        by_user: dict[str, list[Device]] = {}
        for row in devices:
            by_user.setdefault(row.user_id, []).append(_device_from_row(row))
        for row in users:
            self.index.add(
                User(
                    id=row.id,
                    sip_uri=row.sip_uri,
                    display_name=row.display_name,
                    extension=row.extension or "",
                    e164=row.e164 or "",
                    email=row.email,
                    disabled=bool(row.disabled),
                    devices=tuple(by_user.get(row.id, ())),
                    settings=UserSettings.from_dict(json.loads(row.settings)),
                    origin=_origin_from_dict(json.loads(row.origin)),
                    create_time=row.create_time,
                    update_time=row.update_time,
                )
            )

    # --- reads ---------------------------------------------------------------------------------

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

    def all(self) -> list[User]:
        return sorted(self.index.by_id.values(), key=lambda u: (u.extension or "~", u.sip_uri))

    def count(self) -> int:
        return len(self.index.by_id)

    # --- uniqueness ----------------------------------------------------------------------------

    def check_unique(self, user: User, prefix: str = "user") -> None:
        idx = self.index

        def clash(index: dict[str, str], key: str, field_name: str) -> None:
            holder = index.get(key)
            if key and holder is not None and holder != user.id:
                raise AlreadyExists(f"{prefix}.{field_name}", key, f"users/{holder}")

        clash(idx.by_extension, user.extension, "extension")
        clash(idx.by_e164, user.e164, "e164")
        clash(idx.by_sip_uri, user.sip_uri.lower(), "sip_uri")
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

    # --- writes --------------------------------------------------------------------------------

    async def save(self, user: User, *, create: bool) -> User:
        self.check_unique(user)
        row = {
            "id": user.id,
            "sip_uri": user.sip_uri,
            "extension": user.extension or None,
            "e164": user.e164 or None,
            "display_name": user.display_name,
            "email": user.email,
            "disabled": user.disabled,
            "settings": json.dumps(user.settings.to_dict()),
            "origin": json.dumps(_origin_dict(user.origin)),
            "create_time": user.create_time,
            "update_time": user.update_time,
        }

        async def write(conn: AsyncConnection) -> None:
            if create:
                await conn.execute(
                    text(
                        "INSERT INTO users (id, sip_uri, extension, e164, display_name, email, "
                        "disabled, settings, origin, create_time, update_time) VALUES (:id, "
                        ":sip_uri, :extension, :e164, :display_name, :email, :disabled, "
                        ":settings, :origin, :create_time, :update_time)"
                    ),
                    row,
                )
            else:
                await conn.execute(
                    text(
                        "UPDATE users SET sip_uri=:sip_uri, extension=:extension, e164=:e164, "
                        "display_name=:display_name, email=:email, disabled=:disabled, "
                        "settings=:settings, origin=:origin, update_time=:update_time WHERE id=:id"
                    ),
                    row,
                )
                await conn.execute(text("DELETE FROM devices WHERE user_id=:id"), {"id": user.id})
            for dev in user.devices:
                await conn.execute(
                    text(
                        "INSERT INTO devices (user_id, device_id, label, kind, digest_username, "
                        "ha1_md5, ha1_sha256, max_bindings, trunk, digest_algorithms) VALUES "
                        "(:user_id, :device_id, :label, :kind, :digest_username, :ha1_md5, "
                        ":ha1_sha256, :max_bindings, :trunk, :digest_algorithms)"
                    ),
                    _device_row(user.id, dev),
                )

        try:
            await self.db.submit(write)
        except IntegrityError as exc:  # a concurrent writer won the race for a unique value
            raise AlreadyExists("user", user.sip_uri, "another user") from exc
        old = self.index.by_id.get(user.id)
        if old is not None:
            self.index.remove(old)
        self.index.add(user)
        return user

    async def delete(self, user: User) -> None:
        async def write(conn: AsyncConnection) -> None:
            for table in ("bindings", "presence", "devices"):
                await conn.execute(text(f"DELETE FROM {table} WHERE user_id=:id"), {"id": user.id})  # noqa: S608
            await conn.execute(text("DELETE FROM users WHERE id=:id"), {"id": user.id})

        await self.db.submit(write)
        self.index.remove(user)
