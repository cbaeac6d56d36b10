"""A small SDP (RFC 4566) model for RFC 3264 offer/answer of audio.

The description is kept as its lines, so anything we do not interpret (b=, k=, unknown a=
attributes, video sections) survives a parse/serialise round trip unchanged.  Typed accessors read
the parts an audio B2BUA acts on: c=, m=, a=rtpmap, a=fmtp, the direction attributes, a=ptime and
a=rtcp (RFC 3605).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from .errors import SipParseError

__all__ = [
    "Connection",
    "Direction",
    "MediaSection",
    "Origin",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "make_audio_sdp",
    "parse_sdp",
]

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
_DIRECTIONS: tuple[Direction, ...] = ("sendrecv", "sendonly", "recvonly", "inactive")
_LINE_RE = re.compile(r"([a-z])=(.*)\Z", re.DOTALL)


class SdpError(SipParseError):
    """Malformed SDP.  The status is 400: the body of the request is unparseable (RFC 3261
    §21.4.1); 488 is for well-formed offers we cannot accept."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status=400, field="body")


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=<nettype> <addrtype> <address>`` (RFC 4566 §5.7); ``address`` may carry ``/ttl``."""

    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"

    @property
    def host(self) -> str:
        """The address without a multicast ``/ttl`` suffix."""
        return self.address.split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`` (RFC 4566 §5.2)."""

    username: str
    session_id: str
    session_version: int
    nettype: str
    addrtype: str
    address: str

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`` (RFC 4566 §6)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    def __str__(self) -> str:
        text = f"{self.payload_type} {self.encoding}/{self.clock_rate}"
        return text if self.channels is None else f"{text}/{self.channels}"


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpError(f"malformed c= line {value[:60]!r}")
    return Connection(nettype=parts[0], addrtype=parts[1], address=parts[2])


def _parse_rtpmap(value: str) -> RtpMap:
    pt_text, _, rest = value.partition(" ")
    pieces = rest.strip().split("/")
    if (
        not pt_text.isdigit()
        or len(pieces) not in (2, 3)
        or not pieces[0]
        or not all(p.isdigit() for p in pieces[1:])
    ):
        raise SdpError(f"malformed a=rtpmap {value[:60]!r}")
    payload_type = int(pt_text)
    if payload_type > 127:
        raise SdpError(f"payload type {payload_type} out of range")
    channels = int(pieces[2]) if len(pieces) == 3 else None
    return RtpMap(payload_type, pieces[0], int(pieces[1]), channels)


class _Lines:
    """Shared access to a list of (type, value) lines."""

    lines: list[tuple[str, str]]

    def _value(self, kind: str) -> str | None:
        for k, v in self.lines:
            if k == kind:
                return v
        return None

    @property
    def attributes(self) -> list[tuple[str, str | None]]:
        """Every ``a=`` line as (name, value or None for a property attribute), in order."""
        out: list[tuple[str, str | None]] = []
        for k, v in self.lines:
            if k == "a":
                name, colon, value = v.partition(":")
                out.append((name, value if colon else None))
        return out

    def get_attribute(self, name: str) -> str | None:
        """The value of the first ``a=name:value`` (``""`` for ``a=name``), None if absent."""
        for attr, value in self.attributes:
            if attr == name:
                return "" if value is None else value
        return None

    def get_attributes(self, name: str) -> list[str]:
        return [("" if v is None else v) for a, v in self.attributes if a == name]

    def remove_attribute(self, name: str) -> None:
        self.lines = [
            (k, v) for k, v in self.lines if not (k == "a" and v.partition(":")[0] == name)
        ]

    def add_attribute(self, name: str, value: str | None = None) -> None:
        self.lines.append(("a", name if value is None else f"{name}:{value}"))

    def set_attribute(self, name: str, value: str | None = None) -> None:
        """Replace the first ``a=name`` in place (dropping the rest), or append it."""
        text = name if value is None else f"{name}:{value}"
        out: list[tuple[str, str]] = []
        done = False
        for k, v in self.lines:
            if k == "a" and v.partition(":")[0] == name:
                if not done:
                    out.append(("a", text))
                    done = True
                continue
            out.append((k, v))
        if not done:
            out.append(("a", text))
        self.lines = out

    @property
    def connection(self) -> Connection | None:
        value = self._value("c")
        return None if value is None else _parse_connection(value)

    @connection.setter
    def connection(self, value: Connection | None) -> None:
        self._set_line("c", None if value is None else str(value))

    def _set_line(self, kind: str, value: str | None) -> None:
        out: list[tuple[str, str]] = []
        done = False
        for k, v in self.lines:
            if k == kind:
                if value is not None and not done:
                    out.append((k, value))
                    done = True
                continue
            out.append((k, v))
        if value is not None and not done:
            out.insert(self._insert_position(kind, out), (kind, value))
        self.lines = out

    def _insert_position(self, kind: str, lines: list[tuple[str, str]]) -> int:
        # Keep the line order RFC 4566 §5 prescribes: before the first line that must follow.
        order = self._order()
        rank = order.find(kind)
        for i, (k, _) in enumerate(lines):
            if order.find(k) > rank:
                return i
        return len(lines)

    def _order(self) -> str:
        raise NotImplementedError

    def _direction(self) -> Direction | None:
        for k, v in self.lines:
            if k == "a" and v in _DIRECTIONS:
                return v
        return None

    def set_direction(self, direction: Direction) -> None:
        """Set the RFC 3264 §5.1 direction attribute (replacing any present)."""
        out = [(k, v) for k, v in self.lines if not (k == "a" and v in _DIRECTIONS)]
        out.append(("a", direction))
        self.lines = out


@dataclass(eq=True)
class MediaSection(_Lines):
    """One ``m=`` section; ``lines`` are the lines after the m= line, in order."""

    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    lines: list[tuple[str, str]] = field(default_factory=list)

    def _order(self) -> str:
        return "icbka"

    @property
    def m_line(self) -> str:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        return " ".join([self.media, port, self.proto, *self.formats])

    @property
    def payload_types(self) -> list[int]:
        """The formats as RTP payload types (RTP/AVP and its profiles, RFC 3551)."""
        return [int(f) for f in self.formats if f.isdigit()]

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        return {m.payload_type: m for m in map(_parse_rtpmap, self.get_attributes("rtpmap"))}

    @property
    def fmtps(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for value in self.get_attributes("fmtp"):
            pt, _, params = value.partition(" ")
            if pt.isdigit():
                out[int(pt)] = params.strip()
        return out

    @property
    def direction(self) -> Direction | None:
        """This section's own direction attribute, if any (see :meth:`SessionDescription
        .media_direction` for the effective one)."""
        return self._direction()

    @property
    def ptime(self) -> int | None:
        value = self.get_attribute("ptime")
        if value is None:
            return None
        value = value.strip()
        if not value.isdigit():
            raise SdpError(f"malformed a=ptime {value[:20]!r}")
        return int(value)

    @property
    def rtcp(self) -> tuple[int, Connection | None] | None:
        """``a=rtcp:<port> [<nettype> <addrtype> <address>]`` (RFC 3605 §2.1)."""
        value = self.get_attribute("rtcp")
        if value is None:
            return None
        port_text, _, rest = value.strip().partition(" ")
        if not port_text.isdigit() or int(port_text) > 65535:
            raise SdpError(f"malformed a=rtcp {value[:40]!r}")
        return int(port_text), (_parse_connection(rest) if rest.strip() else None)


@dataclass(eq=True)
class SessionDescription(_Lines):
    """A whole SDP body: session-level ``lines`` (v=, o=, s=, ... t=, session a=) and media."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    media: list[MediaSection] = field(default_factory=list)

    def _order(self) -> str:
        return "vosiuepcbtrzka"

    @property
    def origin(self) -> Origin | None:
        value = self._value("o")
        if value is None:
            return None
        parts = value.split()
        if len(parts) != 6 or not parts[2].isdigit():
            raise SdpError(f"malformed o= line {value[:60]!r}")
        return Origin(parts[0], parts[1], int(parts[2]), parts[3], parts[4], parts[5])

    @origin.setter
    def origin(self, value: Origin) -> None:
        self._set_line("o", str(value))

    @property
    def direction(self) -> Direction | None:
        return self._direction()

    def media_connection(self, section: MediaSection) -> Connection | None:
        """The connection that applies to ``section`` (its own c=, else the session's)."""
        return section.connection or self.connection

    def media_direction(self, section: MediaSection) -> Direction:
        """The effective direction: media-level, else session-level, else sendrecv
        (RFC 3264 §5.1)."""
        return section.direction or self.direction or "sendrecv"

    @property
    def audio(self) -> MediaSection | None:
        """The first audio section."""
        for section in self.media:
            if section.media == "audio":
                return section
        return None

    def serialize(self) -> bytes:
        out = [f"{k}={v}" for k, v in self.lines]
        for section in self.media:
            out.append(f"m={section.m_line}")
            out.extend(f"{k}={v}" for k, v in section.lines)
        out.append("")
        return "\r\n".join(out).encode("utf-8", "surrogateescape")

    def __bytes__(self) -> bytes:
        return self.serialize()


def _parse_m_line(value: str) -> MediaSection:
    parts = value.split()
    if len(parts) < 3:
        raise SdpError(f"malformed m= line {value[:60]!r}")
    media, port_text, proto, *formats = parts
    port_part, slash, count_part = port_text.partition("/")
    if not port_part.isdigit() or int(port_part) > 65535 or (slash and not count_part.isdigit()):
        raise SdpError(f"invalid port in m= line {value[:60]!r}")
    return MediaSection(
        media=media,
        port=int(port_part),
        proto=proto,
        formats=formats,
        port_count=int(count_part) if slash else None,
    )


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse an SDP body.  CRLF or bare LF line ends are accepted (RFC 4566 §5)."""
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    raw_lines = text.replace("\r\n", "\n").split("\n")
    while raw_lines and raw_lines[-1] == "":
        raw_lines.pop()
    if not raw_lines or raw_lines[0] != "v=0":
        raise SdpError("SDP must start with v=0")
    sdp = SessionDescription()
    current: list[tuple[str, str]] = sdp.lines
    for raw in raw_lines:
        m = _LINE_RE.match(raw)
        if m is None or "\r" in raw:
            raise SdpError(f"malformed SDP line {raw[:60]!r}")
        kind, value = m.group(1), m.group(2)
        if kind == "m":
            section = _parse_m_line(value)
            sdp.media.append(section)
            current = section.lines
        else:
            current.append((kind, value))
    # Validate the lines we interpret, so a bad one is reported here rather than on use.
    _ = sdp.origin
    _ = sdp.connection
    for section in sdp.media:
        _ = section.connection
        _ = section.rtpmaps
    return sdp


def make_audio_sdp(
    *,
    address: str,
    port: int,
    session_id: str,
    session_version: int,
    codecs: Iterable[RtpMap],
    fmtp: Mapping[int, str] | None = None,
    direction: Direction = "sendrecv",
    ptime: int | None = None,
    username: str = "-",
    session_name: str = "-",
) -> SessionDescription:
    """An offer or answer with one RTP/AVP audio stream (RFC 3264 §5, §6)."""
    addrtype = "IP6" if ":" in address else "IP4"
    codec_list = list(codecs)
    sdp = SessionDescription(
        lines=[
            ("v", "0"),
            ("o", f"{username} {session_id} {session_version} IN {addrtype} {address}"),
            ("s", session_name),
            ("c", f"IN {addrtype} {address}"),
            ("t", "0 0"),
        ]
    )
    section = MediaSection(
        media="audio",
        port=port,
        proto="RTP/AVP",
        formats=[str(c.payload_type) for c in codec_list],
    )
    for codec in codec_list:
        section.add_attribute("rtpmap", str(codec))
        if fmtp and codec.payload_type in fmtp:
            section.add_attribute("fmtp", f"{codec.payload_type} {fmtp[codec.payload_type]}")
    if ptime is not None:
        section.add_attribute("ptime", str(ptime))
    section.add_attribute(direction)
    sdp.media.append(section)
    return sdp
