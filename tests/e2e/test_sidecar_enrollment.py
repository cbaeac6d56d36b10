"""A sidecar on another network enrolls, connects over TLS with only its own credential, is
revoked, and is refused when it tries again — every part a real process.

Topology (addresses exist only on this test's veth pair and disappear with the namespace)::

    root namespace                                namespace S
      sip2uc up  (admin API 10.98.N.1:PORT, TLS) ===== 10.98.N.2  sip2uc sidecar --token-file
      sip2uc sidecar enroll / revoke (admin token)                 grpcurl (the sidecar's token)

The sidecar's host has no admin token: its process gets the credential file and the CA, nothing
else. The control plane listens off loopback, so it accepts no admin token and no missing token
for sidecars.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import CLI, Logged, clean_env

IP = shutil.which("ip") or "/usr/sbin/ip"
GRPCURL = Path(sys.executable).parent / "grpcurl"
PROTO = Path(__file__).resolve().parents[2] / "proto"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not os.path.exists(IP), reason="iproute2 (ip) is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(not GRPCURL.exists(), reason="grpcurl (dev dependency) is not installed"),
]


def ip(*args: str) -> None:
    done = subprocess.run([IP, *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@pytest.fixture
def namespace() -> Iterator[tuple[str, str, str]]:
    """(namespace, the host's address towards it, the namespace's own address)."""
    ns = f"s2e{os.getpid() % 100000}"
    n = 4 * (os.getpid() % 60)
    host, inside = f"10.98.{n}.1", f"10.98.{n}.2"
    try:
        ip("netns", "add", ns)
    except OSError as exc:
        pytest.skip(f"cannot make a network namespace here: {exc}")
    try:
        ip("-n", ns, "link", "set", "lo", "up")
        ip("link", "add", f"{ns}h", "type", "veth", "peer", "name", "uplink", "netns", ns)
        ip("addr", "add", f"{host}/30", "dev", f"{ns}h")
        ip("link", "set", f"{ns}h", "up")
        ip("-n", ns, "addr", "add", f"{inside}/30", "dev", "uplink")
        ip("-n", ns, "link", "set", "uplink", "up")
        yield ns, host, inside
    except OSError as exc:
        pytest.skip(f"cannot wire the namespace: {exc}")
    finally:
        subprocess.run([IP, "netns", "del", ns], capture_output=True, timeout=10)


def admin_cli(address: str, ca: Path, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env() | {"SIP2UC_TOKEN": token}
    return subprocess.run(
        [*CLI, "--control", address, "--ca-file", str(ca), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def test_an_enrolled_sidecar_connects_from_another_network_until_it_is_revoked(
    namespace: tuple[str, str, str], tmp_path: Path
) -> None:
    ns, host, inside = namespace
    data = tmp_path / "control"
    up = Logged(
        [
            *CLI,
            "up",
            "--data-dir",
            str(data),
            "--grpc-listen",
            f"{host}:0",
            "--sip-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
        ],
        clean_env(),
    )
    sidecars: list[Logged] = []
    try:
        ca = Path(up.wait_for(r"admin API certificate: (\S+)").group(1))
        address = up.wait_for(r"sip2uc up: admin API (\S+),").group(1)
        admin_token = (data / "admin-token").read_text().strip()
        token_file = tmp_path / "site" / "vlan-a.token"
        token_file.parent.mkdir()

        enrolled = admin_cli(
            address, ca, admin_token, "sidecar", "enroll", "vlan-a", "--output", str(token_file)
        )
        assert enrolled.returncode == 0, enrolled.stderr
        assert enrolled.stdout == f"sidecars/vlan-a enrolled; credential written to {token_file}\n"
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        credential = token_file.read_text().strip()

        def sidecar(name: str, *credential_args: str) -> Logged:
            node = Logged(
                [
                    IP,
                    "netns",
                    "exec",
                    ns,
                    *CLI,
                    "--control",
                    address,
                    "--ca-file",
                    str(ca),
                    "sidecar",
                    "--name",
                    name,
                    *credential_args,
                    "--sip-listen",
                    f"{inside}:0",
                    "--rtp-ports",
                    "42000-42099",
                    "--data-dir",
                    str(tmp_path / "site" / name),
                ],
                clean_env(),
            )
            sidecars.append(node)
            return node

        vlan_a = sidecar("vlan-a", "--token-file", str(token_file))
        vlan_a.wait_for("welcomed this sidecar")
        listed = admin_cli(address, ca, admin_token, "--json", "sidecars")
        shown = {s["name"]: s for s in json.loads(listed.stdout)}
        assert shown["sidecars/vlan-a"]["state"] == "SIDECAR_STATE_CONNECTED"
        assert shown["sidecars/vlan-a"]["enrolled"] is True
        assert shown["sidecars/vlan-a"]["sip_listeners"][0].startswith(f"udp {inside}:")

        # From the sidecar's network, with its credential, the admin API says no.
        probe = subprocess.run(
            [
                IP,
                "netns",
                "exec",
                ns,
                str(GRPCURL),
                "-cacert",
                str(ca),
                # The API from its files, not from reflection (which is an admin RPC too).
                "-import-path",
                str(PROTO),
                "-proto",
                "sip2uc/v1/admin.proto",
                "-H",
                f"authorization: Bearer {credential}",
                address,
                "sip2uc.v1.AdminService/GetStatus",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert probe.returncode != 0
        assert "Code: PermissionDenied" in probe.stderr, probe.stderr
        assert "Message: the credential of sidecars/vlan-a is good for SidecarService only" in (
            probe.stderr
        )

        # Another name with this credential, and the admin token as a sidecar's: both refused.
        impostor = sidecar("vlan-b", "--token-file", str(token_file))
        impostor.wait_for(
            "refused this sidecar: PERMISSION_DENIED: this credential belongs to "
            "sidecars/vlan-a, not sidecars/vlan-b"
        )
        with_admin = sidecar("vlan-c", "--token", admin_token)
        with_admin.wait_for(
            "refused this sidecar: PERMISSION_DENIED: the admin token is not a sidecar credential"
        )
        assert "vlan-b" not in admin_cli(address, ca, admin_token, "sidecars").stdout

        revoked = admin_cli(address, ca, admin_token, "sidecar", "revoke", "vlan-a")
        assert revoked.stdout == "sidecars/vlan-a: credential revoked; its session was ended\n"
        vlan_a.wait_for(
            "refused this sidecar: UNAUTHENTICATED: the credential of sidecars/vlan-a was revoked"
        )
        # It keeps trying; the control plane keeps refusing.
        vlan_a.wait_for(
            "refused this sidecar: UNAUTHENTICATED: invalid bearer token: unknown or revoked"
        )
        listed = admin_cli(address, ca, admin_token, "--json", "sidecars")
        shown = {s["name"]: s for s in json.loads(listed.stdout)}
        assert shown["sidecars/vlan-a"]["state"] == "SIDECAR_STATE_LOST"
        # The admin token still works; only the sidecar's credential is gone.
        assert admin_cli(address, ca, admin_token, "sidecar", "enrollments").returncode == 0
    finally:
        exits = [(node.stop(), "".join(node.log)) for node in sidecars]
        exits.append((up.stop(), "".join(up.log)))
    for status, log in exits:
        assert status == 0, log
    assert credential not in "".join(up.log)
    assert admin_token not in "".join(up.log + [line for n in sidecars for line in n.log])
