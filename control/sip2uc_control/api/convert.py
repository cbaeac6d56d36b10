"""Conversions between domain objects and sip2uc.v1 messages."""

from __future__ import annotations

import logging
from collections.abc import Callable

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from sip2uc.v1 import (
    admin_pb2,
    calls_pb2,
    common_pb2,
    connectors_pb2,
    presence_pb2,
    registrations_pb2,
    sidecar_pb2,
    trunks_pb2,
    users_pb2,
)
from sip2uc_core.stream_stats import StreamStats

from ..bindings import Binding
from ..calls import Call, CallState, LegState
from ..connectors import Connector, ConnectorKind, ConnectorState, ConnectorStatus
from ..connectors_config import validate_settings
from ..domain import (
    Algorithm,
    Device,
    DirectoryOrigin,
    Forwarding,
    RegisteringDevice,
    Transport,
    TrunkDevice,
    User,
    UserSettings,
)
from ..enrollments import Enrollment
from ..errors import FieldViolation, InvalidArgument, check
from ..lockout import AccountLock
from ..presence import Activity, Availability, EffectivePresence, PresenceChange, Source
from ..recent_log import LogEntry
from ..settings import ServerSettings, SidecarPolicy, UpstreamTrunk
from ..sidecars import SidecarBan, SidecarInfo
from ..trunks import (
    IdentityPolicy,
    NumberFormat,
    Reachability,
    Registration,
    TransportName,
    Trunk,
    TrunkHealth,
)

AVAILABILITY_TO_PB = {
    Availability.AVAILABLE: common_pb2.AVAILABILITY_AVAILABLE,
    Availability.BUSY: common_pb2.AVAILABILITY_BUSY,
    Availability.IN_A_CALL: common_pb2.AVAILABILITY_IN_A_CALL,
    Availability.DO_NOT_DISTURB: common_pb2.AVAILABILITY_DO_NOT_DISTURB,
    Availability.BE_RIGHT_BACK: common_pb2.AVAILABILITY_BE_RIGHT_BACK,
    Availability.AWAY: common_pb2.AVAILABILITY_AWAY,
    Availability.OFFLINE: common_pb2.AVAILABILITY_OFFLINE,
}
AVAILABILITY_FROM_PB = {v: k for k, v in AVAILABILITY_TO_PB.items()}
ACTIVITY_TO_PB = {
    Activity.NONE: common_pb2.ACTIVITY_NONE,
    Activity.RINGING: common_pb2.ACTIVITY_RINGING,
    Activity.IN_A_CALL: common_pb2.ACTIVITY_IN_A_CALL,
}
SOURCE_TO_PB = {
    Source.REGISTRATION: common_pb2.PRESENCE_SOURCE_REGISTRATION,
    Source.CALL: common_pb2.PRESENCE_SOURCE_CALL,
    Source.MANUAL: common_pb2.PRESENCE_SOURCE_MANUAL,
    Source.EXTERNAL: common_pb2.PRESENCE_SOURCE_EXTERNAL,
}
SOURCE_FROM_PB = {v: k for k, v in SOURCE_TO_PB.items()}
TRANSPORT_TO_PB = {
    Transport.UDP: common_pb2.TRANSPORT_UDP,
    Transport.TCP: common_pb2.TRANSPORT_TCP,
    Transport.TLS: common_pb2.TRANSPORT_TLS,
}
TRANSPORT_FROM_PB = {v: k for k, v in TRANSPORT_TO_PB.items()}
DIGEST_ALGORITHM_TO_PB = {
    Algorithm.MD5: common_pb2.DIGEST_ALGORITHM_MD5,
    Algorithm.SHA_256: common_pb2.DIGEST_ALGORITHM_SHA_256,
}
DIGEST_ALGORITHM_FROM_PB = {v: k for k, v in DIGEST_ALGORITHM_TO_PB.items()}


def ts(seconds: float | None) -> Timestamp | None:
    if seconds is None or seconds == 0:
        return None
    t = Timestamp()
    t.FromNanoseconds(int(seconds * 1e9))
    return t


def from_ts(t: Timestamp) -> float:
    return float(t.ToNanoseconds()) / 1e9


# --- users -------------------------------------------------------------------------------------


def forwarding_to_pb(f: Forwarding) -> users_pb2.Forwarding:
    return users_pb2.Forwarding(enabled=f.enabled, target=f.target)


def settings_to_pb(s: UserSettings) -> users_pb2.UserSettings:
    return users_pb2.UserSettings(
        dnd_allowed=s.dnd_allowed,
        forward_always=forwarding_to_pb(s.forward_always),
        forward_busy=forwarding_to_pb(s.forward_busy),
        forward_no_answer=forwarding_to_pb(s.forward_no_answer),
        no_answer_timeout_seconds=s.no_answer_timeout_seconds,
        call_waiting=s.call_waiting,
        buddies=list(s.buddies),
        watch_policy=WATCH_POLICY_TO_PB.get(s.watch_policy, users_pb2.WATCH_POLICY_UNSPECIFIED),
        allowed_watchers=list(s.allowed_watchers),
    )


#: The domain's watch policies (see `subscriptions.py`) <-> users.proto's WatchPolicy.
WATCH_POLICY_TO_PB = {
    "everyone": users_pb2.WATCH_POLICY_EVERYONE,
    "same-sidecar": users_pb2.WATCH_POLICY_SAME_SIDECAR,
    "allow-list": users_pb2.WATCH_POLICY_ALLOW_LIST,
}
WATCH_POLICY_FROM_PB = {v: k for k, v in WATCH_POLICY_TO_PB.items()}


def settings_from_pb(s: users_pb2.UserSettings) -> UserSettings:
    def fwd(f: users_pb2.Forwarding) -> Forwarding:
        return Forwarding(enabled=f.enabled, target=f.target)

    return UserSettings(
        dnd_allowed=s.dnd_allowed,
        forward_always=fwd(s.forward_always),
        forward_busy=fwd(s.forward_busy),
        forward_no_answer=fwd(s.forward_no_answer),
        no_answer_timeout_seconds=s.no_answer_timeout_seconds,
        call_waiting=s.call_waiting,
        buddies=tuple(b.strip() for b in s.buddies if b.strip()),
        watch_policy=WATCH_POLICY_FROM_PB.get(s.watch_policy, ""),
        allowed_watchers=tuple(w.strip() for w in s.allowed_watchers if w.strip()),
    )


def device_to_pb(d: Device) -> users_pb2.Device:
    out = users_pb2.Device(id=d.id, label=d.label)
    if d.registering is not None:
        out.registering.CopyFrom(
            users_pb2.RegisteringDevice(
                digest_username=d.registering.digest_username,
                has_password=d.registering.has_password,
                max_bindings=d.registering.max_bindings,
                digest_algorithms=[
                    DIGEST_ALGORITHM_TO_PB[a] for a in d.registering.digest_algorithms
                ],
            )
        )
    elif d.trunk is not None:
        t = d.trunk
        out.trunk.CopyFrom(
            users_pb2.TrunkDevice(
                source_network=t.source_network,
                source_port=t.source_port,
                request_uri_user=t.request_uri_user,
                target=t.target,
                transport=TRANSPORT_TO_PB[t.transport],
                sidecar=t.sidecar,
            )
        )
    return out


def devices_from_pb(
    devices: list[users_pb2.Device], extension: str
) -> tuple[tuple[Device, ...], dict[int, str]]:
    """Domain devices plus the passwords given, by device position. InvalidArgument for a
    digest algorithm that is not set or not known."""
    out: list[Device] = []
    passwords: dict[int, str] = {}
    violations: list[FieldViolation] = []
    for i, d in enumerate(devices):
        kind = d.WhichOneof("kind")
        if kind == "registering":
            r = d.registering
            algorithms: list[Algorithm] = []
            for value in r.digest_algorithms:
                algorithm = DIGEST_ALGORITHM_FROM_PB.get(value)
                if algorithm is None:
                    violations.append(
                        FieldViolation(
                            f"user.devices[{i}].registering.digest_algorithms",
                            "DIGEST_ALGORITHM_MD5 or DIGEST_ALGORITHM_SHA_256",
                        )
                    )
                else:
                    algorithms.append(algorithm)
            out.append(
                Device(
                    id=d.id,
                    label=d.label,
                    registering=RegisteringDevice(
                        digest_username=r.digest_username or extension,
                        max_bindings=r.max_bindings,
                        digest_algorithms=tuple(algorithms),
                    ),
                )
            )
            if r.password:
                passwords[i] = r.password
        elif kind == "trunk":
            t = d.trunk
            out.append(
                Device(
                    id=d.id,
                    label=d.label,
                    trunk=TrunkDevice(
                        source_network=t.source_network,
                        source_port=t.source_port,
                        request_uri_user=t.request_uri_user or extension,
                        target=t.target,
                        transport=TRANSPORT_FROM_PB.get(t.transport, Transport.UDP),
                        sidecar=t.sidecar,
                    ),
                )
            )
        else:
            out.append(Device(id=d.id, label=d.label))
    check(violations)
    return tuple(out), passwords


def origin_to_pb(o: DirectoryOrigin) -> users_pb2.DirectoryOrigin:
    return users_pb2.DirectoryOrigin(
        source=o.source,
        source_id=o.source_id,
        overridden_fields=list(o.overridden_fields),
        import_time=ts(o.import_time),
    )


def user_to_pb(u: User) -> users_pb2.User:
    return users_pb2.User(
        name=u.name,
        sip_uri=u.sip_uri,
        display_name=u.display_name,
        extension=u.extension,
        e164=u.e164,
        email=u.email,
        disabled=u.disabled,
        devices=[device_to_pb(d) for d in u.devices],
        settings=settings_to_pb(u.settings),
        origin=origin_to_pb(u.origin) if u.origin.source else None,
        create_time=ts(u.create_time),
        update_time=ts(u.update_time),
        entra_object_id=u.entra_object_id,
        user_principal_name=u.user_principal_name,
    )


# --- presence ----------------------------------------------------------------------------------


def presence_to_pb(
    user: User | None, user_id: str, p: EffectivePresence, registered: bool, calls: int
) -> presence_pb2.Presence:
    return presence_pb2.Presence(
        user=f"users/{user_id}",
        extension=user.extension if user else "",
        sip_uri=user.sip_uri if user else "",
        availability=AVAILABILITY_TO_PB[p.availability],
        activity=ACTIVITY_TO_PB[p.activity],
        source=SOURCE_TO_PB[p.source],
        note=p.note or "",
        since=ts(p.since),
        expire_time=ts(p.expires_at),
        registered=registered,
        active_calls=calls,
        origin=p.origin or "",
    )


def change_to_pb(user: User | None, change: PresenceChange) -> presence_pb2.PresenceChange:
    return presence_pb2.PresenceChange(
        previous=presence_to_pb(user, change.user, change.previous, False, 0),
        current=presence_to_pb(user, change.user, change.current, False, 0),
        source=SOURCE_TO_PB[change.source],
        reason=change.reason.value,
        change_time=ts(change.at),
        origin=change.origin or "",
    )


# --- registrations -----------------------------------------------------------------------------


def binding_to_pb(b: Binding) -> registrations_pb2.Registration:
    return registrations_pb2.Registration(
        name=b.name,
        user=f"users/{b.user_id}",
        device_id=b.device_id,
        aor=b.aor,
        contact_uri=b.contact_uri,
        source=common_pb2.SocketAddress(host=b.source_host, port=b.source_port),
        transport=TRANSPORT_TO_PB.get(Transport(b.transport), common_pb2.TRANSPORT_UNSPECIFIED),
        sidecar=b.sidecar,
        user_agent=b.user_agent,
        q_milli=b.q_milli,
        call_id=b.call_id,
        cseq=b.cseq,
        instance_id=b.instance_id,
        expire_time=ts(b.expire_time),
        create_time=ts(b.create_time),
        refresh_time=ts(b.refresh_time),
    )


# --- admin -------------------------------------------------------------------------------------

CODE_ACTION_TO_PB = {
    "dnd-on": admin_pb2.PRESENCE_CODE_ACTION_DND_ON,
    "dnd-off": admin_pb2.PRESENCE_CODE_ACTION_DND_OFF,
    "away": admin_pb2.PRESENCE_CODE_ACTION_AWAY,
    "be-right-back": admin_pb2.PRESENCE_CODE_ACTION_BE_RIGHT_BACK,
    "busy": admin_pb2.PRESENCE_CODE_ACTION_BUSY,
    "reset": admin_pb2.PRESENCE_CODE_ACTION_RESET,
    "appear-offline": admin_pb2.PRESENCE_CODE_ACTION_APPEAR_OFFLINE,
    "forward-always-on": admin_pb2.PRESENCE_CODE_ACTION_FORWARD_ALWAYS_ON,
    "forward-always-off": admin_pb2.PRESENCE_CODE_ACTION_FORWARD_ALWAYS_OFF,
    "forward-busy-on": admin_pb2.PRESENCE_CODE_ACTION_FORWARD_BUSY_ON,
    "forward-busy-off": admin_pb2.PRESENCE_CODE_ACTION_FORWARD_BUSY_OFF,
    "forward-no-answer-on": admin_pb2.PRESENCE_CODE_ACTION_FORWARD_NO_ANSWER_ON,
    "forward-no-answer-off": admin_pb2.PRESENCE_CODE_ACTION_FORWARD_NO_ANSWER_OFF,
}
CODE_ACTION_FROM_PB = {v: k for k, v in CODE_ACTION_TO_PB.items()}


def server_settings_to_pb(s: ServerSettings) -> admin_pb2.Settings:
    return admin_pb2.Settings(
        sip_domain=s.sip_domain,
        realm=s.realm,
        presence_codes=[
            admin_pb2.PresenceCode(
                code=c["code"],
                action=CODE_ACTION_TO_PB.get(
                    c["action"], admin_pb2.PRESENCE_CODE_ACTION_UNSPECIFIED
                ),
                description=c.get("description", ""),
            )
            for c in s.presence_codes
        ],
        media_timeout_seconds=s.media_timeout_seconds,
        no_answer_timeout_seconds=s.no_answer_timeout_seconds,
        min_expires=s.min_expires,
        max_expires=s.max_expires,
        default_expires=s.default_expires,
        max_bindings_per_device=s.max_bindings_per_device,
        ban_threshold=s.ban_threshold,
        ban_window_seconds=s.ban_window_seconds,
        ban_seconds=s.ban_seconds,
        sidecar_grace_seconds=s.sidecar_grace_seconds,
        default_channel_limit=s.default_channel_limit,
        sidecars=[
            admin_pb2.SidecarPolicy(
                name=p.name,
                allowed_networks=list(p.allowed_networks),
                channel_limit=p.channel_limit,
            )
            for p in s.sidecars
        ],
        upstream_trunk=admin_pb2.UpstreamTrunk(
            enabled=s.upstream_trunk.enabled,
            address=s.upstream_trunk.address,
            sidecar=s.upstream_trunk.sidecar,
            allowed_pattern=s.upstream_trunk.allowed_pattern,
        ),
        default_region=s.default_region,
        message_max_bytes=s.message_max_bytes,
        message_rate_per_minute=s.message_rate_per_minute,
        message_burst=s.message_burst,
        message_retention_days=s.message_retention_days,
        message_history_max=s.message_history_max,
    )


def server_settings_field_from_pb(name: str, pb: admin_pb2.Settings) -> object:
    """The domain value of one top-level Settings field (for field-mask updates)."""
    if name == "presence_codes":
        return tuple(
            {
                "code": c.code,
                "action": CODE_ACTION_FROM_PB.get(c.action, "unspecified"),
                **({"description": c.description} if c.description else {}),
            }
            for c in pb.presence_codes
        )
    if name == "sidecars":
        return tuple(
            SidecarPolicy(p.name, tuple(p.allowed_networks), p.channel_limit) for p in pb.sidecars
        )
    if name == "default_region":
        return pb.default_region.strip().upper()
    if name == "upstream_trunk":
        t = pb.upstream_trunk
        return UpstreamTrunk(t.enabled, t.address, t.sidecar, t.allowed_pattern)
    return getattr(pb, name)


def sidecar_to_pb(
    s: SidecarInfo, bindings: int, settings_limit: int, *, enrolled: bool = False
) -> admin_pb2.Sidecar:
    """`settings_limit` is the channel limit the settings give the sidecar; it accepts no more
    legs than its own capacity either (as the sidecar applies it)."""
    limit = min(settings_limit, s.capacity) if s.capacity else settings_limit
    return admin_pb2.Sidecar(
        name=f"sidecars/{s.name}",
        site=s.site,
        state=admin_pb2.SIDECAR_STATE_CONNECTED if s.connected else admin_pb2.SIDECAR_STATE_LOST,
        sip_listeners=s.sip_listeners,
        rtp=s.rtp,
        capacity=s.capacity,
        active_legs=s.active_legs,
        bindings=bindings,
        version=s.version,
        connect_time=ts(s.connect_time),
        last_seen_time=ts(s.last_seen),
        channel_limit=limit,
        relay_ports_in_use=s.relay_ports_in_use,
        enrolled=enrolled,
    )


def enrollment_to_pb(e: Enrollment) -> admin_pb2.SidecarEnrollment:
    return admin_pb2.SidecarEnrollment(
        name=f"sidecars/{e.name}",
        create_time=ts(e.create_time),
        last_connect_time=ts(e.last_connect_time),
    )


def sidecar_ban_to_pb(sidecar: str, ban: SidecarBan) -> admin_pb2.Ban:
    return admin_pb2.Ban(
        kind=admin_pb2.BAN_KIND_SOURCE_USER if ban.user else admin_pb2.BAN_KIND_SOURCE,
        source=ban.source,
        user=ban.user,
        sidecar=f"sidecars/{sidecar}",
        reason=ban.reason,
        start_time=ts(ban.start_time),
        expire_time=ts(ban.expire_time),
    )


def account_lock_to_pb(lock: AccountLock) -> admin_pb2.Ban:
    return admin_pb2.Ban(
        kind=admin_pb2.BAN_KIND_ACCOUNT,
        user=lock.user,
        reason=lock.reason,
        start_time=ts(lock.start),
        expire_time=ts(lock.until),
    )


_LEVEL_TO_SEVERITY = (
    (logging.CRITICAL, admin_pb2.LOG_SEVERITY_CRITICAL),
    (logging.ERROR, admin_pb2.LOG_SEVERITY_ERROR),
    (logging.WARNING, admin_pb2.LOG_SEVERITY_WARNING),
)
_SEVERITY_TO_LEVEL = {severity: level for level, severity in _LEVEL_TO_SEVERITY}


def log_severity_to_pb(level: int) -> admin_pb2.LogSeverity.ValueType:
    return next(
        (severity for floor, severity in _LEVEL_TO_SEVERITY if level >= floor),
        admin_pb2.LOG_SEVERITY_UNSPECIFIED,
    )


def log_level_from_pb(severity: admin_pb2.LogSeverity.ValueType) -> int:
    """The least logging level a `min_severity` admits (UNSPECIFIED: every entry)."""
    return _SEVERITY_TO_LEVEL.get(severity, 0)


def log_entry_to_pb(entry: LogEntry) -> admin_pb2.LogEntry:
    return admin_pb2.LogEntry(
        sequence=entry.sequence,
        time=ts(entry.time),
        severity=log_severity_to_pb(entry.level),
        logger=entry.logger,
        message=entry.message,
        trace_id=entry.trace_id,
    )


# --- calls -------------------------------------------------------------------------------------

_DIRECTION_TO_PB = {
    "sendrecv": common_pb2.MEDIA_DIRECTION_SENDRECV,
    "sendonly": common_pb2.MEDIA_DIRECTION_SENDONLY,
    "recvonly": common_pb2.MEDIA_DIRECTION_RECVONLY,
    "inactive": common_pb2.MEDIA_DIRECTION_INACTIVE,
}


def direction_to_pb(value: str) -> common_pb2.MediaDirection.ValueType:
    return _DIRECTION_TO_PB.get(value, common_pb2.MEDIA_DIRECTION_SENDRECV)


_LEG_STATE_TO_PB = {
    LegState.CREATED: sidecar_pb2.LEG_STATE_UNSPECIFIED,
    LegState.TRYING: sidecar_pb2.LEG_STATE_TRYING,
    LegState.RINGING: sidecar_pb2.LEG_STATE_RINGING,
    LegState.EARLY_MEDIA: sidecar_pb2.LEG_STATE_EARLY_MEDIA,
    LegState.ANSWERED: sidecar_pb2.LEG_STATE_ANSWERED,
    LegState.FAILED: sidecar_pb2.LEG_STATE_FAILED,
    LegState.ENDED: sidecar_pb2.LEG_STATE_ENDED,
}
_CALL_STATE_TO_PB = {
    CallState.RINGING: calls_pb2.CALL_STATE_RINGING,
    CallState.CONNECTED: calls_pb2.CALL_STATE_CONNECTED,
    CallState.ENDED: calls_pb2.CALL_STATE_ENDED,
}


def stats_to_pb(s: StreamStats) -> sidecar_pb2.StreamStats:
    return sidecar_pb2.StreamStats(
        direction=s.direction,
        packets=s.packets,
        bytes=s.bytes,
        lost=s.lost,
        jitter_ms=s.jitter_ms,
        mos=s.mos,
        codec=s.codec,
    )


def call_to_pb(call: Call, users: Callable[[str], User | None] | None = None) -> calls_pb2.Call:
    """The call; with `users`, its parties' extensions and names (users deleted since stay ids)."""
    caller = users(call.caller_user) if users and call.caller_user else None
    callee = users(call.callee_user) if users and call.callee_user else None
    return calls_pb2.Call(
        name=call.name,
        state=_CALL_STATE_TO_PB[call.state],
        caller=call.caller,
        dialled=call.dialled,
        callee=f"users/{call.callee_user}" if call.callee_user else "",
        caller_extension=caller.extension if caller else "",
        caller_display_name=caller.display_name if caller else "",
        callee_extension=callee.extension if callee else "",
        callee_display_name=callee.display_name if callee else "",
        on_hold=call.state is CallState.CONNECTED
        and any(leg.direction != "sendrecv" for leg in call.legs.values()),
        legs=[
            calls_pb2.CallLeg(
                id=leg.id,
                sidecar=leg.sidecar,
                state=_LEG_STATE_TO_PB[leg.state],
                party=leg.party,
                registration=leg.registration,
                codec=leg.codec,
                direction=direction_to_pb(leg.direction),
                stats=[stats_to_pb(s) for s in leg.stats],
            )
            for leg in call.legs.values()
        ],
        dtmf=[
            calls_pb2.DtmfEvent(digit=d, leg_id=leg_id, time=ts(t)) for d, leg_id, t in call.dtmf
        ],
        start_time=ts(call.start_time),
        answer_time=ts(call.answer_time),
        end_time=ts(call.end_time),
        end_reason=call.end_reason,
        final_status=call.final_status,
    )


# --- connectors --------------------------------------------------------------------------------

#: Input-only secret fields of each kind's configuration, and the output-only flag saying one is set.
CONNECTOR_SECRETS: dict[ConnectorKind, dict[str, str]] = {
    ConnectorKind.SIP_PRESENCE: {"password": "has_password"},
    ConnectorKind.TEAMS: {"client_secret": "has_client_secret"},
}
_CONNECTOR_STATE_TO_PB = {
    ConnectorState.CONNECTING: connectors_pb2.CONNECTOR_STATE_CONNECTING,
    ConnectorState.CONNECTED: connectors_pb2.CONNECTOR_STATE_CONNECTED,
    ConnectorState.FAILED: connectors_pb2.CONNECTOR_STATE_FAILED,
}
_CONNECTOR_STATE_FROM_PB = {v: k for k, v in _CONNECTOR_STATE_TO_PB.items()}


def connector_config_from_pb(
    pb: connectors_pb2.Connector, prefix: str
) -> tuple[ConnectorKind, dict[str, object], dict[str, str]]:
    """The kind, its checked configuration (JSON-able, API field names) and its secrets."""
    which = pb.WhichOneof("config")
    if which is None:
        raise InvalidArgument(FieldViolation(f"{prefix}.config", "required: sip_presence or teams"))
    kind = ConnectorKind(which)
    settings: dict[str, object] = json_format.MessageToDict(
        getattr(pb, which), preserving_proto_field_name=True
    )
    secrets: dict[str, str] = {}
    for secret, flag in CONNECTOR_SECRETS[kind].items():
        value = settings.pop(secret, "")
        settings.pop(flag, None)
        if isinstance(value, str) and value:
            secrets[secret] = value
    check_violations = validate_settings(kind, settings, f"{prefix}.{which}")
    if check_violations:
        raise InvalidArgument(check_violations)
    return kind, settings, secrets


def connector_status_to_pb(status: ConnectorStatus) -> connectors_pb2.ConnectorStatus:
    lag = Duration()
    lag.FromNanoseconds(int(status.lag_seconds * 1e9))
    return connectors_pb2.ConnectorStatus(
        state=_CONNECTOR_STATE_TO_PB[status.state],
        last_error=status.last_error,
        lag=lag,
        users_mapped=status.users_mapped,
        last_sync_time=ts(status.last_sync_time),
        runner=status.runner,
        report_time=ts(status.report_time),
        changes_out=status.changes_out,
        changes_in=status.changes_in,
    )


def connector_status_from_pb(pb: connectors_pb2.ConnectorStatus) -> ConnectorStatus:
    return ConnectorStatus(
        state=_CONNECTOR_STATE_FROM_PB.get(pb.state, ConnectorState.CONNECTING),
        last_error=pb.last_error[:1000],
        lag_seconds=max(0.0, pb.lag.ToNanoseconds() / 1e9),
        users_mapped=pb.users_mapped,
        last_sync_time=from_ts(pb.last_sync_time) if pb.HasField("last_sync_time") else 0.0,
        changes_out=pb.changes_out,
        changes_in=pb.changes_in,
    )


def connector_to_pb(connector: Connector, status: ConnectorStatus) -> connectors_pb2.Connector:
    """The resource as the API shows it: secrets replaced by whether they are set."""
    out = connectors_pb2.Connector(
        name=connector.name,
        display_name=connector.display_name,
        external=connector.external,
        disabled=connector.disabled,
        status=connector_status_to_pb(status),
        create_time=ts(connector.create_time),
        update_time=ts(connector.update_time),
    )
    config = getattr(out, connector.kind.value)
    config.SetInParent()
    json_format.ParseDict(dict(connector.settings), config, ignore_unknown_fields=True)
    for secret, flag in CONNECTOR_SECRETS[connector.kind].items():
        setattr(config, flag, bool(connector.secrets.get(secret)))
    return out


# --- trunks -------------------------------------------------------------------------------------

NUMBER_FORMAT_TO_PB = {
    NumberFormat.E164: trunks_pb2.NUMBER_FORMAT_E164,
    NumberFormat.E164_DIGITS: trunks_pb2.NUMBER_FORMAT_E164_DIGITS,
    NumberFormat.NATIONAL: trunks_pb2.NUMBER_FORMAT_NATIONAL,
}
NUMBER_FORMAT_FROM_PB = {v: k for k, v in NUMBER_FORMAT_TO_PB.items()}
_TRUNK_TRANSPORT_FROM_PB = {
    common_pb2.TRANSPORT_UNSPECIFIED: TransportName.UDP,
    common_pb2.TRANSPORT_UDP: TransportName.UDP,
    common_pb2.TRANSPORT_TCP: TransportName.TCP,
    common_pb2.TRANSPORT_TLS: TransportName.TLS,
}
_REACHABILITY_TO_PB = {
    Reachability.UNKNOWN: trunks_pb2.TRUNK_STATE_UNSPECIFIED,
    Reachability.UP: trunks_pb2.TRUNK_STATE_UP,
    Reachability.DOWN: trunks_pb2.TRUNK_STATE_DOWN,
}
_REGISTRATION_TO_PB = {
    Registration.NOT_REQUIRED: trunks_pb2.TRUNK_REGISTRATION_NOT_REQUIRED,
    Registration.REGISTERED: trunks_pb2.TRUNK_REGISTRATION_REGISTERED,
    Registration.UNREGISTERED: trunks_pb2.TRUNK_REGISTRATION_UNREGISTERED,
}


def trunk_to_pb(trunk: Trunk, health: TrunkHealth) -> trunks_pb2.Trunk:
    """The resource as the API shows it: never the password."""
    identity = trunk.identity
    return trunks_pb2.Trunk(
        name=trunk.name,
        display_name=trunk.display_name,
        address=trunk.address,
        port=trunk.port,
        transport=TRANSPORT_TO_PB[Transport(trunk.transport.value)],
        sidecar=trunk.sidecar,
        username=trunk.username,
        has_password=bool(trunk.password),
        register=trunk.register,
        register_expires=trunk.register_expires,
        outbound_pattern=trunk.outbound_pattern,
        inbound_pattern=trunk.inbound_pattern,
        priority=trunk.priority,
        number_format=NUMBER_FORMAT_TO_PB[trunk.number_format],
        region=trunk.region,
        codecs=list(trunk.codecs),
        channel_limit=trunk.channel_limit,
        identity=trunks_pb2.TrunkIdentityPolicy(
            caller_e164=identity.caller_e164,
            p_asserted_identity=identity.p_asserted_identity,
            diversion=identity.diversion,
            history_info=identity.history_info,
        ),
        allow_relay=trunk.allow_relay,
        options_interval_seconds=trunk.options_interval_seconds,
        inbound_networks=list(trunk.inbound_networks),
        tls_ca_pem=trunk.tls_ca_pem,
        disabled=trunk.disabled,
        status=trunks_pb2.TrunkStatus(
            state=_REACHABILITY_TO_PB[health.state],
            registration=_REGISTRATION_TO_PB[health.registration],
            last_error=health.last_error,
            change_time=ts(health.change_time),
            resolved_addresses=list(health.resolved_addresses),
        ),
        create_time=ts(trunk.create_time),
        update_time=ts(trunk.update_time),
    )


def trunk_from_pb(trunk_id: str, pb: trunks_pb2.Trunk) -> Trunk:
    """Every configurable field of `pb` (output-only ones ignored); checked by the caller."""
    identity = pb.identity
    number_format = NUMBER_FORMAT_FROM_PB.get(pb.number_format, NumberFormat.E164)
    transport = _TRUNK_TRANSPORT_FROM_PB.get(pb.transport)
    if transport is None:
        raise InvalidArgument(FieldViolation("trunk.transport", "UDP, TCP or TLS"))
    return Trunk(
        id=trunk_id,
        display_name=pb.display_name.strip(),
        address=pb.address.strip(),
        port=pb.port,
        transport=transport,
        sidecar=pb.sidecar.strip(),
        username=pb.username.strip(),
        password=pb.password,
        register=pb.register,
        register_expires=pb.register_expires,
        outbound_pattern=pb.outbound_pattern,
        inbound_pattern=pb.inbound_pattern,
        priority=pb.priority,
        number_format=number_format,
        region=pb.region.strip().upper(),
        codecs=tuple(c.strip().upper() for c in pb.codecs),
        channel_limit=pb.channel_limit,
        identity=IdentityPolicy(
            caller_e164=identity.caller_e164 if identity.HasField("caller_e164") else True,
            p_asserted_identity=identity.p_asserted_identity,
            diversion=identity.diversion,
            history_info=identity.history_info,
        ),
        allow_relay=pb.allow_relay,
        options_interval_seconds=pb.options_interval_seconds,
        inbound_networks=tuple(n.strip() for n in pb.inbound_networks),
        tls_ca_pem=pb.tls_ca_pem,
        disabled=pb.disabled,
    )
