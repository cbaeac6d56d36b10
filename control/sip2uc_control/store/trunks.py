"""Trunks: rows in the database, an index in memory.

Trunks are few and read on every call to a number that is no user, so they are indexed in
memory like users and connectors. The password sits in a column of its own, never in the
settings document that the API returns parts of.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import AlreadyExists, NotFound
from ..trunks import Trunk
from .db import Database

_INSERT = text(
    "INSERT INTO trunks (id, settings, password, create_time, update_time) "
    "VALUES (:id, :settings, :password, :create_time, :update_time)"
)
_UPDATE = text(
    "UPDATE trunks SET settings=:settings, password=:password, update_time=:update_time "
    "WHERE id=:id"
)


def _row(trunk: Trunk) -> dict[str, Any]:
    return {
        "id": trunk.id,
        "settings": json.dumps(trunk.settings_dict(), sort_keys=True),
        "password": trunk.password,
        "create_time": trunk.create_time,
        "update_time": trunk.update_time,
    }


class TrunkStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._by_id: dict[str, Trunk] = {}

    async def load(self) -> None:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT * FROM trunks"))).all()
        for row in rows:
            self._by_id[row.id] = Trunk.from_settings(
                row.id,
                json.loads(row.settings),
                password=row.password,
                create_time=row.create_time,
                update_time=row.update_time,
            )

    def get(self, trunk_id: str) -> Trunk | None:
        return self._by_id.get(trunk_id)

    def require(self, trunk_id: str) -> Trunk:
        found = self._by_id.get(trunk_id)
        if found is None:
            raise NotFound("trunk", f"trunks/{trunk_id}")
        return found

    def all(self) -> list[Trunk]:
        """By priority, then id (the order outbound calls try them in)."""
        return sorted(self._by_id.values(), key=lambda t: (t.priority, t.id))

    async def create(self, trunk: Trunk) -> Trunk:
        if trunk.id in self._by_id:
            raise AlreadyExists("trunk_id", trunk.id, trunk.name)
        row = _row(trunk)

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(_INSERT, row)

        try:
            await self.db.submit(write)
        except IntegrityError as exc:
            raise AlreadyExists("trunk_id", trunk.id, trunk.name) from exc
        self._by_id[trunk.id] = trunk
        return trunk

    async def save(self, trunk: Trunk) -> Trunk:
        row = _row(trunk)

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(_UPDATE, row)

        await self.db.submit(write)
        self._by_id[trunk.id] = trunk
        return trunk

    async def delete(self, trunk_id: str) -> None:
        async def write(conn: AsyncConnection) -> None:
            await conn.execute(text("DELETE FROM trunks WHERE id=:id"), {"id": trunk_id})

        await self.db.submit(write)
        self._by_id.pop(trunk_id, None)
