"""Serving batched sidecar calls: many request/answer calls on one bidirectional stream.

`RegisterStream` and `CallStream` (sidecar.proto) share this machinery. Each call of a request
message runs as its own task under its own server span, named for the request it holds and
continuing the trace context it carries; replies that complete while the previous response was
being written leave together in the next one.

Calls with the same ordering key (a call leg) run one after another in the order received, so a
leg's ANSWERED report cannot overtake its RINGING report; calls without a key, or with different
keys, run concurrently (and share group commits).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc
from opentelemetry import propagate, trace
from opentelemetry.metrics import Histogram

from ..errors import ControlError
from .status import to_status

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("sip2uc_control.api.streams")

CallT = TypeVar("CallT")
ReplyT = TypeVar("ReplyT")
RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


@dataclass(frozen=True, slots=True)
class StreamedCall(Generic[CallT]):
    """One call taken from a stream message, with what serving it needs to know."""

    call: CallT
    correlation_id: int
    traceparent: str
    tracestate: str
    #: The request the call carries, e.g. "Register" (span name, metrics).
    method: str
    #: Calls with equal keys run in order; None runs at once.
    key: str | None = None
    #: Seconds the caller waits for the answer; 0 for no deadline.
    timeout: float = 0.0


@dataclass(frozen=True, slots=True)
class StreamSpec(Generic[RequestT, ResponseT, CallT, ReplyT]):
    """How one stream RPC maps onto the generic server."""

    service: str  # "sip2uc.v1.SidecarService"
    stream_method: str  # "RegisterStream"
    calls_of: Callable[[RequestT], Iterable[StreamedCall[CallT]]]
    handle: Callable[[CallT], Awaitable[ReplyT]]
    #: A reply saying the call failed with a gRPC status code and message.
    error_reply: Callable[[int, int, str], ReplyT]
    batch: Callable[[list[ReplyT]], ResponseT]


async def serve(
    spec: StreamSpec[RequestT, ResponseT, CallT, ReplyT],
    request_iterator: AsyncIterator[RequestT],
    rpc_duration: Histogram,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[ResponseT]:
    """Run every call of the incoming messages and yield their replies in batches."""
    replies: list[ReplyT] = []
    ready = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()
    tails: dict[str, asyncio.Task[None]] = {}
    outstanding = 0
    stream_method = f"/{spec.service}/{spec.stream_method}"
    ok_attrs = {"rpc.method": stream_method, "rpc.code": "OK"}
    error_attrs = {"rpc.method": stream_method, "rpc.code": "ERROR"}

    async def run(item: StreamedCall[CallT], received: float) -> ReplyT:
        carrier = {"traceparent": item.traceparent} if item.traceparent else None
        if carrier is not None and item.tracestate:
            carrier["tracestate"] = item.tracestate
        parent = propagate.extract(carrier) if carrier is not None else None
        started = time.perf_counter()
        attrs = {
            "rpc.system": "grpc",
            "rpc.service": spec.service,
            "rpc.method": item.method,
        }
        with _tracer.start_as_current_span(
            f"/{spec.service}/{item.method}",
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes=attrs,
        ):
            if item.timeout and clock() - received > item.timeout:
                # Waited behind its leg's earlier calls past the caller's deadline: the sidecar
                # has given up on it, so it must not take effect (as a unary deadline would).
                rpc_duration.record(time.perf_counter() - started, error_attrs)
                code = grpc.StatusCode.DEADLINE_EXCEEDED
                return spec.error_reply(item.correlation_id, code.value[0], "deadline exceeded")
            try:
                reply = await spec.handle(item.call)
            except ControlError as exc:
                status = to_status(exc)
                rpc_duration.record(time.perf_counter() - started, error_attrs)
                return spec.error_reply(item.correlation_id, status.code, status.message)
            except Exception:
                log.exception("%s on the stream failed", item.method)
                rpc_duration.record(time.perf_counter() - started, error_attrs)
                code = grpc.StatusCode.INTERNAL
                return spec.error_reply(item.correlation_id, code.value[0], "internal error")
        rpc_duration.record(time.perf_counter() - started, ok_attrs)
        return reply

    async def one(
        item: StreamedCall[CallT], received: float, after: asyncio.Task[None] | None
    ) -> None:
        nonlocal outstanding
        try:
            if after is not None:
                await asyncio.wait((after,))  # its outcome is its own; only the order matters
            replies.append(await run(item, received))
        finally:
            outstanding -= 1
            ready.set()
            if item.key is not None and tails.get(item.key) is asyncio.current_task():
                del tails[item.key]

    async def read_loop() -> None:
        nonlocal outstanding
        loop = asyncio.get_running_loop()
        async for message in request_iterator:
            received = clock()
            for item in spec.calls_of(message):
                outstanding += 1
                after = tails.get(item.key) if item.key is not None else None
                task = loop.create_task(one(item, received, after))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                if item.key is not None:
                    tails[item.key] = task

    reader = asyncio.create_task(read_loop())
    reader.add_done_callback(lambda _: ready.set())
    try:
        while True:
            if replies:
                batch = replies[:]
                replies.clear()
                yield spec.batch(batch)
                continue
            if reader.done() and (
                outstanding == 0 or reader.cancelled() or reader.exception() is not None
            ):
                # The sidecar closed its side and has every answer, or the stream broke.
                break
            ready.clear()
            await ready.wait()
    finally:
        reader.cancel()
        for task in list(tasks):
            task.cancel()
