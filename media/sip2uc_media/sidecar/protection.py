"""Source protection for the SIP edge: a network allow-list and bans after failed logins.

Both are pure: callers pass the source address, the user name and `now`. Memory is bounded so
that a flood of sources cannot grow the tables without limit.

Bans punish only the guilty. One handset with a wrong password must not take down the DECT base,
the multi-port adapter or the NAT it shares an address with, so failures are counted per source
*and* user name, and reaching `BanPolicy.threshold` bans only that pair. A whole source is banned
only when it fails with many different user names (`BanPolicy.user_names`): the pattern of
guessing accounts or spraying one password over many, which no honest site produces. A source that
also logs in successfully is never banned as a whole (someone there has valid credentials; its
failing users are still banned pair by pair). What counts as a failure is the caller's choice;
the sidecar counts only answers to a nonce it issued to that source, which a spoofed address
cannot produce.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Ban", "BanList", "BanPolicy", "NetworkAllowList"]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class NetworkAllowList:
    """Source networks (CIDR) a sidecar accepts requests from; empty means any source."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self._networks: tuple[IpNetwork, ...] = tuple(
            ipaddress.ip_network(n.strip(), strict=False) for n in networks if n.strip()
        )
        # Handsets are few and repeat: a small cache keeps the per-message check to a dict hit.
        self._cache: dict[str, bool] = {}

    @property
    def networks(self) -> tuple[str, ...]:
        return tuple(str(n) for n in self._networks)

    def allows(self, host: str) -> bool:
        if not self._networks:
            return True
        cached = self._cache.get(host)
        if cached is not None:
            return cached
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        allowed = any(address in network for network in self._networks)
        if len(self._cache) >= 4096:
            self._cache.clear()
        self._cache[host] = allowed
        return allowed


@dataclass(frozen=True, slots=True)
class BanPolicy:
    """When failures become bans. The defaults apply until the control plane pushes settings.

    `threshold` failures of one user name from one source within `window` seconds ban that pair
    for `ban_seconds`; `user_names` different user names failing from one source within the window
    ban the whole source. A source that logged in successfully within `trust_seconds` is never
    banned as a whole.
    """

    threshold: int = 10
    window: float = 60.0
    ban_seconds: float = 300.0
    user_names: int = 10
    trust_seconds: float = 86400.0


@dataclass(frozen=True, slots=True)
class Ban:
    """A ban in force: every request from `source`, or (with `user`) that user's from it."""

    source: str
    #: Empty: the whole source.
    user: str
    #: Why, for people: "10 failed logins in 60 s", "25 user names tried in 60 s".
    reason: str
    start: float
    until: float

    @property
    def whole_source(self) -> bool:
        return not self.user


class BanList:
    """Failed logins per source and user name, the bans they caused, and who logged in."""

    def __init__(self, policy: BanPolicy | None = None, *, capacity: int = 65536) -> None:
        self._policy = policy or BanPolicy()
        self._capacity = capacity
        # (source, user) -> failure times within the window, oldest first.
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        # source -> user name -> time of its latest failure from there.
        self._users: OrderedDict[str, dict[str, float]] = OrderedDict()
        # source -> time of its latest successful login.
        self._trusted: OrderedDict[str, float] = OrderedDict()
        self._source_bans: dict[str, Ban] = {}
        self._user_bans: dict[tuple[str, str], Ban] = {}

    @property
    def policy(self) -> BanPolicy:
        return self._policy

    def configure(self, policy: BanPolicy) -> None:
        """Apply new settings; existing counts and bans stay (a ban keeps its original end)."""
        self._policy = policy

    # -- what the edge asks ---------------------------------------------------------------------

    def is_banned(self, source: str, now: float) -> bool:
        """Whether the whole source is banned (checked for every message, before parsing)."""
        ban = self._source_bans.get(source)
        if ban is None:
            return False
        if now >= ban.until:
            del self._source_bans[source]
            return False
        return True

    @property
    def has_user_bans(self) -> bool:
        return bool(self._user_bans)

    def is_user_banned(self, source: str, user: str, now: float) -> bool:
        """Whether requests for `user` from `source` are banned."""
        if not self._user_bans:
            return False
        ban = self._user_bans.get((source, user))
        if ban is None:
            return False
        if now >= ban.until:
            del self._user_bans[(source, user)]
            return False
        return True

    # -- what the edge tells --------------------------------------------------------------------

    def record_failure(self, source: str, user: str, now: float) -> Ban | None:
        """Count one failed login of `user` from `source`; the ban it causes, if any."""
        policy = self._policy
        if policy.threshold <= 0:
            return None
        horizon = now - policy.window
        key = (source, user)
        times = self._failures.get(key)
        if times is None:
            times = self._failures[key] = deque()
        else:
            self._failures.move_to_end(key)
        times.append(now)
        while times and times[0] <= horizon:
            times.popleft()
        while len(times) > policy.threshold:
            times.popleft()
        users = self._users.get(source)
        if users is None:
            users = self._users[source] = {}
        else:
            self._users.move_to_end(source)
        users[user] = now
        for name in [name for name, at in users.items() if at <= horizon]:
            del users[name]
        if len(users) > policy.user_names:
            # Only the count matters beyond the threshold; keep the newest.
            del users[min(users, key=users.__getitem__)]
        self._bound()
        window = _seconds(policy.window)
        if (
            policy.user_names > 0
            and len(users) >= policy.user_names
            and not self._trusts(source, now)
        ):
            ban = Ban(
                source,
                "",
                f"{len(users)} user names tried in {window}",
                now,
                now + policy.ban_seconds,
            )
            self._source_bans[source] = ban
            del self._users[source]
            self._forget_pairs(source)
            self._expire_if_full(now)
            return ban
        if len(times) >= policy.threshold:
            ban = Ban(
                source,
                user,
                f"{len(times)} failed logins in {window}",
                now,
                now + policy.ban_seconds,
            )
            self._user_bans[key] = ban
            del self._failures[key]
            self._expire_if_full(now)
            return ban
        return None

    def record_success(self, source: str, user: str, now: float) -> None:
        """`user` logged in from `source`: its failures there are forgiven, and the source is
        trusted not to be a guesser."""
        self._trusted[source] = now
        self._trusted.move_to_end(source)
        if len(self._trusted) > self._capacity:
            self._trusted.popitem(last=False)
        self._failures.pop((source, user), None)
        users = self._users.get(source)
        if users is not None:
            users.pop(user, None)

    def lift(self, source: str) -> list[Ban]:
        """End every ban of `source` and forget its failures; the bans lifted."""
        lifted = [ban for (s, _u), ban in self._user_bans.items() if s == source]
        for ban in lifted:
            del self._user_bans[(ban.source, ban.user)]
        whole = self._source_bans.pop(source, None)
        if whole is not None:
            lifted.insert(0, whole)
        self._users.pop(source, None)
        self._forget_pairs(source)
        return lifted

    def active(self, now: float) -> list[Ban]:
        """The bans in force, most recent first."""
        self._expire(now)
        bans = [*self._source_bans.values(), *self._user_bans.values()]
        bans.sort(key=lambda ban: ban.start, reverse=True)
        return bans

    def banned_count(self, now: float) -> int:
        return sum(1 for ban in self._source_bans.values() if ban.until > now) + sum(
            1 for ban in self._user_bans.values() if ban.until > now
        )

    # -- bounds ---------------------------------------------------------------------------------

    def _trusts(self, source: str, now: float) -> bool:
        at = self._trusted.get(source)
        return at is not None and now - at < self._policy.trust_seconds

    def _forget_pairs(self, source: str) -> None:
        for key in [key for key in self._failures if key[0] == source]:
            del self._failures[key]

    def _bound(self) -> None:
        while len(self._failures) > self._capacity:
            self._failures.popitem(last=False)
        while len(self._users) > self._capacity:
            self._users.popitem(last=False)

    def _expire_if_full(self, now: float) -> None:
        if len(self._source_bans) + len(self._user_bans) > self._capacity:
            self._expire(now)

    def _expire(self, now: float) -> None:
        for source in [s for s, ban in self._source_bans.items() if ban.until <= now]:
            del self._source_bans[source]
        for key in [k for k, ban in self._user_bans.items() if ban.until <= now]:
            del self._user_bans[key]


def _seconds(value: float) -> str:
    return f"{value:g} s"
