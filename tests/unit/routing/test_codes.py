"""The presence-codes table: defaults, matching, and validation of admin settings."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sip2uc_control.presence import Availability
from sip2uc_control.routing import (
    DEFAULT_CODES,
    CodeAction,
    CodeError,
    CodeMatch,
    CodeTable,
    PresenceCode,
)

# The documented default table: code, action, what it sets, whether a target follows.
DEFAULTS: list[tuple[str, CodeAction, Availability | None, bool]] = [
    ("*30", CodeAction.DND_ON, Availability.DO_NOT_DISTURB, False),
    ("*31", CodeAction.DND_OFF, None, False),
    ("*32", CodeAction.AWAY, Availability.AWAY, False),
    ("*33", CodeAction.BE_RIGHT_BACK, Availability.BE_RIGHT_BACK, False),
    ("*34", CodeAction.BUSY, Availability.BUSY, False),
    ("*35", CodeAction.RESET, None, False),
    ("*36", CodeAction.APPEAR_OFFLINE, Availability.OFFLINE, False),
    ("*72", CodeAction.FORWARD_ALWAYS_ON, None, True),
    ("*73", CodeAction.FORWARD_ALWAYS_OFF, None, False),
    ("*90", CodeAction.FORWARD_BUSY_ON, None, True),
    ("*91", CodeAction.FORWARD_BUSY_OFF, None, False),
    ("*92", CodeAction.FORWARD_NO_ANSWER_ON, None, True),
    ("*93", CodeAction.FORWARD_NO_ANSWER_OFF, None, False),
]


def test_the_default_table_is_the_documented_one() -> None:
    assert [
        (c.code, c.action, c.action.sets_availability, c.action.takes_target)
        for c in DEFAULT_CODES.codes
    ] == DEFAULTS


def test_reset_clears_rather_than_setting_available() -> None:
    assert CodeAction.RESET.sets_availability is None
    assert CodeAction.RESET.is_presence


def test_forwarding_codes_are_not_presence_codes() -> None:
    assert not CodeAction.FORWARD_ALWAYS_ON.is_presence


@pytest.mark.parametrize(
    ("dialled", "code", "target"),
    [
        ("*30", "*30", None),
        ("*30#", "*30", None),
        ("*35", "*35", None),
        ("*72201", "*72", "201"),
        ("*72*201#", "*72", "201"),
        ("*72+4930123456", "*72", "+4930123456"),
        ("*90004930123", "*90", "004930123"),
    ],
)
def test_default_codes_match(dialled: str, code: str, target: str | None) -> None:
    match = DEFAULT_CODES.match(dialled)

    assert match is not None
    assert (match.code.code, match.target) == (code, target)


@pytest.mark.parametrize("dialled", ["*72", "*72#", "*72*", "*72abc", "*72**1"])
def test_a_forward_code_without_a_usable_target_matches_without_target(dialled: str) -> None:
    match = DEFAULT_CODES.match(dialled)

    assert match == CodeMatch(code=DEFAULT_CODES.codes[7], target=None)


@pytest.mark.parametrize("dialled", ["*301", "*30##", "*3", "*", "*99", "30", "201"])
def test_strings_that_are_not_codes_do_not_match(dialled: str) -> None:
    assert DEFAULT_CODES.match(dialled) is None


def test_a_table_round_trips_through_json() -> None:
    table = CodeTable.from_list(
        [
            {"code": "*78", "action": "dnd-on", "description": "DND", "duration": 3600},
            {"code": "*79", "action": "dnd-off"},
            {"code": "#21#", "action": "forward-always-off"},
        ]
    )

    assert CodeTable.from_list(json.loads(json.dumps(table.to_list()))) == table
    assert table.codes[0].duration == 3600


def test_the_default_table_round_trips() -> None:
    assert CodeTable.from_list(DEFAULT_CODES.to_list()) == DEFAULT_CODES


@pytest.mark.parametrize(
    ("entries", "entry", "code", "field", "detail"),
    [
        (
            [{"code": "*30", "action": "dnd-on"}, {"code": "*30", "action": "away"}],
            1,
            "*30",
            "code",
            "duplicates entry 0",
        ),
        (
            [{"code": "*30", "action": "dnd-on"}, {"code": "*3", "action": "away"}],
            1,
            "*3",
            "code",
            "clashes with '*30' (entry 0)",
        ),
        (
            [{"code": "*7", "action": "dnd-on"}, {"code": "*72", "action": "forward-always-on"}],
            1,
            "*72",
            "code",
            "clashes with '*7' (entry 0)",
        ),
        ([{"code": "30", "action": "dnd-on"}], 0, "30", "code", "must be '*' or '#'"),
        ([{"code": "*3a", "action": "dnd-on"}], 0, "*3a", "code", "must be '*' or '#'"),
        ([{"code": "*", "action": "dnd-on"}], 0, "*", "code", "must be '*' or '#'"),
        ([{"action": "dnd-on"}], 0, None, "code", "must be '*' or '#'"),
        ([{"code": "*30", "action": "sleep"}], 0, "*30", "action", "'sleep' is not one of"),
        ([{"code": "*30"}], 0, "*30", "action", "None is not one of"),
        (
            [{"code": "*30", "action": "reset", "duration": 60}],
            0,
            "*30",
            "duration",
            "only codes that set a presence",
        ),
        (
            [{"code": "*30", "action": "away", "duration": 0}],
            0,
            "*30",
            "duration",
            "positive",
        ),
        (
            [{"code": "*30", "action": "away", "colour": "red"}],
            0,
            "*30",
            "entry",
            "unknown fields ['colour']",
        ),
        ([{"code": "*30", "action": "away", "description": 5}], 0, "*30", "description", ""),
        (["*30"], 0, None, "entry", "expected an object"),
    ],
)
def test_invalid_tables_are_rejected_naming_the_entry(
    entries: list[Any], entry: int, code: str | None, field: str, detail: str
) -> None:
    with pytest.raises(CodeError) as caught:
        CodeTable.from_list(entries)

    assert (caught.value.entry, caught.value.code, caught.value.field) == (entry, code, field)
    assert detail in str(caught.value)
    assert str(caught.value).startswith(f"entry {entry}")


def test_a_table_must_be_a_list() -> None:
    with pytest.raises(CodeError) as caught:
        CodeTable.from_list("*30")  # type: ignore[arg-type]
    assert caught.value.field == "presence_codes"


def test_codes_built_in_code_are_validated_too() -> None:
    with pytest.raises(CodeError) as caught:
        PresenceCode(code="*30x", action=CodeAction.AWAY)
    assert caught.value.field == "code"
