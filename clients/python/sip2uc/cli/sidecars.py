"""`sip2uc sidecar enroll|revoke|enrollments`: the credentials sidecars connect with.

The servers' package adds running a sidecar to this group (`sip2uc sidecar --name ...`): these
subcommands are admin commands and work without it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from sip2uc.cli import output
from sip2uc.cli.state import JsonFlag, get_state
from sip2uc.v1 import admin_pb2

app = typer.Typer(
    rich_markup_mode="markdown",
    help=(
        "Run a sidecar (`sip2uc sidecar --name NAME ...`, with the servers installed), or "
        "manage the credentials sidecars connect with: enroll, revoke, enrollments."
    ),
    no_args_is_help=True,
)

SidecarName = Annotated[
    str, typer.Argument(metavar="NAME", help="Sidecar name, e.g. vlan10 (or sidecars/vlan10).")
]


def _claim(path: Path, replace: bool) -> Path:
    """A new, empty 0600 file beside `path` to write the credential into, made before the
    credential is minted so that a path that cannot be written loses nothing."""
    if path.exists() and not replace:
        raise typer.BadParameter(
            f"{path} exists (give --replace to rotate the credential it holds)",
            param_hint="--output",
        )
    temporary = path.with_name(f".{path.name}.new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    return temporary


@app.command("enroll")
def enroll(
    ctx: typer.Context,
    name: SidecarName,
    output_file: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help=(
                "Write the credential to this file (mode 0600) instead of printing it; give "
                "the file to the sidecar with --token-file."
            ),
        ),
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help=(
                "Rotate: mint a new credential for an enrolled name (the old one stops working "
                "at once) and overwrite --output."
            ),
        ),
    ] = False,
    json_flag: JsonFlag = False,
) -> None:
    """Enroll a sidecar: mint the credential it connects with. It is good only for that
    sidecar's name and only for the sidecar API, never for admin commands; the control plane
    keeps only its hash, so it is shown (or written) this once."""
    state = get_state(ctx)
    client = state.client()
    temporary = _claim(output_file, replace) if output_file is not None else None
    try:
        response = client.admin.EnrollSidecar(
            admin_pb2.EnrollSidecarRequest(sidecar=name, replace=replace), timeout=client.timeout
        )
        if temporary is not None and output_file is not None:
            temporary.write_text(response.token + "\n")
            os.replace(temporary, output_file)
            temporary = None
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                temporary.unlink()
    shown = response.enrollment.name
    if state.wants_json(json_flag):
        result: dict[str, Any] = {"enrollment": output.message_dict(response.enrollment)}
        if output_file is None:
            result["token"] = response.token
        else:
            result["token_file"] = str(output_file)
        output.print_json(result)
    elif output_file is not None:
        output.info_line(f"{shown} enrolled; credential written to {output_file}")
    else:
        output.note_line(f"{shown} enrolled; its credential (shown only now):")
        output.info_line(response.token)


@app.command("revoke")
def revoke(ctx: typer.Context, name: SidecarName) -> None:
    """Revoke a sidecar's credential: its live session ends and it cannot connect again until
    it is enrolled anew. The admin token and other sidecars are not affected."""
    client = get_state(ctx).client()
    response = client.admin.RevokeSidecarEnrollment(
        admin_pb2.RevokeSidecarEnrollmentRequest(sidecar=name), timeout=client.timeout
    )
    ended = "; its session was ended" if response.disconnected else ""
    output.info_line(f"{response.enrollment.name}: credential revoked{ended}")


@app.command("enrollments")
def enrollments(ctx: typer.Context, json_flag: JsonFlag = False) -> None:
    """List the enrolled sidecars: when each credential was minted and last used."""
    state = get_state(ctx)
    client = state.client()
    found = client.admin.ListSidecarEnrollments(
        admin_pb2.ListSidecarEnrollmentsRequest(), timeout=client.timeout
    ).enrollments
    if state.wants_json(json_flag):
        output.print_json([output.message_dict(e) for e in found])
        return
    rows = (
        (
            e.name.removeprefix("sidecars/"),
            output.timestamp(e.create_time),
            output.timestamp(e.last_connect_time) if e.HasField("last_connect_time") else "never",
        )
        for e in found
    )
    output.show(output.table(None, ("name", "enrolled", "last connected"), rows))
