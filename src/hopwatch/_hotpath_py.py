"""The hop path in pure Python: the reference for the C accelerator (``_speedups.c``).

``hopwatch._hotpath`` uses the C module when it is built and this one
otherwise (or when ``HOPWATCH_PURE_PYTHON=1`` is set, which the test command
uses to run the suite on both). Both have the same names and behaviour.

How one crossing is measured, in every asgiref from 3.8 to 3.13, with four
class-level patches and no per-call copies of anything:

* ``SyncToAsync.__call__``: when its coroutine is first driven (in the
  awaiting task's context), the hop is attributed and created, and made this
  thread's *pending* hop; then asgiref's own ``__call__`` runs unchanged. Its
  first step binds ``self.thread_handler`` for the executor, in this thread:
  the binding takes the pending hop, so the worker gets its hop with the
  function it calls. No context variable is set per hop: every variable a
  context holds costs each later crossing a pass of asgiref's
  ``_restore_context`` (two on asgiref 3.13). When the coroutine finishes,
  the hop is accounted.
* ``SyncToAsync.thread_handler`` (worker thread), when bound with a hop: takes
  the start and end of the code's run around the original, and is the
  thread's *running* hop meanwhile, the parent of an ``async_to_sync`` made
  from that code. A subclass's own ``thread_handler`` (channels'
  ``DatabaseSyncToAsync``) is what asgiref binds for its adapters: the first
  time ``__call__`` meets such a class, before asgiref's first step, it has
  ``hopwatch._patch`` *adopt* it (``adopt``, handed in by ``configure``): the
  class that defines the function gets the same patch around it. Its
  ``super().thread_handler`` call then reaches SyncToAsync's in the worker
  thread, where no hop is pending: a plain bound method, untimed.
* ``AsyncToSync.__call__`` (sync caller): attributes and creates the hop (its
  parent: the thread's running hop, else the hop whose code runs here) and
  makes it this thread's *a2s* hop around the original call, then accounts it.
* ``AsyncToSync.main_wrap``: called by asgiref in the caller's thread, where it
  takes the thread's a2s hop. On asgiref 3.9 and later it wraps the awaitable
  ``main_wrap`` is given (the hop's code): on the target loop, that awaitable
  is timed from its first step to its end, says whether the loop is the one
  asgiref would have found (a new loop is the cold path), and runs with the
  hop as the ``current_scope`` contextvar's value, so a ``sync_to_async`` made
  there, or in a task started there, finds its parent in it (and its scope as
  the hop's ``scope``). The variable is reset before ``main_wrap`` copies the
  context back for the caller: it is never in the contexts asgiref carries
  between the two sides, each of whose variables costs a pass of
  ``_restore_context`` on each side. On asgiref 3.8, ``main_wrap`` makes the
  awaitable itself, so its coroutine is timed instead, and ``__call__`` sets
  the variable in the caller around the whole call (asgiref carries it over).
  hopwatch keeps one context variable, not a second one for the running hop.

Timestamps: the caller's ``called_ns`` is taken after hopwatch's own set-up
and ``resumed_ns`` before its own wrap-up, so what a hop records is the
crossing, not hopwatch. Attribution is answered from a two-level cache keyed
by raw facts (see :func:`attribute`); the rules themselves (``_causes``) run
once per distinct site.

Nothing here takes a lock, logs or does I/O; an error inside hopwatch is
handed to ``report`` and the call goes on unrecorded.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from types import CodeType, FrameType, FunctionType, MethodType, ModuleType
from typing import Any, Final

S2A_CALL: Final = 1
A2S_CALL: Final = 2
THREAD_HANDLER: Final = 3
MAIN_WRAP: Final = 4

#: Code flags of frames that await (a coroutine's, an async generator's): one
#: resumed by a frame with none of these nor a generator's was resumed by what
#: drives the event loop, where a walk for a call site stops.
AWAITING_FLAGS: Final = (
    inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_ASYNC_GENERATOR
)
AWAITING_OR_GENERATOR: Final = AWAITING_FLAGS | inspect.CO_GENERATOR

MODE_FINAL: Final = 0  # the cause depends only on the cache key
MODE_USER: Final = 1  # ... and on the user's call site
MODE_ASK: Final = 2  # ... and on the objects themselves: ask every time
#: (first level only) the caller is a layer other code wrapped over hopwatch's
#: ``__call__`` (``layer`` says, handed in by configure): ask from the frame past it
MODE_LAYER: Final = 3

SYNC_TO_ASYNC: Final = "sync_to_async"
VIEW: Final = "view"  # the view's kind (hopwatch.schema.KINDS): always on the line
ASYNC_TO_SYNC: Final = "async_to_sync"
OK: Final = "ok"
ERROR: Final = "error"
CANCELLED: Final = "cancelled"

_CACHE_LIMIT: Final = 2048
TAG_ATTR: Final = "_hopwatch_cause"

_now = time.perf_counter_ns
_get_ident = threading.get_ident
_partial = functools.partial
_getframe = sys._getframe


class Hop:
    """One sync/async crossing.

    Timestamps are ``time.perf_counter_ns()`` values: ``called_ns`` when the
    caller made the call, ``started_ns``/``ended_ns`` when the code ran on the
    other side, ``resumed_ns`` when the caller got control back. ``started_ns``
    stays 0 when the code never ran (cancelled or refused before it started).
    """

    __slots__ = (
        "adapter_id",
        "called_ns",
        "cause",
        "depth",
        "direction",
        "ended_ns",
        "expected_loop",
        "inner_ns",
        "inner_work_ns",
        "new_loop",
        "new_thread",
        "outcome",
        "own_executor",
        "parent",
        "resumed_ns",
        "scope",
        "started_ns",
        "thread_id",
        "thread_sensitive",
    )

    direction: str
    cause: Any
    thread_sensitive: bool | None
    depth: int
    parent: Hop | None
    scope: Any
    new_loop: bool
    #: an async_to_sync whose new loop ran in a thread started for it
    new_thread: bool
    #: a sync_to_async that is not thread-sensitive ran on an executor its caller gave
    own_executor: bool
    thread_id: int
    called_ns: int
    started_ns: int
    ended_ns: int
    resumed_ns: int
    #: of the crossings made in this one's run (in its scope or one inside it: a
    #: request served there; accounted before it): the time they spent crossing,
    #: and the time their code ran
    inner_ns: int
    inner_work_ns: int
    outcome: str
    expected_loop: object
    adapter_id: int

    def __init__(
        self,
        direction: str,
        cause: Any,
        thread_sensitive: bool | None,
        parent: Hop | None,
        scope: Any,
        called_ns: int = 0,
    ) -> None:
        self.direction = direction
        self.cause = cause
        self.thread_sensitive = thread_sensitive
        self.parent = parent
        self.depth = 1 if parent is None else parent.depth + 1
        self.scope = scope
        self.called_ns = called_ns
        self.started_ns = 0
        self.ended_ns = 0
        self.resumed_ns = 0
        self.inner_ns = self.inner_work_ns = 0
        self.thread_id = 0
        self.new_loop = self.new_thread = False
        self.own_executor = False
        self.outcome = OK
        self.expected_loop = None
        self.adapter_id = 0

    # Durations; all clamp at zero because the sides are timed on different
    # threads and a clock read can land just before the other side's.
    @property
    def end_ns(self) -> int:
        """When the code's run ended, as far as this crossing goes: ``ended_ns``,
        or ``resumed_ns`` when the caller resumed first (cancelled, or timed out,
        while its code still ran on the other side: what the code did after
        that was no part of the crossing)."""
        ended, resumed = self.ended_ns, self.resumed_ns
        if resumed and (not ended or ended > resumed):
            return resumed
        return ended

    @property
    def wait_ns(self) -> int:
        """Queued: from the call until the code started running on the other side."""
        if not self.started_ns:
            return max(0, self.resumed_ns - self.called_ns)
        return max(0, self.started_ns - self.called_ns)

    @property
    def run_ns(self) -> int:
        """Running: the code's own time on the other side."""
        if not self.started_ns:
            return 0
        return max(0, self.end_ns - self.started_ns)

    @property
    def resume_ns(self) -> int:
        """From the code finishing until the caller resumed."""
        if not self.started_ns:
            return 0
        return max(0, self.resumed_ns - self.end_ns)

    @property
    def wall_ns(self) -> int:
        """The whole crossing as the caller saw it."""
        return max(0, self.resumed_ns - self.called_ns)

    @property
    def overhead_ns(self) -> int:
        """The crossing's own cost: wait plus hand-off back (wall minus run)."""
        return max(0, self.wall_ns - self.run_ns)

    @property
    def work_ns(self) -> int:
        """The code's time in its run: the run less what the crossings made in it spent
        crossing. Crossings that overlapped (gathered onto one thread, each queued
        behind the others) each count their own wait, which can add up to more than
        the run left beside their code: bounded by that. (``LedgerCore._account``
        computes the same inline.)"""
        run = self.run_ns
        return run - min(self.inner_ns, max(0, run - self.inner_work_ns))

    def __repr__(self) -> str:
        return (
            f"<Hop {self.direction} {self.cause.describe()} depth={self.depth}"
            f" wall={self.wall_ns / 1e6:.3f}ms {self.outcome}>"
        )


class CauseStats:
    """Aggregate of one cause's hops within a ledger (every hop, nested ones too)."""

    __slots__ = (
        "count",
        "direction",
        "overhead_ns",
        "resume_ns",
        "run_ns",
        "wait_ns",
        "wall_ns",
    )

    def __init__(self, direction: str) -> None:
        self.direction = direction
        self.count = 0
        self.wall_ns = 0
        self.wait_ns = 0
        self.run_ns = 0
        self.resume_ns = 0
        self.overhead_ns = 0


def _pin_held(parent: Hop) -> bool:
    """An async_to_sync made from ``parent``'s thread that an enclosing async_to_sync
    already holds (a sync-only middleware's, then the same thread again through a
    thread-sensitive call inside it): the thread is held once, and its time
    counted there."""
    thread = parent.thread_id
    up = parent.parent
    while up is not None:
        held_from = up.parent
        if (
            up.direction is ASYNC_TO_SYNC
            and held_from is not None
            and held_from.direction is SYNC_TO_ASYNC
            and held_from.thread_id == thread
        ):
            return True
        up = held_from
    return False


def _scope_within(scope: Any, ledger: Any) -> bool:
    """Whether a crossing in ``scope`` is in ``ledger`` too: ``scope`` is ``ledger``
    or a scope inside it (its parent's parent's ...). Asked only of a crossing held
    by one in another scope (a request served inside another's crossing, or inside
    a ``count_hops()`` block's): there the crossing is nested in the ledgers that
    have its holder, and outermost in the ones inside them."""
    guard = 0
    while scope is not None and guard < 64:
        if scope is ledger:
            return True
        scope = scope.parent
        guard += 1
    return False


class LedgerCore:
    """A ledger's exact account of hops: counts, sums, causes, kept hops.

    Each finished hop is accounted at once (:func:`finish_hop`), under the
    ledger's lock here (the C accelerator needs none: its accounting runs
    under the GIL without calling Python code). ``hopwatch._recorder.Ledger``
    subclasses it with the reading methods.

    Times, and what each total means: ``wall_ns`` sums every hop's whole
    crossing, nested ones included (a nested crossing lies inside its
    parent's); ``overhead_ns`` sums every hop's own crossing cost (wait plus
    hand-off: never double counted, because a nested hop's overhead lies inside
    its parent's *run*; hops that overlap each count their own wait);
    ``work_ns`` is the code that ran inside the outermost crossings, less the
    overhead of the crossings nested in them (bounded by what their parent's
    run left beside their code: gathered hops' waits overlap each other's
    work), so without overlap ``overhead_ns + work_ns`` is the outermost
    crossings' wall time. ``pinned_ns``: the wall time of async_to_sync hops
    made from inside a sync_to_async hop (a worker thread held while async work
    ran), once per thread held, by the cause of that sync_to_async hop in
    ``pinned_by``.
    """

    __slots__ = (
        "__weakref__",
        "_account_lock",
        "_detail_limit",
        "async_to_sync",
        "cause_limit",
        "causes",
        "closed",
        "count",
        "detail_dropped",
        "details",
        "max_depth",
        "new_loops",
        "outer_hop",
        "overhead_ns",
        "parent",
        "pinned_by",
        "pinned_ns",
        "run_ns",
        "sync_to_async",
        "thread_ids",
        "thread_reuses",
        "threadless",
        "wait_ns",
        "wall_ns",
        "work_ns",
    )

    parent: Any
    #: The async_to_sync hop whose code was running where this ledger was
    #: entered: the parent of the hops made in it (_recorder.enter_scope).
    outer_hop: Any
    closed: bool
    _account_lock: threading.Lock
    count: int
    sync_to_async: int
    async_to_sync: int
    wall_ns: int
    wait_ns: int
    run_ns: int
    overhead_ns: int
    work_ns: int
    new_loops: int
    max_depth: int
    threadless: int
    pinned_ns: int
    detail_dropped: int
    _detail_limit: int
    causes: dict[tuple[Any, str], CauseStats]
    details: list[Hop]
    thread_ids: set[int]
    #: threads started for a new loop whose id an earlier thread of its hops had
    #: (one that ended): distinct threads the ids do not tell apart
    thread_reuses: int
    pinned_by: dict[Any, int]
    cause_limit: int

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        self = super().__new__(cls)
        self._account_lock = threading.Lock()
        self.parent = self.outer_hop = None
        self.closed = False
        self.causes = {}
        self.details = []
        self.thread_ids = set()
        self.pinned_by = {}
        self.count = self.sync_to_async = self.async_to_sync = 0
        self.wall_ns = self.wait_ns = self.run_ns = self.overhead_ns = self.work_ns = 0
        self.new_loops = self.max_depth = self.pinned_ns = self.detail_dropped = 0
        self.threadless = self.thread_reuses = 0
        self._detail_limit = 1000
        self.cause_limit = 256
        return self

    @property
    def detail_limit(self) -> int:
        """At most this many hops are kept one by one (the rest are counted)."""
        return self._detail_limit

    @detail_limit.setter
    def detail_limit(self, limit: int) -> None:
        # Whenever it is set: a lower limit drops the kept hops beyond it.
        if limit < 0:
            raise ValueError("detail_limit must be a whole number >= 0")
        with self._account_lock:
            self._detail_limit = limit
            extra = len(self.details) - limit
            if extra > 0:
                del self.details[limit:]
                self.detail_dropped += extra

    @property
    def threads_seen(self) -> int:
        """How many distinct threads ran its hops (``len(thread_ids)``, without a set)."""
        return len(self.thread_ids)

    def ranked_causes(self) -> list[tuple[Any, CauseStats]]:
        """[(cause, stats)] by summed wall time, largest first (ties: more hops, site)."""
        # A decorated list sorts in C; the index breaks ties, so causes
        # themselves are never compared.
        ranked = [
            (-stats.wall_ns, -stats.count, cause.site, index, cause, stats)
            for index, ((cause, _direction), stats) in enumerate(list(self.causes.items()))
        ]
        ranked.sort()
        return [(entry[4], entry[5]) for entry in ranked]

    def line_sites(self, limit: int) -> tuple[list[dict[str, Any]], int]:
        """(the line's ``sites`` entries for the top ``limit`` causes, a view's always among
        them, and how many causes there are)."""
        ranked = self.ranked_causes()
        shown = ranked[: max(0, limit)]
        if shown and len(ranked) > len(shown) and all(c.kind != VIEW for c, _ in shown):
            # The view's crossing is always on the line (the C twin's last_shown
            # says why): it takes the last place, the order staying by time.
            view = next((entry for entry in ranked[len(shown) :] if entry[0].kind == VIEW), None)
            if view is not None:
                shown[-1] = view
        sites = []
        for cause, stats in shown:
            site: dict[str, Any] = {
                "site": cause.site,
                "kind": cause.kind,
                "direction": stats.direction,
                "count": stats.count,
                "ms": ((stats.wall_ns + 500) // 1000) / 1000,
                "overhead_ms": ((stats.overhead_ns + 500) // 1000) / 1000,
            }
            if cause.call_site:
                site["call_site"] = cause.call_site
            sites.append(site)
        return sites, len(ranked)

    def close(self) -> None:
        """No hop is accounted here from now on (they go to ``late``)."""
        with self._account_lock:
            self.closed = True

    def _account(self, hop: Hop, unless_closed: bool = False) -> bool:
        called, started, resumed = hop.called_ns, hop.started_ns, hop.resumed_ns
        wall = resumed - called if resumed > called else 0
        if started:
            ended = hop.ended_ns
            if resumed and (not ended or ended > resumed):  # Hop.end_ns, inline
                ended = resumed
            wait = started - called if started > called else 0
            run = ended - started if ended > started else 0
            resume = resumed - ended if resumed > ended else 0
        else:
            wait, run, resume = wall, 0, 0
        overhead = wall - run if wall > run else 0
        parent = hop.parent
        # acquire and release, not a with block: half the instructions (the block
        # looks __enter__ and __exit__ up and makes a bound method a call)
        lock = self._account_lock
        lock.acquire()
        try:
            if unless_closed and self.closed:
                return False
            self.count += 1
            if hop.direction is SYNC_TO_ASYNC:
                self.sync_to_async += 1
            else:
                self.async_to_sync += 1
            self.wall_ns += wall
            self.wait_ns += wait
            self.run_ns += run
            self.overhead_ns += overhead
            # A parent whose run is over (a task its code started outlived it): the
            # crossing whose run this one ended in is further up, if any. Under the
            # lock, as the parent's own accounting, which follows its end.
            holder = parent
            while holder is not None and (holder.ended_ns or holder.resumed_ns):
                holder = holder.parent
            # The work in this crossing: its run less what the crossings made in it
            # spent crossing, bounded (Hop.work_ns, inline).
            inner = hop.inner_ns
            room = run - hop.inner_work_ns
            if inner > room:
                inner = room if room > 0 else 0
            # Nested in this ledger when its holder is in it too: the holder's scope
            # is the hop's, or (a request served inside the holder's run) encloses it
            # and is this ledger or inside it.
            if holder is None or (
                holder.scope is not hop.scope and not _scope_within(holder.scope, self)
            ):
                self.work_ns += run - inner  # an outermost crossing in this ledger
            elif holder.scope is self or (holder.scope is None and self is _unscoped):
                # in its holder's run; once, in its holder's ledger (a hop of no
                # scope is accounted in the unscoped one)
                holder.inner_ns += overhead + inner
                holder.inner_work_ns += run - inner
            if (
                hop.direction is ASYNC_TO_SYNC
                and parent is not None
                and parent.direction is SYNC_TO_ASYNC
                and not _pin_held(parent)
            ):
                self.pinned_ns += wall
                by = parent.cause
                if by not in self.pinned_by and len(self.pinned_by) >= self.cause_limit:
                    by = _overflow_cause or by  # bounded like causes
                self.pinned_by[by] = self.pinned_by.get(by, 0) + wall
            if hop.new_loop:
                self.new_loops += 1
            if hop.depth > self.max_depth:
                self.max_depth = hop.depth
            thread_id = hop.thread_id
            if not thread_id:
                self.threadless += 1
            elif thread_id not in self.thread_ids:
                self.thread_ids.add(thread_id)
            elif hop.new_thread:  # a new thread with an id an ended one had
                self.thread_reuses += 1
            causes = self.causes
            key = (hop.cause, hop.direction)
            stats = causes.get(key)
            if stats is None:
                if (
                    len(causes) >= self.cause_limit
                    and _overflow_cause is not None
                    # the view's crossing keeps an entry of its own (always on the line)
                    and getattr(hop.cause, "kind", None) != VIEW
                ):
                    key = (_overflow_cause, hop.direction)
                    stats = causes.get(key)
                if stats is None:
                    stats = causes[key] = CauseStats(hop.direction)
            stats.count += 1
            stats.wall_ns += wall
            stats.wait_ns += wait
            stats.run_ns += run
            stats.resume_ns += resume
            stats.overhead_ns += overhead
            if len(self.details) < self._detail_limit:
                self.details.append(hop)
            else:
                self.detail_dropped += 1
        finally:
            lock.release()
        return True


# --- collaborators, handed in by hopwatch._patch ------------------------------

_current_scope: ContextVar[Any] = ContextVar("hopwatch_unconfigured_scope", default=None)
_resolve: Callable[[Any, Any, FrameType | None], tuple[Any, int, Any]]
_classify_code: Callable[[CodeType], int]
_unscoped: Any = None
_late: Any = None
_overflow_cause: Any = None
_report: Callable[[str, BaseException], None]
_cancelled: type[BaseException] = asyncio.CancelledError
_get_running_loop: Callable[[], Any] = asyncio.events._get_running_loop
_threadlocal: Any = None
#: asgiref's SyncToAsync.thread_sensitive_context, and hopwatch's subclass of
#: ThreadSensitiveContext that carries a request's record (see scope_value).
_tsc_var: ContextVar[Any] | None = None
_request_context: type | None = None
# Where main_wrap takes the awaitable it runs (counting self; asgiref 3.9 and
# later), or -1 (3.8: main_wrap makes it from self.awaitable). See main_wrap.
_awaitable_index = -1
#: Whether AsyncToSync keeps its loop on the adapter (asgiref < 3.12; see configure).
_loop_on_adapter = True
_active = False
_thread_hook: Callable[..., Any] | None = None
#: hopwatch._patch._adopt (see _adopt_class)
_adopt: Callable[[type], bool | None] | None = None
#: hopwatch._patch._layer (see attribute)
_layer: Callable[[Any, FrameType], bool] | None = None


def configure(
    *,
    current_scope: ContextVar[Any],
    resolve: Callable[[Any, Any, FrameType | None], tuple[Any, int, Any]],
    classify_code: Callable[[CodeType], int],
    unscoped: Any,
    late: Any,
    overflow_cause: Any,
    report: Callable[[str, BaseException], None],
    cancelled: type[BaseException],
    get_running_loop: Callable[[], Any],
    threadlocal: Any,
    partial: type,
    thread_sensitive_context: ContextVar[Any] | None = None,
    request_context: type | None = None,
    awaitable_index: int = -1,
    awaiting: Callable[[Any], Any] | None = None,
    loop_on_adapter: bool = True,
    get_ident: Callable[[], int] | None = None,
    adopt: Callable[[type], bool | None] | None = None,
    layer: Callable[[Any, FrameType], bool] | None = None,
) -> None:
    """Hand the hop path its collaborators (see hopwatch._hotpath). ``get_ident``: the
    thread id the recorder reads (``threading.get_ident``, a greenlet's under gevent).
    ``adopt(cls)`` puts hopwatch's thread_handler around an adapter class's own one
    (hopwatch._patch._adopt): True done, False left alone, None ask again later.
    ``layer(adapter, frame)``: whether the caller ``frame`` runs a layer other code
    wrapped over hopwatch's ``__call__``, passing on ``adapter``'s call
    (hopwatch._patch._layer; see attribute)."""
    global _current_scope, _resolve, _classify_code, _unscoped, _late
    global _overflow_cause, _report, _cancelled, _get_running_loop, _threadlocal
    global _tsc_var, _request_context, _awaitable_index, _loop_on_adapter, _get_ident
    global _adopt, _declined, _layer
    if (thread_sensitive_context is None) != (request_context is None):
        raise TypeError(
            "configure: thread_sensitive_context (a ContextVar) and request_context"
            " (a type) go together"
        )
    if awaitable_index >= 0 and (awaitable_index < 1 or not callable(awaiting)):
        raise TypeError(
            "configure: awaitable_index (main_wrap's awaitable, counting self) goes"
            " with awaiting (a callable)"
        )
    _awaitable_index = awaitable_index
    _loop_on_adapter = bool(loop_on_adapter)
    _adopt, _declined, _layer = adopt, None, layer
    _tsc_var, _request_context = thread_sensitive_context, request_context
    _current_scope = current_scope
    _resolve, _classify_code = resolve, classify_code
    _unscoped, _late, _overflow_cause, _report = unscoped, late, overflow_cause, report
    _cancelled, _get_running_loop, _threadlocal = cancelled, get_running_loop, threadlocal
    if get_ident is not None:
        _get_ident = get_ident


def set_active(active: bool) -> None:
    """Turn recording on or off (the patches stay)."""
    global _active
    _active = bool(active)


def set_thread_hook(hook: Callable[..., Any] | None) -> None:
    """``hook(hop, handler, args, kwargs)`` runs every timed sync_to_async handler, or None."""
    global _thread_hook
    _thread_hook = hook


# --- accounting ----------------------------------------------------------------


def _ledger_add(ledger: Any, hop: Hop) -> None:
    while ledger is not None:  # this ledger, then every enclosing one
        ledger._account(hop)
        ledger = ledger.parent


def finish_hop(hop: Hop) -> None:
    """Account a finished hop to its scope and every enclosing one, then drop its
    link to the ledger: a kept hop then references no ledger, so a request's
    record and its hops form no cycle and are freed as soon as the request is
    done with. One function, not a chain of them: this runs on every hop."""
    scope = hop.scope
    try:
        if scope is None:
            ledger = _unscoped
        # The closed check and the accounting under one lock hold, so a hop that
        # finishes while its request closes is in the request's line or late,
        # never neither (close() takes the same lock).
        elif scope._account(hop, unless_closed=True):
            ledger = scope.parent
        else:
            ledger = _account_late(hop, scope)
        if ledger is not None:  # enclosing ledgers: a call only when there are any
            _ledger_add(ledger, hop)
    finally:
        hop.scope = None


def _account_late(hop: Hop, scope: Any) -> Any:
    """A hop whose request had closed: kept in ``late`` without its links, so it
    keeps no request alive. Returns the innermost enclosing scope still open (a
    test's count_hops() block around a request), which gets it too, or None."""
    parent = scope.parent
    while parent is not None and parent.closed:
        parent = parent.parent
    hop.scope = hop.parent = None
    _ledger_add(_late, hop)
    return parent


# --- attribution ------------------------------------------------------------------

# First level: (target summary ids, caller code id, caller offset) ->
# (objects held so no id is reused, cause, mode, the rule to ask first for a
# MODE_ASK: see _causes.resolve, and for a MODE_USER key whose caller is the
# user frame, the cause: see attribute). Second level, for MODE_USER:
# the first-level key plus the user frame's (code id, offset) -> (held, cause).
_first: dict[tuple[Any, ...], tuple[tuple[Any, ...], Any, int, Any, Any]] = {}
_second: dict[tuple[Any, ...], tuple[tuple[Any, ...], Any]] = {}
_code_kinds: dict[int, tuple[Any, int]] = {}
#: A class or code object the caches held died (see _hold): cleared before the next use.
_stale = False


def clear_caches() -> None:
    """Forget every cached attribution."""
    global _stale
    _stale = False
    _first.clear()
    _second.clear()
    _code_kinds.clear()


def _went_stale(_ref: Any) -> None:
    global _stale
    _stale = True


def _hold(objects: tuple[Any, ...]) -> tuple[Any, ...]:
    """What keeps the key's ids from being another object's while the caches have
    them: a weak reference to a class or a code object (a class a request made, a
    form or serializer factory's, or code it compiled, must not outlive the
    request because a hop ran its method), the object itself otherwise (strings
    and modules keep nothing of a call). When one dies, its id may come back as
    another's: the next attribution clears the caches first (the callback only
    sets a flag, as it may run inside any deallocation)."""
    return tuple(
        weakref.ref(obj, _went_stale) if isinstance(obj, (type, CodeType)) else obj
        for obj in objects
    )


def _summarize(target: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
    """Key facts about a target that never keep it (or its instance) alive."""
    wrapped = 0
    while type(target) is _partial and wrapped < 4:
        target = target.func
        wrapped += 1
    kind = type(target)
    if kind is FunctionType:
        code, qualname, module = target.__code__, target.__qualname__, target.__module__
        return (id(code), id(qualname), id(module), wrapped), (code, qualname, module)
    if kind is MethodType:
        func, owner = target.__func__, target.__self__
        if type(func) is not FunctionType:
            return None
        # type(), not isinstance(), as the C key: a wrapt proxy of a class is no class
        owner_type = type(owner)
        if issubclass(owner_type, type):
            owner_type = owner
        code, qualname = func.__code__, func.__qualname__
        ids = (id(code), id(qualname), id(owner_type), wrapped | 0x10)
        return ids, (code, qualname, owner_type)
    if issubclass(kind, type):
        return (id(target), 0, 0, wrapped | 0x40), (target,)
    # A callable instance, or a builtin (bound to an instance or not): named
    # after its class, or its qualified name and its instance's class.
    owner = getattr(target, "__self__", None)
    if kind.__name__ == "builtin_function_or_method":
        # as the C key: a module or a class itself, else an instance's class
        bound_to: object = (
            owner if owner is None or issubclass(type(owner), (type, ModuleType)) else type(owner)
        )
        name = target.__name__
        # A builtin's __name__ is a new string on every access: key by its value.
        return (name, id(bound_to), 0, wrapped | 0x20), (bound_to,)
    return (id(kind), 0, 0, wrapped | 0x80), (kind,)


def _code_kind(code: CodeType) -> int:
    entry = _code_kinds.get(id(code))
    if entry is not None and entry[0]() is code:
        return entry[1]
    kind = _classify_code(code)
    if len(_code_kinds) >= 4 * _CACHE_LIMIT:
        _code_kinds.clear()
    _code_kinds[id(code)] = (weakref.ref(code, _went_stale), kind)
    return kind


def _user_frame(frame: FrameType | None) -> FrameType | None:
    while frame is not None:
        code = frame.f_code
        kind = _code_kind(code)
        if kind == 0:
            return frame
        if kind == 2:  # the application's boundary: what is above called it
            return None
        frame = frame.f_back
        if (
            code.co_flags & AWAITING_FLAGS
            and frame is not None
            and not frame.f_code.co_flags & AWAITING_OR_GENERATOR
        ):
            return None  # resumed by what drives the loop: who awaited is unknown
    return None


def _past_layer(frame: FrameType | None) -> FrameType | None:
    """The frame that called the layer running in ``frame`` (a wrapper other code put
    over hopwatch's ``__call__``), or None where that layer is a coroutine stepped by
    what drives the loop (a task's own): who awaited it is unknown."""
    if frame is None:
        return None
    back = frame.f_back
    if (
        frame.f_code.co_flags & AWAITING_FLAGS
        and back is not None
        and not back.f_code.co_flags & AWAITING_OR_GENERATOR
    ):
        return None
    return back


def attribute(adapter: Any, target: Any, frame: FrameType | None) -> Any:
    """The cause of a hop through ``adapter`` running ``target``, called from ``frame``.

    When ``frame`` runs a layer other code wrapped over hopwatch's ``__call__`` (an
    APM agent's wrapper: ``layer`` says so, once per key, on a cache miss), the
    cause is the one of a call from the frame that called that layer, as without
    the agent; its first-level entry (``MODE_LAYER``) says so for the key."""
    tagged = getattr(adapter, TAG_ATTR, None)  # not via __dict__: see _causes.tag()
    if tagged is not None:
        return tagged
    if _stale:
        clear_caches()
    if frame is not None:
        caller: CodeType | None = frame.f_code
        lasti = frame.f_lasti
    else:
        caller, lasti = None, -1
    if type(target) is FunctionType:  # most targets: _summarize's first case, inline
        key: tuple[Any, ...] = (
            id(target.__code__),
            id(target.__qualname__),
            id(target.__module__),
            0,
            id(caller),
            lasti,
        )
        held = None
    else:
        summary = _summarize(target)
        if summary is None:
            while frame is not None and _layer is not None and _layer(adapter, frame):
                frame = _past_layer(frame)
            return _resolve(adapter, target, frame)[0]
        ids, held = summary
        key = (*ids, id(caller), lasti)
    first = _first.get(key)
    if first is not None:
        # (held, cause, mode, rule, direct): a MODE_USER key whose caller is itself
        # the user frame has its answer in ``direct`` (the second level's key would
        # be this one's own), without the frame walk and the second lookup; the C
        # accelerator's CacheEntry.direct
        if first[2] == MODE_FINAL:
            return first[1]
        if first[4] is not None:
            return first[4]
        if first[2] == MODE_ASK:
            rule = first[3]  # the rule that answered for this key (see _causes.resolve)
            if rule is not None:
                cause = rule(target, frame)
                if cause is not None:
                    return cause
            return _resolve(adapter, target, frame)[0]
        if first[2] == MODE_LAYER:
            return attribute(adapter, target, _past_layer(frame))
        user = _user_frame(frame)
        user_key = (*key, id(user.f_code) if user else 0, user.f_lasti if user else -1)
        second = _second.get(user_key)
        if second is not None:
            return second[1]
    elif frame is not None and _layer is not None and _layer(adapter, frame):
        # A layer over hopwatch's __call__ (an agent's wrapper) passing this adapter's
        # call on: the key says so (its lasti tells it from a crossing the layer makes
        # of its own), and the cause is the one of a call from the frame past it
        if len(_first) >= _CACHE_LIMIT:
            _first.clear()
        if held is None:
            held = (target.__code__, target.__qualname__, target.__module__)
        _first[key] = (_hold((*held, caller)), None, MODE_LAYER, None, None)
        return attribute(adapter, target, _past_layer(frame))
    cause, mode, rule = _resolve(adapter, target, frame)
    if held is None:
        held = (target.__code__, target.__qualname__, target.__module__)
    if first is None:
        if len(_first) >= _CACHE_LIMIT:
            _first.clear()
        user = _user_frame(frame) if mode == MODE_USER else None
        direct = cause if user is not None and user is frame else None
        _first[key] = (_hold((*held, caller)), cause, mode, rule, direct)
        if mode != MODE_USER:
            return cause
        user_key = (*key, id(user.f_code) if user else 0, user.f_lasti if user else -1)
    elif mode != MODE_USER:
        return cause
    if len(_second) >= _CACHE_LIMIT:
        _second.clear()
    _second[user_key] = (_hold((*held, caller, user.f_code if user else None)), cause)
    return cause


# --- the patches ------------------------------------------------------------------


class _ThreadState:
    """What the hop path keeps per thread. One object a thread, read once from the
    thread-local (``_here.state``) by each function that needs it: an attribute of a
    ``threading.local`` costs some 600 instructions a read or write, a slot of this
    a few dozen."""

    __slots__ = ("a2s", "loop_thread", "pending", "running")

    def __init__(self) -> None:
        #: the sync_to_async hop whose asgiref coroutine takes its first step here
        self.pending: Hop | None = None
        #: the sync_to_async hop whose code this sync thread runs
        self.running: Hop | None = None
        #: the async_to_sync hop whose ``AsyncToSync.__call__`` runs here
        self.a2s: Hop | None = None
        #: a new loop of an async_to_sync ran here (cold path only)
        self.loop_thread = False


class _PerThread(threading.local):
    def __init__(self) -> None:  # in each thread, at its first read
        self.state = _ThreadState()


_here = _PerThread()

#: An adapter class known to bind hopwatch's thread_handler (SyncToAsync, or a
#: subclass whose own one was adopted), and the last thread_handler found that
#: ``adopt`` left alone (a subclass's that is not a plain function, or other code's
#: over hopwatch's): neither is looked at again while it stays.
_plain_s2a: type | None = None
_declined: Any = None


def _own_thread_handler(klass: type) -> Any:
    """``klass.thread_handler`` as it is found along the MRO, not bound."""
    for owner in klass.__mro__:
        own = vars(owner).get("thread_handler")
        if own is not None:
            return own
    return None


def _adopt_class(klass: type) -> None:
    """An adapter class not known to bind hopwatch's thread_handler: a subclass
    with one of its own is adopted (hopwatch._patch._adopt), so asgiref's binding,
    in this thread, takes the hop. Cold: once a class (or a thread_handler left
    alone)."""
    global _plain_s2a, _declined
    own = _own_thread_handler(klass)
    if own is None or isinstance(own, _ThreadHandler):
        _plain_s2a = klass
        return
    if own is _declined or _adopt is None:
        return
    try:
        adopted = _adopt(klass)
    except Exception as exc:
        _report("SyncToAsync.__call__ (adopt)", exc)
        adopted = False
    if adopted is None:  # not installed: asked again at the next crossing
        return
    if adopted and isinstance(_own_thread_handler(klass), _ThreadHandler):
        _plain_s2a = klass
    else:
        _declined = own


def _expected_loop(adapter: Any) -> object:
    """The running loop asgiref will schedule onto, or None for a new loop."""
    if getattr(adapter, "force_new_loop", False):
        return None
    if _loop_on_adapter:  # asgiref < 3.12 keeps it on the adapter
        cached = getattr(adapter, "main_event_loop", None)
        if cached is not None:
            return cached
    local = _threadlocal
    if getattr(local, "main_event_loop_pid", None) == os.getpid():
        return getattr(local, "main_event_loop", None)
    return None


def _scope_and_hop() -> tuple[Any, Any]:
    """The current scope and the hop whose code runs here, from ``current_scope``:
    a ledger (and the hop running where it was entered), or an async_to_sync hop
    (and its scope)."""
    value = scope_value(_current_scope)
    if type(value) is Hop:
        # A hop that has finished (a task its code started outlives it): the scope
        # is that of the crossing its run was made in, if any.
        holder = value
        while holder.resumed_ns and holder.scope is None and holder.parent is not None:
            holder = holder.parent
        return holder.scope, value
    return value, None if value is None else value.outer_hop


def _reset_scope(token: Any) -> None:
    """Undo the caller-side set of the scope variable (asgiref 3.8)."""
    try:
        _current_scope.reset(token)
    except ValueError:
        # The token belongs to another context (the caller's context was
        # swapped under us); leave the variable as asgiref left it.
        pass


def _make_s2a_call(original: Callable[..., Any]) -> Callable[..., Any]:
    async def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        __traceback_hide__ = True
        __tracebackhide__ = True
        if not _active:
            return await original(self, *args, **kwargs)
        # Kept inline, without helper functions: this runs on every hop.
        try:
            caller: FrameType | None = _getframe(1)
            if not caller.f_code.co_flags & AWAITING_OR_GENERATOR:  # type: ignore[union-attr]
                caller = None  # a task's own coroutine, stepped by the loop (gather)
            cause = attribute(self, self.func, caller)
            scope, parent = _scope_and_hop()
            hop = Hop(
                SYNC_TO_ASYNC, cause, getattr(self, "_thread_sensitive", None), parent, scope
            )
            hop.adapter_id = id(self)
            if hop.thread_sensitive is False:  # the caller's executor, or the loop's pool
                hop.own_executor = getattr(self, "_executor", None) is not None
            if type(self) is not _plain_s2a:
                _adopt_class(type(self))
        except Exception as exc:
            _report("SyncToAsync.__call__", exc)
            return await original(self, *args, **kwargs)
        # asgiref's first step, run by the await below, binds thread_handler in
        # this thread and takes the hop from here (_ThreadHandler.__get__)
        here = _here.state
        here.pending = hop
        hop.called_ns = _now()  # last: hopwatch's set-up stays outside the interval
        try:
            return await original(self, *args, **kwargs)
        except _cancelled:
            hop.outcome = CANCELLED
            raise
        except BaseException:
            hop.outcome = ERROR
            raise
        finally:
            hop.resumed_ns = _now()
            if here.pending is hop:  # never bound: asgiref failed before that
                here.pending = None
            hop.adapter_id = 0
            try:
                finish_hop(hop)
            except Exception as exc:
                _report("SyncToAsync.__call__ (finish)", exc)

    return __call__


def _make_a2s_call(original: Callable[..., Any]) -> Callable[..., Any]:
    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        __traceback_hide__ = True
        __tracebackhide__ = True
        if not _active:
            return original(self, *args, **kwargs)
        try:
            cause = attribute(self, self.awaitable, _getframe(1))
            scope, parent = _scope_and_hop()
            here = _here.state
            if here.running is not None:
                parent = here.running
            hop = Hop(ASYNC_TO_SYNC, cause, None, parent, scope)
            hop.adapter_id = id(self)
            hop.expected_loop = _expected_loop(self)
            # asgiref 3.8: the loop's code finds its hop in the context asgiref copies
            token = _current_scope.set(hop) if _awaitable_index < 0 else None
        except Exception as exc:
            _report("AsyncToSync.__call__", exc)
            return original(self, *args, **kwargs)
        outer_a2s = here.a2s
        here.a2s = hop  # main_wrap, called by the original here, takes it
        refused = False
        hop.called_ns = _now()
        try:
            return original(self, *args, **kwargs)
        except _cancelled:
            hop.outcome = CANCELLED
            raise
        except BaseException:
            hop.outcome = ERROR
            # Called on a thread whose event loop runs: asgiref refused it before
            # anything crossed (its first check), so it is no crossing.
            refused = not hop.started_ns and _get_running_loop() is not None
            raise
        finally:
            hop.resumed_ns = _now()
            here.a2s = outer_a2s
            hop.expected_loop = None  # do not keep a loop alive through the record
            hop.adapter_id = 0
            try:
                if token is not None:
                    _reset_scope(token)
                if refused:
                    hop.scope = None
                else:
                    finish_hop(hop)
            except Exception as exc:
                _report("AsyncToSync.__call__ (finish)", exc)

    return __call__


def _run_handler(
    original: Callable[..., Any], adapter: Any, hop: Hop, *args: Any, **kwargs: Any
) -> Any:
    """thread_handler bound with its hop, in the worker thread."""
    __traceback_hide__ = True
    __tracebackhide__ = True
    if hop.started_ns:  # called a second time (never by asgiref): untimed
        return original(adapter, *args, **kwargs)
    here = _here.state
    outer = here.running
    here.running = hop
    try:
        if _thread_hook is not None:
            return _thread_hook(hop, MethodType(original, adapter), args, kwargs)
        hop.thread_id = _get_ident()
        hop.started_ns = _now()
        try:
            return original(adapter, *args, **kwargs)
        finally:
            hop.ended_ns = _now()
    finally:
        here.running = outer


class _BoundHandler(functools.partial):  # type: ignore[type-arg]
    """``partial(_run_handler, original, adapter, hop)``: thread_handler bound with
    its hop. It reads as the bound method it stands for: ``__wrapped__`` is
    ``original`` bound to the adapter, so ``inspect.signature`` gives asgiref's
    parameters (New Relic's agent binds the arguments by them)."""

    __slots__ = ()

    @property
    def __wrapped__(self) -> Any:
        return MethodType(self.args[0], self.args[1])


class _ThreadHandler:
    """``SyncToAsync.thread_handler`` (or an adopted subclass's): a plain method,
    except when bound by asgiref's ``__call__`` for a hop being made (see the
    module docstring). A subclass's ``super().thread_handler``, bound in the worker
    thread where no hop is pending, is the plain method."""

    def __init__(self, original: Callable[..., Any]) -> None:
        self.__wrapped__ = original
        self.__doc__ = original.__doc__
        self.__name__ = original.__name__
        self.__qualname__ = original.__qualname__

    def __get__(self, adapter: Any, owner: Any = None) -> Any:
        if adapter is None:
            return self
        here = _here.state
        hop = here.pending
        if hop is not None and hop.adapter_id == id(adapter) and not hop.started_ns:
            here.pending = None  # one binding per hop
            return _BoundHandler(_run_handler, self.__wrapped__, adapter, hop)
        return MethodType(self.__wrapped__, adapter)

    def __call__(self, adapter: Any, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(adapter, *args, **kwargs)


def _make_thread_handler(original: Callable[..., Any]) -> Any:
    return _ThreadHandler(original)


def _new_loop(hop: Hop) -> None:
    """An async_to_sync that made a new loop: in a thread started for it, unless an
    earlier one ran here (asgiref 3.13's AsyncSingleThreadContext keeps it). Its id
    tells no such thing: a thread that ended leaves its id to the next one started."""
    hop.new_loop = True
    here = _here.state
    hop.new_thread = not here.loop_thread
    here.loop_thread = True


async def _timed_main(hop: Hop, coroutine: Any) -> Any:
    """``main_wrap``'s coroutine, timed; runs on the target event loop (asgiref 3.8)."""
    __traceback_hide__ = True
    __tracebackhide__ = True
    hop.thread_id = _get_ident()
    if _get_running_loop() is not hop.expected_loop:
        _new_loop(hop)
    hop.started_ns = _now()
    try:
        return await coroutine
    finally:
        hop.ended_ns = _now()


async def _timed_code(hop: Hop, awaitable: Any) -> Any:
    """The awaitable ``main_wrap`` runs (asgiref 3.9 and later), timed, with the
    hop as the scope variable's value while it runs: a crossing made in it, or
    in a task it starts, finds its parent there. Reset before ``main_wrap``
    copies the context back for the caller, the variable is never in the
    contexts asgiref carries between the two sides. (The C accelerator runs the
    awaitable in a copy of the task's context instead, and sets in the task's
    what the code set in the copy: no reset, the same for the code; see
    run_context in _speedups.c.)"""
    __traceback_hide__ = True
    __tracebackhide__ = True
    try:
        token = _current_scope.set(hop)
        hop.thread_id = _get_ident()
        if _get_running_loop() is not hop.expected_loop:
            _new_loop(hop)
    except Exception as exc:
        _report("AsyncToSync.main_wrap", exc)
        return await awaitable
    hop.started_ns = _now()
    try:
        return await awaitable
    finally:
        hop.ended_ns = _now()
        try:
            _current_scope.reset(token)
        except ValueError:  # closed from another context (collected): nothing to undo
            pass


async def _awaiting(awaitable: Any) -> Any:
    """Awaits what is not a coroutine, as ``main_wrap``'s own await would (the C
    accelerator drives coroutines itself and hands it anything else)."""
    __traceback_hide__ = True
    __tracebackhide__ = True
    return await awaitable


def _make_main_wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    def main_wrap(self: Any, *args: Any, **kwargs: Any) -> Any:
        __traceback_hide__ = True
        # Called by AsyncToSync.__call__ in the caller's thread, where
        # its a2s is the hop being made.
        hop = _here.state.a2s if _active else None
        if (
            hop is None
            or hop.adapter_id != id(self)
            or hop.started_ns
            or hop.direction is not ASYNC_TO_SYNC
        ):
            return original(self, *args, **kwargs)
        at = _awaitable_index - 1  # in args, without self
        if at < 0:
            return _timed_main(hop, original(self, *args, **kwargs))
        if len(args) > at:
            args = (*args[:at], _timed_code(hop, args[at]), *args[at + 1 :])
        elif "awaitable" in kwargs:
            kwargs["awaitable"] = _timed_code(hop, kwargs["awaitable"])
        return original(self, *args, **kwargs)

    return main_wrap


_FACTORIES: Final = {
    S2A_CALL: _make_s2a_call,
    A2S_CALL: _make_a2s_call,
    THREAD_HANDLER: _make_thread_handler,
    MAIN_WRAP: _make_main_wrap,
}


def scope_value(var: ContextVar[Any]) -> Any:
    """``var``'s value (the scope context variable) or, where it has none, the
    record riding on the request's ThreadSensitiveContext when that is hopwatch's.
    Under Django's ASGIHandler the record is not put in a variable of its own:
    asgiref passes over every variable of the context on both sides of every
    crossing (hopwatch._django_scope)."""
    value = var.get(None)
    if value is None and _tsc_var is not None:
        context = _tsc_var.get(None)
        if type(context) is _request_context:
            return context.record
    return value


def enter_scope(var: ContextVar[Any], ledger: Any) -> Any:
    """Make ``ledger`` the value of ``var`` (the scope contextvar) inside the
    current one (its ``parent``, which also receives every hop of it); an
    ``async_to_sync`` whose code runs here stays the parent of the hops made in
    it (``outer_hop``). Returns the token."""
    value = scope_value(var)
    if type(value) is Hop:
        ledger.parent, ledger.outer_hop = value.scope, value
    elif value is not None:
        ledger.parent, ledger.outer_hop = value, value.outer_hop
    return var.set(ledger)


def find_scope(var: ContextVar[Any], cls: type) -> Any:
    """The innermost scope of ``var``'s value (an ``async_to_sync`` hop's is its
    scope) that is a ``cls``, following parents; None if there is none."""
    scope = scope_value(var)
    if type(scope) is Hop:
        scope = scope.scope
    while scope is not None and not isinstance(scope, cls):
        scope = scope.parent
    return scope


def start_request(var: ContextVar[Any] | None, cls: type, interface: str, scope: Any) -> Any:
    """An async handler's request begins: ``cls(interface)``, entered as ``var``'s
    scope (its token kept as ``record.scope_token``; ``var`` None: entered nowhere,
    for the caller to hand to Django's ThreadSensitiveContext), with the method and
    path of the ASGI ``scope``. An error is reported and gives None."""
    try:
        record = cls(interface)
        if var is not None:
            record.scope_token = enter_scope(var, record)
        record.method = scope.get("method")
        record.path = scope.get("path")
        return record
    except Exception as exc:
        _report(f"{interface} handler", exc)
        return None


#: A request id taken from a header: 1 to 128 of these characters, else one is made.
REQUEST_ID_OK: Final = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def begin_request(var: ContextVar[Any], cls: type, request: Any, meta_key: Any, ids: Any) -> Any:
    """The middleware's begin for a request whose record is open (the handler
    opened it): its method, path and request id (``request.META[meta_key]`` when
    that is a usable id, else 16 hex digits of ``ids.getrandbits(64)``). None
    when there is no record of ``cls`` in ``var``'s scope."""
    record = find_scope(var, cls)
    if record is None:
        return None
    record.method = request.method
    record.path = request.path
    value = request.META.get(meta_key) if meta_key is not None else None
    if isinstance(value, str) and REQUEST_ID_OK.fullmatch(value):
        record.request_id = value
    else:
        record.request_id = f"{ids.getrandbits(64):016x}"
    return record


def name_request(
    cache: dict[Any, Any], names_of: Callable[..., Any], record: Any, request: Any, response: Any
) -> None:
    """The middleware's naming of a request when its response (None if it raised)
    is back: route and view from ``request.resolver_match`` (``names_of(match,
    method)``, through its cache: ``{(pattern, id(view), method): (view, route
    name, view name)}``), the status, and the request itself for the
    extra-fields hook. An error is reported, never raised."""
    if record is None:
        return
    try:
        match = getattr(request, "resolver_match", None)
        if match is not None:
            # (The C accelerator reads names_of's cache itself first.)
            record.route, record.view = names_of(match, request.method)
        if response is not None:
            try:
                record.status = response.status_code
            except AttributeError:
                # Not a response: the app's own bug (a MiddlewareMixin's async
                # process_request under WSGI returns its coroutine), which fails the
                # request in Django's handler; the status stays unknown.
                pass
        record.request = request
    except Exception as exc:
        _report("HopwatchMiddleware (response)", exc)


async def then(
    awaitable: Any,
    fn: Callable[[Any, Any, Any], None],
    a: Any,
    b: Any,
    start: Callable[[Any, Any], Any] | None = None,
) -> Any:
    """Await ``awaitable``, then call ``fn(a, b, result)`` (result None unless it
    returned), however it ended. With ``start``: ``a = start(a, b)`` first, when
    it is first driven (in the awaiting task's context), and no ``fn`` if that
    gave None. The C accelerator's ``then`` does the same without a Python frame
    (one per level of the request's awaiting chain, passed twice per crossing).
    An error of ``fn`` or ``start`` is reported and leaves the outcome alone."""
    __traceback_hide__ = True  # Django's debug page leaves this frame out
    if start is not None:
        try:
            a = start(a, b)
        except Exception as exc:
            _report("then (start)", exc)
            a = None
        if a is None:
            return await awaitable
    result = None
    try:
        result = await awaitable
        return result
    finally:
        try:
            fn(a, b, result)
        except Exception as exc:
            _report("then (callback)", exc)
        # This frame can outlive the call: a traceback in a cycle (Django 6.1's
        # TaskGroup) keeps it until a collection, and with it its variables. Not
        # the record, the scope or the result (the value returned is already
        # taken).
        a = b = result = None


def fill_log_record(
    record: Any, constant: dict[str, Any], message: str, clock: Any, logging: Any
) -> None:
    """The fields of the line's ``logging.LogRecord`` (``hopwatch._emit``):
    ``record`` is the new record, ``constant`` what a record made
    once holds the same on every line (the logger's name, the level, the path and
    the names derived from it), ``clock`` the time ``LogRecord.__init__`` reads
    (``time.time()`` before Python 3.13, ``time.time_ns()`` from it), ``logging``
    the logging module, whose switches are read per line as ``__init__`` reads
    them. The keys, their order and the values are ``__init__``'s
    (``tests/test_log.py`` holds the two to the same ``__dict__``)."""
    fields = record.__dict__
    fields.update(constant)  # __init__'s order: the keys set below keep their place
    fields["msg"] = message
    fields["levelname"] = logging.getLevelName(logging.INFO)
    if isinstance(clock, int):  # 3.13: from time_ns(), as _startTime is
        created = fields["created"] = clock / 1e9
        msecs = (clock % 1_000_000_000) // 1_000_000 + 0.0
        if msecs == 999.0 and int(created) != clock // 1_000_000_000:
            msecs = 0.0
        fields["msecs"] = msecs
        fields["relativeCreated"] = (clock - logging._startTime) / 1e6
    else:
        fields["created"] = clock
        fields["msecs"] = int((clock - int(clock)) * 1000) + 0.0
        fields["relativeCreated"] = (clock - logging._startTime) * 1000
    if logging.logThreads:
        fields["thread"] = threading.get_ident()
        fields["threadName"] = logging.threading.current_thread().name
    else:
        fields["thread"] = fields["threadName"] = None
    if logging.logMultiprocessing:
        fields["processName"] = "MainProcess"
        mp = sys.modules.get("multiprocessing")
        if mp is not None:
            try:
                fields["processName"] = mp.current_process().name
            except Exception:  # as LogRecord.__init__ does
                pass
    else:
        fields["processName"] = None
    fields["process"] = os.getpid() if logging.logProcesses else None
    if _TASK_NAMES:
        fields["taskName"] = None
        aio = sys.modules.get("asyncio")
        if aio and logging.logAsyncioTasks:
            try:
                fields["taskName"] = aio.current_task().get_name()
            except Exception:  # no running loop, no task: as LogRecord.__init__ does
                pass


#: LogRecord has taskName from Python 3.12 on.
_TASK_NAMES: Final = sys.version_info >= (3, 12)


def deliver_line(
    logger: Any, message: str, make_record: Callable[[str], Any], logging: Any
) -> None:
    """``logger.handle(record)`` for one INFO line (``hopwatch._emit._StdlibLine``),
    the record made only if something reads it.

    ``Logger.callHandlers``' walk: the logger and its ancestors while they
    propagate, each handler whose level lets INFO through. A *plain* handler (a
    ``logging.FileHandler`` or ``StreamHandler`` itself, no filters, none of the
    methods this stands in for set on the handler itself, its lock a
    ``threading.RLock``, the ``"%(message)s"`` formatter or none) gets the line
    written to its stream under its lock and flushed, as its ``emit`` writes
    it: ``format()`` of the line's record is its message. Any other handler
    gets ``handle(record)``, with the line's one record (``make_record(message)``,
    made when first needed). The logger's own ``handle`` instead when the logger
    has filters or when one of the logging methods the walk stands in for is not
    logging's own (defined in another module: a subclass's, a patch's, as
    Sentry's of ``callHandlers``); its ``callHandlers`` when no handler was found
    (``lastResort``). The caller has checked ``isEnabledFor(INFO)`` and that the
    record factory and ``makeRecord`` are logging's. When the walk raises (a
    handler's ``emit`` that raises), what :func:`take_failure` returns says
    whether a handler before the one that raised wrote the line: a plain one
    whose write went through (a closed ``FileHandler``: whose ``emit`` was
    called); one whose ``handle`` is ``Handler.handle`` and returned true (its
    filters let the record through and ``emit`` was called); not one whose
    ``handle`` is ``NullHandler``'s. Any other ``handle`` (a class's own, one
    set on the handler itself) says nothing of it: not known, unless a handler
    before wrote it.
    """
    global _failure
    if logger.filters or not _logging_own(type(logger), logging):
        logger.handle(make_record(message))
        return
    record = None
    found = 0
    wrote: bool | None = False  # a handler wrote the line (None: not known)
    current = logger
    try:
        while current:
            for handler in current.handlers:
                found += 1
                if handler.level > _INFO:
                    continue
                if _plain_handler(handler, logging):
                    with handler.lock:  # Handler.handle, its filter() being true
                        stream = handler.stream
                        if type(handler) is logging.FileHandler and not stream:
                            # closed or delayed: FileHandler.emit opens it (or not)
                            if record is None:
                                record = make_record(message)
                            handler.emit(record)
                            wrote = True
                            continue
                        try:  # StreamHandler.emit
                            stream.write(message + handler.terminator)
                            if stream and hasattr(stream, "flush"):  # StreamHandler.flush
                                stream.flush()
                            wrote = True
                        except RecursionError:
                            raise
                        except Exception:
                            if record is None:
                                record = make_record(message)
                            handler.handleError(record)
                else:
                    if record is None:
                        record = make_record(message)
                    took = handler.handle(record)
                    if wrote is not True:
                        handle = type(handler).handle
                        if handle is logging.Handler.handle and "handle" not in handler.__dict__:
                            if took:  # its filters let the record through: emit was called
                                wrote = True
                        elif not _writes_nothing(handler, handle, logging):
                            wrote = None  # a handle of its own: not known
            current = current.parent if current.propagate else None
        if not found:  # lastResort, or the one-time "no handlers" warning
            logger.callHandlers(make_record(message) if record is None else record)
    except BaseException as exc:
        # (a try costs nothing until something raises.) For the emitter: whether a
        # handler before the one that raised wrote the line.
        _failure = (exc, wrote)
        raise


def _writes_nothing(handler: Any, handle: Any, logging: Any) -> bool:
    """``handle``, the handler's class's, is logging's ``NullHandler.handle`` (and
    none is set on the handler itself)."""
    return (
        handle is logging.NullHandler.handle
        and getattr(handle, "__globals__", None) is logging.__dict__
        and "handle" not in handler.__dict__
    )


#: (the exception, whether a handler of the walk wrote the line before it was
#: raised: True, False, None when not known) of the last walk of deliver_line
#: that raised, until take_failure.
_failure: tuple[BaseException, bool | None] | None = None


def take_failure() -> tuple[BaseException, bool | None] | None:
    """What the last failed walk of :func:`deliver_line` left (then nothing): its
    exception and whether a handler before the one that raised wrote the line
    (True, False, or None when not known: see :func:`deliver_line`). The logger's
    own ``handle``, taken on the slow path, leaves nothing."""
    global _failure
    failure, _failure = _failure, None
    return failure


_INFO: Final = 20  # logging.INFO, a line's level
_RLOCK: Final = type(threading.RLock())
# the methods last found to be logging's own (deliver_line)
_verified: tuple[Any, ...] = ()


def _methods(logger_type: Any, logging: Any) -> tuple[Any, ...]:
    """The logging methods deliver_line stands in for, as they are now."""
    file, stream = logging.FileHandler, logging.StreamHandler
    formatter, style = logging.Formatter, logging.PercentStyle
    return (
        logger_type.handle,
        logger_type.callHandlers,
        logger_type.filter,
        file.handle,
        file.filter,
        file.format,
        file.emit,
        file.flush,
        stream.handle,
        stream.filter,
        stream.format,
        stream.emit,
        stream.flush,
        formatter.format,
        formatter.formatMessage,
        formatter.usesTime,
        style.format,
        style._format,
        style.usesTime,
        logging.LogRecord.getMessage,
    )


def _logging_own(logger_type: Any, logging: Any) -> bool:
    """Whether each of those methods is defined in the logging module."""
    global _verified
    now = _methods(logger_type, logging)
    if now == _verified:
        return True
    own = logging.__dict__
    if all(getattr(method, "__globals__", None) is own for method in now):
        _verified = now
        return True
    return False


#: The handler methods deliver_line stands in for: one of them set on the handler
#: itself (``handler.format = ...``, as code wrapping a handler does) is called instead.
_HANDLER_METHODS: Final = frozenset(("handle", "filter", "format", "emit", "flush"))


def _plain_handler(handler: Any, logging: Any) -> bool:
    kind = type(handler)
    if (
        (kind is not logging.FileHandler and kind is not logging.StreamHandler)
        or handler.filters
        or not _HANDLER_METHODS.isdisjoint(handler.__dict__)
    ):
        return False
    formatter = handler.formatter or logging._defaultFormatter
    if type(formatter) is not logging.Formatter:
        return False
    style = formatter._style
    return (
        type(style) is logging.PercentStyle
        and style._fmt == "%(message)s"
        and type(handler.lock) is _RLOCK
    )


def make_patch(original: Callable[..., Any], which: int) -> Any:
    """The function hopwatch installs in place of ``original`` (one of the four)."""
    patched = _FACTORIES[which](original)
    if isinstance(patched, _ThreadHandler):
        return patched
    patched.__wrapped__ = original
    # what an agent put there before hopwatch (a wrapper object) may have no names
    patched.__doc__ = getattr(original, "__doc__", None)
    patched.__name__ = getattr(original, "__name__", patched.__name__)
    patched.__qualname__ = getattr(original, "__qualname__", patched.__qualname__)
    return patched


_END = object()


def steps_in_scope(
    var: ContextVar[Any],
    iterator: Iterator[Any],
    value: Any,
    first_failed: Callable[[Any], Any] | None = None,
) -> Iterator[Any]:
    """``iterator``'s steps, each taken with ``var`` set to ``value`` (a streaming
    body read in its request's scope: hopwatch._django_scope._read_in_scope). A
    generator: once the iterator has ended or raised, every later step ends at once.
    With ``first_failed``, ``first_failed(value)`` is called when the first step
    raises an Exception, before it propagates (an error of its is reported); that
    step is taken apart from the loop, which stays as it is without it."""
    if first_failed is not None:
        token = var.set(value)
        try:
            item = next(iterator, _END)
        except Exception:
            try:
                first_failed(value)
            except Exception as exc:
                _report("steps_in_scope (first_failed)", exc)
            raise
        finally:
            var.reset(token)
        if item is _END:
            return
        yield item
    while True:
        token = var.set(value)
        try:
            item = next(iterator, _END)
        finally:
            var.reset(token)
        if item is _END:
            return
        yield item


def around(
    before: Callable[..., Any], original: Callable[..., Any], after: Callable[[Any, Any], Any]
) -> Callable[..., Any]:
    """``original`` (a method) with ``state = before(*args)`` first; when the state
    is not None, ``after(args[0], state)`` once it returned or raised (``after``
    must not raise). Unlike the C one, this adds a frame between the original and
    its caller: a warning the original gives with ``stacklevel=2`` names this
    function's line (see docs/faq.md)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        state = before(*args) if args else None
        if state is None:
            return original(*args, **kwargs)
        try:
            return original(*args, **kwargs)
        finally:
            after(args[0], state)

    call.__wrapped__ = original  # type: ignore[attr-defined]
    call.__doc__ = original.__doc__
    call.__name__ = getattr(original, "__name__", "call")
    call.__qualname__ = getattr(original, "__qualname__", "call")
    return call
