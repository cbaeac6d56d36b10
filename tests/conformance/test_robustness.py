"""Bad input never escapes as anything but SipParseError: random bytes and mutated torture
messages through the parser, every accessor, the validator, the framer and the SDP parser."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from sip2uc_core.sip.errors import SipParseError
from sip2uc_core.sip.framing import StreamFramer
from sip2uc_core.sip.headers import parse_auth_params
from sip2uc_core.sip.message import (
    SipRequest,
    SipResponse,
    parse_message,
    validate_request,
    validate_response,
)
from sip2uc_core.sip.sdp import parse_sdp

DATA = Path(__file__).resolve().parents[1] / "data" / "conformance"
MESSAGES = [p.read_bytes() for p in sorted(DATA.glob("rfc*/*.dat"))]


def exercise(data: bytes) -> None:
    """Parse and touch everything a layer above may touch; only SipParseError may escape."""
    try:
        msg = parse_message(data)
    except SipParseError:
        return
    for access in (
        lambda: msg.contact,
        lambda: msg.expires,
        lambda: msg.routes,
        lambda: msg.record_routes,
        lambda: parse_auth_params(msg.headers.get("Authorization") or "Digest"),
        lambda: parse_sdp(msg.body),
    ):
        with contextlib.suppress(SipParseError):
            access()
    if isinstance(msg, SipRequest):
        validate_request(msg)
    else:
        assert isinstance(msg, SipResponse)
        validate_response(msg)
    # whatever parsed must serialise into something that parses to the same message
    assert parse_message(bytes(msg)) == parse_message(bytes(parse_message(bytes(msg))))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_nothing_but_sip_parse_error(data: bytes) -> None:
    exercise(data)


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(MESSAGES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] = draw(st.sampled_from(b' \t\r\n:;,<>"\\@%[]=/0\xff'))
        elif kind == "insert":
            data[pos:pos] = draw(st.sampled_from([b"\r\n", b" ", b",", b";", b'"', b"<", b"\x00"]))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        else:
            del data[pos:]
    return bytes(data)


@settings(max_examples=300, deadline=None)
@given(mutated_messages())
def test_mutated_torture_messages_raise_nothing_but_sip_parse_error(data: bytes) -> None:
    exercise(data)


@settings(max_examples=300, deadline=None)
@given(mutated_messages(), st.lists(st.integers(1, 200), min_size=1, max_size=8))
def test_framer_on_mutated_streams_raises_nothing_but_sip_parse_error(
    data: bytes, cuts: list[int]
) -> None:
    framer = StreamFramer()
    pos = 0
    try:
        for size in [*cuts, len(data)]:
            for item in framer.feed(data[pos : pos + size]):
                if isinstance(item, bytes):
                    exercise(item)
            pos += size
    except SipParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="vosctmab=0123456789 IN IP4 RTP/AVP:.\r\n-", max_size=300))
def test_sdp_garbage_raises_nothing_but_sdp_error(text: str) -> None:
    try:
        sdp = parse_sdp(text)
    except SipParseError:
        return
    assert parse_sdp(bytes(sdp)) == sdp
