"""A real Kamailio presence server for the presence bridge's tests and benchmark.

`KamailioPresence.start` writes a configuration from ``presence.cfg`` into a temporary directory
with a fresh db_text database (Debian's empty tables), free ports for UDP, TCP and TLS, and
starts ``kamailio`` in the foreground; it returns once the server answers OPTIONS. `stop` ends it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
KAMCMD = shutil.which("kamcmd") or "/usr/sbin/kamcmd"
MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
DBTEXT = Path("/usr/share/kamailio/dbtext/kamailio")
TEMPLATE = Path(__file__).with_name("presence.cfg")
USERNAME = "sip2uc-gw"
PASSWORD = "gw-secret-7"


def missing() -> str | None:
    """Why a presence server cannot be started here, or None."""
    if not Path(KAMAILIO).exists():
        return "kamailio is not installed (Debian kamailio)"
    if not (MODULES / "presence.so").exists():
        return "Kamailio's presence modules are not installed (Debian kamailio-presence-modules)"
    if not DBTEXT.exists():
        return "Kamailio's db_text tables are missing (Debian kamailio)"
    return None


def missing_tls() -> str | None:
    """Why a presence server with TLS cannot be started here, or None."""
    if not (MODULES / "tls.so").exists():
        return "Kamailio's TLS module is not installed (Debian kamailio-tls-modules)"
    return missing()


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


@dataclass
class KamailioPresence:
    work: Path
    auth: bool = False
    tls: bool = False
    min_expires: int = 0
    children: int = 2
    #: Shared and per-process memory, MB (Kamailio's -m and -M).
    shm_mb: int = 128
    pkg_mb: int = 16
    #: log2 of the buckets of the watcher and presentity hash tables (Kamailio's default: 9).
    htable_bits: int = 9
    #: Largest UDP receive buffer Kamailio asks for (bytes).
    max_buffer: int = 262144
    udp_port: int = field(default_factory=free_port)
    tcp_port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    #: Where MESSAGEs go (a SIP URI such as sip:127.0.0.1:PORT); empty: 405 like any method.
    message_target: str = ""
    process: subprocess.Popen[bytes] | None = None
    ca_pem: str = ""

    @property
    def log_path(self) -> Path:
        return self.work / "kamailio.log"

    @property
    def ctl_socket(self) -> Path:
        return self.work / "kamailio.ctl"

    def statistics(self) -> dict[str, int]:
        """The server's counters (``kamcmd stats.get_statistics all``), e.g.
        ``core:rcv_requests_publish`` or ``presence:...``; empty when kamcmd is missing."""
        if not Path(KAMCMD).exists():
            return {}
        done = subprocess.run(
            [KAMCMD, "-s", f"unix:{self.ctl_socket}", "stats.get_statistics", "all"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        out: dict[str, int] = {}
        for line in done.stdout.splitlines():
            name, sep, value = line.strip().partition(" = ")
            if sep and value.strip().lstrip("-").isdigit():
                out[name.strip()] = int(value)
        return out

    def server_uri(self, transport: str = "udp") -> str:
        port = {"udp": self.udp_port, "tcp": self.tcp_port, "tls": self.tls_port}[transport]
        return f"sip:127.0.0.1:{port};transport={transport}"

    def start(self) -> KamailioPresence:
        self.work.mkdir(parents=True, exist_ok=True)
        db = self.work / "db"
        if db.exists():
            shutil.rmtree(db)
        shutil.copytree(DBTEXT, db)
        tls_cfg = self._tls_config()
        text = TEMPLATE.read_text()
        for name, value in {
            "CHILDREN": self.children,
            "UDP_PORT": self.udp_port,
            "TCP_PORT": self.tcp_port,
            "TLS_PORT": self.tls_port,
            "TLS_CFG": tls_cfg,
            "DB_DIR": db,
            "MIN_EXPIRES": self.min_expires,
            "CTL_SOCKET": self.ctl_socket,
            "HTABLE_BITS": self.htable_bits,
            "MAX_BUFFER": self.max_buffer,
            "USERNAME": USERNAME,
            "PASSWORD": PASSWORD,
            "MESSAGE_TARGET": self.message_target,
        }.items():
            text = text.replace(f"@@{name}@@", str(value))
        cfg = self.work / "presence.cfg"
        cfg.write_text(text)
        self._launch(cfg)
        return self

    def _tls_config(self) -> Path:
        """Kamailio's TLS configuration, with a certificate made here when TLS is on."""
        tls_cfg = self.work / "tls.cfg"
        if self.tls:
            from sip2uc_media.transport.tls import ensure_self_signed

            cert, key = ensure_self_signed(self.work / "tls", ["127.0.0.1", "localhost"])
            self.ca_pem = cert.read_text()
            tls_cfg.write_text(
                "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
                f"require_certificate = no\nprivate_key = {key}\ncertificate = {cert}\n"
            )
        return tls_cfg

    def _launch(self, cfg: Path) -> None:
        """Start kamailio with ``cfg`` and wait until it answers OPTIONS."""
        defines = [
            *(["-A", "WITH_AUTH"] if self.auth else []),
            *(["-A", "WITH_TLS"] if self.tls else []),
            *(["-A", "WITH_MESSAGES"] if self.message_target else []),
        ]
        self.process = subprocess.Popen(
            [
                KAMAILIO,
                "-f",
                str(cfg),
                "-DD",
                "-E",
                "-m",
                str(self.shm_mb),
                "-M",
                str(self.pkg_mb),
                *defines,
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log_path.open("wb"),
            # Its own process group: `stop` ends the children too, whatever became of the main one.
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(0.2)
            port = sock.getsockname()[1]
            ping = (
                f"OPTIONS sip:127.0.0.1:{self.udp_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKping{port}\r\n"
                "From: <sip:ping@127.0.0.1>;tag=1\r\nTo: <sip:ping@127.0.0.1>\r\n"
                "Call-ID: ping\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 5\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    break
                sock.sendto(ping, ("127.0.0.1", self.udp_port))
                with contextlib.suppress(OSError):
                    sock.recv(4096)
                    return
        self.stop()
        raise RuntimeError(f"kamailio did not start; see {self.log_path}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)
            # A child the main process did not take down would keep the ports.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None
