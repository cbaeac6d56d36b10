"""Call history: each finished call as one JSON document, found by id or by the users involved."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text

from ..calls.model import Call
from .db import Database

_INSERT = text("INSERT INTO call_history (id, start_time, users, doc) VALUES (:i, :s, :u, :d)")


class CallHistoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, call: Call) -> None:
        row = {
            "i": call.id,
            "s": call.start_time,
            "u": " ".join(sorted({u for u in (call.caller_user, call.callee_user) if u})),
            "d": json.dumps(call.to_dict()),
        }
        # Plain rows: the history rows of calls ending together share one executemany.
        await self.db.submit_rows([(_INSERT, [row])])

    async def page(self, user_id: str | None, offset: int, limit: int) -> list[Call]:
        """Most recent first; only calls `user_id` took part in, when given."""
        query = "SELECT doc FROM call_history"
        params: dict[str, Any] = {"l": limit, "o": offset}
        if user_id:
            query += " WHERE users LIKE :u"
            params["u"] = f"%{user_id}%"
        query += " ORDER BY start_time DESC LIMIT :l OFFSET :o"
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(text(query), params)).all()
        return [Call.from_dict(json.loads(r.doc)) for r in rows]

    async def get(self, call_id: str) -> Call | None:
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(text("SELECT doc FROM call_history WHERE id=:i"), {"i": call_id})
            ).first()
        return Call.from_dict(json.loads(row.doc)) if row else None
