"""RFC 3264 offer/answer with handsets, and the relay media each side ends up with."""

from __future__ import annotations

import pytest
from sip2uc_media.b2bua.offer_answer import (
    CodecSpec,
    MediaSpec,
    OfferAnswerError,
    answer_offer,
    build_offer,
    mirror,
    peer_leg_media,
    read_answer,
    spec_for_leg,
)
from sip2uc_media.rtp.relay import Direction, LegMedia


def handset_sdp(
    formats: str = "0 8 101",
    *,
    direction: str = "sendrecv",
    host: str = "192.0.2.10",
    port: int = 4000,
    extra: str = "",
) -> bytes:
    lines = [
        "v=0",
        f"o=- 1 1 IN IP4 {host}",
        "s=-",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {formats}",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:18 G729/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        f"a={direction}",
    ]
    return ("\r\n".join(lines) + "\r\n" + extra).encode()


def answer(offer: bytes) -> tuple[str, LegMedia]:
    sdp, negotiated = answer_offer(
        offer, address="198.51.100.1", port=30000, session_id="7", session_version=1
    )
    return sdp.serialize().decode(), negotiated.leg_media()


def test_our_offer_lists_pcmu_pcma_and_telephone_event_on_the_relay_port() -> None:
    sdp = build_offer(address="198.51.100.1", port=30000, session_id="7", session_version=2)

    assert sdp.serialize() == (
        b"v=0\r\no=sip2uc 7 2 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n"
        b"m=audio 30000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )


def test_answer_picks_the_first_g711_the_handset_lists_and_keeps_its_event_type() -> None:
    text, media = answer(handset_sdp("18 8 0 101"))

    assert "m=audio 30000 RTP/AVP 8 101\r\n" in text
    assert "a=fmtp:101 0-15\r\n" in text
    assert media == LegMedia(
        remote_rtp=("192.0.2.10", 4000),
        audio_pt=8,
        telephone_event_pt=101,
        direction=Direction.SENDRECV,
    )


def test_answer_without_pcmu_or_pcma_is_488() -> None:
    with pytest.raises(OfferAnswerError) as caught:
        answer(handset_sdp("18 101"))

    assert caught.value.status == 488


def test_unparseable_sdp_is_400() -> None:
    with pytest.raises(OfferAnswerError) as caught:
        answer(b"x=1\r\n")

    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ("sendonly", "recvonly"),
        ("recvonly", "sendonly"),
        ("inactive", "inactive"),
        ("sendrecv", "sendrecv"),
    ],
)
def test_answer_mirrors_the_offered_direction(offered: str, answered: str) -> None:
    text, media = answer(handset_sdp(direction=offered))

    assert text.endswith(f"a={answered}\r\n")
    assert media.direction == Direction(offered)


def test_rfc2543_hold_address_means_the_handset_only_sends() -> None:
    text, media = answer(handset_sdp(host="0.0.0.0"))

    assert media.remote_rtp is None
    assert media.direction is Direction.SENDONLY
    assert text.endswith("a=recvonly\r\n")


def test_a_port_zero_stream_is_skipped_and_rejected_in_the_answer() -> None:
    offer = handset_sdp(port=0, extra="m=audio 5000 RTP/AVP 0\r\nm=video 6000 RTP/AVP 96\r\n")

    text, media = answer(offer)

    assert "m=audio 0 RTP/AVP 0 8 101\r\n" in text
    assert "m=audio 30000 RTP/AVP 0\r\n" in text
    assert "m=video 0 RTP/AVP 96\r\n" in text
    assert media.remote_rtp == ("192.0.2.10", 5000)
    assert media.telephone_event_pt is None


def test_only_a_rejected_audio_stream_is_488() -> None:
    with pytest.raises(OfferAnswerError) as caught:
        answer(handset_sdp(port=0))

    assert caught.value.status == 488


def test_reading_an_answer_takes_its_law_and_rtcp_port() -> None:
    negotiated = read_answer(handset_sdp("8 101", extra="a=rtcp:4005\r\n"))

    assert negotiated.audio_pt == 8
    assert negotiated.remote_rtcp == ("192.0.2.10", 4005)
    assert negotiated.telephone_event_pt == 101


def test_an_answer_that_rejects_the_stream_is_488() -> None:
    with pytest.raises(OfferAnswerError) as caught:
        read_answer(handset_sdp(port=0))

    assert caught.value.status == 488


def test_mirror_swaps_send_and_receive() -> None:
    assert [mirror(d) for d in Direction] == [
        Direction.SENDRECV,
        Direction.RECVONLY,
        Direction.SENDONLY,
        Direction.INACTIVE,
    ]


def test_leg_spec_names_the_handsets_law_first_then_the_other_and_events() -> None:
    negotiated = read_answer(handset_sdp("8 101"))

    spec = spec_for_leg(host="198.51.100.1", port=30002, negotiated=negotiated)

    assert spec == MediaSpec(
        host="198.51.100.1",
        port=30002,
        codecs=(
            CodecSpec("PCMA", 8),
            CodecSpec("PCMU", 0),
            CodecSpec("telephone-event", 101, 8000, "0-16"),
        ),
    )


def test_peer_leg_uses_the_peers_first_law_and_stays_sendrecv_on_hold() -> None:
    peer = MediaSpec(
        host="198.51.100.2",
        port=31000,
        codecs=(CodecSpec("PCMU", 0), CodecSpec("PCMA", 8), CodecSpec("telephone-event", 101)),
        direction=Direction.SENDONLY,
    )

    assert peer_leg_media(peer) == LegMedia(
        remote_rtp=("198.51.100.2", 31000), audio_pt=0, telephone_event_pt=101
    )
    assert peer_leg_media(peer, audio_pt=8).audio_pt == 8


def test_a_peer_without_g711_is_refused() -> None:
    peer = MediaSpec(host="198.51.100.2", port=31000, codecs=(CodecSpec("G729", 18),))

    with pytest.raises(OfferAnswerError):
        peer_leg_media(peer)
