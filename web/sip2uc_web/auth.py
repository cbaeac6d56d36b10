"""Who may read the state view: the admin API's rules, applied to HTTP.

On a loopback listen address the page is open (as the admin API is to plaintext callers there),
but only for requests that name a loopback host: a web page elsewhere cannot reach it by
pointing its own host name at 127.0.0.1 (DNS rebinding). On any other address the admin token
is required, over TLS: as `Authorization: Bearer <token>` (scripts), or once through the login
form, which sets an HttpOnly cookie. A wrong bearer token is refused everywhere. Every
comparison is constant-time.

The cookie holds an HMAC of a fixed label keyed with the token, not the token: it opens only
this view, and changing the admin token ends every session.
"""

from __future__ import annotations

import enum
import hashlib
import hmac

from sip2uc.client import ClientError, is_loopback_host, split_target

SESSION_COOKIE = "sip2uc_view"
_SESSION_LABEL = b"sip2uc state view session v1"


class Verdict(enum.Enum):
    ALLOW = "allow"
    MISSING = "missing"  # no credentials where they are required
    WRONG = "wrong"  # credentials given, and not the right ones


def session_value(token: str) -> str:
    return hmac.new(token.encode(), _SESSION_LABEL, hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class Gate:
    def __init__(self, token: str | None, *, loopback: bool) -> None:
        if not loopback and not token:
            raise ValueError("a state view on a non-loopback address needs the admin token")
        self.loopback = loopback
        self._token = token or None
        self._session = session_value(token) if token else None

    @property
    def required(self) -> bool:
        """Whether every request must carry the token (or the session cookie)."""
        return not self.loopback

    def check(self, authorization: str | None, cookie: str | None) -> Verdict:
        if authorization:
            scheme, _, given = authorization.partition(" ")
            if scheme.lower() != "bearer":
                return Verdict.WRONG
            if self._token is None:
                # Loopback without a known token: nothing to check against, nothing required.
                return Verdict.ALLOW
            return Verdict.ALLOW if _same(given.strip(), self._token) else Verdict.WRONG
        if cookie and self._session is not None and _same(cookie, self._session):
            return Verdict.ALLOW
        if not self.required:
            return Verdict.ALLOW  # a stale cookie on loopback is as good as none
        return Verdict.WRONG if cookie else Verdict.MISSING

    def login(self, given: str) -> str | None:
        """The session cookie's value for the right token; None for anything else."""
        if self._token is None or self._session is None or not _same(given.strip(), self._token):
            return None
        return self._session

    def host_allowed(self, host_header: str) -> bool:
        """Requests to a loopback view must name a loopback host (the Host header)."""
        if not self.loopback:
            return True
        try:
            host, _ = split_target(host_header, default_port=0)
        except ClientError:
            return False
        return is_loopback_host(host)
