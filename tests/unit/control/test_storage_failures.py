"""Storage that refuses: a full database answers RESOURCE_EXHAUSTED in plain words, logs once,
and says when it works again.

SQLite is made "full" for real with its `max_page_count` pragma (no root, no tmpfs needed;
`tests/e2e/test_operations.py` fills a real file system); driver errors of PostgreSQL are
classified from their SQLSTATE.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from sip2uc.v1 import users_pb2, users_pb2_grpc
from sip2uc_control.app import ControlPlane
from sip2uc_control.errors import StorageUnavailable
from sip2uc_control.store.failures import StorageHealth, storage_failure
from sqlalchemy import event
from sqlalchemy import exc as sa_exc


def new_user(ext: str) -> users_pb2.CreateUserRequest:
    return users_pb2.CreateUserRequest(
        user=users_pb2.User(
            extension=ext,
            display_name=f"User {ext}",
            devices=[
                users_pb2.Device(
                    registering=users_pb2.RegisteringDevice(password=f"secret-pw-{ext}")
                )
            ],
        )
    )


class PageCap:
    """Caps every new SQLite connection of the control plane at `pages` pages."""

    def __init__(self, control: ControlPlane) -> None:
        assert control.core is not None
        self.engine = control.core.db.engine
        self.pages: int | None = None
        event.listen(self.engine.sync_engine, "connect", self._on_connect)

    def _on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        if self.pages is not None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA max_page_count = {self.pages}")
            cursor.close()

    async def cap(self, pages: int | None) -> None:
        self.pages = pages
        await self.engine.dispose()  # pooled connections reopen with the new cap

    async def page_count(self) -> int:
        async with self.engine.connect() as conn:
            result = await conn.exec_driver_sql("PRAGMA page_count")
            return int(result.scalar_one())


@pytest.fixture
def store_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO)
    yield caplog


async def test_a_full_database_answers_resource_exhausted_and_logs_once(
    control: ControlPlane, channel: grpc.aio.Channel, store_log: pytest.LogCaptureFixture
) -> None:
    users = users_pb2_grpc.UserServiceStub(channel)
    cap = PageCap(control)
    await cap.cap(await cap.page_count())
    # The pages there are still have room for a few users; then the database is full.
    for ext in range(1000, 1200):
        try:
            await users.CreateUser(new_user(str(ext)))
        except grpc.aio.AioRpcError as exc:
            first = (exc.code(), exc.details())
            break
    else:
        pytest.fail("the capped database never filled up")

    refused = [first]
    for ext in ("201", "202"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await users.CreateUser(new_user(ext))
        refused.append((info.value.code(), info.value.details()))
    await cap.cap(None)
    created = await users.CreateUser(new_user("204"))

    assert (
        refused
        == [
            (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "storage is full: the change was not saved; free disk space and try again",
            )
        ]
        * 3
    )
    assert created.user.extension == "204"
    said = [(r.levelno, r.getMessage()) for r in store_log.records if r.name.startswith("sip2uc")]
    storage = [m for m in said if "storage" in m[1]]
    assert storage == [
        (
            logging.WARNING,
            "storage is full: the change was not saved; free disk space and try again "
            "(database or disk is full)",
        ),
        (logging.INFO, "storage works again (3 requests were refused meanwhile)"),
    ]
    text = store_log.text
    assert "Traceback" not in text and "[SQL:" not in text and "INSERT" not in text


def operational(orig: BaseException, invalidated: bool = False) -> sa_exc.OperationalError:
    return sa_exc.OperationalError(
        "INSERT ...", {"ha1": "secret"}, orig, connection_invalidated=invalidated
    )


class PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"pg {sqlstate}")
        self.sqlstate = sqlstate


def sqlite_error(code: int) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("sqlite says no")
    error.sqlite_errorcode = code  # type: ignore[attr-defined]
    return error


@pytest.mark.parametrize(
    ("error", "exhausted", "message"),
    [
        (operational(sqlite_error(13)), True, "storage is full"),
        (operational(sqlite_error(8)), False, "storage is unavailable: the database is read-only"),
        (operational(sqlite_error(14)), False, "cannot be opened"),
        (operational(PgError("53100")), True, "storage is full"),
        (operational(PgError("53300")), True, "out of resources"),
        (operational(PgError("08006")), False, "not accepting writes"),
        (operational(PgError("57P01")), False, "not accepting writes"),
        (operational(OSError(errno.ENOSPC, "No space left on device")), True, "storage is full"),
        (operational(Exception("gone"), invalidated=True), False, "connection to the database"),
        (sa_exc.TimeoutError("pool"), False, "no database connection is free"),
    ],
)
def test_driver_errors_are_told_apart_and_said_without_sql(
    error: Exception, exhausted: bool, message: str
) -> None:
    failure = storage_failure(error)

    assert failure is not None
    assert failure.exhausted is exhausted
    assert message in failure.message
    assert "secret" not in failure.message + failure.cause
    assert "INSERT" not in failure.message + failure.cause


def test_a_constraint_or_a_bug_is_no_storage_failure() -> None:
    assert storage_failure(sa_exc.IntegrityError("INSERT", {}, Exception("unique"))) is None
    assert storage_failure(sa_exc.ProgrammingError("SELEC", {}, Exception("syntax"))) is None
    assert storage_failure(ValueError("bug")) is None


def test_a_lasting_failure_is_said_again_only_after_a_while(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "t.storage")
    health = StorageHealth(logging.getLogger("t.storage"), repeat_after=300.0)
    full = StorageUnavailable("storage is full", exhausted=True, cause="disk")

    for now in (0.0, 10.0, 299.0, 300.0, 301.0):
        health.failed(full, now)
    health.recovered()
    health.recovered()

    assert [r.getMessage() for r in caplog.records] == [
        "storage is full (disk)",
        "storage is full (disk); 4 requests refused so far",
        "storage works again (5 requests were refused meanwhile)",
    ]
