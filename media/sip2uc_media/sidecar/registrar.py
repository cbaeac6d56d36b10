"""The registrar's SIP side (RFC 3261 §10.3): challenge, check credentials, map the control
plane's verdict to a response.

Sans-IO: `Registrar.receive` turns a REGISTER into either a finished response (400, 401) or a
`RegisterAttempt` for the control plane; `Registrar.complete` turns the control plane's
`RegisterResult` into the response. No clocks, sockets or randomness are read here.

No enumeration: a wrong password and an unknown user both come back as UNAUTHORIZED and are
answered by the same function with a fresh challenge, so their responses differ only in the nonce.
Challenges offer the sidecar's default algorithms (MD5 alone unless configured otherwise), or the
ones the control plane set for a device (`RegistrarPolicy.device_algorithms`, by digest user
name). Only devices with their own choice are listed there, so a user name nobody has and one
with the default choice get the same challenge, byte for byte but the nonce.

Nothing the registrar refuses by itself counts towards a ban (see `auth_guard`): a `Rejection`
names what happened (`label`) and, when a person should hear of it, why (`why`).
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from types import MappingProxyType

from sip2uc_core.refusal_log import printable
from sip2uc_core.sip.contact import Contact
from sip2uc_core.sip.digest import (
    DEFAULT_CHALLENGE,
    QOP_AUTH,
    Algorithm,
    CountStatus,
    Credentials,
    DigestError,
    NonceCountTracker,
    NonceIssuer,
    NonceStatus,
    parse_credentials,
)
from sip2uc_core.sip.errors import SipParseError
from sip2uc_core.sip.headers import NameAddr, unquote_string
from sip2uc_core.sip.message import SipRequest, SipResponse, make_response
from sip2uc_core.sip.uri import SipUri, parse_uri, uri_equal

__all__ = [
    "RegisterAttempt",
    "RegisterOutcome",
    "RegisterResult",
    "Registrar",
    "RegistrarPolicy",
    "Rejection",
    "to_tag_for",
]

DEFAULT_EXPIRES = 3600
MAX_EXPIRES_FIELD = 0xFFFFFFFF


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterAttempt:
    """A REGISTER with credentials that passed the sidecar's checks, for the control plane."""

    credentials: Credentials
    method: str
    aor: str
    contacts: tuple[Contact, ...]
    remove_all: bool
    cseq: int


class RegisterOutcome(enum.Enum):
    OK = "ok"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    INTERVAL_TOO_BRIEF = "interval_too_brief"
    TOO_MANY_BINDINGS = "too_many_bindings"
    OUT_OF_ORDER = "out_of_order"


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterResult:
    outcome: RegisterOutcome
    bindings: tuple[Contact, ...] = ()
    min_expires: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A request answered without the control plane.

    `label` names the case (for metrics); `why`, when set, is a refusal a person can act on
    ("unknown user or wrong password" is not among them: only the control plane can tell).
    """

    response: SipResponse
    label: str
    why: str = ""


_NO_DEVICES: Mapping[str, tuple[Algorithm, ...]] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrarPolicy:
    realm: str = "sip2uc"
    #: What every user name is challenged with unless `device_algorithms` says otherwise, most
    #: preferred first (RFC 8760 §2.4).
    algorithms: tuple[Algorithm, ...] = DEFAULT_CHALLENGE
    default_expires: int = DEFAULT_EXPIRES
    #: Digest user name -> its device's own algorithms (only those that differ from the default).
    device_algorithms: Mapping[str, tuple[Algorithm, ...]] = field(
        default_factory=lambda: _NO_DEVICES
    )

    def algorithms_for(self, user: str) -> tuple[Algorithm, ...]:
        if not self.device_algorithms:
            return self.algorithms
        return self.device_algorithms.get(user, self.algorithms)


def to_tag_for(secret: bytes, request: SipRequest) -> str:
    """A To tag that is the same for every retransmission of a request, without keeping state.

    RFC 3261 §8.2.6.2 wants a tag on final responses; deriving it from the request means a
    stateless 401 looks identical however often the handset asks.  The CSeq is left out: a 407
    to an INVITE and the dialog the authenticated retry creates then share one tag, which
    handsets that remember the first tag they saw (SIPp among them) rely on.
    """
    key = f"{request.call_id}\x00{request.from_.tag or ''}"
    # hmac.digest is the one-shot C path: several times cheaper than an HMAC object.
    return hmac.digest(secret, key.encode("utf-8", "surrogatepass"), "sha256")[:8].hex()


def _uri_user(address: NameAddr) -> str:
    uri = address.uri
    return (uri.user or "") if isinstance(uri, SipUri) else ""


def _instance_id(contact: NameAddr) -> str:
    value = contact.get_param("+sip.instance")
    if not value:
        return ""
    if value.startswith('"'):
        try:
            value = unquote_string(value)
        except SipParseError:
            return ""
    return value.strip("<>")


def _clamp_expires(value: int) -> int:
    return max(0, min(value, MAX_EXPIRES_FIELD))


class Registrar:
    """Stateless challenges and credential pre-checks for REGISTER; see the module docstring.

    `tag_secret` makes To tags; `nonces` and `counts` come from `sip.digest`. The source passed
    to the nonce functions is the IP only (NATs move ports between refreshes).
    """

    def __init__(
        self,
        nonces: NonceIssuer,
        counts: NonceCountTracker,
        *,
        tag_secret: bytes,
        policy: RegistrarPolicy | None = None,
    ) -> None:
        self._nonces = nonces
        self._counts = counts
        self._tag_secret = tag_secret
        self.policy = policy or RegistrarPolicy()
        # The Date header (RFC 3261 §20.17) has one-second resolution: format it once a second.
        self._date_second = -1
        self._date_text = ""

    def tag_for(self, request: SipRequest) -> str:
        return to_tag_for(self._tag_secret, request)

    # -- request side ---------------------------------------------------------------------------

    def user_of(self, request: SipRequest, *, proxy: bool = False) -> str:
        """The user name a request is for: the digest user name when it carries credentials,
        else the user of To (REGISTER) or From (a request challenged with 407)."""
        authorization = request.headers.get("Proxy-Authorization" if proxy else "Authorization")
        if authorization is not None:
            try:
                return parse_credentials(authorization).username
            except DigestError:
                pass
        try:
            return _uri_user(request.from_ if proxy else request.to)
        except SipParseError:
            return ""

    def receive(
        self, request: SipRequest, source_host: str, now: float
    ) -> RegisterAttempt | Rejection:
        try:
            contacts, remove_all = self._contacts(request)
        except SipParseError as exc:
            return Rejection(self._reply(request, exc.status, exc.reason), "bad_request")
        checked = self._credentials(request, source_host, now, proxy=False)
        if isinstance(checked, Rejection):
            return checked
        credentials = checked
        return RegisterAttempt(
            credentials=credentials,
            method=request.method,
            aor=str(request.to.uri),
            contacts=contacts,
            remove_all=remove_all,
            cseq=request.cseq.seq,
        )

    def credentials(
        self, request: SipRequest, source_host: str, now: float
    ) -> Credentials | Rejection:
        """Pre-check a request's Authorization exactly as a REGISTER's (401 challenges): what
        a handset's SUBSCRIBE is authenticated with. Its sender is the user of From (To names
        whom it watches)."""
        return self._credentials(request, source_host, now, proxy=False, sender_in_from=True)

    def sender_of(self, request: SipRequest) -> str:
        """The digest user name of a request's credentials, else the user of From."""
        if request.headers.get("Authorization") is not None:
            return self.user_of(request)
        try:
            return _uri_user(request.from_)
        except SipParseError:
            return ""

    def authenticate(
        self, request: SipRequest, source_host: str, now: float
    ) -> Credentials | Rejection:
        """Pre-check a request's Proxy-Authorization the way REGISTER's Authorization is
        checked: the same stateless nonces and 407 in place of 401 (RFC 3261 §22.3).  The digest
        itself is verified by the control plane."""
        return self._credentials(request, source_host, now, proxy=True)

    def _credentials(
        self,
        request: SipRequest,
        source_host: str,
        now: float,
        *,
        proxy: bool,
        sender_in_from: bool = False,
    ) -> Credentials | Rejection:
        policy = self.policy

        def challenge(user: str | None, stale: bool = False) -> SipResponse:
            if user is None and sender_in_from and policy.device_algorithms:
                user = self.sender_of(request)
            if proxy:
                return self.proxy_challenge(request, source_host, now, stale=stale, user=user)
            return self.challenge(request, source_host, now, stale=stale, user=user)

        authorization = request.headers.get("Proxy-Authorization" if proxy else "Authorization")
        if authorization is None:
            return Rejection(challenge(None), "challenge")
        try:
            credentials = parse_credentials(authorization)
        except DigestError as exc:
            return Rejection(
                self._reply(request, exc.status_code, "Bad Authorization header"),
                "bad_auth",
                f"malformed {'Proxy-' if proxy else ''}Authorization from {source_host}: {exc}",
            )
        user = credentials.username
        who = f"{printable(user)} from {source_host}"
        if credentials.realm != policy.realm:
            return Rejection(
                challenge(user),
                "wrong_realm",
                f"{who} answered for realm {printable(credentials.realm)!r}, not "
                f"{policy.realm!r}: clear the realm in the handset or set it to {policy.realm!r}",
            )
        if credentials.qop != QOP_AUTH or credentials.nonce_count is None:
            # Every challenge offers qop="auth"; an RFC 2069 answer (no qop, nc or cnonce) would
            # escape the nonce-count replay check, so it is refused.
            return Rejection(
                challenge(user),
                "no_qop",
                f"{who} answered without qop=auth (RFC 2069 digest), which is refused",
            )
        if not _same_uri(credentials.uri, request.uri):
            # RFC 3261 §22.4 / RFC 7616 §3.4.6: the digest covers the Request-URI; credentials
            # computed for another URI must not authorise this request (a captured INVITE's
            # credentials would otherwise dial any number).
            return Rejection(
                self._reply(request, 400, "Authorization uri does not match Request-URI"),
                "uri_mismatch",
                f"{who}: the digest uri {printable(credentials.uri)} is not the Request-URI",
            )
        status = self._nonces.check(credentials.nonce, now, source_host)
        if status is NonceStatus.INVALID:
            # Forged, issued to another address, or from before this sidecar's secret changed.
            return Rejection(
                challenge(user),
                "invalid_nonce",
                f"{who} answered a nonce this sidecar did not issue to that address; "
                "challenged again",
            )
        if status is NonceStatus.STALE:
            return Rejection(challenge(user, stale=True), "stale_nonce")
        offered = policy.algorithms_for(user)
        if credentials.algorithm.base not in offered:
            # RFC 7616 §3.4: the answer must use the challenge's algorithm. A device set to
            # SHA-256 that answers MD5 cannot do what it was asked: refused, never verified.
            names = ", ".join(a.value for a in offered)
            return Rejection(
                challenge(user),
                "algorithm",
                f"challenge algorithm not supported by the client: {who} answered "
                f"{credentials.algorithm.value}, challenged with {names}",
            )
        verdict = self._counts.admit(
            credentials.nonce,
            credentials.nonce_count,
            NonceIssuer.issue_time(credentials.nonce),
            now,
        )
        if verdict is CountStatus.REPLAYED:
            # RFC 7616 §3.4: a count not above the highest accepted for this nonce.  A client
            # that fell behind a busy server sends these honestly (retransmitted challenge,
            # reordered retries), so it is answered stale=true.
            return Rejection(challenge(user, stale=True), "nonce_replay")
        if verdict is CountStatus.FORGOTTEN:
            # The nonce may have been used and forgotten: no count can be trusted, a fresh
            # nonce can.
            return Rejection(challenge(user, stale=True), "nonce_forgotten")
        return credentials

    def _contacts(self, request: SipRequest) -> tuple[tuple[Contact, ...], bool]:
        header_expires = request.expires
        if request.contact_is_star:
            # RFC 3261 §10.3 step 6: "*" only alone and only with Expires: 0.
            if header_expires != 0:
                raise SipParseError("Contact: * needs Expires: 0 (RFC 3261 §10.3)", field="Contact")
            return (), True
        default = self.policy.default_expires if header_expires is None else header_expires
        specs: list[Contact] = []
        for contact in request.contact:
            expires = contact.expires
            q = contact.q
            specs.append(
                Contact(
                    uri=str(contact.uri),
                    expires=_clamp_expires(default if expires is None else expires),
                    q_milli=1000 if q is None else max(0, min(1000, round(q * 1000))),
                    instance_id=_instance_id(contact),
                )
            )
        return tuple(specs), False

    # -- response side --------------------------------------------------------------------------

    def complete(
        self, request: SipRequest, result: RegisterResult, source_host: str, now: float, wall: float
    ) -> SipResponse:
        """The final response for the control plane's `result` (`wall` is for the Date header)."""
        outcome = result.outcome
        if outcome is RegisterOutcome.OK:
            headers = [("Contact", _binding_value(b)) for b in result.bindings]
            headers.append(("Date", self._date(wall)))
            return self._reply(request, 200, None, headers)
        if outcome is RegisterOutcome.UNAUTHORIZED:
            return self.challenge(request, source_host, now)
        if outcome is RegisterOutcome.INTERVAL_TOO_BRIEF:
            return self._reply(request, 423, None, [("Min-Expires", str(result.min_expires))])
        if outcome is RegisterOutcome.TOO_MANY_BINDINGS:
            return self._reply(request, 403, result.reason or "Too Many Bindings")
        if outcome is RegisterOutcome.OUT_OF_ORDER:
            # RFC 3261 §10.3 step 7 only says the request fails: 400 names the client's fault.
            return self._reply(request, 400, "Out-of-order CSeq")
        return self._reply(request, 403, result.reason or None)

    def _date(self, wall: float) -> str:
        second = int(wall)
        if second != self._date_second:
            self._date_second = second
            self._date_text = formatdate(second, usegmt=True)
        return self._date_text

    def challenge(
        self,
        request: SipRequest,
        source_host: str,
        now: float,
        *,
        stale: bool = False,
        user: str | None = None,
    ) -> SipResponse:
        """401 with one WWW-Authenticate per algorithm the user name is challenged with, most
        preferred first (RFC 8760 §2.4). `user` defaults to `user_of(request)`."""
        values = self._challenges(request, source_host, now, stale, user, proxy=False)
        return self._reply(request, 401, None, [("WWW-Authenticate", v) for v in values])

    def proxy_challenge(
        self,
        request: SipRequest,
        source_host: str,
        now: float,
        *,
        stale: bool = False,
        user: str | None = None,
    ) -> SipResponse:
        """407 with Proxy-Authenticate: how a B2BUA challenges an INVITE (RFC 3261 §22.3)."""
        values = self._challenges(request, source_host, now, stale, user, proxy=True)
        return self._reply(request, 407, None, [("Proxy-Authenticate", v) for v in values])

    def _challenges(
        self,
        request: SipRequest,
        source_host: str,
        now: float,
        stale: bool,
        user: str | None,
        *,
        proxy: bool,
    ) -> list[str]:
        policy = self.policy
        algorithms = policy.algorithms
        if policy.device_algorithms:
            if user is None:
                user = self.user_of(request, proxy=proxy)
            algorithms = policy.algorithms_for(user)
        return self._nonces.challenge_header(
            policy.realm, now, source_host, stale=stale, algorithms=algorithms
        )

    def _reply(
        self,
        request: SipRequest,
        status: int,
        reason: str | None,
        headers: list[tuple[str, str]] | None = None,
    ) -> SipResponse:
        return make_response(
            request,
            status,
            reason,
            to_tag=to_tag_for(self._tag_secret, request),
            headers=headers or (),
        )


def _binding_value(binding: Contact) -> str:
    value = f"<{binding.uri}>;expires={binding.expires}"
    if binding.q_milli != 1000:
        value += f";q={binding.q_milli / 1000:.3g}"
    if binding.instance_id:
        value += f';+sip.instance="<{binding.instance_id}>"'
    return value


def _same_uri(digest_uri: str, request_uri: object) -> bool:
    """Whether the digest-uri names the Request-URI.

    RFC 3261 §19.1.4 equality when both parse. Some clients (SIPp among them) put only the
    server's address in the digest-uri (``sip:host:port``, no user part); that is accepted when
    scheme, host and port are the request's. Replay of captured credentials is stopped by the
    nonce count either way; this check keeps credentials from another domain or number out.
    """
    if digest_uri == str(request_uri):
        return True
    try:
        given, wanted = parse_uri(digest_uri), parse_uri(str(request_uri))
    except SipParseError:
        return False
    if uri_equal(given, wanted):
        return True
    if not isinstance(given, SipUri) or not isinstance(wanted, SipUri) or given.user is not None:
        return False
    return (
        given.scheme == wanted.scheme
        and given.host.lower() == wanted.host.lower()
        and (given.port or 5060) == (wanted.port or 5060)
    )
