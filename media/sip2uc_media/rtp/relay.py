"""The per-call media relay core (sans-IO): two legs, two flows, bytes in, bytes out.

A :class:`MediaLeg` is one side of a call as the relay sees it: the local port pair the
endpoint was told to use, the address from its SDP, the address its packets really come
from (latched), and what it negotiated (audio PT, telephone-event PT, direction). A
:class:`RelaySession` joins two legs; each direction is a flow that rewrites packets
from one leg into the stream the other leg expects. The far leg can be a handset on the
same sidecar or another sidecar's relay (a leg with ``symmetric=False``: trusted, fixed
address, no latching).

Hot path: why ``struct`` and not aiortc
---------------------------------------
Measured on the 2-vCPU benchmark machine (Python 3.11): ``aiortc.rtp.RtpPacket.parse``
of a 172-byte PCMU packet costs about 1.5 µs and allocates a packet object, against
0.09 µs for ``struct.unpack_from`` of the fixed header. The whole per-packet budget at
the 80,000 packets/s target is about 10 µs, and aiortc's ``serialize`` is not
byte-transparent anyway (it drops header extensions and regenerates padding). So RTP
packets are inspected with one precompiled ``struct`` call on the fixed 12-byte header
(RFC 3550 §5.1), CSRC/extension/padding are only walked when their bits are set, and the
forwarded datagram is the received bytes with a fresh 12-byte header (PT, sequence,
timestamp, SSRC patched) and, when transcoding, the payload passed through a 256-byte
table. aiortc parses RTCP (a few packets per second per stream), where it validates
compound packets and feeds the statistics; RTCP is still forwarded as the received bytes
with only the SSRC fields and SR timestamp patched in place.

Continuity (RFC 3550 §5.1, §8.2; RFC 3264 re-offers)
----------------------------------------------------
Each flow sends one SSRC for the life of the session, chosen by the caller. Outgoing
sequence numbers and timestamps are the incoming ones plus an offset; when the incoming
source changes (new SSRC, or a sequence jump beyond RFC 3550 A.1's ``MAX_DROPOUT``, as
devices do after a re-INVITE) the offsets are recomputed so the outgoing stream continues
at the next sequence number and at the timestamp the elapsed time implies, with the
marker bit set. Injected DTMF takes sequence numbers from the same counter, and audio
from the source is held back while an injected event is playing, so the receiver sees
one gapless stream.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from aiortc.rtp import RtcpPacket

from .dtmf import DtmfDetector, DtmfGenerator
from .g711 import PCMA_TO_PCMU, PCMU_TO_PCMA
from .stats import MAX_DROPOUT, MAX_MISORDER, StreamSnapshot, StreamStats

Addr = tuple[str, int]
Datagram = tuple[bytes, Addr]

PT_PCMU: Final = 0
PT_PCMA: Final = 8
PT_CN: Final = 13
_AUDIO_PTS: Final = (PT_PCMU, PT_PCMA)
_TRANSCODE: Final = {(PT_PCMU, PT_PCMA): PCMU_TO_PCMA, (PT_PCMA, PT_PCMU): PCMA_TO_PCMU}

_HDR: Final = struct.Struct("!BBHII")
_SEQ_TS_SSRC: Final = struct.Struct("!HII")
_RTCP_HDR: Final = struct.Struct("!BBH")
_U32: Final = struct.Struct("!I")
_NOTHING: Final[tuple[Datagram, ...]] = ()

#: Drop reasons counted per leg (``MediaLeg.drops``).
DROP_REASONS: Final = (
    "truncated",
    "version",
    "csrc_overrun",
    "extension_overrun",
    "padding_overrun",
    "unknown_pt",
    "foreign_source",
    "no_destination",
    "direction",
    "during_injection",
    "rtcp_invalid",
    "send_failed",
)


class RelayError(Exception):
    """A request the relay cannot carry out (bad leg, no telephone-event PT, ...)."""


class Direction(StrEnum):
    """The SDP direction attribute as the leg's endpoint declared it (RFC 3264 §5.1)."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def endpoint_sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def endpoint_receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)


@dataclass(frozen=True, slots=True, kw_only=True)
class LegMedia:
    """What a leg's endpoint negotiated in SDP."""

    remote_rtp: Addr | None = None
    #: Defaults to ``remote_rtp`` port + 1 (RFC 3550 §11) unless ``a=rtcp`` said otherwise.
    remote_rtcp: Addr | None = None
    audio_pt: int = PT_PCMU
    telephone_event_pt: int | None = 101
    direction: Direction = Direction.SENDRECV
    ptime_ms: int = 20
    #: The IP the endpoint's signalling came from (the handset's SIP source address). Behind
    #: NAT it, not the SDP's private address, is where RTP arrives from; a symmetric leg latches
    #: only onto this IP or the SDP's (``MediaLeg.accept_source``).
    expected_ip: str | None = None

    def __post_init__(self) -> None:
        if self.audio_pt not in _AUDIO_PTS:
            raise RelayError(f"audio PT {self.audio_pt} is not PCMU (0) or PCMA (8)")
        te = self.telephone_event_pt
        if te is not None and not 96 <= te <= 127:
            raise RelayError(f"telephone-event PT {te} is not dynamic (96-127, RFC 3551 §3)")

    @property
    def rtcp_address(self) -> Addr | None:
        if self.remote_rtcp is not None:
            return self.remote_rtcp
        if self.remote_rtp is None:
            return None
        return (self.remote_rtp[0], self.remote_rtp[1] + 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamOrigin:
    """Initial SSRC, sequence number and timestamp of an outgoing stream (RFC 3550 §5.1
    wants them random; the caller draws them)."""

    ssrc: int
    seq: int
    timestamp: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfReceived:
    """A digit an endpoint sent as RFC 4733 events."""

    leg_id: str
    digit: str
    duration_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaTimeout:
    """An endpoint that should be sending RTP has been silent too long."""

    leg_id: str
    silent_for: float


RelayEvent = DtmfReceived | MediaTimeout


@dataclass(frozen=True, slots=True, kw_only=True)
class LegStats:
    leg_id: str
    received: StreamSnapshot
    sent_packets: int
    sent_bytes: int
    drops: dict[str, int] = field(default_factory=dict)


class MediaLeg:
    """One endpoint's view of the relay: local ports, remote and latched addresses."""

    __slots__ = (
        "_rtp_dest",
        "created",
        "drops",
        "index",
        "last_rx",
        "latched",
        "leg_id",
        "local_port",
        "media",
        "relatch_after",
        "rtcp_latched",
        "rx",
        "session",
        "symmetric",
        "tx_bytes",
        "tx_packets",
    )

    def __init__(
        self,
        leg_id: str,
        local_port: int,
        *,
        media: LegMedia | None = None,
        symmetric: bool = True,
        relatch_after: float = 2.0,
        now: float = 0.0,
    ) -> None:
        self.leg_id = leg_id
        self.local_port = local_port
        self.symmetric = symmetric
        self.relatch_after = relatch_after
        self.latched: Addr | None = None
        self.rtcp_latched: Addr | None = None
        self.last_rx: float | None = None
        self.created = now
        self.rx = StreamStats()
        self.tx_packets = 0
        self.tx_bytes = 0
        self.drops: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.session: RelaySession | None = None
        self.index = -1
        self.media = media or LegMedia()
        self._rtp_dest: Addr | None = self.media.remote_rtp

    @property
    def local_rtcp_port(self) -> int:
        return self.local_port + 1

    @property
    def rtp_destination(self) -> Addr | None:
        """Where RTP for this endpoint goes: where it sends from, else what its SDP said."""
        return self._rtp_dest

    @property
    def rtcp_destination(self) -> Addr | None:
        if self.symmetric and self.rtcp_latched is not None:
            return self.rtcp_latched
        return self.media.rtcp_address

    def update(self, media: LegMedia) -> None:
        """Apply a new offer/answer; a changed SDP address is trusted at once."""
        old = self.media.remote_rtp
        self.media = media
        if media.remote_rtp != old or self.latched is None:
            self.latched = None
            self._rtp_dest = media.remote_rtp
        if self.session is not None:
            self.session.legs_changed()

    def _vouched_ip(self, ip: str) -> bool:
        """An IP the signalling names for this endpoint: its SDP address or its SIP source."""
        media = self.media
        return (media.remote_rtp is not None and ip == media.remote_rtp[0]) or (
            ip == media.expected_ip
        )

    def accept_source(self, src: Addr, now: float) -> bool:
        """Symmetric RTP latching: called when ``src`` is not the latched address.

        Only the IPs the signalling vouches for (the SDP address, the SIP source address in
        ``LegMedia.expected_ip``) may latch, on any port: a NAT picks the port. Whoever else
        sprays the port would otherwise capture the stream ("RTP bleed"), before the first
        packet or whenever the endpoint pauses. Once latched, the exact SDP address takes over
        at once; another port of the latched IP (or of a vouched IP) only after the latched
        source has been quiet for ``relatch_after`` seconds (a NAT rebinding). Anything else
        is a stray or an injection attempt and is dropped.
        """
        if not self.symmetric:
            return src == self.media.remote_rtp
        latched = self.latched
        ip = src[0]
        if latched is None:
            ok = self._vouched_ip(ip)
        else:
            ok = src == self.media.remote_rtp or (
                (ip == latched[0] or self._vouched_ip(ip))
                and (self.last_rx is None or now - self.last_rx >= self.relatch_after)
            )
        if ok:
            self.latched = src
            self._rtp_dest = src
        return ok

    def accept_rtcp_source(self, src: Addr, now: float) -> bool:
        """RTCP latches like RTP, and at once to the IP RTP latched onto (RFC 3550 §11: the
        RTCP port is its own NAT mapping, not always RTP's port + 1)."""
        if not self.symmetric:
            return src == self.media.rtcp_address
        ip = src[0]
        rtcp_latched = self.rtcp_latched
        if src == self.media.rtcp_address or (self.latched is not None and ip == self.latched[0]):
            ok = True
        elif rtcp_latched is None:
            ok = self._vouched_ip(ip)
        else:
            ok = (ip == rtcp_latched[0] or self._vouched_ip(ip)) and (
                self.last_rx is None or now - self.last_rx >= self.relatch_after
            )
        if ok:
            self.rtcp_latched = src
        return ok

    def stats(self) -> LegStats:
        return LegStats(
            leg_id=self.leg_id,
            received=self.rx.snapshot(),
            sent_packets=self.tx_packets,
            sent_bytes=self.tx_bytes,
            drops={k: v for k, v in self.drops.items() if v},
        )


# PT map entry kinds.
_AUDIO: Final = 0
_EVENT: Final = 1
_OTHER: Final = 2


class _Flow:
    """One direction of a session: packets from ``src`` rewritten for ``dst``."""

    __slots__ = (
        "clock_rate",
        "detector",
        "dst",
        "event_ts",
        "in_seq",
        "in_ssrc",
        "injecting",
        "last_out_seq",
        "last_out_time",
        "last_out_ts",
        "marker_next",
        "open",
        "out_ssrc",
        "pending",
        "pt_map",
        "seq_off",
        "src",
        "started",
        "ts_off",
    )

    def __init__(self, src: MediaLeg, dst: MediaLeg, origin: StreamOrigin) -> None:
        self.src = src
        self.dst = dst
        self.clock_rate = 8000
        self.out_ssrc = origin.ssrc
        self.last_out_seq = (origin.seq - 1) & 0xFFFF
        self.last_out_ts = origin.timestamp
        self.last_out_time = 0.0
        self.started = False
        self.in_ssrc = -1
        self.in_seq = 0
        self.seq_off = 0
        self.ts_off = 0
        self.marker_next = False
        self.detector = DtmfDetector()
        self.pending: deque[tuple[float, bool, bytes, bool]] = deque()
        self.injecting = False
        self.event_ts = 0
        self.open = True
        self.pt_map: list[tuple[int, bytes | None, int] | None] = [None] * 128
        self.configure()

    def configure(self) -> None:
        """Rebuild the PT map and direction gate from both legs' negotiated media."""
        src, dst = self.src.media, self.dst.media
        pt_map: list[tuple[int, bytes | None, int] | None] = [None] * 128
        # Accept either law from the source (it may switch within its offer) and send
        # the law the destination chose.
        for pt in _AUDIO_PTS:
            pt_map[pt] = (dst.audio_pt, _TRANSCODE.get((pt, dst.audio_pt)), _AUDIO)
        pt_map[PT_CN] = (PT_CN, None, _OTHER)
        if src.telephone_event_pt is not None:
            # Events are detected even when the destination cannot take them; they are
            # then reported but not forwarded (out PT -1).
            out_pt = -1 if dst.telephone_event_pt is None else dst.telephone_event_pt
            pt_map[src.telephone_event_pt] = (out_pt, None, _EVENT)
        self.pt_map = pt_map
        self.open = src.direction.endpoint_sends and dst.direction.endpoint_receives

    def rebase(self, ssrc: int, seq: int, ts: int, now: float) -> None:
        """A new incoming source: continue the outgoing stream where it left off."""
        self.in_ssrc = ssrc
        self.in_seq = seq
        next_seq = (self.last_out_seq + 1) & 0xFFFF
        if self.started:
            elapsed = max(0, round((now - self.last_out_time) * self.clock_rate))
            next_ts = (self.last_out_ts + max(elapsed, 1)) & 0xFFFFFFFF
        else:
            next_ts = self.last_out_ts
        self.seq_off = (next_seq - seq) & 0xFFFF
        self.ts_off = (next_ts - ts) & 0xFFFFFFFF
        self.marker_next = True

    def next_timestamp(self, now: float) -> int:
        if not self.started:
            return self.last_out_ts
        elapsed = max(0, round((now - self.last_out_time) * self.clock_rate))
        return (self.last_out_ts + elapsed) & 0xFFFFFFFF


class RelaySession:
    """Two legs and the two flows between them.

    ``on_rtp``/``on_rtcp`` take a datagram received on leg 0 or 1 and return what to
    send from the *other* leg's socket; ``handle_timer`` returns due injected packets as
    ``(leg index to send from, data, destination)``. Events (digits) queue in
    ``events``; take them with :meth:`pop_events`.
    """

    def __init__(
        self,
        session_id: str,
        a: MediaLeg,
        b: MediaLeg,
        *,
        origins: tuple[StreamOrigin, StreamOrigin],
        dtmf_ptime_ms: int = 20,
    ) -> None:
        if a.session is not None or b.session is not None:
            raise RelayError("a leg can belong to one session only")
        self.session_id = session_id
        self.legs = (a, b)
        a.session, a.index = self, 0
        b.session, b.index = self, 1
        # _flows[i] carries packets received on leg i.
        self._flows = (_Flow(a, b, origins[0]), _Flow(b, a, origins[1]))
        self.events: list[DtmfReceived] = []
        #: Set when a timer became due to be (re)armed: an event opened or DTMF was
        #: queued. The adapter clears it and schedules :meth:`next_deadline`.
        self.wants_timer = False
        self._generator = DtmfGenerator(ptime_ms=dtmf_ptime_ms)

    def close(self) -> None:
        for leg in self.legs:
            leg.session = None
            leg.index = -1

    def legs_changed(self) -> None:
        for flow in self._flows:
            flow.configure()

    def pop_events(self) -> list[DtmfReceived]:
        events, self.events = self.events, []
        return events

    # ----------------------------------------------------------------- RTP hot path
    def on_rtp(self, leg: int, data: bytes, src: Addr, now: float) -> Sequence[Datagram]:
        """A datagram arrived on leg ``leg``'s RTP port from ``src``."""
        flow = self._flows[leg]
        rx_leg = flow.src
        n = len(data)
        if n < 12:
            rx_leg.drops["truncated"] += 1
            return _NOTHING
        b0, b1, seq, ts, ssrc = _HDR.unpack_from(data)
        if b0 & 0xC0 != 0x80:
            rx_leg.drops["version"] += 1
            return _NOTHING
        if b0 & 0x3F:
            # CSRC list, header extension or padding (RFC 3550 §5.1, §5.3.1).
            hlen = 12 + 4 * (b0 & 0x0F)
            end = n
            if hlen > n:
                rx_leg.drops["csrc_overrun"] += 1
                return _NOTHING
            if b0 & 0x10:
                if hlen + 4 > n:
                    rx_leg.drops["extension_overrun"] += 1
                    return _NOTHING
                hlen += 4 + 4 * int.from_bytes(data[hlen + 2 : hlen + 4], "big")
                if hlen > n:
                    rx_leg.drops["extension_overrun"] += 1
                    return _NOTHING
            if b0 & 0x20:
                pad = data[-1]
                if pad == 0 or hlen + pad > n:
                    rx_leg.drops["padding_overrun"] += 1
                    return _NOTHING
                end = n - pad
        else:
            hlen = 12
            end = n
        entry = flow.pt_map[b1 & 0x7F]
        if entry is None:
            rx_leg.drops["unknown_pt"] += 1
            return _NOTHING
        # Only a packet that passed validation may latch: garbage must not steer media.
        if src != rx_leg.latched and not rx_leg.accept_source(src, now):
            rx_leg.drops["foreign_source"] += 1
            return _NOTHING
        out_pt, table, kind = entry
        rx_leg.last_rx = now
        # Event packets carry their event's start timestamp (RFC 4733 §2.5.1.1), which
        # says nothing about arrival timing: count them, keep them out of the jitter.
        rx_leg.rx.on_packet(ssrc, seq, ts, n, now, kind != _EVENT)
        if ssrc != flow.in_ssrc:
            flow.rebase(ssrc, seq, ts, now)
        else:
            d = (seq - flow.in_seq) & 0xFFFF
            if d < MAX_DROPOUT:
                flow.in_seq = seq
            elif d <= 0x10000 - MAX_MISORDER:
                flow.rebase(ssrc, seq, ts, now)
        if kind == _EVENT:
            self.wants_timer = True
            digits = flow.detector.feed(ts, bool(b1 & 0x80), seq, data[hlen:end], now)
            if digits:
                leg_id = rx_leg.leg_id
                for dd in digits:
                    self.events.append(
                        DtmfReceived(leg_id=leg_id, digit=dd.digit, duration_ms=dd.duration_ms)
                    )
            if out_pt < 0:
                flow.seq_off = (flow.seq_off - 1) & 0xFFFF
                return _NOTHING
        if not flow.open:
            rx_leg.drops["direction"] += 1
            return _NOTHING
        if flow.injecting:
            # The injected event owns this stretch of the outgoing stream; keep the
            # sequence gapless by giving this packet's number to the next one.
            rx_leg.drops["during_injection"] += 1
            flow.seq_off = (flow.seq_off - 1) & 0xFFFF
            return _NOTHING
        dst = flow.dst
        dest = dst._rtp_dest
        if dest is None:
            rx_leg.drops["no_destination"] += 1
            return _NOTHING
        out_seq = (seq + flow.seq_off) & 0xFFFF
        out_ts = (ts + flow.ts_off) & 0xFFFFFFFF
        second = (b1 & 0x80) | out_pt
        if flow.marker_next:
            flow.marker_next = False
            second |= 0x80
        header = _HDR.pack(b0, second, out_seq, out_ts, flow.out_ssrc)
        if table is None:
            out = header + data[12:]
        elif hlen == 12 and end == n:
            out = header + data[12:].translate(table)
        else:
            out = header + data[12:hlen] + data[hlen:end].translate(table) + data[end:]
        flow.last_out_seq = out_seq
        flow.last_out_ts = out_ts
        flow.last_out_time = now
        flow.started = True
        dst.tx_packets += 1
        dst.tx_bytes += n
        return [(out, dest)]

    # ----------------------------------------------------------------- DTMF injection
    def inject_dtmf(self, to_leg: int, digits: str, now: float, duration_ms: int = 100) -> None:
        """Queue RFC 4733 events for ``digits`` towards leg ``to_leg``.

        Digits follow each other with a 50 ms gap; each uses the timestamp the outgoing
        stream has reached when it starts (RFC 4733 §2.5.1.1).
        """
        flow = self._flows[1 - to_leg]
        if flow.dst.media.telephone_event_pt is None:
            raise RelayError(f"leg {flow.dst.leg_id} did not negotiate telephone-event")
        start = max(now, flow.pending[-1][0] + 0.05) if flow.pending else now
        ptime = self._generator.ptime_ms / 1000
        for digit in digits:
            packets = self._generator.packets(digit, duration_ms)
            for i, p in enumerate(packets):
                flow.pending.append((start + p.offset, p.marker, p.payload, i == 0))
            start = start + packets[-1].offset + ptime + 0.05
        self.wants_timer = True

    def next_deadline(self) -> float | None:
        deadlines = [f.pending[0][0] for f in self._flows if f.pending]
        for f in self._flows:
            d = f.detector.next_deadline()
            if d is not None:
                deadlines.append(d)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> list[tuple[int, bytes, Addr]]:
        """Injected packets now due (and digits whose end packets were lost)."""
        out: list[tuple[int, bytes, Addr]] = []
        for flow in self._flows:
            for dd in flow.detector.handle_timer(now):
                self.events.append(
                    DtmfReceived(leg_id=flow.src.leg_id, digit=dd.digit, duration_ms=dd.duration_ms)
                )
            pending = flow.pending
            while pending and pending[0][0] <= now:
                _due, marker, payload, first = pending.popleft()
                if first:
                    flow.event_ts = flow.next_timestamp(now)
                    flow.injecting = True
                out_seq = (flow.last_out_seq + 1) & 0xFFFF
                flow.last_out_seq = out_seq
                flow.seq_off = (flow.seq_off + 1) & 0xFFFF
                if not pending or pending[0][3]:
                    # Last packet of this digit: audio may resume (its timestamps already
                    # run past the event), and the next digit starts after this one.
                    flow.injecting = False
                    flow.marker_next = True
                    duration = int.from_bytes(payload[2:4], "big")
                    flow.last_out_ts = (flow.event_ts + duration) & 0xFFFFFFFF
                    flow.last_out_time = now
                    flow.started = True
                te_pt = flow.dst.media.telephone_event_pt
                dest = flow.dst.rtp_destination
                if te_pt is None or dest is None:
                    continue
                second = (0x80 if marker else 0) | te_pt
                data = _HDR.pack(0x80, second, out_seq, flow.event_ts, flow.out_ssrc) + payload
                flow.dst.tx_packets += 1
                flow.dst.tx_bytes += len(data)
                out.append((1 - flow.src.index, data, dest))
        return out

    # ----------------------------------------------------------------- RTCP
    def on_rtcp(self, leg: int, data: bytes, src: Addr, now: float) -> Sequence[Datagram]:
        """An RTCP datagram arrived on leg ``leg``'s RTCP port: account and relay it."""
        flow = self._flows[leg]
        rx_leg = flow.src
        if src != rx_leg.rtcp_latched and not rx_leg.accept_rtcp_source(src, now):
            rx_leg.drops["foreign_source"] += 1
            return _NOTHING
        try:
            packets = RtcpPacket.parse(data)
        except Exception:  # aiortc raises several types on malformed input; all mean drop.
            rx_leg.drops["rtcp_invalid"] += 1
            return _NOTHING
        if not packets:
            rx_leg.drops["rtcp_invalid"] += 1
            return _NOTHING
        reverse = self._flows[1 - leg]
        rx_leg.rx.on_rtcp(packets, our_ssrc=reverse.out_ssrc)
        if not flow.open:
            return _NOTHING
        dest = flow.dst.rtcp_destination
        if dest is None:
            rx_leg.drops["no_destination"] += 1
            return _NOTHING
        return [(self._rewrite_rtcp(data, flow, reverse), dest)]

    @staticmethod
    def _rewrite_rtcp(data: bytes, flow: _Flow, reverse: _Flow) -> bytes:
        """Patch SSRCs (and the SR RTP timestamp) so the far end sees our streams.

        The sender's own SSRC becomes the flow's outgoing SSRC; report blocks about the
        stream this endpoint receives (our ``reverse`` SSRC) name the original source
        again (RFC 3550 §6.4, §7.3 on translators).
        """
        buf = bytearray(data)
        pos = 0
        total = len(buf)
        while pos + 8 <= total:
            first, pt, words = _RTCP_HDR.unpack_from(buf, pos)
            size = 4 * (words + 1)
            if pos + size > total:
                break
            count = first & 0x1F
            if pt in (200, 201):  # SR, RR (RFC 3550 §6.4.1, §6.4.2)
                _U32.pack_into(buf, pos + 4, flow.out_ssrc)
                blocks = pos + 8
                if pt == 200 and size >= 28:
                    (rtp_ts,) = _U32.unpack_from(buf, pos + 16)
                    _U32.pack_into(buf, pos + 16, (rtp_ts + flow.ts_off) & 0xFFFFFFFF)
                    blocks = pos + 28
                for i in range(count):
                    at = blocks + 24 * i
                    if at + 24 > pos + size:
                        break
                    (about,) = _U32.unpack_from(buf, at)
                    if about == reverse.out_ssrc and reverse.in_ssrc >= 0:
                        _U32.pack_into(buf, at, reverse.in_ssrc)
            elif pt in (202, 203) and count:  # SDES first chunk, BYE first source
                _U32.pack_into(buf, pos + 4, flow.out_ssrc)
            pos += size
        return bytes(buf)

    # ----------------------------------------------------------------- liveness
    def expired(self, now: float, timeout: float) -> list[MediaTimeout]:
        """Legs whose endpoint should be sending but has been silent for ``timeout`` s.

        A leg that declared ``recvonly``/``inactive`` (on hold) is not expected to send.
        """
        out: list[MediaTimeout] = []
        for leg in self.legs:
            if not leg.media.direction.endpoint_sends:
                continue
            last = leg.created if leg.last_rx is None else leg.last_rx
            if now - last >= timeout:
                out.append(MediaTimeout(leg_id=leg.leg_id, silent_for=now - last))
        return out

    def stats(self) -> tuple[LegStats, LegStats]:
        return (self.legs[0].stats(), self.legs[1].stats())
