"""`sip2uc bans ...`: the sources and accounts kept out after failed logins, and lifting them."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from sip2uc.cli import output
from sip2uc.cli.state import JsonFlag, get_state
from sip2uc.v1 import admin_pb2

app = typer.Typer(
    rich_markup_mode="markdown",
    help=(
        "Bans after failed logins. A sidecar ignores one user name from one source address "
        "after repeated wrong passwords (the other handsets behind that address are still "
        "served), and a whole source that tries many user names; the control plane locks an "
        "account guessed from many sources (its registered handsets are still heard)."
    ),
    no_args_is_help=True,
)

_KINDS = {
    admin_pb2.BAN_KIND_SOURCE: "source",
    admin_pb2.BAN_KIND_SOURCE_USER: "user from source",
    admin_pb2.BAN_KIND_ACCOUNT: "account",
}


def ban_row(ban: admin_pb2.Ban) -> tuple[str, ...]:
    return (
        _KINDS.get(ban.kind, "?"),
        ban.source or "any",
        ban.user or "any",
        ban.sidecar.removeprefix("sidecars/") or "control plane",
        ban.reason or "-",
        output.timestamp(ban.expire_time),
    )


@app.command("list")
def list_bans(ctx: typer.Context, json_flag: JsonFlag = False) -> None:
    """List the bans in force: sources, users from a source, and locked accounts."""
    state = get_state(ctx)
    client = state.client()
    response = client.admin.ListBans(admin_pb2.ListBansRequest(), timeout=client.timeout)
    if state.wants_json(json_flag):
        output.print_json(response)
        return
    if not response.bans:
        output.info_line("no bans in force")
        return
    columns = ("kind", "source", "user", "held by", "reason", "until")
    output.show(output.table(None, columns, (ban_row(b) for b in response.bans)))
    if response.unreported:
        output.info_line(f"and {response.unreported} more the sidecars did not list")


@app.command("lift")
def lift(
    ctx: typer.Context,
    source: Annotated[
        str | None,
        typer.Argument(
            metavar="IP",
            help="Source address whose bans end (its banned user names included).",
            show_default=False,
        ),
    ] = None,
    account: Annotated[
        str | None,
        typer.Option("--account", metavar="USER", help="Unlock this account (digest user name)."),
    ] = None,
    sidecar: Annotated[
        str | None,
        typer.Option("--sidecar", metavar="NAME", help="Only on this sidecar (default: all)."),
    ] = None,
    json_flag: JsonFlag = False,
) -> None:
    """Lift the bans of a source address (IP), or with --account the lock of an account."""
    if (source is None) == (account is None):
        raise typer.BadParameter("give a source IP or --account USER (one of them)")
    if source is not None:
        try:
            ipaddress.ip_address(source)
        except ValueError:
            raise typer.BadParameter(f"{source!r} is not an IP address", param_hint="IP") from None
    state = get_state(ctx)
    client = state.client()
    response = client.admin.LiftBans(
        admin_pb2.LiftBansRequest(
            source=source or "", account=account or "", sidecar=sidecar or ""
        ),
        timeout=client.timeout,
    )
    if state.wants_json(json_flag):
        output.print_json(response)
        return
    what = f"account {account}" if account is not None else source
    if not response.bans:
        if account is not None:
            output.info_line(f"{what} was not locked")
        else:
            output.info_line(f"{what}: no ban was reported (the sidecars were told to lift any)")
        return
    output.info_line(f"{what}: {len(response.bans)} ban(s) lifted")
