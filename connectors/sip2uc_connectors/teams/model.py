"""The Teams bridge's own vocabulary: what sip2uc asks it to show, what it saw in Teams, its health.

These types are independent of the sip2uc API's generated types and of Graph's strings, so the
framework maps its presence records to them in one place and the Graph mapping
(`mapping.py`) is data over them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Availability(enum.StrEnum):
    """A sip2uc presence state, as the bridge distinguishes them."""

    AVAILABLE = "available"
    # A call to or from the user is ringing (sip2uc activity RINGING).
    RINGING = "ringing"
    # On the phone: a connected call on one of the user's handsets.
    IN_A_CALL = "in-a-call"
    BUSY = "busy"
    DO_NOT_DISTURB = "do-not-disturb"
    BE_RIGHT_BACK = "be-right-back"
    AWAY = "away"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundPresence:
    """The latest sip2uc state of one user, to be shown in Teams.

    `automatic` is what the handsets say (registration and calls: AVAILABLE, RINGING, IN_A_CALL or
    OFFLINE) and drives the bridge's own presence session for the user. `manual` is a state the
    user chose (a presence code, the API, the CLI: DO_NOT_DISTURB, AWAY, BE_RIGHT_BACK, BUSY,
    OFFLINE to appear offline, ...) and becomes the user's preferred presence in Teams, which
    overrides every session; None clears it.
    """

    user_id: str
    """The user's Microsoft Entra object id (a GUID); polling needs it."""
    automatic: Availability
    manual: Availability | None = None

    def __post_init__(self) -> None:
        if (
            not self.user_id
            or any(c in self.user_id for c in "/?#\\")
            or self.user_id.strip() != self.user_id
        ):
            raise ValueError(f"user_id {self.user_id!r} is not an Entra object id or UPN")


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundPresence:
    """What Teams shows for a user when it is not what the bridge published.

    `availability` is None when Teams shows what the bridge published (or a state that imposes
    nothing, such as Available): any state taken from Teams earlier should be cleared. The first
    observation of each user is always reported, so a restarted bridge clears stale states.
    """

    user_id: str
    availability: Availability | None
    teams_availability: str
    teams_activity: str


class ConnectionState(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeStatus:
    state: ConnectionState
    last_error: str | None
    """The last failure, without secrets or tokens; kept after recovery for diagnosis."""
    throttled_until: datetime | None
    """While Graph asked the bridge to wait (429/503/504), when it may send again."""
    pending_users: int
    """Users whose latest state is not yet in Teams."""
    users: int
    """Users the bridge has been given."""
