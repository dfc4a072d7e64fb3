"""``--format html``: one self-contained page, every log string escaped, bounded in size.

The page in a real browser is tests/test_report_browser.py; here its HTML is read
with the standard library's parser, which tokenises as a browser does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from hopwatch.report.text import clean
from tests.report.detail_samples import (
    LOOP,
    SYNC,
    crossing,
    detailed_line,
    gathered_detail,
    nested_wsgi_detail,
)
from tests.report.samples import line, site
from tests.report.test_cli import RunCli

#: Every element the page is made of: log content must add none.
ELEMENTS = {
    "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "p", "nav",
    "a", "section", "small", "table", "thead", "tbody", "tr", "th", "td", "button", "span",
    "div", "code", "svg", "g", "rect", "line", "text", "figure", "figcaption", "footer",
    "script", "details", "summary", "bdi", "ol", "li",
}  # fmt: skip

ROUTE = '/</script><script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">/'
VIEW = "shop.views.<iframe src=javascript:alert(3)>"
SITE = '"><svg onload="window.__pwned=3"><!--'
CALL_SITE = "</title><script>alert(4)</script>\u2028\u202eevil.py:1 in f"
REQUEST_ID = "'><b onmouseover=alert(5)>id</b>"
SESSION_HOOK = "django.contrib.sessions.middleware.SessionMiddleware.process_request"


class Page(HTMLParser):
    """The elements, attributes, text and scripts of a page, as a browser tokenises them."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.tables: dict[str, list[list[str]]] = {}  # id -> the body's rows' cell texts
        self._in: str | None = None
        self._table: list[list[str]] | None = None
        self.feed(source)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("id") or "", [])
        elif tag == "tr" and self._table is not None and dict(attrs).get("data-i"):
            self._table.append([])
        elif tag == "td" and self._table:
            self._table[-1].append("")
        if tag in ("script", "style"):
            self._in = tag
            if tag == "script":
                self.scripts.append((dict(attrs), ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None
        if tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            attrs, body = self.scripts[-1]
            self.scripts[-1] = (attrs, body + data)
        elif self._in is None:
            self.text.append(data)
            if self._table and self._table[-1]:
                self._table[-1][-1] += data

    def attribute_values(self) -> list[str]:
        return [value or "" for _tag, attrs in self.tags for value in attrs.values()]


class DataTables(HTMLParser):
    """The charts' figures as tables (``<details class="data">``): each table's class,
    its header cells (text, attributes) and its body's rows of cell texts."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[tuple[str, list[tuple[str, dict[str, str | None]]], list[list[str]]]] = []
        self._depth = 0  # inside a <details class="data">
        self._cell: list[str] | None = None
        self.feed(source)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "details" and named.get("class") == "data":
            self._depth += 1
        elif self._depth and tag == "table":
            self.tables.append((named.get("class") or "", [], []))
        elif self._depth and tag == "th":
            self.tables[-1][1].append(("", named))
        elif self._depth and tag == "tr" and self.tables[-1][1]:
            self.tables[-1][2].append([])
        elif self._depth and tag == "td":
            self.tables[-1][2][-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "details" and self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if not self._depth or not self.tables:
            return
        _kind, head, rows = self.tables[-1]
        if rows and rows[-1]:
            rows[-1][-1] += data
        elif head and not rows:
            text, attrs = head[-1]
            head[-1] = (text + data, attrs)


def write(tmp_path: Path, lines: list[str], name: str = "app.log") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def page_of(run_cli: RunCli, tmp_path: Path, lines: list[str], *args: str) -> str:
    log = write(tmp_path, lines)
    out = tmp_path / "report.html"
    result = run_cli(log, "--format", "html", "-o", out, *args)
    assert result.status == 0, result.err
    assert result.err == f"hopwatch report: wrote {out}\n"
    return out.read_text()


def sample_lines() -> list[str]:
    return [
        detailed_line(gathered_detail(), request_id="g1", route="/gather/", hop_ms=5.0),
        detailed_line(gathered_detail(), request_id="g2", route="/gather/", hop_ms=7.0),
        detailed_line(nested_wsgi_detail(), request_id="n1", route="/nested/", interface="wsgi"),
        line(request_id="old", route="/old/"),  # from before overhead_ms and detail
    ]


def test_the_page_is_self_contained_and_has_every_section(run_cli: RunCli, tmp_path: Path):
    source = page_of(run_cli, tmp_path, sample_lines())
    page = Page(source)
    tags = [tag for tag, _attrs in page.tags]
    assert set(tags) <= ELEMENTS
    for _tag, attrs in page.tags:  # nothing to fetch, no handler attributes
        assert not {"src", "srcset", "action", "formaction"} & set(attrs)
        assert not any(name.startswith("on") for name in attrs)
        assert (attrs.get("href") or "#").startswith("#")
    (policy,) = [a["content"] for t, a in page.tags if a.get("http-equiv")]
    assert "default-src 'none'" in policy
    data, code = page.scripts
    assert data[0] == {"type": "application/json", "id": "hopwatch-report"}
    # the page's own script runs by its hash (the same page every run), and no other
    digest = base64.b64encode(hashlib.sha256(code[1].encode()).digest()).decode()
    assert code[0] == {} and f"script-src 'sha256-{digest}'; " in policy
    assert policy.count("script-src") == 1 and "nonce" not in source
    document = json.loads(data[1])
    assert [row["label"] for row in document["rows"]] == ["GET /gather/", "GET /nested/", "GET /old/"]
    assert ("table", {"class": "sortable", "id": "endpoint-table"}) in page.tags
    ids = {attrs.get("id") for _tag, attrs in page.tags}
    assert {"endpoints", "hops", "causes", "timelines", "summary"} <= ids
    # the bars: overhead and work where the lines carry them, unsplit for the old one
    classes = [attrs.get("class") for _tag, attrs in page.tags]
    assert classes.count("seg overhead") == 2 and classes.count("seg unsplit") == 1
    # one timeline per endpoint with a detailed request: the slowest (g2) for /gather/
    assert tags.count("figure") == 2
    text = " ".join("".join(page.text).split())  # "request <bdi>g2</bdi>"
    assert "request g2" in text and "request g1" not in text
    assert classes.count("crossing") == 5 + 4
    assert "3 logged requests" not in text and "4 logged requests" in text
    assert "read 1 file" in text  # the summary line


def test_every_string_from_the_logs_is_text_in_html_attributes_and_json(
    run_cli: RunCli, tmp_path: Path
):
    detail = [
        crossing(SITE, 0.5, 0.1, 1.0, 0.1, kind="orm", call_site=CALL_SITE),
        crossing("ok.site", 2.0, 0.1, 1.0, 0.1),
    ]
    hostile = detailed_line(
        detail,
        route=ROUTE,
        view=VIEW,
        method="<b>GET</b>",
        request_id=REQUEST_ID,
        pinned_by=SITE,
        pinned_ms=0.5,
    )
    source = page_of(run_cli, tmp_path, [hostile], "--request-id", REQUEST_ID)
    page = Page(source)
    assert {tag for tag, _attrs in page.tags} <= ELEMENTS
    assert not any(name.startswith("on") for _tag, attrs in page.tags for name in attrs)
    assert len(page.scripts) == 2 and source.count("</script>") == 2
    assert "<!--" not in source and "\u202e" not in source
    assert "\u2028" not in page.scripts[0][1] and "\\u2028" in page.scripts[0][1]
    # shown as the text it is (cleaned: the invisible and line-breaking characters escaped)
    text = "".join(page.text)
    for value in (ROUTE, SITE, REQUEST_ID, CALL_SITE):
        assert clean(value) in text, value
    assert any(clean(f"<b>GET</b> {ROUTE}") in value for value in page.attribute_values())
    # the timeline's name says which request it is; its crossings' table, each as text
    (name,) = [attrs["aria-label"] for tag, attrs in page.tags if attrs.get("class") == "timeline"]
    assert name.startswith(
        f"timeline of {clean(f'<b>GET</b> {ROUTE}')}, request {clean(REQUEST_ID)}: 2 crossings"
    ), name
    (crossings,) = [rows for kind, _h, rows in DataTables(source).tables if kind == "crossings"]
    assert [row[1] for row in crossings if row[3] == clean(CALL_SITE)] == [f"orm: {clean(SITE)}"]
    # and in the embedded report, as it was logged
    document = json.loads(page.scripts[0][1])
    (row,) = document["rows"]
    assert (row["route"], row["view"], row["method"]) == (ROUTE, VIEW, "<b>GET</b>")
    assert row["causes"][0]["call_site"] == CALL_SITE


def test_the_crossings_table_lists_them_in_the_order_they_were_called(
    run_cli: RunCli, tmp_path: Path
):
    """The detail lists crossings as they finished (a nested one before its outer one);
    the timeline's table, what hovering each bar shows as text, goes by call time."""
    detail = [  # the inner one, called at 5 ms, finished first
        crossing("inner.site", 5.0, 0.1, 1.0, 0.1, thread=LOOP, caller=SYNC, parent=1,
                 depth=2, direction="async_to_sync"),
        crossing("outer.site", 1.0, 0.1, 10.0, 0.1, thread=SYNC, caller=LOOP, depth=1),
    ]  # fmt: skip
    tables = DataTables(page_of(run_cli, tmp_path, [detailed_line(detail)]))
    (crossings,) = [rows for kind, _head, rows in tables.tables if kind == "crossings"]
    assert [row[:3] for row in crossings] == [
        ["1.000", "other: outer.site", "sync_to_async"],
        ["5.000", "other: inner.site", "async_to_sync"],
    ]


def test_every_header_cell_of_the_data_tables_is_a_column_header(run_cli: RunCli, tmp_path: Path):
    """The charts' tables name their columns for a screen reader: scope="col"."""
    tables = DataTables(page_of(run_cli, tmp_path, sample_lines())).tables
    assert sorted({kind for kind, _head, _rows in tables}) == ["bins", "crossings", "sparks"]
    for kind, head, rows in tables:
        assert head and rows, kind
        assert [attrs.get("scope") for _text, attrs in head] == ["col"] * len(head), kind
        assert all(len(row) == len(head) for row in rows), kind
    crossings = next(head for kind, head, _rows in tables if kind == "crossings")
    assert [text for text, _attrs in crossings][:3] == ["called at ms", "cause", "direction"]


@pytest.mark.parametrize("by", ["view", "site"])
def test_by_view_and_by_site(run_cli: RunCli, tmp_path: Path, by: str):
    page = Page(page_of(run_cli, tmp_path, sample_lines(), "--by", by))
    ids = {attrs.get("id") for _tag, attrs in page.tags}
    assert ("site-table" in ids) == (by == "site") and ("endpoint-table" in ids) == (by != "site")
    # by view, /gather/ and /nested/ are one row (one view): its slowest timeline
    assert [tag for tag, _a in page.tags].count("figure") == (1 if by == "view" else 2)


def test_by_site_names_a_cause_listed_both_ways_by_its_direction(run_cli: RunCli, tmp_path: Path):
    """The page's cause table has no direction column either: a sync-only middleware's
    hop in and its hop back out read apart, and the full name each shows on hover says
    its direction too."""
    both = [
        site("myproject.middleware.SyncLast", ms=2.0, overhead_ms=0.2),
        site("myproject.middleware.SyncLast", ms=1.0, overhead_ms=0.1, direction="async_to_sync"),
        site("request_started", "signal", ms=0.5, overhead_ms=0.05),
    ]
    lines = [line(request_id=f"b{n}", hops=3, sites=both) for n in range(2)]
    page = Page(page_of(run_cli, tmp_path, lines, "--by", "site"))
    names = [row[1] for row in page.tables["site-table"]]
    assert names == [
        "middleware.SyncLast (sync_to_async)",
        "middleware.SyncLast (async_to_sync)",
        "request_started",  # listed one way: its name alone
    ]
    titles = set(page.attribute_values())
    assert "myproject.middleware.SyncLast (async_to_sync)" in titles
    assert "request_started (sync_to_async)" in titles


def test_stdout_and_the_summary(run_cli: RunCli, tmp_path: Path):
    result = run_cli(write(tmp_path, sample_lines()), "--format", "html")
    assert result.status == 0 and result.err == ""
    assert result.out.startswith("<!DOCTYPE html>\n") and result.out.endswith("</html>\n")


def test_a_chosen_request_or_one_clear_line(run_cli: RunCli, tmp_path: Path):
    source = page_of(run_cli, tmp_path, sample_lines(), "--request-id", "g1")
    text = " ".join("".join(Page(source).text).split())  # "request <bdi>g1</bdi>"
    assert "request g1" in text and "request g2" not in text and "request n1" not in text
    log = write(tmp_path, sample_lines())
    out = tmp_path / "kept.html"
    out.write_text("the page from before")
    for request_id, message in [
        ("nope", "hopwatch report: no hopwatch line with request_id 'nope' passed the filters\n"),
        (
            "old",
            "hopwatch report: the line with request_id 'old' has no detail list that can be"
            " drawn: log with detail mode on (HOPWATCH = {'DETAIL': True}), from a hopwatch"
            " whose detail entries carry at_ms\n",
        ),
    ]:
        for format_name in ("html", "trace"):
            result = run_cli(log, "--format", format_name, "--request-id", request_id, "-o", out)
            assert (result.status, result.out, result.err) == (1, "", message)
            assert out.read_text() == "the page from before"  # left as it was
    result = run_cli(log, "--request-id", "g1")
    assert result.status == 2
    assert result.err == (
        "hopwatch report: error: --request-id draws a timeline: use it with --format html"
        " or trace\n"
    )


def test_lines_without_the_newer_fields_still_make_a_page(run_cli: RunCli, tmp_path: Path):
    old = json.loads(detailed_line(gathered_detail()))
    for entry in old["detail"]:
        del entry["at_ms"], entry["parent"], entry["caller_thread"]
    del old["overhead_ms"], old["work_ms"]
    for entry in old["sites"]:
        del entry["overhead_ms"]
    page = Page(page_of(run_cli, tmp_path, [json.dumps(old), line(request_id="plain")]))
    text = " ".join(page.text)
    assert "1 line has a detail list without at_ms" in text
    assert "carry no sites[].overhead_ms" in text
    assert [tag for tag, _a in page.tags].count("figure") == 0
    result = run_cli(write(tmp_path, [json.dumps(old)]), "--format", "trace")
    assert result.status == 1 and "no request in the input has a timeline" in result.err


def test_no_detail_at_all_says_how_to_get_timelines(run_cli: RunCli, tmp_path: Path):
    text = " ".join(Page(page_of(run_cli, tmp_path, [line()])).text)
    assert "No line in this input has a detail list" in text


def test_the_output_file_is_written_whole_or_not_at_all(run_cli: RunCli, tmp_path: Path):
    log = write(tmp_path, sample_lines())
    result = run_cli(log, "--format", "html", "-o", tmp_path / "missing" / "r.html")
    assert result.status == 2
    assert result.err == (
        f"hopwatch report: cannot write {tmp_path}/missing/r.html: no directory"
        f" {tmp_path}/missing\n"
    )
    result = run_cli(log, "--format", "html", "-o", tmp_path)
    assert (result.status, result.err) == (2, f"hopwatch report: cannot write {tmp_path}: it is a directory\n")
    out = tmp_path / "out" / "r.json"
    out.parent.mkdir()
    result = run_cli(log, "--format", "json", "-o", out)
    assert result.status == 0 and result.out == ""
    assert json.loads(out.read_text())["summary"]["records"] == 4
    assert os.listdir(out.parent) == ["r.json"]  # no temporary file left
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_page_is_bounded_whatever_the_number_of_endpoints(run_cli: RunCli, tmp_path: Path):
    """10 endpoints or 10,000: the same number of lines, pages of the same size order."""

    def lines(endpoints: int) -> list[str]:
        return [
            detailed_line(
                gathered_detail(),
                route=f"/e{i % endpoints}/",
                request_id=f"{i:016x}",
                sites=[{**site(f"app.site{i % endpoints}", ms=1.0), "overhead_ms": 0.5}],
            )
            for i in range(10_000)
        ]

    small = page_of(run_cli, tmp_path, lines(10))
    large = page_of(run_cli, tmp_path, lines(10_000))
    assert len(large) < 2 * len(small) and len(large) < 400_000, (len(small), len(large))
    assert [tag for tag, _a in Page(large).tags].count("figure") == 10


def test_fixable_causes_by_overhead_with_what_to_change(run_cli: RunCli, tmp_path: Path):
    close = {**site("HttpResponse.close", "response", ms=9.0), "overhead_ms": 9.0}
    started = {**site("request_started", "signal", ms=8.0), "overhead_ms": 8.0}
    hook = {**site(SESSION_HOOK, ms=0.5), "overhead_ms": 0.4}
    lines = [*sample_lines(), line(request_id="c", route="/c/", sites=[close, started, hook])]
    page = Page(page_of(run_cli, tmp_path, lines))
    rows = page.tables["cause-table"]
    # most overhead first (over all requests): the three gathered ORM calls of /gather/'s
    # two requests, 3.3 ms each; responses' close and request_started are not ranked
    assert [(row[2], row[5], row[6], row[8]) for row in rows] == [
        ("orm", "3.300", "6.6 ms", "Async ORM calls"),
        ("other", "0.400", "0.8 ms", "Other crossings"),
        ("view", "0.800", "0.8 ms", "An async view under WSGI"),
        ("middleware", "0.400", "0.4 ms", "MiddlewareMixin hooks"),
        ("other", "0.150", "0.1 ms", "Other crossings"),
        ("other", "0.130", "0.1 ms", "Other crossings"),
        ("other", "0.050", "0.1 ms", "Other crossings"),
    ]
    assert rows[0][1] == "QuerySet.aget (app.py:1)QuerySet.aget (sync_to_async) at app.py:1 in v"
    text = "".join(page.text)
    assert "Every await of an async ORM method is a hop" in text
    assert ("Not listed, as there is nothing to change in your code: HttpResponse.close"
            " (Django closes every response through sync_to_async under ASGI).") in text  # fmt: skip
    assert "request_started (it stays while Django's own receivers are sync)" in text


def test_overhead_over_all_requests_is_the_reports_total_with_sampled_lines(
    run_cli: RunCli, tmp_path: Path
):
    """The page's totals are the document's (embedded in it, and in every other format):
    a line sampled at 0.5 counts its overhead twice, and a line without overhead_ms
    counts none, not the mean of the others."""
    hook = site(SESSION_HOOK, count=10, ms=8.0, overhead_ms=6.0)
    old_hook = site(SESSION_HOOK, count=10, ms=8.0)  # an entry without overhead_ms
    fields = {"duration_ms": 20.0, "hops": 10, "hop_ms": 12.0, "work_ms": 2.0}
    lines = [
        line(route="/a/", overhead_ms=10.0, sample_rate=0.5, sites=[hook], **fields),
        line(route="/a/", overhead_ms=30.0, sites=[old_hook], **fields),
    ]
    source = page_of(run_cli, tmp_path, lines)
    page = Page(source)
    document = json.loads(page.scripts[0][1])
    ((row,),) = [document["rows"]]
    assert (row["requests"], row["overhead_ms"]["total"]) == (3, 50.0)  # 2 x 10 + 30
    (endpoint,) = page.tables["endpoint-table"]
    assert endpoint[2:3] + endpoint[-1:] == ["3", "50.0 ms"]  # not the mean 20 x 3 requests
    (fixable,) = document["fixable"]
    assert (fixable["requests"], fixable["overhead_ms"]) == (3, 12.0)  # 2 x 6, the other n/a
    (cause,) = page.tables["cause-table"]
    assert cause[3] == "3" and cause[6] == "12.0 ms"  # not its mean 6 x 3 requests
    assert "12.0 ms of overhead over all requests" in "".join(page.text)


def test_a_bar_never_runs_past_its_track_and_ten_ms_reads_as_ten_point_zero(
    run_cli: RunCli, tmp_path: Path, implementation: str
):
    """A line whose pinned_ms (20) is above the longest request's time (10, the bars'
    scale): its pinned bar stops at 100%, not 200%. And the milliseconds: below 10 to
    three decimals, 10 and above to one (10.0, not 10.000)."""
    hook = site(SESSION_HOOK, ms=4.0, overhead_ms=1.0)
    fields = {"duration_ms": 10.0, "hop_ms": 4.0, "overhead_ms": 1.0, "work_ms": 0.5}
    lines = [line(pinned_ms=20.0, pinned_by=SESSION_HOOK, sites=[hook], **fields)]
    page = Page(page_of(run_cli, tmp_path, lines))
    (endpoint,) = page.tables["endpoint-table"]
    assert endpoint[6:10] == ["1.000", "0.500", "20.0", "10.0"]
    pinned = [attrs for tag, attrs in page.tags if tag == "span" and attrs.get("class") == "pinned"]
    assert pinned == [{"class": "pinned", "style": "width:100.00%;min-width:1px"}]
    (bar,) = [attrs for tag, attrs in page.tags if tag == "div" and attrs.get("class") == "bar"]
    assert bar["title"] == (
        "crossing overhead 1.000 ms, then work 0.500 ms; a thread pinned 20.0 ms;"
        " of a 10.0 ms request"
    )


def test_djangos_own_middleware_hooks_are_one_row_of_the_fixable_causes(
    run_cli: RunCli, tmp_path: Path
):
    """startproject's stack: 13 hook causes, each more overhead than any of the project's,
    filled the 10 rows; they are one change (docs/causes.md), so one row, as the text
    report's "what to change first" has them."""
    hooks = [
        {**site(f"django.middleware.m{i}.M{i}Middleware.process_request", ms=0.3),
         "overhead_ms": 0.2}
        for i in range(13)
    ]  # fmt: skip
    mine = [
        {**site(f"shop.views.load{i}", "other", ms=0.2, call_site=f"shop/views.py:{i}"),
         "overhead_ms": 0.1}
        for i in range(12)
    ]  # fmt: skip
    lines = [line(request_id=f"r{i}", route="/busy/", sites=hooks + mine) for i in range(3)]
    rows = Page(page_of(run_cli, tmp_path, lines)).tables["cause-table"]
    kinds = [row[2] for row in rows]
    assert kinds.count("middleware") == 1 and kinds.count("other") == 9, kinds
    assert rows[0][1].startswith("Django's own middleware hooks13 hooks: django.middleware.m")
    assert (rows[0][5], rows[0][6], rows[0][8]) == ("2.600", "7.8 ms", "MiddlewareMixin hooks")


def test_endpoint_facts_in_the_pages_words_with_text_from_the_log_isolated(
    run_cli: RunCli, tmp_path: Path
):
    """``--endpoint``: the #endpoint section was the text's lines escaped, "1 requests
    (asgi x1; ...)" with the text's indent inside each <p>, and the h1 and <title> had
    the endpoint's right-to-left letters among the page's words with nothing isolating
    them. Now: one request in the singular, no indents, every value from the log in
    <bdi> (FSI...PDI in <title>, which holds no elements)."""
    route = "/\u05e9\u05dc\u05d5\u05dd/<int:pk>/"
    view = "app.views.\u05d0\u05d1\u05d2"
    lines = [*sample_lines(), detailed_line(gathered_detail(), route=route, view=view)]
    source = page_of(run_cli, tmp_path, lines, "--endpoint", route)
    title = source.split("<title>", 1)[1].split("</title>", 1)[0]
    assert title == (
        "hopwatch report: \u2068/\u05e9\u05dc\u05d5\u05dd/&lt;int:pk&gt;/\u2069, cause by cause"
    )
    heading = source.split("<h1>", 1)[1].split("</h1>", 1)[0]
    assert heading == (
        "hopwatch report: <bdi>/\u05e9\u05dc\u05d5\u05dd/&lt;int:pk&gt;/</bdi>, cause by cause"
    )
    section = source.split('<section id="endpoint">', 1)[1].split("</section>", 1)[0]
    assert section == (
        "<p><bdi>GET /\u05e9\u05dc\u05d5\u05dd/&lt;int:pk&gt;/</bdi></p>"
        "<p>view <bdi>app.views.\u05d0\u05d1\u05d2</bdi></p>"
        "<p>1 request (<bdi>asgi</bdi> x1; statuses <bdi>200</bdi> x1); 5.0 crossings per"
        " request (at most 5)</p>"
        "<p>crossing overhead: 3.700 ms per request (p50 3.700, p95 3.700, p99 3.700), 3.7 ms"
        " in all, 51.4% of the requests' time; 740 µs per crossing</p>"
        "<p>work inside the crossings: 7.000 ms per request (it stays when the hops go)</p>"
    )
    # two requests: the plural, the interface and the status isolated
    twice = page_of(run_cli, tmp_path, sample_lines(), "--endpoint", "GET /gather/")
    section = twice.split('<section id="endpoint">', 1)[1].split("</section>", 1)[0]
    assert section.split("</p>")[2] == (
        "<p>2 requests (<bdi>asgi</bdi> x2; statuses <bdi>200</bdi> x2); 5.0 crossings per"
        " request (at most 5)"
    )


def test_endpoint_facts_are_the_same_words_in_text_and_markdown(run_cli: RunCli, tmp_path: Path):
    """The page's endpoint facts and the text's are one list (notes.endpoint_facts): the
    text and markdown say "1 request" of one request too (they said "1 requests"), and
    "2 requests" of two."""
    route = "/one/"
    log = write(tmp_path, [*sample_lines(), detailed_line(gathered_detail(), route=route)])
    for form in ("text", "markdown"):
        one = run_cli(log, "--endpoint", route, "--format", form)
        assert one.status == 0, one.err
        # the text indents the facts under the label; markdown ends each with a break
        start, end = ("\n  ", "\n") if form == "text" else ("\n", "  \n")
        facts = "request (asgi x{0}; statuses 200 x{0}); 5.0 crossings per request (at most 5)"
        assert f"{start}1 {facts.format(1)}{end}" in one.out
        assert "1 requests" not in one.out
        two = run_cli(log, "--endpoint", "GET /gather/", "--format", form)
        assert f"{start}2 {facts.format(2).replace('request (', 'requests (', 1)}{end}" in two.out


def test_two_runs_on_the_same_logs_write_the_same_page(run_cli: RunCli, tmp_path: Path) -> None:
    """No random nonce: the page is the same every run (but for the minute it was made)."""
    log = tmp_path / "app.log"
    log.write_text("\n".join(sample_lines()) + "\n")
    pages = []
    for name in ("one.html", "two.html"):
        result = run_cli(str(log), "--format", "html", "-o", str(tmp_path / name))
        assert result.status == 0, result.err
        page = (tmp_path / name).read_text(encoding="utf-8")
        pages.append(re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "(minute) UTC", page))
    assert pages[0] == pages[1] and "<script>" in pages[0]
