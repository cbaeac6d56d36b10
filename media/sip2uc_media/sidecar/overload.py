"""The sidecar's overload policy: what waits to be served, in which order, and what is shed.

Every message the transports receive is offered to one `IntakeQueue` before it is parsed. The
queue sorts it by `triage.Kind` and by its source (`KnownSources`: a live binding or a trunk)
into six classes, served strictly in this order::

    known DIALOG, known FOLLOW_UP, known NEW, other DIALOG, other FOLLOW_UP, other NEW

so that in-dialog requests, responses and the second half of registrations already under way
come before new work, and handsets already registered come before everyone else. What it
refuses, and why (`Reason`), in the order it checks:

* ``not_sip``: no SIP version on the first line (dropped).
* ``shed_ack``: the ACK of a 503 the intake sent, or another request in the "dialog" such a
  503 seems to open (nothing to do).
* ``retransmission``: the same bytes are already waiting; the answer to the first copy answers
  this one too (RFC 3261 §17.2: a retransmission needs no new work).
* ``source_limit``: a source without a binding already has `source_queue_limit` messages
  waiting. A flood from one address then costs the others a bounded wait and is dropped beyond
  its share; a well-behaved source rarely has more than a few in the queue.
* ``control_backlog``: new work while the control plane is behind (its oldest unanswered
  request is older than `control_delay`, or more than `control_in_flight` are unanswered):
  everything new would need it, so it is refused before it costs anything (503).
* (no reason: a pause) new work already queued is not served while the control plane's oldest
  unanswered request is older than `control_pause`: the CPU goes to the control plane (in `sip2uc
  up` the same process, whose database thread starves when the event loop never idles) and to
  work under way until the control plane has caught up. A flood of new work from strangers
  then cannot hold back the registrations it would hold back.
* ``queue_delay``: new work that would wait longer than `max_queue_delay`: the oldest new work
  of its class has waited that long already, or the new work waiting in its class would take
  longer to serve at the rate that class has been served while it had a backlog (which falls
  when the classes above take the time). It gets 503 with Retry-After at once instead of an
  answer that comes too late (and the retransmissions that bring).
* ``queue_full``: no room left (`max_waiting` messages or `max_waiting_bytes`); the newest
  message of a lower class makes room if there is one (dropped).
* ``expired``: taken from the queue after `expiry` (64*T1, when every client transaction has
  given up, RFC 3261 §17.1.2.2): dropped unserved.

Only new work is ever answered 503; what the queue admitted is served, however late, unless it
expired. The policy is pure: callers pass the time, the control plane's backlog and an RNG.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

from .known_sources import KnownSources
from .triage import Kind, Triage, triage

__all__ = [
    "ANSWERED",
    "CLASSES",
    "IntakeQueue",
    "OverloadSettings",
    "Reason",
    "Waiting",
    "retry_after",
]

PayloadT = TypeVar("PayloadT")

#: RFC 3261 timer values over UDP: T1 and Timer F/B (64*T1), after which every client gave up.
T1 = 0.5
CLIENT_GIVES_UP = 64 * T1


@dataclass(frozen=True, slots=True, kw_only=True)
class OverloadSettings:
    """The intake's bounds. The defaults suit a sidecar on two cores; see
    docs/configuration.md for what each does."""

    #: New work that would wait longer than this is answered 503 at once (seconds).
    max_queue_delay: float = 1.0
    #: New work is answered 503 while the control plane's oldest unanswered request is older.
    control_delay: float = 1.0
    #: New work already queued waits (is not served) while that request is older than this:
    #: the CPU goes to the control plane and to work under way until it has caught up.
    control_pause: float = 0.25
    #: ...or while this many requests to it are unanswered.
    control_in_flight: int = 4000
    #: Messages that one source without a binding may have waiting.
    source_queue_limit: int = 64
    #: Messages waiting, all classes together, and their octets.
    max_waiting: int = 20_000
    max_waiting_bytes: int = 32 * 2**20
    #: Waiting messages older than this are dropped unserved (seconds).
    expiry: float = CLIENT_GIVES_UP

    def __post_init__(self) -> None:
        if not 0.05 <= self.max_queue_delay <= 30.0:
            raise ValueError("max_queue_delay must be 0.05-30 s")
        if not 0.05 <= self.control_delay <= 30.0:
            raise ValueError("control_delay must be 0.05-30 s")
        if not 0.01 <= self.control_pause <= self.control_delay:
            raise ValueError("control_pause must be between 0.01 s and control_delay")
        if not 1 <= self.control_in_flight <= 1_000_000:
            raise ValueError("control_in_flight must be 1-1000000")
        if not 1 <= self.source_queue_limit <= 100_000:
            raise ValueError("source_queue_limit must be 1-100000")
        if not 1 <= self.max_waiting <= 10_000_000:
            raise ValueError("max_waiting must be 1-10000000")
        if not 65536 <= self.max_waiting_bytes <= 2**34:
            raise ValueError("max_waiting_bytes must be 64 KiB-16 GiB")
        if not self.max_queue_delay <= self.expiry <= 3600.0:
            raise ValueError("expiry must be between max_queue_delay and 3600 s")


class Reason(enum.StrEnum):
    """Why a message was not served (the ``reason`` label of the shed metric)."""

    NOT_SIP = "not_sip"
    SHED_ACK = "shed_ack"
    RETRANSMISSION = "retransmission"
    SOURCE_LIMIT = "source_limit"
    CONTROL_BACKLOG = "control_backlog"
    QUEUE_DELAY = "queue_delay"
    QUEUE_FULL = "queue_full"
    EXPIRED = "expired"


#: Reasons the sender hears about: 503 Service Unavailable with Retry-After.
ANSWERED = frozenset({Reason.CONTROL_BACKLOG, Reason.QUEUE_DELAY})

#: The classes in serving order: (source known, kind).
CLASSES: tuple[tuple[bool, Kind], ...] = tuple(
    (known, kind) for known in (True, False) for kind in Kind
)
_OTHERS = len(Kind)  # rank offset of sources that are not known
_NEW_RANKS = frozenset(rank for rank, (_known, kind) in enumerate(CLASSES) if kind is Kind.NEW)
#: The service rate is sampled over backlogged windows this long (seconds), and each sample
#: moves the estimate by this share.
_RATE_WINDOW = 0.2
_RATE_WEIGHT = 0.3


def retry_after(base: int, rng: random.Random) -> int:
    """A Retry-After value in [base, 2*base]: handsets told to come back spread out instead of
    returning together (RFC 3261 §21.5.4 leaves the value to the server)."""
    return base + rng.randint(0, base)


@dataclass(slots=True, eq=False)
class Waiting(Generic[PayloadT]):
    """One message in the queue."""

    data: bytes
    host: str
    payload: PayloadT
    arrived: float
    rank: int


@dataclass(slots=True)
class _Backlog:
    in_flight: int = 0
    oldest_age: float = 0.0


class IntakeQueue(Generic[PayloadT]):
    """See the module docstring. `payload` travels with a message (its source, for replies)."""

    def __init__(
        self,
        settings: OverloadSettings | None = None,
        known: KnownSources | None = None,
        *,
        shed_tag: bytes = b"",
    ) -> None:
        self.settings = settings or OverloadSettings()
        self.known = known if known is not None else KnownSources()
        self.shed_tag = shed_tag.lower()
        self._queues: tuple[deque[Waiting[PayloadT]], ...] = tuple(deque() for _ in CLASSES)
        self._data: set[bytes] = set()
        self._per_source: dict[str, int] = {}
        self._count = 0
        self._bytes = 0
        self._control = _Backlog()
        #: Messages not served, by reason; messages admitted, by class rank.
        self.refused: dict[Reason, int] = dict.fromkeys(Reason, 0)
        self.admitted: list[int] = [0] * len(CLASSES)
        #: The longest wait of a message taken since `take_max_delay` was last called.
        self._max_delay = 0.0
        #: Per class: messages served per second while it had a backlog (None until measured),
        #: and the window being measured (its start, or None while the class is empty).
        self.service_rate: list[float | None] = [None] * len(CLASSES)
        self._window_start: list[float | None] = [None] * len(CLASSES)
        self._window_served = [0] * len(CLASSES)

    # -- state ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    @property
    def waiting_bytes(self) -> int:
        return self._bytes

    def waiting(self, rank: int) -> int:
        return len(self._queues[rank])

    def head_age(self, rank: int, now: float) -> float:
        """How long the oldest message of class `rank` has waited (0 when none waits)."""
        queue = self._queues[rank]
        return now - queue[0].arrived if queue else 0.0

    def oldest_age(self, now: float) -> float:
        """How long the oldest waiting message of any class has waited."""
        return max((now - q[0].arrived for q in self._queues if q), default=0.0)

    def take_max_delay(self) -> float:
        """The longest wait of a message served since the last call (for metrics)."""
        value, self._max_delay = self._max_delay, 0.0
        return value

    def control_backlog(self, in_flight: int, oldest_age: float) -> None:
        """What the control link reports: unanswered requests and the age of the oldest."""
        self._control.in_flight = in_flight
        self._control.oldest_age = oldest_age

    def control_paused(self) -> bool:
        """Whether new work waits for the control plane to catch up (`control_pause`)."""
        return self._control.oldest_age > self.settings.control_pause

    def control_behind(self) -> bool:
        backlog, settings = self._control, self.settings
        return (
            backlog.oldest_age > settings.control_delay
            or backlog.in_flight > settings.control_in_flight
        )

    # -- in and out -------------------------------------------------------------------------------

    def offer(self, data: bytes, host: str, payload: PayloadT, now: float) -> Reason | None:
        """Queue one message; None when it was queued, else why not (`ANSWERED` reasons want a
        503, the others nothing)."""
        found = triage(data, self.shed_tag)
        if isinstance(found, Triage):
            reason = Reason.NOT_SIP if found is Triage.NOT_SIP else Reason.SHED_ACK
            self.refused[reason] += 1
            return reason
        if data in self._data:
            self.refused[Reason.RETRANSMISSION] += 1
            return Reason.RETRANSMISSION
        known = self.known.is_known(host, now)
        rank = int(found) if known else _OTHERS + int(found)
        refusal = self._refusal(found, rank, host, known, len(data), now)
        if refusal is not None:
            self.refused[refusal] += 1
            return refusal
        queue = self._queues[rank]
        if not queue:
            self._window_start[rank], self._window_served[rank] = now, 0
        queue.append(Waiting(data, host, payload, now, rank))
        self._data.add(data)
        self._count += 1
        self._bytes += len(data)
        if not known:
            self._per_source[host] = self._per_source.get(host, 0) + 1
        self.admitted[rank] += 1
        return None

    def _refusal(
        self, kind: Kind, rank: int, host: str, known: bool, size: int, now: float
    ) -> Reason | None:
        settings = self.settings
        if not known and self._per_source.get(host, 0) >= settings.source_queue_limit:
            return Reason.SOURCE_LIMIT
        if kind is Kind.NEW:
            if self.control_behind():
                return Reason.CONTROL_BACKLOG
            if self.expected_wait(rank, now) > settings.max_queue_delay:
                return Reason.QUEUE_DELAY
        while (
            self._count >= settings.max_waiting or self._bytes + size > settings.max_waiting_bytes
        ):
            if not self._evict_below(rank):
                return Reason.QUEUE_FULL
        return None

    def _evict_below(self, rank: int) -> bool:
        """Drop the newest message of the lowest class below `rank`; False if there is none."""
        for lower in range(len(CLASSES) - 1, rank, -1):
            queue = self._queues[lower]
            if queue:
                self._release(queue.pop())
                self.refused[Reason.QUEUE_FULL] += 1
                return True
        return False

    def expected_wait(self, rank: int, now: float) -> float:
        """How long a message joining class `rank` now can expect to wait (see the module
        docstring): the larger of its class's head age and its backlog's serving time."""
        queue = self._queues[rank]
        if not queue:
            return 0.0
        head = now - queue[0].arrived
        if not (rank in _NEW_RANKS and self.control_paused()):
            self._measure(rank, now)
        rate = self.service_rate[rank]
        if rate is None:
            return head
        if rate <= 0.0:
            return float("inf")  # nothing of this class was served while it waited
        return max(head, len(queue) / rate)

    def take(self, now: float) -> Waiting[PayloadT] | None:
        """The next message to serve, highest class first, oldest first; None when nothing
        may be served (the queue is empty, or only new work waits while the control plane
        catches up). Messages past `expiry` are dropped on the way."""
        if not self._count:
            return None
        expiry = self.settings.expiry
        paused = self.control_paused()
        for rank, queue in enumerate(self._queues):
            if paused and rank in _NEW_RANKS:
                # Not being served is not being slow: the pause does not count as service time.
                self._window_start[rank] = None
                continue
            if queue and self._window_start[rank] is None:
                self._window_start[rank], self._window_served[rank] = now, 0
            while queue:
                item = queue.popleft()
                self._window_served[rank] += 1
                self._measure(rank, now, ended=not queue)
                self._release(item)
                delay = now - item.arrived
                if delay > expiry:
                    self.refused[Reason.EXPIRED] += 1
                    continue
                if delay > self._max_delay:
                    self._max_delay = delay
                return item
        return None

    def _measure(self, rank: int, now: float, *, ended: bool = False) -> None:
        """Fold the current window of class `rank` into its service rate once it is at least
        `_RATE_WINDOW` long. A window runs while the class has messages waiting, so a class
        that is starved measures as slow while it waits; one that empties within a window had
        no backlog to measure, and its estimate is dropped until it has one again."""
        start = self._window_start[rank]
        if start is None:
            return
        elapsed = now - start
        if ended and elapsed < _RATE_WINDOW:
            self.service_rate[rank] = None
            return
        if elapsed >= _RATE_WINDOW:
            sample = self._window_served[rank] / elapsed
            rate = self.service_rate[rank]
            self.service_rate[rank] = (
                sample if rate is None else rate + _RATE_WEIGHT * (sample - rate)
            )
            self._window_start[rank], self._window_served[rank] = now, 0

    def _release(self, item: Waiting[PayloadT]) -> None:
        if not self._queues[item.rank]:
            self._window_start[item.rank] = None
        self._data.discard(item.data)
        self._count -= 1
        self._bytes -= len(item.data)
        if item.rank >= _OTHERS:
            left = self._per_source[item.host] - 1
            if left:
                self._per_source[item.host] = left
            else:
                del self._per_source[item.host]
