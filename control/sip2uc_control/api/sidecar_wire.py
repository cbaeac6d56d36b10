"""The control plane's one door to ``sidecar.proto``: every message of `SidecarService` is read
into, or made from, the control plane's own types here, and nowhere else.

Incoming: a session's hello, heartbeats and command results; REGISTERs of `RegisterStream`;
``Invite``, ``Cancel``, ``Bye`` and ``ReportLeg`` of `CallStream`. Outgoing: the welcome, settings
changes and commands of a session, and the answers to those calls.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp
from sip2uc.v1 import common_pb2, sidecar_pb2
from sip2uc_core.sip.contact import Contact
from sip2uc_core.sip.digest import Algorithm, Credentials, DigestError
from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.stream_stats import StreamStats

from ..calls import (
    AnswerLeg,
    Codec,
    Command,
    CreateLeg,
    EndLeg,
    InjectDtmf,
    InviteInput,
    InviteOutcome,
    LegReport,
    LegState,
    LiveLeg,
    MediaInfo,
)
from ..errors import FieldViolation, InvalidArgument
from ..messaging.model import DeliverMessage, HandsetMessage, Verdict
from ..phonebook import EntryKind, PhonebookSnapshot
from ..registrar import Outcome, RegisterDecision, RegisterInput
from ..sidecars import (
    BansReport,
    CommandResult,
    Heartbeat,
    LiftBan,
    MessageDelivered,
    SettingsChanged,
    SidecarBan,
    SidecarInfo,
    SidecarSettings,
)
from ..subscriptions import Action, HeldSubscription, SubscribeDecision, SubscribeInput
from ..trunk_registry import TrunkReport, TrunkReports
from ..trunks import DEFAULT_OPTIONS_INTERVAL, DEFAULT_REGISTER_EXPIRES, Trunk
from ..user_states import DialogPhase, UserStateView
from .convert import (
    AVAILABILITY_TO_PB,
    DIGEST_ALGORITHM_TO_PB,
    TRANSPORT_FROM_PB,
    TRANSPORT_TO_PB,
    direction_to_pb,
    from_ts,
)
from .streams import StreamedCall

__all__ = [
    "ByeInput",
    "CallRequest",
    "CancelInput",
    "call_batch",
    "call_error",
    "call_request",
    "call_sidecar",
    "call_stream_calls",
    "empty_reply",
    "invite_reply",
    "message_input",
    "message_response",
    "outgoing",
    "register_batch",
    "register_error",
    "register_input",
    "register_reply",
    "register_stream_calls",
    "session_report",
    "sidecar_info",
    "welcome",
]

_OUTCOMES = {
    Outcome.OK: sidecar_pb2.REGISTER_OUTCOME_OK,
    Outcome.UNAUTHORIZED: sidecar_pb2.REGISTER_OUTCOME_UNAUTHORIZED,
    Outcome.FORBIDDEN: sidecar_pb2.REGISTER_OUTCOME_FORBIDDEN,
    Outcome.INTERVAL_TOO_BRIEF: sidecar_pb2.REGISTER_OUTCOME_INTERVAL_TOO_BRIEF,
    Outcome.TOO_MANY_BINDINGS: sidecar_pb2.REGISTER_OUTCOME_TOO_MANY_BINDINGS,
    Outcome.OUT_OF_ORDER: sidecar_pb2.REGISTER_OUTCOME_OUT_OF_ORDER,
}
_DISPOSITIONS = {
    "routing": sidecar_pb2.INVITE_DISPOSITION_ROUTING,
    "reject": sidecar_pb2.INVITE_DISPOSITION_REJECT,
    "unauthorized": sidecar_pb2.INVITE_DISPOSITION_UNAUTHORIZED,
    "feedback": sidecar_pb2.INVITE_DISPOSITION_FEEDBACK_TONE,
}
_LEG_STATES = {
    sidecar_pb2.LEG_STATE_TRYING: LegState.TRYING,
    sidecar_pb2.LEG_STATE_RINGING: LegState.RINGING,
    sidecar_pb2.LEG_STATE_EARLY_MEDIA: LegState.EARLY_MEDIA,
    sidecar_pb2.LEG_STATE_ANSWERED: LegState.ANSWERED,
    sidecar_pb2.LEG_STATE_FAILED: LegState.FAILED,
    sidecar_pb2.LEG_STATE_ENDED: LegState.ENDED,
}
_DIRECTIONS = {
    common_pb2.MEDIA_DIRECTION_SENDRECV: "sendrecv",
    common_pb2.MEDIA_DIRECTION_SENDONLY: "sendonly",
    common_pb2.MEDIA_DIRECTION_RECVONLY: "recvonly",
    common_pb2.MEDIA_DIRECTION_INACTIVE: "inactive",
}
#: A sidecar reports at most this many bans; more in one message are not read.
MAX_BANS = 1000
# The unary RPCs the calls of the streams used to be; spans and metrics keep these names.
_CALL_METHODS = {"invite": "Invite", "cancel": "Cancel", "bye": "Bye", "report_leg": "ReportLeg"}


@dataclass(frozen=True, slots=True)
class CancelInput:
    """A ``Cancel`` call: the arguments of `CallController.cancel`."""

    sidecar: str
    leg_id: str


@dataclass(frozen=True, slots=True)
class ByeInput:
    """A ``Bye`` call: the arguments of `CallController.bye`."""

    sidecar: str
    leg_id: str
    reason: str
    stats: tuple[StreamStats, ...]


CallRequest = InviteInput | CancelInput | ByeInput | LegReport


# -- shared pieces ------------------------------------------------------------------------------


def _credentials(c: sidecar_pb2.DigestCredentials) -> Credentials:
    """Raises DigestError for an unknown algorithm or a malformed nonce count."""
    if c.nc and (len(c.nc) != 8 or any(ch not in "0123456789abcdefABCDEF" for ch in c.nc)):
        raise DigestError("nc must be 8 hex digits")
    return Credentials(
        username=c.username,
        realm=c.realm,
        nonce=c.nonce,
        uri=c.uri,
        response=c.response,
        algorithm=Algorithm.parse(c.algorithm or "MD5"),
        qop=c.qop or None,
        nc=c.nc or None,
        cnonce=c.cnonce or None,
    )


def _media(m: common_pb2.MediaEndpoint) -> MediaInfo:
    return MediaInfo(
        host=m.rtp.host,
        port=m.rtp.port,
        codecs=tuple(Codec(c.name, c.payload_type, c.clock_rate or 8000, c.fmtp) for c in m.codecs),
        direction=_DIRECTIONS.get(m.direction, "sendrecv"),
        ptime_ms=m.ptime_ms or 20,
    )


def _media_to_pb(m: MediaInfo | None) -> common_pb2.MediaEndpoint | None:
    if m is None:
        return None
    return common_pb2.MediaEndpoint(
        rtp=common_pb2.SocketAddress(host=m.host, port=m.port),
        codecs=[
            common_pb2.Codec(
                name=c.name, payload_type=c.payload_type, clock_rate=c.clock_rate, fmtp=c.fmtp
            )
            for c in m.codecs
        ],
        direction=direction_to_pb(m.direction),
        ptime_ms=m.ptime_ms,
    )


def _stats(stats: Iterable[sidecar_pb2.StreamStats]) -> tuple[StreamStats, ...]:
    return tuple(
        StreamStats(
            direction=s.direction,
            packets=s.packets,
            bytes=s.bytes,
            lost=s.lost,
            jitter_ms=s.jitter_ms,
            mos=s.mos,
            codec=s.codec,
        )
        for s in stats
    )


# -- the session (Connect) ----------------------------------------------------------------------


def sidecar_info(message: sidecar_pb2.ConnectRequest, now: float) -> SidecarInfo | None:
    """The sidecar a session's first message announces; None unless it is a hello with a name."""
    if message.WhichOneof("payload") != "hello" or not message.hello.name:
        return None
    hello = message.hello
    return SidecarInfo(
        name=hello.name,
        site=hello.site,
        sip_listeners=[
            f"{TRANSPORT_FROM_PB.get(listener.transport, 'unspecified')} "
            f"{listener.address.host}:{listener.address.port}"
            for listener in hello.sip_listeners
        ],
        rtp=f"{hello.rtp_host}:{hello.rtp_port_min}-{hello.rtp_port_max}",
        capacity=hello.capacity,
        version=hello.version,
        instance_id=hello.instance_id,
        batched_commands=hello.batched_commands,
        connected=True,
        connect_time=now,
        last_seen=now,
    )


def live_legs(message: sidecar_pb2.ConnectRequest) -> list[LiveLeg]:
    """The legs a session's hello says the sidecar carries (ill-formed entries are skipped)."""
    return [
        LiveLeg(
            call_id=leg.call_id,
            leg_id=leg.leg_id,
            caller=leg.caller,
            established=leg.established,
            party=leg.party,
            media=_media(leg.media) if leg.HasField("media") else None,
            direction=_DIRECTIONS.get(leg.direction, "sendrecv"),
        )
        for leg in message.hello.live_legs
        if leg.call_id and leg.leg_id
    ]


def session_report(
    message: sidecar_pb2.ConnectRequest,
) -> Heartbeat | BansReport | TrunkReports | MessageDelivered | tuple[CommandResult, ...] | None:
    """A heartbeat, the bans in force, trunk reports, a message delivery or command results from
    a live session; None for anything else."""
    kind = message.WhichOneof("payload")
    if kind == "trunk_reports":
        return TrunkReports(
            tuple(
                TrunkReport(
                    trunk_id=r.id,
                    reachable=r.reachable,
                    registered=r.registered,
                    error=r.error,
                    resolved_addresses=tuple(r.resolved_addresses),
                )
                for r in message.trunk_reports.reports
            )
        )
    if kind == "delivery":
        d = message.delivery
        return MessageDelivered(d.delivery_id, d.status, d.reason)
    if kind == "heartbeat":
        return Heartbeat(message.heartbeat.active_legs, message.heartbeat.relay_ports_in_use)
    if kind == "bans":
        held = message.bans.bans[:MAX_BANS]
        return BansReport(
            tuple(
                SidecarBan(
                    ban.source,
                    ban.user,
                    ban.reason,
                    from_ts(ban.start_time),
                    from_ts(ban.expire_time),
                )
                for ban in held
            ),
            max(message.bans.total, len(held)),
        )
    if kind == "result":
        return (_result(message.result),)
    if kind == "results":
        return tuple(_result(r) for r in message.results.results)
    return None


def _result(result: sidecar_pb2.CommandResult) -> CommandResult:
    return CommandResult(result.command_id, result.ok, result.error)


def _settings(settings: SidecarSettings) -> sidecar_pb2.SidecarSettings:
    return sidecar_pb2.SidecarSettings(
        realm=settings.realm,
        domain=settings.domain,
        allowed_networks=list(settings.allowed_networks),
        trunk_sources=[
            sidecar_pb2.TrunkSource(network=n, port=p) for n, p in settings.trunk_sources
        ],
        ban_threshold=settings.ban_threshold,
        ban_window_seconds=settings.ban_window_seconds,
        ban_seconds=settings.ban_seconds,
        channel_limit=settings.channel_limit,
        media_timeout_seconds=settings.media_timeout_seconds,
        min_expires=settings.min_expires,
        max_expires=settings.max_expires,
        ban_user_names=settings.ban_user_names,
        device_digests=[
            sidecar_pb2.DeviceDigest(
                username=username, algorithms=[DIGEST_ALGORITHM_TO_PB[a] for a in algorithms]
            )
            for username, algorithms in settings.device_algorithms
        ],
        trunks=[_trunk(t) for t in settings.trunks],
    )


def _trunk(trunk: Trunk) -> sidecar_pb2.SidecarTrunk:
    return sidecar_pb2.SidecarTrunk(
        id=trunk.id,
        address=trunk.address,
        port=trunk.port,
        transport=TRANSPORT_TO_PB.get(Transport(trunk.transport.value), common_pb2.TRANSPORT_UDP),
        username=trunk.username,
        password=trunk.password,
        register=trunk.register,
        register_expires=trunk.register_expires or DEFAULT_REGISTER_EXPIRES,
        options_interval_seconds=trunk.options_interval_seconds or DEFAULT_OPTIONS_INTERVAL,
        contact_user=trunk.username or "sip2uc",
        tls_ca_pem=trunk.tls_ca_pem,
    )


def welcome(settings: SidecarSettings) -> sidecar_pb2.ConnectResponse:
    server_time = Timestamp()
    server_time.GetCurrentTime()
    return sidecar_pb2.ConnectResponse(
        welcome=sidecar_pb2.SidecarWelcome(settings=_settings(settings), server_time=server_time)
    )


def outgoing(
    items: Sequence[Command | DeliverMessage | SettingsChanged | LiftBan], *, batched: bool
) -> list[sidecar_pb2.ConnectResponse]:
    """The messages for what a session has queued: one batch for a sidecar that reads them (and
    more than one item), else one message each."""
    messages = [_session_item(item) for item in items]
    if batched and len(messages) > 1:
        return [sidecar_pb2.ConnectResponse(batch=sidecar_pb2.CommandBatch(commands=messages))]
    return messages


def _session_item(
    item: Command | DeliverMessage | SettingsChanged | LiftBan,
) -> sidecar_pb2.ConnectResponse:
    if isinstance(item, SettingsChanged):
        return sidecar_pb2.ConnectResponse(settings=_settings(item.settings))
    out = sidecar_pb2.ConnectResponse(command_id=uuid.uuid4().hex[:12])
    if isinstance(item, DeliverMessage):
        out.deliver_message.CopyFrom(_deliver_message(item))
        return out
    if isinstance(item, LiftBan):
        out.lift_ban.source = item.source
        return out
    if isinstance(item, CreateLeg):
        out.create_leg.CopyFrom(
            sidecar_pb2.CreateLegCommand(
                call_id=item.call_id,
                leg_id=item.leg_id,
                request_uri=item.request_uri,
                destination=common_pb2.SocketAddress(host=item.host, port=item.port),
                transport=TRANSPORT_TO_PB.get(Transport(item.transport), common_pb2.TRANSPORT_UDP),
                from_uri=item.from_uri,
                from_display_name=item.from_display_name,
                to_uri=item.to_uri,
                peer_media=_media_to_pb(item.peer_media),
                ring_timeout_seconds=item.ring_timeout_seconds,
                bridge_leg_id=item.bridge_leg_id,
                headers=[sidecar_pb2.SipHeader(name=n, value=v) for n, v in item.headers],
                trunk_id=item.trunk_id,
            )
        )
    elif isinstance(item, AnswerLeg):
        out.answer_leg.CopyFrom(
            sidecar_pb2.AnswerLegCommand(
                call_id=item.call_id,
                leg_id=item.leg_id,
                status=item.status,
                peer_media=_media_to_pb(item.peer_media),
                bridge_leg_id=item.bridge_leg_id,
            )
        )
    elif isinstance(item, EndLeg):
        out.end_leg.CopyFrom(
            sidecar_pb2.EndLegCommand(
                call_id=item.call_id, leg_id=item.leg_id, status=item.status, reason=item.reason
            )
        )
    elif isinstance(item, InjectDtmf):
        out.inject_dtmf.CopyFrom(
            sidecar_pb2.InjectDtmfCommand(
                call_id=item.call_id,
                leg_id=item.leg_id,
                digits=item.digits,
                duration_ms=item.duration_ms,
            )
        )
    else:
        out.update_media.CopyFrom(
            sidecar_pb2.UpdateMediaCommand(
                call_id=item.call_id,
                leg_id=item.leg_id,
                peer_media=_media_to_pb(item.peer_media),
                bridge_leg_id=item.bridge_leg_id,
            )
        )
    return out


def _deliver_message(item: DeliverMessage) -> sidecar_pb2.DeliverMessageCommand:
    return sidecar_pb2.DeliverMessageCommand(
        request_uri=item.request_uri,
        destination=common_pb2.SocketAddress(host=item.host, port=item.port),
        transport=TRANSPORT_TO_PB.get(Transport(item.transport), common_pb2.TRANSPORT_UDP),
        from_uri=item.from_uri,
        from_display_name=item.from_display_name,
        to_uri=item.to_uri,
        content_type=item.content_type,
        body=item.body,
        delivery_id=item.delivery_id,
    )


# -- MESSAGE (Message) --------------------------------------------------------------------------


def message_input(request: sidecar_pb2.MessageRequest) -> HandsetMessage:
    """Raises DigestError for credentials that cannot be read."""
    return HandsetMessage(
        sidecar=request.origin.sidecar,
        source_host=request.origin.source.host,
        credentials=(
            _credentials(request.credentials) if request.HasField("credentials") else None
        ),
        from_uri=request.from_uri,
        from_display_name=request.from_display_name,
        request_uri=request.request_uri,
        content_type=request.content_type,
        body=request.body,
    )


def message_response(verdict: Verdict) -> sidecar_pb2.MessageResponse:
    return sidecar_pb2.MessageResponse(
        status=verdict.status,
        reason=verdict.reason,
        retry_after=verdict.retry_after,
        accept=verdict.accept,
    )


# -- REGISTER (RegisterStream) ------------------------------------------------------------------


def register_stream_calls(
    message: sidecar_pb2.RegisterStreamRequest,
) -> list[StreamedCall[sidecar_pb2.RegisterCall]]:
    return [
        StreamedCall(
            c,
            c.correlation_id,
            c.traceparent,
            c.tracestate,
            "Register",
            timeout=c.timeout_ms / 1000,
            # A REGISTER is new work: the first to be refused when the control plane is behind.
            sheddable=True,
        )
        for c in message.calls
    ]


def register_input(call: sidecar_pb2.RegisterCall) -> RegisterInput:
    """Raises InvalidArgument for a REGISTER without its sidecar or transport, DigestError for
    credentials that cannot be read (answered like wrong ones)."""
    request = call.request
    origin = request.origin
    if not origin.sidecar:
        raise InvalidArgument(FieldViolation("origin.sidecar", "required"))
    transport = TRANSPORT_FROM_PB.get(origin.transport)
    if transport is None:
        raise InvalidArgument(FieldViolation("origin.transport", "required"))
    return RegisterInput(
        credentials=_credentials(request.credentials),
        aor=request.aor,
        contacts=tuple(
            Contact(c.uri, c.expires, c.q_milli or 1000, c.instance_id) for c in request.contacts
        ),
        remove_all=request.remove_all,
        cseq=request.cseq,
        call_id=origin.call_id,
        source=Endpoint(transport, origin.source.host, origin.source.port),
        sidecar=origin.sidecar,
        user_agent=origin.user_agent,
    )


def register_reply(
    call: sidecar_pb2.RegisterCall, decision: RegisterDecision, bindings: Sequence[Contact]
) -> sidecar_pb2.RegisterReply:
    return sidecar_pb2.RegisterReply(
        correlation_id=call.correlation_id,
        response=sidecar_pb2.RegisterResponse(
            outcome=_OUTCOMES[decision.outcome],
            bindings=[
                sidecar_pb2.ContactBinding(
                    uri=b.uri, expires=b.expires, q_milli=b.q_milli, instance_id=b.instance_id
                )
                for b in bindings
            ],
            min_expires=decision.min_expires,
            reason=decision.reason,
        ),
    )


def register_error(correlation_id: int, code: int, message: str) -> sidecar_pb2.RegisterReply:
    return sidecar_pb2.RegisterReply(
        correlation_id=correlation_id, error_code=code, error_message=message
    )


def register_batch(replies: list[sidecar_pb2.RegisterReply]) -> sidecar_pb2.RegisterStreamResponse:
    return sidecar_pb2.RegisterStreamResponse(replies=replies)


# -- calls (CallStream, docs/calls.md) ----------------------------------------------------------


def call_stream_calls(
    message: sidecar_pb2.CallStreamRequest,
) -> list[StreamedCall[sidecar_pb2.CallStreamCall]]:
    out = []
    for c in message.calls:
        kind = c.WhichOneof("request")
        leg_id = getattr(c, kind).leg_id if kind is not None else ""
        out.append(
            StreamedCall(
                c,
                c.correlation_id,
                c.traceparent,
                c.tracestate,
                _CALL_METHODS.get(kind or "", "CallStream"),
                # A leg's calls in order: its RINGING before its ANSWERED, its Invite before
                # its Cancel. Leg ids are unique per sidecar, and a stream is one sidecar's.
                key=leg_id or None,
                timeout=c.timeout_ms / 1000,
                # A new call may be refused when the control plane is behind; what concerns a
                # call already under way (Cancel, Bye, ReportLeg) never is.
                sheddable=kind == "invite",
            )
        )
    return out


def call_sidecar(call: sidecar_pb2.CallStreamCall) -> str:
    """The sidecar a call says it comes from ("" when it names none)."""
    kind = call.WhichOneof("request")
    if kind == "report_leg":
        return call.report_leg.sidecar
    if kind == "invite":
        return call.invite.origin.sidecar
    if kind == "bye":
        return call.bye.origin.sidecar
    if kind == "cancel":
        return call.cancel.origin.sidecar
    return ""


def call_request(call: sidecar_pb2.CallStreamCall) -> CallRequest:
    """Raises InvalidArgument for a call without its request or required fields, DigestError for
    an Invite's credentials that cannot be read (answered like wrong ones)."""
    kind = call.WhichOneof("request")
    if kind == "invite":
        return _invite(call.invite)
    if kind == "report_leg":
        report = call.report_leg
        return LegReport(
            sidecar=report.sidecar,
            call_id=report.call_id,
            leg_id=report.leg_id,
            state=_LEG_STATES.get(report.state),
            status=report.status,
            reason=report.reason,
            media=_media(report.media) if report.HasField("media") else None,
            dtmf_digits=report.dtmf_digits,
            stats=_stats(report.stats),
            direction=_DIRECTIONS.get(report.direction, ""),
        )
    if kind == "bye":
        bye = call.bye
        return ByeInput(bye.origin.sidecar, bye.leg_id, bye.reason, _stats(bye.stats))
    if kind == "cancel":
        return CancelInput(call.cancel.origin.sidecar, call.cancel.leg_id)
    raise InvalidArgument(FieldViolation("request", "one of the calls is required"))


def _invite(request: sidecar_pb2.InviteRequest) -> InviteInput:
    origin = request.origin
    if not origin.sidecar or not request.leg_id:
        raise InvalidArgument(
            [
                FieldViolation(f, "required")
                for f, v in (("origin.sidecar", origin.sidecar), ("leg_id", request.leg_id))
                if not v
            ]
        )
    return InviteInput(
        sidecar=origin.sidecar,
        leg_id=request.leg_id,
        credentials=(
            _credentials(request.credentials) if request.HasField("credentials") else None
        ),
        source_host=origin.source.host,
        source_port=origin.source.port,
        request_uri=request.request_uri,
        from_uri=request.from_uri,
        from_display_name=request.from_display_name,
        to_uri=request.to_uri,
        offer=_media(request.offer) if request.HasField("offer") else None,
    )


def invite_reply(
    call: sidecar_pb2.CallStreamCall, outcome: InviteOutcome
) -> sidecar_pb2.CallStreamReply:
    return sidecar_pb2.CallStreamReply(
        correlation_id=call.correlation_id,
        invite=sidecar_pb2.InviteResponse(
            disposition=_DISPOSITIONS[outcome.disposition],
            call_id=outcome.call_id,
            status=outcome.status,
            reason=outcome.reason,
            retry_after=outcome.retry_after,
            tone=(
                sidecar_pb2.FEEDBACK_TONE_CONFIRM
                if outcome.tone_ok
                else sidecar_pb2.FEEDBACK_TONE_ERROR
            ),
        ),
    )


def empty_reply(call: sidecar_pb2.CallStreamCall) -> sidecar_pb2.CallStreamReply:
    """The answer to a one-way call (Cancel, Bye, ReportLeg) that was carried out."""
    reply = sidecar_pb2.CallStreamReply(correlation_id=call.correlation_id)
    kind = call.WhichOneof("request")
    if kind is not None and kind != "invite":
        getattr(reply, kind).SetInParent()
    return reply


def call_error(correlation_id: int, code: int, message: str) -> sidecar_pb2.CallStreamReply:
    return sidecar_pb2.CallStreamReply(
        correlation_id=correlation_id, error_code=code, error_message=message
    )


def call_batch(replies: list[sidecar_pb2.CallStreamReply]) -> sidecar_pb2.CallStreamResponse:
    return sidecar_pb2.CallStreamResponse(replies=replies)


# -- the shared address book ---------------------------------------------------------------------

_ENTRY_KINDS = {
    EntryKind.USER: sidecar_pb2.PHONEBOOK_ENTRY_KIND_USER,
    EntryKind.CONTACT: sidecar_pb2.PHONEBOOK_ENTRY_KIND_CONTACT,
}


def phonebook_snapshot(snapshot: PhonebookSnapshot) -> sidecar_pb2.WatchPhonebookResponse:
    return sidecar_pb2.WatchPhonebookResponse(
        version=snapshot.version,
        entries=[
            sidecar_pb2.PhonebookEntry(
                key=e.key,
                kind=_ENTRY_KINDS[e.kind],
                display_name=e.display_name,
                extension=e.extension,
                e164=e.e164,
                mobile=e.mobile,
                other=e.other,
                company=e.company,
                email=e.email,
            )
            for e in snapshot.entries
        ],
    )


# -- subscriptions (BLF) ----------------------------------------------------------------------

_ACTIONS = {
    sidecar_pb2.SUBSCRIBE_ACTION_CREATE: Action.CREATE,
    sidecar_pb2.SUBSCRIBE_ACTION_REFRESH: Action.REFRESH,
    sidecar_pb2.SUBSCRIBE_ACTION_END: Action.END,
}
_PHASES = {
    DialogPhase.TRYING: sidecar_pb2.DIALOG_PHASE_TRYING,
    DialogPhase.EARLY: sidecar_pb2.DIALOG_PHASE_EARLY,
    DialogPhase.CONFIRMED: sidecar_pb2.DIALOG_PHASE_CONFIRMED,
    DialogPhase.TERMINATED: sidecar_pb2.DIALOG_PHASE_TERMINATED,
}


def subscribe_input(
    request: sidecar_pb2.SubscribeRequest,
) -> tuple[SubscribeInput, Credentials | None, str]:
    """The request, its credentials (None when it carries none) and the watcher named by a
    refresh or an end. Raises DigestError for credentials that cannot be read."""
    action = _ACTIONS.get(request.action)
    if action is None:
        raise InvalidArgument(FieldViolation("action", "required"))
    if not request.subscription_id:
        raise InvalidArgument(FieldViolation("subscription_id", "required"))
    creds = (
        _credentials(request.credentials)
        if request.HasField("credentials") and request.credentials.username
        else None
    )
    inp = SubscribeInput(
        sidecar=request.origin.sidecar,
        subscription_id=request.subscription_id,
        action=action,
        event=request.event,
        request_uri=request.request_uri,
        expires=request.expires,
        eventlist=request.eventlist,
        source_host=request.origin.source.host,
        source_port=request.origin.source.port,
    )
    return inp, creds, request.watcher


def subscribe_reply(decision: SubscribeDecision) -> sidecar_pb2.SubscribeResponse:
    return sidecar_pb2.SubscribeResponse(
        status=decision.status,
        expires=decision.expires,
        reason=decision.reason,
        watcher=decision.watcher.name if decision.watcher is not None else "",
        resources=[
            sidecar_pb2.WatchedUser(user=u.name, uri=u.sip_uri, display_name=u.display_name)
            for u in decision.resources
        ],
        list_uri=decision.list_uri,
    )


def held_subscriptions(request: sidecar_pb2.WatchStatesRequest) -> list[HeldSubscription]:
    return [
        HeldSubscription(
            id=h.subscription_id,
            sidecar=request.sidecar,
            watcher=h.watcher.removeprefix("users/"),
            event=h.event,
            resource_uri=h.resource_uri,
            users=tuple(u.removeprefix("users/") for u in h.users),
            expires_at=from_ts(h.expire_time),
            source_host=h.source.host,
            source_port=h.source.port,
        )
        for h in request.subscriptions
        if h.subscription_id
    ]


def _user_state(view: UserStateView) -> sidecar_pb2.UserState:
    return sidecar_pb2.UserState(
        user=f"users/{view.user_id}",
        availability=AVAILABILITY_TO_PB[view.availability],
        note=view.note,
        dialogs=[
            sidecar_pb2.UserDialog(
                id=d.id,
                phase=_PHASES[d.phase],
                initiator=d.initiator,
                remote_uri=d.remote_uri,
                remote_display=d.remote_display,
            )
            for d in view.dialogs
        ],
    )


def verify_digest_input(
    request: sidecar_pb2.VerifyDigestRequest,
) -> tuple[str, Credentials, str, str]:
    """(sidecar, credentials, HTTP method, source host); DigestError for unreadable
    credentials."""
    credentials = request.credentials
    origin = request.origin
    return origin.sidecar, _credentials(credentials), credentials.method, origin.source.host


def states_snapshot(
    views: Iterable[UserStateView], revoked: Sequence[str]
) -> sidecar_pb2.WatchStatesResponse:
    return sidecar_pb2.WatchStatesResponse(
        snapshot=sidecar_pb2.UserStates(states=[_user_state(v) for v in views]),
        revoked_subscriptions=list(revoked),
    )


def state_change(view: UserStateView) -> sidecar_pb2.WatchStatesResponse:
    return sidecar_pb2.WatchStatesResponse(change=_user_state(view))
