"""gunicorn's gevent worker with ``--preload``: a streaming request's line is not cut
short by a request on another connection to the same worker.

The WSGI handler used to remember the last request its thread returned while the
response was unclosed, so that thread's next request finished it (a server that
never closed it). That memory was a ``threading.local`` made when hopwatch was
imported: under ``--preload`` that is in gunicorn's master, before the gevent
worker monkey-patches ``threading``, so it was one per OS thread, not per
greenlet. A request on another connection (another greenlet, the same OS thread)
took the streaming request for its own thread's stale one and finished it:
``response_closed: false`` though gunicorn closed it, its duration stopped there,
and the hops of its later chunks were in no line. No request finishes another
now (a single-threaded server, bjoern, did the same to its connections'
requests): a request ends at its own response's close, or its collection. The
request's scope (a context variable) is per greenlet: greenlet gives each its own
context; the other request's hops are in its own line only.
"""

from __future__ import annotations

import http.client
import importlib.util
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import start_server, stop_server
from tests.test_lifecycle import ROOT, _env, _free_port, _lines

_URLS = """
import os
import time
from pathlib import Path

from asgiref.sync import async_to_sync
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import path

FAST_DONE = Path(os.environ["FAST_DONE"])


async def anoop():
    return None


def slow_view(request):
    def chunks():
        for number in range(5):
            if number == 1:
                # The test asks for /fast/ once it has the first chunk: wait for
                # it to be over (no two event loops at once in the worker's thread).
                deadline = time.monotonic() + 20
                while not FAST_DONE.exists() and time.monotonic() < deadline:
                    time.sleep(0.01)  # monkey-patched: the worker's other greenlets run
            async_to_sync(anoop)()  # a hop per chunk
            time.sleep(0.05)
            yield b"x" * 10

    return StreamingHttpResponse(chunks())


def fast_view(request):
    async_to_sync(anoop)()
    FAST_DONE.touch()
    return HttpResponse(b"ok")


def ready_view(request):
    return HttpResponse(b"ready")


urlpatterns = [path("slow/", slow_view), path("fast/", fast_view), path("ready/", ready_view)]
"""

_SETTINGS = """
from lifecycle_settings import *  # noqa: F403
ROOT_URLCONF = "gevent_stream_urls"
MIDDLEWARE = ["hopwatch.middleware.HopwatchMiddleware"]
"""

_HOP = ("other", "gevent_stream_urls.anoop")


def _sites(line: dict) -> dict[tuple[str, str], int]:
    return {(site["kind"], site["site"]): site["count"] for site in line["sites"]}


@pytest.mark.skipif(importlib.util.find_spec("gunicorn") is None, reason="gunicorn not installed")
def test_a_gevent_preload_workers_stream_is_not_finished_by_another_connections_request(
    tmp_path: Path,
):
    pytest.importorskip("gevent")
    log = tmp_path / "hops.jsonl"
    env = _env(tmp_path, {"OUTPUT": str(log)})
    (tmp_path / "gevent_stream_urls.py").write_text(_URLS)
    (tmp_path / "gevent_stream_settings.py").write_text(_SETTINGS)
    env["DJANGO_SETTINGS_MODULE"] = "gevent_stream_settings"
    env["FAST_DONE"] = str(tmp_path / "fast-done")
    port = _free_port()
    command = [sys.executable, "-m", "gunicorn", "lifecycle_wsgi:application", "--preload"]
    command += ["-k", "gevent", "--workers", "1", "--bind", f"127.0.0.1:{port}"]
    command += ["--log-level", "warning"]
    stderr = tmp_path / "server.stderr"
    server = start_server(command, env, stderr, ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, stderr.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready/", timeout=5) as answer:
                    assert answer.read() == b"ready"
                break
            except OSError:
                assert time.monotonic() < deadline, stderr.read_text()
                time.sleep(0.1)
        slow = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        slow.request("GET", "/slow/")
        streaming = slow.getresponse()
        assert streaming.read(10) == b"x" * 10  # the handler returned, the body streams
        # Another connection: another greenlet of the worker's one OS thread.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/fast/", timeout=20) as answer:
            assert answer.read() == b"ok"
        assert streaming.read() == b"x" * 40
        slow.close()
        lines: list[dict] = []
        while time.monotonic() < deadline:
            lines = [line for line in _lines(log) if line["route"] != "/ready/"]
            if len(lines) == 2:
                break
            time.sleep(0.05)
    finally:
        stop_server(server, 20)
    assert "Error" not in stderr.read_text(), stderr.read_text()
    by_route = {line["route"]: line for line in lines}
    fast, streamed = by_route["/fast/"], by_route["/slow/"]
    assert (fast["route"], fast["hops"], _sites(fast)) == ("/fast/", 1, {_HOP: 1})
    assert (streamed["route"], streamed["hops"], _sites(streamed)) == ("/slow/", 5, {_HOP: 5})
    assert "response_closed" not in streamed
    assert streamed["duration_ms"] >= 250  # five chunks of 0.05 s, to the close
