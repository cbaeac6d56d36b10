"""Trunks to the UC platform as the control plane holds them: configuration, secret and state.

A trunk is carried by one sidecar, which registers to it, checks it with OPTIONS and reports
what it sees (`TrunkHealth`). The control plane keeps the configuration (the password apart:
it cannot be hashed, since the sidecar must answer the trunk's challenges with it; never
returned by the resource and never logged), picks trunks for outbound calls (`candidates`:
pattern, priority, state and channel limit) and writes numbers the way each trunk wants them
(`to_trunk_number`, `from_trunk_number`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import phonenumbers

from .enrollments import name_problem
from .errors import FieldViolation

ID_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
MAX_DISPLAY_NAME = 128
MAX_ADDRESS = 253
MAX_PATTERN = 256
MAX_USERNAME = 128
MAX_PASSWORD = 256
MAX_NETWORKS = 32
MAX_CA_PEM = 64 * 1024
DEFAULT_REGISTER_EXPIRES = 600
DEFAULT_OPTIONS_INTERVAL = 30
CODECS = ("PCMU", "PCMA")
#: Headers a trunk leg may carry beside the B2BUA's own (identity policy).
IDENTITY_HEADERS = ("P-Asserted-Identity", "Diversion", "History-Info")
#: The id the legacy `upstream_trunk` setting becomes.
UPSTREAM_ID = "upstream"


class TransportName(StrEnum):
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


class NumberFormat(StrEnum):
    E164 = "e164"
    E164_DIGITS = "e164_digits"
    NATIONAL = "national"


class Reachability(StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


class Registration(StrEnum):
    NOT_REQUIRED = "not_required"
    REGISTERED = "registered"
    UNREGISTERED = "unregistered"


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityPolicy:
    caller_e164: bool = True
    p_asserted_identity: bool = False
    diversion: bool = False
    history_info: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkHealth:
    """What the carrying sidecar last reported (times are epoch seconds; 0 = never)."""

    state: Reachability = Reachability.UNKNOWN
    registration: Registration = Registration.UNREGISTERED
    last_error: str = ""
    change_time: float = 0.0
    resolved_addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Trunk:
    id: str
    address: str
    sidecar: str
    port: int = 0
    transport: TransportName = TransportName.UDP
    display_name: str = ""
    username: str = ""
    #: Digest password; never returned by the API, never logged.
    password: str = field(default="", repr=False)
    register: bool = False
    register_expires: int = 0
    outbound_pattern: str = ""
    inbound_pattern: str = ""
    priority: int = 0
    number_format: NumberFormat = NumberFormat.E164
    region: str = ""
    codecs: tuple[str, ...] = ()
    channel_limit: int = 0
    identity: IdentityPolicy = field(default_factory=IdentityPolicy)
    allow_relay: bool = False
    options_interval_seconds: int = 0
    inbound_networks: tuple[str, ...] = ()
    tls_ca_pem: str = ""
    disabled: bool = False
    create_time: float = 0.0
    update_time: float = 0.0

    @property
    def name(self) -> str:
        return f"trunks/{self.id}"

    @property
    def default_port(self) -> int:
        return 5061 if self.transport is TransportName.TLS else 5060

    @property
    def hostport(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port or self.default_port}"

    def settings_dict(self) -> dict[str, Any]:
        """Everything but id, secret and times, JSON-able (the store's `settings` column)."""
        return {
            "address": self.address,
            "sidecar": self.sidecar,
            "port": self.port,
            "transport": self.transport.value,
            "display_name": self.display_name,
            "username": self.username,
            "register": self.register,
            "register_expires": self.register_expires,
            "outbound_pattern": self.outbound_pattern,
            "inbound_pattern": self.inbound_pattern,
            "priority": self.priority,
            "number_format": self.number_format.value,
            "region": self.region,
            "codecs": list(self.codecs),
            "channel_limit": self.channel_limit,
            "identity": {
                "caller_e164": self.identity.caller_e164,
                "p_asserted_identity": self.identity.p_asserted_identity,
                "diversion": self.identity.diversion,
                "history_info": self.identity.history_info,
            },
            "allow_relay": self.allow_relay,
            "options_interval_seconds": self.options_interval_seconds,
            "inbound_networks": list(self.inbound_networks),
            "tls_ca_pem": self.tls_ca_pem,
            "disabled": self.disabled,
        }

    @classmethod
    def from_settings(
        cls,
        trunk_id: str,
        data: Mapping[str, Any],
        *,
        password: str = "",
        create_time: float = 0.0,
        update_time: float = 0.0,
    ) -> Trunk:
        identity = data.get("identity") or {}
        return cls(
            id=trunk_id,
            address=str(data.get("address", "")),
            sidecar=str(data.get("sidecar", "")),
            port=int(data.get("port", 0)),
            transport=TransportName(data.get("transport", "udp")),
            display_name=str(data.get("display_name", "")),
            username=str(data.get("username", "")),
            password=password,
            register=bool(data.get("register", False)),
            register_expires=int(data.get("register_expires", 0)),
            outbound_pattern=str(data.get("outbound_pattern", "")),
            inbound_pattern=str(data.get("inbound_pattern", "")),
            priority=int(data.get("priority", 0)),
            number_format=NumberFormat(data.get("number_format", "e164")),
            region=str(data.get("region", "")),
            codecs=tuple(data.get("codecs", ())),
            channel_limit=int(data.get("channel_limit", 0)),
            identity=IdentityPolicy(
                caller_e164=bool(identity.get("caller_e164", True)),
                p_asserted_identity=bool(identity.get("p_asserted_identity", False)),
                diversion=bool(identity.get("diversion", False)),
                history_info=bool(identity.get("history_info", False)),
            ),
            allow_relay=bool(data.get("allow_relay", False)),
            options_interval_seconds=int(data.get("options_interval_seconds", 0)),
            inbound_networks=tuple(data.get("inbound_networks", ())),
            tls_ca_pem=str(data.get("tls_ca_pem", "")),
            disabled=bool(data.get("disabled", False)),
            create_time=create_time,
            update_time=update_time,
        )


def trunk_id(ref: str) -> str:
    """The id in `trunks/{id}` or a bare id."""
    return ref.strip().removeprefix("trunks/")


def validate_trunk(trunk: Trunk, prefix: str = "trunk") -> list[FieldViolation]:
    out: list[FieldViolation] = []

    def bad(path: str, message: str) -> None:
        out.append(FieldViolation(f"{prefix}.{path}" if path else "trunk_id", message))

    if not ID_RE.match(trunk.id):
        bad("", "1-63 characters: a lowercase letter, then letters, digits, '-'")
    if not trunk.address:
        bad("address", "required: an IP address or a DNS name")
    elif len(trunk.address) > MAX_ADDRESS or not _host_ok(trunk.address):
        bad("address", "an IP address or a DNS name (no port: that is `port`)")
    if not 0 <= trunk.port <= 65535:
        bad("port", "must be 0 (the default) to 65535")
    problem = name_problem(trunk.sidecar) if trunk.sidecar else "required: the carrying sidecar"
    if problem:
        bad("sidecar", problem)
    if len(trunk.display_name) > MAX_DISPLAY_NAME or _has_control(trunk.display_name):
        bad("display_name", f"at most {MAX_DISPLAY_NAME} characters, no control characters")
    if len(trunk.username) > MAX_USERNAME or _has_control(trunk.username) or '"' in trunk.username:
        bad("username", f"at most {MAX_USERNAME} characters, no quotes or control characters")
    if len(trunk.password) > MAX_PASSWORD or _has_control(trunk.password):
        bad("password", f"at most {MAX_PASSWORD} characters, no control characters")
    if trunk.register and not trunk.username:
        bad("username", "required when the trunk is registered to")
    if trunk.register_expires and not 60 <= trunk.register_expires <= 86400:
        bad("register_expires", "must be 0 (600) or 60-86400 seconds")
    if trunk.options_interval_seconds and not 5 <= trunk.options_interval_seconds <= 3600:
        bad("options_interval_seconds", "must be 0 (30) or 5-3600 seconds")
    for path, pattern in (
        ("outbound_pattern", trunk.outbound_pattern),
        ("inbound_pattern", trunk.inbound_pattern),
    ):
        if len(pattern) > MAX_PATTERN:
            bad(path, f"at most {MAX_PATTERN} characters")
        elif pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                bad(path, f"not a regular expression: {exc}")
    if trunk.region and trunk.region not in phonenumbers.SUPPORTED_REGIONS:
        bad("region", "an ISO 3166 region code such as DE")
    if trunk.number_format is NumberFormat.NATIONAL and not trunk.region:
        bad("region", "required for national numbers (or set the server's default region)")
    if len(trunk.codecs) > len(CODECS) or any(c not in CODECS for c in trunk.codecs):
        bad("codecs", "PCMU and/or PCMA, in order of preference")
    elif len(set(trunk.codecs)) != len(trunk.codecs):
        bad("codecs", "each codec once")
    if not 0 <= trunk.channel_limit <= 100_000:
        bad("channel_limit", "must be 0 (no limit) to 100000")
    if not 0 <= trunk.priority <= 1000:
        bad("priority", "must be 0-1000")
    if len(trunk.inbound_networks) > MAX_NETWORKS:
        bad("inbound_networks", f"at most {MAX_NETWORKS}")
    for i, network in enumerate(trunk.inbound_networks):
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            bad(f"inbound_networks[{i}]", "must be a CIDR like 192.0.2.10/32")
    if len(trunk.tls_ca_pem) > MAX_CA_PEM:
        bad("tls_ca_pem", "at most 64 KiB")
    elif trunk.tls_ca_pem and "-----BEGIN CERTIFICATE-----" not in trunk.tls_ca_pem:
        bad("tls_ca_pem", "PEM certificates (-----BEGIN CERTIFICATE-----)")
    return out


_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _host_ok(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return all(_LABEL.match(label) for label in host.rstrip(".").split("."))


def _has_control(text: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


# --- numbers ------------------------------------------------------------------------------------


def to_trunk_number(e164: str, fmt: NumberFormat, region: str) -> str:
    """An E.164 number as the trunk wants it dialled."""
    if fmt is NumberFormat.E164 or not e164.startswith("+"):
        return e164
    if fmt is NumberFormat.E164_DIGITS:
        return e164[1:]
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    if region and phonenumbers.region_code_for_number(parsed) != region:
        # Abroad from the trunk's region: only the international form is dialable.
        return e164
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return re.sub(r"[^0-9+]", "", str(national))


def from_trunk_number(number: str, fmt: NumberFormat, region: str) -> str:
    """A number the trunk sent, written so the dial plan can read it (E.164 with '+' where it
    is one; an extension or anything else as it came)."""
    digits = number.strip()
    if fmt is NumberFormat.E164_DIGITS and digits.isdigit() and len(digits) > 6:
        return f"+{digits}"
    if fmt is NumberFormat.NATIONAL and region and digits.isdigit():
        try:
            parsed = phonenumbers.parse(digits, region)
        except phonenumbers.NumberParseException:
            return digits
        if phonenumbers.is_possible_number(parsed):
            return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
    return digits


# --- choosing trunks ----------------------------------------------------------------------------


def candidates(
    trunks: Iterable[Trunk],
    e164: str,
    health: Mapping[str, TrunkHealth],
    busy: Mapping[str, int],
    connected: Mapping[str, bool],
    *,
    emergency: bool = False,
) -> tuple[list[Trunk], str]:
    """The trunks to try for `e164`, in order; with an empty list, why there is none.

    A trunk takes the number when its outbound pattern matches (full match; empty: any), and
    every trunk takes an emergency number; trunks that are disabled, down, on a sidecar that is
    not connected, or at their channel limit are skipped. Lower priority first, then id.
    """
    matching = [
        t
        for t in trunks
        if not t.disabled
        and (
            emergency
            or not t.outbound_pattern
            or re.fullmatch(t.outbound_pattern, e164) is not None
        )
    ]
    if not matching:
        return [], "number not allowed on any trunk"
    usable = [
        t
        for t in matching
        if connected.get(t.sidecar, False)
        and health.get(t.id, TrunkHealth()).state is not Reachability.DOWN
        and (not t.channel_limit or busy.get(t.id, 0) < t.channel_limit)
    ]
    if not usable:
        return [], "every trunk for the number is down or full"
    return sorted(usable, key=lambda t: (t.priority, t.id)), ""
