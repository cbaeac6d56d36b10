"""Handsets registering through a real sidecar and a real control plane, both in-process.

SIPp plays the handset for MD5 digest over UDP and TCP (the Debian build has no TLS and cannot
compute SHA-256); a small scripted client in this file covers SHA-256 (RFC 8760) and TLS.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sip2uc.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    presence_pb2,
    presence_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)
from sip2uc_core.sip.digest import build_credentials, compute_ha1, parse_challenge
from sip2uc_core.sip.message import SipResponse, parse_message
from sip2uc_media.sidecar import Sidecar, SidecarConfig, Transport

SIPP = shutil.which("sipp") or "/usr/bin/sipp"
SCENARIOS = Path(__file__).parent / "sipp"

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


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
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

    async def sidecar(self, name: str, algorithms: tuple[str, ...]) -> Sidecar:
        sidecar = Sidecar(
            SidecarConfig(
                control=self.control.address,
                token=self.control.token,
                name=name,
                sip_listen="127.0.0.1:0",
                tls_listen="127.0.0.1:0",
                data_dir=self.tmp / name,
                digest_algorithms=algorithms,
            )
        )
        await sidecar.start()
        self.sidecars.append(sidecar)
        assert sidecar.control is not None
        await asyncio.wait_for(sidecar.control.wait_up(), 10)
        return sidecar

    async def create_user(self, alias: str, password: str) -> users_pb2.User:
        stub = users_pb2_grpc.UserServiceStub(self.channel)
        response = await stub.CreateUser(
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
        return response.user

    async def set_min_expires(self, seconds: int) -> None:
        stub = admin_pb2_grpc.AdminServiceStub(self.channel)
        await stub.UpdateSettings(
            admin_pb2.UpdateSettingsRequest(
                settings=admin_pb2.Settings(min_expires=seconds, default_expires=seconds),
                update_mask=field_mask_pb2.FieldMask(paths=["min_expires", "default_expires"]),
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


async def run_sipp(
    tmp: Path, sidecar: Sidecar, scenario: str, rows: list[str], *, transport: str = "u1"
) -> int:
    kind = Transport.UDP if transport == "u1" else Transport.TCP
    host, port = sidecar.listen_addresses[kind]
    users = tmp / f"{scenario}-{transport}.csv"
    users.write_text("SEQUENTIAL\n" + "".join(f"{row}\n" for row in rows))
    process = await asyncio.create_subprocess_exec(
        SIPP,
        f"{host}:{port}",
        "-sf",
        str(SCENARIOS / scenario),
        "-inf",
        str(users),
        "-t",
        transport,
        "-i",
        "127.0.0.1",
        "-p",
        str(free_port(socket.SOCK_DGRAM if transport == "u1" else socket.SOCK_STREAM)),
        "-m",
        str(len(rows)),
        "-timeout",
        "20s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-error_file",
        str(tmp / f"{scenario}-{transport}.errors.log"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=tmp,
    )
    return await asyncio.wait_for(process.wait(), 30)


async def test_md5_register_refresh_and_unregister_over_udp(stack: Stack, tmp_path: Path) -> None:
    sidecar = await stack.sidecar("sipp-udp", ("MD5",))
    await stack.create_user("alice", "alice-secret")

    status = await run_sipp(
        tmp_path, sidecar, "register_then_unregister.xml", ["alice;alice-secret;300"]
    )

    assert status == 0


async def test_md5_register_over_tcp(stack: Stack, tmp_path: Path) -> None:
    sidecar = await stack.sidecar("sipp-tcp", ("MD5",))
    await stack.create_user("bob", "bob-secret")

    status = await run_sipp(
        tmp_path, sidecar, "register_auth.xml", ["bob;bob-secret;300"], transport="t1"
    )

    assert status == 0


async def test_wrong_password_is_challenged_again(stack: Stack, tmp_path: Path) -> None:
    sidecar = await stack.sidecar("sipp-wrong", ("MD5",))
    await stack.create_user("carol", "carol-secret")

    status = await run_sipp(tmp_path, sidecar, "register_rejected.xml", ["carol;guess;300"])

    assert status == 0


async def test_unknown_user_is_challenged_again(stack: Stack, tmp_path: Path) -> None:
    sidecar = await stack.sidecar("sipp-unknown", ("MD5",))

    status = await run_sipp(tmp_path, sidecar, "register_rejected.xml", ["mallory;guess;300"])

    assert status == 0


async def test_short_expiry_lapses_and_the_user_goes_offline(stack: Stack, tmp_path: Path) -> None:
    sidecar = await stack.sidecar("sipp-expiry", ("MD5",))
    user = await stack.create_user("dave", "dave-secret")
    await stack.set_min_expires(10)
    watch = presence_pb2_grpc.PresenceServiceStub(stack.channel).WatchPresence(
        presence_pb2.WatchPresenceRequest(users=[user.name]), metadata=stack.metadata
    )
    seen: list[int] = []

    async def until_offline_after_online() -> None:
        async for message in watch:
            if message.WhichOneof("event") == "change":
                seen.append(message.change.current.availability)
                if seen[-1] == common_pb2.AVAILABILITY_OFFLINE and (
                    common_pb2.AVAILABILITY_AVAILABLE in seen
                ):
                    return

    watcher = asyncio.create_task(until_offline_after_online())
    status = await run_sipp(tmp_path, sidecar, "register_auth.xml", ["dave;dave-secret;10"])
    await asyncio.wait_for(watcher, 25)
    watch.cancel()

    assert status == 0
    assert seen[-2:] == [common_pb2.AVAILABILITY_AVAILABLE, common_pb2.AVAILABILITY_OFFLINE]


# --- a scripted client for SHA-256 and TLS ------------------------------------------------------


class ScriptedClient:
    """Just enough of a UAC to register: one connection, Content-Length framing."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.cseq = 0
        host, port = writer.get_extra_info("sockname")[:2]
        self.local = f"{host}:{port}"

    async def request(self, lines: list[str]) -> SipResponse:
        self.cseq += 1
        text = "\r\n".join([*lines, f"CSeq: {self.cseq} REGISTER", "Content-Length: 0", "", ""])
        self.writer.write(text.encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        response = parse_message(head)
        assert isinstance(response, SipResponse)
        return response

    def register_lines(self, user: str, registrar: str, branch: str) -> list[str]:
        return [
            f"REGISTER sip:{registrar} SIP/2.0",
            f"Via: SIP/2.0/TLS {self.local};branch=z9hG4bK{branch};rport",
            f"From: <sip:{user}@sip2uc.local>;tag=scripted",
            f"To: <sip:{user}@sip2uc.local>",
            "Call-ID: scripted-sha256@test",
            "Max-Forwards: 70",
            f"Contact: <sip:{user}@{self.local};transport=tls>;expires=120",
        ]


Connect = Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def test_sha256_registration_over_tls_with_a_scripted_client(stack: Stack) -> None:
    sidecar = await stack.sidecar("scripted-tls", ("SHA-256", "MD5"))
    await stack.create_user("erin", "erin-secret")
    host, port = sidecar.listen_addresses[Transport.TLS]
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the sidecar's self-signed certificate
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    client = ScriptedClient(reader, writer)
    registrar = f"{host}:{port};transport=tls"

    challenge_response = await client.request(client.register_lines("erin", registrar, "a1"))
    challenges = [
        parse_challenge(v) for v in challenge_response.headers.get_all("WWW-Authenticate")
    ]
    chosen = challenges[0]
    credentials = build_credentials(
        chosen,
        username="erin",
        ha1=compute_ha1(chosen.algorithm, "erin", chosen.realm, "erin-secret"),
        method="REGISTER",
        uri=f"sip:{registrar}",
        cnonce="0a4f113b",
    )
    final = await client.request(
        [
            *client.register_lines("erin", registrar, "a2"),
            f"Authorization: {credentials.serialize()}",
        ]
    )
    writer.close()

    assert challenge_response.status == 401
    assert [c.algorithm.value for c in challenges] == ["SHA-256", "MD5"]
    assert final.status == 200
    assert (final.headers.get("Contact") or "").endswith(";expires=120")
