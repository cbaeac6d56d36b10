"""A directory import stores the Teams connector's identities (UPN, Entra object id)."""

from __future__ import annotations

import grpc
from sip2uc.v1 import directory_pb2, directory_pb2_grpc, users_pb2, users_pb2_grpc

OBJECT_ID = "2b7b4c1e-8f2d-4e57-9c1a-3f5d6e7a8b9c"


async def test_an_import_stores_them_on_the_user_and_a_reimport_changes_nothing(
    channel: grpc.aio.Channel,
) -> None:
    content = f"sip_uri,upn,entra_object_id\nsip:carol@example.com,carol@example.com,{OBJECT_ID}\n"
    stub = directory_pb2_grpc.DirectoryServiceStub(channel)
    request = directory_pb2.ImportUsersRequest(
        csv=directory_pb2.CsvSource(content=content.encode(), filename="u.csv")
    )
    first = [e async for e in stub.ImportUsers(request)]
    assert [e.row.action for e in first if e.WhichOneof("event") == "row"] == [
        directory_pb2.IMPORT_ACTION_CREATE
    ]
    user = (
        await users_pb2_grpc.UserServiceStub(channel).GetUser(
            users_pb2.GetUserRequest(name="sip:carol@example.com")
        )
    ).user
    assert (user.user_principal_name, user.entra_object_id) == ("carol@example.com", OBJECT_ID)
    again = [e async for e in stub.ImportUsers(request)]
    assert [e.row.action for e in again if e.WhichOneof("event") == "row"] == [
        directory_pb2.IMPORT_ACTION_UNCHANGED
    ]
