"""`sip2uc trunk ...`: SIP trunks to the UC platform (a PBX, a SIP proxy, an SBC)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from google.protobuf import field_mask_pb2

from sip2uc.cli import output
from sip2uc.cli.connectors import read_secret
from sip2uc.cli.state import JsonFlag, get_state
from sip2uc.client import Sip2ucClient
from sip2uc.v1 import common_pb2, trunks_pb2, trunks_pb2_grpc

app = typer.Typer(
    rich_markup_mode="markdown",
    help=(
        "SIP trunks to the UC platform. Numbers that are no local user go to the trunks whose "
        "pattern matches, by priority, skipping trunks that are down and failing over on a 5xx "
        "or a timeout; calls from a trunk ring the user of the number they are for. "
        "See docs/trunks.md."
    ),
    no_args_is_help=True,
)

NameArg = Annotated[
    str,
    typer.Argument(
        metavar="NAME", help="Trunk id: a lowercase letter, then letters, digits or '-' (max 63)."
    ),
]
_TRANSPORTS = {
    "udp": common_pb2.TRANSPORT_UDP,
    "tcp": common_pb2.TRANSPORT_TCP,
    "tls": common_pb2.TRANSPORT_TLS,
}
_FORMATS = {
    "e164": trunks_pb2.NUMBER_FORMAT_E164,
    "e164-digits": trunks_pb2.NUMBER_FORMAT_E164_DIGITS,
    "national": trunks_pb2.NUMBER_FORMAT_NATIONAL,
}


def _stub(client: Sip2ucClient) -> trunks_pb2_grpc.TrunkServiceStub:
    return trunks_pb2_grpc.TrunkServiceStub(client.channel)


def split_address(address: str) -> tuple[str, int]:
    """HOST, HOST:PORT or [IPv6]:PORT -> (host, port or 0)."""
    address = address.strip()
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.removeprefix(":")
    elif address.count(":") == 1:
        host, _, port = address.partition(":")
    else:
        host, port = address, ""
    if port and not port.isdigit():
        raise typer.BadParameter(f"{address!r}: the port must be a number", param_hint="--address")
    return host, int(port or 0)


def state_word(trunk: trunks_pb2.Trunk) -> str:
    """registered/unregistered for a trunk that is registered to, else up/down (or disabled)."""
    if trunk.disabled:
        return "disabled"
    status = trunk.status
    if trunk.register:
        registered = status.registration == trunks_pb2.TRUNK_REGISTRATION_REGISTERED
        return "registered" if registered else "unregistered"
    return "up" if status.state == trunks_pb2.TRUNK_STATE_UP else "down"


def transport_word(trunk: trunks_pb2.Trunk) -> str:
    return {v: k for k, v in _TRANSPORTS.items()}.get(trunk.transport, "udp")


def iter_trunks(client: Sip2ucClient) -> Iterator[trunks_pb2.Trunk]:
    stub = _stub(client)
    token = ""
    while True:
        page = stub.ListTrunks(
            trunks_pb2.ListTrunksRequest(page_size=1000, page_token=token), timeout=client.timeout
        )
        yield from page.trunks
        token = page.next_page_token
        if not token:
            return


def summary_line(trunk: trunks_pb2.Trunk) -> str:
    """`NAME  STATE  transport host:port via SIDECAR, priority N[, error]`."""
    name = trunk.name.removeprefix("trunks/")
    where = f"{transport_word(trunk)} {trunk.address}{f':{trunk.port}' if trunk.port else ''}"
    parts = [f"{where} via {trunk.sidecar}", f"priority {trunk.priority}"]
    if trunk.status.last_error:
        parts.append(trunk.status.last_error)
    return f"{name:<20} {state_word(trunk):<12} {', '.join(parts)}"


@app.command("add")
def add(
    ctx: typer.Context,
    name: NameArg,
    address: Annotated[
        str,
        typer.Option(
            "--address",
            metavar="HOST:PORT",
            help="The trunk's address; a DNS name without port is resolved with NAPTR/SRV.",
        ),
    ],
    transport: Annotated[
        str, typer.Option("--transport", metavar="udp|tcp|tls", help="Transport.")
    ] = "udp",
    username: Annotated[
        str, typer.Option("--username", help="Digest username for the trunk's challenges.")
    ] = "",
    password_file: Annotated[
        Path | None,
        typer.Option("--password-file", help="File whose first line is the digest password."),
    ] = None,
    register: Annotated[
        bool, typer.Option("--register", help="Register to the trunk (with digest).")
    ] = False,
    pattern: Annotated[
        str,
        typer.Option(
            "--pattern",
            metavar="REGEX",
            help="E.164 numbers this trunk takes (full match); default: any number that is "
            "no local user.",
        ),
    ] = "",
    sidecar: Annotated[
        str, typer.Option("--sidecar", help="The sidecar that carries the trunk.")
    ] = "default",
    priority: Annotated[int, typer.Option("--priority", help="Lower is tried first.")] = 0,
    number_format: Annotated[
        str,
        typer.Option(
            "--number-format",
            metavar="e164|e164-digits|national",
            help="How numbers are written towards the trunk.",
        ),
    ] = "e164",
    region: Annotated[
        str, typer.Option("--region", help="ISO region for national numbers, e.g. DE.")
    ] = "",
    inbound_pattern: Annotated[
        str,
        typer.Option(
            "--inbound-pattern", metavar="REGEX", help="Numbers the trunk may call (full match)."
        ),
    ] = "",
    channel_limit: Annotated[
        int, typer.Option("--channel-limit", help="Concurrent calls at most (0: no limit).")
    ] = 0,
    ca_file: Annotated[
        Path | None,
        typer.Option("--ca-file", help="PEM CA certificates to verify the trunk's TLS with."),
    ] = None,
    json_flag: JsonFlag = False,
) -> None:
    """Add a trunk to the UC platform."""
    if transport not in _TRANSPORTS:
        raise typer.BadParameter("udp, tcp or tls", param_hint="--transport")
    if number_format not in _FORMATS:
        raise typer.BadParameter("e164, e164-digits or national", param_hint="--number-format")
    host, port = split_address(address)
    trunk = trunks_pb2.Trunk(
        address=host,
        port=port,
        transport=_TRANSPORTS[transport],
        sidecar=sidecar,
        username=username,
        register=register,
        outbound_pattern=pattern,
        inbound_pattern=inbound_pattern,
        priority=priority,
        number_format=_FORMATS[number_format],
        region=region,
        channel_limit=channel_limit,
    )
    if password_file is not None:
        trunk.password = read_secret(password_file, "password")
    if ca_file is not None:
        trunk.tls_ca_pem = ca_file.read_text(encoding="utf-8")
    state = get_state(ctx)
    client = state.client()
    created = (
        _stub(client)
        .CreateTrunk(
            trunks_pb2.CreateTrunkRequest(trunk_id=name, trunk=trunk), timeout=client.timeout
        )
        .trunk
    )
    if state.wants_json(json_flag):
        output.print_json(created)
    else:
        output.info_line(f"created {created.name} ({summary_line(created).split(None, 2)[2]})")


@app.command("list")
def list_trunks(ctx: typer.Context, json_flag: JsonFlag = False) -> None:
    """One line per trunk, in the order calls try them: NAME, state (up, down, registered,
    unregistered, disabled), where it is, priority and the last error."""
    state = get_state(ctx)
    found = list(iter_trunks(state.client()))
    if state.wants_json(json_flag):
        output.print_json([output.message_dict(t) for t in found])
        return
    for trunk in found:
        output.info_line(summary_line(trunk))


@app.command("show")
def show(ctx: typer.Context, name: NameArg, json_flag: JsonFlag = False) -> None:
    """Show one trunk: configuration (never its password) and state."""
    state = get_state(ctx)
    client = state.client()
    trunk = (
        _stub(client).GetTrunk(trunks_pb2.GetTrunkRequest(name=name), timeout=client.timeout).trunk
    )
    if state.wants_json(json_flag):
        output.print_json(trunk)
        return
    status = trunk.status
    identity = trunk.identity
    pairs = [
        ("name", trunk.name),
        ("display name", trunk.display_name or "-"),
        ("state", state_word(trunk)),
        ("reachable", output.enum_label(trunks_pb2.TrunkState, status.state)),
        ("registration", output.enum_label(trunks_pb2.TrunkRegistration, status.registration)),
        ("last error", status.last_error or "-"),
        ("since", output.timestamp(status.change_time)),
        ("resolved", ", ".join(status.resolved_addresses) or "-"),
        ("address", f"{trunk.address}{f':{trunk.port}' if trunk.port else ''}"),
        ("transport", transport_word(trunk)),
        ("sidecar", trunk.sidecar),
        ("username", trunk.username or "-"),
        ("password", "(set)" if trunk.has_password else "-"),
        ("register", "yes" if trunk.register else "no"),
        ("outbound pattern", trunk.outbound_pattern or "(any number that is no user)"),
        ("inbound pattern", trunk.inbound_pattern or "(any user)"),
        ("priority", str(trunk.priority)),
        ("number format", output.enum_label(trunks_pb2.NumberFormat, trunk.number_format)),
        ("region", trunk.region or "(server default)"),
        ("codecs", ", ".join(trunk.codecs) or "PCMU, PCMA"),
        ("channel limit", str(trunk.channel_limit or "none")),
        (
            "identity",
            ", ".join(
                word
                for word, on in (
                    ("caller E.164", identity.caller_e164),
                    ("P-Asserted-Identity", identity.p_asserted_identity),
                    ("Diversion", identity.diversion),
                    ("History-Info", identity.history_info),
                )
                if on
            )
            or "-",
        ),
        ("relay to other trunks", "yes" if trunk.allow_relay else "no"),
        ("enabled", "no" if trunk.disabled else "yes"),
        ("created", output.timestamp(trunk.create_time)),
        ("updated", output.timestamp(trunk.update_time)),
    ]
    output.show(output.key_values(None, pairs))


@app.command("update")
def update(
    ctx: typer.Context,
    name: NameArg,
    address: Annotated[
        str | None, typer.Option("--address", metavar="HOST:PORT", help="New address.")
    ] = None,
    transport: Annotated[
        str | None, typer.Option("--transport", metavar="udp|tcp|tls", help="New transport.")
    ] = None,
    username: Annotated[str | None, typer.Option("--username", help="New username.")] = None,
    password_file: Annotated[
        Path | None, typer.Option("--password-file", help="New digest password.")
    ] = None,
    register: Annotated[
        bool | None,
        typer.Option("--register/--no-register", help="Register or not.", show_default=False),
    ] = None,
    pattern: Annotated[
        str | None, typer.Option("--pattern", metavar="REGEX", help="New outbound pattern.")
    ] = None,
    sidecar: Annotated[str | None, typer.Option("--sidecar", help="New sidecar.")] = None,
    priority: Annotated[int | None, typer.Option("--priority", help="New priority.")] = None,
    enabled: Annotated[
        bool | None,
        typer.Option("--enable/--disable", help="Enable or disable it.", show_default=False),
    ] = None,
    json_flag: JsonFlag = False,
) -> None:
    """Change the given settings of a trunk (only those: a field mask is sent)."""
    change = trunks_pb2.Trunk(name=f"trunks/{name.removeprefix('trunks/')}")
    paths: list[str] = []
    if address is not None:
        change.address, change.port = split_address(address)
        paths += ["address", "port"]
    if transport is not None:
        if transport not in _TRANSPORTS:
            raise typer.BadParameter("udp, tcp or tls", param_hint="--transport")
        change.transport = _TRANSPORTS[transport]
        paths.append("transport")
    simple = {
        "username": username,
        "register": register,
        "outbound_pattern": pattern,
        "sidecar": sidecar,
        "priority": priority,
    }
    for field, value in simple.items():
        if value is not None:
            setattr(change, field, value)
            paths.append(field)
    if password_file is not None:
        change.password = read_secret(password_file, "password")
        paths.append("password")
    if enabled is not None:
        change.disabled = not enabled
        paths.append("disabled")
    if not paths:
        raise typer.BadParameter("nothing to change: give at least one option")
    state = get_state(ctx)
    client = state.client()
    updated = (
        _stub(client)
        .UpdateTrunk(
            trunks_pb2.UpdateTrunkRequest(
                trunk=change, update_mask=field_mask_pb2.FieldMask(paths=paths)
            ),
            timeout=client.timeout,
        )
        .trunk
    )
    if state.wants_json(json_flag):
        output.print_json(updated)
    else:
        output.info_line(f"updated {updated.name}: {', '.join(paths)}")


@app.command("delete")
def delete(ctx: typer.Context, name: NameArg) -> None:
    """Delete a trunk: its sidecar stops registering to and checking it; live calls go on."""
    client = get_state(ctx).client()
    response = _stub(client).DeleteTrunk(
        trunks_pb2.DeleteTrunkRequest(name=name), timeout=client.timeout
    )
    output.info_line(f"deleted {response.name}")
