"""Responses made from a request's raw lines: the parser's 4xx and the intake's 503."""

from __future__ import annotations

from sip2uc_core.sip.message import SipResponse, parse_message
from sip2uc_media.sidecar.raw_response import error_response, shed_response

REGISTER = (
    b"REGISTER sip:example.net SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1;rport\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK0\r\n"
    b"Max-Forwards: 70\r\n"
    b"f: <sip:alice@example.net>;tag=77\r\n"
    b"To: <sip:alice@example.net>\r\n"
    b"i: c1@192.0.2.10\r\n"
    b"CSeq: 3 REGISTER\r\n"
    b"Contact: <sip:alice@192.0.2.10:5062>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_a_shed_request_gets_a_503_with_tag_rport_and_retry_after() -> None:
    data = shed_response(
        REGISTER,
        503,
        to_tag=b"shed1",
        source_host="198.51.100.7",
        source_port=40000,
        headers=((b"Retry-After", b"9"),),
    )

    assert data == (
        b"SIP/2.0 503 Service Unavailable\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1;rport=40000;received=198.51.100.7\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK0\r\n"
        b"From: <sip:alice@example.net>;tag=77\r\n"
        b"To: <sip:alice@example.net>;tag=shed1\r\n"
        b"Call-ID: c1@192.0.2.10\r\n"
        b"CSeq: 3 REGISTER\r\n"
        b"Retry-After: 9\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    response = parse_message(data)
    assert isinstance(response, SipResponse)
    assert response.top_via.branch == "z9hG4bK1"


def test_a_to_tag_already_there_is_kept() -> None:
    data = REGISTER.replace(b"To: <sip:alice@example.net>", b"To: <sip:a@x>;tag=old")

    response = shed_response(data, 503, to_tag=b"new", source_host="h", source_port=1)

    assert response is not None
    assert b"To: <sip:a@x>;tag=old\r\n" in response


def test_a_via_without_rport_is_copied_as_it_came() -> None:
    data = REGISTER.replace(b";rport\r\n", b"\r\n", 1)

    response = shed_response(data, 503, to_tag=b"t", source_host="h", source_port=1)

    assert response is not None
    assert b"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1\r\n" in response


def test_an_ack_is_never_answered() -> None:
    data = REGISTER.replace(b"REGISTER sip", b"ACK sip", 1).replace(b"3 REGISTER", b"3 ACK")

    assert shed_response(data, 503, to_tag=b"t", source_host="h", source_port=1) is None
    assert error_response(data, 400) is None


def test_a_request_missing_a_copied_header_is_not_answered() -> None:
    data = REGISTER.replace(b"CSeq: 3 REGISTER\r\n", b"")

    assert error_response(data, 400) is None


def test_a_repeated_from_is_not_answered() -> None:
    data = REGISTER.replace(b"To:", b"From: <sip:x@y>;tag=2\r\nTo:", 1)

    assert error_response(data, 400) is None


def test_the_parsers_status_goes_out_with_the_request_lines_copied() -> None:
    assert error_response(REGISTER, 505) == (
        b"SIP/2.0 505 Version Not Supported\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1;rport\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK0\r\n"
        b"From: <sip:alice@example.net>;tag=77\r\n"
        b"To: <sip:alice@example.net>\r\n"
        b"Call-ID: c1@192.0.2.10\r\n"
        b"CSeq: 3 REGISTER\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
