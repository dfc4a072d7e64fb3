"""The report's threads sections: concurrency and connections per endpoint, pool saturation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hopwatch.report import render, threads
from hopwatch.report.aggregate import Partial
from hopwatch.report.scan import Filters, Scanner
from tests.report.samples import line
from tests.report.test_aggregate import ROOT, document, scan


def process_line(minute: str, second: int = 0, pid: int = 1, **fields: Any) -> str:
    event: dict[str, Any] = {
        "event": "hopwatch.process",
        "schema": 1,
        "timestamp": f"2026-11-24T10:{minute}:{second:02d}.000000Z",
        "pid": pid,
        "threads_alive": 9,
        "native_threads": 11,
        "default_pool": {
            "loop": True,
            "created": True,
            "max_workers": 6,
            "threads": 6,
            "busy": 2,
            "queued": 0,
            "asgi_threads": 3,
            "asgi_threads_applied": False,
        },
        "single_thread_started": False,
        "contexts_open": 1,
        "interval_s": 10.0,
        "requests": 10,
        "executors": {"context_thread": 20, "default_pool": 10},
        "db_connections": 10,
        "pool_crossings": 10,
        "pool_queue_max": 0,
        "pool_queue_p95": 0,
        "pool_busy_max": 2,
        "pool_wait_max_ms": 0.5,
        "pool_wait_p95_ms": 0.2,
        "contexts_max": 2,
        "level": "info",
        "logger": "hopwatch",
    }
    event.update(fields)
    return json.dumps(event, separators=(",", ":"))


def test_concurrency_and_connections_per_endpoint():
    lines = [
        line(request_id="a", max_in_flight=1, concurrent_ms=0.0, db_connections=1),
        line(request_id="b", max_in_flight=5, concurrent_ms=4.0, db_connections=5),
        line(request_id="c", db_connections=2),  # hops not all kept: no concurrency
        line(request_id="d"),  # a line from before the fields
    ]
    (row,) = document(scan(lines))["rows"]
    c = row["concurrency"]
    assert c["records"] == 3
    assert c["db_connections"] == {"mean": round(8 / 3, 3), "max": 5, "total": 8}
    assert c["max_in_flight"] == {"mean": 3.0, "max": 5}
    assert c["concurrent_ms"] == {"mean": 2.0}


def test_old_lines_have_no_concurrency_and_no_section():
    doc = document(scan([line()]))
    assert doc["rows"][0]["concurrency"] is None and doc["pool_over_time"] is None
    text = render.render_to_string(doc, "text")
    assert "threads and connections" not in text and "saturation" not in text


@pytest.mark.parametrize("others", [0, 50])  # the scanner's two modes (prefilter or not)
def test_pool_saturation_over_time_from_process_lines(others):
    noise = ['{"event":"something else","logger":"app"}'] * others
    lines = [
        *noise,
        line(max_in_flight=1, concurrent_ms=0.0, db_connections=0),
        process_line("00", 10, pid=1),
        process_line("00", 20, pid=2, pool_queue_max=4, pool_busy_max=6, pool_wait_p95_ms=9.5),
        process_line("01", 10, pid=1, requests=3),
        *noise,
    ]
    partial = scan(lines)
    assert partial.records == 1  # process lines are not request records
    doc = document(partial)
    pool = doc["pool_over_time"]
    assert pool["lines"] == 3 and pool["asgi_threads_not_applied_lines"] == 3
    first, second = pool["minutes"]
    assert first["minute"] == "2026-11-24T10:00" and second["minute"] == "2026-11-24T10:01"
    assert first["processes"] == 2 and first["requests"] == 20
    assert first["pool_queue_max"] == 4 and first["pool_busy_max"] == 6
    assert first["pool_busy_share_max"] == 1.0 and first["pool_wait_p95_ms_max"] == 9.5
    assert second["requests"] == 3 and second["pool_queue_max"] == 0
    text = render.render_to_string(doc, "text")
    assert "default pool saturation over time" in text
    assert "ASGI_THREADS set but not applied in 3 lines" in text
    assert "2026-11-24T10:00" in text
    markdown = render.render_to_string(doc, "markdown")
    assert "#### default pool saturation over time" in markdown


def _row_cells(doc: dict[str, Any], minute: str) -> list[str]:
    """The cells of the saturation table's row of ``minute``, as the text shows them."""
    text = render.render_to_string(doc, "text")
    return next(row for row in text.splitlines() if row.startswith(minute)).split()


def test_busy_percent_is_the_busy_column_over_max_workers():
    """``busy %`` is the interval's busiest (``pool_busy_max``, the ``busy`` column)
    of ``max_workers``: the pool's state as the line was written is no part of it
    (an idle pool read 5 busy of 6 there once, and the row said busy 0, busy 83.3%)."""
    idle = {"pool_busy_max": 0, "pool_queue_max": 0}
    pool = {"loop": True, "created": True, "max_workers": 6, "threads": 6, "busy": 5,
            "queued": 0, "asgi_threads": None, "asgi_threads_applied": None}  # fmt: skip
    doc = document(scan([line(), process_line("00", default_pool=pool, **idle)]))
    (minute,) = doc["pool_over_time"]["minutes"]
    assert minute["pool_busy_max"] == 0 and minute["pool_busy_share_max"] == 0.0
    assert _row_cells(doc, "2026-11-24T10:00")[4:7] == ["0", "0.0%", "0"]  # busy, %, queued


def test_a_pool_that_could_not_be_read_shows_no_figures_for_it(monkeypatch):
    """A loop whose default pool hopwatch cannot read writes null for its size and
    the figures that need it: the minute shows them unknown, not 0."""
    unknown = {"loop": True, "created": None, "max_workers": None, "threads": None,
               "busy": None, "queued": None, "asgi_threads": None,
               "asgi_threads_applied": None}  # fmt: skip
    nulls = {"pool_queue_max": None, "pool_queue_p95": None, "pool_busy_max": None}
    lines = [
        line(),
        process_line("00", default_pool=unknown, **nulls),
        process_line("01", default_pool=unknown, **nulls),
        process_line("01", 30, pid=2, pool_queue_max=1, pool_busy_max=3),
    ]
    doc = document(scan(lines))
    pool = doc["pool_over_time"]
    assert pool["lines"] == 3 and pool["invalid_lines"] == 0
    unread, mixed = pool["minutes"]
    assert unread["pool_queue_max"] is None and unread["pool_busy_max"] is None
    assert unread["pool_busy_share_max"] is None and unread["requests"] == 10
    # A minute with a line that could tell: its figures.
    assert mixed["pool_queue_max"] == 1 and mixed["pool_busy_max"] == 3
    assert mixed["pool_busy_share_max"] == 0.5
    assert _row_cells(doc, "2026-11-24T10:00")[4:7] == ["-", "-", "-"]  # busy, %, queued
    # Merged into coarser rows, the known figures win over the unknown ones.
    monkeypatch.setattr(threads, "ROWS_SHOWN", 1)
    (coarse,) = threads._coarse(pool["minutes"])
    assert coarse["pool_queue_max"] == 1 and coarse["pool_busy_share_max"] == 0.5


def test_a_pool_size_without_its_busy_figure_has_no_busy_share():
    """A line that gives the pool's max_workers but null for pool_busy_max: the
    busy share is unknown too, the line still read (not invalid, not 0%)."""
    doc = document(scan([line(), process_line("00", pool_busy_max=None)]))
    pool = doc["pool_over_time"]
    assert pool["lines"] == 1 and pool["invalid_lines"] == 0
    (minute,) = pool["minutes"]
    assert (minute["pool_busy_max"], minute["pool_busy_share_max"]) == (None, None)
    assert minute["pool_queue_max"] == 0 and minute["requests"] == 10
    assert _row_cells(doc, "2026-11-24T10:00")[4:7] == ["-", "-", "0"]  # busy, %, queued


def test_process_lines_follow_the_time_filter_and_merge_across_readers():
    lines = [process_line("00"), process_line("05"), process_line("09")]
    since = Filters(since="2026-11-24T10:04:00.000000Z")
    assert [m["minute"][-2:] for m in document(scan(lines, since))["pool_over_time"]["minutes"]] == [
        "05",
        "09",
    ]
    merged = Partial()
    for text in lines:
        scanner = Scanner(Partial())
        scanner.feed_lines([text.encode()])
        merged.merge(scanner.finish())
    assert document(merged)["pool_over_time"]["lines"] == 3


def test_process_lines_on_the_time_bounds_follow_since_and_until_as_requests_do(
    run_cli, tmp_path, implementation
):
    """--since is inclusive and --until exclusive (docs/report.md), for the pool's
    process lines as for request lines: a process line exactly at --until is left out
    (it was kept, mutant sc3), one exactly at --since is kept."""
    lines = [
        process_line("00"),
        line(timestamp="2026-11-24T10:00:30.000000Z"),
        process_line("01"),
        process_line("02"),
    ]
    until = Filters(since="2026-11-24T10:00:00.000000Z", until="2026-11-24T10:01:00.000000Z")
    pool = document(scan(lines, until))["pool_over_time"]
    assert (pool["lines"], [m["minute"] for m in pool["minutes"]]) == (1, ["2026-11-24T10:00"])
    log = tmp_path / "app.log"
    log.write_text("\n".join(lines) + "\n")
    for bounds, minutes in (
        (["--until", "2026-11-24T10:01:00Z"], ["00"]),
        (["--since", "2026-11-24T10:01:00Z", "--until", "2026-11-24T10:02:00Z"], ["01"]),
    ):
        result = run_cli(log, "--format", "json", "--jobs", "1", *bounds)
        pool = json.loads(result.out)["pool_over_time"]
        assert [m["minute"][-2:] for m in pool["minutes"]] == minutes, bounds
        assert pool["lines"] == 1


def test_a_malformed_process_line_is_counted_not_fatal():
    broken = process_line("00").replace('"pid":1', '"pid":"one"')
    pool = document(scan([broken, process_line("01")]))["pool_over_time"]
    assert pool["lines"] == 1 and pool["invalid_lines"] == 1


def test_log_content_in_the_sections_is_escaped():
    hostile = "/x/\x1b[31m|evil|"
    doc = document(scan([line(route=hostile, max_in_flight=2, db_connections=1)]))
    text = render.render_to_string(doc, "text")
    assert "\x1b" not in text
    markdown = render.render_to_string(doc, "markdown")
    section = markdown.split("#### threads and connections per request")[1]
    assert "|evil|" not in section  # markdown's cell separator escaped


@pytest.mark.parametrize("width", [60, 80, 120])
def test_the_sections_fit_a_terminal_without_wrapping_a_row(width):
    """On a terminal the threads table keeps to its width as the main table does: the
    label is cut in the middle, then columns leave from the right; rows never wrap."""
    import io

    from hopwatch.report import threads

    route = "/api/v1/organisations/<int:org>/members/<int:pk>/permissions/"
    doc = document(scan([line(route=route, max_in_flight=2, concurrent_ms=1.5, db_connections=3)]))
    wide = io.StringIO()
    threads.write_text(doc, wide)
    assert max(len(row) for row in wide.getvalue().splitlines()) > width  # it would wrap
    out = io.StringIO()
    threads.write_text(doc, out, width)
    rows = out.getvalue().splitlines()
    assert rows and max(len(row) for row in rows) <= width
    body = [row for row in rows if row.startswith("1  GET")]  # the rank, then the label
    assert body and body[0].startswith("1  GET /api") and "…" in body[0]
    assert body[0].split()[-1] in ("2", "3", "3.0", "1.500")  # numbers, not a cut label


def test_rows_cut_alike_on_a_narrow_terminal_keep_the_main_tables_rank():
    """Two routes that differ only in their middle read alike once cut to 80 columns;
    each row starts with its rank in the main table, which tells them apart."""
    import io

    from hopwatch.report import threads

    # alike in their first 28 characters and their last 18: any cut to 47 or less
    routes = [
        "/api/v1/things/<int:pk>/alpha/members/<int:pk>/",
        "/api/v1/things/<int:pk>/bravo/members/<int:pk>/",
    ]
    lines = [
        line(request_id=f"{route}{n}", route=route, max_in_flight=2, db_connections=1)
        for n, route in enumerate(routes * 2 + routes[:1])  # the first route ranks first
    ]
    doc = document(scan(lines))
    ranked = {row["label"]: row["rank"] for row in doc["rows"]}
    assert ranked == {f"GET {routes[0]}": 1, f"GET {routes[1]}": 2}
    out = io.StringIO()
    threads.write_text(doc, out, 60)
    header, first, second = out.getvalue().splitlines()[2:5]
    assert header.split()[:2] == ["#", "endpoint"]
    assert first.split()[:2] == ["1", "GET"] and second.split()[:2] == ["2", "GET"]
    assert "…" in first and first.split()[2] == second.split()[2]  # the cut labels alike
    markdown = render.render_to_string(doc, "markdown")
    section = markdown.split("#### threads and connections per request")[1]
    assert "| 1 | GET /api/v1/things/\\<int:pk\\>/alpha/" in section
    assert "| 2 | GET /api/v1/things/\\<int:pk\\>/bravo/" in section


def test_the_label_takes_the_room_a_column_leaves():
    """Columns leave only while the label cannot fit at its narrowest; then the label
    gets all the room left, not just its narrowest."""
    import io

    from hopwatch.report import threads

    route = "/api/v1/carts/<int:pk>/"  # 27 columns with its method: 92 in all, 5 too many
    doc = document(scan([line(route=route, max_in_flight=2, concurrent_ms=1.5, db_connections=3)]))
    out = io.StringIO()
    threads.write_text(doc, out, 80)
    header, row = out.getvalue().splitlines()[2:4]
    assert header.split()[-1] == "conn/req"  # the last column (max) left
    assert len(row) == 80 and row.startswith("1  GET /api/v")  # the label filled the room
    assert "…" in row.split()[2]


#: Objects whose keys are data (a status, a reason, a part's name), not fields.
_DATA_KEYED = {"statuses", "interfaces", "skipped_by_reason", "filtered_by_reason", "parts_lost"}


def _keys(value: Any) -> set[str]:
    keys: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            keys.add(key)
            if key not in _DATA_KEYED:
                keys |= _keys(inner)
    elif isinstance(value, list):
        for inner in value:
            keys |= _keys(inner)
    return keys


def test_every_field_of_the_json_is_in_its_documentation():
    """docs/report.md, "The JSON output", names every field of the document: a row's
    ``concurrency`` and ``pool_over_time`` with their items too (they were not)."""
    section = (ROOT / "docs" / "report.md").read_text(encoding="utf-8")
    section = section[section.index("## The JSON output") : section.index("## Percentiles")]
    lines = [
        line(request_id="a", max_in_flight=2, concurrent_ms=1.5, db_connections=1),
        process_line("00"),
        process_line("01", pid=2),
    ]
    doc = document(scan(lines))
    assert doc["rows"][0]["concurrency"] is not None and doc["pool_over_time"] is not None
    named = [key for key in _keys(doc) if f"`{key}" in section or f"{key}`" in section]
    assert sorted(_keys(doc).difference(named)) == []
