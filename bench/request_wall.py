"""hopwatch's cost per request in CPU time, natively: the instruction count's twin.

``bench.instructions`` counts instructions, which do not move with the machine's
load; but an instruction is not a fixed amount of time. hopwatch's work runs in
short bursts between Django's, on data the request has pushed out of the CPU's
caches since the last hop, so it retires fewer instructions per nanosecond than
the bare request does, and the count understates what it costs in time. This
measures the same thing in time: the same in-process Django site as
``bench.instructions`` (its five configurations, ``bare``, ``hops``, ``scope``,
``build``, ``hopwatch``; see that module), served natively, all pinned to one
core.

How, and why so:

* **Several processes per configuration** (``--processes``, 3). One process's
  memory layout (where the interpreter put what) moves its time per request by
  a percent or more either way, for good, as if it were a cost of the
  configuration: two runs of one build read 2.0% apart. The mean over three
  processes per configuration, with process k of each configuration given the
  same string-hash seed, brought the same two to 0.4%.
* **The patch toggled in one process** (``--toggled``, 1). The bare site, with
  asgiref's patch installed and removed in turn, N requests each way per round:
  the hops' share of a request with no difference of layout at all.
* **Short, interleaved rounds** (``--requests``, 40 per process and round,
  about 80 ms). A round runs every process once, one at a time, in an order
  rotated from round to round. This shared VM's speed drifts by tens of percent
  over seconds; rounds of 1,000 requests (2 s) per configuration left ratios of
  one round anywhere from 0.8x to 1.3x. Short rounds put the processes they
  compare a fraction of a second apart.
* **The figure** is the process's CPU time per request (all threads; on one core
  it is also the wall time), per round the mean over a configuration's
  processes, and as the median over rounds of the ratio to bare *of the same
  round*; the bracket is the 95% interval of that median (a bootstrap over
  rounds, seeded: the same samples give the same interval).

    python -m bench.request_wall                  # 60 rounds, 3 processes, 40 requests
    python -m bench.request_wall --rounds 150 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import instructions, server

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = instructions.REQUEST_CONFIGS

# One process per configuration: set up once, then serve N requests per line on
# stdin and answer with the CPU and wall nanoseconds they took. The "toggle"
# process is the bare site with asgiref's patch installed and removed in turn:
# per line, N requests each way (the order alternating), both answered.
_WORKER = """
import asyncio, atexit, json, os, sys, tempfile, time
sys.path.insert(0, {root!r})
from bench import instructions
log = tempfile.NamedTemporaryFile(prefix="hopwatch-wall-", suffix=".log", delete=False).name
atexit.register(os.unlink, log)
toggle = sys.argv[1] == "toggle"
serve = instructions.site("bare" if toggle else sys.argv[1], log)
loop = asyncio.new_event_loop()
if toggle:
    import hopwatch
    hopwatch.install()
    loop.run_until_complete(serve(200))
    hopwatch.uninstall()
loop.run_until_complete(serve(200))  # warm up: first-request caches, the line's file
print("ready", flush=True)

def timed(n):
    cpu, wall = time.process_time_ns(), time.perf_counter_ns()
    loop.run_until_complete(serve(n))
    cpu, wall = time.process_time_ns() - cpu, time.perf_counter_ns() - wall
    return {{"cpu_ns": cpu / n, "wall_ns": wall / n}}

turn = 0
for line in sys.stdin:
    n = int(line)
    if not toggle:
        print(json.dumps(timed(n)), flush=True)
        continue
    answer = {{}}
    for mode in ("bare", "hops") if turn % 2 else ("hops", "bare"):
        (hopwatch.install if mode == "hops" else hopwatch.uninstall)()
        answer[mode] = timed(n)["cpu_ns"]
    hopwatch.uninstall()
    turn += 1
    print(json.dumps(answer), flush=True)
"""


def run(
    rounds: int = 60,
    requests: int = 40,
    cpu: int | None = 1,
    processes: int = 3,
    toggled: int = 1,
) -> dict[str, Any]:
    """Interleaved rounds; per configuration, per round: CPU and wall ns per
    request, the mean over the configuration's processes (each one's in ``each``);
    and, from ``toggled`` processes, the bare site's CPU ns per request with and
    without asgiref's patch in the same process (``toggled``)."""
    if cpu is not None and not server.can_pin():
        cpu = None  # one core, or no taskset: nothing to pin with
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("HOPWATCH_PURE_PYTHON", None)
    slots = [(config, k) for k in range(processes) for config in CONFIGS]
    slots += [("toggle", k) for k in range(toggled)]
    workers: dict[tuple[str, int], subprocess.Popen[str]] = {}
    samples: dict[str, list[dict[str, Any]]] = {c: [] for c in CONFIGS}
    toggled_samples: list[dict[str, Any]] = []
    try:
        for slot in slots:
            pin = server.pinned(cpu) if cpu is not None else []
            command = [*pin, sys.executable, "-c", _WORKER.format(root=str(ROOT)), slot[0]]
            # Process k of every configuration has the same string-hash seed: the
            # layout of the dicts a request reads then differs less between them
            # (two runs of one build: 2.0% apart unseeded, 0.4% with seeds).
            seeded = {**env, "PYTHONHASHSEED": str(slot[1] + 1)}
            workers[slot] = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=seeded
            )
        for slot, worker in workers.items():
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the {slot[0]} worker did not start")
        for r in range(rounds):
            shift = r % len(slots)
            got: dict[str, list[dict[str, float]]] = {c: [] for c in (*CONFIGS, "toggle")}
            for slot in slots[shift:] + slots[:shift]:
                worker = workers[slot]
                assert worker.stdin is not None and worker.stdout is not None
                worker.stdin.write(f"{requests}\n")
                worker.stdin.flush()
                got[slot[0]].append(json.loads(worker.stdout.readline()))
            toggle = got.pop("toggle")
            if toggle:
                toggled_samples.append(
                    {
                        "bare_ns": statistics.fmean(s["bare"] for s in toggle),
                        "hops_ns": statistics.fmean(s["hops"] for s in toggle),
                    }
                )
            for config, each in got.items():
                samples[config].append(
                    {
                        "cpu_ns": statistics.fmean(s["cpu_ns"] for s in each),
                        "wall_ns": statistics.fmean(s["wall_ns"] for s in each),
                        "each": each,
                    }
                )
    finally:
        for worker in workers.values():
            if worker.stdin is not None:
                worker.stdin.close()
        for worker in workers.values():
            worker.wait(timeout=60)
    return {
        "rounds": rounds,
        "requests": requests,
        "processes": processes,
        "pinned_cpu": cpu,
        "samples": samples,
        "toggled": toggled_samples,
    }


def median_interval(values: list[float], draws: int = 2000) -> tuple[float, float]:
    """The 95% interval of the median of ``values`` (a bootstrap, seeded: the same
    values give the same interval)."""
    if len(values) < 2:
        return values[0], values[0]
    pick = random.Random(0)
    medians = sorted(statistics.median(pick.choices(values, k=len(values))) for _ in range(draws))
    return medians[int(draws * 0.025)], medians[int(draws * 0.975) - 1]


def summarize(result: dict[str, Any]) -> list[dict[str, Any]]:
    samples = result["samples"]
    bare = samples["bare"]
    rows = []
    previous = None
    for config in CONFIGS:
        cpu = [s["cpu_ns"] for s in samples[config]]
        ratios = [s["cpu_ns"] / b["cpu_ns"] for s, b in zip(samples[config], bare, strict=True)]
        low, high = median_interval(ratios)
        row = {
            "config": config,
            "cpu_us": statistics.median(cpu) / 1000,
            "ratio": statistics.median(ratios),
            "ratio_low": low,
            "ratio_high": high,
        }
        # The part this configuration adds to the one before it (per round, then median).
        if previous is not None:
            steps = [
                (s["cpu_ns"] - p["cpu_ns"]) / 1000
                for s, p in zip(samples[config], samples[previous], strict=True)
            ]
            row["step_us"] = statistics.median(steps)
            row["step_low"], row["step_high"] = median_interval(steps)
        previous = config
        rows.append(row)
    return rows


def summarize_toggled(result: dict[str, Any]) -> dict[str, Any] | None:
    """The asgiref patch's share of a request, from the processes that install and
    remove it in turn (None when the run had none)."""
    runs = result.get("toggled") or []
    if not runs:
        return None
    ratios = [r["hops_ns"] / r["bare_ns"] for r in runs]
    added = [(r["hops_ns"] - r["bare_ns"]) / 1000 for r in runs]
    return {
        "bare_us": statistics.median(r["bare_ns"] for r in runs) / 1000,
        "ratio": statistics.median(ratios),
        "ratio_interval": median_interval(ratios),
        "added_us": statistics.median(added),
        "added_interval": median_interval(added),
    }


_PARTS = {
    "hops": "the asgiref patches recording every hop",
    "scope": "plus the app and middleware (scope, route, fold), no line",
    "build": "plus the line built, dropped by the logger's level",
    "hopwatch": "plus the line written (the full product)",
}


def format_table(result: dict[str, Any]) -> str:
    rows = summarize(result)
    bare_us = rows[0]["cpu_us"]
    processes = result.get("processes", 1)
    lines = [
        f"{result['rounds']} interleaved rounds of {result['requests']:,} requests per"
        + (
            f" process, {processes} processes per configuration"
            if processes > 1
            else " configuration, one process each"
        )
        + (f", pinned to CPU {result['pinned_cpu']}" if result["pinned_cpu"] is not None else "")
        + "; CPU time per request (all threads). Ratios are medians over rounds of the"
        " ratio to bare in the same round, and a part's µs the median of its per-round"
        " difference to the configuration above; brackets: the 95% interval of that median.",
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
            f"{row['ratio']:.3f} [{row['ratio_low']:.3f}-{row['ratio_high']:.3f}]",
            ""
            if step is None
            else f"{step:+.1f} [{row['step_low']:+.1f} to {row['step_high']:+.1f}]",
            "" if step is None else f"{step / bare_us * 100:+.1f}%",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    toggled = summarize_toggled(result)
    if toggled is not None:
        low, high = toggled["ratio_interval"]
        added_low, added_high = toggled["added_interval"]
        lines += [
            "",
            "The asgiref patch alone, installed and removed in turn inside one process"
            " (the same memory layout both ways, which separate processes cannot have):"
            f" {toggled['ratio']:.3f}x [{low:.3f}-{high:.3f}],"
            f" {toggled['added_us']:+.1f} µs [{added_low:+.1f} to {added_high:+.1f}]"
            f" on {toggled['bare_us']:.0f} µs.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--requests", type=int, default=40, help="requests per process and round")
    parser.add_argument("--processes", type=int, default=3, help="processes per configuration")
    parser.add_argument(
        "--toggled", type=int, default=1, help="processes toggling the patch (0: none)"
    )
    parser.add_argument("--cpu", type=int, default=1, help="the core to pin to (-1: none)")
    parser.add_argument("--json", type=Path, help="also write the raw samples as JSON here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.requests < 1 or args.processes < 1 or args.toggled < 0:
        parser.error("--rounds, --requests and --processes take a positive number")
    cpu = None if args.cpu < 0 else args.cpu
    result = run(args.rounds, args.requests, cpu, args.processes, args.toggled)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
