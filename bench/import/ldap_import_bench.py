"""Directory import throughput against a real slapd holding 10,000 AD/Lync-style users.

Prints users per second for
  * fetch + plan (the dry run): paged search over StartTLS, mapping, number normalisation and
    planning against an empty store and against a fully imported one;
  * apply into the in-memory repository (excludes any database: it measures the library);
  * the whole import through the control plane's API (`DirectoryService.ImportUsers` against a
    real control plane with its SQLite store, in this process): dry run, apply, and a re-import.

Run: .venv/bin/python bench/import/ldap_import_bench.py [--users N] [--page-size N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

from sip2uc_control.directory import (
    ImportPlan,
    LdapSourceConfig,
    NumberPolicy,
    apply_plan,
    build_plan,
    fetch_ldap_records,
)
from sip2uc_control.directory.memory import InMemoryUserRepository

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "interop" / "ldap"


def load_fixtures() -> tuple[ModuleType, ModuleType]:
    name = "sip2uc_ldap_fixtures"
    spec = importlib.util.spec_from_file_location(
        name, FIXTURES / "__init__.py", submodule_search_locations=[str(FIXTURES)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return importlib.import_module(f"{name}.slapd"), importlib.import_module(f"{name}.ldif")


def dry_run(config: LdapSourceConfig, repo: InMemoryUserRepository) -> tuple[ImportPlan, float]:
    start = time.perf_counter()
    records = list(fetch_ldap_records(config))
    plan = build_plan(records, repo.existing_users(), source="bench")
    return plan, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    slapd, ldif = load_fixtures()
    if not slapd.SLAPD.exists():
        sys.exit("slapd is not installed (/usr/sbin/slapd)")
    data = ldif.generate(args.users)
    with tempfile.TemporaryDirectory() as workdir:
        started = time.perf_counter()
        server = slapd.start_slapd(Path(workdir), data.ldif)
        load_s = time.perf_counter() - started
        try:
            config = LdapSourceConfig(
                url=server.ldap_url,
                base_dn=server.base_dn,
                bind_dn=server.service_dn,
                password=server.service_password,
                ca_file=str(server.ca_file),
                page_size=args.page_size,
                numbers=NumberPolicy(default_region="DE"),
            )
            print(f"directory: {args.users} generated users, slapadd + start {load_s:.2f} s")
            print(f"fetch: StartTLS to 127.0.0.1, paged search, page size {args.page_size}")

            empty = InMemoryUserRepository()
            times = []
            for _ in range(args.rounds):
                plan, seconds = dry_run(config, empty)
                times.append(seconds)
            rows = len(plan.items)
            best, median = min(times), statistics.median(times)
            print(
                f"fetch+plan, empty store:   {rows} rows, best {best:.3f} s "
                f"({rows / best:,.0f} users/s), median {median:.3f} s; {plan.summary()}"
            )

            repo = InMemoryUserRepository()
            start = time.perf_counter()
            result = asyncio.run(apply_plan(plan, repo, lambda: "bench-password"))
            seconds = time.perf_counter() - start
            print(
                f"apply (in-memory repository, no database): {len(result.created)} created in "
                f"{seconds:.3f} s ({len(result.created) / seconds:,.0f} users/s)"
            )

            start = time.perf_counter()
            real = asyncio.run(apply_plan(plan, InMemoryUserRepository()))
            seconds = time.perf_counter() - start
            print(
                f"apply with generated passwords (secrets): {len(real.created)} created in "
                f"{seconds:.3f} s ({len(real.created) / seconds:,.0f} users/s)"
            )

            times = []
            for _ in range(args.rounds):
                replan, seconds = dry_run(config, repo)
                times.append(seconds)
            best = min(times)
            print(
                f"fetch+plan, imported store: {len(replan.items)} rows, best {best:.3f} s "
                f"({len(replan.items) / best:,.0f} users/s); {replan.summary()}"
            )
            asyncio.run(through_api(server, args.users))
        finally:
            server.stop()


async def through_api(server: object, users: int) -> None:
    """ImportUsers over gRPC against a real control plane: the figure an administrator sees."""
    import grpc
    from sip2uc.v1 import directory_pb2, directory_pb2_grpc
    from sip2uc_control.app import ControlConfig, ControlPlane

    ca_pem = Path(str(server.ca_file)).read_text()  # type: ignore[attr-defined]
    source = directory_pb2.LdapSource(
        url=server.ldap_url,  # type: ignore[attr-defined]
        bind_dn=server.service_dn,  # type: ignore[attr-defined]
        bind_password=server.service_password,  # type: ignore[attr-defined]
        base_dn=server.base_dn,  # type: ignore[attr-defined]
        ca_pem=ca_pem,
        page_size=500,
    )
    with tempfile.TemporaryDirectory() as data:
        plane = ControlPlane(
            ControlConfig(data_dir=Path(data), grpc_listen="127.0.0.1:0", metrics_listen=None)
        )
        await plane.start()
        try:
            async with grpc.aio.insecure_channel(
                plane.address, options=[("grpc.max_receive_message_length", 64 << 20)]
            ) as channel:
                stub = directory_pb2_grpc.DirectoryServiceStub(channel)
                for label, dry in (("dry run", True), ("apply", False), ("re-import", False)):
                    request = directory_pb2.ImportUsersRequest(
                        ldap=source, dry_run=dry, default_region="DE"
                    )
                    start = time.perf_counter()
                    summary = None
                    async for message in stub.ImportUsers(request):
                        if message.WhichOneof("event") == "summary":
                            summary = message.summary
                    seconds = time.perf_counter() - start
                    counts = dict(summary.counts) if summary is not None else {}
                    print(
                        f"through the API, {label}: {users} entries in {seconds:.2f} s "
                        f"({users / seconds:,.0f} users/s); {counts}"
                    )
        finally:
            await plane.stop(0.5)


if __name__ == "__main__":
    main()
