"""Trunk devices: calls from a configured source need no digest; any other source is challenged."""

from __future__ import annotations

import grpc
from sip2uc.v1 import common_pb2, sidecar_pb2, users_pb2, users_pb2_grpc

from .sidecar_session import SidecarSession, media

PW = "s3cret-pw"


async def add_trunk_user(channel: grpc.aio.Channel, ext: str, network: str, ruri_user: str) -> None:
    trunk = users_pb2.TrunkDevice(
        source_network=network, request_uri_user=ruri_user, target="127.0.0.9:5070", sidecar="s1"
    )
    await users_pb2_grpc.UserServiceStub(channel).CreateUser(
        users_pb2.CreateUserRequest(
            user=users_pb2.User(extension=ext, devices=[users_pb2.Device(trunk=trunk)])
        )
    )


async def add_handset_user(channel: grpc.aio.Channel, ext: str) -> None:
    device = users_pb2.Device(registering=users_pb2.RegisteringDevice(password=PW))
    await users_pb2_grpc.UserServiceStub(channel).CreateUser(
        users_pb2.CreateUserRequest(user=users_pb2.User(extension=ext, devices=[device]))
    )


def trunk_invite(host: str, from_user: str, dialled: str, leg_id: str) -> sidecar_pb2.InviteRequest:
    return sidecar_pb2.InviteRequest(
        origin=sidecar_pb2.RequestOrigin(
            sidecar="s1",
            source=common_pb2.SocketAddress(host=host, port=5070),
            transport=common_pb2.TRANSPORT_UDP,
            call_id=f"trunk-{leg_id}",
        ),
        leg_id=leg_id,
        request_uri=f"sip:{dialled}@sip2uc.local",
        from_uri=f"sip:{from_user}@dect-base.example",
        to_uri=f"sip:{dialled}@sip2uc.local",
        offer=media(30000, ("PCMA", 8)),
    )


async def test_trunk_source_calls_a_handset_without_credentials(channel: grpc.aio.Channel) -> None:
    await add_trunk_user(channel, "501", "127.0.0.0/8", ruri_user="1501")
    await add_handset_user(channel, "202")
    async with SidecarSession(channel, "s1") as s1:
        await s1.register("202", PW, 42001)
        resp = await s1.send_invite(trunk_invite("127.0.0.9", "1501", "202", "T1"))
        assert resp.disposition == sidecar_pb2.INVITE_DISPOSITION_ROUTING
        fork = await s1.next("create_leg")
        assert (fork.destination.port, fork.from_uri) == (42001, "sip:501@sip2uc.local")


async def test_unknown_source_or_unknown_port_user_is_challenged(channel: grpc.aio.Channel) -> None:
    await add_trunk_user(channel, "501", "10.20.0.0/24", ruri_user="1501")
    await add_handset_user(channel, "202")
    async with SidecarSession(channel, "s1") as s1:
        await s1.register("202", PW, 42001)
        outside = await s1.send_invite(trunk_invite("127.0.0.9", "1501", "202", "T1"))
        inside_wrong_user = await s1.send_invite(trunk_invite("10.20.0.7", "1999", "202", "T2"))
        for resp in (outside, inside_wrong_user):
            assert resp.disposition == sidecar_pb2.INVITE_DISPOSITION_UNAUTHORIZED
        assert s1.pending() == 0


async def test_calls_to_a_trunk_user_go_to_the_device_target(channel: grpc.aio.Channel) -> None:
    await add_trunk_user(channel, "501", "127.0.0.0/8", ruri_user="1501")
    await add_handset_user(channel, "202")
    async with SidecarSession(channel, "s1") as s1:
        await s1.register("202", PW, 42001)
        resp = await s1.invite("202", PW, "501", leg_id="A")
        assert resp.disposition == sidecar_pb2.INVITE_DISPOSITION_ROUTING
        fork = await s1.next("create_leg")
        assert (fork.request_uri, fork.destination.host, fork.destination.port) == (
            "sip:1501@127.0.0.9:5070",
            "127.0.0.9",
            5070,
        )
