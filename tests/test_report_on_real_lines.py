"""The report on lines hopwatch wrote for real requests (Django's ASGI handler, startproject's
middleware): every crossing accounted for, and the audit's advice reads as the saving it is."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, override_settings

from hopwatch._advice import MIDDLEWARE_ASYNC_ONLY, MIDDLEWARE_SYNC_ONLY
from hopwatch.cli import main
from hopwatch.report import rank
from hopwatch.report.aggregate import Partial
from hopwatch.report.scan import Scanner
from hopwatch.report.text import markdown_cell
from tests.helpers import asgi_request, wsgi_request

SRC = Path(__file__).resolve().parents[1] / "src"
STARTPROJECT = ["hopwatch.middleware.HopwatchMiddleware", *settings.DEFAULT_MIDDLEWARE]
SYNC_LAST = [*STARTPROJECT[:-1], "tests.testapp.middleware.SyncLastXFrameOptionsMiddleware"]


def report(raw_lines: list[str], **options):
    scanner = Scanner(Partial())
    scanner.feed_lines([text.encode() for text in raw_lines])
    return rank.build_document(scanner.finish(), rank.ReportOptions(top=0, **options), ["x"])


def test_no_crossing_is_lost_when_a_line_lists_fewer_causes_than_it_has(log_lines, db):
    """startproject's stack makes 15 crossings of 12 causes; with SITES_LIMIT 3 each line
    names 3 of them. The report still accounts for all 15 (the rest as left out)."""
    with override_settings(MIDDLEWARE=STARTPROJECT, HOPWATCH={"SITES_LIMIT": 3}):
        for _ in range(4):
            asgi_request("/async/")
    lines = log_lines.parsed()
    assert len(lines) == 4 and all(line["sites_dropped"] >= 9 for line in lines)
    doc = report(log_lines.raw)
    (row,) = doc["rows"]
    listed = sum(cause["count"] for cause in row["causes"])
    assert listed + row["left_out"]["count"] == sum(line["hops"] for line in lines) == 60
    overhead = sum(line["overhead_ms"] for line in lines)
    listed_overhead = sum(cause["overhead_ms"] for cause in row["causes"])
    # the line's times are rounded to 0.001 ms, each site's too: a few thousandths apart
    assert abs(listed_overhead + row["left_out"]["overhead_ms"] - overhead) <= 0.001 * 16 * 4
    by_site = report(log_lines.raw, by="site")
    assert by_site["summary"]["left_out"]["count"] == row["left_out"]["count"]


def test_following_the_audits_advice_reads_as_fewer_crossings_and_never_above_the_request(
    log_lines, db
):
    """A sync-only subclass of the last middleware: 15 crossings become 5, some of them
    nested. hop_ms sums nested crossings again (the old hop % passed 100%); overhead and
    work are counted once, so they never exceed the request's own time."""
    with override_settings(MIDDLEWARE=STARTPROJECT):
        asgi_request("/async/")
    with override_settings(MIDDLEWARE=SYNC_LAST):
        asgi_request("/async/")
    before, after = log_lines.parsed()
    assert (before["hops"], after["hops"]) == (15, 5)
    assert before["max_depth"] == 1 and after["max_depth"] >= 2  # nested: the chain is sync
    for line in (before, after):
        assert line["overhead_ms"] + line["work_ms"] <= line["duration_ms"]
        assert line["overhead_ms"] + line["work_ms"] <= line["hop_ms"] + 0.002
    doc = report([json.dumps(before)])
    row = doc["rows"][0]
    assert row["overhead_share"] <= 1 and row["work_ms"]["mean"] >= 0


ASYNC_ONLY = "tests.testapp.middleware.AsyncOnlyMiddleware"
SYNC_ONLY = "tests.testapp.middleware.SyncOnlyMiddleware"
HOPWATCH = "hopwatch.middleware.HopwatchMiddleware"


def _formats(tmp_path, capsys, raw_lines):
    """``hopwatch report`` of the lines as text, markdown and the HTML page."""
    log = tmp_path / "app.log"
    log.write_text("\n".join(raw_lines) + "\n", encoding="utf-8")
    out = {}
    for name in ("text", "markdown", "html"):
        assert main(["report", str(log), "--format", name, "--jobs", "1"]) == 0
        out[name] = " ".join(capsys.readouterr().out.split())
    return out


def _adaptations(causes, middleware):
    return {
        cause["direction"]: cause["advice"]["key"]
        for cause in causes
        if cause["site"] == middleware
    }


@pytest.mark.parametrize(
    ("serve", "middleware", "advice", "other"),
    [
        # WSGI and the sync test Client run the handler sync: Django adapts around the
        # async-only middleware (a new event loop per request)
        ("wsgi", ASYNC_ONLY, MIDDLEWARE_ASYNC_ONLY, MIDDLEWARE_SYNC_ONLY),
        # ASGI runs it async: Django adapts around the sync-only one
        ("asgi", SYNC_ONLY, MIDDLEWARE_SYNC_ONLY, MIDDLEWARE_ASYNC_ONLY),
    ],
)
def test_the_middleware_django_adapts_gets_the_advice_of_the_handlers_mode(
    log_lines, db, tmp_path, capsys, serve, middleware, advice, other
):
    """Both directions of the adaptation are the middleware's, under WSGI as under ASGI; the
    report's advice follows the interface the lines were served through. Every format said
    "A sync-only middleware ... Making it sync and async capable frees the thread" for an
    async-only middleware under WSGI: async capable already, and no thread held."""
    with override_settings(MIDDLEWARE=[HOPWATCH, middleware]):
        if serve == "wsgi":
            assert wsgi_request("/sync/")[0].startswith("200")
            assert Client().get("/sync/").status_code == 200
        else:
            assert asgi_request("/async/").status == 200
    lines = log_lines.parsed()
    assert {line["interface"] for line in lines} == (
        {"wsgi", "test-client"} if serve == "wsgi" else {"asgi"}
    )
    both = {"sync_to_async": advice.key, "async_to_sync": advice.key}
    doc = report(log_lines.raw)
    (row,) = doc["rows"]
    assert _adaptations(row["causes"], middleware) == both
    fixable = [cause for cause in doc["fixable"] if cause["site"] == middleware]
    assert _adaptations(fixable, middleware) == both
    assert {cause["advice"]["summary"] for cause in fixable} == {advice.summary}
    (detail,) = report(log_lines.raw, endpoint=row["label"])["rows"]
    assert _adaptations(detail["causes"], middleware) == both
    assert _adaptations(report(log_lines.raw, by="site")["rows"], middleware) == both
    shown = _formats(tmp_path, capsys, log_lines.raw)
    assert advice.summary in shown["text"]
    assert other.summary not in shown["text"]
    assert markdown_cell(advice.summary) in shown["markdown"]  # its markup escaped
    assert markdown_cell(other.summary) not in shown["markdown"]
    assert f'id="advice-{advice.key}"' in shown["html"]
    assert f'id="advice-{other.key}"' not in shown["html"]


def test_an_adaptation_listed_under_both_modes_keeps_the_sync_only_advice(log_lines, db):
    """Which middleware it is cannot be told from lines of a route served both ways: the
    sync-only advice, as before. A route served only under ASGI that did not list the
    cause does not make it unknown."""
    with override_settings(MIDDLEWARE=[HOPWATCH, ASYNC_ONLY]):
        assert wsgi_request("/sync/")[0].startswith("200")
        assert asgi_request("/async/").status == 200  # lists no adaptation
    only_wsgi = report(log_lines.raw, by="site")["rows"]
    assert set(_adaptations(only_wsgi, ASYNC_ONLY).values()) == {MIDDLEWARE_ASYNC_ONLY.key}
    with override_settings(MIDDLEWARE=[HOPWATCH, ASYNC_ONLY]):
        assert asgi_request("/sync/").status == 200
    doc = report(log_lines.raw)
    (mixed,) = [row for row in doc["rows"] if row["interfaces"] == {"asgi": 1, "wsgi": 1}]
    assert set(_adaptations(mixed["causes"], ASYNC_ONLY).values()) == {MIDDLEWARE_SYNC_ONLY.key}
    by_site = report(log_lines.raw, by="site")["rows"]
    assert set(_adaptations(by_site, ASYNC_ONLY).values()) == {MIDDLEWARE_SYNC_ONLY.key}


ASYNC_PROCESS_VIEW = "tests.testapp.middleware.AsyncProcessViewMiddleware"


def test_advice_under_a_sync_handler_does_not_speak_of_asgi(log_lines, db, tmp_path, capsys):
    """Under WSGI, startproject's stack with an async-only middleware last: the mixin hooks
    above it hop, and an ``async def`` process_view of one's own is an ``async_to_sync``.
    The advice for both began "Under ASGI, ..." and told a WSGI-only app to make its
    process_view ``async def``, which is what made the hop."""
    # every cause in the lines (their default 10 left the process_view out on 6.1)
    with override_settings(
        MIDDLEWARE=[*STARTPROJECT, ASYNC_ONLY, ASYNC_PROCESS_VIEW], HOPWATCH={"SITES_LIMIT": 100}
    ):
        for _ in range(2):
            assert wsgi_request("/sync/")[0].startswith("200")
    lines = log_lines.parsed()
    sites = {(site["site"], site["direction"]) for line in lines for site in line["sites"]}
    assert (f"{ASYNC_PROCESS_VIEW}.process_view", "async_to_sync") in sites
    assert ("django.contrib.sessions.middleware.SessionMiddleware.process_request",
            "sync_to_async") in sites  # fmt: skip
    doc = report(log_lines.raw)
    summaries = {cause["advice"]["key"]: cause["advice"]["summary"] for cause in doc["fixable"]}
    assert {"middleware-hook", "middleware-async-only", "middleware-process-view"} <= set(
        summaries
    )
    for key, summary in summaries.items():
        assert "Under ASGI," not in summary.split(".")[0], (key, summary)
    assert "a plain `def` under WSGI" in summaries["middleware-process-view"]
    assert "under WSGI only above an async-only middleware" in summaries["middleware-hook"]
    shown = _formats(tmp_path, capsys, log_lines.raw)
    assert "Under ASGI, `MiddlewareMixin`" not in shown["text"]


async def _three_made_functions(request, name):
    """Three functions of one name and call site, each compiled anew (a code
    generator's): one cause, or three equal ones past the table's limit."""
    from asgiref.sync import sync_to_async
    from django.http import HttpResponse

    for _ in range(3):
        namespace: dict = {}
        exec(f"def {name}():\n    return 1\n", namespace)
        await sync_to_async(namespace[name])()
    return HttpResponse("ok")


urlpatterns = [__import__("django.urls").urls.path("made/<str:name>/", _three_made_functions)]


@pytest.fixture
def full_cause_table():
    """The process's table of causes filled to its limit (docs/how-it-works.md's
    table of caches), then given back as it was."""
    from hopwatch import _recorder

    before = dict(_recorder._interned)
    for i in range(_recorder._MAX_INTERNED - len(_recorder._interned)):
        _recorder.intern_cause("other", f"tests.filler_{i}")
    try:
        yield
    finally:
        _recorder._interned.clear()
        _recorder._interned.update(before)


@pytest.mark.parametrize("full", [False, True])
def test_past_the_cause_tables_limit_a_cause_is_listed_per_place_and_the_report_adds_it_up(
    log_lines, request, full
):
    """Under the limit the three crossings are one `sites` entry of count 3; past it,
    three entries of 1 (equal causes no longer shared), which the report adds up to 3."""
    if full:
        request.getfixturevalue("full_cause_table")
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=STARTPROJECT[:1]):
        name = f"made_{'past' if full else 'under'}_the_limit"  # a cause made in this test
        asgi_request(f"/made/{name}/")
    (line,) = log_lines.parsed()
    made = [site for site in line["sites"] if site["site"] == f"builtins.{name}"]
    assert [site["count"] for site in made] == ([1, 1, 1] if full else [3])
    (row,) = report(log_lines.raw)["rows"]
    (cause,) = [cause for cause in row["causes"] if cause["site"] == f"builtins.{name}"]
    assert cause["count"] == 3


REPORT_FORMATS = ("rich", "text", "json", "markdown", "csv", "html", "trace")


def test_lines_that_left_causes_out_take_the_c_scanners_fast_path_with_the_same_figures(
    log_lines, db, tmp_path
):
    """Under default settings every line of an async view behind startproject's middleware
    leaves causes out (SITES_LIMIT: 10 of its 15 causes listed, ``sites_dropped`` 5). Such
    lines went through EndpointStats.add_record in both loops, so the C scanner's parser
    never read a default-configured log (about 16 us a line where a plain one takes 3.5).
    Its parser now reads them, left-out hops and all: every format of the report the same
    as the pure-Python loop's, figure for figure, on lines with and without them."""
    from hopwatch.report import scan

    with override_settings(MIDDLEWARE=STARTPROJECT):
        for _ in range(5):
            assert asgi_request("/async/").status == 200
    # (detail mode: the trace format's timelines)
    with override_settings(MIDDLEWARE=STARTPROJECT, HOPWATCH={"SITES_LIMIT": 3, "DETAIL": True}):
        for _ in range(3):
            assert asgi_request("/async/").status == 200
    with override_settings(MIDDLEWARE=STARTPROJECT, HOPWATCH={"SITES_LIMIT": 100}):
        for _ in range(4):
            assert asgi_request("/async/").status == 200
    lines = log_lines.parsed()
    assert [line.get("sites_dropped", 0) for line in lines] == [5] * 5 + [12] * 3 + [0] * 4
    assert [len(line["sites"]) for line in lines] == [10] * 5 + [3] * 3 + [15] * 4
    assert {line["hops"] for line in lines} == {15}
    raw = [text.encode() for text in log_lines.raw]

    # every line read by the C loop's own parser, as it reads a line without sites_dropped
    if scan.SCAN is not None:
        scanner = Scanner(Partial())
        scanner.feed_lines(raw)
        assert (scanner.partial.records, scanner.parsed_lines) == (12, 12)
    left_out = set()
    for c_loop in (False, True):  # the pure-Python loop; the C one (when built)
        scanner = Scanner(Partial())
        if not c_loop:
            scanner.accumulate = scanner.scan = None
        elif scan.SCAN is None:
            continue
        scanner.feed_lines(raw)
        (stats,) = scanner.finish().endpoints.values()
        assert stats.sites_dropped == 5 * 5 + 3 * 12
        # each listed site of this stack is one crossing: 5 and 12 left out per line
        assert stats.unattributed[:2] == [5.0 + 3.0, 5 * 5.0 + 3 * 12.0]
        left_out.add(repr(stats.unattributed))  # its times too, bit for bit
    assert len(left_out) == 1, left_out

    # Every format, C against pure Python. The per-cause sums are the one documented
    # difference between them (summed as they come in C, with math.fsum per batch in
    # Python: the last bits, which show when a figure lies at a rounding boundary, and can
    # swap two causes of equal totals), so the lines' causes get times that are multiples
    # of 1/1024 ms, which add up exactly in any order: then every figure is the same.
    exact = [json.dumps(_dyadic(json.loads(text))).encode() for text in raw]
    c_shown, pure_shown = _reports(tmp_path / "exact.log", exact, REPORT_FORMATS)
    for name in REPORT_FORMATS:
        assert c_shown[name] == pure_shown[name], name
    (row,) = json.loads(c_shown["json"])["rows"]
    assert (row["sites_dropped"], row["left_out"]["count"]) == (61, 61)
    assert row["left_out"]["requests"] == 8


def _dyadic(line: dict) -> dict:
    for site in line["sites"]:
        site["ms"] = round(site["ms"] * 1024) / 1024
        if site.get("overhead_ms") is not None:
            site["overhead_ms"] = round(site["overhead_ms"] * 1024) / 1024
    return line


def _reports(log: Path, raw: list[bytes], formats: tuple[str, ...]) -> list[dict[str, str]]:
    """``hopwatch report`` of the lines in each format: with the C loop, then pure Python."""
    log.write_bytes(b"\n".join(raw) + b"\n")
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "200"}
    shown: list[dict[str, str]] = [{}, {}]
    for pure in (0, 1):
        for name in formats:
            done = subprocess.run(
                [sys.executable, "-m", "hopwatch", "report", str(log), "--format", name,
                 "--jobs", "1", "--top", "0"],
                env={**env, "HOPWATCH_PURE_PYTHON": str(pure)},
                capture_output=True,
                timeout=120,
                check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr.decode()
            # (the HTML page's "generated" minute moves when the two runs straddle one)
            page = done.stdout.decode()
            shown[pure][name] = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "(minute) UTC", page)
    return shown


PIPE_BUF = 4096  # Linux: a pipe keeps a write whole up to this many bytes


def _through_a_pipe(*writers: list[str]) -> bytes:
    """What a slowly read pipe hands on when each writer (a worker process sharing the
    container's stdout) writes each of its lines in one ``write()``, as hopwatch does: a
    write of at most PIPE_BUF bytes goes whole, a longer one PIPE_BUF bytes at a time as
    the reader makes room, the other writers' writes going in between, in turn."""
    pending = [[(text + "\n").encode() for text in lines] for lines in writers]
    left = [b""] * len(writers)
    out = bytearray()
    while any(pending) or any(left):
        for i, lines in enumerate(pending):
            if not left[i] and lines:
                left[i] = lines.pop(0)
            out += left[i][:PIPE_BUF]
            left[i] = left[i][PIPE_BUF:]
    return bytes(out)


def test_the_tail_of_a_line_a_pipe_tore_is_skipped_as_torn_not_counted_as_another_line(
    log_lines, db, implementation
):
    """Two workers' DETAIL lines (longer than PIPE_BUF) through one slowly read stdout
    pipe: each line is split around the other worker's write. The piece that starts a
    line holds the marker and is skipped as malformed JSON; the tail that ends the other
    line had no marker and was counted as another logger's line, so ``skipped`` told
    half the loss. It is now skipped as ``torn``, in both loops (and both of the loops'
    modes: the marker looked for first, or the line decoded first), with a CRI prefix or
    a carriage return after it; another logger's JSON stays another line."""
    from hopwatch.report import scan

    with override_settings(MIDDLEWARE=STARTPROJECT, HOPWATCH={"DETAIL": True}):
        for _ in range(9):
            assert asgi_request("/async/").status == 200
    with override_settings(MIDDLEWARE=STARTPROJECT):
        for _ in range(3):
            assert asgi_request("/async/").status == 200
    raw = log_lines.raw
    long, short = raw[:9], raw[9:]
    assert all(text.endswith(',"level":"info","logger":"hopwatch"}') for text in raw)
    # every long line written in the same number of pieces (2 or more): each round of
    # the two workers makes one line of both heads (malformed) and one tail
    pieces = {-(-len(text.encode()) // PIPE_BUF) for text in long[:8]}
    assert len(pieces) == 1 and pieces.pop() >= 2, [len(text) for text in long]
    assert all(len(text.encode()) < PIPE_BUF for text in short)
    piped = _through_a_pipe(long[0:8:2], long[1:8:2])
    last = long[8]
    tail_without_brace = last[last.rindex("{") + 1 :]  # the pipe cuts anywhere
    log = b"".join(
        (
            piped,
            *((text + "\n").encode() for text in short),
            b"Starting ASGI server\n",
            b'{"event":"request_finished","level":"info","logger":"django"}\n',
            b"2026-12-07T12:00:00.000000000Z stdout F " + last[PIPE_BUF:].encode() + b"\n",
            last[PIPE_BUF:].encode() + b"\r\n",
            tail_without_brace.encode() + b"\n",
        )
    )
    assert log.count(b"\n") == 8 + 3 + 2 + 3
    if implementation == "c":
        assert scan.SCAN is not None
    for prefilter in (False, True):
        scanner = Scanner(Partial())
        scanner._prefilter = prefilter
        scanner.feed(log)
        partial = scanner.finish()
        assert (partial.lines, partial.records, partial.other_lines) == (16, 3, 2), prefilter
        assert partial.skipped == {"malformed_json": 4, "torn": 4 + 3}, prefilter
