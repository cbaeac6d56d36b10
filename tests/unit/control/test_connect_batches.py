"""SidecarService.Connect: commands queued together leave in one message for sidecars that can
read batches, and one at a time for those that cannot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from sip2uc.v1 import sidecar_pb2, sidecar_pb2_grpc
from sip2uc_control.app import ControlPlane
from sip2uc_control.calls.commands import EndLeg


async def connect(
    channel: grpc.aio.Channel, name: str, *, batched: bool
) -> tuple[
    grpc.aio.StreamStreamCall[sidecar_pb2.ConnectRequest, sidecar_pb2.ConnectResponse],
    asyncio.Queue[sidecar_pb2.ConnectRequest | None],
]:
    outgoing: asyncio.Queue[sidecar_pb2.ConnectRequest | None] = asyncio.Queue()
    outgoing.put_nowait(
        sidecar_pb2.ConnectRequest(
            hello=sidecar_pb2.SidecarHello(name=name, batched_commands=batched)
        )
    )

    async def requests() -> AsyncIterator[sidecar_pb2.ConnectRequest]:
        while (item := await outgoing.get()) is not None:
            yield item

    call = sidecar_pb2_grpc.SidecarServiceStub(channel).Connect(requests())
    welcome: Any = await asyncio.wait_for(call.read(), 5)
    assert welcome.WhichOneof("payload") == "welcome"
    return call, outgoing


async def test_commands_queued_together_reach_a_batching_sidecar_in_one_message(
    control: ControlPlane, channel: grpc.aio.Channel
) -> None:
    assert control.core is not None
    call, outgoing = await connect(channel, "vlan10", batched=True)
    for leg in ("l1", "l2", "l3"):
        assert control.core.sidecars.send("vlan10", EndLeg(call_id="c", leg_id=leg, status=486))
    message: Any = await asyncio.wait_for(call.read(), 5)
    outgoing.put_nowait(None)
    call.cancel()

    assert message.WhichOneof("payload") == "batch"
    commands = message.batch.commands
    assert [(c.WhichOneof("payload"), c.end_leg.leg_id, c.end_leg.status) for c in commands] == [
        ("end_leg", "l1", 486),
        ("end_leg", "l2", 486),
        ("end_leg", "l3", 486),
    ]
    assert len({c.command_id for c in commands}) == 3


async def test_a_sidecar_without_batches_gets_one_command_per_message(
    control: ControlPlane, channel: grpc.aio.Channel
) -> None:
    assert control.core is not None
    call, outgoing = await connect(channel, "vlan20", batched=False)
    for leg in ("l1", "l2"):
        assert control.core.sidecars.send("vlan20", EndLeg(call_id="c", leg_id=leg))
    first: Any = await asyncio.wait_for(call.read(), 5)
    second: Any = await asyncio.wait_for(call.read(), 5)
    outgoing.put_nowait(None)
    call.cancel()

    assert [(m.WhichOneof("payload"), m.end_leg.leg_id) for m in (first, second)] == [
        ("end_leg", "l1"),
        ("end_leg", "l2"),
    ]
