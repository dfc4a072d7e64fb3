"""The short advice per cause (hopwatch._advice) and docs/causes.md say the same thing,
and what it says is what Django does (checked here against the Django installed)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from asgiref.sync import SyncToAsync, markcoroutinefunction
from django.contrib.auth.models import User
from django.core.exceptions import SynchronousOnlyOperation
from django.core.handlers.base import BaseHandler
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.template import engines
from django.template.response import TemplateResponse
from django.test import override_settings
from django.urls import path
from django.utils.deprecation import MiddlewareMixin

from hopwatch import ASYNC_TO_SYNC, KINDS, SYNC_TO_ASYNC, audit
from hopwatch._advice import (
    ALL,
    MIDDLEWARE_ASYNC_ONLY,
    MIDDLEWARE_HOOK,
    MIDDLEWARE_OWN_HOOK,
    MIDDLEWARE_PROCESS_VIEW,
    MIDDLEWARE_SYNC_ONLY,
    ORM,
    RESPONSE,
    VIEW_SYNC_UNDER_ASGI,
    advice_for,
    code_spans,
)
from hopwatch.schema import SYNC_INTERFACES
from tests.helpers import asgi_request, capture, causes, sites, wsgi_request
from tests.settings import DEFAULT_MIDDLEWARE

CAUSES_MD = Path(__file__).resolve().parent.parent / "docs" / "causes.md"
IN_SHORT = "**In short:** "


def sections() -> dict[str, list[str]]:
    """docs/causes.md's ``## `` and ``### `` sections: heading -> its lines."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in CAUSES_MD.read_text(encoding="utf-8").splitlines():
        if line.startswith(("## ", "### ")):
            current = found.setdefault(line, [])
        elif current is not None:
            current.append(line)
    return found


@pytest.mark.parametrize("advice", ALL, ids=lambda advice: advice.key)
def test_the_docs_quote_each_piece_of_advice_in_its_section(advice):
    (heading,) = [h for h in sections() if h.startswith(advice.section)]
    assert IN_SHORT + advice.summary in sections()[heading]


def test_every_in_short_line_in_the_docs_is_a_piece_of_advice():
    quoted = [
        line[len(IN_SHORT) :]
        for lines in sections().values()
        for line in lines
        if line.startswith(IN_SHORT)
    ]
    assert sorted(quoted) == sorted(advice.summary for advice in ALL)


def test_every_kind_has_advice_of_its_own_kind():
    for kind in KINDS:
        for direction in (SYNC_TO_ASYNC, ASYNC_TO_SYNC):
            assert advice_for(kind, "some.site", direction).kind == kind
    assert advice_for("a kind from a newer hopwatch", "x", SYNC_TO_ASYNC).key == "other"


def test_keys_are_unique_and_summaries_use_no_markup_but_code():
    """Backticks are the only markup: renderers escape the rest as text."""
    assert len({advice.key for advice in ALL}) == len(ALL)
    for advice in ALL:
        assert advice.summary.count("`") % 2 == 0, advice.key
        prose = "".join(piece for piece, is_code in code_spans(advice.summary) if not is_code)
        assert not re.search(r"[<*_\[\]]", prose), advice.key


@pytest.mark.parametrize(
    ("kind", "site", "direction", "key"),
    [
        (
            "middleware",
            "django.contrib.sessions.middleware.SessionMiddleware.process_request",
            SYNC_TO_ASYNC,
            "middleware-hook",
        ),
        (
            "middleware",
            "django.middleware.csrf.CsrfViewMiddleware.process_view",
            SYNC_TO_ASYNC,
            "middleware-hook",
        ),
        (
            "middleware",
            "shop.middleware.TimingMixin.process_request",
            SYNC_TO_ASYNC,
            "middleware-own-hook",
        ),
        (
            "middleware",
            "shop.middleware.TimingMixin.process_response",
            SYNC_TO_ASYNC,
            "middleware-own-hook",
        ),
        (
            "middleware",
            "shop.middleware.ViewTag.process_view",
            SYNC_TO_ASYNC,
            "middleware-process-view",
        ),
        (
            "middleware",
            "shop.middleware.ViewTag.process_template_response",
            SYNC_TO_ASYNC,
            "middleware-process-view",
        ),
        (
            "middleware",
            "django_otp.middleware.OTPMiddleware.process_request",
            SYNC_TO_ASYNC,
            "middleware-own-hook",
        ),
        (
            "middleware",
            "shop.middleware.ErrorPage.process_exception",
            ASYNC_TO_SYNC,
            "middleware-process-view",
        ),
        (
            "middleware",
            "shop.middleware.LegacyAuditMiddleware",
            SYNC_TO_ASYNC,
            "middleware-sync-only",
        ),
        (
            "middleware",
            "shop.middleware.LegacyAuditMiddleware",
            ASYNC_TO_SYNC,
            "middleware-sync-only",
        ),
        ("view", "shop.views.hello_sync", SYNC_TO_ASYNC, "view-sync-under-asgi"),
        ("view", "shop.views.hello", ASYNC_TO_SYNC, "view-async-under-wsgi"),
        ("orm", "QuerySet.aget", SYNC_TO_ASYNC, "orm"),
        ("signal", "request_started", SYNC_TO_ASYNC, "signal"),
        ("signal", "myapp.signals.order_placed", SYNC_TO_ASYNC, "signal"),
        ("signal", "myapp.signals.order_placed", ASYNC_TO_SYNC, "signal-async-receiver"),
        ("signal", "django.tasks.signals.task_finished", ASYNC_TO_SYNC, "signal-async-receiver"),
        ("response", "HttpResponse.close", SYNC_TO_ASYNC, "response"),
        ("stream", "StreamingHttpResponse (sync iterator)", SYNC_TO_ASYNC, "stream"),
        ("exception", "log_response", SYNC_TO_ASYNC, "exception"),
        ("other", "myapp.tasks.refresh", SYNC_TO_ASYNC, "other"),
    ],
)
def test_advice_for_a_cause(kind, site, direction, key):
    assert advice_for(kind, site, direction).key == key


@pytest.mark.parametrize("direction", [SYNC_TO_ASYNC, ASYNC_TO_SYNC])
def test_an_adaptation_under_a_sync_handler_is_an_async_only_middlewares(direction):
    """Django adapts around the middleware out of its handler's mode: under WSGI or the
    sync test Client an async-only one, whose fix is a sync path, not async capability.
    Unknown (or mixed) handlers keep the sync-only advice; a hook's does not change."""
    site = "shop.middleware.LegacyAuditMiddleware"
    assert advice_for("middleware", site, direction, sync_handler=True) is MIDDLEWARE_ASYNC_ONLY
    assert advice_for("middleware", site, direction) is MIDDLEWARE_SYNC_ONLY
    hook = "django.contrib.sessions.middleware.SessionMiddleware.process_request"
    assert advice_for("middleware", hook, direction, sync_handler=True) is MIDDLEWARE_HOOK
    assert {"wsgi", "test-client"} == SYNC_INTERFACES


def test_code_spans():
    assert code_spans("Use `async for`, not `aget()` in a loop.") == [
        ("Use ", False),
        ("async for", True),
        (", not ", False),
        ("aget()", True),
        (" in a loop.", False),
    ]


# What each piece of advice says, against what Django does. Each test failed against
# the advice it replaced (the probe applied that advice on Django 5.2 and 6.1).

#: startproject's MIDDLEWARE (the suite's, without hopwatch's).
STARTPROJECT = [path for path in DEFAULT_MIDDLEWARE if not path.startswith("hopwatch.")]
HERE = __name__


class AsyncHookMixin(MiddlewareMixin):
    """What "give your own middleware native async hooks" led to."""

    async def process_request(self, request):
        return None


class CapableWithProcessView:
    """What "make it sync and async capable" led to, for a middleware with a process_view."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        return await self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        return None


class AsyncProcessView(CapableWithProcessView):
    async def process_view(self, request, view_func, view_args, view_kwargs):
        return None


class SyncXFrameOptions(XFrameOptionsMiddleware):
    """The audit's sync-chain change for startproject's stack."""

    async_capable = False


def _the_printed_pattern() -> type:
    """The sync and async capable middleware exactly as ``hopwatch audit`` prints it."""
    from hopwatch.audit.render import PATTERN

    namespace: dict = {"__name__": __name__}  # the class's module: this one
    exec(PATTERN, namespace)
    return namespace["MyMiddleware"]


#: ``SyncOnlyMiddleware`` rewritten with the pattern the audit prints.
SyncOnlyMadeCapable = _the_printed_pattern()


def _prose(text: str) -> str:
    return " ".join(text.split())


def test_a_mixins_async_hook_fails_every_request_and_no_advice_suggests_one():
    """``MiddlewareMixin.__acall__`` wraps each hook in ``sync_to_async``, which refuses a
    coroutine function: a mixin with an ``async def process_request`` fails every ASGI
    request (a 500). The advice was "give your own middleware native async hooks"."""
    middleware = AsyncHookMixin(_async_response)
    with pytest.raises(TypeError, match="sync_to_async can only be applied to sync functions"):
        asyncio.run(middleware.__acall__(HttpRequest()))
    for advice in ALL:
        assert "native async hooks" not in advice.summary, advice.key
    assert "without the mixin" in MIDDLEWARE_OWN_HOOK.summary
    assert "cannot run `async def` ones" in MIDDLEWARE_OWN_HOOK.summary
    mine = "shop.middleware.AsyncHookMixin.process_request"
    assert advice_for("middleware", mine, SYNC_TO_ASYNC) is MIDDLEWARE_OWN_HOOK


async def _async_response(request):
    return HttpResponse()


def _view_middleware(path):
    handler = BaseHandler()
    with override_settings(MIDDLEWARE=[path]):
        handler.load_middleware(is_async=True)
    return handler._view_middleware


def test_only_an_async_process_view_removes_its_hop_flags_do_not():
    """Django's handler (``load_middleware``), not the mixin, adapts ``process_view`` to its
    mode: a sync one in a sync and async capable class is still a ``sync_to_async`` under
    ASGI; an ``async def`` one is awaited as it is. The advice was "make it sync and async
    capable", the same for a ``process_view`` as for the mixin's hooks."""
    (adapted,) = _view_middleware(f"{HERE}.CapableWithProcessView")
    assert isinstance(adapted, SyncToAsync)
    (awaited,) = _view_middleware(f"{HERE}.AsyncProcessView")
    assert not isinstance(awaited, SyncToAsync)
    assert awaited.__func__ is AsyncProcessView.process_view
    site = "shop.middleware.CapableWithProcessView.process_view"
    assert advice_for("middleware", site, SYNC_TO_ASYNC) is MIDDLEWARE_PROCESS_VIEW
    assert "make it `async def`" in MIDDLEWARE_PROCESS_VIEW.summary
    assert "whatever the middleware's flags" in MIDDLEWARE_PROCESS_VIEW.summary


def test_djangos_own_hooks_get_the_advice_that_applies_to_them():
    """Nobody rewrites Django's own middleware (the audit: "nothing to change in them"): its
    hooks go by dropping the middleware, or with the whole chain sync, a trade."""
    for site in (
        "django.contrib.sessions.middleware.SessionMiddleware.process_request",
        "django.middleware.csrf.CsrfViewMiddleware.process_view",
    ):
        assert advice_for("middleware", site, SYNC_TO_ASYNC) is MIDDLEWARE_HOOK
    summary = MIDDLEWARE_HOOK.summary
    assert "Drop the ones you do not need" in summary
    assert "whole chain runs sync" in summary and "holds a worker thread" in summary
    assert "your own" not in summary and "capable" not in summary
    # the whole chain sync (the audit's model, checked against real requests in
    # test_audit*): the mixins' hops go, CSRF's process_view stays, adapted by the handler
    chain = _audited([*STARTPROJECT[:-1], f"{HERE}.SyncXFrameOptions"])
    assert _audited(STARTPROJECT).predicted("asgi", "async_view") == 15
    assert chain.predicted("asgi", "async_view") == 5
    csrf = chain.entries[3]
    assert [(hook.name, hook.hops["asgi"]) for hook in csrf.hooks if hook.hops["asgi"]] == [
        ("process_view", 1)
    ]
    assert "A `process_view` (CSRF's) stays either way." in summary


def _audited(stack):
    with override_settings(MIDDLEWARE=stack):
        return audit.audit_settings()


def test_making_a_sync_only_middleware_capable_is_a_trade_as_the_advice_says():
    """Last in startproject's stack, a sync-only middleware makes the mixins above it run
    sync: 5 crossings per async-view request. Made sync and async capable (the docs'
    pattern) each hook hops again: 15, with no thread held (measured the same under
    uvicorn: 5 -> 15 hops, 1.19 -> 3.43 ms of overhead). The advice called it a fix."""
    before = _audited([*STARTPROJECT, "tests.testapp.middleware.SyncOnlyMiddleware"])
    after = _audited([*STARTPROJECT, f"{HERE}.SyncOnlyMadeCapable"])
    assert (before.predicted("asgi", "async_view"), after.predicted("asgi", "async_view")) == (
        5,
        15,
    )
    assert before.entries[-1].pins_thread and not after.entries[-1].pins_thread
    summary = _prose(MIDDLEWARE_SYNC_ONLY.summary)
    assert "a trade, not a saving" in summary
    assert "5 hops become 15" in summary


ASYNC_ONLY = "tests.testapp.middleware.AsyncOnlyMiddleware"


def _wsgi_lines(stack):
    with (
        override_settings(MIDDLEWARE=["hopwatch.middleware.HopwatchMiddleware", *stack]),
        capture() as records,
    ):
        assert wsgi_request("/sync/")[0].startswith("200")
    (record,) = records
    return record


def test_an_async_only_middleware_under_wsgi_costs_what_its_advice_says(db):
    """Last in startproject's stack under WSGI, an async-only middleware makes 14 crossings
    per sync-view request, a new event loop among them: its own two and a hop per mixin
    hook above it. With a sync path too (the pattern the audit prints), none, as the audit
    predicts. Its advice was the sync-only one's ("Making it sync and async capable frees
    the thread"): it is async capable already, and no thread is held."""
    record = _wsgi_lines([*STARTPROJECT, ASYNC_ONLY])
    assert (len(record), record.sync_to_async, record.async_to_sync, record.new_loops) == (
        14, 13, 1, 1,
    )  # fmt: skip
    assert record.pinned_ns == 0
    assert sites(record)[("middleware", ASYNC_ONLY)] == 2
    sync_handler = record.interface in SYNC_INTERFACES
    for direction in (SYNC_TO_ASYNC, ASYNC_TO_SYNC):
        advice = advice_for("middleware", ASYNC_ONLY, direction, sync_handler=sync_handler)
        assert advice is MIDDLEWARE_ASYNC_ONLY
    made_capable = _wsgi_lines([*STARTPROJECT, f"{HERE}.SyncOnlyMadeCapable"])
    assert (len(made_capable), made_capable.new_loops) == (0, 0)
    before = _audited([*STARTPROJECT, ASYNC_ONLY])
    after = _audited([*STARTPROJECT, f"{HERE}.SyncOnlyMadeCapable"])
    assert (before.predicted("wsgi", "sync_view"), after.predicted("wsgi", "sync_view")) == (
        14,
        0,
    )
    assert before.entries[-1].advice == [audit.ADVICE_ASYNC_ONLY]
    summary = _prose(MIDDLEWARE_ASYNC_ONLY.summary)
    assert "14 hops per sync-view request" in summary
    assert "on a new event loop per request (`new_loops`)" in summary
    assert "`sync_capable = True` and a sync `__call__`" in summary
    assert "serve the app under ASGI" in summary
    assert "frees the thread" not in summary


def test_a_sync_view_made_async_under_atomic_requests_fails_every_request(monkeypatch):
    """With ``ATOMIC_REQUESTS`` Django refuses an async view (``make_view_atomic``), and an
    async ORM call per query costs a hop each: the advice was "Make hot views `async def`,
    with async ORM calls"."""

    async def view(request):
        return HttpResponse()

    monkeypatch.setitem(connections.settings["default"], "ATOMIC_REQUESTS", True)
    with pytest.raises(RuntimeError, match="You cannot use ATOMIC_REQUESTS with async views"):
        BaseHandler().make_view_atomic(view)
    summary = VIEW_SYNC_UNDER_ASGI.summary
    assert "Make hot views" not in summary
    assert "`ATOMIC_REQUESTS`" in summary and "`transaction.atomic`" in summary
    assert "each async ORM call is a hop of its own" in summary


def _template():
    return engines["django"].from_string("{{ word }}")


def rendered_template_response(request):
    """What "a sync view can render its response itself (`response.render()`)" led to."""
    response = TemplateResponse(request, _template(), {"word": "ok"})
    response.render()
    return response


async def plain_response(request):
    return HttpResponse(_template().render({"word": "ok"}, request))


urlpatterns = [
    path("rendered/", rendered_template_response),
    path("plain/", plain_response),
]


def _render_hops(path):
    with (
        override_settings(ROOT_URLCONF=HERE, MIDDLEWARE=["hopwatch.middleware.HopwatchMiddleware"]),
        capture() as records,
    ):
        result = asgi_request(path)
    assert (result.status, result.body) == (200, b"ok")
    (record,) = records
    return {site: n for (kind, site, _call), n in causes(record).items() if kind == "response"}


def test_rendering_a_template_response_early_saves_no_hop_a_plain_response_does():
    """``_get_response_async`` calls ``sync_to_async(response.render)`` on any response with
    a ``render``, rendered already or not."""
    assert _render_hops("/rendered/") == {"TemplateResponse.render": 1, "TemplateResponse.close": 1}
    assert _render_hops("/plain/") == {"HttpResponse.close": 1}
    summary = _prose(RESPONSE.summary)
    assert "render it in the view" not in summary
    assert "even one the view rendered already" in summary
    assert "return a plain `HttpResponse`" in summary


@pytest.mark.django_db
def test_in_bulk_in_async_code_raises_the_advice_names_ain_bulk():
    """The advice said "Batch (`async for`, `select_related`, `in_bulk`)"."""

    async def in_bulk():
        return User.objects.in_bulk([1])

    with pytest.raises(SynchronousOnlyOperation):
        asyncio.run(in_bulk())
    names = [piece for piece, code in code_spans(ORM.summary) if code]
    assert "ain_bulk" in names and "in_bulk" not in names
