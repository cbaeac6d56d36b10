"""How many call legs this sidecar can carry: the capacity it announces to the control plane.

A leg binds two RTP/RTCP port pairs (the handset's side and the side facing the other leg's
relay, `calls.CallHandler._open_ports`), so the relay's port range bounds the legs; so does the
process's open-file limit, four sockets a leg. The control plane's channel limit (the
`default_channel_limit` setting, or the sidecar's own in `sidecars`) applies on top: the sidecar
accepts the smaller of the two, and `sip2uc sidecars` shows that number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

__all__ = ["LegCapacity", "leg_capacity", "raise_open_file_limit"]

_log = logging.getLogger(__name__)

PAIRS_PER_LEG = 2
SOCKETS_PER_LEG = 2 * PAIRS_PER_LEG
#: Descriptors kept for everything but relays: listeners, the control link, the database,
#: logs, a few dozen TCP handsets.
RESERVED_FILES = 256


@dataclass(frozen=True, slots=True)
class LegCapacity:
    legs: int
    #: What bounds it: "RTP ports" or "open files".
    bound_by: str


def leg_capacity(port_pairs: int, open_files: int | None) -> LegCapacity:
    """The legs `port_pairs` RTP/RTCP pairs and an open-file limit of `open_files` (None:
    unlimited) allow."""
    by_ports = port_pairs // PAIRS_PER_LEG
    if open_files is None:
        return LegCapacity(by_ports, "RTP ports")
    by_files = max(0, (open_files - RESERVED_FILES) // SOCKETS_PER_LEG)
    if by_files < by_ports:
        return LegCapacity(by_files, "open files")
    return LegCapacity(by_ports, "RTP ports")


def raise_open_file_limit() -> int | None:
    """Raise this process's soft open-file limit to its hard limit (what a server should run
    with); returns the soft limit now in force, None when there is none to speak of."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not a POSIX system
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            _log.debug("cannot raise the open-file limit to %s: %s", hard, exc)
    return None if soft == resource.RLIM_INFINITY else soft
