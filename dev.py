#!/usr/bin/env python3
"""hopwatch's developer commands. Needs only python3 (3.11+); sets up everything else.

    python3 dev.py test      lint, types, then the whole test suite on each supported
                             Python + Django: 3.11 + 5.2, 3.12 + 6.0, 3.13 + 6.1
    python3 dev.py demo      the example site under uvicorn, traffic, then `hopwatch report`
    python3 dev.py site      the example site in debug mode (django-debug-toolbar, Hops panel)
    python3 dev.py bench     the benchmarks (writes docs/performance.md);
                             `bench --instructions`: instructions per hop and per request,
                             in .venvs/bench as the full run (`--env django61`: on that
                             environment's Python and Django)

Each environment is a virtualenv under .venvs/, made on first use and reused
while its requirements are unchanged. Extra arguments after `test` go to pytest
(`python3 dev.py test -k counts`); `--env django52` runs one environment only.
The full run runs two environments' tests at a time on two or more cores, then
the slow tests alone; `--serial` runs one at a time.
An environment's Python is `python3.X` on PATH, else pyenv's newest 3.X; a
missing one is skipped with a message (with CI=true it fails the run).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
VENVS = ROOT / ".venvs"


@dataclass(frozen=True)
class Environment:
    python: str  # "3.12": the interpreter's major.minor
    requirements: tuple[str, ...]


# The support matrix. Each Django with the Python it is tested on; asgiref is
# pinned to cover its range: 5.2's floor (3.8.1), 6.0's floor (3.9.1), newest.
# The oldest-dependencies environment (django52) has every other runtime dependency's
# and extra's floor from pyproject.toml too (pyinstrument 4.6.0, for one, passes
# use_async_context to StackSampler.subscribe positionally, 5 by keyword; msgspec
# before 0.23 read lines differently), and the OpenTelemetry SDK, exporter and
# instrumentation releases of the otel extra's floor (API 1.31.0: the Prometheus
# exporter's oldest right release, 0.52b0, needs SDK 1.31.0, which needs API 1.31.0;
# the exporter before it gave every series of a metric the label names of its last
# data point, so one 404's missing http.route took http_route off every route's
# series: open-telemetry/opentelemetry-python #3391, #4418). An environment's
# pin replaces the test requirement of the same project (see requirements()); the
# others have the newest (pip's choice, or TEST_REQUIREMENTS' pin).
ENVIRONMENTS: dict[str, Environment] = {
    "django52": Environment(
        "3.11",
        (
            "Django==5.2.19",
            "asgiref==3.8.1",
            "pyinstrument==4.6.0",
            "structlog==23.1.0",
            "orjson==3.9.0",
            "msgspec==0.23.0",
            "rich==14.3.0",
            "opentelemetry-api==1.31.0",
            "opentelemetry-sdk==1.31.0",
            "opentelemetry-exporter-prometheus==0.52b0",
            "opentelemetry-instrumentation-django==0.52b0",
            "opentelemetry-instrumentation-asgi==0.52b0",
            "opentelemetry-instrumentation-wsgi==0.52b0",
            "django-debug-toolbar==6.0.0",
            "isal==1.6.0",
        ),
    ),
    "django60": Environment("3.12", ("Django==6.0.10", "asgiref==3.9.1")),
    "django61": Environment("3.13", ("Django==6.1.3", "asgiref==3.13.0")),
}
# Lint, types, the demo and the benchmarks: the first of these that is available.
DEFAULT_ENVS = ("django52", "django61", "django60")
# The load, memory and server-fault tests (marked `slow`) run on one environment
# only: they test hopwatch under load, which does not change with Django, and
# take ~4 of the ~6 minutes an environment needs on 2 cores (measured): on all
# three the run would pass 20 minutes on a loaded machine. So do the builds of
# hopwatch from its sdist (tests/test_install.py, marked `slow` too): what they
# test, pip and setuptools building the optional extensions, is one build per
# run whatever the Django, and each Python's extension is built by set-up anyway.
# And so do the bench harness's real runs (tests/test_bench.py: two under
# callgrind, two of the per-request rounds; about 65 s a run): they test a
# development tool, whose cheap tests (rendering, judging) still run everywhere.
SLOW_ENV = "django61"

TEST_REQUIREMENTS = [
    "pytest==9.2.0",
    "pytest-django==4.14.0",
    "hypothesis==6.155.2",
    "uvicorn==0.55.0",
    # OUTPUT_BUFFER's server tests: how each server's processes end on SIGTERM
    "gunicorn==27.0.1",
    "hypercorn==0.18.0",
    "daphne==4.2.3",
    "granian==2.8.9",
    # MEASURE_HOP_TAX under gevent's monkey-patching (gunicorn's gevent worker)
    "gevent==26.9.0",
    # uvloop (uvicorn[standard]'s loop): it dispatches from C, where call sites stop
    "uvloop==0.23.0",
    "ruff==0.17.6",
    "mypy==1.19.1",
    "rich==15.0.0",  # the rich extra: the terminal tables' tests
    # hopwatch.otel's tests: the SDK's in-memory reader and exporter, its Prometheus
    # exporter scraped over HTTP, and OpenTelemetry's own ASGI/WSGI/Django instrumentation
    # for the request's span; DuckDB runs the warehouse query of docs/log-warehouses.md.
    "opentelemetry-api==1.45.2",
    "opentelemetry-sdk==1.45.2",
    "opentelemetry-exporter-prometheus==0.66b2",
    "prometheus-client==0.26.0",
    "opentelemetry-instrumentation-django==0.66b2",
    "opentelemetry-instrumentation-asgi==0.66b2",
    "opentelemetry-instrumentation-wsgi==0.66b2",
    "duckdb==2.0.0",
    # The debug-toolbar panel (the extra's newest release; django52 has its floor, 6.0.0)
    # and selenium, which drives Debian's chromium for the panel's screenshot.
    "django-debug-toolbar==8.0.0",
    "selenium==4.51.0",
    "isal==1.9.1",  # the fast-gzip extra: the report's gzip tests read through it and without it
    # How the line names a framework's operations (tests/test_names.py): a django-ninja API.
    "django-ninja==1.7.1",
    "pydantic==2.14.4",
    # tests/test_install.py: hopwatch's sdist, as a release makes it, for pip to build
    "build==1.6.1",
    # tests/test_db_pool.py: Django's PostgreSQL connection pool, against a throw-away
    # cluster of PostgreSQL's server (dev.py installs it with apt-get when it can)
    "psycopg[binary]==3.3.9",
    "psycopg-pool==3.3.3",
    # and the usual third-party pool (MySQL's above all): django-db-connection-pool, SQLAlchemy's
    # QueuePool behind dj_db_conn_pool.backends.*; its PostgreSQL backend on psycopg 3 above
    "django-db-connection-pool==1.2.6",
    "SQLAlchemy==2.1.9",
    "sqlparams==6.2.0",
]

# The browser the screenshot test drives, from Debian's packages.
BROWSER_PACKAGES = ["chromium", "chromium-driver"]
# PostgreSQL's server, for tests/test_db_pool.py (Django's connection pool is PostgreSQL's).
POSTGRES_PACKAGES = ["postgresql"]

# The whole suite runs once more on the pure-Python hop path
# (HOPWATCH_PURE_PYTHON=1), on this environment (asgiref's oldest supported
# release: its thread_handler gets the context's run method, the newest a
# closure; the C runs cover both), without the slow tests.
PURE_PYTHON_ENV = "django52"


def _python(env: str) -> Path:
    return VENVS / env / "bin" / "python"


# --- the commands dev.py runs, and ending them with it -------------------------------------
# A SIGTERM (what CI sends on a timeout or a cancel), a SIGHUP, or a SIGINT while a
# command runs in a process group of its own, ends the commands running (each one's
# process group when it has one: pytest with the servers its tests started) and then
# dev.py, with status 128 + the signal's number (143 for SIGTERM). A command runs in a
# process group of its own where no terminal would reach it: a lane, whose output goes
# to a file, and every command when dev.py's stdin is not a terminal (CI). At a terminal
# the others stay in dev.py's group, so Ctrl-C and pdb reach them as before.

#: The commands running now: pid -> (the process, whether it has a process group of its own).
_RUNNING: dict[int, tuple[subprocess.Popen[bytes], bool]] = {}
_RUNNING_LOCK = threading.RLock()
_ENDING = threading.Event()
#: Held while a lane prints its output, so that no other line comes inside it.
_PRINTING = threading.Lock()
#: How long the commands get to end after the signal is passed on, before they are killed.
END_GRACE = 10.0


def _interactive() -> bool:
    return sys.stdin is not None and not sys.stdin.closed and sys.stdin.isatty()


def _call(
    cmd: list[str], timeout: float | None = None, own_group: bool = False, **kwargs: Any
) -> int | None:
    """``cmd`` run to its end, its status; None when it ran past ``timeout`` (it is
    killed then, with its process group when it has one of its own)."""
    own_group = own_group or not _interactive()
    with _RUNNING_LOCK:
        if _ENDING.is_set():  # dev.py is ending: start nothing more
            return 1
        process = subprocess.Popen(cmd, process_group=0 if own_group else None, **kwargs)
        _RUNNING[process.pid] = (process, own_group)
    try:
        with process:
            try:
                return int(process.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                _signal(process, own_group, signal.SIGKILL)
                process.wait()
                return None
            except BaseException:  # Ctrl-C at a terminal: as subprocess.call does
                process.kill()
                raise
    finally:
        with _RUNNING_LOCK:
            _RUNNING.pop(process.pid, None)


def _signal(process: subprocess.Popen[bytes], own_group: bool, signum: int) -> None:
    try:
        if own_group:
            os.killpg(process.pid, signum)
        elif process.returncode is None:
            os.kill(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _ended(process: subprocess.Popen[bytes]) -> bool:
    """Whether ``process`` has ended (reaped here, or by the thread that waits for it)."""
    if process.returncode is not None:
        return True
    try:
        return os.waitpid(process.pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return True


def _say(message: str, last: bool = False) -> None:
    """A line that may not reach anyone (after a SIGHUP the terminal may be gone), not
    inside a lane's output (a lane whose run has ended may be printing it); the
    ``last``, with no lane's output after it."""
    held = _PRINTING.acquire(timeout=5)
    try:
        print(message, flush=True)
    except (OSError, ValueError):
        pass
    finally:
        if held and not last:
            _PRINTING.release()


def _on_signal(signum: int, _frame: object) -> None:
    """End the commands running, then dev.py, with status 128 + ``signum``."""
    with _RUNNING_LOCK:
        running = list(_RUNNING.values())
    if signum == signal.SIGINT and not any(own for _, own in running):
        raise KeyboardInterrupt  # the terminal's Ctrl-C has reached the commands too
    _ENDING.set()
    name = signal.Signals(signum).name
    _say(f"\ndev.py: {name}: ending the commands it runs")
    # SIGINT as it is (pytest then ends its tests' servers and prints where it was);
    # SIGTERM for SIGTERM and SIGHUP (a command may ignore SIGHUP).
    passed_on = signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM
    signalled: set[int] = set()
    deadline = time.monotonic() + END_GRACE
    while True:
        with _RUNNING_LOCK:  # (a lane may have started one since)
            running += [child for child in _RUNNING.values() if child not in running]
        for process, own_group in running:
            if process.pid not in signalled:
                signalled.add(process.pid)
                _signal(process, own_group, passed_on)
        if all(_ended(process) for process, _ in running) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for process, own_group in running:  # what is left, and what is left in their groups
        if own_group or not _ended(process):
            _signal(process, own_group, signal.SIGKILL)
    _say(f"dev.py: ended by {name}", last=True)
    os._exit(128 + signum)


def _end_commands_on_signals() -> None:
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _on_signal)


def _run(
    cmd: list[str | Path], timeout: float | None = None, environ: dict[str, str] | None = None
) -> int:
    shown = " ".join(f"{k}={v}" for k, v in (environ or {}).items())
    print("+", *([shown] if shown else []), " ".join(str(c) for c in cmd), flush=True)
    env = {**os.environ, **environ} if environ else None
    status = _call([str(c) for c in cmd], timeout, cwd=ROOT, env=env)
    if status is None:
        print(f"dev.py: gave up after {timeout:.0f} s (a hung test?)", flush=True)
        return 1
    return status


def _reports_version(candidate: str | Path, version: str) -> bool:
    """Whether ``candidate`` runs and is Python ``version`` (a pyenv shim for a
    version that is not selected is on PATH but exits with an error)."""
    try:
        done = subprocess.run(
            [str(candidate), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and done.stdout.strip() == version


def _pyenv_candidates(version: str) -> list[Path]:
    """pyenv's installs of ``version`` (3.12.1, 3.12.4, ...), newest first."""
    pyenv = shutil.which("pyenv")
    root = os.environ.get("PYENV_ROOT", "")
    if pyenv:
        try:
            done = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30)
            root = done.stdout.strip() if done.returncode == 0 else root
        except (OSError, subprocess.SubprocessError):
            pass
    if not root:
        return []
    found = []
    for directory in Path(root, "versions").glob(f"{version}.*"):
        patch = directory.name[len(version) + 1 :]
        if patch.isdigit():  # 3.12.1, not 3.12.1t or 3.12-dev
            found.append((int(patch), directory / "bin" / f"python{version}"))
    return [path for _, path in sorted(found, reverse=True)]


def find_python(version: str) -> str | None:
    """``python3.X`` on PATH if it runs, else pyenv's newest 3.X, else None."""
    on_path = shutil.which(f"python{version}")
    candidates: list[str | Path] = [on_path] if on_path else []
    candidates += _pyenv_candidates(version)
    for candidate in candidates:
        if _reports_version(candidate, version):
            return str(candidate)
    return None


def _describe(env: str) -> str:
    """``env`` in a few words: its Python, Django and asgiref (the oldest combination's
    other floors counted, not listed: each run's heading stays a line or two)."""
    spec = ENVIRONMENTS[env]
    shown, rest = spec.requirements[:2], len(spec.requirements) - 2
    more = f", {rest} more pinned in dev.py" if rest > 0 else ""
    return f"{env} (Python {spec.python}, {', '.join(shown)}{more})"


def _project(requirement: str) -> str:
    """A requirement's project name as pip compares them: "psycopg[binary]==3.3.9" -> "psycopg"."""
    name = re.split(r"[\[=<>!~;@ ]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(env: str) -> list[str]:
    """What ``env``'s virtualenv installs: its pins, then the test requirements of the
    projects it does not pin (its pin wins: the oldest combination's floors)."""
    pins = ENVIRONMENTS[env].requirements
    pinned = {_project(requirement) for requirement in pins}
    return [*pins, *(r for r in TEST_REQUIREMENTS if _project(r) not in pinned)]


def ensure_env(env: str, interpreter: str) -> Path:
    """Create or refresh the virtualenv for ``env`` with ``interpreter``; return its python."""
    spec = ENVIRONMENTS[env]
    wanted = requirements(env)
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    # The C accelerator is built by the editable install: a changed source rebuilds.
    accelerator = (ROOT / "src" / "hopwatch" / "_speedups.c").read_bytes()
    accelerator += (ROOT / "src" / "hopwatch" / "report" / "_accumulate.c").read_bytes()
    key = repr((wanted, spec.python, interpreter)).encode()
    stamp_value = hashlib.sha256(key + pyproject + accelerator).hexdigest()
    target = VENVS / env
    stamp = target / ".hopwatch-stamp"
    python = _python(env)
    if python.exists() and stamp.exists() and stamp.read_text() == stamp_value:
        return python
    if target.exists():
        shutil.rmtree(target)
    print(f"setting up {target.relative_to(ROOT)}: {_describe(env)}, {interpreter}", flush=True)
    if _run([interpreter, "-m", "venv", target]):
        raise SystemExit(f"dev.py: could not make a virtualenv with {interpreter}")
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    # The project first, then the pins: the pins win over the ranges in pyproject.
    if _run([*pip, "-e", "."]) or _run([*pip, *wanted]):
        raise SystemExit(f"dev.py: could not install the {env} environment (see pip's output)")
    stamp.write_text(stamp_value)
    return python


def _default_env() -> tuple[str, str]:
    """The environment for lint, types, demo and bench: the first one available."""
    for env in DEFAULT_ENVS:
        interpreter = find_python(ENVIRONMENTS[env].python)
        if interpreter:
            return env, interpreter
    wanted = ", ".join(f"python{ENVIRONMENTS[env].python}" for env in DEFAULT_ENVS)
    raise SystemExit(f"dev.py: none of {wanted} found on PATH or through pyenv")


def _on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _postgres_installed() -> bool:
    """Whether PostgreSQL's server is here: on PATH, or in Debian's own directory (its
    postgresql package puts neither ``initdb`` nor ``postgres`` on PATH)."""
    import glob

    if shutil.which("initdb") and shutil.which("postgres"):
        return True
    return any(
        os.path.exists(os.path.join(directory, "postgres"))
        for directory in glob.glob("/usr/lib/postgresql/*/bin")
    )


def ensure_system_packages() -> None:
    """Install what the browser tests (chromium, chromedriver) and the database pool
    test (PostgreSQL's server: tests/test_db_pool.py runs a throw-away cluster of its
    own, on a socket) need, with apt-get, when it is missing and we can."""
    wanted = []
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        wanted += BROWSER_PACKAGES
    if not _postgres_installed():
        wanted += POSTGRES_PACKAGES
    if not wanted:
        return
    apt_get = shutil.which("apt-get")
    if apt_get is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        print(
            f"dev.py: {' '.join(wanted)} are missing and apt-get cannot install them here;"
            " the browser and database pool tests skip (fail when CI=true)",
            flush=True,
        )
        return
    lock = ["-o", "DPkg::Lock::Timeout=600"]  # other developers' apt-get may hold the lock
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    update = [apt_get, *lock, "update", "-q"]
    install = [apt_get, *lock, "install", "-y", "-q", *wanted]
    for command in (update, install):
        print("+", " ".join(command), flush=True)
        if _call(command, env=env) != 0:
            print(f"dev.py: could not install {' '.join(wanted)} (see apt-get's output)",
                  flush=True)
            return


@dataclass(frozen=True)
class Run:
    """One pytest run of the matrix: an environment, a hop path, a selection."""

    env: str
    label: str  # "c", "pure-python" or "c-slow": the hop path, and the slow tests apart
    python: Path
    environ: dict[str, str]
    arguments: tuple[str, ...]

    def title(self) -> str:
        path = self.label.removesuffix("-slow")
        slow = ", the slow tests" if self.label.endswith("-slow") else ""
        return f"tests on {_describe(self.env)}, {path} hop path{slow}"

    def command(self) -> list[str | Path]:
        return [self.python, "-m", "pytest", "-q", f"--junitxml={self.report()}", *self.arguments]

    def report(self) -> Path:
        return ROOT / ".cache" / f"junit-{self.env}-{self.label}.xml"


#: How long one pytest run may take before the watchdog ends it (a hung test fails
#: the run instead of using up CI's time).
RUN_TIMEOUT = 1200


#: What pytest's exit statuses other than 0 and 1 mean (a run may end with one of them
#: and no failed test: the closing line says which).
PYTEST_EXITS = {
    2: "pytest was interrupted (exit 2)",
    3: "pytest's internal error (exit 3)",
    4: "pytest's usage error (exit 4)",
    5: "no test ran (pytest's exit 5)",
}


def _note_status(run: Run, code: int, counts: dict[str, int], notes: list[str] | None) -> None:
    """A run that failed with no failed test in its counts: why, in ``notes`` (for the
    closing line, which would otherwise say 0 failed of a failed run)."""
    if notes is not None and code != 0 and not counts.get("failed"):
        reason = PYTEST_EXITS.get(code, f"pytest's exit {code}")
        notes.append(f"{reason}: {run.env} {run.label}")


def _closing_line(totals: dict[str, int], notes: list[str]) -> str:
    """``hopwatch: N passed, N failed, N skipped``, then why the run failed where no
    test did: the runs grouped by reason (``; no test ran (pytest's exit 5): django61 c,
    django61 pure-python``)."""
    passed, failed, skipped = totals["passed"], totals["failed"], totals["skipped"]
    line = f"hopwatch: {passed} passed, {failed} failed, {skipped} skipped"
    runs_by_reason: dict[str, list[str]] = {}
    for note in notes:
        reason, run = note.rsplit(": ", 1)
        runs_by_reason.setdefault(reason, []).append(run)
    said = [f"{reason}: {', '.join(runs)}" for reason, runs in runs_by_reason.items()]
    return "; ".join([line, *said])


def _pytest(run: Run, notes: list[str] | None = None) -> tuple[int, dict[str, int]]:
    """One run, its output streamed; its status and the counts from its JUnit report."""
    run.report().parent.mkdir(exist_ok=True)
    run.report().unlink(missing_ok=True)
    print(f"\n=== {run.title()} ===", flush=True)
    status = _run(run.command(), RUN_TIMEOUT, run.environ)
    counts = _junit_counts(run.report())
    _note_status(run, status, counts, notes)
    return status, counts


def _pytest_in_lanes(
    runs: list[Run], lanes: int, notes: list[str] | None = None
) -> tuple[int, dict[str, int]]:
    """``runs`` ``lanes`` at a time, each one's output kept in .cache/ and printed
    whole when it ends (so runs never interleave their lines); the runs' joint status
    and counts (and in ``notes`` why a run failed with no failed test)."""
    from concurrent.futures import ThreadPoolExecutor

    printing = _PRINTING
    status = 0
    totals: dict[str, int] = {}

    def one(run: Run) -> None:
        nonlocal status
        run.report().parent.mkdir(exist_ok=True)
        run.report().unlink(missing_ok=True)
        log = ROOT / ".cache" / f"test-{run.env}-{run.label}.log"
        with printing:
            print(f"=== started: {run.title()} (its output when it ends) ===", flush=True)
        started = time.monotonic()
        env = {**os.environ, **run.environ}
        command = [str(c) for c in run.command()]
        with log.open("w", encoding="utf-8") as out:
            # A process group of its own: the watchdog and a SIGTERM end the run's servers too.
            ended = _call(
                command, RUN_TIMEOUT, own_group=True, cwd=ROOT, env=env, stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            code = -1 if ended is None else ended
        counts = _junit_counts(run.report())
        with printing:
            shown = " ".join(f"{k}={v}" for k, v in run.environ.items())
            print(f"\n=== {run.title()}: ended in {time.monotonic() - started:.0f} s ===")
            print("+", shown, " ".join(command))
            print(log.read_text(encoding="utf-8", errors="replace"), end="", flush=True)
            if code == -1:
                print(f"dev.py: gave up after {RUN_TIMEOUT} s (a hung test?)", flush=True)
            status |= 1 if code else 0
            _note_status(run, code, counts, notes)
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value

    with ThreadPoolExecutor(max_workers=lanes) as pool:
        list(pool.map(one, runs))
    return status, totals


def _take_env(args: list[str]) -> tuple[str | None, list[str]] | None:
    """``--env NAME`` taken out of ``args``: (NAME or None, the other arguments); None,
    said on stderr, when NAME is missing or not one of :data:`ENVIRONMENTS`."""
    if "--env" not in args:
        return None, args
    i = args.index("--env")
    if i + 1 >= len(args) or args[i + 1] not in ENVIRONMENTS:
        print(f"dev.py: --env takes one of {', '.join(ENVIRONMENTS)}", file=sys.stderr)
        return None
    return args[i + 1], args[:i] + args[i + 2 :]


def _lanes() -> int:
    """How many runs of the matrix go at once: two where there are two cores (CI has
    two; each run is one pytest process, mostly on one core), else one."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def cmd_test(args: list[str]) -> int:
    taken = _take_env(args)
    if taken is None:
        return 2
    chosen, args = taken
    serial = "--serial" in args  # the whole matrix one run at a time
    args = [a for a in args if a != "--serial"]
    envs = [chosen] if chosen else list(ENVIRONMENTS)
    full = not args and len(envs) > 1
    status = 0
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    notes: list[str] = []  # why a run failed where no test did
    if not args:  # lint and types only on the full run
        lint_env, interpreter = _default_env()
        lint_python = ensure_env(lint_env, interpreter)
        lint = {
            "ruff": [lint_python, "-m", "ruff", "check", "src", "tests", "bench", "dev.py"],
            "mypy": [lint_python, "-m", "mypy"],
        }
        for tool, command in lint.items():
            code = _run(command)
            status |= code
            if code:  # the closing line says so: its counts are the tests' only
                notes.append(f"{tool} failed (exit {code}): lint on {lint_env}")
    ensure_system_packages()
    skipped_envs = []
    runs: list[Run] = []
    for env in envs:
        interpreter = find_python(ENVIRONMENTS[env].python)
        if interpreter is None:
            version = ENVIRONMENTS[env].python
            reason = f"no python{version} on PATH or through pyenv (`pyenv install {version}`)"
            skipped_envs.append(f"{_describe(env)}: {reason}")
            print(f"\n=== skipped {_describe(env)}: {reason} ===", flush=True)
            continue
        python = ensure_env(env, interpreter)
        c, pure = {"HOPWATCH_REQUIRE_C": "1"}, {"HOPWATCH_PURE_PYTHON": "1"}
        if not full:
            # Explicit pytest arguments, or one environment: everything they choose.
            runs.append(Run(env, "c", python, c, tuple(args)))
            if env == PURE_PYTHON_ENV or len(envs) == 1:
                pure_selection = ("-m", "not slow") if not args else ()
                runs.append(Run(env, "pure-python", python, pure, (*pure_selection, *args)))
            continue
        # The full run keeps the slow tests to one environment (see SLOW_ENV), in a
        # run of their own.
        runs.append(Run(env, "c", python, c, ("-m", "not slow")))
        if env == PURE_PYTHON_ENV:
            runs.append(Run(env, "pure-python", python, pure, ("-m", "not slow")))
        if env == SLOW_ENV:
            runs.append(Run(env, "c-slow", python, c, ("-m", "slow")))
    # The full run's runs go two at a time, the slow tests (load, memory, servers,
    # the bench's timings) alone at the end: their timings get the machine to
    # themselves. `--serial`: one at a time, each one's output as it comes.
    together = [run for run in runs if full and not serial and run.label != "c-slow"]
    if together and _lanes() > 1:
        run_status, counts = _pytest_in_lanes(together, _lanes(), notes)
        status |= run_status
        for key, value in counts.items():
            totals[key] += value
        runs = [run for run in runs if run not in together]
    for run in runs:
        run_status, counts = _pytest(run, notes)
        status |= run_status
        for key, value in counts.items():
            totals[key] += value
    for line in skipped_envs:
        print(f"dev.py: skipped {line}", flush=True)
    if skipped_envs and _on_ci():
        # CI promises the whole matrix: a missing interpreter is a failure there.
        print("dev.py: CI=true, so a skipped environment fails the run", flush=True)
        totals["failed"] += len(skipped_envs)
        status = 1
    # One plain closing line for the whole matrix (CI reads it).
    print(f"\n{_closing_line(totals, notes)}", flush=True)
    return 1 if status else 0


def _junit_counts(report: Path) -> dict[str, int]:
    """passed/failed/skipped from a pytest JUnit XML report (missing report: one failure)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(report).getroot()
    except (OSError, ET.ParseError):
        return {"failed": 1}
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    return {"passed": tests - failed - skipped, "failed": failed, "skipped": skipped}


def cmd_demo(args: list[str]) -> int:
    python = ensure_env(*_default_env())
    return _run([python, "-m", "example_site.demo", *args])


def cmd_site(args: list[str]) -> int:
    python = ensure_env(*_default_env())
    try:
        return _run([python, "-m", "example_site.debug", *args])
    except KeyboardInterrupt:  # Ctrl-C is how this one stops
        return 0


def cmd_bench(args: list[str]) -> int:
    if "--env" in args and "--instructions" not in args:
        print("dev.py: --env goes with bench --instructions", file=sys.stderr)
        return 2
    taken = _take_env(args)  # the instruction counts on another Python and Django
    if taken is None:
        return 2
    chosen, args = taken
    if chosen:
        env, interpreter = chosen, find_python(ENVIRONMENTS[chosen].python)
        if interpreter is None:
            version = ENVIRONMENTS[env].python
            print(f"dev.py: no python{version} on PATH or through pyenv", file=sys.stderr)
            return 2
    else:
        env, interpreter = _default_env()
    python = ensure_env(env, interpreter)
    if "--instructions" in args and chosen:
        rest = [a for a in args if a != "--instructions"]
        return _run([python, "-m", "bench.instructions", *rest])
    # The full run, and the instruction counts on the default Python: both in
    # .venvs/bench, which `python -m bench` makes (or refreshes) and re-runs in
    # (with --instructions, as bench.instructions), where the full run reads
    # the counts from.
    return _run([python, "-m", "bench", *args])


COMMANDS = {"test": cmd_test, "demo": cmd_demo, "site": cmd_site, "bench": cmd_bench}


def main() -> int:
    if sys.version_info < (3, 11):  # noqa: UP036  (dev.py may be run by an older python3)
        print("dev.py: hopwatch needs Python 3.11 or newer", file=sys.stderr)
        return 2
    if len(sys.argv) >= 2 and sys.argv[1] in ("-h", "--help", "help"):
        try:
            print(__doc__.strip(), flush=True)
        except BrokenPipeError:  # `dev.py --help | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        if len(sys.argv) >= 2:
            print(f"\ndev.py: unknown command {sys.argv[1]!r}", file=sys.stderr)
        return 2
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    _end_commands_on_signals()
    return COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    raise SystemExit(main())
