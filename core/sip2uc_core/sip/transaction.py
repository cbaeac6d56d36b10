"""The SIP transaction layer of RFC 3261 §17, sans-IO, with the Accepted states of RFC 6026.

`TransactionLayer` is driven from outside by three inputs, each given the current time:
`receive` (a parsed message and where it came from), the TU's `send_request` / `send_response`,
and `handle_timer`. It hands back events, and bytes with their destination through
`datagrams_to_send`; `next_deadline` tells the adapter when to call `handle_timer` again.

The four state machines (RFC 3261 Figures 5-8, as amended by RFC 6026 §7) are data: one
transition table per machine, keyed by (state, input), where an input is something received,
something the TU sends, or a timer firing. A pair missing from a table means "absorb": for
network input that is the RFC's "discard" (e.g. a retransmitted final response in Completed);
for TU input it is a local error (`TransactionError`).

What stays with the TU (the dialog layer): the ACK for a 2xx and retransmitting a 2xx to an
INVITE (RFC 3261 §13.3.1.4, RFC 6026 §8.1), and CANCEL's 64*T1 give-up (§9.1; `terminate`).
"""

from __future__ import annotations

import enum
import heapq
import ipaddress
import itertools
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import NewType, TypeAlias

from .endpoint import Endpoint, Transport
from .errors import SipParseError
from .headers import Headers, Via, _has_param, _with_param
from .message import SipRequest, SipResponse, make_response
from .timers import Backoff, Timer, TimerPolicy

__all__ = [
    "MAGIC_COOKIE",
    "BranchGenerator",
    "CancelReceived",
    "Event",
    "Kind",
    "Overloaded",
    "RequestReceived",
    "ResponseReceived",
    "State",
    "StrayResponse",
    "TransactionError",
    "TransactionId",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimeout",
    "TransportFailed",
    "response_destination",
    "stamp_received",
]

#: RFC 3261 §8.1.1.7: branches starting with this are unique and usable as transaction keys.
MAGIC_COOKIE = "z9hG4bK"

TransactionId = NewType("TransactionId", int)

_DEFAULT_PORTS = {"UDP": 5060, "TCP": 5060, "TLS": 5061, "SCTP": 5060, "WS": 80, "WSS": 443}


class TransactionError(Exception):
    """The TU asked for something the transaction layer cannot do (a local protocol error)."""


# --- addresses ----------------------------------------------------------------------------------


def _bare_host(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _same_address(via_host: str, source_ip: str) -> bool:
    if via_host == source_ip:
        return True  # the usual case, and no address parsing needed
    try:
        return ipaddress.ip_address(_bare_host(via_host)) == ipaddress.ip_address(source_ip)
    except ValueError:
        return False  # a domain name in sent-by never equals the packet's source address


def stamp_received(via: Via, source_ip: str, source_port: int) -> Via:
    """The top Via as a server records it on receipt.

    RFC 3261 §18.2.1: add ``received`` when sent-by is a name or another address than the source.
    RFC 3581 §4: if the client asked with a bare ``rport``, fill in the source port and add
    ``received`` even when it equals sent-by.

    Returns ``via`` itself when nothing needs stamping.
    """
    params = via.params
    rport_requested = _has_param(params, "rport")
    if rport_requested:
        params = _with_param(params, "rport", str(source_port))
    if rport_requested or not _same_address(via.host, source_ip):
        params = _with_param(params, "received", source_ip)
    if params is via.params:
        return via
    return Via(
        protocol=via.protocol, transport=via.transport, host=via.host, port=via.port, params=params
    )


def response_destination(via: Via, source: Endpoint, *, force_rport: bool = False) -> Endpoint:
    """Where responses to a request with this (stamped) top Via go, per RFC 3261 §18.2.2.

    Reliable transports reuse the request's connection; should it be gone, the fallback is the
    received address and the sent-by port. Over UDP: ``maddr`` first, then the source address and
    port when ``rport`` was used (RFC 3581 §4), else the received address and sent-by port.
    `force_rport` answers every UDP request at its source port, which handsets behind NATs that
    do not ask for rport need.
    """
    sent_by_port = (
        via.port if via.port is not None else _DEFAULT_PORTS.get(via.transport.upper(), 5060)
    )
    if source.reliable:
        return Endpoint(source.transport, source.host, sent_by_port, source.connection_id)
    # A Via naming a transport we do not speak (SCTP, WS) is answered the way it came.
    transport = Transport.parse(via.transport) or source.transport
    maddr = via.maddr
    if maddr is not None:
        return Endpoint(transport, _bare_host(maddr), sent_by_port)
    received = via.received
    host = _bare_host(received) if received is not None else _bare_host(via.host)
    if via.has_param("rport") or force_rport:
        return Endpoint(source.transport, source.host, source.port)
    return Endpoint(transport, host, sent_by_port)


class BranchGenerator:
    """Branch parameters with the RFC 3261 magic cookie, from injected randomness.

    ``random_bytes(n)`` must return n unpredictable bytes (``os.urandom`` in production); 96 bits
    make collisions between live transactions negligible (§8.1.1.7 asks for global uniqueness).
    """

    def __init__(self, random_bytes: Callable[[int], bytes]) -> None:
        self._random_bytes = random_bytes

    def __call__(self) -> str:
        return MAGIC_COOKIE + self._random_bytes(12).hex()


# --- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived:
    """A new request for the TU. `txn_id` is None for an ACK, which has no transaction."""

    txn_id: TransactionId | None
    request: SipRequest
    source: Endpoint


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelReceived:
    """A CANCEL (in its own transaction `txn_id`) and the INVITE transaction it targets (§9.2).

    The TU answers the CANCEL with 200 (or 481 when `invite_txn_id` is None) and, if the INVITE
    is still unanswered, the INVITE with 487.
    """

    txn_id: TransactionId
    request: SipRequest
    source: Endpoint
    invite_txn_id: TransactionId | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseReceived:
    txn_id: TransactionId
    response: SipResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class StrayResponse:
    """A response that matches no client transaction (e.g. a late 2xx retransmission)."""

    response: SipResponse
    source: Endpoint


@dataclass(frozen=True, slots=True, kw_only=True)
class Overloaded:
    """A new request arrived while the layer holds its maximum of transactions.

    Answer it statelessly with 503 and Retry-After: ``send_stateless(response, reply_to)``.
    """

    request: SipRequest
    source: Endpoint
    reply_to: Endpoint


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTimeout:
    """Timer B, F or H fired: no final response (client) or no ACK (server) came in time."""

    txn_id: TransactionId


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportFailed:
    """The adapter could not deliver for this transaction (RFC 3261 §17.1.1.2, §17.2.4)."""

    txn_id: TransactionId


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTerminated:
    txn_id: TransactionId


Event: TypeAlias = (
    RequestReceived
    | CancelReceived
    | ResponseReceived
    | StrayResponse
    | Overloaded
    | TransactionTimeout
    | TransportFailed
    | TransactionTerminated
)


# --- the state machines as data -----------------------------------------------------------------


class Kind(enum.Enum):
    INVITE_CLIENT = "INVITE client"  # RFC 3261 §17.1.1, RFC 6026 §8.4
    NON_INVITE_CLIENT = "non-INVITE client"  # §17.1.2
    INVITE_SERVER = "INVITE server"  # §17.2.1, RFC 6026 §8.7
    NON_INVITE_SERVER = "non-INVITE server"  # §17.2.2


class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Input(enum.Enum):
    RECV_PROVISIONAL = "1xx received"
    RECV_SUCCESS = "2xx received"
    RECV_FAILURE = "300-699 received"
    RECV_REQUEST = "request retransmission received"
    RECV_ACK = "ACK received"
    SEND_PROVISIONAL = "TU sends 1xx"
    SEND_SUCCESS = "TU sends 2xx"
    SEND_FAILURE = "TU sends 300-699"
    TRANSPORT_ERROR = "the transport could not deliver"


class Action(enum.Enum):
    DELIVER_RESPONSE = "pass the response to the TU"
    DELIVER_ACK = "pass the ACK to the TU"
    RETRANSMIT_REQUEST = "retransmit the request"
    SEND_ACK = "send the ACK for a non-2xx final response"  # §17.1.1.3
    SEND_RESPONSE = "send the TU's response and keep it"
    RESEND_RESPONSE = "resend the last response"
    SEND_TRYING = "send 100 Trying"  # §17.2.1
    REPORT_TIMEOUT = "tell the TU the transaction timed out"
    REPORT_TRANSPORT_ERROR = "tell the TU the transport failed"


@dataclass(frozen=True, slots=True)
class Transition:
    target: State
    actions: tuple[Action, ...] = ()
    arm: tuple[tuple[Timer, Backoff], ...] = ()
    stop: tuple[Timer, ...] = ()


_Key: TypeAlias = tuple[State, Input | Timer]
_Table: TypeAlias = dict[_Key, Transition]

_S = State
_I = Input
_A = Action
_T = Timer
_INITIAL = Backoff.INITIAL


def _each(states: tuple[State, ...], event: Input | Timer, transition: Transition) -> _Table:
    return {(state, event): transition for state in states}


_INVITE_CLIENT: _Table = {
    (_S.CALLING, _T.A): Transition(
        _S.CALLING, (_A.RETRANSMIT_REQUEST,), arm=((_T.A, Backoff.DOUBLE),)
    ),
    (_S.CALLING, _T.B): Transition(_S.TERMINATED, (_A.REPORT_TIMEOUT,)),
    # §17.1.1.2: no retransmissions and no Timer B once a provisional response arrived.
    (_S.CALLING, _I.RECV_PROVISIONAL): Transition(
        _S.PROCEEDING, (_A.DELIVER_RESPONSE,), stop=(_T.A, _T.B)
    ),
    (_S.PROCEEDING, _I.RECV_PROVISIONAL): Transition(_S.PROCEEDING, (_A.DELIVER_RESPONSE,)),
    **_each(
        (_S.CALLING, _S.PROCEEDING),
        _I.RECV_SUCCESS,
        Transition(_S.ACCEPTED, (_A.DELIVER_RESPONSE,), arm=((_T.M, _INITIAL),), stop=(_T.A, _T.B)),
    ),
    **_each(
        (_S.CALLING, _S.PROCEEDING),
        _I.RECV_FAILURE,
        Transition(
            _S.COMPLETED,
            (_A.DELIVER_RESPONSE, _A.SEND_ACK),
            arm=((_T.D, _INITIAL),),
            stop=(_T.A, _T.B),
        ),
    ),
    # A retransmitted final response means our ACK was lost: send it again, tell nobody.
    (_S.COMPLETED, _I.RECV_FAILURE): Transition(_S.COMPLETED, (_A.SEND_ACK,)),
    (_S.COMPLETED, _T.D): Transition(_S.TERMINATED),
    # RFC 6026 §8.4: every 2xx goes up, so the TU can ACK each retransmission (or fork).
    (_S.ACCEPTED, _I.RECV_SUCCESS): Transition(_S.ACCEPTED, (_A.DELIVER_RESPONSE,)),
    (_S.ACCEPTED, _T.M): Transition(_S.TERMINATED),
}

_NON_INVITE_CLIENT: _Table = {
    (_S.TRYING, _T.E): Transition(
        _S.TRYING, (_A.RETRANSMIT_REQUEST,), arm=((_T.E, Backoff.DOUBLE_UP_TO_T2),)
    ),
    # §17.1.2.2: in Proceeding the request is retransmitted every T2.
    (_S.PROCEEDING, _T.E): Transition(
        _S.PROCEEDING, (_A.RETRANSMIT_REQUEST,), arm=((_T.E, Backoff.T2),)
    ),
    **_each((_S.TRYING, _S.PROCEEDING), _T.F, Transition(_S.TERMINATED, (_A.REPORT_TIMEOUT,))),
    **_each(
        (_S.TRYING, _S.PROCEEDING),
        _I.RECV_PROVISIONAL,
        Transition(_S.PROCEEDING, (_A.DELIVER_RESPONSE,)),
    ),
    **{
        (state, final): Transition(
            _S.COMPLETED, (_A.DELIVER_RESPONSE,), arm=((_T.K, _INITIAL),), stop=(_T.E, _T.F)
        )
        for state in (_S.TRYING, _S.PROCEEDING)
        for final in (_I.RECV_SUCCESS, _I.RECV_FAILURE)
    },
    (_S.COMPLETED, _T.K): Transition(_S.TERMINATED),
}

_INVITE_SERVER: _Table = {
    (_S.PROCEEDING, _T.TRYING): Transition(_S.PROCEEDING, (_A.SEND_TRYING,)),
    (_S.PROCEEDING, _I.RECV_REQUEST): Transition(
        _S.PROCEEDING, (_A.RESEND_RESPONSE,), stop=(_T.TRYING,)
    ),
    (_S.PROCEEDING, _I.SEND_PROVISIONAL): Transition(
        _S.PROCEEDING, (_A.SEND_RESPONSE,), stop=(_T.TRYING,)
    ),
    (_S.PROCEEDING, _I.SEND_SUCCESS): Transition(
        _S.ACCEPTED, (_A.SEND_RESPONSE,), arm=((_T.L, _INITIAL),), stop=(_T.TRYING,)
    ),
    (_S.PROCEEDING, _I.SEND_FAILURE): Transition(
        _S.COMPLETED,
        (_A.SEND_RESPONSE,),
        arm=((_T.G, _INITIAL), (_T.H, _INITIAL)),
        stop=(_T.TRYING,),
    ),
    (_S.COMPLETED, _T.G): Transition(
        _S.COMPLETED, (_A.RESEND_RESPONSE,), arm=((_T.G, Backoff.DOUBLE_UP_TO_T2),)
    ),
    (_S.COMPLETED, _I.RECV_REQUEST): Transition(_S.COMPLETED, (_A.RESEND_RESPONSE,)),
    (_S.COMPLETED, _T.H): Transition(_S.TERMINATED, (_A.REPORT_TIMEOUT,)),
    (_S.COMPLETED, _I.RECV_ACK): Transition(
        _S.CONFIRMED, arm=((_T.I, _INITIAL),), stop=(_T.G, _T.H)
    ),
    (_S.CONFIRMED, _T.I): Transition(_S.TERMINATED),
    # RFC 6026 §8.7: the TU retransmits its 2xx itself; an ACK that matches goes up to it.
    (_S.ACCEPTED, _I.SEND_SUCCESS): Transition(_S.ACCEPTED, (_A.SEND_RESPONSE,)),
    (_S.ACCEPTED, _I.RECV_ACK): Transition(_S.ACCEPTED, (_A.DELIVER_ACK,)),
    (_S.ACCEPTED, _T.L): Transition(_S.TERMINATED),
}

_NON_INVITE_SERVER: _Table = {
    (_S.TRYING, _I.SEND_PROVISIONAL): Transition(_S.PROCEEDING, (_A.SEND_RESPONSE,)),
    (_S.PROCEEDING, _I.SEND_PROVISIONAL): Transition(_S.PROCEEDING, (_A.SEND_RESPONSE,)),
    (_S.PROCEEDING, _I.RECV_REQUEST): Transition(_S.PROCEEDING, (_A.RESEND_RESPONSE,)),
    **{
        (state, final): Transition(_S.COMPLETED, (_A.SEND_RESPONSE,), arm=((_T.J, _INITIAL),))
        for state in (_S.TRYING, _S.PROCEEDING)
        for final in (_I.SEND_SUCCESS, _I.SEND_FAILURE)
    },
    (_S.COMPLETED, _I.RECV_REQUEST): Transition(_S.COMPLETED, (_A.RESEND_RESPONSE,)),
    (_S.COMPLETED, _T.J): Transition(_S.TERMINATED),
}

_TRANSPORT_ERROR = Transition(_S.TERMINATED, (_A.REPORT_TRANSPORT_ERROR,))


def _with_transport_errors(table: _Table) -> _Table:
    """Every machine gives up on a transport error in any state (§17.1.1.2, §17.1.2.2, §17.2.4)."""
    states = tuple(sorted({state for state, _ in table}, key=lambda state: state.value))
    return {**table, **_each(states, _I.TRANSPORT_ERROR, _TRANSPORT_ERROR)}


TRANSITIONS: dict[Kind, _Table] = {
    Kind.INVITE_CLIENT: _with_transport_errors(_INVITE_CLIENT),
    Kind.NON_INVITE_CLIENT: _with_transport_errors(_NON_INVITE_CLIENT),
    Kind.INVITE_SERVER: _with_transport_errors(_INVITE_SERVER),
    Kind.NON_INVITE_SERVER: _with_transport_errors(_NON_INVITE_SERVER),
}

#: Where each machine starts and what it arms on creation.
START: dict[Kind, Transition] = {
    Kind.INVITE_CLIENT: Transition(_S.CALLING, arm=((_T.A, _INITIAL), (_T.B, _INITIAL))),
    Kind.NON_INVITE_CLIENT: Transition(_S.TRYING, arm=((_T.E, _INITIAL), (_T.F, _INITIAL))),
    Kind.INVITE_SERVER: Transition(_S.PROCEEDING, arm=((_T.TRYING, _INITIAL),)),
    Kind.NON_INVITE_SERVER: Transition(_S.TRYING),
}


# --- the layer ----------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Transaction:
    id: TransactionId
    kind: Kind
    key: Hashable
    # Server transactions let go of the request once their final response is sent: absorbing
    # retransmissions needs only the key and the response bytes.
    request: SipRequest | None
    peer: Endpoint  # client: where the request goes; server: where responses go
    reliable: bool
    request_size: int = 0
    held: int = 0  # octets counted against the layer's byte budget
    state: State = State.TERMINATED
    request_bytes: bytes = b""
    last_response: bytes | None = None
    final_response: SipResponse | None = None
    ack_bytes: bytes | None = None
    # timer -> (deadline, heap sequence number) of its live arming
    timers: dict[Timer, tuple[float, int]] = field(default_factory=dict)
    intervals: dict[Timer, float] = field(default_factory=dict)


def _response_input(status: int) -> Input:
    if status < 200:
        return Input.RECV_PROVISIONAL
    return Input.RECV_SUCCESS if status < 300 else Input.RECV_FAILURE


def _send_input(status: int) -> Input:
    if status < 200:
        return Input.SEND_PROVISIONAL
    return Input.SEND_SUCCESS if status < 300 else Input.SEND_FAILURE


def _server_key(request: SipRequest, via: Via, method: str) -> Hashable:
    """The §17.2.3 matching key of a request, computed from its top Via as received.

    ACK and CANCEL pass ``method="INVITE"`` to find the INVITE they belong to.
    """
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return ("3261", branch, via.sent_by.lower(), method)
    # RFC 2543 peers: Request-URI, From tag, Call-ID, CSeq number and top Via identify the
    # transaction. The To tag is left out so that the ACK for a non-2xx still matches.
    return (
        "2543",
        str(request.uri),
        request.from_.tag,
        request.call_id,
        request.cseq.seq,
        via.transport,
        via.sent_by.lower(),
        # received/rport are what we stamp on receipt; leave them out so that the key is the
        # same before and after stamping.
        tuple((n.lower(), v) for n, v in via.params if n.lower() not in ("received", "rport")),
        method,
    )


class TransactionLayer:
    """All live transactions of one SIP endpoint. See the module docstring."""

    def __init__(
        self,
        *,
        policy: TimerPolicy | None = None,
        max_transactions: int = 10_000,
        max_held_bytes: int = 64 * 1024 * 1024,
        force_rport: bool = False,
    ) -> None:
        if max_transactions < 1:
            raise ValueError("max_transactions must be at least 1")
        if max_held_bytes < 1:
            raise ValueError("max_held_bytes must be at least 1")
        self._policy = policy if policy is not None else TimerPolicy()
        self._max = max_transactions
        self._max_bytes = max_held_bytes
        #: Octets of messages the live transactions hold (requests, responses, ACKs).
        self.held_bytes = 0
        # Server transactions that only absorb retransmissions (non-INVITE Completed, INVITE
        # Confirmed), oldest first: the first to go when the layer runs out of room.
        self._absorbing: dict[TransactionId, None] = {}
        #: Absorbing transactions forgotten early to make room for new requests.
        self.evicted = 0
        self._force_rport = force_rport
        self._ids = itertools.count(1)
        self._transactions: dict[TransactionId, _Transaction] = {}
        self._client_index: dict[Hashable, TransactionId] = {}
        self._server_index: dict[Hashable, TransactionId] = {}
        self._heap: list[tuple[float, int, TransactionId, Timer]] = []
        self._heap_seq = itertools.count()
        self._outbox: list[tuple[bytes, Endpoint]] = []
        #: Messages dropped because a header the layer needs could not be parsed.
        self.dropped = 0

    # --- introspection ---

    def __len__(self) -> int:
        return len(self._transactions)

    def state_of(self, txn_id: TransactionId) -> State | None:
        """The state of a live transaction; None once it terminated and was forgotten."""
        txn = self._transactions.get(txn_id)
        return None if txn is None else txn.state

    def request_of(self, txn_id: TransactionId) -> SipRequest | None:
        """The request of a live transaction; None once a server transaction sent its final
        response (it keeps only what absorbing retransmissions needs)."""
        txn = self._transactions.get(txn_id)
        return None if txn is None else txn.request

    # --- outputs ---

    def datagrams_to_send(self) -> list[tuple[bytes, Endpoint]]:
        """Everything queued for the wire since the last call, in order."""
        out, self._outbox = self._outbox, []
        return out

    def next_deadline(self) -> float | None:
        """When `handle_timer` next has work, or None when no timer is armed."""
        heap = self._heap
        while heap:
            deadline, seq, txn_id, timer = heap[0]
            if self._is_live(txn_id, timer, seq):
                return deadline
            heapq.heappop(heap)
        return None

    # --- inputs ---

    def receive(
        self, message: SipRequest | SipResponse, source: Endpoint, now: float
    ) -> list[Event]:
        """Feed one parsed message; returns what the TU must hear about."""
        events: list[Event] = []
        try:
            if isinstance(message, SipRequest):
                self._receive_request(message, source, now, events)
            else:
                self._receive_response(message, source, now, events)
        except SipParseError:
            # A hand-built or partly validated message lacking what matching needs.
            self.dropped += 1
        return events

    def send_request(self, request: SipRequest, dest: Endpoint, now: float) -> TransactionId:
        """Start a client transaction; the request goes out at once and is retransmitted on UDP.

        The TU must have put a top Via whose branch carries the magic cookie (`BranchGenerator`).
        Reliability follows `dest.transport`.
        """
        if request.method == "ACK":
            raise TransactionError("ACK has no client transaction: use send_stateless")
        via = request.top_via
        branch = via.branch
        if branch is None or not branch.startswith(MAGIC_COOKIE):
            raise TransactionError(f"top Via branch must start with {MAGIC_COOKIE} (§8.1.1.7)")
        key = (branch, request.method)
        if key in self._client_index:
            raise TransactionError(f"a client transaction with branch {branch} is live")
        if len(self._transactions) >= self._max:
            raise TransactionError("transaction limit reached")
        kind = Kind.INVITE_CLIENT if request.method == "INVITE" else Kind.NON_INVITE_CLIENT
        txn = self._new(kind, key, request, dest, dest.reliable)
        txn.request_bytes = request.serialize()
        self._client_index[key] = txn.id
        self._outbox.append((txn.request_bytes, dest))
        self._apply(txn, START[kind], now, [])
        return txn.id

    def send_response(
        self, txn_id: TransactionId, response: SipResponse, now: float
    ) -> list[Event]:
        """Send the TU's response within server transaction `txn_id`."""
        txn = self._transactions.get(txn_id)
        if txn is None or txn.kind not in (Kind.INVITE_SERVER, Kind.NON_INVITE_SERVER):
            raise TransactionError(f"no live server transaction {txn_id}")
        if not 100 <= response.status <= 699:
            raise TransactionError(f"status {response.status} is not 100-699")
        event = _send_input(response.status)
        transition = TRANSITIONS[txn.kind].get((txn.state, event))
        if transition is None:
            raise TransactionError(
                f"{txn.kind.value} transaction in {txn.state.value} cannot send "
                f"{response.status} (RFC 3261 §17.2)"
            )
        txn.final_response = response
        events: list[Event] = []
        self._apply(txn, transition, now, events)
        return events

    def send_stateless(self, message: SipRequest | SipResponse, dest: Endpoint) -> None:
        """Queue a message outside any transaction (ACK for 2xx, a 2xx retransmission, a 503)."""
        self._outbox.append((message.serialize(), dest))

    def handle_timer(self, now: float) -> list[Event]:
        """Fire every timer due at `now`, earliest first."""
        events: list[Event] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _deadline, seq, txn_id, timer = heapq.heappop(heap)
            if not self._is_live(txn_id, timer, seq):
                continue
            txn = self._transactions[txn_id]
            del txn.timers[timer]
            self._feed(txn, timer, now, events)
        return events

    def retransmitted(self, txn_id: TransactionId, now: float) -> list[Event]:
        """The request of server transaction `txn_id` came again: what `receive` would do with
        it (resend the last response, or nothing yet), for an adapter that recognised the
        retransmission without parsing it (RFC 3261 §17.2.1, §17.2.2)."""
        txn = self._transactions.get(txn_id)
        events: list[Event] = []
        if txn is not None and txn.kind in (Kind.INVITE_SERVER, Kind.NON_INVITE_SERVER):
            self._feed(txn, Input.RECV_REQUEST, now, events)
        return events

    def transport_error(self, txn_id: TransactionId) -> list[Event]:
        """The adapter failed to send for `txn_id` (connection refused or reset, ICMP error)."""
        txn = self._transactions.get(txn_id)
        if txn is None:
            return []
        events: list[Event] = []
        self._feed(txn, Input.TRANSPORT_ERROR, 0.0, events)
        return events

    def terminate(self, txn_id: TransactionId) -> list[Event]:
        """Forget a transaction now (e.g. an INVITE whose CANCEL got no 487 in 64*T1, §9.1)."""
        txn = self._transactions.get(txn_id)
        if txn is None:
            return []
        events: list[Event] = []
        self._finish(txn, events)
        return events

    def match_cancel(self, cancel: SipRequest) -> TransactionId | None:
        """The INVITE server transaction a CANCEL refers to (RFC 3261 §9.2), if still live."""
        return self._server_index.get(_server_key(cancel, cancel.top_via, "INVITE"))

    # --- receiving ---

    def _receive_request(
        self, request: SipRequest, source: Endpoint, now: float, events: list[Event]
    ) -> None:
        original_via = request.top_via
        method = request.method
        match_method = "INVITE" if method == "ACK" else method
        key = _server_key(request, original_via, match_method)
        # Also computed before stamping, so CANCEL and ACK find the INVITE's entry.
        cancel_key = _server_key(request, original_via, "INVITE") if method == "CANCEL" else None
        stamped = stamp_received(original_via, source.host, source.port)
        if stamped is not original_via:
            # Patch the top Via in place; the other headers keep their parsed views.
            request.headers.replace_first_value("Via", str(stamped), [stamped, *request.vias[1:]])
        txn_id = self._server_index.get(key)
        if txn_id is not None:
            txn = self._transactions[txn_id]
            if method == "ACK" and txn.kind is Kind.INVITE_SERVER:
                transition = TRANSITIONS[txn.kind].get((txn.state, Input.RECV_ACK))
                if transition is not None:
                    self._apply(txn, transition, now, events, ack=(request, source))
                return
            self._feed(txn, Input.RECV_REQUEST, now, events)
            return
        if method == "ACK":
            # The ACK for a 2xx has its own branch and no transaction (§17.1.1.3).
            events.append(RequestReceived(txn_id=None, request=request, source=source))
            return
        reply_to = response_destination(stamped, source, force_rport=self._force_rport)
        invite_txn_id = self._server_index.get(cancel_key) if cancel_key is not None else None
        # A CANCEL for a live INVITE is let through even when full: it frees a slot soon, and
        # there can be at most one per INVITE, so the bound merely doubles.
        size = max(request.wire_size, len(request.body))
        if not self._make_room(size, events) and invite_txn_id is None:
            events.append(Overloaded(request=request, source=source, reply_to=reply_to))
            return
        kind = Kind.INVITE_SERVER if method == "INVITE" else Kind.NON_INVITE_SERVER
        txn = self._new(kind, key, request, reply_to, source.reliable)
        txn.request_size = size
        self._server_index[key] = txn.id
        if cancel_key is not None:
            events.append(
                CancelReceived(
                    txn_id=txn.id,
                    request=request,
                    source=source,
                    invite_txn_id=invite_txn_id,
                )
            )
        else:
            events.append(RequestReceived(txn_id=txn.id, request=request, source=source))
        self._apply(txn, START[kind], now, events)

    def _receive_response(
        self, response: SipResponse, source: Endpoint, now: float, events: list[Event]
    ) -> None:
        # §17.1.3: the top Via branch and the CSeq method identify the client transaction.
        branch = response.top_via.branch
        txn_id = self._client_index.get((branch, response.cseq.method))
        if txn_id is None or not 100 <= response.status <= 699:
            events.append(StrayResponse(response=response, source=source))
            return
        txn = self._transactions[txn_id]
        transition = TRANSITIONS[txn.kind].get((txn.state, _response_input(response.status)))
        if transition is not None:
            self._apply(txn, transition, now, events, response=response)

    def _make_room(self, size: int, events: list[Event]) -> bool:
        """Whether a new request of `size` octets fits the count and byte bounds, after
        forgetting the oldest transactions that only absorb retransmissions if need be.

        Forgetting one early degrades gracefully: a late retransmission of its request is
        taken as a new request (REGISTER and OPTIONS are answered again) instead of being
        absorbed, whereas refusing new work would turn a flood into an outage.
        """
        transactions = self._transactions
        absorbing = self._absorbing
        while len(transactions) >= self._max or self.held_bytes + size > self._max_bytes:
            if not absorbing:
                return False
            txn_id = next(iter(absorbing))
            self.evicted += 1
            self._finish(transactions[txn_id], events)
        return True

    def _account(self, txn: _Transaction) -> None:
        """Bring the layer's byte count and eviction order up to date with `txn`'s state."""
        server = txn.kind is Kind.NON_INVITE_SERVER or txn.kind is Kind.INVITE_SERVER
        state = txn.state
        if server and state is not _S.TRYING and state is not _S.PROCEEDING:
            txn.request = None
        held = len(txn.request_bytes)
        if txn.last_response is not None:
            held += len(txn.last_response)
        if txn.ack_bytes is not None:
            held += len(txn.ack_bytes)
        if txn.request is not None and server:
            held += txn.request_size
        self.held_bytes += held - txn.held
        txn.held = held
        if server and (
            state is _S.CONFIRMED or (state is _S.COMPLETED and txn.kind is Kind.NON_INVITE_SERVER)
        ):
            self._absorbing[txn.id] = None

    # --- the machine ---

    def _new(
        self,
        kind: Kind,
        key: Hashable,
        request: SipRequest,
        peer: Endpoint,
        reliable: bool,
    ) -> _Transaction:
        txn_id = TransactionId(next(self._ids))
        txn = _Transaction(
            id=txn_id, kind=kind, key=key, request=request, peer=peer, reliable=reliable
        )
        self._transactions[txn_id] = txn
        return txn

    def _feed(
        self, txn: _Transaction, event: Input | Timer, now: float, events: list[Event]
    ) -> None:
        transition = TRANSITIONS[txn.kind].get((txn.state, event))
        if transition is not None:
            self._apply(txn, transition, now, events)

    def _apply(
        self,
        txn: _Transaction,
        transition: Transition,
        now: float,
        events: list[Event],
        *,
        response: SipResponse | None = None,
        ack: tuple[SipRequest, Endpoint] | None = None,
    ) -> None:
        txn.state = transition.target
        for action in transition.actions:
            self._act(txn, action, events, response, ack)
        for timer in transition.stop:
            txn.timers.pop(timer, None)
        if transition.target is State.TERMINATED:
            self._finish(txn, events)
            return
        self._account(txn)
        immediate: list[Timer] = []
        for timer, backoff in transition.arm:
            interval = self._policy.next_interval(
                timer, txn.intervals.get(timer, 0.0), backoff, txn.reliable
            )
            if interval is None:
                continue  # not used on this transport
            txn.intervals[timer] = interval
            if interval == 0:
                # D, I, J, K are zero on reliable transports: fire now rather than wait
                # for the adapter to come back.
                immediate.append(timer)
                continue
            seq = next(self._heap_seq)
            txn.timers[timer] = (now + interval, seq)
            heapq.heappush(self._heap, (now + interval, seq, txn.id, timer))
        for timer in immediate:
            if txn.state is State.TERMINATED:
                break
            self._feed(txn, timer, now, events)
        self._compact_heap()

    def _act(
        self,
        txn: _Transaction,
        action: Action,
        events: list[Event],
        response: SipResponse | None,
        ack: tuple[SipRequest, Endpoint] | None,
    ) -> None:
        if action is Action.DELIVER_RESPONSE:
            assert response is not None
            events.append(ResponseReceived(txn_id=txn.id, response=response))
        elif action is Action.DELIVER_ACK:
            assert ack is not None
            events.append(RequestReceived(txn_id=None, request=ack[0], source=ack[1]))
        elif action is Action.RETRANSMIT_REQUEST:
            self._outbox.append((txn.request_bytes, txn.peer))
        elif action is Action.SEND_ACK:
            if txn.ack_bytes is None:
                assert response is not None
                assert txn.request is not None  # client transactions keep their request
                txn.ack_bytes = _ack_for(txn.request, response).serialize()
            self._outbox.append((txn.ack_bytes, txn.peer))
        elif action is Action.SEND_RESPONSE:
            assert txn.final_response is not None
            txn.last_response = txn.final_response.serialize()
            txn.final_response = None
            self._outbox.append((txn.last_response, txn.peer))
        elif action is Action.RESEND_RESPONSE:
            if txn.last_response is not None:
                self._outbox.append((txn.last_response, txn.peer))
            elif txn.kind is Kind.INVITE_SERVER:
                # The client is retransmitting before the 200 ms are up: it is waiting, so
                # send the 100 Trying now (§17.2.1).
                self._send_trying(txn)
        elif action is Action.SEND_TRYING:
            self._send_trying(txn)
        elif action is Action.REPORT_TIMEOUT:
            events.append(TransactionTimeout(txn_id=txn.id))
        elif action is Action.REPORT_TRANSPORT_ERROR:
            events.append(TransportFailed(txn_id=txn.id))

    def _send_trying(self, txn: _Transaction) -> None:
        assert txn.request is not None  # kept until the final response
        txn.last_response = make_response(txn.request, 100, "Trying").serialize()
        self._outbox.append((txn.last_response, txn.peer))

    def _finish(self, txn: _Transaction, events: list[Event]) -> None:
        txn.state = State.TERMINATED
        txn.timers.clear()
        del self._transactions[txn.id]
        self._absorbing.pop(txn.id, None)
        self.held_bytes -= txn.held
        txn.held = 0
        index = (
            self._client_index
            if txn.kind in (Kind.INVITE_CLIENT, Kind.NON_INVITE_CLIENT)
            else self._server_index
        )
        if index.get(txn.key) == txn.id:
            del index[txn.key]
        events.append(TransactionTerminated(txn_id=txn.id))

    def _is_live(self, txn_id: TransactionId, timer: Timer, seq: int) -> bool:
        txn = self._transactions.get(txn_id)
        if txn is None:
            return False
        armed = txn.timers.get(timer)
        return armed is not None and armed[1] == seq

    def _compact_heap(self) -> None:
        # Stopped timers stay in the heap until they surface; rebuild when they dominate so that
        # memory stays proportional to the live transactions.
        if len(self._heap) <= 64 + 4 * len(self._transactions):
            return
        self._heap = [entry for entry in self._heap if self._is_live(entry[2], entry[3], entry[1])]
        heapq.heapify(self._heap)


def _ack_for(request: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK for a non-2xx final response, built as RFC 3261 §17.1.1.3 prescribes.

    Same Request-URI, Call-ID, From, CSeq number and top Via (hence branch) as the INVITE, the To
    of the response (with its tag), and the INVITE's Route set.
    """
    headers = Headers()
    headers.add("Via", request.headers.get_all("Via")[0])
    headers.add("Max-Forwards", request.headers.get("Max-Forwards") or "70")
    for name, value in request.headers.get_lines_with_names("Route"):
        headers.add(name, value)
    headers.add("From", request.headers.get("From") or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq.seq} ACK")
    return SipRequest("ACK", request.uri, headers)
