"""RTP statistics of one direction of a call leg, as the sidecar measures and the control plane
keeps them (per leg of a live call and in the call history)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StreamStats"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStats:
    #: "rx" (from the handset) or "tx" (to the handset).
    direction: str
    packets: int = 0
    #: RTP payload bytes.
    bytes: int = 0
    #: Packets lost (RFC 3550 cumulative; negative after duplicates).
    lost: int = 0
    #: Interarrival jitter in milliseconds (RFC 3550 A.8).
    jitter_ms: float = 0.0
    #: Estimated MOS (E-model, 1.0-4.5); 0 when not estimated (the "tx" direction).
    mos: float = 0.0
    codec: str = ""
