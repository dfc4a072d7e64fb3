"""OpenTelemetry's Django instrumentation, every request traced, spans kept in memory.

``DjangoInstrumentor().instrument()`` inserts its middleware first in
``MIDDLEWARE``; spans go through a ``SimpleSpanProcessor`` to an
``InMemorySpanExporter``, which is emptied every 10,000 spans so memory stays
flat over a long run (the export itself still happens for every span). ASGI
requests are traced only when ``opentelemetry-instrumentation-asgi`` is
installed: ``instrument()`` refuses to run without it rather than measure a
middleware that silently does nothing.

Under ASGI, OpenTelemetry's context API logs "Failed to detach context" (with a
traceback) for requests whose context token is reset from another context; the
filter below counts those records and drops them before any handler formats
them, so OpenTelemetry is not charged for printing tracebacks to stderr.
"""

from __future__ import annotations

import logging
from typing import Any

from bench.peers.baseline import *  # noqa: F403

_exported = 0
_detach_errors = 0
_CLEAR_EVERY = 10_000


def _count_and_drop(record: logging.LogRecord) -> bool:
    global _detach_errors
    _detach_errors += 1
    return False


def instrument() -> None:
    from opentelemetry import trace
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.django.middleware import otel_middleware
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    if not getattr(otel_middleware, "_is_asgi_supported", False):
        raise SystemExit(
            "bench: opentelemetry-instrumentation-asgi is missing: OpenTelemetry's Django"
            " middleware would skip every ASGI request"
        )

    class ClearingInMemorySpanExporter(InMemorySpanExporter):
        def export(self, spans: Any) -> Any:
            global _exported
            result = super().export(spans)
            _exported += len(spans)
            if _exported % _CLEAR_EVERY < len(spans):
                self.clear()
            return result

    logging.getLogger("opentelemetry.context").addFilter(_count_and_drop)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ClearingInMemorySpanExporter()))
    # Global, as projects set it up (and as libraries such as hopwatch find it).
    trace.set_tracer_provider(provider)
    DjangoInstrumentor().instrument(tracer_provider=provider)


def evidence() -> dict[str, object]:
    return {"spans exported": _exported, "'Failed to detach context' errors": _detach_errors}
