#!/usr/bin/env python3
"""Calls per second through sip2uc (control plane + sidecar), stepped rates, SIPp.

The callee is one SIPp UAS: it first registers every callee user from its port (SIPp instance
one, which then exits), then answers on that same port (instance two, `uas_answer.xml`: 180,
20 ms, 200). The caller is a SIPp UAC (`uac_auth.xml`): INVITE, 407, INVITE with MD5 digest,
200, ACK, hold for --hold-ms, BYE. Each step is bounded by -m rate*seconds and -timeout.

Prints one line per step: achieved rate, failed %, retransmissions, INVITE->200 p50/p99 (of the
authenticated INVITE, SIPp -trace_rtt, 1 ms resolution) and CPU per process (exact, from
/proc/PID/task/*/schedstat). No assertions.

    .venv/bin/python bench/calls/calls_bench.py --rates 100,200,300,400 --seconds 10
    .venv/bin/python bench/calls/calls_bench.py --kamailio --rates 300,1000,2000 --seconds 10
    .venv/bin/python bench/calls/calls_bench.py --trunk --rates 100,200 --seconds 10

--trunk sends the handsets' calls out a trunk instead: sip2uc routes each dialled E.164 number
to a trunk whose far end is that same reference proxy, which passes it to the UAS (handset ->
sidecar -> trunk -> Kamailio -> SIPp UAS); compare with --kamailio at the same rates.

--kamailio drives the reference stateful proxy (<anchors>/kamailio/proxy.cfg,
4 UDP children, 127.0.0.1:5070, forwarding to the UAS on 127.0.0.1:5090) with `uac_plain.xml`,
the same caller without the 407 round, so that the two can be compared in one session.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
sys.path.insert(0, str(ROOT / "bench" / "register"))

import register_bench  # noqa: E402  (the REGISTER bench's user creation and measuring)

# The reference setups live beside the checkout (../shared/bench/anchors) unless
# SIP2UC_BENCH_ANCHORS names another directory.
ANCHORS = Path(os.environ.get("SIP2UC_BENCH_ANCHORS", ROOT.parent / "shared" / "bench" / "anchors"))
KAMAILIO_PROXY = ANCHORS / "kamailio" / "proxy.cfg"
KAMAILIO_UAS_PORT = 5090  # UAS_ADDR in proxy.cfg
REGISTER_SCENARIO = ROOT / "tests" / "interop" / "sipp" / "register_auth.xml"
PASSWORD = register_bench.PASSWORD


# --- server processes -----------------------------------------------------------------------


async def serve_sidecar(control: str, token: str, data_dir: Path) -> None:
    from sip2uc_media.sidecar import Sidecar, SidecarConfig, Transport

    sidecar = Sidecar(
        SidecarConfig(
            control=control,
            token=token,
            name="bench",
            sip_listen="127.0.0.1:0",
            data_dir=data_dir,
            digest_algorithms=("MD5",),  # SIPp computes MD5 only
            # 20,000 ports carry 5,000 legs: the control plane's channel limit is the bound.
            rtp_ports=(20000, 39999),
        )
    )
    await sidecar.start()
    tune_for_serving()
    assert sidecar.control is not None
    await sidecar.control.wait_up()
    print(json.dumps({"udp": sidecar.listen_addresses[Transport.UDP][1]}), flush=True)
    # What the intake shed and why, twice a second (see the REGISTER bench).
    await register_bench.write_intake_stats(sidecar, data_dir / "intake.jsonl", 0.5)


def run_server(argv: list[str]) -> None:
    import logging

    from sip2uc_media.sidecar import install_uvloop

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    install_uvloop()
    asyncio.run(serve_sidecar(argv[0], argv[1], Path(argv[2])))


async def set_channel_limit(address: str, token: str, limit: int) -> None:
    """Raise the legs-per-sidecar limit through AdminService, as an administrator would."""
    import grpc
    from google.protobuf import field_mask_pb2
    from sip2uc.v1 import admin_pb2, admin_pb2_grpc

    async with grpc.aio.insecure_channel(address) as channel:
        await admin_pb2_grpc.AdminServiceStub(channel).UpdateSettings(
            admin_pb2.UpdateSettingsRequest(
                settings=admin_pb2.Settings(default_channel_limit=limit),
                update_mask=field_mask_pb2.FieldMask(paths=["default_channel_limit"]),
            ),
            metadata=(("authorization", f"Bearer {token}"),),
        )


def spawn_sidecar(
    address: str, token: str, data_dir: Path, log: Path
) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", address, token, str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"sidecar did not start, see {log}")
    return process, int(json.loads(line)["udp"])


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def udp_port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def start_uas(
    target: str, port: int, work: Path, seconds: int, *, answer_options: bool = False
) -> subprocess.Popen[bytes]:
    """The callee; with `answer_options` it also answers OPTIONS 200 (a trunk's keep-alive
    reaches it through the proxy)."""
    uas_dir = work / "uas"
    uas_dir.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [
            "sipp",
            target,
            "-sf",
            str(HERE / "uas_answer.xml"),
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-mp",
            str(free_udp_port() & ~1),
            "-nostdin",
            "-buff_size",
            "4194304",
            "-timeout",
            f"{seconds}s",
            "-trace_err",
            *(["-aa"] if answer_options else []),
        ],
        cwd=uas_dir,
        stdout=subprocess.DEVNULL,
        stderr=(uas_dir / "stderr").open("w"),
    )
    deadline = time.monotonic() + 10
    while not udp_port_taken(port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the SIPp UAS did not start, see {uas_dir}")
        time.sleep(0.05)
    return process


def register_callees(target: str, port: int, callees: list[str], work: Path) -> None:
    """Register every callee from `port`, the port the UAS then answers on."""
    reg_dir = work / "register"
    reg_dir.mkdir(exist_ok=True)
    users = reg_dir / "callees.csv"
    users.write_text("SEQUENTIAL\n" + "".join(f"{u};{PASSWORD};3600\n" for u in callees))
    result = subprocess.run(
        [
            "sipp",
            target,
            "-sf",
            str(REGISTER_SCENARIO),
            "-inf",
            str(users),
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-r",
            "200",
            "-m",
            str(len(callees)),
            "-timeout",
            "60s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ],
        cwd=reg_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=90,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"registering the callees failed ({result.returncode}), see {reg_dir}")


async def add_trunk(address: str, token: str, proxy_port: int) -> None:
    """A trunk from the bench sidecar to the reference proxy; returns once it is up."""
    import grpc
    from sip2uc.v1 import trunks_pb2, trunks_pb2_grpc

    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = trunks_pb2_grpc.TrunkServiceStub(channel)
        await stub.CreateTrunk(
            trunks_pb2.CreateTrunkRequest(
                trunk_id="reference",
                trunk=trunks_pb2.Trunk(
                    address="127.0.0.1",
                    port=proxy_port,
                    sidecar="bench",
                    options_interval_seconds=5,
                ),
            ),
            metadata=metadata,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = await stub.GetTrunk(
                trunks_pb2.GetTrunkRequest(name="reference"), metadata=metadata
            )
            if got.trunk.status.state == trunks_pb2.TRUNK_STATE_UP:
                return
            await asyncio.sleep(0.2)
    raise SystemExit("the trunk to the reference proxy did not come up")


def start_kamailio(log: Path) -> subprocess.Popen[bytes]:
    """The reference stateful proxy, started like the REGISTER bench's registrar."""
    return register_bench.start_kamailio(log, KAMAILIO_PROXY, defines=())


# --- measuring ------------------------------------------------------------------------------


def run_step(
    target: str,
    scenario: Path,
    pairs_csv: Path,
    rate: int,
    seconds: int,
    hold_ms: int,
    work: Path,
    pids: dict[str, int],
    tag: str = "r",
) -> dict[str, object]:
    before = {name: register_bench.cpu_ns([pid]) for name, pid in pids.items()}
    run = register_bench.run_sipp(
        target,
        scenario,
        pairs_csv,
        work / f"{tag}{rate}",
        rate=rate,
        count=rate * seconds,
        limit=int(rate * (hold_ms / 1000 + 3)),
        timeout=seconds + hold_ms // 1000 + 30,
        local_port=free_udp_port(),
        extra=("-mp", str(free_udp_port() & ~1), "-d", str(hold_ms), "-recv_timeout", "10000"),
    )
    rtts = run.rtts.get("1", [])
    # An answered call got the 200 to its INVITE (the scenario's first 200; the BYE's comes
    # later); a refused one got a 503 and ended there.
    answered = next(
        (v for k, v in sorted(run.counts.items(), key=_index) if k.endswith("_200_Recv")), 0
    )
    refused = register_bench.shed_counts(run)
    # The calls of a step take about seconds + hold; the rate is over the sending phase.
    sending = max(1e-9, run.elapsed - hold_ms / 1000)
    return {
        "rate": rate,
        "achieved": round(answered / sending, 1),
        "ok": answered,
        "refused": refused,
        "failed_pct": round(100 * (run.failed + refused) / max(1, run.ok + run.failed), 2),
        "retransmissions": run.retransmissions,
        "invite_200_ms": (
            register_bench.percentile(rtts, 50),
            register_bench.percentile(rtts, 99),
        ),
        "cpu_pct": {
            **register_bench.cpu_pct(before, pids, run.elapsed),
            "sipp": run.sipp_cpu,
        },
    }


def _index(item: tuple[str, int]) -> int:
    """The scenario position of a -trace_counts column ("10_200_Recv" -> 10)."""
    head = item[0].split("_", 1)[0]
    return int(head) if head.isdigit() else -1


def print_step(result: dict[str, object], label: str = "rate") -> None:
    cpu = result["cpu_pct"]
    assert isinstance(cpu, dict)
    children = [v for k, v in cpu.items() if k.startswith("kamailio-")]
    if children:
        cpu = {k: v for k, v in cpu.items() if not k.startswith("kamailio-")}
        cpu["kamailio"] = round(sum(children), 1)
    print(
        f"{label} {result['rate']:>5}/s  answered {result['achieved']:>7}/s  "
        f"ok {result['ok']:>6}  refused (503) {result['refused']:>5}  "
        f"failed {result['failed_pct']:>5}%  retrans {result['retransmissions']:>5}  "
        f"INVITE->200 p50/p99 ms {result['invite_200_ms']}  cpu% of one core {cpu}",
        flush=True,
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        run_server(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--pairs", type=int, default=200, help="caller and callee users each")
    parser.add_argument("--rates", default="100,200,300,400")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--hold-ms", type=int, default=1000)
    parser.add_argument(
        "--channel-limit",
        type=int,
        default=0,
        help="set the control plane's default_channel_limit (legs per sidecar) before the run; "
        "0 keeps the server default (1600)",
    )
    parser.add_argument("--kamailio", action="store_true", help="measure the reference instead")
    parser.add_argument(
        "--trunk",
        action="store_true",
        help="call numbers out a trunk to the reference proxy and its UAS (handset -> trunk -> "
        "Kamailio -> UAS)",
    )
    parser.add_argument(
        "--overload",
        action="store_true",
        help="after the stepped rates, twice the highest clean one (< 1 %% failed or refused)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if shutil.which("sipp") is None:
        raise SystemExit("sipp is not installed (Debian package sip-tester)")
    work = Path(tempfile.mkdtemp(prefix="sip2uc-calls-bench-"))
    callers = [f"u{100000 + i}" for i in range(args.pairs)]
    callees = [f"u{100000 + args.pairs + i}" for i in range(args.pairs)]
    pairs_csv = work / "pairs.csv"
    if args.trunk:
        # Numbers no user has: the dial plan sends them to the trunk.
        callees = [f"+4930{2000000 + i}" for i in range(args.pairs)]
    pairs_csv.write_text(
        "SEQUENTIAL\n"
        + "".join(f"{a};{PASSWORD};{b}\n" for a, b in zip(callers, callees, strict=True))
    )
    processes: list[subprocess.Popen[str] | subprocess.Popen[bytes]] = []
    longest = len(args.rates.split(",")) * (args.seconds + args.hold_ms // 1000 + 40) + 60
    try:
        if args.kamailio:
            kam = start_kamailio(work / "kamailio.log")
            processes.append(kam)
            target = "127.0.0.1:5070"
            uas = start_uas(target, KAMAILIO_UAS_PORT, work, longest)
            processes.append(uas)
            scenario = HERE / "uac_plain.xml"
            print(f"kamailio stateful proxy (4 UDP children) on {target}; work dir {work}")
        else:
            control, info = register_bench.spawn(
                ["control", str(work / "control")], work / "control.log"
            )
            processes.append(control)
            took = asyncio.run(
                register_bench.create_users(
                    str(info["address"]), str(info["token"]), 2 * args.pairs
                )
            )
            print(f"created {2 * args.pairs} users in {took:.1f} s")
            if args.channel_limit:
                asyncio.run(
                    set_channel_limit(str(info["address"]), str(info["token"]), args.channel_limit)
                )
                print(f"default_channel_limit set to {args.channel_limit} legs per sidecar")
            sidecar, port = spawn_sidecar(
                str(info["address"]),
                str(info["token"]),
                work / "sidecar",
                work / "sidecar.log",
            )
            processes.append(sidecar)
            target = f"127.0.0.1:{port}"
            scenario = HERE / "uac_auth.xml"
            pids = {"sidecar": sidecar.pid, "control": control.pid}
            if args.trunk:
                kam = start_kamailio(work / "kamailio.log")
                processes.append(kam)
                uas = start_uas(
                    "127.0.0.1:5070", KAMAILIO_UAS_PORT, work, longest, answer_options=True
                )
                processes.append(uas)
                asyncio.run(add_trunk(str(info["address"]), str(info["token"]), 5070))
                print(
                    f"sip2uc sidecar on {target} (uvloop), trunk to the kamailio stateful proxy "
                    f"on 127.0.0.1:5070, UAS on :{KAMAILIO_UAS_PORT}; work dir {work}"
                )
            else:
                uas_port = free_udp_port()
                register_callees(target, uas_port, callees, work)
                uas = start_uas(target, uas_port, work, longest)
                processes.append(uas)
                print(
                    f"sip2uc sidecar on {target} (uvloop), callees on :{uas_port}; work dir {work}"
                )
        clean_rate, clean = 0, 0.0
        for rate in (int(r) for r in args.rates.split(",")):
            if args.kamailio:
                pids = {
                    f"kamailio-{i}": p
                    for i, p in enumerate(register_bench.kamailio_pids(processes[0].pid))
                }
            elif args.trunk:
                pids.update(
                    (f"kamailio-{i}", p)
                    for i, p in enumerate(register_bench.kamailio_pids(processes[2].pid))
                )
            pids["uas"] = uas.pid
            result = run_step(
                target, scenario, pairs_csv, rate, args.seconds, args.hold_ms, work, pids
            )
            print_step(result)
            failed, achieved = result["failed_pct"], result["achieved"]
            assert isinstance(failed, float) and isinstance(achieved, float)
            if failed < 1.0 and rate > clean_rate:
                clean_rate, clean = rate, achieved
        if args.overload:
            if not clean_rate:
                print("no stepped rate was clean: no overload step", flush=True)
                return
            result = run_step(
                target,
                scenario,
                pairs_csv,
                2 * clean_rate,
                args.seconds,
                args.hold_ms,
                work,
                pids,
                tag="overload",
            )
            print_step(result, label="overload")
            achieved = result["achieved"]
            assert isinstance(achieved, float)
            print(
                f"goodput at 2x the clean rate ({clean_rate}/s offered, {clean:.1f}/s "
                f"answered): {achieved:.1f}/s = {100 * achieved / clean:.1f} % of clean",
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


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
