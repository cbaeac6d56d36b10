"""A call between two VLANs, each a network namespace with its own sidecar process and handsets.

Topology (all addresses exist only on interfaces of these namespaces and their veth peers, and
disappear with them)::

    namespace A (VLAN a)             namespace B (VLAN b)
      sidecar "vlan-a" 10.99.N.1 ==== 10.99.N.2 sidecar "vlan-b"     relay to relay, one veth
      SIPp alice                       SIPp bob
         | 10.99.N+1.2                    | 10.99.N+2.2
         +--- veth --- 10.99.N+1.1 (host side) ---+--- 10.99.N+2.1 --- veth
                         control plane (in the test process, TLS, bearer token)

Each sidecar is a separate process started with ``ip netns exec``; it dials the control plane over
TLS (the address is not loopback), authenticates with its own enrolled credential (the admin
token is refused there for sidecars), and challenges its handsets
with MD5 only (SIPp cannot answer SHA-256). The caller plays audio and RFC 4733 digits 1, 5, 9; the
callee echoes, so the digits reported on the callee's leg (by sidecar B) prove that media went
from A's relay to B's relay and back.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from sip2uc.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    calls_pb2,
    calls_pb2_grpc,
    common_pb2,
    presence_pb2,
    presence_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)
from sip2uc_media.transport.tls import ensure_self_signed
from test_sipp_calls import CALLS, SCENARIOS, SIPP, eventually

IP = shutil.which("ip") or "/usr/sbin/ip"
SS = shutil.which("ss") or "/usr/bin/ss"
PYTHON = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python"
DOMAIN = "sip2uc.local"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.path.exists(SIPP), reason="SIPp (Debian sip-tester) is not installed"
    ),
    pytest.mark.skipif(not os.path.exists(IP), reason="iproute2 (ip) is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

try:
    from sip2uc_control.app import ControlConfig, ControlPlane
except ImportError:  # pragma: no cover - the control plane is part of this repository
    pytest.skip("the control plane package is not importable", allow_module_level=True)

# The sidecar process of one namespace: MD5-only challenges for SIPp, stops on SIGTERM.
SIDECAR = """
import asyncio, signal, sys
from pathlib import Path
from sip2uc_media.sidecar import Sidecar, SidecarConfig

name, control, token, ca, sip_listen, rtp_host, data = sys.argv[1:8]

async def main() -> None:
    sidecar = Sidecar(SidecarConfig(
        control=control, token=token, name=name, site=name, sip_listen=sip_listen,
        rtp_host=rtp_host, rtp_ports=(20000, 20199), data_dir=Path(data),
        control_tls=True, control_ca=Path(ca), digest_algorithms=("MD5",),
    ))
    await sidecar.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await sidecar.stop(1.0)

asyncio.run(main())
"""


@dataclass(frozen=True)
class Vlans:
    a: str  # namespace names
    b: str
    sidecar_a: str  # each sidecar's SIP and RTP address (the A-B link)
    sidecar_b: str
    control: str  # the control plane's address, reachable from both namespaces


def ip(*args: str) -> None:
    done = subprocess.run([IP, *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@pytest.fixture
def vlans() -> Iterator[Vlans]:
    tag = f"s2u{os.getpid() % 100000}"
    a, b = f"{tag}a", f"{tag}b"
    n = 4 * (os.getpid() % 60)
    link, up_a, up_b = f"10.99.{n}", f"10.99.{n + 1}", f"10.99.{n + 2}"
    created: list[str] = []
    try:
        for ns in (a, b):
            ip("netns", "add", ns)
            created.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        # The link between the two VLANs' relays.
        ip("-n", a, "link", "add", "vlan", "type", "veth", "peer", "name", "vlan", "netns", b)
        ip("-n", a, "addr", "add", f"{link}.1/24", "dev", "vlan")
        ip("-n", b, "addr", "add", f"{link}.2/24", "dev", "vlan")
        # Each namespace's uplink to the control plane; the host end lives in the namespace's
        # veth pair, so deleting the namespace removes it too.
        for ns, net in ((a, up_a), (b, up_b)):
            host_end = f"{ns}h"
            ip("link", "add", host_end, "type", "veth", "peer", "name", "uplink", "netns", ns)
            ip("addr", "add", f"{net}.1/24", "dev", host_end)
            ip("link", "set", host_end, "up")
            ip("-n", ns, "addr", "add", f"{net}.2/24", "dev", "uplink")
            ip("-n", ns, "link", "set", "uplink", "up")
            ip("-n", ns, "link", "set", "vlan", "up")
        # B reaches the control plane's address (on A's uplink) through its own uplink: the
        # host accepts packets for any of its addresses on any interface, no forwarding needed.
        ip("-n", b, "route", "add", f"{up_a}.1/32", "via", f"{up_b}.1")
    except OSError as exc:
        for ns in created:
            subprocess.run([IP, "netns", "del", ns], capture_output=True, timeout=10)
        pytest.skip(f"cannot build network namespaces here: {exc}")
    try:
        yield Vlans(a, b, f"{link}.1", f"{link}.2", f"{up_a}.1")
    finally:
        for ns in created:
            subprocess.run([IP, "netns", "del", ns], capture_output=True, timeout=10)


class Site:
    def __init__(self, tmp: Path, vlans: Vlans) -> None:
        self.tmp = tmp
        self.vlans = vlans
        self.processes: list[asyncio.subprocess.Process] = []

    async def run(self, ns: str, *argv: str) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            IP,
            "netns",
            "exec",
            ns,
            *argv,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=self.tmp,
        )
        self.processes.append(process)
        return process

    async def sipp(
        self, ns: str, sidecar: str, scenario: Path, row: str, *, port: int, label: str
    ) -> asyncio.subprocess.Process:
        (self.tmp / f"{label}.csv").write_text(f"SEQUENTIAL\n{row}\n")
        return await self.run(
            ns,
            SIPP,
            f"{sidecar}:5060",
            "-sf",
            str(scenario),
            "-inf",
            str(self.tmp / f"{label}.csv"),
            "-i",
            sidecar,
            "-mi",
            sidecar,
            "-p",
            str(port),
            "-mp",
            "40000",
            "-m",
            "1",
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
            "-error_file",
            str(self.tmp / f"{label}.errors.log"),
            *(("-rtp_echo",) if label == "uas" else ()),
        )

    async def finished(self, process: asyncio.subprocess.Process, label: str) -> None:
        status = await asyncio.wait_for(process.wait(), 40)
        errors = self.tmp / f"{label}.errors.log"
        log = errors.read_text(errors="replace") if errors.exists() else ""
        assert status == 0, f"SIPp {label} exited {status}:\n{log[-3000:]}"


@pytest.fixture
async def site(tmp_path: Path, vlans: Vlans) -> AsyncIterator[Site]:
    site = Site(tmp_path, vlans)
    try:
        yield site
    finally:
        for process in site.processes:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 5)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def udp_listening(ns: str, port: int) -> bool | None:
    done = await asyncio.create_subprocess_exec(
        IP, "netns", "exec", ns, SS, "-Hlun", f"sport = :{port}", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await done.communicate()
    return True if out.strip() else None


async def test_a_call_between_two_vlans_flows_relay_to_relay(
    site: Site, vlans: Vlans, tmp_path: Path
) -> None:
    cert, key = ensure_self_signed(tmp_path / "tls", [vlans.control])
    control = ControlPlane(
        ControlConfig(
            data_dir=tmp_path / "control",
            grpc_listen=f"{vlans.control}:0",
            metrics_listen=None,
            tls_cert=cert,
            tls_key=key,
        )
    )
    await control.start()
    channel = grpc.aio.secure_channel(
        control.address, grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    )
    metadata = (("authorization", f"Bearer {control.token}"),)
    try:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        for name, ns, address in (
            ("vlan-a", vlans.a, vlans.sidecar_a),
            ("vlan-b", vlans.b, vlans.sidecar_b),
        ):
            enrolled = await admin.EnrollSidecar(
                admin_pb2.EnrollSidecarRequest(sidecar=name), metadata=metadata
            )
            await site.run(
                ns,
                str(PYTHON),
                "-c",
                SIDECAR,
                name,
                control.address,
                enrolled.token,
                str(cert),
                f"{address}:5060",
                address,
                str(tmp_path / name),
            )

        async def both_connected() -> bool | None:
            response = await admin.ListSidecars(admin_pb2.ListSidecarsRequest(), metadata=metadata)
            connected = {
                s.name for s in response.sidecars if s.state == admin_pb2.SIDECAR_STATE_CONNECTED
            }
            return True if connected == {"sidecars/vlan-a", "sidecars/vlan-b"} else None

        await eventually(both_connected, "both sidecars to connect", 20)

        users = users_pb2_grpc.UserServiceStub(channel)
        for alias in ("alice", "bob"):
            await users.CreateUser(
                users_pb2.CreateUserRequest(
                    user=users_pb2.User(
                        sip_uri=f"sip:{alias}@{DOMAIN}",
                        display_name=alias.title(),
                        devices=[
                            users_pb2.Device(
                                label="handset",
                                registering=users_pb2.RegisteringDevice(
                                    digest_username=alias, password=f"{alias}-secret"
                                ),
                            )
                        ],
                    )
                ),
                metadata=metadata,
            )
        for ns, sidecar, alias, port in (
            (vlans.a, vlans.sidecar_a, "alice", 5070),
            (vlans.b, vlans.sidecar_b, "bob", 5080),
        ):
            registering = await site.sipp(
                ns,
                sidecar,
                SCENARIOS / "register_auth.xml",
                f"{alias};{alias}-secret;300",
                port=port,
                label=f"register-{alias}",
            )
            await site.finished(registering, f"register-{alias}")

        uas = await site.sipp(
            vlans.b, vlans.sidecar_b, CALLS / "uas_pcmu.xml", "bob", port=5080, label="uas"
        )
        await eventually(lambda: udp_listening(vlans.b, 5080), "bob's handset to listen")
        uac = await site.sipp(
            vlans.a,
            vlans.sidecar_a,
            CALLS / "uac_pcma.xml",
            "alice;alice-secret;bob",
            port=5072,
            label="uac",
        )

        presence = presence_pb2_grpc.PresenceServiceStub(channel)

        async def both_in_a_call(wanted: int = common_pb2.AVAILABILITY_IN_A_CALL) -> bool | None:
            response = await presence.BatchGetPresence(
                presence_pb2.BatchGetPresenceRequest(
                    users=[f"sip:alice@{DOMAIN}", f"sip:bob@{DOMAIN}"]
                ),
                metadata=metadata,
            )
            states = {p.availability for p in response.presences}
            return True if states == {wanted} else None

        await eventually(both_in_a_call, "alice and bob to be in a call")
        await site.finished(uac, "uac")
        await site.finished(uas, "uas")

        calls = calls_pb2_grpc.CallServiceStub(channel)

        async def finished_call() -> calls_pb2.Call | None:
            response = await calls.ListCallHistory(
                calls_pb2.ListCallHistoryRequest(), metadata=metadata
            )
            return response.calls[0] if response.calls else None

        call = await eventually(finished_call, "the call in the history")
        assert [leg.sidecar for leg in call.legs] == ["vlan-a", "vlan-b"]
        assert call.end_reason == "caller hung up"
        by_leg = {
            leg.id: "".join(e.digit for e in call.dtmf if e.leg_id == leg.id) for leg in call.legs
        }
        # Sidecar B heard bob's handset echo the digits: they crossed from relay A to relay B.
        assert sorted(by_leg.values()) == ["159", "159"]

        async def both_available() -> bool | None:
            return await both_in_a_call(common_pb2.AVAILABILITY_AVAILABLE)

        await eventually(both_available, "alice and bob to be available again")
    finally:
        await channel.close(None)
        for process in site.processes:
            if process.returncode is None:
                process.terminate()
        await asyncio.gather(*(p.wait() for p in site.processes))
        await control.stop(1.0)
