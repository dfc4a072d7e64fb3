"""What the report says under its table, as plain lines every renderer can format.

* the legend: each column shown, in one line;
* what the lines left out: crossings in causes past ``SITES_LIMIT`` (never lost
  silently: per-cause numbers are then lower bounds);
* records from before ``overhead_ms`` was written (their overhead is n/a);
* what to change first: the fixable causes with the most overhead over the
  traffic logged, each with its cost and the one-line change from
  docs/causes.md (the same text as ``hopwatch._advice``);
* with ``--endpoint``: that endpoint's numbers, in words.

Log content in these lines has been cleaned by the caller's cells or here
(:func:`hopwatch.report.text.clean`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from hopwatch._cli import wrap as wrap_words
from hopwatch.report import text as fmt
from hopwatch.report.table import Layout, legend

Row = dict[str, Any]
Document = dict[str, Any]


def wrap(line: str, width: int | None, indent: str = "") -> list[str]:
    """``line`` wrapped at ``width`` (None: as is), continuation lines indented."""
    if width is None or len(line) <= width:
        return [line]
    return wrap_words(line, width, indent) or [line]


def legend_lines(layout: Layout, width: int | None) -> list[str]:
    entries = legend(layout)
    if not entries:
        return []
    pad = max(len(header) for header, _meaning in entries) + 2
    lines = ["columns:"]
    for header, meaning in entries:
        lines += wrap(f"  {header.ljust(pad)}{meaning}", width, " " * (pad + 2))
    return lines


def left_out_lines(left: Row | None, width: int | None) -> list[str]:
    """The crossings in causes the lines left out (a summary's or a row's ``left_out``)."""
    if not left:
        return []
    overhead = ""
    if left["overhead_ms"] is not None:
        overhead = f", {fmt.duration(left['overhead_ms'])} of overhead"
        if left["overhead_share"] is not None:
            overhead += f" ({fmt.percent(left['overhead_share'])})"
    line = (
        f"left out of the lines: {fmt.count(left['count'])} crossings"
        f" ({fmt.percent(left['share'])} of all){overhead}, in"
        f" {fmt.counted(left['requests'], 'request')} whose line listed only its top causes"
        ' (SITES_LIMIT): the causes\' counts are lower bounds. Raise HOPWATCH["SITES_LIMIT"]'
        " to see them."
    )
    return wrap(line, width, "  ")


#: The columns of whole crossings (hop_ms), what lines without overhead_ms carry: the
#: table's totals (route, view, site) first, else its per-request column (--endpoint).
_WHOLE_CROSSINGS = ("hop_total", "ms_total", "hop_mean", "ms_mean")


def missing_overhead_lines(document: Document, layout: Layout, width: int | None) -> list[str]:
    """How many records carry no overhead_ms, what the overhead columns are over then,
    and what the hop column the table shows (``layout``) measures."""
    summary = document["summary"]
    reported = summary["reported"]
    carrying = summary.get("overhead_records", 0)
    if not reported or carrying >= reported:
        return []
    lacking = reported - carrying
    ranked = " and the rows are ranked by hop time" if document["sort"] == "total" else ""
    # a rolling upgrade: old and new lines in the same rows, their overhead over the new
    over = (
        f"the overhead and work columns count only the {carrying:,} that carry it (n/a in a"
        " row with none)"
        if carrying
        else "their overhead reads n/a"
    )
    line = (
        f"{lacking:,} of {reported:,} records carry no overhead_ms (written by a hopwatch"
        f" before it): {over}{ranked}."
    )
    shown = {column.key: column.header for column in layout.columns}
    hop = next((shown[key] for key in _WHOLE_CROSSINGS if key in shown), None)
    if hop is not None:  # not when the width left it out
        line += f" {hop} is whole crossings, the code inside them included."
    return wrap(line, width, "  ")


def _fixable_traffic(document: Document) -> str:
    """The requests the what-to-change list is ranked over (rank.build_document): the one
    endpoint's with --endpoint, else every endpoint's, the rows --top and --min-requests
    leave out included."""
    rows = document["rows"]
    if document.get("endpoint") is not None and rows:
        row = rows[0]
        return f", over the {fmt.counted(row['requests'], 'request')} of {fmt.clean(row['label'])}"
    requests = document["summary"].get("requests")
    if not requests:
        return ""
    hidden = document["groups"]["total"] - len(rows) if document["by"] != "site" else 0
    if hidden > 0:
        what = "view" if document["by"] == "view" else "endpoint"
        what += "" if hidden == 1 else "s"
        return (
            f", over all {fmt.counted(requests, 'request')} logged, the {hidden:,} {what}"
            " not shown included"
        )
    return f", over the {fmt.counted(requests, 'request')} logged"


class FixableItem(NamedTuple):
    """One cause of the what-to-change list, its parts as the text says them (cleaned):
    ``{name} ({kind}{ at call}): {cost}{where}``; ``first``: the number of the item that
    first gave its advice (this one's, or an earlier one's that says the same)."""

    name: str
    kind: str
    call_site: str | None
    cost: str
    where: str
    advice: str
    first: int


def fixable_items(document: Document) -> tuple[str, list[FixableItem]]:
    """The what-to-change list, the text's and the page's alike: what it is ranked by
    (``crossing overhead``) and its causes."""
    causes = document.get("fixable") or []
    if not causes:
        return "", []
    by_overhead = any(cause["overhead_ms"] is not None for cause in causes)
    measure = "crossing overhead" if by_overhead else "hop time: no line carries overhead_ms"
    items = []
    said: dict[str, int] = {}  # advice key -> the number that first gave it
    # a cause listed both ways (a sync-only middleware's two hops) says which is which
    places = [(cause["site"], cause["call_site"]) for cause in causes]
    for number, cause in enumerate(causes, 1):
        name = fmt.clean(fmt.short_site(cause["site"], None))
        if cause["overhead_ms"] is not None:
            cost = (
                f"{fmt.ms(cause['overhead_per_request'])} ms per request,"
                f" {fmt.duration(cause['overhead_ms'])} in all"
            )
            share = cause["overhead_share"]
        else:
            cost = f"{fmt.ms(cause['ms_per_request'])} ms of hop time per request"
            share = cause["share"]
        if share is not None:
            cost += f" ({fmt.percent(share)})"
        endpoints = cause.get("endpoints")
        where = f", {endpoints} endpoint{'s' if endpoints != 1 else ''}" if endpoints else ""
        kind = fmt.clean(cause["kind"])
        if places.count((cause["site"], cause["call_site"])) > 1:
            kind += f", {fmt.clean(cause['direction'])}"
        hooks = cause.get("sites")
        if hooks:  # Django's own middleware hooks as one item: how many, the first by name
            named = ", ".join(fmt.clean(fmt.short_site(hook, None)) for hook in hooks[:3])
            more = cause["hooks"] - 3
            kind += f", {cause['hooks']} hooks: {named}{f' and {more} more' if more > 0 else ''}"
        call_site = fmt.clean(cause["call_site"]) if cause["call_site"] else None
        advice = cause["advice"]
        first = said.setdefault(advice["key"], number)
        items.append(FixableItem(name, kind, call_site, cost, where, advice["summary"], first))
    return measure, items


def fixable_lines(document: Document, width: int | None) -> list[str]:
    measure, items = fixable_items(document)
    if not items:
        return []
    over = _fixable_traffic(document)
    lines = wrap(f"what to change first (ranked by {measure}{over}):", width, "  ")
    for number, item in enumerate(items, 1):
        call = f" at {item.call_site}" if item.call_site is not None else ""
        line = f"  {number}. {item.name} ({item.kind}{call}): {item.cost}{item.where}"
        lines += wrap(line, width, "     ")
        if item.first == number:
            about = "(docs/causes.md in hopwatch's source distribution)"
            lines += wrap(f"     {item.advice} {about}", width, "     ")
        else:
            lines.append(f"     The same change as {item.first}.")
    return lines


def endpoint_facts(row: Row, value: Callable[[Any], str] = fmt.clean) -> list[str]:
    """One endpoint's numbers in words (--endpoint), above its causes: one fact a line,
    the endpoint's label first. ``value`` makes text from a log safe where the words
    around it are the report's (the text's ``fmt.clean``, the page's ``bdi``)."""
    lines = [value(row["label"])]
    if row.get("view") and row["label"] != row["view"]:
        lines.append(f"view {value(row['view'])}")

    def each(counts: dict[str, int]) -> str:
        return ", ".join(f"{value(key)} x{fmt.count(number)}" for key, number in counts.items())

    crossings = fmt.mean(row["hops"]["mean"])
    lines.append(
        f"{fmt.counted(row['requests'], 'request')} ({each(row['interfaces'])}; statuses"
        f" {each(row['statuses'])}); {crossings} {fmt.noun(crossings, 'crossing')} per"
        f" request (at most {fmt.count(row['hops']['max'])})"
    )
    overhead = row.get("overhead_ms")
    if overhead is not None:
        per_hop = overhead.get("per_hop_us")
        price = f"; {fmt.us(per_hop)} per crossing" if per_hop is not None else ""
        lines.append(
            f"crossing overhead: {fmt.ms(overhead['mean'])} ms per request (p50"
            f" {fmt.ms(overhead['p50'])}, p95 {fmt.ms(overhead['p95'])}, p99"
            f" {fmt.ms(overhead['p99'])}), {fmt.duration(overhead['total'])} in all,"
            f" {fmt.percent(row['overhead_share'])} of the requests' time{price}"
        )
        lines.append(
            f"work inside the crossings: {fmt.ms(row['work_ms']['mean'])} ms per request"
            " (it stays when the hops go)"
        )
    else:
        lines.append(
            "crossing overhead: n/a (no line carries overhead_ms); whole crossings"
            f" {fmt.ms(row['hop_ms']['mean'])} ms per request, the code inside included"
        )
    pinned = row.get("pinned_ms")
    if pinned and pinned["mean"]:
        by = ", ".join(value(entry["site"]) for entry in pinned["by"])
        lines.append(
            f"a worker thread held {fmt.ms(pinned['mean'])} ms per request while async work"
            f" ran (by {by})"
        )
    tax = row.get("hop_tax_ms")
    if tax:
        lines.append(
            f"at this host's price of a no-op hop ({fmt.us(tax['per_hop_us'])}):"
            f" {fmt.ms(tax['mean'])} ms per request"
        )
    new_loops = row["new_loops"]["total"]
    if new_loops:
        lines.append(
            f"{fmt.counted(new_loops, 'new event loop')} (async_to_sync with no loop to go"
            " to: the cold path)"
        )
    return lines


def endpoint_lines(row: Row, width: int | None) -> list[str]:
    """One endpoint's numbers in words (--endpoint), above its causes: the terminal's and
    markdown's form of :func:`endpoint_facts`, the facts under the label indented."""
    label, *facts = endpoint_facts(row)
    lines = [label, *("  " + line for line in facts)]
    return [part for line in lines for part in wrap(line, width, "    ")]


__all__ = [
    "FixableItem",
    "endpoint_facts",
    "endpoint_lines",
    "fixable_items",
    "fixable_lines",
    "left_out_lines",
    "legend_lines",
    "missing_overhead_lines",
    "wrap",
]
