"""Inputs (pinned): a text line that starts with gzip's two magic bytes, a ``**`` glob,
stdin beside a file read by several processes, and the sketch's zeros sent back by
reader processes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.report.samples import SESSION, canonical_lines, line, site
from tests.report.test_cli import RunCli


def _records(run_cli: RunCli, *args: object, stdin: bytes | None = None) -> int:
    result = run_cli(*args, "--format", "json", stdin=stdin)
    assert result.status == 0, result.err
    return int(json.loads(result.out)["summary"]["records"])


def test_a_first_line_starting_with_gzips_two_magic_bytes_is_text(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """gzip's magic is three bytes (1f 8b and the method, 08): a line left by a crashed
    writer that starts with the first two is read as text, the record after it counted."""
    path = tmp_path / "app.log"
    path.write_bytes(b"\x1f\x8b junk left by a crashed writer\n" + line().encode() + b"\n")
    result = run_cli(path, "--format", "json")
    assert result.status == 0, result.err
    summary = json.loads(result.out)["summary"]
    assert summary["records"] == 1 and summary["files"] == 1


def test_a_double_star_glob_recurses_into_directories(run_cli: RunCli, tmp_path: Path) -> None:
    """``**`` matches any depth, none included; hidden files and directories are not
    matched, as by the shell."""
    logs = tmp_path / "g"
    for relative, count in [
        ("x.log", 1),
        ("a/b/y.log", 2),
        ("a/z.log", 4),
        (".hid/h.log", 8),
        ("a/.q.log", 16),
    ]:
        path = logs / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line(request_id=f"{relative}{i}") + "\n" for i in range(count)))
    assert _records(run_cli, f"{logs}/**/*.log") == 1 + 2 + 4
    assert _records(run_cli, f"{logs}/*/*.log") == 4  # one * is one level


def test_stdin_beside_a_file_is_read_with_several_jobs(run_cli: RunCli, tmp_path: Path) -> None:
    other = tmp_path / "other.log"
    other.write_text("\n".join(canonical_lines(40, seed=3)) + "\n")
    piped = ("\n".join(canonical_lines(25, seed=4)) + "\n").encode()
    assert _records(run_cli, "-", other, "--jobs", "2", stdin=piped) == 65
    assert _records(run_cli, other, "-", "--jobs", "2", stdin=piped) == 65


def test_requests_without_hops_count_in_the_quantiles_of_every_reader(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """A log big enough to be cut into pieces for several processes: half its requests
    made no hop (0 ms, the sketch's zeros), half two hops of 5 ms in all. The median is
    0 ms whether one process reads it or several (their sketches sent back whole)."""
    path = tmp_path / "app.log"
    size = 0
    with path.open("w") as out:
        n = 0
        while size < 9 * 1024 * 1024:  # three pieces of at least parallel.MIN_PIECE_BYTES
            if n % 2 == 0:
                text = line(request_id=f"{n:016x}", route="/ping/", view="app.views.ping", hops=0,
                            hop_ms=0.0, wait_ms=0.0, sync_to_async=0, threads=1, sites=[],
                            overhead_ms=0.0, work_ms=0.0)  # fmt: skip
            else:
                text = line(request_id=f"{n:016x}", route="/ping/", view="app.views.ping", hops=2,
                            hop_ms=5.0, wait_ms=1.0, sync_to_async=2,
                            sites=[site(SESSION, count=2, ms=5.0, overhead_ms=2.0)],
                            overhead_ms=2.0, work_ms=3.0)  # fmt: skip
            out.write(text + "\n")
            size += len(text) + 1
            n += 1
    medians = []
    for jobs in ("1", "2"):
        result = run_cli(path, "--format", "json", "--jobs", jobs)
        assert result.status == 0, result.err
        document = json.loads(result.out)
        assert document["summary"]["records"] == n
        (row,) = document["rows"]
        medians.append((row["hop_ms"]["p50"], row["overhead_ms"]["p50"]))
    assert medians == [(0.0, 0.0), (0.0, 0.0)]
