#!/usr/bin/env python3
"""Presence change -> every watcher's NOTIFY: latency and throughput at BLF scale.

The control plane and one sidecar run as two subprocesses (as in the REGISTER bench). Scripted
handsets (one UDP socket each, in this process) subscribe through the sidecar with MD5 digest:
handset i watches the --watch users after it (i+1 ... i+W, wrapping), each with its own
`Event: presence` subscription, so every user has W watchers and the sidecar holds
handsets x W subscriptions on ONE state watch of the control plane. Every NOTIFY is answered
200 by its handset.

Then two measurements, each a sample of what a watcher sees:
- latency: --changes users, one after another, get a manual presence through the public API
  (SetPresence, alternately away and cleared); the time from just before the RPC to each of
  the user's W watchers receiving the NOTIFY that shows the new state is one sample each;
- throughput: --burst users change at once; NOTIFYs/s is the number of NOTIFYs showing the new
  states over the time from the first RPC to the last of them arriving.

Prints setup times, p50/p90/p99/max latency and NOTIFYs/s, plus the sidecar's and control
plane's CPU (from /proc/PID/task/*/schedstat). No assertions: figures for docs/performance.md.

    .venv/bin/python bench/subscribe/blf_bench.py --handsets 10000 --watch 20
    .venv/bin/python bench/subscribe/blf_bench.py --handsets 500 --watch 20   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import random
import resource
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
from sip2uc.v1 import common_pb2, presence_pb2, presence_pb2_grpc
from sip2uc_core.sip.digest import build_credentials, compute_ha1, parse_challenge
from sip2uc_core.sip.errors import SipParseError
from sip2uc_core.sip.message import SipRequest, SipResponse, make_response, parse_message

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "register"))
from register_bench import PASSWORD, create_users, spawn

DOMAIN = "sip2uc.local"


def cpu_seconds(pid: int) -> float:
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        with open(path) as f:
            total += int(f.read().split()[0])
    return total / 1e9


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Handset(asyncio.DatagramProtocol):
    """One handset: subscribes, answers every NOTIFY and hands its body to the bench."""

    def __init__(self, bench: Bench, index: int) -> None:
        self.bench = bench
        self.index = index
        self.user = f"u{100000 + index}"
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.waiting: dict[str, asyncio.Future[SipResponse]] = {}
        self.challenge = ""
        self.nc = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = parse_message(data)
        except SipParseError:
            self.bench.unparseable += 1
            if os.environ.get("BLF_BENCH_DEBUG"):
                print("unparseable:", data[:300])
            return
        if isinstance(message, SipResponse):
            future = self.waiting.pop(f"{message.call_id} {message.status >= 200}", None)
            if future is None:
                future = self.waiting.pop(f"{message.call_id} True", None)
            if future is not None and not future.done() and message.status >= 200:
                future.set_result(message)
            return
        assert isinstance(message, SipRequest) and message.method == "NOTIFY"
        assert self.transport is not None
        self.transport.sendto(make_response(message, 200).serialize(), addr)
        self.bench.notified(message.body, time.perf_counter())

    def subscribe_bytes(self, watched: str, call_id: str, auth: str = "") -> bytes:
        host, port = self.bench.sip
        lines = [
            f"SUBSCRIBE sip:{watched}@{host}:{port} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{secrets.token_hex(6)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{DOMAIN}>;tag={secrets.token_hex(4)}",
            f"To: <sip:{watched}@{DOMAIN}>",
            f"Call-ID: {call_id}",
            "CSeq: 1 SUBSCRIBE",
            f"Contact: <sip:{self.user}@127.0.0.1:{self.port}>",
            "Event: presence",
            "Accept: application/pidf+xml",
            "Expires: 3600",
        ]
        if auth:
            lines.append(f"Authorization: {auth}")
        return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()

    async def request(self, data: bytes, call_id: str) -> SipResponse:
        assert self.transport is not None
        for _attempt in range(6):
            future: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()
            self.waiting[f"{call_id} True"] = future
            self.transport.sendto(data, self.bench.sip)
            try:
                return await asyncio.wait_for(future, 4.0)
            except TimeoutError:
                continue
        raise RuntimeError(f"{self.user}: no answer to {call_id}")

    async def watch(self, watched: str) -> None:
        host, port = self.bench.sip
        uri = f"sip:{watched}@{host}:{port}"
        for _attempt in range(8):
            call_id = f"{self.user}-{watched}-{secrets.token_hex(3)}"
            if not self.challenge:
                response = await self.request(self.subscribe_bytes(watched, call_id), call_id)
                if response.status == 503:  # the sidecar sheds load: as a handset would, later
                    await asyncio.sleep(0.5)
                    continue
                if response.status != 401:
                    raise RuntimeError(f"{self.user}: {response.status} to a bare SUBSCRIBE")
                self.challenge = response.headers.get("WWW-Authenticate") or ""
                self.nc = 0
                call_id += "-a"
            self.nc += 1
            challenge = parse_challenge(self.challenge)
            creds = build_credentials(
                challenge,
                username=self.user,
                ha1=compute_ha1(challenge.algorithm, self.user, challenge.realm, PASSWORD),
                method="SUBSCRIBE",
                uri=uri,
                cnonce=secrets.token_hex(4),
                nc=self.nc,
            ).serialize()
            response = await self.request(self.subscribe_bytes(watched, call_id, creds), call_id)
            if response.status == 200:
                return
            if response.status in (401, 503):
                self.challenge = response.headers.get("WWW-Authenticate") or ""
                await asyncio.sleep(0.2 if response.status == 503 else 0)
                continue
            raise RuntimeError(f"{self.user}: {response.status} to SUBSCRIBE {watched}")
        raise RuntimeError(f"{self.user}: could not subscribe to {watched}")


class Bench:
    def __init__(self, sip: tuple[str, int]) -> None:
        self.sip = sip
        #: (entity, marker) -> when each NOTIFY showing it arrived.
        self.expect: dict[tuple[str, bytes], list[float]] = {}
        self.notifies = 0
        self.unparseable = 0

    def notified(self, body: bytes, at: float) -> None:
        self.notifies += 1
        start = body.find(b'entity="') + 8
        entity = body[start : body.find(b'"', start)].decode()
        marker = b"<rpid:away/>" if b"<rpid:away/>" in body else b"<basic>closed</basic>"
        arrivals = self.expect.get((entity, marker))
        if arrivals is not None:
            arrivals.append(at)


async def main_async(
    args: argparse.Namespace, address: str, token: str, sip_port: int, pids: dict[str, int]
) -> None:
    loop = asyncio.get_running_loop()
    bench = Bench(("127.0.0.1", sip_port))
    handsets: list[Handset] = []
    for i in range(args.handsets):
        _t, handset = await loop.create_datagram_endpoint(
            lambda i=i: Handset(bench, i), local_addr=("127.0.0.1", 0)
        )
        handsets.append(handset)
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    queue: asyncio.Queue[tuple[Handset, str]] = asyncio.Queue()
    for k in range(args.watch):
        for i, handset in enumerate(handsets):
            queue.put_nowait((handset, f"u{100000 + (i + 1 + k) % args.handsets}"))
    total = queue.qsize()

    async def worker() -> None:
        while not queue.empty():
            handset, watched = queue.get_nowait()
            await handset.watch(watched)

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    took = time.perf_counter() - started
    await asyncio.sleep(2.0)  # the first NOTIFYs answered
    cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
    print(
        f"{total} subscriptions ({args.handsets} handsets x {args.watch}) in {took:.1f} s "
        f"({total / took:.0f}/s); first NOTIFYs {bench.notifies}; CPU s "
        + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()),
        flush=True,
    )

    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        presence = presence_pb2_grpc.PresenceServiceStub(channel)

        async def change(n: int, away: bool) -> tuple[str, bytes]:
            user = f"u{100000 + n}"
            key = (f"sip:{user}@{DOMAIN}", b"<rpid:away/>" if away else b"<basic>closed</basic>")
            bench.expect[key] = []
            if away:
                await presence.SetPresence(
                    presence_pb2.SetPresenceRequest(
                        user=f"sip:{user}@{DOMAIN}", availability=common_pb2.AVAILABILITY_AWAY
                    ),
                    metadata=metadata,
                )
            else:
                await presence.ClearPresence(
                    presence_pb2.ClearPresenceRequest(user=f"sip:{user}@{DOMAIN}"),
                    metadata=metadata,
                )
            return key

        async def all_arrived(keys: list[tuple[str, bytes]], within: float) -> bool:
            deadline = loop.time() + within
            while loop.time() < deadline:
                if all(len(bench.expect[k]) >= args.watch for k in keys):
                    return True
                await asyncio.sleep(0.005)
            return False

        rng = random.Random(7)
        samples: list[float] = []
        missing = 0
        for round_ in range(args.changes):
            n = rng.randrange(args.handsets)
            for away in (True, False):
                t0 = time.perf_counter()
                key = await change(n, away)
                if not await all_arrived([key], 5.0):
                    missing += args.watch - len(bench.expect[key])
                samples.extend(at - t0 for at in bench.expect.pop(key))
            del round_
        ms = [s * 1000 for s in samples]
        print(
            f"latency, {args.changes * 2} changes one at a time, {len(ms)} NOTIFYs "
            f"({missing} missing): p50 {percentile(ms, 0.5):.1f} ms, p90 "
            f"{percentile(ms, 0.9):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms, "
            f"max {max(ms):.1f} ms, mean {statistics.fmean(ms):.1f} ms; unparseable datagrams "
            f"{bench.unparseable}",
            flush=True,
        )

        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        chosen = rng.sample(range(args.handsets), min(args.burst, args.handsets))
        t0 = time.perf_counter()
        keys = await asyncio.gather(*(change(n, True) for n in chosen))
        complete = await all_arrived(list(keys), 60.0)
        arrivals = [at for k in keys for at in bench.expect[k]]
        last = max(arrivals)
        cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
        burst_ms = [(at - t0) * 1000 for at in arrivals]
        print(
            f"burst: {len(chosen)} users changed at once -> {len(arrivals)} NOTIFYs"
            f"{'' if complete else ' (INCOMPLETE)'} in {last - t0:.2f} s = "
            f"{len(arrivals) / (last - t0):.0f} NOTIFYs/s; latency p50 "
            f"{percentile(burst_ms, 0.5):.0f} ms, p99 {percentile(burst_ms, 0.99):.0f} ms; "
            "CPU s " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--handsets", type=int, default=10000)
    parser.add_argument("--watch", type=int, default=20)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = Path(tempfile.mkdtemp(prefix="sip2uc-blf-bench-"))
    processes = []
    try:
        control, info = spawn(["control", str(work / "control")], work / "control.log")
        processes.append(control)
        address, token = str(info["address"]), str(info["token"])
        took = asyncio.run(create_users(address, token, args.handsets))
        print(f"created {args.handsets} users in {took:.1f} s", flush=True)
        sidecar, sinfo = spawn(
            ["sidecar", address, token, str(work / "sidecar"), "0"], work / "sidecar.log"
        )
        processes.append(sidecar)
        pids = {"sidecar": sidecar.pid, "control": control.pid}
        asyncio.run(main_async(args, address, token, int(str(sinfo["udp"])), pids))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except Exception:
                process.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}")


if __name__ == "__main__":
    main()
