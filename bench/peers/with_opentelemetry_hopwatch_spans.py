"""OpenTelemetry's Django instrumentation as in ``with_opentelemetry`` (its middleware
first, every request traced, spans exported to memory), plus hopwatch as in
``with_hopwatch`` with ``OTEL_SPANS``: a child span per crossing under the request's
span. Next to ``opentelemetry`` and ``hopwatch`` it is what the crossing spans add
to a traced app."""

from __future__ import annotations

from bench.peers import with_hopwatch, with_opentelemetry
from bench.peers.with_hopwatch import *  # noqa: F403
from bench.peers.with_hopwatch import HOPWATCH

HOPWATCH = {**HOPWATCH, "OTEL_SPANS": True}

instrument = with_opentelemetry.instrument


def evidence() -> dict[str, object]:
    return {**with_hopwatch.evidence(), **with_opentelemetry.evidence()}
