"""TrunkService: trunk resources through the real API, with a real database."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sip2uc.v1 import admin_pb2, admin_pb2_grpc, common_pb2, trunks_pb2, trunks_pb2_grpc
from sip2uc_control.app import ControlConfig, ControlPlane

from .test_connectors_api import violations

PASSWORD = "trunk-pw-secret"


def stub(channel: grpc.aio.Channel) -> trunks_pb2_grpc.TrunkServiceStub:
    return trunks_pb2_grpc.TrunkServiceStub(channel)


async def create(channel: grpc.aio.Channel, trunk_id: str, **fields: object) -> trunks_pb2.Trunk:
    given: dict[str, object] = {"address": "pbx.example.com", "sidecar": "default"}
    given.update(fields)
    response = await stub(channel).CreateTrunk(
        trunks_pb2.CreateTrunkRequest(trunk_id=trunk_id, trunk=trunks_pb2.Trunk(**given))  # type: ignore[arg-type]
    )
    return response.trunk


async def test_a_created_trunk_never_shows_its_password(channel: grpc.aio.Channel) -> None:
    created = await create(
        channel, "pbx", username="gw", password=PASSWORD, register=True, priority=5
    )
    got = (await stub(channel).GetTrunk(trunks_pb2.GetTrunkRequest(name="trunks/pbx"))).trunk

    for trunk in (created, got):
        assert (trunk.name, trunk.has_password, trunk.password) == ("trunks/pbx", True, "")
        assert PASSWORD not in str(trunk)
    assert got.status.registration == trunks_pb2.TRUNK_REGISTRATION_UNREGISTERED
    assert got.status.state == trunks_pb2.TRUNK_STATE_DOWN
    assert got.status.last_error == "sidecar default is not connected"


async def test_bad_fields_are_named_in_the_error(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(
            channel,
            "Bad_Id",
            address="host:5060",
            sidecar="",
            outbound_pattern="(",
            register=True,
            codecs=["G729"],
            inbound_networks=["10.0.0.0/33"],
        )

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert violations(caught.value) == [
        "trunk_id",
        "trunk.address",
        "trunk.sidecar",
        "trunk.username",
        "trunk.outbound_pattern",
        "trunk.codecs",
        "trunk.inbound_networks[0]",
    ]


async def test_a_taken_id_is_already_exists(channel: grpc.aio.Channel) -> None:
    await create(channel, "pbx")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(channel, "pbx")
    assert caught.value.code() is grpc.StatusCode.ALREADY_EXISTS


async def test_update_changes_only_the_masked_fields_and_keeps_the_password(
    channel: grpc.aio.Channel,
) -> None:
    await create(channel, "pbx", username="gw", password=PASSWORD, priority=5)

    updated = (
        await stub(channel).UpdateTrunk(
            trunks_pb2.UpdateTrunkRequest(
                trunk=trunks_pb2.Trunk(
                    name="trunks/pbx",
                    priority=1,
                    username="other",
                    identity=trunks_pb2.TrunkIdentityPolicy(p_asserted_identity=True),
                ),
                update_mask=field_mask_pb2.FieldMask(
                    paths=["priority", "identity.p_asserted_identity"]
                ),
            )
        )
    ).trunk

    assert (updated.priority, updated.username, updated.has_password) == (1, "gw", True)
    assert (updated.identity.p_asserted_identity, updated.identity.caller_e164) == (True, True)


async def test_list_is_by_priority_then_id_and_delete_removes(channel: grpc.aio.Channel) -> None:
    await create(channel, "b", priority=1)
    await create(channel, "a", priority=2)
    await create(channel, "c", priority=1)

    listed = await stub(channel).ListTrunks(trunks_pb2.ListTrunksRequest())
    await stub(channel).DeleteTrunk(trunks_pb2.DeleteTrunkRequest(name="c"))
    after = await stub(channel).ListTrunks(trunks_pb2.ListTrunksRequest())

    assert [t.name for t in listed.trunks] == ["trunks/b", "trunks/c", "trunks/a"]
    assert [t.name for t in after.trunks] == ["trunks/b", "trunks/a"]


async def test_the_upstream_trunk_setting_becomes_the_trunk_upstream(
    channel: grpc.aio.Channel,
) -> None:
    await admin_pb2_grpc.AdminServiceStub(channel).UpdateSettings(
        admin_pb2.UpdateSettingsRequest(
            settings=admin_pb2.Settings(
                upstream_trunk=admin_pb2.UpstreamTrunk(
                    enabled=True,
                    address="192.0.2.10:5070",
                    sidecar="edge",
                    allowed_pattern=r"\+49.*",
                )
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["upstream_trunk"]),
        )
    )

    trunk = (await stub(channel).GetTrunk(trunks_pb2.GetTrunkRequest(name="upstream"))).trunk

    assert (trunk.address, trunk.port, trunk.sidecar, trunk.outbound_pattern) == (
        "192.0.2.10",
        5070,
        "edge",
        r"\+49.*",
    )
    assert trunk.transport == common_pb2.TRANSPORT_UDP


async def test_trunks_survive_a_restart(tmp_path: Path) -> None:
    config = ControlConfig(data_dir=tmp_path, grpc_listen="127.0.0.1:0", metrics_listen=None)
    first = ControlPlane(config)
    await first.start()
    async with grpc.aio.insecure_channel(first.address) as ch:
        await create(ch, "pbx", username="gw", password=PASSWORD)
    await first.stop(0.5)

    second = ControlPlane(config)
    await second.start()
    try:
        async with grpc.aio.insecure_channel(second.address) as ch:
            got = (await stub(ch).GetTrunk(trunks_pb2.GetTrunkRequest(name="pbx"))).trunk
        assert (got.username, got.has_password) == ("gw", True)
        assert second.core.trunk_store.require("pbx").password == PASSWORD
    finally:
        await second.stop(0.5)
