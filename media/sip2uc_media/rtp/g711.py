"""ITU-T G.711 companding: μ-law (PCMU, RTP PT 0) and A-law (PCMA, RTP PT 8).

Samples are signed 16-bit linear PCM. The encoders follow the segment/quantisation
rules of G.711 §2 and §3 (μ-law with the 0x84 bias and 14-bit magnitude clip at
32635, A-law with 13-bit magnitudes and even-bit inversion 0x55); the decoders return
the mid-point of each quantisation interval, scaled to 16 bits.

Transcoding between the two laws is a pure byte-to-byte mapping, so it is expressed as
two 256-byte tables usable with :meth:`bytes.translate`: one C call per RTP payload.
The tables are built by decoding with one law and re-encoding with the other, so each
code maps to the other law's interval that contains its level; the mapping keeps sign
and order, and silence stays silence.
"""

from __future__ import annotations

from typing import Final

_ULAW_BIAS: Final = 0x84
_ULAW_CLIP: Final = 32635


def ulaw_encode(sample: int) -> int:
    """Encode one signed 16-bit sample to a μ-law code (G.711 §3)."""
    if sample < 0:
        # One's-complement magnitude for negatives, as in the G.191 reference coder.
        magnitude = -sample - 1
        sign = 0x80
    else:
        magnitude = sample
        sign = 0
    magnitude = min(magnitude, _ULAW_CLIP) + _ULAW_BIAS
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not magnitude & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    # Codes are transmitted with all bits inverted (G.711 Table 2a, "character signals").
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def ulaw_decode(code: int) -> int:
    """Decode one μ-law code to a signed 16-bit sample."""
    code = ~code & 0xFF
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return -magnitude if code & 0x80 else magnitude


def alaw_encode(sample: int) -> int:
    """Encode one signed 16-bit sample to an A-law code (G.711 §2)."""
    if sample >= 0:
        sign = 0x80
        magnitude = sample >> 3
    else:
        sign = 0
        magnitude = (-sample - 1) >> 3
    magnitude = min(magnitude, 0x0FFF)
    if magnitude < 0x20:
        code = magnitude >> 1
    else:
        exponent = magnitude.bit_length() - 5
        code = (exponent << 4) | ((magnitude >> exponent) & 0x0F)
    # Even bits are inverted on the line (G.711 §2, Table 1a note).
    return (sign | code) ^ 0x55


def alaw_decode(code: int) -> int:
    """Decode one A-law code to a signed 16-bit sample."""
    code ^= 0x55
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    # Segment 0 has no implicit leading bit; the +8 / +0x108 put the level mid-interval.
    step = (mantissa << 4) + 8
    magnitude = step if exponent == 0 else (step + 0x100) << (exponent - 1)
    return magnitude if code & 0x80 else -magnitude


ULAW_TO_LINEAR: Final[tuple[int, ...]] = tuple(ulaw_decode(c) for c in range(256))
ALAW_TO_LINEAR: Final[tuple[int, ...]] = tuple(alaw_decode(c) for c in range(256))

#: PCMU → PCMA transcoding table for ``payload.translate(PCMU_TO_PCMA)``.
PCMU_TO_PCMA: Final[bytes] = bytes(alaw_encode(s) for s in ULAW_TO_LINEAR)
#: PCMA → PCMU transcoding table for ``payload.translate(PCMA_TO_PCMU)``.
PCMA_TO_PCMU: Final[bytes] = bytes(ulaw_encode(s) for s in ALAW_TO_LINEAR)

#: The code each law uses for silence (decodes to the smallest positive level).
ULAW_SILENCE: Final = 0xFF
ALAW_SILENCE: Final = 0xD5


def encode_ulaw(samples: list[int] | tuple[int, ...]) -> bytes:
    """Encode a sequence of signed 16-bit samples to a PCMU payload."""
    return bytes(ulaw_encode(s) for s in samples)


def encode_alaw(samples: list[int] | tuple[int, ...]) -> bytes:
    """Encode a sequence of signed 16-bit samples to a PCMA payload."""
    return bytes(alaw_encode(s) for s in samples)


def decode_ulaw(payload: bytes) -> list[int]:
    """Decode a PCMU payload to signed 16-bit samples."""
    return [ULAW_TO_LINEAR[b] for b in payload]


def decode_alaw(payload: bytes) -> list[int]:
    """Decode a PCMA payload to signed 16-bit samples."""
    return [ALAW_TO_LINEAR[b] for b in payload]
