"""Where lines come from: files, directories, globs, gzip, bzip2, xz, stdin; and reading
them in blocks.

Paths are resolved (and every file opened once) before anything is read, so a
missing or unreadable input stops the report with a message naming it instead
of after part of the output. Files are read as bytes, in buffers of complete
lines (the scanner walks a buffer by offsets: no object per line); a line
longer than :data:`~hopwatch.report.parse.MAX_LINE_BYTES` is dropped unread
and counted, so memory stays bounded whatever the input holds (a binary file
without newlines included).

A path that is not a regular file (a FIFO, ``<(command)``, ``/dev/stdin`` on a
pipe) is a stream, like stdin: opened once while resolving, read once from start
to end by the main process, never split or reopened.

gzip, bzip2 and xz are recognised by their magic bytes, not the file name (rotated
logs are not always named ``.gz``), and decompressed as they are read, every stream of
a file of several. A compressed stream that ends early (a log compressed while still
being written) keeps what it held, its last partial line counted as a truncated line,
and is mentioned in the summary. zstd (no module in the standard library before
Python 3.14) and UTF-16 or UTF-32 text (a byte order mark: PowerShell's ``>``) are
refused with a line that says how to read them, as an unreadable input: their records
would otherwise vanish into "other lines".
It is decompressed by ISA-L (python-isal, ``pip install hopwatch[fast-gzip]``)
when installed, three to four times as fast as zlib (measured in
docs/performance.md), else by the standard library's zlib.
"""

from __future__ import annotations

import bz2
import errno
import glob
import io
import lzma
import os
import queue
import stat
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final

from hopwatch._cli import os_error_reason
from hopwatch.report.parse import MAX_LINE_BYTES, line_part
from hopwatch.report.text import clean

#: Bytes read per call; a block is this plus the end of the line it cut.
BLOCK_BYTES: Final = 512 * 1024
#: ID1, ID2 and CM = 8 (deflate, the only method RFC 1952 defines): a text log whose first
#: line happens to start with the two ID bytes is not taken for gzip.
GZIP_MAGIC: Final = b"\x1f\x8b\x08"
#: "BZh", the block size ("1" to "9"), then a block's or the end's magic number.
BZIP2_MAGIC: Final = b"BZh"
_BZIP2_NEXT: Final = (b"1AY&SY", b"\x17rE8P\x90")
XZ_MAGIC: Final = b"\xfd7zXZ\x00"
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
#: The first bytes of a compressed file (output.py refuses to replace one).
COMPRESSED_MAGICS: Final = (GZIP_MAGIC, BZIP2_MAGIC, XZ_MAGIC, ZSTD_MAGIC)
#: Byte order marks of text this reader cannot read (UTF-32 before UTF-16: FF FE 00 00).
_BOMS: Final = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
#: The first bytes of UTF-16 or UTF-32 text (output.py refuses to replace such a file).
TEXT_BOMS: Final = tuple(bom for bom, _encoding in _BOMS)
#: Bytes read to tell what an input is.
HEAD_BYTES: Final = 10
STDIN: Final = "-"


class InputError(Exception):
    """An input cannot be used; the message names it (exit status 2)."""


@dataclass(frozen=True)
class Source:
    name: str  # as shown to the user
    path: str | None  # None for stdin
    size: int  # bytes on disk (compressed size when compressed); 0 for a stream
    #: "" (plain), "gzip", "bzip2" or "xz"; a stream's is found when it is read
    compression: str
    #: A stream (stdin, a FIFO): opened once by resolve(), read once, never reopened.
    stream: BinaryIO | None = field(default=None, compare=False, repr=False)
    #: (st_dev, st_ino) of the file read, or None (stdin on a pipe or a terminal): the
    #: file's identity, however it is named (a hard link, a symbolic link, a glob).
    identity: tuple[int, int] | None = field(default=None, compare=False, repr=False)

    @property
    def gzip(self) -> bool:
        return self.compression == "gzip"

    @property
    def splittable(self) -> bool:
        """A plain regular file: byte ranges of it can be read by several processes (a
        compressed stream cannot be entered in the middle)."""
        return self.stream is None and not self.compression


def sniff(head: bytes, name: str, stream: bool = False) -> str:
    """The compression of an input that starts with ``head`` ("" for plain text), or
    InputError for what cannot be read as text: zstd, UTF-16 and UTF-32."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(BZIP2_MAGIC) and head[3:4] in b"123456789" and head[4:10] in _BZIP2_NEXT:
        return "bzip2"
    shown = clean(name)

    def refused(what: str, command: str) -> InputError:
        how = f"{command} before the pipe" if stream else f"{command} {shown} | hopwatch report -"
        return InputError(f"cannot read {shown}: it is {what}: {how}")

    if head.startswith(ZSTD_MAGIC):
        raise refused("zstd-compressed, which this Python cannot decompress", "zstd -dc")
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            raise refused(
                f"{encoding} text (PowerShell's > writes it), not UTF-8",
                f"iconv -f {encoding} -t UTF-8",
            )
    return ""


def _stdin_source() -> Source:
    stdin = sys.stdin
    raw = getattr(stdin, "buffer", None) if stdin is not None else None
    if raw is None:  # fd 0 closed (`0<&-`): Python sets sys.stdin to None
        raise InputError("cannot read <stdin>: standard input is closed")
    identity = None
    try:
        info = os.fstat(raw.fileno())
        if stat.S_ISREG(info.st_mode):  # `< app.log`: that file is an input (see -o)
            identity = (info.st_dev, info.st_ino)
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        pass  # not a real file descriptor (a test's stand-in)
    return Source(name="<stdin>", path=None, size=0, compression="", stream=raw, identity=identity)


def _file_source(path: str) -> Source:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - kept open for a stream, else closed here
    except OSError as exc:
        raise InputError(f"cannot read {clean(path)}: {os_error_reason(exc)}") from None
    try:
        info = os.fstat(handle.fileno())
        if stat.S_ISREG(info.st_mode):
            with handle:
                head = handle.read(HEAD_BYTES)
            return Source(
                name=path,
                path=path,
                size=info.st_size,
                compression=sniff(head, path),
                identity=(info.st_dev, info.st_ino),
            )
    except OSError as exc:
        handle.close()
        raise InputError(f"cannot read {clean(path)}: {os_error_reason(exc)}") from None
    except InputError:
        handle.close()
        raise
    # a FIFO, a pipe (<(command), /dev/stdin), a character device: read it once from
    # this handle; reopening it would lose data, seeking it fails ("Illegal seek")
    return Source(
        name=path,
        path=path,
        size=0,
        compression="",
        stream=handle,
        identity=(info.st_dev, info.st_ino),
    )


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
    raise InputError(f"cannot read {clean(exc.filename)}: {os_error_reason(exc)}")


def resolve(arguments: list[str]) -> list[Source]:
    """The sources named by the command line, in order, each file once: by its device
    and inode, so that a hard link, a symbolic link, a second glob or stdin redirected
    from a file already listed adds nothing (nor does the file after such a stdin)."""
    sources: list[Source] = []
    seen: set[tuple[int, int]] = set()
    stdin = False

    def add_file(path: str) -> None:
        try:
            info = os.stat(path)
        except OSError:
            info = None  # _file_source names the problem
        if info is not None and (info.st_dev, info.st_ino) in seen:
            return
        source = _file_source(path)
        if source.identity is not None:
            if source.identity in seen:  # replaced between the two looks
                if source.stream is not None:
                    source.stream.close()
                return
            seen.add(source.identity)
        sources.append(source)

    for argument in arguments:
        if argument == STDIN:
            if not stdin:
                stdin = True
                source = _stdin_source()
                # `< app.log`: stdin is that file, read once as /dev/stdin would be
                if source.identity is not None:
                    if source.identity in seen:
                        continue
                    seen.add(source.identity)
                sources.append(source)
        elif os.path.isdir(argument):
            for path in _walk(argument):
                add_file(path)
        elif os.path.exists(argument):
            add_file(argument)
        elif glob.has_magic(argument):
            matches = sorted(glob.glob(argument, recursive=True))
            if not matches:
                raise InputError(f"no files match {clean(argument)}")
            for match in matches:
                if os.path.isdir(match):
                    for path in _walk(match):
                        add_file(path)
                else:
                    add_file(match)
        else:
            raise InputError(f"cannot read {clean(argument)}: {_missing(argument)}")
    return sources


def _missing(path: str) -> str:
    """Why ``path``, which os.path.exists() says is not there, cannot be read."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return "broken symbolic link" if os.path.lexists(path) else "no such file or directory"
        return os_error_reason(exc)  # a symbolic link loop, a directory that cannot be searched
    return "no such file or directory"  # gone, then back again, while we looked


# --- reading ---------------------------------------------------------------------------
#: (buffer, end): buffer[:end] holds complete lines, each ending with a newline,
#: except a last line at the end of the input. The buffer is reused for the next block.
LineBlocks = Iterator[tuple[bytearray, int]]
OnTooLong = Callable[[int], None]


def line_blocks(read: Callable[[int], bytes], on_too_long: OnTooLong) -> LineBlocks:
    """Buffers of complete lines from a read(n) function (see LineBlocks).

    A line that grows past MAX_LINE_BYTES before its newline is dropped here
    (``on_too_long``) without being kept; a shorter one split across reads is
    carried into the next buffer. (Complete lines inside a buffer are at most
    BLOCK_BYTES + MAX_LINE_BYTES long; the scanner drops those over the limit.) The
    parts of a line a container runtime split (parse.PART_BYTES) whose line goes on
    after the last newline are carried too, with the lines of other streams between
    them (_before_parts), so that the scanner joins them in one buffer; at most
    MAX_LINE_BYTES are carried for them.

    The buffer is one bytearray, reused: each read is copied in after the line
    carried from the one before (slice assignments of the same length, which
    never reallocate). A new buffer per read (``carry + chunk``) cost a page fault
    per 4 KB: a fifth of the time the whole report took. So the consumer must be
    done with a buffer (hold no memoryview of it) before asking for the next one.
    """
    buffer = bytearray(2 * BLOCK_BYTES)  # grows only for a line longer than a read
    filled = 0  # buffer[:filled] holds the carried line, then the new read
    skipping = False  # inside a line that is already too long: drop up to its end
    while True:
        try:
            chunk = read(BLOCK_BYTES)
        except TruncatedInput:
            # a compressed stream cut short: its last line, cut too, is read as a plain
            # file's last line is (the scanner counts it: truncated, or an other line)
            if filled:
                yield buffer, filled
            raise
        if not chunk:
            break
        if skipping:
            newline = chunk.find(b"\n")
            if newline == -1:
                continue
            chunk = chunk[newline + 1 :]
            skipping = False
        size = filled + len(chunk)
        if size > len(buffer):  # a new, larger one: resizing fails while a view of it lives
            grown = bytearray(size + BLOCK_BYTES)
            grown[:filled] = memoryview(buffer)[:filled]
            buffer = grown
        buffer[filled:size] = chunk
        filled = size
        last = buffer.rfind(b"\n", 0, filled)
        if last == -1:
            if filled > MAX_LINE_BYTES:
                on_too_long(1)
                skipping = True
                filled = 0
            continue
        # (the parts of a line that would keep more than MAX_LINE_BYTES carried are not
        # looked for: memory stays bounded when a stream's last part never comes)
        cut = _before_parts(buffer, last + 1, max(filled - MAX_LINE_BYTES, 0))
        if filled - cut > MAX_LINE_BYTES:  # the parts would make a line too long anyway
            cut = last + 1
        carried = filled - cut
        if carried > MAX_LINE_BYTES:  # the line after the last newline is already too long
            on_too_long(1)
            skipping = True
            carried = 0
        elif cut == 0:  # nothing but parts of a line so far: read on
            continue
        yield buffer, cut
        if carried:
            buffer[:carried] = buffer[cut:filled]
        filled = carried
    if filled:
        yield buffer, filled


def _before_parts(buffer: bytearray, end: int, first: int = 0) -> int:
    """Where the parts near the end of ``buffer[:end]`` start whose line goes on in what
    is still to be read (lines a container runtime split, parse.PART_BYTES), so that the
    scanner gets each split line whole in one buffer; ``end`` when there are none.

    Lines of other streams may come between the parts (any number of them), so the cut
    falls where no stream's line is open: where each stream's last line before it is a
    whole line or a last part. A stream whose last line before the cut is a first or
    middle part (P) moves the cut to that part, and the streams are looked at again
    before the new cut, until none is open there. ``buffer[first:]`` is looked through
    (its start is taken for a place where no line is open); a line of a runtime's stream
    is found by its stream's name (bytes.rfind), so a stream without lines there costs
    one search. A buffer whose last line no runtime wrote is not a runtime's log: ``end``.
    """
    if end <= first:
        return end
    last = max(buffer.rfind(b"\n", first, end - 1) + 1, first)
    shape = line_part(buffer, last, end - 1)
    if shape is None:  # not a container runtime's line: no runtime's log
        return end
    kind = shape[0][: shape[0].index(b" ") + 1]  # b"cri " or b"docker "
    streams = (kind + b"stdout", kind + b"stderr")
    cut = end
    found: dict[bytes, tuple[int, bool] | None] = {}  # a stream's last line before `cut`
    moved = True
    while moved:
        moved = False
        for stream in streams:
            line = found.get(stream, _UNSEEN)
            if line is _UNSEEN or (line is not None and line[0] >= cut):
                line = found[stream] = _last_line(buffer, stream, first, cut)
            if line is not None and line[1]:  # open: its line runs across the cut
                cut = line[0]
                moved = True
    return cut


#: (_before_parts) a stream not looked for yet.
_UNSEEN: Final = (-1, False)


def _last_line(buffer: bytearray, stream: bytes, first: int, end: int) -> tuple[int, bool] | None:
    """(start, whether it is a first or middle part) of the last line of ``stream`` (a
    parse.line_part stream) that starts in ``buffer[first:end]`` (``end``: a line's start),
    or None when there is none."""
    docker = stream.startswith(b"docker ")
    name = stream[stream.index(b" ") + 1 :]
    needle = b'","stream":"' + name + b'"' if docker else b" " + name + b" "
    position = end
    while True:
        hit = buffer.rfind(needle, first, position)
        if hit == -1:
            return None
        start = buffer.rfind(b"\n", 0, hit) + 1
        if start < first:
            return None
        stop = buffer.find(b"\n", hit, end)
        shape = line_part(buffer, start, end if stop == -1 else stop)
        if shape is not None and shape[0] == stream:
            at = shape[3] if docker else buffer.find(b" ", start)  # where the name is
            if at == hit:
                return start, shape[1]
        position = start  # the name inside another line: look before it


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
        # ... but the parts of a line split by a container runtime before it are read
        # here, with the rest of their line (the range before ends there too)
        handle.seek(_before_open_parts(handle, handle.tell()))
    if end is not None and end > 0:
        end = _range_end(handle, end)
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


def _range_end(handle: BinaryIO, end: int) -> int:
    """Where a range that ends at ``end`` stops reading: after the line through
    ``end - 1``, or before the parts at its end of a line split by a container runtime
    that goes on after it (the next range starts there: _range_reader)."""
    position = handle.tell()
    handle.seek(end - 1)
    while True:
        piece = handle.readline(BLOCK_BYTES)
        if not piece or piece.endswith(b"\n"):
            break
    stop = _before_open_parts(handle, handle.tell())
    handle.seek(position)
    return stop


def _before_open_parts(handle: BinaryIO, position: int) -> int:
    """``position`` (a line's start), or the start of the parts before it whose line goes
    on after it (inputs._before_parts), as far as _PARTS_LOOK_BACK bytes back. The ranges on
    either side of a cut ask this at the same place, so they agree on where it falls."""
    back = min(position, _PARTS_LOOK_BACK)
    handle.seek(position - back)
    window = bytearray(handle.read(back))
    first = window.find(b"\n") + 1 if back < position else 0  # the first whole line
    cut = _before_parts(window, len(window), first)
    return position - back + cut


#: How far back the cut between two ranges looks for parts of a split line (as far as a
#: buffer's cut does: lines of other streams may come between the parts); a line whose
#: parts spread over more may be cut there (its parts then counted as unjoined).
_PARTS_LOOK_BACK: Final = MAX_LINE_BYTES


def read_source(
    source: Source, on_too_long: OnTooLong, start: int = 0, end: int | None = None
) -> tuple[LineBlocks, Callable[[], None]]:
    """Blocks of lines from a source (or from a byte range of a plain file), and a closer."""
    if source.stream is not None:
        return _stream_blocks(source, on_too_long)
    assert source.path is not None
    try:
        handle = open(source.path, "rb")  # noqa: SIM115 - closed by the returned closer
    except OSError as exc:
        raise InputError(f"cannot read {clean(source.name)}: {os_error_reason(exc)}") from None
    if source.compression:
        ahead = ReadAhead(decompressing_reader(source.compression, handle.read))

        def close() -> None:
            ahead.close()
            handle.close()

        return line_blocks(_guarded(ahead.read, source), on_too_long), close
    try:
        read = _range_reader(handle, start, end)
    except OSError as exc:
        handle.close()
        raise InputError(f"cannot read {clean(source.name)}: {os_error_reason(exc)}") from None
    return line_blocks(_guarded(read, source), on_too_long), handle.close


def _stream_blocks(source: Source, on_too_long: OnTooLong) -> tuple[LineBlocks, Callable[[], None]]:
    """stdin or a FIFO: read once, from start to end; decompressed when its first bytes
    say so (sniff)."""
    stream = source.stream
    assert stream is not None
    close = stream.close if source.path is not None else (lambda: None)  # stdin stays open
    try:
        head = _read_head(_guarded(stream.read, source))
        compression = sniff(head, source.name, stream=True)
    except InputError:
        close()
        raise
    read: Callable[[int], bytes] = _Prefixed(head, stream).read
    if not compression:
        return line_blocks(_guarded(read, source), on_too_long), close
    ahead = ReadAhead(decompressing_reader(compression, read))

    def close_both() -> None:
        ahead.close()
        close()

    return line_blocks(_guarded(ahead.read, source), on_too_long), close_both


def _read_head(read: Callable[[int], bytes]) -> bytes:
    """The first HEAD_BYTES of a stream (fewer at its end): a pipe's read may return less."""
    head = b""
    while len(head) < HEAD_BYTES:
        more = read(HEAD_BYTES - len(head))
        if not more:
            break
        head += more
    return head


class ReadAhead:
    """``read(n)`` served by a thread that reads the next blocks ahead.

    For gzip: zlib and ISA-L release the GIL while they decompress, so the next
    blocks are decompressed on another core while this one scans (measured in
    docs/performance.md). The thread reads BLOCK_BYTES at a time whatever ``n``
    is, and keeps at most :attr:`DEPTH` blocks waiting, which bounds memory. An
    exception in the thread is raised by the next read, in order; :meth:`close`
    stops the thread.
    """

    DEPTH: Final = 4

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._blocks: queue.Queue[tuple[bool, Any]] = queue.Queue(self.DEPTH)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(
            target=self._run, args=(read,), name="hopwatch-read-ahead", daemon=True
        )
        self._thread.start()

    def _run(self, read: Callable[[int], bytes]) -> None:
        try:
            while not self._stop.is_set():
                block = read(BLOCK_BYTES)
                self._put((True, block))
                if not block:
                    return
        except BaseException as exc:  # handed to the reader, raised there
            self._put((False, exc))

    def _put(self, item: tuple[bool, Any]) -> None:
        while not self._stop.is_set():
            try:
                self._blocks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, size: int) -> bytes:
        if self._finished:
            return b""
        ok, value = self._blocks.get()
        if not ok:
            self._finished = True
            raise value
        if not value:
            self._finished = True
        return value  # type: ignore[no-any-return]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class _Prefixed(io.RawIOBase):
    """A stream's first bytes, already read, then the rest of it."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            if size < 0:
                return head + self._stream.read()
            return head + self._stream.read(max(0, size - len(head)))
        return self._stream.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


#: Decompression errors: zlib's, and ISA-L's once it is used.
_GZIP_ERRORS: list[type[Exception]] = [zlib.error]


def decompressor() -> Any:
    """The module whose ``decompressobj`` reads gzip: ISA-L when installed, else zlib."""
    try:
        from isal import isal_zlib  # optional: the fast-gzip extra
    except ImportError:
        return zlib
    error: type[Exception] = isal_zlib.error  # type: ignore[assignment]  # its stub says instance
    if error not in _GZIP_ERRORS:
        _GZIP_ERRORS.append(error)
    return isal_zlib


#: Input read per call when decompressing.
GZIP_INPUT_BYTES: Final = 256 * 1024
#: Where a gzip member's FLG byte is, and its bits RFC 1952 reserves (they must be zero).
_GZIP_FLAGS: Final = 3
_GZIP_RESERVED_FLAGS: Final = 0xE0


def gunzip_reader(read: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """read(n) of the decompressed bytes of every gzip member that ``read`` gives.

    A stream that ends inside a member hands over everything decompressed before
    the cut, then raises EOFError (gzip.GzipFile may drop the last piece, and
    ISA-L's GzipFile all of a small file). Zero bytes between members (padding)
    are skipped, as gzip does; other bytes there are corrupt data.
    """
    module = decompressor()
    unzip = module.decompressobj(31)  # 16 + MAX_WBITS: a gzip header and trailer
    pending = b""  # input not given to the decompressor yet
    in_member = False

    def read_unzipped(size: int) -> bytes:
        nonlocal unzip, pending, in_member
        while True:
            if in_member and unzip.eof:
                pending = unzip.unused_data + pending
                in_member = False
            if not in_member:  # between members: padding, another member, or the end
                pending = pending.lstrip(b"\0")
                if len(pending) <= _GZIP_FLAGS:
                    more = read(GZIP_INPUT_BYTES)
                    if not more:
                        if pending:
                            raise EOFError("compressed data ended inside a gzip header")
                        return b""
                    pending += more
                    continue
                if not pending.startswith(GZIP_MAGIC):
                    raise zlib.error("data after a gzip member is not gzip")
                if pending[_GZIP_FLAGS] & _GZIP_RESERVED_FLAGS:
                    # zlib says so; ISA-L reads on and takes the rest for a header cut short
                    raise zlib.error("unknown header flags set")
                unzip = module.decompressobj(31)
                in_member = True
            if unzip.unconsumed_tail:
                data = unzip.unconsumed_tail
            elif pending:
                data, pending = pending, b""
            else:
                data = read(GZIP_INPUT_BYTES)
                if not data:
                    raise EOFError("compressed data ended before the end of its stream")
            out: bytes = unzip.decompress(data, size)
            if out:
                return out

    return read_unzipped


#: Compressed input read per call by the bzip2 and xz readers.
UNPACK_INPUT_BYTES: Final = 64 * 1024


class CorruptData(Exception):
    """bzip2 or xz data that cannot be decompressed; the message says which."""


def decompressing_reader(compression: str, read: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """read(n) of the decompressed bytes of ``read``, a stream of ``compression``."""
    if compression == "gzip":
        return gunzip_reader(read)
    if compression == "bzip2":
        return _streams_reader(read, bz2.BZ2Decompressor, BZIP2_MAGIC, "bzip2")
    if compression == "xz":
        return _streams_reader(read, lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ), XZ_MAGIC, "xz")
    raise ValueError(f"unknown compression {compression!r}")


def _streams_reader(
    read: Callable[[int], bytes], make: Callable[[], Any], magic: bytes, kind: str
) -> Callable[[int], bytes]:
    """read(n) of the decompressed bytes of every bzip2 or xz stream that ``read`` gives
    (pbzip2 and ``xz -T`` write several; xz pads between them with zero bytes, skipped).

    As gunzip_reader: a stream cut short hands over everything decompressed before the
    cut, then raises EOFError; other bytes after a stream are corrupt data. Memory stays
    bounded: at most ``n`` bytes come out of the decompressor per call.
    """
    unpack: Any = None
    pending = b""  # input not given to the decompressor yet

    def read_unpacked(size: int) -> bytes:
        nonlocal unpack, pending
        while True:
            if unpack is not None and unpack.eof:
                pending = unpack.unused_data + pending
                unpack = None
            if unpack is None:  # between streams: padding, another stream, or the end
                pending = pending.lstrip(b"\0")
                if len(pending) < len(magic):
                    more = read(UNPACK_INPUT_BYTES)
                    if not more:
                        if pending:
                            raise EOFError(f"compressed data ended inside an {kind} header")
                        return b""
                    pending += more
                    continue
                if not pending.startswith(magic):
                    raise CorruptData(f"corrupt {kind} data (data after a stream is not {kind})")
                unpack = make()
            data = b""
            if unpack.needs_input:
                if pending:
                    data, pending = pending, b""
                else:
                    data = read(UNPACK_INPUT_BYTES)
                    if not data:
                        raise EOFError("compressed data ended before the end of its stream")
            try:
                out: bytes = unpack.decompress(data, size)
            except (OSError, lzma.LZMAError, ValueError) as exc:
                raise CorruptData(f"corrupt {kind} data ({exc})") from None
            if out:
                return out

    return read_unpacked


class TruncatedInput(Exception):
    """A compressed stream ended before its end marker; what came before it was read."""


def _guarded(read: Callable[[int], bytes], source: Source) -> Callable[[int], bytes]:
    """read() with OS and decompression errors turned into InputError / TruncatedInput."""

    def guarded(size: int) -> bytes:
        try:
            return read(size)
        except EOFError:
            raise TruncatedInput(source.name) from None
        except CorruptData as exc:
            raise InputError(f"cannot read {clean(source.name)}: {exc}") from None
        except Exception as exc:
            if isinstance(exc, tuple(_GZIP_ERRORS)):
                raise InputError(
                    f"cannot read {clean(source.name)}: corrupt gzip data ({exc})"
                ) from None
            if isinstance(exc, OSError):
                raise InputError(
                    f"cannot read {clean(source.name)}: {os_error_reason(exc)}"
                ) from None
            raise

    return guarded
