import itertools

from sip2uc_media.rtp.g711 import ULAW_SILENCE, decode_alaw, decode_ulaw
from sip2uc_media.rtp.tones import CONFIRM, ERROR, RISING, Segment, tone_frames, tone_samples


def test_confirmation_tone_is_twenty_160_byte_frames() -> None:
    frames = tone_frames(CONFIRM, "PCMU")
    assert len(frames) == 20
    assert {len(f) for f in frames} == {160}


def test_gap_between_beeps_is_silence() -> None:
    frames = tone_frames(CONFIRM, "PCMU")
    assert frames[5] == bytes([ULAW_SILENCE]) * 160


def test_beep_has_the_requested_peak_and_frequency() -> None:
    samples = decode_ulaw(b"".join(tone_frames(CONFIRM, "PCMU")[:5]))
    assert 6500 <= max(samples) <= 7500
    rising = sum(1 for a, b in itertools.pairwise(samples) if a < 0 <= b)
    assert rising in (42, 43)  # 425 Hz for 100 ms


def test_alaw_frames_decode_to_the_same_tone() -> None:
    a = decode_alaw(b"".join(tone_frames(RISING, "PCMA")))
    assert len(a) == 400 * 8


def test_partial_last_frame_is_padded_to_160_bytes() -> None:
    frames = tone_frames((Segment(425, 30),), "PCMU")
    assert [len(f) for f in frames] == [160, 160]
    assert frames[1][80:] == bytes([ULAW_SILENCE]) * 80


def test_error_tone_lasts_its_three_segments_and_pause() -> None:
    assert len(tone_samples(ERROR)) == (3 * 330 + 1000) * 8
