"""Connected sidecars: who they are, their sessions' queues, and when they were lost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sip2uc_core.sip.digest import Algorithm

from .calls.commands import Command
from .errors import AlreadyExists, StorageUnavailable
from .messaging.model import DeliverMessage
from .settings import ServerSettings
from .trunks import Trunk
from .watchers import Watchers, WatchQueue

# A session that has sent nothing (heartbeats come every few seconds) for this long is taken to
# be a half-open stream, and another instance of the name may take over.
STALE_SESSION_SECONDS = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SidecarSettings:
    """What a sidecar is told on connecting and whenever it changes."""

    realm: str
    domain: str
    #: Networks (CIDR) the sidecar accepts requests from; empty: any.
    allowed_networks: tuple[str, ...]
    #: Trunk devices' sources (network, port or 0), authorised by address.
    trunk_sources: tuple[tuple[str, int], ...]
    ban_threshold: int
    ban_window_seconds: int
    ban_seconds: int
    ban_user_names: int
    channel_limit: int
    media_timeout_seconds: int
    min_expires: int
    max_expires: int
    #: Digest user name -> its device's algorithms, for the devices that have their own.
    device_algorithms: tuple[tuple[str, tuple[Algorithm, ...]], ...] = ()
    #: The trunks this sidecar carries (with their passwords: it answers their challenges).
    trunks: tuple[Trunk, ...] = ()

    @classmethod
    def of(
        cls,
        settings: ServerSettings,
        sidecar: str,
        trunk_sources: tuple[tuple[str, int], ...],
        device_algorithms: tuple[tuple[str, tuple[Algorithm, ...]], ...] = (),
        trunks: tuple[Trunk, ...] = (),
    ) -> SidecarSettings:
        return cls(
            realm=settings.realm,
            domain=settings.sip_domain,
            allowed_networks=settings.policy(sidecar).allowed_networks,
            trunk_sources=trunk_sources,
            ban_threshold=settings.ban_threshold,
            ban_window_seconds=settings.ban_window_seconds,
            ban_seconds=settings.ban_seconds,
            ban_user_names=settings.ban_user_names,
            channel_limit=settings.channel_limit(sidecar),
            media_timeout_seconds=settings.media_timeout_seconds,
            min_expires=settings.min_expires,
            max_expires=settings.max_expires,
            device_algorithms=device_algorithms,
            trunks=trunks,
        )


@dataclass(frozen=True, slots=True)
class SettingsChanged:
    """Send the sidecar its settings again."""

    settings: SidecarSettings


@dataclass(frozen=True, slots=True)
class SessionReplaced:
    """The same sidecar instance reconnected on a new stream: this session ends."""


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The session must end and the sidecar connect again, e.g. its credential was revoked."""

    reason: str


@dataclass(frozen=True, slots=True)
class LiftBan:
    """Lift every ban of a source address (an operator asked)."""

    source: str


#: What a session's queue holds: what to send the sidecar, or that the session is over.
SessionItem = Command | DeliverMessage | SettingsChanged | LiftBan | SessionReplaced | SessionEnded


@dataclass(frozen=True, slots=True)
class SidecarBan:
    """A ban a sidecar reported: `source` (with `user`: only that user name from it)."""

    source: str
    user: str
    reason: str
    start_time: float
    expire_time: float


@dataclass(frozen=True, slots=True)
class BansReport:
    """A sidecar's bans in force (at most a thousand of `total`)."""

    bans: tuple[SidecarBan, ...]
    total: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A sidecar's load, reported every few seconds."""

    active_legs: int
    relay_ports_in_use: int


@dataclass(frozen=True, slots=True)
class MessageDelivered:
    """A handset's final answer to a `DeliverMessage` the sidecar sent it."""

    delivery_id: str
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class CommandResult:
    """Whether a sidecar carried out a command (it answers with the command's id)."""

    command_id: str
    ok: bool
    error: str = ""


@dataclass
class SidecarInfo:
    name: str
    site: str = ""
    sip_listeners: list[str] = field(default_factory=list)
    rtp: str = ""
    capacity: int = 0
    version: str = ""
    instance_id: str = ""
    #: The sidecar reads several commands in one message (and answers them in one).
    batched_commands: bool = False
    connected: bool = False
    connect_time: float = 0.0
    last_seen: float = 0.0
    lost_time: float | None = None
    active_legs: int = 0
    relay_ports_in_use: int = 0
    #: Its bans as last reported (kept in memory only: a sidecar reports them on connecting).
    bans: BansReport = field(default_factory=lambda: BansReport((), 0))


class SidecarRecords(Protocol):
    """Where the registry keeps who the sidecars were across restarts (`store/sidecars.py`)."""

    async def load(self) -> list[SidecarInfo]: ...

    async def save(self, info: SidecarInfo) -> None: ...


class SidecarRegistry:
    def __init__(self, records: SidecarRecords) -> None:
        self.records = records
        self.sidecars: dict[str, SidecarInfo] = {}
        self.queues: dict[str, asyncio.Queue[SessionItem]] = {}
        self._watchers: Watchers[SidecarInfo] = Watchers()

    async def load(self, now: float) -> None:
        """Sidecars known from before a restart count as lost since `now` until they reconnect."""
        for info in await self.records.load():
            info.lost_time = now
            self.sidecars[info.name] = info

    async def connected(self, info: SidecarInfo) -> asyncio.Queue[SessionItem]:
        """Start `info`'s session; AlreadyExists while another live instance holds the name.

        Two processes sharing a name would split its commands between them (in practice: the
        newest got every command and the first none), so the second is refused. The same
        instance reconnecting replaces its old stream, which is told to end; so may another
        instance once the old stream has been silent for STALE_SESSION_SECONDS (half-open).
        """
        current = self.sidecars.get(info.name)
        old = self.queues.get(info.name)
        if (
            old is not None
            and current is not None
            and current.instance_id != info.instance_id
            and info.connect_time - current.last_seen < STALE_SESSION_SECONDS
        ):
            raise AlreadyExists(
                "hello.name", info.name, f"sidecar instance {current.instance_id!r}"
            )
        queue: asyncio.Queue[SessionItem] = asyncio.Queue()
        if old is not None:
            # Commands the old stream had not written yet go out on the new one.
            while not old.empty():
                queue.put_nowait(old.get_nowait())
            old.put_nowait(SessionReplaced())
        self.sidecars[info.name] = info
        self.queues[info.name] = queue
        try:
            await self.records.save(info)
        except StorageUnavailable:
            # The record only lists the sidecar across restarts: a full or unreachable database
            # (logged once by the store) must not keep a sidecar, and its handsets, out.
            pass
        self.publish(info)
        return queue

    def heartbeat(self, info: SidecarInfo, active_legs: int, relay_ports_in_use: int) -> None:
        info.active_legs = active_legs
        info.relay_ports_in_use = relay_ports_in_use
        self.publish(info)

    def disconnected(self, name: str, queue: asyncio.Queue[SessionItem], now: float) -> None:
        # A sidecar that reconnected already has a new queue; only the current session ends it.
        if self.queues.get(name) is queue:
            del self.queues[name]
            info = self.sidecars.get(name)
            if info is not None:
                info.connected = False
                info.lost_time = now
                self.publish(info)

    def bans(self, now: float) -> list[tuple[str, SidecarBan]]:
        """(sidecar, ban) for every ban the connected sidecars reported that is still in force."""
        return [
            (info.name, ban)
            for info in sorted(self.sidecars.values(), key=lambda s: s.name)
            if info.connected
            for ban in info.bans.bans
            if ban.expire_time > now
        ]

    def unreported_bans(self) -> int:
        """Bans the connected sidecars hold beyond those they reported."""
        return sum(
            info.bans.total - len(info.bans.bans)
            for info in self.sidecars.values()
            if info.connected
        )

    def lift_bans(self, source: str, sidecar: str, now: float) -> list[tuple[str, SidecarBan]]:
        """Tell the connected sidecars (or `sidecar`) to lift the bans of `source`; the bans they
        reported for it, which are forgotten now (their next report confirms)."""
        lifted: list[tuple[str, SidecarBan]] = []
        for name, queue in self.queues.items():
            if sidecar and name != sidecar:
                continue
            queue.put_nowait(LiftBan(source))
            info = self.sidecars.get(name)
            if info is None:
                continue
            gone = [ban for ban in info.bans.bans if ban.source == source]
            lifted.extend((name, ban) for ban in gone if ban.expire_time > now)
            kept = tuple(ban for ban in info.bans.bans if ban.source != source)
            info.bans = BansReport(kept, info.bans.total - len(gone))
        return lifted

    def end_session(self, name: str, reason: str) -> bool:
        """End `name`'s live session (it may connect again if it is still allowed to); False
        when it has none."""
        queue = self.queues.get(name)
        if queue is None:
            return False
        queue.put_nowait(SessionEnded(reason))
        return True

    def send(self, name: str, command: Command | DeliverMessage) -> bool:
        """Queue a command for a connected sidecar; False when it is not connected."""
        queue = self.queues.get(name)
        if queue is None:
            return False
        queue.put_nowait(command)
        return True

    def broadcast_settings(self, settings_for: Callable[[str], SidecarSettings]) -> None:
        """Send every connected sidecar its settings (after an admin change)."""
        for name, queue in self.queues.items():
            queue.put_nowait(SettingsChanged(settings_for(name)))

    def is_connected(self, name: str) -> bool:
        info = self.sidecars.get(name)
        return info is not None and info.connected

    def connected_count(self) -> int:
        return sum(1 for s in self.sidecars.values() if s.connected)

    # --- watchers (AdminService.WatchSidecars) ---------------------------------------------------

    def watch(self) -> WatchQueue[SidecarInfo]:
        return self._watchers.watch()

    def unwatch(self, queue: WatchQueue[SidecarInfo]) -> None:
        self._watchers.unwatch(queue)

    def publish(self, info: SidecarInfo) -> None:
        """Tell watchers that `info` changed (connected, lost, heartbeat, settings)."""
        self._watchers.offer(info)

    def publish_all(self) -> None:
        for info in self.sidecars.values():
            self.publish(info)

    def close(self) -> None:
        """End every watch stream (server shutdown)."""
        self._watchers.end_all()

    def lost_longer_than(self, grace: float, now: float) -> list[str]:
        return [
            s.name
            for s in self.sidecars.values()
            if not s.connected and s.lost_time is not None and now - s.lost_time >= grace
        ]
