"""The Teams bridge's protocol core: which Graph request to make next, and what replies mean.

Sans-IO: it is fed sip2uc states (`publish`), Graph replies (`handle_reply`, `handle_failure`) and
the current time, and hands out `GraphCall`s (`next_call`) and the time it next has work
(`next_deadline`). It never sleeps, reads a clock or opens a socket; `bridge.py` drives it.

What it keeps per user is the latest sip2uc state (publishing again replaces it: a bridge that
falls behind sends only the newest state, never a backlog) and what it believes Graph holds for
the user: its presence session's pair and the preferred presence's pair, each possibly unknown
(after a start without saved state). A user is *pending* while the two differ.

Graph semantics it follows (https://learn.microsoft.com/graph/api/presence-setpresence,
https://learn.microsoft.com/graph/cloud-communications-manage-presence-state):

- The application's presence session (`setPresence`, `sessionId` = the application id) carries
  the handset state. An Available session times out after 5 minutes without a re-post (it fades
  to AvailableIdle, then Away), so Available sessions are re-posted every `available_keepalive`;
  every session expires after its `expirationDuration` (then Offline), so other sessions are
  re-posted `refresh_margin` before that.
- `clearPresence` removes the session when the handsets go offline.
- A manual state is the user's preferred presence (`setUserPreferredPresence`), which overrides
  every session; it is cleared with `clearUserPreferredPresence` and re-posted daily (without an
  `expirationDuration` Graph keeps it one day for Busy/DoNotDisturb).
- 429, 503 and 504 (and other 5xx, timeouts, connection failures) pause every request: Graph
  throttles per application and tenant. The pause is Retry-After when given, else exponential
  backoff with jitter. Requests also stay within a sliding-window budget.
- Presence comes back by polling `getPresencesByUserId` in batches of at most 650 object ids.

Order of work when the budget is short: state changes first, then keep-alive re-posts, then polls.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from random import Random

from . import graph_calls
from .budget import RequestBudget
from .graph_calls import MAX_IDS_PER_POLL, CallKind, GraphCall, GraphReply
from .mapping import GraphPair, TeamsMapping
from .model import Availability, ConnectionState, InboundPresence, OutboundPresence
from .retry import Backoff

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# What Graph shows for a user whose only sessions are gone.
_OFFLINE = GraphPair("Offline", "Offline")


class _Unknown:
    """Graph's side is not known (started without saved state): treat as different from anything."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncTiming:
    """The bridge's timing and pacing; every number here is documented in docs/teams.md."""

    session_expiration: int = 900
    """Seconds sent as `expirationDuration` of the session (Graph accepts PT5M-PT4H). Short
    enough that a bridge that died stops showing "in a call" soon."""
    available_keepalive: float = 240.0
    """Re-post an Available session this often (Graph times it out after 5 minutes)."""
    refresh_margin: float = 120.0
    """Re-post other sessions this long before `session_expiration` runs out."""
    preferred_refresh: float = 20 * 3600.0
    """Re-post a preferred presence this often (Graph keeps it at least a day)."""
    poll_interval: float = 30.0
    """Seconds between the starts of two polling rounds; 0 turns polling off."""
    poll_batch: int = MAX_IDS_PER_POLL
    inbound_settle: float = 10.0
    """Ignore what Teams shows for a user this long after the bridge wrote to that user, so a
    poll that raced a write is not taken for a change made in Teams."""
    budget_limit: int = 1500
    budget_window: float = 30.0
    max_in_flight: int = 4
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    failed_after: int = 5
    """Consecutive failed requests (5xx, timeouts, unreachable) before the bridge reports FAILED."""

    def __post_init__(self) -> None:
        if not 300 <= self.session_expiration <= 14400:
            raise ValueError("session_expiration must be 300-14400 s (PT5M-PT4H)")
        if not 0 < self.available_keepalive < 300:
            raise ValueError("available_keepalive must be below Graph's 300 s timeout")
        if not 0 <= self.refresh_margin < self.session_expiration:
            raise ValueError("refresh_margin must be shorter than session_expiration")
        if not 0 < self.preferred_refresh < 86400:
            raise ValueError("preferred_refresh must be below one day")
        if self.poll_interval < 0 or self.inbound_settle < 0:
            raise ValueError("poll_interval and inbound_settle must not be negative")
        if not 1 <= self.poll_batch <= MAX_IDS_PER_POLL:
            raise ValueError(f"poll_batch must be 1-{MAX_IDS_PER_POLL}")
        if self.max_in_flight < 1 or self.failed_after < 1:
            raise ValueError("max_in_flight and failed_after must be at least 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncStatus:
    state: ConnectionState
    last_error: str | None
    throttled_until: float | None
    pending_users: int
    users: int


@dataclass(slots=True)
class _User:
    user_id: str
    desired: OutboundPresence
    session: GraphPair | _Unknown | None = UNKNOWN
    session_refresh_at: float = math.inf
    preferred: GraphPair | _Unknown | None = UNKNOWN
    preferred_refresh_at: float = math.inf
    in_flight: bool = False
    last_write_done: float = -math.inf
    refused: OutboundPresence | None = None
    """A state Graph refused (4xx): not sent again until the state changes."""
    reported: Availability | _Unknown | None = UNKNOWN


@dataclass(slots=True)
class _Poll:
    next_round: float = -math.inf
    batches: deque[tuple[str, ...]] = field(default_factory=deque)
    in_flight: bool = False


class PresenceSync:
    def __init__(
        self,
        *,
        app_id: str,
        mapping: TeamsMapping | None = None,
        timing: SyncTiming | None = None,
        rng: Random | None = None,
    ) -> None:
        self.app_id = app_id
        self.mapping = mapping or TeamsMapping()
        self.timing = timing or SyncTiming()
        self._expiration = graph_calls.iso_duration(self.timing.session_expiration)
        self._budget = RequestBudget(self.timing.budget_limit, self.timing.budget_window)
        self._backoff = Backoff(
            base=self.timing.backoff_base, cap=self.timing.backoff_cap, rng=rng or Random()
        )
        self._users: dict[str, _User] = {}
        self._pollable = 0  # users with an object id (polling cannot take UPNs)
        self._dirty: dict[str, None] = {}  # insertion-ordered set of users to re-examine
        self._refresh: list[tuple[float, int, str]] = []  # heap of (due, tie-break, user)
        self._refresh_seq = 0
        self._poll = _Poll()
        self._in_flight = 0
        self._throttled_until = -math.inf
        self._failures = 0
        self._state = ConnectionState.CONNECTING
        self._last_error: str | None = None
        self._inbound: dict[str, InboundPresence] = {}

    # -- inputs -------------------------------------------------------------------------------

    def publish(self, changes: Iterable[OutboundPresence], now: float) -> None:
        """Take the latest sip2uc state of some users; older unsent states are dropped."""
        del now  # the state applies whenever it can be sent
        for change in changes:
            user = self._users.get(change.user_id)
            if user is None:
                self._add(_User(change.user_id, change))
            elif user.desired == change:
                continue
            else:
                user.desired = change
            self._dirty[change.user_id] = None

    def handle_reply(self, call: GraphCall, reply: GraphReply, now: float) -> None:
        """Apply Graph's answer to a call handed out by `next_call`."""
        self._finish(call)
        try:
            self._reply(call, reply, now)
        finally:
            self._reexamine(call, now)

    def _reply(self, call: GraphCall, reply: GraphReply, now: float) -> None:
        status = reply.status
        done = 200 <= status < 300 or (
            # "If the presence session doesn't exist, this method returns a 404 NotFound":
            # what clearPresence was asked to achieve is true.
            status == 404 and call.kind in (CallKind.CLEAR_PRESENCE, CallKind.CLEAR_PREFERRED)
        )
        if done:
            self._failures = 0
            self._state = ConnectionState.CONNECTED
            if call.kind is CallKind.GET_PRESENCES:
                self._observe(call, reply, now)
            else:
                self._applied(call, now)
            return
        detail = _describe_error(call, reply)
        if status == 429 or status >= 500:
            self._transient(call, now, detail, reply.retry_after, throttled=status == 429)
        elif status in (401, 403):
            hint = (
                " (is Presence.ReadWrite.All granted to the application, with admin consent?)"
                if status == 403
                else " (the token was refused even after a new one was fetched)"
            )
            self._auth_failed(call, now, detail + hint)
        else:
            self._refused(call, now, detail)

    def handle_failure(
        self, call: GraphCall, error: str, now: float, *, auth: bool = False
    ) -> None:
        """The call got no HTTP answer (timeout, connection, TLS) or no token (`auth`)."""
        self._finish(call)
        detail = f"{call.describe()}: {error}"
        if auth:
            self._auth_failed(call, now, detail)
        else:
            self._transient(call, now, detail, None, throttled=False)
        self._reexamine(call, now)

    # -- outputs ------------------------------------------------------------------------------

    def next_call(self, now: float) -> GraphCall | None:
        """The next request to send now, or None (see `next_deadline` for when to ask again).

        Every call handed out must come back through `handle_reply` or `handle_failure`.
        """
        if (
            now < self._throttled_until
            or self._in_flight >= self.timing.max_in_flight
            or not self._budget.available(now)
        ):
            return None
        call = self._next_change(now) or self._next_refresh(now) or self._next_poll(now)
        if call is None:
            return None
        self._budget.spend(now)
        self._in_flight += 1
        if call.user_id is not None:
            self._users[call.user_id].in_flight = True
        else:
            self._poll.in_flight = True
        return call

    def next_deadline(self, now: float) -> float | None:
        """When `next_call` may next return a call; None while only a reply can unblock it."""
        if self._in_flight >= self.timing.max_in_flight:
            return None
        candidates: list[float] = []
        if any(not self._users[uid].in_flight for uid in self._dirty):
            candidates.append(now)
        if self._refresh:
            candidates.append(self._refresh[0][0])
        if self.timing.poll_interval > 0 and not self._poll.in_flight:
            if self._poll.batches:
                candidates.append(now)
            elif self._pollable:
                candidates.append(self._poll.next_round)
        if not candidates:
            return None
        return max(min(candidates), self._throttled_until, self._budget.next_free(now))

    def take_inbound(self) -> list[InboundPresence]:
        """States seen in Teams since the last call, the latest per user."""
        found = list(self._inbound.values())
        self._inbound.clear()
        return found

    def health(self) -> tuple[ConnectionState, str | None]:
        """State and last error, without the per-user count `status` makes."""
        return self._state, self._last_error

    def status(self, now: float) -> SyncStatus:
        pending = sum(1 for u in self._users.values() if self._change_for(u, now) is not None)
        return SyncStatus(
            state=self._state,
            last_error=self._last_error,
            throttled_until=self._throttled_until if self._throttled_until > now else None,
            pending_users=pending,
            users=len(self._users),
        )

    # -- saved state --------------------------------------------------------------------------

    def export_state(self) -> dict[str, dict[str, str | None]]:
        """What the bridge believes Graph holds per user, for saving across restarts."""
        saved: dict[str, dict[str, str | None]] = {}
        for user in self._users.values():
            if user.session is UNKNOWN and user.preferred is UNKNOWN:
                continue
            saved[user.user_id] = {
                key: None if value is None else str(value)
                for key, value in (("session", user.session), ("preferred", user.preferred))
                if value is not UNKNOWN
            }
        return saved

    def restore_state(self, saved: Mapping[str, Mapping[str, str | None]], now: float) -> None:
        """Start from saved beliefs about Graph. Sessions and preferred presences are re-posted
        at once: how long the bridge was away is unknown, and they may have lapsed meanwhile."""
        for user_id, views in saved.items():
            user = self._users.get(user_id)
            if user is None:
                # Until sip2uc says otherwise the user is offline: a saved session gets cleared.
                user = _User(
                    user_id, OutboundPresence(user_id=user_id, automatic=Availability.OFFLINE)
                )
                self._add(user)
            if "session" in views:
                user.session = _parse_pair(views["session"])
                user.session_refresh_at = now if user.session is not None else math.inf
            if "preferred" in views:
                user.preferred = _parse_pair(views["preferred"])
                user.preferred_refresh_at = now if user.preferred is not None else math.inf
            self._schedule_refresh(user)
            self._dirty[user_id] = None

    def _add(self, user: _User) -> None:
        self._users[user.user_id] = user
        if _GUID.match(user.user_id):
            self._pollable += 1

    # -- choosing work ------------------------------------------------------------------------

    def _change_for(self, user: _User, now: float) -> GraphCall | None:
        """The call that moves Graph towards the user's latest state, if one is needed."""
        if user.refused == user.desired:
            return None
        want_session = self.mapping.session_pair(user.desired.automatic)
        want_preferred = self.mapping.preferred_pair(user.desired.manual)
        uid = user.user_id
        if want_session is not None and user.session != want_session:
            return graph_calls.set_presence(
                uid,
                want_session,
                session_id=self.app_id,
                expiration=self._expiration,
                now=now,
                refresh=False,
            )
        if want_session is None and user.session is not None:
            return graph_calls.clear_presence(uid, session_id=self.app_id, now=now)
        if user.preferred != want_preferred:
            if want_preferred is None:
                return graph_calls.clear_preferred(uid, now=now)
            return graph_calls.set_preferred(uid, want_preferred, now=now, refresh=False)
        return None

    def _next_change(self, now: float) -> GraphCall | None:
        # Users whose request is out stay queued (at most max_in_flight of them); everyone
        # examined is dropped from the queue: in sync, or handed a call and re-queued by its reply.
        examined: list[str] = []
        found: GraphCall | None = None
        for uid in self._dirty:
            user = self._users[uid]
            if user.in_flight:
                continue
            examined.append(uid)
            found = self._change_for(user, now)
            if found is not None:
                break
        for uid in examined:
            del self._dirty[uid]
        return found

    def _next_refresh(self, now: float) -> GraphCall | None:
        while self._refresh and self._refresh[0][0] <= now:
            _, _, uid = heapq.heappop(self._refresh)
            user = self._users.get(uid)
            if user is None or user.in_flight:
                continue  # the reply reschedules it
            if isinstance(user.session, GraphPair) and user.session_refresh_at <= now:
                return graph_calls.set_presence(
                    uid,
                    user.session,
                    session_id=self.app_id,
                    expiration=self._expiration,
                    now=now,
                    refresh=True,
                )
            if isinstance(user.preferred, GraphPair) and user.preferred_refresh_at <= now:
                return graph_calls.set_preferred(uid, user.preferred, now=now, refresh=True)
        return None

    def _next_poll(self, now: float) -> GraphCall | None:
        poll = self._poll
        if self.timing.poll_interval <= 0 or poll.in_flight:
            return None
        if not poll.batches:
            if now < poll.next_round:
                return None
            ids = [uid for uid in self._users if _GUID.match(uid)]
            if not ids:
                return None
            size = self.timing.poll_batch
            poll.batches.extend(tuple(ids[i : i + size]) for i in range(0, len(ids), size))
            poll.next_round = now + self.timing.poll_interval
        return graph_calls.get_presences(poll.batches.popleft(), now=now)

    def _schedule_refresh(self, user: _User) -> None:
        due = min(user.session_refresh_at, user.preferred_refresh_at)
        if due < math.inf:
            self._refresh_seq += 1
            heapq.heappush(self._refresh, (due, self._refresh_seq, user.user_id))

    # -- handling replies ---------------------------------------------------------------------

    def _finish(self, call: GraphCall) -> None:
        self._in_flight -= 1
        if call.user_id is not None:
            self._users[call.user_id].in_flight = False
        else:
            self._poll.in_flight = False

    def _reexamine(self, call: GraphCall, now: float) -> None:
        """After a reply: the user is pending again if Graph still differs from its latest state
        (it may have changed while the request was out)."""
        if (
            call.user_id is not None
            and self._change_for(self._users[call.user_id], now) is not None
        ):
            self._dirty[call.user_id] = None

    def _applied(self, call: GraphCall, now: float) -> None:
        assert call.user_id is not None
        user = self._users[call.user_id]
        user.last_write_done = now
        if call.kind is CallKind.SET_PRESENCE:
            assert call.pair is not None
            user.session = call.pair
            # Counted from when the call left: Graph's timers started no later than that.
            keep = (
                self.timing.available_keepalive
                if call.pair.availability == "Available"
                else self.timing.session_expiration - self.timing.refresh_margin
            )
            user.session_refresh_at = call.sent_at + keep
        elif call.kind is CallKind.CLEAR_PRESENCE:
            user.session = None
            user.session_refresh_at = math.inf
        elif call.kind is CallKind.SET_PREFERRED:
            assert call.pair is not None
            user.preferred = call.pair
            user.preferred_refresh_at = call.sent_at + self.timing.preferred_refresh
        elif call.kind is CallKind.CLEAR_PREFERRED:
            user.preferred = None
            user.preferred_refresh_at = math.inf
        self._schedule_refresh(user)

    def _retry_later(self, call: GraphCall) -> None:
        if call.kind is CallKind.GET_PRESENCES:
            self._poll.batches.appendleft(call.user_ids)
        elif call.refresh and call.user_id is not None:
            self._schedule_refresh(self._users[call.user_id])
        # A change needs nothing: the user is dirty again and re-examined with its latest state.

    def _transient(
        self,
        call: GraphCall,
        now: float,
        detail: str,
        retry_after: float | None,
        *,
        throttled: bool,
    ) -> None:
        self._last_error = detail
        self._failures += 1
        delay = retry_after if retry_after is not None else self._backoff.delay(self._failures - 1)
        self._throttled_until = max(self._throttled_until, now + delay)
        if not throttled and call.user_id is not None:
            # A 5xx or a timeout does not say whether Graph applied the write (a 429 says it
            # did not): stop assuming either way, so the latest state is sent again.
            user = self._users[call.user_id]
            if call.kind in (CallKind.SET_PRESENCE, CallKind.CLEAR_PRESENCE):
                user.session, user.session_refresh_at = UNKNOWN, math.inf
            else:
                user.preferred, user.preferred_refresh_at = UNKNOWN, math.inf
        if throttled:
            pass  # Graph answered: the connection itself is fine
        elif self._failures >= self.timing.failed_after:
            self._state = ConnectionState.FAILED
        elif self._state is not ConnectionState.FAILED:
            self._state = ConnectionState.CONNECTING
        self._retry_later(call)

    def _auth_failed(self, call: GraphCall, now: float, detail: str) -> None:
        self._last_error = detail
        self._failures += 1
        self._state = ConnectionState.FAILED
        self._throttled_until = max(
            self._throttled_until, now + self._backoff.delay(self._failures - 1)
        )
        self._retry_later(call)

    def _refused(self, call: GraphCall, now: float, detail: str) -> None:
        """A 4xx for this request only: Graph is reachable, this state for this user is not
        accepted (unknown user, a pair the tenant refuses). Not retried until it changes."""
        self._last_error = detail
        self._failures = 0
        self._state = ConnectionState.CONNECTED
        if call.user_id is not None:
            user = self._users[call.user_id]
            user.refused = user.desired
            user.last_write_done = now
            if call.refresh:
                # The session or preference cannot be kept: stop re-posting it.
                if call.kind is CallKind.SET_PRESENCE:
                    user.session, user.session_refresh_at = UNKNOWN, math.inf
                else:
                    user.preferred, user.preferred_refresh_at = UNKNOWN, math.inf

    def _observe(self, call: GraphCall, reply: GraphReply, now: float) -> None:
        del now
        asked = set(call.user_ids)
        entries = _presence_entries(reply.body)
        if entries is None:
            self._last_error = f"{call.describe()}: the reply is not a collection of presences"
            return
        for entry in entries:
            uid, availability, activity = entry
            user = self._users.get(uid)
            if uid not in asked or user is None:
                continue
            if user.in_flight or user.last_write_done + self.timing.inbound_settle > call.sent_at:
                continue  # the poll may have raced the bridge's own write
            if isinstance(user.session, _Unknown) or isinstance(user.preferred, _Unknown):
                continue
            expected: GraphPair = _OFFLINE
            if user.session is not None:
                expected = user.preferred if user.preferred is not None else user.session
            seen = self.mapping.from_teams(availability)
            external = None if seen == self.mapping.from_teams(expected.availability) else seen
            if external != user.reported:
                user.reported = external
                self._inbound[uid] = InboundPresence(
                    user_id=uid,
                    availability=external,
                    teams_availability=availability,
                    teams_activity=activity,
                )


def _presence_entries(body: object) -> list[tuple[str, str, str]] | None:
    """(id, availability, activity) from a getPresencesByUserId reply, None if it is not one;
    malformed entries are skipped."""
    value = body.get("value") if isinstance(body, dict) else None
    if not isinstance(value, list):
        return None
    entries = []
    for item in value:
        if not isinstance(item, dict):
            continue
        uid, availability, activity = item.get("id"), item.get("availability"), item.get("activity")
        if isinstance(uid, str) and isinstance(availability, str) and isinstance(activity, str):
            entries.append((uid, availability, activity))
    return entries


def _parse_pair(text: str | None) -> GraphPair | None:
    if text is None:
        return None
    availability, _, activity = text.partition("/")
    if not availability or not activity:
        raise ValueError(f"saved pair {text!r} is not 'Availability/Activity'")
    return GraphPair(availability, activity)


def _describe_error(call: GraphCall, reply: GraphReply) -> str:
    text = f"{call.describe()}: HTTP {reply.status}"
    if reply.error_code:
        text += f" {reply.error_code}"
    if reply.error_message:
        text += f": {reply.error_message[:200]}"
    return text
