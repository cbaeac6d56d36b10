from __future__ import annotations

import asyncio
import random
import socket

from sip2uc.v1 import common_pb2, sidecar_pb2
from sip2uc_core.sip.contact import Contact
from sip2uc_core.sip.digest import Algorithm, Credentials
from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_media.sidecar.commands import Command, CreateLeg, EdgeSettings, EndLeg
from sip2uc_media.sidecar.control_link import UNSUPPORTED, ControlLink, backoff_delay
from sip2uc_media.sidecar.protection import Ban, BanPolicy
from sip2uc_media.sidecar.registrar import RegisterAttempt, RegisterOutcome
from sip2uc_media.sidecar.requests import Origin

from .fake_control import REALM, FakeControl, serve
from .test_register_stream import HELLO, Answers


def link(port: int, applied: list[EdgeSettings], heartbeat_interval: float = 5.0) -> ControlLink:
    return ControlLink(
        f"127.0.0.1:{port}",
        token="t0k",
        hello=lambda: HELLO,
        on_settings=applied.append,
        rng=random.Random(1),
        heartbeat_interval=heartbeat_interval,
    )


async def test_the_link_says_hello_with_the_token_and_applies_the_welcome() -> None:
    fake = FakeControl({})
    server, port = await serve(fake)
    applied: list[EdgeSettings] = []
    control = link(port, applied)
    try:
        await control.start()
        await asyncio.wait_for(control.wait_up(), 5)
    finally:
        await control.stop()
        await server.stop(None)

    hello = fake.hellos[0]
    assert (hello.name, hello.site, hello.capacity, hello.instance_id) == (
        "vlan10",
        "hq",
        50,
        "run-1",
    )
    assert (hello.rtp_port_min, hello.rtp_port_max) == (20000, 20999)
    assert hello.sip_listeners[0].transport == common_pb2.TRANSPORT_UDP
    assert fake.metadata[0]["authorization"] == "Bearer t0k"
    assert applied[0].realm == REALM
    assert applied[0].ban == BanPolicy(threshold=3, window=60.0, ban_seconds=300.0)


async def test_commands_the_sidecar_cannot_carry_out_are_refused() -> None:
    fake = FakeControl({})
    fake.send_command = sidecar_pb2.ConnectResponse(
        command_id="cmd-1", create_leg=sidecar_pb2.CreateLegCommand(leg_id="l1")
    )
    server, port = await serve(fake)
    control = link(port, [])
    try:
        await control.start()
        await fake.until(lambda: fake.results, "the result")
    finally:
        await control.stop()
        await server.stop(None)

    assert [(r.command_id, r.ok, r.error) for r in fake.results] == [("cmd-1", False, UNSUPPORTED)]


async def test_heartbeats_flow_on_the_stream() -> None:
    fake = FakeControl({})
    server, port = await serve(fake)
    control = link(port, [], heartbeat_interval=0.01)
    try:
        await control.start()
        await fake.until(lambda: fake.heartbeats >= 2, "two heartbeats")
    finally:
        await control.stop()
        await server.stop(None)

    assert fake.heartbeats >= 2


async def test_register_carries_every_field_to_the_control_plane() -> None:
    fake = FakeControl({})
    fake.outcome_override = sidecar_pb2.RegisterResponse(
        outcome=sidecar_pb2.REGISTER_OUTCOME_INTERVAL_TOO_BRIEF, min_expires=90
    )
    server, port = await serve(fake)
    control = link(port, [])
    attempt = RegisterAttempt(
        credentials=Credentials(
            username="alice",
            realm=REALM,
            nonce="n",
            uri="sip:example.net",
            response="r",
            algorithm=Algorithm.SHA_256,
            qop="auth",
            nc="00000001",
            cnonce="c",
        ),
        method="REGISTER",
        aor="sip:alice@example.net",
        contacts=(Contact("sip:alice@192.0.2.10", 600, 500, "urn:uuid:1"),),
        remove_all=False,
        cseq=7,
    )
    origin = Origin("vlan10", Endpoint(Transport.TLS, "192.0.2.10", 5062), "Phone/1.0", "cid")
    answers = Answers()
    try:
        await control.start()
        await asyncio.wait_for(control.wait_up(), 5)
        control.register(attempt, origin, answers)
        result = await answers.one()
    finally:
        await control.stop()
        await server.stop(None)

    sent = fake.register_calls[0]
    assert (result.outcome, result.min_expires) == (RegisterOutcome.INTERVAL_TOO_BRIEF, 90)
    assert sent.credentials.algorithm == "SHA-256"
    assert (sent.credentials.nc, sent.credentials.qop, sent.credentials.method) == (
        "00000001",
        "auth",
        "REGISTER",
    )
    assert (sent.aor, sent.cseq, sent.remove_all) == ("sip:alice@example.net", 7, False)
    assert [(c.uri, c.expires, c.q_milli, c.instance_id) for c in sent.contacts] == [
        ("sip:alice@192.0.2.10", 600, 500, "urn:uuid:1")
    ]
    assert sent.origin.transport == common_pb2.TRANSPORT_TLS
    assert (sent.origin.source.host, sent.origin.source.port) == ("192.0.2.10", 5062)
    assert (sent.origin.user_agent, sent.origin.call_id) == ("Phone/1.0", "cid")


async def test_the_link_comes_back_by_itself_after_the_control_plane_restarts() -> None:
    fake = FakeControl({})
    server, port = await serve(fake)
    control = link(port, [])
    try:
        await control.start()
        await asyncio.wait_for(control.wait_up(), 5)
        await server.stop(None)
        for _ in range(500):
            if not control.up:
                break
            await asyncio.sleep(0.01)
        assert control.up is False
        server, _ = await serve(fake, port)
        await asyncio.wait_for(control.wait_up(), 10)
    finally:
        await control.stop()
        await server.stop(None)

    assert control.connects == 2


async def test_start_does_not_wait_for_an_unreachable_control_plane() -> None:
    with grpc_unused_port() as port:
        control = link(port, [])
        await control.start()
        up = control.up
        await control.stop()

    assert up is False


def test_backoff_grows_from_half_a_second_to_thirty_with_jitter() -> None:
    rng = random.Random(7)

    delays = [backoff_delay(n, rng) for n in range(10)]

    assert 0.25 <= delays[0] <= 0.5
    assert 0.5 <= delays[1] <= 1.0
    assert all(15.0 <= d <= 30.0 for d in delays[6:])


class grpc_unused_port:  # noqa: N801 - reads like a function at the call site
    """A port bound but not listening: connecting to it is refused."""

    def __enter__(self) -> int:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        port: int = self._sock.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


async def test_a_batch_of_commands_runs_in_order_and_is_answered_in_one_message() -> None:
    fake = FakeControl({})
    fake.send_command = sidecar_pb2.ConnectResponse(
        batch=sidecar_pb2.CommandBatch(
            commands=[
                sidecar_pb2.ConnectResponse(
                    command_id="c1", end_leg=sidecar_pb2.EndLegCommand(leg_id="l1")
                ),
                sidecar_pb2.ConnectResponse(settings=sidecar_pb2.SidecarSettings(realm="other")),
                sidecar_pb2.ConnectResponse(
                    command_id="c2", create_leg=sidecar_pb2.CreateLegCommand(leg_id="l2")
                ),
            ]
        )
    )
    server, port = await serve(fake)
    seen: list[Command] = []
    applied: list[EdgeSettings] = []

    async def on_command(command: Command) -> str:
        seen.append(command)
        return "" if isinstance(command, EndLeg) else "no way"

    control = ControlLink(
        f"127.0.0.1:{port}",
        token=None,
        hello=lambda: HELLO,
        on_settings=applied.append,
        rng=random.Random(1),
        on_command=on_command,
    )
    try:
        await control.start()
        await fake.until(lambda: fake.result_messages, "the results")
    finally:
        await control.stop()
        await server.stop(None)

    assert fake.hellos[0].batched_commands is True
    assert [type(c) for c in seen] == [EndLeg, CreateLeg]
    assert seen[0] == EndLeg(call_id="", leg_id="l1")
    assert [s.realm for s in applied] == [REALM, "other"]
    assert len(fake.result_messages) == 1
    assert [(r.command_id, r.ok, r.error) for r in fake.result_messages[0].results.results] == [
        ("c1", True, ""),
        ("c2", False, "no way"),
    ]


async def test_the_bans_in_force_are_reported_after_the_welcome_and_after_a_change() -> None:
    fake = FakeControl({})
    server, port = await serve(fake)
    control = link(port, [])
    held = [Ban("192.0.2.9", "", "25 user names tried in 60 s", 1.0, 301.0)]
    control.bans_source(lambda: held)
    try:
        await control.start()
        await fake.until(lambda: fake.bans, "the first report")
        held.insert(0, Ban("192.0.2.7", "1001", "10 failed logins in 60 s", 2.0, 302.0))
        control.bans_changed()
        control.bans_changed()  # within the report interval: the same report covers it
        await fake.until(lambda: len(fake.bans) >= 2, "the report after the change")
    finally:
        await control.stop()
        await server.stop(None)

    assert [[(b.source, b.user, b.reason) for b in report.bans] for report in fake.bans[:2]] == [
        [("192.0.2.9", "", "25 user names tried in 60 s")],
        [
            ("192.0.2.7", "1001", "10 failed logins in 60 s"),
            ("192.0.2.9", "", "25 user names tried in 60 s"),
        ],
    ]
    assert [report.total for report in fake.bans[:2]] == [1, 2]
    first = fake.bans[0].bans[0]
    assert first.expire_time.ToNanoseconds() - first.start_time.ToNanoseconds() == 300 * 10**9


async def test_no_bans_no_report() -> None:
    fake = FakeControl({})
    server, port = await serve(fake)
    control = link(port, [], heartbeat_interval=0.01)
    control.bans_source(list)
    try:
        await control.start()
        await fake.until(lambda: fake.heartbeats >= 3, "heartbeats")
    finally:
        await control.stop()
        await server.stop(None)

    assert fake.bans == []
