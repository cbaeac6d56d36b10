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

__all__ = ["Entry", "EntryKind", "Page", "Phonebook", "Query", "SearchKeys", "digits_of"]

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

    def matches(self, entry: Entry, keys: SearchKeys | None = None) -> bool:
        keys = keys or SearchKeys.of(entry)
        if self.text:
            needle = self.text.casefold()
            digits = digits_of(self.text)
            in_name = needle in keys.name
            in_numbers = bool(digits) and any(digits in n for n in keys.numbers)
            if not (in_name or in_numbers):
                return False
        for term in self.name_terms:
            folded = term.casefold()
            if not any(word.startswith(folded) for word in keys.words):
                return False
        if self.number:
            wanted = digits_of(self.number)
            if not wanted or not any(_same_number(wanted, n) for n in keys.numbers):
                return False
        return True


@dataclass(frozen=True, slots=True)
class SearchKeys:
    """An entry's name folded for case, its words and its numbers' digits: computed once per
    snapshot, not per request."""

    name: str
    words: tuple[str, ...]
    numbers: tuple[str, ...]

    @classmethod
    def of(cls, entry: Entry) -> SearchKeys:
        name = entry.display_name.casefold()
        return cls(name, tuple(name.split()), tuple(digits_of(n) for _, n in entry.numbers()))


#: Digits a number must keep (after trunk prefixes) to match another by its end.
SUFFIX_DIGITS = 6


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
    return len(shorter) >= SUFFIX_DIGITS and longer.endswith(shorter)


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
    keys: tuple[SearchKeys, ...] = field(default=(), compare=False, repr=False)
    #: Entry positions by the last SUFFIX_DIGITS digits of each number (trunk prefix
    #: removed), so that a caller's number is looked up without scanning the book.
    by_suffix: dict[str, tuple[int, ...]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, version: int, entries: list[Entry] | tuple[Entry, ...]) -> Phonebook:
        ordered = tuple(sorted(entries, key=Entry.sort_key))
        keys = tuple(SearchKeys.of(e) for e in ordered)
        suffixes: dict[str, list[int]] = {}
        for index, entry_keys in enumerate(keys):
            for number in entry_keys.numbers:
                bucket = suffixes.setdefault(number.lstrip("0")[-SUFFIX_DIGITS:], [])
                if not bucket or bucket[-1] != index:
                    bucket.append(index)
        by_suffix = {k: tuple(v) for k, v in suffixes.items()}
        return cls(version, ordered, keys, by_suffix)

    def _candidates(self, query: Query) -> range | tuple[int, ...]:
        """Positions that may match: for a number search only those sharing its last digits
        (a match needs one number to end with the other, the shorter having at least
        SUFFIX_DIGITS digits, or the two to be equal)."""
        if query.number:
            return self.by_suffix.get(digits_of(query.number).lstrip("0")[-SUFFIX_DIGITS:], ())
        return range(len(self.entries))

    def search(self, query: Query) -> Page:
        if query.text or query.name_terms or query.number:
            entries, keys = self.entries, self.keys
            found = [
                entries[i] for i in self._candidates(query) if query.matches(entries[i], keys[i])
            ]
        else:
            found = list(self.entries)
        start = min(max(query.offset, 0), len(found))
        end = len(found) if query.limit <= 0 else start + query.limit
        return Page(tuple(found[start:end]), len(found), start)
