"""ConnectorService over real gRPC and SQLite: the resource, its write-only secrets, the session
of the process that runs a bridge, and the origin of EXTERNAL presence."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sip2uc.v1 import (
    common_pb2,
    connectors_pb2,
    connectors_pb2_grpc,
    presence_pb2,
    presence_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)
from sip2uc_control.app import ControlConfig, ControlPlane

from .in_memory import Clock

SERVER = "sip:presence.example.com:5061;transport=tls"
GUID = "2b7b4c1e-8f2d-4e57-9c1a-3f5d6e7a8b9c"


def violations(err: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    out = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            out += [v.field for v in br.field_violations]
    return out


def sip_connector(**config: object) -> connectors_pb2.Connector:
    fields: dict[str, object] = {"server": SERVER, "username": "gw", "password": "pw-secret-1"}
    fields.update(config)
    return connectors_pb2.Connector(sip_presence=connectors_pb2.SipPresenceConfig(**fields))  # type: ignore[arg-type]


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> connectors_pb2_grpc.ConnectorServiceStub:
    return connectors_pb2_grpc.ConnectorServiceStub(channel)


async def create(
    stub: connectors_pb2_grpc.ConnectorServiceStub, name: str = "kam", **config: object
) -> connectors_pb2.Connector:
    request = connectors_pb2.CreateConnectorRequest(
        connector_id=name, connector=sip_connector(**config)
    )
    return (await stub.CreateConnector(request)).connector


async def test_a_created_connector_shows_no_secret_and_waits_for_a_runner(
    stub: connectors_pb2_grpc.ConnectorServiceStub,
) -> None:
    created = await create(stub)
    assert created.name == "connectors/kam"
    assert created.sip_presence.server == SERVER
    assert created.sip_presence.password == "" and created.sip_presence.has_password
    assert created.status.state == connectors_pb2.CONNECTOR_STATE_CONNECTING
    assert "waiting for a process" in created.status.last_error
    listed = (await stub.ListConnectors(connectors_pb2.ListConnectorsRequest())).connectors
    got = (await stub.GetConnector(connectors_pb2.GetConnectorRequest(name="kam"))).connector
    for shown in (listed[0], got):
        assert "pw-secret-1" not in json.dumps(json_format.MessageToDict(shown))


async def test_the_secret_is_not_in_the_log(
    stub: connectors_pb2_grpc.ConnectorServiceStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    await create(stub)
    await stub.ClaimConnector(connectors_pb2.ClaimConnectorRequest(name="kam", runner="t"))
    # aiosqlite logs statement parameters at DEBUG; the servers keep that logger at INFO.
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("aiosqlite")]
    assert ours and not any("pw-secret-1" in text for text in ours)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"server": "http://x"}, "connector.sip_presence.server"),
        ({"server": "sip:x;transport=sctp"}, "connector.sip_presence.server"),
        ({"server": "sip:user@host"}, "connector.sip_presence.server"),
        ({"server": ""}, "connector.sip_presence.server"),
        ({"expires": 5}, "connector.sip_presence.expires"),
        ({"dnd_note": "x" * 300}, "connector.sip_presence.dnd_note"),
        ({"tls_ca_pem": "not pem"}, "connector.sip_presence.tls_ca_pem"),
    ],
)
async def test_a_bad_configuration_is_refused_naming_the_field(
    stub: connectors_pb2_grpc.ConnectorServiceStub, config: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await create(stub, **config)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert violations(err.value) == [field]


async def test_bad_ids_and_taken_ids_are_refused(
    stub: connectors_pb2_grpc.ConnectorServiceStub,
) -> None:
    for bad in ("", "Kam", "1kam", "k" * 64, "ka m"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await create(stub, name=bad)
        assert violations(err.value) == ["connector_id"]
    await create(stub)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await create(stub)
    assert err.value.code() is grpc.StatusCode.ALREADY_EXISTS


async def test_a_teams_connector_needs_tenant_and_client_ids(
    stub: connectors_pb2_grpc.ConnectorServiceStub,
) -> None:
    good = connectors_pb2.TeamsConfig(
        tenant_id="contoso.onmicrosoft.com", client_id=GUID, client_secret="s"
    )
    created = (
        await stub.CreateConnector(
            connectors_pb2.CreateConnectorRequest(
                connector_id="teams", connector=connectors_pb2.Connector(teams=good)
            )
        )
    ).connector
    assert created.teams.has_client_secret and created.teams.client_secret == ""
    bad = connectors_pb2.TeamsConfig(tenant_id="", client_id="nope", graph_url="ftp://x")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateConnector(
            connectors_pb2.CreateConnectorRequest(
                connector_id="t2", connector=connectors_pb2.Connector(teams=bad)
            )
        )
    assert violations(err.value) == [
        "connector.teams.tenant_id",
        "connector.teams.client_id",
        "connector.teams.graph_url",
    ]


async def test_update_changes_what_the_mask_names_and_keeps_the_password(
    stub: connectors_pb2_grpc.ConnectorServiceStub,
) -> None:
    await create(stub)
    change = connectors_pb2.Connector(
        name="connectors/kam",
        external=True,
        sip_presence=connectors_pb2.SipPresenceConfig(server="sip:10.0.0.1:5060", username="other"),
    )
    updated = (
        await stub.UpdateConnector(
            connectors_pb2.UpdateConnectorRequest(
                connector=change,
                update_mask=field_mask_pb2.FieldMask(paths=["sip_presence.server", "external"]),
            )
        )
    ).connector
    assert (updated.sip_presence.server, updated.sip_presence.username) == (
        "sip:10.0.0.1:5060",
        "gw",
    )
    assert updated.external and updated.sip_presence.has_password
    claim = await stub.ClaimConnector(connectors_pb2.ClaimConnectorRequest(name="kam", runner="t"))
    assert claim.secrets.password == "pw-secret-1"


async def test_the_kind_of_a_connector_cannot_change(
    stub: connectors_pb2_grpc.ConnectorServiceStub,
) -> None:
    await create(stub)
    change = connectors_pb2.Connector(
        name="kam", teams=connectors_pb2.TeamsConfig(tenant_id="t", client_id=GUID)
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.UpdateConnector(
            connectors_pb2.UpdateConnectorRequest(
                connector=change, update_mask=field_mask_pb2.FieldMask(paths=["teams"])
            )
        )
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_one_process_at_a_time_runs_a_connector(
    stub: connectors_pb2_grpc.ConnectorServiceStub,
) -> None:
    await create(stub)
    claim = await stub.ClaimConnector(
        connectors_pb2.ClaimConnectorRequest(name="kam", runner="host-a:1")
    )
    assert claim.secrets.password == "pw-secret-1" and claim.session and claim.cursor == ""
    assert claim.lease.seconds == 30
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ClaimConnector(
            connectors_pb2.ClaimConnectorRequest(name="kam", runner="host-b:2")
        )
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "host-a:1" in (err.value.details() or "")
    await stub.ReleaseConnector(
        connectors_pb2.ReleaseConnectorRequest(name="kam", session=claim.session)
    )
    await stub.ClaimConnector(connectors_pb2.ClaimConnectorRequest(name="kam", runner="host-b:2"))


async def test_saved_cursor_and_state_come_back_with_the_next_claim(
    stub: connectors_pb2_grpc.ConnectorServiceStub,
) -> None:
    await create(stub)
    claim = await stub.ClaimConnector(connectors_pb2.ClaimConnectorRequest(name="kam", runner="a"))
    entry = connectors_pb2.ConnectorStateEntry
    await stub.SaveConnectorState(
        connectors_pb2.SaveConnectorStateRequest(
            name="kam",
            session=claim.session,
            cursor="42",
            upserts=[entry(key="pub presence sip:a@b", value=b"1"), entry(key="k2", value=b"2")],
        )
    )
    await stub.SaveConnectorState(
        connectors_pb2.SaveConnectorStateRequest(
            name="kam",
            session=claim.session,
            upserts=[entry(key="k2", value=b"3")],
            deletes=["nope"],
        )
    )
    await stub.ReleaseConnector(
        connectors_pb2.ReleaseConnectorRequest(name="kam", session=claim.session)
    )
    again = await stub.ClaimConnector(connectors_pb2.ClaimConnectorRequest(name="kam", runner="b"))
    assert again.cursor == "42"
    assert {e.key: e.value for e in again.entries} == {"pub presence sip:a@b": b"1", "k2": b"3"}


async def test_writes_without_the_session_are_refused(
    stub: connectors_pb2_grpc.ConnectorServiceStub,
) -> None:
    await create(stub)
    await stub.ClaimConnector(connectors_pb2.ClaimConnectorRequest(name="kam", runner="a"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SaveConnectorState(
            connectors_pb2.SaveConnectorStateRequest(name="kam", session="forged", cursor="1")
        )
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ReportConnectorStatus(
            connectors_pb2.ReportConnectorStatusRequest(name="kam", session="forged")
        )
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION


async def test_a_reported_status_is_what_list_shows_with_the_runner(
    stub: connectors_pb2_grpc.ConnectorServiceStub,
) -> None:
    await create(stub)
    claim = await stub.ClaimConnector(
        connectors_pb2.ClaimConnectorRequest(name="kam", runner="host:7")
    )
    status = connectors_pb2.ConnectorStatus(
        state=connectors_pb2.CONNECTOR_STATE_CONNECTED, users_mapped=12, changes_out=3
    )
    status.lag.FromSeconds(2)
    await stub.ReportConnectorStatus(
        connectors_pb2.ReportConnectorStatusRequest(
            name="kam", session=claim.session, status=status
        )
    )
    [shown] = (await stub.ListConnectors(connectors_pb2.ListConnectorsRequest())).connectors
    assert shown.status.state == connectors_pb2.CONNECTOR_STATE_CONNECTED
    assert (shown.status.runner, shown.status.users_mapped, shown.status.lag.seconds) == (
        "host:7",
        12,
        2,
    )
    assert shown.status.report_time.seconds > 0


async def test_updating_a_connector_ends_its_session(
    stub: connectors_pb2_grpc.ConnectorServiceStub,
) -> None:
    await create(stub)
    claim = await stub.ClaimConnector(connectors_pb2.ClaimConnectorRequest(name="kam", runner="a"))
    await stub.UpdateConnector(
        connectors_pb2.UpdateConnectorRequest(
            connector=connectors_pb2.Connector(name="kam", display_name="Kamailio"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ReportConnectorStatus(
            connectors_pb2.ReportConnectorStatusRequest(name="kam", session=claim.session)
        )
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION


async def test_a_disabled_connector_cannot_be_claimed(
    stub: connectors_pb2_grpc.ConnectorServiceStub,
) -> None:
    request = connectors_pb2.CreateConnectorRequest(connector_id="off", connector=sip_connector())
    request.connector.disabled = True
    created = (await stub.CreateConnector(request)).connector
    assert created.status.state == connectors_pb2.CONNECTOR_STATE_FAILED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ClaimConnector(connectors_pb2.ClaimConnectorRequest(name="off"))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def user(channel: grpc.aio.Channel, ext: str = "456") -> str:
    users = users_pb2_grpc.UserServiceStub(channel)
    created = await users.CreateUser(
        users_pb2.CreateUserRequest(
            user=users_pb2.User(sip_uri=f"sip:{ext}@example.com", extension=ext)
        )
    )
    return created.user.name


async def test_external_presence_names_the_connector_that_reported_it(
    channel: grpc.aio.Channel, stub: connectors_pb2_grpc.ConnectorServiceStub
) -> None:
    await create(stub)
    name = await user(channel)
    presence = presence_pb2_grpc.PresenceServiceStub(channel)
    shown = (
        await presence.SetPresence(
            presence_pb2.SetPresenceRequest(
                user=name,
                availability=common_pb2.AVAILABILITY_DO_NOT_DISTURB,
                source=common_pb2.PRESENCE_SOURCE_EXTERNAL,
                origin="connectors/kam",
            )
        )
    ).presence
    assert (shown.source, shown.origin) == (common_pb2.PRESENCE_SOURCE_EXTERNAL, "connectors/kam")
    watch = presence.WatchPresence(presence_pb2.WatchPresenceRequest(cursor="0"))
    first = await watch.read()
    watch.cancel()
    assert (
        first.change.origin == "connectors/kam" and first.change.current.origin == "connectors/kam"
    )


async def test_an_origin_must_be_a_connector_and_only_external_has_one(
    channel: grpc.aio.Channel, stub: connectors_pb2_grpc.ConnectorServiceStub
) -> None:
    await create(stub)
    name = await user(channel)
    presence = presence_pb2_grpc.PresenceServiceStub(channel)
    for source, origin in (
        (common_pb2.PRESENCE_SOURCE_EXTERNAL, "connectors/nope"),
        (common_pb2.PRESENCE_SOURCE_MANUAL, "connectors/kam"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await presence.SetPresence(
                presence_pb2.SetPresenceRequest(
                    user=name,
                    availability=common_pb2.AVAILABILITY_BUSY,
                    source=source,
                    origin=origin,
                )
            )
        assert violations(err.value) == ["origin"]


async def test_a_connector_clears_only_what_it_reported(
    channel: grpc.aio.Channel, stub: connectors_pb2_grpc.ConnectorServiceStub
) -> None:
    await create(stub, name="kam")
    await create(stub, name="other")
    name = await user(channel)
    presence = presence_pb2_grpc.PresenceServiceStub(channel)
    external = common_pb2.PRESENCE_SOURCE_EXTERNAL
    await presence.SetPresence(
        presence_pb2.SetPresenceRequest(
            user=name,
            availability=common_pb2.AVAILABILITY_BUSY,
            source=external,
            origin="connectors/kam",
        )
    )
    kept = await presence.ClearPresence(
        presence_pb2.ClearPresenceRequest(user=name, source=external, origin="connectors/other")
    )
    assert kept.presence.availability == common_pb2.AVAILABILITY_BUSY
    cleared = await presence.ClearPresence(
        presence_pb2.ClearPresenceRequest(user=name, source=external, origin="connectors/kam")
    )
    assert cleared.presence.source == common_pb2.PRESENCE_SOURCE_REGISTRATION


async def test_reporting_the_same_external_state_again_does_not_beat_a_newer_manual_one(
    channel: grpc.aio.Channel, stub: connectors_pb2_grpc.ConnectorServiceStub
) -> None:
    await create(stub)
    name = await user(channel)
    presence = presence_pb2_grpc.PresenceServiceStub(channel)
    external = presence_pb2.SetPresenceRequest(
        user=name,
        availability=common_pb2.AVAILABILITY_BUSY,
        source=common_pb2.PRESENCE_SOURCE_EXTERNAL,
        origin="connectors/kam",
    )
    await presence.SetPresence(external)
    await presence.SetPresence(
        presence_pb2.SetPresenceRequest(user=name, availability=common_pb2.AVAILABILITY_AWAY)
    )
    again = (await presence.SetPresence(external)).presence
    assert (again.availability, again.source) == (
        common_pb2.AVAILABILITY_AWAY,
        common_pb2.PRESENCE_SOURCE_MANUAL,
    )


async def test_deleting_a_connector_clears_the_presence_it_brought_in(
    channel: grpc.aio.Channel, stub: connectors_pb2_grpc.ConnectorServiceStub
) -> None:
    await create(stub)
    name = await user(channel)
    presence = presence_pb2_grpc.PresenceServiceStub(channel)
    await presence.SetPresence(
        presence_pb2.SetPresenceRequest(
            user=name,
            availability=common_pb2.AVAILABILITY_DO_NOT_DISTURB,
            source=common_pb2.PRESENCE_SOURCE_EXTERNAL,
            origin="connectors/kam",
        )
    )
    await stub.DeleteConnector(connectors_pb2.DeleteConnectorRequest(name="kam"))
    shown = (await presence.GetPresence(presence_pb2.GetPresenceRequest(user=name))).presence
    assert shown.availability == common_pb2.AVAILABILITY_OFFLINE and shown.origin == ""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetConnector(connectors_pb2.GetConnectorRequest(name="kam"))
    assert err.value.code() is grpc.StatusCode.NOT_FOUND


async def test_users_carry_an_entra_object_id_and_a_unique_upn(channel: grpc.aio.Channel) -> None:
    users = users_pb2_grpc.UserServiceStub(channel)
    created = (
        await users.CreateUser(
            users_pb2.CreateUserRequest(
                user=users_pb2.User(
                    sip_uri="sip:a@example.com",
                    entra_object_id=GUID.upper(),
                    user_principal_name="alice@example.com",
                )
            )
        )
    ).user
    assert (created.entra_object_id, created.user_principal_name) == (GUID, "alice@example.com")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.CreateUser(
            users_pb2.CreateUserRequest(
                user=users_pb2.User(
                    sip_uri="sip:b@example.com", user_principal_name="ALICE@example.com"
                )
            )
        )
    assert err.value.code() is grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.UpdateUser(
            users_pb2.UpdateUserRequest(
                user=users_pb2.User(name=created.name, entra_object_id="not-a-guid"),
                update_mask=field_mask_pb2.FieldMask(paths=["entra_object_id"]),
            )
        )
    assert violations(err.value) == ["user.entra_object_id"]


async def test_connectors_and_user_identities_survive_a_restart(tmp_path: Path) -> None:
    config = ControlConfig(data_dir=tmp_path, grpc_listen="127.0.0.1:0", metrics_listen=None)
    plane = ControlPlane(config)
    await plane.start()
    async with grpc.aio.insecure_channel(plane.address) as ch:
        await create(connectors_pb2_grpc.ConnectorServiceStub(ch))
        await users_pb2_grpc.UserServiceStub(ch).CreateUser(
            users_pb2.CreateUserRequest(
                user=users_pb2.User(
                    sip_uri="sip:a@example.com", user_principal_name="a@example.com"
                )
            )
        )
    await plane.stop(0.1)
    plane = ControlPlane(config)
    await plane.start()
    try:
        async with grpc.aio.insecure_channel(plane.address) as ch:
            stub = connectors_pb2_grpc.ConnectorServiceStub(ch)
            claim = await stub.ClaimConnector(connectors_pb2.ClaimConnectorRequest(name="kam"))
            assert claim.secrets.password == "pw-secret-1"
            got = await users_pb2_grpc.UserServiceStub(ch).GetUser(
                users_pb2.GetUserRequest(name="sip:a@example.com")
            )
            assert got.user.user_principal_name == "a@example.com"
    finally:
        await plane.stop(0.1)


async def next_watched(stream: Any) -> connectors_pb2.WatchConnectorsResponse:
    message: connectors_pb2.WatchConnectorsResponse = await asyncio.wait_for(stream.read(), 5)
    return message


async def report(
    stub: connectors_pb2_grpc.ConnectorServiceStub,
    session: str,
    state: connectors_pb2.ConnectorState.ValueType,
    **fields: Any,
) -> None:
    await stub.ReportConnectorStatus(
        connectors_pb2.ReportConnectorStatusRequest(
            name="kam",
            session=session,
            status=connectors_pb2.ConnectorStatus(state=state, **fields),
        )
    )


async def test_watch_connectors_sends_the_snapshot_then_each_new_status_and_the_deletion(
    stub: connectors_pb2_grpc.ConnectorServiceStub,
) -> None:
    await create(stub, "early")
    watch = stub.WatchConnectors(connectors_pb2.WatchConnectorsRequest())
    first = await next_watched(watch)
    assert first.connector.name == "connectors/early"
    assert first.connector.sip_presence.password == "" and not first.deleted
    assert (await next_watched(watch)).snapshot_complete

    await create(stub)
    created = await next_watched(watch)
    assert created.connector.name == "connectors/kam"
    assert "waiting for a process" in created.connector.status.last_error
    claim = await stub.ClaimConnector(
        connectors_pb2.ClaimConnectorRequest(name="kam", runner="h:1")
    )
    claimed = await next_watched(watch)
    assert claimed.connector.status.state == connectors_pb2.CONNECTOR_STATE_CONNECTING
    assert claimed.connector.status.last_error == ""

    await report(stub, claim.session, connectors_pb2.CONNECTOR_STATE_CONNECTED, users_mapped=3)
    connected = (await next_watched(watch)).connector
    assert connected.status.state == connectors_pb2.CONNECTOR_STATE_CONNECTED
    assert (connected.status.users_mapped, connected.status.runner) == (3, "h:1")

    # The same report again says nothing new: the next message is the failure after it.
    await report(stub, claim.session, connectors_pb2.CONNECTOR_STATE_CONNECTED, users_mapped=3)
    await report(
        stub, claim.session, connectors_pb2.CONNECTOR_STATE_FAILED, last_error="503 from server"
    )
    failed = (await next_watched(watch)).connector
    assert failed.status.state == connectors_pb2.CONNECTOR_STATE_FAILED
    assert failed.status.last_error == "503 from server"

    await stub.DeleteConnector(connectors_pb2.DeleteConnectorRequest(name="kam"))
    deleted = await next_watched(watch)
    assert deleted.deleted and deleted.connector.name == "connectors/kam"
    watch.cancel()


async def test_watch_connectors_says_when_a_bridge_stops_reporting(
    stub: connectors_pb2_grpc.ConnectorServiceStub, control: ControlPlane, clock: Clock
) -> None:
    await create(stub)
    claim = await stub.ClaimConnector(
        connectors_pb2.ClaimConnectorRequest(name="kam", runner="h:1")
    )
    await report(stub, claim.session, connectors_pb2.CONNECTOR_STATE_CONNECTED)
    watch = stub.WatchConnectors(connectors_pb2.WatchConnectorsRequest())
    shown = (await next_watched(watch)).connector
    assert shown.status.state == connectors_pb2.CONNECTOR_STATE_CONNECTED
    assert (await next_watched(watch)).snapshot_complete

    clock.advance(31)  # past the lease, with no report in between
    assert control.core is not None
    await control.core.sweep()
    lapsed = (await next_watched(watch)).connector
    assert lapsed.status.state == connectors_pb2.CONNECTOR_STATE_FAILED
    assert "no report from its bridge" in lapsed.status.last_error
    watch.cancel()
