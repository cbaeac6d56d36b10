"""PresenceHub over the database: changes apply in memory at once, are written in batches, and
are never dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from sip2uc_control.presence import Availability, PresenceEngine, PresenceRecord, Transition
from sip2uc_control.presence_hub import LoggedChange, PresenceHub, StoredPresence
from sip2uc_control.store.db import Database, open_database
from sip2uc_control.store.presence import PresenceStore
from sqlalchemy import text


class FlakyStore:
    """Records each batch and fails the first `failures`, then hands them to the real store."""

    def __init__(self, db: Database, failures: int) -> None:
        self.store = PresenceStore(db)
        self.failures = failures
        self.batches: list[tuple[list[str], list[tuple[int, str]]]] = []

    async def load(self, recent: int) -> StoredPresence:
        return await self.store.load(recent)

    async def write(
        self, records: Mapping[str, PresenceRecord], events: Sequence[tuple[LoggedChange, float]]
    ) -> None:
        self.batches.append((list(records), [(e.seq, e.change.user) for e, _at in events]))
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        await self.store.write(records, events)

    async def changes_after(self, cursor: int) -> list[LoggedChange] | None:
        return await self.store.changes_after(cursor)

    async def trim(self, up_to: int) -> None:
        await self.store.trim(up_to)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_database(None, tmp_path)
    async with database.engine.begin() as conn:
        for uid in ("u1", "u2"):
            await conn.execute(
                text(
                    "INSERT INTO users (id, sip_uri, create_time, update_time) "
                    "VALUES (:i, :s, 0, 0)"
                ),
                {"i": uid, "s": f"sip:{uid}@example.com"},
            )
    yield database
    await database.close()


def manual(availability: Availability) -> Any:
    engine = PresenceEngine()

    def step(record: PresenceRecord, now: float) -> Transition:
        return engine.set_manual(record, availability, now, expires_at=None, note=None)

    return step


async def stored_events(db: Database) -> list[tuple[int, str]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(text("SELECT seq, user_id FROM presence_events ORDER BY seq"))
        return [(r.seq, r.user_id) for r in rows.all()]


async def test_apply_changes_the_record_before_anything_is_written(db: Database) -> None:
    hub = PresenceHub(PresenceStore(db), PresenceEngine(), lambda: 100.0)
    change = hub.apply("u1", manual(Availability.BUSY))
    assert change is not None
    assert hub.effective("u1").availability is Availability.BUSY
    assert (hub.last_seq, await stored_events(db)) == (0, [])
    await hub.drain()
    assert (hub.last_seq, await stored_events(db)) == (1, [(1, "u1")])


async def test_changes_queued_together_are_one_batch_with_consecutive_sequence_numbers(
    db: Database,
) -> None:
    flaky = FlakyStore(db, failures=0)
    hub = PresenceHub(flaky, PresenceEngine(), lambda: 100.0)
    hub.apply("u1", manual(Availability.BUSY))
    hub.apply("u2", manual(Availability.AWAY))
    hub.apply("u1", manual(Availability.DO_NOT_DISTURB))
    await hub.drain()
    assert flaky.batches == [
        (["u1", "u2"], [(1, "u1"), (2, "u2"), (3, "u1")])  # the latest record per user
    ]
    assert await stored_events(db) == [(1, "u1"), (2, "u2"), (3, "u1")]


async def test_a_failed_write_is_retried_and_published_only_once_committed(db: Database) -> None:
    flaky = FlakyStore(db, failures=2)
    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    hub = PresenceHub(flaky, PresenceEngine(), lambda: 100.0, sleep=pause)
    published: list[int] = []
    watcher = hub.watch(None, 0, lambda: [])

    async def watch() -> None:
        async for item in watcher:
            published.append(item.cursor)
            return

    reader = asyncio.create_task(watch())
    change = await hub.update("u1", manual(Availability.BUSY))
    await reader
    assert change is not None
    assert len(flaky.batches) == 3
    assert pauses == [0.1, 0.2]  # backing off between attempts
    assert published == [1]
    assert await stored_events(db) == [(1, "u1")]


async def test_a_change_for_a_deleted_user_does_not_block_the_others(db: Database) -> None:
    hub = PresenceHub(PresenceStore(db), PresenceEngine(), lambda: 100.0)
    hub.apply("gone", manual(Availability.BUSY))
    hub.apply("u1", manual(Availability.AWAY))
    await hub.drain()
    async with db.engine.connect() as conn:
        rows = await conn.execute(text("SELECT user_id FROM presence ORDER BY user_id"))
        assert [r.user_id for r in rows.all()] == ["u1"]


async def test_the_first_change_says_since_when_the_user_was_in_the_state_it_leaves(
    db: Database,
) -> None:
    now = [100.0]
    hub = PresenceHub(PresenceStore(db), PresenceEngine(), lambda: now[0])
    hub.begin("u1")  # the user is created: offline from now on
    now[0] = 160.0
    assert hub.effective("u1").since == 100.0

    change = hub.apply("u1", manual(Availability.BUSY))

    assert change is not None
    assert (change.previous.since, change.current.since, change.at) == (100.0, 160.0, 160.0)


async def test_a_begun_record_is_written_and_read_back_after_a_restart(db: Database) -> None:
    hub = PresenceHub(PresenceStore(db), PresenceEngine(), lambda: 100.0)
    hub.begin("u1")
    hub.begin("u1")  # again: the record keeps its first time
    await hub.drain()

    restarted = PresenceHub(PresenceStore(db), PresenceEngine(), lambda: 500.0)
    await restarted.load()

    assert restarted.effective("u1").since == 100.0


async def test_a_user_without_a_record_begins_when_the_user_was_created(db: Database) -> None:
    hub = PresenceHub(PresenceStore(db), PresenceEngine(), lambda: 900.0)
    hub.begin("u1", since=50.0)

    change = hub.apply("u1", manual(Availability.AWAY))

    assert change is not None
    assert (change.previous.since, change.at) == (50.0, 900.0)
