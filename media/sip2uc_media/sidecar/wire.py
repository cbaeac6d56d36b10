"""The sidecar's one door to ``sidecar.proto``: every message of `SidecarService` is made from, or
read into, the sidecar's own types here, and nowhere else.

Outgoing: the session's hello, heartbeats, command results and message deliveries; REGISTERs for
``RegisterStream``; ``Invite``, ``Cancel``, ``Bye`` and ``ReportLeg`` for ``CallStream``; a
handset's MESSAGE for ``Message``. Incoming: the session's
messages (`commands.SessionMessage`) and the answers to those calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from google.protobuf.timestamp_pb2 import Timestamp
from sip2uc.v1 import common_pb2, sidecar_pb2
from sip2uc_core.sip.contact import Contact
from sip2uc_core.sip.digest import Algorithm, Credentials
from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.stream_stats import StreamStats

from ..b2bua.actions import ByeRpc, CancelRpc, InviteRpc, LegState, ReportLeg, Tone
from ..b2bua.legs import CreateLeg, Disposition, InviteResult
from ..b2bua.offer_answer import CodecSpec, MediaSpec
from ..phonebook.model import Entry, EntryKind, Phonebook
from ..rtp.relay import Direction
from ..trunk.carrier import TrunkStatus
from ..trunk.upkeep import TrunkConfig
from .commands import (
    DEFAULT_DTMF_MS,
    AnswerLeg,
    Batch,
    Command,
    DeliverMessage,
    EndLeg,
    InjectDtmf,
    LiftBan,
    Notify,
    Order,
    SessionMessage,
    SettingsUpdate,
    UpdateMedia,
    Welcome,
)
from .messages import MessageAnswer, MessageCall
from .protection import Ban
from .registrar import RegisterAttempt, RegisterOutcome, RegisterResult
from .requests import HelloInfo, InviteCall, Origin, SubscribeCall
from .subscriptions import DialogState, Grant, Subscription, UserState, Watched

__all__ = [
    "MAX_REPORTED_BANS",
    "VERSION",
    "bans",
    "bye_call",
    "call_batch",
    "cancel_call",
    "digest_verified",
    "heartbeat",
    "hello",
    "invite_call",
    "invite_result",
    "message_answer",
    "message_delivery",
    "message_request",
    "phonebook",
    "register_batch",
    "register_call",
    "register_result",
    "report_call",
    "results",
    "session_message",
    "verify_digest",
    "watch_phonebook",
]

VERSION = "0.1.0"
DEFAULT_RING_TIMEOUT_SECONDS = 60

_TRANSPORTS = {
    Transport.UDP: common_pb2.TRANSPORT_UDP,
    Transport.TCP: common_pb2.TRANSPORT_TCP,
    Transport.TLS: common_pb2.TRANSPORT_TLS,
}
_TRANSPORTS_BACK = {v: k for k, v in _TRANSPORTS.items()}
_OUTCOMES = {
    sidecar_pb2.REGISTER_OUTCOME_OK: RegisterOutcome.OK,
    sidecar_pb2.REGISTER_OUTCOME_UNAUTHORIZED: RegisterOutcome.UNAUTHORIZED,
    sidecar_pb2.REGISTER_OUTCOME_FORBIDDEN: RegisterOutcome.FORBIDDEN,
    sidecar_pb2.REGISTER_OUTCOME_INTERVAL_TOO_BRIEF: RegisterOutcome.INTERVAL_TOO_BRIEF,
    sidecar_pb2.REGISTER_OUTCOME_TOO_MANY_BINDINGS: RegisterOutcome.TOO_MANY_BINDINGS,
    sidecar_pb2.REGISTER_OUTCOME_OUT_OF_ORDER: RegisterOutcome.OUT_OF_ORDER,
}
_DIRECTIONS = {
    Direction.SENDRECV: common_pb2.MEDIA_DIRECTION_SENDRECV,
    Direction.SENDONLY: common_pb2.MEDIA_DIRECTION_SENDONLY,
    Direction.RECVONLY: common_pb2.MEDIA_DIRECTION_RECVONLY,
    Direction.INACTIVE: common_pb2.MEDIA_DIRECTION_INACTIVE,
}
_DIRECTIONS_BACK = {v: k for k, v in _DIRECTIONS.items()}
_LEG_STATES = {
    LegState.TRYING: sidecar_pb2.LEG_STATE_TRYING,
    LegState.RINGING: sidecar_pb2.LEG_STATE_RINGING,
    LegState.EARLY_MEDIA: sidecar_pb2.LEG_STATE_EARLY_MEDIA,
    LegState.ANSWERED: sidecar_pb2.LEG_STATE_ANSWERED,
    LegState.FAILED: sidecar_pb2.LEG_STATE_FAILED,
    LegState.ENDED: sidecar_pb2.LEG_STATE_ENDED,
}
_ALGORITHMS = {
    common_pb2.DIGEST_ALGORITHM_MD5: Algorithm.MD5,
    common_pb2.DIGEST_ALGORITHM_SHA_256: Algorithm.SHA_256,
}
#: A sidecar under attack may hold thousands of bans; the control plane hears of this many.
MAX_REPORTED_BANS = 1000
_DISPOSITIONS = {
    sidecar_pb2.INVITE_DISPOSITION_ROUTING: Disposition.ROUTING,
    sidecar_pb2.INVITE_DISPOSITION_REJECT: Disposition.REJECT,
    sidecar_pb2.INVITE_DISPOSITION_UNAUTHORIZED: Disposition.UNAUTHORIZED,
    sidecar_pb2.INVITE_DISPOSITION_FEEDBACK_TONE: Disposition.FEEDBACK_TONE,
}


# -- shared pieces ------------------------------------------------------------------------------


def _address(endpoint: Endpoint) -> common_pb2.SocketAddress:
    return common_pb2.SocketAddress(host=endpoint.host, port=endpoint.port)


def _endpoint(
    address: common_pb2.SocketAddress, transport: common_pb2.Transport.ValueType
) -> Endpoint:
    # A command without a transport means UDP, the one every handset speaks.
    return Endpoint(_TRANSPORTS_BACK.get(transport, Transport.UDP), address.host, address.port)


def _credentials(creds: Credentials, method: str) -> sidecar_pb2.DigestCredentials:
    return sidecar_pb2.DigestCredentials(
        username=creds.username,
        realm=creds.realm,
        nonce=creds.nonce,
        uri=creds.uri,
        response=creds.response,
        algorithm=creds.algorithm.value,
        cnonce=creds.cnonce or "",
        nc=creds.nc or "",
        qop=creds.qop or "",
        method=method,
    )


def _origin(origin: Origin) -> sidecar_pb2.RequestOrigin:
    return sidecar_pb2.RequestOrigin(
        sidecar=origin.sidecar,
        source=_address(origin.source),
        transport=_TRANSPORTS[origin.source.transport],
        user_agent=origin.user_agent,
        call_id=origin.call_id,
    )


def _media(spec: MediaSpec) -> common_pb2.MediaEndpoint:
    return common_pb2.MediaEndpoint(
        rtp=common_pb2.SocketAddress(host=spec.host, port=spec.port),
        codecs=[
            common_pb2.Codec(
                name=c.name, payload_type=c.payload_type, clock_rate=c.clock_rate, fmtp=c.fmtp
            )
            for c in spec.codecs
        ],
        direction=_DIRECTIONS[spec.direction],
        ptime_ms=spec.ptime_ms,
    )


def _media_spec(message: common_pb2.MediaEndpoint) -> MediaSpec:
    return MediaSpec(
        host=message.rtp.host,
        port=message.rtp.port,
        codecs=tuple(
            CodecSpec(c.name, c.payload_type, c.clock_rate or 8000, c.fmtp) for c in message.codecs
        ),
        direction=_DIRECTIONS_BACK.get(message.direction, Direction.SENDRECV),
        ptime_ms=message.ptime_ms or 20,
    )


def _stats(stats: Iterable[StreamStats]) -> list[sidecar_pb2.StreamStats]:
    return [
        sidecar_pb2.StreamStats(
            direction=s.direction,
            packets=s.packets,
            bytes=s.bytes,
            lost=s.lost,
            jitter_ms=s.jitter_ms,
            mos=s.mos,
            codec=s.codec,
        )
        for s in stats
    ]


# -- the session (Connect) ----------------------------------------------------------------------


def hello(info: HelloInfo) -> sidecar_pb2.ConnectRequest:
    return sidecar_pb2.ConnectRequest(
        hello=sidecar_pb2.SidecarHello(
            name=info.name,
            site=info.site,
            sip_listeners=[
                sidecar_pb2.SipListener(transport=_TRANSPORTS[e.transport], address=_address(e))
                for e in info.listeners
            ],
            rtp_host=info.rtp_host,
            rtp_port_min=info.rtp_ports[0],
            rtp_port_max=info.rtp_ports[1],
            capacity=info.capacity,
            version=VERSION,
            instance_id=info.instance_id,
            batched_commands=True,
            live_legs=[
                sidecar_pb2.LiveLeg(
                    call_id=leg.call_id,
                    leg_id=leg.leg_id,
                    caller=leg.caller,
                    established=leg.established,
                    party=leg.party,
                    media=_media(leg.media),
                    direction=_DIRECTIONS[leg.direction],
                )
                for leg in info.live_legs
            ],
        )
    )


def heartbeat(active_legs: int, relay_ports_in_use: int) -> sidecar_pb2.ConnectRequest:
    return sidecar_pb2.ConnectRequest(
        heartbeat=sidecar_pb2.SidecarHeartbeat(
            active_legs=active_legs, relay_ports_in_use=relay_ports_in_use
        )
    )


def results(outcomes: Sequence[tuple[str, str]], *, batched: bool) -> sidecar_pb2.ConnectRequest:
    """The results of commands, as (command id, "" when done or why not): one `result` for a
    command that came alone, `results` for the commands of one batch."""
    made = [
        sidecar_pb2.CommandResult(command_id=command_id, ok=not error, error=error)
        for command_id, error in outcomes
    ]
    if batched:
        return sidecar_pb2.ConnectRequest(results=sidecar_pb2.CommandResults(results=made))
    (single,) = made
    return sidecar_pb2.ConnectRequest(result=single)


def bans(held: Sequence[Ban], mono_now: float, wall_now: float) -> sidecar_pb2.ConnectRequest:
    """The bans in force (`held`, most recent first), their times moved from the edge's clock
    (`mono_now`) to wall-clock time (`wall_now`)."""

    def wall(at: float) -> Timestamp:
        stamp = Timestamp()
        stamp.FromNanoseconds(int((wall_now + at - mono_now) * 1e9))
        return stamp

    return sidecar_pb2.ConnectRequest(
        bans=sidecar_pb2.SidecarBans(
            bans=[
                sidecar_pb2.SidecarBan(
                    source=ban.source,
                    user=ban.user,
                    reason=ban.reason,
                    start_time=wall(ban.start),
                    expire_time=wall(ban.until),
                )
                for ban in held[:MAX_REPORTED_BANS]
            ],
            total=len(held),
        )
    )


def session_message(message: sidecar_pb2.ConnectResponse) -> SessionMessage | None:
    """What a message of the session says; None for one this sidecar does not know."""
    kind = message.WhichOneof("payload")
    if kind == "welcome":
        return Welcome(_settings(message.welcome.settings))
    if kind == "batch":
        items: list[SettingsUpdate | Order] = []
        for inner in message.batch.commands:
            item = _batched(inner)
            if item is not None:
                items.append(item)
        return Batch(tuple(items))
    return _batched(message)


def _batched(message: sidecar_pb2.ConnectResponse) -> SettingsUpdate | Order | None:
    kind = message.WhichOneof("payload")
    if kind == "settings":
        return _settings(message.settings)
    command = _command(message, kind)
    return Order(message.command_id, command) if command is not None else None


def _settings(message: sidecar_pb2.SidecarSettings) -> SettingsUpdate:
    # proto3 sends 0 and "" for "not set": those keep the current value.
    return SettingsUpdate(
        realm=message.realm or None,
        domain=message.domain or None,
        allowed_networks=tuple(message.allowed_networks),
        trunk_sources=tuple((t.network, t.port) for t in message.trunk_sources),
        ban_threshold=message.ban_threshold or None,
        ban_window=float(message.ban_window_seconds) if message.ban_window_seconds else None,
        ban_seconds=float(message.ban_seconds) if message.ban_seconds else None,
        channel_limit=message.channel_limit or None,
        media_timeout=(
            float(message.media_timeout_seconds) if message.media_timeout_seconds else None
        ),
        min_expires=message.min_expires or None,
        max_expires=message.max_expires or None,
        ban_user_names=message.ban_user_names or None,
        device_algorithms=tuple(
            (device.username, chosen)
            for device in message.device_digests
            if (chosen := _algorithms(device.algorithms))
        ),
        trunks=tuple(_trunk(t) for t in message.trunks),
    )


#: The headers a CreateLeg may add to the INVITE (a trunk's identity policy).
IDENTITY_HEADERS = frozenset({"P-Asserted-Identity", "Diversion", "History-Info"})


def _header_value_ok(value: str) -> bool:
    return 0 < len(value) <= 512 and all(0x20 <= ord(ch) != 0x7F for ch in value)


def _trunk(message: sidecar_pb2.SidecarTrunk) -> TrunkConfig:
    return TrunkConfig(
        id=message.id,
        address=message.address,
        port=message.port,
        transport=_TRANSPORTS_BACK.get(message.transport, Transport.UDP),
        username=message.username,
        password=message.password,
        register=message.register,
        register_expires=message.register_expires or 600,
        options_interval=float(message.options_interval_seconds or 30),
        contact_user=message.contact_user or "sip2uc",
        tls_ca_pem=message.tls_ca_pem,
    )


def trunk_reports(statuses: Sequence[TrunkStatus]) -> sidecar_pb2.ConnectRequest:
    return sidecar_pb2.ConnectRequest(
        trunk_reports=sidecar_pb2.TrunkReports(
            reports=[
                sidecar_pb2.TrunkReport(
                    id=s.id,
                    reachable=s.reachable,
                    registered=s.registered,
                    error=s.error,
                    resolved_addresses=list(s.resolved),
                )
                for s in statuses
            ]
        )
    )


def _algorithms(
    values: Iterable[common_pb2.DigestAlgorithm.ValueType],
) -> tuple[Algorithm, ...]:
    """The algorithms a device is challenged with; values this sidecar does not know are left
    out (a device left with none gets the default)."""
    known = (_ALGORITHMS.get(value) for value in values)
    return tuple(dict.fromkeys(a for a in known if a is not None))


def _command(message: sidecar_pb2.ConnectResponse, kind: str | None) -> Command | None:
    if kind == "create_leg":
        create = message.create_leg
        return CreateLeg(
            call_id=create.call_id,
            leg_id=create.leg_id,
            request_uri=create.request_uri,
            destination=_endpoint(create.destination, create.transport),
            from_uri=create.from_uri,
            from_display_name=create.from_display_name,
            to_uri=create.to_uri,
            peer_media=_media_spec(create.peer_media) if create.HasField("peer_media") else None,
            ring_timeout=float(create.ring_timeout_seconds or DEFAULT_RING_TIMEOUT_SECONDS),
            bridge_leg_id=create.bridge_leg_id,
            extra_headers=tuple(
                (h.name, h.value)
                for h in create.headers
                if h.name in IDENTITY_HEADERS and _header_value_ok(h.value)
            ),
            trunk_id=create.trunk_id,
        )
    if kind == "answer_leg":
        answer = message.answer_leg
        return AnswerLeg(
            call_id=answer.call_id,
            leg_id=answer.leg_id,
            status=answer.status,
            peer_media=_media_spec(answer.peer_media) if answer.HasField("peer_media") else None,
            bridge_leg_id=answer.bridge_leg_id,
        )
    if kind == "end_leg":
        end = message.end_leg
        return EndLeg(call_id=end.call_id, leg_id=end.leg_id, status=end.status, reason=end.reason)
    if kind == "inject_dtmf":
        dtmf = message.inject_dtmf
        return InjectDtmf(
            call_id=dtmf.call_id,
            leg_id=dtmf.leg_id,
            digits=dtmf.digits,
            duration_ms=dtmf.duration_ms or DEFAULT_DTMF_MS,
        )
    if kind == "update_media":
        update = message.update_media
        return UpdateMedia(
            call_id=update.call_id,
            leg_id=update.leg_id,
            peer_media=_media_spec(update.peer_media),
            bridge_leg_id=update.bridge_leg_id,
        )
    if kind == "deliver_message":
        deliver = message.deliver_message
        return DeliverMessage(
            request_uri=deliver.request_uri,
            destination=_endpoint(deliver.destination, deliver.transport),
            from_uri=deliver.from_uri,
            to_uri=deliver.to_uri,
            content_type=deliver.content_type,
            body=deliver.body,
            delivery_id=deliver.delivery_id,
            from_display_name=deliver.from_display_name,
        )
    if kind == "notify":
        notify = message.notify
        return Notify(
            subscription_id=notify.subscription_id,
            content_type=notify.content_type,
            body=notify.body,
            terminate=notify.terminate,
        )
    if kind == "lift_ban":
        return LiftBan(source=message.lift_ban.source)
    return None  # no payload, or a welcome or batch where a command belongs


# -- REGISTER (RegisterStream) ------------------------------------------------------------------


def register_call(
    attempt: RegisterAttempt, origin: Origin, timeout_ms: int = 0
) -> sidecar_pb2.RegisterCall:
    return sidecar_pb2.RegisterCall(
        timeout_ms=timeout_ms,
        request=sidecar_pb2.RegisterRequest(
            origin=_origin(origin),
            credentials=_credentials(attempt.credentials, attempt.method),
            aor=attempt.aor,
            contacts=[
                sidecar_pb2.ContactBinding(
                    uri=c.uri, expires=c.expires, q_milli=c.q_milli, instance_id=c.instance_id
                )
                for c in attempt.contacts
            ],
            remove_all=attempt.remove_all,
            cseq=attempt.cseq,
        ),
    )


def register_batch(calls: list[sidecar_pb2.RegisterCall]) -> sidecar_pb2.RegisterStreamRequest:
    return sidecar_pb2.RegisterStreamRequest(calls=calls)


def register_replies(
    message: sidecar_pb2.RegisterStreamResponse,
) -> Iterable[sidecar_pb2.RegisterReply]:
    return message.replies


def register_result(reply: sidecar_pb2.RegisterReply) -> RegisterResult:
    response = reply.response
    outcome = _OUTCOMES.get(response.outcome)
    if outcome is None:
        # An outcome this sidecar does not know: refusing is the safe answer.
        outcome = RegisterOutcome.FORBIDDEN
    return RegisterResult(
        outcome=outcome,
        bindings=tuple(
            Contact(b.uri, b.expires, b.q_milli or 1000, b.instance_id) for b in response.bindings
        ),
        min_expires=response.min_expires,
        reason=response.reason,
    )


# -- calls (CallStream, docs/calls.md) ----------------------------------------------------------


def invite_call(call: InviteCall, rpc: InviteRpc, timeout_ms: int) -> sidecar_pb2.CallStreamCall:
    request = sidecar_pb2.InviteRequest(
        origin=_origin(call.origin),
        leg_id=rpc.leg_id,
        request_uri=call.request_uri,
        from_uri=call.from_uri,
        from_display_name=call.from_display_name,
        to_uri=call.to_uri,
        offer=_media(rpc.offer),
    )
    if call.credentials is not None:
        request.credentials.CopyFrom(_credentials(call.credentials, "INVITE"))
    return sidecar_pb2.CallStreamCall(invite=request, timeout_ms=timeout_ms)


def invite_result(reply: sidecar_pb2.CallStreamReply) -> InviteResult:
    response = reply.invite
    disposition = _DISPOSITIONS.get(response.disposition)
    if disposition is None:
        # An answer this sidecar does not understand: refuse the call cleanly.
        return InviteResult(disposition=Disposition.REJECT, status=500)
    return InviteResult(
        disposition=disposition,
        call_id=response.call_id,
        status=response.status,
        reason=response.reason,
        retry_after=response.retry_after,
        tone=Tone.ERROR if response.tone == sidecar_pb2.FEEDBACK_TONE_ERROR else Tone.CONFIRM,
    )


def cancel_call(origin: Origin, rpc: CancelRpc, timeout_ms: int) -> sidecar_pb2.CallStreamCall:
    return sidecar_pb2.CallStreamCall(
        cancel=sidecar_pb2.CancelRequest(origin=_origin(origin), leg_id=rpc.leg_id),
        timeout_ms=timeout_ms,
    )


def bye_call(
    origin: Origin, rpc: ByeRpc, stats: Sequence[StreamStats], timeout_ms: int
) -> sidecar_pb2.CallStreamCall:
    return sidecar_pb2.CallStreamCall(
        bye=sidecar_pb2.ByeRequest(
            origin=_origin(origin), leg_id=rpc.leg_id, reason=rpc.reason, stats=_stats(stats)
        ),
        timeout_ms=timeout_ms,
    )


def report_call(
    sidecar: str, report: ReportLeg, stats: Sequence[StreamStats], timeout_ms: int
) -> sidecar_pb2.CallStreamCall:
    request = sidecar_pb2.ReportLegRequest(
        sidecar=sidecar,
        call_id=report.call_id,
        leg_id=report.leg_id,
        state=(
            _LEG_STATES[report.state]
            if report.state is not None
            else sidecar_pb2.LEG_STATE_UNSPECIFIED
        ),
        status=report.status,
        reason=report.reason,
        dtmf_digits=report.dtmf_digits,
        stats=_stats(stats),
        direction=(
            _DIRECTIONS[report.direction]
            if report.direction is not None
            else common_pb2.MEDIA_DIRECTION_UNSPECIFIED
        ),
    )
    if report.media is not None:
        request.media.CopyFrom(_media(report.media))
    return sidecar_pb2.CallStreamCall(report_leg=request, timeout_ms=timeout_ms)


def call_batch(calls: list[sidecar_pb2.CallStreamCall]) -> sidecar_pb2.CallStreamRequest:
    return sidecar_pb2.CallStreamRequest(calls=calls)


def call_replies(
    message: sidecar_pb2.CallStreamResponse,
) -> Iterable[sidecar_pb2.CallStreamReply]:
    return message.replies


# -- the shared address book ---------------------------------------------------------------------

_ENTRY_KINDS = {
    sidecar_pb2.PHONEBOOK_ENTRY_KIND_USER: EntryKind.USER,
    sidecar_pb2.PHONEBOOK_ENTRY_KIND_CONTACT: EntryKind.CONTACT,
}


def watch_phonebook(sidecar: str) -> sidecar_pb2.WatchPhonebookRequest:
    return sidecar_pb2.WatchPhonebookRequest(sidecar=sidecar)


def phonebook(message: sidecar_pb2.WatchPhonebookResponse) -> Phonebook:
    return Phonebook.of(
        message.version,
        [
            Entry(
                key=e.key,
                kind=_ENTRY_KINDS.get(e.kind, EntryKind.CONTACT),
                display_name=e.display_name,
                extension=e.extension,
                e164=e.e164,
                mobile=e.mobile,
                other=e.other,
                company=e.company,
                email=e.email,
            )
            for e in message.entries
        ],
    )


def verify_digest(
    sidecar: str, credentials: Credentials, method: str, source: Endpoint, user_agent: str
) -> sidecar_pb2.VerifyDigestRequest:
    return sidecar_pb2.VerifyDigestRequest(
        origin=sidecar_pb2.RequestOrigin(
            sidecar=sidecar, source=_address(source), user_agent=user_agent
        ),
        credentials=_credentials(credentials, method),
    )


def digest_verified(message: sidecar_pb2.VerifyDigestResponse) -> bool:
    return message.verified


# -- subscriptions (BLF) ----------------------------------------------------------------------

_SUBSCRIBE_ACTIONS = {
    "create": sidecar_pb2.SUBSCRIBE_ACTION_CREATE,
    "refresh": sidecar_pb2.SUBSCRIBE_ACTION_REFRESH,
    "end": sidecar_pb2.SUBSCRIBE_ACTION_END,
}
_PHASES = {
    sidecar_pb2.DIALOG_PHASE_TRYING: "trying",
    sidecar_pb2.DIALOG_PHASE_EARLY: "early",
    sidecar_pb2.DIALOG_PHASE_CONFIRMED: "confirmed",
    sidecar_pb2.DIALOG_PHASE_TERMINATED: "terminated",
}
_AVAILABILITIES = {
    common_pb2.AVAILABILITY_AVAILABLE: "available",
    common_pb2.AVAILABILITY_BUSY: "busy",
    common_pb2.AVAILABILITY_IN_A_CALL: "in-a-call",
    common_pb2.AVAILABILITY_DO_NOT_DISTURB: "do-not-disturb",
    common_pb2.AVAILABILITY_BE_RIGHT_BACK: "be-right-back",
    common_pb2.AVAILABILITY_AWAY: "away",
    common_pb2.AVAILABILITY_OFFLINE: "offline",
}


def subscribe_request(call: SubscribeCall) -> sidecar_pb2.SubscribeRequest:
    request = sidecar_pb2.SubscribeRequest(
        origin=_origin(call.origin),
        event=call.event,
        request_uri=call.request_uri,
        from_uri=call.from_uri,
        expires=call.expires,
        subscription_id=call.subscription_id,
        eventlist=call.eventlist,
        action=_SUBSCRIBE_ACTIONS[call.action],
        watcher=call.watcher,
    )
    if call.credentials is not None:
        request.credentials.CopyFrom(_credentials(call.credentials, "SUBSCRIBE"))
    return request


def subscribe_verdict(response: sidecar_pb2.SubscribeResponse) -> tuple[int, str, Grant | None]:
    """SIP status, reason phrase and, for a 200, what was granted."""
    if response.status != 200:
        return response.status or 500, response.reason, None
    grant = Grant(
        watcher=response.watcher,
        expires=response.expires,
        resources=tuple(
            Watched(user=r.user, uri=r.uri, display_name=r.display_name) for r in response.resources
        ),
        list_uri=response.list_uri,
    )
    return 200, response.reason, grant


def watch_states_request(
    sidecar: str, held: Iterable[Subscription], mono_now: float, wall_now: float
) -> sidecar_pb2.WatchStatesRequest:
    out = sidecar_pb2.WatchStatesRequest(sidecar=sidecar)
    for sub in held:
        expire = Timestamp()
        expire.FromNanoseconds(int((wall_now + sub.expires_at - mono_now) * 1e9))
        out.subscriptions.append(
            sidecar_pb2.HeldSubscription(
                subscription_id=sub.id,
                watcher=sub.watcher,
                event=sub.event,
                resource_uri=sub.resource_uri,
                users=list(sub.users),
                expire_time=expire,
                source=_address(sub.dest),
            )
        )
    return out


def _user_state(message: sidecar_pb2.UserState) -> UserState:
    return UserState(
        user=message.user,
        availability=_AVAILABILITIES.get(message.availability, "offline"),
        note=message.note,
        dialogs=tuple(
            DialogState(
                id=d.id,
                phase=_PHASES.get(d.phase, "terminated"),
                initiator=d.initiator,
                remote_uri=d.remote_uri,
                remote_display=d.remote_display,
            )
            for d in message.dialogs
        ),
    )


def watch_states_item(
    message: sidecar_pb2.WatchStatesResponse,
) -> tuple[list[UserState] | None, UserState | None, tuple[str, ...]]:
    """(snapshot, None, revoked subscription ids) or (None, change, ())."""
    which = message.WhichOneof("payload")
    if which == "snapshot":
        states = [_user_state(s) for s in message.snapshot.states]
        return states, None, tuple(message.revoked_subscriptions)
    if which == "change":
        return None, _user_state(message.change), ()
    return None, None, ()


# -- short messages (Message, MessageDelivery) --------------------------------------------------


def message_request(call: MessageCall) -> sidecar_pb2.MessageRequest:
    return sidecar_pb2.MessageRequest(
        origin=_origin(call.origin),
        credentials=_credentials(call.credentials, "MESSAGE"),
        from_uri=call.from_uri,
        from_display_name=call.from_display_name,
        request_uri=call.request_uri,
        content_type=call.content_type,
        body=call.body,
    )


def message_answer(response: sidecar_pb2.MessageResponse) -> MessageAnswer:
    status = response.status
    if not 200 <= status <= 699:
        # An answer this sidecar cannot pass on: refusing is the safe one.
        return MessageAnswer(status=500)
    return MessageAnswer(
        status=status,
        reason=response.reason,
        retry_after=response.retry_after,
        accept=response.accept,
    )


def message_delivery(delivery_id: str, status: int, reason: str) -> sidecar_pb2.ConnectRequest:
    return sidecar_pb2.ConnectRequest(
        delivery=sidecar_pb2.MessageDelivery(delivery_id=delivery_id, status=status, reason=reason)
    )
