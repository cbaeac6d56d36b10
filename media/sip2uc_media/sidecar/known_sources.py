"""Source addresses the sidecar has reason to trust: those with a live binding, and trunks.

The intake serves their requests before anyone else's and exempts them from the per-source
limit, so that a flood from elsewhere (or a storm of first registrations) cannot starve the
handsets that are already registered. Keyed by IP address only: the handsets behind one DECT
base or NAT share it, and one of them registering vouches for the others. The table is
bounded (the oldest entries go first) and pure: callers pass `now`.

A source spoofing a trusted address gets the same priority; over UDP nothing at this layer can
tell them apart, and the digest check still applies to everything it sends.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["KnownSources"]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class KnownSources:
    def __init__(self, *, capacity: int = 65536) -> None:
        self._capacity = capacity
        #: host -> until when it is trusted (a binding's expiry), oldest mark first.
        self._until: dict[str, float] = {}
        self._trunks: tuple[IpNetwork, ...] = ()
        # Trunk membership by address, worked out once per address seen.
        self._trunk_cache: dict[str, bool] = {}

    def __len__(self) -> int:
        return len(self._until)

    def mark(self, host: str, until: float) -> None:
        """Trust `host` until `until` (a binding from it expires then); never shortens."""
        previous = self._until.pop(host, None)
        if previous is not None and previous > until:
            until = previous
        self._until[host] = until
        if len(self._until) > self._capacity:
            del self._until[next(iter(self._until))]

    def set_trunks(self, networks: Iterable[str]) -> None:
        """Trunk devices' source networks (authorised by address): always trusted."""
        parsed = []
        for network in networks:
            try:
                parsed.append(ipaddress.ip_network(network, strict=False))
            except ValueError:
                continue
        self._trunks = tuple(parsed)
        self._trunk_cache.clear()

    def is_known(self, host: str, now: float) -> bool:
        until = self._until.get(host)
        if until is not None:
            if until > now:
                return True
            del self._until[host]
        return bool(self._trunks) and self._is_trunk(host)

    def _is_trunk(self, host: str) -> bool:
        cached = self._trunk_cache.get(host)
        if cached is not None:
            return cached
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            address = None
        found = address is not None and any(address in n for n in self._trunks)
        if len(self._trunk_cache) >= 4096:
            self._trunk_cache.clear()
        self._trunk_cache[host] = found
        return found
