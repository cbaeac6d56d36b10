"""Graph's presence model for one user, as documented, on the stand-in's clock.

https://learn.microsoft.com/graph/api/presence-setpresence and
https://learn.microsoft.com/graph/cloud-communications-manage-presence-state:

- A user has presence sessions: one per Teams client and one per application. The shown state
  aggregates them: user-preferred presence > sessions; among sessions
  DoNotDisturb > Busy > Available > Away.
- An Available application session not re-posted fades: after 5 minutes to the idle state (the
  documentation writes "Available/AvailableInactive"; the presence resource's values for it are
  AvailableIdle/Inactive), after another 5 minutes to Away/Away.
- A session expires after its expirationDuration and is then gone; with no session left the user
  shows Offline.
- Preferred presence "takes effect only when at least one presence session exists"; without an
  expirationDuration it lasts one day (DoNotDisturb, Busy) or seven days (others).
"""

from __future__ import annotations

from dataclasses import dataclass, field

TIMEOUT = 300.0
_RANK = {
    "DoNotDisturb": 5,
    "Busy": 4,
    "BusyIdle": 4,
    "Available": 3,
    "AvailableIdle": 3,
    "BeRightBack": 2,
    "Away": 1,
}
OFFLINE = ("Offline", "Offline")


@dataclass(slots=True)
class Session:
    availability: str
    activity: str
    posted_at: float
    expires_at: float
    fades: bool = True
    """Application sessions time out when not re-posted; a Teams client's session (set through
    the stand-in's admin hook) stands for a user actively signed in and does not."""

    def shown(self, now: float) -> tuple[str, str]:
        if self.fades and self.availability == "Available":
            idle = now - self.posted_at
            if idle >= 2 * TIMEOUT:
                return ("Away", "Away")
            if idle >= TIMEOUT:
                return ("AvailableIdle", "Inactive")
        return (self.availability, self.activity)


@dataclass(slots=True)
class UserPresence:
    sessions: dict[str, Session] = field(default_factory=dict)
    preferred: tuple[str, str] | None = None
    preferred_expires_at: float = 0.0

    def drop_expired(self, now: float) -> None:
        for key in [k for k, s in self.sessions.items() if s.expires_at <= now]:
            del self.sessions[key]
        if self.preferred is not None and self.preferred_expires_at <= now:
            self.preferred = None

    def shown(self, now: float) -> tuple[str, str]:
        self.drop_expired(now)
        if not self.sessions:
            return OFFLINE
        if self.preferred is not None:
            return self.preferred
        states = [s.shown(now) for s in self.sessions.values()]
        return max(states, key=lambda pair: _RANK.get(pair[0], 0))

    def set_preferred(self, pair: tuple[str, str], now: float, duration: float | None) -> None:
        if duration is None:
            duration = 86400.0 if pair[0] in ("DoNotDisturb", "Busy") else 7 * 86400.0
        self.preferred = pair
        self.preferred_expires_at = now + duration
