"""The one error type the SIP message layer raises.

Every parser in this package raises only :class:`SipParseError` on bad input, so a transport
adapter needs a single ``except`` to answer (or drop) a malformed message.  The error carries the
response the message deserves (RFC 3261 §21) so the adapter does not have to guess.
"""

from __future__ import annotations

__all__ = ["SipParseError"]


class SipParseError(Exception):
    """Malformed or unacceptable SIP input.

    ``status`` is the response a UAS should send for a request (400 by default; 413, 416, 420 and
    505 where RFC 3261 §21.4 names a more precise code).  For a malformed response the status is
    meaningless: responses are dropped, never answered (RFC 3261 §18.1.2).  ``field`` names the
    header (canonical name), ``"start-line"``, ``"body"`` or ``"uri"`` that was wrong.
    """

    def __init__(self, reason: str, *, status: int = 400, field: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.field = field

    def __repr__(self) -> str:
        return f"SipParseError({self.reason!r}, status={self.status}, field={self.field!r})"
