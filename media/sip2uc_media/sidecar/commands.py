"""What the control plane sends a sidecar on its session, in the sidecar's own terms.

The session's first message welcomes the sidecar with its settings; then come settings changes
and commands, each command with the id its result quotes, sometimes several in one batch.
`wire.py` makes these from the ``ConnectResponse`` messages of ``sidecar.proto``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from sip2uc_core.sip.digest import Algorithm
from sip2uc_core.sip.endpoint import Endpoint

from ..b2bua.legs import CreateLeg
from ..b2bua.offer_answer import MediaSpec
from ..trunk.upkeep import TrunkConfig
from .protection import BanPolicy

__all__ = [
    "AnswerLeg",
    "Batch",
    "Command",
    "CreateLeg",
    "DeliverMessage",
    "EdgeSettings",
    "EndLeg",
    "InjectDtmf",
    "LiftBan",
    "Notify",
    "Order",
    "SessionMessage",
    "SettingsUpdate",
    "UpdateMedia",
    "Welcome",
]

DEFAULT_DTMF_MS = 100
T = TypeVar("T")


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeSettings:
    """The settings the sidecar works with, with defaults for before the first welcome."""

    realm: str = "sip2uc"
    domain: str = ""
    allowed_networks: tuple[str, ...] = ()
    ban: BanPolicy = field(default_factory=BanPolicy)
    min_expires: int = 60
    max_expires: int = 3600
    #: Trunk sources (network, port or 0) whose requests are not challenged.
    trunk_sources: tuple[tuple[str, int], ...] = ()
    channel_limit: int = 0  # 0: only the relay's port range limits
    media_timeout: float = 60.0
    #: Digest user name -> the algorithms its device is challenged with, for the devices whose
    #: choice differs from the sidecar's default.
    device_algorithms: Mapping[str, tuple[Algorithm, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    #: The trunks this sidecar carries (registration, keep-alive).
    trunks: tuple[TrunkConfig, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingsUpdate:
    """Settings as the control plane sent them. None keeps the current value: the message cannot
    tell "not set" from 0, so a 0 never overrides. The lists are always taken as sent (empty:
    any network, no trunk source, every device challenged with the default)."""

    realm: str | None = None
    domain: str | None = None
    allowed_networks: tuple[str, ...] = ()
    trunk_sources: tuple[tuple[str, int], ...] = ()
    ban_threshold: int | None = None
    ban_window: float | None = None
    ban_seconds: float | None = None
    ban_user_names: int | None = None
    channel_limit: int | None = None
    media_timeout: float | None = None
    min_expires: int | None = None
    max_expires: int | None = None
    device_algorithms: tuple[tuple[str, tuple[Algorithm, ...]], ...] = ()
    trunks: tuple[TrunkConfig, ...] = ()

    def applied_to(self, base: EdgeSettings) -> EdgeSettings:
        return EdgeSettings(
            realm=_keep(self.realm, base.realm),
            domain=_keep(self.domain, base.domain),
            allowed_networks=self.allowed_networks,
            ban=BanPolicy(
                threshold=_keep(self.ban_threshold, base.ban.threshold),
                window=_keep(self.ban_window, base.ban.window),
                ban_seconds=_keep(self.ban_seconds, base.ban.ban_seconds),
                user_names=_keep(self.ban_user_names, base.ban.user_names),
            ),
            min_expires=_keep(self.min_expires, base.min_expires),
            max_expires=_keep(self.max_expires, base.max_expires),
            trunk_sources=self.trunk_sources,
            channel_limit=_keep(self.channel_limit, base.channel_limit),
            media_timeout=_keep(self.media_timeout, base.media_timeout),
            device_algorithms=MappingProxyType(dict(self.device_algorithms)),
            trunks=self.trunks,
        )


def _keep(value: T | None, current: T) -> T:
    return current if value is None else value


# -- commands (docs/calls.md) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerLeg:
    """Pass progress (180, 183) or the answer (200) to the caller's leg."""

    call_id: str
    leg_id: str
    status: int
    #: The callee side's media (its relay address and codecs).
    peer_media: MediaSpec | None = None
    #: The leg on this sidecar to bridge locally, if any.
    bridge_leg_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class EndLeg:
    """End a leg: a final status for an unanswered caller's leg, else CANCEL or BYE."""

    call_id: str
    leg_id: str
    status: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectDtmf:
    """Send RFC 4733 events on a leg."""

    call_id: str
    leg_id: str
    digits: str
    duration_ms: int = DEFAULT_DTMF_MS


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateMedia:
    """The other side's media changed (its relay address after a re-INVITE, hold)."""

    call_id: str
    leg_id: str
    peer_media: MediaSpec
    #: The other side's leg when it is on this sidecar (bridged locally).
    bridge_leg_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverMessage:
    """Deliver a short message (RFC 3428) to a handset; its answer is reported under
    `delivery_id` (`messages.py`)."""

    request_uri: str
    destination: Endpoint
    from_uri: str
    to_uri: str
    content_type: str
    body: bytes
    delivery_id: str = ""
    from_display_name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Notify:
    """Send a NOTIFY for a handset's subscription (RFC 6665). Reserved: not carried out yet."""

    subscription_id: str
    content_type: str
    body: bytes
    terminate: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class LiftBan:
    """Lift every ban of a source address (an operator asked)."""

    source: str


Command = (
    CreateLeg | AnswerLeg | EndLeg | InjectDtmf | UpdateMedia | DeliverMessage | Notify | LiftBan
)


# -- the session's messages ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Welcome:
    """The first message of a session."""

    settings: SettingsUpdate


@dataclass(frozen=True, slots=True)
class Order:
    """A command and the id its result must quote."""

    command_id: str
    command: Command


@dataclass(frozen=True, slots=True)
class Batch:
    """Settings changes and commands the control plane queued meanwhile, to be handled in order;
    their results go back together."""

    items: tuple[SettingsUpdate | Order, ...]


SessionMessage = Welcome | SettingsUpdate | Order | Batch
