"""One request's crossings laid out in time: lanes (one per thread) and bars.

Both the HTML page and the Chrome trace draw this layout, so they show the same thing.

* A **lane** is an OS thread that took part: the thread that opened the request
  (the event loop under ASGI, the worker thread under WSGI), the request's
  thread-sensitive sync thread, pool threads, event loops made for a cold
  ``async_to_sync``. A lane is named by what it did for the request.
* A **bar** is one crossing, drawn on the lane of the thread that ran its code,
  from its call to its resume: queued (``wait_ms``), running (``run_ms``), handing
  back (``resume_ms``). A crossing nested in another runs inside the other's run:
  on the same thread it sits below it, on another thread the connector from its
  caller's lane shows where it was called from.
* Bars that overlap on one lane (a crossing queued behind another on the same
  thread, a crossing nested in another on the same thread) go on separate rows of
  the lane, the earlier call on top.

Times come rounded to the microsecond, each on its own; a nested crossing is
clamped into its parent's run so that rounding never draws it outside.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from hopwatch.report.picture import Crossing, Kept

SYNC_TO_ASYNC: Final = "sync_to_async"
#: Interfaces whose requests are opened on an event loop.
ASYNC_INTERFACES: Final = frozenset({"asgi", "test-async-client"})
#: Times (ms) closer than this are one: a bar may start where the one before it ends.
TOUCHING: Final = 1e-9
#: The narrowest axis (ms): a request with no measurable time still gets one.
MIN_SPAN_MS: Final = 0.001


@dataclass
class Bar:
    index: int  # in the request's detail
    crossing: Crossing
    call: float  # ms from the request's start
    start: float
    end: float
    resume: float
    lane: int = 0
    row: int = 0
    caller_lane: int | None = None  # None: the caller's thread is not known (older lines)

    @property
    def wait(self) -> float:
        return self.start - self.call

    @property
    def run(self) -> float:
        return self.end - self.start

    @property
    def handoff(self) -> float:
        return self.resume - self.end


@dataclass
class Lane:
    thread: int  # OS thread id (0: crossings that never ran)
    name: str  # what the thread was to the request: "event loop", "pool thread 2", ...
    rows: int = 1

    @property
    def detail(self) -> str:
        return f"thread {self.thread}" if self.thread else ""


@dataclass
class Timeline:
    kept: Kept
    lanes: list[Lane]
    bars: list[Bar]
    span_ms: float  # the x axis: the request's duration, or the last resume if later
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(lane.rows for lane in self.lanes)


def _role(crossing: Crossing) -> str:
    if crossing.direction == SYNC_TO_ASYNC:
        if crossing.thread_sensitive is False:
            return "pool thread"
        return "sync thread"
    return "new event loop" if crossing.new_loop else "event loop"


def _geometry(crossings: list[Crossing]) -> list[Bar]:
    bars = []
    for index, crossing in enumerate(crossings):
        call = crossing.at_ms or 0.0
        start = call + crossing.wait_ms
        end = start + crossing.run_ms
        bars.append(Bar(index, crossing, call, start, end, end + crossing.resume_ms))
    # parents before children (a parent has a smaller depth), so a clamped parent
    # clamps its children in turn
    for bar in sorted(bars, key=lambda b: b.crossing.depth):
        parent_index = bar.crossing.parent
        if parent_index is None or not 0 <= parent_index < len(bars):
            continue
        parent = bars[parent_index]
        low, high = parent.start, parent.end
        bar.call = min(max(bar.call, low), high)
        bar.start = min(max(bar.start, bar.call), high)
        bar.end = min(max(bar.end, bar.start), high)
        bar.resume = min(max(bar.resume, bar.end), high)
    return bars


def _lanes(kept: Kept, bars: list[Bar]) -> tuple[list[Lane], dict[int, int]]:
    """The lanes, the request's own thread first, then by first call; thread -> lane."""
    handler: int | None = None
    for bar in bars:  # the thread that called the outermost crossings
        if bar.crossing.depth == 1 and bar.crossing.caller_thread is not None:
            handler = bar.crossing.caller_thread
            break
    lanes: list[Lane] = []
    index: dict[int, int] = {}
    if handler is not None:
        own = "event loop" if kept.interface in ASYNC_INTERFACES else "request thread"
        index[handler] = 0
        lanes.append(Lane(handler, own))
    for bar in sorted(bars, key=lambda b: (b.call, b.index)):
        thread = bar.crossing.thread
        if thread not in index:
            index[thread] = len(lanes)
            lanes.append(Lane(thread, _role(bar.crossing) if thread else "never ran"))
    for bar in bars:  # a caller whose own crossing is not listed (DETAIL_LIMIT)
        caller = bar.crossing.caller_thread
        if caller is not None and caller not in index:
            index[caller] = len(lanes)
            lanes.append(Lane(caller, "caller"))
    named = lanes[1 if handler is not None else 0 :]
    totals = Counter(lane.name for lane in named)
    seen: Counter[str] = Counter()
    for lane in named:
        if totals[lane.name] > 1:  # pool thread 1, pool thread 2, ...
            seen[lane.name] += 1
            lane.name = f"{lane.name} {seen[lane.name]}"
    return lanes, index


def _pack(bars: list[Bar], lanes: list[Lane]) -> None:
    """Rows within each lane: first fit, earlier calls (and outer crossings) first."""
    ends: dict[int, list[float]] = {}
    order = sorted(bars, key=lambda b: (b.call, b.crossing.depth, b.start, -b.resume, b.index))
    for bar in order:
        rows = ends.setdefault(bar.lane, [])
        for row, end in enumerate(rows):
            if end <= bar.call + TOUCHING and not _inside_any(bar, bars, bar.lane, row):
                bar.row = row
                rows[row] = bar.resume
                break
        else:
            bar.row = len(rows)
            rows.append(bar.resume)
    for lane_index, rows in ends.items():
        lanes[lane_index].rows = max(1, len(rows))


def _inside_any(bar: Bar, bars: list[Bar], lane: int, row: int) -> bool:
    """Whether a crossing that encloses ``bar`` sits on ``row`` of ``lane`` below it
    (a nested crossing is never drawn above its parent on one lane)."""
    parent_index = bar.crossing.parent
    while parent_index is not None and 0 <= parent_index < len(bars):
        parent = bars[parent_index]
        if parent.lane == lane and parent.row >= row:
            return True
        parent_index = parent.crossing.parent
    return False


def layout(kept: Kept) -> Timeline:
    """The timeline of a kept request."""
    crossings = kept.decode()
    bars = _geometry(crossings)
    lanes, lane_of = _lanes(kept, bars)
    for bar in bars:
        bar.lane = lane_of[bar.crossing.thread]
        caller = bar.crossing.caller_thread
        if caller is not None:
            bar.caller_lane = lane_of[caller]
    _pack(bars, lanes)
    span = max([kept.duration_ms, *(bar.resume for bar in bars)])
    notes = []
    if kept.crossings_total > len(crossings):
        notes.append(
            f"the first {len(crossings):,} of the {kept.crossings_total:,} crossings"
            " in the line's detail are drawn"
        )
    if kept.detail_dropped:
        notes.append(
            f"{kept.detail_dropped:,} more crossings were not listed in the line"
            " (DETAIL_LIMIT); its counts include them"
        )
    return Timeline(kept, lanes, bars, max(span, MIN_SPAN_MS), notes)
