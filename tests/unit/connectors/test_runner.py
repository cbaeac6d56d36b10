"""The bridge runner against a real control plane (in-process, over gRPC) with a recording
bridge: what reaches a bridge, what it brings in, and what survives a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sip2uc.v1 import (
    common_pb2,
    connectors_pb2,
    connectors_pb2_grpc,
    presence_pb2,
    presence_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)
from sip2uc_connectors.bridge import (
    Availability,
    BridgeContext,
    BridgeError,
    BridgeHealth,
    BridgeState,
    ConnectorConfig,
    InboundPresence,
    MappedUser,
    PresenceSource,
    PresenceUpdate,
    StateChanges,
)
from sip2uc_connectors.control_api import ControlApi
from sip2uc_connectors.runner import BridgeRunner, RunnerOptions
from sip2uc_control.app import ControlConfig, ControlPlane

FAST = RunnerOptions(
    status_interval=0.1, checkpoint_interval=0.05, reconcile_interval=60.0, max_backoff=0.2
)
T = TypeVar("T")


class RecordingBridge:
    """Records every delivery; can be told to fail; saves one state entry per delivery."""

    instances: list[RecordingBridge] = []

    def __init__(self, config: ConnectorConfig) -> None:
        self.config = config
        self.max_concurrent_deliveries = 4
        self.delivered: list[PresenceUpdate] = []
        self.reconciled: list[list[str]] = []
        self.saved: dict[str, bytes] = {}
        self.closed: bool | None = None
        self.failing = False
        self.context: BridgeContext | None = None
        self._changes = StateChanges()
        RecordingBridge.instances.append(self)

    async def start(self, context: BridgeContext) -> None:
        self.context = context
        self.saved = dict(context.saved)

    async def deliver(self, update: PresenceUpdate) -> None:
        if self.failing:
            raise BridgeError("platform down")
        self.delivered.append(update)
        self._changes.upserts[f"last {update.user}"] = update.availability.value.encode()

    async def reconcile(self, users: Sequence[MappedUser]) -> None:
        self.reconciled.append(sorted(u.sip_uri for u in users))

    def health(self) -> BridgeHealth:
        return BridgeHealth(
            state=BridgeState.CONNECTED,
            users_mapped=len(self.reconciled[-1]) if self.reconciled else 0,
        )

    def take_state_changes(self) -> StateChanges:
        out, self._changes = self._changes, StateChanges()
        return out

    async def close(self, *, remove: bool) -> None:
        self.closed = remove

    def states(self, user: str) -> list[Availability]:
        return [u.availability for u in self.delivered if u.user == user]


async def eventually(
    probe: Callable[[], Awaitable[T | None] | T | None], what: str, timeout: float = 10.0
) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Stack:
    def __init__(self, plane: ControlPlane, channel: grpc.aio.Channel) -> None:
        self.plane = plane
        self.users = users_pb2_grpc.UserServiceStub(channel)
        self.presence = presence_pb2_grpc.PresenceServiceStub(channel)
        self.connectors = connectors_pb2_grpc.ConnectorServiceStub(channel)
        self.tasks: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def user(self, ext: str) -> str:
        created = await self.users.CreateUser(
            users_pb2.CreateUserRequest(
                user=users_pb2.User(sip_uri=f"sip:{ext}@uc.example.com", extension=ext)
            )
        )
        return created.user.name

    async def set(self, user: str, availability: int) -> None:
        await self.presence.SetPresence(
            presence_pb2.SetPresenceRequest(user=user, availability=availability)
        )

    def run(self) -> tuple[asyncio.Event, asyncio.Task[None]]:
        api = ControlApi(self.plane.address, self.plane.token)
        runner = BridgeRunner(
            api, "fake", {"sip_presence": RecordingBridge}, runner_name="test", options=FAST
        )
        stop = asyncio.Event()

        async def go() -> None:
            try:
                await runner.run(stop)
            finally:
                await api.close()

        task = asyncio.create_task(go())
        self.tasks.append((stop, task))
        return stop, task


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    RecordingBridge.instances = []
    plane = ControlPlane(
        ControlConfig(data_dir=tmp_path, grpc_listen="127.0.0.1:0", metrics_listen=None)
    )
    await plane.start()
    async with grpc.aio.insecure_channel(plane.address) as channel:
        s = Stack(plane, channel)
        await s.connectors.CreateConnector(
            connectors_pb2.CreateConnectorRequest(
                connector_id="fake",
                connector=connectors_pb2.Connector(
                    sip_presence=connectors_pb2.SipPresenceConfig(server="sip:127.0.0.1:9")
                ),
            )
        )
        try:
            yield s
        finally:
            for stop, task in s.tasks:
                stop.set()
                await asyncio.wait_for(task, 10)
    await plane.stop(0.1)


def bridge(index: int = -1) -> RecordingBridge:
    return RecordingBridge.instances[index]


async def test_the_bridge_gets_every_users_state_then_each_change(stack: Stack) -> None:
    alice = await stack.user("1001")
    bob = await stack.user("1002")
    stack.run()
    await eventually(
        lambda: len(bridge().delivered) >= 2 if RecordingBridge.instances else None, "snapshot"
    )
    assert bridge().reconciled[0] == ["sip:1001@uc.example.com", "sip:1002@uc.example.com"]
    await stack.set(alice, common_pb2.AVAILABILITY_AWAY)
    await eventually(lambda: Availability.AWAY in bridge().states(alice), "away delivered")
    assert bridge().states(bob) == [Availability.OFFLINE]
    assert bridge().delivered[-1].sip_uri == "sip:1001@uc.example.com"


async def test_a_burst_reaches_the_bridge_coalesced_and_ending_with_the_latest(
    stack: Stack,
) -> None:
    alice = await stack.user("1001")
    stack.run()
    await eventually(lambda: RecordingBridge.instances and bridge().delivered, "snapshot")
    for state in (common_pb2.AVAILABILITY_AWAY, common_pb2.AVAILABILITY_BUSY) * 10 + (
        common_pb2.AVAILABILITY_BE_RIGHT_BACK,
    ):
        await stack.set(alice, state)
    await eventually(lambda: bridge().states(alice)[-1] is Availability.BE_RIGHT_BACK, "latest")
    assert len(bridge().states(alice)) <= 22


async def test_what_the_connector_brought_in_is_never_sent_back_to_it(stack: Stack) -> None:
    alice = await stack.user("1001")
    stack.run()
    await eventually(lambda: RecordingBridge.instances and bridge().context, "started")
    context = bridge().context
    assert context is not None
    context.bring_in(
        InboundPresence(user=alice, availability=Availability.DO_NOT_DISTURB, note="DND")
    )

    async def external() -> presence_pb2.Presence | None:
        p = (await stack.presence.GetPresence(presence_pb2.GetPresenceRequest(user=alice))).presence
        return p if p.source == common_pb2.PRESENCE_SOURCE_EXTERNAL else None

    shown = await eventually(external, "external DND")
    assert (shown.availability, shown.origin, shown.note) == (
        common_pb2.AVAILABILITY_DO_NOT_DISTURB,
        "connectors/fake",
        "DND",
    )
    await eventually(lambda: len(bridge().delivered) >= 2, "the change delivered")
    last = bridge().delivered[-1]
    # The user's own state, not the DND that came from this connector.
    assert (last.availability, last.source) == (Availability.OFFLINE, PresenceSource.REGISTRATION)
    assert Availability.DO_NOT_DISTURB not in bridge().states(alice)
    context.bring_in(InboundPresence(user=alice, availability=None))

    async def cleared() -> bool | None:
        p = (await stack.presence.GetPresence(presence_pb2.GetPresenceRequest(user=alice))).presence
        return True if p.source != common_pb2.PRESENCE_SOURCE_EXTERNAL else None

    await eventually(cleared, "cleared")


async def test_dnd_a_user_may_not_use_is_brought_in_as_busy(stack: Stack) -> None:
    alice = await stack.user("1001")
    await stack.users.UpdateUser(
        users_pb2.UpdateUserRequest(
            user=users_pb2.User(name=alice, settings=users_pb2.UserSettings(dnd_allowed=False)),
            update_mask=field_mask_pb2.FieldMask(paths=["settings.dnd_allowed"]),
        )
    )
    stack.run()
    await eventually(lambda: RecordingBridge.instances and bridge().context, "started")
    assert bridge().context is not None
    bridge().context.bring_in(InboundPresence(user=alice, availability=Availability.DO_NOT_DISTURB))  # type: ignore[union-attr]

    async def busy() -> bool | None:
        p = (await stack.presence.GetPresence(presence_pb2.GetPresenceRequest(user=alice))).presence
        return True if p.availability == common_pb2.AVAILABILITY_BUSY else None

    await eventually(busy, "busy instead of DND")


async def test_after_a_restart_only_changes_not_yet_delivered_are_delivered(stack: Stack) -> None:
    alice = await stack.user("1001")
    stop, task = stack.run()
    await eventually(lambda: RecordingBridge.instances and bridge().delivered, "snapshot")
    await stack.set(alice, common_pb2.AVAILABILITY_AWAY)
    await eventually(lambda: Availability.AWAY in bridge().states(alice), "away")
    stop.set()
    await task
    assert bridge().closed is False  # stopped, not deleted: publications stay
    first = bridge()
    await stack.set(alice, common_pb2.AVAILABILITY_BUSY)  # while no bridge runs
    await stack.set(alice, common_pb2.AVAILABILITY_BE_RIGHT_BACK)
    stack.run()
    await eventually(lambda: len(RecordingBridge.instances) == 2 and bridge().delivered, "resumed")
    await eventually(lambda: bridge().states(alice)[-1] is Availability.BE_RIGHT_BACK, "latest")
    second = bridge()
    assert first is not second
    # Resumed from the saved cursor: no snapshot (OFFLINE), no replay of AWAY.
    assert Availability.OFFLINE not in second.states(alice)
    assert Availability.AWAY not in second.states(alice)
    assert second.saved == {f"last {alice}": b"away"}


async def test_a_failing_platform_is_retried_with_the_latest_state_and_reported(
    stack: Stack,
) -> None:
    alice = await stack.user("1001")
    stack.run()
    await eventually(lambda: RecordingBridge.instances and bridge().delivered, "snapshot")
    bridge().failing = True
    await stack.set(alice, common_pb2.AVAILABILITY_AWAY)

    async def failed() -> connectors_pb2.Connector | None:
        c = (
            await stack.connectors.GetConnector(connectors_pb2.GetConnectorRequest(name="fake"))
        ).connector
        return c if c.status.state == connectors_pb2.CONNECTOR_STATE_FAILED else None

    shown = await eventually(failed, "failed status")
    assert "platform down" in shown.status.last_error and shown.status.lag.ToNanoseconds() > 0
    await stack.set(alice, common_pb2.AVAILABILITY_BUSY)
    bridge().failing = False
    await eventually(lambda: bridge().states(alice)[-1] is Availability.BUSY, "busy after recovery")
    assert Availability.AWAY not in bridge().states(alice)

    async def connected() -> bool | None:
        c = (
            await stack.connectors.GetConnector(connectors_pb2.GetConnectorRequest(name="fake"))
        ).connector
        return True if c.status.state == connectors_pb2.CONNECTOR_STATE_CONNECTED else None

    await eventually(connected, "connected again")


async def test_deleting_the_connector_stops_the_bridge_and_withdraws(stack: Stack) -> None:
    await stack.user("1001")
    _, task = stack.run()
    await eventually(lambda: RecordingBridge.instances and bridge().delivered, "snapshot")
    await stack.connectors.DeleteConnector(connectors_pb2.DeleteConnectorRequest(name="fake"))
    await asyncio.wait_for(task, 10)
    assert bridge().closed is True


async def test_a_reconfigured_connector_restarts_its_bridge(stack: Stack) -> None:
    await stack.user("1001")
    stack.run()
    await eventually(lambda: RecordingBridge.instances and bridge().delivered, "snapshot")
    await stack.connectors.UpdateConnector(
        connectors_pb2.UpdateConnectorRequest(
            connector=connectors_pb2.Connector(
                name="fake",
                sip_presence=connectors_pb2.SipPresenceConfig(server="sip:127.0.0.1:10"),
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["sip_presence.server"]),
        )
    )
    await eventually(lambda: len(RecordingBridge.instances) == 2, "a second bridge")
    assert bridge(0).closed is False
    assert bridge().config.settings["server"] == "sip:127.0.0.1:10"
