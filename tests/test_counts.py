"""Exact hop counts and causes for real Django requests.

Every number here was measured through Django's real handlers (``ASGIHandler``,
``WSGIHandler``, the test ``Client`` and ``AsyncClient``) and is pinned for
every supported combination: Django 5.2 (asgiref 3.8.1), 6.0 (asgiref 3.9.1)
and 6.1 (asgiref 3.13.0). They match what the project brief measured
independently on Django 5.2.19 + asgiref 3.13.0: 15 hops for an async view
behind startproject's middleware, 16 for a sync view, 2 and 3 with no
middleware.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path

from tests.helpers import asgi_call, asgi_request, capture, sites, wsgi_request
from tests.testapp import views

HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]
DEFAULT = settings.MIDDLEWARE  # hopwatch + startproject's seven

# The 13 MiddlewareMixin hook hops of startproject's stack under ASGI.
DEFAULT_STACK_HOOKS = {
    ("middleware", f"{path}.{hook}"): 1
    for path, hooks in [
        ("django.middleware.security.SecurityMiddleware", ["process_request", "process_response"]),
        ("django.contrib.sessions.middleware.SessionMiddleware", ["process_request", "process_response"]),
        ("django.middleware.common.CommonMiddleware", ["process_request", "process_response"]),
        ("django.middleware.csrf.CsrfViewMiddleware", ["process_request", "process_view", "process_response"]),
        ("django.contrib.auth.middleware.AuthenticationMiddleware", ["process_request"]),
        ("django.contrib.messages.middleware.MessageMiddleware", ["process_request", "process_response"]),
        ("django.middleware.clickjacking.XFrameOptionsMiddleware", ["process_response"]),
    ]
    for hook in hooks
}  # fmt: skip
OUTSIDE_CHAIN = {("signal", "request_started"): 1, ("response", "HttpResponse.close"): 1}


def one(records):
    assert len(records) == 1, records
    return records[0]


@pytest.mark.parametrize(
    ("middleware", "path", "hops", "expected_sites"),
    [
        (DEFAULT, "/async/", 15, {**DEFAULT_STACK_HOOKS, **OUTSIDE_CHAIN}),
        (DEFAULT, "/class/", 15, {**DEFAULT_STACK_HOOKS, **OUTSIDE_CHAIN}),
        (
            DEFAULT,
            "/sync/",
            16,
            {**DEFAULT_STACK_HOOKS, **OUTSIDE_CHAIN, ("view", "tests.testapp.views.sync_view"): 1},
        ),
        (HOPWATCH_ONLY, "/async/", 2, OUTSIDE_CHAIN),
        (HOPWATCH_ONLY, "/sync/", 3, {**OUTSIDE_CHAIN, ("view", "tests.testapp.views.sync_view"): 1}),
    ],
    ids=["default-async", "default-class-async", "default-sync", "none-async", "none-sync"],
)
def test_asgi_counts(middleware, path, hops, expected_sites):
    with override_settings(MIDDLEWARE=middleware), capture() as records:
        assert asgi_request(path).status == 200
    record = one(records)
    assert len(record) == hops
    assert record.sync_to_async == hops and record.async_to_sync == 0
    assert record.max_depth == 1 and record.new_loops == 0
    assert sites(record) == expected_sites
    assert record.interface == "asgi" and record.status == 200 and record.method == "GET"
    assert record.route == path


def test_class_based_view_is_named_by_its_class():
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        asgi_request("/class/")
    assert one(records).view == "tests.testapp.views.AsyncClassView"


def test_unhandled_exception_adds_the_exception_handling_hops():
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        assert asgi_request("/error/").status == 500
    record = one(records)
    assert len(record) == 5
    assert sites(record) == {
        ("signal", "request_started"): 1,
        ("exception", "process_exception_by_middleware"): 1,
        ("exception", "response_for_exception"): 1,
        ("exception", "log_response"): 1,
        ("response", "HttpResponseServerError.close"): 1,
    }
    with override_settings(MIDDLEWARE=DEFAULT), capture() as records:
        asgi_request("/error/")
    assert len(one(records)) == 18  # 15 + the three exception-handling hops


def test_not_found_is_logged_with_its_path_and_no_view():
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        assert asgi_request("/no/such/page/").status == 404
    record = one(records)
    assert len(record) == 4  # request_started, response_for_exception, log_response, close
    assert record.route is None and record.view is None and record.path == "/no/such/page/"


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")
def test_streaming_a_sync_iterator_under_asgi_adds_one_hop():
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        assert asgi_request("/stream/sync/").body == b"ab"
    record = one(records)
    assert len(record) == 4
    assert sites(record)[("stream", "StreamingHttpResponse (sync iterator)")] == 1
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        assert asgi_request("/stream/async/").body == b"ab"
    assert len(one(records)) == 2  # an async iterator streams without a hop


def test_a_static_file_served_under_asgi_is_buffered_as_a_sync_stream(tmp_path):
    """ASGIStaticFilesHandler buffers a static file's FileResponse (a sync iterator)
    in one sync_to_async(list), inside a function of Django's named ``awrapper``:
    the stream buffering docs/causes.md describes, not an async API (it was kind
    ``other``, site ``get_response_async.awrapper``, and the report advised
    batching your own sync_to_async calls)."""
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    (tmp_path / "site.css").write_text("body {}")
    apps = [*settings.INSTALLED_APPS, "django.contrib.staticfiles"]
    with (
        override_settings(
            INSTALLED_APPS=apps, STATICFILES_DIRS=[str(tmp_path)], MIDDLEWARE=HOPWATCH_ONLY
        ),
        capture() as records,
    ):
        result = asyncio.run(asgi_call(ASGIStaticFilesHandler(ASGIHandler()), "/static/site.css"))
    assert result.body == b"body {}"
    assert sites(one(records)) == {
        ("other", "django.contrib.staticfiles.handlers.ASGIStaticFilesHandler.serve"): 1,
        ("signal", "request_started"): 1,
        ("stream", "StreamingHttpResponse (sync iterator)"): 1,
        ("response", "FileResponse.close"): 1,
    }


def test_nested_hops_have_depth():
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        asgi_request("/nested/")
    record = one(records)
    assert (len(record), record.sync_to_async, record.async_to_sync) == (5, 4, 1)
    assert record.max_depth == 3
    depths = sorted(hop.depth for hop in record.hops())
    assert depths == [1, 1, 1, 2, 3]
    middle = next(h for h in record.hops() if h.cause.site.endswith("._middle"))
    assert middle.cause.kind == "other"
    assert middle.cause.call_site.startswith("tests/testapp/views.py:")
    assert middle.cause.call_site.endswith(" in nested_view")


# --- the names of the callables a view calls across --------------------------------------------


class Service:
    """An app's service object: a view calls its methods across, each a site of its own."""

    @classmethod
    def load(cls):
        return cls.__name__

    @staticmethod
    def build():
        return "built"

    def fetch(self):
        return "fetched"


def _plain():
    return "plain"


CALLED_ACROSS = {
    "classmethod": (Service.load, "tests.test_counts.Service.load"),
    "staticmethod": (Service.build, "tests.test_counts.Service.build"),
    "method": (Service().fetch, "tests.test_counts.Service.fetch"),
    "partial-method": (functools.partial(Service().fetch), "tests.test_counts.Service.fetch"),
    "function": (_plain, "tests.test_counts._plain"),
}


async def _called_across_view(request, name):
    await sync_to_async(CALLED_ACROSS[name][0])()
    return HttpResponse(name)


urlpatterns = [path("across/<str:name>/", _called_across_view)]


@pytest.mark.parametrize("name", list(CALLED_ACROSS))
def test_a_callable_called_across_is_named_by_its_own_class_and_name(name):
    """The fallback names (no rule of hopwatch's knows the callable): a classmethod
    is named by its class (it was "builtins.type.load": the class's own class)."""
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        assert asyncio.run(AsyncClient().get(f"/across/{name}/")).status_code == 200
    record = one(records)
    assert [(c.kind, c.site) for c, _ in record.top_causes() if c.kind == "other"] == [
        ("other", CALLED_ACROSS[name][1])
    ]
    (hop,) = [hop for hop in record.hops() if hop.cause.kind == "other"]
    assert hop.cause.call_site.endswith(" in _called_across_view")


# --- middleware adaptation ------------------------------------------------------------

SYNC_ONLY = "tests.testapp.middleware.SyncOnlyMiddleware"
ASYNC_CAPABLE = "tests.testapp.middleware.AsyncCapableMiddleware"


def test_sync_only_middleware_in_an_async_stack():
    with override_settings(MIDDLEWARE=[*HOPWATCH_ONLY, SYNC_ONLY]), capture() as records:
        asgi_request("/async/")
    record = one(records)
    # request_started, sync_to_async into the sync chain, async_to_sync back
    # out to the async view, close.
    assert (len(record), record.sync_to_async, record.async_to_sync) == (4, 3, 1)
    assert sites(record) == {**OUTSIDE_CHAIN, ("middleware", SYNC_ONLY): 2}
    assert record.max_depth == 2 and record.new_loops == 0


def test_under_wsgi_the_top_of_the_chain_blames_the_async_only_middleware(db):
    """Under WSGI an async-only middleware makes the chain above it async, and
    Django adapts the top back: async_to_sync, a new event loop per request. Both
    crossings are the async-only middleware's (the top one was blamed on
    whatever middleware was first: hopwatch's own)."""
    async_only = "tests.testapp.middleware.AsyncOnlyMiddleware"
    stack = [*HOPWATCH_ONLY, ASYNC_CAPABLE, async_only, "django.middleware.common.CommonMiddleware"]
    with override_settings(MIDDLEWARE=stack), capture() as records:
        assert wsgi_request("/sync/")[0].startswith("200")
    record = one(records)
    assert (len(record), record.sync_to_async, record.async_to_sync, record.new_loops) == (2, 1, 1, 1)
    assert sites(record) == {("middleware", async_only): 2}


@pytest.mark.parametrize("async_only_first", [True, False], ids=["above", "below"])
def test_the_middleware_out_of_the_handlers_mode_is_blamed_not_its_neighbour(
    db, async_only_first
):
    """A sync-only and an async-only middleware side by side: under WSGI the chain is
    sync, so both crossings are the async-only one's; under ASGI they are the sync-only
    one's, in either order. (Under WSGI they were blamed on the sync-only middleware,
    which runs in the handler's own mode there.)"""
    async_only = "tests.testapp.middleware.AsyncOnlyMiddleware"
    pair = [async_only, SYNC_ONLY] if async_only_first else [SYNC_ONLY, async_only]
    with override_settings(MIDDLEWARE=[*HOPWATCH_ONLY, *pair]), capture() as records:
        assert wsgi_request("/sync/")[0].startswith("200")
        assert Client().get("/sync/").status_code == 200
    for record in records:
        assert (len(record), record.sync_to_async, record.async_to_sync, record.new_loops) == (
            2, 1, 1, 1,
        )  # fmt: skip
        assert sites(record) == {("middleware", async_only): 2}
    assert len(records) == 2
    with override_settings(MIDDLEWARE=[*HOPWATCH_ONLY, *pair]), capture() as records:
        asgi_request("/async/")
        assert asyncio.run(AsyncClient().get("/async/")).status_code == 200
    # the AsyncClient's handler loads the chain async, as the ASGIHandler does
    assert [sites(record) for record in records] == [
        {**OUTSIDE_CHAIN, ("middleware", SYNC_ONLY): 2}
    ] * 2


def test_async_capable_rewrite_costs_nothing():
    with override_settings(MIDDLEWARE=[*HOPWATCH_ONLY, ASYNC_CAPABLE]), capture() as records:
        asgi_request("/async/")
    assert sites(one(records)) == OUTSIDE_CHAIN


def test_adaptation_blames_the_sync_only_middleware_not_its_neighbours():
    session = "django.contrib.sessions.middleware.SessionMiddleware"
    stack = [*HOPWATCH_ONLY, ASYNC_CAPABLE, SYNC_ONLY, session]
    with override_settings(MIDDLEWARE=stack), capture() as records:
        asgi_request("/async/")
        assert asyncio.run(AsyncClient().get("/async/")).status_code == 200
    assert len(records) == 2  # the ASGIHandler's, then the AsyncClient's: blamed alike
    for record in records:
        assert sites(record) == {
            **OUTSIDE_CHAIN,
            ("middleware", SYNC_ONLY): 2,
            ("middleware", f"{session}.process_request"): 1,
            ("middleware", f"{session}.process_response"): 1,
        }
        assert record.max_depth == 3


def test_hopwatch_middleware_adds_no_hop():
    for stack in (DEFAULT, HOPWATCH_ONLY):
        with override_settings(MIDDLEWARE=stack), capture() as with_records:
            asgi_request("/async/")
        with override_settings(MIDDLEWARE=stack[1:]), capture() as without_records:
            asgi_request("/async/")
        assert len(one(with_records)) == len(one(without_records))


# --- ORM --------------------------------------------------------------------------------


@pytest.fixture
def items(transactional_db):
    from tests.testapp.models import Item

    Item.objects.bulk_create([Item(name=n) for n in ("a", "b", "c")])


def test_orm_loop_is_one_hop_per_item_with_the_call_site(items):
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        assert asgi_request("/orm/loop/").body == b"a,b,c"
    record = one(records)
    assert len(record) == 2 + 1 + 3  # signal+close, the id list, one aget per item
    by_site = {cause.site: (cause, stats) for cause, stats in record.top_causes()}
    cause, stats = by_site["QuerySet.aget"]
    assert cause.kind == "orm" and stats.count == 3
    assert cause.call_site.startswith("tests/testapp/views.py:")
    assert cause.call_site.endswith(" in orm_loop_view")
    assert by_site["QuerySet.__aiter__"][0].kind == "orm"


def test_orm_batch_is_one_hop(items):
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        assert asgi_request("/orm/batch/").body == b"a,b,c"
    record = one(records)
    assert len(record) == 3
    assert sites(record)[("orm", "QuerySet.__aiter__")] == 1


def test_orm_count(items):
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        assert asgi_request("/orm/count/").body == b"3"
    assert sites(one(records))[("orm", "QuerySet.acount")] == 1


# --- WSGI and the test clients ------------------------------------------------------------


def test_wsgi_async_view_is_the_cold_path(db):
    with override_settings(MIDDLEWARE=DEFAULT), capture() as records:
        status, body = wsgi_request("/async/")
    assert status.startswith("200") and body == b"async"
    record = one(records)
    assert (len(record), record.async_to_sync, record.new_loops) == (1, 1, 1)
    assert sites(record) == {("view", "tests.testapp.views.async_view"): 1}
    assert record.interface == "wsgi" and record.thread_count == 2


def test_wsgi_sync_view_makes_no_hop(db):
    with override_settings(MIDDLEWARE=DEFAULT), capture() as records:
        wsgi_request("/sync/")
    record = one(records)
    assert len(record) == 0 and record.thread_count == 1 and record.status == 200


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")
def test_wsgi_request_stays_open_until_the_server_closes_the_response(db):
    # The async iterator is consumed while the server iterates, after the
    # handler returned: those hops still belong to the request.
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        wsgi_request("/stream/async/")
    record = one(records)
    assert sites(record) == {
        ("view", "tests.testapp.views.stream_async_view"): 1,
        ("stream", "StreamingHttpResponse (async iterator)"): 1,
    }
    assert record.new_loops == 2


@pytest.mark.parametrize(
    ("middleware", "path", "hops", "new_loops"),
    [
        (DEFAULT, "/async/", 1, 1),
        (DEFAULT, "/sync/", 0, 0),
        (HOPWATCH_ONLY, "/async/", 1, 1),
        (HOPWATCH_ONLY, "/sync/", 0, 0),
    ],
)
def test_sync_test_client(middleware, path, hops, new_loops):
    with override_settings(MIDDLEWARE=middleware), capture() as records:
        assert Client().get(path).status_code == 200
    record = one(records)
    assert (len(record), record.new_loops) == (hops, new_loops)
    assert record.interface == "test-client"


@pytest.mark.parametrize(
    ("middleware", "path", "hops"),
    [(DEFAULT, "/async/", 15), (DEFAULT, "/sync/", 16), (HOPWATCH_ONLY, "/async/", 2), (HOPWATCH_ONLY, "/sync/", 3)],
)  # fmt: skip
def test_async_test_client(middleware, path, hops):
    with override_settings(MIDDLEWARE=middleware), capture() as records:
        assert asyncio.run(AsyncClient().get(path)).status_code == 200
    record = one(records)
    assert len(record) == hops and record.sync_to_async == hops
    assert record.interface == "test-async-client"


_IMPORTED_AFTER = """
import json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
import django
before = {m for m in ("django.test.client", "importlib.abc") if m in sys.modules}
django.setup()  # hopwatch's app installs hopwatch: django.test.client is not loaded yet
from django.test.utils import setup_test_environment
setup_test_environment()
from django.test import Client
from django.test.client import ClientHandler
from hopwatch import _recorder
records = []
_recorder.add_sink(records.append)
status = Client().get("/async/").status_code
print(json.dumps({
    "before": sorted(before),
    "abc": "importlib.abc" in sys.modules,
    "patched": hasattr(ClientHandler.__call__, "__wrapped__"),
    "status": status,
    "records": [(r.interface, r.count) for r in records],
}))
"""


def test_a_test_client_imported_after_hopwatch_is_patched_on_import():
    """In a process where hopwatch installs itself before django.test.client is
    imported, its import hook patches the test clients as the module loads, and
    the hook (duck-typed, as the import system calls it) imports no importlib.abc,
    which would bring importlib.resources into every app's process."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTED_AFTER],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["before"] == []
    assert not got["abc"]
    assert got["patched"] and got["status"] == 200
    assert got["records"] == [["test-client", 1]]


# --- concurrency and cancellation ------------------------------------------------------------


def test_fifty_concurrent_requests_never_mix():
    rng = random.Random(7)
    extra_hops = [rng.randrange(0, 9) for _ in range(60)]

    async def main() -> None:
        app = ASGIHandler()
        results = await asyncio.gather(*(asgi_call(app, f"/hops/{n}/") for n in extra_hops))
        assert [r.body for r in results] == [str(n).encode() for n in extra_hops]

    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        asyncio.run(main())
    assert len(records) == len(extra_hops)
    for record in records:
        n = int(record.path.strip("/").split("/")[1])
        assert len(record) == 2 + n, record.path
        assert record.route == "/hops/<int:n>/"
    assert sorted(len(r) - 2 for r in records) == sorted(extra_hops)


def test_client_disconnect_cancels_the_hop_and_closes_the_record():
    views.REACHED.clear()
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        # the client goes while the view's sync hop (a 0.5 s sleep) runs
        asgi_request("/slow/", disconnect_when=lambda: views.REACHED["slow"])
    record = one(records)
    assert len(record) == 3
    sleep_hop = next(h for h in record.hops() if h.cause.site == "time.sleep")
    # Django cancels the view on disconnect and sends request_finished itself.
    assert sleep_hop.outcome == "cancelled"
    assert sites(record)[("signal", "request_finished")] == 1
    assert record.status is None


# --- pinned threads ---------------------------------------------------------------------


def test_a_sync_only_middleware_pins_a_thread_and_says_which():
    with override_settings(MIDDLEWARE=[*HOPWATCH_ONLY, SYNC_ONLY]), capture() as records:
        asgi_request("/sleepy/", query="s=0.05")
    record = one(records)
    (bridge,) = [h for h in record.hops() if h.direction == "async_to_sync"]
    # the worker thread waited for the whole async view (it sleeps 50 ms)
    assert record.pinned_ns == bridge.wall_ns >= 50_000_000
    assert record.top_pinning_cause().site == SYNC_ONLY


def test_nothing_is_pinned_without_a_sync_only_middleware():
    for stack in (DEFAULT, HOPWATCH_ONLY, [*HOPWATCH_ONLY, ASYNC_CAPABLE]):
        with override_settings(MIDDLEWARE=stack), capture() as records:
            asgi_request("/sleepy/", query="s=0.01")
        record = one(records)
        assert record.pinned_ns == 0 and record.top_pinning_cause() is None


def test_nested_view_code_pins_the_thread_it_bridges_from():
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        asgi_request("/nested/")
    record = one(records)
    assert record.pinned_ns > 0
    assert record.top_pinning_cause().site.endswith("views._middle")


def _distinct_helpers(n: int) -> list:
    """``n`` sync functions of ``n`` names: ``n`` causes."""
    made = []
    for i in range(n):
        namespace: dict = {}
        exec(f"def helper_{i}():\n    return {i}\n", namespace)
        made.append(namespace[f"helper_{i}"])
    return made


_HELPERS = _distinct_helpers(300)


async def _many_causes_view(request):
    from asgiref.sync import sync_to_async
    from django.http import HttpResponse

    for helper in _HELPERS:
        await sync_to_async(helper)()
    return HttpResponse("ok")


urlpatterns += [path("many-causes/", _many_causes_view)]


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_the_views_crossing_keeps_its_own_site_past_the_per_request_cause_limit(
    log_lines, db, interface
):
    """300 causes, past the per-request limit (256): the rest go into the overflow
    cause, but the view's crossing (under WSGI an async view's ``async_to_sync``,
    which ends last, after the limit is reached) keeps an entry of its own, so the
    line lists it as SITES_LIMIT promises. Counts stay exact."""
    with override_settings(
        ROOT_URLCONF=__name__, MIDDLEWARE=["hopwatch.middleware.HopwatchMiddleware"]
    ):
        if interface == "asgi":
            asgi_request("/many-causes/")
        else:
            wsgi_request("/many-causes/")
    (line,) = log_lines.parsed()
    # ASGI: the request_started receiver and close(); WSGI: the view's async_to_sync
    assert line["hops"] == 302 if interface == "asgi" else 301
    views = [site for site in line["sites"] if site["kind"] == "view"]
    if interface == "wsgi":
        assert [(site["direction"], site["count"]) for site in views] == [("async_to_sync", 1)]
    else:
        assert views == []  # an async view under ASGI is not called across
