"""SIP and SIPS URIs (RFC 3261 §19.1, §25.1) and other absolute URIs.

A :class:`SipUri` keeps every component exactly as it appeared on the wire (escapes included) so
that a URI round-trips unchanged through ``str()``; comparison (§19.1.4) works on the unescaped
forms.  Any other scheme (``tel:``, ``urn:``, ``isbn:``, ...) is kept opaque as
:class:`AbsoluteUri`: RFC 4475 §3.3.2-§3.3.4 require such URIs to parse, and deciding whether they
are acceptable (416, 400) is the job of :func:`sip2uc_core.sip.message.validate_request`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from .errors import SipParseError

__all__ = [
    "AbsoluteUri",
    "SipUri",
    "Uri",
    "parse_uri",
    "unescape",
    "uri_equal",
]

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*\Z")
# Anything that cannot appear inside a URI on the wire: whitespace, controls and the delimiters of
# name-addr (RFC 3261 §25.1).  A URI containing one is the symptom of RFC 4475 §3.1.2.7/§3.1.2.8.
_FORBIDDEN_RE = re.compile(r'[\x00-\x20\x7f<>"]')
# user = 1*( unreserved / escaped / user-unreserved ); '#' is accepted because handsets send dial
# strings such as "*30#" unescaped and rejecting them helps nobody.
_USER_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()%&=+$,;?/#]+\Z")
_PASSWORD_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()%&=+$,]*\Z")
# hostname / IPv4address / IPv6reference.  The IPv6 class deliberately accepts the three-colon
# form of RFC 5118 §4.10, which the RFC 3261 ABNF allows and RFC 4291 does not.
_HOSTPORT_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._]+)(?::([0-9]{1,5}))?")
# paramchar = param-unreserved / unreserved / escaped (RFC 3261 §25.1)
_PARAMCHARS_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()%\[\]/:&+$]+\Z")
# hnv-unreserved / unreserved / escaped
_HCHARS_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()%\[\]/?:+$]*\Z")

Params = tuple[tuple[str, str | None], ...]

# The form nearly every handset sends (sip:user@host:port;param=value), as a strict subset of
# what the general parser accepts and with the same result; anything else takes the long way.
_COMMON_SIP_RE = re.compile(
    r"(sips?):(?:([A-Za-z0-9\-_.!~*'()&=+$,]+)@)?([A-Za-z0-9\-.]+)(?::([0-9]{1,5}))?"
    r"((?:;[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+(?:=[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+)?)*)\Z"
)


def unescape(text: str) -> str:
    """Undo ``%HH`` escapes (RFC 3261 §19.1.4); malformed escapes are left as they are."""
    if "%" not in text:
        return text
    return unquote(text, errors="surrogateescape")


@dataclass(frozen=True, slots=True, kw_only=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI, components as on the wire (escapes kept).

    ``params`` keeps order and the spelling of names; lookups ignore case.  A flag parameter such
    as ``;lr`` has the value ``None``.
    """

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":")
                out.append(self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        for name, value in self.params:
            out.append(f";{name}" if value is None else f";{name}={value}")
        if self.headers:
            out.append("?")
            out.append("&".join(f"{name}={value}" for name, value in self.headers))
        return "".join(out)

    def has_param(self, name: str) -> bool:
        lname = name.lower()
        return any(n.lower() == lname for n, _ in self.params)

    def get_param(self, name: str) -> str | None:
        """The value of ``name`` (``None`` if absent or a flag; see :meth:`has_param`)."""
        lname = name.lower()
        for n, v in self.params:
            if n.lower() == lname:
                return v
        return None

    def with_param(self, name: str, value: str | None) -> SipUri:
        """A copy with ``name`` set (replacing an existing parameter of that name in place)."""
        lname = name.lower()
        params = list(self.params)
        for i, (n, _) in enumerate(params):
            if n.lower() == lname:
                params[i] = (n, value)
                break
        else:
            params.append((name, value))
        return _replace(self, params=tuple(params))

    def without_param(self, name: str) -> SipUri:
        lname = name.lower()
        return _replace(self, params=tuple(p for p in self.params if p[0].lower() != lname))

    @property
    def unescaped_user(self) -> str | None:
        """The user part with ``%HH`` undone (registrars key bindings on it; RFC 4475 §3.1.1.3)."""
        return None if self.user is None else unescape(self.user)

    @property
    def transport(self) -> str | None:
        value = self.get_param("transport")
        return None if value is None else value.lower()

    @property
    def lr(self) -> bool:
        return self.has_param("lr")

    @property
    def maddr(self) -> str | None:
        return self.get_param("maddr")

    @property
    def is_ipv6(self) -> bool:
        return self.host.startswith("[")

    @property
    def host_key(self) -> str:
        """The host lower-cased without IPv6 brackets, for comparisons and DNS/socket use."""
        host = self.host[1:-1] if self.host.startswith("[") else self.host
        return host.lower()

    @property
    def hostport(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """A URI of any scheme other than sip/sips, kept opaque (``tel:+4930123``, ``urn:...``)."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


Uri = SipUri | AbsoluteUri


def user_or_whole(uri: Uri) -> str:
    """The user part of a SIP URI (empty when it has none), or all of another URI
    (``tel:+4930123``): who a request is from or for, as people read it."""
    return (uri.user or "") if isinstance(uri, SipUri) else str(uri)


def _replace(uri: SipUri, *, params: Params) -> SipUri:
    return SipUri(
        scheme=uri.scheme,
        user=uri.user,
        password=uri.password,
        host=uri.host,
        port=uri.port,
        params=params,
        headers=uri.headers,
    )


def parse_uri(text: str) -> Uri:
    """Parse a URI as it appears in a Request-URI or between ``<`` and ``>``.

    Raises :class:`SipParseError` (400, field ``"uri"``) for anything malformed, including
    embedded whitespace and angle brackets (RFC 4475 §3.1.2.7, §3.1.2.8, §3.1.2.14).
    """
    common = _COMMON_SIP_RE.match(text)
    if common is not None:
        scheme, user, host, port_text, param_text = common.groups()
        port = None if port_text is None else int(port_text)
        if port is None or port <= 65535:
            params: Params = ()
            if param_text:
                params = tuple(
                    (name, value if eq else None)
                    for name, eq, value in (p.partition("=") for p in param_text[1:].split(";"))
                )
            return SipUri(scheme=scheme, user=user, host=host, port=port, params=params)
    colon = text.find(":")
    if colon <= 0:
        raise SipParseError(f"URI has no scheme: {text[:80]!r}", field="uri")
    scheme = text[:colon]
    rest = text[colon + 1 :]
    if _FORBIDDEN_RE.search(text):
        raise SipParseError(f"URI contains whitespace or delimiters: {text[:80]!r}", field="uri")
    lscheme = scheme.lower()
    if lscheme == "sip" or lscheme == "sips":
        return _parse_sip(lscheme, rest, text)
    if not _SCHEME_RE.match(scheme):
        raise SipParseError(f"invalid URI scheme: {scheme[:40]!r}", field="uri")
    if not rest:
        raise SipParseError(f"empty {lscheme}: URI", field="uri")
    return AbsoluteUri(lscheme, rest)


def _parse_sip(scheme: str, s: str, text: str) -> SipUri:
    user: str | None = None
    password: str | None = None
    # The user part may itself contain ';' and '?' (RFC 4475 §3.1.1.9, §3.1.1.2) but never an
    # unescaped '@', so the first '@' ends the userinfo.
    at = s.find("@")
    if at >= 0:
        userinfo = s[:at]
        s = s[at + 1 :]
        colon = userinfo.find(":")
        if colon >= 0:
            user, password = userinfo[:colon], userinfo[colon + 1 :]
            if not _PASSWORD_RE.match(password):
                raise SipParseError(f"invalid password in URI {text[:80]!r}", field="uri")
        else:
            user = userinfo
        if not _USER_RE.match(user):
            raise SipParseError(f"invalid user part in URI {text[:80]!r}", field="uri")
    m = _HOSTPORT_RE.match(s)
    if m is None:
        raise SipParseError(f"invalid host in URI {text[:80]!r}", field="uri")
    host = m.group(1)
    port_text = m.group(2)
    port: int | None = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            raise SipParseError(f"port out of range in URI {text[:80]!r}", field="uri")
    rest = s[m.end() :]
    if not rest:
        return SipUri(scheme=scheme, user=user, password=password, host=host, port=port)
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()
    question = rest.find("?")
    param_text = rest if question < 0 else rest[:question]
    if param_text:
        if param_text[0] != ";":
            # e.g. "sip:2001:db8::10" (RFC 5118 §4.2): the host ends at the first ':' and what
            # follows is neither a port nor parameters.
            raise SipParseError(f"invalid host or port in URI {text[:80]!r}", field="uri")
        params = _parse_uri_params(param_text[1:], text)
    if question >= 0:
        headers = _parse_uri_headers(rest[question + 1 :], text)
    return SipUri(
        scheme=scheme,
        user=user,
        password=password,
        host=host,
        port=port,
        params=params,
        headers=headers,
    )


def _parse_uri_params(text: str, uri: str) -> Params:
    out: list[tuple[str, str | None]] = []
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not _PARAMCHARS_RE.match(name) or (eq and not _PARAMCHARS_RE.match(value)):
            raise SipParseError(f"invalid URI parameter {item[:40]!r} in {uri[:80]!r}", field="uri")
        out.append((name, value if eq else None))
    return tuple(out)


def _parse_uri_headers(text: str, uri: str) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for item in text.split("&"):
        name, eq, value = item.partition("=")
        if not eq or not name or not _HCHARS_RE.match(name) or not _HCHARS_RE.match(value):
            raise SipParseError(f"invalid URI header {item[:40]!r} in {uri[:80]!r}", field="uri")
        out.append((name, value))
    return tuple(out)


# RFC 3261 §19.1.4: these parameters must match if either URI has them.
_SIGNIFICANT_PARAMS = frozenset({"user", "ttl", "method", "maddr", "transport"})


def uri_equal(a: Uri, b: Uri) -> bool:
    """URI equivalence by RFC 3261 §19.1.4 (absolute URIs: scheme and exact text)."""
    if isinstance(a, AbsoluteUri) or isinstance(b, AbsoluteUri):
        return (
            isinstance(a, AbsoluteUri)
            and isinstance(b, AbsoluteUri)
            and a.scheme == b.scheme
            and a.rest == b.rest
        )
    if a.scheme != b.scheme or a.port != b.port or a.host_key != b.host_key:
        return False
    # userinfo comparison is case-sensitive after unescaping
    if a.unescaped_user != b.unescaped_user:
        return False
    pa = None if a.password is None else unescape(a.password)
    pb = None if b.password is None else unescape(b.password)
    if pa != pb:
        return False
    params_a = {unescape(n).lower(): v for n, v in a.params}
    params_b = {unescape(n).lower(): v for n, v in b.params}
    for name in params_a.keys() | params_b.keys():
        in_a = name in params_a
        in_b = name in params_b
        if in_a != in_b:
            if name in _SIGNIFICANT_PARAMS:
                return False
            continue
        va, vb = params_a[name], params_b[name]
        if (va is None) != (vb is None):
            return False
        if va is not None and vb is not None and unescape(va).lower() != unescape(vb).lower():
            return False
    headers_a = {unescape(n).lower(): unescape(v) for n, v in a.headers}
    headers_b = {unescape(n).lower(): unescape(v) for n, v in b.headers}
    return headers_a == headers_b
