"""The bridge's request budget: at most `limit` Graph requests in any `window` seconds.

Graph's presence APIs allow 1,500 requests per 30 seconds per application and tenant
(https://learn.microsoft.com/graph/api/cloudcommunications-getpresencesbyuserid and
https://learn.microsoft.com/graph/throttling-limits). Spending less than that keeps the bridge
out of 429s; the numbers are configuration because the limits are Microsoft's to change.
"""

from __future__ import annotations

from collections import deque


class RequestBudget:
    """A sliding-window counter fed with `now`; no clock inside."""

    __slots__ = ("_sent", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a request budget needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._sent: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - self.window:
            self._sent.popleft()

    def available(self, now: float) -> bool:
        self._expire(now)
        return len(self._sent) < self.limit

    def spend(self, now: float) -> None:
        self._expire(now)
        if len(self._sent) >= self.limit:
            raise RuntimeError("request budget exhausted")
        self._sent.append(now)

    def next_free(self, now: float) -> float:
        """When the next request may go out (now if it may already)."""
        self._expire(now)
        if len(self._sent) < self.limit:
            return now
        return self._sent[0] + self.window

    def used(self, now: float) -> int:
        self._expire(now)
        return len(self._sent)
