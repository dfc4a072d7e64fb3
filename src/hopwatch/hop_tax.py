"""What a hop costs on this host (the "hop tax"), and what hopwatch adds to one.

:func:`measure_hop_tax` times no-op hops of each kind in a fresh event loop in a
helper thread, never inside a request: ``hopwatch audit`` runs it, and so does a
server with ``MEASURE_HOP_TAX`` (once per process, in a background thread started
by the first request the process closes; the request lines then carry
``hop_tax_us``). :func:`measure_overhead` times the same
hop with and without hopwatch's instrumentation, which it installs and removes
while it measures: only for a process that serves no requests (the audit).

Nothing here imports Django.
"""

from __future__ import annotations

import _thread
import asyncio
import statistics
import threading
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

#: Hops timed per kind by default.
DEFAULT_SAMPLES: Final = 50

# Adapter kinds, as the audit's model counts them and the hop tax prices them.
SYNC_TO_ASYNC: Final = "sync_to_async"
ASYNC_TO_SYNC: Final = "async_to_sync"
NEW_LOOP: Final = "async_to_sync_new_loop"


@dataclass(frozen=True)
class HopTax:
    """What a no-op hop costs on this host: the 10th percentile of the samples
    (:func:`_floor_us`), in microseconds."""

    #: a thread-sensitive ``sync_to_async`` of a no-op, from a running loop
    sync_to_async_us: float
    #: an ``async_to_sync`` of a no-op from a worker thread onto the running loop
    async_to_sync_us: float
    #: an ``async_to_sync`` with no loop to go to: a new loop in a new thread
    new_loop_us: float
    samples: int
    #: whether hopwatch's instrumentation was installed while measuring
    instrumented: bool

    def cost_us(self, adapters: Mapping[str, int]) -> float:
        """The predicted time of hops counted by adapter kind."""
        return (
            adapters.get(SYNC_TO_ASYNC, 0) * self.sync_to_async_us
            + adapters.get(ASYNC_TO_SYNC, 0) * self.async_to_sync_us
            + adapters.get(NEW_LOOP, 0) * self.new_loop_us
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "sync_to_async_us": round(self.sync_to_async_us, 1),
            "async_to_sync_us": round(self.async_to_sync_us, 1),
            "async_to_sync_new_loop_us": round(self.new_loop_us, 1),
            "samples": self.samples,
            "instrumented": self.instrumented,
        }


class MeasurementStopped(Exception):
    """:func:`measure_hop_tax`'s ``stop`` was set: the measurement ended between two hops."""


class GreenThreads(RuntimeError):
    """``threading`` is monkey-patched (gevent, eventlet): see :func:`threads_are_greenlets`."""


def threads_are_greenlets() -> bool:
    """Whether ``threading`` is monkey-patched (gevent's ``patch_all()``, eventlet's
    ``monkey_patch()``, gunicorn's gevent worker): a thread started then is a greenlet in
    the caller's OS thread, so an event loop the measurement ran in it would be running
    for every request served by that OS thread meanwhile (Django then refuses their sync
    ORM calls, ``SynchronousOnlyOperation``)."""
    return not isinstance(_thread.start_new_thread, types.BuiltinFunctionType)


def _check(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise MeasurementStopped


def _noop() -> None:
    return None


async def _anoop() -> None:
    return None


def _median_us(durations_ns: Sequence[int]) -> float:
    return float(statistics.median(durations_ns)) / 1000.0


def _floor_us(durations_ns: Sequence[int]) -> float:
    """The 10th percentile, in microseconds: what a no-op hop costs when nothing else
    runs. A server measures its price while it serves its first requests (the GIL and
    the cores shared with them): their median read 294 µs where the same hop costs
    68 µs idle, above what its real hops' overhead came to (the demo, one request at a
    time); a low percentile keeps the price the floor it is used as."""
    if len(durations_ns) < 2:
        return float(durations_ns[0]) / 1000.0
    return float(statistics.quantiles(durations_ns, n=10, method="inclusive")[0]) / 1000.0


def _asgiref_sync() -> Any:
    """``asgiref.sync`` (untyped in asgiref 3.6: used through Any)."""
    import asgiref.sync

    return asgiref.sync


def _time_async_to_sync(
    samples: int, warmup: int, stop: threading.Event | None = None
) -> list[int]:
    """In a ``sync_to_async`` worker thread: ``async_to_sync`` onto the running loop."""
    async_to_sync = _asgiref_sync().async_to_sync
    call = async_to_sync(_anoop)  # made here: it finds the running loop, as Django's do
    for _ in range(warmup):
        _check(stop)
        call()
    durations = []
    for _ in range(samples):
        _check(stop)
        started = time.perf_counter_ns()
        call()
        durations.append(time.perf_counter_ns() - started)
    return durations


async def _time_awaits(
    call: Callable[[], Any], count: int, durations: list[int], stop: threading.Event | None = None
) -> None:
    """Await ``call()`` ``count`` times, appending each wall time in nanoseconds (``stop``
    set: :class:`MeasurementStopped` before the next)."""
    for _ in range(count):
        _check(stop)
        started = time.perf_counter_ns()
        await call()
        durations.append(time.perf_counter_ns() - started)


async def _time_on_loop(
    samples: int, warmup: int, stop: threading.Event | None = None
) -> tuple[list[int], list[int]]:
    sync = _asgiref_sync()
    sync_to_async = sync.sync_to_async
    # One context, as Django's ASGIHandler makes per request: its own thread.
    async with sync.ThreadSensitiveContext():
        hop = sync_to_async(_noop, thread_sensitive=True)
        await _time_awaits(hop, warmup, [], stop)
        durations: list[int] = []
        await _time_awaits(hop, samples, durations, stop)
        back = await sync_to_async(_time_async_to_sync, thread_sensitive=True)(
            samples, warmup, stop
        )
    return durations, back


def _time_new_loop(samples: int, warmup: int, stop: threading.Event | None = None) -> list[int]:
    async_to_sync = _asgiref_sync().async_to_sync

    for _ in range(warmup):
        _check(stop)
        async_to_sync(_anoop)()
    durations = []
    for _ in range(samples):
        _check(stop)
        started = time.perf_counter_ns()
        async_to_sync(_anoop)()  # no loop in this thread: a new one each time
        durations.append(time.perf_counter_ns() - started)
    return durations


def _in_helper_thread(func: Callable[[], Any]) -> Any:
    """Run ``func`` in a new thread (a fresh context: never inside a request)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = func()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="hopwatch-hop-tax", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def measure_hop_tax(samples: int = DEFAULT_SAMPLES, stop: threading.Event | None = None) -> HopTax:
    """Measure what a no-op hop costs on this host, now.

    ``samples`` timed calls of each kind (after a short warm-up): a
    thread-sensitive ``sync_to_async`` from a running loop, an
    ``async_to_sync`` from its worker thread back onto that loop, and an
    ``async_to_sync`` with no loop to go to (a new loop in a new thread: an
    async view under WSGI). All of it runs in a fresh event loop in a helper
    thread, so it never runs inside a request, and it blocks the caller for
    about ``samples`` x 1-2 ms. The 10th percentile of each kind, in microseconds.
    ``stop``: an event that, once set, ends the measurement before its next hop with
    :class:`MeasurementStopped`
    (the process is ending: no hop is left half made, no coroutine unawaited).
    """
    if samples < 1:
        raise ValueError("samples must be 1 or more")
    if threads_are_greenlets():
        raise GreenThreads(
            "threading is monkey-patched (gevent or eventlet): the hop tax is measured"
            " in a separate thread, which would be a greenlet in this one"
        )
    from hopwatch._patch import is_installed

    warmup = min(5, samples)
    on_loop, back = _in_helper_thread(lambda: asyncio.run(_time_on_loop(samples, warmup, stop)))
    new_loop = _in_helper_thread(lambda: _time_new_loop(samples, min(2, samples), stop))
    return HopTax(
        sync_to_async_us=_floor_us(on_loop),
        async_to_sync_us=_floor_us(back),
        new_loop_us=_floor_us(new_loop),
        samples=samples,
        instrumented=is_installed(),
    )


@dataclass(frozen=True)
class Overhead:
    """What hopwatch's instrumentation adds to one hop on this host: medians in microseconds."""

    #: a thread-sensitive ``sync_to_async`` of a no-op, asgiref as it ships
    bare_us: float
    #: the same hop with hopwatch's instrumentation installed
    instrumented_us: float
    samples: int

    @property
    def added_us(self) -> float:
        return self.instrumented_us - self.bare_us

    def as_dict(self) -> dict[str, Any]:
        return {
            "bare_us": round(self.bare_us, 1),
            "instrumented_us": round(self.instrumented_us, 1),
            "added_us": round(self.added_us, 1),
            "samples": self.samples,
        }


#: Hops timed per turn while measuring the overhead: the two variants take turns, so
#: that a machine busy for a moment slows both alike.
_OVERHEAD_TURN: Final = 5


async def _time_with_and_without(samples: int, warmup: int) -> tuple[list[int], list[int]]:
    from hopwatch import _patch

    sync = _asgiref_sync()
    bare: list[int] = []
    instrumented: list[int] = []
    async with sync.ThreadSensitiveContext():
        hop = sync.sync_to_async(_noop, thread_sensitive=True)
        await _time_awaits(hop, warmup, [])
        while len(bare) < samples:
            for durations, switch in ((instrumented, _patch.install), (bare, _patch.uninstall)):
                switch()  # between hops: none is in flight
                await _time_awaits(hop, min(_OVERHEAD_TURN, samples - len(durations)), durations)
    return bare, instrumented


def measure_overhead(samples: int = DEFAULT_SAMPLES) -> Overhead | None:
    """Measure what hopwatch adds to a no-op ``sync_to_async`` on this host, now.

    ``samples`` hops with the instrumentation and as many without, taking turns.
    It installs and removes the instrumentation while it measures, so it is only
    for a process that serves no requests (``hopwatch audit``, the management
    command); the instrumentation is left as it was found. None when other code
    has wrapped asgiref over hopwatch's patch (removing ours would remove theirs).
    """
    if samples < 1:
        raise ValueError("samples must be 1 or more")
    from asgiref.sync import SyncToAsync

    from hopwatch import _patch

    was_installed = _patch.is_installed()
    if was_installed and not _patch.owns_call(SyncToAsync):
        return None
    try:
        bare, instrumented = _in_helper_thread(
            lambda: asyncio.run(_time_with_and_without(samples, min(5, samples)))
        )
    finally:
        (_patch.install if was_installed else _patch.uninstall)()
    return Overhead(_median_us(bare), _median_us(instrumented), samples)


__all__ = [
    "ASYNC_TO_SYNC",
    "DEFAULT_SAMPLES",
    "NEW_LOOP",
    "SYNC_TO_ASYNC",
    "HopTax",
    "Overhead",
    "measure_hop_tax",
    "measure_overhead",
]
