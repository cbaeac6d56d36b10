"""The trunks a sidecar carries, driven on its event loop: each trunk's `TrunkUpkeep` fed with
the clock and the responses to its requests, its address resolved (`resolution.py`), and its
state reported to the control plane whenever it changes.

Requests go out through the SIP edge's transaction layer like the B2BUA's; the edge hands back
the responses and timeouts of the transactions this carrier started (`response`, `timeout`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sip2uc_core.sip.client_auth import ClientAuth
from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.sip.message import SipResponse
from sip2uc_core.sip.transaction import TransactionId

from ..transport.client import DialTarget, client_context
from .resolution import resolve
from .upkeep import Outgoing, Purpose, TrunkConfig, TrunkUpkeep

__all__ = ["TrunkCarrier", "TrunkStatus"]

log = logging.getLogger(__name__)

#: A trunk whose name did not resolve (or that went down) is looked up again this often.
RESOLVE_RETRY = 30.0


@dataclass(frozen=True, slots=True)
class TrunkStatus:
    """What the control plane is told about one trunk."""

    id: str
    reachable: bool
    registered: bool
    error: str
    resolved: tuple[str, ...]


@dataclass(slots=True)
class _Carried:
    config: TrunkConfig
    upkeep: TrunkUpkeep
    destinations: list[Endpoint]
    reported: int = -1
    resolving: asyncio.Task[None] | None = None
    resolved_at: float = 0.0
    #: How to open a connection to it (TLS: the trunk's CA certificates and name).
    dial: DialTarget | None = None


class TrunkCarrier:
    def __init__(
        self,
        *,
        send: Callable[[Outgoing, Endpoint], TransactionId | None],
        local: Callable[[Transport], tuple[str, int]],
        clock: Callable[[], float],
        random_bytes: Callable[[int], bytes],
        report: Callable[[list[TrunkStatus]], None],
        connection_error: Callable[[Endpoint], str | None] = lambda _dest: None,
    ) -> None:
        self._send = send
        self._local = local
        self._clock = clock
        self._random = random_bytes
        self._report = report
        self._connection_error = connection_error
        self._trunks: dict[str, _Carried] = {}
        self._txns: dict[TransactionId, tuple[str, Purpose]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    # --- configuration -------------------------------------------------------------------------

    def configure(self, configs: Sequence[TrunkConfig]) -> None:
        """Carry exactly these trunks: new ones start, changed ones start over, removed ones
        are unregistered from."""
        wanted = {c.id: c for c in configs}
        now = self._clock()
        for trunk_id, carried in list(self._trunks.items()):
            if wanted.get(trunk_id) != carried.config:
                self._drop(trunk_id, carried, now)
        for trunk_id, config in wanted.items():
            if trunk_id not in self._trunks:
                host, port = self._local(config.transport)
                upkeep = TrunkUpkeep(
                    config, local_host=host, local_port=port, random_bytes=self._random
                )
                tls = config.transport is Transport.TLS
                dial = (
                    DialTarget(client_context(config.tls_ca_pem), config.address) if tls else None
                )
                carried = _Carried(config, upkeep, [], dial=dial)
                self._trunks[trunk_id] = carried
                self._resolve(carried)
        self._publish(force=True)
        self._arm()

    def _drop(self, trunk_id: str, carried: _Carried, now: float) -> None:
        if carried.resolving is not None:
            carried.resolving.cancel()
        if carried.destinations:
            for outgoing in carried.upkeep.unregister(now):
                self._send(outgoing, carried.destinations[0])
        del self._trunks[trunk_id]
        for txn, (owner, _purpose) in list(self._txns.items()):
            if owner == trunk_id:
                del self._txns[txn]

    def _resolve(self, carried: _Carried) -> None:
        async def run() -> None:
            found = await resolve(carried.config)
            carried.resolved_at = self._clock()
            carried.resolving = None
            if self._trunks.get(carried.config.id) is not carried:
                return
            carried.destinations = found
            if not found:
                carried.upkeep.error = f"{carried.config.address} does not resolve"
                carried.upkeep.version += 1
            self._publish()
            self._tick()

        carried.resolving = asyncio.get_running_loop().create_task(run())

    # --- reads ---------------------------------------------------------------------------------

    def destination(self, trunk_id: str) -> Endpoint | None:
        """Where a call to the trunk goes: its first resolved address."""
        carried = self._trunks.get(trunk_id)
        return carried.destinations[0] if carried and carried.destinations else None

    def authenticator(self, trunk_id: str) -> ClientAuth | None:
        """The trunk's digest credentials for one call's INVITE (its own nonce count, apart
        from the registration's), if the trunk has any."""
        carried = self._trunks.get(trunk_id)
        if carried is None or not carried.upkeep.auth.configured:
            return None
        config = carried.config
        return ClientAuth(config.username, config.password, self._random)

    def is_trunk_source(self, host: str, port: int) -> bool:
        """Whether a request from host:port comes from a resolved address of a carried trunk."""
        return any(
            d.host == host and d.port == port
            for carried in self._trunks.values()
            for d in carried.destinations
        )

    def dial_target(self, dest: Endpoint) -> DialTarget | None:
        """How to connect to `dest` over TCP or TLS, when it is a carried trunk's address."""
        for carried in self._trunks.values():
            if dest.transport is carried.config.transport and any(
                (d.host, d.port) == (dest.host, dest.port) for d in carried.destinations
            ):
                return carried.dial or DialTarget(None, None)
        return None

    def statuses(self) -> list[TrunkStatus]:
        now = self._clock()
        out = []
        for trunk_id, carried in sorted(self._trunks.items()):
            reachable, registered, error = carried.upkeep.state(now)
            if not reachable and carried.destinations:
                # Why the connection could not be opened says more than "no response".
                error = self._connection_error(carried.destinations[0]) or error
            out.append(
                TrunkStatus(
                    trunk_id,
                    reachable,
                    registered,
                    error,
                    tuple(f"{d.host}:{d.port}" for d in carried.destinations),
                )
            )
        return out

    # --- the edge's events ---------------------------------------------------------------------

    def response(self, txn_id: TransactionId | None, response: SipResponse) -> bool:
        """A response to one of our transactions (True), or not ours (False)."""
        owner = self._txns.get(txn_id) if txn_id is not None else None
        if owner is None:
            return False
        if response.status >= 200:
            del self._txns[txn_id]  # type: ignore[arg-type]
        carried = self._trunks.get(owner[0])
        if carried is not None:
            self._dispatch(carried, carried.upkeep.response(owner[1], response, self._clock()))
            self._publish()
            self._arm()
        return True

    def timeout(self, txn_id: TransactionId) -> bool:
        owner = self._txns.pop(txn_id, None)
        if owner is None:
            return False
        carried = self._trunks.get(owner[0])
        if carried is not None:
            carried.upkeep.timeout(owner[1], self._clock())
            self._publish()
            self._arm()
        return True

    # --- the clock -----------------------------------------------------------------------------

    def _tick(self) -> None:
        self._timer = None
        if self._closed:
            return
        now = self._clock()
        for carried in self._trunks.values():
            if not carried.destinations:
                if carried.resolving is None and now - carried.resolved_at >= RESOLVE_RETRY:
                    self._resolve(carried)
                continue
            self._dispatch(carried, carried.upkeep.poll(now))
        self._publish()
        self._arm()

    def _dispatch(self, carried: _Carried, outgoing: list[Outgoing]) -> None:
        if not carried.destinations:
            return
        for item in outgoing:
            txn = self._send(item, carried.destinations[0])
            if txn is not None:
                self._txns[txn] = (carried.config.id, item.purpose)

    def _arm(self) -> None:
        if self._closed:
            return
        deadlines = [
            d for c in self._trunks.values() if (d := c.upkeep.next_deadline()) is not None
        ]
        if any(not c.destinations for c in self._trunks.values()):
            deadlines.append(self._clock() + RESOLVE_RETRY)
        if not deadlines:
            return
        at = max(min(deadlines), self._clock()) + 0.01
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            if self._timer.when() <= at:
                return
            self._timer.cancel()
        self._timer = loop.call_at(at, self._tick)

    def _publish(self, *, force: bool = False) -> None:
        changed = force
        for carried in self._trunks.values():
            if carried.upkeep.version != carried.reported:
                carried.reported = carried.upkeep.version
                changed = True
        if changed:
            self._report(self.statuses())

    async def close(self) -> None:
        """Unregister from every trunk (best effort) and stop."""
        now = self._clock()
        for trunk_id, carried in list(self._trunks.items()):
            self._drop(trunk_id, carried, now)
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
