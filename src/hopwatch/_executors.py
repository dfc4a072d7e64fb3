"""Which executor ran each crossing, and the concurrency a request got: derived off the hop path.

Nothing here runs per hop. When a request's line is built (once per logged
request), the kept hops (``RequestRecord.details``) are classified from facts
the hop path already records (``direction``, ``thread_sensitive``,
``new_loop``, ``thread_id``, ``own_executor``, ``parent``) plus one fact read at
that moment: the threads of asgiref's process-wide
``SyncToAsync.single_thread_executor``.

How asgiref picks the executor (``SyncToAsync.__call__``, the same in 3.8.1,
3.9.1 and 3.13.0 apart from 3.13's ``ThreadSensitiveContext(executor=...)``):

1. thread-sensitive, inside an ``async_to_sync`` (its ``CurrentThreadExecutor``
   is in the context): the thread blocked in that ``async_to_sync``
   (:data:`CALLER_THREAD`; under WSGI the request's own thread);
2. thread-sensitive, inside a ``ThreadSensitiveContext`` (Django's
   ``ASGIHandler`` opens one per request, so a new thread per request):
   that context's thread (:data:`CONTEXT_THREAD`);
3. thread-sensitive, neither: the process-wide single sync thread
   (:data:`SINGLE_THREAD`; e.g. ``AsyncClient`` from ``asyncio.run``);
4. ``thread_sensitive=False``: the executor the caller gave
   (:data:`OWN_EXECUTOR`) or the running loop's default pool
   (:data:`DEFAULT_POOL`), which the hop path records (``Hop.own_executor``).

``async_to_sync`` runs its coroutine on the loop found through the calling
worker thread (:data:`LOOP`) or on a new loop in a new thread
(:data:`NEW_LOOP`, the cold path; ``Hop.new_loop``).

What cannot be told apart is named, not guessed: crossings the record did not
keep (beyond ``detail_limit``) are :data:`UNKNOWN`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from operator import attrgetter
from typing import Any, Final, NamedTuple

from asgiref.sync import SyncToAsync

from hopwatch import _connections, schema
from hopwatch._recorder import ASYNC_TO_SYNC, RequestRecord

CONTEXT_THREAD: Final = "context_thread"
CALLER_THREAD: Final = "caller_thread"
SINGLE_THREAD: Final = "single_thread"
DEFAULT_POOL: Final = "default_pool"
OWN_EXECUTOR: Final = "own_executor"
LOOP: Final = "loop"
NEW_LOOP: Final = "new_loop"
UNKNOWN: Final = "unknown"

#: Every kind, in the order the line lists them.
KINDS: Final = (
    CONTEXT_THREAD,
    CALLER_THREAD,
    SINGLE_THREAD,
    DEFAULT_POOL,
    OWN_EXECUTOR,
    LOOP,
    NEW_LOOP,
    UNKNOWN,
)

#: Interfaces whose handler runs on the request's own (sync) thread.
SYNC_INTERFACES: Final = schema.SYNC_INTERFACES


def executor_threads(executor: Any) -> frozenset[int]:
    """The thread ids a ``ThreadPoolExecutor`` has started (private attribute, read safely)."""
    threads = getattr(executor, "_threads", None)
    if not threads:
        return frozenset()
    return frozenset(thread.ident for thread in list(threads) if thread.ident)


#: The single sync thread's ids once seen (empty before): what
#: :func:`single_thread_ids` remembers; the line's path reads it directly and
#: calls that only while it is empty.
known_single_ids: frozenset[int] = frozenset()


def single_thread_ids() -> frozenset[int]:
    """The process-wide single sync thread, once started (it never exits, so
    once seen it is remembered)."""
    global known_single_ids
    if not known_single_ids and getattr(SyncToAsync.single_thread_executor, "_threads", None):
        known_single_ids = executor_threads(SyncToAsync.single_thread_executor)
    return known_single_ids


class Classifier:
    """Classifies one request's kept hops (read the facts once, then :meth:`kind` per hop)."""

    __slots__ = ("_single", "hops", "record", "sync_handler")

    def __init__(self, record: RequestRecord, hops: Sequence[Any]) -> None:
        self.record = record
        self.hops = hops
        # the single sync thread's ids, read on first need only (see kind())
        self._single: frozenset[int] | None = None
        self.sync_handler = record.interface in SYNC_INTERFACES

    def _caller_of(self, a2s: Any) -> int | None:
        """The thread that called an async_to_sync (the one its CurrentThreadExecutor runs)."""
        parent = a2s.parent
        if parent is not None:
            # Called from a sync_to_async's code: that code's thread.
            return int(parent.thread_id) if parent.direction != ASYNC_TO_SYNC else None
        return int(self.record.handler_thread_id) if self.sync_handler else None

    def kind(self, hop: Any) -> str:
        if hop.direction == ASYNC_TO_SYNC:
            return NEW_LOOP if hop.new_loop else LOOP
        thread = hop.thread_id
        if hop.thread_sensitive:
            parent = hop.parent
            if parent is not None and parent.direction == ASYNC_TO_SYNC:
                caller = self._caller_of(parent)
                if caller is None or not thread or thread == caller:
                    return CALLER_THREAD
                return CONTEXT_THREAD  # 3.13: a ThreadSensitiveContext given an executor
            if not thread:
                return UNKNOWN  # never started: which thread it was queued for is not recorded
            single = self._single
            if single is None:
                single = self._single = single_thread_ids()
            if thread in single:
                return SINGLE_THREAD
            if self.sync_handler and thread == self.record.handler_thread_id:
                return CALLER_THREAD
            return CONTEXT_THREAD
        # Recorded on the hop path: whether asgiref was given an executor
        return OWN_EXECUTOR if hop.own_executor else DEFAULT_POOL

    def kinds(self) -> list[str]:
        return [self.kind(hop) for hop in self.hops]

    def thread_started(self, kinds: Sequence[str]) -> list[bool | None]:
        """Per hop: whether a thread was started for it (None: not knowable off the hop path).

        A request's ThreadSensitiveContext starts its thread for its first
        crossing (Django's ASGIHandler opens a context per request); a cold
        async_to_sync starts a thread for its loop (asgiref 3.13 may reuse one
        inside an AsyncSingleThreadContext), which the hop path records
        (``Hop.new_thread``); the caller's thread and the loop are never started
        for a crossing. A pool thread's start is not recorded.
        """
        started: list[bool | None] = [None] * len(self.hops)
        first_context: int | None = None
        order = sorted(range(len(self.hops)), key=lambda i: self.hops[i].started_ns or 1 << 62)
        per_request_context = self.record.interface == "asgi"
        for index in order:
            hop, kind = self.hops[index], kinds[index]
            if kind in (CALLER_THREAD, LOOP):
                started[index] = False
            elif kind == CONTEXT_THREAD and per_request_context and not _under_a2s(hop):
                if first_context is None:
                    first_context = hop.thread_id
                    started[index] = True
                elif hop.thread_id == first_context:
                    started[index] = False
            elif kind == NEW_LOOP and hop.thread_id:
                # told on the hop path: a thread's id may be an ended one's, reused
                started[index] = bool(hop.new_thread)
        return started


def _under_a2s(hop: Any) -> bool:
    parent = hop.parent
    return parent is not None and parent.direction == ASYNC_TO_SYNC


class _Facts(NamedTuple):
    """What classifies a crossing that has no parent in its request."""

    direction: str
    thread_sensitive: bool | None
    new_loop: bool
    thread_id: int
    own_executor: bool
    parent: None = None


_FACTS = attrgetter("direction", "thread_sensitive", "new_loop", "thread_id", "own_executor")
_STARTED = attrgetter("started_ns")


def executor_counts(record: RequestRecord, classifier: Classifier | None = None) -> dict[str, int]:
    """The request's crossings per executor kind (see :data:`KINDS`).

    Crossings the record did not keep count as :data:`UNKNOWN`, so the counts
    always add up to ``hops``.
    """
    hops = record.details
    dropped = int(record.count) - len(hops)
    if not hops:
        return count_kinds((), dropped)
    classifier = classifier or Classifier(record, hops)
    if record.max_depth <= 1:
        if not record.async_to_sync and not record.threadless and record.threads_seen == 1:
            # One thread ran every crossing (the usual ASGI request: its context
            # thread), and a thread runs one kind of crossing: the first one's.
            kind = classifier.kind(hops[0])
            if not dropped:
                return {kind: len(hops)}
            return count_kinds([kind] * len(hops), dropped)
        # No crossing inside another: the kind depends on these four facts only, so
        # count the distinct ones (in C) and classify each once.
        counts: dict[str, int] = {}
        for facts, count in Counter(map(_FACTS, hops)).items():
            kind = classifier.kind(_Facts(*facts))
            counts[kind] = counts.get(kind, 0) + count
        if dropped:
            counts[UNKNOWN] = counts.get(UNKNOWN, 0) + dropped
        return {kind: counts[kind] for kind in KINDS if counts.get(kind)}
    return count_kinds(classifier.kinds(), dropped)


def count_kinds(kinds: Iterable[str], dropped: int = 0) -> dict[str, int]:
    """Crossings per kind, in :data:`KINDS` order, kinds with none left out."""
    counts = dict.fromkeys(KINDS, 0)
    for kind in kinds:
        counts[kind] += 1
    counts[UNKNOWN] += max(0, dropped)
    return {kind: count for kind, count in counts.items() if count}


# --- concurrency ------------------------------------------------------------------


def concurrency(record: RequestRecord) -> tuple[int, int] | None:
    """(max_in_flight, concurrent_ns) of a request, or None when not known exactly
    (from the kept hops: known when every hop was kept)."""
    hops = record.details
    if len(hops) != record.count:
        return None  # some hops were not kept: a figure from the rest would be wrong
    if record.max_depth <= 1 and record.threads_seen <= 1:
        # None inside another, all on one thread: one ran at a time.
        return (1 if any(map(_STARTED, hops)) else 0), 0
    return running_concurrency(hops)


def running_concurrency(hops: Sequence[Any]) -> tuple[int, int]:
    """The most crossings whose code ran at the same moment, and the time more than one did.

    A crossing counts while its code runs (``started_ns`` to ``ended_ns``),
    not while it waits in a queue: five calls gathered onto the request's one
    thread-sensitive thread are all *awaited* at once but run one after the
    other (1), five ``thread_sensitive=False`` calls in the default pool run
    side by side (5). While a crossing's code waits on a crossing nested in it
    (from the nested one's call to its return), it does not count, so nesting
    is not mistaken for concurrency. A cancelled crossing's code counts until its caller
    resumed: what it did after that is in no figure of the line (docs/log-schema.md).
    """
    children: dict[int, list[Any]] = {}
    for hop in hops:
        parent = hop.parent
        if parent is not None:
            children.setdefault(id(parent), []).append(hop)
    events: list[tuple[int, int]] = []
    for hop in hops:
        start, end = hop.started_ns, hop.ended_ns
        if hop.resumed_ns and hop.resumed_ns < end:  # cancelled: its caller went on
            end = hop.resumed_ns
        if not start or end <= start:
            continue
        nested = children.get(id(hop))
        if nested:
            for segment_start, segment_end in _minus(start, end, nested):
                events.append((segment_start, 1))
                events.append((segment_end, -1))
        else:
            events.append((start, 1))
            events.append((end, -1))
    events.sort()  # at the same instant an end (-1) sorts before a start
    running = peak = 0
    concurrent_ns = 0
    since = 0
    for moment, step in events:
        if running > 1:
            concurrent_ns += moment - since
        since = moment
        running += step
        if running > peak:
            peak = running
    return peak, concurrent_ns


def _minus(start: int, end: int, nested: Sequence[Any]) -> list[tuple[int, int]]:
    """[start, end) without the nested crossings' [called_ns, resumed_ns)."""
    holes = sorted((hop.called_ns, hop.resumed_ns) for hop in nested if hop.resumed_ns)
    segments = []
    cursor = start
    for hole_start, hole_end in holes:
        if hole_start > cursor:
            segments.append((cursor, min(hole_start, end)))
        cursor = max(cursor, hole_end)
        if cursor >= end:
            break
    if cursor < end:
        segments.append((cursor, end))
    return [(a, b) for a, b in segments if b > a]


# --- the request line ------------------------------------------------------------------


class ThreadFacts(NamedTuple):
    """A request's thread fields (see :func:`thread_facts`)."""

    classifier: Classifier | None
    executors: dict[str, int]
    max_in_flight: int | None  # None: not known exactly (some hops not kept)
    concurrent_ns: int | None
    db_connections: int


def thread_facts(record: RequestRecord) -> ThreadFacts:
    """The line's thread fields, and the classifier for the detail entries:
    ``executors`` (crossings per executor kind), ``max_in_flight`` and
    ``concurrent_ns`` (when known exactly), ``db_connections``."""
    hops = record.details
    if not hops:
        if not record.count:  # no hop at all (a WSGI request's sync view): none ran
            return ThreadFacts(None, {}, 0, 0, _opened(record))
        known = concurrency(record)
        return ThreadFacts(None, executor_counts(record), *_known(known), _opened(record))
    classifier = Classifier(record, hops)
    count = len(hops)
    if (
        count == record.count
        and record.max_depth <= 1
        and not record.async_to_sync
        and not record.threadless
        and record.threads_seen == 1
    ):
        # The usual ASGI request: every crossing kept, none inside another, all run
        # by one thread (its context thread). A thread runs one kind of crossing
        # (the first one's), and one ran at a time (executor_counts, concurrency).
        return ThreadFacts(classifier, {classifier.kind(hops[0]): count}, 1, 0, _opened(record))
    known = concurrency(record)
    return ThreadFacts(
        classifier, executor_counts(record, classifier), *_known(known), _opened(record)
    )


def _known(known: tuple[int, int] | None) -> tuple[int | None, int | None]:
    return known if known is not None else (None, None)


def _opened(record: RequestRecord) -> int:
    return len(_connections.opened(record))


def thread_fields(record: RequestRecord, event: dict[str, Any]) -> Classifier | None:
    """Add the line's thread fields to ``event`` (see :func:`thread_facts`); the classifier."""
    facts = thread_facts(record)
    event["executors"] = facts.executors
    if facts.max_in_flight is not None and facts.concurrent_ns is not None:
        event["max_in_flight"] = facts.max_in_flight
        event["concurrent_ms"] = ((facts.concurrent_ns + 500) // 1000) / 1000
    event["db_connections"] = facts.db_connections
    return facts.classifier


def annotate_detail(classifier: Classifier | None, entries: list[dict[str, Any]]) -> None:
    """Add ``executor`` and ``thread_started`` to the detail entries (the kept hops, in order)."""
    if classifier is None or not entries:
        return
    kinds = classifier.kinds()
    started = classifier.thread_started(kinds)
    for entry, kind, new_thread in zip(entries, kinds, started, strict=False):
        entry["executor"] = kind
        entry["thread_started"] = new_thread
