"""Who the sidecars were, kept across restarts (the registry in `sidecars.py` holds the sessions)."""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..sidecars import SidecarInfo
from .db import Database

_UPSERT = text(
    "INSERT INTO sidecars (name, info, connect_time, last_seen) VALUES (:n, :i, :c, :l) "
    "ON CONFLICT (name) DO UPDATE SET info = excluded.info, "
    "connect_time = excluded.connect_time, last_seen = excluded.last_seen"
)


class SidecarStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self) -> list[SidecarInfo]:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT * FROM sidecars"))).all()
        out: list[SidecarInfo] = []
        for row in rows:
            info = json.loads(row.info)
            out.append(
                SidecarInfo(
                    name=row.name,
                    site=info.get("site", ""),
                    sip_listeners=list(info.get("sip_listeners", [])),
                    rtp=info.get("rtp", ""),
                    capacity=int(info.get("capacity", 0)),
                    version=info.get("version", ""),
                    connect_time=row.connect_time,
                    last_seen=row.last_seen,
                )
            )
        return out

    async def save(self, info: SidecarInfo) -> None:
        async def write(conn: AsyncConnection) -> None:
            description = {
                "site": info.site,
                "sip_listeners": info.sip_listeners,
                "rtp": info.rtp,
                "capacity": info.capacity,
                "version": info.version,
            }
            await conn.execute(
                _UPSERT,
                {
                    "n": info.name,
                    "i": json.dumps(description),
                    "c": info.connect_time,
                    "l": info.last_seen,
                },
            )

        await self.db.submit(write)
