"""Per-user presence records, their persistence, and the resumable change stream.

The engine (`presence.engine`) decides; the hub keeps one record per user, persists the record and
the change event in one commit, and fans changes out to watchers. Every change gets a sequence
number from the database (`presence_events.seq`): a watcher's cursor is the last sequence number it
saw, so a watcher that reconnects with it gets exactly the changes it missed, in order, from the
log — as long as the log still holds them (`retain` events), else a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .presence import (
    Availability,
    EffectivePresence,
    PresenceChange,
    PresenceEngine,
    PresenceRecord,
    Transition,
)
from .store.db import Database

log = logging.getLogger(__name__)

WATCHER_QUEUE_LIMIT = 10_000


@dataclass(frozen=True)
class LoggedChange:
    seq: int
    change: PresenceChange


@dataclass(frozen=True)
class WatchItem:
    """One item of a watch: a snapshot (``snapshot`` set) or a change, with the cursor after it."""

    cursor: int
    change: PresenceChange | None = None
    snapshot: dict[str, EffectivePresence] | None = None
    cursor_expired: bool = False


class _Watcher:
    def __init__(self, users: frozenset[str] | None) -> None:
        self.users = users
        self.queue: asyncio.Queue[LoggedChange | None] = asyncio.Queue(WATCHER_QUEUE_LIMIT)
        self.overflowed = False

    def offer(self, item: LoggedChange) -> None:
        if self.users is not None and item.change.user not in self.users:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # A watcher that cannot keep up is cut off; it resumes from its cursor and loses nothing.
            self.overflowed = True
            self.queue = asyncio.Queue(1)
            self.queue.put_nowait(None)


class PresenceHub:
    def __init__(
        self,
        db: Database,
        engine: PresenceEngine,
        clock: Callable[[], float],
        *,
        retain: int = 100_000,
        on_change: Callable[[PresenceChange], None] | None = None,
    ) -> None:
        self.db = db
        self.engine = engine
        self.clock = clock
        self.retain = retain
        self.records: dict[str, PresenceRecord] = {}
        self.recent: deque[LoggedChange] = deque(maxlen=min(retain, 10_000))
        self.last_seq = 0
        self._watchers: set[_Watcher] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._on_change = on_change

    async def load(self) -> None:
        async with self.db.engine.connect() as conn:
            for row in (await conn.execute(text("SELECT user_id, record FROM presence"))).all():
                try:
                    self.records[row.user_id] = PresenceRecord.from_dict(json.loads(row.record))
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning(
                        "presence record of %s unreadable, starting it afresh: %s", row.user_id, exc
                    )
            seq = (await conn.execute(text("SELECT MAX(seq) FROM presence_events"))).scalar()
            self.last_seq = int(seq or 0)
            rows = (
                await conn.execute(
                    text("SELECT seq, change FROM presence_events WHERE seq > :s ORDER BY seq"),
                    {"s": self.last_seq - (self.recent.maxlen or 0)},
                )
            ).all()
        for row in rows:
            self.recent.append(
                LoggedChange(row.seq, PresenceChange.from_dict(json.loads(row.change)))
            )

    # --- reading -------------------------------------------------------------------------------

    def record(self, user_id: str) -> PresenceRecord:
        rec = self.records.get(user_id)
        return rec if rec is not None else PresenceRecord.new(user_id, self.clock())

    def effective(self, user_id: str) -> EffectivePresence:
        return self.engine.resolve(self.record(user_id))

    def counts(self, user_ids: list[str]) -> dict[Availability, int]:
        out: dict[Availability, int] = {}
        for uid in user_ids:
            a = self.effective(uid).availability
            out[a] = out.get(a, 0) + 1
        return out

    # --- changing ------------------------------------------------------------------------------

    async def update(
        self, user_id: str, step: Callable[[PresenceRecord, float], Transition]
    ) -> PresenceChange | None:
        """Apply one engine transition to a user's record, persist it, and publish any change."""
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        async with lock:
            now = self.clock()
            old_record = self.records.get(user_id)
            new_record, change = step(self.record(user_id), now)
            if change is None and new_record == old_record:
                return None  # a refresh that changes nothing needs no write
            record_json = json.dumps(new_record.to_dict())
            change_json = json.dumps(change.to_dict()) if change is not None else None

            async def write(conn: AsyncConnection) -> int | None:
                await conn.execute(
                    text(
                        "INSERT INTO presence (user_id, record) VALUES (:u, :r) "
                        "ON CONFLICT (user_id) DO UPDATE SET record = excluded.record"
                    ),
                    {"u": user_id, "r": record_json},
                )
                if change_json is None:
                    return None
                seq = (
                    await conn.execute(
                        text(
                            "INSERT INTO presence_events (user_id, change, at) "
                            "VALUES (:u, :c, :a) RETURNING seq"
                        ),
                        {"u": user_id, "c": change_json, "a": now},
                    )
                ).scalar_one()
                return int(seq)

            seq = await self.db.submit(write)
            self.records[user_id] = new_record
            if change is not None and seq is not None:
                self._publish(LoggedChange(seq, change))
            return change

    def _publish(self, item: LoggedChange) -> None:
        self.last_seq = max(self.last_seq, item.seq)
        self.recent.append(item)
        for watcher in list(self._watchers):
            watcher.offer(item)
        if self._on_change is not None:
            self._on_change(item.change)

    async def forget(self, user_id: str) -> None:
        self.records.pop(user_id, None)
        self._locks.pop(user_id, None)

    def next_deadline(self) -> float | None:
        deadlines = [
            d for r in self.records.values() if (d := self.engine.next_deadline(r)) is not None
        ]
        return min(deadlines) if deadlines else None

    async def expire_due(self) -> int:
        now = self.clock()
        due = [
            uid
            for uid, r in self.records.items()
            if (d := self.engine.next_deadline(r)) is not None and d <= now
        ]
        for uid in due:
            await self.update(uid, self.engine.expire)
        return len(due)

    async def trim_log(self) -> None:
        cutoff = self.last_seq - self.retain

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(text("DELETE FROM presence_events WHERE seq <= :c"), {"c": cutoff})

        if cutoff > 0:
            await self.db.submit(write)

    # --- watching ------------------------------------------------------------------------------

    async def _changes_after(self, cursor: int) -> list[LoggedChange] | None:
        """Changes after `cursor` from memory or the log; None when the log no longer has them."""
        if cursor > self.last_seq:
            return None
        if self.recent and self.recent[0].seq <= cursor + 1:
            return [c for c in self.recent if c.seq > cursor]
        async with self.db.engine.connect() as conn:
            oldest = (await conn.execute(text("SELECT MIN(seq) FROM presence_events"))).scalar()
            if oldest is None or int(oldest) > cursor + 1:
                return None if cursor < self.last_seq else []
            rows = (
                await conn.execute(
                    text("SELECT seq, change FROM presence_events WHERE seq > :s ORDER BY seq"),
                    {"s": cursor},
                )
            ).all()
        return [LoggedChange(r.seq, PresenceChange.from_dict(json.loads(r.change))) for r in rows]

    async def watch(
        self,
        user_ids: frozenset[str] | None,
        cursor: int | None,
        snapshot_ids: Callable[[], list[str]],
    ) -> AsyncIterator[WatchItem]:
        """Snapshot (unless resuming from a held cursor), then changes, each with its cursor."""
        watcher = _Watcher(user_ids)
        self._watchers.add(watcher)  # register first: nothing published from now on is missed
        try:
            backlog = await self._changes_after(cursor) if cursor is not None else None
            if backlog is None:
                start = self.last_seq
                yield WatchItem(
                    cursor=start,
                    snapshot={uid: self.effective(uid) for uid in snapshot_ids()},
                    cursor_expired=cursor is not None,
                )
                position = start
            else:
                position = cursor if cursor is not None else 0
                for item in backlog:
                    if user_ids is None or item.change.user in user_ids:
                        yield WatchItem(cursor=item.seq, change=item.change)
                    position = item.seq
            while True:
                live = await watcher.queue.get()
                if live is None:
                    return  # overflowed: the client resumes from its last cursor
                if live.seq <= position:
                    continue  # already sent from the backlog
                position = live.seq
                yield WatchItem(cursor=live.seq, change=live.change)
        finally:
            self._watchers.discard(watcher)

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)
