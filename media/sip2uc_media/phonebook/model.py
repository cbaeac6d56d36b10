"""The address book as the sidecar holds it: a versioned snapshot from the control plane.

A snapshot is immutable; the sidecar swaps in a new one when the control plane sends it, so a
request in progress always reads one consistent version. Entries are kept in one stable order
(name folded for case, then kind, then key), so page N of a search is the same on every
handset and between two fetches of an unchanged book.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

__all__ = ["Entry", "EntryKind", "Page", "Phonebook", "Query", "digits_of"]

_NON_DIGITS = re.compile(r"[^0-9]")


def digits_of(number: str) -> str:
    """The digits of a number as a handset would dial or present it ("+49 89-1" -> "49891")."""
    return _NON_DIGITS.sub("", number)


class EntryKind(enum.Enum):
    USER = "user"
    CONTACT = "contact"


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One person or place in the book: a user of the control plane or an external contact."""

    key: str
    kind: EntryKind
    display_name: str
    extension: str = ""
    e164: str = ""
    mobile: str = ""
    other: str = ""
    company: str = ""
    email: str = ""

    def numbers(self) -> tuple[tuple[str, str], ...]:
        """(label, number) pairs, the one to dial first first: extension, office, mobile, other."""
        labelled = (
            ("extension", self.extension),
            ("work", self.e164),
            ("mobile", self.mobile),
            ("other", self.other),
        )
        return tuple((label, number) for label, number in labelled if number)

    def sort_key(self) -> tuple[str, str, str]:
        return (self.display_name.casefold(), self.kind.value, self.key)


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    """What a handset asked for: a name and/or number filter and a window of the results.

    `name_terms` must each begin some word of the name (case-insensitive), `text` may occur
    anywhere in the name or the digits of any number, `number` matches an entry whose number's
    digits end with (or equal) the digits given. `offset` is 0-based; `limit` 0 means all.
    """

    text: str = ""
    name_terms: tuple[str, ...] = ()
    number: str = ""
    offset: int = 0
    limit: int = 0

    def matches(self, entry: Entry) -> bool:
        if self.text:
            needle = self.text.casefold()
            digits = digits_of(self.text)
            in_name = needle in entry.display_name.casefold()
            in_numbers = bool(digits) and any(digits in digits_of(n) for _, n in entry.numbers())
            if not (in_name or in_numbers):
                return False
        if self.name_terms:
            words = entry.display_name.casefold().split()
            for term in self.name_terms:
                folded = term.casefold()
                if not any(word.startswith(folded) for word in words):
                    return False
        if self.number:
            wanted = digits_of(self.number)
            if not wanted:
                return False
            if not any(_same_number(wanted, digits_of(n)) for _, n in entry.numbers()):
                return False
        return True


def _same_number(wanted: str, have: str) -> bool:
    """A caller's number matches an entry's when one ends with the other: handsets present
    numbers with or without country code and trunk prefix ("08912345" vs "+498912345")."""
    if not have:
        return False
    if wanted == have:
        return True
    # Trunk prefixes ("0" national, "00" international) are not part of the number.
    shorter, longer = sorted((wanted.lstrip("0"), have.lstrip("0")), key=len)
    # Below this many digits a suffix says little (an extension "12" ends many numbers).
    return len(shorter) >= 6 and longer.endswith(shorter)


@dataclass(frozen=True, slots=True)
class Page:
    """A window of a search's results: `entries` from `offset` (0-based) of `total` matches."""

    entries: tuple[Entry, ...]
    total: int
    offset: int


@dataclass(frozen=True, slots=True)
class Phonebook:
    """A version of the book, entries in their stable order."""

    version: int
    entries: tuple[Entry, ...] = field(default=())

    @classmethod
    def of(cls, version: int, entries: list[Entry] | tuple[Entry, ...]) -> Phonebook:
        return cls(version, tuple(sorted(entries, key=Entry.sort_key)))

    def search(self, query: Query) -> Page:
        found = [e for e in self.entries if query.matches(e)]
        start = min(max(query.offset, 0), len(found))
        end = len(found) if query.limit <= 0 else start + query.limit
        return Page(tuple(found[start:end]), len(found), start)
