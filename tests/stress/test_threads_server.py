"""Threads under a real uvicorn server on 127.0.0.1: the pool it really has, and ASGI_THREADS.

uvicorn does not read ``ASGI_THREADS`` (daphne does): the process line must say
the variable is set and not applied, with the pool's real size.
"""

from __future__ import annotations

import json
import time
import urllib.request

from hopwatch import _process
from tests.stress.harness import running
from tests.testapp.views_threads import GATHERED


def _process_lines(server):
    lines = [json.loads(line) for line in server.raw_lines()]
    return [line for line in lines if line["event"] == "hopwatch.process"]


def test_uvicorn_ignores_asgi_threads_and_the_lines_say_so(tmp_path, template_db):
    env = {"ASGI_THREADS": "3", "HOPWATCH_PROCESS_LINE_SECONDS": "0.2"}
    with running(tmp_path / "server", template_db, env=env) as server:
        url = f"http://127.0.0.1:{server.port}/threads/gather-pool/"
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.read() == str(GATHERED).encode()
        deadline = time.monotonic() + 30
        while not any(line["requests"] for line in _process_lines(server)):
            assert time.monotonic() < deadline, server.stderr()
            time.sleep(0.1)
        lines = [json.loads(line) for line in server.raw_lines()]
    (request,) = [line for line in lines if line["event"] == "hopwatch.request"]
    # startproject's middleware under ASGI: 15 crossings on the request's context
    # thread; the five gathered thread_sensitive=False calls in uvicorn's loop's pool.
    assert request["executors"] == {"context_thread": 15, "default_pool": GATHERED}
    assert request["max_in_flight"] == GATHERED and request["db_connections"] == GATHERED
    (busy,) = [line for line in _process_lines(server) if line["requests"]]
    pool = busy["default_pool"]
    assert pool["asgi_threads"] == 3 and pool["asgi_threads_applied"] is False
    assert pool["max_workers"] == _process.default_max_workers() and pool["created"]
    assert pool["threads"] >= GATHERED and pool["loop"] is True
    assert busy["executors"] == request["executors"]
    assert busy["pool_crossings"] == GATHERED and busy["db_connections"] == GATHERED
    assert busy["contexts_max"] == 1 and busy["pool_busy_max"] <= GATHERED
