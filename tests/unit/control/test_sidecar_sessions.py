"""One Connect session per sidecar name, and nothing left behind when a session ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from sip2uc.v1 import sidecar_pb2, sidecar_pb2_grpc
from sip2uc_control.app import ControlPlane
from sip2uc_control.calls import EndLeg

END_LEG = EndLeg(call_id="c1", leg_id="L1")


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the server's tasks run until `condition` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def queue_getters() -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if not t.done() and getattr(t.get_coro(), "__qualname__", "") == "Queue.get"
    ]


class Session:
    """A raw Connect stream: a hello, then whatever the test does with it."""

    def __init__(self, channel: grpc.aio.Channel, name: str, instance_id: str) -> None:
        self.stub = sidecar_pb2_grpc.SidecarServiceStub(channel)
        self.outgoing: asyncio.Queue[sidecar_pb2.ConnectRequest | None] = asyncio.Queue()
        self.outgoing.put_nowait(
            sidecar_pb2.ConnectRequest(
                hello=sidecar_pb2.SidecarHello(name=name, instance_id=instance_id)
            )
        )

        async def requests() -> AsyncIterator[sidecar_pb2.ConnectRequest]:
            while (item := await self.outgoing.get()) is not None:
                yield item

        self.call: Any = self.stub.Connect(requests())

    async def read(self) -> Any:
        return await asyncio.wait_for(self.call.read(), 5)


async def test_a_cancelled_session_leaves_no_pending_queue_read(
    control: ControlPlane, channel: grpc.aio.Channel
) -> None:
    assert control.core is not None
    sidecars = control.core.sidecars.sidecars
    session = Session(channel, "s1", "i1")
    assert (await session.read()).WhichOneof("payload") == "welcome"
    await until(lambda: bool(queue_getters()), "the session to wait for commands")
    session.call.cancel()
    await until(lambda: not sidecars["s1"].connected, "the session to end")
    assert queue_getters() == []


async def test_a_second_instance_with_a_taken_name_is_refused_already_exists(
    channel: grpc.aio.Channel,
) -> None:
    first = Session(channel, "s1", "i1")
    assert (await first.read()).WhichOneof("payload") == "welcome"
    second = Session(channel, "s1", "i2")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await second.read()
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "'s1'" in (refused.value.details() or "")
    first.call.cancel()


async def test_the_first_instance_keeps_its_commands_after_a_refused_second(
    control: ControlPlane, channel: grpc.aio.Channel
) -> None:
    assert control.core is not None
    first = Session(channel, "s1", "i1")
    assert (await first.read()).WhichOneof("payload") == "welcome"
    second = Session(channel, "s1", "i2")
    with pytest.raises(grpc.aio.AioRpcError):
        await second.read()
    assert control.core.sidecars.send("s1", END_LEG)
    assert (await first.read()).end_leg.leg_id == "L1"
    first.call.cancel()


async def test_the_same_instance_reconnecting_replaces_its_old_stream(
    control: ControlPlane, channel: grpc.aio.Channel
) -> None:
    assert control.core is not None
    old = Session(channel, "s1", "i1")
    assert (await old.read()).WhichOneof("payload") == "welcome"
    new = Session(channel, "s1", "i1")
    assert (await new.read()).WhichOneof("payload") == "welcome"
    assert await old.read() is grpc.aio.EOF  # type: ignore[attr-defined]
    assert control.core.sidecars.send("s1", END_LEG)
    assert (await new.read()).end_leg.leg_id == "L1"
    assert control.core.sidecars.sidecars["s1"].connected
    new.call.cancel()


async def test_another_instance_may_take_the_name_once_the_first_has_gone(
    control: ControlPlane, channel: grpc.aio.Channel
) -> None:
    assert control.core is not None
    first = Session(channel, "s1", "i1")
    assert (await first.read()).WhichOneof("payload") == "welcome"
    sidecars = control.core.sidecars.sidecars
    first.call.cancel()
    await until(lambda: not sidecars["s1"].connected, "s1 to go")
    second = Session(channel, "s1", "i2")
    assert (await second.read()).WhichOneof("payload") == "welcome"
    second.call.cancel()
