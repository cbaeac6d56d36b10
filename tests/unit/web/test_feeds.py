"""The feeds against a real control plane in this process: snapshots, live changes, and a
control plane that lacks a stream or goes away."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

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
from sip2uc_control.app import ControlConfig, ControlPlane
from sip2uc_web.connection import ControlTarget, open_channel
from sip2uc_web.feeds import FEEDS, Feeds
from sip2uc_web.model import FeedStatus, SidecarView
from sip2uc_web.server import StateViewServer, WebConfig
from sip2uc_web.state import Part, StateView


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the feeds run until `condition` holds (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Following:
    def __init__(self, address: str, token: str | None) -> None:
        self.target = ControlTarget(address, token=token)
        self.channel = open_channel(self.target)
        self.state = StateView()
        self.parts: list[Part] = []
        self.feeds = Feeds(self.channel, self.target, self.state, self.changed)

    def changed(self, parts: Iterable[Part]) -> None:
        self.parts.extend(parts)

    def live(self) -> bool:
        return all(s.live for s in self.state.feeds.values()) and len(self.state.feeds) == len(
            FEEDS
        )

    async def close(self) -> None:
        await self.feeds.stop()
        await self.channel.close(None)


@pytest.fixture
async def control(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    plane = ControlPlane(
        ControlConfig(data_dir=tmp_path, grpc_listen="127.0.0.1:0", metrics_listen=None)
    )
    await plane.start()
    yield plane
    await plane.stop(0.5)


async def test_the_feeds_follow_presence_and_warnings_live(control: ControlPlane) -> None:
    metadata = (("authorization", f"Bearer {control.token}"),)
    async with grpc.aio.insecure_channel(control.address) as channel:
        created = await users_pb2_grpc.UserServiceStub(channel).CreateUser(
            users_pb2.CreateUserRequest(
                user=users_pb2.User(sip_uri="sip:456@example.com", extension="456")
            ),
            metadata=metadata,
        )
        view = Following(control.address, control.token)
        view.feeds.start()
        try:
            await until(view.live, "every feed to be live")
            assert view.state.presence[created.user.name].availability == "offline"
            assert view.state.history == []

            await presence_pb2_grpc.PresenceServiceStub(channel).SetPresence(
                presence_pb2.SetPresenceRequest(
                    user="456", availability=common_pb2.AVAILABILITY_AWAY, note="lunch"
                ),
                metadata=metadata,
            )
            await until(
                lambda: view.state.presence[created.user.name].availability == "away",
                "the change to arrive",
            )
            assert view.state.presence[created.user.name].note == "lunch"
            assert Part("presence", created.user.name) in view.parts

            logging.getLogger("sip2uc_control.tests.feeds").warning("disk nearly full")
            await until(
                lambda: any(e.message == "disk nearly full" for e in view.state.warnings),
                "the warning to arrive",
            )
        finally:
            await view.close()


async def test_the_connectors_feed_follows_what_a_bridge_reports(control: ControlPlane) -> None:
    metadata = (("authorization", f"Bearer {control.token}"),)
    async with grpc.aio.insecure_channel(control.address) as channel:
        stub = connectors_pb2_grpc.ConnectorServiceStub(channel)
        await stub.CreateConnector(
            connectors_pb2.CreateConnectorRequest(
                connector_id="kam",
                connector=connectors_pb2.Connector(
                    sip_presence=connectors_pb2.SipPresenceConfig(server="sip:127.0.0.1:5060")
                ),
            ),
            metadata=metadata,
        )
        view = Following(control.address, control.token)
        view.feeds.start()
        try:
            await until(view.live, "every feed to be live")
            assert view.state.connectors["kam"].state == "connecting"
            assert view.state.connectors["kam"].target == "sip:127.0.0.1:5060"

            claim = await stub.ClaimConnector(
                connectors_pb2.ClaimConnectorRequest(name="kam", runner="gw:1"), metadata=metadata
            )
            status = connectors_pb2.ConnectorStatus(
                state=connectors_pb2.CONNECTOR_STATE_CONNECTED, users_mapped=7
            )
            status.lag.FromMilliseconds(250)
            await stub.ReportConnectorStatus(
                connectors_pb2.ReportConnectorStatusRequest(
                    name="kam", session=claim.session, status=status
                ),
                metadata=metadata,
            )
            await until(
                lambda: view.state.connectors["kam"].state == "connected", "the report to arrive"
            )
            shown = view.state.connectors["kam"]
            assert (shown.users_mapped, shown.lag_seconds, shown.runner) == (7, 0.25, "gw:1")

            await stub.DeleteConnector(
                connectors_pb2.DeleteConnectorRequest(name="kam"), metadata=metadata
            )
            await until(lambda: "kam" not in view.state.connectors, "the deletion to arrive")
        finally:
            await view.close()


async def test_a_wrong_token_shows_as_a_problem_on_every_feed(control: ControlPlane) -> None:
    view = Following(control.address, "not-the-token")
    view.feeds.start()
    try:
        await until(lambda: len(view.state.problems()) == len(FEEDS), "every feed to fail")
        for feed in view.state.problems():
            assert feed.problem.startswith("unauthenticated: invalid bearer token"), feed
    finally:
        await view.close()


async def test_a_control_plane_without_these_streams_is_not_asked_again() -> None:
    server = grpc.aio.server()  # serves no service at all: every method is UNIMPLEMENTED
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    view = Following(f"127.0.0.1:{port}", None)
    view.feeds.start()
    try:
        await until(
            lambda: all(not view.state.offered(name) for name in FEEDS),
            "every feed to give up",
        )
        assert view.state.problems() == []
    finally:
        await view.close()
        await server.stop(None)


async def test_feeds_say_when_the_control_plane_goes_away(tmp_path: Path) -> None:
    plane = ControlPlane(
        ControlConfig(data_dir=tmp_path, grpc_listen="127.0.0.1:0", metrics_listen=None)
    )
    await plane.start()
    view = Following(plane.address, plane.token)
    view.feeds.start()
    try:
        await until(view.live, "every feed to be live")
        await plane.stop(0.1)
        await until(lambda: len(view.state.problems()) == len(FEEDS), "every feed to notice")
        assert all(not f.live for f in view.state.feeds.values())
    finally:
        await view.close()


class FlakyState(StateView):
    """Fails to take the first sidecar snapshot, as a bug would."""

    failures = 1

    def sidecars_snapshot(self, sidecars: Iterable[SidecarView]) -> set[Part]:
        if self.failures:
            self.failures -= 1
            raise ValueError("cannot take this snapshot")
        return super().sidecars_snapshot(sidecars)


async def test_a_message_the_view_cannot_take_restarts_the_feed_from_a_snapshot(
    control: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    view = Following(control.address, control.token)
    view.state = FlakyState()
    view.feeds = Feeds(view.channel, view.target, view.state, view.changed)
    statuses: list[FeedStatus] = []
    original = view.state.feed_changed

    def record(status: FeedStatus) -> set[Part]:
        statuses.append(status)
        return original(status)

    view.state.feed_changed = record  # type: ignore[method-assign]
    view.feeds.start()
    try:
        await until(view.live, "every feed to be live after the retry")
        sidecars = [s for s in statuses if s.name == "sidecars"]
        assert [s.live for s in sidecars] == [False, False, True]
        assert sidecars[1].problem.startswith("the state view failed to apply an update")
        assert "state view: the sidecars feed failed" in caplog.text
    finally:
        await view.close()


async def test_a_view_on_a_busy_port_fails_to_start_and_leaves_nothing_behind(
    control: ControlPlane,
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = StateViewServer(
            WebConfig("127.0.0.1", port, ControlTarget(control.address, token=control.token))
        )
        with pytest.raises(OSError):
            await server.start()
        assert server.url == ""
        await server.stop(0.1)  # nothing to stop, and no error either
