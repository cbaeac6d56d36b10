"""Sidecars' own credentials: minted per name, stored as a hash, good for SidecarService only and
only as that name, revocable without touching the admin token.

A control plane on loopback over real gRPC; `Authenticator`'s decisions for a listener that is
not loopback are checked directly (the network-namespace test runs one for real).
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from sip2uc.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    calls_pb2,
    common_pb2,
    directory_pb2,
    presence_pb2,
    registrations_pb2,
    sidecar_pb2,
    sidecar_pb2_grpc,
    users_pb2,
)
from sip2uc_control.app import ControlConfig, ControlPlane
from sip2uc_control.auth import Admin, Anonymous, Authenticator, SidecarPrincipal

from .sidecar_session import digest, register_once

ADMIN_FILES = (admin_pb2, calls_pb2, directory_pb2, presence_pb2, registrations_pb2, users_pb2)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def enroll(admin: admin_pb2_grpc.AdminServiceStub, name: str, replace: bool = False) -> str:
    response = await admin.EnrollSidecar(
        admin_pb2.EnrollSidecarRequest(sidecar=name, replace=replace)
    )
    return response.token


class Connection:
    """A raw Connect stream: a hello with `name`, sent with `token`."""

    def __init__(self, channel: grpc.aio.Channel, name: str, token: str | None) -> None:
        self.outgoing: asyncio.Queue[sidecar_pb2.ConnectRequest | None] = asyncio.Queue()
        self.outgoing.put_nowait(
            sidecar_pb2.ConnectRequest(hello=sidecar_pb2.SidecarHello(name=name, instance_id="i"))
        )

        async def requests() -> AsyncIterator[sidecar_pb2.ConnectRequest]:
            while (item := await self.outgoing.get()) is not None:
                yield item

        stub = sidecar_pb2_grpc.SidecarServiceStub(channel)
        self.call: Any = stub.Connect(requests(), metadata=bearer(token) if token else None)

    async def first(self) -> sidecar_pb2.ConnectResponse:
        return await asyncio.wait_for(self.call.read(), 5)

    async def refusal(self) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            while True:
                message = await asyncio.wait_for(self.call.read(), 5)
                assert message is not grpc.aio.EOF, "the session ended without an error"
        return info.value.code(), info.value.details() or ""


async def test_a_credential_is_shown_once_and_only_its_hash_is_stored(
    control: ControlPlane, channel: grpc.aio.Channel, tmp_path: Path
) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(channel)

    token = await enroll(admin, "vlan10")

    assert token.startswith("sidecar-") and len(token) > 40
    listed = await admin.ListSidecarEnrollments(admin_pb2.ListSidecarEnrollmentsRequest())
    assert [e.name for e in listed.enrollments] == ["sidecars/vlan10"]
    assert token not in str(listed)
    with sqlite3.connect(tmp_path / "sip2uc.db") as db:
        rows = db.execute("SELECT name, token_hash FROM sidecar_enrollments").fetchall()
    assert rows == [("vlan10", hashlib.sha256(token.encode()).hexdigest())]
    assert token.encode() not in (tmp_path / "sip2uc.db").read_bytes()


async def test_enrolling_a_name_twice_needs_replace_and_the_old_credential_then_fails(
    channel: grpc.aio.Channel,
) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    old = await enroll(admin, "vlan10")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await enroll(admin, "vlan10")
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS

    new = await enroll(admin, "vlan10", replace=True)

    assert (await Connection(channel, "vlan10", new).first()).WhichOneof("payload") == "welcome"
    code, details = await Connection(channel, "vlan10", old).refusal()
    assert (code, details) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "invalid bearer token: unknown or revoked sidecar credential",
    )


@pytest.mark.parametrize("name", ["", "has space", "-dash-first", "x" * 64, "a/b", "é"])
async def test_a_name_that_cannot_be_a_sidecars_is_refused_with_the_field(
    channel: grpc.aio.Channel, name: str
) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await enroll(admin, name)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sidecar:" in (info.value.details() or "")


def admin_methods() -> list[tuple[str, bool, bool]]:
    """Every RPC of every public service: (path, client streams, server streams)."""
    out = []
    for module in ADMIN_FILES:
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        for service in proto.service:
            for method in service.method:
                out.append(
                    (
                        f"/{proto.package}.{service.name}/{method.name}",
                        method.client_streaming,
                        method.server_streaming,
                    )
                )
    return out


async def test_a_sidecar_credential_is_refused_on_every_admin_rpc(
    channel: grpc.aio.Channel,
) -> None:
    token = await enroll(admin_pb2_grpc.AdminServiceStub(channel), "vlan10")
    methods = admin_methods()
    assert len(methods) > 30

    refused = {}
    for path, client_streams, server_streams in methods:
        assert not client_streams
        if server_streams:
            call: Any = channel.unary_stream(path)(b"", metadata=bearer(token))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in call:
                    pass
        else:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await channel.unary_unary(path)(b"", metadata=bearer(token))
        refused[path] = info.value.code()

    assert set(refused.values()) == {grpc.StatusCode.PERMISSION_DENIED}, refused


async def test_a_sidecar_cannot_say_hello_as_another_sidecar(channel: grpc.aio.Channel) -> None:
    token = await enroll(admin_pb2_grpc.AdminServiceStub(channel), "vlan10")

    code, details = await Connection(channel, "vlan20", token).refusal()

    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert details == "this credential belongs to sidecars/vlan10, not sidecars/vlan20"


async def test_a_sidecar_cannot_register_handsets_in_another_sidecars_name(
    channel: grpc.aio.Channel,
) -> None:
    token = await enroll(admin_pb2_grpc.AdminServiceStub(channel), "vlan10")
    stub = sidecar_pb2_grpc.SidecarServiceStub(channel)
    request = sidecar_pb2.RegisterRequest(
        origin=sidecar_pb2.RequestOrigin(
            sidecar="vlan20",
            transport=common_pb2.TRANSPORT_UDP,
            source=common_pb2.SocketAddress(host="192.0.2.7", port=5060),
        ),
        credentials=digest("alice", "pw", "REGISTER"),
        aor="sip:alice@sip2uc.local",
    )

    class WithToken:
        def __init__(self, rpc: Any) -> None:
            self.rpc = rpc

        def __call__(self, requests: Any) -> Any:
            return self.rpc(requests, metadata=bearer(token))

    stub.RegisterStream = WithToken(stub.RegisterStream)  # type: ignore[method-assign]
    with pytest.raises(Exception, match="belongs to sidecars/vlan10, not sidecars/vlan20") as info:
        await register_once(stub, request)
    assert getattr(info.value, "code", None) == grpc.StatusCode.PERMISSION_DENIED.value[0]


async def test_on_loopback_an_unenrolled_name_needs_no_credential_but_an_enrolled_one_does(
    control: ControlPlane, channel: grpc.aio.Channel
) -> None:
    await enroll(admin_pb2_grpc.AdminServiceStub(channel), "vlan10")

    free = await Connection(channel, "bench", None).first()
    code, details = await Connection(channel, "vlan10", control.token).refusal()

    assert free.WhichOneof("payload") == "welcome"
    assert (code, details) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "sidecars/vlan10 is enrolled: it connects only with its own credential",
    )


async def test_revoking_ends_the_live_session_and_the_credential_is_refused_after(
    control: ControlPlane, channel: grpc.aio.Channel
) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    token = await enroll(admin, "vlan10")
    live = Connection(channel, "vlan10", token)
    assert (await live.first()).WhichOneof("payload") == "welcome"
    listed = await admin.ListSidecars(admin_pb2.ListSidecarsRequest())
    assert [(s.name, s.enrolled) for s in listed.sidecars] == [("sidecars/vlan10", True)]

    revoked = await admin.RevokeSidecarEnrollment(
        admin_pb2.RevokeSidecarEnrollmentRequest(sidecar="sidecars/vlan10")
    )

    assert (revoked.enrollment.name, revoked.disconnected) == ("sidecars/vlan10", True)
    assert await live.refusal() == (
        grpc.StatusCode.UNAUTHENTICATED,
        "the credential of sidecars/vlan10 was revoked",
    )
    again = await Connection(channel, "vlan10", token).refusal()
    assert again[0] == grpc.StatusCode.UNAUTHENTICATED
    # The admin token is untouched.
    await admin.GetStatus(admin_pb2.GetStatusRequest(), metadata=bearer(control.token))


async def test_enrollments_survive_a_restart_and_record_their_last_connection(
    tmp_path: Path,
) -> None:
    config = ControlConfig(data_dir=tmp_path / "c", grpc_listen="127.0.0.1:0", metrics_listen=None)
    plane = ControlPlane(config)
    await plane.start()
    async with grpc.aio.insecure_channel(plane.address) as channel:
        token = await enroll(admin_pb2_grpc.AdminServiceStub(channel), "vlan10")
    await plane.stop(0.1)
    plane = ControlPlane(config)
    await plane.start()
    try:
        async with grpc.aio.insecure_channel(plane.address) as channel:
            welcome = await Connection(channel, "vlan10", token).first()
            listed = await admin_pb2_grpc.AdminServiceStub(channel).ListSidecarEnrollments(
                admin_pb2.ListSidecarEnrollmentsRequest()
            )
    finally:
        await plane.stop(0.1)
    assert welcome.WhichOneof("payload") == "welcome"
    (enrollment,) = listed.enrollments
    assert enrollment.HasField("last_connect_time")
    assert enrollment.last_connect_time.ToNanoseconds() >= enrollment.create_time.ToNanoseconds()


async def test_the_in_process_credential_acts_only_as_its_name_and_is_never_listed(
    control: ControlPlane, channel: grpc.aio.Channel
) -> None:
    token = control.sidecar_credential("default")

    ok = await Connection(channel, "default", token).first()
    other = await Connection(channel, "vlan10", token).refusal()
    listed = await admin_pb2_grpc.AdminServiceStub(channel).ListSidecarEnrollments(
        admin_pb2.ListSidecarEnrollmentsRequest()
    )

    assert ok.WhichOneof("payload") == "welcome"
    assert other[0] == grpc.StatusCode.PERMISSION_DENIED
    assert list(listed.enrollments) == []


# -- what a listener that is not loopback allows -------------------------------------------------

SIDECAR_RPC = "/sip2uc.v1.SidecarService/Connect"
ADMIN_RPC = "/sip2uc.v1.AdminService/GetStatus"


@pytest.mark.parametrize(
    ("principal", "method", "expected"),
    [
        (SidecarPrincipal("vlan10", "t"), SIDECAR_RPC, None),
        (SidecarPrincipal("vlan10", "t"), ADMIN_RPC, grpc.StatusCode.PERMISSION_DENIED),
        (Admin(), SIDECAR_RPC, grpc.StatusCode.PERMISSION_DENIED),
        (Admin(), ADMIN_RPC, None),
        (Anonymous(), SIDECAR_RPC, grpc.StatusCode.UNAUTHENTICATED),
        (Anonymous(), ADMIN_RPC, grpc.StatusCode.UNAUTHENTICATED),
    ],
)
def test_off_loopback_sidecars_need_their_own_credential_and_admins_the_token(
    control: ControlPlane, principal: Any, method: str, expected: grpc.StatusCode | None
) -> None:
    assert control.core is not None
    auth = Authenticator("admin-secret", control.core.enrollments, loopback=False)

    refused = auth.refusal(principal, method)

    assert (refused[0] if refused else None) == expected
    if principal == Admin() and method == SIDECAR_RPC:
        assert refused is not None and "sip2uc sidecar enroll NAME" in refused[1]
