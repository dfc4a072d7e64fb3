"""Times of crossings that overlap or nest on one thread: work and pinned time stay
within the request they describe.

Real requests through Django's ``ASGIHandler`` and ``WSGIHandler`` (views in
tests/testapp/views_threads.py). The views sleep known amounts, so each figure
has a floor (a sleep lasts at least its length) and a ceiling (the request's
own duration): bounds that hold on a loaded machine.
"""

from __future__ import annotations

import pytest
from django.test import override_settings

from tests.helpers import asgi_request, capture, wsgi_request
from tests.testapp.views_threads import GATHERED, LATE_CALLS, NAP

HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]
SYNC_ONLY_LAST = [*HOPWATCH_ONLY, "tests.testapp.middleware.SyncOnlyMiddleware"]

pytestmark = pytest.mark.django_db(transaction=True)


def one_line(log_lines):
    (line,) = log_lines.parsed()
    return line


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_gathered_calls_work_is_their_code(log_lines, interface):
    # Five thread-sensitive calls gathered run one after another on one thread, each
    # queued behind the others: under WSGI inside the view's own crossing (a new
    # loop), whose run held them. Each call's wait counts as its own overhead; the
    # work is what ran, never less than the five sleeps, never more than the request.
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY):
        if interface == "asgi":
            assert asgi_request("/threads/gather-sleep/").body == b"slept"
        else:
            assert wsgi_request("/threads/gather-sleep/")[1] == b"slept"
    line = one_line(log_lines)
    assert line["sync_to_async"] == GATHERED + (2 if interface == "asgi" else 0)
    assert GATHERED * NAP * 1000 <= line["work_ms"] <= line["duration_ms"]
    gathered = next(site for site in line["sites"] if site["site"] == "time.sleep")
    assert gathered["count"] == GATHERED
    # the queueing is there, as each crossing's own wait: at least 1 + 2 + 3 + 4 naps
    assert gathered["overhead_ms"] >= 10 * NAP * 1000


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_the_lines_wait_is_its_crossings_queue_wait(log_lines, interface):
    # The same five gathered calls: each queues behind the naps of the ones before it.
    # The line's wait_ms is every crossing's wait summed (Hop.wait_ns, in ns, rounded
    # once as the line rounds), so at least 1 + 2 + 3 + 4 naps.
    settings = {"OUTPUT": "logging", "DETAIL": True}
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY, HOPWATCH=settings), capture() as records:
        if interface == "asgi":
            assert asgi_request("/threads/gather-sleep/").body == b"slept"
        else:
            assert wsgi_request("/threads/gather-sleep/")[1] == b"slept"
    (record,) = records
    line = one_line(log_lines)
    hops = record.hops()
    assert line["hops"] == len(hops) == len(line["detail"])  # every crossing kept
    waited = sum(hop.wait_ns for hop in hops)
    assert line["wait_ms"] == ((waited + 500) // 1000) / 1000
    assert line["wait_ms"] >= 10 * NAP * 1000


def test_a_thread_held_again_is_pinned_once(log_lines):
    # The sync-only middleware's crossing holds its thread while the async view runs;
    # the view's thread-sensitive call runs on that same thread and goes async again.
    # One thread, held once: pinned for the view's time, not that plus the inner hold.
    with override_settings(MIDDLEWARE=SYNC_ONLY_LAST):
        assert asgi_request("/threads/pinned-again/").body == b"pinned"
    line = one_line(log_lines)
    assert line["async_to_sync"] == 2  # the middleware's, then the call's
    assert line["pinned_by"] == "tests.testapp.middleware.SyncOnlyMiddleware"
    assert 5 * NAP * 1000 <= line["pinned_ms"] <= line["duration_ms"]
    held = next(site for site in line["sites"] if site["direction"] == "async_to_sync")
    assert line["pinned_ms"] <= held["ms"]  # the middleware's hold, whichever is listed first


def outermost_wall_ms(line):
    """The outermost crossings' summed wall time, from the line's detail: what
    ``overhead_ms + work_ms`` adds up to (docs/log-schema.md)."""
    return sum(
        entry["wait_ms"] + entry["run_ms"] + entry["resume_ms"]
        for entry in line["detail"]
        if entry["parent"] is None
    )


def detailed_line(log_lines, path, body, interface="asgi"):
    """The line (with its detail) of one request to ``path``, whose body must be ``body``."""
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY, HOPWATCH={"DETAIL": True}):
        if interface == "asgi":
            assert asgi_request(path).body == body
        else:
            assert wsgi_request(path)[1] == body
    return one_line(log_lines)


def assert_adds_up(line):
    """overhead_ms + work_ms is the outermost crossings' summed wall time."""
    assert line["overhead_ms"] + line["work_ms"] == pytest.approx(outermost_wall_ms(line), abs=0.01)


def late_counts(line):
    return [site["count"] for site in line["sites"] if site["site"].endswith("_pool_nap")]


def test_a_task_that_outlives_its_async_to_sync_is_the_requests(log_lines):
    # A sync view's async_to_sync starts a task and returns; the task then makes three
    # pool calls while the view still runs. They are the request's: counted in its
    # line, inside the view's run (not added to work_ms a second time).
    from hopwatch._recorder import unscoped

    before = unscoped.count
    line = detailed_line(log_lines, "/threads/outliving-task/", b"outlived")
    assert late_counts(line) == [LATE_CALLS]
    assert unscoped.count == before
    made = [entry for entry in line["detail"] if entry["site"].endswith("_pool_nap")]
    assert len(made) == LATE_CALLS
    # children of the async_to_sync that had returned, inside the view's crossing
    assert {line["detail"][entry["parent"]]["direction"] for entry in made} == {"async_to_sync"}
    assert_adds_up(line)
    assert line["work_ms"] <= line["duration_ms"]


def test_calls_that_end_after_their_async_to_sync_are_counted_once(log_lines):
    # The async_to_sync starts three pool calls and returns while they run; they end
    # during the view's own run, which already holds their time.
    line = detailed_line(log_lines, "/threads/tasks-still-running/", b"ran")
    assert late_counts(line) == [LATE_CALLS]
    assert_adds_up(line)
    assert line["work_ms"] <= line["duration_ms"]


def test_a_call_its_caller_stopped_waiting_for(log_lines):
    # wait_for gives up on a pool call after 5 naps; its code runs on until released.
    # The crossing ran its code for as long as the caller waited: run, not overhead,
    # and no figure of its detail past the caller's resumption.
    line = detailed_line(log_lines, "/threads/timed-out/", b"timed out")
    (site,) = [site for site in line["sites"] if site["site"].endswith("_wait_for")]
    assert 5 * NAP * 1000 <= site["ms"] <= line["duration_ms"]
    assert site["overhead_ms"] < site["ms"] / 2  # its wait to start: well under its wall
    (entry,) = [entry for entry in line["detail"] if entry["site"].endswith("_wait_for")]
    assert entry["outcome"] == "cancelled"
    assert entry["resume_ms"] == 0
    assert entry["wait_ms"] + entry["run_ms"] == pytest.approx(site["ms"], abs=0.01)
    assert_adds_up(line)


def test_an_async_to_sync_asgiref_refused_is_no_crossing(log_lines):
    # Called on the loop's own thread, async_to_sync raises before anything crosses.
    line = detailed_line(log_lines, "/threads/refused/", b"refused")
    assert line["async_to_sync"] == 0
    assert [entry["direction"] for entry in line["detail"]].count("async_to_sync") == 0
    assert [site["count"] for site in line["sites"] if site["site"].endswith("._noop")] == [1]


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_a_subclass_with_its_own_thread_handler_is_timed(log_lines, interface):
    # channels' database_sync_to_async binds its own thread_handler, which calls
    # asgiref's through super() in the worker thread. The crossing is timed there like
    # any other: its run is the nap, its thread known, and the async_to_sync made in it
    # is nested inside it, its thread pinned.
    line = detailed_line(log_lines, "/threads/own-handler/", b"own handler", interface)
    detail = line["detail"]
    (index,) = [i for i, entry in enumerate(detail) if entry["site"].endswith("_nap_then_async")]
    crossing = detail[index]
    assert crossing["thread"] != 0
    assert crossing["executor"] != "unknown"
    assert crossing["run_ms"] >= 2 * NAP * 1000
    assert crossing["wait_ms"] < crossing["run_ms"]
    (inner,) = [entry for entry in detail if entry["parent"] == index]
    assert (inner["direction"], inner["depth"]) == ("async_to_sync", crossing["depth"] + 1)
    assert line["max_depth"] == crossing["depth"] + 1
    assert line["pinned_ms"] > 0
    assert_adds_up(line)
