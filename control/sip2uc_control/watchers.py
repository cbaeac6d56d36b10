"""A watch stream's bounded queue: a watcher that stops reading is cut off, not buffered forever."""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")

# Changes a watcher may fall behind by before its stream is ended (as the presence hub does).
WATCH_QUEUE_LIMIT = 10_000


class WatchQueue(Generic[T]):
    """Changes for one watcher; `get` returns None when the stream is to end.

    Publishers never wait: `offer` on a full queue drops what is queued and leaves only the end
    marker, so memory stays bounded by `limit` whatever the client does. The client watches
    again and gets a fresh snapshot.
    """

    def __init__(self, limit: int = WATCH_QUEUE_LIMIT) -> None:
        self.limit = limit
        self.overflowed = False
        self._queue: asyncio.Queue[T | None] = asyncio.Queue(limit + 1)  # + the end marker
        self._ended = False

    def offer(self, item: T) -> bool:
        """Queue `item`; False when the watcher has ended (now, on overflow, or before)."""
        if self._ended:
            return False
        if self._queue.qsize() >= self.limit:
            self.overflowed = True
            self._drain()
            self.end()
            return False
        self._queue.put_nowait(item)
        return True

    def end(self) -> None:
        """End the stream after what is queued (server shutdown)."""
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(None)

    async def get(self) -> T | None:
        return await self._queue.get()

    def _drain(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()


class Watchers(Generic[T]):
    """The watch streams of one kind of change: each gets every change offered, and one that
    was cut off (it stopped reading) is dropped."""

    def __init__(self) -> None:
        self._queues: set[WatchQueue[T]] = set()

    def watch(self, limit: int = WATCH_QUEUE_LIMIT) -> WatchQueue[T]:
        queue: WatchQueue[T] = WatchQueue(limit)
        self._queues.add(queue)
        return queue

    def __contains__(self, queue: WatchQueue[T]) -> bool:
        return queue in self._queues

    def unwatch(self, queue: WatchQueue[T]) -> None:
        self._queues.discard(queue)

    def offer(self, item: T) -> None:
        for queue in list(self._queues):
            if not queue.offer(item):
                self._queues.discard(queue)

    def end_all(self) -> None:
        """End every stream after what it has queued (server shutdown)."""
        for queue in list(self._queues):
            queue.end()
        self._queues.clear()
