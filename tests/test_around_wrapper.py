"""hopwatch's wrapper around Django's ``StreamingHttpResponse.__iter__``
(``_hotpath.around``: a C type on the C path, a function on the pure one) behaves as
Django's own method: the app's exception passes through unchanged, and the method
taken from a response is bound to it."""

from __future__ import annotations

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.http import StreamingHttpResponse
from django.test import Client, override_settings
from django.urls import path

from tests.helpers import capture, sites, wsgi_environ

pytestmark = pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")


async def _failing_chunks():
    yield b"a"
    raise ValueError("the app's own error")


async def _chunks():
    yield b"a"
    yield b"b"


urlpatterns = [
    path("failing/", lambda request: StreamingHttpResponse(_failing_chunks())),
    path("chunks/", lambda request: StreamingHttpResponse(_chunks())),
]

SETTINGS = {"ROOT_URLCONF": __name__, "MIDDLEWARE": ["hopwatch.middleware.HopwatchMiddleware"]}
ASYNC_ITERATOR = ("stream", "StreamingHttpResponse (async iterator)")


def _start_response(status, headers, exc_info=None):
    return lambda data: None


def test_an_async_bodys_error_reaches_the_reader_unchanged(db):
    """The async iterator raises while Django's ``__iter__`` consumes it: the reader
    (the test Client, a WSGI server) gets the app's ValueError, not a SystemError
    from the wrapper (the C one used to drop the error once its after-call returned)."""
    with override_settings(**SETTINGS), capture() as records:
        response = Client().get("/failing/")
        with pytest.raises(ValueError) as from_client:
            b"".join(response)
        wsgi_response = WSGIHandler()(wsgi_environ("/failing/"), _start_response)
        with pytest.raises(ValueError) as from_wsgi:
            b"".join(wsgi_response)
        wsgi_response.close()
    for raised in (from_client, from_wsgi):
        assert (raised.type, str(raised.value)) == (ValueError, "the app's own error")
    assert [(record.route, sites(record)) for record in records] == [
        ("/failing/", {ASYNC_ITERATOR: 1}),
        ("/failing/", {ASYNC_ITERATOR: 1}),
    ]


def test_iter_taken_from_a_response_is_bound_to_it(db):
    """``response.__iter__`` is a method bound to the response, as Django's is: called
    later, it reads that response's body (the C wrapper used to return itself
    unbound, and the call failed for want of ``self``)."""
    with override_settings(**SETTINGS), capture() as records:
        response = Client().get("/chunks/")
        method = response.__iter__
        assert method.__self__ is response
        assert list(method()) == [b"a", b"b"]
        wsgi_response = WSGIHandler()(wsgi_environ("/chunks/"), _start_response)
        assert wsgi_response.__iter__.__self__ is wsgi_response
        assert b"".join(wsgi_response.__iter__()) == b"ab"
        wsgi_response.close()
    assert [(record.route, sites(record)) for record in records] == [
        ("/chunks/", {ASYNC_ITERATOR: 1}),
        ("/chunks/", {ASYNC_ITERATOR: 1}),
    ]
