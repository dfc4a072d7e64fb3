"""The pool saturation section (pinned): an unknown ASGI_THREADS state, an hour of
process lines merged into at most ROWS_SHOWN rows."""

from __future__ import annotations

from hopwatch.report import render, threads
from tests.report.samples import line
from tests.report.test_aggregate import document, scan
from tests.report.test_threads_report import process_line

UNKNOWN = {
    "loop": True, "created": True, "max_workers": 6, "threads": 6, "busy": 6, "queued": 3,
    "asgi_threads": None, "asgi_threads_applied": None,
}  # fmt: skip


def test_asgi_threads_applied_null_is_not_set_but_not_applied() -> None:
    lines = [
        line(),
        process_line("00", default_pool=UNKNOWN),
        process_line("01", default_pool=UNKNOWN),
    ]
    doc = document(scan(lines))
    assert doc["pool_over_time"]["lines"] == 2
    assert doc["pool_over_time"]["asgi_threads_not_applied_lines"] == 0
    text = render.render_to_string(doc, "text")
    assert "default pool saturation over time (hopwatch.process lines)\n" in text
    assert "not applied" not in text


def test_an_hour_of_process_lines_fits_rows_shown_each_label_spanning_its_minutes() -> None:
    # minute m carries m + 1 requests: a row's requests tell which minutes it sums
    lines = [line(), *(process_line(f"{m:02d}", requests=m + 1) for m in range(60))]
    doc = document(scan(lines))
    assert len(doc["pool_over_time"]["minutes"]) == 60  # the JSON keeps every minute
    text = render.render_to_string(doc, "text")
    rows = [row.split() for row in text.splitlines() if row.startswith("2026-11-24T10:")]
    assert threads.ROWS_SHOWN == 24
    assert len(rows) == 20  # 3 minutes a row (60 / 24, rounded up)
    expected = [
        (f"2026-11-24T10:{m:02d}-10:{m + 2:02d}", str((m + 1) + (m + 2) + (m + 3)))
        for m in range(0, 60, 3)
    ]
    assert [(row[0], row[2]) for row in rows] == expected
