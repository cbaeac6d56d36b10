"""Across the seam: what one server's door sends, the other's reads back to the same thing.

Each request type of the sidecar goes through `sip2uc_media.sidecar.wire`, the bytes gRPC would
carry and `sip2uc_control.api.sidecar_wire`; each answer, command and settings message the other
way. Contacts, endpoints and statistics are the same types on both sides, so they compare whole.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import TypeVar

from google.protobuf.message import Message
from hypothesis import given
from hypothesis import strategies as st
from sip2uc.v1 import sidecar_pb2
from sip2uc_control.api import sidecar_wire
from sip2uc_control.calls import (
    AnswerLeg,
    Codec,
    CreateLeg,
    EndLeg,
    InjectDtmf,
    InviteInput,
    InviteOutcome,
    LegReport,
    MediaInfo,
    UpdateMedia,
)
from sip2uc_control.calls import LegState as ControlLegState
from sip2uc_control.registrar import Outcome, RegisterDecision
from sip2uc_control.sidecars import (
    BansReport,
    CommandResult,
    Heartbeat,
    LiftBan,
    SettingsChanged,
    SidecarBan,
    SidecarInfo,
    SidecarSettings,
)
from sip2uc_core.sip.contact import Contact
from sip2uc_core.sip.digest import Algorithm, Credentials
from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.stream_stats import StreamStats
from sip2uc_media.b2bua import legs
from sip2uc_media.b2bua.actions import ByeRpc, CancelRpc, InviteRpc, LegState, ReportLeg, Tone
from sip2uc_media.b2bua.legs import Disposition, InviteResult
from sip2uc_media.b2bua.offer_answer import CodecSpec, MediaSpec
from sip2uc_media.rtp.relay import Direction
from sip2uc_media.sidecar import commands, wire
from sip2uc_media.sidecar.commands import Batch, EdgeSettings, Order, Welcome
from sip2uc_media.sidecar.protection import Ban, BanPolicy
from sip2uc_media.sidecar.registrar import RegisterAttempt, RegisterOutcome, RegisterResult
from sip2uc_media.sidecar.requests import HelloInfo, InviteCall, Origin

M = TypeVar("M", bound=Message)

SOURCE = Endpoint(Transport.TLS, "192.0.2.10", 5062, connection_id=7)
ORIGIN = Origin("vlan10", SOURCE, "Phone/1.0", "cid-1")
CREDENTIALS = Credentials(
    username="alice",
    realm="example.net",
    nonce="n1",
    uri="sip:example.net",
    response="0123abcd",
    algorithm=Algorithm.SHA_256,
    qop="auth",
    nc="0000000a",
    cnonce="c1",
)
SIDECAR_MEDIA = MediaSpec(
    host="198.51.100.1",
    port=30000,
    codecs=(CodecSpec("PCMU", 0), CodecSpec("telephone-event", 101, 8000, "0-15")),
    direction=Direction.RECVONLY,
    ptime_ms=30,
)
CONTROL_MEDIA = MediaInfo(
    host="198.51.100.1",
    port=30000,
    codecs=(Codec("PCMU", 0), Codec("telephone-event", 101, 8000, "0-15")),
    direction="recvonly",
    ptime_ms=30,
)
STATS = (
    StreamStats(
        direction="rx", packets=250, bytes=40000, lost=-1, jitter_ms=2.25, mos=4.1, codec="PCMU"
    ),
    StreamStats(direction="tx", packets=249, bytes=39840, codec="PCMU"),
)


def over_the_wire(message: M) -> M:
    """The message as the other side parses it from the bytes gRPC carries."""
    return type(message).FromString(message.SerializeToString())


# -- sidecar -> control plane -----------------------------------------------------------------


contacts = st.builds(
    Contact,
    uri=st.from_regex(r"sip:[a-z0-9]{1,8}@192\.0\.2\.[0-9]{1,3}(:[0-9]{4})?", fullmatch=True),
    expires=st.integers(0, 2**32 - 1),
    # 0 is "not sent" on the wire and read as the default 1000.
    q_milli=st.integers(1, 1000),
    instance_id=st.sampled_from(["", "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"]),
)


@given(st.lists(contacts, max_size=4), st.integers(0, 2**32 - 1), st.booleans())
def test_a_register_reaches_the_control_plane_with_its_contacts_source_and_credentials(
    sent: list[Contact], cseq: int, remove_all: bool
) -> None:
    attempt = RegisterAttempt(
        credentials=CREDENTIALS,
        method="REGISTER",
        aor="sip:alice@example.net",
        contacts=tuple(sent),
        remove_all=remove_all,
        cseq=cseq,
    )

    read = sidecar_wire.register_input(over_the_wire(wire.register_call(attempt, ORIGIN)))

    assert read.contacts == tuple(sent)
    # The connection the REGISTER came on stays with the sidecar.
    assert read.source == replace(SOURCE, connection_id=None)
    assert (read.credentials, read.aor, read.cseq, read.remove_all) == (
        CREDENTIALS,
        "sip:alice@example.net",
        cseq,
        remove_all,
    )
    assert (read.sidecar, read.user_agent, read.call_id) == ("vlan10", "Phone/1.0", "cid-1")


@given(st.lists(contacts, max_size=4))
def test_the_bindings_of_the_answer_reach_the_sidecar_as_the_same_contacts(
    bindings: list[Contact],
) -> None:
    call = sidecar_pb2.RegisterCall(correlation_id=5)
    decision = RegisterDecision(Outcome.OK)

    reply = over_the_wire(sidecar_wire.register_reply(call, decision, bindings))

    assert reply.correlation_id == 5
    assert wire.register_result(reply) == RegisterResult(
        outcome=RegisterOutcome.OK, bindings=tuple(bindings)
    )


def test_every_register_outcome_crosses_with_its_details() -> None:
    outcomes = [(o, RegisterOutcome(o.value)) for o in Outcome]
    call = sidecar_pb2.RegisterCall()

    for sent, expected in outcomes:
        decision = RegisterDecision(sent, reason="why", min_expires=90)
        read = wire.register_result(over_the_wire(sidecar_wire.register_reply(call, decision, ())))
        assert read == RegisterResult(outcome=expected, min_expires=90, reason="why"), sent


def test_an_invite_reaches_the_control_plane_whole() -> None:
    call = InviteCall(
        origin=ORIGIN,
        credentials=CREDENTIALS,
        request_uri="sip:200@example.net",
        from_uri="sip:alice@example.net",
        from_display_name="Alice",
        to_uri="sip:200@example.net;user=phone",
    )

    sent = wire.invite_call(call, InviteRpc(leg_id="LA", offer=SIDECAR_MEDIA), 2000)
    read = sidecar_wire.call_request(over_the_wire(sent))

    assert read == InviteInput(
        sidecar="vlan10",
        leg_id="LA",
        credentials=CREDENTIALS,
        source_host="192.0.2.10",
        source_port=5062,
        request_uri="sip:200@example.net",
        from_uri="sip:alice@example.net",
        from_display_name="Alice",
        to_uri="sip:200@example.net;user=phone",
        offer=CONTROL_MEDIA,
    )


def test_every_answer_to_an_invite_reaches_the_sidecar() -> None:
    answers = [
        (
            InviteOutcome("routing", call_id="c1"),
            InviteResult(disposition=Disposition.ROUTING, call_id="c1"),
        ),
        (
            InviteOutcome("reject", status=503, reason="Full", retry_after=5),
            InviteResult(disposition=Disposition.REJECT, status=503, reason="Full", retry_after=5),
        ),
        (
            InviteOutcome("unauthorized", status=407, reason="Proxy Authentication Required"),
            InviteResult(
                disposition=Disposition.UNAUTHORIZED,
                status=407,
                reason="Proxy Authentication Required",
            ),
        ),
        (
            InviteOutcome("feedback", tone_ok=False),
            InviteResult(disposition=Disposition.FEEDBACK_TONE, tone=Tone.ERROR),
        ),
        (
            InviteOutcome("feedback"),
            InviteResult(disposition=Disposition.FEEDBACK_TONE, tone=Tone.CONFIRM),
        ),
    ]
    call = sidecar_pb2.CallStreamCall(correlation_id=3)

    read = [
        wire.invite_result(over_the_wire(sidecar_wire.invite_reply(call, outcome)))
        for outcome, _ in answers
    ]

    assert read == [expected for _, expected in answers]


def test_cancel_and_bye_reach_the_control_plane_with_the_legs_statistics() -> None:
    cancel = sidecar_wire.call_request(
        over_the_wire(wire.cancel_call(ORIGIN, CancelRpc(leg_id="LA"), 2000))
    )
    bye = sidecar_wire.call_request(
        over_the_wire(
            wire.bye_call(ORIGIN, ByeRpc(leg_id="LA", reason="media timeout"), STATS, 2000)
        )
    )

    assert cancel == sidecar_wire.CancelInput("vlan10", "LA")
    assert bye == sidecar_wire.ByeInput("vlan10", "LA", "media timeout", STATS)


def test_every_leg_report_reaches_the_control_plane() -> None:
    states = {
        LegState.TRYING: ControlLegState.TRYING,
        LegState.RINGING: ControlLegState.RINGING,
        LegState.EARLY_MEDIA: ControlLegState.EARLY_MEDIA,
        LegState.ANSWERED: ControlLegState.ANSWERED,
        LegState.FAILED: ControlLegState.FAILED,
        LegState.ENDED: ControlLegState.ENDED,
        None: None,
    }
    for sent, expected in states.items():
        report = ReportLeg(
            call_id="c1",
            leg_id="LB",
            state=sent,
            status=183,
            reason="Session Progress",
            media=SIDECAR_MEDIA,
            dtmf_digits="1#",
            direction=Direction.SENDONLY,
        )

        read = sidecar_wire.call_request(
            over_the_wire(wire.report_call("vlan10", report, STATS, 0))
        )

        assert read == LegReport(
            sidecar="vlan10",
            call_id="c1",
            leg_id="LB",
            state=expected,
            status=183,
            reason="Session Progress",
            media=CONTROL_MEDIA,
            dtmf_digits="1#",
            stats=STATS,
            direction="sendonly",
        ), sent


def test_a_bare_report_reaches_the_control_plane_without_media_or_direction() -> None:
    report = ReportLeg(call_id="c1", leg_id="LB")

    read = sidecar_wire.call_request(over_the_wire(wire.report_call("vlan10", report, (), 0)))

    assert read == LegReport(sidecar="vlan10", call_id="c1", leg_id="LB", state=None)


def test_the_hello_heartbeat_and_results_reach_the_control_plane() -> None:
    hello = HelloInfo(
        name="vlan10",
        site="hq",
        listeners=(
            Endpoint(Transport.UDP, "192.0.2.1", 5060),
            Endpoint(Transport.TCP, "192.0.2.1", 5060),
            Endpoint(Transport.TLS, "192.0.2.1", 5061),
        ),
        rtp_host="192.0.2.1",
        rtp_ports=(20000, 20999),
        capacity=40,
        instance_id="run-1",
    )

    info = sidecar_wire.sidecar_info(over_the_wire(wire.hello(hello)), 1000.0)
    heartbeat = sidecar_wire.session_report(over_the_wire(wire.heartbeat(3, 12)))
    results = sidecar_wire.session_report(
        over_the_wire(wire.results([("k1", ""), ("k2", "no leg L")], batched=True))
    )
    single = sidecar_wire.session_report(over_the_wire(wire.results([("k3", "")], batched=False)))

    assert info == SidecarInfo(
        name="vlan10",
        site="hq",
        sip_listeners=["udp 192.0.2.1:5060", "tcp 192.0.2.1:5060", "tls 192.0.2.1:5061"],
        rtp="192.0.2.1:20000-20999",
        capacity=40,
        version=wire.VERSION,
        instance_id="run-1",
        batched_commands=True,
        connected=True,
        connect_time=1000.0,
        last_seen=1000.0,
    )
    assert heartbeat == Heartbeat(3, 12)
    assert results == (CommandResult("k1", True), CommandResult("k2", False, "no leg L"))
    assert single == (CommandResult("k3", True),)


# -- control plane -> sidecar -----------------------------------------------------------------


def test_every_command_reaches_the_sidecar_in_its_own_terms_and_in_order() -> None:
    sent = [
        CreateLeg(
            call_id="c1",
            leg_id="LB",
            request_uri="sip:bob@192.0.2.20:5062;transport=tcp",
            host="192.0.2.20",
            port=5062,
            transport="tcp",
            from_uri="sip:alice@example.com",
            from_display_name="Alice",
            to_uri="sip:bob@example.com",
            peer_media=CONTROL_MEDIA,
            ring_timeout_seconds=25,
            bridge_leg_id="LA",
        ),
        AnswerLeg(call_id="c1", leg_id="LA", status=183, peer_media=CONTROL_MEDIA),
        AnswerLeg(call_id="c1", leg_id="LA", status=200, peer_media=None, bridge_leg_id="LB"),
        EndLeg(call_id="c1", leg_id="LB", status=487, reason="Request Terminated"),
        InjectDtmf(call_id="c1", leg_id="LA", digits="*30#", duration_ms=120),
        UpdateMedia(call_id="c1", leg_id="LB", peer_media=CONTROL_MEDIA),
    ]

    [message] = sidecar_wire.outgoing(sent, batched=True)
    read = wire.session_message(over_the_wire(message))

    assert isinstance(read, Batch)
    assert all(isinstance(item, Order) and item.command_id for item in read.items)
    assert [item.command for item in read.items if isinstance(item, Order)] == [
        legs.CreateLeg(
            call_id="c1",
            leg_id="LB",
            request_uri="sip:bob@192.0.2.20:5062;transport=tcp",
            destination=Endpoint(Transport.TCP, "192.0.2.20", 5062),
            from_uri="sip:alice@example.com",
            from_display_name="Alice",
            to_uri="sip:bob@example.com",
            peer_media=SIDECAR_MEDIA,
            ring_timeout=25.0,
            bridge_leg_id="LA",
        ),
        commands.AnswerLeg(call_id="c1", leg_id="LA", status=183, peer_media=SIDECAR_MEDIA),
        commands.AnswerLeg(call_id="c1", leg_id="LA", status=200, bridge_leg_id="LB"),
        commands.EndLeg(call_id="c1", leg_id="LB", status=487, reason="Request Terminated"),
        commands.InjectDtmf(call_id="c1", leg_id="LA", digits="*30#", duration_ms=120),
        commands.UpdateMedia(call_id="c1", leg_id="LB", peer_media=SIDECAR_MEDIA),
    ]


def test_a_sidecar_that_reads_no_batches_gets_one_message_per_command() -> None:
    sent = [EndLeg(call_id="c1", leg_id="L1"), EndLeg(call_id="c1", leg_id="L2")]

    read = [
        wire.session_message(over_the_wire(m)) for m in sidecar_wire.outgoing(sent, batched=False)
    ]

    assert [item.command for item in read if isinstance(item, Order)] == [
        commands.EndLeg(call_id="c1", leg_id="L1"),
        commands.EndLeg(call_id="c1", leg_id="L2"),
    ]
    assert len(read) == 2


def test_settings_reach_the_sidecar_in_the_welcome_and_in_a_change() -> None:
    settings = SidecarSettings(
        realm="example.net",
        domain="example.net",
        allowed_networks=("10.0.0.0/8", "192.0.2.0/24"),
        trunk_sources=(("198.51.100.0/24", 5060),),
        ban_threshold=5,
        ban_window_seconds=30,
        ban_seconds=600,
        ban_user_names=7,
        channel_limit=200,
        media_timeout_seconds=45,
        min_expires=120,
        max_expires=1800,
        device_algorithms=(
            ("1001", (Algorithm.SHA_256,)),
            ("1002", (Algorithm.SHA_256, Algorithm.MD5)),
        ),
    )
    expected = EdgeSettings(
        realm="example.net",
        domain="example.net",
        allowed_networks=("10.0.0.0/8", "192.0.2.0/24"),
        ban=BanPolicy(threshold=5, window=30.0, ban_seconds=600.0, user_names=7),
        min_expires=120,
        max_expires=1800,
        trunk_sources=(("198.51.100.0/24", 5060),),
        channel_limit=200,
        media_timeout=45.0,
        device_algorithms=MappingProxyType(
            {"1001": (Algorithm.SHA_256,), "1002": (Algorithm.SHA_256, Algorithm.MD5)}
        ),
    )

    welcome = wire.session_message(over_the_wire(sidecar_wire.welcome(settings)))
    [change] = sidecar_wire.outgoing([SettingsChanged(settings)], batched=True)
    changed = wire.session_message(over_the_wire(change))

    assert isinstance(welcome, Welcome)
    assert welcome.settings.applied_to(EdgeSettings()) == expected
    assert isinstance(changed, commands.SettingsUpdate)
    assert changed.applied_to(EdgeSettings()) == expected


def test_a_lift_ban_command_reaches_the_sidecar() -> None:
    [message] = sidecar_wire.outgoing([LiftBan("192.0.2.9")], batched=True)

    read = wire.session_message(over_the_wire(message))

    assert isinstance(read, Order)
    assert read.command == commands.LiftBan(source="192.0.2.9")


def test_the_sidecars_bans_reach_the_control_plane_in_wall_clock_time() -> None:
    held = [
        Ban("192.0.2.9", "", "25 user names tried in 60 s", 100.0, 400.0),
        Ban("192.0.2.7", "1001", "10 failed logins in 60 s", 90.0, 390.0),
    ]

    report = sidecar_wire.session_report(over_the_wire(wire.bans(held, 150.0, 1_700_000_000.0)))

    assert report == BansReport(
        (
            SidecarBan(
                "192.0.2.9", "", "25 user names tried in 60 s", 1_699_999_950.0, 1_700_000_250.0
            ),
            SidecarBan(
                "192.0.2.7", "1001", "10 failed logins in 60 s", 1_699_999_940.0, 1_700_000_240.0
            ),
        ),
        2,
    )


def test_a_sidecar_reports_at_most_a_thousand_bans_with_the_total() -> None:
    held = [Ban(f"10.0.{n // 256}.{n % 256}", "", "r", 1.0, 2.0) for n in range(1500)]

    report = sidecar_wire.session_report(over_the_wire(wire.bans(held, 1.0, 1.0)))

    assert isinstance(report, BansReport)
    assert (len(report.bans), report.total) == (1000, 1500)
