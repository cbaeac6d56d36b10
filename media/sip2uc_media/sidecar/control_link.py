"""The sidecar's link to the control plane: the `Connect` session and the unary RPCs.

This is the one place where generated protobuf types meet the sidecar's own types: everything
else in the sidecar speaks `registrar` dataclasses and `EdgeSettings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc
from opentelemetry import propagate
from sip2uc.v1 import common_pb2, sidecar_pb2, sidecar_pb2_grpc

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
    "ControlLink",
    "ControlUnavailableError",
    "EdgeSettings",
    "HelloInfo",
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
    )


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
    ) -> None:
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
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None

    def _set_down(self) -> None:
        if self._up:
            _log.warning("control plane link down; answering 503 until it is back")
        self._up = False
        self._up_event.clear()

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
                elif kind == "settings":
                    self._apply(message.settings)
                elif kind is not None:
                    # Call-leg, message and notify commands arrive with the B2BUA; until then
                    # the control plane must learn at once that they were not carried out.
                    outgoing.put_nowait(
                        sidecar_pb2.ConnectRequest(
                            result=sidecar_pb2.CommandResult(
                                command_id=message.command_id, ok=False, error=UNSUPPORTED
                            )
                        )
                    )
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            outgoing.put_nowait(None)
            call.cancel()
        return welcomed

    def _apply(self, message: sidecar_pb2.SidecarSettings) -> None:
        self.settings = settings_from_proto(message, self.settings)
        self._on_settings(self.settings)

    async def _heartbeats(self, outgoing: asyncio.Queue[sidecar_pb2.ConnectRequest | None]) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            outgoing.put_nowait(
                sidecar_pb2.ConnectRequest(heartbeat=sidecar_pb2.SidecarHeartbeat())
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
        try:
            response = await self._stub.Register(
                register_request(attempt, origin),
                timeout=self._rpc_timeout,
                metadata=self._call_metadata(),
            )
        except grpc.aio.AioRpcError as exc:
            raise ControlUnavailableError(f"Register failed: {exc.code().name}") from exc
        return register_result(response)
