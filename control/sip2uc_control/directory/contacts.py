"""External contacts from a CSV file or an LDAP directory, and the plan that syncs them.

A contact import replaces the contacts of one source with what the source holds now: rows
are matched to earlier contacts of that source by their stable id, so a renamed contact is
updated, a new one created and one gone from the source deleted. Contacts of other sources
and those added by hand are never touched. Reading is blocking (ldap3) and CPU work
(numbers); callers run it in a worker thread. Planning is pure.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from io import StringIO

from ..contacts import MAX_CONTACT_NAME, MAX_CONTACT_TEXT, Contact, one_line, validate_contact
from .ldap_source import LdapSourceConfig, _source_id, _text, search_ldap
from .model import DirectoryError
from .numbers import NumberError, NumberPolicy, parse_phone

#: Entries with a telephone or mobile number: people and places worth dialling.
DEFAULT_CONTACT_FILTER = "(|(telephoneNumber=*)(mobile=*))"

#: CSV headers (folded) and the field each fills; the first header found for a field wins.
CSV_COLUMNS: tuple[tuple[str, str], ...] = (
    ("display_name", "display_name"),
    ("displayname", "display_name"),
    ("name", "display_name"),
    ("cn", "display_name"),
    ("phone", "phone"),
    ("telephonenumber", "phone"),
    ("office", "phone"),
    ("e164", "phone"),
    ("mobile", "mobile"),
    ("other", "other"),
    ("othertelephone", "other"),
    ("company", "company"),
    ("organization", "company"),
    ("o", "company"),
    ("email", "email"),
    ("mail", "email"),
    ("source_id", "source_id"),
    ("id", "source_id"),
)
CONTACT_FIELDS = frozenset(f for _, f in CSV_COLUMNS)


@dataclass(frozen=True, slots=True, kw_only=True)
class LdapContactAttributes:
    """Which attribute holds what; each tuple is tried in order."""

    display_name: tuple[str, ...] = ("displayName", "cn")
    phone: tuple[str, ...] = ("telephoneNumber",)
    mobile: tuple[str, ...] = ("mobile",)
    other: tuple[str, ...] = ("otherTelephone",)
    company: tuple[str, ...] = ("company", "o")
    email: tuple[str, ...] = ("mail",)
    ids: tuple[str, ...] = ("objectGUID", "entryUUID")

    def requested(self) -> list[str]:
        names: list[str] = []
        for group in (
            self.display_name,
            self.phone,
            self.mobile,
            self.other,
            self.company,
            self.email,
            self.ids,
        ):
            names.extend(n for n in group if n)
        return names


class ContactSourceError(DirectoryError):
    """A source that cannot be read at all (no header, no name column)."""


@dataclass(frozen=True, slots=True)
class ContactRow:
    """A source row as a contact (without id and times yet)."""

    row: int
    source_ref: str
    contact: Contact


@dataclass(frozen=True, slots=True)
class SkippedRow:
    row: int
    source_ref: str
    reason: str


ContactRecord = ContactRow | SkippedRow


def _number(raw: str | None, policy: NumberPolicy, name: str) -> str:
    if raw is None or not raw.strip():
        return ""
    try:
        parsed = parse_phone(raw, policy)
    except NumberError as exc:
        raise DirectoryError(f"{name}: {exc}") from None
    if parsed.e164 is None:
        raise DirectoryError(f"{name} {raw!r} is not a telephone number")
    return parsed.e164


def to_contact(
    row: int,
    source_ref: str,
    values: Mapping[str, str | None],
    policy: NumberPolicy,
    source: str,
) -> ContactRecord:
    """A contact from a row's raw values, or why not."""
    try:
        name = one_line(values.get("display_name") or "", MAX_CONTACT_NAME)
        phone = _number(values.get("phone"), policy, "phone")
        mobile = _number(values.get("mobile"), policy, "mobile")
        other = "".join(ch for ch in (values.get("other") or "") if ch not in " -./()")
        source_id = one_line(values.get("source_id") or "", 256)
        contact = Contact(
            id="",
            display_name=name,
            phone=phone,
            mobile=mobile,
            other=other,
            company=one_line(values.get("company") or "", MAX_CONTACT_TEXT),
            email=one_line(values.get("email") or "", MAX_CONTACT_TEXT),
            source=source,
            # Without an id column, name and first number identify a row across imports.
            source_id=source_id or f"{name.casefold()}|{phone or mobile or other}",
        )
    except DirectoryError as exc:
        return SkippedRow(row, source_ref, str(exc))
    problems = validate_contact(contact)
    if problems:
        return SkippedRow(row, source_ref, "; ".join(p.description for p in problems))
    return ContactRow(row, source_ref, contact)


def read_contacts_csv(
    text: str, policy: NumberPolicy, source: str, columns: Mapping[str, str] | None = None
) -> list[ContactRecord]:
    """Rows of a CSV file (``,``, ``;`` or tab separated, chosen from the header line).

    `columns` maps further headers (folded) to one of :data:`CONTACT_FIELDS`.
    """
    aliases = dict(CSV_COLUMNS)
    aliases.update({k.strip().casefold(): v for k, v in (columns or {}).items()})
    first = text.lstrip("\ufeff").split("\n", 1)[0]
    if not first.strip():
        raise ContactSourceError("the file has no header line")
    sep = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(StringIO(text.lstrip("\ufeff"), newline=""), delimiter=sep)
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as exc:
        raise ContactSourceError(f"the header line cannot be read: {exc}") from None
    layout: dict[str, int] = {}
    for index, title in enumerate(header):
        field_name = aliases.get(title.strip().casefold())
        if field_name is not None and field_name not in layout:
            layout[field_name] = index
    if "display_name" not in layout:
        raise ContactSourceError("no name column (display_name, name or cn)")
    out: list[ContactRecord] = []
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return out
        except csv.Error as exc:
            out.append(SkippedRow(reader.line_num, f"row {reader.line_num}", str(exc)))
            continue
        if not any(cell.strip() for cell in cells):
            continue
        values = {f: (cells[i] if i < len(cells) else None) for f, i in layout.items()}
        ref = f"row {reader.line_num}"
        out.append(to_contact(reader.line_num, ref, values, policy, source))


def map_contact_entry(
    ordinal: int,
    dn: str,
    raw: Mapping[str, Sequence[bytes]],
    names: LdapContactAttributes,
    policy: NumberPolicy,
    source: str,
) -> ContactRecord:
    values = {name.lower(): vals for name, vals in raw.items()}

    def first(group: tuple[str, ...]) -> str | None:
        for name in group:
            found = _text(values, name)
            if found:
                return found
        return None

    try:
        fields: dict[str, str | None] = {
            "display_name": first(names.display_name),
            "phone": first(names.phone),
            "mobile": first(names.mobile),
            "other": first(names.other),
            "company": first(names.company),
            "email": first(names.email),
            "source_id": _source_id(values, names.ids) or dn.lower(),
        }
    except DirectoryError as exc:
        return SkippedRow(ordinal, dn, str(exc))
    return to_contact(ordinal, dn, fields, policy, source)


def fetch_ldap_contacts(
    config: LdapSourceConfig, names: LdapContactAttributes, source: str
) -> Iterator[ContactRecord]:
    """Search the directory and yield a contact (or a skipped row) per entry."""
    for ordinal, (dn, raw) in enumerate(search_ldap(config, names.requested()), start=1):
        yield map_contact_entry(ordinal, dn, raw, names, config.numbers, source)


@dataclass
class ContactPlan:
    created: list[Contact] = field(default_factory=list)
    updated: list[Contact] = field(default_factory=list)
    deleted: list[Contact] = field(default_factory=list)
    unchanged: list[Contact] = field(default_factory=list)
    skipped: list[SkippedRow] = field(default_factory=list)


def plan_contacts(
    records: Sequence[ContactRecord],
    existing: Sequence[Contact],
    now: float,
    new_id: Callable[[], str],
) -> ContactPlan:
    """What importing `records` does to `existing` (the contacts of the same source)."""
    plan = ContactPlan()
    by_source_id = {c.source_id: c for c in existing}
    seen: set[str] = set()
    for record in records:
        if isinstance(record, SkippedRow):
            plan.skipped.append(record)
            continue
        incoming = record.contact
        if incoming.source_id in seen:
            plan.skipped.append(
                SkippedRow(record.row, record.source_ref, "the same contact twice in the source")
            )
            continue
        seen.add(incoming.source_id)
        current = by_source_id.get(incoming.source_id)
        if current is None:
            plan.created.append(replace(incoming, id=new_id(), create_time=now, update_time=now))
        elif current.same_fields(incoming):
            plan.unchanged.append(current)
        else:
            plan.updated.append(current.with_fields_of(incoming, now))
    plan.deleted = [c for c in existing if c.source_id not in seen]
    return plan
