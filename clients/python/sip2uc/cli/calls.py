"""`sip2uc call ...`: live calls and call control."""

from __future__ import annotations

from typing import Annotated

import typer

from sip2uc.cli import output
from sip2uc.cli.state import JsonFlag, get_state
from sip2uc.v1 import calls_pb2, common_pb2, sidecar_pb2

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Live calls: list, inspect, end and place calls.",
    no_args_is_help=True,
)

CallRef = Annotated[str, typer.Argument(metavar="ID", help="Call id or calls/ID.")]


def call_name(ref: str) -> str:
    return ref if ref.startswith("calls/") else f"calls/{ref}"


def _duration(call: calls_pb2.Call) -> str:
    if not call.HasField("answer_time"):
        return "-"
    end = call.end_time.seconds if call.HasField("end_time") else None
    if end is None:
        return "live"
    seconds = max(0, end - call.answer_time.seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


def party(extension: str, display_name: str, ref: str) -> str:
    """A user as people know them: extension and name; a URI or id when not a user."""
    known = " ".join(part for part in (extension, display_name) if part)
    return known or ref or "-"


def caller_of(call: calls_pb2.Call) -> str:
    return party(call.caller_extension, call.caller_display_name, call.caller)


def callee_of(call: calls_pb2.Call) -> str:
    return party(call.callee_extension, call.callee_display_name, call.callee)


def leg_party(call: calls_pb2.Call, leg: calls_pb2.CallLeg) -> str:
    if leg.party and leg.party == call.caller:
        return caller_of(call)
    if leg.party and leg.party == call.callee:
        return callee_of(call)
    return leg.party or "-"


def state_of(call: calls_pb2.Call) -> str:
    state = output.call_state(call.state)
    return f"{state} (on hold)" if call.on_hold else state


def call_row(call: calls_pb2.Call) -> tuple[str, ...]:
    return (
        call.name,
        state_of(call),
        caller_of(call),
        call.dialled or "-",
        callee_of(call),
        output.timestamp(call.start_time),
        _duration(call),
        str(len(call.legs)),
    )


def show_call(call: calls_pb2.Call) -> None:
    pairs = [
        ("name", call.name),
        ("state", state_of(call)),
        ("caller", caller_of(call)),
        ("dialled", call.dialled or "-"),
        ("callee", callee_of(call)),
        ("started", output.timestamp(call.start_time)),
        ("answered", output.timestamp(call.answer_time)),
        ("ended", output.timestamp(call.end_time)),
    ]
    if call.end_reason:
        pairs.append(("end reason", call.end_reason))
    if call.final_status:
        pairs.append(("final status", str(call.final_status)))
    if call.dtmf:
        pairs.append(("dtmf", "".join(event.digit for event in call.dtmf)))
    output.show(output.key_values(None, pairs))
    legs = output.table(
        "legs",
        ("leg", "sidecar", "state", "party", "codec", "direction"),
        (
            (
                leg.id,
                leg.sidecar or "-",
                output.enum_label(sidecar_pb2.LegState, leg.state),
                leg_party(call, leg),
                leg.codec or "-",
                output.enum_label(common_pb2.MediaDirection, leg.direction),
            )
            for leg in call.legs
        ),
    )
    output.show(legs)
    stats_rows = [
        (
            leg.id,
            stream.direction or "-",
            stream.codec or "-",
            str(stream.packets),
            str(stream.bytes),
            str(stream.lost),
            f"{stream.jitter_ms:.1f}",
            f"{stream.mos:.2f}" if stream.mos else "-",
        )
        for leg in call.legs
        for stream in leg.stats
    ]
    if stats_rows:
        columns = ("leg", "direction", "codec", "packets", "bytes", "lost", "jitter ms", "mos")
        output.show(output.table("media", columns, stats_rows))


@app.command("list")
def list_calls(
    ctx: typer.Context,
    user: Annotated[
        str, typer.Option("--user", metavar="EXT", help="Only this user's calls.")
    ] = "",
    json_flag: JsonFlag = False,
) -> None:
    """List calls in progress, oldest first.

    Parties show as extension and name (a URI when not a user); a call a party holds shows
    `connected (on hold)`.
    """
    state = get_state(ctx)
    client = state.client()
    found = client.calls.ListCalls(
        calls_pb2.ListCallsRequest(user=user), timeout=client.timeout
    ).calls
    if state.wants_json(json_flag):
        output.print_json([output.message_dict(call) for call in found])
        return
    columns = ("call", "state", "caller", "dialled", "callee", "started", "talk", "legs")
    output.show(output.table(None, columns, (call_row(call) for call in found)))


@app.command("show")
def show(ctx: typer.Context, ref: CallRef, json_flag: JsonFlag = False) -> None:
    """Show a call (live or finished): its legs, codecs and per-stream RTP statistics."""
    state = get_state(ctx)
    client = state.client()
    call = client.calls.GetCall(
        calls_pb2.GetCallRequest(name=call_name(ref)), timeout=client.timeout
    ).call
    if state.wants_json(json_flag):
        output.print_json(call)
    else:
        show_call(call)


@app.command("end")
def end(ctx: typer.Context, ref: CallRef) -> None:
    """End a call: CANCEL or BYE on every leg."""
    client = get_state(ctx).client()
    call = client.calls.EndCall(
        calls_pb2.EndCallRequest(name=call_name(ref)), timeout=client.timeout
    ).call
    output.info_line(f"{call.name or call_name(ref)} is {output.call_state(call.state)}")


@app.command("place")
def place(
    ctx: typer.Context,
    from_: Annotated[str, typer.Argument(metavar="FROM", help="User whose handsets ring first.")],
    to: Annotated[
        str, typer.Argument(metavar="TO", help="Extension, number or URI to connect to.")
    ],
    json_flag: JsonFlag = False,
) -> None:
    """Click-to-dial: ring FROM's handsets, then connect the answered call to TO."""
    state = get_state(ctx)
    client = state.client()
    call = client.calls.PlaceCall(
        calls_pb2.PlaceCallRequest(to=to, **{"from": from_}), timeout=client.timeout
    ).call
    if state.wants_json(json_flag):
        output.print_json(call)
    else:
        output.info_line(f"placed {call.name}: {output.call_state(call.state)}")
