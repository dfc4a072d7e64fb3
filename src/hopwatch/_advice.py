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
    #: Why there is nothing to change, for advice that says to keep the hops (they are
    #: then not the project's to remove: left out of the report's what to change first).
    keep: str = ""


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
    " receivers of your own signals as `async def`; the hop of `request_started` (and of"
    " `task_enqueued` from a backend's native `aenqueue`) stays while Django's own"
    " receivers are sync.",
)
SIGNAL_ASYNC_RECEIVER: Final = Advice(
    "signal-async-receiver",
    "signal",
    "Async receivers of a signal sent with send()",
    "### An `async def` receiver of a signal sent with `send()`",
    "An `async def` receiver of a signal sent with `send()` runs through `async_to_sync`:"
    " one hop per send, on a new event loop where none is running (WSGI, the sync test"
    " `Client`). Django sends most of its own signals that way (`post_save`, the tasks'"
    " `task_enqueued`, `task_started`, `task_finished`): make such a receiver a plain"
    " `def`; send a signal of your own from async code with `asend()`.",
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

ORM_AITERATOR: Final = Advice(
    "orm-aiterator",
    "orm",
    "Chunked async iteration",
    "### `QuerySet.aiterator`",
    "`aiterator(chunk_size=N)` fetches N rows per `sync_to_async`: one hop per chunk, and one"
    " more when the last chunk is exactly full. For a few hundred rows, `async for obj in qs`"
    " (one hop) is cheaper; keep `aiterator` for results too large to hold, with a"
    " `chunk_size` large enough that the hops do not matter.",
)
REQUEST_BODY_TO_DISK: Final = Advice(
    "request-body-to-disk",
    "stream",
    "A request body written to disk",
    "### `request body (written to disk)`",
    "Under ASGI, Django 6.0+ writes each chunk of a request body past"
    " `FILE_UPLOAD_MAX_MEMORY_SIZE` to its temporary file through `sync_to_async`, before the"
    " view runs. Usually nothing to do: disk writes belong off the event loop. If"
    " medium-sized bodies show many, raise `FILE_UPLOAD_MAX_MEMORY_SIZE` above them, or send"
    " large files straight to object storage.",
)
PASSWORD_CHECK: Final = Advice(
    "password-check",
    "other",
    "Password checks in a thread",
    "### `acheck_password`",
    "From Django 6.0, `acheck_password()` (and `aauthenticate()` with `ModelBackend`) hashes"
    " the password in a worker thread, and on 6.1 an unknown user's too, so that the"
    " deliberately slow hash does not stall the event loop. Keep them: the hop costs"
    " microseconds next to the hash; the only lever is how often you check passwords.",
    keep="password hashing belongs in a thread, off the event loop",
)
ASYNC_PAGE: Final = Advice(
    "async-page",
    "other",
    "Paginating a sequence that is not a list",
    "### `AsyncPage.aget_object_list`",
    "`AsyncPage.aget_object_list()` turns a page's slice that is not a list (a tuple, a"
    " custom sequence) into one through `sync_to_async(list)`: one hop per page. Paginate a"
    " list or a `QuerySet`; for a sync iterable of your own, build the list once (or give it"
    " `__aiter__`).",
)
TASK_BACKEND: Final = Advice(
    "task-backend",
    "other",
    "Enqueuing tasks",
    "### `BaseTaskBackend.aenqueue`",
    "`task.aenqueue()` and `task.aget_result()` are by default `sync_to_async` of the"
    " backend's `enqueue()` and `get_result()`: one hop each (with `ImmediateBackend` the"
    " task runs in that thread, which is held meanwhile). A backend's native `aenqueue` or"
    " `aget_result` saves that hop only where its own I/O needs no thread (each async ORM"
    " call is a hop), and its `task_enqueued.asend()` is a hop while Django's own receiver"
    " is sync: django-tasks-db's `aenqueue` makes 2, not 1. With `ImmediateBackend`, write"
    " tasks as plain functions.",
)
CACHE_BULK: Final = Advice(
    "cache-bulk",
    "other",
    "Async cache methods",
    "### `BaseCache.aget_many`",
    "On Django 6.1 an async cache method whose backend has the sync one (`aget_many`,"
    " `aset_many`, `ahas_key`, ...) is one hop to it, and `aclose()` calls the backend's"
    " `close()` in one. Use the bulk methods on a backend that implements them (one"
    " `aget_many`, not an `aget` per key); call `aclose()` only where you need it.",
)
CACHE_PER_KEY: Final = Advice(
    "cache-per-key",
    "other",
    "Async cache reads, a hop per key",
    "### `BaseCache.aget_many`",
    "`BaseCache.aget` hops are one per key, named by your line either way: a loop of `aget`"
    " calls, or an `aget_many` that loops over `aget` (on every backend before Django 6.1; on"
    " 6.1 on one without its own `get_many`, such as `LocMemCache` and `FileBasedCache`). On"
    " 6.1 one `aget_many` on a backend with `get_many` (Redis, Memcached, `DatabaseCache`) is"
    " one hop; on any version and backend, so is `await sync_to_async(cache.get_many)(keys)`.",
)
DEBUG_TOOLBAR: Final = Advice(
    "debug-toolbar",
    "other",
    "django-debug-toolbar's own crossings",
    "### django-debug-toolbar's own",
    "Running async, django-debug-toolbar calls a sync `SHOW_TOOLBAR_CALLBACK` (the default"
    " `show_toolbar`) through `sync_to_async` on every request, and on a request it shows"
    " itself to the SQL panel's `enable_instrumentation` too; running sync, an async"
    " callback through `async_to_sync`. The call site is the toolbar's line, not yours."
    " Write the callback for the mode the toolbar runs in (`async def` under ASGI); the"
    " panel's hop is the toolbar's own, there only where it is installed.",
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
    ORM_AITERATOR,
    SIGNAL,
    SIGNAL_ASYNC_RECEIVER,
    RESPONSE,
    STREAM,
    REQUEST_BODY_TO_DISK,
    EXCEPTION,
    OTHER,
    PASSWORD_CHECK,
    ASYNC_PAGE,
    TASK_BACKEND,
    CACHE_BULK,
    CACHE_PER_KEY,
    DEBUG_TOOLBAR,
)

#: The causes a section of docs/causes.md of their own names, by (kind, site): their
#: advice is that section's, not their kind's.
_BY_SITE: Final[dict[tuple[str, str], Advice]] = {
    ("orm", "QuerySet.aiterator"): ORM_AITERATOR,
    ("stream", "request body (written to disk)"): REQUEST_BODY_TO_DISK,
    ("other", "acheck_password"): PASSWORD_CHECK,
    ("other", "acheck_password (unknown user)"): PASSWORD_CHECK,
    ("other", "AsyncPage.aget_object_list"): ASYNC_PAGE,
    ("other", "BaseTaskBackend.aenqueue"): TASK_BACKEND,
    ("other", "BaseTaskBackend.aget_result"): TASK_BACKEND,
    # an aget per key: the user's loop, or aget_many's (the same cause: see CACHE_PER_KEY)
    ("other", "BaseCache.aget"): CACHE_PER_KEY,
    **{
        ("other", f"BaseCache.{method}"): CACHE_BULK
        for method in (
            "aget_many",
            "aset_many",
            "adelete_many",
            "aget_or_set",
            "ahas_key",
            "aincr",
            "aincr_version",
            "aclose",
        )
    },
}
#: django-debug-toolbar's package: its functions' dotted names, its files' call sites.
_TOOLBAR: Final = "debug_toolbar"

#: The hooks ``MiddlewareMixin.__acall__`` runs through its own ``sync_to_async``.
_MIXIN_HOOKS: Final = frozenset({"process_request", "process_response"})
#: The hooks Django's handler adapts to its own mode (``BaseHandler.load_middleware``),
#: whatever the middleware's flags or base class.
_HANDLER_HOOKS: Final = frozenset(
    {"process_view", "process_template_response", "process_exception"}
)

# The first advice of each kind is its default (tests check every kind has one).
_BY_KIND: Final = {advice.kind: advice for advice in reversed(ALL)}


def advice_for(
    kind: str,
    site: str,
    direction: str,
    *,
    sync_handler: bool = False,
    call_site: str | None = None,
) -> Advice:
    """The advice for hops of one cause (its kind, site, direction and call site): the
    advice of the section of docs/causes.md that names the cause where one does
    (:func:`site_advice`), else its kind's.

    ``sync_handler``: the hops were made under a handler that runs sync (WSGI, the sync
    test ``Client``: ``hopwatch.schema.SYNC_INTERFACES``). A middleware Django adapts is
    the one out of the handler's mode, so there an async-only one, not a sync-only one;
    ``False`` when unknown or mixed.
    """
    named = site_advice(kind, site, call_site)
    if named is not None:
        return named
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
    if kind == "signal":
        # send() runs async receivers through async_to_sync, asend() sync ones the other way
        return SIGNAL_ASYNC_RECEIVER if direction == ASYNC_TO_SYNC else SIGNAL
    return _BY_KIND.get(kind, OTHER)


def site_advice(kind: str, site: str, call_site: str | None = None) -> Advice | None:
    """The advice of the section of docs/causes.md that names this cause, or None.

    django-debug-toolbar's own crossings are its functions (``debug_toolbar.…``) or a
    callback of yours its middleware called (the call site is in its package)."""
    named = _BY_SITE.get((kind, site))
    if named is not None:
        return named
    if kind == "other" and (
        site.split(".", 1)[0] == _TOOLBAR
        or (call_site is not None and call_site.replace("\\", "/").split("/", 1)[0] == _TOOLBAR)
    ):
        return DEBUG_TOOLBAR
    return None


def is_djangos(site: str) -> bool:
    """Whether a cause's site names Django's own code (``django.…``)."""
    return site.split(".", 1)[0] == "django"


def code_spans(text: str) -> list[tuple[str, bool]]:
    """``text`` split into (piece, is_code) at its backticks, for renderers that escape."""
    return [(piece, i % 2 == 1) for i, piece in enumerate(text.split("`")) if piece]


__all__ = ["ALL", "Advice", "advice_for", "code_spans", "is_djangos", "site_advice"]
