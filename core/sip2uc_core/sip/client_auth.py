"""Digest authentication as a client (UAC) of one server: RFC 3261 §22.2-§22.3 with RFC 7616 /
RFC 8760 credentials. Sans-IO: randomness (the cnonce) is injected, nothing else is needed.

A `ClientAuth` remembers the last challenge the server sent and answers it in every following
request (with a growing nonce count when the server asked for ``qop``), so that a client making
thousands of requests is not challenged for each one. `challenged` learns from a 401/407 and
says whether resending the request with credentials can help: the first challenge to a request
always (a remembered nonce may have expired), a further one only when the server says the nonce
was merely ``stale`` — otherwise the credentials are wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .digest import Challenge, DigestError, build_credentials, compute_ha1, parse_challenge
from .message import SipRequest, SipResponse

__all__ = ["ClientAuth"]

_CHALLENGE_HEADERS = {401: "WWW-Authenticate", 407: "Proxy-Authenticate"}
_CREDENTIAL_HEADERS = {401: "Authorization", 407: "Proxy-Authorization"}


@dataclass(slots=True)
class _Remembered:
    status: int
    challenge: Challenge
    ha1: str
    count: int = 0


class ClientAuth:
    def __init__(self, username: str, password: str, random_bytes: Callable[[int], bytes]) -> None:
        self.username = username
        self._password = password
        self._random_bytes = random_bytes
        self._remembered: _Remembered | None = None
        #: Why the last challenge could not be answered (for status and logs), else "".
        self.error = ""

    def __repr__(self) -> str:  # never show the password
        return f"ClientAuth(username={self.username!r})"

    @property
    def configured(self) -> bool:
        return bool(self.username and self._password)

    def authorize(self, request: SipRequest, body: bytes = b"") -> None:
        """Add credentials for the remembered challenge (if any) to ``request``."""
        remembered = self._remembered
        if remembered is None:
            return
        remembered.count += 1
        credentials = build_credentials(
            remembered.challenge,
            username=self.username,
            ha1=remembered.ha1,
            method=request.method,
            uri=str(request.uri),
            cnonce=self._random_bytes(8).hex(),
            nc=remembered.count,
            body=body,
        )
        name = _CREDENTIAL_HEADERS[remembered.status]
        request.headers.remove(name)
        request.headers.add(name, credentials.serialize())

    def challenged(self, response: SipResponse, *, retried: bool) -> bool:
        """Learn the challenge of a 401/407; True when resending the request helps.

        ``retried``: the request was already resent with credentials for a challenge to it.
        Then only a ``stale`` nonce (RFC 7616 §3.3) is worth another try.
        """
        header = _CHALLENGE_HEADERS.get(response.status)
        if header is None:
            return False
        if not self.configured:
            self.error = f"the server asks for authentication ({response.status}) and no credentials are configured"
            return False
        challenge: Challenge | None = None
        for value in response.headers.get_lines(header):
            try:
                challenge = parse_challenge(value)
            except DigestError:
                continue
            if not challenge.userhash and (not challenge.qop or "auth" in challenge.qop):
                break
            challenge = None
        if challenge is None:
            self.error = f"no usable digest challenge in the {response.status}"
            return False
        if retried and not challenge.stale:
            self.error = f"the server refused the credentials of {self.username!r}"
            self._remembered = None
            return False
        ha1 = compute_ha1(challenge.algorithm, self.username, challenge.realm, self._password)
        self._remembered = _Remembered(response.status, challenge, ha1)
        self.error = ""
        return True
