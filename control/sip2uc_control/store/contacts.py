"""External contacts in the database; the in-memory `ContactBook` changes only after a commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..contacts import Contact, ContactBook
from .db import Database

_COLUMNS = (
    "id",
    "display_name",
    "phone",
    "mobile",
    "other",
    "company",
    "email",
    "source",
    "source_id",
    "create_time",
    "update_time",
)
_INSERT = text(
    "INSERT INTO contacts (id, display_name, phone, mobile, other, company, email, source, "
    "source_id, create_time, update_time) VALUES (:id, :display_name, :phone, :mobile, :other, "
    ":company, :email, :source, :source_id, :create_time, :update_time)"
)
_UPDATE = text(
    "UPDATE contacts SET display_name=:display_name, phone=:phone, mobile=:mobile, "
    "other=:other, company=:company, email=:email, source=:source, source_id=:source_id, "
    "update_time=:update_time WHERE id=:id"
)


class ContactStore(ContactBook):
    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db

    async def load(self) -> None:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT * FROM contacts"))).all()
        self.by_id = {row.id: Contact(**{c: getattr(row, c) for c in _COLUMNS}) for row in rows}

    async def apply(
        self,
        created: Sequence[Contact] = (),
        updated: Sequence[Contact] = (),
        deleted: Sequence[Contact] = (),
    ) -> None:
        """Create, update and delete contacts in one transaction."""

        async def write(conn: AsyncConnection) -> None:
            for contact in created:
                await conn.execute(_INSERT, asdict(contact))
            for contact in updated:
                await conn.execute(_UPDATE, asdict(contact))
            for contact in deleted:
                await conn.execute(text("DELETE FROM contacts WHERE id=:id"), {"id": contact.id})

        await self.db.submit(write)
        for contact in deleted:
            self.by_id.pop(contact.id, None)
        for contact in (*created, *updated):
            self.by_id[contact.id] = contact
