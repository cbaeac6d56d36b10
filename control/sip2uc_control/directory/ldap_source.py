"""Users from LDAP: Active Directory with Lync/Skype for Business/Teams attributes, or OpenLDAP.

The connection is always encrypted (LDAPS, or StartTLS per RFC 4513 §3) unless the server is on
the loopback interface or ``allow_plain`` says otherwise, because a simple bind sends the
service account's password as is (RFC 4513 §5.1). Results are fetched with the Simple Paged
Results control (RFC 2696): AD returns at most 1,000 entries per search otherwise
(``MaxPageSize``), OpenLDAP 500 (``sizelimit``).

:func:`map_ldap_entry` (raw attribute values -> record) is pure and holds all the attribute
rules; :func:`fetch_ldap_records` only talks to the server. The latter blocks; asyncio callers
use :func:`load_ldap_records`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import math
import ssl
import types
import typing
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import LDAPException

from .model import DirectoryError, RowError, SourceRecord
from .numbers import ExtensionFallback, NumberPolicy
from .records import RawRecord, to_entry

#: Person objects that have a SIP address, i.e. users enabled for Lync/Skype/Teams.
DEFAULT_FILTER = "(&(objectClass=person)(msRTCSIP-PrimaryUserAddress=*))"

#: ``userAccountControl`` bit ACCOUNTDISABLE ([MS-ADTS] §2.2.16).
ACCOUNTDISABLE = 0x2

_PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"


class LdapSourceError(DirectoryError):
    """The directory cannot be read at all: bad configuration, unreachable, bind refused."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LdapAttributeMap:
    """Which directory attribute holds what; defaults are AD's with the Lync/Teams schema.

    ``ids`` are tried in order: AD's binary ``objectGUID`` first, OpenLDAP's ``entryUUID``
    (RFC 4530) for directories without it.
    """

    sip_address: str = "msRTCSIP-PrimaryUserAddress"
    line: str = "msRTCSIP-Line"
    phone: str = "telephoneNumber"
    extension: str = "ipPhone"
    display_name: str = "displayName"
    email: str = "mail"
    upn: str = "userPrincipalName"
    #: Written back by Entra Connect for synced users (``User_<object id>``).
    entra_object_id: str = "msDS-ExternalDirectoryObjectId"
    ids: tuple[str, ...] = ("objectGUID", "entryUUID")
    account_control: str = "userAccountControl"
    user_enabled: str = "msRTCSIP-UserEnabled"
    #: No directory schema has one: empty (not read, the handsets' algorithms are left alone)
    #: unless mapped, e.g. to an extension attribute. Mapped, a user without it gets the default.
    digest_algorithms: str = ""

    def requested(self) -> list[str]:
        names = [
            self.sip_address,
            self.line,
            self.phone,
            self.extension,
            self.display_name,
            self.email,
            self.upn,
            self.entra_object_id,
            self.account_control,
            self.user_enabled,
            self.digest_algorithms,
            *self.ids,
        ]
        return [name for name in names if name]


@dataclass(frozen=True, slots=True, kw_only=True)
class LdapSourceConfig:
    """Where and how to read users. Build it from a config dict with :meth:`from_mapping`.

    ``url`` is ``ldaps://host[:port]`` or ``ldap://host[:port]``; with ``ldap://`` the
    connection is upgraded with StartTLS unless ``start_tls`` is off, which is allowed only for
    a loopback host or with ``allow_plain``. ``verify=False`` skips certificate checks (tests
    only). ``honour_user_enabled`` also skips users whose ``msRTCSIP-UserEnabled`` is FALSE.
    """

    url: str
    base_dn: str
    bind_dn: str | None = None
    password: str | None = field(default=None, repr=False)
    search_filter: str = DEFAULT_FILTER
    start_tls: bool = True
    allow_plain: bool = False
    ca_file: str | None = None
    verify: bool = True
    page_size: int = 500
    timeout: float = 30.0
    honour_user_enabled: bool = True
    attributes: LdapAttributeMap = field(default_factory=LdapAttributeMap)
    numbers: NumberPolicy = field(default_factory=NumberPolicy)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
            raise LdapSourceError(f"url {self.url!r} is not ldap://host or ldaps://host")
        if not 1 <= self.page_size <= 100_000:
            raise LdapSourceError("page_size must be between 1 and 100000")
        plain = parts.scheme == "ldap" and not self.start_tls
        if plain and not (self.allow_plain or _is_loopback(parts.hostname)):
            raise LdapSourceError(
                f"refusing to send a password in clear to {parts.hostname}: "
                "use ldaps://, StartTLS, or allow_plain"
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> LdapSourceConfig:
        """Build a config from parsed TOML/YAML/JSON.

        Keys are this class's field names; ``attributes`` is a table of
        :class:`LdapAttributeMap` fields; ``numbers`` a table of ``default_region``,
        ``require_valid``, ``extension_fallback`` (``none``/``attribute``/``last_digits``)
        and ``extension_digits``. Unknown keys are an error (a typo must not go unnoticed).
        """
        values = dict(data)
        attributes = _build(LdapAttributeMap, _table(values.pop("attributes", {}), "attributes"))
        number_values = dict(_table(values.pop("numbers", {}), "numbers"))
        if "extension_fallback" in number_values:
            try:
                number_values["extension_fallback"] = ExtensionFallback(
                    number_values["extension_fallback"]
                )
            except ValueError:
                raise LdapSourceError(
                    f"numbers.extension_fallback {number_values['extension_fallback']!r} is "
                    "not one of none, attribute, last_digits"
                ) from None
        try:
            numbers = _build(NumberPolicy, number_values)
        except ValueError as exc:
            raise LdapSourceError(f"numbers: {exc}") from None
        values["attributes"] = attributes
        values["numbers"] = numbers
        return _build(cls, values)


def map_ldap_entry(
    dn: str, attributes: Mapping[str, Sequence[bytes]], config: LdapSourceConfig
) -> SourceRecord:
    """Turn one search result entry (raw attribute values) into a record."""
    values = {name.lower(): vals for name, vals in attributes.items()}
    names = config.attributes
    try:
        record = RawRecord(
            origin=dn,
            source_id=_source_id(values, names.ids),
            sip_address=_text(values, names.sip_address),
            display_name=_text(values, names.display_name),
            line=_text(values, names.line),
            phone=_text(values, names.phone),
            extension=_text(values, names.extension),
            email=_text(values, names.email),
            upn=_text(values, names.upn),
            entra_object_id=_text(values, names.entra_object_id),
            disabled=_disabled(values, config),
            digest_algorithms=(
                (_text(values, names.digest_algorithms) or "") if names.digest_algorithms else None
            ),
        )
    except DirectoryError as exc:
        return RowError(origin=dn, message=str(exc))
    return to_entry(record, config.numbers)


def fetch_ldap_records(config: LdapSourceConfig) -> Iterator[SourceRecord]:
    """Bind, run the paged search and yield a record per entry found.

    Raises :class:`LdapSourceError` when the server cannot be reached, refuses the bind or
    fails the search; problems with single entries are yielded as :class:`RowError`.
    """
    for dn, raw in search_ldap(config, config.attributes.requested()):
        yield map_ldap_entry(dn, raw, config)


def search_ldap(
    config: LdapSourceConfig, attributes: Sequence[str]
) -> Iterator[tuple[str, Mapping[str, Sequence[bytes]]]]:
    """Bind, run the paged search for `attributes` and yield each entry's DN and raw values.

    Raises :class:`LdapSourceError` when the server cannot be reached, refuses the bind or
    fails the search.
    """
    connection = _connect(config)
    try:
        cookie: bytes | None = None
        while True:
            try:
                connection.search(
                    search_base=config.base_dn,
                    search_filter=config.search_filter,
                    search_scope=ldap3.SUBTREE,
                    attributes=list(attributes),
                    paged_size=config.page_size,
                    paged_cookie=cookie,
                )
            except (LDAPException, OSError) as exc:
                raise LdapSourceError(f"search under {config.base_dn!r} failed: {exc}") from None
            for response in connection.response or ():
                if response.get("type") == "searchResEntry":
                    yield response["dn"], response["raw_attributes"]
            cookie = _next_cookie(connection.result)
            if not cookie:
                return
    finally:
        with contextlib.suppress(LDAPException):  # dropped either way
            connection.unbind()


async def load_ldap_records(config: LdapSourceConfig) -> list[SourceRecord]:
    """:func:`fetch_ldap_records` run in a worker thread, for asyncio callers."""
    return await asyncio.to_thread(lambda: list(fetch_ldap_records(config)))


def _connect(config: LdapSourceConfig) -> ldap3.Connection:
    parts = urlsplit(config.url)
    secure = parts.scheme == "ldaps"
    tls = ldap3.Tls(
        validate=ssl.CERT_REQUIRED if config.verify else ssl.CERT_NONE,
        ca_certs_file=config.ca_file,
    )
    try:
        server = ldap3.Server(
            parts.hostname,
            port=parts.port or (636 if secure else 389),
            use_ssl=secure,
            tls=tls,
            get_info=ldap3.NONE,
            connect_timeout=config.timeout,
        )
        connection = ldap3.Connection(
            server,
            user=config.bind_dn,
            password=config.password,
            auto_bind=ldap3.AUTO_BIND_NONE,
            # ldap3 packs this into SO_RCVTIMEO as whole seconds; a float breaks the pack.
            receive_timeout=max(1, math.ceil(config.timeout)),
            raise_exceptions=True,
            read_only=True,
        )
        connection.open()
        if not secure and config.start_tls:
            connection.start_tls()
        connection.bind()
    except (LDAPException, OSError) as exc:
        # ldap3 messages carry no credentials; the bind DN is fine to name.
        raise LdapSourceError(f"cannot bind to {config.url} as {config.bind_dn!r}: {exc}") from None
    return connection


def _next_cookie(result: Mapping[str, Any] | None) -> bytes | None:
    controls = (result or {}).get("controls") or {}
    paged = controls.get(_PAGED_RESULTS_OID) or {}
    cookie = (paged.get("value") or {}).get("cookie")
    return cookie if isinstance(cookie, bytes) and cookie else None


def _first(values: Mapping[str, Sequence[bytes]], name: str) -> bytes | None:
    found = values.get(name.lower())
    return found[0] if found else None


def _text(values: Mapping[str, Sequence[bytes]], name: str) -> str | None:
    raw = _first(values, name) if name else None
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DirectoryError(f"{name} is not UTF-8") from None


def _source_id(values: Mapping[str, Sequence[bytes]], names: Sequence[str]) -> str | None:
    for name in names:
        raw = _first(values, name)
        if raw is None:
            continue
        if len(raw) == 16:
            # AD's objectGUID is the binary GUID structure, its first three fields little-endian
            # ([MS-DTYP] §2.3.4); bytes_le gives the string form AD tools show.
            return str(uuid.UUID(bytes_le=raw))
        text = _text(values, name)
        assert text is not None
        try:
            return str(uuid.UUID(text))
        except ValueError:
            return text.strip() or None
    return None


def _disabled(values: Mapping[str, Sequence[bytes]], config: LdapSourceConfig) -> bool:
    names = config.attributes
    control = _text(values, names.account_control)
    if control is not None:
        try:
            if int(control) & ACCOUNTDISABLE:
                return True
        except ValueError:
            raise DirectoryError(f"{names.account_control} {control!r} is not a number") from None
    enabled = _text(values, names.user_enabled)
    return config.honour_user_enabled and enabled is not None and enabled.upper() == "FALSE"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _table(value: object, name: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise LdapSourceError(f"{name} must be a table")
    return value


_T = typing.TypeVar("_T")


def _build(cls: type[_T], values: Mapping[str, object]) -> _T:
    """Instantiate a dataclass from ``values``, checking names and simple types."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(values) - known
    if unknown:
        raise LdapSourceError(f"unknown {cls.__name__} settings: {', '.join(sorted(unknown))}")
    checked: dict[str, object] = {}
    for name, value in values.items():
        expected = hints[name]
        if isinstance(value, list) and _accepts(expected, tuple):
            value = tuple(value)
        if not _accepts_value(expected, value):
            raise LdapSourceError(f"{cls.__name__}.{name} has the wrong type: {value!r}")
        checked[name] = value
    return cls(**checked)


def _accepts(expected: object, kind: type) -> bool:
    options = typing.get_args(expected) if isinstance(expected, types.UnionType) else (expected,)
    return any(typing.get_origin(o) is kind or o is kind for o in options)


def _accepts_value(expected: object, value: object) -> bool:
    options = typing.get_args(expected) if isinstance(expected, types.UnionType) else (expected,)
    for option in options:
        origin = typing.get_origin(option) or option
        if option is type(None) and value is None:
            return True
        if origin is float and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if origin is int and isinstance(value, bool):
            continue
        if isinstance(origin, type) and isinstance(value, origin):
            if origin is tuple:
                return all(isinstance(v, str) for v in typing.cast(tuple[object, ...], value))
            return True
    return False
