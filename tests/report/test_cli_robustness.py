"""``hopwatch report`` on hostile destinations and inputs: one line on stderr, the
documented exit status, no traceback, and nothing damaged (docs/report.md)."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import json
import lzma
import os
import select
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import into_a_full_file, with_the_reader_gone
from tests.report.conftest import Run
from tests.report.samples import canonical_lines, line

RunCli = Callable[..., Run]

SRC = Path(__file__).resolve().parents[2] / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC)}


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "app.log"
    path.write_text("\n".join(canonical_lines(12)) + "\n", encoding="utf-8")
    return path


def _drain(fd: int) -> bytes:
    """What is waiting in a FIFO opened O_RDWR | O_NONBLOCK, without waiting for more."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


# --- -o FILE: as a shell's > FILE ------------------------------------------------------------


def test_output_to_a_fifo_writes_into_it_and_keeps_it(
    run_cli: RunCli, log: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    # a reader that is there before the report opens the FIFO (O_RDWR: opening does not
    # wait for a writer; the report, far below the pipe's 64 KB, never waits either)
    reader = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        result = run_cli(log, "--format", "json", "-o", fifo)
        written = _drain(reader)
    finally:
        os.close(reader)
    assert (result.status, result.out, result.err) == (0, "", f"hopwatch report: wrote {fifo}\n")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # not replaced by a regular file
    assert json.loads(written)["summary"]["records"] == 12
    assert sorted(os.listdir(tmp_path)) == ["app.log", "out.fifo"]  # no temporary file left


def test_output_through_a_symbolic_link_writes_its_target_and_keeps_the_link(
    run_cli: RunCli, log: Path, tmp_path: Path
) -> None:
    target = tmp_path / "target.json"
    target.write_text("old\n")
    link = tmp_path / "link.json"
    link.symlink_to(target.name)  # relative, as ln -s target.json link.json
    result = run_cli(log, "--format", "json", "-o", link)
    assert (result.status, result.err) == (0, f"hopwatch report: wrote {link}\n")
    assert link.is_symlink() and os.readlink(link) == "target.json"
    assert json.loads(target.read_text())["summary"]["records"] == 12
    assert sorted(os.listdir(tmp_path)) == ["app.log", "link.json", "target.json"]


def test_output_through_a_dangling_link_creates_its_target(
    run_cli: RunCli, log: Path, tmp_path: Path
) -> None:
    (tmp_path / "reports").mkdir()
    link = tmp_path / "latest.json"
    link.symlink_to("reports/today.json")
    result = run_cli(log, "--format", "json", "-o", link)
    assert (result.status, result.err) == (0, f"hopwatch report: wrote {link}\n")
    assert link.is_symlink()
    report = json.loads((tmp_path / "reports" / "today.json").read_text())
    assert report["summary"]["records"] == 12


def test_output_to_a_symbolic_link_loop_is_refused_and_left_alone(
    run_cli: RunCli, log: Path, tmp_path: Path
) -> None:
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    result = run_cli(log, "-o", tmp_path / "loop1")
    assert (result.status, result.out) == (2, "")
    assert result.err == f"hopwatch report: cannot write {tmp_path}/loop1: symbolic link loop\n"
    assert os.readlink(tmp_path / "loop1") == "loop2"


def test_output_to_dev_null_needs_no_writable_directory(
    run_cli: RunCli, log: Path, tmp_path: Path
) -> None:
    # first through a link in tmp_path: a report that replaced the file named (not writing
    # into it) fails here, on the link, before it could touch /dev/null itself
    link = tmp_path / "null"
    link.symlink_to(os.devnull)
    result = run_cli(log, "-o", link)
    assert (result.status, result.err) == (0, f"hopwatch report: wrote {link}\n")
    assert link.is_symlink()
    assert sorted(os.listdir(tmp_path)) == ["app.log", "null"]
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    # /dev is not writable for a user (root may write it: written into all the same)
    result = run_cli(log, "--format", "json", "-o", os.devnull)
    assert (result.status, result.out) == (0, "")
    assert result.err == f"hopwatch report: wrote {os.devnull}\n"
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o604, 0o444], ids=oct)
def test_output_over_a_file_keeps_its_mode(
    run_cli: RunCli, log: Path, tmp_path: Path, umask_022: None, mode: int
) -> None:
    """As ``> FILE``: a private report stays private (a read-only one can be replaced
    only by root, who may, as with > FILE)."""
    out = tmp_path / "p.md"
    out.write_text("old\n")
    out.chmod(mode)
    if mode == 0o444 and os.geteuid() != 0:
        pytest.skip("only root writes a read-only file")
    result = run_cli(log, "--format", "markdown", "-o", out)
    assert (result.status, result.err) == (0, f"hopwatch report: wrote {out}\n")
    assert out.read_text().startswith("### hopwatch report: worst routes by overhead\n")
    assert oct(stat.S_IMODE(out.stat().st_mode)) == oct(mode)
    assert os.listdir(tmp_path) == ["app.log", "p.md"]  # no temporary file left


def test_output_through_a_link_keeps_the_mode_of_its_target(
    run_cli: RunCli, log: Path, tmp_path: Path, umask_022: None
) -> None:
    target = tmp_path / "private.md"
    target.write_text("old\n")
    target.chmod(0o600)
    link = tmp_path / "link.md"
    link.symlink_to(target.name)
    result = run_cli(log, "--format", "markdown", "-o", link)
    assert result.status == 0, result.err
    assert link.is_symlink() and oct(stat.S_IMODE(target.stat().st_mode)) == oct(0o600)


def test_output_to_a_new_file_gets_the_mode_open_gives(
    run_cli: RunCli, log: Path, tmp_path: Path, umask_022: None
) -> None:
    out = tmp_path / "new.md"
    result = run_cli(log, "--format", "markdown", "-o", out)
    assert result.status == 0, result.err
    assert oct(stat.S_IMODE(out.stat().st_mode)) == oct(0o644)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_output_over_a_file_keeps_its_owner_and_group_when_root(
    run_cli: RunCli, log: Path, tmp_path: Path, umask_022: None
) -> None:
    out = tmp_path / "p.md"
    out.write_text("old\n")
    os.chown(out, 12345, 23456)
    out.chmod(0o640)
    result = run_cli(log, "--format", "markdown", "-o", out)
    assert result.status == 0, result.err
    info = out.stat()
    assert (info.st_uid, info.st_gid, oct(stat.S_IMODE(info.st_mode))) == (12345, 23456, oct(0o640))


def test_output_naming_an_input_is_refused_and_the_log_kept(
    run_cli: RunCli, log: Path, tmp_path: Path
) -> None:
    """As cat's "input file is output file": by device and inode, however it is named."""
    before = log.read_bytes()
    hard = tmp_path / "hard.log"
    os.link(log, hard)
    cases = [
        ([log, "-o", log], f"cannot write {log}: it is one of the inputs"),
        ([tmp_path / "*.log", "-o", log], f"cannot write {log}: it is one of the inputs"),
        ([tmp_path, "-o", log], f"cannot write {log}: it is one of the inputs"),
        ([log, "-o", hard], f"cannot write {hard}: it is one of the inputs (read as {log})"),
    ]
    for args, message in cases:
        result = run_cli(*args)
        assert (result.status, result.out, result.err) == (2, "", f"hopwatch report: {message}\n")
        assert log.read_bytes() == before
    result = run_cli("-", "-o", log, stdin=before)  # not the same file: it holds records
    assert result.status == 2 and log.read_bytes() == before


def test_output_named_by_stdin_redirected_from_it_is_refused(log: Path, tmp_path: Path) -> None:
    """``hopwatch report -o app.log < app.log``: stdin's own file (its device and inode,
    from a real redirection; run_cli's stand-in stdin has none) is one of the inputs."""
    before = log.read_bytes()
    with open(log, "rb") as stdin:
        done = subprocess.run(
            [sys.executable, "-m", "hopwatch", "report", "--format", "markdown", "-o", "app.log"],
            stdin=stdin,
            cwd=tmp_path,
            env=ENV,
            capture_output=True,
            timeout=60,
            check=False,
        )
    message = "hopwatch report: cannot write app.log: it is one of the inputs (read as <stdin>)\n"
    assert (done.returncode, done.stdout, done.stderr.decode()) == (2, b"", message)
    assert log.read_bytes() == before


def _assert_refused_as_a_log(run_cli: RunCli, first: Path, other: Path, content: Any) -> None:
    """``-o first`` before the log ``other`` is refused (one line, status 2) and ``first``,
    which held ``content`` (bytes or text), is left as it was."""
    result = run_cli("-o", first, other)
    assert (result.status, result.out) == (2, ""), first.name
    assert result.err == (
        f"hopwatch report: cannot write {first}: it holds hopwatch records, a log, not a"
        " report (-o FILE takes the argument after it: a glob there names a log)\n"
    )
    kept = first.read_bytes() if isinstance(content, bytes) else first.read_text()
    assert kept == content


def test_output_before_an_expanded_glob_does_not_replace_the_first_log(
    run_cli: RunCli, log: Path, tmp_path: Path
) -> None:
    """``hopwatch report -o logs/*.log``: the shell makes the first log -o's FILE."""
    other = tmp_path / "b.log"
    other.write_text("\n".join(canonical_lines(5)) + "\n")
    compressed = tmp_path / "c.log.gz"
    compressed.write_bytes(gzip.compress(b"not even records\n"))
    for first in (log, compressed):
        before = first.read_bytes()
        _assert_refused_as_a_log(run_cli, first, other, before)


def test_output_before_a_glob_does_not_replace_a_mixed_log_whose_records_come_later(
    run_cli: RunCli, log: Path, tmp_path: Path
) -> None:
    """A mixed log's first record can follow start-up lines: it is a log all the same if
    the record's line starts in the first 64 KB, however many lines come before it."""
    records = log.read_bytes()
    other = tmp_path / "b.log"
    other.write_text("\n".join(canonical_lines(5)) + "\n")
    boot = b"[2026-11-24 10:00:00 +0000] [42] [INFO] Booting worker with pid: 7\n"
    straddle = (65536 - 100) // len(boot)
    filler = b"x" * (65536 - 100 - len(boot) * straddle - 1) + b"\n"
    cases = {
        "one.log": boot + records,
        "gunicorn.log": boot * 300 + records,  # the first record at byte 20700
        # a record from 100 bytes before the 64 KB to past them
        "edge.log": boot * straddle + filler + records,
    }
    for name, content in cases.items():
        first = tmp_path / name
        first.write_bytes(content)
        _assert_refused_as_a_log(run_cli, first, other, content)
    assert cases["edge.log"].index(b"{") == 65536 - 100


def test_output_before_a_glob_does_not_replace_a_log_whose_first_record_is_long(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """A record's line that starts in the first 64 KB is read to its end, up to the
    report's own limit (1 MiB): a detail line of a request with 700 hops, logged by a
    real ASGI request, is about 260 KB from byte 0. A longer line is no record to the
    report, nor to -o."""
    from django.test import override_settings

    from hopwatch.report.parse import MAX_LINE_BYTES
    from tests.helpers import asgi_request

    first = tmp_path / "hops.log"
    settings = {"OUTPUT": str(first), "DETAIL": True, "DETAIL_LIMIT": 1000}
    with override_settings(HOPWATCH=settings):
        asgi_request("/hops/700/")
    content = first.read_bytes()
    record = json.loads(content)
    assert record["hops"] >= 700 and len(record["detail"]) == record["hops"]
    assert 4 * 65536 < len(content) < MAX_LINE_BYTES and content.count(b"\n") == 1
    other = tmp_path / "b.log"
    other.write_text("\n".join(canonical_lines(5)) + "\n")
    _assert_refused_as_a_log(run_cli, first, other, content)
    # too long for the report (it skips the line unread): replaced by the report
    too_long = tmp_path / "too_long.log"
    padded = json.dumps({**record, "pad": "x" * MAX_LINE_BYTES}).encode() + b"\n"
    too_long.write_bytes(padded + content)  # the second line starts past the 64 KB
    assert run_cli(too_long, "--format", "json").out.count('"line_too_long": 1') == 1
    assert run_cli(other, "--format", "json", "-o", too_long).status == 0
    assert json.loads(too_long.read_text())["summary"]["records"] == 5


def test_output_before_a_glob_does_not_replace_a_split_or_utf16_log(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """A log whose first record a container runtime split in 16 KB parts (CRI: ``P``
    lines, then ``F``; docker's json-file: ``{"log": ...}`` objects), which the report
    joins, and a UTF-16 log (PowerShell's ``>``), which it refuses to read, are logs."""
    from hopwatch.report.parse import PART_BYTES
    from tests.helpers import asgi_request

    logged = tmp_path / "hops.log"
    from django.test import override_settings

    with override_settings(HOPWATCH={"OUTPUT": str(logged), "DETAIL": True}):
        asgi_request("/hops/120/")
    text = logged.read_text().rstrip("\n")
    assert 2 * PART_BYTES < len(text) < 4 * PART_BYTES
    parts = [text[i : i + PART_BYTES] for i in range(0, len(text), PART_BYTES)]
    time = "2026-12-06T10:00:00.000000000Z"
    cri = "".join(
        f"{time} stdout {'F' if i == len(parts) - 1 else 'P'} {part}\n"
        f"{time} stderr F [INFO] a line of another stream between the parts\n"
        for i, part in enumerate(parts)
    )
    docker = "".join(
        json.dumps({"log": part + ("\n" if i == len(parts) - 1 else ""), "stream": "stdout",
                    "time": time}, separators=(",", ":")) + "\n"
        for i, part in enumerate(parts)
    )  # fmt: skip
    # each part's JSON escapes the record's quotes: the parts are longer than 16 KB
    assert all(len(row) > PART_BYTES for row in docker.splitlines()[:-1])
    other = tmp_path / "b.log"
    other.write_text("\n".join(canonical_lines(5)) + "\n")
    cases = {
        "cri.log": cri.encode(),
        "docker.log": docker.encode(),
        "utf16.log": (text + "\r\n").encode("utf-16"),
        "utf16be.log": b"\xfe\xff" + (text + "\n").encode("utf-16-be"),
        "utf32.log": (text + "\n").encode("utf-32"),
    }
    for name, content in cases.items():
        first = tmp_path / name
        first.write_bytes(content)
        if not name.startswith("utf"):  # the report reads the split record as one
            assert json.loads(run_cli(first, "--format", "json").out)["summary"]["records"] == 1
        _assert_refused_as_a_log(run_cli, first, other, content)


def test_output_over_a_report_or_a_new_file_is_written(
    run_cli: RunCli, log: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.json"
    for _ in range(2):  # new, then over the report written the first time
        result = run_cli(log, "--format", "json", "-o", out)
        assert result.status == 0 and json.loads(out.read_text())["summary"]["records"] == 12
    page = tmp_path / "page.html"
    for _ in range(2):
        assert run_cli(log, "--format", "html", "-o", page).status == 0
    trace = tmp_path / "trace.json"
    detail = tmp_path / "detail.log"
    detail.write_text(line(detail=[]) + "\n")
    assert run_cli(log, "--format", "trace", "-o", trace).status in (0, 1)
    trace.write_text(json.dumps({"traceEvents": [{"cat": "hopwatch.request", "name": "x"}]}))
    assert run_cli(log, "--format", "json", "-o", trace).status == 0


# --- standard output that cannot be written ----------------------------------------------------


@pytest.mark.parametrize("format_name", ["json", "text", "rich", "csv", "markdown", "html"])
def test_a_failed_write_to_stdout_is_one_line_and_status_2(
    log: Path, tmp_path: Path, format_name: str
) -> None:
    if format_name == "rich":
        pytest.importorskip("rich")
    done = into_a_full_file(
        [sys.executable, "-m", "hopwatch", "report", str(log), "--format", format_name],
        tmp_path / "stdout",
        env=ENV,
        timeout=60,
    )
    assert done.stderr.decode() == (
        "hopwatch report: cannot write the report to standard output: File too large\n"
    )
    assert done.returncode == 2


def test_a_closed_stdout_is_one_line_and_status_2(log: Path, tmp_path: Path) -> None:
    command = f"{shlex.quote(sys.executable)} -m hopwatch report {shlex.quote(str(log))} >&-"
    done = subprocess.run(
        command, shell=True, env=ENV, capture_output=True, timeout=60, check=False
    )
    assert done.stderr.decode() == (
        "hopwatch report: cannot write the report to standard output: it is closed\n"
    )
    assert done.returncode == 2
    # with -o, standard output is not needed
    out = tmp_path / "r.json"
    command += f" --format json -o {shlex.quote(str(out))}"
    done = subprocess.run(
        command, shell=True, env=ENV, capture_output=True, timeout=60, check=False
    )
    assert (done.returncode, done.stderr.decode()) == (0, f"hopwatch report: wrote {out}\n")
    assert json.loads(out.read_text())["summary"]["records"] == 12


@pytest.mark.parametrize("format_name", ["rich", "text", "json", "markdown", "csv"])
def test_a_reader_gone_before_the_report_is_status_0_whatever_the_format(
    log: Path, format_name: str
) -> None:
    if format_name == "rich":
        pytest.importorskip("rich")
    status, err = with_the_reader_gone(
        [sys.executable, "-m", "hopwatch", "report", str(log), "--format", format_name],
        timeout=60,
        env=ENV,
    )
    if format_name == "csv":  # its summary line goes to stderr, as without a pipe
        assert err.startswith("hopwatch report: read 1 file (") and err.count("\n") == 1
    else:
        assert err == ""
    assert status == 0


# --- gzip ----------------------------------------------------------------------------------


@pytest.fixture(params=["isal", "zlib"])
def decompressor(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test twice: with ISA-L (the fast-gzip extra) and with zlib, as without it."""
    if request.param == "isal":
        pytest.importorskip("isal", reason="the fast-gzip extra is installed by dev.py")
    else:
        monkeypatch.setitem(sys.modules, "isal", None)  # as if the extra were not installed
    return str(request.param)


def test_a_corrupt_gzip_header_is_corrupt_data_with_either_decompressor(
    run_cli: RunCli, tmp_path: Path, decompressor: str
) -> None:
    corrupt = tmp_path / "corrupt.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08garbagegarbage")  # FLG "g": reserved bits set
    result = run_cli(corrupt, "--jobs", "1")
    assert (result.status, result.out) == (2, "")
    assert result.err == (
        f"hopwatch report: cannot read {corrupt}: corrupt gzip data (unknown header flags set)\n"
    )


def test_a_gzip_cut_short_is_still_read_and_said_to_be_cut_short(
    run_cli: RunCli, log: Path, tmp_path: Path, decompressor: str
) -> None:
    whole = gzip.compress(log.read_bytes())
    cut = tmp_path / "cut.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    result = run_cli(cut, "--format", "json", "--jobs", "1")
    summary = json.loads(result.out)["summary"]
    assert (result.status, result.err) == (0, "")
    assert summary["truncated_inputs"] == [str(cut)] and 0 < summary["records"] < 12


def test_a_gzip_cut_mid_line_counts_its_last_line_as_a_plain_file_does(
    run_cli: RunCli, tmp_path: Path, decompressor: str
) -> None:
    text = ("\n".join(canonical_lines(400)) + "\n").encode()
    whole = gzip.compress(text)
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    held = zlib.decompressobj(31).decompress(whole[: len(whole) // 2])
    assert not held.endswith(b"\n")  # the cut is inside a line
    plain = tmp_path / "held.log"
    plain.write_bytes(held)
    summaries = []
    for path in (cut, plain):
        result = run_cli(path, "--format", "json", "--jobs", "1")
        assert result.status == 0
        summaries.append(json.loads(result.out)["summary"])
    lines = held.count(b"\n") + 1
    for summary in summaries:
        assert summary["bytes"] == len(held) and summary["lines"] == lines
        assert summary["records"] == lines - 1 and summary["skipped_by_reason"] == {"truncated": 1}
    assert summaries[0]["truncated_inputs"] == [str(cut)]


# --- bzip2, xz: read as gzip is; zstd, UTF-16 and UTF-32: refused with a line -------------------


def _compressed(kind: str, data: bytes) -> bytes:
    """Two streams (pbzip2, xz -T), with xz's padding between them."""
    half = len(data) // 2
    if kind == "bzip2":
        return bz2.compress(data[:half]) + bz2.compress(data[half:])
    return lzma.compress(data[:half]) + b"\0" * 4 + lzma.compress(data[half:])


@pytest.mark.parametrize("kind", ["bzip2", "xz"])
def test_bzip2_and_xz_are_read_whatever_their_name(
    run_cli: RunCli, log: Path, tmp_path: Path, kind: str
) -> None:
    data = log.read_bytes()
    packed = _compressed(kind, data)
    rotated = tmp_path / "logs" / "app.log.1"  # logrotate's compresscmd, no extension
    rotated.parent.mkdir()
    rotated.write_bytes(packed)
    (tmp_path / "logs" / "app.log").write_bytes(data)
    for jobs in ("1", "2"):
        result = run_cli(tmp_path / "logs", "--format", "json", "--jobs", jobs)
        summary = json.loads(result.out)["summary"]
        assert (result.status, result.err) == (0, "")
        assert (summary["files"], summary["records"], summary["other_lines"]) == (2, 24, 0)
        assert summary["bytes"] == 2 * len(data) and summary["truncated_inputs"] == []
    result = run_cli("-", "--format", "json", stdin=packed)
    assert json.loads(result.out)["summary"]["records"] == 12
    cut = tmp_path / "cut"
    cut.write_bytes(packed[: len(packed) * 3 // 4])  # inside the second stream
    result = run_cli(cut, "--format", "json")
    summary = json.loads(result.out)["summary"]
    assert result.status == 0 and summary["truncated_inputs"] == [str(cut)]
    assert 5 <= summary["records"] < 12  # the first stream: 5 whole lines and a part
    assert summary["lines"] == summary["records"] + sum(summary["skipped_by_reason"].values())
    corrupt = tmp_path / "corrupt"
    corrupt.write_bytes(packed[:12] + b"\xaa" * 40 + packed[52:])
    result = run_cli(corrupt)
    assert (result.status, result.out) == (2, "")
    assert result.err.startswith(f"hopwatch report: cannot read {corrupt}: corrupt {kind} data (")


@pytest.mark.parametrize("kind", ["bzip2", "xz"])
def test_a_second_stream_cut_inside_its_header_is_said_to_be_cut_short(
    run_cli: RunCli, log: Path, tmp_path: Path, kind: str
) -> None:
    """pbzip2 or ``xz -T`` output cut 2 bytes into its second stream: the first stream's
    records are read, and the file is named as cut short (text and json alike)."""
    data = log.read_bytes()
    first = bz2.compress(data) if kind == "bzip2" else lzma.compress(data)
    cut = tmp_path / "cut.log"
    cut.write_bytes(first + first[:2])
    result = run_cli(cut, "--format", "json", "--jobs", "1")
    summary = json.loads(result.out)["summary"]
    assert (result.status, result.err) == (0, "")
    assert (summary["records"], summary["truncated_inputs"]) == (12, [str(cut)])
    result = run_cli(cut, "--format", "text", "--jobs", "1")
    assert result.status == 0 and "; cut short: " in result.out  # the path, maybe wrapped


def test_a_text_log_whose_first_line_starts_like_bzip2_is_read_as_text(
    run_cli: RunCli, log: Path, tmp_path: Path
) -> None:
    """The letters "BZh" and a digit are all of bzip2's magic a host name can start
    with: without the block header after them (or the end-of-stream marker), the file is
    text."""
    path = tmp_path / "web01.log"
    path.write_bytes(b"BZh1-web01 starting gunicorn\n" + log.read_bytes())
    for args in ([path], ["-"]):
        stdin = path.read_bytes() if args == ["-"] else None
        result = run_cli(*args, "--format", "json", "--jobs", "1", stdin=stdin)
        summary = json.loads(result.out)["summary"]
        assert (result.status, result.err) == (0, "")
        assert (summary["records"], summary["other_lines"]) == (12, 1)


@pytest.mark.parametrize(
    ("head", "what", "how"),
    [
        (b"\x28\xb5\x2f\xfd", "it is zstd-compressed, which this Python cannot decompress", "zstd -dc"),
        (b"\xff\xfe", "it is UTF-16 text (PowerShell's > writes it), not UTF-8", "iconv -f UTF-16 -t UTF-8"),
        (b"\xfe\xff", "it is UTF-16 text (PowerShell's > writes it), not UTF-8", "iconv -f UTF-16 -t UTF-8"),
        (b"\xff\xfe\x00\x00", "it is UTF-32 text (PowerShell's > writes it), not UTF-8", "iconv -f UTF-32 -t UTF-8"),
    ],
)  # fmt: skip
def test_zstd_utf16_and_utf32_are_refused_with_what_to_do(
    run_cli: RunCli, log: Path, tmp_path: Path, head: bytes, what: str, how: str
) -> None:
    path = tmp_path / "logs" / "app.log.3"
    path.parent.mkdir()
    path.write_bytes(head + log.read_bytes())
    (tmp_path / "logs" / "app.log").write_bytes(log.read_bytes())
    result = run_cli(tmp_path / "logs")
    assert (result.status, result.out) == (2, "")
    assert (
        result.err
        == f"hopwatch report: cannot read {path}: {what}: {how} {path} | hopwatch report -\n"
    )
    result = run_cli("-", stdin=head + log.read_bytes())
    assert (result.status, result.out) == (2, "")
    assert result.err == f"hopwatch report: cannot read <stdin>: {what}: {how} before the pipe\n"


def test_a_hard_link_is_read_once(run_cli: RunCli, log: Path, tmp_path: Path) -> None:
    os.link(log, tmp_path / "hard.log")
    os.symlink(log, tmp_path / "soft.log")
    result = run_cli(log, tmp_path / "hard.log", tmp_path, "--format", "json")
    summary = json.loads(result.out)["summary"]
    assert (result.status, summary["files"], summary["records"]) == (0, 1, 12)


# --- inputs that cannot be read ---------------------------------------------------------------


def test_a_symbolic_link_loop_is_named_as_one(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    os.symlink("loop1.log", "loop2.log")
    os.symlink("loop2.log", "loop1.log")
    os.symlink("nowhere.log", "dangling.log")
    for argument in ["loop1.log", "loop*.log"]:  # named, or matched by a glob
        result = run_cli(argument)
        assert (result.status, result.out) == (2, "")
        assert result.err == "hopwatch report: cannot read loop1.log: symbolic link loop\n"
    result = run_cli("dangling.log")
    assert (result.status, result.err) == (
        2,
        "hopwatch report: cannot read dangling.log: broken symbolic link\n",
    )
    result = run_cli("absent.log")
    assert (result.status, result.err) == (
        2,
        "hopwatch report: cannot read absent.log: no such file or directory\n",
    )


# --- file names in messages: escaped as the report escapes log content ------------------------

#: Sets the terminal's title, rings its bell, turns the rest of the line around (no
#: glob character: "[2J", which clears the screen, would make the name a glob).
EVIL = "bad\x1b]0;owned\x07\u202ename"
SHOWN = "bad\\x1b]0;owned\\x07\\u202ename"


def test_a_file_name_found_in_a_directory_is_escaped_in_a_message(
    run_cli: RunCli, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / f"{EVIL}.gz").write_bytes(b"\x1f\x8b\x08garbagegarbage")
    result = run_cli(logs, "--jobs", "1")
    assert (result.status, result.out) == (2, "")
    assert result.err == (
        f"hopwatch report: cannot read {logs}/{SHOWN}.gz: corrupt gzip data"
        " (unknown header flags set)\n"
    )


def test_a_directory_that_cannot_be_listed_is_escaped_in_a_message(
    run_cli: RunCli, tmp_path: Path
) -> None:
    # a directory too deep to be named (ENAMETOOLONG): an error reading a directory below
    # the one given, as "Permission denied" is for a user, and as root too
    logs = tmp_path / "logs"
    logs.mkdir()
    part = EVIL + "d" * 200
    depth = 4200 // len(part.encode()) + 1
    fd = os.open(logs, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir(part, dir_fd=fd)
            below = os.open(part, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = below
    finally:
        os.close(fd)
    result = run_cli(logs, "--jobs", "1")
    assert (result.status, result.out) == (2, "")
    assert result.err.startswith(f"hopwatch report: cannot read {logs}/{SHOWN}d")
    assert result.err.endswith(": File name too long\n") and result.err.count("\n") == 1
    assert "\x1b" not in result.err and "\u202e" not in result.err


def test_file_names_given_are_escaped_in_messages(
    run_cli: RunCli, log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli(f"{EVIL}.log")
    assert result.err == f"hopwatch report: cannot read {SHOWN}.log: no such file or directory\n"
    result = run_cli(f"{EVIL}*.log")
    assert result.err == f"hopwatch report: no files match {SHOWN}*.log\n"
    result = run_cli(log, "-o", f"{EVIL}/r.json")
    assert (
        result.err
        == f"hopwatch report: cannot write {SHOWN}/r.json: no directory {tmp_path}/{SHOWN}\n"
    )
    result = run_cli(log, "-o", f"{EVIL}.json")
    assert (result.status, result.err) == (0, f"hopwatch report: wrote {SHOWN}.json\n")
    assert (tmp_path / f"{EVIL}.json").is_file()


def test_output_before_a_glob_does_not_replace_a_platforms_export_the_report_reads(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """-o's FILE is a log when the report reads a record in it, in whatever layers it
    reads: an export's object (Cloud Logging's ``jsonPayload``, Datadog's ``attributes``,
    Fluent Bit's ``out_file`` line) holding a record with a field nested 520 deep, which
    the general decoder (512 levels) refuses and the typed one reads, was overwritten."""
    record = json.loads(canonical_lines(1)[0])
    line = json.dumps({**record, "deep": json.loads("[" * 520 + "]" * 520)})
    other = tmp_path / "b.log"
    other.write_text("\n".join(canonical_lines(5)) + "\n")
    exports = {
        "cloud.log": '{"insertId": "a", "jsonPayload": ' + line + "}\n",
        "datadog.log": '{"date": "2026-11-24", "attributes": ' + line + "}\n",
        "fluentbit.log": "web: [1733544000.123, " + line + "]\n",
        "loki.log": json.dumps({"labels": {}, "line": line}) + "\n",
    }
    for name, content in exports.items():
        first = tmp_path / name
        first.write_text(content)
        assert json.loads(run_cli(first, "--format", "json").out)["summary"]["records"] == 1
        _assert_refused_as_a_log(run_cli, first, other, content)


# --- the command's own streams and signals ---------------------------------------------------


def test_stdout_and_stderr_a_closed_pipe_leave_the_exit_status_alone(
    log: Path, tmp_path: Path
) -> None:
    """``2>&1 | head -0``: the message that cannot be written changes nothing (Python's
    error writing it made every status 1, "no hopwatch records")."""
    out = tmp_path / "r.txt"
    cases = [
        (["-o", str(out)], 0),  # "wrote r.txt" on stderr
        (["--format", "csv"], 0),  # the report on stdout, its summary on stderr
        ([str(tmp_path / "missing.log")], 2),  # the unreadable input's line
    ]
    for options, status in cases:
        reader, writer = os.pipe()
        os.close(reader)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "hopwatch", "report", str(log), *options],
                stdout=writer, stderr=writer, env=ENV, timeout=60, check=False,
            )  # fmt: skip
        finally:
            os.close(writer)
        assert (options, done.returncode) == (options, status)
    assert "GET /items/<int:pk>/" in out.read_text()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_version_on_a_full_stdout_is_one_line_and_status_2() -> None:
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [sys.executable, "-m", "hopwatch", "--version"],
            stdout=full, stderr=subprocess.PIPE, env=ENV, timeout=60, check=False,
        )  # fmt: skip
    assert done.stderr.decode() == (
        "hopwatch: cannot write the version to standard output: No space left on device\n"
    )
    assert done.returncode == 2


def test_version_naming_a_non_ascii_path_on_an_ascii_stdout_gets_escapes(tmp_path: Path) -> None:
    """The C hop path did not load from a venv under /home/josé, and stdout is ASCII:
    --version escapes the é as the commands do (it raised UnicodeEncodeError)."""
    src = tmp_path / "jösé" / "src"
    shutil.copytree(SRC, src, ignore=shutil.ignore_patterns("__pycache__", "_speedups*"))
    broken = src / "hopwatch" / f"_speedups{sysconfig.get_config_var('EXT_SUFFIX')}"
    broken.write_bytes(b"")  # as a failed build: "file too short"
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONIOENCODING": "ascii"}
    env.pop("HOPWATCH_PURE_PYTHON", None)
    done = subprocess.run(
        [sys.executable, "-m", "hopwatch", "--version"],
        capture_output=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr.decode()) == (0, "")
    escaped = str(broken).replace("ö", "\\xf6").replace("é", "\\xe9")
    assert f"  hopwatch._speedups did not load: {escaped}: " in done.stdout.decode("ascii")


#: Sends SIGINT to this process when the report's module is imported: Ctrl-C while
#: ``hopwatch report`` starts (build_parser), every time.
_INTERRUPTED_AT_IMPORT = """\
import os, signal, sys

class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == "hopwatch.report.command":
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, Interrupt())
from hopwatch.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_while_the_command_is_imported_is_one_line_and_status_130(log: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_AT_IMPORT, "report", str(log)],
        capture_output=True, env=ENV, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr.decode()) == (130, "hopwatch: interrupted\n")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(word) for word in path.read_text().split()]
    except OSError:
        return []


def _running(pid: int) -> bool:
    """Alive and not a zombie (one whose new parent, a container's PID 1, never reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _big_log(path: Path, megabytes: int) -> None:
    """A log of many endpoints: a reader's result (a pickled Partial) is far larger than
    a pipe's buffer."""
    block = "".join(
        line(route=f"/r{index}/<int:pk>/", request_id=f"{index:016x}") + "\n"
        for index in range(1000)
    )
    with open(path, "w", encoding="utf-8") as file:
        for _ in range(megabytes * 1024 * 1024 // len(block) + 1):
            file.write(block)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGTERM"])
def test_readers_end_when_the_main_process_is_killed(tmp_path: Path, signal_name: str) -> None:
    """``kill`` or subprocess.run(timeout=) on a --jobs 2 report: its reader process
    ends, and so does a pipeline reading the report (the reader stayed blocked for ever
    sending its result, holding the report's stdout open: ``| cat`` never ended)."""
    big = tmp_path / "big.log"
    _big_log(big, 16)
    process = subprocess.Popen(
        [sys.executable, "-m", "hopwatch", "report", str(big), "--jobs", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
    )  # fmt: skip
    assert process.stdout is not None
    readers: list[int] = []
    try:
        deadline = time.monotonic() + 20
        while not (readers := _children(process.pid)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert readers and process.poll() is None
        time.sleep(0.2)  # the readers are reading
        process.send_signal(getattr(signal, signal_name))
        status = process.wait(timeout=20)
        # stdout at its end: nobody else holds the pipe
        ready, _, _ = select.select([process.stdout], [], [], 5)
        assert ready and process.stdout.read() == b""
        deadline = time.monotonic() + 15
        while any(map(_running, readers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in readers if _running(pid)] == []
        assert status == (-signal.SIGKILL if signal_name == "SIGKILL" else 143)
        assert process.stderr is not None and process.stderr.read() == b""
    finally:
        for pid in {process.pid, *readers, *_children(process.pid)}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()
