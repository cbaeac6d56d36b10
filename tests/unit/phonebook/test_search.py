"""Searching and paging the book, and reading the handsets' query parameters."""

from __future__ import annotations

import pytest
from sip2uc_media.phonebook.formats import Format, GigasetError
from sip2uc_media.phonebook.model import Entry, EntryKind, Phonebook, Query
from sip2uc_media.phonebook.queries import BadQuery, Request, parse_request


def user(key: str, name: str, ext: str, e164: str = "") -> Entry:
    return Entry(key=key, kind=EntryKind.USER, display_name=name, extension=ext, e164=e164)


BOOK = Phonebook.of(
    3,
    [
        user("3", "bob Jones", "1002", "+4989123451002"),
        user("1", "Alice Smith", "1001", "+4989123451001"),
        Entry(key="9", kind=EntryKind.CONTACT, display_name="Alice Smith", mobile="+4915112345678"),
        user("2", "Carol Meyer", "1003"),
    ],
)


def names(query: Query) -> list[tuple[str, str]]:
    return [(e.display_name, e.key) for e in BOOK.search(query).entries]


def test_order_is_by_folded_name_then_kind_then_key() -> None:
    assert names(Query()) == [
        ("Alice Smith", "9"),
        ("Alice Smith", "1"),
        ("bob Jones", "3"),
        ("Carol Meyer", "2"),
    ]


def test_text_matches_a_name_part_or_digits_of_any_number() -> None:
    assert names(Query(text="SMI")) == [("Alice Smith", "9"), ("Alice Smith", "1")]
    assert names(Query(text="1003")) == [("Carol Meyer", "2")]
    assert names(Query(text="5112345")) == [("Alice Smith", "9")]


def test_name_terms_must_each_begin_a_word() -> None:
    assert names(Query(name_terms=("mey",))) == [("Carol Meyer", "2")]
    assert names(Query(name_terms=("eyer",))) == []
    assert names(Query(name_terms=("al", "sm"))) == [("Alice Smith", "9"), ("Alice Smith", "1")]


def test_a_callers_number_matches_with_or_without_country_code() -> None:
    assert names(Query(number="089123451002")) == [("bob Jones", "3")]
    assert names(Query(number="+49 (89) 12345-1002")) == [("bob Jones", "3")]
    # An extension matches itself only: two digits say too little to match by suffix.
    assert names(Query(number="1001")) == [("Alice Smith", "1")]
    assert names(Query(number="02")) == []


def test_pages_are_windows_of_the_stable_order_with_the_total() -> None:
    first = BOOK.search(Query(offset=0, limit=3))
    second = BOOK.search(Query(offset=3, limit=3))
    beyond = BOOK.search(Query(offset=10, limit=3))
    assert [e.key for e in first.entries] == ["9", "1", "3"]
    assert [e.key for e in second.entries] == ["2"]
    assert (first.total, second.total, second.offset) == (4, 4, 3)
    assert (beyond.entries, beyond.total, beyond.offset) == ((), 4, 4)


def test_paths_choose_the_format() -> None:
    assert parse_request("/phonebook/yealink.xml", {}) == Request(
        Format.YEALINK, Query(offset=0, limit=1000)
    )
    assert parse_request("/phonebook/grandstream/phonebook.xml", {"q": "ali"}) == Request(
        Format.GRANDSTREAM, Query(text="ali", offset=0, limit=2000)
    )
    assert parse_request("/phonebook/cisco.xml", {"page": "3"}) == Request(
        Format.CISCO, Query(offset=64, limit=32)
    )
    assert parse_request("/etc/passwd", {}) is None
    assert parse_request("/phonebook/../phonebook/snom.xml", {}) is None


@pytest.mark.parametrize(
    "params",
    [{"page": "0"}, {"page": "x"}, {"size": "33"}, {"size": "-1"}, {"q": "a" * 65}, {"q": "a\x00"}],
)
def test_out_of_range_parameters_are_refused(params: dict[str, str]) -> None:
    with pytest.raises(BadQuery):
        parse_request("/phonebook/cisco.xml", params)


def test_gigaset_parameters_follow_the_protocol() -> None:
    # Gigaset Phonebook Search Protocol, "Request Phonebook Entries": command=get_list,
    # type=pb, fn/ln name prefixes ("*" is the wildcard), hm for the reverse search, first
    # and count for the window, limit for the response size in bytes.
    wanted = parse_request(
        "/phonebook/gigaset",
        {
            "command": "get_list",
            "type": "pb",
            "ln": "Mey*",
            "first": "2",
            "count": "5",
            "limit": "2048",
        },
    )
    assert wanted == Request(
        Format.GIGASET,
        Query(name_terms=("Mey",), offset=1, limit=5),
        notfound="ln",
        max_bytes=2048,
    )
    reverse = parse_request(
        "/phonebook/gigaset", {"command": "get_list", "type": "pb", "hm": "0891"}
    )
    assert reverse is not None and reverse.query.number == "0891" and reverse.notfound == "hm"


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"command": "get_entry", "type": "pb"}, GigasetError.SYNTAX_ERROR),
        ({"command": "get_list", "type": "yp"}, GigasetError.INVALID),
        ({"command": "get_list", "first": "1", "last": "3"}, GigasetError.INVALID),
        ({"command": "get_list", "count": "101"}, GigasetError.SYNTAX_ERROR),
    ],
)
def test_gigaset_refusals_carry_the_error_id(params: dict[str, str], error: GigasetError) -> None:
    with pytest.raises(BadQuery) as refused:
        parse_request("/phonebook/gigaset", params)
    assert refused.value.gigaset is error
