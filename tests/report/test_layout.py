"""The terminal table fits any width from 80 columns: every row one line, labels cut in the
middle (never wrapped), columns left out in their documented order, --wide shows all."""

from __future__ import annotations

import io
import itertools
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from hopwatch.report import rank, render, table
from hopwatch.report.aggregate import Partial
from hopwatch.report.scan import Scanner
from tests.helpers import in_terminal
from tests.report.samples import SESSION, line, site

SRC = Path(__file__).resolve().parents[2] / "src"
WIDTHS = (80, 100, 120, 160, 220)
LONG = "/api/v1/organisations/<slug:organisation>/members/<int:member_id>/permissions/"
ROUTES = ["/", "/items/<int:pk>/", "/search/", LONG, "/api/v1/orders/<uuid:order>/lines/"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def lines_for(route: str, index: int) -> list[str]:
    sites = [
        site(SESSION, count=2, ms=1.2, overhead_ms=0.6),
        site("QuerySet.aget", "orm", 5, 3.0, call_site=f"shop/views.py:{40 + index} in detail",
             overhead_ms=1.0),
        site("myproject.middleware.LegacyAuditMiddleware", count=1, ms=2.0, overhead_ms=0.3),
    ]  # fmt: skip
    return [
        line(
            route=route,
            view=f"shop.views.view_{index}",
            hops=8,
            hop_ms=6.2,
            overhead_ms=1.9 + index / 10,
            work_ms=4.3,
            duration_ms=20.0,
            pinned_ms=1.5 if index == 3 else 0.0,
            pinned_by="myproject.middleware.LegacyAuditMiddleware" if index == 3 else None,
            new_loops=1 if index == 2 else 0,
            hop_tax_us=80.0,
            sites=sites,
        )
    ] * (index + 2)


def document(**options: Any) -> dict[str, Any]:
    scanner = Scanner(Partial())
    texts = [text for index, route in enumerate(ROUTES) for text in lines_for(route, index)]
    scanner.feed_lines([text.encode() for text in texts])
    return rank.build_document(scanner.finish(), rank.ReportOptions(**options), ["x"])


def rendered(doc: dict[str, Any], width: int, **options: Any) -> list[str]:
    buffer = io.StringIO()
    render.render_rich(doc, buffer, width=width, **options)
    return buffer.getvalue().splitlines()


def table_part(output: list[str]) -> tuple[str, list[str]]:
    """The header and the data rows (each row starts with its rank)."""
    start = next(i for i, text in enumerate(output) if text.lstrip().startswith("#  "))
    rows = []
    for text in output[start + 2 :]:
        if not text.strip():
            break
        rows.append(text)
    return output[start], rows


@pytest.mark.parametrize("width", WIDTHS)
def test_the_table_fits_the_width_with_every_row_on_one_line(width):
    doc = document()
    output = rendered(doc, width)
    assert max(len(text) for text in output) <= width
    header, rows = table_part(output)
    assert len(rows) == len(doc["rows"]) == len(ROUTES)
    for number, text in enumerate(rows, 1):
        assert re.match(rf"\s*{number}  ", text), text  # one line per row, in rank order
    for never in ("#", "endpoint", "ovh/req", "overhead"):
        assert f" {never} " in f" {header} "


@pytest.mark.parametrize("width", WIDTHS)
def test_labels_are_whole_or_cut_in_the_middle(width):
    doc = document()
    _header, rows = table_part(rendered(doc, width))
    for row, text in zip(doc["rows"], rows, strict=True):
        label = row["label"]
        if label in text:
            continue
        assert width < 120 or len(label) > table.LABEL_FIT, (width, label)
        shown = text.split("  ", 2)[1]  # after the rank
        head, _, tail = shown.strip().partition("…")
        assert label.startswith(head) and label.endswith(tail) and head and tail, shown
    # short labels are never cut
    for row, text in zip(doc["rows"], rows, strict=True):
        if len(row["label"]) <= 30:
            assert row["label"] in text


def test_columns_leave_in_the_documented_order():
    doc = document()
    shown = {}
    for width in WIDTHS:
        header, _rows = table_part(rendered(doc, width))
        shown[width] = {c.header for c in table.columns(doc) if f" {c.header} " in f" {header} "}
    for narrow, wide in itertools.pairwise(WIDTHS):
        assert shown[narrow] <= shown[wide], (narrow, wide)  # wider never shows fewer
    everything = {column.header for column in table.columns(doc)}
    assert shown[220] == everything
    order = [c.header for c in sorted((c for c in table.columns(doc) if c.drop), key=lambda c: c.drop)]
    for width in WIDTHS:
        gone = everything - shown[width]
        assert gone == set(order[: len(gone)]), width  # the first ones in the drop order
    assert everything - shown[80]  # 80 columns do leave some out


def test_wide_shows_every_column_at_full_width():
    doc = document()
    header, rows = table_part(rendered(doc, 80, wide=True))
    for column in table.ENDPOINT_COLUMNS:
        if column.shown(doc["rows"]):
            assert column.header in header
    assert any(LONG in text for text in rows)  # nothing cut


def test_the_legend_explains_each_column_and_can_be_left_out():
    doc = document()
    output = rendered(doc, 120)
    header, _rows = table_part(output)
    legend_start = output.index("columns:")
    legend = "\n".join(output[legend_start:])
    for column in table.columns(doc):
        if f" {column.header} " in f" {header} " and column.key != "rank":
            assert f"  {column.header}  " in legend
    assert "columns:" not in rendered(doc, 120, legend=False)


def _pty_run(width: int, path: Path, *options: str) -> list[str]:
    """``hopwatch report`` in a real terminal (a pty) ``width`` columns wide."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(PYTHONPATH=str(SRC), TERM="xterm-256color")
    command = [sys.executable, "-m", "hopwatch", "report", str(path), *options]
    status, output, stderr = in_terminal(command, env, columns=width)
    assert status == 0, stderr
    text = ANSI.sub("", output.decode())
    return text.replace("\r\n", "\n").splitlines()


@pytest.mark.parametrize("width", [80, 160])
def test_in_a_real_terminal(tmp_path, width):
    log = tmp_path / "app.log"
    texts = [text for index, route in enumerate(ROUTES) for text in lines_for(route, index)]
    log.write_text("\n".join(texts) + "\n")
    output = _pty_run(width, log)
    assert max(len(text) for text in output) <= width
    header, rows = table_part(output)
    assert len(rows) == len(ROUTES) and "ovh/req" in header


@pytest.mark.parametrize("width", [80, 160])
def test_format_text_in_a_real_terminal_fits_it_too(tmp_path, width):
    """--format text on a terminal is the plain table fitted to it, as auto without rich
    (it was every column, at full width: lines of 600 characters on 80 columns)."""
    log = tmp_path / "app.log"
    texts = [text for index, route in enumerate(ROUTES) for text in lines_for(route, index)]
    log.write_text("\n".join(texts) + "\n")
    output = _pty_run(width, log, "--format", "text")
    assert max(len(text) for text in output) <= width
    (header,) = [text for text in output if text.startswith("#  endpoint ")]
    rows = [text for text in output if re.match(r"\d+  GET /", text)]
    assert len(rows) == len(ROUTES) and "ovh/req" in header


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(
    "options", [{"by": "site"}, {"by": "view"}, {"endpoint": f"GET {LONG}"}], ids=str
)
def test_every_view_of_the_report_fits(width, options):
    doc = document(**options)
    output = rendered(doc, width)
    assert max(len(text) for text in output) <= width
    _header, rows = table_part(output)
    expected = len(doc["rows"][0]["causes"]) if "endpoint" in options else len(doc["rows"])
    assert len(rows) >= expected  # --by site adds the left-out row when there is one


def _columns(text: str) -> int:
    """Terminal columns of ``text`` (wide CJK characters take two)."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(char) in ("W", "F") else 1 for char in text)


@pytest.mark.parametrize("width", WIDTHS)
def test_wide_characters_take_two_columns_and_rows_stay_aligned(width):
    """A route in CJK script is measured in terminal columns, not characters: rows
    neither overflow the width nor shift the columns after the label."""
    wide = ["/直播/<slug:room>/", "/api/v1/直播間/" + "頻道" * 30 + "/<int:pk>/"]
    scanner = Scanner(Partial())
    routes = ROUTES[:2] + wide
    texts = [text for index, route in enumerate(routes) for text in lines_for(route, index)]
    scanner.feed_lines([text.encode() for text in texts])
    doc = rank.build_document(scanner.finish(), rank.ReportOptions(), ["x"])
    output = rendered(doc, width)
    assert max(_columns(text) for text in output) <= width
    header, rows = table_part(output)
    after_label = re.match(r"\s*#\s+endpoint\s+(\S+)", header)
    assert after_label is not None, header
    end = _columns(header[: after_label.end(1)])
    assert len(rows) == 4
    for text in rows:
        first = re.match(r"\s*\d+\s+GET \S+\s+(\d[\d,.]*)", text)
        assert first is not None, text
        # the column after the label ends where its header does, whatever the label's script
        assert _columns(text[: first.end(1)]) == end, text


UNITS = ("µs", "ms", "s ", "s,", "s)", "s;")


def split_from_its_unit(lines: list[str]) -> list[tuple[str, str]]:
    return [
        (before, after)
        for before, after in itertools.pairwise(lines)
        if before.rstrip()[-1:].isdigit() and after.strip().startswith(UNITS)
    ]


def test_a_number_is_never_wrapped_apart_from_its_unit():
    """At 80 columns "what to change first" read "..., 512.8" and then "ms in all (3.3%)"
    on the next line; the summary can wrap the same way ("106 µs to 125" / "µs")."""
    doc = document()
    seen = 0
    for width in range(60, 131):
        for output in (rendered(doc, width), text_rendered(doc, width)):
            assert split_from_its_unit(output) == [], width
            seen += sum(" ms " in line or " µs" in line for line in output)
    assert seen  # the prose does carry numbers with units
    assert split_from_its_unit(["a 512.8", "  ms in all"]) == [("a 512.8", "  ms in all")]


def text_rendered(doc: dict[str, Any], width: int) -> list[str]:
    buffer = io.StringIO()
    render.render_text(doc, buffer, width=width)
    return buffer.getvalue().splitlines()


def _taxed_document(*, carried: bool, routes: list[str], **options: Any) -> dict[str, Any]:
    """Lines that carry hop_tax_us (MEASURE_HOP_TAX) or none (priced by --hop-tax)."""
    scanner = Scanner(Partial())
    texts = [
        text.replace('"hop_tax_us":80.0', '"hop_tax_us":80.0' if carried else '"hop_tax_us":null')
        for index, route in enumerate(routes)
        for text in lines_for(route, index)
    ]
    scanner.feed_lines([text.encode() for text in texts])
    return rank.build_document(scanner.finish(), rank.ReportOptions(**options), ["x"])


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("routes", [ROUTES[:3], ROUTES], ids=["short labels", "long labels"])
@pytest.mark.parametrize(
    "carried, options", [(False, {"hop_tax_us": 231.0}), (True, {})], ids=["--hop-tax", "lines"]
)
def test_the_hop_tax_column_is_shown_at_80_columns(width, routes, carried, options):
    """The price the user asked for (--hop-tax, or MEASURE_HOP_TAX's hop_tax_us) is the
    last column left out: 80 columns show tax/req, even beside a label cut to fit."""
    doc = _taxed_document(carried=carried, routes=routes, **options)
    assert all(row["hop_tax_ms"] for row in doc["rows"])
    output = rendered(doc, width)
    assert max(len(text) for text in output) <= width
    header, rows = table_part(output)
    assert " tax/req" in header, header
    assert len(rows) == len(routes)
    if not carried:  # 231 us x 8 hops
        assert all(" 1.848" in text for text in rows), rows
    legend = "\n".join(output[output.index("columns:") :])
    assert "  tax/req  " in legend


def test_without_a_price_the_narrow_table_is_unchanged():
    doc = _taxed_document(carried=False, routes=ROUTES[:3])
    header, _rows = table_part(rendered(doc, 80))
    assert "tax/req" not in header and "requests" in header and "hops/req" in header


def test_hop_tax_in_a_real_terminal_80_columns(tmp_path):
    log = tmp_path / "app.log"
    texts = [text for index, route in enumerate(ROUTES[:3]) for text in lines_for(route, index)]
    log.write_text("\n".join(texts) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(PYTHONPATH=str(SRC), TERM="xterm-256color")
    command = [sys.executable, "-m", "hopwatch", "report", str(log), "--hop-tax", "231"]
    status, output, stderr = in_terminal(command, env, columns=80)
    assert status == 0, stderr
    text = ANSI.sub("", output.decode()).replace("\r\n", "\n").splitlines()
    assert max(len(line) for line in text) <= 80
    header, _rows = table_part(text)
    assert "tax/req" in header and "priced at 231 µs" in " ".join(text)
