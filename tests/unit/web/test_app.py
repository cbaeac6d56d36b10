"""The HTTP side over a real loopback socket (aiohttp's test server): the page, the event
stream, sign-in and its cookie, refusals, and that nothing accepts a change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sip2uc_web.app import SECURITY_HEADERS, create_app
from sip2uc_web.auth import SESSION_COOKIE, Gate, session_value
from sip2uc_web.hub import UpdateHub
from sip2uc_web.model import PresenceView
from sip2uc_web.render import HTMX_VERSION, Renderer
from sip2uc_web.state import StateView

Client = TestClient[web.Request, web.Application]
TOKEN = "t0ken-for-tests"
NOW = 1_800_000_000.0
ALICE = PresenceView(
    "users/a", "456", "sip:456@x", "available", "", "registration", "", NOW, None, True
)


def build(*, loopback: bool) -> tuple[StateView, UpdateHub, TestServer]:
    state = StateView()
    state.presence_snapshot([ALICE])
    renderer = Renderer(control="127.0.0.1:50051", clock=lambda: NOW)
    hub = UpdateHub(state, renderer, coalesce_seconds=0.0)
    app = create_app(state, renderer, hub, Gate(TOKEN, loopback=loopback), tls=False)
    return state, hub, TestServer(app)


@pytest.fixture
async def open_view() -> AsyncIterator[tuple[StateView, UpdateHub, Client]]:
    state, hub, server = build(loopback=True)
    async with TestClient(server) as client:
        yield state, hub, client
        hub.close()


@pytest.fixture
async def guarded_view() -> AsyncIterator[Client]:
    _, hub, server = build(loopback=False)
    async with TestClient(server) as client:
        yield client
        hub.close()


async def test_the_page_is_served_with_its_security_headers(
    open_view: tuple[StateView, UpdateHub, Client],
) -> None:
    _, _, client = open_view
    response = await client.get("/")
    assert response.status == 200
    assert response.content_type == "text/html"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert response.headers["Cache-Control"] == "no-store"
    assert 'data-user="users/a"' in await response.text()


async def test_the_vendored_htmx_is_served_as_javascript(
    open_view: tuple[StateView, UpdateHub, Client],
) -> None:
    _, _, client = open_view
    response = await client.get(f"/static/vendor/htmx-{HTMX_VERSION}.min.js")
    assert response.status == 200
    assert response.content_type in ("application/javascript", "text/javascript")
    assert (await client.get("/static/../app.py")).status in (403, 404)


async def test_the_event_stream_starts_with_the_state_and_carries_changes(
    open_view: tuple[StateView, UpdateHub, Client],
) -> None:
    state, hub, client = open_view
    response = await client.get("/events")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    first = await response.content.readuntil(b"\n\n")
    assert first.startswith(b'event: update\nretry: 2000\ndata: <section id="summary"')
    hub.changed(state.presence_changed(replace(ALICE, availability="away")))
    second = (await response.content.readuntil(b"\n\n")).decode()
    assert second.startswith("event: update\ndata: ")
    assert '<td><span class="availability away">away</span></td>' in second
    response.close()


async def test_a_foreign_host_name_is_refused_on_loopback(
    open_view: tuple[StateView, UpdateHub, Client],
) -> None:
    _, _, client = open_view
    response = await client.get("/", headers={"Host": "rebound.example"})
    assert response.status == 403
    assert "loopback host name" in await response.text()


async def test_a_wrong_bearer_token_is_refused_even_on_loopback(
    open_view: tuple[StateView, UpdateHub, Client],
) -> None:
    _, _, client = open_view
    response = await client.get("/", headers={"Authorization": "Bearer nope"})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="sip2uc"'


async def test_nothing_accepts_a_change(
    open_view: tuple[StateView, UpdateHub, Client],
) -> None:
    _, _, client = open_view
    for method, path in (("POST", "/"), ("PUT", "/"), ("DELETE", "/events"), ("PATCH", "/")):
        assert (await client.request(method, path)).status == 405


async def test_without_the_token_the_page_sends_the_browser_to_sign_in(
    guarded_view: Client,
) -> None:
    response = await guarded_view.get("/", allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "/login")
    events = await guarded_view.get("/events")
    assert events.status == 401
    assert "The admin token is required" in await events.text()
    form = await guarded_view.get("/login")
    assert form.status == 200
    assert '<input id="token" name="token" type="password"' in await form.text()


async def test_a_wrong_token_at_sign_in_gets_no_cookie(guarded_view: Client) -> None:
    response = await guarded_view.post("/login", data={"token": "nope"}, allow_redirects=False)
    assert response.status == 401
    assert "Set-Cookie" not in response.headers
    assert '<p class="problem" role="alert">That is not the admin token.</p>' in (
        await response.text()
    )


async def test_the_right_token_sets_an_httponly_session_cookie(guarded_view: Client) -> None:
    response = await guarded_view.post("/login", data={"token": TOKEN}, allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "/")
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie.value == session_value(TOKEN)
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    assert TOKEN not in response.headers["Set-Cookie"]
    page = await guarded_view.get("/")  # the client keeps the cookie
    assert page.status == 200


async def test_a_bearer_token_opens_the_page_for_scripts(guarded_view: Client) -> None:
    response = await guarded_view.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 200
    wrong = await guarded_view.get("/", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    assert await wrong.text() == "Wrong admin token.\n"


async def test_a_forged_cookie_is_refused(guarded_view: Client) -> None:
    guarded_view.session.cookie_jar.update_cookies({SESSION_COOKIE: "forged"})
    assert (await guarded_view.get("/events")).status == 401


async def test_an_oversized_sign_in_is_refused(guarded_view: Client) -> None:
    response = await guarded_view.post("/login", data={"token": "x" * 10_000})
    assert response.status == 413


async def test_on_loopback_the_sign_in_page_sends_the_browser_home(
    open_view: tuple[StateView, UpdateHub, Client],
) -> None:
    _, _, client = open_view
    response = await client.get("/login", allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "/")
