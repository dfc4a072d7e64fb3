"""Files, directories, globs, gzip, byte ranges and over-long lines."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopwatch.report import inputs, parallel
from hopwatch.report.inputs import InputError, LineBlocks, Source, line_blocks, read_source, resolve
from hopwatch.report.parse import MAX_LINE_BYTES
from hopwatch.report.scan import Filters
from tests.report.samples import canonical_lines


def lines_of(blocks: LineBlocks) -> list[bytes]:
    lines = []
    for buffer, end in blocks:
        chunk = buffer[:end].split(b"\n")
        if chunk[-1] == b"":
            chunk.pop()
        lines += chunk
    return lines


def blocks_of(data: bytes, block: int = 7) -> tuple[list[bytes], int]:
    stream = io.BytesIO(data)
    too_long = [0]

    def read(size: int) -> bytes:
        return stream.read(min(size, block))

    def count(n: int) -> None:
        too_long[0] += n

    lines = lines_of(line_blocks(read, count))
    return lines, too_long[0]


@given(
    st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=30),
    st.booleans(),
)
def test_line_blocks_yield_every_line_once(lines: list[bytes], final_newline: bool) -> None:
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    got, _ = blocks_of(data)
    expected = data.split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()
    assert got == expected


def test_lines_longer_than_the_limit_are_dropped_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inputs, "MAX_LINE_BYTES", 10)
    got, too_long = blocks_of(b"short\n" + b"x" * 50 + b"\nafter\n" + b"y" * 40)
    assert got == [b"short", b"after"] and too_long == 2


def test_a_file_without_newlines_is_read_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "binary.bin"
    path.write_bytes(os.urandom(1024).replace(b"\n", b"") * (3 * MAX_LINE_BYTES // 1024))
    blocks, close = read_source(resolve([str(path)])[0], lambda n: None)
    assert all(len(line) <= MAX_LINE_BYTES for line in lines_of(blocks))
    close()


def test_the_scanner_drops_complete_lines_over_the_limit() -> None:
    from hopwatch.report.aggregate import Partial
    from hopwatch.report.scan import Scanner

    scanner = Scanner(Partial())
    scanner.feed(b"ok\n" + b"x" * (MAX_LINE_BYTES + 1) + b"\nhopwatch.request\n")
    assert scanner.partial.lines == 3 and scanner.partial.skipped == {"line_too_long": 1}
    assert scanner.partial.other_lines == 2


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 40), min_size=1, max_size=40),
    st.lists(st.integers(0, 2000), max_size=5),
)
def test_byte_ranges_cover_every_line_exactly_once(
    tmp_path_factory: pytest.TempPathFactory, lengths: list[int], cuts: list[int]
) -> None:
    path = tmp_path_factory.mktemp("ranges") / "log"
    lines = [f"{i}:".encode() + b"x" * n for i, n in enumerate(lengths)]
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(data)
    source = resolve([str(path)])[0]
    points = sorted({0, *(c % (len(data) + 1) for c in cuts), len(data)})
    got = []
    for start, end in itertools.pairwise(points):
        blocks, close = read_source(source, lambda n: None, start, end)
        got += lines_of(blocks)
        close()
    assert got == lines


def test_plan_splits_plain_files_and_keeps_gzip_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_PIECE_BYTES", 100)
    sources = [
        Source("a", "a", 1000, ""),
        Source("b.gz", "b.gz", 100, "gzip"),
        Source("c", "c", 3000, ""),
        Source("<stdin>", None, 0, "", stream=io.BytesIO()),
    ]
    own, shared = parallel.plan(sources, 2)
    assert [piece.source.name for piece in own] == ["<stdin>"]
    assert sum(1 for p in shared if p.source.name == "b.gz") == 1
    assert len(shared) > 4  # a few pieces per process
    for name, size in (("a", 1000), ("c", 3000)):
        ranges = sorted(
            (p.start, p.end if p.end is not None else size) for p in shared if p.source.name == name
        )
        assert ranges[0][0] == 0 and ranges[-1][1] == size
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))


def test_resolve_walks_directories_globs_and_dedupes(tmp_path: Path) -> None:
    (tmp_path / "pods" / "web-1").mkdir(parents=True)
    (tmp_path / "pods" / ".hidden").mkdir()
    for name in ("pods/web-1/0.log", "pods/b.log", "pods/.secret", "pods/.hidden/x.log", "c.log"):
        (tmp_path / name).write_text("x\n")
    names = [
        s.name
        for s in resolve(
            [str(tmp_path / "pods"), str(tmp_path / "*.log"), str(tmp_path / "pods" / "b.log"), "-"]
        )
    ]
    assert names == [
        str(tmp_path / "pods" / "b.log"),
        str(tmp_path / "pods" / "web-1" / "0.log"),
        str(tmp_path / "c.log"),
        "<stdin>",
    ]


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("missing.log", "cannot read missing.log: no such file or directory"),
        ("nothing-*.log", "no files match nothing-*.log"),
    ],
)
def test_resolve_names_what_is_missing(
    argument: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=re.escape(message)):
        resolve([argument])


def test_resolve_reports_broken_links_and_unreadable_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "link.log").symlink_to(tmp_path / "gone.log")
    with pytest.raises(InputError, match="broken symbolic link"):
        resolve([str(tmp_path / "link.log")])
    (tmp_path / "secret.log").write_text("x\n")
    real_open = open

    def deny(path: object, *args: object, **kwargs: object) -> object:
        if str(path).endswith("secret.log"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", deny)
    with pytest.raises(InputError, match=r"cannot read .*secret.log: Permission denied"):
        resolve([str(tmp_path / "secret.log")])


def test_gzip_is_recognised_by_its_magic_bytes(tmp_path: Path) -> None:
    text = "\n".join(canonical_lines(10)) + "\n"
    (tmp_path / "rotated.1").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "plain.gz").write_text(text)  # a plain file with a misleading name
    sources = resolve([str(tmp_path / "rotated.1"), str(tmp_path / "plain.gz")])
    assert [s.gzip for s in sources] == [True, False]
    partial = parallel.read_all(sources, Filters(), jobs=1)
    assert partial.records == 20 and partial.files == 2


def test_a_gzip_file_cut_short_keeps_what_it_held(tmp_path: Path) -> None:
    data = gzip.compress(("\n".join(canonical_lines(200)) + "\n").encode())
    (tmp_path / "cut.gz").write_bytes(data[: len(data) * 2 // 3])
    partial = parallel.read_all(resolve([str(tmp_path / "cut.gz")]), Filters(), jobs=1)
    assert 0 < partial.records < 200
    assert partial.truncated_inputs == [str(tmp_path / "cut.gz")]


def test_corrupt_gzip_data_is_an_input_error(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(("\n".join(canonical_lines(50)) + "\n").encode()))
    data[40:60] = b"\x00" * 20
    (tmp_path / "bad.gz").write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"cannot read .*bad.gz: corrupt gzip data"):
        parallel.read_all(resolve([str(tmp_path / "bad.gz")]), Filters(), jobs=1)


# --- streams: FIFOs, process substitution, /dev/stdin, a closed stdin -----------------------
SRC = Path(__file__).resolve().parents[2] / "src"
DECOMPRESSOR = inputs.decompressor
LOG = ("\n".join(canonical_lines(30)) + "\n").encode()


def _report(command: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """``hopwatch report`` run by bash, as a user types it (process substitution, 0<&-).

    ``hopwatch`` is a shell function that runs this interpreter's ``-m hopwatch``, its
    path quoted (an interpreter in a checkout whose path has a space)."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    hopwatch = f'hopwatch() {{ {shlex.quote(sys.executable)} -m hopwatch "$@"; }}\n'
    return subprocess.run(
        ["bash", "-c", hopwatch + command],
        input=stdin,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )


def _records(done: subprocess.CompletedProcess[bytes]) -> int:
    assert done.returncode == 0 and done.stderr == b"", done.stderr.decode()
    return int(json.loads(done.stdout)["summary"]["records"])


@pytest.mark.parametrize("gzipped", [False, True])
def test_process_substitution_is_read_once_without_seeking(tmp_path: Path, gzipped: bool) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(gzip.compress(LOG) if gzipped else LOG)
    done = _report(f"hopwatch report <(cat {shlex.quote(str(path))}) --format json --jobs 2")
    assert _records(done) == 30


def test_dev_stdin_on_a_pipe_and_on_a_file(tmp_path: Path) -> None:
    assert _records(_report("hopwatch report /dev/stdin --format json", stdin=LOG)) == 30
    path = tmp_path / "app.log"
    path.write_bytes(LOG)
    assert _records(_report(f"hopwatch report /dev/stdin --format json < {shlex.quote(str(path))}")) == 30


def test_stdin_redirected_from_a_file_also_named_is_read_once(tmp_path: Path) -> None:
    """``-`` on ``< app.log`` is app.log (its device and inode), as /dev/stdin is: named
    as well, either way round, the file is read once; a pipe on stdin is always read."""
    path = tmp_path / "app.log"
    path.write_bytes(LOG)
    other = tmp_path / "other.log"
    other.write_bytes(LOG)
    log = shlex.quote(str(path))

    def summary(command: str, stdin: bytes | None = None) -> tuple[int, bool, int]:
        done = _report(command + " --format json", stdin=stdin)
        assert done.returncode == 0 and done.stderr == b"", done.stderr.decode()
        s = json.loads(done.stdout)["summary"]
        return s["files"], s["stdin"], s["records"]

    assert summary(f"hopwatch report {log}") == (1, False, 30)
    assert summary(f"hopwatch report {log} /dev/stdin < {log}") == (1, False, 30)
    assert summary(f"hopwatch report {log} - < {log}") == (1, False, 30)
    assert summary(f"hopwatch report - {log} < {log}") == (0, True, 30)
    assert summary(f"hopwatch report - - {log} {log} < {log}") == (0, True, 30)
    # another file on stdin, and a pipe, are inputs of their own
    assert summary(f"hopwatch report {log} - < {shlex.quote(str(other))}") == (1, True, 60)
    assert summary(f"hopwatch report {log} -", stdin=LOG) == (1, True, 60)
    assert summary(f"cat {log} | hopwatch report {log} -") == (1, True, 60)


def test_a_fifo_is_read_as_a_stream(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    big = LOG * 40  # more than one pipe buffer: the writer blocks until it is read

    def write() -> None:
        with open(fifo, "wb") as out:
            out.write(gzip.compress(big))

    writer = threading.Thread(target=write)
    writer.start()
    try:
        partial = parallel.read_all(resolve([str(fifo)]), Filters(), jobs=2)
    finally:
        writer.join(timeout=30)
    assert partial.records == 30 * 40 and partial.lines == 30 * 40


def test_stdin_closed_is_one_clear_line() -> None:
    done = _report("hopwatch report - 0<&-")
    assert done.returncode == 2 and done.stdout == b""
    assert (
        done.stderr.decode() == "hopwatch report: cannot read <stdin>: standard input is closed\n"
    )
    done = _report("hopwatch report 0<&-")  # no path: stdin would be read, if it were open
    assert done.returncode == 2 and done.stderr.decode().count("\n") == 1
    assert b"Traceback" not in done.stderr


def test_gzip_reads_the_same_with_isal_and_with_zlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("isal", reason="the fast-gzip extra is installed by dev.py")
    path = tmp_path / "app.log.gz"
    data = gzip.compress(LOG) + gzip.compress(LOG[: len(LOG) // 2])  # two members, cut short
    path.write_bytes(data[:-20])
    isal_partial = parallel.read_all(resolve([str(path)]), Filters(), jobs=1)
    assert inputs.decompressor().__name__ == "isal.isal_zlib"
    monkeypatch.setitem(sys.modules, "isal", None)  # as if the extra were not installed
    assert inputs.decompressor().__name__ == "zlib"
    zlib_partial = parallel.read_all(resolve([str(path)]), Filters(), jobs=1)
    assert 30 < isal_partial.records == zlib_partial.records < 30 + 15  # the cut line is lost
    assert isal_partial.truncated_inputs == zlib_partial.truncated_inputs == [str(path)]


@pytest.mark.parametrize("isal", [True, False])
@given(
    st.lists(st.binary(max_size=3000), min_size=1, max_size=4),
    st.lists(st.integers(0, 3), max_size=3),
)
@settings(max_examples=40, deadline=None)
def test_gunzip_reads_every_member_and_any_padding(
    isal: bool, members: list[bytes], zeros: list[int]
) -> None:
    if not isal:
        inputs.decompressor = lambda: zlib  # type: ignore[assignment]
    try:
        data = b"".join(
            gzip.compress(m) + b"\0" * (zeros[i] if i < len(zeros) else 0)
            for i, m in enumerate(members)
        )
        stream = io.BytesIO(data)
        read = inputs.gunzip_reader(stream.read)
        out = b"".join(iter(lambda: read(700), b""))
        assert out == b"".join(members)
        padding = zeros[len(members) - 1] if len(zeros) >= len(members) else 0
        cut = io.BytesIO(data[: len(data) - padding - 5])  # inside the last member's trailer
        read = inputs.gunzip_reader(cut.read)
        got = b""
        with pytest.raises(EOFError):
            while chunk := read(700):
                got += chunk
        assert b"".join(members).startswith(got)
    finally:
        inputs.decompressor = DECOMPRESSOR  # type: ignore[assignment]


def test_read_ahead_hands_over_every_block_in_order_then_the_error() -> None:
    chunks = [b"a" * 10, b"b" * 3, b"c"]

    def read(size: int) -> bytes:
        if chunks:
            return chunks.pop(0)
        raise EOFError("cut short")

    ahead = inputs.ReadAhead(read)
    assert [ahead.read(1), ahead.read(1), ahead.read(1)] == [b"a" * 10, b"b" * 3, b"c"]
    with pytest.raises(EOFError, match="cut short"):
        ahead.read(1)
    assert ahead.read(1) == b""
    ahead.close()


def test_read_ahead_stops_when_closed_early() -> None:
    served = []

    def read(size: int) -> bytes:
        served.append(size)
        return b"x" * 8  # endless: the thread would read forever

    ahead = inputs.ReadAhead(read)
    assert ahead.read(1) == b"x" * 8
    ahead.close()  # returns: the thread stops although its queue is full
    assert not ahead._thread.is_alive()
    assert len(served) <= inputs.ReadAhead.DEPTH + 3  # it read ahead a few blocks, no more
