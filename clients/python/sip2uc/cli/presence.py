"""`sip2uc presence ...`: read, set, clear and watch users' presence."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import Annotated, Protocol, TypeVar

import grpc
import typer
from google.protobuf import duration_pb2

from sip2uc.cli import output
from sip2uc.cli.parsing import STATE_CHOICES, parse_duration, parse_state
from sip2uc.cli.state import JsonFlag, get_state
from sip2uc.v1 import common_pb2, presence_pb2

app = typer.Typer(
    rich_markup_mode="markdown", help="Read, set and watch users' presence.", no_args_is_help=True
)

UserRef = Annotated[
    str, typer.Argument(metavar="EXT", help="Extension, E.164 number, SIP URI or users/ID.")
]

# Codes after which a dropped watch stream is worth opening again: the
# server went away or restarted, or a proxy cut the connection.
RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
    }
)
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0


def who(p: presence_pb2.Presence) -> str:
    return p.extension or p.sip_uri or p.user


def presence_text(p: presence_pb2.Presence) -> str:
    text = output.availability(p.availability)
    activity = output.enum_label(common_pb2.Activity, p.activity)
    if activity not in ("-", "none"):
        text += f" [{activity}]"
    return text


def format_snapshot_entry(p: presence_pb2.Presence) -> str:
    source = output.enum_label(common_pb2.PresenceSource, p.source)
    return f"{output.timestamp(p.since)} {who(p)} {presence_text(p)} ({source}) snapshot"


def format_change(change: presence_pb2.PresenceChange) -> str:
    source = output.enum_label(common_pb2.PresenceSource, change.source)
    cause = f"{source}: {change.reason}" if change.reason else source
    return (
        f"{output.timestamp(change.change_time)} {who(change.current)} "
        f"{presence_text(change.previous)} -> {presence_text(change.current)} ({cause})"
    )


LOST = "lost the connection to the control plane"
CLOSED = "the control plane closed the stream"


class _Cursored(Protocol):
    @property
    def cursor(self) -> str: ...


R = TypeVar("R", bound=_Cursored)


def watch_loop(
    open_stream: Callable[[str, bool], Iterable[R]],
    cursor: str,
    on_message: Callable[[R], bool],
    on_retry: Callable[[str, float], None],
    sleep: Callable[[float], None] = time.sleep,
    on_resumed: Callable[[], None] | None = None,
) -> str:
    """Reads a watch stream (presence, messages) until `on_message` returns False, reopening
    it from the last cursor whenever it drops (the server replays what was
    missed, or sends a fresh snapshot if the cursor aged out). Returns the
    last cursor.

    `open_stream(cursor, reconnecting)` opens the stream. A failure before
    anything was received is raised: the address or token is wrong, and
    retrying would only hide it. A drop is reported to `on_retry` in plain
    words (gRPC's own text, e.g. "Cancelling all calls", says nothing to a
    person), and the first message after it to `on_resumed`.
    """
    received_any = False
    retrying = False
    backoff = FIRST_BACKOFF
    while True:
        reason = CLOSED
        try:
            stream = open_stream(cursor, received_any)
            if retrying and _accepted(stream):
                retrying = False
                if on_resumed is not None:
                    on_resumed()
            for response in stream:
                received_any = True
                backoff = FIRST_BACKOFF
                if retrying:
                    retrying = False
                    if on_resumed is not None:
                        on_resumed()
                if response.cursor:
                    cursor = response.cursor
                if not on_message(response):
                    return cursor
        except grpc.RpcError as exc:
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            if not received_any or code not in RETRYABLE_CODES:
                raise
            reason = LOST
        retrying = True
        on_retry(reason, backoff)
        sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF)


def stream_notes(target: str, item: str) -> tuple[Callable[[str, float], None], Callable[[], None]]:
    """What a watch says on stderr when its stream drops (`on_retry`) and when it is back
    (`on_resumed`); `item` names what was not missed ("change", "message")."""

    def on_retry(reason: str, delay: float) -> None:
        sys.stderr.write(f"watch: {reason} at {target}; reconnecting in {delay:g}s\n")
        sys.stderr.flush()

    def on_resumed() -> None:
        sys.stderr.write(f"watch: reconnected to {target}; no {item} was missed\n")
        sys.stderr.flush()

    return on_retry, on_resumed


def _accepted(stream: object) -> bool:
    """Whether the server has accepted a freshly opened stream (it sends its headers at once),
    for a call that can tell; False when it cannot (then the first message tells)."""
    headers = getattr(stream, "initial_metadata", None)
    active = getattr(stream, "is_active", None)
    if not callable(headers) or not callable(active):
        return False
    headers()  # returns when the headers arrive, or when the call failed
    return bool(active())


@app.command("get")
def get(ctx: typer.Context, ref: UserRef, json_flag: JsonFlag = False) -> None:
    """Show a user's effective presence and which source decided it."""
    state = get_state(ctx)
    client = state.client()
    p = client.presence.GetPresence(
        presence_pb2.GetPresenceRequest(user=ref), timeout=client.timeout
    ).presence
    if state.wants_json(json_flag):
        output.print_json(p)
        return
    pairs = [
        ("user", f"{who(p)} ({p.sip_uri})" if p.sip_uri else who(p)),
        ("availability", output.availability(p.availability)),
        ("activity", output.enum_label(common_pb2.Activity, p.activity)),
        ("source", output.enum_label(common_pb2.PresenceSource, p.source)),
        ("since", output.timestamp(p.since)),
        ("expires", output.timestamp(p.expire_time)),
        ("registered", "yes" if p.registered else "no"),
        ("active calls", str(p.active_calls)),
    ]
    if p.note:
        pairs.append(("note", p.note))
    output.show(output.key_values(None, pairs))


def _state(value: str) -> int:
    try:
        return parse_state(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _duration(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command("set")
def set_(
    ctx: typer.Context,
    ref: UserRef,
    state_name: Annotated[str, typer.Argument(metavar="STATE", help=STATE_CHOICES + ".")],
    for_: Annotated[
        str | None,
        typer.Option(
            "--for",
            metavar="DURATION",
            help="Lapse after this long (30s, 15m, 2h, 1h30m; at most 30 days).",
        ),
    ] = None,
    note: Annotated[str, typer.Option("--note", help="Note shown with the state.")] = "",
    external: Annotated[
        bool,
        typer.Option("--external", help="Set it as the UC side's state instead of a manual one."),
    ] = False,
    json_flag: JsonFlag = False,
) -> None:
    """Set a manual state that overrides what the handset shows, until cleared
    or until --for has passed."""
    availability = _state(state_name)
    seconds = _duration(for_)
    request = presence_pb2.SetPresenceRequest(
        user=ref,
        availability=availability,  # type: ignore[arg-type]
        source=(
            common_pb2.PRESENCE_SOURCE_EXTERNAL if external else common_pb2.PRESENCE_SOURCE_MANUAL
        ),
        note=note,
    )
    if seconds is not None:
        request.ttl.CopyFrom(duration_pb2.Duration(seconds=seconds))
    state = get_state(ctx)
    client = state.client()
    p = client.presence.SetPresence(request, timeout=client.timeout).presence
    if state.wants_json(json_flag):
        output.print_json(p)
        return
    until = f" until {output.timestamp(p.expire_time)}" if p.HasField("expire_time") else ""
    output.info_line(f"{who(p)} is {presence_text(p)}{until}")


@app.command("clear")
def clear(
    ctx: typer.Context,
    ref: UserRef,
    external: Annotated[
        bool, typer.Option("--external", help="Clear the UC side's state instead.")
    ] = False,
    json_flag: JsonFlag = False,
) -> None:
    """Remove the manual state; the handset's registration and calls show again (only calls
    that exist: one that ended while the control plane was down no longer counts)."""
    state = get_state(ctx)
    client = state.client()
    source = common_pb2.PRESENCE_SOURCE_EXTERNAL if external else common_pb2.PRESENCE_SOURCE_MANUAL
    p = client.presence.ClearPresence(
        presence_pb2.ClearPresenceRequest(user=ref, source=source), timeout=client.timeout
    ).presence
    if state.wants_json(json_flag):
        output.print_json(p)
    else:
        output.info_line(f"{who(p)} is {presence_text(p)}")


@app.command("watch")
def watch(
    ctx: typer.Context,
    refs: Annotated[
        list[str] | None,
        typer.Argument(metavar="[EXT]...", help="Users to watch; none: every user."),
    ] = None,
    cursor: Annotated[
        str,
        typer.Option("--cursor", help="Resume after this cursor (from an earlier --json run)."),
    ] = "",
    count: Annotated[
        int | None,
        typer.Option("--count", min=1, help="Stop after this many changes."),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Stop after the first change.")] = False,
    json_flag: JsonFlag = False,
) -> None:
    """Print one line per presence change as it happens (after a line per
    watched user with the current state). Reconnects by itself when the
    stream drops and resumes from the last cursor, so no change is missed."""
    state = get_state(ctx)
    client = state.client()
    as_json = state.wants_json(json_flag)
    limit = 1 if once else count
    seen = 0

    def open_stream(at: str, reconnecting: bool) -> Iterable[presence_pb2.WatchPresenceResponse]:
        request = presence_pb2.WatchPresenceRequest(users=refs or [], cursor=at)
        # While reconnecting, wait for the server to come back rather than fail.
        return client.presence.WatchPresence(request, wait_for_ready=reconnecting)

    def on_message(response: presence_pb2.WatchPresenceResponse) -> bool:
        nonlocal seen
        kind = response.WhichOneof("event")
        if as_json:
            output.json_line(response)
        elif kind == "snapshot":
            if response.snapshot.cursor_expired:
                sys.stderr.write("note: changes were missed while away; fresh snapshot follows\n")
            for p in response.snapshot.presences:
                output.info_line(format_snapshot_entry(p))
        elif kind == "change":
            output.info_line(format_change(response.change))
        if kind == "change":
            seen += 1
        return limit is None or seen < limit

    on_retry, on_resumed = stream_notes(client.target, "change")
    watch_loop(open_stream, cursor, on_message, on_retry, on_resumed=on_resumed)
