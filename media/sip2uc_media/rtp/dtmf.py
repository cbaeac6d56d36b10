"""RFC 4733 telephone-events: the payload codec, a detector and a generator (sans-IO).

Handsets send DTMF as RTP telephone-event packets. All packets of one event share the
RTP timestamp of the event's start (RFC 4733 §2.5.1.1); the first carries the marker
bit, updates grow the duration, and the end packet (E bit) is sent three times
(§2.5.1.4). Any of these may be lost or reordered, so the detector keys events by
their timestamp, not by the marker, and reports each event exactly once:

* on its first end packet (repeats of it are recognised by the timestamp and ignored),
* when a packet with a newer timestamp arrives while an event is still open (the end
  packets were lost),
* or when :meth:`DtmfDetector.handle_timer` is called past the deadline it exposes via
  :meth:`DtmfDetector.next_deadline` (the end packets and everything after were lost).

Nothing here reads a clock: callers pass ``now`` (seconds, monotonic).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Final

#: Event codes for DTMF (RFC 4733 §3.2, Table 7).
DTMF_EVENTS: Final = "0123456789*#ABCD"
#: RFC 4733 §2.3: volume is the power level in -dBm0, 0..63.
MAX_VOLUME: Final = 63
_MAX_DURATION: Final = 0xFFFF
_PAYLOAD_LEN: Final = 4
_HEADER: Final = struct.Struct("!BBH")


class TelephoneEventError(ValueError):
    """A telephone-event payload that cannot be parsed or built (RFC 4733 §2.3)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephoneEvent:
    """One RFC 4733 §2.3 event payload: event, E bit, volume, duration (timestamp units)."""

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.event <= 0xFF:
            raise TelephoneEventError("RFC 4733 §2.3: event must be 0..255")
        if not 0 <= self.volume <= MAX_VOLUME:
            raise TelephoneEventError("RFC 4733 §2.3: volume must be 0..63")
        if not 0 <= self.duration <= _MAX_DURATION:
            raise TelephoneEventError("RFC 4733 §2.3: duration must be 0..65535")

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        """Parse the first event of a payload; trailing events (§2.5.1.5) are ignored."""
        if len(payload) < _PAYLOAD_LEN:
            raise TelephoneEventError(
                f"telephone-event payload has {len(payload)} bytes, needs 4 (RFC 4733 §2.3)"
            )
        event, flags, duration = _HEADER.unpack_from(payload)
        # The R bit (0x40) is reserved: sent as zero, ignored on receipt.
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def __bytes__(self) -> bytes:
        return _HEADER.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)


def digit_for_event(event: int) -> str | None:
    """The DTMF character of an event code, or ``None`` for non-DTMF events."""
    return DTMF_EVENTS[event] if 0 <= event < len(DTMF_EVENTS) else None


def event_for_digit(digit: str) -> int:
    """The RFC 4733 event code of a DTMF character (``0-9 * # A-D``)."""
    index = DTMF_EVENTS.find(digit.upper()) if len(digit) == 1 else -1
    if index < 0:
        raise TelephoneEventError(f"not a DTMF digit: {digit!r}")
    return index


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitDetected:
    """A DTMF digit seen on a stream, reported once per event."""

    digit: str
    duration_ms: int


def _ts_newer(a: int, b: int) -> bool:
    """True when RTP timestamp ``a`` is after ``b`` in modulo-2^32 arithmetic."""
    return 0 < ((a - b) & 0xFFFFFFFF) < 0x80000000


class DtmfDetector:
    """Turns a telephone-event packet stream into exactly one ``DigitDetected`` per digit.

    ``end_timeout`` is how long an open event may go without a packet before it is
    reported anyway; updates come every packetisation interval (typically 50 ms at
    most), so a few hundred milliseconds survives several lost packets.
    """

    __slots__ = (
        "_clock_rate",
        "_duration",
        "_end_timeout",
        "_event",
        "_last_seen",
        "_open",
        "_recent",
        "_ts",
        "dropped",
    )

    def __init__(self, *, clock_rate: int = 8000, end_timeout: float = 0.3) -> None:
        self._clock_rate = clock_rate
        self._end_timeout = end_timeout
        self._open = False
        self._ts = 0
        self._event = 0
        self._duration = 0
        self._last_seen = 0.0
        # Timestamps of events already reported: catches the repeated end packets and
        # stragglers that arrive after an event was closed. A short memory suffices as
        # an event's packets are all sent within its own duration.
        self._recent: deque[int] = deque(maxlen=8)
        #: Payloads that failed to parse or belonged to a stale event.
        self.dropped = 0

    def feed(
        self, timestamp: int, marker: bool, seq: int, payload: bytes, now: float
    ) -> list[DigitDetected]:
        """Process one telephone-event packet; returns the digits it completes.

        ``marker`` and ``seq`` are accepted for the caller's convenience but deliberately
        not relied on: markers get lost and the timestamp identifies the event.
        """
        del marker, seq
        try:
            ev = TelephoneEvent.parse(payload)
        except TelephoneEventError:
            self.dropped += 1
            return []
        if timestamp in self._recent:
            return []
        out: list[DigitDetected] = []
        if self._open and timestamp != self._ts:
            if not _ts_newer(timestamp, self._ts):
                # A straggler of an older event we never saw start: too late to matter.
                self.dropped += 1
                return []
            out.extend(self._close())
        if not self._open:
            self._open = True
            self._ts = timestamp
            self._event = ev.event
            self._duration = ev.duration
        elif ev.duration > self._duration:
            self._duration = ev.duration
        self._last_seen = now
        if ev.end:
            out.extend(self._close())
        return out

    def next_deadline(self) -> float | None:
        """When an open event will be reported if nothing else arrives."""
        return self._last_seen + self._end_timeout if self._open else None

    def handle_timer(self, now: float) -> list[DigitDetected]:
        """Report an open event whose end packets never came."""
        if self._open and now >= self._last_seen + self._end_timeout:
            return self._close()
        return []

    def _close(self) -> list[DigitDetected]:
        self._open = False
        self._recent.append(self._ts)
        digit = digit_for_event(self._event)
        if digit is None:
            return []
        return [DigitDetected(digit=digit, duration_ms=self._duration * 1000 // self._clock_rate)]


@dataclass(frozen=True, slots=True, kw_only=True)
class EventPacket:
    """One RTP packet of a generated event, relative to the event's start.

    ``offset`` is the send time in seconds after the first packet; the RTP timestamp of
    every packet is the event's start timestamp (RFC 4733 §2.5.1.1).
    """

    offset: float
    marker: bool
    payload: bytes


class DtmfGenerator:
    """Builds the RFC 4733 §2.5 packet sequence of one digit.

    The first packet carries the marker and the duration of one packetisation interval,
    an update follows every ``ptime_ms`` with the duration so far, and the final duration
    is sent in three end packets (§2.5.1.4), the repeats ``ptime_ms`` apart.
    """

    END_REPEATS: Final = 3

    def __init__(self, *, clock_rate: int = 8000, ptime_ms: int = 20, volume: int = 10) -> None:
        if ptime_ms <= 0 or clock_rate <= 0:
            raise TelephoneEventError("clock rate and ptime must be positive")
        self.clock_rate = clock_rate
        self.ptime_ms = ptime_ms
        self.volume = volume

    def duration_units(self, duration_ms: int) -> int:
        """The event duration in timestamp units, capped to one segment (§2.5.1.3)."""
        return min(duration_ms * self.clock_rate // 1000, _MAX_DURATION)

    def packets(self, digit: str, duration_ms: int) -> list[EventPacket]:
        """The packets for ``digit`` lasting ``duration_ms`` (at least one ptime)."""
        event = event_for_digit(digit)
        step = self.ptime_ms * self.clock_rate // 1000
        total = max(self.duration_units(duration_ms), step)
        ptime = self.ptime_ms / 1000
        out: list[EventPacket] = []
        elapsed = step
        index = 0
        while elapsed < total:
            payload = TelephoneEvent(event=event, volume=self.volume, duration=elapsed)
            out.append(EventPacket(offset=index * ptime, marker=index == 0, payload=bytes(payload)))
            index += 1
            elapsed += step
        end = bytes(TelephoneEvent(event=event, end=True, volume=self.volume, duration=total))
        for repeat in range(self.END_REPEATS):
            out.append(
                EventPacket(offset=index * ptime, marker=index == 0 and repeat == 0, payload=end)
            )
            index += 1
        return out
