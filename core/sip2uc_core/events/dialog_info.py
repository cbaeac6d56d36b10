"""RFC 4235 dialog-info documents: what BLF keys (Yealink, Grandstream, Snom, Cisco) subscribe to.

A document names the watched entity, carries a ``version`` that grows by one with every document
sent on one subscription (§4.1.2) and says whether it holds the ``full`` state or a ``partial``
one (only the dialogs that changed). Each dialog has a ``state`` (§4.1.6.1: trying, proceeding,
early, confirmed, terminated), a ``direction`` (initiator for a call the entity placed, recipient
for one it receives) and the other party as ``remote`` identity — a handset's directed call pickup
reads it from the ringing dialog. The presence bridge publishes one aggregate dialog per user with
`dialog_document`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

__all__ = ["CONTENT_TYPE", "DIALOG_STATES", "Dialog", "dialog_document", "dialog_info"]

CONTENT_TYPE = "application/dialog-info+xml"
NS = "urn:ietf:params:xml:ns:dialog-info"
#: RFC 4235 §4.1.6.1.
DIALOG_STATES = frozenset({"trying", "proceeding", "early", "confirmed", "terminated"})
_DIRECTIONS = frozenset({"", "initiator", "recipient"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialog:
    """One dialog of the watched entity."""

    id: str
    state: str
    #: "initiator", "recipient" or "" (not said).
    direction: str = ""
    call_id: str = ""
    #: The other party's URI and display name ("" when unknown).
    remote_uri: str = ""
    remote_display: str = ""
    #: The entity's own identity in the dialog ("" when not said).
    local_uri: str = ""

    def __post_init__(self) -> None:
        if self.state not in DIALOG_STATES:
            raise ValueError(f"dialog state {self.state!r} is not one of RFC 4235 §4.1.6.1")
        if self.direction not in _DIRECTIONS:
            raise ValueError(f"dialog direction {self.direction!r} is not initiator or recipient")


def _dialog(dialog: Dialog) -> str:
    attributes = f"id={quoteattr(dialog.id)}"
    if dialog.call_id:
        attributes += f" call-id={quoteattr(dialog.call_id)}"
    if dialog.direction:
        attributes += f' direction="{dialog.direction}"'
    parts = [f"<dialog {attributes}><state>{dialog.state}</state>"]
    if dialog.local_uri:
        parts.append(f"<local><identity>{escape(dialog.local_uri)}</identity></local>")
    if dialog.remote_uri:
        display = f" display={quoteattr(dialog.remote_display)}" if dialog.remote_display else ""
        parts.append(
            f"<remote><identity{display}>{escape(dialog.remote_uri)}</identity>"
            f"<target uri={quoteattr(dialog.remote_uri)}/></remote>"
        )
    parts.append("</dialog>")
    return "".join(parts)


def dialog_info(entity: str, version: int, dialogs: Sequence[Dialog], *, full: bool) -> bytes:
    """The dialog-info document of ``entity`` with ``dialogs`` (§4.1)."""
    if version < 0:
        raise ValueError("dialog-info version must not be negative (RFC 4235 §4.1.2)")
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<dialog-info xmlns="{NS}" version="{version}" '
        f'state="{"full" if full else "partial"}" entity={quoteattr(entity)}>',
        *(_dialog(d) for d in dialogs),
        "</dialog-info>",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def dialog_document(entity: str, dialog_id: str, state: str, version: int) -> bytes:
    """A full document with one aggregate dialog (what the presence bridge publishes)."""
    return dialog_info(entity, version, [Dialog(id=dialog_id, state=state)], full=True)
