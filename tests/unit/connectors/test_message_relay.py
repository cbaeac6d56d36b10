"""The runner's message relay with a fake API and bridge: what it gives the bridge from the
watch (never what came from the UC side), and what it sends for a text the bridge brings in."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from sip2uc.v1 import messages_pb2
from sip2uc_connectors.bridge import BridgeError, InboundMessage, OutboundMessage
from sip2uc_connectors.message_relay import MessageRelay


class Watch:
    """A WatchMessages call that yields the given responses, then stays open."""

    def __init__(self, responses: list[messages_pb2.WatchMessagesResponse]) -> None:
        self.responses = responses

    async def initial_metadata(self) -> tuple[()]:
        return ()

    def __aiter__(self) -> AsyncIterator[messages_pb2.WatchMessagesResponse]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[messages_pb2.WatchMessagesResponse]:
        for response in self.responses:
            yield response
        await asyncio.Event().wait()

    def cancel(self) -> None:
        pass


class Messages:
    def __init__(self, responses: list[messages_pb2.WatchMessagesResponse]) -> None:
        self.responses = responses
        self.sent: list[messages_pb2.SendMessageRequest] = []

    def WatchMessages(self, request: Any, metadata: Any) -> Watch:
        return Watch(self.responses)

    async def SendMessage(self, request: Any, metadata: Any, timeout: float) -> None:
        self.sent.append(request)


class Api:
    def __init__(self, messages: Messages) -> None:
        self.messages = messages
        self.metadata = ()
        self.timeout = 1.0


class Bridge:
    def __init__(self) -> None:
        self.got: list[OutboundMessage] = []

    async def deliver_message(self, message: OutboundMessage) -> None:
        self.got.append(message)
        if message.text == "refuse me":
            raise BridgeError("486 Busy Here")


def response(seq: int, text: str, origin: int) -> messages_pb2.WatchMessagesResponse:
    return messages_pb2.WatchMessagesResponse(
        cursor=str(seq),
        message=messages_pb2.ShortMessage(
            name=f"messages/{seq}",
            recipient="users/u2",
            recipient_uri="sip:2@example.com",
            sender_uri="sip:1@example.com",
            text=text,
            origin=origin,  # type: ignore[arg-type]
        ),
    )


async def test_the_bridge_gets_every_message_but_those_from_the_uc_side_in_order() -> None:
    api = Messages(
        [
            response(1, "one", messages_pb2.MESSAGE_ORIGIN_HANDSET),
            response(2, "from uc", messages_pb2.MESSAGE_ORIGIN_UC),
            response(3, "refuse me", messages_pb2.MESSAGE_ORIGIN_API),
            response(4, "four", messages_pb2.MESSAGE_ORIGIN_API),
        ]
    )
    bridge = Bridge()
    relay = MessageRelay(Api(api), bridge, "kam", logging.getLogger("test"))  # type: ignore[arg-type]

    task = asyncio.create_task(relay.follow(1.0))
    for _ in range(20):
        await asyncio.sleep(0)
    task.cancel()

    assert [m.text for m in bridge.got] == ["one", "refuse me", "four"]
    assert (relay.cursor, relay.sent, relay.error) == ("4", 2, "messages/3: 486 Busy Here")


async def test_a_text_brought_in_is_sent_to_the_user_with_its_uc_sender() -> None:
    api = Messages([])
    relay = MessageRelay(Api(api), Bridge(), "kam", logging.getLogger("test"))  # type: ignore[arg-type]

    relay.bring_in(
        InboundMessage(user="users/u2", sender_uri="sip:c@uc", sender_display_name="C", text="hi")
    )
    for _ in range(5):
        await asyncio.sleep(0)

    (request,) = api.sent
    assert (request.recipient, request.text, request.sender_uri, request.sender_display_name) == (
        "users/u2",
        "hi",
        "sip:c@uc",
        "C",
    )
    assert request.sender == ""
    assert relay.brought_in == 1
