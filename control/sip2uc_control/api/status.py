"""Domain errors → canonical gRPC status codes with google.rpc details, in one place."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ..errors import (
    AlreadyExists,
    ControlError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StorageUnavailable,
    Unauthenticated,
)
from ..presence import PresenceError
from ..store.failures import DatabaseError, StorageHealth, storage_failure

log = logging.getLogger(__name__)
# Database errors that reached a handler (reads; writes are mapped by the store itself).
_STORAGE = StorageHealth()
_LOGGED_BUGS: set[str] = set()

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def bad_request(violations: list[tuple[str, str]]) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
            for f, d in violations
        ]
    )


def to_status(exc: Exception) -> status_pb2.Status:
    if isinstance(exc, InvalidArgument):
        details = bad_request([(v.field, v.description) for v in exc.violations])
        return status_pb2.Status(
            code=code_pb2.INVALID_ARGUMENT, message=exc.message, details=[_pack(details)]
        )
    if isinstance(exc, PresenceError):
        details = bad_request([(exc.field, str(exc))])
        return status_pb2.Status(
            code=code_pb2.INVALID_ARGUMENT, message=str(exc), details=[_pack(details)]
        )
    if isinstance(exc, AlreadyExists):
        details = bad_request([(exc.violation.field, exc.violation.description)])
        return status_pb2.Status(
            code=code_pb2.ALREADY_EXISTS, message=exc.message, details=[_pack(details)]
        )
    if isinstance(exc, NotFound):
        info = error_details_pb2.ResourceInfo(
            resource_type=exc.resource_type, resource_name=exc.name
        )
        return status_pb2.Status(
            code=code_pb2.NOT_FOUND, message=exc.message, details=[_pack(info)]
        )
    if isinstance(exc, FailedPrecondition):
        pf = error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type=exc.kind, subject=exc.subject, description=exc.message
                )
            ]
        )
        return status_pb2.Status(
            code=code_pb2.FAILED_PRECONDITION, message=exc.message, details=[_pack(pf)]
        )
    if isinstance(exc, StorageUnavailable):
        info = error_details_pb2.ErrorInfo(
            reason="STORAGE_FULL" if exc.exhausted else "STORAGE_UNAVAILABLE", domain="sip2uc.v1"
        )
        details = [_pack(info)]
        if not exc.exhausted:
            details.append(_pack(error_details_pb2.RetryInfo(retry_delay=Duration(seconds=5))))
        code = code_pb2.RESOURCE_EXHAUSTED if exc.exhausted else code_pb2.UNAVAILABLE
        return status_pb2.Status(code=code, message=exc.message, details=details)
    if isinstance(exc, PermissionDenied):
        return status_pb2.Status(code=code_pb2.PERMISSION_DENIED, message=exc.message)
    if isinstance(exc, Unauthenticated):
        return status_pb2.Status(code=code_pb2.UNAUTHENTICATED, message=exc.message)
    assert isinstance(exc, ControlError)
    return status_pb2.Status(code=code_pb2.INTERNAL, message=exc.message)


def _storage(exc: Exception) -> ControlError:
    """What a database error that reached the API is, said once in the log."""
    failure = storage_failure(exc)
    if failure is None:
        # A bug, not the storage: the client learns no internals; the log keeps the traceback,
        # once per kind of error.
        kind = type(exc).__name__
        if kind not in _LOGGED_BUGS:
            _LOGGED_BUGS.add(kind)
            log.error("request failed on an unexpected %s", kind, exc_info=exc)
        return ControlError("internal error")
    _STORAGE.failed(failure, time.monotonic())
    return failure


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> None:
    await context.abort_with_status(rpc_status.to_status(to_status(exc)))  # type: ignore[attr-defined]


def unary(
    method: Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]:
    """Turn domain errors raised by a unary handler into a rich status."""

    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> Resp:
        try:
            return await method(self, request, context)
        except (ControlError, PresenceError) as exc:
            await _abort(context, exc)
            raise  # abort raises; this line is never reached
        except DatabaseError as exc:
            await _abort(context, _storage(exc))
            raise

    return wrapper


def streaming(
    method: Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]]:
    """The same for server-streaming handlers (async generators)."""

    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> AsyncIterator[Resp]:
        try:
            async for item in method(self, request, context):
                yield item
        except (ControlError, PresenceError) as exc:
            await _abort(context, exc)
        except DatabaseError as exc:
            await _abort(context, _storage(exc))

    return wrapper
