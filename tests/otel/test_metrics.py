"""OTEL_METRICS: what the SDK's reader gets equals what the request lines say.

Requests go through Django's real ASGI handler (and WSGI handler) with
startproject's middleware; the lines are the ones hopwatch logged for the same
requests, so every number is checked against an independent account of it.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from hopwatch import otel
from hopwatch.otel import OTHER, SITE_LIMIT, _Sites
from tests.helpers import asgi_request, capture, wsgi_request
from tests.otel.conftest import collect

ROUTES = ["/async/", "/async/", "/sync/", "/hops/3/", "/nested/", "/nope/", "/error/"]


def _key(line_or_attributes: dict) -> tuple:
    """(route, method, status) as both sides spell it; no route for unmatched paths."""
    if "http.request.method" in line_or_attributes:
        a = line_or_attributes
        return (a.get("http.route"), a["http.request.method"], a.get("http.response.status_code"))
    line = line_or_attributes
    # http.route is Django's own pattern: the line's route without its leading "/"
    return (line["route"][1:] if line["view"] else None, line["method"], line["status"])


@pytest.mark.otel_settings(OTEL_METRICS=True, SITES_LIMIT=100)
def test_histograms_and_counter_equal_the_lines_per_route(otel_on, log_lines, db):
    for path in ROUTES:
        asgi_request(path)
    wsgi_request("/sync/")
    lines = log_lines.parsed()
    assert len(lines) == len(ROUTES) + 1
    points = collect()

    expected: dict[tuple, list[int]] = defaultdict(list)
    for line in lines:
        expected[_key(line)].append(line["hops"])
    hops = {_key(p.attributes): p.value for p in points["hopwatch.request.hops"]}
    assert hops.keys() == expected.keys()
    for key, counts in expected.items():
        assert hops[key].count == len(counts), key
        assert hops[key].sum == sum(counts), key
    # The 404 has no http.route (its raw path is never an attribute) but is counted.
    assert (None, "GET", 404) in hops
    assert all(k[0] != "/nope/" for k in hops)

    # The counter by cause: the lines' sites (all of them: SITES_LIMIT 100), summed.
    by_site: dict[tuple, int] = defaultdict(int)
    for line in lines:
        for site in line["sites"]:
            by_site[(*_key(line), site["kind"], site["site"], site["direction"])] += site["count"]
    counted = {
        (
            *_key(p.attributes),
            p.attributes["hopwatch.cause.kind"],
            p.attributes["hopwatch.cause.site"],
            p.attributes["hopwatch.direction"],
        ): p.value.value
        for p in points["hopwatch.hops"]
    }
    assert counted == dict(by_site)
    assert sum(counted.values()) == sum(line["hops"] for line in lines)


@pytest.mark.otel_settings(OTEL_METRICS=True)
def test_overhead_and_work_are_the_crossings_own_times(otel_on):
    """Overhead is wait + hand-off back of every crossing; work is what ran in the
    outermost crossings less the nested crossings' overhead (each counted once)."""
    with capture() as records:
        asgi_request("/nested/")  # crossings at depths 1, 2 and 3
        asgi_request("/hops/3/")
    points = collect()
    overhead = {
        p.attributes["http.route"]: p.value for p in points["hopwatch.request.hop.overhead"]
    }
    work = {p.attributes["http.route"]: p.value for p in points["hopwatch.request.hop.duration"]}
    pinned = {p.attributes["http.route"]: p.value for p in points["hopwatch.request.pinned"]}
    for record in records:
        hops = record.hops()
        assert len(hops) == record.count
        own = sum(h.wait_ns + h.resume_ns for h in hops)
        outer = [h for h in hops if h.depth == 1]
        nested_overhead = sum(h.wait_ns + h.resume_ns for h in hops if h.depth > 1)
        ran = sum(h.run_ns for h in outer) - nested_overhead
        route = record.route[1:]  # as Django writes it
        assert overhead[route].count == 1
        assert overhead[route].sum == pytest.approx(own / 1e9, rel=1e-12, abs=1e-15)
        assert work[route].sum == pytest.approx(ran / 1e9, rel=1e-12, abs=1e-15)
        # Together they are the outermost crossings' wall time: nothing counted twice.
        outer_wall = sum(h.wall_ns for h in outer)
        assert (overhead[route].sum + work[route].sum) * 1e9 == pytest.approx(outer_wall, abs=2)
        assert pinned[route].sum == pytest.approx(record.pinned_ns / 1e9, abs=1e-15)
    nested = next(r for r in records if r.route == "/nested/")
    assert nested.max_depth == 3 and nested.pinned_ns > 0
    # Nested crossings' wall time is inside their parent's: hop_ms counts it twice,
    # overhead + work does not.
    assert nested.wall_ns > overhead["nested/"].sum * 1e9 + work["nested/"].sum * 1e9


@pytest.mark.otel_settings(OTEL_METRICS=False, OTEL_SPANS=False)
def test_nothing_is_recorded_when_the_settings_are_off(otel_on, log_lines):
    asgi_request("/hops/3/")
    assert len(log_lines.parsed()) == 1  # the request happened and was logged
    assert collect() == {}


@pytest.mark.otel_settings(OTEL_METRICS=True)
def test_methods_outside_the_standard_ones_are_one_value(otel_on):
    asgi_request("/async/", method="BREW")
    asgi_request("/async/", method="get")
    (brew, get) = sorted(
        (p.attributes["http.request.method"] for p in collect()["hopwatch.request.hops"]),
        reverse=True,
    )
    assert (brew, get) == (OTHER, "GET")


def test_sites_past_the_limit_fold_into_one_value():
    sites = _Sites(3)
    names = [sites.name("other", f"app.f{i}") for i in range(5)]
    assert names == ["app.f0", "app.f1", "app.f2", OTHER, OTHER]
    assert sites.name("other", "app.f1") == "app.f1"  # admitted ones stay named
    assert sites.name("orm", "app.f0") == OTHER  # a pair is (kind, site)
    assert SITE_LIMIT == 200  # documented in docs/opentelemetry.md


def test_install_is_idempotent_and_uninstall_removes_everything():
    from hopwatch import _recorder, middleware

    otel.install()
    otel.install()
    try:
        assert middleware.begin_hooks.count(otel._capture) == 1
        assert _recorder._sinks.count(otel._sink) == 1
        assert otel.is_installed()
    finally:
        otel.uninstall()
    assert otel._capture not in middleware.begin_hooks
    assert otel._sink not in _recorder._sinks
    assert not otel.is_installed()
