"""PresenceService: get/set/clear and a watch stream that resumes from its cursor."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sip2uc.v1 import common_pb2, presence_pb2, presence_pb2_grpc, users_pb2, users_pb2_grpc
from sip2uc_control.app import ControlConfig, ControlPlane

from .in_memory import Clock


async def make_user(channel: grpc.aio.Channel, ext: str) -> str:
    stub = users_pb2_grpc.UserServiceStub(channel)
    user = users_pb2.User(sip_uri=f"sip:u{ext}@example.com", extension=ext)
    return (await stub.CreateUser(users_pb2.CreateUserRequest(user=user))).user.name


async def set_state(stub: presence_pb2_grpc.PresenceServiceStub, ext: str, state: int) -> None:
    await stub.SetPresence(presence_pb2.SetPresenceRequest(user=ext, availability=state))


async def test_new_user_is_offline_from_registration(channel: grpc.aio.Channel) -> None:
    await make_user(channel, "200")
    stub = presence_pb2_grpc.PresenceServiceStub(channel)
    p = (await stub.GetPresence(presence_pb2.GetPresenceRequest(user="200"))).presence
    assert (p.availability, p.source, p.registered) == (
        common_pb2.AVAILABILITY_OFFLINE,
        common_pb2.PRESENCE_SOURCE_REGISTRATION,
        False,
    )


async def test_set_with_ttl_reports_expiry_and_clear_restores(channel: grpc.aio.Channel) -> None:
    await make_user(channel, "200")
    stub = presence_pb2_grpc.PresenceServiceStub(channel)
    set_resp = await stub.SetPresence(
        presence_pb2.SetPresenceRequest(
            user="200",
            availability=common_pb2.AVAILABILITY_BE_RIGHT_BACK,
            ttl=duration_pb2.Duration(seconds=600),
        )
    )
    p = set_resp.presence
    assert (p.availability, p.source) == (
        common_pb2.AVAILABILITY_BE_RIGHT_BACK,
        common_pb2.PRESENCE_SOURCE_MANUAL,
    )
    assert p.expire_time.seconds > 0
    cleared = (await stub.ClearPresence(presence_pb2.ClearPresenceRequest(user="200"))).presence
    assert cleared.availability == common_pb2.AVAILABILITY_OFFLINE


async def test_in_a_call_cannot_be_set_by_hand(channel: grpc.aio.Channel) -> None:
    await make_user(channel, "200")
    stub = presence_pb2_grpc.PresenceServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await set_state(stub, "200", common_pb2.AVAILABILITY_IN_A_CALL)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await set_state(stub, "200", common_pb2.AVAILABILITY_UNSPECIFIED)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_watch_sends_snapshot_then_changes_with_cursors(channel: grpc.aio.Channel) -> None:
    await make_user(channel, "200")
    stub = presence_pb2_grpc.PresenceServiceStub(channel)
    call = stub.WatchPresence(presence_pb2.WatchPresenceRequest())
    snapshot = await call.read()
    assert snapshot.WhichOneof("event") == "snapshot"
    assert [p.extension for p in snapshot.snapshot.presences] == ["200"]
    await set_state(stub, "200", common_pb2.AVAILABILITY_AWAY)
    change = await call.read()
    assert change.change.current.availability == common_pb2.AVAILABILITY_AWAY
    assert change.change.previous.availability == common_pb2.AVAILABILITY_OFFLINE
    assert int(change.cursor) > int(snapshot.cursor)
    call.cancel()


async def test_watcher_that_drops_resumes_without_missing_a_change(
    channel: grpc.aio.Channel,
) -> None:
    await make_user(channel, "200")
    await make_user(channel, "201")
    stub = presence_pb2_grpc.PresenceServiceStub(channel)
    first = stub.WatchPresence(presence_pb2.WatchPresenceRequest())
    await first.read()  # snapshot
    await set_state(stub, "200", common_pb2.AVAILABILITY_AWAY)
    seen = await first.read()
    first.cancel()  # the watcher drops...

    # ...and while it is away, three changes happen.
    await set_state(stub, "201", common_pb2.AVAILABILITY_BUSY)
    await set_state(stub, "200", common_pb2.AVAILABILITY_DO_NOT_DISTURB)
    await stub.ClearPresence(presence_pb2.ClearPresenceRequest(user="201"))

    resumed = stub.WatchPresence(presence_pb2.WatchPresenceRequest(cursor=seen.cursor))
    missed = [await resumed.read() for _ in range(3)]
    assert [m.WhichOneof("event") for m in missed] == ["change"] * 3
    assert [(m.change.current.extension, m.change.current.availability) for m in missed] == [
        ("201", common_pb2.AVAILABILITY_BUSY),
        ("200", common_pb2.AVAILABILITY_DO_NOT_DISTURB),
        ("201", common_pb2.AVAILABILITY_OFFLINE),
    ]
    cursors = [int(m.cursor) for m in missed]
    assert cursors == sorted(cursors) and cursors[0] > int(seen.cursor)
    # and it carries on live.
    await set_state(stub, "201", common_pb2.AVAILABILITY_AWAY)
    live = await resumed.read()
    assert live.change.current.availability == common_pb2.AVAILABILITY_AWAY
    resumed.cancel()


async def test_watch_filtered_to_one_user_skips_others(channel: grpc.aio.Channel) -> None:
    await make_user(channel, "200")
    await make_user(channel, "201")
    stub = presence_pb2_grpc.PresenceServiceStub(channel)
    call = stub.WatchPresence(presence_pb2.WatchPresenceRequest(users=["201"]))
    snap = await call.read()
    assert [p.extension for p in snap.snapshot.presences] == ["201"]
    await set_state(stub, "200", common_pb2.AVAILABILITY_AWAY)
    await set_state(stub, "201", common_pb2.AVAILABILITY_BUSY)
    change = await call.read()
    assert change.change.current.extension == "201"
    call.cancel()


async def test_cursor_from_the_future_gets_a_fresh_snapshot(channel: grpc.aio.Channel) -> None:
    await make_user(channel, "200")
    stub = presence_pb2_grpc.PresenceServiceStub(channel)
    call = stub.WatchPresence(presence_pb2.WatchPresenceRequest(cursor="999999"))
    first = await call.read()
    assert first.WhichOneof("event") == "snapshot"
    assert first.snapshot.cursor_expired is True
    call.cancel()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        bad = stub.WatchPresence(presence_pb2.WatchPresenceRequest(cursor="abc"))
        await bad.read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_presence_and_cursor_survive_a_restart(tmp_path: object) -> None:
    from pathlib import Path

    data = Path(str(tmp_path))
    plane = ControlPlane(
        ControlConfig(data_dir=data, grpc_listen="127.0.0.1:0", metrics_listen=None)
    )
    await plane.start()
    async with grpc.aio.insecure_channel(plane.address) as ch:
        await make_user(ch, "200")
        stub = presence_pb2_grpc.PresenceServiceStub(ch)
        await set_state(stub, "200", common_pb2.AVAILABILITY_AWAY)
        watch = stub.WatchPresence(presence_pb2.WatchPresenceRequest())
        cursor = (await watch.read()).cursor
        watch.cancel()
    await plane.stop(0.1)

    plane = ControlPlane(
        ControlConfig(data_dir=data, grpc_listen="127.0.0.1:0", metrics_listen=None)
    )
    await plane.start()
    async with grpc.aio.insecure_channel(plane.address) as ch:
        stub = presence_pb2_grpc.PresenceServiceStub(ch)
        p = (await stub.GetPresence(presence_pb2.GetPresenceRequest(user="200"))).presence
        assert p.availability == common_pb2.AVAILABILITY_AWAY
        await set_state(stub, "200", common_pb2.AVAILABILITY_BUSY)
        resumed = stub.WatchPresence(presence_pb2.WatchPresenceRequest(cursor=cursor))
        change = await resumed.read()
        assert change.change.current.availability == common_pb2.AVAILABILITY_BUSY
        resumed.cancel()
    await plane.stop(0.1)


async def test_burst_of_concurrent_changes_reaches_live_and_resuming_watchers_in_order(
    channel: grpc.aio.Channel,
) -> None:
    exts = [str(300 + i) for i in range(12)]
    for ext in exts:
        await make_user(channel, ext)
    stub = presence_pb2_grpc.PresenceServiceStub(channel)
    live = stub.WatchPresence(presence_pb2.WatchPresenceRequest())
    start = await live.read()

    # Twelve users change at once (they share group commits), twice each.
    states = (common_pb2.AVAILABILITY_AWAY, common_pb2.AVAILABILITY_BUSY)
    for state in states:
        await asyncio.gather(*(set_state(stub, ext, state) for ext in exts))

    seen = [await live.read() for _ in range(2 * len(exts))]
    cursors = [int(m.cursor) for m in seen]
    assert cursors == list(range(int(start.cursor) + 1, int(start.cursor) + 25))
    for ext in exts:
        mine = [m.change.current.availability for m in seen if m.change.current.extension == ext]
        assert mine == list(states)
    live.cancel()

    # A watcher resuming from the middle of the burst gets exactly the rest, in the same order.
    middle = seen[9]
    resumed = stub.WatchPresence(presence_pb2.WatchPresenceRequest(cursor=middle.cursor))
    rest = [await resumed.read() for _ in range(len(seen) - 10)]
    assert [(m.cursor, m.change.current.extension) for m in rest] == [
        (m.cursor, m.change.current.extension) for m in seen[10:]
    ]
    resumed.cancel()


async def test_watching_more_than_1000_users_is_invalid_naming_users(
    channel: grpc.aio.Channel,
) -> None:
    stub = presence_pb2_grpc.PresenceServiceStub(channel)
    refs = [f"users/u{i}" for i in range(1001)]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.WatchPresence(presence_pb2.WatchPresenceRequest(users=refs)).read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(info.value)  # type: ignore[arg-type]
    assert status is not None
    fields = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    assert fields == ["users"]


async def test_a_request_over_16_mib_is_refused_resource_exhausted(
    channel: grpc.aio.Channel,
) -> None:
    stub = presence_pb2_grpc.PresenceServiceStub(channel)
    big = presence_pb2.BatchGetPresenceRequest(users=["x" * (16 * 1024 * 1024 + 1)])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.BatchGetPresence(big)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_change_says_when_the_state_it_leaves_began(
    channel: grpc.aio.Channel, clock: Clock
) -> None:
    await make_user(channel, "200")
    created = clock.now
    clock.advance(60)
    stub = presence_pb2_grpc.PresenceServiceStub(channel)
    call = stub.WatchPresence(presence_pb2.WatchPresenceRequest())
    snapshot = (await call.read()).snapshot.presences[0]
    await set_state(stub, "200", common_pb2.AVAILABILITY_AWAY)
    clock.advance(30)
    await set_state(stub, "200", common_pb2.AVAILABILITY_BUSY)

    first, second = (await call.read()).change, (await call.read()).change

    assert snapshot.since.seconds == first.previous.since.seconds == created  # offline since
    assert first.change_time.seconds == first.current.since.seconds == created + 60
    assert second.previous.since.seconds == created + 60
    assert second.change_time.seconds == created + 90
    call.cancel()


async def test_clearing_presence_drops_a_call_that_no_longer_exists(
    channel: grpc.aio.Channel, control: ControlPlane
) -> None:
    name = await make_user(channel, "200")
    core = control.core
    assert core is not None
    engine = core.presence.engine
    uid = name.removeprefix("users/")
    # What a record says after the control plane died during a call.
    core.presence.apply(uid, lambda r, now: engine.on_call_started(r, "gone", False, now))
    stub = presence_pb2_grpc.PresenceServiceStub(channel)
    stuck = (await stub.GetPresence(presence_pb2.GetPresenceRequest(user="200"))).presence

    cleared = (await stub.ClearPresence(presence_pb2.ClearPresenceRequest(user="200"))).presence

    assert (stuck.availability, stuck.activity) == (
        common_pb2.AVAILABILITY_IN_A_CALL,
        common_pb2.ACTIVITY_IN_A_CALL,
    )
    assert (cleared.availability, cleared.activity) == (
        common_pb2.AVAILABILITY_OFFLINE,
        common_pb2.ACTIVITY_NONE,
    )
