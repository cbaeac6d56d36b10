"""The `filter` of list requests: plain text, matched case-insensitively anywhere.

It is not an expression language (AIP-160): text that looks like one (`extension = "456"`,
`name:alice AND ...`, wildcards) would silently match nothing, so it is refused with the field
named and what to do instead. So is text no user could hold (control characters) or too long
to be a search.
"""

from __future__ import annotations

import re

from ..errors import FieldViolation, InvalidArgument

__all__ = ["FILTER_MAX", "text_filter"]

FILTER_MAX = 256
_OPERATORS = re.compile(r'[=<>()"\\*?]|(?:^|\s)(?:AND|OR|NOT)(?:\s|$)')


def text_filter(value: str, field: str = "filter") -> str:
    """`value` trimmed and lower-cased for matching; InvalidArgument when it is no plain text."""
    text = value.strip()
    if len(text) > FILTER_MAX:
        raise InvalidArgument(FieldViolation(field, f"at most {FILTER_MAX} characters"))
    if not text.isprintable():
        raise InvalidArgument(FieldViolation(field, "must not hold control characters"))
    found = _OPERATORS.search(text)
    if found is not None:
        raise InvalidArgument(
            FieldViolation(
                field,
                f"is plain text matched anywhere in SIP identity, name, extension, number and "
                f"e-mail; {found.group().strip()!r} is not supported (no operators, quotes or "
                f"wildcards): give the text alone, or use extension or e164 for an exact match",
            )
        )
    return text.lower()
