"""Routes and views named as their authors know them: regex routes as patterns, a
framework's operations by their own function (django-ninja, a test-only dependency)."""

from __future__ import annotations

import pytest
from django.test import override_settings

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
    ],
)
def test_routes_and_views_are_named_as_written(path, method, route, view, wsgi, db):
    assert _named(path, method, wsgi) == (route, view)


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
    ],
)
def test_regex_routes_read_as_patterns(regex, pattern):
    assert regex_as_pattern(regex) == pattern
