"""`sip2uc connector ...`: what is checked before anything is sent."""

from __future__ import annotations

from pathlib import Path

from sip2uc.cli.main import app
from typer.testing import CliRunner

runner = CliRunner()
NOWHERE = {"SIP2UC_CONTROL": "127.0.0.1:1", "SIP2UC_TOKEN": None, "SIP2UC_DATA_DIR": None}


def test_every_connector_command_has_help() -> None:
    for args in (
        ["connector"],
        ["connector", "add", "sip-presence"],
        ["connector", "add", "teams"],
        ["connector", "list"],
        ["connector", "show"],
        ["connector", "update"],
        ["connector", "delete"],
        ["connector", "run"],
    ):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, args
        assert f"Usage: sip2uc {' '.join(args)}" in result.stdout


def test_a_password_without_a_username_is_a_usage_error(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("pw\n")
    result = runner.invoke(
        app,
        [
            "connector",
            "add",
            "sip-presence",
            "k",
            "--server",
            "sip:h",
            "--password-file",
            str(secret),
        ],
        env=NOWHERE,
    )
    assert result.exit_code == 2
    assert "a password needs --username" in result.stderr


def test_an_empty_secret_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    secret = tmp_path / "empty"
    secret.write_text("\n")
    result = runner.invoke(
        app,
        [
            "connector",
            "add",
            "teams",
            "t",
            "--tenant-id",
            "t",
            "--client-id",
            "c",
            "--client-secret-file",
            str(secret),
        ],
        env=NOWHERE,
    )
    assert result.exit_code == 1
    assert result.stderr == f"error: {secret} holds no client secret\n"


def test_a_missing_secret_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = runner.invoke(
        app,
        [
            "connector",
            "add",
            "sip-presence",
            "k",
            "--server",
            "sip:h",
            "--username",
            "u",
            "--password-file",
            str(missing),
        ],
        env=NOWHERE,
    )
    assert result.exit_code == 1
    assert result.stderr == f"error: No such file or directory: {missing}\n"


def test_update_without_changes_is_a_usage_error() -> None:
    result = runner.invoke(app, ["connector", "update", "k"], env=NOWHERE)
    assert result.exit_code == 2
    assert "nothing to change" in result.stderr
