"""Sorting raw SIP messages before they are parsed: what kind of work each one is.

The intake decides what waits, what is served first and what is shed from these few byte
searches alone, so that a flood costs about a microsecond per datagram instead of a parse.
The answers only steer priority and shedding: a message is parsed and checked properly when
it is served, so a misfiled one is merely served later (or sooner) than it deserved.

* Not SIP: the first line names no SIP version (``SIP/x.y``). Random bytes, HTTP, DNS and the
  like are dropped here; anything the parser could still answer with a 4xx passes.
* `Kind.DIALOG`: responses (to requests this sidecar sent), ACKs and requests inside a dialog
  (the To header has a tag). They finish work already admitted and are served first.
* `Kind.FOLLOW_UP`: requests that carry credentials (``Authorization``,
  ``Proxy-Authorization``), i.e. the second half of a registration or call the sidecar already
  challenged, and CANCEL, which must not overtake the INVITE it cancels.
* `Kind.NEW`: everything else (a first REGISTER or INVITE, OPTIONS, SUBSCRIBE...): new work,
  the only kind shed when the sidecar is behind (RFC 3261 §21.5.4 503 with Retry-After).
"""

from __future__ import annotations

import enum
import re

__all__ = ["Kind", "Triage", "triage"]


class Kind(enum.IntEnum):
    """What serving a message means; lower values are served first."""

    DIALOG = 0
    FOLLOW_UP = 1
    NEW = 2


class Triage(enum.Enum):
    """What `triage` found besides a kind."""

    NOT_SIP = "not_sip"
    #: An ACK for a 503 this sidecar sent without a transaction, or another request that
    #: takes that 503's To tag (the shed tag) for a dialog's (a BYE of a client that gave up).
    SHED_ACK = "shed_ack"


_CREDENTIALS = (b"\nauthorization:", b"\nproxy-authorization:", b"\nauthorization :")
_TO = (b"\nto:", b"\nt:", b"\nto :", b"\nt :")
_TAG_VALUE = re.compile(rb"tag=([^ \t\r;,>]*)")


def triage(data: bytes, shed_tag: bytes = b"") -> Kind | Triage:
    """The `Kind` of one message, or why it is not worth parsing.

    `shed_tag` is the (lower-case) To tag of the sidecar's stateless 503s: an ACK carrying it
    acknowledges one of them and needs nothing (RFC 3261 §17.2.1 would absorb it in a
    transaction the sidecar never made), and no dialog ever has it.
    """
    start = 0
    while data.startswith(b"\r\n", start):  # RFC 3261 §7.5: CRLFs before the start line
        start += 2
    line_end = data.find(b"\n", start)
    if line_end < 0:
        line_end = len(data)
    head = data[start : start + 4]
    if head == b"SIP/" or head == b"sip/":
        return Kind.DIALOG
    if data.find(b"SIP/", start, line_end) < 0 and data.find(b"sip/", start, line_end) < 0:
        return Triage.NOT_SIP
    space = data.find(b" ", start, line_end)
    method = data[start:space] if space > start else b""
    if method == b"CANCEL":
        return Kind.FOLLOW_UP
    header_end = data.find(b"\r\n\r\n", line_end)
    headers = (data[line_end:header_end] if header_end >= 0 else data[line_end:]).lower()
    tag = _to_tag(headers)
    if tag >= 0:
        if shed_tag:
            value = _TAG_VALUE.match(headers, tag)
            if value is not None and value.group(1) == shed_tag:
                return Triage.SHED_ACK
        return Kind.DIALOG
    if method == b"ACK":
        return Kind.DIALOG
    for name in _CREDENTIALS:
        if name in headers:
            return Kind.FOLLOW_UP
    return Kind.NEW


def _to_tag(headers: bytes) -> int:
    """Where the To header's ``tag=`` starts in `headers`, or -1 when it has none (or there is
    no To header)."""
    for name in _TO:
        at = headers.find(name)
        if at >= 0:
            break
    else:
        return -1
    end = headers.find(b"\n", at + 1)
    return headers.find(b"tag=", at, end if end >= 0 else len(headers))
