"""The runner's queues: latest item per key, one in flight per key, retries, safe cursor."""

from __future__ import annotations

from sip2uc_connectors.bridge import Availability, PresenceUpdate
from sip2uc_connectors.coalescing import CoalescingQueue
from sip2uc_connectors.outbound import OutboundQueue


def update(user: str, availability: Availability) -> PresenceUpdate:
    return PresenceUpdate(user=user, sip_uri=f"sip:{user}@x", availability=availability)


def test_a_burst_for_one_key_leaves_only_the_latest_item() -> None:
    queue: CoalescingQueue[str] = CoalescingQueue()
    for item in ("a", "b", "c"):
        queue.offer("alice", item)
    queue.offer("bob", "x")
    assert queue.take(0.0) == ("alice", "c")
    assert queue.take(0.0) == ("bob", "x")
    assert queue.take(0.0) is None


def test_an_item_for_a_key_in_flight_waits_for_it() -> None:
    queue: CoalescingQueue[str] = CoalescingQueue()
    queue.offer("alice", "a")
    assert queue.take(0.0) == ("alice", "a")
    queue.offer("alice", "b")
    queue.offer("alice", "c")
    assert queue.take(0.0) is None
    queue.done("alice")
    assert queue.take(0.0) == ("alice", "c")


def test_a_failure_is_retried_after_a_doubling_delay_with_the_latest_item() -> None:
    queue: CoalescingQueue[str] = CoalescingQueue()
    queue.offer("alice", "a")
    queue.take(0.0)
    queue.offer("alice", "b")
    assert queue.failed("alice", 10.0, max_delay=30.0) == 0.5
    assert queue.take(10.4) is None and queue.next_retry_at() == 10.5
    assert queue.take(10.5) == ("alice", "b")
    assert queue.failed("alice", 11.0, max_delay=30.0) == 1.0
    assert queue.take(12.0) == ("alice", "b")
    for _ in range(10):
        delay = queue.failed("alice", 0.0, max_delay=30.0)
        queue.take(1e9)
    assert delay == 30.0


def test_a_dropped_key_is_not_done_and_not_retried() -> None:
    queue: CoalescingQueue[str] = CoalescingQueue()
    queue.offer("alice", "a")
    queue.take(0.0)
    queue.drop("alice")
    assert len(queue) == 0 and queue.done_count == 0


def test_the_safe_cursor_stays_before_the_oldest_undelivered_change() -> None:
    out = OutboundQueue()
    s1 = out.note_cursor("10")
    out.offer_update(update("alice", Availability.AWAY), s1, 1.0)
    s2 = out.note_cursor("11")
    out.offer_update(update("bob", Availability.BUSY), s2, 2.0)
    assert out.safe_cursor() is None  # nothing delivered yet
    assert out.take(0.0) is not None  # alice
    assert out.take(0.0) is not None  # bob
    out.done("bob")
    assert out.safe_cursor() is None  # alice's change (cursor 10) is still in flight
    out.done("alice")
    assert out.safe_cursor() == "11"


def test_a_coalesced_entry_keeps_its_oldest_change_for_the_cursor_and_lag() -> None:
    out = OutboundQueue()
    s1 = out.note_cursor("10")
    out.offer_update(update("alice", Availability.AWAY), s1, 1.0)
    s2 = out.note_cursor("11")
    out.offer_update(update("alice", Availability.BUSY), s2, 2.0)
    assert out.oldest_at() == 1.0
    assert out.take(0.0) == ("alice", update("alice", Availability.BUSY))
    out.done("alice")
    assert out.safe_cursor() == "11" and out.oldest_at() is None


def test_a_change_arriving_during_a_delivery_holds_the_cursor_back() -> None:
    out = OutboundQueue()
    out.offer_update(update("alice", Availability.AWAY), out.note_cursor("10"), 1.0)
    out.take(0.0)
    out.offer_update(update("alice", Availability.BUSY), out.note_cursor("11"), 2.0)
    out.done("alice")
    assert out.safe_cursor() == "10"
    out.take(0.0)
    out.done("alice")
    assert out.safe_cursor() == "11"
