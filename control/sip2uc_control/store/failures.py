"""Storage that cannot be written or read: told apart from bugs, answered plainly, logged once.

A full disk (SQLite's SQLITE_FULL, PostgreSQL's 53100, ENOSPC) is `StorageUnavailable` with
`exhausted` set, answered RESOURCE_EXHAUSTED; a database that cannot be reached or opened is
answered UNAVAILABLE. The API's answer says what happened in words; the log says it once when it
starts (with the driver's own short message: never SQLAlchemy's text, which quotes statements
and their parameters, password hashes among them) and once when writes succeed again.
Constraint violations (IntegrityError) are not storage failures: their callers handle them.
"""

from __future__ import annotations

import errno
import logging

from sqlalchemy import exc as sa_exc

from ..errors import StorageUnavailable

__all__ = ["DatabaseError", "StorageHealth", "storage_failure"]

#: What the database layer raises; the API maps any of these that reaches a handler.
DatabaseError = sa_exc.SQLAlchemyError

_log = logging.getLogger("sip2uc_control.store")

# SQLite primary result codes (https://www.sqlite.org/rescode.html).
_SQLITE_FULL = 13
_SQLITE_UNAVAILABLE = {
    5: "the database is busy",  # SQLITE_BUSY
    6: "the database is locked",  # SQLITE_LOCKED
    8: "the database is read-only",  # SQLITE_READONLY
    10: "the database file cannot be read or written",  # SQLITE_IOERR
    11: "the database file is damaged",  # SQLITE_CORRUPT
    14: "the database file cannot be opened",  # SQLITE_CANTOPEN
    26: "the database file is not a database",  # SQLITE_NOTADB
}
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}

FULL_MESSAGE = "storage is full: the change was not saved; free disk space and try again"


def storage_failure(exc: BaseException) -> StorageUnavailable | None:
    """The storage failure `exc` is, or None when it is something else (a bug, a constraint)."""
    if isinstance(exc, StorageUnavailable):
        return exc
    if isinstance(exc, sa_exc.IntegrityError):
        return None
    if isinstance(exc, sa_exc.DBAPIError):
        return _driver_failure(exc.orig, exc.connection_invalidated) or (
            StorageUnavailable("storage is unavailable: the database cannot be reached")
            if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError))
            else None
        )
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection came free in time
        return StorageUnavailable("storage is unavailable: no database connection is free")
    if isinstance(exc, OSError):
        return _os_failure(exc)
    return None


def _driver_failure(orig: BaseException | None, invalidated: bool) -> StorageUnavailable | None:
    if orig is None:
        return None
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        primary = code & 0xFF
        if primary == _SQLITE_FULL:
            return StorageUnavailable(FULL_MESSAGE, exhausted=True, cause=str(orig))
        if primary in _SQLITE_UNAVAILABLE:
            return StorageUnavailable(
                f"storage is unavailable: {_SQLITE_UNAVAILABLE[primary]}", cause=str(orig)
            )
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(state, str) and len(state) == 5:
        if state == "53100":  # disk_full
            return StorageUnavailable(FULL_MESSAGE, exhausted=True, cause=str(orig))
        if state.startswith("53"):  # insufficient resources: memory, connections
            return StorageUnavailable(
                "storage is out of resources: try again later", exhausted=True, cause=str(orig)
            )
        if state.startswith(("08", "57P", "25006")):  # connection lost, shutdown, read-only
            return StorageUnavailable(
                "storage is unavailable: the database is not accepting writes", cause=str(orig)
            )
    if isinstance(orig, OSError):
        return _os_failure(orig)
    if invalidated:
        return StorageUnavailable(
            "storage is unavailable: the connection to the database was lost", cause=str(orig)
        )
    return None


def _os_failure(exc: OSError) -> StorageUnavailable:
    if exc.errno in _NO_SPACE:
        return StorageUnavailable(FULL_MESSAGE, exhausted=True, cause=exc.strerror or str(exc))
    return StorageUnavailable(
        "storage is unavailable: the database file cannot be read or written",
        cause=exc.strerror or str(exc),
    )


class StorageHealth:
    """Says once that storage failed and once that it works again, however many requests fail
    in between (each of those is answered, and counted, but not logged). Where no success is
    seen (reads that fail), a failure that lasts is said again every `repeat_after` seconds."""

    def __init__(self, logger: logging.Logger = _log, *, repeat_after: float = 300.0) -> None:
        self._logger = logger
        self._repeat_after = repeat_after
        self._failing: StorageUnavailable | None = None
        self._logged_at = 0.0
        self.refused = 0

    @property
    def failing(self) -> bool:
        return self._failing is not None

    def failed(self, failure: StorageUnavailable, now: float) -> None:
        self.refused += 1
        same = self._failing is not None and self._failing.message == failure.message
        if same and now - self._logged_at < self._repeat_after:
            return
        cause = f" ({failure.cause})" if failure.cause else ""
        if same:
            self._logger.warning(
                "%s%s; %d requests refused so far", failure.message, cause, self.refused
            )
        else:
            self._logger.warning("%s%s", failure.message, cause)
        self._failing = failure
        self._logged_at = now

    def recovered(self) -> None:
        if self._failing is None:
            return
        self._logger.info("storage works again (%d requests were refused meanwhile)", self.refused)
        self._failing = None
        self.refused = 0
