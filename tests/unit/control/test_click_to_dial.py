"""CallService.PlaceCall: ring the caller's handsets first, then the target, then join the media."""

from __future__ import annotations

import grpc
import pytest
from sip2uc.v1 import (
    calls_pb2,
    calls_pb2_grpc,
    common_pb2,
    presence_pb2,
    presence_pb2_grpc,
    sidecar_pb2,
    users_pb2,
    users_pb2_grpc,
)

from .sidecar_session import SidecarSession, media

PW = "s3cret-pw"


async def add_user(channel: grpc.aio.Channel, ext: str) -> None:
    device = users_pb2.Device(registering=users_pb2.RegisteringDevice(password=PW))
    await users_pb2_grpc.UserServiceStub(channel).CreateUser(
        users_pb2.CreateUserRequest(user=users_pb2.User(extension=ext, devices=[device]))
    )


async def test_place_call_rings_caller_then_target_and_joins_media(
    channel: grpc.aio.Channel,
) -> None:
    await add_user(channel, "201")
    await add_user(channel, "202")
    calls = calls_pb2_grpc.CallServiceStub(channel)
    async with SidecarSession(channel, "s1") as s1, SidecarSession(channel, "s2") as s2:
        await s1.register("201", PW, 41001)
        await s2.register("202", PW, 42001)
        placed = (
            await calls.PlaceCall(calls_pb2.PlaceCallRequest(**{"from": "201", "to": "202"}))
        ).call
        call_id = placed.name.removeprefix("calls/")
        caller_leg = await s1.next("create_leg")
        assert caller_leg.destination.port == 41001
        assert not caller_leg.HasField("peer_media")  # nothing to connect to yet
        assert s2.pending() == 0  # the target rings only after the caller answers

        await s1.report(
            call_id,
            caller_leg.leg_id,
            sidecar_pb2.LEG_STATE_ANSWERED,
            media=media(31000, ("PCMU", 0)),
        )
        target_leg = await s2.next("create_leg")
        assert target_leg.destination.port == 42001
        assert target_leg.peer_media.rtp.port == 31000

        await s2.report(
            call_id,
            target_leg.leg_id,
            sidecar_pb2.LEG_STATE_ANSWERED,
            media=media(32000, ("PCMA", 8)),
        )
        update = await s1.next("update_media")
        assert (update.leg_id, update.peer_media.rtp.port) == (caller_leg.leg_id, 32000)
        assert update.bridge_leg_id == ""  # the target is on another sidecar
        live = (await calls.GetCall(calls_pb2.GetCallRequest(name=placed.name))).call
        assert live.state == calls_pb2.CALL_STATE_CONNECTED


async def availability(channel: grpc.aio.Channel, ext: str) -> tuple[int, int]:
    stub = presence_pb2_grpc.PresenceServiceStub(channel)
    p = (await stub.GetPresence(presence_pb2.GetPresenceRequest(user=ext))).presence
    return p.availability, p.activity


async def test_the_caller_of_a_placed_call_rings_then_is_in_a_call_once_picked_up(
    channel: grpc.aio.Channel,
) -> None:
    await add_user(channel, "201")
    await add_user(channel, "202")
    calls = calls_pb2_grpc.CallServiceStub(channel)
    async with SidecarSession(channel, "s1") as s1:
        await s1.register("201", PW, 41001)
        await s1.register("202", PW, 42001)
        placed = (
            await calls.PlaceCall(calls_pb2.PlaceCallRequest(**{"from": "201", "to": "202"}))
        ).call
        call_id = placed.name.removeprefix("calls/")
        caller_leg = await s1.next("create_leg")
        ringing = await availability(channel, "201")

        await s1.report(
            call_id,
            caller_leg.leg_id,
            sidecar_pb2.LEG_STATE_ANSWERED,
            media=media(31000, ("PCMU", 0)),
        )
        target_leg = await s1.next("create_leg")
        picked_up = await availability(channel, "201")
        await s1.report(
            call_id,
            target_leg.leg_id,
            sidecar_pb2.LEG_STATE_ANSWERED,
            media=media(32000, ("PCMU", 0)),
        )
        update = await s1.next("update_media")

        assert ringing == (common_pb2.AVAILABILITY_AVAILABLE, common_pb2.ACTIVITY_RINGING)
        assert picked_up == (common_pb2.AVAILABILITY_IN_A_CALL, common_pb2.ACTIVITY_IN_A_CALL)
        assert await availability(channel, "201") == picked_up
        assert update.bridge_leg_id == target_leg.leg_id  # both on s1: bridged in its relay


async def test_place_call_without_a_registered_handset_fails_precondition(
    channel: grpc.aio.Channel,
) -> None:
    await add_user(channel, "201")
    await add_user(channel, "202")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await calls_pb2_grpc.CallServiceStub(channel).PlaceCall(
            calls_pb2.PlaceCallRequest(**{"from": "201", "to": "202"})
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_place_call_to_nothing_is_rejected_before_ringing(channel: grpc.aio.Channel) -> None:
    await add_user(channel, "201")
    async with SidecarSession(channel, "s1") as s1:
        await s1.register("201", PW, 41001)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await calls_pb2_grpc.CallServiceStub(channel).PlaceCall(
                calls_pb2.PlaceCallRequest(**{"from": "201", "to": "999"})
            )
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert s1.pending() == 0
