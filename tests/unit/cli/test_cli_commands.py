import csv
import os
import stat
from pathlib import Path

import pytest
from sip2uc.cli.calls import call_row
from sip2uc.cli.importing import CredentialsFile, problem_rows
from sip2uc.cli.main import app
from sip2uc.cli.registrations import deletion_name
from sip2uc.cli.status import apply_setting
from sip2uc.v1 import admin_pb2, calls_pb2, directory_pb2
from typer.testing import CliRunner

runner = CliRunner()
# Port 1 on loopback: nothing listens there, the connection is refused at once.
NOWHERE = {"SIP2UC_CONTROL": "127.0.0.1:1", "SIP2UC_TOKEN": None, "SIP2UC_DATA_DIR": None}


def test_unreachable_control_plane_is_one_line_and_exit_1() -> None:
    result = runner.invoke(app, ["user", "list"], env=NOWHERE)
    assert result.exit_code == 1
    assert result.stderr == (
        "error: cannot reach the control plane at 127.0.0.1:1: is `sip2uc up` running?\n"
    )
    assert result.stdout == ""


def test_bad_state_is_a_usage_error() -> None:
    result = runner.invoke(app, ["presence", "set", "456", "sleepy"], env=NOWHERE)
    assert result.exit_code == 2
    assert "unknown state 'sleepy'" in result.stderr


def test_bad_duration_is_a_usage_error() -> None:
    result = runner.invoke(app, ["presence", "set", "456", "dnd", "--for", "soon"], env=NOWHERE)
    assert result.exit_code == 2
    assert "bad duration 'soon'" in result.stderr


def test_update_without_changes_is_a_usage_error() -> None:
    result = runner.invoke(app, ["user", "update", "456"], env=NOWHERE)
    assert result.exit_code == 2
    assert "nothing to change" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "user",
                "add",
                "456",
                "--name",
                "A",
                "--password",
                "pw-456",
                "--digest-algorithm",
                "SHA-1",
            ],
            "'SHA-1': choose SHA-256 or MD5",
        ),
        (
            ["user", "update", "456", "--digest-algorithm", "md5", "--digest-algorithm", "MD5"],
            "'MD5' is given twice",
        ),
        (
            ["user", "update", "456", "--digest-algorithm", "default", "--digest-algorithm", "MD5"],
            "'default': choose",
        ),
        (["bans", "lift"], "give a source IP or --account USER"),
        (["bans", "lift", "10.0.0.5", "--account", "1001"], "give a source IP or --account USER"),
        (["bans", "lift", "ten.zero"], "'ten.zero' is not an IP address"),
    ],
)
def test_bad_auth_options_are_usage_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, args, env=NOWHERE)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())


def test_bad_rtp_range_is_refused_before_starting() -> None:
    result = runner.invoke(app, ["up", "--rtp-ports", "30000-20000"], env=NOWHERE)
    assert result.exit_code == 2
    assert "bad port range" in result.stderr


def test_every_command_has_help() -> None:
    for args in (
        ["up"],
        ["sidecar"],
        ["user", "add"],
        ["user", "import", "ldap"],
        ["user", "import", "csv"],
        ["contact", "add"],
        ["contact", "list"],
        ["contact", "delete"],
        ["contact", "import", "csv"],
        ["contact", "import", "ldap"],
        ["presence", "watch"],
        ["registration", "delete"],
        ["call", "show"],
        ["settings", "set"],
        ["status"],
        ["sidecar-list"],
        ["bans", "list"],
        ["bans", "lift"],
    ):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, args
        assert f"Usage: sip2uc {' '.join(args)}" in result.stdout


def test_user_reference_deletes_all_its_bindings() -> None:
    assert deletion_name("456") == "456/registrations/-"
    assert deletion_name("users/abc") == "users/abc/registrations/-"
    assert deletion_name("registrations/r1") == "registrations/r1"


def test_setting_a_scalar_masks_its_field() -> None:
    settings = admin_pb2.Settings(min_expires=60)
    assert apply_setting(settings, "min_expires", "120") == "min_expires"
    assert settings.min_expires == 120


def test_setting_a_nested_field_masks_the_top_level_field() -> None:
    settings = admin_pb2.Settings()
    settings.upstream_trunk.sidecar = "trunk"
    assert apply_setting(settings, "upstream_trunk.enabled", "yes") == "upstream_trunk"
    assert settings.upstream_trunk.enabled is True
    assert settings.upstream_trunk.sidecar == "trunk"


def test_setting_a_list_takes_json() -> None:
    settings = admin_pb2.Settings()
    value = '[{"code": "*40", "action": "PRESENCE_CODE_ACTION_AWAY"}]'
    assert apply_setting(settings, "presence_codes", value) == "presence_codes"
    assert [(c.code, c.action) for c in settings.presence_codes] == [
        ("*40", admin_pb2.PRESENCE_CODE_ACTION_AWAY)
    ]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("nope", "1", "unknown setting 'nope'"),
        ("min_expires", "-1", "min_expires is a whole number"),
        ("upstream_trunk.enabled", "maybe", "enabled is true or false"),
        ("realm.x", "1", "realm has no sub-fields"),
        ("presence_codes", "[", "presence_codes takes JSON"),
    ],
)
def test_bad_settings_are_refused(key: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apply_setting(admin_pb2.Settings(), key, value)


def test_credentials_file_is_private_and_holds_every_row(tmp_path: Path) -> None:
    path = tmp_path / "creds.csv"
    out = CredentialsFile(path)
    out.write(
        directory_pb2.ProvisioningCredential(
            user="users/1",
            sip_uri="sip:a@x",
            extension="100",
            digest_username="100",
            password="pw1",
        )
    )
    out.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [
        {
            "user": "users/1",
            "sip_uri": "sip:a@x",
            "extension": "100",
            "digest_username": "100",
            "password": "pw1",
        }
    ]


def test_credentials_never_overwrite_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "creds.csv"
    path.write_text("earlier passwords\n")
    with pytest.raises(FileExistsError):
        CredentialsFile(path).open()
    assert path.read_text() == "earlier passwords\n"


def test_problem_rows_list_skips_conflicts_and_failures() -> None:
    rows = [
        directory_pb2.ImportRowOutcome(
            row=1, action=directory_pb2.IMPORT_ACTION_CREATE, applied=True
        ),
        directory_pb2.ImportRowOutcome(
            row=2,
            source_ref="cn=b",
            action=directory_pb2.IMPORT_ACTION_SKIP,
            reason="no SIP address",
        ),
        directory_pb2.ImportRowOutcome(
            row=3, source_ref="cn=c", action=directory_pb2.IMPORT_ACTION_UPDATE
        ),
    ]
    assert problem_rows(rows, dry_run=False) == [
        ("2", "cn=b", "skip", "-", "no SIP address"),
        ("3", "cn=c", "update", "-", "not applied"),
    ]
    assert problem_rows(rows, dry_run=True) == [("2", "cn=b", "skip", "-", "no SIP address")]


def test_a_call_row_names_its_parties_and_shows_hold() -> None:
    call = calls_pb2.Call(
        name="calls/c1",
        state=calls_pb2.CALL_STATE_CONNECTED,
        caller="users/u1",
        caller_extension="201",
        caller_display_name="Alice",
        dialled="202",
        callee="users/u2",
        callee_extension="202",
        on_hold=True,
    )
    external = calls_pb2.Call(name="calls/c2", caller="sip:+4930123@trunk", dialled="201")

    assert call_row(call)[:5] == ("calls/c1", "connected (on hold)", "201 Alice", "202", "202")
    assert call_row(external)[2:5] == ("sip:+4930123@trunk", "201", "-")
