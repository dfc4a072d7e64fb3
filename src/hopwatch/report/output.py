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


#: How much of an existing FILE is looked at to tell a log from a report: the lines
#: that start in it (each read to its end, up to parse.MAX_LINE_BYTES).
LOOK_BYTES: Final = 64 * 1024


def _holds_records(path: str) -> bool:
    """Whether the regular file ``path`` starts like a log: compressed (gzip, bzip2, xz,
    zstd), UTF-16 or UTF-32 text (a byte order mark: a log the report cannot read, never
    a report), or a hopwatch record on a line that starts in its first LOOK_BYTES, read
    as the report reads it: to its end if it is at most parse.MAX_LINE_BYTES long (a
    longer one is no record to the report either), and joined with its later parts when
    a container runtime split it (parse.PART_BYTES). No format of the report writes a
    line that reads as a record."""
    from hopwatch.report.inputs import COMPRESSED_MAGICS, TEXT_BOMS

    try:
        with open(path, "rb") as file:
            head = file.read(LOOK_BYTES)
            if head.startswith(COMPRESSED_MAGICS) or head.startswith(TEXT_BOMS):
                return True
            return _records_in(_Lines(file, head))
    except OSError:
        return False  # the write will say what is wrong, if anything


class _Lines:
    """The lines of a file from its start (``head`` already read), each without its
    newline, read only as far as they are asked for; a line longer than
    parse.MAX_LINE_BYTES ends them (it is read no further)."""

    def __init__(self, file: IO[bytes], head: bytes) -> None:
        self._file = file
        self._pending = head  # read, not yet cut into lines
        self._at_end = len(head) < LOOK_BYTES
        self.lines: list[tuple[int, bytes]] = []  # (where it starts, the line)
        self._position = 0  # where the next line starts
        self.over = False  # no more lines: the end of the file, or a line too long

    def get(self, index: int) -> tuple[int, bytes] | None:
        """Line ``index`` (from 0) and where it starts, or None past the last one."""
        from hopwatch.report.parse import MAX_LINE_BYTES

        while index >= len(self.lines) and not self.over:
            newline = self._pending.find(b"\n")
            if newline == -1 and not self._at_end:
                # the rest of the line, and not a byte past MAX_LINE_BYTES + its newline
                more = self._file.readline(MAX_LINE_BYTES + 1 - len(self._pending))
                self._at_end = not more.endswith(b"\n")
                self._pending += more
                newline = self._pending.find(b"\n")
            if newline == -1:
                line, self._pending = self._pending, b""
                self.over = True  # the last line (or none), or one too long
                if not line or len(line) > MAX_LINE_BYTES:
                    break
            else:
                line, self._pending = self._pending[:newline], self._pending[newline + 1 :]
                if len(line) > MAX_LINE_BYTES:
                    self.over = True
                    break
            self.lines.append((self._position, line))
            self._position += len(line) + 1
        return self.lines[index] if index < len(self.lines) else None


def _records_in(lines: _Lines) -> bool:
    # every line, not a number of them: a mixed log's records can come after hundreds of
    # start-up lines (300 of gunicorn's put the first at byte 20592)
    from hopwatch.report.parse import PART_BYTES, decode_line, line_part
    from hopwatch.report.scan import _peeled

    joined: set[int] = set()  # later parts of a line already read whole
    index = 0
    while (found := lines.get(index)) is not None and found[0] < LOOK_BYTES:
        line = found[1]
        if index not in joined:
            shape = line_part(line, 0, len(line)) if len(line) >= PART_BYTES else None
            if shape is not None and shape[1]:
                whole = _join(lines, index, shape, joined)
                if whole is not None:
                    line = whole
            # as the report reads it: the line itself, or the record in its layers (an
            # export's object, which the general decoder's depth limit may refuse)
            if isinstance(decode_line(line), tuple):
                return True
            brace = line.find(b"{")  # (the report reads a line from its first "{")
            if brace >= 0 and _peeled(memoryview(line)[brace:]) is not None:
                return True
        index += 1
    return False


def _join(
    lines: _Lines, index: int, part: tuple[bytes, bool, int, int], joined: set[int]
) -> bytes | None:
    """Line ``index``, the first part of a line a container runtime split, joined with
    its stream's later parts as the report joins them (lines of other streams may come
    in between), or None when its last part does not come before the parts would make a
    line longer than parse.MAX_LINE_BYTES (or the file ends). Indexes of the later parts
    go into ``joined``."""
    from hopwatch.report.parse import MAX_LINE_BYTES, line_part

    stream, _partial, share_start, share_stop = part
    first = lines.get(index)
    assert first is not None
    shares = [first[1][share_start:share_stop]]
    size = share_stop - share_start
    later: list[int] = []
    # the span read for it is bounded too: other lines between its parts count
    while (found := lines.get(index + 1)) is not None and found[0] - first[0] <= 2 * MAX_LINE_BYTES:
        index += 1
        line = found[1]
        other = line_part(line, 0, len(line))
        if other is None or other[0] != stream:
            continue
        later.append(index)
        shares.append(line[other[2] : other[3]])
        size += other[3] - other[2]
        if size > MAX_LINE_BYTES:
            return None
        if not other[1]:  # the last part: the line is whole
            joined.update(later)
            return b"".join((line[: other[2]], *shares, line[other[3] :]))
    return None


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
