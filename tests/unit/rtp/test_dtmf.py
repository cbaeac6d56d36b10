import pytest
from hypothesis import given
from hypothesis import strategies as st
from sip2uc_media.rtp.dtmf import (
    DigitDetected,
    DtmfDetector,
    DtmfGenerator,
    EventPacket,
    TelephoneEvent,
    TelephoneEventError,
    event_for_digit,
)

# Payloads of the SIPp capture dtmf_2833_1.pcap: digit 1, volume 10, ts 0x33e0.
CAPTURED_START = bytes.fromhex("010a0000")
CAPTURED_END = bytes.fromhex("018a08c0")


def test_parses_captured_start_and_end_payloads() -> None:
    assert TelephoneEvent.parse(CAPTURED_START) == TelephoneEvent(event=1, volume=10, duration=0)
    assert TelephoneEvent.parse(CAPTURED_END) == TelephoneEvent(
        event=1, end=True, volume=10, duration=2240
    )


def test_serialises_byte_for_byte() -> None:
    assert bytes(TelephoneEvent.parse(CAPTURED_END)) == CAPTURED_END


def test_reserved_bit_is_ignored_on_receipt() -> None:
    assert TelephoneEvent.parse(bytes.fromhex("01ca0140")).volume == 10


def test_short_payload_is_an_error_naming_the_rfc() -> None:
    with pytest.raises(TelephoneEventError, match="RFC 4733"):
        TelephoneEvent.parse(b"\x01\x0a")


def test_volume_above_63_is_rejected() -> None:
    with pytest.raises(TelephoneEventError):
        TelephoneEvent(event=1, volume=64)


@given(st.integers(0, 255), st.booleans(), st.integers(0, 63), st.integers(0, 0xFFFF))
def test_any_event_round_trips(event: int, end: bool, volume: int, duration: int) -> None:
    ev = TelephoneEvent(event=event, end=end, volume=volume, duration=duration)
    assert TelephoneEvent.parse(bytes(ev)) == ev


def test_digit_codes_follow_rfc_4733_table() -> None:
    assert [event_for_digit(d) for d in "09*#AD"] == [0, 9, 10, 11, 12, 15]
    with pytest.raises(TelephoneEventError):
        event_for_digit("x")


def pkt(event: int, duration: int, end: bool = False) -> bytes:
    return bytes(TelephoneEvent(event=event, end=end, volume=10, duration=duration))


def test_digit_reported_once_on_end_despite_three_end_packets() -> None:
    det = DtmfDetector()
    out = []
    out += det.feed(1000, True, 1, pkt(5, 160), 0.00)
    out += det.feed(1000, False, 2, pkt(5, 320), 0.02)
    out += det.feed(1000, False, 3, pkt(5, 800, end=True), 0.04)
    out += det.feed(1000, False, 4, pkt(5, 800, end=True), 0.06)
    out += det.feed(1000, False, 5, pkt(5, 800, end=True), 0.08)
    assert out == [DigitDetected(digit="5", duration_ms=100)]


def test_lost_marker_still_detects_the_digit() -> None:
    det = DtmfDetector()
    assert det.feed(1000, False, 2, pkt(9, 320), 0.0) == []
    assert det.feed(1000, False, 3, pkt(9, 480, end=True), 0.02) == [
        DigitDetected(digit="9", duration_ms=60)
    ]


def test_lost_end_packets_reported_when_the_next_event_starts() -> None:
    det = DtmfDetector()
    det.feed(1000, True, 1, pkt(1, 160), 0.0)
    det.feed(1000, False, 2, pkt(1, 640), 0.02)
    assert det.feed(3000, True, 3, pkt(2, 160), 0.5) == [DigitDetected(digit="1", duration_ms=80)]
    assert det.feed(3000, False, 4, pkt(2, 320, end=True), 0.52) == [
        DigitDetected(digit="2", duration_ms=40)
    ]


def test_lost_end_packets_reported_on_timeout() -> None:
    det = DtmfDetector(end_timeout=0.3)
    det.feed(1000, True, 1, pkt(11, 160), 10.0)
    assert det.next_deadline() == pytest.approx(10.3)
    assert det.handle_timer(10.29) == []
    assert det.handle_timer(10.3) == [DigitDetected(digit="#", duration_ms=20)]
    assert det.next_deadline() is None
    # A late end packet of the same event does not report it again.
    assert det.feed(1000, False, 5, pkt(11, 800, end=True), 10.4) == []


def test_reordered_packets_report_the_longest_duration_once() -> None:
    det = DtmfDetector()
    out = []
    out += det.feed(1000, False, 2, pkt(3, 320), 0.0)
    out += det.feed(1000, True, 1, pkt(3, 160), 0.001)
    out += det.feed(1000, False, 4, pkt(3, 640, end=True), 0.04)
    out += det.feed(1000, False, 3, pkt(3, 480), 0.041)
    assert out == [DigitDetected(digit="3", duration_ms=80)]


def test_straggler_of_an_older_event_is_dropped() -> None:
    det = DtmfDetector()
    det.feed(5000, True, 10, pkt(4, 160), 0.0)
    assert det.feed(1000, False, 3, pkt(7, 160, end=True), 0.01) == []
    assert det.dropped == 1


def test_timestamp_wraparound_counts_as_newer() -> None:
    det = DtmfDetector()
    det.feed(0xFFFFFF00, True, 1, pkt(1, 160), 0.0)
    assert det.feed(0x00000100, True, 2, pkt(2, 160), 0.2) == [
        DigitDetected(digit="1", duration_ms=20)
    ]


def test_non_dtmf_event_is_not_reported_as_a_digit() -> None:
    det = DtmfDetector()
    assert det.feed(1000, True, 1, pkt(16, 800, end=True), 0.0) == []


def test_malformed_payload_is_counted_not_raised() -> None:
    det = DtmfDetector()
    assert det.feed(1000, True, 1, b"\x01", 0.0) == []
    assert det.dropped == 1


def test_generator_sends_rfc_4733_sequence_for_100_ms() -> None:
    packets = DtmfGenerator(clock_rate=8000, ptime_ms=20, volume=10).packets("7", 100)
    assert packets == [
        EventPacket(offset=0.0, marker=True, payload=pkt(7, 160)),
        EventPacket(offset=0.02, marker=False, payload=pkt(7, 320)),
        EventPacket(offset=0.04, marker=False, payload=pkt(7, 480)),
        EventPacket(offset=0.06, marker=False, payload=pkt(7, 640)),
        EventPacket(offset=0.08, marker=False, payload=pkt(7, 800, end=True)),
        EventPacket(offset=0.1, marker=False, payload=pkt(7, 800, end=True)),
        EventPacket(offset=0.12, marker=False, payload=pkt(7, 800, end=True)),
    ]


def test_generator_output_is_detected_as_the_same_digit() -> None:
    det = DtmfDetector()
    digits = []
    for i, p in enumerate(DtmfGenerator().packets("*", 120)):
        digits += det.feed(4242, p.marker, i, p.payload, p.offset)
    assert digits == [DigitDetected(digit="*", duration_ms=120)]


def test_generator_caps_duration_to_one_segment() -> None:
    packets = DtmfGenerator().packets("1", 60_000)
    assert TelephoneEvent.parse(packets[-1].payload).duration == 0xFFFF
