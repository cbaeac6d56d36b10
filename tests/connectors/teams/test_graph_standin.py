"""The Graph contract stand-in itself: it refuses what Graph's published definitions refuse (and
records it so the test at hand fails), accepts what they allow, and keeps Graph's presence
semantics. Driven with plain HTTPS requests, not through the bridge."""

from __future__ import annotations

import json
import ssl
from typing import Any

import aiohttp
import pytest

from .conftest import ALICE, APP_ID, BOB, SECRET, TENANT, standin

csdl = standin.csdl


def client(graph: Any) -> aiohttp.ClientSession:
    context = ssl.create_default_context(cafile=str(graph.tls.ca_file))
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))


async def get_token(graph: Any, **form: str) -> tuple[int, dict[str, Any]]:
    data = {
        "grant_type": "client_credentials",
        "client_id": APP_ID,
        "client_secret": SECRET,
        "scope": "https://graph.microsoft.com/.default",
    }
    data.update(form)
    data = {k: v for k, v in data.items() if v != ""}
    async with (
        client(graph) as session,
        session.post(f"{graph.base_url}/{TENANT}/oauth2/v2.0/token", data=data) as response,
    ):
        return response.status, await response.json()


async def token(graph: Any) -> str:
    status, body = await get_token(graph)
    assert status == 200
    return str(body["access_token"])


async def call(
    graph: Any,
    path: str,
    body: object = None,
    *,
    bearer: str | None,
    method: str = "POST",
    raw: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    headers = {"Content-Type": content_type}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    async with (
        client(graph) as session,
        session.request(
            method, f"{graph.base_url}/v1.0{path}", data=data, headers=headers
        ) as response,
    ):
        text = await response.text()
        return response.status, json.loads(text) if text else None


def set_presence_body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "sessionId": APP_ID,
        "availability": "Available",
        "activity": "Available",
        "expirationDuration": "PT1H",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


async def test_a_valid_set_presence_is_accepted_and_shown(graph: Any) -> None:
    bearer = await token(graph)
    status, body = await call(
        graph, f"/users/{ALICE}/presence/setPresence", set_presence_body(), bearer=bearer
    )
    assert (status, body) == (200, None)
    assert graph.presence(ALICE) == ("Available", "Available")
    status, body = await call(graph, f"/users/{ALICE}/presence", bearer=bearer, method="GET")
    assert status == 200
    assert (body["id"], body["availability"], body["activity"]) == (ALICE, "Available", "Available")
    assert csdl.Csdl().check_object("microsoft.graph.presence", body, "reply") == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (set_presence_body(availabilty="Available"), "unknown parameter 'availabilty'"),
        (
            set_presence_body(availability=..., availabilty="Available"),
            "parameter 'availability' (Edm.String) is required",
        ),
        (set_presence_body(activity=...), "parameter 'activity' (Edm.String) is required"),
        (set_presence_body(availability=5), "expected a JSON string (Edm.String), got int"),
        (
            set_presence_body(availability="Busy", activity="Busy"),
            "Busy/Busy is not a supported combination",
        ),
        (
            set_presence_body(availability="Available", activity="InACall"),
            "Available/InACall is not a supported combination",
        ),
        (
            set_presence_body(expirationDuration="PT2M"),
            "expirationDuration PT2M is outside PT5M-PT4H",
        ),
        (
            set_presence_body(expirationDuration="PT5H"),
            "expirationDuration PT5H is outside PT5M-PT4H",
        ),
        (set_presence_body(expirationDuration="1 hour"), "expected an ISO 8601 duration string"),
        (set_presence_body(expirationDuration=3600), "expected an ISO 8601 duration string"),
        (set_presence_body(sessionId="someone-else"), "must be the application id"),
        (set_presence_body(sessionId=...), "sessionId is required for an application"),
    ],
)
async def test_set_presence_that_breaks_the_contract_is_refused_and_recorded(
    graph: Any, body: dict[str, object], expected: str
) -> None:
    bearer = await token(graph)
    status, reply = await call(graph, f"/users/{ALICE}/presence/setPresence", body, bearer=bearer)
    assert status == 400
    assert reply["error"]["code"] == "BadRequest"
    assert expected in reply["error"]["message"]
    violations = graph.take_violations()
    assert any(expected in v for v in violations), violations
    assert graph.presence(ALICE) == ("Offline", "Offline")  # nothing was applied


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        (
            "/presence/setUserPreferredPresence",
            {"availability": "Busy", "activity": "InACall"},
            "Busy/InACall is not a supported combination",
        ),
        (
            "/presence/setUserPreferredPresence",
            {"availability": "Away", "activity": "Away", "sessionId": APP_ID},
            "unknown parameter 'sessionId'",
        ),
        ("/presence/clearPresence", {}, "clearPresence: sessionId is required"),
        ("/presence/clearPresence", {"sessionId": "other"}, "must be the application id"),
        (
            "/presence/clearUserPreferredPresence",
            {"sessionId": APP_ID},
            "unknown parameter 'sessionId'",
        ),
        ("/presence/setPresense", set_presence_body(), "no action 'setPresense'"),
    ],
)
async def test_other_actions_are_checked_against_the_metadata_and_the_documentation(
    graph: Any, path: str, body: object, expected: str
) -> None:
    bearer = await token(graph)
    status, reply = await call(graph, f"/users/{ALICE}{path}", body, bearer=bearer)
    assert status == 400
    assert expected in reply["error"]["message"]
    assert any(expected in v for v in graph.take_violations())


async def test_get_presences_takes_at_most_650_object_ids(graph: Any) -> None:
    bearer = await token(graph)
    ids = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(651)]
    status, reply = await call(
        graph, "/communications/getPresencesByUserId", {"ids": ids}, bearer=bearer
    )
    assert status == 400 and "651 ids, at most 650" in reply["error"]["message"]
    status, reply = await call(
        graph,
        "/communications/getPresencesByUserId",
        {"ids": ["alice@contoso.example"]},
        bearer=bearer,
    )
    assert status == 400 and "must be user object ids" in reply["error"]["message"]
    assert len(graph.take_violations()) == 2
    status, reply = await call(
        graph, "/communications/getPresencesByUserId", {"ids": ids[:650]}, bearer=bearer
    )
    assert status == 200 and len(reply["value"]) == 650


async def test_get_presences_returns_graphs_collection_shape(graph: Any) -> None:
    bearer = await token(graph)
    await call(
        graph,
        f"/users/{ALICE}/presence/setPresence",
        set_presence_body(availability="Busy", activity="InACall"),
        bearer=bearer,
    )
    status, reply = await call(
        graph, "/communications/getPresencesByUserId", {"ids": [ALICE, BOB]}, bearer=bearer
    )
    assert status == 200
    assert reply["@odata.context"].endswith("$metadata#Collection(microsoft.graph.presence)")
    assert [(p["id"], p["availability"], p["activity"]) for p in reply["value"]] == [
        (ALICE, "Busy", "InACall"),
        (BOB, "Offline", "Offline"),
    ]


async def test_wrong_method_path_and_media_type_are_refused(graph: Any) -> None:
    bearer = await token(graph)
    status, _ = await call(
        graph, f"/users/{ALICE}/presence/setPresence", bearer=bearer, method="GET"
    )
    assert status == 405
    status, _ = await call(graph, f"/users/{ALICE}/presences", {}, bearer=bearer)
    assert status == 400
    status, _ = await call(
        graph,
        f"/users/{ALICE}/presence/setPresence",
        set_presence_body(),
        bearer=bearer,
        content_type="text/plain",
    )
    assert status == 400
    status, _ = await call(
        graph, f"/users/{ALICE}/presence/setPresence", raw=b"{not json", bearer=bearer
    )
    assert status == 400
    violations = graph.take_violations()
    assert len(violations) == 4
    assert "Content-Type must be application/json" in violations[2]


async def test_requests_without_a_token_are_refused_and_recorded(graph: Any) -> None:
    status, reply = await call(
        graph, f"/users/{ALICE}/presence/setPresence", set_presence_body(), bearer=None
    )
    assert status == 401 and reply["error"]["code"] == "InvalidAuthenticationToken"
    assert graph.take_violations() == [
        f"POST /v1.0/users/{ALICE}/presence/setPresence: no bearer token"
    ]


async def test_expired_and_unknown_tokens_get_401_without_a_violation(graph: Any) -> None:
    bearer = await token(graph)
    graph.advance(3600)
    status, reply = await call(
        graph, f"/users/{ALICE}/presence/setPresence", set_presence_body(), bearer=bearer
    )
    assert status == 401 and reply["error"]["code"] == "InvalidAuthenticationToken"
    status, _ = await call(
        graph, f"/users/{ALICE}/presence/setPresence", set_presence_body(), bearer="forged"
    )
    assert status == 401


async def test_an_app_without_the_permission_is_forbidden(standin_tls: Any) -> None:
    graph = standin.GraphStandin(
        tls=standin_tls,
        tenant_id=TENANT,
        apps=[
            standin.RegisteredApp(
                client_id=APP_ID, secret=SECRET, roles=frozenset({"User.Read.All"})
            )
        ],
        users=[standin.StandinUser(ALICE, "alice@contoso.example")],
    )
    await graph.start()
    try:
        bearer = await token(graph)
        status, reply = await call(
            graph, f"/users/{ALICE}/presence/setPresence", set_presence_body(), bearer=bearer
        )
        assert status == 403 and "Presence.ReadWrite.All" in reply["error"]["message"]
    finally:
        await graph.close()
    assert graph.violations == []


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "00000000-0000-0000-0000-000000000000"}, 400, "unauthorized_client"),
    ],
)
async def test_token_endpoint_refuses_wrong_credentials_like_entra(
    graph: Any, form: dict[str, str], status: int, error: str
) -> None:
    got, body = await get_token(graph, **form)
    assert (got, body["error"]) == (status, error)
    assert body["error_description"].startswith("AADSTS")
    assert graph.violations == []  # wrong credentials are configuration, not a contract breach


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"scope": "https://graph.microsoft.com/Presence.ReadWrite.All"}, "invalid_scope"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({"client_secret": ""}, "invalid_request"),
    ],
)
async def test_malformed_token_requests_are_recorded(
    graph: Any, form: dict[str, str], error: str
) -> None:
    got, body = await get_token(graph, **form)
    assert (got, body["error"]) == (400, error)
    assert len(graph.take_violations()) == 1


async def test_injected_faults_answer_with_graphs_error_shape_and_retry_after(graph: Any) -> None:
    bearer = await token(graph)
    graph.add_fault(standin.Fault(status=429, retry_after="2.128", times=1))
    async with (
        client(graph) as session,
        session.post(
            f"{graph.base_url}/v1.0/users/{ALICE}/presence/setPresence",
            json=set_presence_body(),
            headers={"Authorization": f"Bearer {bearer}"},
        ) as response,
    ):
        assert response.status == 429
        assert response.headers["Retry-After"] == "2.128"
        assert (await response.json())["error"]["code"] == "TooManyRequests"
    status, _ = await call(
        graph, f"/users/{ALICE}/presence/setPresence", set_presence_body(), bearer=bearer
    )
    assert status == 200


async def test_an_available_session_not_reposted_fades_to_away_then_expires(graph: Any) -> None:
    bearer = await token(graph)
    await call(
        graph,
        f"/users/{ALICE}/presence/setPresence",
        set_presence_body(expirationDuration="PT15M"),
        bearer=bearer,
    )
    graph.advance(299)
    assert graph.presence(ALICE) == ("Available", "Available")
    graph.advance(2)
    assert graph.presence(ALICE) == ("AvailableIdle", "Inactive")
    graph.advance(300)
    assert graph.presence(ALICE) == ("Away", "Away")
    graph.advance(300)
    assert graph.presence(ALICE) == ("Offline", "Offline")


async def test_a_reposted_session_does_not_fade(graph: Any) -> None:
    bearer = await token(graph)
    for _ in range(3):
        await call(
            graph, f"/users/{ALICE}/presence/setPresence", set_presence_body(), bearer=bearer
        )
        graph.advance(240)
    assert graph.presence(ALICE) == ("Available", "Available")


async def test_preferred_presence_overrides_sessions_only_while_one_exists(graph: Any) -> None:
    bearer = await token(graph)
    preferred = {"availability": "DoNotDisturb", "activity": "DoNotDisturb"}
    assert (
        await call(
            graph, f"/users/{ALICE}/presence/setUserPreferredPresence", preferred, bearer=bearer
        )
    )[0] == 200
    assert graph.presence(ALICE) == ("Offline", "Offline")
    await call(
        graph,
        f"/users/{ALICE}/presence/setPresence",
        set_presence_body(availability="Busy", activity="InACall"),
        bearer=bearer,
    )
    assert graph.presence(ALICE) == ("DoNotDisturb", "DoNotDisturb")
    assert (
        await call(graph, f"/users/{ALICE}/presence/clearUserPreferredPresence", {}, bearer=bearer)
    )[0] == 200
    assert graph.presence(ALICE) == ("Busy", "InACall")


async def test_clear_presence_removes_the_apps_session_and_404s_when_there_is_none(
    graph: Any,
) -> None:
    bearer = await token(graph)
    await call(graph, f"/users/{ALICE}/presence/setPresence", set_presence_body(), bearer=bearer)
    graph.set_teams_client(ALICE, "Busy", "InAMeeting")
    assert graph.presence(ALICE) == ("Busy", "InAMeeting")  # Busy outranks Available
    assert (
        await call(
            graph, f"/users/{ALICE}/presence/clearPresence", {"sessionId": APP_ID}, bearer=bearer
        )
    )[0] == 200
    assert set(graph.sessions(ALICE)) == {"teams-client"}
    status, reply = await call(
        graph, f"/users/{ALICE}/presence/clearPresence", {"sessionId": APP_ID}, bearer=bearer
    )
    assert status == 404 and reply["error"]["code"] == "ResourceNotFound"


async def test_users_are_addressed_by_object_id_or_user_principal_name(graph: Any) -> None:
    bearer = await token(graph)
    status, _ = await call(
        graph,
        "/users/alice@contoso.example/presence/setPresence",
        set_presence_body(),
        bearer=bearer,
    )
    assert status == 200 and graph.presence(ALICE) == ("Available", "Available")
    status, _reply = await call(
        graph,
        "/users/nobody@contoso.example/presence/setPresence",
        set_presence_body(),
        bearer=bearer,
    )
    assert status == 404


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT5M", 300),
        ("PT4H", 14400),
        ("PT1H30M", 5400),
        ("P1D", 86400),
        ("PT0.5S", 0.5),
        ("-PT1M", -60),
    ],
)
def test_durations_parse_as_odata_day_time_durations(text: str, seconds: float) -> None:
    assert csdl.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["PT", "P", "5M", "PT5m", "PT1H ", "P1W", "", "PTM"])
def test_malformed_durations_are_not_durations(text: str) -> None:
    assert csdl.parse_duration(text) is None


def test_the_committed_metadata_declares_the_presence_actions() -> None:
    metadata = csdl.Csdl()
    set_presence = metadata.action("setPresence", "microsoft.graph.presence")
    assert [(p.name, p.type, p.nullable) for p in set_presence.parameters] == [
        ("sessionId", "Edm.String", True),
        ("availability", "Edm.String", False),
        ("activity", "Edm.String", False),
        ("expirationDuration", "Edm.Duration", True),
    ]
    get = metadata.action("getPresencesByUserId", "microsoft.graph.cloudCommunications")
    assert get.returns == "Collection(microsoft.graph.presence)"
    assert set(metadata.properties("microsoft.graph.presence")) >= {
        "id",
        "availability",
        "activity",
    }
    assert metadata.navigation("microsoft.graph.user") == {"presence": "microsoft.graph.presence"}
