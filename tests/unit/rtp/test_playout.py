"""Prepared frames become one paced RTP stream (RFC 3550 §5.1)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from sip2uc_media.rtp.aio import RelayEngine
from sip2uc_media.rtp.playout import Playout
from sip2uc_media.rtp.ports import PortAllocator
from sip2uc_media.rtp.relay import LegMedia, RelayError, StreamOrigin

ORIGIN = StreamOrigin(ssrc=0x01020304, seq=0xFFFF, timestamp=1000)
FRAMES = [bytes([n]) * 160 for n in (1, 2, 3)]


def header(packet: bytes) -> tuple[int, int, int, int, int]:
    b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", packet)
    return b0, b1, seq, ts, ssrc


def test_the_first_frame_is_due_at_start_with_the_marker_bit() -> None:
    playout = Playout(FRAMES, 8, ORIGIN, start=10.0)

    packets = playout.due(10.0)

    assert packets == [bytes([0x80, 0x88, 0xFF, 0xFF, 0, 0, 0x03, 0xE8, 1, 2, 3, 4]) + FRAMES[0]]
    assert playout.next_deadline() == pytest.approx(10.02)


def test_later_frames_follow_every_ptime_with_consecutive_numbers_and_timestamps() -> None:
    playout = Playout(FRAMES, 0, ORIGIN, start=10.0)
    playout.due(10.0)

    packets = playout.due(10.045)

    assert [header(p) for p in packets] == [
        (0x80, 0, 0, 1160, 0x01020304),
        (0x80, 0, 1, 1320, 0x01020304),
    ]
    assert [p[12:] for p in packets] == FRAMES[1:]
    assert playout.done
    assert playout.next_deadline() is None


def test_nothing_is_due_before_its_time() -> None:
    playout = Playout(FRAMES, 0, ORIGIN, start=10.0)

    assert playout.due(9.99) == []
    assert playout.next_deadline() == 10.0


def test_a_payload_type_beyond_seven_bits_is_refused() -> None:
    with pytest.raises(RelayError, match="payload type 128"):
        Playout(FRAMES, 128, ORIGIN, start=0.0)


async def test_the_engine_plays_frames_from_the_legs_own_port_to_its_sdp_address() -> None:
    far = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    far.bind(("127.0.0.1", 0))
    far.setblocking(False)
    engine = RelayEngine("127.0.0.1", PortAllocator(41300, 41309))
    await engine.start()
    loop = asyncio.get_running_loop()
    try:
        leg = engine.open_leg("tone", LegMedia(remote_rtp=far.getsockname(), audio_pt=8))

        engine.play("tone", FRAMES, 8)
        received = [await asyncio.wait_for(loop.sock_recvfrom(far, 2048), 5) for _ in FRAMES]

        assert [data[12:] for data, _src in received] == FRAMES
        assert {src for _data, src in received} == {("127.0.0.1", leg.local_port)}
        assert [header(data)[2] - header(received[0][0])[2] for data, _ in received] == [0, 1, 2]
        assert leg.stats().sent_packets == 3
        assert not engine.playing("tone")
    finally:
        await engine.close()
        far.close()


async def test_releasing_a_leg_stops_what_it_plays() -> None:
    engine = RelayEngine("127.0.0.1", PortAllocator(41310, 41319))
    await engine.start()
    try:
        engine.open_leg("tone", LegMedia(remote_rtp=("127.0.0.1", 9), audio_pt=0))
        engine.play("tone", FRAMES * 10, 0)

        engine.release_leg("tone")

        assert not engine.playing("tone")
    finally:
        await engine.close()


async def test_playing_into_an_unknown_leg_is_a_relay_error() -> None:
    engine = RelayEngine("127.0.0.1", PortAllocator(41320, 41329))
    await engine.start()
    try:
        with pytest.raises(RelayError, match="no leg ghost"):
            engine.play("ghost", FRAMES, 0)
    finally:
        await engine.close()
