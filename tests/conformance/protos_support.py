"""Driving the PROTOS c07-sip INVITE cases against a running `sip2uc up`.

The cases themselves are GPL data and live outside this repository (see
`../shared/conformance/protos/README.md` for the file format and placeholders); this module
only reads them. It splits a case file into its INVITE and teardown templates, fills the
placeholders, sends the result, and checks liveness with an OPTIONS probe the way the PROTOS
tool's `-validcase` option does.
"""

from __future__ import annotations

import collections
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sip2uc_core.sip.errors import SipParseError
from sip2uc_core.sip.message import SipResponse, parse_message

ENV_VAR = "SIP2UC_PROTOS_DIR"
CASE_COUNT = 4527
# IPv4 UDP payload limit (65,535 - 20 IP - 8 UDP); the PROTOS tool's -maxpdusize default.
MAX_UDP_PAYLOAD = 65507
_READY = re.compile(r"sip2uc up: admin API (\S+), SIP UDP (\S+),")
_WELCOMED = "welcomed this sidecar"


def default_protos_dir() -> Path:
    """`$SIP2UC_PROTOS_DIR`, else `../shared/conformance/protos/` beside the repository root."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured)
    root = Path(__file__).resolve().parents[2]
    return (root / ".." / "shared" / "conformance" / "protos").resolve()


# -- case files ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProtosCase:
    number: int
    invite: bytes
    teardown: bytes


def _take(data: bytes, pos: int, what: str) -> tuple[bytes, int]:
    """One `<decimal length> 0x20 <bytes>` part; fuzzed content may hold digits, spaces and
    line ends anywhere, so the length is the only safe way to split."""
    space = data.index(b" ", pos)
    digits = data[pos:space]
    if not digits.isdigit():
        raise ValueError(f"{what} length is not decimal: {digits[:20]!r}")
    end = space + 1 + int(digits)
    if end > len(data):
        raise ValueError(f"{what} is shorter than its stated length")
    return data[space + 1 : end], end


def parse_case_file(number: int, data: bytes) -> ProtosCase:
    invite, pos = _take(data, 0, "INVITE")
    teardown, end = _take(data, pos, "teardown")
    if end != len(data):
        raise ValueError(f"case {number}: {len(data) - end} bytes after the teardown")
    return ProtosCase(number, invite, teardown)


def case_paths(directory: Path) -> list[Path]:
    return sorted(p for p in (directory / "cases").iterdir() if p.name.isdigit())


def load_cases(directory: Path) -> Iterator[ProtosCase]:
    for path in case_paths(directory):
        yield parse_case_file(int(path.name), path.read_bytes())


def categories(directory: Path) -> list[tuple[int, int, str]]:
    rows: list[tuple[int, int, str]] = []
    for line in (directory / "categories.tsv").read_text().splitlines()[1:]:
        first, last, name = line.split("\t")[:3]
        rows.append((int(first), int(last), name))
    return rows


def category_of(number: int, rows: list[tuple[int, int, str]]) -> str:
    return next((name for first, last, name in rows if first <= number <= last), "?")


# -- placeholders -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fill:
    """The values put in place of the ten placeholders (see the PROTOS README's table)."""

    to: str
    from_: str
    from_address: str
    local_port: int
    branch_id: str
    call_id: str
    cseq: int = 1
    from_ip: str = "192.0.2.1"  # RFC 5737 documentation address: no media should flow
    teardown_method: str = "CANCEL"

    def substitutions(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"<To>", self.to.encode()),
            (b"<From>", self.from_.encode()),
            (b"<From-Address>", self.from_address.encode()),
            (b"<Local-Port>", str(self.local_port).encode()),
            (b"<Branch-ID>", self.branch_id.encode()),
            (b"<Call-ID>", self.call_id.encode()),
            (b"<CSeq>", str(self.cseq).encode()),
            (b"<From-IP>", self.from_ip.encode()),
            (b"<Teardown-Method>", self.teardown_method.encode()),
        ]


_CONTENT_LENGTH = b"<Content-Length>"


def _with_content_length(invite: bytes) -> bytes:
    """Substituted last: the byte count after the first CRLFCRLF. Where the empty line itself
    is the mutated element (cases 2417-2426) the count is that of the SDP from `v=` on, so
    the broken separator stays the only defect."""
    placeholder = invite.find(_CONTENT_LENGTH)
    if placeholder < 0:
        # Cases 2361-2406: the wrong literal value is the test; leave it alone.
        return invite
    # The placeholder sits in the header section in every case, so the body is final here.
    separator = invite.find(b"\r\n\r\n", placeholder)
    if separator >= 0:
        length = len(invite) - (separator + 4)
    else:
        sdp = invite.find(b"v=", placeholder)
        length = len(invite) - sdp if sdp >= 0 else 0
    return invite.replace(_CONTENT_LENGTH, str(length).encode())


def fill(case: ProtosCase, values: Fill) -> tuple[bytes, bytes]:
    """The INVITE and the teardown with every placeholder replaced, Content-Length last."""
    invite, teardown = case.invite, case.teardown
    for token, value in values.substitutions():
        invite = invite.replace(token, value)
        teardown = teardown.replace(token, value)
    return _with_content_length(invite), teardown


# -- the server under test ----------------------------------------------------------------------


class ServerExited(RuntimeError):
    pass


class Server:
    """`sip2uc up` as a child process, so that a crash shows as an exit and a hang as silence."""

    def __init__(self, data_dir: Path, *, startup_timeout: float = 30.0) -> None:
        self.data_dir = data_dir
        self.log: collections.deque[str] = collections.deque(maxlen=200)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sip2uc.cli",
                "up",
                "--data-dir",
                str(data_dir),
                "--grpc-listen",
                "127.0.0.1:0",
                "--sip-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "off",
                "--log-level",
                "info",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        threading.Thread(target=self._drain, daemon=True).start()
        self.admin, self.sip = self._wait_ready(startup_timeout)

    def _drain(self) -> None:
        # Keeps reading so that the server never blocks on a full pipe.
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _wait_ready(self, timeout: float) -> tuple[str, tuple[str, int]]:
        deadline = time.monotonic() + timeout
        addresses: tuple[str, tuple[str, int]] | None = None
        welcomed = False
        while addresses is None or not welcomed:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise ServerExited("sip2uc up did not report ready:\n" + self.log_tail()) from None
            if line is None:
                raise ServerExited(
                    f"sip2uc up exited with {self.process.wait()}:\n{self.log_tail()}"
                )
            match = _READY.search(line)
            if match:
                host, _, port = match.group(2).rpartition(":")
                addresses = (match.group(1), (host, int(port)))
            welcomed = welcomed or _WELCOMED in line
        return addresses

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc status")

    def log_tail(self, lines: int = 30) -> str:
        return "".join(list(self.log)[-lines:])

    def stop(self) -> int | None:
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def kill(self) -> None:
        if self.running:
            self.process.kill()
            self.process.wait()


# -- sending and probing ------------------------------------------------------------------------


def send_over_tcp(target: tuple[str, int], message: bytes, timeout: float) -> None:
    """One message on a fresh connection (framing cases desynchronise a stream), then wait for
    the server to close or go quiet so that it has read everything before the probe."""
    with socket.create_connection(target, timeout=timeout) as conn:
        try:
            conn.sendall(message)
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(65536):
                pass
        except OSError:
            # A reset or a timeout: the server refused or ignored the message, both allowed.
            pass


def drain(sock: socket.socket) -> list[bytes]:
    """Whatever the server sent to the case socket (responses, their retransmissions)."""
    received: list[bytes] = []
    while True:
        try:
            received.append(sock.recv(65536))
        except BlockingIOError:
            return received


def status_of(datagram: bytes) -> int | None:
    match = re.match(rb"SIP/2\.0 ([1-6][0-9][0-9]) ", datagram)
    return int(match.group(1)) if match else None


def as_response(data: bytes) -> SipResponse | None:
    """`data` as a well-formed SIP response, or None."""
    try:
        message = parse_message(data)
        if isinstance(message, SipResponse):
            # The fields that match a response to its request must parse too (§17.1.3).
            _ = (message.branch, message.cseq, message.call_id)
            return message
    except SipParseError:
        pass
    return None


class Prober:
    """Sends OPTIONS from its own socket and waits for the response that matches it
    (Call-ID, CSeq and branch, RFC 3261 §17.1.3), resending once (RFC 3261 §17.1.2.2)."""

    def __init__(self, timeout: float = 2.0, attempts: int = 2) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.timeout = timeout
        self.attempts = attempts

    def options(self, target: tuple[str, int], tag: str) -> bytes:
        host, port = target
        return (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK-probe-{tag};rport\r\n"
            f"From: <sip:probe@127.0.0.1:{self.port}>;tag=probe-{tag}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: probe-{tag}@127.0.0.1\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Max-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()

    def probe(self, target: tuple[str, int], tag: str) -> SipResponse | None:
        """The final response to a fresh OPTIONS, or None if none came in time."""
        request = self.options(target, tag)
        for _ in range(self.attempts):
            self.sock.sendto(request, target)
            deadline = time.monotonic() + self.timeout
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                try:
                    data = self.sock.recv(65536)
                except TimeoutError:
                    break
                response = self._matching(data, tag)
                if response is not None and response.status >= 200:
                    return response
        return None

    @staticmethod
    def _matching(data: bytes, tag: str) -> SipResponse | None:
        response = as_response(data)
        if (
            response is not None
            and response.call_id == f"probe-{tag}@127.0.0.1"
            and (response.cseq.seq, response.cseq.method) == (1, "OPTIONS")
            and response.branch == f"z9hG4bK-probe-{tag}"
        ):
            return response
        return None

    def close(self) -> None:
        self.sock.close()
