"""Presence records and the presence change log in the database (the hub is `presence_hub.py`).

A batch is two `executemany` statements: the latest record of every user that changed, and the
change events with the sequence numbers the hub assigned.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..presence import PresenceChange, PresenceRecord
from ..presence_hub import LoggedChange, StoredPresence
from .db import Database, Rows

log = logging.getLogger(__name__)

# The row is written only while the user exists: a change queued just before the user was deleted
# must not fail its whole batch on the foreign key.
_UPSERT_RECORD = text(
    "INSERT INTO presence (user_id, record) SELECT :u, :r "
    "WHERE EXISTS (SELECT 1 FROM users WHERE id = :u) "
    "ON CONFLICT (user_id) DO UPDATE SET record = excluded.record"
)
_INSERT_EVENT = text(
    "INSERT INTO presence_events (seq, user_id, change, at) VALUES (:s, :u, :c, :a)"
)
_CHANGES_AFTER = text("SELECT seq, change FROM presence_events WHERE seq > :s ORDER BY seq")


class PresenceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self, recent: int) -> StoredPresence:
        stored = StoredPresence()
        async with self.db.engine.connect() as conn:
            for row in (await conn.execute(text("SELECT user_id, record FROM presence"))).all():
                try:
                    stored.records[row.user_id] = PresenceRecord.from_dict(json.loads(row.record))
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning(
                        "presence record of %s unreadable, starting it afresh: %s", row.user_id, exc
                    )
            seq = (await conn.execute(text("SELECT MAX(seq) FROM presence_events"))).scalar()
            stored.last_seq = int(seq or 0)
            rows = (await conn.execute(_CHANGES_AFTER, {"s": stored.last_seq - recent})).all()
        stored.recent = [_logged(row.seq, row.change) for row in rows]
        return stored

    async def write(
        self, records: Mapping[str, PresenceRecord], events: Sequence[tuple[LoggedChange, float]]
    ) -> None:
        statements: list[Rows] = []
        if records:
            statements.append(
                (
                    _UPSERT_RECORD,
                    [{"u": u, "r": json.dumps(r.to_dict())} for u, r in records.items()],
                )
            )
        if events:
            statements.append(
                (
                    _INSERT_EVENT,
                    [
                        {
                            "s": item.seq,
                            "u": item.change.user,
                            "c": json.dumps(item.change.to_dict()),
                            "a": at,
                        }
                        for item, at in events
                    ],
                )
            )
        await self.db.submit_rows(statements)

    async def changes_after(self, cursor: int) -> list[LoggedChange] | None:
        async with self.db.engine.connect() as conn:
            oldest = (await conn.execute(text("SELECT MIN(seq) FROM presence_events"))).scalar()
            if oldest is None or int(oldest) > cursor + 1:
                return None
            rows = (await conn.execute(_CHANGES_AFTER, {"s": cursor})).all()
        return [_logged(row.seq, row.change) for row in rows]

    async def trim(self, up_to: int) -> None:
        async def write(conn: AsyncConnection) -> None:
            await conn.execute(text("DELETE FROM presence_events WHERE seq <= :c"), {"c": up_to})

        await self.db.submit(write)


def _logged(seq: int, change: str) -> LoggedChange:
    return LoggedChange(seq, PresenceChange.from_dict(json.loads(change)))
