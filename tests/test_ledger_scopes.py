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

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.test import AsyncClient, Client, override_settings

from hopwatch import _hotpath
from hopwatch._recorder import RequestRecord
from hopwatch.testing import count_hops
from tests.helpers import asgi_call, asgi_request, capture
from tests.testapp.views import INNER_NAP

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


def test_hops_of_no_scope_nest_in_the_unscoped_ledger_as_in_a_request():
    """Outside any request or block (a management command, a worker): hops go to the
    unscoped ledger, where a nested crossing's time is in its holder's inner time
    once too, so its overhead and work add up to the outermost crossing's wall."""
    from hopwatch._recorder import unscoped

    async def innermost() -> None:
        pass

    def middle() -> None:
        async_to_sync(innermost)()

    async def outer() -> None:
        await sync_to_async(middle)()

    kept, limit = len(unscoped.hops()), unscoped.detail_limit
    unscoped.detail_limit = kept + 3
    try:
        before = (unscoped.count, unscoped.overhead_ns, unscoped.work_ns)
        async_to_sync(outer)()
        after = (unscoped.count, unscoped.overhead_ns, unscoped.work_ns)
        hops = unscoped.hops()[kept:]
    finally:
        unscoped.detail_limit = limit
    assert after[0] - before[0] == 3
    top, held, inner = sorted(hops, key=lambda hop: hop.depth)
    assert (top.depth, held.parent, inner.parent) == (1, top, held)
    assert (after[1] - before[1]) + (after[2] - before[2]) == top.wall_ns
    assert held.inner_ns == inner.overhead_ns + bounded_inner(inner)
    assert top.inner_ns == held.overhead_ns + bounded_inner(held)


# --- a request served inside another request's crossing ------------------------------
#
# A view that serves another request inside itself (the test Client or AsyncClient
# called from the view): the inner request's crossing is made in the outer view's
# crossing's run, in the inner request's scope, and is accounted in the inner record
# and in the outer one (which encloses it). In the inner record it is outermost (its
# holder is in no ledger of the inner request); in the outer record, and in a block
# around both, it is nested in the view's crossing: its time is in the view's run
# already, its overhead goes into the view's inner time once.

HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]
DETAIL = {"OUTPUT": "logging", "DETAIL": True}

#: The outer request, by how it is served: its body.
OUTER = {
    # Django's ASGIHandler: a sync view (in a worker thread) -> Client -> async view
    "asgi": lambda: asgi_request("/serving/").body,
    # the AsyncClient: the same, through the test client's own ASGI handler
    "async-client": lambda: asyncio.run(AsyncClient().get("/serving/")).content,
    # the test Client: an async view (in an async_to_sync) -> AsyncClient -> sync view
    "client": lambda: Client().get("/async-serving/").content,
}


def line_ms(ns: int) -> float:
    """Nanoseconds in milliseconds as the line writes them (to the microsecond)."""
    return ((ns + 500) // 1000) / 1000


def outermost_wall_ms(line: dict) -> float:
    """The line's outermost crossings' summed wall time, from its detail."""
    return sum(
        entry["wait_ms"] + entry["run_ms"] + entry["resume_ms"]
        for entry in line["detail"]
        if entry["parent"] is None
    )


@pytest.mark.parametrize("outer", sorted(OUTER))
def test_a_request_served_inside_a_views_crossing_is_nested_in_the_outer_request(outer, log_lines):
    with (
        override_settings(MIDDLEWARE=HOPWATCH_ONLY, HOPWATCH=DETAIL),
        capture() as records,
    ):
        body = OUTER[outer]()
    assert body == (b"served napped" if outer == "client" else b"served slept")
    (outer_record,) = [record for record in records if record.parent is None]
    (inner_record,) = [record for record in records if record.parent is not None]
    assert inner_record.parent is outer_record
    # The inner view's crossing: in both records, held by the outer view's crossing,
    # which is the outer record's only.
    (crossing,) = [hop for hop in inner_record.hops() if hop.cause.kind == "view"]
    holder = crossing.parent
    assert holder.cause.kind == "view" and holder.depth == 1
    assert crossing in outer_record.hops() and holder in outer_record.hops()
    assert holder not in inner_record.hops()
    assert crossing.run_ns >= INNER_NAP * 1e9
    # The crossing's time is in its holder's once: its overhead in the holder's inner
    # time, its run not again in the outer request's work.
    check_exact(outer_record)
    check_exact(inner_record)
    assert holder.inner_ns >= crossing.overhead_ns > 0
    # The lines say the same: overhead_ms + work_ms is each request's outermost
    # crossings' wall time; in the inner line the crossing is outermost.
    lines = {line["route"]: line for line in log_lines.parsed()}
    outer_line = lines["/async-serving/" if outer == "client" else "/serving/"]
    inner_line = lines["/napping/" if outer == "client" else "/sleepy/"]
    for line, record in ((outer_line, outer_record), (inner_line, inner_record)):
        assert line["request_id"] == record.request_id
        assert line["work_ms"] == line_ms(record.work_ns)
        assert line["overhead_ms"] + line["work_ms"] == pytest.approx(
            outermost_wall_ms(line), abs=0.01
        )
    # (hop_ms has the nested crossing's wall, overhead_ms + work_ms not)
    nested_ms = crossing.wall_ns / 1e6
    assert (
        outer_line["overhead_ms"] + outer_line["work_ms"] <= outer_line["hop_ms"] - nested_ms + 0.01
    )
    assert [e["parent"] is None for e in inner_line["detail"] if e["kind"] == "view"] == [True]


def test_a_block_around_a_request_served_inside_another_counts_the_inner_crossing_once():
    """The same with a count_hops() block around the outer request: the block has the
    inner crossing nested in the outer view's crossing, as the outer record has."""
    with (
        override_settings(MIDDLEWARE=HOPWATCH_ONLY),
        count_hops() as block,
        capture() as records,
    ):
        assert asgi_request("/serving/").body == b"served slept"
    assert len(records) == 2
    check_exact(block.ledger)
    for record in records:
        check_exact(record)


def test_a_callers_crossing_holds_the_requests_crossings_in_the_enclosing_block():
    """A request served inside a caller's async_to_sync, in a count_hops() block: in the
    block (which has the caller's crossing) the view's crossing is nested in the
    caller's; in the request it is outermost."""
    with override_settings(MIDDLEWARE=[]), count_hops() as block, capture() as records:
        result = async_to_sync(asgi_call)(ASGIHandler(), "/sync/")
    assert result.status == 200 and result.body == b"sync"
    (record,) = records
    (view,) = [hop for hop in record.hops() if hop.cause.kind == "view"]
    assert view.parent in block.ledger.hops() and view in block.ledger.hops()
    check_exact(block.ledger)
    check_exact(record)
