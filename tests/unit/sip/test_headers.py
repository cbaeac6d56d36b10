"""Header storage and the typed header views (RFC 3261 §7.3, §20; RFC 3581)."""

from __future__ import annotations

import pytest
from sip2uc_core.sip.errors import SipParseError
from sip2uc_core.sip.headers import (
    CSeq,
    Headers,
    NameAddr,
    Via,
    canonical_name,
    parse_auth_params,
    parse_contact,
    parse_cseq,
    parse_int_header,
    parse_name_addr,
    parse_name_addr_list,
    parse_params,
    parse_via,
    quote_string,
    split_header_values,
    unquote_string,
)
from sip2uc_core.sip.uri import AbsoluteUri, SipUri


def test_compact_and_odd_case_names_are_found_under_the_long_name() -> None:
    headers = Headers([("v", "SIP/2.0/UDP a"), ("VIA", "SIP/2.0/UDP b"), ("i", "x@y")])
    assert headers.get_all("Via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b"]
    assert headers.get("call-id") == "x@y"
    assert "CALL-ID" in headers
    assert canonical_name("m") == "Contact"
    assert canonical_name("X-Custom") == "X-Custom"


def test_iteration_keeps_order_and_names_as_written() -> None:
    headers = Headers([("t", "<sip:a@b>"), ("Via", "SIP/2.0/UDP h"), ("X-A", "1")])
    assert list(headers) == [("t", "<sip:a@b>"), ("Via", "SIP/2.0/UDP h"), ("X-A", "1")]
    assert len(headers) == 3


def test_list_headers_split_at_commas_outside_quotes_and_brackets() -> None:
    headers = Headers(
        [("Contact", '"Doe, John" <sip:j@h;x=a,b>;q=0.5, <sip:k@h>'), ("Allow", "INVITE, ACK,BYE")]
    )
    assert headers.get_all("Contact") == ['"Doe, John" <sip:j@h;x=a,b>;q=0.5', "<sip:k@h>"]
    assert headers.get_all("Allow") == ["INVITE", "ACK", "BYE"]


def test_authorization_and_date_are_never_split() -> None:
    credentials = 'Digest username="a", realm="r", nonce="n", uri="sip:x", response="0"'
    headers = Headers([("Authorization", credentials), ("Date", "Sat, 13 Nov 2010 23:29:00 GMT")])
    assert headers.get_all("Authorization") == [credentials]
    assert headers.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]


def test_split_drops_empty_elements_and_survives_unterminated_quotes() -> None:
    assert split_header_values(" a ,, b ,") == ["a", "b"]
    assert split_header_values('"open, quote') == ['"open, quote']


def test_set_replaces_first_in_place_and_drops_the_rest() -> None:
    headers = Headers([("A", "1"), ("Via", "x"), ("B", "2"), ("v", "y")])
    headers.set("Via", "z")
    assert list(headers) == [("A", "1"), ("Via", "z"), ("B", "2")]
    headers.set("C", "3")
    assert list(headers)[-1] == ("C", "3")


def test_prepend_puts_the_value_above_existing_lines_of_that_header() -> None:
    headers = Headers([("From", "f"), ("Via", "old")])
    headers.prepend("Via", "new")
    assert headers.get_all("Via") == ["new", "old"]
    assert list(headers) == [("From", "f"), ("Via", "new"), ("Via", "old")]


def test_remove_and_remove_first_value() -> None:
    headers = Headers([("Via", "a, b"), ("Route", "<sip:r>"), ("Via", "c")])
    assert headers.remove_first_value("Via") == "a"
    assert headers.get_all("Via") == ["b", "c"]
    assert headers.remove("via") == 2
    assert headers.get("Via") is None
    assert list(headers) == [("Route", "<sip:r>")]


def test_add_refuses_header_injection() -> None:
    with pytest.raises(ValueError):
        Headers().add("Subject", "x\r\nVia: evil")
    with pytest.raises(ValueError):
        Headers().add("Bad Name", "x")


def test_parsed_values_are_cached_until_the_headers_change() -> None:
    headers = Headers([("Expires", "10")])
    calls: list[int] = []

    def parse() -> int:
        calls.append(1)
        return int(headers.get("Expires") or "0")

    assert headers.parsed("expires", parse) == 10
    assert headers.parsed("expires", parse) == 10
    headers.set("Expires", "20")
    assert headers.parsed("expires", parse) == 20
    assert len(calls) == 2


def test_via_with_lws_rport_and_received() -> None:
    via = parse_via(
        "SIP / 2.0 / udp  192.0.2.1 : 5062 ; branch = z9hG4bK77 ;rport;received=10.0.0.1"
    )
    assert via == Via(
        transport="UDP",
        host="192.0.2.1",
        port=5062,
        params=(("branch", "z9hG4bK77"), ("rport", None), ("received", "10.0.0.1")),
    )
    assert (via.branch, via.rport, via.received) == ("z9hG4bK77", "", "10.0.0.1")


def test_via_rport_is_none_when_absent_and_int_when_filled() -> None:
    assert parse_via("SIP/2.0/TCP h;branch=z9hG4bK1").rport is None
    assert parse_via("SIP/2.0/TCP h;branch=z9hG4bK1;rport=5099").rport == 5099


def test_via_with_param_fills_rport_and_received_per_rfc3581() -> None:
    via = parse_via("SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bKx")
    filled = via.with_param("received", "198.51.100.7").with_param("rport", "40001")
    assert str(filled) == (
        "SIP/2.0/UDP 10.0.0.5:5060;rport=40001;branch=z9hG4bKx;received=198.51.100.7"
    )


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0 h",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP h;;",
        "SIP/2.0/UDP h;branch",
        "SIP/2.0/UDP h;rport=abc",
        "SIP/2.0/UDP h:70000",
        "SIP/2.0/UDP h x",
    ],
)
def test_malformed_via_raises_400_naming_via(text: str) -> None:
    with pytest.raises(SipParseError) as raised:
        parse_via(text)
    assert (raised.value.status, raised.value.field) == (400, "Via")


def test_name_addr_forms() -> None:
    assert parse_name_addr('"A \\"B\\"" <sip:a@h>;tag=1') == NameAddr(
        display_name='A "B"', uri=SipUri(user="a", host="h"), params=(("tag", "1"),)
    )
    assert parse_name_addr("Alice Smith <sip:a@h>").display_name == "Alice Smith"
    bare = parse_name_addr("sip:a@h;user=phone;tag=9")
    assert (bare.uri, bare.tag) == (SipUri(user="a", host="h"), "9")
    assert bare.get_param("user") == "phone"
    assert parse_name_addr("<tel:+123>").uri == AbsoluteUri("tel", "+123")


def test_name_addr_serialises_with_brackets_and_quoted_display_name() -> None:
    value = NameAddr(display_name='x"y', uri=SipUri(user="a", host="h"), params=(("tag", "t"),))
    assert str(value) == '"x\\"y" <sip:a@h>;tag=t'
    assert parse_name_addr(str(value)) == value


def test_contact_expires_and_q_are_typed_and_range_checked() -> None:
    contact = parse_name_addr("<sip:a@h>;expires=3600;q=0.7")
    assert (contact.expires, contact.q) == (3600, 0.7)
    with pytest.raises(SipParseError):
        _ = parse_name_addr("<sip:a@h>;q=1.5").q
    with pytest.raises(SipParseError):
        _ = parse_name_addr("<sip:a@h>;expires=4294967296").expires


def test_name_addr_list_and_contact_star() -> None:
    routes = parse_name_addr_list("<sip:p1;lr>, <sip:p2;lr>")
    assert [str(r.uri) for r in routes] == ["sip:p1;lr", "sip:p2;lr"]
    assert parse_contact(["*"]) == "*"
    with pytest.raises(SipParseError):
        parse_contact(["*", "<sip:a@h>"])


@pytest.mark.parametrize(
    "text",
    ['"unterminated <sip:a@h>', "<sip:a@h", "Bell, Alex <sip:a@h>", "sip:a@h?x=y", "< sip:a@h >"],
)
def test_malformed_name_addr_raises_400(text: str) -> None:
    with pytest.raises(SipParseError) as raised:
        parse_name_addr(text, field="To")
    assert (raised.value.status, raised.value.field) == (400, "To")


def test_params_keep_quoted_values_raw_and_unquote_on_request() -> None:
    params = parse_params(';+sip.instance="<urn:uuid:1;2>";reg-id=1')
    assert params == (("+sip.instance", '"<urn:uuid:1;2>"'), ("reg-id", "1"))
    assert unquote_string(params[0][1] or "") == "<urn:uuid:1;2>"
    assert quote_string('a\\b"') == '"a\\\\b\\""'


def test_cseq_accepts_leading_zeros_and_rejects_overflow() -> None:
    assert parse_cseq("0009 INVITE") == CSeq(9, "INVITE")
    assert parse_cseq("4294967295 ACK") == CSeq(4294967295, "ACK")
    for bad in ("4294967296 INVITE", "1", "x INVITE", "1 IN VITE", "-1 BYE"):
        with pytest.raises(SipParseError):
            parse_cseq(bad)


def test_integer_headers_have_their_rfc_ranges() -> None:
    assert parse_int_header("Max-Forwards", "0070") == 70
    assert parse_int_header("Expires", "4294967295") == 4294967295
    assert parse_int_header("l", "12") == 12
    for name, bad in (("Max-Forwards", "256"), ("Expires", "1e3"), ("Min-Expires", "-1")):
        with pytest.raises(SipParseError) as raised:
            parse_int_header(name, bad)
        assert raised.value.field == name


def test_auth_params_are_unquoted_and_lower_cased() -> None:
    scheme, params = parse_auth_params(
        'Digest realm="sip2uc", NONCE="a\\"b", algorithm=SHA-256,qop="auth,auth-int"'
    )
    assert scheme == "Digest"
    assert params == {
        "realm": "sip2uc",
        "nonce": 'a"b',
        "algorithm": "SHA-256",
        "qop": "auth,auth-int",
    }


def test_auth_params_reject_repeats_and_garbage() -> None:
    for bad in ('Digest realm="a", realm="b"', "Digest realm", 'Digest a="x" b="y"', ""):
        with pytest.raises(SipParseError):
            parse_auth_params(bad)
