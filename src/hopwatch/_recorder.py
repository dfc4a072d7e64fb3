"""Hop and request records, and the contextvar scope that ties hops to requests.

Nothing here knows about Django or does I/O. The asgiref patch (``_patch``)
creates a :class:`Hop` per crossing and hands it to :func:`finish_hop`; the
Django layer opens a :class:`RequestRecord` per request with
:func:`open_request` and closes it with :func:`close_request`, which passes the
record to the registered sinks (the structlog emitter, tests, ...).

Concurrency model: a hop is finished on whichever thread resumed its caller, so
one request's hops can be finished from several threads. The hop path
(``_hotpath``) accounts each finished hop at once into its ledger and every
enclosing one: in C under the GIL without calling Python code (atomic), or on
the pure-Python path under a per-ledger lock. No fold, no pending queue; what
each total means is in ``LedgerCore``'s docstring.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Final, TypeVar

from asgiref.sync import ThreadSensitiveContext

from hopwatch import _hotpath
from hopwatch._hotpath import CauseStats, Hop, LedgerCore

# The directions and kinds are the line's (one place: hopwatch.schema); the hop
# path compares directions by identity, so it uses these very (interned) strings.
from hopwatch.schema import ASYNC_TO_SYNC, KINDS, SYNC_TO_ASYNC

__all__ = [
    "ASYNC_TO_SYNC",
    "KINDS",
    "SYNC_TO_ASYNC",
    "Cause",
    "CauseStats",
    "Hop",
    "Ledger",
    "RequestRecord",
]

OK: Final = "ok"
ERROR: Final = "error"
CANCELLED: Final = "cancelled"


class Cause:
    """Why a crossing happened: a kind, a site and (for ORM/other) the user's call site.

    Causes are interned (:func:`intern_cause`), so equal causes are the same
    object and can be compared and hashed by identity on the hot path.
    """

    __slots__ = ("call_site", "kind", "site")

    kind: str
    site: str
    call_site: str | None

    def __init__(self, kind: str, site: str, call_site: str | None = None) -> None:
        self.kind = kind
        self.site = site
        self.call_site = call_site

    def __repr__(self) -> str:
        where = f" at {self.call_site}" if self.call_site else ""
        return f"<Cause {self.kind}: {self.site}{where}>"

    def describe(self) -> str:
        """One line for humans: ``orm QuerySet.aget (shop/views.py:12 in detail)``."""
        where = f" ({self.call_site})" if self.call_site else ""
        return f"{self.kind} {self.site}{where}"


_interned: dict[tuple[str, str, str | None], Cause] = {}
_MAX_INTERNED: Final = 50_000


def intern_cause(kind: str, site: str, call_site: str | None = None) -> Cause:
    """Return the one :class:`Cause` for these values (creating it once)."""
    key = (kind, site, call_site)
    cause = _interned.get(key)
    if cause is None:
        if len(_interned) >= _MAX_INTERNED:
            # A pathological program (call sites generated at run time) must not
            # grow this table forever; equal causes then stop being identical,
            # which only costs aggregation some merging by value.
            return Cause(kind, site, call_site)
        cause = _interned.setdefault(key, Cause(kind, site, call_site))
    return cause


OVERFLOW_CAUSE: Final = intern_cause("other", "(more causes than the per-request limit)")


class Ledger(LedgerCore):
    """An exact, memory-bounded account of hops.

    Counts and sums are exact however many hops arrive; individual :class:`Hop`
    objects are kept only up to ``detail_limit`` (the rest are counted in
    ``detail_dropped``), and distinct causes up to ``cause_limit`` (the rest are
    merged into one overflow cause). The accounting itself is the hop path's
    (``LedgerCore``: what each total means is in its docstring); this class
    reads it.
    """

    # Slots, not an instance dict: a ledger per request, read field by field
    # (no dict to allocate, and each read is a slot's). The fields are
    # LedgerCore's; __weakref__ for the debug toolbar's panel, which keeps
    # records weakly (the pure-Python LedgerCore has it already).
    __slots__ = () if hasattr(LedgerCore, "__weakref__") else ("__weakref__",)

    def __init__(
        self,
        parent: Ledger | None = None,
        *,
        detail_limit: int = 1000,
        cause_limit: int = 256,
    ) -> None:
        #: An enclosing ledger (``hopwatch.testing.count_hops`` around a
        #: request) also receives every hop of this one.
        self.parent = parent
        self.detail_limit = detail_limit
        self.cause_limit = cause_limit
        self.closed = False

    # --- reading --------------------------------------------------------
    def top_causes(self, limit: int | None = None) -> list[tuple[Cause, CauseStats]]:
        """Causes by summed wall time, largest first (ties: more hops, then by site)."""
        causes: list[tuple[Cause, CauseStats]] = self.ranked_causes()
        return causes if limit is None else causes[:limit]

    def top_pinning_cause(self) -> Cause | None:
        """The cause that pinned a worker thread the longest, if any did."""
        pinned_by = self.pinned_by
        if not pinned_by:
            return None
        pinned = list(pinned_by.items())
        cause: Cause = max(pinned, key=lambda item: (item[1], item[0].site))[0]
        return cause

    def hops(self) -> list[Hop]:
        """The kept hops, in the order they finished (see ``detail_limit``)."""
        return list(self.details)

    def __iter__(self) -> Iterator[Hop]:
        return iter(self.hops())

    def __len__(self) -> int:
        return int(self.count)


_time: Final = time.time
_perf_counter_ns: Final = time.perf_counter_ns
_get_ident: Final = threading.get_ident


class RequestRecord(Ledger):
    """A :class:`Ledger` for one request, plus what is known about the request."""

    __slots__ = (
        "context",
        "ended_ns",
        "extra",
        "handler_thread_id",
        "interface",
        "line",
        "method",
        "path",
        "request",
        "request_id",
        "route",
        "scope_token",
        "started_at",
        "started_ns",
        "status",
        "view",
    )

    def __init__(self, interface: str, parent: Ledger | None = None) -> None:
        # Ledger.__init__ with its defaults, which are LedgerCore's own: only the parent
        self.parent = parent
        self.interface = interface
        self.started_at = _time()
        self.started_ns = _perf_counter_ns()
        self.ended_ns = 0
        self.handler_thread_id = _get_ident()
        self.method: str | None = None
        self.path: str | None = None
        self.route: str | None = None
        self.view: str | None = None
        self.status: int | None = None
        self.request_id: str | None = None
        #: The framework's request object, for the extra-fields hook; None once the
        #: record is closed and its sinks have run (the record must not keep it alive).
        self.request: object | None = None
        #: Annotations from the integration layer (profile file, ...): None until
        #: the first, made by :meth:`notes` (most requests have none; a dict less
        #: per request is one object less towards the next collection).
        self.extra: dict[str, object] | None = None
        # Django-layer bookkeeping for responses closed after the handler
        # returned (WSGI): the token to reset and the response to wait for.
        self.scope_token: contextvars.Token[Ledger | Hop | None] | None = None
        #: The RequestContext (Django's ThreadSensitiveContext) the record rides
        #: on, until the record is closed (see close_request).
        self.context: RequestContext | None = None
        # ``line``: what became of the request's log line, set by the line's sink
        # (hopwatch._emit.Emitter) when the request closes: one of hopwatch._emit's
        # LINE_OUTCOMES. Not set here (a store less per request): unset until that
        # sink has run, read with getattr(record, "line", None).

    def notes(self) -> dict[str, object]:
        """``extra``, made on first need: what the integration layer writes to."""
        extra = self.extra
        if extra is None:
            extra = self.extra = {}
        return extra

    @property
    def duration_ns(self) -> int:
        end = self.ended_ns or time.perf_counter_ns()
        start = self.started_ns
        return end - start if end > start else 0

    @property
    def thread_count(self) -> int:
        thread_ids = self.thread_ids
        return (
            len(thread_ids) + (self.handler_thread_id not in thread_ids) + int(self.thread_reuses)
        )

    def __repr__(self) -> str:
        return (
            f"<RequestRecord {self.method} {self.route or self.path} {self.interface}"
            f" hops={len(self)}>"
        )


# --- scope -----------------------------------------------------------------


def first_level_slot(var: contextvars.ContextVar[object]) -> int:
    """Where ``var`` sits in the first level of a context's tree (CPython's HAMT
    folds the variable's 64-bit hash to 32 bits and takes its low 5 bits)."""
    h = hash(var)
    folded = (h & 0xFFFFFFFF) ^ ((h >> 32) & 0xFFFFFFFF)
    return (0xFFFFFFFE if folded == 0xFFFFFFFF else folded) & 31


def asgiref_variables() -> list[contextvars.ContextVar[object]]:
    """asgiref.sync's own context variables (thread_sensitive_context,
    deadlock_context and, on 3.10 and later, async_single_thread_context)."""
    import asgiref.sync

    spaces: list[Mapping[str, object]] = [vars(asgiref.sync)]
    spaces += [vars(c) for c in vars(asgiref.sync).values() if isinstance(c, type)]
    found = {
        id(v): v for space in spaces for v in space.values() if type(v) is contextvars.ContextVar
    }
    return list(found.values())


def placed_context_variable(
    name: str, apart_from: list[contextvars.ContextVar[object]]
) -> contextvars.ContextVar[Ledger | Hop | None]:
    """A context variable (default None) whose first-level slot none of
    ``apart_from`` takes, when one of 64 tries gives one (else the last).

    A context keeps its variables in a HAMT keyed by their hashes, and a
    variable's hash is its name's hash XORed with its address: in one process
    in about 32, hopwatch's variable shares a first-level slot with asgiref's
    ``thread_sensitive_context``, which every Django request's context holds,
    and every set, reset and lookup of it goes a level deeper (measured on an
    ``async_to_sync`` onto the loop: 5,596 instructions of hopwatch's own a hop
    against 3,921; docs/performance-history.md, 2026-12-03). The variables
    tried and not kept live until the choice is made, so that none of their
    addresses comes back to the next try.
    """
    taken = {first_level_slot(v) for v in apart_from}
    tried = []
    for _ in range(64):
        var: contextvars.ContextVar[Ledger | Hop | None] = contextvars.ContextVar(
            name, default=None
        )
        if first_level_slot(var) not in taken:
            return var
        tried.append(var)
    return var


#: The ledger hops are currently added to (a request, or a testing block) or,
#: while an ``async_to_sync``'s code runs, that hop (its ``scope`` is then the
#: ledger; it is the parent of the hops made there). Empty for a request served
#: by Django's ASGIHandler, whose record rides on its ThreadSensitiveContext
#: (:class:`RequestContext`); read it through :func:`current_ledger` or
#: ``_hotpath.scope_value``, which look there too. One context variable, not
#: a second for the running hop: asgiref passes over every variable of the
#: context on both sides of every crossing (on asgiref 3.8.1 a second variable
#: cost a cold ``async_to_sync`` 3,800 instructions more: docs/performance.md). Read it
#: through :func:`current_ledger`; enter a ledger with :func:`enter_scope`.
current_scope: contextvars.ContextVar[Ledger | Hop | None] = placed_context_variable(
    "hopwatch_scope", asgiref_variables()
)


_enter_scope: Final = _hotpath.enter_scope
_scope_value: Final = _hotpath.scope_value
_find_scope: Final = _hotpath.find_scope
L = TypeVar("L", bound="Ledger")


class RequestContext(ThreadSensitiveContext):
    """The ThreadSensitiveContext Django's ASGIHandler enters for each request,
    carrying the request's record.

    ``ASGIHandler.__call__`` serves every request inside ``async with
    ThreadSensitiveContext()``, which sets asgiref's own
    ``SyncToAsync.thread_sensitive_context`` variable (the request's executor for
    thread-sensitive calls). With hopwatch installed, the name Django's handler
    module looks up is this subclass (``hopwatch._django.install``): Django
    enters and leaves it itself, and asgiref serves the request exactly as it
    would have. It takes the record the handler's wrapper opened a moment before
    (:func:`hand_over`; the wrapper starts Django's coroutine in the same step).
    Tasks the view starts and asgiref's threads inherit the variable, so the
    crossings find their request (``_hotpath.scope_value``) without a variable of
    hopwatch's in the request's context: asgiref 3.13 passes over every
    variable of the context in Python on both sides of every crossing, about
    1,100 instructions a variable a side.
    """

    # A slot: the hop path reads it once per crossing (a descriptor, no dict lookup).
    __slots__ = ("record",)

    def __init__(self, *args: object, **kwargs: object) -> None:
        # (untyped before asgiref 3.13; typed there, as taking an executor)
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call, arg-type, unused-ignore]
        record = _take_handed_over()
        #: The request's record; once it is closed, ``after_close`` (close_request).
        self.record: Ledger | None = record
        if record is not None:
            record.context = self


# The record the ASGI handler's wrapper hands to the RequestContext Django creates
# next, in the same step, on this thread.
_handed = threading.local()


def hand_over(record: RequestRecord | None) -> None:
    """Give ``record`` to the next RequestContext made on this thread (None: take it back)."""
    _handed.record = record


def _take_handed_over() -> RequestRecord | None:
    record = getattr(_handed, "record", None)
    if record is not None:
        _handed.record = None
    return record


def handed_over() -> RequestRecord | None:
    """The record handed over on this thread and not taken yet, if any."""
    return getattr(_handed, "record", None)


def current_ledger() -> Ledger | None:
    """The ledger hops made here are added to, if any."""
    value = _scope_value(current_scope)
    return value.scope if type(value) is Hop else value  # type: ignore[no-any-return]


def enter_scope(ledger: Ledger) -> contextvars.Token[Ledger | Hop | None]:
    """Make ``ledger`` the current scope, inside the current one (its ``parent``,
    which also receives every hop of it). An ``async_to_sync`` whose code runs
    here stays the parent of the hops made in it (``outer_hop``)."""
    return _enter_scope(current_scope, ledger)  # type: ignore[no-any-return]


def find_scope(cls: type[L]) -> L | None:
    """The innermost current scope that is a ``cls`` (a request's record), if any."""
    return _find_scope(current_scope, cls)  # type: ignore[no-any-return]


def value_outside(ledger: Ledger) -> Ledger | Hop | None:
    """What ``current_scope`` was where ``ledger`` was entered (for leaving it from
    another context, where its token cannot be used): the hop that was running
    there if that hop's scope is the ledger's parent, else the parent."""
    hop = ledger.outer_hop
    if hop is not None and hop.scope is ledger.parent:
        return hop
    return ledger.parent


#: Hops made outside any scope: startup, management commands, background
#: work. Kept apart, never attributed to a request.
unscoped = Ledger(detail_limit=200)

#: Hops finished after their request had been closed (a task the view started
#: and did not wait for). Kept apart too.
late = Ledger(detail_limit=200)


#: Request ids, 16 hex digits: a generator of hopwatch's own (seeded from the OS),
#: so the app's ``random`` sequence is left alone and no id costs a system call
#: (``secrets.token_hex`` reads the OS's random source every time). An id names a
#: request in the logs; it is no secret and guards nothing. The middleware gives
#: each request one (``_hotpath.begin_request``); :func:`new_request_id` one that
#: never reached it.
request_ids = random.Random()
# a forked worker (gunicorn, uwsgi) would otherwise repeat its parent's ids
os.register_at_fork(after_in_child=request_ids.seed)


def new_request_id() -> str:
    """A request id, as ``_hotpath.begin_request`` makes one."""
    return f"{request_ids.getrandbits(64):016x}"


#: Hops hopwatch's own work makes while a request is under way (the profiling
#: staff check: ``request.auser()``, which can query). Kept apart: they are not
#: the request's, nor any enclosing block's (``hopwatch.testing.count_hops``).
own_work = Ledger(detail_limit=0)


@contextlib.contextmanager
def outside_requests() -> Iterator[None]:
    """Hops made inside go to :data:`own_work`, not to the request around them."""
    token = current_scope.set(own_work)
    try:
        yield
    finally:
        current_scope.reset(token)


#: What a RequestContext carries once its request is closed, in place of the
#: record: a closed ledger, so a crossing made later in the request's context (a
#: task the view started and did not wait for) goes to ``late``, as it would
#: with the closed record there. Closed, it takes no hop of its own.
after_close = Ledger(detail_limit=0)
after_close.close()


#: Account a finished hop to its scope (the hop path calls this itself).
finish_hop: Callable[[Hop], None] = _hotpath.finish_hop


Sink = Callable[[RequestRecord], None]
#: Replaced, never changed in place: a request closing while a sink is added or
#: removed iterates the tuple it read.
_sinks: tuple[Sink, ...] = ()


def add_sink(sink: Sink, *, last: bool = False) -> None:
    """Call ``sink(record)`` for every closed request (idempotent). ``last``: after
    every sink added so far, moved there if it was added before (a sink that reads
    what another wrote on the record: the log line's outcome)."""
    global _sinks
    if last:
        if not _sinks or _sinks[-1] != sink:
            _sinks = (*(s for s in _sinks if s != sink), sink)
    elif sink not in _sinks:
        _sinks = (*_sinks, sink)


def remove_sink(sink: Sink) -> None:
    global _sinks
    if sink in _sinks:
        _sinks = tuple(s for s in _sinks if s != sink)


def open_request(
    interface: str,
) -> tuple[RequestRecord, contextvars.Token[Ledger | Hop | None]]:
    """Start a request scope in the current context."""
    record = RequestRecord(interface)
    record.scope_token = token = _enter_scope(current_scope, record)
    return record, token


def close_request(record: RequestRecord) -> None:
    """Finish a request and hand it to the sinks (once)."""
    if record.closed:
        return
    record.ended_ns = _perf_counter_ns()
    # Closed first: a straggler hop finishing from now on goes to ``late``.
    record.close()
    for sink in _sinks:
        try:
            sink(record)
        except Exception as exc:  # a sink must never break the request
            from hopwatch import _errors

            _errors.report(f"sink {sink!r}", exc)
    # The sinks are done with the request (the extra-fields hook's argument). The
    # record may live on a while (a crossing still under way holds it): it must
    # not hold the request (its body, session, user) there too.
    record.request = None
    # The request's context can outlive it: a task the view left running holds
    # it, and under a server (uvicorn) the task Django starts to listen for a
    # disconnect ends in a reference cycle that holds it, bare Django's too,
    # until the collector finds it. There, nearly every request's context reached
    # the oldest generation first, and a record riding on it went there too,
    # with its list of hops: two objects a request more towards the next full
    # collection. The record leaves its context here, and is freed when its last
    # holder lets go. (On this path the record has no enclosing scope:
    # _django_scope hands over only a record opened outside any.)
    context = record.context
    if context is not None:
        record.context = None
        if record.parent is None:
            context.record = after_close
