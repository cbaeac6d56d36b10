"""Cutting SIP messages out of a TCP/TLS byte stream (RFC 3261 §18.3) and spotting keep-alives.

On a stream, Content-Length is mandatory and is the only way to find where a message ends.
Between messages a peer may send CRLF keep-alives (RFC 5626 §4.4.1): a double CRLF is a "ping"
that the receiver answers with a single CRLF "pong".  :class:`StreamFramer` reports both as
:class:`KeepAlive` items so the adapter can answer pings; any framing error is raised as
:class:`SipParseError`, after which the stream cannot be resynchronised and the adapter closes the
connection (RFC 4475 §3.1.2.3, §3.3.9).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import SipParseError
from .message import DEFAULT_MAX_SIZE

__all__ = ["PONG", "KeepAlive", "StreamFramer", "is_keepalive_datagram"]

PONG = b"\r\n"
"""What to send back for a ping (RFC 5626 §4.4.1)."""

_CRLF = 13, 10
_CONTENT_LENGTH_RE = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.I | re.M)


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A keep-alive seen between messages.

    ``ping`` is True for a double CRLF, which must be answered with :data:`PONG`; False for a
    single CRLF, the pong a client waits for after its own ping.
    """

    ping: bool


class StreamFramer:
    """Incremental framer for one connection: ``feed()`` bytes, get whole messages back.

    ``client=True`` is for connections we opened: the other side never pings us, so every CRLF
    is reported at once as a pong instead of waiting to see whether a second one follows.
    """

    def __init__(
        self,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        max_header_size: int | None = None,
        client: bool = False,
    ) -> None:
        self._max_size = max_size
        self._max_header_size = max_size if max_header_size is None else max_header_size
        self._client = client
        self._buf = bytearray()
        self._scan = 0  # where to resume looking for the end of the header section
        self._need: int | None = None  # length of the message being received, once known
        self._error: SipParseError | None = None

    @property
    def buffered(self) -> int:
        """Octets received but not yet returned as a message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | KeepAlive]:
        """Add received octets; return the messages and keep-alives they complete, in order.

        Raises :class:`SipParseError` on a framing error, and again on every later call.
        """
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += data
        out: list[bytes | KeepAlive] = []
        pos = 0
        try:
            while True:
                if self._need is None:
                    pos = self._skip_keepalives(pos, out)
                    if pos < 0:
                        pos = -pos - 1
                        break
                    if pos >= len(buf) or not self._read_header(pos):
                        break
                need = self._need
                assert need is not None
                if len(buf) - pos < need:
                    break
                out.append(bytes(buf[pos : pos + need]))
                pos += need
                self._need = None
                self._scan = pos
        except SipParseError as exc:
            self._error = exc
            raise
        finally:
            if pos:
                del buf[:pos]
                self._scan = max(0, self._scan - pos)
        return out

    def _skip_keepalives(self, pos: int, out: list[bytes | KeepAlive]) -> int:
        """Consume CRLFs at a message boundary.  Returns the new position, or ``-(pos + 1)`` when
        the buffer ends inside what may still become a ping."""
        buf = self._buf
        n = len(buf)
        while pos < n:
            octet = buf[pos]
            if octet == 10:  # stray LF: tolerated and dropped
                pos += 1
                continue
            if octet != 13:
                break
            if pos + 1 >= n:
                return -(pos + 1)
            if buf[pos + 1] != 10:
                pos += 1
                continue
            if self._client:
                out.append(KeepAlive(ping=False))
                pos += 2
                continue
            if n - pos < 4:
                if buf[pos + 2 : n] == b"\r\n"[: n - pos - 2]:
                    return -(pos + 1)
                out.append(KeepAlive(ping=False))
                pos += 2
            elif buf[pos + 2] == 13 and buf[pos + 3] == 10:
                out.append(KeepAlive(ping=True))
                pos += 4
            else:
                out.append(KeepAlive(ping=False))
                pos += 2
        self._scan = max(self._scan, pos)
        return pos

    def _read_header(self, pos: int) -> bool:
        """Find the header section starting at ``pos`` and set ``_need``; False if incomplete."""
        buf = self._buf
        end = buf.find(b"\r\n\r\n", max(self._scan, pos))
        if end < 0:
            if len(buf) - pos > self._max_header_size:
                raise SipParseError(
                    f"header section exceeds {self._max_header_size} octets", status=413
                )
            self._scan = max(pos, len(buf) - 3)
            return False
        header_length = end + 4 - pos
        if header_length > self._max_header_size:
            raise SipParseError(
                f"header section exceeds {self._max_header_size} octets", status=413
            )
        values = {
            value.strip()
            for line in _CONTENT_LENGTH_RE.findall(buf, pos, end + 2)
            for value in line.split(b",")
        }
        if not values:
            # RFC 3261 §18.3: mandatory on streams, nothing else says where the body ends
            raise SipParseError("missing Content-Length on a stream", field="Content-Length")
        if len(values) != 1:
            raise SipParseError("conflicting Content-Length values", field="Content-Length")
        text = values.pop()
        if not text.isdigit() or len(text) > 10:
            raise SipParseError(f"invalid Content-Length {text[:20]!r}", field="Content-Length")
        total = header_length + int(text)
        if total > self._max_size:
            raise SipParseError(
                f"message of {total} octets exceeds {self._max_size}",
                status=413,
                field="Content-Length",
            )
        self._need = total
        return True


def is_keepalive_datagram(data: bytes) -> bool:
    """Whether a UDP datagram is only CRLF keep-alive filler, to be dropped without parsing."""
    return not data.strip(b"\r\n")
