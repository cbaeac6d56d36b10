"""SIP digest authentication: RFC 7616 (HTTP Digest, used by SIP via RFC 3261 §22.4), RFC 8760
(SHA-256 / SHA-512/256 for SIP) and the RFC 2617 / RFC 2069 forms that old handsets still send.

Everything here is pure: no clock, no randomness, no sockets and no sidecar state, so that the
control plane (which stores only HA1 values) can import `verify_response` directly, and so that
the sidecar can challenge statelessly with `NonceIssuer`.

HA1 convention: `compute_ha1` always returns ``H(username ":" realm ":" password)`` in the hash
family of the algorithm, also for the ``-sess`` variants. The per-session step of RFC 7616 §3.4.2
(``H(HA1 ":" nonce ":" cnonce)``) needs the nonce and cnonce of the request, so it is applied by
`compute_response` / `verify_response`; one stored HA1 per hash family serves both variants.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import struct
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import unquote_to_bytes

__all__ = [
    "DEFAULT_CHALLENGE",
    "Algorithm",
    "Challenge",
    "CountStatus",
    "Credentials",
    "DigestError",
    "NonceCountTracker",
    "NonceIssuer",
    "NonceStatus",
    "build_credentials",
    "compute_ha1",
    "compute_response",
    "parse_challenge",
    "parse_credentials",
    "quote_string",
    "session_ha1",
    "verify_response",
]


class DigestError(ValueError):
    """Malformed or unusable digest header. A request carrying one deserves `status_code`."""

    def __init__(self, message: str, *, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


class Algorithm(enum.Enum):
    """Digest algorithms of the RFC 7616 §6.1 registry (RFC 8760 §2.1 for SIP)."""

    MD5 = "MD5"
    MD5_SESS = "MD5-sess"
    SHA_256 = "SHA-256"
    SHA_256_SESS = "SHA-256-sess"
    SHA_512_256 = "SHA-512-256"
    SHA_512_256_SESS = "SHA-512-256-sess"

    @classmethod
    def parse(cls, name: str | Algorithm) -> Algorithm:
        """Look an algorithm up by its registry name, ignoring case (many handsets send "md5")."""
        if isinstance(name, Algorithm):
            return name
        found = _ALGORITHMS_BY_NAME.get(name.lower())
        if found is None:
            raise DigestError(f"digest algorithm {name!r} is not supported (RFC 7616 §6.1)")
        return found

    @property
    def is_session(self) -> bool:
        return self.value.endswith("-sess")

    @property
    def base(self) -> Algorithm:
        """The non-session algorithm of the same hash family (its HA1 is shared)."""
        return Algorithm(self.value.removesuffix("-sess"))

    @property
    def hexdigest_length(self) -> int:
        return 32 if self.base is Algorithm.MD5 else 64

    def hash(self, data: str) -> str:
        return hashlib.new(_HASHLIB_NAMES[self.base], data.encode("utf-8")).hexdigest()


_ALGORITHMS_BY_NAME = {a.value.lower(): a for a in Algorithm}
_HASHLIB_NAMES = {
    Algorithm.MD5: "md5",
    Algorithm.SHA_256: "sha256",
    Algorithm.SHA_512_256: "sha512_256",
}

#: What a server challenges with unless told otherwise: MD5 alone. RFC 8760 §2.4 has a server
#: send one challenge per algorithm, most preferred first, and a client answer the topmost one it
#: supports; but SIPp and most cheap handsets and adapters read only the first challenge
#: and give up when it is not MD5, and a client that does read them all answers SHA-256 only
#: where SHA-256 comes first. So SHA-256 is offered where it is configured (per device, or for a
#: sidecar), as Asterisk and Kamailio do, and MD5 stays the default that every handset answers.
DEFAULT_CHALLENGE: tuple[Algorithm, ...] = (Algorithm.MD5,)
QOP_AUTH = "auth"
QOP_AUTH_INT = "auth-int"
_QOPS = (QOP_AUTH, QOP_AUTH_INT)


# --- hashing ------------------------------------------------------------------------------------


def compute_ha1(algorithm: Algorithm | str, username: str, realm: str, password: str) -> str:
    """``H(username ":" realm ":" password)`` (RFC 7616 §3.4.2), lowercase hex.

    For ``-sess`` algorithms this is the stored, per-user part; see the module docstring.
    """
    return Algorithm.parse(algorithm).hash(f"{username}:{realm}:{password}")


def session_ha1(algorithm: Algorithm | str, ha1: str, nonce: str, cnonce: str) -> str:
    """The ``-sess`` HA1 of RFC 7616 §3.4.2: ``H(H(user:realm:password) ":" nonce ":" cnonce)``."""
    return Algorithm.parse(algorithm).hash(f"{ha1}:{nonce}:{cnonce}")


def compute_response(
    algorithm: Algorithm | str,
    ha1: str,
    *,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The request-digest (the ``response`` parameter), lowercase hex.

    With ``qop`` (RFC 7616 §3.4.1): ``H(HA1:nonce:nc:cnonce:qop:HA2)``; without it, the RFC 2069
    form ``H(HA1:nonce:HA2)`` that RFC 2617 §3.2.2.1 keeps for compatibility. ``nc`` is used
    exactly as sent (8 hex digits). ``body`` matters only for ``qop=auth-int`` (RFC 7616 §3.4.3).
    """
    alg = Algorithm.parse(algorithm)
    if qop is not None and qop not in _QOPS:
        raise DigestError(f"qop {qop!r} is not supported (RFC 7616 §3.3)")
    if qop is not None and (nc is None or cnonce is None):
        raise DigestError("qop requires nc and cnonce (RFC 7616 §3.4)")
    if alg.is_session:
        if cnonce is None:
            raise DigestError(f"{alg.value} requires a cnonce (RFC 7616 §3.4.2)")
        ha1 = session_ha1(alg, ha1, nonce, cnonce)
    if qop == QOP_AUTH_INT:
        body_hash = hashlib.new(_HASHLIB_NAMES[alg.base], body).hexdigest()
        ha2 = alg.hash(f"{method}:{uri}:{body_hash}")
    else:
        ha2 = alg.hash(f"{method}:{uri}")
    if qop is None:
        return alg.hash(f"{ha1}:{nonce}:{ha2}")
    return alg.hash(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def verify_response(ha1: str, credentials: Credentials, method: str, *, body: bytes = b"") -> bool:
    """True when `credentials.response` is right for `ha1` (of the credentials' hash family).

    The comparison is constant-time. An HA1 of the wrong length (another family's hash) gives
    False rather than an error, so that a wrong stored value looks like a wrong password.
    Checking the nonce, its count, the realm and the URI against the request is the caller's job.
    """
    alg = credentials.algorithm
    if len(ha1) != alg.hexdigest_length:
        return False
    try:
        expected = compute_response(
            alg,
            ha1.lower(),
            nonce=credentials.nonce,
            method=method,
            uri=credentials.uri,
            qop=credentials.qop,
            nc=credentials.nc,
            cnonce=credentials.cnonce,
            body=body,
        )
    except DigestError:
        return False
    given = credentials.response.lower().encode("utf-8", "surrogatepass")
    return hmac.compare_digest(expected.encode("ascii"), given)


# --- header syntax ------------------------------------------------------------------------------

# RFC 7230 §3.2.6 tchar; the SIP token of RFC 3261 §25.1 is a subset of it.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_LWS = " \t\r\n"
_NC_RE = re.compile(r"[0-9A-Fa-f]{8}")


def quote_string(value: str) -> str:
    """A quoted-string (RFC 3261 §25.1) with ``"`` and ``\\`` escaped as quoted-pairs."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_LWS_RUN = re.compile(r"[ \t\r\n]*").match


def _skip_lws(text: str, pos: int) -> int:
    match = _LWS_RUN(text, pos)
    return pos if match is None else match.end()


_TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# The common shape of one auth-param: a token name, a token or escape-free quoted value, and a
# comma or the end. Anything else (quoted-pairs, empty list elements, trailing LWS, errors) goes
# to the general scanner, which gives the same result or the error.
_SIMPLE_SCHEME_RE = re.compile(r"[Dd][Ii][Gg][Ee][Ss][Tt] +")
_SIMPLE_PARAM_RE = re.compile(rf'[ \t]*({_TCHAR})=(?:"([^"\\\r\n]*)"|({_TCHAR}))[ \t]*(?:,|\Z)')


def _parse_auth_params(value: str, what: str) -> dict[str, str]:
    """Split ``Digest a=b, c="d"`` into lowercase names and unquoted values (RFC 7235 §2.1)."""
    match = _SIMPLE_SCHEME_RE.match(value)
    if match is not None:
        params: dict[str, str] = {}
        pos = match.end()
        end = len(value)
        param = _SIMPLE_PARAM_RE.match
        while pos < end:
            found = param(value, pos)
            if found is None:
                break
            name = found.group(1).lower()
            if name in params:
                break
            quoted = found.group(2)
            params[name] = quoted if quoted is not None else found.group(3)
            pos = found.end()
        else:
            if params and value[-1] != ",":
                return params
    return _scan_auth_params(value, what)


def _scan_auth_params(value: str, what: str) -> dict[str, str]:
    """The general auth-param scanner behind `_parse_auth_params`' fast path."""
    pos = _skip_lws(value, 0)
    match = _TOKEN_RE.match(value, pos)
    if match is None:
        raise DigestError(f"{what} has no auth-scheme")
    if match.group().lower() != "digest":
        raise DigestError(f"{what} scheme {match.group()!r} is not Digest")
    pos = match.end()
    if pos < len(value) and value[pos] not in _LWS:
        raise DigestError(f"{what} scheme is not followed by whitespace")
    params: dict[str, str] = {}
    while True:
        # RFC 7230 §7: empty list elements (",,") are allowed and ignored.
        pos = _skip_lws(value, pos)
        while pos < len(value) and value[pos] == ",":
            pos = _skip_lws(value, pos + 1)
        if pos >= len(value):
            break
        match = _TOKEN_RE.match(value, pos)
        if match is None:
            raise DigestError(f"{what} has a malformed parameter name at offset {pos}")
        name = match.group().lower()
        pos = _skip_lws(value, match.end())
        if pos >= len(value) or value[pos] != "=":
            raise DigestError(f"{what} parameter {name!r} has no value")
        pos = _skip_lws(value, pos + 1)
        if pos < len(value) and value[pos] == '"':
            text, pos = _parse_quoted(value, pos, what)
        else:
            match = _TOKEN_RE.match(value, pos)
            if match is None:
                raise DigestError(f"{what} parameter {name!r} has a malformed value")
            text, pos = match.group(), match.end()
        if name in params:
            raise DigestError(f"{what} repeats parameter {name!r}")
        params[name] = text
        pos = _skip_lws(value, pos)
        if pos < len(value) and value[pos] != ",":
            raise DigestError(f"{what} parameter {name!r} is not followed by a comma")
    return params


def _parse_quoted(value: str, pos: int, what: str) -> tuple[str, int]:
    end = value.find('"', pos + 1)
    if end >= 0:
        text = value[pos + 1 : end]
        if "\\" not in text:
            return text, end + 1  # no quoted-pair, so the first quote closes the string
    out: list[str] = []
    pos += 1
    while pos < len(value):
        char = value[pos]
        if char == '"':
            return "".join(out), pos + 1
        if char == "\\":
            # quoted-pair, RFC 3261 §25.1: any octet but CR and LF may follow the backslash.
            if pos + 1 >= len(value) or value[pos + 1] in "\r\n":
                raise DigestError(f"{what} has a dangling escape in a quoted-string")
            out.append(value[pos + 1])
            pos += 2
            continue
        out.append(char)
        pos += 1
    raise DigestError(f"{what} has an unterminated quoted-string")


def _decode_ext_value(text: str) -> str:
    """RFC 8187 ext-value (``UTF-8''J%C3%A4s%C3%B8n``), used by ``username*`` (RFC 7616 §3.4.4)."""
    parts = text.split("'", 2)
    if len(parts) != 3:
        raise DigestError("username* is not an RFC 8187 ext-value")
    charset = parts[0].lower()
    if charset not in ("utf-8", "iso-8859-1"):
        raise DigestError(f"username* charset {parts[0]!r} is not supported")
    if re.fullmatch(r"(?:[!#$&+\-.^_`|~0-9A-Za-z]|%[0-9A-Fa-f]{2})*", parts[2]) is None:
        raise DigestError("username* has malformed percent-encoding")
    try:
        return unquote_to_bytes(parts[2]).decode(charset)
    except UnicodeDecodeError as exc:
        raise DigestError("username* is not valid in its charset") from exc


def _parse_bool(text: str, name: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise DigestError(f"{name} must be true or false, not {text!r}")
    return lowered == "true"


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """The digest fields of an ``Authorization`` / ``Proxy-Authorization`` value (RFC 7616 §3.4).

    `nc` keeps the exact text the client hashed; `nonce_count` is its value.
    """

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: Algorithm = Algorithm.MD5
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None
    userhash: bool = False
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), compare=False)

    @property
    def nonce_count(self) -> int | None:
        return None if self.nc is None else int(self.nc, 16)

    def serialize(self) -> str:
        """The header value, as a client sends it."""
        parts = [
            f"username={quote_string(self.username)}",
            f"realm={quote_string(self.realm)}",
            f"nonce={quote_string(self.nonce)}",
            f"uri={quote_string(self.uri)}",
            f'response="{self.response}"',
            f"algorithm={self.algorithm.value}",
        ]
        if self.qop is not None:
            parts += [
                f"cnonce={quote_string(self.cnonce or '')}",
                f"qop={self.qop}",
                f"nc={self.nc}",
            ]
        if self.opaque is not None:
            parts.append(f"opaque={quote_string(self.opaque)}")
        if self.userhash:
            parts.append("userhash=true")
        return "Digest " + ", ".join(parts)

    def __str__(self) -> str:
        return self.serialize()


def parse_credentials(value: str) -> Credentials:
    """Parse an ``Authorization`` / ``Proxy-Authorization`` header value.

    Raises `DigestError` (and nothing else) for anything malformed: another scheme, bad quoting,
    a missing username/realm/nonce/uri/response, an unknown algorithm or qop, an nc that is not
    8 hex digits, or qop without nc/cnonce.
    """
    what = "Authorization"
    params = _parse_auth_params(value, what)
    if "username*" in params:
        if "username" in params:
            raise DigestError("Authorization has both username and username* (RFC 7616 §3.4.4)")
        username = _decode_ext_value(params["username*"])
    elif "username" in params:
        username = params["username"]
    else:
        raise DigestError("Authorization has no username")
    for required in ("realm", "nonce", "uri", "response"):
        if required not in params:
            raise DigestError(f"Authorization has no {required}")
    # RFC 7616 §3.4: an absent algorithm means MD5.
    algorithm = Algorithm.parse(params.get("algorithm", "MD5"))
    qop = params.get("qop")
    nc = params.get("nc")
    cnonce = params.get("cnonce")
    if nc is not None and _NC_RE.fullmatch(nc) is None:
        raise DigestError(f"Authorization nc {nc!r} is not 8 hex digits (RFC 7616 §3.4)")
    if qop is not None:
        if qop.lower() not in _QOPS:
            raise DigestError(f"Authorization qop {qop!r} is not supported")
        qop = qop.lower()
        if nc is None or cnonce is None:
            raise DigestError("Authorization with qop needs nc and cnonce (RFC 7616 §3.4)")
    elif algorithm.is_session:
        raise DigestError(f"{algorithm.value} needs qop and cnonce (RFC 7616 §3.4.2)")
    return Credentials(
        username=username,
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"],
        algorithm=algorithm,
        qop=qop,
        nc=nc,
        cnonce=cnonce,
        opaque=params.get("opaque"),
        userhash=_parse_bool(params["userhash"], "userhash") if "userhash" in params else False,
        params=MappingProxyType(params),
    )


@dataclass(frozen=True, kw_only=True)
class Challenge:
    """The fields of a ``WWW-Authenticate`` / ``Proxy-Authenticate`` value (RFC 7616 §3.3)."""

    realm: str
    nonce: str
    algorithm: Algorithm = Algorithm.MD5
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    userhash: bool = False
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), compare=False)

    def serialize(self) -> str:
        parts = [
            f"realm={quote_string(self.realm)}",
            f"nonce={quote_string(self.nonce)}",
        ]
        if self.opaque is not None:
            parts.append(f"opaque={quote_string(self.opaque)}")
        parts.append(f"algorithm={self.algorithm.value}")
        if self.qop:
            parts.append(f"qop={quote_string(','.join(self.qop))}")
        if self.stale:
            parts.append("stale=true")
        if self.userhash:
            parts.append("userhash=true")
        return "Digest " + ", ".join(parts)

    def __str__(self) -> str:
        return self.serialize()


def parse_challenge(value: str) -> Challenge:
    """Parse a ``WWW-Authenticate`` / ``Proxy-Authenticate`` header value; `DigestError` if bad."""
    what = "WWW-Authenticate"
    params = _parse_auth_params(value, what)
    for required in ("realm", "nonce"):
        if required not in params:
            raise DigestError(f"{what} has no {required}")
    qop = (
        tuple(q.strip().lower() for q in params["qop"].split(",") if q.strip())
        if ("qop" in params)
        else ()
    )
    return Challenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=Algorithm.parse(params.get("algorithm", "MD5")),
        qop=qop,
        opaque=params.get("opaque"),
        stale=_parse_bool(params["stale"], "stale") if "stale" in params else False,
        userhash=_parse_bool(params["userhash"], "userhash") if "userhash" in params else False,
        params=MappingProxyType(params),
    )


def build_credentials(
    challenge: Challenge,
    *,
    username: str,
    ha1: str,
    method: str,
    uri: str,
    cnonce: str,
    nc: int = 1,
    body: bytes = b"",
) -> Credentials:
    """Answer `challenge` as a client (e.g. a trunk registration), preferring qop=auth.

    `ha1` comes from `compute_ha1` with the challenge's algorithm; `cnonce` is injected
    randomness. A challenge offering only unknown qop values is refused (RFC 7616 §3.3).
    """
    if challenge.userhash:
        raise DigestError("userhash challenges are not supported by this client")
    qop: str | None
    if not challenge.qop:
        qop = None
    elif QOP_AUTH in challenge.qop:
        qop = QOP_AUTH
    elif QOP_AUTH_INT in challenge.qop:
        qop = QOP_AUTH_INT
    else:
        raise DigestError(f"challenge offers no supported qop: {challenge.qop!r}")
    if not 0 < nc <= 0xFFFFFFFF:
        raise DigestError(f"nonce count {nc} does not fit 8 hex digits")
    nc_text = f"{nc:08x}" if qop is not None else None
    response = compute_response(
        challenge.algorithm,
        ha1,
        nonce=challenge.nonce,
        method=method,
        uri=uri,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce if qop is not None else None,
        body=body,
    )
    return Credentials(
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=response,
        algorithm=challenge.algorithm,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce if qop is not None else None,
        opaque=challenge.opaque,
    )


# --- stateless nonces ---------------------------------------------------------------------------


class NonceStatus(enum.Enum):
    VALID = "valid"
    #: Authentic but expired (or from a future clock): challenge again with ``stale=true``
    #: so that the client retries without asking its user (RFC 7616 §3.3).
    STALE = "stale"
    #: Not ours: forged, truncated or bound to another source.
    INVALID = "invalid"


_NONCE_VERSION = 1
_NONCE_HEADER = struct.Struct(">BQI")  # version, issue time in ms, serial
_NONCE_MAC_BYTES = 16
_NONCE_RAW_BYTES = _NONCE_HEADER.size + _NONCE_MAC_BYTES
_NONCE_TEXT_LENGTH = (_NONCE_RAW_BYTES * 8 + 5) // 6
_NONCE_TEXT_RE = re.compile(rf"[A-Za-z0-9_-]{{{_NONCE_TEXT_LENGTH}}}")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class NonceIssuer:
    """Stateless, HMAC-SHA256-signed nonces (RFC 7616 §5.4) for challenging without an RPC.

    A nonce carries its issue time and a serial number in clear and a truncated HMAC over them and
    the client's source (pass the IP only: NATs move ports between REGISTER refreshes). `check`
    therefore needs no memory; replay within the lifetime is what `NonceCountTracker` stops.
    The serial only makes nonces issued in the same millisecond distinct.
    """

    def __init__(self, secret: bytes, lifetime: float) -> None:
        if len(secret) < 16:
            raise ValueError("nonce secret must be at least 16 bytes")
        if not lifetime > 0:
            raise ValueError("nonce lifetime must be positive")
        self._secret = secret
        self._lifetime = lifetime
        self._serial = 0
        self._opaque = _b64(hmac.digest(secret, b"sip2uc digest opaque", "sha256")[:12])
        # (realm, stale, algorithms) -> the text around the nonce in each challenge value
        self._templates: dict[
            tuple[str, bool, tuple[Algorithm | str, ...]], list[tuple[str, str]]
        ] = {}

    @property
    def lifetime(self) -> float:
        return self._lifetime

    @property
    def opaque(self) -> str:
        """A constant per secret: clients echo it, and it reveals nothing."""
        return self._opaque

    def _mac(self, header: bytes, source: str | None) -> bytes:
        message = header + (source or "").encode("utf-8", "surrogatepass")
        return hmac.digest(self._secret, message, "sha256")[:_NONCE_MAC_BYTES]

    def issue(self, now: float, source: str | None = None) -> str:
        if now < 0:
            raise ValueError("nonce issue time must not be negative")
        self._serial = (self._serial + 1) & 0xFFFFFFFF
        header = _NONCE_HEADER.pack(_NONCE_VERSION, int(now * 1000), self._serial)
        return _b64(header + self._mac(header, source))

    def check(self, nonce: str, now: float, source: str | None = None) -> NonceStatus:
        if _NONCE_TEXT_RE.fullmatch(nonce) is None:
            return NonceStatus.INVALID
        raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        if len(raw) != _NONCE_RAW_BYTES:
            return NonceStatus.INVALID
        header, mac = raw[: _NONCE_HEADER.size], raw[_NONCE_HEADER.size :]
        if not hmac.compare_digest(mac, self._mac(header, source)):
            return NonceStatus.INVALID
        version, issued_ms, _serial = _NONCE_HEADER.unpack(header)
        if version != _NONCE_VERSION:
            return NonceStatus.INVALID
        age = now - issued_ms / 1000
        if age < 0 or age > self._lifetime:
            return NonceStatus.STALE
        return NonceStatus.VALID

    @staticmethod
    def issue_time(nonce: str) -> float:
        """When a nonce that `check` found authentic was issued (seconds, as `now` was)."""
        raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        _version, issued_ms, _serial = _NONCE_HEADER.unpack(raw[: _NONCE_HEADER.size])
        return float(issued_ms / 1000)

    def challenge_header(
        self,
        realm: str,
        now: float,
        source: str | None = None,
        *,
        stale: bool = False,
        algorithms: Iterable[Algorithm | str] = DEFAULT_CHALLENGE,
    ) -> list[str]:
        """One ``WWW-Authenticate`` value per algorithm, in the order given: the order of
        preference (RFC 8760 §2.4), which decides what a client that reads only the first
        challenge answers with.

        All values share one fresh nonce, so whichever the client picks is checked the same way.
        """
        chosen = tuple(algorithms)
        template = self._templates.get((realm, stale, chosen))
        if template is None:
            template = self._template(realm, stale, chosen)
        nonce = self.issue(now, source)
        return [prefix + nonce + suffix for prefix, suffix in template]

    def _template(
        self, realm: str, stale: bool, algorithms: tuple[Algorithm | str, ...]
    ) -> list[tuple[str, str]]:
        """Each challenge value split around its nonce, formatted once per realm/algorithms."""
        chosen = list(dict.fromkeys(Algorithm.parse(a) for a in algorithms))
        if not chosen:
            raise ValueError("a challenge needs at least one algorithm")
        marker = "\x00"  # never in a realm's quoted form next to the nonce, never in a nonce
        template: list[tuple[str, str]] = []
        for alg in chosen:
            text = Challenge(
                realm=realm,
                nonce=marker,
                algorithm=alg,
                qop=(QOP_AUTH,),
                opaque=self._opaque,
                stale=stale,
            ).serialize()
            prefix, _, suffix = text.partition(f'nonce="{marker}"')
            template.append((prefix + 'nonce="', '"' + suffix))
        if len(self._templates) >= 64:
            self._templates.clear()  # realms and algorithm sets are few; bound it anyway
        self._templates[(realm, stale, algorithms)] = template
        return template


class CountStatus(enum.Enum):
    """What `NonceCountTracker.admit` says about a nonce count."""

    #: Higher than any count accepted for the nonce: go on.
    ACCEPTED = "accepted"
    #: Not above the highest count accepted for the nonce (RFC 7616 §3.4): a replay, or an honest
    #: retry that fell behind a busy server. Challenge again with ``stale=true``.
    REPLAYED = "replayed"
    #: The nonce may have been used and then forgotten (memory pressure, idleness), so no count
    #: can be trusted: challenge again with ``stale=true`` and the client starts a fresh nonce.
    FORGOTTEN = "forgotten"


class NonceCountTracker:
    """Replay protection by nonce count (RFC 7616 §3.4 nc, §5.4), in bounded memory.

    Each nonce remembers the highest count accepted; a count is accepted only if it is higher.
    A nonce seen for the first time starts at whatever count comes first: a client that got a
    retransmitted challenge answers with ``nc=00000002`` while its ``nc=00000001`` request may
    still be queued, and both are honest. Counts are never reordered; the later-arriving lower
    count is refused.

    Memory is bounded by `capacity` (least recently used nonces are forgotten first) and by
    `max_idle`. A forgotten nonce must not start afresh, or its old counts could be replayed
    until the issuer retires it; but a nonce is stateless, so "forgotten" cannot be told from
    "never seen" by the nonce alone. The tracker therefore keeps one number: the latest issue
    time of any nonce it forgot. A nonce it does not remember that was issued no later than that
    may have been forgotten and gets FORGOTTEN; one issued later is new. Honest clients lose
    nothing either way: they are told ``stale=true`` and retry at once with a fresh nonce.
    """

    def __init__(
        self, capacity: int, *, max_idle: float | None = None, started: float | None = None
    ) -> None:
        """`started`: when this tracker began, in the nonces' time; nonces issued before it
        may have been used with a tracker that is gone (a restart), so they count as forgotten.
        """
        if capacity < 1:
            raise ValueError("tracker capacity must be at least 1")
        self._capacity = capacity
        self._max_idle = max_idle
        # nonce -> (highest count, last use, issue time); least recently used first.
        self._seen: OrderedDict[str, tuple[int, float, float]] = OrderedDict()
        self._forgotten_through = float("-inf") if started is None else started

    def __len__(self) -> int:
        return len(self._seen)

    @property
    def forgotten_through(self) -> float:
        """The latest issue time of a nonce this tracker forgot (-inf: none yet)."""
        return self._forgotten_through

    def admit(self, nonce: str, nc: int, issued: float, now: float) -> CountStatus:
        """Whether request number `nc` with `nonce` (issued at `issued`) may go on."""
        self._forget_idle(now)
        if nc < 1:
            return CountStatus.REPLAYED  # RFC 7616 §3.4: the first request with a nonce counts 1
        entry = self._seen.get(nonce)
        if entry is None:
            if issued <= self._forgotten_through:
                return CountStatus.FORGOTTEN
        elif nc <= entry[0]:
            return CountStatus.REPLAYED
        self._seen[nonce] = (nc, now, issued)
        self._seen.move_to_end(nonce)
        while len(self._seen) > self._capacity:
            self._forget(*self._seen.popitem(last=False))
        return CountStatus.ACCEPTED

    def _forget(self, _nonce: str, entry: tuple[int, float, float]) -> None:
        self._forgotten_through = max(self._forgotten_through, entry[2])

    def _forget_idle(self, now: float) -> None:
        if self._max_idle is None:
            return
        while self._seen:
            nonce, entry = next(iter(self._seen.items()))
            if now - entry[1] <= self._max_idle:
                break
            del self._seen[nonce]
            self._forget(nonce, entry)
