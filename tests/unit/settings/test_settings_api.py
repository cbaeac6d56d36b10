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


# -- every setting has a bound ---------------------------------------------------------------

CONFIGURATION_MD = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
MEGABYTE = "x" * 1_000_000


@pytest.mark.parametrize(
    ("settings", "path", "field"),
    [
        (admin_pb2.Settings(realm=MEGABYTE), "realm", "settings.realm"),
        (admin_pb2.Settings(realm="r" * 129), "realm", "settings.realm"),
        (admin_pb2.Settings(realm="tab\there"), "realm", "settings.realm"),
        (admin_pb2.Settings(sip_domain="a" * 254), "sip_domain", "settings.sip_domain"),
        (admin_pb2.Settings(sip_domain="under_score.example"), "sip_domain", "settings.sip_domain"),
        (
            admin_pb2.Settings(
                presence_codes=[
                    admin_pb2.PresenceCode(
                        code=f"*{n:03d}", action=admin_pb2.PRESENCE_CODE_ACTION_AWAY
                    )
                    for n in range(101)
                ]
            ),
            "presence_codes",
            "settings.presence_codes",
        ),
        (
            admin_pb2.Settings(media_timeout_seconds=3601),
            "media_timeout_seconds",
            "settings.media_timeout_seconds",
        ),
        (
            admin_pb2.Settings(default_channel_limit=100_001),
            "default_channel_limit",
            "settings.default_channel_limit",
        ),
        (
            admin_pb2.Settings(
                sidecars=[admin_pb2.SidecarPolicy(name=f"s{n}") for n in range(1001)]
            ),
            "sidecars",
            "settings.sidecars",
        ),
        (
            admin_pb2.Settings(sidecars=[admin_pb2.SidecarPolicy(name="a", channel_limit=100_001)]),
            "sidecars",
            "settings.sidecars[0].channel_limit",
        ),
        (
            admin_pb2.Settings(sidecars=[admin_pb2.SidecarPolicy(name="a b")]),
            "sidecars",
            "settings.sidecars[0].name",
        ),
        (
            admin_pb2.Settings(
                sidecars=[admin_pb2.SidecarPolicy(name="a"), admin_pb2.SidecarPolicy(name="a")]
            ),
            "sidecars",
            "settings.sidecars[1].name",
        ),
        (
            admin_pb2.Settings(
                sidecars=[
                    admin_pb2.SidecarPolicy(
                        name="a", allowed_networks=[f"10.0.{n}.0/24" for n in range(101)]
                    )
                ]
            ),
            "sidecars",
            "settings.sidecars[0].allowed_networks",
        ),
        (
            admin_pb2.Settings(upstream_trunk=admin_pb2.UpstreamTrunk(allowed_pattern="9" * 257)),
            "upstream_trunk",
            "settings.upstream_trunk.allowed_pattern",
        ),
        (
            admin_pb2.Settings(upstream_trunk=admin_pb2.UpstreamTrunk(address="h" * 262)),
            "upstream_trunk",
            "settings.upstream_trunk.address",
        ),
    ],
)
async def test_a_value_beyond_its_bound_is_refused_with_its_field(
    admin: admin_pb2_grpc.AdminServiceStub, settings: admin_pb2.Settings, path: str, field: str
) -> None:
    before = (await admin.GetSettings(admin_pb2.GetSettingsRequest())).settings

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await update(admin, settings, path)

    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fields(info.value) == [field]
    assert len(info.value.details() or "") < 1000  # the refusal does not quote a megabyte back
    assert (await admin.GetSettings(admin_pb2.GetSettingsRequest())).settings == before


async def test_values_at_their_bounds_are_kept(admin: admin_pb2_grpc.AdminServiceStub) -> None:
    saved = await update(
        admin,
        admin_pb2.Settings(
            realm="r" * 128,
            sip_domain="a" * 63 + "." + "b" * 63,
            default_channel_limit=100_000,
            sidecars=[admin_pb2.SidecarPolicy(name="vlan-10.site_a", channel_limit=100_000)],
        ),
        "realm",
        "sip_domain",
        "default_channel_limit",
        "sidecars",
    )
    assert (len(saved.realm), saved.default_channel_limit) == (128, 100_000)


def test_the_configuration_reference_gives_every_setting_its_bound() -> None:
    rows: dict[str, str] = {}
    for line in CONFIGURATION_MD.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].startswith("`") and cells[0].endswith("`"):
            rows[cells[0].strip("`")] = cells[2]
    for name in admin_pb2.Settings.DESCRIPTOR.fields_by_name:
        assert name in rows, f"docs/configuration.md has no row for {name}"
        assert rows[name] and rows[name] != "-", f"docs/configuration.md gives {name} no bound"
