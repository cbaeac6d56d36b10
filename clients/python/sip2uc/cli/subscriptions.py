"""`sip2uc subscription ...`: handsets' subscriptions (buddy lists, BLF keys)."""

from __future__ import annotations

from typing import Annotated

import typer

from sip2uc.cli import output
from sip2uc.cli.state import JsonFlag, get_state

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Show who watches whom: handsets' presence and dialog (BLF) subscriptions.",
    no_args_is_help=True,
)


@app.command("list")
def list_subscriptions(
    ctx: typer.Context,
    user: Annotated[
        str,
        typer.Option(
            "--user", metavar="EXT", help="Only subscriptions of this watcher or watching it."
        ),
    ] = "",
    json_flag: JsonFlag = False,
) -> None:
    """One line per subscription: watcher, watched user (or buddy list), event, sidecar,
    handset address and expiry."""
    state = get_state(ctx)
    client = state.client()
    found = list(client.iter_subscriptions(user=user))
    if state.wants_json(json_flag):
        output.print_json([output.message_dict(s) for s in found])
        return
    # Users by resource name, to print extensions rather than ids.
    label = {u.name: u.extension or u.sip_uri for u in client.iter_users()} if found else {}
    rows = (
        (
            label.get(s.watcher, s.watcher),
            s.resource_uri if len(s.users) != 1 else label.get(s.users[0], s.resource_uri),
            s.event,
            s.sidecar or "-",
            output.socket_address(s.source),
            output.timestamp(s.expire_time),
        )
        for s in found
    )
    columns = ("watcher", "watched", "event", "sidecar", "source", "expires")
    output.show(output.table(None, columns, rows))
