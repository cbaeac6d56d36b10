"""The Teams bridge's protocol core, driven with a fixed clock: what it sends for each state,
when it re-posts, how it paces, backs off, catches up and reads presence back."""

from __future__ import annotations

from random import Random

import pytest
from sip2uc_connectors.teams.graph_calls import CallKind, GraphCall, GraphReply
from sip2uc_connectors.teams.mapping import GraphPair, TeamsMapping
from sip2uc_connectors.teams.model import (
    Availability,
    ConnectionState,
    InboundPresence,
    OutboundPresence,
)
from sip2uc_connectors.teams.sync import PresenceSync, SyncTiming

APP = "11111111-2222-3333-4444-555555555555"
ALICE = "aaaaaaaa-0000-0000-0000-000000000001"
BOB = "bbbbbbbb-0000-0000-0000-000000000002"
A = Availability


def state(
    user: str, automatic: Availability, manual: Availability | None = None
) -> OutboundPresence:
    return OutboundPresence(user_id=user, automatic=automatic, manual=manual)


def make(**timing: object) -> PresenceSync:
    defaults: dict[str, object] = {"poll_interval": 0}
    defaults.update(timing)
    return PresenceSync(app_id=APP, timing=SyncTiming(**defaults), rng=Random(7))  # type: ignore[arg-type]


def calls_now(sync: PresenceSync, now: float) -> list[GraphCall]:
    calls = []
    while (call := sync.next_call(now)) is not None:
        calls.append(call)
    return calls


def ok(sync: PresenceSync, call: GraphCall, now: float, body: object = None) -> None:
    sync.handle_reply(call, GraphReply(status=200, body=body), now)


def settle(sync: PresenceSync, now: float) -> list[tuple[str, str | None, str]]:
    """Answer 200 to everything until the core has nothing more to send now."""
    sent = []
    while calls := calls_now(sync, now):
        for call in calls:
            sent.append(
                (call.kind.value, str(call.pair) if call.pair else None, call.user_id or "")
            )
            ok(sync, call, now)
    return sent


def known(sync: PresenceSync, user: str) -> None:
    """Graph holds nothing for the user and the core knows it (as after a saved state)."""
    sync.restore_state({user: {"session": None, "preferred": None}}, 0.0)


def test_available_handset_opens_a_session_under_the_application_id() -> None:
    sync = make()
    known(sync, ALICE)
    sync.publish([state(ALICE, A.AVAILABLE)], 0.0)
    call = sync.next_call(0.0)
    assert call is not None
    assert (call.method, call.path) == ("POST", f"/users/{ALICE}/presence/setPresence")
    assert call.body == {
        "sessionId": APP,
        "availability": "Available",
        "activity": "Available",
        "expirationDuration": "PT15M",
    }


@pytest.mark.parametrize(
    ("automatic", "pair"),
    [
        (A.AVAILABLE, "Available/Available"),
        (A.RINGING, "Available/Available"),
        (A.IN_A_CALL, "Busy/InACall"),
        (A.AWAY, "Away/Away"),
        (A.DO_NOT_DISTURB, "DoNotDisturb/Presenting"),
    ],
)
def test_each_handset_state_becomes_one_allowed_session_pair(
    automatic: Availability, pair: str
) -> None:
    sync = make()
    known(sync, ALICE)
    sync.publish([state(ALICE, automatic)], 0.0)
    assert settle(sync, 0.0) == [("setPresence", pair, ALICE)]


def test_offline_handset_clears_the_session_and_nothing_else_once_known() -> None:
    sync = make()
    known(sync, ALICE)
    sync.publish([state(ALICE, A.IN_A_CALL)], 0.0)
    settle(sync, 0.0)
    sync.publish([state(ALICE, A.OFFLINE)], 1.0)
    assert settle(sync, 1.0) == [("clearPresence", None, ALICE)]
    call = sync.next_call(2.0)
    assert call is None


def test_clear_presence_sends_only_the_session_id() -> None:
    sync = make()
    sync.publish([state(ALICE, A.OFFLINE)], 0.0)
    call = sync.next_call(0.0)
    assert call is not None and call.kind is CallKind.CLEAR_PRESENCE
    assert call.body == {"sessionId": APP}


def test_unknown_graph_state_at_start_is_cleared_once() -> None:
    sync = make()
    sync.publish([state(ALICE, A.OFFLINE)], 0.0)
    assert settle(sync, 0.0) == [
        ("clearPresence", None, ALICE),
        ("clearUserPreferredPresence", None, ALICE),
    ]
    assert settle(sync, 5.0) == []


def test_manual_dnd_keeps_the_session_and_sets_the_preferred_presence() -> None:
    sync = make()
    known(sync, ALICE)
    sync.publish([state(ALICE, A.AVAILABLE, manual=A.DO_NOT_DISTURB)], 0.0)
    assert settle(sync, 0.0) == [
        ("setPresence", "Available/Available", ALICE),
        ("setUserPreferredPresence", "DoNotDisturb/DoNotDisturb", ALICE),
    ]
    sync.publish([state(ALICE, A.AVAILABLE)], 1.0)
    assert settle(sync, 1.0) == [("clearUserPreferredPresence", None, ALICE)]


@pytest.mark.parametrize(
    ("manual", "pair"),
    [
        (A.AWAY, "Away/Away"),
        (A.BE_RIGHT_BACK, "BeRightBack/BeRightBack"),
        (A.BUSY, "Busy/Busy"),
        (A.OFFLINE, "Offline/OffWork"),
    ],
)
def test_manual_states_become_preferred_pairs(manual: Availability, pair: str) -> None:
    sync = make()
    known(sync, ALICE)
    sync.publish([state(ALICE, A.AVAILABLE, manual=manual)], 0.0)
    assert settle(sync, 0.0)[-1] == ("setUserPreferredPresence", pair, ALICE)


def test_preferred_body_has_no_session_id() -> None:
    sync = make()
    known(sync, ALICE)
    sync.publish([state(ALICE, A.OFFLINE, manual=A.AWAY)], 0.0)
    call = sync.next_call(0.0)
    assert call is not None and call.kind is CallKind.SET_PREFERRED
    assert call.body == {"availability": "Away", "activity": "Away"}


def test_clear_preferred_sends_an_empty_object() -> None:
    sync = make()
    sync.restore_state({ALICE: {"session": None, "preferred": "Away/Away"}}, 0.0)
    sync.publish([state(ALICE, A.OFFLINE)], 0.0)
    call = sync.next_call(0.0)
    assert call is not None and call.kind is CallKind.CLEAR_PREFERRED
    assert call.body == {}


def test_states_published_before_sending_collapse_to_the_latest() -> None:
    sync = make()
    known(sync, ALICE)
    sync.publish([state(ALICE, A.AVAILABLE)], 0.0)
    sync.publish([state(ALICE, A.RINGING)], 0.0)
    sync.publish([state(ALICE, A.IN_A_CALL)], 0.0)
    assert settle(sync, 0.0) == [("setPresence", "Busy/InACall", ALICE)]


def test_states_published_during_a_request_send_only_the_latest_after_it() -> None:
    sync = make()
    known(sync, ALICE)
    sync.publish([state(ALICE, A.AVAILABLE)], 0.0)
    first = sync.next_call(0.0)
    assert first is not None
    sync.publish([state(ALICE, A.IN_A_CALL)], 0.1)
    sync.publish([state(ALICE, A.AVAILABLE)], 0.2)
    sync.publish([state(ALICE, A.OFFLINE)], 0.3)
    assert sync.next_call(0.3) is None  # one request per user at a time keeps them in order
    ok(sync, first, 0.4)
    assert settle(sync, 0.4) == [("clearPresence", None, ALICE)]


def test_available_session_is_reposted_before_graphs_five_minute_timeout() -> None:
    sync = make()
    known(sync, ALICE)
    sync.publish([state(ALICE, A.AVAILABLE)], 100.0)
    settle(sync, 100.0)
    assert sync.next_deadline(100.0) == 340.0
    assert sync.next_call(339.9) is None
    call = sync.next_call(340.0)
    assert call is not None
    assert (call.kind, str(call.pair), call.refresh) == (
        CallKind.SET_PRESENCE,
        "Available/Available",
        True,
    )
    ok(sync, call, 340.5)
    assert sync.next_deadline(341.0) == 580.0


def test_other_sessions_are_reposted_before_they_expire() -> None:
    sync = make()
    known(sync, ALICE)
    sync.publish([state(ALICE, A.IN_A_CALL)], 0.0)
    settle(sync, 0.0)
    # expirationDuration PT15M, re-posted two minutes before
    assert sync.next_deadline(1.0) == 780.0
    call = sync.next_call(780.0)
    assert call is not None and call.refresh and str(call.pair) == "Busy/InACall"


def test_preferred_presence_is_reposted_before_a_day_is_over() -> None:
    sync = make()
    known(sync, ALICE)
    sync.publish([state(ALICE, A.OFFLINE, manual=A.DO_NOT_DISTURB)], 0.0)
    settle(sync, 0.0)
    assert sync.next_deadline(1.0) == 72000.0
    call = sync.next_call(72000.0)
    assert call is not None and call.kind is CallKind.SET_PREFERRED and call.refresh


def test_keepalive_is_measured_from_when_the_request_left() -> None:
    sync = make()
    known(sync, ALICE)
    sync.publish([state(ALICE, A.AVAILABLE)], 0.0)
    call = sync.next_call(0.0)
    assert call is not None
    ok(sync, call, 30.0)  # a slow answer does not push the re-post later
    assert sync.next_deadline(30.0) == 240.0


def test_429_pauses_everything_for_retry_after_then_sends_the_latest_state_only() -> None:
    sync = make()
    known(sync, ALICE)
    sync.publish([state(ALICE, A.AVAILABLE)], 0.0)
    call = sync.next_call(0.0)
    assert call is not None
    sync.handle_reply(
        call, GraphReply(status=429, retry_after=7.0, error_code="TooManyRequests"), 0.5
    )
    for t, s in ((1.0, A.RINGING), (2.0, A.IN_A_CALL), (3.0, A.AVAILABLE), (4.0, A.IN_A_CALL)):
        sync.publish([state(ALICE, s)], t)
    assert sync.next_call(7.4) is None
    assert sync.next_deadline(7.4) == 7.5
    status = sync.status(7.4)
    assert status.throttled_until == 7.5 and status.pending_users == 1
    assert status.state is ConnectionState.CONNECTING  # throttled, not broken
    assert settle(sync, 7.5) == [("setPresence", "Busy/InACall", ALICE)]
    assert sync.status(7.5).state is ConnectionState.CONNECTED


def test_throttling_pauses_other_users_too() -> None:
    sync = make()
    known(sync, ALICE)
    known(sync, BOB)
    sync.publish([state(ALICE, A.AVAILABLE)], 0.0)
    call = sync.next_call(0.0)
    assert call is not None
    sync.handle_reply(call, GraphReply(status=429, retry_after=2.0), 0.0)
    sync.publish([state(BOB, A.AVAILABLE)], 0.5)
    assert sync.next_call(1.0) is None
    assert {c.user_id for c in calls_now(sync, 2.0)} == {ALICE, BOB}


@pytest.mark.parametrize("status", [503, 504])
def test_server_errors_without_retry_after_back_off_exponentially_with_jitter(status: int) -> None:
    sync = make()
    known(sync, ALICE)
    sync.publish([state(ALICE, A.AVAILABLE)], 0.0)
    now = 0.0
    waits = []
    for _ in range(4):
        call = sync.next_call(now)
        assert call is not None
        sync.handle_reply(call, GraphReply(status=status), now)
        deadline = sync.next_deadline(now)
        assert deadline is not None
        waits.append(deadline - now)
        now = deadline
    # attempt n waits between d/2 and d, d = 1 s * 2**n
    for attempt, wait in enumerate(waits):
        ceiling = 2.0**attempt
        assert ceiling / 2 <= wait <= ceiling


def test_backoff_stops_growing_at_its_cap() -> None:
    sync = make(backoff_cap=4.0, failed_after=100)
    known(sync, ALICE)
    sync.publish([state(ALICE, A.AVAILABLE)], 0.0)
    now = 0.0
    for _ in range(10):
        call = sync.next_call(now)
        assert call is not None
        sync.handle_failure(call, "timed out", now)
        deadline = sync.next_deadline(now)
        assert deadline is not None
        assert deadline - now <= 4.0
        now = deadline


def test_repeated_failures_report_failed_and_one_success_reports_connected() -> None:
    sync = make(failed_after=3)
    known(sync, ALICE)
    sync.publish([state(ALICE, A.AVAILABLE)], 0.0)
    now = 0.0
    states = []
    for _ in range(3):
        call = sync.next_call(now)
        assert call is not None
        sync.handle_failure(call, "connection refused", now)
        states.append(sync.status(now).state)
        now = sync.next_deadline(now) or now
    assert states == [
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTING,
        ConnectionState.FAILED,
    ]
    assert (
        sync.status(now).last_error
        == f"setPresence Available/Available for {ALICE}: connection refused"
    )
    call = sync.next_call(now)
    assert call is not None
    ok(sync, call, now)
    assert sync.status(now).state is ConnectionState.CONNECTED


def test_a_refused_token_fails_the_bridge_and_retries_after_backoff() -> None:
    sync = make()
    known(sync, ALICE)
    sync.publish([state(ALICE, A.AVAILABLE)], 0.0)
    call = sync.next_call(0.0)
    assert call is not None
    sync.handle_reply(call, GraphReply(status=401, error_code="InvalidAuthenticationToken"), 0.0)
    status = sync.status(0.0)
    assert status.state is ConnectionState.FAILED
    assert status.last_error is not None and "InvalidAuthenticationToken" in status.last_error
    deadline = sync.next_deadline(0.0)
    assert deadline is not None and 0.5 <= deadline <= 1.0
    assert sync.next_call(deadline) is not None


def test_missing_permission_says_which_permission() -> None:
    sync = make()
    known(sync, ALICE)
    sync.publish([state(ALICE, A.AVAILABLE)], 0.0)
    call = sync.next_call(0.0)
    assert call is not None
    sync.handle_reply(call, GraphReply(status=403, error_code="Forbidden"), 0.0)
    assert "Presence.ReadWrite.All" in (sync.status(0.0).last_error or "")


def test_a_state_graph_refuses_is_not_retried_until_it_changes() -> None:
    sync = make()
    known(sync, ALICE)
    sync.publish([state(ALICE, A.AVAILABLE)], 0.0)
    call = sync.next_call(0.0)
    assert call is not None
    sync.handle_reply(
        call,
        GraphReply(status=404, error_code="ResourceNotFound", error_message="no such user"),
        0.0,
    )
    assert sync.next_call(1.0) is None
    assert sync.next_deadline(1.0) is None
    status = sync.status(1.0)
    assert status.state is ConnectionState.CONNECTED
    assert (
        status.last_error
        == f"setPresence Available/Available for {ALICE}: HTTP 404 ResourceNotFound: no such user"
    )
    sync.publish([state(ALICE, A.IN_A_CALL)], 2.0)
    assert settle(sync, 2.0) == [("setPresence", "Busy/InACall", ALICE)]


def test_clearing_a_session_graph_no_longer_has_counts_as_done() -> None:
    sync = make()
    sync.restore_state({ALICE: {"session": "Available/Available", "preferred": None}}, 0.0)
    call = sync.next_call(0.0)
    assert call is not None and call.kind is CallKind.CLEAR_PRESENCE
    sync.handle_reply(call, GraphReply(status=404), 0.0)
    assert sync.next_call(0.0) is None
    assert sync.status(0.0).pending_users == 0


def test_requests_stay_within_the_budget_window() -> None:
    sync = make(budget_limit=3, budget_window=10.0, max_in_flight=10)
    users = [f"{i:08x}-0000-0000-0000-000000000000" for i in range(5)]
    for uid in users:
        known(sync, uid)
    sync.publish([state(uid, A.AVAILABLE) for uid in users], 0.0)
    first = calls_now(sync, 0.0)
    assert len(first) == 3
    for call in first:
        ok(sync, call, 0.1)
    assert sync.next_call(9.9) is None
    assert sync.next_deadline(9.9) == 10.0
    assert len(calls_now(sync, 10.0)) == 2


def test_in_flight_requests_are_bounded() -> None:
    sync = make(max_in_flight=2)
    users = [f"{i:08x}-0000-0000-0000-000000000000" for i in range(4)]
    for uid in users:
        known(sync, uid)
    sync.publish([state(uid, A.AVAILABLE) for uid in users], 0.0)
    first = calls_now(sync, 0.0)
    assert len(first) == 2
    assert sync.next_deadline(0.0) is None  # only a reply frees a slot
    ok(sync, first[0], 0.1)
    assert len(calls_now(sync, 0.1)) == 1


def test_state_changes_go_before_keepalives_and_keepalives_before_polls() -> None:
    sync = make(poll_interval=30.0, max_in_flight=1)
    known(sync, ALICE)
    known(sync, BOB)
    sync.publish([state(ALICE, A.AVAILABLE)], 0.0)
    settle(sync, 0.0)  # Alice's session, then the first poll
    sync.publish([state(BOB, A.IN_A_CALL)], 300.0)
    order = []
    for _ in range(3):
        call = sync.next_call(300.0)
        assert call is not None
        order.append((call.kind.value, call.refresh))
        ok(sync, call, 300.0, body={"value": []})
    assert order == [("setPresence", False), ("setPresence", True), ("getPresencesByUserId", False)]


def test_polls_ask_for_at_most_650_object_ids_per_request_every_interval() -> None:
    sync = make(poll_interval=30.0, max_in_flight=1)
    users = [f"{i:08x}-0000-0000-0000-000000000000" for i in range(1300)]
    sync.restore_state({uid: {"session": None, "preferred": None} for uid in users}, 0.0)
    sync.publish([state("alice@example.com", A.OFFLINE)], 0.0)  # a UPN cannot be polled
    sync.restore_state({"alice@example.com": {"session": None, "preferred": None}}, 0.0)
    polls = []
    for now in (0.0, 0.0, 1.0, 30.0):
        call = sync.next_call(now)
        if call is not None:
            assert call.kind is CallKind.GET_PRESENCES
            polls.append((now, len(call.body["ids"])))  # type: ignore[arg-type]
            ok(sync, call, now, body={"value": []})
    assert polls == [(0.0, 650), (0.0, 650), (30.0, 650)]
    assert sync.next_deadline(30.0) == 30.0  # the round's second batch


def test_a_failed_poll_batch_is_asked_again_after_the_pause() -> None:
    sync = make(poll_interval=30.0)
    known(sync, ALICE)
    call = sync.next_call(0.0)
    assert call is not None and call.kind is CallKind.GET_PRESENCES
    sync.handle_reply(call, GraphReply(status=503, retry_after=3.0), 0.0)
    again = sync.next_call(3.0)
    assert again is not None and again.user_ids == (ALICE,)


def presences(*entries: tuple[str, str, str]) -> dict[str, object]:
    return {"value": [{"id": i, "availability": a, "activity": b} for i, a, b in entries]}


def poll_once(
    sync: PresenceSync, now: float, *entries: tuple[str, str, str]
) -> list[InboundPresence]:
    call = sync.next_call(now)
    assert call is not None and call.kind is CallKind.GET_PRESENCES
    ok(sync, call, now, body=presences(*entries))
    return sync.take_inbound()


def test_a_state_set_in_teams_comes_back_and_its_end_is_reported() -> None:
    sync = make(poll_interval=30.0, inbound_settle=10.0)
    known(sync, ALICE)
    sync.publish([state(ALICE, A.AVAILABLE)], 0.0)
    settle(sync, 0.0)
    sync.take_inbound()
    # first observation: Teams shows what the bridge published
    assert poll_once(sync, 30.0, (ALICE, "Available", "Available")) == [
        InboundPresence(
            user_id=ALICE,
            availability=None,
            teams_availability="Available",
            teams_activity="Available",
        )
    ]
    assert poll_once(sync, 60.0, (ALICE, "DoNotDisturb", "DoNotDisturb")) == [
        InboundPresence(
            user_id=ALICE,
            availability=A.DO_NOT_DISTURB,
            teams_availability="DoNotDisturb",
            teams_activity="DoNotDisturb",
        )
    ]
    assert poll_once(sync, 90.0, (ALICE, "DoNotDisturb", "DoNotDisturb")) == []
    assert [p.availability for p in poll_once(sync, 120.0, (ALICE, "Available", "Available"))] == [
        None
    ]


def test_the_bridges_own_states_are_not_taken_for_teams_states() -> None:
    sync = make(poll_interval=30.0, inbound_settle=0.0)
    known(sync, ALICE)
    sync.publish([state(ALICE, A.IN_A_CALL, manual=A.DO_NOT_DISTURB)], 0.0)
    settle(sync, 0.0)
    sync.take_inbound()
    first = poll_once(sync, 30.0, (ALICE, "DoNotDisturb", "DoNotDisturb"))
    assert [p.availability for p in first] == [None]
    sync.publish([state(ALICE, A.IN_A_CALL)], 40.0)
    settle(sync, 40.0)
    assert poll_once(sync, 60.0, (ALICE, "Busy", "InACall")) == []


def test_a_poll_that_raced_a_write_is_ignored_for_that_user() -> None:
    sync = make(poll_interval=30.0, inbound_settle=40.0)
    known(sync, ALICE)
    poll = sync.next_call(0.0)
    assert poll is not None and poll.kind is CallKind.GET_PRESENCES
    sync.publish([state(ALICE, A.IN_A_CALL)], 0.1)
    write = sync.next_call(0.1)
    assert write is not None
    ok(sync, write, 0.2)
    ok(sync, poll, 0.3, body=presences((ALICE, "Offline", "Offline")))
    assert sync.take_inbound() == []
    # a poll sent within the settle time after the write is ignored too
    assert poll_once(sync, 30.0, (ALICE, "Offline", "Offline")) == []
    assert [p.availability for p in poll_once(sync, 60.0, (ALICE, "Offline", "Offline"))] == [
        A.OFFLINE
    ]


def test_a_malformed_poll_reply_is_reported_and_changes_nothing() -> None:
    sync = make(poll_interval=30.0)
    known(sync, ALICE)
    call = sync.next_call(0.0)
    assert call is not None
    ok(sync, call, 0.0, body={"value": "nope"})
    assert sync.take_inbound() == []
    assert "not a collection of presences" in (sync.status(0.0).last_error or "")


def test_saved_state_spares_the_clears_and_reposts_sessions_at_once() -> None:
    first = make()
    first.publish([state(ALICE, A.IN_A_CALL, manual=A.AWAY), state(BOB, A.OFFLINE)], 0.0)
    settle(first, 0.0)
    saved = first.export_state()
    assert saved == {
        ALICE: {"session": "Busy/InACall", "preferred": "Away/Away"},
        BOB: {"session": None, "preferred": None},
    }
    second = make()
    second.restore_state(saved, 1000.0)
    second.publish([state(ALICE, A.IN_A_CALL, manual=A.AWAY), state(BOB, A.OFFLINE)], 1000.0)
    assert sorted(settle(second, 1000.0)) == [
        ("setPresence", "Busy/InACall", ALICE),
        ("setUserPreferredPresence", "Away/Away", ALICE),
    ]


def test_a_restored_user_sip2uc_no_longer_mentions_is_cleared() -> None:
    sync = make()
    sync.restore_state({ALICE: {"session": "Available/Available", "preferred": "Away/Away"}}, 0.0)
    assert settle(sync, 0.0) == [
        ("clearPresence", None, ALICE),
        ("clearUserPreferredPresence", None, ALICE),
    ]


def test_mapping_overrides_change_what_is_sent() -> None:
    sync = PresenceSync(
        app_id=APP,
        mapping=TeamsMapping.from_overrides({"session": {"ringing": "Busy/InACall"}}),
        timing=SyncTiming(poll_interval=0),
    )
    known(sync, ALICE)
    sync.publish([state(ALICE, A.RINGING)], 0.0)
    assert settle(sync, 0.0) == [("setPresence", "Busy/InACall", ALICE)]


def test_status_counts_users_and_pending_ones() -> None:
    sync = make()
    known(sync, ALICE)
    known(sync, BOB)
    sync.publish([state(ALICE, A.AVAILABLE), state(BOB, A.OFFLINE)], 0.0)
    status = sync.status(0.0)
    assert (status.users, status.pending_users) == (2, 1)


def test_session_pairs_are_graphpairs() -> None:
    assert TeamsMapping().session_pair(A.IN_A_CALL) == GraphPair("Busy", "InACall")


def test_a_write_that_timed_out_is_sent_again_even_if_the_state_flipped_back() -> None:
    sync = make()
    known(sync, ALICE)
    sync.publish([state(ALICE, A.AVAILABLE)], 0.0)
    settle(sync, 0.0)
    sync.publish([state(ALICE, A.OFFLINE)], 1.0)
    clear = sync.next_call(1.0)
    assert clear is not None and clear.kind is CallKind.CLEAR_PRESENCE
    sync.handle_failure(clear, "no answer within 15 s", 16.0)  # Graph may have cleared it
    sync.publish([state(ALICE, A.AVAILABLE)], 16.5)
    deadline = sync.next_deadline(16.5)
    assert deadline is not None
    assert settle(sync, deadline) == [("setPresence", "Available/Available", ALICE)]


def test_a_write_refused_with_429_is_known_not_applied() -> None:
    sync = make()
    known(sync, ALICE)
    sync.publish([state(ALICE, A.AVAILABLE)], 0.0)
    settle(sync, 0.0)
    sync.publish([state(ALICE, A.OFFLINE)], 1.0)
    clear = sync.next_call(1.0)
    assert clear is not None
    sync.handle_reply(clear, GraphReply(status=429, retry_after=1.0), 1.0)
    sync.publish([state(ALICE, A.AVAILABLE)], 1.5)
    assert settle(sync, 2.0) == []  # Graph still has the Available session
