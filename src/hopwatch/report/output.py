"""``-o FILE``: the report written to a file whole, or not at all.

The report is rendered in memory (it is bounded: at most ``--top`` rows, and
2,000 endpoints in all) and written at the end under a temporary name next to
FILE, then renamed over it: an interrupted or failed run never leaves half a
report where a complete one was (a page open in a browser keeps the old one).
Whether FILE can be written is checked first, before any input is read.
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import IO


class OutputError(Exception):
    """FILE cannot be written (exit status 2)."""


class Output:
    """Where the report goes: ``path``, or ``default`` (stdout) when path is None."""

    def __init__(self, path: str | None, default: IO[str]) -> None:
        self.path = path
        self.stream: IO[str] = default if path is None else io.StringIO()
        if path is not None:
            directory = os.path.dirname(os.path.abspath(path))
            if os.path.isdir(path):
                raise OutputError(f"cannot write {path}: it is a directory")
            if not os.path.isdir(directory):
                raise OutputError(f"cannot write {path}: no directory {directory}")
            if not os.access(directory, os.W_OK) or (
                os.path.exists(path) and not os.access(path, os.W_OK)
            ):
                raise OutputError(f"cannot write {path}: permission denied")

    def finish(self) -> None:
        """Flush stdout, or put the whole file in place."""
        if self.path is None:
            self.stream.flush()
            return
        assert isinstance(self.stream, io.StringIO)
        directory = os.path.dirname(os.path.abspath(self.path))
        temporary = None
        try:
            handle, temporary = tempfile.mkstemp(
                prefix=f".{os.path.basename(self.path)}.", suffix=".tmp", dir=directory
            )
            with open(handle, "w", encoding="utf-8") as file:
                file.write(self.stream.getvalue())
            os.chmod(temporary, 0o666 & ~_umask())  # as open() would have made it
            os.replace(temporary, self.path)
        except OSError as exc:
            if temporary is not None and os.path.exists(temporary):
                os.unlink(temporary)
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
