"""The timeline's bars and rows, as ``--format trace`` and ``html`` show them: a line
whose ``detail[].parent`` fields are damaged (a loop, a crossing its own parent, out of
range), a child listed before its parent, a child called at its parent's run end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hopwatch.report.picture import decode_extras
from tests.report.detail_samples import crossing, detailed_line
from tests.report.test_cli import SRC
from tests.report.test_trace import RunCli, trace_of

#: a crossing ran on 2001 (then 2002, 2003): threads of the request's own loop (1001)
A, B, C = 2001, 2002, 2003


def _write(path: Path, detail: list[dict[str, Any]], request_id: str) -> Path:
    path.write_text(detailed_line(detail, request_id=request_id, duration_ms=9.0) + "\n")
    return path


def _looped(tmp_path: Path) -> Path:
    """1 -> 2 -> 1, and 3 made inside 1 (pointing into the loop, not on it)."""
    return _write(
        tmp_path / "looped.log",
        [
            crossing("a", at=0.0, wait=0.1, run=0.1, resume=0.1, thread=A),
            crossing("b", at=1.0, wait=0.1, run=5.0, resume=0.1, thread=B, parent=2, depth=2),
            crossing("c", at=1.5, wait=0.1, run=3.0, resume=0.1, thread=C, parent=1, depth=2),
            crossing("d", at=2.0, wait=0.1, run=0.5, resume=0.1, thread=A, parent=1, depth=3),
        ],
        "cafe000000000001",
    )


def _own_parent(tmp_path: Path) -> Path:
    """The third crossing is its own parent, queued behind another on the same thread."""
    return _write(
        tmp_path / "own.log",
        [
            crossing("a", at=0.0, wait=0.1, run=3.0, resume=0.1, thread=A),
            crossing("b", at=1.0, wait=0.1, run=1.0, resume=0.1, thread=A),
            crossing("c", at=4.0, wait=0.1, run=1.0, resume=0.1, thread=A, parent=2, depth=2),
        ],
        "cafe000000000002",
    )


def _report(*args: str, pure: str) -> subprocess.CompletedProcess[str]:
    """The report in its own process, with a timeout: a loop that never ends fails the
    test instead of hanging the run."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "HOPWATCH_PURE_PYTHON": pure}
    try:
        return subprocess.run(
            [sys.executable, "-m", "hopwatch", "report", *args],
            env=env, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"hopwatch report {' '.join(args)} still running after 30 s")


def _parents(trace_json: str) -> dict[str, int | None]:
    events = json.loads(trace_json)["traceEvents"]
    return {
        e["args"]["site"]: e["args"]["parent"]
        for e in events
        if e.get("cat", "").startswith("hopwatch.crossing")
    }


@pytest.mark.parametrize("pure", ["", "1"])  # the C scanner and the pure one
@pytest.mark.parametrize(
    ("log", "request_id", "parents"),
    [
        (_looped, "cafe000000000001", {"a": None, "b": None, "c": None, "d": 1}),
        (_own_parent, "cafe000000000002", {"a": None, "b": None, "c": None}),
    ],
)
def test_a_parent_loop_in_detail_is_dropped_and_the_report_ends(
    tmp_path: Path, pure: str, log: Any, request_id: str, parents: dict[str, int | None]
) -> None:
    path = log(tmp_path)
    html = _report(str(path), "--format", "html", "-o", str(tmp_path / "page.html"), pure=pure)
    assert html.returncode == 0, html.stderr
    assert "<svg" in (tmp_path / "page.html").read_text()
    for extra in ([], ["--request-id", request_id]):
        trace = _report(str(path), "--format", "trace", *extra, pure=pure)
        assert trace.returncode == 0, trace.stderr
        assert _parents(trace.stdout) == parents
    chosen = _report(str(path), "--format", "html", "--request-id", request_id, pure=pure)
    assert chosen.returncode == 0, chosen.stderr


def test_a_parent_out_of_range_on_a_loop_or_itself_decodes_as_none() -> None:
    detail = [
        crossing("a", at=0.0, wait=0.1, run=9.0, resume=0.1, parent=None),
        crossing("b", at=1.0, wait=0.1, run=1.0, resume=0.1, parent=0, depth=2),
        crossing("c", at=1.0, wait=0.1, run=1.0, resume=0.1, parent=2, depth=2),  # itself
        crossing("d", at=1.0, wait=0.1, run=1.0, resume=0.1, parent=99, depth=2),  # no 99
        crossing("e", at=1.0, wait=0.1, run=1.0, resume=0.1, parent=5, depth=2),  # e, f: a loop
        crossing("f", at=1.0, wait=0.1, run=1.0, resume=0.1, parent=4, depth=2),
        crossing("g", at=1.0, wait=0.1, run=1.0, resume=0.1, parent=7, depth=3),  # g, h, i: one
        crossing("h", at=1.0, wait=0.1, run=1.0, resume=0.1, parent=8, depth=3),
        crossing("i", at=1.0, wait=0.1, run=1.0, resume=0.1, parent=6, depth=3),
        crossing("j", at=1.0, wait=0.1, run=1.0, resume=0.1, parent=6, depth=4),  # into it
        crossing("k", at=1.0, wait=0.1, run=1.0, resume=0.1, parent=1, depth=3),  # sound
    ]
    extras = decode_extras(detailed_line(detail).encode())
    assert extras.detail is not None
    assert [c.parent for c in extras.detail] == [
        None,
        0,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        6,
        1,
    ]


def test_a_child_listed_before_its_parent_is_clamped_into_the_clamped_parent(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """Crossings are listed as they complete, the innermost first: C (depth 3) inside B
    (depth 2) inside A. B's times run past A's run, so B is clamped into A, and C then
    into the clamped B (ending at 5 ms: it is drawn as 0 long at 5 ms, not 6-7 ms)."""
    path = _write(
        tmp_path / "app.log",
        [
            crossing(
                "C", at=6.0, wait=0.0, run=1.0, resume=0.0, thread=B, caller=B, parent=1, depth=3
            ),
            crossing(
                "B", at=4.0, wait=0.0, run=4.0, resume=0.0, thread=B, caller=B, parent=2, depth=2
            ),
            crossing("A", at=1.0, wait=0.0, run=4.0, resume=0.0, thread=B, caller=1001, depth=1),
        ],
        "cafe000000000003",
    )
    events = trace_of(run_cli, path)
    placed = [
        (e["args"]["site"], e["ts"], e["dur"])
        for e in events
        if e.get("cat", "").startswith("hopwatch.crossing")
    ]
    assert placed == [("A", 1000.0, 4000.0), ("B", 4000.0, 1000.0), ("C", 5000.0, 0.0)]


def test_a_child_called_at_its_parents_run_end_does_not_share_its_row(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """The parent hands back in 0 ms: its row ends exactly when the child is called, but
    the child is inside it and goes on the row below, never on the parent's own."""
    path = _write(
        tmp_path / "app.log",
        [
            crossing(
                "child",
                at=3.0,
                wait=0.0,
                run=0.0,
                resume=0.0,
                thread=B,
                caller=B,
                parent=1,
                depth=2,
            ),
            crossing(
                "parent", at=1.0, wait=0.0, run=2.0, resume=0.0, thread=B, caller=1001, depth=1
            ),
        ],
        "cafe000000000004",
    )
    events = trace_of(run_cli, path)
    tracks = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    placed = [
        (e["args"]["site"], tracks[e["tid"]])
        for e in events
        if e.get("cat", "").startswith("hopwatch.crossing")
    ]
    assert placed == [
        ("parent", "sync thread · thread 2002"),
        ("child", "sync thread (2) · thread 2002"),
    ]
