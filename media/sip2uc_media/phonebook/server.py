"""The address book's HTTP(S) server: a thin aiohttp adapter over the pure modules.

Each request is answered from the snapshot the sidecar holds (never a query to the control
plane), after authentication: a per-site token (``?token=`` or ``Authorization: Bearer``) or
HTTP Digest with the handset's SIP credentials, whose response the control plane verifies.
A source that keeps failing is banned like one that fails SIP digest.
"""

from __future__ import annotations

import logging
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from sip2uc_core.sip.digest import Credentials

from .formats import Format, GigasetError, Rendered, render, render_gigaset_error
from .http_auth import Challenge, HttpDigest, token_matches
from .model import Phonebook
from .queries import PATHS, BadQuery, Request, parse_request

__all__ = ["ControlUnreachable", "PhonebookServer", "ServerHooks"]

_log = logging.getLogger(__name__)

#: The name the bans count wrong site tokens under (no digest user name holds a space).
TOKEN_USER = "(site token)"  # noqa: S105 - a label, not a secret

#: Rendered documents kept per book version (a full book of 2,000 entries is about 150 kB).
RENDERED_KEPT = 64

#: Verifies digest credentials for `method` with the control plane: True when they prove a
#: user, False otherwise; raises ControlUnreachable when it cannot ask.
Verify = Callable[[Credentials, str, str], Awaitable[bool]]


class ControlUnreachable(Exception):
    """The control plane cannot be asked right now (the link is down)."""


@dataclass(kw_only=True)
class ServerHooks:
    """What the server needs from the sidecar around it."""

    book: Callable[[], Phonebook | None]
    digest: HttpDigest
    verify: Verify
    clock: Callable[[], float]
    token: str = ""
    #: Whether a source address may ask at all (the sidecar's allowed networks, not banned).
    admits: Callable[[str], bool] = lambda _source: True
    #: Whether this source's attempts for this user name (or the token) are banned.
    user_banned: Callable[[str, str], bool] = lambda _source, _user: False
    #: Credentials (or a token, as user TOKEN_USER) refused: counted towards a ban.
    failed: Callable[[str, str], object] = lambda _source, _user: None
    #: Credentials accepted for a user from a source.
    succeeded: Callable[[str, str], object] = lambda _source, _user: None
    #: A request refused before any password was checked (a made-up or stale nonce, a
    #: malformed header): reported, never counted towards a ban.
    refused: Callable[[str, str], object] = lambda _source, _reason: None
    retry_after: int = 5
    #: Called once per answered request with the format asked for ("" when none) and the status.
    served: Callable[[str, int], object] = lambda _format, _status: None


class PhonebookServer:
    def __init__(self, hooks: ServerHooks) -> None:
        self.hooks = hooks
        # Handsets fetch the same few URLs again and again (a refresh every few minutes, the
        # same first letters): documents of the current version are kept, most recent last.
        self._rendered: OrderedDict[tuple[object, ...], Rendered] = OrderedDict()
        self._rendered_version = -1
        self._runner: web.AppRunner | None = None
        self.addresses: list[tuple[str, int]] = []

    async def start(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None = None
    ) -> tuple[str, int]:
        """Listen on `host`:`port` (0: any free port); returns the address bound."""
        app = web.Application(client_max_size=4096)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        if self._runner is None:
            self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[:2] if sockets else (host, port)
        self.addresses.append((str(bound[0]), int(bound[1])))
        return self.addresses[-1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        response = await self._answer(request)
        wanted = PATHS.get(request.path.rstrip("/"))
        self.hooks.served(wanted.value if wanted is not None else "", response.status)
        return response

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        hooks = self.hooks
        source = request.remote or ""
        now = hooks.clock()
        if not hooks.admits(source):
            return web.Response(status=403, text="Forbidden\n")
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        params = {k: v for k, v in request.query.items()}
        try:
            wanted = parse_request(request.path, params)
        except BadQuery as exc:
            if request.path.rstrip("/") == "/phonebook/gigaset":
                return _rendered(render_gigaset_error(exc.gigaset))
            return web.Response(status=400, text=f"{exc}\n")
        if wanted is None:
            return web.Response(status=404, text="Not Found\n")
        refused = await self._authenticate(request, source, now)
        if refused is not None:
            return refused
        book = hooks.book()
        if book is None:
            if wanted.format is Format.GIGASET:
                return _rendered(render_gigaset_error(GigasetError.SERVICE_NOT_AVAILABLE))
            return _unavailable(hooks.retry_after)
        return _rendered(self._render(request, wanted, book))

    def _render(self, request: web.Request, wanted: Request, book: Phonebook) -> Rendered:
        if book.version != self._rendered_version:
            self._rendered.clear()
            self._rendered_version = book.version
        # The Cisco next-page link carries the request's own URL (host, token).
        key = (wanted, str(request.url) if wanted.format is Format.CISCO else "")
        cached = self._rendered.get(key)
        if cached is not None:
            self._rendered.move_to_end(key)
            return cached
        rendered = self._render_anew(request, wanted, book)
        self._rendered[key] = rendered
        if len(self._rendered) > RENDERED_KEPT:
            self._rendered.popitem(last=False)
        return rendered

    def _render_anew(self, request: web.Request, wanted: Request, book: Phonebook) -> Rendered:
        page = book.search(wanted.query)
        next_url = ""
        shown_to = page.offset + len(page.entries)
        if wanted.format is Format.CISCO and shown_to < page.total and wanted.query.limit:
            number = page.offset // wanted.query.limit + 2
            next_url = str(request.url.update_query(page=str(number)))
        return render(
            wanted.format,
            page,
            next_url=next_url,
            notfound=wanted.notfound,
            max_bytes=wanted.max_bytes,
        )

    async def _authenticate(
        self, request: web.Request, source: str, now: float
    ) -> web.Response | None:
        hooks = self.hooks
        header = request.headers.get("Authorization")
        presented = request.query.get("token", "")
        if not presented and header and header[:7].lower() == "bearer ":
            presented = header[7:].strip()
        if presented:
            if hooks.user_banned(source, TOKEN_USER):
                return web.Response(status=403, text="Forbidden\n")
            if token_matches(presented, hooks.token):
                return None
            hooks.failed(source, TOKEN_USER)
            return _challenge(hooks.digest.challenge(source, now, reason="bad_token"))
        checked = hooks.digest.check(header, request.raw_path, source, now)
        if isinstance(checked, Challenge):
            if checked.auth_failure:
                hooks.refused(source, checked.reason)
            return _challenge(checked)
        if hooks.user_banned(source, checked.username):
            return web.Response(status=403, text="Forbidden\n")
        try:
            proved = await hooks.verify(checked, request.method, source)
        except ControlUnreachable:
            return _unavailable(hooks.retry_after)
        if proved:
            hooks.succeeded(source, checked.username)
            return None
        hooks.failed(source, checked.username)
        return _challenge(hooks.digest.challenge(source, hooks.clock(), reason="wrong"))


def _rendered(rendered: Rendered) -> web.Response:
    return web.Response(
        body=rendered.body,
        headers={"Content-Type": rendered.content_type, "Cache-Control": "no-store"},
    )


def _challenge(challenge: Challenge) -> web.Response:
    if challenge.status == 400:
        return web.Response(status=400, text="Bad Authorization header\n")
    response = web.Response(status=401, text="Unauthorized\n")
    for value in challenge.www_authenticate:
        response.headers.add("WWW-Authenticate", value)
    return response


def _unavailable(retry_after: int) -> web.Response:
    return web.Response(
        status=503, text="Directory not available yet\n", headers={"Retry-After": str(retry_after)}
    )
