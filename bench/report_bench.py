"""``hopwatch report`` next to the tools a user would reach for, on the same captured log.

    python -m bench.report_bench [--lines 1000000] [--rounds 3] [--file PATH] [--no-peers]

Generates (once, then reuses) a realistic captured log with bench.captured_logs
(its ``captured`` rendering: structlog's default separators with event, level,
logger and timestamp last, a fifth of the lines behind a CRI prefix, extra
keys, escaped Unicode, 5% foreign lines; about 1.2 KB per line) and its ground
truth. Then, round by round so that a noisy machine affects every contender
alike, it times in separate processes:

* ``hopwatch report`` with two processes, with ``--jobs 1``, with two processes
  on its pure-Python accumulation (``HOPWATCH_PURE_PYTHON=1``: what an install
  without a C compiler runs), and with ``--jobs 1`` on a tenth of the file
  (memory must not grow with the input);
* the peers of bench.report_peers: 2-process msgspec loops (per-route count,
  mean and quantiles; and the same plus per-route causes), polars, DuckDB;
  and jq; each computing per-route counts, means and quantiles;
* a bare Python loop over the lines, for scale;
* ``hopwatch report`` on the same log gzipped (one file: one process), and
  gzip decompression alone by zlib, ISA-L (python-isal) and a ``gzip -dc`` pipe.

Every contender's per-route request counts are checked against the ground
truth ("exact" or how many routes are off). Each run's peak resident memory is
the largest ``ru_maxrss`` among it and its children (per process, not summed).

Standard output is markdown (medians; compare ratios within a run, not absolute
numbers across runs or machines); ``python -m bench`` puts it into
docs/performance.md. Progress goes to standard error.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.captured_logs import GENERATOR_VERSION, generate
from bench.report_peers import JQ_PROGRAM, PEERS

ROOT = Path(__file__).resolve().parents[1]
TARGET_LINES_PER_SECOND = 350_000
BARE_LOOP = (
    "import sys\nn = 0\nwith open(sys.argv[1], 'rb') as f:\n    for line in f:\n        n += 1\n"
)
# gzip decompression alone, read to the end in 512 KB reads: python -c GUNZIP PATH MODULE
GUNZIP = """
import subprocess, sys
path, how = sys.argv[1], sys.argv[2]
if how == "pipe":
    proc = subprocess.Popen(["gzip", "-dc", path], stdout=subprocess.PIPE)
    read = proc.stdout.read
else:
    sys.path.insert(0, sys.argv[3])
    from hopwatch.report import inputs
    if how == "zlib":
        import zlib
        inputs.decompressor = lambda: zlib
    elif inputs.decompressor().__name__ != "isal.isal_zlib":
        sys.exit(3)
    read = inputs.gunzip_reader(open(path, "rb").read)
while read(512 * 1024):
    pass
"""


@dataclass
class Result:
    name: str
    lines: int
    seconds: list[float] = field(default_factory=list)
    peak_kb: list[int] = field(default_factory=list)
    counts: str = "-"


# A fresh wrapper per run: RUSAGE_CHILDREN's ru_maxrss is then the largest of
# this run's processes (the contender and its children), not of every earlier run.
_MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
elapsed = time.perf_counter() - start
print(elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.returncode)
"""


def measure(command: list[str]) -> tuple[float, int, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.split()
    return float(out[0]), int(out[1]), int(out[2])


def count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def _check_routes(found: dict[str, int], truth: dict[str, int]) -> str:
    off = sum(1 for key in truth.keys() | found.keys() if found.get(key) != truth.get(key))
    return "exact" if not off else f"{off} of {len(truth)} routes off"


def _check_hopwatch(document: dict[str, Any], truth: dict[str, Any]) -> str:
    expected = {
        json.dumps([e["method"], e["route"], e["view"]]): e["requests"] for e in truth["endpoints"]
    }
    found = {
        json.dumps([row["method"], row["route"], row["view"]]): row["requests"]
        for row in document["rows"]
    }
    off = sum(1 for key in expected.keys() | found.keys() if found.get(key) != expected.get(key))
    return "exact" if not off else f"{off} of {len(expected)} endpoints off"


def _fresh(path: Path, truth_path: Path, lines: int) -> bool:
    """A log of this many lines, made by this version of the generator."""
    if not (path.exists() and truth_path.exists()):
        return False
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    return bool(truth.get("generator") == GENERATOR_VERSION and truth.get("lines") == lines)


def prepare(args: argparse.Namespace) -> tuple[Path, Path, Path, dict[str, Any]]:
    path: Path = args.file or Path(f"/tmp/hopwatch-bench/captured-{args.lines}.log")
    truth_path = path.with_name(path.name + ".truth.json")
    if not _fresh(path, truth_path, args.lines):
        say(f"generating {args.lines:,} lines into {path} ...")
        generate(path, args.lines, "captured")
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    tenth = path.with_suffix(".tenth.log")
    if not tenth.exists() or count_lines(tenth) != args.lines // 10:
        partial = tenth.with_name(f".{tenth.name}.{os.getpid()}.tmp")
        with open(path, "rb") as src, open(partial, "wb") as dst:
            for _ in range(args.lines // 10):
                dst.write(src.readline())
        os.replace(partial, tenth)
    gz = path.with_name(path.name + ".gz")
    if not gz.exists() or gz.stat().st_mtime < path.stat().st_mtime:
        say(f"compressing {path} ...")
        partial = gz.with_name(f".{gz.name}.{os.getpid()}.tmp")
        with open(partial, "wb") as out:
            subprocess.run(["gzip", "-6", "-c", str(path)], stdout=out, check=True)
        os.replace(partial, gz)
    return path, tenth, gz, truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--file", type=Path, help="default: /tmp/hopwatch-bench/captured-N.log")
    parser.add_argument("--no-peers", action="store_true", help="hopwatch and jq only")
    args = parser.parse_args()

    path, tenth, gz, truth = prepare(args)
    lines = truth["lines"]
    size = path.stat().st_size
    work = Path(tempfile.mkdtemp(prefix="hopwatch-report-bench-"))
    report = [sys.executable, "-m", "hopwatch", "report", "--format", "json", "--top", "0"]

    def hopwatch(*extra: str) -> list[str]:
        return ["sh", "-c", f'"$@" > {work}/hopwatch.json', "-", *report, *extra]

    contenders: dict[str, tuple[list[str], int, str | None]] = {
        "hopwatch report (2 processes)": (hopwatch("--jobs", "2", str(path)), lines, "hopwatch"),
        "hopwatch report --jobs 1": (hopwatch("--jobs", "1", str(path)), lines, "hopwatch"),
        "hopwatch report (2 processes), pure Python (HOPWATCH_PURE_PYTHON=1)": (
            ["env", "HOPWATCH_PURE_PYTHON=1", *hopwatch("--jobs", "2", str(path))],
            lines,
            "hopwatch",
        ),
        "hopwatch report --jobs 1, 1/10 of the file": (
            [*report, "--jobs", "1", str(tenth)],
            lines // 10,
            None,
        ),
    }
    peers = {
        "msgspec loop, 2 processes: per-route count, mean, quantiles": "msgspec",
        "msgspec loop, 2 processes: the same plus per-route causes": "msgspec-sites",
        "polars (scan_csv, str.json_decode, group_by)": "polars",
        "DuckDB (read_csv, from_json, GROUP BY)": "duckdb",
    }
    for name, peer in peers.items():
        module = {"msgspec-sites": "msgspec"}.get(peer, peer)
        if args.no_peers or not _importable(module):
            say(f"{name}: {module} is not installed here, left out")
            continue
        out = str(work / f"{peer}.json")
        command = [sys.executable, "-m", "bench.report_peers", peer, str(path), out]
        contenders[name] = (command, lines, out)
    if shutil.which("jq"):
        jq_out = work / "jq.json"
        contenders["jq (fromjson per line)"] = (
            ["sh", "-c", f'jq -R -n -c "$1" "$2" > {jq_out}', "-", JQ_PROGRAM, str(path)],
            lines,
            str(jq_out),
        )
    contenders["bare Python loop over the lines"] = (
        [sys.executable, "-c", BARE_LOOP, str(path)],
        lines,
        None,
    )
    contenders["hopwatch report on the file gzipped (one file: 1 process)"] = (
        [*report, str(gz)],
        lines,
        None,
    )
    gunzip = {
        "gzip decompression alone: zlib": "zlib",
        "gzip decompression alone: ISA-L (python-isal)": "isal",
        "gzip decompression alone: a gzip -dc pipe": "pipe",
    }
    for name, how in gunzip.items():
        if how == "isal" and not _importable("isal"):
            say(f"{name}: isal is not installed here, left out")
            continue
        command = [sys.executable, "-c", GUNZIP, str(gz), how, str(ROOT / "src")]
        contenders[name] = (command, lines, None)

    results = {name: Result(name, n) for name, (_, n, _) in contenders.items()}
    loads = [os.getloadavg()[0]]
    for round_number in range(args.rounds):
        for name, (command, _, _) in contenders.items():
            seconds, peak, status = measure(command)
            if status not in (0, 1):
                raise SystemExit(f"{name} failed with status {status}")
            results[name].seconds.append(seconds)
            results[name].peak_kb.append(peak)
            loads.append(os.getloadavg()[0])
            say(f"round {round_number + 1}: {name}: {seconds:.2f} s, {peak / 1024:.0f} MB")
            output = contenders[name][2]
            if output == "hopwatch":
                document = json.loads((work / "hopwatch.json").read_text(encoding="utf-8"))
                results[name].counts = _check_hopwatch(document, truth)
            elif output:
                found = json.loads(Path(output).read_text(encoding="utf-8"))
                results[name].counts = _check_routes(found, truth["requests_by_route"])
    shutil.rmtree(work, ignore_errors=True)
    render(results, lines, size, gz.stat().st_size, truth, args.rounds, loads)


def render(
    results: dict[str, Result],
    lines: int,
    size: int,
    gz_size: int,
    truth: dict[str, Any],
    rounds: int,
    loads: list[float],
) -> None:
    hopwatch = results["hopwatch report (2 processes)"]
    base = hopwatch.lines / statistics.median(hopwatch.seconds)
    cores = len(os.sched_getaffinity(0))
    print(
        f"{lines:,} lines ({size / 1e6:,.0f} MB, {size / lines:,.0f} bytes per line; gzipped"
        f" {gz_size / 1e6:,.0f} MB), {truth['records']:,} hopwatch records in the `captured`"
        f" rendering of bench/captured_logs.py; {cores} usable cores; medians of {rounds}"
        " interleaved rounds. Per-route request counts are checked against the ground truth"
        " written beside the log. 1-minute load average during the run (read after each"
        f" contender): {min(loads):.1f} to {max(loads):.1f}; {_implementation()}.\n"
    )
    print("| contender | lines/s | vs hopwatch | peak RSS (largest process) | counts |")
    print("|---|---:|---:|---:|---|")
    rates = {}
    for name, result in results.items():
        rate = rates[name] = result.lines / statistics.median(result.seconds)
        print(
            f"| {name} | {rate:,.0f} | {rate / base:.2f}x |"
            f" {max(result.peak_kb) / 1024:,.0f} MB | {result.counts} |"
        )
    peers = [
        name
        for name in rates
        if name.startswith(("msgspec", "polars", "DuckDB", "jq")) and rates[name] > 0
    ]
    faster = [_short(name) for name in peers if rates[name] > base]
    slower = [_short(name) for name in peers if rates[name] <= base]
    met = base >= TARGET_LINES_PER_SECOND and not faster
    print(
        f"\nTarget (issue 18): at least {TARGET_LINES_PER_SECOND:,} lines/s with 2 cores, faster"
        f" than every peer above: **{'met' if met else 'missed'}**. hopwatch read"
        f" {base:,.0f} lines/s ({base / TARGET_LINES_PER_SECOND:.0%} of the target);"
        f" faster than {', '.join(slower) or 'none'}; slower than {', '.join(faster) or 'none'}."
    )


def _implementation() -> str:
    code = "from hopwatch.report import scan; print(scan.IMPLEMENTATION)"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    found = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    name = found.stdout.strip() or "unknown"
    return f"hopwatch's report accumulation: {name} (hopwatch/report/_accumulate.c)"


def _short(name: str) -> str:
    if name.startswith("msgspec"):
        return "the msgspec loop" + (" with causes" if "causes" in name else "")
    return name.split(" (")[0]


def _importable(module: str) -> bool:
    probe = f"import {module}"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


__all__ = ["PEERS", "main"]

if __name__ == "__main__":
    main()
