"""A request's crossings laid out: lanes per thread, bars from call to resume, rows."""

from __future__ import annotations

import pytest

from hopwatch.report.picture import Kept, Picture
from hopwatch.report.timeline import Timeline, layout
from tests.report.detail_samples import (
    LOOP,
    NEW_LOOP,
    POOL_1,
    POOL_2,
    SYNC,
    WORKER,
    crossing,
    detailed_line,
    gathered_detail,
    nested_wsgi_detail,
)
from tests.report.test_picture import ITEM_KEY, scan


def kept(detail: list[dict], **fields) -> Kept:
    picture = scan([detailed_line(detail, **fields)], Picture(request_id="0000000000000000"))
    assert picture.chosen is not None
    return picture.chosen


def by_site(chart: Timeline) -> dict:
    return {bar.crossing.site: bar for bar in chart.bars}


def test_nested_crossings_across_two_threads_under_wsgi():
    chart = layout(kept(nested_wsgi_detail(), interface="wsgi"))
    assert [(lane.thread, lane.name) for lane in chart.lanes] == [
        (WORKER, "request thread"),
        (NEW_LOOP, "new event loop"),
    ]
    bars = by_site(chart)
    view, middle, deepest, noop = (bars[s] for s in ("app.views.nested", "app.middle",
                                                     "app.deepest", "app.noop"))  # fmt: skip
    # each on the lane of the thread that ran it, called from its caller's lane
    assert (view.lane, view.caller_lane) == (1, 0)
    assert (middle.lane, middle.caller_lane) == (0, 1)
    assert (deepest.lane, deepest.caller_lane) == (1, 0)
    assert (noop.lane, noop.caller_lane) == (0, 1)
    # on one thread, a crossing nested in another is drawn below it
    assert (view.row, deepest.row) == (0, 1) and (middle.row, noop.row) == (0, 1)
    assert [lane.rows for lane in chart.lanes] == [2, 2]
    # from call to resume, with the parts the line gives
    assert (view.call, view.start, view.end, view.resume) == pytest.approx((0.4, 1.0, 2.5, 2.7))
    assert (view.wait, view.run, view.handoff) == pytest.approx((0.6, 1.5, 0.2))
    assert middle.call >= view.start and middle.resume <= view.end
    assert chart.span_ms == pytest.approx(3.2)  # the line's duration_ms


def test_gathered_calls_queue_one_behind_another_on_the_sync_thread():
    chart = layout(kept(gathered_detail()))
    assert [lane.name for lane in chart.lanes] == [
        "event loop", "sync thread", "pool thread 1", "pool thread 2",
    ]  # fmt: skip
    assert [lane.thread for lane in chart.lanes] == [LOOP, SYNC, POOL_1, POOL_2]
    queued = [bar for bar in chart.bars if bar.crossing.site == "QuerySet.aget"]
    # all called at 1.0; each runs when the one before has finished: a staircase of rows
    assert [bar.row for bar in queued] == [0, 1, 2]
    assert [round(bar.start, 3) for bar in queued] == [1.05, 2.05, 3.05]
    assert all(bar.caller_lane == 0 and bar.lane == 1 for bar in queued)
    pooled = [bar for bar in chart.bars if bar.crossing.site == "app.fetch"]
    assert [(bar.lane, bar.row) for bar in pooled] == [(2, 0), (3, 0)]  # side by side


def test_a_row_is_reused_once_the_crossing_before_has_resumed():
    detail = [
        crossing("a", 0.0, 0.1, 1.0, 0.1),
        crossing("b", 1.2, 0.1, 1.0, 0.1),  # after a's resume (1.2): a's row
        crossing("c", 1.5, 0.1, 0.2, 0.1),  # while b runs: below it
    ]
    bars = by_site(layout(kept(detail)))
    assert (bars["a"].row, bars["b"].row, bars["c"].row) == (0, 0, 1)


def test_a_nested_crossing_is_clamped_into_its_parents_run():
    """Each figure is rounded on its own: a child can appear to start a microsecond early."""
    detail = [
        crossing("child", 0.999, 0.0, 0.5, 0.002, thread=LOOP, caller=SYNC, parent=1, depth=2,
                 direction="async_to_sync"),
        crossing("parent", 0.9, 0.1, 0.5, 0.1),
    ]  # fmt: skip
    bars = by_site(layout(kept(detail)))
    parent, child = bars["parent"], bars["child"]
    assert parent.start == pytest.approx(1.0) and parent.end == pytest.approx(1.5)
    assert child.call == pytest.approx(1.0) and child.resume <= parent.end


def test_crossings_that_never_ran_and_notes_on_what_is_left_out():
    detail = [
        crossing("ran", 0.0, 0.1, 1.0, 0.1),
        crossing("cancelled", 0.5, 2.0, 0.0, 0.0, thread=0, outcome="cancelled"),
    ]
    chart = layout(kept(detail, detail_dropped=7))
    assert [lane.name for lane in chart.lanes] == ["event loop", "sync thread", "never ran"]
    assert chart.notes == [
        "7 more crossings were not listed in the line (DETAIL_LIMIT); its counts include them"
    ]


def test_the_endpoint_timeline_says_when_only_the_first_crossings_are_drawn():
    detail = [crossing(f"c{i}", float(i), 0.1, 0.5, 0.1) for i in range(250)]
    picture = scan([detailed_line(detail)])
    chart = layout(picture.endpoints[ITEM_KEY].timeline)
    assert len(chart.bars) == 200
    assert chart.notes == ["the first 200 of the 250 crossings in the line's detail are drawn"]


def test_a_nested_crossing_is_never_drawn_above_its_ancestor_on_one_thread():
    """Row 0 of the sync thread is free again when the inner crossing is called, but the
    crossing it is nested in (through the event loop) holds row 1: it goes below that."""
    detail = [
        crossing("early", 0.0, 0.0, 0.5, 0.0),
        crossing("inner", 1.0, 0.0, 0.2, 0.0, caller=LOOP, parent=2, depth=3),
        crossing("back", 0.8, 0.0, 0.6, 0.0, thread=LOOP, caller=SYNC, parent=3, depth=2,
                 direction="async_to_sync"),
        crossing("outer", 0.2, 0.1, 1.5, 0.1),
    ]  # fmt: skip
    bars = by_site(layout(kept(detail)))
    assert (bars["early"].row, bars["outer"].row) == (0, 1)
    assert bars["inner"].row == 2
