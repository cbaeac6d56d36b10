"""Sidecar credentials, kept as hashes (`enrollments.py` decides who may connect as whom)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..enrollments import Enrollment
from .db import Database


class EnrollmentStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self) -> list[tuple[Enrollment, str]]:
        """Every enrollment with its token's hash."""
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT * FROM sidecar_enrollments"))).all()
        return [
            (Enrollment(row.name, row.create_time, row.last_connect_time), row.token_hash)
            for row in rows
        ]

    async def replace(self, enrollment: Enrollment, token_hash: str) -> None:
        """`enrollment` with `token_hash` in place of any credential its name had."""

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(
                text("DELETE FROM sidecar_enrollments WHERE name=:n"), {"n": enrollment.name}
            )
            await conn.execute(
                text(
                    "INSERT INTO sidecar_enrollments (name, token_hash, create_time) "
                    "VALUES (:n, :h, :c)"
                ),
                {"n": enrollment.name, "h": token_hash, "c": enrollment.create_time},
            )

        await self.db.submit(write)

    async def delete(self, name: str) -> None:
        async def write(conn: AsyncConnection) -> None:
            await conn.execute(text("DELETE FROM sidecar_enrollments WHERE name=:n"), {"n": name})

        await self.db.submit(write)

    async def connected(self, name: str, when: float) -> None:
        async def write(conn: AsyncConnection) -> None:
            await conn.execute(
                text("UPDATE sidecar_enrollments SET last_connect_time=:t WHERE name=:n"),
                {"t": when, "n": name},
            )

        await self.db.submit(write)
