"""Which of the project's packages may import which (docs/architecture.md, "Packages").

The client SDK (`sip2uc`: generated stubs, typed client, CLI) imports none of the servers, so
that administering needs no server dependency; the shared SIP core imports nothing of ours; the
control plane and the sidecar only meet through the generated API; only `sip2uc_server` (the
`up`/`sidecar` commands) puts them together. Imports are read from the source, so a lazy import
inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PACKAGES = {
    "sip2uc": ROOT / "clients/python/sip2uc",
    "sip2uc_core": ROOT / "core/sip2uc_core",
    "sip2uc_control": ROOT / "control/sip2uc_control",
    "sip2uc_media": ROOT / "media/sip2uc_media",
    "sip2uc_connectors": ROOT / "connectors/sip2uc_connectors",
    "sip2uc_web": ROOT / "web/sip2uc_web",
    "sip2uc_server": ROOT / "server/sip2uc_server",
}

# What each package may import of the others ("sip2uc" is the client SDK: stubs and client).
ALLOWED = {
    "sip2uc": set(),
    "sip2uc_core": set(),
    "sip2uc_control": {"sip2uc", "sip2uc_core"},
    "sip2uc_media": {"sip2uc", "sip2uc_core"},
    "sip2uc_connectors": {"sip2uc", "sip2uc_core"},
    "sip2uc_web": {"sip2uc"},
    "sip2uc_server": set(PACKAGES) - {"sip2uc_server"},
}


def imports_of(package: str) -> dict[str, set[str]]:
    """Modules of our other packages that `package` imports -> the files that import them."""
    found: dict[str, set[str]] = {}
    for path in PACKAGES[package].rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in PACKAGES and top != package:
                    found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_a_package_imports_only_what_it_may(package: str) -> None:
    assert PACKAGES[package].is_dir()
    forbidden = {
        name: sorted(where)
        for name, where in imports_of(package).items()
        if name.split(".")[0] not in ALLOWED[package]
    }
    assert forbidden == {}


@pytest.mark.parametrize("package", ["sip2uc_control", "sip2uc_media"])
def test_the_servers_use_only_the_generated_api_of_the_client_package(package: str) -> None:
    of_client = {name for name in imports_of(package) if name.split(".")[0] == "sip2uc"}
    assert of_client
    assert {name for name in of_client if not name.startswith("sip2uc.v1")} == set()
