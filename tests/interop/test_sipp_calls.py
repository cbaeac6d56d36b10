"""Calls between SIPp handsets through real sidecars and a real control plane, in-process.

The handsets are SIPp instances (scenarios in ``sipp/calls/``): callers authenticate with MD5
digest after a 407 and offer PCMA only, callees answer PCMU only, so the relay transcodes.
Where the test must see exactly what a handset receives, or speak for it, the handset's SDP
names a UDP socket of the test (:class:`FarEnd`) instead of SIPp's own media port; SIPp then
only does the signalling. Everything the tests wait for is observable (a socket bound, a
packet count, a call state, a presence), polled with a bound; every SIPp run is bounded by
``-m``, ``-timeout ... -timeout_error`` and ``-nostdin``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar, cast

import grpc
import pytest
from google.protobuf import field_mask_pb2
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
from sip2uc_media.rtp import g711
from sip2uc_media.rtp.relay import MediaLeg
from sip2uc_media.sidecar import Sidecar, SidecarConfig, Transport

SIPP = shutil.which("sipp") or "/usr/bin/sipp"
SCENARIOS = Path(__file__).parent / "sipp"
CALLS = SCENARIOS / "calls"
MEDIA = Path("/usr/share/sip-tester")
DOMAIN = "sip2uc.local"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        not os.path.exists(SIPP), reason="SIPp (Debian sip-tester) is not installed"
    ),
    pytest.mark.skipif(
        not (MEDIA / "g711a.pcap").exists(),
        reason="SIPp's media captures (Debian sip-tester) are not installed",
    ),
]

try:
    from sip2uc_control.app import ControlConfig, ControlPlane
except ImportError:  # pragma: no cover - the control plane is part of this repository
    pytest.skip("the control plane package is not importable", allow_module_level=True)

AVAILABLE = common_pb2.AVAILABILITY_AVAILABLE
IN_A_CALL = common_pb2.AVAILABILITY_IN_A_CALL
DND = common_pb2.AVAILABILITY_DO_NOT_DISTURB
T = TypeVar("T")


# --- plumbing ---------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def udp_port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 10.0
) -> T:
    """Poll ``probe`` until it returns something other than None (bounded by ``timeout``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if value is not None:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def rtp_header(packet: bytes) -> tuple[int, int, int, int]:
    """(payload type, marker, sequence number, timestamp) of an RTP packet."""
    _b0, b1, seq, ts, _ssrc = struct.unpack_from("!BBHII", packet)
    return b1 & 0x7F, b1 >> 7, seq, ts


def pcap_rtp_payloads(path: Path) -> list[tuple[int, bytes]]:
    """(payload type, payload) of every RTP packet in an Ethernet/IPv4/UDP pcap capture."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data)[0]
    endian = "<" if magic == 0xA1B2C3D4 else ">"
    out: list[tuple[int, bytes]] = []
    pos = 24
    while pos + 16 <= len(data):
        _sec, _usec, caplen, _len = struct.unpack_from(endian + "IIII", data, pos)
        frame = data[pos + 16 : pos + 16 + caplen]
        pos += 16 + caplen
        ip = frame[14:]
        udp = ip[4 * (ip[0] & 0x0F) :]
        rtp = udp[8:]
        out.append((rtp[1] & 0x7F, rtp[12 + 4 * (rtp[0] & 0x0F) :]))
    return out


class FarEnd(asyncio.DatagramProtocol):
    """A UDP socket standing in for a handset's media: records what arrives, can speak."""

    def __init__(self) -> None:
        self.packets: list[tuple[bytes, tuple[str, int]]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.arrived = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.packets.append((data, addr))
        self.arrived.set()

    @property
    def addr(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def of_type(self, payload_type: int) -> list[bytes]:
        return [data for data, _ in self.packets if rtp_header(data)[0] == payload_type]

    async def wait_for(self, payload_type: int, count: int, timeout: float = 10.0) -> list[bytes]:
        async def enough() -> list[bytes] | None:
            got = self.of_type(payload_type)
            return got if len(got) >= count else None

        return await eventually(enough, f"{count} RTP packets of PT {payload_type}", timeout)

    def send_rtp(
        self, dest: tuple[str, int], payload_type: int, frames: Sequence[bytes], start: int = 0
    ) -> None:
        """`frames` as RTP, numbered from packet `start` of the stream (sequence, timestamp)."""
        assert self.transport is not None
        for i, frame in enumerate(frames, start):
            header = struct.pack("!BBHII", 0x80, payload_type, 1000 + i, 160 * i, 0x5151)
            self.transport.sendto(header + frame, dest)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def far_end(host: str = "127.0.0.1") -> FarEnd:
    loop = asyncio.get_running_loop()
    _transport, protocol = await loop.create_datagram_endpoint(FarEnd, local_addr=(host, 0))
    return protocol


class Stack:
    def __init__(self, control: ControlPlane, channel: grpc.aio.Channel, tmp: Path) -> None:
        self.control = control
        self.channel = channel
        self.tmp = tmp
        self.metadata = (("authorization", f"Bearer {control.token}"),)
        self.sidecars: list[Sidecar] = []
        self.far_ends: list[FarEnd] = []
        self.processes: list[asyncio.subprocess.Process] = []
        self.calls = calls_pb2_grpc.CallServiceStub(channel)
        self.presence = presence_pb2_grpc.PresenceServiceStub(channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(channel)

    async def sidecar(self, name: str, host: str = "127.0.0.1") -> Sidecar:
        base = 30000 + 1000 * len(self.sidecars) + (os.getpid() % 20) * 1500
        sidecar = Sidecar(
            SidecarConfig(
                control=self.control.address,
                token=self.control.token,
                name=name,
                sip_listen=f"{host}:0",
                data_dir=self.tmp / name,
                digest_algorithms=("MD5",),
                rtp_ports=(base, base + 199),
            )
        )
        await sidecar.start()
        self.sidecars.append(sidecar)
        assert sidecar.control is not None
        await asyncio.wait_for(sidecar.control.wait_up(), 10)
        return sidecar

    async def far_end(self, host: str = "127.0.0.1") -> FarEnd:
        end = await far_end(host)
        self.far_ends.append(end)
        return end

    async def create_user(self, alias: str, password: str) -> None:
        stub = users_pb2_grpc.UserServiceStub(self.channel)
        await stub.CreateUser(
            users_pb2.CreateUserRequest(
                user=users_pb2.User(
                    sip_uri=f"sip:{alias}@{DOMAIN}",
                    display_name=alias.title(),
                    devices=[
                        users_pb2.Device(
                            label="handset",
                            registering=users_pb2.RegisteringDevice(
                                digest_username=alias, password=password
                            ),
                        )
                    ],
                )
            ),
            metadata=self.metadata,
        )

    async def availability(self, alias: str) -> int:
        response = await self.presence.GetPresence(
            presence_pb2.GetPresenceRequest(user=f"sip:{alias}@{DOMAIN}"), metadata=self.metadata
        )
        value: int = response.presence.availability
        return value

    async def wait_availability(self, alias: str, wanted: int, timeout: float = 10.0) -> None:
        async def probe() -> bool | None:
            return True if await self.availability(alias) == wanted else None

        name = common_pb2.Availability.Name(wanted)  # type: ignore[arg-type]
        await eventually(probe, f"{alias} to be {name}", timeout)

    async def live_call(self, timeout: float = 10.0) -> calls_pb2.Call:
        """The one live call (waits for it to exist)."""

        async def probe() -> calls_pb2.Call | None:
            response = await self.calls.ListCalls(
                calls_pb2.ListCallsRequest(), metadata=self.metadata
            )
            return response.calls[0] if len(response.calls) == 1 else None

        return await eventually(probe, "a live call", timeout)

    async def wait_call_state(self, name: str, state: int, timeout: float = 10.0) -> calls_pb2.Call:
        async def probe() -> calls_pb2.Call | None:
            response = await self.calls.GetCall(
                calls_pb2.GetCallRequest(name=name), metadata=self.metadata
            )
            return response.call if response.call.state == state else None

        return await eventually(probe, f"{name} in state {state}", timeout)

    async def history(self) -> list[tuple[str, int]]:
        """(end reason, final status) of every finished call, newest first, once there is one:
        a handset may be done before the control plane has heard the last RPC."""

        async def probe() -> list[tuple[str, int]] | None:
            response = await self.calls.ListCallHistory(
                calls_pb2.ListCallHistoryRequest(), metadata=self.metadata
            )
            found = [(call.end_reason, call.final_status) for call in response.calls]
            return found or None

        return await eventually(probe, "a call in the history")

    async def set_media_timeout(self, seconds: int) -> None:
        await self.admin.UpdateSettings(
            admin_pb2.UpdateSettingsRequest(
                settings=admin_pb2.Settings(media_timeout_seconds=seconds),
                update_mask=field_mask_pb2.FieldMask(paths=["media_timeout_seconds"]),
            ),
            metadata=self.metadata,
        )

        async def pushed() -> bool | None:
            ok = all(
                s.relay is not None and s.relay.media_timeout == seconds for s in self.sidecars
            )
            return True if ok else None

        await eventually(pushed, "the media timeout to reach the sidecars")


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    control = ControlPlane(
        ControlConfig(data_dir=tmp_path / "control", grpc_listen="127.0.0.1:0", metrics_listen=None)
    )
    await control.start()
    channel = grpc.aio.insecure_channel(control.address)
    stack = Stack(control, channel, tmp_path)
    try:
        yield stack
    finally:
        for process in stack.processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
        for end in stack.far_ends:
            end.close()
        for sidecar in stack.sidecars:
            await sidecar.stop(1.0)
        await channel.close(None)
        await control.stop(1.0)


# --- SIPp -------------------------------------------------------------------------------------


class Handset:
    """One SIPp run; :meth:`finished` asserts it completed its scenario (exit status 0)."""

    def __init__(self, process: asyncio.subprocess.Process, errors: Path, label: str) -> None:
        self.process = process
        self.errors = errors
        self.label = label

    async def finished(self, timeout: float = 40.0) -> None:
        status = await asyncio.wait_for(self.process.wait(), timeout)
        log = self.errors.read_text(errors="replace") if self.errors.exists() else ""
        assert status == 0, f"SIPp {self.label} exited {status}:\n{log[-3000:]}"


async def sipp(
    stack: Stack,
    sidecar: Sidecar,
    scenario: Path,
    rows: list[str],
    *,
    port: int,
    label: str,
    host: str = "127.0.0.1",
    extra: tuple[str, ...] = (),
    target: tuple[str, int] | None = None,
) -> Handset:
    """SIPp running ``scenario`` against ``sidecar`` (or another SIP server at ``target``)."""
    sip_host, sip_port = target or sidecar.listen_addresses[Transport.UDP]
    tmp = stack.tmp
    users = tmp / f"{label}.csv"
    users.write_text("SEQUENTIAL\n" + "".join(f"{row}\n" for row in rows))
    errors = tmp / f"{label}.errors.log"
    process = await asyncio.create_subprocess_exec(
        SIPP,
        f"{sip_host}:{sip_port}",
        "-sf",
        str(scenario),
        "-inf",
        str(users),
        "-i",
        host,
        "-mi",
        host,
        "-p",
        str(port),
        "-mp",
        str(free_port(host) & ~1),
        "-m",
        str(len(rows)),
        "-timeout",
        "30s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-error_file",
        str(errors),
        "-trace_msg",
        "-message_file",
        str(tmp / f"{label}.messages.log"),
        *extra,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=tmp,
    )
    stack.processes.append(process)
    return Handset(process, errors, label)


async def register(
    stack: Stack, sidecar: Sidecar, user: str, password: str, host: str = "127.0.0.1"
) -> int:
    """Register ``user`` from a fresh port; returns the port (the callee listens there)."""
    port = free_port(host)
    handset = await sipp(
        stack,
        sidecar,
        SCENARIOS / "register_auth.xml",
        [f"{user};{password};300"],
        port=port,
        host=host,
        label=f"register-{user}",
    )
    await handset.finished(30)
    return port


async def callee(
    stack: Stack,
    sidecar: Sidecar,
    scenario: str,
    row: str,
    port: int,
    *,
    host: str = "127.0.0.1",
    extra: tuple[str, ...] = (),
) -> Handset:
    """Start a UAS on the port its user registered from, and wait until it listens."""
    handset = await sipp(
        stack, sidecar, CALLS / scenario, [row], port=port, host=host, label="uas", extra=extra
    )

    async def listening() -> bool | None:
        if handset.process.returncode is not None:
            raise AssertionError(f"the UAS exited early with {handset.process.returncode}")
        return True if udp_port_taken(host, port) else None

    await eventually(listening, "the UAS to bind its port")
    return handset


async def caller(
    stack: Stack, sidecar: Sidecar, scenario: str, row: str, *, host: str = "127.0.0.1"
) -> Handset:
    return await sipp(
        stack, sidecar, CALLS / scenario, [row], port=free_port(host), host=host, label="uac"
    )


async def two_users(stack: Stack, sidecar: Sidecar, callee_sidecar: Sidecar | None = None) -> int:
    """alice and bob, both registered; returns the port bob's handset listens on."""
    await stack.create_user("alice", "alice-secret")
    await stack.create_user("bob", "bob-secret")
    await register(stack, sidecar, "alice", "alice-secret")
    return await register(stack, callee_sidecar or sidecar, "bob", "bob-secret")


def relay_leg_towards(sidecar: Sidecar, far: FarEnd) -> MediaLeg | None:
    """The sidecar's relay leg whose handset SDP named ``far``, once it is bridged."""
    assert sidecar.relay is not None
    for leg in sidecar.relay.legs():
        if leg.media.remote_rtp == far.addr and leg.session is not None:
            return leg
    return None


# --- media ------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_caller_pcma_audio_reaches_the_pcmu_callee_transcoded_sample_for_sample(
    stack: Stack,
) -> None:
    sidecar = await stack.sidecar("calls-one")
    bob_port = await two_users(stack, sidecar)
    bob_media = await stack.far_end()
    uas = await callee(stack, sidecar, "uas_pcmu_at.xml", f"bob;{bob_media.addr[1]}", bob_port)
    uac = await caller(stack, sidecar, "uac_pcma_audio.xml", "alice;alice-secret;bob")

    await uac.finished()
    await uas.finished(10)

    sent = [payload for pt, payload in pcap_rtp_payloads(MEDIA / "g711a.pcap") if pt == 8]
    assert len(sent) == 236
    received = [packet[12:] for packet in bob_media.of_type(0)]
    # What a PCMU handset hears is the caller's A-law decoded and re-encoded as mu-law.
    assert received == [g711.encode_ulaw(g711.decode_alaw(payload)) for payload in sent]
    assert bob_media.of_type(8) == []


async def test_callee_pcmu_audio_reaches_the_pcma_caller_and_api_dtmf_reaches_each_side(
    stack: Stack,
) -> None:
    sidecar = await stack.sidecar("calls-one")
    bob_port = await two_users(stack, sidecar)
    alice_media, bob_media = await stack.far_end(), await stack.far_end()
    uas = await callee(stack, sidecar, "uas_pcmu_at.xml", f"bob;{bob_media.addr[1]}", bob_port)
    uac = await caller(
        stack, sidecar, "uac_pcma_until_bye.xml", f"alice;alice-secret;bob;{alice_media.addr[1]}"
    )
    call = await stack.live_call()
    await stack.wait_call_state(call.name, calls_pb2.CALL_STATE_CONNECTED)

    async def bridged() -> MediaLeg | None:
        return relay_leg_towards(sidecar, bob_media)

    bob_leg = await eventually(bridged, "bob's relay leg to be bridged")
    speech = [
        g711.encode_ulaw([(n * 37 + k * 211) % 16000 - 8000 for k in range(160)]) for n in range(50)
    ]
    bob_media.send_rtp(("127.0.0.1", bob_leg.local_port), 0, speech)
    heard = await alice_media.wait_for(8, 50)
    assert [packet[12:] for packet in heard] == [
        g711.encode_alaw(g711.decode_ulaw(frame)) for frame in speech
    ]

    await stack.calls.SendDtmf(
        calls_pb2.SendDtmfRequest(name=call.name, digits="42"), metadata=stack.metadata
    )
    await stack.calls.SendDtmf(
        calls_pb2.SendDtmfRequest(name=call.name, digits="7", towards=f"sip:alice@{DOMAIN}"),
        metadata=stack.metadata,
    )
    await eventually(lambda: ended_digits(bob_media, "42"), "bob to hear 4 and 2")
    await eventually(lambda: ended_digits(alice_media, "7"), "alice to hear 7")

    await stack.calls.EndCall(calls_pb2.EndCallRequest(name=call.name), metadata=stack.metadata)
    await uac.finished(10)
    await uas.finished(10)
    ended = await stack.wait_call_state(call.name, calls_pb2.CALL_STATE_ENDED)
    assert ended.end_reason == "ended by administrator"


async def ended_digits(far: FarEnd, wanted: str) -> bool | None:
    return True if digits_ended(far.of_type(101)) == wanted else None


def digits_ended(events: list[bytes]) -> str:
    """The digits whose RFC 4733 end packet arrived, in order (retransmitted ends once)."""
    out: list[tuple[int, str]] = []
    for packet in events:
        _pt, _marker, _seq, ts = rtp_header(packet)
        event, flags = packet[12], packet[13]
        if flags & 0x80 and (not out or out[-1][0] != ts):
            out.append((ts, "0123456789*#ABCD"[event]))
    return "".join(digit for _ts, digit in out)


# --- DTMF and presence ------------------------------------------------------------------------


async def test_caller_digits_are_reported_in_order_and_both_users_are_in_a_call_until_bye(
    stack: Stack,
) -> None:
    sidecar = await stack.sidecar("calls-one")
    bob_port = await two_users(stack, sidecar)
    uas = await callee(stack, sidecar, "uas_pcmu.xml", "bob", bob_port, extra=("-rtp_echo",))
    uac = await caller(stack, sidecar, "uac_pcma.xml", "alice;alice-secret;bob")

    call = await stack.live_call()
    await stack.wait_availability("alice", IN_A_CALL)
    await stack.wait_availability("bob", IN_A_CALL)
    await uac.finished()
    await uas.finished(10)

    ended = await stack.wait_call_state(call.name, calls_pb2.CALL_STATE_ENDED)
    caller_leg = ended.legs[0].id
    assert "".join(e.digit for e in ended.dtmf if e.leg_id == caller_leg) == "159"
    # The echoing callee sent the same digits back on its own leg.
    assert "".join(e.digit for e in ended.dtmf if e.leg_id != caller_leg) == "159"
    assert ended.end_reason == "caller hung up"
    await stack.wait_availability("alice", AVAILABLE)
    await stack.wait_availability("bob", AVAILABLE)
    assert sidecar.calls is not None and sidecar.calls.active_legs == 0


async def test_a_caller_in_manual_dnd_stays_dnd_during_the_call_and_after(stack: Stack) -> None:
    sidecar = await stack.sidecar("calls-one")
    bob_port = await two_users(stack, sidecar)
    await stack.presence.SetPresence(
        presence_pb2.SetPresenceRequest(user=f"sip:alice@{DOMAIN}", availability=DND),
        metadata=stack.metadata,
    )
    alice_media = await stack.far_end()
    uas = await callee(stack, sidecar, "uas_pcmu.xml", "bob", bob_port)
    uac = await caller(
        stack, sidecar, "uac_pcma_until_bye.xml", f"alice;alice-secret;bob;{alice_media.addr[1]}"
    )
    call = await stack.live_call()
    await stack.wait_call_state(call.name, calls_pb2.CALL_STATE_CONNECTED)
    await stack.wait_availability("bob", IN_A_CALL)

    during = await stack.presence.GetPresence(
        presence_pb2.GetPresenceRequest(user=f"sip:alice@{DOMAIN}"), metadata=stack.metadata
    )
    assert during.presence.availability == DND
    assert during.presence.activity == common_pb2.ACTIVITY_IN_A_CALL

    await stack.calls.EndCall(calls_pb2.EndCallRequest(name=call.name), metadata=stack.metadata)
    await uac.finished(10)
    await uas.finished(10)
    await stack.wait_availability("bob", AVAILABLE)

    async def alice_out_of_the_call() -> presence_pb2.Presence | None:
        response = await stack.presence.GetPresence(
            presence_pb2.GetPresenceRequest(user=f"sip:alice@{DOMAIN}"), metadata=stack.metadata
        )
        presence = response.presence
        return presence if presence.activity == common_pb2.ACTIVITY_NONE else None

    after = await eventually(alice_out_of_the_call, "alice's call activity to end")
    assert after.availability == DND


# --- endings ----------------------------------------------------------------------------------


async def test_caller_cancel_while_the_callee_rings_is_487_on_both_sides(stack: Stack) -> None:
    sidecar = await stack.sidecar("calls-one")
    bob_port = await two_users(stack, sidecar)
    uas = await callee(stack, sidecar, "uas_ring_until_cancel.xml", "bob", bob_port)
    uac = await caller(stack, sidecar, "uac_cancel.xml", "alice;alice-secret;bob")

    await uac.finished()
    await uas.finished(10)

    assert await stack.history() == [("caller cancelled", 487)]
    await stack.wait_availability("alice", AVAILABLE)
    await stack.wait_availability("bob", AVAILABLE)


async def test_callee_bye_ends_the_call_with_a_bye_to_the_caller(stack: Stack) -> None:
    sidecar = await stack.sidecar("calls-one")
    bob_port = await two_users(stack, sidecar)
    alice_media = await stack.far_end()
    uas = await callee(stack, sidecar, "uas_hangs_up.xml", "bob", bob_port)
    uac = await caller(
        stack, sidecar, "uac_pcma_until_bye.xml", f"alice;alice-secret;bob;{alice_media.addr[1]}"
    )

    call = await stack.live_call()
    await uas.finished()
    await uac.finished(10)

    ended = await stack.wait_call_state(call.name, calls_pb2.CALL_STATE_ENDED)
    assert ended.end_reason == "callee hung up"
    assert sidecar.calls is not None and sidecar.calls.active_legs == 0


async def test_a_busy_callee_gives_the_caller_486(stack: Stack) -> None:
    sidecar = await stack.sidecar("calls-one")
    bob_port = await two_users(stack, sidecar)
    uas = await callee(stack, sidecar, "uas_busy.xml", "bob", bob_port)
    uac = await caller(stack, sidecar, "uac_rejected_486.xml", "alice;alice-secret;bob")

    await uac.finished()
    await uas.finished(10)

    assert await stack.history() == [("no fork answered (486)", 486)]


@pytest.mark.slow
async def test_silent_media_ends_the_call_with_bye_to_both_handsets(stack: Stack) -> None:
    sidecar = await stack.sidecar("calls-one")
    bob_port = await two_users(stack, sidecar)
    await stack.set_media_timeout(5)
    alice_media, bob_media = await stack.far_end(), await stack.far_end()
    uas = await callee(stack, sidecar, "uas_pcmu_at.xml", f"bob;{bob_media.addr[1]}", bob_port)
    uac = await caller(
        stack, sidecar, "uac_pcma_until_bye.xml", f"alice;alice-secret;bob;{alice_media.addr[1]}"
    )
    call = await stack.live_call()

    async def bridged() -> MediaLeg | None:
        return relay_leg_towards(sidecar, bob_media)

    bob_leg = await eventually(bridged, "bob's relay leg to be bridged")
    # A short burst, then both handsets fall silent.
    bob_media.send_rtp(("127.0.0.1", bob_leg.local_port), 0, [b"\xff" * 160] * 10)
    await alice_media.wait_for(8, 10)

    await uac.finished(20)
    await uas.finished(20)

    ended = await stack.wait_call_state(call.name, calls_pb2.CALL_STATE_ENDED)
    assert ended.end_reason.endswith("media timeout")
    assert sidecar.calls is not None and sidecar.calls.active_legs == 0


# --- presence codes ---------------------------------------------------------------------------


async def test_dialling_star_30_plays_a_tone_hangs_up_and_sets_dnd(stack: Stack) -> None:
    sidecar = await stack.sidecar("calls-one")
    await stack.create_user("alice", "alice-secret")
    await register(stack, sidecar, "alice", "alice-secret")
    await stack.wait_availability("alice", AVAILABLE)
    alice_media = await stack.far_end()

    uac = await caller(
        stack, sidecar, "uac_pcma_until_bye.xml", f"alice;alice-secret;*30;{alice_media.addr[1]}"
    )
    await alice_media.wait_for(8, 50)
    await uac.finished()

    tone = alice_media.of_type(8)
    assert len(tone) == 50  # one second of 20 ms frames, in the law the handset offered
    assert {len(packet) for packet in tone} == {12 + 160}
    assert len({source for _data, source in alice_media.packets}) == 1
    assert await stack.availability("alice") == DND


async def test_an_unknown_star_code_is_404(stack: Stack) -> None:
    sidecar = await stack.sidecar("calls-one")
    await stack.create_user("alice", "alice-secret")

    uac = await caller(stack, sidecar, "uac_rejected_404.xml", "alice;alice-secret;*99")

    await uac.finished()


# --- two sidecars -----------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_call_between_two_sidecars_carries_audio_relay_to_relay(stack: Stack) -> None:
    here = await stack.sidecar("vlan-a", host="127.0.0.2")
    there = await stack.sidecar("vlan-b", host="127.0.0.3")
    await stack.create_user("alice", "alice-secret")
    await stack.create_user("bob", "bob-secret")
    await register(stack, here, "alice", "alice-secret", host="127.0.0.2")
    bob_port = await register(stack, there, "bob", "bob-secret", host="127.0.0.3")
    bob_media = await stack.far_end("127.0.0.3")
    uas = await callee(
        stack, there, "uas_pcmu_at.xml", f"bob;{bob_media.addr[1]}", bob_port, host="127.0.0.3"
    )
    uac = await caller(
        stack, here, "uac_pcma_audio.xml", "alice;alice-secret;bob", host="127.0.0.2"
    )

    call = await stack.live_call()
    await stack.wait_availability("alice", IN_A_CALL)
    await stack.wait_availability("bob", IN_A_CALL)
    connected = await stack.wait_call_state(call.name, calls_pb2.CALL_STATE_CONNECTED)
    assert [leg.sidecar for leg in connected.legs] == ["vlan-a", "vlan-b"]
    await uac.finished()
    await uas.finished(10)

    sent = [payload for pt, payload in pcap_rtp_payloads(MEDIA / "g711a.pcap") if pt == 8]
    received = bob_media.of_type(0)
    assert [packet[12:] for packet in received] == [
        g711.encode_ulaw(g711.decode_alaw(payload)) for payload in sent
    ]
    # Bob's audio came from his own sidecar's relay, which got it from the other relay.
    assert {source[0] for _data, source in bob_media.packets} == {"127.0.0.3"}
    await stack.wait_availability("alice", AVAILABLE)
    await stack.wait_availability("bob", AVAILABLE)


@pytest.mark.slow
async def test_a_fork_on_another_sidecar_answering_after_a_local_fork_rang_carries_audio_both_ways(
    stack: Stack,
) -> None:
    """bob has a handset beside alice's (it rings) and one on another sidecar (it answers)."""
    here = await stack.sidecar("vlan-a", host="127.0.0.2")
    there = await stack.sidecar("vlan-b", host="127.0.0.3")
    await stack.create_user("alice", "alice-secret")
    await stack.create_user("bob", "bob-secret")
    await register(stack, here, "alice", "alice-secret", host="127.0.0.2")
    bob_desk = await register(stack, here, "bob", "bob-secret", host="127.0.0.2")
    bob_dect = await register(stack, there, "bob", "bob-secret", host="127.0.0.3")
    alice_media = await stack.far_end("127.0.0.2")
    bob_media = await stack.far_end("127.0.0.3")
    desk = await sipp(
        stack,
        here,
        CALLS / "uas_ring_until_cancel.xml",
        ["bob"],
        port=bob_desk,
        host="127.0.0.2",
        label="uas-desk",
    )
    dect = await callee(
        stack, there, "uas_pcmu_at.xml", f"bob;{bob_media.addr[1]}", bob_dect, host="127.0.0.3"
    )
    uac = await caller(
        stack,
        here,
        "uac_pcma_until_bye.xml",
        f"alice;alice-secret;bob;{alice_media.addr[1]}",
        host="127.0.0.2",
    )

    call = await stack.live_call()
    connected = await stack.wait_call_state(call.name, calls_pb2.CALL_STATE_CONNECTED)
    await desk.finished(10)  # its fork was cancelled: the answer came from the other sidecar
    assert {leg.sidecar for leg in connected.legs} == {"vlan-a", "vlan-b"}
    alice_leg = await eventually(
        lambda: asyncio.sleep(0, relay_leg_towards(here, alice_media)), "alice's relay leg"
    )
    bob_leg = await eventually(
        lambda: asyncio.sleep(0, relay_leg_towards(there, bob_media)), "bob's relay leg"
    )
    speech = [
        g711.encode_ulaw([(n * 37 + k * 211) % 16000 - 8000 for k in range(160)]) for n in range(50)
    ]
    bob_media.send_rtp(("127.0.0.3", bob_leg.local_port), 0, speech)
    alice_media.send_rtp(
        ("127.0.0.2", alice_leg.local_port),
        8,
        [g711.encode_alaw(g711.decode_ulaw(f)) for f in speech],
    )

    heard_by_alice = await alice_media.wait_for(8, 50)
    heard_by_bob = await bob_media.wait_for(0, 50)
    assert [p[12:] for p in heard_by_alice] == [
        g711.encode_alaw(g711.decode_ulaw(frame)) for frame in speech
    ]
    assert len(heard_by_bob) == 50
    await stack.calls.EndCall(calls_pb2.EndCallRequest(name=call.name), metadata=stack.metadata)
    await uac.finished(10)
    await dect.finished(10)
