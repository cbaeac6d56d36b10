"""One log line per source and reason: refusals a person can act on, without flooding the log.

A handset with a wrong password retries every few seconds, a scanner thousands of times a
second; the operator needs to read *that* it happens, *who* and *why*, once. `RefusalLog` writes
the first refusal of each (source, reason) and then stays quiet for `interval` seconds, after
which the next one is written with the count of those it left out. Across all sources at most
`budget` lines are written per interval (a flood from many addresses, spoofed or not, must not
flood the log); what the budget holds back is summed up in one line when it allows lines again.
Pure apart from the logger: the caller passes `now`.
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
        self,
        logger: logging.Logger,
        *,
        interval: float = 60.0,
        capacity: int = 4096,
        budget: int = 100,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._capacity = capacity
        self._budget = budget
        # (source, reason) -> (when last written, refusals left out since)
        self._written: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()
        # The budget's window: when it began, lines written in it, refusals it held back.
        self._window_start: float | None = None
        self._window_lines = 0
        self._held_back = 0

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
        if not self._within_budget(now, level):
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

    def _within_budget(self, now: float, level: int) -> bool:
        start = self._window_start
        if start is None or now - start >= self._interval:
            if self._held_back and start is not None:
                self._logger.log(
                    level,
                    "%d more refusals were not logged in the last %.0f s (too many sources)",
                    self._held_back,
                    now - start,
                )
            self._window_start, self._window_lines, self._held_back = now, 0, 0
        if self._window_lines >= self._budget:
            self._held_back += 1
            return False
        self._window_lines += 1
        return True
