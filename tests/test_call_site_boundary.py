"""A call site is never looked for above the application: the handler a server or a
test client calls (Django's ``ASGIHandler``, ``WSGIHandler``, the test clients'
handlers) is where the walk for the user's frame stops.

A hop that Django's own code makes (the handler closing a response, a decorator
running a user test through ``sync_to_async``) has no frame of the user's below
the handler. Above it is whoever called the application: uvicorn's
``proxy_headers.py``, gunicorn, or here the test, which stands in for the server
(``tests/helpers.py``' ``asgi_call``, ``wsgi_request``) or calls a test client.
That frame was named as the hop's call site. Each request's causes are compared
whole, call sites included.

Under the real ASGIHandler the caller's frame is linked to the handler's on
Python 3.13, and on every Python with the pure-Python hop path; the C
accelerator's wrapper around the handler's coroutine hides it on 3.11 and 3.12
(the walk then reaches the loop's dispatch). The WSGI and test-client cases are
linked everywhere.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.decorators import user_passes_test
from django.http import HttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path

from tests.helpers import asgi_request, capture, causes, wsgi_request


def passes(user):
    return True


async def apasses(user):
    return True


@user_passes_test(passes)  # async view: Django runs passes through sync_to_async
async def checked_async_view(request):
    return HttpResponse("ok")


@user_passes_test(apasses)  # sync view: Django runs apasses through async_to_sync
def checked_sync_view(request):
    return HttpResponse("ok")


class ClosingResponse(HttpResponse):
    def close(self):
        super().close()


async def closing_view(request):
    return ClosingResponse("ok")


async def own_view(request):
    await sync_to_async(passes)(None)  # own async hop
    return HttpResponse("own")


def own_sync_view(request):
    async_to_sync(apasses)(None)  # own sync hop
    return HttpResponse("own")


def _site_of(marker, function):
    """``tests/test_call_site_boundary.py:<line> in <function>``, the line found by its comment."""
    lines = Path(__file__).read_text().splitlines()
    number = next(i for i, line in enumerate(lines, 1) if line.endswith(f"# {marker}"))
    return f"tests/test_call_site_boundary.py:{number} in {function}"


OWN_ASYNC = _site_of("own async hop", "own_view")
OWN_SYNC = _site_of("own sync hop", "own_sync_view")

urlpatterns = [
    path("checked/async/", checked_async_view),
    path("checked/sync/", checked_sync_view),
    path("closing/", closing_view),
    path("own/", own_view),
    path("own/sync/", own_sync_view),
]

SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"

SETTINGS = {
    "ROOT_URLCONF": __name__,
    # request.user / request.auser() for the decorator, from Django's own code (a
    # middleware of this file's would be the user's frame the walk stops at)
    "MIDDLEWARE": [
        "hopwatch.middleware.HopwatchMiddleware",
        SESSIONS,
        AUTH,
    ],
}

#: The hops of an async request outside the view, under ASGI and AsyncClient: the
#: handler's, and the two MiddlewareMixin middleware's sync hooks.
OUTSIDE_ASYNC = {
    ("signal", "request_started", None): 1,
    ("middleware", f"{SESSIONS}.process_request", None): 1,
    ("middleware", f"{AUTH}.process_request", None): 1,
    ("middleware", f"{SESSIONS}.process_response", None): 1,
    ("response", "HttpResponse.close", None): 1,
}
#: The async view's one hop: Django's decorator runs the test function, not the user's code.
CHECKED_ASYNC = {**OUTSIDE_ASYNC, ("other", f"{__name__}.passes", None): 1}
CHECKED_SYNC = {("other", f"{__name__}.apasses", None): 1}


def one(records):
    assert len(records) == 1, records
    return records[0]


def test_a_hop_of_djangos_own_code_under_the_asgi_handler_names_no_server_frame():
    """The test calls the real ASGIHandler as a server does. On Django 6.1 the
    middleware chain and the view run in the handler's own task, so the walk
    from the decorator's frame went up through the handler into the caller:
    ``tests/helpers.py:... in asgi_call`` (under uvicorn, its proxy_headers.py)."""
    with override_settings(**SETTINGS), capture() as records:
        assert asgi_request("/checked/async/").body == b"ok"
    assert causes(one(records)) == CHECKED_ASYNC


def test_a_close_the_asgi_handler_makes_names_no_server_frame():
    """The handler closes the response itself (``sync_to_async(response.close)``):
    an overriding ``close``, named by the fallback until every response's close was
    kind ``response`` (tests/test_response_close.py), had the caller's frame as its
    call site."""
    with override_settings(**SETTINGS), capture() as records:
        assert asgi_request("/closing/").body == b"ok"
    expected = {**OUTSIDE_ASYNC, ("response", "ClosingResponse.close", None): 1}
    del expected[("response", "HttpResponse.close", None)]
    assert causes(one(records)) == expected


async def _as_a_test(path):
    """An async test's own frame, awaiting the AsyncClient (the frame that was named)."""
    return await AsyncClient().get(path)


def test_a_hop_of_djangos_own_code_under_the_async_client_names_no_test_frame():
    with override_settings(**SETTINGS), capture() as records:
        assert asyncio.run(_as_a_test("/checked/async/")).content == b"ok"
    assert causes(one(records)) == CHECKED_ASYNC


def test_a_hop_of_djangos_own_code_under_the_wsgi_handler_names_no_server_frame(db):
    """A sync view with an async test function: ``async_to_sync`` in Django's
    decorator, called from the view-calling handler. Every frame up to the
    WSGIHandler is Django's; the next, the server's (here ``wsgi_request``), was named.
    (db: closing the response sends request_finished, whose receiver closes connections.)"""
    with override_settings(**SETTINGS), capture() as records:
        assert wsgi_request("/checked/sync/") == ("200 OK", b"ok")
    assert causes(one(records)) == CHECKED_SYNC


def test_a_hop_of_djangos_own_code_under_the_test_client_names_no_test_frame(db):
    with override_settings(**SETTINGS), capture() as records:
        assert Client().get("/checked/sync/").content == b"ok"
    assert causes(one(records)) == CHECKED_SYNC


def test_a_hop_of_the_users_code_still_names_it(db):
    """The walk still stops at the first frame of the user's (here a view in this
    file, under the same handlers)."""
    with override_settings(**SETTINGS), capture() as records:
        assert asgi_request("/own/").body == b"own"
        assert wsgi_request("/own/sync/") == ("200 OK", b"own")
    asgi, wsgi = records
    assert causes(asgi) == {**OUTSIDE_ASYNC, ("other", f"{__name__}.passes", OWN_ASYNC): 1}
    assert causes(wsgi) == {("other", f"{__name__}.apasses", OWN_SYNC): 1}
