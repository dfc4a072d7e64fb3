"""``hopwatch report`` end to end: golden outputs, inputs, exit statuses, errors."""

from __future__ import annotations

import gzip
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.report.conftest import Run
from tests.report.samples import (
    FIXTURES,
    PLAIN,
    SESSION,
    canonical_lines,
    line,
    plain_line,
    site,
)

MIXED = FIXTURES / "mixed.log"
UPDATE = os.environ.get("HOPWATCH_UPDATE_GOLDEN") == "1"
SRC = Path(__file__).resolve().parents[2] / "src"

RunCli = Callable[..., Run]


def golden(name: str, actual: str) -> None:
    path = FIXTURES / name
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8"), f"differs from {path} (see its docstring)"


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("mixed.json", ["--format", "json", "--top", "0"]),
        ("mixed.md", ["--format", "markdown"]),
        ("mixed.by-site.json", ["--format", "json", "--by", "site"]),
    ],
)
def test_golden_output(run_cli: RunCli, name: str, args: list[str]) -> None:
    result = run_cli(MIXED, *args, "--jobs", "1")
    assert result.status == 0 and result.err == ""
    golden(name, result.out)


def test_the_fixture_accounts_for_every_line(run_cli: RunCli) -> None:
    summary = json.loads(run_cli(MIXED, "--format", "json").out)["summary"]
    assert summary["lines"] == len(MIXED.read_bytes().splitlines())
    assert summary["lines"] == summary["records"] + summary["other_lines"] + summary["skipped"]
    assert summary["skipped_by_reason"] == {
        "invalid:duration_ms": 1,
        "invalid:hop_ms": 2,
        "invalid:hops": 1,
        "invalid:threads": 1,
        "invalid:timestamp": 1,
        "invalid_utf8": 1,
        "malformed_json": 1,
        "missing:hops": 1,
        "truncated": 1,
    }
    # the record with a malformed sites entry is counted, without its sites
    assert summary["parts_lost"] == {"sites": 1}


def test_text_is_the_default_when_not_a_terminal(run_cli: RunCli) -> None:
    result = run_cli(MIXED)
    assert result.out.startswith("hopwatch report: worst routes by total\nread 1 file")
    assert "\x1b" not in result.out and "GET /search/" in result.out


def test_csv_has_a_header_and_the_summary_goes_to_stderr(run_cli: RunCli) -> None:
    result = run_cli(MIXED, "--format", "csv")
    rows = result.out.splitlines()
    assert rows[0].startswith("rank,method,route,view,label,requests,records,")
    assert len(rows) == 1 + 6
    assert result.err.startswith("hopwatch report: read 1 file") and result.err.count("\n") == 1


def test_stdin_explicit_and_implicit(run_cli: RunCli) -> None:
    data = ("\n".join(canonical_lines(9)) + "\n").encode()
    for args in (["-"], []):
        summary = json.loads(run_cli(*args, "--format", "json", stdin=data).out)["summary"]
        assert summary["records"] == 9 and summary["stdin"] and summary["files"] == 0
    summary = json.loads(run_cli("-", "--format", "json", stdin=gzip.compress(data)).out)["summary"]
    assert summary["records"] == 9


def test_many_files_directories_globs_and_gzip(run_cli: RunCli, tmp_path: Path) -> None:
    for i in range(5):
        pod = tmp_path / f"pod-{i}"
        pod.mkdir()
        (pod / "0.log").write_text("\n".join(canonical_lines(20, seed=i)) + "\n")
        (pod / "1.log.gz").write_bytes(
            gzip.compress(("\n".join(canonical_lines(10, seed=i))).encode())
        )
    result = run_cli(
        tmp_path / "pod-0", tmp_path / "pod-*" / "*.log", tmp_path / "pod-4", "--format", "json"
    )
    summary = json.loads(result.out)["summary"]
    assert summary["files"] == 5 + 1 + 1  # each file once
    assert summary["records"] == 5 * 20 + 10 + 10


def test_parallel_reading_matches_one_process(run_cli: RunCli, tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"{i}.log").write_text("\n".join(canonical_lines(700, seed=i)) + "\nnoise\n")
    (tmp_path / "3.log.gz").write_bytes(gzip.compress("\n".join(canonical_lines(300)).encode()))
    outputs = [
        json.loads(run_cli(tmp_path, "--format", "json", "--top", "0", "--jobs", jobs).out)
        for jobs in ("1", "2", "3")
    ]
    from tests.report.test_aggregate import close

    assert outputs[0]["summary"]["records"] == 2400
    assert close(outputs[1], outputs[0]) and close(outputs[2], outputs[0])


def test_past_the_endpoint_cap_several_readers_keep_the_first_endpoints_in_key_order(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which endpoints keep a row does not depend on which reader read which piece: each
    piece is read into a partial of its own, and merged partials keep the endpoints first
    in key order (docs/report.md, "Memory and speed")."""
    from hopwatch.report import aggregate, parallel

    monkeypatch.setattr(aggregate, "ENDPOINT_CAP", 5)
    monkeypatch.setattr(parallel, "MIN_PIECE_BYTES", 4096)
    # 40 endpoints, the last in key order first in the file, each in one piece of its own
    lines = [
        line(route=f"/r{i:02d}/", request_id=f"{i}-{n}")
        for i in range(39, -1, -1)
        for n in range(9)
    ]
    (tmp_path / "app.log").write_text("\n".join(lines) + "\n")
    expected = [*(f"GET /r{i:02d}/" for i in range(5)), "(other endpoints)"]
    for _ in range(4):
        result = run_cli(tmp_path / "app.log", "--format", "json", "--top", "0", "--jobs", "2")
        rows = json.loads(result.out)["rows"]
        assert sorted((row["label"], row["requests"]) for row in rows) == sorted(
            [(label, 9) for label in expected[:-1]] + [("(other endpoints)", 35 * 9)]
        )
    one = json.loads(run_cli(tmp_path / "app.log", "--format", "json", "--jobs", "1").out)
    assert {row["label"] for row in one["rows"]} == {  # one reader: the first read
        *(f"GET /r{i:02d}/" for i in range(35, 40)),
        "(other endpoints)",
    }


def test_exactly_the_endpoint_cap_read_by_several_readers_has_no_overflow_row(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As many endpoints as the cap, each piece read apart and the partials merged: one
    row each, and no "(other endpoints)" row (an empty one crashed the report)."""
    from hopwatch.report import aggregate, parallel

    monkeypatch.setattr(aggregate, "ENDPOINT_CAP", 5)
    monkeypatch.setattr(parallel, "MIN_PIECE_BYTES", 4096)
    lines = [line(route=f"/r{i:02d}/", request_id=f"{i}-{n}") for i in range(5) for n in range(9)]
    (tmp_path / "app.log").write_text("\n".join(lines) + "\n")
    for name in ("json", "text"):
        result = run_cli(tmp_path / "app.log", "--format", name, "--top", "0", "--jobs", "2")
        assert (result.status, result.err) == (0, ""), result.err
    rows = json.loads(
        run_cli(tmp_path / "app.log", "--format", "json", "--top", "0", "--jobs", "2").out
    )["rows"]
    assert sorted((row["label"], row["requests"]) for row in rows) == [
        (f"GET /r{i:02d}/", 9) for i in range(5)
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.log"], "hopwatch report: cannot read missing.log: no such file or directory"),
        (["--since", "yesterday", "x"], "argument --since: invalid time 'yesterday'"),
        (["--until", "2026-02-30", "x"], "argument --until: invalid time '2026-02-30'"),
        (["--sort", "fastest", "x"], "argument --sort: invalid choice: 'fastest'"),
        (["--by", "site", "--sort", "p95", "x"], "--sort p95 does not apply to --by site"),
        (["--since", "2026-11-25", "--until", "2026-11-24", "x"], "--since must be earlier"),
        (["--status", "2x", "x"], "argument --status: invalid status '2x'"),
        (
            ["--interface", "asgii", "x"],
            "argument --interface: invalid interface 'asgii': choose from asgi, wsgi,"
            " test-client, test-async-client",
        ),
        (["--interface", "asgi,WSGI,x", "x"], "invalid interfaces 'WSGI', 'x': choose from"),
        (["--top", "-1", "x"], "argument --top: expected 0 or more, got -1"),
        (["--jobs", "zero", "x"], "argument --jobs: expected a whole number, got 'zero'"),
        (["--format", "pdf", "x"], "argument --format: invalid choice: 'pdf'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--hop-tax", "0", "x"], "argument --hop-tax: invalid hop tax '0'"),
        (["--hop-tax", "nan", "x"], "argument --hop-tax: invalid hop tax 'nan'"),
        (["--hop-tax", "2ms", "x"], "argument --hop-tax: invalid hop tax '2ms'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    run_cli: RunCli, args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").write_text(line() + "\n")
    result = run_cli(*args)
    assert result.status == 2 and result.out == ""
    assert result.err.count("\n") == 1 and message in result.err, result.err


def test_no_input_on_a_terminal_is_a_usage_error(run_cli: RunCli) -> None:
    result = run_cli(tty=True)
    assert result.status == 2 and "no input" in result.err


def test_exit_1_when_no_hopwatch_records_are_found(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "other.log").write_text('just\nsome\n{"event": "other"}\n')
    result = run_cli(tmp_path / "other.log", "--format", "json")
    assert result.status == 1 and json.loads(result.out)["rows"] == []
    assert run_cli(MIXED, "--since", "2030-01-01").status == 1  # all filtered out
    assert run_cli(tmp_path / "other.log").status == 1


def test_filters_and_time_window(run_cli: RunCli) -> None:
    document = json.loads(
        run_cli(
            MIXED,
            "--format",
            "json",
            "--status",
            "!5xx",
            "--interface",
            "asgi",
            "--since",
            "2026-11-24T10:00:05",
            "--until",
            "2026-11-24T10:00:20Z",
        ).out
    )
    summary = document["summary"]
    assert summary["filtered_by_reason"]["time"] > 0
    assert summary["first_timestamp"] >= "2026-11-24T10:00:05"
    assert summary["last_timestamp"] < "2026-11-24T10:00:20"
    assert document["filters"] == {
        "since": "2026-11-24T10:00:05.000000Z",
        "until": "2026-11-24T10:00:20.000000Z",
        "status": "!5xx",
        "interface": ["asgi"],
    }


def test_relative_times_are_before_now(run_cli: RunCli) -> None:
    assert run_cli(MIXED, "--since", "30m").status == 1  # the fixture is from 2026-11-24
    assert run_cli(MIXED, "--until", "1h").status in (0, 1)


def test_min_requests_top_and_sort(run_cli: RunCli) -> None:
    document = json.loads(
        run_cli(
            MIXED, "--format", "json", "--min-requests", "5", "--top", "2", "--sort", "requests"
        ).out
    )
    assert [row["label"] for row in document["rows"]] == ["GET /search/", "GET /items/<int:pk>/"]
    assert document["groups"] == {"total": 6, "below_min_requests": 3}


def _module_run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-m", "hopwatch", *args],
        input=stdin,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("pure", ["", "1"])
def test_version_says_whether_the_hop_path_and_the_scanner_run_in_c(pure: str) -> None:
    """The test environments build both extensions (the editable install); an install
    without a compiler is tests/test_install.py's."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "HOPWATCH_PURE_PYTHON": pure}
    done = subprocess.run(
        [sys.executable, "-m", "hopwatch", "--version"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.splitlines() == (
        [
            "hopwatch 0.1.0",
            "hop path: pure Python (HOPWATCH_PURE_PYTHON is set)",
            "report scanner: pure Python (HOPWATCH_PURE_PYTHON is set)",
        ]
        if pure
        else [
            "hopwatch 0.1.0",
            "hop path: C (hopwatch._speedups)",
            "report scanner: C (hopwatch.report._accumulate)",
        ]
    )


def test_python_dash_m_runs_without_django() -> None:
    probe = (
        "import sys, runpy; sys.argv = ['hopwatch', 'report', '-', '--format', 'json'];\n"
        "try: runpy.run_module('hopwatch', run_name='__main__')\n"
        "except SystemExit as exit: print('status', exit.code, 'django' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        input=(line() + "\n").encode(),
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.decode().strip().endswith("status 0 False"), done.stderr.decode()


def test_a_closed_pipe_is_not_an_error() -> None:
    data = ("\n".join(canonical_lines(50)) + "\n").encode()
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = f"{shlex.quote(sys.executable)} -m hopwatch report - --format text --top 0 | head -c 10"
    done = subprocess.run(
        command, shell=True, input=data, env=env, capture_output=True, timeout=60, check=False
    )
    assert b"Traceback" not in done.stderr and done.stderr == b""


def test_help_and_version_exit_0() -> None:
    assert _module_run("report", "--help").returncode == 0
    assert _module_run("--version").returncode == 0
    assert _module_run().returncode == 2


@pytest.mark.parametrize("command", [(), ("report",), ("audit",)], ids=" ".join)
def test_every_help_line_fits_80_columns(command: tuple[str, ...]) -> None:
    """argparse wraps what it writes to the width; the static text (description, sort
    keys, exit status) must fit an 80-column terminal itself."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "80"}
    done = subprocess.run(
        [sys.executable, "-m", "hopwatch", *command, "--help"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    long = [text for text in done.stdout.decode().splitlines() if len(text) > 80]
    assert long == []


def test_an_output_that_cannot_encode_gets_escapes_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "x.log").write_text(line(route="/caf\u00e9/" + "a" * 90, hop_tax_us=212.5) + "\n")
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONIOENCODING": "ascii"}
    done = subprocess.run(
        [sys.executable, "-m", "hopwatch", "report", str(tmp_path / "x.log"), "--format", "text"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    assert b"GET /caf\\xe9/aaa" in done.stdout and b"\\u2026" not in done.stdout
    # the label cut with "~", one column as "\u2026" is not: the columns line up
    header, row = done.stdout.split(b"\n")[3:5]
    assert b"a" * 27 + b"~" + b"a" * 39 + b" " in row
    assert row.index(b" 1 ") + 2 == header.index(b"requests") + len(b"requests")
    assert b"hops priced at 212 \\xb5s" in done.stdout


def test_hop_tax_sort_and_option(run_cli: RunCli, tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text(
        "\n".join(
            [line(route="/many/", hops=20, hop_ms=1.0)] * 2
            + [line(route="/few/", hops=2, hop_ms=9.0)] * 2
        )
        + "\n"
    )
    by_time = json.loads(run_cli(log, "--format", "json", "--hop-tax", "300").out)
    assert [row["route"] for row in by_time["rows"]] == ["/few/", "/many/"]
    by_tax = json.loads(
        run_cli(log, "--format", "json", "--hop-tax", "300us", "--sort", "hop-tax").out
    )
    assert [row["route"] for row in by_tax["rows"]] == ["/many/", "/few/"]
    assert [row["hop_tax_ms"]["total"] for row in by_tax["rows"]] == [12.0, 1.2]


def test_one_endpoint_in_detail_and_a_missing_one(run_cli: RunCli, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("\n".join(canonical_lines(30)) + "\n")
    shown = run_cli(log, "--endpoint", "POST /cart/")
    assert shown.status == 0
    assert shown.out.startswith("hopwatch report: POST /cart/, cause by cause\n")
    assert "QuerySet.aget" in shown.out and "shop/views.py:42 in cart_add" in shown.out
    missing = run_cli(log, "--endpoint", "POST /carts/")
    assert missing.status == 1 and missing.out == ""
    assert missing.err == (
        "hopwatch report: no endpoint 'POST /carts/' in the logs read"
        " (closest: POST /cart/, GET /search/)\n"
    )
    assert run_cli(log, "--endpoint", "POST /cart/", "--by", "site").status == 2


def test_the_legend_is_on_by_default_and_can_be_turned_off(run_cli: RunCli, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("\n".join(canonical_lines(30)) + "\n")
    assert "\ncolumns:\n" in run_cli(log).out
    assert "\ncolumns:\n" not in run_cli(log, "--no-legend").out
    wide = run_cli(log, "--wide").out
    assert "ovh p99" in wide and "max hops" in wide and "threads" in wide


def test_several_readers_keep_what_each_left_out_and_why(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two gzip files read by two processes, each cut in half, each with a record
    # whose sites part is malformed and two records after --until: the summary
    # adds up what every reader filtered out, left out and found cut short.
    filler = "".join(
        plain_line(request_id=f"f{i}", timestamp="2026-11-24T09:00:00.000000Z") + "\n"
        for i in range(200)
    )
    for name in ("a", "b"):
        head = [
            plain_line(request_id=f"{name}0", sites=[PLAIN["sites"][0], {"site": 5}]),
            plain_line(request_id=f"{name}1", timestamp="2026-11-24T10:00:01.000000Z"),
            plain_line(request_id=f"{name}2", timestamp="2026-11-24T10:00:02.000000Z"),
        ]
        data = gzip.compress(("\n".join(head) + "\n" + filler).encode())
        (tmp_path / f"{name}.log.gz").write_bytes(data[: len(data) // 2])
    monkeypatch.chdir(tmp_path)
    args = ("a.log.gz", "b.log.gz", "--until", "2026-11-24T10:00:01Z", "--jobs", "2")
    assert run_cli(*args).out.splitlines()[1] == (
        "read 2 files (59.8 KB): 114 lines, 112 hopwatch records, 0 other lines,"
        " 2 skipped (2 truncated); malformed parts left out (sites in 2), their records"
        " counted; 4 filtered out (4 by time); 2026-11-24T09:00:00Z to 2026-11-24T10:00:00Z;"
        " cut short: a.log.gz, b.log.gz"
    )
    summary = json.loads(run_cli(*args, "--format", "json").out)["summary"]
    assert (summary["filtered"], summary["filtered_by_reason"]) == (4, {"time": 4})
    assert summary["parts_lost"] == {"sites": 2}
    assert summary["truncated_inputs"] == ["a.log.gz", "b.log.gz"]


def test_a_hop_total_under_two_minutes_reads_in_seconds(run_cli: RunCli, tmp_path: Path) -> None:
    log = tmp_path / "slow.log"
    site = dict(PLAIN["sites"][0], ms=90_000.0)
    log.write_text(plain_line(hop_ms=90_000.0, duration_ms=95_000.0, sites=[site]) + "\n")
    assert run_cli(log).out.splitlines()[4].split() == [
        *("1", "GET", "/items/", "1", "4.0", "90,000", "90.0", "s"),
        *("request_started", "100.0%"),
    ]


def test_a_line_without_a_status_is_skipped_and_the_summary_names_the_field(
    run_cli: RunCli, tmp_path: Path
) -> None:
    log = tmp_path / "nostatus.log"
    log.write_text(plain_line("status") + "\n" + plain_line() + "\n")
    summary = run_cli(log).out.splitlines()[1]
    assert "1 hopwatch records, 0 other lines, 1 skipped (1 missing status);" in summary


def test_one_request_is_one_request_in_the_notes(run_cli: RunCli, tmp_path: Path) -> None:
    log = tmp_path / "one.log"
    session = {"site": SESSION, "kind": "middleware", "direction": "sync_to_async"}
    log.write_text(plain_line(sites=[dict(session, count=4, ms=2.0)]) + "\n")
    assert (
        "what to change first (ranked by hop time: no line carries overhead_ms,"
        " over the 1 request logged):"
    ) in run_cli(log).out.splitlines()


def test_by_site_names_three_endpoints_and_counts_the_rest(run_cli: RunCli, tmp_path: Path) -> None:
    log = tmp_path / "six.log"
    log.write_text(
        "".join(
            plain_line(request_id=f"e{i}", route=f"/e{i}/", view=f"shop.views.e{i}") + "\n"
            for i in range(6)
        )
    )
    row = run_cli(log, "--by", "site").out.splitlines()[4]
    assert row.split("12.0 ms  ") == [
        "1  request_started  signal         6          6       4.0    2.000    ",
        "GET /e0/, GET /e1/, GET /e2/ +3",
    ]


@pytest.mark.parametrize(
    "first",
    [b"BZh hello, this is a plain text line\n", b"\x1fhello plain text\n"],
    ids=["bzip2-magic-only", "gzip-first-byte-only"],
)
def test_text_that_starts_like_a_compressed_file_is_read_as_text(
    run_cli: RunCli, tmp_path: Path, first: bytes
) -> None:
    log = tmp_path / "text.log"
    log.write_bytes(first + plain_line().encode() + b"\n")
    result = run_cli(log, "--format", "json")
    assert result.status == 0
    summary = json.loads(result.out)["summary"]
    assert (summary["lines"], summary["records"], summary["other_lines"]) == (2, 1, 1)


def test_zstd_on_stdin_says_to_decompress_before_the_pipe(run_cli: RunCli) -> None:
    result = run_cli("-", stdin=b"\x28\xb5\x2f\xfdxxxx\n")
    assert (result.status, result.out) == (2, "")
    assert result.err == (
        "hopwatch report: cannot read <stdin>: it is zstd-compressed,"
        " which this Python cannot decompress: zstd -dc before the pipe\n"
    )


def test_any_number_of_readers_gives_the_report_of_one_bit_for_bit(
    implementation: str, run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Times as hopwatch logs them (to the microsecond) whose means lie exactly on a
    rounding boundary (1.2345 ms a request), read by one process and by several, each
    reading pieces and merging them in whatever order they finish: the same output, byte
    for byte, in both formats, from the C loop and the Python one. (The sums, added in
    another order, differed in their last bits, and the means read 1.234 from one reader,
    1.235 from two or three: docs/report.md, "Memory and speed".)"""
    import random

    from hopwatch.report import parallel

    monkeypatch.setattr(parallel, "MIN_PIECE_BYTES", 16 * 1024)  # pieces of about 25 lines
    rng = random.Random(1)
    count = 1200
    micros = [rng.randint(1, 2400) for _ in range(count - 1)]
    micros.append(count * 12345 // 10 - sum(micros))  # in all, 1.2345 ms a request
    lines = [
        line(
            request_id=f"r{i}",
            hops=1,
            hop_ms=us / 1000,
            wait_ms=us / 1000,
            overhead_ms=us / 1000,
            work_ms=0.0,
            duration_ms=us / 1000,
            sites=[site("request_started", "signal", ms=us / 1000, overhead_ms=us / 1000)],
        )
        for i, us in enumerate(micros)
    ]
    (tmp_path / "app.log").write_text("\n".join(lines) + "\n")
    for name in ("json", "text"):
        outputs = {
            jobs: run_cli(tmp_path / "app.log", "--format", name, "--jobs", jobs).out
            for jobs in ("1", "2", "3", "5")
        }
        assert outputs["2"] == outputs["1"] and outputs["3"] == outputs["1"], name
        assert outputs["5"] == outputs["1"], name
    document = json.loads(run_cli(tmp_path / "app.log", "--format", "json").out)
    (row,) = document["rows"]
    assert document["summary"]["records"] == count
    assert (row["hop_ms"]["total"], row["hop_ms"]["mean"]) == (1481.4, 1.235)
    assert (row["causes"][0]["ms"], row["causes"][0]["ms_per_request"]) == (1481.4, 1.235)
