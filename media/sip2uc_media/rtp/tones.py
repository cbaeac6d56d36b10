"""Feedback tones as ready-to-send G.711 frames (20 ms, 160 bytes at 8 kHz).

A presence code dialled from a handset gets audible feedback before the call is
cleared: a confirmation (two short 425 Hz beeps, the European "positive" cadence, or a
rising triple) or an error tone (the three-tone "special information" rise of
ITU-T E.180 §7 / Q.35, 950/1400/1800 Hz). Frames are computed once and cached; the
sender paces them every 20 ms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Final, Literal

from .g711 import ALAW_SILENCE, ULAW_SILENCE, alaw_encode, ulaw_encode

SAMPLE_RATE: Final = 8000
FRAME_SAMPLES: Final = 160
#: -10 dBm0 sine peak on the 16-bit scale (G.711 full scale is +3.17 dBm0).
DEFAULT_AMPLITUDE: Final = 7000

Law = Literal["PCMU", "PCMA"]


@dataclass(frozen=True, slots=True)
class Segment:
    """``duration_ms`` of a sine at ``frequency`` Hz; frequency 0 is silence."""

    frequency: float
    duration_ms: int


#: Two 100 ms beeps of 425 Hz with a 100 ms gap, then a short trailing silence.
CONFIRM: Final = (Segment(425, 100), Segment(0, 100), Segment(425, 100), Segment(0, 100))
#: A rising triple: the "done" chime.
RISING: Final = (Segment(660, 100), Segment(880, 100), Segment(1100, 100), Segment(0, 100))
#: Special information tone: 950, 1400, 1800 Hz, 330 ms each, then 1 s silence.
ERROR: Final = (Segment(950, 330), Segment(1400, 330), Segment(1800, 330), Segment(0, 1000))


def tone_samples(segments: tuple[Segment, ...], *, amplitude: int = DEFAULT_AMPLITUDE) -> list[int]:
    """Linear 16-bit samples of a tone pattern, with phase kept across segments."""
    samples: list[int] = []
    phase = 0.0
    for seg in segments:
        count = seg.duration_ms * SAMPLE_RATE // 1000
        if seg.frequency <= 0:
            samples.extend([0] * count)
            phase = 0.0
            continue
        step = 2 * math.pi * seg.frequency / SAMPLE_RATE
        for _ in range(count):
            samples.append(round(amplitude * math.sin(phase)))
            phase = (phase + step) % (2 * math.pi)
    return samples


@cache
def tone_frames(
    segments: tuple[Segment, ...], law: Law = "PCMU", *, amplitude: int = DEFAULT_AMPLITUDE
) -> tuple[bytes, ...]:
    """The pattern as 20 ms G.711 payloads; the last frame is padded with silence."""
    encode = ulaw_encode if law == "PCMU" else alaw_encode
    silence = ULAW_SILENCE if law == "PCMU" else ALAW_SILENCE
    data = bytes(encode(s) for s in tone_samples(segments, amplitude=amplitude))
    frames = [data[i : i + FRAME_SAMPLES] for i in range(0, len(data), FRAME_SAMPLES)]
    if frames and len(frames[-1]) < FRAME_SAMPLES:
        frames[-1] = frames[-1] + bytes([silence]) * (FRAME_SAMPLES - len(frames[-1]))
    return tuple(frames)
