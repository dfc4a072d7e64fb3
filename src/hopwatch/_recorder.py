"""Hop and request records, and the contextvar scope that ties hops to requests.

Nothing here knows about Django or does I/O. The asgiref patch (``_patch``)
creates a :class:`Hop` per crossing and hands it to :func:`finish_hop`; the
Django layer opens a :class:`RequestRecord` per request with
:func:`open_request` and closes it with :func:`close_request`, which passes the
record to the registered sinks (the structlog emitter, tests, ...).

Concurrency model: a hop is finished on whichever thread resumed its caller, so
one request's hops can be finished from several threads. The hot path only
appends to a ``collections.deque`` (atomic in CPython); the folding of pending
hops into aggregates is done by one thread at a time under a lock that the hot
path only ever *tries* (non-blocking), so no hop ever waits for a lock.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Final

__all__ = [
    "ASYNC_TO_SYNC",
    "SYNC_TO_ASYNC",
    "Cause",
    "CauseStats",
    "Hop",
    "Ledger",
    "RequestRecord",
]

SYNC_TO_ASYNC: Final = "sync_to_async"
ASYNC_TO_SYNC: Final = "async_to_sync"

OK: Final = "ok"
ERROR: Final = "error"
CANCELLED: Final = "cancelled"

#: Kinds of cause, in the order the docs list them.
KINDS: Final = ("middleware", "view", "orm", "signal", "response", "stream", "exception", "other")

# How many hops may wait in a ledger before the hot path folds them into the
# aggregates; bounds memory for requests that make very many hops.
_FOLD_AT: Final = 256


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


class Hop:
    """One sync/async crossing.

    Timestamps are ``time.perf_counter_ns()`` values: ``called_ns`` when the
    caller made the call, ``started_ns``/``ended_ns`` when the code ran on the
    other side, ``resumed_ns`` when the caller got control back. ``started_ns``
    stays 0 when the code never ran (cancelled or refused before it started).
    """

    __slots__ = (
        "called_ns",
        "cause",
        "depth",
        "direction",
        "ended_ns",
        "expected_loop",
        "new_loop",
        "outcome",
        "parent",
        "resumed_ns",
        "scope",
        "started_ns",
        "thread_id",
        "thread_sensitive",
    )

    direction: str
    cause: Cause
    thread_sensitive: bool | None
    depth: int
    parent: Hop | None
    scope: Ledger | None
    new_loop: bool
    thread_id: int
    called_ns: int
    started_ns: int
    ended_ns: int
    resumed_ns: int
    outcome: str
    expected_loop: object

    def __init__(
        self,
        direction: str,
        cause: Cause,
        thread_sensitive: bool | None,
        parent: Hop | None,
        scope: Ledger | None,
        called_ns: int,
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
        self.thread_id = 0
        self.new_loop = False
        self.outcome = OK
        self.expected_loop = None

    # Durations; all clamp at zero because the sides are timed on different
    # threads and a clock read can land just before the other side's.
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
        return max(0, self.ended_ns - self.started_ns)

    @property
    def resume_ns(self) -> int:
        """From the code finishing until the caller resumed."""
        if not self.started_ns:
            return 0
        return max(0, self.resumed_ns - self.ended_ns)

    @property
    def wall_ns(self) -> int:
        """The whole crossing as the caller saw it."""
        return max(0, self.resumed_ns - self.called_ns)

    def __repr__(self) -> str:
        return (
            f"<Hop {self.direction} {self.cause.describe()} depth={self.depth}"
            f" wall={self.wall_ns / 1e6:.3f}ms {self.outcome}>"
        )


class CauseStats:
    """Aggregate of one cause's hops within a ledger."""

    __slots__ = ("count", "direction", "max_ns", "run_ns", "wait_ns", "wall_ns")

    def __init__(self, direction: str) -> None:
        self.direction = direction
        self.count = 0
        self.wall_ns = 0
        self.wait_ns = 0
        self.run_ns = 0
        self.max_ns = 0


#: Requests being profiled right now (hopwatch.profiling). The asgiref patch
#: reads this one global per hop and looks further only when it is non-zero.
profiles_active = 0


class Ledger:
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
        self._pending: deque[Hop] = deque()
        self._fold_lock = threading.Lock()
        # Aggregates, written only under _fold_lock.
        self.count = 0
        self.sync_to_async = 0
        self.async_to_sync = 0
        self.wall_ns = 0
        self.wait_ns = 0
        self.run_ns = 0
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

    # --- hot path -------------------------------------------------------
    def add(self, hop: Hop) -> None:
        ledger: Ledger | None = self
        while ledger is not None:  # this ledger, then any enclosing one
            pending = ledger._pending
            pending.append(hop)
            if len(pending) >= _FOLD_AT and ledger._fold_lock.acquire(blocking=False):
                try:
                    ledger._fold_pending()
                finally:
                    ledger._fold_lock.release()
            ledger = ledger.parent

    # --- folding --------------------------------------------------------
    def _fold_pending(self) -> None:
        pending = self._pending
        causes = self.causes
        details = self.details
        sync_to_async = wall_sum = wait_sum = run_sum = new_loops = folded = 0
        max_depth = self.max_depth
        thread_ids = self.thread_ids
        while True:
            try:
                hop = pending.popleft()
            except IndexError:
                break
            folded += 1
            # The Hop properties, inlined: this runs once per hop.
            called, started, resumed = hop.called_ns, hop.started_ns, hop.resumed_ns
            wall = resumed - called if resumed > called else 0
            if started:
                wait = started - called if started > called else 0
                run = hop.ended_ns - started if hop.ended_ns > started else 0
            else:
                wait, run = wall, 0
            wall_sum += wall
            wait_sum += wait
            run_sum += run
            if hop.direction == SYNC_TO_ASYNC:
                sync_to_async += 1
            else:
                parent = hop.parent
                if parent is not None and parent.direction == SYNC_TO_ASYNC:
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
            if wall > stats.max_ns:
                stats.max_ns = wall
            if len(details) < self.detail_limit:
                details.append(hop)
            else:
                self.detail_dropped += 1
        self.count += folded
        self.sync_to_async += sync_to_async
        self.async_to_sync += folded - sync_to_async
        self.wall_ns += wall_sum
        self.wait_ns += wait_sum
        self.run_ns += run_sum
        self.new_loops += new_loops
        self.max_depth = max_depth

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
        #: Set by the Django middleware: the request passed through it.
        self.saw_middleware = False
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


def finish_hop(hop: Hop) -> None:
    """Account a finished hop to its scope (hot path)."""
    scope = hop.scope
    if scope is None:
        unscoped.add(hop)
    elif scope.closed:
        # An enclosing scope still open (a test's count_hops() block around a
        # request) still gets it.
        parent = scope.parent
        while parent is not None and parent.closed:
            parent = parent.parent
        # Kept in `late` without its links, so it keeps no request alive.
        hop.scope = hop.parent = None
        late.add(hop)
        if parent is not None:
            parent.add(hop)
    else:
        scope.add(hop)


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
