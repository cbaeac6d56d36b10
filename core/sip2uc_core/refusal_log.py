"""One log line per source and reason: refusals a person can act on, without flooding the log.

A handset with a wrong password retries every few seconds, a scanner thousands of times a
second; the operator needs to read *that* it happens, *who* and *why*, once. `RefusalLog` writes
the first refusal of each (source, reason) and then stays quiet for `interval` seconds, after
which the next one is written with the count of those it left out. Pure apart from the logger:
the caller passes `now`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["RefusalLog", "printable"]

_MAX_SHOWN = 64


def printable(text: str) -> str:
    """`text` as it may appear in a log line: short, and with control characters escaped (user
    names and header values come from the network)."""
    if len(text) <= _MAX_SHOWN and text.isprintable():
        return text
    shown = repr(text[:_MAX_SHOWN])[1:-1]
    return shown + ("..." if len(text) > _MAX_SHOWN else "")


class RefusalLog:
    def __init__(
        self, logger: logging.Logger, *, interval: float = 60.0, capacity: int = 4096
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._capacity = capacity
        # (source, reason) -> (when last written, refusals left out since)
        self._written: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()

    def note(
        self,
        source: str,
        reason: str,
        now: float,
        message: Callable[[], str],
        level: int = logging.INFO,
    ) -> bool:
        """Write `message()` unless this source and reason were written within the interval;
        True when written. `message` is called only then."""
        key = (source, reason)
        entry = self._written.get(key)
        if entry is not None and now - entry[0] < self._interval:
            self._written[key] = (entry[0], entry[1] + 1)
            return False
        text = message()
        if entry is not None and entry[1]:
            text += f" (and {entry[1]} more like it in the last {now - entry[0]:.0f} s)"
        self._logger.log(level, "%s", text)
        self._written[key] = (now, 0)
        self._written.move_to_end(key)
        while len(self._written) > self._capacity:
            self._written.popitem(last=False)
        return True
