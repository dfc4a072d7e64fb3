"""HopwatchMiddleware: what it adds to a record, and its fallback scope."""

from __future__ import annotations

import asyncio

from django.core.handlers.base import BaseHandler
from django.test import AsyncRequestFactory, RequestFactory, override_settings

from tests.helpers import capture

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
