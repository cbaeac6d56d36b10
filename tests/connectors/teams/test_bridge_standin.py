"""The Teams bridge over HTTPS against the Microsoft Graph contract stand-in (nothing here reaches
Microsoft): MSAL's client-credentials grant with a non-default authority, each sip2uc state to
the right Graph calls, keep-alive, polling, throttling, token renewal, backoff."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sip2uc_connectors.teams import (
    Availability,
    ClientCertificate,
    ClientSecret,
    ConnectionState,
    InboundPresence,
    OutboundPresence,
    SyncTiming,
    TeamsConfig,
    TeamsPresenceBridge,
)

from .conftest import ALICE, APP_ID, BOB, CAROL, SECRET, TENANT, USERS, eventually, standin

A = Availability
FAST = {"poll_interval": 0.0, "backoff_base": 0.05, "backoff_cap": 0.4}


def config(graph: Any, credential: Any = None, **timing: Any) -> TeamsConfig:
    values = dict(FAST)
    values.update(timing)
    return TeamsConfig(
        tenant_id=TENANT,
        client_id=APP_ID,
        credential=credential or ClientSecret(SECRET),
        graph_url=graph.base_url,
        token_url=graph.base_url,
        ca_file=str(graph.tls.ca_file),
        request_timeout=5.0,
        timing=SyncTiming(**values),
    )


@asynccontextmanager
async def running(
    graph: Any, known: bool = True, **kwargs: Any
) -> AsyncIterator[TeamsPresenceBridge]:
    bridge = TeamsPresenceBridge(config(graph, **kwargs))
    if known:  # as after a restart with saved state: Graph holds nothing from this bridge
        bridge.restore_state({uid: {"session": None, "preferred": None} for uid in USERS})
    async with bridge:
        yield bridge


def shows(graph: Any, user: str, availability: str, activity: str) -> Callable[[], bool]:
    return lambda: graph.presence(user) == (availability, activity)


def state(
    user: str, automatic: Availability, manual: Availability | None = None
) -> OutboundPresence:
    return OutboundPresence(user_id=user, automatic=automatic, manual=manual)


def bodies(graph: Any, user: str) -> list[tuple[str, int, object]]:
    return [
        (c.path.rsplit("/", 1)[1], c.status, c.body)
        for c in graph.calls
        if f"/users/{user}/" in c.path
    ]


async def test_each_handset_state_reaches_teams_as_an_allowed_pair(graph: Any) -> None:
    async with running(graph) as bridge:
        await bridge.publish(
            [
                state(ALICE, A.AVAILABLE),
                state(BOB, A.IN_A_CALL),
                state(CAROL, A.AVAILABLE, manual=A.DO_NOT_DISTURB),
            ]
        )
        await eventually(shows(graph, ALICE, "Available", "Available"), what="Alice available")
        await eventually(shows(graph, BOB, "Busy", "InACall"), what="Bob in a call")
        await eventually(shows(graph, CAROL, "DoNotDisturb", "DoNotDisturb"), what="Carol DND")
        assert bridge.status.state is ConnectionState.CONNECTED
    assert bodies(graph, BOB) == [
        (
            "setPresence",
            200,
            {
                "sessionId": APP_ID,
                "availability": "Busy",
                "activity": "InACall",
                "expirationDuration": "PT15M",
            },
        )
    ]
    assert bodies(graph, CAROL) == [
        (
            "setPresence",
            200,
            {
                "sessionId": APP_ID,
                "availability": "Available",
                "activity": "Available",
                "expirationDuration": "PT15M",
            },
        ),
        (
            "setUserPreferredPresence",
            200,
            {"availability": "DoNotDisturb", "activity": "DoNotDisturb"},
        ),
    ]
    # MSAL read the stand-in's OpenID configuration, then fetched one token
    assert graph.discovery_requests == 1 and graph.identity.requests == 1


async def test_handset_offline_clears_the_session_and_manual_states_follow_the_code(
    graph: Any,
) -> None:
    async with running(graph) as bridge:
        await bridge.publish([state(ALICE, A.AVAILABLE)])
        await eventually(shows(graph, ALICE, "Available", "Available"))
        await bridge.publish([state(ALICE, A.AVAILABLE, manual=A.AWAY)])
        await eventually(shows(graph, ALICE, "Away", "Away"), what="manual away")
        await bridge.publish([state(ALICE, A.AVAILABLE)])
        await eventually(lambda: graph.preferred(ALICE) is None, what="preferred cleared")
        assert graph.presence(ALICE) == ("Available", "Available")
        await bridge.publish([state(ALICE, A.OFFLINE)])
        await eventually(lambda: graph.sessions(ALICE) == {}, what="session cleared")
        assert graph.presence(ALICE) == ("Offline", "Offline")
    assert [name for name, _, _ in bodies(graph, ALICE)] == [
        "setPresence",
        "setUserPreferredPresence",
        "clearUserPreferredPresence",
        "clearPresence",
    ]


async def test_without_saved_state_stale_sessions_and_preferences_are_cleared(graph: Any) -> None:
    graph.set_in_teams(BOB, "BeRightBack", "BeRightBack")  # left over by an earlier run
    async with running(graph, known=False) as bridge:
        await bridge.publish([state(BOB, A.OFFLINE)])
        await eventually(lambda: len(bodies(graph, BOB)) == 2, what="two clears")
        assert graph.preferred(BOB) is None
    assert [(name, status) for name, status, _ in bodies(graph, BOB)] == [
        ("clearPresence", 404),  # no session: counts as done
        ("clearUserPreferredPresence", 200),
    ]


async def test_available_sessions_are_reposted_so_they_never_fade(graph: Any) -> None:
    # Graph fades an Available session not re-posted within 5 minutes. The bridge re-posts every
    # available_keepalive seconds (real time, shortened here); the stand-in's clock jumps 4
    # minutes between re-posts, so 12 minutes pass for Graph.
    async with running(graph, available_keepalive=0.2) as bridge:
        await bridge.publish([state(ALICE, A.AVAILABLE)])
        await eventually(shows(graph, ALICE, "Available", "Available"))
        for _ in range(3):
            posts = len(graph.graph_calls("setPresence"))
            graph.advance(240)
            await eventually(
                lambda posts=posts: len(graph.graph_calls("setPresence")) > posts, what="a re-post"
            )
            assert graph.presence(ALICE) == ("Available", "Available")
    # without the bridge the same session fades: idle after 5 minutes, away after 10
    graph.advance(301)
    assert graph.presence(ALICE) == ("AvailableIdle", "Inactive")
    graph.advance(300)
    assert graph.presence(ALICE) == ("Away", "Away")


async def test_polling_brings_back_states_set_in_teams(graph: Any) -> None:
    async with running(graph, poll_interval=0.05, inbound_settle=0.0) as bridge:
        await bridge.publish([state(ALICE, A.AVAILABLE), state(BOB, A.AVAILABLE)])
        await eventually(shows(graph, BOB, "Available", "Available"))
        seen: dict[str, InboundPresence] = {}

        async def until(check: Callable[[], bool]) -> None:
            while not check():
                for presence in await asyncio.wait_for(bridge.poll(), 5.0):
                    seen[presence.user_id] = presence

        # first observations: Teams shows what the bridge published, nothing imposed
        await until(lambda: ALICE in seen and BOB in seen)
        assert seen[ALICE].availability is None and seen[BOB].availability is None
        graph.set_in_teams(ALICE, "DoNotDisturb", "DoNotDisturb")  # Alice picks DND in Teams
        graph.set_teams_client(BOB, "Busy", "InAMeeting")  # Bob joins a Teams meeting
        await until(
            lambda: seen[ALICE].availability is not None and seen[BOB].availability is not None
        )
        assert seen[ALICE] == InboundPresence(
            user_id=ALICE,
            availability=A.DO_NOT_DISTURB,
            teams_availability="DoNotDisturb",
            teams_activity="DoNotDisturb",
        )
        assert (seen[BOB].availability, seen[BOB].teams_activity) == (A.BUSY, "InAMeeting")
        graph.sign_out_teams_client(BOB)  # the meeting is over
        await until(lambda: seen[BOB].availability is None)
    polls = graph.graph_calls("getPresencesByUserId")
    assert polls and all(sorted(c.body["ids"]) == sorted(USERS) for c in polls)


async def test_polls_ask_for_at_most_650_ids(standin_tls: Any) -> None:
    users = {f"{i:08x}-0000-4000-8000-000000000001": f"user{i}@contoso.example" for i in range(700)}
    graph = standin.GraphStandin(
        tls=standin_tls,
        tenant_id=TENANT,
        apps=[standin.RegisteredApp(client_id=APP_ID, secret=SECRET)],
        users=[standin.StandinUser(oid, upn) for oid, upn in users.items()],
    )
    await graph.start()
    try:
        bridge = TeamsPresenceBridge(config(graph, poll_interval=60.0))
        bridge.restore_state({uid: {"session": None, "preferred": None} for uid in users})
        async with bridge:
            await bridge.publish([state(uid, A.OFFLINE) for uid in users])
            await eventually(
                lambda: len(graph.graph_calls("getPresencesByUserId")) == 2,
                what="one polling round",
            )
            found = await asyncio.wait_for(bridge.poll(), 5.0)
        assert len(found) == 700
        assert [len(c.body["ids"]) for c in graph.graph_calls("getPresencesByUserId")] == [650, 50]
        assert len(graph.calls) == 2  # users known to be offline need no writes
    finally:
        await graph.close()
    assert graph.violations == []


async def test_429_retry_after_is_honoured_and_the_bridge_catches_up_with_the_latest_state(
    graph: Any,
) -> None:
    graph.add_fault(standin.Fault(status=429, retry_after="1", times=1))
    async with running(graph) as bridge:
        await bridge.publish([state(ALICE, A.AVAILABLE)])
        await eventually(lambda: len(graph.calls) == 1, what="the throttled request")
        for s in (A.RINGING, A.IN_A_CALL, A.AVAILABLE, A.RINGING, A.IN_A_CALL):
            await bridge.publish([state(ALICE, s)])
        status = bridge.status
        assert status.throttled_until is not None and status.pending_users == 1
        await eventually(shows(graph, ALICE, "Busy", "InACall"), what="the latest state")
    throttled, caught_up = graph.calls
    assert (throttled.status, caught_up.status) == (429, 200)
    assert caught_up.body["availability"] == "Busy"  # only the latest state, no backlog
    assert caught_up.at - throttled.at >= 1.0


async def test_a_refused_token_is_renewed_and_the_request_repeated(
    graph: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(graph) as bridge:
        await bridge.publish([state(ALICE, A.AVAILABLE)])
        await eventually(shows(graph, ALICE, "Available", "Available"))
        graph.revoke_tokens()
        await bridge.publish([state(ALICE, A.IN_A_CALL)])
        await eventually(shows(graph, ALICE, "Busy", "InACall"))
        assert bridge.status.state is ConnectionState.CONNECTED
    assert [c.status for c in graph.calls] == [200, 401, 200]
    assert graph.identity.requests == 2
    assert SECRET not in caplog.text
    assert all(token not in caplog.text for token in graph.identity.issued)


@pytest.mark.parametrize("statuses", [(503, 503), (504,), (500, 502)])
async def test_server_errors_are_retried_with_backoff(
    graph: Any, statuses: tuple[int, ...]
) -> None:
    for status in statuses:
        graph.add_fault(standin.Fault(status=status))
    async with running(graph) as bridge:
        await bridge.publish([state(ALICE, A.IN_A_CALL)])
        await eventually(shows(graph, ALICE, "Busy", "InACall"))
        # The stand-in holds the state once it answered; the bridge reads the answer after.
        await eventually(
            lambda: bridge.status.state is ConnectionState.CONNECTED,
            what="the bridge to read the answer and report itself connected",
        )
        assert (
            bridge.status.last_error is not None
            and f"HTTP {statuses[-1]}" in bridge.status.last_error
        )
    calls = graph.calls
    assert [c.status for c in calls] == [*statuses, 200]
    gaps = [b.at - a.at for a, b in itertools.pairwise(calls)]
    # attempt n waits at least half of 0.05 s * 2**n
    assert all(gap >= 0.025 * 2**n for n, gap in enumerate(gaps))


async def test_answers_that_are_not_graphs_are_failures_not_crashes(graph: Any) -> None:
    graph.add_fault(
        standin.Fault(status=502, body=b"<html>Bad gateway</html>", path_contains="setPresence")
    )
    graph.add_fault(
        standin.Fault(status=200, body=b"<html>captive portal</html>", path_contains="getPresences")
    )
    async with running(graph, poll_interval=0.05, inbound_settle=0.0) as bridge:
        await bridge.publish([state(ALICE, A.IN_A_CALL)])
        await eventually(shows(graph, ALICE, "Busy", "InACall"))
        seen: set[str] = set()
        while seen != set(USERS):  # polls after the garbage one go on
            seen |= {p.user_id for p in await asyncio.wait_for(bridge.poll(), 5.0)}
    assert [c.status for c in graph.calls[:2]] == [502, 200]


async def test_a_slow_answer_times_out_and_is_retried(graph: Any) -> None:
    graph.add_fault(standin.Fault(delay=2.0))
    bridge = TeamsPresenceBridge(dataclasses.replace(config(graph), request_timeout=0.5))
    bridge.restore_state({ALICE: {"session": None, "preferred": None}})
    async with bridge:
        await bridge.publish([state(ALICE, A.IN_A_CALL)])
        await eventually(lambda: bridge.status.last_error is not None, what="the timeout")
        assert "no answer within 0.5 s" in (bridge.status.last_error or "")
        await eventually(shows(graph, ALICE, "Busy", "InACall"))
        await eventually(lambda: len(graph.calls) == 2, what="both requests answered")


async def test_a_certificate_credential_signs_a_client_assertion(standin_tls: Any) -> None:
    credential = standin.make_client_certificate("sip2uc teams bridge")
    graph = standin.GraphStandin(
        tls=standin_tls,
        tenant_id=TENANT,
        apps=[standin.RegisteredApp(client_id=APP_ID, certificate=credential.certificate)],
        users=[standin.StandinUser(ALICE, USERS[ALICE])],
    )
    await graph.start()
    try:
        pem = credential.pem.decode()
        certificate = ClientCertificate(private_key_pem=pem, certificate_pem=pem)
        bridge = TeamsPresenceBridge(config(graph, credential=certificate))
        bridge.restore_state({ALICE: {"session": None, "preferred": None}})
        async with bridge:
            await bridge.publish([state(ALICE, A.AVAILABLE)])
            await eventually(shows(graph, ALICE, "Available", "Available"), what=f"{bridge.status}")
    finally:
        await graph.close()
    assert graph.violations == []


async def test_a_wrong_secret_fails_the_bridge_without_showing_the_secret(
    graph: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bridge = TeamsPresenceBridge(config(graph, credential=ClientSecret("not-the-secret-XYZ")))
    async with bridge:
        await bridge.publish([state(ALICE, A.AVAILABLE)])
        await eventually(lambda: bridge.status.state is ConnectionState.FAILED, what="failed")
        error = bridge.status.last_error or ""
    assert "invalid_client" in error and "AADSTS7000215" in error
    assert "not-the-secret-XYZ" not in error and "not-the-secret-XYZ" not in caplog.text
    assert "not-the-secret-XYZ" not in repr(bridge.config)
    assert graph.calls == []


async def test_closing_the_bridge_ends_a_waiting_poll(graph: Any) -> None:
    bridge = TeamsPresenceBridge(config(graph))
    waiting = asyncio.create_task(bridge.poll())
    await asyncio.sleep(0.05)
    await bridge.close()
    assert await asyncio.wait_for(waiting, 2.0) == []
