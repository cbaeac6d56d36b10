"""REGISTERs travel on one RegisterStream per sidecar, batched per loop turn, with a deadline
each, and fall back to unary Register calls on a control plane without the stream."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sip2uc.v1 import sidecar_pb2
from sip2uc_core.sip.digest import Algorithm, Credentials, compute_ha1, compute_response
from sip2uc_media.sidecar.control_link import ControlLink, ControlUnavailableError, HelloInfo
from sip2uc_media.sidecar.registrar import (
    ContactSpec,
    Origin,
    RegisterAttempt,
    RegisterOutcome,
    RegisterResult,
)
from sip2uc_media.transport.base import TransportKind

from .fake_control import REALM, FakeControl, serve

HELLO = HelloInfo(
    name="vlan10",
    site="hq",
    listeners=((TransportKind.UDP, "127.0.0.1", 5060),),
    rtp_host="127.0.0.1",
    rtp_ports=(20000, 20999),
    capacity=50,
    instance_id="run-1",
)
ORIGIN = Origin("vlan10", "192.0.2.10", 5062, TransportKind.UDP, "Phone/1.0", "cid")


class StreamingControl(FakeControl):
    """Answers RegisterStream calls the way the fake answers unary ones (or not at all)."""

    def __init__(self, users: dict[str, str], *, answer: bool = True) -> None:
        super().__init__(users)
        self.answer = answer
        self.stream_messages: list[sidecar_pb2.RegisterStreamRequest] = []
        self.received = asyncio.Event()

    async def RegisterStream(
        self, request_iterator: AsyncIterator[sidecar_pb2.RegisterStreamRequest], context: Any
    ) -> AsyncIterator[sidecar_pb2.RegisterStreamResponse]:
        async for message in request_iterator:
            self.stream_messages.append(message)
            self.received.set()
            if not self.answer:
                continue
            replies = []
            for call in message.calls:
                response = await self.Register(call.request, context)
                replies.append(
                    sidecar_pb2.RegisterReply(correlation_id=call.correlation_id, response=response)
                )
            # Answer in reverse order: the link matches by correlation id, not by position.
            yield sidecar_pb2.RegisterStreamResponse(replies=replies[::-1])


def attempt(user: str, expires: int) -> RegisterAttempt:
    return RegisterAttempt(
        credentials=Credentials(
            username=user,
            realm=REALM,
            nonce="n",
            uri="sip:example.net",
            response="r",
            algorithm=Algorithm.MD5,
        ),
        method="REGISTER",
        aor=f"sip:{user}@example.net",
        contacts=(ContactSpec(f"sip:{user}@192.0.2.10", expires),),
        remove_all=False,
        cseq=1,
    )


async def started(fake: FakeControl, *, rpc_timeout: float = 2.0) -> tuple[Any, ControlLink]:
    server, port = await serve(fake)
    control = ControlLink(
        f"127.0.0.1:{port}",
        token="t0k",
        hello=lambda: HELLO,
        on_settings=lambda _settings: None,
        rng=random.Random(1),
        rpc_timeout=rpc_timeout,
    )
    await control.start()
    await asyncio.wait_for(control.wait_up(), 5)
    return server, control


async def test_registers_of_one_loop_turn_share_one_stream_message_and_get_their_own_answers() -> (
    None
):
    fake = StreamingControl({})
    fake.outcome_override = sidecar_pb2.RegisterResponse(
        outcome=sidecar_pb2.REGISTER_OUTCOME_INTERVAL_TOO_BRIEF, min_expires=90
    )
    server, control = await started(fake)
    try:
        # The first call opens the stream; the three after it are queued in one turn.
        await control.register(attempt("u0", 30), ORIGIN)
        results = await asyncio.gather(
            *(control.register(attempt(f"u{i}", 30 + i), ORIGIN) for i in (1, 2, 3))
        )
    finally:
        await control.stop()
        await server.stop(None)

    assert [[c.request.aor for c in m.calls] for m in fake.stream_messages] == [
        ["sip:u0@example.net"],
        ["sip:u1@example.net", "sip:u2@example.net", "sip:u3@example.net"],
    ]
    assert [c.correlation_id for c in fake.stream_messages[1].calls] == [2, 3, 4]
    assert [(r.outcome, r.min_expires) for r in results] == [
        (RegisterOutcome.INTERVAL_TOO_BRIEF, 90)
    ] * 3
    assert fake.register_calls[1].contacts[0].expires == 31


async def test_each_streamed_register_is_answered_by_its_correlation_id() -> None:
    fake = StreamingControl({"u1": "pw"})
    server, control = await started(fake)
    try:
        await control.register(attempt("u0", 60), ORIGIN)
        bad, good = await asyncio.gather(
            control.register(attempt("nobody", 60), ORIGIN),
            control.register(
                RegisterAttempt(
                    credentials=Credentials(
                        username="u1",
                        realm=REALM,
                        nonce="n",
                        uri="sip:example.net",
                        response=_md5_response("u1", "pw", "n", "sip:example.net"),
                        algorithm=Algorithm.MD5,
                    ),
                    method="REGISTER",
                    aor="sip:u1@example.net",
                    contacts=(ContactSpec("sip:u1@192.0.2.10", 600),),
                    remove_all=False,
                    cseq=1,
                ),
                ORIGIN,
            ),
        )
    finally:
        await control.stop()
        await server.stop(None)

    assert bad.outcome is RegisterOutcome.UNAUTHORIZED
    assert good.outcome is RegisterOutcome.OK
    assert [(b.uri, b.expires) for b in good.bindings] == [("sip:u1@192.0.2.10", 600)]


async def test_an_unanswered_streamed_register_fails_at_its_deadline() -> None:
    fake = StreamingControl({}, answer=False)
    server, control = await started(fake, rpc_timeout=0.2)
    try:
        with pytest.raises(ControlUnavailableError, match="DEADLINE_EXCEEDED"):
            await control.register(attempt("u0", 60), ORIGIN)
    finally:
        await control.stop()
        await server.stop(None)

    assert len(fake.stream_messages) == 1


async def test_a_control_plane_without_the_stream_gets_unary_register_calls() -> None:
    fake = FakeControl({})
    fake.outcome_override = sidecar_pb2.RegisterResponse(
        outcome=sidecar_pb2.REGISTER_OUTCOME_FORBIDDEN, reason="No"
    )
    server, control = await started(fake)
    try:
        first = await control.register(attempt("u0", 60), ORIGIN)
        second = await control.register(attempt("u1", 60), ORIGIN)
    finally:
        await control.stop()
        await server.stop(None)

    assert [(r.outcome, r.reason) for r in (first, second)] == [
        (RegisterOutcome.FORBIDDEN, "No")
    ] * 2
    assert [c.aor for c in fake.register_calls] == ["sip:u0@example.net", "sip:u1@example.net"]


async def test_pending_streamed_registers_fail_when_the_link_stops() -> None:
    fake = StreamingControl({}, answer=False)
    server, control = await started(fake)
    pending = asyncio.ensure_future(control.register(attempt("u0", 60), ORIGIN))
    try:
        await asyncio.wait_for(fake.received.wait(), 5)
        await control.stop()
        with pytest.raises(ControlUnavailableError):
            await pending
    finally:
        await server.stop(None)


def _md5_response(user: str, password: str, nonce: str, uri: str) -> str:
    ha1 = compute_ha1(Algorithm.MD5, user, REALM, password)
    return compute_response(Algorithm.MD5, ha1, nonce=nonce, method="REGISTER", uri=uri)


class Answers:
    """Collects what `register_then` hands its callback, and wakes the test on the first."""

    def __init__(self) -> None:
        self.got: list[tuple[RegisterResult | None, ControlUnavailableError | None]] = []
        self.arrived = asyncio.Event()

    def __call__(
        self, result: RegisterResult | None, error: ControlUnavailableError | None
    ) -> None:
        self.got.append((result, error))
        self.arrived.set()


async def test_register_then_answers_through_its_callback_from_the_stream() -> None:
    fake = StreamingControl({})
    fake.outcome_override = sidecar_pb2.RegisterResponse(
        outcome=sidecar_pb2.REGISTER_OUTCOME_INTERVAL_TOO_BRIEF, min_expires=90
    )
    server, control = await started(fake)
    answers = Answers()
    try:
        control.register_then(attempt("u0", 30), ORIGIN, answers)
        await asyncio.wait_for(answers.arrived.wait(), 5)
    finally:
        await control.stop()
        await server.stop(None)

    [(result, error)] = answers.got
    assert error is None
    assert result is not None
    assert (result.outcome, result.min_expires) == (RegisterOutcome.INTERVAL_TOO_BRIEF, 90)
    assert [len(m.calls) for m in fake.stream_messages] == [1]


async def test_register_then_reports_the_deadline_to_its_callback() -> None:
    fake = StreamingControl({}, answer=False)
    server, control = await started(fake, rpc_timeout=0.2)
    answers = Answers()
    try:
        control.register_then(attempt("u0", 60), ORIGIN, answers)
        await asyncio.wait_for(answers.arrived.wait(), 5)
    finally:
        await control.stop()
        await server.stop(None)

    [(result, error)] = answers.got
    assert result is None
    assert "DEADLINE_EXCEEDED" in str(error)


async def test_register_then_falls_back_to_unary_calls_without_the_stream() -> None:
    fake = FakeControl({})
    fake.outcome_override = sidecar_pb2.RegisterResponse(
        outcome=sidecar_pb2.REGISTER_OUTCOME_FORBIDDEN, reason="No"
    )
    server, control = await started(fake)
    answers = Answers()
    try:
        control.register_then(attempt("u0", 60), ORIGIN, answers)
        await asyncio.wait_for(answers.arrived.wait(), 5)
    finally:
        await control.stop()
        await server.stop(None)

    [(result, error)] = answers.got
    assert error is None
    assert result is not None
    assert (result.outcome, result.reason) == (RegisterOutcome.FORBIDDEN, "No")
    assert [c.aor for c in fake.register_calls] == ["sip:u0@example.net"]


async def test_register_then_on_a_down_link_answers_at_once_with_an_error() -> None:
    control = ControlLink(
        "127.0.0.1:1", token=None, hello=lambda: HELLO, on_settings=lambda _settings: None
    )
    answers = Answers()

    control.register_then(attempt("u0", 60), ORIGIN, answers)

    assert [(r, str(e)) for r, e in answers.got] == [(None, "control plane link is down")]
