"""The SIP presence bridge against a real Kamailio presence server.

Everything real: Kamailio 5.6 with the presence modules (db_text, digest on PUBLISH and
SUBSCRIBE), handsets and a watcher that are SIPp processes, a control plane and a sidecar
in-process, and the bridge as its own process (`sip2uc connector run`, a client of the control
plane's API). What a watcher sees is read from its SIPp message trace: every NOTIFY it got.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar
from xml.etree import ElementTree

import grpc
import pytest
from sip2uc.v1 import (
    calls_pb2,
    calls_pb2_grpc,
    common_pb2,
    connectors_pb2,
    connectors_pb2_grpc,
    presence_pb2,
    presence_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)
from sip2uc_control.app import ControlConfig, ControlPlane
from sip2uc_media.sidecar import Sidecar, SidecarConfig, Transport

SIPP = shutil.which("sipp") or "/usr/bin/sipp"
HERE = Path(__file__).parent
SCENARIOS = HERE / "sipp"
DOMAIN = "uc.example.com"
CONNECTOR = "kam"
OURS = f"sip2uc-{CONNECTOR}"
T = TypeVar("T")


def _load_server_module() -> ModuleType:
    """tests/interop/kamailio/presence_server.py, under a name no installed module shadows."""
    name = "sip2uc_kamailio_presence_fixture"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, HERE / "kamailio" / "presence_server.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


presence_server: Any = _load_server_module()

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.skipif(
        presence_server.missing() is not None, reason=str(presence_server.missing())
    ),
    pytest.mark.skipif(
        not os.path.exists(SIPP), reason="SIPp (Debian sip-tester) is not installed"
    ),
]


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 15.0
) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value is not None:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- what a watcher sees ------------------------------------------------------------------------

_CHUNK_RE = re.compile(r"^-{10,}.*$", re.MULTILINE)
PIDF = "{urn:ietf:params:xml:ns:pidf}"
DM = "{urn:ietf:params:xml:ns:pidf:data-model}"
RPID = "{urn:ietf:params:xml:ns:pidf:rpid}"
DIALOG = "{urn:ietf:params:xml:ns:dialog-info}"


def notify_bodies(trace: Path) -> list[bytes]:
    """The body of every NOTIFY in a SIPp message trace, in order."""
    if not trace.exists():
        return []
    out = []
    for chunk in _CHUNK_RE.split(trace.read_text(errors="replace")):
        _, _, message = chunk.partition("message received")
        message = message.split("\n", 2)[-1].lstrip("\n") if message else ""
        if not message.startswith("NOTIFY "):
            continue
        head, _, body = message.replace("\r\n", "\n").partition("\n\n")
        length = re.search(r"^Content-Length:\s*(\d+)", head, re.MULTILINE | re.IGNORECASE)
        out.append(body.strip().encode() if length and int(length.group(1)) else b"")
    return out


def presence_seen(body: bytes) -> str:
    """What watchers see of the bridge's publication: "closed", "open" or "open:<activity>"."""
    if not body:
        return "closed"
    root = ElementTree.fromstring(body)
    tuples = [t for t in root.iter(f"{PIDF}tuple") if t.get("id", "").startswith(OURS)]
    if not tuples:
        return "closed"
    basic = (tuples[0].findtext(f"{PIDF}status/{PIDF}basic") or "").strip()
    activities = [
        child.tag.removeprefix(RPID)
        for person in root.iter(f"{DM}person")
        if person.get("id", "").startswith(OURS)
        for acts in person.iter(f"{RPID}activities")
        for child in acts
    ]
    return f"{basic}:{activities[0]}" if activities and basic == "open" else basic


def our_tuples(body: bytes) -> int:
    if not body:
        return 0
    return sum(1 for t in ElementTree.fromstring(body).iter(f"{PIDF}tuple") if t.get("id") == OURS)


def dialog_seen(body: bytes) -> str:
    if not body:
        return "none"
    root = ElementTree.fromstring(body)
    states = [(d.findtext(f"{DIALOG}state") or "").strip() for d in root.iter(f"{DIALOG}dialog")]
    return states[0] if states else "none"


@dataclass
class Watcher:
    """A SIPp process subscribed to one user's presence (or dialog) at Kamailio."""

    process: asyncio.subprocess.Process
    trace: Path
    event: str

    def seen(self) -> list[str]:
        read = presence_seen if self.event == "presence" else dialog_seen
        return [read(body) for body in notify_bodies(self.trace)]

    def last_body(self) -> bytes:
        bodies = notify_bodies(self.trace)
        return bodies[-1] if bodies else b""

    async def sees(self, state: str, timeout: float = 15.0) -> None:
        async def probe() -> bool | None:
            seen = self.seen()
            return True if seen and seen[-1] == state else None

        try:
            await eventually(probe, f"the {self.event} watcher to see {state}", timeout)
        except AssertionError:
            raise AssertionError(f"watcher saw {self.seen()}, not {state} last") from None

    async def saw(self, state: str, timeout: float = 15.0) -> None:
        async def probe() -> bool | None:
            return True if state in self.seen() else None

        try:
            await eventually(probe, f"the {self.event} watcher to see {state}", timeout)
        except AssertionError:
            raise AssertionError(f"watcher saw {self.seen()}, never {state}") from None


# --- the world ----------------------------------------------------------------------------------


@dataclass
class World:
    tmp: Path
    control: ControlPlane
    channel: grpc.aio.Channel
    sidecar: Sidecar
    kamailio: Any
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)
    bridge: asyncio.subprocess.Process | None = None
    runs: int = 0

    @property
    def users(self) -> users_pb2_grpc.UserServiceStub:
        return users_pb2_grpc.UserServiceStub(self.channel)

    @property
    def presence(self) -> presence_pb2_grpc.PresenceServiceStub:
        return presence_pb2_grpc.PresenceServiceStub(self.channel)

    @property
    def connectors(self) -> connectors_pb2_grpc.ConnectorServiceStub:
        return connectors_pb2_grpc.ConnectorServiceStub(self.channel)

    async def add_user(self, ext: str) -> str:
        created = await self.users.CreateUser(
            users_pb2.CreateUserRequest(
                user=users_pb2.User(
                    sip_uri=f"sip:{ext}@{DOMAIN}",
                    extension=ext,
                    devices=[
                        users_pb2.Device(
                            registering=users_pb2.RegisteringDevice(password=f"pw-{ext}-x")
                        )
                    ],
                )
            )
        )
        return created.user.name

    async def add_connector(self, transport: str = "udp", **config: Any) -> None:
        values: dict[str, Any] = {
            "server": self.kamailio.server_uri(transport),
            "username": presence_server.USERNAME,
            "password": presence_server.PASSWORD,
            "expires": 120,
        }
        if transport == "tls":
            values["tls_ca_pem"] = self.kamailio.ca_pem
        values.update(config)
        await self.connectors.CreateConnector(
            connectors_pb2.CreateConnectorRequest(
                connector_id=CONNECTOR,
                connector=connectors_pb2.Connector(
                    external=True, sip_presence=connectors_pb2.SipPresenceConfig(**values)
                ),
            )
        )

    async def start_bridge(self) -> None:
        """`sip2uc connector run kam` as its own process, against this control plane."""
        self.runs += 1
        log = (self.tmp / f"bridge-{self.runs}.log").open("wb")
        self.bridge = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sip2uc.cli",
            "--control",
            self.control.address,
            "connector",
            "run",
            CONNECTOR,
            "--log-level",
            "debug",
            env={**os.environ, "SIP2UC_TOKEN": self.control.token},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )
        self.processes.append(self.bridge)

        async def connected() -> bool | None:
            got = await self.connectors.GetConnector(
                connectors_pb2.GetConnectorRequest(name=CONNECTOR)
            )
            return (
                True
                if got.connector.status.state == connectors_pb2.CONNECTOR_STATE_CONNECTED
                else None
            )

        await eventually(connected, "the bridge to connect", 20)

    async def kill_bridge(self) -> None:
        assert self.bridge is not None
        self.bridge.send_signal(signal.SIGKILL)
        await self.bridge.wait()

    async def sipp(
        self,
        scenario: Path,
        row: str,
        label: str,
        *,
        target: str,
        port: int | None = None,
        timeout: str = "30s",
    ) -> asyncio.subprocess.Process:
        rows = self.tmp / f"{label}.csv"
        rows.write_text(f"SEQUENTIAL\n{row}\n")
        process = await asyncio.create_subprocess_exec(
            SIPP,
            target,
            "-sf",
            str(scenario),
            "-inf",
            str(rows),
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
            "-p",
            str(port or free_udp_port()),
            "-mp",
            str(free_udp_port() & ~1),
            "-m",
            "1",
            "-timeout",
            timeout,
            "-nostdin",
            "-trace_err",
            "-error_file",
            str(self.tmp / f"{label}.errors.log"),
            "-trace_msg",
            "-message_file",
            str(self.tmp / f"{label}.messages.log"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=self.tmp,
        )
        self.processes.append(process)
        return process

    async def done(
        self, process: asyncio.subprocess.Process, label: str, timeout: float = 30.0
    ) -> None:
        status = await asyncio.wait_for(process.wait(), timeout)
        errors = self.tmp / f"{label}.errors.log"
        log = errors.read_text(errors="replace") if errors.exists() else ""
        assert status == 0, f"SIPp {label} exited {status}:\n{log[-2000:]}"

    @property
    def handset_target(self) -> str:
        host, port = self.sidecar.listen_addresses[Transport.UDP]
        return f"{host}:{port}"

    async def register(self, ext: str, port: int | None = None) -> int:
        port = port or free_udp_port()
        label = f"register-{ext}-{port}"
        process = await self.sipp(
            SCENARIOS / "register_auth.xml",
            f"{ext};pw-{ext}-x;300",
            label,
            target=self.handset_target,
            port=port,
        )
        await self.done(process, label)
        return port

    async def unregister(self, ext: str, port: int) -> None:
        label = f"unregister-{ext}"
        process = await self.sipp(
            SCENARIOS / "unregister.xml",
            f"{ext};pw-{ext}-x",
            label,
            target=self.handset_target,
            port=port,
        )
        await self.done(process, label)

    async def dial(
        self, ext: str, dialled: str, scenario: str = "uac_pcma_until_bye.xml"
    ) -> asyncio.subprocess.Process:
        media = free_udp_port()
        row = f"{ext};pw-{ext}-x;{dialled};{media}"
        return await self.sipp(
            SCENARIOS / "calls" / scenario, row, f"dial-{ext}-{dialled}", target=self.handset_target
        )

    async def watch(self, ext: str, event: str = "presence") -> Watcher:
        label = f"watch-{ext}-{event}"
        row = f"{ext};{DOMAIN};{event};{presence_server.USERNAME};{presence_server.PASSWORD}"
        process = await self.sipp(
            HERE / "kamailio" / "watcher.xml",
            row,
            label,
            target=f"127.0.0.1:{self.kamailio.udp_port}",
            timeout="120s",
        )
        return Watcher(process, self.tmp / f"{label}.messages.log", event)

    async def uc_client_publishes(self, ext: str, activity: str, note: str) -> None:
        label = f"uc-client-{ext}-{activity}"
        row = f"{ext};{DOMAIN};{presence_server.USERNAME};{presence_server.PASSWORD};{activity};{note}"
        process = await self.sipp(
            HERE / "kamailio" / "uc_client_publish.xml",
            row,
            label,
            target=f"127.0.0.1:{self.kamailio.udp_port}",
        )
        await self.done(process, label)

    async def presence_of(self, user: str) -> presence_pb2.Presence:
        return (
            await self.presence.GetPresence(presence_pb2.GetPresenceRequest(user=user))
        ).presence


async def make_world(
    tmp_path: Path, *, tls: bool = False, min_expires: int = 0, message_target: str = ""
) -> World:
    kamailio = presence_server.KamailioPresence(
        tmp_path / "kamailio",
        auth=True,
        tls=tls,
        min_expires=min_expires,
        message_target=message_target,
    ).start()
    control = ControlPlane(
        ControlConfig(data_dir=tmp_path / "control", grpc_listen="127.0.0.1:0", metrics_listen=None)
    )
    await control.start()
    assert control.core is not None
    # A killed bridge's session lapses after this long (30 s in production).
    control.core.connector_sessions.lease = 2.0
    sidecar = Sidecar(
        SidecarConfig(
            control=control.address,
            token=control.token,
            name="handsets",
            sip_listen="127.0.0.1:0",
            data_dir=tmp_path / "sidecar",
            digest_algorithms=("MD5",),
            rtp_ports=(42000 + (os.getpid() % 40) * 200, 42000 + (os.getpid() % 40) * 200 + 199),
        )
    )
    await sidecar.start()
    assert sidecar.control is not None
    await asyncio.wait_for(sidecar.control.wait_up(), 10)
    channel = grpc.aio.insecure_channel(control.address)
    return World(tmp_path, control, channel, sidecar, kamailio)


async def close_world(world: World) -> None:
    for process in world.processes:
        if process.returncode is None:
            process.kill()
            await process.wait()
    await world.sidecar.stop(1.0)
    await world.channel.close(None)
    await world.control.stop(1.0)
    world.kamailio.stop()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = await make_world(tmp_path)
    try:
        yield w
    finally:
        await close_world(w)


# --- the tests ----------------------------------------------------------------------------------


async def test_watchers_follow_the_handset_registered_in_a_call_away_and_gone(world: World) -> None:
    await world.add_user("1001")
    await world.add_user("1002")
    await world.add_connector("udp")
    await world.start_bridge()
    watcher = await world.watch("1001")
    blf = await world.watch("1001", "dialog")
    await watcher.sees("closed")

    port = await world.register("1001")
    await watcher.sees("open")

    bob_port = await world.register("1002")
    uas = await world.sipp(
        SCENARIOS / "calls" / "uas_hangs_up.xml",
        "1002",
        "uas-1002",
        target=world.handset_target,
        port=bob_port,
    )
    uac = await world.dial("1001", "1002")
    await world.done(uac, "dial-1001-1002")
    await world.done(uas, "uas-1002")
    await watcher.saw("open:on-the-phone")
    await blf.saw("confirmed")
    await watcher.sees("open")
    await blf.saw("terminated")

    code = await world.dial("1001", "*32")
    await world.done(code, "dial-1001-*32")
    await watcher.sees("open:away")

    reset = await world.dial("1001", "*35")
    await world.done(reset, "dial-1001-*35")
    await watcher.sees("open")

    await world.unregister("1001", port)
    await watcher.sees("closed")
    seen = watcher.seen()
    assert seen.index("open:on-the-phone") < seen.index("open:away")


async def test_a_bridge_killed_for_a_while_catches_up_without_a_second_publication(
    world: World,
) -> None:
    alice = await world.add_user("1001")
    await world.add_connector("udp")
    await world.start_bridge()
    watcher = await world.watch("1001")
    await world.register("1001")
    await watcher.sees("open")

    await world.kill_bridge()
    for state in (
        common_pb2.AVAILABILITY_AWAY,
        common_pb2.AVAILABILITY_BE_RIGHT_BACK,
        common_pb2.AVAILABILITY_BUSY,
    ):
        await world.presence.SetPresence(
            presence_pb2.SetPresenceRequest(user=alice, availability=state)
        )
    await asyncio.sleep(0.5)
    assert watcher.seen()[-1] == "open"  # nobody published meanwhile

    await world.start_bridge()
    await watcher.sees("open:busy")
    # The restarted bridge modified its earlier publication (saved entity-tag): one tuple.
    assert our_tuples(watcher.last_body()) == 1

    async def mapped() -> bool | None:
        got = await world.connectors.GetConnector(
            connectors_pb2.GetConnectorRequest(name=CONNECTOR)
        )
        status = got.connector.status
        return True if status.users_mapped == 1 and status.changes_out >= 1 else None

    await eventually(mapped, "the restarted bridge to report its user")


async def test_dnd_set_in_a_uc_client_comes_back_as_external_and_the_handset_is_not_rung(
    world: World,
) -> None:
    await world.add_user("1001")
    bob = await world.add_user("1002")
    await world.add_connector("udp")
    await world.start_bridge()
    await world.register("1001")
    bob_port = await world.register("1002")

    await world.uc_client_publishes("1002", "busy", "Do not disturb")

    async def dnd() -> presence_pb2.Presence | None:
        shown = await world.presence_of(bob)
        return shown if shown.availability == common_pb2.AVAILABILITY_DO_NOT_DISTURB else None

    shown = await eventually(dnd, "bob to be DND")
    assert (shown.source, shown.origin, shown.note) == (
        common_pb2.PRESENCE_SOURCE_EXTERNAL,
        f"connectors/{CONNECTOR}",
        "Do not disturb",
    )

    # Bob's handset address: a socket that records anything sent to it.
    received: list[bytes] = []
    loop = asyncio.get_running_loop()

    class Record(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            received.append(data)

    transport, _ = await loop.create_datagram_endpoint(Record, local_addr=("127.0.0.1", bob_port))
    try:
        caller = await world.dial("1001", "1002", scenario="uac_rejected_486.xml")
        await world.done(caller, "dial-1001-1002")
    finally:
        transport.close()
    assert not [data for data in received if data.startswith(b"INVITE")]
    history = await calls_pb2_grpc.CallServiceStub(world.channel).ListCallHistory(
        calls_pb2.ListCallHistoryRequest()
    )
    assert [(c.final_status, c.end_reason, len(c.legs)) for c in history.calls] == [(486, "dnd", 1)]


async def test_busy_in_a_uc_client_is_brought_in_and_not_published_back(world: World) -> None:
    alice = await world.add_user("1001")
    await world.add_connector("udp")
    await world.start_bridge()
    watcher = await world.watch("1001")
    await world.register("1001")
    await watcher.sees("open")
    await world.uc_client_publishes("1001", "busy", "In a meeting")

    async def busy() -> presence_pb2.Presence | None:
        shown = await world.presence_of(alice)
        return shown if shown.availability == common_pb2.AVAILABILITY_BUSY else None

    shown = await eventually(busy, "alice to be busy")
    assert shown.source == common_pb2.PRESENCE_SOURCE_EXTERNAL
    await asyncio.sleep(1.0)
    # sip2uc shows busy, but the bridge keeps publishing the handset's own state: the busy came
    # from the presence server and is not sent back there.
    assert watcher.seen()[-1] == "open"
    assert "open:busy" not in watcher.seen()


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_publish_and_subscribe_over_a_stream_transport(
    tmp_path: Path, transport: str
) -> None:
    if transport == "tls" and presence_server.missing_tls() is not None:
        pytest.skip(presence_server.missing_tls())
    world = await make_world(tmp_path, tls=transport == "tls")
    try:
        alice = await world.add_user("1001")
        await world.add_connector(transport)
        await world.start_bridge()
        watcher = await world.watch("1001")
        await world.presence.SetPresence(
            presence_pb2.SetPresenceRequest(user=alice, availability=common_pb2.AVAILABILITY_AWAY)
        )
        await watcher.sees("open:away")
        await world.uc_client_publishes("1001", "busy", "dnd")

        async def dnd() -> bool | None:
            shown = await world.presence_of(alice)
            return True if shown.availability == common_pb2.AVAILABILITY_DO_NOT_DISTURB else None

        await eventually(dnd, f"DND brought in over {transport}")
    finally:
        await close_world(world)


async def test_subscriptions_follow_a_min_expires_above_the_asked_expires(tmp_path: Path) -> None:
    world = await make_world(tmp_path, min_expires=300)
    try:
        alice = await world.add_user("1001")
        # Kamailio answers SUBSCRIBE below its min_expires with 423 (PUBLISH it accepts).
        await world.add_connector("udp", expires=120)
        await world.start_bridge()
        watcher = await world.watch("1001")
        await world.presence.SetPresence(
            presence_pb2.SetPresenceRequest(user=alice, availability=common_pb2.AVAILABILITY_BUSY)
        )
        await watcher.sees("open:busy")
        await world.uc_client_publishes("1001", "away", "gone fishing")

        async def away() -> bool | None:
            shown = await world.presence_of(alice)
            return True if shown.source == common_pb2.PRESENCE_SOURCE_EXTERNAL else None

        await eventually(away, "the UC client's state through the subscription made after 423")
        shown = await world.presence_of(alice)
        assert (shown.availability, shown.note) == (common_pb2.AVAILABILITY_AWAY, "gone fishing")
    finally:
        await close_world(world)
