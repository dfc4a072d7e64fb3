"""What the report prints from a log is escaped, and names what it measures: the
--endpoint messages, timelines' labels, invisible characters, long causes, ovh %."""

from __future__ import annotations

import io
import json
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest

from hopwatch.report import render, table
from hopwatch.report.text import cells, clean, escaped_for, head_cells, percent, tail_cells
from tests.report.conftest import Run
from tests.report.detail_samples import crossing, detailed_line
from tests.report.samples import line, site

RunCli = Callable[..., Run]

ESC_ROUTE = "/x\x1b]0;PWNED\x07\x1b[2J/"


def _log(tmp_path: Path, *lines: str) -> Path:
    log = tmp_path / "app.log"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return log


# --- 1. the --endpoint messages ----------------------------------------------------------
def test_several_rows_for_an_endpoint_are_named_escaped(run_cli: RunCli, tmp_path: Path) -> None:
    log = _log(
        tmp_path,
        line(method="GET", route=ESC_ROUTE, request_id="a"),
        line(method="POST", route=ESC_ROUTE, request_id="b"),
    )
    result = run_cli(log, "--endpoint", ESC_ROUTE)
    assert result.status == 1 and result.out == ""
    assert result.err == (
        "hopwatch report: --endpoint '/x\\x1b]0;PWNED\\x07\\x1b[2J/' matches several rows:"
        " GET /x\\x1b]0;PWNED\\x07\\x1b[2J/, POST /x\\x1b]0;PWNED\\x07\\x1b[2J/\n"
    )


def test_the_closest_endpoints_are_named_escaped(run_cli: RunCli, tmp_path: Path) -> None:
    log = _log(
        tmp_path,
        line(route="/ctl\r\n\tnul\x00del\x7fc1\x85/", request_id="a"),
        line(route="/ctl\u202eevil\u2066/", request_id="b"),
    )
    result = run_cli(log, "--endpoint", "GET /ctl")
    assert result.status == 1 and result.out == ""
    assert result.err == (
        "hopwatch report: no endpoint 'GET /ctl' in the logs read (closest:"
        " GET /ctl\\u202eevil\\u2066/, GET /ctl\\x0d\\x0a\\x09nul\\x00del\\x7fc1\\x85/)\n"
    )


# --- 2. a request no URL pattern resolved, in a timeline ----------------------------------
def _unresolved_log(tmp_path: Path) -> Path:
    detail = [
        crossing("django.contrib.sessions.middleware.SessionMiddleware.process_request",
                 0.1, 0.2, 1.0, 0.1, kind="middleware"),
    ]  # fmt: skip
    return _log(
        tmp_path,
        detailed_line(
            detail, route="/secret/raw/path?token=abc", view=None, request_id="rawreq", status=404
        ),
    )


def test_a_trace_names_an_unresolved_request_as_the_tables_do(
    run_cli: RunCli, tmp_path: Path
) -> None:
    log = _unresolved_log(tmp_path)
    for args in ([], ["--request-id", "rawreq"], ["--by", "site"]):
        result = run_cli(log, "--format", "trace", *args)
        assert result.status == 0, result.err
        assert "secret" not in result.out and "token" not in result.out
        events = json.loads(result.out)["traceEvents"]
        names = [e["args"]["name"] for e in events if e["name"] == "process_name"]
        assert names == ["GET (no view) (request rawreq)"]
        request = next(e for e in events if e.get("cat") == "hopwatch.request")
        assert request["name"] == "GET (no view) (request rawreq)"


def test_a_page_heads_an_unresolved_request_as_the_tables_do(
    run_cli: RunCli, tmp_path: Path
) -> None:
    log = _unresolved_log(tmp_path)
    for args in (["--request-id", "rawreq"], ["--by", "site"], []):
        result = run_cli(log, "--format", "html", *args)
        assert result.status == 0, result.err
        assert "secret" not in result.out and "token" not in result.out
        assert "<h3><bdi>GET (no view)</bdi> <small>" in result.out


# --- 3. every invisible or line-breaking character is escaped ----------------------------
#: (character, as it is printed): line and paragraph separators, the soft hyphen, an
#: Arabic number sign, interlinear annotation, a tag character, a musical format
#: character, the deprecated format characters, an unassigned one between the bidi
#: isolates and them, private use, a Hangul filler, the combining grapheme joiner
INVISIBLE = [
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
    ("\u00ad", "\\xad"),
    ("\u0600", "\\u0600"),
    ("\ufff9", "\\ufff9"),
    ("\U000e0041", "\\U000e0041"),
    ("\U0001d173", "\\U0001d173"),
    *((chr(code), f"\\u{code:04x}") for code in range(0x206A, 0x2070)),
    ("\u2065", "\\u2065"),
    ("\ue000", "\\ue000"),
    ("\u3164", "\\u3164"),
    ("\u034f", "\\u034f"),
]
#: Printed as they are (and measured right): CJK, emoji, accented letters.
VISIBLE = ["/日本語/", "/😀🎉/", "/café/naïve/"]


def _invisible_log(tmp_path: Path) -> Path:
    routes = [f"/a{char}b/" for char, _shown in INVISIBLE] + VISIBLE
    return _log(
        tmp_path,
        *(line(route=route, request_id=str(i), hops=i + 1) for i, route in enumerate(routes)),
    )


@pytest.mark.parametrize("format_name", ["text", "markdown", "rich"])
def test_invisible_characters_are_escaped(
    run_cli: RunCli, tmp_path: Path, format_name: str
) -> None:
    result = run_cli(_invisible_log(tmp_path), "--format", format_name, "--top", "0")
    assert result.status == 0, result.err
    for char, shown in INVISIBLE:
        assert char not in result.out
        if format_name == "markdown":  # and the escape's backslash escaped for markdown
            shown = "\\" + shown
        assert f"GET /a{shown}b/" in result.out
    for route in VISIBLE:
        assert f"GET {route}" in result.out


def test_the_table_stays_aligned_around_escapes_and_wide_characters(
    run_cli: RunCli, tmp_path: Path
) -> None:
    result = run_cli(_invisible_log(tmp_path), "--format", "text", "--top", "0", "--no-legend")
    rows = [row for row in result.out.splitlines() if " GET /" in row]
    assert len(rows) == len(INVISIBLE) + len(VISIBLE)
    # the column after the endpoint's ends at the same terminal column on every row
    ends = {cells(row.split("  1  ")[0]) for row in rows}
    assert len(ends) == 1, rows


def test_clean_escapes_every_code_point_that_draws_nothing_and_only_those() -> None:
    escaped = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}
    blank = {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0}
    hidden, shown = [], []
    for code in range(0x110000):
        if code in blank or unicodedata.category(chr(code)) in escaped:
            hidden.append(chr(code))
        else:
            shown.append(chr(code))
    assert clean("".join(hidden)).isascii()
    assert clean("".join(shown)) == "".join(shown)


# --- 4. each cause named in "top causes" is cut at 80 characters ------------------------
LONG_SITE = "app." + "a" * 400 + "b" * 400
LONG_CUT = "app." + "a" * 36 + "…" + "b" * 39  # 80 columns, cut in the middle


def _long_cause_log(tmp_path: Path) -> Path:
    causes = [site(LONG_SITE, overhead_ms=0.5), site("app.mw.Short", ms=0.05, overhead_ms=0.2)]
    return _log(tmp_path, line(sites=causes, overhead_ms=0.7, work_ms=0.4))


def test_each_cause_in_the_table_is_cut_at_80(run_cli: RunCli, tmp_path: Path) -> None:
    log = _long_cause_log(tmp_path)
    text = run_cli(log, "--format", "text", "--no-legend").out
    assert f"  {LONG_CUT} 71.4%, mw.Short 28.6%\n" in text
    assert max(map(cells, text.splitlines()[:6])) < 220
    markdown = run_cli(log, "--format", "markdown", "--no-legend").out
    assert f"| {LONG_CUT} 71.4%, mw.Short 28.6% |\n" in markdown
    document = json.loads(run_cli(log, "--format", "json").out)
    assert document["rows"][0]["causes"][0]["site"] == LONG_SITE
    rich = io.StringIO()
    render.render_rich(document, rich, width=400, legend=False)
    assert f"  {LONG_CUT} 71.4%, mw.Short 28.6%\n" in rich.getvalue()
    assert LONG_SITE in run_cli(log, "--format", "csv").out


def test_wide_keeps_every_cause_whole(run_cli: RunCli, tmp_path: Path) -> None:
    log = _long_cause_log(tmp_path)
    for format_name in ("text", "markdown"):
        output = run_cli(log, "--format", format_name, "--wide").out
        assert f"{LONG_SITE} 71.4%, mw.Short 28.6%" in output


def test_a_long_call_site_is_cut_at_80_keeping_its_file_and_line(
    run_cli: RunCli, tmp_path: Path
) -> None:
    where = "/srv/" + "d/" * 60 + "views.py:42"
    causes = [site("QuerySet.aget", "orm", call_site=f"{where} in handler", overhead_ms=0.5)]
    log = _log(tmp_path, line(sites=causes, overhead_ms=0.5, work_ms=0.4))
    text = run_cli(log, "--format", "text", "--endpoint", "GET /items/<int:pk>/").out
    assert f"  …{where[-79:]}  " in text
    wide = run_cli(log, "--format", "text", "--endpoint", "GET /items/<int:pk>/", "--wide").out
    assert f"  {where} in handler  " in wide


# --- 5. ovh % above 100% ---------------------------------------------------------------
ABOVE_NOTE = (
    " lines' overhead_ms add up to more than their duration_ms. The overhead sums each"
    " crossing's own wait and hand-off, so crossings that ran at the same time (calls"
    " gathered onto one thread, each queued behind the others) can add up to more than"
    " the request lasted, and so can a line whose fields disagree. --format json has the"
    " ratio (overhead_share).\n"
)


def _above_full_log(tmp_path: Path) -> Path:
    return _log(
        tmp_path,
        line(overhead_ms=40, work_ms=0.5, duration_ms=1, hop_ms=41, wait_ms=20),
        line(route="/ok/", overhead_ms=0.5, work_ms=0.5, duration_ms=10, wait_ms=0.2),
    )


def test_an_overhead_above_the_requests_time_reads_above_100_and_says_why(
    run_cli: RunCli, tmp_path: Path
) -> None:
    log = _above_full_log(tmp_path)
    text = run_cli(log, "--format", "text", "--no-legend").out
    rows = text.split("\n\n")[1].splitlines()
    assert rows[1].split()[7:11] == ["40.0", "ms", ">100%", "0.500"]  # overhead, ovh %
    assert rows[2].split()[7:11] == ["0.5", "ms", "5.0%", "0.500"]
    assert "4000.0%" not in text
    assert f"\novh % reads >100% for GET /items/<int:pk>/: its{ABOVE_NOTE}" in text
    detail = run_cli(log, "--endpoint", "GET /items/<int:pk>/", "--no-legend").out
    assert "40.0 ms in all, >100% of the requests' time;" in detail
    assert f"\noverhead reads >100% of the requests' time: the{ABOVE_NOTE}" in detail
    document = json.loads(run_cli(log, "--format", "json").out)
    assert [row["overhead_share"] for row in document["rows"]] == [40.0, 0.05]


def test_a_share_reads_above_100_only_past_100_0() -> None:
    assert percent(1.0) == "100.0%" and percent(1.0004) == "100.0%"
    assert percent(1.0006) == ">100%" and percent(40.0) == ">100%"
    assert percent(0.05) == "5.0%" and percent(None) == "-"


@pytest.mark.parametrize("field", ["kind", "outcome", "direction"])
def test_a_crossing_exported_to_a_trace_has_its_names_escaped(
    run_cli: RunCli, tmp_path: Path, field: str
) -> None:
    entry = crossing("views.v", 0.1, 0.5, 1.0, 0.5, **{field: "x\u202ey\x1b[31m"})
    log = _log(tmp_path, detailed_line([entry], request_id="r1"))
    result = run_cli(log, "--format", "trace")
    assert result.status == 0, result.err
    events = json.loads(result.out)["traceEvents"]
    (event,) = [e for e in events if e.get("cat", "").startswith("hopwatch.crossing")]
    assert event["args"][field] == "x\\u202ey\\x1b[31m"
    if field == "direction":
        assert event["cat"] == "hopwatch.crossing,x\\u202ey\\x1b[31m"


_ESCAPE_OR_CHARACTER = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})|.", re.S)


def _longest_whole(text: str, width: int, *, from_end: bool = False) -> str:
    """The longest start (or end) of ``text`` in ``width`` columns that splits no escape."""
    tokens = _ESCAPE_OR_CHARACTER.findall(text)
    kept: list[str] = []
    for token in reversed(tokens) if from_end else tokens:
        if cells("".join(kept) + token) > width:
            break
        kept.append(token)
    return "".join(reversed(kept) if from_end else kept)


#: On an ASCII stdout: a(1) \x1b(4) \xe9(4) \u65e5(6) \U0001f600(10) \x7f(4) b(1), twice:
#: 60 characters, so the limits below put a cut at every point of each escape, and
#: right after each (the 10-character one ends at 25: limit 26 keeps it whole).
CUT_VALUE = "a\x1bé日\U0001f600\x7fb" * 2


@pytest.mark.parametrize("limit", range(1, 60))
def test_a_cut_never_splits_an_escape(limit):
    """Cut anywhere, an escape is kept whole or left out: half of one read as other text
    (``\\xe~``, ``\\~9``); and what is kept is all that fits."""
    escapes = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")
    with escaped_for("ascii"):
        whole = clean(CUT_VALUE)
        assert len(whole) == 60
        for text in (clean(CUT_VALUE, limit), table.truncate_middle(whole, limit)):
            assert len(text) <= limit
            pieces = text.split("~")
            assert len(pieces) == 2, text
            for piece in pieces:  # every backslash starts an escape the whole has
                assert escapes.sub("", piece).count("\\") == 0, text
            assert whole.startswith(pieces[0]) and whole.endswith(pieces[1]), text
        assert clean(CUT_VALUE, limit) == _longest_whole(whole, limit - 1) + "~"
        head = limit // 2
        assert table.truncate_middle(whole, limit) == (
            _longest_whole(whole, head)
            + "~"
            + _longest_whole(whole, limit - 1 - head, from_end=True)
        )


@pytest.mark.parametrize("width", range(1, 30))
def test_a_cut_of_wide_text_never_splits_an_escape(width):
    """On a UTF-8 stdout 日 and \U0001f600 are kept (2 columns each) and a control
    character is escaped: the text is not ASCII, and the cut by columns keeps each
    escape whole or leaves it out, and all that fits."""
    whole = clean(CUT_VALUE)
    assert whole == "a\\x1bé日\U0001f600\\x7fb" * 2 and cells(whole) == 30
    assert head_cells(whole, width) == _longest_whole(whole, width)
    assert tail_cells(whole, width) == _longest_whole(whole, width, from_end=True)
    head = width // 2
    assert table.truncate_middle(whole, width) == (
        _longest_whole(whole, head) + "…" + _longest_whole(whole, width - 1 - head, from_end=True)
    )
