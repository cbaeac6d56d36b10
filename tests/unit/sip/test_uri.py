"""SIP URIs: RFC 3261 §19.1 syntax, §19.1.4 comparison, RFC 5118 IPv6 references."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sip2uc_core.sip import uri as uri_module
from sip2uc_core.sip.errors import SipParseError
from sip2uc_core.sip.uri import AbsoluteUri, SipUri, parse_uri, unescape, uri_equal


def test_full_sip_uri_parses_into_components() -> None:
    uri = parse_uri("sips:alice:secret@Example.COM:5061;transport=tcp;lr?subject=hi&priority=1")
    assert uri == SipUri(
        scheme="sips",
        user="alice",
        password="secret",
        host="Example.COM",
        port=5061,
        params=(("transport", "tcp"), ("lr", None)),
        headers=(("subject", "hi"), ("priority", "1")),
    )


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@example.com",
        "sip:example.com",
        "sips:+4930123;user=phone@gw.example.net:5061;transport=tls",
        "sip:*30%23@10.0.0.1;user=phone",
        "sip:[2001:db8::1]:5070;maddr=[2001:db8::2]",
        "sip:alice@example.com?Route=%3Csip:p.example.com%3E",
    ],
)
def test_uri_text_round_trips_exactly(text: str) -> None:
    assert str(parse_uri(text)) == text


def test_scheme_is_case_insensitive_and_normalised() -> None:
    assert parse_uri("SIP:bob@host").scheme == "sip"


def test_non_sip_scheme_is_kept_opaque() -> None:
    assert parse_uri("tel:+49-30-1234;phone-context=example.com") == AbsoluteUri(
        "tel", "+49-30-1234;phone-context=example.com"
    )
    assert str(parse_uri("urn:service:sos")) == "urn:service:sos"


def test_flag_parameter_has_value_none_and_lookup_ignores_case() -> None:
    uri = parse_uri("sip:proxy.example.com;LR;Transport=UDP")
    assert isinstance(uri, SipUri)
    assert uri.has_param("lr") and uri.get_param("lr") is None
    assert uri.transport == "udp"
    assert uri.lr


def test_with_param_replaces_in_place_and_keeps_order() -> None:
    uri = parse_uri("sip:a@h;x=1;transport=udp;y")
    assert isinstance(uri, SipUri)
    assert str(uri.with_param("transport", "tcp")) == "sip:a@h;x=1;transport=tcp;y"
    assert str(uri.with_param("ob", None)) == "sip:a@h;x=1;transport=udp;y;ob"
    assert str(uri.without_param("x")) == "sip:a@h;transport=udp;y"


def test_ipv6_reference_keeps_brackets_and_host_key_drops_them() -> None:
    uri = parse_uri("sip:[2001:DB8::1]:5060")
    assert isinstance(uri, SipUri)
    assert (uri.host, uri.port, uri.host_key, uri.is_ipv6) == (
        "[2001:DB8::1]",
        5060,
        "2001:db8::1",
        True,
    )


def test_user_part_is_kept_escaped_and_unescaped_on_request() -> None:
    uri = parse_uri("sip:%61lice%20b@host")
    assert isinstance(uri, SipUri)
    assert (uri.user, uri.unescaped_user) == ("%61lice%20b", "alice b")


def test_unescape_leaves_malformed_escapes_alone() -> None:
    assert unescape("a%2") == "a%2"
    assert unescape("%ZZ%41") == "%ZZA"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "alice@example.com",
        "sip:",
        "sip:alice@",
        "sip:@example.com",
        "sip:alice@example.com:99999",
        "sip:alice@example.com:",
        "sip:2001:db8::10",
        "sip:alice@exa mple.com",
        "<sip:alice@example.com>",
        "sip:alice@example.com;",
        "sip:alice@example.com;a=b=c",
        "sip:alice@example.com?noequals",
        "sip:[2001:db8::1",
        "1tel:123",
        "tel:",
    ],
)
def test_malformed_uri_raises_400_naming_the_uri(text: str) -> None:
    with pytest.raises(SipParseError) as raised:
        parse_uri(text)
    assert (raised.value.status, raised.value.field) == (400, "uri")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5"),
        (
            "sip:alice@atlanta.com?subject=x&priority=y",
            "sip:alice@atlanta.com?priority=y&subject=x",
        ),
        ("sip:[2001:DB8::1]", "sip:[2001:db8::1]"),
        ("tel:+1234", "tel:+1234"),
    ],
)
def test_rfc3261_equivalent_uris_compare_equal(a: str, b: str) -> None:
    assert uri_equal(parse_uri(a), parse_uri(b))
    assert uri_equal(parse_uri(b), parse_uri(a))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com:6000;transport=tcp", "sip:bob@biloxi.com:6000"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:bob@host", "sips:bob@host"),
        ("sip:bob@host", "tel:bob"),
        ("sip:a@h;x=1", "sip:a@h;x=2"),
    ],
)
def test_rfc3261_different_uris_compare_unequal(a: str, b: str) -> None:
    assert not uri_equal(parse_uri(a), parse_uri(b))


@given(
    st.sampled_from(["sip", "sips"]),
    st.one_of(st.none(), st.text("ab1-_.!~*'()&=+$,", min_size=1, max_size=6)),
    st.text("ab1-.", min_size=1, max_size=8),
    st.one_of(st.none(), st.integers(0, 99999)),
    st.lists(
        st.tuples(
            st.text("ab1-_.!~*'()[]/:&+$", min_size=1, max_size=5),
            st.one_of(st.none(), st.text("ab1-_.!~*'()[]/:&+$", min_size=1, max_size=5)),
        ),
        max_size=3,
    ),
)
def test_the_common_form_parses_exactly_as_the_general_parser_does(
    scheme: str,
    user: str | None,
    host: str,
    port: int | None,
    params: list[tuple[str, str | None]],
) -> None:
    text = f"{scheme}:{'' if user is None else user + '@'}{host}"
    text += "" if port is None else f":{port}"
    text += "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params)
    try:
        fast: object = parse_uri(text)
    except SipParseError as exc:
        fast = ("error", exc.status)
    try:
        general: object = uri_module._parse_sip(scheme, text[len(scheme) + 1 :], text)
    except SipParseError as exc:
        general = ("error", exc.status)
    assert fast == general
