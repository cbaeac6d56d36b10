"""The B2BUA's asyncio side against a tiny control plane: the requests it makes and the command
results it returns, exactly, with a recording SIP edge and a real relay on loopback."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from sip2uc.v1 import common_pb2, sidecar_pb2
from sip2uc_core.sip.digest import (
    Algorithm,
    NonceCountTracker,
    NonceIssuer,
    build_credentials,
    compute_ha1,
    parse_challenge,
)
from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.sip.message import SipRequest, SipResponse, parse_message
from sip2uc_core.sip.transaction import TransactionId
from sip2uc_media.b2bua.legs import LegConfig
from sip2uc_media.rtp.aio import RelayEngine
from sip2uc_media.rtp.ports import PortAllocator
from sip2uc_media.sidecar import wire
from sip2uc_media.sidecar.auth_guard import AuthGuard
from sip2uc_media.sidecar.calls import CallHandler
from sip2uc_media.sidecar.commands import Command
from sip2uc_media.sidecar.control_link import ControlLink
from sip2uc_media.sidecar.protection import BanList, BanPolicy
from sip2uc_media.sidecar.registrar import Registrar, RegistrarPolicy
from sip2uc_media.sidecar.requests import HelloInfo
from sip2uc_media.sidecar.telemetry import EdgeMetrics

from .fake_control import FakeControl, serve

T = TypeVar("T")
TRUNK = Endpoint(Transport.UDP, host="192.0.2.10", port=5060)
PHONE = Endpoint(Transport.UDP, host="198.51.100.20", port=5062)  # not a trunk: challenged
WALL = 1_700_000_000.0
HANDSET = Endpoint(Transport.UDP, host="192.0.2.20", port=5062)
SDP = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
)


class RecordingEdge:
    def __init__(self) -> None:
        self.responses: list[tuple[TransactionId, SipResponse]] = []
        self.requests: list[tuple[SipRequest, Endpoint]] = []
        self.ignored: list[TransactionId] = []
        self.guard = AuthGuard(BanList(), EdgeMetrics(), clock=lambda: 0.0)
        self.refusals: list[tuple[str, str, str, int]] = []
        self._txn = itertools.count(100)

    def respond(self, txn_id: TransactionId, response: SipResponse) -> None:
        self.responses.append((txn_id, response))

    def send_request(self, request: SipRequest, dest: Endpoint) -> TransactionId | None:
        self.requests.append((request, dest))
        return TransactionId(next(self._txn))

    def send_stateless(self, message: SipRequest | SipResponse, dest: Endpoint) -> None:
        if isinstance(message, SipRequest):
            self.requests.append((message, dest))

    def ignore(self, txn_id: TransactionId, reason: str) -> None:
        self.ignored.append(txn_id)

    def refused(
        self, source: Endpoint, reason: str, message: Callable[[], str], level: int = logging.INFO
    ) -> None:
        self.refusals.append((source.host, reason, message(), level))

    def flush(self) -> None:
        pass

    @property
    def statuses(self) -> list[int]:
        return [response.status for _txn, response in self.responses]


@dataclass
class Harness:
    control: FakeControl
    handler: CallHandler
    edge: RecordingEdge
    relay: RelayEngine

    async def command(self, command_id: str, **payload: Any) -> sidecar_pb2.CommandResult:
        self.control.commands.put_nowait(
            sidecar_pb2.ConnectResponse(command_id=command_id, **payload)
        )

        def answered() -> sidecar_pb2.CommandResult | None:
            return next((r for r in self.control.results if r.command_id == command_id), None)

        await self.control.until(answered, f"the result of {command_id}")
        result = answered()
        assert result is not None
        return result


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while (value := await probe()) is None:
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
    return value


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    control = FakeControl({})
    control.settings = sidecar_pb2.SidecarSettings()
    server, port = await serve(control)
    loop = asyncio.get_running_loop()
    secret = b"s" * 32
    relay = RelayEngine("127.0.0.1", PortAllocator(41400, 41439))
    await relay.start()
    handler_box: list[CallHandler] = []

    async def on_command(command: Command) -> str:
        return await handler_box[0].command(command)

    link = ControlLink(
        f"127.0.0.1:{port}",
        token=None,
        hello=lambda: HelloInfo(
            name="edge-1",
            site="",
            listeners=(),
            rtp_host="127.0.0.1",
            rtp_ports=(41400, 41439),
            capacity=10,
            instance_id="i",
        ),
        on_settings=lambda _settings: None,
        on_command=on_command,
    )
    handler = CallHandler(
        name="edge-1",
        registrar=Registrar(
            NonceIssuer(secret, 300.0),
            NonceCountTracker(1000, max_idle=300.0),
            tag_secret=secret,
            policy=RegistrarPolicy(algorithms=(Algorithm.MD5,)),
        ),
        control=link,
        relay=relay,
        config=LegConfig(
            sip_host="127.0.0.1",
            sip_port=5060,
            relay_host="127.0.0.1",
            random_bytes=lambda n: bytes([7]) * n,
        ),
        clock=loop.time,
        wall_clock=lambda: WALL,
    )
    handler_box.append(handler)
    edge = RecordingEdge()
    handler.edge = edge
    handler.configure(trunk_sources=(("192.0.2.0/24", 0),), channel_limit=4, media_timeout=60.0)
    await link.start()
    await asyncio.wait_for(link.wait_up(), 5)
    try:
        yield Harness(control, handler, edge, relay)
    finally:
        await handler.close()
        await link.stop()
        await relay.close()
        await server.stop(None)


def trunk_invite(call_id: str = "t1@192.0.2.10") -> SipRequest:
    message = parse_message(
        (
            "INVITE sip:200@127.0.0.1 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKtrunk1\r\n"
            "Max-Forwards: 70\r\n"
            'From: "Trunk" <sip:+4930123@192.0.2.10>;tag=tr1\r\n'
            "To: <sip:200@127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 INVITE\r\n"
            "Contact: <sip:+4930123@192.0.2.10:5060>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n{SDP}"
        ).encode()
    )
    assert isinstance(message, SipRequest)
    return message


async def test_a_trunk_invite_becomes_one_invite_rpc_with_the_peer_port_as_offer(
    harness: Harness,
) -> None:
    harness.handler.invite(TransactionId(1), trunk_invite(), TRUNK)

    await harness.control.until(lambda: harness.control.invites, "the Invite")
    rpc = harness.control.invites[0]
    legs = harness.relay.legs()
    assert [leg.leg_id for leg in legs] == [rpc.leg_id, f"{rpc.leg_id}/peer"]
    assert rpc.leg_id.startswith("edge-1-")
    assert (rpc.request_uri, rpc.from_uri, rpc.from_display_name, rpc.to_uri) == (
        "sip:200@127.0.0.1",
        "sip:+4930123@192.0.2.10",
        "Trunk",
        "sip:200@127.0.0.1",
    )
    assert not rpc.HasField("credentials")
    assert (rpc.origin.source.host, rpc.origin.source.port) == ("192.0.2.10", 5060)
    assert (rpc.offer.rtp.host, rpc.offer.rtp.port) == ("127.0.0.1", legs[1].local_port)
    assert [c.name for c in rpc.offer.codecs] == ["PCMA", "PCMU", "telephone-event"]
    assert harness.edge.statuses == [100]


async def test_a_rejected_invite_gets_the_status_and_frees_its_relay_ports(
    harness: Harness,
) -> None:
    harness.control.invite_answer = sidecar_pb2.InviteResponse(
        disposition=sidecar_pb2.INVITE_DISPOSITION_REJECT, status=404, reason="Not Found"
    )

    harness.handler.invite(TransactionId(1), trunk_invite(), TRUNK)

    async def rejected() -> bool | None:
        return True if harness.edge.statuses == [100, 404] else None

    await eventually(rejected, "the 404")
    assert harness.relay.legs() == []
    assert harness.handler.active_legs == 0
    assert harness.edge.refusals == [
        (
            "192.0.2.10",
            "call_rejected_404",
            "call from +4930123 (192.0.2.10:5060) to 200 refused with 404: Not Found",
            logging.INFO,
        )
    ]


async def test_ringing_and_busy_commands_are_relayed_to_the_caller_and_acknowledged(
    harness: Harness,
) -> None:
    harness.handler.invite(TransactionId(1), trunk_invite(), TRUNK)

    await harness.control.until(lambda: harness.control.invites, "the Invite")
    leg_id = harness.control.invites[0].leg_id

    ringing = await harness.command(
        "c1", answer_leg=sidecar_pb2.AnswerLegCommand(call_id="call-1", leg_id=leg_id, status=180)
    )
    busy = await harness.command(
        "c2",
        end_leg=sidecar_pb2.EndLegCommand(
            call_id="call-1", leg_id=leg_id, status=486, reason="Busy Here"
        ),
    )

    assert (ringing.ok, ringing.error, busy.ok, busy.error) == (True, "", True, "")
    assert harness.edge.statuses == [100, 180, 486]
    assert harness.relay.legs() == []


def bob_leg(**extra: Any) -> sidecar_pb2.CreateLegCommand:
    """The control plane asks for a leg to bob's handset (call-9, leg LB)."""
    return sidecar_pb2.CreateLegCommand(
        call_id="call-9",
        leg_id="LB",
        request_uri="sip:bob@192.0.2.20:5062",
        destination=common_pb2.SocketAddress(host="192.0.2.20", port=5062),
        transport=common_pb2.TRANSPORT_UDP,
        from_uri="sip:alice@example.com",
        to_uri="sip:bob@example.com",
        **extra,
    )


async def test_create_leg_invites_the_handset_and_its_ringing_is_reported(
    harness: Harness,
) -> None:
    result = await harness.command(
        "c1",
        create_leg=bob_leg(),
    )

    assert (result.ok, result.error) == (True, "")
    [(invite, destination)] = harness.edge.requests
    assert (invite.method, str(invite.uri), destination) == (
        "INVITE",
        "sip:bob@192.0.2.20:5062",
        HANDSET,
    )
    ringing = parse_message(
        (
            "SIP/2.0 180 Ringing\r\n"
            f"Via: {invite.headers.get('Via')}\r\n"
            f"From: {invite.headers.get('From')}\r\n"
            f"To: {invite.headers.get('To')};tag=bob1\r\n"
            f"Call-ID: {invite.call_id}\r\n"
            "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(ringing, SipResponse)
    harness.handler.response(TransactionId(100), ringing)

    await harness.control.until(lambda: harness.control.reports, "the ringing report")
    report = harness.control.reports[0]
    assert (report.sidecar, report.call_id, report.leg_id, report.state, report.status) == (
        "edge-1",
        "call-9",
        "LB",
        sidecar_pb2.LEG_STATE_RINGING,
        180,
    )


async def test_commands_about_unknown_legs_say_why_and_ending_one_is_idempotent(
    harness: Harness,
) -> None:
    answer = await harness.command(
        "c1", answer_leg=sidecar_pb2.AnswerLegCommand(leg_id="ghost", status=200)
    )
    dtmf = await harness.command(
        "c2", inject_dtmf=sidecar_pb2.InjectDtmfCommand(leg_id="ghost", digits="1")
    )
    end = await harness.command("c3", end_leg=sidecar_pb2.EndLegCommand(leg_id="ghost"))

    assert [(r.ok, r.error) for r in (answer, dtmf, end)] == [
        (False, "no caller leg ghost"),
        (False, "no leg ghost"),
        (True, ""),
    ]


async def test_a_full_sidecar_answers_503_without_asking_the_control_plane(
    harness: Harness,
) -> None:
    harness.handler.configure(
        trunk_sources=(("192.0.2.0/24", 0),), channel_limit=1, media_timeout=60
    )
    harness.handler.invite(TransactionId(1), trunk_invite("first@x"), TRUNK)

    harness.handler.invite(TransactionId(2), trunk_invite("second@x"), TRUNK)

    second = [r for txn, r in harness.edge.responses if txn == TransactionId(2)]
    assert [(r.status, r.headers.get("Retry-After")) for r in second] == [(503, "5")]
    assert len(harness.relay.legs()) == 2  # the first call's two relay legs only
    assert harness.edge.refusals == [
        (
            "192.0.2.10",
            "channel_limit",
            "call from +4930123 (192.0.2.10:5060) to 200 refused with 503: "
            "channel limit reached (1 legs)",
            logging.WARNING,
        )
    ]


# --- handsets: 407 challenges and what the control plane's verdict does --------------------------


def handset_invite(authorization: str = "", branch: str = "z9hG4bKh1") -> SipRequest:
    auth = f"Proxy-Authorization: {authorization}\r\n" if authorization else ""
    message = parse_message(
        (
            "INVITE sip:200@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 198.51.100.20:5062;branch={branch}\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:100@127.0.0.1>;tag=h1\r\n"
            "To: <sip:200@127.0.0.1>\r\n"
            f"Call-ID: handset-{branch}\r\n"
            "CSeq: 1 INVITE\r\n"
            "Contact: <sip:100@198.51.100.20:5062>\r\n"
            f"{auth}"
            f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n{SDP}"
        ).encode()
    )
    assert isinstance(message, SipRequest)
    return message


def answer_407(harness: Harness, branch: str) -> str:
    """Challenge an INVITE and answer the challenge for user 100 (any password)."""
    harness.handler.invite(TransactionId(900), handset_invite(branch=f"{branch}c"), PHONE)
    challenge = parse_challenge(
        harness.edge.responses[-1][1].headers.get("Proxy-Authenticate") or ""
    )
    return build_credentials(
        challenge,
        username="100",
        ha1=compute_ha1(challenge.algorithm, "100", challenge.realm, "pw"),
        method="INVITE",
        uri="sip:200@127.0.0.1",
        cnonce="c",
    ).serialize()


async def test_a_handset_invite_is_challenged_with_a_nonce_in_wall_clock_time(
    harness: Harness,
) -> None:
    harness.handler.invite(TransactionId(1), handset_invite(), PHONE)

    ((_txn, response),) = harness.edge.responses
    assert response.status == 407
    nonce = parse_challenge(response.headers.get("Proxy-Authenticate") or "").nonce
    # The same time base as REGISTER's nonces: they share one nonce-count tracker.
    assert NonceIssuer.issue_time(nonce) == WALL


async def test_an_invite_the_control_plane_refuses_counts_towards_a_ban_of_that_user_only(
    harness: Harness,
) -> None:
    harness.control.invite_answer = sidecar_pb2.InviteResponse(
        disposition=sidecar_pb2.INVITE_DISPOSITION_UNAUTHORIZED
    )
    guard = harness.edge.guard
    guard.bans.configure(BanPolicy(threshold=2, window=60.0, ban_seconds=300.0))
    for n in range(2):
        before = len(harness.control.invites)
        harness.handler.invite(
            TransactionId(10 + n), handset_invite(answer_407(harness, f"b{n}"), f"b{n}"), PHONE
        )
        await harness.control.until(
            lambda before=before: len(harness.control.invites) > before, "the Invite"
        )

        async def challenged(n: int = n) -> bool | None:
            return True if harness.edge.responses[-1][0] == TransactionId(10 + n) else None

        await eventually(challenged, "the 407")

    harness.handler.invite(TransactionId(20), handset_invite(branch="after"), PHONE)

    assert guard.bans.is_user_banned(PHONE.host, "100", 0.0), (
        [(t, r.status) for t, r in harness.edge.responses],
        guard.bans._failures,
    )
    assert harness.edge.ignored == [TransactionId(20)]
    harness.handler.invite(
        TransactionId(21),
        parse_and_change_from(handset_invite(branch="other"), "101"),
        PHONE,
    )
    assert harness.edge.responses[-1][0] == TransactionId(21)  # another user there: served


async def test_an_invite_the_control_plane_accepts_forgives_earlier_failures(
    harness: Harness,
) -> None:
    guard = harness.edge.guard
    guard.bans.configure(BanPolicy(threshold=2, window=60.0, ban_seconds=300.0))
    guard.failed(PHONE.host, "100")

    harness.handler.invite(
        TransactionId(30), handset_invite(answer_407(harness, "ok"), "ok"), PHONE
    )
    await harness.control.until(lambda: harness.control.invites, "the Invite")

    async def forgiven() -> bool | None:
        return True if ("198.51.100.20", "100") not in guard.bans._failures else None

    await eventually(forgiven, "the failure to be forgiven")
    guard.failed(PHONE.host, "100")
    assert not guard.bans.is_user_banned(PHONE.host, "100", 0.0)


def parse_and_change_from(request: SipRequest, user: str) -> SipRequest:
    message = parse_message(
        bytes(request.serialize()).replace(b"sip:100@127.0.0.1", f"sip:{user}@127.0.0.1".encode())
    )
    assert isinstance(message, SipRequest)
    return message


async def test_a_leg_bridged_by_the_other_party_reports_its_statistics_while_the_call_lasts(
    harness: Harness,
) -> None:
    await harness.command(
        "c1",
        create_leg=bob_leg(bridge_leg_id="LA"),  # the caller's leg bridges, never this one
    )
    quiet = harness.handler.report_stats()
    relay_leg = harness.relay.leg("LB")
    relay_leg.tx_packets, relay_leg.tx_bytes = 250, 43000  # the relay sent bob audio

    sent = harness.handler.report_stats()

    await harness.control.until(lambda: harness.control.reports, "a statistics report")
    (report,) = harness.control.reports
    assert (quiet, sent) == (0, 1)
    assert (report.call_id, report.leg_id, report.state) == ("call-9", "LB", 0)
    assert [(s.direction, s.packets) for s in report.stats] == [("rx", 0), ("tx", 250)]


async def test_the_legs_a_sidecar_carries_are_what_its_hello_reports(harness: Harness) -> None:
    await harness.command(
        "c1",
        create_leg=bob_leg(),
    )

    (live,) = harness.handler.live_legs()
    message = wire.hello(
        HelloInfo(
            name="edge-1",
            site="",
            listeners=(),
            rtp_host="127.0.0.1",
            rtp_ports=(41400, 41439),
            capacity=10,
            instance_id="i",
            live_legs=(live,),
        )
    )

    (reported,) = message.hello.live_legs
    assert (reported.call_id, reported.leg_id, reported.caller, reported.established) == (
        "call-9",
        "LB",
        False,
        False,  # ringing: a control plane that lost the call ends it
    )
    assert reported.party == "sip:bob@example.com"
    assert reported.media.rtp.port == harness.relay.leg("LB/peer").local_port
