"""`sip2uc user import ...`: bring users in from LDAP/Active Directory or CSV.

The control plane does the work (DirectoryService.ImportUsers); this module
shows its progress, sums up the outcome and writes the handset passwords it
generates for new users to a file only the caller can read. Passwords are
never printed: terminals get logged and scrolled back, files can be handed
over and deleted.
"""

from __future__ import annotations

import csv
import os
import sys
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from sip2uc.cli import output
from sip2uc.cli.state import JsonFlag, get_state
from sip2uc.client import ClientError, Sip2ucClient
from sip2uc.v1 import directory_pb2

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Import users from an LDAP/Active Directory or a CSV file.",
    no_args_is_help=True,
)

CREDENTIAL_COLUMNS = ("user", "sip_uri", "extension", "digest_username", "password")
_PROBLEM_ACTIONS = {
    directory_pb2.IMPORT_ACTION_SKIP,
    directory_pb2.IMPORT_ACTION_CONFLICT,
    directory_pb2.IMPORT_ACTION_MISSING,
}
_CHANGING_ACTIONS = {
    directory_pb2.IMPORT_ACTION_CREATE,
    directory_pb2.IMPORT_ACTION_UPDATE,
    directory_pb2.IMPORT_ACTION_DISABLE,
    directory_pb2.IMPORT_ACTION_DELETE,
}


class Missing(StrEnum):
    report = "report"
    disable = "disable"
    delete = "delete"


_MISSING_ACTIONS = {
    Missing.report: directory_pb2.MISSING_USER_ACTION_REPORT,
    Missing.disable: directory_pb2.MISSING_USER_ACTION_DISABLE,
    Missing.delete: directory_pb2.MISSING_USER_ACTION_DELETE,
}


class CredentialsFile:
    """A CSV of generated credentials, created with mode 0600 and never over an
    existing file (which might hold earlier passwords, or be a planted link)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._file: IO[str] | None = None
        self._writer: csv.DictWriter[str] | None = None

    def open(self) -> None:
        if self._file is not None:
            return
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self.path, flags, 0o600)
        # The umask can only take permissions away; make 0600 exact anyway.
        os.fchmod(fd, 0o600)
        self._file = os.fdopen(fd, "w", encoding="utf-8", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=CREDENTIAL_COLUMNS)
        self._writer.writeheader()

    def write(self, credential: directory_pb2.ProvisioningCredential) -> None:
        self.open()
        assert self._writer is not None and self._file is not None
        self._writer.writerow(
            {
                "user": credential.user,
                "sip_uri": credential.sip_uri,
                "extension": credential.extension,
                "digest_username": credential.digest_username,
                "password": credential.password,
            }
        )
        # Flushed per row: an interrupted import must not lose passwords that
        # the server will never show again.
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def default_credentials_path(now: datetime | None = None) -> Path:
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path(f"provisioning-{stamp}.csv")


def problem_rows(
    rows: Iterable[directory_pb2.ImportRowOutcome], dry_run: bool
) -> list[tuple[str, ...]]:
    problems: list[tuple[str, ...]] = []
    for row in rows:
        failed = not dry_run and row.action in _CHANGING_ACTIONS and not row.applied
        if row.action in _PROBLEM_ACTIONS or failed:
            reason = row.reason or ("not applied" if failed else "-")
            problems.append(
                (
                    str(row.row) if row.row else "-",
                    row.source_ref or "-",
                    output.import_action(row.action),
                    row.sip_uri or "-",
                    reason,
                )
            )
    return problems


def run_import(
    client: Sip2ucClient,
    request: directory_pb2.ImportUsersRequest,
    credentials_out: Path | None,
    as_json: bool,
) -> int:
    """Streams the import; returns the exit code (1 when rows failed to apply)."""
    explicit = credentials_out is not None
    credentials = CredentialsFile(credentials_out or default_credentials_path())
    if explicit and not request.dry_run:
        # Fail before importing rather than after passwords were generated.
        credentials.open()
    rows: list[directory_pb2.ImportRowOutcome] = []
    summary: directory_pb2.ImportSummary | None = None
    err_console = output.console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        transient=True,
        disable=as_json or not sys.stderr.isatty(),
    )
    try:
        with progress:
            task = progress.add_task("reading", total=None)
            for event in client.directory.ImportUsers(request):
                kind = event.WhichOneof("event")
                if kind == "credential":
                    credentials.write(event.credential)
                    continue
                if as_json:
                    output.json_line(event)
                if kind == "progress":
                    p = event.progress
                    progress.update(
                        task,
                        description=p.phase or "importing",
                        completed=p.rows_done,
                        total=p.rows_total or None,
                    )
                elif kind == "row":
                    rows.append(event.row)
                elif kind == "summary":
                    summary = event.summary
    finally:
        credentials.close()
    if credentials.count:
        sys.stderr.write(
            f"{credentials.count} generated handset credential(s) written to "
            f"{credentials.path} (mode 0600); they are not shown anywhere else\n"
        )
    if summary is None:
        raise ClientError("the import stream ended without a summary: the result is unknown")
    if as_json:
        return 1 if summary.failed else 0
    counts = dict(summary.counts) or dict(
        Counter(directory_pb2.ImportAction.Name(r.action) for r in rows)
    )
    output.show(output.counts_table("import", counts, directory_pb2.ImportAction))
    problems = problem_rows(rows, request.dry_run)
    if problems:
        columns = ("row", "source", "action", "sip uri", "reason")
        output.show(output.table("rows needing attention", columns, problems))
    if request.dry_run:
        output.info_line("dry run: nothing was changed")
    elif summary.failed:
        output.info_line(f"applied, but {summary.failed} row(s) failed")
    else:
        output.info_line("applied")
    return 1 if summary.failed else 0


RegionOption = Annotated[
    str,
    typer.Option(
        "--default-region",
        metavar="CC",
        help="Region for numbers without a country code, e.g. DE (default: the server's).",
    ),
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Only show what would change; change nothing.")
]
_CredentialsOption = Annotated[
    Path | None,
    typer.Option(
        "--credentials-out",
        metavar="FILE",
        help=(
            "CSV (mode 0600, must not exist) for the passwords generated for new users. "
            "Default: ./provisioning-YYYYMMDD-HHMMSS.csv when users were created."
        ),
        show_default=False,
    ),
]
_DigitsOption = Annotated[
    int,
    typer.Option(
        "--extension-digits",
        min=0,
        max=10,
        help="Derive a missing extension from the last N digits of the number (0: don't).",
    ),
]


UrlOption = Annotated[
    str, typer.Option("--url", help="ldaps://host:636, or ldap://host:389 (StartTLS).")
]
BindDnOption = Annotated[str, typer.Option("--bind-dn", metavar="DN", help="DN to bind as.")]
PasswordFileOption = Annotated[
    Path,
    typer.Option(
        "--password-file",
        metavar="FILE",
        help="File holding the bind password (kept off the command line and out of ps).",
    ),
]
BaseOption = Annotated[str, typer.Option("--base", metavar="DN", help="Search base DN.")]
LdapCaOption = Annotated[
    Path | None,
    typer.Option("--ca-file", metavar="FILE", help="PEM CA certificates for the server."),
]
InsecureOption = Annotated[
    bool, typer.Option("--insecure", help="Skip certificate verification (testing only).")
]
AllowPlainOption = Annotated[
    bool,
    typer.Option("--allow-plain", help="Allow an unencrypted connection (loopback only)."),
]


def ldap_source(
    *,
    url: str,
    bind_dn: str,
    password_file: Path,
    base: str,
    filter_text: str,
    ca_file: Path | None,
    insecure: bool,
    allow_plain: bool,
) -> directory_pb2.LdapSource:
    """The LDAP source of an import; the bind password is read from its file."""
    bind_password = password_file.read_text(encoding="utf-8").rstrip("\r\n")
    if not bind_password:
        raise ClientError(f"the password file {password_file} is empty")
    return directory_pb2.LdapSource(
        url=url,
        bind_dn=bind_dn,
        bind_password=bind_password,
        base_dn=base,
        filter=filter_text,
        allow_plain=allow_plain,
        ca_pem=ca_file.read_text(encoding="utf-8") if ca_file is not None else "",
        insecure_skip_verify=insecure,
    )


@app.command("ldap")
def ldap(
    ctx: typer.Context,
    url: UrlOption,
    bind_dn: BindDnOption,
    password_file: PasswordFileOption,
    base: BaseOption,
    filter_text: Annotated[
        str,
        typer.Option(
            "--filter", help="LDAP search filter. Default: people carrying a SIP address."
        ),
    ] = "",
    default_region: RegionOption = "",
    dry_run: DryRunOption = False,
    ca_file: LdapCaOption = None,
    insecure: InsecureOption = False,
    allow_plain: AllowPlainOption = False,
    missing: Annotated[
        Missing,
        typer.Option(
            "--missing", help="What to do with earlier imported users the directory lost."
        ),
    ] = Missing.report,
    credentials_out: _CredentialsOption = None,
    extension_digits: _DigitsOption = 0,
    json_flag: JsonFlag = False,
) -> None:
    """Import users from LDAP or Active Directory: create new ones, update
    changed ones, and report, disable or delete the ones that are gone."""
    source = ldap_source(
        url=url,
        bind_dn=bind_dn,
        password_file=password_file,
        base=base,
        filter_text=filter_text,
        ca_file=ca_file,
        insecure=insecure,
        allow_plain=allow_plain,
    )
    request = directory_pb2.ImportUsersRequest(
        ldap=source,
        dry_run=dry_run,
        default_region=default_region.upper(),
        extension_digits=extension_digits,
        missing_users=_MISSING_ACTIONS[missing],
    )
    state = get_state(ctx)
    code = run_import(state.client(), request, credentials_out, state.wants_json(json_flag))
    if code:
        raise typer.Exit(code)


@app.command("csv")
def csv_file(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="CSV with a header row (sip_uri, display_name, extension, e164, email, ...).",
        ),
    ],
    default_region: RegionOption = "",
    dry_run: DryRunOption = False,
    missing: Annotated[
        Missing,
        typer.Option(
            "--missing",
            help="What to do with users imported earlier from the same source that the file lacks.",
        ),
    ] = Missing.report,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            metavar="NAME",
            help=(
                "Name of the source this file is (e.g. a department): only users imported from "
                "the same source are matched by id or reported missing, so a partial file does "
                "not report everyone else. Default: the file name."
            ),
            show_default=False,
        ),
    ] = None,
    credentials_out: _CredentialsOption = None,
    extension_digits: _DigitsOption = 0,
    json_flag: JsonFlag = False,
) -> None:
    """Import users from a CSV export: create new ones and update changed ones. A
    digest_algorithm column sets the handsets' digest algorithms (SHA-256, MD5,
    'SHA-256 MD5'; empty or 'default': the sidecar's default)."""
    request = directory_pb2.ImportUsersRequest(
        csv=directory_pb2.CsvSource(
            content=file.read_bytes(), filename=file.name, source=source or ""
        ),
        dry_run=dry_run,
        default_region=default_region.upper(),
        extension_digits=extension_digits,
        missing_users=_MISSING_ACTIONS[missing],
    )
    state = get_state(ctx)
    code = run_import(state.client(), request, credentials_out, state.wants_json(json_flag))
    if code:
        raise typer.Exit(code)
