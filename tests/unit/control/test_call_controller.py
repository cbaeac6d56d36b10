"""The call controller on its own (docs/calls.md): what it tells which sidecar, and what presence
shows, driven by sidecar requests and a clock the test moves. No server, no database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from sip2uc_control.calls import (
    AnswerLeg,
    CallState,
    CreateLeg,
    EndLeg,
    InjectDtmf,
    InviteInput,
    LegReport,
    LegState,
    UpdateMedia,
)
from sip2uc_control.domain import TrunkDevice, User, UserSettings
from sip2uc_control.errors import FailedPrecondition
from sip2uc_control.presence import Activity, Availability
from sip2uc_control.settings import ServerSettings
from sip2uc_control.trunks import Trunk

from .in_memory import DOMAIN, CallLayer, Clock, Sidecars, forwarding, make_user, media


@pytest.fixture
async def layer() -> AsyncIterator[CallLayer]:
    calls = CallLayer()
    yield calls
    await calls.presence.drain()


def creates(sent: list[tuple[str, object]]) -> list[tuple[str, CreateLeg]]:
    return [(s, c) for s, c in sent if isinstance(c, CreateLeg)]


async def report(
    layer: CallLayer, call_id: str, leg_id: str, state: LegState | None, **fields: Any
) -> None:
    """A sidecar's report about one leg."""
    await layer.controller.report_leg(
        LegReport(sidecar="", call_id=call_id, leg_id=leg_id, state=state, **fields)
    )


def registered(layer: CallLayer, *exts: str, sidecar: str = "s1") -> list[User]:
    """Users `exts`, each with one handset at port 41000 + its position."""
    users = []
    for i, ext in enumerate(exts):
        user = layer.add_user(make_user(ext))
        layer.register(user, 41000 + i, sidecar=sidecar)
        users.append(user)
    return users


async def do_not_disturb(layer: CallLayer, user: User) -> None:
    """`user` sets do-not-disturb (through the API, say)."""
    engine = layer.presence.engine
    await layer.presence.update(
        user.id,
        lambda r, now: engine.set_manual(
            r, Availability.DO_NOT_DISTURB, now, expires_at=None, note=None
        ),
    )


# --- forking ------------------------------------------------------------------------------------


async def test_a_call_forks_to_every_binding_of_the_callee_on_whichever_sidecar(
    layer: CallLayer,
) -> None:
    alice = layer.add_user(make_user("201"))
    bob = layer.add_user(make_user("202"))
    layer.register(alice, 41001)
    layer.register(bob, 42001, sidecar="s1")
    layer.register(bob, 42002, sidecar="s2")

    outcome = await layer.invite(alice, "202", offer=media(30000))

    assert (outcome.disposition, outcome.call_id != "") == ("routing", True)
    forks = creates(layer.sidecars.take())
    assert [(s, c.port) for s, c in forks] == [("s1", 42001), ("s2", 42002)]
    assert [c.bridge_leg_id for _, c in forks] == ["A", ""]  # bridged only on the caller's sidecar
    assert {c.peer_media for _, c in forks} == {media(30000)}
    assert {(c.from_uri, c.to_uri) for _, c in forks} == {(alice.sip_uri, bob.sip_uri)}


async def test_a_binding_on_a_disconnected_sidecar_is_not_rung(layer: CallLayer) -> None:
    alice, bob = registered(layer, "201", "202")
    layer.register(bob, 42002, sidecar="gone")

    await layer.invite(alice, "202")

    assert [(s, c.port) for s, c in creates(layer.sidecars.take())] == [("s1", 41001)]


async def test_a_callee_whose_every_handset_is_unreachable_gives_480(layer: CallLayer) -> None:
    alice = layer.add_user(make_user("201"))
    bob = layer.add_user(make_user("202"))
    layer.register(alice, 41001)
    layer.register(bob, 42001, sidecar="gone")

    outcome = await layer.invite(alice, "202")

    assert (outcome.disposition, outcome.status) == ("reject", 480)
    assert layer.sidecars.take() == []
    assert layer.controller.live() == []
    assert [c.final_status for c in layer.history.calls] == [480]


async def test_ringing_is_relayed_to_the_caller_as_180_and_early_media_as_183(
    layer: CallLayer,
) -> None:
    alice, _bob = registered(layer, "201", "202")
    call_id = (await layer.invite(alice, "202")).call_id
    (_, fork), *_ = creates(layer.sidecars.take())

    await report(layer, call_id, fork.leg_id, LegState.RINGING, status=180)
    await report(layer, call_id, fork.leg_id, LegState.EARLY_MEDIA, status=183, media=media(32000))

    assert layer.sidecars.take() == [
        ("s1", AnswerLeg(call_id, "A", 180, None, fork.leg_id)),
        ("s1", AnswerLeg(call_id, "A", 183, media(32000), fork.leg_id)),
    ]


async def test_the_first_answer_wins_and_every_other_fork_is_cancelled(layer: CallLayer) -> None:
    alice = layer.add_user(make_user("201"))
    bob = layer.add_user(make_user("202"))
    layer.register(alice, 41001)
    for port in (42001, 42002, 42003):
        layer.register(bob, port)
    call_id = (await layer.invite(alice, "202")).call_id
    first, second, third = (c.leg_id for _, c in creates(layer.sidecars.take()))

    await report(layer, call_id, second, LegState.ANSWERED, status=200, media=media(32000))

    assert layer.sidecars.take() == [
        ("s1", EndLeg(call_id, first, 0, "answered elsewhere")),
        ("s1", EndLeg(call_id, third, 0, "answered elsewhere")),
        ("s1", AnswerLeg(call_id, "A", 200, media(32000), second)),
    ]
    call = layer.controller.get(call_id)
    assert call is not None
    assert (call.state, call.winner, call.answer_time) == (
        CallState.CONNECTED,
        second,
        layer.clock(),
    )


async def test_a_fork_answering_after_the_winner_is_ended(layer: CallLayer) -> None:
    alice = layer.add_user(make_user("201"))
    bob = layer.add_user(make_user("202"))
    layer.register(alice, 41001)
    layer.register(bob, 42001)
    layer.register(bob, 42002)
    call_id = (await layer.invite(alice, "202")).call_id
    first, second = (c.leg_id for _, c in creates(layer.sidecars.take()))
    await report(layer, call_id, first, LegState.ANSWERED, media=media(32000))
    layer.sidecars.take()

    await report(layer, call_id, second, LegState.ANSWERED, media=media(33000))

    assert layer.sidecars.take() == []  # already told to end when the first answered
    assert layer.controller.get(call_id).winner == first


async def test_when_every_fork_fails_the_caller_gets_the_best_final_status(
    layer: CallLayer,
) -> None:
    alice = layer.add_user(make_user("201"))
    bob = layer.add_user(make_user("202"))
    layer.register(alice, 41001)
    layer.register(bob, 42001)
    layer.register(bob, 42002)
    call_id = (await layer.invite(alice, "202")).call_id
    first, second = (c.leg_id for _, c in creates(layer.sidecars.take()))

    await report(layer, call_id, first, LegState.FAILED, status=408)
    assert layer.sidecars.take() == []  # one fork still rings
    await report(layer, call_id, second, LegState.FAILED, status=486)

    assert layer.sidecars.take() == [("s1", EndLeg(call_id, "A", 486, "no fork answered (486)"))]
    assert [(c.final_status, c.end_reason) for c in layer.history.calls] == [
        (486, "no fork answered (486)")
    ]


# --- busy, DND, forwarding ----------------------------------------------------------------------


async def test_a_callee_in_dnd_is_busy_486_and_nothing_rings(layer: CallLayer) -> None:
    alice, bob = registered(layer, "201", "202")
    await do_not_disturb(layer, bob)

    outcome = await layer.invite(alice, "202")

    assert (outcome.disposition, outcome.status) == ("reject", 486)
    assert layer.sidecars.take() == []


async def test_dnd_with_busy_forwarding_rings_the_forward_target(layer: CallLayer) -> None:
    alice, carol = registered(layer, "201", "203")
    bob = layer.add_user(make_user("202", settings=UserSettings(forward_busy=forwarding("203"))))
    layer.register(bob, 42001)
    await do_not_disturb(layer, bob)

    await layer.invite(alice, "202")

    assert [(c.port, c.to_uri) for _, c in creates(layer.sidecars.take())] == [
        (41001, carol.sip_uri)
    ]


async def test_forward_always_rings_the_target_instead_of_the_user(layer: CallLayer) -> None:
    alice, carol = registered(layer, "201", "203")
    bob = layer.add_user(make_user("202", settings=UserSettings(forward_always=forwarding("203"))))
    layer.register(bob, 42001)

    call_id = (await layer.invite(alice, "202")).call_id

    assert [c.port for _, c in creates(layer.sidecars.take())] == [41001]
    call = layer.controller.get(call_id)
    assert call is not None
    assert (call.callee_user, call.forward_chain) == (carol.id, (bob.id, carol.id))


async def test_a_callee_without_a_handset_gives_480_or_goes_to_the_no_answer_target(
    layer: CallLayer,
) -> None:
    alice, carol = registered(layer, "201", "203")
    layer.add_user(make_user("202"))
    layer.add_user(make_user("204", settings=UserSettings(forward_no_answer=forwarding("203"))))

    offline = await layer.invite(alice, "202", leg_id="A1")
    forwarded = await layer.invite(alice, "204", leg_id="A2")

    assert (offline.disposition, offline.status) == ("reject", 480)
    assert forwarded.disposition == "routing"
    assert [c.to_uri for _, c in creates(layer.sidecars.take())] == [carol.sip_uri]


async def test_forwarding_that_loops_back_is_rejected_482(layer: CallLayer) -> None:
    (alice,) = registered(layer, "201")
    bob = layer.add_user(make_user("202", settings=UserSettings(forward_always=forwarding("203"))))
    carol = layer.add_user(
        make_user("203", settings=UserSettings(forward_always=forwarding("202")))
    )
    layer.register(bob, 42001)
    layer.register(carol, 43001)

    outcome = await layer.invite(alice, "202")

    assert (outcome.disposition, outcome.status) == ("reject", 482)
    assert layer.sidecars.take() == []


async def test_every_fork_busy_goes_to_the_busy_forward_target(layer: CallLayer) -> None:
    alice, carol = registered(layer, "201", "203")
    bob = layer.add_user(make_user("202", settings=UserSettings(forward_busy=forwarding("203"))))
    layer.register(bob, 42001)
    call_id = (await layer.invite(alice, "202")).call_id
    ((_, fork),) = creates(layer.sidecars.take())

    await report(layer, call_id, fork.leg_id, LegState.FAILED, status=486)

    assert [(c.port, c.to_uri) for _, c in creates(layer.sidecars.take())] == [
        (41001, carol.sip_uri)
    ]
    assert layer.presence_of(bob).activity is Activity.NONE  # no longer rung
    assert layer.presence_of(carol).activity is Activity.RINGING


async def test_a_code_dialled_on_the_handset_sets_dnd_and_answers_with_a_tone(
    layer: CallLayer,
) -> None:
    (alice,) = registered(layer, "201")

    outcome = await layer.invite(alice, "*30")

    assert (outcome.disposition, outcome.tone_ok) == ("feedback", True)
    assert layer.presence_of(alice).availability is Availability.DO_NOT_DISTURB
    assert [c.change.current.availability for c in layer.log.changes][-1] is (
        Availability.DO_NOT_DISTURB  # durable before the tone
    )
    assert layer.sidecars.take() == []


async def test_a_forwarding_code_stores_the_users_forwarding(layer: CallLayer) -> None:
    (alice,) = registered(layer, "201")

    outcome = await layer.invite(alice, "*72203")

    assert (outcome.disposition, outcome.tone_ok) == ("feedback", True)
    assert layer.saved_settings == [(alice.id, UserSettings(forward_always=forwarding("203")))]


async def test_wrong_password_and_unknown_user_look_alike_and_ring_nothing(
    layer: CallLayer,
) -> None:
    alice, _bob = registered(layer, "201", "202")
    stranger = make_user("777")  # not in the directory

    wrong = await layer.invite(alice, "202", password="not-it")
    unknown = await layer.invite(stranger, "202")

    assert wrong == unknown
    assert (wrong.disposition, wrong.status) == ("unauthorized", 407)
    assert layer.sidecars.take() == []


async def test_a_trunk_device_is_identified_by_its_source_without_credentials(
    layer: CallLayer,
) -> None:
    pbx = layer.add_user(
        make_user("301", trunk=TrunkDevice(source_network="10.1.0.0/24", request_uri_user="301"))
    )
    (bob,) = registered(layer, "202")

    def from_trunk(host: str) -> InviteInput:
        return InviteInput(
            sidecar="s1",
            leg_id=f"T-{host}",
            credentials=None,
            source_host=host,
            source_port=5060,
            request_uri=f"sip:202@{DOMAIN}",
            from_uri=f"sip:301@{host}",
            from_display_name="",
            to_uri=f"sip:202@{DOMAIN}",
            offer=media(30000),
        )

    inside = await layer.controller.invite(from_trunk("10.1.0.9"))
    outside = await layer.controller.invite(from_trunk("10.2.0.9"))

    assert inside.disposition == "routing"
    assert (outside.disposition, outside.status) == ("unauthorized", 407)
    assert [(c.from_uri, c.to_uri) for _, c in creates(layer.sidecars.take())] == [
        (pbx.sip_uri, bob.sip_uri)
    ]


async def test_the_trunk_sidecar_missing_gives_503_with_retry_after() -> None:
    layer = CallLayer(settings=ServerSettings(default_region="DE"))
    layer.trunk_records.by_id["up"] = Trunk(id="up", address="192.0.2.10", sidecar="trunk")
    (alice,) = registered(layer, "201")

    outcome = await layer.invite(alice, "+4989123456")

    assert (outcome.disposition, outcome.status, outcome.retry_after) == ("reject", 503, 30)
    await layer.presence.drain()


# --- presence -----------------------------------------------------------------------------------


async def test_presence_follows_the_call_and_returns_after_it(layer: CallLayer) -> None:
    alice, bob = registered(layer, "201", "202")
    call_id = (await layer.invite(alice, "202")).call_id
    ((_, fork),) = creates(layer.sidecars.take())

    seen = [(layer.presence_of(alice).availability, layer.presence_of(bob).activity)]
    await report(layer, call_id, fork.leg_id, LegState.ANSWERED, media=media(32000))
    seen.append((layer.presence_of(alice).availability, layer.presence_of(bob).activity))
    await layer.controller.bye("s1", "A", "bye")
    seen.append((layer.presence_of(alice).availability, layer.presence_of(bob).activity))

    assert seen == [
        (Availability.AVAILABLE, Activity.RINGING),  # nothing rang back yet
        (Availability.IN_A_CALL, Activity.IN_A_CALL),
        (Availability.AVAILABLE, Activity.NONE),
    ]
    assert layer.presence_of(bob).availability is Availability.AVAILABLE


async def test_the_caller_is_in_a_call_once_the_callee_rings(layer: CallLayer) -> None:
    alice, _bob = registered(layer, "201", "202")
    call_id = (await layer.invite(alice, "202")).call_id
    ((_, fork),) = creates(layer.sidecars.take())

    await report(layer, call_id, fork.leg_id, LegState.RINGING, status=180)

    assert layer.presence_of(alice).availability is Availability.IN_A_CALL


async def changes_of(layer: CallLayer, user: User) -> list[tuple[Availability, Activity]]:
    await layer.presence.drain()
    return [
        (c.change.current.availability, c.change.current.activity)
        for c in layer.log.changes
        if c.change.user == user.id
    ]


async def test_a_call_refused_before_anything_rang_publishes_no_change_of_the_caller(
    layer: CallLayer,
) -> None:
    alice, _bob = registered(layer, "201", "202")
    carol = layer.add_user(make_user("203"))  # no handset: 480
    layer.register(carol, 43001, sidecar="gone")
    before = await changes_of(layer, alice)

    not_found = await layer.invite(alice, "999")
    unavailable = await layer.invite(alice, "203", leg_id="B")

    assert (not_found.status, unavailable.status) == (404, 480)
    assert await changes_of(layer, alice) == before


async def test_a_callee_refusing_before_ringing_publishes_no_change_of_the_caller(
    layer: CallLayer,
) -> None:
    alice, _bob = registered(layer, "201", "202")
    before = await changes_of(layer, alice)
    call_id = (await layer.invite(alice, "202")).call_id
    ((_, fork),) = creates(layer.sidecars.take())

    await report(layer, call_id, fork.leg_id, LegState.FAILED, status=480)

    assert await changes_of(layer, alice) == before


async def test_a_user_in_a_call_without_call_waiting_is_busy(layer: CallLayer) -> None:
    alice, carol = registered(layer, "201", "203")
    bob = layer.add_user(make_user("202", settings=UserSettings(call_waiting=False)))
    layer.register(bob, 42001)
    call_id = (await layer.invite(alice, "202")).call_id
    ((_, fork),) = creates(layer.sidecars.take())
    await report(layer, call_id, fork.leg_id, LegState.ANSWERED, media=media(32000))

    second = await layer.invite(carol, "202", leg_id="C")

    assert (second.disposition, second.status) == ("reject", 486)


# --- endings ------------------------------------------------------------------------------------


async def test_cancel_before_the_answer_ends_every_fork_and_records_487(layer: CallLayer) -> None:
    alice, bob = registered(layer, "201", "202")
    layer.register(bob, 42002)
    call_id = (await layer.invite(alice, "202")).call_id
    forks = [c.leg_id for _, c in creates(layer.sidecars.take())]

    await layer.controller.cancel("s1", "A")

    assert layer.sidecars.take() == [
        ("s1", EndLeg(call_id, leg_id, 0, "caller cancelled")) for leg_id in forks
    ]
    assert [(c.final_status, c.end_reason) for c in layer.history.calls] == [
        (487, "caller cancelled")
    ]
    assert layer.presence_of(bob).activity is Activity.NONE


async def test_a_hang_up_ends_the_other_party_and_goes_to_the_history(layer: CallLayer) -> None:
    alice, _bob = registered(layer, "201", "202")
    call_id = (await layer.invite(alice, "202")).call_id
    ((_, fork),) = creates(layer.sidecars.take())
    await report(layer, call_id, fork.leg_id, LegState.ANSWERED, media=media(32000))
    layer.sidecars.take()
    layer.clock.advance(42)

    await layer.controller.bye("s1", fork.leg_id, "bye")

    assert layer.sidecars.take() == [("s1", EndLeg(call_id, "A", 0, "callee hung up"))]
    assert layer.controller.live() == []
    (done,) = layer.history.calls
    assert (done.state, done.end_reason, done.final_status) == (
        CallState.ENDED,
        "callee hung up",
        0,
    )
    assert done.end_time - done.answer_time == 42


async def test_a_call_on_a_lost_sidecar_ends_and_frees_both_parties() -> None:
    layer = CallLayer(sidecars=Sidecars("s1", "s2"))
    (alice,) = registered(layer, "201", sidecar="s1")
    (bob,) = registered(layer, "202", sidecar="s2")
    call_id = (await layer.invite(alice, "202")).call_id
    ((_, fork),) = creates(layer.sidecars.take())
    await report(layer, call_id, fork.leg_id, LegState.ANSWERED, media=media(32000))
    layer.sidecars.take()
    layer.sidecars.connected.discard("s2")

    await layer.controller.end_calls_on({"s2"})

    assert layer.sidecars.take() == [("s1", EndLeg(call_id, "A", 0, "sidecar lost"))]
    assert layer.controller.live() == []
    assert [layer.presence_of(u).availability for u in (alice, bob)] == [
        Availability.AVAILABLE,
        Availability.AVAILABLE,
    ]
    await layer.presence.drain()


async def test_calls_on_connected_sidecars_survive_another_sidecar_being_lost(
    layer: CallLayer,
) -> None:
    alice, _bob = registered(layer, "201", "202")
    await layer.invite(alice, "202")

    await layer.controller.end_calls_on({"s2"})

    assert len(layer.controller.live()) == 1


# --- no answer, on the clock --------------------------------------------------------------------


async def test_nobody_answering_within_the_users_timeout_gives_the_caller_480() -> None:
    layer = CallLayer(clock=Clock(1000.0))
    (alice,) = registered(layer, "201")
    bob = layer.add_user(make_user("202", settings=UserSettings(no_answer_timeout_seconds=5)))
    layer.register(bob, 42001)
    call_id = (await layer.invite(alice, "202")).call_id
    ((_, fork),) = creates(layer.sidecars.take())
    assert fork.ring_timeout_seconds == 10  # the sidecar's own bound: ours plus 5 s

    layer.clock.advance(4.999)
    await layer.controller.sweep()
    assert layer.sidecars.take() == []

    layer.clock.advance(0.001)
    await layer.controller.sweep()
    assert layer.sidecars.take() == [
        ("s1", EndLeg(call_id, "A", 480, "no answer")),
        ("s1", EndLeg(call_id, fork.leg_id, 0, "no answer")),
    ]
    assert layer.presence_of(bob).activity is Activity.NONE
    await layer.presence.drain()


async def test_no_answer_forwarding_rings_the_target_when_the_time_is_up() -> None:
    layer = CallLayer(clock=Clock(1000.0))
    alice, carol = registered(layer, "201", "203")
    bob = layer.add_user(
        make_user(
            "202",
            settings=UserSettings(forward_no_answer=forwarding("203"), no_answer_timeout_seconds=8),
        )
    )
    layer.register(bob, 42001)
    call_id = (await layer.invite(alice, "202")).call_id
    ((_, fork),) = creates(layer.sidecars.take())

    layer.clock.advance(8)
    await layer.controller.sweep()

    sent = layer.sidecars.take()
    assert sent[0] == ("s1", EndLeg(call_id, fork.leg_id, 0, "no answer"))
    assert [(c.port, c.to_uri) for _, c in creates(sent)] == [(41001, carol.sip_uri)]
    assert layer.controller.get(call_id).state is CallState.RINGING
    await layer.presence.drain()


# --- in the call --------------------------------------------------------------------------------


async def test_hold_on_one_side_is_mirrored_to_the_other(layer: CallLayer) -> None:
    alice, _bob = registered(layer, "201", "202")
    call_id = (await layer.invite(alice, "202", offer=media(30000))).call_id
    ((_, fork),) = creates(layer.sidecars.take())
    await report(layer, call_id, fork.leg_id, LegState.ANSWERED, media=media(32000))
    layer.sidecars.take()

    await report(layer, call_id, "A", None, direction="sendonly")

    assert layer.sidecars.take() == [
        ("s1", UpdateMedia(call_id, fork.leg_id, replace(media(30000), direction="recvonly"), "A"))
    ]
    call = layer.controller.get(call_id)
    assert call is not None
    assert [(leg.id, leg.direction) for leg in call.legs.values()] == [
        ("A", "sendonly"),
        (fork.leg_id, "recvonly"),  # the held party's handset was told so
    ]


async def test_the_callers_leg_follows_what_its_handset_was_sent(layer: CallLayer) -> None:
    alice, _bob = registered(layer, "201", "202")
    call_id = (await layer.invite(alice, "202")).call_id
    ((_, fork),) = creates(layer.sidecars.take())
    call = layer.controller.get(call_id)
    assert call is not None
    states = [call.legs["A"].state]

    await report(layer, call_id, fork.leg_id, LegState.RINGING, status=180)
    states.append(call.legs["A"].state)
    await report(layer, call_id, fork.leg_id, LegState.ANSWERED, media=media(32000))
    states.append(call.legs["A"].state)

    assert states == [LegState.TRYING, LegState.RINGING, LegState.ANSWERED]


async def test_dtmf_is_recorded_and_sent_towards_the_other_party(layer: CallLayer) -> None:
    alice, _bob = registered(layer, "201", "202")
    call_id = (await layer.invite(alice, "202")).call_id
    ((_, fork),) = creates(layer.sidecars.take())
    await report(layer, call_id, fork.leg_id, LegState.ANSWERED, media=media(32000))
    layer.sidecars.take()

    await report(layer, call_id, "A", None, dtmf_digits="1x#")
    await layer.controller.send_dtmf(call_id, "5", None)

    call = layer.controller.get(call_id)
    assert call is not None
    assert [d for d, _leg, _at in call.dtmf] == ["1", "#"]  # not a DTMF digit: dropped
    assert layer.sidecars.take() == [("s1", InjectDtmf(call_id, fork.leg_id, "5"))]


# --- click-to-dial ------------------------------------------------------------------------------


async def test_click_to_dial_rings_the_caller_first_then_the_target_then_joins_media() -> None:
    layer = CallLayer(sidecars=Sidecars("s1", "s2"))
    alice = layer.add_user(make_user("201"))
    layer.register(alice, 41001, sidecar="s1")
    layer.register(alice, 41002, sidecar="s1")
    (bob,) = registered(layer, "202", sidecar="s2")

    call = await layer.controller.place_call(alice, "202")
    handsets = creates(layer.sidecars.take())
    assert [(s, c.port, c.peer_media) for s, c in handsets] == [
        ("s1", 41001, None),
        ("s1", 41002, None),
    ]
    assert layer.presence_of(alice).activity is Activity.RINGING

    picked, other = (c.leg_id for _, c in handsets)
    await report(layer, call.id, picked, LegState.ANSWERED, media=media(31000))
    sent = layer.sidecars.take()
    assert sent[0] == ("s1", EndLeg(call.id, other, 0, "answered elsewhere"))
    ((sidecar, target),) = creates(sent)
    assert (sidecar, target.to_uri, target.peer_media) == ("s2", bob.sip_uri, media(31000))

    await report(layer, call.id, target.leg_id, LegState.ANSWERED, media=media(32000))
    assert layer.sidecars.take() == [("s1", UpdateMedia(call.id, picked, media(32000), ""))]
    assert call.state is CallState.CONNECTED
    await layer.presence.drain()


async def test_click_to_dial_without_a_reachable_handset_fails_and_leaves_no_call(
    layer: CallLayer,
) -> None:
    alice = layer.add_user(make_user("201"))
    layer.register(alice, 41001, sidecar="gone")
    registered(layer, "202")

    with pytest.raises(FailedPrecondition) as refused:
        await layer.controller.place_call(alice, "202")

    assert refused.value.kind == "NOT_REGISTERED"
    assert layer.controller.live() == []


async def test_end_call_ends_every_leg_with_480_before_the_answer(layer: CallLayer) -> None:
    alice, _bob = registered(layer, "201", "202")
    call_id = (await layer.invite(alice, "202")).call_id
    ((_, fork),) = creates(layer.sidecars.take())

    ended = await layer.controller.end_call(f"calls/{call_id}")

    assert layer.sidecars.take() == [
        ("s1", EndLeg(call_id, "A", 480, "ended by administrator")),
        ("s1", EndLeg(call_id, fork.leg_id, 0, "ended by administrator")),
    ]
    assert (ended.state, ended.final_status) == (CallState.ENDED, 480)
