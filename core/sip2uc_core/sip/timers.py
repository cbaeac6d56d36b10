"""The SIP transaction timers of RFC 3261 §17 (Table 4) and RFC 6026 §8.

Every value derives from T1, T2 and T4 and from whether the transport is reliable: on TCP/TLS
the retransmission timers A, E and G are never armed and the wait timers D, I, J and K are zero
(RFC 3261 §17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2), because the transport already delivers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Backoff", "Timer", "TimerPolicy"]


class Timer(enum.Enum):
    A = "A"  # INVITE request retransmission (client, unreliable only)
    B = "B"  # INVITE client transaction timeout
    D = "D"  # INVITE client: wait for retransmitted final responses
    E = "E"  # non-INVITE request retransmission (client, unreliable only)
    F = "F"  # non-INVITE client transaction timeout
    G = "G"  # INVITE final response retransmission (server, unreliable only)
    H = "H"  # INVITE server: wait for the ACK
    I = "I"  # INVITE server: absorb ACK retransmissions  # noqa: E741
    J = "J"  # non-INVITE server: absorb request retransmissions
    K = "K"  # non-INVITE client: absorb response retransmissions
    L = "L"  # INVITE server Accepted state (RFC 6026 §8.7)
    M = "M"  # INVITE client Accepted state (RFC 6026 §8.4)
    TRYING = "Trying"  # INVITE server: send 100 Trying if the TU is silent (RFC 3261 §17.2.1)


class Backoff(enum.Enum):
    """How a timer's next interval follows from the current one when it is armed again."""

    INITIAL = "initial"  # the timer's start value
    DOUBLE = "double"  # Timer A: T1, 2*T1, 4*T1, ... (§17.1.1.2)
    DOUBLE_UP_TO_T2 = "double up to T2"  # Timers E (Trying) and G: min(2*x, T2)
    T2 = "T2"  # Timer E in Proceeding (§17.1.2.2)


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerPolicy:
    """T1 (RTT estimate), T2 (max non-INVITE retransmit interval), T4 (max network lifetime).

    `trying_delay` is the 200 ms after which an INVITE server transaction answers 100 Trying
    itself when the TU has not responded (RFC 3261 §17.2.1).
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    trying_delay: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.t1 <= self.t2:
            raise ValueError("timers need 0 < T1 <= T2")
        if self.t4 <= 0 or self.trying_delay < 0:
            raise ValueError("T4 must be positive and the 100 Trying delay not negative")

    def initial(self, timer: Timer, reliable: bool) -> float | None:
        """The start value of `timer`, or None when it is not used on this transport."""
        t1, t4 = self.t1, self.t4
        if timer in (Timer.A, Timer.E, Timer.G):
            return None if reliable else t1
        if timer in (Timer.B, Timer.F, Timer.H, Timer.L, Timer.M):
            return 64 * t1
        if timer is Timer.D:
            # "at least 32 seconds for unreliable transports" (§17.1.1.2), whatever T1 is.
            return 0.0 if reliable else max(32.0, 64 * t1)
        if timer is Timer.J:
            return 0.0 if reliable else 64 * t1
        if timer in (Timer.I, Timer.K):
            return 0.0 if reliable else t4
        return self.trying_delay

    def next_interval(
        self, timer: Timer, current: float, backoff: Backoff, reliable: bool
    ) -> float | None:
        """The interval to arm `timer` with, given the one it last ran with."""
        if backoff is Backoff.INITIAL:
            return self.initial(timer, reliable)
        if backoff is Backoff.DOUBLE:
            return 2 * current
        if backoff is Backoff.DOUBLE_UP_TO_T2:
            return min(2 * current, self.t2)
        return self.t2
