"""The report's threads sections: concurrency and connections per endpoint, pool saturation.

Kept apart from the main table: the request lines' thread fields
(``max_in_flight``, ``concurrent_ms``, ``db_connections``, accumulated per
endpoint in ``EndpointStats.concurrency``) and the ``hopwatch.process`` lines
(:class:`PoolSeries`, by minute) become two small tables under it, in every
format (``concurrency`` per row and ``pool_over_time`` in the JSON document).
"""

from __future__ import annotations

from typing import IO, Any, Final

import msgspec
from msgspec import Struct

from hopwatch.report import parse
from hopwatch.report import text as fmt
from hopwatch.report.table import truncate_middle

#: Minutes kept (a week); later minutes past it are dropped and counted.
MINUTES_CAP: Final = 7 * 24 * 60
#: Rows of the saturation table in the text formats (the busiest minutes are merged
#: into coarser steps to fit; the JSON document has every minute).
ROWS_SHOWN: Final = 24


class _Pool(Struct, gc=False):
    max_workers: int | None = None
    asgi_threads_applied: bool | None = None


class ProcessRecord(Struct, gc=False):
    """The fields of a ``hopwatch.process`` line the report reads."""

    event: str
    timestamp: parse.Timestamp
    pid: int = 0
    process_id: str | None = None  # lines of older versions have none
    threads_alive: int = 0
    requests: int = 0
    pool_crossings: int = 0
    pool_queue_max: int | None = 0  # null: the pool's size could not be read
    pool_busy_max: int | None = 0
    pool_wait_p95_ms: float = 0.0
    pool_wait_max_ms: float = 0.0
    contexts_max: int = 0
    default_pool: _Pool | None = None


_decode: Final = msgspec.json.Decoder(ProcessRecord).decode
_ERRORS: Final = (msgspec.ValidationError, msgspec.DecodeError, RecursionError)
#: The process line's event (docs/log-schema.md).
EVENT: Final = "hopwatch.process"

# Per minute: [lines, processes (a set of process ids, and of (input, pid) for lines
# without one), requests, pool crossings, queue max,
# busy max, busiest busy / max_workers, wait p95 max, wait max, contexts max, threads alive max];
# the queue, busy and the share are None while no line of the minute could tell them.
_LINES, _PIDS, _REQUESTS, _CROSSINGS, _QUEUE, _BUSY, _FULL, _P95, _WAIT, _CONTEXTS, _THREADS = (
    range(11)
)


class PoolSeries:
    """``hopwatch.process`` lines folded by minute (mergeable, bounded)."""

    def __init__(self) -> None:
        self.minutes: dict[str, list[Any]] = {}
        self.lines = 0
        self.invalid = 0
        self.dropped = 0
        self.not_applied = 0  # lines whose ASGI_THREADS was set but not applied

    def add_line(self, line: bytes, filters: Any = None, source: str = "") -> None:
        """One line with the process event's marker; ``source``: the input it came from."""
        start = line.find(b"{")
        try:
            record = _decode(line[start:] if start > 0 else line)
        except _ERRORS:
            record = None
        if record is None or record.event != EVENT:
            # in a log shipper's envelope, or rendered again by structlog: unwrapped as
            # the request lines are
            inner = parse.wrapped_line(line, EVENT)
            if inner is not None:
                try:
                    record = _decode(inner)
                except _ERRORS:
                    record = None
            if record is None:
                self.invalid += 1
                return
            if record.event != EVENT:
                return
        moment = parse.to_utc(record.timestamp)
        if moment is None:
            self.invalid += 1
            return
        stamp = parse.timestamp_text(moment)
        if filters is not None and filters.reject_reason(stamp, 200, "asgi") == "time":
            return
        self.add(stamp[:16], record, source)

    def add(self, minute: str, record: ProcessRecord, source: str = "") -> None:
        """``source``: the input the line came from. A line names its process by its
        ``process_id``, whatever input it is in (one process's lines in two files, a log
        rotated in the minute, count once; containers each running as pid 1 in one
        stream count apart). A line of an older version has none: its process is told
        by its pid within its input (docs/report.md)."""
        self.lines += 1
        entry = self.minutes.get(minute)
        if entry is None:
            if len(self.minutes) >= MINUTES_CAP:
                self.dropped += 1
                return
            entry = self.minutes[minute] = _new_entry()
        pool = record.default_pool
        full = None
        if pool is not None:
            # The interval's busiest (pool_busy_max), as the busy column shows: the
            # pool's state when the line was written is no part of it.
            if pool.max_workers and record.pool_busy_max is not None:
                full = record.pool_busy_max / pool.max_workers
            if pool.asgi_threads_applied is False:
                self.not_applied += 1
        entry[_LINES] += 1
        # a str never equals a tuple: an id and an (input, pid) are never one process
        entry[_PIDS].add(record.process_id or (source, record.pid))
        entry[_REQUESTS] += record.requests
        entry[_CROSSINGS] += record.pool_crossings
        entry[_QUEUE] = _max_known(entry[_QUEUE], record.pool_queue_max)
        entry[_BUSY] = _max_known(entry[_BUSY], record.pool_busy_max)
        entry[_FULL] = _max_known(entry[_FULL], full)
        entry[_P95] = max(entry[_P95], record.pool_wait_p95_ms)
        entry[_WAIT] = max(entry[_WAIT], record.pool_wait_max_ms)
        entry[_CONTEXTS] = max(entry[_CONTEXTS], record.contexts_max)
        entry[_THREADS] = max(entry[_THREADS], record.threads_alive)

    def merge(self, other: PoolSeries) -> None:
        self.lines += other.lines
        self.invalid += other.invalid
        self.dropped += other.dropped
        self.not_applied += other.not_applied
        for minute, theirs in other.minutes.items():
            mine = self.minutes.get(minute)
            if mine is None:
                if len(self.minutes) >= MINUTES_CAP:
                    self.dropped += theirs[_LINES]
                    continue
                mine = self.minutes[minute] = _new_entry()
            _fold(mine, theirs)


def _new_entry() -> list[Any]:
    return [0, set(), 0, 0, None, None, None, 0.0, 0.0, 0, 0]


def _max_known(mine: Any, theirs: Any) -> Any:
    """The larger of two figures, either of which may be unknown (None)."""
    if mine is None:
        return theirs
    return mine if theirs is None else max(mine, theirs)


def _fold(mine: list[Any], theirs: list[Any]) -> None:
    for index in (_LINES, _REQUESTS, _CROSSINGS):
        mine[index] += theirs[index]
    mine[_PIDS] |= theirs[_PIDS]
    for index in (_P95, _WAIT, _CONTEXTS, _THREADS):
        mine[index] = max(mine[index], theirs[index])
    for index in (_QUEUE, _BUSY, _FULL):
        mine[index] = _max_known(mine[index], theirs[index])


def _row(minute: str, entry: list[Any]) -> dict[str, Any]:
    return {
        "minute": minute,
        "lines": entry[_LINES],
        "processes": len(entry[_PIDS]),
        "requests": entry[_REQUESTS],
        "pool_crossings": entry[_CROSSINGS],
        "pool_queue_max": entry[_QUEUE],
        "pool_busy_max": entry[_BUSY],
        "pool_busy_share_max": None if entry[_FULL] is None else round(entry[_FULL], 3),
        "pool_wait_p95_ms_max": round(entry[_P95], 3),
        "pool_wait_max_ms": round(entry[_WAIT], 3),
        "contexts_max": entry[_CONTEXTS],
        "threads_alive_max": entry[_THREADS],
    }


def pool_document(series: PoolSeries | None) -> dict[str, Any] | None:
    """The ``pool_over_time`` part of the report document (None without process lines)."""
    if series is None or not series.lines:
        return None
    return {
        "lines": series.lines,
        "invalid_lines": series.invalid,
        "minutes_dropped": series.dropped,
        "asgi_threads_not_applied_lines": series.not_applied,
        "minutes": [_row(minute, series.minutes[minute]) for minute in sorted(series.minutes)],
    }


def endpoint_fields(stats: Any) -> dict[str, Any] | None:
    """A row's ``concurrency``: per request, from the lines that carry the fields."""
    c = stats.concurrency
    if not c[0]:
        return None
    fields: dict[str, Any] = {
        "records": int(c[0]),
        "db_connections": {
            "mean": round(c[1] / c[0], 3),
            "max": int(c[2]),
            "total": int(c[1]),
        },
        "max_in_flight": None,
        "concurrent_ms": None,
    }
    if c[3]:
        fields["max_in_flight"] = {"mean": round(c[4] / c[3], 3), "max": int(c[5])}
        fields["concurrent_ms"] = {"mean": round(c[6] / c[3], 3)}
    return fields


def concurrency_mean(row: dict[str, Any], field: str) -> float | None:
    """A row's mean ``max_in_flight`` or ``db_connections`` (None without the fields)."""
    value = ((row.get("concurrency") or {}).get(field) or {}).get("mean")
    return None if value is None else float(value)


# --- rendering ------------------------------------------------------------------------------


def _coarse(minutes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most ROWS_SHOWN rows: consecutive minutes merged, the worst figure of each kept."""
    step = max(1, -(-len(minutes) // ROWS_SHOWN))
    rows = []
    for at in range(0, len(minutes), step):
        group = minutes[at : at + step]
        row = dict(group[0])
        if len(group) > 1:
            row["minute"] = f"{group[0]['minute']}-{group[-1]['minute'][11:]}"
            for key in ("lines", "requests", "pool_crossings"):
                row[key] = sum(entry[key] for entry in group)
            for key in row:
                if key not in ("minute", "lines", "requests", "pool_crossings"):
                    known = [entry[key] for entry in group if entry[key] is not None]
                    row[key] = max(known) if known else None
        rows.append(row)
    return rows


def _tables(document: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]], int]]:
    """(title, headers, rows, label column) of the sections that have something to show.

    The endpoints' table starts with the main table's rank (``#``): on a narrow terminal
    its labels are cut in the middle, and two routes can then read alike
    (``GET /api/…int:pk>/``); the rank still tells which row of the main table each is."""
    tables = []
    rows = [row for row in document.get("rows", []) if row.get("concurrency")]
    if rows:
        body = []
        for row in rows:
            c = row["concurrency"]
            flight = c["max_in_flight"] or {}
            body.append(
                [
                    str(row["rank"]),
                    fmt.clean(row["label"], 80),
                    fmt.mean(row["threads"]["mean"]),
                    fmt.mean(flight.get("mean")),
                    fmt.count(flight.get("max")),
                    fmt.ms((c["concurrent_ms"] or {}).get("mean")),
                    fmt.mean(c["db_connections"]["mean"]),
                    fmt.count(c["db_connections"]["max"]),
                ]
            )
        headers = ["#", "endpoint", "threads/req", "in flight", "max", "concurrent ms",
                   "db conn/req", "max"]  # fmt: skip
        tables.append(("threads and connections per request", headers, body, 1))
    pool = document.get("pool_over_time")
    if pool:
        body = [
            [
                fmt.clean(row["minute"]),
                fmt.count(row["processes"]),
                fmt.count(row["requests"]),
                fmt.count(row["pool_crossings"]),
                fmt.count(row["pool_busy_max"]),
                fmt.percent(row["pool_busy_share_max"]),
                fmt.count(row["pool_queue_max"]),
                fmt.ms(row["pool_wait_p95_ms_max"]),
                fmt.count(row["contexts_max"]),
                fmt.count(row["threads_alive_max"]),
            ]
            for row in _coarse(pool["minutes"])
        ]
        headers = ["minute (UTC)", "processes", "requests", "pool calls", "busy", "busy %",
                   "queued", "wait p95 ms", "contexts", "threads"]  # fmt: skip
        title = "default pool saturation over time (hopwatch.process lines)"
        not_applied = pool["asgi_threads_not_applied_lines"]
        if not_applied:
            title += f"; ASGI_THREADS set but not applied in {not_applied:,} lines"
        tables.append((title, headers, body, 0))
    return tables


#: The narrowest the label column gets to fit a width (then columns leave, rightmost first).
_LABEL_MIN: Final = 16


def write_text(document: dict[str, Any], out: IO[str], width: int | None = None) -> None:
    """The sections as aligned plain text (the text and rich formats). Within ``width``
    columns (a terminal's), rows never wrap: the label is cut in the middle first, then
    columns leave from the right, as in the main table."""
    for title, headers, body, label in _tables(document):
        cells = [headers, *body]
        widths = [max(fmt.cells(line[i]) for line in cells) for i in range(len(headers))]
        shown = len(headers)
        if width is not None:
            natural = widths[label]
            widths[label] = min(natural, _LABEL_MIN)
            while shown > label + 2 and sum(widths[:shown]) + 2 * (shown - 1) > width:
                shown -= 1
            room = width - (sum(widths[:shown]) - widths[label]) - 2 * (shown - 1)
            widths[label] = max(widths[label], min(natural, room))
        out.write(f"\n{title}\n")
        for line in cells:
            row = [
                fmt.ljust_cells(truncate_middle(value, widths[i]), widths[i])
                if i == label
                else fmt.rjust_cells(value, widths[i])
                for i, value in enumerate(line[:shown])
            ]
            out.write("  ".join(row).rstrip() + "\n")


def write_markdown(document: dict[str, Any], out: IO[str]) -> None:
    for title, headers, body, label in _tables(document):
        out.write(f"\n#### {fmt.markdown_cell(title)}\n\n")
        out.write("| " + " | ".join(fmt.markdown_cell(h) for h in headers) + " |\n")
        aligns = ("---" if i == label else "---:" for i in range(len(headers)))
        out.write("|" + "|".join(aligns) + "|\n")
        for line in body:
            out.write("| " + " | ".join(fmt.markdown_cell(v) for v in line) + " |\n")
