"""The B2BUA's two leg state machines: a handset calling us, and us calling a handset.

Each leg is one SIP dialog between this sidecar and a handset, anchored on two relay legs: the
*handset* relay leg (id = the leg id, the port in the handset's SDP) and the *peer* relay leg
(``<leg id>/peer``, the port another sidecar's relay sends to; docs/calls.md).  When both parties
are on this sidecar the two handset relay legs are bridged directly and the peer ports idle.

The transitions are data: :data:`INBOUND` and :data:`OUTBOUND` map (state, input) to the next
state; a pair missing from a table means the input is ignored in that state (a late command, a
retransmission the transaction layer already answered).  The methods of the leg classes feed an
input through the table and build the actions the transition implies (``actions.py``); they
never do I/O.  Time comes in as ``now``, randomness through :class:`LegConfig.random_bytes`.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from sip2uc_core.sip.client_auth import ClientAuth
from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.sip.headers import Headers, NameAddr
from sip2uc_core.sip.message import SipRequest, SipResponse, make_response
from sip2uc_core.sip.sdp import SessionDescription
from sip2uc_core.sip.transaction import MAGIC_COOKIE, TransactionId
from sip2uc_core.sip.uri import SipUri, Uri, parse_uri

from ..rtp.relay import Direction
from .actions import (
    Action,
    ByeRpc,
    CancelRpc,
    CancelTimer,
    Challenge,
    InviteRpc,
    LegFinished,
    LegState,
    LegTimer,
    PlayTone,
    RelayBridge,
    RelayRelease,
    RelayUpdate,
    ReportLeg,
    SendAck,
    SendRequest,
    SendResponse,
    StartTimer,
    Tone,
)
from .dialog import Dialog, SuccessRetransmission, build_cancel
from .methods import ALLOW, NOT_SERVED
from .offer_answer import (
    MediaSpec,
    Negotiated,
    OfferAnswerError,
    answer_offer,
    build_offer,
    mirror,
    peer_leg_media,
    read_answer,
    spec_for_leg,
)

__all__ = [
    "ALLOW",
    "INBOUND",
    "OUTBOUND",
    "CreateLeg",
    "Disposition",
    "InboundLeg",
    "InboundState",
    "Input",
    "InviteResult",
    "LegConfig",
    "OutboundLeg",
    "OutboundState",
    "peer_relay_id",
]

#: Status for a caller's leg the control plane ended without saying why.
DEFAULT_END_STATUS = 480
DEFAULT_RING_TIMEOUT = 60.0
#: How long a caller's leg waits for an answer, counted from its INVITE: a control plane that
#: restarted or lost the call never sends the ``EndLegCommand``, and the handset would ring on
#: while its relay ports stay held (docs/calls.md "Ending").
DEFAULT_INBOUND_RING_DEADLINE = 180.0


def peer_relay_id(leg_id: str) -> str:
    """The relay leg that faces another sidecar's relay."""
    return f"{leg_id}/peer"


@dataclass(frozen=True, slots=True, kw_only=True)
class LegConfig:
    """What every leg of one sidecar shares."""

    sip_host: str  # our SIP address, for Via and Contact
    sip_port: int
    relay_host: str  # what SDP advertises
    random_bytes: Callable[[int], bytes]
    t1: float = 0.5
    t2: float = 4.0
    tone_seconds: float = 1.0
    #: Seconds from a handset's INVITE to our 408 when nothing answered it.
    inbound_ring_deadline: float = DEFAULT_INBOUND_RING_DEADLINE
    #: Listening ports of transports whose port differs from ``sip_port`` (TLS on 5061 while
    #: UDP and TCP share 5060), as (Transport.TLS, 5061) pairs.
    transport_ports: tuple[tuple[Transport, int], ...] = ()

    def tag(self) -> str:
        return self.random_bytes(6).hex()

    def branch(self) -> str:
        return MAGIC_COOKIE + self.random_bytes(12).hex()

    def port_for(self, transport: Transport) -> int:
        """Where this sidecar listens for ``transport``."""
        return next((p for t, p in self.transport_ports if t is transport), self.sip_port)

    def via(self, transport: Transport) -> str:
        # RFC 3261 §18.2.1: sent-by is where responses come back over this transport.
        port = self.port_for(transport)
        return f"SIP/2.0/{transport.via_name} {self.sip_host}:{port};branch={self.branch()};rport"

    def contact(self, transport: Transport) -> NameAddr:
        """Our target for in-dialog requests, reachable over the transport the dialog uses:
        a handset that called over TCP or TLS must send its BYE there too (RFC 3261 §12.1.1,
        §19.1.1 ``transport`` parameter), not to our UDP port."""
        uri = SipUri(host=self.sip_host, port=self.port_for(transport))
        if transport is not Transport.UDP:
            uri = uri.with_param("transport", transport.value)
        return NameAddr(uri=uri)

    def session_id(self) -> str:
        return str(int.from_bytes(self.random_bytes(4), "big"))


class Input(enum.Enum):
    # control plane
    ROUTING = "Invite answered ROUTING"
    REJECT = "Invite answered REJECT"
    UNAUTHORIZED = "Invite answered UNAUTHORIZED"
    FEEDBACK = "Invite answered FEEDBACK_TONE"
    PROGRESS = "AnswerLeg 180/183"
    ANSWER = "AnswerLeg 200"
    END = "EndLeg"
    UPDATE_MEDIA = "UpdateMedia"
    # handset
    CANCEL = "CANCEL received"
    ACK = "ACK received"
    BYE = "BYE received"
    REINVITE = "re-INVITE received"
    PROVISIONAL = "1xx received"
    SUCCESS = "2xx received"
    FAILURE = "final error received"
    TXN_TIMEOUT = "INVITE transaction timed out"
    # timers and media
    RESEND_2XX = "2xx retransmission due"
    ACK_TIMEOUT = "no ACK within 64*T1"
    RING_TIMEOUT = "ring timeout"
    CANCEL_TIMEOUT = "no final response 64*T1 after CANCEL"
    TONE_DONE = "feedback tone played"
    MEDIA_TIMEOUT = "media timeout"


class InboundState(enum.Enum):
    TRYING = "waiting for the control plane"
    CANCELLED = "cancelled while the control plane decides"
    ROUTING = "routing"
    EARLY = "1xx sent"
    ANSWERED = "2xx sent, waiting for ACK"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class OutboundState(enum.Enum):
    CALLING = "INVITE sent"
    PROCEEDING = "1xx received"
    CANCEL_PENDING = "CANCEL due at the first 1xx"  # RFC 3261 §9.1
    CANCELLING = "CANCEL sent"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


_I = Input
_IS = InboundState
_OS = OutboundState


def _each(
    states: tuple[enum.Enum, ...], inputs: tuple[Input, ...], target: enum.Enum
) -> dict[tuple[enum.Enum, Input], enum.Enum]:
    return {(s, i): target for s in states for i in inputs}


#: The caller's leg (docs/calls.md "A handset calls").
INBOUND: dict[tuple[enum.Enum, Input], enum.Enum] = {
    (_IS.TRYING, _I.ROUTING): _IS.ROUTING,
    **_each((_IS.TRYING,), (_I.REJECT, _I.UNAUTHORIZED), _IS.TERMINATED),
    (_IS.TRYING, _I.FEEDBACK): _IS.ANSWERED,
    (_IS.TRYING, _I.CANCEL): _IS.CANCELLED,
    # The ring deadline: 408 at once; the Invite RPC's own deadline bounds the wait for the
    # decision, which then only tells whether the control plane must hear (as after a CANCEL).
    (_IS.TRYING, _I.RING_TIMEOUT): _IS.CANCELLED,
    # The 487 went out already; the decision only tells whether the control plane must hear.
    **_each(
        (_IS.CANCELLED,), (_I.ROUTING, _I.REJECT, _I.UNAUTHORIZED, _I.FEEDBACK), _IS.TERMINATED
    ),
    **_each((_IS.ROUTING, _IS.EARLY), (_I.PROGRESS,), _IS.EARLY),
    **_each((_IS.ROUTING, _IS.EARLY), (_I.ANSWER,), _IS.ANSWERED),
    **_each((_IS.ROUTING, _IS.EARLY), (_I.END, _I.CANCEL, _I.RING_TIMEOUT), _IS.TERMINATED),
    (_IS.ANSWERED, _I.ACK): _IS.CONFIRMED,
    (_IS.ANSWERED, _I.RESEND_2XX): _IS.ANSWERED,
    (_IS.CONFIRMED, _I.RESEND_2XX): _IS.CONFIRMED,
    # §15: no BYE before the ACK; ending is remembered and done on the ACK (or its timeout).
    **_each((_IS.ANSWERED,), (_I.END, _I.TONE_DONE, _I.MEDIA_TIMEOUT), _IS.ANSWERED),
    **_each((_IS.ANSWERED, _IS.CONFIRMED), (_I.ACK_TIMEOUT, _I.BYE), _IS.TERMINATED),
    **_each((_IS.CONFIRMED,), (_I.END, _I.TONE_DONE, _I.MEDIA_TIMEOUT), _IS.TERMINATED),
    **_each((_IS.CONFIRMED,), (_I.ACK, _I.REINVITE, _I.UPDATE_MEDIA), _IS.CONFIRMED),
    **_each((_IS.CONFIRMED,), (_I.SUCCESS, _I.FAILURE), _IS.CONFIRMED),  # our re-INVITE
}

#: A leg the control plane asked us to create (docs/calls.md "Ringing").
OUTBOUND: dict[tuple[enum.Enum, Input], enum.Enum] = {
    **_each((_OS.CALLING, _OS.PROCEEDING), (_I.PROVISIONAL,), _OS.PROCEEDING),
    **_each((_OS.CALLING, _OS.PROCEEDING), (_I.SUCCESS,), _OS.CONFIRMED),
    **_each((_OS.CALLING, _OS.PROCEEDING), (_I.FAILURE, _I.TXN_TIMEOUT), _OS.TERMINATED),
    # §9.1: a CANCEL waits for a provisional response.
    **_each((_OS.CALLING,), (_I.END, _I.RING_TIMEOUT), _OS.CANCEL_PENDING),
    **_each((_OS.PROCEEDING,), (_I.END, _I.RING_TIMEOUT), _OS.CANCELLING),
    (_OS.CANCEL_PENDING, _I.PROVISIONAL): _OS.CANCELLING,
    # A 2xx crossing the CANCEL establishes the dialog anyway: ACK it, then BYE (§15).
    **_each(
        (_OS.CANCEL_PENDING, _OS.CANCELLING),
        (_I.SUCCESS, _I.FAILURE, _I.TXN_TIMEOUT, _I.CANCEL_TIMEOUT),
        _OS.TERMINATED,
    ),
    **_each((_OS.CONFIRMED,), (_I.END, _I.MEDIA_TIMEOUT, _I.BYE, _I.ACK_TIMEOUT), _OS.TERMINATED),
    **_each(
        (_OS.CONFIRMED,),
        (_I.SUCCESS, _I.FAILURE, _I.REINVITE, _I.UPDATE_MEDIA, _I.ACK, _I.RESEND_2XX),
        _OS.CONFIRMED,
    ),
}


class Disposition(enum.Enum):
    ROUTING = "routing"
    REJECT = "reject"
    UNAUTHORIZED = "unauthorized"
    FEEDBACK_TONE = "feedback tone"


@dataclass(frozen=True, slots=True, kw_only=True)
class InviteResult:
    """The control plane's answer to an ``Invite`` RPC (``InviteResponse``)."""

    disposition: Disposition
    call_id: str = ""
    status: int = 0
    reason: str = ""
    retry_after: int = 0
    tone: Tone = Tone.CONFIRM


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateLeg:
    """``CreateLegCommand`` in domain terms."""

    call_id: str
    leg_id: str
    request_uri: str
    destination: Endpoint
    from_uri: str
    from_display_name: str = ""
    to_uri: str
    peer_media: MediaSpec | None = None
    ring_timeout: float = DEFAULT_RING_TIMEOUT
    bridge_leg_id: str = ""
    #: Headers to add to the INVITE (a trunk's identity policy), already screened.
    extra_headers: tuple[tuple[str, str], ...] = ()
    #: The trunk the leg goes to (empty: a handset).
    trunk_id: str = ""


@dataclass(slots=True)
class _ServerInvite:
    """A 2xx we sent to an INVITE (initial or re-INVITE) and resend until its ACK."""

    txn_id: TransactionId
    response: SipResponse
    retransmission: SuccessRetransmission
    offered_in_2xx: bool = False  # no offer in the INVITE: the answer comes in the ACK


@dataclass(slots=True)
class _ClientReinvite:
    request: SipRequest
    direction: Direction


@dataclass(frozen=True, slots=True)
class _EarlyAnswer:
    status: int
    peer: MediaSpec | None
    bridge: str


@dataclass(frozen=True, slots=True)
class _EarlyEnd:
    status: int
    reason: str


_EarlyCommand = _EarlyAnswer | _EarlyEnd


class _Leg:
    """What both leg kinds share: the dialog once established and the in-call behaviour."""

    table: dict[tuple[enum.Enum, Input], enum.Enum]

    def __init__(
        self,
        leg_id: str,
        *,
        config: LegConfig,
        destination: Endpoint,
        relay_port: int,
        peer_port: int,
        state: enum.Enum,
    ) -> None:
        self.leg_id = leg_id
        self.config = config
        self.destination = destination
        self.relay_port = relay_port
        self.peer_port = peer_port
        self.state = state
        self.call_id = ""
        self.dialog: Dialog | None = None
        self.negotiated: Negotiated | None = None
        self.session_id = config.session_id()
        self.session_version = 1
        self.peer_media: MediaSpec | None = None
        #: The relay leg the handset's relay leg is bridged with ("" before any).
        self.joined = ""
        #: The other party's leg when it is on this sidecar.
        self.local_bridge = ""
        #: Direction we last offered or answered towards the handset.
        self.our_direction = Direction.SENDRECV
        self._server_invite: _ServerInvite | None = None
        self._client_reinvite: _ClientReinvite | None = None
        self._wanted_direction: Direction | None = None
        self._end_after_ack: tuple[str, bool] | None = None  # (reason, tell control)

    # --- the table --------------------------------------------------------------------------

    def _go(self, event: Input) -> bool:
        """Apply ``event``'s transition; False (and no change) when the table has none."""
        key = (self.state, event)
        if key not in self.table:
            return False
        self.state = self.table[key]
        return True

    @property
    def finished(self) -> bool:
        return self.state in (InboundState.TERMINATED, OutboundState.TERMINATED)

    @property
    def key(self) -> tuple[str, str]:
        """(Call-ID, our tag): how the handset's in-dialog requests and the responses to ours
        find this leg (our tag is the To tag of the former and the From tag of the latter)."""
        raise NotImplementedError

    # --- helpers ---------------------------------------------------------------------------

    @property
    def transport(self) -> Transport:
        return self.destination.transport

    def _respond(
        self,
        txn_id: TransactionId,
        request: SipRequest,
        status: int,
        *,
        reason: str | None = None,
        body: bytes = b"",
        extra: tuple[tuple[str, str], ...] = (),
    ) -> SendResponse:
        headers: list[tuple[str, str]] = list(extra)
        tag = self.dialog.local_tag if self.dialog is not None else self._local_tag()
        if 100 < status < 300 and request.method == "INVITE":
            # RFC 3261 §12.1.1: proxies that record-routed (a UC platform's) stay in the path.
            headers.extend(("Record-Route", v) for v in request.headers.get_all("Record-Route"))
            headers.append(("Contact", str(self.config.contact(self.transport))))
        if 200 <= status < 300 and request.method in ("INVITE", "OPTIONS"):
            headers.append(("Allow", ALLOW))
        if body:
            headers.append(("Content-Type", "application/sdp"))
        response = make_response(
            request,
            status,
            reason,
            to_tag=tag if status > 100 else None,
            headers=headers,
            body=body,
        )
        return SendResponse(txn_id=txn_id, response=response)

    def _local_tag(self) -> str:
        raise NotImplementedError

    def _sdp(self, direction: Direction, negotiated: Negotiated | None) -> SessionDescription:
        """Our side of the session: the relay port, the handset's law when known."""
        self.our_direction = direction
        audio_pts = (negotiated.audio_pt,) if negotiated is not None else (0, 8)
        te = negotiated.telephone_event_pt if negotiated is not None else 101
        return build_offer(
            address=self.config.relay_host,
            port=self.relay_port,
            session_id=self.session_id,
            session_version=self.session_version,
            direction=direction,
            audio_pts=audio_pts,
            telephone_event_pt=te,
        )

    def _offer_sdp(self, direction: Direction) -> SessionDescription:
        self.our_direction = direction
        return build_offer(
            address=self.config.relay_host,
            port=self.relay_port,
            session_id=self.session_id,
            session_version=self.session_version,
            direction=direction,
        )

    def _report(
        self,
        *,
        state: LegState | None = None,
        status: int = 0,
        reason: str = "",
        media: MediaSpec | None = None,
        dtmf_digits: str = "",
        direction: Direction | None = None,
    ) -> list[Action]:
        if not self.call_id:
            return []  # not routed (yet): nobody to tell
        return [
            ReportLeg(
                call_id=self.call_id,
                leg_id=self.leg_id,
                state=state,
                status=status,
                reason=reason,
                media=media,
                dtmf_digits=dtmf_digits,
                direction=direction,
            )
        ]

    def _handset_media(self, negotiated: Negotiated) -> RelayUpdate:
        # RTP latches only onto the SDP's IP or the one the handset signals from (NAT).
        media = negotiated.leg_media(expected_ip=self.destination.host)
        return RelayUpdate(relay_leg=self.leg_id, media=media)

    def _connect_peer(self, peer: MediaSpec | None, bridge_leg_id: str) -> list[Action]:
        """Point the relay at the other party: a local leg, or another sidecar's relay.

        The other party may change while the call is set up: a fork on this sidecar rang (and
        was bridged for its ringing) but a fork on another sidecar answered, or the reverse.
        The handset's relay leg then joins the new party; a bridge that stayed with the first
        would leave the call silent both ways."""
        if bridge_leg_id:
            self.local_bridge = bridge_leg_id
            return self._join(bridge_leg_id, f"{bridge_leg_id}+{self.leg_id}", bridge_leg_id)
        if peer is None:
            return []
        self.peer_media = peer
        stream_pt = self._stream_pt(peer)
        try:
            media = peer_leg_media(peer, audio_pt=stream_pt)
        except OfferAnswerError:
            return []
        self.local_bridge = ""
        actions: list[Action] = [RelayUpdate(relay_leg=peer_relay_id(self.leg_id), media=media)]
        peer_leg = peer_relay_id(self.leg_id)
        actions.extend(self._join(peer_leg, self.leg_id, self.leg_id))
        return actions

    def _join(self, other: str, session_id: str, first: str) -> list[Action]:
        """Bridge the handset's relay leg with ``other`` unless it is joined to it already."""
        if self.joined == other:
            return []
        self.joined = other
        second = self.leg_id if first != self.leg_id else other
        return [RelayBridge(session_id=session_id, a=first, b=second)]

    def _stream_pt(self, peer: MediaSpec) -> int | None:
        """The law on the stream between relays: the answering side's first (docs/calls.md)."""
        return peer.audio_pt

    def _release(self) -> list[Action]:
        return [
            RelayRelease(relay_legs=(self.leg_id, peer_relay_id(self.leg_id))),
            CancelTimer(leg_id=self.leg_id, timer=LegTimer.SUCCESS_RETRANSMIT),
            LegFinished(leg_id=self.leg_id),
        ]

    @property
    def established(self) -> bool:
        """Answered with the handset (the 2xx sent or received)."""
        return self.state in (
            InboundState.ANSWERED,
            InboundState.CONFIRMED,
            OutboundState.CONFIRMED,
        )

    def peer_spec(self) -> MediaSpec:
        """The leg's peer endpoint with the law its handset speaks."""
        return self._spec()

    @property
    def handset_direction(self) -> Direction:
        """The direction the handset last asked for."""
        return self.negotiated.direction if self.negotiated is not None else Direction.SENDRECV

    def _spec(self, direction: Direction | None = None) -> MediaSpec:
        return spec_for_leg(
            host=self.config.relay_host,
            port=self.peer_port,
            negotiated=self.negotiated,
            direction=direction,
        )

    def _send_bye(self) -> list[Action]:
        assert self.dialog is not None
        bye = self.dialog.build_request("BYE", via=self.config.via(self.transport))
        return [SendRequest(leg_id=self.leg_id, request=bye, destination=self.destination)]

    def _start_2xx(
        self, txn_id: TransactionId, response: SipResponse, now: float, *, offered: bool = False
    ) -> list[Action]:
        retransmission = SuccessRetransmission(
            t1=self.config.t1, t2=self.config.t2, reliable=self.destination.reliable
        )
        retransmission.start(now)
        self._server_invite = _ServerInvite(txn_id, response, retransmission, offered)
        deadline = retransmission.next_deadline()
        assert deadline is not None
        return [
            SendResponse(txn_id=txn_id, response=response),
            StartTimer(leg_id=self.leg_id, timer=LegTimer.SUCCESS_RETRANSMIT, at=deadline),
        ]

    # --- in-dialog requests ------------------------------------------------------------------

    def on_request(
        self, request: SipRequest, txn_id: TransactionId | None, now: float
    ) -> list[Action]:
        """A request within this leg's dialog (matched by the sidecar on Call-ID and tags)."""
        method = request.method
        if method == "ACK":
            return self._on_ack(request, now)
        assert txn_id is not None
        if self.dialog is not None and not self.dialog.accept_remote_cseq(request):
            return [self._respond(txn_id, request, 500, reason="CSeq Out Of Order")]
        if method == "BYE":
            return self._on_bye(request, txn_id)
        if method == "INVITE":
            return self._on_reinvite(request, txn_id, now)
        if method in ("OPTIONS", "INFO"):
            return [self._respond(txn_id, request, 200)]
        # A REFER (transfer) and the other known methods we do not serve: 405, which ends only
        # the transaction (RFC 5057 §5.1); the handset keeps its call.
        status = 405 if method in NOT_SERVED else 501
        return [self._respond(txn_id, request, status, extra=(("Allow", ALLOW),))]

    def _on_ack(self, request: SipRequest, now: float) -> list[Action]:
        pending = self._server_invite
        if pending is None or request.cseq.seq != pending.response.cseq.seq:
            return []
        if not self._go(Input.ACK):
            return []
        pending.retransmission.ack()
        self._server_invite = None
        actions: list[Action] = [CancelTimer(leg_id=self.leg_id, timer=LegTimer.SUCCESS_RETRANSMIT)]
        if pending.offered_in_2xx and request.body:
            try:
                negotiated = read_answer(request.body)
            except OfferAnswerError:
                negotiated = None
            if negotiated is not None:
                actions.extend(self._negotiated(negotiated))
        actions.extend(self._after_ack(now))
        if self._end_after_ack is not None and self._go(Input.END):
            reason, tell = self._end_after_ack
            self._end_after_ack = None
            actions.extend(self._end_confirmed(reason, tell_control=tell))
        return actions

    def _after_ack(self, now: float) -> list[Action]:
        return []

    def _negotiated(self, negotiated: Negotiated) -> list[Action]:
        """A new offer/answer result with the handset: update the relay, report hold."""
        before = self.negotiated
        self.negotiated = negotiated
        actions: list[Action] = [self._handset_media(negotiated)]
        if before is not None and before.direction != negotiated.direction:
            actions.extend(self._report(direction=negotiated.direction))
        return actions

    def _on_bye(self, request: SipRequest, txn_id: TransactionId) -> list[Action]:
        if not self._go(Input.BYE):
            return [self._respond(txn_id, request, 481)]
        return [
            self._respond(txn_id, request, 200),
            ByeRpc(leg_id=self.leg_id, reason="bye"),
            *self._release(),
        ]

    def _on_reinvite(self, request: SipRequest, txn_id: TransactionId, now: float) -> list[Action]:
        if (self.state, Input.REINVITE) not in self.table:
            # §14.2: a re-INVITE while the first INVITE is unanswered
            return [self._respond(txn_id, request, 500, extra=(("Retry-After", "1"),))]
        if self._client_reinvite is not None or self._server_invite is not None:
            return [self._respond(txn_id, request, 491)]  # §14.2 glare
        assert self.dialog is not None
        self._go(Input.REINVITE)
        self.dialog.refresh_target(request)
        self.session_version += 1
        if not request.body:
            # An offer-less re-INVITE: we offer in the 2xx, the answer comes in the ACK.
            sdp = self._offer_sdp(self.our_direction)
            response = self._respond(txn_id, request, 200, body=sdp.serialize()).response
            return self._start_2xx(txn_id, response, now, offered=True)
        try:
            answer, negotiated = answer_offer(
                request.body,
                address=self.config.relay_host,
                port=self.relay_port,
                session_id=self.session_id,
                session_version=self.session_version,
            )
        except OfferAnswerError as exc:
            # §14.2: a failed re-INVITE leaves the session as it was.
            self.session_version -= 1
            return [self._respond(txn_id, request, exc.status)]
        self.our_direction = mirror(negotiated.direction)
        response = self._respond(txn_id, request, 200, body=answer.serialize()).response
        return [*self._negotiated(negotiated), *self._start_2xx(txn_id, response, now)]

    # --- responses to our in-dialog requests ----------------------------------------------

    def _on_reinvite_response(self, response: SipResponse, now: float) -> list[Action]:
        pending = self._client_reinvite
        if pending is None or response.cseq.seq != pending.request.cseq.seq:
            if 200 <= response.status < 300 and self.dialog is not None:
                # A retransmitted 2xx to a re-INVITE we completed: our ACK was lost.
                ack = self.dialog.build_ack(response.cseq.seq, via=self.config.via(self.transport))
                return [SendAck(request=ack, destination=self.destination)]
            return []
        if response.status < 200:
            return []
        self._client_reinvite = None
        actions: list[Action] = []
        if response.status < 300:
            assert self.dialog is not None
            self.dialog.refresh_target(response)
            ack = self.dialog.build_ack(response.cseq.seq, via=self.config.via(self.transport))
            actions.append(SendAck(request=ack, destination=self.destination))
            try:
                negotiated = read_answer(response.body)
            except OfferAnswerError:
                negotiated = None
            if negotiated is not None:
                self.negotiated = negotiated
                actions.append(self._handset_media(negotiated))
        else:
            self.session_version -= 1
        if self._wanted_direction is not None and self._wanted_direction != self.our_direction:
            actions.extend(self._reinvite(self._wanted_direction))
        return actions

    def _reinvite(self, direction: Direction) -> list[Action]:
        """Re-offer the relay to the handset with ``direction`` (hold/resume from the far end)."""
        self._wanted_direction = direction
        if self._client_reinvite is not None or self._server_invite is not None:
            return []  # sent once the transaction in progress completes
        assert self.dialog is not None
        self.session_version += 1
        sdp = self._offer_sdp(direction)
        request = self.dialog.build_request(
            "INVITE", via=self.config.via(self.transport), body=sdp.serialize()
        )
        self._client_reinvite = _ClientReinvite(request, direction)
        return [SendRequest(leg_id=self.leg_id, request=request, destination=self.destination)]

    # --- commands and events common to both kinds -------------------------------------------

    def on_update_media(self, peer: MediaSpec, bridge_leg_id: str, now: float) -> list[Action]:
        """``UpdateMediaCommand``: the far side moved or changed direction (hold/resume), or
        answered (click-to-dial: the target, here when ``bridge_leg_id`` names its leg)."""
        if not self._go(Input.UPDATE_MEDIA):
            self.peer_media = peer
            return []
        actions = self._connect_peer(peer, bridge_leg_id)
        wanted = mirror(peer.direction)
        if wanted != self.our_direction or self._client_reinvite is not None:
            actions.extend(self._reinvite(wanted))
        return actions

    def on_dtmf(self, digit: str, now: float) -> list[Action]:
        """A digit the relay detected from this leg's handset."""
        return self._report(dtmf_digits=digit)

    def on_media_timeout(self, now: float) -> list[Action]:
        if not self._go(Input.MEDIA_TIMEOUT):
            return []
        return self._end_confirmed("media timeout", tell_control=True)

    def _end_confirmed(self, reason: str, *, tell_control: bool) -> list[Action]:
        """BYE the handset, or remember to once the ACK is in (RFC 3261 §15)."""
        if self._server_invite is not None and self.state is InboundState.ANSWERED:
            self._end_after_ack = (reason, tell_control)
            return []
        actions = self._send_bye()
        if tell_control:
            actions.append(ByeRpc(leg_id=self.leg_id, reason=reason))
        actions.extend(self._release())
        return actions

    def on_timer(self, timer: LegTimer, now: float) -> list[Action]:
        if timer is LegTimer.SUCCESS_RETRANSMIT:
            return self._on_success_timer(now)
        return self._on_other_timer(timer, now)

    def _on_other_timer(self, timer: LegTimer, now: float) -> list[Action]:
        return []

    def _on_success_timer(self, now: float) -> list[Action]:
        pending = self._server_invite
        if pending is None:
            return []
        due = pending.retransmission.poll(now)
        if due == "resend":
            if not self._go(Input.RESEND_2XX):
                return []
            deadline = pending.retransmission.next_deadline()
            assert deadline is not None
            return [
                SendResponse(txn_id=pending.txn_id, response=pending.response),
                StartTimer(leg_id=self.leg_id, timer=LegTimer.SUCCESS_RETRANSMIT, at=deadline),
            ]
        if due == "give up":
            # §13.3.1.4: no ACK in 64*T1 - the dialog is confirmed but must end with a BYE.
            self._server_invite = None
            if not self._go(Input.ACK_TIMEOUT):
                return []
            actions = self._send_bye()
            actions.append(ByeRpc(leg_id=self.leg_id, reason="no ACK"))
            actions.extend(self._release())
            return actions
        deadline = pending.retransmission.next_deadline()
        if deadline is None:
            return []
        return [StartTimer(leg_id=self.leg_id, timer=LegTimer.SUCCESS_RETRANSMIT, at=deadline)]


class InboundLeg(_Leg):
    """A handset's INVITE to us: the caller's leg.

    ``start`` answers 100, negotiates the handset's offer (488 without G.711) and asks the
    control plane to route; the decision comes back through ``on_invite_result`` and the callee's
    progress through ``on_answer_command`` / ``on_end_command``.
    """

    table = INBOUND

    def __init__(
        self,
        leg_id: str,
        *,
        invite: SipRequest,
        txn_id: TransactionId,
        source: Endpoint,
        relay_port: int,
        peer_port: int,
        config: LegConfig,
        to_tag: str | None = None,
    ) -> None:
        super().__init__(
            leg_id,
            config=config,
            destination=source,
            relay_port=relay_port,
            peer_port=peer_port,
            state=InboundState.TRYING,
        )
        self.invite = invite
        self.txn_id = txn_id
        self.to_tag = to_tag or config.tag()
        self._answer_sdp: SessionDescription | None = None
        self._tone = Tone.CONFIRM
        #: Commands for this leg that overtook the ``Invite`` answer: the control plane may ring,
        #: hear a fast 486 or 200 and command this leg before the Invite's answer is read here
        #: (commands and answers come on separate HTTP/2 streams). Replayed once it is ROUTING.
        self._early_commands: list[_EarlyCommand] = []

    def _local_tag(self) -> str:
        return self.to_tag

    @property
    def key(self) -> tuple[str, str]:
        return (self.invite.call_id, self.to_tag)

    def start(self, now: float) -> list[Action]:
        trying = self._respond(self.txn_id, self.invite, 100)
        if not self.invite.body:
            # Offer-less INVITE (RFC 3264 §5): we offer in the 2xx; the answer comes in the ACK.
            self.negotiated = None
            return [trying, InviteRpc(leg_id=self.leg_id, offer=self._spec()), self._deadline(now)]
        try:
            answer, negotiated = answer_offer(
                self.invite.body,
                address=self.config.relay_host,
                port=self.relay_port,
                session_id=self.session_id,
                session_version=self.session_version,
            )
        except OfferAnswerError as exc:
            self.state = InboundState.TERMINATED
            return [
                self._respond(self.txn_id, self.invite, exc.status),
                RelayRelease(relay_legs=(self.leg_id, peer_relay_id(self.leg_id))),
                LegFinished(leg_id=self.leg_id),
            ]
        self.negotiated = negotiated
        self.our_direction = mirror(negotiated.direction)
        self._answer_sdp = answer
        return [
            trying,
            self._handset_media(negotiated),
            InviteRpc(leg_id=self.leg_id, offer=self._spec()),
            self._deadline(now),
        ]

    def _deadline(self, now: float) -> StartTimer:
        return StartTimer(
            leg_id=self.leg_id,
            timer=LegTimer.RING_TIMEOUT,
            at=now + self.config.inbound_ring_deadline,
        )

    def _reject(self, status: int, reason: str = "", retry_after: int = 0) -> list[Action]:
        extra = (("Retry-After", str(retry_after)),) if retry_after else ()
        return [
            self._respond(self.txn_id, self.invite, status, reason=reason or None, extra=extra),
            *self._release(),
        ]

    def on_invite_result(self, result: InviteResult, now: float) -> list[Action]:
        was_cancelled = self.state is InboundState.CANCELLED
        event = {
            Disposition.ROUTING: Input.ROUTING,
            Disposition.REJECT: Input.REJECT,
            Disposition.UNAUTHORIZED: Input.UNAUTHORIZED,
            Disposition.FEEDBACK_TONE: Input.FEEDBACK,
        }[result.disposition]
        if not self._go(event):
            return []
        self.call_id = result.call_id
        if was_cancelled:
            actions: list[Action] = []
            if result.disposition is Disposition.ROUTING:
                actions.append(CancelRpc(leg_id=self.leg_id))
            return [*actions, *self._release()]
        if result.disposition is Disposition.ROUTING:
            actions = []
            early, self._early_commands = self._early_commands, []
            for command in early:
                if isinstance(command, _EarlyAnswer):
                    actions.extend(
                        self.on_answer_command(command.status, command.peer, command.bridge, now)
                    )
                else:
                    actions.extend(self.on_end_command(command.status, command.reason, now))
            return actions
        self._early_commands.clear()
        if result.disposition is Disposition.REJECT:
            return self._reject(
                result.status or DEFAULT_END_STATUS, result.reason, result.retry_after
            )
        if result.disposition is Disposition.UNAUTHORIZED:
            return [
                Challenge(txn_id=self.txn_id, request=self.invite),
                RelayRelease(relay_legs=(self.leg_id, peer_relay_id(self.leg_id))),
                LegFinished(leg_id=self.leg_id),
            ]
        # Presence code: answer, play the tone, BYE after it (docs/calls.md).
        self._tone = result.tone
        actions = self._answer(now)
        actions.append(
            PlayTone(
                relay_leg=self.leg_id,
                tone=result.tone,
                codec=self.negotiated.codec if self.negotiated else "PCMU",
                payload_type=self.negotiated.audio_pt if self.negotiated else 0,
            )
        )
        actions.append(
            StartTimer(
                leg_id=self.leg_id, timer=LegTimer.TONE_END, at=now + self.config.tone_seconds
            )
        )
        return actions

    def _answer(self, now: float) -> list[Action]:
        self.dialog = Dialog.as_uas(
            self.invite,
            local_tag=self.to_tag,
            local_contact=self.config.contact(self.transport),
        )
        sdp = self._answer_sdp or self._offer_sdp(Direction.SENDRECV)
        response = self._respond(self.txn_id, self.invite, 200, body=sdp.serialize()).response
        return [
            CancelTimer(leg_id=self.leg_id, timer=LegTimer.RING_TIMEOUT),
            *self._start_2xx(self.txn_id, response, now, offered=self._answer_sdp is None),
        ]

    def on_answer_command(
        self, status: int, peer: MediaSpec | None, bridge_leg_id: str, now: float
    ) -> list[Action]:
        """``AnswerLegCommand``: the callee side rings (180), has early media (183) or answered."""
        if self.state is InboundState.TRYING:
            self._early_commands.append(_EarlyAnswer(status, peer, bridge_leg_id))
            return []
        if 100 < status < 200:
            if not self._go(Input.PROGRESS):
                return []
            actions = self._connect_peer(peer, bridge_leg_id)
            body = b""
            if status == 183 and (peer is not None or bridge_leg_id) and self._answer_sdp:
                body = self._answer_sdp.serialize()
            actions.append(self._respond(self.txn_id, self.invite, status, body=body))
            return actions
        if not 200 <= status < 300 or not self._go(Input.ANSWER):
            return []
        actions = self._connect_peer(peer, bridge_leg_id)
        actions.extend(self._answer(now))
        return actions

    def on_end_command(self, status: int, reason: str, now: float) -> list[Action]:
        """``EndLegCommand``: a final error before the answer, a BYE after it."""
        if self.state is InboundState.TRYING:
            self._early_commands.append(_EarlyEnd(status, reason))
            return []
        if self.state in (InboundState.ROUTING, InboundState.EARLY):
            self._go(Input.END)
            return self._reject(status or DEFAULT_END_STATUS, reason)
        if self.state in (InboundState.ANSWERED, InboundState.CONFIRMED):
            self._go(Input.END)
            return self._end_confirmed(reason or "ended", tell_control=False)
        return []

    def on_cancel(
        self, cancel: SipRequest, cancel_txn_id: TransactionId, now: float
    ) -> list[Action]:
        """A CANCEL for our INVITE: 200 to it, and 487 to the INVITE if still unanswered
        (RFC 3261 §9.2); the control plane hears through ``Cancel``."""
        ok = SendResponse(
            txn_id=cancel_txn_id, response=make_response(cancel, 200, to_tag=self.to_tag)
        )
        was_trying = self.state is InboundState.TRYING
        if not self._go(Input.CANCEL):
            return [ok]
        terminated = self._respond(self.txn_id, self.invite, 487)
        if was_trying:
            return [ok, terminated]  # the Cancel RPC follows the routing decision
        return [ok, terminated, CancelRpc(leg_id=self.leg_id), *self._release()]

    def on_response(self, response: SipResponse, now: float) -> list[Action]:
        """A response to a request we sent within the dialog (re-INVITE, BYE)."""
        if response.cseq.method == "INVITE":
            if not self._go(Input.SUCCESS if response.status < 300 else Input.FAILURE):
                return []
            return self._on_reinvite_response(response, now)
        return []

    def _on_other_timer(self, timer: LegTimer, now: float) -> list[Action]:
        if timer is LegTimer.TONE_END and self._go(Input.TONE_DONE):
            return self._end_confirmed("feedback tone", tell_control=True)
        if timer is LegTimer.RING_TIMEOUT:
            return self._on_ring_deadline()
        return []

    def _on_ring_deadline(self) -> list[Action]:
        """Nothing answered the handset in time: 408 (RFC 3261 §21.4.9) and free the ports.

        The control plane hears it as a ``Cancel``, so a call it still knows ends its forks."""
        before = self.state
        if not self._go(Input.RING_TIMEOUT):
            return []
        timeout = self._respond(self.txn_id, self.invite, 408)
        if before is InboundState.TRYING:
            self._early_commands.clear()
            return [timeout]  # the decision, when it comes, releases (as after a CANCEL)
        return [timeout, CancelRpc(leg_id=self.leg_id), *self._release()]


class OutboundLeg(_Leg):
    """A leg the control plane asked for: we INVITE a handset with the relay as our offer."""

    table = OUTBOUND

    def __init__(
        self, command: CreateLeg, *, relay_port: int, peer_port: int, config: LegConfig
    ) -> None:
        super().__init__(
            command.leg_id,
            config=config,
            destination=command.destination,
            relay_port=relay_port,
            peer_port=peer_port,
            state=OutboundState.CALLING,
        )
        self.command = command
        self.call_id = command.call_id
        self.from_tag = config.tag()
        self.sip_call_id = f"{config.random_bytes(12).hex()}@{config.sip_host}"
        self.invite: SipRequest | None = None
        self._early: Negotiated | None = None
        self._ringing = False
        self._ring_timed_out = False
        self._ack: SipRequest | None = None
        #: Answers a trunk's 401/407 to our INVITE (RFC 3261 §22.2); None towards handsets.
        self.authenticator: ClientAuth | None = None
        self._auth_retried = False

    def _local_tag(self) -> str:
        return self.from_tag

    @property
    def key(self) -> tuple[str, str]:
        return (self.sip_call_id, self.from_tag)

    def start(self, now: float) -> list[Action]:
        command = self.command
        target: Uri = parse_uri(command.request_uri)
        from_addr = NameAddr(
            display_name=command.from_display_name or None,
            uri=parse_uri(command.from_uri),
            params=(("tag", self.from_tag),),
        )
        to_addr = NameAddr(uri=parse_uri(command.to_uri))
        sdp = self._offer_sdp(Direction.SENDRECV)
        invite = SipRequest("INVITE", target)
        h = invite.headers
        h.add("Via", self.config.via(self.transport))
        h.add("Max-Forwards", "70")
        h.add("From", str(from_addr))
        h.add("To", str(to_addr))
        h.add("Call-ID", self.sip_call_id)
        h.add("CSeq", "1 INVITE")
        h.add("Contact", str(self.config.contact(self.transport)))
        h.add("Allow", ALLOW)
        for name, value in command.extra_headers:
            h.add(name, value)
        h.add("Content-Type", "application/sdp")
        invite.body = sdp.serialize()
        self.invite = invite
        actions: list[Action] = [
            SendRequest(leg_id=self.leg_id, request=invite, destination=self.destination),
            StartTimer(
                leg_id=self.leg_id, timer=LegTimer.RING_TIMEOUT, at=now + command.ring_timeout
            ),
        ]
        if not command.bridge_leg_id:
            actions.extend(self._connect_peer(command.peer_media, ""))
        else:
            self.local_bridge = command.bridge_leg_id
        return actions

    def _follow_dialog_route(self) -> None:
        """A trunk leg's in-dialog requests go where RFC 3261 §12.2.1.1 says: the first route
        of the route set, else the remote target. (A handset's go back to its own address,
        the way through its NAT.) Only an IP address is followed here: a name would need a
        lookup, and the trunk's own address serves meanwhile."""
        assert self.dialog is not None
        hop = self.dialog.route_set[0].uri if self.dialog.route_set else self.dialog.remote_target
        if not isinstance(hop, SipUri):
            return
        try:
            ipaddress.ip_address(hop.host.strip("[]"))
        except ValueError:
            return
        # The URI's transport, else UDP (TLS for sips:), RFC 3263 §4.1 without NAPTR.
        named = (hop.get_param("transport") or "").lower()
        default = Transport.TLS if hop.scheme == "sips" else Transport.UDP
        transport = next((t for t in Transport if t.value == named), default)
        port = hop.port or (5061 if transport is Transport.TLS else 5060)
        self.destination = Endpoint(transport, hop.host.strip("[]"), port)

    def _stream_pt(self, peer: MediaSpec) -> int | None:
        # This side answers for its handset: the stream carries the law the handset chose.
        if self.negotiated is not None:
            return self.negotiated.audio_pt
        return peer.audio_pt

    def on_response(self, response: SipResponse, now: float) -> list[Action]:
        method = response.cseq.method
        if method == "INVITE" and self.invite is not None:
            if response.cseq.seq != self.invite.cseq.seq:
                if self.state is OutboundState.CONFIRMED:
                    self._go(Input.SUCCESS if response.status < 300 else Input.FAILURE)
                    return self._on_reinvite_response(response, now)
                return []
            status = response.status
            if status < 200:
                return self._on_provisional(response, now)
            if status < 300:
                return self._on_success(response, now)
            return self._on_failure(response, now)
        return []

    def _on_provisional(self, response: SipResponse, now: float) -> list[Action]:
        before = self.state
        if not self._go(Input.PROVISIONAL):
            return []
        if before is OutboundState.CANCEL_PENDING:
            return self._send_cancel(now)
        if response.status == 100:
            return []
        if response.body:
            try:
                self._early = read_answer(response.body)
            except OfferAnswerError:
                self._early = None
            if self._early is not None and response.status == 183:
                self.negotiated = self._early
                actions: list[Action] = [self._handset_media(self._early)]
                actions.extend(
                    self._report(state=LegState.EARLY_MEDIA, status=183, media=self._spec())
                )
                return actions
        if self._ringing:
            return []
        self._ringing = True
        return self._report(state=LegState.RINGING, status=response.status)

    def _ack_for(self, response: SipResponse) -> SendAck:
        assert self.dialog is not None
        if self._ack is None or self._ack.cseq.seq != response.cseq.seq:
            self._ack = self.dialog.build_ack(
                response.cseq.seq, via=self.config.via(self.transport)
            )
        return SendAck(request=self._ack, destination=self.destination)

    def _on_success(self, response: SipResponse, now: float) -> list[Action]:
        before = self.state
        if before is OutboundState.CONFIRMED:
            # Our ACK was lost and the handset resends its 2xx (§13.2.2.4): ACK again.
            return [self._ack_for(response)] if self.dialog is not None else []
        if not self._go(Input.SUCCESS):
            return []
        assert self.invite is not None
        try:
            self.dialog = Dialog.as_uac(self.invite, response)
        except Exception:
            self.dialog = None
        if self.dialog is None:
            # No Contact: no dialog to ACK within; give the call up.
            self.state = OutboundState.TERMINATED
            return [
                *self._report(state=LegState.FAILED, status=502, reason="2xx without Contact"),
                *self._release(),
            ]
        if self.command.trunk_id:
            self._follow_dialog_route()
        actions: list[Action] = [
            self._ack_for(response),
            CancelTimer(leg_id=self.leg_id, timer=LegTimer.RING_TIMEOUT),
            CancelTimer(leg_id=self.leg_id, timer=LegTimer.CANCEL_GIVE_UP),
        ]
        if before in (OutboundState.CANCEL_PENDING, OutboundState.CANCELLING):
            # The 2xx crossed our CANCEL: the dialog exists, end it at once (§15).
            actions.extend(self._send_bye())
            actions.extend(self._release())
            return actions
        negotiated: Negotiated | None
        try:
            negotiated = read_answer(response.body) if response.body else self._early
        except OfferAnswerError:
            negotiated = None
        if negotiated is None:
            self.state = OutboundState.TERMINATED
            actions.extend(self._send_bye())
            actions.extend(
                self._report(state=LegState.FAILED, status=488, reason="no common codec")
            )
            actions.extend(self._release())
            return actions
        self.negotiated = negotiated
        actions.append(self._handset_media(negotiated))
        if not self.local_bridge and self.command.peer_media is not None:
            actions.extend(self._connect_peer(self.command.peer_media, ""))
        actions.extend(self._report(state=LegState.ANSWERED, status=200, media=self._spec()))
        return actions

    def _on_failure(self, response: SipResponse, now: float) -> list[Action]:
        before = self.state
        if response.status in (401, 407) and before in (
            OutboundState.CALLING,
            OutboundState.PROCEEDING,
        ):
            retry = self._authenticated_retry(response)
            if retry:
                return retry
        if not self._go(Input.FAILURE):
            return []
        actions: list[Action] = [
            CancelTimer(leg_id=self.leg_id, timer=LegTimer.RING_TIMEOUT),
            CancelTimer(leg_id=self.leg_id, timer=LegTimer.CANCEL_GIVE_UP),
        ]
        if before in (OutboundState.CALLING, OutboundState.PROCEEDING):
            actions.extend(
                self._report(state=LegState.FAILED, status=response.status, reason=response.reason)
            )
        actions.extend(self._release())
        return actions

    def _authenticated_retry(self, response: SipResponse) -> list[Action]:
        """The INVITE again with credentials for the trunk's challenge: same dialog identity,
        a new branch and the next CSeq (RFC 3261 §22.2); nothing when that cannot help."""
        auth = self.authenticator
        old = self.invite
        if auth is None or old is None:
            return []
        if not auth.challenged(response, retried=self._auth_retried):
            return []
        self._auth_retried = True
        headers = Headers()
        for name, value in old.headers:
            key = name.lower()
            if key in ("authorization", "proxy-authorization"):
                continue
            if key == "via":
                value = self.config.via(self.transport)
            elif key == "cseq":
                value = f"{old.cseq.seq + 1} INVITE"
            headers.add(name, value)
        invite = SipRequest("INVITE", old.uri, headers, old.body)
        auth.authorize(invite, old.body)
        self.invite = invite
        return [SendRequest(leg_id=self.leg_id, request=invite, destination=self.destination)]

    def _send_cancel(self, now: float) -> list[Action]:
        assert self.invite is not None
        return [
            SendRequest(
                leg_id=self.leg_id, request=build_cancel(self.invite), destination=self.destination
            ),
            CancelTimer(leg_id=self.leg_id, timer=LegTimer.RING_TIMEOUT),
            StartTimer(
                leg_id=self.leg_id, timer=LegTimer.CANCEL_GIVE_UP, at=now + 64 * self.config.t1
            ),
        ]

    def on_end_command(self, status: int, reason: str, now: float) -> list[Action]:
        """``EndLegCommand``: CANCEL before the answer, BYE after it."""
        before = self.state
        if not self._go(Input.END):
            return []
        if before is OutboundState.CALLING:
            return [CancelTimer(leg_id=self.leg_id, timer=LegTimer.RING_TIMEOUT)]
        if before is OutboundState.PROCEEDING:
            return self._send_cancel(now)
        return self._end_confirmed(reason or "ended", tell_control=False)

    def on_transaction_timeout(self, method: str, now: float) -> list[Action]:
        """The INVITE got no response at all (Timer B): the handset is unreachable."""
        if method != "INVITE":
            return []
        before = self.state
        if not self._go(Input.TXN_TIMEOUT):
            return []
        actions: list[Action] = [CancelTimer(leg_id=self.leg_id, timer=LegTimer.RING_TIMEOUT)]
        if before in (OutboundState.CALLING, OutboundState.PROCEEDING):
            actions.extend(self._report(state=LegState.FAILED, status=408, reason="no response"))
        actions.extend(self._release())
        return actions

    def _on_other_timer(self, timer: LegTimer, now: float) -> list[Action]:
        before = self.state
        if timer is LegTimer.RING_TIMEOUT:
            if not self._go(Input.RING_TIMEOUT):
                return []
            # 408 when the handset never answered at all, 480 when it rang unanswered.
            status = 480 if before is OutboundState.PROCEEDING else 408
            actions = self._report(state=LegState.FAILED, status=status, reason="ring timeout")
            if before is OutboundState.PROCEEDING:
                actions.extend(self._send_cancel(now))
            return actions
        if timer is LegTimer.CANCEL_GIVE_UP and self._go(Input.CANCEL_TIMEOUT):
            return self._release()
        return []
