"""HopwatchMiddleware: what it adds to a record, and its fallback scope."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import django
import pytest
from django.core.handlers.base import BaseHandler
from django.test import AsyncClient, AsyncRequestFactory, RequestFactory, override_settings
from django.urls import path
from django.utils.deprecation import MiddlewareMixin

from tests.helpers import asgi_request, capture, sites

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


def test_middleware_opens_its_own_scope_under_an_unknown_handler_with_profile_dir(
    tmp_path, log_lines
):
    """The same with ``PROFILE_DIR`` set, where the middleware takes its coroutine path
    (``__acall__``) for any request: each request's record is closed and its line
    written, as without it."""
    with override_settings(
        MIDDLEWARE=[HW, "django.contrib.sessions.middleware.SessionMiddleware"],
        HOPWATCH={"OUTPUT": "logging", "PROFILE_DIR": str(tmp_path / "profiles")},
    ):
        handler = BareAsyncHandler()
        with capture() as records:
            statuses = [
                asyncio.run(handler.get_response_async(AsyncRequestFactory().get("/sync/")))
                .status_code
                for _ in range(2)
            ]
    assert statuses == [200, 200]
    assert [(r.extra["scope"], len(r), r.route, r.interface, r.status) for r in records] == [
        ("middleware", 3, "/sync/", "asgi", 200)
    ] * 2
    assert [
        (line["route"], line["view"], line["interface"], line["hops"])
        for line in log_lines.parsed()
    ] == [("/sync/", "tests.testapp.views.sync_view", "asgi", 3)] * 2
    assert not (tmp_path / "profiles").exists()  # no profiling token: no profile

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
    # Django's exception-to-response wrapper: one around the session middleware
    # and one around the view's handler, none around hopwatch's middleware
    # (hopwatch takes it away: see test_the_wrapper_around_the_first_middleware_only)
    wrappers = [f for f in files if f.endswith(f"handlers{os.sep}exception.py")]
    assert len(wrappers) == 2
    (record,) = records
    assert (record.route, record.view, record.status) == (
        "/stack/",
        "tests.test_middleware._stack_view",
        200,
    )
    assert record.request_id and len(record) == 4  # started, session x2, close


@pytest.mark.parametrize("is_async", [True, False])
def test_the_wrapper_around_the_first_middleware_only(is_async):
    # First in MIDDLEWARE, hopwatch's middleware is the top of the chain itself;
    # anywhere else, Django's wrapper stays around it (what is above it may
    # raise nothing, but hopwatch does not judge another middleware's chain).
    from django.core.handlers.exception import convert_exception_to_response

    from hopwatch.middleware import HopwatchMiddleware

    session = "django.contrib.sessions.middleware.SessionMiddleware"
    handler_class = BareAsyncHandler if is_async else BareSyncHandler
    with override_settings(MIDDLEWARE=[HW, session]):
        first = handler_class()
    with override_settings(MIDDLEWARE=[session, HW]):
        second = handler_class()
    assert type(first._middleware_chain) is HopwatchMiddleware
    if is_async:

        async def next_one(request):
            return None
    else:

        def next_one(request):
            return None

    wrapper = convert_exception_to_response(next_one)
    assert second._middleware_chain.__code__ is wrapper.__code__  # the session's wrapper
    assert type(second._middleware_chain.__wrapped__).__name__ == "SessionMiddleware"
    # uninstalled, a handler loads Django's chain as it is
    from hopwatch import _django

    _django.uninstall()
    try:
        with override_settings(MIDDLEWARE=[HW, session]):
            bare = handler_class()
    finally:
        _django.install()
    assert bare._middleware_chain.__code__ is wrapper.__code__
    assert type(bare._middleware_chain.__wrapped__) is HopwatchMiddleware


def test_a_view_that_raises_still_gets_djangos_500_under_every_interface():
    # The wrapper hopwatch takes away converted nothing: the exception is the
    # view's, converted by the wrapper around the view's own handler.
    from django.test import AsyncClient, Client

    with override_settings(MIDDLEWARE=[HW]), capture() as records:
        sync_response = Client(raise_request_exception=False).get("/error/")
        async_response = asyncio.run(AsyncClient(raise_request_exception=False).get("/error/"))
        asgi = asgi_request("/error/")
    assert sync_response.status_code == async_response.status_code == asgi.status == 500
    assert [record.status for record in records] == [500, 500, 500]


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


def test_an_apps_coroutine_for_a_response_is_no_internal_error_of_hopwatchs(log_lines):
    """A MiddlewareMixin's ``async def process_request`` under WSGI (the app's bug: the
    request fails the same without hopwatch) hands the middleware a coroutine for a
    response: reading its status was reported as hopwatch's internal error and counted
    in the line's ``hopwatch_errors``. The line is a failing request's, no status."""
    import warnings

    from django.test import Client

    from hopwatch import _errors

    before = _errors.total()
    chain = [HW, "tests.testapp.middleware.AsyncProcessRequestMixin"]
    with (
        override_settings(MIDDLEWARE=chain, HOPWATCH={"OUTPUT": "logging"}),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", RuntimeWarning)  # the coroutine never awaited
        with pytest.raises(AttributeError, match="_resource_closers"):
            Client(raise_request_exception=False).get("/sync/")
    assert _errors.total() == before
    (line,) = log_lines.parsed()
    assert (line["route"], line["view"], line["status"]) == ("(unresolved)", None, None)
    assert "hopwatch_errors" not in line


async def _call(middleware, request):
    return await middleware(request)


# --- the middleware's begin and naming (_hotpath.begin_request, name_request: in C
# when it is built; the suite runs on both) ---


class _Ids:
    """Request ids with a known next value: a real random.Random, seeded."""

    def __init__(self):
        import random

        self.random = random.Random(7)

    def getrandbits(self, k):
        return self.random.getrandbits(k)


ID_VALUES = [
    "abc-123",
    "A.b_c:d/e+f=g-h",
    "x" * 128,
    "x" * 129,
    "",
    "bad id",
    "bad\x1b[31m",
    "caf\u00e9",
    "tab\there",
    "trailing\n",
    "\u0661\u0662",  # Arabic-Indic digits: not [0-9]
]


@pytest.mark.parametrize("header_value", [*ID_VALUES, None])
def test_begin_request_keeps_a_usable_id_and_makes_one_otherwise(header_value):
    import contextvars
    import random

    from hopwatch._hotpath import begin_request
    from hopwatch._recorder import RequestRecord, current_scope, open_request

    extra = {} if header_value is None else {"HTTP_X_REQUEST_ID": header_value}
    request = RequestFactory().post("/items/7/?q=secret", **extra)
    key = "HTTP_X_REQUEST_ID"

    def run():
        assert begin_request(current_scope, RequestRecord, request, key, _Ids()) is None
        record, _token = open_request("asgi")
        assert begin_request(current_scope, RequestRecord, request, key, _Ids()) is record
        return record

    record = contextvars.copy_context().run(run)
    assert (record.method, record.path) == ("POST", "/items/7/")
    usable = header_value in ID_VALUES[:3]
    expected = header_value if usable else f"{random.Random(7).getrandbits(64):016x}"
    assert record.request_id == expected


def test_name_request_names_from_the_match_through_the_cache():
    from django.urls import resolve

    from hopwatch import _django_names, _hotpath
    from hopwatch._recorder import RequestRecord

    request = RequestFactory().get("/sync/")
    request.resolver_match = resolve("/sync/")
    response = type("Response", (), {"status_code": 418})()
    calls = []

    def counting_names_of(match, method):
        calls.append(method)
        return _django_names.names_of(match, method)

    _django_names._named.clear()
    first, second = RequestRecord("asgi"), RequestRecord("asgi")
    for record, answer in ((first, response), (second, None)):
        _hotpath.name_request(_django_names._named, counting_names_of, record, request, answer)
        assert (record.route, record.view) == ("/sync/", "tests.testapp.views.sync_view")
        assert record.request is request
    assert (first.status, second.status) == (418, None)
    # the reference always asks names_of; C asks it once, then reads its cache
    assert calls == (["GET"] if _hotpath.IMPLEMENTATION == "c" else ["GET", "GET"])
    _hotpath.name_request(_django_names._named, counting_names_of, None, request, response)


@pytest.mark.internal_errors
def test_name_request_reports_an_error_and_never_raises():
    from hopwatch import _errors, _hotpath
    from hopwatch._recorder import RequestRecord

    request = RequestFactory().get("/sync/")
    request.resolver_match = object()  # a match: names_of is asked

    def failing_names_of(match, method):
        raise RuntimeError("names_of failed")

    before = _errors.total()
    record = RequestRecord("asgi")
    assert _hotpath.name_request({}, failing_names_of, record, request, None) is None
    assert _errors.total() == before + 1
    assert record.route is None and record.request is None
    _errors.take_for_line()  # not for the next test's line


# --- hooks inherited from one base -----------------------------------------------


class _RequestHookBase(MiddlewareMixin):
    """A project's base middleware: its subclasses inherit this one process_request."""

    def process_request(self, request):
        return None


class TenantMiddleware(_RequestHookBase):
    pass


class AuditMiddleware(_RequestHookBase):
    pass


def test_middlewares_sharing_an_inherited_hook_are_each_named_by_their_class():
    """Two MiddlewareMixin subclasses with one inherited process_request: each hop is
    named by the middleware's own class (the hook's name was cached by its function
    alone: the first class counted twice, the second missing from the line)."""
    here = "tests.test_middleware"
    stack = [HW, f"{here}.TenantMiddleware", f"{here}.AuditMiddleware"]
    with override_settings(MIDDLEWARE=stack), capture() as records:
        for _ in range(2):
            assert asyncio.run(AsyncClient().get("/async/")).status_code == 200
    for record in records:
        assert sites(record) == {
            ("signal", "request_started"): 1,
            ("middleware", f"{here}.TenantMiddleware.process_request"): 1,
            ("middleware", f"{here}.AuditMiddleware.process_request"): 1,
            ("response", "HttpResponse.close"): 1,
        }
    assert len(records) == 2
