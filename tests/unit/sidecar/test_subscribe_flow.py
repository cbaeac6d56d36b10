"""SUBSCRIBE through the SIP edge to the subscription handler, with a canned control plane: the
401 without asking anybody, the control plane's verdict, the first NOTIFY, and a watcher that
went away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable

from sip2uc_core.sip.digest import (
    NonceCountTracker,
    NonceIssuer,
    build_credentials,
    compute_ha1,
    parse_challenge,
)
from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_core.sip.message import SipRequest, SipResponse, make_response, parse_message
from sip2uc_media.b2bua.legs import LegConfig
from sip2uc_media.sidecar.dispatch import SipEdge
from sip2uc_media.sidecar.registrar import Registrar, RegistrarPolicy
from sip2uc_media.sidecar.requests import ControlUnavailableError, SubscribeCall
from sip2uc_media.sidecar.subscribe import SubscribeHandler
from sip2uc_media.sidecar.subscriptions import Grant, Subscription, UserState, Watched
from sip2uc_media.transport.base import Source

from .test_edge import FakeControl as FakeRegisterControl  # the REGISTER side

SECRET = b"s" * 32
HANDSET = Endpoint(Transport.UDP, "192.0.2.10", 5062)
BOB = Watched(user="users/b", uri="sip:bob@example.net", display_name="Bob")


class FakeControl:
    def __init__(self) -> None:
        self.up = True
        self.calls: list[SubscribeCall] = []
        self.verdict: tuple[int, str, Grant | None] = (
            200,
            "",
            Grant(watcher="users/a", expires=600, resources=(BOB,)),
        )

    async def wait_up(self) -> None:
        await asyncio.Event().wait()

    async def subscribe(self, call: SubscribeCall) -> tuple[int, str, Grant | None]:
        self.calls.append(call)
        if not self.up:
            raise ControlUnavailableError("down")
        return self.verdict

    async def watch_states(
        self, held: Callable[[], Iterable[Subscription]]
    ) -> AsyncIterator[tuple[list[UserState] | None, UserState | None, tuple[str, ...]]]:
        raise ControlUnavailableError("no watch in these tests")
        yield None, None, ()  # pragma: no cover


class Harness:
    def __init__(self) -> None:
        self.now = 1000.0
        self.count = 0
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
            control=FakeRegisterControl(),
            send=self._send,
            clock=lambda: self.now,
            wall_clock=lambda: 1_700_000_000.0 + self.now,
        )
        self.handler = SubscribeHandler(
            name="unit",
            registrar=registrar,
            control=self.control,
            edge=self.edge,
            config=LegConfig(
                sip_host="192.0.2.1",
                sip_port=5060,
                relay_host="192.0.2.1",
                random_bytes=self._counter,
            ),
            clock=lambda: self.now,
            wall_clock=lambda: 1_700_000_000.0 + self.now,
        )
        self.edge.attach_subscriptions(self.handler)

    def _send(self, data: bytes, dest: Endpoint) -> bool:
        self.sent.append((data, dest))
        return True

    def _counter(self, n: int) -> bytes:
        """Tags and branches that differ, predictably."""
        self.count += 1
        return self.count.to_bytes(n, "big")

    def deliver(self, data: bytes) -> None:
        self.edge.receive(data, Source(HANDSET, lambda _payload: True))

    def messages(self) -> list[SipRequest | SipResponse]:
        return [parse_message(data) for data, _dest in self.sent]

    def last(self) -> SipRequest | SipResponse:
        return self.messages()[-1]


def subscribe(
    *extra: str, branch: str = "z9hG4bK1", cseq: int = 1, to_tag: str = "", expires: int = 600
) -> bytes:
    to = "<sip:bob@example.net>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        "SUBSCRIBE sip:bob@example.net SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch={branch}",
        "From: <sip:alice@example.net>;tag=77",
        f"To: {to}",
        "Call-ID: sub-test",
        f"CSeq: {cseq} SUBSCRIBE",
        "Max-Forwards: 70",
        "Contact: <sip:alice@192.0.2.10:5062>",
        "Event: presence",
        f"Expires: {expires}",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def authorized(h: Harness) -> bytes:
    h.deliver(subscribe(branch="z9hG4bKc"))
    challenge = h.last()
    assert isinstance(challenge, SipResponse) and challenge.status == 401
    (md5,) = [parse_challenge(v) for v in challenge.headers.get_all("WWW-Authenticate")]
    creds = build_credentials(
        md5,
        username="alice",
        ha1=compute_ha1(md5.algorithm, "alice", md5.realm, "pw"),
        method="SUBSCRIBE",
        uri="sip:bob@example.net",
        cnonce="abc",
    )
    return subscribe(f"Authorization: {creds.serialize()}", branch="z9hG4bK2", cseq=2)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_subscribe_without_credentials_is_challenged_without_the_control_plane() -> None:
    h = Harness()
    h.deliver(subscribe())
    response = h.last()
    assert isinstance(response, SipResponse) and response.status == 401
    assert h.control.calls == []


async def test_an_authorized_subscribe_is_granted_200_and_notified_at_once() -> None:
    h = Harness()
    h.deliver(authorized(h))
    await settle()
    (call,) = h.control.calls
    assert (call.action, call.event, call.request_uri) == (
        "create",
        "presence",
        "sip:bob@example.net",
    )
    assert call.credentials is not None and call.credentials.username == "alice"
    ok, notify = h.messages()[-2:]
    assert isinstance(ok, SipResponse) and (ok.status, ok.headers.get("Expires")) == (200, "600")
    assert isinstance(notify, SipRequest) and notify.method == "NOTIFY"
    assert notify.headers.get("Subscription-State") == "active;expires=600"
    assert h.sent[-1][1] == HANDSET  # where the SUBSCRIBE came from (NAT)


async def test_a_notify_answered_481_ends_the_subscription_and_tells_the_control_plane() -> None:
    h = Harness()
    h.deliver(authorized(h))
    await settle()
    notify = h.last()
    assert isinstance(notify, SipRequest)
    h.deliver(make_response(notify, 481).serialize())
    await settle()
    assert len(h.handler.table) == 0
    assert [c.action for c in h.control.calls] == ["create", "end"]


async def test_the_control_planes_refusal_is_answered_as_it_says() -> None:
    h = Harness()
    h.control.verdict = (403, "Not allowed to watch this user", None)
    h.deliver(authorized(h))
    await settle()
    response = h.last()
    assert isinstance(response, SipResponse)
    assert (response.status, response.reason) == (403, "Not allowed to watch this user")
    assert len(h.handler.table) == 0


async def test_an_unreachable_control_plane_is_answered_503_with_retry_after() -> None:
    h = Harness()
    h.control.up = False
    h.deliver(authorized(h))
    await settle()
    response = h.last()
    assert isinstance(response, SipResponse) and response.status == 503
    assert response.headers.get("Retry-After") is not None


async def test_a_refresh_of_an_unknown_subscription_is_481() -> None:
    h = Harness()
    h.deliver(subscribe(to_tag="nosuch", cseq=5))
    response = h.last()
    assert isinstance(response, SipResponse) and response.status == 481


async def test_unsubscribing_answers_200_and_sends_the_final_notify() -> None:
    h = Harness()
    h.deliver(authorized(h))
    await settle()
    first = h.last()
    assert isinstance(first, SipRequest)
    h.deliver(make_response(first, 200).serialize())
    tag = first.from_.tag or ""
    h.deliver(subscribe(branch="z9hG4bK3", cseq=3, to_tag=tag, expires=0))
    await settle()
    ok, final = h.messages()[-2:]
    assert isinstance(ok, SipResponse) and (ok.status, ok.headers.get("Expires")) == (200, "0")
    assert isinstance(final, SipRequest)
    assert final.headers.get("Subscription-State") == "terminated;reason=timeout"
    assert len(h.handler.table) == 0
