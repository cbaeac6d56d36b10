"""AdminService settings: validated as a whole, each bad field named."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sip2uc.v1 import admin_pb2, admin_pb2_grpc
from sip2uc_control.app import ControlConfig, ControlPlane


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[admin_pb2_grpc.AdminServiceStub]:
    plane = ControlPlane(
        ControlConfig(data_dir=tmp_path, grpc_listen="127.0.0.1:0", metrics_listen=None)
    )
    await plane.start()
    async with grpc.aio.insecure_channel(plane.address) as channel:
        yield admin_pb2_grpc.AdminServiceStub(channel)
    await plane.stop(0.1)


def fields(err: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    out = []
    for detail in status.details:
        br = error_details_pb2.BadRequest()
        if detail.Unpack(br):
            out += [v.field for v in br.field_violations]
    return out


async def update(
    stub: admin_pb2_grpc.AdminServiceStub, settings: admin_pb2.Settings, *paths: str
) -> admin_pb2.Settings:
    resp = await stub.UpdateSettings(
        admin_pb2.UpdateSettingsRequest(
            settings=settings, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
        )
    )
    return resp.settings


async def test_region_is_normalised_and_an_unknown_region_is_refused(
    admin: admin_pb2_grpc.AdminServiceStub,
) -> None:
    saved = await update(admin, admin_pb2.Settings(default_region="de"), "default_region")
    assert saved.default_region == "DE"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await update(admin, admin_pb2.Settings(default_region="XX"), "default_region")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fields(info.value) == ["settings.default_region"]


async def test_trunk_needs_an_address_a_sidecar_and_a_valid_pattern(
    admin: admin_pb2_grpc.AdminServiceStub,
) -> None:
    broken = admin_pb2.Settings(
        upstream_trunk=admin_pb2.UpstreamTrunk(
            enabled=True, address="nohost", allowed_pattern="+49("
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await update(admin, broken, "upstream_trunk")
    assert sorted(fields(info.value)) == [
        "settings.upstream_trunk.address",
        "settings.upstream_trunk.allowed_pattern",
        "settings.upstream_trunk.sidecar",
    ]
    good = admin_pb2.Settings(
        upstream_trunk=admin_pb2.UpstreamTrunk(
            enabled=True, address="127.0.0.1:5070", sidecar="default", allowed_pattern=r"\+49.*"
        )
    )
    saved = await update(admin, good, "upstream_trunk")
    assert saved.upstream_trunk.allowed_pattern == r"\+49.*"


async def test_unknown_field_in_the_mask_is_refused(admin: admin_pb2_grpc.AdminServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await update(admin, admin_pb2.Settings(), "colour")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fields(info.value) == ["update_mask"]
