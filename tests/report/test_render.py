"""Every format escapes what came from a log: no terminal control, no markup injection."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import pytest

from hopwatch.report import rank, render, table
from hopwatch.report.aggregate import Partial
from hopwatch.report.scan import Scanner
from hopwatch.report.text import clean, csv_cell, markdown_cell
from tests.report.samples import line, plain_line, site

HOSTILE = (
    "<i>|a|`b`*c*_d_&amp; [bold red]x[/] \x1b[2J\x1b]8;;http://evil\x07link\x9b31m \u202eevil\u202c"
)
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def hostile_document(by: str = "route") -> dict[str, Any]:
    text = json.dumps(
        {
            **json.loads(line()),
            "route": HOSTILE,
            "view": HOSTILE,
            "sites": [site(HOSTILE, HOSTILE, call_site=HOSTILE)],
        }
    )
    scanner = Scanner(Partial())
    scanner.feed_lines([text.encode()])
    return rank.build_document(scanner.finish(), rank.ReportOptions(by=by), ["x"])


@pytest.mark.parametrize("by", ["route", "view", "site"])
@pytest.mark.parametrize("format_name", ["text", "markdown", "csv", "json"])
def test_no_control_characters_reach_the_output(by: str, format_name: str) -> None:
    output = render.render_to_string(hostile_document(by), format_name)
    assert not CONTROL.search(output.replace("\n", "")), repr(output)


@pytest.mark.parametrize("by", ["route", "site"])
def test_rich_prints_log_content_literally(by: str) -> None:
    buffer = io.StringIO()
    render.render_rich(hostile_document(by), buffer, width=400)
    output = buffer.getvalue()
    assert "[bold red]x[/]" in output  # markup shown, not applied
    assert "\\x1b[2J" in output and "\x1b" not in output
    assert not CONTROL.search(output.replace("\n", ""))


def test_rich_on_a_terminal_styles_only_its_own_text() -> None:
    from rich.console import Console

    buffer = io.StringIO()
    document = hostile_document()
    Console(file=buffer, force_terminal=True, width=300)  # what render_rich builds on
    render.render_rich(document, buffer, width=300)
    assert "\x1b]8;;http://evil" not in buffer.getvalue()


def test_markdown_cells_cannot_inject_markup() -> None:
    output = render.render_to_string(hostile_document(), "markdown")
    table_rows = [row for row in output.splitlines() if row.startswith("| 1 |")]
    assert len(table_rows) == 1
    cells = re.split(r"(?<!\\)\|", table_rows[0])[1:-1]
    assert len(cells) == len(table.layout(hostile_document()).columns)
    assert "<i>" not in output and "\\<i\\>" in output
    assert "\\`b\\`" in output and "\\*c\\*" in output and "\\_d\\_" in output
    assert "\\&amp;" in output
    # ~~ would strike text through and www. become a link in GitHub's markdown
    scanner = Scanner(Partial())
    scanner.feed_lines(
        [
            plain_line(request_id="a", route="/~~old~~/", view="shop.views.old").encode(),
            plain_line(request_id="b", route="/go/www.example.com/", view="shop.views.go").encode(),
        ]
    )
    document = rank.build_document(scanner.finish(), rank.ReportOptions(), ["x"])
    rows = render.render_to_string(document, "markdown").splitlines()
    cells = "| 4.0 | 2.000 | 2.0 ms | request\\_started 100.0% |"
    assert f"| 1 | GET /go/www\\.example.com/ | 1 {cells}" in rows
    assert f"| 2 | GET /\\~\\~old\\~\\~/ | 1 {cells}" in rows


def test_csv_guards_against_formulas_and_round_trips() -> None:
    assert csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_cell("-1+1") == "'-1+1" and csv_cell(-1) == -1 and csv_cell(None) == ""
    output = render.render_to_string(hostile_document(), "csv")
    rows = list(csv.reader(io.StringIO(output)))
    assert rows[1][2] == clean(HOSTILE)


def test_json_is_ascii_and_keeps_the_exact_value() -> None:
    output = render.render_to_string(hostile_document(), "json")
    assert output.isascii()
    assert json.loads(output)["rows"][0]["route"] == HOSTILE


def test_clean_escapes_and_cuts() -> None:
    assert clean("a\x1bb\tc\x9bd\u202ee\ud800") == "a\\x1bb\\x09c\\x9bd\\u202ee\\ud800"
    assert clean("x" * 10, 5) == "xxxx…"
    assert markdown_cell("a|b\\c") == "a\\|b\\\\c"


def test_empty_reports_render_in_every_format() -> None:
    document = rank.build_document(Partial(), rank.ReportOptions(), [])
    for format_name in render.RENDERERS:
        buffer = io.StringIO()
        if format_name == "rich":
            render.render_rich(document, buffer, width=100)
        else:
            render.RENDERERS[format_name](document, buffer)
        assert buffer.getvalue()


def test_a_denormal_hop_time_gives_no_infinite_share() -> None:
    scanner = Scanner(Partial())
    scanner.feed_lines([line(hop_ms=5e-324, duration_ms=5e-324).encode()])
    document = rank.build_document(scanner.finish(), rank.ReportOptions(), ["x"])
    row = document["rows"][0]
    assert row["wait_share"] is None and row["hop_share"] is None
    for format_name in ("text", "markdown", "csv", "json"):
        assert "inf" not in render.render_to_string(document, format_name).lower()


def test_a_narrow_terminal_keeps_the_columns_that_name_the_rows() -> None:
    texts = [line(route=f"/api/items/{name}/") for name in ("alpha", "beta", "gamma")]
    scanner = Scanner(Partial())
    scanner.feed_lines([text.encode() for text in texts])
    document = rank.build_document(scanner.finish(), rank.ReportOptions(), ["x"])
    for width in (60, 80, 120, 200):
        buffer = io.StringIO()
        render.render_rich(document, buffer, width=width)
        assert all(name in buffer.getvalue() for name in ("alpha", "beta", "gamma")), width


def test_a_cause_shown_twice_says_which_way_each_hop_went() -> None:
    legacy = "myproject.middleware.LegacyMiddleware"
    text = line(
        sites=[
            site(legacy, ms=2.0, direction="sync_to_async"),
            site(legacy, ms=1.0, direction="async_to_sync"),
            site("request_started", "signal", ms=0.5),
        ]
    )
    scanner = Scanner(Partial())
    scanner.feed_lines([text.encode()])
    document = rank.build_document(scanner.finish(), rank.ReportOptions(), ["x"])
    out = render.render_to_string(document, "text")
    assert (
        "middleware.LegacyMiddleware (sync_to_async) 47.8%, "
        "middleware.LegacyMiddleware (async_to_sync) 23.9%, request_started 11.9%"
    ) in out


def test_a_sums_last_bits_never_change_what_is_shown():
    """Reader processes finish in any order, so a float total's last bits differ from
    run to run (the HTML page once read 700.4 ms in one run, 700.5 in the next); what
    is shown is the same for both, in every unit and format helper."""
    from hopwatch.report import text as fmt

    low, high = 700.4499999999999, 700.4500000000001
    assert f"{low:.1f}" != f"{high:.1f}"  # the difference a plain format shows
    for show in (fmt.duration, fmt.ms, fmt.mean, fmt.us):
        assert show(low) == show(high) == show(700.45), show
    assert fmt.duration(low * 1000) == fmt.duration(high * 1000) == "11.7 min"
    assert fmt.duration(90_000) == "90.0 s" and fmt.duration(119_949) == "119.9 s"
    assert fmt.duration(120_000) == "2.0 min"
    assert fmt.percent(low / 1000) == fmt.percent(high / 1000) == "70.0%"
    assert fmt.percent(0.0344999999999999) == fmt.percent(0.0345000000000001)
    assert fmt.count(37965.99999999999) == fmt.count(37966.00000000001) == "37,966"
