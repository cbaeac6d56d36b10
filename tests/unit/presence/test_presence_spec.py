"""The presence state model, as a specification.

Layers (highest first): MANUAL/EXTERNAL (more recent wins) > CALL > REGISTRATION. Times are
plain seconds; T0 is an arbitrary epoch instant.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sip2uc_control.presence import (
    Activity,
    Availability,
    CallPhase,
    EffectivePresence,
    PresenceChange,
    PresenceEngine,
    PresenceError,
    PresenceRecord,
    Reason,
    Source,
    Transition,
)

T0 = 1_700_000_000.0
ENGINE = PresenceEngine()


def offline(user: str = "alice") -> PresenceRecord:
    return PresenceRecord.new(user, T0)


def registered(now: float = T0) -> PresenceRecord:
    record, _ = ENGINE.on_registered(offline(), now)
    return record


def shown(record: PresenceRecord) -> tuple[Availability, Activity, Source]:
    effective = ENGINE.resolve(record)
    return effective.availability, effective.activity, effective.source


# -- registration --------------------------------------------------------------------------------


def test_a_user_without_bindings_is_offline() -> None:
    assert ENGINE.resolve(offline()) == EffectivePresence(
        availability=Availability.OFFLINE,
        activity=Activity.NONE,
        source=Source.REGISTRATION,
        since=T0,
    )


def test_the_first_binding_makes_the_user_available() -> None:
    record, change = ENGINE.on_registered(offline(), T0 + 5)

    assert change == PresenceChange(
        user="alice",
        previous=EffectivePresence(
            availability=Availability.OFFLINE,
            activity=Activity.NONE,
            source=Source.REGISTRATION,
            since=T0,
        ),
        current=EffectivePresence(
            availability=Availability.AVAILABLE,
            activity=Activity.NONE,
            source=Source.REGISTRATION,
            since=T0 + 5,
        ),
        source=Source.REGISTRATION,
        reason=Reason.REGISTERED,
        at=T0 + 5,
    )
    assert record.registered is True


def test_a_refreshed_or_second_binding_yields_no_event() -> None:
    record, change = ENGINE.on_registered(registered(T0 + 5), T0 + 60)

    assert change is None
    assert ENGINE.resolve(record).since == T0 + 5


def test_the_last_binding_gone_makes_the_user_offline() -> None:
    record, change = ENGINE.on_unregistered(registered(), T0 + 3600)

    assert change is not None
    assert (change.previous.availability, change.current.availability) == (
        Availability.AVAILABLE,
        Availability.OFFLINE,
    )
    assert change.reason is Reason.UNREGISTERED
    assert shown(record) == (Availability.OFFLINE, Activity.NONE, Source.REGISTRATION)


def test_binding_count_drives_registration() -> None:
    record, first = ENGINE.on_bindings(offline(), 2, T0 + 1)
    record, still = ENGINE.on_bindings(record, 1, T0 + 2)
    record, last = ENGINE.on_bindings(record, 0, T0 + 3)

    assert first is not None and first.current.availability is Availability.AVAILABLE
    assert still is None
    assert last is not None and last.current.availability is Availability.OFFLINE


def test_a_negative_binding_count_is_rejected_naming_the_field() -> None:
    with pytest.raises(PresenceError) as caught:
        ENGINE.on_bindings(offline(), -1, T0)
    assert caught.value.field == "count"


# -- calls ---------------------------------------------------------------------------------------


def test_a_connected_call_shows_in_a_call() -> None:
    record, change = ENGINE.on_call_started(registered(), "c1", ringing=False, now=T0 + 10)

    assert change is not None
    assert change.source is Source.CALL and change.reason is Reason.CALL_STARTED
    assert shown(record) == (Availability.IN_A_CALL, Activity.IN_A_CALL, Source.CALL)


def test_ringing_is_reported_as_activity_but_keeps_availability_by_default() -> None:
    record, change = ENGINE.on_call_started(registered(), "c1", ringing=True, now=T0 + 10)

    assert change is not None
    assert change.current.activity is Activity.RINGING
    assert shown(record) == (Availability.AVAILABLE, Activity.RINGING, Source.REGISTRATION)


def test_ringing_shows_in_a_call_when_the_engine_is_configured_so() -> None:
    engine = PresenceEngine(ringing_is_in_a_call=True)
    record, _ = engine.on_call_started(registered(), "c1", ringing=True, now=T0 + 10)

    effective = engine.resolve(record)
    assert (effective.availability, effective.activity, effective.source) == (
        Availability.IN_A_CALL,
        Activity.RINGING,
        Source.CALL,
    )


def test_answering_a_ringing_call_shows_in_a_call() -> None:
    record, _ = ENGINE.on_call_started(registered(), "c1", ringing=True, now=T0 + 10)
    record, change = ENGINE.on_call_answered(record, "c1", T0 + 14)

    assert change is not None and change.reason is Reason.CALL_ANSWERED
    assert shown(record) == (Availability.IN_A_CALL, Activity.IN_A_CALL, Source.CALL)
    assert record.calls[0].phase is CallPhase.CONNECTED
    assert record.calls[0].since == T0 + 14


def test_the_previous_state_is_restored_after_a_call() -> None:
    record, _ = ENGINE.on_call_started(registered(), "c1", ringing=False, now=T0 + 10)
    record, change = ENGINE.on_call_ended(record, "c1", T0 + 70)

    assert change is not None and change.reason is Reason.CALL_ENDED
    assert shown(record) == (Availability.AVAILABLE, Activity.NONE, Source.REGISTRATION)
    assert record.calls == ()


def test_a_call_outliving_the_registration_ends_in_offline() -> None:
    record, _ = ENGINE.on_call_started(registered(), "c1", ringing=False, now=T0 + 10)
    record, during = ENGINE.on_unregistered(record, T0 + 20)
    record, after = ENGINE.on_call_ended(record, "c1", T0 + 30)

    assert during is None
    assert after is not None and after.current.availability is Availability.OFFLINE


def test_in_a_call_lasts_until_the_last_of_several_calls_ends() -> None:
    record, _ = ENGINE.on_call_started(registered(), "c1", ringing=False, now=T0 + 10)
    record, second = ENGINE.on_call_started(record, "c2", ringing=False, now=T0 + 20)
    record, first_ends = ENGINE.on_call_ended(record, "c1", T0 + 30)
    record, last_ends = ENGINE.on_call_ended(record, "c2", T0 + 40)

    assert second is None
    assert first_ends is None
    assert last_ends is not None
    assert last_ends.current.availability is Availability.AVAILABLE


def test_a_waiting_call_ringing_during_a_call_changes_nothing_visible() -> None:
    record, _ = ENGINE.on_call_started(registered(), "c1", ringing=False, now=T0 + 10)
    record, change = ENGINE.on_call_started(record, "c2", ringing=True, now=T0 + 20)

    assert change is None
    assert [(c.call_id, c.phase) for c in record.calls] == [
        ("c1", CallPhase.CONNECTED),
        ("c2", CallPhase.RINGING),
    ]


def test_a_repeated_start_does_not_undo_an_answer() -> None:
    record, _ = ENGINE.on_call_started(registered(), "c1", ringing=True, now=T0 + 10)
    record, _ = ENGINE.on_call_answered(record, "c1", T0 + 12)
    record, change = ENGINE.on_call_started(record, "c1", ringing=True, now=T0 + 13)

    assert change is None
    assert record.calls[0].phase is CallPhase.CONNECTED


def test_ending_an_unknown_call_changes_nothing() -> None:
    record = registered()

    assert ENGINE.on_call_ended(record, "nope", T0 + 1) == (record, None)


def test_answering_an_unknown_call_adds_it_as_connected() -> None:
    record, change = ENGINE.on_call_answered(registered(), "c9", T0 + 1)

    assert change is not None
    assert [(c.call_id, c.phase) for c in record.calls] == [("c9", CallPhase.CONNECTED)]


def test_an_empty_call_id_is_rejected_naming_the_field() -> None:
    with pytest.raises(PresenceError) as caught:
        ENGINE.on_call_started(registered(), "", ringing=False, now=T0)
    assert caught.value.field == "call_id"


# -- manual state --------------------------------------------------------------------------------


def test_a_manual_state_overrides_registration() -> None:
    _, change = ENGINE.set_manual(
        registered(), Availability.DO_NOT_DISTURB, T0 + 5, note="focus time"
    )

    assert change is not None
    assert change.source is Source.MANUAL and change.reason is Reason.MANUAL_SET
    assert change.current == EffectivePresence(
        availability=Availability.DO_NOT_DISTURB,
        activity=Activity.NONE,
        source=Source.MANUAL,
        since=T0 + 5,
        note="focus time",
    )


def test_dnd_holds_during_a_call_while_the_activity_says_in_a_call() -> None:
    record, _ = ENGINE.set_manual(registered(), Availability.DO_NOT_DISTURB, T0 + 5)
    record, change = ENGINE.on_call_started(record, "c1", ringing=False, now=T0 + 10)

    assert change is not None
    assert (change.previous.activity, change.current.activity) == (
        Activity.NONE,
        Activity.IN_A_CALL,
    )
    assert shown(record) == (Availability.DO_NOT_DISTURB, Activity.IN_A_CALL, Source.MANUAL)


def test_the_manual_state_is_restored_after_a_call() -> None:
    record, _ = ENGINE.set_manual(registered(), Availability.AWAY, T0 + 5)
    record, _ = ENGINE.on_call_started(record, "c1", ringing=False, now=T0 + 10)
    record, _ = ENGINE.on_call_ended(record, "c1", T0 + 20)

    assert shown(record) == (Availability.AWAY, Activity.NONE, Source.MANUAL)


def test_a_manual_state_holds_over_losing_the_registration() -> None:
    record, _ = ENGINE.set_manual(registered(), Availability.BE_RIGHT_BACK, T0 + 5)
    record, change = ENGINE.on_unregistered(record, T0 + 10)

    assert change is None
    assert shown(record) == (Availability.BE_RIGHT_BACK, Activity.NONE, Source.MANUAL)


def test_a_manual_state_set_during_a_call_hides_in_a_call() -> None:
    record, _ = ENGINE.on_call_started(registered(), "c1", ringing=False, now=T0 + 10)
    record, change = ENGINE.set_manual(record, Availability.BUSY, T0 + 15)

    assert change is not None
    assert shown(record) == (Availability.BUSY, Activity.IN_A_CALL, Source.MANUAL)


def test_appear_offline_is_a_valid_manual_state() -> None:
    record, change = ENGINE.set_manual(registered(), Availability.OFFLINE, T0 + 5)

    assert change is not None
    assert shown(record) == (Availability.OFFLINE, Activity.NONE, Source.MANUAL)


def test_manual_available_is_a_valid_override_hiding_a_call() -> None:
    record, _ = ENGINE.set_manual(registered(), Availability.AVAILABLE, T0 + 5)
    record, change = ENGINE.on_call_started(record, "c1", ringing=False, now=T0 + 10)

    assert change is not None  # the activity changed; availability stays as set
    assert shown(record) == (Availability.AVAILABLE, Activity.IN_A_CALL, Source.MANUAL)


def test_in_a_call_cannot_be_set_manually() -> None:
    with pytest.raises(PresenceError) as caught:
        ENGINE.set_manual(registered(), Availability.IN_A_CALL, T0 + 5)
    assert caught.value.field == "availability"


def test_an_expiry_not_after_now_is_rejected() -> None:
    with pytest.raises(PresenceError) as caught:
        ENGINE.set_manual(registered(), Availability.AWAY, T0 + 5, expires_at=T0 + 5)
    assert caught.value.field == "expires_at"


def test_an_overlong_note_is_rejected() -> None:
    with pytest.raises(PresenceError) as caught:
        ENGINE.set_manual(registered(), Availability.AWAY, T0 + 5, note="x" * 281)
    assert caught.value.field == "note"


def test_clearing_the_manual_state_shows_the_lower_layers_again() -> None:
    record, _ = ENGINE.set_manual(registered(), Availability.DO_NOT_DISTURB, T0 + 5)
    record, _ = ENGINE.on_call_started(record, "c1", ringing=False, now=T0 + 10)
    record, change = ENGINE.clear(record, Source.MANUAL, T0 + 20)

    assert change is not None and change.reason is Reason.MANUAL_CLEARED
    assert shown(record) == (Availability.IN_A_CALL, Activity.IN_A_CALL, Source.CALL)


def test_clearing_when_nothing_is_set_yields_no_event() -> None:
    record = registered()

    assert ENGINE.clear(record, Source.MANUAL, T0 + 1) == (record, None)


def test_only_override_layers_can_be_cleared() -> None:
    with pytest.raises(PresenceError) as caught:
        ENGINE.clear(registered(), Source.CALL, T0 + 1)
    assert caught.value.field == "source"


def test_setting_the_same_manual_state_again_yields_no_event_but_refreshes_it() -> None:
    record, _ = ENGINE.set_manual(registered(), Availability.AWAY, T0 + 5)
    record, change = ENGINE.set_manual(record, Availability.AWAY, T0 + 50)

    assert change is None
    assert record.manual is not None and record.manual.set_at == T0 + 50
    assert ENGINE.resolve(record).since == T0 + 5


# -- expiry --------------------------------------------------------------------------------------


def test_next_deadline_is_the_earliest_override_expiry() -> None:
    record, _ = ENGINE.set_manual(registered(), Availability.AWAY, T0, expires_at=T0 + 600)
    record, _ = ENGINE.set_external(record, Availability.BUSY, T0 + 1, expires_at=T0 + 300)

    assert ENGINE.next_deadline(record) == T0 + 300


def test_without_expiring_overrides_there_is_no_deadline() -> None:
    record, _ = ENGINE.set_manual(registered(), Availability.AWAY, T0)

    assert ENGINE.next_deadline(record) is None


def test_a_manual_state_lapses_at_its_expiry() -> None:
    record, _ = ENGINE.set_manual(
        registered(), Availability.DO_NOT_DISTURB, T0, expires_at=T0 + 3600
    )
    early, nothing = ENGINE.expire(record, T0 + 3599)
    assert nothing is None and early == record

    record, change = ENGINE.expire(record, T0 + 3600)

    assert change is not None
    assert change.reason is Reason.MANUAL_EXPIRED and change.source is Source.MANUAL
    assert shown(record) == (Availability.AVAILABLE, Activity.NONE, Source.REGISTRATION)
    assert ENGINE.next_deadline(record) is None


def test_an_expired_manual_state_lapsing_shows_the_call_underneath() -> None:
    record, _ = ENGINE.set_manual(registered(), Availability.AWAY, T0, expires_at=T0 + 60)
    record, _ = ENGINE.on_call_started(record, "c1", ringing=False, now=T0 + 30)
    record, change = ENGINE.expire(record, T0 + 60)

    assert change is not None
    assert shown(record) == (Availability.IN_A_CALL, Activity.IN_A_CALL, Source.CALL)


def test_a_late_timer_cannot_resurrect_a_lapsed_state() -> None:
    record, _ = ENGINE.set_manual(registered(), Availability.AWAY, T0, expires_at=T0 + 60)
    record, change = ENGINE.on_call_started(record, "c1", ringing=False, now=T0 + 90)

    assert change is not None
    assert change.previous.availability is Availability.AWAY
    assert shown(record) == (Availability.IN_A_CALL, Activity.IN_A_CALL, Source.CALL)


def test_a_lapse_noticed_by_a_no_op_input_is_reported_as_the_expiry() -> None:
    record, _ = ENGINE.set_manual(registered(), Availability.AWAY, T0, expires_at=T0 + 60)
    record, change = ENGINE.on_registered(record, T0 + 90)

    assert change is not None and change.reason is Reason.MANUAL_EXPIRED
    assert shown(record) == (Availability.AVAILABLE, Activity.NONE, Source.REGISTRATION)


def test_expiring_a_hidden_override_yields_no_event() -> None:
    record, _ = ENGINE.set_external(registered(), Availability.BUSY, T0, expires_at=T0 + 60)
    record, _ = ENGINE.set_manual(record, Availability.AWAY, T0 + 10)
    record, change = ENGINE.expire(record, T0 + 60)

    assert change is None
    assert record.external is None
    assert shown(record) == (Availability.AWAY, Activity.NONE, Source.MANUAL)


# -- external state and precedence -------------------------------------------------------------


def test_an_external_state_overrides_calls_and_registration() -> None:
    record, _ = ENGINE.on_call_started(registered(), "c1", ringing=False, now=T0 + 1)
    record, change = ENGINE.set_external(record, Availability.BE_RIGHT_BACK, T0 + 2)

    assert change is not None
    assert change.source is Source.EXTERNAL and change.reason is Reason.EXTERNAL_SET
    assert shown(record) == (Availability.BE_RIGHT_BACK, Activity.IN_A_CALL, Source.EXTERNAL)


def test_an_external_source_may_report_in_a_call_elsewhere() -> None:
    record, _ = ENGINE.set_external(registered(), Availability.IN_A_CALL, T0 + 2)

    assert shown(record) == (Availability.IN_A_CALL, Activity.NONE, Source.EXTERNAL)


def test_the_more_recent_of_manual_and_external_wins() -> None:
    record, _ = ENGINE.set_manual(registered(), Availability.DO_NOT_DISTURB, T0 + 1)
    record, external_later = ENGINE.set_external(record, Availability.BUSY, T0 + 2)
    record, manual_later = ENGINE.set_manual(record, Availability.AWAY, T0 + 3)

    assert external_later is not None
    assert external_later.current.availability is Availability.BUSY
    assert manual_later is not None
    assert shown(record) == (Availability.AWAY, Activity.NONE, Source.MANUAL)


def test_manual_wins_a_tie_with_external() -> None:
    record, _ = ENGINE.set_external(registered(), Availability.BUSY, T0 + 1)
    record, _ = ENGINE.set_manual(record, Availability.AWAY, T0 + 1)

    assert shown(record) == (Availability.AWAY, Activity.NONE, Source.MANUAL)


def test_clearing_the_winning_override_reveals_the_other() -> None:
    record, _ = ENGINE.set_external(registered(), Availability.BUSY, T0 + 1)
    record, _ = ENGINE.set_manual(record, Availability.AWAY, T0 + 2)
    record, change = ENGINE.clear(record, Source.MANUAL, T0 + 3)

    assert change is not None
    assert shown(record) == (Availability.BUSY, Activity.NONE, Source.EXTERNAL)


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ((), (Availability.OFFLINE, Source.REGISTRATION)),
        (("registered",), (Availability.AVAILABLE, Source.REGISTRATION)),
        (("registered", "call"), (Availability.IN_A_CALL, Source.CALL)),
        (("call",), (Availability.IN_A_CALL, Source.CALL)),
        (("registered", "call", "manual"), (Availability.DO_NOT_DISTURB, Source.MANUAL)),
        (("registered", "call", "external"), (Availability.AWAY, Source.EXTERNAL)),
        (("manual", "external"), (Availability.AWAY, Source.EXTERNAL)),
        (("external", "manual"), (Availability.DO_NOT_DISTURB, Source.MANUAL)),
    ],
)
def test_precedence_table(layers: tuple[str, ...], expected: tuple[Availability, Source]) -> None:
    record = offline()
    for step, layer in enumerate(layers, start=1):
        now = T0 + step
        if layer == "registered":
            record, _ = ENGINE.on_registered(record, now)
        elif layer == "call":
            record, _ = ENGINE.on_call_started(record, "c1", ringing=False, now=now)
        elif layer == "manual":
            record, _ = ENGINE.set_manual(record, Availability.DO_NOT_DISTURB, now)
        else:
            record, _ = ENGINE.set_external(record, Availability.AWAY, now)

    effective = ENGINE.resolve(record)
    assert (effective.availability, effective.source) == expected


# -- no spurious events --------------------------------------------------------------------------


def test_updates_below_an_override_yield_no_events_but_update_the_record() -> None:
    record, _ = ENGINE.set_manual(offline(), Availability.AWAY, T0 + 1)
    record, registering = ENGINE.on_registered(record, T0 + 2)
    record, unregistering = ENGINE.on_unregistered(record, T0 + 3)

    assert registering is None and unregistering is None
    assert record.registered is False


def test_every_event_reports_a_real_difference() -> None:
    record = offline()
    changes: list[PresenceChange | None] = []
    steps: list[Callable[[PresenceRecord], Transition]] = [
        lambda r: ENGINE.on_registered(r, T0 + 1),
        lambda r: ENGINE.on_registered(r, T0 + 2),
        lambda r: ENGINE.on_call_started(r, "c1", ringing=True, now=T0 + 3),
        lambda r: ENGINE.on_call_started(r, "c1", ringing=True, now=T0 + 4),
        lambda r: ENGINE.on_call_answered(r, "c1", T0 + 5),
        lambda r: ENGINE.on_call_answered(r, "c1", T0 + 6),
        lambda r: ENGINE.on_call_ended(r, "c1", T0 + 7),
        lambda r: ENGINE.on_call_ended(r, "c1", T0 + 8),
    ]
    for step in steps:
        record, change = step(record)
        changes.append(change)

    assert [c is not None for c in changes] == [True, False, True, False, True, False, True, False]
    for change in changes:
        if change is not None:
            assert not change.previous.same_state(change.current)


# -- storage -------------------------------------------------------------------------------------


def test_a_record_round_trips_through_json() -> None:
    record, _ = ENGINE.set_manual(registered(), Availability.AWAY, T0, expires_at=T0 + 60)
    record, _ = ENGINE.set_external(record, Availability.BUSY, T0 + 1, note="meeting")
    record, _ = ENGINE.on_call_started(record, "c1", ringing=True, now=T0 + 2)

    stored = json.loads(json.dumps(record.to_dict()))

    assert PresenceRecord.from_dict(stored) == record


def test_a_change_round_trips_through_json() -> None:
    _, change = ENGINE.set_manual(registered(), Availability.AWAY, T0 + 1, note="lunch")
    assert change is not None

    assert PresenceChange.from_dict(json.loads(json.dumps(change.to_dict()))) == change


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("user"), "user"),
        (lambda d: d.update(registered="yes"), "registered"),
        (lambda d: d.update(changed_at=float("nan")), "changed_at"),
        (lambda d: d.update(changed_at=True), "changed_at"),
        (lambda d: d.update(calls={}), "calls"),
        (lambda d: d.update(calls=[{"call_id": "c", "phase": "on-hold", "since": 1}]), "phase"),
        (lambda d: d.update(calls=["c1"]), "call_id"),
        (
            lambda d: d.update(
                calls=[
                    {"call_id": "c", "phase": "ringing", "since": 1},
                    {"call_id": "c", "phase": "connected", "since": 2},
                ]
            ),
            "calls",
        ),
        (lambda d: d.update(manual={"availability": "gone", "set_at": 1}), "availability"),
        (lambda d: d.update(external={"availability": "away", "set_at": "x"}), "set_at"),
        (lambda d: d.update(manual={"availability": "away", "set_at": 1, "note": 5}), "note"),
    ],
)
def test_corrupt_stored_records_raise_presence_error_naming_the_field(
    mutate: Callable[[dict[str, Any]], object], field: str
) -> None:
    data = registered().to_dict()
    mutate(data)

    with pytest.raises(PresenceError) as caught:
        PresenceRecord.from_dict(data)
    assert caught.value.field == field
