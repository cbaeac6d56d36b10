from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from sip2uc_control.app import ControlConfig, ControlPlane

from .in_memory import Clock


@pytest.fixture
def clock() -> Clock:
    """The control plane's time: it moves only when a test moves it."""
    return Clock()


@pytest.fixture
async def control(tmp_path: Path, clock: Clock) -> AsyncIterator[ControlPlane]:
    plane = ControlPlane(
        ControlConfig(data_dir=tmp_path, grpc_listen="127.0.0.1:0", metrics_listen=None), clock
    )
    await plane.start()
    yield plane
    await plane.stop(0.5)


@pytest.fixture
async def channel(control: ControlPlane) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(control.address) as ch:
        yield ch
