"""Serving batched sidecar calls: many request/answer calls on one bidirectional stream.

`RegisterStream` and `CallStream` (sidecar.proto) share this machinery. Each call of a request
message runs as its own task under its own server span, named for the request it holds and
continuing the trace context it carries; replies that complete while the previous response was
being written leave together in the next one.

Calls with the same ordering key (a call leg) run one after another in the order received, so a
leg's ANSWERED report cannot overtake its RINGING report; calls without a key, or with different
keys, run concurrently (and share group commits).

Overload: the stream never takes on more than it can answer within the sidecar's deadline. A
call that starts after its deadline passed (it waited behind its leg's earlier calls, or for
the event loop) is answered DEADLINE_EXCEEDED without taking effect; and new work (`sheddable`:
a REGISTER or a new call's Invite) is answered RESOURCE_EXHAUSTED at once, without a task, while
the oldest call waiting to start has waited for more than half its deadline (or
`StreamLimits.max_delay` without one) or `StreamLimits.max_in_flight` are in progress. At most
`StreamLimits.max_running` calls run at once; the others wait in arrival order. The
sidecar turns either answer into 503 with Retry-After. Calls that belong to a call already under
way (Cancel, Bye, ReportLeg) are never refused this way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc
from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import CallbackOptions, Histogram, Observation

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
    #: New work, refused when the stream is behind (see the module docstring).
    sheddable: bool = False


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


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """How much one stream takes on at once, and before it refuses new work."""

    #: Calls running at once; the others wait their turn in arrival order. A burst (a
    #: sidecar's backlog arriving in one message) then cannot hold the event loop for the
    #: time it takes to start every call of it, and waiting calls can still be dropped
    #: when their deadline passes.
    max_running: int = 128
    #: Calls running or waiting.
    max_in_flight: int = 4000
    #: Wait of the oldest waiting call beyond which new work is refused, for calls that carry
    #: no deadline (seconds); with one, half the deadline.
    max_delay: float = 1.0


class StreamLoad:
    """What every stream of this process has in progress, has refused, and how long calls
    waited before they started; read by the metrics at collection time."""

    def __init__(self) -> None:
        self.in_flight = 0
        #: (method, reason) -> calls answered without being run.
        self.refused: dict[tuple[str, str], int] = {}
        meter = metrics.get_meter("sip2uc.control")
        self.queue_delay = meter.create_histogram(
            "sip2uc_stream_queue_delay",
            unit="s",
            description="How long sidecar requests waited between their arrival and their start",
            explicit_bucket_boundaries_advisory=[
                0.0005,
                0.001,
                0.005,
                0.01,
                0.05,
                0.1,
                0.25,
                0.5,
                1.0,
                2.0,
            ],
        )
        meter.create_observable_gauge(
            "sip2uc_stream_in_flight",
            callbacks=[self._in_flight],
            description="Sidecar requests in progress",
        )
        meter.create_observable_counter(
            "sip2uc_stream_refused",
            callbacks=[self._refused],
            description="Sidecar requests answered without being run, by method and reason "
            "(overloaded: RESOURCE_EXHAUSTED; deadline: DEADLINE_EXCEEDED)",
        )

    def refuse(self, method: str, reason: str) -> None:
        key = (method, reason)
        self.refused[key] = self.refused.get(key, 0) + 1

    def _in_flight(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self.in_flight)

    def _refused(self, _options: CallbackOptions) -> Iterable[Observation]:
        for (method, reason), count in list(self.refused.items()):
            yield Observation(count, {"rpc.method": method, "reason": reason})


_load: StreamLoad | None = None


def stream_load() -> StreamLoad:
    """The process's one `StreamLoad` (instruments are created once per process)."""
    global _load
    if _load is None:
        _load = StreamLoad()
    return _load


async def serve(
    spec: StreamSpec[RequestT, ResponseT, CallT, ReplyT],
    request_iterator: AsyncIterator[RequestT],
    rpc_duration: Histogram,
    clock: Callable[[], float] = time.monotonic,
    limits: StreamLimits | None = None,
) -> AsyncIterator[ResponseT]:
    """Run every call of the incoming messages and yield their replies in batches."""
    limits = limits or StreamLimits()
    load = stream_load()
    replies: list[ReplyT] = []
    ready = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()
    tails: dict[str, asyncio.Task[None]] = {}
    # Calls not started yet, oldest first, with when they arrived.
    waiting: deque[tuple[StreamedCall[CallT], float]] = deque()
    running = 0
    stream_method = f"/{spec.service}/{spec.stream_method}"
    ok_attrs = {"rpc.method": stream_method, "rpc.code": "OK"}
    error_attrs = {"rpc.method": stream_method, "rpc.code": "ERROR"}
    delay_attrs: dict[str, dict[str, str]] = {}
    exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]

    def behind(item: StreamedCall[CallT], now: float) -> bool:
        if running + len(waiting) >= limits.max_in_flight:
            return True
        if not waiting:
            return False
        oldest = now - waiting[0][1]
        return oldest > (item.timeout / 2 if item.timeout else limits.max_delay)

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
            waited = clock() - received
            method_attrs = delay_attrs.get(item.method)
            if method_attrs is None:
                method_attrs = delay_attrs[item.method] = {"rpc.method": item.method}
            load.queue_delay.record(waited, method_attrs)
            if item.timeout and waited > item.timeout:
                # Waited behind its leg's earlier calls (or for the event loop) past the
                # caller's deadline: the sidecar has given up on it, so it must not take effect
                # (as a unary deadline would).
                rpc_duration.record(time.perf_counter() - started, error_attrs)
                load.refuse(item.method, "deadline")
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
        nonlocal running
        try:
            if after is not None:
                await asyncio.wait((after,))  # its outcome is its own; only the order matters
            replies.append(await run(item, received))
        finally:
            running -= 1
            load.in_flight -= 1
            ready.set()
            if item.key is not None and tails.get(item.key) is asyncio.current_task():
                del tails[item.key]
            start_waiting()

    def start_waiting() -> None:
        """Start waiting calls, oldest first, while fewer than `max_running` run. A call of
        a leg starts after the leg's earlier calls and awaits their end before it runs."""
        nonlocal running
        loop = asyncio.get_running_loop()
        while waiting and running < limits.max_running:
            item, received = waiting.popleft()
            running += 1
            after = tails.get(item.key) if item.key is not None else None
            task = loop.create_task(one(item, received, after))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if item.key is not None:
                tails[item.key] = task

    async def read_loop() -> None:
        async for message in request_iterator:
            received = clock()
            for item in spec.calls_of(message):
                if item.sheddable and behind(item, received):
                    load.refuse(item.method, "overloaded")
                    replies.append(
                        spec.error_reply(
                            item.correlation_id, exhausted, "control plane overloaded, try later"
                        )
                    )
                    ready.set()
                    continue
                load.in_flight += 1
                waiting.append((item, received))
            start_waiting()

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
                (running == 0 and not waiting)
                or reader.cancelled()
                or reader.exception() is not None
            ):
                # The sidecar closed its side and has every answer, or the stream broke.
                break
            ready.clear()
            await ready.wait()
    finally:
        reader.cancel()
        for task in list(tasks):
            task.cancel()
        load.in_flight -= len(waiting)
        waiting.clear()
