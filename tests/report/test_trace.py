"""``--format trace``: Chrome trace events (the JSON object format Perfetto, chrome://tracing
and speedscope load), one complete event per crossing, from real Django requests."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.report.detail_samples import detailed_line, gathered_detail, log_detail_requests
from tests.report.test_cli import RunCli

#: What each phase needs (the Trace Event Format: "X" complete, "M" metadata events).
REQUIRED = {"X": {"name", "ph", "ts", "dur", "pid", "tid", "cat"}, "M": {"name", "ph", "pid", "tid", "args"}}
METADATA = {"process_name", "process_sort_index", "thread_name", "thread_sort_index"}


def check_chrome_trace(trace: dict[str, Any]) -> list[dict[str, Any]]:
    """The events, after checking the trace against the format; raises on a violation."""
    assert set(trace) == {"traceEvents", "displayTimeUnit", "otherData"}
    assert trace["displayTimeUnit"] == "ms"
    events = trace["traceEvents"]
    named: set[tuple[int, int]] = set()
    slices: dict[tuple[int, int], list[tuple[float, float, str]]] = defaultdict(list)
    for event in events:
        assert event["ph"] in REQUIRED, event
        assert REQUIRED[event["ph"]] <= set(event), event
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int)
        if event["ph"] == "M":
            assert event["name"] in METADATA
            if event["name"] == "thread_name":
                named.add((event["pid"], event["tid"]))
            continue
        assert isinstance(event["ts"], int | float) and event["ts"] >= 0
        assert isinstance(event["dur"], int | float) and event["dur"] >= 0
        slices[event["pid"], event["tid"]].append((event["ts"], event["ts"] + event["dur"], event["name"]))
    # every track is named, and on every track slices nest: none ends inside another's span
    # after starting before it (viewers refuse or misdraw such a trace)
    assert set(slices) <= named
    for track in slices.values():
        open_ends: list[float] = []
        for start, end, _name in sorted(track, key=lambda s: (s[0], -s[1])):
            while open_ends and open_ends[-1] <= start:
                open_ends.pop()
            assert not open_ends or end <= open_ends[-1], track
            open_ends.append(end)
    return events


def trace_of(run_cli: RunCli, log: Path, *args: str) -> list[dict[str, Any]]:
    result = run_cli(log, "--format", "trace", *args)
    assert result.status == 0, result.err
    assert result.out.isascii()
    return check_chrome_trace(json.loads(result.out))


@pytest.fixture
def real_log(tmp_path: Path, db) -> tuple[Path, list[dict]]:
    """Real requests through Django's handlers (db: Django checks its connections
    when a request finishes)."""
    path = tmp_path / "app.log"
    lines = log_detail_requests(path, ["/nested/", "/hops/3/", "/async/"], ["/nested/"])
    assert [line["route"] for line in lines] == ["/nested/", "/hops/<int:n>/", "/async/", "/nested/"]
    return path, lines


def test_one_event_per_crossing_of_each_exported_request(run_cli: RunCli, real_log):
    log, lines = real_log
    events = trace_of(run_cli, log)
    processes = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert len(processes) == 3  # one per endpoint (the slowest of /nested/'s two)
    for pid, name in processes.items():
        request_id = name.rsplit("(request ", 1)[1].rstrip(")")
        (line,) = [line for line in lines if line["request_id"] == request_id]
        crossings = [e for e in events if e["pid"] == pid and e.get("cat", "").startswith("hopwatch.crossing")]
        assert len(crossings) == line["hops"] == len(line["detail"])
        assert sorted(e["args"]["index"] for e in crossings) == list(range(line["hops"]))
        for event in crossings:
            entry = line["detail"][event["args"]["index"]]
            assert event["args"]["site"] == entry["site"]
            assert event["ts"] == pytest.approx(entry["at_ms"] * 1000, abs=3)
            wall = entry["wait_ms"] + entry["run_ms"] + entry["resume_ms"]
            assert event["dur"] == pytest.approx(wall * 1000, abs=3)
        (request,) = [e for e in events if e["pid"] == pid and e.get("cat") == "hopwatch.request"]
        assert request["dur"] == pytest.approx(line["duration_ms"] * 1000)


def test_the_parts_of_a_crossing_lie_inside_it(run_cli: RunCli, tmp_path: Path):
    log = tmp_path / "app.log"
    log.write_text(detailed_line(gathered_detail()) + "\n")
    events = trace_of(run_cli, log)
    crossings = [e for e in events if e.get("cat", "").startswith("hopwatch.crossing")]
    parts = [e for e in events if e.get("cat") == "hopwatch.part"]
    assert len(crossings) == 5
    # the third gathered call: queued 2.05 ms behind the two before it, ran 1 ms, handed back
    third = next(e for e in crossings if e["args"]["index"] == 2)
    own = [p for p in parts if p["tid"] == third["tid"] and third["ts"] <= p["ts"] < third["ts"] + third["dur"]]
    assert [(p["name"], p["ts"], p["dur"]) for p in own] == [
        ("queued", 1000.0, 2050.0),
        ("running", 3050.0, 1000.0),
        ("handing back", 4050.0, 50.0),
    ]
    threads = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert "sync thread (3) · thread 1002" in threads and "pool thread 2 · thread 1004" in threads


def test_a_chosen_request(run_cli: RunCli, real_log):
    log, lines = real_log
    chosen = next(line for line in lines if line["route"] == "/hops/<int:n>/")
    events = trace_of(run_cli, log, "--request-id", chosen["request_id"])
    assert {e["pid"] for e in events} == {1}
    assert sum(e.get("cat", "").startswith("hopwatch.crossing") for e in events) == chosen["hops"]
