"""SidecarService.RegisterStream: the unary Register's answers, matched by correlation id, each
under its own server span that continues the sidecar's trace."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sip2uc.v1 import sidecar_pb2, sidecar_pb2_grpc
from sip2uc_control.api import streams

from .test_registrar_rpc import creds, make_alice, register

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"


async def one_message(
    *calls: sidecar_pb2.RegisterCall,
) -> AsyncIterator[sidecar_pb2.RegisterStreamRequest]:
    yield sidecar_pb2.RegisterStreamRequest(calls=calls)


async def replies_of(
    channel: grpc.aio.Channel, *calls: sidecar_pb2.RegisterCall
) -> dict[int, sidecar_pb2.RegisterReply]:
    stream = sidecar_pb2_grpc.SidecarServiceStub(channel).RegisterStream(one_message(*calls))
    out: dict[int, sidecar_pb2.RegisterReply] = {}
    async for message in stream:
        for reply in message.replies:
            out[reply.correlation_id] = reply
    return out


async def test_streamed_registers_get_the_unary_answers_by_correlation_id(
    channel: grpc.aio.Channel,
) -> None:
    await make_alice(channel)
    no_sidecar = register(creds("s3cret-pw"), ("sip:456@10.0.0.7", 600))
    no_sidecar.origin.sidecar = ""

    replies = await replies_of(
        channel,
        sidecar_pb2.RegisterCall(
            correlation_id=7, request=register(creds("s3cret-pw"), ("sip:456@10.0.0.7", 600))
        ),
        sidecar_pb2.RegisterCall(
            correlation_id=8,
            request=register(creds("guess", username="999"), ("sip:999@10.0.0.7", 600)),
        ),
        sidecar_pb2.RegisterCall(correlation_id=9, request=no_sidecar),
    )

    assert sorted(replies) == [7, 8, 9]
    assert replies[7].response.outcome == sidecar_pb2.REGISTER_OUTCOME_OK
    assert [(b.uri, b.expires) for b in replies[7].response.bindings] == [("sip:456@10.0.0.7", 600)]
    assert replies[8].response.outcome == sidecar_pb2.REGISTER_OUTCOME_UNAUTHORIZED
    assert (replies[9].HasField("response"), replies[9].error_code) == (
        False,
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
    )


async def test_each_streamed_register_continues_the_trace_it_carries(
    channel: grpc.aio.Channel, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(streams, "_tracer", provider.get_tracer("test"))
    await make_alice(channel)

    await replies_of(
        channel,
        sidecar_pb2.RegisterCall(
            correlation_id=1,
            traceparent=f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01",
            request=register(creds("s3cret-pw"), ("sip:456@10.0.0.7", 600)),
        ),
        sidecar_pb2.RegisterCall(
            correlation_id=2, request=register(creds("s3cret-pw"), ("sip:456@10.0.0.8", 600))
        ),
    )

    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["/sip2uc.v1.SidecarService/Register"] * 2
    traced = [s for s in spans if s.parent is not None]
    assert len(traced) == 1
    assert traced[0].parent is not None
    assert format(traced[0].context.trace_id, "032x") == TRACE_ID
    assert format(traced[0].parent.span_id, "016x") == PARENT_SPAN_ID
