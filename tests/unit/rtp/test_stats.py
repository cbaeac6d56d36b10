from collections.abc import Iterable

import pytest
from aiortc.rtp import RtcpPacket
from sip2uc_media.rtp.stats import StreamStats, estimate_mos, mos_from_r, r_factor

SSRC = 0x11223344


def feed(
    stats: StreamStats,
    seqs: Iterable[int],
    *,
    ts_step: int = 160,
    period: float = 0.02,
    size: int = 172,
) -> None:
    for i, seq in enumerate(seqs):
        stats.on_packet(SSRC, seq & 0xFFFF, (seq * ts_step) & 0xFFFFFFFF, size, i * period)


def test_counts_packets_and_bytes() -> None:
    s = StreamStats()
    feed(s, range(10))
    snap = s.snapshot()
    assert (snap.packets, snap.bytes, snap.expected, snap.lost) == (10, 1720, 10, 0)


def test_counts_losses_across_sequence_wrap() -> None:
    s = StreamStats()
    feed(s, [65533, 65534, 65535, 0, 2, 3])  # 1 lost after the wrap
    assert (s.expected, s.lost) == (7, 1)
    assert s.snapshot().loss_pct == pytest.approx(14.286)


def test_reordered_packet_is_not_a_loss() -> None:
    s = StreamStats()
    feed(s, [1, 2, 4, 3, 5])
    assert (s.expected, s.lost) == (5, 0)


def test_one_stray_jump_is_ignored_two_consecutive_resynchronise() -> None:
    s = StreamStats()
    feed(s, [1, 2, 3])
    s.on_packet(SSRC, 40000, 0, 172, 1.0)
    assert (s.expected, s.lost) == (3, 0)
    s.on_packet(SSRC, 40001, 160, 172, 1.02)
    s.on_packet(SSRC, 40002, 320, 172, 1.04)
    assert (s.expected, s.lost) == (5, 0)


def test_new_ssrc_starts_a_new_sequence_space_keeping_totals() -> None:
    s = StreamStats()
    feed(s, [100, 101, 103])
    s.on_packet(0x55, 7, 0, 172, 1.0)
    s.on_packet(0x55, 8, 160, 172, 1.02)
    assert (s.packets, s.expected, s.lost) == (5, 6, 1)


def test_jitter_is_zero_for_perfectly_paced_stream() -> None:
    s = StreamStats()
    feed(s, range(50))
    assert s.jitter_ms == pytest.approx(0.0, abs=1e-9)


def test_jitter_follows_rfc_3550_a8_estimator() -> None:
    s = StreamStats()
    # Second packet arrives 16 ms late: D = 128 units, J = 128/16 = 8 units = 1 ms.
    s.on_packet(SSRC, 1, 0, 172, 0.0)
    s.on_packet(SSRC, 2, 160, 172, 0.036)
    assert s.jitter_ms == pytest.approx(1.0)


def test_rtcp_receiver_report_about_our_stream_is_kept() -> None:
    # RR from SSRC 0x01020304 with one block about 0xAABBCCDD:
    # fraction lost 64/256, cumulative 5, jitter 80 units.
    rr = bytes.fromhex("81c9000701020304aabbccdd4000000500000064000000500000000000000000")
    s = StreamStats()
    s.on_rtcp(RtcpPacket.parse(rr), our_ssrc=0xAABBCCDD)
    snap = s.snapshot()
    assert (snap.remote_loss_pct, snap.remote_cumulative_lost, snap.remote_jitter_ms) == (
        25.0,
        5,
        10.0,
    )


def test_rtcp_report_about_another_ssrc_is_ignored() -> None:
    rr = bytes.fromhex("81c9000701020304999999994000000500000064000000500000000000000000")
    s = StreamStats()
    s.on_rtcp(RtcpPacket.parse(rr), our_ssrc=0xAABBCCDD)
    assert s.snapshot().remote_loss_pct is None


def test_emodel_best_case_for_g711_is_about_4_4() -> None:
    assert r_factor(0.0, 0.0) == pytest.approx(93.2 - 0.48)
    assert estimate_mos(0.0, 0.0) == 4.4


def test_emodel_loss_lowers_mos() -> None:
    # Ppl 1 %: Ie,eff = 95 * 1 / 26.1 = 3.64, R = 93.2 - 0.48 - 3.64 = 89.08.
    assert r_factor(1.0, 0.0) == pytest.approx(89.08, abs=0.01)
    assert estimate_mos(1.0, 0.0) == 4.32
    # Ppl 10 %: Ie,eff = 27.07, R = 65.65, MOS = 1 + 2.298 + 0.089.
    assert estimate_mos(10.0, 0.0) == 3.39


def test_emodel_long_delay_adds_the_second_delay_term() -> None:
    # d = 300 + 20 ms: Id = 0.024*320 + 0.11*(320-177.3) = 23.377
    assert r_factor(0.0, 0.0, 300.0) == pytest.approx(93.2 - 23.377, abs=0.001)


def test_mos_is_clamped() -> None:
    assert (mos_from_r(-5), mos_from_r(120)) == (1.0, 4.5)


def test_packets_without_timing_are_counted_but_leave_jitter_alone() -> None:
    s = StreamStats()
    s.on_packet(SSRC, 1, 0, 172, 0.0)
    s.on_packet(SSRC, 2, 0, 16, 0.02, timing=False)  # an event packet: start timestamp
    s.on_packet(SSRC, 3, 320, 172, 0.04)
    assert (s.packets, s.expected, s.lost, s.jitter_ms) == (3, 3, 0, 0.0)
