"""A line longer than 16 KB that a container runtime wrote in parts is read whole: docker's
json-file driver ({"log": "<part>", ...}, the last part's log ending with "\\n") and CRI
files ("<time> stdout P <part>" ... "<time> stdout F <last part>"), per file and per
stream; a line whose parts cannot be joined is counted as before."""

from __future__ import annotations

import functools
import gzip
import itertools
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hopwatch.report import inputs
from hopwatch.report.aggregate import Partial
from hopwatch.report.inputs import read_source, resolve
from hopwatch.report.parse import MAX_LINE_BYTES, PART_BYTES
from hopwatch.report.scan import Scanner
from tests.report.conftest import Run
from tests.report.samples import line

RunCli = Callable[..., Run]
TIME = "2026-11-24T10:00:00.123456789Z"


def long_line(number: int, size: int = 40_000) -> str:
    """A hopwatch line of about ``size`` bytes (many EXTRA_FIELDS), with quotes and
    backslashes all along it, so that the parts are cut inside escapes too."""
    pad = ('a"b\\c/' * (size // 6))[:size]
    return line(request_id=f"long{number}", route=f"/long/{number % 3}/", extra_pad=pad)


def pieces(text: str, size: int = PART_BYTES) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def docker(text: str, stream: str = "stdout") -> list[str]:
    """The json-file driver's lines for one logged line."""
    parts = pieces(text + "\n")
    return [
        json.dumps({"log": part, "stream": stream, "time": TIME}, separators=(",", ":"))
        for part in parts
    ]


def cri(text: str, stream: str = "stdout") -> list[str]:
    parts = pieces(text)
    return [
        f"{TIME} {stream} {'F' if i == len(parts) - 1 else 'P'} {part}"
        for i, part in enumerate(parts)
    ]


def interleaved(wrap: Callable[..., list[str]], count: int) -> Iterator[str]:
    """``count`` long lines on stdout, with stderr lines (a short hopwatch line, another
    logger's) written between their parts, and short hopwatch lines after each."""
    for number in range(count):
        parts = wrap(long_line(number))
        yield parts[0]
        yield from wrap("Traceback: not a hopwatch line", "stderr")
        yield from wrap(line(request_id=f"err{number}"), "stderr")
        yield from parts[1:]
        yield from wrap(line(request_id=f"short{number}"))


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(text + "\n" for text in lines), encoding="utf-8")
    return path


def _summary(run_cli: RunCli, path: Path) -> dict[str, Any]:
    result = run_cli(path, "--format", "json")
    assert result.status == 0, result.err
    summary: dict[str, Any] = json.loads(result.out)["summary"]
    return summary


@pytest.mark.parametrize("wrap", [docker, cri])
def test_the_parts_of_a_long_line_are_joined(
    run_cli: RunCli, tmp_path: Path, implementation: str, wrap: Callable[..., list[str]]
) -> None:
    count = 40  # 40 lines of 3 parts: about 2 MB, so parts fall on each side of a block end
    log = _write(tmp_path / "app.log", list(interleaved(wrap, count)))
    summary = _summary(run_cli, log)
    assert summary["records"] == 3 * count  # the long lines, the short ones, the stderr ones
    assert summary["skipped"] == 0, summary["skipped_by_reason"]
    assert summary["other_lines"] == count  # the stderr tracebacks; a joined line is one line
    assert summary["lines"] == 4 * count


@pytest.mark.parametrize("wrap", [docker, cri])
def test_parts_that_cannot_be_joined_are_counted_as_before(
    run_cli: RunCli, tmp_path: Path, implementation: str, wrap: Callable[..., list[str]]
) -> None:
    first, *rest = wrap(long_line(1))
    orphan = wrap(long_line(2))[-1]  # a last part whose first parts are not in the file
    # the first part of a line whose last part never came (the end of the file)
    log = _write(tmp_path / "app.log", [orphan, line(request_id="short"), *rest[:-1], first])
    summary = _summary(run_cli, log)
    assert summary["records"] == 1
    # the orphan last part, a hopwatch line's tail: torn on a CRI line, which ends as the
    # line ends; inside docker's envelope it does not, and is another line
    torn = {"torn": 1} if wrap is cri else {}
    assert summary["skipped_by_reason"] == {"truncated": 1, **torn}
    assert summary["lines"] == 2 + len(rest)


@pytest.mark.parametrize("wrap", [docker, cri])
def test_parts_of_a_line_over_the_limit_are_counted_as_before(
    run_cli: RunCli, tmp_path: Path, implementation: str, wrap: Callable[..., list[str]]
) -> None:
    huge = wrap(long_line(1, size=MAX_LINE_BYTES + PART_BYTES))
    log = _write(tmp_path / "app.log", [*huge, line(request_id="short")])
    summary = _summary(run_cli, log)
    assert summary["records"] == 1
    # the first part, as before; the last, a hopwatch line's tail, torn on a CRI line
    torn = {"torn": 1} if wrap is cri else {}
    assert summary["skipped_by_reason"] == {"truncated": 1, **torn}


def too_long(scanner: Scanner, count: int) -> None:
    scanner.skip_lines("line_too_long", count)


@pytest.mark.parametrize("wrap", [docker, cri])
def test_byte_ranges_keep_a_split_line_in_one_range(
    tmp_path: Path, implementation: str, wrap: Callable[..., list[str]]
) -> None:
    log = _write(tmp_path / "app.log", list(interleaved(wrap, 6)))
    source = resolve([str(log)])[0]
    size = log.stat().st_size
    step = PART_BYTES // 3 + 1  # cuts inside parts, at their ends, and between lines
    for cut in itertools.chain(range(1, size, step), [size // 2]):  # (about 50 cuts)
        scanner = Scanner(Partial())
        for start, end in ((0, cut), (cut, None)):
            blocks, close = read_source(source, functools.partial(too_long, scanner), start, end)
            for buffer, stop in blocks:
                scanner.feed(buffer, stop)
            close()
        partial = scanner.finish()
        assert (partial.records, partial.skipped, partial.lines) == (18, {}, 24), cut


def _cross(wrap: Callable[..., list[str]]) -> tuple[list[str], list[str]]:
    """stderr's whole line whose parts stdout's open line interleaves, and stdout's last
    part: stderr P, stdout P, stderr P, stderr F, stdout P (then stdout's F)."""
    err = wrap(long_line(1, size=30_000), "stderr")
    out = wrap(long_line(2, size=30_000))
    assert len(err) == len(out) == 3
    return [err[0], out[0], err[1], err[2], out[1]], [out[2]]


@pytest.mark.parametrize("wrap", [docker, cri])
def test_a_line_whose_parts_an_open_line_interleaves_is_read_at_the_end_of_the_file(
    run_cli: RunCli, tmp_path: Path, implementation: str, wrap: Callable[..., list[str]]
) -> None:
    """stdout's last part was lost (the container was killed): stderr's line is whole and
    is read; the reader's cut fell between its parts (0 records)."""
    tail, _rest = _cross(wrap)
    summary = _summary(run_cli, _write(tmp_path / "app.log", tail))
    assert summary["records"] == 1
    assert summary["lines"] == 3  # stderr's joined line, stdout's two parts as they are
    assert summary["skipped_by_reason"] == {"truncated": 1}  # stdout's first part
    assert summary["other_lines"] == 1  # its second part


def _read_with_a_first_read_of(
    head: list[str],
    rest: list[str],
    run_cli: RunCli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    """The report's summary of the lines ``head`` then ``rest``, its first read ending
    exactly after ``head``."""
    monkeypatch.setattr(inputs, "BLOCK_BYTES", sum(len(text) + 1 for text in head))
    return _summary(run_cli, _write(tmp_path / "app.log", [*head, *rest]))


@pytest.mark.parametrize("wrap", [docker, cri])
def test_a_line_whose_parts_an_open_line_interleaves_is_read_at_a_buffers_end(
    run_cli: RunCli,
    tmp_path: Path,
    implementation: str,
    monkeypatch: pytest.MonkeyPatch,
    wrap: Callable[..., list[str]],
) -> None:
    """The five lines end the first read and stdout's last part begins the next: both
    lines are read (stderr's was lost)."""
    tail, rest = _cross(wrap)
    head = [*wrap(line(request_id="short")), *tail]
    summary = _read_with_a_first_read_of(head, rest, run_cli, tmp_path, monkeypatch)
    assert summary["records"] == 3
    assert summary["lines"] == 3
    assert summary["skipped"] == 0, summary["skipped_by_reason"]


def test_a_line_naming_a_stream_in_its_text_does_not_hide_that_streams_open_parts(
    run_cli: RunCli, tmp_path: Path, implementation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stdout's line is open (P, P) when a stderr line whose text says " stdout " ends
    the first read, and its last part begins the next: stdout's parts are looked for past
    the stderr line, and its line is read whole (not as parts, the first truncated)."""
    parts = cri(long_line(1, size=30_000))
    assert len(parts) == 3
    between = f"{TIME} stderr F warning: the worker wrote to stdout and stderr"
    head = [*cri(line(request_id="short")), *parts[:2], between]
    summary = _read_with_a_first_read_of(head, parts[2:], run_cli, tmp_path, monkeypatch)
    assert (summary["records"], summary["other_lines"], summary["lines"]) == (2, 1, 3)
    assert summary["skipped"] == 0, summary["skipped_by_reason"]


def mixed(wrap: Callable[..., list[str]], count: int) -> tuple[list[str], int]:
    """``count`` lines (long ones in three parts, short ones) on stdout and stderr, their
    parts interleaved in runs of one to three, and the number of records among them."""
    rng = random.Random(82)
    queues: dict[str, list[str]] = {"stdout": [], "stderr": []}
    for number in range(count):
        stream = rng.choice(["stdout", "stderr"])
        text = long_line(number) if rng.random() < 0.6 else line(request_id=f"s{number}")
        queues[stream] += wrap(text, stream)
    lines: list[str] = []
    while queues["stdout"] or queues["stderr"]:
        stream = rng.choice([name for name, parts in queues.items() if parts])
        take = rng.randint(1, 3)
        lines += queues[stream][:take]
        del queues[stream][:take]
    return lines, count


@pytest.mark.parametrize("wrap", [docker, cri])
def test_interleaved_parts_are_read_exactly_whatever_the_buffers_and_ranges(
    run_cli: RunCli,
    tmp_path: Path,
    implementation: str,
    monkeypatch: pytest.MonkeyPatch,
    wrap: Callable[..., list[str]],
) -> None:
    """Every whole line is read once, however the reads and the --jobs ranges fall
    between the parts (stdin, gzip and a plain file are read in blocks)."""
    from hopwatch.report import parallel

    monkeypatch.setattr(inputs, "BLOCK_BYTES", 48 * 1024)  # about 40 reads
    monkeypatch.setattr(parallel, "MIN_PIECE_BYTES", 256 * 1024)  # 8 ranges
    lines, count = mixed(wrap, 100)
    log = _write(tmp_path / "app.log", lines)
    data = log.read_bytes()
    (tmp_path / "app.log.gz").write_bytes(gzip.compress(data))
    runs = {
        "plain": run_cli(log, "--format", "json"),
        "jobs 1": run_cli(log, "--format", "json", "--jobs", "1"),
        "jobs 2": run_cli(log, "--format", "json", "--jobs", "2"),
        "gzip": run_cli(tmp_path / "app.log.gz", "--format", "json"),
        "stdin": run_cli("-", "--format", "json", stdin=data),
    }
    got = {}
    for name, result in runs.items():
        assert result.status == 0, (name, result.err)
        summary = json.loads(result.out)["summary"]
        got[name] = (summary["records"], summary["lines"], summary["skipped_by_reason"])
    assert got == dict.fromkeys(runs, (count, count, {}))
