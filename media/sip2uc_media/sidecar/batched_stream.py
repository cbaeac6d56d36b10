"""One bidirectional gRPC stream that carries many request/answer calls (``RegisterStream``,
``CallStream``): calls queued in the same loop turn, or while the previous write was under way,
leave in one message; answers are matched by correlation id and may come in any order.

Each call keeps a deadline, enforced by one periodic sweep rather than a timer per call, and
carries the trace context of the span it was made in (``traceparent``). Calls leave in the order
they were made, which the control plane keeps per leg (``CallStream``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

import grpc
from opentelemetry import propagate

from .requests import ControlUnavailableError

__all__ = ["BatchedStream", "CallFailedError", "CallT", "ReplyT", "Resolver"]

_log = logging.getLogger(__name__)


class CallFailedError(ControlUnavailableError):
    """The control plane answered a call with an error status."""

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
#: Completes one call: (reply, None) or (None, the error).
Resolver = Callable[[ReplyT | None, Exception | None], None]


def _status_name(code: int) -> str:
    for candidate in grpc.StatusCode:
        if candidate.value[0] == code:
            return str(candidate.name)
    return "UNKNOWN"


class BatchedStream(Generic[CallT, ReplyT]):
    """See the module docstring. `batch` makes one request message of queued calls; `replies`
    takes the answers out of a response message."""

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
        self._writer = self._loop.create_task(self._write_loop(), name=f"{name}-writer")
        self._reader = self._loop.create_task(self._read_loop(), name=f"{name}-reader")

    def backlog(self, now: float) -> tuple[int, float]:
        """Unanswered calls, and how long the oldest of them has waited (seconds)."""
        pending = self._pending
        if not pending:
            return 0, 0.0
        _resolve, deadline, _method = pending[next(iter(pending))]
        return len(pending), now - (deadline - self._timeout)

    async def call(self, message: CallT, method: str) -> ReplyT:
        """Send `message` (its correlation id and trace context are filled in here) and wait for
        its reply; an answer with an error code raises `CallFailedError`, a missed deadline or
        the stream's end `ControlUnavailableError`.
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
        context is taken from the caller's current context. Returns the correlation id; raises
        `ControlUnavailableError` on a closed stream.
        """
        if self.closed:
            raise ControlUnavailableError(f"{self._name} closed")
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
                    # Calls whose deadline passed while they waited here were answered
                    # DEADLINE_EXCEEDED already: the control plane must not work on them.
                    pending = self._pending
                    live = [m for m in batch if m.correlation_id in pending]
                    if live:
                        await self._call.write(self._batch(live))
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
                        self._resolve(entry[0], None, CallFailedError(entry[2], reply.error_code))
                    else:
                        self._resolve(entry[0], reply, None)
        except grpc.aio.AioRpcError as exc:
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
