"""REGISTER-200 → presence watch event latency, through a real `sip2uc up`.

A scripted handset registers N users one after another over UDP (REGISTER → 401 → REGISTER with
MD5 digest) while a `WatchPresence` stream is open; for each user the time from receiving the 200
to receiving the AVAILABLE change on the stream is one sample. Then each user unregisters
(`Expires: 0`) and the time to the OFFLINE change is measured the same way. Prints p50/p90/p99/max.

Run: .venv/bin/python bench/presence/latency_bench.py [--users 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from sip2uc.v1 import (
    common_pb2,
    presence_pb2,
    presence_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)
from sip2uc_core.sip.digest import build_credentials, compute_ha1, parse_challenge
from sip2uc_core.sip.message import SipResponse, parse_message

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "bench-pw-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def register_bytes(
    ext: str, sip: tuple[str, int], local_port: int, cseq: int, expires: int, auth: str = ""
) -> bytes:
    host, port = sip
    call_id = f"bench-{ext}"
    lines = [
        f"REGISTER sip:{host}:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{secrets.token_hex(6)};rport",
        "Max-Forwards: 70",
        f"From: <sip:{ext}@sip2uc.local>;tag={ext}",
        f"To: <sip:{ext}@sip2uc.local>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{ext}@127.0.0.1:{local_port}>",
        f"Expires: {expires}",
        "User-Agent: sip2uc-bench",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


class Handset(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.responses: asyncio.Queue[SipResponse] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = parse_message(data)
        if isinstance(msg, SipResponse):
            self.responses.put_nowait(msg)


async def register(
    transport: asyncio.DatagramTransport,
    handset: Handset,
    ext: str,
    sip: tuple[str, int],
    local_port: int,
    cseq: int,
    expires: int,
) -> float:
    """Returns the monotonic time the 200 arrived."""
    transport.sendto(register_bytes(ext, sip, local_port, cseq, expires), sip)
    challenge_resp = await asyncio.wait_for(handset.responses.get(), 5)
    assert challenge_resp.status == 401, challenge_resp.status
    values = challenge_resp.headers.get_all("WWW-Authenticate")
    challenge = next(c for c in map(parse_challenge, values) if c.algorithm.value == "MD5")
    creds = build_credentials(
        challenge,
        username=ext,
        ha1=compute_ha1(challenge.algorithm, ext, challenge.realm, PASSWORD),
        method="REGISTER",
        uri=f"sip:{sip[0]}:{sip[1]}",
        cnonce=secrets.token_hex(4),
    )
    transport.sendto(
        register_bytes(ext, sip, local_port, cseq + 1, expires, creds.serialize()), sip
    )
    ok = await asyncio.wait_for(handset.responses.get(), 5)
    received = time.monotonic()
    assert ok.status == 200, ok.status
    return received


def summary(name: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, int(p * len(ms)))]

    return (
        f"{name}: n={len(ms)} p50={statistics.median(ms):.2f} ms p90={pct(0.9):.2f} ms "
        f"p99={pct(0.99):.2f} ms max={ms[-1]:.2f} ms"
    )


async def run(users: int, grpc_addr: str, sip: tuple[str, int]) -> None:
    async with grpc.aio.insecure_channel(grpc_addr) as channel:
        stub = users_pb2_grpc.UserServiceStub(channel)
        exts = [str(30000 + n) for n in range(users)]
        for ext in exts:
            await stub.CreateUser(
                users_pb2.CreateUserRequest(
                    user=users_pb2.User(
                        extension=ext,
                        devices=[
                            users_pb2.Device(
                                registering=users_pb2.RegisteringDevice(password=PASSWORD)
                            )
                        ],
                    )
                )
            )
        watch = presence_pb2_grpc.PresenceServiceStub(channel).WatchPresence(
            presence_pb2.WatchPresenceRequest()
        )
        await watch.read()  # snapshot
        events: asyncio.Queue[tuple[str, int, float]] = asyncio.Queue()

        async def reader() -> None:
            while (msg := await watch.read()) is not grpc.aio.EOF:
                if msg.WhichOneof("event") == "change":
                    cur = msg.change.current
                    events.put_nowait((cur.extension, cur.availability, time.monotonic()))

        task = asyncio.create_task(reader())
        loop = asyncio.get_running_loop()
        handset = Handset()
        local_port = free_port()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: handset, local_addr=("127.0.0.1", local_port)
        )
        online: list[float] = []
        offline: list[float] = []
        for wanted, expires, samples in (
            (common_pb2.AVAILABILITY_AVAILABLE, 600, online),
            (common_pb2.AVAILABILITY_OFFLINE, 0, offline),
        ):
            for n, ext in enumerate(exts):
                ok_at = await register(
                    transport,
                    handset,
                    ext,
                    sip,
                    local_port,
                    10 * n + (1 if expires else 5),
                    expires,
                )
                got_ext, availability, seen_at = await asyncio.wait_for(events.get(), 5)
                assert (got_ext, availability) == (ext, wanted), (got_ext, availability)
                samples.append(seen_at - ok_at)
        transport.close()
        task.cancel()
        watch.cancel()
    print(summary("REGISTER 200 -> AVAILABLE on the watch stream", online))
    print(summary("unREGISTER 200 -> OFFLINE on the watch stream", offline))
    print(
        "(negative values: the event arrived before the 200 — the control plane publishes the change"
    )
    print(" in the same commit that precedes its answer to the sidecar)")


def start_up(data: Path, grpc_port: int, sip_port: int) -> subprocess.Popen[bytes]:
    """`sip2uc up` on these loopback ports, once its sidecar is connected (log in data/up.log)."""
    log_path = data / "up.log"
    proc = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "sip2uc"),
            "up",
            "--data-dir",
            str(data / "var"),
            "--grpc-listen",
            f"127.0.0.1:{grpc_port}",
            "--sip-listen",
            f"127.0.0.1:{sip_port}",
            "--metrics-listen",
            "off",
            "--rtp-ports",
            "40000-40999",
        ],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while "welcomed this sidecar" not in log_path.read_text(errors="replace"):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            sys.exit(f"sip2uc up did not start:\n{log_path.read_text()[-2000:]}")
        time.sleep(0.1)
    return proc


def stop_up(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300)
    args = parser.parse_args()
    grpc_port, sip_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as data:
        proc = start_up(Path(data), grpc_port, sip_port)
        try:
            print(
                f"sip2uc up (pid {proc.pid}); {args.users} users; date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
            )
            asyncio.run(run(args.users, f"127.0.0.1:{grpc_port}", ("127.0.0.1", sip_port)))
        finally:
            stop_up(proc)


if __name__ == "__main__":
    sys.exit(main())
