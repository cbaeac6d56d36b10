"""ContactService: the external contacts of the shared address book.

Imports read their source in a worker thread (ldap3 blocks) through the directory import's
readers and checks, plan against the contacts of the same source, and apply the plan in one
transaction; one import runs at a time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import phonenumbers
from sip2uc.v1 import contacts_pb2, contacts_pb2_grpc, directory_pb2

from ..contacts import MANUAL_SOURCE, Contact, validate_contact
from ..core import ControlCore
from ..directory import LdapSourceError, NumberPolicy
from ..directory.contacts import (
    CONTACT_FIELDS,
    DEFAULT_CONTACT_FILTER,
    ContactRecord,
    ContactSourceError,
    LdapContactAttributes,
    fetch_ldap_contacts,
    plan_contacts,
    read_contacts_csv,
)
from ..directory.numbers import NumberError, normalise_e164
from ..errors import FailedPrecondition, FieldViolation, InvalidArgument, check
from .directory import CSV_SOURCE, ca_file_for, csv_source_name, ldap_config
from .filters import text_filter
from .paging import decode_token, encode_token, page_size
from .status import unary

Ctx = grpc.aio.ServicerContext[Any, Any]

_LDAP_KEYS = frozenset({"display_name", "phone", "mobile", "other", "company", "email", "ids"})


def contact_to_pb(contact: Contact) -> contacts_pb2.Contact:
    return contacts_pb2.Contact(
        name=contact.name,
        display_name=contact.display_name,
        phone=contact.phone,
        mobile=contact.mobile,
        other=contact.other,
        company=contact.company,
        email=contact.email,
        source=contact.source,
        source_id=contact.source_id,
    )


class ContactServicer(contacts_pb2_grpc.ContactServiceServicer):
    def __init__(self, core: ControlCore) -> None:
        self.core = core
        self._lock = asyncio.Lock()

    def _policy(self, region: str, violations: list[FieldViolation]) -> NumberPolicy:
        region = region.strip().upper() or self.core.settings.current.default_region
        if region and region not in phonenumbers.SUPPORTED_REGIONS:
            violations.append(
                FieldViolation("default_region", f"{region!r} is not a region code like DE")
            )
            region = ""
        return NumberPolicy(default_region=region.upper() or None)

    @unary
    async def CreateContact(
        self, request: contacts_pb2.CreateContactRequest, context: Ctx
    ) -> contacts_pb2.CreateContactResponse:
        if not request.HasField("contact"):
            raise InvalidArgument(FieldViolation("contact", "required"))
        pb = request.contact
        violations: list[FieldViolation] = []
        policy = self._policy("", violations)
        numbers: dict[str, str] = {}
        for name in ("phone", "mobile"):
            raw = getattr(pb, name).strip()
            if not raw:
                numbers[name] = ""
                continue
            try:
                numbers[name] = normalise_e164(raw, policy)
            except NumberError as exc:
                violations.append(FieldViolation(f"contact.{name}", str(exc)))
                numbers[name] = ""
        now = self.core.clock()
        contact = Contact(
            id=uuid.uuid4().hex[:16],
            display_name=pb.display_name.strip(),
            phone=numbers["phone"],
            mobile=numbers["mobile"],
            other=pb.other.strip(),
            company=pb.company.strip(),
            email=pb.email.strip(),
            source=MANUAL_SOURCE,
            create_time=now,
            update_time=now,
        )
        check(violations + validate_contact(contact))
        await self.core.change_contacts(created=[contact])
        return contacts_pb2.CreateContactResponse(contact=contact_to_pb(contact))

    @unary
    async def ListContacts(
        self, request: contacts_pb2.ListContactsRequest, context: Ctx
    ) -> contacts_pb2.ListContactsResponse:
        size = page_size(request.page_size)
        offset = decode_token(request.page_token)
        contacts = self.core.contacts.all()
        needle = text_filter(request.filter)
        if needle:
            contacts = [
                c
                for c in contacts
                if any(
                    needle in value.lower()
                    for value in (c.display_name, c.phone, c.mobile, c.other, c.company, c.email)
                )
            ]
        page = contacts[offset : offset + size]
        next_token = encode_token(offset + size) if offset + size < len(contacts) else ""
        return contacts_pb2.ListContactsResponse(
            contacts=[contact_to_pb(c) for c in page],
            next_page_token=next_token,
            total_size=len(contacts),
        )

    @unary
    async def DeleteContact(
        self, request: contacts_pb2.DeleteContactRequest, context: Ctx
    ) -> contacts_pb2.DeleteContactResponse:
        contact = self.core.contacts.require(request.name.strip())
        await self.core.change_contacts(deleted=[contact])
        return contacts_pb2.DeleteContactResponse(name=contact.name)

    @unary
    async def ImportContacts(
        self, request: contacts_pb2.ImportContactsRequest, context: Ctx
    ) -> contacts_pb2.ImportContactsResponse:
        source, read = self._reader(request)
        async with self._lock:
            try:
                records = await asyncio.to_thread(read)
            except ContactSourceError as exc:
                raise InvalidArgument(FieldViolation("csv.content", str(exc))) from None
            except LdapSourceError as exc:
                raise FailedPrecondition(
                    str(exc), subject="ldap.url", kind="DIRECTORY_UNREADABLE"
                ) from None
            existing = self.core.contacts.of_source(source)
            plan = plan_contacts(
                records, existing, self.core.clock(), lambda: uuid.uuid4().hex[:16]
            )
            if not request.dry_run:
                await self.core.change_contacts(plan.created, plan.updated, plan.deleted)
        return contacts_pb2.ImportContactsResponse(
            created=len(plan.created),
            updated=len(plan.updated),
            deleted=len(plan.deleted),
            unchanged=len(plan.unchanged),
            skipped=[
                contacts_pb2.SkippedContact(row=s.row, source_ref=s.source_ref, reason=s.reason)
                for s in plan.skipped
            ],
            applied=not request.dry_run,
        )

    def _reader(
        self, request: contacts_pb2.ImportContactsRequest
    ) -> tuple[str, Callable[[], list[ContactRecord]]]:
        violations: list[FieldViolation] = []
        policy = self._policy(request.default_region, violations)
        kind = request.WhichOneof("source")
        if kind == "csv":
            # Named like user imports' CSV sources: each file (or --source) is its own.
            name = csv_source_name(request.csv, violations)
            source = f"{CSV_SOURCE}:{name}" if name else CSV_SOURCE
            return source, self._csv_reader(request.csv, policy, source, violations)
        if kind == "ldap":
            # The base DN names a directory; host and scheme change with failover and TLS.
            source = f"ldap:{request.ldap.base_dn.strip().lower()}"
            return source, self._ldap_reader(request.ldap, policy, source, violations)
        violations.append(FieldViolation("source", "required: ldap or csv"))
        check(violations)
        raise AssertionError("unreachable")

    @staticmethod
    def _csv_reader(
        csv: directory_pb2.CsvSource,
        policy: NumberPolicy,
        source: str,
        violations: list[FieldViolation],
    ) -> Callable[[], list[ContactRecord]]:
        try:
            text = csv.content.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            violations.append(FieldViolation("csv.content", f"not UTF-8: {exc.reason}"))
            text = ""
        if not text.strip() and not violations:
            violations.append(FieldViolation("csv.content", "empty: a header line is required"))
        columns: dict[str, str] = {}
        for ours, header in csv.column_map.items():
            if ours not in CONTACT_FIELDS:
                violations.append(
                    FieldViolation(
                        f"csv.column_map[{ours}]",
                        f"unknown column; one of {', '.join(sorted(CONTACT_FIELDS))}",
                    )
                )
            elif not header.strip():
                violations.append(FieldViolation(f"csv.column_map[{ours}]", "names no column"))
            else:
                columns[header] = ours
        check(violations)
        return lambda: read_contacts_csv(text, policy, source, columns)

    @staticmethod
    def _ldap_reader(
        ldap: directory_pb2.LdapSource,
        policy: NumberPolicy,
        source: str,
        violations: list[FieldViolation],
    ) -> Callable[[], list[ContactRecord]]:
        names: dict[str, tuple[str, ...]] = {}
        for key, value in ldap.attribute_map.items():
            if key not in _LDAP_KEYS:
                violations.append(
                    FieldViolation(
                        f"ldap.attribute_map[{key}]",
                        f"unknown; one of {', '.join(sorted(_LDAP_KEYS))}",
                    )
                )
            else:
                names[key] = tuple(v.strip() for v in value.split(",") if v.strip())
        config = ldap_config(ldap, policy, violations, default_filter=DEFAULT_CONTACT_FILTER)
        check(violations)
        assert config is not None
        attributes = LdapContactAttributes(**names)

        def read() -> list[ContactRecord]:
            with ca_file_for(ldap.ca_pem, config) as readable:
                return list(fetch_ldap_contacts(readable, attributes, source))

        return read
