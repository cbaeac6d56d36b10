"""WatchCalls and WatchRegistrations: a watcher that stops reading is cut off, not buffered."""

from __future__ import annotations

import grpc
from sip2uc.v1 import sidecar_pb2, sidecar_pb2_grpc
from sip2uc_control.app import ControlPlane
from sip2uc_control.watchers import WatchQueue

from .sidecar_session import SidecarSession, register_once
from .test_calls_api import PW, add_user
from .test_registrar_rpc import creds, make_alice, register


async def test_a_watcher_within_its_limit_gets_every_change_in_order() -> None:
    q: WatchQueue[int] = WatchQueue(limit=2)
    assert (q.offer(1), q.offer(2)) == (True, True)
    assert [await q.get(), await q.get()] == [1, 2]
    assert q.overflowed is False


async def test_a_watcher_past_its_limit_is_cut_off_and_holds_nothing() -> None:
    q: WatchQueue[int] = WatchQueue(limit=2)
    q.offer(1)
    q.offer(2)
    assert q.offer(3) is False
    assert (q.overflowed, await q.get()) == (True, None)
    assert q.offer(4) is False


async def test_ending_a_watcher_delivers_what_is_queued_first() -> None:
    q: WatchQueue[int] = WatchQueue(limit=2)
    q.offer(1)
    q.end()
    assert [await q.get(), await q.get()] == [1, None]


async def test_a_registrations_watcher_that_stops_reading_is_dropped(
    control: ControlPlane, channel: grpc.aio.Channel
) -> None:
    assert control.core is not None
    await make_alice(channel)
    watcher = control.core.watch_bindings(limit=1)
    stub = sidecar_pb2_grpc.SidecarServiceStub(channel)
    await register_once(stub, register(creds("s3cret-pw"), ("sip:456@10.0.0.7:5060", 600)))
    await register_once(stub, register(creds("s3cret-pw", nc=2), ("sip:456@10.0.0.8:5060", 600)))
    assert (watcher.overflowed, await watcher.get()) == (True, None)
    assert watcher not in control.core._binding_watchers


async def test_a_calls_watcher_that_stops_reading_is_dropped(
    control: ControlPlane, channel: grpc.aio.Channel
) -> None:
    assert control.core is not None
    await add_user(channel, "201")
    await add_user(channel, "202")
    slow = control.core.calls.watch(limit=1)
    async with SidecarSession(channel, "s1") as s1:
        await s1.register("201", PW, 41001)
        await s1.register("202", PW, 42001)
        resp = await s1.invite("201", PW, "202", leg_id="A")
        fork = await s1.next("create_leg")
        await s1.report(resp.call_id, fork.leg_id, sidecar_pb2.LEG_STATE_RINGING, status=180)
    assert (slow.overflowed, await slow.get()) == (True, None)
    assert slow not in control.core.calls.registry.watchers
