"""RFC 4662 resource-list notifications: one NOTIFY body for a whole buddy list.

The body is ``multipart/related`` (RFC 2387) whose root part is the RLMI document (§5) naming the
list, its ``version`` (one more with every notification on the subscription) and whether it holds
the ``fullState``; each resource has one ``instance`` whose ``cid`` points at the part with that
resource's own document (PIDF or dialog-info). A partial notification lists every resource but
carries parts only for those that changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

__all__ = ["CONTENT_TYPE", "Part", "ResourceEntry", "list_notification", "rlmi_document"]

CONTENT_TYPE = "application/rlmi+xml"
NS = "urn:ietf:params:xml:ns:rlmi"
_CRLF = b"\r\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceEntry:
    """One resource of the list with its instance (§5.2-5.3)."""

    uri: str
    name: str = ""
    instance_id: str
    #: "active", "pending" or "terminated".
    state: str = "active"
    #: Content-ID of the part carrying its state ("" when this notification has none).
    cid: str = ""


@dataclass(frozen=True, slots=True)
class Part:
    """A body part: its Content-ID (without angle brackets), type and bytes."""

    cid: str
    content_type: str
    body: bytes


def rlmi_document(
    list_uri: str, version: int, resources: Sequence[ResourceEntry], *, full: bool
) -> bytes:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<list xmlns="{NS}" uri={quoteattr(list_uri)} version="{version}" '
        f'fullState="{"true" if full else "false"}">',
    ]
    for entry in resources:
        name = f"<name>{escape(entry.name)}</name>" if entry.name else ""
        cid = f" cid={quoteattr(entry.cid)}" if entry.cid else ""
        lines.append(
            f"<resource uri={quoteattr(entry.uri)}>{name}"
            f"<instance id={quoteattr(entry.instance_id)} state={quoteattr(entry.state)}{cid}/>"
            "</resource>"
        )
    lines.append("</list>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def list_notification(root: Part, parts: Sequence[Part], boundary: str) -> tuple[str, bytes]:
    """The Content-Type header value and body of a ``multipart/related`` NOTIFY (RFC 4662 §5,
    RFC 2387) whose root is the RLMI part. ``boundary`` must not occur in any part."""
    for part in (root, *parts):
        if f"--{boundary}".encode() in part.body:
            raise ValueError("the multipart boundary occurs in a body part")
    chunks: list[bytes] = []
    for part in (root, *parts):
        chunks.append(
            f"--{boundary}\r\n"
            "Content-Transfer-Encoding: binary\r\n"
            f"Content-ID: <{part.cid}>\r\n"
            f"Content-Type: {part.content_type}\r\n\r\n".encode()
            + part.body
            + _CRLF
        )
    chunks.append(f"--{boundary}--\r\n".encode())
    content_type = (
        f'multipart/related;type="{CONTENT_TYPE}";start="<{root.cid}>";boundary="{boundary}"'
    )
    return content_type, b"".join(chunks)
