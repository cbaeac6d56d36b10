import csv
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from sip2uc_control.directory.apply import (
    PASSWORD_ALPHABET,
    CreatedUser,
    NewUser,
    apply_plan,
    generate_handset_password,
    write_provisioning_csv,
)
from sip2uc_control.directory.memory import InMemoryUserRepository
from sip2uc_control.directory.model import (
    DirectoryEntry,
    ExistingUser,
    FieldValue,
    PlanAction,
    PlanItem,
)
from sip2uc_control.directory.plan import build_plan


def entry(n: int, **changes: str) -> DirectoryEntry:
    values = {
        "source_id": f"g{n}",
        "sip_uri": f"sip:user{n}@example.com",
        "display_name": f"User {n}",
        "extension": f"1{n:02d}",
        "origin": f"row {n}",
    }
    values.update(changes)
    return DirectoryEntry(**values)  # type: ignore[arg-type]


def imported(n: int, **changes: object) -> ExistingUser:
    values: dict[str, object] = {
        "id": f"u{n}",
        "source_id": f"g{n}",
        "source": "corp",
        "sip_uri": f"sip:user{n}@example.com",
        "display_name": f"User {n}",
        "extension": f"1{n:02d}",
    }
    values.update(changes)
    return ExistingUser(**values)  # type: ignore[arg-type]


class Counter:
    """A predictable password generator."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"pw{self.n}"


def test_generated_password_has_twelve_unambiguous_characters() -> None:
    password = generate_handset_password()
    assert len(password) == 12
    assert set(password) <= set(PASSWORD_ALPHABET)
    assert not set("0O1lI") & set(PASSWORD_ALPHABET)


async def test_created_user_gets_a_password_returned_once_and_stored_hashed() -> None:
    repo = InMemoryUserRepository()
    plan = build_plan([entry(1)], [], source="corp")
    result = await apply_plan(plan, repo, Counter())
    assert result.created == [
        CreatedUser(
            user_id="u1",
            sip_uri="sip:user1@example.com",
            display_name="User 1",
            extension="101",
            e164=None,
            password="pw1",
        )
    ]
    assert repo.users["u1"] == imported(1)
    assert "pw1" not in repr(result)
    assert repo.password_digests["u1"] != "pw1"


async def test_update_sends_only_changed_fields() -> None:
    seen: list[tuple[str, Mapping[str, FieldValue]]] = []

    class Recording(InMemoryUserRepository):
        async def update_user(self, user_id: str, changes: Mapping[str, FieldValue]) -> None:
            seen.append((user_id, dict(changes)))
            await super().update_user(user_id, changes)

    repo = Recording([imported(1)])
    plan = build_plan([entry(1, extension="555")], repo.existing_users(), source="corp")
    result = await apply_plan(plan, repo, Counter())
    assert seen == [("u1", {"extension": "555"})]
    assert result.updated == ["u1"]


async def test_missing_users_are_disabled_or_deleted_only_when_asked() -> None:
    repo = InMemoryUserRepository([imported(1), imported(2), imported(3)])
    reported = await apply_plan(build_plan([entry(1)], repo.existing_users()), repo, Counter())
    assert (reported.disabled, reported.deleted) == ([], [])

    plan = build_plan([entry(1), entry(3)], repo.existing_users(), disable_missing=True)
    assert (await apply_plan(plan, repo, Counter())).disabled == ["u2"]
    assert repo.users["u2"].enabled is False

    plan = build_plan([entry(1)], repo.existing_users(), delete_missing=True)
    assert sorted((await apply_plan(plan, repo, Counter())).deleted) == ["u2", "u3"]
    assert sorted(repo.users) == ["u1"]


async def test_deletes_run_before_creates_so_a_freed_extension_can_be_reused() -> None:
    order: list[str] = []

    class Recording(InMemoryUserRepository):
        async def create_user(self, user: NewUser, handset_password: str) -> str:
            order.append("create")
            return await super().create_user(user, handset_password)

        async def delete_user(self, user_id: str) -> None:
            order.append("delete")
            await super().delete_user(user_id)

    repo = Recording([imported(1)])
    plan = build_plan([entry(2, extension="101")], repo.existing_users(), delete_missing=True)
    await apply_plan(plan, repo, Counter())
    assert order == ["delete", "create"]


async def test_failing_row_is_recorded_and_the_rest_applied() -> None:
    class Flaky(InMemoryUserRepository):
        async def create_user(self, user: NewUser, handset_password: str) -> str:
            if user.sip_uri == "sip:user2@example.com":
                raise RuntimeError("unique constraint failed")
            return await super().create_user(user, handset_password)

    repo = Flaky()
    result = await apply_plan(build_plan([entry(1), entry(2), entry(3)], []), repo, Counter())
    assert [c.sip_uri for c in result.created] == ["sip:user1@example.com", "sip:user3@example.com"]
    assert [(f.item.origin, f.error) for f in result.failed] == [
        ("row 2", "RuntimeError: unique constraint failed")
    ]
    assert result.summary() == "created=2 updated=0 disabled=0 deleted=0 failed=1"


async def test_progress_is_reported_for_every_applied_row() -> None:
    calls: list[tuple[int, int, PlanAction]] = []

    def progress(done: int, total: int, item: PlanItem) -> None:
        calls.append((done, total, item.action))

    repo = InMemoryUserRepository([imported(1)])
    plan = build_plan([entry(1, display_name="x"), entry(2)], repo.existing_users())
    await apply_plan(plan, repo, Counter(), progress=progress)
    assert calls == [(1, 2, PlanAction.UPDATE), (2, 2, PlanAction.CREATE)]


def test_provisioning_csv_is_owner_only_and_lists_credentials(tmp_path: Path) -> None:
    path = tmp_path / "handsets.csv"
    path.write_text("old content")
    os.chmod(path, 0o644)
    rows = [
        CreatedUser(
            user_id="u1",
            sip_uri="sip:alice@example.com",
            display_name="Alice",
            extension="456",
            e164="+4989123456",
            password="abc",
        )
    ]
    assert write_provisioning_csv(path, rows) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with path.open(newline="") as stream:
        assert list(csv.reader(stream)) == [
            ["sip_uri", "username", "display_name", "extension", "e164", "password"],
            ["sip:alice@example.com", "alice", "Alice", "456", "+4989123456", "abc"],
        ]
