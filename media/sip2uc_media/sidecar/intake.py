"""The asyncio side of the intake: every received message goes through `Intake.receive`.

It offers the message to the `overload.IntakeQueue` (which sorts, bounds and sheds) and serves
the queue to the SIP edge from a loop callback, a time budget at a time, so that the sockets
are read (and the queue, not the kernel, holds the backlog) and the control link's replies
are handled between two batches. New work the queue refuses with an `ANSWERED` reason gets a
503 with Retry-After made from its raw bytes, without a parse or a transaction; its ACK
carries the intake's own To tag (`shed_tag`) and is dropped when it comes back.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable

from ..transport.base import MessageSink, Source
from .overload import ANSWERED, IntakeQueue, Reason, retry_after
from .raw_response import shed_response
from .telemetry import IntakeMetrics

__all__ = ["Backlog", "Intake"]

#: (unanswered requests, age of the oldest in seconds) of the control link.
Backlog = Callable[[], tuple[int, float]]

#: Seconds of serving per loop callback before the sockets and the control link get a turn.
BUDGET = 0.004
#: How often the control link's backlog is read while messages arrive (seconds).
BACKLOG_EVERY = 0.01
#: While only new work waits for the control plane to catch up, how often to look again.
PAUSE_RECHECK = 0.01


class Intake:
    def __init__(
        self,
        *,
        serve: MessageSink,
        queue: IntakeQueue[Source],
        absorb: Callable[[bytes], bool] | None = None,
        screen: Callable[[str, float], bool] | None = None,
        clock: Callable[[], float],
        retry_after: int = 5,
        backlog: Backlog | None = None,
        rng: random.Random | None = None,
        metrics: IntakeMetrics | None = None,
        budget: float = BUDGET,
    ) -> None:
        self.queue = queue
        if not queue.shed_tag:
            queue.shed_tag = os.urandom(6).hex().encode()
        self._serve = serve
        self._absorb = absorb
        self._screen = screen
        self._clock = clock
        self._retry_after = retry_after
        self._backlog = backlog
        self._rng = rng or random.Random()
        self._metrics = metrics
        self._budget = budget
        self._scheduled = False
        self._handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self._backlog_at = float("-inf")
        #: 503s sent for shed new work.
        self.answered = 0

    def receive(self, data: bytes, source: Source) -> None:
        """A `MessageSink`: never raises."""
        queue = self.queue
        now = self._clock()
        if self._screen is not None and not self._screen(source.host, now):
            return  # a banned or foreign source: dropped before anything else (and counted)
        if now - self._backlog_at >= BACKLOG_EVERY:
            # Also here, not only when serving: while everything new is refused nothing is
            # served, and a stale "behind" would refuse it for ever.
            self._refresh_backlog(now)
        if self._absorb is not None and self._absorb(data):
            # A retransmission of a request being served: its transaction took care of it.
            queue.refused[Reason.RETRANSMISSION] += 1
            return
        reason = queue.offer(data, source.host, source, now)
        if reason is None:
            if not self._scheduled:
                self._schedule()
        elif reason in ANSWERED:
            self._answer_503(data, source)

    def _answer_503(self, data: bytes, source: Source) -> None:
        seconds = retry_after(self._retry_after, self._rng)
        response = shed_response(
            data,
            503,
            to_tag=self.queue.shed_tag,
            source_host=source.host,
            source_port=source.port,
            headers=((b"Retry-After", b"%d" % seconds),),
        )
        if response is not None and source.send(response):
            self.answered += 1

    def _schedule(self) -> None:
        self._scheduled = True
        self._handle = asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        self._handle = None
        queue = self.queue
        clock = self._clock
        self._refresh_backlog(clock())
        perf = time.perf_counter
        stop = perf() + self._budget
        first = True
        served = 0
        while True:
            now = clock()
            item = queue.take(now)
            if item is None:
                break
            served += 1
            if first and self._metrics is not None:
                # One sample per batch: what the first message served had waited.
                self._metrics.delay.record(now - item.arrived)
                first = False
            self._serve(item.data, item.payload)
            if perf() >= stop:
                break
        if len(queue) and not self._scheduled:
            if served:
                self._schedule()
            else:
                # Only new work waits, for the control plane: look again a little later
                # rather than spin (the loop idles meanwhile, and the control plane runs).
                self._scheduled = True
                self._handle = asyncio.get_running_loop().call_later(PAUSE_RECHECK, self._drain)

    def _refresh_backlog(self, now: float) -> None:
        self._backlog_at = now
        if self._backlog is not None:
            self.queue.control_backlog(*self._backlog())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._scheduled = False
