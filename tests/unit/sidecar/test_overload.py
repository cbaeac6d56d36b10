"""The overload policy, driven with an injected clock: what waits, in which order, what is shed.

Every test feeds raw messages to one `IntakeQueue` with explicit times and reads back what it
refused and what it serves next; nothing sleeps or reads a clock.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
from sip2uc_media.sidecar.config import OVERLOAD_KEYS, overload_options
from sip2uc_media.sidecar.known_sources import KnownSources
from sip2uc_media.sidecar.overload import (
    ANSWERED,
    CLASSES,
    IntakeQueue,
    OverloadSettings,
    Reason,
    retry_after,
)
from sip2uc_media.sidecar.triage import Kind

HANDSET = "192.0.2.10"
OTHER = "192.0.2.99"
#: The classes of new work from a source with a binding, and without one.
NEW_KNOWN = CLASSES.index((True, Kind.NEW))
NEW_OTHER = CLASSES.index((False, Kind.NEW))


def sip(method: str, n: int, *, tag: bool = False, credentials: bool = False) -> bytes:
    lines = [
        f"{method} sip:example.net SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK{n}",
        "From: <sip:alice@example.net>;tag=77",
        "To: <sip:alice@example.net>" + (";tag=dlg" if tag else ""),
        f"Call-ID: call-{n}",
        f"CSeq: 1 {method}",
        *(['Authorization: Digest username="alice"'] if credentials else []),
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def new(n: int) -> bytes:
    return sip("REGISTER", n)


def follow_up(n: int) -> bytes:
    return sip("REGISTER", n, credentials=True)


def in_dialog(n: int) -> bytes:
    return sip("BYE", n, tag=True)


def queue(**settings: float) -> IntakeQueue[str]:
    return IntakeQueue(OverloadSettings(**settings), KnownSources())  # type: ignore[arg-type]


def served(q: IntakeQueue[str], now: float) -> list[str]:
    out = []
    while (item := q.take(now)) is not None:
        out.append(item.payload)
    return out


def test_dialog_work_then_follow_ups_then_new_work_each_oldest_first() -> None:
    q = queue()
    for payload, data in [
        ("new-1", new(1)),
        ("follow-1", follow_up(2)),
        ("dialog-1", in_dialog(3)),
        ("new-2", new(4)),
        ("dialog-2", in_dialog(5)),
    ]:
        assert q.offer(data, HANDSET, payload, 10.0) is None

    assert served(q, 10.1) == ["dialog-1", "dialog-2", "follow-1", "new-1", "new-2"]


def test_sources_with_a_binding_are_served_before_all_others() -> None:
    q = queue()
    q.known.mark(HANDSET, until=100.0)
    q.offer(in_dialog(1), OTHER, "stranger's dialog", 10.0)
    q.offer(new(2), HANDSET, "handset's new", 10.0)

    assert served(q, 10.0) == ["handset's new", "stranger's dialog"]


def test_a_retransmission_of_a_waiting_message_is_dropped_and_later_ones_queue_again() -> None:
    q = queue()
    q.offer(new(1), HANDSET, "first", 10.0)

    assert q.offer(new(1), HANDSET, "again", 10.5) is Reason.RETRANSMISSION
    assert served(q, 10.6) == ["first"]
    # Served now: a later copy goes to the transaction layer, which resends the answer.
    assert q.offer(new(1), HANDSET, "after", 11.0) is None


def test_new_work_is_answered_503_once_the_oldest_new_work_waited_too_long() -> None:
    q = queue(max_queue_delay=1.0)
    q.offer(new(1), HANDSET, "waiting", 10.0)

    assert q.offer(new(2), HANDSET, "in time", 10.1) is None
    assert q.offer(new(3), HANDSET, "too late", 11.01) is Reason.QUEUE_DELAY
    assert Reason.QUEUE_DELAY in ANSWERED


def test_new_work_is_answered_503_when_its_backlog_would_outlast_the_bound() -> None:
    q = queue(max_queue_delay=1.0)
    q.known.mark(HANDSET, until=100.0)
    for n in range(50):
        q.offer(new(n), HANDSET, "backlog", 10.0)
    for k in range(1, 15):  # served at 64 a second for 14/64 s
        q.take(10.0 + k / 64)
    assert q.service_rate[NEW_KNOWN] == 64.0

    n = 100
    while q.offer(new(n), HANDSET, "more", 10.25) is None:
        n += 1

    # With 65 waiting one more would wait 65/64 s at 64 a second; the head waited 0.25 s.
    assert len(q) == 65
    assert q.expected_wait(NEW_KNOWN, 10.25) == 65 / 64


def test_new_work_is_refused_while_classes_above_it_take_all_the_time() -> None:
    q = queue(max_queue_delay=1.0)
    q.offer(new(1), HANDSET, "starved", 10.0)
    for k in range(31):
        q.offer(in_dialog(100 + k), HANDSET, "dialog", 10.0 + k / 100)
        q.take(10.0 + k / 100)

    assert q.offer(new(2), HANDSET, "more", 10.3) is Reason.QUEUE_DELAY
    assert q.service_rate[NEW_OTHER] == 0.0


def test_what_finishes_work_under_way_is_queued_however_long_new_work_waits() -> None:
    q = queue(max_queue_delay=1.0)
    q.offer(new(1), HANDSET, "waiting", 10.0)

    assert q.offer(follow_up(2), HANDSET, "follow", 15.0) is None
    assert q.offer(in_dialog(3), HANDSET, "dialog", 15.0) is None
    assert served(q, 15.0) == ["dialog", "follow", "waiting"]


def test_the_delay_bound_is_per_class() -> None:
    q = queue(max_queue_delay=1.0)
    q.offer(new(1), OTHER, "stranger waiting", 10.0)
    q.known.mark(HANDSET, until=100.0)

    assert q.offer(new(2), HANDSET, "handset", 12.0) is None
    assert q.offer(new(3), OTHER, "stranger", 12.0) is Reason.QUEUE_DELAY


def test_new_work_is_refused_while_the_control_plane_is_behind() -> None:
    q = queue(control_delay=1.0, control_in_flight=100)

    q.control_backlog(in_flight=5, oldest_age=1.5)
    assert q.offer(new(1), HANDSET, "new", 10.0) is Reason.CONTROL_BACKLOG
    assert q.offer(follow_up(2), HANDSET, "follow", 10.0) is None

    q.control_backlog(in_flight=101, oldest_age=0.1)
    assert q.offer(new(3), HANDSET, "new", 10.0) is Reason.CONTROL_BACKLOG

    q.control_backlog(in_flight=100, oldest_age=1.0)
    assert q.offer(new(4), HANDSET, "new", 10.0) is None
    assert Reason.CONTROL_BACKLOG in ANSWERED


def test_a_source_without_a_binding_may_have_only_so_many_messages_waiting() -> None:
    q = queue(source_queue_limit=2)
    q.offer(new(1), OTHER, "1", 10.0)
    q.offer(in_dialog(2), OTHER, "2", 10.0)

    assert q.offer(follow_up(3), OTHER, "3", 10.0) is Reason.SOURCE_LIMIT
    assert Reason.SOURCE_LIMIT not in ANSWERED  # a flood hears nothing
    assert q.offer(new(4), "192.0.2.50", "someone else", 10.0) is None
    q.known.mark(HANDSET, until=100.0)
    for n in range(5, 10):
        assert q.offer(new(n), HANDSET, "registered handset", 10.0) is None
    # Once one of its messages was served, the source has room again.
    q.take(10.0)
    q.take(10.0)
    q.take(10.0)
    q.take(10.0)
    q.take(10.0)
    assert q.take(10.0) is not None  # the stranger's dialog message
    assert q.offer(follow_up(3), OTHER, "3", 10.0) is None


def test_a_full_queue_makes_room_for_higher_classes_by_dropping_the_newest_lowest() -> None:
    q = queue(max_waiting=3)
    q.offer(new(1), HANDSET, "new-1", 10.0)
    q.offer(new(2), HANDSET, "new-2", 10.0)
    q.offer(follow_up(3), HANDSET, "follow", 10.0)

    assert q.offer(new(4), HANDSET, "new-3", 10.0) is Reason.QUEUE_FULL
    assert q.offer(in_dialog(5), HANDSET, "dialog", 10.0) is None
    assert served(q, 10.0) == ["dialog", "follow", "new-1"]
    assert q.refused[Reason.QUEUE_FULL] == 2


def test_the_byte_bound_counts_too() -> None:
    q = queue(max_waiting_bytes=65536)
    big = new(1) + b"x" * 65300

    assert q.offer(big, HANDSET, "big", 10.0) is None
    assert q.offer(new(2), HANDSET, "small", 10.0) is Reason.QUEUE_FULL
    assert q.waiting_bytes == len(big)


def test_a_message_every_client_has_given_up_on_is_dropped_unserved() -> None:
    q = queue(expiry=32.0)
    q.offer(in_dialog(1), HANDSET, "old", 10.0)
    q.offer(in_dialog(2), HANDSET, "young", 40.0)

    assert served(q, 42.5) == ["young"]
    assert q.refused[Reason.EXPIRED] == 1
    assert len(q) == 0


def test_what_is_not_sip_and_the_acks_of_shed_503s_are_dropped_before_queueing() -> None:
    q = IntakeQueue[str](OverloadSettings(), KnownSources(), shed_tag=b"ShedTag")
    ack = sip("ACK", 1, tag=False).replace(
        b"To: <sip:alice@example.net>", b"To: <sip:alice@example.net>;tag=shedtag"
    )

    assert q.offer(b"\x16\x03\x01 TLS hello", HANDSET, "junk", 10.0) is Reason.NOT_SIP
    assert q.offer(ack, HANDSET, "ack", 10.0) is Reason.SHED_ACK
    assert len(q) == 0


def test_ages_and_counts_describe_the_backlog() -> None:
    q = queue()
    q.offer(new(1), HANDSET, "a", 10.0)
    q.offer(in_dialog(2), OTHER, "b", 11.0)

    assert (len(q), q.oldest_age(12.0), q.head_age(NEW_OTHER, 12.0), q.head_age(3, 12.0)) == (
        2,
        2.0,
        2.0,
        1.0,
    )
    served(q, 12.5)
    assert q.take_max_delay() == 2.5
    assert q.take_max_delay() == 0.0


@pytest.mark.parametrize("base", [1, 5, 30])
def test_retry_after_is_spread_over_one_to_two_times_the_base(base: int) -> None:
    rng = random.Random(7)
    values = {retry_after(base, rng) for _ in range(2000)}

    assert min(values) == base and max(values) == 2 * base


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_queue_delay", 0.0),
        ("control_in_flight", 0),
        ("source_queue_limit", 0),
        ("max_waiting", 0),
        ("max_waiting_bytes", 100),
        ("expiry", 0.5),
    ],
)
def test_settings_out_of_bounds_are_refused(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        OverloadSettings(**{field: value})  # type: ignore[arg-type]


def test_known_sources_expire_and_never_shorten() -> None:
    known = KnownSources()
    known.mark(HANDSET, until=100.0)
    known.mark(HANDSET, until=50.0)

    assert known.is_known(HANDSET, 99.0)
    assert not known.is_known(HANDSET, 100.0)
    assert len(known) == 0


def test_trunk_networks_are_always_known_and_the_table_is_bounded() -> None:
    known = KnownSources(capacity=2)
    known.set_trunks(["203.0.113.0/24", "not a network"])
    for n, host in enumerate(["198.51.100.1", "198.51.100.2", "198.51.100.3"]):
        known.mark(host, until=100.0 + n)

    assert known.is_known("203.0.113.77", 10.0)
    assert not known.is_known("198.51.100.1", 10.0)  # the oldest mark made room
    assert known.is_known("198.51.100.3", 10.0)
    assert len(known) == 2


def test_overload_options_give_the_sidecar_settings_by_name() -> None:
    options = overload_options(
        ["max_queue_delay=0.5", "source_queue_limit=16", "retry_after=10", "tcp_message_timeout=5"]
    )

    assert options == {
        "overload": OverloadSettings(max_queue_delay=0.5, source_queue_limit=16),
        "retry_after": 10,
        "tcp_message_timeout": 5.0,
    }
    assert overload_options([]) == {}


@pytest.mark.parametrize(
    "item, message",
    [
        ("max_queue_delay", "KEY=VALUE"),
        ("queue_size=4", "KEY=VALUE"),
        ("source_queue_limit=1.5", "source_queue_limit: '1.5' is not a whole number"),
        ("max_queue_delay=soon", "max_queue_delay: 'soon' is not a number"),
        ("max_queue_delay=90", "max_queue_delay must be"),
        ("retry_after=0", "retry_after must be 1-3600 s"),
    ],
)
def test_overload_options_name_what_is_wrong(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        overload_options([item])


CONFIGURATION_MD = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def test_the_configuration_reference_gives_every_overload_key_its_default_and_bound() -> None:
    rows: dict[str, list[str]] = {}
    for line in CONFIGURATION_MD.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].startswith("`") and cells[0].endswith("`"):
            rows[cells[0].strip("`")] = cells
    for key in OVERLOAD_KEYS:
        assert key in rows, f"docs/configuration.md has no row for --overload {key}"
        _name, default, bound, meaning = rows[key][:4]
        assert default and bound and meaning, f"docs/configuration.md leaves {key} incomplete"
    for field in dataclasses.fields(OverloadSettings):
        default = rows[field.name][1]
        assert float(default.split()[0]) == field.default, (
            f"docs/configuration.md gives {field.name} the default {default!r}, "
            f"the code {field.default}"
        )
