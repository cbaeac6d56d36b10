"""The watch streams that keep the state view current (asyncio and gRPC; the logic is in
`state`).

One task per stream: it opens the watch, turns the snapshot and then every message into calls
on `StateView`, and hands the changed parts to `changed` (the hub). A stream that breaks or ends
(the server cuts off watchers that fall far behind, or restarts) is opened again after a pause
that grows to `MAX_BACKOFF_SECONDS`, and starts with a fresh snapshot that replaces what the
view held, so nothing missed in between stays wrong. While it is down the page says so. A
control plane without a stream (UNIMPLEMENTED) is not asked again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import grpc
from sip2uc.client import describe_rpc_error
from sip2uc.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    calls_pb2,
    calls_pb2_grpc,
    connectors_pb2,
    connectors_pb2_grpc,
    presence_pb2,
    presence_pb2_grpc,
    registrations_pb2,
    registrations_pb2_grpc,
)

from . import convert
from .connection import ControlTarget
from .model import FeedStatus
from .state import Part, StateView

log = logging.getLogger(__name__)

MIN_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 10.0
# The unary call that loads the call history when the calls feed (re)starts.
HISTORY_TIMEOUT_SECONDS = 15.0
FEEDS = ("sidecars", "presence", "registrations", "calls", "connectors", "warnings")

T = TypeVar("T")
Changed = Callable[[Iterable[Part]], None]
Live = Callable[[], None]


class Feeds:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        target: ControlTarget,
        state: StateView,
        changed: Changed,
    ) -> None:
        self._target = target
        self._metadata = target.metadata
        self._state = state
        self._changed = changed
        self._admin = admin_pb2_grpc.AdminServiceStub(channel)
        self._presence_stub = presence_pb2_grpc.PresenceServiceStub(channel)
        self._registrations = registrations_pb2_grpc.RegistrationServiceStub(channel)
        self._calls = calls_pb2_grpc.CallServiceStub(channel)
        self._connectors = connectors_pb2_grpc.ConnectorServiceStub(channel)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        bodies: dict[str, Callable[[Live], Awaitable[None]]] = {
            "sidecars": self._follow_sidecars,
            "presence": self._follow_presence,
            "registrations": self._follow_registrations,
            "calls": self._follow_calls,
            "connectors": self._follow_connectors,
            "warnings": self._follow_warnings,
        }
        for name in FEEDS:
            self._status(FeedStatus(name, live=False, problem=""))
            self._tasks.append(
                asyncio.create_task(self._keep(name, bodies[name]), name=f"state-view-{name}")
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def _status(self, status: FeedStatus) -> None:
        self._changed(self._state.feed_changed(status))

    async def _keep(self, name: str, body: Callable[[Live], Awaitable[None]]) -> None:
        """Follow one stream for as long as the view runs."""
        delay = MIN_BACKOFF_SECONDS
        reported = ""
        while True:
            went_live = False

            def live() -> None:
                nonlocal went_live
                went_live = True
                self._status(FeedStatus(name, live=True, problem=""))

            try:
                await body(live)
                problem = "the control plane ended the stream; watching again"
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    self._status(FeedStatus(name, live=False, problem="", offered=False))
                    log.info("the control plane has no %s stream; not shown", name)
                    return
                problem = describe_rpc_error(exc, self._target.normalised).message
            except Exception:
                # A message the view cannot take (a bug, or a newer server): start over from a
                # fresh snapshot rather than leave the section silently frozen.
                log.exception("state view: the %s feed failed", name)
                problem = "the state view failed to apply an update (see its log); watching again"
            self._status(FeedStatus(name, live=False, problem=problem))
            if went_live or problem != reported:
                log.warning("state view: the %s feed is down: %s", name, problem)
                reported = problem
            if went_live:
                delay = MIN_BACKOFF_SECONDS
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    # --- the streams ---------------------------------------------------------------------------

    async def _snapshot_then_changes(
        self,
        stream: AsyncIterable[Any],
        item: Callable[[Any], T],
        snapshot: Callable[[list[T]], set[Part]],
        change: Callable[[Any], set[Part]],
        live: Live,
        before_live: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Follows a stream shaped like WatchCalls: snapshot items, a `snapshot_complete`
        message, then changes. The snapshot replaces what the view held."""
        held: list[T] = []
        complete = False
        async for message in stream:
            if message.snapshot_complete:
                complete = True
                self._changed(snapshot(held))
                if before_live is not None:
                    await before_live()
                live()
            elif not complete:
                held.append(item(message))
            else:
                self._changed(change(message))

    async def _follow_sidecars(self, live: Live) -> None:
        await self._snapshot_then_changes(
            self._admin.WatchSidecars(admin_pb2.WatchSidecarsRequest(), metadata=self._metadata),
            lambda m: convert.sidecar(m.sidecar),
            self._state.sidecars_snapshot,
            lambda m: self._state.sidecar_changed(convert.sidecar(m.sidecar)),
            live,
        )

    async def _follow_presence(self, live: Live) -> None:
        # No cursor: a fresh snapshot replaces the view, which needs no change it missed.
        stream = self._presence_stub.WatchPresence(
            presence_pb2.WatchPresenceRequest(), metadata=self._metadata
        )
        async for message in stream:
            kind = message.WhichOneof("event")
            if kind == "snapshot":
                presences = [convert.presence(p) for p in message.snapshot.presences]
                self._changed(self._state.presence_snapshot(presences))
                live()
            elif kind == "change":
                self._changed(
                    self._state.presence_changed(convert.presence(message.change.current))
                )

    async def _follow_registrations(self, live: Live) -> None:
        events = {
            registrations_pb2.REGISTRATION_EVENT_TYPE_ADDED: self._state.registration_added,
            registrations_pb2.REGISTRATION_EVENT_TYPE_REFRESHED: self._state.registration_refreshed,
            registrations_pb2.REGISTRATION_EVENT_TYPE_REMOVED: self._state.registration_removed,
        }

        def change(message: registrations_pb2.WatchRegistrationsResponse) -> set[Part]:
            apply = events.get(message.type)
            return apply(convert.registration(message.registration)) if apply else set()

        await self._snapshot_then_changes(
            self._registrations.WatchRegistrations(
                registrations_pb2.WatchRegistrationsRequest(), metadata=self._metadata
            ),
            lambda m: convert.registration(m.registration),
            self._state.registrations_snapshot,
            change,
            live,
        )

    async def _follow_calls(self, live: Live) -> None:
        async def load_history() -> None:
            # The calls that ended before this stream; those ending from now on arrive on it.
            history = await self._calls.ListCallHistory(
                calls_pb2.ListCallHistoryRequest(page_size=self._state.history_limit),
                metadata=self._metadata,
                timeout=HISTORY_TIMEOUT_SECONDS,
            )
            self._changed(self._state.history_loaded(convert.call(c) for c in history.calls))

        await self._snapshot_then_changes(
            self._calls.WatchCalls(calls_pb2.WatchCallsRequest(), metadata=self._metadata),
            lambda m: convert.call(m.call),
            self._state.calls_snapshot,
            lambda m: self._state.call_changed(convert.call(m.call)),
            live,
            before_live=load_history,
        )

    async def _follow_connectors(self, live: Live) -> None:
        def change(message: connectors_pb2.WatchConnectorsResponse) -> set[Part]:
            view = convert.connector(message.connector)
            if message.deleted:
                return self._state.connector_deleted(view)
            return self._state.connector_changed(view)

        await self._snapshot_then_changes(
            self._connectors.WatchConnectors(
                connectors_pb2.WatchConnectorsRequest(), metadata=self._metadata
            ),
            lambda m: convert.connector(m.connector),
            self._state.connectors_snapshot,
            change,
            live,
        )

    async def _follow_warnings(self, live: Live) -> None:
        await self._snapshot_then_changes(
            self._admin.WatchLogEntries(
                admin_pb2.WatchLogEntriesRequest(), metadata=self._metadata
            ),
            lambda m: convert.log_entry(m.entry),
            self._state.warnings_snapshot,
            lambda m: self._state.warning_logged(convert.log_entry(m.entry)),
            live,
        )
