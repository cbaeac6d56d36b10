"""How the CLI shows things: rich tables for people, JSON for scripts.

Consoles are made per call rather than at import so that they write to
whatever `sys.stdout`/`sys.stderr` are at that moment. When the output is not
a terminal the console is wide, so that piped tables are not wrapped or cut.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import descriptor, json_format, message, timestamp_pb2
from rich.console import Console
from rich.table import Table

from sip2uc.v1 import admin_pb2, calls_pb2, common_pb2, directory_pb2, registrations_pb2

_PIPE_WIDTH = 250


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else _PIPE_WIDTH
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def error_line(text: str) -> None:
    """One plain line on stderr (no markup, no wrapping) for errors."""
    sys.stderr.write(f"error: {text}\n")
    sys.stderr.flush()


def note_line(text: str) -> None:
    """One plain line on stderr for what is said about the output, not the output itself."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def info_line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def message_dict(msg: message.Message) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def print_json(value: Any) -> None:
    if isinstance(value, message.Message):
        value = message_dict(value)
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def json_line(value: Any) -> None:
    """One compact JSON object per line, for streams."""
    if isinstance(value, message.Message):
        value = message_dict(value)
    sys.stdout.write(json.dumps(value, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def enum_label(enum_type: Any, value: int) -> str:
    """`AVAILABILITY_DO_NOT_DISTURB` -> `do-not-disturb`: the prefix (the enum's
    name in upper snake case, per buf STANDARD) dropped, lower case, hyphens."""
    return enum_label_by_descriptor(enum_type.DESCRIPTOR, value)


def enum_label_by_descriptor(enum: descriptor.EnumDescriptor, value: int) -> str:
    item = enum.values_by_number.get(value)
    if item is None:
        return str(value)
    name = item.name
    prefix = upper_snake(enum.name) + "_"
    if name.startswith(prefix):
        name = name[len(prefix) :]
    if name == "UNSPECIFIED":
        return "-"
    return name.lower().replace("_", "-")


def upper_snake(camel: str) -> str:
    out: list[str] = []
    for index, char in enumerate(camel):
        if char.isupper() and index:
            out.append("_")
        out.append(char.upper())
    return "".join(out)


def availability(value: int) -> str:
    return enum_label(common_pb2.Availability, value)


def timestamp(ts: timestamp_pb2.Timestamp) -> str:
    """ISO 8601 in UTC to the second, or "-" when unset."""
    if ts.seconds == 0 and ts.nanos == 0:
        return "-"
    return datetime.fromtimestamp(ts.seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    result = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        result.add_column(column, overflow="fold")
    for row in rows:
        result.add_row(*row)
    return result


def key_values(title: str | None, pairs: Iterable[tuple[str, str]]) -> Table:
    result = Table(title=title, show_header=False, box=None, pad_edge=False)
    result.add_column("key", style="bold")
    result.add_column("value", overflow="fold")
    for key, value in pairs:
        result.add_row(key, value)
    return result


def show(renderable: Any) -> None:
    console().print(renderable)


def counts_table(title: str, counts: Mapping[str, int], enum_type: Any) -> Table:
    rows = []
    for name, count in counts.items():
        try:
            label = enum_label(enum_type, enum_type.Value(name))
        except ValueError:
            label = name
        rows.append((label, str(count)))
    return table(title, ("action", "rows"), rows)


def sidecar_state(value: int) -> str:
    return enum_label(admin_pb2.SidecarState, value)


def transport(value: int) -> str:
    return enum_label(common_pb2.Transport, value)


def call_state(value: int) -> str:
    return enum_label(calls_pb2.CallState, value)


def import_action(value: int) -> str:
    return enum_label(directory_pb2.ImportAction, value)


def socket_address(addr: common_pb2.SocketAddress) -> str:
    if not addr.host:
        return "-"
    return f"[{addr.host}]:{addr.port}" if ":" in addr.host else f"{addr.host}:{addr.port}"


def registration_row(reg: registrations_pb2.Registration) -> tuple[str, ...]:
    return (
        reg.name,
        reg.aor,
        reg.contact_uri,
        socket_address(reg.source),
        transport(reg.transport),
        reg.sidecar or "-",
        reg.user_agent or "-",
        timestamp(reg.expire_time),
    )


REGISTRATION_COLUMNS = (
    "name",
    "aor",
    "contact",
    "source",
    "transport",
    "sidecar",
    "user agent",
    "expires",
)
