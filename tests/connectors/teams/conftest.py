"""Fixtures for the Teams bridge: the Microsoft Graph contract stand-in (tests/standins/graph)
on 127.0.0.1 over HTTPS with a throwaway CA. Nothing here reaches Microsoft.

Every test that starts the stand-in fails if the stand-in recorded a request that breaks Graph's
contract; tests that send such requests on purpose take the violations they expect."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def _standin() -> ModuleType:
    """Load tests/standins/graph as a package under a name no installed package can shadow."""
    name = "sip2uc_graph_standin"
    if name not in sys.modules:
        folder = Path(__file__).parents[2] / "standins" / "graph"
        spec = importlib.util.spec_from_file_location(
            name, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return importlib.import_module(name)


standin = _standin()

TENANT = "72f988bf-0000-4000-8000-00000000cafe"
APP_ID = "22553876-f5ab-4529-bffb-cfe50aa89f87"
SECRET = "s3cret-value-never-logged~Q8"
ALICE = "fa8bf3dc-eca7-46b7-bad1-db199b62afc3"
BOB = "66825e03-7ef5-42da-9069-724602c31f6b"
CAROL = "0c5e8b1e-3f1d-4c55-9d0e-7a1c2b3d4e5f"
USERS = {ALICE: "alice@contoso.example", BOB: "bob@contoso.example", CAROL: "carol@contoso.example"}


@pytest.fixture(scope="session")
def standin_tls(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return standin.make_tls(tmp_path_factory.mktemp("graph-standin-tls"))


@pytest.fixture
async def graph(standin_tls: Any) -> AsyncIterator[Any]:
    server = standin.GraphStandin(
        tls=standin_tls,
        tenant_id=TENANT,
        apps=[standin.RegisteredApp(client_id=APP_ID, secret=SECRET)],
        users=[standin.StandinUser(oid, upn) for oid, upn in USERS.items()],
    )
    await server.start()
    try:
        yield server
    finally:
        await server.close()
    assert server.violations == [], "requests broke Graph's contract"


async def eventually(
    check: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Wait (bounded) until `check()` holds; integration tests observe a live bridge."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
