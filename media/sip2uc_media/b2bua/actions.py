"""What a leg asks of the sidecar around it: plain data, carried out by the asyncio adapter.

A leg (``legs.py``) never touches a socket, the relay or the control plane.  Every input returns
a list of these actions; the sidecar executes them in order.  They name control-plane concepts in
domain terms (``InviteRpc`` is the ``Invite`` RPC of docs/calls.md); the conversion to the
generated protobuf types happens in the sidecar, at the API boundary.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sip2uc_core.sip.endpoint import Endpoint
from sip2uc_core.sip.message import SipRequest, SipResponse
from sip2uc_core.sip.transaction import TransactionId

from ..rtp.relay import Direction, LegMedia
from .offer_answer import MediaSpec

__all__ = [
    "Action",
    "ByeRpc",
    "CancelRpc",
    "CancelTimer",
    "Challenge",
    "InviteRpc",
    "LegFinished",
    "LegState",
    "LegTimer",
    "PlayTone",
    "RelayBridge",
    "RelayRelease",
    "RelayUpdate",
    "ReportLeg",
    "SendAck",
    "SendRequest",
    "SendResponse",
    "StartTimer",
    "Tone",
]


class LegState(enum.Enum):
    """Leg progress as the control plane hears it (``LegState`` in sidecar.proto)."""

    TRYING = "trying"
    RINGING = "ringing"
    EARLY_MEDIA = "early media"
    ANSWERED = "answered"
    FAILED = "failed"
    ENDED = "ended"


class LegTimer(enum.Enum):
    SUCCESS_RETRANSMIT = "2xx retransmission / ACK wait"  # RFC 3261 §13.3.1.4
    RING_TIMEOUT = "ring timeout"
    CANCEL_GIVE_UP = "no final response after CANCEL"  # RFC 3261 §9.1: 64*T1
    TONE_END = "feedback tone played"


class Tone(enum.Enum):
    CONFIRM = "confirm"
    ERROR = "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResponse:
    """Send within server transaction ``txn_id`` (also a 2xx retransmission, RFC 6026 §8.7)."""

    txn_id: TransactionId
    response: SipResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """Answer ``txn_id`` with 407 and a fresh nonce, and count an authentication failure."""

    txn_id: TransactionId
    request: SipRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRequest:
    """Start a client transaction for ``request`` towards ``destination``."""

    leg_id: str
    request: SipRequest
    destination: Endpoint


@dataclass(frozen=True, slots=True, kw_only=True)
class SendAck:
    """Send an ACK for a 2xx end to end, outside any transaction (RFC 3261 §13.2.2.4)."""

    request: SipRequest
    destination: Endpoint


@dataclass(frozen=True, slots=True, kw_only=True)
class InviteRpc:
    """Ask the control plane to route the caller's INVITE; the answer comes back through
    ``InboundLeg.on_invite_result``."""

    leg_id: str
    offer: MediaSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelRpc:
    leg_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ByeRpc:
    leg_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportLeg:
    call_id: str
    leg_id: str
    state: LegState | None = None
    status: int = 0
    reason: str = ""
    media: MediaSpec | None = None
    dtmf_digits: str = ""
    direction: Direction | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayUpdate:
    """Give a relay leg (``relay_leg``) what its endpoint negotiated."""

    relay_leg: str
    media: LegMedia


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayBridge:
    """Join two relay legs in one session (media flows once both have a destination)."""

    session_id: str
    a: str
    b: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayRelease:
    """Close the relay legs (and any session they are in) and free their ports."""

    relay_legs: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayTone:
    """Send a feedback tone to the handset from its relay leg, in the law it chose."""

    relay_leg: str
    tone: Tone
    codec: str
    payload_type: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTimer:
    """(Re)arm ``timer`` of leg ``leg_id`` for absolute time ``at``; call ``on_timer`` then."""

    leg_id: str
    timer: LegTimer
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelTimer:
    leg_id: str
    timer: LegTimer


@dataclass(frozen=True, slots=True, kw_only=True)
class LegFinished:
    """The leg is over: forget it (and any transaction still open for it)."""

    leg_id: str


Action = (
    SendResponse
    | Challenge
    | SendRequest
    | SendAck
    | InviteRpc
    | CancelRpc
    | ByeRpc
    | ReportLeg
    | RelayUpdate
    | RelayBridge
    | RelayRelease
    | PlayTone
    | StartTimer
    | CancelTimer
    | LegFinished
)
