"""HopwatchMiddleware: what it adds to a record, and its fallback scope."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import django
import pytest
from django.core.handlers.base import BaseHandler
from django.test import AsyncRequestFactory, RequestFactory, override_settings
from django.urls import path

from tests.helpers import asgi_request, capture

HW = "hopwatch.middleware.HopwatchMiddleware"


class BareAsyncHandler(BaseHandler):
    """A handler hopwatch knows nothing about: no request_started, no close."""

    def __init__(self) -> None:
        super().__init__()
        self.load_middleware(is_async=True)


class BareSyncHandler(BaseHandler):
    def __init__(self) -> None:
        super().__init__()
        self.load_middleware(is_async=False)


def test_middleware_opens_its_own_scope_under_an_unknown_handler():
    with override_settings(MIDDLEWARE=[HW, "django.contrib.sessions.middleware.SessionMiddleware"]):
        handler = BareAsyncHandler()
        with capture() as records:
            response = asyncio.run(handler.get_response_async(AsyncRequestFactory().get("/sync/")))
    assert response.status_code == 200
    (record,) = records
    assert record.extra["scope"] == "middleware"
    # the session hooks and the sync view: the hops inside the chain only
    assert len(record) == 3
    assert record.route == "/sync/" and record.view == "tests.testapp.views.sync_view"
    assert record.interface == "asgi" and record.status == 200


def test_middleware_scope_in_sync_mode():
    with override_settings(MIDDLEWARE=[HW]):
        handler = BareSyncHandler()
        with capture() as records:
            response = handler.get_response(RequestFactory().get("/async/"))
    assert response.status_code == 200
    (record,) = records
    assert record.interface == "wsgi" and len(record) == 1 and record.new_loops == 1


def test_middleware_runs_in_the_mode_of_its_chain():
    from hopwatch.middleware import HopwatchMiddleware

    async def async_next(request):
        return None

    def sync_next(request):
        return None

    assert asyncio.iscoroutinefunction(HopwatchMiddleware(async_next))
    assert not asyncio.iscoroutinefunction(HopwatchMiddleware(sync_next))
    assert HopwatchMiddleware.sync_capable and HopwatchMiddleware.async_capable


# --- the async chain: no frame of hopwatch's -----------------------------------


async def _stack_view(request):
    """The files of the frames this view runs under, up to the task's start."""
    from django.http import JsonResponse

    frame, files = sys._getframe(), []
    while frame is not None:
        files.append(frame.f_code.co_filename)
        frame = frame.f_back
    return JsonResponse({"files": files})


urlpatterns = [path("stack/", _stack_view)]


def test_the_async_chain_passes_through_no_frame_of_hopwatch():
    # Python passes through every frame of the awaiting chain twice per crossing
    # (suspended, resumed): hopwatch's parts are C's `then` (the pure-Python
    # path: its `then` coroutine, one frame each), and it still names the request.
    import json

    from hopwatch import _hotpath

    with override_settings(
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[HW, "django.contrib.sessions.middleware.SessionMiddleware"],
    ), capture() as records:
        result = asgi_request("/stack/")
    assert result.status == 200
    files = json.loads(result.body)["files"]
    ours = [Path(f).name for f in files if f"{os.sep}hopwatch{os.sep}" in f]
    # Django 6.1 runs the chain in the handler's own task: the handler's `then`
    # (which opens the record) is in the chain too.
    pure = ["_hotpath_py.py"] * (2 if django.VERSION >= (6, 1) else 1)
    assert ours == ([] if _hotpath.IMPLEMENTATION == "c" else pure)
    assert any(f.endswith(f"django{os.sep}utils{os.sep}deprecation.py") for f in files)
    (record,) = records
    assert (record.route, record.view, record.status) == (
        "/stack/",
        "tests.test_middleware._stack_view",
        200,
    )
    assert record.request_id and len(record) == 4  # started, session x2, close


def test_a_chain_that_raises_still_names_the_request():
    # An exception out of the rest of the chain: the request is named without a
    # status, and the exception reaches Django (which makes the 500).
    class Boom(Exception):
        pass

    async def failing_next(request):
        await asyncio.sleep(0)
        raise Boom

    from hopwatch.middleware import HopwatchMiddleware

    middleware = HopwatchMiddleware(failing_next)
    with capture() as records, pytest.raises(Boom):
        asyncio.run(_call(middleware, AsyncRequestFactory().get("/async/")))
    (record,) = records  # the middleware opened its own scope and closed it
    assert record.status is None and record.extra["scope"] == "middleware"


async def _call(middleware, request):
    return await middleware(request)
