"""Users from a CSV file: our own columns, or a UC platform's user listing exported as is.

Documented columns (header names are case-insensitive, order is free, unknown columns ignored):

=============  ================================================================================
sip_uri        SIP address, ``sip:alice@example.com`` or ``alice@example.com`` (required)
display_name   name shown on handsets and in buddy lists (default: the SIP user part)
e164           the user's number, E.164 or national (with a default region) or a ``tel:`` URI
extension      internal extension (digits); a ``;ext=`` in ``e164``/``LineURI`` wins
email          mail address
source_id      stable id of the user in the source; default: the SIP URI (renames then
               look like a removal plus an addition)
disabled       ``true``/``false``/``yes``/``no``/``1``/``0``: disabled users are skipped
digest_        the handset's digest algorithms, most preferred first: ``SHA-256``, ``MD5``,
algorithm      ``SHA-256 MD5``; empty or ``default``: the sidecar's default. Without this
               column an import leaves the handsets' algorithms as they are
=============  ================================================================================

Exports work unchanged: Teams ``Get-CsOnlineUser | Export-Csv`` and Skype for Business
``Get-CsUser | Export-Csv`` columns ``SipAddress``, ``DisplayName``, ``LineURI``,
``UserPrincipalName``, ``Identity``/``Guid``/``ObjectId``, ``Enabled``/``AccountEnabled``,
``WindowsEmailAddress`` are recognised, a leading ``#TYPE`` line of Windows PowerShell 5 is
skipped, and a UTF-8 byte order mark is ignored. ``EnterpriseVoiceEnabled`` is accepted and
ignored: users without Enterprise Voice still get presence. Extra aliases can be given per file.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from itertools import chain
from typing import TextIO

from .model import DirectoryError, RowError, SourceRecord
from .numbers import NumberPolicy
from .records import RawRecord, SipAddressError, normalise_sip_uri, to_entry

#: Header (lower case) -> record field. Earlier aliases win when a file has several.
DEFAULT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("source_id", "source_id"),
    ("guid", "source_id"),
    ("objectid", "source_id"),
    ("identity", "source_id"),
    ("sip_uri", "sip_uri"),
    ("sipaddress", "sip_uri"),
    ("sip address", "sip_uri"),
    ("msrtcsip-primaryuseraddress", "sip_uri"),
    ("display_name", "display_name"),
    ("displayname", "display_name"),
    ("display name", "display_name"),
    ("lineuri", "line"),
    ("line_uri", "line"),
    ("msrtcsip-line", "line"),
    ("e164", "phone"),
    ("phonenumber", "phone"),
    ("telephonenumber", "phone"),
    ("extension", "extension"),
    ("ipphone", "extension"),
    ("email", "email"),
    ("mail", "email"),
    ("windowsemailaddress", "email"),
    ("upn", "upn"),
    ("userprincipalname", "upn"),
    ("entra_object_id", "entra_object_id"),
    ("entraobjectid", "entra_object_id"),
    ("azureadobjectid", "entra_object_id"),
    ("disabled", "disabled"),
    ("enabled", "enabled"),
    ("accountenabled", "enabled"),
    ("digest_algorithm", "digest_algorithms"),
    ("digest_algorithms", "digest_algorithms"),
)

FIELDS = frozenset(field for _, field in DEFAULT_COLUMNS)

_TRUE = frozenset({"true", "yes", "1", "$true", "y"})
_FALSE = frozenset({"false", "no", "0", "$false", "n", ""})
# Skype for Business exports Identity as the user's AD distinguished name, whose CN is the GUID.
_CN_PREFIX = re.compile(r"^\s*CN=([^,]+),", re.IGNORECASE)


class CsvSourceError(DirectoryError):
    """A CSV file that cannot be read at all (no header, no SIP address column, not UTF-8)."""


def load_csv(
    path: str | os.PathLike[str],
    policy: NumberPolicy,
    *,
    columns: Mapping[str, str] | None = None,
    delimiter: str | None = None,
) -> list[SourceRecord]:
    """Read a whole CSV file (UTF-8, with or without BOM) into records."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            return list(read_csv(stream, policy, columns=columns, delimiter=delimiter))
    except OSError as exc:
        raise CsvSourceError(f"cannot read {os.fspath(path)!r}: {exc.strerror}") from None


def read_csv(
    stream: TextIO,
    policy: NumberPolicy,
    *,
    columns: Mapping[str, str] | None = None,
    delimiter: str | None = None,
) -> Iterator[SourceRecord]:
    """Yield one record per data row; bad rows become :class:`RowError` with their row number.

    ``columns`` adds or overrides header aliases (header -> one of :data:`FIELDS`).
    ``delimiter`` defaults to whichever of ``,``, ``;`` and tab the header line uses most
    (spreadsheets in many locales save with ``;``). Row numbers are line numbers in the file.
    """
    aliases = _aliases(columns)
    try:
        first = stream.readline()
        skipped = 0
        if first.lstrip("\ufeff").startswith("#TYPE"):
            skipped = 1
            first = stream.readline()
        first = first.lstrip("\ufeff")
        if not first.strip():
            raise CsvSourceError("the file has no header line")
        sep = delimiter or max((",", ";", "\t"), key=first.count)
        reader = csv.reader(chain([first], stream), delimiter=sep)
        header = next(reader)
        layout = _layout(header, aliases)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield RowError(origin=f"row {reader.line_num + skipped}", message=str(exc))
                continue
            if not any(cell.strip() for cell in row):
                continue
            yield _record(row, len(header), layout, f"row {reader.line_num + skipped}", policy)
    except UnicodeDecodeError as exc:
        raise CsvSourceError(f"the file is not UTF-8: {exc.reason}") from None
    except csv.Error as exc:
        raise CsvSourceError(f"the header cannot be read: {exc}") from None


def _aliases(columns: Mapping[str, str] | None) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for header, field in DEFAULT_COLUMNS:
        aliases.setdefault(header, field)
    for header, field in (columns or {}).items():
        if field not in FIELDS:
            raise ValueError(f"column {header!r} maps to unknown field {field!r}")
        aliases[header.strip().lower()] = field
    return aliases


def _layout(header: list[str], aliases: dict[str, str]) -> dict[str, list[int]]:
    """Field -> column indexes, best alias first."""
    rank = {name: i for i, name in enumerate(aliases)}
    found: dict[str, list[tuple[int, int]]] = {}
    for index, name in enumerate(header):
        key = name.strip().lower()
        if key in aliases:
            found.setdefault(aliases[key], []).append((rank[key], index))
    if "sip_uri" not in found:
        raise CsvSourceError(
            f"no SIP address column (sip_uri or SipAddress) among {', '.join(header)}"
        )
    return {field: [index for _, index in sorted(pairs)] for field, pairs in found.items()}


def _record(
    row: list[str], width: int, layout: dict[str, list[int]], origin: str, policy: NumberPolicy
) -> SourceRecord:
    if len(row) > width:
        return RowError(origin=origin, message=f"{len(row)} fields but the header has {width}")

    def value(field: str) -> str | None:
        for index in layout.get(field, ()):
            if index < len(row) and row[index].strip():
                return row[index].strip()
        return None

    # A file with the column manages the algorithms (an empty cell: the default); one without
    # leaves them as they are.
    algorithms = (value("digest_algorithms") or "") if "digest_algorithms" in layout else None
    try:
        disabled = _flag(value("disabled"), "disabled") or not _flag(
            value("enabled") or "true", "enabled"
        )
    except DirectoryError as exc:
        return RowError(origin=origin, message=str(exc))
    sip_address = value("sip_uri")
    source_id = _source_id(value("source_id"))
    if source_id is None and sip_address:
        with contextlib.suppress(SipAddressError):  # reported by to_entry
            source_id = normalise_sip_uri(sip_address)
    return to_entry(
        RawRecord(
            origin=origin,
            source_id=source_id,
            sip_address=sip_address,
            display_name=value("display_name"),
            line=value("line"),
            phone=value("phone"),
            extension=value("extension"),
            email=value("email"),
            upn=value("upn"),
            entra_object_id=value("entra_object_id"),
            disabled=disabled,
            digest_algorithms=algorithms,
        ),
        policy,
    )


def _flag(raw: str | None, name: str) -> bool:
    text = (raw or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise DirectoryError(f"{name} is {raw!r}, expected true or false")


def _source_id(raw: str | None) -> str | None:
    """Ids that are GUIDs are written one way, as for LDAP ``objectGUID``s."""
    if raw is None:
        return None
    match = _CN_PREFIX.match(raw)
    candidate = match.group(1) if match else raw
    try:
        return str(uuid.UUID(candidate.strip()))
    except ValueError:
        return raw
