"""Properties of the transaction layer under arbitrary interleavings of inputs."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st
from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.sip.message import SipRequest, SipResponse, make_response, parse_message
from sip2uc_core.sip.transaction import (
    Event,
    Kind,
    RequestReceived,
    ResponseReceived,
    State,
    TransactionError,
    TransactionId,
    TransactionLayer,
    TransactionTerminated,
    TransportFailed,
)

UDP = Endpoint(Transport.UDP, host="192.0.2.10", port=5060)
TCP = Endpoint(Transport.TCP, host="192.0.2.10", port=40000, connection_id=1)
BRANCHES = ["z9hG4bKa", "z9hG4bKb", "z9hG4bKc", "legacy1"]
METHODS = ["INVITE", "OPTIONS", "ACK", "CANCEL", "REGISTER"]
STATUSES = [100, 180, 200, 202, 401, 486, 503]
# States in which a transaction waits for its TU rather than for a timer.
WAITING_FOR_TU = {
    (Kind.INVITE_CLIENT, State.PROCEEDING),
    (Kind.INVITE_SERVER, State.PROCEEDING),
    (Kind.NON_INVITE_SERVER, State.TRYING),
    (Kind.NON_INVITE_SERVER, State.PROCEEDING),
}


def make_request(method: str, branch: str, dest: Endpoint) -> SipRequest:
    text = (
        f"{method} sip:bob@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/{dest.transport.via_name} 192.0.2.10:5060;branch={branch}\r\n"
        "From: <sip:alice@example.com>;tag=f1\r\nTo: <sip:bob@example.com>\r\n"
        f"Call-ID: c1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


def make_reply(method: str, branch: str, status: int) -> SipResponse:
    built = make_response(make_request(method, branch, UDP), status, to_tag="t")
    message = parse_message(built.serialize())
    assert isinstance(message, SipResponse)
    return message


OPERATIONS = st.one_of(
    st.tuples(
        st.just("receive_request"),
        st.sampled_from(METHODS),
        st.sampled_from(BRANCHES),
        st.booleans(),
    ),
    st.tuples(
        st.just("receive_response"),
        st.sampled_from(METHODS),
        st.sampled_from(BRANCHES),
        st.sampled_from(STATUSES),
    ),
    st.tuples(
        st.just("send_request"),
        st.sampled_from(METHODS),
        st.sampled_from(BRANCHES),
        st.booleans(),
    ),
    st.tuples(st.just("send_response"), st.integers(1, 12), st.sampled_from(STATUSES)),
    st.tuples(st.just("advance"), st.floats(0.0, 40.0)),
    st.tuples(st.just("transport_error"), st.integers(1, 12)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(OPERATIONS, max_size=40))
def test_any_interleaving_keeps_the_layer_consistent(operations: list[tuple[object, ...]]) -> None:
    layer = TransactionLayer(max_transactions=6)
    now = 0.0
    events: list[Event] = []
    for op in operations:
        kind = op[0]
        if kind == "receive_request":
            _, method, branch, reliable = op
            dest = TCP if reliable else UDP
            events += layer.receive(make_request(str(method), str(branch), dest), dest, now)
        elif kind == "receive_response":
            _, method, branch, status = op
            assert isinstance(status, int)
            events += layer.receive(make_reply(str(method), str(branch), status), UDP, now)
        elif kind == "send_request":
            _, method, branch, reliable = op
            with contextlib.suppress(TransactionError):
                dest = TCP if reliable else UDP
                layer.send_request(make_request(str(method), str(branch), dest), dest, now)
        elif kind == "send_response":
            _, txn_id, status = op
            assert isinstance(txn_id, int) and isinstance(status, int)
            request = layer.request_of(TransactionId(txn_id))
            with contextlib.suppress(TransactionError):
                reply = make_response(request or make_request("OPTIONS", "x", UDP), status)
                events += layer.send_response(TransactionId(txn_id), reply, now)
        elif kind == "advance":
            assert isinstance(op[1], float)
            now += op[1]
            events += layer.handle_timer(now)
        else:
            assert isinstance(op[1], int)
            events += layer.transport_error(TransactionId(op[1]))
        layer.datagrams_to_send()

        assert len(layer) <= 6
        deadline = layer.next_deadline()
        assert deadline is None or deadline > now
        for txn_id in range(1, 40):
            state = layer.state_of(TransactionId(txn_id))
            assert state is not State.TERMINATED

    terminated = [e.txn_id for e in events if isinstance(e, TransactionTerminated)]
    assert len(terminated) == len(set(terminated))
    for event in events:
        if isinstance(event, (ResponseReceived, TransportFailed)):
            assert event.txn_id is not None
        if isinstance(event, RequestReceived) and event.txn_id is None:
            assert event.request.method == "ACK"

    # Left alone, everything not waiting for its TU runs out of timers and is forgotten.
    now += 1000.0
    layer.handle_timer(now)
    for txn_id in range(1, 40):
        txn = layer._transactions.get(TransactionId(txn_id))
        if txn is not None:
            assert (txn.kind, txn.state) in WAITING_FOR_TU
    assert layer.next_deadline() is None
