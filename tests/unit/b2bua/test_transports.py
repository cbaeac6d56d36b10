"""Dialogs over TCP and TLS name the transport and port they run on in Via and Contact."""

from __future__ import annotations

import itertools
from dataclasses import replace

from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.sip.message import SipRequest, parse_message
from sip2uc_core.sip.transaction import TransactionId
from sip2uc_media.b2bua.actions import SendRequest, SendResponse
from sip2uc_media.b2bua.legs import (
    CreateLeg,
    Disposition,
    InboundLeg,
    InviteResult,
    LegConfig,
    OutboundLeg,
)


def config() -> LegConfig:
    counter = itertools.count(1)
    return LegConfig(
        sip_host="198.51.100.1",
        sip_port=5060,
        relay_host="198.51.100.1",
        random_bytes=lambda n: bytes([next(counter)]) * n,
        transport_ports=((Transport.UDP, 5060), (Transport.TCP, 5060), (Transport.TLS, 5061)),
    )


def invite_over(transport: Transport) -> SipRequest:
    body = (
        "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    message = parse_message(
        (
            "INVITE sip:200@198.51.100.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport.via_name} 192.0.2.10:5062;branch=z9hG4bKt1\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:100@example.com>;tag=al1\r\n"
            "To: <sip:200@example.com>\r\n"
            "Call-ID: t1@192.0.2.10\r\n"
            "CSeq: 1 INVITE\r\n"
            f"Contact: <sip:100@192.0.2.10:5062;transport={transport.value}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        ).encode()
    )
    assert isinstance(message, SipRequest)
    return message


def ringing_contact(transport: Transport) -> str | None:
    leg = InboundLeg(
        "LA",
        invite=invite_over(transport),
        txn_id=TransactionId(1),
        source=Endpoint(transport, host="192.0.2.10", port=5062, connection_id=7),
        relay_port=30000,
        peer_port=30002,
        config=config(),
    )
    leg.start(0.0)
    leg.on_invite_result(InviteResult(disposition=Disposition.ROUTING, call_id="c"), 0.1)
    actions = leg.on_answer_command(180, None, "", 0.2)
    response = next(a.response for a in actions if isinstance(a, SendResponse))
    return response.headers.get("Contact")


def test_a_udp_caller_gets_a_plain_contact() -> None:
    assert ringing_contact(Transport.UDP) == "<sip:198.51.100.1:5060>"


def test_a_tcp_caller_gets_a_contact_with_transport_tcp() -> None:
    assert ringing_contact(Transport.TCP) == "<sip:198.51.100.1:5060;transport=tcp>"


def test_a_tls_caller_gets_the_tls_port_and_transport_tls() -> None:
    assert ringing_contact(Transport.TLS) == "<sip:198.51.100.1:5061;transport=tls>"


def test_a_leg_to_a_tls_handset_sends_via_and_contact_for_tls() -> None:
    leg = OutboundLeg(
        CreateLeg(
            call_id="c",
            leg_id="LB",
            request_uri="sip:bob@192.0.2.20:5061;transport=tls",
            destination=Endpoint(Transport.TLS, host="192.0.2.20", port=5061),
            from_uri="sip:alice@example.com",
            to_uri="sip:bob@example.com",
        ),
        relay_port=30004,
        peer_port=30006,
        config=config(),
    )

    invite = next(a.request for a in leg.start(0.0) if isinstance(a, SendRequest))

    assert invite.headers.get("Via") == (
        "SIP/2.0/TLS 198.51.100.1:5061;branch=z9hG4bK040404040404040404040404;rport"
    )
    assert invite.headers.get("Contact") == "<sip:198.51.100.1:5061;transport=tls>"


def test_a_transport_without_its_own_port_uses_the_sip_port() -> None:
    only_tls = replace(config(), transport_ports=((Transport.TLS, 5061),))

    assert (only_tls.port_for(Transport.TCP), only_tls.port_for(Transport.TLS)) == (5060, 5061)
