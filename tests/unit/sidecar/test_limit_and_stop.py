"""One channel limit: the setting, bounded by what the sidecar can carry, and shown as enforced.

`leg_capacity` on its own, then a real sidecar against a real control plane (both in this
process, on loopback): what it announces, what `ListSidecars` shows and what its B2BUA applies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sip2uc.v1 import admin_pb2, admin_pb2_grpc
from sip2uc_control.app import ControlConfig, ControlPlane
from sip2uc_media.sidecar import Sidecar, SidecarConfig
from sip2uc_media.sidecar.capacity import LegCapacity, leg_capacity

T = TypeVar("T")


def test_two_port_pairs_a_leg_bound_the_capacity() -> None:
    assert leg_capacity(5000, None) == LegCapacity(2500, "RTP ports")
    assert leg_capacity(101, 1_000_000) == LegCapacity(50, "RTP ports")


def test_a_low_open_file_limit_bounds_it_four_sockets_a_leg() -> None:
    assert leg_capacity(5000, 1024) == LegCapacity((1024 - 256) // 4, "open files")
    assert leg_capacity(5000, 100) == LegCapacity(0, "open files")


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while (value := await probe()) is None:
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return value


class Site:
    def __init__(self, control: ControlPlane, channel: grpc.aio.Channel, tmp: Path) -> None:
        self.control = control
        self.admin = admin_pb2_grpc.AdminServiceStub(channel)
        self.tmp = tmp

    async def sidecar(self, name: str, ports: tuple[int, int]) -> Sidecar:
        sidecar = Sidecar(
            SidecarConfig(
                control=self.control.address,
                token=self.control.sidecar_credential(name),
                name=name,
                sip_listen="127.0.0.1:0",
                data_dir=self.tmp / name,
                rtp_ports=ports,
            )
        )
        await sidecar.start()
        assert sidecar.control is not None
        await asyncio.wait_for(sidecar.control.wait_up(), 10)
        return sidecar

    async def shown(self, name: str) -> admin_pb2.Sidecar:
        listed = await self.admin.ListSidecars(admin_pb2.ListSidecarsRequest())
        return next(s for s in listed.sidecars if s.name == f"sidecars/{name}")


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    control = ControlPlane(
        ControlConfig(data_dir=tmp_path / "control", grpc_listen="127.0.0.1:0", metrics_listen=None)
    )
    await control.start()
    async with grpc.aio.insecure_channel(control.address) as channel:
        yield Site(control, channel, tmp_path)
    await control.stop(0.5)


async def test_the_setting_is_the_limit_until_the_sidecars_ports_cannot_carry_it(
    site: Site,
) -> None:
    wide = await site.sidecar("wide", (41000, 41999))  # 500 pairs: 250 legs
    try:
        shown = await site.shown("wide")
        assert (shown.capacity, shown.channel_limit) == (250, 250)
        assert wide.calls is not None and wide.calls.channel_limit == 250

        await site.admin.UpdateSettings(
            admin_pb2.UpdateSettingsRequest(
                settings=admin_pb2.Settings(
                    sidecars=[admin_pb2.SidecarPolicy(name="wide", channel_limit=40)]
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["sidecars"]),
            )
        )

        async def applied() -> bool | None:
            calls = wide.calls
            return True if calls is not None and calls.channel_limit == 40 else None

        await eventually(applied, "the sidecar to apply its channel limit of 40")
        shown = await site.shown("wide")
        assert (shown.capacity, shown.channel_limit) == (250, 40)
        settings = (await site.admin.GetSettings(admin_pb2.GetSettingsRequest())).settings
        assert settings.default_channel_limit == 1600
    finally:
        await wide.stop(0.5)


async def test_a_sidecar_that_stops_says_so_and_only_the_control_plane_warns(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    node = await site.sidecar("vlan10", (41000, 41099))

    await node.stop(1.0)

    async def lost() -> bool | None:
        shown = await site.shown("vlan10")
        return True if shown.state == admin_pb2.SIDECAR_STATE_LOST else None

    await eventually(lost, "the control plane to see the sidecar gone")
    warnings = [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    # The sidecar stopped on purpose (no "link down" from it); the control plane still warns,
    # since the handsets behind it are now unserved, and says that it stopped rather than broke.
    assert warnings == [("sip2uc_control.api.sidecar", "sidecar vlan10 disconnected (it stopped)")]


async def test_a_sidecar_stopped_while_it_says_hello_leaves_no_error_behind(
    site: Site, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    core = site.control.core
    assert core is not None
    hello_heard = asyncio.Event()
    release = asyncio.Event()
    connected = core.sidecars.connected

    async def slow_welcome(info: Any) -> Any:
        hello_heard.set()
        await release.wait()
        return await connected(info)

    monkeypatch.setattr(core.sidecars, "connected", slow_welcome)
    sidecar = Sidecar(
        SidecarConfig(
            control=site.control.address,
            token=site.control.sidecar_credential("early"),
            name="early",
            sip_listen="127.0.0.1:0",
            data_dir=site.tmp / "early",
            rtp_ports=(41000, 41099),
        )
    )
    await sidecar.start()
    await asyncio.wait_for(hello_heard.wait(), 10)

    stopping = asyncio.create_task(sidecar.stop(2.0))
    await asyncio.sleep(0.2)  # the sidecar has closed its side; the control plane is mid-hello
    release.set()
    await stopping

    async def gone() -> bool | None:
        listed = await site.admin.ListSidecars(admin_pb2.ListSidecarsRequest())
        states = {s.name: s.state for s in listed.sidecars}
        return True if states.get("sidecars/early") == admin_pb2.SIDECAR_STATE_LOST else None

    await eventually(gone, "the session to end")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    said = [
        (r.levelname, r.name, r.getMessage()) for r in caplog.records if "early" in r.getMessage()
    ]
    assert (
        "WARNING",
        "sip2uc_control.api.sidecar",
        "sidecar early disconnected (it stopped)",
    ) in said
