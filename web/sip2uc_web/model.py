"""What the state view shows, as plain values (no generated API types past `convert`).

Times are seconds since the epoch (None: not set). Enumerations are the words the page shows,
e.g. availability "available" or "do not disturb", so templates print them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SidecarView:
    name: str  # without the "sidecars/" prefix
    site: str
    connected: bool
    sip_listeners: tuple[str, ...]
    rtp: str
    capacity: int
    channel_limit: int
    active_legs: int
    relay_ports_in_use: int
    version: str
    connect_time: float | None
    last_seen: float | None

    @property
    def channel_use_percent(self) -> int:
        """Share of the channel limit in use, rounded up so that any use shows (0 without a
        limit)."""
        return -(-self.active_legs * 100 // self.channel_limit) if self.channel_limit else 0


@dataclass(frozen=True, slots=True)
class RegistrationView:
    name: str  # "registrations/{id}"
    user: str  # "users/{id}"
    device_id: str
    aor: str
    contact_uri: str
    source: str  # "host:port" the REGISTER came from
    transport: str  # "udp", "tcp", "tls"
    sidecar: str
    user_agent: str
    expire_time: float | None
    create_time: float | None
    refresh_time: float | None


@dataclass(frozen=True, slots=True)
class PresenceView:
    user: str  # "users/{id}"
    extension: str
    sip_uri: str
    availability: str  # "available", "busy", "in a call", "do not disturb", ...
    activity: str  # "", "ringing", "in a call"
    source: str  # "registration", "call", "manual", "external"
    note: str
    since: float | None
    expire_time: float | None
    registered: bool


@dataclass(frozen=True, slots=True)
class StreamQuality:
    direction: str  # "rx" (from the handset) or "tx" (to it)
    packets: int
    lost: int
    jitter_ms: float
    mos: float
    codec: str


@dataclass(frozen=True, slots=True)
class LegView:
    id: str
    sidecar: str
    state: str  # "trying", "ringing", "early media", "answered", "failed", "ended"
    party: str  # "users/{id}" or a URI
    codec: str
    direction: str  # "sendrecv", "sendonly", "recvonly", "inactive"
    quality: tuple[StreamQuality, ...]


@dataclass(frozen=True, slots=True)
class CallView:
    name: str  # "calls/{id}"
    state: str  # "ringing", "connected", "ended"
    caller: str  # a user reference or a URI
    dialled: str
    callee: str  # "users/{id}" or ""
    legs: tuple[LegView, ...]
    start_time: float | None
    answer_time: float | None
    end_time: float | None
    end_reason: str
    final_status: int

    @property
    def ended(self) -> bool:
        return self.state == "ended"

    @property
    def duration(self) -> float | None:
        """Seconds from answer to end (None for an unanswered or live call)."""
        if self.answer_time is None or self.end_time is None:
            return None
        return max(0.0, self.end_time - self.answer_time)


@dataclass(frozen=True, slots=True)
class LogEntryView:
    sequence: int
    time: float | None
    severity: str  # "warning", "error", "critical"
    logger: str
    message: str
    trace_id: str


@dataclass(frozen=True, slots=True)
class ConnectorView:
    """A bridge to a UC platform with what its bridge last reported."""

    name: str  # without the "connectors/" prefix
    display_name: str
    kind: str  # "SIP presence", "Teams", or "unknown" (a kind newer than these stubs)
    target: str  # the presence server's URI, or the Teams tenant id
    state: str  # "connecting", "connected", "failed", "unknown"
    last_error: str
    lag_seconds: float | None  # None: the bridge has not said
    users_mapped: int
    last_sync_time: float | None
    runner: str
    report_time: float | None
    changes_out: int
    changes_in: int
    external: bool  # run by `sip2uc connector run` on another host
    disabled: bool


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """Whether one of the view's watch streams is following the control plane."""

    name: str  # "presence", "calls", ...
    live: bool
    problem: str  # why not live ("" when live or not started yet)
    offered: bool = True  # False: this control plane has no such stream
