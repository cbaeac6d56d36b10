"""`sip2uc web` and `sip2uc up --web-listen` as the command line presents them."""

from __future__ import annotations

from pathlib import Path

from sip2uc.cli.main import app
from typer.testing import CliRunner


def test_up_offers_the_state_view_off_by_default() -> None:
    result = CliRunner().invoke(app, ["up", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--web-listen" in result.output
    assert "Off by default" in result.output


def test_web_is_a_command_of_its_own() -> None:
    result = CliRunner().invoke(app, ["web", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--listen", "--control", "--token", "--tls-cert", "--tls-key"):
        assert option in result.output


def test_web_off_loopback_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "--data-dir",
            str(tmp_path),
            "web",
            "--control",
            "127.0.0.1:9",
            "--listen",
            "0.0.0.0:0",
        ],
        env={"SIP2UC_TOKEN": None},
    )
    assert result.exit_code == 1
    assert "requires the admin token (--token or SIP2UC_TOKEN)" in result.output
    assert "Traceback" not in result.output


def test_web_needs_both_halves_of_its_certificate(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["web", "--listen", "0.0.0.0:0", "--tls-cert", str(tmp_path / "c.pem")]
    )
    assert result.exit_code == 2
    assert "give both --tls-cert and --tls-key" in result.output
