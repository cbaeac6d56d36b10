"""The SUBSCRIBE flow's asyncio side and the sidecar's one watch of the users' states.

A new SUBSCRIBE is checked by the sans-IO table (489, 423), authenticated with the same digest and
stateless nonces as a REGISTER (401), then decided by the control plane (`SubscribeControl`),
which names the watcher and the watched users; the 200 is followed at once by the first NOTIFY.
Refreshes and ends are answered here and reported to the control plane, which decides a refresh
again. The users' states come on ONE stream per sidecar (`watch_states`), whatever the number of
subscriptions, and are fanned out to the subscriptions here; after a control-plane restart the
watch is opened again with every subscription held, and those the control plane revoked end
(``terminated;reason=rejected``). While the control plane is unreachable, new SUBSCRIBEs are
answered 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from typing import Any, Protocol

from sip2uc_core.sip.endpoint import Endpoint
from sip2uc_core.sip.message import SipRequest, SipResponse, make_response
from sip2uc_core.sip.transaction import TransactionId

from ..b2bua.legs import LegConfig
from .registrar import Registrar, Rejection
from .registration import RegisterEdge
from .requests import ControlUnavailableError, Origin, SubscribeCall
from .subscriptions import (
    MAX_EXPIRES,
    Grant,
    Subscription,
    SubscriptionTable,
    UserState,
    event_of,
    requested_expires,
    supports_eventlist,
)

__all__ = ["SubscribeControl", "SubscribeEdge", "SubscribeHandler"]

_log = logging.getLogger(__name__)

#: Seconds between two looks for expired subscriptions.
SWEEP_INTERVAL = 1.0

StatesItem = tuple[list[UserState] | None, UserState | None, tuple[str, ...]]


class SubscribeControl(Protocol):
    @property
    def up(self) -> bool: ...

    async def wait_up(self) -> None: ...

    async def subscribe(self, call: SubscribeCall) -> tuple[int, str, Grant | None]: ...

    def watch_states(
        self, held: Callable[[], Iterable[Subscription]]
    ) -> AsyncIterator[StatesItem]: ...


class SubscribeEdge(RegisterEdge, Protocol):
    """What the flow needs from the SIP edge: what the REGISTER flow does, and requests out."""

    def send_request(self, request: SipRequest, dest: Endpoint) -> TransactionId | None: ...

    def retry_after(self) -> int: ...


class SubscribeHandler:
    def __init__(
        self,
        *,
        name: str,
        registrar: Registrar,
        control: SubscribeControl,
        edge: SubscribeEdge,
        config: LegConfig,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
    ) -> None:
        self.name = name
        self.registrar = registrar
        self._control = control
        self._edge = edge
        self._config = config
        self._clock = clock
        self._wall = wall_clock
        self.table = SubscriptionTable(boundary="sip2uc-" + os.urandom(8).hex())
        self._notifies: dict[TransactionId, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None
        self._sweep: asyncio.Task[None] | None = None
        #: NOTIFYs sent, for the benchmark and metrics.
        self.notifies_sent = 0

    def start(self) -> None:
        self._watch = asyncio.create_task(self._watch_loop(), name="sip2uc-state-watch")
        self._sweep = asyncio.create_task(self._sweep_loop(), name="sip2uc-subscription-expiry")

    async def close(self) -> None:
        for task in (self._watch, self._sweep, *self._tasks):
            if task is not None:
                task.cancel()
        for task in (self._watch, self._sweep, *self._tasks):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- SUBSCRIBE ----------------------------------------------------------------------------

    def subscribe(self, txn_id: TransactionId, request: SipRequest, source: Endpoint) -> None:
        tag = self.registrar.tag_for(request)
        refused = self.table.precheck(request, tag)
        if refused is not None:
            self._edge.respond(txn_id, refused)
            return
        if request.to.tag is not None:
            self._in_dialog(txn_id, request, source)
            return
        if self._edge.guard.user_banned(source.host, lambda: self.registrar.sender_of(request)):
            self._edge.ignore(txn_id, "banned_user")  # as for REGISTER: it learns nothing
            return
        checked = self.registrar.credentials(request, source.host, self._wall())
        if isinstance(checked, Rejection):
            if checked.why:
                self._edge.guard.refused(source.host, checked.label, checked.why)
            self._edge.respond(txn_id, checked.response)
            return
        if not self._control.up:
            self._unavailable(txn_id, request)
            return
        event, _ = event_of(request)
        call = SubscribeCall(
            origin=self._origin(request, source),
            subscription_id=os.urandom(8).hex(),
            action="create",
            event=event,
            request_uri=str(request.uri),
            from_uri=str(request.from_.uri),
            expires=min(requested_expires(request), MAX_EXPIRES),
            eventlist=supports_eventlist(request),
            credentials=checked,
        )
        self._spawn(self._create(txn_id, request, source, call))

    def _origin(self, request: SipRequest, source: Endpoint) -> Origin:
        return Origin(
            sidecar=self.name,
            source=source,
            user_agent=request.headers.get("User-Agent") or "",
            call_id=request.call_id,
        )

    async def _create(
        self, txn_id: TransactionId, request: SipRequest, source: Endpoint, call: SubscribeCall
    ) -> None:
        try:
            status, reason, grant = await self._control.subscribe(call)
        except ControlUnavailableError:
            self._unavailable(txn_id, request)
            self._edge.flush()
            return
        try:
            self._created(txn_id, request, source, call, status, reason, grant)
        except Exception as exc:
            self._edge.internal_error(exc)
        self._edge.flush()

    def _created(
        self,
        txn_id: TransactionId,
        request: SipRequest,
        source: Endpoint,
        call: SubscribeCall,
        status: int,
        reason: str,
        grant: Grant | None,
    ) -> None:
        user = call.credentials.username if call.credentials is not None else ""
        if status == 401:
            self._edge.guard.failed(source.host, user)
            challenge = self.registrar.challenge(
                request, source.host, self._wall(), user=self.registrar.sender_of(request)
            )
            self._edge.respond(txn_id, challenge)
            return
        self._edge.guard.succeeded(source.host, user)
        if grant is None:
            headers = [("Require", "eventlist")] if status == 421 else []
            self._edge.respond(
                txn_id,
                make_response(
                    request,
                    status,
                    reason or None,
                    to_tag=self.registrar.tag_for(request),
                    headers=headers,
                ),
            )
            return
        now = self._clock()
        # A new SUBSCRIBE with Expires: 0 is a fetch (RFC 6665 §4.4.3): one NOTIFY, then over.
        fetch = requested_expires(request) == 0
        sub = self.table.create(
            request,
            source,
            grant,
            now,
            sub_id=call.subscription_id,
            local_tag=self._config.tag(),
            local_contact=self._config.contact(source.transport),
        )
        self._edge.respond(txn_id, self.table.accepted(request, sub, 0 if fetch else grant.expires))
        if fetch:
            self._end(sub, "timeout")
        else:
            self._notify(sub)

    def _in_dialog(self, txn_id: TransactionId, request: SipRequest, source: Endpoint) -> None:
        sub = self.table.find(request)
        if sub is None:
            # RFC 6665 §4.2.1.2: a refresh of a subscription that does not exist (any more).
            self._edge.respond(txn_id, make_response(request, 481, to_tag=request.to.tag or None))
            return
        if not sub.dialog.accept_remote_cseq(request):
            self._edge.respond(txn_id, make_response(request, 500, "Out of order CSeq"))
            return
        expires = min(requested_expires(request), MAX_EXPIRES)
        self._edge.respond(txn_id, self.table.accepted(request, sub, expires))
        if expires == 0:
            self._end(sub, "timeout")
            return
        self.table.refresh(sub, request, expires, self._clock())
        self._notify(sub)
        if self._control.up:
            call = SubscribeCall(
                origin=self._origin(request, source),
                subscription_id=sub.id,
                action="refresh",
                event=sub.event,
                request_uri=str(sub.dialog.local_uri.uri),
                expires=expires,
                eventlist=bool(sub.list_uri),
                watcher=sub.watcher,
            )
            self._spawn(self._refreshed(sub, call))

    async def _refreshed(self, sub: Subscription, call: SubscribeCall) -> None:
        """The control plane decides a refresh again: a watch it no longer allows ends."""
        try:
            status, _reason, grant = await self._control.subscribe(call)
        except ControlUnavailableError:
            return
        if sub.terminated:
            return
        if status == 200 and grant is not None and grant.resources != sub.resources:
            # A buddy list changed since the subscription was made.
            self.table.set_resources(sub, grant.resources)
            self._notify(sub)
        elif status not in (200, 503):
            self._end(sub, "rejected", report=False)
        self._edge.flush()

    def _unavailable(self, txn_id: TransactionId, request: SipRequest) -> None:
        self._edge.respond(
            txn_id,
            make_response(
                request,
                503,
                to_tag=self.registrar.tag_for(request),
                headers=[("Retry-After", str(self._edge.retry_after()))],
            ),
        )

    # -- NOTIFY -------------------------------------------------------------------------------

    def _notify(self, sub: Subscription, reason: str | None = None) -> None:
        request = self.table.next_notify(
            sub, self._clock(), self._config.via(sub.dest.transport), reason=reason
        )
        if request is None:
            return
        txn_id = self._edge.send_request(request, sub.dest)
        if txn_id is None:
            self.table.answered(sub, 503)
            return
        self.notifies_sent += 1
        self._notifies[txn_id] = sub.id

    def _end(self, sub: Subscription, reason: str, *, report: bool = True) -> None:
        """Final NOTIFY (``terminated;reason=...``), then forget the subscription."""
        sub.in_flight = False  # the final NOTIFY goes whatever is pending
        self._notify(sub, reason)
        self.table.remove(sub)
        if report:
            self._report_end(sub)

    def _report_end(self, sub: Subscription) -> None:
        if not self._control.up:
            return
        call = SubscribeCall(
            origin=Origin(
                sidecar=self.name, source=sub.dest, user_agent="", call_id=sub.dialog.call_id
            ),
            subscription_id=sub.id,
            action="end",
            event=sub.event,
            watcher=sub.watcher,
        )

        async def report() -> None:
            with contextlib.suppress(ControlUnavailableError):
                await self._control.subscribe(call)

        self._spawn(report())

    def response(self, txn_id: TransactionId | None, response: SipResponse) -> bool:
        """A response to one of our NOTIFYs (True: it was ours)."""
        if txn_id is None or txn_id not in self._notifies:
            return False
        if response.status < 200:
            return True
        self._answered(txn_id, response.status)
        return True

    def transaction_timeout(self, txn_id: TransactionId) -> bool:
        if txn_id not in self._notifies:
            return False
        self._answered(txn_id, 408)
        return True

    def transaction_ended(self, txn_id: TransactionId) -> None:
        self._notifies.pop(txn_id, None)

    def _answered(self, txn_id: TransactionId, status: int) -> None:
        sub_id = self._notifies.pop(txn_id)
        sub = self.table.subscriptions.get(sub_id)
        if sub is None:
            return
        if self.table.answered(sub, status):
            self._notify(sub)
        elif sub.terminated:
            _log.debug("subscription %s ended: NOTIFY answered %d", sub.id, status)
            self._report_end(sub)

    # -- the states -------------------------------------------------------------------------

    def apply(self, item: StatesItem) -> None:
        snapshot, change, revoked = item
        if snapshot is not None:
            for sub_id in revoked:
                sub = self.table.subscriptions.get(sub_id)
                if sub is not None:
                    self._end(sub, "rejected", report=False)
            for sub in self.table.replace_states(snapshot):
                self._notify(sub)
        elif change is not None:
            for sub in self.table.update(change):
                self._notify(sub)
        self._edge.flush()

    async def _watch_loop(self) -> None:
        while True:
            await self._control.wait_up()
            try:
                async for item in self._control.watch_states(
                    lambda: list(self.table.subscriptions.values())
                ):
                    try:
                        self.apply(item)
                    except Exception as exc:
                        self._edge.internal_error(exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.debug("state watch ended: %s", exc)
            await asyncio.sleep(1.0)

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                for sub in self.table.expired(self._clock()):
                    self._end(sub, "timeout")
                self._edge.flush()
            except Exception as exc:
                self._edge.internal_error(exc)
