"""Refusals a person can act on: one log line per source and reason, every one counted.

`RefusalLog` on its own with a fixed clock, then the SIP edge's 405 and 501 as an operator
sees them (log line at the default level, `sip2uc.sidecar.sip.refusals` by reason).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sip2uc_core.refusal_log import RefusalLog, printable
from sip2uc_core.sip.digest import NonceCountTracker, NonceIssuer
from sip2uc_core.sip.endpoint import Endpoint, Transport
from sip2uc_media.sidecar.dispatch import SipEdge
from sip2uc_media.sidecar.registrar import Registrar, RegistrarPolicy
from sip2uc_media.sidecar.telemetry import EdgeMetrics
from sip2uc_media.transport.base import Source

from .test_edge import FakeControl, request

LOGGER = "test.refusals"


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_the_first_refusal_of_a_source_and_reason_is_written_then_repeats_are_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    refusals = RefusalLog(logging.getLogger(LOGGER), interval=60.0)

    written = [
        refusals.note("10.0.0.5", "405", now, lambda: "405 for SUBSCRIBE")
        for now in (0.0, 1.0, 2.0)
    ]
    refusals.note("10.0.0.6", "405", 3.0, lambda: "405 from the other")
    refusals.note("10.0.0.5", "501", 4.0, lambda: "501 for FOO")
    refusals.note("10.0.0.5", "405", 61.0, lambda: "405 for SUBSCRIBE")

    assert written == [True, False, False]
    assert lines(caplog) == [
        "405 for SUBSCRIBE",
        "405 from the other",
        "501 for FOO",
        "405 for SUBSCRIBE (and 2 more like it in the last 61 s)",
    ]


def test_the_budget_holds_back_a_flood_from_many_sources_and_says_how_much(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    refusals = RefusalLog(logging.getLogger(LOGGER), interval=60.0, budget=3)

    for i in range(10):
        refusals.note(f"10.0.1.{i}", "405", float(i), lambda i=i: f"405 from 10.0.1.{i}")
    refusals.note("10.0.2.1", "405", 70.0, lambda: "405 from 10.0.2.1")

    assert lines(caplog) == [
        "405 from 10.0.1.0",
        "405 from 10.0.1.1",
        "405 from 10.0.1.2",
        "7 more refusals were not logged in the last 70 s (too many sources)",
        "405 from 10.0.2.1",
    ]


def test_the_message_is_made_only_when_it_is_written() -> None:
    refusals = RefusalLog(logging.getLogger(LOGGER))
    made: list[int] = []

    def message() -> str:
        made.append(1)
        return "x"

    for now in range(5):
        refusals.note("10.0.0.5", "405", float(now), message)

    assert made == [1]


def test_network_text_is_shortened_and_its_control_characters_escaped() -> None:
    assert printable("Grandstream HT502") == "Grandstream HT502"
    assert printable("evil\r\nInjected: yes") == "evil\\r\\nInjected: yes"
    assert printable("x" * 100) == "x" * 64 + "..."


class Edge:
    def __init__(self) -> None:
        self.now = 500.0
        self.reader = InMemoryMetricReader()
        secret = b"s" * 32
        self.edge = SipEdge(
            name="unit",
            registrar=Registrar(
                NonceIssuer(secret, 300.0),
                NonceCountTracker(100),
                tag_secret=secret,
                policy=RegistrarPolicy(realm="example.net"),
            ),
            control=FakeControl(),
            send=lambda _data, _dest: True,
            clock=lambda: self.now,
            wall_clock=lambda: 1_700_000_000.0 + self.now,
            metrics=EdgeMetrics(MeterProvider(metric_readers=[self.reader]).get_meter("t")),
        )

    def deliver(self, data: bytes, host: str = "192.0.2.10") -> None:
        self.edge.receive(data, Source(Endpoint(Transport.UDP, host, 5062), lambda _d: True))

    def refusals(self) -> dict[str, int]:
        data = self.reader.get_metrics_data()
        assert data is not None
        out: dict[str, int] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == "sip2uc.sidecar.sip.refusals":
                        points: Any = metric.data.data_points
                        out.update({p.attributes["reason"]: p.value for p in points})
        return out


async def test_a_405_and_a_501_leave_one_line_each_at_the_default_level_and_are_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "sip2uc_media.sidecar.dispatch")
    e = Edge()

    e.deliver(request("SUBSCRIBE", "User-Agent: baresip v1.0.0", branch="z9hG4bKs1"))
    e.deliver(request("SUBSCRIBE", "User-Agent: baresip v1.0.0", branch="z9hG4bKs2"))
    e.deliver(request("FROB", branch="z9hG4bKf1"))

    logged = [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "sip2uc_media.sidecar.dispatch"
    ]
    assert logged == [
        (
            logging.INFO,
            "405 for SUBSCRIBE from 192.0.2.10:5062 (alice, baresip v1.0.0): "
            "this sidecar serves REGISTER, OPTIONS",
        ),
        (
            logging.INFO,
            "501 for FROB from 192.0.2.10:5062 (alice): not a method this sidecar knows",
        ),
    ]
    assert e.refusals() == {"method_not_allowed": 2, "not_implemented": 1}
