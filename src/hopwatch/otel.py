"""hopwatch in OpenTelemetry: per-request hop metrics, and a span per crossing.

Imported only when ``HOPWATCH["OTEL_METRICS"]`` or ``["OTEL_SPANS"]`` is on at
start-up (``hopwatch.apps.activate``); otherwise nothing of OpenTelemetry is
imported and no request pays for it. Needs only ``opentelemetry-api`` (the
``hopwatch[otel]`` extra): the project brings the SDK, its exporters and the
global providers, and hopwatch uses whatever is configured, through the API.

Both parts run once per request, in the request sink, from what the recorder
already holds; nothing here is on the hop path. See docs/opentelemetry.md.

* **Metrics**: four histograms and an (observable) counter through the global
  ``MeterProvider`` (meter ``hopwatch``), with the HTTP attributes of
  OpenTelemetry's semantic conventions. Cardinality is bounded: the route is
  the URL pattern (never the raw path; absent when none matched), the method is
  one of the standard ones or ``_OTHER``, and cause sites past
  :data:`SITE_LIMIT` distinct ones per process become ``_OTHER``.
* **Spans**: the middleware notes the span current when a request enters it
  (:func:`_capture`); when the request closes, each kept crossing becomes a
  child span with its real times, and the request's span gets the totals (or a
  ``hopwatch.request`` span does, when the request's span has already ended).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Final

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.version import __version__ as _api_version

from hopwatch import _errors

# A span's milliseconds are rounded as the line's are (half a microsecond up), so
# the two never disagree in the last digit.
from hopwatch._emit import _ms
from hopwatch._recorder import ERROR, OK, Hop, RequestRecord, add_sink, remove_sink
from hopwatch.conf import hopwatch_settings
from hopwatch.middleware import keep_hops

__all__ = ["SITE_LIMIT", "install", "is_installed", "uninstall"]

# 1.30 added the histograms' bucket advice; an older API would fail at start-up
# with a TypeError instead of saying what to upgrade.
if tuple(int(part) for part in re.findall(r"\d+", _api_version)[:2]) < (1, 30):
    raise ImportError(f"hopwatch.otel needs opentelemetry-api 1.30 or newer, not {_api_version}")

#: Distinct cause sites the ``hopwatch.hops`` counter names, per process; the
#: rest are counted under ``_OTHER`` (Django's own causes are a few dozen).
SITE_LIMIT: Final = 200
#: What a folded site, or a method outside the standard ones, is called.
OTHER: Final = "_OTHER"

# The HTTP methods of the semantic conventions; anything else is "_OTHER", so a
# client sending made-up methods cannot grow the number of series.
_METHODS: Final = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE", "QUERY"}
)

# Bucket boundaries advised to the SDK (a View configured by the project wins).
# Crossings per request: a default Django stack makes 15.
_HOPS_BUCKETS: Final = (0, 1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 75, 100, 200, 500, 1000)
# Seconds: one crossing's overhead is tens to hundreds of microseconds.
_SECONDS_BUCKETS: Final = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

_SPAN_KEY: Final = "otel_span"
# "path/to/file.py:42 in func" (hopwatch._causes.call_site)
_CALL_SITE = re.compile(r"(?P<path>.+):(?P<line>\d+) in (?P<function>.+)")


def _django_route(record: RequestRecord) -> str | None:
    """The matched URL pattern as Django writes it (``items/<int:pk>/``, a regex
    pattern as written), which is what OpenTelemetry's Django instrumentation
    puts in ``http.route``: hopwatch's series join with its ``http.server``
    ones. None when no pattern matched (never the raw path), or the pattern is
    empty (the root's ``path("", ...)``: the instrumentation sets none either)."""
    if record.route is None:
        return None
    match = getattr(record.request, "resolver_match", None)
    route = getattr(match, "route", None)
    return route if isinstance(route, str) and route else None


def http_attributes(record: RequestRecord) -> dict[str, Any]:
    """``http.route``, ``http.request.method``, ``http.response.status_code``: bounded."""
    attributes: dict[str, Any] = {}
    route = _django_route(record)
    if route is not None:
        attributes["http.route"] = route
    method = (record.method or "").upper()
    attributes["http.request.method"] = method if method in _METHODS else OTHER
    if record.status is not None:
        attributes["http.response.status_code"] = record.status
    return attributes


class _Sites:
    """The first :data:`SITE_LIMIT` distinct (kind, site) pairs, then ``_OTHER``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def name(self, kind: str, site: str) -> str:
        named = self._seen.get((kind, site))
        if named is not None:
            return named
        with self._lock:
            if len(self._seen) < self._limit:
                return self._seen.setdefault((kind, site), site)
        return OTHER


# --- metrics ---------------------------------------------------------------------------


# (http.route, http.request.method, http.response.status_code, kind, site, direction)
_CauseKey = tuple[str | None, str, int | None, str, str, str]


class _Metrics:
    """The instruments, made once through the global MeterProvider.

    Made before the project sets its provider, they are the API's proxies and
    start recording once it does (OpenTelemetry's own rule for libraries).

    The counter by cause is an *observable* counter: a request adds its causes'
    counts to running totals here (a dict update each), and the SDK reads the
    totals when it collects. One SDK call per cause per request (about 15 for a
    default stack) cost more than all four histograms together.
    """

    def __init__(self, version: str) -> None:
        meter = metrics.get_meter("hopwatch", version)
        self.hops = meter.create_histogram(
            "hopwatch.request.hops",
            unit="{hop}",
            description="Sync/async crossings (asgiref hops) per request.",
            explicit_bucket_boundaries_advisory=_HOPS_BUCKETS,
        )
        self.overhead = meter.create_histogram(
            "hopwatch.request.hop.overhead",
            unit="s",
            description="Crossing overhead per request: time queued before the code started"
            " on the other side, plus the hand-off back to the caller.",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )
        self.duration = meter.create_histogram(
            "hopwatch.request.hop.duration",
            unit="s",
            description="Time per request in code reached through crossings (their work,"
            " nested crossings counted once).",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )
        self.pinned = meter.create_histogram(
            "hopwatch.request.pinned",
            unit="s",
            description="Time per request a sync worker thread was held while async work ran.",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )
        self.sites = _Sites(SITE_LIMIT)
        self._by_cause: dict[_CauseKey, int] = {}
        self._by_cause_lock = threading.Lock()
        self.by_cause = meter.create_observable_counter(
            "hopwatch.hops",
            callbacks=[self._observe_by_cause],
            unit="{hop}",
            description="Sync/async crossings by cause.",
        )

    def record(self, record: RequestRecord) -> None:
        attributes = http_attributes(record)
        overhead_ns, work_ns = record.overhead_ns, record.work_ns
        self.hops.record(record.count, attributes)
        self.overhead.record(overhead_ns / 1e9, attributes)
        self.duration.record(work_ns / 1e9, attributes)
        self.pinned.record(record.pinned_ns / 1e9, attributes)
        route = attributes.get("http.route")
        method = attributes["http.request.method"]
        status = attributes.get("http.response.status_code")
        counts = [
            (
                (
                    route,
                    method,
                    status,
                    cause.kind,
                    self.sites.name(cause.kind, cause.site),
                    stats.direction,
                ),
                stats.count,
            )
            for cause, stats in record.top_causes()
        ]
        totals = self._by_cause
        with self._by_cause_lock:  # requests close on several threads at once (WSGI)
            for key, count in counts:
                totals[key] = totals.get(key, 0) + count

    def _observe_by_cause(self, options: metrics.CallbackOptions) -> Iterator[metrics.Observation]:
        with self._by_cause_lock:
            totals = list(self._by_cause.items())
        for (route, method, status, kind, site, direction), count in totals:
            attributes: dict[str, Any] = {"http.request.method": method}
            if route is not None:
                attributes["http.route"] = route
            if status is not None:
                attributes["http.response.status_code"] = status
            attributes["hopwatch.cause.kind"] = kind
            attributes["hopwatch.cause.site"] = site
            attributes["hopwatch.direction"] = direction
            yield metrics.Observation(count, attributes)


# --- spans -----------------------------------------------------------------------------


def _capture(record: RequestRecord) -> None:
    """As the request enters the middleware: note the request's span, keep its hops.

    The span current *now* is the request's (OpenTelemetry's ASGI/WSGI middleware,
    or its Django middleware above hopwatch's); by the time the request closes it
    may have ended or another context may be current. With it, the offset that
    turns this request's ``perf_counter_ns`` readings into the epoch nanoseconds
    OpenTelemetry wants.
    """
    settings = hopwatch_settings.merged()
    if not settings["OTEL_SPANS"]:
        return
    span = trace.get_current_span()
    context = span.get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return  # no request span, or one not sampled: its children would be dropped
    record.notes()[_SPAN_KEY] = (span, time.time_ns() - time.perf_counter_ns())
    # The hops are kept as objects up to the limit, whether or not DETAIL is on.
    keep_hops(record, settings["DETAIL_LIMIT"])


def _hop_attributes(hop: Hop) -> dict[str, Any]:
    # Each attribute costs the SDK a few microseconds per span: only what the span's
    # name, times and place in the tree do not already say, and the rare flags only
    # when set (hand-off back = the span's duration - wait - run; depth = the tree).
    cause = hop.cause
    attributes: dict[str, Any] = {
        "hopwatch.direction": hop.direction,
        "hopwatch.cause.kind": cause.kind,
        "hopwatch.cause.site": cause.site,
        "hopwatch.hop.wait_ms": _ms(hop.wait_ns),
        "hopwatch.hop.run_ms": _ms(hop.run_ns),
    }
    if hop.thread_id:
        attributes["thread.id"] = hop.thread_id
    if hop.new_loop:
        attributes["hopwatch.hop.new_loop"] = True
    if hop.outcome != OK:
        attributes["hopwatch.hop.outcome"] = hop.outcome
    if cause.call_site:
        match = _CALL_SITE.fullmatch(cause.call_site)
        if match is not None:
            # Semantic conventions 1.30 and later (code.filepath, code.lineno and
            # code.function before, now deprecated).
            attributes["code.file.path"] = match["path"]
            attributes["code.line.number"] = int(match["line"])
            attributes["code.function.name"] = match["function"]
    return attributes


def totals(record: RequestRecord, spans_dropped: int) -> dict[str, Any]:
    """The request's totals, as attributes (the log line's fields, ``hopwatch.`` first)."""
    overhead_ns, work_ns = record.overhead_ns, record.work_ns
    attributes: dict[str, Any] = {
        "hopwatch.request_id": record.request_id or "",
        "hopwatch.hops": record.count,
        "hopwatch.sync_to_async": record.sync_to_async,
        "hopwatch.async_to_sync": record.async_to_sync,
        "hopwatch.hop_ms": _ms(record.wall_ns),
        "hopwatch.overhead_ms": _ms(overhead_ns),
        "hopwatch.work_ms": _ms(work_ns),
        "hopwatch.wait_ms": _ms(record.wait_ns),
        "hopwatch.pinned_ms": _ms(record.pinned_ns),
        "hopwatch.threads": record.thread_count,
        "hopwatch.new_loops": record.new_loops,
        "hopwatch.max_depth": record.max_depth,
        "hopwatch.spans_dropped": spans_dropped,
    }
    pinning = record.top_pinning_cause()
    if pinning is not None:
        attributes["hopwatch.pinned_by"] = pinning.site
    return attributes


class _Spans:
    def __init__(self, version: str) -> None:
        self.tracer = trace.get_tracer("hopwatch", version)

    def emit(self, record: RequestRecord, limit: int) -> None:
        entry = record.extra.pop(_SPAN_KEY, None) if record.extra else None
        if not isinstance(entry, tuple):
            return
        parent: trace.Span = entry[0]
        offset: int = entry[1]
        request_context = trace.set_span_in_context(parent)
        # The first `limit` crossings to finish; opened in call order so that an
        # enclosing crossing's span exists before the spans nested in it.
        kept = sorted(record.hops()[:limit], key=lambda hop: hop.called_ns)
        made: dict[int, tuple[Hop, trace.Span]] = {}
        for hop in kept:
            context = request_context
            enclosing = hop.parent
            while enclosing is not None:  # the nearest enclosing crossing with a span
                found = made.get(id(enclosing))
                if found is not None and found[0] is enclosing:
                    context = trace.set_span_in_context(found[1])
                    break
                enclosing = enclosing.parent
            span = self.tracer.start_span(
                f"{hop.direction} {hop.cause.site}",
                context=context,
                kind=SpanKind.INTERNAL,
                attributes=_hop_attributes(hop),
                start_time=hop.called_ns + offset,
            )
            if hop.outcome == ERROR:
                span.set_status(Status(StatusCode.ERROR, "the code run across the hop raised"))
            made[id(hop)] = (hop, span)
        for hop, span in made.values():
            span.end(end_time=max(hop.resumed_ns, hop.called_ns) + offset)
        attributes = totals(record, record.count - len(made))
        if parent.is_recording():
            parent.set_attributes(attributes)
        else:
            # The request's span has ended already (OpenTelemetry's Django middleware
            # ends it in process_response, before Django closes the response): the
            # totals go on a span of their own, over the request as hopwatch saw it.
            summary = self.tracer.start_span(
                "hopwatch.request",
                context=request_context,
                kind=SpanKind.INTERNAL,
                attributes={**http_attributes(record), **attributes},
                start_time=record.started_ns + offset,
            )
            summary.end(end_time=(record.ended_ns or record.started_ns) + offset)


# --- the sink ----------------------------------------------------------------------------


class _Sink:
    """The request sink: metrics and spans, each by its setting, each failing alone."""

    def __init__(self) -> None:
        from hopwatch import __version__

        self.metrics = _Metrics(__version__)
        self.spans = _Spans(__version__)

    def __call__(self, record: RequestRecord) -> None:
        settings: Mapping[str, Any] = hopwatch_settings.merged()
        if settings["OTEL_METRICS"]:
            try:
                self.metrics.record(record)
            except Exception as exc:
                _errors.report("OpenTelemetry metrics", exc)
        if settings["OTEL_SPANS"]:
            try:
                self.spans.emit(record, settings["DETAIL_LIMIT"])
            except Exception as exc:
                _errors.report("OpenTelemetry spans", exc)
        elif record.extra:
            record.extra.pop(_SPAN_KEY, None)


_lock = threading.Lock()
_sink: _Sink | None = None


def install() -> None:
    """Register the request sink and the middleware's span capture. Idempotent."""
    global _sink
    from hopwatch import middleware

    with _lock:
        if _sink is None:
            _sink = _Sink()
        add_sink(_sink)
        if _capture not in middleware.begin_hooks:
            middleware.begin_hooks.append(_capture)


def uninstall() -> None:
    from hopwatch import middleware

    with _lock:
        if _sink is not None:
            remove_sink(_sink)
        if _capture in middleware.begin_hooks:
            middleware.begin_hooks.remove(_capture)


def is_installed() -> bool:
    from hopwatch import middleware

    return _capture in middleware.begin_hooks
