"""Server-wide settings: defaults and validation (stored as one JSON document by `store/settings.py`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from ipaddress import ip_network
from typing import Any

import phonenumbers

from .enrollments import name_problem
from .errors import FieldViolation, InvalidArgument
from .routing.codes import DEFAULT_CODES, CodeError, CodeTable


@dataclass(frozen=True)
class SidecarPolicy:
    name: str
    allowed_networks: tuple[str, ...] = ()
    channel_limit: int = 0


@dataclass(frozen=True)
class UpstreamTrunk:
    enabled: bool = False
    address: str = ""
    sidecar: str = ""
    allowed_pattern: str = ""


@dataclass(frozen=True)
class ServerSettings:
    sip_domain: str = "sip2uc.local"
    realm: str = "sip2uc"
    presence_codes: tuple[dict[str, Any], ...] = tuple(DEFAULT_CODES.to_list())
    media_timeout_seconds: int = 60
    no_answer_timeout_seconds: int = 30
    min_expires: int = 60
    max_expires: int = 7200
    default_expires: int = 3600
    max_bindings_per_device: int = 5
    # Failed logins of one user name from one source in the window ban that pair; this many
    # different user names failing from one source ban the source (never one that logs in).
    ban_threshold: int = 10
    ban_window_seconds: int = 60
    ban_seconds: int = 300
    ban_user_names: int = 10
    # Failed logins of one account from any sources in the window lock its digest, except for
    # the sources where it is registered.
    account_failure_threshold: int = 20
    account_failure_window_seconds: int = 300
    account_lock_seconds: int = 300
    sidecar_grace_seconds: int = 120
    # Two legs per call: 1,600 legs is the 800 concurrent calls one relay process carries without
    # loss (docs/performance.md); below it, call bursts were refused while the relay had room.
    default_channel_limit: int = 1600
    sidecars: tuple[SidecarPolicy, ...] = ()
    upstream_trunk: UpstreamTrunk = field(default_factory=UpstreamTrunk)
    default_region: str = ""
    # Short messages (docs/handset-features.md): the body limit keeps a MESSAGE inside one UDP
    # datagram (RFC 3428 §7: 1,300 bytes for the whole request without congestion control).
    message_max_bytes: int = 1024
    message_rate_per_minute: int = 30
    message_burst: int = 10
    message_retention_days: int = 30
    message_history_max: int = 100_000

    @property
    def code_table(self) -> CodeTable:
        return CodeTable.from_list(list(self.presence_codes))

    @property
    def trunk_pattern(self) -> re.Pattern[str] | None:
        """The upstream trunk's allowed numbers, compiled (validated on save)."""
        pattern = self.upstream_trunk.allowed_pattern
        return re.compile(pattern) if pattern else None

    def policy(self, sidecar: str) -> SidecarPolicy:
        return next((p for p in self.sidecars if p.name == sidecar), SidecarPolicy(sidecar))

    def channel_limit(self, sidecar: str) -> int:
        return self.policy(sidecar).channel_limit or self.default_channel_limit

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["presence_codes"] = list(self.presence_codes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerSettings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "presence_codes" in values:
            values["presence_codes"] = tuple(values["presence_codes"])
        if "sidecars" in values:
            values["sidecars"] = tuple(
                SidecarPolicy(
                    name=s["name"],
                    allowed_networks=tuple(s.get("allowed_networks", ())),
                    channel_limit=int(s.get("channel_limit", 0)),
                )
                for s in values["sidecars"]
            )
        if "upstream_trunk" in values:
            values["upstream_trunk"] = UpstreamTrunk(**values["upstream_trunk"])
        return cls(**values)


# Bounds of every setting (docs/configuration.md lists them). Text that goes into SIP messages
# is bounded so that a challenge still fits one UDP datagram (RFC 3261 §18.1.1: 1,300 bytes).
REALM_MAX = 128
DOMAIN_MAX = 253  # a DNS name (RFC 1035)
PRESENCE_CODES_MAX = 100
SIDECAR_POLICIES_MAX = 1000
NETWORKS_PER_SIDECAR_MAX = 100
TRUNK_ADDRESS_MAX = 261  # a DNS name, ':' and a port
TRUNK_PATTERN_MAX = 256
CHANNEL_LIMIT_MAX = 100_000
RANGES: dict[str, tuple[int, int]] = {
    "media_timeout_seconds": (5, 3600),
    "no_answer_timeout_seconds": (5, 300),
    "min_expires": (10, 3600),
    "max_expires": (60, 86400),
    "default_expires": (10, 86400),
    "max_bindings_per_device": (1, 100),
    "ban_threshold": (1, 10_000),
    "ban_window_seconds": (1, 86400),
    "ban_seconds": (1, 86400 * 7),
    "ban_user_names": (2, 10_000),
    "account_failure_threshold": (1, 100_000),
    "account_failure_window_seconds": (1, 86400),
    "account_lock_seconds": (1, 86400 * 7),
    "sidecar_grace_seconds": (0, 86400),
    "default_channel_limit": (1, CHANNEL_LIMIT_MAX),
    "message_max_bytes": (16, 60_000),
    "message_rate_per_minute": (1, 10_000),
    "message_burst": (1, 1000),
    "message_retention_days": (1, 3650),
    "message_history_max": (100, 10_000_000),
}
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")


def validate(settings: ServerSettings) -> None:
    """Raise InvalidArgument naming every bad field (`settings.<field>`)."""
    v: list[FieldViolation] = []

    def bad(name: str, why: str) -> None:
        v.append(FieldViolation(f"settings.{name}", why))

    domain = settings.sip_domain
    if len(domain) > DOMAIN_MAX or not _HOST_NAME.fullmatch(domain):
        bad("sip_domain", f"must be a host name like example.com, at most {DOMAIN_MAX} characters")
    realm = settings.realm
    if (
        not realm
        or len(realm) > REALM_MAX
        or not realm.isprintable()
        or any(c in realm for c in '"\\')
    ):
        bad(
            "realm",
            f"must be 1-{REALM_MAX} printable characters without quotes or backslashes",
        )
    if len(settings.presence_codes) > PRESENCE_CODES_MAX:
        bad("presence_codes", f"at most {PRESENCE_CODES_MAX} codes")
    else:
        try:
            CodeTable.from_list(list(settings.presence_codes))
        except CodeError as exc:
            bad("presence_codes", str(exc))
    for name, (lo, hi) in RANGES.items():
        value = getattr(settings, name)
        if not lo <= value <= hi:
            bad(name, f"must be {lo}-{hi}")
    if settings.min_expires > settings.max_expires:
        bad("min_expires", "must not exceed max_expires")
    if not settings.min_expires <= settings.default_expires <= settings.max_expires:
        bad("default_expires", "must lie between min_expires and max_expires")
    _validate_policies(settings.sidecars, bad)
    if settings.default_region and settings.default_region not in phonenumbers.SUPPORTED_REGIONS:
        bad(
            "default_region",
            "must be a region code like DE (national and emergency numbers need it)",
        )
    _validate_trunk(settings.upstream_trunk, bad)
    if v:
        raise InvalidArgument(v)


def _validate_policies(
    policies: tuple[SidecarPolicy, ...], bad: Callable[[str, str], None]
) -> None:
    if len(policies) > SIDECAR_POLICIES_MAX:
        bad("sidecars", f"at most {SIDECAR_POLICIES_MAX} sidecars")
        return
    seen: set[str] = set()
    for i, policy in enumerate(policies):
        problem = name_problem(policy.name)
        if problem is not None:
            bad(f"sidecars[{i}].name", problem)
        elif policy.name in seen:
            bad(f"sidecars[{i}].name", f"{policy.name!r} is named twice")
        seen.add(policy.name)
        if not 0 <= policy.channel_limit <= CHANNEL_LIMIT_MAX:
            bad(f"sidecars[{i}].channel_limit", f"must be 0 (the default) to {CHANNEL_LIMIT_MAX}")
        if len(policy.allowed_networks) > NETWORKS_PER_SIDECAR_MAX:
            bad(f"sidecars[{i}].allowed_networks", f"at most {NETWORKS_PER_SIDECAR_MAX} networks")
            continue
        for j, net in enumerate(policy.allowed_networks):
            try:
                ip_network(net, strict=False)
            except ValueError:
                bad(f"sidecars[{i}].allowed_networks[{j}]", "must be a CIDR like 10.10.0.0/16")


def _validate_trunk(trunk: UpstreamTrunk, bad: Callable[[str, str], None]) -> None:
    if len(trunk.allowed_pattern) > TRUNK_PATTERN_MAX:
        bad("upstream_trunk.allowed_pattern", f"at most {TRUNK_PATTERN_MAX} characters")
    elif trunk.allowed_pattern:
        try:
            re.compile(trunk.allowed_pattern)
        except re.error as exc:
            bad("upstream_trunk.allowed_pattern", f"not a regular expression: {exc}")
    if len(trunk.address) > TRUNK_ADDRESS_MAX:
        bad("upstream_trunk.address", f"at most {TRUNK_ADDRESS_MAX} characters")
    elif trunk.enabled:
        host, _, port = trunk.address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            bad("upstream_trunk.address", "must be HOST:PORT when the trunk is enabled")
    if trunk.sidecar:
        problem = name_problem(trunk.sidecar)
        if problem is not None:
            bad("upstream_trunk.sidecar", problem)
    elif trunk.enabled:
        bad("upstream_trunk.sidecar", "name the sidecar that carries trunk calls")
