from __future__ import annotations

import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from hopwatch.cli import main


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
