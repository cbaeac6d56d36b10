"""Operating a real `sip2uc up` as an administrator would: SIP over TLS, a stop without warnings,
refusals in the log, the channel limit as enforced, a watch across a restart, a full disk.

Every server and command is a real process on loopback; the full-disk test fills a real (tmpfs)
file system and needs root for the mount.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import CLI, Logged, clean_env

pytestmark = pytest.mark.timeout(120)

READY = r"sip2uc up: admin API (\S+), SIP UDP (\S+), TCP \S+, TLS (\S+),"


def up(data_dir: Path, *extra: str, grpc_listen: str = "127.0.0.1:0") -> Logged:
    return Logged(
        [
            *CLI,
            "up",
            "--data-dir",
            str(data_dir),
            "--grpc-listen",
            grpc_listen,
            "--sip-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
            *extra,
        ],
        clean_env(),
    )


def cli(address: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--control", address, "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(),
    )


def split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def options(method: str, port: int, transport: str) -> bytes:
    return (
        f"{method} sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:5099;branch=z9hG4bK-ops-{method.lower()}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:ops@127.0.0.1>;tag=o1\r\n"
        f"To: <sip:127.0.0.1:{port}>\r\n"
        f"Call-ID: ops-{method.lower()}@127.0.0.1\r\n"
        f"CSeq: 1 {method}\r\n"
        "User-Agent: ops-probe/1.0\r\n"
        "Event: presence\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Logged, str, str, str]]:
    """`sip2uc up` with SIP over TLS: (process, admin API, SIP UDP, SIP TLS)."""
    server = up(tmp_path / "data", "--sip-tls-listen", "127.0.0.1:0")
    try:
        ready = server.wait_for(READY)
        yield server, ready.group(1), ready.group(2), ready.group(3)
    finally:
        server.stop()


def test_up_serves_sip_over_tls_and_stops_without_a_warning(
    running: tuple[Logged, str, str, str], tmp_path: Path
) -> None:
    server, _admin, _udp, tls_address = running
    host, port = split(tls_address)
    context = ssl.create_default_context(cafile=str(tmp_path / "data" / "sip-tls-cert.pem"))
    context.check_hostname = False  # the self-signed certificate names localhost and the host

    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        tls.sendall(options("OPTIONS", port, "TLS"))
        answer = tls.recv(4096).decode()

    assert answer.startswith("SIP/2.0 200 OK\r\n"), answer
    assert (
        "Allow: REGISTER, OPTIONS, INVITE, ACK, CANCEL, BYE, INFO, MESSAGE, SUBSCRIBE\r\n" in answer
    )
    assert server.stop() == 0
    said = "".join(server.log)
    assert " WARNING " not in said and " ERROR " not in said and "Traceback" not in said, said
    assert "sidecar default disconnected (the control plane is stopping)" in said


def test_a_405_leaves_one_line_per_source_at_the_default_level(
    running: tuple[Logged, str, str, str],
) -> None:
    server, _admin, udp_address, _tls = running
    host, port = split(udp_address)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(10)
        udp.bind(("127.0.0.1", 0))
        answers = []
        for _ in range(3):
            udp.sendto(options("PUBLISH", port, "UDP"), (host, port))
            answers.append(udp.recv(4096).decode().split("\r\n", 1)[0])
        probe_port = udp.getsockname()[1]

    assert answers == ["SIP/2.0 405 Method Not Allowed"] * 3
    line = server.wait_for(r"INFO sip2uc_media\.sidecar\.dispatch: (405 for PUBLISH .*)")
    assert line.group(1) == (
        f"405 for PUBLISH from 127.0.0.1:{probe_port} (ops, ops-probe/1.0): "
        "this sidecar serves REGISTER, OPTIONS, INVITE, ACK, CANCEL, BYE, INFO, MESSAGE, SUBSCRIBE"
    )
    assert sum("405 for PUBLISH" in entry for entry in server.log) == 1


def test_sidecars_shows_the_channel_limit_it_enforces(
    running: tuple[Logged, str, str, str], tmp_path: Path
) -> None:
    _server, admin, _udp, _tls = running
    data = tmp_path / "data"

    def legs() -> str:
        shown = json.loads(cli(admin, data, "--json", "sidecars").stdout)
        (default,) = shown
        table = cli(admin, data, "sidecars").stdout
        row = next(line for line in table.splitlines() if " default " in line)
        return f"{default['channel_limit']}/{default['capacity']} | {row}"

    before = legs()
    changed = cli(admin, data, "settings", "set", "default_channel_limit", "3000")
    after = legs()

    assert changed.stdout == "default_channel_limit = 3000\n"
    assert before.startswith("1600/2500 | ") and " 0/1600 " in before
    # 20000-29999 holds 5,000 port pairs: 2,500 legs, fewer than the setting now asks for.
    assert after.startswith("2500/2500 | ") and " 0/2500 (capacity) " in after


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_presence_watch_says_in_plain_words_that_it_lost_and_regained_the_control_plane(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    address = f"127.0.0.1:{free_port()}"
    first = up(data, grpc_listen=address)
    first.wait_for("sip2uc up: admin API")
    watch = Logged(
        [*CLI, "--control", address, "--data-dir", str(data), "presence", "watch"],
        clean_env(),
        with_stdout=True,
    )
    second: Logged | None = None
    try:
        created = cli(
            address, data, "user", "add", "301", "--name", "Watched", "--password", "pw-301-x"
        )
        assert created.returncode == 0, created.stderr
        cli(address, data, "presence", "set", "301", "away")
        watch.wait_for(r"offline -> away")  # the watch is live
        assert first.stop() == 0

        lost = watch.wait_for(r"watch: .*")
        second = up(data, grpc_listen=address)
        second.wait_for("sip2uc up: admin API")
        back = watch.wait_for(r"watch: reconnected.*")
        cli(address, data, "presence", "set", "301", "busy")
        watch.wait_for(r"away -> busy")
    finally:
        watch.stop()
        if second is not None:
            second.stop()
        first.stop()

    assert lost.group() == (
        f"watch: lost the connection to the control plane at {address}; reconnecting in 0.5s"
    )
    assert back.group() == f"watch: reconnected to {address}; no change was missed"
    said = "".join(watch.log)
    assert "unavailable" not in said.lower() and "cancelling" not in said.lower(), said


@pytest.fixture
def tiny_disk() -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    mount = Path(tempfile.mkdtemp(prefix="sip2uc-full-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if done.returncode != 0:
        mount.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=10)
        mount.rmdir()


def test_a_full_disk_refuses_changes_in_plain_words_and_says_so_once(tiny_disk: Path) -> None:
    server = up(tiny_disk)
    try:
        admin = server.wait_for(r"sip2uc up: admin API (\S+),").group(1)
        server.wait_for("welcomed this sidecar")
        filler = tiny_disk / "filler"
        # Unbuffered: a partly written block must not stay in a buffer that closing the file
        # would try (and fail) to write again, whatever the free space was a multiple of.
        with filler.open("wb", buffering=0) as out:
            try:
                while True:
                    out.write(b"\0" * 65536)
            except OSError:
                pass

        refused = [
            cli(admin, tiny_disk, "user", "add", ext, "--name", "Full", "--password", f"pw-{ext}-x")
            for ext in ("401", "402", "403")
        ]
        filler.unlink()
        created = cli(
            admin, tiny_disk, "user", "add", "404", "--name", "Room", "--password", "pw-404-x"
        )
        server.wait_for("storage works again")
    finally:
        assert server.stop() == 0

    assert [(r.returncode, r.stderr) for r in refused] == [
        (
            1,
            "error: resource exhausted: storage is full: the change was not saved; "
            "free disk space and try again\n",
        )
    ] * 3
    assert created.returncode == 0, created.stderr
    said = "".join(server.log)
    assert said.count("storage is full") == 1, said
    assert "Traceback" not in said and "[SQL:" not in said and "sqlalchemy" not in said.lower()


def test_the_metrics_scrape_reads_the_sidecars_control_plane_backlog(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    server = up(
        tmp_path / "data",
        "--sip-tls-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        f"127.0.0.1:{metrics_port}",
    )
    try:
        server.wait_for(READY)
        # The exporter reads its gauges on its own thread, outside the event loop.
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            scraped = r.read().decode()
    finally:
        assert server.stop() == 0
    assert "\nsip2uc_sidecar_control_in_flight" in scraped, scraped
    assert "\nsip2uc_sidecar_control_oldest_seconds" in scraped, scraped
    said = "".join(server.log)
    assert "Traceback" not in said, said
