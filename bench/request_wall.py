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
  Each process checks after its warm-up that its log holds a line per request
  under ``hopwatch`` and none under the others; otherwise it stops the run,
  with one line saying so (as does the toggled process below).
* **The five configurations toggled in one process** (``--toggled``, 1). One
  process set up for the full product, with a second handler built without
  hopwatch's middleware, switches through all five configurations, N requests
  each per round (after two untimed ones), in an order rotated from round to
  round and reversed every other round: every part's share of a request with no
  difference of layout at all (its turn in a round is five processes' worth).
  ``bare`` and ``hops`` are the app deactivated (asgiref's patch and the Django
  layer removed) and the patch alone installed, on that second handler; ``scope``,
  ``build`` and ``hopwatch`` the app activated, on the full handler, with
  ``MIN_HOPS`` above any request's count, with the logger at WARNING, and as the
  product runs. The process checks its log file each round: a line per request
  under ``hopwatch`` and none under the others, or it stops (and the run with it).
  For reference it also serves a sixth configuration, not hopwatch: a
  hand-written access log (``bench/access_log.py``, on a third handler, its
  lines padded to hopwatch's length, its own log file checked the same way), the
  floor under any line per request; its part is over bare.
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
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import hop_path, instructions, server
from bench.stats import median_interval

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = instructions.REQUEST_CONFIGS
#: Configurations the toggled process also serves for comparison, not parts of
#: hopwatch: their part is what they add to bare.
REFERENCES = ("access-log",)

# Every worker starts with _WORKER (formatted with the repository's root); then a
# configuration's process runs _SERVE: set up once, then serve N requests per
# line on stdin and answer with the CPU and wall nanoseconds they took. The
# "toggle" process runs _TOGGLE instead.
_WORKER = """
import asyncio, atexit, json, os, sys, tempfile, time
sys.path.insert(0, {root!r})
from bench import hop_path, instructions

def stop(reason):
    # the one line the parent stops the run with, in place of "ready"
    print("stop", reason, flush=True)
    sys.exit(1)

def lines_in(path):
    with open(path, "rb") as written:
        return written.read().count(b"\\n")

if hop_path.problem():
    stop(hop_path.problem())
log = tempfile.NamedTemporaryFile(prefix="hopwatch-wall-", suffix=".log", delete=False).name
atexit.register(os.unlink, log)
loop = asyncio.new_event_loop()
"""

_SERVE = """
serve = instructions.site(sys.argv[1], log)
loop.run_until_complete(serve(200))  # warm up: first-request caches, the line's file
expected = 200 if sys.argv[1] == "hopwatch" else 0  # a line a request, and only there
if lines_in(log) != expected:
    stop(
        f"{hop_path.STOP}the {sys.argv[1]} process wrote {lines_in(log)} lines to its log"
        f" in its 200 warm-up requests, not {expected}"
    )
print("ready", flush=True)
for line in sys.stdin:
    n = int(line)
    cpu, wall = time.process_time_ns(), time.perf_counter_ns()
    loop.run_until_complete(serve(n))
    cpu, wall = time.process_time_ns() - cpu, time.perf_counter_ns() - wall
    print(json.dumps({"cpu_ns": cpu / n, "wall_ns": wall / n}), flush=True)
"""

# The toggle process, after _WORKER. Django is
# set up as for the full product (the app activates itself in django.setup()),
# with a second handler built without hopwatch's middleware; a configuration is
# then a state of the app, the patch, the settings and the logger's level:
#   bare      the app deactivated (the patch and Django's layer removed), that handler;
#   hops      the same, then asgiref's patch installed (hopwatch._patch.install());
#   scope     the app activated, the full handler, MIN_HOPS above any request's count;
#   build     the same with the default settings, the logger at WARNING (line dropped);
#   hopwatch  the same at INFO (the full product: the line written);
# and one reference, not hopwatch:
#   access-log  the app deactivated, a third handler with bench.access_log's
#             middleware first: a hand-written JSON line per request, padded to the
#             length of hopwatch's, through a FileHandler of its own.
# After each switch, two untimed requests (the first one after activation re-plans
# the emitter), then the timed ones. Per line (a turn), every configuration once,
# in an order rotated by the turn and reversed on odd turns. Outside the timed
# part, both log files are checked: n + 2 lines more in hopwatch's after "hopwatch",
# in the access log's after "access-log", none after the others; anything else
# raises, and the parent reports the worker dead. Each answer also gives the mean
# length of the lines written (line_bytes).
_TOGGLE = """
import logging
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.test.utils import override_settings
import hopwatch
from hopwatch import _patch, apps
from bench import access_log

instructions._configure_django("hopwatch", log)
configs = list(instructions.REQUEST_CONFIGS) + ["access-log"]
full = ASGIHandler()
apps.deactivate()
plain = [m for m in settings.MIDDLEWARE if not m.startswith("hopwatch")]
with override_settings(MIDDLEWARE=plain):
    bare = ASGIHandler()
with override_settings(MIDDLEWARE=["bench.access_log.AccessLogMiddleware", *plain]):
    access = ASGIHandler()
hopwatch_logger = logging.getLogger("hopwatch")
access_path = log + ".access"
atexit.register(os.unlink, access_path)
access_handler = logging.FileHandler(access_path)
access_handler.setFormatter(logging.Formatter("%(message)s"))
access_logger = logging.getLogger(access_log.LOGGER_NAME)
access_logger.addHandler(access_handler)
access_logger.setLevel(logging.INFO)
access_logger.propagate = False
files = {"hopwatch": open(log, "rb"), "access-log": open(access_path, "rb")}

def switch(config):
    if config in ("bare", "hops", "access-log"):
        apps.deactivate()
        if config == "hops":  # asgiref's patch alone (hopwatch.install() puts back all
            _patch.install()  # that apps.deactivate() removed, the request lines included)
        handler = access if config == "access-log" else bare
    else:
        apps.activate()
        settings.HOPWATCH = {"MIN_HOPS": 10**9} if config == "scope" else {}
        hopwatch_logger.setLevel(logging.WARNING if config == "build" else logging.INFO)
        handler = full
    if hopwatch.is_installed() != (config not in ("bare", "access-log")):
        raise RuntimeError(f"toggle: asgiref's patch in the wrong state for {config}")
    return handler

def new_lines():
    # Per log file, (lines, bytes) it grew by since the last call (FileHandler
    # flushes each line).
    grown = {}
    for name, written in files.items():
        data = written.read()
        grown[name] = (data.count(b"\\n"), len(data))
    return grown

for config in configs[:-1]:  # warm up every configuration
    loop.run_until_complete(instructions.serve_on(switch(config), 200))
if lines_in(log) != 200:  # only "hopwatch" writes hopwatch's line, a line a request
    stop(
        f"{hop_path.STOP}the toggled process's hopwatch log has {lines_in(log)} lines after"
        " its 200 warm-up requests under the full product, not 200"
    )
# The access log's lines as long as hopwatch's on the same request.
access_log.PAD_TO = len(open(log, "rb").read().splitlines()[-1])
loop.run_until_complete(instructions.serve_on(switch("access-log"), 200))
apps.deactivate()
new_lines()
print("ready", flush=True)
turn = 0
for line in sys.stdin:
    n = int(line)
    shift = turn % len(configs)
    order = configs[shift:] + configs[:shift]
    answer = {}
    line_bytes = {}
    for config in order[::-1] if turn % 2 else order:
        handler = switch(config)
        loop.run_until_complete(instructions.serve_on(handler, 2))
        cpu = time.process_time_ns()
        loop.run_until_complete(instructions.serve_on(handler, n))
        answer[config] = (time.process_time_ns() - cpu) / n
        for name, (lines, size) in new_lines().items():
            expected = n + 2 if config == name else 0
            if lines != expected:
                raise RuntimeError(
                    f"toggle: {lines} lines written to the {name} log under {config},"
                    f" not {expected}"
                )
            if lines:
                line_bytes[name] = size / lines
    apps.deactivate()
    turn += 1
    answer["line_bytes"] = line_bytes
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
    and, from ``toggled`` processes that switch through all five configurations in
    turn, per round each configuration's CPU ns per request in the same process
    (``toggled``: ``cpu_ns``, the mean over those processes, each one's answer in
    ``each``)."""
    if cpu is not None and not server.can_pin():
        cpu = None  # one core, or no taskset: nothing to pin with
    env = hop_path.worker_env(PYTHONDONTWRITEBYTECODE="1")
    slots = [(config, k) for k in range(processes) for config in CONFIGS]
    slots += [("toggle", k) for k in range(toggled)]
    workers: dict[tuple[str, int], subprocess.Popen[str]] = {}
    samples: dict[str, list[dict[str, Any]]] = {c: [] for c in CONFIGS}
    toggled_samples: list[dict[str, Any]] = []
    head = _WORKER.format(root=str(ROOT))

    def answer(slot: tuple[str, int]) -> str:
        worker = workers[slot]
        assert worker.stdout is not None
        line = worker.stdout.readline()
        if not line:
            raise RuntimeError(
                f"the {slot[0]} worker (process {slot[1]}) died, exit code {worker.wait()}"
                " (its traceback is above)"
            )
        return line

    try:
        for slot in slots:
            pin = server.pinned(cpu) if cpu is not None else []
            code = head + (_TOGGLE if slot[0] == "toggle" else _SERVE)
            command = [*pin, sys.executable, "-c", code, slot[0]]
            # Process k of every configuration has the same string-hash seed: the
            # layout of the dicts a request reads then differs less between them
            # (two runs of one build: 2.0% apart unseeded, 0.4% with seeds).
            seeded = {**env, "PYTHONHASHSEED": str(slot[1] + 1)}
            workers[slot] = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=seeded
            )
        for slot in workers:
            started = answer(slot).strip()
            if started.startswith("stop "):
                raise SystemExit(started.removeprefix("stop "))
            if started != "ready":
                raise RuntimeError(f"the {slot[0]} worker did not start")
        for r in range(rounds):
            shift = r % len(slots)
            got: dict[str, list[dict[str, float]]] = {c: [] for c in (*CONFIGS, "toggle")}
            for slot in slots[shift:] + slots[:shift]:
                worker = workers[slot]
                assert worker.stdin is not None
                worker.stdin.write(f"{requests}\n")
                worker.stdin.flush()
                got[slot[0]].append(json.loads(answer(slot)))
            toggle = got.pop("toggle")
            if toggle:
                served = [c for c in (*CONFIGS, *REFERENCES) if c in toggle[0]]
                toggled_samples.append(
                    {
                        "cpu_ns": {c: statistics.fmean(t[c] for t in toggle) for c in served},
                        "each": toggle,
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
                try:
                    worker.stdin.close()
                except BrokenPipeError:  # a worker that died
                    pass
        for worker in workers.values():
            worker.wait(timeout=60)
    return {
        "rounds": rounds,
        "requests": requests,
        "processes": processes,
        "toggled_processes": toggled,
        "pinned_cpu": cpu,
        # every worker checked it runs the hop path its environment asks for
        "hop_path": hop_path.asked(env),
        "samples": samples,
        "toggled": toggled_samples,
    }


def _rows(cpu_ns: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Per configuration (those of ``cpu_ns``, in CONFIGS' order, then REFERENCES'):
    the median CPU µs per request, the median of the per-round ratio to bare, and
    (after the first) the median of the per-round difference to the configuration
    above (a reference's: to bare); each median with its 95% interval."""
    bare = cpu_ns["bare"]
    rows = []
    previous = None
    for config in (c for c in (*CONFIGS, *REFERENCES) if c in cpu_ns):
        if config in REFERENCES:
            previous = "bare"
        cpu = cpu_ns[config]
        ratios = [s / b for s, b in zip(cpu, bare, strict=True)]
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
            steps = [(s - p) / 1000 for s, p in zip(cpu, cpu_ns[previous], strict=True)]
            row["step_us"] = statistics.median(steps)
            row["step_low"], row["step_high"] = median_interval(steps)
        previous = config
        rows.append(row)
    return rows


def summarize(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The separate processes' figures, a row per configuration (see _rows)."""
    samples = result["samples"]
    return _rows({c: [s["cpu_ns"] for s in samples[c]] for c in CONFIGS})


def summarize_toggled(result: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The toggled processes' figures, rows as summarize()'s, each ratio and part
    within one process and round. None when the run had no toggled process (or
    its results are of an earlier shape: they are left out of a rerendering)."""
    runs = result.get("toggled") or []
    if not runs or "cpu_ns" not in runs[0]:
        return None
    served = [c for c in (*CONFIGS, *REFERENCES) if c in runs[0]["cpu_ns"]]
    return _rows({c: [r["cpu_ns"][c] for r in runs] for c in served})


def line_bytes(result: dict[str, Any]) -> dict[str, float]:
    """The mean length of the lines the toggled processes wrote, per log (hopwatch's,
    the access log's); empty for a run that did not record it."""
    seen: dict[str, list[float]] = {}
    for run_ in result.get("toggled") or []:
        for answer in run_.get("each", []):
            for name, size in (answer.get("line_bytes") or {}).items():
                seen.setdefault(name, []).append(size)
    return {name: statistics.fmean(sizes) for name, sizes in seen.items()}


_PARTS = {
    "hops": "the asgiref patches recording every hop",
    "scope": "plus the app and middleware (scope, route, fold), no line",
    "build": "plus the line built, dropped by the logger's level",
    "hopwatch": "plus the line written (the full product)",
    "access-log": "for reference, not hopwatch: a hand-written middleware writing one"
    " JSON line per request as long as hopwatch's through a FileHandler (its part: over bare)",
}


def _table(rows: list[dict[str, Any]]) -> list[str]:
    bare_us = rows[0]["cpu_us"]
    lines = [
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
    return lines


def format_table(result: dict[str, Any]) -> str:
    processes = result.get("processes", 1)
    lines = [
        f"{result['rounds']} interleaved rounds of {result['requests']:,} requests per"
        + (
            f" process, {processes} processes per configuration"
            if processes > 1
            else " configuration, one process each"
        )
        + (f", pinned to CPU {result['pinned_cpu']}" if result["pinned_cpu"] is not None else "")
        + (
            f"; hopwatch's hop path {hop_path.NAMES[result['hop_path']]}"
            if result.get("hop_path") in hop_path.NAMES
            else ""
        )
        + "; CPU time per request (all threads). Ratios are medians over rounds of the"
        " ratio to bare in the same round, and a part's µs the median of its per-round"
        " difference to the configuration above; brackets: the 95% interval of that median.",
        "",
        *_table(summarize(result)),
    ]
    toggled = summarize_toggled(result)
    if toggled is not None:
        count = result.get("toggled_processes", 1)
        lines += [
            "",
            "The five configurations in turn inside one process, with a hand-written"
            " access log for reference (one memory layout:"
            " separate processes of one build differ by up to 2% in CPU time per request),"
            f" {len(result['toggled'])} rounds (the process takes its turn in each round"
            " above): per round, each configuration switched to, two untimed requests, then"
            f" {result['requests']:,} timed ones, in an order rotated and reversed from round"
            " to round"
            + (f"; per round, the mean of {count} such processes" if count > 1 else "")
            + ". Ratios and parts as above, within the process and round.",
            "",
            *_table(toggled),
        ]
        sizes = line_bytes(result)
        if "access-log" in {row["config"] for row in toggled} and sizes:
            lines += [
                "",
                "The access log is the floor under hopwatch's line: the least a Django user"
                " writes to log one JSON line per request (`bench/access_log.py`: an async"
                " middleware, a dict of five fields, `json.dumps`, `logger.info`), with its"
                f" lines padded to hopwatch's length (hopwatch's {sizes.get('hopwatch', 0):,.0f}"
                f" bytes a line on average, the access log's {sizes.get('access-log', 0):,.0f})"
                " and written through a `FileHandler` of its own, which flushes each one.",
            ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--requests", type=int, default=40, help="requests per process and round")
    parser.add_argument("--processes", type=int, default=3, help="processes per configuration")
    parser.add_argument(
        "--toggled",
        type=int,
        default=1,
        help="processes serving all five configurations in turn, each inside itself (0: none)",
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
