"""The message hub without a server or a database: who may send, what a text may be, where it
goes, how the devices' answers add up, and the rules the content and the rate limit follow."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sip2uc_control.bindings import Binding
from sip2uc_control.errors import InvalidArgument
from sip2uc_control.messaging.content import ContentRefused, check_body, check_text
from sip2uc_control.messaging.hub import DELIVERY_DEADLINE, MessageHub
from sip2uc_control.messaging.model import (
    DeliverMessage,
    DeliveryState,
    HandsetMessage,
    MessageOrigin,
    ShortMessage,
)
from sip2uc_control.messaging.rate import RateLimiter
from sip2uc_control.registrar import authenticate
from sip2uc_control.settings import ServerSettings
from sip2uc_control.users import UserDirectory

from .in_memory import DOMAIN, Bindings, Clock, Settings, digest, make_user


class Log:
    """The history in a list."""

    def __init__(self) -> None:
        self.messages: dict[int, ShortMessage] = {}
        self.trimmed = 0

    async def load(self) -> tuple[int, int]:
        return max(self.messages, default=self.trimmed), self.trimmed

    async def insert(self, message: ShortMessage) -> None:
        self.messages[message.seq] = message

    async def update(self, message: ShortMessage) -> None:
        self.messages[message.seq] = message

    async def get(self, seq: int) -> ShortMessage | None:
        return self.messages.get(seq)

    async def after(self, cursor: int, limit: int) -> list[ShortMessage]:
        return [m for s, m in sorted(self.messages.items()) if s > cursor][:limit]

    async def page(self, user_id: str | None, before: int | None, limit: int) -> list[ShortMessage]:
        found = [
            m
            for s, m in sorted(self.messages.items(), reverse=True)
            if (before is None or s < before) and (user_id is None or m.involves({user_id}))
        ]
        return found[:limit]

    async def trim(self, older_than: float, keep_last: int, last_seq: int) -> int:
        old = [s for s, m in self.messages.items() if m.create_time < older_than]
        through = max([*old, last_seq - keep_last, self.trimmed])
        self.messages = {s: m for s, m in self.messages.items() if s > through}
        self.trimmed = through
        return through


class Sidecars:
    def __init__(self, *connected: str) -> None:
        self.connected = set(connected)
        self.sent: list[tuple[str, DeliverMessage]] = []

    def is_connected(self, name: str) -> bool:
        return name in self.connected

    def send(self, name: str, command: DeliverMessage) -> bool:
        self.sent.append((name, command))
        return name in self.connected


class Setup:
    def __init__(self, settings: ServerSettings | None = None) -> None:
        self.clock = Clock()
        self.users = UserDirectory()
        for ext in ("100", "200"):
            self.users.index.add(make_user(ext))
        self.bindings = Bindings()
        self.sidecars = Sidecars("vlan10", "vlan20")
        self.log = Log()
        self.settings = Settings(settings or ServerSettings())
        ids = iter(f"d{i}" for i in range(1, 100))
        self.hub = MessageHub(
            log_store=self.log,
            users=self.users,
            bindings=self.bindings,
            sidecars=self.sidecars,
            settings=self.settings,
            authenticate=lambda creds, method, _source: authenticate(
                self.users, creds, self.settings.current.realm, method
            ),
            clock=self.clock,
            new_id=lambda: next(ids),
        )

    def bind(self, ext: str, sidecar: str, port: int) -> None:
        now = self.clock()
        self.bindings.add(
            Binding(
                id=f"b{port}",
                user_id=f"u{ext}",
                device_id="device-1",
                aor=f"sip:{ext}@{DOMAIN}",
                contact_uri=f"sip:{ext}@192.0.2.1:{port}",
                source_host="192.0.2.1",
                source_port=port,
                transport="udp",
                sidecar=sidecar,
                user_agent="",
                q_milli=1000,
                call_id=f"c{port}",
                cseq=1,
                instance_id="",
                expire_time=now + 600,
                create_time=now,
                refresh_time=now,
            )
        )

    def from_handset(
        self,
        text: str = "hello",
        *,
        to: str = "200",
        password: str = "s3cret-pw",
        content_type: str = "text/plain",
    ) -> HandsetMessage:
        return HandsetMessage(
            sidecar="vlan10",
            source_host="192.0.2.9",
            credentials=digest("100", password, "MESSAGE"),
            from_uri=f"sip:100@{DOMAIN}",
            from_display_name="",
            request_uri=f"sip:{to}@{DOMAIN}",
            content_type=content_type,
            body=text.encode(),
        )


# --- who may send what --------------------------------------------------------------------------


async def test_a_wrong_password_is_challenged_again_and_nothing_is_sent() -> None:
    s = Setup()
    s.bind("200", "vlan10", 5070)

    verdict = await s.hub.from_handset(s.from_handset(password="wrong"))

    assert (verdict.status, verdict.message) == (407, None)
    assert (s.sidecars.sent, s.log.messages) == ([], {})


async def test_a_message_without_credentials_is_never_relayed() -> None:
    s = Setup()
    s.bind("200", "vlan10", 5070)

    verdict = await s.hub.from_handset(replace(s.from_handset(), credentials=None))

    assert verdict.status == 407
    assert s.sidecars.sent == []


async def test_a_disabled_sender_is_forbidden() -> None:
    s = Setup()
    s.users.index.add(replace(make_user("100"), disabled=True))

    verdict = await s.hub.from_handset(s.from_handset())

    assert (verdict.status, verdict.reason) == (403, "User disabled")


async def test_an_unknown_recipient_is_404() -> None:
    s = Setup()

    verdict = await s.hub.from_handset(s.from_handset(to="999"))

    assert verdict.status == 404
    assert s.log.messages == {}


async def test_the_recipient_is_found_by_extension_or_sip_user() -> None:
    s = Setup()
    s.bind("200", "vlan10", 5070)

    by_ext = await s.hub.from_handset(s.from_handset(to="200"))
    by_uri = await s.hub.from_handset(
        replace(s.from_handset(), request_uri="sip:200@192.0.2.250:5060;user=phone")
    )

    assert (by_ext.status, by_uri.status) == (202, 202)


async def test_html_is_refused_415_with_accept_and_nothing_is_kept() -> None:
    s = Setup()

    verdict = await s.hub.from_handset(s.from_handset("<b>x</b>", content_type="text/html"))

    assert (verdict.status, verdict.accept) == (415, "text/plain")
    assert s.log.messages == {}


async def test_a_text_over_the_size_limit_is_refused_413() -> None:
    s = Setup(ServerSettings(message_max_bytes=16))

    verdict = await s.hub.from_handset(s.from_handset("x" * 17))

    assert verdict.status == 413


async def test_a_sender_over_its_burst_gets_403_with_the_seconds_to_wait() -> None:
    s = Setup(ServerSettings(message_rate_per_minute=6, message_burst=2))

    first = await s.hub.from_handset(s.from_handset())
    second = await s.hub.from_handset(s.from_handset())
    third = await s.hub.from_handset(s.from_handset())
    s.clock.advance(10)  # one token back at 6 a minute
    fourth = await s.hub.from_handset(s.from_handset())

    assert [v.status for v in (first, second, third, fourth)] == [480, 480, 403, 480]
    assert (third.reason, third.retry_after) == ("Message Rate Exceeded", 10)


# --- where it goes ------------------------------------------------------------------------------


async def test_a_recipient_without_bindings_gets_480_and_the_message_is_kept_failed() -> None:
    s = Setup()

    verdict = await s.hub.from_handset(s.from_handset())

    assert (verdict.status, verdict.reason) == (480, "Temporarily Unavailable")
    kept = s.log.messages[1]
    assert (kept.state, kept.failure_reason, kept.origin) == (
        DeliveryState.FAILED,
        "recipient offline",
        MessageOrigin.HANDSET,
    )


async def test_every_binding_on_every_sidecar_gets_the_text_and_202_comes_back() -> None:
    s = Setup()
    s.bind("200", "vlan10", 5070)
    s.bind("200", "vlan20", 5080)

    verdict = await s.hub.from_handset(s.from_handset("Grüße"))

    assert (verdict.status, verdict.reason) == (202, "Accepted")
    assert [(name, c.request_uri, c.port) for name, c in s.sidecars.sent] == [
        ("vlan10", "sip:200@192.0.2.1:5070", 5070),
        ("vlan20", "sip:200@192.0.2.1:5080", 5080),
    ]
    command = s.sidecars.sent[0][1]
    assert (command.from_uri, command.from_display_name, command.to_uri) == (
        f"sip:100@{DOMAIN}",
        "User 100",
        f"sip:200@{DOMAIN}",
    )
    assert (command.content_type, command.body) == ("text/plain;charset=UTF-8", "Grüße".encode())
    assert s.log.messages[1].state is DeliveryState.PENDING


async def test_one_device_accepting_makes_the_message_delivered_once_all_answered() -> None:
    s = Setup()
    s.bind("200", "vlan10", 5070)
    s.bind("200", "vlan20", 5080)
    await s.hub.from_handset(s.from_handset())

    await s.hub.delivered("vlan10", "d1", 486, "Busy Here")
    halfway = s.log.messages[1].state
    await s.hub.delivered("vlan20", "d2", 200, "OK")

    done = s.log.messages[1]
    assert halfway is DeliveryState.PENDING
    assert (done.state, done.attempted, done.delivered, done.failed, done.failure_reason) == (
        DeliveryState.DELIVERED,
        2,
        1,
        1,
        "",
    )


async def test_a_report_from_another_sidecar_or_a_repeat_is_ignored() -> None:
    s = Setup()
    s.bind("200", "vlan10", 5070)
    await s.hub.from_handset(s.from_handset())

    await s.hub.delivered("vlan20", "d1", 200, "OK")  # not the sidecar it was sent to
    await s.hub.delivered("vlan10", "d1", 404, "Not Found")
    await s.hub.delivered("vlan10", "d1", 200, "OK")  # already settled

    done = s.log.messages[1]
    assert (done.state, done.failure_reason) == (DeliveryState.FAILED, "404 Not Found")


async def test_deliveries_nobody_reports_on_fail_408_after_the_deadline() -> None:
    s = Setup()
    s.bind("200", "vlan10", 5070)
    await s.hub.from_handset(s.from_handset())

    s.clock.advance(DELIVERY_DEADLINE - 1)
    await s.hub.sweep()
    before = s.log.messages[1].state
    s.clock.advance(1)
    await s.hub.sweep()

    assert before is DeliveryState.PENDING
    assert (s.log.messages[1].state, s.log.messages[1].failure_reason) == (
        DeliveryState.FAILED,
        "408 No answer",
    )


async def test_a_sidecar_that_went_away_between_lookup_and_send_counts_as_a_failure() -> None:
    s = Setup()
    s.bind("200", "vlan10", 5070)
    s.sidecars.connected.discard("vlan20")
    s.bind("200", "vlan20", 5080)  # not connected: not even tried

    verdict = await s.hub.from_handset(s.from_handset())

    assert verdict.status == 202
    assert [name for name, _ in s.sidecars.sent] == ["vlan10"]
    assert s.log.messages[1].attempted == 1


async def test_an_api_text_that_is_empty_is_refused_on_the_text_field() -> None:
    s = Setup()
    recipient = s.users.resolve("200")
    assert recipient is not None

    with pytest.raises(InvalidArgument) as info:
        await s.hub.send(None, recipient, " ")

    assert [v.field for v in info.value.violations] == ["text"]


# --- the rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("text/plain", b"hi", "hi"),
        ("text/plain;charset=UTF-8", "Grüße".encode(), "Grüße"),
        ('Text/Plain; charset="utf-8"', b"hi", "hi"),
        ("text/plain;charset=us-ascii", b"hi", "hi"),
        ("text/html", b"hi", ContentRefused(415, "Unsupported Media Type", "text/plain")),
        ("", b"hi", ContentRefused(415, "Unsupported Media Type", "text/plain")),
        (
            "text/plain;charset=iso-8859-1",
            b"hi",
            ContentRefused(415, "Unsupported Media Type", "text/plain"),
        ),
        ("text/plain", b"\xff\xfe", ContentRefused(400, "Body is not UTF-8")),
        ("text/plain", b"  \r\n", ContentRefused(400, "Empty message")),
        ("text/plain", b"x" * 9, ContentRefused(413, "Message Too Large (at most 8 bytes)")),
    ],
)
def test_what_a_message_body_may_be(
    content_type: str, body: bytes, expected: str | ContentRefused
) -> None:
    assert check_body(content_type, body, 8) == expected


def test_an_api_text_is_measured_in_utf8_bytes() -> None:
    assert check_text("é" * 4, 8) is None
    assert check_text("é" * 5, 8) == "at most 8 bytes in UTF-8 (this is 10)"
    assert check_text("\ud800", 8) == "must be valid Unicode text"


def test_the_token_bucket_allows_a_burst_then_one_per_interval() -> None:
    limiter = RateLimiter(per_minute=30, burst=3)

    burst = [limiter.take("alice", 0.0) for _ in range(4)]
    later = [limiter.take("alice", 2.0), limiter.take("alice", 2.0)]

    assert burst == [0, 0, 0, 2]
    assert later == [0, 2]
    assert limiter.take("bob", 2.0) == 0  # each sender has its own bucket


def test_the_bucket_table_stays_bounded_and_forgets_refilled_senders_first() -> None:
    limiter = RateLimiter(per_minute=60, burst=2, max_senders=3)
    limiter.take("busy", 0.0)
    limiter.take("busy", 0.0)
    limiter.take("quiet-1", 0.0)
    limiter.take("quiet-2", 0.0)

    limiter.take("new", 1.0)  # by now both quiet senders have a full bucket again

    assert len(limiter) == 2  # busy and new
    assert [limiter.take("busy", 1.0), limiter.take("busy", 1.0)] == [0, 1]
