"""What the report prints from a log is escaped, and names what it measures: the
--endpoint messages, timelines' labels, invisible characters, long causes, ovh %."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.report.conftest import Run
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
