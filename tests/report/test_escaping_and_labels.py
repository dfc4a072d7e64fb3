"""What the report prints from a log is escaped, and names what it measures: the
--endpoint messages, timelines' labels, invisible characters, long causes, ovh %."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.report.conftest import Run
from tests.report.detail_samples import crossing, detailed_line
from tests.report.samples import line

RunCli = Callable[..., Run]

ESC_ROUTE = "/x\x1b]0;PWNED\x07\x1b[2J/"


def _log(tmp_path: Path, *lines: str) -> Path:
    log = tmp_path / "app.log"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return log


# --- 1. the --endpoint messages ----------------------------------------------------------
def test_several_rows_for_an_endpoint_are_named_escaped(run_cli: RunCli, tmp_path: Path) -> None:
    log = _log(
        tmp_path,
        line(method="GET", route=ESC_ROUTE, request_id="a"),
        line(method="POST", route=ESC_ROUTE, request_id="b"),
    )
    result = run_cli(log, "--endpoint", ESC_ROUTE)
    assert result.status == 1 and result.out == ""
    assert result.err == (
        "hopwatch report: --endpoint '/x\\x1b]0;PWNED\\x07\\x1b[2J/' matches several rows:"
        " GET /x\\x1b]0;PWNED\\x07\\x1b[2J/, POST /x\\x1b]0;PWNED\\x07\\x1b[2J/\n"
    )


def test_the_closest_endpoints_are_named_escaped(run_cli: RunCli, tmp_path: Path) -> None:
    log = _log(
        tmp_path,
        line(route="/ctl\r\n\tnul\x00del\x7fc1\x85/", request_id="a"),
        line(route="/ctl\u202eevil\u2066/", request_id="b"),
    )
    result = run_cli(log, "--endpoint", "GET /ctl")
    assert result.status == 1 and result.out == ""
    assert result.err == (
        "hopwatch report: no endpoint 'GET /ctl' in the logs read (closest:"
        " GET /ctl\\u202eevil\\u2066/, GET /ctl\\x0d\\x0a\\x09nul\\x00del\\x7fc1\\x85/)\n"
    )


# --- 2. a request no URL pattern resolved, in a timeline ----------------------------------
def _unresolved_log(tmp_path: Path) -> Path:
    detail = [
        crossing("django.contrib.sessions.middleware.SessionMiddleware.process_request",
                 0.1, 0.2, 1.0, 0.1, kind="middleware"),
    ]  # fmt: skip
    return _log(
        tmp_path,
        detailed_line(
            detail, route="/secret/raw/path?token=abc", view=None, request_id="rawreq", status=404
        ),
    )


def test_a_trace_names_an_unresolved_request_as_the_tables_do(
    run_cli: RunCli, tmp_path: Path
) -> None:
    log = _unresolved_log(tmp_path)
    for args in ([], ["--request-id", "rawreq"], ["--by", "site"]):
        result = run_cli(log, "--format", "trace", *args)
        assert result.status == 0, result.err
        assert "secret" not in result.out and "token" not in result.out
        events = json.loads(result.out)["traceEvents"]
        names = [e["args"]["name"] for e in events if e["name"] == "process_name"]
        assert names == ["GET (no view) (request rawreq)"]
        request = next(e for e in events if e.get("cat") == "hopwatch.request")
        assert request["name"] == "GET (no view) (request rawreq)"


def test_a_page_heads_an_unresolved_request_as_the_tables_do(
    run_cli: RunCli, tmp_path: Path
) -> None:
    log = _unresolved_log(tmp_path)
    for args in (["--request-id", "rawreq"], ["--by", "site"], []):
        result = run_cli(log, "--format", "html", *args)
        assert result.status == 0, result.err
        assert "secret" not in result.out and "token" not in result.out
        assert "<h3>GET (no view) <small>" in result.out
