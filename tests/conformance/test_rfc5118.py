"""RFC 5118 IPv6 torture messages (wire form, see tests/data/conformance/README.md)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
from sip2uc_core.sip.errors import SipParseError
from sip2uc_core.sip.message import SipRequest, parse_message
from sip2uc_core.sip.sdp import Connection, parse_sdp
from sip2uc_core.sip.uri import SipUri

DATA = Path(__file__).resolve().parents[1] / "data" / "conformance" / "rfc5118"


def load(name: str) -> bytes:
    return (DATA / f"{name}.dat").read_bytes()


def request(name: str) -> SipRequest:
    msg = parse_message(load(name))
    assert isinstance(msg, SipRequest)
    return msg


def sip(uri: object) -> SipUri:
    assert isinstance(uri, SipUri)
    return uri


def check_ipv6_good() -> None:
    req = request("ipv6-good")
    assert (sip(req.uri).host, sip(req.uri).port) == ("[2001:db8::10]", None)
    assert sip(req.uri).host_key == "2001:db8::10"
    assert (req.top_via.host, req.top_via.port) == ("[2001:db8::9:1]", None)
    [contact] = req.contact
    assert contact.display_name == "Caller"
    assert sip(contact.uri).host == "[2001:db8::1]"


def check_port_ambiguous() -> None:
    # RFC 5118 §4.3: the port inside the brackets is part of the address
    uri = sip(request("port-ambiguous").uri)
    assert (uri.host, uri.port) == ("[2001:db8::10:5070]", None)


def check_port_unambiguous() -> None:
    uri = sip(request("port-unambiguous").uri)
    assert (uri.host, uri.port) == ("[2001:db8::10]", 5070)


def check_via_received_param_with_delim() -> None:
    via = request("via-received-param-with-delim").top_via
    assert via.host == "[2001:db8::9:1]"
    assert via.received == "[2001:db8::9:255]"
    assert via.branch == "z9hG4bKas3-111"


def check_via_received_param_no_delim() -> None:
    via = request("via-received-param-no-delim").top_via
    assert via.received == "2001:db8::9:255"
    assert via.branch == "z9hG4bKas3"


def check_ipv6_in_sdp() -> None:
    req = request("ipv6-in-sdp")
    sdp = parse_sdp(req.body)
    assert sdp.origin is not None and sdp.origin.address == "2001:db8::20"
    assert sdp.connection == Connection(address="2001:db8::20", addrtype="IP6")
    assert sdp.audio is not None and sdp.audio.port == 6000


def check_mult_ip_in_header() -> None:
    vias = request("mult-ip-in-header").vias
    assert [(v.transport, v.host, v.port, v.received) for v in vias] == [
        ("UDP", "[2001:db8::9:1]", 6050, None),
        ("UDP", "192.0.2.1", None, None),
        ("TCP", "[2001:db8::9:255]", None, "192.0.2.200"),
    ]


def check_mult_ip_in_sdp() -> None:
    sdp = parse_sdp(request("mult-ip-in-sdp").body)
    assert sdp.connection is None
    assert [sdp.media_connection(m) for m in sdp.media] == [
        Connection(address="192.0.2.1"),
        Connection(address="2001:db8::1", addrtype="IP6"),
    ]


def check_ipv4_mapped_ipv6() -> None:
    req = request("ipv4-mapped-ipv6")
    assert [(v.host, v.port) for v in req.vias] == [
        ("[::ffff:192.0.2.10]", 19823),
        ("[::ffff:192.0.2.2]", None),
    ]
    assert sip(req.contact[0].uri).host == "[::ffff:192.0.2.2]"
    sdp = parse_sdp(req.body)
    assert sdp.connection is not None and sdp.connection.address == "::ffff:192.0.2.2"


def check_ipv6_bug_abnf_3_colons() -> None:
    # RFC 5118 §4.10: tolerated although RFC 4291 does not allow it
    req = request("ipv6-bug-abnf-3-colons")
    assert sip(req.uri).host == "[2001:db8:::192.0.2.1]"


def check_ipv6_correct_abnf_2_colons() -> None:
    req = request("ipv6-correct-abnf-2-colons")
    assert sip(req.uri).host == "[2001:db8::192.0.2.1]"
    assert sip(req.to.uri).host == "[2001:db8::192.0.2.1]"


VALID: dict[str, Callable[[], None]] = {
    name.removeprefix("check_").replace("_", "-"): fn
    for name, fn in globals().copy().items()
    if name.startswith("check_") and callable(fn)
}


def test_every_published_message_has_an_expectation() -> None:
    with (DATA / "cases.tsv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert {r["name"] for r in rows if r["expected"] == "valid"} == set(VALID)
    assert {r["name"] for r in rows if r["expected"] == "invalid"} == {"ipv6-bad"}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_message_parses_with_the_addresses_it_is_about(name: str) -> None:
    VALID[name]()


def test_unbracketed_ipv6_request_uri_is_rejected_with_400() -> None:
    with pytest.raises(SipParseError) as raised:
        parse_message(load("ipv6-bad"))
    assert (raised.value.status, raised.value.field) == (400, "uri")


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_message_survives_serialise_and_parse(name: str) -> None:
    msg = parse_message(load(name))
    assert bytes(msg) == load(name)
    assert parse_message(bytes(msg)) == msg
