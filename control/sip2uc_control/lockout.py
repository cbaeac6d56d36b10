"""Account lockout: guessing one account's password from many sources is stopped here.

A sidecar bans a source and user name pair after repeated failures, and a whole source that
tries many user names; a guesser with a few addresses (or several sidecars) stays below both. The
control plane sees every login of an account, wherever it comes from, so it counts an account's
failures across all sources: `LockoutPolicy.threshold` failures within `window` seconds lock the
account's digest for `lock_seconds`. While locked, a login from anywhere but the sources where the
account is registered fails whatever the password, so the handsets already in service keep
refreshing while the guesser learns nothing more.

Pure: callers pass `now`. Only accounts that exist are counted (memory is bounded by the users),
and a locked account answers exactly like a wrong password (no enumeration).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["AccountLock", "AccountLockout", "LockoutPolicy"]


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    threshold: int = 20
    window: float = 300.0
    lock_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class AccountLock:
    """The digest of `user` (a digest user name) is locked until `until`."""

    user: str
    #: Why, for people: "20 failed logins from 6 sources in 300 s".
    reason: str
    start: float
    until: float


class AccountLockout:
    def __init__(self, policy: LockoutPolicy | None = None) -> None:
        self.policy = policy or LockoutPolicy()
        # user -> (time, source) of its failures within the window, oldest first.
        self._failures: dict[str, deque[tuple[float, str]]] = {}
        self._locks: dict[str, AccountLock] = {}

    def locked(self, user: str, now: float) -> bool:
        lock = self._locks.get(user)
        if lock is None:
            return False
        if now >= lock.until:
            del self._locks[user]
            return False
        return True

    def failed(self, user: str, source: str, now: float) -> AccountLock | None:
        """Count one failed login of `user` from `source`; the lock it causes, if any."""
        policy = self.policy
        if policy.threshold <= 0 or self.locked(user, now):
            return None
        failures = self._failures.setdefault(user, deque())
        failures.append((now, source))
        while failures and failures[0][0] <= now - policy.window:
            failures.popleft()
        while len(failures) > policy.threshold:
            failures.popleft()
        if len(failures) < policy.threshold:
            return None
        sources = len({source for _at, source in failures})
        lock = AccountLock(
            user,
            f"{len(failures)} failed logins from {sources} source{'s' if sources != 1 else ''} "
            f"in {policy.window:g} s",
            now,
            now + policy.lock_seconds,
        )
        self._locks[user] = lock
        del self._failures[user]
        return lock

    def forget(self, user: str) -> None:
        """The account is gone (deleted, or its user name changed)."""
        self._failures.pop(user, None)
        self._locks.pop(user, None)

    def lift(self, user: str) -> AccountLock | None:
        self._failures.pop(user, None)
        return self._locks.pop(user, None)

    def active(self, now: float) -> list[AccountLock]:
        for user in [u for u, lock in self._locks.items() if lock.until <= now]:
            del self._locks[user]
        return sorted(self._locks.values(), key=lambda lock: lock.start, reverse=True)
