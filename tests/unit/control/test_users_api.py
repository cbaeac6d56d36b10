"""UserService: CRUD with validation, as a client sees it over real gRPC and SQLite."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sip2uc.v1 import users_pb2, users_pb2_grpc


def handset(password: str = "s3cret-pw") -> users_pb2.Device:
    return users_pb2.Device(registering=users_pb2.RegisteringDevice(password=password))


def alice(**overrides: object) -> users_pb2.User:
    fields: dict[str, object] = {
        "sip_uri": "sip:alice@example.com",
        "display_name": "Alice",
        "extension": "456",
        "e164": "+4989123456",
        "devices": [handset()],
    }
    fields.update(overrides)
    return users_pb2.User(**fields)  # type: ignore[arg-type]


def violations(err: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    out = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            out += [(v.field, v.description) for v in br.field_violations]
    return out


async def test_create_returns_the_user_without_any_password(channel: grpc.aio.Channel) -> None:
    stub = users_pb2_grpc.UserServiceStub(channel)
    created = (await stub.CreateUser(users_pb2.CreateUserRequest(user=alice()))).user
    assert created.name.startswith("users/")
    assert (created.extension, created.e164, created.display_name) == (
        "456",
        "+4989123456",
        "Alice",
    )
    device = created.devices[0]
    assert device.registering.digest_username == "456"
    assert device.registering.has_password is True
    assert device.registering.password == ""


async def test_duplicate_extension_is_already_exists_naming_the_field(
    channel: grpc.aio.Channel,
) -> None:
    stub = users_pb2_grpc.UserServiceStub(channel)
    await stub.CreateUser(users_pb2.CreateUserRequest(user=alice()))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateUser(
            users_pb2.CreateUserRequest(
                user=alice(sip_uri="sip:bob@example.com", e164="", devices=[])
            )
        )
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert [f for f, _ in violations(info.value)] == ["user.extension"]


async def test_malformed_e164_is_invalid_argument_naming_the_field(
    channel: grpc.aio.Channel,
) -> None:
    stub = users_pb2_grpc.UserServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateUser(users_pb2.CreateUserRequest(user=alice(e164="089 123456")))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = violations(info.value)
    assert [f for f, _ in fields] == ["user.e164"]
    assert "E.164" in fields[0][1]


async def test_every_bad_field_is_reported_at_once(channel: grpc.aio.Channel) -> None:
    stub = users_pb2_grpc.UserServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateUser(
            users_pb2.CreateUserRequest(
                user=alice(sip_uri="alice", extension="4a", devices=[handset("x")])
            )
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {f for f, _ in violations(info.value)} == {"user.sip_uri", "user.extension"}


async def test_short_password_is_rejected_and_never_echoed(channel: grpc.aio.Channel) -> None:
    stub = users_pb2_grpc.UserServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateUser(users_pb2.CreateUserRequest(user=alice(devices=[handset("abc")])))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(info.value)[0][0] == "user.devices[0].registering.password"
    assert "abc" not in (info.value.details() or "")


async def test_unknown_user_is_not_found(channel: grpc.aio.Channel) -> None:
    stub = users_pb2_grpc.UserServiceStub(channel)
    for ref in ("users/nope", "999", "+4930999", "sip:nobody@example.com"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetUser(users_pb2.GetUserRequest(name=ref))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND, ref
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.DeleteUser(users_pb2.DeleteUserRequest(name="999"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_get_accepts_name_extension_number_and_uri(channel: grpc.aio.Channel) -> None:
    stub = users_pb2_grpc.UserServiceStub(channel)
    created = (await stub.CreateUser(users_pb2.CreateUserRequest(user=alice()))).user
    for ref in (created.name, "456", "+4989123456", "sip:alice@example.com"):
        got = (await stub.GetUser(users_pb2.GetUserRequest(name=ref))).user
        assert got.name == created.name


async def test_list_pages_and_filters(channel: grpc.aio.Channel) -> None:
    stub = users_pb2_grpc.UserServiceStub(channel)
    for n in range(25):
        await stub.CreateUser(
            users_pb2.CreateUserRequest(
                user=users_pb2.User(
                    sip_uri=f"sip:u{n}@example.com",
                    display_name=f"User {n}",
                    extension=f"{100 + n}",
                )
            )
        )
    page1 = await stub.ListUsers(users_pb2.ListUsersRequest(page_size=10))
    page2 = await stub.ListUsers(
        users_pb2.ListUsersRequest(page_size=10, page_token=page1.next_page_token)
    )
    page3 = await stub.ListUsers(
        users_pb2.ListUsersRequest(page_size=10, page_token=page2.next_page_token)
    )
    exts = [u.extension for p in (page1, page2, page3) for u in p.users]
    assert exts == [str(100 + n) for n in range(25)]
    assert page3.next_page_token == ""
    assert page1.total_size == 25
    only = await stub.ListUsers(users_pb2.ListUsersRequest(extension="107"))
    assert [u.extension for u in only.users] == ["107"]
    text = await stub.ListUsers(users_pb2.ListUsersRequest(filter="user 12"))
    assert [u.extension for u in text.users] == ["112"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListUsers(users_pb2.ListUsersRequest(page_token="garbage"))
    assert violations(info.value)[0][0] == "page_token"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('extension = "456"', "'=' is not supported"),
        ("display_name:alice AND extension:456", "'AND' is not supported"),
        ("(alice)", "'(' is not supported"),
        ("ali*", "'*' is not supported"),
        ("alice\x00", "must not hold control characters"),
        ("a" * 257, "at most 256 characters"),
    ],
)
async def test_a_filter_that_is_no_plain_text_is_refused_with_its_field(
    channel: grpc.aio.Channel, text: str, why: str
) -> None:
    stub = users_pb2_grpc.UserServiceStub(channel)
    await stub.CreateUser(users_pb2.CreateUserRequest(user=alice()))

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListUsers(users_pb2.ListUsersRequest(filter=text))

    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ((field, description),) = violations(info.value)
    assert field == "filter"
    assert why in description


async def test_a_plain_filter_may_hold_what_names_and_addresses_do(
    channel: grpc.aio.Channel,
) -> None:
    stub = users_pb2_grpc.UserServiceStub(channel)
    await stub.CreateUser(users_pb2.CreateUserRequest(user=alice(display_name="Alice O'Brien")))

    counts = {}
    for text in ("o'brien", "sip:alice@example.com", "+49891", "  ALICE  ", "or", "bob"):
        found = await stub.ListUsers(users_pb2.ListUsersRequest(filter=text))
        counts[text] = found.total_size

    assert counts == {
        "o'brien": 1,
        "sip:alice@example.com": 1,
        "+49891": 1,
        "  ALICE  ": 1,
        "or": 0,  # a word, not an operator
        "bob": 0,
    }


async def test_update_changes_only_masked_fields_and_keeps_the_password(
    channel: grpc.aio.Channel,
) -> None:
    stub = users_pb2_grpc.UserServiceStub(channel)
    created = (await stub.CreateUser(users_pb2.CreateUserRequest(user=alice()))).user
    patch = users_pb2.User(name="456", display_name="Alice Smith", e164="+4989999999")
    updated = (
        await stub.UpdateUser(
            users_pb2.UpdateUserRequest(
                user=patch, update_mask=field_mask_pb2.FieldMask(paths=["display_name"])
            )
        )
    ).user
    assert (updated.display_name, updated.e164) == ("Alice Smith", "+4989123456")
    devices = users_pb2.User(
        name=created.name,
        devices=[
            users_pb2.Device(
                id=created.devices[0].id,
                registering=users_pb2.RegisteringDevice(digest_username="456"),
            )
        ],
    )
    kept = (
        await stub.UpdateUser(
            users_pb2.UpdateUserRequest(
                user=devices, update_mask=field_mask_pb2.FieldMask(paths=["devices"])
            )
        )
    ).user
    assert kept.devices[0].registering.has_password is True
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.UpdateUser(
            users_pb2.UpdateUserRequest(
                user=patch, update_mask=field_mask_pb2.FieldMask(paths=["create_time"])
            )
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_delete_removes_the_user(channel: grpc.aio.Channel) -> None:
    stub = users_pb2_grpc.UserServiceStub(channel)
    await stub.CreateUser(users_pb2.CreateUserRequest(user=alice()))
    await stub.DeleteUser(users_pb2.DeleteUserRequest(name="456"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetUser(users_pb2.GetUserRequest(name="456"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
