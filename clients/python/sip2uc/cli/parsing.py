"""Parsing of the values people type on the command line.

Each parser raises `ValueError` with a message that can be shown as is; the
command modules turn it into a usage error (exit code 2).
"""

from __future__ import annotations

import re

from sip2uc.client import ClientError, join_target, split_target
from sip2uc.v1 import common_pb2

_DURATION_PART = re.compile(r"(\d+)([dhms])")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# The server accepts manual states of 1 second to 30 days (presence.proto).
MAX_PRESENCE_SECONDS = 30 * 86400

_STATES: dict[str, int] = {
    "available": common_pb2.AVAILABILITY_AVAILABLE,
    "busy": common_pb2.AVAILABILITY_BUSY,
    "dnd": common_pb2.AVAILABILITY_DO_NOT_DISTURB,
    "do-not-disturb": common_pb2.AVAILABILITY_DO_NOT_DISTURB,
    "brb": common_pb2.AVAILABILITY_BE_RIGHT_BACK,
    "be-right-back": common_pb2.AVAILABILITY_BE_RIGHT_BACK,
    "away": common_pb2.AVAILABILITY_AWAY,
    "offline": common_pb2.AVAILABILITY_OFFLINE,
    "appear-offline": common_pb2.AVAILABILITY_OFFLINE,
}
STATE_CHOICES = "available, busy, dnd (do-not-disturb), brb (be-right-back), away, offline"

_DIGEST_ALGORITHMS: dict[str, int] = {
    "md5": common_pb2.DIGEST_ALGORITHM_MD5,
    "sha-256": common_pb2.DIGEST_ALGORITHM_SHA_256,
    "sha256": common_pb2.DIGEST_ALGORITHM_SHA_256,
}
#: The --digest-algorithm value that asks for the sidecar's default.
DEFAULT_DIGEST = "default"


def parse_digest_algorithms(names: list[str]) -> list[int]:
    """The algorithms named (MD5, SHA-256; in that order of preference, each once), or none for
    `default` alone (the sidecar's default)."""
    if [name.strip().lower() for name in names] == [DEFAULT_DIGEST]:
        return []
    chosen: list[int] = []
    for name in names:
        value = _DIGEST_ALGORITHMS.get(name.strip().lower())
        if value is None:
            raise ValueError(f"{name!r}: choose SHA-256 or MD5 (or 'default' alone)")
        if value in chosen:
            raise ValueError(f"{name!r} is given twice")
        chosen.append(value)
    return chosen


def parse_duration(text: str) -> int:
    """Seconds in `30s`, `15m`, `2h`, `1h30m`, `1d` or a bare number of seconds."""
    value = text.strip().lower()
    if value.isdigit():
        seconds = int(value)
    else:
        pos = 0
        seconds = 0
        seen: set[str] = set()
        order = "dhms"
        last = -1
        for match in _DURATION_PART.finditer(value):
            unit = match.group(2)
            if match.start() != pos or unit in seen or order.index(unit) < last:
                break
            seen.add(unit)
            last = order.index(unit)
            seconds += int(match.group(1)) * _UNIT_SECONDS[unit]
            pos = match.end()
        if not value or pos != len(value):
            raise ValueError(f"bad duration {text!r}: use forms like 30s, 15m, 2h, 1h30m, 1d")
    if seconds <= 0:
        raise ValueError(f"bad duration {text!r}: must be longer than zero")
    return seconds


def parse_state(text: str) -> int:
    """The `Availability` value for a state name a person can set by hand."""
    key = text.strip().lower().replace("_", "-").replace(" ", "-")
    try:
        return _STATES[key]
    except KeyError:
        raise ValueError(f"unknown state {text!r}: use one of {STATE_CHOICES}") from None


def parse_port_range(text: str) -> tuple[int, int]:
    """`A-B`, an inclusive UDP port range for RTP relays."""
    low_text, sep, high_text = text.strip().partition("-")
    if not sep or not low_text.isdigit() or not high_text.isdigit():
        raise ValueError(f"bad port range {text!r}: use A-B, e.g. 20000-29999")
    low, high = int(low_text), int(high_text)
    if not 1024 <= low <= high <= 65535:
        raise ValueError(f"bad port range {text!r}: need 1024 <= A <= B <= 65535")
    if high - low < 1:
        # Every leg takes an RTP port and the RTCP port above it (RFC 3550 11).
        raise ValueError(f"bad port range {text!r}: needs at least two ports (RTP and RTCP)")
    return low, high


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`) to listen on; port 0 picks a free one."""
    value = text.strip()
    if value.startswith("[") or value.count(":") == 1:
        host_part, _, port_text = value.rpartition(":")
        host = host_part[1:-1] if host_part.startswith("[") else host_part
        if host_part.startswith("[") and not host_part.endswith("]"):
            raise ValueError(f"bad address {text!r}: unclosed '['")
        if not host:
            raise ValueError(f"bad address {text!r}: missing host (e.g. 127.0.0.1:5060)")
        if not port_text.isdigit() or int(port_text) > 65535:
            raise ValueError(f"bad address {text!r}: port must be 0-65535")
        return host, int(port_text)
    raise ValueError(f"bad address {text!r}: use HOST:PORT, e.g. 127.0.0.1:5060")


def normalise_listen(text: str) -> str:
    host, port = parse_listen(text)
    return join_target(host, port)


def parse_target(text: str) -> str:
    """A control plane to connect to: `HOST[:PORT]` (default port 50051)."""
    try:
        host, port = split_target(text)
    except ClientError as exc:
        raise ValueError(str(exc)) from None
    return join_target(host, port)
