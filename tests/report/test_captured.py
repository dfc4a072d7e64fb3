"""Exact per-route numbers on generated captured logs, in every rendering.

bench/captured_logs.py writes a log the way projects, shippers and container
runtimes render hopwatch's line, and beside it the ground truth computed from
the values it drew (never by parsing the log back). The report must find
exactly those requests, hops, hop times and causes, whichever decoder read each
line, in one process or several.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bench.captured_logs import RENDERINGS, generate

from hopwatch.report import parallel
from hopwatch.report.aggregate import A_HOP_MS, A_HOPS, NO_VIEW, Partial
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
            }
            for cause, entry in stats.sites.items()
        }
        endpoints[key] = {
            "requests": stats.requests,
            "hops": stats.acc[A_HOPS],
            "hop_us": round(stats.acc[A_HOP_MS] * 1000),
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
            "causes": e["causes"],
        }
        for e in truth["endpoints"]
    } | {"": truth}


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_every_rendering_gives_the_exact_numbers(tmp_path: Path, rendering: str) -> None:
    path = tmp_path / f"{rendering}.log"
    generate(path, 700, rendering, seed=11)
    truth = _truth(path)
    summary = truth.pop("")
    partial = parallel.read_all(resolve([str(path)]), Filters(), jobs=1)
    assert (partial.lines, partial.records, partial.other_lines) == (
        summary["lines"],
        summary["records"],
        summary["other_lines"],
    )
    assert partial.skipped == {} and partial.parts_lost == {}
    assert _found(partial) == truth


def test_several_processes_give_the_same_exact_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "MIN_PIECE_BYTES", 64 * 1024)  # many pieces of a small file
    path = tmp_path / "all.log"
    generate(path, 1500, "all", seed=12)
    truth = _truth(path)
    truth.pop("")
    partial = parallel.read_all(resolve([str(path)]), Filters(), jobs=2)
    assert _found(partial) == truth


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
