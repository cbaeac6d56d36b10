"""Fan-out of page updates to the browsers' event streams.

Changes are gathered for a short moment (`COALESCE_SECONDS`) and rendered once for every
browser: a burst of presence changes costs one render, and a browser gets at most a few updates
a second. A browser that stops reading is cut off after `BACKLOG` unsent updates rather than
buffered without bound; its EventSource reconnects and starts again from the full state, which
every stream sends first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from . import sse
from .render import Renderer
from .state import Part, StateView

log = logging.getLogger(__name__)

COALESCE_SECONDS = 0.1
BACKLOG = 64
# How long a browser waits before it reconnects a broken stream (the SSE `retry` field).
RETRY_MS = 2000
EVENT_NAME = "update"


class Subscriber:
    """One browser's stream: frames to write, at most `limit`; `get` returns None at the end."""

    def __init__(self, limit: int = BACKLOG) -> None:
        self.limit = limit
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(limit + 1)  # + the end marker
        self._ended = False

    def offer(self, frame: bytes) -> bool:
        """Queue `frame`; False when the stream has ended (now, because it is full, or before)."""
        if self._ended:
            return False
        if self._queue.qsize() >= self.limit:
            while not self._queue.empty():
                self._queue.get_nowait()
            self.end()
            return False
        self._queue.put_nowait(frame)
        return True

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(None)

    async def get(self) -> bytes | None:
        return await self._queue.get()


class UpdateHub:
    def __init__(
        self,
        state: StateView,
        renderer: Renderer,
        *,
        coalesce_seconds: float = COALESCE_SECONDS,
        backlog: int = BACKLOG,
    ) -> None:
        self.state = state
        self.renderer = renderer
        self.coalesce_seconds = coalesce_seconds
        self.backlog = backlog
        self._subscribers: set[Subscriber] = set()
        self._pending: set[Part] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def changed(self, parts: Iterable[Part]) -> None:
        """Parts of the page changed; browsers get them within `coalesce_seconds`."""
        if not self._subscribers:
            return  # whoever subscribes next starts from the full state
        self._pending.update(parts)
        if self._pending and self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.coalesce_seconds, self.flush)

    def flush(self) -> None:
        """Render what is pending and queue it for every browser (now)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        parts, self._pending = self._pending, set()
        if not parts or not self._subscribers:
            return
        try:
            frame = sse.event(self.renderer.update(self.state, parts), name=EVENT_NAME)
        except Exception:
            # A rendering bug must not stop the feeds; the next change renders again.
            log.exception("rendering an update of the state view failed")
            return
        for subscriber in list(self._subscribers):
            if not subscriber.offer(frame):
                self._subscribers.discard(subscriber)

    def subscribe(self) -> Subscriber:
        """A new browser stream, starting with the whole state."""
        subscriber = Subscriber(self.backlog)
        if self._closed:
            subscriber.end()
            return subscriber
        full = self.renderer.full_update(self.state)
        subscriber.offer(sse.event(full, name=EVENT_NAME, retry_ms=RETRY_MS))
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def close(self) -> None:
        """End every stream (the server is stopping)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for subscriber in list(self._subscribers):
            subscriber.end()
        self._subscribers.clear()
