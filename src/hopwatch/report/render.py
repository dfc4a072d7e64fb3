"""One function per output format, each taking the report document (see rank.py).

``rich`` (a table for a terminal), ``text`` (plain aligned columns when the
output is not a terminal), ``json`` (the document itself), ``markdown`` (for a
pull request) and ``csv``. Every string that came from a log is cleaned by
:func:`hopwatch.report.text.clean`; rich gets ``Text`` objects, never markup.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import IO, Any, Final

from hopwatch.report import text as fmt
from hopwatch.report import threads

Row = dict[str, Any]
Document = dict[str, Any]

#: Characters of log content shown per cell (json and csv show everything).
LABEL_LIMIT: Final = 80
CAUSES_SHOWN: Final = 3
CAUSE_LIMIT: Final = 60


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


# --- the columns shared by the rich, text and markdown tables ---------------------------
Column = tuple[str, Callable[[Row], str], bool]  # header, cell, right-aligned


def _causes(row: Row, limit: int | None) -> str:
    causes = row["causes"][:CAUSES_SHOWN]
    names = [fmt.short_site(cause["site"], cause["call_site"]) for cause in causes]
    shown = []
    for name, cause in zip(names, causes, strict=True):
        if names.count(name) > 1:  # e.g. a sync-only middleware's two hops, one each way
            name = f"{name} ({cause['direction']})"
        shown.append(f"{fmt.clean(name, CAUSE_LIMIT)} {fmt.percent(cause['share'])}")
    return ", ".join(shown) if shown else "-"


def _endpoint_columns(document: Document) -> list[Column]:
    rows = document["rows"]
    columns: list[Column] = [
        ("#", lambda r: str(r["rank"]), True),
        (
            "view" if document["by"] == "view" else "endpoint",
            lambda r: fmt.clean(r["label"], LABEL_LIMIT),
            False,
        ),
        ("requests", lambda r: fmt.count(r["requests"]), True),
        ("hops/req", lambda r: fmt.mean(r["hops"]["mean"]), True),
        ("max", lambda r: fmt.count(r["hops"]["max"]), True),
        ("p50 ms", lambda r: fmt.ms(r["hop_ms"]["p50"]), True),
        ("p95 ms", lambda r: fmt.ms(r["hop_ms"]["p95"]), True),
        ("p99 ms", lambda r: fmt.ms(r["hop_ms"]["p99"]), True),
        ("hop total", lambda r: fmt.duration(r["hop_ms"]["total"]), True),
        ("hop %", lambda r: fmt.percent(r["hop_share"]), True),
    ]
    if any(row["hop_tax_ms"] for row in rows):
        columns += [
            ("hop tax ms", lambda r: fmt.ms((r["hop_tax_ms"] or {}).get("mean")), True),
            ("tax %", lambda r: fmt.percent((r["hop_tax_ms"] or {}).get("share")), True),
        ]
    columns += [
        ("wait %", lambda r: fmt.percent(r["wait_share"]), True),
        ("threads", lambda r: fmt.mean(r["threads"]["mean"]), True),
        ("new loops", lambda r: fmt.count(r["new_loops"]["total"]), True),
    ]
    if any(row["pinned_ms"] for row in rows):
        columns.append(("pinned ms", lambda r: fmt.ms((r["pinned_ms"] or {}).get("mean")), True))
    columns.append(("top causes", lambda r: _causes(r, CAUSE_LIMIT), False))
    return columns


def _site_columns(document: Document) -> list[Column]:
    def endpoints(row: Row) -> str:
        names = [fmt.clean(e["label"], LABEL_LIMIT) for e in row["top_endpoints"]]
        more = row["endpoints"] - len(names)
        return ", ".join(names) + (f" +{more}" if more > 0 else "")

    return [
        ("#", lambda r: str(r["rank"]), True),
        (
            "cause",
            lambda r: fmt.clean(fmt.short_site(r["site"], r["call_site"]), LABEL_LIMIT),
            False,
        ),
        ("kind", lambda r: fmt.clean(r["kind"], 20), False),
        ("requests", lambda r: fmt.count(r["requests"]), True),
        ("endpoints", lambda r: fmt.count(r["endpoints"]), True),
        ("hops/req", lambda r: fmt.mean(r["count_per_request"]), True),
        ("ms/req", lambda r: fmt.ms(r["ms_per_request"]), True),
        ("total", lambda r: fmt.duration(r["ms"]), True),
        ("share", lambda r: fmt.percent(r["share"]), True),
        ("top endpoints", endpoints, False),
    ]


def _columns(document: Document) -> list[Column]:
    return _site_columns(document) if document["by"] == "site" else _endpoint_columns(document)


#: On a narrow terminal a full table squeezes every column to nothing; these are
#: the columns kept below each width (the first columns say which row it is).
_NARROW: Final = (
    (110, {"#", "endpoint", "view", "cause", "requests", "p95 ms", "hop total", "ms/req",
           "total", "top causes"}),
    (160, {"#", "endpoint", "view", "cause", "kind", "requests", "endpoints", "hops/req",
           "p50 ms", "p95 ms", "hop total", "hop %", "wait %", "ms/req", "total", "share",
           "hop tax ms", "pinned ms", "top causes", "top endpoints"}),
)  # fmt: skip


def _columns_for_width(document: Document, width: int) -> list[Column]:
    columns = _columns(document)
    for below, kept in _NARROW:
        if width < below:
            return [column for column in columns if column[0] in kept]
    return columns


def _title(document: Document) -> str:
    what = "causes" if document["by"] == "site" else f"{document['by']}s"
    return f"hopwatch report: worst {what} by {document['sort']}"


# --- formats ------------------------------------------------------------------------------
def render_json(document: Document, out: IO[str]) -> None:
    # ensure_ascii: log content reaches the terminal only as \u escapes
    json.dump(document, out, indent=2, ensure_ascii=True, allow_nan=False)
    out.write("\n")


def render_text(document: Document, out: IO[str]) -> None:
    columns = _columns(document)
    cells = [[header for header, _cell, _right in columns]]
    cells += [[cell(row) for _header, cell, _right in columns] for row in document["rows"]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    out.write(_title(document) + "\n")
    out.write(summary_line(document) + "\n\n")
    if not document["rows"]:
        out.write("no endpoints to show\n")
        return
    for line in cells:
        parts = []
        for i, (value, (_header, _cell, right)) in enumerate(zip(line, columns, strict=True)):
            last = i == len(columns) - 1
            parts.append(
                value.rjust(widths[i]) if right else value if last else value.ljust(widths[i])
            )
        out.write("  ".join(parts).rstrip() + "\n")
    threads.write_text(document, out)


def render_markdown(document: Document, out: IO[str]) -> None:
    columns = _columns(document)
    out.write(f"### {fmt.markdown_cell(_title(document))}\n\n")
    out.write(fmt.markdown_cell(summary_line(document)) + "\n\n")
    if not document["rows"]:
        out.write("No endpoints to show.\n")
        return
    out.write("| " + " | ".join(fmt.markdown_cell(h) for h, _c, _r in columns) + " |\n")
    out.write("|" + "|".join("---:" if right else "---" for _h, _c, right in columns) + "|\n")
    for row in document["rows"]:
        # cells are already clean()ed; markdown_cell escapes the markup characters
        out.write(
            "| " + " | ".join(fmt.markdown_cell(cell(row)) for _h, cell, _r in columns) + " |\n"
        )
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
]


def render_csv(document: Document, out: IO[str]) -> None:
    columns = _CSV_SITE if document["by"] == "site" else _CSV_ENDPOINT
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([name for name, _get in columns])
    for row in document["rows"]:
        writer.writerow([fmt.csv_cell(get(row)) for _name, get in columns])


def render_rich(document: Document, out: IO[str], *, width: int | None = None) -> None:
    from rich.console import Console  # imported here: only the terminal format needs it
    from rich.table import Table
    from rich.text import Text

    console = Console(file=out, highlight=False, emoji=False, markup=False, width=width)
    columns = _columns_for_width(document, console.width)
    table = Table(
        title=Text(_title(document)),
        caption=Text(summary_line(document)),
        caption_justify="left",
        header_style="bold",
    )
    for header, _cell, right in columns:
        wraps = header in {"endpoint", "view", "cause", "top causes", "top endpoints"}
        table.add_column(
            Text(header), justify="right" if right else "left", no_wrap=not wraps, overflow="fold"
        )
    for row in document["rows"]:
        table.add_row(*(Text(cell(row)) for _header, cell, _right in columns))
    if document["rows"]:
        console.print(table)
    else:
        console.print(Text(summary_line(document)))
        console.print(Text("no endpoints to show"))
    sections = io.StringIO()
    threads.write_text(document, sections)
    if sections.getvalue():
        console.print(Text(sections.getvalue().rstrip("\n")))


RENDERERS: Final[dict[str, Callable[[Document, IO[str]], None]]] = {
    "rich": render_rich,
    "text": render_text,
    "json": render_json,
    "markdown": render_markdown,
    "csv": render_csv,
}


def render_to_string(document: Document, format_name: str) -> str:
    buffer = io.StringIO()
    RENDERERS[format_name](document, buffer)
    return buffer.getvalue()
