"""The registrar's decisions (RFC 3261 §10.3), made in the control plane, which alone holds HA1.

The sidecar has already checked the nonce (authentic, not stale, not replayed); here the digest
response is verified against the stored HA1 of the credentials' algorithm and refused when the
device is not allowed that algorithm, the address-of-record is checked against the user, and the
contact list becomes binding changes. Account lockout (`lockout.py`) is the core's, around
`authenticate`.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from sip2uc_core.sip.contact import Contact
from sip2uc_core.sip.digest import Algorithm, Credentials, DigestError, verify_response
from sip2uc_core.sip.endpoint import Endpoint

from .bindings import Binding
from .domain import Device, User
from .settings import ServerSettings

# A fixed HA1 checked when the user is unknown, so the work done (and the time taken) does not
# reveal whether a digest username exists.
_DUMMY_HA1 = {32: "0" * 32, 64: "0" * 64}


class Refusal(StrEnum):
    """Why credentials were refused (for metrics and logs; the handset sees one 401 for all)."""

    UNKNOWN_USER = "unknown_user"
    WRONG_PASSWORD = "wrong_password"  # noqa: S105 - a metric label, not a secret
    #: Right password, but computed with an algorithm the device is not allowed (RFC 8760).
    ALGORITHM = "algorithm"
    #: The account's digest is locked after failed logins from many sources.
    LOCKED = "locked"


class Outcome(StrEnum):
    OK = "ok"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    INTERVAL_TOO_BRIEF = "interval_too_brief"
    TOO_MANY_BINDINGS = "too_many_bindings"
    OUT_OF_ORDER = "out_of_order"


@dataclass(frozen=True)
class RegisterInput:
    credentials: Credentials
    aor: str
    #: The REGISTER's contacts with their requested lifetimes.
    contacts: tuple[Contact, ...]
    remove_all: bool
    cseq: int
    call_id: str
    #: Where the REGISTER came from: where the handset can be reached (it may sit behind NAT).
    source: Endpoint
    sidecar: str
    user_agent: str


@dataclass
class RegisterDecision:
    outcome: Outcome
    reason: str = ""
    user: User | None = None
    device: Device | None = None
    upserts: list[Binding] = field(default_factory=list)
    removals: list[Binding] = field(default_factory=list)
    min_expires: int = 0


class DigestAccounts(Protocol):
    """Where the registrar finds a device by its digest user name (`users.UserDirectory`)."""

    def by_digest_username(self, username: str) -> tuple[User, Device] | None: ...


def authenticate(
    users: DigestAccounts, creds: Credentials, realm: str, method: str
) -> tuple[User, Device] | Refusal:
    """The user and device the credentials prove, or why not (unknown user and wrong password
    take the same work and time)."""
    found = users.by_digest_username(creds.username)
    alg = creds.algorithm.base
    if found is None or found[1].registering is None:
        verify_response(_DUMMY_HA1[alg.hexdigest_length], creds, method)
        return Refusal.UNKNOWN_USER
    user, device = found
    reg = device.registering
    assert reg is not None
    ha1 = {Algorithm.MD5: reg.ha1_md5, Algorithm.SHA_256: reg.ha1_sha256}.get(alg, "")
    if creds.realm != realm or not ha1:
        verify_response(_DUMMY_HA1[alg.hexdigest_length], creds, method)
        return Refusal.WRONG_PASSWORD
    if not verify_response(ha1, creds, method):
        return Refusal.WRONG_PASSWORD
    if not reg.allows(creds.algorithm):
        return Refusal.ALGORITHM
    return user, device


def waste_verification(creds: Credentials, method: str) -> None:
    """The work of a verification that cannot succeed (a locked account answers in the time a
    wrong password takes)."""
    try:
        verify_response(_DUMMY_HA1[creds.algorithm.hexdigest_length], creds, method)
    except DigestError:
        pass


def aor_user_part(aor: str) -> str:
    rest = aor.split(":", 1)[1] if ":" in aor else aor
    return rest.split("@", 1)[0].split(";", 1)[0]


def _binding_id(user_id: str, device_id: str, contact: Contact) -> str:
    key = contact.instance_id or contact.uri
    digest = hashlib.sha256(f"{user_id}\0{device_id}\0{key}".encode()).hexdigest()
    return digest[:24]


def decide(
    inp: RegisterInput,
    found: tuple[User, Device] | Refusal,
    existing: list[Binding],
    settings: ServerSettings,
    now: float,
) -> RegisterDecision:
    """What a REGISTER does, given what its credentials proved (`authenticate`)."""
    if isinstance(found, Refusal):
        return RegisterDecision(Outcome.UNAUTHORIZED, "Unauthorized")
    user, device = found
    reg = device.registering
    assert reg is not None
    if user.disabled:
        return RegisterDecision(Outcome.FORBIDDEN, "User disabled", user, device)
    aor_user = aor_user_part(inp.aor)
    if aor_user not in {user.alias, user.extension, reg.digest_username, user.e164}:
        return RegisterDecision(
            Outcome.FORBIDDEN, "Address of record does not belong to you", user, device
        )

    mine = [b for b in existing if b.device_id == device.id]
    if inp.remove_all:
        # §10.3 step 6: a binding from the same Call-ID goes only for a higher CSeq.
        if any(_out_of_order(b, inp) for b in mine):
            return RegisterDecision(Outcome.OUT_OF_ORDER, "Out-of-order CSeq", user, device)
        return RegisterDecision(Outcome.OK, "", user, device, removals=mine)

    upserts: list[Binding] = []
    removals: list[Binding] = []
    for c in inp.contacts:
        # RFC 3261 §10.3 step 7: 423 when a non-zero expiry is below the minimum.
        if 0 < c.expires < settings.min_expires:
            return RegisterDecision(
                Outcome.INTERVAL_TOO_BRIEF,
                "Interval Too Brief",
                user,
                device,
                min_expires=settings.min_expires,
            )
    for c in inp.contacts:
        current = next((b for b in mine if b.same_contact(c)), None)
        if current is not None and _out_of_order(current, inp):
            # §10.3 step 7: the same Call-ID with a CSeq not higher than the binding's is a
            # late or replayed request; "the update MUST be aborted and the request fails".
            return RegisterDecision(Outcome.OUT_OF_ORDER, "Out-of-order CSeq", user, device)
        if c.expires == 0:
            if current is not None:
                removals.append(current)
            continue
        expires = min(c.expires, settings.max_expires)
        base = current or Binding(
            id=_binding_id(user.id, device.id, c),
            user_id=user.id,
            device_id=device.id,
            aor=inp.aor,
            contact_uri=c.uri,
            source_host="",
            source_port=0,
            transport="",
            sidecar="",
            user_agent="",
            q_milli=0,
            call_id="",
            cseq=0,
            instance_id="",
            expire_time=0.0,
            create_time=now,
            refresh_time=now,
        )
        # A refresh carries where the handset is now (it may have moved behind its NAT).
        upserts.append(
            base.with_changes(
                contact_uri=c.uri,
                source_host=inp.source.host,
                source_port=inp.source.port,
                transport=inp.source.transport.value,
                sidecar=inp.sidecar,
                user_agent=inp.user_agent,
                q_milli=c.q_milli,
                call_id=inp.call_id,
                cseq=inp.cseq,
                instance_id=c.instance_id,
                expire_time=now + expires,
                refresh_time=now,
            )
        )
    kept = {b.id for b in mine} - {b.id for b in removals}
    total = len(kept | {b.id for b in upserts})
    limit = reg.max_bindings or settings.max_bindings_per_device
    if total > limit:
        return RegisterDecision(
            Outcome.TOO_MANY_BINDINGS, f"Too many bindings (at most {limit})", user, device
        )
    return RegisterDecision(Outcome.OK, "", user, device, upserts=upserts, removals=removals)


def _out_of_order(binding: Binding, inp: RegisterInput) -> bool:
    return bool(inp.call_id) and binding.call_id == inp.call_id and inp.cseq <= binding.cseq


def new_id() -> str:
    return secrets.token_hex(8)
