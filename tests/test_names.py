"""Routes and views named as their authors know them: regex routes as patterns, a
framework's operations by their own function (django-ninja, a test-only dependency)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from django.http import HttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import re_path

from hopwatch._django_names import regex_as_pattern
from tests.helpers import asgi_request, capture, wsgi_request

HW = "hopwatch.middleware.HopwatchMiddleware"


def _named(path: str, method: str = "GET", wsgi: bool = False) -> tuple[str | None, str | None]:
    urls = override_settings(ROOT_URLCONF="tests.ninja_site.urls", MIDDLEWARE=[HW])
    with urls, capture() as records:
        if wsgi:
            assert wsgi_request(path, method)[0].split()[0] in ("200", "201")
        else:
            assert asgi_request(path, method=method).status in (200, 201)
    (record,) = records
    return record.route, record.view


@pytest.mark.parametrize("wsgi", [False, True], ids=["asgi", "wsgi"])
@pytest.mark.parametrize(
    ("path", "method", "route", "view"),
    [
        ("/api/datasets/", "GET", "/api/datasets/", "tests.ninja_site.api.list_datasets"),
        ("/api/datasets/", "POST", "/api/datasets/", "tests.ninja_site.api.create_dataset"),
        ("/api/datasets/7/", "GET", "/api/datasets/<pk>/", "tests.ninja_site.api.get_dataset"),
        ("/api/health/", "GET", "/api/health/", "tests.ninja_site.api.health"),
        ("/regex/12/", "GET", "/regex/<pk>/page-<page>/", "tests.ninja_site.urls.paged"),
        ("/regex/12/page-3/", "GET", "/regex/<pk>/page-<page>/", "tests.ninja_site.urls.paged"),
        ("/partial/", "GET", "/partial/", "tests.testapp.views.sync_view"),
        ("/class/", "GET", "/class/", "tests.testapp.views.AsyncClassView"),
        ("/plain/", "GET", "/plain/", "tests.testapp.views.async_view"),
        # @api_view's per-function class, named by its __name__ as Django names it
        ("/wrapped-one/", "GET", "/wrapped-one/", "tests.ninja_site.urls.drf_style_one"),
        ("/wrapped-two/", "GET", "/wrapped-two/", "tests.ninja_site.urls.drf_style_two"),
    ],
)
def test_routes_and_views_are_named_as_written(path, method, route, view, wsgi, db):
    assert _named(path, method, wsgi) == (route, view)


@pytest.mark.parametrize(
    ("path", "view"),
    [
        ("/partial/", "tests.testapp.views.sync_view"),
        ("/closure/", "tests.ninja_site.urls.closure_view"),
        ("/wrapped-one/", "tests.ninja_site.urls.drf_style_one"),
    ],
)
def test_a_sync_views_hop_is_named_as_the_line_names_the_view(path, view, db):
    """The hop into a sync view under ASGI is the view's site: one name for one view
    (a partial was "functools.partial", every partial view one cause; a closure was
    named by its factory's locals)."""
    urls = override_settings(ROOT_URLCONF="tests.ninja_site.urls", MIDDLEWARE=[HW])
    with urls, capture() as records:
        assert asgi_request(path).status == 200
    (record,) = records
    assert record.view == view
    assert [cause.site for cause, _ in record.top_causes() if cause.kind == "view"] == [view]


def test_naming_a_view_runs_none_of_what_it_closes_over(db):
    """A view closing over a lazy object (SimpleLazyObject): naming the view must not
    evaluate it (it was, on the event loop, at every new view's first request)."""
    from django.urls import resolve
    from django.utils.functional import empty

    from hopwatch import _django_names
    from tests.ninja_site import urls

    view = resolve("/lazy-closure/", urlconf="tests.ninja_site.urls").func
    (cell,) = view.__closure__
    cell.cell_contents._wrapped = empty  # not evaluated yet, whatever ran before
    # named afresh: as a new view's first request names it
    _django_names._named.clear()
    _django_names._views.clear()
    urls.evaluated.clear()
    for wsgi in (False, True):
        assert _named("/lazy-closure/", wsgi=wsgi) == (
            "/lazy-closure/",
            "tests.ninja_site.urls.closure_view",
        )
    assert urls.evaluated == []
    assert cell.cell_contents._wrapped is empty


def test_a_ninja_api_is_several_views_not_its_dispatcher(db):
    # Before: every operation was "ninja.operation.async_view_wrapper" (or _async_view,
    # _sync_view, functools.partial): one row for a whole API in --by view.
    views = {_named(path)[1] for path in ("/api/datasets/", "/api/datasets/7/", "/api/health/")}
    assert len(views) == 3 and not any(v.startswith("ninja.") for v in views)


@pytest.mark.parametrize(
    ("regex", "pattern"),
    [
        (r"^static/(?P<path>.*)$", "static/<path>"),
        (r"^items/(?P<pk>[0-9]+)/$", "items/<pk>/"),
        (r"^(\d+)/(\d+)/$", "<arg>/<arg2>/"),
        (r"^x/(?P<slug>[-\w]+)/(?P<id>\d{1,4})/\Z", "x/<slug>/<id>/"),
        (r"^a\.json$", "a.json"),
        (r"^(?i)case/$", "case/"),
        (r"^api/items/<int:pk>/", "api/items/<int:pk>/"),  # a path() below a re_path()
        (r"\Aitems/(?P<pk>[0-9]+)/\Z", "items/<pk>/"),  # \A was kept as "A"
        # a repeated or optional group is shown once, without its quantifier
        (r"^tags/(?P<tag>[a-z]+/)+$", "tags/<tag>/"),  # its / as the path has it
        (r"^v(\d)+/$", "v<arg>/"),
        (r"^page(?:/(?P<n>\d+))?/$", "page/<n>/"),
        (r"^files/(?:(?P<dir>[a-z]+)/)*index/$", "files/<dir>/index/"),
        # a / at either end of a group's own pattern is the path's, outside its placeholder
        (r"^files/(?P<part>[^/]+/)*(?P<name>[^/]+)$", "files/<part>/<name>"),  # was <part><name>
        (r"^(\w+/)+edit/$", "<arg>/edit/"),
        (r"^docs(?P<rest>/.*)?$", "docs/<rest>"),
        (r"^a/(?P<tree>(?:[a-z]+/)+)end/$", "a/<tree>/end/"),
        (r"^(?P<y>\d{4})/(?P<m>\d{2}\/)(?P<d>\d{2})/$", "<y>/<m>/<d>/"),
        (r"^a/(?P<sep>/)b$", "a/<sep>/b"),
        # no / the group always has: an optional one, one alternative's, one in a class
        (r"^a/(?P<x>[a-z]+/?)$", "a/<x>"),
        (r"^a/(?P<x>b|c/)d$", "a/<x>d"),
        (r"^a/(?P<x>[a-z/]+)$", "a/<x>"),
    ],
)
def test_regex_routes_read_as_patterns(regex, pattern):
    assert regex_as_pattern(regex) == pattern


def _any_view(request, **kwargs):
    return HttpResponse("ok")


urlpatterns = [
    re_path(r"^tags/(?P<tag>[a-z]+/)+$", _any_view),
    re_path(r"^page(?:/(?P<n>\d+))?/$", _any_view),
    re_path(r"^files/(?:(?P<dir>[a-z]+)/)*index/$", _any_view),
    re_path(r"^files/(?P<part>[^/]+/)*(?P<name>[^/]+)$", _any_view),
]


def _routes_served(paths: list[str], interface: str) -> list[Any]:
    """The records of ``paths`` served by this module's URLs, each a 200, through the
    test Client or Django's ASGIHandler."""
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[HW]), capture() as records:
        for path in paths:
            if interface == "test-client":
                assert Client().get(path).status_code == 200
            else:
                assert asgi_request(path).status == 200
    return records


@pytest.mark.parametrize("interface", ["test-client", "asgi"])
def test_a_regex_routes_slash_inside_a_repeated_group_is_kept(interface):
    """A repeated group whose pattern ends with the path's ``/``: the line's route was
    ``/files/<part><name>``, as if the two were one segment."""
    paths = ["/files/a.txt", "/files/a/b.txt", "/files/a/b/c.txt"]
    records = _routes_served(paths, interface)
    assert [record.route for record in records] == ["/files/<part>/<name>"] * 3


@pytest.mark.parametrize("interface", ["test-client", "asgi"])
def test_regex_routes_with_a_repeated_or_optional_group_are_logged_as_patterns(interface):
    """The line's route for a re_path whose group is repeated (``+``, ``*``) or optional
    (``?``): the group once, no quantifier (with ``+`` the route ended in ``<tag>+``)."""
    paths = ["/tags/a/", "/tags/a/b/", "/page/", "/page/3/", "/files/index/", "/files/a/b/index/"]
    records = _routes_served(paths, interface)
    assert [record.route for record in records] == [
        "/tags/<tag>/",
        "/tags/<tag>/",
        "/page/<n>/",
        "/page/<n>/",
        "/files/<dir>/index/",
        "/files/<dir>/index/",
    ]


def _routed(path: str, interface: str) -> tuple[str | None, str | None]:
    """The line's (route, view) for one GET of ``path`` through ``interface``."""
    urls = override_settings(ROOT_URLCONF="tests.ninja_site.urls", MIDDLEWARE=[HW])
    with urls, capture() as records:
        if interface == "test-client":
            assert Client().get(path).status_code == 200
        elif interface == "wsgi":
            assert wsgi_request(path)[0].split()[0] == "200"
        else:
            assert asgi_request(path).status == 200
    (record,) = records
    return record.route, record.view


@pytest.mark.parametrize("interface", ["test-client", "asgi", "wsgi"])
def test_one_view_at_several_routes_is_logged_at_each(interface, db):
    """The names are cached by route and view: a view mounted at three routes is
    logged at the route each request took (with the names cached by view alone,
    every line had the route of the view's first request). The re_path's \\A and
    \\Z anchors are dropped as ^ and $ are (the line had "/Aitems/<pk>/")."""
    shared = "tests.ninja_site.urls.shared"
    seen = [_routed(path, interface) for path in ("/one/3/", "/other/x/", "/items/7/", "/one/4/")]
    assert seen == [
        ("/one/<int:pk>/", shared),
        ("/other/<slug:s>/", shared),
        ("/items/<pk>/", shared),
        ("/one/<int:pk>/", shared),
    ]


def test_each_class_based_views_hop_is_named_by_its_own_class(db):
    """Two sync class-based views under ASGI: as_view() makes each a closure of one
    code object, so the hop into each is named from the view itself, not from a
    cache keyed by that code (/b/'s hop was named after /a/'s class)."""

    async def get(path: str) -> None:
        assert (await AsyncClient().get(path)).status_code == 200

    urls = override_settings(ROOT_URLCONF="tests.ninja_site.urls", MIDDLEWARE=[HW])
    with urls, capture() as records:
        for path in ("/a/", "/b/", "/a/"):
            asyncio.run(get(path))
    named = [
        (record.route, record.view, [c.site for c, _ in record.top_causes() if c.kind == "view"])
        for record in records
    ]
    a, b = "tests.ninja_site.urls.ViewA", "tests.ninja_site.urls.ViewB"
    assert named == [("/a/", a, [a]), ("/b/", b, [b]), ("/a/", a, [a])]


def _served(requests: list[tuple[str, str]], client: str) -> list[tuple[Any, ...]]:
    """Each request's (method, line's view, its view-kind sites), served in order by
    ``client``: ``AsyncClient`` (a sync view's hop) or the sync ``Client`` (an async one's)."""

    async def serve() -> None:
        for method, path in requests:
            response = await getattr(AsyncClient(), method.lower())(path)
            assert response.status_code == 200

    urls = override_settings(ROOT_URLCONF="tests.ninja_site.urls", MIDDLEWARE=[HW])
    with urls, capture() as records:
        if client == "async-client":
            asyncio.run(serve())
        else:
            for method, path in requests:
                assert getattr(Client(), method.lower())(path).status_code == 200
    return [
        (record.method, record.view, [c.site for c, _ in record.top_causes() if c.kind == "view"])
        for record in records
    ]


_API = "tests.ninja_site.api"
#: Sync operations (their hop under AsyncClient): two paths, and a GET and a POST on one.
_SYNC_OPERATIONS = [
    ("GET", "/api/datasets/7/", f"{_API}.get_dataset"),
    ("GET", "/api/health/", f"{_API}.health"),
    ("GET", "/api/orders/", f"{_API}.list_orders"),
    ("POST", "/api/orders/", f"{_API}.create_order"),
    ("GET", "/api/datasets/7/", f"{_API}.get_dataset"),
]
#: Async operations (their hop under the sync Client): a GET and a POST on one path, another.
_ASYNC_OPERATIONS = [
    ("GET", "/api/datasets/", f"{_API}.list_datasets"),
    ("POST", "/api/datasets/", f"{_API}.create_dataset"),
    ("GET", "/api/customers/", f"{_API}.list_customers"),
    ("GET", "/api/datasets/", f"{_API}.list_datasets"),
]


@pytest.mark.parametrize(
    ("client", "operations"),
    [("async-client", _SYNC_OPERATIONS), ("test-client", _ASYNC_OPERATIONS)],
)
def test_each_ninja_operations_hop_is_named_as_the_line_names_its_view(client, operations, db):
    """Every path of a django-ninja API is one dispatcher closure (one code, qualified
    name and module): the view's site was the first operation's the process served, for
    every other one, and ``ninja.operation.sync_view_wrapper`` (or ``async_view_wrapper``)
    on a path with a GET and a POST. Now it is the line's ``view``, exactly."""
    served = _served([(method, path) for method, path, _ in operations], client)
    assert served == [(method, view, [view]) for method, _, view in operations]


def test_a_ninja_operations_hop_under_atomic_requests_is_named_as_its_view(monkeypatch, db):
    """With ``ATOMIC_REQUESTS`` the handler calls ``transaction.atomic``'s wrapper of the
    view, which names itself after ninja's dispatcher: every operation's site was
    ``ninja.operation.sync_view_wrapper``. The site is the request's view's."""
    from django.db import connections

    monkeypatch.setitem(connections.settings["default"], "ATOMIC_REQUESTS", True)
    served = _served([(method, path) for method, path, _ in _SYNC_OPERATIONS], "async-client")
    assert served == [(method, view, [view]) for method, _, view in _SYNC_OPERATIONS]


@pytest.mark.parametrize(
    ("client", "crossings"),
    [
        # the sync POST's hop is ninja's own (its async dispatcher's sync_to_async)
        ("async-client", {"GET": [], "POST": ["sync_to_async"]}),
        ("asgi", {"GET": [], "POST": ["sync_to_async"]}),  # Django's ASGIHandler, as served
        # and, under the sync Client, after the handler's into the async dispatcher
        ("test-client", {"GET": ["async_to_sync"], "POST": ["async_to_sync", "sync_to_async"]}),
    ],
)
def test_a_sync_operation_on_a_path_with_an_async_one_is_its_views_hop(client, crossings, db):
    """On a path with an async GET and a sync POST, ninja's dispatcher is async and calls
    the sync operation through ``sync_to_async`` itself (``PathView._async_view``): that
    hop read ``{"kind":"other","site":"ninja.operation.Operation.run"}`` at ninja's line.
    It is the view's, named as the line's ``view``, and nothing else is named other."""
    requests = [("POST", "/api/invoices/"), ("GET", "/api/invoices/"), ("POST", "/api/invoices/")]

    async def serve() -> None:
        for method, path in requests:
            assert (await getattr(AsyncClient(), method.lower())(path)).status_code == 200

    urls = override_settings(ROOT_URLCONF="tests.ninja_site.urls", MIDDLEWARE=[HW])
    with urls, capture() as records:
        if client == "async-client":
            asyncio.run(serve())
        elif client == "asgi":
            for method, path in requests:
                assert asgi_request(path, method=method).status == 200
        else:
            for method, path in requests:
                assert getattr(Client(), method.lower())(path).status_code == 200
    served = [
        (
            record.method,
            record.view,
            sorted(
                (cause.kind, cause.site, cause.call_site, stats.direction, stats.count)
                for cause, stats in record.top_causes()
                if cause.kind not in ("signal", "response")
            ),
        )
        for record in records
    ]
    views = {"GET": f"{_API}.list_invoices", "POST": f"{_API}.create_invoice"}
    assert served == [
        (
            method,
            views[method],
            [("view", views[method], None, way, 1) for way in crossings[method]],
        )
        for method, _ in requests
    ]


def test_views_a_decorator_renamed_by_name_alone_are_each_their_own_site(db):
    """A decorator that sets its wrapper's ``__name__`` (not its ``__qualname__``) makes
    every view it wraps one code, qualified name and module: the second view's site was
    the first's name."""
    served = _served([("GET", "/renamed-one/"), ("GET", "/renamed-two/")], "async-client")
    one, two = "tests.ninja_site.urls.renamed_one", "tests.ninja_site.urls.renamed_two"
    assert served == [("GET", one, [one]), ("GET", two, [two])]


def test_a_hop_budget_of_ninja_operations_does_not_depend_on_the_tests_order(
    tmp_path, monkeypatch, db
):
    """Two tests' budgets, each one sync operation's request under AsyncClient: recorded
    in one order, they pass in the other. Each budget holds its own operation's view
    (the second test's held the first's, and failed in the other order: "view ...: 0 -> 1")."""
    from hopwatch import _hotpath
    from hopwatch.testing import BUDGETS_ENV, hop_budget

    paths = {"test_dataset": "/api/datasets/7/", "test_health": "/api/health/"}
    budgets = tmp_path / "test_api.hops.json"
    monkeypatch.delenv(BUDGETS_ENV, raising=False)

    def run(order: list[str]) -> None:
        _hotpath.clear_caches()  # as in a new process: its first request is the first named
        urls = override_settings(ROOT_URLCONF="tests.ninja_site.urls", MIDDLEWARE=[HW])
        for name in order:
            with urls, hop_budget(name, path=budgets):
                assert asyncio.run(AsyncClient().get(paths[name])).status_code == 200

    run(["test_dataset", "test_health"])  # recorded
    monkeypatch.setenv(BUDGETS_ENV, "0")  # compared, never written
    run(["test_health", "test_dataset"])
    run(["test_dataset", "test_health"])
    common = {"response HttpResponse.close": 1, "signal request_started": 1}
    assert json.loads(budgets.read_text())["tests"] == {
        "test_dataset": {"hops": 3, "sites": {**common, f"view {_API}.get_dataset": 1}},
        "test_health": {"hops": 3, "sites": {**common, f"view {_API}.health": 1}},
    }


_URLS = "tests.ninja_site.urls"


@pytest.mark.parametrize("how", ["traced", "partial", "wrapt"])
@pytest.mark.parametrize(
    ("client", "views"),
    [
        ("async-client", ["traced_one", "traced_two", "traced_one"]),
        ("test-client", ["traced_async_two", "traced_async_one", "traced_async_two"]),
    ],
)
def test_views_wrapped_by_an_instance_are_each_their_own_site(how, client, views, db):
    """Views wrapped the same way by a callable instance (an agent's wrapper: wrapt's
    ``FunctionWrapper``, ddtrace's over every view; a ``functools.partial`` of one) are
    one key of the hop path, their wrapper's class: every view's site was the first
    view's the process served. Each line's view site is now its own ``view``."""
    if how == "wrapt":
        pytest.importorskip("wrapt")
    served = _served([("GET", f"/{how}/{view}/") for view in views], client)
    assert served == [("GET", f"{_URLS}.{view}", [f"{_URLS}.{view}"]) for view in views]
