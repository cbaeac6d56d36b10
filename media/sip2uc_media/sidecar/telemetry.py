"""The sidecar's tracer and metric instruments (OpenTelemetry API only; exporters are configured
by the process that hosts the sidecar)."""

from __future__ import annotations

from opentelemetry import metrics, trace

__all__ = ["EdgeMetrics", "tracer"]

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
            "sip2uc.sidecar.auth.failures", description="Failed digest authentications"
        )
        self.bans = meter.create_counter(
            "sip2uc.sidecar.bans", description="Sources banned for repeated failures"
        )
        self.dropped = meter.create_counter(
            "sip2uc.sidecar.sip.dropped", description="SIP messages dropped, by reason"
        )
        self.retransmissions = meter.create_counter(
            "sip2uc.sidecar.sip.retransmissions",
            description="Retransmitted requests absorbed by server transactions",
        )
