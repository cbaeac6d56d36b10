"""baresip, a real softphone, exchanging short messages through sip2uc.

baresip registers through a sidecar with digest (it answers 401 and 407 itself) and receives a
text sent with the `sip2uc message send` command; in the other direction its `/message`
command sends a MESSAGE that the control plane accepts and a `sip2uc message watch` prints.
baresip runs headless: no audio modules, its console on a pipe, bounded by `-t`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sip2uc.v1 import messages_pb2, messages_pb2_grpc, registrations_pb2, registrations_pb2_grpc
from test_sipp_calls import DOMAIN, Stack, eventually, free_port
from test_sipp_calls import stack as stack  # the fixture

BARESIP = shutil.which("baresip") or "/usr/bin/baresip"
MODULES = Path("/usr/lib/baresip/modules")

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.path.exists(BARESIP) or not (MODULES / "menu.so").exists(),
        reason="baresip (Debian baresip-core) is not installed",
    ),
]


class Baresip:
    """One headless baresip with one account; its console output is collected."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.output = ""
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while chunk := await self.process.stdout.read(4096):
            self.output += chunk.decode(errors="replace")

    async def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()

    async def wait_output(self, text: str, timeout: float = 10.0) -> None:
        async def seen() -> bool | None:
            if self.process.returncode is not None and text not in self.output:
                raise AssertionError(f"baresip exited:\n{self.output[-3000:]}")
            return True if text in self.output else None

        await eventually(seen, f"baresip to print {text!r}", timeout)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self._reader.cancel()


async def start_baresip(
    tmp: Path, sidecar_port: int, user: str, password: str, contact: str = ""
) -> Baresip:
    """baresip with `user`'s account through the sidecar, and `contact` (a SIP URI) as its only
    contact: the one `/message` writes to."""
    home = tmp / f"baresip-{user}"
    home.mkdir()
    port = free_port()
    (home / "config").write_text(
        "\n".join(
            [
                "poll_method\t\tepoll",
                f"sip_listen\t\t127.0.0.1:{port}",
                f"module_path\t\t{MODULES}",
                "module\t\t\tstdio.so",
                "module\t\t\tg711.so",
                "module_app\t\taccount.so",
                "module_app\t\tcontact.so",
                "module_app\t\tmenu.so",
                "audio_player\t\taubridge,nil",
                "audio_source\t\taubridge,nil",
                "audio_alert\t\taubridge,nil",
                "",
            ]
        )
    )
    (home / "accounts").write_text(
        f"<sip:{user}@{DOMAIN}>;auth_pass={password};"
        f'outbound="sip:127.0.0.1:{sidecar_port};lr";regint=300;answermode=manual\n'
    )
    (home / "contacts").write_text(f"<{contact}>\n" if contact else "")
    process = await asyncio.create_subprocess_exec(
        BARESIP,
        "-f",
        str(home),
        "-t",
        "60",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=home,
    )
    return Baresip(process)


@pytest.fixture
async def phones() -> AsyncIterator[list[Baresip]]:
    started: list[Baresip] = []
    yield started
    for phone in started:
        await phone.stop()


async def registered(stack: Stack, user: str, phone: Baresip) -> None:
    """Wait (bounded) for `user`'s binding; on failure say what baresip printed."""
    try:
        await _registered(stack, user)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; baresip said:\n{phone.output[-3000:]}") from None


async def _registered(stack: Stack, user: str) -> None:
    stub = registrations_pb2_grpc.RegistrationServiceStub(stack.channel)

    async def probe() -> bool | None:
        found = await stub.ListRegistrations(
            registrations_pb2.ListRegistrationsRequest(user=f"sip:{user}@{DOMAIN}"),
            metadata=stack.metadata,
        )
        return True if found.registrations else None

    await eventually(probe, f"{user}'s baresip to register", 30)


async def cli(stack: Stack, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sip2uc.cli",
        "--control",
        stack.control.address,
        "--token",
        stack.control.token,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_baresip_receives_a_message_sent_with_the_cli(
    stack: Stack, phones: list[Baresip]
) -> None:
    sidecar = await stack.sidecar("default")
    await stack.create_user("bob", "bob-secret")
    sip_port = sidecar.listen_addresses[next(iter(sidecar.listen_addresses))][1]
    bob = await start_baresip(stack.tmp, sip_port, "bob", "bob-secret")
    phones.append(bob)
    await registered(stack, "bob", bob)

    sender = await cli(stack, "message", "send", "sip:bob@sip2uc.local", "Kantine heute: Spätzle")
    out, err = await asyncio.wait_for(sender.communicate(), 30)

    assert sender.returncode == 0, err.decode()
    assert "delivered (1/1 devices)" in out.decode()
    await bob.wait_output("Kantine heute: Spätzle")


async def test_a_baresip_message_reaches_the_watch_of_the_cli(
    stack: Stack, phones: list[Baresip]
) -> None:
    sidecar = await stack.sidecar("default")
    await stack.create_user("alice", "alice-secret")
    await stack.create_user("bob", "bob-secret")
    sip_port = sidecar.listen_addresses[next(iter(sidecar.listen_addresses))][1]
    alice = await start_baresip(
        stack.tmp, sip_port, "alice", "alice-secret", contact=f"sip:bob@{DOMAIN}"
    )
    phones.append(alice)
    await registered(stack, "alice", alice)
    # From the start of the history, so that it cannot miss the message however late it opens.
    watch = await cli(stack, "message", "watch", "--cursor", "0", "--count", "1")
    stack.processes.append(watch)

    await alice.command("/message Bin gleich da")
    stub = messages_pb2_grpc.MessageServiceStub(stack.channel)

    async def kept() -> messages_pb2.ShortMessage | None:
        found = await stub.ListMessages(messages_pb2.ListMessagesRequest(), metadata=stack.metadata)
        return found.messages[0] if found.messages else None

    try:
        message = await eventually(kept, "alice's message in the history", 15)
    except AssertionError:
        raise AssertionError(f"baresip said:\n{alice.output[-3000:]}") from None
    assert message.text.strip() == "Bin gleich da"
    assert message.sender_uri == f"sip:alice@{DOMAIN}"
    out, err = await asyncio.wait_for(watch.communicate(), 30)
    assert watch.returncode == 0, err.decode()
    (line,) = out.decode().splitlines()
    assert f"sip:alice@{DOMAIN} -> sip:bob@{DOMAIN}: Bin gleich da" in line
