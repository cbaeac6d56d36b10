"""Who is calling, and what they may call: the admin token and sidecars' own credentials.

The admin bearer token is created at first start in the data directory (mode 0600). Each sidecar
has its own credential (`enrollments.py`), good for `SidecarService` only and only under its
own name. Plaintext gRPC without a token is accepted only when the server listens on loopback
(enforced at start-up by `app.ControlPlane`): there, no token counts as the admin, and an
un-enrolled sidecar may connect without a credential of its own.

| caller                      | admin API            | SidecarService                      |
|-----------------------------|----------------------|-------------------------------------|
| sidecar credential for NAME | PERMISSION_DENIED    | as NAME only                        |
| admin token                 | yes                  | loopback listener, names not enrolled |
| no token                    | loopback listener    | loopback listener, names not enrolled |
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from .enrollments import TOKEN_PREFIX, SidecarEnrollments

TOKEN_FILE = "admin-token"  # noqa: S105 - a file name, not a secret
# Health checks must work for load balancers and probes without credentials.
_OPEN_METHODS = ("/grpc.health.v1.Health/",)
SIDECAR_METHODS = "/sip2uc.v1.SidecarService/"
ENROLL_HINT = "enroll it with `sip2uc sidecar enroll NAME` and start it with --token-file"


def load_or_create_token(data_dir: Path) -> str:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / TOKEN_FILE
    if path.exists():
        os.chmod(path, 0o600)
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


@dataclass(frozen=True, slots=True)
class Admin:
    """The admin token."""


@dataclass(frozen=True, slots=True)
class Anonymous:
    """No token (accepted on a loopback listener only)."""


@dataclass(frozen=True, slots=True)
class SidecarPrincipal:
    """A sidecar's credential; its hash is kept to notice a revocation on long-lived streams."""

    name: str
    digest: str


Principal = Admin | Anonymous | SidecarPrincipal


class CredentialRefused(Exception):
    """A token was given but it is nobody's (wrong, or a revoked sidecar credential)."""


class Authenticator:
    """Tells callers apart by their `authorization` metadata and says what they may do."""

    def __init__(
        self, admin_token: str, enrollments: SidecarEnrollments, *, loopback: bool
    ) -> None:
        self._admin = admin_token.encode()
        self.enrollments = enrollments
        #: The server listens on loopback only: every caller is on this host.
        self.loopback = loopback

    def identify(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Principal:
        header = ""
        for key, value in metadata or ():
            if key == "authorization":
                header = value if isinstance(value, str) else value.decode()
        if not header:
            return Anonymous()
        scheme, _, given = header.partition(" ")
        token = given.strip()
        if scheme.lower() != "bearer" or not token:
            raise CredentialRefused("invalid bearer token")
        if hmac.compare_digest(token.encode(), self._admin):
            return Admin()
        sidecar = self.enrollments.identify(token)
        if sidecar is not None:
            return SidecarPrincipal(*sidecar)
        if token.startswith(TOKEN_PREFIX):
            raise CredentialRefused("invalid bearer token: unknown or revoked sidecar credential")
        raise CredentialRefused("invalid bearer token")

    def refusal(self, principal: Principal, method: str) -> tuple[grpc.StatusCode, str] | None:
        """Why `principal` may not call `method` at all; None when it may."""
        if method.startswith(SIDECAR_METHODS):
            if isinstance(principal, SidecarPrincipal) or self.loopback:
                return None  # the name is checked per session and per request
            if isinstance(principal, Admin):
                return (
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"the admin token is not a sidecar credential: {ENROLL_HINT}",
                )
            return (
                grpc.StatusCode.UNAUTHENTICATED,
                f"missing 'authorization: Bearer <token>': a sidecar needs its credential; "
                f"{ENROLL_HINT}",
            )
        if isinstance(principal, SidecarPrincipal):
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                f"the credential of sidecars/{principal.name} is good for SidecarService only",
            )
        if isinstance(principal, Anonymous) and not self.loopback:
            return grpc.StatusCode.UNAUTHENTICATED, "missing 'authorization: Bearer <token>'"
        return None

    def sidecar_refusal(self, principal: Principal, name: str) -> str | None:
        """Why `principal` may not act as sidecar `name`; None when it may."""
        if isinstance(principal, SidecarPrincipal):
            if not self.enrollments.holds(principal.digest, principal.name):
                return f"the credential of sidecars/{principal.name} was revoked"
            if principal.name != name:
                return f"this credential belongs to sidecars/{principal.name}, not sidecars/{name}"
            return None
        if self.enrollments.is_bound(name):
            return f"sidecars/{name} is enrolled: it connects only with its own credential"
        return None


def _abort_handler(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler[Any, Any]:
    async def abort(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(abort)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses a call before its handler runs when the caller may not make it at all."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = handler_call_details.method
        if method.startswith(_OPEN_METHODS):
            return await continuation(handler_call_details)
        try:
            principal = self._auth.identify(handler_call_details.invocation_metadata)
        except CredentialRefused as exc:
            return _abort_handler(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        refused = self._auth.refusal(principal, method)
        if refused is not None:
            return _abort_handler(*refused)
        return await continuation(handler_call_details)


class LatencyInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Records the latency of unary RPCs by method and status code."""

    def __init__(self, record: Callable[[float, dict[str, str]], None]) -> None:
        self._record = record

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = handler_call_details.method
        record = self._record

        async def timed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            start = time.perf_counter()
            code = "OK"
            try:
                return await inner(request, context)  # type: ignore[arg-type]
            except BaseException:
                code = "ERROR"
                raise
            finally:
                record(time.perf_counter() - start, {"rpc.method": method, "rpc.code": code})

        return grpc.unary_unary_rpc_method_handler(
            timed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
