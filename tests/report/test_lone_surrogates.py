"""A lone surrogate in a line (the JSON escape ``"\\ud800"``: valid JSON, no UTF-8 for it)
costs no report: where a name is expected it is shown escaped like any other character
that draws nothing (``\\ud800``), where a number, a time or a part is expected it is a
value of the wrong type, and in a shipper's envelope or a structlog-rendered line it is
read as in a plain line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.report.conftest import Run
from tests.report.detail_samples import crossing, detailed_line
from tests.report.samples import line

RunCli = Callable[..., Run]

#: Stands for the lone surrogate in a line built as text, then replaced by its escape.
MARK = "SURROGATE"
ESCAPE = "\\ud800"  # as the line holds it (JSON)
SHOWN = "\\ud800"  # as the report prints it (text.clean): the same six characters


def _write(tmp_path: Path, *lines: str) -> Path:
    log = tmp_path / "app.log"
    log.write_text("\n".join(lines) + "\n", encoding="ascii")
    return log


def _detail_line(field: str) -> str:
    """A detail-mode line whose one crossing has ``MARK`` + ``x`` as ``field``."""
    values: dict[str, Any] = {"kind": "view", "direction": "sync_to_async"}
    values[field] = MARK + "x"
    name = values.pop("site", "views.v")
    entry = crossing(name, 0.1, 0.5, 1.0, 0.5, **values)
    text = detailed_line([entry], request_id="r1", route="/a/", view="app.views.v")
    return text.replace(MARK, ESCAPE)


def _trace_crossing(result: Run) -> dict[str, Any]:
    assert result.status == 0, result.err
    assert "Traceback" not in result.err
    assert result.out.isascii()
    events = json.loads(result.out)["traceEvents"]
    (event,) = [e for e in events if e.get("cat", "").startswith("hopwatch.crossing")]
    return event


CROSSING_FIELDS = ["site", "call_site", "kind", "outcome", "direction"]


@pytest.mark.parametrize("field", CROSSING_FIELDS)
@pytest.mark.parametrize("args", [(), ("--by", "view"), ("--by", "site"), ("--request-id", "r1")])
def test_a_lone_surrogate_in_a_crossing_is_exported_escaped(
    run_cli: RunCli, implementation: str, tmp_path: Path, field: str, args: tuple[str, ...]
) -> None:
    log = _write(tmp_path, _detail_line(field))
    event = _trace_crossing(run_cli(log, "--format", "trace", *args))
    assert event["args"][field] == SHOWN + "x"
    if field == "direction":
        assert event["cat"] == f"hopwatch.crossing,{SHOWN}x"
    expected_name = {
        "site": f"view {SHOWN}x",
        "call_site": f"view views.v ({SHOWN}x)",
        "kind": f"{SHOWN}x views.v",
    }.get(field, "view views.v")
    assert event["name"] == expected_name


TIMES = "called at 0.100 ms; queued 0.500 ms, ran 1.000 ms, handed back 0.500 ms"
ON_SYNC = "depth 1, ran on the sync thread, thread_sensitive=True"
#: The crossing's tooltip on the page, its lines.
TITLES = {
    "site": [f"sync_to_async · view: {SHOWN}x", TIMES, ON_SYNC],
    "call_site": ["sync_to_async · view: views.v", f"called from {SHOWN}x", TIMES, ON_SYNC],
    "kind": [f"sync_to_async · {SHOWN}x: views.v", TIMES, ON_SYNC],
    "outcome": ["sync_to_async · view: views.v", TIMES, f"{ON_SYNC}, outcome: {SHOWN}x"],
    "direction": [f"{SHOWN}x · view: views.v", TIMES, "depth 1, ran on the event loop"],
}


@pytest.mark.parametrize("field", CROSSING_FIELDS)
@pytest.mark.parametrize("args", [(), ("--request-id", "r1")])
def test_a_lone_surrogate_in_a_crossing_is_drawn_escaped(
    run_cli: RunCli, implementation: str, tmp_path: Path, field: str, args: tuple[str, ...]
) -> None:
    log = _write(tmp_path, _detail_line(field))
    result = run_cli(log, "--format", "html", *args)
    assert result.status == 0, result.err
    (bar,) = result.out.split('<g class="crossing')[1:]
    title = bar.split("<title>", 1)[1].split("</title>", 1)[0]
    assert title.split("&#10;") == TITLES[field]


def test_a_lone_surrogate_in_every_crossing_of_a_long_detail(
    run_cli: RunCli, implementation: str, tmp_path: Path
) -> None:
    """More crossings than an endpoint's timeline keeps (picture.CROSSINGS_KEPT): the
    ones kept are escaped, the others left out as before."""
    entries = [crossing(f"{MARK}{i}", 0.1 + i, 0.1, 0.5, 0.1) for i in range(250)]
    log = _write(tmp_path, detailed_line(entries, request_id="r1").replace(MARK, ESCAPE))
    result = run_cli(log, "--format", "trace")
    assert result.status == 0, result.err
    events = json.loads(result.out)["traceEvents"]
    sites = [e["args"]["site"] for e in events if e.get("cat", "").startswith("hopwatch.crossing")]
    assert sites == [f"{SHOWN}{i}" for i in range(200)]


# --- where a number, a time or a part is expected ----------------------------------------
def _summary(run_cli: RunCli, log: Path, *args: str) -> dict[str, Any]:
    result = run_cli(log, "--format", "json", *args)
    assert result.status == 0, result.err
    summary = json.loads(result.out)["summary"]
    return {key: summary[key] for key in ("records", "skipped_by_reason", "parts_lost")}


#: (field, where in the line) -> what the report makes of a string there.
WRONG_TYPE = [
    ('"status":200', '"status":"SURROGATE"'),
    ('"timestamp":"2026-11-24T10:00:00Z"', '"timestamp":"SURROGATE"'),
    ('"hops":3', '"hops":"SURROGATE"'),
    ('"sample_rate":0.5', '"sample_rate":"SURROGATE"'),
    ('"overhead_ms":0.1', '"overhead_ms":"SURROGATE"'),
    ('"count":3', '"count":"SURROGATE"'),
]


def _typed_lines(value: str) -> list[str]:
    base = line(
        request_id="r",
        timestamp="2026-11-24T10:00:00Z",
        status=200,
        hops=3,
        sample_rate=0.5,
        overhead_ms=0.1,
        sites=[{"site": "s", "kind": "view", "direction": "sync_to_async", "count": 3, "ms": 0.2}],
    )
    lines = []
    for old, new in WRONG_TYPE:
        assert base.count(old) == 1, old
        lines.append(base.replace(old, new.replace(MARK, value)))
    return [base, *lines]


def test_a_lone_surrogate_where_a_number_or_a_time_is_expected_is_a_wrong_value(
    run_cli: RunCli, implementation: str, tmp_path: Path
) -> None:
    log = _write(tmp_path, *_typed_lines(ESCAPE))
    summary = _summary(run_cli, log)
    assert summary == {
        "records": 3,
        "skipped_by_reason": {
            "invalid:hops": 1,
            "invalid:sample_rate": 1,
            "invalid:status": 1,
            "invalid:timestamp": 1,
        },
        "parts_lost": {"overhead_ms": 1, "sites": 1},
    }
    # exactly as any other string there
    assert summary == _summary(run_cli, _write(tmp_path, *_typed_lines("x")))


def test_a_lone_surrogate_in_a_detail_number_costs_only_the_timeline(
    run_cli: RunCli, implementation: str, tmp_path: Path
) -> None:
    text = detailed_line([crossing("app.v", 0.1, 0.5, 1.0, 0.5)], request_id="r1")
    assert text.count('"depth":1') == 1
    log = _write(tmp_path, text.replace('"depth":1', f'"depth":"{ESCAPE}"'))
    result = run_cli(log, "--format", "trace")
    assert (result.status, result.out) == (1, "")
    assert result.err == (
        "hopwatch report: no request in the input has a timeline to export: log with detail"
        " mode on (HOPWATCH = {'DETAIL': True}), from a hopwatch whose detail entries carry"
        " at_ms\n"
    )
    # the request itself is counted
    assert _summary(run_cli, log)["records"] == 1


# --- inside an envelope, or rendered again by structlog ------------------------------------
def _wrapped(value: str) -> list[str]:
    """The line, with ``value`` in its route, in four wrappers. The value goes into
    the wrapper's text: ``"\\ud800"`` there is a lone surrogate in the wrapped line."""
    inner = line(route=f"/a{MARK}/", request_id="r1")
    escaped = json.dumps(inner)[1:-1].replace(MARK, value)  # a JSON string's content
    rendering = '{"event":"' + escaped + '","level":"info"}'  # structlog's JSONRenderer
    return [
        '{"log":"' + escaped + '\\n","stream":"stdout"}',  # docker
        '{"message":"' + escaped + '"}',  # a logging formatter
        rendering,  # structlog's rendering around it
        json.dumps({"log": rendering + "\n", "stream": "stdout"}),  # docker around that
    ]


def test_a_wrapped_line_with_a_lone_surrogate_is_read(
    run_cli: RunCli, implementation: str, tmp_path: Path
) -> None:
    # the inner line's own escape, escaped once more by the wrapper: a lone surrogate
    # in the wrapped line (msgspec refuses the wrapper, or the rendering in docker's;
    # the general decoder reads it)
    log = _write(tmp_path, *_wrapped(ESCAPE))
    result = run_cli(log, "--format", "json")
    assert result.status == 0, result.err
    document = json.loads(result.out)
    assert document["summary"]["records"] == 4
    assert [row["label"] for row in document["rows"]] == ["GET /a\ud800/"]
    text = run_cli(log, "--format", "text")
    assert text.status == 0, text.err
    assert f"GET /a{SHOWN}/" in text.out
