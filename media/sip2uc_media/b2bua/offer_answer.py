"""RFC 3264 offer/answer for the one audio stream a handset leg carries.

Every SDP a handset sees names its own sidecar's relay, so the B2BUA negotiates each leg on its
own: it answers a handset's offer (an INVITE from the handset) or offers the relay to a handset
(an INVITE to it, a re-INVITE for hold) and reads the answer.  What comes out is a
:class:`Negotiated` per leg, which converts to the relay's :class:`LegMedia`; the relay then
transcodes PCMU<->PCMA and remaps the telephone-event payload type between two legs by itself.

Between two sidecars the media is described by :class:`MediaSpec` (the domain form of the
sidecar API's ``MediaEndpoint``): an address and an ordered codec list.  The stream between two
relays carries the codec named first by the answering side (docs/calls.md).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sip2uc_core.sip.errors import SipParseError
from sip2uc_core.sip.sdp import MediaSection, RtpMap, SessionDescription, make_audio_sdp, parse_sdp

from ..rtp.relay import PT_PCMA, PT_PCMU, Direction, LegMedia

__all__ = [
    "DEFAULT_TELEPHONE_EVENT_PT",
    "G711",
    "TELEPHONE_EVENT_FMTP",
    "CodecSpec",
    "MediaSpec",
    "Negotiated",
    "OfferAnswerError",
    "answer_offer",
    "build_offer",
    "mirror",
    "peer_leg_media",
    "read_answer",
    "spec_for_leg",
]

#: The G.711 laws by static payload type (RFC 3551 §6, Table 4).
G711: dict[int, str] = {PT_PCMU: "PCMU", PT_PCMA: "PCMA"}
_G711_BY_NAME = {name: pt for pt, name in G711.items()}
DEFAULT_TELEPHONE_EVENT_PT = 101
#: The DTMF events 0-9, *, #, A-D and flash (RFC 4733 §3.2).
TELEPHONE_EVENT_FMTP = "0-16"
PTIME_MS = 20

_MIRROR: dict[Direction, Direction] = {
    Direction.SENDRECV: Direction.SENDRECV,
    Direction.SENDONLY: Direction.RECVONLY,
    Direction.RECVONLY: Direction.SENDONLY,
    Direction.INACTIVE: Direction.INACTIVE,
}


class OfferAnswerError(SipParseError):
    """An offer or answer we cannot accept; ``status`` is what the request deserves
    (488 for a well-formed offer without a common codec, RFC 3261 §21.4.26; 400 for SDP that
    does not parse)."""

    def __init__(self, reason: str, *, status: int = 488) -> None:
        super().__init__(reason, status=status, field="body")


def mirror(direction: Direction) -> Direction:
    """The direction an answer takes for an offered direction (RFC 3264 §6.1)."""
    return _MIRROR[direction]


@dataclass(frozen=True, slots=True)
class CodecSpec:
    """One payload format of a :class:`MediaSpec` (``Codec`` in common.proto)."""

    name: str
    payload_type: int
    clock_rate: int = 8000
    fmtp: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaSpec:
    """Where a relay wants this leg's media and in which formats (``MediaEndpoint``)."""

    host: str
    port: int
    codecs: tuple[CodecSpec, ...]
    direction: Direction = Direction.SENDRECV
    ptime_ms: int = PTIME_MS

    @property
    def audio_pt(self) -> int | None:
        """The first G.711 format named: the law of the stream between two relays."""
        for codec in self.codecs:
            pt = _g711_pt(codec.name, codec.payload_type)
            if pt is not None:
                return pt
        return None

    @property
    def telephone_event_pt(self) -> int | None:
        for codec in self.codecs:
            if codec.name.lower() == "telephone-event" and 96 <= codec.payload_type <= 127:
                return codec.payload_type
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Negotiated:
    """The outcome of offer/answer with one handset, from the relay's point of view.

    ``direction`` is what the handset declared for itself (``sendonly`` when it puts us on
    hold); ``remote_rtp`` is None when it gave no usable address (``c=0.0.0.0`` hold).
    ``offered_pts`` are the G.711 types the handset listed, in its order of preference.
    """

    remote_rtp: tuple[str, int] | None
    remote_rtcp: tuple[str, int] | None
    audio_pt: int
    telephone_event_pt: int | None
    direction: Direction
    ptime_ms: int
    offered_pts: tuple[int, ...] = ()

    @property
    def codec(self) -> str:
        return G711[self.audio_pt]

    def leg_media(self, *, expected_ip: str | None = None) -> LegMedia:
        """The relay's view of the handset; ``expected_ip`` is its SIP source address."""
        return LegMedia(
            expected_ip=expected_ip,
            remote_rtp=self.remote_rtp,
            remote_rtcp=self.remote_rtcp,
            audio_pt=self.audio_pt,
            telephone_event_pt=self.telephone_event_pt,
            direction=self.direction,
            ptime_ms=self.ptime_ms,
        )


def _g711_pt(name: str, payload_type: int) -> int | None:
    pt = _G711_BY_NAME.get(name.upper())
    if pt is not None:
        return pt
    return payload_type if not name and payload_type in G711 else None


def _our_codecs(
    audio_pts: Sequence[int], telephone_event_pt: int | None, telephone_event_fmtp: str
) -> tuple[list[RtpMap], dict[int, str]]:
    codecs = [RtpMap(pt, G711[pt], 8000) for pt in audio_pts]
    fmtp: dict[int, str] = {}
    if telephone_event_pt is not None:
        codecs.append(RtpMap(telephone_event_pt, "telephone-event", 8000))
        fmtp[telephone_event_pt] = telephone_event_fmtp
    return codecs, fmtp


def build_offer(
    *,
    address: str,
    port: int,
    session_id: str,
    session_version: int,
    direction: Direction = Direction.SENDRECV,
    audio_pts: Sequence[int] = (PT_PCMU, PT_PCMA),
    telephone_event_pt: int | None = DEFAULT_TELEPHONE_EVENT_PT,
    telephone_event_fmtp: str = TELEPHONE_EVENT_FMTP,
) -> SessionDescription:
    """Our offer: the relay port, G.711 (PCMU then PCMA), telephone-event 0-16, ptime 20."""
    codecs, fmtp = _our_codecs(audio_pts, telephone_event_pt, telephone_event_fmtp)
    return make_audio_sdp(
        address=address,
        port=port,
        session_id=session_id,
        session_version=session_version,
        codecs=codecs,
        fmtp=fmtp,
        direction=direction.value,
        ptime=PTIME_MS,
        username="sip2uc",
    )


def _parse(sdp: SessionDescription | bytes) -> SessionDescription:
    if isinstance(sdp, SessionDescription):
        return sdp
    try:
        return parse_sdp(sdp)
    except SipParseError as exc:
        raise OfferAnswerError(exc.reason, status=400) from None


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _read_section(
    sdp: SessionDescription, section: MediaSection, candidates: Iterable[int]
) -> Negotiated:
    """Read the handset's side of an audio section, choosing the first G.711 format it lists
    among ``candidates``."""
    try:
        rtpmaps = section.rtpmaps
        connection = sdp.media_connection(section)
        ptime = section.ptime
        rtcp = section.rtcp
    except SipParseError as exc:
        raise OfferAnswerError(exc.reason, status=400) from None
    allowed = set(candidates)
    offered: list[int] = []
    telephone_event: int | None = None
    for pt in section.payload_types:
        rtpmap = rtpmaps.get(pt)
        if rtpmap is None:
            # Static types may come without a=rtpmap (RFC 4566 §6, RFC 3551 §6).
            g711 = pt if pt in G711 else None
        else:
            g711 = _g711_pt(rtpmap.encoding, pt) if rtpmap.clock_rate == 8000 else None
            if (
                telephone_event is None
                and rtpmap.encoding.lower() == "telephone-event"
                and rtpmap.clock_rate == 8000
                and 96 <= pt <= 127
            ):
                telephone_event = pt
        if g711 is not None and g711 in allowed and g711 not in offered:
            offered.append(g711)
    if not offered:
        raise OfferAnswerError("no PCMU or PCMA in the audio stream")
    direction = Direction(sdp.media_direction(section))
    host = connection.host if connection is not None else None
    remote: tuple[str, int] | None = None
    if host is not None and not _is_unspecified(host):
        remote = (host, section.port)
    elif direction is not Direction.INACTIVE:
        # c=0.0.0.0 is RFC 2543 hold: the endpoint does not want media (RFC 3264 §8.4).
        direction = Direction.INACTIVE if direction is Direction.RECVONLY else Direction.SENDONLY
    remote_rtcp: tuple[str, int] | None = None
    if rtcp is not None and remote is not None:
        rtcp_port, rtcp_connection = rtcp
        remote_rtcp = (rtcp_connection.host if rtcp_connection else remote[0], rtcp_port)
    return Negotiated(
        remote_rtp=remote,
        remote_rtcp=remote_rtcp,
        audio_pt=offered[0],
        telephone_event_pt=telephone_event,
        direction=direction,
        ptime_ms=ptime if ptime else PTIME_MS,
        offered_pts=tuple(offered),
    )


def answer_offer(
    offer: SessionDescription | bytes,
    *,
    address: str,
    port: int,
    session_id: str,
    session_version: int,
) -> tuple[SessionDescription, Negotiated]:
    """Answer a handset's offer with the relay (RFC 3264 §6).

    The first audio stream with a non-zero port is accepted with the first G.711 law the
    handset lists and its own telephone-event type; every other stream is rejected with port 0
    (§6: the answer has as many m= lines as the offer).  The direction mirrors the offer's.
    Raises :class:`OfferAnswerError` (488) when no stream can be accepted.
    """
    sdp = _parse(offer)
    chosen: MediaSection | None = None
    negotiated: Negotiated | None = None
    error: OfferAnswerError | None = None
    for section in sdp.media:
        if section.media != "audio" or section.port == 0 or not section.proto.startswith("RTP/"):
            continue
        try:
            negotiated = _read_section(sdp, section, G711)
        except OfferAnswerError as exc:
            if exc.status != 488:
                raise
            error = exc
            continue
        chosen = section
        break
    if chosen is None or negotiated is None:
        raise error or OfferAnswerError("no audio stream offered")
    audio_pts = [negotiated.audio_pt]
    answer = build_offer(
        address=address,
        port=port,
        session_id=session_id,
        session_version=session_version,
        direction=mirror(negotiated.direction),
        audio_pts=audio_pts,
        telephone_event_pt=negotiated.telephone_event_pt,
        # Echo the events the handset listed: the relay understands all of 0-16 (RFC 4733 §2.4.1)
        telephone_event_fmtp=chosen.fmtps.get(negotiated.telephone_event_pt or -1)
        or TELEPHONE_EVENT_FMTP,
    )
    ours = answer.media[0]
    sections: list[MediaSection] = []
    for section in sdp.media:
        if section is chosen:
            sections.append(ours)
        else:
            sections.append(
                MediaSection(
                    media=section.media, port=0, proto=section.proto, formats=section.formats
                )
            )
    answer.media = sections
    return answer, negotiated


def read_answer(
    answer: SessionDescription | bytes, *, offered_pts: Sequence[int] = (PT_PCMU, PT_PCMA)
) -> Negotiated:
    """Read a handset's answer to our offer (RFC 3264 §7).

    The answer's first G.711 format that we offered is the codec; its telephone-event type is
    the one it sends and expects.  A rejected stream (port 0) or no common law raises
    :class:`OfferAnswerError` (488): the call cannot carry audio.
    """
    sdp = _parse(answer)
    section = sdp.audio
    if section is None or section.port == 0:
        raise OfferAnswerError("the audio stream was rejected")
    return _read_section(sdp, section, offered_pts)


def spec_for_leg(
    *, host: str, port: int, negotiated: Negotiated | None, direction: Direction | None = None
) -> MediaSpec:
    """The :class:`MediaSpec` another relay uses to reach this leg's peer port.

    The handset's chosen law comes first (the stream between relays carries it when this side
    answers), then the other law (this relay can transcode), then telephone-event.
    """
    first = negotiated.audio_pt if negotiated is not None else PT_PCMU
    pts = [first, *(pt for pt in (PT_PCMU, PT_PCMA) if pt != first)]
    codecs = [CodecSpec(G711[pt], pt) for pt in pts]
    codecs.append(
        CodecSpec("telephone-event", DEFAULT_TELEPHONE_EVENT_PT, 8000, TELEPHONE_EVENT_FMTP)
    )
    if direction is None:
        direction = negotiated.direction if negotiated is not None else Direction.SENDRECV
    return MediaSpec(host=host, port=port, codecs=tuple(codecs), direction=direction)


def peer_leg_media(peer: MediaSpec, *, audio_pt: int | None = None) -> LegMedia:
    """The relay's view of another sidecar's relay: a fixed, trusted address.

    ``audio_pt`` overrides the law of the stream (the side that answered chose it); otherwise
    the first G.711 codec the peer names is used.  Hold on the far handset is applied by that
    sidecar's relay, so the stream between relays stays ``sendrecv``.
    """
    pt = audio_pt if audio_pt is not None else peer.audio_pt
    if pt is None:
        raise OfferAnswerError("the peer offers no PCMU or PCMA")
    remote = (peer.host, peer.port) if peer.port and not _is_unspecified(peer.host) else None
    return LegMedia(
        remote_rtp=remote,
        audio_pt=pt,
        telephone_event_pt=peer.telephone_event_pt,
        direction=Direction.SENDRECV,
        ptime_ms=peer.ptime_ms or PTIME_MS,
    )
