"""What the call layer uses of the rest of the control plane, and nothing more.

`ControlCore` passes its stores and registries, which fit these protocols as they are; tests pass
the in-memory user directory, a presence hub over an in-memory log, and a sidecar registry that
records the commands it is given.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Protocol

from sip2uc_core.sip.digest import Credentials

from ..bindings import Binding
from ..domain import Device, User, UserSettings
from ..presence import PresenceEngine, PresenceRecord, Transition
from ..registrar import Refusal
from ..settings import ServerSettings
from ..trunks import Trunk
from .commands import Command
from .model import Call

PresenceStep = Callable[[PresenceRecord, float], Transition]


class UserLookup(Protocol):
    def get(self, user_id: str) -> User | None: ...

    def resolve(self, ref: str) -> User | None: ...

    def id_by_extension(self, extension: str) -> str | None: ...

    def id_by_e164(self, number: str) -> str | None: ...

    def by_digest_username(self, username: str) -> tuple[User, Device] | None: ...

    def each(self) -> Iterator[User]: ...


class BindingLookup(Protocol):
    def for_user(self, user_id: str) -> list[Binding]:
        """The user's bindings, preferred (highest q) first."""
        ...

    def count_user(self, user_id: str) -> int: ...


class PresenceRecords(Protocol):
    @property
    def engine(self) -> PresenceEngine: ...

    def record(self, user_id: str) -> PresenceRecord: ...

    def in_calls(self) -> dict[str, frozenset[str]]:
        """The users whose record has calls, with those calls' ids."""
        ...

    def apply(self, user_id: str, step: PresenceStep, /) -> object:
        """Change the record now; the write follows without being awaited."""
        ...

    async def update(self, user_id: str, step: PresenceStep, /) -> object:
        """Change the record and wait until the change is durable."""
        ...


class SettingsSource(Protocol):
    @property
    def current(self) -> ServerSettings: ...


class SidecarLinks(Protocol):
    def is_connected(self, name: str, /) -> bool: ...

    def send(self, name: str, command: Command, /) -> bool:
        """Queue a command for a connected sidecar; False when it is not connected."""
        ...


class CallRecorder(Protocol):
    async def record(self, call: Call, /) -> None: ...


# Stores a user's changed call settings (a forwarding code dialled on the handset).
SaveUserSettings = Callable[[User, UserSettings], Awaitable[object]]
#: Verify digest credentials for a method from a source host (with account lockout): the user and
#: device they prove, or why not (`ControlCore.authenticate`).
Authenticate = Callable[[Credentials, str, str], tuple[User, Device] | Refusal]


class TrunkLookup(Protocol):
    def get(self, trunk_id: str, /) -> Trunk | None: ...

    def all(self) -> list[Trunk]: ...

    def candidates(
        self, e164: str, busy: Mapping[str, int], emergency: bool = False, /
    ) -> tuple[list[Trunk], str]:
        """The trunks to try for a number, in order; with none, why."""
        ...

    def by_source(self, sidecar: str, host: str, port: int, /) -> Trunk | None:
        """The trunk carried by `sidecar` that a request from host:port came from."""
        ...
