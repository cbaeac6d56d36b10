"""The `sip2uc` command: run sip2uc and administer it over the admin API."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from typer.core import TyperGroup

from sip2uc.cli import (
    bans,
    calls,
    connectors,
    contacts,
    importing,
    messages,
    presence,
    registrations,
    sidecars,
    status,
    subscriptions,
    trunks,
    users,
)
from sip2uc.cli.output import error_line
from sip2uc.cli.parsing import parse_target
from sip2uc.cli.state import CliState
from sip2uc.client import ClientError, describe_rpc_error


class _FriendlyErrors(TyperGroup):
    """Turns the errors a user can cause or meet (a failed RPC, an unreachable
    control plane, a missing file) into one line on stderr and exit code 1,
    instead of a traceback. Programming errors still show a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except grpc.RpcError as exc:
            state = ctx.obj if isinstance(ctx.obj, CliState) else None
            target = state.control if state is not None else None
            error_line(describe_rpc_error(exc, target).message)
            raise typer.Exit(1) from None
        except ClientError as exc:
            error_line(str(exc))
            raise typer.Exit(1) from None
        except OSError as exc:
            name = f": {exc.filename}" if exc.filename else ""
            error_line(f"{exc.strerror or exc}{name}")
            raise typer.Exit(1) from None
        finally:
            if isinstance(ctx.obj, CliState):
                ctx.obj.close()


app = typer.Typer(
    rich_markup_mode="markdown",
    name="sip2uc",
    cls=_FriendlyErrors,
    help=(
        "Run sip2uc (control plane and SIP/RTP sidecars) and administer it: users, "
        "presence, short messages, registrations, subscriptions (buddy lists, BLF), calls, bans, "
        "settings, directory import, the presence connectors to UC platforms and the SIP trunks "
        "to them."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _target(value: str) -> str:
    try:
        return parse_target(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.callback()
def _global(
    ctx: typer.Context,
    control: Annotated[
        str,
        typer.Option(
            "--control",
            envvar="SIP2UC_CONTROL",
            help="Admin API address of the control plane, HOST:PORT.",
            callback=_target,
        ),
    ] = "127.0.0.1:50051",
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="SIP2UC_TOKEN",
            help=(
                "Admin bearer token. Default: on loopback, the admin-token file "
                "`sip2uc up` wrote into the data directory."
            ),
            show_default=False,
        ),
    ] = None,
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir",
            envvar="SIP2UC_DATA_DIR",
            help="Data directory of a local `sip2uc up` (where its admin-token is).",
        ),
    ] = Path("var"),
    tls: Annotated[
        bool | None,
        typer.Option(
            "--tls/--no-tls",
            help="Use TLS to the admin API. Default: TLS unless the address is loopback.",
            show_default=False,
        ),
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option("--ca-file", help="PEM CA certificates to verify the control plane with."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of tables where it applies.")
    ] = False,
) -> None:
    ctx.obj = CliState(
        control=control,
        token=token,
        data_dir=data_dir,
        json=json_output,
        tls=tls,
        ca_file=ca_file,
    )


app.add_typer(users.app, name="user")
app.add_typer(presence.app, name="presence")
app.add_typer(messages.app, name="message")
app.add_typer(registrations.app, name="registration")
app.add_typer(subscriptions.app, name="subscription")
app.add_typer(calls.app, name="call")
app.add_typer(bans.app, name="bans")
app.add_typer(connectors.app, name="connector")
app.add_typer(contacts.app, name="contact")
app.add_typer(trunks.app, name="trunk")
app.add_typer(status.settings_app, name="settings")
app.add_typer(sidecars.app, name="sidecar")
status.register(app)
users.app.add_typer(importing.app, name="import")

#: Packages installed beside the client add commands through this entry point group: each entry
#: is a `register(app)` function. The servers add `up`, `web` and running a sidecar (the
#: `sidecar` group's own action) this way, so the client works (and installs) without them.
COMMAND_GROUP = "sip2uc.cli"


def _add_installed_commands() -> None:
    for entry in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        entry.load()(app)


_add_installed_commands()


def main() -> None:
    """Entry point of the `sip2uc` console script."""
    app(prog_name="sip2uc")
