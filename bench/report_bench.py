"""``hopwatch report`` throughput and memory, side by side with jq on the same file.

    python -m bench.report_bench [--lines 1000000] [--rounds 3] [--file PATH]

Generates (once, then reuses) a log of about 1 KB per line: 90% hopwatch
request lines as the emitter writes them (4 to 8 sites each), 10% other
loggers' JSON lines. Then, round by round so that a noisy machine affects every
contender alike, it times:

* ``jq`` computing a per-route count and mean hop time (``fromjson?`` per line);
* ``hopwatch report --jobs 1`` (one process) and ``hopwatch report`` (as many
  processes as usable cores, the default for large input);
* a bare Python loop over the lines, for scale.

Each run is a separate process; its peak resident memory is the largest
``ru_maxrss`` among it and its children (per process, not summed). A run on a
tenth of the file shows whether memory grows with the number of lines.

Standard output is a markdown table (medians, and the ratio to jq: compare
ratios, not absolute numbers from another machine or run); ``python -m bench``
puts it into docs/performance.md. Progress goes to standard error.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JQ_PROGRAM = (
    'reduce (inputs | fromjson? | select(.event == "hopwatch.request")) as $r ({}; '
    ".[$r.route] |= {n: ((.n // 0) + 1), s: ((.s // 0) + $r.hop_ms)}) "
    "| map_values({requests: .n, mean_hop_ms: (.s / .n)})"
)
BARE_LOOP = (
    "import sys\nn = 0\nwith open(sys.argv[1], 'rb') as f:\n    for line in f:\n        n += 1\n"
)

SITES = [
    ("django.contrib.sessions.middleware.SessionMiddleware.process_request", "middleware"),
    ("django.contrib.auth.middleware.AuthenticationMiddleware.process_request", "middleware"),
    ("django.middleware.csrf.CsrfViewMiddleware.process_view", "middleware"),
    ("django.contrib.messages.middleware.MessageMiddleware.process_response", "middleware"),
    ("myproject.middleware.LegacyTenantMiddleware", "middleware"),
    ("request_started", "signal"),
    ("request_finished", "signal"),
    ("HttpResponse.close", "response"),
    ("QuerySet.aget", "orm"),
    ("Model.asave", "orm"),
    ("shop.views.legacy_sync_view", "view"),
]
# what scanners ask for: unmatched paths, logged raw (no view)
PROBES = [
    f"/{name}"
    for name in ("wp-login.php", ".env", ".git/config", "admin.php", "xmlrpc.php", "phpmyadmin/",
                 "cgi-bin/luci", "boaform/admin", "actuator/health", "vendor/phpunit/eval.php")
]  # fmt: skip
ROUTES = [f"/api/v1/{name}/<int:pk>/" for name in ("items", "orders", "users", "carts")] + [
    f"/shop/{name}/" for name in ("search", "checkout", "basket", "account", "help", "promo")
]


def _hop_line(rng: random.Random, i: int) -> str:
    route = rng.choice(ROUTES)
    chosen = rng.sample(SITES, rng.randint(4, 8))
    sites = []
    for name, kind in chosen:
        entry: dict[str, object] = {
            "site": name,
            "kind": kind,
            "direction": "sync_to_async",
            "count": 1 if kind != "orm" else rng.randint(1, 6),
            "ms": round(rng.lognormvariate(-2.2, 0.7), 3),
        }
        if kind == "orm":  # a view makes its ORM calls from a few lines of its code
            line_number = 40 + 10 * ROUTES.index(route) + rng.randint(0, 2)
            entry["call_site"] = f"shop/views.py:{line_number} in handler"
        sites.append(entry)
    sites.sort(key=lambda e: -float(e["ms"]))  # type: ignore[arg-type]
    hop_ms = round(sum(float(e["ms"]) for e in sites), 3)  # type: ignore[arg-type]
    hops = sum(int(e["count"]) for e in sites)  # type: ignore[call-overload]
    pinned = any(name == "myproject.middleware.LegacyTenantMiddleware" for name, _ in chosen)
    view = None if rng.random() < 0.01 else "shop.views." + route.strip("/").replace("/", "_")
    record = {
        "event": "hopwatch.request",
        "schema": 1,
        "timestamp": f"2026-11-24T{i // 3_600_000 % 24:02d}:{i // 60_000 % 60:02d}:"
        f"{i // 1000 % 60:02d}.{i % 1000:03d}{rng.randint(0, 999):03d}Z",
        "request_id": f"{rng.getrandbits(64):016x}",
        "method": rng.choice(("GET", "GET", "GET", "POST")),
        "route": route if view else rng.choice(PROBES),
        "view": view,
        "status": rng.choice((200, 200, 200, 200, 201, 302, 404, 500)),
        "interface": "asgi",
        "duration_ms": round(hop_ms + rng.lognormvariate(2, 0.8), 3),
        "hops": hops,
        "hop_ms": hop_ms,
        "wait_ms": round(hop_ms * rng.uniform(0.05, 0.5), 3),
        "sync_to_async": hops,
        "async_to_sync": 0,
        "threads": rng.choice((2, 2, 2, 3)),
        "new_loops": 1 if rng.random() < 0.001 else 0,
        "max_depth": 1,
        "pinned_ms": round(hop_ms * 0.4, 3) if pinned else 0.0,
        "pinned_by": "myproject.middleware.LegacyTenantMiddleware" if pinned else None,
        "sites": sites,
        "level": "info",
        "logger": "hopwatch",
    }
    return json.dumps(record, separators=(",", ":"))


def _other_line(rng: random.Random, i: int) -> str:
    return json.dumps(
        {
            "event": f"GET /shop/search/?q={rng.getrandbits(40):x} 200",
            "level": "info",
            "logger": "django.request",
            "timestamp": "2026-11-24T10:00:00Z",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) " + "x" * rng.randint(500, 800),
        },
        separators=(",", ":"),
    )


def generate(path: Path, lines: int, seed: int = 1) -> None:
    """Write the log atomically (a temporary file, then a rename): runs may share /tmp."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(partial, "w", encoding="utf-8") as out:
        for i in range(lines):
            out.write((_other_line(rng, i) if i % 10 == 9 else _hop_line(rng, i)) + "\n")
    os.replace(partial, path)


@dataclass
class Result:
    name: str
    seconds: list[float] = field(default_factory=list)
    peak_kb: list[int] = field(default_factory=list)


# A fresh wrapper per run: RUSAGE_CHILDREN's ru_maxrss is then the largest of
# this run's processes (hopwatch and its readers), not of every earlier run.
_MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
elapsed = time.perf_counter() - start
print(elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.returncode)
"""


def measure(command: list[str]) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", _MEASURE, *command], env=env, check=True,
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    if out[2] not in ("0", "1"):
        raise SystemExit(f"{command[0]} failed with status {out[2]}")
    return float(out[0]), int(out[1])


def count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--file", type=Path, help="default: /tmp/hopwatch-bench/report-LINES.log")
    parser.add_argument("--no-jq", action="store_true")
    args = parser.parse_args()

    path: Path = args.file or Path(f"/tmp/hopwatch-bench/report-{args.lines}.log")
    if not path.exists() or count_lines(path) != args.lines:
        say(f"generating {args.lines:,} lines into {path} ...")
        generate(path, args.lines)
    lines = count_lines(path)
    tenth = path.with_suffix(".tenth.log")
    if not tenth.exists() or count_lines(tenth) != lines // 10:
        partial = tenth.with_name(f".{tenth.name}.{os.getpid()}.tmp")
        with open(path, "rb") as src, open(partial, "wb") as dst:
            for _ in range(lines // 10):
                dst.write(src.readline())
        os.replace(partial, tenth)
    size = path.stat().st_size

    report = [sys.executable, "-m", "hopwatch", "report", "--format", "json"]
    contenders = {
        "bare python line loop": [sys.executable, "-c", BARE_LOOP, str(path)],
        "hopwatch report --jobs 1": [*report, "--jobs", "1", str(path)],
        "hopwatch report (parallel)": [*report, str(path)],
        "hopwatch report --jobs 1, 1/10 file": [*report, "--jobs", "1", str(tenth)],
    }
    if not args.no_jq and shutil.which("jq"):
        contenders["jq (per-route count, mean)"] = ["jq", "-R", "-n", "-c", JQ_PROGRAM, str(path)]
    results = {name: Result(name) for name in contenders}
    for round_number in range(args.rounds):
        for name, command in contenders.items():
            seconds, peak = measure(command)
            results[name].seconds.append(seconds)
            results[name].peak_kb.append(peak)
            say(f"round {round_number + 1}: {name}: {seconds:.2f} s, {peak / 1024:.0f} MB")

    jq = results.get("jq (per-route count, mean)")
    jq_rate = lines / statistics.median(jq.seconds) if jq else None
    print(f"{lines:,} lines, {size / lines:.0f} bytes per line on average (90% hopwatch lines), "
          f"{len(os.sched_getaffinity(0))} usable cores; medians of {args.rounds} interleaved "
          "rounds.\n")  # fmt: skip
    print("| contender | lines/s | vs jq | peak RSS (largest process) |")
    print("|---|---:|---:|---:|")
    for name, result in results.items():
        n = lines // 10 if "1/10" in name else lines
        rate = n / statistics.median(result.seconds)
        ratio = f"{rate / jq_rate:.1f}x" if jq_rate else "-"
        print(f"| {name} | {rate:,.0f} | {ratio} | {max(result.peak_kb) / 1024:.0f} MB |")
    if jq_rate is None:
        print("\n(jq is not installed: no jq column.)")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
