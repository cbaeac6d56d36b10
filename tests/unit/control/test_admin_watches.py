"""AdminService.WatchSidecars and the recent-warnings buffer (ListLogEntries, WatchLogEntries)."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sip2uc.v1 import admin_pb2, admin_pb2_grpc, sidecar_pb2, sidecar_pb2_grpc
from sip2uc_control.app import ControlPlane
from sip2uc_control.recent_log import (
    MAX_MESSAGE_CHARS,
    RecentLog,
    entry_message,
)

CONNECTED = admin_pb2.SIDECAR_STATE_CONNECTED
LOST = admin_pb2.SIDECAR_STATE_LOST


class Session:
    """A raw Connect stream that the test drives message by message."""

    def __init__(self, channel: grpc.aio.Channel, name: str, capacity: int = 0) -> None:
        self.outgoing: asyncio.Queue[sidecar_pb2.ConnectRequest | None] = asyncio.Queue()
        self.outgoing.put_nowait(
            sidecar_pb2.ConnectRequest(
                hello=sidecar_pb2.SidecarHello(name=name, instance_id="i1", capacity=capacity)
            )
        )

        async def requests() -> AsyncIterator[sidecar_pb2.ConnectRequest]:
            while (item := await self.outgoing.get()) is not None:
                yield item

        self.call: Any = sidecar_pb2_grpc.SidecarServiceStub(channel).Connect(requests())

    def heartbeat(self, active_legs: int, relay_ports_in_use: int) -> None:
        beat = sidecar_pb2.SidecarHeartbeat(
            active_legs=active_legs, relay_ports_in_use=relay_ports_in_use
        )
        self.outgoing.put_nowait(sidecar_pb2.ConnectRequest(heartbeat=beat))


async def next_message(stream: Any) -> Any:
    return await asyncio.wait_for(stream.read(), 5)


async def test_watch_sidecars_sends_connect_heartbeat_and_loss(channel: grpc.aio.Channel) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    watch = admin.WatchSidecars(admin_pb2.WatchSidecarsRequest())
    assert (await next_message(watch)).snapshot_complete

    session = Session(channel, "vlan10", capacity=500)
    joined = (await next_message(watch)).sidecar
    assert (joined.name, joined.state, joined.capacity) == ("sidecars/vlan10", CONNECTED, 500)
    # The default channel limit (1,600) is above the capacity the sidecar offered.
    assert joined.channel_limit == 500

    session.heartbeat(active_legs=7, relay_ports_in_use=14)
    beat = (await next_message(watch)).sidecar
    assert (beat.active_legs, beat.relay_ports_in_use, beat.state) == (7, 14, CONNECTED)

    session.call.cancel()
    lost = (await next_message(watch)).sidecar
    assert (lost.name, lost.state) == ("sidecars/vlan10", LOST)
    watch.cancel()


async def test_watch_sidecars_snapshot_lists_known_sidecars_first(
    channel: grpc.aio.Channel,
) -> None:
    session = Session(channel, "vlan20")
    assert (await next_message(session.call)).WhichOneof("payload") == "welcome"
    watch = admin_pb2_grpc.AdminServiceStub(channel).WatchSidecars(admin_pb2.WatchSidecarsRequest())
    first = await next_message(watch)
    assert (first.sidecar.name, first.snapshot_complete) == ("sidecars/vlan20", False)
    assert (await next_message(watch)).snapshot_complete
    session.call.cancel()
    watch.cancel()


async def test_a_settings_change_sends_the_new_channel_limit(channel: grpc.aio.Channel) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    session = Session(channel, "vlan30")
    assert (await next_message(session.call)).WhichOneof("payload") == "welcome"
    watch = admin.WatchSidecars(admin_pb2.WatchSidecarsRequest())
    assert (await next_message(watch)).sidecar.channel_limit == 1600
    assert (await next_message(watch)).snapshot_complete

    await admin.UpdateSettings(
        admin_pb2.UpdateSettingsRequest(
            settings=admin_pb2.Settings(
                sidecars=[admin_pb2.SidecarPolicy(name="vlan30", channel_limit=40)]
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["sidecars"]),
        )
    )
    assert (await next_message(watch)).sidecar.channel_limit == 40
    listed = await admin.ListSidecars(admin_pb2.ListSidecarsRequest())
    assert [s.channel_limit for s in listed.sidecars] == [40]
    session.call.cancel()
    watch.cancel()


# --- recent log entries --------------------------------------------------------------------------


async def test_warnings_are_listed_and_info_is_not(
    control: ControlPlane, channel: grpc.aio.Channel
) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    logger = logging.getLogger("sip2uc_control.tests.recent")
    logger.info("routine message")
    logger.warning("sidecar %s lost", "vlan10")
    logger.error("database write failed")

    listed = await admin.ListLogEntries(admin_pb2.ListLogEntriesRequest())
    mine = [e for e in listed.entries if e.logger == "sip2uc_control.tests.recent"]
    assert [(e.severity, e.message) for e in mine] == [
        (admin_pb2.LOG_SEVERITY_WARNING, "sidecar vlan10 lost"),
        (admin_pb2.LOG_SEVERITY_ERROR, "database write failed"),
    ]
    assert mine[0].sequence + 1 == mine[1].sequence
    errors = await admin.ListLogEntries(
        admin_pb2.ListLogEntriesRequest(min_severity=admin_pb2.LOG_SEVERITY_ERROR)
    )
    assert "sidecar vlan10 lost" not in [e.message for e in errors.entries]
    assert "database write failed" in [e.message for e in errors.entries]


async def test_watch_log_entries_sends_buffered_then_new_entries_from_any_thread(
    channel: grpc.aio.Channel,
) -> None:
    logger = logging.getLogger("sip2uc_control.tests.watch")
    logger.warning("before the watch")
    watch = admin_pb2_grpc.AdminServiceStub(channel).WatchLogEntries(
        admin_pb2.WatchLogEntriesRequest()
    )
    seen: list[str] = []
    while not (message := await next_message(watch)).snapshot_complete:
        seen.append(message.entry.message)
    assert "before the watch" in seen

    worker = threading.Thread(target=logger.warning, args=("from a worker thread",))
    worker.start()
    worker.join()
    assert (await next_message(watch)).entry.message == "from a worker thread"
    watch.cancel()


async def test_log_watchers_end_when_the_control_plane_stops(control: ControlPlane) -> None:
    queue = control.recent_log.watch()
    await control.stop(0.1)
    assert await asyncio.wait_for(queue.get(), 1) is None
    assert control._log_handler is None  # no handler left on the root logger


def test_the_ring_keeps_only_the_newest_entries() -> None:
    ring = RecentLog(capacity=3)
    for n in range(5):
        ring.add(float(n), logging.WARNING, "x", f"m{n}", "")
    assert [(e.sequence, e.message) for e in ring.entries()] == [(3, "m2"), (4, "m3"), (5, "m4")]


def test_an_exception_adds_its_type_and_text_not_the_traceback() -> None:
    try:
        raise ValueError("bad row 7")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "import %s failed", ("users.csv",), sys.exc_info()
        )
    assert entry_message(record) == "import users.csv failed (ValueError: bad row 7)"


def test_a_long_message_is_cut() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "a" * 5000, None, None)
    message = entry_message(record)
    assert len(message) == MAX_MESSAGE_CHARS
    assert message.endswith("a…")


@pytest.mark.parametrize(
    ("severity", "wanted"),
    [
        (admin_pb2.LOG_SEVERITY_WARNING, ["w", "e", "c"]),
        (admin_pb2.LOG_SEVERITY_ERROR, ["e", "c"]),
        (admin_pb2.LOG_SEVERITY_CRITICAL, ["c"]),
    ],
)
async def test_min_severity_filters_the_list(
    control: ControlPlane, channel: grpc.aio.Channel, severity: int, wanted: list[str]
) -> None:
    for level, text in ((logging.WARNING, "w"), (logging.ERROR, "e"), (logging.CRITICAL, "c")):
        control.recent_log.add(0.0, level, "sip2uc_control.tests.filter", text, "")
    listed = await admin_pb2_grpc.AdminServiceStub(channel).ListLogEntries(
        admin_pb2.ListLogEntriesRequest(min_severity=severity)  # type: ignore[arg-type]
    )
    assert [e.message for e in listed.entries if e.logger.endswith(".filter")] == wanted
