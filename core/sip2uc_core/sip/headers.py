"""SIP header fields: an ordered multi-map plus typed views of the headers we act on.

:class:`Headers` keeps every header line as (name as written, raw value) so a message round-trips;
lookups use the canonical name, so compact forms (RFC 3261 §7.3.3) and odd capitalisation
(RFC 4475 §3.1.1.1) are found under their long names.  Values are parsed only when asked for and the
result is cached until the headers change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, TypeVar, cast

from .errors import SipParseError
from .uri import AbsoluteUri, Params, SipUri, Uri, parse_uri

__all__ = [
    "COMPACT_NAMES",
    "HEADER_NAMES",
    "CSeq",
    "Headers",
    "NameAddr",
    "Via",
    "canonical_name",
    "format_params",
    "header_key",
    "is_token",
    "parse_auth_params",
    "parse_contact",
    "parse_cseq",
    "parse_int_header",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_params",
    "parse_via",
    "quote_string",
    "split_header_values",
    "unquote_string",
]

T = TypeVar("T")

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")

# Compact forms: RFC 3261 §7.3.3 and the extensions that registered one.
_COMPACT = {
    "a": "Accept-Contact",  # RFC 3841
    "b": "Referred-By",  # RFC 3892
    "c": "Content-Type",
    "d": "Request-Disposition",  # RFC 3841
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",  # RFC 3841
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",  # RFC 4474
    "o": "Event",  # RFC 6665
    "r": "Refer-To",  # RFC 3515
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",  # RFC 6665
    "v": "Via",
    "x": "Session-Expires",  # RFC 4028
    "y": "Identity",  # RFC 8224
}

# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1), so several lines may be
# combined into one and split again.  Authorization-like headers and Date contain commas that do
# not separate values and are deliberately absent.
_LIST_HEADERS = (
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Call-Info",
    "Contact",
    "Content-Encoding",
    "Content-Language",
    "Error-Info",
    "History-Info",
    "In-Reply-To",
    "P-Asserted-Identity",
    "P-Associated-URI",
    "Path",
    "Proxy-Require",
    "Reason",
    "Record-Route",
    "Reject-Contact",
    "Request-Disposition",
    "Require",
    "Route",
    "Security-Client",
    "Security-Server",
    "Security-Verify",
    "Service-Route",
    "Supported",
    "Unsupported",
    "Via",
    "Warning",
)

_OTHER_KNOWN = (
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Content-Disposition",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Event",
    "Expires",
    "From",
    "Identity",
    "Identity-Info",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Min-SE",
    "Organization",
    "Priority",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Referred-By",
    "Refer-To",
    "Reply-To",
    "Retry-After",
    "Server",
    "Session-Expires",
    "SIP-ETag",
    "SIP-If-Match",
    "Subject",
    "Subscription-State",
    "Timestamp",
    "To",
    "User-Agent",
    "WWW-Authenticate",
)

HEADER_NAMES: tuple[str, ...] = (*_LIST_HEADERS, *_OTHER_KNOWN)
"""Canonical spellings of the headers this package knows by name."""
COMPACT_NAMES: tuple[str, ...] = tuple(_COMPACT)

_CANONICAL: dict[str, str] = {n.lower(): n for n in (*_LIST_HEADERS, *_OTHER_KNOWN)}
_CANONICAL.update(_COMPACT)
# lower-cased wire name -> lookup key (the lower-cased canonical name)
_KEYS: dict[str, str] = {low: canon.lower() for low, canon in _CANONICAL.items()}
_LIST_KEYS = frozenset(n.lower() for n in _LIST_HEADERS)


def canonical_name(name: str) -> str:
    """The long, conventionally capitalised name (``"v"`` -> ``"Via"``); unknown names unchanged."""
    return _CANONICAL.get(name.lower(), name)


# The spellings callers and the wire use most, mapped straight to their key without case folding.
_SPELLED_KEYS: dict[str, str] = {
    **_KEYS,
    **{canon: canon.lower() for canon in (*_LIST_HEADERS, *_OTHER_KNOWN)},
    **{short.upper(): long.lower() for short, long in _COMPACT.items()},
}


def header_key(name: str) -> str:
    """The case-folded lookup key of a header name, compact forms mapped to long ones."""
    key = _SPELLED_KEYS.get(name)
    if key is not None:
        return key
    low = name.lower()
    return _KEYS.get(low, low)


def is_token(text: str) -> bool:
    return _TOKEN_RE.match(text) is not None


# A quoted string, an angle-bracketed URI or a comma; the alternatives cannot overlap, so the scan
# is linear whatever the input.  An unterminated quote or bracket swallows the rest of the value.
_LIST_SPLIT_RE = re.compile(r'"(?:[^"\\]|\\.)*"?|<[^>]*>?|,')


def split_header_values(value: str) -> list[str]:
    """Split a list-valued header at the commas that separate values (RFC 3261 §7.3.1).

    Commas inside quoted strings and ``<...>`` do not split.  Empty elements are dropped.
    """
    if "," not in value:
        value = value.strip()
        return [value] if value else []
    if '"' not in value and "<" not in value:
        parts = value.split(",")
    else:
        parts = []
        start = 0
        for m in _LIST_SPLIT_RE.finditer(value):
            if m.group() == ",":
                parts.append(value[start : m.start()])
                start = m.end()
        parts.append(value[start:])
    return [p for p in (part.strip() for part in parts) if p]


class Headers:
    """Ordered multi-map of header lines with case-insensitive, compact-form-aware lookup."""

    __slots__ = ("_cache", "_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []
        self._index: dict[str, list[str]] | None = None
        self._cache: dict[str, object] = {}
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _from_parsed(cls, items: list[tuple[str, str, str]]) -> Headers:
        """Build from (key, name, value) triples already validated by the message parser."""
        headers = cls.__new__(cls)
        headers._items = items
        headers._index = None
        headers._cache = {}
        return headers

    # -- reading -------------------------------------------------------------------------------

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for key, _, value in self._items:
                values = index.get(key)
                if values is None:
                    index[key] = [value]
                else:
                    values.append(value)
            self._index = index
        return index

    def get(self, name: str, default: str | None = None) -> str | None:
        """The raw value of the first line called ``name`` (not split at commas)."""
        values = self._lookup().get(header_key(name))
        return values[0] if values else default

    def get_lines(self, name: str) -> list[str]:
        """The raw value of every line called ``name``, in order."""
        return list(self._lookup().get(header_key(name), ()))

    def get_lines_with_names(self, name: str) -> list[tuple[str, str]]:
        """(name as written, raw value) of every line called ``name``, in order."""
        key = header_key(name)
        return [(n, v) for k, n, v in self._items if k == key]

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``; list-valued headers are split at separating commas."""
        key = header_key(name)
        lines = self._lookup().get(key)
        if not lines:
            return []
        if key not in _LIST_KEYS:
            return list(lines)
        out: list[str] = []
        for line in lines:
            out.extend(split_header_values(line))
        return out

    def count(self, name: str) -> int:
        """How many lines called ``name`` there are."""
        return len(self._lookup().get(header_key(name), ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and header_key(name) in self._lookup()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, name, value in self._items:
            yield name, value

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({[(n, v) for _, n, v in self._items]!r})"

    def copy(self) -> Headers:
        return Headers._from_parsed(list(self._items))

    def parsed(self, key: str, parse: Callable[[], T]) -> T:
        """``parse()``'s result, cached under ``key`` (a header key such as ``"via"``) until a
        header with that key is modified."""
        try:
            return cast(T, self._cache[key])
        except KeyError:
            value = parse()
            self._cache[key] = value
            return value

    # -- writing -------------------------------------------------------------------------------

    @staticmethod
    def _check(name: str, value: str) -> None:
        if not _TOKEN_RE.match(name):
            raise ValueError(f"invalid header name {name!r}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name} value contains a line break")

    def _changed(self, key: str) -> None:
        # Only the parsed view of the header that changed goes stale: stamping the top Via
        # must not throw away the From, To and CSeq already parsed.
        self._index = None
        if self._cache:
            self._cache.pop(key, None)

    def replace_first_value(self, name: str, value: str, parsed: object | None = None) -> None:
        """Replace the first value of the first line called ``name`` (e.g. the top Via when
        ``received``/``rport`` are stamped, RFC 3261 §18.2.1), keeping that line's other
        values and every other line in place.  ``parsed``, when given, becomes the cached
        parsed view of the header (see :meth:`parsed`)."""
        self._check(name, value)
        key = header_key(name)
        items = self._items
        for i, (k, n, v) in enumerate(items):
            if k == key:
                if "," in v:
                    rest = split_header_values(v)[1:]
                    if rest:
                        value = ", ".join([value, *rest])
                items[i] = (k, n, value)
                break
        else:
            items.append((key, name, value))
        index = self._index
        if index is not None:
            lines = index.get(key)
            if lines:
                lines[0] = value
            else:
                self._index = None
        if parsed is None:
            self._cache.pop(key, None)
        else:
            self._cache[key] = parsed

    def add(self, name: str, value: str) -> None:
        """Append a line (after any existing lines)."""
        self._check(name, value)
        key = header_key(name)
        self._items.append((key, name, value))
        self._changed(key)

    def prepend(self, name: str, value: str) -> None:
        """Insert a line before the first line of the same header (or at the very top).

        This is how a Via or Record-Route value is pushed (RFC 3261 §16.6 steps 4, 8).
        """
        self._check(name, value)
        key = header_key(name)
        position = 0
        for i, (k, _, _) in enumerate(self._items):
            if k == key:
                position = i
                break
        self._items.insert(position, (key, name, value))
        self._changed(key)

    def set(self, name: str, value: str) -> None:
        """Replace the first line called ``name`` in place, drop the others; append if absent."""
        self._check(name, value)
        key = header_key(name)
        items: list[tuple[str, str, str]] = []
        done = False
        for item in self._items:
            if item[0] == key:
                if not done:
                    items.append((key, item[1], value))
                    done = True
            else:
                items.append(item)
        if not done:
            items.append((key, name, value))
        self._items = items
        self._changed(key)

    def remove(self, name: str) -> int:
        """Remove every line called ``name``; returns how many there were."""
        key = header_key(name)
        before = len(self._items)
        self._items = [item for item in self._items if item[0] != key]
        removed = before - len(self._items)
        if removed:
            self._changed(key)
        return removed

    def remove_first_value(self, name: str) -> str | None:
        """Remove the first value of a list header (e.g. the top Via), keeping the others."""
        key = header_key(name)
        for i, (k, n, v) in enumerate(self._items):
            if k == key:
                values = split_header_values(v)
                if len(values) <= 1:
                    del self._items[i]
                else:
                    self._items[i] = (k, n, ", ".join(values[1:]))
                self._changed(key)
                return values[0] if values else None
        return None


# -- generic parameters ---------------------------------------------------------------------------

# One ";name[=value]" with LWS anywhere around the separators (RFC 3261 §25.1 SEMI, EQUAL).  The
# value is a token-like run (brackets and colons allowed for IPv6 received/maddr) or a quoted
# string.  No two alternatives overlap, so matching is linear.
_PARAM_RE = re.compile(
    r'[ \t]*;[ \t]*([^\s;=,"<>]+)(?:[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[^\s;=,"<>]+))?[ \t]*'
)


def parse_params(text: str, *, field: str | None = None) -> Params:
    """Parse ``;a=1;b;c="x y"`` (generic-param list).  Quoted values keep their quotes."""
    if not text or text.isspace():
        return ()
    out: list[tuple[str, str | None]] = []
    pos = 0
    end = len(text)
    match = _PARAM_RE.match
    while pos < end:
        m = match(text, pos)
        if m is None:
            raise SipParseError(f"malformed parameters {text[pos : pos + 40]!r}", field=field)
        name = m.group(1)
        if not _TOKEN_RE.match(name):
            raise SipParseError(f"invalid parameter name {name[:40]!r}", field=field)
        out.append((name, m.group(2)))
        pos = m.end()
    return tuple(out)


def format_params(params: Params) -> str:
    return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params)


def _param(params: Params, name: str) -> str | None:
    lname = name.lower()
    for n, v in params:
        if n.lower() == lname:
            return v
    return None


def _has_param(params: Params, name: str) -> bool:
    lname = name.lower()
    return any(n.lower() == lname for n, _ in params)


def _with_param(params: Params, name: str, value: str | None) -> Params:
    lname = name.lower()
    out = list(params)
    for i, (n, _) in enumerate(out):
        if n.lower() == lname:
            out[i] = (n, value)
            return tuple(out)
    out.append((name, value))
    return tuple(out)


def quote_string(text: str) -> str:
    """``text`` as a quoted-string, escaping ``\\`` and ``"`` (RFC 3261 §25.1 quoted-pair)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)


def unquote_string(text: str) -> str:
    """Strip the quotes of a quoted-string and undo quoted-pairs; other text is returned as is."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        return _QUOTED_PAIR_RE.sub(r"\1", inner) if "\\" in inner else inner
    return text


# -- Via ------------------------------------------------------------------------------------------

_VIA_RE = re.compile(
    r"[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/"
    r"[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?[ \t]*"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Via:
    """One Via value (RFC 3261 §20.42, RFC 3581 rport).  ``transport`` is upper-case."""

    protocol: str = "SIP/2.0"
    transport: str
    host: str
    port: int | None = None
    params: Params = ()

    def __str__(self) -> str:
        sent_by = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"{self.protocol}/{self.transport} {sent_by}{format_params(self.params)}"

    def get_param(self, name: str) -> str | None:
        return _param(self.params, name)

    def has_param(self, name: str) -> bool:
        return _has_param(self.params, name)

    def with_param(self, name: str, value: str | None) -> Via:
        """A copy with ``name`` set, e.g. ``received``/``rport`` (RFC 3261 §18.2.1, RFC 3581 §4)."""
        return Via(
            protocol=self.protocol,
            transport=self.transport,
            host=self.host,
            port=self.port,
            params=_with_param(self.params, name, value),
        )

    @property
    def branch(self) -> str | None:
        return _param(self.params, "branch")

    @property
    def received(self) -> str | None:
        return _param(self.params, "received")

    @property
    def rport(self) -> int | Literal[""] | None:
        """``None`` if absent, ``""`` if requested (flag, RFC 3581 §3), else the port filled in."""
        if not _has_param(self.params, "rport"):
            return None
        value = _param(self.params, "rport")
        return "" if value is None else int(value)

    @property
    def maddr(self) -> str | None:
        return _param(self.params, "maddr")

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"


def parse_via(value: str) -> Via:
    """Parse one Via value (already split from its neighbours)."""
    m = _VIA_RE.match(value)
    if m is None:
        raise SipParseError(f"malformed Via {value[:80]!r}", field="Via")
    port: int | None = None
    if m.group(5) is not None:
        port = int(m.group(5))
        if port > 65535:
            raise SipParseError("Via port out of range", field="Via")
    rest = value[m.end() :]
    params = parse_params(rest, field="Via") if rest else ()
    for name, pvalue in params:
        lname = name.lower()
        if lname == "rport" and pvalue is not None and not _valid_port(pvalue):
            raise SipParseError(f"invalid Via rport {pvalue[:20]!r}", field="Via")
        if lname == "branch" and pvalue is None:
            raise SipParseError("Via branch without a value", field="Via")
    return Via(
        protocol=f"{m.group(1)}/{m.group(2)}",
        transport=m.group(3).upper(),
        host=m.group(4),
        port=port,
        params=params,
    )


def _valid_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 5 and int(text) <= 65535


# -- name-addr (From, To, Contact, Route, ...) ----------------------------------------------------

_QUOTED_RE = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_ADDR_SPEC_END_RE = re.compile(r"[ \t]*;")


@dataclass(frozen=True, slots=True, kw_only=True)
class NameAddr:
    """``display-name <uri>;params`` (RFC 3261 §20.10, §20.20, §20.39).

    ``display_name`` is unquoted (quoted-pairs undone); header ``params`` keep quoted values raw.
    """

    display_name: str | None = None
    uri: Uri
    params: Params = ()

    def __str__(self) -> str:
        # Always the name-addr form: an addr-spec with ',', ';' or '?' would be ambiguous
        # (RFC 3261 §20.10).
        display = "" if self.display_name is None else quote_string(self.display_name) + " "
        return f"{display}<{self.uri}>{format_params(self.params)}"

    def get_param(self, name: str) -> str | None:
        return _param(self.params, name)

    def has_param(self, name: str) -> bool:
        return _has_param(self.params, name)

    def with_param(self, name: str, value: str | None) -> NameAddr:
        return NameAddr(
            display_name=self.display_name,
            uri=self.uri,
            params=_with_param(self.params, name, value),
        )

    @property
    def tag(self) -> str | None:
        return _param(self.params, "tag")

    @property
    def expires(self) -> int | None:
        """The Contact ``expires`` parameter (RFC 3261 §10.2.1.1); raises if malformed."""
        value = _param(self.params, "expires")
        return None if value is None else parse_int_header("Expires", value)

    @property
    def q(self) -> float | None:
        """The Contact ``q`` parameter, 0 to 1 (RFC 3261 §20.10); raises if malformed."""
        value = _param(self.params, "q")
        if value is None:
            return None
        try:
            q = float(value)
        except ValueError:
            q = -1.0
        if not 0.0 <= q <= 1.0 or not value.replace(".", "", 1).isdigit():
            raise SipParseError(f"invalid q value {value[:20]!r}", field="Contact")
        return q


def _check_display_tokens(text: str, field: str | None) -> None:
    # An unquoted display-name is *(token LWS) (RFC 3261 §25.1); "Bell, Alexander" is not one
    # (RFC 4475 §3.1.2.15).
    for word in text.split():
        if not _TOKEN_RE.match(word):
            raise SipParseError(f"display name needs quotes: {text[:60]!r}", field=field)


def parse_name_addr(value: str, *, field: str | None = None) -> NameAddr:
    """Parse ``"Name" <uri>;p=v``, ``Name <uri>`` or a bare addr-spec ``uri;p=v``.

    In the bare form the first ``;`` ends the URI: what follows are header parameters
    (RFC 3261 §20.10, RFC 4475 §3.3.12), and a URI with headers (``?``) must be bracketed
    (RFC 4475 §3.1.2.13).
    """
    s = value.strip()
    display: str | None = None
    if s.startswith('"'):
        m = _QUOTED_RE.match(s)
        if m is None:
            raise SipParseError("unterminated quoted display name", field=field)
        display = unquote_string(m.group())
        s = s[m.end() :].lstrip()
        if not s.startswith("<"):
            raise SipParseError("quoted display name not followed by <URI>", field=field)
    else:
        lt = s.find("<")
        if lt > 0:
            text = s[:lt].strip()
            _check_display_tokens(text, field)
            display = text or None
            s = s[lt:]
        elif lt < 0:
            m2 = _ADDR_SPEC_END_RE.search(s)
            uri_text = s if m2 is None else s[: m2.start()]
            if "?" in uri_text or "," in uri_text:
                raise SipParseError(
                    f"URI with '?' or ',' must be enclosed in <>: {uri_text[:60]!r}", field=field
                )
            uri = _parse_field_uri(uri_text, field)
            params = parse_params(s[m2.start() :], field=field) if m2 is not None else ()
            return NameAddr(uri=uri, params=params)
    gt = s.find(">")
    if gt < 0:
        raise SipParseError("missing '>' after URI", field=field)
    uri = _parse_field_uri(s[1:gt], field)
    rest = s[gt + 1 :]
    params = parse_params(rest, field=field) if rest else ()
    return NameAddr(display_name=display, uri=uri, params=params)


def _parse_field_uri(text: str, field: str | None) -> Uri:
    try:
        return parse_uri(text)
    except SipParseError as exc:
        raise SipParseError(exc.reason, field=field) from None


def parse_name_addr_list(value: str, *, field: str | None = None) -> list[NameAddr]:
    """Parse a comma-separated list of name-addrs (Route, Record-Route, Path, ...)."""
    return [parse_name_addr(v, field=field) for v in split_header_values(value)]


def parse_contact(values: list[str]) -> list[NameAddr] | Literal["*"]:
    """Parse the Contact values of a message (already split); ``"*"`` is the wildcard that
    removes every binding and must stand alone (RFC 3261 §10.2.2)."""
    if any(v == "*" for v in values):
        if len(values) != 1:
            raise SipParseError("Contact '*' combined with other values", field="Contact")
        return "*"
    return [parse_name_addr(v, field="Contact") for v in values]


# -- scalars --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CSeq:
    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


_UINT32_MAX = 2**32 - 1


def parse_cseq(value: str) -> CSeq:
    """``seq method`` with seq below 2**32 (RFC 3261 §8.1.1.5, RFC 4475 §3.1.2.4)."""
    parts = value.split()
    if len(parts) != 2:
        raise SipParseError(f"malformed CSeq {value[:40]!r}", field="CSeq")
    number, method = parts
    if not (number.isascii() and number.isdigit()) or len(number.lstrip("0")) > 10:
        raise SipParseError(f"invalid CSeq number {number[:20]!r}", field="CSeq")
    seq = int(number)
    if seq > _UINT32_MAX:
        raise SipParseError("CSeq number out of range", field="CSeq")
    if not _TOKEN_RE.match(method):
        raise SipParseError(f"invalid CSeq method {method[:40]!r}", field="CSeq")
    return CSeq(seq, method)


_INT_LIMITS = {
    "expires": _UINT32_MAX,  # RFC 3261 §20.19 delta-seconds
    "min-expires": _UINT32_MAX,
    "max-forwards": 255,  # RFC 3261 §20.22
    "content-length": _UINT32_MAX,
    "session-expires": _UINT32_MAX,
    "min-se": _UINT32_MAX,
}


def parse_int_header(name: str, value: str) -> int:
    """A non-negative decimal header value with its range checked (leading zeros allowed,
    RFC 4475 §3.1.1.1; overlarge values rejected, §3.1.2.4)."""
    text = value.strip()
    limit = _INT_LIMITS.get(header_key(name), _UINT32_MAX)
    if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > 10:
        raise SipParseError(f"invalid {canonical_name(name)} {text[:20]!r}", field=name)
    number = int(text)
    if number > limit:
        raise SipParseError(f"{canonical_name(name)} out of range", field=name)
    return number


# -- credentials and challenges ---------------------------------------------------------------

_AUTH_SCHEME_RE = re.compile(r"[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*")
_AUTH_PARAM_RE = re.compile(
    r'([A-Za-z0-9\-.!%*_+`\'~]+)[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[^\s,"]+)[ \t]*(?:,[ \t]*|\Z)'
)


def parse_auth_params(value: str, *, field: str = "Authorization") -> tuple[str, dict[str, str]]:
    """Split ``Digest realm="x", nonce="y", algorithm=MD5`` into the scheme and its parameters.

    Parameter names are lower-cased, quoted values unquoted (RFC 3261 §25.1, RFC 7616 §3.3-§3.4).
    A repeated parameter is an error.  Works for WWW-Authenticate/Proxy-Authenticate challenges
    and Authorization/Proxy-Authorization credentials alike.
    """
    m = _AUTH_SCHEME_RE.match(value)
    if m is None:
        raise SipParseError("missing authentication scheme", field=field)
    scheme = m.group(1)
    params: dict[str, str] = {}
    pos = m.end()
    end = len(value.rstrip())
    while pos < end:
        pm = _AUTH_PARAM_RE.match(value, pos)
        if pm is None:
            raise SipParseError(f"malformed auth parameter {value[pos : pos + 40]!r}", field=field)
        name = pm.group(1).lower()
        if name in params:
            raise SipParseError(f"repeated auth parameter {name!r}", field=field)
        params[name] = unquote_string(pm.group(2))
        pos = pm.end()
    return scheme, params


def is_sip_uri(uri: Uri) -> bool:
    return isinstance(uri, SipUri)


def is_absolute_uri(uri: Uri) -> bool:
    return isinstance(uri, AbsoluteUri)
