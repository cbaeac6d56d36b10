#!/usr/bin/env python3
"""Authenticated REGISTER throughput of sip2uc (control plane + sidecar), stepped rates, SIPp.

Prints one line per step: achieved rate, failed %, retransmissions, p50/p99 response time of
each response (rtd 1 = the 401, rtd 2 = the 200) from SIPp -trace_rtt, and the CPU used by the
sidecar and control-plane processes (exact, from /proc/PID/task/*/schedstat). No assertions.

    .venv/bin/python bench/register/register_bench.py --users 2000 --rates 250,500,1000,1500,2000
    .venv/bin/python bench/register/register_bench.py --kamailio --rates 2000,5000

--kamailio runs the reference registrar (Kamailio 5.6, in-memory usrloc, digest against a fixed
password) from <anchors>/kamailio/registrar.cfg on 127.0.0.1:5070 with the same
SIPp scenario, so that the two can be compared on the same machine in the same session.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sip2uc_media.gc_policy import tune_for_serving

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SCENARIO = ROOT / "tests" / "interop" / "sipp" / "register_auth.xml"
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


async def serve_sidecar(control: str, token: str, data_dir: Path, port: int) -> None:
    from sip2uc_media.sidecar import Sidecar, SidecarConfig, Transport

    sidecar = Sidecar(
        SidecarConfig(
            control=control,
            token=token,
            name="bench",
            sip_listen=f"127.0.0.1:{port}",
            data_dir=data_dir,
            # SIPp answers only the first challenge and computes MD5 only.
            digest_algorithms=("MD5",),
        )
    )
    await sidecar.start()
    tune_for_serving()
    assert sidecar.control is not None
    await sidecar.control.wait_up()
    print(json.dumps({"udp": sidecar.listen_addresses[Transport.UDP][1]}), flush=True)
    await asyncio.Event().wait()


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
        asyncio.run(serve_sidecar(argv[1], argv[2], Path(argv[3]), int(argv[4])))


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


def run_step(
    target: str, users_csv: Path, rate: int, seconds: int, work: Path, pids: dict[str, int]
) -> dict[str, object]:
    step = work / f"r{rate}"
    step.mkdir(parents=True, exist_ok=True)
    count = rate * seconds
    before = {name: cpu_ns([pid]) for name, pid in pids.items()}
    started = time.perf_counter()
    subprocess.run(
        [
            "sipp",
            target,
            "-sf",
            str(SCENARIO),
            "-inf",
            str(users_csv),
            "-i",
            "127.0.0.1",
            "-p",
            "0",
            "-r",
            str(rate),
            "-m",
            str(count),
            "-timeout",
            f"{seconds + 30}s",
            "-timeout_error",
            "-nostdin",
            "-buff_size",
            "4194304",
            "-max_socket",
            "1",
            "-trace_stat",
            "-fd",
            "1",
            "-trace_err",
            "-trace_rtt",
            "-rtt_freq",
            "100",
            "-recv_timeout",
            "8000",
        ],
        cwd=step,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=seconds + 60,
        check=False,
    )
    elapsed = time.perf_counter() - started
    after = {name: cpu_ns([pid]) for name, pid in pids.items()}
    stats = sorted(step.glob("*_.csv")) or sorted(step.glob("*.csv"))
    stat_rows = [r for r in (stats[0].read_text().splitlines() if stats else []) if r]
    header = stat_rows[0].split(";") if stat_rows else []
    last = stat_rows[-1].split(";") if len(stat_rows) > 1 else []
    field = dict(zip(header, last, strict=False))
    ok = int(field.get("SuccessfulCall(C)", 0) or 0)
    failed = int(field.get("FailedCall(C)", 0) or 0)
    retrans = int(field.get("Retransmissions(C)", 0) or 0)
    rtts: dict[str, list[float]] = {}
    for path in step.glob("*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 3:
                rtts.setdefault(parts[2].strip(), []).append(float(parts[1]))
    return {
        "rate": rate,
        "achieved": round(ok / elapsed, 1),
        "ok": ok,
        "failed_pct": round(100 * failed / max(1, ok + failed), 2),
        "retransmissions": retrans,
        "rtt_ms": {k: (percentile(v, 50), percentile(v, 99)) for k, v in sorted(rtts.items())},
        "cpu_pct": {
            name: round(100 * (after[name] - before[name]) / 1e9 / elapsed, 1) for name in pids
        },
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        run_server(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--rates", default="250,500,1000,1500,2000,3000")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--kamailio", action="store_true", help="measure the reference instead")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if shutil.which("sipp") is None:
        raise SystemExit("sipp is not installed (Debian package sip-tester)")
    work = Path(tempfile.mkdtemp(prefix="sip2uc-register-bench-"))
    users_csv = work / "users.csv"
    users_csv.write_text(
        "SEQUENTIAL\n" + "".join(f"u{100000 + i};{PASSWORD};3600\n" for i in range(args.users))
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
                ["sidecar", str(info["address"]), str(info["token"]), str(work / "sidecar"), "0"],
                work / "sidecar.log",
            )
            processes.append(sidecar)
            target = f"127.0.0.1:{sinfo['udp']}"
            pids = {"sidecar": sidecar.pid, "control": control.pid}
            print(f"sip2uc sidecar on {target} (uvloop); work dir {work}")
        # Kamailio's pid is the main process; its children are separate processes.
        for rate in (int(r) for r in args.rates.split(",")):
            if args.kamailio:
                pids = {f"kamailio-{i}": p for i, p in enumerate(kamailio_pids(processes[0].pid))}
            result = run_step(target, users_csv, rate, args.seconds, work, pids)
            cpu = result["cpu_pct"]
            assert isinstance(cpu, dict)
            if args.kamailio:
                cpu = {"kamailio": round(sum(cpu.values()), 1)}
            print(
                f"rate {rate:>5}/s  achieved {result['achieved']:>7}/s  ok {result['ok']:>6}  "
                f"failed {result['failed_pct']:>5}%  retrans {result['retransmissions']:>5}  "
                f"rtt p50/p99 ms {result['rtt_ms']}  cpu% of one core {cpu}",
                flush=True,
            )
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
