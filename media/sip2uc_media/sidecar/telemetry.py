"""The sidecar's tracer and metric instruments (OpenTelemetry API only; exporters are configured
by the process that hosts the sidecar)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

from ..rtp.relay import LegStats

__all__ = ["EdgeMetrics", "IntakeMetrics", "MediaMetrics", "PhonebookMetrics", "tracer"]

tracer = trace.get_tracer("sip2uc_media.sidecar")


class EdgeMetrics:
    """Counters of the SIP edge. Attribute values are low-cardinality (method, status, reason)."""

    def __init__(self, meter: metrics.Meter | None = None) -> None:
        meter = meter or metrics.get_meter("sip2uc_media.sidecar")
        self.messages_in = meter.create_counter(
            "sip2uc.sidecar.sip.messages.in", description="SIP messages received, by method"
        )
        self.messages_out = meter.create_counter(
            "sip2uc.sidecar.sip.messages.out",
            description="SIP responses sent, by method and status",
        )
        self.register_outcomes = meter.create_counter(
            "sip2uc.sidecar.register.outcomes", description="REGISTER final responses, by outcome"
        )
        self.auth_failures = meter.create_counter(
            "sip2uc.sidecar.auth.failures",
            description=(
                "Refused logins, by reason (wrong_password counts towards bans; algorithm, "
                "wrong_realm, no_qop, uri_mismatch, invalid_nonce and bad_auth do not)"
            ),
        )
        self.bans = meter.create_counter(
            "sip2uc.sidecar.bans",
            description=(
                "Bans begun, by reason (failed_logins: a user name from a source; user_names: "
                "a whole source)"
            ),
        )
        self.dropped = meter.create_counter(
            "sip2uc.sidecar.sip.dropped", description="SIP messages dropped, by reason"
        )
        self.refusals = meter.create_counter(
            "sip2uc.sidecar.sip.refusals",
            description=(
                "Requests refused for a reason a person can act on (405, 501, calls refused), "
                "by reason"
            ),
        )
        self.retransmissions = meter.create_counter(
            "sip2uc.sidecar.sip.retransmissions",
            description="Retransmitted requests absorbed by server transactions",
        )


class IntakeMetrics:
    """The overload picture: what the intake refused and why, how long messages waited, and
    the work in flight (transactions, unanswered control-plane requests).

    High-rate counts are kept as plain integers by their owners and read at collection time
    (observable instruments): adding to an OpenTelemetry counter per shed message would cost
    more than shedding it.
    """

    def __init__(self, meter: metrics.Meter | None = None) -> None:
        self._meter = meter or metrics.get_meter("sip2uc_media.sidecar")
        self.delay = self._meter.create_histogram(
            "sip2uc.sidecar.overload.queue.delay",
            unit="s",
            description="How long messages waited in the intake before being served "
            "(the first message of each batch)",
            explicit_bucket_boundaries_advisory=[
                0.001,
                0.005,
                0.01,
                0.05,
                0.1,
                0.25,
                0.5,
                1.0,
                2.0,
                5.0,
            ],
        )

    def observe(
        self,
        *,
        refused: Callable[[], Iterable[tuple[str, int]]],
        answered: Callable[[], int],
        waiting: Callable[[], int],
        oldest: Callable[[], float],
        transactions: Callable[[], int],
        control: Callable[[], tuple[int, float]],
    ) -> None:
        """Register the observable instruments; call once."""
        meter = self._meter

        def shed(_options: CallbackOptions) -> Iterable[Observation]:
            for reason, count in refused():
                yield Observation(count, {"reason": reason})

        def gauge(read: Callable[[], float]) -> Callable[[CallbackOptions], Iterable[Observation]]:
            def callback(_options: CallbackOptions) -> Iterable[Observation]:
                yield Observation(read())

            return callback

        meter.create_observable_counter(
            "sip2uc.sidecar.overload.shed",
            callbacks=[shed],
            description="Messages the intake did not serve, by reason (queue_delay and "
            "control_backlog are answered 503 with Retry-After, the others dropped)",
        )
        meter.create_observable_counter(
            "sip2uc.sidecar.overload.answered",
            callbacks=[gauge(answered)],
            description="503 responses sent for shed new work",
        )
        meter.create_observable_gauge(
            "sip2uc.sidecar.overload.queue.waiting",
            callbacks=[gauge(waiting)],
            description="Messages waiting in the intake",
        )
        meter.create_observable_gauge(
            "sip2uc.sidecar.overload.queue.oldest",
            callbacks=[gauge(oldest)],
            unit="s",
            description="How long the oldest waiting message has waited",
        )
        meter.create_observable_gauge(
            "sip2uc.sidecar.transactions",
            callbacks=[gauge(transactions)],
            description="SIP transactions in progress (server and client)",
        )
        meter.create_observable_gauge(
            "sip2uc.sidecar.control.in_flight",
            callbacks=[gauge(lambda: control()[0])],
            description="Requests to the control plane not yet answered",
        )
        meter.create_observable_gauge(
            "sip2uc.sidecar.control.oldest",
            callbacks=[gauge(lambda: control()[1])],
            unit="s",
            description="How long the oldest unanswered request to the control plane has waited",
        )


class MediaMetrics:
    """Call legs and their RTP, per sidecar: live legs, and each finished leg's stream figures."""

    def __init__(self, live_legs: Callable[[], int], meter: metrics.Meter | None = None) -> None:
        meter = meter or metrics.get_meter("sip2uc_media.sidecar")
        self._live_legs = live_legs
        meter.create_observable_gauge(
            "sip2uc.sidecar.call.legs", callbacks=[self._legs], description="Call legs in progress"
        )
        self.packets = meter.create_counter(
            "sip2uc.sidecar.rtp.packets",
            description="RTP packets of finished legs, by direction (rx from the handset, tx to it)",
        )
        self.lost = meter.create_counter(
            "sip2uc.sidecar.rtp.lost", description="RTP packets lost on the way from handsets"
        )
        self.jitter = meter.create_histogram(
            "sip2uc.sidecar.rtp.jitter",
            unit="ms",
            description="Interarrival jitter of each finished leg's received stream (RFC 3550)",
            explicit_bucket_boundaries_advisory=[1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0, 100.0],
        )
        self.mos = meter.create_histogram(
            "sip2uc.sidecar.rtp.mos",
            description="Estimated MOS (E-model) of each finished leg's received stream",
            explicit_bucket_boundaries_advisory=[1.0, 2.0, 2.5, 3.0, 3.5, 4.0, 4.2, 4.5],
        )

    def _legs(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self._live_legs())

    def leg_finished(self, stats: LegStats) -> None:
        received = stats.received
        self.packets.add(received.packets, {"direction": "rx"})
        self.packets.add(stats.sent_packets, {"direction": "tx"})
        if received.packets:
            self.lost.add(max(0, received.lost))
            self.jitter.record(received.jitter_ms)
            self.mos.record(received.mos)


class PhonebookMetrics:
    """The address book served to handsets: requests by format and status, and the size and
    version of the book the sidecar holds."""

    def __init__(
        self, book: Callable[[], tuple[int, int] | None], meter: metrics.Meter | None = None
    ) -> None:
        meter = meter or metrics.get_meter("sip2uc_media.sidecar")
        self._book = book
        self.requests = meter.create_counter(
            "sip2uc.sidecar.phonebook.requests",
            description="Address book requests answered, by format and HTTP status",
        )
        meter.create_observable_gauge(
            "sip2uc.sidecar.phonebook.entries",
            callbacks=[self._entries],
            description="Entries in the address book the sidecar serves",
        )

    def served(self, fmt: str, status: int) -> None:
        self.requests.add(1, {"format": fmt or "none", "status": str(status)})

    def _entries(self, _options: CallbackOptions) -> Iterable[Observation]:
        held = self._book()
        if held is not None:
            yield Observation(held[0])
