"""Users and devices: rows in the database behind the in-memory directory (`users.py`).

Every read (the registrar looks a device up per REGISTER) is served from the directory, which
is loaded at start and updated only after the database accepted a change, so the two never
disagree about what was committed.
"""

from __future__ import annotations

import json
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
from ..errors import AlreadyExists
from ..users import UserDirectory
from .db import Database


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


class UserStore(UserDirectory):
    """The directory, loaded from and written to the database."""

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db

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
                    entra_object_id=row.entra_object_id or "",
                    user_principal_name=row.user_principal_name or "",
                )
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
            "entra_object_id": user.entra_object_id or None,
            "user_principal_name": user.user_principal_name or None,
        }

        async def write(conn: AsyncConnection) -> None:
            if create:
                await conn.execute(
                    text(
                        "INSERT INTO users (id, sip_uri, extension, e164, display_name, email, "
                        "disabled, settings, origin, create_time, update_time, entra_object_id, "
                        "user_principal_name) VALUES (:id, :sip_uri, :extension, :e164, "
                        ":display_name, :email, :disabled, :settings, :origin, :create_time, "
                        ":update_time, :entra_object_id, :user_principal_name)"
                    ),
                    row,
                )
            else:
                await conn.execute(
                    text(
                        "UPDATE users SET sip_uri=:sip_uri, extension=:extension, e164=:e164, "
                        "display_name=:display_name, email=:email, disabled=:disabled, "
                        "settings=:settings, origin=:origin, update_time=:update_time, "
                        "entra_object_id=:entra_object_id, "
                        "user_principal_name=:user_principal_name WHERE id=:id"
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
