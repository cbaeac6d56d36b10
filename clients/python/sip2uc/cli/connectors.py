"""`sip2uc connector ...`: presence bridges to UC platforms (a SIP presence server, Teams).

`sip2uc connector run ID` (running one bridge as its own process) comes with the servers'
package, like `sip2uc up`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from google.protobuf import field_mask_pb2

from sip2uc.cli import output
from sip2uc.cli.state import JsonFlag, get_state
from sip2uc.client import ClientError, Sip2ucClient
from sip2uc.v1 import connectors_pb2, connectors_pb2_grpc

app = typer.Typer(
    rich_markup_mode="markdown",
    help=(
        "Presence bridges to UC platforms: a SIP SIMPLE presence server (Kamailio, OpenSIPS, "
        "a PBX) or Microsoft Teams. `sip2uc up` runs them; `sip2uc connector run ID` runs one "
        "on another host."
    ),
    no_args_is_help=True,
)
add_app = typer.Typer(rich_markup_mode="markdown", help="Add a connector.", no_args_is_help=True)
app.add_typer(add_app, name="add")

NameArg = Annotated[
    str,
    typer.Argument(
        metavar="NAME",
        help="Connector id: a lowercase letter, then letters, digits or '-' (max 63).",
    ),
]
ExternalOption = Annotated[
    bool,
    typer.Option(
        "--external",
        help=(
            "Run it only with `sip2uc connector run NAME` (e.g. on a host near the UC "
            "platform), not inside `sip2uc up`."
        ),
    ),
]
DisplayNameOption = Annotated[
    str, typer.Option("--display-name", help="Label shown to administrators.")
]


def _stub(client: Sip2ucClient) -> connectors_pb2_grpc.ConnectorServiceStub:
    return connectors_pb2_grpc.ConnectorServiceStub(client.channel)


def read_secret(path: Path, what: str) -> str:
    """The first line of ``path`` (a file keeps a secret out of shell history and ps)."""
    text = path.read_text(encoding="utf-8").splitlines()
    secret = text[0].strip() if text else ""
    if not secret:
        raise ClientError(f"{path} holds no {what}")
    return secret


def _create(
    ctx: typer.Context, name: str, connector: connectors_pb2.Connector, json_flag: bool
) -> None:
    state = get_state(ctx)
    client = state.client()
    created = (
        _stub(client)
        .CreateConnector(
            connectors_pb2.CreateConnectorRequest(connector_id=name, connector=connector),
            timeout=client.timeout,
        )
        .connector
    )
    if state.wants_json(json_flag):
        output.print_json(created)
    else:
        runs = (
            f"run it with `sip2uc connector run {name}`"
            if created.external
            else "`sip2uc up` runs it"
        )
        output.info_line(f"created {created.name} ({kind_of(created)}); {runs}")


@add_app.command("sip-presence")
def add_sip_presence(
    ctx: typer.Context,
    name: NameArg,
    server: Annotated[
        str,
        typer.Option(
            "--server",
            metavar="URI",
            help="The presence server, sip:HOST:PORT[;transport=udp|tcp|tls].",
        ),
    ],
    username: Annotated[
        str | None,
        typer.Option("--username", help="Digest username for the server's challenges."),
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            "--password-file",
            help="File whose first line is the digest password (kept out of history and ps).",
        ),
    ] = None,
    expires: Annotated[
        int | None,
        typer.Option(
            "--expires",
            metavar="SECONDS",
            help="Expires of PUBLISH and SUBSCRIBE (60-86400; default 600).",
        ),
    ] = None,
    dialog: Annotated[
        bool,
        typer.Option(
            "--dialog/--no-dialog",
            help="Also publish dialog-info (RFC 4235) for users in calls, for BLF keys.",
        ),
    ] = True,
    subscribe: Annotated[
        bool,
        typer.Option(
            "--subscribe/--no-subscribe",
            help="Bring in states set on the server by others (a UC client's DND) as EXTERNAL.",
        ),
    ] = True,
    dnd_note: Annotated[
        str | None,
        typer.Option(
            "--dnd-note", help='Note that marks do-not-disturb (default "Do not disturb").'
        ),
    ] = None,
    tls_ca_file: Annotated[
        Path | None,
        typer.Option("--tls-ca-file", help="PEM CA certificates to verify a TLS server with."),
    ] = None,
    max_in_flight: Annotated[
        int | None,
        typer.Option("--max-in-flight", help="Concurrent SIP transactions at most (default 200)."),
    ] = None,
    external: ExternalOption = False,
    display_name: DisplayNameOption = "",
    json_flag: JsonFlag = False,
) -> None:
    """Add a bridge to a SIP SIMPLE presence server. Users are published under their SIP URI
    (`sip2uc user add ... --sip-uri sip:1001@uc.example.com`)."""
    if password_file is not None and not username:
        raise typer.BadParameter("a password needs --username", param_hint="--password-file")
    config = connectors_pb2.SipPresenceConfig(
        server=server,
        username=username or "",
        password=read_secret(password_file, "password") if password_file else "",
        expires=expires or 0,
        publish_dialog=dialog,
        subscribe=subscribe,
        dnd_note=dnd_note or "",
        max_in_flight=max_in_flight or 0,
        tls_ca_pem=tls_ca_file.read_text(encoding="utf-8") if tls_ca_file else "",
    )
    connector = connectors_pb2.Connector(
        display_name=display_name, external=external, sip_presence=config
    )
    _create(ctx, name, connector, json_flag)


@add_app.command("teams")
def add_teams(
    ctx: typer.Context,
    name: NameArg,
    tenant_id: Annotated[str, typer.Option("--tenant-id", help="Entra tenant id (or domain).")],
    client_id: Annotated[
        str, typer.Option("--client-id", help="The app registration's client id.")
    ],
    client_secret_file: Annotated[
        Path,
        typer.Option(
            "--client-secret-file", help="File whose first line is the app's client secret."
        ),
    ],
    graph_url: Annotated[
        str | None,
        typer.Option("--graph-url", help="Microsoft Graph base URL (default Microsoft's)."),
    ] = None,
    token_url: Annotated[
        str | None,
        typer.Option(
            "--token-url", help="OAuth token endpoint (default Microsoft's for the tenant)."
        ),
    ] = None,
    tls_ca_file: Annotated[
        Path | None,
        typer.Option(
            "--tls-ca-file",
            help="PEM CA certificates for Graph and the token endpoint (a TLS-inspecting proxy).",
        ),
    ] = None,
    poll_interval: Annotated[
        int | None,
        typer.Option(
            "--poll-interval",
            metavar="SECONDS",
            help="How often Teams is polled for states set there (default 30; 0: never).",
        ),
    ] = None,
    external: ExternalOption = False,
    display_name: DisplayNameOption = "",
    json_flag: JsonFlag = False,
) -> None:
    """Add a bridge to Microsoft Teams presence through Microsoft Graph (app-only, permission
    Presence.ReadWrite.All). Users map by Entra object id or UPN (`sip2uc user update ...
    --entra-object-id/--upn`)."""
    config = connectors_pb2.TeamsConfig(
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=read_secret(client_secret_file, "client secret"),
        graph_url=graph_url or "",
        token_url=token_url or "",
        tls_ca_pem=tls_ca_file.read_text(encoding="utf-8") if tls_ca_file else "",
    )
    if poll_interval is not None:
        config.poll_interval.FromSeconds(poll_interval)
    connector = connectors_pb2.Connector(display_name=display_name, external=external, teams=config)
    _create(ctx, name, connector, json_flag)


# --- reading --------------------------------------------------------------------------------


def kind_of(connector: connectors_pb2.Connector) -> str:
    return (connector.WhichOneof("config") or "-").replace("_", "-")


def state_word(connector: connectors_pb2.Connector) -> str:
    return output.enum_label(connectors_pb2.ConnectorState, connector.status.state)


def iter_connectors(client: Sip2ucClient) -> Iterator[connectors_pb2.Connector]:
    stub = _stub(client)
    token = ""
    while True:
        page = stub.ListConnectors(
            connectors_pb2.ListConnectorsRequest(page_size=1000, page_token=token),
            timeout=client.timeout,
        )
        yield from page.connectors
        token = page.next_page_token
        if not token:
            return


def summary_line(connector: connectors_pb2.Connector) -> str:
    """`NAME  KIND  STATE  N users, lag Xs[, error]` — one line per connector."""
    status = connector.status
    lag = status.lag.seconds + status.lag.nanos / 1e9
    parts = [f"{status.users_mapped} users", f"lag {lag:.1f}s"]
    if status.last_error:
        parts.append(status.last_error)
    name = connector.name.removeprefix("connectors/")
    return f"{name:<20} {kind_of(connector):<13} {state_word(connector):<10} {', '.join(parts)}"


@app.command("list")
def list_connectors(ctx: typer.Context, json_flag: JsonFlag = False) -> None:
    """One line per connector: NAME, kind, state (connected, connecting, failed), users
    mapped, lag and the last error."""
    state = get_state(ctx)
    found = list(iter_connectors(state.client()))
    if state.wants_json(json_flag):
        output.print_json([output.message_dict(c) for c in found])
        return
    for connector in found:
        output.info_line(summary_line(connector))


@app.command("show")
def show(ctx: typer.Context, name: NameArg, json_flag: JsonFlag = False) -> None:
    """Show one connector: configuration (never its secrets) and status."""
    state = get_state(ctx)
    client = state.client()
    connector = (
        _stub(client)
        .GetConnector(connectors_pb2.GetConnectorRequest(name=name), timeout=client.timeout)
        .connector
    )
    if state.wants_json(json_flag):
        output.print_json(connector)
        return
    status = connector.status
    lag = status.lag.seconds + status.lag.nanos / 1e9
    pairs = [
        ("name", connector.name),
        ("kind", kind_of(connector)),
        ("display name", connector.display_name or "-"),
        ("run by", "sip2uc connector run" if connector.external else "sip2uc up"),
        ("enabled", "no" if connector.disabled else "yes"),
        ("state", state_word(connector)),
        ("last error", status.last_error or "-"),
        ("users mapped", str(status.users_mapped)),
        ("lag", f"{lag:.1f}s"),
        ("last sync", output.timestamp(status.last_sync_time)),
        ("runner", status.runner or "-"),
        ("last report", output.timestamp(status.report_time)),
        ("changes out", str(status.changes_out)),
        ("changes in", str(status.changes_in)),
    ]
    kind = connector.WhichOneof("config")
    if kind is not None:
        config = output.message_dict(getattr(connector, kind))
        for key, value in sorted(config.items()):
            if key == "tls_ca_pem":
                value = "(set)"
            pairs.append((f"{kind}.{key}", str(value)))
    pairs.append(("created", output.timestamp(connector.create_time)))
    pairs.append(("updated", output.timestamp(connector.update_time)))
    output.show(output.key_values(None, pairs))


@app.command("delete")
def delete(ctx: typer.Context, name: NameArg) -> None:
    """Delete a connector: its bridge withdraws what it published, and the EXTERNAL presence
    it brought in is cleared."""
    client = get_state(ctx).client()
    response = _stub(client).DeleteConnector(
        connectors_pb2.DeleteConnectorRequest(name=name), timeout=client.timeout
    )
    output.info_line(f"deleted {response.name}")


@app.command("update")
def update(
    ctx: typer.Context,
    name: NameArg,
    server: Annotated[
        str | None, typer.Option("--server", metavar="URI", help="New server (sip-presence).")
    ] = None,
    username: Annotated[
        str | None, typer.Option("--username", help="New digest username (sip-presence).")
    ] = None,
    password_file: Annotated[
        Path | None, typer.Option("--password-file", help="New digest password (sip-presence).")
    ] = None,
    expires: Annotated[
        int | None, typer.Option("--expires", metavar="SECONDS", help="New Expires (sip-presence).")
    ] = None,
    client_secret_file: Annotated[
        Path | None, typer.Option("--client-secret-file", help="New client secret (teams).")
    ] = None,
    external: Annotated[
        bool | None,
        typer.Option(
            "--external/--internal",
            help="Run it with `sip2uc connector run` only, or inside `sip2uc up`.",
            show_default=False,
        ),
    ] = None,
    enabled: Annotated[
        bool | None,
        typer.Option("--enable/--disable", help="Enable or disable it.", show_default=False),
    ] = None,
    json_flag: JsonFlag = False,
) -> None:
    """Change the given settings of a connector (only those: a field mask is sent). Its bridge
    restarts with them."""
    given = (server, username, password_file, expires, client_secret_file, external, enabled)
    if all(value is None for value in given):
        raise typer.BadParameter("nothing to change: give at least one option")
    state = get_state(ctx)
    client = state.client()
    stub = _stub(client)
    current = stub.GetConnector(
        connectors_pb2.GetConnectorRequest(name=name), timeout=client.timeout
    ).connector
    kind = current.WhichOneof("config") or ""
    change = connectors_pb2.Connector(name=current.name)
    paths: list[str] = []
    sip = {"server": server, "username": username, "expires": expires}
    if any(v is not None for v in sip.values()) or password_file is not None:
        if kind != "sip_presence":
            raise typer.BadParameter(f"{name} is a {kind_of(current)} connector")
        change.sip_presence.SetInParent()
        for field, value in sip.items():
            if value is not None:
                setattr(change.sip_presence, field, value)
                paths.append(f"sip_presence.{field}")
        if password_file is not None:
            change.sip_presence.password = read_secret(password_file, "password")
            paths.append("sip_presence.password")
    if client_secret_file is not None:
        if kind != "teams":
            raise typer.BadParameter(f"{name} is a {kind_of(current)} connector")
        change.teams.client_secret = read_secret(client_secret_file, "client secret")
        paths.append("teams.client_secret")
    if external is not None:
        change.external = external
        paths.append("external")
    if enabled is not None:
        change.disabled = not enabled
        paths.append("disabled")
    updated = stub.UpdateConnector(
        connectors_pb2.UpdateConnectorRequest(
            connector=change, update_mask=field_mask_pb2.FieldMask(paths=paths)
        ),
        timeout=client.timeout,
    ).connector
    if state.wants_json(json_flag):
        output.print_json(updated)
    else:
        output.info_line(f"updated {updated.name}: {', '.join(paths)}")
