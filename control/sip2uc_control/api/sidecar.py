"""SidecarService: the sidecars' sessions and the streams their handsets' requests ride.

Messages are read and made by `sidecar_wire`; this module speaks the control plane's types.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import grpc
from sip2uc.v1 import sidecar_pb2, sidecar_pb2_grpc
from sip2uc_core.sip.digest import DigestError

from ..auth import Authenticator, CredentialRefused, Principal, SidecarPrincipal
from ..calls import InviteInput, InviteOutcome, LegReport
from ..calls.model import Call, CallState
from ..core import ControlCore
from ..enrollments import name_problem
from ..errors import AlreadyExists, PermissionDenied, Unauthenticated
from ..messaging.model import Verdict
from ..registrar import Outcome, RegisterDecision
from ..sidecars import (
    BansReport,
    CommandResult,
    Heartbeat,
    MessageDelivered,
    SessionEnded,
    SessionItem,
    SessionReplaced,
)
from ..trunk_registry import TrunkReports
from ..user_states import DialogView, dialog_of
from . import sidecar_wire, streams
from .sidecar_wire import ByeInput, CancelInput
from .status import streaming, unary

log = logging.getLogger(__name__)
Ctx = grpc.aio.ServicerContext[Any, Any]

_SERVICE = "sip2uc.v1.SidecarService"
# Credentials that cannot be read are answered like wrong ones.
_UNREADABLE_REGISTER = RegisterDecision(Outcome.UNAUTHORIZED, "Unauthorized")
_UNREADABLE_MESSAGE = Verdict(status=407, reason="Proxy Authentication Required")
_UNREADABLE_INVITE = InviteOutcome(
    disposition="unauthorized", status=407, reason="Proxy Authentication Required"
)


def _log_failure(sidecar: str, result: CommandResult) -> None:
    if not result.ok:
        log.warning("sidecar %s: command %s failed: %s", sidecar, result.command_id, result.error)


class SidecarServicer(sidecar_pb2_grpc.SidecarServiceServicer):
    def __init__(self, core: ControlCore, auth: Authenticator) -> None:
        self.core = core
        self.auth = auth
        #: The control plane is stopping: sessions that end now are no news.
        self.stopping = False

    def push_settings(self) -> None:
        """Send every connected sidecar its settings (after an admin change)."""
        self.core.sidecars.broadcast_settings(self.core.sidecar_settings)

    async def Connect(
        self, request_iterator: AsyncIterator[sidecar_pb2.ConnectRequest], context: Ctx
    ) -> AsyncIterator[sidecar_pb2.ConnectResponse]:
        iterator = request_iterator.__aiter__()
        try:
            first = await asyncio.wait_for(iterator.__anext__(), timeout=10)
        except (StopAsyncIteration, TimeoutError):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a hello"
            )
            return
        info = sidecar_wire.sidecar_info(first, self.core.clock())
        if info is None:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a hello with a name"
            )
            return
        problem = name_problem(info.name)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"hello.name: {problem}")
            return
        principal = await self._principal(context)
        refused = self.auth.sidecar_refusal(principal, info.name)
        if refused is not None:
            log.warning("sidecar %s refused: %s", info.name, refused)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, refused)
            return
        try:
            queue = await self.core.sidecars.connected(info)
        except AlreadyExists as exc:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
            return
        if isinstance(principal, SidecarPrincipal):
            await self.core.enrollments.connected(info.name)
        log.info("sidecar %s connected (%s)", info.name, ", ".join(info.sip_listeners))
        # Calls it carries that we lost (we restarted): taken back or ended; the commands
        # wait in its queue for the welcome below.
        self.core.calls.adopt(info.name, sidecar_wire.live_legs(first))

        async def read_loop() -> None:
            async for message in iterator:
                info.last_seen = self.core.clock()
                report = sidecar_wire.session_report(message)
                if isinstance(report, Heartbeat):
                    self.core.sidecars.heartbeat(
                        info, report.active_legs, report.relay_ports_in_use
                    )
                elif isinstance(report, BansReport):
                    info.bans = report
                elif isinstance(report, TrunkReports):
                    self.core.trunks.reported(info.name, report.reports)
                elif isinstance(report, MessageDelivered):
                    await self.core.messages.delivered(
                        info.name, report.delivery_id, report.status, report.reason
                    )
                elif report is not None:
                    for result in report:
                        _log_failure(info.name, result)

        reader = asyncio.create_task(read_loop())
        getter: asyncio.Future[SessionItem] | None = None
        ended: SessionEnded | None = None
        try:
            yield sidecar_wire.welcome(self.core.sidecar_settings(info.name))
            while True:
                if queue.empty():
                    getter = asyncio.ensure_future(queue.get())
                    done, _ = await asyncio.wait(
                        {getter, reader}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if getter not in done:
                        break
                    items = [getter.result()]
                    getter = None
                else:
                    items = []
                # Everything queued while the previous message was being written leaves in
                # one message: one write per command capped the stream at a few hundred
                # commands a second and queued calls behind each other.
                while not queue.empty():
                    items.append(queue.get_nowait())
                ended = next((i for i in items if isinstance(i, SessionEnded)), None)
                if ended is not None:
                    break
                sending = [
                    item for item in items if not isinstance(item, (SessionReplaced, SessionEnded))
                ]
                if len(sending) < len(items):
                    break  # the same instance reconnected on a new stream
                for message in sidecar_wire.outgoing(sending, batched=info.batched_commands):
                    yield message
        finally:
            # The sidecar closed its side of the stream: it is stopping, and said so.
            left = reader.done() and not reader.cancelled() and reader.exception() is None
            # Cancel and await both: a pending getter would otherwise stay parked on the dead
            # queue, and an unretrieved reader exception is logged as "never retrieved".
            if getter is not None:
                getter.cancel()
            reader.cancel()
            for task in (getter, reader):
                if task is None:
                    continue
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception as exc:  # the sidecar's stream broke; the session ends either way
                    log.info("sidecar %s stream ended: %s", info.name, exc)
            self.core.sidecars.disconnected(info.name, queue, self.core.clock())
            if self.stopping:
                log.info("sidecar %s disconnected (the control plane is stopping)", info.name)
            elif ended is not None:
                log.info("sidecar %s disconnected (%s)", info.name, ended.reason)
            else:
                # Its handsets are unserved either way: worth a warning, and the reason.
                why = " (it stopped)" if left else ""
                log.warning("sidecar %s disconnected%s", info.name, why)
        if ended is not None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, ended.reason)

    async def _principal(self, context: Ctx) -> Principal:
        """The caller (the interceptor let it in; a revocation since is refused here)."""
        try:
            return self.auth.identify(context.invocation_metadata())
        except CredentialRefused as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            raise AssertionError("unreachable") from exc

    def _check(self, principal: Principal, sidecar: str) -> None:
        """Refuse a request made for another sidecar than the caller's own."""
        refused = self.auth.sidecar_refusal(principal, sidecar)
        if refused is None:
            return
        if isinstance(principal, SidecarPrincipal) and principal.name == sidecar:
            raise Unauthenticated(refused)  # revoked while the stream was open
        raise PermissionDenied(refused)

    async def RegisterStream(
        self, request_iterator: AsyncIterator[sidecar_pb2.RegisterStreamRequest], context: Ctx
    ) -> AsyncIterator[sidecar_pb2.RegisterStreamResponse]:
        """REGISTERs, many on one stream (see sidecar.proto and `streams`)."""
        principal = await self._principal(context)

        async def handle(call: sidecar_pb2.RegisterCall) -> sidecar_pb2.RegisterReply:
            return await self._register(call, principal)

        spec = streams.StreamSpec(
            service=_SERVICE,
            stream_method="RegisterStream",
            calls_of=sidecar_wire.register_stream_calls,
            handle=handle,
            error_reply=sidecar_wire.register_error,
            batch=sidecar_wire.register_batch,
        )
        async for response in streams.serve(spec, request_iterator, self.core.metrics.rpc_duration):
            yield response

    async def CallStream(
        self, request_iterator: AsyncIterator[sidecar_pb2.CallStreamRequest], context: Ctx
    ) -> AsyncIterator[sidecar_pb2.CallStreamResponse]:
        """`Invite`, `Cancel`, `Bye` and `ReportLeg` on one stream, in order per leg."""
        principal = await self._principal(context)

        async def handle(call: sidecar_pb2.CallStreamCall) -> sidecar_pb2.CallStreamReply:
            return await self._call(call, principal)

        spec = streams.StreamSpec(
            service=_SERVICE,
            stream_method="CallStream",
            calls_of=sidecar_wire.call_stream_calls,
            handle=handle,
            error_reply=sidecar_wire.call_error,
            batch=sidecar_wire.call_batch,
        )
        async for response in streams.serve(spec, request_iterator, self.core.metrics.rpc_duration):
            yield response

    async def _register(
        self, call: sidecar_pb2.RegisterCall, principal: Principal
    ) -> sidecar_pb2.RegisterReply:
        self._check(principal, call.request.origin.sidecar)
        try:
            request = sidecar_wire.register_input(call)
        except DigestError:
            return sidecar_wire.register_reply(call, _UNREADABLE_REGISTER, ())
        decision, bindings = await self.core.register(request)
        now = self.core.clock()
        device = decision.device
        mine = [b.contact(now) for b in bindings if device is not None and b.device_id == device.id]
        return sidecar_wire.register_reply(call, decision, mine)

    async def _call(
        self, call: sidecar_pb2.CallStreamCall, principal: Principal
    ) -> sidecar_pb2.CallStreamReply:
        try:
            request = sidecar_wire.call_request(call)
        except DigestError:
            self._check(principal, sidecar_wire.call_sidecar(call))
            return sidecar_wire.invite_reply(call, _UNREADABLE_INVITE)
        self._check(principal, request.sidecar)
        if isinstance(request, InviteInput):
            return sidecar_wire.invite_reply(call, await self.core.calls.invite(request))
        if isinstance(request, LegReport):
            await self.core.calls.report_leg(request)
        elif isinstance(request, ByeInput):
            await self.core.calls.bye(
                request.sidecar, request.leg_id, request.reason, request.stats
            )
        elif isinstance(request, CancelInput):
            await self.core.calls.cancel(request.sidecar, request.leg_id)
        return sidecar_wire.empty_reply(call)

    async def Message(
        self, request: sidecar_pb2.MessageRequest, context: Ctx
    ) -> sidecar_pb2.MessageResponse:
        """A handset's MESSAGE (RFC 3428): verified, checked and routed by the message hub."""
        principal = await self._principal(context)
        try:
            self._check(principal, request.origin.sidecar)
        except (PermissionDenied, Unauthenticated) as exc:
            code = (
                grpc.StatusCode.PERMISSION_DENIED
                if isinstance(exc, PermissionDenied)
                else grpc.StatusCode.UNAUTHENTICATED
            )
            await context.abort(code, str(exc))
            raise AssertionError("unreachable") from exc
        try:
            inp = sidecar_wire.message_input(request)
        except DigestError:
            return sidecar_wire.message_response(_UNREADABLE_MESSAGE)
        verdict = await self.core.messages.from_handset(inp)
        self.core.metrics.messages.add(1, {"origin": "handset", "outcome": str(verdict.status)})
        return sidecar_wire.message_response(verdict)

    # Reserved for subscriptions (BLF), not served yet. Sidecars do not call it: they answer a
    # handset's SUBSCRIBE 405 (with Allow) themselves.

    @unary
    async def Subscribe(
        self, request: sidecar_pb2.SubscribeRequest, context: Ctx
    ) -> sidecar_pb2.SubscribeResponse:
        """A handset's SUBSCRIBE, new, refreshed or ended (see `subscriptions`)."""
        principal = await self._principal(context)
        self._check(principal, request.origin.sidecar)
        try:
            inp, creds, watcher = sidecar_wire.subscribe_input(request)
        except DigestError:
            return sidecar_pb2.SubscribeResponse(status=401, reason="Unauthorized")
        return sidecar_wire.subscribe_reply(self.core.subscribe(inp, creds, watcher))

    @streaming
    async def WatchStates(
        self, request: sidecar_pb2.WatchStatesRequest, context: Ctx
    ) -> AsyncIterator[sidecar_pb2.WatchStatesResponse]:
        """One stream per sidecar: every user's state, then each change (presence or a call
        the user takes part in), coalesced per user while the stream is busy."""
        principal = await self._principal(context)
        self._check(principal, request.sidecar)
        changed: asyncio.Queue[None] = asyncio.Queue(1)
        pending: dict[str, list[DialogView]] = {}

        def mark(user_id: str, ended: DialogView | None = None) -> None:
            ends = pending.setdefault(user_id, [])
            if ended is not None:
                ends.append(ended)
            if changed.empty():
                changed.put_nowait(None)

        async def presence_changes() -> None:
            async for item in self.core.presence.watch(None, None, list):
                if item.change is not None:
                    mark(item.change.user)

        async def call_changes() -> None:
            queue = self.core.calls.watch()
            try:
                while (call := await queue.get()) is not None:
                    for user_id in _users_of(call):
                        view = dialog_of(call, user_id, self.core.users.get)
                        ended = view if view is not None and call.state is CallState.ENDED else None
                        mark(user_id, ended)
            finally:
                self.core.calls.unwatch(queue)

        revoked = self.core.reannounced(request.sidecar, sidecar_wire.held_subscriptions(request))
        pumps = [
            asyncio.create_task(presence_changes()),
            asyncio.create_task(call_changes()),
        ]
        try:
            yield sidecar_wire.states_snapshot(
                [self.core.user_state(u.id) for u in self.core.users.all()], revoked
            )
            while True:
                await changed.get()
                batch, pending = pending, {}
                for user_id, ended in batch.items():
                    view = self.core.user_state(user_id)
                    live = {d.id for d in view.dialogs}
                    extra = tuple(d for d in ended if d.id not in live)
                    if extra:
                        view = replace(view, dialogs=view.dialogs + extra)
                    yield sidecar_wire.state_change(view)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    # -- the shared address book ----------------------------------------------------------------

    @streaming
    async def WatchPhonebook(
        self, request: sidecar_pb2.WatchPhonebookRequest, context: Ctx
    ) -> AsyncIterator[sidecar_pb2.WatchPhonebookResponse]:
        """The book now, then after every change (see `phonebook.PhonebookFeed`)."""
        principal = await self._principal(context)
        self._check(principal, request.sidecar)
        async for snapshot in self.core.phonebook.watch():
            yield sidecar_wire.phonebook_snapshot(snapshot)

    @unary
    async def VerifyDigest(
        self, request: sidecar_pb2.VerifyDigestRequest, context: Ctx
    ) -> sidecar_pb2.VerifyDigestResponse:
        principal = await self._principal(context)
        self._check(principal, request.origin.sidecar)
        try:
            _sidecar, credentials, method, source = sidecar_wire.verify_digest_input(request)
        except DigestError:
            return sidecar_pb2.VerifyDigestResponse(verified=False)
        verified = self.core.verify_digest(credentials, method or "GET", source)
        return sidecar_pb2.VerifyDigestResponse(verified=verified)


def _users_of(call: Call) -> set[str]:
    users = {leg.user_id for leg in call.legs.values() if leg.user_id}
    users.update(u for u in (call.caller_user, call.callee_user) if u)
    return users
