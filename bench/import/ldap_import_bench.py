"""Directory import throughput against a real slapd holding 10,000 AD/Lync-style users.

Prints users per second for
  * fetch + plan (the dry run): paged search over StartTLS, mapping, number normalisation and
    planning against an empty store and against a fully imported one;
  * apply into the in-memory repository (excludes any database: it measures the library).

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
        finally:
            server.stop()


if __name__ == "__main__":
    main()
