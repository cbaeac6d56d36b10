"""Running every configured connector inside `sip2uc up`, as API clients of the control plane.

The supervisor lists the connectors every few seconds and keeps one `BridgeRunner` per connector
that is neither disabled nor marked ``external`` (those are run by `sip2uc connector run` on
another host) and whose kind has a bridge here. A runner ends by itself when its connector is
deleted or disabled; one whose connector became external is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

import grpc
from sip2uc.v1 import connectors_pb2

from .bridge import BridgeFactory
from .control_api import ControlApi
from .runner import BridgeRunner, RunnerOptions

__all__ = ["ConnectorSupervisor"]

log = logging.getLogger(__name__)


class ConnectorSupervisor:
    def __init__(
        self,
        api: ControlApi,
        factories: Mapping[str, BridgeFactory],
        *,
        runner_name: str | None = None,
        poll_interval: float = 5.0,
        options: RunnerOptions | None = None,
    ) -> None:
        self.api = api
        self.factories = factories
        self.runner_name = runner_name
        self.poll_interval = poll_interval
        self.options = options
        self.runners: dict[str, tuple[BridgeRunner, asyncio.Event, asyncio.Task[None]]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    await self._sync()
                except grpc.aio.AioRpcError as exc:
                    log.warning("listing connectors failed: %s", exc.details())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_interval)
        finally:
            await self.stop_all()

    async def _sync(self) -> None:
        wanted: set[str] = set()
        token = ""
        while True:
            page = await self.api.connectors.ListConnectors(
                connectors_pb2.ListConnectorsRequest(page_size=1000, page_token=token),
                metadata=self.api.metadata,
                timeout=self.api.timeout,
            )
            for connector in page.connectors:
                kind = connector.WhichOneof("config") or ""
                if connector.disabled or connector.external or kind not in self.factories:
                    continue
                wanted.add(connector.name)
            token = page.next_page_token
            if not token:
                break
        for name, (_, _, task) in list(self.runners.items()):
            if task.done():
                del self.runners[name]
        for name in wanted - set(self.runners):
            stop = asyncio.Event()
            runner = BridgeRunner(
                self.api,
                name,
                self.factories,
                runner_name=self.runner_name,
                options=self.options,
            )
            task = asyncio.create_task(runner.run(stop), name=f"bridge {name}")
            self.runners[name] = (runner, stop, task)
            log.info("running the bridge of %s", name)
        for name in set(self.runners) - wanted:
            await self._stop(name)

    async def _stop(self, name: str) -> None:
        _, stop, task = self.runners.pop(name)
        stop.set()
        with contextlib.suppress(Exception):
            await task

    async def stop_all(self) -> None:
        for name in list(self.runners):
            await self._stop(name)
