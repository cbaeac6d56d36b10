"""`sip2uc registration ...`: the handsets' registration bindings."""

from __future__ import annotations

from typing import Annotated

import typer

from sip2uc.cli import output
from sip2uc.cli.state import JsonFlag, get_state
from sip2uc.v1 import registrations_pb2

app = typer.Typer(
    rich_markup_mode="markdown",
    help="List and remove registration bindings (where each handset can be reached).",
    no_args_is_help=True,
)


@app.command("list")
def list_registrations(
    ctx: typer.Context,
    user: Annotated[
        str, typer.Option("--user", metavar="EXT", help="Only this user's bindings.")
    ] = "",
    sidecar: Annotated[
        str, typer.Option("--sidecar", help="Only bindings through this sidecar.")
    ] = "",
    json_flag: JsonFlag = False,
) -> None:
    """List registration bindings with their contact, source address and expiry."""
    state = get_state(ctx)
    found = list(state.client().iter_registrations(user=user, sidecar=sidecar))
    if state.wants_json(json_flag):
        output.print_json([output.message_dict(reg) for reg in found])
        return
    rows = (output.registration_row(reg) for reg in found)
    output.show(output.table(None, output.REGISTRATION_COLUMNS, rows))


def deletion_name(ref: str) -> str:
    """`registrations/ID` stays as is; a user reference means all of that
    user's bindings (`<ref>/registrations/-`, registrations.proto)."""
    if ref.startswith("registrations/") or ref.endswith("/registrations/-"):
        return ref
    return f"{ref}/registrations/-"


@app.command("delete")
def delete(
    ctx: typer.Context,
    ref: Annotated[
        str,
        typer.Argument(
            metavar="NAME|EXT",
            help="A binding (registrations/ID), or a user whose bindings all go.",
        ),
    ],
) -> None:
    """Remove bindings (force unregister). The handset is not told and registers
    again at its next refresh."""
    client = get_state(ctx).client()
    response = client.registrations.DeleteRegistration(
        registrations_pb2.DeleteRegistrationRequest(name=deletion_name(ref)),
        timeout=client.timeout,
    )
    plural = "" if response.removed == 1 else "s"
    output.info_line(f"removed {response.removed} binding{plural}")
