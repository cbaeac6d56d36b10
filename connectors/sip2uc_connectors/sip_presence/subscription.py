"""One subscription to a user's presence at the server (RFC 6665, subscriber side). Sans-IO.

`next_request` says which SUBSCRIBE to send now (initial, refresh, or the unsubscribe with
``Expires: 0``); `on_outcome` takes the final response; `on_notify` takes a NOTIFY of the
subscription's dialog and says whether to accept it. The dialog is set up by the 2xx or by a
NOTIFY that overtakes it (§4.1.2.4); its remote target and route set come from whichever set it
up (RFC 3261 §12.1.2).

What a final response does is a table (`_EFFECTS`, keyed by request kind and outcome); what a
NOTIFY's ``Subscription-State: terminated`` does depends on its reason (§4.2.2, RFC 6665 §4.1.3):
deactivated and timeout subscribe again at once, probation and giveup after Retry-After (or a
delay), rejected, noresource and invariant only much later. Refreshes are spread over the
expiry window like publications' (see `publication`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "SubscribeKind",
    "SubscribeOutcome",
    "SubscribeRequest",
    "Subscription",
    "classify_subscribe",
]

MAX_RETRY_DELAY = 120.0
#: After a refusal (403, 404, 489, rejected, noresource): the server will not change its mind soon.
REFUSED_RETRY_DELAY = 300.0
REFRESH_MARGIN = 5.0


class SubscribeKind(enum.Enum):
    INITIAL = "initial"
    REFRESH = "refresh"
    UNSUBSCRIBE = "unsubscribe"


class SubscribeOutcome(enum.Enum):
    SUCCESS = "2xx"
    INTERVAL_TOO_BRIEF = "423"
    NO_DIALOG = "481: the server lost the subscription"
    REFUSED = "403, 404, 480, 489, 603: not now, maybe never"
    FAILURE = "any other failure, or no answer"


class _Effect(enum.Enum):
    ACTIVE = "the subscription is (still) active"
    ENDED = "unsubscribed"
    START_OVER = "subscribe afresh in a new dialog"
    RAISE_EXPIRES = "ask again for the server's minimum"
    RETRY_LATER = "try again after a growing delay"
    REFUSED = "try again much later"


_K = SubscribeKind
_O = SubscribeOutcome
_E = _Effect
_EFFECTS: dict[tuple[SubscribeKind, SubscribeOutcome], _Effect] = {
    (_K.INITIAL, _O.SUCCESS): _E.ACTIVE,
    (_K.REFRESH, _O.SUCCESS): _E.ACTIVE,
    (_K.INITIAL, _O.NO_DIALOG): _E.RETRY_LATER,
    (_K.REFRESH, _O.NO_DIALOG): _E.START_OVER,
    (_K.INITIAL, _O.REFUSED): _E.REFUSED,
    (_K.REFRESH, _O.REFUSED): _E.START_OVER,
    (_K.INITIAL, _O.FAILURE): _E.RETRY_LATER,
    (_K.REFRESH, _O.FAILURE): _E.RETRY_LATER,
    (_K.INITIAL, _O.INTERVAL_TOO_BRIEF): _E.RAISE_EXPIRES,
    (_K.REFRESH, _O.INTERVAL_TOO_BRIEF): _E.RAISE_EXPIRES,
    **{(_K.UNSUBSCRIBE, outcome): _E.ENDED for outcome in SubscribeOutcome},
}

_REFUSED_STATUSES = frozenset({403, 404, 480, 489, 603})
_AT_ONCE_REASONS = frozenset({"deactivated", "timeout"})
_REFUSED_REASONS = frozenset({"rejected", "noresource", "invariant"})


def classify_subscribe(status: int) -> SubscribeOutcome:
    if 200 <= status < 300:
        return SubscribeOutcome.SUCCESS
    if status == 423:
        return SubscribeOutcome.INTERVAL_TOO_BRIEF
    if status == 481:
        return SubscribeOutcome.NO_DIALOG
    if status in _REFUSED_STATUSES:
        return SubscribeOutcome.REFUSED
    return SubscribeOutcome.FAILURE


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    kind: SubscribeKind
    call_id: str
    local_tag: str
    #: The dialog's remote tag, target and route set (None/empty for an initial SUBSCRIBE).
    remote_tag: str | None
    remote_target: str | None
    route_set: tuple[str, ...]
    cseq: int
    expires: int


@dataclass(slots=True)
class _Dialog:
    remote_tag: str
    remote_target: str | None
    route_set: tuple[str, ...] = field(default_factory=tuple)


class Subscription:
    """``new_ids()`` returns a fresh (Call-ID, local tag) pair for each new dialog."""

    def __init__(self, expires: int, spread: float, new_ids: Callable[[], tuple[str, str]]) -> None:
        self.expires = expires
        self.spread = min(max(spread, 0.0), 1.0)
        self._new_ids = new_ids
        self.call_id, self.local_tag = new_ids()
        self.cseq = 0
        self.dialog: _Dialog | None = None
        self.wanted = True
        self.active = False
        self.expires_at: float | None = None
        self.refresh_at: float | None = None
        self.in_flight: SubscribeRequest | None = None
        self.retry_at: float | None = None
        self.failures = 0
        #: Set when the subscription must start over in a new dialog (new Call-ID and tag).
        self.needs_new_dialog = False
        self.refused = False

    # --- what the owner wants ------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop watching: unsubscribe if there is a dialog, else just stop."""
        self.wanted = False

    def _renew_dialog(self) -> None:
        """Use a new dialog from now on (after the old one was lost)."""
        self.call_id, self.local_tag = self._new_ids()
        self.cseq = 0
        self.dialog = None
        self.active = False
        self.expires_at = None
        self.refresh_at = None
        self.needs_new_dialog = False

    def refresh_now(self) -> None:
        """Refresh at the next chance (e.g. the local address changed: a new Contact)."""
        if self.dialog is not None:
            self.refresh_at = 0.0

    @property
    def finished(self) -> bool:
        """Not wanted and nothing left to do: may be forgotten."""
        return not self.wanted and self.in_flight is None and self.dialog is None

    # --- what to send --------------------------------------------------------------------------

    def deadline(self) -> float | None:
        if self.in_flight is not None:
            return None
        if self.retry_at is not None:
            return self.retry_at
        if self.wanted and self.dialog is not None:
            return self.refresh_at
        if self.wanted and self.needs_new_dialog:
            return 0.0  # at once
        return None

    def next_request(self, now: float) -> SubscribeRequest | None:
        if self.in_flight is not None:
            return None
        if self.retry_at is not None:
            if now < self.retry_at:
                return None
            self.retry_at = None
        if self.dialog is not None and self.expires_at is not None and self.expires_at <= now:
            self.needs_new_dialog = True  # expired unrefreshed: the server dropped it
        if self.needs_new_dialog:
            self._renew_dialog()
        kind: SubscribeKind | None = None
        if not self.wanted:
            if self.dialog is not None:
                kind = SubscribeKind.UNSUBSCRIBE
        elif self.dialog is None:
            kind = SubscribeKind.INITIAL
        elif self.refresh_at is not None and now >= self.refresh_at:
            kind = SubscribeKind.REFRESH
        if kind is None:
            return None
        self.cseq += 1
        dialog = self.dialog
        request = SubscribeRequest(
            kind=kind,
            call_id=self.call_id,
            local_tag=self.local_tag,
            remote_tag=dialog.remote_tag if dialog else None,
            remote_target=dialog.remote_target if dialog else None,
            route_set=dialog.route_set if dialog else (),
            cseq=self.cseq,
            expires=0 if kind is SubscribeKind.UNSUBSCRIBE else self.expires,
        )
        self.in_flight = request
        return request

    def next_cseq(self) -> int:
        """A new CSeq for resending the request in flight (with credentials)."""
        self.cseq += 1
        return self.cseq

    # --- what came back ------------------------------------------------------------------------

    def on_outcome(
        self,
        outcome: SubscribeOutcome,
        now: float,
        *,
        remote_tag: str | None = None,
        contact: str | None = None,
        record_route: tuple[str, ...] = (),
        expires: int | None = None,
        min_expires: int | None = None,
    ) -> None:
        request = self.in_flight
        if request is None:
            return
        self.in_flight = None
        effect = _EFFECTS[(request.kind, outcome)]
        if effect is _Effect.ACTIVE:
            if self.dialog is None and remote_tag:
                # §12.1.2: the route set is the Record-Route of the 2xx, in reverse.
                self.dialog = _Dialog(remote_tag, contact, tuple(reversed(record_route)))
            elif self.dialog is not None and contact:
                self.dialog.remote_target = contact
            if self.dialog is None:
                # A 2xx without a To tag sets up no dialog: nothing could be refreshed.
                self._retry(now, MAX_RETRY_DELAY)
                return
            granted = expires if expires is not None else request.expires
            if granted <= 0:
                # Accepted but already over (a one-shot fetch): subscribe again later.
                self.needs_new_dialog = True
                return
            self.active = True
            self.refused = False
            self.failures = 0
            self.expires_at = now + granted
            self.refresh_at = now + min(
                granted * (0.5 + 0.4 * self.spread), max(granted - REFRESH_MARGIN, granted / 2)
            )
        elif effect is _Effect.ENDED:
            self.dialog = None
            self.active = False
        elif effect is _Effect.START_OVER:
            self.needs_new_dialog = True
        elif effect is _Effect.RAISE_EXPIRES:
            self.expires = max(self.expires * 2, min_expires or 0)
            if request.kind is SubscribeKind.INITIAL:
                self.needs_new_dialog = True  # a failed initial SUBSCRIBE made no dialog
        elif effect is _Effect.REFUSED:
            self.refused = True
            self.needs_new_dialog = True
            self.retry_at = now + REFUSED_RETRY_DELAY
        else:
            if request.kind is SubscribeKind.INITIAL:
                self.needs_new_dialog = True
            self._retry(now, MAX_RETRY_DELAY)

    def _retry(self, now: float, cap: float) -> None:
        self.failures += 1
        self.retry_at = now + min(cap, 2.0 ** (self.failures - 1))

    def on_notify(
        self,
        now: float,
        *,
        remote_tag: str,
        contact: str | None,
        record_route: tuple[str, ...],
        state: str,
        expires: int | None,
        reason: str | None,
        retry_after: int | None,
    ) -> bool:
        """A NOTIFY in this subscription's dialog; False when it does not belong (answer 481)."""
        if self.dialog is None:
            if self.in_flight is None or self.in_flight.kind is not SubscribeKind.INITIAL:
                return False
            # The NOTIFY overtook the 2xx: it sets up the dialog (RFC 6665 §4.1.2.4).
            self.dialog = _Dialog(remote_tag, contact, tuple(reversed(record_route)))
        elif self.dialog.remote_tag != remote_tag:
            return False  # a fork we did not set up
        elif contact:
            self.dialog.remote_target = contact
        state = state.lower()
        if state in ("active", "pending"):
            self.active = True
            if expires is not None:
                self.expires_at = now + expires
                latest = now + max(expires * 0.9, expires - REFRESH_MARGIN)
                if self.refresh_at is None or self.refresh_at > latest:
                    self.refresh_at = now + expires * (0.5 + 0.4 * self.spread)
            return True
        if state == "terminated":
            self.dialog = None
            self.active = False
            if not self.wanted:
                return True
            self.needs_new_dialog = True
            why = (reason or "").lower()
            if why in _AT_ONCE_REASONS and retry_after is None:
                return True
            if why in _REFUSED_REASONS:
                self.refused = True
                self.retry_at = now + REFUSED_RETRY_DELAY
            else:
                self.retry_at = now + float(retry_after if retry_after is not None else 30)
        return True
