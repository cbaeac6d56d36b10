"""The last warnings and errors of this process, kept in memory for the admin API.

`RecentLogHandler` sits on the root logger at WARNING and copies each record into a `RecentLog`:
a ring of the newest entries (the oldest drop out) that also offers every new entry to its
watchers (`AdminService.WatchLogEntries`). Nothing is written anywhere; a restart starts empty.

Records may be logged from any thread (gRPC and database worker threads log too); the ring and
its watchers belong to the event loop's thread, so other threads hand their entries over with
`call_soon_threadsafe`. Log records never hold secrets, so the entries need no redaction; they
are only cut to a bounded length.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from dataclasses import dataclass

from opentelemetry import trace

from .watchers import Watchers, WatchQueue

# Entries kept: enough for the last minutes of a troubled system, small enough to send whole.
RECENT_LOG_CAPACITY = 200
# A longer message is cut here (with a marker), so one record cannot make the buffer large.
MAX_MESSAGE_CHARS = 2000


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One buffered log record."""

    sequence: int
    time: float  # seconds since the epoch
    level: int  # logging.WARNING, logging.ERROR, logging.CRITICAL
    logger: str
    message: str
    trace_id: str  # 32 hex digits, or "" outside any span


class RecentLog:
    """The newest entries and their watchers; used on the event loop's thread only."""

    def __init__(self, capacity: int = RECENT_LOG_CAPACITY) -> None:
        self._entries: deque[LogEntry] = deque(maxlen=capacity)
        self._watchers: Watchers[LogEntry] = Watchers()
        self._sequence = 0

    def add(self, time: float, level: int, logger: str, message: str, trace_id: str) -> LogEntry:
        self._sequence += 1
        entry = LogEntry(self._sequence, time, level, logger, message, trace_id)
        self._entries.append(entry)
        self._watchers.offer(entry)
        return entry

    def entries(self, min_level: int = 0) -> list[LogEntry]:
        """The buffered entries at least `min_level` severe, oldest first."""
        return [e for e in self._entries if e.level >= min_level]

    def watch(self) -> WatchQueue[LogEntry]:
        return self._watchers.watch()

    def unwatch(self, queue: WatchQueue[LogEntry]) -> None:
        self._watchers.unwatch(queue)

    def close(self) -> None:
        """End every watch stream (server shutdown)."""
        self._watchers.end_all()


def entry_message(record: logging.LogRecord) -> str:
    """The record's text as an operator reads it: the message, plus the exception's type and
    text when one is attached (not the traceback), at most MAX_MESSAGE_CHARS long."""
    message = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        message = f"{message} ({type(exc).__name__}: {exc})"
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return message


class RecentLogHandler(logging.Handler):
    """Copies WARNING and worse records into a `RecentLog` owned by `loop`."""

    def __init__(self, recent: RecentLog, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(logging.WARNING)
        self._recent = recent
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            context = trace.get_current_span().get_span_context()
            trace_id = f"{context.trace_id:032x}" if context.is_valid else ""
            args = (record.created, record.levelno, record.name, entry_message(record), trace_id)
            if threading.get_ident() == self._loop_thread:
                self._recent.add(*args)
            elif not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._recent.add, *args)
        except Exception:
            self.handleError(record)
