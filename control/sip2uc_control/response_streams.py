"""Response streams that end in the task that served them.

grpc.aio drives a handler written as an async generator with ``async for`` and awaits each
write in between. When the client cancels the RPC (a sidecar or a state view stopping) while a
write is under way, the cancellation lands in grpc's write, outside the generator, and grpc
leaves the generator suspended at its ``yield``, unclosed. It is closed later by the event
loop's async-generator finaliser (a new task, when it is garbage collected, or at loop
shutdown), so its ``finally`` clauses run late and in another `contextvars.Context`. The
OpenTelemetry server interceptor keeps its span attached across the yields of such a generator;
detaching it from the other context fails and is logged as "Failed to detach context" with a
traceback.

`ResponseStreamInterceptor`, the outermost interceptor, serves every response stream as a
coroutine instead (grpc's reader/writer form): it iterates the handler's generator and writes
each message itself, and whatever ends the RPC (end of stream, error, cancellation during a
write) closes the generator right there, in the RPC's own task and context.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

__all__ = ["ResponseStreamInterceptor", "serve_to_the_end"]

Ctx = grpc.aio.ServicerContext[Any, Any]
StreamBehavior = Callable[[Any, Ctx], AsyncIterator[Any] | Awaitable[None]]


def serve_to_the_end(behavior: StreamBehavior) -> Callable[[Any, Ctx], Awaitable[None]]:
    """`behavior` (an async generator handler) as a coroutine handler that writes each message
    and always closes the generator before it returns."""

    async def serve(request: Any, context: Ctx) -> None:
        stream = behavior(request, context)
        if inspect.isawaitable(stream):  # already in the reader/writer form
            await stream
            return
        try:
            async for message in stream:
                await context.write(message)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    return serve


class ResponseStreamInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """See the module docstring. Unary-response methods pass through unchanged."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None or not handler.response_streaming:
            return handler
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                serve_to_the_end(handler.unary_stream),  # type: ignore[arg-type]
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            serve_to_the_end(handler.stream_stream),  # type: ignore[arg-type]
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
