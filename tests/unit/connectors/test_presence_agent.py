"""The presence agent (sans-IO): the exact PUBLISH and SUBSCRIBE requests it sends, and what it
does with each answer a server can give (RFC 3903, RFC 6665, RFC 3261 §22 digest)."""

from __future__ import annotations

import itertools

from sip2uc_connectors.sip_presence.agent import (
    Endpoint,
    Notified,
    PresenceAgent,
    Published,
    PublishFailed,
    spread_of,
)
from sip2uc_core.sip import SipRequest, parse_message
from sip2uc_core.sip.digest import compute_ha1, parse_credentials, verify_response
from sip2uc_core.sip.endpoint import Transport
from sip2uc_core.sip.message import make_response

SERVER = Endpoint(Transport.UDP, "192.0.2.10", 5060)
LOCAL = Endpoint(Transport.UDP, "192.0.2.20", 40000)
ALICE = "sip:1001@uc.example.com"
DOC = b"<presence/>"
CT = "application/pidf+xml"


def counter_bytes() -> object:
    counter = itertools.count(1)

    def random_bytes(n: int) -> bytes:
        return bytes([next(counter) % 256]) * n

    return random_bytes


def make_agent(**kwargs: object) -> PresenceAgent:
    agent = PresenceAgent(server=SERVER, random_bytes=counter_bytes(), **kwargs)  # type: ignore[arg-type]
    agent.connected(LOCAL, 0.0)
    return agent


def sent(agent: PresenceAgent) -> list[SipRequest]:
    out = []
    for data, destination in agent.datagrams_to_send():
        assert (destination.host, destination.port) == ("192.0.2.10", 5060)
        message = parse_message(data)
        assert isinstance(message, SipRequest)
        out.append(message)
    return out


def run_until(agent: PresenceAgent, until: float) -> list[float]:
    """Fire the agent's timers up to ``until``; the times at which it sent something."""
    sends: list[float] = []
    while (deadline := agent.next_deadline()) is not None and deadline <= until:
        agent.handle_timer(deadline)
        if agent.layer._outbox:
            sends.append(deadline)
            break
    return sends


def answer(
    agent: PresenceAgent, request: SipRequest, status: int, now: float, *headers: tuple[str, str]
) -> None:
    response = make_response(request, status, to_tag="srv", headers=list(headers))
    agent.receive(response.serialize(), "192.0.2.10", 5060, now)


def test_initial_publish_is_exactly_this() -> None:
    agent = make_agent()
    assert agent.publish(ALICE, "presence", DOC, CT, 0.0) == 1
    [request] = agent.datagrams_to_send()
    assert request[0].decode() == (
        "PUBLISH sip:1001@uc.example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.20:40000;branch=z9hG4bK030303030303030303030303;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:1001@uc.example.com>;tag=020202020202\r\n"
        "To: <sip:1001@uc.example.com>\r\n"
        "Call-ID: 010101010101010101010101@sip2uc\r\n"
        "CSeq: 1 PUBLISH\r\n"
        "Event: presence\r\n"
        "Expires: 600\r\n"
        "User-Agent: sip2uc\r\n"
        "Content-Type: application/pidf+xml\r\n"
        "Content-Length: 11\r\n"
        "\r\n"
        "<presence/>"
    )


def test_a_200_settles_the_publication_and_the_refresh_goes_with_sip_if_match() -> None:
    agent = make_agent()
    agent.publish(ALICE, "presence", DOC, CT, 0.0)
    [publish] = sent(agent)
    answer(agent, publish, 200, 0.0, ("SIP-ETag", "a.1"), ("Expires", "600"))
    assert agent.events() == [Published(ALICE, "presence", 1)]
    due = 600 * (0.5 + 0.4 * spread_of(f"presence {ALICE}"))
    assert run_until(agent, 600.0) == [due]
    [refresh] = sent(agent)
    assert refresh.headers.get("SIP-If-Match") == "a.1"
    assert refresh.headers.get("Expires") == "600"
    assert refresh.body == b"" and "Content-Type" not in refresh.headers
    assert refresh.cseq.seq == 2 and refresh.call_id == publish.call_id


def test_a_change_is_published_with_sip_if_match_and_the_body() -> None:
    agent = make_agent()
    agent.publish(ALICE, "presence", DOC, CT, 0.0)
    [first] = sent(agent)
    answer(agent, first, 200, 0.0, ("SIP-ETag", "a.1"))
    agent.publish(ALICE, "presence", b"<presence>2</presence>", CT, 1.0)
    [modify] = sent(agent)
    assert modify.headers.get("SIP-If-Match") == "a.1"
    assert modify.body == b"<presence>2</presence>"
    assert modify.headers.get("Content-Type") == CT


def test_removal_is_expires_zero_with_sip_if_match() -> None:
    agent = make_agent()
    agent.publish(ALICE, "presence", DOC, CT, 0.0)
    answer(agent, sent(agent)[0], 200, 0.0, ("SIP-ETag", "a.1"))
    agent.events()
    agent.publish(ALICE, "presence", None, CT, 1.0)
    [remove] = sent(agent)
    assert (remove.headers.get("Expires"), remove.headers.get("SIP-If-Match")) == ("0", "a.1")
    assert remove.body == b""
    answer(agent, remove, 200, 1.0)
    assert agent.events() == [Published(ALICE, "presence", 2)]
    assert agent.publications() == []


def test_a_stale_entity_tag_answered_500_is_followed_by_a_full_publish() -> None:
    agent = make_agent()
    agent.publish(ALICE, "presence", DOC, CT, 0.0)
    answer(agent, sent(agent)[0], 200, 0.0, ("SIP-ETag", "a.1"))
    agent.publish(ALICE, "presence", b"<p2/>", CT, 1.0)
    [modify] = sent(agent)
    answer(agent, modify, 500, 1.0)
    [initial] = sent(agent)
    assert "SIP-If-Match" not in initial.headers
    assert initial.body == b"<p2/>"
    answer(agent, initial, 200, 1.0, ("SIP-ETag", "a.2"))
    assert Published(ALICE, "presence", 2) in agent.events()


def test_412_is_followed_by_a_full_publish() -> None:
    agent = make_agent()
    agent.publish(ALICE, "presence", DOC, CT, 0.0)
    answer(agent, sent(agent)[0], 200, 0.0, ("SIP-ETag", "a.1"))
    [due] = run_until(agent, 600.0)
    [refresh] = sent(agent)
    assert refresh.headers.get("SIP-If-Match") == "a.1"
    answer(agent, refresh, 412, due)
    [initial] = sent(agent)
    assert "SIP-If-Match" not in initial.headers and initial.body == DOC


def test_423_raises_expires_to_min_expires() -> None:
    agent = make_agent(expires=60)
    agent.publish(ALICE, "presence", DOC, CT, 0.0)
    answer(agent, sent(agent)[0], 423, 0.0, ("Min-Expires", "120"))
    [again] = sent(agent)
    assert again.headers.get("Expires") == "120"


def test_407_is_answered_with_proxy_authorization_and_a_new_cseq_and_branch() -> None:
    agent = make_agent(username="gw", password="s3cret")
    agent.publish(ALICE, "presence", DOC, CT, 0.0)
    [first] = sent(agent)
    answer(
        agent,
        first,
        407,
        0.0,
        ("Proxy-Authenticate", 'Digest realm="uc.example.com", nonce="n1", qop="auth"'),
    )
    [second] = sent(agent)
    assert second.cseq.seq == first.cseq.seq + 1
    assert second.branch != first.branch
    credentials = parse_credentials(second.headers.get("Proxy-Authorization") or "")
    assert (credentials.username, credentials.realm, credentials.nonce) == (
        "gw",
        "uc.example.com",
        "n1",
    )
    assert credentials.uri == ALICE and credentials.nc == "00000001"
    ha1 = compute_ha1("MD5", "gw", "uc.example.com", "s3cret")
    assert verify_response(ha1, credentials, "PUBLISH")
    answer(agent, second, 200, 0.0, ("SIP-ETag", "a.1"))
    assert agent.events() == [Published(ALICE, "presence", 1)]


def test_401_is_answered_with_authorization_and_later_requests_carry_it_at_once() -> None:
    agent = make_agent(username="gw", password="s3cret")
    agent.publish(ALICE, "presence", DOC, CT, 0.0)
    answer(
        agent,
        sent(agent)[0],
        401,
        0.0,
        ("WWW-Authenticate", 'Digest realm="r", nonce="n1", qop="auth"'),
    )
    [second] = sent(agent)
    assert "Authorization" in second.headers
    answer(agent, second, 200, 0.0, ("SIP-ETag", "a.1"))
    agent.publish("sip:1002@uc.example.com", "presence", DOC, CT, 0.0)
    [other] = sent(agent)
    credentials = parse_credentials(other.headers.get("Authorization") or "")
    assert (credentials.nonce, credentials.nc) == ("n1", "00000002")


def test_refused_credentials_fail_the_publication_once_not_forever() -> None:
    agent = make_agent(username="gw", password="wrong")
    agent.publish(ALICE, "presence", DOC, CT, 0.0)
    challenge = ("Proxy-Authenticate", 'Digest realm="r", nonce="n1"')
    answer(agent, sent(agent)[0], 407, 0.0, challenge)
    [second] = sent(agent)
    answer(agent, second, 407, 0.0, ("Proxy-Authenticate", 'Digest realm="r", nonce="n2"'))
    assert sent(agent) == []
    [failed] = agent.events()
    assert isinstance(failed, PublishFailed) and failed.reason.startswith("407")
    assert "refused the credentials" in agent.last_error


def test_a_stale_nonce_is_answered_again() -> None:
    agent = make_agent(username="gw", password="s3cret")
    agent.publish(ALICE, "presence", DOC, CT, 0.0)
    answer(agent, sent(agent)[0], 407, 0.0, ("Proxy-Authenticate", 'Digest realm="r", nonce="n1"'))
    [second] = sent(agent)
    answer(
        agent, second, 407, 0.0, ("Proxy-Authenticate", 'Digest realm="r", nonce="n2", stale=true')
    )
    [third] = sent(agent)
    assert parse_credentials(third.headers.get("Proxy-Authorization") or "").nonce == "n2"


def test_a_challenge_without_credentials_configured_fails_with_a_clear_reason() -> None:
    agent = make_agent()
    agent.publish(ALICE, "presence", DOC, CT, 0.0)
    answer(agent, sent(agent)[0], 401, 0.0, ("WWW-Authenticate", 'Digest realm="r", nonce="n1"'))
    assert sent(agent) == []
    assert "no credentials are configured" in agent.last_error


def test_no_more_than_max_in_flight_transactions_are_open() -> None:
    agent = make_agent(max_in_flight=2)
    for n in range(5):
        agent.publish(f"sip:10{n:02d}@uc.example.com", "presence", DOC, CT, 0.0)
    first = sent(agent)
    assert len(first) == 2 and agent.backlog == 3
    answer(agent, first[0], 200, 0.0, ("SIP-ETag", "a"))
    assert len(sent(agent)) == 1
    assert agent.in_flight == 2


def test_an_unanswered_publish_is_retried_after_timer_f() -> None:
    agent = make_agent()
    agent.publish(ALICE, "presence", DOC, CT, 0.0)
    [first] = sent(agent)
    agent.handle_timer(0.5)  # timer E: a retransmission over UDP
    [retransmission] = sent(agent)
    assert retransmission.branch == first.branch
    agent.handle_timer(32.0)  # timer F: give up the transaction
    [failed] = [e for e in agent.events() if isinstance(e, PublishFailed)]
    assert failed.reason == "no answer"
    sent(agent)
    assert run_until(agent, 100.0) == [33.0]  # one second after the failure
    [again] = sent(agent)
    assert again.branch != first.branch and again.body == DOC


def test_subscribe_is_exactly_this() -> None:
    agent = make_agent(username="gw")
    agent.subscribe(ALICE, 0.0)
    [(data, _)] = agent.datagrams_to_send()
    assert data.decode() == (
        "SUBSCRIBE sip:1001@uc.example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.20:40000;branch=z9hG4bK030303030303030303030303;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:gw@uc.example.com>;tag=020202020202\r\n"
        "To: <sip:1001@uc.example.com>\r\n"
        "Call-ID: 010101010101010101010101@sip2uc\r\n"
        "CSeq: 1 SUBSCRIBE\r\n"
        "Contact: <sip:gw@192.0.2.20:40000>\r\n"
        "Event: presence\r\n"
        "Accept: application/pidf+xml\r\n"
        "Expires: 600\r\n"
        "User-Agent: sip2uc\r\n"
        "Content-Length: 0\r\n"
        "\r\n"
    )


def notify(subscribe: SipRequest, state: str, body: bytes = b"", cseq: int = 1) -> bytes:
    local_tag = subscribe.from_.tag
    lines = [
        "NOTIFY sip:gw@192.0.2.20:40000 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnotify" + str(cseq),
        "Max-Forwards: 70",
        "From: <sip:1001@uc.example.com>;tag=srv",
        f"To: <sip:gw@uc.example.com>;tag={local_tag}",
        f"Call-ID: {subscribe.call_id}",
        f"CSeq: {cseq} NOTIFY",
        "Contact: <sip:192.0.2.10:5060>",
        "Event: presence",
        f"Subscription-State: {state}",
    ]
    if body:
        lines.append("Content-Type: application/pidf+xml")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_a_notify_is_answered_200_and_its_document_handed_on() -> None:
    agent = make_agent(username="gw")
    agent.subscribe(ALICE, 0.0)
    [subscribe] = sent(agent)
    answer(agent, subscribe, 200, 0.0, ("Expires", "600"), ("Contact", "<sip:192.0.2.10:5060>"))
    agent.receive(notify(subscribe, "active;expires=599", DOC), "192.0.2.10", 5060, 0.1)
    [(data, _)] = agent.datagrams_to_send()
    assert data.startswith(b"SIP/2.0 200 OK\r\n")
    assert agent.events() == [Notified(ALICE, DOC, CT)]


def test_a_notify_that_overtakes_the_200_sets_up_the_dialog() -> None:
    agent = make_agent(username="gw")
    agent.subscribe(ALICE, 0.0)
    [subscribe] = sent(agent)
    agent.receive(notify(subscribe, "active;expires=600", DOC), "192.0.2.10", 5060, 0.0)
    assert agent.datagrams_to_send()[0][0].startswith(b"SIP/2.0 200 OK")
    answer(agent, subscribe, 200, 0.0, ("Expires", "600"))
    assert run_until(agent, 600.0) == [600 * (0.5 + 0.4 * spread_of(ALICE))]
    [refresh] = sent(agent)
    assert str(refresh.uri) == "sip:192.0.2.10:5060"  # the dialog's remote target
    assert refresh.to.tag == "srv" and refresh.call_id == subscribe.call_id


def test_a_notify_for_no_subscription_gets_481() -> None:
    agent = make_agent(username="gw")
    agent.subscribe(ALICE, 0.0)
    [subscribe] = sent(agent)
    stray = notify(subscribe, "active").replace(subscribe.call_id.encode(), b"unknown-call")
    agent.receive(stray, "192.0.2.10", 5060, 0.0)
    assert agent.datagrams_to_send()[0][0].startswith(b"SIP/2.0 481 ")
    assert agent.events() == []


def test_terminated_deactivated_subscribes_again_in_a_new_dialog() -> None:
    agent = make_agent(username="gw")
    agent.subscribe(ALICE, 0.0)
    [subscribe] = sent(agent)
    answer(agent, subscribe, 200, 0.0, ("Expires", "600"))
    agent.receive(notify(subscribe, "terminated;reason=deactivated"), "192.0.2.10", 5060, 1.0)
    responses_and_requests = [parse_message(d) for d, _ in agent.datagrams_to_send()]
    [again] = [m for m in responses_and_requests if isinstance(m, SipRequest)]
    assert again.method == "SUBSCRIBE" and again.to.tag is None
    assert again.call_id != subscribe.call_id


def test_unsubscribe_is_expires_zero_in_the_dialog() -> None:
    agent = make_agent(username="gw")
    agent.subscribe(ALICE, 0.0)
    [subscribe] = sent(agent)
    answer(agent, subscribe, 200, 0.0, ("Expires", "600"))
    agent.unsubscribe(ALICE, 1.0)
    [unsubscribe] = sent(agent)
    assert unsubscribe.headers.get("Expires") == "0" and unsubscribe.to.tag == "srv"
    answer(agent, unsubscribe, 200, 1.0)
    assert agent.subscribed() == set()


def test_garbage_from_the_network_is_dropped_and_counted() -> None:
    agent = make_agent()
    agent.receive(b"\x00\x01 not sip at all", "192.0.2.10", 5060, 0.0)
    agent.receive(b"NOTIFY sip:x SIP/2.0\r\nVia: broken\r\n\r\n", "192.0.2.10", 5060, 0.0)
    assert agent.dropped == 2 and agent.datagrams_to_send() == []


def test_nothing_is_sent_while_disconnected_and_in_flight_work_is_retried() -> None:
    agent = PresenceAgent(
        server=Endpoint(Transport.TCP, "192.0.2.10", 5060), random_bytes=counter_bytes()
    )
    agent.publish(ALICE, "presence", DOC, CT, 0.0)
    assert agent.datagrams_to_send() == []
    agent.connected(Endpoint(Transport.TCP, "192.0.2.20", 50001), 0.0)
    [(first, _)] = agent.datagrams_to_send()
    assert b"SIP/2.0/TCP 192.0.2.20:50001" in first
    agent.disconnected(1.0)
    [failed] = agent.events()
    assert isinstance(failed, PublishFailed)
    agent.connected(Endpoint(Transport.TCP, "192.0.2.20", 50002), 5.0)
    agent.handle_timer(5.0)
    [(again, _)] = agent.datagrams_to_send()
    assert b"SIP/2.0/TCP 192.0.2.20:50002" in again


def test_answered_transactions_lingering_for_timer_k_do_not_hold_back_new_requests() -> None:
    counter = itertools.count(1)
    agent = PresenceAgent(
        server=SERVER, random_bytes=lambda n: next(counter).to_bytes(n, "big"), max_in_flight=10
    )
    agent.connected(LOCAL, 0.0)
    for n in range(1500):
        agent.publish(f"sip:{n}@uc.example.com", "presence", DOC, CT, 0.0)
        for request in sent(agent):
            answer(agent, request, 200, 0.0, ("SIP-ETag", f"e{n}"))
    published = [e for e in agent.events() if isinstance(e, Published)]
    assert len(published) == 1500 and agent.last_error == ""
