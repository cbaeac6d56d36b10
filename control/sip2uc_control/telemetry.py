"""OpenTelemetry for the control plane: spans per RPC, metrics, Prometheus scrape endpoint.

By default metrics are served for Prometheus on ``--metrics-listen`` (127.0.0.1:9464). When the
standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_TRACES_EXPORTER=otlp`` /
``OTEL_METRICS_EXPORTER=otlp``) is set, traces and metrics are also exported over OTLP/gRPC.
Spans are recorded only when traces are exported; otherwise the tracer is the API's no-op one.
Providers are process-wide; the first control plane (or sidecar) in a process installs them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any, Protocol

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

log = logging.getLogger(__name__)
_installed = False
_prometheus_started: set[str] = set()


def _otlp_wanted(kind: str) -> bool:
    exporter = os.environ.get(f"OTEL_{kind}_EXPORTER", "")
    return "otlp" in exporter or bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{kind}_ENDPOINT")
    )


def setup_telemetry(service_name: str, metrics_listen: str | None) -> None:
    """Install the tracer and meter providers once per process and start the scrape endpoint."""
    global _installed
    if not _installed:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.name": service_name})
        readers: list[Any] = [PrometheusMetricReader()]
        if _otlp_wanted("METRICS"):
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
        if _otlp_wanted("TRACES"):
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            tracer_provider = TracerProvider(resource=resource)
            tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            trace.set_tracer_provider(tracer_provider)
        # Without a trace exporter the API's no-op tracer stays: recording spans that nobody
        # exports cost a tenth of the control plane's CPU per registration.
        _installed = True
    if metrics_listen and metrics_listen not in _prometheus_started:
        from prometheus_client import start_http_server

        host, _, port = metrics_listen.rpartition(":")
        start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1")
        _prometheus_started.add(metrics_listen)
        log.info("metrics for Prometheus on http://%s/metrics", metrics_listen)


# RPC latencies are milliseconds, not the SDK's default buckets of 5-10 000 (seconds here).
RPC_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


class ObservedState(Protocol):
    """What the gauges read (`ControlCore`): counts kept in memory, cheap to read per scrape."""

    def user_count(self) -> int: ...

    def binding_count(self) -> int: ...

    def active_call_count(self) -> int: ...

    def connected_sidecar_count(self) -> int: ...

    def trunk_states(self) -> list[tuple[str, bool, bool]]:
        """(trunk id, up, registered) of every enabled trunk."""
        ...


# The state the observable gauges report: the latest control plane started in this process
# (tests start several; a process normally runs one).
_observed: ObservedState | None = None
_instruments: ControlMetrics | None = None


class ControlMetrics:
    """The control plane's instruments, created once per process (no-ops until a provider is set)."""

    def __new__(cls) -> ControlMetrics:
        global _instruments
        if _instruments is None:
            _instruments = super().__new__(cls)
            _instruments._create()
        return _instruments

    def _create(self) -> None:
        meter = metrics.get_meter("sip2uc.control")
        self.presence_changes = meter.create_counter(
            "sip2uc_presence_changes", description="Presence changes by new availability"
        )
        self.register_outcomes = meter.create_counter(
            "sip2uc_register_requests", description="Authenticated REGISTER requests by outcome"
        )
        self.auth_failures = meter.create_counter(
            "sip2uc_auth_failures",
            description=(
                "Credentials refused by the control plane, by reason (unknown_user, "
                "wrong_password, algorithm, locked)"
            ),
        )
        self.messages = meter.create_counter(
            "sip2uc_messages",
            description="Short messages by origin and outcome (a handset's SIP status, or the "
            "delivery state of an API text)",
        )
        self.account_locks = meter.create_counter(
            "sip2uc_auth_account_locks",
            description="Accounts locked after failed logins from many sources",
        )
        self.rpc_duration = meter.create_histogram(
            "sip2uc_rpc_duration",
            unit="s",
            description="Server-side RPC latency by method and code",
            explicit_bucket_boundaries_advisory=list(RPC_LATENCY_BUCKETS),
        )
        meter.create_observable_gauge("sip2uc_users", callbacks=[_users], description="Users")
        meter.create_observable_gauge(
            "sip2uc_bindings", callbacks=[_bindings], description="Registration bindings"
        )
        meter.create_observable_gauge(
            "sip2uc_calls_active", callbacks=[_calls], description="Calls in progress"
        )
        meter.create_observable_gauge(
            "sip2uc_sidecars_connected", callbacks=[_sidecars], description="Connected sidecars"
        )
        meter.create_observable_gauge(
            "sip2uc_trunk_up",
            callbacks=[_trunks_up],
            description="1 when the trunk answers OPTIONS (as its sidecar sees it), else 0",
        )
        meter.create_observable_gauge(
            "sip2uc_trunk_registered",
            callbacks=[_trunks_registered],
            description="1 when sip2uc holds a registration at the trunk, else 0",
        )

    def observe(self, state: ObservedState) -> None:
        global _observed
        _observed = state


def _users(_options: CallbackOptions) -> Iterable[Observation]:
    if _observed is not None:
        yield Observation(_observed.user_count())


def _bindings(_options: CallbackOptions) -> Iterable[Observation]:
    if _observed is not None:
        yield Observation(_observed.binding_count())


def _calls(_options: CallbackOptions) -> Iterable[Observation]:
    if _observed is not None:
        yield Observation(_observed.active_call_count())


def _sidecars(_options: CallbackOptions) -> Iterable[Observation]:
    if _observed is not None:
        yield Observation(_observed.connected_sidecar_count())


def _trunks_up(_options: CallbackOptions) -> Iterable[Observation]:
    if _observed is not None:
        for trunk, up, _registered in _observed.trunk_states():
            yield Observation(int(up), {"trunk": trunk})


def _trunks_registered(_options: CallbackOptions) -> Iterable[Observation]:
    if _observed is not None:
        for trunk, _up, registered in _observed.trunk_states():
            yield Observation(int(registered), {"trunk": trunk})
