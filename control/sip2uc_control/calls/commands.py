"""Commands the control plane sends to sidecars (converted to messages at the API boundary)."""

from __future__ import annotations

from dataclasses import dataclass

from .model import MediaInfo


@dataclass(frozen=True)
class CreateLeg:
    call_id: str
    leg_id: str
    request_uri: str
    host: str
    port: int
    transport: str
    from_uri: str
    from_display_name: str
    to_uri: str
    peer_media: MediaInfo | None
    ring_timeout_seconds: int
    bridge_leg_id: str = ""
    #: Extra headers for the INVITE (a trunk's identity policy).
    headers: tuple[tuple[str, str], ...] = ()
    #: The trunk the leg goes to (empty: a handset).
    trunk_id: str = ""


@dataclass(frozen=True)
class AnswerLeg:
    call_id: str
    leg_id: str
    status: int
    peer_media: MediaInfo | None
    bridge_leg_id: str = ""


@dataclass(frozen=True)
class EndLeg:
    call_id: str
    leg_id: str
    status: int = 0
    reason: str = ""


@dataclass(frozen=True)
class InjectDtmf:
    call_id: str
    leg_id: str
    digits: str
    duration_ms: int = 100


@dataclass(frozen=True)
class UpdateMedia:
    call_id: str
    leg_id: str
    peer_media: MediaInfo
    bridge_leg_id: str = ""


Command = CreateLeg | AnswerLeg | EndLeg | InjectDtmf | UpdateMedia
