"""The short-message history (`messages`) and how far retention has trimmed it (`message_log`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from ..messaging.model import DeliveryState, MessageOrigin, ShortMessage
from .db import Database

_COLUMNS = (
    "seq, sender_id, sender_uri, sender_display_name, recipient_id, recipient_uri, body, "
    "origin, state, attempted, delivered, failed, failure_reason, create_time"
)
_PARAMS = ", ".join(f":{c.strip()}" for c in _COLUMNS.split(","))
_INSERT = text(f"INSERT INTO messages ({_COLUMNS}) VALUES ({_PARAMS})")  # noqa: S608
# The column list is fixed and every value is bound.
_SELECT = f"SELECT {_COLUMNS} FROM messages"  # noqa: S608
_GET = text(_SELECT + " WHERE seq=:s")
_AFTER = text(_SELECT + " WHERE seq > :c ORDER BY seq LIMIT :l")
_UPDATE = text(
    "UPDATE messages SET state=:state, attempted=:attempted, delivered=:delivered, "
    "failed=:failed, failure_reason=:failure_reason WHERE seq=:seq"
)


def _row(message: ShortMessage) -> dict[str, Any]:
    return {
        "seq": message.seq,
        "sender_id": message.sender_id,
        "sender_uri": message.sender_uri,
        "sender_display_name": message.sender_display_name,
        "recipient_id": message.recipient_id,
        "recipient_uri": message.recipient_uri,
        "body": message.text,
        "origin": message.origin.value,
        "state": message.state.value,
        "attempted": message.attempted,
        "delivered": message.delivered,
        "failed": message.failed,
        "failure_reason": message.failure_reason,
        "create_time": message.create_time,
    }


def _message(row: Row[Any]) -> ShortMessage:
    return ShortMessage(
        seq=int(row.seq),
        sender_id=row.sender_id,
        sender_uri=row.sender_uri,
        sender_display_name=row.sender_display_name,
        recipient_id=row.recipient_id,
        recipient_uri=row.recipient_uri,
        text=row.body,
        create_time=float(row.create_time),
        origin=MessageOrigin(row.origin),
        state=DeliveryState(row.state),
        attempted=int(row.attempted),
        delivered=int(row.delivered),
        failed=int(row.failed),
        failure_reason=row.failure_reason,
    )


class MessageStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self) -> tuple[int, int]:
        async with self.db.engine.connect() as conn:
            last = (await conn.execute(text("SELECT MAX(seq) FROM messages"))).scalar()
            trimmed = (
                await conn.execute(text("SELECT trimmed_through FROM message_log WHERE id=1"))
            ).scalar()
        trimmed = int(trimmed or 0)
        return max(int(last or 0), trimmed), trimmed

    async def insert(self, message: ShortMessage) -> None:
        await self.db.submit_rows([(_INSERT, [_row(message)])])

    async def update(self, message: ShortMessage) -> None:
        await self.db.submit_rows([(_UPDATE, [_row(message)])])

    async def get(self, seq: int) -> ShortMessage | None:
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(_GET, {"s": seq})).first()
        return _message(row) if row is not None else None

    async def after(self, cursor: int, limit: int) -> list[ShortMessage]:
        async with self.db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    _AFTER,
                    {"c": cursor, "l": limit},
                )
            ).all()
        return [_message(r) for r in rows]

    async def page(self, user_id: str | None, before: int | None, limit: int) -> list[ShortMessage]:
        where = ["seq < :b"] if before is not None else []
        params: dict[str, Any] = {"l": limit, "b": before}
        if user_id:
            where.append("(sender_id = :u OR recipient_id = :u)")
            params["u"] = user_id
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        async with self.db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(_SELECT + clause + " ORDER BY seq DESC LIMIT :l"),
                    params,
                )
            ).all()
        return [_message(r) for r in rows]

    async def trim(self, older_than: float, keep_last: int, last_seq: int) -> int:
        async def write(conn: AsyncConnection) -> int:
            newest_old = (
                await conn.execute(
                    text("SELECT MAX(seq) FROM messages WHERE create_time < :t"), {"t": older_than}
                )
            ).scalar()
            through = max(int(newest_old or 0), last_seq - keep_last)
            current = (
                await conn.execute(text("SELECT trimmed_through FROM message_log WHERE id=1"))
            ).scalar()
            if through <= int(current or 0):
                return int(current or 0)
            # Everything up to `through` goes, so that the history stays one unbroken run of
            # numbers after `trimmed_through` (a watch's cursor relies on it).
            await conn.execute(text("DELETE FROM messages WHERE seq <= :s"), {"s": through})
            await conn.execute(
                text("UPDATE message_log SET trimmed_through=:s WHERE id=1"), {"s": through}
            )
            return through

        result: int = await self.db.submit(write)
        return result
