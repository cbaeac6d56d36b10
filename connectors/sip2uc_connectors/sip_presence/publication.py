"""One event state publication (RFC 3903) kept in step with what should be published. Sans-IO.

The owner says what the published state should be (`set_body`: a document, or None to have no
publication); `next_request` says which PUBLISH to send now, if any; `on_outcome` takes what the
server answered. Only one request is in flight at a time, and it always carries the latest
document and the latest entity-tag:

- initial: no entity-tag yet — PUBLISH with the body (§4.2);
- modify: the document changed — ``SIP-If-Match`` with the body (§4.4);
- refresh: unchanged, due before expiry — ``SIP-If-Match`` without a body (§4.3);
- remove: no document wanted — ``SIP-If-Match`` and ``Expires: 0`` (§4.5).

What each answer does is a table (`_EFFECTS`, keyed by request kind and outcome): a 412
(§4.1; Kamailio answers a stale entity-tag with 500 instead) drops the entity-tag so that the
next request is a full initial PUBLISH; 423 raises Expires to the server's Min-Expires (§6);
489 gives up (the server does not know the event package); any other failure is retried after a
growing delay, keeping the entity-tag while it can still be valid.

Refreshes are spread over the expiry window: each publication refreshes at a fixed fraction
(``spread``, 0-1, e.g. from a hash of the entity) between 50 % and 90 % of the granted
interval, so that thousands of publications made in one burst do not all refresh in one later
burst.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "Outcome",
    "Publication",
    "PublishRequest",
    "RequestKind",
    "classify",
]

MAX_RETRY_DELAY = 60.0
#: Refresh no later than this many seconds before expiry, whatever the spread says.
REFRESH_MARGIN = 5.0


class RequestKind(enum.Enum):
    INITIAL = "initial"
    MODIFY = "modify"
    REFRESH = "refresh"
    REMOVE = "remove"


class Outcome(enum.Enum):
    SUCCESS = "2xx"
    CONDITIONAL_FAILED = "412, or 500 to a conditional request"
    INTERVAL_TOO_BRIEF = "423"
    BAD_EVENT = "489"
    FAILURE = "any other failure, or no answer"


class _Effect(enum.Enum):
    ACCEPTED = "the server holds the publication"
    REMOVED = "the server holds no publication"
    START_OVER = "forget the entity-tag; publish afresh"
    RAISE_EXPIRES = "ask again for the server's minimum"
    GIVE_UP = "the server cannot take this event"
    RETRY_LATER = "try again after a delay"


_K = RequestKind
_O = Outcome
_E = _Effect
_EFFECTS: dict[tuple[RequestKind, Outcome], _Effect] = {
    (_K.INITIAL, _O.SUCCESS): _E.ACCEPTED,
    (_K.MODIFY, _O.SUCCESS): _E.ACCEPTED,
    (_K.REFRESH, _O.SUCCESS): _E.ACCEPTED,
    (_K.REMOVE, _O.SUCCESS): _E.REMOVED,
    # An initial PUBLISH has no condition to fail: a 500 to it is an ordinary failure.
    (_K.INITIAL, _O.CONDITIONAL_FAILED): _E.RETRY_LATER,
    (_K.MODIFY, _O.CONDITIONAL_FAILED): _E.START_OVER,
    (_K.REFRESH, _O.CONDITIONAL_FAILED): _E.START_OVER,
    (_K.REMOVE, _O.CONDITIONAL_FAILED): _E.REMOVED,
    **{(kind, _O.INTERVAL_TOO_BRIEF): _E.RAISE_EXPIRES for kind in RequestKind},
    **{(kind, _O.BAD_EVENT): _E.GIVE_UP for kind in RequestKind},
    **{(kind, _O.FAILURE): _E.RETRY_LATER for kind in RequestKind},
}


def classify(status: int, conditional: bool) -> Outcome:
    """The outcome of a final response to a PUBLISH (``conditional``: it had SIP-If-Match)."""
    if 200 <= status < 300:
        return Outcome.SUCCESS
    if status == 412 or (status == 500 and conditional):
        return Outcome.CONDITIONAL_FAILED
    if status == 423:
        return Outcome.INTERVAL_TOO_BRIEF
    if status == 489:
        return Outcome.BAD_EVENT
    return Outcome.FAILURE


@dataclass(frozen=True, slots=True)
class PublishRequest:
    kind: RequestKind
    #: The document (initial and modify), else None.
    body: bytes | None
    #: SIP-If-Match (modify, refresh, remove), else None.
    etag: str | None
    expires: int
    #: The generation of the wanted state this request makes current when it succeeds.
    generation: int


class Publication:
    def __init__(self, expires: int, spread: float) -> None:
        if expires < 1:
            raise ValueError("expires must be at least 1 second")
        self.expires = expires
        self.spread = min(max(spread, 0.0), 1.0)
        self.etag: str | None = None
        self.expires_at: float | None = None
        self.refresh_at: float | None = None
        #: The wanted document (None: no publication) and its generation.
        self.body: bytes | None = None
        self.generation = 0
        #: The generation the server is known to hold (-1: unknown, publish it).
        self.settled = 0
        self.in_flight: PublishRequest | None = None
        self.retry_at: float | None = None
        self.failures = 0
        self.given_up = False
        #: Set when the entity-tag or expiry changed (the owner saves them).
        self.dirty = False

    # --- what the owner wants ------------------------------------------------------------------

    def set_body(self, body: bytes | None) -> int:
        """Want ``body`` published (None: no publication); returns its generation."""
        if body == self.body and self.generation > 0:
            return self.generation
        self.body = body
        self.generation += 1
        self.given_up = False
        return self.generation

    def restore(self, etag: str, expires_at: float, now: float) -> None:
        """Adopt an entity-tag saved by an earlier run: the next change modifies that
        publication instead of adding a second one; unchanged, it is refreshed in time."""
        if expires_at <= now + REFRESH_MARGIN:
            return
        # What the old run published stays until the owner says otherwise (set_body); until
        # then it is refreshed, as the old run would have done.
        self.etag = etag
        self.expires_at = expires_at
        self.refresh_at = max(now, expires_at - REFRESH_MARGIN * 2)

    # --- what to send --------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Nothing on the server, nothing wanted, nothing in flight: may be forgotten."""
        return (
            self.etag is None
            and self.body is None
            and self.in_flight is None
            and self.settled == self.generation
        )

    def deadline(self) -> float | None:
        """When `next_request` may have something that is not ready now."""
        if self.in_flight is not None or self.given_up:
            return None
        if self.retry_at is not None:
            return self.retry_at
        if self.etag is not None and self.settled == self.generation:
            return self.refresh_at
        return None

    def next_request(self, now: float) -> PublishRequest | None:
        """The PUBLISH to send now (marked in flight), or None."""
        if self.in_flight is not None or self.given_up:
            return None
        if self.retry_at is not None:
            if now < self.retry_at:
                return None
            self.retry_at = None
        if self.etag is not None and self.expires_at is not None and self.expires_at <= now:
            # Expired while we could not refresh: the server has forgotten it.
            self._forget(now)
        request: PublishRequest | None = None
        if self.settled != self.generation:
            if self.body is not None:
                kind = RequestKind.INITIAL if self.etag is None else RequestKind.MODIFY
                request = PublishRequest(kind, self.body, self.etag, self.expires, self.generation)
            elif self.etag is not None:
                request = PublishRequest(RequestKind.REMOVE, None, self.etag, 0, self.generation)
            else:
                self.settled = self.generation  # nothing there, nothing wanted
        elif self.etag is not None and self.refresh_at is not None and now >= self.refresh_at:
            request = PublishRequest(
                RequestKind.REFRESH, None, self.etag, self.expires, self.generation
            )
        self.in_flight = request
        return request

    # --- what came back ------------------------------------------------------------------------

    def on_outcome(
        self,
        outcome: Outcome,
        now: float,
        *,
        etag: str | None = None,
        expires: int | None = None,
        min_expires: int | None = None,
    ) -> bool:
        """Take the outcome of the request in flight; True when it made its generation current."""
        request = self.in_flight
        if request is None:
            return False
        self.in_flight = None
        if outcome is Outcome.SUCCESS and request.kind is not RequestKind.REMOVE and not etag:
            outcome = Outcome.FAILURE  # §11.3: a 2xx must carry SIP-ETag; without it no refresh
        effect = _EFFECTS[(request.kind, outcome)]
        if effect is _Effect.ACCEPTED:
            granted = expires if expires is not None and expires > 0 else request.expires
            self.etag = etag
            self.expires_at = now + granted
            self.refresh_at = now + min(
                granted * (0.5 + 0.4 * self.spread), max(granted - REFRESH_MARGIN, granted / 2)
            )
            self.settled = request.generation
            self.failures = 0
            self.dirty = True
            return True
        if effect is _Effect.REMOVED:
            self._forget(now)
            self.settled = request.generation
            self.failures = 0
            return True
        if effect is _Effect.START_OVER:
            self._forget(now)
            return False
        if effect is _Effect.RAISE_EXPIRES:
            self.expires = max(self.expires * 2, min_expires or 0)
            return False
        if effect is _Effect.GIVE_UP:
            self.given_up = True
            return False
        self.failures += 1
        self.retry_at = now + min(MAX_RETRY_DELAY, 2.0 ** (self.failures - 1))
        return False

    def _forget(self, now: float) -> None:
        if self.etag is not None:
            self.dirty = True
        self.etag = None
        self.expires_at = None
        self.refresh_at = None
        self.settled = -1 if self.body is not None else self.settled
