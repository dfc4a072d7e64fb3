"""The page's charts as inline SVG: a request's timeline, the hops histogram, sparklines.

Drawn here rather than by a plotting library: a few hundred lines, no JavaScript,
and every label escaped by :func:`~hopwatch.report.markup.esc`. Hovering a
bar shows its ``<title>`` (the cause and its times). Each chart is one image to
assistive technology, named by what it shows (``label``); the page gives the same
figures as text beside it (html.py), for the keyboard and screen readers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

from hopwatch.report import text as fmt
from hopwatch.report.markup import esc
from hopwatch.report.picture import bin_label
from hopwatch.report.timeline import SYNC_TO_ASYNC, Bar, Timeline

# Timeline geometry, in SVG units (pixels at full width).
LABEL_W: Final = 200
PLOT_W: Final = 1000
AXIS_H: Final = 34
ROW_H: Final = 20
BAR_H: Final = 14
LANE_PAD: Final = 5
#: Average width of a label's character, to cut labels to their bar.
CHAR_W: Final = 6.2


def nice_step(span: float, parts: int) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about ``parts`` ticks."""
    raw = span / max(parts, 1)
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next((m * power for m in (1, 2, 5) if m * power >= raw), 10 * power)


def _tick_label(tick: float, step: float) -> str:
    if tick == 0:
        return "0"
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{tick:.{decimals}f} ms"


def crossing_notes(bar: Bar) -> list[str]:
    """What else a crossing's tooltip (and the page's table of crossings) says of it."""
    c = bar.crossing
    extra = [f"depth {c.depth}"]
    if c.direction == SYNC_TO_ASYNC and c.thread_sensitive is not None:
        extra.append(f"thread_sensitive={c.thread_sensitive}")
    if c.new_loop:
        extra.append("on a new event loop")
    if c.outcome != "ok":
        extra.append(f"outcome: {c.outcome}")
    return extra


def _bar_title(bar: Bar, lane_name: str) -> list[str]:
    """The lines of a crossing's tooltip."""
    c = bar.crossing
    lines = [f"{c.direction} · {c.kind}: {c.site}"]
    if c.call_site:
        lines.append(f"called from {c.call_site}")
    lines.append(
        f"called at {fmt.ms(bar.call)} ms; queued {fmt.ms(c.wait_ms)} ms, ran"
        f" {fmt.ms(c.run_ms)} ms, handed back {fmt.ms(c.resume_ms)} ms"
    )
    extra = crossing_notes(bar)
    extra.insert(1, f"ran on the {lane_name}")
    lines.append(", ".join(extra))
    return lines


def _bar(bar: Bar, top: float, x: Callable[[float], float], lane_name: str) -> str:
    c = bar.crossing
    left, start, end, right = x(bar.call), x(bar.start), x(bar.end), x(bar.resume)
    if right - left < 1:  # too short to see: one pixel, drawn as the run
        start, end, right = left, left + 1, left + 1
    direction = "s2a" if c.direction == SYNC_TO_ASYNC else "a2s"
    klass = "crossing error" if c.outcome == "error" else "crossing"
    parts = [
        f'<g class="{klass}" data-index="{bar.index}">'
        f"<title>{'&#10;'.join(esc(text) for text in _bar_title(bar, lane_name))}</title>"
    ]
    for css, low, high in (("wait", left, start), (f"run {direction}", start, end),
                           ("handoff", end, right)):  # fmt: skip
        if high - low >= 0.4 or (css.startswith("run") and high > low):
            parts.append(
                f'<rect class="{css}" x="{low:.2f}" y="{top:.1f}" width="{high - low:.2f}" '
                f'height="{BAR_H}"/>'
            )
    room = int((right - left - 6) / CHAR_W)
    if room >= 4:
        label = esc(fmt.short_site(c.site, c.call_site), room)
        parts.append(f'<text x="{left + 3:.1f}" y="{top + BAR_H - 3.5:.1f}">{label}</text>')
    parts.append("</g>")
    return "".join(parts)


def timeline(chart: Timeline, label: str = "timeline of the request") -> str:
    """The request's lanes, one per thread, and a bar per crossing (see report.timeline);
    ``label``: its accessible name (which request it is)."""
    span = chart.span_ms
    lanes = chart.lanes
    tops = []
    y = AXIS_H
    for lane in lanes:
        tops.append(y)
        y += lane.rows * ROW_H + 2 * LANE_PAD
    height = y + 4
    width = LABEL_W + PLOT_W + 16

    def x(ms: float) -> float:
        return LABEL_W + PLOT_W * ms / span

    def row_y(lane: int, row: int) -> float:
        return tops[lane] + LANE_PAD + row * ROW_H + (ROW_H - BAR_H) / 2

    parts = []
    for index, lane in enumerate(lanes):
        lane_h = lane.rows * ROW_H + 2 * LANE_PAD
        if index % 2 == 0:
            parts.append(
                f'<rect class="lane-band" x="0" y="{tops[index]}" width="{width}" '
                f'height="{lane_h}"/>'
            )
        middle = tops[index] + min(lane_h / 2, LANE_PAD + ROW_H)
        parts.append(
            f'<text class="lane-name" x="6" y="{middle - 2:.1f}">{esc(lane.name, 30)}</text>'
            f'<text class="lane-thread" x="6" y="{middle + 10:.1f}">{esc(lane.detail, 36)}'
            "</text>"
        )
    parts.append('<g class="axis">')
    step = nice_step(span, 8)
    ticks = int(span / step + 1e-9)
    for number in range(ticks + 1):
        tick = number * step
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{AXIS_H - 16}" x2="{x(tick):.1f}" y2="{height}"/>'
            f'<text x="{x(tick):.1f}" y="{AXIS_H - 20}" text-anchor="middle">'
            f"{esc(_tick_label(tick, step))}</text>"
        )
    parts.append("</g>")
    duration = chart.kept.duration_ms
    parts.append(
        f'<rect class="request" x="{x(0):.1f}" y="{AXIS_H - 12}" '
        f'width="{max(1.0, x(duration) - x(0)):.1f}" height="5"><title>'
        f"{esc(f'the request, {fmt.ms(duration)} ms')}</title></rect>"
    )
    # connectors first, so that the bars are drawn over them
    for bar in chart.bars:
        if bar.caller_lane is None or bar.caller_lane == bar.lane:
            continue
        caller_y = tops[bar.caller_lane] + LANE_PAD + ROW_H / 2
        parent = bar.crossing.parent
        if parent is not None and 0 <= parent < len(chart.bars):
            enclosing = chart.bars[parent]
            if enclosing.lane == bar.caller_lane:  # from inside its parent's bar
                caller_y = row_y(enclosing.lane, enclosing.row) + BAR_H / 2
        target_y = row_y(bar.lane, bar.row) + BAR_H / 2
        parts.append(
            f'<line class="connector" x1="{x(bar.call):.1f}" y1="{caller_y:.1f}" '
            f'x2="{x(bar.call):.1f}" y2="{target_y:.1f}"/>'
        )
    for bar in sorted(chart.bars, key=lambda b: (b.lane, b.row, b.call)):
        parts.append(_bar(bar, row_y(bar.lane, bar.row), x, lanes[bar.lane].name))
    return (
        f'<svg class="timeline" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{esc(label)}">'
        f"{''.join(parts)}</svg>"
    )


def histogram(bins: list[int]) -> str:
    """Requests by hops per request, one bar per bin up to the last one used."""
    total = sum(bins)
    last = max((i for i, count in enumerate(bins) if count), default=0)
    shown = bins[: max(last, 1) + 1]
    top = max(max(shown), 1)
    width, height, left, bottom = 900, 170, 48, 34
    plot_w, plot_h = width - left - 10, height - bottom - 10
    step = plot_w / len(shown)
    every = max(1, math.ceil(36 / step))  # a label every so many bins, so that none touch
    parts = [
        f'<line x1="{left}" y1="{10 + plot_h}" x2="{width - 10}" y2="{10 + plot_h}"/>',
        f'<text x="{left - 6}" y="16" text-anchor="end">{top:,}</text>',
        f'<text x="{left - 6}" y="{10 + plot_h}" text-anchor="end">0</text>',
    ]
    for index, count in enumerate(shown):
        x = left + index * step
        label = bin_label(index)
        if count:
            bar_h = max(1.0, plot_h * count / top)
            tip = (
                f"{fmt.counted(count, 'request')} ({count / total:.1%}) made {label}"
                f" {fmt.noun(label, 'hop')}"
            )
            parts.append(
                f'<rect x="{x + 1:.1f}" y="{10 + plot_h - bar_h:.1f}" width="{step - 2:.1f}" '
                f'height="{bar_h:.1f}"><title>{esc(tip)}</title></rect>'
            )
        if index % every == 0:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{10 + plot_h + 14}" '
                f'text-anchor="middle">{esc(label)}</text>'
            )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 2}" text-anchor="middle">'
        "crossings (hops) in one request</text>"
    )
    return (
        f'<svg class="hist" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="histogram of hops per request">{"".join(parts)}</svg>'
    )


def bin_counts(bins: list[int]) -> str:
    """The used bins as text: ``1 hop: 3 requests; 17-24 hops: 1 request``."""
    return "; ".join(
        f"{bin_label(index)} {fmt.noun(bin_label(index), 'hop')}: {fmt.counted(count, 'request')}"
        for index, count in enumerate(bins)
        if count
    )


def sparkline(bins: list[int], label: str = "") -> str:
    """A small histogram of hops per request, from the first bin used to the last; its
    accessible name says whose (``label``) and every count."""
    used = [i for i, count in enumerate(bins) if count]
    if not used:
        return ""
    first, last = used[0], used[-1]
    shown = bins[first : last + 1]
    top = max(shown)
    rects = []
    for offset, count in enumerate(shown):
        if count:
            bar_h = max(1.5, 18 * count / top)
            hops = bin_label(first + offset)
            tip = f"{fmt.counted(count, 'request')} made {hops} {fmt.noun(hops, 'hop')}"
            rects.append(
                f'<rect x="{4 * offset}" y="{18 - bar_h:.1f}" width="3.2" height="{bar_h:.1f}">'
                f"<title>{esc(tip)}</title></rect>"
            )
    name = f"hops per request of {label}" if label else "hops per request"
    return (
        f'<svg class="spark" width="{max(4 * len(shown), 8)}" height="18" role="img" '
        f'aria-label="{esc(f"{name}: {bin_counts(bins)}")}">{"".join(rects)}</svg>'
    )
