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
    "Under ASGI, `MiddlewareMixin` runs each sync hook (`process_request`, `process_response`,"
    " `process_view`, ...) through its own `sync_to_async`. Drop middleware you do not need;"
    " give your own middleware native async hooks, or make it sync and async capable.",
)
MIDDLEWARE_SYNC_ONLY: Final = Advice(
    "middleware-sync-only",
    "middleware",
    "A sync-only middleware",
    "## `middleware`: `myproject.middleware.LegacyMiddleware`",
    "A middleware without `async_capable = True` makes Django run the chain around it sync,"
    " holding a worker thread for the rest of the request (`pinned_ms`). Make it sync and"
    " async capable, or put it as low in `MIDDLEWARE` as its semantics allow.",
)
VIEW_SYNC_UNDER_ASGI: Final = Advice(
    "view-sync-under-asgi",
    "view",
    "A sync view under ASGI",
    "## `view`",
    "A sync view under ASGI runs in a worker thread. Make hot views `async def`, with async"
    " ORM calls.",
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
    " call site says which line of yours. Batch (`async for`, `select_related`, `in_bulk`),"
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
    " nothing to do), and renders a `TemplateResponse` the same way, whichever view returned it:"
    " render it in the view (a sync view's own thread, an async view's `sync_to_async` block)"
    " to save that one.",
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
    MIDDLEWARE_SYNC_ONLY,
    VIEW_SYNC_UNDER_ASGI,
    VIEW_ASYNC_UNDER_WSGI,
    ORM,
    SIGNAL,
    RESPONSE,
    STREAM,
    EXCEPTION,
    OTHER,
)

#: The hooks ``MiddlewareMixin`` runs; a middleware cause ending in one is a hook's hop.
_HOOKS: Final = frozenset(
    {
        "process_request",
        "process_response",
        "process_view",
        "process_exception",
        "process_template_response",
    }
)

# The first advice of each kind is its default (tests check every kind has one).
_BY_KIND: Final = {advice.kind: advice for advice in reversed(ALL)}


def advice_for(kind: str, site: str, direction: str) -> Advice:
    """The advice for hops of one cause (its kind, site and direction)."""
    if kind == "middleware":
        hook = site.rsplit(".", 1)[-1]
        return MIDDLEWARE_HOOK if hook in _HOOKS else MIDDLEWARE_SYNC_ONLY
    if kind == "view":
        return VIEW_ASYNC_UNDER_WSGI if direction == ASYNC_TO_SYNC else VIEW_SYNC_UNDER_ASGI
    return _BY_KIND.get(kind, OTHER)


def code_spans(text: str) -> list[tuple[str, bool]]:
    """``text`` split into (piece, is_code) at its backticks, for renderers that escape."""
    return [(piece, i % 2 == 1) for i, piece in enumerate(text.split("`")) if piece]


__all__ = ["ALL", "Advice", "advice_for", "code_spans"]
