"""RTP/RTCP port-pair allocation over a configured range.

RTP uses an even port and RTCP the next odd one (RFC 3550 §11). Released pairs go to
the back of the queue, so a port is reused as late as possible and stray packets of an
ended call are unlikely to reach a new one. Running out is :class:`PortsExhausted`,
which the SIP side answers with 503 (RFC 3261 §21.5.4): the sidecar's channel limit.
"""

from __future__ import annotations

from collections import deque
from typing import Final


class PortRangeError(ValueError):
    """A port range that cannot hold a single RTP/RTCP pair."""


class PortsExhausted(Exception):
    """Every port pair of the range is in use."""

    sip_status: Final = 503

    def __init__(self, low: int, high: int) -> None:
        super().__init__(f"no free RTP port pair in {low}-{high}")
        self.low = low
        self.high = high


def parse_port_range(spec: str) -> tuple[int, int]:
    """Parse ``"A-B"`` into ``(A, B)``."""
    low_s, sep, high_s = spec.partition("-")
    if not sep or not low_s.strip().isdigit() or not high_s.strip().isdigit():
        raise PortRangeError(f"port range must look like 20000-29999, got {spec!r}")
    return int(low_s), int(high_s)


class PortAllocator:
    """Hands out RTP ports (even; RTCP is ``port + 1``) from ``low..high`` inclusive."""

    def __init__(self, low: int, high: int) -> None:
        first = low + (low & 1)
        if not 0 < low <= high <= 65535 or first + 1 > high:
            raise PortRangeError(f"port range {low}-{high} holds no even/odd pair")
        self.low = low
        self.high = high
        self._free: deque[int] = deque(range(first, high, 2))
        self._used: set[int] = set()

    @classmethod
    def from_spec(cls, spec: str) -> PortAllocator:
        return cls(*parse_port_range(spec))

    @property
    def capacity(self) -> int:
        return len(self._free) + len(self._used)

    @property
    def in_use(self) -> int:
        return len(self._used)

    def allocate(self) -> int:
        """The RTP port of a free pair; raises :class:`PortsExhausted`."""
        if not self._free:
            raise PortsExhausted(self.low, self.high)
        port = self._free.popleft()
        self._used.add(port)
        return port

    def release(self, port: int) -> None:
        """Give a pair back; releasing a port not in use is ignored."""
        if port in self._used:
            self._used.remove(port)
            self._free.append(port)
