"""Who may read the address book: HTTP Digest (RFC 7616) with the handset's SIP credentials,
or a per-site token (pure).

The digest is handled like REGISTER's: stateless nonces bound to the client's address and
carrying their wall-clock issue time, a nonce-count check against replay, and the response itself verified by the control plane
against the stored HA1 (the sidecar never sees a password or an HA1). A wrong password and
an unknown user get the same fresh challenge, so the book cannot be used to find user names.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from sip2uc_core.sip.digest import (
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

__all__ = ["Challenge", "HttpDigest", "token_matches"]


@dataclass(frozen=True, slots=True)
class Challenge:
    """A 401 to send (`www_authenticate` values, one per algorithm) or, with `status` 400, a
    malformed Authorization header. `auth_failure`: credentials that were refused before any
    password was checked (reported; only a wrong password counts towards a ban)."""

    www_authenticate: tuple[str, ...]
    auth_failure: bool
    reason: str
    status: int = 401


class HttpDigest:
    """Challenges and pre-checks HTTP Digest credentials; see the module docstring."""

    def __init__(
        self,
        nonces: NonceIssuer,
        counts: NonceCountTracker,
        *,
        realm: str,
        algorithms: tuple[Algorithm, ...] = (Algorithm.SHA_256, Algorithm.MD5),
    ) -> None:
        self._nonces = nonces
        self._counts = counts
        self.realm = realm
        self.algorithms = algorithms

    def challenge(
        self, source_host: str, now: float, *, stale: bool = False, reason: str = "challenge"
    ) -> Challenge:
        values = self._nonces.challenge_header(
            self.realm, now, source_host, stale=stale, algorithms=self.algorithms
        )
        return Challenge(tuple(values), reason not in ("challenge", "stale_nonce"), reason)

    def check(
        self, authorization: str | None, target: str, source_host: str, now: float
    ) -> Credentials | Challenge:
        """The credentials to verify with the control plane, or the answer to send now.

        `target` is the request-target as received (path and query): RFC 7616 §3.4.6 makes
        the server check that the digest's uri names it.
        """
        if authorization is None or not authorization[:7].lower().startswith("digest "):
            return self.challenge(source_host, now)
        try:
            credentials = parse_credentials(authorization)
        except DigestError:
            return Challenge((), True, "bad_auth", status=400)
        if credentials.realm != self.realm:
            return self.challenge(source_host, now, reason="wrong_realm")
        if credentials.qop != QOP_AUTH or credentials.nonce_count is None:
            # Without qop there is no nonce count, hence no replay check: refused.
            return self.challenge(source_host, now, reason="no_qop")
        if not _names_target(credentials.uri, target):
            return Challenge((), True, "uri_mismatch", status=400)
        status = self._nonces.check(credentials.nonce, now, source_host)
        if status is NonceStatus.INVALID:
            return self.challenge(source_host, now, reason="invalid_nonce")
        if status is NonceStatus.STALE:
            return self.challenge(source_host, now, stale=True, reason="stale_nonce")
        verdict = self._counts.admit(
            credentials.nonce,
            credentials.nonce_count,
            NonceIssuer.issue_time(credentials.nonce),
            now,
        )
        if verdict is not CountStatus.ACCEPTED:
            # A replayed count, or a nonce that may have been used and forgotten: a fresh
            # nonce can be trusted (RFC 7616 §3.4); honest clients retry at once.
            return self.challenge(source_host, now, stale=True, reason="stale_nonce")
        return credentials


def _names_target(digest_uri: str, target: str) -> bool:
    """Whether the digest's uri is the request-target: the same text, or the same path and
    query when the client wrote an absolute URI."""
    if digest_uri == target:
        return True
    parts = urlsplit(digest_uri)
    if not parts.scheme:
        return False
    rebuilt = parts.path + (f"?{parts.query}" if parts.query else "")
    return rebuilt == target


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison of a presented site token with the configured one."""
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
