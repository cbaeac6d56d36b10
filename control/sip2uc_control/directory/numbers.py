"""Phone numbers from directories: E.164 normalisation, ``tel:`` URIs and extension rules.

Directories hold numbers in every shape people type them (``089 123456``, ``+49 (89) 123-456``)
and Lync/Teams store a user's line as an RFC 3966 ``tel:`` URI (``tel:+4989123456;ext=456``).
Everything here raises only :class:`NumberError`; sources turn it into a per-row error.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import phonenumbers

from .model import DirectoryError

# RFC 3966 §3: visual separators may appear anywhere in a phone number and carry no meaning.
_VISUAL_SEPARATORS = re.compile(r"[\s\-.()]")
_EXTENSION = re.compile(r"[0-9]{1,15}")
# RFC 3966 §3: a tel: number is digits and visual separators only; no letters (phonenumbers
# would read "CALL-ME" as a vanity number, which a directory's line URI never means).
_TEL_SUBSCRIBER = re.compile(r"\+?[0-9\-.()]*[0-9][0-9\-.()]*")


class NumberError(DirectoryError):
    """A phone number or extension that cannot be used."""


class ExtensionFallback(enum.Enum):
    """Where an extension comes from when the line URI carries no ``;ext=``."""

    NONE = "none"
    #: A directory attribute of its own, e.g. AD ``ipPhone`` or a CSV ``extension`` column.
    ATTRIBUTE = "attribute"
    #: The last ``extension_digits`` digits of the E.164 number (common with DID ranges).
    LAST_DIGITS = "last_digits"


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberPolicy:
    """How numbers of one directory are read.

    ``default_region`` (ISO 3166-1 alpha-2, e.g. ``"DE"``) lets national numbers such as
    ``089 123456`` be normalised; without it only numbers written with ``+`` are accepted.
    ``require_valid`` checks numbers against the numbering plan metadata; turn it off to accept
    every number of plausible length (new ranges the metadata does not know yet).
    """

    default_region: str | None = None
    require_valid: bool = True
    extension_fallback: ExtensionFallback = ExtensionFallback.ATTRIBUTE
    extension_digits: int = 4

    def __post_init__(self) -> None:
        if not 1 <= self.extension_digits <= 15:
            raise ValueError("extension_digits must be between 1 and 15")


@dataclass(frozen=True, slots=True)
class ParsedNumber:
    """A line's public number (E.164) and the extension it carried, if any."""

    e164: str | None
    extension: str | None = None


def normalise_e164(raw: str, policy: NumberPolicy) -> str:
    """Return ``raw`` as an E.164 string (``+4989123456``) or raise :class:`NumberError`."""
    number = _parse(raw, policy)
    return _format(number, raw, policy)


def normalise_extension(raw: str) -> str:
    """Return an extension of 1-15 digits, visual separators removed."""
    digits = _VISUAL_SEPARATORS.sub("", raw)
    if not _EXTENSION.fullmatch(digits):
        raise NumberError(f"extension {raw!r} is not 1-15 digits")
    return digits


def parse_tel_uri(raw: str, policy: NumberPolicy) -> ParsedNumber:
    """Parse an RFC 3966 ``tel:`` URI such as ``tel:+4989123456;ext=456``.

    Unknown parameters (``isub``, vendor ones) are ignored, as RFC 3966 §5.3 allows.
    A local number is resolved with a global ``phone-context`` (§5.1.5); failing that,
    leniently, with the policy's default region (Lync accepts such lines).
    """
    text = raw.strip()
    if text[:4].lower() != "tel:":
        raise NumberError(f"{raw!r} is not a tel: URI")
    subscriber, *params = text[4:].split(";")
    extension: str | None = None
    context: str | None = None
    for param in params:
        name, _, value = param.partition("=")
        name = name.strip().lower()
        if name == "ext":
            extension = normalise_extension(value)
        elif name == "phone-context":
            context = value.strip()
    subscriber = subscriber.strip()
    if not subscriber:
        raise NumberError(f"{raw!r} has no number")
    if not _TEL_SUBSCRIBER.fullmatch(subscriber):
        raise NumberError(f"{raw!r}: a tel: number has only digits and - . ( ) (RFC 3966 §3)")
    if not subscriber.startswith("+") and context is not None and context.startswith("+"):
        subscriber = context + subscriber
    return ParsedNumber(normalise_e164(subscriber, policy), extension)


def parse_phone(raw: str, policy: NumberPolicy) -> ParsedNumber:
    """Parse a ``tel:`` URI or a free-form number (``+1 425 555 0100 x123`` keeps ``123``)."""
    if raw.strip()[:4].lower() == "tel:":
        return parse_tel_uri(raw, policy)
    number = _parse(raw, policy)
    extension = normalise_extension(number.extension) if number.extension else None
    return ParsedNumber(_format(number, raw, policy), extension)


def derive_extension(
    policy: NumberPolicy,
    *,
    line_extension: str | None,
    attribute: str | None,
    e164: str | None,
) -> str | None:
    """Pick a user's extension: the line's ``;ext=`` first, then the policy's fallback."""
    if line_extension:
        return line_extension
    if policy.extension_fallback is ExtensionFallback.ATTRIBUTE and attribute:
        return normalise_extension(attribute)
    if policy.extension_fallback is ExtensionFallback.LAST_DIGITS and e164:
        return e164[-policy.extension_digits :]
    return None


def _parse(raw: str, policy: NumberPolicy) -> phonenumbers.PhoneNumber:
    text = raw.strip()
    if not text:
        raise NumberError("empty phone number")
    try:
        return phonenumbers.parse(text, policy.default_region)
    except phonenumbers.NumberParseException as exc:
        raise NumberError(f"phone number {raw!r} cannot be read: {exc}") from None


def _format(number: phonenumbers.PhoneNumber, raw: str, policy: NumberPolicy) -> str:
    usable = (
        phonenumbers.is_valid_number(number)
        if policy.require_valid
        else phonenumbers.is_possible_number(number)
    )
    if not usable:
        raise NumberError(f"{raw!r} is not a valid phone number")
    formatted: str = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return formatted
