"""Prepared audio sent from a relay leg (sans-IO): feedback tones, announcements.

A :class:`Playout` turns a list of G.711 frames into RTP packets, one every ``ptime``
from ``start``; the adapter asks :meth:`Playout.next_deadline`, and at that time takes the
packets :meth:`Playout.due` returns. It is its own RTP stream (RFC 3550 §5.1): one SSRC,
consecutive sequence numbers, timestamps advancing by the samples of each frame, the
marker bit on the first packet (the start of a talkspurt, RFC 3551 §4.1).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from .relay import RelayError, StreamOrigin

__all__ = ["Playout"]

_HDR: Final = struct.Struct("!BBHII")


class Playout:
    """Frames to send, paced on the caller's clock."""

    __slots__ = ("_frames", "_next", "_origin", "_pt", "_ptime", "_start", "_ts")

    def __init__(
        self,
        frames: Sequence[bytes],
        payload_type: int,
        origin: StreamOrigin,
        *,
        start: float,
        ptime_ms: int = 20,
    ) -> None:
        if not 0 <= payload_type <= 127:
            raise RelayError(f"payload type {payload_type} is not 0-127 (RFC 3550 §5.1)")
        if ptime_ms <= 0:
            raise RelayError(f"ptime {ptime_ms} ms is not positive")
        self._frames = tuple(frames)
        self._pt = payload_type
        self._origin = origin
        self._start = start
        self._ptime = ptime_ms / 1000
        self._next = 0
        self._ts = origin.timestamp

    @property
    def done(self) -> bool:
        return self._next >= len(self._frames)

    def next_deadline(self) -> float | None:
        if self.done:
            return None
        return self._start + self._next * self._ptime

    def due(self, now: float) -> list[bytes]:
        """Packets whose send time has come (several if the caller fell behind)."""
        out: list[bytes] = []
        frames = self._frames
        origin = self._origin
        while self._next < len(frames) and self._start + self._next * self._ptime <= now:
            i = self._next
            frame = frames[i]
            second = (0x80 if i == 0 else 0) | self._pt
            seq = (origin.seq + i) & 0xFFFF
            out.append(_HDR.pack(0x80, second, seq, self._ts, origin.ssrc) + frame)
            # G.711 carries one sample per byte at 8 kHz (RFC 3551 §4.5.14).
            self._ts = (self._ts + len(frame)) & 0xFFFFFFFF
            self._next = i + 1
        return out
