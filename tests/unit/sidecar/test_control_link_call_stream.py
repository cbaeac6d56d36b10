"""The call RPCs ride one CallStream per sidecar (batched per loop turn, in the order made, each
with its deadline), and fall back to the unary RPCs on a control plane without the stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from sip2uc.v1 import sidecar_pb2
from sip2uc_media.b2bua.actions import ByeRpc, LegState, ReportLeg
from sip2uc_media.sidecar.control_link import report_request

from .fake_control import FakeControl
from .test_register_stream import ORIGIN, started


class CallStreamControl(FakeControl):
    """Records the CallStream's messages and answers every call with an empty response."""

    def __init__(self) -> None:
        super().__init__({})
        self.messages: list[sidecar_pb2.CallStreamRequest] = []
        self.unary: list[str] = []

    async def CallStream(
        self, request_iterator: AsyncIterator[sidecar_pb2.CallStreamRequest], context: Any
    ) -> AsyncIterator[sidecar_pb2.CallStreamResponse]:
        async for message in request_iterator:
            self.messages.append(message)
            replies = []
            for call in message.calls:
                reply = sidecar_pb2.CallStreamReply(correlation_id=call.correlation_id)
                getattr(reply, call.WhichOneof("request")).SetInParent()
                replies.append(reply)
            yield sidecar_pb2.CallStreamResponse(replies=replies)


class UnaryOnlyControl(FakeControl):
    def __init__(self) -> None:
        super().__init__({})
        self.unary: list[tuple[str, Any]] = []

    async def ReportLeg(self, request: Any, context: Any) -> Any:
        self.unary.append(("ReportLeg", request))
        return sidecar_pb2.ReportLegResponse()

    async def Bye(self, request: Any, context: Any) -> Any:
        self.unary.append(("Bye", request))
        return sidecar_pb2.ByeResponse()


STATS = [sidecar_pb2.StreamStats(direction="rx", packets=250, codec="PCMU")]


def ringing_then_answered() -> list[sidecar_pb2.ReportLegRequest]:
    return [
        report_request("vlan10", ReportLeg(call_id="c1", leg_id="L", state=state, status=status))
        for state, status in ((LegState.RINGING, 180), (LegState.ANSWERED, 200))
    ]


async def test_reports_and_bye_of_one_turn_leave_in_one_message_in_the_order_made() -> None:
    fake = CallStreamControl()
    server, control = await started(fake, rpc_timeout=1.5)
    try:
        ringing, answered = ringing_then_answered()
        await asyncio.gather(
            control.report_leg(ringing),
            control.report_leg(answered),
            control.bye(ORIGIN, ByeRpc(leg_id="L", reason="bye"), STATS),
        )
        assert len(fake.messages) == 1
        calls = fake.messages[0].calls
        assert [c.WhichOneof("request") for c in calls] == ["report_leg", "report_leg", "bye"]
        assert [c.report_leg.state for c in calls[:2]] == [
            sidecar_pb2.LEG_STATE_RINGING,
            sidecar_pb2.LEG_STATE_ANSWERED,
        ]
        assert list(calls[2].bye.stats) == STATS
        assert [c.correlation_id for c in calls] == [1, 2, 3]
        assert {c.timeout_ms for c in calls} == {1500}
    finally:
        await control.stop()
        await server.stop(None)


async def test_a_control_plane_without_the_stream_gets_the_unary_calls() -> None:
    fake = UnaryOnlyControl()
    server, control = await started(fake)
    try:
        ringing = ringing_then_answered()[0]
        await control.report_leg(ringing)
        await control.bye(ORIGIN, ByeRpc(leg_id="L", reason="bye"), STATS)
        assert [(name, r.leg_id) for name, r in fake.unary] == [("ReportLeg", "L"), ("Bye", "L")]
        assert list(fake.unary[1][1].stats) == STATS
    finally:
        await control.stop()
        await server.stop(None)
