"""``--format html``: the report as one self-contained page.

The page needs nothing at view time: its CSS and its few lines of JavaScript
(sortable tables) are inline, the charts are SVG drawn by
:mod:`~hopwatch.report.svg`, and a Content-Security-Policy forbids loading
anything and runs only the page's own script (by its hash: the same page for the same
input, every run). Sections:

* the ranked endpoints, with per endpoint a bar of crossing overhead then work in
  crossings against the request's time, pinned time below it, and a sparkline of
  its hops per request;
* the distribution of hops per request over every request read;
* the top fixable causes, ranked by their overhead, and what to change for them
  (:mod:`hopwatch._advice`);
* the timeline of the slowest detailed request of each endpoint, or of the
  request chosen with ``--request-id``.

Every chart has an accessible name saying which endpoint or request it shows, and
the figures its hover titles give are on the page as text too (a sparkline's name;
a table under the histogram and under each timeline), for the keyboard and screen
readers. A box that scrolls sideways on a phone is a tab stop, named.

The report document is embedded as JSON (``<script type="application/json"
id="hopwatch-report">``), for tools. Everything from a log is escaped by
:mod:`~hopwatch.report.markup`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from importlib import metadata, resources
from typing import IO, Any, Final

from hopwatch.report import notes, render, svg, table
from hopwatch.report import text as fmt
from hopwatch.report.aggregate import SiteKey, at_resolution
from hopwatch.report.markup import bdi, esc, script_json
from hopwatch.report.picture import (
    HOP_BIN_EDGES,
    K_COUNT,
    K_MEASURED,
    K_MS,
    K_OVERHEAD,
    K_REQUESTS,
    TIMELINES_SHOWN,
    EndpointPicture,
    GroupKey,
    Kept,
    Picture,
    bin_label,
    cause_order,
    chosen_timelines,
    groups_by,
    row_group,
)
from hopwatch.report.rank import DJANGO_HOOKS
from hopwatch.report.rank import fixable as _fixable
from hopwatch.report.table import cause_labels
from hopwatch.report.timeline import Timeline, layout

Row = dict[str, Any]
Document = dict[str, Any]
Cell = tuple[str, str, str]  # (html, sort value, css class)

#: Causes listed in "top fixable causes".
CAUSES_SHOWN: Final = 10
#: Characters of a label shown in a cell (the full text is in its title).
LABEL_LIMIT: Final = 120


def unfixable(kind: str, site: str, direction: str | None = None) -> str | None:
    """Why a cause has nothing to change in the app's code (docs/causes.md), or None.
    Which causes those are is the report's one rule (``rank.fixable``)."""
    if _fixable(kind, site, direction):
        return None
    from hopwatch._advice import site_advice

    named = site_advice(kind, site)
    if named is not None and named.keep:
        return named.keep
    if kind == "response":
        return "Django closes every response through sync_to_async under ASGI"
    return "it stays while Django's own receivers are sync"


def _version() -> str:
    try:
        return metadata.version("hopwatch")
    except metadata.PackageNotFoundError:  # run from a checkout without installing
        return "(not installed)"


def _asset(name: str) -> str:
    return resources.files("hopwatch.report").joinpath("assets", name).read_text("utf-8")


def script_source(script: str) -> str:
    """The Content-Security-Policy source that lets the inline ``script`` run and no
    other: its SHA-256 (a nonce would make every run's page differ). A browser hashes
    the element's text as parsed, in UTF-8: a carriage return is a newline there."""
    text = script.replace("\r\n", "\n").replace("\r", "\n")
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def _num(value: float | None) -> str:
    """A sort value for a data-v attribute ("" when unknown)."""
    return "" if value is None else repr(round(float(value), 6))


def _table(table_id: str, headers: list[tuple[str, str, str]], rows: Iterable[list[Cell]]) -> str:
    """A sortable table. headers: (text, sort, title); sort: "num" (a number column),
    "text", "bar" (a chart sorted as a number) or "" (not sortable)."""
    head = []
    for text, kind, title in headers:
        css = ' class="n"' if kind == "num" else ""
        typed = f' data-type="{"num" if kind == "bar" else kind}"' if kind else ""
        inner = f"<button type=button>{esc(text)}</button>" if kind else esc(text)
        head.append(f'<th{css}{typed} title="{esc(title)}">{inner}</th>')
    body = []
    for index, cells in enumerate(rows):
        tds = "".join(
            f'<td{f" class={css}" if css else ""} data-v="{esc(value)}">{content}</td>'
            for content, value, css in cells
        )
        body.append(f'<tr data-i="{index}">{tds}</tr>')
    return _wide(
        f'<table class="sortable" id="{table_id}"><thead><tr>{"".join(head)}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _wide(content: str, name: str | None = None) -> str:
    """A table or chart wider than a phone: scrolled sideways in its own box there (the
    page's CSS), so that the page keeps its width and the chart its text size. A chart's
    box (nothing in it takes the focus) is a tab stop named ``name``, so that the keyboard
    scrolls it too."""
    if name is None:
        return f'<div class="wide">{content}</div>'
    return f'<div class="wide" tabindex="0" role="group" aria-label="{esc(name)}">{content}</div>'


def _data_table(
    kind: str, summary: str, headers: list[tuple[str, str]], rows: Iterable[list[str]]
) -> str:
    """A chart's figures as a table of class ``kind``, folded under it (``<details>``):
    headers (text, "n" for a number column), rows of cells' HTML. The cells are aligned
    and wrapped by the page's CSS, by column (a class on each cell of 2,000 crossings
    would be a tenth of the page)."""
    head = "".join(f'<th{f" class={css}" if css else ""} scope=col>{esc(text)}</th>'
                   for text, css in headers)  # fmt: skip
    body = "".join(
        "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>" for cells in rows
    )
    table = f'<table class="{kind}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return (
        f'<details class="data"><summary>{esc(summary)}</summary>{_wide(table, summary)}</details>'
    )


def _ms(value: float | None) -> Cell:
    return (esc(fmt.ms(value)), _num(value), "n")


def _count(value: float | None) -> Cell:
    return (esc(fmt.count(value)), _num(value), "n")


def _mean(value: float | None) -> Cell:
    return (esc(fmt.mean(value)), _num(value), "n")


def _total(value: float | None) -> Cell:
    return (esc(fmt.duration(value)), _num(value), "n")


def _label(shown: str, title: str) -> Cell:
    return (f'<span title="{esc(title)}">{esc(shown, LABEL_LIMIT)}</span>', fmt.clean(shown), "l")


# --- endpoints ------------------------------------------------------------------------
def _bar(
    request_ms: float | None,
    split: tuple[float, float] | None,
    unsplit: float | None,
    pinned: float | None,
    scale: float,
) -> str:
    """Per request: the request's time (track), crossing overhead then work, pinned below."""

    def pct(value: float) -> str:
        return f"{min(100.0, 100 * value / scale):.2f}%"

    def width(value: float) -> str:
        # A time too short for a pixel at this scale still shows, as a sliver.
        return f"width:{pct(value)};min-width:1px" if value > 0 else f"width:{pct(value)}"

    def seg(kind: str, left: float, value: float) -> str:
        return f'<span class="seg {kind}" style="left:{pct(left)};{width(value)}"></span>'

    parts, title = [], []
    if request_ms:
        parts.append(f'<span class="track" style="width:{pct(request_ms)}"></span>')
    if split is not None:
        overhead, work = split
        parts.append(seg("overhead", 0.0, overhead))
        parts.append(seg("work", overhead, work))
        title.append(f"crossing overhead {fmt.ms(overhead)} ms, then work {fmt.ms(work)} ms")
    elif unsplit is not None:
        parts.append(seg("unsplit", 0.0, unsplit))
        title.append(f"time in crossings {fmt.ms(unsplit)} ms (lines without overhead_ms)")
    if pinned:
        parts.append(f'<span class="pinned" style="{width(pinned)}"></span>')
        title.append(f"a thread pinned {fmt.ms(pinned)} ms")
    if request_ms:
        title.append(f"of a {fmt.ms(request_ms)} ms request")
    return f'<div class="bar" title="{esc("; ".join(title))}">{"".join(parts)}</div>'


_ENDPOINT_HEADERS: Final = [
    ("#", "num", "rank by the report's sort key"),
    ("requests", "num", "requests logged (a sampled line counts 1 / sample_rate)"),
    ("hops/req", "num", "mean crossings per request"),
    ("hops per request", "", "how many requests made how many crossings (hover a bar)"),
    ("max hops", "num", "the most crossings one request made"),
    ("overhead ms/req", "num", "crossing overhead per request: each crossing's queue wait plus"
     " its hand-off back, nested crossings once; what removing hops saves"),
    ("work ms/req", "num", "the code that ran inside the crossings, per request (nested"
     " crossings once): it stays when the hops go"),
    ("pinned ms/req", "num", "time a sync worker thread was held while async work ran"),
    ("request ms", "num", "mean request duration"),
    ("per request", "bar", "crossing overhead then work, on the request's time (grey);"
     " below, pinned time (it overlaps the two). One scale for every row"),
    ("overhead, all requests", "num", "crossing overhead summed over the requests (a sampled"
     " line counts 1 / sample_rate): the report's overhead total"),
]  # fmt: skip


def _endpoint_rows(document: Document, groups: dict[GroupKey, EndpointPicture]) -> list[list[Cell]]:
    facts = []
    for row in document["rows"]:
        stats = groups.get(row_group(row, document["by"])) or EndpointPicture()
        split = (stats.overhead / stats.split, stats.work / stats.split) if stats.split else None
        facts.append((row, stats, split))
    scale = max(
        [1e-9]
        + [row["duration_ms"]["mean"] or 0.0 for row, _s, _p in facts]
        + [row["hop_ms"]["mean"] or 0.0 for row, _s, _p in facts]
        + [sum(split) for _r, _s, split in facts if split is not None]
    )
    rows = []
    for row, stats, split in facts:
        overhead, work = split if split is not None else (None, None)
        pinned = (row["pinned_ms"] or {}).get("mean")
        request_ms = row["duration_ms"]["mean"]
        unsplit = row["hop_ms"]["mean"] if split is None else None
        title = row["label"]
        if stats.split and stats.split < stats.records:
            title += f" (overhead and work over the {stats.split:,} of {stats.records:,} lines"
            title += " that carry them)"
        bar = _bar(request_ms, split, unsplit, pinned, scale)
        rows.append(
            [
                (str(row["rank"]), _num(row["rank"]), "n"),
                _label(row["label"], title),
                _count(row["requests"]),
                _mean(row["hops"]["mean"]),
                (svg.sparkline(stats.hop_bins, fmt.clean(row["label"], LABEL_LIMIT)), "", ""),
                _count(row["hops"]["max"]),
                _ms(overhead),
                _ms(work),
                _ms(pinned),
                _ms(request_ms),
                (bar, _num(overhead if overhead is not None else unsplit), ""),
                # the document's total (weighted as requests are), not a mean x requests:
                # the same figure as in every other format
                _total((row["overhead_ms"] or {}).get("total")),
            ]
        )
    return rows


def _endpoints_section(document: Document, groups: dict[GroupKey, EndpointPicture]) -> str:
    what = "views" if document["by"] == "view" else "endpoints"
    if not document["rows"]:
        return f'<section id="endpoints"><h2>Endpoints</h2><p>No {what} to show.</p></section>'
    headers = list(_ENDPOINT_HEADERS)
    headers.insert(1, ("view" if what == "views" else "endpoint", "text", "METHOD route, or view"))
    legend = (
        '<p class="note"><span class="swatch overhead"></span>crossing overhead'
        '<span class="swatch work"></span>work in crossings'
        '<span class="swatch pinned"></span>pinned thread (overlaps the two)'
        '<span class="swatch track"></span>request time'
        '<span class="swatch unsplit"></span>time in crossings, not split (older lines).'
        " Per request, one scale for every row. Click a column's name to sort by it.</p>"
    )
    table = _table("endpoint-table", headers, _endpoint_rows(document, groups))
    return (
        f'<section id="endpoints"><h2>Endpoints <small>the worst {what} by'
        f" {esc(document['sort'])}</small></h2>{legend}{table}</section>"
    )


def _sites_section(document: Document) -> str:
    """--by site: the document's rows are causes."""
    headers = [
        ("#", "num", "rank"),
        ("cause", "text", "the site, with the call site for orm and other"),
        ("kind", "text", "the kind of cause"),
        ("requests", "num", "requests that listed it"),
        ("endpoints", "num", "endpoints where it appears"),
        ("hops/req", "num", "its crossings per request that had it"),
        ("ms/req", "num", "its time per request that had it"),
        ("total", "num", "its summed time"),
        ("share", "num", "its share of all hop time"),
    ]
    rows = []
    # a cause listed both ways (a sync-only middleware's two hops) says which is which
    names = cause_labels(document["rows"], directions=True)
    for row, name in zip(document["rows"], names, strict=True):
        full = f"{row['site']} ({row['direction']})"
        full += f" at {row['call_site']}" if row["call_site"] else ""
        rows.append(
            [
                (str(row["rank"]), _num(row["rank"]), "n"),
                _label(name, full),
                (esc(row["kind"]), fmt.clean(row["kind"]), ""),
                _count(row["requests"]),
                _count(row["endpoints"]),
                _mean(row["count_per_request"]),
                _ms(row["ms_per_request"]),
                _total(row["ms"]),
                (esc(fmt.percent(row["share"])), _num(row["share"]), "n"),
            ]
        )
    return (
        f'<section id="endpoints"><h2>Causes <small>by {esc(document["sort"])}, across'
        f" endpoints</small></h2>{_table('site-table', headers, rows)}</section>"
    )


# --- hops per request ---------------------------------------------------------------------
def _hops_section(
    groups: dict[GroupKey, EndpointPicture],
    endpoints: list[tuple[str, list[int]]],
    what: str,
    whose: str | None = None,
) -> str:
    """groups: the requests counted (every request read, or --endpoint's); endpoints: each
    row's label and hop bins (its sparkline), in the table's order; what: "endpoint" or
    "view"; whose: --endpoint's label (None: every request read)."""
    bins = [0] * len(HOP_BIN_EDGES)
    for stats in groups.values():
        bins = [a + b for a, b in zip(bins, stats.hop_bins, strict=True)]
    total = sum(bins)
    if not total:
        return '<section id="hops"><h2>Hops per request</h2><p>No requests.</p></section>'
    read = "every request read" if whose is None else f"the requests of {fmt.clean(whose)}"
    read_html = "every request read" if whose is None else f"the requests of {bdi(whose)}"
    running, median, high = 0, "", ""
    for index, count in enumerate(bins):
        running += count
        if not median and running * 2 >= total:
            median = bin_label(index)
        if not high and running * 100 >= total * 95:
            high = bin_label(index)
    counts = _data_table(
        "bins",
        "the histogram as a table",
        [("hops in one request", ""), ("requests", "n"), ("share", "n")],
        (
            [esc(bin_label(index)), esc(fmt.count(count)), esc(fmt.percent(count / total))]
            for index, count in enumerate(bins)
            if count
        ),
    )
    if endpoints:
        counts += _data_table(
            "sparks",
            f"each {what}'s hops per request (the sparklines) as a table",
            [(what, ""), ("requests by hops in one request", "")],
            ([esc(label, LABEL_LIMIT), esc(svg.bin_counts(row))] for label, row in endpoints),
        )
    chart = _wide(svg.histogram(bins), f"histogram of hops per request, {read}")
    return (
        f'<section id="hops"><h2>Hops per request <small>{read_html}'
        f"</small></h2><p>{esc(fmt.counted(total, 'logged request'))}: half made"
        f" {esc(median)} {fmt.noun(median, 'crossing')} or fewer, 95% made {esc(high)} or"
        f" fewer.</p>{chart}{counts}</section>"
    )


# --- causes ---------------------------------------------------------------------------------
def _advice_text(summary: str) -> str:
    from hopwatch._advice import code_spans

    return "".join(
        f"<code>{esc(piece)}</code>" if is_code else esc(piece)
        for piece, is_code in code_spans(summary)
    )


_CAUSE_HEADERS: Final = [
    ("#", "num", "rank by crossing overhead over all requests"),
    ("cause", "text", "the site; for orm and other, with the call site in your code"),
    ("kind", "text", "middleware, view, orm, signal, response, stream, exception, other"),
    ("requests", "num", "requests that listed it"),
    ("hops/req", "num", "its crossings per request that had it"),
    ("overhead ms/req", "num", "its crossing overhead (queue wait plus hand-off back) per"
     " request that had it: what removing it saves"),
    ("overhead, all requests", "num", "its crossing overhead summed over the requests"
     " that listed it (a sampled line counts 1 / sample_rate)"),
    ("time ms/req", "num", "its crossings' whole time per request, the work inside included"),
    ("what to change", "text", "the advice below"),
]  # fmt: skip


def _django_hooks_as_one(
    fixable: list[tuple[SiteKey, list[float]]], measured: bool, sync: frozenset[SiteKey]
) -> tuple[list[tuple[SiteKey, list[float]]], dict[SiteKey, list[str]]]:
    """Django's own middleware hooks as one cause, as "what to change first" lists them
    (``rank.DJANGO_HOOKS``): crossings, time and overhead summed, requests the most-listed
    hook's, ranked among the others in the same order; and that cause's key -> its hooks'
    sites, most overhead first. ``sync``: the causes listed under sync handlers only."""
    from hopwatch._advice import MIDDLEWARE_HOOK, advice_for

    hooks = [
        item
        for item in fixable
        if advice_for(item[0][1], item[0][0], item[0][2], sync_handler=item[0] in sync)
        is MIDDLEWARE_HOOK
    ]
    if not hooks:
        return fixable, {}
    summed = [0.0] * len(hooks[0][1])
    for _key, entry in hooks:
        for index, value in enumerate(entry):
            if index in (K_REQUESTS, K_MEASURED):
                summed[index] = max(summed[index], value)
            else:
                summed[index] += value
    first = hooks[0][0]
    key: SiteKey = (DJANGO_HOOKS, first[1], first[2], None)
    rest = [item for item in fixable if item not in hooks] + [(key, summed)]
    rest.sort(key=cause_order)
    if not measured:
        rest.sort(key=lambda item: (-at_resolution(item[1][K_MS]), item[0][0]))
    return rest, {key: [hook_key[0] for hook_key, _entry in hooks]}


def _causes_section(picture: Picture, sync: frozenset[SiteKey]) -> str:
    """``sync``: the causes listed under sync handlers only (rank.sync_handler_causes)."""
    from hopwatch._advice import MIDDLEWARE_HOOK, advice_for  # asgiref, never Django

    ranked = sorted(picture.causes.items(), key=cause_order)
    measured = any(entry[K_MEASURED] for _key, entry in ranked)
    if not measured:  # lines from before sites[].overhead_ms: by time in crossings
        ranked.sort(key=lambda item: (-at_resolution(item[1][K_MS]), item[0][0]))
    fixable, grouped = _django_hooks_as_one(
        [item for item in ranked if unfixable(item[0][1], item[0][0], item[0][2]) is None],
        measured,
        sync,
    )
    rows = []
    # each piece of advice once, below the table: the causes it is for, their overhead
    advice_for_causes: dict[str, tuple[Any, dict[str, None], list[float]]] = {}
    for rank, ((site, kind, direction, call_site), entry) in enumerate(fixable[:CAUSES_SHOWN], 1):
        requests = entry[K_REQUESTS]
        per_request = entry[K_OVERHEAD] / entry[K_MEASURED] if entry[K_MEASURED] else None
        # what the report's causes give as overhead_ms: the sum over the entries that carry
        # it, not the mean x every request (which counts lines without it at the mean)
        total = entry[K_OVERHEAD] if entry[K_MEASURED] else None
        name = fmt.short_site(site, call_site)
        key = (site, kind, direction, call_site)
        advice = advice_for(kind, site, direction, sync_handler=key in sync, call_site=call_site)
        hooks = grouped.get(key)
        if hooks is not None:  # Django's own middleware hooks, one row (rank.DJANGO_HOOKS)
            advice = MIDDLEWARE_HOOK
        _advice, names, overhead = advice_for_causes.setdefault(advice.key, (advice, {}, [0.0]))
        names[name] = None
        overhead[0] += total or 0.0
        full = f"{bdi(site, 300)} ({bdi(direction)})"
        full += f" at {bdi(call_site, 300)}" if call_site else ""
        if hooks is not None:
            full = f"{esc(fmt.counted(len(hooks), 'hook'))}: " + ", ".join(map(bdi, hooks))
        rows.append(
            [
                (str(rank), str(rank), "n"),
                (f'{esc(name, LABEL_LIMIT)}<div class="full">{full}</div>',
                 fmt.clean(name), "l"),
                (esc(kind), fmt.clean(kind), ""),
                _count(requests),
                _mean(entry[K_COUNT] / requests),
                _ms(per_request),
                _total(total),
                _ms(entry[K_MS] / requests),
                (f'<a href="#advice-{advice.key}">{esc(advice.title)}</a>', advice.title, ""),
            ]
        )  # fmt: skip
    advice_html = "".join(
        f'<div class="advice" id="advice-{advice.key}"><h3>{esc(advice.title)}</h3>'
        f"<p>{_advice_text(advice.summary)}</p><p class=note>For "
        f"{', '.join(bdi(name, LABEL_LIMIT) for name in names)}"
        + (f"; {esc(fmt.duration(total[0]))} of overhead over all requests" if total[0] else "")
        + ". More in docs/causes.md in hopwatch's source distribution,"
        + f" {esc(advice.section.lstrip('# '))}.</p></div>"
        for advice, names, total in advice_for_causes.values()
    )
    notes = []
    if not measured and ranked:
        notes.append(
            "These lines carry no sites[].overhead_ms (an older hopwatch): the causes are"
            " ranked by their crossings' whole time, the work inside included."
        )
    left_out: dict[str, dict[str, None]] = {}
    for (site, kind, direction, _call_site), _entry in ranked:
        reason = unfixable(kind, site, direction)
        if reason is not None:
            left_out.setdefault(reason, {})[site] = None
    for reason, sites in left_out.items():
        shown = ", ".join(f"<code>{bdi(site)}</code>" for site in list(sites)[:5])
        more = f" and {len(sites) - 5} more" if len(sites) > 5 else ""
        notes.append(f"Not listed, as there is nothing to change in your code: {shown}{more}"
                     f" ({esc(reason)}).")  # fmt: skip
    if picture.sites_dropped_lines:
        notes.append(
            f"{fmt.counted(picture.sites_dropped_lines, 'line')} left causes out (SITES_LIMIT):"
            " their smallest causes are not counted here."
        )
    if picture.other_causes[K_REQUESTS]:
        notes.append(
            f"Past {len(picture.causes):,} distinct causes, the smallest are summed, not listed."
        )
    body = (
        _table("cause-table", _CAUSE_HEADERS, rows) + advice_html
        if rows
        else "<p>No causes in these lines (they list no sites).</p>"
    )
    note_html = "".join(f'<p class="note">{note}</p>' for note in notes)
    return (
        '<section id="causes"><h2>Top fixable causes <small>by crossing overhead, across'
        f" endpoints</small></h2>{body}{note_html}</section>"
    )


def _endpoint_causes_section(document: Document) -> str:
    """--endpoint: that endpoint's causes, every one the report lists for it, and what to
    change first, as the other formats give them: the text's columns (table.CAUSE_COLUMNS,
    a column's legend its header's title) and list (notes.fixable_items)."""
    row = document["rows"][0]
    ranked = [{**cause, "rank": rank} for rank, cause in enumerate(row["causes"], 1)]
    names = cause_labels(ranked, directions=False)
    causes = [{**cause, "label": name} for cause, name in zip(ranked, names, strict=True)]
    columns = table.cause_columns(document, causes)
    headers = [(column.header, "", column.legend) for column in columns]
    rows = [
        [
            (
                esc(column.whole(cause) if column.whole is not None else column.cell(cause), 300),
                "",
                "n" if column.right else ("l" if column.key == "label" else ""),
            )
            for column in columns
        ]
        for cause in causes
    ]
    whose = bdi(row["label"], LABEL_LIMIT)
    body = (
        _table("cause-table", headers, rows)
        if rows
        else "<p>No causes in these lines (they list no sites).</p>"
    )
    measure, items = notes.fixable_items(document)
    listed = []
    for number, item in enumerate(items, 1):
        call = f" at {bdi(item.call_site)}" if item.call_site is not None else ""
        if item.first == number:
            advice = (
                f"<p>{_advice_text(item.advice)} (docs/causes.md in hopwatch's source"
                " distribution)</p>"
            )
        else:
            advice = f'<p class="note">The same change as {item.first}.</p>'
        listed.append(
            f"<li>{bdi(item.name)} ({esc(item.kind)}{call}): {esc(item.cost)}"
            f"{esc(item.where)}{advice}</li>"
        )
    fixable = (
        f"<h3>What to change first <small>ranked by {esc(measure)}, over the"
        f" {esc(fmt.counted(row['requests'], 'request'))} of {whose}</small></h3>"
        f'<ol class="fixable">{"".join(listed)}</ol>'
        if listed
        else ""
    )
    left = "".join(
        f'<p class="note">{esc(line)}</p>' for line in notes.left_out_lines(row["left_out"], None)
    )
    return (
        f'<section id="causes"><h2>Causes <small>of {whose}, by crossing overhead</small></h2>'
        f"{body}{left}{fixable}</section>"
    )


# --- timelines --------------------------------------------------------------------------
def _timeline_figure(heading: str, kept: Kept, why: str, number: int) -> str:
    chart = layout(kept)
    # the page's words, escaped; every value from the line isolated (bdi)
    facts = [
        f"request {bdi(kept.request_id)}",
        bdi(kept.timestamp[:23] + "Z"),
        f"status {bdi(kept.status) if kept.status is not None else 'none'}",
        bdi(kept.interface),
        f"{esc(fmt.ms(kept.duration_ms))} ms",
        esc(fmt.counted(kept.hops, "hop")),
    ]
    if kept.overhead_ms is not None and kept.work_ms is not None:
        facts.append(
            esc(f"crossing overhead {fmt.ms(kept.overhead_ms)} ms, work {fmt.ms(kept.work_ms)} ms")
        )
    if kept.pinned_ms:
        facts.append(esc(f"a thread pinned {fmt.ms(kept.pinned_ms)} ms"))
    notes = "".join(f'<p class="note">{esc(note)}</p>' for note in chart.notes)
    request = fmt.clean(kept.request_id, 40)
    which = f"{fmt.clean(heading, LABEL_LIMIT)}, request {request}"
    threads = len(chart.lanes)
    name = (
        f"timeline of {which}: {fmt.counted(len(chart.bars), 'crossing')} on"
        f" {fmt.counted(threads, 'thread')}, listed in the table below it"
    )
    drawing = _wide(svg.timeline(chart, name), f"timeline of {which}")
    # The caption first, the heading in it (a caption between other children is none),
    # and the figure's name by aria-labelledby: Chromium takes no name from a caption.
    return (
        f'<figure class="timeline-figure" aria-labelledby="timeline-{number}">'
        f'<figcaption id="timeline-{number}"><h3>{bdi(heading, LABEL_LIMIT)} <small>'
        f'{esc(why)}</small></h3><p class="facts">{" · ".join(facts)}</p></figcaption>'
        f"{drawing}{_crossings_table(chart)}{notes}</figure>"
    )


#: The crossings' table; page.css aligns and wraps its cells by column (.crossings).
_CROSSING_HEADERS: Final = [
    ("called at ms", "n"), ("cause", ""), ("direction", ""), ("called from", ""),
    ("thread", ""), ("queued ms", "n"), ("ran ms", "n"), ("handed back ms", "n"), ("notes", ""),
]  # fmt: skip


def _crossings_table(chart: Timeline) -> str:
    """The timeline's crossings as text, in the order they were called: what hovering
    each bar shows."""
    rows = (
        [
            esc(fmt.ms(bar.call)),
            f"{bdi(bar.crossing.kind)}: {bdi(bar.crossing.site, 300)}",
            esc(bar.crossing.direction),
            esc(bar.crossing.call_site or "", 300),
            esc(chart.lanes[bar.lane].name),
            esc(fmt.ms(bar.crossing.wait_ms)),
            esc(fmt.ms(bar.crossing.run_ms)),
            esc(fmt.ms(bar.crossing.resume_ms)),
            esc(", ".join(svg.crossing_notes(bar))),
        ]
        for bar in sorted(chart.bars, key=lambda bar: (bar.call, bar.index))
    )
    return _data_table(
        "crossings",
        f"the {fmt.counted(len(chart.bars), 'crossing')} as a table",
        _CROSSING_HEADERS,
        rows,
    )


_TIMELINE_LEGEND: Final = (
    '<p class="note"><span class="swatch wait"></span>queued'
    '<span class="swatch s2a"></span>running sync code (sync_to_async)'
    '<span class="swatch a2s"></span>running async code (async_to_sync)'
    '<span class="swatch handoff"></span>handing back. One lane per thread; each crossing'
    " from its call to its resume, on the thread that ran its code, with a dashed line"
    " from where it was called; crossings overlapping on one thread (nested, or queued"
    " behind another) are drawn one below the other; a red outline: its code raised."
    " Hover a crossing for its cause and times, or open the table under the timeline.</p>"
)


def _timelines_section(
    document: Document, picture: Picture, groups: dict[GroupKey, EndpointPicture]
) -> str:
    chosen = chosen_timelines(document, picture, groups)
    notes = []
    if not picture.detail_lines:
        notes.append(
            "No line in this input has a detail list. Turn detail mode on"
            ' (<code>HOPWATCH = {"DETAIL": True}</code>, on a staging host) to see the'
            " requests' crossings on a timeline."
        )
    if picture.undrawable_lines:
        notes.append(
            f"{fmt.counted(picture.undrawable_lines, 'line')}"
            f" {fmt.noun(picture.undrawable_lines, 'has', 'have')} a detail list without at_ms"
            " (logged by an older hopwatch): their crossings cannot be placed in time."
        )
    with_one = sum(1 for stats in groups.values() if stats.timeline is not None)
    if picture.request_id is None and with_one > len(chosen) == TIMELINES_SHOWN:
        notes.append(
            f"The first {TIMELINES_SHOWN} endpoints with one are drawn;"
            " <code>--request-id ID</code> draws any other request."
        )
    figures = "".join(_timeline_figure(*item, number) for number, item in enumerate(chosen, 1))
    note_html = "".join(f'<p class="note">{note}</p>' for note in notes)
    return (
        '<section id="timelines"><h2>Timelines <small>requests logged in detail mode'
        f"</small></h2>{_TIMELINE_LEGEND if chosen else ''}{note_html}{figures}</section>"
    )


# --- the page -----------------------------------------------------------------------------
def _endpoint_facts(row: Row) -> str:
    """--endpoint: the endpoint's numbers in words (notes.endpoint_facts), each value from
    the log isolated (bdi) among the page's words."""
    facts = "".join(f"<p>{line}</p>" for line in notes.endpoint_facts(row, bdi))
    return f'<section id="endpoint">{facts}</section>'


def _heading(document: Document, isolate: Callable[[Any], str]) -> str:
    """The page's heading as HTML; ``isolate`` escapes --endpoint's value (text from a log)
    and sets it apart from the words around it: bdi in the h1, FSI...PDI in <title>,
    which holds no elements."""
    if document.get("endpoint") is not None:
        return f"hopwatch report: {isolate(document['endpoint'])}, cause by cause"
    what = "causes" if document["by"] == "site" else f"{document['by']}s"
    return esc(f"hopwatch report: worst {what} by {document['sort']}")


def _first_strong_isolated(value: Any) -> str:
    # U+2068 FIRST STRONG ISOLATE ... U+2069 POP DIRECTIONAL ISOLATE: <bdi> for a title
    return f"\u2068{esc(value)}\u2069"


def render_html(
    document: Document,
    picture: Picture,
    out: IO[str],
    *,
    now: datetime | None = None,
    sync_causes: frozenset[SiteKey] = frozenset(),
) -> None:
    """Write the page for ``document`` and the ``picture`` read with it. ``sync_causes``:
    the causes listed under sync handlers only, whose advice is a sync handler's
    (rank.sync_handler_causes of the report's partial)."""
    by = document["by"]
    groups = groups_by(picture, by if by != "site" else "route")
    whose = None
    if document.get("endpoint") is not None and document["rows"]:
        # --endpoint: the page is that endpoint's, as the other formats' report is
        row = document["rows"][0]
        whose = row["label"]
        mine = row_group(row, by)
        groups = {key: stats for key, stats in groups.items() if key == mine}
    script = _asset("page.js")
    policy = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src {script_source(script)}; base-uri 'none'; form-action 'none'"
    )
    title = _heading(document, _first_strong_isolated)
    heading = _heading(document, bdi)
    moment = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    out.write(
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(policy)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{title}</title><style>{_asset('page.css')}</style></head><body>"
        f"<header><h1>{heading}</h1>"
        f'<p class="summary" id="summary">{esc(render.summary_line(document))}</p>'
        '<nav><a href="#endpoints">endpoints</a><a href="#hops">hops per request</a>'
        f'<a href="#causes">{"causes" if whose is not None else "fixable causes"}</a>'
        '<a href="#timelines">timelines</a></nav>'
        "</header>"
    )
    out.write(_sites_section(document) if by == "site" else _endpoints_section(document, groups))
    if whose is not None:
        out.write(_endpoint_facts(row))
    endpoints = []
    if by != "site":
        for row in document["rows"]:
            stats = groups.get(row_group(row, by))
            if stats is not None and any(stats.hop_bins):
                endpoints.append((row["label"], stats.hop_bins))
    what = "view" if by == "view" else "endpoint"
    out.write(_hops_section(groups, endpoints, what, whose))
    if whose is not None:
        out.write(_endpoint_causes_section(document))
    else:
        out.write(_causes_section(picture, sync_causes))
    out.write(_timelines_section(document, picture, groups))
    out.write(
        f"<footer>Made by hopwatch {esc(_version())} on {esc(moment)}. Crossing overhead is"
        " each crossing's queue wait plus its hand-off back; work is the code that ran inside"
        " the crossings (nested crossings counted once); pinned time overlaps both. See"
        " docs/report.md in hopwatch's source distribution.</footer>"
        f'<script type="application/json" id="hopwatch-report">{script_json(document)}'
        f"</script><script>{script}</script>"
        "</body></html>\n"
    )
