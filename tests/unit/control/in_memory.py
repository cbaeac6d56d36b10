"""The call layer's surroundings in memory: no server, no database, a clock the test moves.

The user directory and the presence hub are the real ones (the hub over a log kept in a list);
the sidecars record the commands they are sent, and their connections are switched by the test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sip2uc_control.bindings import Binding
from sip2uc_control.calls import CallController, Command, InviteInput, InviteOutcome, MediaInfo
from sip2uc_control.calls.model import Call, Codec
from sip2uc_control.domain import (
    Device,
    Forwarding,
    RegisteringDevice,
    TrunkDevice,
    User,
    UserSettings,
)
from sip2uc_control.presence import EffectivePresence, PresenceEngine, PresenceRecord
from sip2uc_control.presence_hub import LoggedChange, PresenceHub, StoredPresence
from sip2uc_control.registrar import Refusal, authenticate
from sip2uc_control.settings import ServerSettings
from sip2uc_control.trunk_registry import TrunkRegistry
from sip2uc_control.trunks import Trunk
from sip2uc_control.users import UserDirectory
from sip2uc_core.sip.digest import (
    Algorithm,
    Credentials,
    DigestError,
    compute_ha1,
    compute_response,
)

REALM = ServerSettings().realm
DOMAIN = ServerSettings().sip_domain
PASSWORD = "s3cret-pw"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_user(
    ext: str,
    *,
    password: str = PASSWORD,
    settings: UserSettings | None = None,
    max_bindings: int = 0,
    trunk: TrunkDevice | None = None,
) -> User:
    """A user `ext` with one handset whose digest user name is the extension."""
    devices = [
        Device(
            id="device-1",
            registering=RegisteringDevice(
                digest_username=ext,
                ha1_md5=compute_ha1(Algorithm.MD5, ext, REALM, password),
                ha1_sha256=compute_ha1(Algorithm.SHA_256, ext, REALM, password),
                max_bindings=max_bindings,
            ),
        )
    ]
    if trunk is not None:
        devices.append(Device(id="trunk-1", trunk=trunk))
    return User(
        id=f"u{ext}",
        sip_uri=f"sip:{ext}@{DOMAIN}",
        display_name=f"User {ext}",
        extension=ext,
        devices=tuple(devices),
        settings=settings or UserSettings(),
    )


def forwarding(target: str) -> Forwarding:
    return Forwarding(enabled=True, target=target)


def digest(
    username: str,
    password: str = PASSWORD,
    method: str = "REGISTER",
    *,
    algorithm: Algorithm = Algorithm.MD5,
    realm: str = REALM,
    nc: int = 1,
) -> Credentials:
    """Credentials as a handset computes them (qop=auth) for `password`."""
    ha1 = compute_ha1(algorithm, username, realm, password)
    uri, nonce, cnonce, nc_text = f"sip:{DOMAIN}", "n0nce", "c1", f"{nc:08x}"
    response = compute_response(
        algorithm, ha1, nonce=nonce, method=method, uri=uri, qop="auth", nc=nc_text, cnonce=cnonce
    )
    return Credentials(
        username=username,
        realm=realm,
        nonce=nonce,
        uri=uri,
        response=response,
        algorithm=algorithm,
        qop="auth",
        nc=nc_text,
        cnonce=cnonce,
    )


def media(port: int, codec: str = "PCMU", payload_type: int = 0) -> MediaInfo:
    return MediaInfo("127.0.0.1", port, (Codec(codec, payload_type),))


class Sidecars:
    """Sidecars as the call layer sees them: connected or not, and what each was sent."""

    def __init__(self, *connected: str) -> None:
        self.connected = set(connected)
        self.sent: list[tuple[str, Command]] = []

    def is_connected(self, name: str) -> bool:
        return name in self.connected

    def send(self, name: str, command: Command) -> bool:
        if name not in self.connected:
            return False
        self.sent.append((name, command))
        return True

    def take(self) -> list[tuple[str, Command]]:
        """The commands sent since the last `take`, in order."""
        sent, self.sent = self.sent, []
        return sent


class Bindings:
    def __init__(self) -> None:
        self.by_user: dict[str, list[Binding]] = {}

    def add(self, binding: Binding) -> None:
        self.by_user.setdefault(binding.user_id, []).append(binding)

    def for_user(self, user_id: str) -> list[Binding]:
        return sorted(self.by_user.get(user_id, []), key=lambda b: (-b.q_milli, b.create_time))

    def count_user(self, user_id: str) -> int:
        return len(self.by_user.get(user_id, []))


class PresenceLog:
    """The presence change log in a list."""

    def __init__(self) -> None:
        self.records: dict[str, PresenceRecord] = {}
        self.changes: list[LoggedChange] = []

    async def load(self, recent: int) -> StoredPresence:
        return StoredPresence(dict(self.records), len(self.changes), self.changes[-recent:])

    async def write(
        self, records: Mapping[str, PresenceRecord], events: Sequence[tuple[LoggedChange, float]]
    ) -> None:
        self.records.update(records)
        self.changes.extend(change for change, _at in events)

    async def changes_after(self, cursor: int) -> list[LoggedChange] | None:
        return [c for c in self.changes if c.seq > cursor]

    async def trim(self, up_to: int) -> None:
        self.changes = [c for c in self.changes if c.seq > up_to]


class History:
    def __init__(self) -> None:
        self.calls: list[Call] = []

    async def record(self, call: Call) -> None:
        self.calls.append(call)


class Settings:
    def __init__(self, current: ServerSettings) -> None:
        self.current = current


class Trunks:
    """Stored trunks in a dict, by priority then id like the store."""

    def __init__(self) -> None:
        self.by_id: dict[str, Trunk] = {}

    def get(self, trunk_id: str) -> Trunk | None:
        return self.by_id.get(trunk_id)

    def all(self) -> list[Trunk]:
        return sorted(self.by_id.values(), key=lambda t: (t.priority, t.id))


@dataclass
class CallLayer:
    """A call controller over in-memory users, bindings, presence and sidecars."""

    sidecars: Sidecars = field(default_factory=lambda: Sidecars("s1", "s2"))
    settings: ServerSettings = field(default_factory=ServerSettings)
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self.users = UserDirectory()
        self.bindings = Bindings()
        self.log = PresenceLog()
        self.presence = PresenceHub(self.log, PresenceEngine(), self.clock)
        self.history = History()
        self.saved_settings: list[tuple[str, UserSettings]] = []
        self.trunk_records = Trunks()
        self.trunks = TrunkRegistry(self.trunk_records, self.sidecars.is_connected, self.clock)
        self.controller = CallController(
            users=self.users,
            bindings=self.bindings,
            presence=self.presence,
            settings=Settings(self.settings),
            sidecars=self.sidecars,
            history=self.history,
            save_user_settings=self._save_settings,
            authenticate=self._authenticate,
            clock=self.clock,
            trunks=self.trunks,
        )

    def _authenticate(
        self, creds: Credentials, method: str, source_host: str
    ) -> tuple[User, Device] | Refusal:
        """The registrar's verification, without the core's account lockout."""
        try:
            return authenticate(self.users, creds, self.settings.realm, method)
        except DigestError:
            return Refusal.WRONG_PASSWORD

    async def _save_settings(self, user: User, settings: UserSettings) -> None:
        self.saved_settings.append((user.id, settings))
        self.users.index.remove(user)
        self.users.index.add(user.with_changes(settings=settings))

    def add_user(self, user: User) -> User:
        self.users.index.add(user)
        return user

    def register(
        self, user: User, port: int, *, sidecar: str = "s1", q_milli: int = 1000
    ) -> Binding:
        """A binding of `user`'s handset at 127.0.0.1:`port` behind `sidecar` (presence follows)."""
        now = self.clock()
        binding = Binding(
            id=f"{user.id}-{port}",
            user_id=user.id,
            device_id="device-1",
            aor=user.sip_uri,
            contact_uri=f"sip:{user.extension}@127.0.0.1:{port}",
            source_host="127.0.0.1",
            source_port=port,
            transport="udp",
            sidecar=sidecar,
            user_agent="",
            q_milli=q_milli,
            call_id=f"reg-{port}",
            cseq=1,
            instance_id="",
            expire_time=now + 3600,
            create_time=now + port / 1e6,  # registered in port order
            refresh_time=now,
        )
        self.bindings.add(binding)
        count = self.bindings.count_user(user.id)
        engine = self.presence.engine
        self.presence.apply(user.id, lambda r, now: engine.on_bindings(r, count, now))
        return binding

    async def invite(
        self,
        caller: User,
        dialled: str,
        *,
        leg_id: str = "A",
        sidecar: str = "s1",
        password: str = PASSWORD,
        offer: MediaInfo | None = None,
    ) -> InviteOutcome:
        """An authenticated INVITE from `caller`'s handset on `sidecar`."""
        return await self.controller.invite(
            InviteInput(
                sidecar=sidecar,
                leg_id=leg_id,
                credentials=digest(caller.extension, password, "INVITE"),
                source_host="127.0.0.1",
                source_port=40000,
                request_uri=f"sip:{dialled}@{DOMAIN}",
                from_uri=caller.sip_uri,
                from_display_name=caller.display_name,
                to_uri=f"sip:{dialled}@{DOMAIN}",
                offer=offer if offer is not None else media(30000),
            )
        )

    def presence_of(self, user: User) -> EffectivePresence:
        return self.presence.effective(user.id)
