"""The Teams bridge (`teams/`) as a `Bridge` the runner drives.

The Teams bridge has its own vocabulary (`teams.OutboundPresence` with an automatic and a manual
state per Entra user, `poll()` for what Teams shows, `export_state`/`restore_state`); this module
translates between it and the framework's, in one place:

- users map by Entra object id, else by user principal name (`reconcile`); users without either
  are not shown in Teams;
- the handset's own state (registration, ringing, calls) is the *automatic* state; a state set by
  hand (MANUAL) or reported by another connector (EXTERNAL, e.g. a SIP UC client's DND) is the
  *manual* state, i.e. the user's preferred presence in Teams. States this connector brought in
  never reach it (the runner gives it the user's own state instead);
- what `poll()` returns is brought in as EXTERNAL presence;
- the Teams bridge's saved beliefs about Graph are one state entry (`teams state`).

`publish` returns at once (the Teams bridge paces Graph itself), so a delivery is done when it is
handed over; the Teams bridge's status says how many users are not yet in Teams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .bridge import (
    Activity,
    Availability,
    BridgeContext,
    BridgeError,
    BridgeHealth,
    BridgeState,
    ConnectorConfig,
    InboundPresence,
    MappedUser,
    PresenceSource,
    PresenceUpdate,
    StateChanges,
)
from .teams import Availability as TeamsAvailability
from .teams import (
    ClientSecret,
    ConfigError,
    ConnectionState,
    OutboundPresence,
    SyncTiming,
    TeamsConfig,
    TeamsPresenceBridge,
)
from .teams.config import GRAPH_URL, LOGIN_URL

__all__ = ["TeamsBridge"]

STATE_KEY = "teams state"
#: How long `close(remove=True)` waits for Graph to have the withdrawals.
CLOSE_GRACE = 5.0

_MANUAL = {
    Availability.AVAILABLE: TeamsAvailability.AVAILABLE,
    Availability.BUSY: TeamsAvailability.BUSY,
    # A call elsewhere (another connector) shows as busy: Teams keeps "in a call" to sessions.
    Availability.IN_A_CALL: TeamsAvailability.BUSY,
    Availability.DO_NOT_DISTURB: TeamsAvailability.DO_NOT_DISTURB,
    Availability.BE_RIGHT_BACK: TeamsAvailability.BE_RIGHT_BACK,
    Availability.AWAY: TeamsAvailability.AWAY,
    Availability.OFFLINE: TeamsAvailability.OFFLINE,
}
_INBOUND = {
    TeamsAvailability.AVAILABLE: Availability.AVAILABLE,
    TeamsAvailability.IN_A_CALL: Availability.IN_A_CALL,
    TeamsAvailability.BUSY: Availability.BUSY,
    TeamsAvailability.DO_NOT_DISTURB: Availability.DO_NOT_DISTURB,
    TeamsAvailability.BE_RIGHT_BACK: Availability.BE_RIGHT_BACK,
    TeamsAvailability.AWAY: Availability.AWAY,
    TeamsAvailability.OFFLINE: Availability.OFFLINE,
}
_HEALTH = {
    ConnectionState.CONNECTING: BridgeState.CONNECTING,
    ConnectionState.CONNECTED: BridgeState.CONNECTED,
    ConnectionState.FAILED: BridgeState.FAILED,
}


def automatic_state(update: PresenceUpdate) -> TeamsAvailability:
    """What the user's handsets say."""
    if update.removed or not update.registered:
        return TeamsAvailability.OFFLINE
    if update.activity is Activity.IN_A_CALL:
        return TeamsAvailability.IN_A_CALL
    if update.activity is Activity.RINGING:
        return TeamsAvailability.RINGING
    return TeamsAvailability.AVAILABLE


def manual_state(update: PresenceUpdate) -> TeamsAvailability | None:
    """A state chosen by the user or reported by another UC platform, if one decides."""
    if update.removed or update.source not in (PresenceSource.MANUAL, PresenceSource.EXTERNAL):
        return None
    return _MANUAL[update.availability]


def _seconds(duration: object) -> float | None:
    if isinstance(duration, str) and duration.endswith("s"):
        with contextlib.suppress(ValueError):
            return float(duration[:-1])
    return None


class TeamsBridge:
    max_concurrent_deliveries = 64

    def __init__(self, config: ConnectorConfig) -> None:
        self.config = config
        self.context: BridgeContext | None = None
        self._teams: TeamsPresenceBridge | None = None
        self._poller: asyncio.Task[None] | None = None
        self._ca_file: Path | None = None
        self._id_of: dict[str, str] = {}  # users/{id} -> Entra object id or UPN
        self._user_of: dict[str, str] = {}  # Entra object id or UPN -> users/{id}
        self._saved = ""

    def _teams_config(self) -> TeamsConfig:
        s = self.config.settings
        pem = str(s.get("tls_ca_pem", ""))
        if pem:
            handle, name = tempfile.mkstemp(prefix="sip2uc-teams-ca-", suffix=".pem")
            with os.fdopen(handle, "w") as out:
                out.write(pem)
            self._ca_file = Path(name)
        interval = _seconds(s.get("poll_interval"))
        try:
            return TeamsConfig(
                tenant_id=str(s.get("tenant_id", "")),
                client_id=str(s.get("client_id", "")),
                credential=ClientSecret(self.config.secrets.get("client_secret", "")),
                graph_url=str(s.get("graph_url") or GRAPH_URL),
                token_url=str(s.get("token_url") or LOGIN_URL),
                ca_file=str(self._ca_file) if self._ca_file else None,
                timing=SyncTiming(poll_interval=interval) if interval is not None else SyncTiming(),
            )
        except (ConfigError, ValueError) as exc:
            raise BridgeError(f"Teams configuration: {exc}") from None

    async def start(self, context: BridgeContext) -> None:
        self.context = context
        teams = TeamsPresenceBridge(self._teams_config())
        saved = context.saved.get(STATE_KEY)
        if saved:
            try:
                teams.restore_state(json.loads(saved))
            except (ValueError, TypeError, AttributeError):
                context.log.warning("ignoring an unreadable saved Teams state")
        teams.start()
        self._teams = teams
        self._poller = asyncio.create_task(self._poll(), name=f"{self.config.name} poll")

    async def _poll(self) -> None:
        teams, context = self._teams, self.context
        assert teams is not None and context is not None
        while True:
            found = await teams.poll()
            if not found:
                return  # closed
            for item in found:
                user = self._user_of.get(item.user_id)
                if user is None:
                    continue
                availability = (
                    None if item.availability is None else _INBOUND.get(item.availability)
                )
                context.bring_in(InboundPresence(user=user, availability=availability))

    async def deliver(self, update: PresenceUpdate) -> None:
        teams = self._teams
        if teams is None:
            raise BridgeError("not started")
        user_id = self._id_of.get(update.user)
        if user_id is None:
            return  # no Entra object id or UPN: not shown in Teams
        await teams.publish(
            [
                OutboundPresence(
                    user_id=user_id, automatic=automatic_state(update), manual=manual_state(update)
                )
            ]
        )

    async def reconcile(self, users: Sequence[MappedUser]) -> None:
        wanted = {
            u.user: u.entra_object_id or u.user_principal_name
            for u in users
            if u.entra_object_id or u.user_principal_name
        }
        gone = [user_id for user, user_id in self._id_of.items() if wanted.get(user) != user_id]
        self._id_of = wanted
        self._user_of = {user_id: user for user, user_id in wanted.items()}
        if gone and self._teams is not None:
            await self._teams.publish(
                [OutboundPresence(user_id=i, automatic=TeamsAvailability.OFFLINE) for i in gone]
            )

    def health(self) -> BridgeHealth:
        if self._teams is None:
            return BridgeHealth(state=BridgeState.CONNECTING, users_mapped=len(self._id_of))
        status = self._teams.status
        return BridgeHealth(
            state=_HEALTH[status.state],
            last_error=status.last_error or "",
            users_mapped=len(self._id_of),
        )

    def take_state_changes(self) -> StateChanges:
        changes = StateChanges()
        if self._teams is not None:
            current = json.dumps(self._teams.export_state(), sort_keys=True)
            if current != self._saved:
                self._saved = current
                changes.upserts[STATE_KEY] = current.encode()
        return changes

    async def close(self, *, remove: bool) -> None:
        teams = self._teams
        if teams is not None:
            if remove and self._id_of:
                await teams.publish(
                    [
                        OutboundPresence(user_id=i, automatic=TeamsAvailability.OFFLINE)
                        for i in self._id_of.values()
                    ]
                )
                for _ in range(int(CLOSE_GRACE / 0.05)):
                    if not teams.status.pending_users:
                        break
                    await asyncio.sleep(0.05)
            await teams.close()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._ca_file is not None:
            self._ca_file.unlink(missing_ok=True)
