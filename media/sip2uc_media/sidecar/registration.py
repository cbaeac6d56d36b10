"""The REGISTER flow's asyncio side: the sans-IO registrar's verdict, the control plane's answer,
and the response.

A REGISTER the registrar can answer alone (the 401 challenge, a malformed request) is answered at
once; an authenticated one goes to the control plane through `RegisterControl.register` and is
answered from its callback, inside the span of the SIP transaction, whose trace the control
plane's request continues. While the control plane is unreachable the answer is 503 with
Retry-After (RFC 3261 §21.5.4). Every login's outcome goes to the edge's `AuthGuard`: a REGISTER
for a user name banned from its source is ignored, the control plane's verdict counts as a
failure or a success, and what the registrar refused by itself is logged once per source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from opentelemetry import trace
from sip2uc_core.sip.endpoint import Endpoint
from sip2uc_core.sip.message import SipRequest, SipResponse, make_response
from sip2uc_core.sip.transaction import TransactionId

from .auth_guard import AuthGuard
from .registrar import RegisterAttempt, RegisterOutcome, RegisterResult, Registrar, Rejection
from .requests import ControlUnavailableError, Origin, RegisterDone
from .telemetry import EdgeMetrics, tracer

__all__ = ["RegisterControl", "RegisterEdge", "RegisterHandler"]


class RegisterControl(Protocol):
    """What the flow needs from the control link (a fake in unit tests)."""

    @property
    def up(self) -> bool: ...

    def register(self, attempt: RegisterAttempt, origin: Origin, done: RegisterDone) -> None: ...


class RegisterEdge(Protocol):
    """What the flow needs from the SIP edge."""

    def respond(self, txn_id: TransactionId, response: SipResponse) -> None: ...

    def flush(self) -> None: ...

    @property
    def guard(self) -> AuthGuard: ...

    def ignore(self, txn_id: TransactionId, reason: str) -> None:
        """End a server transaction without answering (a banned source learns nothing)."""

    def registered(self, host: str, expires: int) -> None: ...

    def internal_error(self, exc: BaseException) -> None: ...


class RegisterHandler:
    def __init__(
        self,
        *,
        name: str,
        registrar: Registrar,
        control: RegisterControl,
        edge: RegisterEdge,
        metrics: EdgeMetrics,
        wall_clock: Callable[[], float],
        retry_after: Callable[[], int],
    ) -> None:
        self.name = name
        self.registrar = registrar
        self._control = control
        self._edge = edge
        self._metrics = metrics
        self._wall = wall_clock
        self._retry_after = retry_after

    def register(self, txn_id: TransactionId, request: SipRequest, source: Endpoint) -> None:
        span = tracer.start_span(
            "SIP REGISTER",
            kind=trace.SpanKind.SERVER,
            attributes={
                "sip.method": "REGISTER",
                "sip.call_id": request.call_id,
                "net.peer.ip": source.host,
                "net.transport": source.transport.via_name,
            },
        )
        with trace.use_span(span, end_on_exit=False):
            if self._edge.guard.user_banned(source.host, lambda: self.registrar.user_of(request)):
                self._edge.ignore(txn_id, "banned_user")
                span.end()
                return
            verdict = self.registrar.receive(request, source.host, self._wall())
            if isinstance(verdict, Rejection):
                self._rejected(txn_id, source, verdict)
                span.set_attribute("sip.status_code", verdict.response.status)
                span.end()
                return
            if not self._control.up:
                self._unavailable(txn_id, request)
                span.set_attribute("sip.status_code", 503)
                span.end()
                return
            origin = Origin(
                sidecar=self.name,
                source=source,
                user_agent=request.headers.get("User-Agent") or "",
                call_id=request.call_id,
            )

            user = verdict.credentials.username

            def done(result: RegisterResult | None, error: ControlUnavailableError | None) -> None:
                try:
                    self._answer(txn_id, request, source, user, span, result, error)
                except Exception as exc:
                    self._edge.internal_error(exc)
                finally:
                    span.end()

            # Called inside the span, so the control plane's request carries its trace context.
            self._control.register(verdict, origin, done)

    def _answer(
        self,
        txn_id: TransactionId,
        request: SipRequest,
        source: Endpoint,
        user: str,
        span: trace.Span,
        result: RegisterResult | None,
        error: ControlUnavailableError | None,
    ) -> None:
        if result is None:
            span.add_event("control unavailable", {"error": str(error)})
            self._unavailable(txn_id, request)
            self._edge.flush()
            return
        wall = self._wall()
        response = self.registrar.complete(request, result, source.host, wall, wall)
        self._metrics.register_outcomes.add(1, {"outcome": result.outcome.value})
        if result.outcome is RegisterOutcome.UNAUTHORIZED:
            self._edge.guard.failed(source.host, user)
        else:
            self._edge.guard.succeeded(source.host, user)
            if result.outcome is RegisterOutcome.OK and result.bindings:
                self._edge.registered(source.host, max(b.expires for b in result.bindings))
        span.set_attribute("sip.status_code", response.status)
        self._edge.respond(txn_id, response)
        self._edge.flush()

    def _rejected(self, txn_id: TransactionId, source: Endpoint, rejection: Rejection) -> None:
        self._metrics.register_outcomes.add(1, {"outcome": rejection.label})
        if rejection.why:
            self._edge.guard.refused(source.host, rejection.label, rejection.why)
        self._edge.respond(txn_id, rejection.response)

    def _unavailable(self, txn_id: TransactionId, request: SipRequest) -> None:
        self._edge.respond(
            txn_id,
            make_response(
                request,
                503,
                to_tag=self.registrar.tag_for(request),
                headers=[("Retry-After", str(self._retry_after()))],
            ),
        )
