"""The call requests ride one CallStream per sidecar: batched per loop turn, in the order made,
each with its deadline; without the stream an Invite fails at once (the handset gets 503)."""

from __future__ import annotations

import asyncio

import pytest
from sip2uc.v1 import sidecar_pb2
from sip2uc_core.stream_stats import StreamStats
from sip2uc_media.b2bua.actions import ByeRpc, InviteRpc, LegState, ReportLeg
from sip2uc_media.b2bua.offer_answer import MediaSpec
from sip2uc_media.sidecar.requests import ControlUnavailableError, InviteCall

from .fake_control import FakeControl, StreamlessControl
from .test_register_stream import ORIGIN, started

STATS = (StreamStats(direction="rx", packets=250, codec="PCMU"),)


def ringing_then_answered() -> list[ReportLeg]:
    return [
        ReportLeg(call_id="c1", leg_id="L", state=state, status=status)
        for state, status in ((LegState.RINGING, 180), (LegState.ANSWERED, 200))
    ]


async def test_reports_and_bye_of_one_turn_leave_in_one_message_in_the_order_made() -> None:
    fake = FakeControl({})
    server, control = await started(fake, rpc_timeout=1.5)
    try:
        ringing, answered = ringing_then_answered()
        await asyncio.gather(
            control.report_leg("vlan10", ringing),
            control.report_leg("vlan10", answered),
            control.bye(ORIGIN, ByeRpc(leg_id="L", reason="bye"), STATS),
        )
        assert len(fake.call_messages) == 1
        calls = fake.call_messages[0].calls
        assert [c.WhichOneof("request") for c in calls] == ["report_leg", "report_leg", "bye"]
        assert [(c.report_leg.sidecar, c.report_leg.state) for c in calls[:2]] == [
            ("vlan10", sidecar_pb2.LEG_STATE_RINGING),
            ("vlan10", sidecar_pb2.LEG_STATE_ANSWERED),
        ]
        assert list(calls[2].bye.stats) == [
            sidecar_pb2.StreamStats(direction="rx", packets=250, codec="PCMU")
        ]
        assert [c.correlation_id for c in calls] == [1, 2, 3]
        assert {c.timeout_ms for c in calls} == {1500}
    finally:
        await control.stop()
        await server.stop(None)


async def test_an_invite_without_the_stream_fails_as_unavailable() -> None:
    server, control = await started(StreamlessControl({}))
    call = InviteCall(
        origin=ORIGIN,
        credentials=None,
        request_uri="sip:200@127.0.0.1",
        from_uri="sip:100@127.0.0.1",
        from_display_name="",
        to_uri="sip:200@127.0.0.1",
    )
    offer = MediaSpec(host="127.0.0.1", port=40000, codecs=())
    try:
        with pytest.raises(ControlUnavailableError, match="UNIMPLEMENTED"):
            await control.invite(call, InviteRpc(leg_id="L", offer=offer))
    finally:
        await control.stop()
        await server.stop(None)
