"""What a presence bridge is: the interface every UC platform's bridge implements.

A bridge translates between sip2uc presence and one UC platform. Everything that is the same for
every platform lives in the runner (`runner.BridgeRunner`): following
``PresenceService.WatchPresence`` from the saved cursor, coalescing bursts to the latest state
per user, bounding the work in flight, retrying, saving the cursor and the bridge's own state in
the control plane, reporting status, and bringing presence in with
``PresenceService.SetPresence`` / ``ClearPresence`` (source EXTERNAL, origin = the connector).
A bridge only has to:

- ``start`` — connect to the platform, given its configuration and the state it saved last;
- ``deliver`` — show one user's latest presence on the platform, returning once the platform
  has it (raise :class:`BridgeError` to have the runner retry with the then-latest state);
- ``reconcile`` — take the full list of users (at start, after a snapshot, periodically) and
  forget users that are gone or whose identity on the platform changed;
- report presence set on the platform by others through ``BridgeContext.bring_in``;
- tell its ``health`` and hand over changes to its saved state (``take_state_changes``);
- ``close`` — stop; with ``remove=True`` (the connector was deleted) also withdraw what it
  published.

A bridge whose platform carries short messages also implements :class:`MessageBridge`: the
runner then follows ``MessageService.WatchMessages`` and gives it every message accepted from a
handset or the API (``deliver_message``), and the bridge hands texts from the platform to
``BridgeContext.bring_in_message`` (sent to the user's handsets with ``SendMessage``, the
platform's sender as ``sender_uri``). Texts that came from the UC side are never given back.

Loops are impossible by construction: the runner never gives a bridge back a state that this
same connector brought in. When the deciding state of a user is EXTERNAL from this connector,
``deliver`` gets the user's *own* state instead (registration and calls: see
:func:`PresenceUpdate.own_state`), and ``bring_in`` always reports with this connector as origin.

Nothing here imports generated code: `convert` turns API messages into these types.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol

__all__ = [
    "Activity",
    "Availability",
    "Bridge",
    "BridgeContext",
    "BridgeError",
    "BridgeFactory",
    "BridgeHealth",
    "BridgeState",
    "ConnectorConfig",
    "InboundMessage",
    "InboundPresence",
    "MappedUser",
    "MessageBridge",
    "OutboundMessage",
    "PresenceSource",
    "PresenceUpdate",
    "StateChanges",
]


class Availability(StrEnum):
    AVAILABLE = "available"
    BUSY = "busy"
    IN_A_CALL = "in-a-call"
    DO_NOT_DISTURB = "do-not-disturb"
    BE_RIGHT_BACK = "be-right-back"
    AWAY = "away"
    OFFLINE = "offline"


class Activity(StrEnum):
    NONE = "none"
    RINGING = "ringing"
    IN_A_CALL = "in-a-call"


class PresenceSource(StrEnum):
    REGISTRATION = "registration"
    CALL = "call"
    MANUAL = "manual"
    EXTERNAL = "external"


class BridgeState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"


class BridgeError(Exception):
    """Delivering failed for a reason that may pass (the platform is unreachable, throttled,
    answered 5xx). The runner retries with backoff, always with the user's latest state."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PresenceUpdate:
    """One user's latest presence, as sip2uc decides it.

    ``removed`` says the user no longer exists (or no longer maps to the platform): the bridge
    withdraws what it shows for them.
    """

    user: str
    sip_uri: str = ""
    extension: str = ""
    availability: Availability = Availability.OFFLINE
    activity: Activity = Activity.NONE
    source: PresenceSource = PresenceSource.REGISTRATION
    origin: str = ""
    note: str = ""
    registered: bool = False
    #: When the change happened (epoch seconds); for snapshots, when the state began.
    changed_at: float = 0.0
    expires_at: float | None = None
    removed: bool = False

    def brought_in_by(self, connector: str) -> bool:
        """Whether the deciding state is one ``connector`` reported from its platform."""
        return self.source is PresenceSource.EXTERNAL and self.origin == connector

    def own_state(self) -> PresenceUpdate:
        """What the user's handsets say, without any manual or external state.

        Built from what every update carries (registered, activity), so it needs no knowledge of
        the lower layers. Used in place of a state the receiving connector brought in itself.
        """
        if self.activity is Activity.IN_A_CALL:
            availability, source = Availability.IN_A_CALL, PresenceSource.CALL
        elif self.registered:
            availability, source = Availability.AVAILABLE, PresenceSource.REGISTRATION
        else:
            availability, source = Availability.OFFLINE, PresenceSource.REGISTRATION
        return replace(
            self, availability=availability, source=source, origin="", note="", expires_at=None
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundPresence:
    """Presence set on the platform by someone else, to be brought into sip2uc.

    ``user`` is any user reference the API accepts (``users/{id}``, SIP URI, extension, E.164).
    ``availability`` None means the platform shows nothing that should override the handset:
    the connector's EXTERNAL state is cleared.
    """

    user: str
    availability: Availability | None
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundMessage:
    """A short message sip2uc accepted, for the platform: to `recipient` (``users/{id}``, SIP
    identity `recipient_uri`) from `sender_uri`."""

    name: str
    recipient: str
    recipient_uri: str
    sender: str
    sender_uri: str
    sender_display_name: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundMessage:
    """A short message from the platform for a sip2uc user (`user`, any user reference)."""

    user: str
    sender_uri: str
    sender_display_name: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MappedUser:
    """A sip2uc user with the identities bridges map by."""

    user: str
    sip_uri: str
    extension: str = ""
    entra_object_id: str = ""
    user_principal_name: str = ""
    disabled: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeHealth:
    state: BridgeState
    last_error: str = ""
    users_mapped: int = 0


@dataclass(slots=True)
class StateChanges:
    """Entries of the bridge's saved state to write (key -> bytes) or remove."""

    upserts: dict[str, bytes] = field(default_factory=dict)
    deletes: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.upserts or self.deletes)

    def merge_newer(self, newer: StateChanges) -> None:
        """Fold ``newer`` (taken after this) into this, the later write winning."""
        for key, value in newer.upserts.items():
            self.upserts[key] = value
            self.deletes.discard(key)
        for key in newer.deletes:
            self.upserts.pop(key, None)
            self.deletes.add(key)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorConfig:
    """A claimed connector: what a bridge is built from."""

    name: str
    kind: str
    display_name: str
    #: The kind's configuration as the API's field names (``sip_presence`` / ``teams``).
    settings: Mapping[str, object]
    #: Secret name -> value (``password``, ``client_secret``); never logged.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    update_time: float = 0.0


@dataclass(frozen=True, slots=True)
class BridgeContext:
    """What the runner gives a bridge to work with."""

    connector: ConnectorConfig
    #: The state the bridge saved last (key -> value).
    saved: Mapping[str, bytes]
    #: Report presence found on the platform; coalesced and applied by the runner.
    bring_in: Callable[[InboundPresence], None]
    log: logging.Logger
    #: Epoch seconds; the runner's clock.
    clock: Callable[[], float]
    #: Hand a short message from the platform to the user's handsets (`MessageBridge` only).
    bring_in_message: Callable[[InboundMessage], None] = lambda _message: None


class Bridge(Protocol):
    """A presence bridge to one UC platform (see the module docstring)."""

    #: How many ``deliver`` calls the runner may have running at once.
    max_concurrent_deliveries: int

    async def start(self, context: BridgeContext) -> None: ...

    async def deliver(self, update: PresenceUpdate) -> None: ...

    async def reconcile(self, users: Sequence[MappedUser]) -> None: ...

    def health(self) -> BridgeHealth: ...

    def take_state_changes(self) -> StateChanges: ...

    async def close(self, *, remove: bool) -> None: ...


class MessageBridge(Bridge, Protocol):
    """A bridge whose platform carries short messages (see the module docstring)."""

    async def deliver_message(self, message: OutboundMessage) -> None:
        """Send `message` to the platform when its recipient is on it; raise `BridgeError` when
        the platform refused it (it is not retried: the sender has had its answer)."""
        ...


#: Builds the bridge of a connector kind (``kinds.BRIDGES``).
BridgeFactory = Callable[[ConnectorConfig], Bridge]
