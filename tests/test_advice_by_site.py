"""The report's advice for a cause that a section of docs/causes.md names is that section's,
not its kind's; a cause its section says to keep is not in "what to change first"; and
the report names a cause by a part that says which function, wherever the line came from.

Real requests through Django's ASGIHandler; the report built from the lines they logged.
"""

from __future__ import annotations

import asyncio
import json

import django
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.test import override_settings
from django.urls import path

from hopwatch import _advice, audit
from hopwatch.cli import main
from hopwatch.report import rank
from hopwatch.report.aggregate import Partial
from hopwatch.report.scan import Scanner
from tests.helpers import MIXIN_MODULE, asgi_request, capture, causes, package_on_path
from tests.settings import DEFAULT_MIDDLEWARE
from tests.testapp.middleware import AsyncCapableMiddleware

DJANGO_6 = django.VERSION >= (6, 0)
DJANGO_6_1 = django.VERSION >= (6, 1)
HOPWATCH = "hopwatch.middleware.HopwatchMiddleware"

SETTINGS = {
    "MIDDLEWARE": [HOPWATCH],
    "PASSWORD_HASHERS": ["django.contrib.auth.hashers.MD5PasswordHasher"],
    "CACHES": {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "db": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "hopwatch_test_cache",
        },
    },
    "TASKS": {"default": {"BACKEND": "tests.testapp.tasks.ResultKeepingBackend"}},
    "FILE_UPLOAD_MAX_MEMORY_SIZE": 1000,
}


def report(raw_lines: list[str], **options):
    scanner = Scanner(Partial())
    scanner.feed_lines([text.encode() for text in raw_lines])
    return rank.build_document(scanner.finish(), rank.ReportOptions(top=0, **options), ["x"])


@pytest.fixture
def django6_site(transactional_db):
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from tests.testapp.models import Item

    with override_settings(**SETTINGS):
        call_command("createcachetable", verbosity=0)
        get_user_model().objects.create_user("alice", password="right")
        Item.objects.bulk_create([Item(name=name) for name in "abcdefg"])
        yield


needs_6 = pytest.mark.skipif(not DJANGO_6, reason="the cause is Django 6.0+")
needs_6_1 = pytest.mark.skipif(not DJANGO_6_1, reason="the cause is Django 6.1+")

#: (request, {the view's cause's site: (its advice's key, fixable)}); the causes every
#: request here has outside the view (request_started, the response's close) left out.
CASES = {
    # "Keep them": never a thing to change first
    "acheck_password": pytest.param(
        ("/login/", {"query": "username=alice"}),
        {"QuerySet.aget": ("orm", True), "acheck_password": ("password-check", False)},
        marks=needs_6,
    ),
    "acheck_password-unknown-user": pytest.param(
        ("/login/", {"query": "username=nobody"}),
        {
            "QuerySet.aget": ("orm", True),
            "acheck_password (unknown user)": ("password-check", False),
        },
        marks=needs_6_1,
    ),
    # a request body, not a streaming response's iterator
    "request-body": pytest.param(
        ("/upload/", {"method": "POST", "body": [b"x" * 400] * 10}),
        {"request body (written to disk)": ("request-body-to-disk", True)},
        marks=needs_6,
    ),
    "async-page": pytest.param(
        ("/paginate/", {"query": "of=tuple"}),
        {"AsyncPage.aget_object_list": ("async-page", True)},
        marks=needs_6,
    ),
    "tasks": pytest.param(
        ("/enqueue/", {"query": "task=sync"}),
        {
            "BaseTaskBackend.aenqueue": ("task-backend", True),
            "BaseTaskBackend.aget_result": ("task-backend", True),
        },
        marks=needs_6,
    ),
    "cache-bulk": pytest.param(
        ("/cache/", {"query": "cache=db&op=get_many"}),
        {"BaseCache.aget_many": ("cache-bulk", True)},
        marks=needs_6_1,
    ),
    # an aget per key: the user's own loop, or aget_many's loop (DatabaseCache before 6.1,
    # LocMemCache on any version); docs/causes.md's cache section, not "batch them"
    "cache-per-key-own-loop": pytest.param(
        ("/cache/", {"query": "cache=db&op=get_each"}),
        {"BaseCache.aget": ("cache-per-key", True)},
    ),
    "cache-per-key-aget-many-db": pytest.param(
        ("/cache/", {"query": "cache=db&op=get_many"}),
        {"BaseCache.aget": ("cache-per-key", True)},
        marks=pytest.mark.skipif(DJANGO_6_1, reason="on 6.1 one hop to get_many (cache-bulk)"),
    ),
    "cache-per-key-aget-many-locmem": pytest.param(
        ("/cache/", {"query": "cache=default&op=get_many"}),
        {"BaseCache.aget": ("cache-per-key", True)},
    ),
    "cache-aclose": pytest.param(
        ("/cache/", {"query": "cache=db&op=close"}),
        {"BaseCache.aclose": ("cache-bulk", True)},
        marks=needs_6_1,
    ),
    "aiterator": pytest.param(
        ("/aiterator/", {"query": "chunk=3"}),
        {"QuerySet.aiterator": ("orm-aiterator", True)},
    ),
}
OUTSIDE = {"request_started", "HttpResponse.close"}


@pytest.mark.parametrize(("request_", "expected"), CASES.values(), ids=CASES.keys())
def test_a_cause_its_section_names_gets_that_sections_advice(
    django6_site, log_lines, tmp_path, capsys, request_, expected
):
    url, kwargs = request_
    assert asgi_request(url, **kwargs).status == 200
    doc = report(log_lines.raw)
    (row,) = doc["rows"]
    got = {
        cause["site"]: (cause["advice"]["key"], cause["advice"]["fixable"])
        for cause in row["causes"]
        if cause["site"] not in OUTSIDE
    }
    assert got == expected
    listed = {cause["site"]: cause["advice"]["key"] for cause in doc["fixable"]}
    assert listed == {site: key for site, (key, fixable) in expected.items() if fixable}
    by_key = {advice.key: advice for advice in _advice.ALL}
    for cause in doc["fixable"]:
        assert cause["advice"]["summary"] == by_key[cause["advice"]["key"]].summary
    # the text says so too: no kind's advice for a cause its own section names
    log = tmp_path / "app.log"
    log.write_text("\n".join(log_lines.raw) + "\n", encoding="utf-8")
    assert main(["report", str(log), "--format", "text", "--jobs", "1"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for key, _fixable in expected.values():
        if key not in ("orm",) and _fixable:
            assert by_key[key].summary in text
    assert _advice.OTHER.summary not in text
    assert _advice.STREAM.summary not in text


# --- django-debug-toolbar's own crossings ------------------------------------------------


@pytest.fixture
def toolbar(db):
    pytest.importorskip("debug_toolbar", reason="django-debug-toolbar is not installed")
    from tests.toolbar_site.settings import TOOLBAR

    with override_settings(**TOOLBAR):
        from debug_toolbar.middleware import show_toolbar_func_or_path
        from debug_toolbar.store import get_store

        show_toolbar_func_or_path.cache_clear()  # the toolbar caches its callback
        get_store().clear()
        try:
            yield
        finally:
            get_store().clear()
            show_toolbar_func_or_path.cache_clear()


SQL_SITE = "debug_toolbar.panels.sql.panel.SQLPanel.enable_instrumentation"


@pytest.mark.parametrize(
    "callback",
    ["debug_toolbar.middleware.show_toolbar", "tests.toolbar_site.views.show_toolbar"],
)
def test_the_toolbars_own_crossings_get_the_toolbars_advice(
    toolbar, log_lines, tmp_path, capsys, callback
):
    """Its default callback, a project's sync callback it calls (named by the project's
    function, at the toolbar's line) and its SQL panel: the advice audit.md gives (an
    async callback), not "your own calls: batch them"; its line is not called yours."""
    from tests.toolbar_site.settings import TOOLBAR

    config = {**TOOLBAR["DEBUG_TOOLBAR_CONFIG"], "SHOW_TOOLBAR_CALLBACK": callback}
    with override_settings(DEBUG_TOOLBAR_CONFIG=config):
        assert asgi_request("/page/").status == 200
    doc = report(log_lines.raw)
    (row,) = doc["rows"]
    # every cause of the endpoint, and every fixable one (a row lists its first 10, the
    # report's list its first 5, by overhead: which depends on the machine's load)
    (detail,) = report(log_lines.raw, endpoint=row["label"])["rows"]
    toolbars = {
        (cause["site"], cause["call_site"].split(":", 1)[0]): cause["advice"]["key"]
        for cause in detail["causes"]
        if cause["kind"] == "other"
    }
    assert toolbars == {
        (callback, "debug_toolbar/middleware.py"): "debug-toolbar",
        (SQL_SITE, "debug_toolbar/panels/sql/panel.py"): "debug-toolbar",
    }
    scanner = Scanner(Partial())
    scanner.feed_lines([text.encode() for text in log_lines.raw])
    fixable = rank.fixable_causes(scanner.finish(), limit=100)
    toolbar_items = [c for c in fixable if c["advice"]["key"] == "debug-toolbar"]
    assert len(toolbar_items) == 2
    assert {c["advice"]["summary"] for c in toolbar_items} == {_advice.DEBUG_TOOLBAR.summary}
    assert "SHOW_TOOLBAR_CALLBACK" in _advice.DEBUG_TOOLBAR.summary
    assert "`async def` under ASGI" in _advice.DEBUG_TOOLBAR.summary
    log = tmp_path / "app.log"
    log.write_text("\n".join(log_lines.raw) + "\n", encoding="utf-8")
    assert main(["report", str(log), "--endpoint", row["label"], "--format", "text"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert _advice.DEBUG_TOOLBAR.summary in text
    assert _advice.OTHER.summary not in text
    assert "your line that made the call" not in text
    assert "yours, or a third-party package's (django-debug-toolbar's)" in text


def test_a_callback_the_toolbar_called_on_windows_gets_the_toolbars_advice(toolbar, log_lines):
    """A project's callback is the toolbar's crossing by its call site, in the toolbar's
    package: written on Windows, ``debug_toolbar\\middleware.py:NN in …``."""
    from tests.toolbar_site.settings import TOOLBAR

    callback = "tests.toolbar_site.views.show_toolbar"
    config = {**TOOLBAR["DEBUG_TOOLBAR_CONFIG"], "SHOW_TOOLBAR_CALLBACK": callback}
    with override_settings(DEBUG_TOOLBAR_CONFIG=config):
        assert asgi_request("/page/").status == 200
    (raw,) = log_lines.raw
    assert raw.count('"debug_toolbar/middleware.py:') == 1
    windows = raw.replace('"debug_toolbar/middleware.py:', '"debug_toolbar\\\\middleware.py:')
    (row,) = report([windows])["rows"]
    # every cause of the endpoint (a row lists its first 10 by overhead, which depends on
    # the machine's load: the callback's was sometimes not among them)
    (detail,) = report([windows], endpoint=row["label"])["rows"]
    (cause,) = [cause for cause in detail["causes"] if cause["site"] == callback]
    assert cause["call_site"].startswith("debug_toolbar\\middleware.py:")
    assert cause["advice"]["key"] == "debug-toolbar"


def test_the_toolbars_own_sync_view_gets_the_views_advice_not_the_callbacks(
    toolbar, log_lines
):
    """The toolbar's advice is about the callback it calls (an ``other`` crossing): its own
    sync views, as ``render_panel`` that its JavaScript fetches, are sync views under ASGI,
    a ``view`` crossing with the advice for one."""
    query = "request_id=gone&panel_id=HopsPanel"
    assert asgi_request("/__debug__/render_panel/", query=query).status == 200
    (row,) = report(log_lines.raw)["rows"]
    (detail,) = report(log_lines.raw, endpoint=row["label"])["rows"]
    toolbars = {
        (cause["kind"], cause["site"]): cause["advice"]["key"]
        for cause in detail["causes"]
        if cause["site"].startswith("debug_toolbar.")
    }
    assert toolbars == {
        ("view", "debug_toolbar.views.render_panel"): "view-sync-under-asgi",
        ("other", "debug_toolbar.middleware.show_toolbar"): "debug-toolbar",
    }


# --- the audit: no process_view rewrite for Django's own middleware ----------------------

STARTPROJECT = [p for p in DEFAULT_MIDDLEWARE if not p.startswith("hopwatch.")]
SYNC_LAST = [*STARTPROJECT[:-1], "tests.testapp.middleware.SyncLastXFrameOptionsMiddleware"]
CSRF = "django.middleware.csrf.CsrfViewMiddleware"


def test_the_audit_offers_no_async_process_view_for_csrf(db):
    """After the audit's own first change (the last middleware sync-only) CSRF's
    process_view is the chain's one hook hop, measured; docs/causes.md: it stays either
    way. The audit offered "[D] async process_view" for Django's own middleware."""
    with override_settings(MIDDLEWARE=[HOPWATCH, *SYNC_LAST]), capture() as records:
        assert asgi_request("/async/").status == 200
    (record,) = records
    hooks = {site: n for (kind, site, _call), n in causes(record).items() if kind == "middleware"}
    assert hooks[f"{CSRF}.process_view"] == 1
    with override_settings(MIDDLEWARE=SYNC_LAST):
        audited = audit.audit_settings()
    (csrf,) = [entry for entry in audited.entries if entry.facts.path == CSRF]
    assert [(hook.name, hook.hops["asgi"]) for hook in csrf.hooks if hook.hops["asgi"]] == [
        ("process_view", 1)
    ]
    assert csrf.advice == []
    assert [w.change for w in csrf.what_ifs] == []
    text = audit.render_to_string(audited, "text")
    assert "[D]" not in text and "async process_view" not in text
    assert "make #" not in text or "process_view async def" not in text


XVIEW = "django.contrib.admindocs.middleware.XViewMiddleware"


def test_the_audit_offers_no_async_process_view_for_djangos_own_outside_django_middleware(db):
    """admindocs' XViewMiddleware has a sync process_view only, a hop under ASGI: Django's
    own too (``django.contrib``, not ``django.middleware``), so no "async process_view"."""
    with override_settings(MIDDLEWARE=[HOPWATCH, *STARTPROJECT, XVIEW]), capture() as records:
        assert asgi_request("/async/").status == 200
    (record,) = records
    hooks = {site: n for (kind, site, _call), n in causes(record).items() if kind == "middleware"}
    assert [(site, n) for site, n in hooks.items() if site.startswith(XVIEW)] == [
        (f"{XVIEW}.process_view", 1)
    ]
    with override_settings(MIDDLEWARE=[*STARTPROJECT, XVIEW]):
        audited = audit.audit_settings()
    (xview,) = [entry for entry in audited.entries if entry.facts.path == XVIEW]
    assert [(hook.name, hook.hops["asgi"]) for hook in xview.hooks] == [("process_view", 1)]
    assert xview.advice == []
    assert [w.change for w in xview.what_ifs] == []
    text = audit.render_to_string(audited, "text")
    assert "[D]" not in text and "async process_view" not in text


# --- a middleware's own hooks -----------------------------------------------------------


class AsyncExceptionHook(AsyncCapableMiddleware):
    """Sync and async capable, with an ``async def`` process_exception: Django's handler
    always calls process_exception sync, so under ASGI it is one ``async_to_sync``."""

    async def process_exception(self, request, exception):
        return None


def _middleware_advice(raw_lines: list[str]) -> dict[str, str]:
    """The report's "what to change first" middleware causes: site -> advice key."""
    return {
        cause["site"]: cause["advice"]["key"]
        for cause in report(raw_lines)["fixable"]
        if cause["kind"] == "middleware"
    }


def test_a_third_party_package_named_django_something_gets_its_own_hooks_advice(
    tmp_path, log_lines
):
    """``django_otp`` is not Django: its mixin's hook is a middleware of its own to change
    (without the mixin), not one of "Django's own middleware hooks"."""
    module = {"middleware": MIXIN_MODULE.format(name="OTPMiddleware")}
    stack = [HOPWATCH, "django_otp.middleware.OTPMiddleware"]
    with (
        package_on_path(tmp_path / "site-packages", "django_otp", module),
        override_settings(MIDDLEWARE=stack),
    ):
        assert asgi_request("/async/").status == 200
    assert _middleware_advice(log_lines.raw) == {
        "django_otp.middleware.OTPMiddleware.process_request": "middleware-own-hook"
    }


def test_an_async_process_exception_gets_the_handlers_hooks_advice(log_lines):
    """Django's handler adapts process_exception, not the middleware's flags: the advice
    is the one that says it is always called sync, not the sync-only middleware's."""
    stack = [HOPWATCH, f"{__name__}.AsyncExceptionHook"]
    with override_settings(MIDDLEWARE=stack), capture() as records:
        assert asgi_request("/error/").status == 500
    (record,) = records
    site = f"{__name__}.AsyncExceptionHook.process_exception"
    assert causes(record)[("middleware", site, None)] == 1
    assert _middleware_advice(log_lines.raw) == {site: "middleware-process-view"}
    assert "`process_exception` is always called sync" in _advice.MIDDLEWARE_PROCESS_VIEW.summary


# --- short names: a function defined in another, a call site written on Windows ------------


@login_required
async def private(request):
    return HttpResponse("private")


async def gathered(request):
    """Two lambdas made in a generator expression, each through ``sync_to_async``."""
    values = await asyncio.gather(*(sync_to_async(lambda n=n: n)() for n in range(2)))
    return HttpResponse(str(sum(values)))


urlpatterns = [path("private/", private), path("gathered/", gathered)]
LOGIN = [
    HOPWATCH,
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
DETAIL = {"OUTPUT": "logging", "DETAIL": True}
LAMBDA = "django.contrib.auth.decorators.login_required.<locals>.<lambda>"


def _shown(tmp_path, capsys, raw_lines, *args):
    """Each format's output; with ``--request-id``, the formats that draw one request."""
    log = tmp_path / "app.log"
    log.write_text("\n".join(raw_lines) + "\n", encoding="utf-8")
    out = {}
    one = "--request-id" in args
    for name in ("html", "trace") if one else ("text", "markdown", "html"):
        assert main(["report", str(log), "--format", name, "--jobs", "1", *args]) == 0
        out[name] = capsys.readouterr().out
    return out


def test_a_lambda_in_a_decorator_is_named_by_the_decorator(db, log_lines, tmp_path, capsys):
    """``@login_required`` on an async view runs its lambda through ``sync_to_async``: the
    report named it ``<locals>.<lambda>``, which says nothing of whose."""
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=LOGIN, HOPWATCH=DETAIL):
        assert asgi_request("/private/").status == 302
    (line,) = log_lines.parsed()
    assert [s["site"] for s in line["sites"] if s["kind"] == "other"] == [LAMBDA]
    escaped = "login_required.&lt;locals&gt;.&lt;lambda&gt;"
    shown = _shown(tmp_path, capsys, log_lines.raw)
    one_request = _shown(tmp_path, capsys, log_lines.raw, "--request-id", line["request_id"])
    assert "other login_required.<locals>.<lambda>" in one_request["trace"]
    assert r"login\_required.\<locals\>.\<lambda\>" in shown.pop("markdown")
    assert escaped in shown.pop("html")
    assert escaped in one_request["html"]
    assert "login_required.<locals>.<lambda>" in shown.pop("text")
    by_site = _shown(tmp_path, capsys, log_lines.raw, "--by", "site")["text"]
    assert "login_required.<locals>.<lambda>" in by_site
    assert " <locals>.<lambda>" not in by_site


def test_a_lambda_in_a_generator_expression_is_named_back_to_its_function(
    db, log_lines, tmp_path, capsys
):
    """``<genexpr>.<lambda>`` says nothing of whose: the name goes back past every
    ``<…>`` part to the function that made them."""
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[HOPWATCH], HOPWATCH=DETAIL):
        assert asgi_request("/gathered/").status == 200
    (line,) = log_lines.parsed()
    site = f"{__name__}.gathered.<locals>.<genexpr>.<lambda>"
    assert [(s["site"], s["count"]) for s in line["sites"] if s["kind"] == "other"] == [(site, 2)]
    text = _shown(tmp_path, capsys, log_lines.raw, "--by", "site")["text"]
    assert "gathered.<locals>.<genexpr>.<lambda>" in text
    assert " <genexpr>.<lambda>" not in text


def test_a_call_site_written_on_windows_is_shortened_to_its_file(db, log_lines, tmp_path, capsys):
    """A line written on Windows has ``app\\views.py:12 in f`` call sites: the report kept
    the whole path where a POSIX one shows its file."""
    with override_settings(MIDDLEWARE=[HOPWATCH], HOPWATCH=DETAIL):
        assert asgi_request("/aiterator/", query="chunk=3").status == 200
    (posix,) = log_lines.raw
    (call_site,) = [s["call_site"] for s in log_lines.parsed()[0]["sites"] if s.get("call_site")]
    assert call_site.startswith("tests/testapp/views_django6.py:")
    file_line = call_site.split(" in ", 1)[0].rsplit("/", 1)[-1]
    windows = posix.replace(call_site, "C:\\\\site\\\\" + call_site.replace("/", "\\\\"))
    assert "C:\\\\site\\\\tests\\\\testapp\\\\views_django6.py" in windows
    for raw in ([posix], [windows]):
        shown = _shown(tmp_path, capsys, raw, "--by", "site")
        for name in ("text", "markdown", "html"):
            assert f"QuerySet.aiterator ({file_line})" in shown[name].replace("\\_", "_"), name
        request_id = json.loads(raw[0])["request_id"]
        drawn = _shown(tmp_path, capsys, raw, "--request-id", request_id)
        assert f"orm QuerySet.aiterator ({file_line})" in drawn["trace"]
        assert f"QuerySet.aiterator ({file_line})" in drawn["html"]


def test_a_windows_call_site_file_named_like_an_escape_is_shortened_to_its_file(
    db, log_lines, tmp_path, capsys
):
    """``app\\xadmin.py``: only a lone surrogate's escape (``\\ud800``, as the report
    writes one) after a backslash is not a separator; the report kept the directory of
    a file whose name starts with ``x`` and two hex digits, or ``u`` and four."""
    with override_settings(MIDDLEWARE=[HOPWATCH], HOPWATCH=DETAIL):
        assert asgi_request("/aiterator/", query="chunk=3").status == 200
    (posix,) = log_lines.raw
    (call_site,) = [s["call_site"] for s in log_lines.parsed()[0]["sites"] if s.get("call_site")]
    file, line = call_site.split(" in ", 1)[0].rsplit("/", 1)[-1].split(":")
    assert file == "views_django6.py"
    for name in ("xadmin.py", "xdb.py", "u1234.py", "U0001f600.py"):
        windows = posix.replace(call_site, call_site.replace("/", "\\\\").replace(file, name))
        assert f"tests\\\\testapp\\\\{name}:{line}" in windows
        shown = _shown(tmp_path, capsys, [windows], "--by", "site")
        for form in ("text", "markdown", "html"):
            assert f"QuerySet.aiterator ({name}:{line})" in shown[form].replace("\\_", "_"), form
        request_id = json.loads(windows)["request_id"]
        drawn = _shown(tmp_path, capsys, [windows], "--request-id", request_id)
        assert f"orm QuerySet.aiterator ({name}:{line})" in drawn["trace"]
        assert f"QuerySet.aiterator ({name}:{line})" in drawn["html"]
    # a file whose name holds a lone surrogate: its escape is the file's, in every format
    # (the page and the trace get the request's names escaped, the tables escape them)
    windows = posix.replace(call_site, call_site.replace("/", "\\\\").replace(file, "\\ud800x.py"))
    shown = _shown(tmp_path, capsys, [windows], "--by", "site")
    for form in ("text", "html"):
        assert f"QuerySet.aiterator (\\ud800x.py:{line})" in shown[form], form
    request_id = json.loads(windows)["request_id"]
    drawn = _shown(tmp_path, capsys, [windows], "--request-id", request_id)
    assert f"QuerySet.aiterator (\\ud800x.py:{line})" in drawn["html"]
    names = [e["name"] for e in json.loads(drawn["trace"])["traceEvents"] if "name" in e]
    assert f"orm QuerySet.aiterator (\\ud800x.py:{line})" in names
