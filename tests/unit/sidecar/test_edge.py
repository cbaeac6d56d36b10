"""The SIP edge, driven synchronously: every message is handed to `SipEdge.receive` and every
answer of the control plane is given by the test (`FakeControl.answer`), so each step's effect
is visible as soon as the call returns; nothing waits on the event loop (the tests run in one
only because the edge arms its transaction timers there)."""

from __future__ import annotations

import random

from sip2uc_core.sip.contact import Contact
from sip2uc_core.sip.digest import (
    NonceCountTracker,
    NonceIssuer,
    build_credentials,
    compute_ha1,
    parse_challenge,
)
from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.sip.message import SipResponse, parse_message
from sip2uc_media.b2bua.methods import ALLOW
from sip2uc_media.sidecar.dispatch import SipEdge
from sip2uc_media.sidecar.protection import BanList, BanPolicy, NetworkAllowList
from sip2uc_media.sidecar.registrar import (
    RegisterAttempt,
    RegisterOutcome,
    RegisterResult,
    Registrar,
    RegistrarPolicy,
)
from sip2uc_media.sidecar.requests import ControlUnavailableError, Origin, RegisterDone
from sip2uc_media.transport.base import Source

SECRET = b"s" * 32
HANDSET = ("192.0.2.10", 5062)


class NoJitter(random.Random):
    """Retry-After exactly the configured base (the jitter has its own test)."""

    def randint(self, a: int, b: int) -> int:
        return a


class FakeControl:
    """The control link as the edge sees it: records each REGISTER and its callback; the test
    answers them, oldest first, with `answer`."""

    def __init__(self) -> None:
        self.up = True
        self.calls: list[tuple[RegisterAttempt, Origin]] = []
        self.waiting: list[tuple[RegisterAttempt, RegisterDone]] = []

    def register(self, attempt: RegisterAttempt, origin: Origin, done: RegisterDone) -> None:
        self.calls.append((attempt, origin))
        self.waiting.append((attempt, done))

    def answer(self, outcome: RegisterOutcome | None = RegisterOutcome.OK) -> None:
        """Answer the oldest REGISTER with `outcome`, or with an error for None."""
        attempt, done = self.waiting.pop(0)
        if outcome is None:
            done(None, ControlUnavailableError("deadline"))
            return
        bindings = tuple(Contact(c.uri, c.expires) for c in attempt.contacts)
        done(RegisterResult(outcome=outcome, bindings=bindings, min_expires=120), None)


class Harness:
    def __init__(self, *, threshold: int = 10, allow: list[str] | None = None) -> None:
        self.now = 1000.0
        self.sent: list[tuple[bytes, Endpoint]] = []
        self.direct: list[bytes] = []
        self.control = FakeControl()
        self.edge = SipEdge(
            name="unit",
            registrar=Registrar(
                NonceIssuer(SECRET, 300.0),
                NonceCountTracker(100),
                tag_secret=SECRET,
                policy=RegistrarPolicy(realm="example.net"),
            ),
            control=self.control,
            send=self._send,
            clock=lambda: self.now,
            wall_clock=lambda: 1_700_000_000.0 + self.now,
            bans=BanList(BanPolicy(threshold=threshold, window=60.0, ban_seconds=300.0)),
            local_allow=NetworkAllowList(allow or []),
            max_message_size=2048,
            retry_after=7,
            rng=NoJitter(),
        )

    def _send(self, data: bytes, dest: Endpoint) -> bool:
        self.sent.append((data, dest))
        return True

    def deliver(self, data: bytes, host: str = HANDSET[0]) -> None:
        def direct(payload: bytes) -> bool:
            self.direct.append(payload)
            return True

        self.edge.receive(data, Source(Endpoint(Transport.UDP, host, HANDSET[1]), direct))

    def responses(self) -> list[SipResponse]:
        out = []
        for data, _dest in self.sent:
            message = parse_message(data)
            assert isinstance(message, SipResponse)
            out.append(message)
        return out


def request(
    method: str = "REGISTER",
    *extra: str,
    branch: str = "z9hG4bK1",
    cseq: int = 1,
    user: str = "alice",
) -> bytes:
    lines = [
        f"{method} sip:example.net SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch={branch}",
        f"From: <sip:{user}@example.net>;tag=77",
        f"To: <sip:{user}@example.net>",
        f"Call-ID: edge-test-{user}" if user != "alice" else "Call-ID: edge-test",
        f"CSeq: {cseq} {method}",
        "Max-Forwards: 70",
        "Contact: <sip:alice@192.0.2.10:5062>;expires=600",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def authorized(
    h: Harness,
    password: str = "pw",
    branch: str = "z9hG4bK2",
    challenge_branch: str = "z9hG4bKchallenge",
    user: str = "alice",
    host: str = HANDSET[0],
) -> bytes:
    h.deliver(request(branch=challenge_branch, user=user), host)
    challenge = h.responses()[-1]
    (md5,) = [parse_challenge(v) for v in challenge.headers.get_all("WWW-Authenticate")]
    creds = build_credentials(
        md5,
        username=user,
        ha1=compute_ha1(md5.algorithm, user, md5.realm, password),
        method="REGISTER",
        uri="sip:example.net",
        cnonce="abc",
    )
    return request(
        "REGISTER", f"Authorization: {creds.serialize()}", branch=branch, cseq=2, user=user
    )


async def test_a_challenge_needs_no_control_plane() -> None:
    h = Harness()
    h.control.up = False

    h.deliver(request())

    assert [r.status for r in h.responses()] == [401]
    assert h.control.calls == []


async def test_an_authorized_register_asks_the_control_plane_once_and_answers_200() -> None:
    h = Harness()
    h.deliver(authorized(h))
    assert [r.status for r in h.responses()] == [401]

    h.control.answer(RegisterOutcome.OK)

    assert [r.status for r in h.responses()] == [401, 200]
    assert h.responses()[-1].headers.get("Contact") == "<sip:alice@192.0.2.10:5062>;expires=600"
    attempt, origin = h.control.calls[0]
    assert origin == Origin("unit", Endpoint(Transport.UDP, "192.0.2.10", 5062), "", "edge-test")
    assert attempt.contacts == (Contact("sip:alice@192.0.2.10:5062", 600),)
    assert h.sent[-1][1] == Endpoint(Transport.UDP, host="192.0.2.10", port=5062)


async def test_an_error_from_the_control_plane_answers_503_with_retry_after() -> None:
    h = Harness()
    h.deliver(authorized(h))

    h.control.answer(None)

    final = h.responses()[-1]
    assert (final.status, final.headers.get("Retry-After")) == (503, "7")


async def test_a_retransmission_while_the_control_plane_decides_is_absorbed_and_answered_once() -> (
    None
):
    h = Harness()
    message = authorized(h)
    h.deliver(message)
    h.deliver(message)

    h.control.answer(RegisterOutcome.OK)

    assert len(h.control.calls) == 1
    assert [r.status for r in h.responses()] == [401, 200]


async def test_the_datagram_of_a_live_transaction_is_recognised_without_being_parsed() -> None:
    h = Harness()
    message = authorized(h)
    h.deliver(message)

    assert h.edge.absorb(message)  # the control plane is deciding: nothing to resend yet
    assert [r.status for r in h.responses()] == [401]
    h.control.answer(RegisterOutcome.OK)
    assert h.edge.absorb(message)  # answered: the stored 200 goes out again
    assert [r.status for r in h.responses()] == [401, 200, 200]
    assert h.sent[-1][0] == h.sent[-2][0]
    assert len(h.control.calls) == 1
    assert not h.edge.absorb(message.replace(b"z9hG4bK2", b"z9hG4bK3"))


async def test_a_datagram_is_forgotten_with_its_transaction() -> None:
    h = Harness()
    message = request("OPTIONS")
    h.deliver(message)
    assert h.edge.absorb(message)

    h.now += 40.0  # Timer J (64*T1) has ended the transaction
    h.edge._on_timer()

    assert not h.edge.absorb(message)


async def test_a_retransmission_after_the_answer_gets_the_same_answer_again() -> None:
    h = Harness()
    message = authorized(h)
    h.deliver(message)
    h.control.answer(RegisterOutcome.OK)

    h.deliver(message)

    assert len(h.control.calls) == 1
    assert [r.status for r in h.responses()] == [401, 200, 200]
    assert h.sent[-1][0] == h.sent[-2][0]


async def test_while_the_control_plane_is_down_registrations_get_503_with_retry_after() -> None:
    h = Harness()
    h.control.up = False

    h.deliver(authorized(h))

    final = h.responses()[-1]
    assert (final.status, final.headers.get("Retry-After")) == (503, "7")
    assert h.control.calls == []


def fail_login(h: Harness, user: str, n: int, host: str = HANDSET[0]) -> None:
    """One wrong password the control plane refuses (a fresh challenge each time: a reused
    nonce count would be a replay, not a failure)."""
    message = authorized(
        h, "wrong", f"z9hG4bK{user}f{n}", f"z9hG4bK{user}c{n}", user=user, host=host
    )
    h.deliver(message, host)
    h.control.answer(RegisterOutcome.UNAUTHORIZED)


async def test_a_wrong_password_bans_only_that_user_from_that_source() -> None:
    h = Harness(threshold=2)
    for n in range(2):
        fail_login(h, "alice", n)
    answered = len(h.sent)

    h.deliver(request(branch="z9hG4bKafter"))

    assert [r.status for r in h.responses()] == [401, 401, 401, 401]
    assert len(h.sent) == answered  # ignored, not answered
    assert not h.edge.bans.is_banned("192.0.2.10", h.now)
    assert h.edge.bans.is_user_banned("192.0.2.10", "alice", h.now)


async def test_a_good_handset_behind_the_same_address_as_a_banned_one_still_registers() -> None:
    h = Harness(threshold=2)
    for n in range(2):
        fail_login(h, "alice", n)

    h.deliver(authorized(h, "pw", branch="z9hG4bKbob", challenge_branch="z9hG4bKbobc", user="bob"))
    h.control.answer(RegisterOutcome.OK)

    assert h.responses()[-1].status == 200
    assert h.control.calls[-1][0].credentials.username == "bob"


async def test_a_source_trying_many_user_names_is_banned_as_a_whole() -> None:
    h = Harness(threshold=5)
    h.edge.bans.configure(BanPolicy(threshold=5, window=60.0, ban_seconds=300.0, user_names=3))
    for user in ("u1", "u2", "u3"):
        fail_login(h, user, 0, host="198.51.100.9")

    h.deliver(request(branch="z9hG4bKafter", user="u4"), "198.51.100.9")

    assert h.edge.bans.is_banned("198.51.100.9", h.now)
    assert [r.status for r in h.responses()] == [401] * 6


async def test_answers_to_a_made_up_nonce_never_reach_the_control_plane_or_ban() -> None:
    h = Harness(threshold=2)
    forged = authorized(h).replace(b'nonce="', b'nonce="Q', 1)

    for n in range(12):
        h.deliver(forged.replace(b"z9hG4bK2", f"z9hG4bKforged{n}".encode()))

    assert h.control.calls == []
    assert [r.status for r in h.responses()] == [401] * 13
    assert h.edge.bans.active(h.now) == []


async def test_an_operator_lifting_a_ban_lets_the_user_in_again() -> None:
    h = Harness(threshold=2)
    for n in range(2):
        fail_login(h, "alice", n)
    changed: list[bool] = []
    h.edge.guard.on_bans_changed = lambda: changed.append(True)

    lifted = h.edge.guard.lift("192.0.2.10")

    assert [(b.source, b.user) for b in lifted] == [("192.0.2.10", "alice")]
    assert changed == [True]
    h.deliver(request(branch="z9hG4bKagain"))
    assert h.responses()[-1].status == 401


async def test_replayed_nonce_counts_are_answered_stale_and_never_ban() -> None:
    h = Harness(threshold=2)
    first = authorized(h, branch="z9hG4bKfirst")
    h.deliver(first)
    h.control.answer(RegisterOutcome.OK)
    for n in range(3):
        # the same credentials again, as a handset falling behind resends them
        h.deliver(first.replace(b"z9hG4bKfirst", f"z9hG4bKagain{n}".encode()))

    statuses = [r.status for r in h.responses()]
    stale = [
        parse_challenge(v).stale
        for r in h.responses()[2:]
        for v in r.headers.get_all("WWW-Authenticate")
    ]
    assert statuses == [401, 200, 401, 401, 401]
    assert stale == [True] * 3
    assert len(h.control.calls) == 1
    assert not h.edge.bans.is_banned("192.0.2.10", h.now)


async def test_sources_outside_the_allowed_networks_are_dropped() -> None:
    h = Harness(allow=["10.0.0.0/8"])

    h.deliver(request())

    assert h.sent == [] and h.direct == []


async def test_options_is_answered_with_allow_accept_and_supported() -> None:
    h = Harness()

    h.deliver(request("OPTIONS"))

    response = h.responses()[0]
    assert response.status == 200
    assert response.headers.get("Allow") == "REGISTER, OPTIONS"
    assert response.headers.get("Accept") == "application/sdp"
    assert "Supported" in response.headers


async def test_invite_is_not_implemented_yet() -> None:
    h = Harness()

    h.deliver(request("INVITE"))

    assert [r.status for r in h.responses()] == [501]


async def test_message_is_not_allowed_without_a_message_handler() -> None:
    h = Harness()

    h.deliver(request("MESSAGE"))

    response = h.responses()[0]
    assert (response.status, response.headers.get("Allow")) == (405, "REGISTER, OPTIONS")


class NoCalls:
    """A B2BUA stand-in that owns no dialog (what the edge asks of one for a 405)."""

    edge: object = None

    def request(self, _txn: object, _request: object, _source: object) -> bool:
        return False

    def invite(self, _txn: object, _request: object, _source: object) -> None:
        raise AssertionError("no INVITE in this test")


async def test_with_calls_a_405_names_the_same_methods_as_the_calls_own_answers() -> None:
    h = Harness()
    h.edge.attach_calls(NoCalls())  # type: ignore[arg-type]

    h.deliver(request("SUBSCRIBE"))
    h.deliver(request("MESSAGE", branch="z9hG4bK2"))
    h.deliver(request("OPTIONS", branch="z9hG4bK3"))

    statuses = [(r.status, r.headers.get("Allow")) for r in h.responses()]
    assert statuses == [(405, ALLOW), (405, ALLOW), (200, ALLOW)]
    assert "INFO" in ALLOW and "REFER" not in ALLOW


async def test_an_oversize_datagram_is_refused_with_413() -> None:
    h = Harness()

    h.deliver(request("OPTIONS", "Subject: " + "x" * 3000))

    message = parse_message(h.direct[0])
    assert isinstance(message, SipResponse)
    assert message.status == 413


async def test_a_malformed_request_gets_the_parsers_status_when_it_can_be_answered() -> None:
    h = Harness()

    h.deliver(request("OPTIONS").replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1))

    message = parse_message(h.direct[0])
    assert isinstance(message, SipResponse)
    assert message.status == 505
    assert message.call_id == "edge-test"


async def test_garbage_is_dropped_without_an_answer() -> None:
    h = Harness()

    h.deliver(b"\x00\x01 not sip at all\r\n\r\n")

    assert h.sent == [] and h.direct == []


async def test_a_crlf_keepalive_datagram_is_ignored() -> None:
    h = Harness()

    h.deliver(b"\r\n\r\n")

    assert h.sent == [] and h.direct == []
