"""PROTOS c07-sip: the sidecar survives all 4,527 malformed INVITEs and keeps answering.

Each case is filled in, sent to a real `sip2uc up` (control plane and sidecar in one child
process) with its CANCEL teardown, and followed by an OPTIONS probe that must be answered: a
robustness verdict, so any response (or none) to the case itself is acceptable. A crash shows
as the process exiting, a hang as an unanswered probe. The suite runs twice, the second time
after the first pass's transactions expired, to tell memory held by design from a leak.
The cases are GPL data and are read from outside the repository (`../shared/conformance/protos/` or `$SIP2UC_PROTOS_DIR`).
"""

from __future__ import annotations

import collections
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from protos_support import (
    CASE_COUNT,
    ENV_VAR,
    MAX_UDP_PAYLOAD,
    Fill,
    Prober,
    ProtosCase,
    Server,
    as_response,
    case_paths,
    categories,
    category_of,
    default_protos_dir,
    drain,
    fill,
    load_cases,
    send_over_tcp,
    status_of,
)
from sip2uc.v1 import users_pb2, users_pb2_grpc
from sip2uc_core.sip.digest import build_credentials, compute_ha1, parse_challenge
from sip2uc_core.sip.message import SipResponse

PROTOS = default_protos_dir()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.interop,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        not (PROTOS / "cases").is_dir(),
        reason=(
            f"PROTOS c07-sip cases not found at {PROTOS} (GPL data kept outside the "
            f"repository; set {ENV_VAR} to the folder that holds cases/)"
        ),
    ),
]

# Every server transaction the suite opens is held for 64*T1 = 32 s after its final response
# (Timer H and J, RFC 3261 §17.2.1-2), with the request and response in it; one pass takes a few
# seconds, so all of them are still alive when it ends. A second pass after they expired shows
# whether that memory is reused (bounded) or still held (a leak).
TRANSACTION_HOLD = 64 * 0.5 + 2.0
MAX_GROWTH = 160 * 2**20
MAX_SECOND_PASS_GROWTH = 32 * 2**20
MAX_RESTARTS = 10


@dataclass
class Failure:
    case: int
    category: str
    reason: str
    log: str


@dataclass
class Pass:
    seconds: float
    rss_start: int
    rss_end: int


class Harness:
    """Sends every case with its teardown, probes after each, restarts the server after a
    failure so that later verdicts stay clean, and keeps the figures for the report."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cases = list(load_cases(PROTOS))
        self.rows = categories(PROTOS)
        self.failures: list[Failure] = []
        self.responses: collections.Counter[int | None] = collections.Counter()
        self.over_tcp: set[int] = set()
        self.servers = [Server(tmp / "data-0")]
        self.cases_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.cases_sock.bind(("127.0.0.1", 0))
        self.cases_sock.setblocking(False)
        self.local_port: int = self.cases_sock.getsockname()[1]
        self.prober = Prober(timeout=2.0, attempts=2)

    @property
    def server(self) -> Server:
        return self.servers[-1]

    def values(self, number: int, tag: str) -> Fill:
        host, port = self.server.sip
        return Fill(
            to=f"protos@{host}:{port}",
            from_=f"tester@127.0.0.1:{self.local_port}",
            from_address="127.0.0.1",
            local_port=self.local_port,
            branch_id=f"{tag}x{number}",
            call_id=f"protos-{tag}-{number}",
        )

    def send(self, case: ProtosCase, tag: str) -> tuple[bytes, bytes]:
        invite, teardown = fill(case, self.values(case.number, tag))
        for message in (invite, teardown):
            if len(message) > MAX_UDP_PAYLOAD:
                # Too big for one datagram; TCP carries it instead (PROTOS README).
                self.over_tcp.add(case.number)
                send_over_tcp(self.server.sip, message, timeout=2.0)
            else:
                self.cases_sock.sendto(message, self.server.sip)
        return invite, teardown

    def run_pass(self, tag: str) -> Pass:
        started = time.monotonic()
        rss_start = self.server.rss_bytes()
        for case in self.cases:
            invite, teardown = self.send(case, tag)
            answer = self.prober.probe(self.server.sip, f"{tag}-{case.number}")
            for datagram in drain(self.cases_sock):
                self.responses[status_of(datagram)] += 1
            if answer is None or not self.server.running:
                self.fail(case.number, invite, teardown)
                if len(self.servers) > MAX_RESTARTS:
                    break
        return Pass(time.monotonic() - started, rss_start, self.server.rss_bytes())

    def fail(self, number: int, invite: bytes, teardown: bytes) -> None:
        server = self.server
        reason = (
            f"process exited with {server.process.poll()}"
            if not server.running
            else "OPTIONS probe unanswered within 2 x 2 s"
        )
        server.kill()
        self.failures.append(
            Failure(number, category_of(number, self.rows), reason, server.log_tail())
        )
        # What was sent, to replay the case by hand.
        (self.tmp / f"case-{number}.invite").write_bytes(invite)
        (self.tmp / f"case-{number}.teardown").write_bytes(teardown)
        self.servers.append(Server(self.tmp / f"data-{len(self.servers)}"))

    def close(self) -> None:
        self.prober.close()
        self.cases_sock.close()
        for server in self.servers[:-1]:
            server.kill()
        self.server.stop()


@dataclass
class Run:
    harness: Harness
    first: Pass
    second: Pass

    @property
    def server(self) -> Server:
        return self.harness.server

    @property
    def failures(self) -> list[Failure]:
        return self.harness.failures


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    harness = Harness(tmp_path_factory.mktemp("protos"))
    try:
        first = harness.run_pass("a")
        time.sleep(TRANSACTION_HOLD)  # let the first pass's transactions expire (see above)
        second = harness.run_pass("b")
        responses = sorted(harness.responses.items(), key=lambda kv: kv[0] or 0)
        print(
            f"\nPROTOS c07-sip: {len(harness.cases)} cases per pass, "
            f"{first.seconds:.1f} s and {second.seconds:.1f} s, "
            f"{len(harness.over_tcp)} over TCP, responses on the case socket {dict(responses)}, "
            f"RSS {first.rss_start / 2**20:.0f} -> {first.rss_end / 2**20:.0f} -> "
            f"{second.rss_end / 2**20:.0f} MiB, {len(harness.failures)} failures"
        )
        yield Run(harness, first, second)
    finally:
        harness.close()


def test_the_suite_is_complete() -> None:
    assert len(case_paths(PROTOS)) == CASE_COUNT


def test_every_case_leaves_the_sidecar_up_and_answering(run: Run) -> None:
    report = "\n".join(f"case {f.case} ({f.category}): {f.reason}\n{f.log}" for f in run.failures)
    assert run.failures == [], report


def test_memory_is_reused_once_the_first_pass_transactions_expired(run: Run) -> None:
    assert len(run.harness.servers) == 1, "the server restarted; memory figures are not comparable"
    assert run.second.rss_end - run.first.rss_end < MAX_SECOND_PASS_GROWTH


def test_memory_growth_over_both_passes_is_bounded(run: Run) -> None:
    assert len(run.harness.servers) == 1, "the server restarted; memory figures are not comparable"
    assert run.second.rss_end - run.first.rss_start < MAX_GROWTH


def test_the_sidecar_still_registers_a_user_afterwards(run: Run) -> None:
    server = run.server
    assert server.running
    with grpc.insecure_channel(server.admin) as channel:
        users_pb2_grpc.UserServiceStub(channel).CreateUser(
            users_pb2.CreateUserRequest(
                user=users_pb2.User(
                    sip_uri="sip:protos@sip2uc.local",
                    display_name="Protos",
                    devices=[
                        users_pb2.Device(
                            label="handset",
                            registering=users_pb2.RegisteringDevice(
                                digest_username="protos", password="protos-secret"
                            ),
                        )
                    ],
                )
            ),
            metadata=(("authorization", f"Bearer {server.token}"),),
            timeout=10,
        )
    handset = RegisteringHandset(server.sip)
    try:
        challenge = handset.register(None)
        chosen = parse_challenge(challenge.headers.get_all("WWW-Authenticate")[0])
        credentials = build_credentials(
            chosen,
            username="protos",
            ha1=compute_ha1(chosen.algorithm, "protos", chosen.realm, "protos-secret"),
            method="REGISTER",
            uri=handset.registrar,
            cnonce="5eed0001",
        )
        final = handset.register(credentials.serialize())
    finally:
        handset.close()

    assert challenge.status == 401
    assert final.status == 200
    assert final.headers.get("Contact") == f"<{handset.contact}>;expires=120"


class RegisteringHandset:
    """A UDP client that registers `protos` and waits for each final response."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5.0)
        self.port: int = self.sock.getsockname()[1]
        self.registrar = f"sip:{target[0]}:{target[1]}"
        self.contact = f"sip:protos@127.0.0.1:{self.port}"
        self.cseq = 0

    def register(self, authorization: str | None) -> SipResponse:
        self.cseq += 1
        lines = [
            f"REGISTER {self.registrar} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK-reg-{self.cseq};rport",
            "From: <sip:protos@sip2uc.local>;tag=reg",
            "To: <sip:protos@sip2uc.local>",
            "Call-ID: protos-register@127.0.0.1",
            f"CSeq: {self.cseq} REGISTER",
            "Max-Forwards: 70",
            f"Contact: <{self.contact}>;expires=120",
        ]
        if authorization is not None:
            lines.append(f"Authorization: {authorization}")
        self.sock.sendto("\r\n".join([*lines, "Content-Length: 0", "", ""]).encode(), self.target)
        while True:
            response = as_response(self.sock.recv(65536))
            if (
                response is not None
                and (response.cseq.seq, response.cseq.method) == (self.cseq, "REGISTER")
                and response.status >= 200
            ):
                return response

    def close(self) -> None:
        self.sock.close()
