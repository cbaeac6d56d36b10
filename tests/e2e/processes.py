"""Real processes for end-to-end tests: started with their stderr read as it comes, so that a
test can wait for a line; stopped with SIGTERM, as an operator would."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest

CLI = [sys.executable, "-m", "sip2uc.cli"]
WAIT_SECONDS = 30.0


class Logged:
    """A process whose stderr (and stdout, if asked) is read as it comes, so a test can wait for
    a line."""

    def __init__(self, argv: list[str], env: dict[str, str], *, with_stdout: bool = False) -> None:
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if with_stdout else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if with_stdout else subprocess.PIPE,
            text=True,
            env=env,
        )
        self._output = self.process.stdout if with_stdout else self.process.stderr
        self.log: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self._output is not None
        for line in self._output:
            self.log.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, pattern: str) -> re.Match[str]:
        wanted = re.compile(pattern)
        for line in self.log:
            if (found := wanted.search(line)) is not None:
                return found
        while True:
            try:
                line = self._lines.get(timeout=WAIT_SECONDS)
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r}:\n" + "".join(self.log))
            if line is None:
                pytest.fail(f"exited before {pattern!r}:\n" + "".join(self.log))
            if (found := wanted.search(line)) is not None:
                return found

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def clean_env() -> dict[str, str]:
    """The environment without any sip2uc credential or address."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SIP2UC_")}


def free_rtp_ports(count: int = 20) -> tuple[int, int]:
    """A range of UDP ports nobody holds right now (other test runs share the machine)."""
    # Start somewhere else for each run, and look through the whole unprivileged range: other
    # test runs and benchmarks may hold thousands of ports.
    bases = list(range(20000, 65000, count))
    start = os.getpid() % len(bases)
    for base in bases[start:] + bases[:start]:
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base, base + count - 1
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free RTP port range")
