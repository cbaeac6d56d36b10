"""PIDF documents (RFC 3863) with RPID activities (RFC 4480) and the data model's person
element (RFC 4479): the ones the bridge publishes, and reading those a presence server notifies.

Published documents carry one tuple and one person element whose ids start with the connector's
prefix (`element_prefix`), so that in the document a server merges from every publisher of a
user (Kamailio does) the bridge can tell its own elements from everybody else's. Namespace
prefixes are written literally as ``rpid:`` and ``dm:``: some clients (baresip) match
``<rpid:away/>`` as text.

Reading uses ``defusedxml``: a NOTIFY body is untrusted input (no entities, no DTDs).
"""

from __future__ import annotations

from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape, quoteattr

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from .mapping import ForeignState, PidfState

__all__ = [
    "CONTENT_TYPE",
    "PidfError",
    "element_prefix",
    "foreign_states",
    "presence_document",
]

CONTENT_TYPE = "application/pidf+xml"
PIDF_NS = "urn:ietf:params:xml:ns:pidf"
DM_NS = "urn:ietf:params:xml:ns:pidf:data-model"
RPID_NS = "urn:ietf:params:xml:ns:pidf:rpid"
#: Bodies larger than this are not parsed (a presence document is a few hundred bytes).
MAX_DOCUMENT = 256 * 1024


class PidfError(ValueError):
    """A body that is not a PIDF document."""


def element_prefix(connector_id: str) -> str:
    """The id prefix of the tuple and person elements a connector publishes."""
    return f"sip2uc-{connector_id}"


def presence_document(entity: str, prefix: str, state: PidfState) -> bytes:
    """The PIDF document publishing ``state`` for ``entity`` (a SIP URI)."""
    basic = "open" if state.open else "closed"
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<presence xmlns="{PIDF_NS}" xmlns:dm="{DM_NS}" xmlns:rpid="{RPID_NS}" '
        f"entity={quoteattr(entity)}>",
        f'<tuple id="{prefix}"><status><basic>{basic}</basic></status></tuple>',
    ]
    if state.activity or state.note:
        person = [f'<dm:person id="{prefix}-p">']
        if state.activity:
            person.append(f"<rpid:activities><rpid:{state.activity}/></rpid:activities>")
        if state.note:
            person.append(f"<dm:note>{escape(state.note)}</dm:note>")
        person.append("</dm:person>")
        lines.append("".join(person))
    lines.append("</presence>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _local(tag: object) -> str:
    text = str(tag)
    return text.rsplit("}", 1)[-1]


def _ns(tag: object) -> str:
    text = str(tag)
    return text[1:].split("}", 1)[0] if text.startswith("{") else ""


def _activities(element: Element) -> frozenset[str]:
    found: set[str] = set()
    for activities in element.iter(f"{{{RPID_NS}}}activities"):
        for child in activities:
            if _ns(child.tag) == RPID_NS:
                name = _local(child.tag)
                found.add(name if name != "other" else (child.text or "other").strip().lower())
    return frozenset(found)


def _note(element: Element) -> str:
    for child in element.iter():
        if _local(child.tag) == "note" and _ns(child.tag) in (PIDF_NS, DM_NS) and child.text:
            return child.text.strip()
    return ""


def foreign_states(body: bytes, own_prefix: str) -> list[ForeignState]:
    """What every element *not* published by this connector says.

    Tuples report their <basic> status; person elements have none and count as open while any
    other publisher's tuple is open (or when there are no such tuples at all).
    """
    if not body.strip():
        return []
    if len(body) > MAX_DOCUMENT:
        raise PidfError(f"document of {len(body)} bytes is larger than {MAX_DOCUMENT}")
    try:
        root = fromstring(body)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise PidfError(f"not well-formed XML: {exc}") from None
    if root.tag != f"{{{PIDF_NS}}}presence":
        raise PidfError(f"root element is {_local(root.tag)!r}, not PIDF presence")
    tuples: list[ForeignState] = []
    persons: list[tuple[frozenset[str], str]] = []
    for element in root:
        ident = element.get("id", "")
        if ident.startswith(own_prefix):
            continue
        if element.tag == f"{{{PIDF_NS}}}tuple":
            basic = element.find(f"{{{PIDF_NS}}}status/{{{PIDF_NS}}}basic")
            is_open = basic is not None and (basic.text or "").strip().lower() == "open"
            tuples.append(ForeignState(is_open, _activities(element), _note(element)))
        elif element.tag == f"{{{DM_NS}}}person":
            persons.append((_activities(element), _note(element)))
    persons_open = not tuples or any(t.open for t in tuples)
    return tuples + [ForeignState(persons_open, acts, note) for acts, note in persons]
