"""`sip2uc contact ...`: external contacts of the shared address book handsets read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sip2uc.cli import output
from sip2uc.cli.importing import (
    AllowPlainOption,
    BaseOption,
    BindDnOption,
    DryRunOption,
    InsecureOption,
    LdapCaOption,
    PasswordFileOption,
    RegionOption,
    UrlOption,
    ldap_source,
)
from sip2uc.cli.state import JsonFlag, get_state
from sip2uc.v1 import contacts_pb2, directory_pb2

app = typer.Typer(
    rich_markup_mode="markdown",
    help=(
        "External contacts (suppliers, other sites, services) that handsets see in the shared "
        "address book beside the users: add, list, delete, import from CSV or LDAP."
    ),
    no_args_is_help=True,
)
import_app = typer.Typer(
    rich_markup_mode="markdown",
    help=(
        "Import contacts: the contacts of the same source (a CSV file or --source name, or one "
        "LDAP directory) are replaced by what the source holds now."
    ),
    no_args_is_help=True,
)
app.add_typer(import_app, name="import")

COLUMNS = ("NAME", "DISPLAY NAME", "PHONE", "MOBILE", "OTHER", "COMPANY", "SOURCE")


@app.command("add")
def add(
    ctx: typer.Context,
    display_name: Annotated[str, typer.Argument(metavar="NAME", help="Name shown on handsets.")],
    phone: Annotated[str, typer.Option("--phone", help="Office number (E.164 or national).")] = "",
    mobile: Annotated[str, typer.Option("--mobile", help="Mobile number.")] = "",
    other: Annotated[str, typer.Option("--other", help="Any other number, kept as given.")] = "",
    company: Annotated[str, typer.Option("--company", help="Company or department.")] = "",
    email: Annotated[str, typer.Option("--email", help="E-mail address.")] = "",
    json_flag: JsonFlag = False,
) -> None:
    """Add one contact (it needs at least one number)."""
    state = get_state(ctx)
    client = state.client()
    created = client.contacts.CreateContact(
        contacts_pb2.CreateContactRequest(
            contact=contacts_pb2.Contact(
                display_name=display_name,
                phone=phone,
                mobile=mobile,
                other=other,
                company=company,
                email=email,
            )
        ),
        timeout=client.timeout,
    ).contact
    if state.wants_json(json_flag):
        output.print_json(output.message_dict(created))
        return
    output.info_line(f"created {created.name} ({created.display_name})")


@app.command("list")
def list_contacts(
    ctx: typer.Context,
    filter_text: Annotated[
        str, typer.Option("--filter", help="Text matched in name, numbers, company, e-mail.")
    ] = "",
    json_flag: JsonFlag = False,
) -> None:
    """List contacts in the address book's order."""
    state = get_state(ctx)
    client = state.client()
    found: list[contacts_pb2.Contact] = []
    token = ""
    while True:
        page = client.contacts.ListContacts(
            contacts_pb2.ListContactsRequest(page_size=1000, page_token=token, filter=filter_text),
            timeout=client.timeout,
        )
        found.extend(page.contacts)
        token = page.next_page_token
        if not token:
            break
    if state.wants_json(json_flag):
        output.print_json([output.message_dict(c) for c in found])
        return
    rows = (
        (c.name, c.display_name, c.phone, c.mobile, c.other, c.company, c.source) for c in found
    )
    output.show(output.table(None, COLUMNS, rows))


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="contacts/ID (or the ID).")],
) -> None:
    """Delete one contact."""
    client = get_state(ctx).client()
    response = client.contacts.DeleteContact(
        contacts_pb2.DeleteContactRequest(name=name), timeout=client.timeout
    )
    output.info_line(f"deleted {response.name}")


def _report(
    ctx: typer.Context, request: contacts_pb2.ImportContactsRequest, json_flag: bool
) -> None:
    state = get_state(ctx)
    client = state.client()
    result = client.contacts.ImportContacts(request, timeout=max(client.timeout, 120.0))
    if state.wants_json(json_flag):
        output.print_json(output.message_dict(result))
        return
    verb = "applied" if result.applied else "dry run, nothing changed"
    output.info_line(
        f"{result.created} created, {result.updated} updated, {result.deleted} deleted, "
        f"{result.unchanged} unchanged, {len(result.skipped)} skipped ({verb})"
    )
    for skipped in result.skipped:
        output.note_line(f"skipped {skipped.source_ref}: {skipped.reason}")


@import_app.command("csv")
def import_csv(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="CSV with a header row (display_name, phone, mobile, other, company, email, "
            "source_id).",
        ),
    ],
    default_region: RegionOption = "",
    dry_run: DryRunOption = False,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            metavar="NAME",
            help="Name of the source this file is; default: the file name.",
            show_default=False,
        ),
    ] = None,
    json_flag: JsonFlag = False,
) -> None:
    """Import contacts from a CSV file, replacing those of the previous import of the same
    source (the file name, or --source)."""
    request = contacts_pb2.ImportContactsRequest(
        csv=directory_pb2.CsvSource(
            content=file.read_bytes(), filename=file.name, source=source or ""
        ),
        dry_run=dry_run,
        default_region=default_region.upper(),
    )
    _report(ctx, request, json_flag)


@import_app.command("ldap")
def import_ldap(
    ctx: typer.Context,
    url: UrlOption,
    bind_dn: BindDnOption,
    password_file: PasswordFileOption,
    base: BaseOption,
    filter_text: Annotated[
        str,
        typer.Option(
            "--filter", help="LDAP search filter. Default: entries with a telephone or mobile."
        ),
    ] = "",
    default_region: RegionOption = "",
    dry_run: DryRunOption = False,
    ca_file: LdapCaOption = None,
    insecure: InsecureOption = False,
    allow_plain: AllowPlainOption = False,
    json_flag: JsonFlag = False,
) -> None:
    """Import contacts from LDAP or Active Directory, replacing those imported from the same
    base DN before."""
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
    request = contacts_pb2.ImportContactsRequest(
        ldap=source, dry_run=dry_run, default_region=default_region.upper()
    )
    _report(ctx, request, json_flag)
