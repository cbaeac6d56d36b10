"""The control plane's door to sidecar.proto refuses what it cannot read, naming the field; and
the sidecar's session hears only what it should. (What crosses intact is in tests/unit/seam.)"""

from __future__ import annotations

import pytest
from sip2uc.v1 import common_pb2, sidecar_pb2
from sip2uc_control.api import sidecar_wire
from sip2uc_control.calls import EndLeg
from sip2uc_control.errors import InvalidArgument
from sip2uc_control.sidecars import SettingsChanged, SidecarSettings
from sip2uc_core.sip.digest import DigestError

ORIGIN = sidecar_pb2.RequestOrigin(
    sidecar="vlan10",
    source=common_pb2.SocketAddress(host="192.0.2.10", port=5062),
    transport=common_pb2.TRANSPORT_UDP,
)
CREDENTIALS = sidecar_pb2.DigestCredentials(
    username="alice", realm="r", nonce="n", uri="sip:r", response="x", nc="00000001", qop="auth"
)
SETTINGS = SidecarSettings(
    realm="r",
    domain="d",
    allowed_networks=(),
    trunk_sources=(),
    ban_threshold=1,
    ban_window_seconds=1,
    ban_seconds=1,
    ban_user_names=2,
    channel_limit=1,
    media_timeout_seconds=1,
    min_expires=1,
    max_expires=1,
)


def register(**changes: object) -> sidecar_pb2.RegisterCall:
    request = sidecar_pb2.RegisterRequest(origin=ORIGIN, credentials=CREDENTIALS)
    for name, value in changes.items():
        target = request.origin if name in ("sidecar", "transport") else request.credentials
        setattr(target, name, value)
    return sidecar_pb2.RegisterCall(request=request)


def fields_of(error: InvalidArgument) -> list[str]:
    return [v.field for v in error.violations]


def test_a_register_without_its_sidecar_or_transport_is_invalid() -> None:
    with pytest.raises(InvalidArgument) as no_sidecar:
        sidecar_wire.register_input(register(sidecar=""))
    with pytest.raises(InvalidArgument) as no_transport:
        sidecar_wire.register_input(register(transport=common_pb2.TRANSPORT_UNSPECIFIED))

    assert fields_of(no_sidecar.value) == ["origin.sidecar"]
    assert fields_of(no_transport.value) == ["origin.transport"]


@pytest.mark.parametrize(
    "changes", [{"nc": "1"}, {"nc": "0000000g"}, {"algorithm": "SHA-512-256-sess-x"}]
)
def test_credentials_that_cannot_be_read_are_refused_like_wrong_ones(
    changes: dict[str, str],
) -> None:
    with pytest.raises(DigestError):
        sidecar_wire.register_input(register(**changes))


def test_an_invite_without_sidecar_and_leg_names_both_fields() -> None:
    call = sidecar_pb2.CallStreamCall(invite=sidecar_pb2.InviteRequest())

    with pytest.raises(InvalidArgument) as refused:
        sidecar_wire.call_request(call)

    assert fields_of(refused.value) == ["origin.sidecar", "leg_id"]


def test_a_call_without_a_request_is_invalid() -> None:
    with pytest.raises(InvalidArgument) as refused:
        sidecar_wire.call_request(sidecar_pb2.CallStreamCall(correlation_id=4))

    assert fields_of(refused.value) == ["request"]


def test_calls_of_one_leg_share_an_ordering_key_and_keep_their_deadline() -> None:
    message = sidecar_pb2.CallStreamRequest(
        calls=[
            sidecar_pb2.CallStreamCall(
                correlation_id=1,
                timeout_ms=1500,
                invite=sidecar_pb2.InviteRequest(leg_id="LA"),
            ),
            sidecar_pb2.CallStreamCall(
                correlation_id=2, cancel=sidecar_pb2.CancelRequest(leg_id="LA")
            ),
            sidecar_pb2.CallStreamCall(correlation_id=3),
        ]
    )

    calls = sidecar_wire.call_stream_calls(message)

    assert [(c.correlation_id, c.method, c.key, c.timeout) for c in calls] == [
        (1, "Invite", "LA", 1.5),
        (2, "Cancel", "LA", 0.0),
        (3, "CallStream", None, 0.0),
    ]


def test_the_answer_to_a_one_way_call_names_its_kind() -> None:
    bye = sidecar_pb2.CallStreamCall(correlation_id=9, bye=sidecar_pb2.ByeRequest())

    assert sidecar_wire.empty_reply(bye) == sidecar_pb2.CallStreamReply(
        correlation_id=9, bye=sidecar_pb2.ByeResponse()
    )


def test_a_first_message_that_is_no_named_hello_announces_nobody() -> None:
    heartbeat = sidecar_pb2.ConnectRequest(heartbeat=sidecar_pb2.SidecarHeartbeat())
    nameless = sidecar_pb2.ConnectRequest(hello=sidecar_pb2.SidecarHello())

    assert sidecar_wire.sidecar_info(heartbeat, 0.0) is None
    assert sidecar_wire.sidecar_info(nameless, 0.0) is None


def test_commands_get_an_id_each_and_a_lone_item_is_not_batched() -> None:
    two = sidecar_wire.outgoing(
        [EndLeg(call_id="c", leg_id="L1"), EndLeg(call_id="c", leg_id="L2")], batched=True
    )
    one = sidecar_wire.outgoing([SettingsChanged(SETTINGS)], batched=True)

    [batch] = two
    ids = [c.command_id for c in batch.batch.commands]
    assert len(set(ids)) == 2 and all(len(i) == 12 for i in ids)
    assert [m.WhichOneof("payload") for m in one] == ["settings"]
    assert one[0].command_id == ""
