"""MessageService over gRPC: sending, the history, and a watch that resumes from its cursor
without gaps or duplicates (and says so when retention has trimmed past it).

The recipients have no handset registered, so every message is kept FAILED ("recipient
offline") at once: what is under test here is the history and the stream, not delivery (the
SIPp tests in tests/interop/test_sipp_messages.py deliver to real handsets).
"""

from __future__ import annotations

import base64
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sip2uc.v1 import messages_pb2, messages_pb2_grpc, users_pb2, users_pb2_grpc
from sip2uc_control.app import ControlConfig, ControlPlane

from .in_memory import Clock

DAY = 86400.0


async def make_user(channel: grpc.aio.Channel, ext: str) -> str:
    stub = users_pb2_grpc.UserServiceStub(channel)
    user = users_pb2.User(sip_uri=f"sip:u{ext}@example.com", extension=ext)
    return (await stub.CreateUser(users_pb2.CreateUserRequest(user=user))).user.name


async def send(
    stub: messages_pb2_grpc.MessageServiceStub, to: str, text: str, sender: str = ""
) -> messages_pb2.ShortMessage:
    request = messages_pb2.SendMessageRequest(recipient=to, text=text, sender=sender)
    return (await stub.SendMessage(request)).message


def violations(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    out: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.extend(v.field for v in bad.field_violations)
    return out


@pytest.fixture
async def stub(channel: grpc.aio.Channel) -> messages_pb2_grpc.MessageServiceStub:
    await make_user(channel, "200")
    await make_user(channel, "201")
    await make_user(channel, "202")
    return messages_pb2_grpc.MessageServiceStub(channel)


async def test_a_message_to_a_user_without_handsets_is_kept_as_failed(
    stub: messages_pb2_grpc.MessageServiceStub,
) -> None:
    sent = await send(stub, "201", "hello", sender="200")

    assert (sent.name, sent.text, sent.sender_uri, sent.recipient_uri) == (
        "messages/1",
        "hello",
        "sip:u200@example.com",
        "sip:u201@example.com",
    )
    assert sent.origin == messages_pb2.MESSAGE_ORIGIN_API
    assert sent.state == messages_pb2.DELIVERY_STATE_FAILED
    assert (sent.devices_attempted, sent.failure_reason) == (0, "recipient offline")
    got = await stub.GetMessage(messages_pb2.GetMessageRequest(name="messages/1"))
    assert got.message == sent


async def test_a_message_from_the_system_names_the_system_as_sender(
    stub: messages_pb2_grpc.MessageServiceStub,
) -> None:
    sent = await send(stub, "201", "maintenance tonight")

    assert (sent.sender, sent.sender_uri) == ("", "sip:system@sip2uc.local")


async def test_empty_and_oversized_texts_are_refused_naming_the_field(
    stub: messages_pb2_grpc.MessageServiceStub,
) -> None:
    for text in ("", "   ", "é" * 513):  # 1,026 bytes of UTF-8 against a 1,024-byte limit
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await send(stub, "201", text)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violations(info.value) == ["text"]


async def test_an_unknown_recipient_is_not_found_and_nothing_is_kept(
    stub: messages_pb2_grpc.MessageServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await send(stub, "999", "hello")

    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await stub.ListMessages(messages_pb2.ListMessagesRequest())
    assert list(listed.messages) == []


async def test_malformed_names_and_cursors_are_invalid_arguments(
    stub: messages_pb2_grpc.MessageServiceStub,
) -> None:
    for name in ("1", "messages/x", "users/1", "messages/99999999999999999999", "messages/\u0661"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetMessage(messages_pb2.GetMessageRequest(name=name))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for cursor in ("-1", "9" * 20):
        call = stub.WatchMessages(messages_pb2.WatchMessagesRequest(cursor=cursor))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violations(info.value) == ["cursor"]
    huge = base64.urlsafe_b64encode(b"o:" + b"9" * 30).decode()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListMessages(messages_pb2.ListMessagesRequest(page_token=huge))
    assert violations(info.value) == ["page_token"]


async def test_the_history_lists_newest_first_by_page_and_by_user(
    stub: messages_pb2_grpc.MessageServiceStub,
) -> None:
    for i in range(5):
        await send(stub, "201" if i % 2 else "202", f"m{i}", sender="200")

    first = await stub.ListMessages(messages_pb2.ListMessagesRequest(page_size=2))
    second = await stub.ListMessages(
        messages_pb2.ListMessagesRequest(page_size=2, page_token=first.next_page_token)
    )
    third = await stub.ListMessages(
        messages_pb2.ListMessagesRequest(page_size=2, page_token=second.next_page_token)
    )
    only_201 = await stub.ListMessages(messages_pb2.ListMessagesRequest(user="201"))

    pages = [[m.text for m in page.messages] for page in (first, second, third)]
    assert pages == [["m4", "m3"], ["m2", "m1"], ["m0"]]
    assert third.next_page_token == ""
    assert [m.text for m in only_201.messages] == ["m3", "m1"]


async def test_a_watch_without_cursor_starts_with_the_next_message(
    stub: messages_pb2_grpc.MessageServiceStub,
) -> None:
    await send(stub, "201", "before")
    call = stub.WatchMessages(messages_pb2.WatchMessagesRequest())
    await call.initial_metadata()

    await send(stub, "201", "after")
    event = await call.read()

    assert (event.message.text, event.cursor) == ("after", "2")
    call.cancel()


async def test_a_watch_resumed_from_its_cursor_gets_what_it_missed_once_and_in_order(
    stub: messages_pb2_grpc.MessageServiceStub,
) -> None:
    first = stub.WatchMessages(messages_pb2.WatchMessagesRequest())
    await first.initial_metadata()
    await send(stub, "201", "one")
    cursor = (await first.read()).cursor
    first.cancel()
    await send(stub, "201", "two")
    await send(stub, "202", "three")

    resumed = stub.WatchMessages(messages_pb2.WatchMessagesRequest(cursor=cursor))
    missed = [await resumed.read(), await resumed.read()]
    await send(stub, "201", "four")
    live = await resumed.read()

    assert [(e.message.text, e.cursor) for e in [*missed, live]] == [
        ("two", "2"),
        ("three", "3"),
        ("four", "4"),
    ]
    resumed.cancel()


async def test_a_watch_for_some_users_skips_the_others_messages(
    stub: messages_pb2_grpc.MessageServiceStub,
) -> None:
    await send(stub, "201", "for 201")
    await send(stub, "202", "for 202")
    await send(stub, "202", "from 201 to 202", sender="201")

    call = stub.WatchMessages(messages_pb2.WatchMessagesRequest(users=["201"], cursor="0"))
    events = [await call.read(), await call.read()]

    assert [e.message.text for e in events] == ["for 201", "from 201 to 202"]
    call.cancel()


async def test_a_cursor_trimmed_away_by_retention_is_said_to_have_expired(
    control: ControlPlane, clock: Clock, stub: messages_pb2_grpc.MessageServiceStub
) -> None:
    await send(stub, "201", "old one")
    await send(stub, "201", "old two")
    clock.advance(31 * DAY)  # past the 30-day default retention
    await send(stub, "201", "recent")
    assert control.core is not None
    await control.core.messages.trim()

    call = stub.WatchMessages(messages_pb2.WatchMessagesRequest(cursor="1"))
    expired, oldest_held = await call.read(), await call.read()

    assert expired.WhichOneof("event") == "cursor_expired"
    assert (expired.cursor_expired.requested_cursor, expired.cursor) == ("1", "2")
    assert (oldest_held.message.text, oldest_held.cursor) == ("recent", "3")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetMessage(messages_pb2.GetMessageRequest(name="messages/1"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    call.cancel()


async def test_numbers_and_trimming_survive_a_restart(tmp_path: Path, clock: Clock) -> None:
    config = ControlConfig(data_dir=tmp_path, grpc_listen="127.0.0.1:0", metrics_listen=None)
    plane = ControlPlane(config, clock)
    await plane.start()
    async with grpc.aio.insecure_channel(plane.address) as channel:
        await make_user(channel, "201")
        stub = messages_pb2_grpc.MessageServiceStub(channel)
        await send(stub, "201", "one")
        await send(stub, "201", "two")
        clock.advance(31 * DAY)
        assert plane.core is not None
        await plane.core.messages.trim()
    await plane.stop(0.5)

    again = ControlPlane(config, clock)
    await again.start()
    try:
        async with grpc.aio.insecure_channel(again.address) as channel:
            stub = messages_pb2_grpc.MessageServiceStub(channel)
            sent = await send(stub, "201", "three")
            call = stub.WatchMessages(messages_pb2.WatchMessagesRequest(cursor="1"))
            expired, held = await call.read(), await call.read()
            call.cancel()
    finally:
        await again.stop(0.5)

    assert sent.name == "messages/3"
    assert (expired.WhichOneof("event"), expired.cursor) == ("cursor_expired", "2")
    assert held.message.text == "three"


async def test_a_text_from_the_uc_side_names_its_sender_and_origin(
    stub: messages_pb2_grpc.MessageServiceStub,
) -> None:
    request = messages_pb2.SendMessageRequest(
        recipient="201",
        text="from a UC client",
        sender_uri="sip:carol@uc.example.com",
        sender_display_name="Carol",
    )

    sent = (await stub.SendMessage(request)).message

    assert (sent.sender, sent.sender_uri, sent.sender_display_name) == (
        "",
        "sip:carol@uc.example.com",
        "Carol",
    )
    assert sent.origin == messages_pb2.MESSAGE_ORIGIN_UC


async def test_a_uc_sender_must_be_a_sip_uri_and_not_beside_a_user(
    stub: messages_pb2_grpc.MessageServiceStub,
) -> None:
    cases = [
        (messages_pb2.SendMessageRequest(sender_uri="carol"), "sender_uri"),
        (messages_pb2.SendMessageRequest(sender_uri="sip:uc.example.com"), "sender_uri"),
        (
            messages_pb2.SendMessageRequest(sender="200", sender_uri="sip:c@uc.example.com"),
            "sender_uri",
        ),
        (messages_pb2.SendMessageRequest(sender_display_name="Carol"), "sender_display_name"),
    ]
    for request, field in cases:
        request.recipient, request.text = "201", "hi"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.SendMessage(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violations(info.value) == [field]
