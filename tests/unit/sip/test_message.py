"""Whole messages: parsing rules, serialisation and response building (RFC 3261 §7, §8.2.6)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sip2uc_core.sip.errors import SipParseError
from sip2uc_core.sip.headers import CSeq, Headers
from sip2uc_core.sip.message import (
    SipRequest,
    SipResponse,
    accepts_media_type,
    make_response,
    parse_message,
    validate_request,
)
from sip2uc_core.sip.uri import SipUri

REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKfirst\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@example.com>\r\n"
    b"From: Bob <sip:bob@example.com>;tag=456248\r\n"
    b"Call-ID: 843817637684230@998sdasdh09\r\n"
    b"CSeq: 1826 REGISTER\r\n"
    b"Contact: <sip:bob@192.0.2.10:5060>;expires=7200, <sip:bob@10.0.0.1>\r\n"
    b"Expires: 3600\r\n"
    b"Timestamp: 54\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def parse_request(data: bytes) -> SipRequest:
    msg = parse_message(data)
    assert isinstance(msg, SipRequest)
    return msg


def rejection(data: bytes, **kwargs: int) -> tuple[int, str | None]:
    with pytest.raises(SipParseError) as raised:
        parse_message(data, **kwargs)
    return raised.value.status, raised.value.field


def test_register_accessors() -> None:
    req = parse_request(REGISTER)
    assert req.method == "REGISTER"
    assert req.uri == SipUri(host="example.com")
    assert req.call_id == "843817637684230@998sdasdh09"
    assert req.cseq == CSeq(1826, "REGISTER")
    assert req.from_.tag == "456248"
    assert req.to.display_name == "Bob"
    assert [v.host for v in req.vias] == ["192.0.2.10", "10.0.0.1"]
    assert req.branch == "z9hG4bK776asdhds"
    assert req.top_via.rport == ""
    assert req.max_forwards == 70
    assert [(str(c.uri), c.expires) for c in req.contact] == [
        ("sip:bob@192.0.2.10:5060", 7200),
        ("sip:bob@10.0.0.1", None),
    ]
    assert req.expires == 3600
    assert not req.contact_is_star


def test_serialise_reproduces_a_canonical_message_byte_for_byte() -> None:
    assert bytes(parse_message(REGISTER)) == REGISTER


def test_serialise_always_states_the_real_content_length() -> None:
    req = parse_request(REGISTER)
    req.body = b"hello"
    assert bytes(req).endswith(b"Content-Length: 5\r\n\r\nhello")
    req.headers.remove("Content-Length")
    assert bytes(req).endswith(b"Content-Length: 5\r\n\r\nhello")


def test_folded_header_lines_are_unfolded() -> None:
    data = REGISTER.replace(b"Expires: 3600", b"Expires:\r\n 3600").replace(
        b"Max-Forwards: 70", b"Max-Forwards: 70\r\nSubject: a\r\n\tb"
    )
    req = parse_request(data)
    assert req.expires == 3600
    assert req.headers.get("Subject") == "a b"


def test_leading_crlfs_and_bare_lf_line_ends_are_tolerated() -> None:
    assert parse_request(b"\r\n\r\n" + REGISTER).call_id == "843817637684230@998sdasdh09"
    assert parse_request(REGISTER.replace(b"\r\n", b"\n")).cseq == CSeq(1826, "REGISTER")


def test_body_without_content_length_runs_to_end_of_datagram() -> None:
    data = REGISTER.replace(b"Content-Length: 0\r\n", b"") + b"v=0\r\n"
    assert parse_request(data).body == b"v=0\r\n"


def test_octets_after_the_announced_body_are_ignored() -> None:
    data = REGISTER.replace(b"Content-Length: 0", b"Content-Length: 3") + b"abcdef"
    assert parse_request(data).body == b"abc"


def test_oversized_message_is_413() -> None:
    assert rejection(REGISTER, max_size=len(REGISTER) - 1) == (413, "body")
    assert parse_message(REGISTER, max_size=len(REGISTER)).call_id


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ((b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia"), (505, "start-line")),
        ((b"SIP/2.0\r\nVia", b"HTTP/1.1\r\nVia"), (400, "start-line")),
        ((b"REGISTER sip:", b"REGISTER  sip:"), (400, "start-line")),
        ((b"sip:example.com", b"sip:exa mple.com"), (400, "start-line")),
        ((b"sip:example.com", b"<sip:example.com>"), (400, "uri")),
        ((b"Call-ID: 843817637684230@998sdasdh09\r\n", b""), (400, "Call-ID")),
        ((b"Call-ID: 843817637684230@998sdasdh09", b"Call-ID: "), (400, "Call-ID")),
        ((b"CSeq: 1826 REGISTER", b"CSeq: 1826 INVITE"), (400, "CSeq")),
        ((b"To: ", b"To: x\r\nTo: "), (400, "To")),
        ((b"Max-Forwards: 70", b"Max-Forwards: 256"), (400, "Max-Forwards")),
        ((b"Content-Length: 0", b"Content-Length: 1"), (400, "Content-Length")),
        ((b"Content-Length: 0", b"Content-Length: +0"), (400, "Content-Length")),
        ((b"Content-Length: 0", b"Content-Length: 0, 1"), (400, "Content-Length")),
        ((b"Expires: 3600\r\n", b"Expires 3600\r\n"), (400, None)),
        ((b"Expires: 3600\r\n", b"Expires\r\n"), (400, None)),
        ((b"\r\n\r\n", b"\r\n"), (400, None)),
    ],
)
def test_malformed_request_is_rejected_with_status_and_field(
    edit: tuple[bytes, bytes], expected: tuple[int, str | None]
) -> None:
    assert rejection(REGISTER.replace(*edit, 1)) == expected


def test_missing_max_forwards_is_tolerated_for_rfc2543_peers() -> None:
    assert parse_request(REGISTER.replace(b"Max-Forwards: 70\r\n", b"")).max_forwards is None


RESPONSE = (
    b"SIP/2.0 486 Busy Here\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKx\r\n"
    b"To: <sip:bob@example.com>;tag=a\r\n"
    b"From: <sip:alice@example.com>;tag=b\r\n"
    b"Call-ID: c\r\n"
    b"CSeq: 2 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_response_parses_and_round_trips() -> None:
    resp = parse_message(RESPONSE)
    assert isinstance(resp, SipResponse)
    assert (resp.status, resp.reason, resp.cseq) == (486, "Busy Here", CSeq(2, "INVITE"))
    assert bytes(resp) == RESPONSE


@pytest.mark.parametrize("status", [b"99", b"700", b"1000", b"2oo"])
def test_response_with_status_outside_100_to_699_is_dropped(status: bytes) -> None:
    assert rejection(RESPONSE.replace(b"486", status, 1)) == (400, "start-line")


def test_make_response_copies_the_rfc3261_8_2_6_headers_and_adds_the_to_tag() -> None:
    req = parse_request(REGISTER)
    resp = make_response(req, 200, to_tag="srv1", headers=[("Expires", "3600")])
    assert bytes(resp) == (
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKfirst\r\n"
        b"From: Bob <sip:bob@example.com>;tag=456248\r\n"
        b"To: Bob <sip:bob@example.com>;tag=srv1\r\n"
        b"Call-ID: 843817637684230@998sdasdh09\r\n"
        b"CSeq: 1826 REGISTER\r\n"
        b"Expires: 3600\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def test_make_response_keeps_an_existing_to_tag_and_copies_timestamp_into_100() -> None:
    req = parse_request(REGISTER.replace(b"To: Bob <sip:bob@example.com>", b"To: <sip:b@h>;tag=x"))
    resp = make_response(req, 100, to_tag="ignored")
    assert resp.reason == "Trying"
    assert resp.headers.get("To") == "<sip:b@h>;tag=x"
    assert resp.headers.get("Timestamp") == "54"
    assert make_response(req, 299).reason == "Unknown"
    assert make_response(req, 480, "Away").reason == "Away"


def test_validate_request_accepts_a_plain_register() -> None:
    assert validate_request(parse_request(REGISTER)) is None


def test_validate_request_checks_contact_and_expires_syntax() -> None:
    bad_contact = REGISTER.replace(b"expires=7200", b"expires=soon")
    error = validate_request(parse_request(bad_contact))
    assert error is not None and (error.status, error.field) == (400, "Expires")
    bad_expires = REGISTER.replace(b"Expires: 3600", b"Expires: never")
    error = validate_request(parse_request(bad_expires))
    assert error is not None and error.field == "Expires"


def test_validate_request_can_allow_tel_request_uris() -> None:
    req = parse_request(REGISTER.replace(b"REGISTER sip:example.com", b"REGISTER tel:+4930", 1))
    error = validate_request(req)
    assert error is not None and error.status == 416
    assert validate_request(req, uri_schemes=("sip", "sips", "tel")) is None


def test_accept_defaults_to_sdp_and_honours_wildcards() -> None:
    req = parse_request(REGISTER)
    assert accepts_media_type(req, "application/sdp")
    req.headers.add("Accept", "application/*;q=0.5, text/plain;q=0")
    assert accepts_media_type(req, "application/sdp")
    assert not accepts_media_type(req, "text/plain")


# -- property: whatever we build serialises into the same message -------------------------------

TOKEN = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
    min_size=1,
    max_size=12,
)
USER = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()&=+$,;?/%", min_size=1, max_size=12
)
PARAM = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()[]/:&+$", min_size=1, max_size=12
)
HOST = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=20)
VALUE = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=40
).map(str.strip)


@st.composite
def requests(draw: st.DrawFn) -> SipRequest:
    method = draw(TOKEN)
    uri = SipUri(
        user=draw(st.none() | USER),
        host=draw(HOST),
        port=draw(st.none() | st.integers(0, 65535)),
        params=tuple(draw(st.lists(st.tuples(PARAM, st.none() | PARAM), max_size=3))),
    )
    body = draw(st.binary(max_size=64))
    headers = Headers(
        [
            (
                "Via",
                f"SIP/2.0/{draw(st.sampled_from(['UDP', 'TCP', 'TLS']))} {draw(HOST)};branch=z9hG4bK{draw(TOKEN)}",
            ),
            ("From", f"<sip:{draw(USER)}@{draw(HOST)}>;tag={draw(TOKEN)}"),
            ("To", f'"{draw(TOKEN)}" <sip:{draw(USER)}@{draw(HOST)}>'),
            ("Call-ID", draw(TOKEN)),
            ("CSeq", f"{draw(st.integers(0, 2**32 - 1))} {method}"),
            ("Max-Forwards", str(draw(st.integers(0, 255)))),
        ]
    )
    for name, value in draw(st.lists(st.tuples(TOKEN.map(lambda t: "X-" + t), VALUE), max_size=4)):
        headers.add(name, value)
    headers.add("Content-Length", str(len(body)))
    return SipRequest(method, uri, headers, body)


@settings(max_examples=300, deadline=None)
@given(requests())
def test_generated_requests_serialise_and_parse_back_equal(req: SipRequest) -> None:
    assert parse_message(bytes(req)) == req


@settings(max_examples=300, deadline=None)
@given(requests(), st.integers(100, 699), VALUE)
def test_generated_responses_serialise_and_parse_back_equal(
    req: SipRequest, status: int, reason: str
) -> None:
    resp = make_response(req, status, reason, to_tag="t1", body=req.body)
    resp.headers.add("Content-Length", str(len(resp.body)))
    assert parse_message(bytes(resp)) == resp
