"""The dial plan: classifying dialled strings and deciding what happens to a call for a user."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sip2uc_control.presence import (
    Activity,
    Availability,
    EffectivePresence,
    PresenceEngine,
    PresenceRecord,
    Reason,
    Source,
)
from sip2uc_control.routing import (
    DEFAULT_CODES,
    CodeAction,
    CodeTable,
    Deliver,
    DialContext,
    Dialled,
    Forward,
    ForwardChain,
    Forwarding,
    ForwardReason,
    MatchedBy,
    PresenceCode,
    PresenceCodeRoute,
    Rejected,
    RouteDecision,
    RoutingError,
    TrunkRoute,
    UserRoute,
    UserRoutingSettings,
    apply_forward_code,
    apply_presence_code,
    classify,
    decide_after_busy,
    decide_after_no_answer,
    decide_user_target,
    normalise,
    to_e164,
)

T0 = 1_700_000_000.0

EXTENSIONS = {"201": "alice", "202": "bob", "112": "shadowing-extension"}
E164 = {"+4930123456201": "alice", "+4930999888": "carol"}
URIS = {"alice": "alice", "bob.smith": "bob", "9000": "conference"}


def find_uri(user: str, host: str | None) -> str | None:
    if host not in (None, "pbx.example.com"):
        return None
    return URIS.get(user)


def context(**overrides: Any) -> DialContext:
    fields: dict[str, Any] = {
        "caller": "alice",
        "find_extension": EXTENSIONS.get,
        "find_e164": E164.get,
        "find_uri_user": find_uri,
        "default_region": "DE",
        "trunk": "uc",
    }
    fields.update(overrides)
    return DialContext(**fields)


CODE = {c.code: c for c in DEFAULT_CODES.codes}

# -- normalising ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialled", "expected"),
    [
        ("201", Dialled(value="201", is_number=True)),
        ("%2A30%23", Dialled(value="*30#", is_number=True)),
        ("*30%23", Dialled(value="*30#", is_number=True)),
        ("+49 (30) 123-456.201", Dialled(value="+4930123456201", is_number=True)),
        (" 030 123 ", Dialled(value="030123", is_number=True)),
        ("sip:201@pbx.example.com", Dialled(value="201", is_number=True, host="pbx.example.com")),
        ("tel:+49-30-999888", Dialled(value="+4930999888", is_number=True)),
        ("0301234;phone-context=+49", Dialled(value="0301234", is_number=True)),
        ("bob.smith", Dialled(value="bob.smith", is_number=False)),
        (
            "sips:Alice@pbx.example.com;transport=tls",
            Dialled(value="Alice", is_number=False, host="pbx.example.com"),
        ),
        ("%ff%fe", Dialled(value="\ufffd\ufffd", is_number=False)),
        ("", Dialled(value="", is_number=False)),
    ],
)
def test_normalise(dialled: str, expected: Dialled) -> None:
    assert normalise(dialled) == expected


@pytest.mark.parametrize(
    ("number", "region", "expected"),
    [
        ("+4930999888", None, "+4930999888"),
        ("030999888", "DE", "+4930999888"),
        ("004930999888", "DE", "+4930999888"),
        ("2125551234", "US", "+12125551234"),
        ("030999888", None, None),
        ("+49", "DE", None),
        ("*30", "DE", None),
        ("", "DE", None),
    ],
)
def test_to_e164(number: str, region: str | None, expected: str | None) -> None:
    assert to_e164(number, region) == expected


# -- classify ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialled", "expected"),
    [
        ("*30", PresenceCodeRoute(code=CODE["*30"])),
        ("%2A35%23", PresenceCodeRoute(code=CODE["*35"])),
        ("*72202", PresenceCodeRoute(code=CODE["*72"], target="202")),
        ("*72", Rejected(status=484, reason="the code needs a number after it")),
        ("*99", Rejected(status=404, reason="unknown code")),
        ("112", TrunkRoute(trunk="uc", number="112", emergency=True)),
        ("202", UserRoute(user="bob", matched_by=MatchedBy.EXTENSION)),
        ("2-02", UserRoute(user="bob", matched_by=MatchedBy.EXTENSION)),
        ("sip:202@pbx.example.com", UserRoute(user="bob", matched_by=MatchedBy.EXTENSION)),
        ("+4930999888", UserRoute(user="carol", matched_by=MatchedBy.E164)),
        ("030 999888", UserRoute(user="carol", matched_by=MatchedBy.E164)),
        ("004930999888", UserRoute(user="carol", matched_by=MatchedBy.E164)),
        ("alice", UserRoute(user="alice", matched_by=MatchedBy.URI)),
        ("sip:bob.smith@pbx.example.com", UserRoute(user="bob", matched_by=MatchedBy.URI)),
        ("9000", UserRoute(user="conference", matched_by=MatchedBy.URI)),
        ("bob.smith@elsewhere.example", Rejected(status=404, reason="no such user")),
        ("030 555 1234", TrunkRoute(trunk="uc", number="+49305551234")),
        ("+33 1 23 45 67 89", TrunkRoute(trunk="uc", number="+33123456789")),
        ("4", Rejected(status=404, reason="no such number")),
        ("12*3", Rejected(status=404, reason="no such number")),
        ("nobody", Rejected(status=404, reason="no such user")),
        ("", Rejected(status=484, reason="nothing dialled")),
        ("%23", Rejected(status=404, reason="unknown code")),
    ],
)
def test_classify(dialled: str, expected: RouteDecision) -> None:
    assert classify(dialled, context()) == expected


def test_without_a_trunk_external_numbers_are_not_found() -> None:
    ctx = context(trunk=None)

    assert classify("030 555 1234", ctx) == Rejected(status=404, reason="no such number")


def test_without_a_trunk_an_emergency_number_falls_back_to_the_extension() -> None:
    assert classify("112", context(trunk=None)) == UserRoute(
        user="shadowing-extension", matched_by=MatchedBy.EXTENSION
    )


def test_a_caller_without_trunk_permission_gets_403_for_external_numbers() -> None:
    ctx = context(caller_may_use_trunk=False)

    assert classify("030 555 1234", ctx) == Rejected(
        status=403, reason="not allowed to call external numbers"
    )


def test_a_caller_without_trunk_permission_still_reaches_emergency_services() -> None:
    ctx = context(caller_may_use_trunk=False)

    assert classify("112", ctx) == TrunkRoute(trunk="uc", number="112", emergency=True)


def test_calls_from_the_uc_side_cannot_use_codes_or_hairpin_to_the_trunk() -> None:
    ctx = context(caller=None)

    assert classify("*30", ctx) == Rejected(status=403, reason="codes need a calling user")
    assert classify("030 555 1234", ctx) == Rejected(
        status=403, reason="not allowed to call external numbers"
    )
    assert classify("201", ctx) == UserRoute(user="alice", matched_by=MatchedBy.EXTENSION)


def test_without_a_default_region_only_plus_numbers_reach_the_trunk() -> None:
    ctx = context(default_region=None)

    assert classify("030 555 1234", ctx) == Rejected(status=404, reason="no such number")
    assert classify("+49 30 555 1234", ctx) == TrunkRoute(trunk="uc", number="+49305551234")


def test_an_extension_wins_over_a_user_number_and_codes_follow_the_table() -> None:
    table = CodeTable((PresenceCode(code="#21#", action=CodeAction.FORWARD_ALWAYS_OFF),))
    ctx = context(codes=table)

    assert classify("#21#", ctx) == PresenceCodeRoute(code=table.codes[0])
    assert classify("*30", ctx) == Rejected(status=404, reason="unknown code")


# -- applying codes ------------------------------------------------------------------------------

ENGINE = PresenceEngine()


def registered_record() -> PresenceRecord:
    record, _ = ENGINE.on_registered(PresenceRecord.new("alice", T0), T0)
    return record


@pytest.mark.parametrize(
    ("code", "availability", "source"),
    [
        ("*30", Availability.DO_NOT_DISTURB, Source.MANUAL),
        ("*32", Availability.AWAY, Source.MANUAL),
        ("*33", Availability.BE_RIGHT_BACK, Source.MANUAL),
        ("*34", Availability.BUSY, Source.MANUAL),
        ("*36", Availability.OFFLINE, Source.MANUAL),
    ],
)
def test_presence_codes_set_the_manual_state(
    code: str, availability: Availability, source: Source
) -> None:
    route = PresenceCodeRoute(code=CODE[code])
    _, change = apply_presence_code(
        ENGINE, registered_record(), UserRoutingSettings(), route, T0 + 1
    )

    assert change is not None and change.reason is Reason.MANUAL_SET
    assert (change.current.availability, change.current.source) == (availability, source)


def test_the_reset_code_clears_any_manual_state() -> None:
    record, _ = ENGINE.set_manual(registered_record(), Availability.AWAY, T0 + 1)
    route = PresenceCodeRoute(code=CODE["*35"])

    record, change = apply_presence_code(ENGINE, record, UserRoutingSettings(), route, T0 + 2)

    assert change is not None and change.reason is Reason.MANUAL_CLEARED
    assert ENGINE.resolve(record).availability is Availability.AVAILABLE


def test_dnd_off_clears_dnd() -> None:
    record, _ = ENGINE.set_manual(registered_record(), Availability.DO_NOT_DISTURB, T0 + 1)
    route = PresenceCodeRoute(code=CODE["*31"])

    record, change = apply_presence_code(ENGINE, record, UserRoutingSettings(), route, T0 + 2)

    assert change is not None
    assert record.manual is None


def test_dnd_off_leaves_another_manual_state_alone() -> None:
    record, _ = ENGINE.set_manual(registered_record(), Availability.AWAY, T0 + 1)
    route = PresenceCodeRoute(code=CODE["*31"])

    after, change = apply_presence_code(ENGINE, record, UserRoutingSettings(), route, T0 + 2)

    assert (after, change) == (record, None)


def test_a_code_with_a_duration_sets_an_expiring_state() -> None:
    route = PresenceCodeRoute(
        code=PresenceCode(code="*33", action=CodeAction.BE_RIGHT_BACK, duration=900)
    )

    record, _ = apply_presence_code(
        ENGINE, registered_record(), UserRoutingSettings(), route, T0 + 1
    )

    assert ENGINE.next_deadline(record) == T0 + 901


def test_dnd_is_refused_to_users_not_allowed_it() -> None:
    route = PresenceCodeRoute(code=CODE["*30"])

    with pytest.raises(RoutingError) as caught:
        apply_presence_code(
            ENGINE, registered_record(), UserRoutingSettings(dnd_allowed=False), route, T0
        )
    assert (caught.value.field, caught.value.status) == ("dnd_allowed", 403)


def test_a_forward_code_is_not_a_presence_code() -> None:
    route = PresenceCodeRoute(code=CODE["*73"])

    with pytest.raises(RoutingError) as caught:
        apply_presence_code(ENGINE, registered_record(), UserRoutingSettings(), route, T0)
    assert caught.value.field == "action"


def test_forward_codes_switch_rules_on_and_off_keeping_the_target() -> None:
    settings = UserRoutingSettings()

    on = apply_forward_code(settings, PresenceCodeRoute(code=CODE["*72"], target="202"))
    off = apply_forward_code(on, PresenceCodeRoute(code=CODE["*73"]))

    assert on.forward_always == Forwarding(enabled=True, target="202")
    assert off.forward_always == Forwarding(enabled=False, target="202")
    assert apply_forward_code(off, PresenceCodeRoute(code=CODE["*73"])) == off


@pytest.mark.parametrize(
    ("code", "field"),
    [("*72", "forward_always"), ("*90", "forward_busy"), ("*92", "forward_no_answer")],
)
def test_each_forward_on_code_sets_its_rule(code: str, field: str) -> None:
    settings = apply_forward_code(
        UserRoutingSettings(), PresenceCodeRoute(code=CODE[code], target="+4930999888")
    )

    assert getattr(settings, field) == Forwarding(enabled=True, target="+4930999888")


def test_a_presence_code_is_not_a_forward_code() -> None:
    with pytest.raises(RoutingError) as caught:
        apply_forward_code(UserRoutingSettings(), PresenceCodeRoute(code=CODE["*30"]))
    assert caught.value.field == "action"


# -- deciding a call to a user -------------------------------------------------------------------


def presence(
    availability: Availability = Availability.AVAILABLE, expires_at: float | None = None
) -> EffectivePresence:
    return EffectivePresence(
        availability=availability,
        activity=Activity.NONE,
        source=Source.MANUAL if availability is Availability.DO_NOT_DISTURB else Source.CALL,
        since=T0,
        expires_at=expires_at,
    )


def rule(target: str, enabled: bool = True) -> Forwarding:
    return Forwarding(enabled=enabled, target=target)


DND = presence(Availability.DO_NOT_DISTURB)
CHAIN = ForwardChain(visited=("bob",))


@pytest.mark.parametrize(
    ("name", "settings", "shown", "registered", "calls", "expected"),
    [
        (
            "available: ring, no timeout",
            UserRoutingSettings(),
            presence(),
            True,
            0,
            Deliver(user="bob", chain=CHAIN),
        ),
        (
            "no-answer forwarding: ring for the server default, then forward",
            UserRoutingSettings(forward_no_answer=rule("203")),
            presence(),
            True,
            0,
            Deliver(user="bob", chain=CHAIN, no_answer_timeout=20.0, no_answer_target="203"),
        ),
        (
            "no-answer forwarding with the user's own timeout",
            UserRoutingSettings(forward_no_answer=rule("203"), no_answer_timeout=12),
            presence(),
            True,
            0,
            Deliver(user="bob", chain=CHAIN, no_answer_timeout=12, no_answer_target="203"),
        ),
        (
            "a disabled rule is ignored",
            UserRoutingSettings(forward_always=rule("203", enabled=False)),
            presence(),
            True,
            0,
            Deliver(user="bob", chain=CHAIN),
        ),
        (
            "forward always wins over everything",
            UserRoutingSettings(forward_always=rule("203"), forward_busy=rule("204")),
            DND,
            False,
            1,
            Forward(user="bob", target="203", reason=ForwardReason.ALWAYS, chain=CHAIN),
        ),
        (
            "dnd rejects with 486",
            UserRoutingSettings(),
            DND,
            True,
            0,
            Rejected(status=486, reason="dnd"),
        ),
        (
            "dnd uses the busy forward",
            UserRoutingSettings(forward_busy=rule("204")),
            DND,
            True,
            0,
            Forward(user="bob", target="204", reason=ForwardReason.DND, chain=CHAIN),
        ),
        (
            "a dnd already past its expiry no longer rejects",
            UserRoutingSettings(),
            presence(Availability.DO_NOT_DISTURB, expires_at=T0 + 50),
            True,
            0,
            Deliver(user="bob", chain=CHAIN),
        ),
        (
            "a dnd not yet expired still rejects",
            UserRoutingSettings(),
            presence(Availability.DO_NOT_DISTURB, expires_at=T0 + 101),
            True,
            0,
            Rejected(status=486, reason="dnd"),
        ),
        (
            "not registered: 480",
            UserRoutingSettings(forward_busy=rule("204")),
            presence(Availability.OFFLINE),
            False,
            0,
            Rejected(status=480, reason="no registered handset"),
        ),
        (
            "not registered: forward on no answer at once",
            UserRoutingSettings(forward_no_answer=rule("203")),
            presence(Availability.OFFLINE),
            False,
            0,
            Forward(user="bob", target="203", reason=ForwardReason.UNREACHABLE, chain=CHAIN),
        ),
        (
            "appear offline still rings the registered handset",
            UserRoutingSettings(),
            presence(Availability.OFFLINE),
            True,
            0,
            Deliver(user="bob", chain=CHAIN),
        ),
        (
            "call waiting (the default) rings a user already in a call",
            UserRoutingSettings(),
            presence(Availability.IN_A_CALL),
            True,
            1,
            Deliver(user="bob", chain=CHAIN),
        ),
        (
            "without call waiting a user in a call is busy",
            UserRoutingSettings(call_waiting=False),
            presence(Availability.IN_A_CALL),
            True,
            1,
            Rejected(status=486, reason="busy"),
        ),
        (
            "without call waiting a user in a call forwards on busy",
            UserRoutingSettings(call_waiting=False, forward_busy=rule("204")),
            presence(Availability.IN_A_CALL),
            True,
            1,
            Forward(user="bob", target="204", reason=ForwardReason.BUSY, chain=CHAIN),
        ),
        (
            "manual busy is only a state: calls still ring",
            UserRoutingSettings(),
            presence(Availability.BUSY),
            True,
            0,
            Deliver(user="bob", chain=CHAIN),
        ),
    ],
)
def test_decide_user_target(
    name: str,
    settings: UserRoutingSettings,
    shown: EffectivePresence,
    registered: bool,
    calls: int,
    expected: object,
) -> None:
    decision = decide_user_target(
        "bob", settings, shown, registered=registered, active_calls=calls, now=T0 + 100
    )

    assert decision == expected, name


def test_forwarding_back_to_a_user_already_tried_is_a_loop() -> None:
    first = decide_user_target(
        "bob",
        UserRoutingSettings(forward_always=rule("201")),
        presence(),
        registered=True,
        active_calls=0,
        now=T0,
    )
    assert isinstance(first, Forward)
    second = decide_user_target(
        "alice",
        UserRoutingSettings(forward_always=rule("202")),
        presence(),
        registered=True,
        active_calls=0,
        now=T0,
        chain=first.chain,
    )
    assert isinstance(second, Forward)
    assert second.chain.visited == ("bob", "alice")

    third = decide_user_target(
        "bob",
        UserRoutingSettings(forward_always=rule("201")),
        presence(),
        registered=True,
        active_calls=0,
        now=T0,
        chain=second.chain,
    )

    assert third == Rejected(status=482, reason="forwarding loops back to this user")


def test_a_chain_longer_than_max_hops_is_cut() -> None:
    chain = ForwardChain(visited=("u1", "u2", "u3"), max_hops=2)

    decision = decide_user_target(
        "u4",
        UserRoutingSettings(),
        presence(),
        registered=True,
        active_calls=0,
        now=T0,
        chain=chain,
    )

    assert decision == Rejected(status=483, reason="too many forwarding hops")


def test_a_chain_at_max_hops_is_still_delivered() -> None:
    chain = ForwardChain(visited=("u1", "u2"), max_hops=2)

    decision = decide_user_target(
        "u3",
        UserRoutingSettings(),
        presence(),
        registered=True,
        active_calls=0,
        now=T0,
        chain=chain,
    )

    assert decision == Deliver(user="u3", chain=chain.enter("u3"))


def test_a_handset_answering_busy_uses_the_busy_forward() -> None:
    settings = UserRoutingSettings(forward_busy=rule("204"))

    assert decide_after_busy("bob", settings, CHAIN) == Forward(
        user="bob", target="204", reason=ForwardReason.BUSY, chain=CHAIN
    )
    assert decide_after_busy("bob", UserRoutingSettings(), CHAIN) == Rejected(
        status=486, reason="busy"
    )


def test_no_answer_in_time_uses_the_no_answer_forward() -> None:
    settings = UserRoutingSettings(forward_no_answer=rule("203"))

    assert decide_after_no_answer("bob", settings, CHAIN) == Forward(
        user="bob", target="203", reason=ForwardReason.NO_ANSWER, chain=CHAIN
    )
    assert decide_after_no_answer("bob", UserRoutingSettings(), CHAIN) == Rejected(
        status=480, reason="no answer"
    )


# -- user settings storage -----------------------------------------------------------------------


def test_settings_round_trip_through_a_dict() -> None:
    settings = UserRoutingSettings(
        dnd_allowed=False,
        call_waiting=False,
        forward_always=rule("202", enabled=False),
        forward_busy=rule("+4930999888"),
        forward_no_answer=rule("sip:voicemail@pbx.example.com"),
        no_answer_timeout=15,
    )

    assert UserRoutingSettings.from_dict(settings.to_dict()) == settings


def test_empty_settings_are_the_defaults() -> None:
    assert UserRoutingSettings.from_dict({}) == UserRoutingSettings()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"dnd_allowed": "no"}, "dnd_allowed"),
        ({"call_waiting": 1}, "call_waiting"),
        ({"no_answer_timeout": 2}, "no_answer_timeout"),
        ({"no_answer_timeout": 301}, "no_answer_timeout"),
        ({"no_answer_timeout": "20"}, "no_answer_timeout"),
        ({"forward_busy": "202"}, "forward_busy"),
        ({"forward_busy": {"enabled": "yes", "target": "202"}}, "forward_busy.enabled"),
        ({"forward_busy": {"enabled": True, "target": ""}}, "forward_busy.target"),
        ({"forward_busy": {"enabled": True, "target": "2 02"}}, "forward_busy.target"),
        ({"forward_busy": {"enabled": True, "target": "*30"}}, "forward_busy.target"),
        ({"forward_busy": {"enabled": True}}, "forward_busy.target"),
    ],
)
def test_invalid_settings_are_rejected_naming_the_field(
    data: Mapping[str, Any], field: str
) -> None:
    with pytest.raises(RoutingError) as caught:
        UserRoutingSettings.from_dict(data)
    assert (caught.value.field, caught.value.status) == (field, 400)


@given(st.text(max_size=80))
def test_classify_answers_any_string_with_a_decision(dialled: str) -> None:
    decision = classify(dialled, context())

    assert isinstance(decision, PresenceCodeRoute | UserRoute | TrunkRoute | Rejected)


@given(st.text(alphabet="0123456789*#+%23-(). ", max_size=40))
def test_classify_answers_any_dialled_digits_with_a_decision(dialled: str) -> None:
    decision = classify(dialled, context())

    assert isinstance(decision, PresenceCodeRoute | UserRoute | TrunkRoute | Rejected)


def test_numbers_outside_the_trunk_pattern_are_forbidden_but_emergency_passes() -> None:
    import re as _re

    ctx = DialContext(
        caller="u1", default_region="DE", trunk="upstream", trunk_pattern=_re.compile(r"\+49.*")
    )
    assert classify("+4930123456", ctx) == TrunkRoute(trunk="upstream", number="+4930123456")
    assert classify("+441234567890", ctx) == Rejected(
        status=403, reason="number not allowed on the trunk"
    )
    assert classify("112", ctx) == TrunkRoute(trunk="upstream", number="112", emergency=True)
