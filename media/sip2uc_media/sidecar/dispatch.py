"""The SIP edge: every message from every transport goes through `SipEdge.receive`.

Order of business for one message: allow-list, ban list, size, parse, transaction layer
(retransmissions are absorbed there and the stored response is resent, RFC 3261 §17.2.2), then
the method table: REGISTER goes to `registration.RegisterHandler`, INVITE and what belongs to a
call to `calls.CallHandler`, SUBSCRIBE (and the answers to our NOTIFYs) to
`subscribe.SubscribeHandler`, OPTIONS is answered here. Methods this sidecar does not serve yet get
a clean 405/501 from the same table.

`receive` never raises: a bug in a handler is logged once per kind, counted, and the message
dropped, so one bad packet cannot take the listener down.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Protocol

from sip2uc_core.refusal_log import RefusalLog, printable
from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.sip.errors import SipParseError
from sip2uc_core.sip.framing import is_keepalive_datagram
from sip2uc_core.sip.message import (
    SipRequest,
    SipResponse,
    make_response,
    parse_message,
    unsupported_requirements,
    validate_request,
    validate_response,
)
from sip2uc_core.sip.transaction import (
    CancelReceived,
    Event,
    Overloaded,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionError,
    TransactionId,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailed,
)
from sip2uc_core.sip.uri import user_or_whole

from ..b2bua.methods import ALLOW, ALLOW_REGISTRAR, NOT_SERVED
from ..transport.base import Source
from .auth_guard import AuthGuard
from .calls import CallHandler
from .known_sources import KnownSources
from .messages import MessageHandler
from .overload import retry_after as jittered
from .protection import BanList, NetworkAllowList
from .raw_response import error_response
from .registrar import Registrar
from .registration import RegisterControl, RegisterHandler
from .subscribe import SubscribeHandler
from .telemetry import EdgeMetrics

__all__ = ["SipEdge"]

_log = logging.getLogger(__name__)

ACCEPT = "application/sdp"
SUPPORTED: tuple[str, ...] = ()
# Outside a dialog INFO has nothing to apply to either.
_NOT_ALLOWED = NOT_SERVED | {"INFO"}
_NO_TRANSACTION = frozenset({"BYE"})


Sender = Callable[[bytes, Endpoint], bool]


class TrunkTransactions(Protocol):
    """The trunk carrier's side of the transactions it started (`trunk/carrier.py`)."""

    def response(self, txn_id: TransactionId | None, response: SipResponse, /) -> bool: ...

    def timeout(self, txn_id: TransactionId, /) -> bool: ...


class SipEdge:
    def __init__(
        self,
        *,
        name: str,
        registrar: Registrar,
        control: RegisterControl,
        send: Sender,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        bans: BanList | None = None,
        allow: NetworkAllowList | None = None,
        local_allow: NetworkAllowList | None = None,
        metrics: EdgeMetrics | None = None,
        max_message_size: int = 65535,
        retry_after: int = 5,
        max_transactions: int = 200_000,
        max_held_bytes: int = 128 * 1024 * 1024,
        known: KnownSources | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.registrar = registrar
        self._send = send
        self._clock = clock
        self.bans = bans or BanList()
        self.allow = allow or NetworkAllowList()
        self._local_allow = local_allow or NetworkAllowList()
        self.metrics = metrics or EdgeMetrics()
        #: Logins' outcomes: bans (whole sources are dropped below, before parsing), metrics, logs.
        self.guard = AuthGuard(self.bans, self.metrics, clock)
        self._max_size = max_message_size
        self._retry_after_base = retry_after
        self._rng = rng or random.Random()
        #: Sources with a live binding (the intake serves them first).
        self.known = known if known is not None else KnownSources()
        # Handsets behind NAT rarely ask for rport but can only be reached at the source port.
        self.transactions = TransactionLayer(
            max_transactions=max_transactions, max_held_bytes=max_held_bytes, force_rport=True
        )
        # The datagrams (by hash) that opened the live UDP server transactions, so that their
        # retransmissions are absorbed without a parse (`absorb`).
        self._by_datagram: dict[int, TransactionId] = {}
        self._datagram_of: dict[TransactionId, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._logged_errors: set[str] = set()
        #: Refusals a person can act on, logged once per source and reason.
        self.refusals = RefusalLog(_log)
        self.internal_errors = 0
        self.registrations = RegisterHandler(
            name=name,
            registrar=registrar,
            control=control,
            edge=self,
            metrics=self.metrics,
            wall_clock=wall_clock,
            retry_after=self.retry_after,
        )
        self._methods: dict[str, Callable[[TransactionId, SipRequest, Endpoint], None]] = {
            "REGISTER": self.registrations.register,
            "OPTIONS": self._options,
        }
        self.calls: CallHandler | None = None
        #: The trunks' registrations and keep-alives: their transactions' outcomes go there.
        self.trunks: TrunkTransactions | None = None
        self.subscriptions: SubscribeHandler | None = None
        self.messages: MessageHandler | None = None

    def retry_after(self) -> int:
        """A Retry-After value for a 503, with jitter so that handsets spread out."""
        return jittered(self._retry_after_base, self._rng)

    @property
    def _allow(self) -> str:
        allow = ALLOW_REGISTRAR if self.calls is None else ALLOW
        served = (("MESSAGE", self.messages), ("SUBSCRIBE", self.subscriptions))
        return ", ".join([allow, *(method for method, handler in served if handler is not None)])

    def attach_calls(self, calls: CallHandler) -> None:
        """Serve INVITE and the in-dialog methods with the B2BUA."""
        self.calls = calls
        calls.edge = self
        self._methods["INVITE"] = calls.invite

    def attach_subscriptions(self, subscriptions: SubscribeHandler) -> None:
        """Serve SUBSCRIBE (presence, dialog, buddy lists) and route the NOTIFYs' answers."""
        self.subscriptions = subscriptions
        self._methods["SUBSCRIBE"] = subscriptions.subscribe

    def attach_messages(self, messages: MessageHandler) -> None:
        """Serve MESSAGE (RFC 3428) both ways."""
        self.messages = messages
        messages.edge = self
        self._methods["MESSAGE"] = messages.message

    # -- entry point ----------------------------------------------------------------------------

    def receive(self, data: bytes, source: Source) -> None:
        try:
            self._receive(data, source)
        except Exception as exc:
            self.internal_error(exc)

    def internal_error(self, exc: BaseException) -> None:
        self.internal_errors += 1
        self.metrics.dropped.add(1, {"reason": "internal_error"})
        kind = type(exc).__name__
        if kind not in self._logged_errors:
            self._logged_errors.add(kind)
            _log.error("SIP edge dropped a message after an internal error", exc_info=exc)

    def _drop(self, reason: str) -> None:
        self.metrics.dropped.add(1, {"reason": reason})

    def admits(self, host: str, now: float) -> bool:
        """Whether the source passes the allow-lists and is not banned (counted if not); the
        intake asks before it does anything else with a message."""
        if not (self.allow.allows(host) and self._local_allow.allows(host)):
            self._drop("not_allowed")
            return False
        if self.bans.is_banned(host, now):
            self._drop("banned")
            return False
        return True

    def _receive(self, data: bytes, source: Source) -> None:
        now = self._clock()
        if not self.admits(source.host, now):
            return
        if source.endpoint.transport is Transport.UDP and is_keepalive_datagram(data):
            return
        if len(data) > self._max_size:
            self._too_large(data, source)
            return
        try:
            message = parse_message(data, max_size=self._max_size)
        except SipParseError as exc:
            self._unparseable(data, exc, source)
            return
        dest = source.endpoint
        if isinstance(message, SipResponse):
            if (
                self.calls is None and self.subscriptions is None and self.messages is None
            ) or validate_response(message) is not None:
                # RFC 3261 §18.1.2 / §8.1.3.3: a response we cannot have asked for.
                self._drop("stray_response")
                return
            for event in self.transactions.receive(message, dest, now):
                self._event(event)
            self._flush()
            return
        self.metrics.messages_in.add(1, {"method": message.method})
        events = self.transactions.receive(message, dest, now)
        if not events:
            self.metrics.retransmissions.add(1, {"method": message.method})
        elif dest.transport is Transport.UDP:
            first = events[0]
            if isinstance(first, RequestReceived) and first.txn_id is not None:
                key = hash(data)
                self._by_datagram[key] = first.txn_id
                self._datagram_of[first.txn_id] = key
        for event in events:
            self._event(event)
        self._flush()

    def absorb(self, data: bytes) -> bool:
        """Whether `data` repeats the datagram that opened a live UDP server transaction; if
        so the transaction layer does what a retransmission calls for (resend the last
        response, or nothing yet, RFC 3261 §17.2) without the request being parsed again.

        Datagrams are recognised by their hash (SipHash with the process's random key): a
        collision among the live transactions is as likely as guessing a 64-bit key.
        """
        txn_id = self._by_datagram.get(hash(data))
        if txn_id is None:
            return False
        try:
            for event in self.transactions.retransmitted(txn_id, self._clock()):
                self._event(event)
            self._flush()
        except Exception as exc:
            self.internal_error(exc)
        return True

    def _forget_datagram(self, txn_id: TransactionId) -> None:
        key = self._datagram_of.pop(txn_id, None)
        if key is not None and self._by_datagram.get(key) == txn_id:
            del self._by_datagram[key]

    def _event(self, event: Event) -> None:
        calls = self.calls
        subscriptions = self.subscriptions
        if subscriptions is not None and _for_subscriptions(subscriptions, event):
            return
        if isinstance(event, RequestReceived):
            if event.txn_id is not None:
                self._request(event.txn_id, event.request, event.source)
            elif calls is not None:
                calls.request(None, event.request, event.source)  # an ACK for a 2xx
        elif isinstance(event, (ResponseReceived, StrayResponse)):
            txn_id = event.txn_id if isinstance(event, ResponseReceived) else None
            if self.trunks is not None and self.trunks.response(txn_id, event.response):
                return
            messages = self.messages
            if (
                txn_id is not None
                and messages is not None
                and messages.response(txn_id, event.response)
            ):
                return
            if calls is not None:
                calls.response(txn_id, event.response)
        elif isinstance(event, (TransactionTimeout, TransportFailed)):
            if self.trunks is not None and self.trunks.timeout(event.txn_id):
                return
            if self.messages is not None and self.messages.transaction_failed(event.txn_id):
                return
            if calls is not None:
                calls.transaction_timeout(event.txn_id)
        elif isinstance(event, TransactionTerminated):
            self._forget_datagram(event.txn_id)
            if calls is not None:
                calls.transaction_ended(event.txn_id)
        elif isinstance(event, CancelReceived):
            if calls is not None and calls.cancel(event.txn_id, event.request, event.invite_txn_id):
                return
            # §9.2: a CANCEL that finds no pending INVITE of ours.
            status = 481 if event.invite_txn_id is None else 200
            self._respond(
                event.txn_id,
                make_response(event.request, status, to_tag=self.registrar.tag_for(event.request)),
            )
        elif isinstance(event, Overloaded):
            response = make_response(
                event.request, 503, headers=[("Retry-After", str(self.retry_after()))]
            )
            self.transactions.send_stateless(response, event.reply_to)
            self.metrics.messages_out.add(1, {"method": event.request.method, "status": 503})

    def _request(self, txn_id: TransactionId, request: SipRequest, source: Endpoint) -> None:
        problem = validate_request(request)
        if problem is not None:
            self._reply(txn_id, request, problem.status, problem.reason)
            return
        unsupported = unsupported_requirements(request, SUPPORTED)
        if unsupported:
            # RFC 3261 §8.2.2.3
            self._reply(txn_id, request, 420, None, [("Unsupported", ", ".join(unsupported))])
            return
        calls = self.calls
        if (
            calls is not None
            and request.method not in ("INVITE", "REGISTER")
            and calls.request(txn_id, request, source)
        ):
            return
        handler = self._methods.get(request.method)
        if handler is not None:
            handler(txn_id, request, source)
        elif request.method in _NOT_ALLOWED:
            self._reply(txn_id, request, 405, None, [("Allow", self._allow)])
            self.refused(
                source,
                "method_not_allowed",
                lambda: (
                    f"405 for {request.method} from {_sender(request, source)}: "
                    f"this sidecar serves {self._allow}"
                ),
            )
        elif request.method in _NO_TRANSACTION:
            self._reply(txn_id, request, 481, None)
        else:
            # INVITE and unknown methods (RFC 3261 §8.2.1).
            self._reply(txn_id, request, 501, None, [("Allow", self._allow)])
            self.refused(
                source,
                "not_implemented",
                lambda: (
                    f"501 for {printable(request.method)} from "
                    f"{_sender(request, source)}: not a method this sidecar knows"
                ),
            )

    # -- methods --------------------------------------------------------------------------------

    def _options(self, txn_id: TransactionId, request: SipRequest, _source: Endpoint) -> None:
        # RFC 3261 §11.2
        self._reply(
            txn_id,
            request,
            200,
            None,
            [("Allow", self._allow), ("Accept", ACCEPT), ("Supported", ", ".join(SUPPORTED))],
        )

    # -- sending --------------------------------------------------------------------------------

    def _reply(
        self,
        txn_id: TransactionId,
        request: SipRequest,
        status: int,
        reason: str | None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        response = make_response(
            request, status, reason, to_tag=self.registrar.tag_for(request), headers=headers or ()
        )
        self._respond(txn_id, response)

    def _respond(self, txn_id: TransactionId, response: SipResponse) -> None:
        try:
            self.transactions.send_response(txn_id, response, self._clock())
        except TransactionError:
            # The transaction ended meanwhile (a reliable transport dropped): nobody to answer.
            self._drop("transaction_gone")
            return
        self.metrics.messages_out.add(
            1, {"method": response.cseq.method, "status": response.status}
        )
        self._arm_timer()

    def _flush(self) -> None:
        for data, dest in self.transactions.datagrams_to_send():
            if not self._send(data, dest):
                self._drop("unreachable")

    # -- what the handlers use (registration.RegisterEdge, calls.EdgeHooks) ----------------------

    def respond(self, txn_id: TransactionId, response: SipResponse) -> None:
        self._respond(txn_id, response)

    def send_request(self, request: SipRequest, dest: Endpoint) -> TransactionId | None:
        try:
            txn_id = self.transactions.send_request(request, dest, self._clock())
        except TransactionError:
            self._drop("transaction_refused")
            return None
        self.metrics.messages_out.add(1, {"method": request.method, "status": 0})
        self._arm_timer()
        return txn_id

    def send_stateless(self, message: SipRequest | SipResponse, dest: Endpoint) -> None:
        self.transactions.send_stateless(message, dest)

    def ignore(self, txn_id: TransactionId, reason: str) -> None:
        self._drop(reason)
        for event in self.transactions.terminate(txn_id):
            self._event(event)

    def refused(
        self, source: Endpoint, reason: str, message: Callable[[], str], level: int = logging.INFO
    ) -> None:
        """Count a refusal by `reason` (a short fixed word: a metric attribute) and log
        `message()` once per source address and reason (it must hold no secret)."""
        self.metrics.refusals.add(1, {"reason": reason})
        self.refusals.note(source.host, reason, self._clock(), message, level)

    def registered(self, host: str, expires: int) -> None:
        self.known.mark(host, self._clock() + expires)

    def flush(self) -> None:
        self._flush()

    # -- timers ---------------------------------------------------------------------------------

    def _arm_timer(self) -> None:
        deadline = self.transactions.next_deadline()
        if deadline is None:
            return
        # Timer J is 32 s; 50 ms of slack lets one wake-up serve many transactions.
        if self._timer_at is not None and self._timer_at <= deadline + 0.05:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = deadline + 0.05
        self._timer = loop.call_at(self._timer_at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            for event in self.transactions.handle_timer(self._clock()):
                self._event(event)
            self._flush()
        except Exception as exc:
            self.internal_error(exc)
        self._arm_timer()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    # -- messages that never became requests ----------------------------------------------------

    def _too_large(self, data: bytes, source: Source) -> None:
        self._drop("too_large")
        if source.endpoint.transport is not Transport.UDP:
            return
        try:
            message = parse_message(data, max_size=len(data))
        except SipParseError:
            return
        if isinstance(message, SipRequest) and message.method != "ACK":
            # RFC 3261 §21.4.11; stateless: the request is not worth a transaction.
            source.send(
                make_response(message, 413, to_tag=self.registrar.tag_for(message)).serialize()
            )
            self.metrics.messages_out.add(1, {"method": message.method, "status": 413})

    def _unparseable(self, data: bytes, error: SipParseError, source: Source) -> None:
        self._drop("malformed")
        salvaged = error_response(data, error.status)
        if salvaged is not None:
            source.send(salvaged)
            self.metrics.messages_out.add(1, {"method": "unknown", "status": error.status})


def _for_subscriptions(subscriptions: SubscribeHandler, event: Event) -> bool:
    """Whether `event` concerns one of our NOTIFYs (and was handled)."""
    if isinstance(event, ResponseReceived):
        return subscriptions.response(event.txn_id, event.response)
    if isinstance(event, (TransactionTimeout, TransportFailed)):
        return subscriptions.transaction_timeout(event.txn_id)
    if isinstance(event, TransactionTerminated):
        subscriptions.transaction_ended(event.txn_id)
    return False


def _sender(request: SipRequest, source: Endpoint) -> str:
    """Who sent `request`, for a log line: its address, and its user and User-Agent as far as
    they are printable."""
    user = user_or_whole(request.from_.uri)
    agent = request.headers.get("User-Agent") or ""
    parts = [printable(user)] if user else []
    if agent:
        parts.append(printable(agent))
    where = f"{source.host}:{source.port}"
    return f"{where} ({', '.join(parts)})" if parts else where
