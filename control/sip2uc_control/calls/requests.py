"""What sidecars tell the call layer about handsets' calls, and what it answers."""

from __future__ import annotations

from dataclasses import dataclass

from sip2uc_core.sip.digest import Credentials
from sip2uc_core.stream_stats import StreamStats

from .model import LegState, MediaInfo


@dataclass(frozen=True)
class InviteInput:
    sidecar: str
    leg_id: str
    credentials: Credentials | None
    source_host: str
    source_port: int
    request_uri: str
    from_uri: str
    from_display_name: str
    to_uri: str
    offer: MediaInfo | None


@dataclass(frozen=True)
class InviteOutcome:
    disposition: str  # "routing" | "reject" | "unauthorized" | "feedback"
    call_id: str = ""
    status: int = 0
    reason: str = ""
    retry_after: int = 0
    tone_ok: bool = True


@dataclass(frozen=True)
class LegReport:
    sidecar: str
    call_id: str
    leg_id: str
    state: LegState | None
    status: int = 0
    reason: str = ""
    media: MediaInfo | None = None
    dtmf_digits: str = ""
    stats: tuple[StreamStats, ...] = ()
    direction: str = ""


@dataclass(frozen=True)
class LiveLeg:
    """A leg a sidecar reports carrying when its session starts (docs/calls.md,
    "Reconciliation")."""

    call_id: str
    leg_id: str
    caller: bool
    established: bool
    party: str  # the caller's digest username, or the To URI of a leg we asked for
    media: MediaInfo | None
    direction: str = "sendrecv"
