"""Bans through the admin API: the sidecars' bans as they report them, account locks held by the
control plane, lifting either, and their counts in GetStatus."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from sip2uc.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    sidecar_pb2,
    sidecar_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
)

from .sidecar_session import SidecarSession, digest, register_once


def stamp(seconds: float) -> Timestamp:
    out = Timestamp()
    out.FromNanoseconds(int(seconds * 1e9))
    return out


def sidecar_bans(*bans: tuple[str, str, str]) -> sidecar_pb2.ConnectRequest:
    """Bans in force for the next 10 minutes (a sidecar reports wall-clock times)."""
    now = Timestamp()
    now.GetCurrentTime()
    start = now.ToNanoseconds() / 1e9
    return sidecar_pb2.ConnectRequest(
        bans=sidecar_pb2.SidecarBans(
            bans=[
                sidecar_pb2.SidecarBan(
                    source=source,
                    user=user,
                    reason=reason,
                    start_time=stamp(start),
                    expire_time=stamp(start + 600),
                )
                for source, user, reason in bans
            ],
            total=len(bans),
        )
    )


async def listed(admin: admin_pb2_grpc.AdminServiceStub) -> list[tuple[int, str, str, str]]:
    response = await admin.ListBans(admin_pb2.ListBansRequest())
    return [(b.kind, b.source, b.user, b.sidecar) for b in response.bans]


async def wait_for_bans(admin: admin_pb2_grpc.AdminServiceStub, count: int) -> None:
    for _ in range(200):
        if len((await admin.ListBans(admin_pb2.ListBansRequest())).bans) == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the control plane never listed {count} bans")


async def test_the_sidecars_reported_bans_are_listed_and_counted(
    channel: grpc.aio.Channel,
) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    async with SidecarSession(channel, "vlan10") as sidecar:
        await sidecar.send(
            sidecar_bans(
                ("192.0.2.9", "", "25 user names tried in 60 s"),
                ("192.0.2.7", "1001", "10 failed logins in 60 s"),
            )
        )
        await wait_for_bans(admin, 2)

        response = await admin.ListBans(admin_pb2.ListBansRequest())
        status = await admin.GetStatus(admin_pb2.GetStatusRequest())

    assert [(b.kind, b.source, b.user, b.sidecar, b.reason) for b in response.bans] == [
        (
            admin_pb2.BAN_KIND_SOURCE_USER,
            "192.0.2.7",
            "1001",
            "sidecars/vlan10",
            "10 failed logins in 60 s",
        ),
        (
            admin_pb2.BAN_KIND_SOURCE,
            "192.0.2.9",
            "",
            "sidecars/vlan10",
            "25 user names tried in 60 s",
        ),
    ]
    assert response.bans[0].expire_time.seconds - response.bans[0].start_time.seconds == 600
    assert (status.bans, status.locked_accounts) == (2, 0)


async def test_lifting_a_source_tells_its_sidecar_and_returns_what_was_lifted(
    channel: grpc.aio.Channel,
) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    async with SidecarSession(channel, "vlan10") as sidecar:
        await sidecar.send(
            sidecar_bans(
                ("192.0.2.7", "1001", "10 failed logins in 60 s"),
                ("192.0.2.7", "1002", "10 failed logins in 60 s"),
                ("192.0.2.8", "1003", "10 failed logins in 60 s"),
            )
        )
        await wait_for_bans(admin, 3)

        lifted = await admin.LiftBans(admin_pb2.LiftBansRequest(source="192.0.2.7"))
        command = await sidecar.next("lift_ban")
        remaining = await listed(admin)

    assert [(b.source, b.user) for b in lifted.bans] == [
        ("192.0.2.7", "1001"),
        ("192.0.2.7", "1002"),
    ]
    assert command.source == "192.0.2.7"
    assert remaining == [(admin_pb2.BAN_KIND_SOURCE_USER, "192.0.2.8", "1003", "sidecars/vlan10")]


async def test_a_lost_sidecars_bans_are_not_listed(channel: grpc.aio.Channel) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    async with SidecarSession(channel, "vlan10") as sidecar:
        await sidecar.send(sidecar_bans(("192.0.2.9", "", "r")))
        await wait_for_bans(admin, 1)

    await wait_for_bans(admin, 0)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (admin_pb2.LiftBansRequest(), "source"),
        (admin_pb2.LiftBansRequest(source="192.0.2.7", account="1001"), "source"),
        (admin_pb2.LiftBansRequest(source="not-an-address"), "source"),
        (admin_pb2.LiftBansRequest(account="1001", sidecar="vlan10"), "sidecar"),
    ],
)
async def test_a_lift_request_names_its_fault(
    channel: grpc.aio.Channel, request_: admin_pb2.LiftBansRequest, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin_pb2_grpc.AdminServiceStub(channel).LiftBans(request_)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(f"invalid argument: {field}: ")


async def test_lifting_on_an_unknown_sidecar_is_not_found(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin_pb2_grpc.AdminServiceStub(channel).LiftBans(
            admin_pb2.LiftBansRequest(source="192.0.2.7", sidecar="sidecars/nowhere")
        )

    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


# --- account lockout ---------------------------------------------------------------------------


def attempt(password: str, host: str, cseq: int) -> sidecar_pb2.RegisterRequest:
    return sidecar_pb2.RegisterRequest(
        origin=sidecar_pb2.RequestOrigin(
            sidecar="vlan10",
            source=common_pb2.SocketAddress(host=host, port=5062),
            transport=common_pb2.TRANSPORT_UDP,
            call_id=f"reg@{host}",
        ),
        credentials=digest("1001", password, "REGISTER"),
        aor="sip:1001@sip2uc.local",
        contacts=[sidecar_pb2.ContactBinding(uri=f"sip:1001@{host}:5062", expires=600)],
        cseq=cseq,
    )


async def lower_account_threshold(channel: grpc.aio.Channel, threshold: int) -> None:
    await admin_pb2_grpc.AdminServiceStub(channel).UpdateSettings(
        admin_pb2.UpdateSettingsRequest(
            settings=admin_pb2.Settings(account_failure_threshold=threshold),
            update_mask=field_mask_pb2.FieldMask(paths=["account_failure_threshold"]),
        )
    )


async def test_guessing_one_account_from_six_sources_locks_it_but_not_its_handset(
    channel: grpc.aio.Channel,
) -> None:
    await users_pb2_grpc.UserServiceStub(channel).CreateUser(
        users_pb2.CreateUserRequest(
            user=users_pb2.User(
                extension="1001",
                devices=[
                    users_pb2.Device(registering=users_pb2.RegisteringDevice(password="right-pw"))
                ],
            )
        )
    )
    await lower_account_threshold(channel, 12)
    stub = sidecar_pb2_grpc.SidecarServiceStub(channel)
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    handset = "10.0.0.5"
    assert (await register_once(stub, attempt("right-pw", handset, 1))).outcome == (
        sidecar_pb2.REGISTER_OUTCOME_OK
    )
    guessers = [f"203.0.113.{n}" for n in range(1, 7)]

    outcomes = [
        (await register_once(stub, attempt(f"guess-{n}", host, n))).outcome
        for n in range(2)
        for host in guessers
    ]
    # The right password from a guesser, after the lock: refused like any wrong one.
    found = await register_once(stub, attempt("right-pw", guessers[0], 9))
    # The registered handset keeps refreshing.
    refresh = await register_once(stub, attempt("right-pw", handset, 10))
    status = await admin.GetStatus(admin_pb2.GetStatusRequest())
    bans = (await admin.ListBans(admin_pb2.ListBansRequest())).bans

    assert set(outcomes) == {sidecar_pb2.REGISTER_OUTCOME_UNAUTHORIZED}
    assert found.outcome == sidecar_pb2.REGISTER_OUTCOME_UNAUTHORIZED
    assert refresh.outcome == sidecar_pb2.REGISTER_OUTCOME_OK
    assert status.locked_accounts == 1
    assert [(b.kind, b.user, b.reason) for b in bans] == [
        (admin_pb2.BAN_KIND_ACCOUNT, "1001", "12 failed logins from 6 sources in 300 s")
    ]

    lifted = await admin.LiftBans(admin_pb2.LiftBansRequest(account="1001"))
    after = await register_once(stub, attempt("right-pw", guessers[0], 11))

    assert [(b.kind, b.user) for b in lifted.bans] == [(admin_pb2.BAN_KIND_ACCOUNT, "1001")]
    assert after.outcome == sidecar_pb2.REGISTER_OUTCOME_OK


async def test_unknown_user_names_are_never_locked(channel: grpc.aio.Channel) -> None:
    await lower_account_threshold(channel, 2)
    stub = sidecar_pb2_grpc.SidecarServiceStub(channel)

    for n in range(5):
        await register_once(stub, attempt("guess", f"203.0.113.{n}", n + 1))

    status = await admin_pb2_grpc.AdminServiceStub(channel).GetStatus(admin_pb2.GetStatusRequest())
    assert status.locked_accounts == 0
