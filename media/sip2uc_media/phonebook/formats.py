"""The remote-phonebook formats handsets fetch, rendered from a page of entries (pure).

Each renderer takes a :class:`~.model.Page` and returns the document's bytes. Text is cleaned
before it is escaped: characters XML 1.0 cannot carry (C0 controls; U+FFFE, U+FFFF; lone
surrogates), line breaks and tabs become single spaces, and names and numbers are cut to the
format's limits by characters, never inside an escape.

Element names follow each vendor's published description:

* Yealink ``YealinkIPPhoneDirectory`` / ``DirectoryEntry`` / ``Name`` / ``Telephone`` (Yealink
  remote phone book, "Customizing a Remote Phone Book Template"); several ``Telephone`` per
  entry.
* Snom ``SnomIPPhoneDirectory`` / ``Title`` / ``Prompt`` / ``DirectoryEntry`` / ``Name`` /
  ``Telephone`` (snom XML minibrowser); one number per ``DirectoryEntry``.
* Cisco/Linksys ``CiscoIPPhoneDirectory`` with the same children (Cisco IP Phone Services XML
  objects), at most 32 entries and 32 characters per name and number, with a "Next" soft key.
* Grandstream ``AddressBook`` / ``Contact`` / ``LastName`` / ``FirstName`` / ``Phone`` /
  ``phonenumber`` / ``accountindex`` (Grandstream "XML based downloadable phonebook guide").
* Gigaset's online directory, the response of ``command=get_list&type=pb``: ``list``
  (``response``, ``type``, ``total``, ``first``, ``last`` or ``notfound``) / ``entry`` /
  ``ln``, ``fn``, ``hm``, ``mb``, ``bp``, ``em``, ``cpn`` ("Gigaset Phonebook Search Protocol
  Specification"); errors as ``error`` / ``errorid`` / ``message``.
* vCard 4.0 (RFC 6350) and CSV (RFC 4180) exports.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from .model import Entry, EntryKind, Page

__all__ = [
    "FORMATS",
    "Format",
    "GigasetError",
    "Limits",
    "Rendered",
    "clean_text",
    "render",
    "render_gigaset_error",
    "split_name",
]

# Not XML 1.0 §2.2 Char, plus the C0 controls it allows (a name is one line).
_NOT_XML_CHAR = re.compile("[\x00-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_SPACES = re.compile(r"\s+")
# RFC 4180 cells a spreadsheet would run as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class Format(enum.Enum):
    YEALINK = "yealink"
    SNOM = "snom"
    CISCO = "cisco"
    GRANDSTREAM = "grandstream"
    GIGASET = "gigaset"
    VCARD = "vcard"
    CSV = "csv"


@dataclass(frozen=True, slots=True)
class Limits:
    """Characters per name and per number (0: no limit) and entries per response."""

    name: int
    number: int
    page: int


#: Per-format limits. Cisco's are the documented maxima of ``CiscoIPPhoneDirectory``; the
#: others keep names to what a handset display shows on one line and responses to a size
#: every handset of the family loads (Grandstream phones download the whole book at once).
FORMATS: dict[Format, Limits] = {
    Format.YEALINK: Limits(name=32, number=32, page=1000),
    Format.SNOM: Limits(name=32, number=32, page=1000),
    Format.CISCO: Limits(name=32, number=32, page=32),
    Format.GRANDSTREAM: Limits(name=32, number=32, page=2000),
    Format.GIGASET: Limits(name=32, number=32, page=100),
    Format.VCARD: Limits(name=0, number=0, page=0),
    Format.CSV: Limits(name=0, number=0, page=0),
}


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    content_type: str


def clean_text(text: str, limit: int = 0) -> str:
    """`text` on one line, without characters XML cannot carry, cut to `limit` characters."""
    text = _SPACES.sub(" ", _NOT_XML_CHAR.sub(" ", text)).strip()
    if limit and len(text) > limit:
        text = text[:limit].rstrip()
    return text


def split_name(entry: Entry) -> tuple[str, str]:
    """(first, last) for formats that want both. A user's last word is the surname; a
    contact (often a company or a place) is all surname. Grandstream needs at least one of
    the two, Gigaset sorts by ``ln``."""
    name = clean_text(entry.display_name)
    words = name.split()
    if entry.kind is EntryKind.CONTACT or len(words) < 2:
        return "", name
    return " ".join(words[:-1]), words[-1]


_LABELS = {"extension": "", "work": "work", "mobile": "mobile", "other": "other"}


def _xml(root: str, body: Iterator[str], attributes: str = "") -> bytes:
    text = f'<?xml version="1.0" encoding="UTF-8"?>\n<{root}{attributes}>\n'
    text += "".join(body)
    text += f"</{root}>\n"
    return text.encode("utf-8")


def _element(name: str, value: str, indent: str = "  ") -> str:
    return f"{indent}<{name}>{escape(value)}</{name}>\n"


def _yealink(page: Page, limits: Limits) -> Iterator[str]:
    for entry in page.entries:
        yield "  <DirectoryEntry>\n"
        yield _element("Name", clean_text(entry.display_name, limits.name), "    ")
        for _label, number in entry.numbers():
            yield _element("Telephone", clean_text(number, limits.number), "    ")
        yield "  </DirectoryEntry>\n"


def _one_per_number(page: Page, limits: Limits) -> Iterator[tuple[str, str]]:
    """(name, number) pairs for formats with one Telephone per DirectoryEntry: the first
    number under the plain name, the others labelled ("Alice Smith (mobile)") so they differ."""
    for entry in page.entries:
        for index, (label, number) in enumerate(entry.numbers()):
            name = entry.display_name
            if index and _LABELS[label]:
                suffix = f" ({_LABELS[label]})"
                name = clean_text(name, max(limits.name - len(suffix), 1)) + suffix
            yield clean_text(name, limits.name), clean_text(number, limits.number)


def _directory(page: Page, limits: Limits, title: str, next_url: str) -> Iterator[str]:
    yield _element("Title", clean_text(title, 32))
    shown = f"{page.offset + 1}-{page.offset + len(page.entries)} of {page.total}"
    yield _element("Prompt", "No entries" if not page.entries else shown)
    for name, number in _one_per_number(page, limits):
        yield "  <DirectoryEntry>\n"
        yield _element("Name", name, "    ")
        yield _element("Telephone", number, "    ")
        yield "  </DirectoryEntry>\n"
    if next_url:
        yield "  <SoftKeyItem>\n"
        yield _element("Name", "Next", "    ")
        yield _element("URL", next_url, "    ")
        yield _element("Position", "1", "    ")
        yield "  </SoftKeyItem>\n"


def _grandstream(page: Page, limits: Limits) -> Iterator[str]:
    for entry in page.entries:
        first, last = split_name(entry)
        yield "  <Contact>\n"
        yield _element("LastName", clean_text(last, limits.name), "    ")
        if first:
            yield _element("FirstName", clean_text(first, limits.name), "    ")
        for _label, number in entry.numbers():
            yield "    <Phone>\n"
            yield _element("phonenumber", clean_text(number, limits.number), "      ")
            # The guide numbers accounts 1-6; the first account is the one registered here.
            yield _element("accountindex", "1", "      ")
            yield "    </Phone>\n"
        yield "  </Contact>\n"


def _gigaset_entry(entry: Entry, limits: Limits) -> str:
    first, last = split_name(entry)
    parts = ["  <entry>\n", _element("ln", clean_text(last, limits.name), "    ")]
    if first:
        parts.append(_element("fn", clean_text(first, limits.name), "    "))
    numbers = dict(entry.numbers())
    home = numbers.get("extension") or numbers.get("work", "") or numbers.get("other", "")
    if home:
        parts.append(_element("hm", clean_text(home, limits.number), "    "))
    if numbers.get("mobile"):
        parts.append(_element("mb", clean_text(numbers["mobile"], limits.number), "    "))
    if numbers.get("extension") and numbers.get("work"):
        parts.append(_element("bp", clean_text(numbers["work"], limits.number), "    "))
    if entry.email:
        parts.append(_element("em", clean_text(entry.email, 128), "    "))
    if entry.company:
        parts.append(_element("cpn", clean_text(entry.company, limits.name), "    "))
    parts.append("  </entry>\n")
    return "".join(parts)


class GigasetError(enum.IntEnum):
    """``errorid`` values of the Gigaset protocol's error response."""

    NOT_ALLOWED = 1
    SYNTAX_ERROR = 2
    INVALID = 4
    SERVICE_NOT_AVAILABLE = 6


_GIGASET_MESSAGES = {
    GigasetError.NOT_ALLOWED: "not allowed",
    GigasetError.SYNTAX_ERROR: "syntax error",
    GigasetError.INVALID: "invalid",
    GigasetError.SERVICE_NOT_AVAILABLE: "service not available",
}


def render_gigaset_error(error: GigasetError) -> Rendered:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<error response="get_list" type="pb">\n'
        + _element("errorid", str(int(error)))
        + _element("message", _GIGASET_MESSAGES[error])
        + "</error>\n"
    )
    return Rendered(body.encode("utf-8"), "text/xml; charset=utf-8")


def _gigaset(page: Page, limits: Limits, notfound: str, max_bytes: int) -> bytes:
    head = '<?xml version="1.0" encoding="UTF-8"?>\n'
    if not page.entries:
        attributes = f' response="get_list" type="pb" notfound={quoteattr(notfound)} total="0"'
        return f"{head}<list{attributes}/>\n".encode()
    entries = [_gigaset_entry(e, limits) for e in page.entries]
    while True:
        first = page.offset + 1
        last = page.offset + len(entries)
        opening = f'<list response="get_list" type="pb" total="{page.total}" '
        opening += f'first="{first}" last="{last}">\n'
        body = (head + opening + "".join(entries) + "</list>\n").encode("utf-8")
        # `limit`: the most bytes the base station takes in one response; whole entries only.
        if not max_bytes or len(body) <= max_bytes or len(entries) == 1:
            return body
        entries.pop()


def _vcard_escape(value: str) -> str:
    """RFC 6350 §3.4: backslash, comma, semicolon and newline are escaped in text values."""
    value = _NOT_XML_CHAR.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))
    value = value.replace("\\", "\\\\").replace(",", "\\,").replace(";", "\\;")
    return value.replace("\n", "\\n")


def _fold(line: str) -> str:
    """RFC 6350 §3.2: lines longer than 75 octets are folded with CRLF and a space, never
    inside a UTF-8 sequence."""
    out: list[str] = []
    current = ""
    size = 0
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > 75:
            out.append(current)
            current, size = " ", 1
        current += char
        size += width
    out.append(current)
    return "\r\n".join(out) + "\r\n"


def _vcard(entry: Entry) -> str:
    first, last = split_name(entry)
    lines = [
        "BEGIN:VCARD",
        "VERSION:4.0",
        f"UID:urn:sip2uc:{entry.kind.value}:{_vcard_escape(entry.key)}",
        f"FN:{_vcard_escape(entry.display_name.strip())}",
        f"N:{_vcard_escape(last)};{_vcard_escape(first)};;;",
    ]
    kinds = {"extension": "work,voice", "work": "work,voice", "mobile": "cell", "other": "voice"}
    for label, number in entry.numbers():
        if number.startswith("+"):
            lines.append(f'TEL;VALUE=uri;TYPE="{kinds[label]}":tel:{number}')
        else:
            lines.append(f'TEL;VALUE=text;TYPE="{kinds[label]}":{_vcard_escape(number)}')
    if entry.company:
        lines.append(f"ORG:{_vcard_escape(entry.company)}")
    if entry.email:
        lines.append(f"EMAIL:{_vcard_escape(entry.email)}")
    lines.append("END:VCARD")
    return "".join(_fold(line) for line in lines)


def _csv_cell(value: str, *, text: bool) -> str:
    value = value.replace("\r\n", "\n")
    if text and value.startswith(_FORMULA_START):
        value = "'" + value
    if any(c in value for c in ',"\n\r'):
        value = '"' + value.replace('"', '""') + '"'
    return value


CSV_COLUMNS = ("display_name", "extension", "e164", "mobile", "other", "company", "email")


def _csv(page: Page) -> bytes:
    rows = [",".join(CSV_COLUMNS)]
    for e in page.entries:
        cells = (
            _csv_cell(e.display_name, text=True),
            _csv_cell(e.extension, text=False),
            _csv_cell(e.e164, text=False),
            _csv_cell(e.mobile, text=False),
            _csv_cell(e.other, text=False),
            _csv_cell(e.company, text=True),
            _csv_cell(e.email, text=True),
        )
        rows.append(",".join(cells))
    return ("\r\n".join(rows) + "\r\n").encode("utf-8")


def render(
    fmt: Format,
    page: Page,
    *,
    title: str = "Directory",
    next_url: str = "",
    notfound: str = "ln",
    max_bytes: int = 0,
) -> Rendered:
    """`page` in format `fmt`. `next_url` (Cisco) is the next page's absolute URL, `notfound`
    and `max_bytes` (Gigaset) name the field searched and the response size limit."""
    limits = FORMATS[fmt]
    xml = "text/xml; charset=utf-8"
    if fmt is Format.YEALINK:
        return Rendered(_xml("YealinkIPPhoneDirectory", _yealink(page, limits)), xml)
    if fmt is Format.SNOM:
        return Rendered(_xml("SnomIPPhoneDirectory", _directory(page, limits, title, "")), xml)
    if fmt is Format.CISCO:
        items = _directory(page, limits, title, next_url)
        return Rendered(_xml("CiscoIPPhoneDirectory", items), xml)
    if fmt is Format.GRANDSTREAM:
        return Rendered(_xml("AddressBook", _grandstream(page, limits)), xml)
    if fmt is Format.GIGASET:
        return Rendered(_gigaset(page, limits, notfound, max_bytes), xml)
    if fmt is Format.VCARD:
        body = "".join(_vcard(e) for e in page.entries).encode("utf-8")
        return Rendered(body, "text/vcard; charset=utf-8")
    return Rendered(_csv(page), "text/csv; charset=utf-8; header=present")
