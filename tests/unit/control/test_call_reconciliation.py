"""A control plane that lost its calls (it restarted) puts them right: presence keeps only calls
that exist, and the legs a sidecar reports in its hello are taken back or ended."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sip2uc_control.calls import CallState, EndLeg, LegState, LiveLeg
from sip2uc_control.domain import User
from sip2uc_control.presence import Activity, Availability

from .in_memory import CallLayer, make_user, media


@pytest.fixture
async def layer() -> AsyncIterator[CallLayer]:
    calls = CallLayer()
    yield calls
    await calls.presence.drain()


def registered(layer: CallLayer, *exts: str) -> list[User]:
    users = []
    for i, ext in enumerate(exts):
        user = layer.add_user(make_user(ext))
        layer.register(user, 41000 + i)
        users.append(user)
    return users


def in_a_call_before_the_restart(layer: CallLayer, user: User, call_id: str) -> None:
    """What the presence record says after a control plane died during a call."""
    engine = layer.presence.engine
    layer.presence.apply(user.id, lambda r, now: engine.on_call_started(r, call_id, False, now))


def caller_leg(alice: User, *, established: bool = True) -> LiveLeg:
    return LiveLeg(
        call_id="c1",
        leg_id="A",
        caller=True,
        established=established,
        party=alice.extension,  # the digest username it authenticated with
        media=media(30000),
    )


def callee_leg(bob: User) -> LiveLeg:
    return LiveLeg(
        call_id="c1",
        leg_id="B",
        caller=False,
        established=True,
        party=bob.sip_uri,
        media=media(32000),
        direction="recvonly",
    )


async def test_presence_keeps_no_call_the_control_plane_does_not_have(layer: CallLayer) -> None:
    alice, bob = registered(layer, "201", "202")
    in_a_call_before_the_restart(layer, alice, "lost")
    in_a_call_before_the_restart(layer, bob, "lost")
    assert layer.presence_of(alice).availability is Availability.IN_A_CALL

    changed = layer.controller.reconcile_presence()

    assert changed == 2
    assert [layer.presence_of(u).availability for u in (alice, bob)] == [
        Availability.AVAILABLE,
        Availability.AVAILABLE,
    ]
    await layer.presence.drain()
    assert [c.change.reason.value for c in layer.log.changes][-2:] == ["calls-reconciled"] * 2


async def test_reconciling_one_user_leaves_live_calls_and_other_users_alone(
    layer: CallLayer,
) -> None:
    alice, bob, carol = registered(layer, "201", "202", "203")
    call_id = (await layer.invite(alice, "202")).call_id
    in_a_call_before_the_restart(layer, alice, call_id)  # a live call: stays
    in_a_call_before_the_restart(layer, carol, "lost")

    assert layer.controller.reconcile_presence([alice.id]) == 0
    assert layer.presence_of(carol).availability is Availability.IN_A_CALL
    assert layer.controller.reconcile_presence([carol.id]) == 1
    assert layer.presence_of(carol).availability is Availability.AVAILABLE
    assert layer.presence_of(bob).activity is Activity.RINGING


async def test_established_legs_a_sidecar_reports_come_back_as_a_connected_call(
    layer: CallLayer,
) -> None:
    alice, bob = registered(layer, "201", "202")

    layer.controller.adopt("s1", [caller_leg(alice), callee_leg(bob)])

    (call,) = layer.controller.live()
    assert (call.id, call.state, call.caller_leg, call.winner) == (
        "c1",
        CallState.CONNECTED,
        "A",
        "B",
    )
    assert (call.caller_user, call.callee_user) == (alice.id, bob.id)
    assert [(leg.role, leg.state, leg.direction) for leg in call.legs.values()] == [
        ("caller", LegState.ANSWERED, "sendrecv"),
        ("callee", LegState.ANSWERED, "recvonly"),
    ]
    assert [layer.presence_of(u).availability for u in (alice, bob)] == [
        Availability.IN_A_CALL,
        Availability.IN_A_CALL,
    ]
    assert layer.sidecars.take() == []

    await layer.controller.bye("s1", "A", "bye")

    assert layer.sidecars.take() == [("s1", EndLeg("c1", "B", 0, "caller hung up"))]
    assert layer.presence_of(bob).availability is Availability.AVAILABLE
    assert [c.end_reason for c in layer.history.calls] == ["caller hung up"]


async def test_a_call_across_two_sidecars_is_whole_once_both_are_back(layer: CallLayer) -> None:
    alice, bob = registered(layer, "201", "202")

    layer.controller.adopt("s1", [caller_leg(alice)])
    layer.controller.adopt("s2", [callee_leg(bob)])

    (call,) = layer.controller.live()
    assert [(leg.id, leg.sidecar) for leg in call.legs.values()] == [("A", "s1"), ("B", "s2")]
    layer.clock.advance(layer.settings.sidecar_grace_seconds + 1)
    await layer.controller.sweep()
    assert layer.controller.live() == [call]  # whole: not a half call


async def test_a_leg_still_being_set_up_is_ended(layer: CallLayer) -> None:
    (alice,) = registered(layer, "201")

    layer.controller.adopt("s1", [caller_leg(alice, established=False)])

    assert layer.controller.live() == []
    assert layer.sidecars.take() == [
        ("s1", EndLeg("c1", "A", 480, "call not known after a control plane restart"))
    ]
    assert layer.presence_of(alice).availability is Availability.AVAILABLE


async def test_a_call_whose_other_party_never_comes_back_ends_after_the_grace(
    layer: CallLayer,
) -> None:
    alice, _bob = registered(layer, "201", "202")
    layer.controller.adopt("s1", [caller_leg(alice)])
    await layer.controller.sweep()
    assert len(layer.controller.live()) == 1

    layer.clock.advance(layer.settings.sidecar_grace_seconds)
    await layer.controller.sweep()

    assert layer.controller.live() == []
    assert layer.sidecars.take() == [
        ("s1", EndLeg("c1", "A", 0, "other party not back after a control plane restart"))
    ]
    assert layer.presence_of(alice).availability is Availability.AVAILABLE


async def test_a_leg_of_a_call_that_ended_while_its_sidecar_was_away_is_ended(
    layer: CallLayer,
) -> None:
    alice, _bob = registered(layer, "201", "202")
    call_id = (await layer.invite(alice, "202")).call_id
    await layer.controller.cancel("s1", "A")
    layer.sidecars.take()

    layer.controller.adopt(
        "s2",
        [LiveLeg(call_id, "X", caller=False, established=True, party="", media=None)],
    )

    assert layer.controller.live() == []
    assert layer.sidecars.take() == [("s2", EndLeg(call_id, "X", 0, "call ended"))]


async def test_legs_the_control_plane_knows_are_left_alone(layer: CallLayer) -> None:
    alice, _bob = registered(layer, "201", "202")
    call_id = (await layer.invite(alice, "202")).call_id
    layer.sidecars.take()

    layer.controller.adopt(
        "s1", [LiveLeg(call_id, "A", caller=True, established=False, party="201", media=None)]
    )

    assert layer.sidecars.take() == []
    assert [c.id for c in layer.controller.live()] == [call_id]
