"""What docs/settings.md, docs/log-schema.md, docs/causes.md and the checks' messages say
of the lines, checked against real lines."""

from __future__ import annotations

import asyncio
from pathlib import Path

import django
import pytest
from asgiref.sync import iscoroutinefunction
from django.http import HttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path

from hopwatch import schema
from hopwatch._advice import SIGNAL, TASK_BACKEND
from hopwatch.checks import check_middleware
from hopwatch.conf import SETTINGS
from tests.helpers import asgi_request, capture, sites

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_startproject_middleware_alone_drops_five_causes_at_the_default_limit(log_lines, db):
    asyncio.run(AsyncClient().get("/async/"))
    (line,) = log_lines.parsed()
    assert (line["hops"], len(line["sites"]), line["sites_dropped"]) == (15, 10, 5)
    assert "makes 15 crossings of 15 causes" in SETTINGS["SITES_LIMIT"].meaning
    assert "(`sites_dropped: 5`)" in SETTINGS["SITES_LIMIT"].meaning


def test_a_cut_raw_path_is_the_limit_plus_the_dots(log_lines, db):
    with override_settings(HOPWATCH={"LOG_RAW_PATHS": True, "PATH_MAX_LENGTH": 12}):
        Client().get("/no-such-page/at-all/")
    (line,) = log_lines.parsed()
    assert line["route"] == "/no-such-pag..." and len(line["route"]) == 12 + 3
    assert "(so the route is at most this many plus 3)" in SETTINGS["PATH_MAX_LENGTH"].meaning


def test_what_w001_says_of_lines_without_the_middleware(log_lines, db):
    from tests.settings import DEFAULT_MIDDLEWARE

    with override_settings(MIDDLEWARE=DEFAULT_MIDDLEWARE):
        (message,) = check_middleware()
        Client().get("/sync/", headers={"X-Request-ID": "given-id"})
        asgi_request("/sync/", headers=[(b"x-request-id", b"given-id")])
    test_client, asgi = log_lines.parsed()
    assert (test_client["route"], test_client["view"], test_client["status"]) == ("(unresolved)", None, 200)
    assert (asgi["route"], asgi["view"], asgi["status"]) == ("(unresolved)", None, None)
    assert test_client["request_id"] != "given-id" and test_client["request_id"]
    assert asgi["request_id"] == "given-id"  # read from the ASGI scope, as the handler closes
    assert "no route or view; under WSGI a generated request_id" in message.msg
    assert "under ASGI status null" in message.msg


def test_max_in_flight_and_concurrent_ms_are_on_every_line_after_executors(log_lines, db):
    """log-schema.md listed them as present only when a setting is on, in table order."""
    Client().get("/sync/")
    (line,) = log_lines.parsed()
    keys = list(line)
    at = keys.index("executors")
    assert keys[at : at + 4] == ["executors", "max_in_flight", "concurrent_ms", "db_connections"]
    assert {"max_in_flight", "concurrent_ms"} <= {f.name for f in schema.OPTIONAL}
    text = " ".join((Path(__file__).resolve().parent.parent / "docs" / "log-schema.md").read_text().split())
    assert "except `max_in_flight` and `concurrent_ms`" in text


# --- docs/causes.md, BaseTaskBackend.aenqueue: what a native aenqueue saves, what stays ---


async def enqueue_with(request):
    """``?backend=alias``: one ``aenqueue`` of a task on that backend."""
    from tests.testapp.tasks import double

    result = await double.using(backend=request.GET["backend"]).aenqueue(21)
    return HttpResponse(result.status)


urlpatterns = [path("enqueue-with/", enqueue_with)]

TASK_BACKENDS = {
    "default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"},
    "native": {"BACKEND": "tests.testapp.tasks.NativeBackend"},
    "in-memory": {"BACKEND": "tests.testapp.tasks.NativeInMemoryBackend"},
}
TASK_ENQUEUED = ("signal", "django.tasks.signals.task_enqueued")


def _aenqueue_hops(backend: str) -> dict[tuple[str, str], int]:
    """The view's hops for one aenqueue under ASGI (request_started and close left out)."""
    with capture() as records:
        result = asgi_request("/enqueue-with/", query=f"backend={backend}")
    assert (result.status, result.body) == (200, b"READY")
    (record,) = records
    found = sites(record)
    assert found.pop(("signal", "request_started")) == 1
    assert found.pop(("response", "HttpResponse.close")) == 1
    return found


@pytest.mark.skipif(django.VERSION < (6, 0), reason="django.tasks is Django 6.0+")
def test_a_native_aenqueue_keeps_the_signals_hop_while_djangos_receiver_is_sync(
    transactional_db,
):
    """The advice was "Use a backend with native `aenqueue`" where the hop matters: a native
    aenqueue sends task_enqueued with asend(), whose sync receivers (Django's own
    log_task_enqueued) run through sync_to_async, and its async ORM calls are hops too
    (django-tasks-db 0.13's DatabaseBackend, measured: 2 hops where the default makes 1)."""
    from django.tasks.signals import log_task_enqueued, task_enqueued

    from tests.testapp.tasks import NativeBackend

    assert not iscoroutinefunction(log_task_enqueued)
    sync_receivers, async_receivers = task_enqueued._live_receivers(NativeBackend)
    assert (sync_receivers, async_receivers) == ([log_task_enqueued], [])
    with override_settings(
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["hopwatch.middleware.HopwatchMiddleware"],
        TASKS=TASK_BACKENDS,
    ):
        assert _aenqueue_hops("default") == {("other", "BaseTaskBackend.aenqueue"): 1}
        assert _aenqueue_hops("native") == {("orm", "QuerySet.acreate"): 1, TASK_ENQUEUED: 1}
        assert _aenqueue_hops("in-memory") == {TASK_ENQUEUED: 1}
        # the signal's hop goes only with no sync receiver left
        assert task_enqueued.disconnect(log_task_enqueued)
        try:
            assert _aenqueue_hops("default") == {("other", "BaseTaskBackend.aenqueue"): 1}
            assert _aenqueue_hops("native") == {("orm", "QuerySet.acreate"): 1}
            assert _aenqueue_hops("in-memory") == {}
        finally:
            task_enqueued.connect(log_task_enqueued)
    summary = " ".join(TASK_BACKEND.summary.split())
    assert "Use a backend with native" not in summary
    assert "saves that hop only where its own I/O needs no thread" in summary
    assert "its `task_enqueued.asend()` is a hop while Django's own receiver is sync" in summary
    assert "django-tasks-db's `aenqueue` makes 2, not 1" in summary
    assert "`task_enqueued` from a backend's native `aenqueue`" in SIGNAL.summary
    causes_md = " ".join((DOCS / "causes.md").read_text(encoding="utf-8").split())
    assert "(`task_enqueued.disconnect(log_task_enqueued)` drops Django's" in causes_md
    assert (
        "makes 2 hops per `aenqueue` (`QuerySet.acreate` and the signal's) where the default"
        " makes 1" in causes_md
    )
