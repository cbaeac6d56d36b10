"""Opaque page tokens (an offset into a stable ordering) and page-size checks."""

from __future__ import annotations

import base64

from ..errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(value: int) -> int:
    if value < 0 or value > MAX_PAGE_SIZE:
        raise InvalidArgument(FieldViolation("page_size", f"must be 0-{MAX_PAGE_SIZE}"))
    return value or DEFAULT_PAGE_SIZE


def decode_token(token: str) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        kind, _, offset = text.partition(":")
        if kind != "o" or not offset.isdigit():
            raise ValueError(text)
        return int(offset)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument(
            FieldViolation("page_token", "not a token from a previous response")
        ) from None


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()
