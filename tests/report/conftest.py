from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from hopwatch.cli import main
from hopwatch.report import scan


class FakeStdin:
    """Enough of sys.stdin for the report: .buffer (with peek) and isatty()."""

    def __init__(self, data: bytes, tty: bool = False) -> None:
        self.buffer = io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty

    def close(self) -> None:  # multiprocessing closes stdin in its children
        self.buffer.close()


@dataclass
class Run:
    status: int
    out: str
    err: str


@pytest.fixture
def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Run]:
    def run(*argv: Any, stdin: bytes | None = None, tty: bool = False) -> Run:
        monkeypatch.setattr(sys, "stdin", FakeStdin(stdin or b"", tty=tty))
        status = main(["report", *map(str, argv)])
        captured = capsys.readouterr()
        return Run(status, captured.out, captured.err)

    return run


@pytest.fixture(params=["c", "python"])
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every scanner made in the test uses the C accumulation and loop, or the Python ones."""
    if request.param == "c":
        module = scan.load_accelerator()
        if module is None:
            if os.environ.get("HOPWATCH_REQUIRE_C"):
                pytest.fail("the report's C accelerator was not built")
            pytest.skip("the report's C accelerator is not built here")
        monkeypatch.setattr(scan, "ACCUMULATE", module.add)
        monkeypatch.setattr(scan, "SCAN", module.scan)
    else:
        monkeypatch.setattr(scan, "ACCUMULATE", None)
        monkeypatch.setattr(scan, "SCAN", None)
    return str(request.param)
