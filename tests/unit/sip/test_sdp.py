"""SDP for audio offer/answer (RFC 4566, RFC 3264, RFC 3605)."""

from __future__ import annotations

import pytest
from sip2uc_core.sip.errors import SipParseError
from sip2uc_core.sip.sdp import (
    Connection,
    Origin,
    RtpMap,
    SdpError,
    make_audio_sdp,
    parse_sdp,
)

OFFER = (
    b"v=0\r\n"
    b"o=handset 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"a=X-vendor:thing\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\n"
    b"b=AS:64\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=ptime:20\r\n"
    b"a=rtcp:49171 IN IP4 192.0.2.11\r\n"
    b"a=sendonly\r\n"
    b"m=video 0 RTP/AVP 31\r\n"
)


def test_offer_round_trips_byte_for_byte() -> None:
    assert bytes(parse_sdp(OFFER)) == OFFER


def test_audio_offer_fields() -> None:
    sdp = parse_sdp(OFFER)
    assert sdp.origin == Origin("handset", "2890844526", 2890844526, "IN", "IP4", "192.0.2.10")
    assert sdp.connection == Connection(address="192.0.2.10")
    audio = sdp.audio
    assert audio is not None
    assert (audio.port, audio.proto, audio.payload_types) == (49170, "RTP/AVP", [0, 8, 101])
    assert audio.rtpmaps == {
        0: RtpMap(0, "PCMU", 8000),
        8: RtpMap(8, "PCMA", 8000),
        101: RtpMap(101, "telephone-event", 8000),
    }
    assert audio.fmtps == {101: "0-15"}
    assert audio.ptime == 20
    assert audio.rtcp == (49171, Connection(address="192.0.2.11"))
    assert sdp.media_direction(audio) == "sendonly"
    assert sdp.media_connection(audio) == Connection(address="192.0.2.10")
    assert sdp.media[1].port == 0
    assert sdp.get_attribute("X-vendor") == "thing"


def test_direction_defaults_to_sendrecv_and_can_be_changed() -> None:
    sdp = parse_sdp(OFFER)
    video = sdp.media[1]
    assert video.direction is None and sdp.media_direction(video) == "sendrecv"
    audio = sdp.media[0]
    audio.set_direction("inactive")
    assert audio.get_attributes("sendonly") == [] and audio.direction == "inactive"


def test_connection_setter_keeps_rfc4566_line_order() -> None:
    sdp = parse_sdp(OFFER)
    audio = sdp.media[0]
    audio.connection = Connection(address="2001:db8::5", addrtype="IP6")
    assert audio.lines[0] == ("c", "IN IP6 2001:db8::5")
    assert audio.lines[1] == ("b", "AS:64")


def test_lf_line_ends_are_accepted() -> None:
    assert parse_sdp(OFFER.replace(b"\r\n", b"\n")) == parse_sdp(OFFER)


def test_make_audio_sdp_builds_an_answer() -> None:
    sdp = make_audio_sdp(
        address="198.51.100.1",
        port=30000,
        session_id="42",
        session_version=1,
        codecs=[RtpMap(8, "PCMA", 8000), RtpMap(101, "telephone-event", 8000)],
        fmtp={101: "0-16"},
        ptime=20,
    )
    assert bytes(sdp) == (
        b"v=0\r\no=- 42 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n"
        b"m=audio 30000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"v=1\r\n",
        b"o=x\r\n",
        b"v=0\r\nm=audio\r\n",
        b"v=0\r\nm=audio 70000 RTP/AVP 0\r\n",
        b"v=0\r\nc=IN IP4\r\n",
        b"v=0\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
        b"v=0\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:300 X/8000\r\n",
        b"v=0\r\nnot a line\r\n",
        b"v=0\r\no=a b notanumber IN IP4 h\r\n",
    ],
)
def test_malformed_sdp_raises_sdp_error_with_400(text: bytes) -> None:
    with pytest.raises(SdpError) as raised:
        parse_sdp(text)
    assert isinstance(raised.value, SipParseError)
    assert (raised.value.status, raised.value.field) == (400, "body")
