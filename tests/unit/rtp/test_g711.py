from hypothesis import given
from hypothesis import strategies as st
from sip2uc_media.rtp.g711 import (
    ALAW_TO_LINEAR,
    PCMA_TO_PCMU,
    PCMU_TO_PCMA,
    ULAW_TO_LINEAR,
    alaw_decode,
    alaw_encode,
    decode_ulaw,
    encode_alaw,
    encode_ulaw,
    ulaw_decode,
    ulaw_encode,
)


def test_ulaw_encodes_known_samples() -> None:
    assert [ulaw_encode(s) for s in (0, -1, 100, -100, 1000, 32767, -32768)] == [
        0xFF,
        0x7F,
        0xF2,
        0x73,
        0xCE,
        0x80,
        0x00,
    ]


def test_alaw_encodes_known_samples() -> None:
    assert [alaw_encode(s) for s in (0, -1, 100, -100, 1000, 32767, -32768)] == [
        0xD5,
        0x55,
        0xD3,
        0x53,
        0xFA,
        0xAA,
        0x2A,
    ]


def test_decoders_return_interval_midpoints_at_the_extremes() -> None:
    assert (ulaw_decode(0x00), ulaw_decode(0x80), ulaw_decode(0xFF)) == (-32124, 32124, 0)
    assert (alaw_decode(0x2A), alaw_decode(0xAA), alaw_decode(0xD5)) == (-32256, 32256, 8)


def test_every_alaw_code_round_trips() -> None:
    assert [alaw_encode(alaw_decode(c)) for c in range(256)] == list(range(256))


def test_every_ulaw_code_round_trips_except_negative_zero() -> None:
    # 0x7F is "-0": it decodes to 0, which encodes as the positive zero 0xFF.
    assert [c for c in range(256) if ulaw_encode(ulaw_decode(c)) != c] == [0x7F]
    assert all(ulaw_decode(ulaw_encode(ulaw_decode(c))) == ulaw_decode(c) for c in range(256))


def test_transcoding_tables_are_256_bytes_and_keep_silence() -> None:
    assert len(PCMU_TO_PCMA) == len(PCMA_TO_PCMU) == 256
    assert bytes([0xFF]).translate(PCMU_TO_PCMA) == bytes([0xD5])
    assert bytes([0xD5]).translate(PCMA_TO_PCMU) == bytes([0xFE])


def test_transcoding_keeps_sign_and_order_of_levels() -> None:
    by_level = sorted(range(256), key=lambda c: ULAW_TO_LINEAR[c])
    mapped = [ALAW_TO_LINEAR[PCMU_TO_PCMA[c]] for c in by_level]
    assert mapped == sorted(mapped)
    by_level_a = sorted(range(256), key=lambda c: ALAW_TO_LINEAR[c])
    mapped_u = [ULAW_TO_LINEAR[PCMA_TO_PCMU[c]] for c in by_level_a]
    assert mapped_u == sorted(mapped_u)
    for c in range(256):
        if ULAW_TO_LINEAR[c]:
            assert (ULAW_TO_LINEAR[c] > 0) == (ALAW_TO_LINEAR[PCMU_TO_PCMA[c]] > 0)


def test_transcoding_table_equals_decode_then_encode() -> None:
    payload = bytes(range(256))
    assert payload.translate(PCMU_TO_PCMA) == encode_alaw(decode_ulaw(payload))


@given(st.integers(min_value=-32768, max_value=32767))
def test_ulaw_quantisation_error_is_within_its_segment_step(sample: int) -> None:
    decoded = ulaw_decode(ulaw_encode(sample))
    assert abs(decoded - sample) <= max(1024, abs(sample) // 16)


@given(st.lists(st.integers(min_value=-32768, max_value=32767), max_size=200))
def test_encoders_produce_one_byte_per_sample(samples: list[int]) -> None:
    assert len(encode_ulaw(samples)) == len(encode_alaw(samples)) == len(samples)
