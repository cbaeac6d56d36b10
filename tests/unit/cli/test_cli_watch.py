from collections.abc import Iterator

import grpc
import pytest
from sip2uc.cli.presence import format_change, watch_loop
from sip2uc.v1 import common_pb2, presence_pb2

from .test_cli_errors import FakeRpcError


def change(cursor: str, availability: int) -> presence_pb2.WatchPresenceResponse:
    return presence_pb2.WatchPresenceResponse(
        change=presence_pb2.PresenceChange(
            current=presence_pb2.Presence(extension="456", availability=availability)  # type: ignore[arg-type]
        ),
        cursor=cursor,
    )


def snapshot(cursor: str) -> presence_pb2.WatchPresenceResponse:
    return presence_pb2.WatchPresenceResponse(
        snapshot=presence_pb2.PresenceSnapshot(), cursor=cursor
    )


class ScriptedServer:
    """Each call to open() plays the next script: messages, then maybe an error."""

    def __init__(self, *scripts: tuple[list[presence_pb2.WatchPresenceResponse], Exception | None]):
        self.scripts = list(scripts)
        self.opened: list[tuple[str, bool]] = []

    def open(self, cursor: str, reconnecting: bool) -> Iterator[presence_pb2.WatchPresenceResponse]:
        self.opened.append((cursor, reconnecting))
        messages, error = self.scripts.pop(0)
        yield from messages
        if error is not None:
            raise error


def test_dropped_stream_resumes_from_the_last_cursor() -> None:
    server = ScriptedServer(
        (
            [snapshot("1"), change("2", common_pb2.AVAILABILITY_BUSY)],
            FakeRpcError(grpc.StatusCode.UNAVAILABLE, "Socket closed"),
        ),
        ([change("3", common_pb2.AVAILABILITY_AWAY)], None),
    )
    seen: list[str] = []
    retries: list[tuple[str, float]] = []
    sleeps: list[float] = []
    resumed: list[str] = []

    def on_message(response: presence_pb2.WatchPresenceResponse) -> bool:
        seen.append(response.cursor)
        return response.cursor != "3"

    last = watch_loop(
        server.open,
        "",
        on_message,
        lambda r, d: retries.append((r, d)),
        sleeps.append,
        on_resumed=lambda: resumed.append(seen[-1]),
    )

    assert server.opened == [("", False), ("2", True)]
    assert seen == ["1", "2", "3"]
    # gRPC's own words ("Socket closed", "Cancelling all calls") are not a person's.
    assert retries == [("lost the connection to the control plane", 0.5)]
    assert sleeps == [0.5]
    assert resumed == ["2"]  # said once, before the first message after the drop
    assert last == "3"


def test_backoff_doubles_while_the_server_stays_away_and_resets_after() -> None:
    down = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect")
    server = ScriptedServer(
        ([snapshot("1")], down),
        ([], down),
        ([], down),
        ([change("2", common_pb2.AVAILABILITY_BUSY)], down),
        ([change("3", common_pb2.AVAILABILITY_AWAY)], None),
    )
    sleeps: list[float] = []
    watch_loop(server.open, "", lambda r: r.cursor != "3", lambda _r, _d: None, sleeps.append)
    assert sleeps == [0.5, 1.0, 2.0, 0.5]
    assert [cursor for cursor, _ in server.opened] == ["", "1", "1", "1", "2"]


def test_stream_closed_by_the_server_is_reopened() -> None:
    server = ScriptedServer(([snapshot("7")], None), ([change("8", 2)], None))
    reasons: list[str] = []
    watch_loop(
        server.open, "", lambda r: r.cursor != "8", lambda r, _d: reasons.append(r), lambda _s: None
    )
    assert reasons == ["the control plane closed the stream"]
    assert server.opened[1] == ("7", True)


def test_failure_before_anything_arrived_is_raised() -> None:
    server = ScriptedServer(([], FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect")))
    with pytest.raises(grpc.RpcError):
        watch_loop(server.open, "", lambda _r: True, lambda _r, _d: None, lambda _s: None)


def test_non_retryable_error_ends_the_watch() -> None:
    server = ScriptedServer(
        ([snapshot("1")], FakeRpcError(grpc.StatusCode.PERMISSION_DENIED, "no")),
    )
    with pytest.raises(grpc.RpcError):
        watch_loop(server.open, "", lambda _r: True, lambda _r, _d: None, lambda _s: None)


def test_change_line_shows_before_and_after() -> None:
    item = presence_pb2.PresenceChange(
        previous=presence_pb2.Presence(
            extension="456", availability=common_pb2.AVAILABILITY_AVAILABLE
        ),
        current=presence_pb2.Presence(
            extension="456",
            availability=common_pb2.AVAILABILITY_BUSY,
            activity=common_pb2.ACTIVITY_IN_A_CALL,
        ),
        source=common_pb2.PRESENCE_SOURCE_CALL,
        reason="call answered",
    )
    item.change_time.FromSeconds(1_700_000_000)
    assert format_change(item) == (
        "2023-11-14T22:13:20Z 456 available -> busy [in-a-call] (call: call answered)"
    )
