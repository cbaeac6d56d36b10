"""A response stream cancelled by its client while a write is under way ends in the task that
served it: the span the OpenTelemetry interceptor attached for the RPC is detached in the context
it was attached in, and the handler's generator is closed.

The handler never awaits between its yields, so the only place the RPC's task can be suspended
when the client cancels is grpc's write of a message: the case in which grpc.aio leaves a
generator suspended and unclosed (it used to be closed later by the loop's async-generator
finaliser, in another context: "Failed to detach context" and a traceback at shutdown).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from sip2uc_control.app import server_interceptors

CHUNK = b"x" * (256 * 1024)  # a few of these fill any HTTP/2 window


class Feed:
    def __init__(self) -> None:
        self.served_in: asyncio.Task[Any] | None = None
        self.closed_in: asyncio.Task[Any] | None = None
        self.closed = asyncio.Event()
        self.sent = 0

    async def stream(self, _request: bytes, _context: Any) -> AsyncIterator[bytes]:
        self.served_in = asyncio.current_task()
        try:
            while True:
                self.sent += 1
                yield CHUNK
        finally:
            self.closed_in = asyncio.current_task()
            self.closed.set()


async def served(feed: Feed) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(interceptors=server_interceptors())
    handler = grpc.method_handlers_generic_handler(
        "test.Feed", {"Follow": grpc.unary_stream_rpc_method_handler(feed.stream)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def test_a_stream_cancelled_during_a_write_is_closed_in_its_own_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="opentelemetry")
    feed = Feed()
    server, address = await served(feed)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            call = channel.unary_stream("/test.Feed/Follow")(b"")
            assert await call.read() == CHUNK
            # The client stops reading; the server is left writing the next chunks.
            call.cancel()
            await asyncio.wait_for(feed.closed.wait(), 10)
    finally:
        await server.stop(None)

    assert feed.sent >= 2
    assert [r.getMessage() for r in caplog.records if r.name.startswith("opentelemetry")] == []


async def test_a_stream_that_ends_by_itself_is_closed_once_and_the_client_has_it_all() -> None:
    class Three(Feed):
        async def stream(self, _request: bytes, _context: Any) -> AsyncIterator[bytes]:
            self.served_in = asyncio.current_task()
            try:
                for n in range(3):
                    yield bytes([n])
            finally:
                self.closed_in = asyncio.current_task()
                self.closed.set()

    feed = Three()
    server, address = await served(feed)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            call = channel.unary_stream("/test.Feed/Follow")(b"")
            assert [message async for message in call] == [b"\x00", b"\x01", b"\x02"]
            assert await call.code() == grpc.StatusCode.OK
    finally:
        await server.stop(None)
    assert feed.closed_in is feed.served_in is not None
