"""``db_connections`` with a connection pool: Django's (PostgreSQL ``OPTIONS["pool"]``, 5.1+)
and django-db-connection-pool's (SQLAlchemy's pool behind ``dj_db_conn_pool.backends.*``).

With the pool, Django's ``connect()`` takes a connection from the pool
(``get_new_connection`` -> ``pool.getconn()``) and sends ``connection_created`` as
for a new one, on every checkout. The field counts physical connections first used
by the request: a checkout of one used before counts 0. Without the pool each
connect is a new connection and counts. django-db-connection-pool hands Django a
new proxy of SQLAlchemy's (``_ConnectionFairy``) at every checkout, around the
same DB-API connection: that counts as the connection inside it. And what docs/threads.md says of pool
threads: each ``thread_sensitive=False`` call keeps the connection it took from the
pool, unless the function closes it.

Django's pool exists in its PostgreSQL backend only, and needs a server: each test
runs a real Django process (requests through Django's ``ASGIHandler`` on one event
loop, as a server makes them, and its ``WSGIHandler``) against a throw-away cluster
made with ``initdb`` and run by ``postgres`` for this module, which logs each connection
it accepts (``log_connections``: the server's own count of connections). Skipped, with the
reason, where ``initdb``/``postgres`` or psycopg and psycopg-pool are missing (failed under
CI=true: ``python3 dev.py test`` installs PostgreSQL with apt-get where it can).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ends_with_this_process
from tests.testapp.views_threads import GATHERED

ROOT = Path(__file__).resolve().parent.parent

psycopg = pytest.importorskip("psycopg", reason="psycopg (3) is not installed")
pytest.importorskip("psycopg_pool", reason="psycopg-pool is not installed")


def missing(reason: str, installs: str = "where apt-get can") -> None:
    """Skip (or fail under CI=true, where dev.py installs PostgreSQL and the test
    requirements) for a missing part."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the database pool test must run)")
    pytest.skip(f"{reason}; python3 dev.py test installs it {installs}")


def _postgres_bin() -> Path | None:
    """The directory of ``initdb`` and ``postgres``: on PATH, else Debian's
    /usr/lib/postgresql/N/bin (the postgresql package puts neither on PATH)."""
    found = shutil.which("initdb")
    if found:
        where = Path(found).resolve().parent
        if (where / "postgres").exists():
            return where
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    return None


def _cluster_user() -> dict[str, Any]:
    """``user``/``group`` for the cluster's processes: PostgreSQL refuses to run as root,
    so under root, the ``postgres`` user's."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        missing("running as root, and there is no 'postgres' user to run PostgreSQL as")
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A throw-away PostgreSQL cluster for this module: its socket directory (a libpq
    ``host``), superuser ``hopwatch``, trust authentication, no TCP."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        missing("PostgreSQL's initdb and postgres are not installed (apt-get install postgresql)")
    user = _cluster_user()
    base = Path(tempfile.mkdtemp(prefix="hopwatch-pg-"))  # not under pytest's 0700 root dirs
    try:
        if user:
            os.chown(base, user["user"], user["group"])
        data = base / "data"
        initdb = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "hopwatch",
             "--no-sync", "-E", "UTF8", "--locale=C"],
            capture_output=True, text=True, timeout=120, **user,
        )  # fmt: skip
        assert initdb.returncode == 0, initdb.stderr[-3000:]
        with open(base / "log", "wb") as log:
            server = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(data), "-k", str(base),
                 "-c", "listen_addresses=", "-c", "fsync=off", "-c", "max_connections=40",
                 "-c", "log_connections=on"],
                stdout=subprocess.DEVNULL, stderr=log,
                preexec_fn=ends_with_this_process(), **user,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    psycopg.connect(host=str(base), user="hopwatch", dbname="postgres").close()
                    break
                except psycopg.OperationalError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError((base / "log").read_text()[-3000:]) from None
                    time.sleep(0.1)
            yield str(base)
        finally:
            server.send_signal(2)  # SIGINT: fast shutdown, the children's connections ended
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)
    finally:
        shutil.rmtree(base, ignore_errors=True)


# The child's settings: the suite's, on the cluster, with Django's pool when POOL is set;
# ENGINE and django-db-connection-pool's POOL_OPTIONS from DB_ENGINE and POOL_OPTIONS.
_SETTINGS = """
import json, os
from tests.settings import *  # noqa: F403
_pool = json.loads(os.environ["POOL"])
DATABASES = {"default": {
    "ENGINE": os.environ["DB_ENGINE"],
    "HOST": os.environ["PGHOST_DIR"], "USER": "hopwatch", "NAME": "postgres",
    "OPTIONS": {"pool": _pool} if _pool else {},
    "POOL_OPTIONS": json.loads(os.environ["POOL_OPTIONS"]),
}}
ROOT_URLCONF = "db_pool_urls"
MIDDLEWARE = ["hopwatch.middleware.HopwatchMiddleware"]
HOPWATCH = {"OUTPUT": os.environ["HOPWATCH_LOG"], "PROCESS_LINE_SECONDS": 3600}
"""

_URLS = f"""
import asyncio, threading
from asgiref.sync import sync_to_async
from django.db import close_old_connections, connection
from django.http import JsonResponse
from django.urls import path

def _pid():
    with connection.cursor() as cursor:
        cursor.execute("select pg_backend_pid()")
        return cursor.fetchone()[0]

def pid_view(request):
    return JsonResponse({{"pids": [_pid()]}})

def _pool_call(barrier, close):
    pid = _pid()
    barrier.wait()  # all in flight together: each holds a connection of its own
    if close == "close":
        connection.close()  # back to the pool
    elif close == "old":
        close_old_connections()  # with the pool CONN_MAX_AGE is 0: back to the pool too
    return pid

async def gather_view(request):
    barrier = threading.Barrier({GATHERED}, timeout=30)
    close = request.GET.get("close")
    calls = (sync_to_async(_pool_call, thread_sensitive=False)(barrier, close)
             for _ in range({GATHERED}))
    return JsonResponse({{"pids": list(await asyncio.gather(*calls))}})

urlpatterns = [path("pid/", pid_view), path("gather/", gather_view)]
"""

# Requests made one after another: first the "asgi PATH" ones, through one ASGIHandler
# on one event loop (its default pool lives on, as a server's does), then the
# "wsgi PATH" ones, through Django's WSGIHandler on this thread, then the "client PATH"
# ones, through the test Client on this thread. With WARM_UP set, first a query outside
# any request (as at start-up, before serving), its connection closed: back to the pool.
# Prints each response's backend pids, the warm-up's, the pool's stats after the ASGI
# requests, and the process line.
_CHILD = """
import asyncio, json, os, sys
import django
django.setup()
from django.core.handlers.asgi import ASGIHandler
from django.db import connection
from django.test import Client
from hopwatch import apps
from tests.helpers import asgi_call, wsgi_request

requests = [arg.split(" ", 1) for arg in sys.argv[1:]]
pids = []
warm_up = None
if os.environ.get("WARM_UP"):
    from db_pool_urls import _pid
    warm_up = _pid()
    connection.close()

async def serve():
    handler = ASGIHandler()
    for path in (path for interface, path in requests if interface == "asgi"):
        path, _, query = path.partition("?")
        result = await asgi_call(handler, path, query=query)
        assert result.status == 200, result.body
        pids.append(json.loads(result.body)["pids"])
    stats = connection.pool.get_stats() if connection.pool else {}
    return {"pool_size": stats.get("pool_size"), "pool_available": stats.get("pool_available")}

pool = asyncio.run(serve())
for path in (path for interface, path in requests if interface == "wsgi"):
    status, body = wsgi_request(path)
    assert status.startswith("200"), body
    pids.append(json.loads(body)["pids"])
for path in (path for interface, path in requests if interface == "client"):
    response = Client().get(path)
    assert response.status_code == 200, response.content
    pids.append(response.json()["pids"])
print(json.dumps({"pids": pids, "warm_up": warm_up, "pool": pool,
                  "process": apps.process_lines.line()}))
"""


def _serve(
    tmp_path: Path,
    cluster: str,
    pool: Any,
    *requests: str,
    engine: str = "django.db.backends.postgresql",
    pool_options: dict[str, Any] | None = None,
    warm_up: bool = False,
) -> dict[str, Any]:
    """The child's pids, the warm-up query's (``warm_up``, with ``warm_up``), pool stats
    and process line, its request lines (``lines``), and the connections the server
    accepted while it ran (``server_connections``)."""
    (tmp_path / "db_pool_settings.py").write_text(_SETTINGS)
    (tmp_path / "db_pool_urls.py").write_text(_URLS)
    log = tmp_path / "hopwatch.log"
    log.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    # This process's PYTHONPATH after the child's own: where psycopg may have come from.
    paths = [str(tmp_path), str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
    env["DJANGO_SETTINGS_MODULE"] = "db_pool_settings"
    env.update(POOL=json.dumps(pool), PGHOST_DIR=cluster, HOPWATCH_LOG=str(log))
    env.update(DB_ENGINE=engine, POOL_OPTIONS=json.dumps(pool_options or {}))
    env["WARM_UP"] = "1" if warm_up else ""
    server_log = Path(cluster) / "log"
    server_log_start = server_log.stat().st_size
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CHILD), *requests],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    result["lines"] = [line for line in lines if line["event"] == "hopwatch.request"]
    assert len(result["lines"]) == len(requests)
    with open(server_log, "rb") as read:
        read.seek(server_log_start)
        result["server_connections"] = read.read().count(b"connection authorized:")
    return result


SEQUENTIAL = ("asgi /pid/",) * 3 + ("wsgi /pid/",) * 3


def test_a_pooled_connection_counts_for_the_first_request_that_uses_it(tmp_path, cluster):
    """One physical connection (a pool of one) serves six requests: under ASGI each on
    a new thread, which checks it out of the pool (``connection_created`` each time),
    under WSGI on one thread, which returns it at each request's end. The first request
    opened it; the others reused it."""
    served = _serve(tmp_path, cluster, {"min_size": 1, "max_size": 1}, *SEQUENTIAL)
    assert len({pid for pids in served["pids"] for pid in pids}) == 1  # the server's truth
    assert [line["db_connections"] for line in served["lines"]] == [1, 0, 0, 0, 0, 0]
    assert served["process"]["requests"] == 6
    assert served["process"]["db_connections"] == 1


def test_a_pooled_connection_first_used_before_serving_counts_for_no_request(
    tmp_path, cluster
):
    """A pool of one connection, first used outside any request (a warm-up query at
    start-up, then ``connection.close()``: back to the pool), then by a request of each
    handler: ASGI's, WSGI's and the test Client's. The pool hands each the connection
    the warm-up used (the server's pid): no request opened it, each counts 0."""
    served = _serve(
        tmp_path, cluster, {"min_size": 1, "max_size": 1},
        "asgi /pid/", "wsgi /pid/", "client /pid/", warm_up=True,
    )  # fmt: skip
    assert served["pids"] == [[served["warm_up"]]] * 3  # the server's truth
    assert [line["route"] for line in served["lines"]] == ["/pid/"] * 3
    assert [line["db_connections"] for line in served["lines"]] == [0, 0, 0]
    assert served["process"]["db_connections"] == 0
    assert served["server_connections"] == 1


def test_without_the_pool_every_connect_is_a_connection(tmp_path, cluster):
    """The same requests without the pool: each connects and closes its own."""
    served = _serve(tmp_path, cluster, None, *SEQUENTIAL)
    assert [line["db_connections"] for line in served["lines"]] == [1] * 6
    assert served["process"]["db_connections"] == 6


def test_pool_threads_keep_the_connections_they_took_unless_the_call_closes_them(
    tmp_path, cluster
):
    """docs/threads.md: the pool does not give back a connection a ``thread_sensitive=False``
    call took; nothing on that thread does. Five gathered calls hold five connections
    from the pool after the request. Closing the connection at the end of the function
    (``connection.close()``, or ``close_old_connections()``) returns it: the next
    request's calls reuse the pool's connections (0 opened)."""
    pool = {"min_size": 1, "max_size": GATHERED}
    kept = _serve(tmp_path, cluster, pool, "asgi /gather/", "asgi /gather/")
    first, second = kept["pids"]
    assert len(set(first)) == GATHERED and set(second) == set(first)  # the same threads' own
    assert [line["db_connections"] for line in kept["lines"]] == [GATHERED, 0]
    assert kept["pool"] == {"pool_size": GATHERED, "pool_available": 0}  # all held

    closed = _serve(tmp_path, cluster, pool, "asgi /gather/?close=close", "asgi /gather/?close=old")
    first, second = closed["pids"]
    assert len(set(first)) == GATHERED and set(second) == set(first)  # the pool's five again
    assert [line["db_connections"] for line in closed["lines"]] == [GATHERED, 0]
    assert closed["pool"] == {"pool_size": GATHERED, "pool_available": GATHERED}


def _sqlalchemy_pool() -> str:
    """django-db-connection-pool's PostgreSQL backend (SQLAlchemy's ``QueuePool``, on
    psycopg 3): the ENGINE; missing() without it."""
    try:
        import dj_db_conn_pool  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError:
        missing("django-db-connection-pool is not installed", "with its environments")
    return "dj_db_conn_pool.backends.postgresql"


def test_a_sqlalchemy_pool_connection_counts_for_the_first_request_that_uses_it(
    tmp_path, cluster
):
    """django-db-connection-pool, the usual pool on MySQL: its backend's ``connect()``
    checks a connection out of SQLAlchemy's pool, which hands Django a new proxy around
    it (``_ConnectionFairy``) each time, and Django sends ``connection_created``. A pool
    of one connection serves the six requests: the first opened it, the others
    reused it (each had counted 1 while the proxy was taken for the connection). The
    sum is the server's own count of connections."""
    engine = _sqlalchemy_pool()
    options = {"POOL_SIZE": 1, "MAX_OVERFLOW": 0, "TIMEOUT": 20}
    served = _serve(tmp_path, cluster, None, *SEQUENTIAL, engine=engine, pool_options=options)
    assert len({pid for pids in served["pids"] for pid in pids}) == 1
    assert [line["db_connections"] for line in served["lines"]] == [1, 0, 0, 0, 0, 0]
    assert served["process"]["db_connections"] == 1
    assert served["server_connections"] == 1


def test_a_sqlalchemy_pool_gives_pool_threads_back_the_connections_they_closed(
    tmp_path, cluster
):
    """Gathered ``thread_sensitive=False`` calls with django-db-connection-pool, each
    closing its connection (back to the pool): the first request's five open five; the
    next request's calls take the same five out of the pool again, as new proxies, and
    open none. The sum is the server's own count."""
    engine = _sqlalchemy_pool()
    options = {"POOL_SIZE": GATHERED, "MAX_OVERFLOW": 0, "TIMEOUT": 20}
    requests = ("asgi /gather/?close=close",) * 2
    closed = _serve(tmp_path, cluster, None, *requests, engine=engine, pool_options=options)
    first, second = closed["pids"]
    assert len(set(first)) == GATHERED and set(second) == set(first)
    assert [line["db_connections"] for line in closed["lines"]] == [GATHERED, 0]
    assert closed["process"]["db_connections"] == GATHERED
    assert closed["server_connections"] == GATHERED
