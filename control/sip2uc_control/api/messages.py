"""MessageService: short messages from the API, the history, and the resumable watch.

The conversions of ``messages.proto`` live here, next to the servicer that alone uses them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from sip2uc.v1 import messages_pb2, messages_pb2_grpc
from sip2uc_core.sip.errors import SipParseError
from sip2uc_core.sip.uri import SipUri, parse_uri

from ..core import ControlCore
from ..errors import FieldViolation, InvalidArgument, NotFound
from ..messaging.model import DeliveryState, MessageOrigin, ShortMessage
from .convert import ts
from .paging import decode_token, encode_token, page_size
from .status import streaming, unary

Ctx = grpc.aio.ServicerContext[Any, Any]
MAX_WATCHED_USERS = 1000
MAX_DISPLAY_NAME = 128

_ORIGINS = {
    MessageOrigin.HANDSET: messages_pb2.MESSAGE_ORIGIN_HANDSET,
    MessageOrigin.API: messages_pb2.MESSAGE_ORIGIN_API,
    MessageOrigin.UC: messages_pb2.MESSAGE_ORIGIN_UC,
}
_STATES = {
    DeliveryState.PENDING: messages_pb2.DELIVERY_STATE_PENDING,
    DeliveryState.DELIVERED: messages_pb2.DELIVERY_STATE_DELIVERED,
    DeliveryState.FAILED: messages_pb2.DELIVERY_STATE_FAILED,
}


def message_to_pb(m: ShortMessage) -> messages_pb2.ShortMessage:
    return messages_pb2.ShortMessage(
        name=m.name,
        sender=f"users/{m.sender_id}" if m.sender_id else "",
        sender_uri=m.sender_uri,
        sender_display_name=m.sender_display_name,
        recipient=f"users/{m.recipient_id}",
        recipient_uri=m.recipient_uri,
        text=m.text,
        create_time=ts(m.create_time),
        origin=_ORIGINS[m.origin],
        state=_STATES[m.state],
        devices_attempted=m.attempted,
        devices_delivered=m.delivered,
        devices_failed=m.failed,
        failure_reason=m.failure_reason,
    )


#: Message numbers are 64-bit signed integers in the database.
MAX_NUMBER = 2**63 - 1


def _number(text: str, field: str, prefix: str = "") -> int:
    value = text[len(prefix) :] if prefix and text.startswith(prefix) else text
    ok = value.isascii() and value.isdigit() and len(value) <= 19 and int(value) <= MAX_NUMBER
    if not ok or (prefix and not text.startswith(prefix)):
        wanted = f"{prefix}{{number}}" if prefix else "a cursor from a previous response"
        raise InvalidArgument(FieldViolation(field, f"must be {wanted}"))
    return int(value)


def _external_sender(request: messages_pb2.SendMessageRequest) -> tuple[str, str] | None:
    """(SIP URI, display name) of a sender on the UC side, checked; None without one."""
    if not request.sender_uri:
        if request.sender_display_name:
            raise InvalidArgument(FieldViolation("sender_display_name", "only with sender_uri"))
        return None
    if request.sender:
        raise InvalidArgument(FieldViolation("sender_uri", "give sender or sender_uri, not both"))
    try:
        parsed = parse_uri(request.sender_uri)
    except SipParseError:
        parsed = None
    if not isinstance(parsed, SipUri) or parsed.user is None:
        raise InvalidArgument(FieldViolation("sender_uri", "must be a SIP URI like sip:user@host"))
    name = request.sender_display_name
    if len(name) > MAX_DISPLAY_NAME or not name.isprintable():
        raise InvalidArgument(
            FieldViolation(
                "sender_display_name", f"at most {MAX_DISPLAY_NAME} printable characters"
            )
        )
    return str(parsed), name


class MessageServicer(messages_pb2_grpc.MessageServiceServicer):
    def __init__(self, core: ControlCore) -> None:
        self.core = core

    @unary
    async def SendMessage(
        self, request: messages_pb2.SendMessageRequest, context: Ctx
    ) -> messages_pb2.SendMessageResponse:
        recipient = self.core.resolve_user(request.recipient, "recipient")
        sender = self.core.resolve_user(request.sender, "sender") if request.sender else None
        external = _external_sender(request)
        message = await self.core.messages.send(sender, recipient, request.text, external=external)
        self.core.metrics.messages.add(1, {"origin": "api", "outcome": message.state.value})
        return messages_pb2.SendMessageResponse(message=message_to_pb(message))

    @unary
    async def GetMessage(
        self, request: messages_pb2.GetMessageRequest, context: Ctx
    ) -> messages_pb2.GetMessageResponse:
        seq = _number(request.name, "name", "messages/")
        message = await self.core.messages.get(seq)
        if message is None:
            raise NotFound("message", request.name)
        return messages_pb2.GetMessageResponse(message=message_to_pb(message))

    @unary
    async def ListMessages(
        self, request: messages_pb2.ListMessagesRequest, context: Ctx
    ) -> messages_pb2.ListMessagesResponse:
        size = page_size(request.page_size)
        before = decode_token(request.page_token) if request.page_token else None
        if before is not None and before > MAX_NUMBER:
            raise InvalidArgument(
                FieldViolation("page_token", "not a token from a previous response")
            )
        user = self.core.resolve_user(request.user, "user") if request.user else None
        found = await self.core.messages.page(user.id if user else None, before, size + 1)
        more = len(found) > size
        page = found[:size]
        return messages_pb2.ListMessagesResponse(
            messages=[message_to_pb(m) for m in page],
            next_page_token=encode_token(page[-1].seq) if more and page else "",
        )

    @streaming
    async def WatchMessages(
        self, request: messages_pb2.WatchMessagesRequest, context: Ctx
    ) -> AsyncIterator[messages_pb2.WatchMessagesResponse]:
        if len(request.users) > MAX_WATCHED_USERS:
            raise InvalidArgument(
                FieldViolation("users", f"give at most {MAX_WATCHED_USERS} user references")
            )
        users = [self.core.resolve_user(ref, f"users[{i}]") for i, ref in enumerate(request.users)]
        ids = frozenset(u.id for u in users) if users else None
        cursor = _number(request.cursor, "cursor") if request.cursor else None
        # Accepted: say so now rather than with the first message, which may be hours away.
        await context.send_initial_metadata(())
        async for item in self.core.messages.watch(ids, cursor):
            if item.message is None:
                yield messages_pb2.WatchMessagesResponse(
                    cursor_expired=messages_pb2.CursorExpired(requested_cursor=request.cursor),
                    cursor=str(item.cursor),
                )
            else:
                yield messages_pb2.WatchMessagesResponse(
                    message=message_to_pb(item.message), cursor=str(item.cursor)
                )
