"""Per-stream RTP statistics (RFC 3550 §6.4, Appendix A) and an E-model MOS estimate.

:class:`StreamStats` is fed one call per received RTP packet (sequence number,
timestamp, SSRC, size, arrival time) and keeps:

* packets and bytes;
* expected and lost packets with 16-bit sequence wrap-around and resynchronisation
  after a large jump (RFC 3550 A.1, without the probation step: the relay has already
  latched the source, so the first packet is trusted); a change of SSRC (a re-INVITE
  or a new source behind the same address) starts a new sequence space and the totals
  carry over;
* interarrival jitter per RFC 3550 A.8, in timestamp units, reported in ms;
* what the far end said about the stream we send it, from RTCP SR/RR report blocks
  (RFC 3550 §6.4.1-2), parsed with aiortc (RTCP is a few packets per second per
  stream, so the convenience of a full parser is affordable there).

MOS is estimated with the E-model of ITU-T G.107 reduced to the terms that vary for
G.711 on a LAN (all other parameters at their G.107 defaults, which give R0 - Is = 93.2):

    R      = 93.2 - Id - Ie,eff
    Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl)          (G.107 §7.2, eq. 7-29)
             with Ie = 0 and Bpl = 25.1 for G.711 with packet-loss concealment
             (G.113 Appendix I), BurstR = 1 (random loss), Ppl = loss in percent
    Id     = 0.024 * d + 0.11 * (d - 177.3) * H(d - 177.3)          (the usual linear
             simplification of G.107 eq. 7-22 to 7-27 for echo-cancelled terminals)
             with d = one-way delay in ms = network delay + 20 ms packetisation
             + a jitter buffer of twice the measured jitter
    MOS    = 1 + 0.035 R + R (R - 60)(100 - R) * 7e-6  for 0 < R < 100 (G.107 Annex B)

Nothing here reads a clock; ``now`` is passed in seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from aiortc.rtp import RtcpRrPacket, RtcpSrPacket

MAX_DROPOUT: Final = 3000
MAX_MISORDER: Final = 100
_SEQ_MOD: Final = 1 << 16

R_DEFAULT: Final = 93.2
BPL_G711_PLC: Final = 25.1
PACKETISATION_MS: Final = 20.0


def r_factor(
    loss_pct: float, jitter_ms: float, network_delay_ms: float = 0.0, *, bpl: float = BPL_G711_PLC
) -> float:
    """The simplified E-model rating R for a G.711 stream (see the module docstring)."""
    ppl = max(0.0, min(100.0, loss_pct))
    ie_eff = 95.0 * ppl / (ppl + bpl)
    delay = network_delay_ms + PACKETISATION_MS + 2.0 * max(0.0, jitter_ms)
    i_d = 0.024 * delay + (0.11 * (delay - 177.3) if delay > 177.3 else 0.0)
    return R_DEFAULT - i_d - ie_eff


def mos_from_r(r: float) -> float:
    """G.107 Annex B: R to MOS-CQE, clamped to 1.0..4.5."""
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6


def estimate_mos(loss_pct: float, jitter_ms: float, network_delay_ms: float = 0.0) -> float:
    """Estimated MOS of a G.711 stream, rounded to two decimals."""
    return round(mos_from_r(r_factor(loss_pct, jitter_ms, network_delay_ms)), 2)


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSnapshot:
    """A point-in-time view of one stream's statistics."""

    packets: int
    bytes: int
    expected: int
    lost: int
    loss_pct: float
    jitter_ms: float
    mos: float
    remote_loss_pct: float | None
    remote_jitter_ms: float | None
    remote_cumulative_lost: int | None


class StreamStats:
    """Receive statistics of one RTP stream (see the module docstring)."""

    __slots__ = (
        "_bad_seq",
        "_base_seq",
        "_clock_rate",
        "_cycles",
        "_expected_prior",
        "_jitter",
        "_max_seq",
        "_received_prior",
        "_received_source",
        "_ssrc",
        "_transit",
        "bytes",
        "packets",
        "remote_cumulative_lost",
        "remote_fraction_lost",
        "remote_jitter",
        "rtcp_packets",
    )

    def __init__(self, clock_rate: int = 8000) -> None:
        self._clock_rate = clock_rate
        self.packets = 0
        self.bytes = 0
        self._ssrc = -1
        self._base_seq = 0
        self._max_seq = 0
        self._cycles = 0
        self._bad_seq = -1
        self._received_source = 0
        self._received_prior = 0
        self._expected_prior = 0
        self._transit = 0.0
        self._jitter = 0.0
        self.rtcp_packets = 0
        self.remote_fraction_lost: int | None = None
        self.remote_jitter: int | None = None
        self.remote_cumulative_lost: int | None = None

    def _init_seq(self, seq: int) -> None:
        self._expected_prior += self._expected_source()
        self._received_prior += self._received_source
        self._base_seq = seq
        self._max_seq = seq
        self._cycles = 0
        self._bad_seq = -1
        self._received_source = 0

    def _expected_source(self) -> int:
        if self._received_source == 0:
            return 0
        return self._cycles + self._max_seq - self._base_seq + 1

    def on_packet(
        self, ssrc: int, seq: int, timestamp: int, size: int, now: float, timing: bool = True
    ) -> None:
        """Account one received packet of ``size`` bytes (RFC 3550 A.1 and A.8).

        ``timing=False`` counts the packet without feeding the jitter estimator (for
        packets whose timestamp is not their sampling instant).
        """
        self.packets += 1
        self.bytes += size
        if ssrc != self._ssrc:
            self._ssrc = ssrc
            self._init_seq(seq)
            self._transit = now * self._clock_rate - timestamp
        else:
            udelta = (seq - self._max_seq) & 0xFFFF
            if udelta < MAX_DROPOUT:
                if seq < self._max_seq:
                    self._cycles += _SEQ_MOD
                self._max_seq = seq
            elif udelta <= _SEQ_MOD - MAX_MISORDER:
                # A very large jump: restart only once two consecutive packets agree
                # (RFC 3550 A.1), otherwise it is one stray packet.
                if seq != self._bad_seq:
                    self._bad_seq = (seq + 1) & 0xFFFF
                    return
                self._init_seq(seq)
            if not timing:
                self._received_source += 1
                return
            transit = now * self._clock_rate - timestamp
            d = transit - self._transit
            self._transit = transit
            if d < 0:
                d = -d
            self._jitter += (d - self._jitter) / 16.0
        self._received_source += 1

    @property
    def expected(self) -> int:
        return self._expected_prior + self._expected_source()

    @property
    def lost(self) -> int:
        """Cumulative lost packets; duplicates can make the raw count negative, shown as 0."""
        return max(0, self.expected - self._received_prior - self._received_source)

    @property
    def jitter_ms(self) -> float:
        return self._jitter * 1000.0 / self._clock_rate

    def on_rtcp(self, packets: Iterable[object], our_ssrc: int | None = None) -> None:
        """Take the report block about the stream we send (``our_ssrc``) from SR/RR."""
        for packet in packets:
            self.rtcp_packets += 1
            if isinstance(packet, RtcpSrPacket | RtcpRrPacket):
                for block in packet.reports:
                    if our_ssrc is None or block.ssrc == our_ssrc:
                        self.remote_fraction_lost = block.fraction_lost
                        self.remote_jitter = block.jitter
                        self.remote_cumulative_lost = block.packets_lost

    def snapshot(self, network_delay_ms: float = 0.0) -> StreamSnapshot:
        expected = self.expected
        lost = self.lost
        loss_pct = 100.0 * lost / expected if expected > 0 else 0.0
        jitter_ms = self.jitter_ms
        remote_loss = (
            None if self.remote_fraction_lost is None else self.remote_fraction_lost * 100.0 / 256
        )
        remote_jitter = (
            None if self.remote_jitter is None else self.remote_jitter * 1000.0 / self._clock_rate
        )
        return StreamSnapshot(
            packets=self.packets,
            bytes=self.bytes,
            expected=expected,
            lost=lost,
            loss_pct=round(loss_pct, 3),
            jitter_ms=round(jitter_ms, 3),
            mos=estimate_mos(loss_pct, jitter_ms, network_delay_ms),
            remote_loss_pct=None if remote_loss is None else round(remote_loss, 3),
            remote_jitter_ms=None if remote_jitter is None else round(remote_jitter, 3),
            remote_cumulative_lost=self.remote_cumulative_lost,
        )
