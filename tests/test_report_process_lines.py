"""``hopwatch report``'s pool saturation section on real ``hopwatch.process`` lines, as a
container runtime, a log shipper or the project's structlog set-up hands them over.

A real request through Django's ``ASGIHandler`` on a loop whose default pool has two
threads (five pool calls at once: the pool saturates), the process line written by
``ProcessLines`` through hopwatch's own output (as ``PROCESS_LINE_SECONDS`` does), both
lines caught by real logging handlers: the plain line, structlog's ``ProcessorFormatter``
with a ``JSONRenderer`` (``{"event": "<line>", ...}``) and a JSON formatter keeping the
line under ``message``; the plain file then written as a container runtime writes it
(kubectl's ``--prefix``, CRI, docker's json-file driver), and the plain and structlog's
lines as four platforms export them (Cloud Logging, Datadog, Loki, Fluent Bit). Each is
read by the C loop and the Python one, and all of them together by ``--jobs 2``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.test import override_settings

from hopwatch import _process, apps
from hopwatch._recorder import add_sink, remove_sink
from hopwatch.report import rank, scan
from hopwatch.report.aggregate import Partial
from hopwatch.report.scan import Scanner
from tests.helpers import asgi_call
from tests.report.test_platform_exports import PLATFORMS
from tests.test_report_structlog_lines import structlog_json_handler
from tests.testapp.views_threads import GATHERED

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.django_db(transaction=True)

#: The wrappings docs/report.md says the report reads (besides the plain line).
WRAPPINGS = (
    "prefixed",
    "prefixed-message",
    "cri",
    "docker",
    "message",
    "structlog",
    *(f"{shipper}-structlog" for shipper in ("docker", "vector", "journald")),
    "docker-message",
    # the platforms' exports (tests/report/test_platform_exports.py), of the plain lines
    # and of structlog's
    *(f"{name}-{kind}" for name in PLATFORMS for kind in ("plain", "structlog")),
)
TIME = "2026-12-06T21:37:00.000000000Z"  # the runtime's own time, before the line


class MessageFormatter(logging.Formatter):
    """A logging formatter rendering each record as JSON with its text under ``message``
    (python-json-logger's shape, or a shipper's)."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return json.dumps({"message": text, "levelname": record.levelname, "name": record.name})


def _handler(path: Path, formatter: logging.Formatter | None = None) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    if formatter is not None:
        handler.setFormatter(formatter)
    return handler


def served_logs(directory: Path) -> tuple[dict[str, Path], dict[str, Any]]:
    """({wrapping: its log file}, the process line as written) for one saturating request
    and the process line that follows it."""
    assert apps._emitter is not None
    paths = {name: directory / f"{name}.log" for name in ("plain", *WRAPPINGS)}
    handlers = [
        _handler(paths["plain"]),
        structlog_json_handler(paths["structlog"]),
        _handler(paths["message"], MessageFormatter()),
    ]
    logger = logging.getLogger("hopwatch")
    process = _process.ProcessLines(3600, apps._emitter.write_event)

    async def serve():
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=2))
        result = await asgi_call(ASGIHandler(), "/threads/saturate/")
        process.write_line()  # on the loop: its default pool is the one read
        return result

    for handler in handlers:
        logger.addHandler(handler)
    add_sink(process)  # the request sink, as PROCESS_LINE_SECONDS installs it
    try:
        with override_settings(MIDDLEWARE=["hopwatch.middleware.HopwatchMiddleware"]):
            assert asyncio.run(serve()).body == b"saturated"
    finally:
        remove_sink(process)
        process.stop()
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
    plain = paths["plain"].read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["event"] for line in plain] == ["hopwatch.request", "hopwatch.process"]
    # as the runtimes write the lines (docker's json-file driver: compact, with the newline)
    paths["prefixed"].write_text("".join(f"[pod/web-0/web] {line}\n" for line in plain))
    paths["cri"].write_text("".join(f"{TIME} stderr F {line}\n" for line in plain))
    compact = (",", ":")
    docker = [{"log": line + "\n", "stream": "stderr", "time": TIME} for line in plain]
    paths["docker"].write_text("".join(json.dumps(d, separators=compact) + "\n" for d in docker))
    for name in ("structlog", "message"):
        outer = [json.loads(line) for line in paths[name].read_text().splitlines()]
        key = "event" if name == "structlog" else "message"
        assert [entry[key] for entry in outer] == plain  # the very lines, wrapped
    # kubectl logs --prefix over the JSON formatter: a prefix, then the envelope
    messages = paths["message"].read_text(encoding="utf-8").splitlines()
    paths["prefixed-message"].write_text("".join(f"[pod/web-0/web] {m}\n" for m in messages))
    # the JSON formatter's lines (structlog's EventRenamer("message") shape) under docker
    docker_messages = [{"log": m + "\n", "stream": "stderr", "time": TIME} for m in messages]
    paths["docker-message"].write_text(
        "".join(json.dumps(d, separators=compact) + "\n" for d in docker_messages)
    )
    # structlog's lines as a shipper hands them over (django-structlog under docker,
    # Kubernetes with Vector, systemd's journal): both layers at once
    rendered = paths["structlog"].read_text(encoding="utf-8").splitlines()
    shipped = {
        "docker": [{"log": line + "\n", "stream": "stderr", "time": TIME} for line in rendered],
        "vector": [{"message": line, "source_type": "kubernetes_logs"} for line in rendered],
        "journald": [
            {"_PID": "1", "SYSLOG_IDENTIFIER": "web", "MESSAGE": line} for line in rendered
        ],
    }
    for shipper, objects in shipped.items():
        text = "".join(json.dumps(obj, separators=compact) + "\n" for obj in objects)
        paths[f"{shipper}-structlog"].write_text(text)
    for name, export in PLATFORMS.items():
        for kind, lines in (("plain", plain), ("structlog", rendered)):
            paths[f"{name}-{kind}"].write_text("".join(export(line) + "\n" for line in lines))
    return paths, json.loads(plain[1])


def expected_minute(process: dict[str, Any], lines: int = 1, processes: int = 1) -> dict:
    """The saturation table's minute for ``lines`` copies of one process line."""
    pool = process["default_pool"]
    return {
        "minute": process["timestamp"][:16],
        "lines": lines,
        "processes": processes,
        "requests": lines * process["requests"],
        "pool_crossings": lines * process["pool_crossings"],
        "pool_queue_max": process["pool_queue_max"],
        "pool_busy_max": process["pool_busy_max"],
        "pool_busy_share_max": round(process["pool_busy_max"] / pool["max_workers"], 3),
        "pool_wait_p95_ms_max": process["pool_wait_p95_ms"],
        "pool_wait_max_ms": process["pool_wait_max_ms"],
        "contexts_max": process["contexts_max"],
        "threads_alive_max": process["threads_alive"],
    }


def read(path: Path, implementation: str) -> dict[str, Any]:
    """The report document of one file, read by the C loop or the Python one."""
    scanner = Scanner(Partial())
    if implementation == "python":
        scanner.accumulate = scanner.scan = None
    elif scan.SCAN is None:
        pytest.skip("the report's C accelerator is not built here")
    scanner.feed(path.read_bytes())
    return rank.build_document(scanner.finish(), rank.ReportOptions(top=0), [str(path)])


def run_report(*args: str, stdin: str | None = None, form: str = "json") -> Any:
    result = subprocess.run(
        [sys.executable, "-m", "hopwatch", "report", *args, "--format", form, "--top", "0"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if form == "json" else result.stdout


@pytest.mark.parametrize("implementation", ["c", "python"])
def test_wrapped_process_lines_make_the_pool_section(tmp_path, implementation):
    paths, process = served_logs(tmp_path)
    # the saturated pool, as the threads tests find it
    assert process["requests"] == 1 and process["pool_crossings"] == GATHERED
    assert process["pool_busy_max"] == 2 and process["default_pool"]["max_workers"] == 2
    for name in ("plain", *WRAPPINGS):
        document = read(paths[name], implementation)
        assert document["summary"]["records"] == 1, name
        assert document["summary"]["other_lines"] == 1, name  # the process line
        pool = document["pool_over_time"]
        assert pool is not None, f"{name}: no pool section"
        assert pool["lines"] == 1 and pool["invalid_lines"] == 0, name
        assert pool["minutes"] == [expected_minute(process)], name


@pytest.mark.parametrize("implementation", ["c", "python"])
def test_an_app_line_that_mentions_the_process_event_is_no_process_line(tmp_path, implementation):
    """The project's own structlog line whose event merely names ``hopwatch.process``
    is one of the other lines, not a process line (nor an invalid one)."""
    paths, process = served_logs(tmp_path)
    log = paths["structlog"]
    handler = structlog_json_handler(log)  # appends, as the app's own handler would
    app = logging.getLogger("tests.app")
    level = app.level
    app.addHandler(handler)
    app.setLevel(logging.INFO)
    try:
        app.info("restarting the hopwatch.process reader")
    finally:
        app.removeHandler(handler)
        app.setLevel(level)
        handler.close()
    last = json.loads(log.read_text(encoding="utf-8").splitlines()[-1])
    assert (last["event"], last["logger"]) == (
        "restarting the hopwatch.process reader",
        "tests.app",
    )
    document = read(log, implementation)
    assert document["summary"]["records"] == 1
    assert document["summary"]["other_lines"] == 2  # the process line and the app's
    pool = document["pool_over_time"]
    assert pool["lines"] == 1 and pool["invalid_lines"] == 0
    assert pool["minutes"] == [expected_minute(process)]


def test_wrapped_process_lines_read_by_several_readers(tmp_path):
    paths, process = served_logs(tmp_path)
    files = [str(paths[name]) for name in ("plain", *WRAPPINGS)]
    for implementation in ("0", "1"):
        os.environ["HOPWATCH_PURE_PYTHON"] = implementation
        try:
            document = run_report(*files, "--jobs", "2")
        finally:
            del os.environ["HOPWATCH_PURE_PYTHON"]
        assert document["summary"]["records"] == len(files)
        pool = document["pool_over_time"]
        assert pool is not None and pool["lines"] == len(files)
        # the same process's line in each file: one process (its process_id)
        assert pool["minutes"] == [expected_minute(process, len(files), 1)]


def without_process_id(lines: str) -> str:
    """Process lines as versions before ``process_id`` wrote them: the same line, less the
    field (the text of the line otherwise as written)."""
    stripped = re.sub(r'"process_id":"[0-9a-f]{16}",', "", lines)
    assert stripped.count("hopwatch.process") == lines.count("hopwatch.process")
    assert stripped != lines and "process_id" not in stripped
    return stripped


def test_old_lines_without_a_process_id_are_told_apart_by_pid_within_each_input(tmp_path):
    """Lines of versions before ``process_id`` name their process by its pid alone, and
    containers each run their server as pid 1. Each pod's log in a file of its own (here
    the real lines of one process, less the field, under three pods' names: the same pid,
    as such pods write it) counts a process per file, by one reader or by several; one
    stream of them all (``kubectl logs -l app=web`` on stdin) tells them apart by
    nothing, and counts one, as docs/report.md says: as before the field."""
    paths, process = served_logs(tmp_path)
    lines = without_process_id(paths["plain"].read_text(encoding="utf-8"))
    pods = tmp_path / "pods"
    pods.mkdir()
    for pod in ("web-a", "web-b", "web-c"):
        (pods / f"{pod}.log").write_text(lines, encoding="utf-8")
    for jobs in ("1", "2"):
        document = run_report(str(pods), "--jobs", jobs)
        assert document["summary"]["files"] == 3
        assert document["pool_over_time"]["minutes"] == [
            expected_minute(process, lines=3, processes=3)
        ]
    text = run_report(str(pods), form="text")
    header, row = text.split("default pool saturation over time")[1].splitlines()[1:3]
    assert header.split()[2] == "processes"  # after "minute (UTC)"
    assert row.split()[:3] == [process["timestamp"][:16], "3", "3"]  # processes, requests
    markdown = run_report(str(pods), form="markdown")
    table = markdown.split("default pool saturation over time")[1].splitlines()
    assert table[2].startswith("| minute (UTC) | processes | requests |")
    merged = run_report("-", stdin=lines * 3)
    assert merged["pool_over_time"]["minutes"] == [expected_minute(process, lines=3)]


# --- processes named by process_id: real processes with PROCESS_LINE_SECONDS ---------------

# The child's settings: the suite's, with HOPWATCH from the environment.
_SETTINGS = """
import json, os
from tests.settings import *  # noqa: F403
HOPWATCH = json.loads(os.environ["PROCESS_LINES_HOPWATCH"])
"""

# A process serving a request before each process line it writes (PROCESS_LINE_SECONDS
# installs the writer; its own thread would write one an hour), all in one minute; with
# "fork", it forks after its first line and the child does the same once.
_WRITER = """
import os, sys, time
import django
django.setup()
from hopwatch import apps
from tests.helpers import wsgi_request

while time.time() % 60 > 50:  # the lines of one minute
    time.sleep(0.5)
count, fork = int(sys.argv[1]), sys.argv[2:] == ["fork"]
child = None
for index in range(count):
    assert wsgi_request("/sync/")[0].startswith("200")
    apps.process_lines.write_line()
    if fork and child is None:
        child = os.fork()
        if child == 0:
            assert wsgi_request("/sync/")[0].startswith("200")
            apps.process_lines.write_line()
            os._exit(0)
if child:
    os.waitpid(child, 0)
print(os.getpid(), child or "")
"""


def writer(tmp_path: Path, *args: str, prefix: tuple[str, ...] = ()) -> list[str]:
    """The command of a real process writing request and process lines (to the ``OUTPUT``
    of :func:`writer_env`)."""
    (tmp_path / "process_lines_settings.py").write_text(_SETTINGS)
    return [*prefix, sys.executable, "-c", _WRITER, *args]


def writer_env(tmp_path: Path, log: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT), str(ROOT / "src")])
    env["DJANGO_SETTINGS_MODULE"] = "process_lines_settings"
    settings = {"OUTPUT": str(log), "PROCESS_LINE_SECONDS": 3600}
    env["PROCESS_LINES_HOPWATCH"] = json.dumps(settings)
    return env


def run_writer(tmp_path: Path, log: Path, *args: str) -> list[str]:
    done = subprocess.run(
        writer(tmp_path, *args), cwd=ROOT, env=writer_env(tmp_path, log),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


def process_lines_of(log: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line["event"] == "hopwatch.process"]


def test_a_forked_child_gets_a_process_id_of_its_own(tmp_path):
    """A server forking its workers after loading the app (gunicorn ``--preload``): each
    worker is a process of its own, with an id of its own, kept for all its lines."""
    log = tmp_path / "hopwatch.log"
    parent, child = map(int, run_writer(tmp_path, log, "2", "fork"))
    lines = process_lines_of(log)
    assert sorted(line["pid"] for line in lines) == sorted([parent, parent, child])
    ids = {line["pid"]: set() for line in lines}
    for line in lines:
        assert re.fullmatch("[0-9a-f]{16}", line["process_id"]), line["process_id"]
        ids[line["pid"]].add(line["process_id"])
    assert len(ids[parent]) == 1 and len(ids[child]) == 1  # once per process, not per line
    assert ids[parent] != ids[child]
    minute = lines[0]["timestamp"][:16]
    assert {line["timestamp"][:16] for line in lines} == {minute}
    (row,) = run_report(str(log))["pool_over_time"]["minutes"]
    assert (row["minute"], row["lines"], row["processes"], row["requests"]) == (minute, 3, 2, 3)


def test_one_processs_lines_of_a_minute_in_two_files_count_once(tmp_path):
    """A log rotated within a minute: one process's lines of that minute are in app.log.1
    and app.log. The same process, in two inputs, by one reader or by several."""
    log = tmp_path / "hopwatch.log"
    run_writer(tmp_path, log, "2")
    written = log.read_text(encoding="utf-8").splitlines(keepends=True)
    events = [json.loads(line)["event"] for line in written]
    assert events == ["hopwatch.request", "hopwatch.process"] * 2
    (first, second) = process_lines_of(log)
    assert first["process_id"] == second["process_id"] and first["pid"] == second["pid"]
    minute = first["timestamp"][:16]
    assert second["timestamp"][:16] == minute
    rotated = tmp_path / "logs"
    rotated.mkdir()
    (rotated / "app.log.1").write_text("".join(written[:2]), encoding="utf-8")
    (rotated / "app.log").write_text("".join(written[2:]), encoding="utf-8")
    for jobs in ("1", "2"):
        document = run_report(str(rotated / "app.log.1"), str(rotated / "app.log"), "--jobs", jobs)
        assert document["summary"]["files"] == 2
        (row,) = document["pool_over_time"]["minutes"]
        assert (row["minute"], row["lines"], row["processes"], row["requests"]) == (minute, 2, 1, 2)
    text = run_report(str(rotated), form="text")
    row_text = text.split("default pool saturation over time")[1].splitlines()[2]
    assert row_text.split()[:3] == [minute, "1", "2"]  # processes, requests


def _pid_namespaces() -> bool:
    probe = ["unshare", "--pid", "--fork", "--map-root-user", sys.executable, "-c",
             "import os; print(os.getpid())"]  # fmt: skip
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except OSError:
        return False
    return done.returncode == 0 and done.stdout.split() == ["1"]


def test_processes_with_the_same_pid_in_one_stream_count_apart(tmp_path):
    """Containers each run their server as pid 1, and ``kubectl logs -l app=web`` merges
    their logs into one stream on stdin: two real processes, each pid 1 in a pid namespace
    of its own (as a container's is), count two."""
    if not _pid_namespaces():
        pytest.skip("no unprivileged pid namespaces here (unshare --pid --map-root-user)")
    unshare = ("unshare", "--pid", "--fork", "--map-root-user")
    # Started at once, their lines fall in one minute, unless a loaded machine starts
    # them on either side of a minute's end: then the pair is made again.
    for attempt in range(3):
        logs = [tmp_path / f"web-a{attempt}.log", tmp_path / f"web-b{attempt}.log"]
        pods = []
        for log in logs:
            command = writer(tmp_path, "1", prefix=unshare)
            pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
            env = writer_env(tmp_path, log)
            pods.append(subprocess.Popen(command, cwd=ROOT, env=env, **pipes))
        for pod in pods:
            out, err = pod.communicate(timeout=120)
            assert pod.returncode == 0, err[-3000:]
            assert out.split() == ["1"]  # pid 1, as in a container
        (a,), (b,) = (process_lines_of(log) for log in logs)
        assert a["pid"] == b["pid"] == 1 and a["process_id"] != b["process_id"]
        minute = a["timestamp"][:16]
        if b["timestamp"][:16] == minute:
            break
    assert b["timestamp"][:16] == minute
    stream = "".join(log.read_text(encoding="utf-8") for log in logs)
    (row,) = run_report("-", stdin=stream)["pool_over_time"]["minutes"]
    assert (row["minute"], row["lines"], row["processes"], row["requests"]) == (minute, 2, 2, 2)
