#!/usr/bin/env python3
"""CPU per registration inside the sidecar's SIP edge alone (no sockets, no gRPC), one core.

Drives `SipEdge.receive` with the two REGISTERs of the SIPp scenario (the first answered 401,
the second carrying MD5 credentials for the challenge's nonce and answered 200 by a control
backend that says OK at once), as SIPp's `register_auth.xml` does. Prints microseconds per
registration; `--profile` prints the cProfile top functions instead. No assertions.

    .venv/bin/python bench/register/edge_bench.py --count 20000
    .venv/bin/python bench/register/edge_bench.py --count 5000 --profile
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import re
import time

from sip2uc_core.sip.contact import Contact
from sip2uc_core.sip.digest import Algorithm, NonceCountTracker, NonceIssuer, compute_response
from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_media.sidecar.dispatch import SipEdge
from sip2uc_media.sidecar.protection import BanList
from sip2uc_media.sidecar.registrar import (
    RegisterAttempt,
    RegisterOutcome,
    RegisterResult,
    Registrar,
    RegistrarPolicy,
)
from sip2uc_media.sidecar.requests import Origin, RegisterDone
from sip2uc_media.transport.base import Source

SECRET = b"b" * 32
REALM = "sip2uc"
HA1 = "0123456789abcdef0123456789abcdef"


class InstantControl:
    """Answers OK on the next loop turn, as the register stream's reader does."""

    up = True

    def register(self, attempt: RegisterAttempt, origin: Origin, done: RegisterDone) -> None:
        result = RegisterResult(
            outcome=RegisterOutcome.OK,
            bindings=tuple(Contact(c.uri, c.expires) for c in attempt.contacts),
        )
        asyncio.get_running_loop().call_soon(done, result, None)


def register(n: int, cseq: int, authorization: str = "") -> bytes:
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    return (
        f"REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-{n}-{cseq}-0;rport\r\n"
        f"From: <sip:u{n}@127.0.0.1>;tag=4242SIPpTag00{n}\r\n"
        f"To: <sip:u{n}@127.0.0.1>\r\n"
        f"Call-ID: {n}-4242@127.0.0.1\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:u{n}@127.0.0.1:40000;transport=UDP>\r\n"
        f"Expires: 3600\r\n"
        f"{auth}"
        f"Max-Forwards: 70\r\n"
        f"User-Agent: SIPp interop\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


_NONCE_RE = re.compile(rb'nonce="([^"]+)"')


async def drive(count: int, profile: bool) -> None:
    sent: list[bytes] = []

    def send(data: bytes, _dest: Endpoint) -> bool:
        sent.append(data)
        return True

    clock = time.monotonic
    edge = SipEdge(
        name="bench",
        registrar=Registrar(
            NonceIssuer(SECRET, 300.0),
            NonceCountTracker(100_000, max_idle=600.0),
            tag_secret=SECRET,
            policy=RegistrarPolicy(realm=REALM, algorithms=(Algorithm.MD5,)),
        ),
        control=InstantControl(),
        send=send,
        clock=clock,
        wall_clock=time.time,
        bans=BanList(),
    )
    source = Source(Endpoint(Transport.UDP, "127.0.0.1", 40000), lambda _data: True)
    first = [register(n, 1) for n in range(count)]
    profiler = cProfile.Profile() if profile else None
    started = time.process_time()
    if profiler is not None:
        profiler.enable()
    statuses: dict[bytes, int] = {}
    edge_time = 0.0
    tick = time.perf_counter
    for n in range(count):
        sent.clear()
        t0 = tick()
        edge.receive(first[n], source)
        edge_time += tick() - t0
        nonce = _NONCE_RE.search(sent[-1])
        assert nonce is not None
        uri = "sip:127.0.0.1:5060"
        response = compute_response(
            Algorithm.MD5,
            HA1,
            nonce=nonce.group(1).decode(),
            method="REGISTER",
            uri=uri,
            qop="auth",
            nc="00000001",
            cnonce="6b8b4567",
        )
        authorization = (
            f'Digest username="u{n}",realm="{REALM}",cnonce="6b8b4567",nc=00000001,qop=auth,'
            f'uri="{uri}",nonce="{nonce.group(1).decode()}",response="{response}",'
            f"algorithm=MD5"
        )
        second = register(n, 2, authorization)
        t0 = tick()
        edge.receive(second, source)
        # let the answer's callback run (two turns, as in the figures of earlier runs)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        edge_time += tick() - t0
        for data in sent:
            code = data[8:11]
            statuses[code] = statuses.get(code, 0) + 1
    if profiler is not None:
        profiler.disable()
    elapsed = time.process_time() - started
    del started
    await edge.close()
    print(f"responses by status: {dict(sorted(statuses.items()))}")
    print(
        f"{count} registrations: {1e6 * edge_time / count:.1f} us in the edge each "
        f"({1e6 * elapsed / count:.1f} us with the client side)"
    )
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    asyncio.run(drive(args.count, args.profile))


if __name__ == "__main__":
    main()
