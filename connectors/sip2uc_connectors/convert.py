"""Conversions between sip2uc.v1 messages and the bridge types (`bridge`), in one place."""

from __future__ import annotations

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from sip2uc.v1 import common_pb2, connectors_pb2, messages_pb2, presence_pb2, users_pb2

from .bridge import (
    Activity,
    Availability,
    BridgeHealth,
    BridgeState,
    ConnectorConfig,
    InboundMessage,
    InboundPresence,
    MappedUser,
    OutboundMessage,
    PresenceSource,
    PresenceUpdate,
    StateChanges,
)

AVAILABILITY_FROM_PB = {
    common_pb2.AVAILABILITY_AVAILABLE: Availability.AVAILABLE,
    common_pb2.AVAILABILITY_BUSY: Availability.BUSY,
    common_pb2.AVAILABILITY_IN_A_CALL: Availability.IN_A_CALL,
    common_pb2.AVAILABILITY_DO_NOT_DISTURB: Availability.DO_NOT_DISTURB,
    common_pb2.AVAILABILITY_BE_RIGHT_BACK: Availability.BE_RIGHT_BACK,
    common_pb2.AVAILABILITY_AWAY: Availability.AWAY,
    common_pb2.AVAILABILITY_OFFLINE: Availability.OFFLINE,
}
AVAILABILITY_TO_PB = {v: k for k, v in AVAILABILITY_FROM_PB.items()}
_ACTIVITY_FROM_PB = {
    common_pb2.ACTIVITY_NONE: Activity.NONE,
    common_pb2.ACTIVITY_RINGING: Activity.RINGING,
    common_pb2.ACTIVITY_IN_A_CALL: Activity.IN_A_CALL,
}
_SOURCE_FROM_PB = {
    common_pb2.PRESENCE_SOURCE_REGISTRATION: PresenceSource.REGISTRATION,
    common_pb2.PRESENCE_SOURCE_CALL: PresenceSource.CALL,
    common_pb2.PRESENCE_SOURCE_MANUAL: PresenceSource.MANUAL,
    common_pb2.PRESENCE_SOURCE_EXTERNAL: PresenceSource.EXTERNAL,
}
_STATE_TO_PB = {
    BridgeState.CONNECTING: connectors_pb2.CONNECTOR_STATE_CONNECTING,
    BridgeState.CONNECTED: connectors_pb2.CONNECTOR_STATE_CONNECTED,
    BridgeState.FAILED: connectors_pb2.CONNECTOR_STATE_FAILED,
}


def _seconds(t: Timestamp) -> float:
    return float(t.ToNanoseconds()) / 1e9


def presence_from_pb(p: presence_pb2.Presence, changed_at: float) -> PresenceUpdate:
    return PresenceUpdate(
        user=p.user,
        sip_uri=p.sip_uri,
        extension=p.extension,
        availability=AVAILABILITY_FROM_PB.get(p.availability, Availability.OFFLINE),
        activity=_ACTIVITY_FROM_PB.get(p.activity, Activity.NONE),
        source=_SOURCE_FROM_PB.get(p.source, PresenceSource.REGISTRATION),
        origin=p.origin,
        note=p.note,
        registered=p.registered,
        changed_at=changed_at,
        expires_at=_seconds(p.expire_time) if p.HasField("expire_time") else None,
    )


def change_from_pb(c: presence_pb2.PresenceChange) -> PresenceUpdate:
    at = _seconds(c.change_time) if c.HasField("change_time") else 0.0
    return presence_from_pb(c.current, at)


def user_from_pb(u: users_pb2.User) -> MappedUser:
    return MappedUser(
        user=u.name,
        sip_uri=u.sip_uri,
        extension=u.extension,
        entra_object_id=u.entra_object_id,
        user_principal_name=u.user_principal_name,
        disabled=u.disabled,
    )


def config_from_claim(claim: connectors_pb2.ClaimConnectorResponse) -> ConnectorConfig:
    pb = claim.connector
    kind = pb.WhichOneof("config") or ""
    settings = (
        json_format.MessageToDict(getattr(pb, kind), preserving_proto_field_name=True)
        if kind
        else {}
    )
    secrets = {
        name: value
        for name, value in (
            ("password", claim.secrets.password),
            ("client_secret", claim.secrets.client_secret),
        )
        if value
    }
    return ConnectorConfig(
        name=pb.name,
        kind=kind,
        display_name=pb.display_name,
        settings=settings,
        secrets=secrets,
        update_time=_seconds(pb.update_time) if pb.HasField("update_time") else 0.0,
    )


def inbound_to_set(
    inbound: InboundPresence, origin: str, availability: Availability | None = None
) -> presence_pb2.SetPresenceRequest:
    chosen = availability or inbound.availability
    assert chosen is not None
    return presence_pb2.SetPresenceRequest(
        user=inbound.user,
        availability=AVAILABILITY_TO_PB[chosen],
        source=common_pb2.PRESENCE_SOURCE_EXTERNAL,
        note=inbound.note,
        origin=origin,
    )


def inbound_to_clear(inbound: InboundPresence, origin: str) -> presence_pb2.ClearPresenceRequest:
    return presence_pb2.ClearPresenceRequest(
        user=inbound.user, source=common_pb2.PRESENCE_SOURCE_EXTERNAL, origin=origin
    )


def status_to_pb(
    health: BridgeHealth,
    *,
    lag: float,
    last_sync: float,
    changes_out: int,
    changes_in: int,
) -> connectors_pb2.ConnectorStatus:
    lag_pb = Duration()
    lag_pb.FromNanoseconds(int(max(0.0, lag) * 1e9))
    status = connectors_pb2.ConnectorStatus(
        state=_STATE_TO_PB[health.state],
        last_error=health.last_error[:1000],
        lag=lag_pb,
        users_mapped=health.users_mapped,
        changes_out=changes_out,
        changes_in=changes_in,
    )
    if last_sync:
        status.last_sync_time.FromNanoseconds(int(last_sync * 1e9))
    return status


def state_to_pb(
    name: str, session: str, cursor: str | None, changes: StateChanges
) -> connectors_pb2.SaveConnectorStateRequest:
    return connectors_pb2.SaveConnectorStateRequest(
        name=name,
        session=session,
        cursor=cursor or "",
        upserts=[
            connectors_pb2.ConnectorStateEntry(key=k, value=v) for k, v in changes.upserts.items()
        ],
        deletes=sorted(changes.deletes),
    )


def message_from_pb(m: messages_pb2.ShortMessage) -> OutboundMessage | None:
    """A message for a bridge; None for one that came from the UC side (never sent back)."""
    if m.origin == messages_pb2.MESSAGE_ORIGIN_UC:
        return None
    return OutboundMessage(
        name=m.name,
        recipient=m.recipient,
        recipient_uri=m.recipient_uri,
        sender=m.sender,
        sender_uri=m.sender_uri,
        sender_display_name=m.sender_display_name,
        text=m.text,
    )


def inbound_message_to_send(message: InboundMessage) -> messages_pb2.SendMessageRequest:
    return messages_pb2.SendMessageRequest(
        recipient=message.user,
        text=message.text,
        sender_uri=message.sender_uri,
        sender_display_name=message.sender_display_name,
    )
