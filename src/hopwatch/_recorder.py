"""Hop and request records, and the contextvar scope that ties hops to requests.

Nothing here knows about Django or does I/O. The asgiref patch (``_patch``)
creates a :class:`Hop` per crossing and hands it to :func:`finish_hop`; the
Django layer opens a :class:`RequestRecord` per request with
:func:`open_request` and closes it with :func:`close_request`, which passes the
record to the registered sinks (the structlog emitter, tests, ...).

Concurrency model: a hop is finished on whichever thread resumed its caller, so
one request's hops can be finished from several threads. The hop path
(``_hotpath``) only appends to the ledger's pending list (atomic under the
GIL); the folding of pending hops into aggregates is done by one thread at a
time under a lock that the hop path only ever *tries* (non-blocking), so no hop
ever waits for a lock.

Times, and what each total means (docs/log-schema.md says the same to users):
``wall_ns`` sums every hop's whole crossing, nested ones included (a
nested crossing lies inside its parent's); ``overhead_ns`` sums every hop's
own crossing cost (wait plus hand-off: never double counted, because a nested
hop's overhead lies inside its parent's *run*); ``work_ns`` is the code that
ran inside the outermost crossings, less the overhead of the crossings nested
in them, so ``overhead_ns + work_ns`` is the outermost crossings' wall time.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

from hopwatch import _hotpath
from hopwatch._hotpath import Hop, LedgerCore

__all__ = [
    "ASYNC_TO_SYNC",
    "SYNC_TO_ASYNC",
    "Cause",
    "CauseStats",
    "Hop",
    "Ledger",
    "RequestRecord",
]

# The same (interned) strings the hop path uses.
SYNC_TO_ASYNC: Final = "sync_to_async"
ASYNC_TO_SYNC: Final = "async_to_sync"

OK: Final = "ok"
ERROR: Final = "error"
CANCELLED: Final = "cancelled"

#: Kinds of cause, in the order the docs list them.
KINDS: Final = ("middleware", "view", "orm", "signal", "response", "stream", "exception", "other")


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


class CauseStats:
    """Aggregate of one cause's hops within a ledger (every hop, nested ones too)."""

    __slots__ = (
        "count",
        "direction",
        "max_ns",
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
        self.max_ns = 0


class Ledger(LedgerCore):
    """An exact, memory-bounded account of hops.

    Counts and sums are exact however many hops arrive; individual :class:`Hop`
    objects are kept only up to ``detail_limit`` (the rest are counted in
    ``detail_dropped``), and distinct causes up to ``cause_limit`` (the rest are
    merged into one overflow cause).
    """

    #: The active profile (hopwatch.profiling.ActiveProfile) of a profiled request.
    profile: Any = None

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
        self._fold_lock = threading.Lock()
        # Aggregates, written only under _fold_lock.
        self.count = 0
        self.sync_to_async = 0
        self.async_to_sync = 0
        self.wall_ns = 0
        self.wait_ns = 0
        self.run_ns = 0
        self.overhead_ns = 0
        self.work_ns = 0
        self.new_loops = 0
        self.max_depth = 0
        self.thread_ids: set[int] = set()
        self.causes: dict[tuple[Cause, str], CauseStats] = {}
        self.details: list[Hop] = []
        self.detail_dropped = 0
        #: Time a sync worker thread was held while async work ran: the wall
        #: time of async_to_sync hops made from inside a sync_to_async hop,
        #: by the cause of that sync_to_async hop (what pinned the thread).
        self.pinned_ns = 0
        self.pinned_by: dict[Cause, int] = {}

    # --- folding --------------------------------------------------------
    def _fold_pending(self) -> None:
        pending = self._take_pending()
        if not pending:
            return
        causes = self.causes
        details = self.details
        detail_room = self.detail_limit - len(details)
        sync_to_async = wall_sum = wait_sum = run_sum = overhead_sum = work_sum = 0
        new_loops = 0
        max_depth = self.max_depth
        thread_ids = self.thread_ids
        for hop in pending:
            # The Hop properties, inlined: this runs once per hop.
            called, started, resumed = hop.called_ns, hop.started_ns, hop.resumed_ns
            wall = resumed - called if resumed > called else 0
            if started:
                wait = started - called if started > called else 0
                ended = hop.ended_ns
                run = ended - started if ended > started else 0
                resume = resumed - ended if resumed > ended else 0
            else:
                wait, run, resume = wall, 0, 0
            overhead = wall - run if wall > run else 0
            wall_sum += wall
            wait_sum += wait
            run_sum += run
            overhead_sum += overhead
            parent = hop.parent
            if parent is None or parent.scope is not hop.scope:
                work_sum += run  # an outermost crossing in this ledger
            else:
                work_sum -= overhead  # inside its parent's run: not work
            if hop.direction is SYNC_TO_ASYNC:
                sync_to_async += 1
            elif parent is not None and parent.direction is SYNC_TO_ASYNC:
                self.pinned_ns += wall
                self.pinned_by[parent.cause] = self.pinned_by.get(parent.cause, 0) + wall
            if hop.new_loop:
                new_loops += 1
            if hop.depth > max_depth:
                max_depth = hop.depth
            if hop.thread_id:
                thread_ids.add(hop.thread_id)
            key = (hop.cause, hop.direction)
            stats = causes.get(key)
            if stats is None:
                if len(causes) >= self.cause_limit:
                    key = (OVERFLOW_CAUSE, hop.direction)
                    stats = causes.get(key)
                if stats is None:
                    stats = causes[key] = CauseStats(hop.direction)
            stats.count += 1
            stats.wall_ns += wall
            stats.wait_ns += wait
            stats.run_ns += run
            stats.resume_ns += resume
            stats.overhead_ns += overhead
            if wall > stats.max_ns:
                stats.max_ns = wall
        folded = len(pending)
        if detail_room > 0:
            details.extend(pending[:detail_room])
        self.detail_dropped += max(0, folded - max(detail_room, 0))
        self.count += folded
        self.sync_to_async += sync_to_async
        self.async_to_sync += folded - sync_to_async
        self.wall_ns += wall_sum
        self.wait_ns += wait_sum
        self.run_ns += run_sum
        self.overhead_ns += overhead_sum
        self.work_ns += work_sum
        self.new_loops += new_loops
        self.max_depth = max_depth

    def try_fold(self) -> None:
        """Fold now unless another thread is folding (the hop path's call)."""
        if self._fold_lock.acquire(blocking=False):
            try:
                self._fold_pending()
            finally:
                self._fold_lock.release()

    def fold(self) -> None:
        """Bring the aggregates up to date (blocking; not for the hot path)."""
        with self._fold_lock:
            self._fold_pending()

    # --- reading --------------------------------------------------------
    def top_causes(self, limit: int | None = None) -> list[tuple[Cause, CauseStats]]:
        """Causes by summed wall time, largest first (ties: more hops first)."""
        with self._fold_lock:  # fold and copy together: another thread may fold next
            self._fold_pending()
            items = list(self.causes.items())
        ranked = sorted(
            ((cause, stats) for (cause, _direction), stats in items),
            key=lambda item: (-item[1].wall_ns, -item[1].count, item[0].site),
        )
        return ranked if limit is None else ranked[:limit]

    def top_pinning_cause(self) -> Cause | None:
        """The cause that pinned a worker thread the longest, if any did."""
        with self._fold_lock:
            self._fold_pending()
            pinned = list(self.pinned_by.items())
        if not pinned:
            return None
        return max(pinned, key=lambda item: (item[1], item[0].site))[0]

    def hops(self) -> list[Hop]:
        """The kept hops, in the order they finished (see ``detail_limit``)."""
        with self._fold_lock:
            self._fold_pending()
            return list(self.details)

    def __iter__(self) -> Iterator[Hop]:
        return iter(self.hops())

    def __len__(self) -> int:
        self.fold()
        return self.count


class RequestRecord(Ledger):
    """A :class:`Ledger` for one request, plus what is known about the request."""

    def __init__(self, interface: str, parent: Ledger | None = None) -> None:
        super().__init__(parent)
        self.interface = interface
        self.started_at = time.time()
        self.started_ns = time.perf_counter_ns()
        self.ended_ns = 0
        self.handler_thread_id = threading.get_ident()
        self.method: str | None = None
        self.path: str | None = None
        self.route: str | None = None
        self.view: str | None = None
        self.status: int | None = None
        self.request_id: str | None = None
        #: The framework's request object, for the extra-fields hook.
        self.request: object | None = None
        #: Annotations from the integration layer (profile file, ...).
        self.extra: dict[str, object] = {}
        # Django-layer bookkeeping for responses closed after the handler
        # returned (WSGI): the token to reset and the response to wait for.
        self.scope_token: contextvars.Token[Ledger | None] | None = None

    @property
    def duration_ns(self) -> int:
        end = self.ended_ns or time.perf_counter_ns()
        return max(0, end - self.started_ns)

    @property
    def thread_count(self) -> int:
        self.fold()
        return len(self.thread_ids | {self.handler_thread_id})

    def __repr__(self) -> str:
        return (
            f"<RequestRecord {self.method} {self.route or self.path} {self.interface}"
            f" hops={len(self)}>"
        )


# --- scope -----------------------------------------------------------------

#: The ledger hops are currently added to (a request, or a testing block).
current_scope: contextvars.ContextVar[Ledger | None] = contextvars.ContextVar(
    "hopwatch_scope", default=None
)

#: The hop whose code is running right now (for nesting depth and parents).
current_hop: contextvars.ContextVar[Hop | None] = contextvars.ContextVar(
    "hopwatch_hop", default=None
)

#: Hops made outside any scope: startup, management commands, background
#: work. Kept apart, never attributed to a request.
unscoped = Ledger(detail_limit=200)

#: Hops finished after their request had been closed (a task the view started
#: and did not wait for). Kept apart too.
late = Ledger(detail_limit=200)


#: Account a finished hop to its scope (the hop path calls this itself).
finish_hop: Callable[[Hop], None] = _hotpath.finish_hop


Sink = Callable[[RequestRecord], None]
_sinks: list[Sink] = []


def add_sink(sink: Sink) -> None:
    """Call ``sink(record)`` for every closed request (idempotent)."""
    if sink not in _sinks:
        _sinks.append(sink)


def remove_sink(sink: Sink) -> None:
    if sink in _sinks:
        _sinks.remove(sink)


def open_request(interface: str) -> tuple[RequestRecord, contextvars.Token[Ledger | None]]:
    """Start a request scope in the current context."""
    parent = current_scope.get()
    record = RequestRecord(interface, parent)
    token = current_scope.set(record)
    record.scope_token = token
    return record, token


def close_request(record: RequestRecord) -> None:
    """Finish a request: fold its hops and hand it to the sinks (once)."""
    if record.closed:
        return
    record.ended_ns = time.perf_counter_ns()
    # Closed first: a straggler hop finishing from now on goes to ``late``.
    record.closed = True
    record.fold()
    for sink in list(_sinks):
        try:
            sink(record)
        except Exception as exc:  # a sink must never break the request
            from hopwatch import _errors

            _errors.report(f"sink {sink!r}", exc)
