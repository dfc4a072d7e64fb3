"""hopwatch's cost per request in CPU time, natively: the instruction count's twin.

``bench.instructions`` counts instructions, which do not move with the machine's
load; but an instruction is not a fixed amount of time. hopwatch's work runs in
short bursts between Django's, on data the request has pushed out of the CPU's
caches since the last hop, so it retires fewer instructions per nanosecond than
the bare request does, and the count understates what it costs in time. This
measures the same thing in time: the same in-process Django site as
``bench.instructions`` (its five configurations, ``bare``, ``hops``, ``scope``,
``build``, ``hopwatch``; see that module), one long-lived process per
configuration, all pinned to one core, served in interleaved rounds (a round
runs every configuration once, in an order rotated from round to round, one at a
time). The figure is the process's CPU time per request (all threads; on one
core it is also the wall time), as medians over rounds of the ratio to the bare
process *of the same round*, so the shared machine's drift cancels out as far as
it can.

    python -m bench.request_wall                  # 9 rounds of 1,000 requests
    python -m bench.request_wall --rounds 15 --requests 2000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import instructions, server

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = instructions.REQUEST_CONFIGS

# One process per configuration: set up once, then serve N requests per line on
# stdin and answer with the CPU and wall nanoseconds they took.
_WORKER = """
import asyncio, json, sys, tempfile, time
sys.path.insert(0, {root!r})
from bench import instructions
log = tempfile.NamedTemporaryFile(prefix="hopwatch-wall-", suffix=".log", delete=False).name
serve = instructions.site(sys.argv[1], log)
loop = asyncio.new_event_loop()
loop.run_until_complete(serve(200))  # warm up: first-request caches, the line's file
print("ready", flush=True)
for line in sys.stdin:
    n = int(line)
    cpu, wall = time.process_time_ns(), time.perf_counter_ns()
    loop.run_until_complete(serve(n))
    cpu, wall = time.process_time_ns() - cpu, time.perf_counter_ns() - wall
    print(json.dumps({{"cpu_ns": cpu / n, "wall_ns": wall / n}}), flush=True)
"""


def run(rounds: int = 9, requests: int = 1000, cpu: int | None = 1) -> dict[str, Any]:
    """Interleaved rounds; per configuration, per round: CPU and wall ns per request."""
    if cpu is not None and not server.can_pin():
        cpu = None  # one core, or no taskset: nothing to pin with
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("HOPWATCH_PURE_PYTHON", None)
    workers: dict[str, subprocess.Popen[str]] = {}
    samples: dict[str, list[dict[str, float]]] = {c: [] for c in CONFIGS}
    try:
        for config in CONFIGS:
            pin = server.pinned(cpu) if cpu is not None else []
            command = [*pin, sys.executable, "-c", _WORKER.format(root=str(ROOT)), config]
            workers[config] = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
            )
        for config, worker in workers.items():
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the {config} worker did not start")
        for r in range(rounds):
            shift = r % len(CONFIGS)
            for config in CONFIGS[shift:] + CONFIGS[:shift]:
                worker = workers[config]
                assert worker.stdin is not None and worker.stdout is not None
                worker.stdin.write(f"{requests}\n")
                worker.stdin.flush()
                samples[config].append(json.loads(worker.stdout.readline()))
    finally:
        for worker in workers.values():
            if worker.stdin is not None:
                worker.stdin.close()
        for worker in workers.values():
            worker.wait(timeout=60)
    return {"rounds": rounds, "requests": requests, "pinned_cpu": cpu, "samples": samples}


def summarize(result: dict[str, Any]) -> list[dict[str, Any]]:
    samples = result["samples"]
    bare = samples["bare"]
    rows = []
    previous = None
    for config in CONFIGS:
        cpu = [s["cpu_ns"] for s in samples[config]]
        ratios = [s["cpu_ns"] / b["cpu_ns"] for s, b in zip(samples[config], bare, strict=True)]
        row = {
            "config": config,
            "cpu_us": statistics.median(cpu) / 1000,
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
        }
        # The part this configuration adds to the one before it (per round, then median).
        if previous is not None:
            steps = [
                (s["cpu_ns"] - p["cpu_ns"]) / 1000
                for s, p in zip(samples[config], samples[previous], strict=True)
            ]
            row["step_us"] = statistics.median(steps)
        previous = config
        rows.append(row)
    return rows


_PARTS = {
    "hops": "the asgiref patches recording every hop",
    "scope": "plus the app and middleware (scope, route, fold), no line",
    "build": "plus the line built, dropped by the logger's level",
    "hopwatch": "plus the line written (the full product)",
}


def format_table(result: dict[str, Any]) -> str:
    rows = summarize(result)
    bare_us = rows[0]["cpu_us"]
    lines = [
        f"{result['rounds']} interleaved rounds of {result['requests']:,} requests per"
        " configuration, one process each"
        + (f", pinned to CPU {result['pinned_cpu']}" if result["pinned_cpu"] is not None else "")
        + "; CPU time per request (all threads), medians; ratios are medians of per-round"
        " ratios to the bare process (range over rounds in brackets).",
        "",
        "| configuration | CPU µs per request | x bare | this part adds (µs) | % of bare |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        label = row["config"] + (f": {_PARTS[row['config']]}" if row["config"] in _PARTS else "")
        step = row.get("step_us")
        cells = [
            label,
            f"{row['cpu_us']:.1f}",
            f"{row['ratio']:.3f} [{row['ratio_min']:.3f}-{row['ratio_max']:.3f}]",
            "" if step is None else f"{step:+.1f}",
            "" if step is None else f"{step / bare_us * 100:+.1f}%",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=1000, help="requests per run")
    parser.add_argument("--cpu", type=int, default=1, help="the core to pin to (-1: none)")
    parser.add_argument("--json", type=Path, help="also write the raw samples as JSON here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.requests < 1:
        parser.error("--rounds and --requests take a positive number")
    result = run(args.rounds, args.requests, None if args.cpu < 0 else args.cpu)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
