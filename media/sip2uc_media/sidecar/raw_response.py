"""Responses made from a request's raw header lines, without parsing the request.

Two kinds of request are answered this way: one the parser refused (its 4xx, when the lines
that make a response can still be read), and one the intake sheds (503 with Retry-After),
where a parse would cost more than the answer is worth. Only Via, From, To, Call-ID and CSeq
are read (RFC 3261 §8.2.6.2 copies exactly these); a request in which any of them is missing
or repeated is not answered. An ACK is never answered (§17.1.1.3).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sip2uc_core.sip.message import REASON_PHRASES

__all__ = ["error_response", "shed_response"]

_REQUEST_LINE_RE = re.compile(rb"\A(?:\r\n)*([A-Za-z]+) [^ \r\n]+ SIP/[0-9.]+\r\n")
_CANONICAL = {
    b"v": b"Via",
    b"via": b"Via",
    b"f": b"From",
    b"from": b"From",
    b"t": b"To",
    b"to": b"To",
    b"i": b"Call-ID",
    b"call-id": b"Call-ID",
    b"cseq": b"CSeq",
}
_REQUIRED = frozenset(_CANONICAL.values())


def _copied_lines(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """(canonical name, value) of the Via, From, To, Call-ID and CSeq lines, in order; None
    when the request line cannot be read, the request is an ACK, or a line is missing or
    repeated."""
    match = _REQUEST_LINE_RE.match(data)
    if match is None or match.group(1).upper() == b"ACK":
        return None
    header_end = data.find(b"\r\n\r\n", match.end() - 2)
    head = data[match.end() : header_end if header_end >= 0 else len(data)]
    lines: list[tuple[bytes, bytes]] = []
    seen: set[bytes] = set()
    for line in head.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        canonical = _CANONICAL.get(name.rstrip(b" \t").lower())
        if canonical is None:
            continue
        if canonical != b"Via" and canonical in seen:
            return None
        seen.add(canonical)
        lines.append((canonical, value.strip(b" \t")))
    if seen != _REQUIRED:
        return None
    return lines


def _start(status: int) -> bytes:
    reason = REASON_PHRASES.get(status, "Bad Request").encode()
    return b"SIP/2.0 %d %s\r\n" % (status, reason)


def _finish(start: bytes, lines: list[tuple[bytes, bytes]]) -> bytes:
    return (
        start
        + b"".join(name + b": " + value + b"\r\n" for name, value in lines)
        # Content-Length last: what comes after it is the (empty) body.
        + b"Content-Length: 0\r\n\r\n"
    )


def error_response(data: bytes, status: int) -> bytes | None:
    """The `status` response to a request the parser refused, or None if it cannot be made."""
    lines = _copied_lines(data)
    if lines is None:
        return None
    return _finish(_start(status), lines)


def shed_response(
    data: bytes,
    status: int,
    *,
    to_tag: bytes,
    source_host: str,
    source_port: int,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> bytes | None:
    """A stateless final response (the intake's 503) to a well-formed request, or None.

    The To header gets `to_tag` when it has none (§8.2.6.2), and a top Via that asks for
    ``rport`` gets its ``rport`` and ``received`` filled in (RFC 3581 §4), as a parsed
    request's would.
    """
    lines = _copied_lines(data)
    if lines is None:
        return None
    out: list[tuple[bytes, bytes]] = []
    first_via = True
    for name, value in lines:
        if name == b"Via" and first_via:
            first_via = False
            value = _stamp_rport(value, source_host, source_port)
        elif name == b"To" and b"tag=" not in value.lower():
            value = value + b";tag=" + to_tag
        out.append((name, value))
    out.extend(headers)
    return _finish(_start(status), out)


def _stamp_rport(via: bytes, host: str, port: int) -> bytes:
    """The first value of a Via line with a bare ``rport`` filled in (RFC 3581 §4)."""
    comma = via.find(b",")
    first, rest = (via, b"") if comma < 0 else (via[:comma], via[comma:])
    params = first.split(b";")
    for i, param in enumerate(params):
        if param.strip(b" \t").lower() == b"rport":
            params[i] = b"rport=%d" % port
            if not any(p.strip(b" \t").lower().startswith(b"received=") for p in params):
                params.append(b"received=" + host.encode())
            return b";".join(params) + rest
    return via
