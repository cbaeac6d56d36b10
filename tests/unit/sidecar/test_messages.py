"""Short messages at the SIP edge, driven synchronously like `test_edge.py`: a handset's MESSAGE
is challenged and passed to a fake control link whose answer the test gives; a DeliverMessage
becomes a MESSAGE on the wire whose answer is reported under its delivery id."""

from __future__ import annotations

import asyncio
import random

from sip2uc_core.sip.digest import (
    NonceCountTracker,
    NonceIssuer,
    build_credentials,
    compute_ha1,
    parse_challenge,
)
from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.sip.message import SipRequest, SipResponse, parse_message
from sip2uc_media.b2bua.legs import LegConfig
from sip2uc_media.sidecar.commands import DeliverMessage
from sip2uc_media.sidecar.dispatch import SipEdge
from sip2uc_media.sidecar.messages import MessageAnswer, MessageCall, MessageHandler
from sip2uc_media.sidecar.registrar import (
    RegisterAttempt,
    Registrar,
    RegistrarPolicy,
)
from sip2uc_media.sidecar.requests import ControlUnavailableError, Origin, RegisterDone
from sip2uc_media.transport.base import Source

SECRET = b"s" * 32
HANDSET = Endpoint(Transport.UDP, "192.0.2.10", 5062)


class NoJitter(random.Random):
    def randint(self, a: int, b: int) -> int:
        return a


class FakeControl:
    """The control link: MESSAGEs wait for the test's `answer`; deliveries are recorded."""

    def __init__(self) -> None:
        self.up = True
        self.asked: list[MessageCall] = []
        self.answers: asyncio.Queue[MessageAnswer | None] = asyncio.Queue()
        self.delivered: list[tuple[str, int, str]] = []

    def register(self, attempt: RegisterAttempt, origin: Origin, done: RegisterDone) -> None:
        raise AssertionError("no REGISTER in these tests")

    async def message(self, call: MessageCall) -> MessageAnswer:
        self.asked.append(call)
        answer = await self.answers.get()
        if answer is None:
            raise ControlUnavailableError("deadline")
        return answer

    def message_delivered(self, delivery_id: str, status: int, reason: str) -> None:
        self.delivered.append((delivery_id, status, reason))


class Harness:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sent: list[tuple[bytes, Endpoint]] = []
        self.control = FakeControl()
        registrar = Registrar(
            NonceIssuer(SECRET, 300.0),
            NonceCountTracker(100),
            tag_secret=SECRET,
            policy=RegistrarPolicy(realm="example.net"),
        )
        self.edge = SipEdge(
            name="unit",
            registrar=registrar,
            control=self.control,
            send=self._send,
            clock=lambda: self.now,
            wall_clock=lambda: 1_700_000_000.0,
            retry_after=7,
            rng=NoJitter(),
        )
        counter = iter(range(1, 1000))
        self.messages = MessageHandler(
            name="unit",
            registrar=registrar,
            control=self.control,
            config=LegConfig(
                sip_host="198.51.100.1",
                sip_port=5060,
                relay_host="198.51.100.1",
                random_bytes=lambda n: bytes([next(counter)]) * n,
            ),
            clock=lambda: self.now,
            wall_clock=lambda: self.now,
            retry_after=self.edge.retry_after,
        )
        self.edge.attach_messages(self.messages)

    def _send(self, data: bytes, dest: Endpoint) -> bool:
        self.sent.append((data, dest))
        return True

    def deliver(self, data: bytes) -> None:
        self.edge.receive(data, Source(HANDSET, lambda _payload: True))

    def wire(self) -> list[SipRequest | SipResponse]:
        return [parse_message(data) for data, _dest in self.sent]

    def responses(self) -> list[SipResponse]:
        return [m for m in self.wire() if isinstance(m, SipResponse)]

    async def answer(self, answer: MessageAnswer | None) -> None:
        """Give the control plane's answer and let the handler's task finish."""
        self.control.answers.put_nowait(answer)
        for _ in range(5):
            await asyncio.sleep(0)


def message(
    *extra: str,
    branch: str = "z9hG4bK1",
    cseq: int = 1,
    content_type: str = "text/plain",
    body: str = "hi bob",
    to_tag: str = "",
) -> bytes:
    payload = body.encode()
    lines = [
        "MESSAGE sip:bob@example.net SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch={branch}",
        'From: "Alice" <sip:alice@example.net>;tag=77',
        f"To: <sip:bob@example.net>{';tag=' + to_tag if to_tag else ''}",
        "Call-ID: message-test",
        f"CSeq: {cseq} MESSAGE",
        "Max-Forwards: 70",
        f"Content-Type: {content_type}",
        *extra,
        f"Content-Length: {len(payload)}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + payload


def authorized(h: Harness, **kwargs: str) -> bytes:
    h.deliver(message(branch="z9hG4bKchallenge"))
    challenge = h.responses()[-1]
    # One challenge: the sidecar's default algorithm (MD5 unless configured otherwise).
    (md5,) = [parse_challenge(v) for v in challenge.headers.get_all("Proxy-Authenticate")]
    creds = build_credentials(
        md5,
        username="alice",
        ha1=compute_ha1(md5.algorithm, "alice", md5.realm, "pw"),
        method="MESSAGE",
        uri="sip:bob@example.net",
        cnonce="abc",
    )
    return message(f"Proxy-Authorization: {creds.serialize()}", branch="z9hG4bK2", cseq=2, **kwargs)


async def test_a_message_without_credentials_is_challenged_407_and_goes_nowhere() -> None:
    h = Harness()

    h.deliver(message())
    await h.answer(MessageAnswer(status=202))  # would answer, were it asked

    assert [r.status for r in h.responses()] == [407]
    assert h.control.asked == []


async def test_an_authenticated_message_is_passed_on_whole_and_answered_202() -> None:
    h = Harness()

    h.deliver(authorized(h, content_type="text/plain;charset=UTF-8"))
    await h.answer(MessageAnswer(status=202, reason="Accepted"))

    assert [(r.status, r.reason) for r in h.responses()] == [
        (407, "Proxy Authentication Required"),
        (202, "Accepted"),
    ]
    (call,) = h.control.asked
    assert (call.credentials.username, call.from_uri, call.from_display_name) == (
        "alice",
        "sip:alice@example.net",
        "Alice",
    )
    assert (call.request_uri, call.content_type, call.body) == (
        "sip:bob@example.net",
        "text/plain;charset=UTF-8",
        b"hi bob",
    )
    assert call.origin == Origin("unit", HANDSET, "", "message-test")


async def test_a_refused_type_is_answered_with_the_accept_header() -> None:
    h = Harness()

    h.deliver(authorized(h, content_type="text/html"))
    await h.answer(MessageAnswer(status=415, reason="Unsupported Media Type", accept="text/plain"))

    final = h.responses()[-1]
    assert (final.status, final.headers.get("Accept")) == (415, "text/plain")


async def test_the_rate_limit_answer_carries_retry_after() -> None:
    h = Harness()

    h.deliver(authorized(h))
    await h.answer(MessageAnswer(status=403, reason="Message Rate Exceeded", retry_after=4))

    final = h.responses()[-1]
    assert (final.status, final.reason, final.headers.get("Retry-After")) == (
        403,
        "Message Rate Exceeded",
        "4",
    )


async def test_credentials_the_control_plane_rejects_get_a_fresh_challenge() -> None:
    h = Harness()

    h.deliver(authorized(h))
    await h.answer(MessageAnswer(status=407))

    final = h.responses()[-1]
    assert final.status == 407
    assert len(final.headers.get_all("Proxy-Authenticate")) == 1


async def test_without_the_control_plane_the_answer_is_503_with_retry_after() -> None:
    h = Harness()
    h.deliver(authorized(h))
    await h.answer(None)
    h.control.up = False
    h.deliver(message(branch="z9hG4bK3", cseq=3))  # challenged first: no control plane needed
    h.deliver(authorized(h))

    statuses = [(r.status, r.headers.get("Retry-After")) for r in h.responses()]
    assert statuses == [(407, None), (503, "7"), (407, None), (407, None), (503, "7")]


async def test_a_message_for_a_dialog_that_is_not_ours_is_481() -> None:
    h = Harness()

    h.deliver(message(to_tag="nope"))

    assert [r.status for r in h.responses()] == [481]


async def test_options_lists_message_among_the_methods() -> None:
    h = Harness()
    options = message().replace(b"MESSAGE sip", b"OPTIONS sip").replace(b"1 MESSAGE", b"1 OPTIONS")

    h.deliver(options)

    assert h.responses()[-1].headers.get("Allow") == "REGISTER, OPTIONS, MESSAGE"


def deliver_command(delivery_id: str = "d-1") -> DeliverMessage:
    return DeliverMessage(
        request_uri="sip:bob@192.0.2.20:5070;transport=udp",
        destination=Endpoint(Transport.UDP, "192.0.2.20", 5070),
        from_uri="sip:alice@example.net",
        from_display_name="Alice",
        to_uri="sip:bob@example.net",
        content_type="text/plain;charset=UTF-8",
        body="Grüße".encode(),
        delivery_id=delivery_id,
    )


async def test_a_delivery_is_a_message_outside_any_dialog_to_the_binding() -> None:
    h = Harness()

    assert h.messages.deliver(deliver_command()) == ""

    ((data, dest),) = h.sent
    sent = parse_message(data)
    assert isinstance(sent, SipRequest)
    assert dest == Endpoint(Transport.UDP, "192.0.2.20", 5070)
    assert (sent.method, str(sent.uri)) == ("MESSAGE", "sip:bob@192.0.2.20:5070;transport=udp")
    assert sent.headers.get("From") == '"Alice" <sip:alice@example.net>;tag=010101010101'
    assert sent.headers.get("To") == "<sip:bob@example.net>"
    assert sent.to.tag is None
    assert sent.headers.get("CSeq") == "1 MESSAGE"
    assert sent.headers.get("Content-Type") == "text/plain;charset=UTF-8"
    assert sent.body == "Grüße".encode()
    assert sent.top_via.sent_by == "198.51.100.1:5060"


async def test_the_handsets_final_answer_is_reported_under_the_delivery_id() -> None:
    h = Harness()
    h.messages.deliver(deliver_command("d-7"))
    sent = parse_message(h.sent[0][0])
    assert isinstance(sent, SipRequest)
    via = sent.headers.get("Via")
    answer = (
        f"SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {sent.headers.get('From')}\r\n"
        f"To: <sip:bob@example.net>;tag=9\r\nCall-ID: {sent.call_id}\r\nCSeq: 1 MESSAGE\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()

    h.deliver(answer)

    assert h.control.delivered == [("d-7", 200, "OK")]


async def test_a_handset_that_never_answers_is_reported_408() -> None:
    h = Harness()
    h.messages.deliver(deliver_command("d-9"))

    h.now += 64 * 0.5 + 1  # past Timer F (RFC 3261 §17.1.2.2)
    h.edge._on_timer()

    assert h.control.delivered == [("d-9", 408, "Request Timeout")]


async def test_a_delivery_to_an_unparseable_uri_is_refused_and_reported() -> None:
    h = Harness()
    bad = DeliverMessage(
        request_uri="not a uri",
        destination=HANDSET,
        from_uri="sip:alice@example.net",
        to_uri="sip:bob@example.net",
        content_type="text/plain",
        body=b"x",
        delivery_id="d-2",
    )

    assert h.messages.deliver(bad).startswith("bad DeliverMessage")
    assert h.control.delivered == [("d-2", 400, "bad URI")]
    assert h.sent == []
