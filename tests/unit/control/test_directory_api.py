"""DirectoryService.ImportUsers: CSV imports as a client sees them over real gRPC and SQLite."""

from __future__ import annotations

import logging
from collections import Counter

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sip2uc.v1 import common_pb2, directory_pb2, directory_pb2_grpc, users_pb2, users_pb2_grpc

HEADER = "sip_uri,display_name,extension,e164,email\n"
ALICE = "sip:alice@example.com,Alice,2001,089 2000001,alice@example.com\n"
BOB = "sip:bob@example.com,Bob,2002,089 2000002,\n"
CAROL = "carol@example.com,Carol,2003,+49 89 2000003,\n"
STAFF = HEADER + ALICE + BOB + CAROL


async def run_import(
    channel: grpc.aio.Channel, content: str, *, dry_run: bool = False, region: str = "DE"
) -> list[directory_pb2.ImportUsersResponse]:
    stub = directory_pb2_grpc.DirectoryServiceStub(channel)
    request = directory_pb2.ImportUsersRequest(
        csv=directory_pb2.CsvSource(content=content.encode(), filename="staff.csv"),
        dry_run=dry_run,
        default_region=region,
    )
    return [event async for event in stub.ImportUsers(request)]


def of(events: list[directory_pb2.ImportUsersResponse], kind: str) -> list[object]:
    return [getattr(e, kind) for e in events if e.WhichOneof("event") == kind]


def rows(events: list[directory_pb2.ImportUsersResponse]) -> list[directory_pb2.ImportRowOutcome]:
    return [e.row for e in events if e.WhichOneof("event") == "row"]


def actions(events: list[directory_pb2.ImportUsersResponse]) -> dict[str, str]:
    """SIP URI -> action name, for every row."""
    return {
        r.sip_uri: directory_pb2.ImportAction.Name(r.action).removeprefix("IMPORT_ACTION_")
        for r in rows(events)
    }


def violations(err: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return fields


async def test_first_import_creates_every_row(channel: grpc.aio.Channel) -> None:
    events = await run_import(channel, STAFF)

    assert actions(events) == {
        "sip:alice@example.com": "CREATE",
        "sip:bob@example.com": "CREATE",
        "sip:carol@example.com": "CREATE",
    }
    assert [(r.row, r.applied) for r in rows(events)] == [(2, True), (3, True), (4, True)]
    summary = events[-1].summary
    assert dict(summary.counts) == {"IMPORT_ACTION_CREATE": 3}
    assert (summary.applied, summary.failed) == (True, 0)


async def test_stream_starts_with_progress_and_ends_with_the_summary(
    channel: grpc.aio.Channel,
) -> None:
    events = await run_import(channel, STAFF)

    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "progress"
    assert kinds[-1] == "summary"
    assert kinds.count("summary") == 1
    phases = [p.phase for p in of(events, "progress")]  # type: ignore[attr-defined]
    assert phases[:3] == ["reading", "planning", "applying"]
    last = of(events, "progress")[-1]
    assert (last.phase, last.rows_done, last.rows_total) == ("applying", 3, 3)  # type: ignore[attr-defined]


async def test_second_import_of_the_same_file_is_all_unchanged(channel: grpc.aio.Channel) -> None:
    await run_import(channel, STAFF)

    events = await run_import(channel, STAFF)

    assert set(actions(events).values()) == {"UNCHANGED"}
    assert of(events, "credential") == []
    assert dict(events[-1].summary.counts) == {"IMPORT_ACTION_UNCHANGED": 3}


async def test_changed_number_updates_exactly_that_user(channel: grpc.aio.Channel) -> None:
    await run_import(channel, STAFF)
    moved = BOB.replace("089 2000002", "089 2000009")

    events = await run_import(channel, HEADER + ALICE + moved + CAROL)

    (update,) = [r for r in rows(events) if r.action == directory_pb2.IMPORT_ACTION_UPDATE]
    assert (update.sip_uri, list(update.changes), update.applied) == (
        "sip:bob@example.com",
        ["e164: +49892000002 -> +49892000009"],
        True,
    )
    assert Counter(actions(events).values()) == {"UNCHANGED": 2, "UPDATE": 1}
    users = users_pb2_grpc.UserServiceStub(channel)
    bob = (await users.GetUser(users_pb2.GetUserRequest(name="sip:bob@example.com"))).user
    assert (bob.e164, bob.extension) == ("+49892000009", "2002")
    assert bob.devices[0].registering.has_password is True


async def test_bad_rows_are_reported_and_the_rest_imported(channel: grpc.aio.Channel) -> None:
    bad_number = "sip:dave@example.com,Dave,2004,call me,\n"
    bad_extension = "sip:erin@example.com,Erin,7,,\n"
    events = await run_import(channel, HEADER + ALICE + bad_number + bad_extension + BOB)

    by_row = {r.row: r for r in rows(events)}
    assert sorted(by_row) == [2, 3, 4, 5]
    assert (by_row[3].action, by_row[3].sip_uri, by_row[3].applied) == (
        directory_pb2.IMPORT_ACTION_SKIP,
        "sip:dave@example.com",
        False,
    )
    assert by_row[3].reason.startswith("number: phone number 'call me' cannot be read")
    assert (by_row[4].action, by_row[4].reason) == (
        directory_pb2.IMPORT_ACTION_SKIP,
        "extension: must be 2-10 digits",
    )
    assert [by_row[2].action, by_row[5].action] == [directory_pb2.IMPORT_ACTION_CREATE] * 2
    assert events[-1].summary.failed == 0


async def test_rows_claiming_one_extension_are_conflicts_and_not_created(
    channel: grpc.aio.Channel,
) -> None:
    twin = "sip:alice2@example.com,Alice Two,2001,,\n"
    events = await run_import(channel, HEADER + ALICE + twin + BOB)

    assert actions(events) == {
        "sip:alice@example.com": "CONFLICT",
        "sip:alice2@example.com": "CONFLICT",
        "sip:bob@example.com": "CREATE",
    }
    assert rows(events)[0].reason == "extension 2001 also claimed by row 3"


async def test_dry_run_reports_the_plan_and_changes_nothing(channel: grpc.aio.Channel) -> None:
    events = await run_import(channel, STAFF, dry_run=True)

    assert set(actions(events).values()) == {"CREATE"}
    assert [r.applied for r in rows(events)] == [False, False, False]
    assert of(events, "credential") == []
    assert events[-1].summary.applied is False
    users = users_pb2_grpc.UserServiceStub(channel)
    listed = await users.ListUsers(users_pb2.ListUsersRequest())
    assert listed.total_size == 0


async def test_credentials_are_streamed_once_for_each_created_user(
    channel: grpc.aio.Channel,
) -> None:
    events = await run_import(channel, STAFF)

    credentials = of(events, "credential")
    assert sorted(
        (c.sip_uri, c.extension, c.digest_username)  # type: ignore[attr-defined]
        for c in credentials
    ) == [
        ("sip:alice@example.com", "2001", "2001"),
        ("sip:bob@example.com", "2002", "2002"),
        ("sip:carol@example.com", "2003", "2003"),
    ]
    assert all(len(c.password) == 12 for c in credentials)  # type: ignore[attr-defined]
    created = {r.sip_uri: r.user for r in rows(events)}
    assert {c.sip_uri: c.user for c in credentials} == created  # type: ignore[attr-defined]
    again = await run_import(channel, STAFF)
    assert of(again, "credential") == []


async def test_generated_passwords_never_reach_the_logs(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    events = await run_import(channel, STAFF)

    passwords = [c.password for c in of(events, "credential")]  # type: ignore[attr-defined]
    assert len(passwords) == 3
    assert "directory import from csv" in caplog.text
    assert not [p for p in passwords if p in caplog.text]


async def test_created_users_can_be_fetched_with_their_handset(channel: grpc.aio.Channel) -> None:
    events = await run_import(channel, STAFF)
    (alice_row,) = [r for r in rows(events) if r.sip_uri == "sip:alice@example.com"]

    users = users_pb2_grpc.UserServiceStub(channel)
    alice = (await users.GetUser(users_pb2.GetUserRequest(name=alice_row.user))).user

    assert (alice.sip_uri, alice.display_name, alice.extension, alice.e164, alice.email) == (
        "sip:alice@example.com",
        "Alice",
        "2001",
        "+49892000001",
        "alice@example.com",
    )
    (device,) = alice.devices
    assert (device.registering.digest_username, device.registering.has_password) == (
        "2001",
        True,
    )
    assert device.registering.password == ""


async def test_user_without_extension_logs_in_with_the_sip_alias(
    channel: grpc.aio.Channel,
) -> None:
    events = await run_import(channel, HEADER + "sip:frank@example.com,Frank,,,\n")

    (credential,) = of(events, "credential")
    assert credential.digest_username == "frank"  # type: ignore[attr-defined]


async def test_field_set_by_hand_survives_a_reimport(channel: grpc.aio.Channel) -> None:
    await run_import(channel, STAFF)
    users = users_pb2_grpc.UserServiceStub(channel)
    await users.UpdateUser(
        users_pb2.UpdateUserRequest(
            user=users_pb2.User(name="sip:bob@example.com", display_name="Bobby"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        )
    )
    renamed = BOB.replace(",Bob,", ",Robert,").replace("089 2000002", "089 2000008")

    events = await run_import(channel, HEADER + ALICE + renamed + CAROL)

    (update,) = [r for r in rows(events) if r.sip_uri == "sip:bob@example.com"]
    assert list(update.changes) == ["e164: +49892000002 -> +49892000008"]
    bob = (await users.GetUser(users_pb2.GetUserRequest(name="sip:bob@example.com"))).user
    assert (bob.display_name, bob.e164) == ("Bobby", "+49892000008")


async def test_user_gone_from_the_file_is_disabled_when_asked(channel: grpc.aio.Channel) -> None:
    await run_import(channel, STAFF)
    stub = directory_pb2_grpc.DirectoryServiceStub(channel)
    request = directory_pb2.ImportUsersRequest(
        csv=directory_pb2.CsvSource(content=(HEADER + ALICE + BOB).encode(), filename="staff.csv"),
        default_region="DE",
        missing_users=directory_pb2.MISSING_USER_ACTION_DISABLE,
    )

    events = [e async for e in stub.ImportUsers(request)]

    (gone,) = [r for r in rows(events) if r.row == 0]
    assert (gone.sip_uri, gone.action, gone.applied, gone.source_ref) == (
        "sip:carol@example.com",
        directory_pb2.IMPORT_ACTION_DISABLE,
        True,
        "sip:carol@example.com",
    )
    users = users_pb2_grpc.UserServiceStub(channel)
    carol = (await users.GetUser(users_pb2.GetUserRequest(name="sip:carol@example.com"))).user
    assert carol.disabled is True


async def test_row_that_the_store_refuses_is_reported_not_applied(
    channel: grpc.aio.Channel,
) -> None:
    users = users_pb2_grpc.UserServiceStub(channel)
    # A hand-made user whose handset logs in as "2002" blocks that digest username.
    await users.CreateUser(
        users_pb2.CreateUserRequest(
            user=users_pb2.User(
                sip_uri="sip:desk@example.com",
                devices=[
                    users_pb2.Device(
                        registering=users_pb2.RegisteringDevice(
                            digest_username="2002", password="desk-pw-1"
                        )
                    )
                ],
            )
        )
    )

    events = await run_import(channel, STAFF)

    (bob,) = [r for r in rows(events) if r.sip_uri == "sip:bob@example.com"]
    assert (bob.action, bob.applied) == (directory_pb2.IMPORT_ACTION_CREATE, False)
    assert bob.reason.startswith("not applied: AlreadyExists: user.devices[0].registering")
    assert events[-1].summary.failed == 1
    assert len(of(events, "credential")) == 2


async def test_request_without_source_is_invalid_argument(channel: grpc.aio.Channel) -> None:
    stub = directory_pb2_grpc.DirectoryServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub.ImportUsers(directory_pb2.ImportUsersRequest()):
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(info.value) == ["source"]


async def test_csv_without_sip_address_column_is_invalid_argument(
    channel: grpc.aio.Channel,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await run_import(channel, "name,phone\nAlice,123\n")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(info.value) == ["csv.content"]


@pytest.mark.parametrize(
    ("source", "field"),
    [
        (directory_pb2.LdapSource(url="http://dc.example.com", base_dn="dc=x"), "ldap.url"),
        (directory_pb2.LdapSource(url="ldaps://", base_dn="dc=x"), "ldap.url"),
        (directory_pb2.LdapSource(url="ldaps://dc.example.com"), "ldap.base_dn"),
        (
            directory_pb2.LdapSource(url="ldap://dc.example.com", base_dn="dc=x", allow_plain=True),
            "ldap.allow_plain",
        ),
        (
            directory_pb2.LdapSource(url="ldaps://dc.example.com", base_dn="dc=x", filter="(cn=a"),
            "ldap.filter",
        ),
        (
            directory_pb2.LdapSource(
                url="ldaps://dc.example.com", base_dn="dc=x", attribute_map={"phone_nr": "x"}
            ),
            "ldap.attribute_map[phone_nr]",
        ),
    ],
)
async def test_bad_ldap_source_is_invalid_argument_naming_the_field(
    channel: grpc.aio.Channel, source: directory_pb2.LdapSource, field: str
) -> None:
    stub = directory_pb2_grpc.DirectoryServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub.ImportUsers(directory_pb2.ImportUsersRequest(ldap=source)):
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(info.value) == [field]


async def test_unknown_region_is_invalid_argument(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await run_import(channel, STAFF, region="XX")
    assert violations(info.value) == ["default_region"]


async def test_unreachable_directory_is_failed_precondition(channel: grpc.aio.Channel) -> None:
    stub = directory_pb2_grpc.DirectoryServiceStub(channel)
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    source = directory_pb2.LdapSource(url="ldaps://127.0.0.1:1", base_dn="dc=example,dc=com")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub.ImportUsers(directory_pb2.ImportUsersRequest(ldap=source)):
            pass
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "cannot bind to ldaps://127.0.0.1:1" in (info.value.details() or "")


async def test_import_left_by_its_caller_stops_and_the_next_one_completes_it(
    channel: grpc.aio.Channel,
) -> None:
    content = HEADER + "".join(f"sip:u{n}@example.com,U {n},{3000 + n},,\n" for n in range(50))
    stub = directory_pb2_grpc.DirectoryServiceStub(channel)
    call = stub.ImportUsers(
        directory_pb2.ImportUsersRequest(
            csv=directory_pb2.CsvSource(content=content.encode(), filename="staff.csv")
        )
    )
    async for event in call:
        if event.WhichOneof("event") == "credential":
            call.cancel()
            break

    events = await run_import(channel, content)

    counted = Counter(actions(events).values())
    assert counted["CREATE"] + counted["UNCHANGED"] == 50
    assert counted["UNCHANGED"] >= 1
    assert events[-1].summary.failed == 0


async def test_user_made_by_hand_is_adopted_and_keeps_its_handset(
    channel: grpc.aio.Channel,
) -> None:
    users = users_pb2_grpc.UserServiceStub(channel)
    made = await users.CreateUser(
        users_pb2.CreateUserRequest(
            user=users_pb2.User(
                sip_uri="sip:alice@example.com",
                extension="2001",
                devices=[
                    users_pb2.Device(registering=users_pb2.RegisteringDevice(password="desk-pw-1"))
                ],
            )
        )
    )

    first = await run_import(channel, HEADER + ALICE)
    second = await run_import(channel, HEADER + ALICE)

    (adopted,) = rows(first)
    assert (adopted.action, adopted.user) == (directory_pb2.IMPORT_ACTION_UPDATE, made.user.name)
    assert sorted(c.split(":")[0] for c in adopted.changes) == [
        "display_name",
        "e164",
        "email",
        "source",
        "source_id",
    ]
    assert actions(second) == {"sip:alice@example.com": "UNCHANGED"}
    alice = (await users.GetUser(users_pb2.GetUserRequest(name=made.user.name))).user
    assert alice.devices == made.user.devices


# --- named CSV sources ------------------------------------------------------------------------


async def import_named(
    channel: grpc.aio.Channel, content: str, *, filename: str = "", source: str = ""
) -> list[directory_pb2.ImportUsersResponse]:
    stub = directory_pb2_grpc.DirectoryServiceStub(channel)
    request = directory_pb2.ImportUsersRequest(
        csv=directory_pb2.CsvSource(content=content.encode(), filename=filename, source=source),
        default_region="DE",
    )
    return [event async for event in stub.ImportUsers(request)]


async def test_a_partial_file_of_another_source_reports_nobody_missing(
    channel: grpc.aio.Channel,
) -> None:
    await import_named(channel, HEADER + ALICE + BOB, filename="sales.csv")

    events = await import_named(channel, HEADER + CAROL, filename="support.csv")

    assert actions(events) == {"sip:carol@example.com": "CREATE"}
    user = await users_pb2_grpc.UserServiceStub(channel).GetUser(
        users_pb2.GetUserRequest(name="2003")
    )
    assert user.user.origin.source == "csv:support.csv"


async def test_the_source_option_names_the_source_whatever_the_file_is_called(
    channel: grpc.aio.Channel,
) -> None:
    await import_named(channel, HEADER + ALICE + BOB, filename="export-monday.csv", source="hq")

    events = await import_named(channel, HEADER + ALICE, filename="export-friday.csv", source="hq")

    assert [r.sip_uri for r in rows(events) if r.action == directory_pb2.IMPORT_ACTION_MISSING] == [
        "sip:bob@example.com"
    ]


async def test_users_of_the_unnamed_csv_source_are_adopted_by_a_named_one_never_missing(
    channel: grpc.aio.Channel,
) -> None:
    await import_named(channel, HEADER + ALICE + BOB)  # no name at all: source "csv"

    events = await import_named(channel, HEADER + ALICE, filename="staff.csv")

    assert [(r.sip_uri, r.action) for r in rows(events)] == [
        ("sip:alice@example.com", directory_pb2.IMPORT_ACTION_UPDATE)
    ]
    assert list(rows(events)[0].changes) == ["source: csv -> csv:staff.csv"]


async def test_a_source_name_with_control_characters_is_refused(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await import_named(channel, HEADER + ALICE, source="bad\nname")

    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "csv.source" in (info.value.details() or "")


# --- the handsets' digest algorithms ------------------------------------------------------------

ALGO_HEADER = "sip_uri,display_name,extension,digest_algorithm\n"


async def algorithms_of(channel: grpc.aio.Channel, ext: str) -> list[int]:
    user = await users_pb2_grpc.UserServiceStub(channel).GetUser(users_pb2.GetUserRequest(name=ext))
    return list(user.user.devices[0].registering.digest_algorithms)


async def test_a_digest_algorithm_column_sets_and_clears_the_handsets_algorithms(
    channel: grpc.aio.Channel,
) -> None:
    sha, md5 = common_pb2.DIGEST_ALGORITHM_SHA_256, common_pb2.DIGEST_ALGORITHM_MD5
    await import_named(
        channel,
        ALGO_HEADER + "alice@example.com,Alice,2001,SHA-256\nbob@example.com,Bob,2002,\n",
        filename="staff.csv",
    )
    assert (await algorithms_of(channel, "2001"), await algorithms_of(channel, "2002")) == (
        [sha],
        [],
    )

    changed = await import_named(
        channel,
        ALGO_HEADER + 'alice@example.com,Alice,2001,"sha-256, md5"\nbob@example.com,Bob,2002,MD5\n',
        filename="staff.csv",
    )
    assert {r.sip_uri: list(r.changes) for r in rows(changed)} == {
        "sip:alice@example.com": ["digest_algorithms: SHA-256 -> SHA-256 MD5"],
        "sip:bob@example.com": ["digest_algorithms: (default) -> MD5"],
    }
    assert await algorithms_of(channel, "2001") == [sha, md5]

    cleared = await import_named(
        channel,
        ALGO_HEADER + "alice@example.com,Alice,2001,default\nbob@example.com,Bob,2002,MD5\n",
        filename="staff.csv",
    )
    assert actions(cleared)["sip:alice@example.com"] == "UPDATE"
    assert await algorithms_of(channel, "2001") == []


async def test_a_file_without_the_column_leaves_the_algorithms_alone(
    channel: grpc.aio.Channel,
) -> None:
    await import_named(
        channel, ALGO_HEADER + "alice@example.com,Alice,2001,SHA-256\n", filename="staff.csv"
    )

    events = await import_named(
        channel,
        "sip_uri,display_name,extension\nalice@example.com,Alice,2001\n",
        filename="staff.csv",
    )

    assert actions(events) == {"sip:alice@example.com": "UNCHANGED"}
    assert await algorithms_of(channel, "2001") == [common_pb2.DIGEST_ALGORITHM_SHA_256]


async def test_an_unknown_algorithm_skips_the_row_and_says_why(channel: grpc.aio.Channel) -> None:
    events = await import_named(
        channel, ALGO_HEADER + "alice@example.com,Alice,2001,SHA-512\n", filename="staff.csv"
    )

    (row,) = rows(events)
    assert row.action == directory_pb2.IMPORT_ACTION_SKIP
    assert row.reason == "digest algorithm 'SHA-512' is not MD5 or SHA-256"


async def test_algorithms_set_by_hand_survive_a_reimport(channel: grpc.aio.Channel) -> None:
    await import_named(
        channel, ALGO_HEADER + "alice@example.com,Alice,2001,MD5\n", filename="staff.csv"
    )
    users = users_pb2_grpc.UserServiceStub(channel)
    alice = (await users.GetUser(users_pb2.GetUserRequest(name="2001"))).user
    update = users_pb2.User(name=alice.name)
    update.devices.add().CopyFrom(alice.devices[0])
    update.devices[0].registering.ClearField("digest_algorithms")
    update.devices[0].registering.digest_algorithms.append(common_pb2.DIGEST_ALGORITHM_SHA_256)
    await users.UpdateUser(
        users_pb2.UpdateUserRequest(
            user=update, update_mask=field_mask_pb2.FieldMask(paths=["devices"])
        )
    )

    events = await import_named(
        channel, ALGO_HEADER + "alice@example.com,Alice,2001,MD5\n", filename="staff.csv"
    )

    assert actions(events) == {"sip:alice@example.com": "UNCHANGED"}
    assert await algorithms_of(channel, "2001") == [common_pb2.DIGEST_ALGORITHM_SHA_256]
