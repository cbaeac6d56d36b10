"""The SIP presence bridge end to end, beside the presence server's own capacity, in one run.

Sets up a real Kamailio presence server (tests/interop/kamailio), a `sip2uc up` whose connector
bridges to it, N users, and a watcher subscribed to every user at Kamailio (one UDP socket,
answering NOTIFYs, remembering what each user's last NOTIFY showed). Then:

1. latency: a scripted handset registers each user in turn (REGISTER, 401, REGISTER with MD5
   digest); one sample is the time from the 200 to the watcher's NOTIFY showing the user open
   (sidecar -> control plane -> watch stream -> bridge -> PUBLISH -> Kamailio -> NOTIFY);
2. sustained changes: --changes presence changes through the API (--concurrency callers,
   round robin over the users, alternating away/busy); the rate is changes / time until the
   watcher has seen every user's final state. The bridge coalesces: PUBLISHes sent are reported
   beside the changes;
3. reference: SIPp publishing straight at Kamailio (publish + withdraw per call) for --seconds at
   each of --rates calls/s, with the same watcher subscribed: the PUBLISH transactions per second
   Kamailio completes and the NOTIFYs per second the watcher gets.

Before those, the bench measures the watcher's subscriptions (at most --window waiting for
their first NOTIFY, silent ones sent again), the bridge's first full sync (every user is set
away before it starts: a PUBLISH and a SUBSCRIBE per user) and the withdrawal of every user's
publication; with --idle-seconds, the refreshes the server receives while nothing changes.

Run: .venv/bin/python bench/presence/bridge_bench.py [--users 200] [--changes 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
from sip2uc.v1 import (
    common_pb2,
    connectors_pb2,
    connectors_pb2_grpc,
    presence_pb2,
    presence_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)
from sip2uc_core.sip.message import SipRequest, make_response, parse_message

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
DOMAIN = "uc.example.com"
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
# The watcher sends a SUBSCRIBE again when its first NOTIFY has not come this long after.
RETRANSMIT_AFTER = 2.0


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


presence_server: Any = _load(
    "bench_presence_server", ROOT / "tests" / "interop" / "kamailio" / "presence_server.py"
)
latency: Any = _load("bench_presence_latency", HERE / "latency_bench.py")
# CPU time from /proc/PID/task/*/schedstat (exact; /proc/PID/stat is tick-sampled here).
register_bench: Any = _load("bench_register", ROOT / "bench" / "register" / "register_bench.py")


# --- the watcher --------------------------------------------------------------------------------


class Watcher(asyncio.DatagramProtocol):
    """Subscribes to every user's presence; keeps the last state each NOTIFY showed."""

    _ACTIVITY = re.compile(rb"<rpid:([a-z-]+)/>")

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.last: dict[str, str] = {}
        self.seen_at: dict[str, float] = {}
        self.notifies = 0
        self.cseq: dict[str, int] = {}
        self.changed = asyncio.Event()
        self.subscribes_sent = 0
        self._requests: dict[str, bytes] = {}  # user -> its SUBSCRIBE as last sent

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # The instrument must not drop NOTIFYs while the bench process is busy feeding the API.
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = parse_message(data)
        except Exception:
            return
        if not isinstance(message, SipRequest) or message.method != "NOTIFY":
            return
        assert self.transport is not None
        self.transport.sendto(make_response(message, 200).serialize(), addr)
        self.notifies += 1
        user = str(message.from_.uri).split(":", 1)[1].split("@", 1)[0]
        # The server's children send NOTIFYs in parallel: one may overtake an earlier one.
        cseq = message.cseq.seq
        if cseq <= self.cseq.get(message.call_id, -1):
            return
        self.cseq[message.call_id] = cseq
        body = message.body
        if b"sip2uc-kam" not in body:
            state = "closed"
        else:
            ours = body[body.index(b"sip2uc-kam") :]
            found = self._ACTIVITY.search(ours)
            # A withdrawn publication may leave the server's closed tuple under our id.
            closed = re.search(rb"<basic>\s*closed\s*</basic>", ours) is not None
            state = "closed" if closed else found.group(1).decode() if found else "open"
        self.last[user] = state
        self.seen_at[user] = time.monotonic()
        self.changed.set()

    def send_subscribe(self, user: str, server: tuple[str, int], expires: int) -> None:
        """A new SUBSCRIBE dialog for ``user`` (Expires 0: a one-shot fetch of its state)."""
        call_id, tag = f"watch-{secrets.token_hex(8)}", f"w{secrets.token_hex(4)}"
        branch = f"z9hG4bK{secrets.token_hex(8)}"
        self._requests[user] = self._subscribe_request(user, call_id, tag, branch, expires)
        self._send_request(user, server)

    def _subscribe_request(
        self, user: str, call_id: str, tag: str, branch: str, expires: int
    ) -> bytes:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (
            f"SUBSCRIBE sip:{user}@{DOMAIN} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:watcher@{DOMAIN}>;tag={tag}\r\n"
            f"To: <sip:{user}@{DOMAIN}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 SUBSCRIBE\r\n"
            f"Contact: <sip:watcher@{host}:{port}>\r\nEvent: presence\r\n"
            f"Expires: {expires}\r\nAccept: application/pidf+xml\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    def _send_request(self, user: str, server: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(self._requests[user], server)
        self.subscribes_sent += 1

    async def subscribe(
        self, users: list[str], server: tuple[str, int], window: int, within: float
    ) -> tuple[float, int]:
        """Subscribes to every user, at most ``window`` waiting for their first NOTIFY at a
        time, so the server is never handed more than it answers. A user whose first NOTIFY
        has not come after RETRANSMIT_AFTER gets its SUBSCRIBE again, the same request (the
        server's transaction layer absorbs a duplicate; a lost one is replaced), as a UDP
        client's timer E would. Returns (seconds until every first NOTIFY, retransmissions)."""
        started = time.monotonic()
        deadline = started + within
        waiting: dict[str, float] = {}  # user -> when its SUBSCRIBE was last sent
        pending = list(reversed(users))
        retransmitted = 0
        while pending or waiting:
            now = time.monotonic()
            if now > deadline:
                raise SystemExit(
                    f"timed out waiting for the first NOTIFY of every user: "
                    f"{len(users) - len(pending) - len(waiting)} of {len(users)} in {within:.0f} s"
                    f" ({retransmitted} SUBSCRIBEs sent again)"
                )
            for user in [u for u in waiting if u in self.last]:
                del waiting[user]
            for user, sent_at in list(waiting.items()):
                if now - sent_at > RETRANSMIT_AFTER:
                    self._send_request(user, server)
                    waiting[user] = now
                    retransmitted += 1
            while pending and len(waiting) < window:
                user = pending.pop()
                self.send_subscribe(user, server, 3600)
                waiting[user] = now
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.05)
        return time.monotonic() - started, retransmitted

    async def progress_stops(self, done: Any, quiet: float, within: float) -> None:
        """Wait until ``done()`` or until no NOTIFY came for ``quiet`` seconds."""
        deadline = time.monotonic() + within
        last = self.notifies
        quiet_since = time.monotonic()
        while not done() and time.monotonic() < deadline:
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.2)
            if self.notifies != last:
                last, quiet_since = self.notifies, time.monotonic()
            elif time.monotonic() - quiet_since > quiet:
                return

    async def until(self, done: Any, within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while not done():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.2)


# --- phases -------------------------------------------------------------------------------------


async def create_users(channel: grpc.aio.Channel, exts: list[str], concurrency: int) -> None:
    """The users, each with a handset, and each set away by hand: the bridge's first sync has
    a state to publish for every user (an offline user has no publication)."""
    users = users_pb2_grpc.UserServiceStub(channel)
    presence = presence_pb2_grpc.PresenceServiceStub(channel)
    queue = list(reversed(exts))

    async def worker() -> None:
        while queue:
            ext = queue.pop()
            await users.CreateUser(
                users_pb2.CreateUserRequest(
                    user=users_pb2.User(
                        sip_uri=f"sip:{ext}@{DOMAIN}",
                        extension=ext,
                        devices=[
                            users_pb2.Device(
                                registering=users_pb2.RegisteringDevice(password=latency.PASSWORD)
                            )
                        ],
                    )
                )
            )
            await presence.SetPresence(
                presence_pb2.SetPresenceRequest(
                    user=ext, availability=common_pb2.Availability.AVAILABILITY_AWAY
                )
            )

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def create_connector(channel: grpc.aio.Channel, kamailio: Any, expires: int) -> None:
    stub = connectors_pb2_grpc.ConnectorServiceStub(channel)
    await stub.CreateConnector(
        connectors_pb2.CreateConnectorRequest(
            connector_id="kam",
            connector=connectors_pb2.Connector(
                external=True,
                sip_presence=connectors_pb2.SipPresenceConfig(
                    server=kamailio.server_uri("udp"), expires=expires
                ),
            ),
        )
    )


async def first_sync(
    channel: grpc.aio.Channel,
    exts: list[str],
    watcher: Watcher,
    kamailio: Any,
    start_bridge: Any,
    within: float,
) -> tuple[float, float]:
    """Starts the bridge; (seconds until the watcher has every user's state from it, seconds
    until the server has received the bridge's SUBSCRIBE for every user as well)."""
    stub = connectors_pb2_grpc.ConnectorServiceStub(channel)
    subscribes_before = kamailio.statistics().get("core:rcv_requests_subscribe", 0)
    started = time.monotonic()
    start_bridge()
    await watcher.until(
        lambda: all(watcher.last.get(e) == "away" for e in exts), within, "the first full sync"
    )
    published = max(watcher.seen_at[e] for e in exts) - started
    deadline = started + within
    while True:
        received = kamailio.statistics().get("core:rcv_requests_subscribe", 0) - subscribes_before
        if received >= len(exts):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"the server received {received} of the bridge's SUBSCRIBEs")
        await asyncio.sleep(0.1)
    subscribed = time.monotonic() - started
    while True:
        got = await stub.GetConnector(connectors_pb2.GetConnectorRequest(name="kam"))
        status = got.connector.status
        if status.state == connectors_pb2.CONNECTOR_STATE_CONNECTED and status.users_mapped == len(
            exts
        ):
            return published, subscribed
        if time.monotonic() > deadline:
            raise SystemExit(f"the connector did not connect: {status}")
        await asyncio.sleep(0.2)


async def clear_all(
    channel: grpc.aio.Channel, exts: list[str], watcher: Watcher, concurrency: int
) -> float:
    """Clears every user's away (they are offline: the bridge withdraws each publication);
    seconds until the watcher saw every user closed."""
    presence = presence_pb2_grpc.PresenceServiceStub(channel)
    queue = list(reversed(exts))

    async def worker() -> None:
        while queue:
            await presence.ClearPresence(presence_pb2.ClearPresenceRequest(user=queue.pop()))

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await watcher.until(
        lambda: all(watcher.last.get(e) == "closed" for e in exts), 300, "every user closed"
    )
    return max(watcher.seen_at[e] for e in exts) - started


async def changes_out(channel: grpc.aio.Channel) -> int:
    stub = connectors_pb2_grpc.ConnectorServiceStub(channel)
    got = await stub.GetConnector(connectors_pb2.GetConnectorRequest(name="kam"))
    return int(got.connector.status.changes_out)


async def register_latency(exts: list[str], watcher: Watcher, sip: tuple[str, int]) -> list[float]:
    loop = asyncio.get_running_loop()
    handset = latency.Handset()
    local_port = latency.free_port()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: handset, local_addr=("127.0.0.1", local_port)
    )
    samples: list[float] = []
    try:
        for n, ext in enumerate(exts):
            ok_at = await latency.register(
                transport, handset, ext, sip, local_port, 10 * n + 1, 600
            )
            await watcher.until(lambda e=ext: watcher.last.get(e) == "open", 10, f"{ext} open")
            samples.append(watcher.seen_at[ext] - ok_at)
    finally:
        transport.close()
    return samples


async def sustained(
    channel: grpc.aio.Channel,
    exts: list[str],
    watcher: Watcher,
    changes: int,
    concurrency: int,
    server: tuple[str, int],
) -> tuple[float, float, int]:
    """(changes/s until the watcher saw every final state, RPC rate, PUBLISHes sent)."""
    presence = presence_pb2_grpc.PresenceServiceStub(channel)
    states = [common_pb2.AVAILABILITY_AWAY, common_pb2.AVAILABILITY_BUSY]
    names = {common_pb2.AVAILABILITY_AWAY: "away", common_pb2.AVAILABILITY_BUSY: "busy"}
    plan = [(exts[i % len(exts)], states[(i // len(exts)) % 2]) for i in range(changes)]
    final = {ext: names[state] for ext, state in plan}
    before = await changes_out(channel)
    queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)

    async def caller() -> None:
        while not queue.empty():
            ext, state = queue.get_nowait()
            await presence.SetPresence(
                presence_pb2.SetPresenceRequest(user=ext, availability=state)
            )

    started = time.monotonic()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    sent = time.monotonic()
    await watcher.progress_stops(
        lambda: all(watcher.last.get(e) == s for e, s in final.items()), quiet=5, within=180
    )
    missed = [e for e, s in final.items() if watcher.last.get(e) != s]
    if missed:
        # Kamailio's children send NOTIFYs in parallel and now and then one carries a body older
        # than the publication it follows. Whether the server holds the final state is checked by
        # a one-shot fetch (RFC 6665 §4.4.3: Expires 0) of each such user.
        seen_before = {e: watcher.seen_at.get(e, 0.0) for e in missed}
        for ext in missed:
            watcher.send_subscribe(ext, server, 0)
        await watcher.progress_stops(
            lambda: all(watcher.last.get(e) == final[e] for e in missed), quiet=2, within=20
        )
        wrong = {
            e: (watcher.last.get(e), final[e]) for e in missed if watcher.last.get(e) != final[e]
        }
        if wrong:
            raise SystemExit(
                f"{len(wrong)} users do not hold their final state at the server (user: "
                f"(held, wanted)): {list(wrong.items())[:5]}"
            )
        for ext, at in seen_before.items():
            watcher.seen_at[ext] = at  # the fetch is not when the state arrived
        print(
            f"({len(missed)} of {len(final)} users' last NOTIFY showed an older state; the "
            "server held the final one, fetched)"
        )
    final = {e: s for e, s in final.items() if e not in missed}
    done = max(watcher.seen_at[e] for e in final)
    await asyncio.sleep(6)  # one status report later
    published = await changes_out(channel) - before
    return changes / (done - started), changes / (sent - started), published


async def reference(
    work: Path, exts: list[str], kamailio: Any, rate: int, seconds: float
) -> tuple[float, int, int]:
    """SIPp publishing at Kamailio: (PUBLISH transactions/s completed, failed calls, calls)."""
    rows = work / "reference.csv"
    rows.write_text("SEQUENTIAL\n" + "".join(f"{e};{DOMAIN}\n" for e in exts))
    calls = int(rate * seconds)
    stats = work / f"reference-{rate}.csv"
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        SIPP,
        f"127.0.0.1:{kamailio.udp_port}",
        "-sf",
        str(HERE / "publish_sipp.xml"),
        "-inf",
        str(rows),
        "-r",
        str(rate),
        "-m",
        str(calls),
        "-l",
        str(max(10, rate)),
        "-i",
        "127.0.0.1",
        "-p",
        str(latency.free_port()),
        "-timeout",
        f"{int(seconds * 4 + 20)}s",
        "-nostdin",
        "-trace_stat",
        "-stf",
        str(stats),
        "-trace_err",
        "-error_file",
        str(work / f"reference-{rate}.errors.log"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=work,
    )
    code = await process.wait()
    elapsed = time.monotonic() - started
    failed = 0
    lines = stats.read_text().splitlines() if stats.exists() else []
    if len(lines) >= 2:
        header = lines[0].split(";")
        failed = int(lines[-1].split(";")[header.index("FailedCall(C)")])
    if code not in (0, 1):
        failed = max(failed, 1)
    return 2 * (calls - failed) / elapsed, failed, calls


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def cpu_seconds(pids: list[int]) -> float:
    return float(register_bench.cpu_ns(pids)) / 1e9


async def run(
    args: argparse.Namespace,
    grpc_addr: str,
    sip: tuple[str, int],
    kamailio: Any,
    work: Path,
    up_pid: int,
) -> None:
    kamailio_pids = register_bench.kamailio_pids(kamailio.process.pid)
    bridge: list[subprocess.Popen[bytes]] = []

    def start_bridge() -> None:
        """`sip2uc connector run kam`: the bridge as its own process, so its CPU is its own."""
        log = (work / "bridge.log").open("wb")
        bridge.append(
            subprocess.Popen(
                [
                    str(ROOT / ".venv" / "bin" / "sip2uc"),
                    "--control",
                    grpc_addr,
                    "--data-dir",
                    str(work / "var"),
                    "connector",
                    "run",
                    "kam",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        )

    try:
        await _run(
            args, grpc_addr, sip, kamailio, work, up_pid, kamailio_pids, start_bridge, bridge
        )
    except SystemExit:
        log = (work / "bridge.log").read_text(errors="replace").splitlines()
        print("bridge log (last lines):\n" + "\n".join(log[-15:]))
        raise
    finally:
        for process in bridge:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


async def _run(
    args: argparse.Namespace,
    grpc_addr: str,
    sip: tuple[str, int],
    kamailio: Any,
    work: Path,
    up_pid: int,
    kamailio_pids: list[int],
    start_bridge: Any,
    bridge: list[subprocess.Popen[bytes]],
) -> None:
    exts = [str(40000 + n) for n in range(args.users)]
    loop = asyncio.get_running_loop()
    watcher = Watcher()
    transport, _ = await loop.create_datagram_endpoint(lambda: watcher, local_addr=("127.0.0.1", 0))
    server = ("127.0.0.1", kamailio.udp_port)
    async with grpc.aio.insecure_channel(grpc_addr) as channel:
        started = time.monotonic()
        await create_users(channel, exts, args.concurrency)
        await create_connector(channel, kamailio, args.expires)
        print(f"{len(exts)} users created and set away in {time.monotonic() - started:.1f} s")

        took, again = await watcher.subscribe(exts, server, args.window, 60 + len(exts) / 50)
        print(
            f"watcher: {len(exts)} SUBSCRIBEs at Kamailio, every first NOTIFY in {took:.1f} s "
            f"= {len(exts) / took:.0f} subscriptions/s (at most {args.window} waiting; "
            f"{again} sent again)"
        )

        published, subscribed = await first_sync(
            channel, exts, watcher, kamailio, start_bridge, 60 + len(exts) / 20
        )
        sync_done = time.monotonic()
        bridge_pid = bridge[0].pid
        cpu_bridge_start = cpu_seconds([bridge_pid])
        print(
            f"first full sync from the bridge's start: every user's state at the watcher in "
            f"{published:.1f} s ({len(exts) / published:.0f} PUBLISH/s), and the bridge's "
            f"{len(exts)} SUBSCRIBEs at the server in {subscribed:.1f} s; bridge CPU "
            f"{cpu_bridge_start:.1f} s ({cpu_bridge_start / (2 * len(exts)) * 1e6:.0f} us per "
            "request, start-up included)"
        )

        cleared = await clear_all(channel, exts, watcher, args.concurrency)
        print(
            f"clearing every user (offline: {len(exts)} publications withdrawn): "
            f"{cleared:.1f} s = {len(exts) / cleared:.0f} withdrawals/s to the watcher"
        )

        sampled = exts[: args.latency_users] if args.latency_users else exts
        samples = await register_latency(sampled, watcher, sip)
        ms = [s * 1000 for s in samples]
        print(
            f"REGISTER 200 -> watcher's NOTIFY (open) at Kamailio: n={len(ms)} "
            f"p50={pct(ms, 0.5):.1f} ms p90={pct(ms, 0.9):.1f} ms p99={pct(ms, 0.99):.1f} ms "
            f"max={max(ms):.1f} ms"
        )
        before = [cpu_seconds([up_pid]), cpu_seconds([bridge_pid]), cpu_seconds(kamailio_pids)]
        rate, rpc_rate, published_n = await sustained(
            channel, exts, watcher, args.changes, args.concurrency, server
        )
        after = [cpu_seconds([up_pid]), cpu_seconds([bridge_pid]), cpu_seconds(kamailio_pids)]
        cpu_up, cpu_bridge, cpu_kam = (a - b for a, b in zip(after, before, strict=True))
        print(
            f"sustained: {args.changes} changes over {len(exts)} users in {args.changes / rate:.2f} s"
            f" = {rate:.0f} changes/s through the bridge to the watcher (API accepted "
            f"{rpc_rate:.0f}/s; {published_n} deliveries of one PUBLISH each carried them, "
            "the rest coalesced)"
        )
        print(
            f"CPU during it: control plane + sidecar {cpu_up:.1f} s, bridge {cpu_bridge:.1f} s "
            f"({cpu_bridge / max(1, published_n) * 1e6:.0f} us per PUBLISH: one core carries "
            f"~{max(1, published_n) / max(cpu_bridge, 1e-9):.0f} PUBLISH/s), Kamailio {cpu_kam:.1f} s"
        )
        if args.idle_seconds > 0:
            await refreshes(args, kamailio, bridge_pid, sync_done, watcher)
    best: tuple[int, float, float] | None = None
    for reference_rate in args.rates:
        before_n = watcher.notifies
        cpu_kam = cpu_seconds(kamailio_pids)
        begun = time.monotonic()
        done_rate, failed, calls = await reference(
            work, exts, kamailio, reference_rate, args.seconds
        )
        elapsed = time.monotonic() - begun
        cpu_kam = cpu_seconds(kamailio_pids) - cpu_kam
        notify_rate = (watcher.notifies - before_n) / elapsed
        if kamailio.process.poll() is not None:
            tail = kamailio.log_tail(15)
            print(f"Kamailio exited ({kamailio.process.returncode}) at {reference_rate} calls/s:")
            print(tail)
            break
        print(
            f"reference, SIPp PUBLISH straight at Kamailio at {reference_rate} calls/s: "
            f"{done_rate:.0f} PUBLISH/s completed, {failed}/{calls} calls failed, "
            f"watcher got {notify_rate:.0f} NOTIFY/s; Kamailio CPU {cpu_kam / elapsed:.0%}"
        )
        if failed == 0:
            best = (reference_rate, done_rate, notify_rate)
    transport.close()
    stats = kamailio.statistics()
    if stats:
        print(
            f"Kamailio shared memory: {stats.get('shmem:max_used_size', 0) / 2**20:.0f} MB "
            f"at most of {stats.get('shmem:total_size', 0) / 2**20:.0f} MB; requests dropped "
            f"{stats.get('core:drop_requests', 0)}"
        )
    if best is not None:
        print(
            f"Kamailio's own capacity here: >= {best[1]:.0f} PUBLISH/s without failures "
            f"(highest rate tried without failures: {best[0]} calls/s); the bridge carried "
            f"{published_n / (args.changes / rate):.0f} PUBLISH/s while delivering "
            f"{rate:.0f} changes/s"
        )


async def refreshes(
    args: argparse.Namespace, kamailio: Any, bridge_pid: int, sync_done: float, watcher: Watcher
) -> None:
    """Refreshes in steady state: with nothing changing, every PUBLISH and SUBSCRIBE the server
    receives is a refresh of the bridge's (the watcher's own last an hour). The bridge spreads
    them over 50-90 % of the interval, so the window starts half an interval after the sync."""
    start_at = sync_done + 0.5 * args.expires
    wait = start_at - time.monotonic()
    if wait > 0:
        print(f"(waiting {wait:.0f} s for the first refreshes, half an interval after the sync)")
        await asyncio.sleep(wait)
    watched = watcher.subscribes_sent

    def counts() -> tuple[int, int]:
        stats = kamailio.statistics()
        return stats.get("core:rcv_requests_publish", 0), stats.get(
            "core:rcv_requests_subscribe", 0
        )

    pub0, sub0 = counts()
    cpu0 = cpu_seconds([bridge_pid])
    begun = time.monotonic()
    await asyncio.sleep(args.idle_seconds)
    elapsed = time.monotonic() - begun
    pub1, sub1 = counts()
    cpu = cpu_seconds([bridge_pid]) - cpu0
    pubs, subs = pub1 - pub0, sub1 - sub0 - (watcher.subscribes_sent - watched)
    total = pubs + subs
    print(
        f"refreshes with nothing changing, {elapsed:.0f} s from {start_at - sync_done:.0f} s after "
        f"the sync (expires {args.expires} s): {pubs} PUBLISH + {subs} SUBSCRIBE = "
        f"{total / elapsed:.1f} refreshes/s; bridge CPU {cpu:.1f} s "
        f"({cpu / max(1, total) * 1e6:.0f} us per refresh, {cpu / elapsed:.1%} of a core)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--changes", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--rates", type=lambda v: [int(x) for x in v.split(",")], default=[150, 250, 350]
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--window",
        type=int,
        default=200,
        help="SUBSCRIBEs the watcher leaves waiting for their first NOTIFY at most",
    )
    parser.add_argument(
        "--latency-users",
        type=int,
        default=0,
        help="users registered one by one for the latency samples (0: every user)",
    )
    parser.add_argument(
        "--expires", type=int, default=600, help="the connector's Expires (refresh interval)"
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=0.0,
        help="window in which refreshes are counted, nothing changing; it starts half an "
        "interval (--expires) after the first sync (0: skip)",
    )
    args = parser.parse_args()
    if presence_server.missing():
        sys.exit(presence_server.missing())
    grpc_port, sip_port = latency.free_port(), latency.free_port()
    with tempfile.TemporaryDirectory() as data:
        work = Path(data)
        kamailio = presence_server.KamailioPresence(
            work / "kamailio",
            children=4,
            shm_mb=max(128, args.users // 20),
            htable_bits=min(14, max(9, (args.users * 2).bit_length())),
            max_buffer=8 * 2**20,
        ).start()
        try:
            proc = latency.start_up(work, grpc_port, sip_port)
        except SystemExit:
            kamailio.stop()
            raise
        try:
            print(
                f"sip2uc up (pid {proc.pid}) bridging to Kamailio 5.6 (4 UDP children, db_text) "
                f"on 127.0.0.1:{kamailio.udp_port}; {args.users} users; "
                f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
            )
            asyncio.run(
                run(
                    args,
                    f"127.0.0.1:{grpc_port}",
                    ("127.0.0.1", sip_port),
                    kamailio,
                    work,
                    proc.pid,
                )
            )
        finally:
            latency.stop_up(proc)
            kamailio.stop()


if __name__ == "__main__":
    main()
