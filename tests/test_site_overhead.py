"""A site's ``overhead_ms`` on the line: its crossings' queue wait plus hand-off back
(docs/log-schema.md, ``sites[].overhead_ms``), not their wait alone."""

from __future__ import annotations

import pytest
from django.test import override_settings

from hopwatch import _hotpath
from tests.helpers import asgi_request, capture, wsgi_request

# Django closes old database connections as a request starts and ends (a WSGI
# request, or a sync receiver on the test's own thread): with the test database set up
# by another test, that is database access.
pytestmark = pytest.mark.django_db

HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]


def rounded_ms(ns: int) -> float:
    return ((ns + 500) // 1000) / 1000


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_a_sites_overhead_is_its_crossings_wait_and_resume(interface, log_lines):
    settings = {"OUTPUT": "logging", "DETAIL": True, "DETAIL_LIMIT": 100}
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY, HOPWATCH=settings), capture() as records:
        if interface == "asgi":
            assert asgi_request("/hops/5/").status == 200
        else:
            assert wsgi_request("/hops/5/")[0] == "200 OK"
    (record,) = records
    (line,) = log_lines.parsed()
    assert line["hops"] == len(record.hops()) == len(line["detail"])
    sites = {(site["kind"], site["site"], site["direction"]): site for site in line["sites"]}
    assert len(sites) == len(line["sites"])
    assert ("other", "tests.testapp.views._noop", "sync_to_async") in sites
    for (kind, name, direction), site in sites.items():
        hops = [h for h in record.hops() if (h.cause.kind, h.cause.site) == (kind, name)]
        hops = [h for h in hops if h.direction == direction]
        assert site["count"] == len(hops)
        # From the kept hops, exactly (ns, rounded once, as the line rounds).
        wait_and_resume = sum(h.wait_ns + h.resume_ns for h in hops)
        assert site["overhead_ms"] == rounded_ms(wait_and_resume), _hotpath.IMPLEMENTATION
        # From the line's own detail: each entry rounded on its own, so within that.
        entries = [
            d for d in line["detail"]
            if (d["kind"], d["site"], d["direction"]) == (kind, name, direction)
        ]  # fmt: skip
        assert len(entries) == len(hops)
        from_detail = sum(d["wait_ms"] + d["resume_ms"] for d in entries)
        assert abs(site["overhead_ms"] - from_detail) <= 0.001 * (2 * len(entries) + 1)
    noop = sites[("other", "tests.testapp.views._noop", "sync_to_async")]
    assert noop["count"] == 5
