"""sip2uc.v1 messages to the state view's values: the one place that reads generated types."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message
from sip2uc.v1 import (
    admin_pb2,
    calls_pb2,
    common_pb2,
    connectors_pb2,
    presence_pb2,
    registrations_pb2,
    sidecar_pb2,
)

from .model import (
    CallView,
    ConnectorView,
    LegView,
    LogEntryView,
    PresenceView,
    RegistrationView,
    SidecarView,
    StreamQuality,
)


def seconds(message: Message, field: str) -> float | None:
    """A Timestamp field as seconds since the epoch; None when unset."""
    if not message.HasField(field):
        return None
    value: Any = getattr(message, field)
    return float(value.seconds) + float(value.nanos) / 1e9


def word(enum: Any, value: int, prefix: str) -> str:
    """An enum value as the page shows it: AVAILABILITY_DO_NOT_DISTURB -> "do not disturb".
    UNSPECIFIED and values newer than these stubs read "unknown"."""
    try:
        name: str = enum.Name(value)
    except ValueError:
        return "unknown"
    text = name.removeprefix(prefix).replace("_", " ").lower()
    return "unknown" if text == "unspecified" else text


def sidecar(pb: admin_pb2.Sidecar) -> SidecarView:
    return SidecarView(
        name=pb.name.removeprefix("sidecars/"),
        site=pb.site,
        connected=pb.state == admin_pb2.SIDECAR_STATE_CONNECTED,
        sip_listeners=tuple(pb.sip_listeners),
        rtp=pb.rtp,
        capacity=pb.capacity,
        channel_limit=pb.channel_limit,
        active_legs=pb.active_legs,
        relay_ports_in_use=pb.relay_ports_in_use,
        version=pb.version,
        connect_time=seconds(pb, "connect_time"),
        last_seen=seconds(pb, "last_seen_time"),
    )


def registration(pb: registrations_pb2.Registration) -> RegistrationView:
    host = pb.source.host
    source = f"[{host}]:{pb.source.port}" if ":" in host else f"{host}:{pb.source.port}"
    return RegistrationView(
        name=pb.name,
        user=pb.user,
        device_id=pb.device_id,
        aor=pb.aor,
        contact_uri=pb.contact_uri,
        source=source if host else "",
        transport=word(common_pb2.Transport, pb.transport, "TRANSPORT_"),
        sidecar=pb.sidecar,
        user_agent=pb.user_agent,
        expire_time=seconds(pb, "expire_time"),
        create_time=seconds(pb, "create_time"),
        refresh_time=seconds(pb, "refresh_time"),
    )


def presence(pb: presence_pb2.Presence) -> PresenceView:
    activity = word(common_pb2.Activity, pb.activity, "ACTIVITY_")
    return PresenceView(
        user=pb.user,
        extension=pb.extension,
        sip_uri=pb.sip_uri,
        availability=word(common_pb2.Availability, pb.availability, "AVAILABILITY_"),
        activity="" if activity in ("none", "unknown") else activity,
        source=word(common_pb2.PresenceSource, pb.source, "PRESENCE_SOURCE_"),
        note=pb.note,
        since=seconds(pb, "since"),
        expire_time=seconds(pb, "expire_time"),
        registered=pb.registered,
    )


def quality(pb: sidecar_pb2.StreamStats) -> StreamQuality:
    return StreamQuality(
        direction=pb.direction,
        packets=pb.packets,
        lost=pb.lost,
        jitter_ms=pb.jitter_ms,
        mos=pb.mos,
        codec=pb.codec,
    )


def direction(value: int) -> str:
    text = word(common_pb2.MediaDirection, value, "MEDIA_DIRECTION_")
    return "sendrecv" if text == "unknown" else text  # unset means sendrecv (RFC 3264 §5.1)


def call(pb: calls_pb2.Call) -> CallView:
    return CallView(
        name=pb.name,
        state=word(calls_pb2.CallState, pb.state, "CALL_STATE_"),
        caller=pb.caller,
        dialled=pb.dialled,
        callee=pb.callee,
        legs=tuple(
            LegView(
                id=leg.id,
                sidecar=leg.sidecar,
                state=word(sidecar_pb2.LegState, leg.state, "LEG_STATE_"),
                party=leg.party,
                codec=leg.codec,
                direction=direction(leg.direction),
                quality=tuple(quality(s) for s in leg.stats),
            )
            for leg in pb.legs
        ),
        start_time=seconds(pb, "start_time"),
        answer_time=seconds(pb, "answer_time"),
        end_time=seconds(pb, "end_time"),
        end_reason=pb.end_reason,
        final_status=pb.final_status,
    )


def log_entry(pb: admin_pb2.LogEntry) -> LogEntryView:
    return LogEntryView(
        sequence=pb.sequence,
        time=seconds(pb, "time"),
        severity=word(admin_pb2.LogSeverity, pb.severity, "LOG_SEVERITY_"),
        logger=pb.logger,
        message=pb.message,
        trace_id=pb.trace_id,
    )


def connector(pb: connectors_pb2.Connector) -> ConnectorView:
    kind = pb.WhichOneof("config")
    status = pb.status
    return ConnectorView(
        name=pb.name.removeprefix("connectors/"),
        display_name=pb.display_name,
        kind={"sip_presence": "SIP presence", "teams": "Teams"}.get(kind or "", "unknown"),
        target=(
            pb.sip_presence.server
            if kind == "sip_presence"
            else f"tenant {pb.teams.tenant_id}"
            if kind == "teams"
            else ""
        ),
        state=word(connectors_pb2.ConnectorState, status.state, "CONNECTOR_STATE_"),
        last_error=status.last_error,
        lag_seconds=(
            status.lag.seconds + status.lag.nanos / 1e9 if status.HasField("lag") else None
        ),
        users_mapped=status.users_mapped,
        last_sync_time=seconds(status, "last_sync_time"),
        runner=status.runner,
        report_time=seconds(status, "report_time"),
        changes_out=status.changes_out,
        changes_in=status.changes_in,
        external=pb.external,
        disabled=pb.disabled,
    )
