"""Causes that tie in the log tie in the report: docs/report.md's "most overhead first,
then most time, then by name", compared as the log resolves them (µs), whatever order
the sums were added in (the C accumulation adds each in turn, the Python one folds with
fsum, --jobs merges partial sums as its readers finish)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.report.conftest import Run
from tests.report.samples import AUTH, SESSION, line, site

# One endpoint, three lines (one file each, for --jobs). Overheads as the log writes them:
#   cause_a: 0.1 + 0.2 + 0.3 ms (0.6000000000000001 added in turn, 0.6 by fsum), 1.5 ms
#   cause_b: 0.6 ms once, 2.0 ms: ties with cause_a, more time, so first
#   cause_z: 0.001 + 0.008 ms (0.009000000000000001 either way), 0.4 ms
#   cause_y: 0.009 ms once, 0.4 ms: ties with cause_z on both, so by name, first
#   cause_w: 0.009 ms once, 1.0 ms: ties with both on overhead, more time: before them
TIE_LINES = [
    [
        site("app.cause_a", "other", ms=0.5, overhead_ms=0.1),
        site("app.cause_b", "other", ms=2.0, overhead_ms=0.6),
        site("app.cause_z", "other", ms=0.2, overhead_ms=0.001),
        site("app.cause_y", "other", ms=0.4, overhead_ms=0.009),
        site("app.cause_w", "other", ms=1.0, overhead_ms=0.009),
    ],
    [
        site("app.cause_a", "other", ms=0.5, overhead_ms=0.2),
        site("app.cause_z", "other", ms=0.2, overhead_ms=0.008),
    ],
    [site("app.cause_a", "other", ms=0.5, overhead_ms=0.3)],
]
TIE_ORDER = ["app.cause_b", "app.cause_a", "app.cause_w", "app.cause_y", "app.cause_z"]


def write_logs(tmp_path: Path, sites_per_line: list[list[dict[str, Any]]]) -> list[Path]:
    """One file per line, each line's totals its sites' sums (as hopwatch writes them)."""
    paths = []
    for index, sites in enumerate(sites_per_line):
        hop_ms = round(sum(entry["ms"] for entry in sites), 3)
        overhead = round(sum(entry["overhead_ms"] for entry in sites), 3)
        text = line(
            request_id=f"{index:016x}",
            hops=len(sites),
            hop_ms=hop_ms,
            wait_ms=0.0,
            overhead_ms=overhead,
            work_ms=round(hop_ms - overhead, 3),
            sites=sites,
        )
        path = tmp_path / f"pod{index}.log"
        path.write_text(text + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def report(run_cli: Any, paths: list[Path], *args: str) -> dict[str, Any]:
    result: Run = run_cli(*paths, "--format", "json", "--top", "0", *args)
    assert result.status == 0 and result.err == "", result.err
    document: dict[str, Any] = json.loads(result.out)
    return document


@pytest.mark.parametrize("jobs", ["1", "3"])
def test_causes_that_tie_on_overhead_rank_by_time_then_name(
    run_cli: Any, tmp_path: Path, implementation: str, jobs: str
) -> None:
    paths = write_logs(tmp_path, TIE_LINES)
    document = report(run_cli, paths, "--jobs", jobs)
    (row,) = document["rows"]
    assert [(c["site"], c["overhead_ms"], c["ms"]) for c in row["causes"]] == [
        ("app.cause_b", 0.6, 2.0),
        ("app.cause_a", 0.6, 1.5),
        ("app.cause_w", 0.009, 1.0),
        ("app.cause_y", 0.009, 0.4),
        ("app.cause_z", 0.009, 0.4),
    ]
    # what to change first, and --by site, in the same order
    assert [cause["site"] for cause in document["fixable"]] == TIE_ORDER
    by_site = report(run_cli, paths, "--jobs", jobs, "--by", "site")
    assert [cause["site"] for cause in by_site["rows"]] == TIE_ORDER
    assert [cause["site"] for cause in by_site["fixable"]] == TIE_ORDER


def test_a_row_keeps_only_its_first_causes_in_that_order(
    run_cli: Any, tmp_path: Path, implementation: str
) -> None:
    """Past 10 causes the rest are summed into other_causes: the tie decides which stay
    (cause_a, tied with cause_b on overhead with less time, is the one left out)."""
    fillers = [
        site(f"app.filler{n}", "other", ms=5.0, overhead_ms=1.0 + n / 10) for n in range(9)
    ]
    a_only = [[entry] for line_sites in TIE_LINES[1:] for entry in line_sites[:1]]
    lines = [TIE_LINES[0][:2] + fillers, *a_only]
    (row,) = report(run_cli, write_logs(tmp_path, lines), "--jobs", "1")["rows"]
    assert [cause["site"] for cause in row["causes"][-2:]] == ["app.filler0", "app.cause_b"]
    assert row["other_causes"]["overhead_ms"] == 0.6 and row["other_causes"]["ms"] == 1.5


def test_djangos_hooks_tie_with_a_cause_as_the_log_has_them(
    run_cli: Any, tmp_path: Path, implementation: str
) -> None:
    """Django's hooks as one item: SessionMiddleware 0.1 + 0.2 + 0.3 ms (1.5 ms),
    AuthenticationMiddleware 0.6 ms (2.0 ms), 1.2 ms in all (3.5 ms), which ties with
    app.query's 1.2 ms (10.0 ms): app.query first, and among the hooks Auth first."""
    lines = [
        [
            site(SESSION, ms=0.5, overhead_ms=0.1),
            site(AUTH, ms=2.0, overhead_ms=0.6),
            site("app.query", "other", ms=10.0, overhead_ms=1.2),
        ],
        [site(SESSION, ms=0.5, overhead_ms=0.2)],
        [site(SESSION, ms=0.5, overhead_ms=0.3)],
    ]
    for jobs in ("1", "3"):
        fixable = report(run_cli, write_logs(tmp_path, lines), "--jobs", jobs)["fixable"]
        assert [(cause["site"], cause["overhead_ms"], cause["ms"]) for cause in fixable] == [
            ("app.query", 1.2, 10.0),
            ("Django's own middleware hooks", 1.2, 3.5),
        ]
        assert fixable[1]["sites"] == [AUTH, SESSION]


def test_the_wait_share_sort_ranks_by_the_wait_column(
    run_cli: Any, tmp_path: Path, implementation: str
) -> None:
    """``--sort wait-share`` ranks by what the table's ``wait %`` shows, wait over
    overhead: /a/ queued half its overhead (1 of 2 ms), /b/ a tenth (1 of 10 ms), though
    over hop time /b/'s wait is the larger share (1 of 10.5 ms against 1 of 20)."""
    texts = [
        line(request_id="0000000000000000", route="/a/", view="app.views.a", hop_ms=20.0,
             wait_ms=1.0, overhead_ms=2.0, work_ms=18.0,
             sites=[site("app.x", "other", count=2, ms=20.0, overhead_ms=2.0)]),
        line(request_id="0000000000000001", route="/b/", view="app.views.b", hop_ms=10.5,
             wait_ms=1.0, overhead_ms=10.0, work_ms=0.5,
             sites=[site("app.x", "other", count=2, ms=10.5, overhead_ms=10.0)]),
    ]  # fmt: skip
    log = tmp_path / "app.log"
    log.write_text("\n".join(texts) + "\n", encoding="utf-8")
    rows = report(run_cli, [log], "--sort", "wait-share", "--jobs", "1")["rows"]
    assert [(r["label"], r["wait_of_overhead"], r["wait_share"]) for r in rows] == [
        ("GET /a/", 0.5, 0.05),
        ("GET /b/", 0.1, 0.0952),
    ]
    result: Run = run_cli(log, "--sort", "wait-share", "--format", "text", "--no-legend")
    title, _read, _blank, header, first, second = result.out.splitlines()[:6]
    assert title == "hopwatch report: worst routes by wait-share"
    assert "wait %" in header
    assert (first.split()[1:3], second.split()[1:3]) == (["GET", "/a/"], ["GET", "/b/"])
    assert (first.split()[-3], second.split()[-3]) == ("50.0%", "10.0%")  # wait %


def _sort_key_tables() -> list[list[list[str]]]:
    """docs/report.md's "Sort keys" tables, as rows of cells."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "report.md").read_text("utf-8")
    section = text.split("\n### Sort keys\n", 1)[1].split("\n#", 1)[0]
    tables: list[list[list[str]]] = []
    for block in section.split("\n\n"):
        rows = [row for row in block.splitlines() if row.startswith("| `")]
        if rows:
            tables.append([[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows])
    return tables


def _codes(cell: str) -> list[str]:
    return cell.split("`")[1::2]


def test_every_sort_key_says_the_field_and_the_column_it_ranks_by(
    run_cli: Any, tmp_path: Path
) -> None:
    """Each documented key ranks by the JSON field the docs name (the same value), the
    column named shows that figure, and every key is documented."""
    from hopwatch.report import rank, table
    from tests.report.samples import canonical_lines

    log = tmp_path / "app.log"
    log.write_text("\n".join(canonical_lines(90)) + "\n", encoding="utf-8")
    endpoint_table, site_table = _sort_key_tables()
    for doc_table, sorts, columns, by in (
        (endpoint_table, rank.ENDPOINT_SORTS, table.ENDPOINT_COLUMNS, "route"),
        (site_table, rank.SITE_SORTS, table.SITE_COLUMNS, "site"),
    ):
        rows = report(run_cli, [log], "--by", by, "--hop-tax", "300", "--jobs", "1")["rows"]
        documented = {}
        for key_cell, _meaning, field_cell, column_cell in doc_table:
            for key, field in zip(_codes(key_cell), _codes(field_cell), strict=True):
                documented[key] = field
            headers = {column.header for column in columns}
            if not column_cell.startswith("none"):
                assert set(_codes(column_cell)) <= headers, column_cell
        assert documented.keys() == sorts.keys()
        for key, field in documented.items():
            for row in rows:
                value: Any = row
                for name in field.split("."):
                    value = value[name] if value is not None else None
                expected = float("-inf") if value is None else float(value)
                assert sorts[key](row) == expected, (key, field, row["rank"])
    # wait-share: what the wait % column shows, not wait over hop time
    rows = report(run_cli, [log], "--jobs", "1")["rows"]
    assert any(row["wait_of_overhead"] != row["wait_share"] for row in rows)
    wait = next(column for column in table.ENDPOINT_COLUMNS if column.header == "wait %")
    assert all(wait.cell(row) == f"{row['wait_of_overhead']:.1%}" for row in rows)
