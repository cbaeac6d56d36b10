"""Short messages in the presence agent (sans-IO): the exact MESSAGE it sends to the server,
digest on a challenge, the answer it reports, and which MESSAGEs from outside it takes."""

from __future__ import annotations

from sip2uc_connectors.sip_presence.agent import MessageAnswered, MessageReceived, PresenceAgent
from sip2uc_core.sip import SipResponse, parse_message
from sip2uc_core.sip.digest import parse_credentials
from sip2uc_core.sip.endpoint import Endpoint, Transport

from .test_presence_agent import SERVER, answer, counter_bytes, sent

LOCAL = Endpoint(Transport.UDP, "192.0.2.20", 40000)
BOB = "sip:1002@uc.example.com"


def make_agent(**kwargs: object) -> PresenceAgent:
    agent = PresenceAgent(
        server=SERVER,
        random_bytes=counter_bytes(),  # type: ignore[arg-type]
        knows=lambda entity: entity == BOB,
        **kwargs,  # type: ignore[arg-type]
    )
    agent.connected(LOCAL, 0.0)
    return agent


def incoming(
    agent: PresenceAgent,
    *,
    host: str = "192.0.2.10",
    to: str = BOB,
    content_type: str = "text/plain;charset=UTF-8",
    body: bytes = "Grüße".encode(),
    branch: str = "z9hG4bKin1",
) -> SipResponse:
    """A MESSAGE from `host` as the server relays it; returns the agent's answer."""
    request = (
        f"MESSAGE {to} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:5060;branch={branch}\r\n"
        'From: "Carol" <sip:carol@uc.example.com>;tag=c1\r\n'
        f"To: <{to}>\r\n"
        "Call-ID: in-1\r\n"
        "CSeq: 7 MESSAGE\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    agent.receive(request, host, 5060, 1.0)
    ((data, _dest),) = agent.datagrams_to_send()
    response = parse_message(data)
    assert isinstance(response, SipResponse)
    return response


def test_a_message_is_sent_to_the_recipient_through_the_server_exactly_so() -> None:
    agent = make_agent()

    token = agent.send_message(BOB, "sip:1001@sip2uc.local", "Alice", "Lunch?", 0.0)

    [request] = agent.datagrams_to_send()
    assert token == 1
    assert request[1] == SERVER
    assert request[0].decode() == (
        "MESSAGE sip:1002@uc.example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.20:40000;branch=z9hG4bK030303030303030303030303;rport\r\n"
        "Max-Forwards: 70\r\n"
        'From: "Alice" <sip:1001@sip2uc.local>;tag=020202020202\r\n'
        "To: <sip:1002@uc.example.com>\r\n"
        "Call-ID: 010101010101010101010101@sip2uc\r\n"
        "CSeq: 1 MESSAGE\r\n"
        "Content-Type: text/plain;charset=UTF-8\r\n"
        "User-Agent: sip2uc\r\n"
        "Content-Length: 6\r\n"
        "\r\n"
        "Lunch?"
    )


def test_the_servers_answer_is_reported_under_the_token() -> None:
    agent = make_agent()
    token = agent.send_message(BOB, "sip:1001@sip2uc.local", "", "hi", 0.0)
    [message] = sent(agent)

    answer(agent, message, 200, 0.1)

    assert agent.events() == [MessageAnswered(token, 200, "OK")]


def test_a_challenged_message_is_sent_again_with_credentials_and_a_new_cseq() -> None:
    agent = make_agent(username="bridge", password="pw")
    token = agent.send_message(BOB, "sip:1001@sip2uc.local", "", "hi", 0.0)
    [first] = sent(agent)
    challenge = ("Proxy-Authenticate", 'Digest realm="uc", nonce="n1", qop="auth"')

    answer(agent, first, 407, 0.1, challenge)
    [second] = sent(agent)
    answer(agent, second, 202, 0.2)

    credentials = parse_credentials(second.headers.get("Proxy-Authorization") or "")
    assert (credentials.username, credentials.realm, second.cseq.seq) == ("bridge", "uc", 2)
    assert second.call_id == first.call_id and second.body == b"hi"
    assert agent.events() == [MessageAnswered(token, 202, "Accepted")]


def test_a_server_that_never_answers_is_reported_as_no_answer() -> None:
    agent = make_agent()
    token = agent.send_message(BOB, "sip:1001@sip2uc.local", "", "hi", 0.0)
    sent(agent)

    agent.handle_timer(64 * 0.5 + 1)

    assert agent.events() == [MessageAnswered(token, 0, "no answer")]


def test_without_a_connection_the_message_fails_at_once() -> None:
    agent = PresenceAgent(server=SERVER, random_bytes=counter_bytes())  # type: ignore[arg-type]

    token = agent.send_message(BOB, "sip:1001@sip2uc.local", "", "hi", 0.0)

    assert agent.events() == [MessageAnswered(token, 503, "not connected")]


def test_a_message_from_the_server_for_a_known_user_is_accepted_202() -> None:
    agent = make_agent()

    response = incoming(agent)

    assert response.status == 202
    assert agent.events() == [MessageReceived(BOB, "sip:carol@uc.example.com", "Carol", "Grüße")]


def test_a_message_from_anyone_but_the_server_is_forbidden() -> None:
    agent = make_agent()

    response = incoming(agent, host="198.51.100.66")

    assert response.status == 403
    assert agent.events() == []


def test_what_the_bridge_cannot_carry_is_refused_with_the_reason() -> None:
    agent = make_agent()

    html = incoming(agent, content_type="text/html")
    latin1 = incoming(agent, content_type="text/plain;charset=ISO-8859-1", branch="z9hG4bKin2")
    broken = incoming(agent, body=b"\xff\xfe", branch="z9hG4bKin3")
    unknown = incoming(agent, to="sip:nobody@uc.example.com", branch="z9hG4bKin4")

    assert (html.status, html.headers.get("Accept")) == (415, "text/plain")
    assert latin1.status == 415
    assert broken.status == 400
    assert unknown.status == 404
    assert agent.events() == []


def test_other_methods_learn_that_message_is_allowed() -> None:
    agent = make_agent()
    info = (
        b"INFO sip:1002@uc.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinfo\r\n"
        b"From: <sip:carol@uc.example.com>;tag=c1\r\nTo: <sip:1002@uc.example.com>\r\n"
        b"Call-ID: info-1\r\nCSeq: 1 INFO\r\nContent-Length: 0\r\n\r\n"
    )
    agent.receive(info, "192.0.2.10", 5060, 1.0)

    ((data, _dest),) = agent.datagrams_to_send()
    response = parse_message(data)
    assert isinstance(response, SipResponse)
    assert (response.status, response.headers.get("Allow")) == (405, "NOTIFY, OPTIONS, MESSAGE")
