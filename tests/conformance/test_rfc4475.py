"""RFC 4475 torture messages: what the message layer makes of each one.

Every message in ``tests/data/conformance/rfc4475`` appears in exactly one table below:

* ``VALID``: parses, and the fields the RFC section is about have the stated values;
* ``REJECTED``: :func:`parse_message` raises with the status the RFC recommends (for responses the
  status is irrelevant: a malformed response is dropped, RFC 3261 §18.1.2);
* ``REFUSED``: parses, but :func:`validate_request` returns the error a UAS answers with.

Some valid messages call for an answer that a later layer gives; their check shows the accessor
that layer decides on (see the comments in ``VALID``).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
from sip2uc_core.sip.errors import SipParseError
from sip2uc_core.sip.headers import CSeq, parse_auth_params
from sip2uc_core.sip.message import (
    SipRequest,
    SipResponse,
    accepts_media_type,
    parse_message,
    unsupported_requirements,
    validate_request,
    validate_response,
)
from sip2uc_core.sip.uri import AbsoluteUri, SipUri, parse_uri, uri_equal

DATA = Path(__file__).resolve().parents[1] / "data" / "conformance" / "rfc4475"


def load(name: str) -> bytes:
    return (DATA / f"{name}.dat").read_bytes()


def case_rows() -> list[dict[str, str]]:
    with (DATA / "cases.tsv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def request(name: str) -> SipRequest:
    msg = parse_message(load(name))
    assert isinstance(msg, SipRequest)
    return msg


def response(name: str) -> SipResponse:
    msg = parse_message(load(name))
    assert isinstance(msg, SipResponse)
    return msg


def sip(uri: object) -> SipUri:
    assert isinstance(uri, SipUri)
    return uri


def body_of(name: str) -> bytes:
    data = load(name)
    return data[data.index(b"\r\n\r\n") + 4 :]


# -- valid messages -------------------------------------------------------------------------------


def check_wsinv() -> None:
    req = request("wsinv")
    assert req.method == "INVITE"
    assert sip(req.uri).params == (("unknownparam", None),)
    assert sip(req.to.uri).user == "vivekg"
    assert req.to.tag == "1918181833n"
    assert req.from_.display_name == 'J Rosenberg \\"'
    assert req.from_.tag == "98asjd8"
    assert req.max_forwards == 68
    assert req.cseq == CSeq(9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in req.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert req.headers.get("Subject") == ""
    assert req.headers.get("newfangledheader") == "newfangled value continued newfangled value"
    assert req.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    [contact] = req.contact
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    assert contact.q == 0.33
    [route] = req.routes
    assert sip(route.uri).lr
    assert len(req.body) == 150


def check_intmeth() -> None:
    req = request("intmeth")
    assert req.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = sip(req.uri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert req.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert req.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert req.from_.get_param("fromParam''~+*_!.-%") == '"работающий"'
    assert req.from_.tag == "_token~1'+`*%!-."
    assert req.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert req.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    assert req.cseq == CSeq(139122385, "!interesting-Method0123456789_*+`.%indeed'~")


def check_esc01() -> None:
    req = request("esc01")
    assert sip(req.uri).user == "sips%3Auser%40example.com"
    assert sip(req.uri).unescaped_user == "sips:user@example.com"
    assert sip(req.to.uri).unescaped_user == "user"
    assert uri_equal(req.to.uri, parse_uri("sip:user@example.com"))
    assert sip(req.from_.uri).unescaped_user == "I have spaces"
    [contact] = req.contact
    assert sip(contact.uri).unescaped_user == "caller"
    assert uri_equal(contact.uri, parse_uri("sip:caller@host5.example.net;lr;name=value%2541"))


def check_escnull() -> None:
    req = request("escnull")
    assert sip(req.to.uri).unescaped_user == "null-\x00-null"
    assert [sip(c.uri).unescaped_user for c in req.contact] == ["\x00", "\x00\x00"]
    assert not uri_equal(req.contact[0].uri, req.contact[1].uri)


def check_esc02() -> None:
    req = request("esc02")
    assert req.method == "RE%47IST%45R"
    assert req.to.display_name == "%Z%45"
    assert req.branch == "z9hG4bK209%fzsnel234"
    assert [sip(c.uri).host for c in req.contact] == ["host1.example.com", "host3.example.com"]
    assert req.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def check_lwsdisp() -> None:
    req = request("lwsdisp")
    assert req.from_.display_name == "caller"
    assert str(req.from_.uri) == "sip:caller@example.com"
    assert req.from_.tag == "323"


def check_longreq() -> None:
    req = request("longreq")
    assert len(req.vias) == 34
    assert req.top_via.host == "sip33.example.com"
    assert req.vias[-1].host == "host.example.com"
    assert req.vias[-1].received == "192.0.2.5"
    assert req.to.display_name is not None and len(req.to.display_name) == 103
    assert sip(req.to.uri).port == 6000
    assert sip(req.to.uri).has_param(
        "verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglong"
        "longlonglonglonglongParameterNameWithNoValue"
    )
    assert req.from_.tag is not None and len(req.from_.tag) == 155
    assert len(req.call_id) == 141
    [(name, value)] = [(n, v) for n, v in req.headers if n.startswith("Unknown-")]
    assert (len(name), len(value)) == (93, 306)
    assert len(req.body) == 150


def check_dblreq() -> None:
    req = request("dblreq")
    assert req.method == "REGISTER"
    assert req.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    assert req.body == b""


def check_semiuri() -> None:
    req = request("semiuri")
    uri = sip(req.uri)
    assert uri.user == "user;par=u%40example.net"
    assert uri.unescaped_user == "user;par=u@example.net"
    assert uri.host == "example.com"
    assert uri.params == ()
    assert req.headers.get_all("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def check_transports() -> None:
    req = request("transports")
    assert [v.transport for v in req.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def check_mpart01() -> None:
    req = request("mpart01")
    assert req.body == body_of("mpart01")
    assert len(req.body) == 553
    assert req.content_type == "multipart/mixed"
    assert req.top_via.rport == ""


def check_unreason() -> None:
    resp = response("unreason")
    assert resp.status == 200
    assert resp.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"


def check_noreason() -> None:
    resp = response("noreason")
    assert (resp.status, resp.reason) == (100, "")


def check_badbranch() -> None:
    # The bare magic cookie parses; transaction matching treats it as just another branch.
    assert request("badbranch").branch == "z9hG4bK"


def check_unkscm() -> None:
    req = request("unkscm")
    assert req.uri == AbsoluteUri("nobodyknowsthisscheme", "totallyopaquecontent")
    error = validate_request(req)
    assert error is not None and error.status == 416


def check_novelsc() -> None:
    req = request("novelsc")
    assert req.uri == AbsoluteUri("soap.beep", "//192.0.2.103:3002")
    error = validate_request(req)
    assert error is not None and error.status == 416


def check_unksm2() -> None:
    req = request("unksm2")
    assert req.to.uri == AbsoluteUri("isbn", "2983792873")
    assert req.from_.uri == AbsoluteUri("http", "//www.example.com")
    assert [c.uri for c in req.contact] == [AbsoluteUri("name", "John_Smith")]
    error = validate_request(req)
    assert error is not None and (error.status, error.field) == (400, "To")


def check_bext01() -> None:
    # The UAS core answers 420 with these in Unsupported; Proxy-Require is not ours to judge.
    req = request("bext01")
    assert unsupported_requirements(req, {"100rel", "path"}) == [
        "nothingSupportsThis",
        "nothingSupportsThisEither",
    ]
    assert validate_request(req) is None


def check_invut() -> None:
    # The INVITE handler answers 415 for any body but application/sdp.
    req = request("invut")
    assert req.content_type == "application/unknownformat"
    assert validate_request(req) is None


def check_regaut01() -> None:
    # The digest layer answers an unknown scheme with 401 and a fresh challenge.
    req = request("regaut01")
    assert parse_auth_params(req.headers.get("Authorization") or "") == (
        "NoOneKnowsThisScheme",
        {"opaque-data": "here"},
    )


def check_bcast() -> None:
    resp = response("bcast")
    assert resp.vias[1].host == "255.255.255.255"
    error = validate_response(resp)
    assert error is not None and error.field == "Via"


def check_zeromf() -> None:
    # A B2BUA endpoint processes it; only a proxy would answer 483.
    req = request("zeromf")
    assert req.max_forwards == 0
    assert validate_request(req) is None


def check_cparam01() -> None:
    [contact] = request("cparam01").contact
    assert sip(contact.uri).params == ()
    assert contact.params == (("unknownparam", None),)


def check_cparam02() -> None:
    [contact] = request("cparam02").contact
    assert sip(contact.uri).params == (("unknownparam", None),)
    assert contact.params == ()


def check_regescrt() -> None:
    req = request("regescrt")
    [contact] = req.contact
    assert sip(contact.uri).headers == (("Route", "%3Csip:sip.example.com%3E"),)
    assert str(contact.uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    assert validate_request(req) is None


def check_sdp01() -> None:
    # The INVITE handler answers 406 when SDP is not acceptable to the caller.
    req = request("sdp01")
    assert accepts_media_type(req, "application/sdp") is False
    assert accepts_media_type(req, "text/nobodyKnowsThis") is True


def check_inv2543() -> None:
    req = request("inv2543")
    assert req.branch is None
    assert req.from_.tag is None
    assert req.max_forwards is None
    assert "Content-Length" not in req.headers
    assert req.body == body_of("inv2543")
    assert len(req.body) == 105


VALID: dict[str, Callable[[], None]] = {
    name.removeprefix("check_"): fn
    for name, fn in globals().copy().items()
    if name.startswith("check_") and callable(fn)
}

# -- rejected by the parser -----------------------------------------------------------------------

# name -> (status, field).  Responses among them are dropped rather than answered.
REJECTED: dict[str, tuple[int, str | None]] = {
    "badinv01": (400, "Via"),
    "clerr": (400, "Content-Length"),
    "ncl": (400, "Content-Length"),
    "scalar02": (400, "CSeq"),
    "scalarlg": (400, "CSeq"),
    "quotbal": (400, "To"),
    "ltgtruri": (400, "uri"),
    "lwsruri": (400, "start-line"),
    "lwsstart": (400, "start-line"),
    "trws": (400, "start-line"),
    "badaspec": (400, "To"),
    "baddn": (400, None),
    "badvers": (505, "start-line"),
    "mismatch01": (400, "CSeq"),
    "mismatch02": (400, "CSeq"),
    "bigcode": (400, "start-line"),
    "insuf": (400, "From"),
    "multi01": (400, "Call-ID"),
    "mcl01": (400, "Content-Length"),
}

DROPPED_RESPONSES = {"scalarlg", "bigcode"}

# -- parsed, then refused by validate_request ----------------------------------------------

REFUSED: dict[str, tuple[int, str]] = {
    "escruri": (400, "uri"),
    "baddate": (400, "Date"),
    "regbadct": (400, "Contact"),
}


def test_every_published_message_has_exactly_one_expectation() -> None:
    names = [row["name"] for row in case_rows()]
    assert len(names) == 49
    tables = [set(VALID), set(REJECTED), set(REFUSED)]
    assert sorted(names) == sorted(n for table in tables for n in table)


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_message_parses_with_the_fields_it_is_about(name: str) -> None:
    VALID[name]()


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_invalid_message_is_rejected_with_the_recommended_status(name: str) -> None:
    with pytest.raises(SipParseError) as raised:
        parse_message(load(name))
    assert (raised.value.status, raised.value.field) == REJECTED[name]
    assert load(name).startswith(b"SIP/2.0 ") == (name in DROPPED_RESPONSES)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_semantically_invalid_request_is_refused_by_validation(name: str) -> None:
    req = request(name)
    error = validate_request(req)
    assert error is not None
    assert (error.status, error.field) == REFUSED[name]


def test_baddn_display_names_are_rejected_even_with_the_header_section_closed() -> None:
    with pytest.raises(SipParseError) as raised:
        parse_message(load("baddn") + b"\r\n")
    assert (raised.value.status, raised.value.field) == (400, "From")


def test_dblreq_trailing_request_is_not_part_of_the_first() -> None:
    data = load("dblreq")
    req = request("dblreq")
    assert bytes(req) == data[:300]
    assert len(data[300:]) == 450


def test_rfc_validity_column_matches_the_tables() -> None:
    valid = {row["name"] for row in case_rows() if row["expected"] == "valid"}
    assert valid == set(VALID)


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_message_survives_serialise_and_parse(name: str) -> None:
    msg = parse_message(load(name))
    again = parse_message(bytes(msg))
    assert again.body == msg.body
    assert bytes(again) == bytes(msg)
    length = str(len(msg.body))
    expected = [(n, length if n.lower() in ("l", "content-length") else v) for n, v in msg.headers]
    if "Content-Length" not in msg.headers:
        expected.append(("Content-Length", length))
    assert list(again.headers) == expected
