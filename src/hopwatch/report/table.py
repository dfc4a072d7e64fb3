"""The report's table for people: its columns, what each one means, and fitting a width.

Every column says what it measures in one line (the legend under the table).
On a terminal the table fits the width, whatever it is, from 80 columns up:

* labels (an endpoint, a view, a cause) never wrap: a long one is cut in the
  middle (``GET /api/v1/orga…/members/<int:pk>/``), keeping both ends;
* when the columns do not fit, they are left out one at a time in a fixed,
  documented order (:attr:`Column.drop`: 1 first), until they do; the label,
  the overhead per request and the overhead in all are never left out;
* ``--wide`` shows every column, at its full width.

Columns with nothing to say are not shown: pinned time when no request pinned
a thread, the hop tax when no line carries it, new loops when there were none.
The cell text is made safe by the caller's values (every string from a log
goes through :func:`hopwatch.report.text.clean`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from hopwatch.report import text as fmt

Row = dict[str, Any]
Document = dict[str, Any]

#: Characters of a label when the width is unlimited (text, markdown).
LABEL_LIMIT: Final = 80
#: A label up to this long is kept whole while columns can still be left out instead.
LABEL_FIT: Final = 40
#: Causes named per row in the "top causes" column.
CAUSES_SHOWN: Final = 3
#: Spaces between columns.
GAP: Final = 2
NA: Final = "n/a"


def _always(rows: list[Row]) -> bool:
    return True


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    cell: Callable[[Row], str]
    legend: str
    right: bool = True
    #: When the width is short, columns are left out in this order (1 first); 0: never.
    drop: int = 0
    #: Shown only with --wide.
    wide: bool = False
    #: A label column: its minimum width (cut in the middle below its natural width).
    flexible: int = 0
    #: Whether the column has anything to say for these rows.
    shown: Callable[[list[Row]], bool] = _always
    #: For a flexible column: the cell at a given width (default: cut in the middle).
    fit: Callable[[Row, int], str] | None = None
    #: For a column with its own fit (cell: cut at LABEL_LIMIT as fit cuts, or each
    #: name of a list cut there): the cell with every name whole, for --wide.
    whole: Callable[[Row], str] | None = None


def truncate_middle(value: str, width: int) -> str:
    """``value`` in at most ``width`` terminal columns, cut in the middle with "…"."""
    if fmt.cells(value) <= width:
        return value
    if width <= 1:
        return fmt.ellipsis()[:width]
    head = (width - 1 + 1) // 2
    tail = width - 1 - head
    return (
        fmt.head_cells(value, head) + fmt.ellipsis() + (fmt.tail_cells(value, tail) if tail else "")
    )


# --- cells -----------------------------------------------------------------------------------
def _part(row: Row, part: str, name: str) -> Any:
    values = row.get(part)
    return values.get(name) if isinstance(values, dict) else None


def _ms_or_na(value: float | None) -> str:
    return NA if value is None else fmt.ms(value)


def _percent_or_na(value: float | None) -> str:
    return NA if value is None else fmt.percent(value)


def _cause_name(cause: Row, names: list[str]) -> str:
    name = fmt.short_site(cause["site"], cause["call_site"])
    if names.count(name) > 1:  # e.g. a sync-only middleware's two hops, one each way
        name = f"{name} ({cause['direction']})"
    return fmt.clean(name)


def _cause_share(cause: Row) -> float | None:
    share: float | None = cause.get("overhead_share")
    return share if share is not None else cause["share"]


def causes_cell(row: Row, width: int | None, limit: int | None = LABEL_LIMIT) -> str:
    """The row's top causes with their share of its overhead (of its hop time for lines
    without overhead), as many as fit ``width`` (None: up to :data:`CAUSES_SHOWN`), each
    name cut in the middle past ``limit`` columns as a label is (None: whole, --wide)."""
    causes = row["causes"][:CAUSES_SHOWN]
    names = [fmt.short_site(c["site"], c["call_site"]) for c in causes]
    pairs = [
        (_cut(_cause_name(c, names), limit), f" {fmt.percent(_cause_share(c))}") for c in causes
    ]
    parts = [name + share for name, share in pairs]
    if not parts:
        return "-"
    if width is None:
        return ", ".join(parts)
    shown = ""
    for index, part in enumerate(parts):
        candidate = part if not shown else f"{shown}, {part}"
        more = len(parts) - index - 1
        if len(candidate) + (len(f" +{more}") if more else 0) <= width:
            shown = candidate
            continue
        if shown:
            return f"{shown} +{len(parts) - index}"
        name, share = pairs[0]  # the first cause alone: its name cut, its share whole
        more_text = f" +{len(parts) - 1}" if len(parts) > 1 else ""
        if width - len(share) - len(more_text) < 16:
            more_text = ""  # the others are in --endpoint and the list under the table
        room = width - len(share) - len(more_text)
        if room < 4:
            return truncate_middle(part, width)
        return truncate_middle(name, room) + share + more_text
    return shown


def _cut(name: str, limit: int | None) -> str:
    return name if limit is None else truncate_middle(name, limit)


def _label(row: Row) -> str:
    return fmt.clean(row["label"])


def _site_label(row: Row) -> str:
    if "label" in row:  # named beside the others (cause_labels)
        return fmt.clean(row["label"])
    return fmt.clean(fmt.short_site(row["site"], row["call_site"]))


def cause_labels(causes: list[Row], directions: bool) -> list[str]:
    """A table's causes (one endpoint's, or --by site's), named so that no two read
    alike: the site's last two dotted parts and the call site's file and line (orm and
    other causes: one view's ``QuerySet.aget`` at three lines is three causes); with
    ``directions`` (for a table with no direction column), the direction of a cause
    listed both ways."""
    names = [fmt.short_site(c["site"], c["call_site"]) for c in causes]
    if not directions:
        return [fmt.clean(name) for name in names]
    return [_cause_name(cause, names) for cause in causes]


def _call_site_cell(row: Row, width: int) -> str:
    """The call site in ``width`` columns: its file and line kept to the last, the
    function (`` in handler``) left out first, then the path's head."""
    full = fmt.clean(row["call_site"] or "-")
    if fmt.cells(full) <= width:
        return full
    where = full.split(" in ", 1)[0]
    if fmt.cells(where) <= width:
        return where
    if width <= 1:
        return fmt.ellipsis()[:width]
    return fmt.ellipsis() + fmt.tail_cells(where, width - 1)


def _top_endpoints(row: Row) -> str:
    names = [fmt.clean(e["label"]) for e in row["top_endpoints"]]
    if not names:
        return "-"
    more = row["endpoints"] - len(names)
    return ", ".join(names) + (f" +{more}" if more > 0 else "")


def _any(path: tuple[str, str]) -> Callable[[list[Row]], bool]:
    def shown(rows: list[Row]) -> bool:
        return any(_part(row, *path) for row in rows)

    return shown


def _lacking_overhead(rows: list[Row]) -> bool:
    """Some row has lines from before overhead_ms, all of them or some (a rolling upgrade:
    an endpoint row counts the records that carry it): show the hop time they do carry."""
    return any(_lacks_overhead(row) for row in rows)


def _lacks_overhead(row: Row) -> bool:
    overhead = row.get("overhead_ms")
    if overhead is None:
        return True
    return isinstance(overhead, dict) and overhead.get("records", 0) < row.get("records", 0)


def lacks_overhead(document: Document) -> bool:
    """Some line of the report carries no overhead_ms (a cause's row cannot say whether
    all of its lines do: the summary can)."""
    summary = document.get("summary") or {}
    reported = summary.get("reported", 0)
    return summary.get("overhead_records", reported) < reported or _lacking_overhead(
        document["rows"]
    )


def _with_overhead(rows: list[Row]) -> bool:
    """Some row's lines carry overhead_ms (else its columns would all read n/a)."""
    return any(row.get("overhead_ms") is not None for row in rows)


_OVERHEAD = (
    "crossing overhead: each crossing's queue wait plus its hand-off back to the caller, "
    "what removing the hop saves"
)

ENDPOINT_COLUMNS: Final = (
    Column("rank", "#", lambda r: str(r["rank"]), "rank by the sort key"),
    Column(
        "label",
        "endpoint",
        _label,
        "method and URL pattern (--by view: the view); (no view): requests no URL pattern resolved",
        right=False,
        flexible=16,
    ),
    Column(
        "requests",
        "requests",
        lambda r: fmt.count(r["requests"]),
        "requests logged (a sampled line counts 1 / sample_rate)",
        drop=8,
    ),
    Column(
        "hops",
        "hops/req",
        lambda r: fmt.mean(r["hops"]["mean"]),
        "sync/async crossings per request",
        drop=9,
    ),
    Column(
        "max_hops",
        "max hops",
        lambda r: fmt.count(r["hops"]["max"]),
        "the most crossings one request made",
        wide=True,
    ),
    Column(
        "overhead_mean",
        "ovh/req",
        lambda r: _ms_or_na(_part(r, "overhead_ms", "mean")),
        f"ms per request of {_OVERHEAD}",
        shown=_with_overhead,
    ),
    Column(
        "overhead_p50",
        "ovh p50",
        lambda r: _ms_or_na(_part(r, "overhead_ms", "p50")),
        "median overhead of one request, ms (within 1%)",
        wide=True,
        shown=_with_overhead,
    ),
    Column(
        "overhead_p95",
        "ovh p95",
        lambda r: _ms_or_na(_part(r, "overhead_ms", "p95")),
        "95th percentile of one request's overhead, ms (within 1%)",
        drop=3,
        shown=_with_overhead,
    ),
    Column(
        "overhead_p99",
        "ovh p99",
        lambda r: _ms_or_na(_part(r, "overhead_ms", "p99")),
        "99th percentile of one request's overhead, ms (within 1%)",
        wide=True,
        shown=_with_overhead,
    ),
    Column(
        "overhead_total",
        "overhead",
        lambda r: (
            NA
            if _part(r, "overhead_ms", "total") is None
            else fmt.duration(_part(r, "overhead_ms", "total"))
        ),
        "overhead summed over the requests logged: what this endpoint's hops cost in all"
        " (the default sort)",
        shown=_with_overhead,
    ),
    Column(
        "overhead_share",
        "ovh %",
        lambda r: _percent_or_na(r.get("overhead_share")),
        "overhead as a share of the requests' time",
        drop=6,
        shown=_with_overhead,
    ),
    Column(
        "work_mean",
        "work/req",
        lambda r: _ms_or_na(_part(r, "work_ms", "mean")),
        "ms per request of the code that ran inside the crossings (it stays when hops go;"
        " nested crossings counted once)",
        drop=5,
        shown=_with_overhead,
    ),
    Column(
        "pinned_mean",
        "pinned/req",
        lambda r: fmt.ms(_part(r, "pinned_ms", "mean")),
        "ms per request a worker thread was held while async work ran (a sync-only"
        " middleware's thread)",
        drop=7,
        shown=_any(("pinned_ms", "mean")),
    ),
    Column(
        "tax_mean",
        "tax/req",
        lambda r: fmt.ms(_part(r, "hop_tax_ms", "mean")),
        "ms per request: the hops at this host's price of a no-op hop (hop_tax_us, or"
        " --hop-tax), the floor of the overhead",
        # shown only when asked for (--hop-tax, MEASURE_HOP_TAX): the last one left out,
        # so that 80 columns show it even beside a 40-character label
        drop=10,
        shown=_any(("hop_tax_ms", "mean")),
    ),
    Column(
        "wait_share",
        "wait %",
        lambda r: _percent_or_na(r.get("wait_of_overhead")),
        "the part of the overhead spent queued before running (a busy thread pool or loop)",
        drop=1,
        shown=_with_overhead,
    ),
    Column(
        "hop_mean",
        "hop/req",
        lambda r: fmt.ms(r["hop_ms"]["mean"]),
        "ms per request of whole crossings, the code inside them included (nested ones"
        " counted again): what lines without overhead_ms carry",
        drop=2,
        shown=_lacking_overhead,
    ),
    Column(
        "hop_total",
        "hop total",
        lambda r: fmt.duration(r["hop_ms"]["total"]),
        "whole crossings summed over the requests logged (hop_ms: the code inside included)",
        drop=2,
        shown=_lacking_overhead,
    ),
    Column(
        "threads",
        "threads",
        lambda r: fmt.mean(r["threads"]["mean"]),
        "distinct OS threads per request",
        wide=True,
    ),
    Column(
        "new_loops",
        "new loops",
        lambda r: fmt.count(r["new_loops"]["total"]),
        "async_to_sync calls that made a new event loop (the cold path)",
        drop=2,
        shown=_any(("new_loops", "total")),
    ),
    Column(
        "causes",
        "top causes",
        lambda r: causes_cell(r, None),
        "the causes with the most overhead, with their share of the row's",
        right=False,
        drop=4,
        flexible=28,
        fit=causes_cell,
        whole=lambda r: causes_cell(r, None, limit=None),
    ),
)


def _cause_costs(
    over: str, share_of: str, share_drop: int, hop_drop: int
) -> tuple[Column, Column, Column, Column]:
    """A cause's overhead per request and in all, its share, its whole crossings per
    request: the same for --by site and --endpoint but for what they are summed over."""
    return (
        Column(
            "overhead_mean",
            "ovh/req",
            lambda r: _ms_or_na(r.get("overhead_per_request")),
            f"ms per request that had it of {_OVERHEAD}",
            shown=_with_overhead,
        ),
        Column(
            "overhead_total",
            "overhead",
            lambda r: NA if r.get("overhead_ms") is None else fmt.duration(r["overhead_ms"]),
            f"its overhead summed over {over}",
            shown=_with_overhead,
        ),
        Column(
            "overhead_share",
            "ovh %",
            lambda r: _percent_or_na(r.get("overhead_share")),
            f"its share of {share_of}",
            drop=share_drop,
            shown=_with_overhead,
        ),
        Column(
            "ms_mean",
            "hop/req",
            lambda r: fmt.ms(r["ms_per_request"]),
            "ms per request of its whole crossings, the code inside them included",
            drop=hop_drop,
            shown=_lacking_overhead,
        ),
    )


SITE_COLUMNS: Final = (
    Column("rank", "#", lambda r: str(r["rank"]), "rank by the sort key"),
    Column(
        "label",
        "cause",
        _site_label,
        "the cause (its last two dotted parts; the call site's file and line for orm and"
        " other; the direction of a cause seen both ways)",
        right=False,
        flexible=20,
    ),
    Column("kind", "kind", lambda r: fmt.clean(r["kind"], 20), "the cause's kind", False, 5),
    Column(
        "requests",
        "requests",
        lambda r: fmt.count(r["requests"]),
        "requests whose line listed it",
        drop=6,
    ),
    Column(
        "endpoints",
        "endpoints",
        lambda r: fmt.count(r["endpoints"]),
        "endpoints where it appears",
        drop=3,
    ),
    Column(
        "hops",
        "hops/req",
        lambda r: fmt.mean(r["count_per_request"]),
        "its crossings per request that had it",
        drop=4,
    ),
    *_cause_costs("the requests logged (the default sort)", "all the overhead in the report", 2, 3),
    Column(
        "ms_total",
        "hop total",
        lambda r: fmt.duration(r["ms"]),
        "its whole crossings summed (the code inside included): what lines without"
        " overhead_ms carry",
        drop=2,
        shown=_lacking_overhead,
    ),
    Column(
        "top_endpoints",
        "top endpoints",
        _top_endpoints,
        "the endpoints where it costs the most",
        right=False,
        drop=1,
        flexible=16,
    ),
)


#: One endpoint's causes (--endpoint), one row per cause.
CAUSE_COLUMNS: Final = (
    Column("rank", "#", lambda r: str(r["rank"]), "rank by overhead"),
    Column(
        "label",
        "cause",
        lambda r: fmt.clean(r["label"]),
        "the cause (its last two dotted parts; the call site's file and line for orm and"
        " other; without the direction column, the direction of a cause seen both ways)",
        right=False,
        flexible=20,
    ),
    Column("kind", "kind", lambda r: fmt.clean(r["kind"], 20), "the cause's kind", False, 4),
    Column(
        "direction",
        "direction",
        lambda r: fmt.clean(r["direction"], 20),
        "sync_to_async: async code handing work to a thread; async_to_sync: sync code"
        " handing work to an event loop",
        right=False,
        drop=2,
    ),
    Column(
        "call_site",
        "call site",
        lambda r: _call_site_cell(r, LABEL_LIMIT),
        "for orm and other causes: the line that made the call, the first outside Django,"
        " asgiref and the stdlib: yours, or a third-party package's (django-debug-toolbar's)",
        right=False,
        drop=5,
        flexible=16,
        fit=_call_site_cell,
        whole=lambda r: fmt.clean(r["call_site"] or "-"),
    ),
    Column(
        "requests",
        "requests",
        lambda r: fmt.count(r["requests"]),
        "requests whose line listed it",
        drop=3,
    ),
    Column(
        "hops",
        "hops/req",
        lambda r: fmt.mean(r["count"] / r["requests"] if r["requests"] else None),
        "its crossings per request that had it",
        drop=6,
    ),
    *_cause_costs("the endpoint's requests logged", "the endpoint's overhead", 1, 3),
)


def columns(document: Document, *, wide: bool = False) -> list[Column]:
    """The columns with something to say for the document's rows (--wide: every one)."""
    table = SITE_COLUMNS if document["by"] == "site" else ENDPOINT_COLUMNS
    chosen = _chosen(table, document, document["rows"], wide)
    if document["by"] == "view":
        chosen = [replace(c, header="view") if c.key == "label" else c for c in chosen]
    return chosen


def cause_columns(document: Document, causes: list[Row], *, wide: bool = False) -> list[Column]:
    """The columns with something to say for one endpoint's causes (--endpoint; --wide:
    every one)."""
    return _chosen(CAUSE_COLUMNS, document, causes, wide)


def _chosen(
    table: Sequence[Column], document: Document, rows: list[Row], wide: bool
) -> list[Column]:
    # the hop columns: whenever a line of the report lacks overhead_ms, as its note says
    # (a row, a cause's above all, cannot show that only some of its lines lack it)
    lacking = lacks_overhead(document)

    def shown(column: Column) -> bool:
        if column.shown is _lacking_overhead:
            return lacking
        return column.shown(rows)

    return [c for c in table if wide or (not c.wide and shown(c))]


@dataclass(frozen=True)
class Layout:
    columns: list[Column]
    widths: list[int]
    #: --wide: every name whole
    whole: bool = False

    def cells(self, row: Row) -> list[str]:
        cells = []
        for column, width in zip(self.columns, self.widths, strict=True):
            if self.whole and column.whole is not None:
                cells.append(column.whole(row))
            elif column.flexible and column.fit is not None:
                cells.append(column.fit(row, width))
            elif column.flexible:
                cells.append(truncate_middle(column.cell(row), width))
            else:
                cells.append(column.cell(row))
        return cells

    def line(self, cells: list[str]) -> str:
        parts = []
        last = len(cells) - 1
        for index, (value, column, width) in enumerate(
            zip(cells, self.columns, self.widths, strict=True)
        ):
            if column.right:
                parts.append(fmt.rjust_cells(value, width))
            else:
                parts.append(value if index == last else fmt.ljust_cells(value, width))
        return (" " * GAP).join(parts).rstrip()

    def header(self) -> str:
        return self.line([column.header for column in self.columns])


def _natural(column: Column, rows: list[Row], cap: bool) -> int:
    cell = column.whole if not cap and column.whole is not None else column.cell
    natural = max([fmt.cells(column.header), *(fmt.cells(cell(row)) for row in rows)])
    # a name is cut at LABEL_LIMIT even with room to spare (not with --wide); so is each
    # name in a list of causes (by its cell), not the list
    limited = cap and column.flexible and column.fit is None
    return min(natural, LABEL_LIMIT) if limited else natural


def layout(document: Document, width: int | None = None, *, wide: bool = False) -> Layout:
    """Which columns of the report's table, how wide, for ``width`` characters (None: no
    limit; --wide: every column at its full width)."""
    return fit(columns(document, wide=wide), document["rows"], None if wide else width, wide=wide)


def fit(
    chosen: Sequence[Column], rows: list[Row], width: int | None, *, wide: bool = False
) -> Layout:
    """Leave columns out in their drop order until the rest fit ``width``, then give the
    flexible (label) columns what is left, cut in the middle below their natural width.
    ``wide``: every column, every label whole."""
    chosen = list(chosen)
    natural = {column.key: _natural(column, rows, cap=not wide) for column in chosen}
    if width is None:
        return Layout(chosen, [natural[c.key] for c in chosen], whole=wide)

    def floor(column: Column, label_whole: bool) -> int:
        if not column.flexible:
            return natural[column.key]
        if label_whole and column.key == "label":  # the row's name, whole if it can be
            return min(natural[column.key], LABEL_FIT)
        return max(min(column.flexible, natural[column.key]), len(column.header))

    def least(kept: list[Column], label_whole: bool) -> int:
        return sum(floor(c, label_whole) for c in kept) + GAP * (len(kept) - 1)

    kept = list(chosen)
    for column in sorted((c for c in chosen if c.drop), key=lambda c: c.drop):
        if least(kept, label_whole=True) <= width:
            break
        kept.remove(column)
    widths = {c.key: natural[c.key] for c in kept}
    spare = width - sum(widths.values()) - GAP * (len(kept) - 1)
    flexible = [c for c in kept if c.flexible]
    if spare < 0 and flexible:  # shrink the labels: the row's name last
        for column in sorted(flexible, key=lambda c: c.key == "label"):
            give = min(-spare, widths[column.key] - floor(column, label_whole=False))
            widths[column.key] -= give
            spare += give
            if spare >= 0:
                break
    return Layout(kept, [widths[c.key] for c in kept], whole=wide)


def legend(layout: Layout) -> list[tuple[str, str]]:
    """(header, what it measures) for each column shown."""
    return [(column.header, column.legend) for column in layout.columns if column.key != "rank"]


__all__ = [
    "CAUSE_COLUMNS",
    "ENDPOINT_COLUMNS",
    "SITE_COLUMNS",
    "Column",
    "Layout",
    "cause_columns",
    "causes_cell",
    "columns",
    "lacks_overhead",
    "layout",
    "legend",
    "truncate_middle",
]
