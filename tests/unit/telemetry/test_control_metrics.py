"""The control plane's Prometheus endpoint shows its users, presence changes and RPC latency."""

from __future__ import annotations

import re
import socket
import urllib.request
from pathlib import Path

import grpc
from sip2uc.v1 import common_pb2, presence_pb2, presence_pb2_grpc, users_pb2, users_pb2_grpc
from sip2uc_control.app import ControlConfig, ControlPlane


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition text (labels matched as a subset)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")


async def test_scrape_shows_users_presence_changes_and_rpc_latency(tmp_path: Path) -> None:
    port = free_port()
    plane = ControlPlane(
        ControlConfig(
            data_dir=tmp_path, grpc_listen="127.0.0.1:0", metrics_listen=f"127.0.0.1:{port}"
        )
    )
    await plane.start()
    try:
        async with grpc.aio.insecure_channel(plane.address) as ch:
            users = users_pb2_grpc.UserServiceStub(ch)
            for ext in ("301", "302", "303"):
                await users.CreateUser(
                    users_pb2.CreateUserRequest(user=users_pb2.User(extension=ext))
                )
            presence = presence_pb2_grpc.PresenceServiceStub(ch)
            before = _scrape(port)
            away_before = _maybe(before, "sip2uc_presence_changes_total", availability="away")
            await presence.SetPresence(
                presence_pb2.SetPresenceRequest(
                    user="301", availability=common_pb2.AVAILABILITY_AWAY
                )
            )
            text = _scrape(port)
        assert sample(text, "sip2uc_users") == 3
        assert sample(text, "sip2uc_bindings") == 0
        assert sample(text, "sip2uc_calls_active") == 0
        assert sample(text, "sip2uc_presence_changes_total", availability="away") == away_before + 1
        creates = sample(
            text,
            "sip2uc_rpc_duration_seconds_count",
            rpc_method="/sip2uc.v1.UserService/CreateUser",
        )
        assert creates >= 3
        # Buckets are sized for RPCs (milliseconds), not the SDK's default of seconds.
        assert 'le="0.005"' in text
    finally:
        await plane.stop(0.1)


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def _maybe(text: str, name: str, **labels: str) -> float:
    try:
        return sample(text, name, **labels)
    except AssertionError:
        return 0.0
