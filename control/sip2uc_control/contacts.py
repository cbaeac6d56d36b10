"""External contacts: entries of the shared address book that are not users.

Held in memory like the users (`ContactBook`), written through `store/contacts.py`; the
phonebook feed (`phonebook.py`) reads them from here. Numbers are normalised to E.164 where
they can be (`phone`, `mobile`); `other` is kept as given, for short codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .domain import EMAIL_RE
from .errors import FieldViolation, NotFound

MANUAL_SOURCE = "manual"
MAX_CONTACT_NAME = 128
MAX_CONTACT_TEXT = 128
_OTHER_NUMBER = re.compile(r"^\+?[0-9*#]{1,32}$")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True, kw_only=True)
class Contact:
    id: str
    display_name: str
    phone: str = ""
    mobile: str = ""
    other: str = ""
    company: str = ""
    email: str = ""
    source: str = MANUAL_SOURCE
    source_id: str = ""
    create_time: float = 0.0
    update_time: float = 0.0

    @property
    def name(self) -> str:
        return f"contacts/{self.id}"

    def same_fields(self, other: Contact) -> bool:
        return _fields(self) == _fields(other)

    def with_fields_of(self, other: Contact, now: float) -> Contact:
        return replace(
            self,
            display_name=other.display_name,
            phone=other.phone,
            mobile=other.mobile,
            other=other.other,
            company=other.company,
            email=other.email,
            update_time=now,
        )

    def sort_key(self) -> tuple[str, str]:
        return (self.display_name.casefold(), self.id)


def _fields(c: Contact) -> tuple[str, ...]:
    return (c.display_name, c.phone, c.mobile, c.other, c.company, c.email)


def one_line(text: str, limit: int) -> str:
    """Imported text on one line without control characters, cut to `limit`: a directory's
    odd value must not make a row fail or reach a handset raw."""
    return _CONTROL.sub(" ", text).strip()[:limit].strip()


def validate_contact(contact: Contact, prefix: str = "contact") -> list[FieldViolation]:
    out: list[FieldViolation] = []
    if not contact.display_name.strip():
        out.append(FieldViolation(f"{prefix}.display_name", "required"))
    elif len(contact.display_name) > MAX_CONTACT_NAME:
        out.append(
            FieldViolation(f"{prefix}.display_name", f"at most {MAX_CONTACT_NAME} characters")
        )
    for name in ("display_name", "company", "email"):
        value = getattr(contact, name)
        if _CONTROL.search(value):
            out.append(FieldViolation(f"{prefix}.{name}", "must not contain control characters"))
    if len(contact.company) > MAX_CONTACT_TEXT:
        out.append(FieldViolation(f"{prefix}.company", f"at most {MAX_CONTACT_TEXT} characters"))
    if contact.email and not EMAIL_RE.match(contact.email):
        out.append(FieldViolation(f"{prefix}.email", "must be an e-mail address"))
    if contact.other and not _OTHER_NUMBER.match(contact.other):
        out.append(FieldViolation(f"{prefix}.other", "must be digits (with * # or a leading +)"))
    if not (contact.phone or contact.mobile or contact.other):
        out.append(FieldViolation(f"{prefix}.phone", "a contact needs at least one number"))
    return out


class ContactBook:
    """Every contact in memory, in the address book's order on demand."""

    def __init__(self) -> None:
        self.by_id: dict[str, Contact] = {}

    def all(self) -> list[Contact]:
        return sorted(self.by_id.values(), key=Contact.sort_key)

    def of_source(self, source: str) -> list[Contact]:
        return [c for c in self.by_id.values() if c.source == source]

    def require(self, ref: str) -> Contact:
        key = ref[len("contacts/") :] if ref.startswith("contacts/") else ref
        found = self.by_id.get(key)
        if found is None:
            raise NotFound("contact", f"contacts/{key}")
        return found

    def count(self) -> int:
        return len(self.by_id)
