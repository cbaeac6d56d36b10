"""A control plane killed (kill -9) or stopped (SIGTERM) during a call, as an operator would meet
it: every part is a real process on loopback.

    sip2uc up (control plane + default sidecar)   <- SIGKILL or SIGTERM, then started again
    sip2uc sidecar "edge"                         <- carries the call, survives
    SIPp alice (caller) and bob (callee, echoes RTP) registered with "edge"

The call's media never passes through the control plane, so it goes on; when the control plane
is back, the sidecar's hello reports the call's legs, the call shows again in `call list`, both
users are in a call, and `call end` ends it on both handsets. When the sidecar that carried the
call is gone as well, nobody stays "in a call" after the restart.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from processes import CLI, Logged, clean_env

SIPP = shutil.which("sipp") or "/usr/bin/sipp"
SCENARIOS = Path(__file__).resolve().parents[1] / "interop" / "sipp"
T = TypeVar("T")

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.timeout(150),
    pytest.mark.skipif(
        not os.path.exists(SIPP), reason="SIPp (Debian sip-tester) is not installed"
    ),
]


def free_port() -> int:
    """A port free for both TCP and UDP on loopback (SIP listens on both)."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise OSError("no free port")


def free_rtp_range(count: int = 40) -> tuple[int, int]:
    """`count` consecutive UDP ports nobody holds (other tests' relays use the same machine)."""
    for base in range(36000 + (os.getpid() % 50) * 200, 60000, 200):
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return base, base + count - 1
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise OSError("no free RTP port range")


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


class Site:
    """The processes of one test, stopped (or killed) at the end whatever happened."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.data = tmp / "control"
        self.address = f"127.0.0.1:{free_port()}"
        self.processes: list[Logged | subprocess.Popen[str]] = []

    def up(self) -> Logged:
        server = Logged(
            [
                *CLI,
                "up",
                "--data-dir",
                str(self.data),
                "--grpc-listen",
                self.address,
                "--sip-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "off",
                "--rtp-ports",
                "{}-{}".format(*free_rtp_range()),
            ],
            clean_env(),
        )
        self.processes.append(server)
        server.wait_for("sip2uc up: admin API")
        return server

    def sidecar(self, name: str, sip_port: int) -> Logged:
        node = Logged(
            [
                *CLI,
                "--control",
                self.address,
                "sidecar",
                "--name",
                name,
                "--sip-listen",
                f"127.0.0.1:{sip_port}",
                "--rtp-ports",
                "{}-{}".format(*free_rtp_range()),
                "--digest-algorithm",
                "MD5",
                "--metrics-listen",
                "off",
                "--data-dir",
                str(self.tmp / name),
            ],
            clean_env(),
        )
        self.processes.append(node)
        return node

    def cli(self, *args: str) -> Any:
        done = subprocess.run(
            [*CLI, "--control", self.address, "--data-dir", str(self.data), "--json", *args],
            capture_output=True,
            text=True,
            timeout=30,
            env=clean_env(),
        )
        assert done.returncode == 0, done.stderr
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError:
            return done.stdout  # a command that only says what it did

    def sipp(self, sip_port: int, scenario: Path, row: str, port: int, label: str) -> Any:
        users = self.tmp / f"{label}.csv"
        users.write_text(f"SEQUENTIAL\n{row}\n")
        process = subprocess.Popen(
            [
                SIPP,
                f"127.0.0.1:{sip_port}",
                "-sf",
                str(scenario),
                "-inf",
                str(users),
                "-i",
                "127.0.0.1",
                "-p",
                str(port),
                "-mp",
                str(free_port() & ~1),
                "-m",
                "1",
                "-timeout",
                "90s",
                "-timeout_error",
                "-nostdin",
                "-trace_err",
                "-error_file",
                str(self.tmp / f"{label}.errors.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.tmp,
            text=True,
        )
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in reversed(self.processes):
            if isinstance(process, Logged):
                process.stop()
            elif process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    made = Site(tmp_path)
    try:
        yield made
    finally:
        made.close()


def register(site: Site, sip_port: int, ext: str) -> int:
    port = free_port()
    handset = site.sipp(
        sip_port, SCENARIOS / "register_auth.xml", f"{ext};pw-{ext}-x;300", port, f"reg-{ext}"
    )
    assert handset.wait(timeout=30) == 0, (site.tmp / f"reg-{ext}.errors.log").read_text()
    return port


def availability(site: Site, ext: str) -> str:
    return str(site.cli("presence", "get", ext)["availability"])


def a_call_in(site: Site, state: str, legs: int) -> dict[str, Any] | None:
    calls = site.cli("call", "list")
    if len(calls) == 1 and calls[0]["state"] == state and len(calls[0]["legs"]) == legs:
        return dict(calls[0])
    return None


def connected_call(site: Site) -> tuple[int, subprocess.Popen[str], subprocess.Popen[str]]:
    """alice (201) calls bob (202) on a sidecar "edge"; returns its SIP port and both SIPps."""
    for ext, name in (("201", "Alice"), ("202", "Bob")):
        site.cli("user", "add", ext, "--name", name, "--password", f"pw-{ext}-x")
    sip_port = free_port()
    site.sidecar("edge", sip_port).wait_for("welcomed this sidecar")
    register(site, sip_port, "201")
    bob = register(site, sip_port, "202")
    calls = SCENARIOS / "calls"
    uas = site.sipp(sip_port, calls / "uas_pcmu.xml", "202", bob, "uas")
    time.sleep(0.2)  # SIPp binds its port at once; nothing to poll for but the port itself
    uac = site.sipp(
        sip_port,
        calls / "uac_pcma_until_bye.xml",
        f"201;pw-201-x;202;{free_port()}",
        free_port(),
        "uac",
    )
    eventually(lambda: a_call_in(site, "CALL_STATE_CONNECTED", 2), "the call to connect")
    return sip_port, uas, uac


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_a_call_outlives_a_stopped_control_plane_and_shows_again_once_it_is_back(
    site: Site, stop: signal.Signals
) -> None:
    first = site.up()
    _port, uas, uac = connected_call(site)
    assert [availability(site, ext) for ext in ("201", "202")] == ["AVAILABILITY_IN_A_CALL"] * 2

    first.process.send_signal(stop)
    first.process.wait(timeout=30)
    site.up()

    call = eventually(lambda: a_call_in(site, "CALL_STATE_CONNECTED", 2), "the call to come back")
    assert [availability(site, ext) for ext in ("201", "202")] == ["AVAILABILITY_IN_A_CALL"] * 2
    assert {leg["sidecar"] for leg in call["legs"]} == {"edge"}
    assert (call["caller_extension"], call["callee_extension"]) == ("201", "202")
    assert uac.poll() is None and uas.poll() is None  # both handsets still in the call

    site.cli("call", "end", call["name"])

    assert uac.wait(timeout=30) == 0, (site.tmp / "uac.errors.log").read_text()
    assert uas.wait(timeout=30) == 0, (site.tmp / "uas.errors.log").read_text()
    eventually(
        lambda: True if availability(site, "201") == "AVAILABILITY_AVAILABLE" else None,
        "alice to leave the call",
    )
    assert availability(site, "202") == "AVAILABILITY_AVAILABLE"


def test_nobody_stays_in_a_call_when_the_call_did_not_survive_the_restart(site: Site) -> None:
    first = site.up()
    _port, _uas, _uac = connected_call(site)
    edge = site.processes[1]
    assert isinstance(edge, Logged)

    for gone in (edge.process, first.process):  # the call's sidecar and the control plane
        gone.send_signal(signal.SIGKILL)
        gone.wait(timeout=10)
    site.up()

    assert site.cli("call", "list") == []
    assert [availability(site, ext) for ext in ("201", "202")] == ["AVAILABILITY_AVAILABLE"] * 2
