"""Who may watch whom, what a SUBSCRIBE watches (subscriptions.py) and a user's calls as the
dialogs a BLF key shows (user_states.py)."""

from __future__ import annotations

from sip2uc_control.calls.model import Call, CallState, Leg, LegState
from sip2uc_control.domain import User, UserSettings
from sip2uc_control.subscriptions import (
    Action,
    HeldSubscription,
    SubscribeInput,
    SubscriptionRegistry,
    decide_subscription,
)
from sip2uc_control.user_states import DialogPhase, DialogView, dialog_of

DOMAIN = "example.net"


def user(uid: str, ext: str, **settings: object) -> User:
    return User(
        id=uid,
        sip_uri=f"sip:{ext}@{DOMAIN}",
        display_name=f"User {ext}",
        extension=ext,
        settings=UserSettings(**settings),  # type: ignore[arg-type]
    )


ALICE = user("a", "1001", buddies=("users/b", "users/c"))
BOB = user("b", "1002")
CAROL = user("c", "1003", watch_policy="allow-list", allowed_watchers=("users/b",))
DAVE = user("d", "1004", watch_policy="same-sidecar")
USERS = {u.id: u for u in (ALICE, BOB, CAROL, DAVE)}


def resolve(ref: str) -> User | None:
    for u in USERS.values():
        if ref in (u.name, u.extension, u.sip_uri):
            return u
    return None


def sidecars_of(user_id: str) -> set[str]:
    return {"vlan10"} if user_id == "d" else set()


def ask(uri: str, event: str = "presence", *, eventlist: bool = False, sidecar: str = "vlan20"):  # type: ignore[no-untyped-def]
    inp = SubscribeInput(
        sidecar=sidecar,
        subscription_id="s1",
        action=Action.CREATE,
        event=event,
        request_uri=uri,
        expires=7200,
        eventlist=eventlist,
    )
    return decide_subscription(inp, ALICE, resolve, sidecars_of, DOMAIN)


def test_a_user_of_the_same_control_plane_may_be_watched_by_default() -> None:
    decision = ask(f"sip:1002@{DOMAIN}", "dialog")
    assert (decision.status, decision.resources, decision.expires) == (200, (BOB,), 3600)


def test_an_unknown_user_is_404_and_an_unknown_event_489() -> None:
    assert ask(f"sip:1999@{DOMAIN}").status == 404
    assert ask(f"sip:1002@{DOMAIN}", "message-summary").status == 489


def test_an_allow_list_keeps_out_those_not_on_it() -> None:
    decision = ask(f"sip:1003@{DOMAIN}")
    assert (decision.status, decision.resources) == (403, ())


def test_same_sidecar_lets_in_only_watchers_on_a_sidecar_the_user_is_registered_on() -> None:
    assert ask(f"sip:1004@{DOMAIN}", sidecar="vlan20").status == 403
    assert ask(f"sip:1004@{DOMAIN}", sidecar="vlan10").status == 200


def test_the_buddy_list_needs_eventlist_and_holds_only_buddies_the_watcher_may_watch() -> None:
    assert ask(f"sip:buddies@{DOMAIN}").status == 421
    decision = ask(f"sip:buddies@{DOMAIN}", eventlist=True)
    assert decision.status == 200
    assert decision.list_uri == f"sip:buddies@{DOMAIN}"
    assert decision.resources == (BOB,)  # carol allows only bob to watch her


def test_the_registry_lists_by_watcher_or_watched_and_forgets_expired_ones() -> None:
    registry = SubscriptionRegistry()
    for sid, watcher, users, expires in (("s1", "a", ("b",), 100.0), ("s2", "b", ("c",), 50.0)):
        registry.put(
            HeldSubscription(
                id=sid,
                sidecar="vlan10",
                watcher=watcher,
                event="dialog",
                resource_uri="sip:x@example.net",
                users=users,
                expires_at=expires,
            )
        )
    assert [h.id for h in registry.listing("b", 0.0)] == ["s1", "s2"]
    assert [h.id for h in registry.listing("c", 0.0)] == ["s2"]
    assert [h.id for h in registry.listing(None, 60.0)] == ["s1"]
    registry.replace_sidecar("vlan10", [])
    assert registry.listing(None, 0.0) == []


def call(state: CallState, bob_leg: LegState, winner: str = "") -> Call:
    c = Call(
        id="c1",
        caller="users/c",
        dialled="1002",
        caller_user="c",
        start_time=0.0,
        callee_user="b",
        state=state,
        winner=winner,
    )
    c.legs["l1"] = Leg(id="l1", sidecar="vlan10", role="callee", party="users/b", user_id="b")
    c.legs["l1"].state = bob_leg
    return c


def test_a_ringing_call_is_early_for_both_with_the_other_party_as_remote() -> None:
    ringing = call(CallState.RINGING, LegState.RINGING)
    assert dialog_of(ringing, "b", USERS.get) == DialogView(
        id="c1",
        phase=DialogPhase.EARLY,
        initiator=False,
        remote_uri=f"sip:1003@{DOMAIN}",
        remote_display="User 1003",
    )
    caller_side = dialog_of(ringing, "c", USERS.get)
    assert caller_side is not None
    assert (caller_side.phase, caller_side.initiator) == (DialogPhase.EARLY, True)
    assert caller_side.remote_uri == f"sip:1002@{DOMAIN}"
    assert dialog_of(ringing, "a", USERS.get) is None


def test_the_caller_is_trying_until_something_rings_then_confirmed_then_terminated() -> None:
    trying = dialog_of(call(CallState.RINGING, LegState.TRYING), "c", USERS.get)
    assert trying is not None and trying.phase is DialogPhase.TRYING
    answered = call(CallState.CONNECTED, LegState.ANSWERED, winner="l1")
    assert [dialog_of(answered, u, USERS.get).phase for u in "bc"] == [  # type: ignore[union-attr]
        DialogPhase.CONFIRMED,
        DialogPhase.CONFIRMED,
    ]
    ended = call(CallState.ENDED, LegState.ENDED, winner="l1")
    assert dialog_of(ended, "b", USERS.get).phase is DialogPhase.TERMINATED  # type: ignore[union-attr]


def test_a_fork_another_handset_answered_is_terminated_for_its_user() -> None:
    answered_elsewhere = call(CallState.CONNECTED, LegState.ENDED, winner="l9")
    view = dialog_of(answered_elsewhere, "b", USERS.get)
    assert view is not None and view.phase is DialogPhase.TERMINATED
