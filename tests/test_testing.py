"""hopwatch.testing and the pytest plugin: counting, budgets, failure messages, harness hops.

Hop counts of requests are the ones pinned in test_counts.py: with only the
hopwatch middleware an ASGI (or ``AsyncClient``) request costs 2 hops for an
async view and 3 for a sync view, 15 and 16 behind startproject's middleware;
the sync ``Client`` makes 1 hop (a new event loop) for an async view, 0 for a
sync view.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import json
import subprocess
import sys
import textwrap
import threading
import unittest
import warnings
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.test import AsyncClient, Client, SimpleTestCase, TestCase, override_settings

import hopwatch
from hopwatch import _causes, _django, testing
from hopwatch.testing import (
    assert_hops,
    assert_max_hops,
    budget_path_for,
    count_hops,
    hop_budget,
)

pytest_plugins = ["pytester"]

HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]
HERE = _causes.short_path(__file__)


def _noop() -> None:
    return None


async def _hops(n: int) -> None:
    for _ in range(n):
        await sync_to_async(_noop)()


def _make_hops(n: int) -> None:
    """n sync_to_async hops from sync code (one async_to_sync around them, not in any block)."""
    async_to_sync(_hops)(n)


def _line_of(func: object, text: str) -> int:
    """The line number of the first line of ``func`` containing ``text``."""
    lines, first = inspect.getsourcelines(func)  # type: ignore[arg-type]
    return first + next(i for i, line in enumerate(lines) if text in line)


# --- count_hops -------------------------------------------------------------------------------


def test_count_hops_counts_the_block_only():
    async def main() -> tuple[int, int]:
        await _hops(1)  # before the block
        with count_hops() as counted:
            await _hops(2)
            live = len(counted)
        await _hops(1)  # after it
        return live, len(counted)

    assert asyncio.run(main()) == (2, 2)


def test_count_hops_keeps_causes_and_call_sites():
    async def two_hops() -> None:
        await sync_to_async(_noop)()
        await sync_to_async(_noop)()

    with count_hops() as counted:
        asyncio.run(two_hops())
    assert (len(counted), counted.sync_to_async, counted.async_to_sync) == (2, 2, 0)
    first, second = counted.hops()
    line = _line_of(two_hops, "sync_to_async")
    assert first.cause.kind == "other" and first.cause.site == "tests.test_testing._noop"
    assert first.cause.call_site == f"{HERE}:{line} in two_hops"
    assert second.cause.call_site == f"{HERE}:{line + 1} in two_hops"
    assert counted.by_site() == {"other tests.test_testing._noop": 2}
    assert list(counted) == [first, second] and counted.not_listed == 0


def test_count_hops_from_sync_code_sees_both_directions_and_nesting():
    with count_hops() as counted:
        _make_hops(2)
    assert (len(counted), counted.async_to_sync, counted.sync_to_async) == (3, 1, 2)
    outer = counted.hops()[-1]
    assert outer.direction == "async_to_sync" and outer.new_loop
    assert all(hop.parent is outer for hop in counted.hops()[:2])


def test_the_result_is_frozen_when_the_block_ends():
    release = asyncio.Event()

    async def straggler() -> None:
        await release.wait()
        await _hops(3)

    async def main() -> tuple[int, int]:
        with count_hops() as counted:
            task = asyncio.create_task(straggler())  # copies the block's context
            await _hops(1)
        release.set()
        await task
        return len(counted), len(counted.hops())

    assert asyncio.run(main()) == (1, 1)


def test_nested_blocks_and_the_enclosing_scope_all_count():
    with count_hops() as outer:
        _make_hops(1)
        with count_hops() as inner:
            _make_hops(2)
    assert (len(inner), len(outer)) == (3, 5)


def test_hops_after_an_inner_block_left_in_another_task_count_for_the_outer_one():
    """Code run by async_to_sync opens two blocks; the inner one is left in another task
    (as an async fixture finalised in another task), which then makes one hop: the inner
    block had ended, the outer one is still open and counts it."""

    async def main() -> tuple[int, int]:
        with count_hops() as outer:
            inner = count_hops()
            inner.__enter__()

            async def other_task() -> None:
                inner.__exit__(None, None, None)  # not in the context it was entered in
                await _hops(1)

            await asyncio.create_task(other_task())
        return inner.count, outer.count

    assert async_to_sync(main)() == (0, 1)


def test_async_with_works_too():
    async def main() -> int:
        async with count_hops() as counted:
            await _hops(2)
        async with assert_max_hops(1):
            await _hops(1)
        return len(counted)

    assert asyncio.run(main()) == 2


def test_filters_count_only_matching_hops():
    with (
        count_hops(kind="other", direction="async_to_sync") as to_sync,
        count_hops(direction="sync_to_async") as to_async,
        count_hops(kind=("orm", "signal")) as none,
    ):
        _make_hops(2)
    assert (len(to_sync), len(to_async), len(none)) == (1, 2, 0)
    assert [hop.direction for hop in to_sync] == ["async_to_sync"]
    assert to_sync.describe() == "other async_to_sync hops"


@pytest.mark.parametrize(
    "kwargs",
    [{"kind": "sql"}, {"kind": ()}, {"direction": "sideways"}],
)
def test_unknown_filters_are_refused(kwargs):
    with pytest.raises(ValueError):
        count_hops(**kwargs)


def test_a_block_is_entered_once():
    counted = count_hops()
    with counted:
        pass
    with pytest.raises(RuntimeError, match="only once"), counted:
        pass


def test_count_hops_installs_hopwatch():
    _django.uninstall()
    try:
        assert not hopwatch.is_installed()
        with count_hops() as counted:
            _make_hops(1)
        assert hopwatch.is_installed() and _django.is_installed()
        assert len(counted) == 2
    finally:
        _django.install()


def test_hops_beyond_the_detail_limit_are_counted_and_said(monkeypatch):
    monkeypatch.setattr(testing, "_DETAIL_LIMIT", 2)
    with pytest.raises(AssertionError) as failure, assert_max_hops(1, kind="other"):
        asyncio.run(_hops(5))
    message = str(failure.value)
    assert message.startswith("Expected at most 1 other hop, 5 were made:\n")
    assert "  ... and 3 more, not listed (kept: the first 2)\n" in message
    assert message.endswith("By site:\n  5  other       tests.test_testing._noop")


def test_a_block_keeps_up_to_10000_hops():
    """docs/testing.md: "A block keeps up to 10,000 of them" (about a second of hops)."""

    async def main() -> testing.HopCount:
        noop = sync_to_async(_noop)
        with count_hops() as counted:
            for _ in range(10_001):
                await noop()
        return counted

    counted = asyncio.run(main())
    assert (len(counted), len(counted.hops()), counted.not_listed) == (10_001, 10_000, 1)


# --- failure messages --------------------------------------------------------------------------


def test_failure_message_lists_every_hop_of_a_request():
    with (
        override_settings(MIDDLEWARE=HOPWATCH_ONLY),
        pytest.raises(AssertionError) as failure,
        assert_max_hops(2),
    ):
        asyncio.run(AsyncClient().get("/sync/"))
    assert str(failure.value) == (
        "Expected at most 2 hops, 3 were made:\n"
        "  1. sync_to_async  signal      request_started\n"
        "  2. sync_to_async  view        tests.testapp.views.sync_view\n"
        "  3. sync_to_async  response    HttpResponse.close"
    )


def test_failure_message_has_call_sites_nesting_and_a_summary_by_site():
    def sync_part() -> None:
        async_to_sync(_hops)(2)

    async def view_like() -> None:
        await sync_to_async(sync_part)()
        await sync_to_async(_noop)()

    with pytest.raises(AssertionError) as failure, assert_hops(1):
        asyncio.run(view_like())
    s2a = _line_of(view_like, "sync_part")
    a2s = _line_of(sync_part, "async_to_sync")
    loop = _line_of(_hops, "sync_to_async")
    noop = f"other       tests.test_testing._noop at {HERE}:{loop} in _hops  [inside 3]"
    assert str(failure.value) == (
        "Expected exactly 1 hop, 5 were made:\n"
        f"  1. sync_to_async  {noop}\n"
        f"  2. sync_to_async  {noop}\n"
        f"  3. async_to_sync  other       tests.test_testing._hops at {HERE}:{a2s} in sync_part"
        "  [inside 4]\n"
        f"  4. sync_to_async  other       tests.test_testing.test_failure_message_has_call_sites"
        f"_nesting_and_a_summary_by_site.<locals>.sync_part at {HERE}:{s2a} in view_like\n"
        f"  5. sync_to_async  other       tests.test_testing._noop at {HERE}:{s2a + 1}"
        " in view_like\n"
        "By site:\n"
        "  3  other       tests.test_testing._noop\n"
        "  1  other       tests.test_testing._hops\n"
        "  1  other       tests.test_testing.test_failure_message_has_call_sites_nesting_and_a"
        "_summary_by_site.<locals>.sync_part"
    )


def test_new_loops_and_errors_are_noted():
    def boom() -> None:
        raise KeyError("x")

    async def main() -> None:
        with pytest.raises(KeyError):
            await sync_to_async(boom)()

    with pytest.raises(AssertionError) as failure, assert_max_hops(0):
        asyncio.run(main())
        Client().get("/async/")
    lines = str(failure.value).splitlines()
    assert lines[0] == "Expected at most 0 hops, 2 were made:"
    assert lines[1].endswith("  [error]")
    assert lines[2] == (
        "  2. async_to_sync  view        tests.testapp.views.async_view  [new event loop]"
    )


def test_exact_fails_on_fewer_hops_and_says_when_there_were_none():
    with pytest.raises(AssertionError) as failure, assert_hops(3):
        asyncio.run(_hops(2))
    assert str(failure.value).startswith("Expected exactly 3 hops, 2 were made:\n  1. ")
    with pytest.raises(AssertionError) as failure, assert_hops(1, kind="orm"):
        asyncio.run(_hops(2))
    assert str(failure.value) == "Expected exactly 1 orm hop, 0 were made."


def test_an_exception_in_the_block_is_not_masked():
    with pytest.raises(ZeroDivisionError), assert_max_hops(0):
        asyncio.run(_hops(3))
        1 / 0  # noqa: B018


@pytest.mark.parametrize("n", [-1, 1.5, True, "2"])
def test_budget_must_be_a_whole_number(n):
    with pytest.raises(ValueError):
        assert_max_hops(n)


# --- requests --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("middleware", "path", "hops"),
    [(HOPWATCH_ONLY, "/async/", 2), (HOPWATCH_ONLY, "/sync/", 3), (None, "/async/", 15)],
)
def test_async_client_request_hops(middleware, path, hops):
    with override_settings(MIDDLEWARE=middleware or settings.MIDDLEWARE), assert_hops(hops):
        assert asyncio.run(AsyncClient().get(path)).status_code == 200


def test_sync_client_request_hops():
    with assert_hops(1) as counted:
        Client().get("/async/")
    assert counted.hops()[0].new_loop
    with assert_hops(0):
        Client().get("/sync/")


def test_kind_filter_on_a_request():
    with assert_hops(13, kind="middleware"), assert_max_hops(0, kind="orm"):
        asyncio.run(AsyncClient().get("/async/"))


def test_only_the_request_inside_the_block_counts():
    client = Client()
    client.get("/async/")
    with assert_hops(1):
        client.get("/async/")
    client.get("/async/")


# --- decorators -----------------------------------------------------------------------------


def test_decorating_keeps_async_functions_async():
    @assert_hops(2)
    async def coroutine_function(n: int) -> int:
        await _hops(n)
        return n

    @assert_max_hops(3)
    def function(n: int) -> int:
        _make_hops(n - 1)
        return n

    assert inspect.iscoroutinefunction(coroutine_function)
    assert not inspect.iscoroutinefunction(function)
    assert coroutine_function.__name__ == "coroutine_function"
    assert asyncio.run(coroutine_function(2)) == 2
    assert function(3) == 3
    assert function(3) == 3  # each call is counted on its own
    with pytest.raises(AssertionError, match="Expected exactly 2 hops, 3 were made"):
        asyncio.run(coroutine_function(3))
    with pytest.raises(AssertionError, match="Expected at most 3 hops, 4 were made"):
        function(4)


def test_overlapping_calls_of_a_decorated_function_are_counted_each_on_its_own():
    """Two calls of one decorated coroutine function under way at once (asyncio.gather):
    the one that makes 3 hops fails, the one that makes none passes (with one block shared
    by the calls it was the other way round)."""

    async def main() -> list[object]:
        second_in = asyncio.Event()
        first_done = asyncio.Event()

        @assert_max_hops(2)
        async def call(n: int) -> str:
            if n:  # the first call: its block is open; wait for the second's
                await second_in.wait()
                await _hops(n)
                first_done.set()
            else:  # the second: its block opened after the first's, ends after it
                second_in.set()
                await first_done.wait()
            return f"made {n}"

        return await asyncio.gather(call(3), call(0), return_exceptions=True)

    three, zero = asyncio.run(main())
    assert isinstance(three, AssertionError)
    assert str(three).startswith("Expected at most 2 hops, 3 were made:\n")
    assert zero == "made 0"


@assert_max_hops(0)
def test_a_decorated_pytest_test_keeps_its_fixtures(tmp_path):
    assert tmp_path.is_dir()


def test_classes_cannot_be_decorated():
    with pytest.raises(TypeError):
        assert_hops(1)(SimpleTestCase)


# --- Django test cases (collected and run by pytest like any Django suite) -------------------


@override_settings(MIDDLEWARE=HOPWATCH_ONLY)
class DjangoSimpleTestCaseTests(SimpleTestCase):
    @assert_hops(2)
    async def test_async_method_decorated(self):
        await self.async_client.get("/async/")

    async def test_async_method_block(self):
        with assert_hops(3) as counted:
            await self.async_client.get("/sync/")
        self.assertEqual(counted.by_site()["view tests.testapp.views.sync_view"], 1)

    @assert_hops(1)
    def test_sync_method_decorated(self):
        self.client.get("/async/")


class DjangoTestCaseTests(TestCase):
    @assert_hops(15)
    async def test_async_method_with_the_default_middleware(self):
        await self.async_client.get("/async/")

    @assert_hops(2, kind="orm")
    async def test_orm_filter(self):
        from tests.testapp.models import Item

        await Item.objects.acreate(name="a")
        self.assertEqual(await Item.objects.acount(), 1)

    def test_sync_method_block(self):
        with assert_max_hops(0):
            self.client.get("/sync/")

    @assert_hops(2)
    def test_sync_client_on_an_async_view_with_one_orm_call(self):
        # docs/testing.md's decorator example (it said at most 1): the view through
        # async_to_sync on a new loop, and its ORM call
        self.client.get("/orm/count/")


def _filter_example() -> str:
    """docs/testing.md's ``with assert_hops(0, direction="async_to_sync")`` example, its
    ``/items/`` (the page's async ``item_list``) served by the test app's async view."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "testing.md").read_text()
    section = text.split("\n### Filters\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    start = block.index('with assert_hops(0, direction="async_to_sync")')
    return block[start:].replace('"/items/"', '"/async/"')


class DocsFilterExampleTests(SimpleTestCase):
    """The example checked that a sync ``Client`` request to the async /items/ made no
    async_to_sync hop: the Client makes one itself, so the example failed as written."""

    def _run_example(self) -> None:
        example = _filter_example()
        asynchronous = "await " in example
        source = ("async def example(self):\n" if asynchronous else "def example(self):\n") + (
            textwrap.indent(example, "    ")
        )
        namespace: dict = {"assert_hops": assert_hops}
        exec(compile(source, "docs/testing.md", "exec"), namespace)
        if asynchronous:
            asyncio.run(namespace["example"](self))
        else:
            namespace["example"](self)

    def test_the_filter_example_passes_on_the_pages_async_view(self):
        self._run_example()

    def test_the_filter_example_fails_on_a_sync_only_middleware(self):
        # what it guards: a sync-only middleware runs the async rest of the chain
        # through async_to_sync
        middleware = [*settings.MIDDLEWARE, "tests.testapp.middleware.SyncOnlyMiddleware"]
        with (
            override_settings(MIDDLEWARE=middleware),
            self.assertRaisesRegex(
                AssertionError, r"^Expected exactly 0 async_to_sync hops, 1 was made:\n"
            ),
        ):
            self._run_example()


# --- the harness's own hops --------------------------------------------------------------------


def _run(case: type[unittest.TestCase], *names: str) -> unittest.TestResult:
    result = unittest.TestResult()
    unittest.TestSuite([case(name) for name in names]).run(result)
    return result


def test_the_hop_django_makes_to_run_an_async_test_method_is_not_counted():
    class Case(SimpleTestCase):
        @assert_hops(1)
        async def test_one_hop(self):
            await sync_to_async(_noop)()

    with count_hops() as everything:
        result = _run(Case, "test_one_hop")
    assert result.wasSuccessful(), result.failures + result.errors
    # The harness hop was made (outside the test's block), so the exclusion is real.
    assert (len(everything), everything.async_to_sync) == (2, 1)
    harness = everything.hops()[-1]
    assert harness.direction == "async_to_sync"
    assert harness.cause.site.endswith("Case.test_one_hop")


def test_a_failing_async_test_method_lists_only_its_own_hops():
    class Case(SimpleTestCase):
        @assert_hops(0)
        async def test_no_hop(self):
            await sync_to_async(_noop)()

        async def test_block(self):
            with assert_max_hops(0):
                await sync_to_async(_noop)()

    result = _run(Case, "test_no_hop", "test_block")
    assert not result.errors and len(result.failures) == 2
    for _case, traceback in result.failures:
        message = traceback[traceback.index("AssertionError: ") + len("AssertionError: ") :]
        lines = message.strip().splitlines()
        assert lines[0].endswith("0 hops, 1 was made:"), message
        assert lines[1].startswith("  1. sync_to_async  other       tests.test_testing._noop at ")
        assert "[inside" not in lines[1] and len(lines) == 2


# --- snapshot budgets ------------------------------------------------------------------------


@pytest.fixture
def budgets(tmp_path, monkeypatch):
    """A budget file in a temporary directory, with the update switch unset."""
    monkeypatch.delenv(testing.BUDGETS_ENV, raising=False)
    return tmp_path / "test_views.hops.json"


def _entries(path: Path) -> dict:
    data = json.loads(path.read_text())
    assert data["hopwatch_budgets"] == 1
    return data["tests"]


def test_a_missing_budget_is_recorded_in_a_sorted_file(budgets):
    with hop_budget("TestViews::test_a", path=budgets):
        _make_hops(2)
    with hop_budget("TestViews::test_b", path=budgets):
        pass
    assert budgets.read_text() == textwrap.dedent("""\
        {
          "hopwatch_budgets": 1,
          "tests": {
            "TestViews::test_a": {
              "hops": 3,
              "sites": {
                "other tests.test_testing._hops": 1,
                "other tests.test_testing._noop": 2
              }
            },
            "TestViews::test_b": {
              "hops": 0,
              "sites": {}
            }
          }
        }
        """)


def test_equal_and_fewer_hops_pass_without_writing(budgets):
    with hop_budget("t", path=budgets):
        asyncio.run(_hops(3))
    recorded = budgets.read_text()
    with hop_budget("t", path=budgets):
        asyncio.run(_hops(3))
    with hop_budget("t", path=budgets):
        asyncio.run(_hops(1))
    assert budgets.read_text() == recorded


def test_more_hops_fail_with_what_grew(budgets):
    with hop_budget("t", path=budgets):
        asyncio.run(_hops(1))
    with pytest.raises(AssertionError) as failure, hop_budget("t", path=budgets):
        asyncio.run(_hops(2))
    line = _line_of(_hops, "sync_to_async")
    assert str(failure.value) == (
        f"Hop budget exceeded for t: 2 hops made, 1 recorded in {budgets}.\n"
        "Grew:\n"
        "  other tests.test_testing._noop: 1 -> 2\n"
        "Hops made:\n"
        f"  1. sync_to_async  other       tests.test_testing._noop at {HERE}:{line} in _hops\n"
        f"  2. sync_to_async  other       tests.test_testing._noop at {HERE}:{line} in _hops\n"
        "By site:\n"
        "  2  other       tests.test_testing._noop\n"
        "If the new hops are intended, run with HOPWATCH_UPDATE_BUDGETS=1 (pytest:"
        " --hopwatch-update-budgets) and commit the file."
    )
    assert _entries(budgets)["t"]["hops"] == 1  # a failure does not write


def test_a_new_site_fails_even_when_the_total_does_not_grow(budgets):
    with hop_budget("t", path=budgets):
        asyncio.run(_hops(2))
    with (
        pytest.raises(AssertionError, match=r"Grew:\n  other tests.test_testing._hops: 0 -> 1"),
        hop_budget("t", path=budgets),
    ):
        _make_hops(1)


def test_the_update_switch_rewrites(budgets, monkeypatch):
    with hop_budget("t", path=budgets):
        asyncio.run(_hops(1))
    monkeypatch.setenv(testing.BUDGETS_ENV, "1")
    with hop_budget("t", path=budgets):
        asyncio.run(_hops(4))
    assert _entries(budgets)["t"]["hops"] == 4
    with hop_budget("t", path=budgets):
        asyncio.run(_hops(2))  # shrinking is written too
    assert _entries(budgets)["t"]["hops"] == 2


def test_never_write_mode_fails_on_a_missing_entry(budgets, monkeypatch):
    monkeypatch.setenv(testing.BUDGETS_ENV, "0")
    with (
        pytest.raises(AssertionError, match="No hop budget recorded for t in "),
        hop_budget("t", path=budgets),
    ):
        asyncio.run(_hops(1))
    assert not budgets.exists()
    monkeypatch.setenv(testing.BUDGETS_ENV, "sometimes")
    with pytest.raises(ValueError, match="HOPWATCH_UPDATE_BUDGETS"), hop_budget("t", path=budgets):
        pass


def test_never_write_mode_counts_the_hops_made_in_words(budgets, monkeypatch):
    """The missing entry's message said "1 hops were made"; the assertions' own say
    "1 was made"."""
    monkeypatch.setenv(testing.BUDGETS_ENV, "0")
    with pytest.raises(AssertionError) as failure, hop_budget("t", path=budgets):
        Client().get("/async/")  # the async view through async_to_sync: its one hop
    assert str(failure.value) == (
        f"No hop budget recorded for t in {budgets} (HOPWATCH_UPDATE_BUDGETS=0 forbids"
        " writing it); 1 hop was made. Run once without HOPWATCH_UPDATE_BUDGETS=0 (or with"
        " HOPWATCH_UPDATE_BUDGETS=1) and commit the file.\n"
        "  1. async_to_sync  view        tests.testapp.views.async_view  [new event loop]"
    )
    with (
        override_settings(MIDDLEWARE=HOPWATCH_ONLY),
        pytest.raises(AssertionError) as failure,
        hop_budget("t", path=budgets),
    ):
        asyncio.run(AsyncClient().get("/async/"))
    assert str(failure.value).startswith(
        f"No hop budget recorded for t in {budgets} (HOPWATCH_UPDATE_BUDGETS=0 forbids"
        " writing it); 2 hops were made. Run once without"
    )
    assert not budgets.exists()


def test_one_hop_past_an_empty_budget_is_one_hop_made(budgets):
    """The exceeded budget's head said "1 hops made, 0 recorded"."""
    with hop_budget("t", path=budgets):
        Client().get("/sync/")  # a sync view under the sync Client: no hop
    with pytest.raises(AssertionError) as failure, hop_budget("t", path=budgets):
        Client().get("/async/")
    assert str(failure.value).splitlines()[0] == (
        f"Hop budget exceeded for t: 1 hop made, 0 recorded in {budgets}."
    )
    assert _entries(budgets)["t"] == {"hops": 0, "sites": {}}


def test_a_broken_file_is_reported(budgets):
    budgets.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"), hop_budget("t", path=budgets):
        pass
    budgets.write_text('{"tests": {}}')
    with pytest.raises(ValueError, match="unsupported format"), hop_budget("t", path=budgets):
        pass


@pytest.mark.parametrize(
    ("entry", "fault"),
    [
        ({"hops": 16, "sites": ["x"]}, "'sites' must map each site to its count, not ['x']"),
        (
            {"hops": 16, "sites": {"signal request_started": "1"}},
            "the count of 'signal request_started' must be a whole number >= 0, not '1'",
        ),
        (
            {"hops": 16, "sites": {"signal request_started": True}},
            "the count of 'signal request_started' must be a whole number >= 0, not True",
        ),
        ({"hops": True, "sites": {}}, "'hops' must be a whole number >= 0, not True"),
        ({"hops": -1, "sites": {}}, "'hops' must be a whole number >= 0, not -1"),
        ({"hops": 2.0, "sites": {}}, "'hops' must be a whole number >= 0, not 2.0"),
        ({"hops": 16}, "its keys must be 'hops' and 'sites', not ['hops']"),
        ({"hops": 16, "sites": {}, "hop": 1}, "its keys must be 'hops' and 'sites', not ['hop',"),
        ([16], "not a mapping"),
    ],
    ids=[
        "sites-list",
        "count-str",
        "count-bool",
        "hops-bool",
        "negative",
        "float",
        "no-sites",
        "extra-key",
        "list",
    ],
)
def test_a_malformed_entry_is_reported(budgets, entry, fault):
    budgets.write_text(json.dumps({"hopwatch_budgets": 1, "tests": {"t": entry}}))
    with (
        override_settings(MIDDLEWARE=HOPWATCH_ONLY),
        pytest.raises(AssertionError) as failure,
        hop_budget("t", path=budgets),
    ):
        asyncio.run(AsyncClient().get("/async/"))  # 2 hops
    assert str(failure.value).startswith(
        f"hop budget entry 't' in {budgets} is malformed ({fault}"
    ), failure.value
    assert str(failure.value).endswith(
        "Correct or delete it, or rewrite it with HOPWATCH_UPDATE_BUDGETS=1."
    )
    assert _entries(budgets)["t"] == entry  # left for the user to correct


def test_the_name_comes_from_pytest_or_must_be_given(budgets, monkeypatch):
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/test_views.py::TestViews::test_x[1] (call)")
    with hop_budget(path=budgets):
        pass
    assert list(_entries(budgets)) == ["TestViews::test_x[1]"]
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    with pytest.raises(RuntimeError, match="needs a name"), hop_budget(path=budgets):
        pass


def test_the_default_file_sits_next_to_the_test_module(tmp_path, monkeypatch):
    monkeypatch.delenv(testing.BUDGETS_ENV, raising=False)
    assert budget_path_for("tests/test_views.py") == Path("tests/test_views.hops.json")
    module = tmp_path / "test_shop.py"
    source = textwrap.dedent("""\
        from hopwatch.testing import hop_budget

        class TestShop:
            @hop_budget()
            async def test_decorated(self):
                pass

        def in_a_block():
            with hop_budget("block"):
                pass
        """)
    namespace: dict = {}
    exec(compile(source, str(module), "exec"), namespace)
    decorated = namespace["TestShop"]().test_decorated
    assert inspect.iscoroutinefunction(decorated)
    asyncio.run(decorated())
    namespace["in_a_block"]()
    assert sorted(_entries(tmp_path / "test_shop.hops.json")) == [
        "TestShop.test_decorated",
        "block",
    ]


def passing_through(func):
    """A decorator of another module than the test's, as override_settings or mock.patch are."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def test_the_decorator_finds_the_test_module_under_other_decorators(tmp_path, monkeypatch):
    module = tmp_path / "test_stacked.py"
    source = textwrap.dedent("""\
        from unittest import mock
        from django.test import SimpleTestCase, override_settings
        from hopwatch.testing import assert_max_hops, hop_budget
        from tests.test_testing import HOPWATCH_ONLY, passing_through

        PATCHED = {}

        class Case(SimpleTestCase):
            @hop_budget()
            @override_settings(MIDDLEWARE=HOPWATCH_ONLY)
            async def test_override(self):
                await self.async_client.get("/async/")

            @hop_budget()
            @assert_max_hops(50)
            @override_settings(MIDDLEWARE=HOPWATCH_ONLY)
            async def test_stacked(self):
                await self.async_client.get("/sync/")

            @hop_budget()
            @mock.patch.dict(PATCHED, {"on": True})
            @passing_through
            def test_wrapped(self):
                assert PATCHED == {"on": True}
                self.client.get("/async/")
        """)
    namespace: dict = {}
    exec(compile(source, str(module), "exec"), namespace)
    case = namespace["Case"]
    names = ("test_override", "test_stacked", "test_wrapped")
    expected = tmp_path / "test_stacked.hops.json"
    # Nothing is written in this mode: the message says which file the entry was looked up in.
    monkeypatch.setenv(testing.BUDGETS_ENV, "0")
    result = _run(case, *names)
    assert not result.errors and len(result.failures) == 3
    for name, (_case, traceback) in zip(names, result.failures, strict=True):
        assert f"No hop budget recorded for Case.{name} in {expected} " in traceback
    monkeypatch.delenv(testing.BUDGETS_ENV)
    result = _run(case, *names)
    assert result.wasSuccessful(), result.failures + result.errors
    assert {name: entry["hops"] for name, entry in _entries(expected).items()} == {
        "Case.test_override": 2,
        "Case.test_stacked": 3,
        "Case.test_wrapped": 1,
    }


def test_an_inherited_decorated_test_has_an_entry_per_subclass(tmp_path, monkeypatch):
    """A ``@hop_budget()`` test defined on a mixin was one entry for every subclass
    (the mixin's qualified name), in the mixin module's file: whichever subclass ran
    second failed against the first's count, by test order. Each subclass now has its
    own entry, ``Subclass.test``, beside the subclass's module, as its name says."""
    monkeypatch.delenv(testing.BUDGETS_ENV, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "budget_mixins.py").write_text(
        textwrap.dedent("""\
            from hopwatch.testing import hop_budget

            class DetailMixin:
                path = None

                @hop_budget()
                def test_detail(self):
                    self.client.get(self.path)
            """)
    )
    (tmp_path / "test_budget_pages.py").write_text(
        textwrap.dedent("""\
            from django.test import SimpleTestCase, override_settings
            from budget_mixins import DetailMixin
            from tests.test_testing import HOPWATCH_ONLY

            @override_settings(MIDDLEWARE=HOPWATCH_ONLY)
            class AsyncPage(DetailMixin, SimpleTestCase):
                path = "/async/"

            @override_settings(MIDDLEWARE=HOPWATCH_ONLY)
            class SyncPage(DetailMixin, SimpleTestCase):
                path = "/sync/"
            """)
    )
    pages = importlib.import_module("test_budget_pages")
    try:
        for order in ((pages.AsyncPage, pages.SyncPage), (pages.SyncPage, pages.AsyncPage)):
            for case in order:
                result = _run(case, "test_detail")
                assert result.wasSuccessful(), result.failures + result.errors
            monkeypatch.setenv(testing.BUDGETS_ENV, "0")  # the second order: compare only
    finally:
        for module in ("test_budget_pages", "budget_mixins"):
            sys.modules.pop(module, None)
    entries = _entries(tmp_path / "test_budget_pages.hops.json")
    assert {name: entry["hops"] for name, entry in entries.items()} == {
        "AsyncPage.test_detail": 1,  # the async view through the sync Client
        "SyncPage.test_detail": 0,
    }
    assert not (tmp_path / "budget_mixins.hops.json").exists()


def test_concurrent_writers_keep_every_entry(budgets):
    names = [f"test_{i}" for i in range(8)]
    barrier = threading.Barrier(len(names))

    def write(name: str) -> None:
        barrier.wait()
        testing._write_budget(budgets, name, {"hops": 1, "sites": {}})

    threads = [threading.Thread(target=write, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(_entries(budgets)) == names
    assert not [p for p in budgets.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.skipif(sys.platform == "win32", reason="flock: POSIX only (docs/testing.md)")
def test_concurrent_processes_keep_every_entry(budgets):
    """docs/testing.md, parallel runs: pytest-xdist workers writing one budget file at once
    do not lose each other's entries (the flock on the directory; the thread lock alone
    lost about two thirds of 160 entries written by 4 processes)."""
    script = textwrap.dedent("""\
        import sys
        from pathlib import Path
        from hopwatch import testing
        path, worker = Path(sys.argv[1]), sys.argv[2]
        print("ready", flush=True)
        sys.stdin.readline()  # all start together
        for i in range(40):
            testing._write_budget(path, f"w{worker}::test_{i:02}", {"hops": 1, "sites": {}})
        """)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(budgets), str(k)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(4)
    ]
    try:
        for worker in workers:
            assert worker.stdout.readline() == "ready\n"
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        for worker in workers:
            assert worker.wait(timeout=60) == 0
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
            worker.stdin.close()
            worker.stdout.close()
    assert sorted(_entries(budgets)) == [f"w{k}::test_{i:02}" for k in range(4) for i in range(40)]
    assert not [p for p in budgets.parent.iterdir() if p.name.endswith(".tmp")]


# --- the pytest plugin ---------------------------------------------------------------------------

PLUGIN_TESTS = """
import asyncio
from asgiref.sync import sync_to_async

def noop():
    pass

async def make_hops(n):
    for _ in range(n):
        await sync_to_async(noop)()

def test_hops_fixture(hops):
    with hops() as counted:
        asyncio.run(hops_n())
    assert len(counted) == N
    with hops.at_most(N), hops.exactly(N, direction="sync_to_async"):
        asyncio.run(hops_n())

def test_budget(hop_budget):
    with hop_budget():
        asyncio.run(hops_n())
    with hop_budget("second"):
        pass

async def hops_n():
    await make_hops(N)
"""


# The plugins this environment has that an inner session does not need (slow to load).
QUIET = ("-p", "no:django", "-p", "no:hypothesispytest", "-p", "no:cacheprovider")


def _plugin_run(pytester: pytest.Pytester, n: int, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_plugin_use=f"N = {n}\n{PLUGIN_TESTS}")
    return pytester.runpytest_inprocess(*QUIET, *args)


def test_plugin_fixtures_record_compare_and_update(pytester, monkeypatch):
    monkeypatch.delenv(testing.BUDGETS_ENV, raising=False)
    budget_file = pytester.path / "test_plugin_use.hops.json"
    _plugin_run(pytester, 2).assert_outcomes(passed=2)
    assert _entries(budget_file) == {
        "test_budget": {"hops": 2, "sites": {"other test_plugin_use.noop": 2}},
        "test_budget::second": {"hops": 0, "sites": {}},
    }
    _plugin_run(pytester, 1).assert_outcomes(passed=2)
    result = _plugin_run(pytester, 3)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*Hop budget exceeded for test_budget: 3 hops made, 2 recorded*"])
    _plugin_run(pytester, 3, "--hopwatch-update-budgets").assert_outcomes(passed=2)
    assert _entries(budget_file)["test_budget"]["hops"] == 3
    assert testing.update_mode() == "new"  # the flag does not outlive its session


def test_plugin_refuses_a_budget_used_twice(pytester):
    pytester.makepyfile(
        test_twice="""
        def test_twice(hop_budget):
            hop_budget("a")
            hop_budget("a")
        """
    )
    result = pytester.runpytest_inprocess(*QUIET)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*already used in this test*"])


BLOCKS_TESTS = """
import pytest
from django.test import Client
from hopwatch.testing import hop_budget

def test_two_blocks():
    with hop_budget():
        Client().get("/sync/")
    with hop_budget():
        Client().get("/async/")

def test_named_blocks():
    with hop_budget():
        Client().get("/sync/")
    with hop_budget("test_named_blocks::second"):
        Client().get("/async/")

@hop_budget()
def test_decorated_and_a_block():
    with hop_budget():
        Client().get("/async/")

@pytest.mark.parametrize("path", ["/sync/", "/async/"])
@hop_budget()
def test_parameters_above(path):
    Client().get(path)

@hop_budget()
@pytest.mark.parametrize("path", ["/sync/", "/async/"])
def test_parameters_below(path):
    Client().get(path)

def test_once():
    with hop_budget():
        Client().get("/async/")
"""


def test_blocks_named_after_the_test_are_one_per_test(pytester, monkeypatch):
    monkeypatch.delenv(testing.BUDGETS_ENV, raising=False)
    pytester.makepyfile(test_blocks=BLOCKS_TESTS)
    result = pytester.runpytest_inprocess(*QUIET)
    result.assert_outcomes(passed=6, failed=2)
    budget_file = pytester.path / "test_blocks.hops.json"
    result.stdout.fnmatch_lines(
        [
            "E * ValueError: hop_budget() is used twice in test_two_blocks: both blocks would"
            f" share the entry 'test_two_blocks' in {budget_file}, and the second would be"
            " compared with what the first recorded. Give each further block its own name:"
            " hop_budget('test_two_blocks::second') (the hop_budget fixture's"
            " hop_budget('second') is named so)",
            "E * ValueError: hop_budget() is used twice in test_decorated_and_a_block: *",
        ]
    )
    assert {name: entry["hops"] for name, entry in _entries(budget_file).items()} == {
        "test_two_blocks": 0,
        "test_named_blocks": 0,
        "test_named_blocks::second": 1,
        "test_parameters_above[/sync/]": 0,
        "test_parameters_above[/async/]": 1,
        "test_parameters_below[/sync/]": 0,
        "test_parameters_below[/async/]": 1,
        "test_once": 1,
    }
    # The same test run again in this process (as pytest-rerunfailures does) starts afresh.
    pytester.runpytest_inprocess(*QUIET, "-k", "test_once").assert_outcomes(passed=1)


def test_parameter_ids_containing_a_parenthesis_have_an_entry_each(pytester, monkeypatch):
    """pytest names the phase after the test's id, "<id> (call)": only that last " (" is
    cut off. Cutting at the first made "view (sync)" and "view (async)" one entry, and
    the second parameter failed with "Hop budget exceeded"."""
    monkeypatch.delenv(testing.BUDGETS_ENV, raising=False)
    pytester.makepyfile(
        test_ids="""
        import pytest
        from django.test import Client
        from hopwatch.testing import hop_budget

        @pytest.mark.parametrize("path", ["/sync/", "/async/"], ids=["view (sync)", "view (async)"])
        def test_view(path):
            with hop_budget():
                Client().get(path)
        """
    )
    pytester.runpytest_inprocess(*QUIET).assert_outcomes(passed=2)
    assert {
        name: entry["hops"]
        for name, entry in _entries(pytester.path / "test_ids.hops.json").items()
    } == {"test_view[view (sync)]": 0, "test_view[view (async)]": 1}


TRACEBACK_TESTS = """
from django.test import Client, SimpleTestCase
from hopwatch.testing import assert_max_hops, hop_budget

def test_block():
    with assert_max_hops(0):
        Client().get("/async/")

def test_named_twice(hop_budget):
    with hop_budget():
        pass
    with hop_budget():  # the fixture refuses it
        pass

def test_unnamed_twice():
    with hop_budget():
        pass
    with hop_budget():  # refused
        pass

@assert_max_hops(0)
def test_decorated():
    Client().get("/async/")

class Case(SimpleTestCase):
    async def test_async_block(self):
        async with assert_max_hops(0):
            await self.async_client.get("/async/")

    @assert_max_hops(0)
    async def test_async_decorated(self):
        await self.async_client.get("/async/")

    @assert_max_hops(0)
    def test_sync_decorated(self):
        self.client.get("/async/")
"""


def test_pytest_shows_the_line_of_the_block_not_hopwatch(pytester, monkeypatch):
    """What docs/testing.md says pytest shows: the test's line for a block; for a decorator,
    which checks after the test returned, the frames that called the test."""
    monkeypatch.delenv(testing.BUDGETS_ENV, raising=False)
    pytester.makepyfile(test_traceback=TRACEBACK_TESTS)
    result = pytester.runpytest_inprocess(*QUIET)
    result.assert_outcomes(failed=7)
    output = result.stdout.str()
    assert "hopwatch/testing.py" not in output and "hopwatch/pytest_plugin.py" not in output
    result.stdout.fnmatch_lines(
        [
            "*_ test_block _*",
            ">       with assert_max_hops(0):",
            "E       AssertionError: Expected at most 0 hops, 1 was made:",
            "test_traceback.py:5: AssertionError",
            "*_ test_named_twice _*",
            ">       with hop_budget():  # the fixture refuses it",
            "E       ValueError: hop_budget(None) is already used in this test*",
            "test_traceback.py:11: ValueError",
            "*_ test_unnamed_twice _*",
            ">       with hop_budget():  # refused",
            "E       ValueError: hop_budget() is used twice in test_unnamed_twice: *",
            "test_traceback.py:17: ValueError",
            "*_ test_decorated _*",
            "E   AssertionError: Expected at most 0 hops, 1 was made:",
            "All traceback entries are hidden. Pass `--full-trace` to see hidden and internal"
            " frames.",
            "*_ Case.test_async_block _*",
            ">       async with assert_max_hops(0):",
            "test_traceback.py:26: AssertionError",
            "*_ Case.test_async_decorated _*",
            "*asgiref/sync.py:*: in __call__",
            "*asgiref/sync.py:*: AssertionError",
            "*_ Case.test_sync_decorated _*",
            "*unittest/case.py:*: AssertionError",
        ]
    )


def _passes_alone(tmp_path, summary: str) -> None:
    """tmp_path/test_plain.py run by pytest in a process of its own (hopwatch's plugin
    loaded as any pytest run loads it): it passes, with ``summary``."""
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *QUIET, str(tmp_path / "test_plain.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert summary in completed.stdout


def test_plugin_imports_nothing_and_installs_nothing_until_used(tmp_path):
    """In a fresh process without Django settings: the plugin alone touches nothing."""
    (tmp_path / "test_plain.py").write_text(
        textwrap.dedent("""\
            import asyncio, sys
            import hopwatch
            from asgiref.sync import sync_to_async

            def test_without_fixtures():
                assert "django" not in sys.modules and "hopwatch.testing" not in sys.modules
                assert not hopwatch.is_installed()

            def test_with_the_fixture(hops):
                with hops.exactly(1):
                    asyncio.run(sync_to_async(print)())
                assert "django" not in sys.modules
            """)
    )
    _passes_alone(tmp_path, "2 passed")


def test_the_plugin_alone_imports_only_hopwatchs_package_init(tmp_path):
    """What docs/testing.md says the plugin loads in any pytest run until a fixture is
    used: hopwatch's package (pytest imports the plugin module inside it), nothing of
    hopwatch's instrumentation, nor Django, asgiref or structlog. It said "neither
    Django nor hopwatch", which no pytest run can keep."""
    (tmp_path / "test_plain.py").write_text(
        textwrap.dedent("""\
            import sys

            def test_what_is_loaded():
                watched = ("hopwatch", "django", "asgiref", "structlog")
                loaded = sorted(
                    name for name in sys.modules if name.split(".")[0] in watched
                )
                assert loaded == ["hopwatch", "hopwatch.pytest_plugin"]
            """)
    )
    _passes_alone(tmp_path, "1 passed")


def test_the_docs_budget_file_per_environment_is_one_per_feature_release():
    """docs/testing.md's "Several environments" file name: one file per Django feature
    release (6.0's and 6.1's hop counts differ; it said one per major version)."""
    import re

    import django

    text = " ".join((Path(__file__).parent.parent / "docs" / "testing.md").read_text().split())
    (expression,) = re.findall(r"`hop_budget\(path=(f\"budgets/[^`]*\")\)`", text)
    path = eval(expression, {"django": django})  # the docs' own f-string
    assert path == f"budgets/django{django.VERSION[0]}{django.VERSION[1]}.hops.json"


# --- requests a block does not see: a live server's -----------------------------------


def _served(live_server, path: str, method: str = "GET") -> bytes:
    """``path`` through pytest-django's live server (Django's ``LiveServerThread``: a
    real server on 127.0.0.1, each request served in a thread of its own)."""
    from urllib.request import Request, urlopen

    with urlopen(Request(live_server.url + path, method=method)) as response:
        return response.read()


def test_a_block_around_a_live_server_request_counts_none_and_lists_it_as_not_seen(
    live_server,
):
    """The live server's thread starts each request in an empty context: the block's
    scope is not there, so its hops are not counted. The block lists each request that
    finished meanwhile outside its scope, with its hops, every time (its end waits for
    the server's thread, which writes the response before it closes the request)."""
    from hopwatch.testing import RequestNotSeen

    for _ in range(20):  # the server closes the request after the client has the body
        with count_hops() as seen:
            assert _served(live_server, "/hops/3/") == b"3"
            assert _served(live_server, "/async/") == b"async"
        assert len(seen) == 0
        # listed as they finished: the server's thread for the first request may close it
        # after the second one's thread has (the client has the body before the close)
        assert sorted(seen.requests_not_seen) == [
            RequestNotSeen("GET", "/async/", 1),
            RequestNotSeen("GET", "/hops/<int:n>/", 4),  # async_to_sync and 3 sync_to_async
        ]
        assert seen.hops_not_seen == 5
    listed = ", ".join(
        {"/async/": "GET /async/ (1 hop)", "/hops/<int:n>/": "GET /hops/<int:n>/ (4 hops)"}[
            request.route or ""
        ]
        for request in seen.requests_not_seen
    )
    assert seen.report() == (
        "Not counted: 2 requests that finished in another thread or context while the block"
        f" was open, 5 hops in all: {listed}. A block"
        " counts only the requests made from its own code (the test Client, AsyncClient); a"
        " live server (LiveServerTestCase, pytest-django's live_server) serves each request"
        ' in a thread of its own (docs/testing.md, "What a block cannot see").'
    )
    with count_hops(direction="sync_to_async") as filtered:
        _served(live_server, "/hops/3/")
    assert filtered.requests_not_seen == [RequestNotSeen("GET", "/hops/<int:n>/", 3)]
    # the same request from the test Client, in the block's scope: counted, none unseen
    with count_hops() as client:
        Client().get("/hops/3/")
    assert (len(client), client.requests_not_seen, client.hops_not_seen) == (4, [], 0)
    with count_hops() as async_client:
        asyncio.run(AsyncClient().get("/hops/3/"))
    assert len(async_client) > 3 and async_client.requests_not_seen == []
    # a request finished after the block is not the block's concern
    _served(live_server, "/async/")
    assert sorted(seen.requests_not_seen) == [
        RequestNotSeen("GET", "/async/", 1),
        RequestNotSeen("GET", "/hops/<int:n>/", 4),
    ]


def _not_found(live_server, path: str, method: str = "GET") -> None:
    """``path`` through the live server, which no URL pattern resolves: a 404."""
    from urllib.error import HTTPError

    with pytest.raises(HTTPError) as failed:
        _served(live_server, path, method)
    assert failed.value.code == 404


def test_nested_blocks_do_not_list_the_inner_block_s_requests_as_not_seen(db):
    """A test-Client request in the inner block is the outer's too: counted by both,
    listed by neither."""
    with count_hops() as outer, count_hops() as inner:
        assert Client().get("/async/").status_code == 200
    assert (len(outer), outer.requests_not_seen, outer.hops_not_seen) == (1, [], 0)
    assert (len(inner), inner.requests_not_seen, inner.hops_not_seen) == (1, [], 0)

    async def outliving() -> tuple[testing.HopCount, testing.HopCount]:
        """A request started in the inner block that finishes after it (a task): the
        outer counts it, so does not list it either."""
        with count_hops() as outer:
            with count_hops() as inner:
                task = asyncio.create_task(AsyncClient().get("/async/"))
            assert (await task).status_code == 200
        return outer, inner

    outer, inner = asyncio.run(outliving())
    assert (len(outer), outer.requests_not_seen, outer.hops_not_seen) == (15, [], 0)
    assert (len(inner), inner.requests_not_seen) == (0, [])


def test_a_request_no_route_resolved_is_listed_with_the_route_of_its_line(live_server):
    """A 404 has no route: listed as its line has it, ``"(unresolved)"`` (its raw path
    may carry a token or an e-mail address, and a failure's text ends up in CI logs);
    its path, without the query string, only with ``LOG_RAW_PATHS``."""
    from hopwatch.testing import RequestNotSeen

    with count_hops() as seen:
        _not_found(live_server, "/nowhere/secret-token/?email=a@b.c")
    assert seen.requests_not_seen == [RequestNotSeen("GET", "(unresolved)", 0)]
    with override_settings(HOPWATCH={"LOG_RAW_PATHS": True}), count_hops() as seen:
        _not_found(live_server, "/nowhere/secret-token/?email=a@b.c")
    assert seen.requests_not_seen == [RequestNotSeen("GET", "/nowhere/secret-token/", 0)]
    # a method as the line cleans it too: any text a client sent, cut to 16 characters
    with count_hops() as seen:
        _not_found(live_server, "/nowhere/", method="SECRETTOKEN_0123456789")
    assert seen.requests_not_seen == [RequestNotSeen("SECRETTOKEN_0123", "(unresolved)", 0)]


def test_more_than_five_requests_not_seen_list_five_and_say_how_many_more(live_server):
    with count_hops() as seen:
        for _ in range(7):
            assert _served(live_server, "/async/") == b"async"
    assert seen.hops_not_seen == 7
    assert seen.report() == (
        "Not counted: 7 requests that finished in another thread or context while the block"
        " was open, 7 hops in all: GET /async/ (1 hop), GET /async/ (1 hop), GET /async/"
        " (1 hop), GET /async/ (1 hop), GET /async/ (1 hop) and 2 more. A block counts only"
        " the requests made from its own code (the test Client, AsyncClient); a live server"
        " (LiveServerTestCase, pytest-django's live_server) serves each request in a thread"
        ' of its own (docs/testing.md, "What a block cannot see").'
    )


def test_a_block_s_end_does_not_wait_for_a_server_thread_that_serves_nothing(live_server):
    """The live server's thread is alive (``wsgiref`` imported) but idle between
    requests: the end of a block waits only while a thread is inside a request."""
    import time

    assert _served(live_server, "/async/") == b"async"  # the server is up, and idle now
    started = time.monotonic()
    for _ in range(5):
        with count_hops():
            pass
    assert time.monotonic() - started < 0.9  # (waiting: a second each)


def test_a_hop_budget_with_no_request_elsewhere_does_not_warn(tmp_path, db):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with hop_budget("plain", path=tmp_path / "budgets.hops.json") as counted:
            assert Client().get("/async/").status_code == 200
    assert (len(counted), counted.requests_not_seen) == (1, [])


def test_a_hop_check_that_passed_without_the_live_server_s_hops_warns(live_server, tmp_path):
    with pytest.warns(UserWarning) as caught, assert_max_hops(0):
        _served(live_server, "/async/")
    # hopwatch's warning, once (pytest.warns also records what other code warned in
    # the block: a clean clone's run on Django 6.0 caught one more, once)
    ours = [w for w in caught if str(w.message).startswith("a hop check passed")]
    assert len(ours) == 1, [(w.category.__name__, str(w.message)) for w in caught]
    (warning,) = ours
    assert str(warning.message) == (
        "a hop check passed counting 0 hops, but it did not see every request that finished"
        " while it was open. Not counted: 1 request that finished in another thread or"
        " context while the block was open, 1 hop in all: GET /async/ (1 hop). A block"
        " counts only the requests made from its own code (the test Client, AsyncClient); a"
        " live server (LiveServerTestCase, pytest-django's live_server) serves each request"
        ' in a thread of its own (docs/testing.md, "What a block cannot see").'
    )
    assert warning.filename == __file__  # the test's `with` line
    # exactly 1 seen, 1 more not seen
    with pytest.warns(UserWarning, match="Not counted: 1 request"), assert_hops(1):
        Client().get("/async/")
        _served(live_server, "/async/")
    budget = hop_budget("live-server", path=tmp_path / "budgets.hops.json")
    with pytest.warns(UserWarning, match=r"GET /hops/<int:n>/ \(4 hops\)"), budget:
        _served(live_server, "/hops/3/")
    # a check its unseen hops could not have failed says nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with assert_max_hops(1):
            _served(live_server, "/async/")
        with assert_max_hops(5):
            Client().get("/async/")
            _served(live_server, "/hops/3/")
        with assert_max_hops(5):  # 1 unseen hop, far from 5
            _served(live_server, "/async/")


def test_a_failing_hop_check_lists_the_requests_it_did_not_see(live_server):
    with pytest.raises(AssertionError) as failed, assert_hops(0):
        Client().get("/async/")
        _served(live_server, "/hops/2/")
    text = str(failed.value)
    assert text.startswith("Expected exactly 0 hops, 1 was made:\n  1. async_to_sync")
    assert text.endswith(
        "\nNot counted: 1 request that finished in another thread or context while the block"
        " was open, 3 hops in all: GET /hops/<int:n>/ (3 hops). A block counts only the"
        " requests made from its own code (the test Client, AsyncClient); a live server"
        " (LiveServerTestCase, pytest-django's live_server) serves each request in a thread"
        ' of its own (docs/testing.md, "What a block cannot see").'
    )


def test_blocks_open_at_once_in_threads_and_tasks_do_not_list_each_other_s_requests():
    """Each thread's (or task's) block counts its own test-Client requests; another
    open block's requests were counted by that block, so neither lists them as not
    seen, and no budget warns. The barriers hold both blocks open across both requests."""
    from concurrent.futures import ThreadPoolExecutor

    barrier = threading.Barrier(2)

    def budget_one(path: str) -> tuple[int, list[object]]:
        with assert_max_hops(4) as hops:
            barrier.wait()
            assert Client().get(path).status_code == 200
            barrier.wait()  # the other thread's request has finished too
        return len(hops), hops.requests_not_seen

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(budget_one, ["/hops/3/", "/async/"]))
    assert results == [(4, []), (1, [])]
    assert [str(w.message) for w in caught] == []

    async def one(path: str, started: asyncio.Event, both: asyncio.Event) -> tuple[int, list]:
        with count_hops() as hops:
            if started.is_set():
                both.set()
            started.set()
            await both.wait()
            await AsyncClient().get(path)
            await asyncio.sleep(0.05)  # the other task's request finishes meanwhile
        return len(hops), hops.requests_not_seen

    async def main() -> list[tuple[int, list]]:
        started, both = asyncio.Event(), asyncio.Event()
        return await asyncio.gather(one("/hops/3/", started, both), one("/async/", started, both))

    assert asyncio.run(main()) == [(18, []), (15, [])]  # startproject's middleware
