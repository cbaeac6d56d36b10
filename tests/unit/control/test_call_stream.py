"""SidecarService.CallStream: the call RPCs on one stream, in order per leg, with deadlines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from sip2uc.v1 import sidecar_pb2, sidecar_pb2_grpc
from sip2uc_control.api import streams

from .sidecar_session import SidecarSession, digest, media
from .test_calls_api import PW, add_user

# -- the generic server, without gRPC ----------------------------------------------------------


@dataclass(frozen=True)
class Job:
    cid: int
    key: str | None
    timeout: float = 0.0
    sheddable: bool = False


class Durations:
    def record(self, amount: float, attributes: dict[str, str] | None = None) -> None:
        pass


async def messages(queue: asyncio.Queue[list[Job] | None]) -> AsyncIterator[list[Job]]:
    while (item := await queue.get()) is not None:
        yield item


def job_spec(
    handle: object,
) -> streams.StreamSpec[list[Job], list[tuple[int, str]], Job, tuple[int, str]]:
    return streams.StreamSpec(
        service="test.Service",
        stream_method="Stream",
        calls_of=lambda jobs: [
            streams.StreamedCall(
                j, j.cid, "", "", "Do", key=j.key, timeout=j.timeout, sheddable=j.sheddable
            )
            for j in jobs
        ],
        handle=handle,  # type: ignore[arg-type]
        error_reply=lambda cid, code, message: (cid, f"error {code}: {message}"),
        batch=lambda replies: replies,
    )


async def test_calls_of_one_leg_run_in_order_and_other_legs_do_not_wait() -> None:
    release = asyncio.Event()
    ran: list[int] = []

    async def handle(job: Job) -> tuple[int, str]:
        if job.cid == 1:
            await release.wait()
        ran.append(job.cid)
        return (job.cid, "ok")

    queue: asyncio.Queue[list[Job] | None] = asyncio.Queue()
    out = streams.serve(job_spec(handle), messages(queue), Durations())  # type: ignore[arg-type]
    queue.put_nowait([Job(1, "A"), Job(2, "A"), Job(3, "B")])
    assert await anext(out) == [(3, "ok")]
    assert ran == [3]  # leg A's second call waits for its first
    release.set()
    replies = [await anext(out)]
    if len(replies[0]) < 2:
        replies.append(await anext(out))
    assert ran == [3, 1, 2]
    queue.put_nowait(None)
    assert [r for batch in replies for r in batch] == [(1, "ok"), (2, "ok")]
    assert [b async for b in out] == []


async def test_a_call_whose_deadline_passed_while_waiting_for_its_leg_does_not_run() -> None:
    release = asyncio.Event()
    ran: list[int] = []
    now = [100.0]

    async def handle(job: Job) -> tuple[int, str]:
        if job.cid == 1:
            await release.wait()
            now[0] += 0.5  # the first call of the leg takes half a second
        ran.append(job.cid)
        return (job.cid, "ok")

    queue: asyncio.Queue[list[Job] | None] = asyncio.Queue()
    out = streams.serve(
        job_spec(handle),
        messages(queue),
        Durations(),  # type: ignore[arg-type]
        clock=lambda: now[0],
    )
    queue.put_nowait([Job(1, "A"), Job(2, "A", timeout=0.2), Job(3, "A", timeout=2.0)])
    first = asyncio.ensure_future(anext(out))
    release.set()
    replies = list(await first)
    while len(replies) < 3:
        replies.extend(await anext(out))
    queue.put_nowait(None)
    assert sorted(replies) == [(1, "ok"), (2, "error 4: deadline exceeded"), (3, "ok")]
    assert ran == [1, 3]


async def test_no_more_calls_run_at_once_than_the_limit_and_the_rest_start_in_order() -> None:
    release = asyncio.Event()
    started: list[int] = []

    async def handle(job: Job) -> tuple[int, str]:
        started.append(job.cid)
        await release.wait()
        return (job.cid, "ok")

    queue: asyncio.Queue[list[Job] | None] = asyncio.Queue()
    out = streams.serve(
        job_spec(handle),
        messages(queue),
        Durations(),  # type: ignore[arg-type]
        limits=streams.StreamLimits(max_running=2),
    )
    queue.put_nowait([Job(n, None) for n in range(1, 6)])
    first = asyncio.ensure_future(anext(out))
    for _ in range(20):
        await asyncio.sleep(0)
    assert started == [1, 2]
    release.set()
    replies = list(await first)
    while len(replies) < 5:
        replies.extend(await anext(out))
    queue.put_nowait(None)
    assert started == [1, 2, 3, 4, 5]
    assert sorted(replies) == [(n, "ok") for n in range(1, 6)]


async def test_new_work_is_refused_while_the_oldest_waiting_call_waited_half_its_deadline() -> None:
    release = asyncio.Event()
    now = [100.0]

    async def handle(job: Job) -> tuple[int, str]:
        await release.wait()
        return (job.cid, "ok")

    queue: asyncio.Queue[list[Job] | None] = asyncio.Queue()
    out = streams.serve(
        job_spec(handle),
        messages(queue),
        Durations(),  # type: ignore[arg-type]
        clock=lambda: now[0],
        limits=streams.StreamLimits(max_running=1),
    )
    queue.put_nowait([Job(1, None, timeout=2.0), Job(2, None, timeout=2.0)])  # 2 waits
    first = asyncio.ensure_future(anext(out))
    for _ in range(20):
        await asyncio.sleep(0)
    now[0] += 1.5  # call 2 has waited 1.5 s of its 2 s
    queue.put_nowait(
        [
            Job(3, None, timeout=2.0, sheddable=True),  # new work: refused
            Job(4, "leg", timeout=2.0),  # work under way: queued
        ]
    )
    refused = await first
    assert refused == [(3, "error 8: control plane overloaded, try later")]
    now[0] += 0.4
    release.set()
    replies: list[tuple[int, str]] = []
    while len(replies) < 3:
        replies.extend(await anext(out))
    queue.put_nowait(None)
    # Call 2 started 1.9 s after it came, still within its deadline.
    assert sorted(replies) == [(1, "ok"), (2, "ok"), (4, "ok")]


async def test_new_work_is_refused_when_too_many_calls_are_in_flight() -> None:
    release = asyncio.Event()

    async def handle(job: Job) -> tuple[int, str]:
        await release.wait()
        return (job.cid, "ok")

    queue: asyncio.Queue[list[Job] | None] = asyncio.Queue()
    out = streams.serve(
        job_spec(handle),
        messages(queue),
        Durations(),  # type: ignore[arg-type]
        limits=streams.StreamLimits(max_in_flight=2),
    )
    queue.put_nowait([Job(n, None, sheddable=True) for n in range(1, 4)])

    assert await anext(out) == [(3, "error 8: control plane overloaded, try later")]
    release.set()
    replies: list[tuple[int, str]] = []
    while len(replies) < 2:
        replies.extend(await anext(out))
    queue.put_nowait(None)
    assert sorted(replies) == [(1, "ok"), (2, "ok")]


# -- CallStream over gRPC ------------------------------------------------------------------------


async def test_streamed_invite_and_reports_get_the_unary_answers_and_commands_in_order(
    channel: grpc.aio.Channel,
) -> None:
    await add_user(channel, "201")
    await add_user(channel, "202")
    async with SidecarSession(channel, "s1") as s1:
        await s1.register("201", PW, 41001)
        await s1.register("202", PW, 42001)
        outgoing: asyncio.Queue[sidecar_pb2.CallStreamRequest | None] = asyncio.Queue()

        async def requests() -> AsyncIterator[sidecar_pb2.CallStreamRequest]:
            while (item := await outgoing.get()) is not None:
                yield item

        stream = sidecar_pb2_grpc.SidecarServiceStub(channel).CallStream(requests())
        invite = sidecar_pb2.InviteRequest(
            origin=s1.origin(),
            credentials=digest("201", PW, "INVITE"),
            leg_id="A",
            request_uri="sip:202@sip2uc.local",
            from_uri="sip:201@sip2uc.local",
            to_uri="sip:202@sip2uc.local",
            offer=media(30000, ("PCMU", 0)),
        )
        nameless = sidecar_pb2.InviteRequest(leg_id="B")
        outgoing.put_nowait(
            sidecar_pb2.CallStreamRequest(
                calls=[
                    sidecar_pb2.CallStreamCall(correlation_id=1, invite=invite, timeout_ms=2000),
                    sidecar_pb2.CallStreamCall(correlation_id=2, invite=nameless),
                ]
            )
        )
        replies: dict[int, sidecar_pb2.CallStreamReply] = {}
        while len(replies) < 2:
            for reply in (await stream.read()).replies:
                replies[reply.correlation_id] = reply
        assert replies[1].invite.disposition == sidecar_pb2.INVITE_DISPOSITION_ROUTING
        assert (replies[2].HasField("invite"), replies[2].error_code) == (
            False,
            grpc.StatusCode.INVALID_ARGUMENT.value[0],
        )
        call_id = replies[1].invite.call_id
        fork = await s1.next("create_leg")

        def report(cid: int, state: int, **fields: object) -> sidecar_pb2.CallStreamCall:
            return sidecar_pb2.CallStreamCall(
                correlation_id=cid,
                report_leg=sidecar_pb2.ReportLegRequest(
                    sidecar="s1", call_id=call_id, leg_id=fork.leg_id, state=state, **fields
                ),
            )

        # Ringing and answer of one leg in one message: the caller hears 180, then 200.
        outgoing.put_nowait(
            sidecar_pb2.CallStreamRequest(
                calls=[
                    report(3, sidecar_pb2.LEG_STATE_RINGING, status=180),
                    report(
                        4,
                        sidecar_pb2.LEG_STATE_ANSWERED,
                        status=200,
                        media=media(31000, ("PCMU", 0)),
                    ),
                ]
            )
        )
        assert (await s1.next("answer_leg")).status == 180
        assert (await s1.next("answer_leg")).status == 200

        bye = sidecar_pb2.ByeRequest(
            origin=s1.origin(),
            leg_id="A",
            reason="bye",
            stats=[sidecar_pb2.StreamStats(direction="rx", packets=50, codec="PCMU")],
        )
        outgoing.put_nowait(
            sidecar_pb2.CallStreamRequest(
                calls=[sidecar_pb2.CallStreamCall(correlation_id=5, bye=bye)]
            )
        )
        ended = await s1.next("end_leg")
        assert ended.leg_id == fork.leg_id
        outgoing.put_nowait(None)
        done: list[int] = []
        while (message := await stream.read()) is not grpc.aio.EOF:
            done.extend(r.correlation_id for r in message.replies)
        assert sorted(done) == [3, 4, 5]
