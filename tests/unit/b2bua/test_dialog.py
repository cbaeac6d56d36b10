"""RFC 3261 §12 dialogs, the CANCEL of §9.1 and the 2xx retransmission of §13.3.1.4."""

from __future__ import annotations

from sip2uc_core.sip.headers import NameAddr
from sip2uc_core.sip.message import SipRequest, SipResponse, parse_message
from sip2uc_core.sip.uri import SipUri
from sip2uc_media.b2bua.dialog import Dialog, SuccessRetransmission, build_cancel

US = NameAddr(uri=SipUri(host="198.51.100.1", port=5060))
VIA = "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKnew;rport"


def invite(record_route: str = "") -> SipRequest:
    text = (
        "INVITE sip:200@198.51.100.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv\r\n"
        "Max-Forwards: 70\r\n"
        f"{record_route}"
        "From: Alice <sip:100@example.com>;tag=al1\r\n"
        "To: <sip:200@example.com>\r\n"
        "Call-ID: c1@192.0.2.10\r\n"
        "CSeq: 4 INVITE\r\n"
        "Contact: <sip:100@192.0.2.10:5062>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


def ok(record_route: str = "") -> SipResponse:
    text = (
        "SIP/2.0 200 OK\r\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv\r\n"
        f"{record_route}"
        "From: Alice <sip:100@example.com>;tag=al1\r\n"
        "To: <sip:200@example.com>;tag=bob9\r\n"
        "Call-ID: c1@192.0.2.10\r\n"
        "CSeq: 4 INVITE\r\n"
        "Contact: <sip:200@192.0.2.20:5060>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, SipResponse)
    return message


def test_uas_dialog_bye_targets_the_contact_with_swapped_tags() -> None:
    dialog = Dialog.as_uas(invite(), local_tag="us1", local_contact=US)

    bye = dialog.build_request("BYE", via=VIA)

    assert bye.serialize() == (
        b"BYE sip:100@192.0.2.10:5062 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKnew;rport\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:200@example.com>;tag=us1\r\n"
        b'To: "Alice" <sip:100@example.com>;tag=al1\r\n'
        b"Call-ID: c1@192.0.2.10\r\n"
        b"CSeq: 1 BYE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def test_uas_route_set_keeps_record_route_order() -> None:
    rr = "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    dialog = Dialog.as_uas(invite(rr), local_tag="us1", local_contact=US)

    bye = dialog.build_request("BYE", via=VIA)

    assert bye.headers.get_all("Route") == [
        "<sip:p1.example.com;lr>",
        "<sip:p2.example.com;lr>",
    ]


def test_uac_route_set_reverses_record_route_and_continues_the_cseq() -> None:
    rr = "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    dialog = Dialog.as_uac(invite(), ok(rr))

    reinvite = dialog.build_request("INVITE", via=VIA, body=b"v=0\r\n")

    assert str(reinvite.uri) == "sip:200@192.0.2.20:5060"
    assert reinvite.headers.get_all("Route") == [
        "<sip:p2.example.com;lr>",
        "<sip:p1.example.com;lr>",
    ]
    assert reinvite.headers.get("CSeq") == "5 INVITE"
    assert reinvite.headers.get("To") == "<sip:200@example.com>;tag=bob9"
    assert reinvite.headers.get("Contact") == "<sip:100@192.0.2.10:5062>"
    assert reinvite.headers.get("Content-Type") == "application/sdp"


def test_strict_router_becomes_the_request_uri_and_the_target_the_last_route() -> None:
    rr = "Record-Route: <sip:strict.example.com>\r\n"
    dialog = Dialog.as_uas(invite(rr), local_tag="us1", local_contact=US)

    bye = dialog.build_request("BYE", via=VIA)

    assert str(bye.uri) == "sip:strict.example.com"
    assert bye.headers.get_all("Route") == ["<sip:100@192.0.2.10:5062>"]


def test_ack_for_2xx_reuses_the_invites_cseq_number_with_its_own_branch() -> None:
    dialog = Dialog.as_uac(invite(), ok())

    ack = dialog.build_ack(4, via=VIA)

    assert ack.headers.get("CSeq") == "4 ACK"
    assert ack.branch == "z9hG4bKnew"
    assert dialog.local_seq == 4


def test_cancel_copies_the_invites_via_uri_and_cseq_number() -> None:
    cancel = build_cancel(invite())

    assert cancel.serialize() == (
        b"CANCEL sip:200@198.51.100.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: Alice <sip:100@example.com>;tag=al1\r\n"
        b"To: <sip:200@example.com>\r\n"
        b"Call-ID: c1@192.0.2.10\r\n"
        b"CSeq: 4 CANCEL\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def test_requests_match_on_call_id_and_both_tags() -> None:
    dialog = Dialog.as_uac(invite(), ok())
    incoming = dialog.build_request("BYE", via=VIA)
    # The handset's BYE has the tags the other way round.
    mirror = Dialog.as_uas(invite(), local_tag="bob9", local_contact=US)
    from_handset = mirror.build_request("BYE", via=VIA)

    assert dialog.matches(from_handset)
    assert not dialog.matches(incoming)


def test_a_request_with_an_old_cseq_is_out_of_order() -> None:
    dialog = Dialog.as_uas(invite(), local_tag="us1", local_contact=US)
    mirror = Dialog.as_uac(invite(), ok())
    mirror.local_seq = 3
    old = mirror.build_request("BYE", via=VIA)  # CSeq 4, same as the INVITE

    assert not dialog.accept_remote_cseq(old)
    assert dialog.accept_remote_cseq(mirror.build_request("BYE", via=VIA))


def test_2xx_is_resent_at_t1_doubling_to_t2_and_given_up_at_64_t1() -> None:
    retransmission = SuccessRetransmission(t1=0.5, t2=4.0)
    retransmission.start(10.0)
    due: list[tuple[float, str | None]] = []

    while (deadline := retransmission.next_deadline()) is not None:
        due.append((deadline, retransmission.poll(deadline)))

    assert due == [
        (10.5, "resend"),
        (11.5, "resend"),
        (13.5, "resend"),
        (17.5, "resend"),
        (21.5, "resend"),
        (25.5, "resend"),
        (29.5, "resend"),
        (33.5, "resend"),
        (37.5, "resend"),
        (41.5, "resend"),
        (42.0, "give up"),
    ]


def test_ack_stops_the_2xx_retransmission() -> None:
    retransmission = SuccessRetransmission(t1=0.5, t2=4.0)
    retransmission.start(0.0)

    retransmission.ack()

    assert retransmission.next_deadline() is None
    assert retransmission.poll(100.0) is None


def test_reliable_transport_waits_for_the_ack_without_resending() -> None:
    retransmission = SuccessRetransmission(t1=0.5, t2=4.0, reliable=True)
    retransmission.start(0.0)

    assert retransmission.next_deadline() == 32.0
    assert retransmission.poll(32.0) == "give up"
