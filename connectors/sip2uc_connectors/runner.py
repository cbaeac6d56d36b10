"""Running one connector's bridge against the control plane's public API.

`BridgeRunner.run` claims the connector (`ConnectorService.ClaimConnector`: its configuration,
secrets, saved cursor and state), builds the bridge of its kind and keeps it in step:

- **out**: ``PresenceService.WatchPresence`` from the saved cursor (a fresh snapshot when it is
  empty or has expired); every change goes into an `OutboundQueue` that keeps only each user's
  latest state; up to ``bridge.max_concurrent_deliveries`` workers hand states to
  ``bridge.deliver``; failures are retried with backoff, with the then-latest state;
- **in**: states the bridge reports (``BridgeContext.bring_in``) are coalesced per user as well
  and applied with ``SetPresence`` / ``ClearPresence`` (source EXTERNAL, origin this connector);
- **saving**: every second, the safe cursor (`OutboundQueue.safe_cursor`) and the bridge's
  state changes go to ``SaveConnectorState`` in one request, so a restart on any host resumes
  where delivery really stood;
- **status**: every few seconds ``ReportConnectorStatus`` (state, last error, lag, users mapped,
  last sync), which also keeps the session alive;
- **users**: at start, after each snapshot and every few minutes, the user list goes to
  ``bridge.reconcile``.

The session ends when the process stops (state saved, session released, the bridge's
publications left in place for the next run), when the control plane ends it (the connector
was reconfigured, or the control plane restarted: claim again, carrying the unsaved state over),
or when the connector is deleted (the bridge withdraws what it published).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import TypeVar, cast

import grpc
from sip2uc.v1 import connectors_pb2, presence_pb2, users_pb2

from .bridge import (
    Availability,
    Bridge,
    BridgeContext,
    BridgeError,
    BridgeFactory,
    BridgeHealth,
    BridgeState,
    ConnectorConfig,
    InboundMessage,
    InboundPresence,
    MappedUser,
    MessageBridge,
    PresenceUpdate,
    StateChanges,
)
from .coalescing import CoalescingQueue
from .control_api import ControlApi
from .convert import (
    change_from_pb,
    config_from_claim,
    inbound_to_clear,
    inbound_to_set,
    presence_from_pb,
    state_to_pb,
    status_to_pb,
    user_from_pb,
)
from .message_relay import MessageRelay
from .outbound import OutboundQueue

__all__ = ["BridgeRunner", "RunnerOptions", "default_runner_name"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# SaveConnectorState takes at most this many upserts and deletes per request.
_SAVE_CHUNK = 5_000
#: SetPresence/ClearPresence calls in flight at most.
_INBOUND_CALLS = 8


def default_runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    status_interval: float = 5.0
    checkpoint_interval: float = 1.0
    reconcile_interval: float = 300.0
    #: Longest wait between retries (deliveries, the watch stream, claiming).
    max_backoff: float = 30.0


class _End(Enum):
    STOPPED = "stopped"
    LOST = "session lost"
    GONE = "connector deleted"


class _SessionEnded(Exception):
    def __init__(self, end: _End, reason: str) -> None:
        super().__init__(reason)
        self.end = end


def _ended_by(exc: grpc.aio.AioRpcError) -> _SessionEnded | None:
    """How a failed session call ends the session, if it does."""
    if exc.code() is grpc.StatusCode.NOT_FOUND:
        return _SessionEnded(_End.GONE, exc.details() or "connector deleted")
    if exc.code() is grpc.StatusCode.FAILED_PRECONDITION:
        return _SessionEnded(_End.LOST, exc.details() or "session ended")
    return None


class BridgeRunner:
    """Runs the bridge of one connector until stopped or the connector is deleted."""

    def __init__(
        self,
        api: ControlApi,
        connector: str,
        factories: Mapping[str, BridgeFactory],
        *,
        runner_name: str | None = None,
        clock: Callable[[], float] = time.time,
        options: RunnerOptions | None = None,
    ) -> None:
        self.api = api
        self.connector = (
            connector if connector.startswith("connectors/") else f"connectors/{connector}"
        )
        self.factories = factories
        self.runner_name = runner_name or default_runner_name()
        self.clock = clock
        self.options = options or RunnerOptions()
        self.log = logging.getLogger(
            f"sip2uc.connector.{self.connector.removeprefix('connectors/')}"
        )
        #: What the last session could not save (carried into the next one).
        self._carry = StateChanges()
        self._carry_cursor: str | None = None
        #: The running session, for tests and status.
        self.session: _Session | None = None

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                claim = await self.api.connectors.ClaimConnector(
                    connectors_pb2.ClaimConnectorRequest(
                        name=self.connector, runner=self.runner_name
                    ),
                    metadata=self.api.metadata,
                    timeout=self.api.timeout,
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                    self.log.warning("not running %s: %s", self.connector, exc.details())
                    return
                failures += 1
                delay = min(self.options.max_backoff, 0.5 * 2 ** min(failures, 6))
                self.log.info(
                    "cannot claim %s (%s); retrying in %.1fs", self.connector, exc.details(), delay
                )
                await _wait(stop, delay)
                continue
            failures = 0
            config = config_from_claim(claim)
            factory = self.factories.get(config.kind)
            if factory is None:
                await self._unsupported(claim, config, stop)
                return
            saved = {entry.key: entry.value for entry in claim.entries}
            for key in self._carry.deletes:
                saved.pop(key, None)
            saved.update(self._carry.upserts)
            session = _Session(
                self,
                config,
                claim.session,
                factory(config),
                saved,
                cursor=self._carry_cursor or claim.cursor or None,
                saved_cursor=claim.cursor or None,
                lease=claim.lease.ToNanoseconds() / 1e9,
            )
            session.unsaved.merge_newer(self._carry)
            self._carry = StateChanges()
            self.session = session
            end = await session.run(stop)
            self.session = None
            if end is _End.LOST:
                self._carry = session.unsaved
                self._carry_cursor = session.out.safe_cursor() or session.saved_cursor
                self.log.info("session of %s ended: claiming again", self.connector)
                await _wait(stop, 0.2)
                continue
            return

    async def _unsupported(
        self,
        claim: connectors_pb2.ClaimConnectorResponse,
        config: ConnectorConfig,
        stop: asyncio.Event,
    ) -> None:
        """No bridge of this kind is installed: say so in the status, then give the session up."""
        message = f"no {config.kind!r} bridge in this installation"
        self.log.error("%s: %s", self.connector, message)
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self.api.connectors.ReportConnectorStatus(
                connectors_pb2.ReportConnectorStatusRequest(
                    name=self.connector,
                    session=claim.session,
                    status=status_to_pb(
                        BridgeHealth(state=BridgeState.FAILED, last_error=message),
                        lag=0.0,
                        last_sync=0.0,
                        changes_out=0,
                        changes_in=0,
                    ),
                ),
                metadata=self.api.metadata,
                timeout=self.api.timeout,
            )
            await self.api.connectors.ReleaseConnector(
                connectors_pb2.ReleaseConnectorRequest(name=self.connector, session=claim.session),
                metadata=self.api.metadata,
                timeout=self.api.timeout,
            )


class _Session:
    """One claim of the connector: the bridge and the tasks keeping it in step."""

    def __init__(
        self,
        runner: BridgeRunner,
        config: ConnectorConfig,
        token: str,
        bridge: Bridge,
        saved: dict[str, bytes],
        *,
        cursor: str | None,
        saved_cursor: str | None,
        lease: float,
    ) -> None:
        self.runner = runner
        self.api = runner.api
        self.config = config
        self.token = token
        self.bridge = bridge
        self.saved_entries = saved
        self.cursor = cursor
        self.saved_cursor = saved_cursor
        self.unsaved = StateChanges()
        self.out = OutboundQueue()
        self.inbound: CoalescingQueue[InboundPresence] = CoalescingQueue()
        self.out_work = asyncio.Event()
        self.in_work = asyncio.Event()
        self.users_changed = asyncio.Event()
        self.watching = False
        self.watch_error = ""
        self.delivery_error = ""
        self.inbound_error = ""
        self.last_sync = 0.0
        self.changes_in = 0
        self.users_seen: list[MappedUser] = []
        #: Short messages both ways, for a bridge whose platform carries them.
        self.messages = (
            MessageRelay(self.api, cast(MessageBridge, bridge), config.name, runner.log)
            if hasattr(bridge, "deliver_message")
            else None
        )
        # Report often enough that the session never lapses between two reports.
        interval = runner.options.status_interval
        self.status_interval = min(interval, lease / 3) if lease > 0 else interval

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def log(self) -> logging.Logger:
        return self.runner.log

    def _now(self) -> float:
        return self.runner.clock()

    # --- the session ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> _End:
        end = _End.STOPPED
        started = False
        try:
            await self._report()
            await self.bridge.start(
                BridgeContext(
                    connector=self.config,
                    saved=self.saved_entries,
                    bring_in=self._bring_in,
                    log=self.log,
                    clock=self.runner.clock,
                    bring_in_message=self._bring_in_message,
                )
            )
            started = True
            self.log.info("%s: bridge started (%s)", self.name, self.config.kind)
            await self._reconcile()
            end = await self._serve(stop)
        except _SessionEnded as ended:
            end = ended.end
            self.log.info("%s: %s (%s)", self.name, end.value, ended)
        except BridgeError as exc:
            self.delivery_error = f"cannot start: {exc}"
            self.log.error("%s: %s", self.name, self.delivery_error)
            with contextlib.suppress(_SessionEnded, grpc.aio.AioRpcError):
                await self._report()
            await _wait(stop, self.runner.options.max_backoff)
            end = _End.LOST if not stop.is_set() else _End.STOPPED
        finally:
            if started:
                with contextlib.suppress(Exception):
                    await self.bridge.close(remove=end is _End.GONE)
            self.unsaved.merge_newer(self.bridge.take_state_changes())
            if end is _End.STOPPED:
                await self._final_save()
        return end

    async def _serve(self, stop: asyncio.Event) -> _End:
        tasks = [
            asyncio.create_task(self._watch(), name=f"{self.name} watch"),
            asyncio.create_task(self._every(self.runner.options.checkpoint_interval, self._save)),
            asyncio.create_task(self._every(self.status_interval, self._report)),
            asyncio.create_task(self._users()),
        ]
        deliveries = max(1, int(getattr(self.bridge, "max_concurrent_deliveries", 1)))
        tasks.append(
            asyncio.create_task(self._dispatch(self.out, self.out_work, deliveries, self._deliver))
        )
        tasks.append(
            asyncio.create_task(
                self._dispatch(self.inbound, self.in_work, _INBOUND_CALLS, self._bring_in_one)
            )
        )
        if self.messages is not None:
            relay = self.messages.follow(self.runner.options.max_backoff)
            tasks.append(asyncio.create_task(relay, name=f"{self.name} messages"))
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is stopper:
                    return _End.STOPPED
                exc = task.exception()
                if isinstance(exc, _SessionEnded):
                    raise exc
                if exc is not None:
                    raise exc
            return _End.LOST  # pragma: no cover - the loops never return on their own
        finally:
            stopper.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.messages is not None:
                await self.messages.close()

    async def _every(self, interval: float, action: Callable[[], object]) -> None:
        while True:
            await asyncio.sleep(interval)
            result = action()
            if asyncio.iscoroutine(result):
                await result

    # --- out -----------------------------------------------------------------------------------

    def _outbound(self, update: PresenceUpdate) -> PresenceUpdate:
        # Never give a bridge back what it brought in: show the user's own state instead.
        return update.own_state() if update.brought_in_by(self.name) else update

    async def _watch(self) -> None:
        failures = 0
        while True:
            request = presence_pb2.WatchPresenceRequest(cursor=self.cursor or "")
            call = self.api.presence.WatchPresence(request, metadata=self.api.metadata)
            try:
                async for message in _stream(call):
                    self.watching = True
                    failures = 0
                    seq = self.out.note_cursor(message.cursor)
                    now = self._now()
                    if message.HasField("snapshot"):
                        for presence in message.snapshot.presences:
                            update = self._outbound(presence_from_pb(presence, now))
                            self.out.offer_update(update, seq, now)
                        self.users_changed.set()
                    elif message.HasField("change"):
                        update = self._outbound(change_from_pb(message.change))
                        self.out.offer_update(update, seq, update.changed_at or now)
                    self.cursor = message.cursor
                    self.out_work.set()
                self.watch_error = ""
            except grpc.aio.AioRpcError as exc:
                self.watching = False
                if exc.code() is grpc.StatusCode.INVALID_ARGUMENT:
                    self.cursor = None  # not a cursor of this control plane: start afresh
                self.watch_error = f"presence watch: {exc.code().name.lower()}: {exc.details()}"
                failures += 1
                delay = min(self.runner.options.max_backoff, 0.25 * 2 ** min(failures, 7))
                self.log.warning("%s: %s; again in %.1fs", self.name, self.watch_error, delay)
                await asyncio.sleep(delay)
            finally:
                call.cancel()
            self.watching = False

    async def _dispatch(
        self,
        queue: CoalescingQueue[T],
        work: asyncio.Event,
        limit: int,
        handle: Callable[[str, T], Awaitable[None]],
    ) -> None:
        """Hand the queue's items to ``handle``, at most ``limit`` at a time.

        One dispatcher waits for work, not ``limit`` workers: an event would wake every one of
        them for each item (hundreds of idle wake-ups per change at a few hundred changes/s).
        """
        slots = asyncio.Semaphore(limit)
        running: set[asyncio.Task[None]] = set()

        async def one(key: str, item: T) -> None:
            try:
                await handle(key, item)
            finally:
                slots.release()
                work.set()  # this key's next item (if any) may go now

        try:
            while True:
                await slots.acquire()
                taken = queue.take(self._now())
                if taken is None:
                    slots.release()
                    work.clear()
                    retry_at = queue.next_retry_at()
                    timeout = None if retry_at is None else max(0.01, retry_at - self._now())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(work.wait(), timeout)
                    continue
                task = asyncio.create_task(one(*taken))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _deliver(self, user: str, update: PresenceUpdate) -> None:
        out = self.out
        try:
            await self.bridge.deliver(update)
        except BridgeError as exc:
            out.failed(user, self._now(), self.runner.options.max_backoff)
            self.delivery_error = f"{update.sip_uri or user}: {exc}"
        except Exception as exc:
            self.log.exception("%s: delivering %s failed", self.name, user)
            out.failed(user, self._now(), self.runner.options.max_backoff)
            self.delivery_error = f"{update.sip_uri or user}: {exc!r}"
        else:
            out.done(user)
            self.delivery_error = ""
            if not len(out):
                self.last_sync = self._now()

    # --- in ------------------------------------------------------------------------------------

    def _bring_in_message(self, message: InboundMessage) -> None:
        if self.messages is not None:
            self.messages.bring_in(message)

    def _bring_in(self, inbound: InboundPresence) -> None:
        self.inbound.offer(inbound.user, inbound, 0, self._now())
        self.in_work.set()

    async def _bring_in_one(self, key: str, inbound: InboundPresence) -> None:
        queue = self.inbound
        try:
            await self._apply_inbound(inbound)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                self.log.warning(
                    "%s: state for %s not applied: %s", self.name, inbound.user, exc.details()
                )
                queue.drop(key)
            else:
                self.inbound_error = f"applying {inbound.user}: {exc.details()}"
                queue.failed(key, self._now(), self.runner.options.max_backoff)
        else:
            queue.done(key)
            self.changes_in += 1
            self.inbound_error = ""

    async def _apply_inbound(self, inbound: InboundPresence) -> None:
        api = self.api
        if inbound.availability is None:
            await api.presence.ClearPresence(
                inbound_to_clear(inbound, self.name), metadata=api.metadata, timeout=api.timeout
            )
            return
        try:
            await api.presence.SetPresence(
                inbound_to_set(inbound, self.name), metadata=api.metadata, timeout=api.timeout
            )
        except grpc.aio.AioRpcError as exc:
            not_allowed = (
                exc.code() is grpc.StatusCode.FAILED_PRECONDITION
                and inbound.availability is Availability.DO_NOT_DISTURB
            )
            if not not_allowed:
                raise
            # The user may not use DND in sip2uc (calls must ring): show busy instead.
            await api.presence.SetPresence(
                inbound_to_set(inbound, self.name, Availability.BUSY),
                metadata=api.metadata,
                timeout=api.timeout,
            )

    # --- users ---------------------------------------------------------------------------------

    async def _list_users(self) -> list[MappedUser]:
        api = self.api
        users: list[MappedUser] = []
        token = ""
        while True:
            page = await api.users.ListUsers(
                users_pb2.ListUsersRequest(page_size=1000, page_token=token),
                metadata=api.metadata,
                timeout=api.timeout,
            )
            users += [user_from_pb(u) for u in page.users]
            token = page.next_page_token
            if not token:
                return users

    async def _reconcile(self) -> None:
        self.users_seen = await self._list_users()
        await self.bridge.reconcile(self.users_seen)

    async def _users(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.users_changed.wait(), self.runner.options.reconcile_interval
                )
            self.users_changed.clear()
            try:
                await self._reconcile()
            except grpc.aio.AioRpcError as exc:
                self.log.warning("%s: listing users failed: %s", self.name, exc.details())

    # --- saving and reporting ------------------------------------------------------------------

    async def _save(self) -> None:
        self.unsaved.merge_newer(self.bridge.take_state_changes())
        cursor = self.out.safe_cursor()
        if cursor == self.saved_cursor and not self.unsaved:
            return
        pending = self.unsaved
        self.unsaved = StateChanges()
        try:
            for chunk in _chunks(pending):
                request = state_to_pb(self.name, self.token, cursor, chunk)
                await self.api.connectors.SaveConnectorState(
                    request, metadata=self.api.metadata, timeout=self.api.timeout
                )
                # Each chunk is durable on its own; what is left is retried whole next time.
                for key in chunk.upserts:
                    pending.upserts.pop(key, None)
                pending.deletes -= chunk.deletes
        except grpc.aio.AioRpcError as exc:
            pending.merge_newer(self.unsaved)
            self.unsaved = pending
            ended = _ended_by(exc)
            if ended is not None:
                raise ended from None
            self.log.warning("%s: saving state failed: %s", self.name, exc.details())
            return
        self.saved_cursor = cursor

    async def _final_save(self) -> None:
        try:
            await self._save()
            await self.api.connectors.ReleaseConnector(
                connectors_pb2.ReleaseConnectorRequest(name=self.name, session=self.token),
                metadata=self.api.metadata,
                timeout=self.api.timeout,
            )
        except (_SessionEnded, grpc.aio.AioRpcError) as exc:
            self.log.warning("%s: could not save state on stop: %s", self.name, exc)

    def health(self) -> BridgeHealth:
        health = self.bridge.health()
        error = self.delivery_error or self.watch_error or self.inbound_error
        if health.state is BridgeState.FAILED:
            return health
        if self.delivery_error:
            return replace(health, state=BridgeState.FAILED, last_error=error)
        if not self.watching:
            return replace(health, state=BridgeState.CONNECTING, last_error=error)
        return replace(health, last_error=health.last_error or error)

    async def _report(self) -> None:
        now = self._now()
        oldest = self.out.oldest_at()
        try:
            health = self.health()
        except Exception:  # a bridge that cannot say must not stop the reporting
            health = BridgeHealth(state=BridgeState.CONNECTING)
        status = status_to_pb(
            health,
            lag=0.0 if oldest is None else now - oldest,
            last_sync=self.last_sync,
            changes_out=self.out.done_count,
            changes_in=self.changes_in,
        )
        try:
            await self.api.connectors.ReportConnectorStatus(
                connectors_pb2.ReportConnectorStatusRequest(
                    name=self.name, session=self.token, status=status
                ),
                metadata=self.api.metadata,
                timeout=self.api.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            ended = _ended_by(exc)
            if ended is not None:
                raise ended from None
            self.log.warning("%s: status report failed: %s", self.name, exc.details())


def _chunks(changes: StateChanges) -> list[StateChanges]:
    upserts = list(changes.upserts.items())
    deletes = sorted(changes.deletes)
    out: list[StateChanges] = []
    while upserts or deletes or not out:
        chunk = StateChanges(dict(upserts[:_SAVE_CHUNK]), set(deletes[:_SAVE_CHUNK]))
        upserts, deletes = upserts[_SAVE_CHUNK:], deletes[_SAVE_CHUNK:]
        out.append(chunk)
    return out


async def _stream(
    call: grpc.aio.UnaryStreamCall[
        presence_pb2.WatchPresenceRequest, presence_pb2.WatchPresenceResponse
    ],
) -> AsyncIterator[presence_pb2.WatchPresenceResponse]:
    async for message in call:
        yield message


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
