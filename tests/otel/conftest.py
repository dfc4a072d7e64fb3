"""The OpenTelemetry SDK as a project would set it up, reading into memory.

The global providers can be set once per process, so they are set here, once:
a metric reader with delta temporality (each collection returns what was
recorded since the previous one) and a span exporter that tests empty first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import override_settings
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, ObservableCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hopwatch import otel

DELTA = AggregationTemporality.DELTA
READER = InMemoryMetricReader(
    preferred_temporality={Counter: DELTA, ObservableCounter: DELTA, Histogram: DELTA}
)
EXPORTER = InMemorySpanExporter()
TRACER_PROVIDER = TracerProvider()
TRACER_PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
trace.set_tracer_provider(TRACER_PROVIDER)


@dataclass
class Point:
    attributes: dict[str, Any]
    value: Any  # the SDK's data point: .count/.sum for histograms, .value for counters


def collect() -> dict[str, list[Point]]:
    """hopwatch's data points recorded since the last collection, by instrument name."""
    data = READER.get_metrics_data()
    found: dict[str, list[Point]] = {}
    if data is None:
        return found
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            if scope_metrics.scope.name != "hopwatch":
                continue
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    # The counter by cause is observable: series seen before come
                    # back with a delta of 0, which is nothing recorded.
                    if getattr(point, "value", None) == 0:
                        continue
                    found.setdefault(metric.name, []).append(Point(dict(point.attributes), point))
    return found


def hopwatch_spans() -> list[ReadableSpan]:
    return [s for s in EXPORTER.get_finished_spans() if s.instrumentation_scope.name == "hopwatch"]


@pytest.fixture
def otel_on(request) -> Iterator[None]:
    """hopwatch.otel installed, with the HOPWATCH options of the test's ``otel_settings``
    mark (default: metrics and spans on); nothing left over from earlier tests."""
    mark = request.node.get_closest_marker("otel_settings")
    options = mark.kwargs if mark else {"OTEL_METRICS": True, "OTEL_SPANS": True}
    with override_settings(HOPWATCH={"OUTPUT": "logging", **options}):
        otel.install()
        try:
            collect()
            EXPORTER.clear()
            yield
        finally:
            otel.uninstall()


def pytest_configure(config):
    config.addinivalue_line("markers", "otel_settings(**options): HOPWATCH options for otel_on")
