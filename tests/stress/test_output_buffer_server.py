"""OUTPUT_BUFFER under real servers' own command lines on 127.0.0.1.

* uvicorn with two worker processes: each holds its lines and its thread writes
  them about a second after the first of them, every line once, with no request
  after them.
* gunicorn's sync workers exit normally on SIGTERM: the lines they hold are
  written, each once.
* gunicorn's threaded workers (``--threads``), Hypercorn's one worker
  (multiprocessing, spawned), Daphne (Twisted, one process) and Granian's workers
  (multiprocessing, forked: they end with ``os._exit``, so atexit does not run
  there) write what they hold when they stop on SIGTERM. Hypercorn runs one
  worker here: with several, its main process waits for the first to exit and
  then ends the others with ``process.terminate()`` (SIGTERM's default action, no
  exit handler), so a worker slower to shut down loses what it holds (CI saw it
  once: 9 of 30 lines). The FAQ says so.
* What the docs warn of: on SIGTERM, uvicorn shuts down gracefully and then ends
  its process by re-raising the signal with its default action, which runs no
  exit handler; so does gunicorn's worker class from uvicorn. The lines a
  process holds then are lost, unless the ASGI module calls ``hopwatch.flush()``
  at the lifespan shutdown (the FAQ's module, run as the FAQ prints it). So are
  the OpenTelemetry SDK's last metric export and its queued spans, which its exit
  handler sends: the same module shuts its providers down there, and the one
  export each worker makes then counts every hop of the lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import start_server
from tests.stress.client import get
from tests.stress.harness import ROOT, free_port, site_env

REQUESTS = 30


def _ids(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [json.loads(line)["request_id"] for line in log.read_text().splitlines()]


def _uvicorn(
    tmp_path: Path,
    template_db: Path,
    *options: str,
    application: str = "example_site.asgi:application",
    **env: str,
):
    command = ["uvicorn", application, "--host", "127.0.0.1"]
    command += ["--port", "{port}", "--no-access-log", "--log-level", "warning", *options]
    return _server(tmp_path, template_db, command, **env)


def _gunicorn(tmp_path: Path, template_db: Path, application: str, *options: str, **env: str):
    command = ["gunicorn", application, "--bind", "127.0.0.1:{port}", "--workers", "2"]
    command += ["--log-level", "warning", *options]
    return _server(tmp_path, template_db, command, **env)


def _gunicorn_threads(tmp_path: Path, template_db: Path, **env: str):
    application = "example_site.wsgi:application"
    return _gunicorn(tmp_path, template_db, application, "--threads", "4", **env)


def _hypercorn(tmp_path: Path, template_db: Path, workers: int = 1, **env: str):
    command = ["hypercorn", "example_site.asgi:application", "--bind", "127.0.0.1:{port}"]
    return _server(tmp_path, template_db, [*command, "--workers", str(workers)], **env)


def _daphne(tmp_path: Path, template_db: Path, **env: str):
    command = ["daphne", "-b", "127.0.0.1", "-p", "{port}", "example_site.asgi:application"]
    return _server(tmp_path, template_db, command, **env)


def _granian(tmp_path: Path, template_db: Path, **env: str):
    command = ["granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", "{port}"]
    command += ["--workers", "2", "--log-level", "warning", "example_site.asgi:application"]
    return _server(tmp_path, template_db, command, **env)


@contextlib.contextmanager
def _server(tmp_path: Path, template_db: Path, arguments: list[str], **env: str) -> Iterator[tuple]:
    shutil.copyfile(template_db, tmp_path / "db.sqlite3")
    log = tmp_path / "hops.jsonl"
    port = free_port()
    command = [sys.executable, "-m", *(a.format(port=port) for a in arguments)]
    stderr = tmp_path / "server.stderr"
    env = site_env(tmp_path, log, HOPWATCH_OUTPUT_BUFFER=str(1 << 22), **env)
    server = start_server(command, env, stderr, ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None and time.monotonic() < deadline, stderr.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield server, port, log, stderr
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)


def _traffic(port: int) -> None:
    async def requests():
        return await asyncio.gather(
            *(get(port, "/hello/", {"X-Request-ID": f"held-{i}"}) for i in range(REQUESTS))
        )

    assert [r.status for r in asyncio.run(requests())] == [200] * REQUESTS


def test_uvicorn_workers_write_held_lines_a_second_later_each_once(tmp_path, template_db):
    with _uvicorn(tmp_path, template_db, "--workers", "2") as (server, port, log, stderr):
        _traffic(port)
        done = time.monotonic()
        while len(_ids(log)) < REQUESTS:
            assert time.monotonic() - done < 30, (_ids(log), stderr.read_text())
            time.sleep(0.05)
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0, stderr.read_text()
    ids = _ids(log)
    assert sorted(ids) == sorted(f"held-{i}" for i in range(REQUESTS))


def test_uvicorn_ends_its_process_with_the_signal_and_the_held_lines_are_lost(
    tmp_path, template_db
):
    # An hour's hold: only the size or the exit could write them.
    with _uvicorn(tmp_path, template_db, HOPWATCH_HOLD_SECONDS="3600") as (server, port, log, _):
        _traffic(port)
        assert _ids(log) == []
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == -signal.SIGTERM  # uvicorn re-raised it: no exit handler ran
    assert _ids(log) == []


def _faq_asgi_module() -> str:
    """The ``asgi.py`` that docs/faq.md gives for uvicorn, as it prints it."""
    faq = (ROOT / "docs" / "faq.md").read_text()
    blocks = [part.split("```\n", 1)[0] for part in faq.split("```python\n")[1:]]
    (module,) = [block for block in blocks if "hopwatch.flush()" in block]
    return module


# What docs/opentelemetry.md's OTLP set-up does before the FAQ's module, with the
# SDK's console exporters writing to files in place of OTLP (one file per process,
# one JSON document a line) and an hour between metric exports and between span
# batches, so only a shutdown exports anything; and OpenTelemetry's Django
# instrumentation for the request's span.
_OTEL_SET_UP = """
import os

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

def _out(kind):
    return open(os.path.join(os.environ["OTEL_OUT"], f"{kind}-{os.getpid()}"), "w")

HOUR = 3_600_000
exporter = ConsoleMetricExporter(out=_out("metrics"), formatter=lambda d: d.to_json(None) + "\\n")
reader = PeriodicExportingMetricReader(exporter, export_interval_millis=HOUR)
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
provider = TracerProvider()
exporter = ConsoleSpanExporter(out=_out("spans"), formatter=lambda s: s.to_json(None) + "\\n")
batches = BatchSpanProcessor(
    exporter, max_queue_size=8192, schedule_delay_millis=HOUR, max_export_batch_size=8192
)
provider.add_span_processor(batches)
trace.set_tracer_provider(provider)
DjangoInstrumentor().instrument()

from faq_asgi import application
"""


def _exported(directory: Path, kind: str) -> dict[str, list[dict]]:
    """Each process's exports of one kind, a JSON document a line."""
    return {
        path.name: [json.loads(line) for line in path.read_text().splitlines()]
        for path in directory.glob(f"{kind}-*")
    }


def _exported_hop_totals(directory: Path) -> tuple[int, int, int]:
    """(requests, hops) of the ``hopwatch.request.hops`` histogram, and the hops of
    the ``hopwatch.hops`` counter by cause, summed over the processes' exports."""
    requests = hops = by_cause = 0
    for exports in _exported(directory, "metrics").values():
        for export in exports:
            for resource in export["resource_metrics"]:
                for scope in resource["scope_metrics"]:
                    for metric in scope["metrics"]:
                        points = metric["data"]["data_points"]
                        if metric["name"] == "hopwatch.request.hops":
                            requests += sum(point["count"] for point in points)
                            hops += sum(point["sum"] for point in points)
                        elif metric["name"] == "hopwatch.hops":
                            by_cause += sum(point["value"] for point in points)
    return requests, hops, by_cause


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn-uvicorn-worker"])
def test_the_faqs_lifespan_module_keeps_what_uvicorn_holds_at_sigterm(
    server, tmp_path, template_db
):
    # The held lines (an hour's hold: only the size or the exit could write them),
    # the metrics and the spans all wait for the process's end, where uvicorn runs
    # no exit handler: only the FAQ's lifespan shutdown writes and exports them.
    (tmp_path / "faq_asgi.py").write_text(_faq_asgi_module())
    (tmp_path / "served.py").write_text(_OTEL_SET_UP)
    out = tmp_path / "otel"
    out.mkdir()
    env = {
        "HOPWATCH_HOLD_SECONDS": "3600",
        "HOPWATCH_OTEL": "1",
        "OTEL_OUT": str(out),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }
    if server == "uvicorn":
        served = _uvicorn(tmp_path, template_db, application="served:application", **env)
        ends_with = -signal.SIGTERM  # uvicorn re-raised it: no exit handler ran
    else:
        worker = ("--worker-class", "uvicorn.workers.UvicornWorker")
        served = _gunicorn(tmp_path, template_db, "served:application", *worker, **env)
        ends_with = 0  # the arbiter's status; its workers ended as uvicorn does
    with served as (server_process, port, log, stderr):
        _traffic(port)
        assert _ids(log) == []
        assert [e for e in _exported(out, "metrics").values() if e] == []
        server_process.send_signal(signal.SIGTERM)
        assert server_process.wait(60) == ends_with, stderr.read_text()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(line["request_id"] for line in lines) == sorted(
        f"held-{i}" for i in range(REQUESTS)
    )
    hops = {line["request_id"]: line["hops"] for line in lines}
    assert min(hops.values()) > 0
    # At most one export per process, its shutdown's (none from a worker that served
    # no request), and every request's hops in them.
    metric_exports = _exported(out, "metrics")
    assert len(metric_exports) == (1 if server == "uvicorn" else 2)
    assert max(len(exports) for exports in metric_exports.values()) == 1
    total = sum(hops.values())
    assert _exported_hop_totals(out) == (REQUESTS, total, total)
    # Every request's totals span, from the spans still queued at the shutdown.
    totals = {
        span["attributes"]["hopwatch.request_id"]: span["attributes"]["hopwatch.hops"]
        for exports in _exported(out, "spans").values()
        for span in exports
        if span["name"] == "hopwatch.request"
    }
    assert totals == hops, stderr.read_text()


def test_gunicorn_sync_workers_exit_and_write_what_they_hold(tmp_path, template_db):
    served = _gunicorn(
        tmp_path, template_db, "example_site.wsgi:application", HOPWATCH_HOLD_SECONDS="3600"
    )
    with served as (server, port, log, stderr):
        _traffic(port)
        assert _ids(log) == []
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0, stderr.read_text()
    assert sorted(_ids(log)) == sorted(f"held-{i}" for i in range(REQUESTS))


def test_gunicorn_with_uvicorns_worker_loses_what_it_holds(tmp_path, template_db):
    served = _gunicorn(
        tmp_path,
        template_db,
        "example_site.asgi:application",
        "--worker-class",
        "uvicorn.workers.UvicornWorker",
        HOPWATCH_HOLD_SECONDS="3600",
    )
    with served as (server, port, log, stderr):
        _traffic(port)
        assert _ids(log) == []
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0, stderr.read_text()  # the arbiter exits; its workers did not
    assert _ids(log) == []


@pytest.mark.parametrize(
    "serve", [_gunicorn_threads, _hypercorn, _daphne, _granian], ids=lambda f: f.__name__[1:]
)
def test_servers_that_exit_on_sigterm_write_what_their_processes_hold(serve, tmp_path, template_db):
    with serve(tmp_path, template_db, HOPWATCH_HOLD_SECONDS="3600") as (server, port, log, stderr):
        _traffic(port)
        # Granian stops a worker without waiting for the application to return after
        # its response (the request's close and signals, then its line): let them end.
        time.sleep(2)
        assert _ids(log) == []
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0, stderr.read_text()
    assert sorted(_ids(log)) == sorted(f"held-{i}" for i in range(REQUESTS))


def _workers(server: subprocess.Popen, count: int) -> list[int]:
    """The pids of the ``count`` worker processes multiprocessing spawned for ``server``."""
    deadline = time.monotonic() + 60
    while True:
        workers = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):  # gone meanwhile
                status = (proc / "status").read_text()
                parent = next(x for x in status.splitlines() if x.startswith("PPid:"))
                # Spawned workers end their command with this; the resource tracker does not.
                arguments = (proc / "cmdline").read_bytes().split(b"\0")
                if int(parent.split()[1]) == server.pid and b"--multiprocessing-fork" in arguments:
                    workers.append(int(proc.name))
        if len(workers) == count:
            return workers
        assert time.monotonic() < deadline, workers
        time.sleep(0.1)


def _sigterm_pending(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("ShdPnd:"):
            return bool(int(line.split()[1], 16) & 1 << (signal.SIGTERM - 1))
    raise AssertionError(f"no ShdPnd in /proc/{pid}/status")


def test_hypercorn_ends_a_worker_still_shutting_down_and_its_held_lines_are_lost(
    tmp_path, template_db
):
    # What the FAQ warns of, made certain: one worker serves every request, and is
    # still stopped (as if slow to shut down) when the other exits. Hypercorn's main
    # process then ends it with SIGTERM's default action, and what it holds is lost.
    served = _hypercorn(tmp_path, template_db, workers=2, HOPWATCH_HOLD_SECONDS="3600")
    with served as (server, port, log, stderr):
        idle, serving = _workers(server, 2)
        try:
            os.kill(idle, signal.SIGSTOP)
            _traffic(port)  # the stopped worker accepts nothing: the other serves all 30
            os.kill(serving, signal.SIGSTOP)
            os.kill(idle, signal.SIGCONT)
            server.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 60
            while not _sigterm_pending(serving):  # the idle worker exited; then terminate()
                assert time.monotonic() < deadline, stderr.read_text()
                time.sleep(0.05)
            os.kill(serving, signal.SIGCONT)
            assert server.wait(60) == 0, stderr.read_text()  # the first worker's exit status
        except BaseException:
            for pid in (idle, serving):  # none left stopped, or running without its server
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise
    assert _ids(log) == []
