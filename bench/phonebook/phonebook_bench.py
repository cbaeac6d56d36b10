"""The address book over HTTP: what a lookup costs the sidecar, beside a static file in one run.

Starts the sidecar's phonebook server (`sip2uc_media.phonebook.server`) on loopback with a book
of --entries entries (users and contacts with realistic names and numbers), and, as the
reference, a bare aiohttp server that answers every request with the same bytes already
rendered (what serving a static phonebook file costs in the same HTTP stack). One aiohttp
client with --concurrency requests in flight fetches, for --seconds each (and at most --count
requests):

1. the full Yealink book (authorised by the site token);
2. a Gigaset name search (`ln=Sch*`, 10 per page) — what a DECT handset does per key press;
3. a Cisco page (32 entries);
4. Gigaset reverse lookups of 500 different callers' numbers (`hm=`), and Yealink searches for
   500 different texts: every request a new query, so the server's cache of rendered documents
   (the last 64 per book version) never answers — the cost of searching and rendering;
5. the reference: the full Yealink book, pre-rendered.

1-3 repeat one URL, as handsets do (the same refresh, the same first letters), and are mostly
answered from that cache.

Digest logins are not measured here: each one is a control-plane round trip (`VerifyDigest`)
whose cost is the gRPC call's, measured by the register benchmarks.

Run: .venv/bin/python bench/phonebook/phonebook_bench.py [--entries 2000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aiohttp
from aiohttp import web
from sip2uc_core.sip.digest import NonceCountTracker, NonceIssuer
from sip2uc_media.phonebook.formats import Format, render
from sip2uc_media.phonebook.http_auth import HttpDigest
from sip2uc_media.phonebook.model import Entry, EntryKind, Phonebook, Query
from sip2uc_media.phonebook.server import PhonebookServer, ServerHooks

TOKEN = "bench-token-0123456789"
FIRST = ["Anna", "Bernd", "Carla", "Dieter", "Eva", "Frank", "Greta", "Hans", "Ines", "Jürgen"]
LAST = [
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Schäfer",
]


def book(entries: int) -> Phonebook:
    out = []
    for n in range(entries):
        name = f"{FIRST[n % 10]} {LAST[(n // 10) % 10]}-{n // 100}"
        if n % 5 == 4:
            out.append(
                Entry(
                    key=f"c{n}",
                    kind=EntryKind.CONTACT,
                    display_name=f"{LAST[n % 10]} & Partner <{n}>",
                    e164=f"+49891{n:06d}",
                    mobile=f"+49151{n:07d}",
                    company="Lieferant GmbH",
                )
            )
        else:
            out.append(
                Entry(
                    key=f"u{n}",
                    kind=EntryKind.USER,
                    display_name=name,
                    extension=f"{10000 + n}",
                    e164=f"+49892{n:06d}",
                )
            )
    return Phonebook.of(1, out)


async def run(
    url: str | list[str], seconds: float, count: int, concurrency: int
) -> tuple[int, list[float], int]:
    """Requests per second, latencies and the last body's size; a list of URLs is cycled."""
    urls = [url] if isinstance(url, str) else url
    latencies: list[float] = []
    size = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal size
            while time.perf_counter() < deadline and len(latencies) < count:
                start = time.perf_counter()
                async with session.get(urls[len(latencies) % len(urls)]) as response:
                    body = await response.read()
                    assert response.status == 200, response.status
                latencies.append(time.perf_counter() - start)
                size = len(body)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return round(len(latencies) / elapsed), latencies, size


def line(label: str, result: tuple[int, list[float], int], reference: int | None = None) -> str:
    rate, latencies, size = result
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    ratio = f"  {rate / reference:5.2f}x reference" if reference else ""
    return (
        f"{label:<34} {rate:7d} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  {size:8d} bytes{ratio}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    held = book(args.entries)
    loop = asyncio.get_running_loop()
    server = PhonebookServer(
        ServerHooks(
            book=lambda: held,
            digest=HttpDigest(NonceIssuer(b"b" * 32, 300), NonceCountTracker(1000), realm="bench"),
            verify=lambda *_: asyncio.sleep(0, False),  # never asked: the token is used
            clock=loop.time,
            token=TOKEN,
        )
    )
    host, port = await server.start("127.0.0.1", 0)
    static = render(Format.YEALINK, held.search(Query(limit=1000))).body

    async def answer(_request: web.Request) -> web.Response:
        return web.Response(body=static, content_type="text/xml")

    app = web.Application()
    app.router.add_get("/static.xml", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    static_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://{host}:{port}/phonebook"
    try:
        print(
            f"book: {args.entries} entries; {args.concurrency} requests in flight, {args.seconds} s each"
        )
        reference = await run(
            f"http://127.0.0.1:{static_port}/static.xml", args.seconds, args.count, args.concurrency
        )
        cases: list[tuple[str, str | list[str]]] = [
            ("yealink full book (1000 per page)", f"{base}/yealink.xml?token={TOKEN}"),
            (
                "gigaset search ln=Sch*, 10",
                f"{base}/gigaset?command=get_list&type=pb&ln=Sch*&count=10&token={TOKEN}",
            ),
            ("cisco page 3 (32 entries)", f"{base}/cisco.xml?page=3&token={TOKEN}"),
            (
                "gigaset hm=<caller>, 500 distinct",
                [
                    f"{base}/gigaset?command=get_list&type=pb&hm=0892{n:06d}&token={TOKEN}"
                    for n in range(0, 2000, 4)
                ],
            ),
            (
                "yealink q=<text>, 500 distinct",
                [f"{base}/yealink.xml?q={10000 + n}&token={TOKEN}" for n in range(0, 2000, 4)],
            ),
        ]
        for label, url in cases:
            print(
                line(
                    label, await run(url, args.seconds, args.count, args.concurrency), reference[0]
                )
            )
        print(line("reference: static yealink bytes", reference))
    finally:
        await server.stop()
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
