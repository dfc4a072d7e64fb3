"""The crossings an async iterator's content makes, read by a sync reader, nest in
the one ``async_to_sync`` that reads it.

Under WSGI and the test ``Client``, Django's ``StreamingHttpResponse.__iter__``
consumes an async iterator at once, in one ``async_to_sync`` (taken in the
request's scope by hopwatch's ``patched_iter``). A ``sync_to_async`` the generator
awaits runs inside that crossing, as one a sync view's own ``async_to_sync`` makes
does. Each step of the iterator set the request's record as the scope, replacing
the crossing: the line said ``max_depth`` 1 (a sync view making the same crossings
by hand said 2), two crossings in flight at once, the inner crossings' work counted
again beside the outer one's (``overhead_ms + work_ms`` above ``duration_ms``), and
each inner crossing's ``depth``/``parent``/``caller_thread`` those of an outermost one.
Read with ``async for`` by the test (the AsyncClient), outside any crossing, the
steps are still the request's.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpResponse, StreamingHttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path

from hopwatch._executors import concurrency
from hopwatch._hotpath_py import ASYNC_TO_SYNC, SYNC_TO_ASYNC
from tests.helpers import capture, sites, wsgi_environ


def _noop() -> None:
    return None


async def _three_crossings():
    for chunk in (b"a", b"b", b"c"):
        await sync_to_async(_noop)()
        yield chunk


def stream_view(request):
    return StreamingHttpResponse(_three_crossings())


def plain_view(request):  # the same crossings by hand: one async_to_sync, three inside it
    async def inner():
        async for _chunk in _three_crossings():
            pass

    async_to_sync(inner)()
    return HttpResponse(b"abc")


urlpatterns = [path("stream/", stream_view), path("plain/", plain_view)]

SETTINGS = {"ROOT_URLCONF": __name__, "MIDDLEWARE": ["hopwatch.middleware.HopwatchMiddleware"]}
INNER = ("other", f"{__name__}._noop")
ITERATOR = ("stream", "StreamingHttpResponse (async iterator)")


def _start_response(status, headers, exc_info=None):
    return lambda data: None


def _assert_nested_in_one_crossing(record, outer_site):
    """Three sync_to_async, each inside the one async_to_sync (``outer_site``)."""
    hops = record.hops()
    (outer,) = [hop for hop in hops if hop.direction is ASYNC_TO_SYNC]
    inner = [hop for hop in hops if hop.direction is SYNC_TO_ASYNC]
    assert (outer.cause.kind, outer.cause.site) == outer_site
    assert (outer.depth, outer.parent) == (1, None)
    assert len(inner) == 3
    assert all(hop.depth == 2 and hop.parent is outer for hop in inner)
    # The inner crossings are called from the outer one's loop thread.
    assert {hop.parent.thread_id for hop in inner} == {outer.thread_id}
    assert record.max_depth == 2
    assert concurrency(record) == (1, 0)  # one ran at a time, nested
    # The work is the outer crossing's alone (its run less the inner crossings'
    # costs), not that plus each inner one's again.
    assert record.work_ns == outer.work_ns
    assert record.work_ns + record.overhead_ns <= record.duration_ns


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")
def test_an_async_iterators_crossings_nest_in_the_crossing_that_reads_it(db):
    """WSGIHandler read as a server reads it, and the test Client: the three
    sync_to_async are at depth 2, their parent the async_to_sync Django's
    ``__iter__`` makes, as in a sync view that makes the same crossings by hand."""
    with override_settings(**SETTINGS), capture() as records:
        response = WSGIHandler()(wsgi_environ("/stream/"), _start_response)
        assert b"".join(response) == b"abc"
        response.close()
        assert b"".join(Client().get("/stream/")) == b"abc"
        response = WSGIHandler()(wsgi_environ("/plain/"), _start_response)
        assert b"".join(response) == b"abc"
        response.close()
    served, client, by_hand = records
    assert (served.interface, client.interface) == ("wsgi", "test-client")
    assert sites(served) == sites(client) == {ITERATOR: 1, INNER: 3}
    for record in (served, client):
        _assert_nested_in_one_crossing(record, ITERATOR)
    _assert_nested_in_one_crossing(by_hand, ("other", f"{__name__}.plain_view.<locals>.inner"))


async def _read_with_async_for():
    response = await AsyncClient().get("/stream/")
    return b"".join([chunk async for chunk in response.streaming_content])


def test_an_async_iterator_read_by_the_test_with_async_for_is_still_the_requests(
    transactional_db,
):
    """The AsyncClient returns the stream unread; the test's ``async for`` runs in
    no crossing: each step is taken in the request's scope, its crossings are the
    request's outermost."""
    with override_settings(**SETTINGS), capture() as records:
        assert asyncio.run(_read_with_async_for()) == b"abc"
    (record,) = records
    assert record.interface == "test-async-client"
    assert sites(record) == {
        ("signal", "request_started"): 1,
        ("view", f"{__name__}.stream_view"): 1,  # a sync view under the async handler
        INNER: 3,
    }
    inner = [hop for hop in record.hops() if hop.cause.site == INNER[1]]
    assert [(hop.depth, hop.parent) for hop in inner] == [(1, None)] * 3
    assert record.max_depth == 1
    assert "response_closed" not in (record.extra or {})
