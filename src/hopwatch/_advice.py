"""The short advice for each kind of hop cause: written once, here.

``docs/causes.md`` explains every cause at length; each of its sections quotes
the matching :attr:`Advice.summary` verbatim on an ``**In short:**`` line, and
``tests/test_advice.py`` checks that it does, so the two cannot drift apart.
Everything that shows advice next to hops (the debug-toolbar panel) reads it
from here. Backticks mark code, as in the docs; no other markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from hopwatch.schema import ASYNC_TO_SYNC


@dataclass(frozen=True)
class Advice:
    #: Stable id (``middleware-hook``, ``view-async-under-wsgi``, ...).
    key: str
    #: The cause kind it applies to (one of ``hopwatch.schema.KINDS``).
    kind: str
    #: What the group of hops is, for a heading.
    title: str
    #: The start of the ``docs/causes.md`` heading whose section quotes ``summary``.
    section: str
    #: Why the hops happen and what to change, in one to three sentences.
    summary: str


MIDDLEWARE_HOOK: Final = Advice(
    "middleware-hook",
    "middleware",
    "MiddlewareMixin hooks",
    "## `middleware`: `SomeMiddleware.process_request`",
    "Wherever the middleware chain runs async (always under ASGI; under WSGI only above an"
    " async-only middleware, whose own advice comes first), `MiddlewareMixin` runs each sync"
    " `process_request` and `process_response` through its own `sync_to_async`, and under"
    " ASGI Django's handler each sync `process_view`; Django's own middleware is written that"
    " way. Drop the ones you do not need. The mixin's hops of the rest go only if the whole"
    " chain runs sync (`hopwatch audit` says how): fewer hops, but under ASGI each request"
    " then holds a worker thread. A `process_view` (CSRF's) stays either way.",
)
MIDDLEWARE_OWN_HOOK: Final = Advice(
    "middleware-own-hook",
    "middleware",
    "MiddlewareMixin hooks (not Django's)",
    "## `middleware`: `SomeMiddleware.process_request`",
    "Wherever the middleware chain runs async (always under ASGI; under WSGI only above an"
    " async-only middleware), `MiddlewareMixin` runs each sync `process_request` and"
    " `process_response` through its own `sync_to_async`, and cannot run `async def` ones"
    " (every request then fails). For a middleware of yours, write a plain middleware class"
    " without the mixin, with a sync and an async path (`sync_capable = async_capable ="
    " True`, an async `__acall__`); for a third-party one, upgrade it or ask its maintainers.",
)
MIDDLEWARE_PROCESS_VIEW: Final = Advice(
    "middleware-process-view",
    "middleware",
    "A process_view out of the handler's mode (not Django's)",
    "## `middleware`: `SomeMiddleware.process_request`",
    "Django's handler runs each `process_view` and `process_template_response` in its own"
    " mode, whatever the middleware's flags or base class: a sync one through `sync_to_async`"
    " under ASGI, an `async def` one through `async_to_sync` under WSGI (or the sync test"
    " `Client`). Write it for the interface you serve: make it `async def` under ASGI, a"
    " plain `def` under WSGI. `process_exception` is always called sync: keep it a plain"
    " `def`.",
)
MIDDLEWARE_SYNC_ONLY: Final = Advice(
    "middleware-sync-only",
    "middleware",
    "A sync-only middleware",
    "## `middleware`: `myproject.middleware.LegacyMiddleware`",
    "A middleware without `async_capable = True` makes Django run it, and every middleware"
    " above it, sync: one crossing into the chain and one out below it, with a worker thread"
    " held for the rest of the request (`pinned_ms`). Making it sync and async capable frees"
    " the thread, but then each `MiddlewareMixin` hook above it hops on its own: below a few"
    " of them, a trade, not a saving (startproject's stack with it last: 5 hops become 15);"
    " `hopwatch audit` prices it for your stack. Kept sync-only, it costs the fewest hops as"
    " low in `MIDDLEWARE` as its semantics allow.",
)
MIDDLEWARE_ASYNC_ONLY: Final = Advice(
    "middleware-async-only",
    "middleware",
    "An async-only middleware under WSGI",
    "## `middleware`: `myproject.middleware.AsyncOnlyMiddleware`",
    "Under WSGI (or the sync test `Client`), a middleware with `sync_capable = False` makes"
    " Django run it, and every middleware above it that can, async: one `async_to_sync` into"
    " the chain, on a new event loop per request (`new_loops`), one `sync_to_async` out below"
    " it, and a hop per `MiddlewareMixin` hook above it (startproject's stack with it last:"
    " 14 hops per sync-view request). Give it a sync path too (`sync_capable = True` and a"
    " sync `__call__`; `hopwatch audit` prints the pattern): then it costs none. Or serve"
    " the app under ASGI.",
)
VIEW_SYNC_UNDER_ASGI: Final = Advice(
    "view-sync-under-asgi",
    "view",
    "A sync view under ASGI",
    "## `view`",
    "A sync view under ASGI runs in a worker thread: one hop, and its ORM calls inside it cost"
    " none. An `async def` view saves that hop only if it crosses less: each async ORM call is"
    " a hop of its own (10 `aget()` are 10), so it needs batched ORM access (`async for`,"
    " `ain_bulk`) or its ORM block in one `sync_to_async` (one hop, as before). Keep views"
    " sync under `ATOMIC_REQUESTS` (Django refuses async views there), `transaction.atomic`"
    " or other sync-only database code.",
)
VIEW_ASYNC_UNDER_WSGI: Final = Advice(
    "view-async-under-wsgi",
    "view",
    "An async view under WSGI",
    "## `view`",
    "An async view under WSGI (or the sync test `Client`) runs through `async_to_sync`, on a"
    " new event loop per call. Keep views sync under WSGI; test async views with"
    " `AsyncClient`.",
)
ORM: Final = Advice(
    "orm",
    "orm",
    "Async ORM calls",
    "## `orm`",
    "Every `await` of an async ORM method is a hop, and the query still runs in a thread; the"
    " call site says which line of yours. Batch (`async for`, `select_related`, `ain_bulk`),"
    " or move a block of ORM work into one `sync_to_async` function.",
)
SIGNAL: Final = Advice(
    "signal",
    "signal",
    "Sync signal receivers",
    "## `signal`",
    "Sync receivers of a signal sent with `asend()` run through `sync_to_async`. Write"
    " receivers of your own signals as `async def`; `request_started`'s hop stays while"
    " Django's own receivers are sync.",
)
RESPONSE: Final = Advice(
    "response",
    "response",
    "Closing and rendering the response",
    "## `response`",
    "Under ASGI, Django closes every response through `sync_to_async` (one hop per request,"
    " nothing to do), and renders every response that has a `render()` method (a"
    " `TemplateResponse`) the same way after the view, even one the view rendered already. To"
    " save that hop, return a plain `HttpResponse` (`django.shortcuts.render()`,"
    " `render_to_string()`); `process_template_response` hooks then do not run for it.",
)
STREAM: Final = Advice(
    "stream",
    "stream",
    "Streaming across the boundary",
    "## `stream`",
    "A streaming response whose iterator is on the wrong side is consumed across the"
    " boundary: a sync iterator under ASGI is buffered in a thread, an async one under WSGI"
    " gets a new event loop. Give ASGI an async iterator and WSGI a sync one.",
)
EXCEPTION: Final = Advice(
    "exception",
    "exception",
    "Error handling",
    "## `exception`",
    "Under ASGI, an exception escaping a view is handled through `sync_to_async`, and every"
    " response with status >= 400 is logged the same way. These are the price of errors: if"
    " an endpoint shows many, look at why it fails.",
)
OTHER: Final = Advice(
    "other",
    "other",
    "Other crossings",
    "## `other`",
    "Your own and third-party `sync_to_async` / `async_to_sync` calls, named by the wrapped"
    " callable and your call site. Batch them, or move the sync work into one call.",
)

#: Every piece of advice, in the order docs/causes.md presents them.
ALL: Final = (
    MIDDLEWARE_HOOK,
    MIDDLEWARE_OWN_HOOK,
    MIDDLEWARE_PROCESS_VIEW,
    MIDDLEWARE_SYNC_ONLY,
    MIDDLEWARE_ASYNC_ONLY,
    VIEW_SYNC_UNDER_ASGI,
    VIEW_ASYNC_UNDER_WSGI,
    ORM,
    SIGNAL,
    RESPONSE,
    STREAM,
    EXCEPTION,
    OTHER,
)

#: The hooks ``MiddlewareMixin.__acall__`` runs through its own ``sync_to_async``.
_MIXIN_HOOKS: Final = frozenset({"process_request", "process_response"})
#: The hooks Django's handler adapts to its own mode (``BaseHandler.load_middleware``),
#: whatever the middleware's flags or base class.
_HANDLER_HOOKS: Final = frozenset(
    {"process_view", "process_template_response", "process_exception"}
)

# The first advice of each kind is its default (tests check every kind has one).
_BY_KIND: Final = {advice.kind: advice for advice in reversed(ALL)}


def advice_for(kind: str, site: str, direction: str, *, sync_handler: bool = False) -> Advice:
    """The advice for hops of one cause (its kind, site and direction).

    ``sync_handler``: the hops were made under a handler that runs sync (WSGI, the sync
    test ``Client``: ``hopwatch.schema.SYNC_INTERFACES``). A middleware Django adapts is
    the one out of the handler's mode, so there an async-only one, not a sync-only one;
    ``False`` when unknown or mixed.
    """
    if kind == "middleware":
        hook = site.rsplit(".", 1)[-1]
        if hook not in _MIXIN_HOOKS and hook not in _HANDLER_HOOKS:
            # the adaptation around the middleware out of the handler's mode
            return MIDDLEWARE_ASYNC_ONLY if sync_handler else MIDDLEWARE_SYNC_ONLY
        if is_djangos(site):
            return MIDDLEWARE_HOOK  # nobody rewrites Django's own: drop it, or the sync chain
        return MIDDLEWARE_OWN_HOOK if hook in _MIXIN_HOOKS else MIDDLEWARE_PROCESS_VIEW
    if kind == "view":
        return VIEW_ASYNC_UNDER_WSGI if direction == ASYNC_TO_SYNC else VIEW_SYNC_UNDER_ASGI
    return _BY_KIND.get(kind, OTHER)


def is_djangos(site: str) -> bool:
    """Whether a cause's site names Django's own code (``django.…``)."""
    return site.split(".", 1)[0] == "django"


def code_spans(text: str) -> list[tuple[str, bool]]:
    """``text`` split into (piece, is_code) at its backticks, for renderers that escape."""
    return [(piece, i % 2 == 1) for i, piece in enumerate(text.split("`")) if piece]


__all__ = ["ALL", "Advice", "advice_for", "code_spans", "is_djangos"]
