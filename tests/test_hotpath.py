"""The hop path's two implementations: which one runs, and that each is whole.

The test command runs the whole suite twice: on the C accelerator (it sets
HOPWATCH_REQUIRE_C=1, so a build that silently fell back to pure Python fails
here) and on the pure-Python reference (HOPWATCH_PURE_PYTHON=1). Every other
test then checks the same behaviour on both.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.http import HttpResponse
from django.urls import path

from hopwatch import _hotpath, _hotpath_py
from tests.helpers import STEPS, delegated, stepped_by_hand

PUBLIC = [
    "Hop",
    "LedgerCore",
    "CauseStats",
    "finish_hop",
    "attribute",
    "configure",
    "set_active",
    "set_thread_hook",
    "clear_caches",
    "then",
    "fill_log_record",
    "deliver_line",
    "enter_scope",
    "find_scope",
    "start_request",
    "begin_request",
    "name_request",
    "S2A_CALL",
    "A2S_CALL",
    "THREAD_HANDLER",
    "MAIN_WRAP",
    "MODE_FINAL",
    "MODE_USER",
    "MODE_ASK",
]


def test_the_implementation_asked_for_is_the_one_running():
    if os.environ.get("HOPWATCH_PURE_PYTHON") not in (None, "", "0"):
        assert _hotpath.IMPLEMENTATION == "python"
        assert _hotpath.impl is _hotpath_py
    elif os.environ.get("HOPWATCH_REQUIRE_C"):
        assert _hotpath.IMPLEMENTATION == "c", "the C accelerator was not built"
    assert _hotpath.IMPLEMENTATION in ("c", "python")


@pytest.mark.skipif(_hotpath.IMPLEMENTATION != "c", reason="the C accelerator's")
@pytest.mark.skipif(sys.version_info >= (3, 14), reason="found on CPython 3.11 to 3.13")
def test_the_c_path_sets_the_hops_context_variable_in_the_copys_mapping():
    """An async_to_sync's code on the loop runs in a copy of its task's context
    with hopwatch's variable set (test_patch.py holds what it sees there). The C
    path makes that copy with the mapping's own `set`, no Token (about 380
    instructions a hop fewer); should a CPython lack it, it falls back to
    PyContextVar_Set, which this test makes visible."""
    assert _hotpath.impl.CONTEXT_MAP_SET == 1


@pytest.mark.parametrize("name", PUBLIC)
def test_both_implementations_have_every_name(name):
    assert hasattr(_hotpath_py, name)
    assert getattr(_hotpath, name) is not None
    if _hotpath.IMPLEMENTATION == "c":
        assert hasattr(_hotpath.impl, name)
        if name.isupper():
            assert getattr(_hotpath.impl, name) == getattr(_hotpath_py, name)


def test_the_pure_python_path_is_chosen_by_the_environment():
    code = "from hopwatch import _hotpath; print(_hotpath.IMPLEMENTATION)"
    env = {**os.environ, "HOPWATCH_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "python", out.stderr


def test_hop_durations_agree_between_the_two_hop_types():
    # The C Hop and the reference Hop derive the same durations from the same
    # four clock readings (overhead = wall - run, clamped at zero).
    for hop_type in {_hotpath.Hop, _hotpath_py.Hop}:
        hop = hop_type("sync_to_async", None, True, None, None, 100)
        hop.started_ns, hop.ended_ns, hop.resumed_ns = 130, 190, 200
        assert (hop.wait_ns, hop.run_ns, hop.resume_ns) == (30, 60, 10)
        assert (hop.wall_ns, hop.overhead_ns) == (100, 40)
        never_ran = hop_type("async_to_sync", None, None, None, None, 100)
        never_ran.resumed_ns = 150
        assert (never_ran.wait_ns, never_ran.run_ns, never_ran.overhead_ns) == (50, 0, 50)


# --- one nested request's times, measured by each path ---------------------------------


async def _inner_sleeps():
    await asyncio.sleep(0.05)


def _outer_sleeps():
    time.sleep(0.05)
    async_to_sync(_inner_sleeps)()


async def _nested_sleeps_view(request):
    await sync_to_async(_outer_sleeps)()
    return HttpResponse("slept")


urlpatterns = [path("nested-sleeps/", _nested_sleeps_view)]

_NESTED_REQUEST = """
import asyncio, json, os
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
import django
django.setup()
from django.test import AsyncClient, override_settings
from hopwatch import _hotpath
from tests.helpers import capture
hw = ["hopwatch.middleware.HopwatchMiddleware"]
with override_settings(ROOT_URLCONF="tests.test_hotpath", MIDDLEWARE=hw), capture() as records:
    status = asyncio.run(AsyncClient().get("/nested-sleeps/")).status_code
(record,) = records
names = ("count", "sync_to_async", "async_to_sync", "max_depth", "new_loops")
times = ("wall_ns", "wait_ns", "run_ns", "overhead_ns", "work_ns", "pinned_ns")
print(json.dumps({
    "implementation": _hotpath.IMPLEMENTATION,
    "status": status,
    "counts": [getattr(record, name) for name in names],
    "pinned_by": record.top_pinning_cause().site,
    **{name: getattr(record, name) for name in times},
}))
"""


def _nested_request_on(pure: bool) -> dict:
    chosen = ("HOPWATCH_PURE_PYTHON", "HOPWATCH_REQUIRE_C")
    env = {name: value for name, value in os.environ.items() if name not in chosen}
    if pure:
        env["HOPWATCH_PURE_PYTHON"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", _NESTED_REQUEST],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_nested_requests_times_add_up_alike_on_both_paths():
    """An async view calls a sync function across that sleeps 50 ms and calls async
    code back across that sleeps 50 ms. Each path's totals keep the same relations,
    whatever the machine's load: a hop's wait (called to started) is part of its
    overhead (wall less run), so the sums are too, and wait plus run is at most the
    wall time; the code's 100 ms is work, the inner 50 ms pinned the outer's thread.
    (The reference once took the wait to the hop's resumption: its wait_ms was its
    hop_ms, some 150 ms, beside the C path's few.)"""
    paths = [True]
    if importlib.util.find_spec("hopwatch._speedups") is not None:
        paths.append(False)
    for pure in paths:
        got = _nested_request_on(pure)
        assert got["implementation"] == ("python" if pure else "c")
        assert got["status"] == 200
        # hops: request_started, the outer call, the inner call, close
        assert got["counts"] == [4, 3, 1, 2, 0], got
        assert got["pinned_by"] == "tests.test_hotpath._outer_sleeps"
        assert got["wait_ns"] <= got["overhead_ns"], got
        assert got["wait_ns"] + got["run_ns"] <= got["wall_ns"], got
        assert got["overhead_ns"] + got["work_ns"] <= got["wall_ns"], got
        assert got["work_ns"] >= 95_000_000, got  # the two 50 ms sleeps
        assert got["run_ns"] >= got["work_ns"], got
        assert got["pinned_ns"] >= 45_000_000, got
        assert got["wall_ns"] >= got["work_ns"] + got["pinned_ns"], got  # the inner's counted twice


def _ledger_with(impl, hops):
    ledger = impl.LedgerCore()
    for cause, direction, called, resumed in hops:
        hop = impl.Hop(direction, cause, None, None, ledger, called)
        hop.resumed_ns = resumed
        impl.finish_hop(hop)
    return ledger


def test_the_line_sites_are_the_same_from_both_ledgers():
    """Ranked by summed wall time (ties: more hops, then site), the top ``limit``
    rendered as the line's entries, rounded to the microsecond."""
    from hopwatch._recorder import intern_cause

    a = intern_cause("orm", "QuerySet.aget", "shop/views.py:12 in detail")
    b = intern_cause("middleware", "b.Middleware")
    c = intern_cause("middleware", "a.Middleware")  # ties with b: site order
    d = intern_cause("signal", "request_started")
    hops = [
        (a, "sync_to_async", 0, 1_500_499),  # 1.5 ms, rounds down
        (a, "sync_to_async", 0, 1_000),
        (b, "sync_to_async", 0, 700_500),  # 0.7005 -> 0.701 (half up)
        (c, "sync_to_async", 0, 700_500),
        (d, "async_to_sync", 0, 10),
    ]
    implementations = {_hotpath_py, _hotpath.impl}
    results = [_ledger_with(impl, hops).line_sites(3) for impl in implementations]
    sites, causes = results[0]
    assert causes == 4
    assert [s["site"] for s in sites] == ["QuerySet.aget", "a.Middleware", "b.Middleware"]
    assert sites[0] == {
        "site": "QuerySet.aget",
        "kind": "orm",
        "direction": "sync_to_async",
        "count": 2,
        "ms": 1.501,
        "overhead_ms": 1.501,  # never ran: all of it was overhead
        "call_site": "shop/views.py:12 in detail",
    }
    assert sites[1]["ms"] == 0.701 and "call_site" not in sites[1]
    assert all(result == results[0] for result in results)
    assert list(sites[0]) == ["site", "kind", "direction", "count", "ms", "overhead_ms", "call_site"]
    ranked = [_ledger_with(impl, hops).ranked_causes() for impl in implementations]
    assert all([c.site for c, _ in r] == [c.site for c, _ in ranked[0]] for r in ranked)
    assert _ledger_with(_hotpath.impl, hops).line_sites(0) == ([], 4)


@pytest.mark.parametrize("threads", [0, 1, 8, 9, 20])
def test_the_threads_that_ran_the_hops_read_the_same_from_both_ledgers(threads):
    """The C ledger keeps the first eight thread ids in place and a set past them;
    either way ``thread_ids`` is the set of distinct ids, as the reference's."""
    from hopwatch._recorder import intern_cause

    cause = intern_cause("other", "tests.threads")
    for impl in {_hotpath_py, _hotpath.impl}:
        ledger = impl.LedgerCore()
        for i in range(threads):
            for _ in range(2):  # each thread twice: counted once
                hop = impl.Hop("sync_to_async", cause, None, None, ledger, 0)
                hop.started_ns, hop.ended_ns, hop.resumed_ns = 1, 2, 3
                hop.thread_id = 1000 + i
                impl.finish_hop(hop)
        assert ledger.thread_ids == set(range(1000, 1000 + threads)), impl
        assert ledger.threads_seen == threads
        assert ledger.count == 2 * threads


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_the_views_crossing_is_always_on_the_line(limit):
    """The view's crossing ranked below the limit takes the last place (the order
    stays by time, the count of causes is the same); a view within the limit, or a
    line with room for every cause, is left as it is. The C encoder (jb_sites)
    writes the same sites as both ledgers' line_sites."""
    import json

    from hopwatch import _emit
    from hopwatch._recorder import RequestRecord, intern_cause

    slow = [intern_cause("middleware", f"m.Middleware{i}.process_request") for i in range(3)]
    view = intern_cause("view", "shop.views.item_detail")
    hops = [(cause, "sync_to_async", 0, 3_000_000 - i * 500_000) for i, cause in enumerate(slow)]
    hops.append((view, "sync_to_async", 0, 100_000))
    implementations = {_hotpath_py, _hotpath.impl}
    for impl in implementations:
        sites, causes = _ledger_with(impl, hops).line_sites(limit)
        assert causes == 4
        expected = [c.site for c in slow[: limit - 1]] + ["shop.views.item_detail"]
        assert [site["site"] for site in sites] == expected, impl
        assert sites[-1]["kind"] == "view" and sites[-1]["ms"] == 0.1
        every, _ = _ledger_with(impl, hops).line_sites(4)
        assert [site["site"] for site in every] == [c.site for c in slow] + [view.site]
        # a view that ranks within the limit: the top `limit`, as ranked
        first = [(view, "sync_to_async", 0, 9_000_000), *hops[:3]]
        top, _ = _ledger_with(impl, first).line_sites(limit)
        assert [site["site"] for site in top] == [view.site, *[c.site for c in slow][: limit - 1]]
    if _hotpath.IMPLEMENTATION == "c":
        record = RequestRecord("asgi")
        record.method, record.route, record.status = "GET", "/items/<int:pk>/", 200
        for cause, direction, called, resumed in hops:
            hop = _hotpath.Hop(direction, cause, None, None, record, called)
            hop.resumed_ns = resumed
            _hotpath.finish_hop(hop)
        head, _tail = _emit.encode_head(record, sites_limit=limit)
        line = json.loads(head + "}")
        assert [site["site"] for site in line["sites"]] == expected
        assert line["sites_dropped"] == 4 - limit


@pytest.mark.parametrize("causes", [1, 15, 32, 33, 80])
def test_many_causes_rank_the_same_on_both_ledgers(causes):
    """The C ledger ranks up to 32 causes in place (insertion sort) and more on
    the heap (qsort): the same order as the reference on both sides of that,
    ties included (equal totals: more hops first, then the site)."""
    from hopwatch._recorder import intern_cause

    hops = []
    for i in range(causes):
        cause = intern_cause("middleware", f"m{(i * 7919) % 97:02d}.Middleware{i}")
        wall = (i % 5 + 1) * 1_000  # five totals: most causes tie with others
        for _ in range(1 + i % 2):  # half of them with two hops
            hops.append((cause, "sync_to_async", 0, wall))
    implementations = {_hotpath_py, _hotpath.impl}
    ranked = [
        [c.site for c, _ in _ledger_with(impl, hops).ranked_causes()] for impl in implementations
    ]
    assert len(ranked[0]) == causes
    assert all(r == ranked[0] for r in ranked)
    sites = [_ledger_with(impl, hops).line_sites(causes) for impl in implementations]
    assert all(s == sites[0] for s in sites)
    totals = [(s["ms"], s["count"]) for s in sites[0][0]]
    assert totals == sorted(totals, reverse=True)


@pytest.mark.parametrize("causes", [3, 16, 17, 40, 300])
def test_the_causes_read_the_same_from_both_ledgers(causes):
    """The C ledger finds a cause by its address (an array and an index grown as
    causes come), the reference by a dict: the same causes, in the order first
    seen, with the same sums, when the hops come round-robin in both directions,
    some twice in a row (the last cause is remembered), and past the limit,
    into the overflow cause of each direction."""
    from hopwatch._recorder import OVERFLOW_CAUSE, intern_cause

    pool = [intern_cause("other", f"app.views.helper_{i}") for i in range(causes)]
    hops = [
        (pool[i % causes], direction, 0, 1_000 * (i % 7 + 1))
        for i in range(3 * causes)
        for direction in ("sync_to_async", "async_to_sync")
        for _ in range(1 + i % 2)
    ]
    counts = Counter((cause.site, direction) for cause, direction, _, _ in hops)

    def read(impl, limit):
        ledger = impl.LedgerCore()
        ledger.cause_limit = limit
        for cause, direction, called, resumed in hops:
            hop = impl.Hop(direction, cause, None, None, ledger, called)
            hop.resumed_ns = resumed
            impl.finish_hop(hop)
        return ledger.count, [
            (cause.site, direction, stats.count, stats.wall_ns)
            for (cause, direction), stats in ledger.causes.items()
        ]

    results = [read(impl, 10_000) for impl in (_hotpath_py, _hotpath.impl)]
    assert results[0] == results[-1]
    order = [(pool[i].site, d) for i in range(causes) for d in ("sync_to_async", "async_to_sync")]
    for limit in (10_000, 10):
        # past the limit (10): the running implementation's overflow, which
        # hopwatch's installation names (the reference module, when it is not
        # the one running, has none)
        count, seen = read(_hotpath.impl, limit)
        assert count == len(hops) == sum(n for _, _, n, _ in seen)
        kept = min(2 * causes, limit)  # a cause in each direction, up to the limit
        assert [(site, d) for site, d, _, _ in seen[:kept]] == order[:kept]
        assert all(n == counts[site, d] for site, d, n, _ in seen[:kept])
        assert sum(n for _, _, n, _ in seen[kept:]) == sum(
            counts[key] for key in order[kept:]
        )
        overflow = seen[kept:]
        expected = [] if 2 * causes <= limit else [OVERFLOW_CAUSE.site] * 2
        assert [site for site, _, _, _ in overflow] == expected
        assert [d for _, d, _, _ in overflow] == ["sync_to_async", "async_to_sync"][: len(expected)]


def test_pinned_time_is_summed_per_cause_whatever_the_order_on_both_ledgers():
    from hopwatch._recorder import intern_cause

    held_by = {name: intern_cause("middleware", name) for name in ("X", "Y")}
    bridge = intern_cause("middleware", "bridge")
    for impl in {_hotpath_py, _hotpath.impl}:
        ledger = impl.LedgerCore()
        for name, wall in [("X", 10), ("X", 20), ("Y", 5), ("X", 1), ("Y", 2)]:
            # an async_to_sync made inside a sync_to_async of another ledger
            # (only the parent's direction and cause matter for pinning)
            parent = impl.Hop("sync_to_async", held_by[name], True, None, None, 0)
            hop = impl.Hop("async_to_sync", bridge, None, parent, ledger, 0)
            hop.resumed_ns = wall
            impl.finish_hop(hop)
        assert ledger.pinned_ns == 38
        assert {cause.site: ns for cause, ns in ledger.pinned_by.items()} == {"X": 31, "Y": 7}


def test_pinned_by_is_bounded_like_the_causes():
    import hopwatch._patch  # noqa: F401  (configures the running implementation)
    from hopwatch._recorder import OVERFLOW_CAUSE, intern_cause

    bridge = intern_cause("middleware", "bridge")
    # the implementation this run uses (the suite runs once with each)
    for impl in {_hotpath.impl}:
        ledger = impl.LedgerCore()
        ledger.cause_limit = 3
        for i in range(10):
            parent = impl.Hop("sync_to_async", intern_cause("middleware", f"m{i}"), True, None, None)
            hop = impl.Hop("async_to_sync", bridge, None, parent, ledger, 0)
            hop.resumed_ns = 1
            impl.finish_hop(hop)
        pinned = ledger.pinned_by
        assert len(pinned) == 4 and pinned[OVERFLOW_CAUSE] == 7  # 3 named, the rest merged
        assert ledger.pinned_ns == sum(pinned.values()) == 10


# --- then(awaitable, fn, a, b): the async middleware's awaitable ---------------------


class _Calls(list):
    def __call__(self, a, b, result):
        self.append((a, b, result))


def test_then_gives_the_result_and_then_calls_back_once():
    import asyncio

    calls = _Calls()

    async def work():
        await asyncio.sleep(0)
        assert calls == []  # not before it has ended
        return "response"

    async def main():
        return await _hotpath.then(work(), calls, "a", "b")

    assert asyncio.run(main()) == "response"
    assert calls == [("a", "b", "response")]


def test_then_calls_back_with_none_when_it_raises_or_is_cancelled():
    import asyncio

    calls = _Calls()

    async def fails():
        await asyncio.sleep(0)
        raise KeyError("k")

    async def waits():
        await asyncio.Event().wait()

    async def main():
        with pytest.raises(KeyError):
            await _hotpath.then(fails(), calls, 1, 2)
        task = asyncio.ensure_future(_hotpath.then(waits(), calls, 3, 4))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert calls == [(1, 2, None), (3, 4, None)]


def test_then_can_be_delegated_to_with_yield_from_its_await():
    """What ``__await__`` returns is an iterator, as a coroutine's is: a generator-based
    coroutine (``types.coroutine``) or an ``__await__`` can ``yield from`` it."""
    import asyncio
    import types

    calls = _Calls()

    async def work():
        await asyncio.sleep(0)
        return "response"

    @types.coroutine
    def delegate():
        return (yield from _hotpath.then(work(), calls, "a", "b").__await__())

    async def main():
        return await delegate()

    assert asyncio.run(main()) == "response"
    assert calls == [("a", "b", "response")]


def test_then_awaits_any_awaitable_and_keeps_its_return_value_whole():
    import asyncio

    calls = _Calls()

    async def main():
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_result, (1, 2))
        return await _hotpath.then(future, calls, None, None)

    assert asyncio.run(main()) == (1, 2)  # a tuple is not taken for StopIteration's args
    assert calls == [(None, None, (1, 2))]


def test_then_stepped_every_way_ends_with_its_value_none_included():
    """A `then` ends as a coroutine does however it is stepped: `await`, `yield
    from` (both through `__next__` from Python 3.12 on), `__next__()`, `next()`
    and `send(None)`: StopIteration with the value, None too; the callback gets
    the value once each time."""
    import asyncio

    calls = _Calls()

    def returning(value):
        async def work():
            await asyncio.sleep(0)
            return value

        return work

    async def main():
        ended = []
        for value in (None, 7):
            ended.append(await _hotpath.then(returning(value)(), calls, value, None))
            ended.append(await delegated(_hotpath.then(returning(value)(), calls, value, None)))
            for step in STEPS:
                awaitable = _hotpath.then(returning(value)(), calls, value, None)
                ended.append(await stepped_by_hand(awaitable, step))
        return ended

    ended = asyncio.run(main())
    assert ended == [None, None, *[("stopped", None, ())] * 3, 7, 7, *[("stopped", 7, (7,))] * 3]
    assert calls == [(None, None, None)] * 5 + [(7, None, 7)] * 5


class _Suspend:
    """An awaitable that suspends once (what a `then` waits on in the next tests)."""

    def __await__(self):
        yield "suspended"


async def _waits() -> None:
    await _Suspend()


def test_then_closed_while_waiting_calls_back_and_never_started_does_not():
    calls = _Calls()

    started = _hotpath.then(_waits(), calls, "x", "y")
    assert started.send(None) == "suspended"
    started.close()
    assert calls == [("x", "y", None)]
    inner = _waits()
    never = _hotpath.then(inner, calls, "p", "q")
    never.close()  # never started: no callback
    if _hotpath.IMPLEMENTATION == "c":
        # the awaitable inside is closed, as the caller's close() closed it without
        # hopwatch (left alone, Django's handler coroutine said "never awaited")
        assert inner.cr_frame is None
    else:
        # the pure path's then() is an async def that never ran: it cannot close
        # what it was given (docs/how-it-works.md says so)
        assert inner.cr_frame is not None
        inner.close()
    del never
    assert calls == [("x", "y", None)]


def test_then_dropped_while_waiting_calls_back_and_dropped_finished_does_not_again():
    """Dropped without close(): the one left waiting is finalized as a coroutine is
    (the callback runs once); a finished one is not (its callback ran once, when
    it finished)."""
    calls = _Calls()

    async def done():
        return "done"

    waiting = _hotpath.then(_waits(), calls, "w", None)
    assert waiting.send(None) == "suspended"
    del waiting
    assert calls == [("w", None, None)]
    finished = _hotpath.then(done(), calls, "f", None)
    with pytest.raises(StopIteration):
        finished.send(None)
    del finished
    assert calls == [("w", None, None), ("f", None, "done")]


@pytest.mark.internal_errors
def test_an_error_of_the_callback_is_reported_and_leaves_the_result_alone():
    import asyncio

    from hopwatch import _errors

    def broken(a, b, result):
        raise RuntimeError("hopwatch's own bug")

    async def work():
        return 7

    async def main():
        return await _hotpath.then(work(), broken, None, None)

    before = _errors.total()
    assert asyncio.run(main()) == 7
    assert _errors.total() == before + 1


def test_then_with_start_begins_when_first_driven_and_ends_with_its_state():
    import asyncio
    import contextvars

    var = contextvars.ContextVar("where", default="caller")
    calls = _Calls()
    started = []

    def start(a, b):
        started.append((a, b, var.get()))
        return f"state of {a}"

    async def work():
        return "done"

    async def in_task():
        var.set("task")
        return await awaitable

    awaitable = _hotpath.then(work(), calls, "a", "b", start)
    assert started == []  # made, not driven: nothing begun in the caller
    assert asyncio.run(in_task()) == "done"
    assert started == [("a", "b", "task")]
    assert calls == [("state of a", "b", "done")]


@pytest.mark.internal_errors
def test_then_whose_start_gives_none_or_fails_only_awaits():
    import asyncio

    from hopwatch import _errors

    calls = _Calls()

    def broken(a, b):
        raise RuntimeError("hopwatch's own bug")

    async def work():
        return 3

    async def main():
        first = await _hotpath.then(work(), calls, 1, 2, lambda a, b: None)
        second = await _hotpath.then(work(), calls, 1, 2, broken)
        return first, second

    before = _errors.total()
    assert asyncio.run(main()) == (3, 3)
    assert calls == []
    assert _errors.total() == before + 1


def test_hopwatchs_context_variable_sits_apart_from_asgirefs_in_the_contexts_tree():
    """Its first-level slot in a context's HAMT is none of asgiref's variables',
    and the placing picks a free slot when most are taken (a shared slot puts
    every set, reset and lookup of it a level deeper)."""
    import contextvars

    from hopwatch._recorder import (
        asgiref_variables,
        current_scope,
        first_level_slot,
        placed_context_variable,
    )

    theirs = asgiref_variables()
    assert {"thread_sensitive_context", "deadlock_context"} <= {v.name for v in theirs}
    assert first_level_slot(current_scope) not in {first_level_slot(v) for v in theirs}
    made: list[contextvars.ContextVar[object]] = []
    by_slot: dict[int, contextvars.ContextVar[object]] = {}
    while len(by_slot) < 24:  # three slots in four taken
        made.append(contextvars.ContextVar(f"taken{len(made)}"))
        by_slot.setdefault(first_level_slot(made[-1]), made[-1])
    for _ in range(20):
        placed = placed_context_variable("placed", list(by_slot.values()))
        assert first_level_slot(placed) not in by_slot
        assert placed.get() is None
