"""``--format trace``: the page's timelines as Chrome trace events (JSON).

Opens in ui.perfetto.dev, chrome://tracing (and Perfetto's offline builds) and
speedscope. The same layout as the page (:mod:`~hopwatch.report.timeline`):
each request is a process, each lane (one OS thread) is drawn as one track per
row of the lane, named after the thread, so that no two slices on a track
overlap and nested ones sit inside their parent, which every viewer requires.

Per crossing: one complete event (``"ph": "X"``, category ``hopwatch.crossing``)
from its call to its resume, on the lane of the thread that ran its code, with
its cause and times in ``args``; inside it, its parts as complete events of
category ``hopwatch.part``: ``queued``, ``running`` and ``handing back``. One
more complete event (``hopwatch.request``) spans the request. Times are
microseconds from the request's start.
"""

from __future__ import annotations

import json
from typing import IO, Any, Final

from hopwatch.report import text as fmt
from hopwatch.report.picture import Kept
from hopwatch.report.timeline import Bar, Timeline, layout

#: Track ids: lane * TRACKS_PER_LANE + row (a lane never has this many rows).
TRACKS_PER_LANE: Final = 10_000
#: Parts shorter than this (µs) are left out: viewers draw nothing for them anyway.
MIN_PART_US: Final = 0.5


def _us(ms: float) -> float:
    return round(ms * 1000, 3)


def _name(bar: Bar) -> str:
    c = bar.crossing
    return fmt.clean(f"{c.kind} {fmt.short_site(c.site, c.call_site)}")


def _args(bar: Bar, kept: Kept) -> dict[str, Any]:
    c = bar.crossing
    return {
        "direction": fmt.clean(c.direction),
        "kind": fmt.clean(c.kind),
        "site": fmt.clean(c.site),
        "call_site": fmt.clean(c.call_site) if c.call_site else None,
        "depth": c.depth,
        "thread": c.thread,
        "thread_sensitive": c.thread_sensitive,
        "new_loop": c.new_loop,
        "outcome": fmt.clean(c.outcome),
        "at_ms": c.at_ms,
        "wait_ms": c.wait_ms,
        "run_ms": c.run_ms,
        "resume_ms": c.resume_ms,
        "overhead_ms": round(c.wait_ms + c.resume_ms, 3),
        "index": bar.index,
        "parent": c.parent,
        "request_id": fmt.clean(kept.request_id),
    }


def timeline_events(timeline: Timeline, pid: int) -> list[dict[str, Any]]:
    """The events of one request's timeline, as process ``pid``."""
    kept = timeline.kept
    label = fmt.clean(f"{kept.label()} (request {kept.request_id})")
    events: list[dict[str, Any]] = [
        {"ph": "M", "pid": pid, "tid": 0, "name": "process_name", "args": {"name": label}},
        {"ph": "M", "pid": pid, "tid": 0, "name": "process_sort_index",
         "args": {"sort_index": pid}},
    ]  # fmt: skip
    for index, lane in enumerate(timeline.lanes):
        for row in range(lane.rows):
            tid = index * TRACKS_PER_LANE + row + 1
            name = lane.name if row == 0 else f"{lane.name} ({row + 1})"
            if lane.thread:
                name += f" · thread {lane.thread}"
            events.append(
                {"ph": "M", "pid": pid, "tid": tid, "name": "thread_name",
                 "args": {"name": fmt.clean(name)}}
            )  # fmt: skip
            events.append(
                {"ph": "M", "pid": pid, "tid": tid, "name": "thread_sort_index",
                 "args": {"sort_index": tid}}
            )  # fmt: skip
    events.append(
        {
            "ph": "X",
            "pid": pid,
            "tid": 0,
            "ts": 0,
            "dur": _us(kept.duration_ms),
            "name": label,
            "cat": "hopwatch.request",
            "args": {
                "request_id": fmt.clean(kept.request_id),
                "status": kept.status,
                "interface": fmt.clean(kept.interface),
                "hops": kept.hops,
                "duration_ms": kept.duration_ms,
                "hop_ms": kept.hop_ms,
                "overhead_ms": kept.overhead_ms,
                "work_ms": kept.work_ms,
                "pinned_ms": kept.pinned_ms,
                "detail_dropped": kept.detail_dropped,
            },
        }
    )
    events.append({"ph": "M", "pid": pid, "tid": 0, "name": "thread_name",
                   "args": {"name": "request"}})  # fmt: skip
    for bar in sorted(timeline.bars, key=lambda b: (b.call, b.crossing.depth, b.index)):
        tid = bar.lane * TRACKS_PER_LANE + bar.row + 1
        call, start, end, resume = (_us(t) for t in (bar.call, bar.start, bar.end, bar.resume))
        events.append(
            {
                "ph": "X",
                "pid": pid,
                "tid": tid,
                "ts": call,
                "dur": round(resume - call, 3),
                "name": _name(bar),
                "cat": f"hopwatch.crossing,{fmt.clean(bar.crossing.direction)}",
                "args": _args(bar, kept),
            }
        )
        for part, low, high in (("queued", call, start), ("running", start, end),
                                ("handing back", end, resume)):  # fmt: skip
            if high - low >= MIN_PART_US:
                events.append(
                    {"ph": "X", "pid": pid, "tid": tid, "ts": low,
                     "dur": round(high - low, 3), "name": part, "cat": "hopwatch.part"}
                )  # fmt: skip
    return events


def render_trace(kepts: list[Kept], out: IO[str]) -> None:
    """One trace with each of ``kepts`` as a process."""
    events: list[dict[str, Any]] = []
    for pid, kept in enumerate(kepts, 1):
        events.extend(timeline_events(layout(kept), pid))
    document = {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"generator": "hopwatch report --format trace", "requests": len(kepts)},
    }
    # ensure_ascii: log content reaches a terminal only as \u escapes
    json.dump(document, out, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    out.write("\n")
