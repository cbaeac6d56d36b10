"""`sip2uc user ...`: create, list, show, change and delete users."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import typer

from sip2uc.cli import output
from sip2uc.cli.parsing import parse_digest_algorithms
from sip2uc.cli.state import JsonFlag, get_state
from sip2uc.client import ClientError
from sip2uc.v1 import common_pb2, users_pb2

app = typer.Typer(
    rich_markup_mode="markdown",
    help=(
        "Manage users. A user is referenced by extension, E.164 number, SIP URI "
        "or resource name (users/ID)."
    ),
    no_args_is_help=True,
)

EntraOption = Annotated[
    str | None,
    typer.Option(
        "--entra-object-id",
        metavar="GUID",
        help="The user's object id in Microsoft Entra ID (Teams connector; '' removes it).",
    ),
]
UpnOption = Annotated[
    str | None,
    typer.Option(
        "--upn",
        help="The user's principal name, e.g. alice@example.com (Teams connector; '' removes it).",
    ),
]

UserRef = Annotated[
    str, typer.Argument(metavar="EXT", help="Extension, E.164 number, SIP URI or users/ID.")
]
DigestOption = Annotated[
    list[str] | None,
    typer.Option(
        "--digest-algorithm",
        metavar="ALG",
        help=(
            "Digest algorithm the handset is challenged with: SHA-256 or MD5, repeat for both "
            "(most preferred first; handsets that read only the first challenge answer that "
            "one). 'default' alone: the sidecar's default (MD5 unless configured). A response "
            "computed with another algorithm is refused."
        ),
        show_default=False,
    ),
]


def _algorithms(names: list[str]) -> list[common_pb2.DigestAlgorithm.ValueType]:
    try:
        return [common_pb2.DigestAlgorithm.ValueType(v) for v in parse_digest_algorithms(names)]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--digest-algorithm") from None


def _algorithm_names(values: Iterable[int]) -> str:
    return " then ".join(
        common_pb2.DigestAlgorithm.Name(common_pb2.DigestAlgorithm.ValueType(v))
        .removeprefix("DIGEST_ALGORITHM_")
        .replace("SHA_256", "SHA-256")
        for v in values
    )


def _device_summary(device: users_pb2.Device) -> str:
    kind = device.WhichOneof("kind")
    if kind == "registering":
        reg = device.registering
        password = "password set" if reg.has_password else "no password"
        digest = (
            f", digest {_algorithm_names(reg.digest_algorithms)}" if reg.digest_algorithms else ""
        )
        return f"{device.id or '-'}: registers as {reg.digest_username} ({password}{digest})"
    if kind == "trunk":
        trunk = device.trunk
        return (
            f"{device.id or '-'}: trunk port {trunk.request_uri_user} from {trunk.source_network}"
        )
    return f"{device.id or '-'}: (no kind)"


def _user_row(user: users_pb2.User) -> tuple[str, ...]:
    return (
        user.extension or "-",
        user.display_name or "-",
        user.sip_uri,
        user.e164 or "-",
        user.email or "-",
        "disabled" if user.disabled else "enabled",
        str(len(user.devices)),
    )


_USER_COLUMNS = ("ext", "name", "sip uri", "e164", "email", "state", "devices")


def show_user(user: users_pb2.User) -> None:
    pairs = [
        ("name", user.name),
        ("extension", user.extension or "-"),
        ("display name", user.display_name or "-"),
        ("sip uri", user.sip_uri),
        ("e164", user.e164 or "-"),
        ("email", user.email or "-"),
        ("state", "disabled" if user.disabled else "enabled"),
    ]
    pairs.extend(("device", _device_summary(device)) for device in user.devices)
    if user.entra_object_id:
        pairs.append(("entra object id", user.entra_object_id))
    if user.user_principal_name:
        pairs.append(("upn", user.user_principal_name))
    if user.HasField("origin") and user.origin.source:
        pairs.append(("imported from", f"{user.origin.source} {user.origin.source_id}".strip()))
    pairs.append(("created", output.timestamp(user.create_time)))
    pairs.append(("updated", output.timestamp(user.update_time)))
    output.show(output.key_values(None, pairs))


@app.command("add")
def add(
    ctx: typer.Context,
    extension: Annotated[str, typer.Argument(metavar="EXT", help="Extension, 2-10 digits.")],
    name: Annotated[str, typer.Option("--name", help="Display name (caller ID).")],
    password: Annotated[
        str,
        typer.Option(
            "--password",
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            help=(
                "Digest password of the handset. Leave the option out to be asked for it "
                "(hidden), which keeps it out of shell history and ps."
            ),
        ),
    ],
    e164: Annotated[
        str | None, typer.Option("--e164", help="E.164 number, e.g. +4989123456.")
    ] = None,
    sip_uri: Annotated[
        str | None,
        typer.Option("--sip-uri", help="SIP identity. Default: sip:EXT@<sip_domain setting>."),
    ] = None,
    email: Annotated[str | None, typer.Option("--email", help="E-mail address.")] = None,
    digest_algorithm: DigestOption = None,
    entra_object_id: EntraOption = None,
    upn: UpnOption = None,
    json_flag: JsonFlag = False,
) -> None:
    """Create a user with one registering handset whose digest username is EXT."""
    state = get_state(ctx)
    client = state.client()
    algorithms = _algorithms(digest_algorithm) if digest_algorithm else []
    if entra_object_id or upn:
        # The Teams identities go in the same CreateUser request.
        if not sip_uri:
            domain = client.get_settings().sip_domain
            if not domain:
                raise ClientError(
                    "the server has no sip_domain setting: pass --sip-uri "
                    "or set it with `sip2uc settings set sip_domain DOMAIN`"
                )
            sip_uri = f"sip:{extension}@{domain}"
        request = users_pb2.User(
            sip_uri=sip_uri,
            display_name=name,
            extension=extension,
            e164=e164 or "",
            email=email or "",
            entra_object_id=entra_object_id or "",
            user_principal_name=upn or "",
            devices=[
                users_pb2.Device(
                    registering=users_pb2.RegisteringDevice(
                        digest_username=extension,
                        password=password,
                        digest_algorithms=algorithms,
                    )
                )
            ],
        )
        user = client.users.CreateUser(
            users_pb2.CreateUserRequest(user=request), timeout=client.timeout
        ).user
    else:
        user = client.create_user(
            extension,
            name,
            password,
            e164=e164,
            sip_uri=sip_uri,
            email=email,
            digest_algorithms=algorithms,
        )
    if state.wants_json(json_flag):
        output.print_json(user)
    else:
        output.info_line(f"created {user.name} ({user.sip_uri}, extension {user.extension})")


@app.command("list")
def list_users(
    ctx: typer.Context,
    filter_text: Annotated[
        str,
        typer.Option(
            "--filter",
            help="Case-insensitive text matched against SIP URI, name, extension, number, e-mail.",
        ),
    ] = "",
    json_flag: JsonFlag = False,
) -> None:
    """List users ordered by extension."""
    state = get_state(ctx)
    found = list(state.client().iter_users(filter_text))
    if state.wants_json(json_flag):
        output.print_json([output.message_dict(user) for user in found])
        return
    output.show(output.table(None, _USER_COLUMNS, (_user_row(user) for user in found)))


@app.command("show")
def show(ctx: typer.Context, ref: UserRef, json_flag: JsonFlag = False) -> None:
    """Show one user with its devices."""
    state = get_state(ctx)
    user = state.client().resolve_user(ref)
    if state.wants_json(json_flag):
        output.print_json(user)
    else:
        show_user(user)


@app.command("delete")
def delete(ctx: typer.Context, ref: UserRef) -> None:
    """Delete a user, its devices and its registration bindings."""
    client = get_state(ctx).client()
    response = client.users.DeleteUser(
        users_pb2.DeleteUserRequest(name=ref), timeout=client.timeout
    )
    output.info_line(f"deleted {response.name or ref}")


@app.command("set-password")
def set_password(
    ctx: typer.Context,
    ref: UserRef,
    password: Annotated[
        str,
        typer.Option(
            "--password",
            prompt="New password",
            hide_input=True,
            confirmation_prompt=True,
            help=(
                "The new digest password. Leave the option out to be asked for it "
                "(hidden), which keeps it out of shell history and ps."
            ),
        ),
    ],
    device: Annotated[
        str | None,
        typer.Option("--device", help="Device id, when the user has several handsets."),
    ] = None,
) -> None:
    """Set the digest password of a user's registering handset."""
    client = get_state(ctx).client()
    user = client.resolve_user(ref)
    candidates = [d for d in user.devices if d.WhichOneof("kind") == "registering"]
    if device is not None:
        candidates = [d for d in candidates if d.id == device]
        if not candidates:
            raise ClientError(f"{ref} has no registering device {device!r}")
    if not candidates:
        raise ClientError(f"{ref} has no registering handset")
    if len(candidates) > 1:
        ids = ", ".join(d.id for d in candidates)
        raise typer.BadParameter(f"{ref} has several handsets ({ids})", param_hint="--device")
    target = candidates[0].id
    update = users_pb2.User(name=user.name)
    for existing in user.devices:
        copy = update.devices.add()
        copy.CopyFrom(existing)
        # Other devices keep their password: the server keeps it when it is empty.
        if existing.id == target and existing.WhichOneof("kind") == "registering":
            copy.registering.password = password
    updated = client.update_user(update, ["devices"])
    output.info_line(f"password of {updated.extension or updated.name} ({target}) changed")


@app.command("update")
def update(
    ctx: typer.Context,
    ref: UserRef,
    name: Annotated[str | None, typer.Option("--name", help="New display name.")] = None,
    e164: Annotated[
        str | None, typer.Option("--e164", help="New E.164 number ('' removes it).")
    ] = None,
    email: Annotated[
        str | None, typer.Option("--email", help="New e-mail ('' removes it).")
    ] = None,
    sip_uri: Annotated[str | None, typer.Option("--sip-uri", help="New SIP identity.")] = None,
    extension: Annotated[str | None, typer.Option("--extension", help="New extension.")] = None,
    enabled: Annotated[
        bool | None,
        typer.Option(
            "--enable/--disable",
            help="Enable, or disable (keeps the data but refuses registration and calls).",
            show_default=False,
        ),
    ] = None,
    digest_algorithm: DigestOption = None,
    entra_object_id: EntraOption = None,
    upn: UpnOption = None,
    json_flag: JsonFlag = False,
) -> None:
    """Change the given fields of a user (only those: a field mask is sent).
    --digest-algorithm applies to every handset of the user."""
    state = get_state(ctx)
    user = users_pb2.User(name=ref)
    paths: list[str] = []
    if digest_algorithm:
        algorithms = _algorithms(digest_algorithm)
        current = state.client().resolve_user(ref)
        if not any(d.WhichOneof("kind") == "registering" for d in current.devices):
            raise ClientError(f"{ref} has no registering handset")
        for existing in current.devices:
            copy = user.devices.add()
            copy.CopyFrom(existing)
            # The server keeps each password when it is empty.
            if existing.WhichOneof("kind") == "registering":
                copy.registering.ClearField("digest_algorithms")
                copy.registering.digest_algorithms.extend(algorithms)
        paths.append("devices")
    if name is not None:
        user.display_name = name
        paths.append("display_name")
    if e164 is not None:
        user.e164 = e164
        paths.append("e164")
    if email is not None:
        user.email = email
        paths.append("email")
    if sip_uri is not None:
        user.sip_uri = sip_uri
        paths.append("sip_uri")
    if extension is not None:
        user.extension = extension
        paths.append("extension")
    if enabled is not None:
        user.disabled = not enabled
        paths.append("disabled")
    if entra_object_id is not None:
        user.entra_object_id = entra_object_id
        paths.append("entra_object_id")
    if upn is not None:
        user.user_principal_name = upn
        paths.append("user_principal_name")
    if not paths:
        raise typer.BadParameter(
            "nothing to change: give at least one of --name, --e164, --email, --sip-uri, "
            "--extension, --enable/--disable, --digest-algorithm, --entra-object-id, --upn"
        )
    updated = state.client().update_user(user, paths)
    if state.wants_json(json_flag):
        output.print_json(updated)
    else:
        output.info_line(f"updated {updated.name}: {', '.join(paths)}")


# -- buddy lists and who may watch (BLF) ---------------------------------------

_POLICIES = {
    "everyone": users_pb2.WATCH_POLICY_EVERYONE,
    "same-sidecar": users_pb2.WATCH_POLICY_SAME_SIDECAR,
    "allow-list": users_pb2.WATCH_POLICY_ALLOW_LIST,
}


def _labels(state_refs: Iterable[str], ctx: typer.Context) -> list[str]:
    """Extensions (or SIP URIs) for `users/ID` references, for people."""
    refs = list(state_refs)
    if not refs:
        return []
    labels = {u.name: u.extension or u.sip_uri for u in get_state(ctx).client().iter_users()}
    return [labels.get(ref, ref) for ref in refs]


@app.command("buddies")
def buddies(
    ctx: typer.Context,
    ref: UserRef,
    members: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[BUDDY]...",
            help="With --set, --add or --remove: users (extension, E.164, SIP URI or users/ID).",
            show_default=False,
        ),
    ] = None,
    set_: Annotated[bool, typer.Option("--set", help="Replace the list with BUDDY...")] = False,
    add_: Annotated[bool, typer.Option("--add", help="Add BUDDY... to the list.")] = False,
    remove: Annotated[bool, typer.Option("--remove", help="Remove BUDDY... from it.")] = False,
    json_flag: JsonFlag = False,
) -> None:
    """Show or change a user's buddy list: the users its handsets watch all at once by
    subscribing to `sip:buddies@<domain>` (an RFC 4662 resource list, presence or dialog)."""
    state = get_state(ctx)
    client = state.client()
    given = list(members or [])
    if sum((set_, add_, remove)) > 1:
        raise typer.BadParameter("give one of --set, --add, --remove")
    current = client.resolve_user(ref)
    if set_ or add_ or remove:
        if not given and not set_:
            raise typer.BadParameter("name at least one BUDDY")
        wanted = [client.resolve_user(m).name for m in given]
        if add_:
            wanted = list(current.settings.buddies) + [
                w for w in wanted if w not in current.settings.buddies
            ]
        elif remove:
            wanted = [b for b in current.settings.buddies if b not in wanted]
        user = users_pb2.User(name=current.name, settings=users_pb2.UserSettings(buddies=wanted))
        current = client.update_user(user, ["settings.buddies"])
    elif given:
        raise typer.BadParameter("to change the list, give --set, --add or --remove")
    if state.wants_json(json_flag):
        output.print_json(list(current.settings.buddies))
        return
    for label in _labels(current.settings.buddies, ctx):
        typer.echo(label)


@app.command("watchers")
def watchers(
    ctx: typer.Context,
    ref: UserRef,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            metavar="POLICY",
            help=(
                "Who may watch the user's presence and calls from a handset: everyone (the "
                "default: every user of this control plane), same-sidecar (watchers on a "
                "sidecar the user is registered on) or allow-list (only --allow users)."
            ),
        ),
    ] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option("--allow", metavar="EXT", help="With allow-list: a user allowed to watch."),
    ] = None,
) -> None:
    """Show or set who may watch a user (presence, BLF)."""
    client = get_state(ctx).client()
    current = client.resolve_user(ref)
    if policy is not None or allow:
        paths = []
        settings = users_pb2.UserSettings()
        if policy is not None:
            if policy not in _POLICIES:
                raise typer.BadParameter(f"policy must be one of {', '.join(_POLICIES)}")
            settings.watch_policy = _POLICIES[policy]
            paths.append("settings.watch_policy")
        if allow is not None:
            settings.allowed_watchers.extend(client.resolve_user(a).name for a in allow)
            paths.append("settings.allowed_watchers")
        current = client.update_user(users_pb2.User(name=current.name, settings=settings), paths)
    names = {v: k for k, v in _POLICIES.items()}
    typer.echo(f"policy: {names.get(current.settings.watch_policy, 'everyone')}")
    for label in _labels(current.settings.allowed_watchers, ctx):
        typer.echo(f"allowed: {label}")
