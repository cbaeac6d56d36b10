"""Each remote-phonebook format, checked against the structure its vendor documents.

The expected element trees are written from the vendors' descriptions (cited per test); the
documents are parsed with defusedxml, so a rendering that is not well-formed XML fails here.
"""

from __future__ import annotations

import csv
import io

import defusedxml.ElementTree as SafeET
from hypothesis import given
from hypothesis import strategies as st
from sip2uc_media.phonebook.formats import (
    FORMATS,
    Format,
    GigasetError,
    clean_text,
    render,
    render_gigaset_error,
)
from sip2uc_media.phonebook.model import Entry, EntryKind, Page, Phonebook, Query

ALICE = Entry(
    key="u1",
    kind=EntryKind.USER,
    display_name="Alice Smith",
    extension="1001",
    e164="+4989123451001",
    email="alice@example.com",
)
TAXI = Entry(
    key="c1",
    kind=EntryKind.CONTACT,
    display_name="Smith & Sons <Taxi>",
    e164="+498955555",
    mobile="+4915112345678",
    company="Cabs & Co",
)
BOOK = Phonebook.of(7, [TAXI, ALICE])
ALL = BOOK.search(Query())


def tree(fmt: Format, page: Page = ALL, **kwargs: object) -> SafeET.Element:
    rendered = render(fmt, page, **kwargs)  # type: ignore[arg-type]
    assert rendered.content_type.startswith("text/xml")
    assert rendered.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return SafeET.fromstring(rendered.body)


def shape(element: SafeET.Element) -> list[object]:
    """The element names, nested as in the document."""
    return [element.tag, [shape(child) for child in element]]


def test_yealink_is_a_directory_of_entries_with_a_name_and_each_number() -> None:
    # Yealink Administrator Guide, "Remote Phone Book": root YealinkIPPhoneDirectory, one
    # DirectoryEntry per contact with Name and one or more Telephone elements.
    root = tree(Format.YEALINK)
    entry = ["DirectoryEntry", [["Name", []], ["Telephone", []], ["Telephone", []]]]
    taxi = ["DirectoryEntry", [["Name", []], ["Telephone", []], ["Telephone", []]]]
    assert shape(root) == ["YealinkIPPhoneDirectory", [entry, taxi]]
    names = [e.findtext("Name") for e in root]
    assert names == ["Alice Smith", "Smith & Sons <Taxi>"]
    assert [t.text for t in root[0].findall("Telephone")] == ["1001", "+4989123451001"]


def test_snom_and_cisco_have_a_title_a_prompt_and_one_number_per_entry() -> None:
    # snom XML minibrowser SnomIPPhoneDirectory and Cisco IP Phone Services SDK
    # CiscoIPPhoneDirectory: Title, Prompt, then DirectoryEntry (Name, Telephone) items.
    for fmt, root_name in (
        (Format.SNOM, "SnomIPPhoneDirectory"),
        (Format.CISCO, "CiscoIPPhoneDirectory"),
    ):
        root = tree(fmt)
        assert root.tag == root_name
        assert [child.tag for child in root][:2] == ["Title", "Prompt"]
        entries = root.findall("DirectoryEntry")
        assert all(
            shape(e) == ["DirectoryEntry", [["Name", []], ["Telephone", []]]] for e in entries
        )
        pairs = [(e.findtext("Name"), e.findtext("Telephone")) for e in entries]
        assert pairs == [
            ("Alice Smith", "1001"),
            ("Alice Smith (work)", "+4989123451001"),
            ("Smith & Sons <Taxi>", "+498955555"),
            ("Smith & Sons <Taxi> (mobile)", "+4915112345678"),
        ]


def test_cisco_offers_the_next_page_as_a_soft_key() -> None:
    # CiscoIPPhoneDirectory: SoftKeyItem with Name, URL and Position.
    page = BOOK.search(Query(limit=1))
    root = tree(Format.CISCO, page, next_url="http://pb.example/phonebook/cisco.xml?page=2")
    key = root.find("SoftKeyItem")
    assert key is not None
    assert shape(key) == ["SoftKeyItem", [["Name", []], ["URL", []], ["Position", []]]]
    assert key.findtext("URL") == "http://pb.example/phonebook/cisco.xml?page=2"
    assert root.findtext("Prompt") == "1-1 of 2"


def test_grandstream_address_book_has_names_and_phones_with_an_account() -> None:
    # Grandstream "XML based downloadable phonebook guide", tables 1-3: AddressBook, Contact
    # (LastName, FirstName, Phone), Phone (phonenumber, accountindex).
    root = tree(Format.GRANDSTREAM)
    phone = ["Phone", [["phonenumber", []], ["accountindex", []]]]
    assert shape(root) == [
        "AddressBook",
        [
            ["Contact", [["LastName", []], ["FirstName", []], phone, phone]],
            # A contact (a company, a place) is all last name.
            ["Contact", [["LastName", []], phone, phone]],
        ],
    ]
    assert root[0].findtext("LastName") == "Smith"
    assert root[0].findtext("FirstName") == "Alice"
    assert root[1].findtext("LastName") == "Smith & Sons <Taxi>"
    assert {p.findtext("accountindex") for p in root.iter("Phone")} == {"1"}


def test_gigaset_list_carries_total_first_last_and_short_field_names() -> None:
    # Gigaset Phonebook Search Protocol Specification, "Response for the Phonebook Entry
    # Request": list (response="get_list", type="pb", total, first, last), entry with ln, fn,
    # hm (the number to dial), mb (mobile), bp (business), em, cpn.
    root = tree(Format.GIGASET)
    assert root.tag == "list"
    assert root.attrib == {
        "response": "get_list",
        "type": "pb",
        "total": "2",
        "first": "1",
        "last": "2",
    }
    alice, taxi = root.findall("entry")
    assert [(c.tag, c.text) for c in alice] == [
        ("ln", "Smith"),
        ("fn", "Alice"),
        ("hm", "1001"),
        ("bp", "+4989123451001"),
        ("em", "alice@example.com"),
    ]
    assert [(c.tag, c.text) for c in taxi] == [
        ("ln", "Smith & Sons <Taxi>"),
        ("hm", "+498955555"),
        ("mb", "+4915112345678"),
        ("cpn", "Cabs & Co"),
    ]


def test_gigaset_no_match_names_the_field_searched() -> None:
    root = tree(Format.GIGASET, BOOK.search(Query(number="+4930999999")), notfound="hm")
    assert root.attrib == {"response": "get_list", "type": "pb", "notfound": "hm", "total": "0"}
    assert list(root) == []


def test_gigaset_limit_drops_whole_entries_until_the_response_fits() -> None:
    full = render(Format.GIGASET, ALL).body
    cut = render(Format.GIGASET, ALL, max_bytes=len(full) - 1).body
    root = SafeET.fromstring(cut)
    assert len(cut) <= len(full) - 1
    assert (root.get("total"), root.get("first"), root.get("last")) == ("2", "1", "1")
    assert len(root.findall("entry")) == 1


def test_gigaset_errors_carry_the_protocols_error_id() -> None:
    root = SafeET.fromstring(render_gigaset_error(GigasetError.SYNTAX_ERROR).body)
    assert shape(root) == ["error", [["errorid", []], ["message", []]]]
    assert (root.findtext("errorid"), root.findtext("message")) == ("2", "syntax error")
    assert root.attrib == {"response": "get_list", "type": "pb"}


def test_hostile_names_are_escaped_cleaned_and_cut_in_every_xml_format() -> None:
    hostile = Entry(
        key="c9",
        kind=EntryKind.CONTACT,
        display_name="<script>&amp;\x00\x07\x1b]0;\u202e" + "X" * 500 + "\r\nEvil",
        other="0815",
    )
    page = Phonebook.of(1, [hostile]).search(Query())
    for fmt in (Format.YEALINK, Format.SNOM, Format.CISCO, Format.GRANDSTREAM, Format.GIGASET):
        body = render(fmt, page).body
        root = SafeET.fromstring(body)  # well-formed despite the controls
        assert b"<script>" not in body
        names = [e.text or "" for e in root.iter() if e.tag in ("Name", "LastName", "ln")]
        assert names, fmt
        for name in names:
            assert name.startswith("<script>&amp;")
            assert not any(ord(c) < 0x20 for c in name)
            assert len(name) <= FORMATS[fmt].name


def test_names_are_cut_by_characters_never_inside_an_escape_or_a_character() -> None:
    entry = Entry(key="u", kind=EntryKind.USER, display_name="&" * 40 + " Ünïcödé", extension="12")
    root = SafeET.fromstring(render(Format.CISCO, Phonebook.of(1, [entry]).search(Query())).body)
    assert root.findtext("DirectoryEntry/Name") == "&" * 32


@given(st.text(max_size=200))
def test_any_text_renders_as_well_formed_xml(name: str) -> None:
    entry = Entry(key="k", kind=EntryKind.CONTACT, display_name=name, other="1")
    page = Phonebook.of(1, [entry]).search(Query())
    for fmt in (Format.YEALINK, Format.SNOM, Format.GRANDSTREAM, Format.GIGASET):
        root = SafeET.fromstring(render(fmt, page).body)
        assert root is not None
    assert clean_text(name) == clean_text(clean_text(name))


def test_vcard_follows_rfc_6350() -> None:
    text = render(Format.VCARD, ALL).body.decode("utf-8")
    cards = text.split("END:VCARD\r\n")[:-1]
    assert len(cards) == 2
    alice = cards[0].split("\r\n")
    # RFC 6350 §6.1.1-6.1.2 and §6.7.9: BEGIN, VERSION 4.0 first; FN required.
    assert alice[:2] == ["BEGIN:VCARD", "VERSION:4.0"]
    assert "FN:Alice Smith" in alice
    assert "N:Smith;Alice;;;" in alice
    assert 'TEL;VALUE=text;TYPE="work,voice":1001' in alice
    assert 'TEL;VALUE=uri;TYPE="work,voice":tel:+4989123451001' in alice
    taxi = cards[1].split("\r\n")
    # §3.4: commas, semicolons and backslashes in text values are escaped.
    assert "ORG:Cabs & Co" in taxi
    assert 'TEL;VALUE=uri;TYPE="cell":tel:+4915112345678' in taxi


def test_vcard_folds_long_lines_at_75_octets_without_splitting_a_character() -> None:
    entry = Entry(key="k", kind=EntryKind.CONTACT, display_name="Ü" * 100 + ";,", other="1")
    body = render(Format.VCARD, Phonebook.of(1, [entry]).search(Query())).body
    for line in body.split(b"\r\n"):
        assert len(line) <= 75
        line.decode("utf-8")  # every physical line holds whole characters
    unfolded = body.decode("utf-8").replace("\r\n ", "")
    assert "FN:" + "Ü" * 100 + "\\;\\," in unfolded


def test_csv_export_is_rfc_4180_and_defuses_formulas() -> None:
    evil = Entry(
        key="c2",
        kind=EntryKind.CONTACT,
        display_name='=HYPERLINK("x"),"quoted"',
        e164="+4930123456",
        company="@SUM(A1)",
    )
    body = render(Format.CSV, Phonebook.of(1, [ALICE, evil]).search(Query())).body
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
    assert rows[0] == ["display_name", "extension", "e164", "mobile", "other", "company", "email"]
    # Numbers keep their "+"; text cells that a spreadsheet would evaluate are prefixed.
    assert rows[1] == ['\'=HYPERLINK("x"),"quoted"', "", "+4930123456", "", "", "'@SUM(A1)", ""]
    assert rows[2] == ["Alice Smith", "1001", "+4989123451001", "", "", "", "alice@example.com"]
