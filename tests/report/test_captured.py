"""Exact per-route numbers on generated captured logs, in every rendering.

bench/captured_logs.py writes a log the way projects, shippers and container
runtimes render hopwatch's line, and beside it the ground truth computed from
the values it drew (never by parsing the log back). The report must find
exactly those requests, hops, hop times, overheads and causes, whichever
decoder read each line, in one process or several, on the C accumulation and
on the pure-Python one, plain or gzipped; and a record with a malformed part
is counted without that part, which the summary names.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from bench.captured_logs import RENDERINGS, SPOILS, generate

from hopwatch.report import parallel
from hopwatch.report.aggregate import A_HOP_MS, A_HOPS, A_OVERHEAD, NO_VIEW, Partial
from hopwatch.report.inputs import resolve
from hopwatch.report.scan import Filters, Scanner


def _found(partial: Partial) -> dict[str, Any]:
    """The partial's endpoints in the truth file's terms (hop times in whole microseconds)."""
    endpoints = {}
    for (kind, method, route, view), stats in partial.endpoints.items():
        key = json.dumps([method, None if kind == NO_VIEW else route, view])
        causes = {
            json.dumps(list(cause)): {
                "requests": int(entry[0]),
                "count": int(entry[1]),
                "us": round(entry[2] * 1000),
                "overhead_us": round(entry[3] * 1000),
            }
            for cause, entry in stats.sites.items()
        }
        endpoints[key] = {
            "requests": stats.requests,
            "hops": stats.acc[A_HOPS],
            "hop_us": round(stats.acc[A_HOP_MS] * 1000),
            "overhead_us": round(stats.acc[A_OVERHEAD] * 1000),
            "causes": causes,
        }
    return endpoints


def _truth(path: Path) -> dict[str, Any]:
    truth = json.loads(path.with_name(path.name + ".truth.json").read_text(encoding="utf-8"))
    return {
        json.dumps([e["method"], e["route"], e["view"]]): {
            "requests": e["requests"],
            "hops": e["hops"],
            "hop_us": e["hop_us"],
            "overhead_us": e["overhead_us"],
            "causes": e["causes"],
        }
        for e in truth["endpoints"]
    } | {"": truth}


def _check(partial: Partial, path: Path) -> None:
    truth = _truth(path)
    summary = truth.pop("")
    assert (partial.lines, partial.records, partial.other_lines) == (
        summary["lines"],
        summary["records"],
        summary["other_lines"],
    )
    assert partial.skipped == {} and partial.parts_lost == summary["parts_lost"]
    assert _found(partial) == truth


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_every_rendering_gives_the_exact_numbers(
    tmp_path: Path, rendering: str, implementation: str
) -> None:
    path = tmp_path / f"{rendering}.log"
    generate(path, 700, rendering, seed=11)
    _check(parallel.read_all(resolve([str(path)]), Filters(), jobs=1), path)


@pytest.mark.parametrize("rendering", ["captured", "structlog", "docker", "cri", "all"])
def test_malformed_parts_are_left_out_and_their_records_counted(
    tmp_path: Path, rendering: str, implementation: str
) -> None:
    """A bad sites entry, overhead or pinned_by costs that part only, named in the summary;
    a bad detail and a later schema's fields cost nothing (the table does not read them)."""
    path = tmp_path / f"{rendering}.log"
    truth = generate(path, 900, rendering, seed=21, malformed=0.3)
    lost = truth["parts_lost"]
    assert set(lost) == {part for _, part in SPOILS if part} and min(lost.values()) >= 20
    _check(parallel.read_all(resolve([str(path)]), Filters(), jobs=1), path)


def test_a_gzipped_log_gives_the_same_exact_numbers(tmp_path: Path, implementation: str) -> None:
    path = tmp_path / "captured.log"
    generate(path, 1500, "captured", seed=14, malformed=0.05)
    packed = tmp_path / "captured.log.gz"
    with open(path, "rb") as source, gzip.open(packed, "wb") as target:
        shutil.copyfileobj(source, target)
    shutil.copy(path.with_name(path.name + ".truth.json"), packed.with_name(packed.name + ".truth.json"))
    partial = parallel.read_all(resolve([str(packed)]), Filters(), jobs=1)
    _check(partial, packed)


def test_several_processes_give_the_same_exact_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, implementation: str
) -> None:
    monkeypatch.setattr(parallel, "MIN_PIECE_BYTES", 64 * 1024)  # many pieces of a small file
    path = tmp_path / "all.log"
    generate(path, 1500, "all", seed=12, malformed=0.1)
    _check(parallel.read_all(resolve([str(path)]), Filters(), jobs=2), path)


@pytest.mark.parametrize("rendering", ["docker", "logging", "structlog", "cri", "sorted"])
def test_common_renderings_are_read_by_the_typed_decoders(tmp_path: Path, rendering: str) -> None:
    """Only lines that are not records, or are broken, reach the (slow) general decoder."""
    path = tmp_path / f"{rendering}.log"
    generate(path, 2000, rendering, seed=13, foreign=0.0)
    scanner = Scanner(Partial())
    data = path.read_bytes()
    start = 0
    while start < len(data):  # several buffers: the decoding modes adapt per buffer
        end = data.rfind(b"\n", start, start + 64 * 1024) + 1 or len(data)
        scanner.feed(data[start:end])
        start = end
    assert scanner.partial.records == 2000 and scanner.slow_lines == 0
