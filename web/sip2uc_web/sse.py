"""Server-sent events framing (HTML Living Standard §9.2, "text/event-stream"). Sans-IO.

An event is a block of `field: value` lines ended by an empty line. Data of several lines goes
out as one `data:` line each (the browser joins them with "\\n"); since any of CR LF, LF or CR
ends a line in the stream, all three split the data the same way. Event names and ids are single
lines, so a line break in one is refused rather than sent as a second, unintended field.
"""

from __future__ import annotations

import re

MEDIA_TYPE = "text/event-stream"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class FramingError(ValueError):
    """A field that cannot be written as one line of an event stream."""


def _single_line(field: str, value: str) -> str:
    if _LINE_BREAK.search(value):
        raise FramingError(f"SSE {field} must be one line, got {value!r}")
    if field == "id" and "\0" in value:
        raise FramingError("SSE id must not contain NUL (the browser ignores such an id)")
    return value


def event(
    data: str, *, name: str | None = None, id: str | None = None, retry_ms: int | None = None
) -> bytes:
    """One event: `event:` (when named), `id:`, `retry:` and one `data:` line per line of data."""
    lines: list[str] = []
    if name is not None:
        lines.append(f"event: {_single_line('event name', name)}")
    if id is not None:
        lines.append(f"id: {_single_line('id', id)}")
    if retry_ms is not None:
        if retry_ms < 0:
            raise FramingError(f"SSE retry must be a non-negative integer, got {retry_ms}")
        lines.append(f"retry: {retry_ms}")
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def comment(text: str = "") -> bytes:
    """A comment line: ignored by the browser, it keeps proxies from closing an idle stream."""
    return f": {_single_line('comment', text)}\n\n".encode()
