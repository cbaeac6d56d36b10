"""The Microsoft Graph contract stand-in: a local HTTPS server that answers like Graph's presence
API and its identity platform, and checks every request against Graph's published definitions.

Nothing here reaches Microsoft. Every request is checked against the committed metadata
(`csdl.py`) and the documented rules (`rules.py`): method, path, JSON member names and types,
required parameters, duration format and range, allowed availability/activity pairs, sessionId,
at most 650 ids, and a valid, unexpired bearer token from the stand-in's own token endpoint. A
request that breaks the contract is answered the way Graph answers (400 with `error.code` and
`error.message`) *and* recorded in `violations`, which the tests' fixture asserts is empty.

Faults on demand: 429 with Retry-After, 503/504, slow answers (`add_fault`), a rate limit of its
own (`limit_requests`), token revocation (`revoke_tokens`) and a clock the tests move
(`advance`) for session time-outs and expiry.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from . import rules
from .csdl import Csdl, parse_duration
from .identity import IdentityPlatform, RegisteredApp, TokenError
from .presence_state import Session, UserPresence
from .tls import StandinTls

GRAPH_RESOURCE = "https://graph.microsoft.com"
_PRESENCE_ACTION = re.compile(r"^users/(?P<user>[^/]+)/presence/(?P<action>[A-Za-z]+)$")
_PRESENCE = re.compile(r"^users/(?P<user>[^/]+)/presence$")
_COMMUNICATIONS_ACTION = re.compile(r"^communications/(?P<action>[A-Za-z]+)$")
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class StandinUser:
    object_id: str
    user_principal_name: str


@dataclass
class Fault:
    """Answer the next `times` matching Graph requests with `status` (after `delay` seconds),
    or only delay them when `status` is None."""

    status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0
    times: int = 1
    path_contains: str = ""
    body: bytes | None = None
    """Answer with these bytes (as text/html) instead of Graph's error object: a proxy's page."""


@dataclass(frozen=True)
class RecordedCall:
    method: str
    path: str
    body: object
    status: int
    client_id: str | None
    at: float


@dataclass
class _RateLimit:
    limit: int
    window: float
    retry_after: str
    sent: list[float] = field(default_factory=list)


_ERROR_CODES = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Forbidden",
    404: "ResourceNotFound",
    405: "MethodNotAllowed",
    415: "UnsupportedMediaType",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


class GraphStandin:
    def __init__(
        self,
        *,
        tls: StandinTls,
        tenant_id: str,
        apps: list[RegisteredApp],
        users: list[StandinUser],
        csdl: Csdl | None = None,
    ) -> None:
        self.tls = tls
        self.csdl = csdl or Csdl()
        self.identity = IdentityPlatform(tenant_id=tenant_id, resources=frozenset({GRAPH_RESOURCE}))
        for app in apps:
            self.identity.apps[app.client_id] = app
        self._users = {u.object_id.lower(): u for u in users}
        self._by_upn = {u.user_principal_name.lower(): u for u in users}
        self._presence: dict[str, UserPresence] = {u.object_id: UserPresence() for u in users}
        self._offset = 0.0
        self._faults: list[Fault] = []
        self._rate: _RateLimit | None = None
        self.calls: list[RecordedCall] = []
        self.violations: list[str] = []
        self.discovery_requests = 0
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get(
            "/{tenant}/v2.0/.well-known/openid-configuration", self._openid_configuration
        )
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_route("*", "/v1.0/{tail:.*}", self._graph)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls.server_context())
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        port = server.sockets[0].getsockname()[1]
        self.base_url = f"https://127.0.0.1:{port}"
        self.identity.resources = frozenset({GRAPH_RESOURCE, self.base_url})

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- admin hooks ----------------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the stand-in's clock: sessions time out and expire, tokens lapse."""
        self._offset += seconds

    def presence(self, user_id: str) -> tuple[str, str]:
        """What Graph shows for the user now (availability, activity)."""
        return self._presence[self._resolve(user_id).object_id].shown(self.now())

    def sessions(self, user_id: str) -> dict[str, Session]:
        return dict(self._presence[self._resolve(user_id).object_id].sessions)

    def preferred(self, user_id: str) -> tuple[str, str] | None:
        state = self._presence[self._resolve(user_id).object_id]
        state.drop_expired(self.now())
        return state.preferred

    def set_teams_client(self, user_id: str, availability: str, activity: str) -> None:
        """The user is signed in to a Teams client showing this state (e.g. Busy/InAMeeting)."""
        state = self._presence[self._resolve(user_id).object_id]
        state.sessions["teams-client"] = Session(
            availability, activity, self.now(), float("inf"), fades=False
        )

    def sign_out_teams_client(self, user_id: str) -> None:
        self._presence[self._resolve(user_id).object_id].sessions.pop("teams-client", None)

    def set_in_teams(self, user_id: str, availability: str, activity: str) -> None:
        """The user picks a status in Teams: their preferred presence."""
        state = self._presence[self._resolve(user_id).object_id]
        state.set_preferred((availability, activity), self.now(), None)

    def add_fault(self, fault: Fault) -> None:
        self._faults.append(fault)

    def limit_requests(self, limit: int, window: float, retry_after: str) -> None:
        """Answer 429 with this Retry-After beyond `limit` Graph requests per `window` seconds."""
        self._rate = _RateLimit(limit, window, retry_after)

    def revoke_tokens(self) -> None:
        """Every issued access token stops working (as when it expires)."""
        self.identity.revoke_all()

    def take_violations(self) -> list[str]:
        """The contract breaches recorded so far (and forget them)."""
        found, self.violations = self.violations, []
        return found

    def graph_calls(self, action: str | None = None) -> list[RecordedCall]:
        return [c for c in self.calls if action is None or c.path.endswith(f"/{action}")]

    # -- identity platform ----------------------------------------------------------------------

    async def _openid_configuration(self, request: web.Request) -> web.Response:
        self.discovery_requests += 1
        tenant = request.match_info["tenant"]
        if tenant.lower() != self.identity.tenant_id.lower():
            return web.json_response(
                TokenError(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.").body(),
                status=400,
            )
        base = f"{self.base_url}/{tenant}"
        return web.json_response(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "issuer": f"{base}/v2.0",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def _token(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        if request.content_type != "application/x-www-form-urlencoded":
            self.violations.append(f"token request with Content-Type {request.content_type!r}")
            return web.json_response(
                TokenError(
                    400, "invalid_request", 900144, "The request body must be form-encoded."
                ).body(),
                status=400,
            )
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        endpoint = f"{self.base_url}/{tenant}/oauth2/v2.0/token"
        try:
            body = self.identity.issue(tenant, form, endpoint, self.now())
        except TokenError as error:
            if error.violation:
                self.violations.append(f"token request: {error.description}")
            return web.json_response(error.body(), status=error.status)
        return web.json_response(body)

    async def _unknown(self, request: web.Request) -> web.Response:
        self.violations.append(
            f"{request.method} {request.path}: not a Graph v1.0 or identity endpoint"
        )
        return self._error(
            404, "the stand-in serves /v1.0 and the identity endpoints only", request
        )

    # -- Graph ----------------------------------------------------------------------------------

    def _resolve(self, user: str) -> StandinUser:
        found = self._users.get(user.lower()) or self._by_upn.get(user.lower())
        if found is None:
            raise KeyError(user)
        return found

    def _error(
        self, status: int, message: str, request: web.Request, retry_after: str | None = None
    ) -> web.Response:
        body = {
            "error": {
                "code": _ERROR_CODES.get(status, "UnknownError"),
                "message": message,
                "innerError": {
                    "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": str(uuid.uuid4()),
                    "client-request-id": request.headers.get(
                        "client-request-id", str(uuid.uuid4())
                    ),
                },
            }
        }
        headers = {"Retry-After": retry_after} if retry_after is not None else None
        return web.json_response(body, status=status, headers=headers)

    def _route(self, tail: str) -> tuple[str, str | None, str | None, str]:
        """(action or "presence", binding type, user, expected method) for a /v1.0 path."""
        if match := _PRESENCE_ACTION.match(tail):
            return match["action"], "microsoft.graph.presence", match["user"], "POST"
        if match := _PRESENCE.match(tail):
            return "presence", None, match["user"], "GET"
        if match := _COMMUNICATIONS_ACTION.match(tail):
            return match["action"], "microsoft.graph.cloudCommunications", None, "POST"
        return "", None, None, ""

    async def _graph(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        raw = await request.read()
        problems: list[str] = []
        action_name, binding, user, expected_method = self._route(tail)
        body: object = None
        refusal = 400
        if not expected_method:
            problems.append(f"{request.method} /v1.0/{tail}: no such presence path in the metadata")
        elif request.method != expected_method:
            refusal = 405
            problems.append(
                f"{request.method} /v1.0/{tail}: the metadata defines {expected_method} here"
            )
        elif binding is not None:
            action = self.csdl.action(action_name, binding)
            if action is None:
                problems.append(
                    f"POST /v1.0/{tail}: no action {action_name!r} bound to {binding} in the metadata"
                )
            else:
                if request.content_type != "application/json":
                    problems.append(
                        f"{action_name}: Content-Type must be application/json, got {request.content_type!r}"
                    )
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    problems.append(f"{action_name}: the body is not JSON")
                else:
                    problems += self.csdl.check_parameters(action, body)
        elif raw:
            problems.append(f"GET /v1.0/{tail}: a GET carries no body")

        # Authentication (Graph checks the token before anything else).
        authorization = request.headers.get("Authorization", "")
        token = authorization[len("Bearer ") :] if authorization.startswith("Bearer ") else None
        issued = self.identity.check_token(token, self.now()) if token else None
        client_id = issued.client_id if issued is not None else None
        if isinstance(body, dict) and not problems and client_id is not None:
            problems += rules.CHECKS[action_name](body, client_id)

        def record(response: web.StreamResponse) -> web.StreamResponse:
            self.calls.append(
                RecordedCall(
                    request.method, f"/v1.0/{tail}", body, response.status, client_id, self.now()
                )
            )
            return response

        self.violations += problems
        if token is None:
            self.violations.append(f"{request.method} /v1.0/{tail}: no bearer token")
            return record(self._error(401, "Access token is empty.", request))
        if issued is None:
            return record(
                self._error(401, "Access token has expired or is not yet valid.", request)
            )

        fault = self._take_fault(f"/v1.0/{tail}")
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status is not None and fault.body is not None:
                return record(
                    web.Response(status=fault.status, body=fault.body, content_type="text/html")
                )
            if fault.status is not None:
                return record(
                    self._error(
                        fault.status,
                        "Injected by the contract stand-in.",
                        request,
                        fault.retry_after,
                    )
                )
        if self._rate is not None:
            now = self.now()
            self._rate.sent = [t for t in self._rate.sent if t > now - self._rate.window]
            if len(self._rate.sent) >= self._rate.limit:
                return record(
                    self._error(429, "Please retry again later.", request, self._rate.retry_after)
                )
            self._rate.sent.append(now)
        if problems:
            return record(self._error(refusal, "; ".join(problems), request))

        needed = (
            rules.READ_ROLES
            if action_name in ("getPresencesByUserId", "presence")
            else {rules.WRITE_ROLE}
        )
        if not needed & issued.roles:
            return record(
                self._error(
                    403,
                    f"Missing role permissions on the request. API requires one of {sorted(needed)}.",
                    request,
                )
            )
        return record(self._apply(action_name, user, body, client_id or "", request))

    def _take_fault(self, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.path_contains in path:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _presence_json(self, user: StandinUser, context: bool) -> dict[str, object]:
        availability, activity = self._presence[user.object_id].shown(self.now())
        entity: dict[str, object] = {
            "id": user.object_id,
            "availability": availability,
            "activity": activity,
            "statusMessage": None,
            "outOfOfficeSettings": {"message": None, "isOutOfOffice": False},
        }
        if context:
            entity = {
                "@odata.context": f"{self.base_url}/v1.0/$metadata#users('{user.object_id}')/presence/$entity",
                **entity,
            }
        problems = self.csdl.check_object("microsoft.graph.presence", entity, "response")
        assert not problems, problems  # the stand-in's own answers follow the metadata too
        return entity

    def _apply(
        self, action: str, user_ref: str | None, body: object, client_id: str, request: web.Request
    ) -> web.Response:
        now = self.now()
        if action == "getPresencesByUserId":
            assert isinstance(body, dict)
            value = []
            for object_id in body["ids"]:
                try:
                    value.append(self._presence_json(self._resolve(object_id), context=False))
                except KeyError:
                    value.append(
                        {
                            "id": object_id,
                            "availability": "PresenceUnknown",
                            "activity": "PresenceUnknown",
                        }
                    )
            return web.json_response(
                {
                    "@odata.context": f"{self.base_url}/v1.0/$metadata#Collection(microsoft.graph.presence)",
                    "value": value,
                }
            )
        assert user_ref is not None
        try:
            user = self._resolve(user_ref)
        except KeyError:
            return self._error(404, f"User '{user_ref}' does not exist in the directory.", request)
        if action == "presence":
            return web.json_response(self._presence_json(user, context=True))
        state = self._presence[user.object_id]
        state.drop_expired(now)
        assert isinstance(body, dict)
        if action == "setPresence":
            duration_text = body.get("expirationDuration")
            session_seconds = (
                parse_duration(duration_text) if isinstance(duration_text, str) else None
            ) or float(rules.SESSION_DEFAULT_SECONDS)
            session_id = str(body.get("sessionId") or client_id)
            state.sessions[session_id] = Session(
                str(body["availability"]), str(body["activity"]), now, now + session_seconds
            )
        elif action == "clearPresence":
            if state.sessions.pop(str(body["sessionId"]), None) is None:
                return self._error(404, "The presence session does not exist.", request)
        elif action == "setUserPreferredPresence":
            duration_text = body.get("expirationDuration")
            duration = parse_duration(duration_text) if isinstance(duration_text, str) else None
            state.set_preferred((str(body["availability"]), str(body["activity"])), now, duration)
        elif action == "clearUserPreferredPresence":
            state.preferred = None
        return web.Response(status=200)
