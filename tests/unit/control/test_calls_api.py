"""Call routing in the control plane, driven through the sidecar contract of docs/calls.md."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import grpc
from google.protobuf import field_mask_pb2
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
from sip2uc_control.app import ControlPlane

from .in_memory import Clock
from .sidecar_session import SidecarSession, media

PW = "s3cret-pw"


async def add_user(channel: grpc.aio.Channel, ext: str) -> None:
    await users_pb2_grpc.UserServiceStub(channel).CreateUser(
        users_pb2.CreateUserRequest(
            user=users_pb2.User(
                extension=ext,
                display_name=f"User {ext}",
                devices=[users_pb2.Device(registering=users_pb2.RegisteringDevice(password=PW))],
            )
        )
    )


async def presence_of(channel: grpc.aio.Channel, ext: str) -> presence_pb2.Presence:
    stub = presence_pb2_grpc.PresenceServiceStub(channel)
    return (await stub.GetPresence(presence_pb2.GetPresenceRequest(user=ext))).presence


async def test_call_forks_to_every_binding_and_the_first_answer_wins(
    channel: grpc.aio.Channel,
) -> None:
    await add_user(channel, "201")
    await add_user(channel, "202")
    async with SidecarSession(channel, "s1") as s1:
        await s1.register("201", PW, 41001)
        await s1.register("202", PW, 42001)
        await s1.register("202", PW, 42002, nc=2)
        resp = await s1.invite("201", PW, "202", leg_id="A")
        assert resp.disposition == sidecar_pb2.INVITE_DISPOSITION_ROUTING
        forks = [await s1.next("create_leg"), await s1.next("create_leg")]
        assert sorted(f.destination.port for f in forks) == [42001, 42002]
        assert {f.bridge_leg_id for f in forks} == {"A"}  # same sidecar: bridged in the relay
        assert forks[0].peer_media.rtp.port == 30000
        assert forks[0].from_uri == "sip:201@sip2uc.local"

        await s1.report(resp.call_id, forks[0].leg_id, sidecar_pb2.LEG_STATE_RINGING, status=180)
        ringing = await s1.next("answer_leg")
        assert (ringing.leg_id, ringing.status) == ("A", 180)
        p202 = await presence_of(channel, "202")
        assert p202.activity == common_pb2.ACTIVITY_RINGING

        await s1.report(
            resp.call_id,
            forks[1].leg_id,
            sidecar_pb2.LEG_STATE_ANSWERED,
            status=200,
            media=media(31000, ("PCMA", 8)),
        )
        cancel = await s1.next("end_leg")
        assert cancel.leg_id == forks[0].leg_id
        answer = await s1.next("answer_leg")
        assert (answer.leg_id, answer.status, answer.peer_media.rtp.port) == ("A", 200, 31000)
        assert answer.bridge_leg_id == forks[1].leg_id
        for ext in ("201", "202"):
            p = await presence_of(channel, ext)
            assert (p.availability, p.activity) == (
                common_pb2.AVAILABILITY_IN_A_CALL,
                common_pb2.ACTIVITY_IN_A_CALL,
            )

        calls = calls_pb2_grpc.CallServiceStub(channel)
        live = (await calls.ListCalls(calls_pb2.ListCallsRequest())).calls
        assert [c.state for c in live] == [calls_pb2.CALL_STATE_CONNECTED]
        assert [
            (c.caller_extension, c.caller_display_name, c.callee_extension, c.callee_display_name)
            for c in live
        ] == [("201", "User 201", "202", "User 202")]
        assert not live[0].on_hold
        await s1.report(resp.call_id, "A", 0, direction=common_pb2.MEDIA_DIRECTION_SENDONLY)
        held = (await calls.ListCalls(calls_pb2.ListCallsRequest())).calls[0]
        assert held.on_hold
        directions = {leg.id: leg.direction for leg in held.legs}
        assert (directions["A"], directions[forks[1].leg_id]) == (
            common_pb2.MEDIA_DIRECTION_SENDONLY,
            common_pb2.MEDIA_DIRECTION_RECVONLY,  # the held party
        )
        await s1.next("update_media")

        rx = sidecar_pb2.StreamStats(
            direction="rx", packets=250, bytes=40000, lost=1, jitter_ms=2.5, mos=4.25, codec="PCMA"
        )
        await s1.bye("A", "bye", stats=[rx])
        bye = await s1.next("end_leg")
        assert bye.leg_id == forks[1].leg_id
        for ext in ("201", "202"):
            assert (
                await presence_of(channel, ext)
            ).availability == common_pb2.AVAILABILITY_AVAILABLE
        done = (await calls.GetCall(calls_pb2.GetCallRequest(name=f"calls/{resp.call_id}"))).call
        assert (done.state, done.end_reason) == (calls_pb2.CALL_STATE_ENDED, "caller hung up")
        history = (await calls.ListCallHistory(calls_pb2.ListCallHistoryRequest(user="202"))).calls
        assert [c.name for c in history] == [f"calls/{resp.call_id}"]
        # The caller's leg keeps the statistics its Bye carried, also in the stored history.
        assert [list(leg.stats) for leg in history[0].legs if leg.id == "A"] == [[rx]]


async def test_cross_sidecar_fork_is_not_bridged_locally(channel: grpc.aio.Channel) -> None:
    await add_user(channel, "201")
    await add_user(channel, "202")
    async with SidecarSession(channel, "vlan10") as s1, SidecarSession(channel, "vlan20") as s2:
        await s1.register("201", PW, 41001)
        await s2.register("202", PW, 42001)
        resp = await s1.invite("201", PW, "202", leg_id="A")
        fork = await s2.next("create_leg")
        assert fork.bridge_leg_id == ""
        assert (fork.peer_media.rtp.host, fork.peer_media.rtp.port) == ("127.0.0.1", 30000)
        await s2.report(
            resp.call_id,
            fork.leg_id,
            sidecar_pb2.LEG_STATE_ANSWERED,
            media=media(32000, ("PCMU", 0)),
        )
        answer = await s1.next("answer_leg")
        assert (answer.status, answer.peer_media.rtp.port, answer.bridge_leg_id) == (200, 32000, "")
        await s2.bye(fork.leg_id)
        assert (await s1.next("end_leg")).leg_id == "A"


async def test_all_forks_busy_gives_the_caller_486(channel: grpc.aio.Channel) -> None:
    await add_user(channel, "201")
    await add_user(channel, "202")
    async with SidecarSession(channel, "s1") as s1:
        await s1.register("201", PW, 41001)
        await s1.register("202", PW, 42001)
        resp = await s1.invite("201", PW, "202", leg_id="A")
        fork = await s1.next("create_leg")
        await s1.report(resp.call_id, fork.leg_id, sidecar_pb2.LEG_STATE_FAILED, status=486)
        end = await s1.next("end_leg")
        assert (end.leg_id, end.status) == ("A", 486)
        assert (await presence_of(channel, "201")).availability == common_pb2.AVAILABILITY_AVAILABLE


async def test_cancel_before_answer_ends_every_fork(channel: grpc.aio.Channel) -> None:
    await add_user(channel, "201")
    await add_user(channel, "202")
    async with SidecarSession(channel, "s1") as s1:
        await s1.register("201", PW, 41001)
        await s1.register("202", PW, 42001)
        resp = await s1.invite("201", PW, "202", leg_id="A")
        fork = await s1.next("create_leg")
        await s1.cancel("A")
        assert (await s1.next("end_leg")).leg_id == fork.leg_id
        call = await calls_pb2_grpc.CallServiceStub(channel).GetCall(
            calls_pb2.GetCallRequest(name=resp.call_id)
        )
        assert (call.call.final_status, call.call.end_reason) == (487, "caller cancelled")
        assert (await presence_of(channel, "202")).activity == common_pb2.ACTIVITY_NONE


async def test_rejections_unknown_number_dnd_offline_and_bad_credentials(
    channel: grpc.aio.Channel,
) -> None:
    await add_user(channel, "201")
    await add_user(channel, "202")
    await add_user(channel, "203")
    async with SidecarSession(channel, "s1") as s1:
        await s1.register("201", PW, 41001)
        await s1.register("202", PW, 42001)
        unknown = await s1.invite("201", PW, "999", leg_id="A1")
        assert (unknown.disposition, unknown.status) == (sidecar_pb2.INVITE_DISPOSITION_REJECT, 404)
        offline = await s1.invite("201", PW, "203", leg_id="A2")
        assert (offline.disposition, offline.status) == (sidecar_pb2.INVITE_DISPOSITION_REJECT, 480)
        await presence_pb2_grpc.PresenceServiceStub(channel).SetPresence(
            presence_pb2.SetPresenceRequest(
                user="202", availability=common_pb2.AVAILABILITY_DO_NOT_DISTURB
            )
        )
        dnd = await s1.invite("201", PW, "202", leg_id="A3")
        assert (dnd.disposition, dnd.status) == (sidecar_pb2.INVITE_DISPOSITION_REJECT, 486)
        wrong = await s1.invite("201", "not-the-password", "202", leg_id="A4")
        stranger = await s1.invite("777", "whatever", "202", leg_id="A5")
        assert (
            wrong.disposition == stranger.disposition == sidecar_pb2.INVITE_DISPOSITION_UNAUTHORIZED
        )
        assert s1.pending() == 0  # nothing was rung


async def test_presence_code_sets_dnd_and_an_unknown_code_is_404(channel: grpc.aio.Channel) -> None:
    await add_user(channel, "201")
    async with SidecarSession(channel, "s1") as s1:
        await s1.register("201", PW, 41001)
        resp = await s1.invite("201", PW, "*30", leg_id="A")
        assert (resp.disposition, resp.tone) == (
            sidecar_pb2.INVITE_DISPOSITION_FEEDBACK_TONE,
            sidecar_pb2.FEEDBACK_TONE_CONFIRM,
        )
        assert (
            await presence_of(channel, "201")
        ).availability == common_pb2.AVAILABILITY_DO_NOT_DISTURB
        off = await s1.invite("201", PW, "*35", leg_id="B")
        assert off.disposition == sidecar_pb2.INVITE_DISPOSITION_FEEDBACK_TONE
        assert (await presence_of(channel, "201")).availability == common_pb2.AVAILABILITY_AVAILABLE
        unknown = await s1.invite("201", PW, "*99", leg_id="C")
        assert (unknown.disposition, unknown.status) == (sidecar_pb2.INVITE_DISPOSITION_REJECT, 404)


async def test_forward_code_then_calls_go_to_the_target(channel: grpc.aio.Channel) -> None:
    for ext in ("201", "202", "203"):
        await add_user(channel, ext)
    async with SidecarSession(channel, "s1") as s1:
        for n, ext in enumerate(("201", "202", "203")):
            await s1.register(ext, PW, 41001 + n)
        assert (
            await s1.invite("202", PW, "*72203", leg_id="F")
        ).disposition == sidecar_pb2.INVITE_DISPOSITION_FEEDBACK_TONE
        user = (
            await users_pb2_grpc.UserServiceStub(channel).GetUser(
                users_pb2.GetUserRequest(name="202")
            )
        ).user
        assert (user.settings.forward_always.enabled, user.settings.forward_always.target) == (
            True,
            "203",
        )
        await s1.invite("201", PW, "202", leg_id="A")
        fork = await s1.next("create_leg")
        assert fork.destination.port == 41003  # 203's handset rings


async def test_no_answer_within_the_users_timeout_gives_480(
    control: ControlPlane, channel: grpc.aio.Channel, clock: Clock
) -> None:
    assert control.core is not None
    await add_user(channel, "201")
    await add_user(channel, "202")
    users = users_pb2_grpc.UserServiceStub(channel)
    await users.UpdateUser(
        users_pb2.UpdateUserRequest(
            user=users_pb2.User(
                name="202", settings=users_pb2.UserSettings(no_answer_timeout_seconds=5)
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["settings.no_answer_timeout_seconds"]),
        )
    )
    async with SidecarSession(channel, "s1") as s1:
        await s1.register("201", PW, 41001)
        await s1.register("202", PW, 42001)
        resp = await s1.invite("201", PW, "202", leg_id="A")
        fork = await s1.next("create_leg")
        clock.advance(4.9)
        await control.core.sweep()
        assert [c.id for c in control.core.calls.live()] == [resp.call_id]  # still ringing
        clock.advance(0.1)
        await control.core.sweep()
        ends = [await s1.next("end_leg") for _ in range(2)]
        assert {e.leg_id for e in ends} == {fork.leg_id, "A"}
        assert [e.status for e in ends if e.leg_id == "A"] == [480]


async def test_dtmf_reported_by_a_sidecar_shows_in_the_call(channel: grpc.aio.Channel) -> None:
    await add_user(channel, "201")
    await add_user(channel, "202")
    async with SidecarSession(channel, "s1") as s1:
        await s1.register("201", PW, 41001)
        await s1.register("202", PW, 42001)
        resp = await s1.invite("201", PW, "202", leg_id="A")
        fork = await s1.next("create_leg")
        await s1.report(
            resp.call_id,
            fork.leg_id,
            sidecar_pb2.LEG_STATE_ANSWERED,
            media=media(31000, ("PCMU", 0)),
        )
        await s1.report(resp.call_id, "A", sidecar_pb2.LEG_STATE_UNSPECIFIED, dtmf_digits="12")
        await s1.report(resp.call_id, "A", sidecar_pb2.LEG_STATE_UNSPECIFIED, dtmf_digits="#")
        calls = calls_pb2_grpc.CallServiceStub(channel)
        call = (await calls.GetCall(calls_pb2.GetCallRequest(name=resp.call_id))).call
        assert [d.digit for d in call.dtmf] == ["1", "2", "#"]
        await calls.SendDtmf(calls_pb2.SendDtmfRequest(name=resp.call_id, digits="5"))
        await s1.next("answer_leg")
        inject = await s1.next("inject_dtmf")
        assert (inject.leg_id, inject.digits) == (fork.leg_id, "5")
        await asyncio.sleep(0)  # nothing else pending


async def test_a_call_on_a_sidecar_lost_past_its_grace_ends_and_frees_its_users(
    control: ControlPlane, channel: grpc.aio.Channel
) -> None:
    assert control.core is not None
    await add_user(channel, "201")
    await add_user(channel, "202")
    control.core.settings.current = replace(control.core.settings.current, sidecar_grace_seconds=0)
    async with SidecarSession(channel, "s1") as s1:
        await s1.register("201", PW, 41001)
        async with SidecarSession(channel, "s2") as s2:
            await s2.register("202", PW, 42001)
            resp = await s1.invite("201", PW, "202", leg_id="A")
            fork = await s2.next("create_leg")
            await s2.report(
                resp.call_id,
                fork.leg_id,
                sidecar_pb2.LEG_STATE_ANSWERED,
                status=200,
                media=media(32000, ("PCMU", 0)),
            )
            await s1.next("answer_leg")
        # s2 is gone; with no grace the sweeper (every 250 ms) ends the call towards s1.
        end = await s1.next("end_leg")
        assert (end.leg_id, end.reason) == ("A", "sidecar lost")
    calls = calls_pb2_grpc.CallServiceStub(channel)
    live = await calls.ListCalls(calls_pb2.ListCallsRequest())
    assert list(live.calls) == []
    assert (await presence_of(channel, "201")).availability == common_pb2.AVAILABILITY_AVAILABLE


async def test_an_ending_call_is_found_while_its_history_row_is_written(
    control: ControlPlane, channel: grpc.aio.Channel
) -> None:
    await add_user(channel, "201")
    await add_user(channel, "202")
    calls = calls_pb2_grpc.CallServiceStub(channel)
    async with SidecarSession(channel, "s1") as s1:
        await s1.register("201", PW, 41001)
        await s1.register("202", PW, 42001)
        resp = await s1.invite("201", PW, "202", leg_id="A")
        fork = await s1.next("create_leg")
        await s1.report(
            resp.call_id,
            fork.leg_id,
            sidecar_pb2.LEG_STATE_ANSWERED,
            status=200,
            media=media(31000, ("PCMA", 8)),
        )
        await s1.next("answer_leg")

        # Hold the group commit that stores the ended call in the history.
        assert control.core is not None
        db = control.core.db
        writing, release = asyncio.Event(), asyncio.Event()
        submit_rows = db.submit_rows

        async def held(statements: Any) -> None:
            writing.set()
            await release.wait()
            await submit_rows(statements)

        db.submit_rows = held  # type: ignore[method-assign]
        bye = asyncio.create_task(s1.bye("A", "bye"))
        await asyncio.wait_for(writing.wait(), 5)

        name = f"calls/{resp.call_id}"
        assert (await calls.ListCalls(calls_pb2.ListCallsRequest())).calls == []
        ending = (await calls.GetCall(calls_pb2.GetCallRequest(name=name))).call
        assert (ending.state, ending.end_reason) == (calls_pb2.CALL_STATE_ENDED, "caller hung up")

        release.set()
        await asyncio.wait_for(bye, 5)
        stored = (await calls.GetCall(calls_pb2.GetCallRequest(name=name))).call
        assert (stored.state, stored.end_reason) == (calls_pb2.CALL_STATE_ENDED, "caller hung up")
