"""Server-wide settings: defaults, validation, persistence as one JSON document."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields, replace
from ipaddress import ip_network
from typing import Any

import phonenumbers
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .errors import FieldViolation, InvalidArgument
from .routing.codes import DEFAULT_CODES, CodeError, CodeTable
from .store.db import Database

_KEY = "server"


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


def validate(settings: ServerSettings) -> None:
    """Raise InvalidArgument naming every bad field (`settings.<field>`)."""
    v: list[FieldViolation] = []

    def bad(name: str, why: str) -> None:
        v.append(FieldViolation(f"settings.{name}", why))

    if not settings.sip_domain or any(c in settings.sip_domain for c in ' @:;<>"\r\n'):
        bad("sip_domain", "must be a host name like example.com")
    if not settings.realm or any(c in settings.realm for c in '"\\\r\n'):
        bad("realm", "must be non-empty without quotes, backslashes or line breaks")
    try:
        CodeTable.from_list(list(settings.presence_codes))
    except CodeError as exc:
        bad("presence_codes", str(exc))
    ranges = {
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
        "default_channel_limit": (1, 100_000),
    }
    for name, (lo, hi) in ranges.items():
        value = getattr(settings, name)
        if not lo <= value <= hi:
            bad(name, f"must be {lo}-{hi}")
    if settings.min_expires > settings.max_expires:
        bad("min_expires", "must not exceed max_expires")
    if not settings.min_expires <= settings.default_expires <= settings.max_expires:
        bad("default_expires", "must lie between min_expires and max_expires")
    for i, policy in enumerate(settings.sidecars):
        if not policy.name:
            bad(f"sidecars[{i}].name", "required")
        for j, net in enumerate(policy.allowed_networks):
            try:
                ip_network(net, strict=False)
            except ValueError:
                bad(f"sidecars[{i}].allowed_networks[{j}]", "must be a CIDR like 10.10.0.0/16")
    if settings.default_region and settings.default_region not in phonenumbers.SUPPORTED_REGIONS:
        bad(
            "default_region",
            "must be a region code like DE (national and emergency numbers need it)",
        )
    trunk = settings.upstream_trunk
    if trunk.allowed_pattern:
        try:
            re.compile(trunk.allowed_pattern)
        except re.error as exc:
            bad("upstream_trunk.allowed_pattern", f"not a regular expression: {exc}")
    if trunk.enabled:
        host, _, port = trunk.address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            bad("upstream_trunk.address", "must be HOST:PORT when the trunk is enabled")
        if not trunk.sidecar:
            bad("upstream_trunk.sidecar", "name the sidecar that carries trunk calls")
    if v:
        raise InvalidArgument(v)


class SettingsStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.current = ServerSettings()

    async def load(self) -> None:
        async with self.db.engine.connect() as conn:
            raw = (
                await conn.execute(text("SELECT value FROM settings WHERE key=:k"), {"k": _KEY})
            ).scalar()
        if raw is not None:
            self.current = ServerSettings.from_dict(json.loads(raw))

    async def save(self, settings: ServerSettings) -> ServerSettings:
        validate(settings)
        value = json.dumps(settings.to_dict())

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(
                text(
                    "INSERT INTO settings (key, value) VALUES (:k, :v) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                ),
                {"k": _KEY, "v": value},
            )

        await self.db.submit(write)
        self.current = settings
        return settings

    def with_updates(self, **changes: Any) -> ServerSettings:
        return replace(self.current, **changes)
