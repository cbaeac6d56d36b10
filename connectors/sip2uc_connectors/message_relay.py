"""Short messages between sip2uc and a bridge whose platform carries them (`MessageBridge`).

Out: follows ``MessageService.WatchMessages`` from the moment the bridge started (a message
accepted while no bridge ran is not sent later: its sender has long had its answer) and gives
the bridge each message that did not come from the UC side, one at a time in order. In: a text
the bridge brings in is sent to the user's handsets with ``SendMessage`` (``sender_uri``: the
platform's sender), a few at a time, never retried (the platform has had its answer).
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from sip2uc.v1 import messages_pb2

from .bridge import BridgeError, InboundMessage, MessageBridge, OutboundMessage
from .control_api import ControlApi
from .convert import inbound_message_to_send, message_from_pb

__all__ = ["MessageRelay"]

#: Texts from the platform being sent at once; more wait for a slot.
IN_FLIGHT = 8
#: Texts from the platform waiting for a slot before new ones are dropped (and logged).
BACKLOG = 1000


class MessageRelay:
    def __init__(
        self, api: ControlApi, bridge: MessageBridge, name: str, log: logging.Logger
    ) -> None:
        self.api = api
        self.bridge = bridge
        self.name = name
        self.log = log
        self.cursor = ""
        self.sent = 0
        self.brought_in = 0
        self.error = ""
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()

    async def follow(self, max_backoff: float) -> None:
        """Give the bridge every new message, resuming from the last cursor after a drop."""
        failures = 0
        while True:
            request = messages_pb2.WatchMessagesRequest(cursor=self.cursor)
            call = self.api.messages.WatchMessages(request, metadata=self.api.metadata)
            try:
                await call.initial_metadata()  # the control plane has accepted the watch
                if failures == 0:
                    self.log.info("%s: carrying short messages to the platform", self.name)
                async for response in call:
                    failures = 0
                    self.cursor = response.cursor
                    if response.HasField("message"):
                        outbound = message_from_pb(response.message)
                        if outbound is not None:
                            await self._deliver(outbound.name, outbound)
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.INVALID_ARGUMENT:
                    self.cursor = ""
                failures += 1
                delay = min(max_backoff, 0.25 * 2 ** min(failures, 7))
                self.log.warning(
                    "%s: message watch: %s; again in %.1fs", self.name, exc.code().name, delay
                )
                await asyncio.sleep(delay)
            finally:
                call.cancel()

    async def _deliver(self, name: str, message: OutboundMessage) -> None:
        try:
            await self.bridge.deliver_message(message)
        except BridgeError as exc:
            self.error = f"{name}: {exc}"
            self.log.info("%s: %s not carried to the platform: %s", self.name, name, exc)
        else:
            self.sent += 1

    def bring_in(self, message: InboundMessage) -> None:
        if len(self._tasks) >= BACKLOG:
            self.log.warning("%s: too many texts from the platform; one dropped", self.name)
            return
        task = asyncio.get_running_loop().create_task(self._send(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, message: InboundMessage) -> None:
        async with self._slots:
            try:
                await self.api.messages.SendMessage(
                    inbound_message_to_send(message),
                    metadata=self.api.metadata,
                    timeout=self.api.timeout,
                )
            except grpc.aio.AioRpcError as exc:
                self.error = f"text for {message.user}: {exc.details()}"
                self.log.info("%s: %s", self.name, self.error)
            else:
                self.brought_in += 1

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
