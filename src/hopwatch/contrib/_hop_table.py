"""One request's hops as plain data: rows, a summary, and causes grouped with their advice.

Two pure steps, so a panel can store the first and render the second later
(django-debug-toolbar keeps panel data as JSON between the request and the
click that shows it):

* :func:`capture`: a :class:`~hopwatch.RequestRecord` to a dict of strings,
  numbers, booleans and lists (no live :class:`~hopwatch.Hop`), durations in
  nanoseconds;
* :func:`display`: that dict to what a template prints (milliseconds as
  strings, causes grouped under the advice of :mod:`hopwatch._advice`), every name
  that came from the application (route, view, request id, sites, call sites, ...)
  cleaned as ``hopwatch report`` cleans log content (:func:`hopwatch.report.text.clean`:
  control, bidi and invisible characters become visible escapes such as ``\\x1b``);
  the template's autoescaping then takes care of HTML.

Figures and their names (as in the log line): a hop's **wait** is its queue
wait before the code ran on the other side, **run** the code's own time there,
**hand-off** the time from the code finishing until the caller resumed. Its
**overhead** (the crossing's own cost) is wait + hand-off. **Work in hops** is
the run time of the request's outermost hops minus the overhead of the hops
nested in them, so overhead + work is the outermost hops' wall time and nothing
is counted twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from hopwatch import _advice
from hopwatch._emit import (
    LINE_FAILED,
    LINE_MIN_HOP_MS,
    LINE_MIN_HOPS,
    LINE_SAMPLED_OUT,
    LINE_WRITTEN,
)
from hopwatch._recorder import ASYNC_TO_SYNC, SYNC_TO_ASYNC, Hop, RequestRecord
from hopwatch.report.text import clean
from hopwatch.schema import SYNC_INTERFACES

#: Bumped when the captured dict changes shape (stored data of an older shape is shown as gone).
SCHEMA: Final = 2

#: What the panel says when hopwatch wrote no line for the request (RequestRecord.line).
NO_LINE: Final = {
    LINE_MIN_HOPS: 'No log line was written for it: it made fewer hops than HOPWATCH["MIN_HOPS"].',
    LINE_MIN_HOP_MS: (
        "No log line was written for it: its hops took less time in all"
        ' than HOPWATCH["MIN_HOP_MS"].'
    ),
    LINE_SAMPLED_OUT: 'No log line was written for it: HOPWATCH["SAMPLE_RATE"] left it out.',
    LINE_FAILED: "Writing its log line failed: the line may be missing from your log.",
    None: "Whether hopwatch wrote a log line for it is not known.",
}  # (and LINE_WRITTEN: "Its log line, as handed to HOPWATCH["OUTPUT"], counts", in the template)

HANDLER_THREAD: Final = "handler"

#: What the panel and its sidebar say for stored data of another SCHEMA (the toolbar's
#: database or cache store keeps requests across an upgrade or a downgrade of hopwatch).
ANOTHER_VERSION: Final = "This panel's data is from another hopwatch version."
ANOTHER_VERSION_SUBTITLE: Final = "from another hopwatch version"


def capture(
    record: RequestRecord,
    *,
    made_by_tool: Callable[[Hop], bool] = lambda hop: False,
    kept_at_render: int | None = None,
    nested: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """The record's hops as plain data.

    ``made_by_tool(hop)`` picks hops a debugging tool made itself: they are
    listed apart (``tool_rows``) and left out of the rows and the summary.
    ``kept_at_render``: how many hops the record held when the tool drew its
    summary; later hops are flagged ``after_render``. ``nested``: ``id(hop)`` to the
    request served inside this one that made it (a row's ``nested``, else None).
    """
    hops = record.hops()  # in the order they finished
    rendered = len(hops) if kept_at_render is None else kept_at_render
    after = {id(hop) for hop in hops[rendered:]}
    ordered = sorted(hops, key=lambda hop: hop.called_ns)  # stable: ties keep finish order
    threads = _thread_labels(record, ordered)
    # The request's outermost crossings have this depth (1, unless the request itself
    # was served inside a crossing, as by an AsyncClient called through async_to_sync).
    base = min((hop.depth for hop in hops), default=1)
    tool_ids = _tool_hops(hops, made_by_tool)
    shown = [hop for hop in ordered if id(hop) not in tool_ids]
    tools = [hop for hop in ordered if id(hop) in tool_ids]
    return {
        "schema": SCHEMA,
        "recorded": True,
        "complete": record.closed,
        "request_id": record.request_id,
        "method": record.method,
        "route": record.route,
        "view": record.view,
        "status": record.status,
        "interface": record.interface,
        # The hops counted so far (all of them once complete: the line's count), and
        # what became of the line (None: not known, or not yet: the request still runs).
        "line_hops": record.count,
        "line": getattr(record, "line", None),
        "dropped": record.detail_dropped,
        "rows": [_row(hop, base, threads, id(hop) in after, nested) for hop in shown],
        "tool_rows": [_row(hop, base, threads, id(hop) in after, nested) for hop in tools],
        "summary": _summary(shown, base, record),
    }


def not_recorded(reason: str) -> dict[str, Any]:
    """What a panel stores when hopwatch recorded nothing for the request."""
    return {"schema": SCHEMA, "recorded": False, "reason": reason}


def _tool_hops(hops: list[Hop], made_by_tool: Callable[[Hop], bool]) -> set[int]:
    """Ids of the hops the tool made, and of the hops made inside those.

    Inside: deeper, and within the tool hop's time. A tool makes its crossings
    before or after the request's own code runs, so nothing else of the
    request is in flight then to be taken for one of them.
    """
    made = [hop for hop in hops if made_by_tool(hop)]
    ids = {id(hop) for hop in made}
    for hop in hops:
        if id(hop) in ids:
            continue
        for tool in made:
            inside = tool.called_ns <= hop.called_ns and hop.resumed_ns <= tool.resumed_ns
            if inside and hop.depth > tool.depth:
                ids.add(id(hop))
                break
    return ids


def _thread_labels(record: RequestRecord, hops: Iterable[Hop]) -> dict[int, str]:
    """OS thread ids as short names: the request handler's thread, then 1, 2, ... by first use."""
    labels = {record.handler_thread_id: HANDLER_THREAD}
    for hop in hops:
        if hop.thread_id and hop.thread_id not in labels:
            labels[hop.thread_id] = str(len(labels))
    return labels


def _row(
    hop: Hop,
    base: int,
    threads: dict[int, str],
    after_render: bool,
    nested: Mapping[int, str] | None,
) -> dict[str, Any]:
    cause = hop.cause
    return {
        "direction": hop.direction,
        "kind": cause.kind,
        "site": cause.site,
        "call_site": cause.call_site,
        "wait_ns": hop.wait_ns,
        "run_ns": hop.run_ns,
        "resume_ns": hop.resume_ns,
        "wall_ns": hop.wall_ns,
        "thread": threads.get(hop.thread_id) if hop.thread_id else None,
        # Within the request: 1 for a crossing its own code made directly.
        "depth": hop.depth - base + 1,
        "new_loop": hop.new_loop,
        "outcome": hop.outcome,
        "after_render": after_render,
        # The request served inside this one that made the hop ("GET /page/"), else None.
        "nested": nested.get(id(hop)) if nested else None,
    }


def _summary(hops: list[Hop], base: int, record: RequestRecord) -> dict[str, Any]:
    overhead = wait = resume = work = 0
    used_threads = {record.handler_thread_id}
    for hop in hops:
        overhead += hop.overhead_ns
        wait += hop.wait_ns
        resume += hop.resume_ns
        if hop.depth == base:
            # Work is the outermost hops' own (as the line's): only those listed.
            # Past the record's limit an outermost hop (it finishes last) may not be
            # kept while hops nested in it are: their time is in no work listed here.
            work += hop.work_ns
        if hop.thread_id:
            used_threads.add(hop.thread_id)
    return {
        "hops": len(hops),
        "sync_to_async": sum(1 for hop in hops if hop.direction == SYNC_TO_ASYNC),
        "async_to_sync": sum(1 for hop in hops if hop.direction == ASYNC_TO_SYNC),
        "overhead_ns": overhead,
        "wait_ns": wait,
        "resume_ns": resume,
        "work_ns": work,
        # The line's pinned_ms: a sync worker thread held while async work ran (the
        # toolbar's own crossings hold none).
        "pinned_ns": record.pinned_ns,
        "threads": len(used_threads),
        "new_loops": sum(1 for hop in hops if hop.new_loop),
        "max_depth": max((hop.depth - base + 1 for hop in hops), default=0),
    }


# --- display -----------------------------------------------------------------------


def ms(ns: int) -> str:
    """Nanoseconds as milliseconds with three decimals, as the log line writes them."""
    return f"{ns / 1_000_000:.3f}"


def subtitle(stats: dict[str, Any]) -> str:
    """One short line: the hop count and the crossing overhead."""
    if stats and stats.get("schema") != SCHEMA:  # kept by the toolbar's store across versions
        return ANOTHER_VERSION_SUBTITLE
    if not stats.get("recorded"):
        return "not recorded"
    summary = stats["summary"]
    count = summary["hops"]
    so_far = "" if stats["complete"] else " so far"
    overhead = summary["overhead_ns"] / 1_000_000
    if stats["dropped"]:  # past the record's limit: counted, not kept one by one
        total = count + stats["dropped"]
        return f"{total} hops{so_far}, {count} listed: {overhead:.2f} ms overhead"
    noun = "hop" if count == 1 else "hops"
    return f"{count} {noun}{so_far}, {overhead:.2f} ms overhead"


def display(stats: dict[str, Any]) -> dict[str, Any]:
    """The template context for captured ``stats``."""
    if stats.get("schema") != SCHEMA:
        return {"recorded": False, "reason": ANOTHER_VERSION}
    if not stats["recorded"]:
        return {"recorded": False, "reason": stats["reason"]}
    summary = stats["summary"]
    rows = [_display_row(i, row) for i, row in enumerate(stats["rows"], 1)]
    tool_rows = [_display_row(i, row) for i, row in enumerate(stats["tool_rows"], 1)]
    return {
        "recorded": True,
        "complete": stats["complete"],
        "request": {
            "request_id": _name(stats["request_id"]),
            "method": _name(stats["method"]),
            "route": _name(stats["route"]),
            "view": _name(stats["view"]),
            "status": stats["status"],
            "interface": _name(stats["interface"]),
        },
        "summary": {
            **summary,
            "overhead_ms": ms(summary["overhead_ns"]),
            "wait_ms": ms(summary["wait_ns"]),
            "resume_ms": ms(summary["resume_ns"]),
            "work_ms": ms(summary["work_ns"]),
            "pinned_ms": ms(summary["pinned_ns"]),
        },
        "line_hops": stats["line_hops"],
        "line_written": stats["line"] == LINE_WRITTEN,
        "no_line": NO_LINE.get(stats["line"], NO_LINE[None]),
        "dropped": stats["dropped"],
        "rows": rows,
        "tool_rows": tool_rows,
        "after_render": sum(1 for row in stats["rows"] if row["after_render"]),
        "nested": _nested_counts(stats["rows"]),
        "groups": _groups(stats["rows"], sync_handler=stats["interface"] in SYNC_INTERFACES),
    }


#: The names of a row or a cause that came from the application (or its log line).
_NAMES: Final = ("direction", "kind", "site", "call_site", "outcome", "nested")


def _nested_counts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The requests served inside this one, each with its rows' count, in row order."""
    counts: dict[str, int] = {}
    for row in rows:
        if row["nested"] is not None:
            counts[row["nested"]] = counts.get(row["nested"], 0) + 1
    return [{"request": _name(name), "count": count} for name, count in counts.items()]


def _name(value: Any) -> Any:
    """A name as ``hopwatch report`` prints it (text.clean); None (no name) stays None."""
    return None if value is None else clean(value)


def _display_row(number: int, row: dict[str, Any]) -> dict[str, Any]:
    return {
        **row,
        **{key: _name(row[key]) for key in _NAMES},
        "number": number,
        "wait_ms": ms(row["wait_ns"]),
        "run_ms": ms(row["run_ns"]),
        "resume_ms": ms(row["resume_ns"]),
        "overhead_ms": ms(row["wait_ns"] + row["resume_ns"]),
    }


def _groups(rows: list[dict[str, Any]], *, sync_handler: bool) -> list[dict[str, Any]]:
    """Rows grouped by cause, and causes by their advice (``sync_handler``: the request's
    handler ran sync, WSGI or the sync test Client); largest crossing time first."""
    causes: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = (row["kind"], row["site"], row["call_site"], row["direction"])
        cause = causes.get(key)
        if cause is None:
            cause = causes[key] = {
                "kind": row["kind"],
                "site": row["site"],
                "call_site": row["call_site"],
                "direction": row["direction"],
                "count": 0,
                "wall_ns": 0,
                "overhead_ns": 0,
            }
        cause["count"] += 1
        cause["wall_ns"] += row["wall_ns"]
        cause["overhead_ns"] += row["wait_ns"] + row["resume_ns"]
    groups: dict[str, dict[str, Any]] = {}
    for cause in causes.values():
        advice = _advice.advice_for(
            cause["kind"],
            cause["site"],
            cause["direction"],
            sync_handler=sync_handler,
            call_site=cause["call_site"],
        )
        group = groups.get(advice.key)
        if group is None:
            group = groups[advice.key] = {
                "key": advice.key,
                "title": advice.title,
                "advice": _advice.code_spans(advice.summary),
                "count": 0,
                "wall_ns": 0,
                "overhead_ns": 0,
                "causes": [],
            }
        group["count"] += cause["count"]
        group["wall_ns"] += cause["wall_ns"]
        group["overhead_ns"] += cause["overhead_ns"]
        group["causes"].append(cause)
    ordered = sorted(groups.values(), key=lambda g: (-g["wall_ns"], -g["count"], g["key"]))
    for group in ordered:
        group["causes"].sort(key=lambda c: (-c["wall_ns"], -c["count"], c["site"]))
        for cause in group["causes"]:
            cause["wall_ms"] = ms(cause["wall_ns"])
            cause["overhead_ms"] = ms(cause["overhead_ns"])
            for name in ("kind", "site", "call_site", "direction"):  # grouped, advised: raw
                cause[name] = _name(cause[name])
        group["wall_ms"] = ms(group["wall_ns"])
        group["overhead_ms"] = ms(group["overhead_ns"])
    return ordered
