"""A work queue that keeps only the latest item per key, for the runner's two directions.

Pure bookkeeping (no I/O, no clock: times are passed in). A burst of items for one key while an
item for it is being worked on leaves one entry holding only the latest item; it is taken once
the work in flight is done, so a key's items are never worked on concurrently or out of order.
Failed work is retried after a growing delay, with whatever item is the latest by then.

Each entry remembers the arrival number (``seq``) and time of the oldest item it stands for,
so that callers can tell what is not yet done (the outbound queue's safe cursor, the lag).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["CoalescingQueue"]

T = TypeVar("T")


@dataclass(slots=True)
class _Entry(Generic[T]):
    item: T
    first_seq: int
    first_at: float
    attempts: int = 0


class CoalescingQueue(Generic[T]):
    def __init__(self) -> None:
        self._pending: OrderedDict[str, _Entry[T]] = OrderedDict()
        self._in_flight: dict[str, _Entry[T]] = {}
        # Entries waiting out a retry delay: (not before, first seq, key).
        self._delayed: list[tuple[float, int, str]] = []
        self._delayed_entries: dict[str, _Entry[T]] = {}
        self.done_count = 0

    def offer(self, key: str, item: T, seq: int = 0, at: float = 0.0) -> None:
        """``item`` is now the latest for ``key`` (as of arrival ``seq`` at time ``at``)."""
        for table in (self._pending, self._delayed_entries):
            entry = table.get(key)
            if entry is not None:
                entry.item = item
                return
        self._pending[key] = _Entry(item, seq, at)

    def take(self, now: float) -> tuple[str, T] | None:
        """The next key to work on (none of its work in flight) and its latest item."""
        self._release_due(now)
        for key in self._pending:
            if key not in self._in_flight:
                entry = self._pending.pop(key)
                self._in_flight[key] = entry
                return key, entry.item
        return None

    def done(self, key: str) -> None:
        if self._in_flight.pop(key, None) is not None:
            self.done_count += 1

    def drop(self, key: str) -> None:
        """Forget the work taken for ``key`` without counting it as done (it cannot succeed)."""
        self._in_flight.pop(key, None)

    def failed(self, key: str, now: float, max_delay: float) -> float:
        """The work taken for ``key`` failed: retry it (or a newer item) after a delay that
        doubles with each attempt, from 0.5 s up to ``max_delay``. Returns the delay."""
        entry = self._in_flight.pop(key, None)
        if entry is None:
            return 0.0
        newer = self._pending.pop(key, None)
        if newer is not None:
            entry.item = newer.item  # keep the older first_seq: that item is not done
        entry.attempts += 1
        delay = min(max_delay, 0.5 * 2.0 ** min(entry.attempts - 1, 10))
        self._delayed_entries[key] = entry
        heapq.heappush(self._delayed, (now + delay, entry.first_seq, key))
        return delay

    def _release_due(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            entry = self._delayed_entries.pop(key, None)
            if entry is None:
                continue
            self._pending[key] = entry
            self._pending.move_to_end(key, last=False)  # retries go first

    def next_retry_at(self) -> float | None:
        return self._delayed[0][0] if self._delayed else None

    def ready(self, now: float) -> bool:
        self._release_due(now)
        return any(key not in self._in_flight for key in self._pending)

    def __len__(self) -> int:
        return len(self._pending) + len(self._in_flight) + len(self._delayed_entries)

    def _entries(self) -> Iterator[_Entry[T]]:
        for table in (self._pending, self._in_flight, self._delayed_entries):
            yield from table.values()

    def oldest_at(self) -> float | None:
        """When the oldest item not yet done arrived, or None when all are done."""
        return min((e.first_at for e in self._entries()), default=None)

    def oldest_seq(self) -> int | None:
        return min((e.first_seq for e in self._entries()), default=None)
