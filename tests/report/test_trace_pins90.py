"""``--format trace`` (pinned): a crossing's overhead in its args, the track of crossings
that never ran."""

from __future__ import annotations

from pathlib import Path

from tests.report.detail_samples import crossing, detailed_line
from tests.report.test_trace import RunCli, trace_of


def test_a_crossings_overhead_is_its_wait_and_resume_not_its_run(
    run_cli: RunCli, tmp_path: Path
) -> None:
    path = tmp_path / "app.log"
    detail = [crossing("app.views.slow", at=1.0, wait=2.0, run=5.0, resume=0.5, kind="view")]
    path.write_text(detailed_line(detail, request_id="abcd000000000001", duration_ms=10.0) + "\n")
    (event,) = [
        e for e in trace_of(run_cli, path) if e.get("cat", "").startswith("hopwatch.crossing")
    ]
    assert event["args"]["overhead_ms"] == 2.5
    assert (event["ts"], event["dur"]) == (1000.0, 7500.0)


def test_the_track_of_crossings_that_never_ran_names_no_thread(
    run_cli: RunCli, tmp_path: Path
) -> None:
    path = tmp_path / "app.log"
    detail = [
        crossing("app.views.a", at=1.0, wait=0.5, run=2.0, resume=0.1),
        crossing(
            "app.views.b", at=1.2, wait=3.0, run=0.0, resume=0.0, thread=0, outcome="cancelled"
        ),
    ]
    path.write_text(detailed_line(detail, request_id="abcd000000000002", duration_ms=6.0) + "\n")
    events = trace_of(run_cli, path)
    tracks = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert sorted(tracks.values()) == [
        "event loop · thread 1001",
        "never ran",
        "request",
        "sync thread · thread 1002",
    ]
    placed = {
        e["args"]["site"]: tracks[e["tid"]]
        for e in events
        if e.get("cat", "").startswith("hopwatch.crossing")
    }
    assert placed == {"app.views.a": "sync thread · thread 1002", "app.views.b": "never ran"}
