"""Stream framing by Content-Length and CRLF keep-alives (RFC 3261 §18.3, RFC 5626 §4.4.1)."""

from __future__ import annotations

import pytest
from sip2uc_core.sip.errors import SipParseError
from sip2uc_core.sip.framing import KeepAlive, StreamFramer, is_keepalive_datagram

OPTIONS = (
    b"OPTIONS sip:a@h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nTo: <sip:a@h>\r\n"
    b"From: <sip:b@h>;tag=1\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nl: 4\r\n\r\nbody"
)
PING = b"\r\n\r\n"


def feed_in_pieces(data: bytes, cut: int) -> list[bytes | KeepAlive]:
    framer = StreamFramer()
    return framer.feed(data[:cut]) + framer.feed(data[cut:])


def test_whole_message_comes_out_in_one_piece() -> None:
    assert StreamFramer().feed(OPTIONS) == [OPTIONS]


@pytest.mark.parametrize("cut", range(len(PING + OPTIONS + OPTIONS) + 1))
def test_splitting_at_any_byte_boundary_gives_the_same_items(cut: int) -> None:
    stream = PING + OPTIONS + OPTIONS
    assert feed_in_pieces(stream, cut) == [KeepAlive(ping=True), OPTIONS, OPTIONS]


def test_byte_by_byte_feeding_gives_the_same_items() -> None:
    framer = StreamFramer()
    items: list[bytes | KeepAlive] = []
    for i in range(len(OPTIONS)):
        items += framer.feed(OPTIONS[i : i + 1])
    assert items == [OPTIONS]
    assert framer.buffered == 0


def test_pipelined_messages_and_keepalives_come_out_in_order() -> None:
    stream = OPTIONS + PING + b"\r\n" + OPTIONS + PING
    assert StreamFramer().feed(stream) == [
        OPTIONS,
        KeepAlive(ping=True),
        KeepAlive(ping=False),
        OPTIONS,
        KeepAlive(ping=True),
    ]


def test_incomplete_body_waits_for_more_data() -> None:
    framer = StreamFramer()
    assert framer.feed(OPTIONS[:-1]) == []
    assert framer.buffered == len(OPTIONS) - 1
    assert framer.feed(OPTIONS[-1:]) == [OPTIONS]


def test_client_side_reports_each_crlf_as_a_pong_at_once() -> None:
    framer = StreamFramer(client=True)
    assert framer.feed(b"\r\n") == [KeepAlive(ping=False)]


def test_server_side_waits_to_tell_a_ping_from_a_pong() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == []
    assert framer.feed(b"\r\n") == [KeepAlive(ping=True)]


@pytest.mark.parametrize(
    ("stream", "status"),
    [
        (OPTIONS.replace(b"l: 4\r\n", b""), 400),
        (OPTIONS.replace(b"l: 4", b"l: -4"), 400),
        (OPTIONS.replace(b"l: 4", b"l: 4\r\nContent-Length: 5"), 400),
        (OPTIONS.replace(b"l: 4", b"l: 99999999"), 413),
    ],
)
def test_framing_errors_raise_and_keep_raising(stream: bytes, status: int) -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError) as raised:
        framer.feed(stream)
    assert raised.value.status == status
    with pytest.raises(SipParseError):
        framer.feed(OPTIONS)


def test_endless_header_section_is_refused_at_the_limit() -> None:
    framer = StreamFramer(max_header_size=100)
    assert framer.feed(b"OPTIONS sip:a@h SIP/2.0\r\n") == []
    with pytest.raises(SipParseError) as raised:
        framer.feed(b"X-Filler: " + b"a" * 100)
    assert raised.value.status == 413


def test_keepalive_datagrams_are_recognised() -> None:
    assert is_keepalive_datagram(b"\r\n\r\n")
    assert is_keepalive_datagram(b"\r\n")
    assert not is_keepalive_datagram(OPTIONS)
