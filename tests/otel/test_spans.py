"""OTEL_SPANS: one child span per crossing, under the request's span, at its real times.

The request's span comes from OpenTelemetry's own instrumentation, as in a
project: its ASGI middleware around Django's ASGI handler, its Django middleware
(``DjangoInstrumentor``), its WSGI middleware around Django's WSGI handler.
"""

from __future__ import annotations

import asyncio
import inspect

import pytest
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.test import override_settings
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware as AsgiMiddleware
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware as WsgiMiddleware
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags

from hopwatch.checks import check_middleware, check_otel_middleware
from tests.helpers import asgi_call, asgi_request, capture, wsgi_environ
from tests.otel.conftest import EXPORTER, TRACER_PROVIDER, collect, hopwatch_spans
from tests.testapp import views


def asgi_traced(path: str, **kwargs):
    """One request through OpenTelemetry's ASGI middleware around Django's handler."""
    return asyncio.run(asgi_call(AsgiMiddleware(ASGIHandler()), path, **kwargs))


def server_span(instrumentation: str):
    (span,) = [
        s
        for s in EXPORTER.get_finished_spans()
        if s.instrumentation_scope.name == instrumentation and s.kind == SpanKind.SERVER
    ]
    return span


def crossings():
    return [s for s in hopwatch_spans() if s.name != "hopwatch.request"]


def summary():
    (span,) = [s for s in hopwatch_spans() if s.name == "hopwatch.request"]
    return span


def test_one_child_span_per_crossing_under_the_request_span(otel_on, log_lines):
    with capture() as records:
        asgi_traced("/nested/")  # crossings at depths 1, 2 and 3
    (line,) = log_lines.parsed()
    (record,) = records
    request = server_span("opentelemetry.instrumentation.asgi")
    spans = crossings()
    assert len(spans) == line["hops"] == record.count
    assert {s.context.trace_id for s in spans} == {request.context.trace_id}

    hops = sorted(record.hops(), key=lambda hop: hop.called_ns)
    spans.sort(key=lambda span: span.start_time)
    span_of = {id(hop): span for hop, span in zip(hops, spans, strict=True)}
    for hop, span in zip(hops, spans, strict=True):
        assert span.name == f"{hop.direction} {hop.cause.site}"
        assert span.kind == SpanKind.INTERNAL
        # The crossing's own times: the span lasts exactly as long as the hop.
        assert span.end_time - span.start_time == hop.wall_ns
        assert span.attributes["hopwatch.hop.wait_ms"] == half_up_ms(hop.wait_ns)
        assert span.attributes["hopwatch.hop.run_ms"] == half_up_ms(hop.run_ns)
        assert span.attributes["thread.id"] == hop.thread_id
        assert span.attributes["hopwatch.direction"] == hop.direction
        assert "hopwatch.hop.new_loop" not in span.attributes  # only when it is one
        assert "hopwatch.hop.outcome" not in span.attributes  # only when not "ok"
        # The parent: the enclosing crossing's span, or the request's.
        if hop.parent is None:
            assert span.parent.span_id == request.context.span_id
        else:
            parent = span_of[id(hop.parent)]
            assert span.parent.span_id == parent.context.span_id
            assert parent.start_time <= span.start_time and span.end_time <= parent.end_time
        # Epoch times, from the request's own offset: inside the request as OpenTelemetry
        # timed it (it ends its span when the last body is sent, before response.close()).
        assert span.start_time >= request.start_time
        if hop.cause.site != "HttpResponse.close":
            assert span.end_time <= request.end_time
    names = [s.name for s in spans]
    start = names.index("sync_to_async tests.testapp.views._middle")
    assert names[start : start + 3] == [
        "sync_to_async tests.testapp.views._middle",
        "async_to_sync tests.testapp.views._deepest",
        "sync_to_async tests.testapp.views._noop",
    ]

    # The ASGI middleware ended its span before Django closed the response: the
    # totals go on a span of their own, under it, over the whole request.
    totals = summary()
    assert totals.parent.span_id == request.context.span_id
    assert totals.attributes["hopwatch.hops"] == line["hops"]
    assert totals.attributes["hopwatch.request_id"] == line["request_id"]
    assert totals.attributes["hopwatch.hop_ms"] == line["hop_ms"]
    assert totals.attributes["hopwatch.max_depth"] == 3
    assert totals.attributes["hopwatch.pinned_by"] == line["pinned_by"]
    assert totals.attributes["hopwatch.spans_dropped"] == 0
    # Each time the line's own: the queue's wait alone, not the overhead (the wait
    # and the hand-off back, which three crossings' returns make the greater).
    for field in ("hop_ms", "wait_ms", "overhead_ms", "work_ms", "pinned_ms"):
        assert totals.attributes[f"hopwatch.{field}"] == line[field], field
    assert line["wait_ms"] < line["overhead_ms"]
    # as Django and OpenTelemetry's Django instrumentation write it
    assert totals.attributes["http.route"] == "nested/"
    assert all(totals.start_time <= s.start_time and s.end_time <= totals.end_time for s in spans)
    # One offset per request turns its perf_counter_ns readings into epoch time...
    for hop, span in zip(hops, spans, strict=True):
        assert span.start_time - totals.start_time == hop.called_ns - record.started_ns
    assert totals.end_time - totals.start_time == record.ended_ns - record.started_ns
    # ... the right one: the record's start, read on the wall clock when it opened
    # (a bound for a wrong unit or clock, not a measurement of speed).
    assert abs(totals.start_time - record.started_at * 1e9) < 5_000_000


def test_the_user_call_site_and_a_failing_crossing(otel_on, db):
    asgi_traced("/orm/count/")
    (acount,) = [s for s in crossings() if s.attributes["hopwatch.cause.kind"] == "orm"]
    lines, first = inspect.getsourcelines(views.orm_count_view)
    line = first + next(i for i, text in enumerate(lines) if "acount()" in text)
    assert acount.name == "sync_to_async QuerySet.acount"
    assert acount.attributes["code.file.path"] == "tests/testapp/views.py"
    assert acount.attributes["code.line.number"] == line
    assert acount.attributes["code.function.name"] == "orm_count_view"
    # Middleware causes have no user call site: no code.* attributes.
    assert all("code.line.number" not in s.attributes for s in crossings() if s is not acount)

    EXPORTER.clear()
    asgi_traced("/sync-error/")  # a sync view under ASGI: it raises inside its crossing
    (view,) = [s for s in crossings() if s.attributes["hopwatch.cause.kind"] == "view"]
    assert view.status.status_code == StatusCode.ERROR
    assert view.attributes["hopwatch.hop.outcome"] == "error"
    assert all(s.status.status_code == StatusCode.UNSET for s in crossings() if s is not view)


def test_under_opentelemetrys_django_middleware(otel_on, log_lines):
    """DjangoInstrumentor puts its (sync-only) middleware first: its span is current when
    the request reaches hopwatch's middleware, and has ended by the time it closes."""
    with override_settings(MIDDLEWARE=list(settings.MIDDLEWARE)):
        DjangoInstrumentor().instrument(tracer_provider=TRACER_PROVIDER)
        try:
            assert settings.MIDDLEWARE[1] == "hopwatch.middleware.HopwatchMiddleware"
            assert check_middleware() == [] and check_otel_middleware() == []
            asyncio.run(asgi_call(ASGIHandler(), "/async/"))
        finally:
            DjangoInstrumentor().uninstrument()
    (line,) = log_lines.parsed()
    request = server_span("opentelemetry.instrumentation.django")
    spans = crossings()
    assert len(spans) == line["hops"]
    by_id = {s.context.span_id: s for s in spans}
    for span in spans:
        assert span.parent.span_id == request.context.span_id or span.parent.span_id in by_id
    # Its middleware is sync-only: under ASGI it costs crossings of its own, the
    # outermost of which runs it (and so starts before its span does).
    otel_middleware = "opentelemetry.instrumentation.django.middleware.otel_middleware"
    own = [s for s in spans if s.attributes["hopwatch.cause.site"].startswith(otel_middleware)]
    assert len(own) == 3
    totals = summary()
    assert totals.parent.span_id == request.context.span_id
    assert totals.attributes["hopwatch.hops"] == line["hops"]


def _served_under_opentelemetrys_instrumentation(urlconf: str, path: str) -> None:
    """One request to ``path`` through ASGIHandler with OpenTelemetry's Django
    instrumentation on (its middleware put first), then off again."""
    with override_settings(ROOT_URLCONF=urlconf, MIDDLEWARE=list(settings.MIDDLEWARE)):
        DjangoInstrumentor().instrument(tracer_provider=TRACER_PROVIDER)
        try:
            assert asyncio.run(asgi_call(ASGIHandler(), path)).status == 200
        finally:
            DjangoInstrumentor().uninstrument()


@pytest.mark.parametrize("path", ["/plain/", "/regex/12/page-3/", "/api/datasets/7/"])
def test_http_route_is_the_one_opentelemetrys_django_instrumentation_gives(otel_on, path, db):
    """So hopwatch's series and spans join OpenTelemetry's own http.server ones on it:
    Django's pattern as written (no leading "/", a re_path's regex as it is)."""
    _served_under_opentelemetrys_instrumentation("tests.ninja_site.urls", path)
    request = server_span("opentelemetry.instrumentation.django")
    assert summary().attributes["http.route"] == request.attributes["http.route"]
    assert not request.attributes["http.route"].startswith("/")


@pytest.mark.parametrize(("path", "route"), [("/", None), ("/plain/", "plain/")], ids=["root", "plain"])
def test_the_roots_empty_pattern_gives_no_http_route_as_opentelemetrys_django_instrumentation(
    otel_on, path, route
):
    """The root's path("", view) matches "/" with the pattern "". OpenTelemetry's Django
    instrumentation sets http.route only from a non-empty resolver_match.route (its
    process_view: ``if route:``), so the root's span has none (it is named "GET"): nor
    do hopwatch's series and spans, where http.route="" would be a series of its own
    that joins none of OpenTelemetry's."""
    _served_under_opentelemetrys_instrumentation("tests.otel.root_urls", path)
    request = server_span("opentelemetry.instrumentation.django")
    assert request.attributes.get("http.route") == route
    assert request.name == ("GET" if route is None else f"GET {route}")
    assert summary().attributes.get("http.route") == route
    expected = {"http.request.method": "GET", "http.response.status_code": 200}
    if route is not None:
        expected = {"http.route": route, **expected}
    points = collect()
    assert [p.attributes for p in points["hopwatch.request.hops"]] == [expected]
    per_request = ("hopwatch.request.hops", "hopwatch.request.hop.overhead", "hopwatch.request.hop.duration")
    assert [{p.attributes.get("http.route") for p in points[name]} for name in per_request] == [{route}] * 3


def test_under_opentelemetrys_wsgi_middleware_the_request_span_gets_the_totals(
    otel_on, log_lines, db
):
    app = WsgiMiddleware(WSGIHandler())
    response = app(wsgi_environ("/async/"), lambda status, headers, exc_info=None: None)
    try:
        assert b"".join(response) == b"async"
    finally:
        response.close()  # as a server does: the request closes inside the span
    (line,) = log_lines.parsed()
    assert line["hops"] == 1 and line["new_loops"] == 1  # an async view under WSGI
    request = server_span("opentelemetry.instrumentation.wsgi")
    (crossing,) = crossings()
    assert crossing.name == "async_to_sync tests.testapp.views.async_view"
    assert crossing.parent.span_id == request.context.span_id
    assert crossing.attributes["hopwatch.hop.new_loop"] is True
    assert request.attributes["hopwatch.hops"] == 1
    assert request.attributes["hopwatch.request_id"] == line["request_id"]
    for field in ("hop_ms", "wait_ms", "overhead_ms", "work_ms"):
        assert request.attributes[f"hopwatch.{field}"] == line[field], field
    assert [s.name for s in hopwatch_spans()] == [crossing.name]  # no totals span


@pytest.mark.otel_settings(OTEL_SPANS=True, DETAIL_LIMIT=5)
def test_spans_are_capped_per_request_and_the_count_stays_exact(otel_on, log_lines):
    asgi_traced("/hops/20/")
    (line,) = log_lines.parsed()
    assert line["hops"] == 35
    assert len(crossings()) == 5
    assert summary().attributes["hopwatch.hops"] == 35
    assert summary().attributes["hopwatch.spans_dropped"] == 30


@pytest.mark.otel_settings(OTEL_SPANS=True, DETAIL_LIMIT=5)
def test_a_span_limit_below_the_thousand_kept_hops_keeps_them_for_the_line(otel_on, log_lines):
    """DETAIL_LIMIT caps the spans, never the hops a record keeps (1000): the line's
    executors and max_in_flight are still worked out from every crossing."""
    with capture() as records:
        asgi_traced("/hops/20/")
    (line,) = log_lines.parsed()
    (record,) = records
    assert len(crossings()) == 5
    assert (line["hops"], len(list(record.hops()))) == (35, 35)
    assert line["executors"] == {"context_thread": 35}
    assert (line["max_in_flight"], line["concurrent_ms"]) == (1, 0.0)


def _remote_parent(sampled: bool) -> object:
    parent = trace.NonRecordingSpan(
        SpanContext(
            trace_id=0x1234,
            span_id=0x5678,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
        )
    )
    return otel_context.attach(trace.set_span_in_context(parent))


def test_a_propagated_parent_sampled_or_not(otel_on):
    token = _remote_parent(sampled=True)
    try:
        asgi_request("/hops/2/")
    finally:
        otel_context.detach(token)
    spans = hopwatch_spans()
    assert len(spans) == 17 + 1
    assert {s.context.trace_id for s in spans} == {0x1234}
    assert summary().parent.span_id == 0x5678  # the parent is not ours to annotate

    EXPORTER.clear()
    token = _remote_parent(sampled=False)
    try:
        asgi_request("/hops/2/")
    finally:
        otel_context.detach(token)
    assert hopwatch_spans() == []


def test_no_span_without_a_request_span(otel_on, log_lines):
    asgi_request("/hops/2/")
    assert len(log_lines.parsed()) == 1
    assert EXPORTER.get_finished_spans() == ()


@pytest.mark.otel_settings(OTEL_METRICS=True, OTEL_SPANS=False)
def test_no_span_when_the_setting_is_off(otel_on):
    asgi_traced("/hops/2/")
    assert server_span("opentelemetry.instrumentation.asgi") is not None
    assert hopwatch_spans() == []


class _Broken:
    def record(self, *args, **kwargs):
        raise RuntimeError("a broken exporter pipeline")


@pytest.mark.internal_errors
def test_a_failing_metrics_pipeline_fails_no_request_and_stops_no_span(otel_on, log_lines):
    from hopwatch import _errors, otel

    before = _errors.total()
    sink = otel._sink
    original, sink.metrics.hops = sink.metrics.hops, _Broken()
    try:
        result = asyncio.run(asgi_call(AsgiMiddleware(ASGIHandler()), "/hops/2/"))
    finally:
        sink.metrics.hops = original
    assert result.status == 200 and result.body == b"2"
    assert _errors.total() == before + 1
    (line,) = log_lines.parsed()
    assert len(crossings()) == line["hops"] == 17  # the spans were still made


def half_up_ms(ns: int) -> float:
    """Milliseconds to the microsecond, half a microsecond rounded up: the line's rule."""
    return ((ns + 500) // 1000) / 1000


def test_a_spans_milliseconds_are_rounded_as_the_lines_are():
    """4,043,500 ns is 4.044 ms on the line; round(4.0435, 3) says 4.043 (the float is
    4.04349999...), which is what the request's totals span once said next to it."""
    from hopwatch import _emit, otel

    for ns in (4_043_500, 1_500, 2_500, 999_999_500, 0, 123_456_789):
        assert otel._ms(ns) == half_up_ms(ns) == _emit._ms(ns)
    assert otel._ms(4_043_500) == 4.044
