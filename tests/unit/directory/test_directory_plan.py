from typing import Any

import pytest
from sip2uc_control.directory.apply import apply_plan
from sip2uc_control.directory.memory import InMemoryUserRepository
from sip2uc_control.directory.model import (
    DirectoryEntry,
    ExistingUser,
    MissingPolicy,
    PlanAction,
    PlanItem,
    RowError,
    SourceRecord,
)
from sip2uc_control.directory.plan import build_plan

C, U, N, S, X, M = (
    PlanAction.CREATE,
    PlanAction.UPDATE,
    PlanAction.UNCHANGED,
    PlanAction.SKIP,
    PlanAction.CONFLICT,
    PlanAction.MISSING,
)


def entry(n: int, **changes: Any) -> DirectoryEntry:
    values: dict[str, Any] = {
        "source_id": f"g{n}",
        "sip_uri": f"sip:user{n}@example.com",
        "display_name": f"User {n}",
        "e164": f"+498912345{n:02d}",
        "extension": f"1{n:02d}",
        "email": f"user{n}@example.com",
        "origin": f"row {n}",
    }
    values.update(changes)
    return DirectoryEntry(**values)


def user(n: int, **changes: Any) -> ExistingUser:
    values: dict[str, Any] = {
        "id": f"u{n}",
        "source_id": f"g{n}",
        "sip_uri": f"sip:user{n}@example.com",
        "display_name": f"User {n}",
        "e164": f"+498912345{n:02d}",
        "extension": f"1{n:02d}",
        "email": f"user{n}@example.com",
    }
    values.update(changes)
    return ExistingUser(**values)


def actions(items: tuple[PlanItem, ...]) -> list[tuple[PlanAction, str | None]]:
    return [(item.action, item.user_id) for item in items]


def test_new_entry_is_created_with_all_its_values() -> None:
    plan = build_plan([entry(1)], [], source="corp")
    (item,) = plan.items
    assert item.action is C
    assert dict(item.changes) == {
        "sip_uri": (None, "sip:user1@example.com"),
        "display_name": (None, "User 1"),
        "e164": (None, "+49891234501"),
        "extension": (None, "101"),
        "email": (None, "user1@example.com"),
        "enabled": (None, True),
        "source_id": (None, "g1"),
        "source": (None, "corp"),
    }


def test_identical_entry_is_unchanged() -> None:
    plan = build_plan([entry(1)], [user(1)])
    assert actions(plan.items) == [(N, "u1")]
    assert dict(plan.items[0].changes) == {}


def test_changed_phone_number_is_one_update_with_old_and_new() -> None:
    plan = build_plan([entry(1, e164="+4930123456"), entry(2)], [user(1), user(2)])
    assert actions(plan.items) == [(U, "u1"), (N, "u2")]
    assert dict(plan.items[0].changes) == {"e164": ("+49891234501", "+4930123456")}


def test_renamed_sip_address_matched_by_source_id_updates_not_duplicates() -> None:
    plan = build_plan([entry(1, sip_uri="sip:renamed@example.com")], [user(1)])
    assert actions(plan.items) == [(U, "u1")]
    assert dict(plan.items[0].changes) == {
        "sip_uri": ("sip:user1@example.com", "sip:renamed@example.com")
    }


def test_hand_made_user_with_same_sip_uri_is_adopted() -> None:
    plan = build_plan([entry(1)], [user(1, source_id=None)])
    assert actions(plan.items) == [(U, "u1")]
    assert dict(plan.items[0].changes) == {"source_id": (None, "g1")}


def test_user_of_recreated_account_is_adopted_under_the_new_id() -> None:
    plan = build_plan([entry(1, source_id="g1-new")], [user(1)])
    assert actions(plan.items) == [(U, "u1")]
    assert dict(plan.items[0].changes) == {"source_id": ("g1", "g1-new")}


def test_overridden_fields_are_kept() -> None:
    existing = user(1, display_name="Front Desk", overridden=frozenset({"display_name"}))
    plan = build_plan([entry(1, display_name="Alice", email="new@example.com")], [existing])
    assert actions(plan.items) == [(U, "u1")]
    assert dict(plan.items[0].changes) == {"email": ("user1@example.com", "new@example.com")}


def test_only_overridden_differences_mean_unchanged() -> None:
    existing = user(1, extension="999", overridden=frozenset({"extension"}))
    assert actions(build_plan([entry(1)], [existing]).items) == [(N, "u1")]


def test_bad_row_is_skipped_and_the_rest_planned() -> None:
    bad = RowError(origin="row 7", message="number: 'x' cannot be read")
    plan = build_plan([entry(1), bad, entry(2)], [])
    assert actions(plan.items) == [(C, None), (C, None), (S, None)]
    assert (plan.items[2].origin, plan.items[2].reason) == ("row 7", "number: 'x' cannot be read")


def test_user_behind_a_bad_row_is_not_missing() -> None:
    bad = RowError(origin="row 1", message="bad", source_id="g1")
    plan = build_plan([bad], [user(1)])
    assert actions(plan.items) == [(S, "u1")]


def test_disabled_unknown_account_is_skipped() -> None:
    plan = build_plan([entry(1, disabled=True)], [])
    assert actions(plan.items) == [(S, None)]
    assert plan.items[0].reason == "account disabled in the directory"


def test_removed_entry_is_missing_and_only_reported_by_default() -> None:
    plan = build_plan([entry(1)], [user(1), user(2)])
    assert actions(plan.items) == [(N, "u1"), (M, "u2")]
    assert plan.items[1].reason == "no longer in the directory"
    assert dict(plan.items[1].changes) == {}


def test_missing_user_disabled_when_asked() -> None:
    plan = build_plan([], [user(2)], disable_missing=True)
    assert plan.missing_policy is MissingPolicy.DISABLE
    assert dict(plan.items[0].changes) == {"enabled": (True, False)}
    assert plan.items[0].reason == "no longer in the directory; will be disabled"


def test_missing_user_enabled_by_hand_is_not_disabled() -> None:
    plan = build_plan([], [user(2, overridden=frozenset({"enabled"}))], disable_missing=True)
    assert dict(plan.items[0].changes) == {}


def test_account_disabled_in_directory_makes_its_user_missing() -> None:
    plan = build_plan([entry(1, disabled=True)], [user(1)])
    assert actions(plan.items) == [(M, "u1")]
    assert plan.items[0].reason == "account disabled in the directory"


def test_user_disabled_by_an_earlier_import_is_re_enabled() -> None:
    plan = build_plan([entry(1)], [user(1, enabled=False)])
    assert dict(plan.items[0].changes) == {"enabled": (False, True)}


def test_hand_made_users_are_never_missing() -> None:
    assert build_plan([], [user(1, source_id=None)]).items == ()


def test_users_of_another_source_are_neither_matched_nor_missing() -> None:
    other = user(1, source="hr-csv")
    plan = build_plan([entry(1)], [other], source="corp-ad")
    assert actions(plan.items) == [(X, None)]
    assert plan.items[0].reason == (
        "SIP URI sip:user1@example.com belongs to user u1 of source 'hr-csv'; "
        "sip_uri sip:user1@example.com held by user u1; "
        "extension 101 held by user u1; e164 +49891234501 held by user u1"
    )


def test_two_entries_claiming_one_extension_both_conflict() -> None:
    plan = build_plan([entry(1, extension="500"), entry(2, extension="500"), entry(3)], [])
    assert actions(plan.items) == [(C, None), (X, None), (X, None)]
    assert plan.items[1].reason == "extension 500 also claimed by row 2"
    assert plan.items[2].reason == "extension 500 also claimed by row 1"


def test_many_claimants_are_named_in_part() -> None:
    plan = build_plan([entry(n, extension="500") for n in range(1, 6)], [])
    assert plan.items[0].reason == "extension 500 also claimed by row 2, row 3, row 4 and 1 more"


def test_entry_claiming_a_number_held_by_an_unrelated_user_conflicts() -> None:
    plan = build_plan([entry(1, e164="+49891234502")], [user(1), user(2, source_id=None)])
    assert actions(plan.items) == [(X, "u1")]
    assert plan.items[0].reason == "e164 +49891234502 held by user u2"


def test_entry_claiming_the_sip_uri_of_a_renamed_user_conflicts_until_it_is_free() -> None:
    records = [entry(1, sip_uri="sip:new@example.com"), entry(2, sip_uri="sip:user1@example.com")]
    plan = build_plan(records, [user(1)])
    assert actions(plan.items) == [(U, "u1"), (X, None)]
    assert plan.items[1].reason == "sip_uri sip:user1@example.com held by user u1"


def test_values_of_users_being_deleted_are_free() -> None:
    plan = build_plan([entry(2, extension="101")], [user(1)], delete_missing=True)
    assert actions(plan.items) == [(C, None), (M, "u1")]


def test_duplicate_source_id_conflicts() -> None:
    plan = build_plan([entry(1), entry(2, source_id="g1")], [])
    assert [item.action for item in plan.items] == [X, X]
    assert plan.items[0].reason == "directory id g1 appears more than once"


def test_conflicting_entry_protects_its_user_from_missing() -> None:
    plan = build_plan([entry(1, extension="102"), entry(2, extension="202")], [user(1), user(2)])
    assert actions(plan.items) == [(U, "u2"), (X, "u1")]


def test_both_missing_flags_are_refused() -> None:
    with pytest.raises(ValueError, match="mutually exclusive"):
        build_plan([], [], disable_missing=True, delete_missing=True)


def test_order_is_independent_of_input_order() -> None:
    records: list[SourceRecord] = [
        entry(3),
        entry(1, display_name="x"),
        RowError(origin="row 9", message="m"),
        entry(2),
    ]
    users = [user(2), user(1), user(5)]
    forward = build_plan(records, users)
    backward = build_plan(list(reversed(records)), list(reversed(users)))
    assert forward == backward
    assert actions(forward.items) == [(C, None), (U, "u1"), (N, "u2"), (S, None), (M, "u5")]


def test_counts_cover_every_action() -> None:
    plan = build_plan([entry(1), entry(2, display_name="x"), entry(3)], [user(2), user(3), user(4)])
    assert plan.summary() == "create=1 update=1 unchanged=1 skip=0 conflict=0 missing=1"


async def test_applying_then_replanning_is_all_unchanged() -> None:
    records = [entry(n) for n in range(1, 6)] + [entry(6, display_name="changed")]
    repo = InMemoryUserRepository([user(6), user(9, source_id=None)])
    first = build_plan(records, repo.existing_users(), source="corp")
    await apply_plan(first, repo, lambda: "pw")
    second = build_plan(records, repo.existing_users(), source="corp")
    assert second.counts()[N] == 6
    assert second.summary() == "create=0 update=0 unchanged=6 skip=0 conflict=0 missing=0"


# --- sources this one adopts, and the handsets' digest algorithms --------------------------------


def test_users_of_an_adopted_source_are_updated_when_listed_and_never_missing() -> None:
    users = [user(1, source="csv"), user(2, source="csv"), user(3, source="csv:staff")]

    plan = build_plan([entry(1)], users, source="csv:staff", adopts=frozenset({"csv"}))

    assert actions(plan.items) == [(U, "u1"), (M, "u3")]
    assert dict(plan.items[0].changes) == {"source": ("csv", "csv:staff")}


def test_algorithms_a_source_does_not_manage_are_left_as_they_are() -> None:
    plan = build_plan(
        [entry(1, digest_algorithms=None)],
        [user(1, digest_algorithms="SHA-256", source="corp")],
        source="corp",
    )

    assert actions(plan.items) == [(N, "u1")]


def test_algorithms_a_source_manages_are_synced_empty_meaning_the_default() -> None:
    plan = build_plan(
        [entry(1, digest_algorithms=""), entry(2, digest_algorithms="SHA-256 MD5")],
        [user(1, digest_algorithms="SHA-256", source="corp"), user(2, source="corp")],
        source="corp",
    )

    assert [dict(item.changes) for item in plan.items] == [
        {"digest_algorithms": ("SHA-256", "")},
        {"digest_algorithms": ("", "SHA-256 MD5")},
    ]


def test_a_user_without_handsets_gets_no_algorithms() -> None:
    plan = build_plan(
        [entry(1, digest_algorithms="SHA-256")],
        [user(1, digest_algorithms=None, source="corp")],
        source="corp",
    )

    assert actions(plan.items) == [(N, "u1")]


async def test_created_users_carry_the_algorithms_to_the_repository() -> None:
    repo = InMemoryUserRepository()
    plan = build_plan([entry(1, digest_algorithms="SHA-256")], [], source="corp")

    await apply_plan(plan, repo)

    (created,) = repo.existing_users()
    assert created.digest_algorithms == "SHA-256"
    assert plan.items[0].changes["digest_algorithms"] == (None, "SHA-256")
