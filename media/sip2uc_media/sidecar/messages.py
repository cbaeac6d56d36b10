"""Short messages at the SIP edge (RFC 3428): a handset's MESSAGE to the control plane, and the
control plane's `DeliverMessage` to a handset.

In: the MESSAGE is challenged like an INVITE (407 with the same stateless nonces, RFC 3261
§22.3; nothing is relayed for a sender whose digest the control plane has not verified), then
the control plane says what to answer: 202 once the text went to the recipient's devices (it
cannot know yet whether they took it, RFC 3428 §7), or the refusal (404, 413, 415 with Accept,
480, 403 with Retry-After over the rate limit). While the control plane is unreachable: 503 with
Retry-After.

Out: a `DeliverMessage` becomes a MESSAGE outside any dialog sent in a non-INVITE client
transaction; the handset's final answer (or 408 when it never answered) goes back to the
control plane as a `MessageDelivery`.

The SIP work is sans-IO (`build_message`, `MessageHandler.response`); only asking the control
plane runs in a task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from opentelemetry import trace
from sip2uc_core.sip.digest import Credentials
from sip2uc_core.sip.endpoint import Endpoint
from sip2uc_core.sip.errors import SipParseError
from sip2uc_core.sip.headers import NameAddr
from sip2uc_core.sip.message import SipRequest, SipResponse, make_response
from sip2uc_core.sip.transaction import TransactionId
from sip2uc_core.sip.uri import parse_uri

from ..b2bua.legs import LegConfig
from .auth_guard import AuthGuard
from .commands import DeliverMessage
from .registrar import Registrar, Rejection
from .requests import ControlUnavailableError, Origin
from .telemetry import tracer

__all__ = [
    "MessageAnswer",
    "MessageCall",
    "MessageControl",
    "MessageEdge",
    "MessageHandler",
    "build_message",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageCall:
    """A handset's MESSAGE whose credentials passed the sidecar's checks, for the control plane."""

    origin: Origin
    credentials: Credentials
    from_uri: str
    from_display_name: str
    request_uri: str
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageAnswer:
    """What the control plane says to answer."""

    status: int
    reason: str = ""
    retry_after: int = 0
    accept: str = ""


class MessageControl(Protocol):
    """What short messages need from the control link (a fake in unit tests)."""

    @property
    def up(self) -> bool: ...

    async def message(self, call: MessageCall) -> MessageAnswer: ...

    def message_delivered(self, delivery_id: str, status: int, reason: str) -> None: ...


class MessageEdge(Protocol):
    """What short messages need from the SIP edge."""

    def respond(self, txn_id: TransactionId, response: SipResponse) -> None: ...

    def send_request(self, request: SipRequest, dest: Endpoint) -> TransactionId | None: ...

    @property
    def guard(self) -> AuthGuard: ...

    def ignore(self, txn_id: TransactionId, reason: str) -> None: ...

    def flush(self) -> None: ...

    def internal_error(self, exc: BaseException) -> None: ...


def build_message(command: DeliverMessage, config: LegConfig) -> SipRequest:
    """The MESSAGE for `command`, outside any dialog (RFC 3428 §4). Raises SipParseError for a
    URI that does not parse."""
    transport = command.destination.transport
    from_addr = NameAddr(
        display_name=command.from_display_name or None,
        uri=parse_uri(command.from_uri),
        params=(("tag", config.tag()),),
    )
    request = SipRequest("MESSAGE", parse_uri(command.request_uri))
    h = request.headers
    h.add("Via", config.via(transport))
    h.add("Max-Forwards", "70")
    h.add("From", str(from_addr))
    h.add("To", str(NameAddr(uri=parse_uri(command.to_uri))))
    h.add("Call-ID", f"{config.random_bytes(12).hex()}@{config.sip_host}")
    h.add("CSeq", "1 MESSAGE")
    h.add("Content-Type", command.content_type)
    request.body = command.body
    return request


class MessageHandler:
    def __init__(
        self,
        *,
        name: str,
        registrar: Registrar,
        control: MessageControl,
        config: LegConfig,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        retry_after: Callable[[], int],
    ) -> None:
        self.name = name
        self.registrar = registrar
        self.control = control
        self.config = config
        self._clock = clock
        self._wall = wall_clock
        self._retry_after = retry_after
        self.edge: MessageEdge | None = None
        #: Our MESSAGEs in flight: client transaction -> delivery id.
        self._deliveries: dict[TransactionId, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def _edge(self) -> MessageEdge:
        assert self.edge is not None, "attach the handler to an edge first"
        return self.edge

    # -- a handset's MESSAGE ------------------------------------------------------------------

    def message(self, txn_id: TransactionId, request: SipRequest, source: Endpoint) -> None:
        edge = self._edge
        if request.to.tag is not None:
            # RFC 3261 §12.2.2: a MESSAGE for a dialog that is not one of ours.
            self._reply(txn_id, request, 481)
            return
        registrar = self.registrar
        if edge.guard.user_banned(source.host, lambda: registrar.user_of(request, proxy=True)):
            edge.ignore(txn_id, "banned_user")
            return
        checked = registrar.authenticate(request, source.host, self._wall())
        if isinstance(checked, Rejection):
            if checked.why:
                edge.guard.refused(source.host, checked.label, checked.why)
            edge.respond(txn_id, checked.response)
            return
        if not self.control.up:
            self._reply(txn_id, request, 503, [("Retry-After", str(self._retry_after()))])
            return
        call = MessageCall(
            origin=Origin(
                sidecar=self.name,
                source=source,
                user_agent=request.headers.get("User-Agent") or "",
                call_id=request.call_id,
            ),
            credentials=checked,
            from_uri=str(request.from_.uri),
            from_display_name=request.from_.display_name or "",
            request_uri=str(request.uri),
            content_type=request.headers.get("Content-Type") or "",
            body=request.body,
        )
        self._spawn(self._ask(txn_id, request, source, call))

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ask(
        self, txn_id: TransactionId, request: SipRequest, source: Endpoint, call: MessageCall
    ) -> None:
        with tracer.start_as_current_span(
            "SIP MESSAGE",
            kind=trace.SpanKind.SERVER,
            attributes={"sip.method": "MESSAGE", "net.peer.ip": source.host},
        ) as span:
            try:
                answer = await self.control.message(call)
            except ControlUnavailableError as exc:
                span.add_event("control unavailable", {"error": str(exc)})
                answer = MessageAnswer(status=503)
            except Exception as exc:
                self._edge.internal_error(exc)
                answer = MessageAnswer(status=500)
            span.set_attribute("sip.status_code", answer.status)
            try:
                self._answer(txn_id, request, source, answer)
            except Exception as exc:
                self._edge.internal_error(exc)

    def _answer(
        self, txn_id: TransactionId, request: SipRequest, source: Endpoint, answer: MessageAnswer
    ) -> None:
        edge = self._edge
        if answer.status == 407:
            # The credentials did not verify: a fresh challenge, counted towards a ban.
            edge.guard.failed(source.host, self.registrar.user_of(request, proxy=True))
            edge.respond(txn_id, self.registrar.proxy_challenge(request, source.host, self._wall()))
        else:
            if answer.status < 500:
                # The control plane verified the digest, whatever it then decided.
                edge.guard.succeeded(source.host, self.registrar.user_of(request, proxy=True))
            headers: list[tuple[str, str]] = []
            if answer.status == 503:
                headers.append(("Retry-After", str(self._retry_after())))
            elif answer.retry_after:
                headers.append(("Retry-After", str(answer.retry_after)))
            if answer.accept:
                headers.append(("Accept", answer.accept))
            self._reply(txn_id, request, answer.status, headers, answer.reason or None)
        edge.flush()

    def _reply(
        self,
        txn_id: TransactionId,
        request: SipRequest,
        status: int,
        headers: list[tuple[str, str]] | None = None,
        reason: str | None = None,
    ) -> None:
        self._edge.respond(
            txn_id,
            make_response(
                request,
                status,
                reason,
                to_tag=self.registrar.tag_for(request),
                headers=headers or (),
            ),
        )

    # -- the control plane's DeliverMessage ------------------------------------------------------

    def deliver(self, command: DeliverMessage) -> str:
        """Send the MESSAGE; "" once it is on its way (its answer is reported separately)."""
        try:
            request = build_message(command, self.config)
        except SipParseError as exc:
            self.control.message_delivered(command.delivery_id, 400, "bad URI")
            return f"bad DeliverMessage: {exc}"
        txn_id = self._edge.send_request(request, command.destination)
        if txn_id is None:
            self.control.message_delivered(command.delivery_id, 503, "not sent")
            return "could not send the MESSAGE"
        self._deliveries[txn_id] = command.delivery_id
        self._edge.flush()
        return ""

    def response(self, txn_id: TransactionId | None, response: SipResponse) -> bool:
        """True when `response` answers one of our MESSAGEs (a final one is reported)."""
        if txn_id is None or txn_id not in self._deliveries:
            return False
        if response.status >= 200:
            delivery_id = self._deliveries.pop(txn_id)
            self.control.message_delivered(delivery_id, response.status, response.reason)
        return True

    def transaction_failed(self, txn_id: TransactionId) -> bool:
        """Timer F fired or the transport failed (RFC 3261 §17.1.2.2): reported as 408."""
        delivery_id = self._deliveries.pop(txn_id, None)
        if delivery_id is None:
            return False
        self.control.message_delivered(delivery_id, 408, "Request Timeout")
        return True

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
