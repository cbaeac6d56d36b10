"""Attacks on a real sidecar and control plane (both in this process): a datagram flood while
SIPp handsets register, and a slowloris TCP connection.

The flood comes from another process on 127.0.0.2 for eight seconds: random bytes, and
SIP-looking OPTIONS and REGISTERs (some with made-up credentials) from several ports, 20,000 a
second. While it lasts, handsets that registered before it refresh from 127.0.0.1 and new ones
register for the first time from 127.0.0.3; every one of them must be answered 200 within SIPp's
usual retransmissions and a 4 s receive timeout, with no 503 (the plain scenario fails on it).
Before the intake, the kernel's buffer filled with the flood and such a run failed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from sip2uc.v1 import users_pb2, users_pb2_grpc
from sip2uc_media.sidecar import Sidecar, SidecarConfig, Transport
from sip2uc_media.sidecar.overload import Reason

SIPP = shutil.which("sipp") or "/usr/bin/sipp"
SCENARIO = Path(__file__).parent / "sipp" / "register_auth.xml"
PASSWORD = "flood-test-secret"
FLOOD_RATE = 20_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.interop,
    pytest.mark.skipif(
        not os.path.exists(SIPP), reason="SIPp (Debian sip-tester) is not installed"
    ),
]

try:
    from sip2uc_control.app import ControlConfig, ControlPlane
except ImportError:  # pragma: no cover - the control plane is part of this repository
    pytest.skip("the control plane package is not importable", allow_module_level=True)

#: A flooder in its own process: sends for `seconds`, then stops; at most `rate` a second. The
#: SIP-looking part draws answers (200, 401, 405), never authentication failures: a source that
#: fails authentication is banned and then costs nothing.
FLOODER = r"""
import os, random, socket, sys, time
host, port, seconds, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
for s in socks:
    s.bind(("127.0.0.2", 0))
sip = [
    (
        f"{method} sip:{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK{{n}}\r\n"
        f"From: <sip:x{{n}}@{host}>;tag={{n}}\r\nTo: <sip:x{{n}}@{host}>\r\nCall-ID: flood-{{n}}\r\n"
        f"CSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
    )
    for method, extra in (
        ("OPTIONS", "Accept: application/sdp\r\n" * 8),
        ("REGISTER", "".join(f"Contact: <sip:x{i}@127.0.0.2:{5000 + i}>;expires=60\r\n" for i in range(8))),
        ("SUBSCRIBE", "Event: presence\r\nContact: <sip:x@127.0.0.2>\r\n" + "Accept: application/pidf+xml\r\n" * 8),
    )
]
started, sent = time.monotonic(), 0
while (elapsed := time.monotonic() - started) < seconds:
    if sent > elapsed * rate:
        time.sleep(0.001)
        continue
    kind = sent % 4
    data = os.urandom(random.randint(20, 1200)) if kind == 3 else sip[kind].format(n=sent).encode()
    try:
        socks[sent % len(socks)].sendto(data, (host, port))
    except OSError:
        pass
    sent += 1
print(sent)
"""


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[tuple[Sidecar, ControlPlane]]:
    control = ControlPlane(
        ControlConfig(data_dir=tmp_path / "control", grpc_listen="127.0.0.1:0", metrics_listen=None)
    )
    await control.start()
    node = Sidecar(
        SidecarConfig(
            control=control.address,
            token=control.token,
            name="attacked",
            sip_listen="127.0.0.1:0",
            data_dir=tmp_path / "sidecar",
            digest_algorithms=("MD5",),
            retry_after=1,
            tcp_message_timeout=1.0,
        )
    )
    await node.start()
    assert node.control is not None
    await asyncio.wait_for(node.control.wait_up(), 10)
    try:
        yield node, control
    finally:
        await node.stop(1.0)
        await control.stop(1.0)


async def create_users(control: ControlPlane, names: list[str]) -> None:
    async with grpc.aio.insecure_channel(control.address) as channel:
        stub = users_pb2_grpc.UserServiceStub(channel)
        for name in names:
            await stub.CreateUser(
                users_pb2.CreateUserRequest(
                    user=users_pb2.User(
                        sip_uri=f"sip:{name}@sip2uc.local",
                        devices=[
                            users_pb2.Device(
                                registering=users_pb2.RegisteringDevice(
                                    digest_username=name, password=PASSWORD
                                )
                            )
                        ],
                    )
                ),
                metadata=(("authorization", f"Bearer {control.token}"),),
            )


async def register(
    tmp: Path, target: str, names: list[str], local: str, tag: str, rate: int
) -> asyncio.subprocess.Process:
    users = tmp / f"{tag}.csv"
    users.write_text("SEQUENTIAL\n" + "".join(f"{n};{PASSWORD};600\n" for n in names))
    return await asyncio.create_subprocess_exec(
        SIPP,
        target,
        "-sf",
        str(SCENARIO),
        "-inf",
        str(users),
        "-i",
        local,
        "-p",
        "0",
        "-r",
        str(rate),
        "-m",
        str(len(names)),
        "-timeout",
        "30s",
        "-timeout_error",
        "-recv_timeout",
        "4000",
        # One retransmission only: a handset's request must not be lost in the flood.
        "-max_non_invite_retrans",
        "1",
        "-nostdin",
        "-trace_err",
        "-error_file",
        str(tmp / f"{tag}.errors.log"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=tmp,
    )


async def test_handsets_keep_registering_through_a_datagram_flood(
    sidecar: tuple[Sidecar, ControlPlane], tmp_path: Path
) -> None:
    node, control = sidecar
    host, port = node.listen_addresses[Transport.UDP]
    target = f"{host}:{port}"
    known = [f"known{n}" for n in range(100)]
    fresh = [f"fresh{n}" for n in range(100)]
    await create_users(control, known + fresh)
    before = await register(tmp_path, target, known, "127.0.0.1", "before", 100)
    assert await asyncio.wait_for(before.wait(), 45) == 0

    flooder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FLOODER,
        host,
        str(port),
        "8",
        str(FLOOD_RATE),
        stdout=asyncio.subprocess.PIPE,
    )
    await asyncio.sleep(0.5)  # the flood is on
    refresh = await register(tmp_path, target, known, "127.0.0.1", "refresh", 50)
    first = await register(tmp_path, target, fresh, "127.0.0.3", "first", 50)
    statuses = await asyncio.wait_for(asyncio.gather(refresh.wait(), first.wait()), 40)
    still_flooding = flooder.returncode is None
    flooded = int((await asyncio.wait_for(flooder.communicate(), 30))[0])

    assert node.intake is not None
    refused = node.intake.queue.refused
    assert statuses == [0, 0], (tmp_path / "first.errors.log").read_text()[:2000]
    assert still_flooding  # the handsets were served during the flood, not after it
    assert flooded > 100_000
    assert refused[Reason.NOT_SIP] > 0  # the random bytes went without a parse


async def test_a_slowloris_connection_is_closed_and_others_are_served(
    sidecar: tuple[Sidecar, ControlPlane],
) -> None:
    node, _ = sidecar
    host, port = node.listen_addresses[Transport.TCP]
    slow_reader, slow_writer = await asyncio.open_connection(host, port)
    options = (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKslow\r\n"
        "From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: slow\r\nCSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()

    async def trickle() -> None:
        for byte in options[:-4]:  # never the blank line that ends the header
            slow_writer.write(bytes([byte]))
            await slow_writer.drain()
            await asyncio.sleep(0.1)

    trickler = asyncio.create_task(trickle())
    good_reader, good_writer = await asyncio.open_connection(host, port)
    good_writer.write(options.replace(b"z9hG4bKslow", b"z9hG4bKgood"))
    answer = await asyncio.wait_for(good_reader.readuntil(b"\r\n\r\n"), 10)
    closed = await asyncio.wait_for(slow_reader.read(), 10)
    trickler.cancel()
    good_writer.close()
    slow_writer.close()

    assert answer.startswith(b"SIP/2.0 200 OK\r\n")
    assert closed == b""  # cut off although a byte came every 0.1 s
    server = node._streams[Transport.TCP]
    assert server.timed_out >= 1
