"""Where a request begins and ends under the sync handlers: what closes its record, and when.

The WSGI handler returns before the server sends the body, so a request's
record stays open until the server closes the response: every case below is one
where that used to go wrong.
"""

from __future__ import annotations

import threading
import wsgiref.util
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import async_to_sync
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished
from django.http import HttpResponse, StreamingHttpResponse
from django.test import Client, override_settings

from hopwatch._django_scope import _awaiting_close
from hopwatch._recorder import current_scope
from tests.helpers import capture, sites, wsgi_environ
from tests.testapp import views

HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]


def _start_response(status, headers, exc_info=None):
    return lambda data: None


async def _async_receiver(sender, **kwargs):
    return None


async def _noop():
    return None


def test_a_file_response_under_a_file_wrapper_closes_after_the_body_is_sent(db):
    """With wsgi.file_wrapper Django returns the server's wrapper, not the response:
    the record closed at once, and request_finished's hops were lost."""
    environ = wsgi_environ("/file/")
    environ["wsgi.file_wrapper"] = wsgiref.util.FileWrapper
    request_finished.connect(_async_receiver)  # an async receiver: a hop under WSGI
    try:
        with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
            sent = WSGIHandler()(environ, _start_response)
            assert isinstance(sent, wsgiref.util.FileWrapper)
            assert records == []  # still open: the server has not sent the body yet
            assert b"".join(sent) == b"file body"
            sent.close()  # as the server does, after the body
    finally:
        request_finished.disconnect(_async_receiver)
    (record,) = records
    assert record.route == "/file/" and record.status == 200
    assert sites(record) == {("signal", "request_finished"): 1}
    assert "response_closed" not in (record.extra or {})
    assert environ["wsgi.file_wrapper"] is wsgiref.util.FileWrapper  # given back as it was
    assert not _awaiting_close


def test_one_response_object_returned_to_two_requests_closes_each_its_own(db):
    """A view returning one shared response object: two requests in flight, each
    closed by its own server thread, each closes its own record.
    (db: closing a response sends request_finished, whose receiver closes connections.)"""
    handler = WSGIHandler.__new__(WSGIHandler)
    sent: dict[str, object] = {}
    threads: dict[str, int] = {}
    serve, close = threading.Barrier(2), threading.Barrier(2)

    def server_thread(name: str, query: str) -> None:
        threads[name] = threading.get_ident()
        sent[name] = handler(wsgi_environ("/shared/", query=query), _start_response)
        serve.wait(10)  # both requests served before either response is closed
        if name == "first":
            close.wait(10)  # the second closes first
        sent[name].close()  # type: ignore[attr-defined]
        if name == "second":
            close.wait(10)

    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        handler.__init__()
        pool = [
            threading.Thread(target=server_thread, args=("first", "")),
            threading.Thread(target=server_thread, args=("second", "b")),
        ]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join(30)
    assert sent["first"] is sent["second"]
    # was: the first request's record, from the second thread
    assert [(record.handler_thread_id, record.path) for record in records] == [
        (threads["second"], "/shared/"),
        (threads["first"], "/shared/"),
    ]
    assert all("response_closed" not in (record.extra or {}) for record in records)
    assert not _awaiting_close


def _server_threads(count: int) -> list[ThreadPoolExecutor]:
    """Server threads: each runs what it is given on one thread of its own, in order."""
    return [ThreadPoolExecutor(max_workers=1) for _ in range(count)]


def test_a_shared_response_one_server_never_closes_still_closes_the_others_request(db, monkeypatch):
    """One shared response object, two requests on two server threads: the first's server
    never closes it and serves its next request, the second's server closes it: the
    second's record closes (it once did not: finishing the first forgot the second's
    wait as well, and its line was lost). The first's waits: its thread's next request
    no longer finishes it (a single-threaded server, bjoern, calls the application for
    another connection before it closes a response); it is finished, with
    ``response_closed: false``, when the response is collected (docs/reliability.md)."""
    import gc

    monkeypatch.setattr(views, "SHARED_RESPONSE", HttpResponse("cached"))  # not closed yet
    handler = WSGIHandler.__new__(WSGIHandler)
    first, second = _server_threads(2)
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        handler.__init__()
        sent_first = first.submit(handler, wsgi_environ("/shared/"), _start_response).result()
        environ = wsgi_environ("/shared/", query="b")
        sent_second = second.submit(handler, environ, _start_response).result()
        assert records == []
        following = first.submit(handler, wsgi_environ("/sync/"), _start_response).result()
        first.submit(following.close).result()
        assert [record.route for record in records] == ["/sync/"]  # was: the first too
        second.submit(sent_second.close).result()
        assert [(record.route, record.extra) for record in records] == [
            ("/sync/", None),
            ("/shared/", None),
        ]
        assert sent_first is sent_second
        del sent_first, sent_second, following
        views.SHARED_RESPONSE = None  # evicted (monkeypatch puts the original back)
        gc.collect()
    threads = [thread.submit(threading.get_ident).result() for thread in (second, first)]
    for thread in (first, second):
        thread.shutdown()
    assert len(records) == 3
    assert (records[2].route, records[2].extra) == ("/shared/", {"response_closed": False})
    assert [record.handler_thread_id for record in records[1:]] == threads
    assert not _awaiting_close


def test_a_shared_response_collected_unclosed_finishes_every_request_it_served(db, monkeypatch):
    """One response object returned to two requests (a cached page), closed by no
    server, then dropped from the cache and collected: both lines are written, with
    ``response_closed: false`` (docs/reliability.md); the second was lost."""
    import gc

    monkeypatch.setattr(views, "SHARED_RESPONSE", HttpResponse("cached"))
    handler = WSGIHandler.__new__(WSGIHandler)
    first, second = _server_threads(2)
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        handler.__init__()
        for thread in (first, second):
            thread.submit(handler, wsgi_environ("/shared/"), _start_response).result()
        assert records == []
        views.SHARED_RESPONSE = None  # evicted (monkeypatch puts the original back)
        gc.collect()
    for thread in (first, second):
        thread.shutdown()
    assert [record.route for record in records] == ["/shared/", "/shared/"]
    assert [record.extra["response_closed"] for record in records] == [False, False]
    assert not _awaiting_close


def test_one_stream_returned_to_two_test_client_requests_closes_first_the_one_read_inside(
    db, monkeypatch
):
    """One streaming response object returned to two test-Client requests, the first
    made on another thread, the second on this one, which reads the content. The test
    client wrapped the content once per request, the first request's wrapper inside:
    its close runs in the first request's scope (the content is read in it) and
    finishes the first request, the outer wrapper's close the second (not the second
    first, though it was served on the thread that closes). The hop the reading made
    is the first request's."""

    def chunks():
        yield b"a"
        async_to_sync(_noop)()
        yield b"b"

    monkeypatch.setattr(views, "SHARED_RESPONSE", StreamingHttpResponse(chunks()))
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        with ThreadPoolExecutor(max_workers=1) as other:
            first = other.submit(Client().get, "/shared/").result()
            other_thread = other.submit(threading.get_ident).result()
        second = Client().get("/shared/")
        assert first is second and records == []
        assert b"".join(second.streaming_content) == b"ab"
    assert [(record.handler_thread_id, record.path) for record in records] == [
        (other_thread, "/shared/"),
        (threading.get_ident(), "/shared/"),
    ]
    assert [len(record) for record in records] == [1, 0]
    assert all("response_closed" not in (record.extra or {}) for record in records)
    assert not _awaiting_close


def test_an_unconsumed_stream_from_the_test_client_leaves_the_test_outside_the_request(db):
    """The test Client returns a streaming response unread: the test's own hops
    after that were counted in the request."""
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        response = Client().get("/stream/sync/")
        assert current_scope.get() is None
        async_to_sync(_noop)()  # the test's own hop, not the request's
        assert records == []  # the request still waits for its response to close
        assert b"".join(response.streaming_content) == b"ab"
        response.close()
    (record,) = records
    assert len(record) == 0 and record.route == "/stream/sync/"
