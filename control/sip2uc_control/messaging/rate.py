"""A token bucket per sender: `burst` messages at once, then `per_minute` on average.

Pure: fed `now`, no clock inside. The table of buckets is bounded; when it is full, buckets
that have filled up again (their sender has been quiet) are dropped first, which changes
nobody's allowance.
"""

from __future__ import annotations

import math

__all__ = ["RateLimiter"]

MAX_SENDERS = 100_000


class RateLimiter:
    def __init__(self, per_minute: int, burst: int, *, max_senders: int = MAX_SENDERS) -> None:
        self.per_minute = per_minute
        self.burst = burst
        self.max_senders = max_senders
        #: sender -> (tokens, when they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}

    def configure(self, per_minute: int, burst: int) -> None:
        self.per_minute = per_minute
        self.burst = burst

    def _tokens(self, sender: str, now: float) -> float:
        tokens, at = self._buckets.get(sender, (float(self.burst), now))
        return min(float(self.burst), tokens + max(0.0, now - at) * self.per_minute / 60.0)

    def take(self, sender: str, now: float) -> int:
        """0 when `sender` may send now (a token is taken), else the whole seconds until it may."""
        tokens = self._tokens(sender, now)
        if tokens >= 1.0:
            if sender not in self._buckets and len(self._buckets) >= self.max_senders:
                self._forget_full(now)
            self._buckets[sender] = (tokens - 1.0, now)
            return 0
        self._buckets[sender] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) * 60.0 / self.per_minute))

    def _forget_full(self, now: float) -> None:
        full = [s for s in self._buckets if self._tokens(s, now) >= self.burst]
        for sender in full:
            del self._buckets[sender]
        if len(self._buckets) >= self.max_senders:
            # Everyone is mid-burst: forget the oldest half (they get a fresh burst).
            oldest = sorted(self._buckets, key=lambda s: self._buckets[s][1])
            for sender in oldest[: len(oldest) // 2]:
                del self._buckets[sender]

    def __len__(self) -> int:
        return len(self._buckets)
