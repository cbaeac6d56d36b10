"""Per-device digest algorithms: a field of the device in UserService, kept across restarts,
pushed to connected sidecars whenever it changes, and enforced when credentials are verified."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sip2uc.v1 import (
    common_pb2,
    sidecar_pb2,
    sidecar_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)
from sip2uc_control.app import ControlConfig, ControlPlane
from sip2uc_core.sip.digest import Algorithm, compute_ha1, compute_response

from .sidecar_session import SidecarSession, register_once

MD5 = common_pb2.DIGEST_ALGORITHM_MD5
SHA_256 = common_pb2.DIGEST_ALGORITHM_SHA_256
REALM = "sip2uc"


def handset(password: str = "s3cret-pw", *algorithms: int) -> users_pb2.Device:
    return users_pb2.Device(
        registering=users_pb2.RegisteringDevice(password=password, digest_algorithms=algorithms)
    )


async def create(channel: grpc.aio.Channel, ext: str, *algorithms: int) -> users_pb2.User:
    response = await users_pb2_grpc.UserServiceStub(channel).CreateUser(
        users_pb2.CreateUserRequest(
            user=users_pb2.User(
                sip_uri=f"sip:{ext}@example.com",
                extension=ext,
                devices=[handset("s3cret-pw", *algorithms)],
            )
        )
    )
    return response.user


async def set_algorithms(
    channel: grpc.aio.Channel, user: users_pb2.User, *algorithms: int
) -> users_pb2.User:
    update = users_pb2.User(name=user.name)
    for device in user.devices:
        copy = update.devices.add()
        copy.CopyFrom(device)
        copy.registering.ClearField("digest_algorithms")
        copy.registering.digest_algorithms.extend(algorithms)
    response = await users_pb2_grpc.UserServiceStub(channel).UpdateUser(
        users_pb2.UpdateUserRequest(
            user=update, update_mask=field_mask_pb2.FieldMask(paths=["devices"])
        )
    )
    return response.user


def register_with(
    username: str, algorithm: Algorithm, password: str = "s3cret-pw", host: str = "10.0.0.7"
) -> sidecar_pb2.RegisterRequest:
    ha1 = compute_ha1(algorithm, username, REALM, password)
    response = compute_response(
        algorithm,
        ha1,
        nonce="n",
        method="REGISTER",
        uri="sip:example.com",
        qop="auth",
        nc="00000001",
        cnonce="c",
    )
    return sidecar_pb2.RegisterRequest(
        origin=sidecar_pb2.RequestOrigin(
            sidecar="vlan10",
            source=common_pb2.SocketAddress(host=host, port=5062),
            transport=common_pb2.TRANSPORT_UDP,
            call_id=f"reg-{username}-{algorithm.value}",
        ),
        credentials=sidecar_pb2.DigestCredentials(
            username=username,
            realm=REALM,
            nonce="n",
            uri="sip:example.com",
            response=response,
            algorithm=algorithm.value,
            cnonce="c",
            nc="00000001",
            qop="auth",
            method="REGISTER",
        ),
        aor=f"sip:{username}@example.com",
        contacts=[sidecar_pb2.ContactBinding(uri=f"sip:{username}@{host}:5062", expires=600)],
        cseq=1,
    )


async def test_a_device_keeps_its_algorithms_in_the_order_given(
    channel: grpc.aio.Channel,
) -> None:
    created = await create(channel, "456", SHA_256)
    assert list(created.devices[0].registering.digest_algorithms) == [SHA_256]

    updated = await set_algorithms(channel, created, SHA_256, MD5)
    fetched = await users_pb2_grpc.UserServiceStub(channel).GetUser(
        users_pb2.GetUserRequest(name="456")
    )

    assert list(updated.devices[0].registering.digest_algorithms) == [SHA_256, MD5]
    assert fetched.user.devices[0].registering == users_pb2.RegisteringDevice(
        digest_username="456", has_password=True, digest_algorithms=[SHA_256, MD5]
    )


async def test_an_empty_list_means_the_sidecars_default(channel: grpc.aio.Channel) -> None:
    created = await create(channel, "456", SHA_256)

    cleared = await set_algorithms(channel, created)

    assert list(cleared.devices[0].registering.digest_algorithms) == []


@pytest.mark.parametrize(
    ("algorithms", "why"),
    [
        ((SHA_256, SHA_256), "each at most once"),
        ((common_pb2.DIGEST_ALGORITHM_UNSPECIFIED,), "DIGEST_ALGORITHM_MD5 or"),
        ((7,), "DIGEST_ALGORITHM_MD5 or"),
    ],
)
async def test_bad_algorithm_lists_are_refused_naming_the_field(
    channel: grpc.aio.Channel, algorithms: tuple[int, ...], why: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(channel, "456", *algorithms)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "user.devices[0].registering.digest_algorithms" in (caught.value.details() or "")
    assert why in (caught.value.details() or "")


async def test_a_sha256_device_is_refused_an_md5_answer_even_with_the_right_password(
    channel: grpc.aio.Channel,
) -> None:
    await create(channel, "456", SHA_256)
    stub = sidecar_pb2_grpc.SidecarServiceStub(channel)

    md5 = await register_once(stub, register_with("456", Algorithm.MD5))
    sha256 = await register_once(stub, register_with("456", Algorithm.SHA_256))

    assert md5.outcome == sidecar_pb2.REGISTER_OUTCOME_UNAUTHORIZED
    assert sha256.outcome == sidecar_pb2.REGISTER_OUTCOME_OK


async def test_a_device_without_its_own_algorithms_answers_either(
    channel: grpc.aio.Channel,
) -> None:
    await create(channel, "456")
    stub = sidecar_pb2_grpc.SidecarServiceStub(channel)

    for algorithm in (Algorithm.MD5, Algorithm.SHA_256):
        reply = await register_once(stub, register_with("456", algorithm))
        assert reply.outcome == sidecar_pb2.REGISTER_OUTCOME_OK, algorithm


async def test_a_connected_sidecar_learns_each_change_of_a_devices_algorithms(
    channel: grpc.aio.Channel,
) -> None:
    await create(channel, "100")  # the default: never listed
    alice = await create(channel, "456", SHA_256)
    async with SidecarSession(channel, "vlan10") as sidecar:
        assert [
            (d.username, list(d.algorithms)) for d in sidecar.welcome.settings.device_digests
        ] == [("456", [SHA_256])]

        await set_algorithms(channel, alice, SHA_256, MD5)
        changed = await sidecar.next("settings")
        assert [(d.username, list(d.algorithms)) for d in changed.device_digests] == [
            ("456", [SHA_256, MD5])
        ]

        await users_pb2_grpc.UserServiceStub(channel).DeleteUser(
            users_pb2.DeleteUserRequest(name="456")
        )
        gone = await sidecar.next("settings")
        assert list(gone.device_digests) == []

        await create(channel, "457")  # nothing sidecars act on: nothing sent ...
        await create(channel, "458", MD5)
        after = await sidecar.next("settings")  # ... so the next message is this one
        assert [d.username for d in after.device_digests] == ["458"]


async def test_algorithms_survive_a_restart(tmp_path: Path) -> None:
    for round_ in range(2):
        plane = ControlPlane(
            ControlConfig(data_dir=tmp_path, grpc_listen="127.0.0.1:0", metrics_listen=None)
        )
        await plane.start()
        try:
            async with grpc.aio.insecure_channel(plane.address) as channel:
                if round_ == 0:
                    await create(channel, "456", SHA_256, MD5)
                else:
                    fetched = await users_pb2_grpc.UserServiceStub(channel).GetUser(
                        users_pb2.GetUserRequest(name="456")
                    )
                    assert list(fetched.user.devices[0].registering.digest_algorithms) == [
                        SHA_256,
                        MD5,
                    ]
        finally:
            await plane.stop(0.5)
