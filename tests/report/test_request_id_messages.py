"""--request-id is named in the one-line messages as the report prints text it was
given: escaped by clean() (no terminal escapes, no Python repr), between single quotes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.report.conftest import Run
from tests.report.samples import line

RunCli = Callable[..., Run]

#: A quote, a backslash, a CJK word and its ideographic space, an ANSI escape, a bidi
#: override: repr() switched quotes, doubled the backslash and escaped the space.
ASKED = "it's\\a\u3000\u6f22\u5b57\x1b[2J\u202e"
SHOWN = "'it's\\a\u3000\u6f22\u5b57\\x1b[2J\\u202e'"


@pytest.mark.parametrize("format_name", ["html", "trace"])
def test_a_request_id_no_line_has_is_named_escaped(
    run_cli: RunCli, tmp_path: Path, format_name: str
) -> None:
    log = tmp_path / "app.log"
    log.write_text(line(request_id="other") + "\n", encoding="utf-8")
    result = run_cli(log, "--format", format_name, "--request-id", ASKED)
    assert (result.status, result.out) == (1, "")
    assert result.err == (
        f"hopwatch report: no hopwatch line with request_id {SHOWN} passed the filters\n"
    )


@pytest.mark.parametrize("format_name", ["html", "trace"])
def test_a_request_id_whose_line_cannot_be_drawn_is_named_escaped(
    run_cli: RunCli, tmp_path: Path, format_name: str
) -> None:
    log = tmp_path / "app.log"
    log.write_text(line(request_id=ASKED) + "\n", encoding="utf-8")  # no detail list
    result = run_cli(log, "--format", format_name, "--request-id", ASKED)
    assert (result.status, result.out) == (1, "")
    assert result.err.startswith(
        f"hopwatch report: the line with request_id {SHOWN} has no detail list that can be drawn: "
    )
    assert "\x1b" not in result.err and "\u202e" not in result.err
