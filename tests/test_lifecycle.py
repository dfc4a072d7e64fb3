"""A process's life around hopwatch: start-up, fork, uninstall, exit.

* ``MEASURE_HOP_TAX`` is measured by each process at its first request: a worker
  forked while its parent measured (gunicorn ``--preload``) measures for itself; a
  process that serves no request (``manage.py migrate``) never measures; a process
  that ends mid-measurement stops it cleanly (no ``RuntimeWarning`` at exit).
* ``hopwatch.uninstall()`` in a Django process removes everything the app installed
  (Django and asgiref exactly as before hopwatch, no more request lines), and
  ``hopwatch.install()`` puts it back.
* A file ``OUTPUT`` is closed at exit (no ``ResourceWarning``); a line finished after
  that (a response the collector ends as the interpreter finalizes) is still written.
* A misspelt setting stops start-up, ``manage.py check`` included, with
  ``ImproperlyConfigured``; ``override_settings`` in a test gets the system checks.

Processes are real children running Django with ``tests.settings`` and the
``HOPWATCH`` given to them; requests are real, through Django's handlers or a
real gunicorn.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client, override_settings

import hopwatch
from tests.helpers import asgi_request, start_server, stop_server

ROOT = Path(__file__).resolve().parent.parent

# The child's settings: the suite's, with HOPWATCH from the environment, and an
# EXTRA_FIELDS hook naming the process.
_SETTINGS = textwrap.dedent(
    """
    import json, os
    from tests.settings import *  # noqa: F403
    HOPWATCH = json.loads(os.environ["LIFECYCLE_HOPWATCH"])

    def pid(request, record):
        return {"pid": os.getpid()}
    """
)


def _env(tmp_path: Path, hopwatch_settings: dict) -> dict[str, str]:
    (tmp_path / "lifecycle_settings.py").write_text(_SETTINGS)
    (tmp_path / "lifecycle_wsgi.py").write_text(
        "from django.core.wsgi import get_wsgi_application\napplication = get_wsgi_application()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT), str(ROOT / "src")])
    env["DJANGO_SETTINGS_MODULE"] = "lifecycle_settings"
    env["LIFECYCLE_HOPWATCH"] = json.dumps(hopwatch_settings)
    return env


def _python(
    tmp_path: Path, hopwatch_settings: dict, script: str, *options: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *options, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        env=_env(tmp_path, hopwatch_settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _complete_lines(path: Path) -> list[dict]:
    """The lines of ``path`` written whole so far (each ending in "\\n"): for polling a log
    that processes still write to, whose last line may be half-written."""
    if not path.exists():
        return []
    lines = path.read_bytes().splitlines(keepends=True)
    return [json.loads(line) for line in lines if line.endswith(b"\n")]


# --- MEASURE_HOP_TAX: once per process, at its first request --------------------------------

_FORK = """
    import json, os, sys, threading, time
    import django
    django.setup()
    from hopwatch import apps
    from tests.helpers import asgi_request

    asgi_request("/async/")  # the parent's first request: its measurement starts
    measuring = apps._hop_tax_thread is not None and apps._hop_tax_thread.is_alive()
    if not measuring or apps.hop_tax is not None:
        print(json.dumps({"parent_measuring_at_fork": False}))
        sys.exit(0)
    child = os.fork()
    if child == 0:
        asgi_request("/async/")  # the child's first request
        deadline = time.monotonic() + 30
        while apps.hop_tax is None and time.monotonic() < deadline:
            time.sleep(0.01)
        asgi_request("/async/")
        os._exit(0)
    os.waitpid(child, 0)
    print(json.dumps({"parent_measuring_at_fork": True, "parent": os.getpid(), "child": child}))
"""


def test_a_child_forked_while_its_parent_measures_measures_for_itself(tmp_path):
    """It inherited the parent's "started" and not its thread: none of its lines ever
    carried hop_tax_us."""
    log = tmp_path / "hops.jsonl"
    settings = {
        "OUTPUT": str(log),
        "MEASURE_HOP_TAX": True,
        "EXTRA_FIELDS": "lifecycle_settings.pid",
    }
    done = _python(tmp_path, settings, _FORK)
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.splitlines()[-1])
    if not facts["parent_measuring_at_fork"]:
        pytest.skip("the parent's measurement ended before the fork")
    child = [line for line in _lines(log) if line["pid"] == facts["child"]]
    assert len(child) == 2
    assert "hop_tax_us" not in child[0]  # its first request started the measurement
    assert child[1]["hop_tax_us"] > 0


_FORK_IDS = """
    import os
    import django
    django.setup()
    from tests.helpers import wsgi_request

    wsgi_request("/sync/")  # the master serves one request (or --preload warms up)
    child = os.fork()
    for _ in range(3):
        wsgi_request("/sync/")
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    print(child)
"""


def test_a_forked_child_and_its_parent_give_different_request_ids(tmp_path):
    """The id generator is reseeded in a forked worker (gunicorn, uwsgi): without it the
    child repeated its parent's ids after the fork."""
    log = tmp_path / "hops.jsonl"
    settings = {"OUTPUT": str(log), "EXTRA_FIELDS": "lifecycle_settings.pid"}
    done = _python(tmp_path, settings, _FORK_IDS)
    assert done.returncode == 0, done.stderr[-3000:]
    child = int(done.stdout.split()[-1])
    lines = _lines(log)
    assert sorted(line["pid"] == child for line in lines) == [False] * 4 + [True] * 3
    assert len({line["request_id"] for line in lines}) == 7


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(importlib.util.find_spec("gunicorn") is None, reason="gunicorn not installed")
def test_gunicorn_preload_workers_each_measure_and_carry_hop_tax_us(tmp_path):
    """``--preload`` loads the app (and starts hopwatch) in the master, then forks the
    workers: each measures at its first request, the master never."""
    log = tmp_path / "hops.jsonl"
    settings = {
        "OUTPUT": str(log),
        "MEASURE_HOP_TAX": True,
        "EXTRA_FIELDS": "lifecycle_settings.pid",
    }
    port = _free_port()
    command = [sys.executable, "-m", "gunicorn", "lifecycle_wsgi:application", "--preload"]
    command += ["--workers", "3", "--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
    stderr = tmp_path / "server.stderr"
    server = start_server(command, _env(tmp_path, settings), stderr, ROOT)
    try:
        deadline = time.monotonic() + 60
        workers: dict[int, list[dict]] = {}
        while time.monotonic() < deadline:
            assert server.poll() is None, stderr.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/sync/", timeout=5) as answer:
                    assert answer.status == 200
            except OSError:
                time.sleep(0.1)
                continue
            workers = {}
            for line in _complete_lines(log):  # the workers may be writing one
                workers.setdefault(line["pid"], []).append(line)
            if len(workers) == 3 and all(
                any("hop_tax_us" in line for line in lines) for lines in workers.values()
            ):
                break
        else:
            without = [
                p for p, lines in workers.items() if not any("hop_tax_us" in x for x in lines)
            ]
            pytest.fail(f"of {len(workers)} workers, these never carried hop_tax_us: {without}")
        assert server.pid not in workers  # the master serves nothing
    finally:
        stop_server(server, 20)


_NO_REQUEST = """
    import threading, time
    import django
    django.setup()  # as manage.py migrate does, then it does its work and exits
    time.sleep(0.3)
    from hopwatch import apps
    print(apps._hop_tax_thread is None, apps.hop_tax is None,
          [t.name for t in threading.enumerate() if t.name.startswith("hopwatch-hop-tax")])
"""


def test_a_process_that_serves_no_request_never_measures(tmp_path):
    """``manage.py migrate`` measured at start-up and, about half the time on 3.13, was
    killed mid-measurement at exit: "coroutine ... was never awaited"."""
    done = _python(tmp_path, {"MEASURE_HOP_TAX": True}, _NO_REQUEST)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["True", "True", "[]"]
    assert "Warning" not in done.stderr, done.stderr


_GEVENT = """
    from gevent import monkey

    monkey.patch_all()  # first, as gunicorn's gevent worker does

    import collections, json, sys, urllib.error, urllib.request
    import django
    django.setup()
    import gevent.pool
    from django.core.wsgi import get_wsgi_application
    from gevent.pywsgi import WSGIServer
    import logging
    from hopwatch import apps

    application = get_wsgi_application()  # django.setup() again: LOGGING again
    logging.getLogger("hopwatch").addHandler(logging.StreamHandler(sys.stderr))
    server = WSGIServer(("127.0.0.1", 0), application, log=None)
    server.start()

    def get(_):
        try:
            return urllib.request.urlopen(
                f"http://127.0.0.1:{server.server_port}/db/", timeout=20
            ).status
        except urllib.error.HTTPError as error:
            return error.code

    statuses = gevent.pool.Pool(8).map(get, range(200))
    urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/async/", timeout=20).read()
    server.stop(timeout=5)
    print(json.dumps({"statuses": collections.Counter(statuses), "hop_tax": apps.hop_tax}))
"""

_GEVENT_URLS = """
from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpResponse
from django.urls import path


def db_view(request):
    with connection.cursor() as cursor:  # Django refuses it while a loop runs in the thread
        cursor.execute("SELECT 1")
    return HttpResponse("ok")


async def async_view(request):  # under WSGI: async_to_sync on a new loop, then 3 back
    for _ in range(3):
        await sync_to_async(connection.vendor.upper)()
    return HttpResponse("ok")


urlpatterns = [path("db/", db_view), path("async/", async_view)]
"""


def test_under_gevent_the_hop_tax_is_not_measured_and_no_request_fails(tmp_path):
    """With threading monkey-patched (gunicorn's gevent worker), the measurement's
    "thread" was a greenlet in the requests' own OS thread: while its event loop ran,
    Django refused every request's database call (SynchronousOnlyOperation), 192 of 200
    requests failed. It now measures nothing there, and says so once. And a greenlet is
    a thread to the line, as it is to the app."""
    pytest.importorskip("gevent")
    out = tmp_path / "lines.log"
    env = _env(tmp_path, {"MEASURE_HOP_TAX": True, "OUTPUT": str(out)})
    (tmp_path / "gevent_urls.py").write_text(_GEVENT_URLS)
    (tmp_path / "gevent_settings.py").write_text(
        "from lifecycle_settings import *  # noqa: F403\nROOT_URLCONF = 'gevent_urls'\n"
    )
    env["DJANGO_SETTINGS_MODULE"] = "gevent_settings"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_GEVENT)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == {"statuses": {"200": 200}, "hop_tax": None}
    *lines, async_line = _lines(out)
    assert len(lines) == 200 and {line["status"] for line in lines} == {200}
    assert not any("hop_tax_us" in line for line in [*lines, async_line])
    # The threads are greenlets, on both hop paths alike (the C path read the OS
    # thread's id where the request's was a greenlet's: "context_thread", 3 threads).
    assert async_line["executors"] == {"caller_thread": 3, "new_loop": 1}
    assert async_line["threads"] == 2
    assert done.stderr.count("MEASURE_HOP_TAX measures nothing in this process") == 1
    assert "Error" not in done.stderr, done.stderr[-3000:]


_GEVENT_MEASURE = """
    from gevent import monkey

    monkey.patch_all()

    import django
    django.setup()
    from hopwatch import audit, hop_tax

    for measure in (audit.measure_hop_tax, hop_tax.measure_hop_tax):
        try:
            measure(samples=3)
        except hop_tax.GreenThreads as error:
            print(type(error).__name__, error)
        else:
            print("measured")
"""


def test_under_gevent_measuring_the_hop_tax_directly_is_refused_with_why(tmp_path):
    """``measure_hop_tax()`` called by the app itself (not MEASURE_HOP_TAX) with
    threading monkey-patched: its "thread" would be a greenlet in the caller's own,
    its event loop running there; it refuses, saying so."""
    pytest.importorskip("gevent")
    done = _python(tmp_path, {}, _GEVENT_MEASURE)
    assert done.returncode == 0, done.stderr[-3000:]
    message = (
        "GreenThreads threading is monkey-patched (gevent or eventlet): the hop tax is"
        " measured in a separate thread, which would be a greenlet in this one"
    )
    assert done.stdout.splitlines() == [message, message]


_GEVENT_RECORDS = """
    from gevent import monkey

    monkey.patch_all()

    import collections, json, logging, threading, urllib.request
    import django
    django.setup()
    import gevent.pool
    from django.core.wsgi import get_wsgi_application
    from gevent.pywsgi import WSGIServer

    application = get_wsgi_application()  # django.setup() again: LOGGING again
    threads = {"hopwatch": [], "app": []}

    class Threads(logging.Handler):
        def emit(self, record):
            if record.levelno == logging.INFO:  # the lines, and the view's
                threads[record.name].append(record.thread)

    for name in threads:
        logging.getLogger(name).addHandler(Threads())
    logging.getLogger("app").setLevel(logging.INFO)
    server = WSGIServer(("127.0.0.1", 0), application, log=None)
    server.start()

    def get(_):
        url = f"http://127.0.0.1:{server.server_port}/logs/"
        return urllib.request.urlopen(url, timeout=20).status

    statuses = gevent.pool.Pool(4).map(get, range(8))
    server.stop(timeout=5)
    os_thread = monkey.get_original("_thread", "get_ident")()
    lines, app = threads["hopwatch"], threads["app"]
    print(json.dumps({
        "statuses": statuses,
        "records": [len(lines), len(app)],
        "same": collections.Counter(lines) == collections.Counter(app),
        "os_thread": [os_thread in lines, os_thread in app],
    }))
"""

_GEVENT_RECORDS_URLS = """
import logging
from django.http import HttpResponse
from django.urls import path


def logs_view(request):
    logging.getLogger("app").info("served")
    return HttpResponse("ok")


urlpatterns = [path("logs/", logs_view)]
"""


def test_under_gevent_a_lines_log_record_carries_the_greenlet_as_the_apps_do(tmp_path):
    """With OUTPUT "logging" under gevent, the line's LogRecord has the ``thread`` the
    app's own records of that request have: its greenlet's id, not the OS thread's (on
    both hop paths: the C one fills the record's fields itself)."""
    pytest.importorskip("gevent")
    env = _env(tmp_path, {"OUTPUT": "logging"})
    (tmp_path / "gevent_records_urls.py").write_text(_GEVENT_RECORDS_URLS)
    (tmp_path / "gevent_records_settings.py").write_text(
        "from lifecycle_settings import *  # noqa: F403\nROOT_URLCONF = 'gevent_records_urls'\n"
    )
    env["DJANGO_SETTINGS_MODULE"] = "gevent_records_settings"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_GEVENT_RECORDS)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == {
        "statuses": [200] * 8,
        "records": [8, 8],
        "same": True,
        "os_thread": [False, False],
    }


_ENDS_MID_MEASUREMENT = """
    import atexit, sys, time
    import django
    django.setup()
    from hopwatch import apps
    from tests.helpers import asgi_request

    def after_threading_shutdown():  # atexit: after threading's exit hooks
        thread = apps._hop_tax_thread
        print("alive at exit:", thread is not None and thread.is_alive(), flush=True)

    asgi_request("/async/")
    if apps._hop_tax_thread is None:  # before the fix: measuring since start-up
        apps._start_hop_tax_measurement()
    deadline = time.monotonic() + 10
    while apps._hop_tax_thread is None or not apps._hop_tax_thread.is_alive():
        assert time.monotonic() < deadline
        time.sleep(0.001)
    thread = apps._hop_tax_thread
    atexit.register(lambda: print("thread ended:", not thread.is_alive(), flush=True))
    time.sleep(float(sys.argv[1]))  # now mid-measurement
    print("measured before exit:", apps.hop_tax is not None, flush=True)
    sys.exit(0)
"""


def test_a_process_ending_mid_measurement_stops_it_cleanly(tmp_path):
    """The measuring thread is told to stop and ends before the interpreter finalizes;
    before, the daemon thread was frozen mid-hop: RuntimeWarnings at exit."""
    env = _env(tmp_path, {"MEASURE_HOP_TAX": True})
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_ENDS_MID_MEASUREMENT), f"0.00{i}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(1, 7)
    ]
    mid = 0
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err[-3000:]
        assert "never awaited" not in err and "Warning" not in err, err
        assert "thread ended: True" in out, out
        mid += "measured before exit: False" in out
    assert mid  # at least one run really ended mid-measurement


# --- hopwatch.uninstall() / install() in a Django process -----------------------------------

_UNINSTALL = """
    import asyncio, json, sys
    from asgiref.sync import AsyncToSync, SyncToAsync
    import django.core.handlers.asgi as handlers_asgi
    import django.core.handlers.base as handlers_base
    import django.core.handlers.wsgi as handlers_wsgi
    import django.http.response as http_response
    from django.db.backends.signals import connection_created

    owners = {
        "SyncToAsync": SyncToAsync, "AsyncToSync": AsyncToSync,
        "BaseHandler": handlers_base.BaseHandler, "ASGIHandler": handlers_asgi.ASGIHandler,
        "WSGIHandler": handlers_wsgi.WSGIHandler, "HttpResponseBase": http_response.HttpResponseBase,
        "django.core.handlers.asgi": handlers_asgi,
    }
    def state():
        found = {name: dict(vars(owner)) for name, owner in owners.items()}
        return found, list(sys.meta_path), list(connection_created.receivers)

    def test_client_calls():  # whose __call__ each test client handler has
        client = sys.modules["django.test.client"]
        return [vars(handler)["__call__"].__module__
                for handler in (client.ClientHandler, client.AsyncClientHandler)]

    def differences(before, now):
        (b_dicts, b_path, b_receivers), (n_dicts, n_path, n_receivers) = before, now
        changed = [
            f"{name}.{key}" for name in b_dicts for key in set(b_dicts[name]) | set(n_dicts[name])
            if b_dicts[name].get(key) is not n_dicts[name].get(key)
        ]
        return changed + (["sys.meta_path"] if b_path != n_path else []) + (
            ["connection_created"] if b_receivers != n_receivers else [])

    pristine = state()
    import django
    django.setup()
    import hopwatch
    from django.core.asgi import get_asgi_application
    from tests.helpers import asgi_call
    application = get_asgi_application()  # made while hopwatch is installed

    def serve():
        asyncio.run(asgi_call(application, "/async/"))
        from django.test import Client  # imported by now: the import hook patched it
        Client().get("/sync/")

    serve()
    installed = differences(pristine, state())
    hopwatch.uninstall()
    uninstalled = differences(pristine, state())
    client_calls = test_client_calls()
    serve()
    print(json.dumps({"installed": installed, "uninstalled": uninstalled,
                      "client_calls": client_calls, "is_installed": hopwatch.is_installed()}),
          flush=True)
    hopwatch.install()
    reinstalled = differences(pristine, state())
    serve()
    hopwatch.uninstall()
    hopwatch.uninstall()
    again = differences(pristine, state())
    # (the test client's import hook is not put back: the client is imported by now)
    print(json.dumps({"reinstalled": sorted(set(installed) - {"sys.meta_path"}) == sorted(reinstalled),
                      "again": again}))
"""


def test_uninstall_gives_django_and_asgiref_back_and_install_puts_hopwatch_back(tmp_path):
    """uninstall() restored asgiref only: Django's handlers stayed hopwatch's, its
    ASGI module kept the name ThreadSensitiveContext bound to RequestContext, the test
    client's import hook stayed, and every request still wrote a line saying 0 hops."""
    log = tmp_path / "hops.jsonl"
    done = _python(tmp_path, {"OUTPUT": str(log)}, _UNINSTALL)
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = (json.loads(line) for line in done.stdout.splitlines()[-2:])
    assert {  # among what hopwatch changed, and uninstall() undid:
        "BaseHandler.load_middleware",
        "django.core.handlers.asgi.ThreadSensitiveContext",
        "SyncToAsync.__call__",
        "sys.meta_path",
        "connection_created",
    } <= set(first["installed"])
    assert first["uninstalled"] == [] and first["is_installed"] is False
    assert first["client_calls"] == ["django.test.client"] * 2
    assert second == {"reinstalled": True, "again": []}
    lines = _lines(log)
    # two requests before uninstall(), none while uninstalled, two after install()
    assert [(line["route"], line["interface"]) for line in lines] == [
        ("/async/", "asgi"),
        ("/sync/", "test-client"),
    ] * 2
    assert [line["hops"] for line in lines[::2]] == [lines[0]["hops"]] * 2
    assert lines[0]["hops"] > 0


def test_uninstall_in_process_writes_no_line_and_install_brings_them_back(log_lines):
    """The same in this process: a request through Django's ASGIHandler and one through
    its test client while uninstalled write no line; after install() their lines are
    the same as before."""
    client = Client()

    asgi_request("/async/")
    client.get("/sync/")
    before = [(line["interface"], line["hops"]) for line in log_lines.parsed()]
    assert [interface for interface, _hops in before] == ["asgi", "test-client"]
    try:
        hopwatch.uninstall()
        assert not hopwatch.is_installed()
        asgi_request("/async/")
        client.get("/sync/")
        assert len(log_lines.parsed()) == 2  # none more
    finally:
        hopwatch.install()
    assert hopwatch.is_installed()
    asgi_request("/async/")
    client.get("/sync/")
    after = [(line["interface"], line["hops"]) for line in log_lines.parsed()[2:]]
    assert after == before and before[0][1] == 15


# --- a file OUTPUT is closed at exit --------------------------------------------------------

_ONE_REQUEST = """
    import django
    django.setup()
    from tests.helpers import asgi_request
    asgi_request("/async/")
"""


@pytest.mark.parametrize("buffer", [0, 4096])
def test_a_file_output_is_closed_at_exit(tmp_path, buffer):
    """Nothing closed hopwatch's own file: ``ResourceWarning: unclosed file`` at every
    exit under ``-X dev`` (``python -Wd manage.py runserver``, at each reload)."""
    log = tmp_path / "hops.jsonl"
    done = _python(
        tmp_path, {"OUTPUT": str(log), "OUTPUT_BUFFER": buffer}, _ONE_REQUEST, "-X", "dev"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ResourceWarning" not in done.stderr, done.stderr
    assert [line["hops"] for line in _lines(log)] == [15]


_COLLECTED_AT_EXIT = """
    import atexit, logging, weakref
    import django
    django.setup()
    # hopwatch's warnings (an internal error's traceback) on stderr, as by default
    logging.getLogger("hopwatch").addHandler(logging.StreamHandler())
    from django.test import Client
    Client().get("/stream/sync/").getvalue()
    kept = Client().get("/stream/sync/")  # its body never read
    kept.itself = kept  # a reference cycle: only the collector ends it
    alive = weakref.ref(kept)
    del kept
    # runs before hopwatch's own exit handler (registered earlier)
    atexit.register(lambda: print("alive at exit:", alive() is not None))
"""


@pytest.mark.parametrize("idle", [False, True])
@pytest.mark.parametrize("buffer", [0, 4096])
def test_a_line_finished_after_the_file_output_was_closed_at_exit_is_written(
    tmp_path, buffer, idle
):
    """A test client's streaming response left unread in a reference cycle is collected
    as the interpreter finalizes, after the exit handler closed the file: its line was
    lost and stderr got an internal error's traceback (``I/O operation on closed file``;
    with OUTPUT_BUFFER, ``write to a closed hopwatch output``). ``idle``: the process
    wrote nothing for over a second before its exit, so the exit-time line is due a
    rotation check, which has no file to reopen (each write opens the path)."""
    log = tmp_path / "hops.jsonl"
    done = _python(
        tmp_path,
        {"OUTPUT": str(log), "OUTPUT_BUFFER": buffer},
        _COLLECTED_AT_EXIT + ("    import time; time.sleep(1.2)\n" if idle else ""),
        "-X",
        "dev",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == "alive at exit: True\n"
    assert done.stderr == ""
    assert [
        (line["route"], line["status"], line["hops"], line.get("response_closed"))
        for line in _lines(log)
    ] == [("/stream/sync/", 200, 0, None), ("/stream/sync/", 200, 0, False)]


# --- a misspelt setting: start-up stops; E001-E003 are for override_settings -----------------


def test_a_misspelt_setting_stops_manage_py_check_with_improperly_configured(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "django", "check"],
        cwd=ROOT,
        env=_env(tmp_path, {"ENABLD": True}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: hopwatch: bad settings")
    assert "'ENABLD'" in last
    assert "hopwatch.E002" not in done.stdout + done.stderr  # the check never ran


def test_override_settings_gets_the_system_checks_for_a_misspelt_setting():
    from django.core.management.base import SystemCheckError

    with override_settings(HOPWATCH={"ENABLD": True}), pytest.raises(SystemCheckError) as error:
        call_command("check")
    assert "hopwatch.E002" in str(error.value)


def test_getting_started_says_what_a_misspelt_setting_does():
    """It said ``manage.py check`` tells you a setting is misspelt: start-up fails first."""
    text = " ".join((ROOT / "docs" / "getting-started.md").read_text().split())
    assert "a setting is misspelt" not in text
    assert "stops with `ImproperlyConfigured`" in text
    assert "`hopwatch.E001`-`E003`" in text and "`override_settings`" in text


# --- uninstall() ends what the app started: the file output, the process lines ---------------

_UNINSTALL_A_FILE = """
    import json, os
    import django
    django.setup()
    import hopwatch
    from django.conf import settings
    from django.test import Client

    log = os.path.realpath(settings.HOPWATCH["OUTPUT"])

    def lines():
        with open(log) as file:
            return [json.loads(line)["route"] for line in file]

    def open_here():  # whether this process has the file open
        fds = "/proc/self/fd"
        return any(os.path.realpath(os.path.join(fds, fd)) == log for fd in os.listdir(fds))

    Client().get("/sync/")
    hopwatch.uninstall()
    after_uninstall = [lines(), open_here()]
    hopwatch.install()
    Client().get("/async/")
    hopwatch.flush()
    print(json.dumps({"uninstalled": after_uninstall, "installed": lines()}))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
@pytest.mark.parametrize("buffer", [0, 65536])
def test_uninstall_writes_the_held_lines_out_and_closes_the_file_output(tmp_path, buffer):
    """``hopwatch.uninstall()`` with a file OUTPUT: the line of the request before it is
    in the file (OUTPUT_BUFFER's held line written out, not left for the exit) and the
    process holds the file no more; after ``install()`` the next line goes to it."""
    log = tmp_path / "hops.jsonl"
    done = _python(tmp_path, {"OUTPUT": str(log), "OUTPUT_BUFFER": buffer}, _UNINSTALL_A_FILE)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "uninstalled": [["/sync/"], False],
        "installed": ["/sync/", "/async/"],
    }


_UNINSTALL_PROCESS_LINES = """
    import json, os, threading, time
    import django
    django.setup()
    import hopwatch
    from django.conf import settings
    from django.test import Client

    def process_lines():  # those written whole (the thread may be writing one)
        with open(settings.HOPWATCH["OUTPUT"]) as file:
            return sum(
                json.loads(line).get("event") == "hopwatch.process"
                for line in file if line.endswith("\\n")
            )

    def threads():
        return sorted(t.name for t in threading.enumerate() if t.name == "hopwatch-process")

    def wait_for_a_process_line():
        deadline = time.monotonic() + 30
        while not process_lines() and time.monotonic() < deadline:
            time.sleep(0.01)
        return process_lines() > 0

    Client().get("/sync/")  # starts the line's thread
    before = [wait_for_a_process_line(), threads()]
    hopwatch.uninstall()
    written = process_lines()
    time.sleep(0.5)  # ten periods
    after = [process_lines() - written, threads()]
    print(json.dumps({"before": before, "after_uninstall": after}))
"""


def test_uninstall_stops_the_process_lines_and_their_thread(tmp_path):
    """``hopwatch.uninstall()`` with PROCESS_LINE_SECONDS: no ``hopwatch.process`` line
    is written from then on, and the thread that wrote them has ended."""
    log = tmp_path / "hops.jsonl"
    done = _python(
        tmp_path, {"OUTPUT": str(log), "PROCESS_LINE_SECONDS": 0.05}, _UNINSTALL_PROCESS_LINES
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "before": [True, ["hopwatch-process"]],
        "after_uninstall": [0, []],
    }
