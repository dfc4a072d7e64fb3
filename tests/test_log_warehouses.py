"""docs/log-warehouses.md: its DuckDB query gives the report's per-endpoint figures.

The query is taken from the page itself, so the page cannot drift from what is
tested. The log is made by real requests through Django's handlers (sampled
and unsampled, matched and unmatched, several methods), with other loggers'
lines and a container runtime prefix mixed in, as a log store would hold it.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from django.test import override_settings

from tests.helpers import asgi_request, wsgi_request

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "log-warehouses.md"


def duckdb_query(log: Path) -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("\n## DuckDB\n", 1)[1].split("\n## ", 1)[0]
    (query,) = re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL)
    assert "'logs/*.log'" in query
    return query.replace("'logs/*.log'", "'" + str(log).replace("'", "''") + "'")


def make_log(path: Path) -> None:
    with override_settings(HOPWATCH={"OUTPUT": str(path)}):
        for route in ["/async/", "/async/", "/sync/", "/hops/3/", "/nested/", "/orm/count/"]:
            asgi_request(route)
        asgi_request("/async/", method="POST")
        asgi_request("/nope/")
        asgi_request("/also/missing/")  # the same "(no view)" row as /nope/
        asgi_request("/error/")
        wsgi_request("/async/")
        wsgi_request("/sync/")
    random.seed(21)  # which lines the sampling keeps; each says sample_rate 0.5
    with override_settings(HOPWATCH={"OUTPUT": str(path), "SAMPLE_RATE": 0.5}):
        for _ in range(12):
            asgi_request("/hops/2/")
            asgi_request("/sync/")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert any('"sample_rate":0.5' in line for line in lines)
    # A line as a hopwatch before overhead_ms wrote it, in a row with current lines.
    old = json.loads(next(line for line in lines if '"route":"/sync/"' in line))
    del old["overhead_ms"], old["work_ms"]
    for site in old["sites"]:
        del site["overhead_ms"]
    lines.insert(1, json.dumps(old))
    # As a log store holds them: other loggers' lines, and a runtime's prefix on one.
    mixed = ["INFO django.server started", *lines[:-1], "WARNING something else {not json"]
    mixed.append("2026-11-24T10:00:00.000000000Z stdout F " + lines[-1])
    path.write_text("\n".join(mixed) + "\n", encoding="utf-8")


def report(log: Path) -> dict[str, dict]:
    result = subprocess.run(
        [sys.executable, "-m", "hopwatch", "report", str(log), "--format", "json", "--top", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return {row["label"]: row for row in json.loads(result.stdout)["rows"]}


def overheads_by_endpoint(log: Path) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        start = line.find("{")
        if '"hopwatch.request"' not in line or start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        route = record["route"] if record["view"] is not None else "(no view)"
        if "overhead_ms" in record:
            found.setdefault(f"{record['method']} {route}", []).append(record["overhead_ms"])
    return found


def interpolated(values: list[float], q: float) -> float:
    """The q-quantile as DuckDB's quantile_cont computes it (linear interpolation)."""
    ordered = sorted(values)
    at = q * (len(ordered) - 1)
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def test_the_documented_duckdb_query_gives_the_reports_figures(tmp_path, db):
    log = tmp_path / "app.log"
    make_log(log)
    expected = report(log)
    con = duckdb.connect()
    cursor = con.execute(duckdb_query(log))
    columns = [d[0] for d in cursor.description]
    got = {row[0]: dict(zip(columns, row, strict=True)) for row in cursor.fetchall()}
    overheads = overheads_by_endpoint(log)

    assert "GET (no view)" in got and "POST /async/" in got  # the shapes are in the log
    assert got.keys() == expected.keys()
    for label, row in expected.items():
        sql = got[label]
        assert sql["requests"] == row["requests"], label
        assert sql["records"] == row["records"], label
        assert sql["hops_per_request"] == pytest.approx(row["hops"]["mean"], abs=0.0011), label
        assert sql["max_hops"] == row["hops"]["max"], label
        assert sql["hop_total_ms"] == pytest.approx(row["hop_ms"]["total"], abs=0.0011), label
        overhead = row["overhead_ms"]
        assert sql["overhead_total_ms"] == pytest.approx(overhead["total"], abs=0.0011), label
        assert sql["overhead_per_request"] == pytest.approx(overhead["mean"], abs=0.0011), label
        # the page says the percentiles differ from the report's (quantile_cont
        # interpolates): checked against the lines themselves
        assert sql["overhead_p95"] == pytest.approx(
            interpolated(overheads[label], 0.95), abs=0.0011
        ), label
        assert sql["overhead_share"] == pytest.approx(row["overhead_share"], abs=0.00011), label
        assert sql["work_per_request"] == pytest.approx(row["work_ms"]["mean"], abs=0.0011), label
        assert sql["wait_of_overhead"] == pytest.approx(row["wait_of_overhead"], abs=0.00011), label
        assert sql["hop_share"] == pytest.approx(row["hop_share"], abs=0.00011), label
        assert sql["wait_share"] == pytest.approx(row["wait_share"], abs=0.00011), label
        assert sql["threads"] == pytest.approx(row["threads"]["mean"], abs=0.0011), label
        assert sql["new_loops"] == row["new_loops"]["total"], label
        assert sql["pinned_ms"] == pytest.approx(row["pinned_ms"]["mean"], abs=0.0011), label
    # Weighted by 1 / sample_rate, as the report counts them.
    sampled = got["GET /hops/<int:n>/"]
    assert sampled["requests"] > sampled["records"]
    # The row with an old line: the overhead figures are over the lines that carry it.
    mixed = expected["GET /sync/"]
    assert mixed["overhead_ms"]["records"] == mixed["records"] - 1
    # The report's order, the default sort: crossing overhead in all, ties by name.
    assert list(got) == list(expected)
