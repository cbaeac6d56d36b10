"""`sip2uc status`, `sip2uc sidecar-list` and `sip2uc settings ...`."""

from __future__ import annotations

import json
from typing import Annotated, Any

import grpc
import typer
from google.protobuf import descriptor, json_format

from sip2uc.cli import connectors, output, trunks
from sip2uc.cli.state import JsonFlag, get_state
from sip2uc.client import Sip2ucClient
from sip2uc.v1 import admin_pb2, common_pb2

settings_app = typer.Typer(
    rich_markup_mode="markdown", help="Show and change server-wide settings.", no_args_is_help=True
)

_FD = descriptor.FieldDescriptor
_INTEGER_TYPES = {
    _FD.TYPE_INT32,
    _FD.TYPE_INT64,
    _FD.TYPE_UINT32,
    _FD.TYPE_UINT64,
    _FD.TYPE_SINT32,
    _FD.TYPE_SINT64,
    _FD.TYPE_FIXED32,
    _FD.TYPE_FIXED64,
    _FD.TYPE_SFIXED32,
    _FD.TYPE_SFIXED64,
}
_UNSIGNED_TYPES = {_FD.TYPE_UINT32, _FD.TYPE_UINT64, _FD.TYPE_FIXED32, _FD.TYPE_FIXED64}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def apply_setting(settings: admin_pb2.Settings, key: str, value: str) -> str:
    """Sets `key` (a Settings field, or a dotted path into a nested message such
    as `upstream_trunk.address`) from its text form, in place. Lists and
    messages take JSON. Returns the top-level field to put in the update mask
    (admin.proto masks top-level fields only)."""
    parts = key.strip().split(".")
    target: Any = settings
    for index, part in enumerate(parts):
        field = target.DESCRIPTOR.fields_by_name.get(part)
        if field is None:
            known = ", ".join(f.name for f in target.DESCRIPTOR.fields)
            where = ".".join(parts[:index]) or "settings"
            raise ValueError(f"unknown setting {key!r}: {where} has {known}")
        if index < len(parts) - 1:
            if field.type != _FD.TYPE_MESSAGE or field.is_repeated:
                raise ValueError(f"{'.'.join(parts[: index + 1])} has no sub-fields")
            target = getattr(target, part)
            continue
        _set_field(target, field, value)
    return parts[0]


def _set_field(target: Any, field: descriptor.FieldDescriptor, value: str) -> None:
    name = field.name
    if field.is_repeated or field.type == _FD.TYPE_MESSAGE:
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name} takes JSON ({exc.msg})") from None
        holder = type(target)()
        try:
            json_format.ParseDict({name: parsed}, holder)
        except json_format.ParseError as exc:
            raise ValueError(f"bad value for {name}: {exc}") from None
        target.ClearField(name)
        target.MergeFrom(holder)
        return
    text = value.strip()
    if field.type == _FD.TYPE_BOOL:
        if text.lower() not in _TRUE | _FALSE:
            raise ValueError(f"{name} is true or false, not {value!r}")
        setattr(target, name, text.lower() in _TRUE)
    elif field.type in _INTEGER_TYPES:
        if not text.lstrip("-").isdigit() or (
            field.type in _UNSIGNED_TYPES and text.startswith("-")
        ):
            raise ValueError(f"{name} is a whole number, not {value!r}")
        setattr(target, name, int(text))
    elif field.type in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        try:
            setattr(target, name, float(text))
        except ValueError:
            raise ValueError(f"{name} is a number, not {value!r}") from None
    elif field.type == _FD.TYPE_ENUM and field.enum_type is not None:
        enum = field.enum_type
        wanted = text.upper().replace("-", "_")
        for candidate in enum.values:
            if candidate.name in (wanted, f"{output.upper_snake(enum.name)}_{wanted}"):
                setattr(target, name, candidate.number)
                break
        else:
            raise ValueError(f"unknown value {value!r} for {name}")
    else:
        setattr(target, name, value)


def _scalar_text(message: Any, field: descriptor.FieldDescriptor) -> str:
    value = getattr(message, field.name)
    if field.type == _FD.TYPE_BOOL:
        return "true" if value else "false"
    if field.type == _FD.TYPE_ENUM and field.enum_type is not None:
        return output.enum_label_by_descriptor(field.enum_type, value)
    return str(value) if value != "" else "-"


def show_settings(settings: admin_pb2.Settings) -> None:
    pairs: list[tuple[str, str]] = []
    for field in settings.DESCRIPTOR.fields:
        if field.is_repeated:
            continue
        if field.type == _FD.TYPE_MESSAGE:
            nested = getattr(settings, field.name)
            for sub in nested.DESCRIPTOR.fields:
                if not sub.is_repeated and sub.type != _FD.TYPE_MESSAGE:
                    pairs.append((f"{field.name}.{sub.name}", _scalar_text(nested, sub)))
            continue
        pairs.append((field.name, _scalar_text(settings, field)))
    output.show(output.key_values("settings", pairs))
    codes = output.table(
        "presence_codes",
        ("code", "action", "description"),
        (
            (
                code.code,
                output.enum_label(admin_pb2.PresenceCodeAction, code.action),
                code.description or "-",
            )
            for code in settings.presence_codes
        ),
    )
    output.show(codes)
    if settings.sidecars:
        policies = output.table(
            "sidecars",
            ("name", "allowed networks", "channel limit"),
            (
                (p.name, ", ".join(p.allowed_networks) or "any", str(p.channel_limit or "default"))
                for p in settings.sidecars
            ),
        )
        output.show(policies)


@settings_app.command("show")
def settings_show(ctx: typer.Context, json_flag: JsonFlag = False) -> None:
    """Show the server-wide settings, presence codes and per-sidecar policies."""
    state = get_state(ctx)
    settings = state.client().get_settings()
    if state.wants_json(json_flag):
        output.print_json(settings)
    else:
        show_settings(settings)


@settings_app.command("set")
def settings_set(
    ctx: typer.Context,
    key: Annotated[
        str,
        typer.Argument(help="Setting name, e.g. sip_domain, realm, upstream_trunk.address."),
    ],
    value: Annotated[str, typer.Argument(help="New value; lists and messages as JSON.")],
) -> None:
    """Change one setting; connected sidecars get the change at once. Changing
    the realm invalidates every stored password hash."""
    client = get_state(ctx).client()
    settings = client.get_settings()
    try:
        path = apply_setting(settings, key, value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="KEY/VALUE") from None
    request = admin_pb2.UpdateSettingsRequest(settings=settings)
    request.update_mask.paths.append(path)
    updated = client.admin.UpdateSettings(request, timeout=client.timeout).settings
    field = updated.DESCRIPTOR.fields_by_name[path]
    if field.is_repeated or field.type == _FD.TYPE_MESSAGE:
        shown = json.dumps(output.message_dict(updated).get(path, None))
    else:
        shown = _scalar_text(updated, field)
    output.info_line(f"{path} = {shown}")


def status(ctx: typer.Context, json_flag: JsonFlag = False) -> None:
    """Show counts of users, registrations, calls, sidecars, bans and locked accounts,
    presence totals and the connectors' and trunks' states."""
    state = get_state(ctx)
    client = state.client()
    result = client.admin.GetStatus(admin_pb2.GetStatusRequest(), timeout=client.timeout)
    if state.wants_json(json_flag):
        output.print_json(result)
        return
    pairs = [
        ("control plane", client.target),
        ("version", result.version or "-"),
        ("started", output.timestamp(result.start_time)),
        ("users", str(result.users)),
        ("registered users", str(result.registered_users)),
        ("bindings", str(result.bindings)),
        ("active calls", str(result.active_calls)),
        ("sidecars connected", str(result.sidecars_connected)),
        ("sidecars lost", str(result.sidecars_lost)),
        ("bans", f"{result.bans} (sip2uc bans list)" if result.bans else "0"),
        (
            "locked accounts",
            f"{result.locked_accounts} (sip2uc bans list)" if result.locked_accounts else "0",
        ),
    ]
    for name, count in sorted(result.presence.items()):
        try:
            label = output.availability(common_pb2.Availability.Value(name))
        except ValueError:
            label = name
        pairs.append((f"presence {label}", str(count)))
    pairs.extend(_connector_pairs(client))
    pairs.extend(_trunk_pairs(client))
    output.show(output.key_values(None, pairs))


def _trunk_pairs(client: Sip2ucClient) -> list[tuple[str, str]]:
    """One line per trunk: its state word, where it is and its last error."""
    try:
        found = list(trunks.iter_trunks(client))
    except grpc.RpcError as exc:
        if exc.code() is grpc.StatusCode.UNIMPLEMENTED:  # an older control plane
            return []
        raise
    if not found:
        return [("trunks", "none")]
    return [
        (f"trunk {t.name.removeprefix('trunks/')}", trunks.summary_line(t).split(None, 1)[1])
        for t in found
    ]


def _connector_pairs(client: Sip2ucClient) -> list[tuple[str, str]]:
    """One line per connector: its state, users, lag and last error."""
    try:
        found = list(connectors.iter_connectors(client))
    except grpc.RpcError as exc:
        if exc.code() is grpc.StatusCode.UNIMPLEMENTED:  # an older control plane
            return []
        raise
    if not found:
        return [("connectors", "none")]
    return [
        (
            f"connector {c.name.removeprefix('connectors/')}",
            connectors.summary_line(c).split(None, 1)[1],
        )
        for c in found
    ]


def sidecar_list(ctx: typer.Context, json_flag: JsonFlag = False) -> None:
    """List the sidecars that have connected: state, listeners, call legs in use against the
    limit each enforces, bindings, and whether its name is enrolled."""
    state = get_state(ctx)
    client = state.client()
    found = client.admin.ListSidecars(
        admin_pb2.ListSidecarsRequest(), timeout=client.timeout
    ).sidecars
    if state.wants_json(json_flag):
        output.print_json([output.message_dict(s) for s in found])
        return
    columns = (
        "name",
        "site",
        "state",
        "sip",
        "rtp",
        "legs",
        "bindings",
        "enrolled",
        "version",
        "last seen",
    )
    rows = (
        (
            s.name.removeprefix("sidecars/"),
            s.site or "-",
            output.sidecar_state(s.state),
            ", ".join(s.sip_listeners) or "-",
            s.rtp or "-",
            legs_text(s),
            str(s.bindings),
            "yes" if s.enrolled else "no",
            s.version or "-",
            output.timestamp(s.last_seen_time),
        )
        for s in found
    )
    output.show(output.table(None, columns, rows))


def legs_text(s: admin_pb2.Sidecar) -> str:
    """Legs in use against the limit the sidecar enforces (the channel-limit setting, or less
    when its RTP ports or open files cannot carry that many)."""
    text = f"{s.active_legs}/{s.channel_limit}"
    if s.capacity and s.channel_limit == s.capacity:
        text += " (capacity)"
    return text


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("sidecar-list")(sidecar_list)
    app.command("sidecars", help="Same as sidecar-list.")(sidecar_list)
