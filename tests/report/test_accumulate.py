"""The report's two accumulations: the C one (hopwatch/report/_accumulate.c) and the
pure-Python reference in Scanner.feed.

The test command runs the suite with HOPWATCH_REQUIRE_C=1 (a build that silently
fell back to Python fails here) and with HOPWATCH_PURE_PYTHON=1. Here both run
side by side on the lines that take the unusual paths (offsets, sampled and
profiled records, lines from older hopwatch releases, filters, foreign and broken
lines), and must give the same report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from hopwatch.report import rank, scan
from hopwatch.report.aggregate import EndpointStats, Partial
from hopwatch.report.parse import decode_record
from hopwatch.report.scan import Filters, Scanner, StatusFilter
from tests.report.samples import AUTH, SESSION, line, record, site
from tests.report.test_aggregate import close
from tests.report.test_threads_report import process_line

C = scan.load_accelerator()
needs_c = pytest.mark.skipif(
    C is None and not os.environ.get("HOPWATCH_REQUIRE_C"),
    reason="the report's C accelerator is not built here",
)


def test_the_implementation_asked_for_is_the_one_running() -> None:
    if os.environ.get("HOPWATCH_PURE_PYTHON") not in (None, "", "0"):
        assert scan.IMPLEMENTATION == "python" and scan.SCAN is None
    elif os.environ.get("HOPWATCH_REQUIRE_C"):
        assert scan.IMPLEMENTATION == "c", "the report's C accelerator was not built"
        assert scan.SCAN is not None and scan.ACCUMULATE is not None


def test_the_pure_python_path_is_chosen_by_the_environment() -> None:
    code = "from hopwatch.report import scan; print(scan.IMPLEMENTATION)"
    env = {**os.environ, "HOPWATCH_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "python"


def _scan(texts: list[str], c: bool, filters: Filters | None = None, block: int = 7) -> Partial:
    scanner = Scanner(Partial(), filters)
    if c:
        assert C is not None, "the report's C accelerator was not built"
        scanner.accumulate, scanner.scan = C.add, C.scan
    else:
        scanner.accumulate = scanner.scan = None
    lines = [text.encode() for text in texts]
    for start in range(0, len(lines), block):  # several blocks: the modes adapt per block
        scanner.feed_lines(lines[start : start + block])
    return scanner.finish()


def _document(partial: Partial, **options: Any) -> dict[str, Any]:
    return rank.build_document(partial, rank.ReportOptions(top=0, **options), ["x"])


def _unusual_lines() -> list[str]:
    sites = [site(SESSION, ms=0.4, overhead_ms=0.1), site(AUTH, ms=0.3, overhead_ms=0.2)]
    plain = {"sites": sites, "overhead_ms": 0.3, "work_ms": 0.4, "db_connections": 1}
    texts = []
    for i in range(60):
        texts.append(line(request_id=f"p{i}", hop_ms=0.5 + i, status=200 + i % 3, **plain))
    texts += [
        line(timestamp="2026-11-24T11:00:00.5+01:00", **plain),  # an offset: the same instant
        line(timestamp="0001-01-01T00:30:00+01:00", **plain),  # out of range in UTC: skipped
        line(sample_rate=0.25, **plain),
        line(profile="p.html", **plain),
        line(hopwatch_errors=2, **plain),
        line(sites_dropped=3, **plain),
        line(hops=4, sites=[]),  # no sites: its hops are left out, and counted
        line(sites=sites),  # from before overhead_ms, db_connections
        json.dumps(record(pinned=False, sites=sites)),  # from before pinned_ms
        line(hop_tax_us=210.0, **plain),
        line(max_in_flight=2, concurrent_ms=1.5, **plain),
        line(max_in_flight=1, concurrent_ms=None, **plain),
        line(new_loops=2, threads=5, max_depth=3, **plain),
        line(pinned_ms=2.5, pinned_by=AUTH, **plain),
        line(hop_ms=0.0, overhead_ms=0.0, work_ms=0.0, sites=[site(SESSION, ms=0.0)]),
        line(route="/fresh/<slug>/", view="shop.views.fresh", **plain),  # a new endpoint
        line(view=None, route="/wp-login.php", status=404, **plain),
        "2026-11-24T10:00:00.1Z stdout F " + line(**plain),  # a container prefix
        '{"log": ' + json.dumps(line(**plain) + "\n") + ', "stream": "stdout"}',  # an envelope
        '{"event": "django.request", "level": "info"}',  # another logger's JSON
        "plain text, no brace",
        "",
        line(**plain)[:-30],  # truncated
        line(**plain).replace('"hops":15', '"hops":"15"'),  # invalid:hops
        line(**plain).replace('"sites":[', '"sites":[7,'),  # a malformed sites entry
        "x" * 100 + "{" + "y" * 50,
        process_line("00", 5),  # a process line: not a record, read by the pool series
        process_line("01", 5, pid=2),
    ]
    return texts + texts[:60]


@needs_c
@pytest.mark.parametrize("block", [1, 7, 1000])
def test_both_accumulations_give_the_same_report(block: int) -> None:
    texts = _unusual_lines()
    c, python = _scan(texts, True, block=block), _scan(texts, False, block=block)
    for field in ("lines", "records", "other_lines", "skipped", "parts_lost", "hopwatch_errors"):
        assert getattr(c, field) == getattr(python, field), field
    assert (c.first_timestamp, c.last_timestamp) == (python.first_timestamp, python.last_timestamp)
    assert c.skipped == {"invalid:timestamp": 1, "truncated": 1, "invalid:hops": 1}
    assert c.parts_lost == {"sites": 1}
    assert c.pool is not None and python.pool is not None
    assert vars(c.pool) == vars(python.pool) and vars(c.pool)
    for options in ({}, {"by": "site"}, {"by": "view"}, {"sort": "p95"}):
        assert close(_document(c, **options), _document(python, **options)), options


@needs_c
def test_both_accumulations_agree_under_filters() -> None:
    texts = _unusual_lines()
    for filters in (
        Filters(since="2026-11-24T10:00:00.000000Z", until="2026-11-24T10:30:00.000000Z"),
        Filters(status=StatusFilter(frozenset({"2xx"}), frozenset({"201"}))),
        Filters(interfaces=frozenset({"wsgi"})),
    ):
        c, python = _scan(texts, True, filters), _scan(texts, False, filters)
        assert c.filtered == python.filtered and c.records == python.records
        assert close(_document(c), _document(python))


@needs_c
def test_wrong_objects_raise_instead_of_crashing() -> None:
    assert C is not None
    good = decode_record(line(sites=[site(SESSION)]).encode())
    stats = EndpointStats((0, "GET", "/x", "v"))
    with pytest.raises(AttributeError):
        C.add(stats, object())
    with pytest.raises(AttributeError):
        C.add(object(), good)
    stats.acc = ()  # type: ignore[assignment]
    with pytest.raises(TypeError):
        C.add(stats, good)
    with pytest.raises(TypeError):
        C.scan(b"{}\n", 0, 3)
    with pytest.raises(TypeError):
        C.scan(b"{}\n", 0, 3, len, ValueError, [], [], None, None, None, 10)


@needs_c
def test_the_c_loop_looks_for_the_same_markers() -> None:
    assert C is not None
    assert (C.MARKER, C.PROCESS_MARKER) == (scan.parse.MARKER, scan.PROCESS_MARKER)
    assert C.LINE_ENDING == scan.parse.LINE_ENDING  # a torn line's tail ends so


@needs_c
@pytest.mark.parametrize("parser", [True, False])
def test_no_cause_is_lost_when_an_endpoint_trims_its_causes_mid_record(parser: bool) -> None:
    """A new cause can make EndpointStats._add_site trim the causes (past 2 * SITE_CAP),
    which replaces the endpoint's dict of causes: the record's later causes must go
    into the new one (they once went into the old one, and were lost)."""
    from hopwatch.report.aggregate import SITE_CAP

    texts = []
    for i in range(400):  # a new large cause, then a small one the trim sums into "other"
        named = [site(f"large.{i}", ms=1.0), site("small", ms=0.001)]
        texts.append(line(request_id=f"t{i}", hops=2, sites=named))
    for c in (True, False):
        scanner = Scanner(Partial())
        if c:
            assert C is not None
            scanner.accumulate, scanner.scan = C.add, C.scan
            scanner.parser = parser
        else:
            scanner.accumulate = scanner.scan = None
        scanner.feed_lines([text.encode() for text in texts])
        (stats,) = scanner.finish().endpoints.values()
        assert SITE_CAP <= len(stats.sites) <= 2 * SITE_CAP
        requests = sum(entry[0] for entry in stats.sites.values()) + stats.other_site[0]
        assert requests == 800, ("c" if c else "python", requests)
