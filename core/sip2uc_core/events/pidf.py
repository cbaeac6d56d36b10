"""PIDF documents (RFC 3863) with RPID activities (RFC 4480) and the data model's person
element (RFC 4479): the ones sip2uc publishes or notifies for a user, and reading what a presence
server notifies.

Documents carry one tuple and, when there is an activity or a note, one person element, with ids
the caller chooses (the presence bridge prefixes its own, so that in a document a server merged
from every publisher of a user it can tell its elements from everybody else's). Namespace
prefixes are written literally as ``rpid:`` and ``dm:``: some clients (baresip) match
``<rpid:away/>`` as text.

Reading uses ``defusedxml``: a NOTIFY body is untrusted input (no entities, no DTDs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape, quoteattr

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

__all__ = [
    "AVAILABILITY_STATES",
    "CONTENT_TYPE",
    "DEFAULT_DND_NOTE",
    "ForeignState",
    "PidfError",
    "PidfState",
    "foreign_states",
    "presence_document",
]

CONTENT_TYPE = "application/pidf+xml"
PIDF_NS = "urn:ietf:params:xml:ns:pidf"
DM_NS = "urn:ietf:params:xml:ns:pidf:data-model"
RPID_NS = "urn:ietf:params:xml:ns:pidf:rpid"
#: Bodies larger than this are not parsed (a presence document is a few hundred bytes).
MAX_DOCUMENT = 256 * 1024
DEFAULT_DND_NOTE = "Do not disturb"


@dataclass(frozen=True, slots=True, kw_only=True)
class PidfState:
    """How one availability is shown: PIDF <basic>, an RPID activity, a note."""

    open: bool = True
    #: RPID activity element name without prefix ("" for none).
    activity: str = ""
    note: str = ""
    #: Withdraw the publication instead (Expires: 0); a watcher is shown <basic>closed</basic>.
    remove: bool = False


@dataclass(frozen=True, slots=True)
class ForeignState:
    """What one element (a tuple or a person) of another publisher says."""

    open: bool
    activities: frozenset[str]
    note: str = ""


#: sip2uc's availabilities (by their API names) as PIDF/RPID shows them. RPID has no
#: do-not-disturb and no be-right-back: the usual convention is busy or away plus a note.
AVAILABILITY_STATES: Mapping[str, PidfState] = MappingProxyType(
    {
        "available": PidfState(),
        "busy": PidfState(activity="busy"),
        "in-a-call": PidfState(activity="on-the-phone"),
        "do-not-disturb": PidfState(activity="busy", note=DEFAULT_DND_NOTE),
        "be-right-back": PidfState(activity="away", note="Be right back"),
        "away": PidfState(activity="away"),
        "offline": PidfState(open=False, remove=True),
    }
)


class PidfError(ValueError):
    """A body that is not a PIDF document."""


def presence_document(entity: str, element_id: str, state: PidfState) -> bytes:
    """The PIDF document showing ``state`` for ``entity`` (a SIP URI); the tuple's id is
    ``element_id``, the person's ``element_id + "-p"``."""
    basic = "open" if state.open else "closed"
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<presence xmlns="{PIDF_NS}" xmlns:dm="{DM_NS}" xmlns:rpid="{RPID_NS}" '
        f"entity={quoteattr(entity)}>",
        f"<tuple id={quoteattr(element_id)}><status><basic>{basic}</basic></status></tuple>",
    ]
    if state.activity or state.note:
        person = [f"<dm:person id={quoteattr(element_id + '-p')}>"]
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
    """What every element whose id does *not* start with ``own_prefix`` says.

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
