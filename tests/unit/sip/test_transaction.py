"""RFC 3261 §17 transactions, driven tick by tick with fixed times and addresses."""

from __future__ import annotations

import pytest
from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.sip.headers import parse_via
from sip2uc_core.sip.message import SipRequest, SipResponse, make_response, parse_message
from sip2uc_core.sip.timers import TimerPolicy
from sip2uc_core.sip.transaction import (
    BranchGenerator,
    CancelReceived,
    Overloaded,
    RequestReceived,
    ResponseReceived,
    State,
    StrayResponse,
    TransactionError,
    TransactionId,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailed,
    response_destination,
    stamp_received,
)

PHONE = Endpoint(Transport.UDP, host="192.0.2.10", port=5060)
PHONE_TCP = Endpoint(Transport.TCP, host="192.0.2.10", port=40001, connection_id=7)
TRUNK = Endpoint(Transport.UDP, host="198.51.100.1", port=5060)
TRUNK_TCP = Endpoint(Transport.TCP, host="198.51.100.1", port=5060, connection_id=3)


def request(
    method: str = "INVITE",
    *,
    branch: str = "z9hG4bK776asdhds",
    transport: str = "UDP",
    sent_by: str = "192.0.2.10:5060",
    via_params: str = "",
    cseq: int = 1,
    cseq_method: str | None = None,
    to_tag: str = "",
) -> SipRequest:
    text = (
        f"{method} sip:bob@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {sent_by};branch={branch}{via_params}\r\n"
        "Max-Forwards: 70\r\n"
        "Route: <sip:proxy.example.com;lr>\r\n"
        "From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
        f"To: Bob <sip:bob@example.com>{to_tag}\r\n"
        "Call-ID: a84b4c76e66710@pc33.example.com\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


def response(req: SipRequest, status: int) -> SipResponse:
    """A response as it arrives from the network (parsed from its wire form)."""
    built = make_response(req, status, to_tag=None if status == 100 else "a6c85cf")
    parsed = parse_message(built.serialize())
    assert isinstance(parsed, SipResponse)
    return parsed


def run_until(layer: TransactionLayer, until: float) -> list[tuple[float, list[object]]]:
    """Step from deadline to deadline up to `until`; what each step sent and reported."""
    steps: list[tuple[float, list[object]]] = []
    deadline = layer.next_deadline()
    while deadline is not None and deadline <= until:
        events = layer.handle_timer(deadline)
        sent = layer.datagrams_to_send()
        steps.append((deadline, [*sent, *events]))
        deadline = layer.next_deadline()
    return steps


def sent_instants(steps: list[tuple[float, list[object]]]) -> list[float]:
    return [t for t, items in steps if any(isinstance(i, tuple) for i in items)]


def start_client(
    method: str = "INVITE", dest: Endpoint = TRUNK, now: float = 0.0
) -> tuple[TransactionLayer, TransactionId, SipRequest]:
    layer = TransactionLayer()
    req = request(method, transport=dest.transport.via_name, sent_by="203.0.113.5:5060")
    txn = layer.send_request(req, dest, now)
    return layer, txn, req


def start_server(
    method: str = "INVITE",
    source: Endpoint = PHONE,
    now: float = 0.0,
    branch: str = "z9hG4bK776asdhds",
) -> tuple[TransactionLayer, TransactionId, SipRequest]:
    layer = TransactionLayer()
    req = request(method, transport=source.transport.via_name, branch=branch)
    events = layer.receive(req, source, now)
    assert len(events) == 1 and isinstance(events[0], RequestReceived)
    txn = events[0].txn_id
    assert txn is not None
    return layer, txn, req


# --- client transactions ----------------------------------------------------------------------


def test_client_request_goes_out_at_once() -> None:
    layer, _, req = start_client()
    assert layer.datagrams_to_send() == [(req.serialize(), TRUNK)]
    assert layer.datagrams_to_send() == []


def test_invite_client_retransmits_with_doubling_intervals_until_timer_b() -> None:
    layer, txn, _ = start_client("INVITE")
    layer.datagrams_to_send()
    steps = run_until(layer, 40.0)
    # Timer A: 0.5, 1, 2, 4, 8, 16 s (RFC 3261 §17.1.1.2), then Timer B at 64*T1 = 32 s.
    assert sent_instants(steps) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert steps[-1] == (32.0, [TransactionTimeout(txn_id=txn), TransactionTerminated(txn_id=txn)])
    assert len(layer) == 0 and layer.next_deadline() is None


def test_non_invite_client_retransmits_capped_at_t2_until_timer_f() -> None:
    layer, txn, req = start_client("OPTIONS")
    layer.datagrams_to_send()
    steps = run_until(layer, 40.0)
    # Timer E: 0.5, 1, 2, 4, 4, 4 ... s (capped by T2, §17.1.2.2), Timer F at 32 s.
    assert sent_instants(steps) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert steps[0] == (0.5, [(req.serialize(), TRUNK)])
    assert steps[-1] == (32.0, [TransactionTimeout(txn_id=txn), TransactionTerminated(txn_id=txn)])


def test_non_invite_client_in_proceeding_retransmits_every_t2() -> None:
    layer, txn, req = start_client("REGISTER")
    run_until(layer, 0.5)
    events = layer.receive(response(req, 100), TRUNK, 0.7)
    assert [type(e) for e in events] == [ResponseReceived]
    assert layer.state_of(txn) is State.PROCEEDING
    layer.datagrams_to_send()
    # Timer E was armed at 0.5 for 1 s; from then on it is reset to T2 = 4 s.
    assert sent_instants(run_until(layer, 14.0)) == [1.5, 5.5, 9.5, 13.5]


def test_non_invite_client_absorbs_final_retransmissions_and_waits_timer_k() -> None:
    layer, txn, req = start_client("OPTIONS")
    ok = response(req, 200)
    assert layer.receive(ok, TRUNK, 0.1) == [ResponseReceived(txn_id=txn, response=ok)]
    assert layer.receive(ok, TRUNK, 0.6) == []
    assert layer.next_deadline() == pytest.approx(5.1)  # Timer K = T4
    assert layer.handle_timer(5.1) == [TransactionTerminated(txn_id=txn)]


def test_non_invite_client_on_tcp_terminates_on_the_final_response() -> None:
    layer, txn, req = start_client("OPTIONS", dest=TRUNK_TCP)
    assert layer.next_deadline() == 32.0  # no Timer E on a reliable transport
    ok = response(req, 200)
    assert layer.receive(ok, TRUNK_TCP, 1.0) == [
        ResponseReceived(txn_id=txn, response=ok),
        TransactionTerminated(txn_id=txn),
    ]


def test_invite_client_stops_retransmitting_on_a_provisional_response() -> None:
    layer, txn, req = start_client("INVITE")
    ringing = response(req, 180)
    assert layer.receive(ringing, TRUNK, 0.3) == [ResponseReceived(txn_id=txn, response=ringing)]
    assert layer.state_of(txn) is State.PROCEEDING
    assert layer.next_deadline() is None


def test_invite_client_acks_a_failure_itself() -> None:
    layer, txn, req = start_client("INVITE")
    layer.datagrams_to_send()
    busy = response(req, 486)
    assert layer.receive(busy, TRUNK, 0.2) == [ResponseReceived(txn_id=txn, response=busy)]
    assert layer.datagrams_to_send() == [
        (
            b"ACK sip:bob@example.com SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK776asdhds\r\n"
            b"Max-Forwards: 70\r\n"
            b"Route: <sip:proxy.example.com;lr>\r\n"
            b"From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
            b"To: Bob <sip:bob@example.com>;tag=a6c85cf\r\n"
            b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
            b"CSeq: 1 ACK\r\n"
            b"Content-Length: 0\r\n\r\n",
            TRUNK,
        )
    ]


def test_invite_client_re_acks_a_retransmitted_failure_without_telling_the_tu() -> None:
    layer, _, req = start_client("INVITE")
    layer.datagrams_to_send()
    busy = response(req, 486)
    layer.receive(busy, TRUNK, 0.2)
    (first_ack,) = layer.datagrams_to_send()
    assert layer.receive(busy, TRUNK, 1.0) == []
    assert layer.datagrams_to_send() == [first_ack]


def test_invite_client_timer_d_is_32_seconds_on_udp() -> None:
    layer, txn, req = start_client("INVITE")
    layer.receive(response(req, 603), TRUNK, 2.0)
    assert layer.state_of(txn) is State.COMPLETED
    assert layer.next_deadline() == 34.0
    assert layer.handle_timer(33.9) == []
    assert layer.handle_timer(34.0) == [TransactionTerminated(txn_id=txn)]


def test_invite_client_on_tcp_terminates_after_acking_a_failure() -> None:
    layer, txn, req = start_client("INVITE", dest=TRUNK_TCP)
    layer.datagrams_to_send()
    assert layer.next_deadline() == 32.0  # Timer B only
    busy = response(req, 486)
    assert layer.receive(busy, TRUNK_TCP, 1.0) == [
        ResponseReceived(txn_id=txn, response=busy),
        TransactionTerminated(txn_id=txn),
    ]
    assert [d for _, d in layer.datagrams_to_send()] == [TRUNK_TCP]


def test_invite_client_passes_every_2xx_up_until_timer_m() -> None:
    layer, txn, req = start_client("INVITE")
    layer.datagrams_to_send()
    ok = response(req, 200)
    assert layer.receive(ok, TRUNK, 1.0) == [ResponseReceived(txn_id=txn, response=ok)]
    assert layer.state_of(txn) is State.ACCEPTED
    # RFC 6026 §8.4: a retransmitted 2xx still reaches the TU, which ACKs it again.
    assert layer.receive(ok, TRUNK, 1.5) == [ResponseReceived(txn_id=txn, response=ok)]
    assert layer.datagrams_to_send() == []  # the transaction never ACKs a 2xx itself
    assert layer.next_deadline() == 33.0
    assert layer.handle_timer(33.0) == [TransactionTerminated(txn_id=txn)]


def test_response_with_unknown_branch_is_stray() -> None:
    layer, _, _ = start_client("INVITE")
    other = request("INVITE", branch="z9hG4bKother", sent_by="203.0.113.5:5060")
    stray = response(other, 200)
    assert layer.receive(stray, TRUNK, 1.0) == [StrayResponse(response=stray, source=TRUNK)]


def test_response_matches_on_branch_and_cseq_method() -> None:
    layer, invite_txn, invite = start_client("INVITE")
    cancel = request("CANCEL", sent_by="203.0.113.5:5060")
    cancel_txn = layer.send_request(cancel, TRUNK, 0.1)
    ok_cancel = response(cancel, 200)
    terminated = response(invite, 487)
    assert layer.receive(ok_cancel, TRUNK, 0.2) == [
        ResponseReceived(txn_id=cancel_txn, response=ok_cancel)
    ]
    assert layer.receive(terminated, TRUNK, 0.3) == [
        ResponseReceived(txn_id=invite_txn, response=terminated)
    ]


def test_send_request_needs_a_magic_cookie_branch() -> None:
    with pytest.raises(TransactionError, match="z9hG4bK"):
        TransactionLayer().send_request(request(branch="1234"), TRUNK, 0.0)


def test_ack_is_not_sent_in_a_transaction() -> None:
    with pytest.raises(TransactionError, match="ACK"):
        TransactionLayer().send_request(request("ACK"), TRUNK, 0.0)


def test_branch_generator_uses_injected_randomness() -> None:
    generate = BranchGenerator(lambda n: bytes(range(n)))
    assert generate() == "z9hG4bK000102030405060708090a0b"


# --- INVITE server ----------------------------------------------------------------------------


def test_invite_server_sends_100_trying_after_200_ms_of_silence() -> None:
    layer, txn, _ = start_server("INVITE")
    assert layer.next_deadline() == 0.2
    assert layer.handle_timer(0.19) == []
    assert layer.handle_timer(0.2) == []
    assert layer.datagrams_to_send() == [
        (
            b"SIP/2.0 100 Trying\r\n"
            b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds\r\n"
            b"From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
            b"To: Bob <sip:bob@example.com>\r\n"
            b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
            b"CSeq: 1 INVITE\r\n"
            b"Content-Length: 0\r\n\r\n",
            PHONE,
        )
    ]
    assert layer.state_of(txn) is State.PROCEEDING


def test_invite_server_skips_100_trying_when_the_tu_answers_first() -> None:
    layer, txn, req = start_server("INVITE")
    ringing = make_response(req, 180, to_tag="t1")
    assert layer.send_response(txn, ringing, 0.1) == []
    assert layer.datagrams_to_send() == [(ringing.serialize(), PHONE)]
    assert layer.next_deadline() is None


def test_invite_server_absorbs_retransmissions_and_resends_the_last_provisional() -> None:
    layer, txn, req = start_server("INVITE")
    ringing = make_response(req, 180, to_tag="t1")
    layer.send_response(txn, ringing, 0.1)
    layer.datagrams_to_send()
    assert layer.receive(request("INVITE"), PHONE, 0.5) == []
    assert layer.datagrams_to_send() == [(ringing.serialize(), PHONE)]


def test_a_retransmission_recognised_by_the_adapter_does_what_receiving_it_would() -> None:
    layer, txn, req = start_server("REGISTER")

    assert layer.retransmitted(txn, 0.5) == []
    assert layer.datagrams_to_send() == []  # Trying: nothing to resend yet
    ok = make_response(req, 200, to_tag="t1")
    layer.send_response(txn, ok, 0.6)
    layer.datagrams_to_send()
    assert layer.retransmitted(txn, 0.7) == []
    assert layer.datagrams_to_send() == [(ok.serialize(), PHONE)]
    assert layer.retransmitted(TransactionId(999), 0.8) == []


def test_invite_server_answers_an_early_retransmission_with_100_trying() -> None:
    layer, _, _ = start_server("INVITE")
    assert layer.receive(request("INVITE"), PHONE, 0.1) == []
    (trying,) = layer.datagrams_to_send()
    assert trying[0].startswith(b"SIP/2.0 100 Trying\r\n")
    assert layer.next_deadline() is None  # the 200 ms timer has nothing left to do


def test_invite_server_retransmits_a_failure_until_timer_h() -> None:
    layer, txn, req = start_server("INVITE")
    busy = make_response(req, 486, to_tag="t1")
    layer.send_response(txn, busy, 0.0)
    layer.datagrams_to_send()
    steps = run_until(layer, 40.0)
    # Timer G: 0.5, 1, 2, 4, 4 ... s (min(2x, T2)), Timer H at 64*T1 (§17.2.1).
    assert sent_instants(steps) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert steps[0] == (0.5, [(busy.serialize(), PHONE)])
    assert steps[-1] == (32.0, [TransactionTimeout(txn_id=txn), TransactionTerminated(txn_id=txn)])


def test_invite_server_ack_stops_retransmission_and_timer_i_ends_it() -> None:
    layer, txn, req = start_server("INVITE")
    layer.send_response(txn, make_response(req, 486, to_tag="t1"), 0.0)
    ack = request("ACK", cseq_method="ACK", to_tag=";tag=t1")
    assert layer.receive(ack, PHONE, 0.3) == []
    assert layer.state_of(txn) is State.CONFIRMED
    assert layer.receive(ack, PHONE, 0.4) == []  # ACK retransmission absorbed
    layer.datagrams_to_send()
    assert layer.next_deadline() == pytest.approx(5.3)  # Timer I = T4
    assert [items for _, items in run_until(layer, 10.0)] == [[TransactionTerminated(txn_id=txn)]]


def test_invite_server_on_tcp_ends_as_soon_as_the_ack_arrives() -> None:
    layer, txn, req = start_server("INVITE", source=PHONE_TCP)
    layer.send_response(txn, make_response(req, 486, to_tag="t1"), 0.0)
    assert layer.next_deadline() == 32.0  # Timer H only: no Timer G on TCP
    ack = request("ACK", transport="TCP", cseq_method="ACK", to_tag=";tag=t1")
    assert layer.receive(ack, PHONE_TCP, 0.3) == [TransactionTerminated(txn_id=txn)]


def test_invite_server_after_2xx_absorbs_retransmissions_and_passes_the_2xx_ack_up() -> None:
    layer, txn, req = start_server("INVITE")
    ok = make_response(req, 200, to_tag="t1")
    layer.send_response(txn, ok, 0.1)
    layer.datagrams_to_send()
    assert layer.state_of(txn) is State.ACCEPTED
    assert layer.receive(request("INVITE"), PHONE, 0.5) == []
    assert layer.datagrams_to_send() == []  # RFC 6026 §7.1: the TU retransmits 2xx itself
    # The TU may resend its 2xx within the transaction.
    assert layer.send_response(txn, ok, 0.6) == []
    assert layer.datagrams_to_send() == [(ok.serialize(), PHONE)]
    ack = request("ACK", branch="z9hG4bKack2xx", cseq_method="ACK", to_tag=";tag=t1")
    assert layer.receive(ack, PHONE, 0.7) == [
        RequestReceived(txn_id=None, request=ack, source=PHONE)
    ]
    assert layer.next_deadline() == pytest.approx(32.1)  # Timer L = 64*T1
    assert layer.handle_timer(32.1) == [TransactionTerminated(txn_id=txn)]


def test_invite_server_cannot_send_a_second_final_failure() -> None:
    layer, txn, req = start_server("INVITE")
    layer.send_response(txn, make_response(req, 486, to_tag="t1"), 0.0)
    with pytest.raises(TransactionError, match="Completed cannot send 500"):
        layer.send_response(txn, make_response(req, 500, to_tag="t1"), 0.1)


# --- non-INVITE server ------------------------------------------------------------------------


def test_non_invite_server_absorbs_retransmissions_before_answering() -> None:
    layer, _, _ = start_server("REGISTER")
    assert layer.receive(request("REGISTER"), PHONE, 0.3) == []
    assert layer.datagrams_to_send() == []


def test_non_invite_server_resends_its_final_response_until_timer_j() -> None:
    layer, txn, req = start_server("REGISTER")
    unauthorized = make_response(req, 401, to_tag="t1")
    assert layer.send_response(txn, unauthorized, 0.1) == []
    layer.datagrams_to_send()
    assert layer.receive(request("REGISTER"), PHONE, 1.0) == []
    assert layer.datagrams_to_send() == [(unauthorized.serialize(), PHONE)]
    assert layer.next_deadline() == pytest.approx(32.1)  # Timer J = 64*T1 on UDP
    assert layer.handle_timer(32.1) == [TransactionTerminated(txn_id=txn)]
    assert layer.state_of(txn) is None and len(layer) == 0


def test_non_invite_server_on_tcp_ends_with_its_final_response() -> None:
    layer, txn, req = start_server("REGISTER", source=PHONE_TCP)
    ok = make_response(req, 200, to_tag="t1")
    assert layer.send_response(txn, ok, 0.1) == [TransactionTerminated(txn_id=txn)]
    assert layer.datagrams_to_send() == [
        (
            ok.serialize(),
            Endpoint(Transport.TCP, host="192.0.2.10", port=5060, connection_id=7),
        )
    ]


def test_non_invite_server_refuses_a_second_final_response() -> None:
    layer, txn, req = start_server("OPTIONS")
    layer.send_response(txn, make_response(req, 200, to_tag="t1"), 0.0)
    with pytest.raises(TransactionError):
        layer.send_response(txn, make_response(req, 200, to_tag="t1"), 0.1)


def test_send_response_to_unknown_transaction_is_an_error() -> None:
    req = request("OPTIONS")
    with pytest.raises(TransactionError, match="no live server transaction"):
        TransactionLayer().send_response(TransactionId(99), make_response(req, 200), 0.0)


def test_terminate_forgets_a_transaction_at_once() -> None:
    layer, txn, _ = start_client("INVITE")
    assert layer.terminate(txn) == [TransactionTerminated(txn_id=txn)]
    assert layer.next_deadline() is None and len(layer) == 0


# --- CANCEL, ACK for 2xx, overload ------------------------------------------------------------


def test_cancel_finds_the_invite_it_refers_to() -> None:
    layer, invite_txn, _ = start_server("INVITE")
    cancel = request("CANCEL")
    events = layer.receive(cancel, PHONE, 1.0)
    assert len(events) == 1 and isinstance(events[0], CancelReceived)
    assert events[0].invite_txn_id == invite_txn
    assert events[0].txn_id != invite_txn
    assert layer.match_cancel(cancel) == invite_txn


def test_cancel_for_an_unknown_invite_has_no_target() -> None:
    layer = TransactionLayer()
    events = layer.receive(request("CANCEL"), PHONE, 1.0)
    assert len(events) == 1 and isinstance(events[0], CancelReceived)
    assert events[0].invite_txn_id is None


def test_cancel_from_an_rfc2543_peer_finds_the_invite() -> None:
    layer, invite_txn, _ = start_server("INVITE", branch="old1")
    events = layer.receive(request("CANCEL", branch="old1"), PHONE, 1.0)
    assert isinstance(events[0], CancelReceived) and events[0].invite_txn_id == invite_txn


def test_rfc2543_retransmission_is_matched_without_magic_cookie() -> None:
    layer, _, _ = start_server("OPTIONS", branch="old1")
    assert layer.receive(request("OPTIONS", branch="old1"), PHONE, 0.5) == []


def test_ack_for_2xx_without_transaction_goes_to_the_tu() -> None:
    layer = TransactionLayer()
    ack = request("ACK", branch="z9hG4bKnew", cseq_method="ACK", to_tag=";tag=t1")
    assert layer.receive(ack, PHONE, 0.0) == [
        RequestReceived(txn_id=None, request=ack, source=PHONE)
    ]
    assert len(layer) == 0


def test_requests_beyond_the_limit_are_handed_back_for_503() -> None:
    layer = TransactionLayer(max_transactions=1)
    layer.receive(request("OPTIONS", branch="z9hG4bK1"), PHONE, 0.0)
    second = request("OPTIONS", branch="z9hG4bK2")
    assert layer.receive(second, PHONE, 0.0) == [
        Overloaded(request=second, source=PHONE, reply_to=PHONE)
    ]
    assert len(layer) == 1
    unavailable = make_response(second, 503, headers=[("Retry-After", "5")])
    layer.send_stateless(unavailable, PHONE)
    assert layer.datagrams_to_send() == [(unavailable.serialize(), PHONE)]


def test_terminated_transactions_free_their_slot() -> None:
    layer = TransactionLayer(max_transactions=1)
    source = PHONE_TCP
    events = layer.receive(request("OPTIONS", transport="TCP"), source, 0.0)
    assert isinstance(events[0], RequestReceived) and events[0].txn_id is not None
    layer.send_response(events[0].txn_id, make_response(events[0].request, 200), 0.0)
    events = layer.receive(request("OPTIONS", branch="z9hG4bK2", transport="TCP"), source, 0.0)
    assert isinstance(events[0], RequestReceived)


def test_thousands_of_stopped_timers_do_not_accumulate() -> None:
    layer = TransactionLayer()
    for i in range(2000):
        req = request("OPTIONS", branch=f"z9hG4bK{i}", sent_by="203.0.113.5:5060")
        txn = layer.send_request(req, TRUNK_TCP, 0.0)
        layer.receive(response(req, 200), TRUNK_TCP, 0.0)
        assert layer.state_of(txn) is None
    assert len(layer._heap) <= 64
    assert layer.next_deadline() is None


# --- Via received/rport and response routing --------------------------------------------------


def test_received_request_gets_received_and_rport_stamped() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS", via_params=";rport")
    nat = Endpoint(Transport.UDP, host="203.0.113.99", port=31000)
    (event,) = layer.receive(req, nat, 0.0)
    assert isinstance(event, RequestReceived)
    assert event.request.headers.get_all("Via") == [
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport=31000;received=203.0.113.99"
    ]
    assert event.txn_id is not None
    ok = make_response(event.request, 200, to_tag="t")
    layer.send_response(event.txn_id, ok, 0.0)
    assert layer.datagrams_to_send() == [(ok.serialize(), nat)]


def test_stamp_leaves_via_alone_when_source_matches_sent_by() -> None:
    via = parse_via("SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1")
    assert stamp_received(via, "192.0.2.10", 5060) == via


def test_stamp_adds_received_for_a_domain_name() -> None:
    via = parse_via("SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1")
    assert str(stamp_received(via, "192.0.2.10", 5060)) == (
        "SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1;received=192.0.2.10"
    )


def test_stamp_fills_rport_even_when_the_address_matches() -> None:
    via = parse_via("SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bK1")
    assert str(stamp_received(via, "192.0.2.10", 5060)) == (
        "SIP/2.0/UDP 192.0.2.10:5060;rport=5060;branch=z9hG4bK1;received=192.0.2.10"
    )


def test_stamp_compares_ipv6_addresses_by_value() -> None:
    via = parse_via("SIP/2.0/UDP [2001:db8:0::1]:5060;branch=z9hG4bK1")
    assert stamp_received(via, "2001:db8::1", 5060) == via


def test_response_without_rport_goes_to_received_address_and_sent_by_port() -> None:
    via = parse_via("SIP/2.0/UDP pc33.example.com:5070;branch=z9hG4bK1;received=192.0.2.10")
    source = Endpoint(Transport.UDP, host="192.0.2.10", port=31000)
    assert response_destination(via, source) == Endpoint(
        Transport.UDP, host="192.0.2.10", port=5070
    )


def test_forced_rport_answers_at_the_source_port() -> None:
    via = parse_via("SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1")
    source = Endpoint(Transport.UDP, host="192.0.2.10", port=31000)
    assert response_destination(via, source, force_rport=True) == source


def test_response_over_tcp_reuses_the_connection() -> None:
    via = parse_via("SIP/2.0/TLS phone.example.com;branch=z9hG4bK1;received=192.0.2.10")
    source = Endpoint(Transport.TLS, host="192.0.2.10", port=40001, connection_id=12)
    assert response_destination(via, source) == Endpoint(
        Transport.TLS, host="192.0.2.10", port=5061, connection_id=12
    )


def test_response_honours_maddr() -> None:
    via = parse_via("SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1;maddr=239.255.255.1")
    assert response_destination(via, PHONE) == Endpoint(
        Transport.UDP, host="239.255.255.1", port=5060
    )


def test_a_via_naming_a_transport_we_do_not_speak_is_answered_the_way_it_came() -> None:
    sctp = parse_via("SIP/2.0/SCTP 192.0.2.10;branch=z9hG4bK1;maddr=239.255.255.1")
    ws = parse_via("SIP/2.0/WS 192.0.2.10;branch=z9hG4bK1;received=192.0.2.10")

    assert response_destination(sctp, PHONE) == Endpoint(Transport.UDP, "239.255.255.1", 5060)
    assert response_destination(ws, PHONE) == Endpoint(Transport.UDP, "192.0.2.10", 80)


def test_a_via_naming_another_transport_we_speak_is_answered_over_that_one() -> None:
    via = parse_via("SIP/2.0/tcp 192.0.2.10:5070;branch=z9hG4bK1;received=192.0.2.10")

    assert response_destination(via, PHONE) == Endpoint(Transport.TCP, "192.0.2.10", 5070)


def test_custom_timer_values_scale_every_timer() -> None:
    layer = TransactionLayer(policy=TimerPolicy(t1=0.1, t2=0.4, t4=1.0))
    req = request("OPTIONS", sent_by="203.0.113.5:5060")
    layer.send_request(req, TRUNK, 0.0)
    steps = run_until(layer, 10.0)
    assert sent_instants(steps) == pytest.approx(
        [0.1, 0.3, 0.7, 1.1, 1.5, 1.9, 2.3, 2.7, 3.1, 3.5, 3.9, 4.3, 4.7, 5.1, 5.5, 5.9, 6.3]
    )
    assert steps[-1][0] == pytest.approx(6.4)


def test_transport_error_ends_the_transaction_and_tells_the_tu() -> None:
    layer, txn, _ = start_client("OPTIONS", dest=TRUNK_TCP)
    assert layer.transport_error(txn) == [
        TransportFailed(txn_id=txn),
        TransactionTerminated(txn_id=txn),
    ]
    assert layer.transport_error(txn) == []


def test_cancel_for_a_live_invite_gets_through_when_full() -> None:
    layer = TransactionLayer(max_transactions=1)
    (invite_event,) = layer.receive(request("INVITE"), PHONE, 0.0)
    events = layer.receive(request("CANCEL"), PHONE, 1.0)
    assert isinstance(invite_event, RequestReceived)
    assert len(events) == 1 and isinstance(events[0], CancelReceived)
    assert events[0].invite_txn_id == invite_event.txn_id
    unrelated = request("CANCEL", branch="z9hG4bKother")
    assert isinstance(layer.receive(unrelated, PHONE, 1.0)[0], Overloaded)


# --- memory: what a finished server transaction keeps -----------------------------------------


def _answered_options(layer: TransactionLayer, branch: str, now: float) -> TransactionId:
    (event,) = layer.receive(request("OPTIONS", branch=branch), PHONE, now)
    assert isinstance(event, RequestReceived) and event.txn_id is not None
    layer.send_response(event.txn_id, make_response(event.request, 200, to_tag="t"), now)
    layer.datagrams_to_send()
    return event.txn_id


def test_an_answered_server_transaction_keeps_only_its_response_bytes() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS")
    (event,) = layer.receive(req, PHONE, 0.0)
    assert isinstance(event, RequestReceived) and event.txn_id is not None
    assert layer.held_bytes == req.wire_size

    reply = make_response(req, 200, to_tag="t")
    layer.send_response(event.txn_id, reply, 0.0)

    assert layer.state_of(event.txn_id) is State.COMPLETED
    assert layer.request_of(event.txn_id) is None
    assert layer.held_bytes == len(reply.serialize())
    # retransmission absorption still answers from the kept bytes (§17.2.2)
    layer.datagrams_to_send()
    assert layer.receive(request("OPTIONS"), PHONE, 1.0) == []
    assert layer.datagrams_to_send() == [(reply.serialize(), PHONE)]


def test_held_bytes_return_to_zero_when_timer_j_fires() -> None:
    layer = TransactionLayer()
    _answered_options(layer, "z9hG4bK1", 0.0)

    layer.handle_timer(32.0)

    assert (len(layer), layer.held_bytes) == (0, 0)


def test_over_the_byte_budget_the_oldest_answered_transaction_makes_room() -> None:
    probe = TransactionLayer()
    _answered_options(probe, "z9hG4bK1", 0.0)
    one_answered = probe.held_bytes
    budget = one_answered + request("OPTIONS").wire_size + 10  # room for one answered and one new
    layer = TransactionLayer(max_held_bytes=budget)
    first = _answered_options(layer, "z9hG4bK1", 0.0)
    second = _answered_options(layer, "z9hG4bK2", 1.0)

    events = layer.receive(request("OPTIONS", branch="z9hG4bK3"), PHONE, 2.0)

    assert events[0] == TransactionTerminated(txn_id=first)
    assert isinstance(events[1], RequestReceived)
    assert layer.state_of(first) is None
    assert layer.state_of(second) is State.COMPLETED
    assert layer.evicted == 1
    assert layer.held_bytes <= budget


def test_over_the_byte_budget_with_nothing_to_forget_a_request_is_handed_back_for_503() -> None:
    big = request("OPTIONS", branch="z9hG4bK1")
    layer = TransactionLayer(max_held_bytes=big.wire_size + 10)
    layer.receive(big, PHONE, 0.0)  # still waiting for the TU's answer: not evictable
    second = request("OPTIONS", branch="z9hG4bK2")

    assert layer.receive(second, PHONE, 0.0) == [
        Overloaded(request=second, source=PHONE, reply_to=PHONE)
    ]
    assert len(layer) == 1


def test_at_the_transaction_limit_an_answered_transaction_makes_room() -> None:
    layer = TransactionLayer(max_transactions=1)
    first = _answered_options(layer, "z9hG4bK1", 0.0)

    events = layer.receive(request("OPTIONS", branch="z9hG4bK2"), PHONE, 1.0)

    assert events[0] == TransactionTerminated(txn_id=first)
    assert isinstance(events[1], RequestReceived)
    assert len(layer) == 1
