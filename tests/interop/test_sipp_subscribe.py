"""Buddy lists and BLF with SIPp handsets: SUBSCRIBE through a real sidecar to a real control
plane, NOTIFYs checked as the handset received them.

The watcher is a SIPp instance running ``sipp/subscribe/watch.xml`` (digest like REGISTER, then
it answers every NOTIFY until the bodies it waits for arrive, then unsubscribes); the watched
users' handsets are SIPp instances too, registering, unregistering and calling through the
sidecar. What the watcher received is read back from SIPp's message log.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest
from google.protobuf import field_mask_pb2
from sip2uc.cli.main import app
from sip2uc.v1 import (
    calls_pb2,
    common_pb2,
    registrations_pb2,
    registrations_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)
from sip2uc_control.app import ControlConfig, ControlPlane
from sip2uc_media.sidecar import Sidecar, Transport
from test_sipp_calls import (
    CALLS,
    DOMAIN,
    SCENARIOS,
    Handset,
    Stack,
    callee,
    caller,
    eventually,
    free_port,
    register,
    sipp,
    stack,
)
from typer.testing import CliRunner

pytestmark = [pytest.mark.interop, pytest.mark.slow]
__all__ = ["stack"]

WATCH = SCENARIOS / "subscribe" / "watch.xml"


async def watcher(
    stack: Stack,
    sidecar: Sidecar,
    row: str,
    *,
    event: str,
    first: str,
    second: str,
    label: str = "watcher",
) -> tuple[Handset, Path]:
    scenario = stack.tmp / f"{label}.xml"
    scenario.write_text(
        WATCH.read_text()
        .replace("@EVENT@", event)
        .replace("@FIRST@", first)
        .replace("@SECOND@", second)
    )
    handset = await sipp(stack, sidecar, scenario, [row], port=free_port(), label=label)
    return handset, stack.tmp / f"{label}.messages.log"


async def subscriptions(stack: Stack) -> list[registrations_pb2.Subscription]:
    stub = registrations_pb2_grpc.RegistrationServiceStub(stack.channel)
    response = await stub.ListSubscriptions(
        registrations_pb2.ListSubscriptionsRequest(), metadata=stack.metadata
    )
    return list(response.subscriptions)


async def wait_subscribed(stack: Stack, count: int = 1) -> list[registrations_pb2.Subscription]:
    async def probe() -> list[registrations_pb2.Subscription] | None:
        found = await subscriptions(stack)
        return found if len(found) == count else None

    return await eventually(probe, f"{count} subscription(s) in the registry")


def notifies(messages: Path) -> list[str]:
    """Every NOTIFY the watcher received, whole (headers and body), in order."""
    text = messages.read_text(errors="replace")
    found: list[str] = []
    for block in text.split("----------------------------------------------- ")[1:]:
        _stamp, _, rest = block.partition("\n")
        what, _, message = rest.partition("\n")
        if "message received" in what and message.lstrip().startswith("NOTIFY "):
            found.append(message.lstrip())
    return found


async def bob_comes_and_goes(stack: Stack, sidecar: Sidecar) -> None:
    """bob's handset registers, then unregisters from the same port."""
    bob_port = await register(stack, sidecar, "bob", "bob-secret")
    await unregister(stack, sidecar, "bob", bob_port)


async def unregister(stack: Stack, sidecar: Sidecar, alias: str, port: int) -> None:
    handset = await sipp(
        stack,
        sidecar,
        SCENARIOS / "unregister.xml",
        [f"{alias};{alias}-secret"],
        port=port,
        label=f"unregister-{alias}",
    )
    await handset.finished(30)


async def users(stack: Stack, *aliases: str) -> None:
    for alias in aliases:
        await stack.create_user(alias, f"{alias}-secret")


async def test_a_handset_sees_a_user_come_online_and_go_offline_through_presence(
    stack: Stack,
) -> None:
    sidecar = await stack.sidecar("blf")
    await users(stack, "alice", "bob")
    handset, messages = await watcher(
        stack,
        sidecar,
        "alice;alice-secret;bob",
        event="presence",
        first="<basic>open</basic>",
        second="<basic>closed</basic>",
    )
    (held,) = await wait_subscribed(stack)
    assert (held.event, held.resource_uri, held.sidecar) == ("presence", f"sip:bob@{DOMAIN}", "blf")
    assert held.watcher.startswith("users/") and len(held.users) == 1
    listed = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["subscription", "list"],
        env={"SIP2UC_CONTROL": stack.control.address, "SIP2UC_TOKEN": stack.control.token},
    )
    assert listed.exit_code == 0, listed.output
    (line,) = [row for row in listed.stdout.splitlines() if "presence" in row]
    cells = [cell.strip() for cell in line.strip("│ ").split("│")]
    assert cells[:4] == [f"sip:alice@{DOMAIN}", f"sip:bob@{DOMAIN}", "presence", "blf"]

    await bob_comes_and_goes(stack, sidecar)
    await handset.finished(40)

    seen = notifies(messages)
    assert "Subscription-State: active;expires=" in seen[0]
    assert "<basic>closed</basic>" in seen[0]  # bob was offline when alice subscribed
    assert any("<basic>open</basic>" in n for n in seen)
    assert "Subscription-State: terminated;reason=timeout" in seen[-1]
    assert all("Content-Type: application/pidf+xml" in n for n in seen)
    await eventually(lambda: _none_left(stack), "the ended subscription to leave the registry", 10)


async def _none_left(stack: Stack) -> bool | None:
    return True if not await subscriptions(stack) else None


async def test_a_blf_key_sees_a_call_ring_with_the_caller_then_connect_and_end(
    stack: Stack,
) -> None:
    sidecar = await stack.sidecar("blf")
    await users(stack, "alice", "bob", "carol")
    await register(stack, sidecar, "carol", "carol-secret")
    bob_port = await register(stack, sidecar, "bob", "bob-secret")
    handset, messages = await watcher(
        stack,
        sidecar,
        "alice;alice-secret;bob",
        event="dialog",
        first="<state>confirmed</state>",
        second="<state>terminated</state>",
    )
    await wait_subscribed(stack)

    carol_media = await stack.far_end()
    uas = await callee(stack, sidecar, "uas_pcmu.xml", "bob", bob_port)
    uac = await caller(
        stack, sidecar, "uac_pcma_until_bye.xml", f"carol;carol-secret;bob;{carol_media.addr[1]}"
    )
    call = await stack.live_call()
    await stack.wait_call_state(call.name, calls_pb2.CALL_STATE_CONNECTED)
    await stack.calls.EndCall(calls_pb2.EndCallRequest(name=call.name), metadata=stack.metadata)
    await uac.finished(10)
    await uas.finished(10)
    await handset.finished(40)

    seen = notifies(messages)
    bodies = [n.split("\n\n", 1)[-1] if "\n\n" in n else n for n in seen]
    versions = [int(m.group(1)) for b in bodies if (m := re.search(r'version="(\d+)"', b))]
    assert versions == list(range(len(versions)))  # RFC 4235 §4.1.2: one more each time
    assert 'state="full"' in bodies[0] and "<dialog " not in bodies[0]  # idle: no dialogs
    ringing = next(b for b in bodies if "<state>early</state>" in b)
    assert 'direction="recipient"' in ringing
    # The caller, for directed call pickup.
    assert f'<identity display="Carol">sip:carol@{DOMAIN}</identity>' in ringing
    order = [state for b in bodies for state in re.findall(r"<state>(\w+)</state>", b)]
    assert order.index("early") < order.index("confirmed") < order.index("terminated")
    assert 'state="partial"' in bodies[-2]


async def test_a_buddy_list_subscription_gets_rlmi_with_every_buddy_then_partial_changes(
    stack: Stack,
) -> None:
    sidecar = await stack.sidecar("blf")
    await users(stack, "alice", "bob", "carol")
    stub = users_pb2_grpc.UserServiceStub(stack.channel)
    await stub.UpdateUser(
        users_pb2.UpdateUserRequest(
            user=users_pb2.User(
                name=f"sip:alice@{DOMAIN}",
                settings=users_pb2.UserSettings(
                    buddies=[f"sip:bob@{DOMAIN}", f"sip:carol@{DOMAIN}"]
                ),
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["settings.buddies"]),
        ),
        metadata=stack.metadata,
    )
    handset, messages = await watcher(
        stack,
        sidecar,
        "alice;alice-secret;buddies",
        event="presence",
        first="<basic>open</basic>",
        second="<basic>closed</basic>",
    )
    (held,) = await wait_subscribed(stack)
    assert held.resource_uri == f"sip:buddies@{DOMAIN}" and len(held.users) == 2

    await bob_comes_and_goes(stack, sidecar)
    await handset.finished(40)

    seen = notifies(messages)
    first = seen[0]
    assert 'Content-Type: multipart/related;type="application/rlmi+xml"' in first
    assert "Require: eventlist" in first
    assert 'fullState="true"' in first
    assert first.count("Content-Type: application/pidf+xml") == 2  # both buddies
    change = next(n for n in seen[1:] if "<basic>open</basic>" in n)
    assert 'fullState="false"' in change
    assert change.count("Content-Type: application/pidf+xml") == 1  # only bob changed
    assert f'<resource uri="sip:carol@{DOMAIN}">' in change  # still listed, without a part


async def test_subscriptions_survive_a_control_plane_restart_and_keep_being_notified(
    stack: Stack,
) -> None:
    sidecar = await stack.sidecar("blf")
    await users(stack, "alice", "bob")
    handset, messages = await watcher(
        stack,
        sidecar,
        "alice;alice-secret;bob",
        event="presence",
        first="<basic>open</basic>",
        second="<basic>closed</basic>",
    )
    (before,) = await wait_subscribed(stack)

    address = stack.control.address
    await stack.control.stop(1.0)
    restarted = ControlPlane(
        ControlConfig(data_dir=stack.tmp / "control", grpc_listen=address, metrics_listen=None)
    )
    await restarted.start()
    try:
        # The sidecar re-announces what it holds on its new state watch.
        (after,) = await wait_subscribed(stack)
        assert (after.name, after.watcher, after.users) == (
            before.name,
            before.watcher,
            before.users,
        )
        assert sidecar.control is not None
        await asyncio.wait_for(sidecar.control.wait_up(), 10)
        await bob_comes_and_goes(stack, sidecar)
        await handset.finished(40)
        assert any("<basic>open</basic>" in n for n in notifies(messages))
    finally:
        await restarted.stop(1.0)


BARESIP = shutil.which("baresip")


@pytest.mark.skipif(BARESIP is None, reason="baresip (Debian baresip-core) is not installed")
async def test_baresip_shows_a_colleague_come_online_take_a_call_and_go_offline(
    stack: Stack,
) -> None:
    sidecar = await stack.sidecar("blf")
    await users(stack, "alice", "bob", "carol")
    host, port = sidecar.listen_addresses[Transport.UDP]
    config = stack.tmp / "baresip"
    config.mkdir()
    (config / "config").write_text(
        "module_path /usr/lib/baresip/modules\n"
        "sip_listen 127.0.0.1:0\n"
        "module g711.so\n"
        "module account.so\n"
        "module contact.so\n"
        "module presence.so\n"
        "audio_player aufile,/dev/null\n"
        "audio_source aufile,/dev/null\n"
    )
    (config / "accounts").write_text(
        f'<sip:alice@{DOMAIN}>;auth_pass=alice-secret;outbound="sip:{host}:{port}";regint=300\n'
    )
    # The presence module subscribes to contacts marked p2p, through the account's outbound proxy.
    (config / "contacts").write_text(f'"Bob" <sip:bob@{DOMAIN}>;presence=p2p\n')
    assert BARESIP is not None
    process = await asyncio.create_subprocess_exec(
        BARESIP,
        "-f",
        str(config),
        "-t",
        "30",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await wait_subscribed(stack)
        carol_port = await register(stack, sidecar, "carol", "carol-secret")
        bob_port = await register(stack, sidecar, "bob", "bob-secret")
        await eventually(lambda: _bob_is(stack, "AVAILABILITY_AVAILABLE"), "bob online")
        bob_media = await stack.far_end()
        uas = await callee(stack, sidecar, "uas_pcmu.xml", "carol", carol_port)
        uac = await sipp(
            stack,
            sidecar,
            CALLS / "uac_pcma_until_bye.xml",
            [f"bob;bob-secret;carol;{bob_media.addr[1]}"],
            port=bob_port,
            label="bob-calls",
        )
        call = await stack.live_call()
        await stack.wait_call_state(call.name, calls_pb2.CALL_STATE_CONNECTED)
        await asyncio.sleep(0.5)  # the handset shows it
        await stack.calls.EndCall(calls_pb2.EndCallRequest(name=call.name), metadata=stack.metadata)
        await uac.finished(10)
        await uas.finished(10)
        await eventually(lambda: _bob_is(stack, "AVAILABILITY_AVAILABLE"), "bob free again")
        await asyncio.sleep(0.5)
        await unregister(stack, sidecar, "bob", bob_port)
        await asyncio.sleep(1.0)
    finally:
        process.terminate()
        output, _ = await asyncio.wait_for(process.communicate(), 20)
    said = re.sub(r"\x1b\[[0-9;]*m", "", output.decode(errors="replace"))  # its colours
    changes = re.findall(r"<sip:bob@[^>]+> changed status from (\w+) to (\w+)", said)
    # bob was offline when alice subscribed: the first NOTIFY changes nothing baresip shows.
    assert changes == [
        ("Offline", "Online"),
        ("Online", "Busy"),
        ("Busy", "Online"),
        ("Online", "Offline"),
    ], said


async def _bob_is(stack: Stack, availability: str) -> bool | None:
    wanted = common_pb2.Availability.Value(availability)
    return True if await stack.availability("bob") == wanted else None
