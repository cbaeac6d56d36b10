"""Turning a source's raw attribute values into a :class:`DirectoryEntry`.

LDAP and CSV differ in how they are read but not in what a user is made of, so both fill in a
:class:`RawRecord` of strings and let :func:`to_entry` do the normalising and validating.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from .model import DirectoryEntry, DirectoryError, RowError, SourceRecord
from .numbers import NumberError, NumberPolicy, ParsedNumber, derive_extension, parse_phone

# RFC 3261 §25.1: the user part allows unreserved and user-unreserved characters and escapes.
_SIP_USER = r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+"
# Host names as in RFC 3261 §25.1 ``hostname``, or a dotted IPv4 address (covered by it).
_SIP_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9])?"
_SIP_ADDRESS = re.compile(rf"({_SIP_USER})@({_SIP_HOST})")
# Digest algorithm lists: "SHA-256", "SHA-256 MD5", "SHA-256, MD5", "sha-256/md5"...
_ALGORITHM_SEPARATORS = re.compile(r"[\s,;/+|]+")
#: The names an algorithm cell may hold, folded to lower case -> the stored name.
_ALGORITHM_NAMES = {"md5": "MD5", "sha-256": "SHA-256", "sha256": "SHA-256"}
#: The cell value that asks for the sidecar's default challenge.
DEFAULT_ALGORITHMS = "default"


class SipAddressError(DirectoryError):
    """A SIP address that cannot identify a user."""


def normalise_sip_uri(raw: str) -> str:
    """Return ``sip:user@host`` in lower case from ``sip:Alice@Example.com`` or ``alice@...``.

    AD's ``msRTCSIP-PrimaryUserAddress`` and Teams' ``SipAddress`` carry the ``sip:`` prefix;
    hand-made CSV files often do not. Lync and Teams treat SIP addresses case-insensitively, so
    the whole address is folded to make matching independent of how an admin typed it.
    """
    text = raw.strip()
    scheme, colon, rest = text.partition(":")
    if colon:
        if scheme.lower() not in ("sip", "sips"):
            raise SipAddressError(f"SIP address {raw!r} has scheme {scheme!r}, expected sip")
        text = rest
    if not _SIP_ADDRESS.fullmatch(text):
        raise SipAddressError(f"SIP address {raw!r} is not of the form user@host")
    return "sip:" + text.lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class RawRecord:
    """A source's values for one user, as text, before any validation.

    ``line`` is the preferred number (a ``tel:`` URI such as ``msRTCSIP-Line`` or a CSV
    ``LineURI``); ``phone`` is the fallback (``telephoneNumber``); ``extension`` is the
    extension attribute (``ipPhone``), used as the policy says.
    """

    origin: str
    source_id: str | None = None
    sip_address: str | None = None
    display_name: str | None = None
    line: str | None = None
    phone: str | None = None
    extension: str | None = None
    email: str | None = None
    upn: str | None = None
    entra_object_id: str | None = None
    disabled: bool = False
    #: ``None`` when the source has no column or attribute for it.
    digest_algorithms: str | None = None


def parse_algorithms(raw: str) -> str:
    """``"SHA-256 MD5"`` from what a source holds (names in any case, separated by spaces,
    commas, semicolons, slashes, plus signs or bars); ``""`` for an empty value or ``default``.
    Raises DirectoryError for anything but MD5 and SHA-256, each at most once."""
    names: list[str] = []
    for token in _ALGORITHM_SEPARATORS.split(raw.strip()):
        if not token:
            continue
        if token.lower() == DEFAULT_ALGORITHMS and not names:
            continue
        name = _ALGORITHM_NAMES.get(token.lower())
        if name is None:
            raise DirectoryError(f"digest algorithm {token!r} is not MD5 or SHA-256")
        if name in names:
            raise DirectoryError(f"digest algorithm {name} is named twice")
        names.append(name)
    return " ".join(names)


def to_entry(record: RawRecord, policy: NumberPolicy) -> SourceRecord:
    """Validate and normalise ``record``; any problem becomes a :class:`RowError`."""
    source_id = _clean(record.source_id)
    sip_uri: str | None = None
    try:
        sip_uri = normalise_sip_uri(record.sip_address or "")
        if source_id is None:
            raise DirectoryError("no stable id (source_id)")
        numbers = _numbers(record, policy)
        algorithms = (
            None if record.digest_algorithms is None else parse_algorithms(record.digest_algorithms)
        )
    except DirectoryError as exc:
        if record.disabled and sip_uri is not None and source_id is not None:
            # A disabled account is skipped anyway; its numbers do not matter.
            numbers = ParsedNumber(None, None)
            algorithms = None
        else:
            return RowError(
                origin=record.origin, message=str(exc), source_id=source_id, sip_uri=sip_uri
            )
    display_name = _clean(record.display_name) or sip_uri[4:].partition("@")[0]
    return DirectoryEntry(
        source_id=source_id,
        sip_uri=sip_uri,
        display_name=display_name,
        e164=numbers.e164,
        extension=numbers.extension,
        email=_clean(record.email),
        upn=_clean(record.upn),
        entra_object_id=normalise_entra_object_id(record.entra_object_id),
        disabled=record.disabled,
        origin=record.origin,
        digest_algorithms=algorithms,
    )


def normalise_entra_object_id(raw: str | None) -> str | None:
    """The Entra object id as a lower-case GUID, or None when there is none.

    Entra Connect writes it back to AD as ``msDS-ExternalDirectoryObjectId`` with a ``User_``
    prefix; CSV exports from Entra carry the bare GUID. Anything that is not a GUID is ignored
    (the Teams connector then maps the user by UPN).
    """
    text = _clean(raw)
    if text is None:
        return None
    text = text.removeprefix("User_").removeprefix("user_")
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def _numbers(record: RawRecord, policy: NumberPolicy) -> ParsedNumber:
    raw = _clean(record.line) or _clean(record.phone)
    try:
        parsed = parse_phone(raw, policy) if raw else ParsedNumber(None, None)
        extension = derive_extension(
            policy,
            line_extension=parsed.extension,
            attribute=_clean(record.extension),
            e164=parsed.e164,
        )
    except NumberError as exc:
        raise NumberError(f"number: {exc}") from None
    return ParsedNumber(parsed.e164, extension)


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    stripped = value.strip()
    return stripped or None
