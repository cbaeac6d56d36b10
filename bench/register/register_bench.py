#!/usr/bin/env python3
"""Authenticated REGISTER throughput of sip2uc (control plane + sidecar), stepped rates, SIPp.

Prints one line per step: achieved rate, failed %, retransmissions, p50/p99 response time of
each response (rtd 1 = the 401, rtd 2 = the 200) from SIPp -trace_rtt, and the CPU used by the
sidecar and control-plane processes (exact, from /proc/PID/task/*/schedstat). No assertions.

    .venv/bin/python bench/register/register_bench.py --users 2000 --rates 250,500,1000,1500,2000
    .venv/bin/python bench/register/register_bench.py --kamailio --rates 2000,5000

--overload adds the overload steps after the stepped rates: the clean capacity C is the
highest stepped rate with < 1 % failures (measured in this run), then SIPp handsets that
retransmit per RFC 3261 and honour 503 Retry-After (`register_retry.xml`) register at 2C and
4C for --seconds; goodput is the registrations completed per second during that window, and
every handset must eventually register. Then the avalanche: --avalanche N fresh users all
start at once (SIPp at N calls per 100 ms); the time until all are registered is compared with
N / C.

    .venv/bin/python bench/register/register_bench.py --users 12000 --rates 1000,1500,2000 \
        --seconds 10 --overload --avalanche 5000

--kamailio runs the reference registrar (Kamailio 5.6, in-memory usrloc, digest against a fixed
password) from <anchors>/kamailio/registrar.cfg on 127.0.0.1:5070 with the same
SIPp scenarios, so that the two can be compared on the same machine in the same session.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sip2uc_media.gc_policy import tune_for_serving

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SCENARIO = ROOT / "tests" / "interop" / "sipp" / "register_auth.xml"
RETRY_SCENARIO = HERE / "register_retry.xml"
# The reference setups live beside the checkout (../shared/bench/anchors) unless
# SIP2UC_BENCH_ANCHORS names another directory.
ANCHORS = Path(os.environ.get("SIP2UC_BENCH_ANCHORS", ROOT.parent / "shared" / "bench" / "anchors"))
KAMAILIO_CFG = ANCHORS / "kamailio" / "registrar.cfg"
PASSWORD = "secret"  # the Kamailio reference config uses one password for every user


# --- server processes -----------------------------------------------------------------------


async def serve_control(data_dir: Path) -> None:
    from sip2uc_control.app import ControlConfig, ControlPlane

    control = ControlPlane(
        ControlConfig(data_dir=data_dir, grpc_listen="127.0.0.1:0", metrics_listen=None)
    )
    await control.start()
    tune_for_serving()
    print(json.dumps({"address": control.address, "token": control.token}), flush=True)
    await asyncio.Event().wait()


async def serve_sidecar(
    control: str, token: str, data_dir: Path, port: int, overrides: dict[str, object]
) -> None:
    from sip2uc_media.sidecar import Sidecar, SidecarConfig, Transport
    from sip2uc_media.sidecar.overload import OverloadSettings

    overload = overrides.pop("overload", {})
    assert isinstance(overload, dict)
    stats_every = float(overrides.pop("stats_every", 0.0))  # type: ignore[arg-type]
    sidecar = Sidecar(
        SidecarConfig(
            control=control,
            token=token,
            name="bench",
            sip_listen=f"127.0.0.1:{port}",
            data_dir=data_dir,
            # SIPp answers only the first challenge and computes MD5 only.
            digest_algorithms=("MD5",),
            overload=OverloadSettings(**overload),
            **overrides,  # type: ignore[arg-type]
        )
    )
    await sidecar.start()
    tune_for_serving()
    assert sidecar.control is not None
    await sidecar.control.wait_up()
    print(json.dumps({"udp": sidecar.listen_addresses[Transport.UDP][1]}), flush=True)
    if stats_every:
        await write_intake_stats(sidecar, data_dir / "intake.jsonl", stats_every)
    await asyncio.Event().wait()


async def write_intake_stats(sidecar: Any, path: Path, every: float) -> None:
    """One JSON line per period with the intake's counters (what was shed, and why)."""
    loop = asyncio.get_running_loop()
    intake, edge, control = sidecar.intake, sidecar.edge, sidecar.control
    started = loop.time()
    lag = [0.0]

    async def probe_lag() -> None:
        # The event loop's lateness: how long a 5 ms sleep overran, the worst per period.
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            lag[0] = max(lag[0], loop.time() - before - 0.005)

    prober = asyncio.create_task(probe_lag())
    del prober  # runs as long as the loop does
    with path.open("w") as out:
        while True:
            now = loop.time()
            queue = intake.queue
            in_flight, oldest = control.backlog()
            line = {
                "t": round(now - started, 3),
                "waiting": len(queue),
                "oldest": round(queue.oldest_age(now), 3),
                "rates": [round(r or 0.0) for r in queue.service_rate],
                "per_class": [queue.waiting(r) for r in range(6)],
                "admitted": queue.admitted,
                "refused": {str(k): v for k, v in queue.refused.items() if v},
                "answered_503": intake.answered,
                "known_sources": len(edge.known),
                "transactions": len(edge.transactions),
                "control_in_flight": in_flight,
                "control_oldest": round(oldest, 3),
                "loop_lag_max": round(lag[0], 3),
            }
            lag[0] = 0.0
            out.write(json.dumps(line) + "\n")
            out.flush()
            await asyncio.sleep(every)


def run_server(argv: list[str]) -> None:
    import logging

    from sip2uc_media.sidecar import install_uvloop

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    # Why a control session ended is logged at debug level.
    logging.getLogger("sip2uc_media.sidecar.control_link").setLevel(logging.DEBUG)
    install_uvloop()
    if argv[0] == "control":
        asyncio.run(serve_control(Path(argv[1])))
    else:
        overrides = json.loads(argv[5]) if len(argv) > 5 else {}
        asyncio.run(serve_sidecar(argv[1], argv[2], Path(argv[3]), int(argv[4]), overrides))


def spawn(args: list[str], log: Path) -> tuple[subprocess.Popen[str], dict[str, object]]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", *args],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"server {args[0]} did not start, see {log}")
    info: dict[str, object] = json.loads(line)
    return process, info


async def create_users(address: str, token: str, count: int, concurrency: int = 32) -> float:
    """Creates users u100000... through the public UserService; returns the seconds it took."""
    import grpc
    from sip2uc.v1 import users_pb2, users_pb2_grpc

    metadata = (("authorization", f"Bearer {token}"),)
    started = time.perf_counter()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = users_pb2_grpc.UserServiceStub(channel)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(count):
            queue.put_nowait(100000 + i)

        async def worker() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                await stub.CreateUser(
                    users_pb2.CreateUserRequest(
                        user=users_pb2.User(
                            sip_uri=f"sip:u{n}@sip2uc.local",
                            devices=[
                                users_pb2.Device(
                                    registering=users_pb2.RegisteringDevice(
                                        digest_username=f"u{n}", password=PASSWORD
                                    )
                                )
                            ],
                        )
                    ),
                    metadata=metadata,
                )

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


def start_kamailio(
    log: Path, cfg: Path = KAMAILIO_CFG, defines: tuple[str, ...] = ("WITH_AUTH",)
) -> subprocess.Popen[bytes]:
    """The reference server with 4 UDP children on 127.0.0.1:5070, once it answers OPTIONS."""
    process = subprocess.Popen(
        [
            "kamailio",
            "-f",
            str(cfg),
            "-DD",
            "-E",
            "-m",
            "512",
            "-M",
            "16",
            "-n",
            "4",
            *(arg for define in defines for arg in ("-A", define)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.2)
        port = sock.getsockname()[1]
        ping = (
            "OPTIONS sip:ping@127.0.0.1:5070 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKping\r\n"
            "From: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: ping\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 5\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        for _ in range(50):
            sock.sendto(ping, ("127.0.0.1", 5070))
            with contextlib.suppress(OSError):
                sock.recv(4096)
                return process
    process.kill()
    raise SystemExit(f"kamailio did not answer, see {log}")


# --- measuring ------------------------------------------------------------------------------


def cpu_ns(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
            with contextlib.suppress(OSError):
                total += int(Path(path).read_text().split()[0])
    return total


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


@dataclass
class SippRun:
    """What one SIPp run reports: final counts, per-second cumulative successes, response
    times by rtd, and per-element message counts (-trace_counts)."""

    elapsed: float
    ok: int
    failed: int
    retransmissions: int
    #: (seconds since the start, successful calls so far), one row per -fd period.
    progress: list[tuple[float, int]]
    rtts: dict[str, list[float]]
    #: rtd -> seconds after SIPp's start when the last such response came.
    last_answer: dict[str, float]
    counts: dict[str, int]
    #: SIPp's own CPU, % of one core over the run.
    sipp_cpu: float

    def ok_by(self, seconds: float) -> int:
        """Successful calls by `seconds` after the start (linear between two rows)."""
        before = (0.0, 0)
        for at, ok in self.progress:
            if at >= seconds:
                span = at - before[0]
                share = (seconds - before[0]) / span if span > 0 else 1.0
                return round(before[1] + share * (ok - before[1]))
            before = (at, ok)
        return before[1]


def _epoch(current_time: str) -> float:
    """The epoch seconds at the end of SIPp's CurrentTime column ("date<TAB>time<TAB>epoch")."""
    return float(current_time.rsplit("\t", 1)[-1])


def run_sipp(
    target: str,
    scenario: Path,
    users_csv: Path,
    step: Path,
    *,
    rate: int,
    count: int,
    rate_period_ms: int = 1000,
    limit: int | None = None,
    timeout: int,
    local_port: int = 0,
    extra: tuple[str, ...] = (),
) -> SippRun:
    """One bounded SIPp run (-m count, -timeout) from a fresh directory `step`; `extra` are
    more SIPp options."""
    step.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    sipp = subprocess.Popen(
        [
            "sipp",
            target,
            "-sf",
            str(scenario),
            "-inf",
            str(users_csv),
            "-i",
            "127.0.0.1",
            "-p",
            str(local_port),
            "-r",
            str(rate),
            "-rp",
            str(rate_period_ms),
            "-m",
            str(count),
            "-l",
            str(limit or count),
            "-timeout",
            f"{timeout}s",
            "-timeout_error",
            "-nostdin",
            "-buff_size",
            "4194304",
            "-max_socket",
            "1",
            "-trace_stat",
            "-fd",
            "1",
            "-trace_counts",
            "-trace_err",
            "-trace_rtt",
            "-rtt_freq",
            "100",
            "-recv_timeout",
            "8000",
            *(
                # A late duplicate (a 503 or 401 answering a retransmission, arriving while
                # the handset waits out Retry-After) is ignored, as RFC 3261 §18.1.2 has a
                # client do, instead of failing the call.
                ["-default_behaviors", "all,-abortunexp,-bye"] if scenario == RETRY_SCENARIO else []
            ),
            *extra,
        ],
        cwd=step,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sipp_ns = 0
    deadline = started + timeout + 30
    while sipp.poll() is None:
        # SIPp's CPU, read while it runs (its schedstat is gone once it exits).
        sipp_ns = cpu_ns([sipp.pid]) or sipp_ns
        if time.perf_counter() > deadline:
            sipp.kill()
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    stats = [p for p in sorted(step.glob("*_.csv")) if not p.name.endswith("_counts.csv")]
    rows = [r.split(";") for r in (stats[0].read_text().splitlines() if stats else []) if r]
    header = rows[0] if rows else []
    table = [dict(zip(header, row, strict=False)) for row in rows[1:]]
    last = table[-1] if table else {}
    first = _epoch(table[0]["CurrentTime"]) if table else 0.0
    progress = [
        (_epoch(row["CurrentTime"]) - first, int(row["SuccessfulCall(C)"] or 0)) for row in table
    ]
    rtts: dict[str, list[float]] = {}
    last_answer: dict[str, float] = {}
    for path in step.glob("*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 3:
                rtd = parts[2].strip()
                rtts.setdefault(rtd, []).append(float(parts[1]))
                # Date_ms: milliseconds since SIPp started.
                last_answer[rtd] = max(last_answer.get(rtd, 0.0), float(parts[0]) / 1000)
    counts: dict[str, int] = {}
    for path in step.glob("*_counts.csv"):
        lines = [r.split(";") for r in path.read_text().splitlines() if r]
        if len(lines) > 1:
            for name, value in zip(lines[0], lines[-1], strict=False):
                if value.isdigit():
                    counts[name] = int(value)
    return SippRun(
        elapsed=elapsed,
        ok=int(last.get("SuccessfulCall(C)", 0) or 0),
        failed=int(last.get("FailedCall(C)", 0) or 0),
        retransmissions=int(last.get("Retransmissions(C)", 0) or 0),
        progress=progress,
        rtts=rtts,
        last_answer=last_answer,
        counts=counts,
        sipp_cpu=round(100 * sipp_ns / 1e9 / elapsed, 1),
    )


def cpu_pct(before: dict[str, int], pids: dict[str, int], seconds: float) -> dict[str, float]:
    after = {name: cpu_ns([pid]) for name, pid in pids.items()}
    return {name: round(100 * (after[name] - before[name]) / 1e9 / seconds, 1) for name in pids}


def run_step(
    target: str, users_csv: Path, rate: int, seconds: int, work: Path, pids: dict[str, int]
) -> dict[str, object]:
    """A stepped rate with the plain scenario: a 503 counts as a failure here."""
    before = {name: cpu_ns([pid]) for name, pid in pids.items()}
    run = run_sipp(
        target,
        SCENARIO,
        users_csv,
        work / f"r{rate}",
        rate=rate,
        count=rate * seconds,
        timeout=seconds + 30,
    )
    return {
        "rate": rate,
        "achieved": round(run.ok / run.elapsed, 1),
        "ok": run.ok,
        "failed_pct": round(100 * run.failed / max(1, run.ok + run.failed), 2),
        "retransmissions": run.retransmissions,
        "rtt_ms": {k: (percentile(v, 50), percentile(v, 99)) for k, v in sorted(run.rtts.items())},
        "cpu_pct": {**cpu_pct(before, pids, run.elapsed), "sipp": run.sipp_cpu},
    }


def shed_counts(run: SippRun) -> int:
    """503s the handsets received (SIPp -trace_counts, every element that receives one)."""
    return sum(v for k, v in run.counts.items() if k.endswith("_503_Recv"))


def overload_step(
    target: str,
    users_csv: Path,
    rate: int,
    seconds: int,
    work: Path,
    pids: dict[str, int],
    clean: float,
) -> None:
    """`rate` for `seconds` with handsets that honour Retry-After; prints goodput against the
    clean capacity and how long until every handset was registered."""
    before = {name: cpu_ns([pid]) for name, pid in pids.items()}
    count = rate * seconds
    run = run_sipp(
        target,
        RETRY_SCENARIO,
        users_csv,
        work / f"overload-{rate}",
        rate=rate,
        count=count,
        # Every handset stays a SIPp call while it waits out its Retry-After.
        limit=count,
        timeout=seconds * 12 + 60,
    )
    goodput = run.ok_by(seconds) / seconds
    cpu = cpu_pct(before, pids, run.elapsed)
    print(
        f"overload {rate:>5}/s ({rate / clean:.1f}x clean) for {seconds} s: goodput "
        f"{goodput:7.1f}/s = {100 * goodput / clean:5.1f} % of clean {clean:.1f}/s; "
        f"registered {run.ok}/{count}, failed {run.failed}, 503s {shed_counts(run)}, "
        f"retrans {run.retransmissions}, all done after {run.elapsed:.1f} s; "
        f"rtt p50/p99 ms "
        f"{ {k: (percentile(v, 50), percentile(v, 99)) for k, v in sorted(run.rtts.items())} } "
        f"cpu% {cpu}, sipp {run.sipp_cpu}",
        flush=True,
    )


def avalanche(
    target: str, users_csv: Path, count: int, work: Path, pids: dict[str, int], clean: float
) -> None:
    """`count` handsets start at once; all must be registered within 1.5 x count / clean."""
    before = {name: cpu_ns([pid]) for name, pid in pids.items()}
    run = run_sipp(
        target,
        RETRY_SCENARIO,
        users_csv,
        work / "avalanche",
        rate=count,
        rate_period_ms=100,
        count=count,
        timeout=120,
    )
    predicted = count / clean
    done_at = run.last_answer.get("2", run.elapsed) if run.ok >= count else run.elapsed
    cpu = cpu_pct(before, pids, run.elapsed)
    print(
        f"avalanche {count} handsets at once: registered {run.ok}, failed {run.failed}, "
        f"503s {shed_counts(run)}, retrans {run.retransmissions}; all registered after "
        f"{done_at:.1f} s (SIPp done {run.elapsed:.1f} s) against {predicted:.2f} s predicted by "
        f"the clean capacity ({done_at / predicted:.2f}x, bar 1.5x); cpu% {cpu}, "
        f"sipp {run.sipp_cpu}",
        flush=True,
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        run_server(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--rates", default="250,500,1000,1500,2000,3000")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--kamailio", action="store_true", help="measure the reference instead")
    parser.add_argument(
        "--overload",
        action="store_true",
        help="after the stepped rates, 2x and 4x the highest clean one with handsets that "
        "honour Retry-After",
    )
    parser.add_argument(
        "--avalanche", type=int, default=0, help="then this many fresh users start at once"
    )
    parser.add_argument(
        "--sidecar-config",
        default="{}",
        help="JSON overrides of the sidecar's config, e.g. '{\"overload\": "
        '{"max_queue_delay": 0.5}}\'',
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if shutil.which("sipp") is None:
        raise SystemExit("sipp is not installed (Debian package sip-tester)")
    # SIPp wants a descriptor per open call: every handset waiting out a Retry-After is one.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = Path(tempfile.mkdtemp(prefix="sip2uc-register-bench-"))
    # The avalanche uses users no step registered before: the last --avalanche of them.
    stepped = args.users - args.avalanche
    if stepped < 1:
        raise SystemExit("--users must exceed --avalanche")
    users_csv = work / "users.csv"
    users_csv.write_text(
        "SEQUENTIAL\n" + "".join(f"u{100000 + i};{PASSWORD};3600\n" for i in range(stepped))
    )
    fresh_csv = work / "fresh.csv"
    fresh_csv.write_text(
        "SEQUENTIAL\n"
        + "".join(f"u{100000 + i};{PASSWORD};3600\n" for i in range(stepped, args.users))
    )
    processes: list[subprocess.Popen[str] | subprocess.Popen[bytes]] = []
    try:
        if args.kamailio:
            kam = start_kamailio(work / "kamailio.log")
            processes.append(kam)
            target = "127.0.0.1:5070"
            pids = {"kamailio": kam.pid}
            print(f"kamailio registrar (4 UDP children) on {target}; work dir {work}")
        else:
            control, info = spawn(["control", str(work / "control")], work / "control.log")
            processes.append(control)
            took = asyncio.run(create_users(str(info["address"]), str(info["token"]), args.users))
            print(f"created {args.users} users through UserService.CreateUser in {took:.1f} s")
            sidecar, sinfo = spawn(
                [
                    "sidecar",
                    str(info["address"]),
                    str(info["token"]),
                    str(work / "sidecar"),
                    "0",
                    args.sidecar_config,
                ],
                work / "sidecar.log",
            )
            processes.append(sidecar)
            target = f"127.0.0.1:{sinfo['udp']}"
            pids = {"sidecar": sidecar.pid, "control": control.pid}
            print(f"sip2uc sidecar on {target} (uvloop); work dir {work}")

        def current_pids() -> dict[str, int]:
            # Kamailio's pid is the main process; its children are separate processes.
            if args.kamailio:
                return {f"kamailio-{i}": p for i, p in enumerate(kamailio_pids(processes[0].pid))}
            return pids

        clean_rate, clean = 0, 0.0
        for rate in (int(r) for r in args.rates.split(",")):
            result = run_step(target, users_csv, rate, args.seconds, work, current_pids())
            cpu = result["cpu_pct"]
            assert isinstance(cpu, dict)
            if args.kamailio:
                cpu = {
                    "kamailio": round(sum(v for k, v in cpu.items() if k != "sipp"), 1),
                    "sipp": cpu["sipp"],
                }
            print(
                f"rate {rate:>5}/s  achieved {result['achieved']:>7}/s  ok {result['ok']:>6}  "
                f"failed {result['failed_pct']:>5}%  retrans {result['retransmissions']:>5}  "
                f"rtt p50/p99 ms {result['rtt_ms']}  cpu% of one core {cpu}",
                flush=True,
            )
            failed = result["failed_pct"]
            assert isinstance(failed, float)
            if failed < 1.0 and rate > clean_rate:
                achieved = result["achieved"]
                assert isinstance(achieved, float)
                clean_rate, clean = rate, achieved
        if (args.overload or args.avalanche) and not clean_rate:
            print("no stepped rate was clean: no overload steps", flush=True)
            return
        if args.overload:
            print(
                f"clean capacity: {clean_rate}/s offered, {clean:.1f}/s achieved "
                "(the highest step with < 1 % failures)",
                flush=True,
            )
            for factor in (2, 4):
                overload_step(
                    target,
                    users_csv,
                    factor * clean_rate,
                    args.seconds,
                    work,
                    current_pids(),
                    clean,
                )
        if args.avalanche:
            avalanche(target, fresh_csv, args.avalanche, work, current_pids(), clean)
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def kamailio_pids(main_pid: int) -> list[int]:
    out = [main_pid]
    for status in glob.glob("/proc/[0-9]*/status"):
        with contextlib.suppress(OSError):
            text = Path(status).read_text()
            for line in text.splitlines():
                if line.startswith("PPid:") and int(line.split()[1]) == main_pid:
                    out.append(int(status.split("/")[2]))
    return out


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
