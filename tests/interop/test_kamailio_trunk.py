"""Trunks to a UC platform whose SIP side is a real Kamailio.

Everything real: Kamailio 5.6 as the platform's registrar and stateful proxy (digest for its
own users from db_text, calls for sip2uc's numbers sent to the contact sip2uc's gateway account
registered), the platform's users as SIPp processes and baresip, the handsets as SIPp processes,
and a control plane and a sidecar in-process. Media is checked at test sockets named in the SIPp parties' SDP
(`FarEnd`): the handsets offer PCMA, the platform's users answer PCMU, so the relay transcodes.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from google.protobuf import field_mask_pb2
from sip2uc.v1 import (
    calls_pb2,
    common_pb2,
    sidecar_pb2,
    trunks_pb2,
    trunks_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)
from sip2uc_media.rtp import g711
from sip2uc_media.rtp.relay import MediaLeg
from sip2uc_media.sidecar import Sidecar, Transport
from test_sipp_calls import (
    AVAILABLE,
    CALLS,
    DOMAIN,
    IN_A_CALL,
    SCENARIOS,
    FarEnd,
    Handset,
    Stack,
    callee,
    caller,
    ended_digits,
    eventually,
    free_port,
    register,
    relay_leg_towards,
    sipp,
)
from test_sipp_calls import stack as stack  # the fixture, shared

HERE = Path(__file__).parent


def _load(name: str, path: Path) -> ModuleType:
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


platform_fixture: Any = _load("sip2uc_kamailio_uc_platform", HERE / "kamailio" / "uc_platform.py")

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.skipif(
        platform_fixture.missing() is not None, reason=str(platform_fixture.missing())
    ),
]

CAROL = "494012345678"  # a user of the platform, by the number the platform knows her by
CAROL_PASSWORD = "carol-uc-pw"
ALICE_E164 = "+498912345601"
BOB_E164 = "+498912345602"
SIDECAR = "edge"


@dataclass
class Talk:
    """A call from alice's handset to carol at the platform, and the parties' ends."""

    call: calls_pb2.Call
    alice_media: FarEnd
    carol_media: FarEnd
    uac: Handset
    uas: Handset


class Trunked:
    """The stack (control plane, sidecar) beside a UC platform (Kamailio) and trunks to it."""

    def __init__(self, stack: Stack, sidecar: Sidecar, platform: Any) -> None:
        self.stack = stack
        self.sidecar = sidecar
        self.platform = platform
        self.trunks = trunks_pb2_grpc.TrunkServiceStub(stack.channel)
        self.users = users_pb2_grpc.UserServiceStub(stack.channel)

    @property
    def platform_address(self) -> tuple[str, int]:
        return ("127.0.0.1", int(self.platform.udp_port))

    async def add_trunk(self, trunk_id: str, port: int, **fields: Any) -> trunks_pb2.Trunk:
        trunk = trunks_pb2.Trunk(
            address="127.0.0.1",
            port=port,
            sidecar=SIDECAR,
            number_format=trunks_pb2.NUMBER_FORMAT_E164_DIGITS,
            options_interval_seconds=5,
            **fields,
        )
        response = await self.trunks.CreateTrunk(
            trunks_pb2.CreateTrunkRequest(trunk_id=trunk_id, trunk=trunk),
            metadata=self.stack.metadata,
        )
        return response.trunk

    async def gateway_trunk(self) -> None:
        """The trunk that registers to the platform with the gateway account's digest."""
        await self.add_trunk(
            "uc",
            self.platform.udp_port,
            username=platform_fixture.GATEWAY_USER,
            password=platform_fixture.GATEWAY_PASSWORD,
            register=True,
        )
        await self.wait_trunk("uc", "registered")

    async def trunk_state(self, trunk_id: str) -> trunks_pb2.Trunk:
        response = await self.trunks.GetTrunk(
            trunks_pb2.GetTrunkRequest(name=trunk_id), metadata=self.stack.metadata
        )
        return response.trunk

    async def wait_trunk(self, trunk_id: str, word: str, timeout: float = 15.0) -> None:
        """Wait for `sip2uc trunk list`'s word for the trunk (up/down/registered)."""
        from sip2uc.cli.trunks import state_word

        async def probe() -> bool | None:
            return True if state_word(await self.trunk_state(trunk_id)) == word else None

        await eventually(probe, f"trunk {trunk_id} {word}", timeout)

    async def handset_user(self, alias: str, e164: str) -> None:
        await self.users.CreateUser(
            users_pb2.CreateUserRequest(
                user=users_pb2.User(
                    sip_uri=f"sip:{alias}@{DOMAIN}",
                    e164=e164,
                    display_name=alias.title(),
                    devices=[
                        users_pb2.Device(
                            registering=users_pb2.RegisteringDevice(
                                digest_username=alias, password=f"{alias}-secret"
                            )
                        )
                    ],
                )
            ),
            metadata=self.stack.metadata,
        )

    async def alice_calls_carol(self) -> Talk:
        """Alice (a handset of sip2uc, A-law) dials carol's number; carol (SIPp registered at
        the platform, mu-law) answers. Returns once the call exists."""
        stack = self.stack
        await self.handset_user("alice", ALICE_E164)
        await register(stack, self.sidecar, "alice", "alice-secret")
        carol_port = await self.carol_registered()
        alice_media, carol_media = await stack.far_end(), await stack.far_end()
        uas = await callee(
            stack, self.sidecar, "uas_pcmu_at.xml", f"{CAROL};{carol_media.addr[1]}", carol_port
        )
        uac = await caller(
            stack,
            self.sidecar,
            "uac_pcma_until_bye.xml",
            f"alice;alice-secret;+{CAROL};{alice_media.addr[1]}",
        )
        return Talk(await stack.live_call(), alice_media, carol_media, uac, uas)

    async def carol_registered(self) -> int:
        """Carol registers at the platform from a fresh port; she answers calls there."""
        port = free_port()
        run = await sipp(
            self.stack,
            self.sidecar,
            SCENARIOS / "register_auth.xml",
            [f"{CAROL};{CAROL_PASSWORD};300"],
            port=port,
            label="carol-register",
            target=self.platform_address,
        )
        await run.finished(30)
        return port


async def start_trunked(stack: Stack, tmp_path: Path, *, tls: bool) -> Trunked:
    sidecar = await stack.sidecar(SIDECAR)
    platform = platform_fixture.UcPlatform(
        tmp_path / "kamailio",
        gateway_port=sidecar.listen_addresses[Transport.UDP][1],
        users={CAROL: CAROL_PASSWORD},
        tls=tls,
    )
    platform.start()
    return Trunked(stack, sidecar, platform)


@pytest.fixture
async def trunked(stack: Stack, tmp_path: Path) -> AsyncIterator[Trunked]:
    started = await start_trunked(stack, tmp_path, tls=False)
    try:
        yield started
    finally:
        started.platform.stop()


@pytest.fixture
async def tls_trunked(stack: Stack, tmp_path: Path) -> AsyncIterator[Trunked]:
    if platform_fixture.missing_tls() is not None:
        pytest.skip(str(platform_fixture.missing_tls()))
    started = await start_trunked(stack, tmp_path, tls=True)
    try:
        yield started
    finally:
        started.platform.stop()


def bridged(sidecar: Sidecar, far: FarEnd) -> Any:
    async def probe() -> MediaLeg | None:
        return relay_leg_towards(sidecar, far)

    return eventually(probe, "the relay leg towards a party to be bridged")


async def audio_both_ways(
    trunked: Trunked, handset: FarEnd, handset_pt: int, uc: FarEnd, uc_pt: int
) -> None:
    """Speech from each side reaches the other in the other's law, sample for sample."""
    sidecar = trunked.sidecar
    handset_leg = await bridged(sidecar, handset)
    uc_leg = await bridged(sidecar, uc)
    speech = [[(n * 37 + k * 211) % 16000 - 8000 for k in range(160)] for n in range(40)]
    encode = {0: g711.encode_ulaw, 8: g711.encode_alaw}
    decode = {0: g711.decode_ulaw, 8: g711.decode_alaw}

    uc.send_rtp(("127.0.0.1", uc_leg.local_port), uc_pt, [encode[uc_pt](s) for s in speech])
    heard = await handset.wait_for(handset_pt, 40)
    assert [p[12:] for p in heard] == [
        encode[handset_pt](decode[uc_pt](encode[uc_pt](s))) for s in speech
    ]
    handset.send_rtp(
        ("127.0.0.1", handset_leg.local_port), handset_pt, [encode[handset_pt](s) for s in speech]
    )
    heard = await uc.wait_for(uc_pt, 40)
    assert [p[12:] for p in heard] == [
        encode[uc_pt](decode[handset_pt](encode[handset_pt](s))) for s in speech
    ]


async def test_a_handset_calls_a_uc_user_through_the_platform_with_audio_and_dtmf(
    trunked: Trunked,
) -> None:
    stack = trunked.stack
    await trunked.add_trunk("uc", trunked.platform.udp_port)
    await trunked.wait_trunk("uc", "up")
    talk = await trunked.alice_calls_carol()
    await stack.wait_call_state(talk.call.name, calls_pb2.CALL_STATE_CONNECTED)

    await audio_both_ways(trunked, talk.alice_media, 8, talk.carol_media, 0)
    await stack.calls.SendDtmf(
        calls_pb2.SendDtmfRequest(name=talk.call.name, digits="42"), metadata=stack.metadata
    )
    await stack.calls.SendDtmf(
        calls_pb2.SendDtmfRequest(name=talk.call.name, digits="7", towards=f"sip:alice@{DOMAIN}"),
        metadata=stack.metadata,
    )
    await eventually(lambda: ended_digits(talk.carol_media, "42"), "carol to hear 4 and 2")
    await eventually(lambda: ended_digits(talk.alice_media, "7"), "alice to hear 7")

    await stack.calls.EndCall(
        calls_pb2.EndCallRequest(name=talk.call.name), metadata=stack.metadata
    )
    await talk.uac.finished(10)
    await talk.uas.finished(10)
    # The platform's user saw the caller as alice's number, written the trunk's way.
    seen = (stack.tmp / "uas.messages.log").read_text(errors="replace")
    assert f'From: "Alice" <sip:{ALICE_E164[1:]}@{DOMAIN}>' in seen


async def test_a_uc_user_calls_a_handset_registered_trunk_and_presence_in_the_call(
    trunked: Trunked,
) -> None:
    stack = trunked.stack
    await trunked.gateway_trunk()
    await trunked.handset_user("bob", BOB_E164)
    bob_port = await register(stack, trunked.sidecar, "bob", "bob-secret")
    bob_media, carol_media = await stack.far_end(), await stack.far_end()
    uas = await callee(
        stack, trunked.sidecar, "uas_pcmu_at.xml", f"bob;{bob_media.addr[1]}", bob_port
    )
    uac = await sipp(
        stack,
        trunked.sidecar,
        SCENARIOS / "trunk" / "uc_uac_pcma_until_bye.xml",
        [f"{CAROL};{CAROL_PASSWORD};{BOB_E164[1:]};{carol_media.addr[1]}"],
        port=free_port(),
        label="carol-calls",
        target=trunked.platform_address,
    )
    call = await stack.live_call()
    await stack.wait_call_state(call.name, calls_pb2.CALL_STATE_CONNECTED)
    await stack.wait_availability("bob", IN_A_CALL)

    await audio_both_ways(trunked, bob_media, 0, carol_media, 8)

    await stack.calls.EndCall(calls_pb2.EndCallRequest(name=call.name), metadata=stack.metadata)
    await uac.finished(10)
    await uas.finished(10)
    await stack.wait_availability("bob", AVAILABLE)
    ended = await stack.wait_call_state(call.name, calls_pb2.CALL_STATE_ENDED)
    assert ended.caller.startswith(f"sip:{CAROL}@")


async def test_a_number_that_is_nobodys_from_the_platform_is_404(trunked: Trunked) -> None:
    stack = trunked.stack
    await trunked.gateway_trunk()
    uac = await sipp(
        stack,
        trunked.sidecar,
        CALLS / "uac_rejected_404.xml",
        [f"{CAROL};{CAROL_PASSWORD};498912345699"],
        port=free_port(),
        label="carol-calls-nobody",
        target=trunked.platform_address,
    )
    await uac.finished(20)


async def test_options_see_the_platform_go_down_and_come_back(trunked: Trunked) -> None:
    await trunked.add_trunk("uc", trunked.platform.udp_port)
    await trunked.wait_trunk("uc", "up")

    gauge_up = trunked.stack.control.core.trunk_states()
    trunked.platform.stop()
    await trunked.wait_trunk("uc", "down", timeout=20)
    down = await trunked.trunk_state("uc")
    gauge_down = trunked.stack.control.core.trunk_states()
    trunked.platform.start()
    await trunked.wait_trunk("uc", "up", timeout=20)

    assert down.status.last_error == "no response to OPTIONS"
    # What the sip2uc_trunk_up / sip2uc_trunk_registered gauges report.
    assert (gauge_up, gauge_down) == ([("uc", True, False)], [("uc", False, False)])


async def test_a_503_from_the_first_trunk_fails_over_to_the_second(trunked: Trunked) -> None:
    stack = trunked.stack
    await trunked.add_trunk("node-a", trunked.platform.failing_port, priority=1)
    await trunked.add_trunk("node-b", trunked.platform.udp_port, priority=2)
    await trunked.wait_trunk("node-a", "up")
    await trunked.wait_trunk("node-b", "up")
    talk = await trunked.alice_calls_carol()
    connected = await stack.wait_call_state(talk.call.name, calls_pb2.CALL_STATE_CONNECTED)

    # One leg to each node: the first refused (503), the second answered.
    trunk_legs = [leg.state for leg in connected.legs if leg.party.startswith("tel:")]
    assert trunk_legs == [sidecar_pb2.LEG_STATE_FAILED, sidecar_pb2.LEG_STATE_ANSWERED]
    await stack.calls.EndCall(
        calls_pb2.EndCallRequest(name=talk.call.name), metadata=stack.metadata
    )
    await talk.uac.finished(10)
    await talk.uas.finished(10)


async def test_trunk_list_and_delete_through_the_api(trunked: Trunked) -> None:
    await trunked.add_trunk("uc", trunked.platform.udp_port)
    await trunked.wait_trunk("uc", "up")
    stack = trunked.stack

    await trunked.trunks.UpdateTrunk(
        trunks_pb2.UpdateTrunkRequest(
            trunk=trunks_pb2.Trunk(name="trunks/uc", disabled=True),
            update_mask=field_mask_pb2.FieldMask(paths=["disabled"]),
        ),
        metadata=stack.metadata,
    )
    await trunked.wait_trunk("uc", "disabled")
    await trunked.trunks.DeleteTrunk(
        trunks_pb2.DeleteTrunkRequest(name="uc"), metadata=stack.metadata
    )
    listed = await trunked.trunks.ListTrunks(
        trunks_pb2.ListTrunksRequest(), metadata=stack.metadata
    )
    assert list(listed.trunks) == []


# --- TLS ----------------------------------------------------------------------------------------


async def test_a_tls_trunk_verifies_the_platforms_certificate_registers_and_carries_a_call(
    tls_trunked: Trunked,
) -> None:
    trunked = tls_trunked
    stack = trunked.stack
    await trunked.add_trunk(
        "uc",
        trunked.platform.tls_port,
        transport=common_pb2.TRANSPORT_TLS,
        tls_ca_pem=trunked.platform.ca_pem,
        username=platform_fixture.GATEWAY_USER,
        password=platform_fixture.GATEWAY_PASSWORD,
        register=True,
    )
    await trunked.wait_trunk("uc", "registered")
    talk = await trunked.alice_calls_carol()
    await stack.wait_call_state(talk.call.name, calls_pb2.CALL_STATE_CONNECTED)
    await audio_both_ways(trunked, talk.alice_media, 8, talk.carol_media, 0)

    await stack.calls.EndCall(
        calls_pb2.EndCallRequest(name=talk.call.name), metadata=stack.metadata
    )
    await talk.uac.finished(10)
    await talk.uas.finished(10)
    assert trunked.sidecar.dialer is not None and trunked.sidecar.dialer.failures == {}


async def test_a_certificate_the_trunks_ca_did_not_sign_is_refused(
    tls_trunked: Trunked, tmp_path: Path
) -> None:
    from sip2uc_media.transport.tls import ensure_self_signed

    other_ca, _key = ensure_self_signed(tmp_path / "other-ca", ["127.0.0.1", "localhost"])
    await trunked_add_tls(tls_trunked, "uc", other_ca.read_text())

    async def refused() -> trunks_pb2.Trunk | None:
        trunk = await tls_trunked.trunk_state("uc")
        return trunk if trunk.status.last_error else None

    down = await eventually(refused, "the trunk to say why it is down", 15)

    assert down.status.state == trunks_pb2.TRUNK_STATE_DOWN
    assert down.status.last_error.startswith("tls connection failed: certificate refused")
    assert tls_trunked.sidecar.dialer is not None
    assert tls_trunked.sidecar.dialer.failures.get("tls", 0) >= 1


async def trunked_add_tls(trunked: Trunked, trunk_id: str, ca_pem: str) -> None:
    await trunked.add_trunk(
        trunk_id,
        trunked.platform.tls_port,
        transport=common_pb2.TRANSPORT_TLS,
        tls_ca_pem=ca_pem,
    )


# --- baresip as the platform's user ---------------------------------------------------------------

BARESIP = shutil.which("baresip") or "/usr/bin/baresip"
BARESIP_MODULES = Path("/usr/lib/baresip/modules")
DAVE = "494012345679"
DAVE_PASSWORD = "dave-uc-pw"


async def start_baresip(trunked: Trunked, work: Path) -> asyncio.subprocess.Process:
    """Dave: baresip registered at the platform, answering by itself, speaking PCMU only, and
    playing what it hears back into its microphone (aubridge): an echo across the trunk."""
    work.mkdir()
    port = free_port()
    (work / "config").write_text(
        f"sip_listen\t\t127.0.0.1:{port}\n"
        f"module_path\t\t{BARESIP_MODULES}\n"
        "module\t\t\tg711.so\nmodule\t\t\taubridge.so\nmodule\t\t\taccount.so\n"
        "module_app\t\tmenu.so\n"
        "audio_player\t\taubridge,echo\naudio_source\t\taubridge,echo\n"
        "audio_alert\t\taubridge,alert\n"
        "rtp_ports\t\t40000-40999\n"
    )
    host, kport = trunked.platform_address
    (work / "accounts").write_text(
        f"<sip:{DAVE}@{host}:{kport};transport=udp>;auth_pass={DAVE_PASSWORD};"
        "answermode=auto;regint=300;audio_codecs=PCMU\n"
    )
    (work / "contacts").write_text("")
    log = (work / "baresip.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        BARESIP, "-f", str(work), "-t", "60",
        stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    trunked.stack.processes.append(process)

    async def registered() -> bool | None:
        text = (work / "baresip.log").read_text(errors="replace")
        if process.returncode is not None:
            raise AssertionError(f"baresip exited {process.returncode}:\n{text[-2000:]}")
        return True if "200 OK" in text else None

    await eventually(registered, "baresip to register at the platform", 10)
    return process


@pytest.mark.skipif(
    not (Path(BARESIP).exists() and (BARESIP_MODULES / "aubridge.so").exists()),
    reason="baresip with its aubridge module is not installed (Debian baresip)",
)
async def test_a_handset_talks_to_baresip_behind_the_platform_and_hears_it(
    trunked: Trunked, tmp_path: Path
) -> None:
    trunked.platform.stop()
    trunked.platform.users[DAVE] = DAVE_PASSWORD
    trunked.platform.start()
    stack = trunked.stack
    await trunked.add_trunk("uc", trunked.platform.udp_port)
    await trunked.wait_trunk("uc", "up")
    await trunked.handset_user("alice", ALICE_E164)
    await register(stack, trunked.sidecar, "alice", "alice-secret")
    dave = await start_baresip(trunked, tmp_path / "baresip")
    alice_media = await stack.far_end()
    uac = await caller(
        stack,
        trunked.sidecar,
        "uac_pcma_until_bye.xml",
        f"alice;alice-secret;+{DAVE};{alice_media.addr[1]}",
    )
    call = await stack.live_call()
    connected = await stack.wait_call_state(call.name, calls_pb2.CALL_STATE_CONNECTED)
    alice_leg = await bridged(trunked.sidecar, alice_media)

    # Alice speaks (A-law); baresip decodes it from mu-law, plays it into its own microphone,
    # and sends it back: what alice hears is her speech, back across the trunk twice.
    tone = [int(6000 * math.sin(2 * math.pi * 440 * n / 8000)) for n in range(160 * 100)]
    frames = [g711.encode_alaw(tone[i : i + 160]) for i in range(0, len(tone), 160)]
    for chunk in range(0, len(frames), 5):
        alice_media.send_rtp(
            ("127.0.0.1", alice_leg.local_port), 8, frames[chunk : chunk + 5], start=chunk
        )
        await asyncio.sleep(0.1)

    async def echoed() -> list[bytes] | None:
        loud = [
            p
            for p in alice_media.of_type(8)
            if max(abs(s) for s in g711.decode_alaw(p[12:])) > 2000
        ]
        return loud if len(loud) >= 25 else None

    await eventually(echoed, "alice to hear her tone back from baresip", 10)
    codecs = {leg.codec for leg in connected.legs}
    assert codecs == {"PCMA", "PCMU"}  # the handset's law one side, baresip's the other
    await stack.calls.EndCall(calls_pb2.EndCallRequest(name=call.name), metadata=stack.metadata)
    await uac.finished(10)
    dave.terminate()
    await dave.wait()
