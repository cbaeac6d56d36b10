"""SIP requests and responses: parsing, serialising and building responses (RFC 3261 §7, §8.2.6).

:func:`parse_message` takes one whole datagram or one message cut out of a stream by
:class:`sip2uc_core.sip.framing.StreamFramer` and either returns a :class:`SipRequest` /
:class:`SipResponse` or raises :class:`SipParseError` carrying the status the request deserves.

What the parser checks eagerly is what every layer above needs anyway: the start line, the
mandatory headers and their uniqueness, CSeq (and that its method matches the request's),
Via, From, To, Max-Forwards and Content-Length.  Everything else (Contact, Expires, Date, Require,
URI schemes) is parsed on access, and the checks a UAS applies before acting are in
:func:`validate_request` / :func:`validate_response`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Literal

from .errors import SipParseError
from .headers import (
    COMPACT_NAMES,
    HEADER_NAMES,
    CSeq,
    Headers,
    NameAddr,
    Via,
    header_key,
    parse_contact,
    parse_cseq,
    parse_int_header,
    parse_name_addr,
    parse_params,
    parse_via,
)
from .uri import SipUri, Uri, parse_uri

__all__ = [
    "DEFAULT_MAX_SIZE",
    "REASON_PHRASES",
    "SIP_VERSION",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "accepts_media_type",
    "make_response",
    "parse_message",
    "unsupported_requirements",
    "validate_request",
    "validate_response",
]

SIP_VERSION = "SIP/2.0"
DEFAULT_MAX_SIZE = 65536

# RFC 3261 §21 and the extensions a registrar/B2BUA meets.
REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

_METHOD_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_HEADER_NAME_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+\Z", re.IGNORECASE)
_FOLD_RE = re.compile(r"\n[ \t]+")
_DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT\Z"
)

# Header names as commonly spelled on the wire -> lookup key
_KNOWN_NAME_KEYS: dict[str, str] = {
    spelled: header_key(spelled)
    for name in (*HEADER_NAMES, *COMPACT_NAMES)
    for spelled in (name, name.lower())
}

# Headers that may appear at most once (RFC 3261 §7.3.1: only list headers may repeat).
_SINGLE_KEYS = ("call-id", "cseq", "from", "to", "max-forwards", "content-type")
_MANDATORY = (
    ("via", "Via"),
    ("from", "From"),
    ("to", "To"),
    ("call-id", "Call-ID"),
    ("cseq", "CSeq"),
)


class SipMessage:
    """Accessors shared by requests and responses; parsed values are cached in ``headers``."""

    headers: Headers
    body: bytes
    version: str

    def _start_line(self) -> str:
        raise NotImplementedError

    # -- serialisation -------------------------------------------------------------------------

    def serialize(self) -> bytes:
        """The wire form; Content-Length always states the real body length (RFC 3261 §20.14)."""
        length = str(len(self.body))
        lines = [self._start_line()]
        wrote_length = False
        for key, name, value in self.headers._items:
            if key == "content-length":
                if wrote_length:
                    continue
                value = length
                wrote_length = True
            lines.append(f"{name}: {value}")
        if not wrote_length:
            lines.append(f"Content-Length: {length}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.serialize()

    # -- typed header views --------------------------------------------------------------------

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header", field=name)
        return value

    @property
    def call_id(self) -> str:
        return self._required("Call-ID")

    @property
    def cseq(self) -> CSeq:
        return self.headers.parsed("cseq", lambda: parse_cseq(self._required("CSeq")))

    @property
    def from_(self) -> NameAddr:
        return self.headers.parsed(
            "from", lambda: parse_name_addr(self._required("From"), field="From")
        )

    @property
    def to(self) -> NameAddr:
        return self.headers.parsed("to", lambda: parse_name_addr(self._required("To"), field="To"))

    @property
    def vias(self) -> list[Via]:
        return self.headers.parsed(
            "via", lambda: [parse_via(v) for v in self.headers.get_all("Via")]
        )

    @property
    def top_via(self) -> Via:
        vias = self.vias
        if not vias:
            raise SipParseError("missing Via header", field="Via")
        return vias[0]

    @property
    def branch(self) -> str | None:
        """The top Via's branch (RFC 3261 §17.2.3 transaction key)."""
        vias = self.vias
        return vias[0].branch if vias else None

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        return None if value is None else parse_int_header("Max-Forwards", value)

    @property
    def contact(self) -> list[NameAddr]:
        """Every Contact value; empty for none and for the ``*`` wildcard (see
        :attr:`contact_is_star`)."""
        contacts = self._contacts()
        return [] if contacts == "*" else contacts

    @property
    def contact_is_star(self) -> bool:
        return self._contacts() == "*"

    def _contacts(self) -> list[NameAddr] | Literal["*"]:
        return self.headers.parsed(
            "contact", lambda: parse_contact(self.headers.get_all("Contact"))
        )

    @property
    def expires(self) -> int | None:
        value = self.headers.get("Expires")
        return None if value is None else parse_int_header("Expires", value)

    @property
    def content_type(self) -> str | None:
        """The media type, lower-cased, without parameters (``application/sdp``)."""
        value = self.headers.get("Content-Type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip().lower()

    @property
    def routes(self) -> list[NameAddr]:
        return self.headers.parsed(
            "route",
            lambda: [parse_name_addr(v, field="Route") for v in self.headers.get_all("Route")],
        )

    @property
    def record_routes(self) -> list[NameAddr]:
        return self.headers.parsed(
            "record-route",
            lambda: [
                parse_name_addr(v, field="Record-Route")
                for v in self.headers.get_all("Record-Route")
            ],
        )


@dataclass(eq=True)
class SipRequest(SipMessage):
    method: str
    uri: Uri
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION
    #: Octets the message took on the wire (0 when built locally); what holding it costs.
    wire_size: int = field(default=0, compare=False, repr=False)

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"


@dataclass(eq=True)
class SipResponse(SipMessage):
    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION
    #: Octets the message took on the wire (0 when built locally).
    wire_size: int = field(default=0, compare=False, repr=False)

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"


# -- parsing ------------------------------------------------------------------------------------


def parse_message(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> SipRequest | SipResponse:
    """Parse one SIP message.

    Octets after the body that Content-Length announces are ignored (RFC 3261 §18.3; RFC 4475
    §3.1.1.8).  Without Content-Length the body runs to the end of ``data`` (datagram rule; a
    stream framer always supplies it).  Leading CRLFs are skipped (RFC 3261 §7.5).
    """
    if len(data) > max_size:
        raise SipParseError(
            f"message of {len(data)} octets exceeds {max_size}", status=413, field="body"
        )
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        body_start = end + 4
    else:
        # Tolerate bare-LF line ends, as several SIP stacks do (RFC 3261 §7 asks for CRLF).
        end = data.find(b"\n\n")
        if end < 0:
            raise SipParseError("header section is not terminated by an empty line")
        body_start = end + 2
    head = data[:end].decode("utf-8", "surrogateescape")
    if "\r" in head:
        head = head.replace("\r\n", "\n")
    if "\n " in head or "\n\t" in head:
        head = _FOLD_RE.sub(" ", head)  # RFC 3261 §7.3.1 line folding
    lines = head.split("\n")
    start = lines[0]

    items: list[tuple[str, str, str]] = []
    index: dict[str, list[str]] = {}
    known = _KNOWN_NAME_KEYS
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        # the common spellings skip validation and case folding
        key = known.get(name) if colon else None
        if key is None:
            name = name.rstrip(" \t")
            if not colon or not _HEADER_NAME_RE.match(name):
                raise SipParseError(f"malformed header line {line[:60]!r}")
            key = header_key(name)
        value = value.strip(" \t")
        items.append((key, name, value))
        existing = index.get(key)
        if existing is None:
            index[key] = [value]
        else:
            existing.append(value)
    headers = Headers._from_parsed(items)
    headers._index = index

    for key, canonical in _MANDATORY:
        if key not in index:
            raise SipParseError(f"missing {canonical} header", field=canonical)
    for key in _SINGLE_KEYS:
        values = index.get(key)
        if values is not None and len(values) > 1:
            raise SipParseError(f"more than one {_field_name(key)} header", field=_field_name(key))

    body = _body(data, body_start, index.get("content-length"))
    size = len(data)

    message: SipRequest | SipResponse
    if start.startswith(("SIP/", "sip/")):
        message = _parse_status_line(start, headers, body, size)
    else:
        message = _parse_request_line(start, headers, body, size)

    # Parse what every layer needs now, so that a malformed one is answered with 400 here
    # (RFC 4475 §3.1.2.1, §3.1.2.4, §3.1.2.6, §3.1.2.15) and later accesses hit the cache.
    cseq = message.cseq
    if not message.call_id:
        raise SipParseError("empty Call-ID", field="Call-ID")
    if isinstance(message, SipRequest) and cseq.method != message.method:
        # RFC 3261 §8.1.1.5; RFC 4475 §3.1.2.17-§3.1.2.18
        raise SipParseError(
            f"CSeq method {cseq.method} does not match request method", field="CSeq"
        )
    if not message.vias:
        raise SipParseError("empty Via header", field="Via")
    _ = message.from_
    _ = message.to
    _ = message.max_forwards
    return message


def _field_name(key: str) -> str:
    return {
        "call-id": "Call-ID",
        "cseq": "CSeq",
        "from": "From",
        "to": "To",
        "max-forwards": "Max-Forwards",
        "content-type": "Content-Type",
    }.get(key, key)


def _body(data: bytes, body_start: int, lengths: list[str] | None) -> bytes:
    if lengths is None:
        return data[body_start:]
    values = {v.strip() for line in lengths for v in line.split(",")}
    if len(values) != 1:
        # RFC 4475 §3.3.9: conflicting lengths leave no way to find the body's end
        raise SipParseError("conflicting Content-Length values", field="Content-Length")
    length = parse_int_header("Content-Length", values.pop())
    available = len(data) - body_start
    if length > available:
        # RFC 3261 §18.3 / RFC 4475 §3.1.2.2: over UDP a short body is a 400
        raise SipParseError(
            f"Content-Length {length} exceeds the {available} octets received",
            field="Content-Length",
        )
    return data[body_start : body_start + length]


def _check_version(version: str) -> None:
    if version == SIP_VERSION:
        return
    if _VERSION_RE.match(version):
        if version.upper() == SIP_VERSION:
            return
        raise SipParseError(f"unsupported version {version[:20]}", status=505, field="start-line")
    raise SipParseError(f"invalid SIP version {version[:20]!r}", field="start-line")


def _parse_request_line(line: str, headers: Headers, body: bytes, size: int) -> SipRequest:
    # Exactly one SP between the elements (RFC 3261 §25.1 Request-Line); extra or trailing
    # whitespace is rejected rather than guessed at (RFC 4475 §3.1.2.8-§3.1.2.10).
    parts = line.split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise SipParseError(f"malformed Request-Line {line[:80]!r}", field="start-line")
    method, uri_text, version = parts
    _check_version(version)
    if not _METHOD_RE.match(method):
        raise SipParseError(f"invalid method {method[:40]!r}", field="start-line")
    return SipRequest(method, parse_uri(uri_text), headers, body, version, size)


def _parse_status_line(line: str, headers: Headers, body: bytes, size: int) -> SipResponse:
    version, _, rest = line.partition(" ")
    _check_version(version)
    code, _, reason = rest.partition(" ")
    if len(code) != 3 or not (code.isascii() and code.isdigit()) or not "100" <= code <= "699":
        raise SipParseError(f"invalid status code {code[:20]!r}", field="start-line")
    return SipResponse(int(code), reason, headers, body, version, size)


# -- building responses -----------------------------------------------------------------------


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> SipResponse:
    """A response to ``request`` per RFC 3261 §8.2.6.2.

    Via (every value, in order), From, Call-ID and CSeq are copied; To is copied and gets
    ``to_tag`` unless it already has a tag.  A 100 Trying copies Timestamp (§8.2.6.1).
    """
    # The copied values come from a parsed (or checked) request, so they are added without
    # being validated again; only the caller's extra headers are checked.
    source = request.headers
    index = source._lookup()
    items = [item for item in source._items if item[0] == "via"]
    to_value = _first(index, "to")
    if to_tag is not None and request.to.tag is None:
        to_value = f"{to_value};tag={to_tag}"
    items.append(("from", "From", _first(index, "from")))
    items.append(("to", "To", to_value))
    items.append(("call-id", "Call-ID", request.call_id))
    items.append(("cseq", "CSeq", _first(index, "cseq")))
    if status == 100:
        timestamp = index.get("timestamp")
        if timestamp:
            items.append(("timestamp", "Timestamp", timestamp[0]))
    check = Headers._check
    for name, value in headers:
        check(name, value)
        items.append((header_key(name), name, value))
    return SipResponse(
        status,
        REASON_PHRASES.get(status, "Unknown") if reason is None else reason,
        Headers._from_parsed(items),
        body,
    )


def _first(index: dict[str, list[str]], key: str) -> str:
    values = index.get(key)
    return values[0] if values else ""


# -- checks a UAS applies before acting ----------------------------------------------------------


def validate_request(
    request: SipRequest, *, uri_schemes: Collection[str] = ("sip", "sips")
) -> SipParseError | None:
    """The error a UAS should answer with, or ``None`` if the request may be processed.

    Covers the checks that need the request as a whole rather than one header's syntax:

    * Request-URI scheme not in ``uri_schemes`` -> 416 (RFC 3261 §8.2.2.1; RFC 4475 §3.3.2, §3.3.3)
    * Request-URI carrying URI headers -> 400 (RFC 3261 §19.1.5; RFC 4475 §3.1.2.11)
    * Contact, Expires and Date syntax -> 400 (RFC 4475 §3.1.2.12, §3.1.2.13; RFC 3261 §20.17
      allows only GMT)
    * REGISTER whose To is not a SIP/SIPS URI -> 400 (RFC 3261 §10.3; RFC 4475 §3.3.4)
    """
    uri = request.uri
    if uri.scheme not in uri_schemes:
        return SipParseError(
            f"unsupported Request-URI scheme {uri.scheme}", status=416, field="uri"
        )
    if isinstance(uri, SipUri) and uri.headers:
        return SipParseError("Request-URI carries header fields", field="uri")
    try:
        contacts = request.contact
        for contact in contacts:
            _ = contact.expires
            _ = contact.q
        _ = request.expires
        date = request.headers.get("Date")
        if date is not None and not _DATE_RE.match(date):
            return SipParseError("Date must be an RFC 1123 date in GMT", field="Date")
        if request.method == "REGISTER" and not isinstance(request.to.uri, SipUri):
            return SipParseError("address-of-record must be a SIP or SIPS URI", field="To")
        for name in ("Route", "Record-Route"):
            for value in request.headers.get_all(name):
                parse_name_addr(value, field=name)
    except SipParseError as exc:
        return exc
    return None


def validate_response(response: SipResponse) -> SipParseError | None:
    """Whether a response reaching us as a UA may be processed; non-``None`` means drop it.

    A UAC discards responses with more than one Via (RFC 3261 §8.1.3.3), which also stops a
    response aimed at a broadcast address from being acted on (RFC 4475 §3.3.10).
    """
    if len(response.vias) != 1:
        return SipParseError("response with more than one Via", field="Via")
    return None


def unsupported_requirements(request: SipRequest, supported: Collection[str]) -> list[str]:
    """Option tags in Require that we do not support: non-empty means 420 Bad Extension with
    these in Unsupported (RFC 3261 §8.2.2.3; RFC 4475 §3.3.5).  Proxy-Require is for proxies
    and ignored by a UAS (RFC 3261 §20.29)."""
    wanted = {tag.lower() for tag in supported}
    return [tag for tag in request.headers.get_all("Require") if tag.lower() not in wanted]


def accepts_media_type(request: SipRequest, media_type: str) -> bool:
    """Whether the request's Accept allows ``media_type``.  Without Accept, application/sdp is
    assumed (RFC 3261 §20.1); a negative answer means 406 (RFC 4475 §3.3.15)."""
    values = request.headers.get_all("Accept")
    if "Accept" not in request.headers:
        return media_type.lower() == "application/sdp"
    wanted_type, _, _ = media_type.lower().partition("/")
    for value in values:
        range_text, _, params_text = value.partition(";")
        accepted = range_text.strip().lower()
        try:
            params = parse_params(";" + params_text) if params_text else ()
        except SipParseError:
            params = ()
        if any(n.lower() == "q" and v in ("0", "0.0", "0.00", "0.000") for n, v in params):
            continue
        if accepted in (media_type.lower(), "*/*", f"{wanted_type}/*"):
            return True
    return False
