"""When to try again after Graph refused or failed: Retry-After, or exponential backoff.

Graph answers throttling with 429 and a Retry-After header in seconds, sometimes fractional
("2.128", https://learn.microsoft.com/graph/throttling); RFC 9110 §10.2.3 also allows an HTTP date.
Without it the bridge backs off exponentially with jitter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

# A Retry-After beyond this is treated as this: a misbehaving proxy must not park the bridge
# for a day.
MAX_RETRY_AFTER = 3600.0


def parse_retry_after(value: str | None, *, now_epoch: float) -> float | None:
    """Seconds to wait from a Retry-After header value, or None when absent or unusable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - now_epoch
    if seconds != seconds or seconds < 0:  # NaN or in the past
        return 0.0 if seconds == seconds else None
    return min(seconds, MAX_RETRY_AFTER)


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with "equal jitter": attempt n waits between d/2 and d, where
    d = min(cap, base * factor**n). Half the delay is certain, so the bridge really backs off;
    the other half spreads bridges that failed together."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.base <= 0 or self.factor < 1 or self.cap < self.base:
            raise ValueError("backoff needs base > 0, factor >= 1 and cap >= base")

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * self.factor ** min(attempt, 64))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)
