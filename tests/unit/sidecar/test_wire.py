"""The sidecar's door to sidecar.proto: what each message becomes, and what each request is sent
as, field by field."""

from __future__ import annotations

from sip2uc.v1 import common_pb2, sidecar_pb2
from sip2uc_core.sip.contact import Contact
from sip2uc_core.sip.digest import Algorithm, Credentials
from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.stream_stats import StreamStats
from sip2uc_media.b2bua.actions import ByeRpc, CancelRpc, InviteRpc, LegState, ReportLeg, Tone
from sip2uc_media.b2bua.legs import CreateLeg, Disposition, InviteResult
from sip2uc_media.b2bua.offer_answer import CodecSpec, MediaSpec
from sip2uc_media.rtp.relay import Direction
from sip2uc_media.sidecar import wire
from sip2uc_media.sidecar.commands import (
    AnswerLeg,
    Batch,
    DeliverMessage,
    EdgeSettings,
    EndLeg,
    InjectDtmf,
    Notify,
    Order,
    SettingsUpdate,
    UpdateMedia,
    Welcome,
)
from sip2uc_media.sidecar.protection import BanPolicy
from sip2uc_media.sidecar.registrar import RegisterAttempt, RegisterOutcome, RegisterResult
from sip2uc_media.sidecar.requests import HelloInfo, InviteCall, Origin

ORIGIN = Origin("vlan10", Endpoint(Transport.TCP, "192.0.2.10", 5062, 7), "Phone/1.0", "cid-1")
CREDENTIALS = Credentials(
    username="alice",
    realm="example.net",
    nonce="n1",
    uri="sip:example.net",
    response="abcd",
    algorithm=Algorithm.SHA_256,
    qop="auth",
    nc="00000002",
    cnonce="c1",
)
MEDIA = MediaSpec(
    host="198.51.100.1",
    port=30000,
    codecs=(CodecSpec("PCMA", 8), CodecSpec("telephone-event", 101, 8000, "0-15")),
    direction=Direction.SENDONLY,
    ptime_ms=30,
)
MEDIA_PB = common_pb2.MediaEndpoint(
    rtp=common_pb2.SocketAddress(host="198.51.100.1", port=30000),
    codecs=[
        common_pb2.Codec(name="PCMA", payload_type=8, clock_rate=8000),
        common_pb2.Codec(name="telephone-event", payload_type=101, clock_rate=8000, fmtp="0-15"),
    ],
    direction=common_pb2.MEDIA_DIRECTION_SENDONLY,
    ptime_ms=30,
)
ORIGIN_PB = sidecar_pb2.RequestOrigin(
    sidecar="vlan10",
    source=common_pb2.SocketAddress(host="192.0.2.10", port=5062),
    transport=common_pb2.TRANSPORT_TCP,
    user_agent="Phone/1.0",
    call_id="cid-1",
)
CREDENTIALS_PB = sidecar_pb2.DigestCredentials(
    username="alice",
    realm="example.net",
    nonce="n1",
    uri="sip:example.net",
    response="abcd",
    algorithm="SHA-256",
    cnonce="c1",
    nc="00000002",
    qop="auth",
)


def command(command_id: str = "k1", **payload: object) -> sidecar_pb2.ConnectResponse:
    return sidecar_pb2.ConnectResponse(command_id=command_id, **payload)  # type: ignore[arg-type]


# -- the session ----------------------------------------------------------------------------------


def test_the_hello_names_every_listener_and_asks_for_batches() -> None:
    info = HelloInfo(
        name="vlan10",
        site="hq",
        listeners=(
            Endpoint(Transport.UDP, "192.0.2.1", 5060),
            Endpoint(Transport.TLS, "192.0.2.1", 5061),
        ),
        rtp_host="192.0.2.1",
        rtp_ports=(20000, 20999),
        capacity=40,
        instance_id="run-1",
    )

    assert wire.hello(info) == sidecar_pb2.ConnectRequest(
        hello=sidecar_pb2.SidecarHello(
            name="vlan10",
            site="hq",
            sip_listeners=[
                sidecar_pb2.SipListener(
                    transport=common_pb2.TRANSPORT_UDP,
                    address=common_pb2.SocketAddress(host="192.0.2.1", port=5060),
                ),
                sidecar_pb2.SipListener(
                    transport=common_pb2.TRANSPORT_TLS,
                    address=common_pb2.SocketAddress(host="192.0.2.1", port=5061),
                ),
            ],
            rtp_host="192.0.2.1",
            rtp_port_min=20000,
            rtp_port_max=20999,
            capacity=40,
            version=wire.VERSION,
            instance_id="run-1",
            batched_commands=True,
        )
    )


def test_heartbeats_and_results_say_what_they_carry() -> None:
    assert wire.heartbeat(3, 12) == sidecar_pb2.ConnectRequest(
        heartbeat=sidecar_pb2.SidecarHeartbeat(active_legs=3, relay_ports_in_use=12)
    )
    assert wire.results([("k1", "")], batched=False) == sidecar_pb2.ConnectRequest(
        result=sidecar_pb2.CommandResult(command_id="k1", ok=True)
    )
    assert wire.results([("k1", ""), ("k2", "no leg L")], batched=True) == (
        sidecar_pb2.ConnectRequest(
            results=sidecar_pb2.CommandResults(
                results=[
                    sidecar_pb2.CommandResult(command_id="k1", ok=True),
                    sidecar_pb2.CommandResult(command_id="k2", ok=False, error="no leg L"),
                ]
            )
        )
    )


def test_settings_sent_as_zero_keep_the_current_value_and_lists_are_taken_as_sent() -> None:
    base = EdgeSettings(
        realm="old",
        allowed_networks=("10.0.0.0/8",),
        trunk_sources=(("10.1.0.0/16", 0),),
        channel_limit=9,
    )
    message = sidecar_pb2.ConnectResponse(
        settings=sidecar_pb2.SidecarSettings(realm="new", ban_threshold=4, media_timeout_seconds=90)
    )

    update = wire.session_message(message)

    assert update == SettingsUpdate(realm="new", ban_threshold=4, media_timeout=90.0)
    assert isinstance(update, SettingsUpdate)
    assert update.applied_to(base) == EdgeSettings(
        realm="new",
        allowed_networks=(),
        trunk_sources=(),
        ban=BanPolicy(threshold=4),
        channel_limit=9,
        media_timeout=90.0,
    )


def test_every_settings_field_is_read() -> None:
    message = sidecar_pb2.SidecarSettings(
        realm="r",
        domain="d.example",
        allowed_networks=["10.0.0.0/8"],
        trunk_sources=[sidecar_pb2.TrunkSource(network="10.9.0.0/16", port=5060)],
        ban_threshold=3,
        ban_window_seconds=30,
        ban_seconds=600,
        channel_limit=100,
        media_timeout_seconds=45,
        min_expires=120,
        max_expires=1800,
    )

    welcome = wire.session_message(
        sidecar_pb2.ConnectResponse(welcome=sidecar_pb2.SidecarWelcome(settings=message))
    )

    assert isinstance(welcome, Welcome)
    assert welcome.settings.applied_to(EdgeSettings()) == EdgeSettings(
        realm="r",
        domain="d.example",
        allowed_networks=("10.0.0.0/8",),
        ban=BanPolicy(threshold=3, window=30.0, ban_seconds=600.0),
        min_expires=120,
        max_expires=1800,
        trunk_sources=(("10.9.0.0/16", 5060),),
        channel_limit=100,
        media_timeout=45.0,
    )


def test_create_leg_becomes_the_legs_create_with_its_endpoint() -> None:
    message = command(
        create_leg=sidecar_pb2.CreateLegCommand(
            call_id="c1",
            leg_id="LB",
            request_uri="sip:bob@192.0.2.20:5061;transport=tls",
            destination=common_pb2.SocketAddress(host="192.0.2.20", port=5061),
            transport=common_pb2.TRANSPORT_TLS,
            from_uri="sip:alice@example.com",
            from_display_name="Alice",
            to_uri="sip:bob@example.com",
            peer_media=MEDIA_PB,
            ring_timeout_seconds=25,
            bridge_leg_id="LA",
        )
    )

    assert wire.session_message(message) == Order(
        "k1",
        CreateLeg(
            call_id="c1",
            leg_id="LB",
            request_uri="sip:bob@192.0.2.20:5061;transport=tls",
            destination=Endpoint(Transport.TLS, "192.0.2.20", 5061),
            from_uri="sip:alice@example.com",
            from_display_name="Alice",
            to_uri="sip:bob@example.com",
            peer_media=MEDIA,
            ring_timeout=25.0,
            bridge_leg_id="LA",
        ),
    )


def test_a_bare_create_leg_means_udp_no_media_yet_and_a_minute_of_ringing() -> None:
    message = command(create_leg=sidecar_pb2.CreateLegCommand(leg_id="LB"))

    order = wire.session_message(message)

    assert isinstance(order, Order) and isinstance(order.command, CreateLeg)
    assert order.command.destination == Endpoint(Transport.UDP, "", 0)
    assert (order.command.peer_media, order.command.ring_timeout) == (None, 60.0)


def test_each_call_command_is_read_whole() -> None:
    messages = [
        command(
            answer_leg=sidecar_pb2.AnswerLegCommand(
                call_id="c1", leg_id="LA", status=200, peer_media=MEDIA_PB, bridge_leg_id="LB"
            )
        ),
        command(answer_leg=sidecar_pb2.AnswerLegCommand(call_id="c1", leg_id="LA", status=180)),
        command(
            end_leg=sidecar_pb2.EndLegCommand(
                call_id="c1", leg_id="LA", status=486, reason="Busy Here"
            )
        ),
        command(
            inject_dtmf=sidecar_pb2.InjectDtmfCommand(
                call_id="c1", leg_id="LA", digits="12#", duration_ms=160
            )
        ),
        command(inject_dtmf=sidecar_pb2.InjectDtmfCommand(call_id="c1", leg_id="LA", digits="5")),
        command(
            update_media=sidecar_pb2.UpdateMediaCommand(
                call_id="c1", leg_id="LA", peer_media=MEDIA_PB
            )
        ),
    ]

    assert [wire.session_message(m) for m in messages] == [
        Order(
            "k1",
            AnswerLeg(call_id="c1", leg_id="LA", status=200, peer_media=MEDIA, bridge_leg_id="LB"),
        ),
        Order("k1", AnswerLeg(call_id="c1", leg_id="LA", status=180)),
        Order("k1", EndLeg(call_id="c1", leg_id="LA", status=486, reason="Busy Here")),
        Order("k1", InjectDtmf(call_id="c1", leg_id="LA", digits="12#", duration_ms=160)),
        Order("k1", InjectDtmf(call_id="c1", leg_id="LA", digits="5", duration_ms=100)),
        Order("k1", UpdateMedia(call_id="c1", leg_id="LA", peer_media=MEDIA)),
    ]


def test_the_reserved_message_and_notify_commands_are_read_for_refusing() -> None:
    deliver = command(
        deliver_message=sidecar_pb2.DeliverMessageCommand(
            request_uri="sip:alice@192.0.2.10:5062",
            destination=common_pb2.SocketAddress(host="192.0.2.10", port=5062),
            transport=common_pb2.TRANSPORT_TCP,
            from_uri="sip:bob@example.com",
            to_uri="sip:alice@example.com",
            content_type="text/plain",
            body=b"hi",
        )
    )
    notify = command(
        notify=sidecar_pb2.NotifyCommand(
            subscription_id="s1", content_type="application/pidf+xml", body=b"<x/>", terminate=True
        )
    )

    assert [wire.session_message(m) for m in (deliver, notify)] == [
        Order(
            "k1",
            DeliverMessage(
                request_uri="sip:alice@192.0.2.10:5062",
                destination=Endpoint(Transport.TCP, "192.0.2.10", 5062),
                from_uri="sip:bob@example.com",
                to_uri="sip:alice@example.com",
                content_type="text/plain",
                body=b"hi",
            ),
        ),
        Order(
            "k1",
            Notify(
                subscription_id="s1",
                content_type="application/pidf+xml",
                body=b"<x/>",
                terminate=True,
            ),
        ),
    ]


def test_a_batch_keeps_its_order_and_drops_what_cannot_be_in_it() -> None:
    message = sidecar_pb2.ConnectResponse(
        batch=sidecar_pb2.CommandBatch(
            commands=[
                command("k1", end_leg=sidecar_pb2.EndLegCommand(leg_id="L1")),
                sidecar_pb2.ConnectResponse(settings=sidecar_pb2.SidecarSettings(realm="r")),
                sidecar_pb2.ConnectResponse(welcome=sidecar_pb2.SidecarWelcome()),
                sidecar_pb2.ConnectResponse(command_id="k9"),
                command("k2", end_leg=sidecar_pb2.EndLegCommand(leg_id="L2")),
            ]
        )
    )

    assert wire.session_message(message) == Batch(
        (
            Order("k1", EndLeg(call_id="", leg_id="L1")),
            SettingsUpdate(realm="r"),
            Order("k2", EndLeg(call_id="", leg_id="L2")),
        )
    )


def test_a_message_without_a_payload_says_nothing() -> None:
    assert wire.session_message(sidecar_pb2.ConnectResponse(command_id="k1")) is None


# -- REGISTER ---------------------------------------------------------------------------------------


def test_a_register_is_sent_with_every_field() -> None:
    attempt = RegisterAttempt(
        credentials=CREDENTIALS,
        method="REGISTER",
        aor="sip:alice@example.net",
        contacts=(
            Contact("sip:alice@192.0.2.10:5062", 600, 500, "urn:uuid:1"),
            Contact("sip:alice@192.0.2.11", 0),
        ),
        remove_all=False,
        cseq=7,
    )

    assert wire.register_call(attempt, ORIGIN) == sidecar_pb2.RegisterCall(
        request=sidecar_pb2.RegisterRequest(
            origin=ORIGIN_PB,
            credentials=_with_method(CREDENTIALS_PB, "REGISTER"),
            aor="sip:alice@example.net",
            contacts=[
                sidecar_pb2.ContactBinding(
                    uri="sip:alice@192.0.2.10:5062",
                    expires=600,
                    q_milli=500,
                    instance_id="urn:uuid:1",
                ),
                sidecar_pb2.ContactBinding(uri="sip:alice@192.0.2.11", expires=0, q_milli=1000),
            ],
            cseq=7,
        )
    )


def _with_method(
    credentials: sidecar_pb2.DigestCredentials, method: str
) -> sidecar_pb2.DigestCredentials:
    out = sidecar_pb2.DigestCredentials()
    out.CopyFrom(credentials)
    out.method = method
    return out


def test_the_answer_to_a_register_lists_the_bindings_as_contacts() -> None:
    reply = sidecar_pb2.RegisterReply(
        correlation_id=3,
        response=sidecar_pb2.RegisterResponse(
            outcome=sidecar_pb2.REGISTER_OUTCOME_OK,
            bindings=[
                sidecar_pb2.ContactBinding(uri="sip:a@192.0.2.10", expires=599, q_milli=500),
                sidecar_pb2.ContactBinding(uri="sip:a@192.0.2.11", expires=30, instance_id="i1"),
            ],
        ),
    )

    assert wire.register_result(reply) == RegisterResult(
        outcome=RegisterOutcome.OK,
        bindings=(
            Contact("sip:a@192.0.2.10", 599, 500),
            Contact("sip:a@192.0.2.11", 30, 1000, "i1"),
        ),
    )


def test_every_register_outcome_is_understood_and_an_unknown_one_refused() -> None:
    outcomes = {
        sidecar_pb2.REGISTER_OUTCOME_OK: RegisterOutcome.OK,
        sidecar_pb2.REGISTER_OUTCOME_UNAUTHORIZED: RegisterOutcome.UNAUTHORIZED,
        sidecar_pb2.REGISTER_OUTCOME_FORBIDDEN: RegisterOutcome.FORBIDDEN,
        sidecar_pb2.REGISTER_OUTCOME_INTERVAL_TOO_BRIEF: RegisterOutcome.INTERVAL_TOO_BRIEF,
        sidecar_pb2.REGISTER_OUTCOME_TOO_MANY_BINDINGS: RegisterOutcome.TOO_MANY_BINDINGS,
        sidecar_pb2.REGISTER_OUTCOME_OUT_OF_ORDER: RegisterOutcome.OUT_OF_ORDER,
        sidecar_pb2.REGISTER_OUTCOME_UNSPECIFIED: RegisterOutcome.FORBIDDEN,
        99: RegisterOutcome.FORBIDDEN,
    }

    read = {
        sent: wire.register_result(
            sidecar_pb2.RegisterReply(response=sidecar_pb2.RegisterResponse(outcome=sent))  # type: ignore[arg-type]
        ).outcome
        for sent in outcomes
    }

    assert read == outcomes


# -- calls ----------------------------------------------------------------------------------------


def test_an_invite_carries_its_origin_credentials_and_offer() -> None:
    call = InviteCall(
        origin=ORIGIN,
        credentials=CREDENTIALS,
        request_uri="sip:200@example.net",
        from_uri="sip:alice@example.net",
        from_display_name="Alice",
        to_uri="sip:200@example.net",
    )

    sent = wire.invite_call(call, InviteRpc(leg_id="LA", offer=MEDIA), 2000)

    assert sent == sidecar_pb2.CallStreamCall(
        timeout_ms=2000,
        invite=sidecar_pb2.InviteRequest(
            origin=ORIGIN_PB,
            credentials=_with_method(CREDENTIALS_PB, "INVITE"),
            leg_id="LA",
            request_uri="sip:200@example.net",
            from_uri="sip:alice@example.net",
            from_display_name="Alice",
            to_uri="sip:200@example.net",
            offer=MEDIA_PB,
        ),
    )


def test_a_trunk_invite_has_no_credentials() -> None:
    call = InviteCall(
        origin=ORIGIN,
        credentials=None,
        request_uri="sip:200@example.net",
        from_uri="sip:+4930@trunk",
        from_display_name="",
        to_uri="sip:200@example.net",
    )

    sent = wire.invite_call(call, InviteRpc(leg_id="LA", offer=MEDIA), 2000)

    assert not sent.invite.HasField("credentials")


def test_the_answer_to_an_invite_is_read_and_an_unknown_one_rejected() -> None:
    def result(**fields: object) -> InviteResult:
        return wire.invite_result(
            sidecar_pb2.CallStreamReply(invite=sidecar_pb2.InviteResponse(**fields))  # type: ignore[arg-type]
        )

    assert result(disposition=sidecar_pb2.INVITE_DISPOSITION_ROUTING, call_id="c1") == InviteResult(
        disposition=Disposition.ROUTING, call_id="c1"
    )
    assert result(
        disposition=sidecar_pb2.INVITE_DISPOSITION_REJECT, status=503, reason="Full", retry_after=5
    ) == InviteResult(disposition=Disposition.REJECT, status=503, reason="Full", retry_after=5)
    assert result(
        disposition=sidecar_pb2.INVITE_DISPOSITION_FEEDBACK_TONE,
        tone=sidecar_pb2.FEEDBACK_TONE_ERROR,
    ) == InviteResult(disposition=Disposition.FEEDBACK_TONE, tone=Tone.ERROR)
    assert result(disposition=sidecar_pb2.INVITE_DISPOSITION_UNAUTHORIZED, status=407) == (
        InviteResult(disposition=Disposition.UNAUTHORIZED, status=407)
    )
    assert result() == InviteResult(disposition=Disposition.REJECT, status=500)


def test_cancel_bye_and_report_are_sent_with_every_field() -> None:
    stats = (
        StreamStats(
            direction="rx", packets=250, bytes=40000, lost=2, jitter_ms=1.5, mos=4.3, codec="PCMA"
        ),
        StreamStats(direction="tx", packets=249, bytes=39840, codec="PCMA"),
    )
    stats_pb = [
        sidecar_pb2.StreamStats(
            direction="rx", packets=250, bytes=40000, lost=2, jitter_ms=1.5, mos=4.3, codec="PCMA"
        ),
        sidecar_pb2.StreamStats(direction="tx", packets=249, bytes=39840, codec="PCMA"),
    ]
    report = ReportLeg(
        call_id="c1",
        leg_id="LB",
        state=LegState.EARLY_MEDIA,
        status=183,
        reason="Session Progress",
        media=MEDIA,
        dtmf_digits="1#",
        direction=Direction.INACTIVE,
    )

    assert wire.cancel_call(ORIGIN, CancelRpc(leg_id="LA"), 500) == sidecar_pb2.CallStreamCall(
        timeout_ms=500, cancel=sidecar_pb2.CancelRequest(origin=ORIGIN_PB, leg_id="LA")
    )
    assert wire.bye_call(
        ORIGIN, ByeRpc(leg_id="LA", reason="media timeout"), stats, 500
    ) == sidecar_pb2.CallStreamCall(
        timeout_ms=500,
        bye=sidecar_pb2.ByeRequest(
            origin=ORIGIN_PB, leg_id="LA", reason="media timeout", stats=stats_pb
        ),
    )
    assert wire.report_call("vlan10", report, stats, 500) == sidecar_pb2.CallStreamCall(
        timeout_ms=500,
        report_leg=sidecar_pb2.ReportLegRequest(
            sidecar="vlan10",
            call_id="c1",
            leg_id="LB",
            state=sidecar_pb2.LEG_STATE_EARLY_MEDIA,
            status=183,
            reason="Session Progress",
            media=MEDIA_PB,
            dtmf_digits="1#",
            stats=stats_pb,
            direction=common_pb2.MEDIA_DIRECTION_INACTIVE,
        ),
    )


def test_a_report_without_state_media_or_direction_leaves_them_unset() -> None:
    sent = wire.report_call("vlan10", ReportLeg(call_id="c1", leg_id="LB"), (), 500).report_leg

    assert sent.state == sidecar_pb2.LEG_STATE_UNSPECIFIED
    assert sent.direction == common_pb2.MEDIA_DIRECTION_UNSPECIFIED
    assert not sent.HasField("media")
