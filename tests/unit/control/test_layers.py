"""Which part of the control plane may import which (docs/architecture.md): the domain below,
the store beside it, ControlCore above both, gRPC on top. Imports under TYPE_CHECKING count."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import sip2uc_control

PACKAGE = Path(sip2uc_control.__file__).parent
ROOT = "sip2uc_control"
# Above the domain: they may use ControlCore (and the API its servicers).
SERVER_SIDE = (f"{ROOT}.api", f"{ROOT}.app", f"{ROOT}.core", f"{ROOT}.directory_repository")


@cache
def modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the package: its file and whether it is a package's __init__."""
    found: dict[str, tuple[Path, bool]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = [ROOT, *path.relative_to(PACKAGE).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


@cache
def imports(module: str) -> frozenset[str]:
    """Everything `module` imports: our modules by full name, anything else by its top name
    (`sqlalchemy`, `sip2uc.v1`)."""
    path, is_package = modules()[module]
    here = module if is_package else module.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                out.add(submodule if submodule in modules() else source)
    return frozenset(out)


def ours(module: str) -> set[str]:
    return {m for m in imports(module) if m in modules() and m != module}


def importers_of(*prefixes: str) -> set[str]:
    def matches(name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    return {m for m in modules() if any(matches(i) for i in imports(m))}


def test_no_module_of_the_control_plane_imports_itself_back() -> None:
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> None:
        if module in path:
            cycle = [*path[path.index(module) :], module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        path.append(module)
        for imported in sorted(ours(module)):
            visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(modules()):
        visit(module)


def test_only_the_server_side_uses_control_core_or_the_api() -> None:
    users = importers_of(f"{ROOT}.core", f"{ROOT}.app", f"{ROOT}.api")

    assert {m for m in users if not m.startswith(SERVER_SIDE)} == set()


def test_the_call_layer_and_telemetry_see_protocols_not_the_core() -> None:
    calls = {m for m in modules() if m.startswith(f"{ROOT}.calls")}

    for module in (*calls, f"{ROOT}.telemetry"):
        assert not ours(module) & {f"{ROOT}.core", f"{ROOT}.app"}, module
    assert ours(f"{ROOT}.telemetry") == set()


def test_the_domain_does_not_reach_up_to_the_store() -> None:
    domain = [
        m
        for m in modules()
        if m.startswith(
            tuple(
                f"{ROOT}.{part}"
                for part in (
                    "calls",
                    "registrar",
                    "presence_hub",
                    "sidecars",
                    "connectors",
                    "routing",
                    "presence",
                    "users",
                    "settings",
                    "domain",
                    "bindings",
                    "errors",
                    "watchers",
                    "messaging",
                )
            )
        )
    ]

    assert len(domain) > 20
    for module in domain:
        assert not {i for i in ours(module) if i.startswith((f"{ROOT}.store", *SERVER_SIDE))}, (
            module
        )


def test_generated_code_stops_at_the_api() -> None:
    assert {m for m in importers_of("sip2uc.v1") if not m.startswith(SERVER_SIDE)} == set()


def test_sql_lives_in_the_store() -> None:
    assert {m for m in importers_of("sqlalchemy") if not m.startswith(f"{ROOT}.store")} == set()


def test_the_store_depends_on_the_domain_only() -> None:
    store = {m for m in modules() if m.startswith(f"{ROOT}.store")}

    for module in store:
        assert not {i for i in ours(module) if i.startswith(SERVER_SIDE)}, module
