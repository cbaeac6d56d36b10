"""ContactService and the phonebook feed, as clients and sidecars see them over real gRPC."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sip2uc.v1 import (
    contacts_pb2,
    contacts_pb2_grpc,
    directory_pb2,
    sidecar_pb2,
    sidecar_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)
from sip2uc_core.sip.digest import (
    Algorithm,
    build_credentials,
    compute_ha1,
    parse_challenge,
)
from sip2uc_core.sip.digest import (
    NonceIssuer as Nonces,
)

CSV = (
    "display_name;phone;mobile;company;source_id\n"
    "Taxi Central;089 5555;;Cabs & Co;t1\n"
    "Front desk Hamburg;+49 40 123456;;;t2\n"
    "Broken;not a number;;;t3\n"
    "No number;;;;t4\n"
)


def stub(channel: grpc.aio.Channel) -> contacts_pb2_grpc.ContactServiceStub:
    return contacts_pb2_grpc.ContactServiceStub(channel)


async def import_csv(
    channel: grpc.aio.Channel, text: str, dry_run: bool = False
) -> contacts_pb2.ImportContactsResponse:
    return await stub(channel).ImportContacts(
        contacts_pb2.ImportContactsRequest(
            csv=directory_pb2.CsvSource(content=text.encode(), filename="c.csv"),
            default_region="DE",
            dry_run=dry_run,
        )
    )


async def listed(channel: grpc.aio.Channel) -> list[tuple[str, str, str]]:
    page = await stub(channel).ListContacts(contacts_pb2.ListContactsRequest())
    return [(c.display_name, c.phone, c.source) for c in page.contacts]


async def test_a_csv_import_creates_normalises_and_reports_skipped_rows(
    channel: grpc.aio.Channel,
) -> None:
    dry = await import_csv(channel, CSV, dry_run=True)
    assert (dry.created, dry.applied) == (2, False)
    assert await listed(channel) == []

    done = await import_csv(channel, CSV)
    assert (done.created, done.updated, done.deleted, done.unchanged) == (2, 0, 0, 0)
    assert [(s.row, s.reason.split(":")[0]) for s in done.skipped] == [
        (4, "phone"),
        (5, "a contact needs at least one number"),
    ]
    assert await listed(channel) == [
        ("Front desk Hamburg", "+4940123456", "csv:c.csv"),
        ("Taxi Central", "+49895555", "csv:c.csv"),
    ]


async def test_a_reimport_updates_by_source_id_and_deletes_what_is_gone(
    channel: grpc.aio.Channel,
) -> None:
    await import_csv(channel, CSV)
    manual = await stub(channel).CreateContact(
        contacts_pb2.CreateContactRequest(
            contact=contacts_pb2.Contact(display_name="Locksmith", other="*55")
        )
    )
    again = await import_csv(channel, "display_name,phone,source_id\nTaxi Nord,089 5555,t1\n")
    assert (again.created, again.updated, again.deleted, again.unchanged) == (0, 1, 1, 0)
    # The contact added by hand belongs to no import and stays.
    assert await listed(channel) == [
        ("Locksmith", "", "manual"),
        ("Taxi Nord", "+49895555", "csv:c.csv"),
    ]
    unchanged = await import_csv(channel, "display_name,phone,source_id\nTaxi Nord,089 5555,t1\n")
    assert (unchanged.unchanged, unchanged.updated) == (1, 0)
    await stub(channel).DeleteContact(contacts_pb2.DeleteContactRequest(name=manual.contact.name))
    assert await listed(channel) == [("Taxi Nord", "+49895555", "csv:c.csv")]


async def test_bad_contacts_are_refused_with_the_field_named(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub(channel).CreateContact(
            contacts_pb2.CreateContactRequest(
                contact=contacts_pb2.Contact(display_name="Bell\x07", phone="12ab", email="x")
            )
        )
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(refused.value)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    status.details[0].Unpack(bad)
    assert {v.field for v in bad.field_violations} == {
        "contact.phone",
        "contact.display_name",
        "contact.email",
    }
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub(channel).DeleteContact(contacts_pb2.DeleteContactRequest(name="contacts/nope"))
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND


async def test_sidecars_get_a_snapshot_then_one_per_change(channel: grpc.aio.Channel) -> None:
    users = users_pb2_grpc.UserServiceStub(channel)
    sidecars = sidecar_pb2_grpc.SidecarServiceStub(channel)
    watch = sidecars.WatchPhonebook(sidecar_pb2.WatchPhonebookRequest(sidecar="vlan10"))
    stream = watch.__aiter__()
    first = await asyncio.wait_for(stream.__anext__(), 5)
    assert list(first.entries) == []
    await users.CreateUser(
        users_pb2.CreateUserRequest(
            user=users_pb2.User(display_name="Alice Smith", extension="1001", e164="+4989123451001")
        )
    )
    second = await asyncio.wait_for(stream.__anext__(), 5)
    assert second.version > first.version
    assert [(e.display_name, e.extension, e.kind) for e in second.entries] == [
        ("Alice Smith", "1001", sidecar_pb2.PHONEBOOK_ENTRY_KIND_USER)
    ]
    # An import is a burst of changes: the sidecar gets it as one snapshot.
    await import_csv(channel, CSV)
    third = await asyncio.wait_for(stream.__anext__(), 5)
    assert sorted(e.display_name for e in third.entries) == [
        "Alice Smith",
        "Front desk Hamburg",
        "Taxi Central",
    ]
    watch.cancel()


async def test_http_digest_is_verified_against_the_stored_ha1(channel: grpc.aio.Channel) -> None:
    users = users_pb2_grpc.UserServiceStub(channel)
    await users.CreateUser(
        users_pb2.CreateUserRequest(
            user=users_pb2.User(
                display_name="Alice",
                extension="1001",
                devices=[
                    users_pb2.Device(
                        registering=users_pb2.RegisteringDevice(
                            digest_username="1001", password="right-password"
                        )
                    )
                ],
            )
        )
    )
    sidecars = sidecar_pb2_grpc.SidecarServiceStub(channel)
    challenge = parse_challenge(
        Nonces(b"n" * 32, 300).challenge_header("sip2uc", 1.0, algorithms=(Algorithm.SHA_256,))[0]
    )

    async def verified(username: str, password: str, method: str = "GET") -> bool:
        ha1 = compute_ha1(challenge.algorithm, username, "sip2uc", password)
        creds = build_credentials(
            challenge,
            username=username,
            ha1=ha1,
            method=method,
            uri="/phonebook/snom.xml",
            cnonce="c0ffee",
        )
        reply = await sidecars.VerifyDigest(
            sidecar_pb2.VerifyDigestRequest(
                origin=sidecar_pb2.RequestOrigin(sidecar="vlan10"),
                credentials=sidecar_pb2.DigestCredentials(
                    username=creds.username,
                    realm=creds.realm,
                    nonce=creds.nonce,
                    uri=creds.uri,
                    response=creds.response,
                    algorithm=creds.algorithm.value,
                    cnonce=creds.cnonce or "",
                    nc=creds.nc or "",
                    qop=creds.qop or "",
                    method="GET",
                ),
            )
        )
        return reply.verified

    assert await verified("1001", "right-password")
    assert not await verified("1001", "wrong-password")
    assert not await verified("9999", "right-password")
    # Credentials computed for another method do not pass as GET.
    assert not await verified("1001", "right-password", method="POST")
