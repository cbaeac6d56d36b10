"""The runner's outbound side: the latest state per user, and which cursor is safe to save.

Every message of the watch stream gets an arrival number (`note_cursor`); each user's entry in
the :class:`~.coalescing.CoalescingQueue` remembers the arrival number of the oldest change not
yet delivered. The cursor that may be saved is the last one received *before* the oldest
undelivered change, so a bridge restarted from it replays at most changes it had already
delivered — in order, ending with each user's latest state — and never skips one.
"""

from __future__ import annotations

from collections import deque

from .bridge import PresenceUpdate
from .coalescing import CoalescingQueue

__all__ = ["OutboundQueue"]


class OutboundQueue(CoalescingQueue[PresenceUpdate]):
    def __init__(self) -> None:
        super().__init__()
        self._cursors: deque[tuple[int, str]] = deque()
        self._seq = 0
        self._safe: str | None = None

    def note_cursor(self, cursor: str) -> int:
        """Record a watch message's cursor; returns the arrival number for its updates."""
        self._seq += 1
        self._cursors.append((self._seq, cursor))
        return self._seq

    def offer_update(self, update: PresenceUpdate, seq: int, at: float) -> None:
        """``at``: when the change happened (for a snapshot: when it arrived)."""
        self.offer(update.user, update, seq, at)

    def safe_cursor(self) -> str | None:
        """The newest cursor that may be saved (see the module docstring)."""
        oldest = self.oldest_seq()
        cursors = self._cursors
        while cursors and (oldest is None or cursors[0][0] < oldest):
            self._safe = cursors.popleft()[1]
        return self._safe
