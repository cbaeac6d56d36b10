"""Admin token: created once with mode 0600; optional on loopback, checked when given."""

from __future__ import annotations

import stat
from pathlib import Path

import grpc
import pytest
from sip2uc.v1 import admin_pb2, admin_pb2_grpc
from sip2uc_control.app import ConfigError, ControlConfig, ControlPlane


async def test_token_file_is_private_and_stable(tmp_path: Path) -> None:
    plane = ControlPlane(
        ControlConfig(data_dir=tmp_path, grpc_listen="127.0.0.1:0", metrics_listen=None)
    )
    await plane.start()
    first = plane.token
    await plane.stop(0.1)
    mode = stat.S_IMODE((tmp_path / "admin-token").stat().st_mode)
    assert mode == 0o600
    plane = ControlPlane(
        ControlConfig(data_dir=tmp_path, grpc_listen="127.0.0.1:0", metrics_listen=None)
    )
    await plane.start()
    assert plane.token == first and len(first) >= 32
    await plane.stop(0.1)


async def test_wrong_token_is_refused_even_on_loopback(control: ControlPlane) -> None:
    async with grpc.aio.insecure_channel(control.address) as ch:
        stub = admin_pb2_grpc.AdminServiceStub(ch)
        await stub.GetStatus(admin_pb2.GetStatusRequest())  # no token on loopback: fine
        await stub.GetStatus(
            admin_pb2.GetStatusRequest(), metadata=(("authorization", f"Bearer {control.token}"),)
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetStatus(
                admin_pb2.GetStatusRequest(), metadata=(("authorization", "Bearer nope"),)
            )
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_non_loopback_listen_without_tls_refuses_to_start(tmp_path: Path) -> None:
    plane = ControlPlane(
        ControlConfig(data_dir=tmp_path, grpc_listen="0.0.0.0:0", metrics_listen=None)
    )
    with pytest.raises(ConfigError, match="requires TLS"):
        await plane.start()
