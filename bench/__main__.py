"""hopwatch's benchmarks, in one run, as ratios; writes docs/performance.md.

    python3 dev.py bench                 (the full run; about 40 minutes)
    python3 dev.py bench --quick         (a smoke run; about 3 minutes)
    python -m bench [--quick] [--skip server] [--output PATH] ...

Four parts, each measured against its own baseline within this run:

* per hop: ``bench.hops`` (wall and CPU, interleaved, and the time hopwatch
  records against the bare hop's own), plus instructions per hop under
  valgrind's callgrind when valgrind is installed;
* per request: ``bench.request_wall`` (CPU time, in process, interleaved), and
  the latest per-request instruction counts of ``python -m bench.instructions``
  (too long to repeat here: it is judged as that run left it);
* server: ``bench.server``: the example site under uvicorn, bare, with
  hopwatch, and with the tools a user would pick instead, under wrk;
* report: ``bench.report_bench`` (``hopwatch report`` on a generated captured
  log, next to msgspec loops, polars, DuckDB and jq), when that module is present.

The peers (OpenTelemetry, sentry-sdk; polars, DuckDB) are installed into a virtualenv of their
own, ``.venvs/bench``, which this command makes (or refreshes) and then re-runs
itself in, so the test environments never see them. wrk comes from Debian's
packages (``apt-get install wrk``) when missing and installable; otherwise the
asyncio load generator in ``bench.server`` stands in.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = ROOT / ".venvs" / "bench"
DEFAULT_OUTPUT = ROOT / "docs" / "performance.md"
DEFAULT_JSON = ROOT / ".cache" / "bench" / "results.json"

#: The bench environment: the test pins plus the peers, each checked with
#: ``pip index versions`` when chosen. opentelemetry-instrumentation-asgi is
#: what makes the Django instrumentation trace ASGI requests at all.
BENCH_REQUIREMENTS = [
    "Django==5.2.19",
    "asgiref==3.13.0",
    "uvicorn==0.55.0",
    "pyinstrument==5.1.3",
    "opentelemetry-api==1.45.2",
    "opentelemetry-sdk==1.45.2",
    "opentelemetry-instrumentation-django==0.66b2",
    "opentelemetry-instrumentation-asgi==0.66b2",
    "sentry-sdk==2.75.0",
    # the report's peers (bench/report_peers.py) and its fast-gzip extra
    "msgspec==0.23.0",
    "polars==2.1.0",
    "duckdb==2.0.1",
    "isal==1.9.1",
]

#: Distributions whose versions the report states.
VERSIONS_OF = [
    "hopwatch",
    "Django",
    "asgiref",
    "uvicorn",
    "structlog",
    "rich",  # not installed: the rich extra is for the commands, not the app
    "pyinstrument",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-django",
    "sentry-sdk",
]

# Targets from the benchmark issue.
HOP_TARGET_PCT = 2.0
REQUEST_TARGET_PCT = 3.0
#: The per-request target in CPU time: the instruction target's meaning.
REQUEST_CPU_TARGET = 1 + REQUEST_TARGET_PCT / 100
#: How far the time hopwatch records for a no-op hop may be from the bare hop's own.
TRUTH_TARGET = 0.05
THROUGHPUT_TARGET = 0.97
P99_TARGET = 1.05

PEERS = ["pyinstrument", "opentelemetry", "sentry"]


def say(message: str) -> None:
    print(f"bench: {message}", flush=True)


# --- parameters ---------------------------------------------------------------


@dataclass
class Params:
    quick: bool
    hop_rounds: int
    per_round: int
    callgrind_cases: int  # how many of bench.hops.CASES, in order
    callgrind_small: int
    callgrind_large: int
    callgrind_draws: int  # runs of each length; the marginal is their median
    rounds: int
    duration: float
    connections: int
    configs: list[str]
    endpoints: list[str]
    report_lines: int
    report_rounds: int
    request_rounds: int = 60
    request_count: int = 40
    request_processes: int = 3
    paired_rounds: int = 8
    paired_duration: float = 10.0
    frozen_rounds: int = 8
    skip: list[str] = field(default_factory=list)


FULL = {
    "hop_rounds": 120,
    "per_round": 200,
    "callgrind_cases": 4,
    # the marginal over 1,000 hops: a hop's count moves by one to two thousand
    # instructions with thread scheduling (the same lengths as bench.instructions)
    "callgrind_small": 200,
    "callgrind_large": 1200,
    # the two async_to_sync hops' marginal moves by thousands between draws of the
    # same code (how the two threads meet under valgrind): the median of three
    "callgrind_draws": 3,
    "rounds": 5,
    "duration": 4.0,
    "connections": 8,
    "report_lines": 1_000_000,
    "report_rounds": 3,
    "request_rounds": 60,
    "request_count": 40,
    "request_processes": 3,
    # the server targets: hopwatch and the baseline back to back, pairs per endpoint,
    # runs long enough to hold several full collections each (their p99 follows them)
    "paired_rounds": 8,
    "paired_duration": 10.0,
    # the same pairs again, both servers with start-up frozen (bench.server.FROZEN_PAIR)
    "frozen_rounds": 8,
}
QUICK = {
    "hop_rounds": 6,
    "per_round": 100,
    "callgrind_cases": 1,
    "callgrind_small": 50,
    "callgrind_large": 150,
    "callgrind_draws": 1,
    "rounds": 2,
    "duration": 1.0,
    "connections": 8,
    "report_lines": 20_000,
    "report_rounds": 1,
    "request_rounds": 4,
    "request_count": 40,
    "request_processes": 1,
    "paired_rounds": 2,
    "paired_duration": 1.0,
    "frozen_rounds": 1,
}


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, Params]:
    from bench import server

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (~3 min)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the markdown report")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="raw results as JSON")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["hops", "callgrind", "requests", "server", "report"],
        help="leave a part out (repeatable)",
    )
    parser.add_argument("--hop-rounds", type=int, help="per-hop: interleaved rounds")
    parser.add_argument("--per-round", type=int, help="per-hop: hops per round")
    parser.add_argument("--rounds", type=int, help="server: interleaved rounds")
    parser.add_argument(
        "--paired-rounds",
        type=int,
        help="server: pairs per endpoint of the baseline and hopwatch back to back (0: none)",
    )
    parser.add_argument(
        "--paired-duration", type=float, help="server: seconds per run of those pairs"
    )
    parser.add_argument(
        "--frozen-rounds",
        type=int,
        help="server: the pairs again with start-up frozen in both servers (0: none)",
    )
    parser.add_argument("--duration", type=float, help="server: seconds per load run")
    parser.add_argument("--connections", type=int, help="server: concurrent connections")
    parser.add_argument(
        "--configs",
        default=",".join(c.name for c in server.CONFIGS),
        help="server: comma-separated configurations (baseline always first)",
    )
    parser.add_argument(
        "--endpoints",
        default=",".join(e.path for e in server.ENDPOINTS),
        help="server: comma-separated paths",
    )
    parser.add_argument(
        "--request-rounds", type=int, help="per request: interleaved rounds (CPU time)"
    )
    parser.add_argument(
        "--request-count", type=int, help="per request: requests per process and round"
    )
    parser.add_argument(
        "--request-processes", type=int, help="per request: processes per configuration"
    )
    parser.add_argument("--report-lines", type=int, help="report: lines in the generated log")
    parser.add_argument("--report-rounds", type=int, help="report: interleaved rounds")
    parser.add_argument(
        "--loadgen",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="auto: wrk if present or installable, else the Python generator",
    )
    parser.add_argument(
        "--here",
        action="store_true",
        help="run in this interpreter; peers not importable here are skipped",
    )
    parser.add_argument(
        "--no-install", action="store_true", help="install nothing (no venv, no apt-get)"
    )
    parser.add_argument(
        "--rerender",
        action="store_true",
        help="measure nothing: rewrite --output from the raw results in --json",
    )
    args = parser.parse_args(argv)
    base = dict(QUICK if args.quick else FULL)
    for key in base:
        value = getattr(args, key, None)
        if value is not None:
            base[key] = value
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in server.CONFIG_BY_NAME]
    if unknown:
        parser.error(f"unknown configuration(s): {', '.join(unknown)}")
    configs = ["baseline", *(c for c in configs if c != "baseline")]
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    if not 1 <= base["rounds"] <= 50 or not 0 < base["duration"] <= 120:
        parser.error("--rounds takes 1-50 and --duration (0, 120] seconds")
    if not 0 <= base["paired_rounds"] <= 100 or not 0 < base["paired_duration"] <= 120:
        parser.error("--paired-rounds takes 0-100 and --paired-duration (0, 120] seconds")
    if not 0 <= base["frozen_rounds"] <= 100:
        parser.error("--frozen-rounds takes 0-100")
    if not 1 <= base["connections"] <= 256:
        parser.error("--connections takes 1-256")
    if min(base["request_rounds"], base["request_count"], base["request_processes"]) < 1:
        parser.error("--request-rounds, --request-count and --request-processes take 1 or more")
    params = Params(
        quick=args.quick, configs=configs, endpoints=endpoints, skip=list(args.skip), **base
    )
    return args, params


# --- environment: the bench virtualenv and wrk ---------------------------------


def in_bench_venv() -> bool:
    try:
        return Path(sys.prefix).resolve() == BENCH_VENV.resolve()
    except OSError:
        return False


def ensure_bench_venv(argv: list[str]) -> None:
    """Make or refresh .venvs/bench, then re-run ``python -m bench`` there (never returns),
    or return to run here when that is not possible."""
    python = BENCH_VENV / "bin" / "python"
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    stamp_value = hashlib.sha256(repr(BENCH_REQUIREMENTS).encode() + pyproject).hexdigest()
    stamp = BENCH_VENV / ".hopwatch-bench-stamp"
    if not (python.exists() and stamp.exists() and stamp.read_text() == stamp_value):
        say(f"setting up {BENCH_VENV.relative_to(ROOT)} (the peers: {', '.join(PEERS)})")
        if BENCH_VENV.exists():
            shutil.rmtree(BENCH_VENV)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        steps = [
            [sys.executable, "-m", "venv", str(BENCH_VENV)],
            [*pip, "-e", str(ROOT), *BENCH_REQUIREMENTS],
        ]
        for step in steps:
            if subprocess.call(step, cwd=ROOT) != 0:
                say(
                    "could not make the bench virtualenv (see the output above); running"
                    " here instead: configurations whose packages are missing are skipped"
                )
                return
        stamp.write_text(stamp_value)
    say(f"re-running in {BENCH_VENV.relative_to(ROOT)}")
    sys.stdout.flush()
    os.chdir(ROOT)
    os.execv(str(python), [str(python), "-m", "bench", *argv])


def find_or_install_wrk(allow_install: bool) -> str | None:
    """wrk's path; installs Debian's package when missing and we may (root, apt-get)."""
    found = shutil.which("wrk")
    if found or not allow_install:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        say("wrk is missing and cannot be installed here (needs root and apt-get)")
        return None
    say("wrk is missing: installing Debian's package (apt-get install -y wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    for attempt in ([install], [["apt-get", "update", "-q"], install]):
        ok = True
        for command in attempt:
            try:
                result = subprocess.run(
                    command, env=env, capture_output=True, text=True, timeout=300
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                say(f"`{' '.join(command)}` failed: {exc}")
                ok = False
                break
            if result.returncode != 0:
                ok = False
                tail = result.stderr.strip().splitlines()[-1:] or ["(no output)"]
                say(f"`{' '.join(command)}` failed: {tail[0]}")
                break
        if ok and shutil.which("wrk"):
            return shutil.which("wrk")
    say("could not install wrk")
    return None


# --- the machine ----------------------------------------------------------------


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _command_version(command: list[str]) -> str | None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (result.stdout or result.stderr).strip().splitlines()
    return text[0].strip() if text else None


def describe_machine(wrk: str | None) -> dict[str, Any]:
    cpuinfo = _read("/proc/cpuinfo")
    models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mhz = re.findall(r"^cpu MHz\s*:\s*([\d.]+)$", cpuinfo, re.M)
    meminfo = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    os_release = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', _read("/etc/os-release"), re.M)
    versions = {}
    for name in VERSIONS_OF:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 1
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_model": models[0].strip() if models else platform.processor() or "unknown",
        "cpu_mhz": round(float(mhz[0])) if mhz else None,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "virtualized": " hypervisor " in f" {cpuinfo.replace(chr(10), ' ')} ",
        "memory_gib": round(int(meminfo.group(1)) / 1024 / 1024, 1) if meminfo else None,
        "os": os_release.group(1) if os_release else platform.platform(),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": versions,
        "wrk": (_command_version([wrk, "-v"]) or "wrk").split(" Copyright")[0] if wrk else None,
        "valgrind": _command_version(["valgrind", "--version"]),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


# --- per hop ----------------------------------------------------------------------


def run_hops(params: Params) -> list[dict[str, Any]]:
    """``bench.hops`` in a process of its own, pinned to one core when the machine
    has two (its docstring says why)."""
    from bench import hop_path, server

    say(f"per hop: {params.hop_rounds} interleaved rounds of {params.per_round} hops per case")
    with tempfile.TemporaryDirectory(prefix="hopwatch-hops-") as tmp:
        out = Path(tmp) / "hops.json"
        command = [
            *server.pinned(1),
            sys.executable,
            "-m",
            "bench.hops",
            "--rounds",
            str(params.hop_rounds),
            "--per-round",
            str(params.per_round),
            "--json",
            str(out),
        ]
        result = subprocess.run(
            command,
            cwd=ROOT,
            env=hop_path.worker_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        stopped = hop_path.stop_line(result.stderr)
        if stopped:
            raise SystemExit(stopped)
        sys.stderr.write(result.stderr)
        result.check_returncode()
        rows: list[dict[str, Any]] = json.loads(out.read_text())
    return rows


_CALLGRIND_WORKER = (
    "import sys\n"
    "sys.setswitchinterval(100.0)  # see bench.instructions: no timed GIL hand-offs\n"
    "from bench import hops\n"
    "case = hops.CASES[int(sys.argv[1])]\n"
    "hops._measure_wall(case, sys.argv[2] == 'patched', int(sys.argv[3]), recorded=False)\n"
    # after the hops (the same in every run: the marginal cancels it)
    "from bench import hop_path\n"
    "hop_path.check()\n"
)


def _profile(tmp: str, case: int, patched: bool, n: int, draw: int) -> Path:
    """Where the callgrind run of ``n`` hops of ``case`` in ``draw`` keeps its profile."""
    return Path(tmp) / f"callgrind.{case}.{patched}.{n}.{draw}.out"


def _instructions(case: int, patched: bool, n: int, draw: int, tmp: str) -> int:
    out = _profile(tmp, case, patched, n, draw)
    command = ["valgrind", "--tool=callgrind", "--fair-sched=yes", f"--callgrind-out-file={out}"]
    command += [sys.executable, "-c", _CALLGRIND_WORKER]
    command += [str(case), "patched" if patched else "bare", str(n)]
    # Each draw its own hash seed, both lengths and both sides the same: a context
    # variable's hash (its name's hash and its address) shapes the context's tree,
    # and so what a set, reset and lookup of hopwatch's variable cost (the
    # `async_to_sync` onto the loop's own code read 3,903 in one process layout
    # and 5,596 in another); a deployment's processes each draw a seed too.
    from bench import hop_path

    env = hop_path.worker_env(PYTHONHASHSEED=str(draw), PYTHONPATH=str(ROOT))
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    stopped = hop_path.stop_line(result.stderr)
    if stopped:
        raise SystemExit(stopped)
    match = re.search(r"Collected\s*:\s*(\d+)", result.stderr)
    if result.returncode != 0 or not match:
        raise RuntimeError(f"callgrind run failed: {result.stderr.strip()[-800:]}")
    return int(match.group(1))


def run_callgrind(params: Params) -> list[dict[str, Any]] | None:
    """Marginal instructions per hop, bare and patched: (I(large) - I(small)) / (large - small).

    Each is the median over ``params.callgrind_draws`` draws (a run of each
    length per draw, draw k with hash seed k). The runs go one at a time: a
    run beside another lands in the other wake mode, thousands of
    instructions a hop away, more or less often as the machine is loaded
    (``instructions.lock_acquires``, which each draw's figure is given with).
    """
    if shutil.which("valgrind") is None:
        say("valgrind is not installed: no instruction counts")
        return None
    from bench import hops, own_code

    cases = list(range(min(params.callgrind_cases, len(hops.CASES))))
    draws = range(max(1, params.callgrind_draws))
    lengths: dict[int, tuple[int, int]] = {}
    jobs = []
    for case in cases:
        scale = hops.CASES[case].scale
        small = max(10, int(params.callgrind_small * scale))
        large = max(small + 10, int(params.callgrind_large * scale))
        lengths[case] = (small, large)
        for draw in draws:
            for patched in (False, True):
                for n in (small, large):
                    jobs.append((case, patched, n, draw))
    say(
        f"per hop: {len(jobs)} callgrind runs ({len(cases)} case(s), {len(draws)} draw(s);"
        " one at a time, a few seconds each)"
    )
    own_draws: dict[int, list[float | None]] = {}
    acquires: dict[int, list[dict[str, float]]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="hopwatch-callgrind-") as tmp:
            # one run at a time, so that a core is free for the thread each hop
            # wakes and every run lands in one wake mode (instructions.lock_acquires)
            counts = {job: _instructions(*job, tmp) for job in jobs}
            for case in cases:
                # hopwatch's own code per hop, from each draw's two patched profiles' call
                # trees; and each draw's lock.acquire calls a hop, bare and patched
                n_small, n_large = lengths[case]
                own_draws[case] = [
                    own_code.per_hop(
                        _profile(tmp, case, True, n_small, draw),
                        _profile(tmp, case, True, n_large, draw),
                        n_small,
                        n_large,
                    )
                    for draw in draws
                ]
                acquires[case] = [
                    {
                        kind: _acquires_per_hop(tmp, case, patched, n_small, n_large, draw)
                        for kind, patched in (("bare", False), ("patched", True))
                    }
                    for draw in draws
                ]
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        say(f"per hop: no instruction counts: {exc}")
        return None
    return [
        {
            "name": hops.CASES[case].name,
            **marginal_per_hop(counts, case, *lengths[case], own_draws[case], acquires[case]),
        }
        for case in cases
    ]


def _acquires_per_hop(
    tmp: str, case: int, patched: bool, small: int, large: int, draw: int
) -> float:
    """A draw's ``lock.acquire`` calls a hop (marginal), from its two runs' profiles."""
    from bench import instructions

    def of(n: int) -> int:
        return instructions.lock_acquires(_profile(tmp, case, patched, n, draw))

    return (of(large) - of(small)) / (large - small)


def marginal_per_hop(
    counts: dict[tuple[int, bool, int, int], int],
    case: int,
    small: int,
    large: int,
    own: list[float | None] | None = None,
    acquires: list[dict[str, float]] | None = None,
) -> dict[str, Any]:
    """One case's marginal per hop, bare and patched, each the median over the draws
    in ``counts`` ((case, patched, hops, draw) -> instructions), and every draw's;
    with ``own`` (hopwatch's own code in each draw), its median too (None when a
    draw has none); with ``acquires`` (each draw's ``lock.acquire`` calls a hop,
    bare and patched), each draw's beside its figures."""
    draws = sorted({d for c, _, _, d in counts if c == case})
    marginal = [
        {
            **{
                kind: (counts[(case, patched, large, draw)] - counts[(case, patched, small, draw)])
                / (large - small)
                for kind, patched in (("bare", False), ("patched", True))
            },
            **({"own": own[i]} if own is not None else {}),
            **({"acquires": acquires[i]} if acquires is not None else {}),
        }
        for i, draw in enumerate(draws)
    ]
    row = {
        "bare": statistics.median(d["bare"] for d in marginal),
        "patched": statistics.median(d["patched"] for d in marginal),
        "hops": f"{small} vs {large}",
        "draws": marginal,
    }
    if own is not None:
        row["own"] = None if None in own else statistics.median(own)
    return row


def run_requests(params: Params) -> dict[str, Any]:
    """Per request, in CPU time: ``bench.request_wall`` (its raw samples)."""
    from bench import request_wall

    say(
        f"per request: {params.request_rounds} interleaved rounds of"
        f" {params.request_count:,} requests per process, {params.request_processes}"
        " processes per configuration (CPU time)"
    )
    return request_wall.run(
        params.request_rounds, params.request_count, processes=params.request_processes
    )


def latest_request_instructions() -> dict[str, Any] | None:
    """The latest per-request instruction counts (``python -m bench.instructions``,
    which takes 10 to 20 minutes and is not part of this run), or None."""
    from bench import instructions

    try:
        report = json.loads(instructions.LATEST_REQUESTS.read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and report.get("requests") else None


#: How a checkout gets the per-request instruction count the full run reads.
COUNT_REQUESTS_FIRST = (
    "`python3 dev.py bench --instructions --only requests` counts it (10 to 20 minutes"
    " under valgrind); `python3 dev.py bench --rerender` then puts it in the report"
    " without measuring again"
)


def missing_instructions_notice(skip: list[str]) -> str | None:
    """What to run first, said at the start of a run that will judge the
    per-request instruction target with no count on record (a new checkout, or
    ``.cache/`` wiped): otherwise it is found out 40 minutes later, as "not
    measured" in the report."""
    if "requests" in skip or latest_request_instructions() is not None:
        return None
    from bench import instructions

    where = instructions.LATEST_REQUESTS.relative_to(ROOT)
    return (
        f"no per-request instruction count on record here ({where}): this run will"
        f" list that target as not measured. {COUNT_REQUESTS_FIRST}."
    )


def run_report(params: Params) -> dict[str, Any] | None:
    """The "Report" part, owned by ``bench/report_bench.py``.

    When that module exists, ``python -m bench.report_bench --lines N --rounds R``
    runs; its standard output (a markdown table: lines per second, peak memory
    and checked counts of ``hopwatch report`` next to its peers) goes
    into docs/performance.md as it is, and its progress (standard error) to the
    terminal.
    """
    if importlib.util.find_spec("bench.report_bench") is None:
        say("report: bench/report_bench.py is not there yet: section left as a placeholder")
        return None
    say(f"report: hopwatch report vs its peers on a {params.report_lines:,}-line log")
    command = [sys.executable, "-m", "bench.report_bench", "--lines", str(params.report_lines)]
    command += ["--rounds", str(params.report_rounds)]
    started = time.monotonic()
    try:
        result = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=ROOT, timeout=3600)
    except subprocess.TimeoutExpired:
        return {"error": "timed out after an hour", "command": " ".join(command[1:])}
    if result.returncode != 0:
        say(f"report: bench.report_bench failed with status {result.returncode}")
        return {
            "error": f"exit status {result.returncode} (its error is in the run's output)",
            "command": " ".join(["python", *command[1:]]),
        }
    return {
        "markdown": result.stdout.strip(),
        "command": " ".join(["python", *command[1:]]),
        "seconds": round(time.monotonic() - started, 1),
    }


# --- the document ---------------------------------------------------------------------


def _pct(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.1f}%"


def _verdict(met: bool | None) -> str:
    """A target's verdict (None: not measured, neither met nor missed)."""
    return "**not measured**" if met is None else "**met**" if met else "**missed**"


def render_machine(m: dict[str, Any], pinned: bool | None) -> str:
    from bench import hop_path

    v = m["versions"]
    lines = [
        f"- Date: {m['date']}",
        f"- CPU: {m['cpu_model']}"
        + (f", {m['cpu_mhz']} MHz" if m["cpu_mhz"] else "")
        + f"; {m['logical_cpus']} logical CPUs ({m['usable_cpus']} usable)"
        + ("; a virtual machine" if m["virtualized"] else ""),
        f"- Memory: {m['memory_gib']} GiB; {m['os']}, kernel {m['kernel']}",
        f"- {m['python']}; Django {v['Django']}, asgiref {v['asgiref']}, uvicorn {v['uvicorn']},"
        f" structlog {v['structlog']}, hopwatch {v['hopwatch']}",
        f"- Peers: pyinstrument {v['pyinstrument']}, opentelemetry-sdk {v['opentelemetry-sdk']}"
        f" with opentelemetry-instrumentation-django {v['opentelemetry-instrumentation-django']},"
        f" sentry-sdk {v['sentry-sdk']}",
        *(
            [
                f"- hopwatch's hop path: {hop_path.NAMES[m['hop_path']]}, checked by every"
                " process that measures hopwatch (it stops otherwise)"
            ]
            if m.get("hop_path") in hop_path.NAMES
            else []
        ),
        f"- Load generator: {m['wrk'] or 'the asyncio generator in bench/server.py (wrk missing)'}"
        f"; valgrind: {m['valgrind'] or 'not installed'}",
        f"- Load average (1, 5, 15 min) at the start: {m['loadavg_start']}"
        + (f", at the end: {m['loadavg_end']}" if m.get("loadavg_end") else ""),
    ]
    if pinned is not None:
        lines.append(
            "- Pinning: each server process on CPU 1 and the load generator on CPU 0 (taskset)"
            if pinned
            else "- Pinning: none (fewer than two CPUs, or no taskset)"
        )
    return "\n".join(lines)


def render_hops(hops_rows: list[dict[str, Any]] | None, cg: list[dict[str, Any]] | None) -> str:
    from bench import hops

    out = []
    if hops_rows:
        out += [
            "| hop | bare µs | with hopwatch µs | added µs | added % (wall) | added % (CPU)"
            f" | target ≤ {HOP_TARGET_PCT:g}% | recorded µs | recorded / bare |",
            "|---|---:|---:|---:|---:|---:|---|---:|---:|",
        ]
        for r in hops_rows:
            wall = (r["ratio"] - 1) * 100
            band = f"[{(r['ratio_low'] - 1) * 100:+.1f} to {(r['ratio_high'] - 1) * 100:+.1f}]"
            cpu = hops.cpu_added_pct(r)
            verdict = (
                "met" if wall <= HOP_TARGET_PCT else f"missed by {wall - HOP_TARGET_PCT:.1f} points"
            )
            truth = (
                f" | {r['recorded_us']:.1f} | {r['truth']:.3f}"
                f" [{r['truth_low']:.3f}-{r['truth_high']:.3f}]"
                if "truth" in r
                else " | - | -"
            )
            out.append(
                f"| {r['name']} | {r['bare_us']:.1f} | {r['patched_us']:.1f}"
                f" | {r['patched_us'] - r['bare_us']:+.1f} | {wall:+.1f}% {band} | {cpu:+.1f}%"
                f" | {verdict}{truth} |"
            )
        out += [
            "",
            "Wall ratios are medians over rounds of the patched round's time to the bare"
            " round's next to it, with the 95% interval of that median in brackets (CPU:"
            ' the ratio of the medians). "Recorded" is the mean wall time hopwatch recorded'
            " for the hop in the patched rounds (from the call to the caller's resumption),"
            " held against the bare hop's time as its caller measures it without hopwatch,"
            " round by round (the median, and its interval): the truth target"
            f" (within {TRUTH_TARGET * 100:g}%). hopwatch's clock readings sit inside its own"
            " set-up and wrap-up, so what it records leaves its own work out.",
        ]
    else:
        out.append("_Not run (`--skip hops`)._")
    out.append("")
    if cg:
        out += [
            "Instructions per hop (valgrind `--tool=callgrind`, marginal: the difference between"
            " two runs of different lengths, divided by the difference in hops, so start-up"
            f" cancels out; {_draws_phrase(cg)}):",
            "",
            "| hop | hops per run | bare instructions | with hopwatch | added | added %"
            " | added, each draw | hopwatch's own code | own % | own, each draw |",
            "|---|---|---:|---:|---:|---:|---|---:|---:|---|",
        ]
        for r in cg:
            added = r["patched"] - r["bare"]
            own = r.get("own")
            own_cells = "- | -" if own is None else f"{own:,.0f} | {own / r['bare'] * 100:.2f}%"
            draws = r.get("draws") or []
            each = ", ".join(f"{d['patched'] - d['bare']:+,.0f}" for d in draws)
            own_each = ", ".join(
                f"{d['own']:,.0f}" for d in draws if isinstance(d.get("own"), int | float)
            )
            out.append(
                f"| {r['name']} | {r['hops']} | {r['bare']:,.0f} | {r['patched']:,.0f}"
                f" | {added:+,.0f} | {added / r['bare'] * 100:+.2f}% | {each or '-'}"
                f" | {own_cells} | {own_each or '-'} |"
            )
        from bench import instructions

        waits: list[str] = []
        if all(r.get("draws") and all("acquires" in d for d in r["draws"]) for r in cg):
            labels = (("bare", "bare"), ("patched", "with hopwatch"))
            acquires = [
                (r["name"], {label: [d["acquires"][k] for d in r["draws"]] for k, label in labels})
                for r in cg
            ]
            waits = ["", instructions.wake_modes(acquires, ("bare", "with hopwatch"))]
        out += [
            "",
            '"Added" is everything the process did more per hop with hopwatch. A run'
            " lands in one of two wake modes for all of its hops, bare and with hopwatch"
            ' alike, thousands of instructions a hop apart ("Two draws", above): the runs'
            " go one at a time, so that on an idle machine every run lands in the same"
            " one, and the line after this paragraph says whether they did."
            ' "hopwatch\'s own code" is what runs'
            " because of hopwatch's C functions, counted from the same profiles' call"
            " trees (`bench/own_code.py` says what is in it and what is not). It repeats"
            " to within a few dozen instructions under one hash seed, but not across"
            " seeds: a context variable's hash (its name's hash and its address) shapes"
            " the context's tree, and with it what setting, resetting and reading"
            " hopwatch's variable cost (3,903 or 5,596 on the `async_to_sync` onto the"
            " loop, 2026-12-03), so each draw has a seed of its own, as each of a"
            " deployment's processes does.",
            *waits,
        ]
    else:
        out.append("_No instruction counts (valgrind missing, or `--skip callgrind`)._")
    return "\n".join(out)


def _draws_phrase(cg: list[dict[str, Any]]) -> str:
    """How many draws the per-hop instruction counts are the median of."""
    n = max((len(r.get("draws") or []) for r in cg), default=0)
    if n <= 1:
        return "one run of each length, hash seed 0"
    return (
        f"the median of {n} draws (a run of each length per draw, draw k with hash seed k)"
        ' for the bare and the patched hop apart; "added" is the difference of the'
        " two medians"
    )


def _frozen_why(s: dict[str, Any]) -> str:
    """One sentence for the server's "Why": hopwatch's p99 and throughput ratios in
    the frozen pairs against the pairs as run, per endpoint ("" without them)."""
    said = []
    for endpoint in s["endpoints"]:
        hw = s["table"][endpoint["path"]].get("hopwatch") or {}
        frozen, paired = hw.get("frozen"), hw.get("paired")
        if frozen and paired:
            said.append(
                f"`{endpoint['path']}` p99 {_pct(frozen['p99_ratio'])} (as run"
                f" {_pct(paired['p99_ratio'])}) and req/s {frozen['tp_ratio']:.3f}x (as run"
                f" {paired['tp_ratio']:.3f}x)"
            )
    if not said:
        return ""
    return (
        " With start-up's objects frozen in both servers (the frozen pairs above), a full"
        " collection walks none of them (Django's, hopwatch's and structlog's modules among"
        " them), and hopwatch read " + "; ".join(said) + "."
    )


def _pair_figures(pairs: dict[str, Any]) -> str:
    """Both sides' medians and hopwatch's ratios of a set of back-to-back pairs
    (``_pairs``), in words."""
    return (
        f"req/s {pairs['rps']:.0f} against {pairs['base_rps']:.0f},"
        f" **{pairs['tp_ratio']:.3f}x** [{pairs['tp_low']:.3f}-{pairs['tp_high']:.3f}];"
        f" p99 {pairs['p99_ms']:.1f} ms against {pairs['base_p99_ms']:.1f},"
        f" **{_pct(pairs['p99_ratio'])}** [{_pct(pairs['p99_low'])} to"
        f" {_pct(pairs['p99_high'])}]"
    )


def render_server(s: dict[str, Any] | None) -> str:
    if not s:
        return "_Not run (`--skip server`)._"
    with_floor = any(
        (s["table"][e["path"]].get("hopwatch") or {}).get("paired", {}).get("floor")
        for e in s["endpoints"]
    )
    out = [
        f"{s['rounds']} rounds x {s['duration']:g} s per configuration and endpoint,"
        f" {s['connections']} keep-alive connections, load by"
        f" {'wrk (one thread)' if s['loadgen'] == 'wrk' else 'the asyncio generator'}."
        " Ratios are medians of per-round ratios to the baseline measured in the same round"
        " (range over rounds in brackets)."
        + (
            f" Then, per endpoint, {s['paired_rounds']} pairs of the baseline and hopwatch"
            f" alone, {s.get('paired_duration') or s['duration']:g} s each, back to back,"
            " which of them goes first alternating: within a pair no drift of the machine"
            " separates the two runs, and the targets are judged on those pairs (a run's"
            " p99 follows the full collections inside it, so these runs are long enough to"
            " hold several)."
            + (
                " The hand-written access log runs beside each pair, the three in turn"
                " (each order equally often), so hopwatch is read against the line's floor"
                " the same way."
                if with_floor
                else ""
            )
            if s.get("paired_rounds")
            else ""
        ),
        "",
    ]
    for endpoint in s["endpoints"]:
        path = endpoint["path"]
        out += [
            f"**`{path}`**: {endpoint['label']}",
            "",
            "| configuration | req/s | x baseline req/s | p50 ms | p99 ms | x baseline p99"
            " | errors |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for c in s["configs"]:
            row = s["table"][path][c["name"]]
            if c["name"] == "baseline":
                tp, p99 = "1", "1"
            else:
                tp = f"{row['tp_ratio']:.3f} [{row['tp_min']:.2f}-{row['tp_max']:.2f}]"
                p99 = f"{row['p99_ratio']:.3f} [{row['p99_min']:.2f}-{row['p99_max']:.2f}]"
            out.append(
                f"| {c['label']} | {row['rps']:.0f} | {tp} | {row['p50_ms']:.1f}"
                f" | {row['p99_ms']:.1f} | {p99} | {row['errors']} |"
            )
        out.append("")
        paired = s["table"][path].get("hopwatch", {}).get("paired")
        if paired:
            out += [
                f"hopwatch against the baseline back to back, {paired['pairs']} pairs:"
                f" {_pair_figures(paired)} (medians of the ratio within each pair;"
                " brackets: the 95% interval of that median). The targets are judged on these.",
                "",
            ]
            floor = paired.get("floor")
            if floor:
                out += [
                    f"The hand-written access log (the line's floor) beside each of those pairs,"
                    f" {floor['groups']} groups of three: req/s {floor['rps']:.0f},"
                    f" {floor['tp_ratio']:.3f}x the baseline's [{floor['tp_low']:.3f}-"
                    f"{floor['tp_high']:.3f}], p99 {floor['p99_ms']:.1f} ms,"
                    f" {_pct(floor['p99_ratio'])} [{_pct(floor['p99_low'])} to"
                    f" {_pct(floor['p99_high'])}]. **hopwatch against the access log**, in the"
                    f" same groups: req/s **{floor['hw_tp_ratio']:.3f}x**"
                    f" [{floor['hw_tp_low']:.3f}-{floor['hw_tp_high']:.3f}], p99"
                    f" **{_pct(floor['hw_p99_ratio'])}** [{_pct(floor['hw_p99_low'])} to"
                    f" {_pct(floor['hw_p99_high'])}]: what hopwatch costs beyond a line per"
                    " request written the plainest way.",
                    "",
                ]
        frozen = s["table"][path].get("hopwatch", {}).get("frozen")
        if frozen:
            out += [
                f"The same pairs with start-up frozen in both servers (`gc.collect()` then"
                f" `gc.freeze()` once the application is made, as the FAQ advises),"
                f" {frozen['pairs']} pairs: {_pair_figures(frozen)}. The collector then walks"
                " none of start-up's"
                " objects (Django's, hopwatch's and structlog's modules alike), so these pairs"
                " read what the requests themselves cost the tail; the targets are judged on"
                " the pairs above, as the servers run by default.",
                "",
            ]
    if s["skipped"]:
        out.append(
            "Not run: " + "; ".join(f"{name} ({why})" for name, why in s["skipped"].items()) + "."
        )
        out.append("")
    from bench.server import COLLECTOR

    # what each tool counted; each server's collector summary has a table of its own
    recorded = {
        name: kept
        for name, ev in s["evidence"].items()
        if (kept := {k: v for k, v in ev.items() if k != COLLECTOR})
    }
    if recorded:
        out.append(
            "Each tool really recorded (counted inside each server, over the whole run):"
            + "; ".join(
                f" {name}: "
                + ", ".join(
                    f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in ev.items()
                )
                for name, ev in recorded.items()
            )
            + "."
        )
    collector = _render_collector(s)
    if collector:
        out += ["", collector]
    otel = _render_otel_costs(s)
    if otel:
        out += ["", otel]
    return "\n".join(out)


def _added_us(table: dict[str, Any], name: str) -> float | None:
    """µs per request ``name`` adds to the baseline, from the median ratio within rounds."""
    row, base = table.get(name), table.get("baseline")
    if not row or not base or not base["rps"] or not row.get("tp_ratio"):
        return None
    return (1 / row["tp_ratio"] - 1) / base["rps"] * 1e6


def _render_collector(s: dict[str, Any]) -> str:
    """Each server's garbage collections per 1,000 requests it served (warm-ups
    included) and its time in the collector per request: a full collection holds
    up every connection for its whole length, which is what moves a short run's p99."""
    from bench.server import COLLECTOR

    served = s.get("served") or {}
    labels = {c["name"]: c["label"] for c in (*s["configs"], *s.get("frozen_configs", []))}
    rows = []
    for name, ev in s["evidence"].items():
        found = ev.get(COLLECTOR)
        requests = served.get(name, 0)
        if not isinstance(found, dict) or not requests:
            continue
        per_k = [n * 1000 / requests for n in found["collections"]]
        us = sum(found["ms"]) * 1000 / requests
        rows.append(
            f"| {labels.get(name, name)} | {per_k[0]:.1f} | {per_k[1]:.1f} | {per_k[2]:.2f}"
            f" | {found['max_ms'][2]:.1f} | {us:.1f} |"
        )
    if not rows:
        return ""
    return "\n".join(
        [
            "The collector in each server (`gc.callbacks`, over the server's whole life,"
            " warm-ups included): collections per 1,000 requests served, the longest"
            " full collection, and the time in the collector per request.",
            "",
            "| configuration | young | gen1 | full | longest full ms | µs per request |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )


def _render_otel_costs(s: dict[str, Any]) -> str:
    """hopwatch's OpenTelemetry output, priced against the same server without it."""
    parts = []
    for endpoint in s["endpoints"]:
        table = s["table"][endpoint["path"]]
        hopwatch = _added_us(table, "hopwatch")
        metrics = _added_us(table, "hopwatch-otel-metrics")
        otel = _added_us(table, "opentelemetry")
        spans = _added_us(table, "opentelemetry-hopwatch-spans")
        said = []
        if hopwatch is not None and metrics is not None:
            said.append(
                f"OTEL_METRICS {metrics - hopwatch:+.0f} µs per request over hopwatch alone"
                f" ({hopwatch:+.0f} µs → {metrics:+.0f} µs over the bare app)"
            )
        if hopwatch is not None and otel is not None and spans is not None:
            beyond = spans - otel - hopwatch
            said.append(
                f"hopwatch with OTEL_SPANS under OpenTelemetry's Django instrumentation"
                f" {spans - otel:+.0f} µs per request over OpenTelemetry alone: hopwatch's own"
                f" {hopwatch:+.0f} µs and the crossing spans about {beyond:+.0f} µs more"
            )
        if said:
            parts.append(f"On `{endpoint['path']}`: " + "; ".join(said) + ".")
    if not parts:
        return ""
    return (
        "hopwatch's OpenTelemetry output (medians of ratios within rounds, as µs per request"
        " on this one-core server; differences of noisy numbers, so read them to within tens"
        " of µs): " + " ".join(parts)
    )


def summarize_server(results: Any) -> dict[str, Any]:
    """ServerResults -> plain data (medians, ratios, ranges) for the JSON and the doc."""
    from bench.server import FROZEN_PAIR

    table: dict[str, dict[str, dict[str, Any]]] = {}
    for endpoint in results.endpoints:
        path = endpoint.path
        table[path] = {}
        for config in results.configs:
            name = config.name
            row: dict[str, Any] = {
                "rps": results.median(name, path, "rps"),
                "p50_ms": results.median(name, path, "p50_ms"),
                "p99_ms": results.median(name, path, "p99_ms"),
                "errors": results.errors(name, path),
                "trials": [asdict(t) for t in results.trials[(name, path)]],
            }
            if name != "baseline":
                tp = results.ratios(name, path, "rps")
                p99 = results.ratios(name, path, "p99_ms")
                row.update(
                    tp_ratio=statistics.median(tp),
                    tp_min=min(tp),
                    tp_max=max(tp),
                    p99_ratio=statistics.median(p99),
                    p99_min=min(p99),
                    p99_max=max(p99),
                )
            paired = _pairs(results, path, frozen=False) if name == "hopwatch" else None
            if paired:
                row["paired"] = paired
                floor = _paired_floor(results, path)
                if floor:
                    row["paired"]["floor"] = floor
            frozen = _pairs(results, path, frozen=True) if name == "hopwatch" else None
            if frozen:
                row["frozen"] = frozen
            table[path][name] = row
    return {
        "rounds": results.rounds,
        "paired_rounds": max((len(v) for v in results.paired.values()), default=0),
        "paired_duration": results.paired_duration,
        "duration": results.duration,
        "connections": results.connections,
        "loadgen": results.loadgen,
        "pinned": results.pinned,
        "configs": [{"name": c.name, "label": c.label} for c in results.configs],
        "frozen_rounds": max((len(v) for v in results.frozen.values()), default=0),
        # the servers of the frozen pairs, which run in no round (bench.server.FROZEN_PAIR)
        "frozen_configs": [
            {"name": c.name, "label": c.label} for c in FROZEN_PAIR if results.frozen
        ],
        "endpoints": [
            {"path": e.path, "label": e.label, "hops": e.hops} for e in results.endpoints
        ],
        "table": table,
        "skipped": results.skipped,
        "evidence": results.evidence,
        "served": results.served,
    }


def _pairs(results: Any, path: str, frozen: bool) -> dict[str, Any] | None:
    """The back-to-back pairs of the baseline and hopwatch on ``path`` (the frozen
    ones with ``frozen``): each side's medians, and the ratio within a pair with the
    95% interval of its median; None when they did not run."""
    from bench.stats import median_interval

    pairs = (results.frozen if frozen else results.paired).get(path) or []
    tp_pairs = results.paired_ratios(path, "rps", frozen=frozen)
    p99_pairs = results.paired_ratios(path, "p99_ms", frozen=frozen)
    if not (pairs and tp_pairs and p99_pairs):
        return None
    (tp_low, tp_high), (p99_low, p99_high) = median_interval(tp_pairs), median_interval(p99_pairs)
    return {
        "pairs": len(pairs),
        "trials": [[asdict(b), asdict(h)] for b, h in pairs],
        # medians of each side, for the time per request and the text
        "base_rps": statistics.median(b.rps for b, _ in pairs),
        "rps": statistics.median(h.rps for _, h in pairs),
        "base_p99_ms": statistics.median(b.p99_ms for b, _ in pairs),
        "p99_ms": statistics.median(h.p99_ms for _, h in pairs),
        "tp_ratio": statistics.median(tp_pairs),
        "tp_low": tp_low,
        "tp_high": tp_high,
        "p99_ratio": statistics.median(p99_pairs),
        "p99_low": p99_low,
        "p99_high": p99_high,
    }


def _paired_floor(results: Any, path: str) -> dict[str, Any] | None:
    """The access log's runs beside the back-to-back pairs on ``path``: its medians,
    its ratios to the baseline and hopwatch's to it (each within a group, with the
    95% interval of the median), or None when it did not run there."""
    from bench.stats import median_interval

    trials = results.floor.get(path) or []
    if not trials:
        return None
    out: dict[str, Any] = {
        "groups": len(trials),
        "trials": [asdict(t) for t in trials],
        "rps": statistics.median(t.rps for t in trials),
        "p99_ms": statistics.median(t.p99_ms for t in trials),
    }
    for key, of, attr in (
        ("tp", "floor", "rps"),
        ("p99", "floor", "p99_ms"),
        ("hw_tp", "hopwatch", "rps"),
        ("hw_p99", "hopwatch", "p99_ms"),
    ):
        ratios = results.floor_ratios(path, attr, of)
        if not ratios:
            return None
        low, high = median_interval(ratios)
        out[f"{key}_ratio"] = statistics.median(ratios)
        out[f"{key}_low"], out[f"{key}_high"] = low, high
    return out


def _server_verdicts(hw: dict[str, Any]) -> tuple[float, str, float, str]:
    """hopwatch's throughput and p99 ratios the server targets are judged on, and
    how each reads: the back-to-back pairs' median when the run made them, else
    the rounds'."""
    paired, frozen = hw.get("paired"), hw.get("frozen")
    # beside the verdict, not in it: the frozen pairs (bench.server.FROZEN_PAIR)
    tp_frozen = p99_frozen = ""
    if frozen:
        tp_frozen = (
            f"; start-up frozen in both: {frozen['tp_ratio']:.3f}x"
            f" [{frozen['tp_low']:.3f}-{frozen['tp_high']:.3f}] over {frozen['pairs']} pairs"
        )
        p99_frozen = (
            f"; start-up frozen in both: {_pct(frozen['p99_ratio'])}"
            f" [{_pct(frozen['p99_low'])} to {_pct(frozen['p99_high'])}] over"
            f" {frozen['pairs']} pairs"
        )
    if paired:
        n = paired["pairs"]
        return (
            paired["tp_ratio"],
            f"{paired['tp_ratio']:.3f}x [{paired['tp_low']:.3f}-{paired['tp_high']:.3f}]"
            f" over {n} back-to-back pairs (in the rounds with every configuration:"
            f" {hw['tp_ratio']:.3f}x){tp_frozen}",
            paired["p99_ratio"],
            f"{_pct(paired['p99_ratio'])} [{_pct(paired['p99_low'])} to"
            f" {_pct(paired['p99_high'])}] over {n} back-to-back pairs (in the rounds:"
            f" {_pct(hw['p99_ratio'])}){p99_frozen}",
        )
    return (
        hw["tp_ratio"],
        f"{hw['tp_ratio']:.3f}x{tp_frozen}",
        hw["p99_ratio"],
        f"{_pct(hw['p99_ratio'])}{p99_frozen}",
    )


def judge(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target: what, the result, met or not."""
    rows: list[dict[str, Any]] = []
    rows += _judge_requests(data)
    hops_rows = data.get("hops")
    if hops_rows:
        worst = max((r["ratio"] - 1) * 100 for r in hops_rows)
        best = min((r["ratio"] - 1) * 100 for r in hops_rows)
        cg = data.get("callgrind") or []
        instr, instr_worst = "", None
        if cg:
            # The range across the hops, and which one is the worst: the target
            # holds for every hop, in instructions as in wall time.
            added = [((r["patched"] / r["bare"] - 1) * 100, r["name"]) for r in cg]
            instr_worst = max(added)
            instr = (
                f"; instructions {min(added)[0]:+.2f}% to {instr_worst[0]:+.2f}%"
                f" (the most: {instr_worst[1]})"
            )
            own = [r["own"] / r["bare"] * 100 for r in cg if r.get("own") is not None]
            if len(own) == len(cg):
                # Reported beside the marginal, which is what is judged (see own_code).
                instr += f"; hopwatch's own code {min(own):.2f}% to {max(own):.2f}%"
        rows.append(
            {
                "target": f"per hop: hopwatch adds at most {HOP_TARGET_PCT:g}% of a bare hop",
                "result": f"wall {best:+.1f}% to {worst:+.1f}% across the four hops{instr}",
                "met": worst <= HOP_TARGET_PCT
                and (instr_worst is None or instr_worst[0] <= HOP_TARGET_PCT),
            }
        )
        truth = [r["truth"] for r in hops_rows if "truth" in r]
        if truth:
            own = [r["recorded_us"] / r["patched_us"] for r in hops_rows if "truth" in r]
            rows.append(
                {
                    "target": "truth: the time hopwatch records for a no-op hop is within"
                    f" {TRUTH_TARGET * 100:g}% of the bare hop's own",
                    "result": f"{min(truth):.3f} to {max(truth):.3f} of the bare hop across"
                    f" the {len(truth)} hops (of the caller's time with hopwatch:"
                    f" {min(own):.3f} to {max(own):.3f})",
                    "met": all(abs(t - 1) <= TRUTH_TARGET for t in truth),
                }
            )
    s = data.get("server")
    if s and "hopwatch" in s["table"][s["endpoints"][0]["path"]]:
        for endpoint in s["endpoints"]:
            path = endpoint["path"]
            hw = s["table"][path]["hopwatch"]
            tp, tp_result, p99, p99_result = _server_verdicts(hw)
            rows.append(
                {
                    "target": f"server `{path}`: hopwatch ≥ {THROUGHPUT_TARGET:g}x baseline req/s",
                    "result": tp_result,
                    "met": tp >= THROUGHPUT_TARGET,
                }
            )
            rows.append(
                {
                    "target": f"server `{path}`: hopwatch p99 within {(P99_TARGET - 1) * 100:g}%"
                    " of baseline",
                    "result": p99_result,
                    "met": p99 <= P99_TARGET,
                }
            )
            peers = [p for p in PEERS if p in s["table"][path]]
            if peers:
                worse = [p for p in peers if s["table"][path][p]["tp_ratio"] >= hw["tp_ratio"]]
                ratios = ", ".join(f"{p} {s['table'][path][p]['tp_ratio']:.3f}x" for p in peers)
                rows.append(
                    {
                        "target": f"server `{path}`: less overhead (req/s lost) than every peer",
                        "result": (
                            f"hopwatch {hw['tp_ratio']:.3f}x vs {ratios}"
                            + ("" if not worse else f": not lighter than {', '.join(worse)}")
                            + ("" if len(peers) == len(PEERS) else " (other peers not run)")
                        ),
                        "met": not worse,
                    }
                )
    return rows


def render_requests(cpu: dict[str, Any] | None, counted: dict[str, Any] | None) -> str:
    out = []
    if cpu:
        from bench import request_wall

        toggled = (
            "; and one process serving all five configurations in turn"
            if request_wall.summarize_toggled(cpu)
            else ""
        )
        out += [
            "The in-process site of `bench.instructions` (Django's `ASGIHandler`,"
            " startproject's middleware, an async view: 15 hops, the line written to a file"
            " through a `logging.FileHandler`), three processes per configuration with paired"
            f" hash seeds, each part of hopwatch added in turn{toggled}. Reproduce with"
            " `python -m bench.request_wall`.",
            "",
            request_wall.format_table(cpu),
        ]
    else:
        out.append("_Not run (`--skip requests`)._")
    if counted:
        from bench import instructions

        made = _measured_with(counted)
        out += [
            "",
            "In instructions, from the latest `python -m bench.instructions` run"
            + (f" ({made})" if made else "")
            + "; it takes 10 to 20 minutes under valgrind, so this run does not repeat it:",
            "",
            instructions.format_report({**counted, "hops": []}),
        ]
    return "\n".join(out)


def _measured_with(counted: dict[str, Any]) -> str:
    """Where a bench.instructions run was made: "CPython 3.11.7, Django 5.2.19, ..., date"."""
    where = counted.get("measured") or {}
    parts = [str(where["python"])] if "python" in where else []
    parts += [f"{k} {where[k]}" for k in ("Django", "asgiref") if k in where]
    if "commit" in where:
        dirty = " with uncommitted changes" if where.get("dirty") else ""
        parts.append(f"at {str(where['commit'])[:12]}{dirty}")
    parts += [str(where["date"])] if "date" in where else []
    return ", ".join(parts)


def _seeds(n: int) -> str:
    return "1 hash seed" if n == 1 else f"{n} hash seeds"


def _judge_requests(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-request targets: instructions (the latest ``bench.instructions`` run,
    carried in the results as it was read) and CPU time (this run's)."""
    rows = []
    counted = data.get("instructions_requests")
    if counted:
        from bench import instructions

        requests = counted["requests"]
        bare, full = requests["bare"]["total"], requests["hopwatch"]["total"]
        seeds = counted.get("per_seed", {})
        by_seed = [
            (h / b - 1) * 100
            for h, b in zip(
                seeds.get("request:hopwatch", []), seeds.get("request:bare", []), strict=True
            )
        ]
        spread = f"; seeds {min(by_seed):+.1f}% to {max(by_seed):+.1f}%" if len(by_seed) > 1 else ""
        made = _measured_with(counted)
        rows.append(
            {
                "target": f"per request: hopwatch adds at most {REQUEST_TARGET_PCT:g}% of a bare"
                " request's instructions",
                "result": f"{full - bare:+,.0f} on {bare:,.0f} ({(full / bare - 1) * 100:+.2f}%),"
                f" the mean over {_seeds(counted.get('seeds', 1))}"
                + (
                    f" (each seed's run made {counted['repeat']} times,"
                    f" {instructions.repeat_kept(counted['repeat'])})"
                    if counted.get("repeat", 1) > 1
                    else ""
                )
                + spread
                + " (`python -m bench.instructions`, not re-run by this run"
                + (f": {made}" if made else "")
                + ")",
                "met": (full / bare - 1) * 100 <= REQUEST_TARGET_PCT,
            }
        )
    elif data.get("request_cpu"):
        # The request part ran, but no instruction count of it is on record here
        # (a new checkout: .cache/ is not in git). Say so; never drop the target.
        rows.append(
            {
                "target": f"per request: hopwatch adds at most {REQUEST_TARGET_PCT:g}% of a bare"
                " request's instructions",
                "result": "no `python -m bench.instructions` run on record on this machine:"
                f" {COUNT_REQUESTS_FIRST}",
                "met": None,
            }
        )
    cpu = data.get("request_cpu")
    if cpu:
        from bench import request_wall

        by_config = {r["config"]: r for r in request_wall.summarize(cpu)}
        row, bare_us = by_config["hopwatch"], by_config["bare"]["cpu_us"]
        # Judged by the separate processes; the figure with one memory layout for
        # both (the toggled process, when it ran all five) shown beside it.
        toggled = {r["config"]: r for r in request_wall.summarize_toggled(cpu) or []}
        one = toggled.get("hopwatch")
        rows.append(
            {
                "target": "per request, in CPU time (the same requests in process):"
                f" hopwatch at most {REQUEST_CPU_TARGET:g}x bare",
                "result": f"{row['ratio']:.3f}x [{row['ratio_low']:.3f}-{row['ratio_high']:.3f}]"
                f" ({bare_us:.0f} µs bare, {row['cpu_us'] - bare_us:+.0f} µs)"
                + (
                    f"; in one process {one['ratio']:.3f}x"
                    f" [{one['ratio_low']:.3f}-{one['ratio_high']:.3f}]"
                    if one
                    else ""
                ),
                "met": row["ratio"] <= REQUEST_CPU_TARGET,
            }
        )
    return rows


def _request_floor(rows: dict[str, dict[str, Any]], cpu: dict[str, Any]) -> list[str]:
    """The per-request target against its floor: the hand-written access log the
    toggled process serves beside hopwatch (bench/access_log.py), if it did
    (``rows``: the toggled process's summary by configuration)."""
    from bench import request_wall

    access, full, hops = rows.get("access-log"), rows.get("hopwatch"), rows.get("hops")
    if access is None or full is None or hops is None:
        return []
    bare_us = rows["bare"]["cpu_us"]
    full_us = (full["ratio"] - 1) * bare_us
    rest_us = full_us - hops["step_us"]
    allowed_us = REQUEST_TARGET_PCT / 100 * bare_us
    sizes = request_wall.line_bytes(cpu)
    size = f" ({sizes['access-log']:,.0f} bytes)" if "access-log" in sizes else ""
    return [
        "The floor under the line, in the same process: a hand-written access log"
        " (`bench/access_log.py`: an async middleware, one JSON line per request as long"
        f" as hopwatch's{size}, `json.dumps`, `logger.info` through a `FileHandler`)"
        f" costs {access['ratio']:.3f}x [{access['ratio_low']:.3f}-{access['ratio_high']:.3f}],"
        f" {access['step_us']:+.0f} µs a request, against the {allowed_us:.0f} µs"
        f" ({REQUEST_TARGET_PCT:g}%) the target allows for all of hopwatch. hopwatch costs"
        f" {full['ratio']:.3f}x, about {full_us:+.0f} µs: its hops {hops['step_us']:+.0f} µs"
        f" and everything else (the request's record, its names and fold, the line built"
        f" and written) about {rest_us:+.0f} µs, where the access log alone takes"
        f" {access['step_us']:+.0f}. A line written per request through `logging` costs"
        " more than the target on a request this short, whoever writes it; the same"
        f" {full_us:.0f} µs is {REQUEST_TARGET_PCT:g}% of a request of"
        f" {full_us / (REQUEST_TARGET_PCT / 100) / 1000:.1f} ms of CPU.",
        "",
    ]


def render_misses(data: dict[str, Any], verdicts: list[dict[str, Any]]) -> str:
    out = []
    hops_rows = data.get("hops")
    cg = data.get("callgrind") or []
    if any(v["met"] is False and v["target"].startswith("per hop") for v in verdicts):
        worst = max(hops_rows or [], key=lambda r: r["ratio"])
        most = max(cg, key=lambda r: r["patched"] / r["bare"]) if cg else None
        out += [
            "### Per hop: missed",
            "",
            f"hopwatch adds up to {(worst['ratio'] - 1) * 100:.1f}% to a"
            f" bare hop here ({worst['name']}, {worst['patched_us'] - worst['bare_us']:+.1f} µs),"
            f" against a target of {HOP_TARGET_PCT:g}%"
            + (
                f"; in instructions, up to {most['patched'] - most['bare']:+,.0f} on a"
                f" {most['bare']:,.0f}-instruction bare hop"
                f" ({(most['patched'] / most['bare'] - 1) * 100:+.2f}%, {most['name']})"
                + (
                    f", of which hopwatch's own code is {most['own']:,.0f}"
                    f" ({most['own'] / most['bare'] * 100:.2f}%; see the per-hop section)."
                    if most.get("own") is not None
                    else "."
                )
                if most
                else "."
            ),
            "",
            "Why: the hop path is the C accelerator (`hopwatch/_speedups.c`); what it still"
            " adds to a bare hop, read from callgrind profiles (docs/performance-history.md):"
            " the awaitable around asgiref's coroutine and the extra"
            " `send` level on each step, the `Hop` object, attribution (a cache hit), the"
            " accounting into the request's ledger and, for `async_to_sync` only, the"
            " `current_scope` context variable set to the hop while its code runs on the"
            " loop, which is how a `sync_to_async` made there, or in a task started there,"
            " finds the crossing it is inside. (The code runs in a copy of its task's"
            " context with the variable set, dropped before asgiref copies the context back,"
            " so asgiref 3.9 and later never carry it between the two sides; the request"
            " itself is in no variable of hopwatch's under Django's ASGI handler: it rides on"
            " the request's ThreadSensitiveContext.)"
            " Measured part by part in wall time (docs/performance-history.md,"
            " 2026-12-02, morning: throwaway builds with one part switched off, pinned,"
            " paired rounds), the"
            " `async_to_sync` onto the loop's share was: the class-level patch itself +0.5"
            " points, `AsyncToSync.__call__`'s work (attribution, the scope's lookup, the `Hop`,"
            " the ledger) +2.0, the variable's set and reset +1.3, and the loop check +1.1,"
            " which was a `getpid()` system call inside `asyncio.get_running_loop()` on Python"
            " 3.11; that check now reads the loop's `_thread_id` instead.",
            "",
            "What would close it: for `async_to_sync` onto the loop, about 1,200 of its"
            " instructions are the variable's set in the copy of the task's context"
            " (CPython's `PyContextVar_Set`: a new HAMT node and a `Token`) and the copy"
            " itself; the reset that undid the set in the task's own context (another 800)"
            " is gone since 2026-12-03, night. The rest is spread thin (attribution, the"
            " scope's lookup, the awaitable around its code, the ledger's accounting, none"
            " above 300). The variable is how a crossing made in a task the code starts"
            " finds its parent (asyncio keeps no other link from a task to the task that"
            " made it); on the Intel Xeon of 2026-12-04 the variable was about one point of that"
            " hop's +4.3% in wall time, and without it the hop still read +1.8% to +4.0% (a"
            " throwaway build, docs/performance-history.md, 2026-12-04, afternoon)."
            " Past that: fewer objects and fewer memory touches per hop, measured"
            " in wall time the same way, since an instruction of hopwatch's costs two to"
            " three times a bare hop's average one here.",
            "",
        ]
    request_misses = [
        v for v in verdicts if v["met"] is False and v["target"].startswith("per request")
    ]
    if request_misses:
        out += ["### Per request: missed", ""]
        out += [f"- {v['target']}: {v['result']}." for v in request_misses]
        out += [
            "",
            "Why: what hopwatch adds to a request is its 15 hops' share (the per-hop"
            " section), the request scope and the line; the table in the per-request section"
            " gives each part. In time an instruction of hopwatch's costs more than the"
            " bare request's average one: it runs in short bursts between Django's code, on"
            " data the request has pushed out of the CPU's caches since the last hop"
            " (callgrind's cache and branch simulation, the full product against the bare"
            " site, on the Intel Xeon of 2026-12-04: 2.2% more instructions, but 5,658 more"
            " instruction-cache misses, +6.9%, 3,988 more data-cache read misses, +5.6%, and"
            " 6,467 more mispredicted branches, +3.4%, per request, spread over hopwatch's C"
            " and its Python; hopwatch's own C takes one instruction-cache miss for every 8"
            " of its instructions, the bare request one for every 76: docs/"
            "performance-history.md, 2026-12-04, afternoon). And one cost no instruction"
            " count sees: the line's write system call (the `FileHandler`'s flush), about"
            " 13 µs inside a request where a loop of writes takes 3 to 5 µs each: after two"
            " milliseconds of user code the kernel's code and data are cold too (by hand, on"
            " the AMD EPYC machine: a 2 KB write after a 2 ms busy loop took 14 µs on ext4,"
            " 12 µs on tmpfs).",
            "",
        ]
        sensitive = next((r for r in hops_rows or [] if "thread-sensitive" in r["name"]), None)
        tight_us = sensitive["patched_us"] - sensitive["bare_us"] if sensitive else None
        # The toggled process's rows by configuration (summarized once: a bootstrap).
        toggled: dict[str, dict[str, Any]] = {}
        cpu = data.get("request_cpu")
        if cpu:
            from bench import request_wall

            toggled = {r["config"]: r for r in request_wall.summarize_toggled(cpu) or []}
        hops_row = toggled.get("hops")
        if hops_row is not None:
            added_us = hops_row["step_us"]  # hops over bare, per round, in one process
            out += [
                "The hops' share, measured without any difference of memory layout"
                f" (the five configurations in turn inside one process): {hops_row['ratio']:.3f}x,"
                f" {added_us:+.0f} µs a request, about {added_us / 15:.1f} µs for each of"
                " its 15 hops."
                + (
                    f" In a tight loop of hops (the per-hop section) a thread-sensitive"
                    f" `sync_to_async` costs hopwatch {tight_us:.1f} µs. The difference is the"
                    " caches: between a request's hops Django's own code runs, and hopwatch's"
                    " code and data are no longer in them. In callgrind's cache simulation"
                    " the patch adds 0.7% of a request's instructions and about 3% of its"
                    " cache misses, 9,600 (docs/performance-history.md, 2026-12-02, day)."
                    if tight_us is not None
                    else ""
                )
                + " Separate processes of one build differ by up to 2% in CPU time per"
                " request, which is why the configurations run three processes each, with"
                " paired hash seeds.",
                "",
            ]
        if cpu:
            out += _request_floor(toggled, cpu)
        out += [
            "What would close it: fewer memory touches per hop and per request (objects,"
            " tables, code spread over pages), measured in CPU time in one process as"
            " above; the per-request Python that is left (the middleware, the request"
            " scope, the emitter) in C.",
            "",
        ]
    s = data.get("server")
    server_misses = [v for v in verdicts if v["met"] is False and v["target"].startswith("server")]
    if s and server_misses:
        out += ["### Server: missed", ""]
        for v in server_misses:
            out.append(f"- {v['target']}: {v['result']}.")
        out.append("")
        hop_cost_us = None
        if hops_rows:
            sensitive = next((r for r in hops_rows if "thread-sensitive" in r["name"]), None)
            running = next((r for r in hops_rows if "running loop" in r["name"]), None)
            picks = [r for r in (sensitive, running) if r]
            if picks:
                hop_cost_us = statistics.mean(r["patched_us"] - r["bare_us"] for r in picks)
        for endpoint in s["endpoints"]:
            out += [_server_breakdown(endpoint, s["table"][endpoint["path"]], hop_cost_us), ""]
        out += [
            "Why: on these endpoints a request is short (the per-request times above, on one"
            " core, include uvicorn, Django's whole middleware chain and the hops themselves),"
            " and hopwatch's cost is per hop and per request, not proportional to the"
            " request's own work: every one of the 15-16 hops goes through the patched path,"
            " the middleware opens and closes a request scope, the end of the request folds"
            " the hops into sites, and one JSON line is built with structlog and written"
            " through the logging module. On a view that does real work (templates, several"
            " queries, calls to other services) the same absolute cost is a much smaller"
            " fraction. With a closed-loop load on a single-process server, p50 moves with"
            " throughput, but p99 is set by full garbage collections: one takes tens of"
            " milliseconds in a Django process and holds up every connection, and they come"
            " about once per 1,000 requests, so p99 sits on the edge of the requests they"
            " delay (the collector, in the instructions section above). Whatever a request"
            " leaves for the collector"
            " brings them closer, and under concurrency more of each request's objects are"
            " alive when a collection comes." + _frozen_why(s),
            "",
            "What would close it: the line's head is now written in C from the ledger, and"
            " what is left per request is spread over Python: the logging module's record"
            " and handler (about a tenth of hopwatch's per-request instructions, and the"
            " project's own configuration), structlog's call, the thread fields, the request"
            " scope (route and view names, the record's open and close), and the"
            " collections its objects bring on under concurrency"
            " (the collector, above). Neither the middleware nor the handler adds a frame"
            " to the request's awaiting chain, and hopwatch's middleware, first in"
            " MIDDLEWARE, is loaded without Django's exception-to-response wrapper (one"
            " frame less, about 6,500 instructions a request; docs/how-it-works.md)."
            " The instruction count"
            " is not the whole cost: callgrind's cache simulation shows hopwatch adding about"
            " 10,000 instruction-cache misses and 8,000 branch mispredictions per request"
            " (docs/performance-history.md, 2026-11-30, afternoon), so the next step is a"
            " smaller per-request code"
            " path, measured that way. Today,"
            ' `HOPWATCH = {"SAMPLE_RATE": 0.1}`: counting stays exact for every request'
            " and only one line in ten is written (the"
            ' "counting only" row shows the floor that sampling approaches).',
            "",
        ]
        peer_misses = [v for v in server_misses if "every peer" in v["target"]]
        if peer_misses:
            out += [
                "Against the peers: a peer that records less per request can cost less than"
                " hopwatch, which records every hop: OpenTelemetry's Django instrumentation"
                " makes one span per request (no database spans without the separate DB-API"
                " instrumentation), and sentry-sdk's defaults make no middleware spans. The"
                " fixes above apply.",
                "",
            ]
    if not out:
        out.append("Every target was met in this run.")
    return "\n".join(out)


def _server_breakdown(endpoint: dict[str, Any], table: dict[str, Any], hop_us: float | None) -> str:
    """Where hopwatch's time per request goes on one endpoint, from this run's numbers:
    the total from the back-to-back pairs when the run made them, the split from the
    rounds' ratios to the baseline of the same round (never from medians of req/s
    taken in different rounds, which drift apart by more than the split)."""
    path = endpoint["path"]
    row = table["hopwatch"]
    paired = row.get("paired")
    if paired:
        base, ratio = paired["base_rps"], paired["tp_ratio"]
        source = f"its {paired['pairs']} back-to-back pairs"
    else:
        base, ratio, source = table["baseline"]["rps"], row.get("tp_ratio"), "the rounds"
    if not base or not ratio:
        return f"On `{path}`: no throughput measured."

    def added_us(tp_ratio: float) -> float:
        """µs a request added at ``tp_ratio`` of the baseline's throughput."""
        return (1 / (base * tp_ratio) - 1 / base) * 1e6

    total = added_us(ratio)
    text = (
        f"On `{path}` the server (one process on one core) served {base:.0f} req/s bare and"
        f" {base * ratio:.0f} with hopwatch (medians of {source}): {1e6 / base:.0f} µs →"
        f" {1e6 / (base * ratio):.0f} µs per request, {total:+.0f} µs."
    )
    parts = []
    hops_part = None
    if hop_us is not None and hop_us > 0 and endpoint.get("hops"):
        hops_part = endpoint["hops"] * hop_us
        parts.append(
            f"the hops about {hops_part:.0f} µs ({endpoint['hops']} hops x {hop_us:.1f} µs,"
            " the per-hop benchmark's added wall time)"
        )
    unlogged = table.get("hopwatch-unlogged")
    line_part = None
    if unlogged and unlogged.get("tp_ratio") and row.get("tp_ratio"):
        line_part = added_us(row["tp_ratio"]) - added_us(unlogged["tp_ratio"])
        if line_part > 0:
            parts.append(
                f"the request line about {line_part:.0f} µs (in the rounds the counting-only"
                f" server ran at {unlogged['tp_ratio']:.3f}x baseline, hopwatch at"
                f" {row['tp_ratio']:.3f}x)"
            )
        else:
            parts.append(
                "the request line: lost in this run's noise (in the rounds the counting-only"
                " server was not faster than the logging one)"
            )
            line_part = None
    if hops_part is not None and line_part is not None:
        rest = total - hops_part - line_part
        parts.append(
            f"the rest, about {rest:.0f} µs, is per-request work outside the hops (the request"
            " scope, the end-of-request fold, the middleware)"
            if rest > 0.05 * total
            else "nothing measurable is left outside the hops and the line"
        )
    if parts:
        text += " Of that, by this run's numbers: " + "; ".join(parts) + "."
    access = table.get("access-log")
    if access and access.get("tp_ratio"):
        floor = added_us(access["tp_ratio"])
        text += (
            f" A hand-written access log in hopwatch's place (one JSON line per request"
            f" through a `FileHandler`, `bench/access_log.py`) ran at {access['tp_ratio']:.3f}x"
            + (
                f" baseline, {floor:+.0f} µs per request: the floor under any line per request."
                if floor > 0
                else " baseline in the rounds: not slower than the bare site, so this run's"
                " rounds do not resolve the line's floor."
            )
        )
    return text


def render_report(r: dict[str, Any] | None, skipped: bool) -> str:
    if skipped:
        return "_Not run (`--skip report`)._"
    if r is None:
        return (
            "_Not measured in this run: `bench/report_bench.py` (the generator of the"
            " 1,000,000-line log and the timing of `hopwatch report` next to jq) was not"
            " present. When it is, `python -m bench` runs `python -m bench.report_bench"
            " --lines N` and puts its table here._"
        )
    if "error" in r:
        return f"_`{r['command']}` failed:_\n\n```\n{r['error']}\n```"
    return f"From `{r['command']}` ({r['seconds']:.0f} s):\n\n{r['markdown']}"


INTRO = """\
# Performance

_Generated by `python3 dev.py bench` (`python -m bench`, see bench/README.md);
do not edit by hand: rerun it. {run_kind} The instruction counts (with the
before/after table) come from `python -m bench.instructions` and are carried
over from the previous report by each run._

What hopwatch costs, measured four ways, each against its own baseline **in
the same run**: this machine is shared and noisy, so configurations are
interleaved round by round and every number that matters here is a ratio
within the run (medians of per-round values), never an absolute number from
another run or another machine.

- **Per hop**: one `sync_to_async` (thread-sensitive, and on the thread pool)
  and one `async_to_sync` (back onto the running loop, and cold, with a new
  event loop) with and without hopwatch's patch, alternating bare and patched
  rounds in one process pinned to one core (`bench/hops.py`), in wall time and
  process CPU time;
  and the same hops counted in instructions under valgrind, which no other
  load on the machine can disturb. Target: hopwatch adds at most 2% of a bare
  hop. And the time hopwatch records for each no-op hop against the bare
  hop's own time (target: within 5%).
- **Per request**: Django's real `ASGIHandler` in process (startproject's
  middleware, an async view: 15 hops, the line written to a file), three
  processes per configuration (paired hash seeds), bare and each part of
  hopwatch, in short interleaved rounds, in CPU time, and every part
  again with the five configurations in turn inside one process
  (`bench/request_wall.py`); and the latest per-request
  instruction counts of `python -m bench.instructions`, which takes too long
  to repeat in this run. Target: hopwatch adds at most 3%.
- **Server**: the example site (`example_site/`) under uvicorn on 127.0.0.1,
  one process per configuration, all up for the whole run: no
  instrumentation; hopwatch as the example site sets it up (a JSON line per
  request to a file); pyinstrument's Django middleware profiling every request
  (`PYINSTRUMENT_PROFILE_DIR` set, its default HTML renderer, one file per
  route overwritten); OpenTelemetry's Django instrumentation
  (`DjangoInstrumentor`, every request traced, `SimpleSpanProcessor` into an
  `InMemorySpanExporter` cleared every 10,000 spans); sentry-sdk with its Django
  integration, `traces_sample_rate=1.0` and a transport that discards every
  envelope (no network traffic). Plus two diagnostic configurations: hopwatch
  with its line turned off, to split hopwatch's cost, and a hand-written access
  log in hopwatch's place (one JSON line per request through a `FileHandler`,
  `bench/access_log.py`), the floor under any line per request. Settings for each are in
  `bench/peers/`. Two endpoints: `/hello/` (an async view behind startproject's
  default middleware: 15 hops) and `/products/` (an async view with one ORM
  query: 16 hops). Each round gives every configuration one load run per
  endpoint, in an order rotated every round, after a warm-up of each; then the
  baseline and hopwatch alone run back to back, in pairs, with the access log
  beside each pair (the three in turn, in every order). Targets: hopwatch
  keeps at least 0.97 of the baseline's throughput and its p99 latency stays
  within 5% of the baseline's (both judged on the pairs), and it costs less
  than every peer (in the rounds); beside them, hopwatch against the access
  log, read from the same runs.
- **Report**: lines per second and peak memory of `hopwatch report` on a
  generated 1,000,000-line captured log (`bench/captured_logs.py`: structlog's
  rendering, container prefixes, foreign lines), next to what a user would
  reach for on the same file: 2-process msgspec loops, polars, DuckDB and `jq`
  computing per-route counts, means and quantiles; every contender's counts are
  checked against the ground truth written beside the log.
"""


#: Blocks of docs/performance.md measured and kept by hand or by their own command,
#: carried over from the existing report by every run: (name, the heading they go before).
KEPT_BLOCKS = (
    # the instruction counts (python -m bench.instructions, the before/after table)
    ("instructions", "## Results against the targets"),
    # the report's breakdown per line and what was tried (measured by hand)
    ("report-notes", "## Where a target is missed"),
)


def keep_instructions_block(document: str, output: Path) -> str:
    """Carry over the kept blocks (:data:`KEPT_BLOCKS`) from the existing report,
    each right before its heading: they are measured and kept by their own
    command or by hand, not by this one."""
    try:
        existing = output.read_text()
    except OSError:
        return document
    for name, heading in KEPT_BLOCKS:
        match = re.search(rf"<!-- {name} -->.*?<!-- /{name} -->\n", existing, re.S)
        if match is None:
            continue
        head, sep, tail = document.partition(heading)
        document = f"{head}{match.group(0)}\n{sep}{tail}" if sep else document + match.group(0)
    return document


def render(data: dict[str, Any]) -> str:
    params = data["params"]
    run_kind = (
        "**This is a quick smoke run (`--quick`): too short for conclusions; run the full"
        " benchmark on a quiet machine.**"
        if params["quick"]
        else "Full run."
    )
    verdicts = judge(data)
    s = data.get("server")
    parts = [
        INTRO.format(run_kind=run_kind),
        "## Results against the targets",
        "",
        "| target | result | |",
        "|---|---|---|",
        *(f"| {v['target']} | {v['result']} | {_verdict(v['met'])} |" for v in verdicts),
        "",
        "## The machine",
        "",
        render_machine(data["machine"], s["pinned"] if s else None),
        "",
        f"Run parameters: {json.dumps({k: v for k, v in params.items() if k != 'skip'})};"
        f" total time {data['seconds']:.0f} s.",
        "",
        "## Per hop",
        "",
        f"{params['hop_rounds']} interleaved rounds of {params['per_round']} hops per case"
        " (cold hops: a quarter as many), bare and patched alternating which goes first;"
        ' medians of per-round means. "CPU" is the process\'s CPU time per hop (all'
        " threads), over the hop loop the wall time covers. One process, pinned to one"
        " core; reproduce with"
        " `taskset -c 1 python -m bench.hops`.",
        "",
        render_hops(data.get("hops"), data.get("callgrind")),
        "",
        "## Per request",
        "",
        render_requests(data.get("request_cpu"), data.get("instructions_requests")),
        "",
        "## Server",
        "",
        render_server(s),
        "",
        "## Report",
        "",
        render_report(data.get("report"), "report" in params["skip"]),
        "",
        "## Where a target is missed: by how much, why, and what would close it",
        "",
        render_misses(data, verdicts),
        "",
        "## Method notes",
        "",
        "- The load generator is bounded in time and only ever targets 127.0.0.1; each"
        " server listens on 127.0.0.1 only and stops by itself after a bounded lifetime (and"
        " is stopped at the end of the run in any case).",
        "- Latency is measured by a closed-loop generator (a new request on a connection as"
        " soon as the previous answer arrives), so with a single-process server p50/p99"
        " include queueing behind the other connections: they move with throughput.",
        "- One server process per configuration, started once; all share one sqlite"
        " database, prepared before the run (`migrate`, `loaddata products`).",
        "- The peers are installed into `.venvs/bench`, never into the test environments.",
    ]
    return "\n".join(parts).rstrip() + "\n"


# --- main -------------------------------------------------------------------------------


def full_run_results(path: Path) -> dict[str, Any] | None:
    """The raw results of the last full run, for ``--rerender``; or None, having
    said in one line what is missing and what to run first."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        problem = "there are none"
    except (OSError, ValueError) as exc:
        problem = f"they cannot be read ({exc})"
    else:
        if isinstance(data, dict) and {"params", "machine", "seconds"} <= data.keys():
            return data
        problem = "that file is not a full run's results"
    say(
        f"--rerender renders a full run's results again, from {path}, and {problem}: run"
        " `python3 dev.py bench` first (it reads the latest instruction count too)"
    )
    return None


def count_instructions(argv: list[str]) -> int:
    """``python -m bench --instructions ARGS`` (what ``python3 dev.py bench
    --instructions`` runs): ``python -m bench.instructions ARGS`` in .venvs/bench,
    made or refreshed first as for the full run, whose per-request target reads
    its figures."""
    if not in_bench_venv():
        ensure_bench_venv(["--instructions", *argv])  # re-runs this there, or returns
    from bench import instructions

    return instructions.main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--instructions" in argv:
        return count_instructions([a for a in argv if a != "--instructions"])
    args, params = parse_args(argv)
    if args.rerender:
        data = full_run_results(args.json)
        if data is None:
            return 2
        data["instructions_requests"] = latest_request_instructions()
        args.output.write_text(keep_instructions_block(render(data), args.output))
        say(f"rewrote {args.output} from {args.json}")
        return 0
    if not (args.here or args.no_install or in_bench_venv()):
        ensure_bench_venv(argv)  # re-runs this command in .venvs/bench, or returns
    started = time.monotonic()
    notice = missing_instructions_notice(params.skip)
    if notice:
        say(notice)
    from bench import hop_path

    if hop_path.asked() != "c":
        say(
            f"{hop_path.PURE_VAR} is set here: the bench's workers run without it and"
            " measure the C hop path (the pure-Python figures are bench.instructions')"
        )

    from bench import server

    wrk = None
    if "server" not in params.skip and args.loadgen != "python":
        wrk = find_or_install_wrk(allow_install=not args.no_install)
        if wrk is None:
            if args.loadgen == "wrk":
                say("--loadgen wrk: wrk is not available")
                return 1
            say("using the Python load generator (bench/server.py) instead of wrk")
    data: dict[str, Any] = {"params": asdict(params), "machine": describe_machine(wrk)}
    # what every worker measuring hopwatch checks it runs (bench.hop_path)
    data["machine"]["hop_path"] = hop_path.asked(hop_path.worker_env())

    steps: list[tuple[str, str, Callable[[], Any]]] = [
        ("hops", "hops", lambda: run_hops(params)),
        ("callgrind", "callgrind", lambda: run_callgrind(params)),
        ("requests", "request_cpu", lambda: run_requests(params)),
    ]
    for name, key, step in steps:
        if name not in params.skip and not ("hops" in params.skip and name == "callgrind"):
            data[key] = step()
    data["instructions_requests"] = latest_request_instructions()
    if "server" not in params.skip:
        configs = [server.CONFIG_BY_NAME[c] for c in params.configs]
        endpoints = [
            next((e for e in server.ENDPOINTS if e.path == p), server.Endpoint(p, p))
            for p in params.endpoints
        ]
        paired = params.paired_rounds if "hopwatch" in params.configs else 0
        frozen = params.frozen_rounds if "hopwatch" in params.configs else 0
        with_floor = server.FLOOR in params.configs
        estimate = server.estimate_seconds(
            len(configs),
            len(endpoints),
            params.rounds,
            params.duration,
            paired,
            params.paired_duration,
            with_floor=with_floor,
            frozen_rounds=frozen,
        )
        groups = (
            "groups of the baseline, hopwatch and the access log"
            if with_floor
            else "pairs of the baseline and hopwatch"
        )
        say(
            f"server: {len(configs)} configurations x {len(endpoints)} endpoints x"
            f" {params.rounds} rounds, then {paired} back-to-back {groups}"
            f" per endpoint, {params.paired_duration:g} s a run"
            + (f", and {frozen} pairs with start-up frozen" if frozen else "")
            + f" (about {estimate / 60:.0f} min)"
        )
        results = server.run(
            configs,
            endpoints,
            params.rounds,
            params.duration,
            params.connections,
            wrk,
            say=lambda m: say(f"server: {m}"),
            paired_rounds=paired,
            paired_duration=params.paired_duration,
            frozen_rounds=frozen,
        )
        data["server"] = summarize_server(results)
    if "report" not in params.skip:
        data["report"] = run_report(params)
    data["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    data["seconds"] = time.monotonic() - started

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=2, default=str))
    document = keep_instructions_block(render(data), args.output)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(document)
    say(f"wrote {args.output} (raw results: {args.json}) in {data['seconds']:.0f} s")
    for v in judge(data):
        word = "not measured" if v["met"] is None else "met   " if v["met"] else "MISSED"
        say(f"{word} {v['target']}: {v['result']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
