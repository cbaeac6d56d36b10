"""What a short message may contain: ``text/plain`` in UTF-8, up to a size (RFC 3428 §8, §9).

Sans-IO and pure: the control plane applies the same rules to a handset's MESSAGE, a text sent
through the API and one coming from the UC side.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ACCEPT", "CONTENT_TYPE", "ContentRefused", "check_body", "check_text"]

#: The one type accepted, and what a 415 lists in ``Accept`` (RFC 3261 §21.4.13).
ACCEPT = "text/plain"
#: The type of every MESSAGE this control plane sends.
CONTENT_TYPE = "text/plain;charset=UTF-8"


@dataclass(frozen=True, slots=True)
class ContentRefused:
    status: int
    reason: str
    accept: str = ""


def _media_type(content_type: str) -> tuple[str, dict[str, str]]:
    kind, _, rest = content_type.partition(";")
    params: dict[str, str] = {}
    for part in rest.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            params[name.strip().lower()] = value.strip().strip('"').lower()
    return kind.strip().lower(), params


def check_body(content_type: str, body: bytes, max_bytes: int) -> str | ContentRefused:
    """The text of a MESSAGE body, or why it is refused.

    A missing charset is taken as UTF-8: handsets rarely send one, and US-ASCII (RFC 2046's
    default for text/plain) is a subset of UTF-8.
    """
    kind, params = _media_type(content_type)
    if kind != ACCEPT:
        return ContentRefused(415, "Unsupported Media Type", ACCEPT)
    charset = params.get("charset", "utf-8")
    if charset not in ("utf-8", "utf8", "us-ascii"):
        return ContentRefused(415, "Unsupported Media Type", ACCEPT)
    if len(body) > max_bytes:
        return ContentRefused(413, f"Message Too Large (at most {max_bytes} bytes)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return ContentRefused(400, "Body is not UTF-8")
    if not text.strip():
        return ContentRefused(400, "Empty message")
    return text


def check_text(text: str, max_bytes: int) -> str | None:
    """Why a text from the API cannot be sent, or None."""
    if not text.strip():
        return "must not be empty"
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        return f"at most {max_bytes} bytes in UTF-8 (this is {size})"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text"
    return None
