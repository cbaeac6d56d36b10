"""Deterministic AD/Lync-style users as LDIF, with the import outcome each one should have.

Every hundred users contain one of each awkward kind (disabled by ``userAccountControl``, disabled
for Lync, a malformed line, no SIP address, a number in ``telephoneNumber``/``ipPhone`` instead
of ``msRTCSIP-Line``), and every two hundred one pair claiming the same extension.
"""

from __future__ import annotations

import base64
import enum
import uuid
from dataclasses import dataclass

BASE_DN = "dc=example,dc=com"
PEOPLE_DN = f"ou=people,{BASE_DN}"
SERVICE_DN = f"cn=svc-sip2uc,ou=service,{BASE_DN}"
SERVICE_PASSWORD = "svc-secret-for-tests"
_NAMESPACE = uuid.UUID("5f0c2a8e-3c1d-4e59-9d1a-0b7f4f3e2a10")


class Kind(enum.Enum):
    OK = "ok"
    PHONE_FALLBACK = "phone_fallback"  # telephoneNumber + ipPhone, no msRTCSIP-Line
    DISABLED_ACCOUNT = "disabled_account"  # userAccountControl 514
    DISABLED_LYNC = "disabled_lync"  # msRTCSIP-UserEnabled FALSE
    MALFORMED_LINE = "malformed_line"
    NO_SIP = "no_sip"  # not matched by the search filter
    CONFLICT = "conflict"  # shares its extension with its neighbour


_KIND_BY_REMAINDER = {
    7: Kind.DISABLED_ACCOUNT,
    17: Kind.DISABLED_LYNC,
    27: Kind.MALFORMED_LINE,
    37: Kind.NO_SIP,
    57: Kind.PHONE_FALLBACK,
}


@dataclass(frozen=True, slots=True)
class GeneratedUser:
    index: int
    kind: Kind
    dn: str
    guid: uuid.UUID
    sip_uri: str
    e164: str
    extension: str


@dataclass(frozen=True, slots=True)
class GeneratedDirectory:
    ldif: str
    users: tuple[GeneratedUser, ...]

    def of(self, *kinds: Kind) -> list[GeneratedUser]:
        return [u for u in self.users if u.kind in kinds]


def kind_of(index: int) -> Kind:
    if index % 200 in (47, 48):
        return Kind.CONFLICT
    return _KIND_BY_REMAINDER.get(index % 100, Kind.OK)


def generate(count: int) -> GeneratedDirectory:
    blocks = [
        _entry(
            BASE_DN,
            [("objectClass", "dcObject"), ("objectClass", "organization"), ("o", "Example")],
        ),
        _entry(f"ou=people,{BASE_DN}", [("objectClass", "organizationalUnit"), ("ou", "people")]),
        _entry(f"ou=service,{BASE_DN}", [("objectClass", "organizationalUnit"), ("ou", "service")]),
        _entry(
            SERVICE_DN,
            [
                ("objectClass", "person"),
                ("cn", "svc-sip2uc"),
                ("sn", "service"),
                ("userPassword", SERVICE_PASSWORD),
            ],
        ),
    ]
    users = []
    for index in range(count):
        user = _user(index)
        users.append(user)
        blocks.append(_user_entry(user))
    return GeneratedDirectory(ldif="\n".join(blocks), users=tuple(users))


def user_attributes(user: GeneratedUser) -> dict[str, list[str | bytes]]:
    """The user's attributes, as an LDAP add would send them (to put a deleted user back)."""
    attributes: dict[str, list[str | bytes]] = {}
    for name, value in _user_pairs(user):
        attributes.setdefault(name, []).append(value)
    return attributes


def _user(index: int) -> GeneratedUser:
    kind = kind_of(index)
    uid = f"user{index:05d}"
    extension = f"{20000 + index}"
    if kind is Kind.CONFLICT and index % 200 == 48:
        extension = f"{20000 + index - 1}"
    return GeneratedUser(
        index=index,
        kind=kind,
        dn=f"uid={uid},{PEOPLE_DN}",
        guid=uuid.uuid5(_NAMESPACE, uid),
        sip_uri=f"sip:{uid}@example.com",
        e164=f"+49892{index:06d}",
        extension=extension,
    )


def _user_pairs(user: GeneratedUser) -> list[tuple[str, str | bytes]]:
    uid = user.dn.split(",")[0].removeprefix("uid=")
    # Some names outside ASCII, as real directories have them.
    display = f"Müller {user.index}" if user.index % 10 == 3 else f"User {user.index}"
    pairs: list[tuple[str, str | bytes]] = [
        ("objectClass", "inetOrgPerson"),
        ("objectClass", "sip2ucAdLyncUser"),
        ("uid", uid),
        ("cn", display),
        ("sn", str(user.index)),
        ("displayName", display),
        ("mail", f"{uid}@example.com"),
        ("userPrincipalName", f"{uid}@corp.example.com"),
        ("objectGUID", user.guid.bytes_le),
        ("userAccountControl", "514" if user.kind is Kind.DISABLED_ACCOUNT else "512"),
    ]
    if user.kind is not Kind.NO_SIP:
        # Mixed case as admins type it; the import folds it.
        pairs.append(("msRTCSIP-PrimaryUserAddress", user.sip_uri.replace("sip:user", "sip:User")))
    pairs.append(("msRTCSIP-UserEnabled", "FALSE" if user.kind is Kind.DISABLED_LYNC else "TRUE"))
    if user.kind is Kind.MALFORMED_LINE:
        pairs.append(("msRTCSIP-Line", "tel:+49-89-CALL-ME;ext=1"))
    elif user.kind is Kind.PHONE_FALLBACK:
        national = "0" + user.e164.removeprefix("+49")
        pairs.append(("telephoneNumber", f"{national[:3]} {national[3:]}"))
        pairs.append(("ipPhone", user.extension))
    else:
        pairs.append(("msRTCSIP-Line", f"tel:{user.e164};ext={user.extension}"))
    return pairs


def _user_entry(user: GeneratedUser) -> str:
    return _entry(user.dn, _user_pairs(user))


def _entry(dn: str, pairs: list[tuple[str, str | bytes]]) -> str:
    lines = [f"dn: {dn}"]
    for name, value in pairs:
        if isinstance(value, bytes) or not value.isascii():
            # RFC 2849: values that are not safe ASCII strings are written base64-encoded.
            raw = value if isinstance(value, bytes) else value.encode()
            lines.append(f"{name}:: {base64.b64encode(raw).decode()}")
        else:
            lines.append(f"{name}: {value}")
    return "\n".join(lines) + "\n"
