"""Handsets logging in to a default `sip2uc up` started as its own process, as a new user would
run it: no digest flag, the CLI for users and bans.

- Debian's SIPp (MD5 only, reads only the first challenge) registers and places a call, and
  baresip registers.
- A scripted client that reads only the first WWW-Authenticate registers; a device set to
  SHA-256 is challenged with SHA-256 alone and an MD5 answer from it is refused; an unknown
  user gets the default challenge in exactly the same shape.
- Bans punish only the guilty: a handset with a wrong password does not lock out the good
  handsets behind the same address, sipvicious' password guesser (svcrack, loopback only) is
  banned, answers to a made-up nonce ban nobody, and guessing one account from six addresses
  hits the per-account limit while its registered handset keeps refreshing.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import pytest
from sip2uc.cli.main import app
from sip2uc_core.sip.digest import (
    Algorithm,
    Challenge,
    build_credentials,
    compute_ha1,
    parse_challenge,
)
from sip2uc_core.sip.message import SipResponse, parse_message
from typer.testing import CliRunner, Result

SIPP = shutil.which("sipp") or "/usr/bin/sipp"
BARESIP = shutil.which("baresip")
SVCRACK = Path(sys.executable).with_name("sipvicious_svcrack")
SCENARIOS = Path(__file__).parent / "sipp"
READY = re.compile(r"sip2uc up: admin API (\S+), SIP UDP (\S+):(\d+),")
REALM = "sip2uc"  # the default realm
SITE = "127.0.0.10"  # one address for several handsets (a DECT base, an adapter, a NAT)

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        not os.path.exists(SIPP), reason="SIPp (Debian sip-tester) is not installed"
    ),
]


# --- a default `sip2uc up` --------------------------------------------------------------------


@dataclass
class Up:
    process: subprocess.Popen[str]
    control: str
    sip_host: str
    sip_port: int
    data_dir: Path
    tmp: Path
    log: list[str]

    @property
    def env(self) -> dict[str, str | None]:
        return {
            "SIP2UC_CONTROL": self.control,
            "SIP2UC_DATA_DIR": str(self.data_dir),
            "SIP2UC_TOKEN": None,
        }


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    tmp = tmp_path_factory.mktemp("logins")
    base = 42000 + (os.getpid() % 40) * 200  # relay ports of its own, away from other runs
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sip2uc.cli",
            "up",
            "--data-dir",
            str(tmp / "var"),
            "--grpc-listen",
            "127.0.0.1:0",
            "--sip-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
            "--rtp-ports",
            f"{base}-{base + 199}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    log: list[str] = []

    def drain() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    try:
        while True:
            line = lines.get(timeout=30)
            if line is None:
                pytest.fail(f"sip2uc up exited with {process.wait()}:\n" + "".join(log))
            match = READY.search(line)
            if match:
                break
        yield Up(
            process,
            match.group(1),
            match.group(2),
            int(match.group(3)),
            tmp / "var",
            tmp,
            log,
        )
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def sip2uc(up: Up, *args: str) -> Result:
    result = CliRunner().invoke(app, list(args), env=up.env)
    assert result.exit_code == 0, result.output
    return result


def add_user(up: Up, ext: str, password: str, *extra: str) -> None:
    sip2uc(up, "user", "add", ext, "--name", f"User {ext}", "--password", password, *extra)


def bans(up: Up) -> list[tuple[str, str, str]]:
    listed = json.loads(sip2uc(up, "--json", "bans", "list").stdout)
    return [
        (ban["kind"], ban.get("source", ""), ban.get("user", "")) for ban in listed.get("bans", [])
    ]


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


# --- SIPp ---------------------------------------------------------------------------------------


async def sipp(
    up: Up,
    scenario: Path,
    rows: list[str],
    *,
    label: str,
    port: int | None = None,
    timeout: int = 20,
    host: str = "127.0.0.1",
    extra: tuple[str, ...] = (),
) -> asyncio.subprocess.Process:
    users = up.tmp / f"{label}.csv"
    users.write_text("SEQUENTIAL\n" + "".join(f"{row}\n" for row in rows))
    return await asyncio.create_subprocess_exec(
        SIPP,
        f"{up.sip_host}:{up.sip_port}",
        "-sf",
        str(scenario),
        "-inf",
        str(users),
        "-i",
        host,
        "-mi",
        host,
        "-p",
        str(port or free_port(host)),
        "-mp",
        str(free_port(host) & ~1),
        "-m",
        str(len(rows)),
        "-timeout",
        f"{timeout}s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-error_file",
        str(up.tmp / f"{label}.errors.log"),
        *extra,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=up.tmp,
    )


async def sipp_status(
    up: Up,
    scenario: Path,
    rows: list[str],
    *,
    label: str,
    port: int | None = None,
    timeout: int = 20,
    host: str = "127.0.0.1",
) -> int:
    process = await sipp(up, scenario, rows, label=label, port=port, timeout=timeout, host=host)
    return await asyncio.wait_for(process.wait(), timeout + 20)


# --- a client that reads only the first challenge --------------------------------------------


class FirstChallengeHandset(asyncio.DatagramProtocol):
    """A handset that reads only the first WWW-Authenticate of a 401, as many cheap ones do.
    It can answer with another algorithm than the one asked for (a confused handset), or make
    up a nonce (a spoofer that never saw a challenge)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.responses: asyncio.Queue[SipResponse] = asyncio.Queue()
        self._cseq = 0

    @classmethod
    async def open(cls, host: str = "127.0.0.1") -> FirstChallengeHandset:
        loop = asyncio.get_running_loop()
        _transport, handset = await loop.create_datagram_endpoint(cls, local_addr=(host, 0))
        return handset

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = parse_message(data)
        if isinstance(message, SipResponse):
            self.responses.put_nowait(message)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    async def request(self, up: Up, user: str, authorization: str | None = None) -> SipResponse:
        self._cseq += 1
        host, port = self.address
        lines = [
            f"REGISTER sip:{up.sip_host}:{up.sip_port} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{os.urandom(6).hex()};rport",
            f"From: <sip:{user}@{up.sip_host}>;tag={user}-tag",
            f"To: <sip:{user}@{up.sip_host}>",
            f"Call-ID: {user}-{port}@{host}",
            f"CSeq: {self._cseq} REGISTER",
            f"Contact: <sip:{user}@{host}:{port}>",
            "Expires: 300",
            "Max-Forwards: 70",
        ]
        if authorization is not None:
            lines.append(f"Authorization: {authorization}")
        data = "\r\n".join([*lines, "Content-Length: 0", "", ""]).encode()
        assert self.transport is not None
        self.transport.sendto(data, (up.sip_host, up.sip_port))
        return await asyncio.wait_for(self.responses.get(), 5)

    async def challenge(self, up: Up, user: str) -> tuple[SipResponse, Challenge]:
        response = await self.request(up, user)
        assert response.status == 401, response.status
        value = response.headers.get("WWW-Authenticate")  # the first, and only the first
        assert value is not None
        return response, parse_challenge(value)

    async def register(
        self, up: Up, user: str, password: str, *, algorithm: Algorithm | None = None
    ) -> SipResponse:
        _response, challenge = await self.challenge(up, user)
        if algorithm is not None:
            challenge = replace(challenge, algorithm=algorithm)
        credentials = build_credentials(
            challenge,
            username=user,
            ha1=compute_ha1(challenge.algorithm, user, challenge.realm, password),
            method="REGISTER",
            uri=f"sip:{up.sip_host}:{up.sip_port}",
            cnonce=os.urandom(4).hex(),
        )
        return await self.request(up, user, credentials.serialize())


async def handset(host: str = "127.0.0.1") -> FirstChallengeHandset:
    return await FirstChallengeHandset.open(host)


async def learned(
    client: FirstChallengeHandset, up: Up, user: str, algorithms: list[Algorithm]
) -> SipResponse:
    """The challenge once it offers `algorithms`: the sidecar learns a device's algorithms from
    the control plane's settings push, which may still be on its way when the CLI returns."""
    for _ in range(100):
        first, _challenge = await client.challenge(up, user)
        offered = [parse_challenge(v).algorithm for v in first.headers.get_all("WWW-Authenticate")]
        if offered == algorithms:
            break
        await asyncio.sleep(0.05)
    return first


def masked(response: SipResponse) -> list[str]:
    """The challenge values with the nonce taken out: what must be the same for everybody."""
    values = response.headers.get_all("WWW-Authenticate")
    return [v.replace(parse_challenge(v).nonce, "NONCE") for v in values]


# --- digest defaults ----------------------------------------------------------------------------


async def test_stock_sipp_registers_and_calls_with_the_default_challenge(up: Up) -> None:
    add_user(up, "2001", "alice-pw-2001")
    add_user(up, "2002", "bob-pw-2002")
    bob_port = free_port()
    assert (
        await sipp_status(
            up,
            SCENARIOS / "register_auth.xml",
            ["2002;bob-pw-2002;300"],
            label="reg-bob",
            port=bob_port,
        )
        == 0
    )
    assert (
        await sipp_status(
            up, SCENARIOS / "register_auth.xml", ["2001;alice-pw-2001;300"], label="reg-alice"
        )
        == 0
    )
    uas = await sipp(up, SCENARIOS / "calls" / "uas_pcmu.xml", ["2002"], label="uas", port=bob_port)
    for _ in range(200):
        if udp_port_taken("127.0.0.1", bob_port):
            break
        await asyncio.sleep(0.05)

    caller = await sipp_status(
        up, SCENARIOS / "calls" / "uac_pcma.xml", ["2001;alice-pw-2001;2002"], label="uac"
    )

    assert caller == 0, (up.tmp / "uac.errors.log").read_text(errors="replace")[-2000:]
    assert await asyncio.wait_for(uas.wait(), 20) == 0


@pytest.mark.skipif(BARESIP is None, reason="baresip (Debian baresip-core) is not installed")
async def test_baresip_registers_with_the_default_challenge(up: Up) -> None:
    add_user(up, "2051", "bare-pw-2051")
    config = up.tmp / "baresip"
    config.mkdir()
    (config / "config").write_text(
        "module_path /usr/lib/baresip/modules\n"
        "sip_listen 127.0.0.1:0\n"
        "module g711.so\n"
        "module account.so\n"
        "audio_player aufile,/dev/null\n"
        "audio_source aufile,/dev/null\n"
    )
    (config / "accounts").write_text(
        f"<sip:2051@{up.sip_host}:{up.sip_port}>;auth_pass=bare-pw-2051;regint=300\n"
    )
    assert BARESIP is not None
    process = await asyncio.create_subprocess_exec(
        BARESIP,
        "-f",
        str(config),
        "-t",
        "3",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)

    assert b"2051@127.0.0.1: {0/UDP/v4} 200 OK () [1 binding]" in output, output.decode(
        errors="replace"
    )


async def test_a_client_reading_only_the_first_challenge_gets_md5_and_registers(up: Up) -> None:
    add_user(up, "2101", "pw-2101")
    client = await handset()
    try:
        first, challenge = await client.challenge(up, "2101")
        response = await client.register(up, "2101", "pw-2101")
    finally:
        client.close()

    assert first.headers.get_all("WWW-Authenticate") == [first.headers.get("WWW-Authenticate")]
    assert challenge.algorithm is Algorithm.MD5
    assert challenge.qop == ("auth",)
    assert response.status == 200


async def test_a_device_set_to_sha256_gets_only_sha256_and_an_md5_answer_is_refused(
    up: Up,
) -> None:
    add_user(up, "2201", "pw-2201", "--digest-algorithm", "SHA-256")
    shown = sip2uc(up, "user", "show", "2201").stdout
    assert "digest SHA-256" in shown
    client = await handset()
    try:
        await learned(client, up, "2201", [Algorithm.SHA_256])
        first, challenge = await client.challenge(up, "2201")
        md5 = await client.register(up, "2201", "pw-2201", algorithm=Algorithm.MD5)
        sha256 = await client.register(up, "2201", "pw-2201")
    finally:
        client.close()

    assert [parse_challenge(v).algorithm for v in first.headers.get_all("WWW-Authenticate")] == [
        Algorithm.SHA_256
    ]
    assert challenge.algorithm is Algorithm.SHA_256
    assert md5.status == 401
    assert [parse_challenge(v).algorithm for v in md5.headers.get_all("WWW-Authenticate")] == [
        Algorithm.SHA_256
    ]
    assert sha256.status == 200
    assert "challenge algorithm not supported by the client: 2201 from 127.0.0.1" in "".join(up.log)


async def test_a_device_can_be_offered_both_in_its_own_order(up: Up) -> None:
    add_user(up, "2301", "pw-2301")
    sip2uc(
        up, "user", "update", "2301", "--digest-algorithm", "SHA-256", "--digest-algorithm", "MD5"
    )
    client = await handset()
    try:
        first = await learned(client, up, "2301", [Algorithm.SHA_256, Algorithm.MD5])
    finally:
        client.close()

    assert [parse_challenge(v).algorithm for v in first.headers.get_all("WWW-Authenticate")] == [
        Algorithm.SHA_256,
        Algorithm.MD5,
    ]


async def test_an_unknown_user_gets_the_default_challenge_in_exactly_the_same_shape(
    up: Up,
) -> None:
    add_user(up, "2401", "pw-2401")
    client = await handset()
    try:
        known, _ = await client.challenge(up, "2401")
        unknown, _ = await client.challenge(up, "2499")
    finally:
        client.close()

    assert (known.status, known.reason) == (unknown.status, unknown.reason) == (401, "Unauthorized")
    assert [name for name, _ in known.headers] == [name for name, _ in unknown.headers]
    assert masked(known) == masked(unknown)
    assert masked(unknown) == [
        f'Digest realm="{REALM}", nonce="NONCE", opaque="{parse_challenge(unknown.headers.get("WWW-Authenticate") or "").opaque}", '
        'algorithm=MD5, qop="auth"'
    ]


# --- bans ---------------------------------------------------------------------------------------


async def test_a_handset_with_a_wrong_password_does_not_lock_out_its_neighbours(up: Up) -> None:
    for ext in ("3001", "3002", "3003"):
        add_user(up, ext, f"pw-{ext}")

    # Twelve wrong passwords from one address: the tenth bans that user there, and the last two
    # go unanswered (SIPp gives up on them when its run times out, and reports them failed).
    wrong = await sipp_status(
        up,
        SCENARIOS / "register_rejected.xml",
        ["3001;not-the-pw;300"] * 12,
        label="wrong-pw",
        timeout=5,
        host=SITE,
    )
    # The good handsets behind the same address (one DECT base, one NAT) still register.
    good = await sipp_status(
        up,
        SCENARIOS / "register_auth.xml",
        ["3002;pw-3002;300", "3003;pw-3003;300"],
        label="neighbours",
        host=SITE,
    )

    assert wrong != 0
    assert good == 0
    assert ("BAN_KIND_SOURCE_USER", SITE, "3001") in bans(up)
    assert ("BAN_KIND_SOURCE", SITE, "") not in bans(up)
    log = "".join(up.log)
    assert f"unknown user or wrong password for 3001 from {SITE}" in log
    assert f"banned 3001 from {SITE} for 300 s: 10 failed logins in 60 s" in log


@pytest.mark.skipif(not SVCRACK.exists(), reason="sipvicious (a development dependency) is missing")
async def test_svcrack_guessing_a_password_from_one_source_is_banned(up: Up) -> None:
    add_user(up, "3101", "a-password-not-in-1-to-40")
    process = await asyncio.create_subprocess_exec(
        str(SVCRACK),
        "-u",
        "3101",
        "-r",
        "1-40",
        "-p",
        str(up.sip_port),
        "-b",
        "127.0.0.1",
        "--maximumtime",
        "1",
        up.sip_host,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)

    assert b"found nothing" in output
    assert ("BAN_KIND_SOURCE_USER", "127.0.0.1", "3101") in bans(up)
    assert "banned 3101 from 127.0.0.1 for 300 s: 10 failed logins in 60 s" in "".join(up.log)


async def test_twelve_registers_with_a_made_up_nonce_ban_nobody(up: Up) -> None:
    add_user(up, "3201", "pw-3201")
    client = await handset()
    try:
        _, challenge = await client.challenge(up, "3201")
        made_up = replace(challenge, nonce="AQAAAZPZPmnmAAAAAf" + "A" * 21)
        statuses = []
        for n in range(12):
            credentials = build_credentials(
                made_up,
                username="3201",
                ha1=compute_ha1(Algorithm.MD5, "3201", REALM, f"guess-{n}"),
                method="REGISTER",
                uri=f"sip:{up.sip_host}:{up.sip_port}",
                cnonce=f"c{n}",
            )
            statuses.append((await client.request(up, "3201", credentials.serialize())).status)
        after = await client.register(up, "3201", "pw-3201")
    finally:
        client.close()

    assert statuses == [401] * 12
    assert after.status == 200
    assert not [ban for ban in bans(up) if ban[2] == "3201"]


async def test_guessing_one_account_from_six_sources_hits_the_account_limit(up: Up) -> None:
    add_user(up, "3301", "right-pw-3301")
    owner = await handset()  # the account's own handset, registered before the guessing
    guessers = [await handset(f"127.0.0.{n}") for n in range(2, 8)]
    latecomer = await handset("127.0.0.9")
    try:
        assert (await owner.register(up, "3301", "right-pw-3301")).status == 200
        # Nine guesses from each of six addresses: below every per-source limit.
        outcomes = [
            (await guesser.register(up, "3301", f"guess-{n}")).status
            for n in range(9)
            for guesser in guessers
        ]
        found = await latecomer.register(up, "3301", "right-pw-3301")
        refresh = await owner.register(up, "3301", "right-pw-3301")
    finally:
        for client in (owner, *guessers, latecomer):
            client.close()

    assert outcomes == [401] * 54
    assert found.status == 401  # locked: even the right password is refused from elsewhere
    assert refresh.status == 200  # its own handset is still heard
    assert ("BAN_KIND_ACCOUNT", "", "3301") in bans(up)
    assert not [ban for ban in bans(up) if ban[0] != "BAN_KIND_ACCOUNT" and ban[2] == "3301"]
    status = sip2uc(up, "status").stdout
    assert re.search(r"locked accounts\s+1 \(sip2uc bans list\)", status)
    assert "account 3301 locked for 300 s: 20 failed logins from 6 sources in 300 s" in "".join(
        up.log
    )

    sip2uc(up, "bans", "lift", "--account", "3301")
    assert ("BAN_KIND_ACCOUNT", "", "3301") not in bans(up)
