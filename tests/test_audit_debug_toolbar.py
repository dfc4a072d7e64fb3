"""The audit's prediction for django-debug-toolbar's middleware equals what real requests make.

The toolbar's own code crosses (``hopwatch.audit.facts.OWN_CODE``): when its
middleware runs async (under ASGI, nothing sync below it) it calls a sync
``SHOW_TOOLBAR_CALLBACK`` through ``sync_to_async`` on every request, and where
it shows the toolbar it awaits SQLPanel's ``aenable_instrumentation``, a
``sync_to_async`` of its own; running sync it calls an async callback through
``async_to_sync``. Each case below is predicted by the audit and measured
through Django's real ``ASGIHandler`` or ``WSGIHandler`` with the toolbar on
(tests/toolbar_site's set-up), shown and not shown, for an HTML page and a
JSON response, an async and a sync view.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.http import HttpResponse
from django.test import override_settings
from django.urls import path

from hopwatch import audit
from hopwatch.audit import ASGI, WSGI
from hopwatch.audit.model import VIEW_SITE
from hopwatch.hop_tax import ASYNC_TO_SYNC, NEW_LOOP, SYNC_TO_ASYNC
from tests.helpers import asgi_request, capture, sites, wsgi_call, wsgi_environ

pytest.importorskip("debug_toolbar", reason="django-debug-toolbar is not installed")

from tests.toolbar_site.settings import TOOLBAR

TOOLBAR_PATH = "debug_toolbar.middleware.DebugToolbarMiddleware"
SYNC_ONLY = "tests.testapp.middleware.SyncOnlyMiddleware"
ASYNC_ONLY = "tests.testapp.middleware.AsyncOnlyMiddleware"
DEFAULT_CALLBACK = "debug_toolbar.middleware.show_toolbar"
SQL_SITE = "debug_toolbar.panels.sql.panel.SQLPanel.enable_instrumentation"
HERE = __name__


async def json_page(request):
    """Not HTML (a plain response, as the audit predicts for): the toolbar does not
    insert itself, but runs all the same."""
    return HttpResponse(b'{"page": "json"}', content_type="application/json")


async def async_show_toolbar(request):
    """An async SHOW_TOOLBAR_CALLBACK (the toolbar awaits it when it runs async)."""
    return True


def __getattr__(name: str) -> Any:
    """Built when asked for, the toolbar being importable only once it is in
    INSTALLED_APPS: this module as the tests' ROOT_URLCONF (the toolbar site's URLs and
    /json/), and a subclass of the toolbar's middleware with an ``__acall__`` of its own."""
    if name == "urlpatterns":
        from tests.toolbar_site import urls

        return [*urls.urlpatterns, path("json/", json_page)]
    if name == "OwnCallToolbarMiddleware":
        from debug_toolbar.middleware import DebugToolbarMiddleware

        class OwnCallToolbarMiddleware(DebugToolbarMiddleware):
            async def __acall__(self, request):
                return await self.get_response(request)

        return OwnCallToolbarMiddleware
    raise AttributeError(name)


#: (path, view kind, the view's dotted path, an HTML page)
PAGES = [
    ("/page/", "async_view", "tests.toolbar_site.views.page", True),
    ("/sync/", "sync_view", "tests.toolbar_site.views.sync_page", True),
    ("/json/", "async_view", f"{HERE}.json_page", False),
]


def _config(**config: Any) -> dict[str, Any]:
    return {**TOOLBAR["DEBUG_TOOLBAR_CONFIG"], **config}


#: name: (settings over tests.toolbar_site's, whether a request from 127.0.0.1 is shown
#: the toolbar, the toolbar's own crossings per request {interface: (count, sites)}).
CASES: dict[str, tuple[dict[str, Any], bool, dict[str, tuple[int, dict[tuple[str, str], int]]]]]
CASES = {
    # The documented set-up: ASGI crosses twice, the callback and the SQL panel.
    "shown": (
        {},
        True,
        {
            ASGI: (2, {("other", DEFAULT_CALLBACK): 1, ("other", SQL_SITE): 1}),
            WSGI: (0, {}),
        },
    ),
    "not-shown-debug-off": (
        {"DEBUG": False},
        False,
        {ASGI: (1, {("other", DEFAULT_CALLBACK): 1}), WSGI: (0, {})},
    ),
    "not-shown-no-internal-ips": (
        {"INTERNAL_IPS": []},
        False,
        {ASGI: (1, {("other", DEFAULT_CALLBACK): 1}), WSGI: (0, {})},
    ),
    "sql-panel-disabled": (
        {
            "DEBUG_TOOLBAR_CONFIG": _config(
                DISABLE_PANELS={
                    "debug_toolbar.panels.sql.SQLPanel",
                    "debug_toolbar.panels.profiling.ProfilingPanel",
                    "debug_toolbar.panels.redirects.RedirectsPanel",
                }
            )
        },
        True,
        {ASGI: (1, {("other", DEFAULT_CALLBACK): 1}), WSGI: (0, {})},
    ),
    "project-callback": (
        {
            "DEBUG_TOOLBAR_CONFIG": _config(
                SHOW_TOOLBAR_CALLBACK="tests.toolbar_site.views.show_toolbar"
            )
        },
        True,
        {
            ASGI: (
                2,
                {("other", "tests.toolbar_site.views.show_toolbar"): 1, ("other", SQL_SITE): 1},
            ),
            WSGI: (0, {}),
        },
    ),
    # An async callback: none under ASGI for it, a new event loop under WSGI.
    "async-callback": (
        {"DEBUG_TOOLBAR_CONFIG": _config(SHOW_TOOLBAR_CALLBACK=f"{HERE}.async_show_toolbar")},
        True,
        {
            ASGI: (1, {("other", SQL_SITE): 1}),
            WSGI: (1, {("other", f"{HERE}.async_show_toolbar"): 1}),
        },
    ),
    # Something sync below it: the toolbar runs sync under ASGI too, and crosses nothing.
    "runs-sync": (
        {"MIDDLEWARE": [*TOOLBAR["MIDDLEWARE"], SYNC_ONLY]},
        True,
        {ASGI: (0, {}), WSGI: (0, {})},
    ),
    "runs-sync-async-callback": (
        {
            "MIDDLEWARE": [*TOOLBAR["MIDDLEWARE"], SYNC_ONLY],
            "DEBUG_TOOLBAR_CONFIG": _config(SHOW_TOOLBAR_CALLBACK=f"{HERE}.async_show_toolbar"),
        },
        True,
        {
            ASGI: (1, {("other", f"{HERE}.async_show_toolbar"): 1}),
            WSGI: (1, {("other", f"{HERE}.async_show_toolbar"): 1}),
        },
    ),
    # Something async-only below it: the toolbar runs async under WSGI too.
    "runs-async-under-wsgi": (
        {"MIDDLEWARE": [*TOOLBAR["MIDDLEWARE"], ASYNC_ONLY]},
        True,
        {
            ASGI: (2, {("other", DEFAULT_CALLBACK): 1, ("other", SQL_SITE): 1}),
            WSGI: (2, {("other", DEFAULT_CALLBACK): 1, ("other", SQL_SITE): 1}),
        },
    ),
}


@pytest.fixture
def toolbar(db):
    with override_settings(**{**TOOLBAR, "ROOT_URLCONF": HERE}):
        # Imported once the toolbar is in INSTALLED_APPS (its store module defines a model).
        from debug_toolbar.middleware import show_toolbar_func_or_path
        from debug_toolbar.store import get_store

        show_toolbar_func_or_path.cache_clear()  # the toolbar caches its callback
        get_store().clear()
        try:
            yield
        finally:
            get_store().clear()
            show_toolbar_func_or_path.cache_clear()


def wsgi_get(url: str) -> tuple[str, dict[str, str], bytes]:
    """One request through a fresh ``WSGIHandler`` from 127.0.0.1 (in INTERNAL_IPS)."""
    environ = wsgi_environ(url)
    environ["REMOTE_ADDR"] = "127.0.0.1"
    return wsgi_call(environ)


def measure(interface: str, url: str) -> tuple[Any, bool, bool]:
    """The request's record, whether the toolbar was shown (it stored the request), and
    whether it was inserted into the page."""
    with capture() as records:
        if interface == ASGI:
            result = asgi_request(url)
            assert result.status == 200
            headers = {name.decode().lower(): value for name, value in result.headers}
            body = result.body
        else:
            status, headers, body = wsgi_get(url)
            assert status.startswith("200")
    (record,) = records
    return record, "djdt-request-id" in headers, b'id="djDebug"' in body


@pytest.mark.parametrize("interface", [ASGI, WSGI])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_toolbar_prediction_equals_measurement(toolbar, case, interface):
    overrides, shown, own = case
    with override_settings(**overrides):
        report = audit.audit_settings()
        (entry,) = [e for e in report.entries if e.facts.path == TOOLBAR_PATH]
        for url, view_kind, view, html in PAGES:
            simulation = report.simulations[(interface, view_kind)]
            record, was_shown, inserted = measure(interface, url)
            assert (was_shown, inserted) == (shown, shown and html), url
            expected = {
                (kind, view if site == VIEW_SITE else site): count
                for (kind, site), count in simulation.sites().items()
            }
            adapters = simulation.adapters()
            assert len(record) == simulation.count, (url, sites(record), expected)
            assert sites(record) == expected, url
            assert record.sync_to_async == adapters[SYNC_TO_ASYNC], url
            assert record.async_to_sync == adapters[ASYNC_TO_SYNC] + adapters[NEW_LOOP], url
            assert record.new_loops == adapters[NEW_LOOP], url
        # The toolbar's own crossings, exactly, charged to its row (the same for any view).
        count, own_sites = own[interface]
        simulation = report.simulations[(interface, "async_view")]
        toolbar_hops = [hop for hop in simulation.hops if hop.row == entry.position - 1]
        assert entry.own[interface] == entry.hops[interface] == count
        assert [hop.own for hop in toolbar_hops] == [True] * count
        assert {(hop.kind, hop.site) for hop in toolbar_hops} == set(own_sites)


def test_the_documented_counts(toolbar):
    """The toolbar's documented set-up: 2 crossings of its own per ASGI request when it
    is shown, 1 when it is not; none under WSGI. Said in the table, the note and the JSON."""
    report = audit.audit_settings()
    assert report.predicted(ASGI, "async_view") == 15 + 2
    assert report.predicted(ASGI, "sync_view") == 16 + 2
    assert (report.predicted(WSGI, "async_view"), report.predicted(WSGI, "sync_view")) == (1, 0)
    (entry,) = [e for e in report.entries if e.facts.path == TOOLBAR_PATH]
    assert entry.hops == entry.own == {ASGI: 2, WSGI: 0}
    assert [note.text for note in entry.facts.notes] == [
        "its own crossings are counted for a request the toolbar is shown to (DEBUG on, a"
        " client in INTERNAL_IPS); one it is not shown to makes 1 fewer when it runs async"
        " (SQLPanel.aenable_instrumentation through sync_to_async)"
    ]
    assert "its own code 2" in audit.render_to_string(report, "text")
    assert audit.document(report)["middleware"][1]["own_hops"] == {"asgi": 2, "wsgi": 0}

    with override_settings(DEBUG=False):
        off = audit.audit_settings()
    assert off.predicted(ASGI, "async_view") == 15 + 1
    (entry,) = [e for e in off.entries if e.facts.path == TOOLBAR_PATH]
    assert entry.own == {ASGI: 1, WSGI: 0}
    assert [note.text for note in entry.facts.notes] == [
        "its own crossings are counted for a request the toolbar is not shown to (DEBUG off);"
        " one it is shown to makes 1 more when it runs async"
        " (SQLPanel.aenable_instrumentation through sync_to_async)"
    ]


def test_a_subclass_with_its_own_call_is_not_predicted(toolbar):
    """What the toolbar's code crosses says nothing of code that replaces it: a note."""
    from hopwatch.audit.facts import NOTE_OWN_CALL, gather

    (fact,) = gather([f"{HERE}.OwnCallToolbarMiddleware"])
    assert fact.own_hops == ()
    assert [note.kind for note in fact.notes] == [NOTE_OWN_CALL]
    assert fact.notes[0].text == (
        "overrides DebugToolbarMiddleware's __call__/__acall__: hops its own code makes are"
        " not predicted"
    )
