"""Per-hop cost: hopwatch-patched vs bare asgiref, interleaved in one run.

The machine is shared and noisy, so configurations alternate round by round
(bare, patched, bare, patched, ...), and the figures are medians over rounds
of ratios within a round: the patched round's time to the bare round's next
to it (a fraction of a second apart), and what hopwatch recorded in the
patched round to that bare round's time (the truth figure); each with the 95%
interval of its median (a seeded bootstrap over rounds), never an absolute
number from another run. Short rounds, many of them: this VM's speed drifts by
tens of percent over seconds, and with 30 rounds of 400 hops one hop's figure
read from +1.1% to +13.2% between runs of the same code.

    python -m bench.hops [--rounds 120] [--per-round 200] [--json out.json]

``python -m bench`` runs it pinned to one core (``taskset``), as it runs the
per-request and server processes: the caller and the thread it hands the hop
to then take turns on that core, instead of one waking the other on the second
core, whose wake-up time (tens of microseconds on this virtual machine, and
different every run) swamped a difference of a microsecond or two: unpinned,
the same code read from -12% to +20% for one hop between runs; pinned, within
about a point.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from asgiref.sync import ThreadSensitiveContext, async_to_sync, sync_to_async

import hopwatch
from bench.stats import median_interval
from hopwatch._recorder import RequestContext, RequestRecord, current_scope, hand_over


def _noop() -> None:
    return None


async def _anoop() -> None:
    return None


def _valued_noop() -> tuple[int, int]:
    return (1, 2)


async def _avalued_noop() -> tuple[int, int]:
    return (1, 2)


#: The ledger the patched rounds record into (None in the bare rounds).
_ledger: RequestRecord | None = None


async def _in_request(main: Callable[[], Any]) -> Timing:
    """Run ``main()`` as Django's ASGIHandler runs a request: inside the
    ThreadSensitiveContext it enters for each request (the executor of the
    request's thread-sensitive calls). Bare, asgiref's own; patched, the
    RequestContext hopwatch puts under that name, carrying the ledger the hops
    are recorded into, as it carries a request's record."""
    if _ledger is not None:
        hand_over(_ledger)
        context: ThreadSensitiveContext = RequestContext()
    else:
        context = ThreadSensitiveContext()
    async with context:
        result: Timing = await main()
    return result


#: A hop run's figures: (wall ns per hop, process CPU ns per hop), both over the
#: same window, the hop loop and nothing else (not the loop's set-up, not
#: ``_settle``'s collection, not install() or the recorded times read back).
Timing = tuple[float, float]


def _start() -> tuple[int, int]:
    """The window's start: (wall, process CPU) clock readings, next to each other."""
    return time.perf_counter_ns(), time.process_time_ns()


def _per_hop(start: tuple[int, int], n: int) -> Timing:
    """The window from ``start`` to now, per hop, on both clocks."""
    wall, cpu = time.perf_counter_ns(), time.process_time_ns()
    return (wall - start[0]) / n, (cpu - start[1]) / n


def _s2a_sensitive(n: int, function: Callable[[], Any] = _noop) -> Timing:
    async def main() -> Timing:
        hop = sync_to_async(function)
        start = _start()
        for _ in range(n):
            await hop()
        return _per_hop(start, n)

    return asyncio.run(_in_request(main))


def _s2a_pool(n: int) -> Timing:
    async def main() -> Timing:
        hop = sync_to_async(_noop, thread_sensitive=False)
        start = _start()
        for _ in range(n):
            await hop()
        return _per_hop(start, n)

    return asyncio.run(_in_request(main))


def _a2s_running_loop(n: int, function: Callable[[], Any] = _anoop) -> Timing:
    """async_to_sync from a worker thread back onto the running loop (Django's usual case)."""

    def in_thread() -> Timing:
        hop = async_to_sync(function)
        start = _start()
        for _ in range(n):
            hop()
        return _per_hop(start, n)

    async def main() -> Timing:
        return await sync_to_async(in_thread)()

    return asyncio.run(_in_request(main))


def _a2s_cold(n: int) -> Timing:
    """async_to_sync with no loop: a new thread and event loop per call (WSGI, where
    hopwatch's context variable holds the request's record)."""
    hop = async_to_sync(_anoop)
    start = _start()
    for _ in range(n):
        hop()
    return _per_hop(start, n)


@dataclass
class Case:
    name: str
    run: Callable[[int], Timing]
    scale: float  # cold hops are slow: fewer per round


CASES = [
    Case("sync_to_async, thread-sensitive", _s2a_sensitive, 1.0),
    Case("sync_to_async, thread pool", _s2a_pool, 1.0),
    Case("async_to_sync, onto the running loop", _a2s_running_loop, 1.0),
    Case("async_to_sync, cold (new loop)", _a2s_cold, 0.25),
]


def _s2a_sensitive_valued(n: int) -> Timing:
    return _s2a_sensitive(n, _valued_noop)


def _a2s_running_loop_valued(n: int) -> Timing:
    return _a2s_running_loop(n, _avalued_noop)


#: Two of the hops again, their function returning a value (a tuple) where the
#: hops above return None, as most of an application's do (an ORM query's
#: result, a response). From Python 3.12 on, `await` takes a value out of an
#: awaitable that is not a coroutine through a StopIteration, which hopwatch's
#: awaitable makes and asgiref's coroutine does not; None needs none. Counted in
#: instructions (bench.instructions), not timed: the wall-time bench and its
#: verdicts keep to CASES.
VALUED_CASES = [
    Case("sync_to_async, thread-sensitive, returning a value", _s2a_sensitive_valued, 1.0),
    Case("async_to_sync, onto the running loop, returning a value", _a2s_running_loop_valued, 1.0),
]

#: What bench.instructions counts, per hop.
COUNTED_CASES = CASES + VALUED_CASES


def _measure(case: Case, patched: bool, n: int) -> Timing:
    """(wall ns per hop, process CPU ns per hop), both over the hop loop alone."""
    return _measure_window(case, patched, n)


#: The mean wall time hopwatch recorded per hop in the last patched round (ns).
last_recorded_ns = 0.0


def _measure_wall(case: Case, patched: bool, n: int, recorded: bool = True) -> float:
    """Wall ns per hop (see :func:`_measure_window`)."""
    return _measure_window(case, patched, n, recorded)[0]


def _measure_window(case: Case, patched: bool, n: int, recorded: bool = True) -> Timing:
    """(wall, CPU) ns per hop; with ``recorded``, also what hopwatch recorded
    (``last_recorded_ns``).

    The instruction count (``bench.instructions``) passes ``recorded=False``: reading
    the recorded times back is the bench's own work, not hopwatch's.
    """
    global last_recorded_ns, _ledger
    if patched:
        hopwatch.install()
        # Record into a request's record: on a loop, as under Django's
        # ASGIHandler (the request's ThreadSensitiveContext carries it: _in_request);
        # without one, as under WSGI (hopwatch's context variable holds it).
        cold = case.run is _a2s_cold
        scope = _ledger = RequestRecord("wsgi" if cold else "asgi")
        token = current_scope.set(scope) if cold else None
        try:
            _settle()
            return case.run(n)
        finally:
            _ledger = None
            if token is not None:
                current_scope.reset(token)
            assert len(scope) >= n, "hops were not recorded"
            if recorded:
                # The hops this case timed (a case may make others around them).
                timed = [h.wall_ns for h in scope.hops() if h.cause.site.endswith("noop")]
                last_recorded_ns = sum(timed) / len(timed) if timed else 0.0
    hopwatch.uninstall()
    _settle()
    return case.run(n)


def _settle() -> None:
    """Start the hops with the collector's youngest generation empty.

    Otherwise whatever the set-up left there (``install()`` imports modules) is
    walked by the first young collection inside the run, and a run of N hops may
    hold one such collection more or less than a run of M: about 1,000,000
    instructions, a thousand per hop in the marginal, that are no hop's cost.
    """
    gc.collect()


@dataclass
class Result:
    name: str
    bare_us: float
    patched_us: float
    bare_cpu_us: float
    patched_cpu_us: float
    #: What hopwatch recorded as the hop's wall time (resumed - called), median
    #: of per-round means.
    recorded_us: float
    #: Median over rounds of the patched round's wall time to the bare one's
    #: next to it, and the 95% interval of that median.
    ratio: float
    ratio_low: float
    ratio_high: float
    #: The same for what hopwatch recorded against the bare round's wall time:
    #: whether the recorded time is the hop's own or includes hopwatch's work.
    truth: float
    truth_low: float
    truth_high: float
    #: Every round's raw figures, in ns (bare and patched wall and CPU time per
    #: hop, what hopwatch recorded per hop), in the order they ran: the interval
    #: above resamples these rounds, so it says how sure one run is of its median,
    #: not how far another run lands (the spread between runs is wider).
    rounds: dict[str, list[float]] = field(default_factory=dict)

    @property
    def added_us(self) -> float:
        return self.patched_us - self.bare_us


def cpu_added_pct(row: Result | dict[str, Any]) -> float:
    """What hopwatch adds to a hop in CPU time, in % of the bare hop's CPU time
    (patched CPU / bare CPU - 1), for ``python -m bench.hops``' table and the
    full report's alike; 0 when the bare hop took no measurable CPU."""
    values = asdict(row) if isinstance(row, Result) else row
    bare, patched = values["bare_cpu_us"], values["patched_cpu_us"]
    return (patched / bare - 1) * 100 if bare else 0.0


def run(rounds: int = 120, per_round: int = 200) -> list[Result]:
    results = []
    for case in CASES:
        n = max(10, int(per_round * case.scale))
        _measure(case, False, n)  # warm up threads and caches
        _measure(case, True, n)
        bare: list[tuple[float, float]] = []
        patched: list[tuple[float, float]] = []
        recorded: list[float] = []
        for i in range(rounds):
            # Alternate which goes first, so drift favours neither.
            order = (False, True) if i % 2 == 0 else (True, False)
            for is_patched in order:
                (patched if is_patched else bare).append(_measure(case, is_patched, n))
                if is_patched:
                    recorded.append(last_recorded_ns)
        # Round i's bare and patched runs are next to each other in time.
        ratios = [p / b for (p, _), (b, _) in zip(patched, bare, strict=True)]
        truths = [r / b for r, (b, _) in zip(recorded, bare, strict=True)]
        results.append(
            Result(
                case.name,
                statistics.median(w for w, _ in bare) / 1000,
                statistics.median(w for w, _ in patched) / 1000,
                statistics.median(c for _, c in bare) / 1000,
                statistics.median(c for _, c in patched) / 1000,
                statistics.median(recorded) / 1000,
                statistics.median(ratios),
                *median_interval(ratios),
                statistics.median(truths),
                *median_interval(truths),
                {
                    "bare_wall_ns": [w for w, _ in bare],
                    "patched_wall_ns": [w for w, _ in patched],
                    "bare_cpu_ns": [c for _, c in bare],
                    "patched_cpu_ns": [c for _, c in patched],
                    "recorded_ns": recorded,
                },
            )
        )
    hopwatch.uninstall()
    return results


def format_table(results: list[Result]) -> str:
    lines = [
        "| hop | bare µs | with hopwatch µs | added µs (wall) | added % (wall)"
        " | added µs (CPU) | added % (CPU) | recorded µs | recorded / bare |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cpu_added = r.patched_cpu_us - r.bare_cpu_us
        lines.append(
            f"| {r.name} | {r.bare_us:.1f} | {r.patched_us:.1f} | {r.added_us:+.1f}"
            f" | {(r.ratio - 1) * 100:+.1f}% [{(r.ratio_low - 1) * 100:+.1f} to"
            f" {(r.ratio_high - 1) * 100:+.1f}] | {cpu_added:+.1f}"
            f" | {cpu_added_pct(r):+.1f}%"
            f" | {r.recorded_us:.1f} | {r.truth:.3f} [{r.truth_low:.3f}-{r.truth_high:.3f}] |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=120)
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    from bench import hop_path  # (not at the top: the instruction counts' workers import this)

    path = hop_path.check()  # stops here if the hop path is not the one asked for
    results = run(args.rounds, args.per_round)
    if args.json:
        rows = [{**asdict(r), "hop_path": path} for r in results]
        args.json.write_text(json.dumps(rows, indent=1))
    print(f"hopwatch's hop path: {hop_path.NAMES[path]}")
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
