"""The async database handle and group commit.

Writes that happen at handset rate (bindings, presence) go through `Database.submit`: callers
queue a write and await its commit; one task runs whatever has queued in a single transaction.
Under load many registrations share one commit, at no load a write commits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import TextClause, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..errors import StorageUnavailable
from .failures import StorageHealth, storage_failure
from .migrations import migrate

log = logging.getLogger(__name__)

Write = Callable[[AsyncConnection], Awaitable[Any]]
# A statement with the parameter rows to run it with; consecutive rows of one statement from
# different callers run as one executemany, which is what makes a busy registrar cheap.
Rows = tuple[TextClause, list[dict[str, Any]]]
Item = Write | list[Rows]


def default_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{(data_dir / 'sip2uc.db').resolve()}"


class Database:
    """An SQLAlchemy async engine plus a group-commit writer."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future[Any]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.commits = 0
        self.writes = 0
        self.health = StorageHealth()

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="db-group-commit")

    async def close(self) -> None:
        if self._writer is not None:
            await self._queue.join()
            self._writer.cancel()
            try:
                await self._writer
            except asyncio.CancelledError:
                pass
        await self.engine.dispose()

    async def submit(self, write: Write) -> Any:
        """Queue `write` for the next group commit and wait until it is durable."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put((write, future))
        return await future

    async def submit_rows(self, statements: list[Rows]) -> None:
        """Queue plain statements (no results needed) for the next group commit."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put((statements, future))
        await future

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < 500:
                batch.append(self._queue.get_nowait())
            try:
                results = await self._commit(batch)
            except Exception as exc:
                failure = storage_failure(exc)
                if failure is not None:
                    # The storage itself refuses (full, unreachable): every write of the batch
                    # gets the same plain answer, and the log says so once per outage.
                    self.health.failed(failure, time.monotonic())
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(_copy(failure))
                else:
                    await self._one_by_one(batch, exc)
            else:
                self.health.recovered()
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
            for _ in batch:
                self._queue.task_done()

    async def _one_by_one(
        self, batch: list[tuple[Item, asyncio.Future[Any]]], exc: Exception
    ) -> None:
        """One bad write (a constraint a caller expects to meet) must not lose the others."""
        log.debug("group commit of %d writes failed, retrying one by one: %r", len(batch), exc)
        for write, future in batch:
            try:
                result = (await self._commit([(write, future)]))[0]
            except Exception as single_exc:
                failure = storage_failure(single_exc)
                if failure is not None:
                    self.health.failed(failure, time.monotonic())
                if not future.done():
                    future.set_exception(_copy(failure) if failure is not None else single_exc)
            else:
                self.health.recovered()
                if not future.done():
                    future.set_result(result)

    async def _commit(self, batch: list[tuple[Item, asyncio.Future[Any]]]) -> list[Any]:
        results: list[Any] = []
        async with self.engine.begin() as conn:
            run_clause: TextClause | None = None
            run_rows: list[dict[str, Any]] = []
            for item, _ in batch:
                if callable(item):
                    if run_clause is not None:
                        await conn.execute(run_clause, run_rows)
                        run_clause, run_rows = None, []
                    results.append(await item(conn))
                    continue
                for clause, rows in item:
                    if clause is not run_clause:
                        if run_clause is not None:
                            await conn.execute(run_clause, run_rows)
                        run_clause, run_rows = clause, []
                    run_rows.extend(rows)
                results.append(None)
            if run_clause is not None:
                await conn.execute(run_clause, run_rows)
        self.commits += 1
        self.writes += len(batch)
        return results


def _copy(failure: StorageUnavailable) -> StorageUnavailable:
    """One exception object per waiting caller (a raised exception collects its traceback)."""
    return StorageUnavailable(failure.message, exhausted=failure.exhausted, cause=failure.cause)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed during a write; NORMAL sync is durable across process crashes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


async def open_database(url: str | None, data_dir: Path) -> Database:
    """Create the engine, apply migrations and start the group-commit writer."""
    if url is None:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        url = default_url(data_dir)
        db_file = data_dir / "sip2uc.db"
        if not db_file.exists():
            db_file.touch(mode=0o600)
        os.chmod(db_file, 0o600)
    engine = create_async_engine(url, pool_pre_ping=url.startswith("postgresql"))
    if engine.dialect.name == "sqlite":
        sync_engine: Engine = engine.sync_engine
        event.listen(sync_engine, "connect", _sqlite_pragmas)
    async with engine.begin() as conn:
        applied = await migrate(conn, engine.dialect.name)
        if applied:
            log.info("database schema migrated to version %d", applied[-1])
        await conn.execute(text("SELECT 1"))
    db = Database(engine)
    db.start()
    return db
