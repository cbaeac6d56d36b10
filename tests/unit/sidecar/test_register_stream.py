"""REGISTERs travel on one RegisterStream per sidecar, batched per loop turn, with a deadline each;
their answers come back through the caller's callback, matched by correlation id."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from sip2uc.v1 import sidecar_pb2
from sip2uc_core.sip.contact import Contact
from sip2uc_core.sip.digest import Algorithm, Credentials, compute_ha1, compute_response
from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_media.sidecar.control_link import ControlLink
from sip2uc_media.sidecar.registrar import RegisterAttempt, RegisterOutcome, RegisterResult
from sip2uc_media.sidecar.requests import ControlUnavailableError, HelloInfo, Origin

from .fake_control import REALM, FakeControl, StreamlessControl, serve

HELLO = HelloInfo(
    name="vlan10",
    site="hq",
    listeners=(Endpoint(Transport.UDP, "127.0.0.1", 5060),),
    rtp_host="127.0.0.1",
    rtp_ports=(20000, 20999),
    capacity=50,
    instance_id="run-1",
)
ORIGIN = Origin("vlan10", Endpoint(Transport.UDP, "192.0.2.10", 5062), "Phone/1.0", "cid")


def attempt(user: str, expires: int, response: str = "r") -> RegisterAttempt:
    return RegisterAttempt(
        credentials=Credentials(
            username=user,
            realm=REALM,
            nonce="n",
            uri="sip:example.net",
            response=response,
            algorithm=Algorithm.MD5,
        ),
        method="REGISTER",
        aor=f"sip:{user}@example.net",
        contacts=(Contact(f"sip:{user}@192.0.2.10", expires),),
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


class Answers:
    """Collects what `register` hands its callback, and wakes the test on each answer."""

    def __init__(self) -> None:
        self.got: list[tuple[RegisterResult | None, ControlUnavailableError | None]] = []
        self.arrived = asyncio.Event()

    def __call__(
        self, result: RegisterResult | None, error: ControlUnavailableError | None
    ) -> None:
        self.got.append((result, error))
        self.arrived.set()

    async def one(self) -> RegisterResult:
        await asyncio.wait_for(self.arrived.wait(), 5)
        [(result, error)] = self.got
        if error is not None:
            raise error
        assert result is not None
        return result


async def ask(control: ControlLink, register: RegisterAttempt) -> RegisterResult:
    answers = Answers()
    control.register(register, ORIGIN, answers)
    return await answers.one()


async def test_registers_of_one_loop_turn_share_one_stream_message_and_get_their_own_answers() -> (
    None
):
    fake = FakeControl({})
    fake.outcome_override = sidecar_pb2.RegisterResponse(
        outcome=sidecar_pb2.REGISTER_OUTCOME_INTERVAL_TOO_BRIEF, min_expires=90
    )
    server, control = await started(fake)
    try:
        # The first call opens the stream; the three after it are queued in one turn.
        await ask(control, attempt("u0", 30))
        results = await asyncio.gather(*(ask(control, attempt(f"u{i}", 30 + i)) for i in (1, 2, 3)))
    finally:
        await control.stop()
        await server.stop(None)

    assert [[c.request.aor for c in m.calls] for m in fake.register_messages] == [
        ["sip:u0@example.net"],
        ["sip:u1@example.net", "sip:u2@example.net", "sip:u3@example.net"],
    ]
    assert [c.correlation_id for c in fake.register_messages[1].calls] == [2, 3, 4]
    assert [(r.outcome, r.min_expires) for r in results] == [
        (RegisterOutcome.INTERVAL_TOO_BRIEF, 90)
    ] * 3
    assert fake.register_calls[1].contacts[0].expires == 31
    assert fake.metadata[-1]["authorization"] == "Bearer t0k"


async def test_each_streamed_register_is_answered_by_its_correlation_id() -> None:
    fake = FakeControl({"u1": "pw"})
    server, control = await started(fake)
    try:
        await ask(control, attempt("u0", 60))
        bad, good = await asyncio.gather(
            ask(control, attempt("nobody", 60)),
            ask(control, attempt("u1", 600, _md5_response("u1", "pw", "n", "sip:example.net"))),
        )
    finally:
        await control.stop()
        await server.stop(None)

    assert bad.outcome is RegisterOutcome.UNAUTHORIZED
    assert good.outcome is RegisterOutcome.OK
    assert good.bindings == (Contact("sip:u1@192.0.2.10", 600),)


async def test_an_unanswered_register_reports_its_deadline_to_the_callback() -> None:
    fake = FakeControl({}, answer_registers=False)
    server, control = await started(fake, rpc_timeout=0.2)
    answers = Answers()
    try:
        control.register(attempt("u0", 60), ORIGIN, answers)
        with pytest.raises(ControlUnavailableError, match="DEADLINE_EXCEEDED"):
            await answers.one()
    finally:
        await control.stop()
        await server.stop(None)

    assert len(fake.register_messages) == 1


async def test_a_control_plane_without_the_stream_gets_the_register_answered_unavailable() -> None:
    server, control = await started(StreamlessControl({}))
    try:
        with pytest.raises(ControlUnavailableError, match="UNIMPLEMENTED"):
            await ask(control, attempt("u0", 60))
    finally:
        await control.stop()
        await server.stop(None)


async def test_pending_registers_fail_when_the_link_stops() -> None:
    fake = FakeControl({}, answer_registers=False)
    server, control = await started(fake)
    answers = Answers()
    control.register(attempt("u0", 60), ORIGIN, answers)
    try:
        await asyncio.wait_for(fake.registered.wait(), 5)
        await control.stop()
        with pytest.raises(ControlUnavailableError):
            await answers.one()
    finally:
        await server.stop(None)


async def test_a_register_on_a_down_link_is_answered_at_once_with_an_error() -> None:
    control = ControlLink(
        "127.0.0.1:1", token=None, hello=lambda: HELLO, on_settings=lambda _settings: None
    )
    answers = Answers()

    control.register(attempt("u0", 60), ORIGIN, answers)

    assert [(r, str(e)) for r, e in answers.got] == [(None, "control plane link is down")]


def _md5_response(user: str, password: str, nonce: str, uri: str) -> str:
    ha1 = compute_ha1(Algorithm.MD5, user, REALM, password)
    return compute_response(Algorithm.MD5, ha1, nonce=nonce, method="REGISTER", uri=uri)
