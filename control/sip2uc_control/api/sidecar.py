"""SidecarService: the sidecars' session stream and the RPCs handset requests become."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sip2uc.v1 import common_pb2, sidecar_pb2, sidecar_pb2_grpc
from sip2uc_core.sip.digest import Algorithm, Credentials, DigestError

from ..calls import InviteInput, LegReport
from ..core import ControlCore
from ..errors import AlreadyExists, FieldViolation, InvalidArgument
from ..registrar import ContactRequest, Outcome, RegisterInput
from ..settings import ServerSettings
from ..sidecars import SESSION_REPLACED, SidecarInfo
from . import streams
from .convert import (
    LEG_STATE_FROM_PB,
    TRANSPORT_FROM_PB,
    command_to_pb,
    direction_from_pb,
    media_from_pb,
    stats_from_pb,
)
from .status import unary

log = logging.getLogger(__name__)
Ctx = grpc.aio.ServicerContext[Any, Any]

_DISPOSITIONS = {
    "routing": sidecar_pb2.INVITE_DISPOSITION_ROUTING,
    "reject": sidecar_pb2.INVITE_DISPOSITION_REJECT,
    "unauthorized": sidecar_pb2.INVITE_DISPOSITION_UNAUTHORIZED,
    "feedback": sidecar_pb2.INVITE_DISPOSITION_FEEDBACK_TONE,
}

_OUTCOMES = {
    Outcome.OK: sidecar_pb2.REGISTER_OUTCOME_OK,
    Outcome.UNAUTHORIZED: sidecar_pb2.REGISTER_OUTCOME_UNAUTHORIZED,
    Outcome.FORBIDDEN: sidecar_pb2.REGISTER_OUTCOME_FORBIDDEN,
    Outcome.INTERVAL_TOO_BRIEF: sidecar_pb2.REGISTER_OUTCOME_INTERVAL_TOO_BRIEF,
    Outcome.TOO_MANY_BINDINGS: sidecar_pb2.REGISTER_OUTCOME_TOO_MANY_BINDINGS,
    Outcome.OUT_OF_ORDER: sidecar_pb2.REGISTER_OUTCOME_OUT_OF_ORDER,
}


def credentials_from_pb(c: sidecar_pb2.DigestCredentials) -> Credentials:
    """Raises DigestError for an unknown algorithm or a malformed nonce count."""
    if c.nc and (len(c.nc) != 8 or any(ch not in "0123456789abcdefABCDEF" for ch in c.nc)):
        raise DigestError("nc must be 8 hex digits")
    return Credentials(
        username=c.username,
        realm=c.realm,
        nonce=c.nonce,
        uri=c.uri,
        response=c.response,
        algorithm=Algorithm.parse(c.algorithm or "MD5"),
        qop=c.qop or None,
        nc=c.nc or None,
        cnonce=c.cnonce or None,
    )


def sidecar_settings(
    settings: ServerSettings, sidecar: str, trunks: list[tuple[str, int]]
) -> sidecar_pb2.SidecarSettings:
    policy = settings.policy(sidecar)
    return sidecar_pb2.SidecarSettings(
        realm=settings.realm,
        domain=settings.sip_domain,
        allowed_networks=list(policy.allowed_networks),
        trunk_sources=[sidecar_pb2.TrunkSource(network=n, port=p) for n, p in trunks],
        ban_threshold=settings.ban_threshold,
        ban_window_seconds=settings.ban_window_seconds,
        ban_seconds=settings.ban_seconds,
        channel_limit=settings.channel_limit(sidecar),
        media_timeout_seconds=settings.media_timeout_seconds,
        min_expires=settings.min_expires,
        max_expires=settings.max_expires,
    )


_SERVICE = "sip2uc.v1.SidecarService"


def _log_failure(sidecar: str, result: sidecar_pb2.CommandResult) -> None:
    if not result.ok:
        log.warning("sidecar %s: command %s failed: %s", sidecar, result.command_id, result.error)


def _register_calls(
    message: sidecar_pb2.RegisterStreamRequest,
) -> list[streams.StreamedCall[sidecar_pb2.RegisterCall]]:
    return [
        streams.StreamedCall(c, c.correlation_id, c.traceparent, c.tracestate, "Register")
        for c in message.calls
    ]


_CALL_METHODS = {
    "invite": "Invite",
    "cancel": "Cancel",
    "bye": "Bye",
    "report_leg": "ReportLeg",
}


def _call_calls(
    message: sidecar_pb2.CallStreamRequest,
) -> list[streams.StreamedCall[sidecar_pb2.CallStreamCall]]:
    out = []
    for c in message.calls:
        kind = c.WhichOneof("request")
        leg_id = getattr(c, kind).leg_id if kind is not None else ""
        out.append(
            streams.StreamedCall(
                c,
                c.correlation_id,
                c.traceparent,
                c.tracestate,
                _CALL_METHODS.get(kind or "", "CallStream"),
                # A leg's calls in order: its RINGING before its ANSWERED, its Invite before
                # its Cancel. Leg ids are unique per sidecar, and a stream is one sidecar's.
                key=leg_id or None,
                timeout=c.timeout_ms / 1000,
            )
        )
    return out


class SidecarServicer(sidecar_pb2_grpc.SidecarServiceServicer):
    def __init__(self, core: ControlCore) -> None:
        self.core = core
        self._register_spec = streams.StreamSpec(
            service=_SERVICE,
            stream_method="RegisterStream",
            calls_of=_register_calls,
            handle=self._register_reply,
            error_reply=lambda cid, code, message: sidecar_pb2.RegisterReply(
                correlation_id=cid, error_code=code, error_message=message
            ),
            batch=lambda replies: sidecar_pb2.RegisterStreamResponse(replies=replies),
        )
        self._call_spec = streams.StreamSpec(
            service=_SERVICE,
            stream_method="CallStream",
            calls_of=_call_calls,
            handle=self._call_reply,
            error_reply=lambda cid, code, message: sidecar_pb2.CallStreamReply(
                correlation_id=cid, error_code=code, error_message=message
            ),
            batch=lambda replies: sidecar_pb2.CallStreamResponse(replies=replies),
        )

    def trunk_sources(self, sidecar: str) -> list[tuple[str, int]]:
        out: set[tuple[str, int]] = set()
        for user in self.core.users.index.by_id.values():
            for dev in user.devices:
                if dev.trunk is not None and dev.trunk.sidecar in ("", sidecar):
                    out.add((dev.trunk.source_network, dev.trunk.source_port))
        return sorted(out)

    def settings_for(self, sidecar: str) -> sidecar_pb2.SidecarSettings:
        return sidecar_settings(self.core.settings.current, sidecar, self.trunk_sources(sidecar))

    def push_settings(self) -> None:
        """Send every connected sidecar its settings (after an admin change)."""
        self.core.sidecars.broadcast(
            lambda name: sidecar_pb2.ConnectResponse(settings=self.settings_for(name))
        )

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
        if first.WhichOneof("payload") != "hello" or not first.hello.name:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a hello with a name"
            )
            return
        hello = first.hello
        now = self.core.clock()
        info = SidecarInfo(
            name=hello.name,
            site=hello.site,
            sip_listeners=[
                f"{common_pb2.Transport.Name(listener.transport).removeprefix('TRANSPORT_').lower()} "
                f"{listener.address.host}:{listener.address.port}"
                for listener in hello.sip_listeners
            ],
            rtp=f"{hello.rtp_host}:{hello.rtp_port_min}-{hello.rtp_port_max}",
            capacity=hello.capacity,
            version=hello.version,
            instance_id=hello.instance_id,
            connected=True,
            connect_time=now,
            last_seen=now,
        )
        try:
            queue = await self.core.sidecars.connected(info)
        except AlreadyExists as exc:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
            return
        log.info("sidecar %s connected (%s)", info.name, ", ".join(info.sip_listeners))

        async def read_loop() -> None:
            async for message in iterator:
                info.last_seen = self.core.clock()
                kind = message.WhichOneof("payload")
                if kind == "heartbeat":
                    self.core.sidecars.heartbeat(
                        info, message.heartbeat.active_legs, message.heartbeat.relay_ports_in_use
                    )
                elif kind == "result":
                    _log_failure(info.name, message.result)
                elif kind == "results":
                    for result in message.results.results:
                        _log_failure(info.name, result)

        reader = asyncio.create_task(read_loop())
        batched = hello.batched_commands
        getter: asyncio.Future[Any] | None = None
        try:
            welcome = sidecar_pb2.SidecarWelcome(
                settings=self.settings_for(info.name), server_time=Timestamp()
            )
            welcome.server_time.GetCurrentTime()
            yield sidecar_pb2.ConnectResponse(welcome=welcome)
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
                if any(item is SESSION_REPLACED for item in items):
                    break  # the same instance reconnected on a new stream
                messages = [
                    item if isinstance(item, sidecar_pb2.ConnectResponse) else command_to_pb(item)
                    for item in items
                ]
                if batched and len(messages) > 1:
                    yield sidecar_pb2.ConnectResponse(
                        batch=sidecar_pb2.CommandBatch(commands=messages)
                    )
                else:
                    for message in messages:
                        yield message
        finally:
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
            log.warning("sidecar %s disconnected", info.name)

    @unary
    async def Register(
        self, request: sidecar_pb2.RegisterRequest, context: Ctx
    ) -> sidecar_pb2.RegisterResponse:
        return await self._register(request)

    async def RegisterStream(
        self, request_iterator: AsyncIterator[sidecar_pb2.RegisterStreamRequest], context: Ctx
    ) -> AsyncIterator[sidecar_pb2.RegisterStreamResponse]:
        """`Register` for many REGISTERs on one stream (see sidecar.proto and `streams`)."""
        async for response in streams.serve(
            self._register_spec, request_iterator, self.core.metrics.rpc_duration
        ):
            yield response

    async def CallStream(
        self, request_iterator: AsyncIterator[sidecar_pb2.CallStreamRequest], context: Ctx
    ) -> AsyncIterator[sidecar_pb2.CallStreamResponse]:
        """`Invite`, `Cancel`, `Bye` and `ReportLeg` on one stream, in order per leg."""
        async for response in streams.serve(
            self._call_spec, request_iterator, self.core.metrics.rpc_duration
        ):
            yield response

    async def _register_reply(self, call: sidecar_pb2.RegisterCall) -> sidecar_pb2.RegisterReply:
        return sidecar_pb2.RegisterReply(
            correlation_id=call.correlation_id, response=await self._register(call.request)
        )

    async def _call_reply(self, call: sidecar_pb2.CallStreamCall) -> sidecar_pb2.CallStreamReply:
        reply = sidecar_pb2.CallStreamReply(correlation_id=call.correlation_id)
        kind = call.WhichOneof("request")
        if kind == "invite":
            reply.invite.CopyFrom(await self._invite(call.invite))
        elif kind == "report_leg":
            await self._report_leg(call.report_leg)
            reply.report_leg.SetInParent()
        elif kind == "bye":
            await self._bye(call.bye)
            reply.bye.SetInParent()
        elif kind == "cancel":
            await self._cancel(call.cancel)
            reply.cancel.SetInParent()
        else:
            raise InvalidArgument(FieldViolation("request", "one of the call RPCs is required"))
        return reply

    async def _register(self, request: sidecar_pb2.RegisterRequest) -> sidecar_pb2.RegisterResponse:
        origin = request.origin
        if not origin.sidecar:
            raise InvalidArgument(FieldViolation("origin.sidecar", "required"))
        try:
            creds = credentials_from_pb(request.credentials)
        except DigestError:
            return sidecar_pb2.RegisterResponse(
                outcome=sidecar_pb2.REGISTER_OUTCOME_UNAUTHORIZED, reason="Unauthorized"
            )
        transport = TRANSPORT_FROM_PB.get(origin.transport)
        if transport is None:
            raise InvalidArgument(FieldViolation("origin.transport", "required"))
        inp = RegisterInput(
            credentials=creds,
            aor=request.aor,
            contacts=tuple(
                ContactRequest(
                    uri=c.uri,
                    expires=c.expires,
                    q_milli=c.q_milli or 1000,
                    instance_id=c.instance_id,
                )
                for c in request.contacts
            ),
            remove_all=request.remove_all,
            cseq=request.cseq,
            call_id=origin.call_id,
            source_host=origin.source.host,
            source_port=origin.source.port,
            transport=transport.value,
            sidecar=origin.sidecar,
            user_agent=origin.user_agent,
        )
        decision, bindings = await self.core.register(inp)
        now = self.core.clock()
        mine = [
            b for b in bindings if decision.device is not None and b.device_id == decision.device.id
        ]
        return sidecar_pb2.RegisterResponse(
            outcome=_OUTCOMES[decision.outcome],
            bindings=[
                sidecar_pb2.ContactBinding(
                    uri=b.contact_uri,
                    expires=max(0, int(b.expire_time - now + 0.5)),
                    q_milli=b.q_milli,
                    instance_id=b.instance_id,
                )
                for b in mine
            ],
            min_expires=decision.min_expires,
            reason=decision.reason,
        )

    @unary
    async def Invite(
        self, request: sidecar_pb2.InviteRequest, context: Ctx
    ) -> sidecar_pb2.InviteResponse:
        return await self._invite(request)

    @unary
    async def Cancel(
        self, request: sidecar_pb2.CancelRequest, context: Ctx
    ) -> sidecar_pb2.CancelResponse:
        await self._cancel(request)
        return sidecar_pb2.CancelResponse()

    @unary
    async def Bye(self, request: sidecar_pb2.ByeRequest, context: Ctx) -> sidecar_pb2.ByeResponse:
        await self._bye(request)
        return sidecar_pb2.ByeResponse()

    @unary
    async def ReportLeg(
        self, request: sidecar_pb2.ReportLegRequest, context: Ctx
    ) -> sidecar_pb2.ReportLegResponse:
        await self._report_leg(request)
        return sidecar_pb2.ReportLegResponse()

    async def _invite(self, request: sidecar_pb2.InviteRequest) -> sidecar_pb2.InviteResponse:
        origin = request.origin
        if not origin.sidecar or not request.leg_id:
            raise InvalidArgument(
                [
                    FieldViolation(f, "required")
                    for f, v in (("origin.sidecar", origin.sidecar), ("leg_id", request.leg_id))
                    if not v
                ]
            )
        creds: Credentials | None = None
        if request.HasField("credentials"):
            try:
                creds = credentials_from_pb(request.credentials)
            except DigestError:
                return sidecar_pb2.InviteResponse(
                    disposition=sidecar_pb2.INVITE_DISPOSITION_UNAUTHORIZED,
                    status=407,
                    reason="Proxy Authentication Required",
                )
        outcome = await self.core.calls.invite(
            InviteInput(
                sidecar=origin.sidecar,
                leg_id=request.leg_id,
                credentials=creds,
                source_host=origin.source.host,
                source_port=origin.source.port,
                request_uri=request.request_uri,
                from_uri=request.from_uri,
                from_display_name=request.from_display_name,
                to_uri=request.to_uri,
                offer=media_from_pb(request.offer) if request.HasField("offer") else None,
            )
        )
        return sidecar_pb2.InviteResponse(
            disposition=_DISPOSITIONS[outcome.disposition],
            call_id=outcome.call_id,
            status=outcome.status,
            reason=outcome.reason,
            retry_after=outcome.retry_after,
            tone=sidecar_pb2.FEEDBACK_TONE_CONFIRM
            if outcome.tone_ok
            else sidecar_pb2.FEEDBACK_TONE_ERROR,
        )

    async def _cancel(self, request: sidecar_pb2.CancelRequest) -> None:
        await self.core.calls.cancel(request.origin.sidecar, request.leg_id)

    async def _bye(self, request: sidecar_pb2.ByeRequest) -> None:
        await self.core.calls.bye(
            request.origin.sidecar,
            request.leg_id,
            request.reason,
            tuple(stats_from_pb(s) for s in request.stats),
        )

    async def _report_leg(self, request: sidecar_pb2.ReportLegRequest) -> None:
        await self.core.calls.report_leg(
            LegReport(
                sidecar=request.sidecar,
                call_id=request.call_id,
                leg_id=request.leg_id,
                state=LEG_STATE_FROM_PB.get(request.state),
                status=request.status,
                reason=request.reason,
                media=media_from_pb(request.media) if request.HasField("media") else None,
                dtmf_digits=request.dtmf_digits,
                stats=tuple(stats_from_pb(s) for s in request.stats),
                direction=direction_from_pb(request.direction),
            )
        )

    # Reserved for short messages and subscriptions (BLF), not served yet. Sidecars do not call
    # these: they answer a handset's MESSAGE and SUBSCRIBE 405 (with Allow) themselves.

    async def Message(
        self, request: sidecar_pb2.MessageRequest, context: Ctx
    ) -> sidecar_pb2.MessageResponse:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "messaging is not available on this control plane"
        )
        raise AssertionError("unreachable")

    async def Subscribe(
        self, request: sidecar_pb2.SubscribeRequest, context: Ctx
    ) -> sidecar_pb2.SubscribeResponse:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "subscriptions are not available on this control plane"
        )
        raise AssertionError("unreachable")
