"""The sidecar's media metrics: live legs, and each finished leg's packets, loss, jitter and MOS."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sip2uc_media.rtp.relay import LegStats
from sip2uc_media.rtp.stats import StreamSnapshot
from sip2uc_media.sidecar.telemetry import MediaMetrics


def snapshot(packets: int, lost: int, jitter: float, mos: float) -> StreamSnapshot:
    return StreamSnapshot(
        packets=packets,
        bytes=packets * 160,
        expected=packets + lost,
        lost=lost,
        loss_pct=100.0 * lost / (packets + lost) if packets + lost else 0.0,
        jitter_ms=jitter,
        mos=mos,
        remote_loss_pct=None,
        remote_jitter_ms=None,
        remote_cumulative_lost=None,
    )


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    out: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out[metric.name] = list(metric.data.data_points)
    return out


def test_finished_legs_add_packets_loss_jitter_and_mos() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    live = [3]
    media = MediaMetrics(lambda: live[0], meter)

    media.leg_finished(
        LegStats(leg_id="a", received=snapshot(500, 5, 12.5, 4.1), sent_packets=498, sent_bytes=0)
    )
    media.leg_finished(
        LegStats(leg_id="b", received=snapshot(0, 0, 0.0, 0.0), sent_packets=20, sent_bytes=0)
    )

    got = points(reader)
    packets = {p.attributes["direction"]: p.value for p in got["sip2uc.sidecar.rtp.packets"]}
    assert packets == {"rx": 500, "tx": 518}
    assert [p.value for p in got["sip2uc.sidecar.rtp.lost"]] == [5]
    # A leg that received nothing says nothing about quality.
    (jitter,) = got["sip2uc.sidecar.rtp.jitter"]
    assert (jitter.count, jitter.sum) == (1, 12.5)
    (mos,) = got["sip2uc.sidecar.rtp.mos"]
    assert (mos.count, mos.sum) == (1, 4.1)
    assert [p.value for p in got["sip2uc.sidecar.call.legs"]] == [3]
