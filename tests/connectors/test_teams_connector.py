"""A Teams connector run by the bridge runner against a real control plane (in-process, gRPC) and
the Microsoft Graph contract stand-in (tests/standins/graph, HTTPS on 127.0.0.1; nothing here
reaches Microsoft): the connector resource, the framework and the Teams bridge wired together."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from sip2uc.v1 import (
    common_pb2,
    connectors_pb2,
    connectors_pb2_grpc,
    presence_pb2,
    presence_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)
from sip2uc_connectors.control_api import ControlApi
from sip2uc_connectors.kinds import BRIDGES
from sip2uc_connectors.runner import BridgeRunner, RunnerOptions
from sip2uc_control.app import ControlConfig, ControlPlane
from teams.conftest import ALICE, APP_ID, BOB, SECRET, TENANT, standin

pytestmark = pytest.mark.slow
T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, within: float = 20.0
) -> T:
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def graph(tmp_path: Path) -> AsyncIterator[Any]:
    server = standin.GraphStandin(
        tls=standin.make_tls(tmp_path / "tls"),
        tenant_id=TENANT,
        apps=[standin.RegisteredApp(client_id=APP_ID, secret=SECRET)],
        users=[
            standin.StandinUser(ALICE, "alice@contoso.example"),
            standin.StandinUser(BOB, "bob@contoso.example"),
        ],
    )
    await server.start()
    try:
        yield server
    finally:
        await server.close()
    assert server.violations == [], "requests broke Graph's contract"


async def test_a_teams_connector_shows_sip2uc_states_in_teams_and_brings_teams_states_back(
    tmp_path: Path, graph: Any
) -> None:
    plane = ControlPlane(
        ControlConfig(data_dir=tmp_path / "cp", grpc_listen="127.0.0.1:0", metrics_listen=None)
    )
    await plane.start()
    channel = grpc.aio.insecure_channel(plane.address)
    api = ControlApi(plane.address, plane.token)
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        users = users_pb2_grpc.UserServiceStub(channel)
        alice = (
            await users.CreateUser(
                users_pb2.CreateUserRequest(
                    user=users_pb2.User(sip_uri="sip:alice@example.com", entra_object_id=ALICE)
                )
            )
        ).user.name
        bob = (
            await users.CreateUser(
                users_pb2.CreateUserRequest(
                    user=users_pb2.User(
                        sip_uri="sip:bob@example.com",
                        entra_object_id=BOB,
                        user_principal_name="bob@contoso.example",
                    )
                )
            )
        ).user.name
        config = connectors_pb2.TeamsConfig(
            tenant_id=TENANT,
            client_id=APP_ID,
            client_secret=SECRET,
            graph_url=graph.base_url,
            token_url=graph.base_url,
            tls_ca_pem=Path(graph.tls.ca_file).read_text(),
        )
        config.poll_interval.FromSeconds(1)
        connectors = connectors_pb2_grpc.ConnectorServiceStub(channel)
        await connectors.CreateConnector(
            connectors_pb2.CreateConnectorRequest(
                connector_id="teams", connector=connectors_pb2.Connector(teams=config)
            )
        )
        runner = BridgeRunner(
            api,
            "teams",
            BRIDGES,
            options=RunnerOptions(status_interval=0.2, checkpoint_interval=0.1),
        )
        task = asyncio.create_task(runner.run(stop))

        async def connected() -> connectors_pb2.ConnectorStatus | None:
            got = await connectors.GetConnector(connectors_pb2.GetConnectorRequest(name="teams"))
            status = got.connector.status
            return status if status.state == connectors_pb2.CONNECTOR_STATE_CONNECTED else None

        status = await eventually(connected, "the Teams connector to connect")
        assert status.users_mapped == 2

        presence = presence_pb2_grpc.PresenceServiceStub(channel)
        await presence.SetPresence(
            presence_pb2.SetPresenceRequest(user=alice, availability=common_pb2.AVAILABILITY_AWAY)
        )

        async def away_in_teams() -> bool | None:
            return True if graph.preferred(ALICE) == ("Away", "Away") else None

        await eventually(away_in_teams, "Alice's manual away as her preferred presence in Teams")

        # Bob is signed in to a Teams client and picks DND there.
        graph.set_teams_client(BOB, "Available", "Available")
        graph.set_in_teams(BOB, "DoNotDisturb", "DoNotDisturb")

        async def bob_dnd() -> presence_pb2.Presence | None:
            got = await presence.GetPresence(presence_pb2.GetPresenceRequest(user=bob))
            p = got.presence
            return p if p.availability == common_pb2.AVAILABILITY_DO_NOT_DISTURB else None

        shown = await eventually(bob_dnd, "Bob's Teams DND in sip2uc", within=30)
        assert (shown.source, shown.origin) == (
            common_pb2.PRESENCE_SOURCE_EXTERNAL,
            "connectors/teams",
        )
        await asyncio.sleep(1.5)
        # Not sent back: Bob's own choice in Teams stays, the bridge did not clear or re-set it.
        assert graph.preferred(BOB) == ("DoNotDisturb", "DoNotDisturb")
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, 15)
        await api.close()
        await channel.close(None)
        await plane.stop(0.1)
