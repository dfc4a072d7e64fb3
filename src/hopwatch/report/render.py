"""One function per output format, each taking the report document (see rank.py).

``rich`` (a table for a terminal, fitted to its width), ``text`` (plain aligned
columns when the output is not a terminal), ``json`` (the document itself),
``markdown`` (for a pull request) and ``csv``. The table's columns, their
legend and how they fit a width are :mod:`hopwatch.report.table`'s; what is
said under the table is :mod:`hopwatch.report.notes`'. Every string that came
from a log is cleaned by :func:`hopwatch.report.text.clean`; rich gets ``Text``
objects, never markup.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from typing import IO, Any, Final

from hopwatch._cli import rich_width, wrap, writes_utf8
from hopwatch.report import notes, table, threads
from hopwatch.report import text as fmt

Row = dict[str, Any]
Document = dict[str, Any]

#: Causes named per row in the tables and in csv.
CAUSES_SHOWN: Final = table.CAUSES_SHOWN


def summary_line(document: Document) -> str:
    """One line on what was read: files, lines, records, what was skipped and why."""
    s = document["summary"]
    inputs = f"{s['files']:,} file{'s' if s['files'] != 1 else ''}"
    if s["stdin"]:
        inputs = "stdin" if not s["files"] else f"{inputs} and stdin"
    line = (
        f"read {inputs} ({fmt.size(s['bytes'])}): {s['lines']:,} lines, "
        f"{s['records']:,} hopwatch records, {s['other_lines']:,} other lines"
    )
    if s["skipped"]:
        reasons = ", ".join(
            f"{count:,} {fmt.reason(name)}" for name, count in s["skipped_by_reason"].items()
        )
        line += f", {s['skipped']:,} skipped ({reasons})"
    if s["parts_lost"]:
        parts = ", ".join(f"{name} in {count:,}" for name, count in s["parts_lost"].items())
        line += f"; malformed parts left out ({parts}), their records counted"
    if s["filtered"]:
        reasons = ", ".join(
            f"{count:,} by {name}" for name, count in s["filtered_by_reason"].items()
        )
        line += f"; {s['filtered']:,} filtered out ({reasons})"
    if s["first_timestamp"]:
        line += f"; {s['first_timestamp'][:19]}Z to {s['last_timestamp'][:19]}Z"
    if s["truncated_inputs"]:
        line += f"; cut short: {', '.join(s['truncated_inputs'])}"
    tax = s.get("hop_tax")
    if tax:
        price = fmt.us(tax["min_us"])
        if tax["max_us"] != tax["min_us"]:
            price = f"{fmt.us(tax['min_us'])} to {fmt.us(tax['max_us'])}"
        if tax["source"] == "option":
            line += f"; hops priced at {price} (--hop-tax)"
        else:
            records = tax["records"]
            line += (
                f"; hops priced at {price} (hop_tax_us of {records:,}"
                f" record{'s' if records != 1 else ''})"
            )
    if s["hopwatch_errors"]:
        line += f"; hopwatch logged {s['hopwatch_errors']:,} internal errors"
    hidden = document["groups"]["below_min_requests"]
    if hidden:
        line += f"; {hidden:,} below --min-requests not shown"
    return fmt.clean(line)


# --- what the rich, text and markdown formats share -------------------------------------
def _named(causes: list[Row], directions: bool) -> list[Row]:
    """Cause rows with their ``label`` (table.cause_labels): no two read alike."""
    labels = table.cause_labels(causes, directions)
    return [{**cause, "label": label} for cause, label in zip(causes, labels, strict=True)]


def _cause_rows(row: Row, directions: bool = False) -> list[Row]:
    ranked = [{**cause, "rank": rank} for rank, cause in enumerate(row["causes"], 1)]
    return _named(ranked, directions)


def _tables(
    document: Document, width: int | None, wide: bool
) -> list[tuple[table.Layout, list[Row]]]:
    """The table (or, with --endpoint, the endpoint's causes) laid out for ``width``."""
    if document.get("endpoint") is not None:
        causes = document["rows"][0] if document["rows"] else {"causes": []}
        rows = _cause_rows(causes)
        columns = table.cause_columns(document, rows, wide=wide)
        layout = table.fit(columns, rows, None if wide else width, wide=wide)
        if all(column.key != "direction" for column in layout.columns):
            # no room for the direction: a cause seen both ways says which in its name
            rows = _cause_rows(causes, directions=True)
            layout = table.fit(columns, rows, None if wide else width, wide=wide)
        return [(layout, rows)]
    extra = _left_out_row(document)
    rows = [*document["rows"], *([extra] if extra else [])]
    if document["by"] == "site":  # no direction column: a cause seen both ways says which
        rows = _named(rows, directions=True)
    chosen = table.columns(document, wide=wide)
    return [(table.fit(chosen, rows, None if wide else width, wide=wide), rows)]


def _left_out_row(document: Document) -> Row | None:
    """With --by site, the causes the lines left out, as the table's last row."""
    left = document["summary"].get("left_out")
    if document["by"] != "site" or not left:
        return None
    requests = left["requests"]
    return {
        "rank": "",
        "site": "(left out of the lines: SITES_LIMIT)",
        "call_site": None,
        "kind": "-",
        "requests": requests,
        "endpoints": None,
        "count_per_request": left["count"] / requests if requests else None,
        "overhead_per_request": (
            left["overhead_ms"] / requests if left["overhead_ms"] is not None and requests else None
        ),
        "overhead_ms": left["overhead_ms"],
        "overhead_share": left["overhead_share"],
        "ms_per_request": left["ms"] / requests if requests else 0.0,
        "ms": left["ms"],
        "share": None,
        "top_endpoints": [],
    }


def _sections(
    document: Document, layout: table.Layout, width: int | None, legend: bool
) -> list[list[str]]:
    """The blocks of lines under the table, in order."""
    detail = document.get("endpoint") is not None
    left = (
        (document["rows"][0].get("left_out") if document["rows"] else None)
        if detail
        else (document["summary"].get("left_out"))
    )
    blocks = [
        notes.legend_lines(layout, width) if legend else [],
        notes.left_out_lines(left, width) if document["by"] != "site" or detail else [],
        notes.missing_overhead_lines(document, layout, width),
        _above_full_lines(document, width),
        notes.fixable_lines(document, width),
    ]
    return [block for block in blocks if block]


def _above_full_lines(document: Document, width: int | None) -> list[str]:
    """Why the overhead's share of the requests' time reads >100% (fmt.percent) in some
    rows, and where the ratio is."""
    if document["by"] == "site":  # its ovh % is a cause's part of all the overhead
        return []
    above = [
        row
        for row in document["rows"]
        if row.get("overhead_share") is not None
        and fmt.percent(row["overhead_share"]) == fmt.ABOVE_FULL
    ]
    if not above:
        return []
    if document.get("endpoint") is not None:
        lead = f"overhead reads {fmt.ABOVE_FULL} of the requests' time: the"
    else:
        names = ", ".join(fmt.clean(row["label"], table.LABEL_LIMIT) for row in above[:3])
        more = f" and {len(above) - 3:,} more" if len(above) > 3 else ""
        whose = "its" if len(above) == 1 else "their"
        lead = f"ovh % reads {fmt.ABOVE_FULL} for {names}{more}: {whose}"
    line = (
        f"{lead} lines' overhead_ms add up to more than their duration_ms. The overhead"
        " sums each crossing's own wait and hand-off, so crossings that ran at the same"
        " time (calls gathered onto one thread, each queued behind the others) can add up"
        " to more than the request lasted, and so can a line whose fields disagree."
        " --format json has the ratio (overhead_share)."
    )
    return notes.wrap(line, width, "  ")


def _title(document: Document) -> str:
    if document.get("endpoint") is not None:
        return f"hopwatch report: {fmt.clean(document['endpoint'])}, cause by cause"
    what = "causes" if document["by"] == "site" else f"{document['by']}s"
    return f"hopwatch report: worst {what} by {document['sort']}"


# --- formats ------------------------------------------------------------------------------
def render_json(document: Document, out: IO[str]) -> None:
    # ensure_ascii: log content reaches the terminal only as \u escapes
    json.dump(document, out, indent=2, ensure_ascii=True, allow_nan=False)
    out.write("\n")


def render_text(
    document: Document,
    out: IO[str],
    *,
    width: int | None = None,
    wide: bool = False,
    legend: bool = True,
) -> None:
    """Plain aligned columns, every row whole (labels cut in the middle past 80).

    With ``width`` (a terminal without rich), fitted to it as the rich table is:
    the same columns left out, the same labels cut, the summary wrapped."""
    out.write(_title(document) + "\n")
    summary = summary_line(document)
    if width is not None and not wide:
        summary = "\n".join(wrap(summary, width))
    out.write(summary + "\n\n")
    for line, _style in _body_lines(document, width, wide, legend, rule=False):
        out.write(line + "\n")


def _body_lines(
    document: Document, columns: int | None, wide: bool, legend: bool, *, rule: bool
) -> Iterator[tuple[str, str]]:
    """What the rich and text formats show after the summary, fitted to ``columns``
    (None: every row whole): (line, its style in rich's terms)."""
    if not document["rows"]:
        yield "no endpoints to show", ""
        return
    if document.get("endpoint") is not None:
        for line in notes.endpoint_lines(document["rows"][0], columns):
            yield line, ""
        yield "", ""
    ((layout, rows),) = _tables(document, columns, wide)
    header = layout.header()
    yield header, "bold"
    if rule:
        yield fmt.drawable("─", "-") * len(header), "dim"
    for row in rows:
        yield layout.line(layout.cells(row)), ""
    fitted = None if wide else columns
    for block in _sections(document, layout, fitted, legend):
        yield "", ""
        for line in block:
            yield line, "dim" if block[0] == "columns:" else ""
    sections = io.StringIO()
    threads.write_text(document, sections, fitted)
    for line in sections.getvalue().rstrip("\n").splitlines():
        yield line, ""


def render_markdown(
    document: Document, out: IO[str], *, wide: bool = False, legend: bool = True
) -> None:
    out.write(f"### {fmt.markdown_cell(_title(document))}\n\n")
    out.write(fmt.markdown_cell(summary_line(document)) + "\n\n")
    if not document["rows"]:
        out.write("No endpoints to show.\n")
        return
    if document.get("endpoint") is not None:
        for line in notes.endpoint_lines(document["rows"][0], None):
            out.write(f"{fmt.markdown_cell(line.strip())}  \n")
        out.write("\n")
    ((layout, rows),) = _tables(document, None, wide)
    columns = layout.columns
    out.write("| " + " | ".join(fmt.markdown_cell(c.header) for c in columns) + " |\n")
    out.write("|" + "|".join("---:" if c.right else "---" for c in columns) + "|\n")
    for row in rows:
        # cells are already clean()ed; markdown_cell escapes the markup characters
        cells = layout.cells(row)
        out.write("| " + " | ".join(fmt.markdown_cell(cell) for cell in cells) + " |\n")
    for block in _sections(document, layout, None, legend):
        out.write("\n")
        for line in block:
            out.write(f"{fmt.markdown_cell(line)}  \n")
    threads.write_markdown(document, out)


_CSV_ENDPOINT: Final[list[tuple[str, Callable[[Row], Any]]]] = [
    ("rank", lambda r: r["rank"]),
    ("method", lambda r: r["method"]),
    ("route", lambda r: r["route"]),
    ("view", lambda r: r["view"]),
    ("label", lambda r: r["label"]),
    ("requests", lambda r: r["requests"]),
    ("records", lambda r: r["records"]),
    ("hops_mean", lambda r: r["hops"]["mean"]),
    ("hops_max", lambda r: r["hops"]["max"]),
    ("hop_ms_total", lambda r: r["hop_ms"]["total"]),
    ("hop_ms_mean", lambda r: r["hop_ms"]["mean"]),
    ("hop_ms_p50", lambda r: r["hop_ms"]["p50"]),
    ("hop_ms_p95", lambda r: r["hop_ms"]["p95"]),
    ("hop_ms_p99", lambda r: r["hop_ms"]["p99"]),
    ("hop_ms_max", lambda r: r["hop_ms"]["max"]),
    ("hop_share", lambda r: r["hop_share"]),
    ("wait_share", lambda r: r["wait_share"]),
    ("threads_mean", lambda r: r["threads"]["mean"]),
    ("threads_max", lambda r: r["threads"]["max"]),
    ("new_loops", lambda r: r["new_loops"]["total"]),
    ("pinned_ms_mean", lambda r: (r["pinned_ms"] or {}).get("mean")),
    (
        "top_causes",
        lambda r: "; ".join(
            f"{c['site']}{' @ ' + c['call_site'] if c['call_site'] else ''} ({c['ms']} ms)"
            for c in r["causes"][:CAUSES_SHOWN]
        ),
    ),
    # added after the first release: appended, so existing readers' columns do not move
    ("hop_tax_ms_mean", lambda r: (r["hop_tax_ms"] or {}).get("mean")),
    ("hop_tax_ms_total", lambda r: (r["hop_tax_ms"] or {}).get("total")),
    ("hop_tax_share", lambda r: (r["hop_tax_ms"] or {}).get("share")),
    ("hop_tax_per_hop_us", lambda r: (r["hop_tax_ms"] or {}).get("per_hop_us")),
    ("overhead_ms_total", lambda r: (r["overhead_ms"] or {}).get("total")),
    ("overhead_ms_mean", lambda r: (r["overhead_ms"] or {}).get("mean")),
    ("overhead_ms_p50", lambda r: (r["overhead_ms"] or {}).get("p50")),
    ("overhead_ms_p95", lambda r: (r["overhead_ms"] or {}).get("p95")),
    ("overhead_ms_p99", lambda r: (r["overhead_ms"] or {}).get("p99")),
    ("overhead_share", lambda r: r["overhead_share"]),
    ("work_ms_total", lambda r: (r["work_ms"] or {}).get("total")),
    ("work_ms_mean", lambda r: (r["work_ms"] or {}).get("mean")),
    ("wait_of_overhead", lambda r: r["wait_of_overhead"]),
    ("left_out_count", lambda r: (r["left_out"] or {}).get("count")),
    ("max_in_flight_mean", lambda r: threads.concurrency_mean(r, "max_in_flight")),
    ("db_connections_mean", lambda r: threads.concurrency_mean(r, "db_connections")),
]
_CSV_SITE: Final[list[tuple[str, Callable[[Row], Any]]]] = [
    ("rank", lambda r: r["rank"]),
    ("site", lambda r: r["site"]),
    ("kind", lambda r: r["kind"]),
    ("direction", lambda r: r["direction"]),
    ("call_site", lambda r: r["call_site"]),
    ("requests", lambda r: r["requests"]),
    ("endpoints", lambda r: r["endpoints"]),
    ("count", lambda r: r["count"]),
    ("ms", lambda r: r["ms"]),
    ("ms_per_request", lambda r: r["ms_per_request"]),
    ("count_per_request", lambda r: r["count_per_request"]),
    ("share", lambda r: r["share"]),
    # added after the first release: appended, so existing readers' columns do not move
    ("overhead_ms", lambda r: r["overhead_ms"]),
    ("overhead_per_request", lambda r: r["overhead_per_request"]),
    ("overhead_share", lambda r: r["overhead_share"]),
]


def render_csv(document: Document, out: IO[str]) -> None:
    columns = _CSV_SITE if document["by"] == "site" else _CSV_ENDPOINT
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([name for name, _get in columns])
    for row in document["rows"]:
        writer.writerow([fmt.csv_cell(get(row)) for _name, get in columns])


def render_rich(
    document: Document,
    out: IO[str],
    *,
    width: int | None = None,
    wide: bool = False,
    legend: bool = True,
) -> None:
    """The table for a terminal, fitted to its width (see :mod:`hopwatch.report.table`):
    every row one line, labels cut in the middle, columns left out in their order."""
    from rich.console import Console  # imported here: only the terminal format needs it
    from rich.text import Text

    console = Console(
        file=out, highlight=False, emoji=False, markup=False, width=rich_width(width)
    )
    columns = console.width

    def say(line: str, style: str = "") -> None:
        # a table line is never wrapped (it fits, or --wide asked for its full width)
        console.print(Text(line, style=style), no_wrap=True, overflow="ignore", crop=False)

    console.print(Text(_title(document), style="bold"))
    for line in wrap(summary_line(document), columns):
        say(line)
    console.print(Text(""))
    for line, style in _body_lines(document, columns, wide, legend, rule=True):
        say(line, style)


RENDERERS: Final[dict[str, Callable[[Document, IO[str]], None]]] = {
    "rich": render_rich,
    "text": render_text,
    "json": render_json,
    "markdown": render_markdown,
    "csv": render_csv,
}


#: Formats that lay out a table for people: they take ``wide`` and ``legend``.
TABLE_FORMATS: Final = ("rich", "text", "markdown")


def render(
    document: Document,
    format_name: str,
    out: IO[str],
    *,
    width: int | None = None,
    wide: bool = False,
    legend: bool = True,
) -> None:
    """Write ``document`` in ``format_name``, with the table options where they apply."""
    if format_name in ("rich", "text") and not writes_utf8(out):
        # what the stream cannot encode it writes as escapes: escaped before the table
        # is measured and padded (a C locale's ASCII, PYTHONIOENCODING=ascii, cp1252)
        with fmt.escaped_for(getattr(out, "encoding", None)):
            _render(document, format_name, out, width=width, wide=wide, legend=legend)
        return
    _render(document, format_name, out, width=width, wide=wide, legend=legend)


def _render(
    document: Document,
    format_name: str,
    out: IO[str],
    *,
    width: int | None,
    wide: bool,
    legend: bool,
) -> None:
    if format_name == "rich":
        render_rich(document, out, width=width, wide=wide, legend=legend)
    elif format_name == "text":
        render_text(document, out, width=width, wide=wide, legend=legend)
    elif format_name in TABLE_FORMATS:
        RENDERERS[format_name](document, out, wide=wide, legend=legend)  # type: ignore[call-arg]
    else:
        RENDERERS[format_name](document, out)


def render_to_string(document: Document, format_name: str, **options: Any) -> str:
    buffer = io.StringIO()
    render(document, format_name, buffer, **options)
    return buffer.getvalue()
