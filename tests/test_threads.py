"""Threads and executors: each fact against a scenario with a known answer.

Real requests through Django's ``ASGIHandler``, ``WSGIHandler`` and ``AsyncClient``
(views in tests/testapp/views_threads.py); the lines are the ones hopwatch's
emitter wrote, built when the request closed (on the request's loop, where the
default pool is read).
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import pytest
from asgiref.sync import AsyncToSync, async_to_sync, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse
from django.test import AsyncClient, override_settings

from hopwatch import _executors, _process
from hopwatch._recorder import RequestRecord, add_sink, current_scope, remove_sink
from tests.helpers import asgi_call, asgi_request, capture, wsgi_request
from tests.testapp import views_threads
from tests.testapp.views_threads import COLD_CALLS, GATHERED

HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _detail():
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY, HOPWATCH={"DETAIL": True}):
        yield


def one_line(log_lines):
    (line,) = log_lines.parsed()
    return line


def pool_threads(line, kind):
    return {hop["thread"] for hop in line["detail"] if hop["executor"] == kind}


# --- per request: executors, concurrency, connections --------------------------------------


def test_gathered_calls_run_one_at_a_time_on_the_requests_thread(log_lines):
    assert asgi_request("/threads/gather/").body == b"1"  # the view saw one thread
    line = one_line(log_lines)
    # request_started, the five gathered calls, response.close(): all on the thread of
    # the ThreadSensitiveContext Django's ASGIHandler opened for this request.
    assert line["executors"] == {"context_thread": 2 + GATHERED}
    assert line["max_in_flight"] == 1 and line["concurrent_ms"] == 0.0
    assert line["db_connections"] == 1  # that thread is new: it opens its own
    started = [hop["thread_started"] for hop in line["detail"]]
    assert started == [True] + [False] * (1 + GATHERED)  # one new thread, for the first


def test_gathered_pool_calls_run_side_by_side_with_a_connection_each(log_lines):
    assert asgi_request("/threads/gather-pool/").body == str(GATHERED).encode()
    line = one_line(log_lines)
    assert line["executors"] == {"context_thread": 2, "default_pool": GATHERED}
    assert line["max_in_flight"] == GATHERED  # held together by a barrier
    assert line["concurrent_ms"] > 0
    assert line["db_connections"] == GATHERED
    assert len(pool_threads(line, "default_pool")) == GATHERED
    assert line["threads"] == 2 + GATHERED  # the loop's, the context's, five pool threads


def test_an_executor_given_by_the_caller_is_told_from_the_default_pool(log_lines):
    asgi_request("/threads/own-executor/")
    line = one_line(log_lines)
    assert line["executors"] == {"context_thread": 2, "default_pool": 1, "own_executor": 1}
    kinds = [hop["executor"] for hop in line["detail"] if hop["site"].endswith("_noop")]
    assert kinds == ["own_executor", "default_pool"]


def test_nesting_is_not_concurrency(log_lines):
    asgi_request("/threads/nested/")
    line = one_line(log_lines)
    # The thread-sensitive call inside async_to_sync runs on the thread blocked in it.
    assert line["executors"] == {"context_thread": 3, "caller_thread": 1, "loop": 1}
    assert line["max_depth"] == 3 and line["max_in_flight"] == 1
    assert line["concurrent_ms"] == 0.0


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_a_cancelled_crossing_runs_until_its_caller_resumes(log_lines, interface):
    """A timeout cancels a pool call that sleeps on after it, and ends during the view's
    next crossing. One at a time: the cancelled code is in no figure after its caller
    resumed (docs/log-schema.md), so it overlaps neither the view (nested in its
    async_to_sync under WSGI) nor the next call (it read max_in_flight 2, 3 with both)."""
    if interface == "asgi":
        assert asgi_request("/threads/cancelled/").body == b"cancelled"
    else:
        assert wsgi_request("/threads/cancelled/")[1] == b"cancelled"
    line = one_line(log_lines)
    assert [hop["outcome"] for hop in line["detail"]].count("cancelled") == 1
    assert line["max_in_flight"] == 1 and line["concurrent_ms"] == 0.0


def test_wsgi_runs_thread_sensitive_calls_on_the_request_thread_via_a_cold_loop(log_lines):
    assert wsgi_request("/threads/gather/")[1] == b"1"
    line = one_line(log_lines)
    assert line["executors"] == {"caller_thread": GATHERED, "new_loop": 1}
    assert line["new_loops"] == 1 and line["max_in_flight"] == 1
    # The request's thread is the test's, which already has its connection.
    assert line["db_connections"] == 0
    cold = [hop for hop in line["detail"] if hop["executor"] == "new_loop"]
    assert [hop["thread_started"] for hop in cold] == [True]


def test_wsgi_pool_calls_run_in_the_cold_loops_pool(log_lines):
    wsgi_request("/threads/gather-pool/")
    line = one_line(log_lines)
    # The cold loop and its default pool are gone when the request closes, so the
    # default pool cannot be told from an executor the caller gave (see the module).
    assert line["executors"] == {"default_pool": GATHERED, "new_loop": 1}
    assert line["max_in_flight"] == GATHERED and line["db_connections"] == GATHERED


def test_async_client_outside_any_context_uses_the_process_wide_single_thread(log_lines):
    assert asyncio.run(AsyncClient().get("/threads/gather/")).status_code == 200
    line = one_line(log_lines)
    # AsyncClient opens no ThreadSensitiveContext and closes the response with
    # thread_sensitive=False.
    assert line["executors"] == {"single_thread": 1 + GATHERED, "default_pool": 1}
    assert line["max_in_flight"] == 1


def test_async_client_inside_async_to_sync_runs_on_the_calling_thread(log_lines):
    assert async_to_sync(AsyncClient().get)("/threads/gather/").status_code == 200
    line = one_line(log_lines)
    assert line["executors"] == {"caller_thread": 1 + GATHERED, "default_pool": 1}
    assert line["max_in_flight"] == 1
    assert line["db_connections"] == 0  # this thread (the test's) has its connection


def test_hops_not_kept_are_unknown_and_leave_concurrency_out():
    async def three_hops():
        for _ in range(3):
            await sync_to_async(int)()

    record = RequestRecord("asgi")
    record.detail_limit = 1
    token = current_scope.set(record)
    try:
        asyncio.run(three_hops())
    finally:
        current_scope.reset(token)
    record.close()
    assert _executors.executor_counts(record)[_executors.UNKNOWN] == 2
    assert _executors.concurrency(record) is None
    event: dict = {}
    _executors.thread_fields(record, event)
    assert "max_in_flight" not in event and "concurrent_ms" not in event
    assert sum(event["executors"].values()) == 3


def test_requests_without_hops_have_no_executors(log_lines):
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY):
        wsgi_request("/sync/")
    line = one_line(log_lines)
    assert line["hops"] == 0 and line["executors"] == {}
    assert line["max_in_flight"] == 0 and line["db_connections"] == 0


# --- per process ------------------------------------------------------------------------


def test_a_saturated_pool_shows_crossings_queued_behind_busy_threads():
    lines = []
    process = _process.ProcessLines(3600, lines.append)

    async def serve():
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=2))
        result = await asgi_call(ASGIHandler(), "/threads/saturate/")
        process.write_line()  # on the loop: its default pool is the one read
        return result

    add_sink(process)  # the request sink, as PROCESS_LINE_SECONDS installs it
    try:
        assert asyncio.run(serve()).body == b"saturated"
    finally:
        remove_sink(process)
        process.stop()
    process.write_line()
    line, after = lines
    assert line["event"] == "hopwatch.process" and line["requests"] == 1
    assert line["default_pool"]["max_workers"] == 2 and line["default_pool"]["created"]
    assert line["executors"] == {"context_thread": 2, "default_pool": GATHERED}
    assert line["pool_crossings"] == GATHERED
    # Held until all five were called: the last found the first two with a thread
    # each (running, or handed to it) and the 3rd and 4th queued ahead of it.
    assert line["pool_queue_max"] == GATHERED - 3
    assert line["pool_busy_max"] == 2
    assert line["pool_wait_max_ms"] > 0
    assert line["contexts_max"] == 1
    assert after["requests"] == 0 and after["pool_crossings"] == 0  # a new interval


def test_the_queue_each_crossing_found():
    # (called, started, ended): four submitted at once to two threads, a fifth later.
    pool = [(0, 1, 10), (0, 2, 10), (0, 10, 20), (0, 11, 21), (15, 20, 30)]
    queued, busy = _process._queues_seen(pool, 2)
    # The first two each have a thread (called, not started yet: handed over, not
    # queued); the third waits with none ahead of it, the fourth behind it; at 15
    # the third and fourth are running.
    assert queued == [0, 0, 0, 1, 0] and busy == [0, 1, 2, 2, 2]
    assert _process._queues_seen(pool, None) == (None, None)  # the pool's size unknown


def _lines_of(serve):
    """The process lines ``serve`` writes, with the requests it makes on its loop folded."""
    lines: list[dict] = []
    process = _process.ProcessLines(3600, lines.append)
    add_sink(process)  # the request sink, as PROCESS_LINE_SECONDS installs it
    try:
        asyncio.run(serve(process, lines))
    finally:
        remove_sink(process)
        process.stop()
    return lines


def test_calls_handed_to_idle_threads_are_not_queued():
    # One request at a time, each with five pool calls in flight together, on a pool
    # with a thread for each: no call ever waited for a thread.
    async def serve(process, lines):
        pool = ThreadPoolExecutor(max_workers=GATHERED + 1)
        asyncio.get_running_loop().set_default_executor(pool)
        handler = ASGIHandler()
        for _ in range(3):
            assert (await asgi_call(handler, "/threads/gather-pool/")).body == b"5"
        process.write_line()

    (line,) = _lines_of(serve)
    assert line["requests"] == 3 and line["pool_crossings"] == 3 * GATHERED
    assert line["pool_queue_max"] == 0 and line["pool_queue_p95"] == 0
    # The last of each request's calls found the four before it in the pool (they
    # wait for one another), each with its thread.
    assert line["pool_busy_max"] == GATHERED - 1
    assert line["default_pool"]["max_workers"] == GATHERED + 1


async def _idle_line(process, lines):
    """A line once the pool's threads are back waiting for a call (they return a
    moment after the calls' results reach the loop)."""
    for _ in range(500):
        process.write_line()
        if lines[-1]["default_pool"]["busy"] == 0:
            return lines[-1]
        await asyncio.sleep(0.01)
    raise AssertionError(lines[-1]["default_pool"])


def test_the_pools_busy_threads_are_the_ones_running_a_call():
    lines: list[dict] = []

    async def serve(process, written):
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=2))
        handler = ASGIHandler()
        # A saturated pool first (five calls, two threads): on Python 3.11 it leaves
        # the pool's idle semaphore above the threads it has.
        assert (await asgi_call(handler, "/threads/saturate/")).body == b"saturated"
        lines.append(await _idle_line(process, written))
        views_threads.HOLDING.clear()
        views_threads.HOLD_RELEASE.clear()
        request = asyncio.ensure_future(asgi_call(handler, "/threads/hold-pool/"))
        for _ in range(3000):
            if len(views_threads.HOLDING) == 2:
                break
            await asyncio.sleep(0.01)
        process.write_line()  # both threads running a held call
        lines.append(written[-1])
        views_threads.HOLD_RELEASE.set()
        assert (await request).body == b"held"
        lines.append(await _idle_line(process, written))

    _lines_of(serve)
    idle, held, idle_again = (line["default_pool"] for line in lines)
    assert idle == idle_again == held | {"busy": 0}
    assert held["threads"] == 2 and held["busy"] == 2 and held["queued"] == 0


def test_the_default_pool_of_a_uvloop_loop():
    """uvloop (uvicorn's loop with uvicorn[standard]) keeps its default pool where
    Python cannot read it: its size and threads are still the pool's own."""
    uvloop = pytest.importorskip("uvloop")
    lines: list[dict] = []
    pools: list[dict] = []

    async def serve(process):
        pools.append(_process.process_facts()["default_pool"])  # before its first use
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=3))
        assert (await asgi_call(ASGIHandler(), "/threads/saturate/")).body == b"saturated"
        await _idle_line(process, lines)

    process = _process.ProcessLines(3600, lines.append)
    add_sink(process)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(process))
    finally:
        remove_sink(process)
        process.stop()
    (before,), after = pools, lines[-1]
    assert before == {
        "loop": True, "created": False, "max_workers": _process.default_max_workers(),
        "threads": 0, "busy": 0, "queued": 0, "asgi_threads": None,
        "asgi_threads_applied": None,
    }  # fmt: skip
    grown = {"created": True, "max_workers": 3, "threads": 3}
    assert after["default_pool"] == before | grown
    assert after["pool_crossings"] == GATHERED
    assert after["pool_queue_max"] == GATHERED - 4 and after["pool_busy_max"] == 3


def test_a_loop_whose_default_pool_cannot_be_read_says_so(monkeypatch):
    """A loop that keeps its default pool where hopwatch cannot see it: the pool's
    facts are null (unknown), not those of a pool never made."""
    monkeypatch.setenv("ASGI_THREADS", "3")

    class OtherLoop(asyncio.AbstractEventLoop):
        pass

    assert _process.pool_facts(OtherLoop()) == {
        "loop": True, "created": None, "max_workers": None, "threads": None,
        "busy": None, "queued": None, "asgi_threads": 3, "asgi_threads_applied": None,
    }  # fmt: skip
    interval = _process.Interval()
    interval.pool = [(0, 1, 10), (0, 2, 10)]
    figures = interval.take(max_workers=None)
    assert figures["pool_queue_max"] is None and figures["pool_queue_p95"] is None
    assert figures["pool_busy_max"] is None and figures["pool_crossings"] == 2


def test_a_loop_of_uvloops_own_loop_class_is_read_as_uvloop():
    """uvloop.loop.Loop (the compiled class, which uvloop.Loop only subclasses) is
    uvloop too: its default pool is read, not left unknown."""
    uvloop_loop = pytest.importorskip("uvloop.loop")

    async def serve():
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=3))
        assert (await asgi_call(ASGIHandler(), "/threads/saturate/")).body == b"saturated"
        return _process.process_facts()["default_pool"]

    with asyncio.Runner(loop_factory=uvloop_loop.Loop) as runner:
        assert type(runner.get_loop()) is uvloop_loop.Loop
        pool = runner.run(serve())
    assert (pool["created"], pool["max_workers"], pool["threads"]) == (True, 3, 3)


def test_a_shut_down_pools_dead_threads_are_not_counted():
    """After the loop's shutdown_default_executor (as a server stops) its pool still
    lists the threads it joined: dead, so neither alive nor busy."""

    async def serve():
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=2))
        assert (await asgi_call(ASGIHandler(), "/threads/saturate/")).body == b"saturated"
        await loop.shutdown_default_executor()
        return _process.process_facts()["default_pool"]

    pool = asyncio.run(serve())
    assert (pool["created"], pool["max_workers"], pool["threads"], pool["busy"]) == (True, 2, 0, 0)
    # Its queue holds the end-of-work mark shutdown leaves for its threads: no call.
    assert pool["queued"] == 0


@pytest.mark.parametrize("shut_down", [True, False])
def test_a_pools_calls_still_queued_are_counted_live_or_shut_down(shut_down):
    """shutdown(wait=False) with one call running and two waiting: two queued, not
    three (the end-of-work mark is no call), one busy; and two queued, not one, in
    the live pool (whose queue holds no such mark)."""
    release = threading.Event()

    async def serve():
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=1)
        loop.set_default_executor(pool)
        running = threading.Event()
        first = loop.run_in_executor(None, lambda: (running.set(), release.wait(30)))
        waiting = [loop.run_in_executor(None, release.wait, 30) for _ in range(2)]
        await loop.run_in_executor(ThreadPoolExecutor(1), running.wait, 30)
        if shut_down:
            pool.shutdown(wait=False)
        facts = _process.process_facts()["default_pool"]
        release.set()
        await asyncio.gather(first, *waiting)
        return facts

    pool = asyncio.run(serve())
    assert (pool["threads"], pool["busy"], pool["queued"]) == (1, 1, 2)


class _HandingOn(Executor):
    """An executor that is no ThreadPoolExecutor (uvloop takes any): hands each call
    to a pool of its own."""

    def __init__(self, max_workers: int) -> None:
        self._max_workers = max_workers
        self._pool = ThreadPoolExecutor(max_workers)

    def submit(self, fn, /, *args, **kwargs):
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait=True, *, cancel_futures=False):
        self._pool.shutdown(wait, cancel_futures=cancel_futures)


def test_a_default_executor_that_is_no_thread_pool_has_null_figures(monkeypatch):
    """Its size where it says it, its threads, busy and queue unknown (null)."""
    uvloop = pytest.importorskip("uvloop")
    monkeypatch.setenv("ASGI_THREADS", "3")

    async def serve():
        asyncio.get_running_loop().set_default_executor(_HandingOn(3))
        assert (await asgi_call(ASGIHandler(), "/threads/saturate/")).body == b"saturated"
        return _process.process_facts()["default_pool"]

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        pool = runner.run(serve())
    assert pool == {
        "loop": True, "created": True, "max_workers": 3, "threads": None,
        "busy": None, "queued": None, "asgi_threads": 3, "asgi_threads_applied": True,
    }  # fmt: skip


def test_a_loop_keeping_no_executor_as_its_default_executor_has_a_pool_not_made_yet():
    """``_default_executor`` holding anything but an executor: no pool made yet."""

    class OtherLoop(asyncio.AbstractEventLoop):
        _default_executor = "none yet"

    assert _process.loop_executor(OtherLoop()) == (True, None)
    pool = _process.pool_facts(OtherLoop())
    assert (pool["created"], pool["max_workers"]) == (False, _process.default_max_workers())
    assert (pool["threads"], pool["busy"], pool["queued"]) == (0, 0, 0)


async def _pool_naps_view(request):
    """``n`` calls gathered into the loop's default pool, each sleeping ``ms``."""
    n, ms = int(request.GET["n"]), float(request.GET["ms"])
    await asyncio.gather(*(sync_to_async(time.sleep, thread_sensitive=False)(ms / 1000) for _ in range(n)))
    return HttpResponse(str(n))


@pytest.fixture
def pool_naps_url():
    from django.urls import path

    from tests.testapp import urls

    module = type(urls)("pool_naps_urls")
    module.urlpatterns = [*urls.urlpatterns, path("pool-naps/", _pool_naps_view)]
    with override_settings(ROOT_URLCONF=module):
        yield "/pool-naps/"


def _interval_line(serve_paths, workers=1):
    """The hopwatch.process line of an interval in which ``serve_paths`` were requested
    (path, query) one after another on one loop whose default pool has ``workers``
    threads, and the requests' records."""

    async def serve(process, lines):
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=workers))
        handler = ASGIHandler()
        for path, query in serve_paths:
            assert (await asgi_call(handler, path, query=query)).status == 200
        process.write_line()

    with capture() as records:
        (line,) = _lines_of(serve)
    return line, records


def _pool_hops(records):
    """The crossings of ``records`` that ran in the loop's default pool."""
    return [
        hop
        for record in records
        for hop, kind in zip(record.details, _executors.Classifier(record, record.details).kinds(), strict=True)
        if kind == _executors.DEFAULT_POOL
    ]


def test_the_pool_wait_is_from_the_call_to_its_start_not_its_end(pool_naps_url):
    """Four 20 ms calls gathered into a one-thread pool: each waits for the ones before
    it to run, not for its own run too. pool_wait_max_ms is the last one's wait (the
    record's start minus call), below its time from call to end by its 20 ms run."""
    line, records = _interval_line([(pool_naps_url, "n=4&ms=20")])
    hops = _pool_hops(records)
    assert line["pool_crossings"] == len(hops) == 4
    waits = [hop.started_ns - hop.called_ns for hop in hops]
    assert line["pool_wait_max_ms"] == _process._ms(max(waits))
    assert line["pool_wait_max_ms"] < _process._ms(max(hop.ended_ns - hop.called_ns for hop in hops))


def test_the_pool_wait_p95_is_the_nearest_rank(pool_naps_url):
    """Ten 5 ms calls gathered into a one-thread pool wait ever longer, each for those
    before it: the 95th percentile of ten by nearest rank (the 10th: rank ceil(9.5))
    is the longest, not the 9th."""
    line, records = _interval_line([(pool_naps_url, "n=10&ms=5")])
    waits = sorted(hop.started_ns - hop.called_ns for hop in _pool_hops(records))
    assert len(waits) == 10 and _process._ms(waits[8]) < _process._ms(waits[9])
    assert line["pool_wait_p95_ms"] == line["pool_wait_max_ms"] == _process._ms(waits[9])
    # by nearest rank: rank ceil(0.95 n), the n-th of 1 or 10, the 29th of 30
    assert [_process._percentile(values, 0.95) for values in ([7], list(range(10)), list(range(30)))] == [7, 9, 28]
    # nearest rank where 0.95 * n is whole: the 19th of 20 and the 38th of 40, not the next
    assert [_process._percentile(list(range(1, n + 1)), 0.95) for n in (20, 40, 100)] == [19, 38, 95]
    assert _process._percentile([], 0.95) == 0


def test_pool_crossings_past_the_kept_limit_are_all_counted(pool_naps_url, monkeypatch):
    """Past POOL_HOPS_LIMIT (lowered to 4 so that one request of ten passes it) the
    interval keeps no more pool crossings for its queue figures, and counts them all."""
    monkeypatch.setattr(_process, "POOL_HOPS_LIMIT", 4)
    line, _records = _interval_line([(pool_naps_url, "n=10&ms=0"), (pool_naps_url, "n=3&ms=0")], workers=2)
    assert line["requests"] == 2
    assert line["pool_crossings"] == line["executors"]["default_pool"] == 13


def test_the_intervals_executors_count_the_hops_a_request_did_not_keep(log_lines):
    """A request of 1,100 crossings (and Django's own) keeps 1,000 (KEPT_HOPS): the
    interval counts the others as unknown, as the request's line does, so every
    crossing is counted."""
    line, (record,) = _interval_line([("/hops/1100/", "")])
    (request_line,) = log_lines.parsed()
    assert record.count == request_line["hops"] >= 1100 and len(record.details) == 1000
    assert line["executors"] == request_line["executors"]
    assert line["executors"]["unknown"] == record.count - 1000
    assert sum(line["executors"].values()) == record.count


def test_a_request_that_used_no_context_thread_is_not_in_contexts_max():
    """contexts_max counts the requests whose ThreadSensitiveContext had a thread: a
    sync view under WSGI made no crossing (0); an async view's under ASGI ran in its
    context's thread (1)."""
    lines: list[dict] = []
    process = _process.ProcessLines(3600, lines.append)
    add_sink(process)  # the request sink, as PROCESS_LINE_SECONDS installs it
    try:
        with capture() as records:
            assert wsgi_request("/sync/") == ("200 OK", b"sync")
        process.write_line()
    finally:
        remove_sink(process)
        process.stop()
    ((line,), (record,)) = (lines, records)
    assert record.count == 0 and line["executors"] == {}
    assert (line["requests"], line["contexts_max"]) == (1, 0)
    line, (record,) = _interval_line([("/hops/2/", "")])
    assert line["executors"] == {"context_thread": record.count}
    assert (line["requests"], line["contexts_max"]) == (1, 1)


def test_the_default_pools_size_before_it_is_made_is_pythons_default(monkeypatch):
    """A loop's default pool, not made yet, will be ThreadPoolExecutor()'s size:
    min(32, CPUs + 4); made, it is that size. ASGI_THREADS set to that number is not
    applied while no pool exists, and is once the pool has that size."""
    size = ThreadPoolExecutor()._max_workers
    cpus = getattr(os, "process_cpu_count", os.cpu_count)() or 1
    assert size == min(32, cpus + 4)
    monkeypatch.setenv("ASGI_THREADS", str(size))

    async def before_and_after():
        before = _process.process_facts()["default_pool"]
        await asyncio.get_running_loop().run_in_executor(None, int)
        return before, _process.process_facts()["default_pool"]

    before, after = asyncio.run(before_and_after())
    assert (before["created"], before["max_workers"], before["asgi_threads_applied"]) == (False, size, False)
    assert (after["created"], after["max_workers"], after["asgi_threads_applied"]) == (True, size, True)


def test_contexts_open_at_once():
    assert _process._most_at_once([(0, 10), (5, 15), (10, 20), (30, 40)]) == 2
    assert _process._most_at_once([]) == 0


@pytest.mark.parametrize(
    ("env", "workers", "applied"),
    [(None, 2, None), ("2", 2, True), ("3", 2, False), ("3", None, False)],
)
def test_asgi_threads_applied_or_not(monkeypatch, env, workers, applied):
    if env is None:
        monkeypatch.delenv("ASGI_THREADS", raising=False)
    else:
        monkeypatch.setenv("ASGI_THREADS", env)

    async def facts():
        if workers is not None:  # as daphne does with ASGI_THREADS at start-up
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(workers))
        return _process.process_facts()

    pool = asyncio.run(facts())["default_pool"]
    assert pool["asgi_threads"] == (None if env is None else int(env))
    assert pool["asgi_threads_applied"] is applied
    expected = workers if workers is not None else _process.default_max_workers()
    assert pool["max_workers"] == expected and pool["created"] is (workers is not None)


def test_process_facts_outside_a_loop():
    facts = _process.process_facts()
    assert facts["pid"] == os.getpid() and facts["threads_alive"] >= 1
    assert facts["default_pool"]["loop"] in (True, False)


# --- the staff-only page -------------------------------------------------------------------


@pytest.fixture
def threads_url():
    from django.urls import include, path

    from tests.testapp import urls

    patterns = [*urls.urlpatterns, path("hopwatch/", include("hopwatch.urls"))]
    module = type(urls)("threads_urls")
    module.urlpatterns = patterns
    with override_settings(
        ROOT_URLCONF=module,
        MIDDLEWARE=[
            "hopwatch.middleware.HopwatchMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
    ):
        yield "/hopwatch/threads/"


def _client_as(is_staff):
    from django.contrib.auth.models import User

    client = AsyncClient()
    if is_staff is not None:
        user = User.objects.create_user(f"u{is_staff}", password="x", is_staff=is_staff)
        client.force_login(user)
    return client


@pytest.mark.parametrize("is_staff", [None, False])
def test_the_threads_page_is_not_found_for_anyone_but_staff(threads_url, is_staff):
    response = asyncio.run(_client_as(is_staff).get(threads_url))
    assert response.status_code == 404


@pytest.mark.parametrize(("is_staff", "status"), [(None, 404), (False, 404), (True, 200)])
def test_the_threads_page_with_the_lazy_user_of_another_authentication_middleware(
    threads_url, is_staff, status
):
    """A lazy ``request.user`` and no ``auser()``: the user is read in a thread (on
    the event loop Django refuses the query: a 500 for every logged-in user)."""
    stack = [
        "hopwatch.middleware.HopwatchMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "tests.testapp.middleware.LazyUserMiddleware",
    ]
    with override_settings(MIDDLEWARE=stack):
        response = asyncio.run(_client_as(is_staff).get(threads_url))
    assert response.status_code == status


def test_the_threads_page_for_staff(threads_url, monkeypatch):
    monkeypatch.setenv("ASGI_THREADS", "4")
    response = asyncio.run(_client_as(True).get(threads_url))
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    facts = response.json()
    assert facts["event"] == "hopwatch.threads" and facts["pid"] == os.getpid()
    pool = facts["default_pool"]
    assert pool["loop"] is True and pool["asgi_threads"] == 4
    assert pool["asgi_threads_applied"] is False  # nothing here applies it


def documented_process_fields() -> dict[str, tuple[type, ...]]:
    """{field: types} of the hopwatch.process table in docs/log-schema.md."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "log-schema.md").read_text()
    table = text.split("## The `hopwatch.process` line")[1]
    kinds = {"integer": (int,), "number": (int, float), "boolean": (bool,), "object": (dict,)}
    kinds["string"] = (str,)
    fields: dict[str, tuple[type, ...]] = {}
    for match in re.finditer(r"^\| `([a-z0-9_.]+)`((?:, `[a-z0-9_.]+`)*) \| ([^|]*) \|", table, re.M):
        names = [match.group(1), *re.findall(r"`([a-z0-9_.]+)`", match.group(2))]
        types = tuple(
            t for word, ts in kinds.items() if word in match.group(3) for t in ts
        ) + ((type(None),) if "null" in match.group(3) else ())
        parent = match.group(1).rsplit(".", 1)[0] if "." in match.group(1) else ""
        for name in names:
            full = name if name.startswith(parent) or not parent else f"{parent}{name}"
            fields[full] = types
    return fields


def test_the_process_line_is_documented_field_by_field():
    process = _process.ProcessLines(3600, lambda event: None)

    async def line():
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=2))
        await sync_to_async(int, thread_sensitive=False)()
        return process.line()

    event = asyncio.run(line())
    fields = documented_process_fields()
    flat = {**{k: v for k, v in event.items() if k != "default_pool"}}
    flat.update({f"default_pool.{k}": v for k, v in event["default_pool"].items()})
    assert set(flat) - {"event", "schema"} == set(fields) - {"event", "schema", "timestamp"}
    for name, value in flat.items():
        if name in ("event", "schema"):
            continue
        types = fields[name]
        assert isinstance(value, types), (name, value, types)
        assert types != (bool,) or isinstance(value, bool)


# --- threads that end: a new one may take an ended one's id -------------------------------


def test_cold_loops_one_after_another_are_each_a_new_thread(log_lines):
    # Each cold async_to_sync runs its loop in a thread started for it, which ends
    # before the next call starts one: the OS may give the next the same id
    # (threading.get_ident), and the line must still count every thread.
    assert wsgi_request("/threads/cold-loops/")[1] == b"cold"
    line = one_line(log_lines)
    assert line["new_loops"] == COLD_CALLS
    assert line["threads"] == 1 + COLD_CALLS  # the request's thread, then one per call
    assert [hop["thread_started"] for hop in line["detail"]] == [True] * COLD_CALLS


@pytest.mark.skipif(
    not hasattr(AsyncToSync, "async_single_thread_context"),
    reason="AsyncSingleThreadContext is asgiref 3.13's",
)
def test_cold_loops_in_one_single_thread_context_share_one_thread(log_lines):
    assert wsgi_request("/threads/cold-loops-one-thread/")[1] == b"cold"
    line = one_line(log_lines)
    assert line["new_loops"] == COLD_CALLS
    assert line["threads"] == 2  # the request's thread and the context's one
    started = [hop["thread_started"] for hop in line["detail"]]
    assert started == [True] + [False] * (COLD_CALLS - 1)
