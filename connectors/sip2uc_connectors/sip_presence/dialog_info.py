"""RFC 4235 dialog-info documents, published for users in calls so that BLF keys light up.

sip2uc knows whether a user's handset is ringing or in a call (the presence activity), not the
dialogs' identifiers on the UC side, so one aggregate dialog per user is published: ``early``
while ringing, ``confirmed`` in a call, ``terminated`` when the call ended (after which the
publication is removed). ``version`` increases with every document for the entity (§4.1).
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from ..bridge import Activity

__all__ = ["CONTENT_TYPE", "dialog_document", "dialog_state"]

CONTENT_TYPE = "application/dialog-info+xml"
NS = "urn:ietf:params:xml:ns:dialog-info"


def dialog_state(activity: Activity) -> str:
    """The dialog state RFC 4235 §4.1.6.1 names for what the handset does."""
    if activity is Activity.IN_A_CALL:
        return "confirmed"
    if activity is Activity.RINGING:
        return "early"
    return "terminated"


def dialog_document(entity: str, dialog_id: str, state: str, version: int) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<dialog-info xmlns="{NS}" version="{version}" state="full" entity={quoteattr(entity)}>\n'
        f'<dialog id="{dialog_id}"><state>{state}</state></dialog>\n'
        "</dialog-info>\n"
    ).encode()
