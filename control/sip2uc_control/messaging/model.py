"""The short message as the control plane keeps it, and what it asks of sidecars."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sip2uc_core.sip.digest import Credentials

__all__ = [
    "DeliverMessage",
    "DeliveryState",
    "HandsetMessage",
    "MessageOrigin",
    "ShortMessage",
    "Verdict",
]


class MessageOrigin(enum.Enum):
    HANDSET = "handset"
    API = "api"
    UC = "uc"


class DeliveryState(enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class ShortMessage:
    """One message of the history; `seq` is its number and a watch's cursor."""

    seq: int
    #: The sending user's id; "" for the system or the UC side.
    sender_id: str
    sender_uri: str
    sender_display_name: str
    recipient_id: str
    recipient_uri: str
    text: str
    create_time: float
    origin: MessageOrigin
    state: DeliveryState
    attempted: int = 0
    delivered: int = 0
    failed: int = 0
    failure_reason: str = ""

    @property
    def name(self) -> str:
        return f"messages/{self.seq}"

    def involves(self, user_ids: frozenset[str]) -> bool:
        return self.sender_id in user_ids or self.recipient_id in user_ids


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverMessage:
    """A command to a sidecar: send a MESSAGE to one binding of the recipient."""

    delivery_id: str
    request_uri: str
    host: str
    port: int
    transport: str
    from_uri: str
    from_display_name: str
    to_uri: str
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class HandsetMessage:
    """A handset's MESSAGE as its sidecar passes it on."""

    sidecar: str
    source_host: str
    credentials: Credentials | None
    from_uri: str
    from_display_name: str
    request_uri: str
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What the sidecar answers a handset's MESSAGE."""

    status: int
    reason: str
    retry_after: int = 0
    accept: str = ""
    #: The message as kept, when one was (accepted, or refused because the recipient is offline).
    message: ShortMessage | None = None
