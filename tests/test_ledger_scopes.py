"""A request's ``work_ms`` when ledgers enclose it: a test's ``count_hops()`` block,
or a caller's ``async_to_sync`` whose code serves the request.

Each hop is accounted into its own ledger and every enclosing one; a crossing's
holder may be in another ledger (the caller's crossing above the request), and a
nested crossing's time goes into its holder once, in its own ledger. Checked on
the kept hops, exactly: ``overhead_ms + work_ms`` is the outermost crossings'
summed wall time (docs/log-schema.md), and each crossing's inner time is its
children's overhead and inner time, once.
"""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIHandler
from django.test import override_settings

from hopwatch import _hotpath
from hopwatch._recorder import RequestRecord
from hopwatch.testing import count_hops
from tests.helpers import asgi_call, asgi_request, capture

# Django closes old database connections as a request starts and ends (a WSGI
# request, or a sync receiver on the test's own thread): with the test database set up
# by another test, that is database access.
pytestmark = pytest.mark.django_db


def bounded_inner(hop) -> int:
    """What a crossing's code left out of its holder's work (Hop.work_ns's bound)."""
    return min(hop.inner_ns, max(0, hop.run_ns - hop.inner_work_ns))


def check_exact(record: RequestRecord) -> None:
    hops = record.hops()
    assert record.detail_dropped == 0
    kept = {id(hop) for hop in hops}
    outermost = [hop for hop in hops if id(hop.parent) not in kept]
    assert record.overhead_ns + record.work_ns == sum(hop.wall_ns for hop in outermost)
    assert record.work_ns == sum(hop.work_ns for hop in outermost)
    for hop in hops:
        children = [child for child in hops if child.parent is hop]
        assert hop.inner_ns == sum(c.overhead_ns + bounded_inner(c) for c in children), hop


def test_the_requests_crossings_under_a_callers_crossing_are_outermost_in_the_request():
    """The request served inside a caller's async_to_sync (in a count_hops() block): the
    view's crossing is held by the caller's, which is in another ledger. In the request
    it is outermost: its run is the request's work."""
    with override_settings(MIDDLEWARE=[]), count_hops() as block, capture() as records:
        result = async_to_sync(asgi_call)(ASGIHandler(), "/sync/")
    assert result.status == 200 and result.body == b"sync"
    (record,) = records
    assert record.parent is block.ledger
    (view,) = [hop for hop in record.hops() if hop.cause.kind == "view"]
    assert view.parent is not None and view.parent.cause.kind != "view"
    assert view.parent not in record.hops()
    assert record.work_ns >= view.run_ns > 0
    check_exact(record)


def test_a_nested_crossing_counts_once_in_its_holder_with_an_enclosing_ledger():
    """async view -> sync_to_async -> async_to_sync -> sync_to_async, in a count_hops()
    block: the innermost crossing's time is in its holder's inner time once, not once
    per ledger it is accounted in; the outermost's work is its run less that, once."""
    with override_settings(MIDDLEWARE=[]), count_hops() as block, capture() as records:
        assert asgi_request("/nested/").status == 200
    (record,) = records
    assert record.parent is block.ledger
    depths = sorted(hop.depth for hop in record.hops() if hop.cause.kind != "signal")
    assert depths[-3:] == [1, 2, 3], _hotpath.IMPLEMENTATION
    check_exact(record)


def test_the_same_nesting_with_no_enclosing_ledger_is_exact_too():
    with override_settings(MIDDLEWARE=[]), capture() as records:
        assert asgi_request("/nested/").status == 200
    (record,) = records
    assert record.parent is None
    check_exact(record)
