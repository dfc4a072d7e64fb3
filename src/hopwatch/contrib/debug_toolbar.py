"""A django-debug-toolbar panel: the request's hops, next to its SQL queries.

    DEBUG_TOOLBAR_PANELS = [..., "hopwatch.contrib.debug_toolbar.HopsPanel"]

See docs/debug-toolbar.md. Only the toolbar imports this module (hopwatch never
does), so django-debug-toolbar stays an optional extra:
``pip install 'hopwatch[debug-toolbar]'``.

How it gets every hop: the toolbar collects panel data before the response is
closed, so some hops (the response's ``close()`` under ASGI, middleware above
the toolbar on the way out) come later. The panel stores what the record holds
when the toolbar asks (the sidebar's figure), and, when hopwatch closes the
request, stores the whole request again in the toolbar's store, which is where
the panel's content and the toolbar's history read it from (unless the store has
dropped the request meanwhile: it is not put back). It only reads the
record: the log line is the same with the panel on or off, and the panel makes
no hop of its own. Of the toolbar it changes one thing: its ``get_show_toolbar``
notes when the toolbar's middleware begins a request (:func:`made_by_toolbar`).
"""

from __future__ import annotations

import functools
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

try:
    from debug_toolbar.panels import Panel
except ImportError as exc:  # configured without the extra: say how to fix it
    raise ImportError(
        "hopwatch.contrib.debug_toolbar.HopsPanel needs django-debug-toolbar:"
        " pip install 'hopwatch[debug-toolbar]'"
    ) from exc

from django.apps import apps
from django.core.checks import CheckMessage
from django.core.checks import Warning as CheckWarning
from django.http import HttpRequest, HttpResponseBase
from django.template import Context, Engine

from hopwatch import _django, _errors
from hopwatch import apps as hopwatch_apps
from hopwatch._recorder import Hop, RequestRecord, add_sink
from hopwatch.contrib import _hop_table

_TEMPLATES: Final = Path(__file__).resolve().parent / "templates"

#: The toolbar's package, as it appears in causes: a site (``debug_toolbar.middleware.
#: show_toolbar``) or the start of a call site (``debug_toolbar/panels/sql/panel.py:204``).
_TOOLBAR_PACKAGE: Final = "debug_toolbar"


def made_by_toolbar(hop: Hop, handed_on_ns: int | None, entered_ns: int | None = None) -> bool:
    """Whether the toolbar made this crossing itself, not the request it watches.

    The toolbar's own crossings run its code (``sync_to_async(show_toolbar)``,
    the SQL panel's ``enable_instrumentation``): their site is in its package.
    A crossing of a ``SHOW_TOOLBAR_CALLBACK`` of yours runs your code but is
    called from the toolbar's, before the toolbar hands the request on
    (``handed_on_ns``, when this panel's ``process_request`` ran): a sync
    callback's crossing has the toolbar's call site; an async callback is awaited
    as it is, and its crossings (an async ORM call) have your code's, so every
    crossing called after the toolbar's middleware began the request
    (``entered_ns``: :func:`_watch_the_toolbars_entry`) and before it handed the
    request on is the toolbar's. Later crossings whose call site is the toolbar's
    are the request's: Django code below the toolbar's middleware, with no code
    of yours in between, has the toolbar's frame as its first non-library caller.
    """
    cause = hop.cause
    if cause.site.startswith(_TOOLBAR_PACKAGE + "."):
        return True
    if entered_ns is not None and handed_on_ns is not None and (
        entered_ns <= hop.called_ns < handed_on_ns
    ):
        return True
    call_site = cause.call_site
    if call_site is None or not call_site.replace("\\", "/").startswith(_TOOLBAR_PACKAGE + "/"):
        return False
    return handed_on_ns is None or hop.called_ns < handed_on_ns


#: When the toolbar's middleware began each request (``perf_counter_ns``), by its
#: hopwatch record, weakly: set as it asks for the ``SHOW_TOOLBAR_CALLBACK``, read by
#: the request's panel, which the toolbar makes after that (see made_by_toolbar). No
#: context variable: hopwatch keeps one, its scope, in the contexts asgiref carries.
_entered: weakref.WeakKeyDictionary[RequestRecord, int] = weakref.WeakKeyDictionary()


def _watch_the_toolbars_entry() -> None:
    """Have the toolbar's middleware say when it begins a request: its
    ``get_show_toolbar``, which it calls first thing for every request (5.1 and later,
    before asking the callback), is wrapped to note the time on the request's record
    and return what it returns. Nothing else of the toolbar changes. Once (idempotent);
    a toolbar without that function is left as it is (a sync callback's crossings are
    still the toolbar's, by their call site)."""
    try:
        from debug_toolbar import middleware
    except ImportError:
        return
    original = getattr(middleware, "get_show_toolbar", None)
    if original is None or getattr(original, "_hopwatch_notes_entry", False):
        return

    @functools.wraps(original)
    def get_show_toolbar(*args: Any, **kwargs: Any) -> Any:
        record = _django.current_request()
        if record is not None:
            _entered[record] = time.perf_counter_ns()
        return original(*args, **kwargs)

    get_show_toolbar._hopwatch_notes_entry = True  # type: ignore[attr-defined]
    middleware.get_show_toolbar = get_show_toolbar


# As the toolbar loads its panels (at start-up, as its app is ready).
_watch_the_toolbars_entry()


class HopsPanel(Panel):
    """The request's sync/async crossings: a summary, one row per hop, causes with advice."""

    # Works under ASGI too: it never blocks and makes no hop.
    is_async = True
    title = "Hops"
    nav_title = "Hops"

    @classmethod
    def ready(cls) -> None:
        # Last: after hopwatch's line sink, which marks whether it wrote the line.
        add_sink(_store_complete_request, last=True)
        _watch_the_toolbars_entry()

    @classmethod
    def run_checks(cls) -> list[CheckMessage]:
        if apps.is_installed("hopwatch"):
            return []
        from django.conf import settings

        if "hopwatch.middleware.HopwatchMiddleware" in settings.MIDDLEWARE:
            # The middleware installs hopwatch itself as Django loads it: the panel
            # shows the hops, but hopwatch's own checks never run.
            effect = (
                "hopwatch's middleware installs it as Django loads the middleware, so the"
                " panel shows hops, but hopwatch's system checks are not run."
            )
        else:
            effect = "the panel will have no hops to show."
        return [
            CheckWarning(
                "hopwatch's HopsPanel is in DEBUG_TOOLBAR_PANELS but hopwatch is not in"
                f" INSTALLED_APPS: {effect}",
                hint='Add "hopwatch" to INSTALLED_APPS and'
                ' "hopwatch.middleware.HopwatchMiddleware" first in MIDDLEWARE.',
                id="hopwatch.W020",
            )
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: When the toolbar handed the request on to the app (see made_by_toolbar).
        self._handed_on_ns: int | None = None
        #: When the toolbar's middleware began the request (None: not known); the
        #: toolbar makes its panels after that, for this request only.
        record = _django.current_request()
        self._entered_ns = _entered.get(record) if record is not None else None

    def process_request(self, request: HttpRequest) -> Any:
        # The toolbar calls its panels' process_request in order, this one
        # usually last, right before the rest of the middleware chain.
        self._handed_on_ns = time.perf_counter_ns()
        return super().process_request(request)

    @property
    def nav_subtitle(self) -> str:
        return _hop_table.subtitle(self.get_stats())

    def generate_stats(self, request: HttpRequest, response: HttpResponseBase) -> None:
        try:
            self._generate_stats()
        except Exception as exc:
            _errors.report("HopsPanel.generate_stats", exc)

    def _generate_stats(self) -> None:
        record = _django.current_request()
        if record is None:
            self.record_stats(_hop_table.not_recorded(_why_not_recorded()))
            return
        handed_on_ns, entered_ns = self._handed_on_ns, self._entered_ns
        stats = _hop_table.capture(
            record,
            made_by_tool=lambda hop: made_by_toolbar(hop, handed_on_ns, entered_ns),
            nested=_nested.labels(record),
        )
        self.record_stats(stats)
        if stats["complete"]:
            return
        # Idempotent. ready() may not have run, or hopwatch was installed again since
        # (hopwatch.install(): its line sink added after this one).
        add_sink(_store_complete_request, last=True)
        _awaiting_close.add(
            record,
            _Destination(
                store=self.toolbar.store,
                request_id=self.toolbar.request_id,
                panel_id=self.panel_id,
                handed_on_ns=handed_on_ns,
                entered_ns=entered_ns,
                kept_at_render=len(stats["rows"]) + len(stats["tool_rows"]),
            ),
        )
        if record.closed:  # closed meanwhile, on another thread: its sink may have run
            _store_complete_request(record)

    @property
    def content(self) -> str:
        context = _hop_table.display(self.get_stats())
        return str(_template().render(Context(context, autoescape=True)))


def _why_not_recorded() -> str:
    # ENABLED is read once, at start-up (hopwatch.apps.activate): its value then, not now
    if hopwatch_apps.enabled is False:
        return 'hopwatch recorded nothing: HOPWATCH["ENABLED"] was False at start-up.'
    if not _django.is_installed():
        return (
            'hopwatch recorded nothing: it is not installed. Add "hopwatch" to INSTALLED_APPS'
            ' and "hopwatch.middleware.HopwatchMiddleware" first in MIDDLEWARE.'
        )
    return "hopwatch recorded nothing for this request (it was outside any request scope)."


@functools.cache
def _template() -> Any:
    # hopwatch's own engine: autoescaping stays on whatever the project's TEMPLATES say,
    # and the panel needs neither "hopwatch" in INSTALLED_APPS nor APP_DIRS.
    engine = Engine(dirs=[str(_TEMPLATES)], autoescape=True, debug=False)
    return engine.get_template("hops_panel.html")


# --- storing the whole request once hopwatch closes it -------------------------------


@dataclass(frozen=True)
class _Destination:
    """Where a request's complete panel data goes (plain values: no toolbar, no request)."""

    store: Any  # the toolbar's store class
    request_id: str
    panel_id: str
    handed_on_ns: int | None
    entered_ns: int | None
    kept_at_render: int


class _AwaitingClose:
    """Records whose toolbar still waits for their last hops, weakly held."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Weak: a record that is never closed (a response never closed nor collected)
        # must not be kept alive by the panel.
        self._entries: weakref.WeakKeyDictionary[RequestRecord, _Destination] = (
            weakref.WeakKeyDictionary()
        )

    def add(self, record: RequestRecord, destination: _Destination) -> None:
        with self._lock:
            self._entries[record] = destination

    def pop(self, record: RequestRecord) -> _Destination | None:
        if not self._entries:  # the common case, every request: no lock
            return None
        with self._lock:
            return self._entries.pop(record, None)

    def __len__(self) -> int:
        return len(self._entries)


_awaiting_close = _AwaitingClose()


class _NestedRequests:
    """The hops of requests served inside another (a test client called from a view).

    hopwatch counts a request's hops in the request it was served inside too (its
    record is the inner one's parent: docs/testing.md), so they are rows of the
    outer request's panel, as they are in its line. Kept here when the inner
    request closes, weakly by the outer record, so the panel can say whose they are.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: weakref.WeakKeyDictionary[RequestRecord, list[tuple[str, list[Hop]]]] = (
            weakref.WeakKeyDictionary()
        )

    def add(self, record: RequestRecord) -> None:
        """``record`` closed: its hops, for the request it was served inside, if any."""
        outer: Any = record.parent
        while outer is not None and not isinstance(outer, RequestRecord):
            outer = outer.parent  # a count_hops() block in between
        if outer is None or outer.closed:
            return
        label = f"{record.method or ''} {record.route or record.path or ''}".strip()
        with self._lock:
            self._entries.setdefault(outer, []).append((label, record.hops()))

    def labels(self, record: RequestRecord) -> dict[int, str]:
        """``id(hop)``: the request served inside ``record`` that made the hop."""
        if not self._entries:  # the common case: no lock
            return {}
        with self._lock:
            inner = list(self._entries.get(record, ()))
        # (a request served inside an inner one is listed under that one: its hops
        # are the inner one's here)
        return {id(hop): label for label, hops in inner for hop in hops}


_nested = _NestedRequests()


def _store_complete_request(record: RequestRecord) -> None:
    """hopwatch's request sink: the closed request's complete data, to the toolbar's store."""
    if record.parent is not None:  # served inside another request, or a count_hops() block
        _nested.add(record)
    destination = _awaiting_close.pop(record)
    if destination is None:
        return
    try:
        store = destination.store
        # A request still running (a streaming response being read) can be pushed out of
        # the store by later ones (RESULTS_CACHE_SIZE): saving would put it back, an
        # empty row in the History that pushes out the oldest request still there.
        if not store.exists(destination.request_id):
            return
        handed_on_ns, entered_ns = destination.handed_on_ns, destination.entered_ns
        stats = _hop_table.capture(
            record,
            made_by_tool=lambda hop: made_by_toolbar(hop, handed_on_ns, entered_ns),
            kept_at_render=destination.kept_at_render,
            nested=_nested.labels(record),
        )
        store.save_panel(destination.request_id, destination.panel_id, stats)
    except Exception as exc:
        _errors.report("HopsPanel (storing the complete request)", exc)


__all__ = ["HopsPanel", "made_by_toolbar"]
