"""Calls between SIPp handsets through a real sidecar and a real control plane, in-process.

The caller offers PCMA only and the callee answers PCMU only, so the relay transcodes; the
caller plays the Debian G.711 A-law capture and two RFC 4733 digits, the callee echoes audio.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from sip2uc.v1 import users_pb2, users_pb2_grpc
from sip2uc_media.sidecar import Sidecar, SidecarConfig, TransportKind

SIPP = shutil.which("sipp") or "/usr/bin/sipp"
SCENARIOS = Path(__file__).parent / "sipp"
CALLS = SCENARIOS / "calls"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        not os.path.exists(SIPP), reason="SIPp (Debian sip-tester) is not installed"
    ),
]

try:
    from sip2uc_control.app import ControlConfig, ControlPlane
except ImportError:  # pragma: no cover - the control plane is part of this repository
    pytest.skip("the control plane package is not importable", allow_module_level=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Stack:
    def __init__(self, control: ControlPlane, channel: grpc.aio.Channel, tmp: Path) -> None:
        self.control = control
        self.channel = channel
        self.tmp = tmp
        self.metadata = (("authorization", f"Bearer {control.token}"),)
        self.sidecars: list[Sidecar] = []

    async def sidecar(self, name: str, host: str = "127.0.0.1") -> Sidecar:
        base = 30000 + 1000 * len(self.sidecars) + (os.getpid() % 20) * 1500
        sidecar = Sidecar(
            SidecarConfig(
                control=self.control.address,
                token=self.control.token,
                name=name,
                sip_listen=f"{host}:0",
                data_dir=self.tmp / name,
                digest_algorithms=("MD5",),
                rtp_ports=(base, base + 199),
            )
        )
        await sidecar.start()
        self.sidecars.append(sidecar)
        assert sidecar.control is not None
        await asyncio.wait_for(sidecar.control.wait_up(), 10)
        return sidecar

    async def create_user(self, alias: str, password: str) -> None:
        stub = users_pb2_grpc.UserServiceStub(self.channel)
        await stub.CreateUser(
            users_pb2.CreateUserRequest(
                user=users_pb2.User(
                    sip_uri=f"sip:{alias}@sip2uc.local",
                    display_name=alias.title(),
                    devices=[
                        users_pb2.Device(
                            label="handset",
                            registering=users_pb2.RegisteringDevice(
                                digest_username=alias, password=password
                            ),
                        )
                    ],
                )
            ),
            metadata=self.metadata,
        )


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    control = ControlPlane(
        ControlConfig(data_dir=tmp_path / "control", grpc_listen="127.0.0.1:0", metrics_listen=None)
    )
    await control.start()
    channel = grpc.aio.insecure_channel(control.address)
    stack = Stack(control, channel, tmp_path)
    try:
        yield stack
    finally:
        for sidecar in stack.sidecars:
            await sidecar.stop(1.0)
        await channel.close(None)
        await control.stop(1.0)


async def sipp(
    tmp: Path,
    sidecar: Sidecar,
    scenario: Path,
    rows: list[str],
    *,
    port: int,
    extra: tuple[str, ...] = (),
    label: str,
) -> asyncio.subprocess.Process:
    host, sip_port = sidecar.listen_addresses[TransportKind.UDP]
    users = tmp / f"{label}.csv"
    users.write_text("SEQUENTIAL\n" + "".join(f"{row}\n" for row in rows))
    return await asyncio.create_subprocess_exec(
        SIPP,
        f"{host}:{sip_port}",
        "-sf",
        str(scenario),
        "-inf",
        str(users),
        "-i",
        "127.0.0.1",
        "-mi",
        "127.0.0.1",
        "-p",
        str(port),
        "-mp",
        str(free_port() & ~1),
        "-m",
        str(len(rows)),
        "-timeout",
        "30s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-error_file",
        str(tmp / f"{label}.errors.log"),
        *extra,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=tmp,
    )


async def register(tmp: Path, sidecar: Sidecar, user: str, password: str, port: int) -> None:
    process = await sipp(
        tmp,
        sidecar,
        SCENARIOS / "register_auth.xml",
        [f"{user};{password};300"],
        port=port,
        label=f"register-{user}",
    )
    assert await asyncio.wait_for(process.wait(), 30) == 0


async def test_call_with_auth_transcoding_media_and_bye(stack: Stack, tmp_path: Path) -> None:
    sidecar = await stack.sidecar("calls-one")
    await stack.create_user("alice", "alice-secret")
    await stack.create_user("bob", "bob-secret")
    bob_port = free_port()
    await register(tmp_path, sidecar, "bob", "bob-secret", bob_port)
    callee = await sipp(
        tmp_path,
        sidecar,
        CALLS / "uas_pcmu.xml",
        ["bob"],
        port=bob_port,
        extra=("-rtp_echo",),
        label="uas",
    )
    await asyncio.sleep(0.3)  # let the UAS bind its port before the call reaches it
    caller = await sipp(
        tmp_path,
        sidecar,
        CALLS / "uac_pcma.xml",
        ["alice;alice-secret;bob"],
        port=free_port(),
        label="uac",
    )
    assert sidecar.calls is not None
    peak: dict[str, int] = {}
    while caller.returncode is None:
        for leg_id, stats in sidecar.calls.relay_stats().items():
            peak[leg_id] = max(peak.get(leg_id, 0), stats.sent_packets)
        try:
            await asyncio.wait_for(caller.wait(), 0.1)
        except TimeoutError:
            pass

    assert caller.returncode == 0, (tmp_path / "uac.errors.log").read_text(errors="replace")
    assert await asyncio.wait_for(callee.wait(), 10) == 0
    # Both handsets were sent audio: the caller's capture and the callee's echo of it.
    assert len(peak) == 2
    assert min(peak.values()) > 50
    assert sidecar.calls.active_legs == 0
