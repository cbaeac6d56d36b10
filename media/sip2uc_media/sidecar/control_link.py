"""The sidecar's link to the control plane: the `Connect` session and the two request streams.

The session announces the sidecar, applies the settings it is sent, carries out commands in the
order they come and reports their results, sends heartbeats and the bans in force (after each
welcome, and at most once a second after they change), and reconnects with backoff when it
ends. REGISTERs go out on `RegisterStream` and call requests on `CallStream`
(`batched_stream.py`), both opened on first use after a welcome. Messages are made and read by
`wire.py`; callers see the sidecar's own types only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import grpc
from sip2uc.v1 import sidecar_pb2, sidecar_pb2_grpc
from sip2uc_core.sip.digest import Credentials
from sip2uc_core.sip.endpoint import Endpoint
from sip2uc_core.stream_stats import StreamStats

from ..b2bua.actions import ByeRpc, CancelRpc, InviteRpc, ReportLeg
from ..b2bua.legs import InviteResult
from ..phonebook.model import Phonebook
from ..trunk.carrier import TrunkStatus
from . import wire
from .batched_stream import BatchedStream, CallFailedError, CallT, ReplyT
from .commands import Batch, Command, EdgeSettings, Order, SettingsUpdate, Welcome
from .messages import MessageAnswer, MessageCall
from .protection import Ban
from .registrar import RegisterAttempt
from .requests import (
    ControlUnavailableError,
    HelloInfo,
    InviteCall,
    Origin,
    RegisterDone,
    SubscribeCall,
)
from .subscriptions import Grant, Subscription, UserState

__all__ = ["CommandHandler", "ControlLink", "backoff_delay"]

_log = logging.getLogger(__name__)

UNSUPPORTED = "not supported by this sidecar"

#: Carries out one command; returns "" when done, else why not.
CommandHandler = Callable[[Command], Awaitable[str]]

RegisterStream = BatchedStream[sidecar_pb2.RegisterCall, sidecar_pb2.RegisterReply]
CallStream = BatchedStream[sidecar_pb2.CallStreamCall, sidecar_pb2.CallStreamReply]

#: Seconds between two reports of the bans: a burst of bans makes one report.
BANS_REPORT_INTERVAL = 1.0

# Answers that a retry would only repeat.
_FINAL_CODES = frozenset({"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION"})
# Sessions refused for something a person must fix.
_REFUSALS = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.INVALID_ARGUMENT,
    }
)


def _bearer(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def backoff_delay(
    attempt: int, rng: random.Random, *, first: float = 0.5, cap: float = 30.0
) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, never above `cap`."""
    ceiling = min(cap, first * float(1 << min(attempt, 16)))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class ControlLink:
    """Keeps the `Connect` session up and makes requests with a deadline; `up` is True between
    a welcome and the session's end."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None,
        token_file: Path | None = None,
        hello: Callable[[], HelloInfo],
        on_settings: Callable[[EdgeSettings], None],
        credentials: grpc.ChannelCredentials | None = None,
        rpc_timeout: float = 2.0,
        heartbeat_interval: float = 5.0,
        rng: random.Random | None = None,
        on_command: CommandHandler | None = None,
        load: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self._on_command = on_command
        self._load = load
        self._bans: Callable[[], Sequence[Ban]] | None = None
        self._outgoing: asyncio.Queue[sidecar_pb2.ConnectRequest | None] | None = None
        self._bans_timer: asyncio.TimerHandle | None = None
        self._bans_sent_at = float("-inf")
        self._target = target
        self._token = token
        # Read again before every session, so that a rotated credential (`sip2uc sidecar enroll
        # NAME --replace --output FILE`) is picked up without a restart.
        self._token_file = token_file
        self._metadata: tuple[tuple[str, str], ...] = _bearer(token)
        self._hello = hello
        self._on_settings = on_settings
        self._credentials = credentials
        self._rpc_timeout = rpc_timeout
        self._timeout_ms = max(1, int(rpc_timeout * 1000))
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
        self._call_stream: CallStream | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._session_over = asyncio.Event()
        self._stopping = False
        #: The last refusal logged, so that a sidecar retrying with a bad credential says so once.
        self._refusal_logged = ""

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

    async def stop(self, grace: float = 1.0) -> None:
        """Leave: close our side of the session so that the control plane sees a sidecar that
        stopped (not one that was lost), then tear the link down."""
        self._stopping = True
        if self._outgoing is not None:  # a session, welcomed or still saying hello
            self._outgoing.put_nowait(None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._session_over.wait(), grace)
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

    def bans_source(self, bans: Callable[[], Sequence[Ban]]) -> None:
        """Where the bans in force come from (most recent first), for the reports."""
        self._bans = bans

    def bans_changed(self) -> None:
        """The bans changed: report them within `BANS_REPORT_INTERVAL` (one report for a burst)."""
        if self._outgoing is None or not self._up or self._bans_timer is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._bans_sent_at + BANS_REPORT_INTERVAL - loop.time()
        if wait <= 0:
            self._send_bans()
        else:
            self._bans_timer = loop.call_later(wait, self._send_bans)

    def _send_bans(self) -> None:
        self._bans_timer = None
        if self._outgoing is None or not self._up or self._bans is None:
            return
        loop = asyncio.get_running_loop()
        self._bans_sent_at = now = loop.time()
        self._outgoing.put_nowait(wire.bans(self._bans(), now, time.time()))

    def _set_down(self) -> None:
        if self._up and not self._stopping:
            _log.warning("control plane link down; answering 503 until it is back")
        self._outgoing = None
        if self._bans_timer is not None:
            self._bans_timer.cancel()
            self._bans_timer = None
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
                self._session_failed(exc)
            except OSError as exc:
                self._refused(f"cannot read the credential: {exc}")
            except Exception:
                _log.exception("control session failed")
            self._set_down()
            attempt = 0 if welcomed else attempt + 1
            await asyncio.sleep(backoff_delay(attempt, self._rng))

    def _session_failed(self, exc: grpc.aio.AioRpcError) -> None:
        code = exc.code()
        if code in _REFUSALS:
            self._refused(f"{code.name}: {exc.details()}")
        else:
            _log.debug("control session ended: %s %s", code, exc.details())

    def _refused(self, why: str) -> None:
        """A refusal only a person can fix (a revoked or wrong credential, a name taken): said
        once, at the level that reaches them, while the link keeps retrying."""
        if why != self._refusal_logged:
            self._refusal_logged = why
            _log.error("control plane %s refused this sidecar: %s (retrying)", self._target, why)

    def _credential(self) -> tuple[tuple[str, str], ...]:
        if self._token_file is None:
            return self._metadata
        return _bearer(self._token_file.read_text().strip() or None)

    async def _session(self) -> bool:
        assert self._stub is not None
        self._metadata = self._credential()
        self._session_over.clear()
        outgoing: asyncio.Queue[sidecar_pb2.ConnectRequest | None] = asyncio.Queue()
        self._outgoing = outgoing
        outgoing.put_nowait(wire.hello(self._hello()))

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
                received = wire.session_message(message)
                if isinstance(received, Welcome):
                    self._apply(received.settings)
                    self._refusal_logged = ""
                    welcomed = True
                    self.connects += 1
                    self._up = True
                    self._up_event.set()
                    self._outgoing = outgoing
                    if self._bans is not None and self._bans():
                        self._send_bans()  # the control plane forgot them with the old session
                    _log.info("control plane %s welcomed this sidecar", self._target)
                    if heartbeat is None:
                        heartbeat = asyncio.create_task(self._heartbeats(outgoing))
                elif isinstance(received, Batch):
                    # One message for the commands the control plane queued meanwhile; their
                    # results go back as one message too (it only sends batches to sidecars
                    # that announced `batched_commands`, which also read `results`).
                    done = [await self._carry_out(item) for item in received.items]
                    outcomes = [outcome for outcome in done if outcome is not None]
                    if outcomes:
                        outgoing.put_nowait(wire.results(outcomes, batched=True))
                elif received is not None:
                    outcome = await self._carry_out(received)
                    if outcome is not None:
                        outgoing.put_nowait(wire.results([outcome], batched=False))
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            outgoing.put_nowait(None)
            call.cancel()
            self._outgoing = None
            self._session_over.set()
        return welcomed

    async def _carry_out(self, item: SettingsUpdate | Order) -> tuple[str, str] | None:
        """Apply settings at once, or carry out one command: (its id, "" or why not).

        Commands run one at a time, in the order sent: an EndLeg must not overtake the
        CreateLeg it ends.
        """
        if isinstance(item, SettingsUpdate):
            self._apply(item)
            return None
        error = UNSUPPORTED
        if self._on_command is not None:
            try:
                error = await self._on_command(item.command)
            except Exception as exc:
                _log.exception("command %s failed", type(item.command).__name__)
                error = f"internal error: {type(exc).__name__}"
        return item.command_id, error

    def _apply(self, update: SettingsUpdate) -> None:
        self.settings = update.applied_to(self.settings)
        self._on_settings(self.settings)

    async def _heartbeats(self, outgoing: asyncio.Queue[sidecar_pb2.ConnectRequest | None]) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            legs, ports = self._load() if self._load is not None else (0, 0)
            outgoing.put_nowait(wire.heartbeat(legs, ports))

    def report_trunks(self, statuses: Sequence[TrunkStatus]) -> None:
        """Tell the control plane how the carried trunks are (dropped while it is away: the
        next welcome brings settings, and the trunks are reported again)."""
        outgoing = self._outgoing
        if outgoing is not None:
            outgoing.put_nowait(wire.trunk_reports(statuses))

    def backlog(self, now: float) -> tuple[int, float]:
        """Requests to the control plane not yet answered, and the age of the oldest (s) at
        `now` on the event loop's clock. Takes the time rather than asking the loop, so that a
        metrics scrape from another thread can read it."""
        in_flight, oldest = 0, 0.0
        for stream in (self._register_stream, self._call_stream):
            if stream is not None:
                count, age = stream.backlog(now)
                in_flight += count
                oldest = max(oldest, age)
        return in_flight, oldest

    # -- requests -------------------------------------------------------------------------------

    def register(self, attempt: RegisterAttempt, origin: Origin, done: RegisterDone) -> None:
        """Ask about a REGISTER; `done(result, None)` or `done(None, error)` is called once,
        from the stream's reader when the answer arrives (no task per REGISTER: at a few
        thousand a second, tasks were a sizeable share of the sidecar's CPU), or at once when
        the link is down."""
        if not self._up or self._stub is None:
            done(None, ControlUnavailableError("control plane link is down"))
            return
        stream = self._register_stream
        if stream is None or stream.closed:
            stream = self._register_stream = self._open(
                "register stream",
                self._stub.RegisterStream,
                wire.register_batch,
                wire.register_replies,
            )

        def resolve(reply: sidecar_pb2.RegisterReply | None, error: Exception | None) -> None:
            if reply is not None:
                done(wire.register_result(reply), None)
            elif isinstance(error, ControlUnavailableError):
                done(None, error)
            else:
                done(None, ControlUnavailableError(f"Register failed: {error!r}"))

        # Called inside the REGISTER's span: the call carries that span's trace context.
        stream.submit(wire.register_call(attempt, origin, self._timeout_ms), "Register", resolve)

    def _calls(self) -> CallStream:
        assert self._stub is not None
        stream = self._call_stream
        if stream is None or stream.closed:
            stream = self._call_stream = self._open(
                "call stream", self._stub.CallStream, wire.call_batch, wire.call_replies
            )
        return stream

    def _open(
        self,
        name: str,
        rpc: Callable[..., grpc.aio.StreamStreamCall[Any, Any]],
        batch: Callable[[list[CallT]], object],
        replies: Callable[[Any], Iterable[ReplyT]],
    ) -> BatchedStream[CallT, ReplyT]:
        return BatchedStream(
            rpc(metadata=self._metadata),
            name=name,
            timeout=self._rpc_timeout,
            batch=batch,
            replies=replies,
        )

    async def invite(self, call: InviteCall, rpc: InviteRpc) -> InviteResult:
        if not self._up or self._stub is None:
            raise ControlUnavailableError("control plane link is down")
        reply = await self._calls().call(wire.invite_call(call, rpc, self._timeout_ms), "Invite")
        return wire.invite_result(reply)

    async def cancel(self, origin: Origin, rpc: CancelRpc) -> None:
        await self._notify("Cancel", wire.cancel_call(origin, rpc, self._timeout_ms))

    async def bye(self, origin: Origin, rpc: ByeRpc, stats: Sequence[StreamStats] = ()) -> None:
        await self._notify("Bye", wire.bye_call(origin, rpc, stats, self._timeout_ms))

    async def report_leg(
        self, sidecar: str, report: ReportLeg, stats: Sequence[StreamStats] = ()
    ) -> None:
        await self._notify("ReportLeg", wire.report_call(sidecar, report, stats, self._timeout_ms))

    async def subscribe(self, call: SubscribeCall) -> tuple[int, str, Grant | None]:
        """Ask about a SUBSCRIBE (new, refreshed or ended): SIP status, reason, grant."""
        if not self._up or self._stub is None:
            raise ControlUnavailableError("control plane link is down")
        try:
            response = await self._stub.Subscribe(
                wire.subscribe_request(call), metadata=self._metadata, timeout=self._rpc_timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise ControlUnavailableError(f"Subscribe failed: {exc.code().name}") from None
        return wire.subscribe_verdict(response)

    async def watch_states(
        self, held: Callable[[], Iterable[Subscription]]
    ) -> AsyncIterator[tuple[list[UserState] | None, UserState | None, tuple[str, ...]]]:
        """The users' states for this sidecar's subscriptions, on one stream: a snapshot (with
        the held subscriptions the control plane revoked), then changes. Ends when the stream
        does; the caller watches again after the next welcome."""
        if not self._up or self._stub is None:
            raise ControlUnavailableError("control plane link is down")
        loop = asyncio.get_running_loop()
        request = wire.watch_states_request(self._hello().name, held(), loop.time(), time.time())
        call = self._stub.WatchStates(request, metadata=self._metadata)
        try:
            async for message in call:
                yield wire.watch_states_item(message)
        finally:
            call.cancel()

    async def message(self, call: MessageCall) -> MessageAnswer:
        """Ask about a handset's MESSAGE: one unary call (short messages are rare)."""
        if not self._up or self._stub is None:
            raise ControlUnavailableError("control plane link is down")
        try:
            response = await self._stub.Message(
                wire.message_request(call), timeout=self._rpc_timeout, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise ControlUnavailableError(f"Message failed: {exc.code().name}") from exc
        return wire.message_answer(response)

    def message_delivered(self, delivery_id: str, status: int, reason: str) -> None:
        """Report a handset's answer to a delivered MESSAGE on the session. Without a session the
        report is lost, and the control plane counts the delivery as unanswered (408)."""
        if self._outgoing is not None and self._up:
            self._outgoing.put_nowait(wire.message_delivery(delivery_id, status, reason))

    async def _notify(self, method: str, call: sidecar_pb2.CallStreamCall) -> None:
        """A one-way report: retried a few times, since a lost Bye or answer leaves a call
        hanging on the control plane."""
        for attempt in range(3):
            if self._up and self._stub is not None:
                try:
                    await self._calls().call(call, method)
                    return
                except CallFailedError as exc:
                    if exc.code in _FINAL_CODES:
                        _log.debug("%s refused: %s", method, exc)
                        return
                except ControlUnavailableError:
                    pass
            await asyncio.sleep(backoff_delay(attempt, self._rng, first=0.2, cap=2.0))
        _log.warning("%s could not reach the control plane", method)

    # -- the shared address book ----------------------------------------------------------------

    async def verify_digest(
        self, sidecar: str, credentials: Credentials, method: str, source: Endpoint, agent: str
    ) -> bool:
        """Whether HTTP Digest `credentials` prove a user (the control plane checks the HA1)."""
        if not self._up or self._stub is None:
            raise ControlUnavailableError("control plane link is down")
        request = wire.verify_digest(sidecar, credentials, method, source, agent)
        try:
            reply = await self._stub.VerifyDigest(
                request, metadata=self._metadata, timeout=self._rpc_timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise ControlUnavailableError(f"VerifyDigest failed: {exc.code().name}") from None
        return wire.digest_verified(reply)

    async def follow_phonebook(self, sidecar: str, apply: Callable[[Phonebook], None]) -> None:
        """Keep `apply`ing the address book's snapshots while the link is up, watching again
        after every reconnect; runs until cancelled."""
        attempt = 0
        while True:
            await self.wait_up()
            session = self.connects
            if self._stub is not None:
                try:
                    call = self._stub.WatchPhonebook(
                        wire.watch_phonebook(sidecar), metadata=self._metadata
                    )
                    async for message in call:
                        apply(wire.phonebook(message))
                        attempt = 0
                except grpc.aio.AioRpcError as exc:
                    _log.debug("phonebook watch ended: %s %s", exc.code(), exc.details())
            # A watch that ended with its session resumes as soon as the link is back (the
            # link paces its own reconnects); one refused within a session backs off.
            attempt = attempt + 1 if self._up and self.connects == session else 0
            await asyncio.sleep(backoff_delay(attempt, self._rng, first=0.1, cap=10.0))
