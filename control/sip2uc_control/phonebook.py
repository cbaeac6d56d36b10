"""The shared address book as sidecars receive it: users and contacts, one version at a time.

Every change to a user or a contact calls `PhonebookFeed.changed()`; a watching sidecar is
woken, waits a moment for the burst an import makes to settle, and gets one complete
snapshot. Snapshots are built from memory (the user directory and the contact book) once
per version and shared by all sidecars: serving the book never queries the database.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from .contacts import ContactBook
from .users import UserDirectory

#: How long a watcher waits after a change for more changes before it sends a snapshot.
SETTLE_SECONDS = 0.2


class EntryKind(enum.Enum):
    USER = "user"
    CONTACT = "contact"


@dataclass(frozen=True, slots=True, kw_only=True)
class PhonebookEntry:
    key: str
    kind: EntryKind
    display_name: str
    extension: str = ""
    e164: str = ""
    mobile: str = ""
    other: str = ""
    company: str = ""
    email: str = ""


@dataclass(frozen=True, slots=True)
class PhonebookSnapshot:
    version: int
    entries: tuple[PhonebookEntry, ...]


class PhonebookFeed:
    def __init__(
        self, users: UserDirectory, contacts: ContactBook, clock: Callable[[], float]
    ) -> None:
        self._users = users
        self._contacts = contacts
        # Versions start from the clock so that they keep growing across restarts.
        self.version = int(clock() * 1000)
        self._snapshot: PhonebookSnapshot | None = None
        self._wakeups: set[asyncio.Event] = set()
        self._closed = False

    def changed(self) -> None:
        self.version += 1
        self._snapshot = None
        for wakeup in self._wakeups:
            wakeup.set()

    def snapshot(self) -> PhonebookSnapshot:
        if self._snapshot is None or self._snapshot.version != self.version:
            self._snapshot = PhonebookSnapshot(self.version, tuple(self._entries()))
        return self._snapshot

    def _entries(self) -> list[PhonebookEntry]:
        out: list[PhonebookEntry] = []
        for user in self._users.each():
            if user.disabled or not (user.extension or user.e164):
                continue
            out.append(
                PhonebookEntry(
                    key=user.id,
                    kind=EntryKind.USER,
                    display_name=user.display_name or user.alias,
                    extension=user.extension,
                    e164=user.e164,
                    email=user.email,
                )
            )
        for contact in self._contacts.all():
            out.append(
                PhonebookEntry(
                    key=contact.id,
                    kind=EntryKind.CONTACT,
                    display_name=contact.display_name,
                    e164=contact.phone,
                    mobile=contact.mobile,
                    other=contact.other,
                    company=contact.company,
                    email=contact.email,
                )
            )
        return out

    async def watch(self, settle: float = SETTLE_SECONDS) -> AsyncIterator[PhonebookSnapshot]:
        """The current snapshot, then one after every change (bursts coalesced), until
        `close`."""
        wakeup = asyncio.Event()
        self._wakeups.add(wakeup)
        try:
            sent = -1
            while not self._closed:
                if self.version != sent:
                    snapshot = self.snapshot()
                    sent = snapshot.version
                    yield snapshot
                await wakeup.wait()
                wakeup.clear()
                if not self._closed:
                    await asyncio.sleep(settle)
        finally:
            self._wakeups.discard(wakeup)

    def close(self) -> None:
        self._closed = True
        for wakeup in self._wakeups:
            wakeup.set()
