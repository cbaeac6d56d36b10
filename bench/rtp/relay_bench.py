#!/usr/bin/env python3
"""RTP relay benchmark for the sidecar's RelayEngine, loopback only.

One process runs the relay (``serve`` mode: RelayEngine on uvloop, commands as JSON lines
on stdin). For each N in ``--calls`` this driver opens N calls through it (two legs
each; PCMU both ways, or PCMU on leg A and PCMA on leg B with ``--transcode``), then
forks ``--generators`` load processes. Each sends 50 packets/s per stream in both
directions of its share of the calls (172-byte packets, paced in ``--slots`` bursts per
20 ms), receives the relayed packets on the same sockets between bursts, and reports
counts and one-way latency. Every loop is bounded by a packet count and by time.

The send time travels in the payload as 12 hex digits of microseconds, written with 16
G.711 codes that survive transcoding one-to-one, so latency is measured on the packets
the relay transcodes too. It includes the generator's own scheduling delay (packets are
read between send bursts), so it is an upper bound on what the relay adds.

Relay CPU is read from /proc/PID/task/*/schedstat (nanoseconds actually run; the
tick-sampled /proc/PID/stat is wrong for processes waking thousands of times a second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import select
import socket
import struct
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "media"))

from sip2uc_media.rtp.g711 import PCMA_TO_PCMU, PCMU_TO_PCMA  # noqa: E402

PTIME = 0.020
PAYLOAD_LEN = 160
HDR = struct.Struct("!BBHII")
MASK48 = (1 << 48) - 1


# --------------------------------------------------------------------- relay process
async def serve(args: argparse.Namespace) -> None:
    from sip2uc_media.rtp.aio import RelayEngine
    from sip2uc_media.rtp.ports import PortAllocator
    from sip2uc_media.rtp.relay import LegMedia

    engine = RelayEngine("127.0.0.1", PortAllocator(args.port_min, args.port_max))
    await engine.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    sessions: list[str] = []
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd["op"] == "setup":
            b_pt = 8 if cmd["transcode"] else 0
            ports = []
            for i, (a_port, b_port) in enumerate(cmd["calls"]):
                sid = f"c{len(sessions)}-{i}"
                la = engine.open_leg(
                    sid + "a", LegMedia(remote_rtp=("127.0.0.1", a_port), audio_pt=0)
                )
                lb = engine.open_leg(
                    sid + "b", LegMedia(remote_rtp=("127.0.0.1", b_port), audio_pt=b_pt)
                )
                engine.bridge(sid, sid + "a", sid + "b")
                sessions.append(sid)
                ports.append((la.local_port, lb.local_port))
            out.write(json.dumps({"ports": ports}) + "\n")
        elif cmd["op"] == "clear":
            drops: dict[str, int] = {}
            for sid in sessions:
                for st in engine.stats(sid):
                    for k, v in st.drops.items():
                        drops[k] = drops.get(k, 0) + v
                engine.close_session(sid)
            sessions.clear()
            out.write(json.dumps({"drops": drops}) + "\n")
        elif cmd["op"] == "profile":
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
            await asyncio.sleep(cmd["seconds"])
            prof.disable()
            prof.dump_stats(cmd["path"])
            out.write(json.dumps({"profiled": cmd["path"]}) + "\n")
        else:
            break
        out.flush()
    await engine.close()


# --------------------------------------------------------------------- timestamp codec
def digit_codes(table: bytes | None) -> tuple[bytes, bytes]:
    """Translation tables for the send stamp: ASCII hex digit -> G.711 code on the way
    out, and (after ``table`` transcoded it) G.711 code -> digit value on the way in.
    Both directions are a single ``bytes.translate`` (C speed), so the generator spends
    its time sending and receiving, not formatting."""
    codes: list[int] = []
    seen: set[int] = set()
    for c in range(0x10, 0x100):
        image = table[c] if table is not None else c
        if image not in seen:
            seen.add(image)
            codes.append(c)
        if len(codes) == 16:
            break
    encode = bytearray(range(256))
    decode = bytearray(256)
    for value, (digit, code) in enumerate(zip(b"0123456789abcdef", codes, strict=True)):
        encode[digit] = code
        decode[table[code] if table is not None else code] = value
    return bytes(encode), bytes(decode)


def stamp(us: int, encode: bytes) -> bytes:
    return (b"%012x" % (us & 0xFFFFFFFFFFFF)).translate(encode)


def unstamp(data: bytes, decode: bytes) -> int:
    # Each byte becomes its digit value 0..15; the hex of those bytes reads "0d0d0d...".
    return int(data[12:24].translate(decode).hex()[1::2], 16)


# --------------------------------------------------------------------- load generator
def generator(
    streams: list[tuple[socket.socket, tuple[str, int], int, int, bytes, bytes]],
    decoders: dict[int, bytes],
    t_start: float,
    ticks: int,
    slots: int,
    drain: float,
    wfd: int,
) -> None:
    """Send every stream's packets on schedule, read relayed ones between bursts."""
    ep = select.epoll()
    by_fd: dict[int, tuple[socket.socket, bytes]] = {}
    for sock, _dest, _ssrc, _pt, _codes, _filler in streams:
        ep.register(sock.fileno(), select.EPOLLIN)
    for sock, _dest, _ssrc, _pt, _codes, _filler in streams:
        by_fd[sock.fileno()] = (sock, decoders[sock.fileno()])
    n = len(streams)
    chunks = [streams[j * n // slots : (j + 1) * n // slots] for j in range(slots)]
    received = 0
    bad = 0
    latencies: list[int] = []
    sent = 0
    send_err = 0
    max_late = 0.0
    mono = time.monotonic
    mono_us = time.monotonic_ns
    pack = HDR.pack
    dontwait = socket.MSG_DONTWAIT

    def drain_until(deadline: float) -> None:
        nonlocal received, bad
        while True:
            timeout = deadline - mono()
            if timeout <= 0:
                timeout = 0
            events = ep.poll(timeout)
            if not events:
                return
            for fd, _ in events:
                sock, decode = by_fd[fd]
                for _ in range(64):
                    try:
                        data = sock.recv(2048, dontwait)
                    except BlockingIOError:
                        break
                    received += 1
                    try:
                        latencies.append((mono_us() // 1000 - unstamp(data, decode)) & MASK48)
                    except ValueError:
                        bad += 1
            if timeout == 0:
                return

    # Bounded by count (ticks) and by time: a generator starved of CPU stops at twice
    # the planned duration instead of running on.
    hard_stop = t_start + 2 * ticks * PTIME + 1.0
    for k in range(ticks):
        if mono() > hard_stop:
            break
        seq = k & 0xFFFF
        ts = (k * 160) & 0xFFFFFFFF
        base = t_start + k * PTIME
        for j in range(slots):
            target = base + j * PTIME / slots
            now = mono()
            if target > now:
                drain_until(target)
            else:
                max_late = max(max_late, now - target)
            for sock, dest, ssrc, pt, codes, filler in chunks[j]:
                try:
                    sock.sendto(
                        pack(0x80, pt, seq, ts, ssrc) + stamp(mono_us() // 1000, codes) + filler,
                        dest,
                    )
                    sent += 1
                except OSError:
                    send_err += 1
    send_elapsed = mono() - t_start
    # Keep reading until everything sent has come back, bounded by time: what is still
    # missing then was lost (or is later than any audio would be useful).
    drain_end = mono() + drain
    while received < sent and mono() < drain_end:
        drain_until(min(drain_end, mono() + 0.05))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    os.write(
        wfd,
        json.dumps(
            {
                "sent": sent,
                "send_err": send_err,
                "received": received,
                "bad": bad,
                "max_late": max_late,
                "send_elapsed": send_elapsed,
                "latencies": latencies,
                "cpu_s": ru.ru_utime + ru.ru_stime,
            }
        ).encode(),
    )
    os.close(wfd)


# --------------------------------------------------------------------- driver
def proc_cpu_s(pid: int) -> float:
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for t in tids:
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


def machine_cpu() -> tuple[float, float]:
    with open("/proc/uptime") as f:
        up, idle = (float(x) for x in f.read().split())
    return up * (os.cpu_count() or 1), idle


def udp_rcvbuf_errors() -> int:
    with open("/proc/net/snmp") as f:
        lines = [line.split() for line in f if line.startswith("Udp:")]
    return dict(zip(lines[0][1:], (int(x) for x in lines[1][1:]), strict=True)).get(
        "RcvbufErrors", 0
    )


class Relay:
    def __init__(self, args: argparse.Namespace) -> None:
        cmd = [sys.executable, os.path.abspath(__file__), "serve"]
        cmd += ["--port-min", str(args.port_min), "--port-max", str(args.port_max)]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        self.pid = int(self.request(None)["ready"])

    def request(self, cmd: dict[str, Any] | None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if cmd is not None:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"relay process exited (rc={self.proc.poll()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def percentile(values: list[int], p: float) -> float:
    if not values:
        return float("nan")
    values.sort()
    return float(values[min(len(values) - 1, int(p * len(values)))])


def run_step(relay: Relay, n: int, args: argparse.Namespace) -> dict[str, Any]:
    a_socks: list[socket.socket] = []
    b_socks: list[socket.socket] = []
    for _ in range(n):
        for group in (a_socks, b_socks):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            group.append(s)
    calls = [
        (a.getsockname()[1], b.getsockname()[1]) for a, b in zip(a_socks, b_socks, strict=True)
    ]
    ports = relay.request({"op": "setup", "calls": calls, "transcode": args.transcode})["ports"]
    # A sends PCMU; B receives it as PCMA when transcoding (and sends PCMA back).
    to_b = PCMU_TO_PCMA if args.transcode else None
    to_a = PCMA_TO_PCMU if args.transcode else None
    ucodes, b_decode = digit_codes(to_b)
    acodes, a_decode = digit_codes(to_a)
    b_pt = 8 if args.transcode else 0
    filler_u = b"\xff" * (PAYLOAD_LEN - 12)
    filler_b = (b"\xd5" if args.transcode else b"\xff") * (PAYLOAD_LEN - 12)
    per_gen: list[list[Any]] = [[] for _ in range(args.generators)]
    decoders: list[dict[int, bytes]] = [{} for _ in range(args.generators)]
    for i, ((a, b), (pa, pb)) in enumerate(
        zip(zip(a_socks, b_socks, strict=True), ports, strict=True)
    ):
        g = i % args.generators
        per_gen[g].append((a, ("127.0.0.1", pa), 0x10000 + 2 * i, 0, ucodes, filler_u))
        per_gen[g].append((b, ("127.0.0.1", pb), 0x10001 + 2 * i, b_pt, acodes, filler_b))
        decoders[g][a.fileno()] = a_decode
        decoders[g][b.fileno()] = b_decode
    ticks = int(args.duration / PTIME)
    t_start = time.monotonic() + 0.5
    pipes = []
    pids = []
    for g in range(args.generators):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                generator(per_gen[g], decoders[g], t_start, ticks, args.slots, args.drain, w)
            finally:
                os._exit(0)
        os.close(w)
        pipes.append(r)
        pids.append(pid)
    if args.profile:
        relay.request(
            {"op": "profile", "seconds": min(5.0, args.duration), "path": f"relay-{n}.prof"}
        )
    m0, cpu0, err0 = machine_cpu(), proc_cpu_s(relay.pid), udp_rcvbuf_errors()
    results = []
    for r, pid in zip(pipes, pids, strict=True):
        chunks = []
        while True:
            d = os.read(r, 1 << 20)
            if not d:
                break
            chunks.append(d)
        os.close(r)
        os.waitpid(pid, 0)
        results.append(json.loads(b"".join(chunks)))
    m1, cpu1, err1 = machine_cpu(), proc_cpu_s(relay.pid), udp_rcvbuf_errors()
    drops = relay.request({"op": "clear"})["drops"]
    for s in a_socks + b_socks:
        s.close()
    # The send phase as it really ran: a starved generator stretches it.
    elapsed = max(ticks * PTIME, max(x["send_elapsed"] for x in results))
    sent = sum(x["sent"] for x in results)
    received = sum(x["received"] for x in results)
    lat: list[int] = [v for x in results for v in x["latencies"]]
    relay_cpu = cpu1 - cpu0
    busy = (m1[0] - m0[0]) - (m1[1] - m0[1])
    return {
        "calls": n,
        "streams": 2 * n,
        "transcode": args.transcode,
        "sent": sent,
        "received": received,
        "target_pps": 100 * n,
        "sent_pps": round(sent / elapsed, 1),
        "relayed_pps": round(received / elapsed, 1),
        "loss_pct": round(100.0 * (sent - received) / max(1, sent), 4),
        "latency_p50_ms": round(percentile(lat, 0.50) / 1000, 3),
        "latency_p99_ms": round(percentile(lat, 0.99) / 1000, 3),
        # CPU over the whole window (lead-in, send phase, drain) against the send phase.
        "relay_cpu_pct": round(100.0 * relay_cpu / elapsed, 1),
        "relay_cpu_pct_per_stream": round(100.0 * relay_cpu / elapsed / (2 * n), 4),
        "relay_us_per_packet": round(1e6 * relay_cpu / max(1, received), 2),
        "generator_cpu_s": round(sum(x["cpu_s"] for x in results), 2),
        "generator_max_late_ms": round(1000 * max(x["max_late"] for x in results), 2),
        "machine_busy_pct": round(100.0 * busy / max(1e-9, m1[0] - m0[0]), 1),
        "rcvbuf_errors": err1 - err0,
        "bad_payloads": sum(x["bad"] for x in results),
        "relay_drops": drops,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", nargs="?", default="run", choices=["run", "serve"])
    ap.add_argument("--calls", default="100,200,400,600,800,1000")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--drain", type=float, default=2.0, help="max seconds to wait for stragglers")
    ap.add_argument("--slots", type=int, default=10, help="send bursts per 20 ms")
    ap.add_argument("--generators", type=int, default=2)
    ap.add_argument("--transcode", action="store_true", help="PCMU on leg A, PCMA on leg B")
    ap.add_argument("--port-min", type=int, default=20000)
    ap.add_argument("--port-max", type=int, default=29999)
    ap.add_argument("--max-loss", type=float, default=0.1, help="percent; the ramp stops above")
    ap.add_argument("--profile", action="store_true", help="cProfile the relay for 5 s per step")
    ap.add_argument("--json", help="write all steps to this file")
    args = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.mode == "serve":
        from sip2uc_media.rtp.aio import run

        run(serve(args))
        return
    relay = Relay(args)
    steps = []
    try:
        for n in (int(x) for x in args.calls.split(",")):
            r = run_step(relay, n, args)
            steps.append(r)
            print(
                f"calls={n:>5} streams={2 * n:>5} {'PCMU<->PCMA' if args.transcode else 'PCMU'} "
                f"in={r['sent_pps']:>8}/s out={r['relayed_pps']:>8}/s loss={r['loss_pct']}% "
                f"lat p50={r['latency_p50_ms']}ms p99={r['latency_p99_ms']}ms "
                f"relayCPU={r['relay_cpu_pct']}% ({r['relay_us_per_packet']} us/pkt, "
                f"{r['relay_cpu_pct_per_stream']}%/stream) machine={r['machine_busy_pct']}% "
                f"genCPU={r['generator_cpu_s']}s late={r['generator_max_late_ms']}ms "
                f"rcvbufErr={r['rcvbuf_errors']} drops={r['relay_drops']}",
                flush=True,
            )
            if r["loss_pct"] > args.max_loss:
                break
            time.sleep(1)
    finally:
        relay.stop()
        if args.json:
            with open(args.json, "w") as f:
                json.dump(steps, f, indent=1)


if __name__ == "__main__":
    main()
