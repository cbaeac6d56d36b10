"""The HTTP side of the state view (aiohttp): the page, its event stream, the login form and
the static files. Read-only: nothing here changes the control plane.

    GET  /         the page, rendered on the server (complete without JavaScript)
    GET  /events   text/event-stream: the whole state first, then fragments as it changes
    GET  /login    the login form (only where the token is required)
    POST /login    checks the token, sets the session cookie
    GET  /static/  style sheet, the vendored htmx files, the link indicator
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path

from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from . import sse
from .auth import SESSION_COOKIE, Gate, Verdict
from .hub import UpdateHub
from .render import Renderer
from .state import StateView

log = logging.getLogger(__name__)

STATIC_DIR = Path(str(files("sip2uc_web") / "static"))
# A browser's stream gets a comment line after this long without an update, so that proxies
# and the browser keep an idle connection open.
KEEPALIVE_SECONDS = 15.0
# The only request with a body is the login form.
MAX_REQUEST_BYTES = 4096
SECURITY_HEADERS = {
    # Scripts, styles and the event stream come from this origin only; no inline code runs.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

STATE: web.AppKey[StateView] = web.AppKey("state", StateView)
RENDERER: web.AppKey[Renderer] = web.AppKey("renderer", Renderer)
HUB: web.AppKey[UpdateHub] = web.AppKey("hub", UpdateHub)
GATE: web.AppKey[Gate] = web.AppKey("gate", Gate)
TLS: web.AppKey[bool] = web.AppKey("tls", bool)
_FORMS: web.AppKey[Environment] = web.AppKey("forms", Environment)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    state: StateView, renderer: Renderer, hub: UpdateHub, gate: Gate, *, tls: bool
) -> web.Application:
    app = web.Application(middlewares=[_guard], client_max_size=MAX_REQUEST_BYTES)
    app[STATE] = state
    app[RENDERER] = renderer
    app[HUB] = hub
    app[GATE] = gate
    app[TLS] = tls
    app[_FORMS] = Environment(
        loader=PackageLoader("sip2uc_web", "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    app.router.add_get("/", page)
    app.router.add_get("/events", events)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_static("/static", STATIC_DIR, follow_symlinks=False)
    app.on_response_prepare.append(_headers)
    return app


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    gate = request.app[GATE]
    if not gate.host_allowed(request.host):
        return web.Response(
            status=403, text="This state view answers requests for a loopback host name only.\n"
        )
    if request.path.startswith("/static/") or request.path == "/login":
        return await handler(request)
    verdict = gate.check(request.headers.get("Authorization"), request.cookies.get(SESSION_COOKIE))
    if verdict is Verdict.ALLOW:
        return await handler(request)
    if request.path == "/" and "Authorization" not in request.headers:
        raise web.HTTPSeeOther("/login")
    return web.Response(
        status=401,
        text="The admin token is required (Authorization: Bearer, or sign in at /login).\n"
        if verdict is Verdict.MISSING
        else "Wrong admin token.\n",
        headers={"WWW-Authenticate": 'Bearer realm="sip2uc"'},
    )


async def page(request: web.Request) -> web.Response:
    html = request.app[RENDERER].page(request.app[STATE])
    return web.Response(text=html, content_type="text/html", charset="utf-8")


async def events(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    response = web.StreamResponse(headers={"X-Accel-Buffering": "no"})
    response.content_type = sse.MEDIA_TYPE
    response.charset = "utf-8"
    subscriber = hub.subscribe()
    try:
        await response.prepare(request)
        while True:
            try:
                frame = await asyncio.wait_for(subscriber.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                frame = sse.comment("keep-alive")
            if frame is None:
                break  # the server stops, or this browser fell too far behind
            await response.write(frame)
    except ConnectionError:
        pass  # the browser went away
    finally:
        hub.unsubscribe(subscriber)
    return response


def _login_page(request: web.Request, *, problem: str = "", status: int = 200) -> web.Response:
    html = request.app[_FORMS].get_template("login.html").render(problem=problem)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


async def login_form(request: web.Request) -> web.Response:
    if not request.app[GATE].required:
        raise web.HTTPSeeOther("/")
    return _login_page(request)


async def login(request: web.Request) -> web.Response:
    gate = request.app[GATE]
    if not gate.required:
        raise web.HTTPSeeOther("/")
    form = await request.post()
    given = form.get("token")
    session = gate.login(given) if isinstance(given, str) else None
    if session is None:
        log.warning("state view: a sign-in with a wrong token from %s", request.remote)
        return _login_page(request, problem="That is not the admin token.", status=401)
    response = web.HTTPSeeOther("/")
    response.set_cookie(
        SESSION_COOKIE,
        session,
        httponly=True,
        secure=request.app[TLS],
        samesite="Strict",
        path="/",
    )
    raise response
