"""`sip2uc connector ...` and the Teams identities of `sip2uc user ...` against a real
`sip2uc up`, which runs the configured bridges itself (here towards a real Kamailio)."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from test_cli import Running, add_user, sip2uc, start_up, stop

pytestmark = pytest.mark.timeout(120)
GUID = "2b7b4c1e-8f2d-4e57-9c1a-3f5d6e7a8b9c"


def _presence_server() -> ModuleType:
    name = "sip2uc_kamailio_presence_fixture"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "interop" / "kamailio" / "presence_server.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


presence_server: Any = _presence_server()


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = start_up(tmp_path_factory.mktemp("sip2uc-connectors"))
    yield running
    if running.process.poll() is None:
        stop(running)


def secret_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "secret"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def test_add_list_show_delete_a_sip_presence_connector(up: Running, tmp_path: Path) -> None:
    added = sip2uc(
        up,
        "connector",
        "add",
        "sip-presence",
        "pbx",
        "--server",
        "sip:192.0.2.1:5060;transport=tcp",
        "--username",
        "gw",
        "--password-file",
        str(secret_file(tmp_path, "pw-in-a-file")),
        "--expires",
        "300",
        "--external",
    )
    assert added.exit_code == 0, added.stderr
    assert (
        added.stdout
        == "created connectors/pbx (sip-presence); run it with `sip2uc connector run pbx`\n"
    )
    listed = sip2uc(up, "connector", "list")
    [line] = [row for row in listed.stdout.splitlines() if row.startswith("pbx ")]
    assert line.split()[:3] == ["pbx", "sip-presence", "connecting"]
    shown = sip2uc(up, "connector", "show", "pbx", "--json")
    assert "pw-in-a-file" not in shown.stdout
    config = json.loads(shown.stdout)["sip_presence"]
    assert (config["server"], config["has_password"], config["expires"]) == (
        "sip:192.0.2.1:5060;transport=tcp",
        True,
        300,
    )
    deleted = sip2uc(up, "connector", "delete", "pbx")
    assert deleted.stdout == "deleted connectors/pbx\n"
    assert "pbx " not in sip2uc(up, "connector", "list").stdout


def test_a_bad_server_is_one_line_naming_the_field(up: Running) -> None:
    result = sip2uc(up, "connector", "add", "sip-presence", "bad", "--server", "http://x")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: invalid argument: field 'connector.sip_presence.server'"
    )


def test_add_a_teams_connector_keeps_the_secret_to_itself(up: Running, tmp_path: Path) -> None:
    result = sip2uc(
        up,
        "connector",
        "add",
        "teams",
        "teams",
        "--tenant-id",
        "contoso.onmicrosoft.com",
        "--client-id",
        GUID,
        "--client-secret-file",
        str(secret_file(tmp_path, "client-secret-value")),
        "--graph-url",
        "https://127.0.0.1:8443/v1.0",
        "--token-url",
        "https://127.0.0.1:8443/token",
        "--external",
    )
    assert result.exit_code == 0, result.stderr
    shown = sip2uc(up, "connector", "show", "teams")
    assert "client-secret-value" not in shown.stdout
    assert "teams.has_client_secret" in shown.stdout
    sip2uc(up, "connector", "delete", "teams")


def test_users_get_and_change_their_teams_identities(up: Running) -> None:
    add_user(up, "7001", "--entra-object-id", GUID, "--upn", "u7001@example.com")
    shown = json.loads(sip2uc(up, "user", "show", "7001", "--json").stdout)
    assert (shown["entra_object_id"], shown["user_principal_name"]) == (GUID, "u7001@example.com")
    changed = sip2uc(up, "user", "update", "7001", "--upn", "new7001@example.com")
    assert changed.exit_code == 0, changed.stderr
    shown = json.loads(sip2uc(up, "user", "show", "7001", "--json").stdout)
    assert shown["user_principal_name"] == "new7001@example.com"


@pytest.mark.interop
@pytest.mark.skipif(presence_server.missing() is not None, reason=str(presence_server.missing()))
def test_up_runs_a_configured_connector_and_status_shows_it(up: Running, tmp_path: Path) -> None:
    kamailio = presence_server.KamailioPresence(tmp_path / "kamailio", auth=True).start()
    try:
        add_user(up, "7101", "--sip-uri", "sip:7101@uc.example.com")
        result = sip2uc(
            up,
            "connector",
            "add",
            "sip-presence",
            "kam",
            "--server",
            kamailio.server_uri("tcp"),
            "--username",
            presence_server.USERNAME,
            "--password-file",
            str(secret_file(tmp_path, presence_server.PASSWORD)),
        )
        assert result.exit_code == 0, result.stderr
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline:
            [line] = [
                r
                for r in sip2uc(up, "connector", "list").stdout.splitlines()
                if r.startswith("kam ")
            ]
            if line.split()[2] == "connected":
                break
            time.sleep(0.3)
        assert line.split()[:3] == ["kam", "sip-presence", "connected"], line
        status = sip2uc(up, "status").stdout
        assert "connector kam" in status and "connected" in status
        assert sip2uc(up, "connector", "delete", "kam").exit_code == 0
    finally:
        kamailio.stop()
