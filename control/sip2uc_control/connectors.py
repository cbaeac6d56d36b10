"""Connectors as the control plane holds them: configuration, secrets, status and sessions.

The control plane does not run bridges; it keeps what they need. A connector's kind-specific
configuration is kept as a JSON-able mapping (the API layer checks it), so a new field of a
kind's configuration needs no change here. Secrets (a SIP digest password, an OAuth client
secret) cannot be hashed: a bridge must present them. They are kept apart from the rest,
never returned by the resource, never logged (``repr=False``), and handed out only to the
process that claims the connector.

A **session** makes sure one process at a time runs a connector's bridge: `claim` gives a
random token that lapses `LEASE_SECONDS` after the last status report. Sessions live in memory
only; after a control-plane restart the runner's next call fails and it claims again.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .errors import FailedPrecondition, FieldViolation

ID_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
MAX_DISPLAY_NAME = 128
MAX_STATE_KEY = 512
MAX_STATE_VALUE = 4096
MAX_STATE_ITEMS = 10_000
MAX_RUNNER = 200
MAX_ERROR_TEXT = 1000
#: A session lapses this long after its last status report; bridges report every few seconds.
LEASE_SECONDS = 30.0


class ConnectorKind(StrEnum):
    SIP_PRESENCE = "sip_presence"
    TEAMS = "teams"


class ConnectorState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorStatus:
    """What a bridge last reported (times are epoch seconds; 0 = never)."""

    state: ConnectorState = ConnectorState.CONNECTING
    last_error: str = ""
    lag_seconds: float = 0.0
    users_mapped: int = 0
    last_sync_time: float = 0.0
    runner: str = ""
    report_time: float = 0.0
    changes_out: int = 0
    changes_in: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "last_error": self.last_error,
            "lag_seconds": self.lag_seconds,
            "users_mapped": self.users_mapped,
            "last_sync_time": self.last_sync_time,
            "runner": self.runner,
            "report_time": self.report_time,
            "changes_out": self.changes_out,
            "changes_in": self.changes_in,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConnectorStatus:
        try:
            state = ConnectorState(data.get("state", "connecting"))
        except ValueError:
            state = ConnectorState.CONNECTING
        return cls(
            state=state,
            last_error=str(data.get("last_error", "")),
            lag_seconds=float(data.get("lag_seconds", 0.0)),
            users_mapped=int(data.get("users_mapped", 0)),
            last_sync_time=float(data.get("last_sync_time", 0.0)),
            runner=str(data.get("runner", "")),
            report_time=float(data.get("report_time", 0.0)),
            changes_out=int(data.get("changes_out", 0)),
            changes_in=int(data.get("changes_in", 0)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Connector:
    id: str
    kind: ConnectorKind
    #: The kind's configuration without secrets, JSON-able (the API's field names).
    settings: Mapping[str, Any]
    #: Secret name -> value; never returned by the API, never logged.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    display_name: str = ""
    external: bool = False
    disabled: bool = False
    status: ConnectorStatus = field(default_factory=ConnectorStatus)
    create_time: float = 0.0
    update_time: float = 0.0

    @property
    def name(self) -> str:
        return f"connectors/{self.id}"


@dataclass(frozen=True, slots=True)
class Session:
    token: str = field(repr=False)
    runner: str
    expires_at: float


def connector_id(ref: str) -> str:
    """The id in `connectors/{id}` or a bare id."""
    return ref.strip().removeprefix("connectors/")


def validate_connector(connector: Connector, prefix: str = "connector") -> list[FieldViolation]:
    out: list[FieldViolation] = []
    if not ID_RE.match(connector.id):
        out.append(
            FieldViolation(
                "connector_id", "1-63 characters: a lowercase letter, then letters, digits, '-'"
            )
        )
    if len(connector.display_name) > MAX_DISPLAY_NAME:
        out.append(
            FieldViolation(f"{prefix}.display_name", f"at most {MAX_DISPLAY_NAME} characters")
        )
    if any(ord(ch) < 0x20 for ch in connector.display_name):
        out.append(FieldViolation(f"{prefix}.display_name", "must not contain control characters"))
    return out


def validate_state_changes(
    upserts: Mapping[str, bytes], deletes: list[str]
) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    if len(upserts) > MAX_STATE_ITEMS:
        out.append(FieldViolation("upserts", f"at most {MAX_STATE_ITEMS} per request"))
    if len(deletes) > MAX_STATE_ITEMS:
        out.append(FieldViolation("deletes", f"at most {MAX_STATE_ITEMS} per request"))
    for key, value in upserts.items():
        if not key or len(key) > MAX_STATE_KEY:
            out.append(FieldViolation("upserts.key", f"1-{MAX_STATE_KEY} characters"))
            break
        if len(value) > MAX_STATE_VALUE:
            out.append(FieldViolation("upserts.value", f"at most {MAX_STATE_VALUE} bytes"))
            break
    return out


class SessionTable:
    """Who runs which connector's bridge right now (see the module docstring)."""

    def __init__(self, lease: float = LEASE_SECONDS) -> None:
        self.lease = lease
        self._sessions: dict[str, Session] = {}

    def claim(self, connector: str, runner: str, now: float) -> Session:
        held = self._sessions.get(connector)
        if held is not None and held.expires_at > now and held.runner != runner:
            raise FailedPrecondition(
                f"connectors/{connector} is run by {held.runner} (its session lapses "
                f"{held.expires_at - now:.0f}s after its last report)",
                subject=f"connectors/{connector}",
                kind="CONNECTOR_CLAIMED",
            )
        session = Session(secrets.token_urlsafe(24), runner, now + self.lease)
        self._sessions[connector] = session
        return session

    def check(self, connector: str, token: str, now: float) -> Session:
        held = self._sessions.get(connector)
        if held is None or not secrets.compare_digest(held.token, token):
            raise FailedPrecondition(
                f"connectors/{connector}: the session is not (or no longer) valid; claim again",
                subject=f"connectors/{connector}",
                kind="CONNECTOR_SESSION",
            )
        if held.expires_at <= now:
            del self._sessions[connector]
            raise FailedPrecondition(
                f"connectors/{connector}: the session lapsed; claim again",
                subject=f"connectors/{connector}",
                kind="CONNECTOR_SESSION",
            )
        return held

    def renew(self, connector: str, token: str, now: float) -> Session:
        held = self.check(connector, token, now)
        renewed = Session(held.token, held.runner, now + self.lease)
        self._sessions[connector] = renewed
        return renewed

    def end(self, connector: str) -> None:
        self._sessions.pop(connector, None)

    def lapse(self, now: float) -> list[str]:
        """End the sessions that lapsed by `now`; the connectors they were for."""
        gone = [c for c, s in self._sessions.items() if s.expires_at <= now]
        for connector in gone:
            del self._sessions[connector]
        return gone

    def holder(self, connector: str, now: float) -> Session | None:
        held = self._sessions.get(connector)
        return held if held is not None and held.expires_at > now else None
