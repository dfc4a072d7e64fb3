"""Server benchmark: the example site under uvicorn, bare and instrumented, under load.

Every configuration (``CONFIGS``: the bare site, hopwatch, and the tools a user
would pick instead) runs as its own uvicorn process on 127.0.0.1, all started
once and kept up for the whole run. Rounds then interleave them: in each round,
for each endpoint, every configuration gets one fixed-duration load run at the
same concurrency, in an order rotated from round to round. Results are medians
over rounds, and ratios to the baseline *of the same round*, so the shared
machine's drift cancels out as far as it can.

In a round nine configurations take their turn, so the baseline's run and
hopwatch's can lie half a minute apart, and a run of a few seconds holds one
full garbage collection or two. The targets are judged on hopwatch against the
baseline, so after the rounds those two alone run back to back
(``paired_rounds`` pairs per endpoint, which of them goes first alternating):
the ratio within a pair has no drift between its halves, and the pairs are
many enough to give the median an interval. The pairs' runs are longer
(``paired_duration``): a run's p99 is set by the full collections inside it,
and a longer run holds several (with 4-second runs the p99 ratio's interval
spanned some 50 points, with 10-second runs 25 to 35). Where the hand-written
access log runs (``FLOOR``: the floor under any line per request), it joins
each pair: the three run back to back, each order equally often
(``group_order``), and hopwatch is read against the floor from the same runs.

Then the pairs run once more (``frozen_rounds``), the baseline and hopwatch
each in a server of its own that froze what start-up loaded (``FROZEN_PAIR``:
``gc.collect()`` then ``gc.freeze()`` once the application is made, what the
FAQ advises). A full collection of a Django process takes tens of
milliseconds and holds up every connection; a 10-second run's p99 falls on the
edge of the band of requests those pauses hold up, so it moves with how long
each one takes, which grows with every module a process has loaded. Frozen,
the collector walks none of start-up's objects, whoever loaded them, and the
pairs read what the requests themselves cost the tail. The targets stay judged
on the pairs as they are; the frozen pairs are reported beside them.

The load comes from wrk (``-t1``, keep-alive connections, a Lua ``done`` hook
printing exact percentiles as JSON) or, when wrk is missing, from the asyncio
HTTP/1.1 client below (same shape: fixed concurrency, keep-alive, fixed
duration). With two or more cores the server is pinned to one core and the
load generator to another (``taskset``).

Also a command line for the pieces run as separate processes::

    python -m bench.server serve CONFIG --port P --lifetime S [--evidence FILE]
    python -m bench.server load http://127.0.0.1:P/path --connections C --duration D
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Config:
    name: str
    settings: str  # the Django settings module (under bench/peers/)
    label: str
    needs: tuple[str, ...] = ()  # importable modules the configuration needs
    install_hint: str = ""
    #: start-up's objects frozen, as the FAQ advises: ``gc.collect()`` then
    #: ``gc.freeze()`` once ``asgi.py`` has made the application
    freeze: bool = False


CONFIGS = [
    Config("baseline", "bench.peers.baseline", "no instrumentation"),
    Config("hopwatch", "bench.peers.with_hopwatch", "hopwatch", ("hopwatch",)),
    Config(
        "hopwatch-unlogged",
        "bench.peers.with_hopwatch_unlogged",
        "hopwatch counting only, no line (diagnostic)",
        ("hopwatch",),
    ),
    Config(
        "access-log",
        "bench.peers.with_access_log",
        "a hand-written access log, no hopwatch (diagnostic: the line's floor)",
    ),
    Config(
        "hopwatch-otel-metrics",
        "bench.peers.with_hopwatch_otel_metrics",
        "hopwatch with OTEL_METRICS (OpenTelemetry SDK)",
        ("hopwatch", "opentelemetry.sdk.metrics"),
        "opentelemetry-sdk",
    ),
    Config(
        "pyinstrument",
        "bench.peers.with_pyinstrument",
        "pyinstrument middleware, every request",
        ("pyinstrument.middleware",),
        "pyinstrument",
    ),
    Config(
        "opentelemetry",
        "bench.peers.with_opentelemetry",
        "OpenTelemetry Django, in-memory exporter",
        (
            "opentelemetry.sdk.trace",
            "opentelemetry.instrumentation.django",
            "opentelemetry.instrumentation.asgi",
        ),
        "opentelemetry-sdk opentelemetry-instrumentation-django opentelemetry-instrumentation-asgi",
    ),
    Config(
        "opentelemetry-hopwatch-spans",
        "bench.peers.with_opentelemetry_hopwatch_spans",
        "OpenTelemetry Django + hopwatch with OTEL_SPANS",
        (
            "hopwatch",
            "opentelemetry.sdk.trace",
            "opentelemetry.instrumentation.django",
            "opentelemetry.instrumentation.asgi",
        ),
        "opentelemetry-sdk opentelemetry-instrumentation-django opentelemetry-instrumentation-asgi",
    ),
    Config(
        "sentry",
        "bench.peers.with_sentry",
        "sentry-sdk, traces 100%, discarding transport",
        ("sentry_sdk.integrations.django",),
        "sentry-sdk",
    ),
]


def frozen(config: Config) -> Config:
    """``config`` with start-up's objects frozen (``Config.freeze``)."""
    return Config(
        f"{config.name}{FROZEN_SUFFIX}",
        config.settings,
        f"{config.label}, start-up frozen (gc.freeze())",
        config.needs,
        config.install_hint,
        freeze=True,
    )


FROZEN_SUFFIX = "-frozen"
#: The back-to-back pairs run once more with both servers frozen: a run's p99
#: follows the full collections in it, and freezing takes start-up's objects
#: (Django's, hopwatch's and structlog's modules alike) out of every one of them.
#: They run only in those pairs, not in the rounds.
FROZEN_PAIR = tuple(
    frozen(next(c for c in CONFIGS if c.name == n)) for n in ("baseline", "hopwatch")
)
CONFIG_BY_NAME = {c.name: c for c in (*CONFIGS, *FROZEN_PAIR)}


@dataclass(frozen=True)
class Endpoint:
    path: str
    label: str
    hops: int = 0  # hops per request on the example site (0: not known)


ENDPOINTS = [
    Endpoint("/hello/", "async view, default middleware (15 hops)", 15),
    Endpoint("/products/", "async view, one ORM query (16 hops)", 16),
]

SERVER_CPU = 1
LOAD_CPU = 0


def missing_modules(config: Config) -> list[str]:
    """The modules ``config`` needs that this interpreter cannot import."""
    missing = []
    for name in config.needs:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):
            missing.append(name)
    return missing


def can_pin() -> bool:
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def pinned(cpu: int) -> list[str]:
    """A ``taskset`` prefix running a command on ``cpu``, or nothing when we can't pin."""
    return ["taskset", "-c", str(cpu)] if can_pin() else []


# --- the server process -------------------------------------------------------


class CollectorClock:
    """A ``gc.callbacks`` entry: collections per generation and the time spent in
    them, in this process. Under uvicorn a full collection of a Django process takes
    tens of milliseconds and holds up every connection, which is what decides the
    p99 in a short run; what a tool leaves for the collector shows here."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.ns = [0, 0, 0]
        self.max_ns = [0, 0, 0]
        self._started = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
            return
        generation = info["generation"]
        spent = time.perf_counter_ns() - self._started
        self.collections[generation] += 1
        self.ns[generation] += spent
        self.max_ns[generation] = max(self.max_ns[generation], spent)

    def summary(self) -> dict[str, list[float]]:
        return {
            "collections": list(self.collections),
            "ms": [round(ns / 1e6, 3) for ns in self.ns],
            "max_ms": [round(ns / 1e6, 3) for ns in self.max_ns],
        }


def serve(config_name: str, port: int, lifetime: float, evidence_path: str | None) -> None:
    """Run the example site with ``config_name``'s settings under uvicorn on 127.0.0.1.

    The same uvicorn settings as ``example_site.servers`` (one process, h11,
    no access log); stops on SIGTERM/SIGINT or after ``lifetime`` seconds, then
    writes the configuration's evidence (if any) as JSON.
    """
    config = CONFIG_BY_NAME[config_name]
    sys.path.insert(0, str(ROOT))
    if "hopwatch" in config.needs:
        from bench import hop_path

        hop_path.check()  # the C hop path, or stop with one line
    os.environ["DJANGO_SETTINGS_MODULE"] = config.settings
    module = importlib.import_module(config.settings)
    instrument: Callable[[], None] | None = getattr(module, "instrument", None)
    if instrument is not None:
        instrument()

    import uvicorn

    app: object = "example_site.asgi:application"
    frozen_at_start = 0
    if config.freeze:
        # What the FAQ says to put at the end of asgi.py, after the application
        # is made: the objects start-up loaded leave every later collection.
        from example_site.asgi import application

        app = application
        gc.collect()
        gc.freeze()
        frozen_at_start = gc.get_freeze_count()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    )
    collector = CollectorClock()
    gc.callbacks.append(collector)
    timer = threading.Timer(lifetime, lambda: setattr(server, "should_exit", True))
    timer.daemon = True
    timer.start()
    # uvicorn re-raises the signal that stopped it once it has shut down; with
    # the default handlers that would kill the process before the evidence.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        server.run()
    finally:
        evidence: Callable[[], dict[str, object]] | None = getattr(module, "evidence", None)
        if evidence_path:
            found = evidence() if evidence is not None else {}
            found[COLLECTOR] = collector.summary()
            if config.freeze:
                found["objects frozen at start-up"] = frozen_at_start
            Path(evidence_path).write_text(json.dumps(found))
    os._exit(0)  # worker threads (Django's, a tool's) must not keep the process alive


# --- load generators ----------------------------------------------------------


@dataclass
class Trial:
    """One load run against one server: throughput, latency, errors."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


_WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


def run_wrk(url: str, connections: int, duration: float, wrk: str = "wrk") -> Trial:
    """One wrk run (one thread, ``connections`` keep-alive connections)."""
    with tempfile.TemporaryDirectory(prefix="hopwatch-wrk-") as tmp:
        script = Path(tmp) / "done.lua"
        script.write_text(_WRK_SCRIPT)
        seconds = max(1, round(duration))  # wrk takes whole seconds
        command = [*pinned(LOAD_CPU), wrk, "-t1", f"-c{connections}", f"-d{seconds}s"]
        command += ["--timeout", "10s", "-s", str(script), url]
        result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    line = next(ln for ln in reversed(result.stdout.splitlines()) if ln.startswith("{"))
    data = json.loads(line)
    return Trial(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=data["errors"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )


async def _one_connection(
    host: str,
    port: int,
    request: bytes,
    deadline: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            headers = head.decode("latin-1").lower()
            length = None
            for line in headers.split("\r\n")[1:]:
                if line.startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            if length is not None:
                await reader.readexactly(length)
            elif "transfer-encoding: chunked" in headers:
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            latencies.append(time.perf_counter() - start)
            if not 200 <= status < 400:
                errors[0] += 1
            if "connection: close" in headers:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            errors[0] += 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


def run_python_load(url: str, connections: int, duration: float) -> Trial:
    """The fallback load generator: asyncio, HTTP/1.1 keep-alive, fixed concurrency and duration."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if host not in ("127.0.0.1", "localhost"):
        raise ValueError("the load generator targets 127.0.0.1 only")
    request = (
        f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "User-Agent: hopwatch-bench\r\nAccept: */*\r\n\r\n"
    ).encode()
    latencies: list[float] = []
    errors = [0]

    async def main() -> float:
        start = time.perf_counter()
        deadline = start + duration
        await asyncio.gather(
            *(
                _one_connection(host, port, request, deadline, latencies, errors)
                for _ in range(connections)
            )
        )
        return time.perf_counter() - start

    seconds = asyncio.run(main())
    ordered = sorted(latencies)

    def percentile(p: float) -> float:
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000

    return Trial(len(ordered), seconds, errors[0], percentile(50), percentile(99))


def load_in_subprocess(url: str, connections: int, duration: float) -> Trial:
    """Run :func:`run_python_load` in its own process, on the load generator's core."""
    command = [*pinned(LOAD_CPU), sys.executable, "-m", "bench.server", "load", url]
    command += ["--connections", str(connections), "--duration", str(duration)]
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, timeout=duration + 60
    )
    if result.returncode != 0:
        raise RuntimeError(f"load generator failed: {result.stderr.strip()[-500:]}")
    return Trial(**json.loads(result.stdout))


# --- the benchmark ------------------------------------------------------------


#: The evidence key of a server's CollectorClock summary.
COLLECTOR = "collector"


@dataclass
class ServerResults:
    configs: list[Config]
    endpoints: list[Endpoint]
    rounds: int
    duration: float
    connections: int
    loadgen: str
    pinned: bool
    #: (config name, endpoint path) -> one Trial per round
    trials: dict[tuple[str, str], list[Trial]] = field(default_factory=dict)
    evidence: dict[str, dict[str, object]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # config name -> why
    #: config name -> requests served over the server's life (warm-ups included)
    served: dict[str, int] = field(default_factory=dict)
    #: endpoint path -> (baseline trial, hopwatch trial) run back to back
    paired: dict[str, list[tuple[Trial, Trial]]] = field(default_factory=dict)
    #: endpoint path -> the access log's trial run in the same back-to-back group as
    #: each of those pairs (``FLOOR``; empty when it did not run), in their order
    floor: dict[str, list[Trial]] = field(default_factory=dict)
    #: seconds per run of those pairs
    paired_duration: float = 0.0
    #: endpoint path -> (baseline trial, hopwatch trial) back to back, both servers
    #: with start-up frozen (``FROZEN_PAIR``), when they ran
    frozen: dict[str, list[tuple[Trial, Trial]]] = field(default_factory=dict)

    def count_served(self, config: str, trial: Trial) -> None:
        self.served[config] = self.served.get(config, 0) + trial.requests

    def median(self, config: str, path: str, attr: str) -> float:
        return statistics.median(getattr(t, attr) for t in self.trials[(config, path)])

    def ratios(self, config: str, path: str, attr: str) -> list[float]:
        """Per-round ratio of ``config`` to the baseline, same round, same endpoint."""
        pairs = zip(self.trials[(config, path)], self.trials[("baseline", path)], strict=True)
        return [getattr(t, attr) / getattr(b, attr) for t, b in pairs if getattr(b, attr)]

    def ratio(self, config: str, path: str, attr: str) -> float:
        return statistics.median(self.ratios(config, path, attr))

    def errors(self, config: str, path: str) -> int:
        return sum(t.errors for t in self.trials[(config, path)])

    def paired_ratios(self, path: str, attr: str, frozen: bool = False) -> list[float]:
        """Per pair, hopwatch's ``attr`` to the baseline's run next to it (of the
        frozen pairs with ``frozen``)."""
        return [
            getattr(h, attr) / getattr(b, attr)
            for b, h in (self.frozen if frozen else self.paired).get(path, [])
            if getattr(b, attr)
        ]

    def floor_ratios(self, path: str, attr: str, of: str) -> list[float]:
        """Per back-to-back group with the access log in it: the access log's ``attr``
        to the baseline's (``of="floor"``), or hopwatch's to the access log's
        (``of="hopwatch"``), all three runs of one group side by side."""
        groups = zip(self.paired.get(path, []), self.floor.get(path, []), strict=False)
        if of == "floor":
            return [getattr(a, attr) / getattr(b, attr) for (b, _), a in groups if getattr(b, attr)]
        return [getattr(h, attr) / getattr(a, attr) for (_, h), a in groups if getattr(a, attr)]


#: The configuration that is the floor under any line per request (a hand-written
#: access log); it runs beside each back-to-back pair when it is configured.
FLOOR = "access-log"


def group_order(group: tuple[str, ...], k: int) -> tuple[str, ...]:
    """The order of the ``k``-th back-to-back group's runs: rotated by one each
    group, and reversed every other cycle of rotations, so that each configuration
    goes first, between and last, and after each of the others, equally often (for
    a pair: which goes first alternates). Drift within a group favours none."""
    n = len(group)
    shift = k % n
    order = group[shift:] + group[:shift]
    return order[::-1] if n > 2 and (k // n) % 2 else order


def estimate_seconds(
    n_configs: int,
    n_endpoints: int,
    rounds: int,
    duration: float,
    paired_rounds: int = 0,
    paired_duration: float | None = None,
    with_floor: bool = False,
    frozen_rounds: int = 0,
) -> float:
    per_run = duration + 0.4
    n_servers = n_configs + (len(FROZEN_PAIR) if frozen_rounds else 0)
    warmup = n_servers * n_endpoints * (max(1.0, duration / 2) + 0.4)
    runs = 3 if with_floor else 2  # runs per back-to-back group
    paired_run = (paired_duration or duration) + 0.4
    paired = (paired_rounds * runs + frozen_rounds * 2) * n_endpoints * paired_run
    return 20 + warmup + rounds * n_configs * n_endpoints * per_run + paired


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_database(var: Path) -> None:
    """A fresh sqlite database with the example site's fixture, shared by every server."""
    var.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_site.settings",
        "EXAMPLE_SITE_VAR": str(var),
        "PYTHONPATH": str(ROOT),
    }
    manage = [sys.executable, str(ROOT / "example_site" / "manage.py")]
    for command in (["migrate", "--verbosity", "0"], ["loaddata", "products", "--verbosity", "0"]):
        result = subprocess.run([*manage, *command], env=env, cwd=ROOT, capture_output=True)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {command[0]} failed: {result.stderr.decode()[-2000:]}")


def wait_until_up(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello/", timeout=2) as reply:
                reply.read()
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"no server answered on 127.0.0.1:{port} within {timeout:.0f}s")


@contextmanager
def servers(
    configs: list[Config], var: Path, lifetime: float, say: Callable[[str], None]
) -> Iterator[dict[str, int]]:
    """Start one server per configuration (pinned to SERVER_CPU); stop them all on exit."""
    from bench import hop_path

    ports = {c.name: free_port() for c in configs}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    env = hop_path.worker_env(EXAMPLE_SITE_VAR=str(var), PYTHONPATH=str(ROOT))
    env.pop("DJANGO_SETTINGS_MODULE", None)
    try:
        for config in configs:
            command = [*pinned(SERVER_CPU), sys.executable, "-m", "bench.server", "serve"]
            command += [config.name, "--port", str(ports[config.name])]
            command += ["--lifetime", str(lifetime)]
            command += ["--evidence", str(var / f"{config.name}.evidence.json")]
            server_env = {
                **env,
                "HOPWATCH_LOG": str(var / f"{config.name}.hopwatch.log"),
                "BENCH_PROFILE_DIR": str(var / f"{config.name}.profiles"),
            }
            processes[config.name] = subprocess.Popen(
                command, env=server_env, cwd=ROOT, stdout=subprocess.DEVNULL
            )
        for config in configs:
            wait_until_up(ports[config.name], processes[config.name])
        say(f"servers up: {', '.join(f'{n} :{p}' for n, p in ports.items())}")
        yield ports
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run(
    configs: list[Config] | None = None,
    endpoints: list[Endpoint] | None = None,
    rounds: int = 5,
    duration: float = 5.0,
    connections: int = 8,
    wrk: str | None = None,
    say: Callable[[str], None] = print,
    paired_rounds: int = 0,
    paired_duration: float | None = None,
    frozen_rounds: int = 0,
) -> ServerResults:
    """The whole server benchmark; ``wrk`` is its path, or None for the Python generator.
    ``paired_rounds``: pairs per endpoint of the baseline and hopwatch back to back, each
    run ``paired_duration`` seconds long (default: ``duration``); ``frozen_rounds``: pairs
    per endpoint of the two with start-up frozen (``FROZEN_PAIR``), after those."""
    endpoints = endpoints or ENDPOINTS
    wanted = configs or CONFIGS
    if wanted[0].name != "baseline":
        raise ValueError("the first configuration must be the baseline")
    runnable, skipped = [], {}
    for config in wanted:
        missing = missing_modules(config)
        if missing:
            skipped[config.name] = f"not importable here: {', '.join(missing)}"
        else:
            runnable.append(config)
    results = ServerResults(
        runnable,
        endpoints,
        rounds,
        duration,
        connections,
        "wrk" if wrk else "python",
        can_pin(),
        skipped=skipped,
    )
    for name, why in skipped.items():
        say(f"skipping {name}: {why}")

    def one(port: int, path: str, seconds: float) -> Trial:
        url = f"http://127.0.0.1:{port}{path}"
        if wrk:
            return run_wrk(url, connections, seconds, wrk)
        return load_in_subprocess(url, connections, seconds)

    names = [c.name for c in runnable]
    if "hopwatch" not in names:
        paired_rounds = frozen_rounds = 0
    extra = list(FROZEN_PAIR) if frozen_rounds else []
    paired_duration = paired_duration or duration
    results.paired_duration = paired_duration if paired_rounds else 0.0
    # The access log, where it runs, joins each pair: hopwatch against the line's
    # floor, read the way the targets are.
    group = ("baseline", "hopwatch", FLOOR) if FLOOR in names else ("baseline", "hopwatch")
    estimate = estimate_seconds(
        len(runnable),
        len(endpoints),
        rounds,
        duration,
        paired_rounds,
        paired_duration,
        with_floor=len(group) == 3,
        frozen_rounds=frozen_rounds,
    )
    with tempfile.TemporaryDirectory(prefix="hopwatch-bench-") as tmp:
        var = Path(tmp)
        say("preparing the example site's database")
        prepare_database(var)
        with servers([*runnable, *extra], var, lifetime=estimate * 2 + 120, say=say) as ports:
            say("warming up every server on every endpoint")
            for config in [*runnable, *extra]:
                for endpoint in endpoints:
                    warm = one(ports[config.name], endpoint.path, max(1.0, duration / 2))
                    results.count_served(config.name, warm)
            for r in range(rounds):
                for endpoint in endpoints:
                    # Rotate the order every round: no configuration always runs first.
                    shift = r % len(runnable)
                    for config in runnable[shift:] + runnable[:shift]:
                        trial = one(ports[config.name], endpoint.path, duration)
                        results.trials.setdefault((config.name, endpoint.path), []).append(trial)
                        results.count_served(config.name, trial)
                say(
                    f"round {r + 1}/{rounds}: "
                    + ", ".join(
                        f"{c.name} {results.trials[(c.name, endpoints[0].path)][-1].rps:.0f}"
                        for c in runnable
                    )
                    + f" req/s on {endpoints[0].path}"
                )
            for endpoint in endpoints:
                pairs = results.paired.setdefault(endpoint.path, [])
                for k in range(paired_rounds):
                    order = group_order(group, k)
                    got = {name: one(ports[name], endpoint.path, paired_duration) for name in order}
                    for name, trial in got.items():
                        results.count_served(name, trial)
                    pairs.append((got["baseline"], got["hopwatch"]))
                    if FLOOR in got:
                        results.floor.setdefault(endpoint.path, []).append(got[FLOOR])
                ratios = results.paired_ratios(endpoint.path, "rps")
                if ratios:
                    say(
                        f"back to back on {endpoint.path}: {len(ratios)} pairs, hopwatch"
                        f" {statistics.median(ratios):.3f}x the baseline's req/s"
                    )
            frozen_names = tuple(c.name for c in extra)
            for endpoint in endpoints if extra else []:
                pairs = results.frozen.setdefault(endpoint.path, [])
                for k in range(frozen_rounds):
                    got = {
                        name: one(ports[name], endpoint.path, paired_duration)
                        for name in group_order(frozen_names, k)
                    }
                    for name, trial in got.items():
                        results.count_served(name, trial)
                    pairs.append((got[frozen_names[0]], got[frozen_names[1]]))
                ratios = results.paired_ratios(endpoint.path, "p99_ms", frozen=True)
                if ratios:
                    say(
                        f"back to back on {endpoint.path}, start-up frozen in both:"
                        f" {len(ratios)} pairs, hopwatch's p99"
                        f" {statistics.median(ratios):.3f}x the baseline's"
                    )
        for config in [*runnable, *extra]:
            path = var / f"{config.name}.evidence.json"
            if path.exists():
                results.evidence[config.name] = json.loads(path.read_text())
    return results


# --- command line -------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run one configuration's server")
    serve_parser.add_argument("config", choices=list(CONFIG_BY_NAME))
    serve_parser.add_argument("--port", type=int, required=True)
    serve_parser.add_argument("--lifetime", type=float, default=600.0)
    serve_parser.add_argument("--evidence", default=None)
    load_parser = commands.add_parser("load", help="the Python load generator, JSON out")
    load_parser.add_argument("url")
    load_parser.add_argument("--connections", type=int, default=8)
    load_parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.config, args.port, args.lifetime, args.evidence)
        return 0
    if not 0 < args.duration <= 600 or not 1 <= args.connections <= 1024:
        parser.error("--duration takes (0, 600] seconds and --connections 1-1024")
    trial = run_python_load(args.url, args.connections, args.duration)
    print(json.dumps(trial.__dict__))
    return 0


if __name__ == "__main__":
    sys.exit(main())
