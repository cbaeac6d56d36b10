"""The relay engine on real loopback sockets: transcoding and DTMF end to end."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sip2uc_media.rtp.aio import RelayEngine
from sip2uc_media.rtp.dtmf import DtmfGenerator
from sip2uc_media.rtp.g711 import PCMA_TO_PCMU, PCMU_TO_PCMA
from sip2uc_media.rtp.ports import PortAllocator, PortsExhausted
from sip2uc_media.rtp.relay import DtmfReceived, LegMedia, RelayEvent

pytestmark = pytest.mark.interop

HOST = "127.0.0.1"
SIPP_MEDIA = Path("/usr/share/sip-tester")
RECV_TIMEOUT = 5.0


class Endpoint:
    """A handset stand-in: one non-blocking UDP socket on loopback."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.addr: tuple[str, int] = self.sock.getsockname()

    async def recv(self) -> bytes:
        loop = asyncio.get_running_loop()
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 2048), RECV_TIMEOUT)
        return data

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, (HOST, port))

    def close(self) -> None:
        self.sock.close()


def rtp(pt: int, seq: int, ts: int, payload: bytes, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq, ts, 0x5EED) + payload


class Call:
    def __init__(self, engine: RelayEngine, a: Endpoint, b: Endpoint, a_port: int, b_port: int):
        self.engine = engine
        self.a = a
        self.b = b
        self.a_port = a_port
        self.b_port = b_port


@pytest.fixture
async def events() -> asyncio.Queue[tuple[str, RelayEvent]]:
    return asyncio.Queue()


@pytest.fixture
async def engine(events: asyncio.Queue[tuple[str, RelayEvent]]) -> AsyncIterator[RelayEngine]:
    eng = RelayEngine(
        HOST,
        PortAllocator(41000, 41099),
        on_event=lambda sid, ev: events.put_nowait((sid, ev)),
        media_timeout=60.0,
    )
    await eng.start()
    yield eng
    await eng.close()


async def open_call(engine: RelayEngine, a_pt: int, b_pt: int) -> Call:
    a, b = Endpoint(), Endpoint()
    leg_a = engine.open_leg("a", LegMedia(remote_rtp=a.addr, audio_pt=a_pt))
    leg_b = engine.open_leg("b", LegMedia(remote_rtp=b.addr, audio_pt=b_pt, telephone_event_pt=96))
    engine.bridge("call", "a", "b")
    return Call(engine, a, b, leg_a.local_port, leg_b.local_port)


async def test_pcmu_in_comes_out_as_pcma_on_the_other_leg(engine: RelayEngine) -> None:
    call = await open_call(engine, 0, 8)
    payloads = [bytes((i + k) & 0xFF for k in range(160)) for i in range(20)]
    try:
        received = []
        for i, payload in enumerate(payloads):
            call.a.send(rtp(0, 100 + i, 160 * i, payload), call.a_port)
            received.append(await call.b.recv())
        assert [r[1] & 0x7F for r in received] == [8] * 20
        assert [r[12:] for r in received] == [p.translate(PCMU_TO_PCMA) for p in payloads]
        seqs = [struct.unpack_from("!H", r, 2)[0] for r in received]
        assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(20)]
        # The reverse direction goes to where A's packets came from.
        call.b.send(rtp(8, 1, 0, b"\xd5" * 160), call.b_port)
        back = await call.a.recv()
        assert (back[1] & 0x7F, back[12:]) == (0, b"\xfe" * 160)
    finally:
        call.a.close()
        call.b.close()


async def test_dtmf_digits_are_detected_in_order_and_relayed(
    engine: RelayEngine, events: asyncio.Queue[tuple[str, RelayEvent]]
) -> None:
    call = await open_call(engine, 0, 8)
    gen = DtmfGenerator()
    seq = 0
    try:
        for n, digit in enumerate("159#"):
            for p in gen.packets(digit, 80):
                call.a.send(rtp(101, seq, 8000 * (n + 1), p.payload, p.marker), call.a_port)
                seq += 1
                relayed = await call.b.recv()
                assert relayed[1] & 0x7F == 96
        got = [await asyncio.wait_for(events.get(), RECV_TIMEOUT) for _ in range(4)]
        assert got == [("call", DtmfReceived(leg_id="a", digit=d, duration_ms=80)) for d in "159#"]
    finally:
        call.a.close()
        call.b.close()


async def test_injected_dtmf_reaches_the_endpoint(engine: RelayEngine) -> None:
    call = await open_call(engine, 0, 8)
    try:
        engine.inject_dtmf("call", "b", "7", duration_ms=40)
        packets = [await call.b.recv() for _ in range(4)]
        assert [(p[1] & 0x7F, p[12:]) for p in packets] == [
            (96, bytes.fromhex("070a00a0")),
            (96, bytes.fromhex("078a0140")),
            (96, bytes.fromhex("078a0140")),
            (96, bytes.fromhex("078a0140")),
        ]
    finally:
        call.a.close()
        call.b.close()


async def test_full_port_range_is_reported_as_exhausted() -> None:
    eng = RelayEngine(HOST, PortAllocator(41200, 41203))
    await eng.start()
    try:
        eng.open_leg("x")
        eng.open_leg("y")
        with pytest.raises(PortsExhausted):
            eng.open_leg("z")
    finally:
        await eng.close()


def pcap_rtp(path: Path) -> list[bytes]:
    """UDP payloads of a classic little-endian Ethernet/IPv4 pcap file."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data)[0]
    assert magic == 0xA1B2C3D4, "expected a little-endian microsecond pcap"
    out = []
    pos = 24
    while pos + 16 <= len(data):
        incl = struct.unpack_from("<I", data, pos + 8)[0]
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        ihl = (frame[14] & 0x0F) * 4
        out.append(frame[14 + ihl + 8 :])
    return out


SIPP_DIGITS = {"0": "0", "1": "1", "5": "5", "9": "9", "star": "*", "pound": "#"}


@pytest.mark.skipif(
    not (SIPP_MEDIA / "g711a.pcap").exists(),
    reason="SIPp media files absent (/usr/share/sip-tester, Debian package sip-tester)",
)
async def test_sipp_pcaps_replay_through_the_relay(
    engine: RelayEngine, events: asyncio.Queue[tuple[str, RelayEvent]]
) -> None:
    call = await open_call(engine, 8, 0)
    try:
        audio = pcap_rtp(SIPP_MEDIA / "g711a.pcap")
        assert len(audio) == 236
        for packet in audio:
            call.a.send(packet, call.a_port)
            relayed = await call.b.recv()
            assert relayed[12:] == packet[12:].translate(PCMA_TO_PCMU)
        # Every SIPp DTMF file reuses one timestamp; give each its own, as a handset would.
        seq = 1000
        for n, name in enumerate(SIPP_DIGITS):
            for packet in pcap_rtp(SIPP_MEDIA / f"dtmf_2833_{name}.pcap"):
                marker = bool(packet[1] & 0x80)
                call.a.send(rtp(101, seq, 100_000 * (n + 1), packet[12:], marker), call.a_port)
                seq += 1
                await call.b.recv()
        got = [await asyncio.wait_for(events.get(), RECV_TIMEOUT) for _ in SIPP_DIGITS]
        assert [ev.digit for _, ev in got if isinstance(ev, DtmfReceived)] == list(
            SIPP_DIGITS.values()
        )
        assert {ev.duration_ms for _, ev in got if isinstance(ev, DtmfReceived)} == {280}
    finally:
        call.a.close()
        call.b.close()
