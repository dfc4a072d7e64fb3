"""Per-process thread facts: the ``hopwatch.process`` line and the staff-only threads page.

Two parts, neither on the hop path:

* :func:`process_facts`: what the process looks like now (read on demand, a few
  attribute reads): its :func:`process_id`, the default pool of the event loop requests run on (its
  ``max_workers`` as configured, and whether ``ASGI_THREADS`` was applied), its
  threads alive and busy (running a call, read from each thread's stack) and its
  queue, or null where the loop does not let its default pool be read; the
  threads alive in the process, asgiref's single sync thread, the
  ThreadSensitiveContexts open now.
* :class:`Interval`: what the requests closed since the last line saw, folded
  once per request by a sink (only while ``PROCESS_LINE_SECONDS`` is on): the
  crossings per executor kind and, for the crossings that ran in the default
  pool, the queue each one found when it was called (how many pool crossings
  were queued ahead of it with no worker free to take them, how many had a
  worker, given the pool's ``max_workers``), and their queue wait;
  ThreadSensitiveContexts open at once. Computed once per interval.

A daemon thread writes one line per interval through the request lines' output
(docs/log-schema.md, ``hopwatch.process``). It is started on the first request
a process closes, so a server that forks its workers after loading the app gets
one per worker.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import math
import os
import secrets
import sys
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from concurrent.futures import thread as _futures_thread
from typing import Any, Final

from asgiref.sync import SyncToAsync

from hopwatch import _errors, _executors

EVENT: Final = "hopwatch.process"
SCHEMA_VERSION: Final = 1
#: Pool crossings kept per interval for the queue figures (the rest are counted).
POOL_HOPS_LIMIT: Final = 50_000
#: Requests kept per interval for the contexts-open-at-once figure.
CONTEXTS_LIMIT: Final = 50_000


def _ms(ns: int) -> float:
    return ((ns + 500) // 1000) / 1000


def default_max_workers() -> int:
    """What ``ThreadPoolExecutor()`` gives a loop's default pool when nobody configured one."""
    count = getattr(os, "process_cpu_count", os.cpu_count)() or 1
    return min(32, count + 4)


def asgi_threads_env() -> int | str | None:
    raw = os.environ.get("ASGI_THREADS")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return raw


def _native_threads() -> int | None:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # not Linux
        return None


_MISSING: Final = object()
#: The code a ThreadPoolExecutor's thread runs between calls (waiting for the next one).
_WORKER_CODE: Final = getattr(getattr(_futures_thread, "_worker", None), "__code__", None)


def _is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    return any(cls.__module__.partition(".")[0] == "uvloop" for cls in type(loop).__mro__)


def loop_executor(loop: asyncio.AbstractEventLoop) -> tuple[bool, Executor | None]:
    """(readable, the default executor of ``loop`` or None before its first use).

    asyncio's loops (and rloop) keep it in ``_default_executor``; uvloop keeps it
    in an attribute Python cannot read, which the loop's references to the
    garbage collector list. Any other loop: not readable."""
    executor = getattr(loop, "_default_executor", _MISSING)
    if executor is not _MISSING:
        return True, executor if isinstance(executor, Executor) else None
    if _is_uvloop(loop):
        referents = gc.get_referents(loop)
        found = [ref for ref in referents if isinstance(ref, Executor)]
        if referents and len(found) <= 1:
            return True, found[0] if found else None
    return False, None


def _busy_threads(threads: list[threading.Thread]) -> int:
    """Threads of a pool running a call: any not in the pool's wait for the next one."""
    frames = sys._current_frames()
    busy = 0
    for thread in threads:
        frame = frames.get(thread.ident) if thread.ident is not None else None
        if frame is not None and frame.f_code is not _WORKER_CODE:
            busy += 1
    return busy


def pool_facts(loop: asyncio.AbstractEventLoop | None) -> dict[str, Any]:
    """The default pool of ``loop``: configured size, threads, busy, queued.

    Null where they cannot be read (a loop that does not expose its default pool,
    an executor that is no ThreadPoolExecutor): unknown, never a guess."""
    readable, executor = loop_executor(loop) if loop is not None else (True, None)
    asgi_threads = asgi_threads_env()
    facts: dict[str, Any] = {"loop": loop is not None}
    if not readable:
        facts["created"] = facts["max_workers"] = None
        facts["threads"] = facts["busy"] = facts["queued"] = None
    elif executor is None:
        # Created on first use with the interpreter's default size.
        facts["created"] = False
        facts["max_workers"] = default_max_workers()
        facts["threads"] = facts["busy"] = facts["queued"] = 0
    elif isinstance(executor, ThreadPoolExecutor) and _WORKER_CODE is not None:
        threads = [thread for thread in list(executor._threads) if thread.is_alive()]
        facts["created"] = True
        facts["max_workers"] = executor._max_workers
        facts["threads"] = len(threads)
        facts["busy"] = _busy_threads(threads)
        # A shut-down pool's queue also holds the one end-of-work mark (None) its
        # threads pass on to each other: no call.
        ended = 1 if getattr(executor, "_shutdown", False) else 0
        facts["queued"] = max(0, executor._work_queue.qsize() - ended)
    else:
        facts["created"] = True
        facts["max_workers"] = getattr(executor, "_max_workers", None)
        facts["threads"] = facts["busy"] = facts["queued"] = None
    facts["asgi_threads"] = asgi_threads
    # Applied: the pool exists with that size (daphne sets it at start; uvicorn,
    # hypercorn and granian never read ASGI_THREADS; asgiref stopped in 3.3).
    facts["asgi_threads_applied"] = (
        None
        if asgi_threads is None or facts["created"] is None
        else (facts["created"] and facts["max_workers"] == asgi_threads)
    )
    return facts


#: (pid, id) of this process: made on first use, made again in a forked child.
_process_id: tuple[int, str] | None = None


def process_id() -> str:
    """16 random hex digits naming this process instance in its ``hopwatch.process``
    lines: made once per process (never per request or per line), and again in a
    forked child (at the fork, and should a fork go unseen, when the pid is not the
    one it was made in). The pid alone cannot tell processes apart: containers each
    run their server as pid 1."""
    global _process_id
    pid = os.getpid()
    known = _process_id
    if known is None or known[0] != pid:
        known = _process_id = (pid, secrets.token_hex(8))
    return known[1]


def _forget_process_id() -> None:
    global _process_id
    _process_id = None


os.register_at_fork(after_in_child=_forget_process_id)


def process_facts(loop: asyncio.AbstractEventLoop | None = None) -> dict[str, Any]:
    """The process's thread facts now (``loop``: the loop requests run on, if known)."""
    if loop is None:
        loop = asyncio.events._get_running_loop() or _tracked_loop()
    return {
        "pid": os.getpid(),
        "process_id": process_id(),
        "threads_alive": threading.active_count(),
        "native_threads": _native_threads(),
        "default_pool": pool_facts(loop),
        "single_thread_started": bool(_executors.single_thread_ids()),
        "contexts_open": len(SyncToAsync.context_to_thread_executor),
    }


# --- the interval, from the requests closed in it --------------------------------------

_loop_ref: weakref.ref[asyncio.AbstractEventLoop] | None = None


def _tracked_loop() -> asyncio.AbstractEventLoop | None:
    ref = _loop_ref
    return ref() if ref is not None else None


def _percentile(values: list[int], fraction: float) -> int:
    if not values:
        return 0
    # nearest rank: the smallest value at or above `fraction` of them (ceil(f * n)
    # of n, rounded first so that 0.95 * 20 is 19, not 19.000000000000004 or below)
    ordered = sorted(values)
    rank = math.ceil(round(fraction * len(ordered), 9))
    return ordered[min(len(ordered), max(rank, 1)) - 1]


class Interval:
    """What the requests closed since the last line saw (thread-safe; a lock per request)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset(time.monotonic())

    def _reset(self, now: float) -> None:
        self.started = now
        self.requests = 0
        self.kinds: dict[str, int] = {}
        # (called_ns, started_ns, ended_ns) of each default-pool crossing
        self.pool: list[tuple[int, int, int]] = []
        self.pool_dropped = 0
        # (opened_ns, closed_ns) of each request whose ThreadSensitiveContext had a thread
        self.contexts: list[tuple[int, int]] = []
        self.db_connections = 0

    def add(self, record: Any) -> None:
        """Fold one closed request (the sink)."""
        global _loop_ref
        loop = asyncio.events._get_running_loop()
        if loop is not None and _tracked_loop() is not loop:
            _loop_ref = weakref.ref(loop)
        hops = record.details
        classifier = _executors.Classifier(record, hops) if hops else None
        kinds = classifier.kinds() if classifier is not None else []
        pool = [
            (hop.called_ns, hop.started_ns or hop.resumed_ns, hop.ended_ns or hop.resumed_ns)
            for hop, kind in zip(hops, kinds, strict=True)
            if kind == _executors.DEFAULT_POOL
        ]
        counts = _executors.count_kinds(kinds, int(record.count) - len(hops))
        has_context = _executors.CONTEXT_THREAD in counts
        from hopwatch import _connections

        connections = len(_connections.opened(record))
        with self._lock:
            self.requests += 1
            for kind, count in counts.items():
                self.kinds[kind] = self.kinds.get(kind, 0) + count
            room = POOL_HOPS_LIMIT - len(self.pool)
            self.pool.extend(pool[: max(0, room)])
            self.pool_dropped += max(0, len(pool) - max(0, room))
            if has_context and len(self.contexts) < CONTEXTS_LIMIT:
                self.contexts.append((record.started_ns, record.ended_ns))
            self.db_connections += connections

    def take(self, *, reset: bool = True, max_workers: int | None = None) -> dict[str, Any]:
        """The interval's figures; with ``reset``, a new interval begins.

        ``max_workers``: the default pool's size, which tells a crossing queued for
        a thread from one handed to an idle one (without it the queue is null)."""
        now = time.monotonic()
        with self._lock:
            seconds = now - self.started
            requests, kinds = self.requests, dict(self.kinds)
            pool, dropped = list(self.pool), self.pool_dropped
            contexts, connections = list(self.contexts), self.db_connections
            if reset:
                self._reset(now)
        queued, busy = _queues_seen(pool, max_workers)
        waits = [max(0, start - called) for called, start, _end in pool]
        return {
            "interval_s": round(seconds, 3),
            "requests": requests,
            "executors": {kind: kinds[kind] for kind in _executors.KINDS if kinds.get(kind)},
            "db_connections": connections,
            "pool_crossings": len(pool) + dropped,
            "pool_queue_max": None if queued is None else max(queued, default=0),
            "pool_queue_p95": None if queued is None else _percentile(queued, 0.95),
            "pool_busy_max": None if busy is None else max(busy, default=0),
            "pool_wait_max_ms": _ms(max(waits, default=0)),
            "pool_wait_p95_ms": _ms(_percentile(waits, 0.95)),
            "contexts_max": _most_at_once(contexts),
        }


def _queues_seen(
    pool: list[tuple[int, int, int]], workers: int | None
) -> tuple[list[int] | None, list[int] | None]:
    """For each pool crossing, as it was called: crossings queued ahead of it, and busy.

    The pool takes its calls in order: of the crossings in it (called, not ended),
    the first ``workers`` have a thread (running, or being handed to an idle one:
    called, not started yet), the rest are queued, waiting for a thread. Both None
    without ``workers``: a call not started yet could be either."""
    in_pool: list[int] = []
    waiting: list[tuple[int, int]] = []  # (started_ns, ended_ns): called earlier, not started
    busy: list[int] = []  # ended_ns of crossings running
    for called, started, ended in sorted(pool):
        while waiting and waiting[0][0] <= called:
            heapq.heappush(busy, heapq.heappop(waiting)[1])
        while busy and busy[0] <= called:
            heapq.heappop(busy)
        in_pool.append(len(waiting) + len(busy))
        heapq.heappush(waiting, (started, ended))
    if not workers:
        return None, None
    queued = [max(0, count - workers) for count in in_pool]
    return queued, [min(count, workers) for count in in_pool]


def _most_at_once(intervals: list[tuple[int, int]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    current = peak = 0
    for _moment, step in events:
        current += step
        peak = max(peak, current)
    return peak


# --- the line and its thread -----------------------------------------------------------

Writer = Callable[[dict[str, Any]], None]


class ProcessLines:
    """Writes one ``hopwatch.process`` line every ``seconds`` (a daemon thread)."""

    def __init__(self, seconds: float, write: Writer) -> None:
        self.seconds = seconds
        self.write = write
        self.interval = Interval()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def __call__(self, record: Any) -> None:
        """The request sink: fold the request, start the thread in this process if needed."""
        if self._pid != os.getpid():
            self._start()
        self.interval.add(record)

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self.interval = Interval()  # a forked child starts its own interval
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name="hopwatch-process", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(self.seconds):
            self.write_line()

    def line(self) -> dict[str, Any]:
        event: dict[str, Any] = {"event": EVENT, "schema": SCHEMA_VERSION}
        facts = process_facts(_tracked_loop())
        event.update(facts)
        event.update(self.interval.take(max_workers=facts["default_pool"]["max_workers"]))
        return event

    def write_line(self) -> None:
        try:
            self.write(self.line())
        except Exception as exc:
            _errors.report("writing the hopwatch.process line", exc)

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
