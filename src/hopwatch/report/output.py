"""``-o FILE``: the report written to a file whole, or not at all.

The report is rendered in memory (it is bounded: at most ``--top`` rows, and
2,000 endpoints in all) and written at the end under a temporary name next to
FILE, then renamed over it: an interrupted or failed run never leaves half a
report where a complete one was (a page open in a browser keeps the old one).
Whether FILE can be written is checked first, before any input is read.

FILE is otherwise what a shell's ``> FILE`` makes of it: a file replaced keeps its
mode (and its owner and group, as far as this process may set them), a new one gets
0o666 less the umask; a symbolic link is
followed (the regular file it points to is the one replaced, the link stays),
and a file that is not a regular file (a device such as ``/dev/null``, a FIFO,
``/dev/stdout`` on a pipe) is written into, never replaced, without needing its
directory to be writable.
"""

from __future__ import annotations

import io
import os
import stat
import tempfile
from typing import IO, Final

from hopwatch._cli import os_error_reason
from hopwatch.report.text import clean


class OutputError(Exception):
    """FILE, or standard output, cannot be written (exit status 2)."""


#: The start of the message when standard output cannot be written (full, closed).
STDOUT_ERROR: Final = "cannot write the report to standard output"


class Output:
    """Where the report goes: ``path``, or ``default`` (stdout) when path is None."""

    def __init__(self, path: str | None, default: IO[str] | None) -> None:
        self.path = path
        #: Write into FILE itself (a device, a FIFO), not a new file renamed over it.
        self.through = False
        #: The regular file to replace: FILE, or the file a symbolic link FILE points to.
        self.target = path or ""
        #: (st_dev, st_ino) of the regular file FILE is now, or None (none yet, stdout,
        #: a device): an input with the same identity must not be replaced (check_inputs).
        self.identity: tuple[int, int] | None = None
        if path is None:
            if default is None:  # fd 1 closed (`>&-`): Python sets sys.stdout to None
                raise OutputError(f"{STDOUT_ERROR}: it is closed")
            self.stream: IO[str] = default
            return
        self.stream = io.StringIO()
        name = clean(path)  # as the report shows file names: no terminal escapes
        try:
            info: os.stat_result | None = os.stat(path)  # through symbolic links
        except FileNotFoundError:
            info = None  # a new file (or a link to one)
        except OSError as exc:
            raise OutputError(f"cannot write {name}: {os_error_reason(exc)}") from None
        if info is not None and stat.S_ISDIR(info.st_mode):
            raise OutputError(f"cannot write {name}: it is a directory")
        if info is not None and stat.S_ISREG(info.st_mode):
            self.identity = (info.st_dev, info.st_ino)
        if info is not None and not stat.S_ISREG(info.st_mode):
            if not os.access(path, os.W_OK):
                raise OutputError(f"cannot write {name}: permission denied")
            self.through = True
            return
        if os.path.islink(path):
            self.target = os.path.realpath(path)
            if info is not None and not _same_file(self.target, info):
                # a link whose text is not a path to it (/dev/stdout on a deleted file)
                self.target = path
                self.through = True
        if not self.through:
            directory = os.path.dirname(os.path.abspath(self.target))
            if not os.path.isdir(directory):
                raise OutputError(f"cannot write {name}: no directory {clean(directory)}")
            if not os.access(directory, os.W_OK):
                raise OutputError(f"cannot write {name}: permission denied")
        if info is not None and not os.access(path, os.W_OK):
            raise OutputError(f"cannot write {name}: permission denied")

    def check_inputs(self, inputs: list[tuple[str, tuple[int, int] | None]]) -> None:
        """Refuse to replace a log: a FILE that is one of the inputs (name, identity),
        however each is named (a glob, a directory, a link, stdin redirected from it), or a
        FILE that holds hopwatch records (``hopwatch report -o logs/*.log``: the shell makes
        the first log FILE, and only the others inputs). A FILE that does not exist yet, or
        is not a regular file, is neither."""
        if self.identity is None:
            return
        name = clean(self.path or "")
        for input_name, identity in inputs:
            if identity == self.identity:
                read_as = "" if input_name == self.path else f" (read as {clean(input_name)})"
                raise OutputError(f"cannot write {name}: it is one of the inputs{read_as}")
        if _holds_records(self.target):
            raise OutputError(
                f"cannot write {name}: it holds hopwatch records, a log, not a report"
                " (-o FILE takes the argument after it: a glob there names a log)"
            )

    def finish(self) -> None:
        """Flush stdout, or put the whole file in place."""
        if self.path is None:
            self.stream.flush()
            return
        assert isinstance(self.stream, io.StringIO)
        if self.through:
            try:
                with open(self.path, "w", encoding="utf-8") as file:
                    file.write(self.stream.getvalue())
            except OSError as exc:
                raise OutputError(
                    f"cannot write {clean(self.path)}: {os_error_reason(exc)}"
                ) from None
            return
        directory = os.path.dirname(os.path.abspath(self.target))
        temporary = None
        try:
            handle, temporary = tempfile.mkstemp(
                prefix=f".{os.path.basename(self.target)}.", suffix=".tmp", dir=directory
            )
            with open(handle, "w", encoding="utf-8") as file:
                file.write(self.stream.getvalue())
            _take_over(temporary, self.target)
            os.replace(temporary, self.target)
        except OSError as exc:
            if temporary is not None and os.path.exists(temporary):
                os.unlink(temporary)
            raise OutputError(f"cannot write {clean(self.path)}: {os_error_reason(exc)}") from None


#: How much of an existing FILE is looked at to tell a log from a report.
LOOK_BYTES: Final = 64 * 1024


def _holds_records(path: str) -> bool:
    """Whether the regular file ``path`` starts like a log: compressed (gzip, bzip2, xz,
    zstd), or a hopwatch record on a line that starts in its first LOOK_BYTES. No format
    of the report writes a line that reads as a record."""
    from hopwatch.report.inputs import COMPRESSED_MAGICS
    from hopwatch.report.parse import decode_line

    try:
        with open(path, "rb") as file:
            head = file.read(LOOK_BYTES)
            if len(head) == LOOK_BYTES and not head.endswith(b"\n"):
                # a line that starts in the first LOOK_BYTES is read to its end (at most
                # LOOK_BYTES more): a record cut at the boundary does not decode
                head += file.readline(LOOK_BYTES)
    except OSError:
        return False  # the write will say what is wrong, if anything
    if head.startswith(COMPRESSED_MAGICS):
        return True
    # every line, not a number of them: a mixed log's records can come after hundreds of
    # start-up lines (300 of gunicorn's put the first at byte 20592)
    return any(isinstance(decode_line(line), tuple) for line in head.splitlines())


def _same_file(path: str, info: os.stat_result) -> bool:
    try:
        other = os.stat(path)
    except OSError:
        return False
    return (other.st_dev, other.st_ino) == (info.st_dev, info.st_ino)


def _take_over(temporary: str, target: str) -> None:
    """Give ``temporary`` what ``> target`` would leave: the mode of the file it replaces
    (a private report stays private), and its owner and group as far as this process
    may set them (root: both; others: a group they belong to); a new file gets the mode
    open() gives one (0o666 less the umask)."""
    try:
        info: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        info = None
    if info is None or not stat.S_ISREG(info.st_mode):
        os.chmod(temporary, 0o666 & ~_umask())
        return
    mine = os.stat(temporary)
    if (mine.st_uid, mine.st_gid) != (info.st_uid, info.st_gid):
        # before the mode: changing the owner clears the set-id bits
        for uid in (info.st_uid, -1):
            try:
                os.chown(temporary, uid, info.st_gid)
                break
            except PermissionError:
                continue
    os.chmod(temporary, stat.S_IMODE(info.st_mode))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
