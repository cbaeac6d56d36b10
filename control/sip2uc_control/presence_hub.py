"""Per-user presence records, their persistence, and the resumable change stream.

The engine (`presence.engine`) decides; the hub keeps one record per user, changes it in memory at
once, writes the records and change events of everything that changed meanwhile in one batch, and
fans changes out to watchers once they are committed. Every change gets a sequence number
(`presence_events.seq`, assigned here in change order): a watcher's cursor is the last sequence
number it saw, so a watcher that reconnects with it gets exactly the changes it missed, in order, from the
log — as long as the log still holds them (`retain` events), else a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .errors import StorageUnavailable
from .presence import (
    Availability,
    EffectivePresence,
    PresenceChange,
    PresenceEngine,
    PresenceRecord,
    Transition,
)

log = logging.getLogger(__name__)

WATCHER_QUEUE_LIMIT = 10_000


def _resolver(future: asyncio.Future[None]) -> Callable[[asyncio.Future[None]], None]:
    def resolve(_: asyncio.Future[None]) -> None:
        if not future.done():
            future.set_result(None)

    return resolve


@dataclass(frozen=True)
class LoggedChange:
    seq: int
    change: PresenceChange


@dataclass
class StoredPresence:
    """What the log holds at start: every user's record, the last sequence number and the most
    recent changes."""

    records: dict[str, PresenceRecord] = field(default_factory=dict)
    last_seq: int = 0
    recent: list[LoggedChange] = field(default_factory=list)


class PresenceLog(Protocol):
    """Where records and changes are kept (`store/presence.py`)."""

    async def load(self, recent: int) -> StoredPresence:
        """The records, the last sequence number and up to `recent` changes before it."""
        ...

    async def write(
        self, records: Mapping[str, PresenceRecord], events: Sequence[tuple[LoggedChange, float]]
    ) -> None:
        """Store the latest records and the change events (with when they happened) at once."""
        ...

    async def changes_after(self, cursor: int) -> list[LoggedChange] | None:
        """The logged changes after `cursor`, in order; None when the log has lost some."""
        ...

    async def trim(self, up_to: int) -> None:
        """Forget the changes up to sequence number `up_to`."""
        ...


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
        store: PresenceLog,
        engine: PresenceEngine,
        clock: Callable[[], float],
        *,
        retain: int = 100_000,
        on_change: Callable[[PresenceChange], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.engine = engine
        self.clock = clock
        self.retain = retain
        self.records: dict[str, PresenceRecord] = {}
        self.recent: deque[LoggedChange] = deque(maxlen=min(retain, 10_000))
        self.last_seq = 0
        self._watchers: set[_Watcher] = set()
        self._next_seq = 0
        # Queued writes: the latest record per user, and change events in sequence order.
        self._pending_records: dict[str, PresenceRecord] = {}
        self._pending_events: list[tuple[LoggedChange, float]] = []
        # Resolved when the batch that the queued writes will join is committed.
        self._flushed: asyncio.Future[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._on_change = on_change
        self._sleep = sleep  # between retries of a failed write

    async def load(self) -> None:
        stored = await self.store.load(self.recent.maxlen or 0)
        self.records.update(stored.records)
        self.last_seq = stored.last_seq
        self._next_seq = self.last_seq
        self.recent.extend(stored.recent)

    # --- reading -------------------------------------------------------------------------------

    def record(self, user_id: str) -> PresenceRecord:
        rec = self.records.get(user_id)
        return rec if rec is not None else PresenceRecord.new(user_id, self.clock())

    def begin(self, user_id: str, since: float | None = None) -> None:
        """A user is created: its presence (offline) starts now (or `since`), so that the first
        change says since when the user was in the state it leaves rather than the time of the
        change. A user that has a record already keeps it."""
        if user_id not in self.records:
            record = PresenceRecord.new(user_id, self.clock() if since is None else since)
            self.records[user_id] = self._pending_records[user_id] = record
            self._schedule_flush()

    def in_calls(self) -> dict[str, frozenset[str]]:
        """The users whose record has calls, with those calls' ids."""
        return {
            uid: frozenset(e.call_id for e in rec.calls)
            for uid, rec in self.records.items()
            if rec.calls
        }

    def effective(self, user_id: str) -> EffectivePresence:
        return self.engine.resolve(self.record(user_id))

    def counts(self, user_ids: list[str]) -> dict[Availability, int]:
        out: dict[Availability, int] = {}
        for uid in user_ids:
            a = self.effective(uid).availability
            out[a] = out.get(a, 0) + 1
        return out

    # --- changing ------------------------------------------------------------------------------

    def apply(
        self, user_id: str, step: Callable[[PresenceRecord, float], Transition]
    ) -> PresenceChange | None:
        """Apply one engine transition now and queue its write; watchers hear of it once durable.

        The record in memory changes at once, so routing decisions that follow (busy, in a call)
        see it; the row and the change event are written by the flusher in the next batch. Callers
        that must not answer before the change is durable use `update`.
        """
        return self._apply(user_id, step)[0]

    def _apply(
        self, user_id: str, step: Callable[[PresenceRecord, float], Transition]
    ) -> tuple[PresenceChange | None, asyncio.Future[None] | None]:
        """The change, and the future of the commit that writes it (None: nothing to write)."""
        now = self.clock()
        old_record = self.records.get(user_id)
        new_record, change = step(self.record(user_id), now)
        if change is None and new_record == old_record:
            return None, None  # a refresh that changes nothing needs no write
        self.records[user_id] = new_record
        self._pending_records[user_id] = new_record
        if change is not None:
            # Sequence numbers are assigned here, not by the database, so that a batch of events
            # is one executemany without RETURNING. This assumes one writer of presence_events
            # (one control plane per database); replicas sharing PostgreSQL would need a
            # database sequence reserved in blocks instead.
            self._next_seq += 1
            self._pending_events.append((LoggedChange(self._next_seq, change), now))
        return change, self._schedule_flush()

    async def update(
        self, user_id: str, step: Callable[[PresenceRecord, float], Transition]
    ) -> PresenceChange | None:
        """`apply`, then wait until the change is committed and published."""
        change, committed = self._apply(user_id, step)
        if committed is not None:
            await asyncio.shield(committed)
        return change

    async def drain(self) -> None:
        """Wait until every queued write is committed (before the database closes)."""
        while self._flusher is not None:
            await asyncio.shield(self._flusher)

    def _schedule_flush(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        if self._flushed is None:
            self._flushed = loop.create_future()
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush_loop(), name="presence-flusher")
        return self._flushed

    async def _flush_loop(self) -> None:
        """Write what has queued as one batch, one batch at a time so that a user's rows reach
        the database in the order they changed."""
        records: dict[str, PresenceRecord] = {}
        events: list[tuple[LoggedChange, float]] = []
        done: asyncio.Future[None] | None = None
        try:
            while self._pending_records or self._pending_events:
                records, self._pending_records = self._pending_records, {}
                events, self._pending_events = self._pending_events, []
                done, self._flushed = self._flushed, None
                await self._write(records, events)
                for item, _at in events:
                    self._publish(item)
                records, events = {}, []
                if done is not None and not done.done():
                    done.set_result(None)
                done = None
        finally:
            self._flusher = None
            if records or events:
                # Cancelled mid-batch: put the batch back in front of what queued since.
                records.update(self._pending_records)
                self._pending_records = records
                self._pending_events[:0] = events
                if done is not None and self._flushed is not None:
                    self._flushed.add_done_callback(_resolver(done))
                elif done is not None:
                    self._flushed = done
            if self._pending_records or self._pending_events:
                self._schedule_flush()

    async def _write(
        self, records: dict[str, PresenceRecord], events: list[tuple[LoggedChange, float]]
    ) -> None:
        """Retry until the batch is committed: a presence change is never dropped."""
        attempt = 0
        while True:
            try:
                await self.store.write(records, events)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                delay = min(5.0, 0.05 * (1 << min(attempt, 7)))
                if not isinstance(exc, StorageUnavailable):  # the store logs those, once
                    log.warning(
                        "presence write of %d records and %d changes failed (attempt %d), "
                        "retrying in %.2fs: %s",
                        len(records),
                        len(events),
                        attempt,
                        delay,
                        exc,
                    )
                await self._sleep(delay)

    def _publish(self, item: LoggedChange) -> None:
        self.last_seq = max(self.last_seq, item.seq)
        self.recent.append(item)
        for watcher in list(self._watchers):
            watcher.offer(item)
        if self._on_change is not None:
            self._on_change(item.change)

    async def forget(self, user_id: str) -> None:
        self.records.pop(user_id, None)
        self._pending_records.pop(user_id, None)

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
        if cutoff > 0:
            await self.store.trim(cutoff)

    # --- watching ------------------------------------------------------------------------------

    async def _changes_after(self, cursor: int) -> list[LoggedChange] | None:
        """Changes after `cursor` from memory or the log; None when the log no longer has them."""
        if cursor > self.last_seq:
            return None
        if self.recent and self.recent[0].seq <= cursor + 1:
            return [c for c in self.recent if c.seq > cursor]
        logged = await self.store.changes_after(cursor)
        if logged is None:
            return None if cursor < self.last_seq else []
        return logged

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
