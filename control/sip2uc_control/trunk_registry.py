"""Trunks in use: the stored configuration beside what their sidecars report.

The store holds what administrators set; this registry adds the live side — each trunk's
health as its sidecar last reported it — and answers the call
layer's questions: which trunks may carry a number (`candidates`), and which trunk a request
came from (`by_source`: the addresses its name resolved to, or its inbound networks).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from .trunks import Reachability, Registration, Trunk, TrunkHealth, candidates

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrunkReport:
    """One trunk's state as its sidecar sent it."""

    trunk_id: str
    reachable: bool
    registered: bool
    error: str
    resolved_addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TrunkReports:
    """The reports of one message: every trunk the sidecar carries."""

    reports: tuple[TrunkReport, ...]


class TrunkRecords(Protocol):
    """The stored trunks (`store/trunks.py`)."""

    def get(self, trunk_id: str, /) -> Trunk | None: ...

    def all(self) -> list[Trunk]: ...


class TrunkRegistry:
    def __init__(
        self,
        store: TrunkRecords,
        is_connected: Callable[[str], bool],
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.is_connected = is_connected
        self.clock = clock
        self._health: dict[str, TrunkHealth] = {}

    # --- reads ---------------------------------------------------------------------------------

    def all(self) -> list[Trunk]:
        return self.store.all()

    def get(self, trunk_id: str) -> Trunk | None:
        return self.store.get(trunk_id)

    def health(self, trunk: Trunk) -> TrunkHealth:
        """What its sidecar reported; DOWN while that sidecar is not connected."""
        found = self._health.get(trunk.id, TrunkHealth())
        if not trunk.register:
            found = replace(found, registration=Registration.NOT_REQUIRED)
        if trunk.disabled:
            return replace(found, state=Reachability.UNKNOWN, last_error="disabled")
        if not self.is_connected(trunk.sidecar):
            return replace(
                found,
                state=Reachability.DOWN,
                registration=Registration.UNREGISTERED
                if trunk.register
                else Registration.NOT_REQUIRED,
                last_error=f"sidecar {trunk.sidecar} is not connected",
            )
        return found

    def candidates(
        self, e164: str, busy: Mapping[str, int], emergency: bool = False
    ) -> tuple[list[Trunk], str]:
        """The trunks to try for `e164` in order (`busy`: calls each carries now)."""
        trunks = self.store.all()
        return candidates(
            trunks,
            e164,
            {t.id: self.health(t) for t in trunks},
            busy,
            {t.sidecar: self.is_connected(t.sidecar) for t in trunks},
            emergency=emergency,
        )

    def by_source(self, sidecar: str, host: str, port: int) -> Trunk | None:
        """The trunk carried by `sidecar` that a request from host:port came from."""
        try:
            source = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return None
        for trunk in self.store.all():
            if trunk.disabled or trunk.sidecar != sidecar:
                continue
            if _from_trunk(trunk, self._health.get(trunk.id), source, port):
                return trunk
        return None

    def sources(self, sidecar: str) -> tuple[tuple[str, int], ...]:
        """(network, port or 0) of the trunks `sidecar` carries whose addresses are known here:
        an IP address given as the trunk's address, and its inbound networks."""
        out: set[tuple[str, int]] = set()
        for trunk in self.store.all():
            if trunk.disabled or trunk.sidecar != sidecar:
                continue
            try:
                ip = ipaddress.ip_address(trunk.address)
            except ValueError:
                pass
            else:
                out.add((f"{ip}/{ip.max_prefixlen}", trunk.port or trunk.default_port))
            out.update((network, 0) for network in trunk.inbound_networks)
        return tuple(sorted(out))

    # --- reports from sidecars -----------------------------------------------------------------

    def reported(self, sidecar: str, reports: Iterable[TrunkReport]) -> None:
        now = self.clock()
        for report in reports:
            trunk = self.store.get(report.trunk_id)
            if trunk is None or trunk.sidecar != sidecar:
                continue  # a report for a trunk deleted or moved meanwhile
            previous = self._health.get(trunk.id, TrunkHealth())
            state = Reachability.UP if report.reachable else Reachability.DOWN
            registration = (
                Registration.REGISTERED if report.registered else Registration.UNREGISTERED
            )
            changed = state is not previous.state or registration is not previous.registration
            self._health[trunk.id] = TrunkHealth(
                state=state,
                registration=registration,
                last_error=report.error[:500],
                change_time=now if changed else previous.change_time,
                resolved_addresses=report.resolved_addresses[:16],
            )
            if changed:
                level = logging.INFO if report.reachable else logging.WARNING
                log.log(
                    level,
                    "trunk %s is %s%s%s",
                    trunk.id,
                    state.value,
                    ", registered" if report.registered else "",
                    f": {report.error}" if report.error else "",
                )

    def forget(self, trunk_id: str) -> None:
        self._health.pop(trunk_id, None)


def _from_trunk(
    trunk: Trunk,
    health: TrunkHealth | None,
    source: ipaddress.IPv4Address | ipaddress.IPv6Address,
    port: int,
) -> bool:
    for network in trunk.inbound_networks:
        if source in ipaddress.ip_network(network, strict=False):
            return True
    try:
        literal = ipaddress.ip_address(trunk.address)
    except ValueError:
        literal = None
    if literal is not None and literal == source and port == (trunk.port or trunk.default_port):
        return True
    for hostport in health.resolved_addresses if health else ():
        host, _, p = hostport.rpartition(":")
        try:
            if ipaddress.ip_address(host.strip("[]")) == source and int(p) == port:
                return True
        except ValueError:
            continue
    return False
