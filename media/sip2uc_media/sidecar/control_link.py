"""The sidecar's link to the control plane: the `Connect` session and the unary RPCs.

This is the one place where generated protobuf types meet the sidecar's own types: everything
else in the sidecar speaks `registrar` dataclasses and `EdgeSettings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import grpc
from opentelemetry import propagate
from sip2uc.v1 import common_pb2, sidecar_pb2, sidecar_pb2_grpc
from sip2uc_core.sip.digest import Credentials
from sip2uc_core.sip.transaction import Destination

from ..b2bua.actions import ByeRpc, CancelRpc, InviteRpc, LegState, ReportLeg, Tone
from ..b2bua.legs import CreateLeg, Disposition, InviteResult
from ..b2bua.offer_answer import CodecSpec, MediaSpec
from ..rtp.relay import Direction
from ..transport.base import TransportKind
from .protection import BanPolicy
from .registrar import (
    ContactSpec,
    Origin,
    RegisterAttempt,
    RegisterOutcome,
    RegisterResult,
)

__all__ = [
    "BatchedStream",
    "CallStream",
    "ControlLink",
    "ControlUnavailableError",
    "EdgeSettings",
    "HelloInfo",
    "RegisterStream",
    "backoff_delay",
]

_log = logging.getLogger(__name__)

VERSION = "0.1.0"
UNSUPPORTED = "not supported by this sidecar"


class ControlUnavailableError(Exception):
    """The control plane cannot be asked right now; the handset gets 503 + Retry-After."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeSettings:
    """The `SidecarSettings` the SIP edge uses, with defaults for before the first welcome."""

    realm: str = "sip2uc"
    domain: str = ""
    allowed_networks: tuple[str, ...] = ()
    ban: BanPolicy = field(default_factory=BanPolicy)
    min_expires: int = 60
    max_expires: int = 3600
    #: Trunk sources (network, port or 0) whose requests are not challenged.
    trunk_sources: tuple[tuple[str, int], ...] = ()
    channel_limit: int = 0  # 0: only the relay's port range limits
    media_timeout: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class HelloInfo:
    name: str
    site: str
    listeners: tuple[tuple[TransportKind, str, int], ...]
    rtp_host: str
    rtp_ports: tuple[int, int]
    capacity: int
    instance_id: str


def backoff_delay(
    attempt: int, rng: random.Random, *, first: float = 0.5, cap: float = 30.0
) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, never above `cap`."""
    ceiling = min(cap, first * float(1 << min(attempt, 16)))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


_TRANSPORTS = {
    TransportKind.UDP: common_pb2.TRANSPORT_UDP,
    TransportKind.TCP: common_pb2.TRANSPORT_TCP,
    TransportKind.TLS: common_pb2.TRANSPORT_TLS,
}
_OUTCOMES = {
    sidecar_pb2.REGISTER_OUTCOME_OK: RegisterOutcome.OK,
    sidecar_pb2.REGISTER_OUTCOME_UNAUTHORIZED: RegisterOutcome.UNAUTHORIZED,
    sidecar_pb2.REGISTER_OUTCOME_FORBIDDEN: RegisterOutcome.FORBIDDEN,
    sidecar_pb2.REGISTER_OUTCOME_INTERVAL_TOO_BRIEF: RegisterOutcome.INTERVAL_TOO_BRIEF,
    sidecar_pb2.REGISTER_OUTCOME_TOO_MANY_BINDINGS: RegisterOutcome.TOO_MANY_BINDINGS,
    sidecar_pb2.REGISTER_OUTCOME_OUT_OF_ORDER: RegisterOutcome.OUT_OF_ORDER,
}


def settings_from_proto(message: sidecar_pb2.SidecarSettings, base: EdgeSettings) -> EdgeSettings:
    """Zero fields keep the current value (proto3 cannot tell "unset" from 0)."""
    ban = BanPolicy(
        threshold=message.ban_threshold or base.ban.threshold,
        window=float(message.ban_window_seconds or base.ban.window),
        ban_seconds=float(message.ban_seconds or base.ban.ban_seconds),
    )
    return EdgeSettings(
        realm=message.realm or base.realm,
        domain=message.domain or base.domain,
        allowed_networks=tuple(message.allowed_networks),
        ban=ban,
        min_expires=message.min_expires or base.min_expires,
        max_expires=message.max_expires or base.max_expires,
        trunk_sources=tuple((t.network, t.port) for t in message.trunk_sources),
        channel_limit=message.channel_limit or base.channel_limit,
        media_timeout=float(message.media_timeout_seconds or base.media_timeout),
    )


# -- calls: domain <-> sidecar.proto (docs/calls.md) ----------------------------------------------

_DIRECTIONS = {
    Direction.SENDRECV: common_pb2.MEDIA_DIRECTION_SENDRECV,
    Direction.SENDONLY: common_pb2.MEDIA_DIRECTION_SENDONLY,
    Direction.RECVONLY: common_pb2.MEDIA_DIRECTION_RECVONLY,
    Direction.INACTIVE: common_pb2.MEDIA_DIRECTION_INACTIVE,
}
_DIRECTIONS_BACK = {v: k for k, v in _DIRECTIONS.items()}
_LEG_STATES = {
    LegState.TRYING: sidecar_pb2.LEG_STATE_TRYING,
    LegState.RINGING: sidecar_pb2.LEG_STATE_RINGING,
    LegState.EARLY_MEDIA: sidecar_pb2.LEG_STATE_EARLY_MEDIA,
    LegState.ANSWERED: sidecar_pb2.LEG_STATE_ANSWERED,
    LegState.FAILED: sidecar_pb2.LEG_STATE_FAILED,
    LegState.ENDED: sidecar_pb2.LEG_STATE_ENDED,
}
_DISPOSITIONS = {
    sidecar_pb2.INVITE_DISPOSITION_ROUTING: Disposition.ROUTING,
    sidecar_pb2.INVITE_DISPOSITION_REJECT: Disposition.REJECT,
    sidecar_pb2.INVITE_DISPOSITION_UNAUTHORIZED: Disposition.UNAUTHORIZED,
    sidecar_pb2.INVITE_DISPOSITION_FEEDBACK_TONE: Disposition.FEEDBACK_TONE,
}
_TRANSPORT_NAMES = {
    common_pb2.TRANSPORT_UDP: "UDP",
    common_pb2.TRANSPORT_TCP: "TCP",
    common_pb2.TRANSPORT_TLS: "TLS",
}


def media_to_proto(spec: MediaSpec) -> common_pb2.MediaEndpoint:
    return common_pb2.MediaEndpoint(
        rtp=common_pb2.SocketAddress(host=spec.host, port=spec.port),
        codecs=[
            common_pb2.Codec(
                name=c.name, payload_type=c.payload_type, clock_rate=c.clock_rate, fmtp=c.fmtp
            )
            for c in spec.codecs
        ],
        direction=_DIRECTIONS[spec.direction],
        ptime_ms=spec.ptime_ms,
    )


def media_from_proto(message: common_pb2.MediaEndpoint) -> MediaSpec:
    return MediaSpec(
        host=message.rtp.host,
        port=message.rtp.port,
        codecs=tuple(
            CodecSpec(c.name, c.payload_type, c.clock_rate or 8000, c.fmtp) for c in message.codecs
        ),
        direction=_DIRECTIONS_BACK.get(message.direction, Direction.SENDRECV),
        ptime_ms=message.ptime_ms or 20,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class InviteCall:
    """Everything the `Invite` RPC carries besides the leg's offer."""

    origin: Origin
    credentials: Credentials | None
    request_uri: str
    from_uri: str
    from_display_name: str
    to_uri: str


def credentials_to_proto(creds: Credentials, method: str) -> sidecar_pb2.DigestCredentials:
    return sidecar_pb2.DigestCredentials(
        username=creds.username,
        realm=creds.realm,
        nonce=creds.nonce,
        uri=creds.uri,
        response=creds.response,
        algorithm=creds.algorithm.value,
        cnonce=creds.cnonce or "",
        nc=creds.nc or "",
        qop=creds.qop or "",
        method=method,
    )


def invite_request(call: InviteCall, rpc: InviteRpc) -> sidecar_pb2.InviteRequest:
    request = sidecar_pb2.InviteRequest(
        origin=origin_to_proto(call.origin),
        leg_id=rpc.leg_id,
        request_uri=call.request_uri,
        from_uri=call.from_uri,
        from_display_name=call.from_display_name,
        to_uri=call.to_uri,
        offer=media_to_proto(rpc.offer),
    )
    if call.credentials is not None:
        request.credentials.CopyFrom(credentials_to_proto(call.credentials, "INVITE"))
    return request


def invite_result(response: sidecar_pb2.InviteResponse) -> InviteResult:
    disposition = _DISPOSITIONS.get(response.disposition)
    if disposition is None:
        # An answer this sidecar does not understand: refuse the call cleanly.
        return InviteResult(disposition=Disposition.REJECT, status=500)
    return InviteResult(
        disposition=disposition,
        call_id=response.call_id,
        status=response.status,
        reason=response.reason,
        retry_after=response.retry_after,
        tone=Tone.ERROR if response.tone == sidecar_pb2.FEEDBACK_TONE_ERROR else Tone.CONFIRM,
    )


def report_request(
    sidecar: str, report: ReportLeg, stats: list[sidecar_pb2.StreamStats] | None = None
) -> sidecar_pb2.ReportLegRequest:
    request = sidecar_pb2.ReportLegRequest(
        sidecar=sidecar,
        call_id=report.call_id,
        leg_id=report.leg_id,
        state=_LEG_STATES[report.state]
        if report.state is not None
        else sidecar_pb2.LEG_STATE_UNSPECIFIED,
        status=report.status,
        reason=report.reason,
        dtmf_digits=report.dtmf_digits,
        stats=stats or [],
        direction=_DIRECTIONS[report.direction]
        if report.direction is not None
        else common_pb2.MEDIA_DIRECTION_UNSPECIFIED,
    )
    if report.media is not None:
        request.media.CopyFrom(media_to_proto(report.media))
    return request


def create_leg_from_proto(message: sidecar_pb2.CreateLegCommand) -> CreateLeg:
    transport = _TRANSPORT_NAMES.get(message.transport, "UDP")
    return CreateLeg(
        call_id=message.call_id,
        leg_id=message.leg_id,
        request_uri=message.request_uri,
        destination=Destination(
            transport=transport, host=message.destination.host, port=message.destination.port
        ),
        from_uri=message.from_uri,
        from_display_name=message.from_display_name,
        to_uri=message.to_uri,
        peer_media=media_from_proto(message.peer_media) if message.HasField("peer_media") else None,
        ring_timeout=float(message.ring_timeout_seconds or 60),
        bridge_leg_id=message.bridge_leg_id,
    )


#: Executes one Connect-stream command; returns "" when done, else why not.
CommandHandler = Callable[[sidecar_pb2.ConnectResponse], Awaitable[str]]


def register_request(attempt: RegisterAttempt, origin: Origin) -> sidecar_pb2.RegisterRequest:
    creds = attempt.credentials
    return sidecar_pb2.RegisterRequest(
        origin=origin_to_proto(origin),
        credentials=sidecar_pb2.DigestCredentials(
            username=creds.username,
            realm=creds.realm,
            nonce=creds.nonce,
            uri=creds.uri,
            response=creds.response,
            algorithm=creds.algorithm.value,
            cnonce=creds.cnonce or "",
            nc=creds.nc or "",
            qop=creds.qop or "",
            method=attempt.method,
        ),
        aor=attempt.aor,
        contacts=[
            sidecar_pb2.ContactBinding(
                uri=c.uri, expires=c.expires, q_milli=c.q_milli, instance_id=c.instance_id
            )
            for c in attempt.contacts
        ],
        remove_all=attempt.remove_all,
        cseq=attempt.cseq,
    )


def origin_to_proto(origin: Origin) -> sidecar_pb2.RequestOrigin:
    return sidecar_pb2.RequestOrigin(
        sidecar=origin.sidecar,
        source=common_pb2.SocketAddress(host=origin.host, port=origin.port),
        transport=_TRANSPORTS[origin.transport],
        user_agent=origin.user_agent,
        call_id=origin.call_id,
    )


def register_result(response: sidecar_pb2.RegisterResponse) -> RegisterResult:
    outcome = _OUTCOMES.get(response.outcome)
    if outcome is None:
        # An outcome this sidecar does not know: refusing is the safe answer.
        outcome = RegisterOutcome.FORBIDDEN
    return RegisterResult(
        outcome=outcome,
        bindings=tuple(
            ContactSpec(b.uri, b.expires, b.q_milli or 1000, b.instance_id)
            for b in response.bindings
        ),
        min_expires=response.min_expires,
        reason=response.reason,
    )


def hello_to_proto(hello: HelloInfo) -> sidecar_pb2.SidecarHello:
    return sidecar_pb2.SidecarHello(
        name=hello.name,
        site=hello.site,
        sip_listeners=[
            sidecar_pb2.SipListener(
                transport=_TRANSPORTS[kind], address=common_pb2.SocketAddress(host=h, port=p)
            )
            for kind, h, p in hello.listeners
        ],
        rtp_host=hello.rtp_host,
        rtp_port_min=hello.rtp_ports[0],
        rtp_port_max=hello.rtp_ports[1],
        capacity=hello.capacity,
        version=VERSION,
        instance_id=hello.instance_id,
        batched_commands=True,
    )


class _StreamUnsupportedError(Exception):
    """The control plane predates this stream RPC: use the unary calls."""


class _CallFailedError(ControlUnavailableError):
    """The control plane answered a streamed call with an error status, as a unary call fails."""

    def __init__(self, method: str, code: int) -> None:
        self.code = _status_name(code)
        super().__init__(f"{method} failed: {self.code}")


class _StreamCall(Protocol):
    """A per-call message of a batched stream (`RegisterCall`, `CallStreamCall`)."""

    correlation_id: int
    traceparent: str
    tracestate: str


class _StreamReply(Protocol):
    """A per-call answer of a batched stream (`RegisterReply`, `CallStreamReply`)."""

    @property
    def correlation_id(self) -> int: ...

    @property
    def error_code(self) -> int: ...


CallT = TypeVar("CallT", bound=_StreamCall)
ReplyT = TypeVar("ReplyT", bound=_StreamReply)
#: Completes one streamed call: (reply, None) or (None, the error a unary call would raise).
Resolver = Callable[[ReplyT | None, Exception | None], None]


def _status_name(code: int) -> str:
    for candidate in grpc.StatusCode:
        if candidate.value[0] == code:
            return str(candidate.name)
    return "UNKNOWN"


class BatchedStream(Generic[CallT, ReplyT]):
    """One stream RPC that carries unary-style calls: calls queued in the same loop turn (or while
    the previous write was under way) leave in one message; replies are matched by correlation id.

    Each call keeps the unary call's deadline, enforced by one periodic sweep rather than a timer
    per call, and carries its span's trace context (`traceparent`). Calls leave in the order they
    were made, which the control plane keeps per leg (`CallStream`).
    """

    def __init__(
        self,
        call: grpc.aio.StreamStreamCall[Any, Any],
        *,
        name: str,
        timeout: float,
        batch: Callable[[list[CallT]], object],
        replies: Callable[[Any], Iterable[ReplyT]],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._call = call
        self._name = name
        self._timeout = timeout
        self._batch = batch
        self._replies = replies
        # correlation id -> (resolve, deadline, method); ids grow, so the oldest calls come first.
        self._pending: dict[int, tuple[Resolver[ReplyT], float, str]] = {}
        self._outbox: list[CallT] = []
        self._wake = asyncio.Event()
        self._next_id = 1
        self._sweep: asyncio.TimerHandle | None = None
        self.closed = False
        self.unsupported = False
        self._writer = self._loop.create_task(self._write_loop(), name=f"{name}-writer")
        self._reader = self._loop.create_task(self._read_loop(), name=f"{name}-reader")

    async def call(self, message: CallT, method: str) -> ReplyT:
        """Send `message` (its correlation id and trace context are filled in here) and wait for
        its reply; a reply with an error code raises ControlUnavailableError like the unary call.
        """
        future: asyncio.Future[ReplyT] = self._loop.create_future()

        def resolve(reply: ReplyT | None, error: Exception | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(reply)  # type: ignore[arg-type]

        correlation_id = self.submit(message, method, resolve)
        try:
            return await future
        finally:
            self._pending.pop(correlation_id, None)

    def submit(self, message: CallT, method: str, resolve: Resolver[ReplyT]) -> int:
        """Queue `message` and call `resolve(reply, None)` or `resolve(None, error)` exactly once,
        from the reader (or the deadline sweep), without a task waiting per call. The trace
        context is taken from the caller's current context. Returns the correlation id.
        """
        if self.closed:
            raise (
                _StreamUnsupportedError
                if self.unsupported
                else ControlUnavailableError(f"{self._name} closed")
            )
        correlation_id = self._next_id
        self._next_id += 1
        self._pending[correlation_id] = (resolve, self._loop.time() + self._timeout, method)
        message.correlation_id = correlation_id
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if carrier:
            message.traceparent = carrier.get("traceparent", "")
            message.tracestate = carrier.get("tracestate", "")
        self._outbox.append(message)
        self._wake.set()
        if self._sweep is None:
            self._sweep = self._loop.call_later(self._timeout / 4, self._expire)
        return correlation_id

    def _resolve(
        self, resolve: Resolver[ReplyT], reply: ReplyT | None, error: Exception | None
    ) -> None:
        # A resolver that raises must not stop the reader, the sweep or the others.
        try:
            resolve(reply, error)
        except Exception:
            _log.exception("%s reply handler failed", self._name)

    def _expire(self) -> None:
        self._sweep = None
        now = self._loop.time()
        pending = self._pending
        while pending:
            correlation_id = next(iter(pending))
            resolve, deadline, method = pending[correlation_id]
            if deadline > now:
                break
            del pending[correlation_id]
            self._resolve(
                resolve, None, ControlUnavailableError(f"{method} failed: DEADLINE_EXCEEDED")
            )
        if pending:
            self._sweep = self._loop.call_later(self._timeout / 4, self._expire)

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._outbox:
                    batch, self._outbox = self._outbox, []
                    await self._call.write(self._batch(batch))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The reader sees the same end of the call and says why; this only stops writing.
            _log.debug("%s write failed: %r", self._name, exc)

    async def _read_loop(self) -> None:
        error: Exception = ControlUnavailableError(f"{self._name} ended")
        try:
            while True:
                message = await self._call.read()
                if message is grpc.aio.EOF:  # type: ignore[attr-defined]
                    break
                pending = self._pending
                for reply in self._replies(message):
                    entry = pending.pop(reply.correlation_id, None)
                    if entry is None:
                        continue  # answered after its deadline
                    if reply.error_code:
                        self._resolve(entry[0], None, _CallFailedError(entry[2], reply.error_code))
                    else:
                        self._resolve(entry[0], reply, None)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.UNIMPLEMENTED:
                self.unsupported = True
                error = _StreamUnsupportedError()
            else:
                error = ControlUnavailableError(f"{self._name} failed: {exc.code().name}")
        except asyncio.CancelledError:
            self._fail(ControlUnavailableError(f"{self._name} closed"))
            raise
        self._fail(error)

    def _fail(self, error: Exception) -> None:
        self.closed = True
        self._writer.cancel()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        pending, self._pending = self._pending, {}
        for resolve, _deadline, _method in pending.values():
            self._resolve(resolve, None, error)

    async def close(self) -> None:
        self._call.cancel()
        for task in (self._reader, self._writer):
            task.cancel()
        for task in (self._reader, self._writer):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail(ControlUnavailableError(f"{self._name} closed"))


RegisterStream = BatchedStream[sidecar_pb2.RegisterCall, sidecar_pb2.RegisterReply]
CallStream = BatchedStream[sidecar_pb2.CallStreamCall, sidecar_pb2.CallStreamReply]


def open_register_stream(
    stub: sidecar_pb2_grpc.SidecarServiceAsyncStub,
    metadata: tuple[tuple[str, str], ...],
    timeout: float,
) -> RegisterStream:
    return BatchedStream(
        stub.RegisterStream(metadata=metadata),  # type: ignore[call-arg]
        name="register stream",
        timeout=timeout,
        batch=lambda calls: sidecar_pb2.RegisterStreamRequest(calls=calls),
        replies=lambda message: message.replies,
    )


def open_call_stream(
    stub: sidecar_pb2_grpc.SidecarServiceAsyncStub,
    metadata: tuple[tuple[str, str], ...],
    timeout: float,
) -> CallStream:
    return BatchedStream(
        stub.CallStream(metadata=metadata),  # type: ignore[call-arg]
        name="call stream",
        timeout=timeout,
        batch=lambda calls: sidecar_pb2.CallStreamRequest(calls=calls),
        replies=lambda message: message.replies,
    )


class ControlLink:
    """Keeps the `Connect` session up (hello, welcome, heartbeats, reconnect with backoff) and
    makes unary calls with a deadline. `up` is True between a welcome and the stream's end."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None,
        hello: Callable[[], HelloInfo],
        on_settings: Callable[[EdgeSettings], None],
        credentials: grpc.ChannelCredentials | None = None,
        rpc_timeout: float = 2.0,
        heartbeat_interval: float = 5.0,
        rng: random.Random | None = None,
        on_command: CommandHandler | None = None,
        load: Callable[[], tuple[int, int]] | None = None,
        use_register_stream: bool = True,
        use_call_stream: bool = True,
    ) -> None:
        self._use_register_stream = use_register_stream
        self._use_call_stream = use_call_stream
        self._on_command = on_command
        self._load = load
        self._target = target
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self._hello = hello
        self._on_settings = on_settings
        self._credentials = credentials
        self._rpc_timeout = rpc_timeout
        self._heartbeat_interval = heartbeat_interval
        self._rng = rng or random.Random()
        self._channel: grpc.aio.Channel | None = None
        self._stub: sidecar_pb2_grpc.SidecarServiceAsyncStub | None = None
        self._task: asyncio.Task[None] | None = None
        self._up = False
        self._up_event = asyncio.Event()
        self.settings = EdgeSettings()
        self.connects = 0
        self._register_stream: RegisterStream | None = None
        self._register_tasks: set[asyncio.Task[None]] = set()
        self._call_stream: CallStream | None = None
        self._closing: set[asyncio.Task[None]] = set()
        # Cleared for the rest of a session when the control plane lacks the stream RPC.
        self._stream_supported = use_register_stream
        self._call_stream_supported = use_call_stream

    @property
    def up(self) -> bool:
        return self._up

    async def wait_up(self) -> None:
        await self._up_event.wait()

    async def start(self) -> None:
        options = [
            ("grpc.keepalive_time_ms", 20000),
            ("grpc.keepalive_timeout_ms", 10000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.initial_reconnect_backoff_ms", 500),
            ("grpc.max_reconnect_backoff_ms", 30000),
        ]
        if self._credentials is not None:
            self._channel = grpc.aio.secure_channel(self._target, self._credentials, options)
        else:
            self._channel = grpc.aio.insecure_channel(self._target, options)
        self._stub = sidecar_pb2_grpc.SidecarServiceStub(self._channel)
        self._task = asyncio.create_task(self._run(), name="sip2uc-control-link")

    async def stop(self) -> None:
        self._set_down()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
        if self._register_tasks:
            # Unary fallbacks end with the channel (their callbacks answer 503).
            await asyncio.gather(*self._register_tasks, return_exceptions=True)

    def _set_down(self) -> None:
        if self._up:
            _log.warning("control plane link down; answering 503 until it is back")
        self._up = False
        self._up_event.clear()
        streams: list[RegisterStream | CallStream | None] = [
            self._register_stream,
            self._call_stream,
        ]
        self._register_stream = self._call_stream = None
        for stream in streams:
            if stream is not None:
                task = asyncio.get_running_loop().create_task(stream.close())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        self._stream_supported = self._use_register_stream
        self._call_stream_supported = self._use_call_stream

    # -- the session ----------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            welcomed = False
            try:
                welcomed = await self._session()
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                _log.debug("control session ended: %s %s", exc.code(), exc.details())
            except Exception:
                _log.exception("control session failed")
            self._set_down()
            attempt = 0 if welcomed else attempt + 1
            await asyncio.sleep(backoff_delay(attempt, self._rng))

    async def _session(self) -> bool:
        assert self._stub is not None
        outgoing: asyncio.Queue[sidecar_pb2.ConnectRequest | None] = asyncio.Queue()
        outgoing.put_nowait(sidecar_pb2.ConnectRequest(hello=hello_to_proto(self._hello())))

        async def requests() -> AsyncIterator[sidecar_pb2.ConnectRequest]:
            while True:
                item = await outgoing.get()
                if item is None:
                    return
                yield item

        call = self._stub.Connect(requests(), metadata=self._metadata)
        heartbeat: asyncio.Task[None] | None = None
        welcomed = False
        try:
            async for message in call:
                kind = message.WhichOneof("payload")
                if kind == "welcome":
                    self._apply(message.welcome.settings)
                    welcomed = True
                    self.connects += 1
                    self._up = True
                    self._up_event.set()
                    _log.info("control plane %s welcomed this sidecar", self._target)
                    if heartbeat is None:
                        heartbeat = asyncio.create_task(self._heartbeats(outgoing))
                elif kind == "batch":
                    # One message for the commands the control plane queued meanwhile; their
                    # results go back as one message too (it only sends batches to sidecars
                    # that announced `batched_commands`, which also read `results`).
                    results = []
                    for inner in message.batch.commands:
                        result = await self._dispatch(inner)
                        if result is not None:
                            results.append(result)
                    if results:
                        outgoing.put_nowait(
                            sidecar_pb2.ConnectRequest(
                                results=sidecar_pb2.CommandResults(results=results)
                            )
                        )
                elif kind is not None:
                    result = await self._dispatch(message)
                    if result is not None:
                        outgoing.put_nowait(sidecar_pb2.ConnectRequest(result=result))
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            outgoing.put_nowait(None)
            call.cancel()
        return welcomed

    async def _dispatch(
        self, message: sidecar_pb2.ConnectResponse
    ) -> sidecar_pb2.CommandResult | None:
        """Carry out one command (settings apply at once); None when there is no result to send.

        Commands run one at a time, in the order sent: an EndLeg must not overtake the
        CreateLeg it ends.
        """
        kind = message.WhichOneof("payload")
        if kind == "settings":
            self._apply(message.settings)
            return None
        if kind is None or kind in ("welcome", "batch"):
            return None  # not commands (a batch inside a batch is not sent)
        error = UNSUPPORTED
        if self._on_command is not None:
            try:
                error = await self._on_command(message)
            except Exception as exc:
                _log.exception("command %s failed", kind)
                error = f"internal error: {type(exc).__name__}"
        return sidecar_pb2.CommandResult(command_id=message.command_id, ok=not error, error=error)

    def _apply(self, message: sidecar_pb2.SidecarSettings) -> None:
        self.settings = settings_from_proto(message, self.settings)
        self._on_settings(self.settings)

    async def _heartbeats(self, outgoing: asyncio.Queue[sidecar_pb2.ConnectRequest | None]) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            legs, ports = self._load() if self._load is not None else (0, 0)
            outgoing.put_nowait(
                sidecar_pb2.ConnectRequest(
                    heartbeat=sidecar_pb2.SidecarHeartbeat(
                        active_legs=legs, relay_ports_in_use=ports
                    )
                )
            )

    # -- unary calls ----------------------------------------------------------------------------

    def _call_metadata(self) -> tuple[tuple[str, str], ...]:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if not carrier:
            return self._metadata
        return self._metadata + tuple(carrier.items())

    async def register(self, attempt: RegisterAttempt, origin: Origin) -> RegisterResult:
        if not self._up or self._stub is None:
            raise ControlUnavailableError("control plane link is down")
        request = register_request(attempt, origin)
        if self._stream_supported:
            stream = self._register_stream
            if stream is None or stream.closed:
                stream = self._register_stream = open_register_stream(
                    self._stub, self._metadata, self._rpc_timeout
                )
            try:
                reply = await stream.call(sidecar_pb2.RegisterCall(request=request), "Register")
                return register_result(reply.response)
            except _StreamUnsupportedError:
                _log.info("control plane has no RegisterStream; using unary Register calls")
                self._stream_supported = False
        try:
            response = await self._stub.Register(
                request, timeout=self._rpc_timeout, metadata=self._call_metadata()
            )
        except grpc.aio.AioRpcError as exc:
            raise ControlUnavailableError(f"Register failed: {exc.code().name}") from exc
        return register_result(response)

    def register_then(
        self,
        attempt: RegisterAttempt,
        origin: Origin,
        done: Callable[[RegisterResult | None, ControlUnavailableError | None], None],
    ) -> None:
        """`register` without a task per call: `done(result, None)` or `done(None, error)` is
        called once, from the stream's reader when the reply arrives. Falls back to `register`
        in a task when the control plane has no RegisterStream.
        """
        if not self._up or self._stub is None:
            done(None, ControlUnavailableError("control plane link is down"))
            return
        if self._stream_supported:
            stream = self._register_stream
            if stream is None or stream.closed:
                stream = self._register_stream = open_register_stream(
                    self._stub, self._metadata, self._rpc_timeout
                )

            def resolve(reply: sidecar_pb2.RegisterReply | None, error: Exception | None) -> None:
                if reply is not None:
                    done(register_result(reply.response), None)
                elif isinstance(error, _StreamUnsupportedError):
                    self._stream_supported = False
                    self._register_in_task(attempt, origin, done)
                elif isinstance(error, ControlUnavailableError):
                    done(None, error)
                else:
                    done(None, ControlUnavailableError(f"Register failed: {error!r}"))

            try:
                stream.submit(
                    sidecar_pb2.RegisterCall(request=register_request(attempt, origin)),
                    "Register",
                    resolve,
                )
                return
            except _StreamUnsupportedError:
                _log.info("control plane has no RegisterStream; using unary Register calls")
                self._stream_supported = False
        self._register_in_task(attempt, origin, done)

    def _register_in_task(
        self,
        attempt: RegisterAttempt,
        origin: Origin,
        done: Callable[[RegisterResult | None, ControlUnavailableError | None], None],
    ) -> None:
        async def run() -> None:
            try:
                result = await self.register(attempt, origin)
            except ControlUnavailableError as exc:
                done(None, exc)
                return
            except Exception as exc:
                # The REGISTER is answered 503 rather than left to time out.
                done(None, ControlUnavailableError(f"Register failed: {exc!r}"))
                return
            done(result, None)

        task = asyncio.get_running_loop().create_task(run())
        self._register_tasks.add(task)
        task.add_done_callback(self._register_tasks.discard)

    def _calls(self) -> CallStream | None:
        """The call stream, opened on first use; None when the control plane lacks it."""
        if not self._call_stream_supported or self._stub is None:
            return None
        stream = self._call_stream
        if stream is None or stream.closed:
            stream = self._call_stream = open_call_stream(
                self._stub, self._metadata, self._rpc_timeout
            )
        return stream

    def _stream_unsupported(self) -> None:
        if self._call_stream_supported:
            _log.info("control plane has no CallStream; using unary call RPCs")
        self._call_stream_supported = False

    async def invite(self, call: InviteCall, rpc: InviteRpc) -> InviteResult:
        if not self._up or self._stub is None:
            raise ControlUnavailableError("control plane link is down")
        request = invite_request(call, rpc)
        stream = self._calls()
        if stream is not None:
            try:
                reply = await stream.call(
                    sidecar_pb2.CallStreamCall(invite=request, timeout_ms=self._timeout_ms),
                    "Invite",
                )
                return invite_result(reply.invite)
            except _StreamUnsupportedError:
                self._stream_unsupported()
        try:
            response = await self._stub.Invite(
                request, timeout=self._rpc_timeout, metadata=self._call_metadata()
            )
        except grpc.aio.AioRpcError as exc:
            raise ControlUnavailableError(f"Invite failed: {exc.code().name}") from exc
        return invite_result(response)

    @property
    def _timeout_ms(self) -> int:
        return max(1, int(self._rpc_timeout * 1000))

    async def cancel(self, origin: Origin, rpc: CancelRpc) -> None:
        await self._notify(
            "Cancel",
            sidecar_pb2.CallStreamCall(
                cancel=sidecar_pb2.CancelRequest(origin=origin_to_proto(origin), leg_id=rpc.leg_id)
            ),
        )

    async def bye(
        self, origin: Origin, rpc: ByeRpc, stats: list[sidecar_pb2.StreamStats] | None = None
    ) -> None:
        await self._notify(
            "Bye",
            sidecar_pb2.CallStreamCall(
                bye=sidecar_pb2.ByeRequest(
                    origin=origin_to_proto(origin),
                    leg_id=rpc.leg_id,
                    reason=rpc.reason,
                    stats=stats or [],
                )
            ),
        )

    async def report_leg(self, request: sidecar_pb2.ReportLegRequest) -> None:
        await self._notify("ReportLeg", sidecar_pb2.CallStreamCall(report_leg=request))

    async def _notify(self, method: str, call: sidecar_pb2.CallStreamCall) -> None:
        """A one-way report: retried a few times, since a lost Bye or answer leaves a call
        hanging on the control plane. `call` holds the unary request in its oneof."""
        call.timeout_ms = self._timeout_ms
        kind = call.WhichOneof("request")
        assert kind is not None
        for attempt in range(3):
            if self._up and self._stub is not None:
                stream = self._calls()
                try:
                    if stream is not None:
                        try:
                            await stream.call(call, method)
                            return
                        except _StreamUnsupportedError:
                            self._stream_unsupported()
                    await getattr(self._stub, method)(
                        getattr(call, kind),
                        timeout=self._rpc_timeout,
                        metadata=self._call_metadata(),
                    )
                    return
                except _CallFailedError as exc:
                    if exc.code in _FINAL_CODES:
                        _log.debug("%s refused: %s", method, exc)
                        return
                except ControlUnavailableError:
                    pass
                except grpc.aio.AioRpcError as exc:
                    if exc.code().name in _FINAL_CODES:
                        _log.debug("%s refused: %s", method, exc.details())
                        return
            await asyncio.sleep(backoff_delay(attempt, self._rng, first=0.2, cap=2.0))
        _log.warning("%s could not reach the control plane", method)


# Answers that a retry would only repeat.
_FINAL_CODES = frozenset({"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION"})
