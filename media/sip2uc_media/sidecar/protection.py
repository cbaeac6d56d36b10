"""Source protection for the SIP edge: a network allow-list and a ban list for failing sources.

Both are pure: callers pass the source address and `now`. Memory is bounded so that a flood of
spoofed sources cannot grow the tables without limit.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["BanList", "BanPolicy", "NetworkAllowList"]

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
    """`threshold` failures within `window` seconds ban a source for `ban_seconds`.

    The defaults apply until the control plane pushes `SidecarSettings`.
    """

    threshold: int = 10
    window: float = 60.0
    ban_seconds: float = 300.0


class BanList:
    """Counts authentication failures per source address and bans sources that pass the threshold.

    Sources are keyed by IP only: a scanner changes ports freely. A banned source is ignored
    (its requests silently dropped) so that it learns nothing more.
    """

    def __init__(self, policy: BanPolicy | None = None, *, capacity: int = 65536) -> None:
        self._policy = policy or BanPolicy()
        self._capacity = capacity
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._banned_until: dict[str, float] = {}

    @property
    def policy(self) -> BanPolicy:
        return self._policy

    def configure(self, policy: BanPolicy) -> None:
        """Apply new settings; existing counts and bans stay (a ban keeps its original end)."""
        self._policy = policy

    def is_banned(self, source: str, now: float) -> bool:
        until = self._banned_until.get(source)
        if until is None:
            return False
        if now >= until:
            del self._banned_until[source]
            return False
        return True

    def banned_count(self, now: float) -> int:
        return sum(1 for until in self._banned_until.values() if until > now)

    def record_failure(self, source: str, now: float) -> bool:
        """Count one failure; True when this failure bans the source."""
        policy = self._policy
        if policy.threshold <= 0:
            return False
        times = self._failures.get(source)
        if times is None:
            times = deque()
            self._failures[source] = times
        else:
            self._failures.move_to_end(source)
        times.append(now)
        while times and times[0] <= now - policy.window:
            times.popleft()
        while len(times) > policy.threshold:
            times.popleft()
        if len(self._failures) > self._capacity:
            self._failures.popitem(last=False)
        if len(times) >= policy.threshold:
            del self._failures[source]
            self._banned_until[source] = now + policy.ban_seconds
            if len(self._banned_until) > self._capacity:
                self._expire(now)
            return True
        return False

    def _expire(self, now: float) -> None:
        for source in [s for s, until in self._banned_until.items() if until <= now]:
            del self._banned_until[source]
