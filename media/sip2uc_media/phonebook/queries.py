"""What a handset's request asks for: the format from the path, the search from the query (pure).

Every format takes ``q`` (a name part or digits anywhere), ``page`` (1-based) and ``size``
(at most the format's page limit). Gigaset base stations speak their own parameters
(``command=get_list&type=pb``, ``fn``/``ln`` name prefixes with ``*`` wildcards, ``hm`` for the
reverse search of a caller's number, ``first``/``count`` for the window and ``limit`` for the
largest response they take, in bytes); see the Gigaset Phonebook Search Protocol
Specification, "Request Phonebook Entries".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .formats import FORMATS, Format, GigasetError
from .model import Query

__all__ = ["PATHS", "BadQuery", "Request", "parse_request"]

#: URL paths (under the server's root) and the format each serves.
PATHS: dict[str, Format] = {
    "/phonebook/yealink.xml": Format.YEALINK,
    "/phonebook/snom.xml": Format.SNOM,
    "/phonebook/cisco.xml": Format.CISCO,
    # Grandstream phones fetch "phonebook.xml" under the configured server path.
    "/phonebook/grandstream/phonebook.xml": Format.GRANDSTREAM,
    "/phonebook/gigaset": Format.GIGASET,
    "/phonebook/contacts.vcf": Format.VCARD,
    "/phonebook/contacts.csv": Format.CSV,
}

MAX_TERM = 64
MAX_PAGE_NUMBER = 100_000
#: Gigaset's `limit` below this would not hold one entry; such requests get one entry anyway.
MIN_GIGASET_BYTES = 256


class BadQuery(ValueError):
    """A request that cannot be answered; `gigaset` is the error id for Gigaset requests."""

    def __init__(self, message: str, gigaset: GigasetError = GigasetError.SYNTAX_ERROR) -> None:
        super().__init__(message)
        self.gigaset = gigaset


@dataclass(frozen=True, slots=True)
class Request:
    format: Format
    query: Query
    #: Gigaset: which search field a "no match" names (``notfound``), the response size limit.
    notfound: str = "ln"
    max_bytes: int = 0


def _number(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name, "").strip()
    if not raw:
        return default
    if not raw.lstrip("-").isdigit() or len(raw) > 9:
        raise BadQuery(f"{name} must be a whole number")
    value = int(raw)
    if not low <= value <= high:
        raise BadQuery(f"{name} must be {low}-{high}")
    return value


def _term(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "").strip()
    if len(value) > MAX_TERM:
        raise BadQuery(f"{name} is longer than {MAX_TERM} characters")
    if any(ord(c) < 0x20 for c in value):
        raise BadQuery(f"{name} holds control characters")
    return value


def parse_request(path: str, params: Mapping[str, str]) -> Request | None:
    """The request for `path` with query `params`, None for a path we do not serve; BadQuery
    for parameters out of range."""
    fmt = PATHS.get(path.rstrip("/") if path != "/" else path)
    if fmt is None:
        return None
    if fmt is Format.GIGASET:
        return _gigaset(params)
    limit = FORMATS[fmt].page
    top = limit or 100_000
    size = _number(params, "size", limit, 1, top)
    page = _number(params, "page", 1, 1, MAX_PAGE_NUMBER)
    text = _term(params, "q")
    return Request(fmt, Query(text=text, offset=(page - 1) * size, limit=size))


def _name_prefix(value: str) -> str:
    """A Gigaset name search: a prefix, with "*" as its wildcard ("Mey*", or "*" for all)."""
    return value.replace("*", " ").strip()


def _gigaset(params: Mapping[str, str]) -> Request:
    if params.get("command") != "get_list":
        raise BadQuery("command must be get_list")
    if params.get("type", "pb") != "pb":
        # Only the white pages ("pb") exist here; yellow pages and others are not offered.
        raise BadQuery("only type=pb is served", GigasetError.INVALID)
    if params.get("first", "").strip() and params.get("last", "").strip():
        raise BadQuery("first and last exclude each other", GigasetError.INVALID)
    limit = FORMATS[Format.GIGASET].page
    count = _number(params, "count", limit, 1, limit)
    first = _number(params, "first", 1, 1, 10_000_000)
    max_bytes = _number(params, "limit", 0, 0, 10_000_000)
    if max_bytes:
        max_bytes = max(max_bytes, MIN_GIGASET_BYTES)
    terms = tuple(
        t for t in (_name_prefix(_term(params, "fn")), _name_prefix(_term(params, "ln"))) if t
    )
    number = _term(params, "hm").replace("*", "").strip()
    notfound = "hm" if number else ("fn" if params.get("fn") and not params.get("ln") else "ln")
    query = Query(name_terms=terms, number=number, offset=first - 1, limit=count)
    return Request(Format.GIGASET, query, notfound=notfound, max_bytes=max_bytes)
