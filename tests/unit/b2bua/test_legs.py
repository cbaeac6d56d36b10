"""The caller's and the callee's leg: exact SIP messages and action lists for each flow."""

from __future__ import annotations

import dataclasses
import itertools

from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.sip.message import SipRequest, SipResponse, make_response, parse_message
from sip2uc_core.sip.transaction import TransactionId
from sip2uc_media.b2bua.actions import (
    Action,
    ByeRpc,
    CancelRpc,
    CancelTimer,
    Challenge,
    InviteRpc,
    LegFinished,
    LegState,
    LegTimer,
    PlayTone,
    RelayBridge,
    RelayRelease,
    RelayUpdate,
    ReportLeg,
    SendAck,
    SendRequest,
    SendResponse,
    StartTimer,
    Tone,
)
from sip2uc_media.b2bua.legs import (
    CreateLeg,
    Disposition,
    InboundLeg,
    InboundState,
    InviteResult,
    LegConfig,
    OutboundLeg,
    OutboundState,
)
from sip2uc_media.b2bua.offer_answer import CodecSpec, MediaSpec
from sip2uc_media.rtp.relay import Direction, LegMedia

PHONE = Endpoint(Transport.UDP, host="192.0.2.10", port=5060)
CALLEE = Endpoint(Transport.UDP, host="192.0.2.20", port=5070)
INVITE_TXN = TransactionId(1)
RELEASE_LA: list[Action] = [
    RelayRelease(relay_legs=("LA", "LA/peer")),
    CancelTimer(leg_id="LA", timer=LegTimer.SUCCESS_RETRANSMIT),
    LegFinished(leg_id="LA"),
]
RELEASE_LB: list[Action] = [
    RelayRelease(relay_legs=("LB", "LB/peer")),
    CancelTimer(leg_id="LB", timer=LegTimer.SUCCESS_RETRANSMIT),
    LegFinished(leg_id="LB"),
]
EVENTS = CodecSpec("telephone-event", 101, 8000, "0-16")
FAR_RELAY = MediaSpec(
    host="198.51.100.9", port=40000, codecs=(CodecSpec("PCMU", 0), CodecSpec("PCMA", 8), EVENTS)
)


def config() -> LegConfig:
    counter = itertools.count(1)
    return LegConfig(
        sip_host="198.51.100.1",
        sip_port=5060,
        relay_host="198.51.100.1",
        random_bytes=lambda n: bytes([next(counter)]) * n,
    )


def sdp(formats: str = "8 0 101", direction: str = "sendrecv", port: int = 4000) -> str:
    return (
        "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {formats}\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na={direction}\r\n"
    )


def request(text: str) -> SipRequest:
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


def handset_invite(body: str | None = None) -> SipRequest:
    body = sdp() if body is None else body
    return request(
        "INVITE sip:200@198.51.100.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa1\r\n"
        "Max-Forwards: 70\r\n"
        "From: Alice <sip:100@example.com>;tag=al1\r\n"
        "To: <sip:200@example.com>\r\n"
        "Call-ID: c1@192.0.2.10\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:100@192.0.2.10:5060>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    )


def in_dialog(
    method: str, seq: int, *, to_tag: str, body: str = "", branch: str = "b2"
) -> SipRequest:
    extra = "Content-Type: application/sdp\r\n" if body else ""
    return request(
        f"{method} sip:198.51.100.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: Alice <sip:100@example.com>;tag=al1\r\n"
        f"To: <sip:200@example.com>;tag={to_tag}\r\n"
        "Call-ID: c1@192.0.2.10\r\n"
        f"CSeq: {seq} {method}\r\n"
        f"{extra}Content-Length: {len(body)}\r\n\r\n{body}"
    )


def responses(actions: list[Action]) -> list[tuple[int, bytes]]:
    return [(a.response.status, a.response.body) for a in actions if isinstance(a, SendResponse)]


def requests_sent(actions: list[Action]) -> list[SipRequest]:
    return [a.request for a in actions if isinstance(a, (SendRequest, SendAck))]


# --- the caller's leg -------------------------------------------------------------------------


def inbound(invite: SipRequest | None = None) -> InboundLeg:
    return InboundLeg(
        "LA",
        invite=invite or handset_invite(),
        txn_id=INVITE_TXN,
        source=PHONE,
        relay_port=30000,
        peer_port=30002,
        config=config(),
    )


def routed(invite: SipRequest | None = None) -> InboundLeg:
    leg = inbound(invite)
    leg.start(0.0)
    leg.on_invite_result(InviteResult(disposition=Disposition.ROUTING, call_id="call-1"), 0.1)
    return leg


def answered(now: float = 1.0) -> InboundLeg:
    leg = routed()
    leg.on_answer_command(200, None, "LB", now)
    return leg


def confirmed() -> InboundLeg:
    leg = answered()
    leg.on_request(in_dialog("ACK", 1, to_tag=leg.to_tag), None, 1.1)
    return leg


def test_handset_invite_gets_100_relay_media_and_an_invite_rpc_with_the_peer_port() -> None:
    leg = inbound()

    actions = leg.start(0.0)

    assert [type(a) for a in actions] == [SendResponse, RelayUpdate, InviteRpc, StartTimer]
    assert responses(actions) == [(100, b"")]
    assert actions[1] == RelayUpdate(
        relay_leg="LA",
        media=LegMedia(
            remote_rtp=("192.0.2.10", 4000),
            audio_pt=8,
            telephone_event_pt=101,
            expected_ip="192.0.2.10",
        ),
    )
    assert actions[2] == InviteRpc(
        leg_id="LA",
        offer=MediaSpec(
            host="198.51.100.1",
            port=30002,
            codecs=(CodecSpec("PCMA", 8), CodecSpec("PCMU", 0), EVENTS),
        ),
    )


def test_handset_offer_without_g711_is_answered_488_and_the_ports_freed() -> None:
    leg = inbound(handset_invite(sdp("18")))

    actions = leg.start(0.0)

    assert responses(actions) == [(488, b"")]
    assert actions[1:] == [RelayRelease(relay_legs=("LA", "LA/peer")), LegFinished(leg_id="LA")]
    assert leg.state is InboundState.TERMINATED


def test_ringing_is_relayed_with_our_to_tag_and_contact() -> None:
    leg = routed()

    actions = leg.on_answer_command(180, None, "", 0.5)

    assert actions[0].response.serialize() == (  # type: ignore[union-attr]
        b"SIP/2.0 180 Ringing\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa1\r\n"
        b"From: Alice <sip:100@example.com>;tag=al1\r\n"
        b"To: <sip:200@example.com>;tag=020202020202\r\n"
        b"Call-ID: c1@192.0.2.10\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Contact: <sip:198.51.100.1:5060>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert leg.state is InboundState.EARLY


def test_answer_sends_200_with_our_relay_answer_and_arms_the_2xx_timer() -> None:
    leg = routed()

    actions = leg.on_answer_command(200, None, "LB", 1.0)

    assert actions[0] == RelayBridge(session_id="LB+LA", a="LB", b="LA")
    status, body = responses(actions)[0]
    assert status == 200
    assert body == (
        b"v=0\r\no=sip2uc 16843009 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\n"
        b"t=0 0\r\nm=audio 30000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    )
    assert actions[-1] == StartTimer(leg_id="LA", timer=LegTimer.SUCCESS_RETRANSMIT, at=1.5)
    assert leg.state is InboundState.ANSWERED


def test_answer_from_another_sidecar_points_the_peer_port_there_and_bridges() -> None:
    leg = routed()

    actions = leg.on_answer_command(200, FAR_RELAY, "", 1.0)

    assert actions[:2] == [
        RelayUpdate(
            relay_leg="LA/peer",
            media=LegMedia(remote_rtp=("198.51.100.9", 40000), audio_pt=0, telephone_event_pt=101),
        ),
        RelayBridge(session_id="LA", a="LA", b="LA/peer"),
    ]


def test_a_local_fork_rang_but_the_answer_from_another_sidecar_moves_the_bridge_there() -> None:
    leg = routed()
    leg.on_answer_command(180, None, "LB", 0.5)  # a fork on this sidecar rings

    actions = leg.on_answer_command(200, FAR_RELAY, "", 1.0)  # a fork elsewhere answers

    assert actions[:2] == [
        RelayUpdate(
            relay_leg="LA/peer",
            media=LegMedia(remote_rtp=("198.51.100.9", 40000), audio_pt=0, telephone_event_pt=101),
        ),
        RelayBridge(session_id="LA", a="LA", b="LA/peer"),
    ]


def test_early_media_from_another_sidecar_then_a_local_answer_bridges_the_local_fork() -> None:
    leg = routed()
    leg.on_answer_command(183, FAR_RELAY, "", 0.5)

    actions = leg.on_answer_command(200, None, "LC", 1.0)

    assert actions[0] == RelayBridge(session_id="LC+LA", a="LC", b="LA")


def test_the_same_answer_twice_bridges_once() -> None:
    leg = routed()
    first = leg.on_answer_command(183, FAR_RELAY, "", 0.5)

    again = leg.on_answer_command(200, FAR_RELAY, "", 1.0)

    assert RelayBridge(session_id="LA", a="LA", b="LA/peer") in first
    assert not any(isinstance(a, RelayBridge) for a in again)


def test_2xx_is_retransmitted_until_the_ack() -> None:
    leg = answered(now=1.0)
    ok = responses(leg.on_timer(LegTimer.SUCCESS_RETRANSMIT, 1.5))

    second = leg.on_timer(LegTimer.SUCCESS_RETRANSMIT, 2.5)
    ack = leg.on_request(in_dialog("ACK", 1, to_tag=leg.to_tag), None, 2.6)

    assert [status for status, _ in ok] == [200]
    assert second[-1] == StartTimer(leg_id="LA", timer=LegTimer.SUCCESS_RETRANSMIT, at=4.5)
    assert ack == [CancelTimer(leg_id="LA", timer=LegTimer.SUCCESS_RETRANSMIT)]
    assert leg.state is InboundState.CONFIRMED
    assert leg.on_timer(LegTimer.SUCCESS_RETRANSMIT, 4.5) == []


def test_no_ack_within_64_t1_ends_the_call_with_bye() -> None:
    leg = answered(now=1.0)
    actions: list[Action] = []
    for at in (1.5, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5, 33.0):
        actions = leg.on_timer(LegTimer.SUCCESS_RETRANSMIT, at)

    bye = requests_sent(actions)

    assert [r.method for r in bye] == ["BYE"]
    assert str(bye[0].uri) == "sip:100@192.0.2.10:5060"
    assert ByeRpc(leg_id="LA", reason="no ACK") in actions
    assert leg.state is InboundState.TERMINATED


def test_cancel_while_ringing_answers_200_and_487_and_tells_the_control_plane() -> None:
    leg = routed()
    leg.on_answer_command(180, None, "", 0.5)
    cancel = request(
        bytes(handset_invite().serialize())
        .decode()
        .replace("INVITE sip", "CANCEL sip", 1)
        .replace("1 INVITE", "1 CANCEL")
    )

    actions = leg.on_cancel(cancel, TransactionId(2), 1.0)

    assert [(a.txn_id, a.response.status) for a in actions if isinstance(a, SendResponse)] == [
        (TransactionId(2), 200),
        (INVITE_TXN, 487),
    ]
    assert actions[2:] == [CancelRpc(leg_id="LA"), *RELEASE_LA]


def test_cancel_before_the_routing_decision_tells_the_control_plane_after_it() -> None:
    leg = inbound()
    leg.start(0.0)
    cancel = request(
        handset_invite()
        .serialize()
        .decode()
        .replace("INVITE sip", "CANCEL sip", 1)
        .replace("1 INVITE", "1 CANCEL")
    )

    first = leg.on_cancel(cancel, TransactionId(2), 0.1)
    later = leg.on_invite_result(InviteResult(disposition=Disposition.ROUTING, call_id="c"), 0.2)

    assert [a.response.status for a in first if isinstance(a, SendResponse)] == [200, 487]
    assert later == [CancelRpc(leg_id="LA"), *RELEASE_LA]


def test_reject_sends_the_status_with_retry_after() -> None:
    leg = inbound()
    leg.start(0.0)

    actions = leg.on_invite_result(
        InviteResult(disposition=Disposition.REJECT, status=503, retry_after=30), 0.1
    )

    assert isinstance(actions[0], SendResponse)
    assert actions[0].response.status == 503
    assert actions[0].response.headers.get("Retry-After") == "30"
    assert actions[1:] == RELEASE_LA


def test_unauthorized_challenges_again() -> None:
    invite = handset_invite()
    leg = inbound(invite)
    leg.start(0.0)

    actions = leg.on_invite_result(InviteResult(disposition=Disposition.UNAUTHORIZED), 0.1)

    assert actions[0] == Challenge(txn_id=INVITE_TXN, request=invite)


def test_feedback_tone_answers_plays_the_tone_and_byes_after_the_ack() -> None:
    leg = inbound()
    leg.start(0.0)

    answer = leg.on_invite_result(
        InviteResult(disposition=Disposition.FEEDBACK_TONE, call_id="", tone=Tone.ERROR), 0.1
    )
    tone_done = leg.on_timer(LegTimer.TONE_END, 1.1)
    ack = leg.on_request(in_dialog("ACK", 1, to_tag=leg.to_tag), None, 1.2)

    assert [s for s, _ in responses(answer)] == [200]
    assert PlayTone(relay_leg="LA", tone=Tone.ERROR, codec="PCMA", payload_type=8) in answer
    assert StartTimer(leg_id="LA", timer=LegTimer.TONE_END, at=1.1) in answer
    assert tone_done == []  # §15: no BYE before the ACK
    assert [r.method for r in requests_sent(ack)] == ["BYE"]
    assert ByeRpc(leg_id="LA", reason="feedback tone") in ack


def test_bye_from_the_handset_is_answered_and_reported() -> None:
    leg = confirmed()

    actions = leg.on_request(in_dialog("BYE", 2, to_tag=leg.to_tag), TransactionId(5), 3.0)

    assert responses(actions) == [(200, b"")]
    assert actions[1:] == [ByeRpc(leg_id="LA", reason="bye"), *RELEASE_LA]


def test_end_command_while_ringing_sends_the_final_status() -> None:
    leg = routed()

    actions = leg.on_end_command(486, "Busy Here", 0.5)

    assert responses(actions) == [(486, b"")]
    assert actions[1:] == RELEASE_LA


def test_an_end_command_that_overtakes_the_routing_answer_is_applied_once_routed() -> None:
    leg = inbound()
    leg.start(0.0)

    early = leg.on_end_command(486, "Busy Here", 0.1)
    routed_now = leg.on_invite_result(
        InviteResult(disposition=Disposition.ROUTING, call_id="call-1"), 0.2
    )

    assert early == []
    assert responses(routed_now) == [(486, b"")]
    assert routed_now[1:] == RELEASE_LA
    assert leg.state is InboundState.TERMINATED


def test_ringing_and_answer_that_overtake_the_routing_answer_are_applied_in_order() -> None:
    leg = inbound()
    leg.start(0.0)

    early = leg.on_answer_command(180, None, "", 0.1) + leg.on_answer_command(200, None, "LB", 0.1)
    routed_now = leg.on_invite_result(
        InviteResult(disposition=Disposition.ROUTING, call_id="call-1"), 0.2
    )

    assert early == []
    assert [status for status, _body in responses(routed_now)] == [180, 200]
    assert RelayBridge(session_id="LB+LA", a="LB", b="LA") in routed_now
    assert leg.state is InboundState.ANSWERED


def test_commands_that_overtook_a_rejection_are_dropped() -> None:
    leg = inbound()
    leg.start(0.0)
    leg.on_end_command(486, "Busy Here", 0.1)

    actions = leg.on_invite_result(InviteResult(disposition=Disposition.REJECT, status=404), 0.2)

    assert responses(actions) == [(404, b"")]


def test_end_command_after_answer_sends_bye_without_a_bye_rpc() -> None:
    leg = confirmed()

    actions = leg.on_end_command(0, "", 3.0)

    assert [r.method for r in requests_sent(actions)] == ["BYE"]
    assert not any(isinstance(a, ByeRpc) for a in actions)


def test_hold_reinvite_is_answered_recvonly_and_reported() -> None:
    leg = confirmed()
    hold = in_dialog("INVITE", 2, to_tag=leg.to_tag, body=sdp(direction="sendonly"))

    actions = leg.on_request(hold, TransactionId(6), 5.0)

    assert actions[0] == RelayUpdate(
        relay_leg="LA",
        media=LegMedia(
            remote_rtp=("192.0.2.10", 4000),
            audio_pt=8,
            telephone_event_pt=101,
            direction=Direction.SENDONLY,
            expected_ip="192.0.2.10",
        ),
    )
    assert actions[1] == ReportLeg(call_id="call-1", leg_id="LA", direction=Direction.SENDONLY)
    status, body = responses(actions)[0]
    assert status == 200
    assert b"o=sip2uc 16843009 2 IN IP4" in body
    assert body.endswith(b"a=recvonly\r\n")


def test_reinvite_without_g711_is_488_and_keeps_the_session() -> None:
    leg = confirmed()
    bad = in_dialog("INVITE", 2, to_tag=leg.to_tag, body=sdp("18"))

    actions = leg.on_request(bad, TransactionId(6), 5.0)

    assert responses(actions) == [(488, b"")]
    assert leg.state is InboundState.CONFIRMED
    assert leg.session_version == 1


def test_update_media_on_hold_reinvites_the_handset_and_acks_the_answer() -> None:
    leg = confirmed()
    held = MediaSpec(
        host="198.51.100.1", port=30006, codecs=FAR_RELAY.codecs, direction=Direction.SENDONLY
    )

    offer = leg.on_update_media(held, "LB", 5.0)
    reinvite = requests_sent(offer)[0]
    ok = make_response(
        reinvite,
        200,
        to_tag="al1",
        headers=[("Contact", "<sip:100@192.0.2.10:5060>")],
        body=sdp(direction="sendonly").replace("sendonly", "sendonly").encode(),
    )
    done = leg.on_response(ok, 5.1)

    assert reinvite.method == "INVITE"
    assert reinvite.cseq.seq == 1
    assert reinvite.body.endswith(b"a=recvonly\r\n")
    assert [r.method for r in requests_sent(done)] == ["ACK"]
    assert requests_sent(done)[0].headers.get("CSeq") == "1 ACK"
    assert isinstance(done[1], RelayUpdate)


def test_reinvite_while_ours_is_pending_is_491() -> None:
    leg = confirmed()
    leg.on_update_media(
        MediaSpec(host="h", port=1, codecs=FAR_RELAY.codecs, direction=Direction.INACTIVE),
        "LB",
        5.0,
    )

    actions = leg.on_request(
        in_dialog("INVITE", 2, to_tag=leg.to_tag, body=sdp()), TransactionId(7), 5.1
    )

    assert responses(actions) == [(491, b"")]


def test_media_timeout_byes_the_handset_and_tells_the_control_plane() -> None:
    leg = confirmed()

    actions = leg.on_media_timeout(70.0)

    assert [r.method for r in requests_sent(actions)] == ["BYE"]
    assert ByeRpc(leg_id="LA", reason="media timeout") in actions


def test_dtmf_is_reported_on_the_call() -> None:
    leg = confirmed()

    assert leg.on_dtmf("5", 3.0) == [ReportLeg(call_id="call-1", leg_id="LA", dtmf_digits="5")]


def test_a_handset_invite_arms_the_ring_deadline_180_s_after_it() -> None:
    leg = inbound()

    actions = leg.start(5.0)

    assert actions[-1] == StartTimer(leg_id="LA", timer=LegTimer.RING_TIMEOUT, at=185.0)


def test_an_offerless_invite_arms_the_ring_deadline_too() -> None:
    leg = inbound(handset_invite(body=""))

    actions = leg.start(5.0)

    assert actions[-1] == StartTimer(leg_id="LA", timer=LegTimer.RING_TIMEOUT, at=185.0)


def test_the_ring_deadline_follows_the_configured_seconds() -> None:
    leg = InboundLeg(
        "LA",
        invite=handset_invite(),
        txn_id=INVITE_TXN,
        source=PHONE,
        relay_port=30000,
        peer_port=30002,
        config=dataclasses.replace(config(), inbound_ring_deadline=90.0),
    )

    actions = leg.start(1.0)

    assert actions[-1] == StartTimer(leg_id="LA", timer=LegTimer.RING_TIMEOUT, at=91.0)


def test_ring_deadline_while_ringing_sends_408_cancels_the_call_and_frees_the_ports() -> None:
    leg = routed()
    leg.on_answer_command(180, None, "", 0.5)

    actions = leg.on_timer(LegTimer.RING_TIMEOUT, 180.0)

    assert responses(actions) == [(408, b"")]
    assert actions[1:] == [CancelRpc(leg_id="LA"), *RELEASE_LA]
    assert leg.state is InboundState.TERMINATED


def test_ring_deadline_when_the_control_plane_never_rang_sends_408_and_frees_the_ports() -> None:
    leg = routed()

    actions = leg.on_timer(LegTimer.RING_TIMEOUT, 180.0)

    assert responses(actions) == [(408, b"")]
    assert actions[1:] == [CancelRpc(leg_id="LA"), *RELEASE_LA]


def test_ring_deadline_before_the_routing_decision_sends_408_and_releases_after_it() -> None:
    leg = inbound()
    leg.start(0.0)

    first = leg.on_timer(LegTimer.RING_TIMEOUT, 180.0)
    later = leg.on_invite_result(InviteResult(disposition=Disposition.ROUTING, call_id="c"), 181.0)

    assert responses(first) == [(408, b"")]
    assert len(first) == 1
    assert later == [CancelRpc(leg_id="LA"), *RELEASE_LA]
    assert leg.state is InboundState.TERMINATED


def test_commands_queued_before_a_ring_deadline_are_dropped() -> None:
    leg = inbound()
    leg.start(0.0)
    leg.on_answer_command(180, None, "LB", 1.0)

    leg.on_timer(LegTimer.RING_TIMEOUT, 180.0)
    later = leg.on_invite_result(InviteResult(disposition=Disposition.ROUTING, call_id="c"), 181.0)

    assert later == [CancelRpc(leg_id="LA"), *RELEASE_LA]


def test_answering_cancels_the_ring_deadline() -> None:
    leg = routed()

    actions = leg.on_answer_command(200, None, "LB", 1.0)

    assert CancelTimer(leg_id="LA", timer=LegTimer.RING_TIMEOUT) in actions


def test_a_ring_deadline_after_the_answer_changes_nothing() -> None:
    leg = confirmed()

    actions = leg.on_timer(LegTimer.RING_TIMEOUT, 180.0)

    assert actions == []
    assert leg.state is InboundState.CONFIRMED


def test_a_ring_deadline_after_a_cancel_changes_nothing() -> None:
    leg = inbound()
    leg.start(0.0)
    cancel = request(
        handset_invite()
        .serialize()
        .decode()
        .replace("INVITE sip", "CANCEL sip", 1)
        .replace("1 INVITE", "1 CANCEL")
    )
    leg.on_cancel(cancel, TransactionId(2), 0.1)

    assert leg.on_timer(LegTimer.RING_TIMEOUT, 180.0) == []
    assert leg.state is InboundState.CANCELLED


def test_a_presence_code_answer_cancels_the_ring_deadline() -> None:
    leg = inbound()
    leg.start(0.0)

    actions = leg.on_invite_result(InviteResult(disposition=Disposition.FEEDBACK_TONE), 0.1)

    assert CancelTimer(leg_id="LA", timer=LegTimer.RING_TIMEOUT) in actions


# --- the callee's leg ---------------------------------------------------------------------------


def create(**overrides: object) -> CreateLeg:
    fields: dict[str, object] = {
        "call_id": "call-1",
        "leg_id": "LB",
        "request_uri": "sip:200@192.0.2.20:5070",
        "destination": CALLEE,
        "from_uri": "sip:100@example.com",
        "from_display_name": "Alice",
        "to_uri": "sip:200@example.com",
        "peer_media": FAR_RELAY,
        "ring_timeout": 30.0,
    }
    fields.update(overrides)
    return CreateLeg(**fields)  # type: ignore[arg-type]


def outbound(**overrides: object) -> tuple[OutboundLeg, SipRequest]:
    leg = OutboundLeg(create(**overrides), relay_port=30010, peer_port=30012, config=config())
    actions = leg.start(0.0)
    return leg, requests_sent(actions)[0]


def reply(invite: SipRequest, status: int, body: str = "") -> SipResponse:
    return make_response(
        invite,
        status,
        to_tag="bob9",
        headers=[("Contact", "<sip:200@192.0.2.20:5070>")] if status < 300 else [],
        body=body.encode(),
    )


def test_create_leg_invites_the_handset_with_our_offer_and_arms_the_ring_timer() -> None:
    leg = OutboundLeg(create(), relay_port=30010, peer_port=30012, config=config())

    actions = leg.start(0.0)

    invite = requests_sent(actions)[0]
    assert invite.serialize().decode() == (
        "INVITE sip:200@192.0.2.20:5070 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK040404040404040404040404;rport\r\n"
        "Max-Forwards: 70\r\n"
        'From: "Alice" <sip:100@example.com>;tag=020202020202\r\n'
        "To: <sip:200@example.com>\r\n"
        "Call-ID: 030303030303030303030303@198.51.100.1\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:198.51.100.1:5060>\r\n"
        "Allow: REGISTER, OPTIONS, INVITE, ACK, CANCEL, BYE, INFO\r\n"
        "Content-Type: application/sdp\r\n"
        "Content-Length: 232\r\n\r\n"
        "v=0\r\no=sip2uc 16843009 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\n"
        "t=0 0\r\nm=audio 30010 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
        "a=ptime:20\r\na=sendrecv\r\n"
    )
    assert actions[0] == SendRequest(leg_id="LB", request=invite, destination=CALLEE)
    assert actions[1:] == [
        StartTimer(leg_id="LB", timer=LegTimer.RING_TIMEOUT, at=30.0),
        RelayUpdate(
            relay_leg="LB/peer",
            media=LegMedia(remote_rtp=("198.51.100.9", 40000), audio_pt=0, telephone_event_pt=101),
        ),
        RelayBridge(session_id="LB", a="LB", b="LB/peer"),
    ]


def test_a_leg_bridged_locally_leaves_the_bridge_to_the_callers_leg() -> None:
    leg = OutboundLeg(
        create(bridge_leg_id="LA", peer_media=None),
        relay_port=30010,
        peer_port=30012,
        config=config(),
    )

    actions = leg.start(0.0)

    assert [type(a) for a in actions] == [SendRequest, StartTimer]


def test_ringing_then_answer_is_acked_and_reported_with_the_handsets_law_first() -> None:
    leg, invite = outbound()

    ringing = leg.on_response(reply(invite, 180), 1.0)
    answer = leg.on_response(reply(invite, 200, sdp("8 101")), 2.0)

    assert ringing == [ReportLeg(call_id="call-1", leg_id="LB", state=LegState.RINGING, status=180)]
    ack = requests_sent(answer)[0]
    assert ack.method == "ACK"
    assert str(ack.uri) == "sip:200@192.0.2.20:5070"
    assert ack.headers.get("CSeq") == "1 ACK"
    assert ack.headers.get("To") == "<sip:200@example.com>;tag=bob9"
    assert ack.branch != invite.branch
    assert (
        RelayUpdate(
            relay_leg="LB",
            media=LegMedia(
                remote_rtp=("192.0.2.10", 4000),
                audio_pt=8,
                telephone_event_pt=101,
                expected_ip="192.0.2.20",  # the callee's SIP address, not its SDP's
            ),
        )
        in answer
    )
    # The stream between relays now carries the law this handset chose.
    assert (
        RelayUpdate(
            relay_leg="LB/peer",
            media=LegMedia(remote_rtp=("198.51.100.9", 40000), audio_pt=8, telephone_event_pt=101),
        )
        in answer
    )
    assert answer[-1] == ReportLeg(
        call_id="call-1",
        leg_id="LB",
        state=LegState.ANSWERED,
        status=200,
        media=MediaSpec(
            host="198.51.100.1",
            port=30012,
            codecs=(CodecSpec("PCMA", 8), CodecSpec("PCMU", 0), EVENTS),
        ),
    )
    assert leg.state is OutboundState.CONFIRMED


def test_a_retransmitted_2xx_gets_the_same_ack_again() -> None:
    leg, invite = outbound()
    first = requests_sent(leg.on_response(reply(invite, 200, sdp()), 1.0))[0]

    again = leg.on_response(reply(invite, 200, sdp()), 1.5)

    assert again == [SendAck(request=first, destination=CALLEE)]


def test_end_command_while_ringing_sends_cancel_with_the_invites_branch() -> None:
    leg, invite = outbound()
    leg.on_response(reply(invite, 180), 1.0)

    actions = leg.on_end_command(0, "", 2.0)
    terminated = leg.on_response(reply(invite, 487), 2.1)

    cancel = requests_sent(actions)[0]
    assert cancel.method == "CANCEL"
    assert cancel.branch == invite.branch
    assert cancel.headers.get("CSeq") == "1 CANCEL"
    assert StartTimer(leg_id="LB", timer=LegTimer.CANCEL_GIVE_UP, at=34.0) in actions
    assert not any(isinstance(a, ReportLeg) for a in terminated)
    assert terminated[-3:] == RELEASE_LB


def test_a_2xx_crossing_our_cancel_is_acked_then_byed() -> None:
    leg, invite = outbound()
    leg.on_response(reply(invite, 180), 1.0)
    leg.on_end_command(0, "", 2.0)

    actions = leg.on_response(reply(invite, 200, sdp()), 2.05)

    assert [r.method for r in requests_sent(actions)] == ["ACK", "BYE"]
    bye = requests_sent(actions)[1]
    assert bye.headers.get("CSeq") == "2 BYE"
    assert actions[-3:] == RELEASE_LB
    assert leg.state is OutboundState.TERMINATED


def test_cancel_waits_for_the_first_provisional_response() -> None:
    leg, invite = outbound()

    early = leg.on_end_command(0, "", 0.01)
    trying = leg.on_response(reply(invite, 100), 0.05)

    assert early == [CancelTimer(leg_id="LB", timer=LegTimer.RING_TIMEOUT)]
    assert [r.method for r in requests_sent(trying)] == ["CANCEL"]


def test_ring_timeout_after_ringing_cancels_and_fails_with_480() -> None:
    leg, invite = outbound()
    leg.on_response(reply(invite, 180), 1.0)

    actions = leg.on_timer(LegTimer.RING_TIMEOUT, 30.0)

    assert actions[0] == ReportLeg(
        call_id="call-1", leg_id="LB", state=LegState.FAILED, status=480, reason="ring timeout"
    )
    assert [r.method for r in requests_sent(actions)] == ["CANCEL"]


def test_ring_timeout_without_any_response_fails_with_408() -> None:
    leg, _ = outbound()

    actions = leg.on_timer(LegTimer.RING_TIMEOUT, 30.0)

    assert actions == [
        ReportLeg(
            call_id="call-1", leg_id="LB", state=LegState.FAILED, status=408, reason="ring timeout"
        )
    ]
    assert leg.state is OutboundState.CANCEL_PENDING


def test_busy_handset_fails_the_leg_with_its_status() -> None:
    leg, invite = outbound()

    actions = leg.on_response(reply(invite, 486), 1.0)

    assert (
        ReportLeg(
            call_id="call-1", leg_id="LB", state=LegState.FAILED, status=486, reason="Busy Here"
        )
        in actions
    )
    assert actions[-3:] == RELEASE_LB


def test_no_response_at_all_fails_the_leg_with_408() -> None:
    leg, _ = outbound()

    actions = leg.on_transaction_timeout("INVITE", 32.0)

    assert (
        ReportLeg(
            call_id="call-1", leg_id="LB", state=LegState.FAILED, status=408, reason="no response"
        )
        in actions
    )


def test_an_answer_without_a_common_codec_is_acked_byed_and_failed_488() -> None:
    leg, invite = outbound()

    actions = leg.on_response(reply(invite, 200, sdp("18")), 1.0)

    assert [r.method for r in requests_sent(actions)] == ["ACK", "BYE"]
    assert (
        ReportLeg(
            call_id="call-1",
            leg_id="LB",
            state=LegState.FAILED,
            status=488,
            reason="no common codec",
        )
        in actions
    )


def test_bye_from_the_called_handset_is_reported() -> None:
    leg, invite = outbound()
    leg.on_response(reply(invite, 200, sdp()), 1.0)
    bye = request(
        "BYE sip:198.51.100.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.20:5070;branch=z9hG4bKbye\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:200@example.com>;tag=bob9\r\n"
        f"To: <sip:100@example.com>;tag={leg.from_tag}\r\n"
        f"Call-ID: {leg.sip_call_id}\r\n"
        "CSeq: 7 BYE\r\nContent-Length: 0\r\n\r\n"
    )

    actions = leg.on_request(bye, TransactionId(9), 5.0)

    assert responses(actions) == [(200, b"")]
    assert actions[1:] == [ByeRpc(leg_id="LB", reason="bye"), *RELEASE_LB]


def test_a_refer_in_a_call_is_405_with_the_sidecars_methods_and_the_call_goes_on() -> None:
    leg = confirmed()

    actions = leg.on_request(in_dialog("REFER", 2, to_tag=leg.to_tag), TransactionId(8), 6.0)

    assert len(actions) == 1
    response = actions[0].response  # type: ignore[union-attr]
    assert response.status == 405
    assert response.headers.get("Allow") == "REGISTER, OPTIONS, INVITE, ACK, CANCEL, BYE, INFO"
    assert leg.state is InboundState.CONFIRMED


def test_a_method_nobody_knows_in_a_call_is_501() -> None:
    leg = confirmed()

    actions = leg.on_request(in_dialog("FROBNICATE", 2, to_tag=leg.to_tag), TransactionId(8), 6.0)

    assert responses(actions) == [(501, b"")]
    assert leg.state is InboundState.CONFIRMED


def test_in_dialog_options_advertises_the_same_methods_as_a_refusal() -> None:
    leg = confirmed()

    ok = leg.on_request(in_dialog("OPTIONS", 2, to_tag=leg.to_tag), TransactionId(8), 6.0)
    refused = leg.on_request(in_dialog("REFER", 3, to_tag=leg.to_tag), TransactionId(9), 6.1)

    allows = [a.response.headers.get("Allow") for a in ok + refused]  # type: ignore[union-attr]
    assert allows[0] == allows[1] is not None
