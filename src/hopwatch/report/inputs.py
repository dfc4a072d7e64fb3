"""Where lines come from: files, directories, globs, gzip, stdin; and reading them in blocks.

Paths are resolved (and every file opened once) before anything is read, so a
missing or unreadable input stops the report with a message naming it instead
of after part of the output. Files are read as bytes, in buffers of complete
lines (the scanner walks a buffer by offsets: no object per line); a line
longer than :data:`~hopwatch.report.parse.MAX_LINE_BYTES` is dropped unread
and counted, so memory stays bounded whatever the input holds (a binary file
without newlines included).

gzip is recognised by its magic bytes, not the file name (rotated logs are
not always named ``.gz``). A gzip stream that ends early (a log compressed
while still being written) keeps what it held and is mentioned in the summary.
"""

from __future__ import annotations

import glob
import gzip
import os
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final

from hopwatch.report.parse import MAX_LINE_BYTES

#: Bytes read per call; a block is this plus the end of the line it cut.
BLOCK_BYTES: Final = 512 * 1024
GZIP_MAGIC: Final = b"\x1f\x8b"
STDIN: Final = "-"


class InputError(Exception):
    """An input cannot be used; the message names it (exit status 2)."""


@dataclass(frozen=True)
class Source:
    name: str  # as shown to the user
    path: str | None  # None for stdin
    size: int  # bytes on disk (compressed size for gzip); 0 for stdin
    gzip: bool


def _stdin_source() -> Source:
    return Source(name="<stdin>", path=None, size=0, gzip=False)


def _file_source(path: str) -> Source:
    try:
        with open(path, "rb") as handle:
            magic = handle.read(2)
            size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    return Source(name=path, path=path, size=size, gzip=magic == GZIP_MAGIC)


def _walk(directory: str) -> list[str]:
    """Regular files under a directory, sorted; hidden files and directories are left out."""
    found = []
    for root, dirs, files in os.walk(directory, onerror=_raise_walk_error):
        dirs[:] = sorted(name for name in dirs if not name.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                path = os.path.join(root, name)
                if os.path.isfile(path):
                    found.append(path)
    return found


def _raise_walk_error(exc: OSError) -> None:
    raise InputError(f"cannot read {exc.filename}: {exc.strerror or exc}")


def resolve(arguments: list[str]) -> list[Source]:
    """The sources named by the command line, in order, each file once."""
    sources: list[Source] = []
    seen: set[str] = set()

    def add_file(path: str) -> None:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            sources.append(_file_source(path))

    for argument in arguments:
        if argument == STDIN:
            if STDIN not in seen:
                seen.add(STDIN)
                sources.append(_stdin_source())
        elif os.path.isdir(argument):
            for path in _walk(argument):
                add_file(path)
        elif os.path.exists(argument):
            add_file(argument)
        elif glob.has_magic(argument):
            matches = sorted(glob.glob(argument, recursive=True))
            if not matches:
                raise InputError(f"no files match {argument}")
            for match in matches:
                if os.path.isdir(match):
                    for path in _walk(match):
                        add_file(path)
                else:
                    add_file(match)
        elif os.path.lexists(argument):
            raise InputError(f"cannot read {argument}: broken symbolic link")
        else:
            raise InputError(f"cannot read {argument}: no such file or directory")
    return sources


# --- reading ---------------------------------------------------------------------------
#: (buffer, end): buffer[:end] holds complete lines, each ending with a newline,
#: except a last line at the end of the input.
LineBlocks = Iterator[tuple[bytes, int]]
OnTooLong = Callable[[int], None]


def line_blocks(read: Callable[[int], bytes], on_too_long: OnTooLong) -> LineBlocks:
    """Buffers of complete lines from a read(n) function (see LineBlocks).

    A line that grows past MAX_LINE_BYTES before its newline is dropped here
    (``on_too_long``) without being kept; a shorter one split across reads is
    carried into the next buffer. (Complete lines inside a buffer are at most
    BLOCK_BYTES + MAX_LINE_BYTES long; the scanner drops those over the limit.)
    """
    carry = b""
    skipping = False  # inside a line that is already too long: drop up to its end
    while True:
        chunk = read(BLOCK_BYTES)
        if not chunk:
            break
        if skipping:
            newline = chunk.find(b"\n")
            if newline == -1:
                continue
            chunk = chunk[newline + 1 :]
            skipping = False
        buffer = carry + chunk if carry else chunk
        last = buffer.rfind(b"\n")
        if last == -1:
            carry = b""
            if len(buffer) > MAX_LINE_BYTES:
                on_too_long(1)
                skipping = True
            else:
                carry = buffer
            continue
        carry = buffer[last + 1 :]
        if len(carry) > MAX_LINE_BYTES:
            on_too_long(1)
            carry = b""
            skipping = True
        yield buffer, last + 1  # (not sliced: that would copy the whole buffer)
    if carry:
        yield carry, len(carry)


def _range_reader(handle: BinaryIO, start: int, end: int | None) -> Callable[[int], bytes]:
    """read(n) over the lines that *start* in [start, end): the last one is read to its end."""
    if start > 0:
        # The line running through `start` belongs to the range before (unless a
        # newline ends just before `start`): skip to its end.
        handle.seek(start - 1)
        while True:
            piece = handle.readline(BLOCK_BYTES)
            if not piece or piece.endswith(b"\n"):
                break
    position = handle.tell()
    state = "body" if end is None or position < end else "done"

    def read(size: int) -> bytes:
        nonlocal position, state
        if end is None:
            return handle.read(size)
        if state == "body":
            chunk = handle.read(min(size, end - position))
            position += len(chunk)
            if position >= end or not chunk:
                # a newline just before `end` means the next line belongs to the next range
                state = "done" if not chunk or chunk.endswith(b"\n") else "tail"
            if chunk:
                return chunk
        if state == "tail":
            # the line that began before `end` continues after it: read up to its newline
            piece = handle.readline(size)
            if not piece or piece.endswith(b"\n"):
                state = "done"
            return piece
        return b""

    return read


def read_source(
    source: Source, on_too_long: OnTooLong, start: int = 0, end: int | None = None
) -> tuple[LineBlocks, Callable[[], None]]:
    """Blocks of lines from a source (or from a byte range of a plain file), and a closer."""
    if source.path is None:
        stream = sys.stdin.buffer
        peek = getattr(stream, "peek", None)
        if peek is not None and peek(2)[:2] == GZIP_MAGIC:
            unzipped = gzip.GzipFile(fileobj=stream, mode="rb")
            return line_blocks(
                _guarded(_gzip_reader(unzipped), source), on_too_long
            ), unzipped.close
        return line_blocks(_guarded(stream.read, source), on_too_long), lambda: None
    try:
        handle = open(source.path, "rb")  # noqa: SIM115 - closed by the returned closer
    except OSError as exc:
        raise InputError(f"cannot read {source.name}: {exc.strerror or exc}") from None
    if source.gzip:
        unzipped = gzip.GzipFile(fileobj=handle, mode="rb")

        def close() -> None:
            unzipped.close()
            handle.close()

        return line_blocks(_guarded(_gzip_reader(unzipped), source), on_too_long), close
    try:
        read = _range_reader(handle, start, end)
    except OSError as exc:
        handle.close()
        raise InputError(f"cannot read {source.name}: {exc.strerror or exc}") from None
    return line_blocks(_guarded(read, source), on_too_long), handle.close


def _gzip_reader(unzipped: gzip.GzipFile) -> Callable[[int], bytes]:
    """read(n) that hands over what was decompressed before a stream turns out cut short.

    GzipFile.read(n) drops its partial result when it meets the early end, so
    this gathers read1() pieces and raises EOFError only on the following call.
    """
    ended_early = False

    def read(size: int) -> bytes:
        nonlocal ended_early
        if ended_early:
            raise EOFError
        parts: list[bytes] = []
        total = 0
        while total < size:
            try:
                piece = unzipped.read1(size - total)
            except EOFError:
                if not parts:
                    raise
                ended_early = True
                break
            if not piece:
                break
            parts.append(piece)
            total += len(piece)
        return b"".join(parts)

    return read


class TruncatedInput(Exception):
    """A gzip stream ended before its end marker; what came before it was read."""


def _guarded(read: Callable[[int], bytes], source: Source) -> Callable[[int], bytes]:
    """read() with OS and decompression errors turned into InputError / TruncatedInput."""

    def guarded(size: int) -> bytes:
        try:
            return read(size)
        except EOFError:
            raise TruncatedInput(source.name) from None
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise InputError(f"cannot read {source.name}: corrupt gzip data ({exc})") from None
        except OSError as exc:
            raise InputError(f"cannot read {source.name}: {exc.strerror or exc}") from None

    return guarded
