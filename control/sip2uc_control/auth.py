"""Admin authentication: a bearer token created at first start, kept in the data directory.

Plaintext gRPC without a token is accepted only when the server listens on loopback; any other
listen address needs TLS and the token (enforced at start-up by `app.ControlPlane`).
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

TOKEN_FILE = "admin-token"  # noqa: S105 - a file name, not a secret
# Health checks must work for load balancers and probes without credentials.
_OPEN_METHODS = ("/grpc.health.v1.Health/",)


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


def _abort_handler(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler[Any, Any]:
    async def abort(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(abort)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Checks `authorization: Bearer <token>`; optional on loopback, where a wrong token still fails."""

    def __init__(self, token: str, *, required: bool) -> None:
        self._token = token.encode()
        self._required = required

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
        header = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                header = value if isinstance(value, str) else value.decode()
        if not header:
            if self._required:
                return _abort_handler(
                    grpc.StatusCode.UNAUTHENTICATED, "missing 'authorization: Bearer <token>'"
                )
            return await continuation(handler_call_details)
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self._token
        ):
            return _abort_handler(grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token")
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
