"""`TeamsPresenceBridge`: the asyncio driver of the Teams protocol core.

The framework gives it the latest sip2uc state of users (`publish`), takes states set in Teams
(`poll`), reads its health (`status`) and saves/restores what it believes Graph holds
(`export_state`/`restore_state`) across restarts. One task asks the core for work, sends each
call as its own task (the core bounds how many are in flight) and sleeps until the core's next
deadline or new input.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Mapping, Sequence
from random import Random
from types import TracebackType

from .auth import MsalTokenSource, TokenError, TokenSource
from .config import TeamsConfig
from .graph_calls import GraphCall
from .graph_http import GraphHttp, TransportError
from .model import BridgeStatus, ConnectionState, InboundPresence, OutboundPresence
from .sync import PresenceSync

log = logging.getLogger(__name__)


class TeamsPresenceBridge:
    def __init__(
        self,
        config: TeamsConfig,
        *,
        tokens: TokenSource | None = None,
        rng: Random | None = None,
    ) -> None:
        self.config = config
        self._sync = PresenceSync(
            app_id=config.client_id, mapping=config.mapping, timing=config.timing, rng=rng
        )
        self._tokens = tokens or MsalTokenSource(config)
        self._http = GraphHttp(
            graph_root=config.graph_root,
            tokens=self._tokens,
            timeout=config.request_timeout,
            ca_file=config.ca_file,
        )
        self._wake = asyncio.Event()
        self._inbound = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self._closed = False
        self._reported: tuple[ConnectionState, str | None] = (ConnectionState.CONNECTING, None)

    async def __aenter__(self) -> TeamsPresenceBridge:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def start(self) -> None:
        if self._closed:
            raise RuntimeError("the bridge is closed")
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run(), name="teams-bridge")

    async def publish(self, changes: Sequence[OutboundPresence]) -> None:
        """The latest sip2uc state of these users; returns at once, Graph follows."""
        self.start()
        self._sync.publish(changes, self._now())
        self._wake.set()

    async def poll(self) -> Sequence[InboundPresence]:
        """Waits until Teams shows something new for some users and returns it (the latest per
        user); returns an empty sequence once the bridge is closed."""
        self.start()
        while True:
            self._inbound.clear()
            found = self._sync.take_inbound()
            if found or self._closed:
                return found
            await self._inbound.wait()

    @property
    def status(self) -> BridgeStatus:
        now = self._now()
        core = self._sync.status(now)
        throttled = None
        if core.throttled_until is not None:
            throttled = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
                seconds=core.throttled_until - now
            )
        return BridgeStatus(
            state=core.state,
            last_error=core.last_error,
            throttled_until=throttled,
            pending_users=core.pending_users,
            users=core.users,
        )

    def export_state(self) -> dict[str, dict[str, str | None]]:
        return self._sync.export_state()

    def restore_state(self, saved: Mapping[str, Mapping[str, str | None]]) -> None:
        self._sync.restore_state(saved, self._now())
        self._wake.set()

    async def close(self) -> None:
        self._closed = True
        self._inbound.set()
        tasks = [*self._calls, *([self._runner] if self._runner else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._runner = None
        await self._http.close()
        await self._tokens.close()

    # -- driving the core ---------------------------------------------------------------------

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    async def _run(self) -> None:
        while not self._closed:
            self._wake.clear()
            now = self._now()
            while (call := self._sync.next_call(now)) is not None:
                task = asyncio.get_running_loop().create_task(self._send(call))
                self._calls.add(task)
                task.add_done_callback(self._calls.discard)
            deadline = self._sync.next_deadline(now)
            timeout = None if deadline is None else max(0.0, deadline - self._now())
            # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a cancellation that
            # arrives as the event is set, and close() would wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _send(self, call: GraphCall) -> None:
        try:
            reply = await self._http.send(call)
        except TokenError as exc:
            self._sync.handle_failure(call, f"token: {exc}", self._now(), auth=not exc.transient)
        except TransportError as exc:
            self._sync.handle_failure(call, str(exc), self._now())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("Teams bridge: %s failed unexpectedly", call.describe())
            self._sync.handle_failure(call, f"unexpected {type(exc).__name__}", self._now())
        else:
            self._sync.handle_reply(call, reply, self._now())
        self._report()
        self._inbound.set()
        self._wake.set()

    def _report(self) -> None:
        """Log state changes and new errors once, not per request."""
        current = self._sync.health()
        if current == self._reported:
            return
        previous_state = self._reported[0]
        self._reported = current
        state, error = current
        if state is not previous_state:
            level = logging.WARNING if state is ConnectionState.FAILED else logging.INFO
            log.log(level, "Teams bridge %s (%s)", state, error or "no error")
        elif error is not None:
            log.info("Teams bridge: %s", error)
