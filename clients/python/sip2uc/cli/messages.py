"""`sip2uc message ...`: send short messages to handsets, list the history, watch new ones."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Annotated

import typer

from sip2uc.cli import output
from sip2uc.cli.presence import stream_notes, watch_loop
from sip2uc.cli.state import JsonFlag, get_state
from sip2uc.v1 import messages_pb2

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Send short messages (SIP MESSAGE) to handsets, list and watch them.",
    no_args_is_help=True,
)

#: The server waits a few seconds for the devices' answers before it replies.
SEND_TIMEOUT = 15.0


def _who(name: str, uri: str) -> str:
    return uri or name or "system"


def state_text(m: messages_pb2.ShortMessage) -> str:
    state = output.enum_label(messages_pb2.DeliveryState, m.state)
    if m.state == messages_pb2.DELIVERY_STATE_FAILED and m.failure_reason:
        return f"{state} ({m.failure_reason})"
    if m.devices_attempted:
        return f"{state} ({m.devices_delivered}/{m.devices_attempted} devices)"
    return state


def format_message(m: messages_pb2.ShortMessage) -> str:
    """One line: when, who to whom, the text (on one line), and where it stands."""
    text = " ".join(m.text.split())
    return (
        f"{output.timestamp(m.create_time)} {m.name} {_who(m.sender, m.sender_uri)} -> "
        f"{_who(m.recipient, m.recipient_uri)}: {text}  [{state_text(m)}]"
    )


@app.command("send")
def send(
    ctx: typer.Context,
    to: Annotated[
        str,
        typer.Argument(
            metavar="EXT", help="Recipient: extension, E.164 number, SIP URI or users/ID."
        ),
    ],
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The text (UTF-8).")],
    sender: Annotated[
        str,
        typer.Option("--from", metavar="EXT", help="Send as this user (default: the system)."),
    ] = "",
    json_flag: JsonFlag = False,
) -> None:
    """Send TEXT to every registered handset of EXT, and say how many took it. Exits 1 when no
    handset accepted it (none registered, or every one refused)."""
    state = get_state(ctx)
    client = state.client()
    request = messages_pb2.SendMessageRequest(recipient=to, text=text, sender=sender)
    message = client.messages.SendMessage(request, timeout=SEND_TIMEOUT).message
    if state.wants_json(json_flag):
        output.print_json(output.message_dict(message))
    else:
        output.info_line(format_message(message))
    if message.state == messages_pb2.DELIVERY_STATE_FAILED:
        raise typer.Exit(1)


@app.command("list")
def list_messages(
    ctx: typer.Context,
    user: Annotated[
        str, typer.Option("--user", metavar="EXT", help="Only messages this user sent or received.")
    ] = "",
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="Show at most this many.")
    ] = 50,
    json_flag: JsonFlag = False,
) -> None:
    """List the message history, newest first, with each message's delivery state."""
    state = get_state(ctx)
    client = state.client()
    found: list[messages_pb2.ShortMessage] = []
    token = ""
    while len(found) < limit:
        page = client.messages.ListMessages(
            messages_pb2.ListMessagesRequest(
                user=user, page_size=min(1000, limit - len(found)), page_token=token
            ),
            timeout=client.timeout,
        )
        found.extend(page.messages)
        token = page.next_page_token
        if not token:
            break
    if state.wants_json(json_flag):
        output.print_json([output.message_dict(m) for m in found])
        return
    for m in found:
        output.info_line(format_message(m))


@app.command("watch")
def watch(
    ctx: typer.Context,
    refs: Annotated[
        list[str] | None,
        typer.Argument(metavar="[EXT]...", help="Only messages these users sent or received."),
    ] = None,
    cursor: Annotated[
        str,
        typer.Option("--cursor", help="Resume after this cursor (from an earlier --json run)."),
    ] = "",
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Stop after this many messages.")
    ] = None,
    json_flag: JsonFlag = False,
) -> None:
    """Print one line per message as the control plane accepts it. Reconnects by itself when
    the stream drops and resumes from the last cursor, so no message is missed or repeated."""
    state = get_state(ctx)
    client = state.client()
    as_json = state.wants_json(json_flag)
    seen = 0

    def open_stream(at: str, reconnecting: bool) -> Iterable[messages_pb2.WatchMessagesResponse]:
        request = messages_pb2.WatchMessagesRequest(users=refs or [], cursor=at)
        return client.messages.WatchMessages(request, wait_for_ready=reconnecting)

    def on_message(response: messages_pb2.WatchMessagesResponse) -> bool:
        nonlocal seen
        kind = response.WhichOneof("event")
        if as_json:
            output.json_line(response)
        elif kind == "cursor_expired":
            sys.stderr.write(
                "note: the history no longer holds that cursor; messages were missed\n"
            )
        elif kind == "message":
            output.info_line(format_message(response.message))
        if kind == "message":
            seen += 1
        return count is None or seen < count

    on_retry, on_resumed = stream_notes(client.target, "message")
    watch_loop(open_stream, cursor, on_message, on_retry, on_resumed=on_resumed)
