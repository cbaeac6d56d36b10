"""The server settings in the database: one JSON document under one key."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..settings import ServerSettings, validate
from .db import Database

_KEY = "server"


class SettingsStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.current = ServerSettings()

    async def load(self) -> None:
        async with self.db.engine.connect() as conn:
            raw = (
                await conn.execute(text("SELECT value FROM settings WHERE key=:k"), {"k": _KEY})
            ).scalar()
        if raw is not None:
            self.current = ServerSettings.from_dict(json.loads(raw))

    async def save(self, settings: ServerSettings) -> ServerSettings:
        validate(settings)
        value = json.dumps(settings.to_dict())

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(
                text(
                    "INSERT INTO settings (key, value) VALUES (:k, :v) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                ),
                {"k": _KEY, "v": value},
            )

        await self.db.submit(write)
        self.current = settings
        return settings

    def with_updates(self, **changes: Any) -> ServerSettings:
        return replace(self.current, **changes)
