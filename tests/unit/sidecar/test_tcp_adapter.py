from __future__ import annotations

import asyncio
from typing import Any

from sip2uc_core.sip.endpoint import Transport
from sip2uc_core.sip.errors import SipParseError
from sip2uc_media.transport.base import Source
from sip2uc_media.transport.tcp import (
    MAX_CONNECTIONS_PER_HOST,
    MAX_WRITE_BUFFER,
    StreamConnection,
    open_stream_server,
)

OPTIONS = (
    b"OPTIONS sip:example.net SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.10:5062;branch=z9hG4bK1\r\n"
    b"From: <sip:a@example.net>;tag=1\r\nTo: <sip:a@example.net>\r\n"
    b"Call-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 4\r\n\r\nbody"
)


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False
        self.buffered = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("192.0.2.10", 40001), "sockname": ("127.0.0.1", 5060)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return self.buffered


def connection() -> tuple[StreamConnection, FakeTransport, list[bytes], list[SipParseError]]:
    received: list[bytes] = []
    errors: list[SipParseError] = []

    def sink(data: bytes, source: Source) -> None:
        assert (source.transport, source.host, source.port) == (
            Transport.TCP,
            "192.0.2.10",
            40001,
        )
        received.append(data)

    conn = StreamConnection(
        Transport.TCP,
        sink,
        max_message_size=1024,
        clock=lambda: 0.0,
        on_framing_error=errors.append,
    )
    transport = FakeTransport()
    conn.connection_made(transport)
    return conn, transport, received, errors


def test_a_double_crlf_ping_is_answered_with_a_single_crlf() -> None:
    conn, transport, received, _ = connection()

    conn.data_received(b"\r\n\r\n")

    assert transport.written == [b"\r\n"]
    assert received == []


def test_a_message_split_across_reads_is_delivered_once_whole() -> None:
    conn, _, received, _ = connection()

    conn.data_received(OPTIONS[:50])
    conn.data_received(OPTIONS[50:])

    assert received == [OPTIONS]


def test_two_messages_and_a_ping_in_one_read_come_out_in_order() -> None:
    conn, transport, received, _ = connection()

    conn.data_received(OPTIONS + b"\r\n\r\n" + OPTIONS)

    assert received == [OPTIONS, OPTIONS]
    assert transport.written == [b"\r\n"]


def test_a_message_without_content_length_closes_the_connection() -> None:
    conn, transport, received, errors = connection()

    conn.data_received(OPTIONS.replace(b"Content-Length: 4\r\n", b"") + b"\r\n\r\n")

    assert transport.closed
    assert received == []
    assert errors[0].field == "Content-Length"


def test_an_oversize_message_closes_the_connection() -> None:
    conn, transport, _, errors = connection()

    conn.data_received(OPTIONS.replace(b"Content-Length: 4", b"Content-Length: 4000"))

    assert transport.closed
    assert errors[0].status == 413


def test_replies_go_back_on_the_same_connection() -> None:
    conn, transport, _, _ = connection()
    assert conn.source is not None

    assert conn.source.send(b"SIP/2.0 200 OK\r\n") is True
    transport.closed = True
    assert conn.source.send(b"late") is False

    assert transport.written == [b"SIP/2.0 200 OK\r\n"]


def test_a_peer_that_does_not_read_is_cut_off() -> None:
    conn, transport, _, _ = connection()
    transport.buffered = MAX_WRITE_BUFFER + 1

    conn.data_received(b"\r\n\r\n")  # a ping whose pong cannot be queued

    assert transport.closed
    assert transport.written == []


async def test_one_host_cannot_take_every_connection_slot() -> None:
    server = await open_stream_server(
        Transport.TCP, "127.0.0.1", 0, lambda _d, _s: None, clock=lambda: 0.0
    )
    writers = []
    try:
        for _ in range(MAX_CONNECTIONS_PER_HOST + 1):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.local_port)
            writers.append((reader, writer))
        # The last one is closed by the server at once: its read ends without data.
        last_reader = writers[-1][0]
        assert await asyncio.wait_for(last_reader.read(), 5) == b""
        assert len(server.connections) == MAX_CONNECTIONS_PER_HOST
        assert server.refused == 1
    finally:
        for _, writer in writers:
            writer.close()
        await server.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def timed_connection(clock: Clock) -> tuple[StreamConnection, FakeTransport, list[bytes]]:
    received: list[bytes] = []
    conn = StreamConnection(
        Transport.TCP, lambda data, _s: received.append(data), max_message_size=1024, clock=clock
    )
    transport = FakeTransport()
    conn.connection_made(transport)
    return conn, transport, received


def test_a_header_trickled_byte_by_byte_is_overdue_however_often_bytes_come() -> None:
    clock = Clock()
    conn, _, received = timed_connection(clock)

    for byte in OPTIONS[:40]:
        clock.now += 0.5
        conn.data_received(bytes([byte]))

    assert received == []
    assert conn.overdue(clock.now, timeout=19.9)
    assert not conn.overdue(clock.now, timeout=20.0)


def test_a_connection_that_never_sends_a_message_is_overdue_from_its_opening() -> None:
    clock = Clock()
    conn, _, _ = timed_connection(clock)

    clock.now += 5.0
    conn.data_received(b"\r\n\r\n")  # keep-alives are not messages

    assert conn.overdue(clock.now, timeout=4.9)


def test_between_messages_a_connection_may_stay_idle() -> None:
    clock = Clock()
    conn, _, received = timed_connection(clock)

    conn.data_received(OPTIONS)
    clock.now += 1000.0

    assert received == [OPTIONS]
    assert not conn.overdue(clock.now, timeout=20.0)


def test_the_clock_of_a_message_starts_at_its_first_byte() -> None:
    clock = Clock()
    conn, _, received = timed_connection(clock)

    clock.now += 15.0
    conn.data_received(OPTIONS + OPTIONS[:10])  # one whole message, the next one begun
    clock.now += 15.0

    assert received == [OPTIONS]
    assert conn.overdue(clock.now, timeout=14.9)
    assert not conn.overdue(clock.now, timeout=15.0)


async def test_the_server_closes_overdue_connections_and_keeps_the_others() -> None:
    clock = Clock()
    server = await open_stream_server(
        Transport.TCP,
        "127.0.0.1",
        0,
        lambda _d, _s: None,
        clock=clock,
        idle_timeout=3600.0,
        message_timeout=20.0,
    )
    try:
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", server.local_port)
        _good_reader, good_writer = await asyncio.open_connection("127.0.0.1", server.local_port)
        slow_writer.write(OPTIONS[:30])
        good_writer.write(OPTIONS)
        await asyncio.gather(slow_writer.drain(), good_writer.drain())
        for _ in range(10_000):  # until the server has read the whole message
            if any(c.pending_since is None for c in server.connections.values()):
                break
            await asyncio.sleep(0.001)
        clock.now += 25.0

        server.reap(clock.now)

        assert await asyncio.wait_for(slow_reader.read(), 5) == b""
        assert server.timed_out == 1
        assert len(server.connections) == 1
    finally:
        for writer in (slow_writer, good_writer):
            writer.close()
        await server.stop()
