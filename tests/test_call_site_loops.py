"""A crossing awaited in a task of its own (``asyncio.gather``) has no call site: the
frames above its coroutine are whoever drives the event loop, not the code that
awaited it (docs/log-schema.md). asyncio's loop dispatches from a Python frame of
its own, where the walk stopped; uvloop (uvicorn's default with ``uvicorn[standard]``,
granian's and hypercorn's option) dispatches from C, and the walk went on into the
frame that started the loop: the server's code (``uvicorn/_compat.py:30 in
asyncio_run``), here the test's, was named the crossing's call site."""

from __future__ import annotations

import asyncio
import os

import asgiref
import pytest
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse
from django.test import override_settings
from django.urls import path

from tests.helpers import asgi_call, capture, causes


def _work() -> None:
    return None


async def gathered(request):
    await asyncio.gather(sync_to_async(_work)(), sync_to_async(_work)())
    await sync_to_async(_work)()  # awaited here: this line is its call site
    return HttpResponse("ok")


#: A library's coroutine (its file under asgiref's directory, so library code to the
#: walk) that makes the crossing: the walk starts in it, and goes up past it.
_LIBRARY = {"sync_to_async": sync_to_async}
exec(
    compile(
        "async def call(f):\n    return await sync_to_async(f)()\n"
        "async def call_from_two_lines(f):\n    return await sync_to_async(f)()\n",
        os.path.join(os.path.dirname(asgiref.__file__), "_a_library_of_the_tests.py"),
        "exec",
    ),
    _LIBRARY,
)


async def gathered_in_a_library(request):
    await asyncio.gather(_LIBRARY["call"](_work), _LIBRARY["call"](_work))
    return HttpResponse("ok")


async def two_lines_in_a_library(request):
    await _LIBRARY["call_from_two_lines"](_work)  # the first crossing's call site
    await _LIBRARY["call_from_two_lines"](_work)  # the second's
    return HttpResponse("ok")


urlpatterns = [
    path("gathered/", gathered),
    path("gathered-in-a-library/", gathered_in_a_library),
    path("two-lines-in-a-library/", two_lines_in_a_library),
]
SITE = f"{__name__}._work"
AWAITED = f"tests/test_call_site_loops.py:{gathered.__code__.co_firstlineno + 2} in gathered"


def _serve(run, url: str = "/gathered/") -> dict:
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[]), capture() as records:
        result = run(asgi_call(ASGIHandler(), url))
    assert result.status == 200 and result.body == b"ok"
    (record,) = records
    return {key: count for key, count in causes(record).items() if key[1] == SITE}


def test_a_gathered_crossing_has_no_call_site_under_asyncio():
    assert _serve(asyncio.run) == {("other", SITE, None): 2, ("other", SITE, AWAITED): 1}


def test_a_gathered_crossing_has_no_call_site_under_uvloop():
    uvloop = pytest.importorskip("uvloop")
    assert _serve(uvloop.run) == {("other", SITE, None): 2, ("other", SITE, AWAITED): 1}


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_crossing_a_library_makes_in_a_gathered_task_has_no_call_site(loop):
    """The walk starts in the library's coroutine and goes up: past it is what resumed
    the task (asyncio's dispatch, or under uvloop the frame that started the loop),
    never a caller. It stops where a coroutine was resumed by a frame that awaits
    nothing."""
    run = asyncio.run if loop == "asyncio" else pytest.importorskip("uvloop").run
    assert _serve(run, "/gathered-in-a-library/") == {("other", SITE, None): 2}


def test_a_library_helper_awaited_from_two_lines_names_each_line():
    """One library helper (its own: no other test's crossing fills its cache key), one
    crossing in it (so one cache key: the helper's frame and offset), awaited from two lines of the view: each crossing's call site is the line
    that awaited it, on the first request (the cache filled) and the next (read from
    it). The key's answer is the user frame's only when the crossing's own caller is
    that frame; here it is the library's, and both were credited to the first line."""
    first = two_lines_in_a_library.__code__.co_firstlineno
    name = "tests/test_call_site_loops.py:{} in two_lines_in_a_library"
    expected = {
        ("other", SITE, name.format(first + 1)): 1,
        ("other", SITE, name.format(first + 2)): 1,
    }
    for _ in range(2):
        assert _serve(asyncio.run, "/two-lines-in-a-library/") == expected
