"""The report on lines hopwatch wrote for real requests (Django's ASGI handler, startproject's
middleware): every crossing accounted for, and the audit's advice reads as the saving it is."""

from __future__ import annotations

import json

from django.conf import settings
from django.test import override_settings

from hopwatch.report import rank
from hopwatch.report.aggregate import Partial
from hopwatch.report.scan import Scanner
from tests.helpers import asgi_request

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
