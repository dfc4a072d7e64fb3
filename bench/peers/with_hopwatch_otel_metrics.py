"""hopwatch as in ``with_hopwatch``, plus ``OTEL_METRICS``: its four histograms and its
counter by cause recorded for every request through the OpenTelemetry SDK's global
``MeterProvider`` (an ``InMemoryMetricReader``: the recording is the same whatever
the reader; it is collected once, at exit, for the evidence). Next to ``hopwatch``
it is what the metrics cost per request."""

from __future__ import annotations

from typing import Any

from bench.peers import with_hopwatch
from bench.peers.with_hopwatch import *  # noqa: F403
from bench.peers.with_hopwatch import HOPWATCH

HOPWATCH = {**HOPWATCH, "OTEL_METRICS": True}

_reader: Any = None


def instrument() -> None:
    global _reader
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    _reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[_reader]))


def evidence() -> dict[str, object]:
    """Request lines logged, and requests the hops histogram recorded (they should match)."""
    recorded = 0
    data = _reader.get_metrics_data() if _reader is not None else None
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "hopwatch.request.hops":
                    recorded += sum(point.count for point in metric.data.data_points)
    return {**with_hopwatch.evidence(), "requests in hopwatch.request.hops": recorded}
