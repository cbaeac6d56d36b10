"""Short messages (RFC 3428) through real sidecars and a real control plane, with SIPp handsets.

A sender authenticates its MESSAGE after a 407 (MD5 digest, as SIPp speaks it) and gets 202
once the text went to the recipient's handsets; the recipient is a SIPp UAS on the port it
registered from, which checks the type and body and answers 200. What it received is read back
from SIPp's message log. The API side (SendMessage, the history) is checked over gRPC.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sip2uc.v1 import messages_pb2, messages_pb2_grpc
from test_sipp_calls import (
    SCENARIOS,
    SIPP,
    Stack,
    callee,
    eventually,
    free_port,
    register,
    sipp,
)
from test_sipp_calls import stack as stack  # the fixture

MESSAGES = SCENARIOS / "messages"

pytestmark = [pytest.mark.interop, pytest.mark.slow]
assert SIPP  # the skip markers of test_sipp_calls apply here too (SIPp missing)
pytestmark.append(
    pytest.mark.skipif(not Path(SIPP).exists(), reason="SIPp (Debian sip-tester) is not installed")
)


def received_message(log: Path) -> tuple[str, str]:
    """(From header, body) of the MESSAGE in a SIPp message log."""
    text = log.read_text(errors="replace")
    start = text.index("MESSAGE sip:")
    block = text[start:].split("\n\n", 1)
    headers, body = block[0], block[1] if len(block) > 1 else ""
    found = re.search(r"^From: (.*)$", headers, re.MULTILINE)
    assert found is not None, headers
    # SIPp's log separates messages with a line of dashes.
    return found.group(1).strip(), body.split("\n-----", 1)[0].strip()


async def history(stack: Stack) -> list[messages_pb2.ShortMessage]:
    found = await messages_pb2_grpc.MessageServiceStub(stack.channel).ListMessages(
        messages_pb2.ListMessagesRequest(), metadata=stack.metadata
    )
    return list(found.messages)


async def send_from_alice(stack: Stack, scenario: str, row: str, recipient: str) -> None:
    """alice (and `recipient`, without a handset) exist; alice's SIPp runs `scenario`."""
    sidecar = await stack.sidecar("default")
    await stack.create_user("alice", "alice-secret")
    await stack.create_user(recipient, f"{recipient}-secret")
    sender = await sipp(
        stack, sidecar, MESSAGES / scenario, [row], port=free_port(), label="sender"
    )
    await sender.finished()


async def wait_state(stack: Stack, name: str, state: int) -> messages_pb2.ShortMessage:
    stub = messages_pb2_grpc.MessageServiceStub(stack.channel)

    async def probe() -> messages_pb2.ShortMessage | None:
        got = await stub.GetMessage(
            messages_pb2.GetMessageRequest(name=name), metadata=stack.metadata
        )
        return got.message if got.message.state == state else None

    return await eventually(probe, f"{name} to reach state {state}")


async def test_a_handsets_message_reaches_the_other_users_handset(stack: Stack) -> None:
    sidecar = await stack.sidecar("default")
    await stack.create_user("alice", "alice-secret")
    await stack.create_user("bob", "bob-secret")
    bob_port = await register(stack, sidecar, "bob", "bob-secret")
    uas = await callee(stack, sidecar, "../messages/message_receive.xml", "x", bob_port)
    sender = await sipp(
        stack,
        sidecar,
        MESSAGES / "message_send.xml",
        ["alice;alice-secret;bob;Lunch at noon? Grüße"],
        port=free_port(),
        label="sender",
    )

    await sender.finished()
    await uas.finished()

    from_header, body = received_message(stack.tmp / "uas.messages.log")
    assert body == "Lunch at noon? Grüße"
    assert "sip:alice@sip2uc.local" in from_header
    assert '"Sender alice"' in from_header
    history = await messages_pb2_grpc.MessageServiceStub(stack.channel).ListMessages(
        messages_pb2.ListMessagesRequest(user="sip:bob@sip2uc.local"), metadata=stack.metadata
    )
    (kept,) = history.messages
    assert kept.text == "Lunch at noon? Grüße\r\n"  # as SIPp sent it: the body ends its line
    assert kept.origin == messages_pb2.MESSAGE_ORIGIN_HANDSET
    done = await wait_state(stack, kept.name, messages_pb2.DELIVERY_STATE_DELIVERED)
    assert (done.devices_attempted, done.devices_delivered) == (1, 1)


async def test_an_api_message_reaches_the_handset_and_says_it_was_delivered(
    stack: Stack,
) -> None:
    sidecar = await stack.sidecar("default")
    await stack.create_user("bob", "bob-secret")
    bob_port = await register(stack, sidecar, "bob", "bob-secret")
    uas = await callee(stack, sidecar, "../messages/message_receive.xml", "x", bob_port)
    stub = messages_pb2_grpc.MessageServiceStub(stack.channel)

    sent = await stub.SendMessage(
        messages_pb2.SendMessageRequest(recipient="sip:bob@sip2uc.local", text="Fire drill at 3"),
        metadata=stack.metadata,
    )

    await uas.finished()
    assert sent.message.state == messages_pb2.DELIVERY_STATE_DELIVERED
    assert (sent.message.devices_attempted, sent.message.devices_delivered) == (1, 1)
    from_header, body = received_message(stack.tmp / "uas.messages.log")
    assert body == "Fire drill at 3"
    assert "sip:system@sip2uc.local" in from_header


async def test_a_message_to_a_user_without_a_handset_is_refused_480(stack: Stack) -> None:
    await send_from_alice(
        stack, "message_offline.xml", "alice;alice-secret;carol;anyone there?", "carol"
    )

    (kept,) = await history(stack)
    assert kept.state == messages_pb2.DELIVERY_STATE_FAILED
    assert kept.failure_reason == "recipient offline"


async def test_an_html_message_is_refused_415_with_accept_text_plain(stack: Stack) -> None:
    await send_from_alice(stack, "message_html.xml", "alice;alice-secret;bob", "bob")

    assert await history(stack) == []
