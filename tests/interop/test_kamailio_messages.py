"""Short messages to the UC side through the SIP presence bridge and a real Kamailio.

Kamailio (the presence server of `test_kamailio_presence.py`, with digest for the bridge's
account) relays every MESSAGE to one SIPp UAS standing in for the users' UC clients. A text
sent with the API to a user the bridge maps reaches that UAS through the bridge, From its
sender, as text/plain in UTF-8.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from sip2uc.v1 import messages_pb2, messages_pb2_grpc
from test_kamailio_presence import (
    DOMAIN,
    close_world,
    eventually,
    free_udp_port,
    make_world,
)
from test_kamailio_presence import (
    pytestmark as presence_marks,
)

SIPP_MESSAGES = Path(__file__).parent / "sipp" / "messages"

pytestmark = presence_marks


async def _bound(port: int) -> bool | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return None


def received(log: Path) -> tuple[str, str]:
    """(From header, body) of the MESSAGE in a SIPp message log."""
    text = log.read_text(errors="replace")
    block = text[text.index("MESSAGE sip:") :].split("\n\n", 1)
    found = re.search(r"^From: (.*)$", block[0], re.MULTILINE)
    assert found is not None, block[0]
    return found.group(1).strip(), block[1].split("\n-----", 1)[0].strip()


async def test_a_text_for_a_mapped_user_reaches_the_uc_side_through_the_bridge(
    tmp_path: Path,
) -> None:
    uc_client = free_udp_port()
    world = await make_world(tmp_path, message_target=f"sip:127.0.0.1:{uc_client}")
    try:
        await world.add_user("1001")
        await world.add_user("1002")
        await world.add_connector("udp")
        await world.start_bridge()
        log = tmp_path / f"bridge-{world.runs}.log"

        async def relaying() -> bool | None:
            return True if "carrying short messages" in log.read_text() else None

        await eventually(relaying, "the bridge to follow the messages")
        client = await world.sipp(
            SIPP_MESSAGES / "message_receive.xml",
            "x",
            "uc-client",
            target=world.kamailio.server_uri("udp").split(";")[0].removeprefix("sip:"),
            port=uc_client,
        )
        await eventually(lambda: _bound(uc_client), "the UC client to listen")
        stub = messages_pb2_grpc.MessageServiceStub(world.channel)

        await stub.SendMessage(
            messages_pb2.SendMessageRequest(
                recipient="1002", sender="1001", text="Meeting moved to 3"
            )
        )

        await world.done(client, "uc-client")
        from_header, body = received(tmp_path / "uc-client.messages.log")
        assert body == "Meeting moved to 3"
        assert f"sip:1001@{DOMAIN}" in from_header
    finally:
        await close_world(world)
