"""Each ASGI server's own test of whether the application is an ASGI 3 one, with
hopwatch installed, on every supported Python: the server started as its users start
it, one request of each kind through it.

Hypercorn asks ``inspect.iscoroutinefunction(app.__call__)``. Before Python 3.12
asgiref's mark on a plain function satisfies only ``asyncio.iscoroutinefunction``, so
with hopwatch's handler Hypercorn took Django for a WSGI app, and every request was a
500 (``ASGIHandler.__call__() missing 1 required positional argument: 'send'``)."""

from __future__ import annotations

import asyncio
import inspect
import sys
import time
import urllib.request

import pytest
from django.core.handlers.asgi import ASGIHandler

from tests.helpers import start_server, stop_server
from tests.test_lifecycle import ROOT, _env, _free_port, _lines


def test_the_handler_is_a_coroutine_function_by_both_of_pythons_tests():
    handler = ASGIHandler()
    assert inspect.iscoroutinefunction(handler.__call__)
    assert asyncio.iscoroutinefunction(handler.__call__)
    assert inspect.iscoroutinefunction(ASGIHandler.__call__)


def _whole_lines(path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


SERVERS = {
    "hypercorn": ["hypercorn", "servers_asgi:application", "--bind", "127.0.0.1:{port}"],
    "daphne": ["daphne", "-b", "127.0.0.1", "-p", "{port}", "servers_asgi:application"],
    "uvicorn": ["uvicorn", "servers_asgi:application", "--host", "127.0.0.1", "--port", "{port}"],
}


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_a_server_serves_the_app_with_hopwatch_installed(tmp_path, server):
    pytest.importorskip(server)
    out = tmp_path / "lines.log"
    env = _env(tmp_path, {"OUTPUT": str(out)})
    (tmp_path / "servers_asgi.py").write_text(
        "from django.core.asgi import get_asgi_application\n"
        "application = get_asgi_application()\n"
    )
    port = _free_port()
    command = [sys.executable, "-m", *(part.format(port=port) for part in SERVERS[server])]
    stderr = tmp_path / "server.stderr"
    process = start_server(command, env, stderr, ROOT)
    try:
        deadline = time.monotonic() + 60
        statuses = []
        for path in ("/async/", "/sync/"):
            while True:
                assert process.poll() is None, stderr.read_text()[-3000:]
                try:
                    url = f"http://127.0.0.1:{port}{path}"
                    with urllib.request.urlopen(url, timeout=10) as answer:
                        statuses.append(answer.status)
                    break
                except urllib.error.HTTPError as error:
                    statuses.append(error.code)
                    break
                except OSError:
                    assert time.monotonic() < deadline, stderr.read_text()[-3000:]
                    time.sleep(0.1)
        # whole lines only: the server may be writing one
        while _whole_lines(out) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop_server(process, 20)
    assert statuses == [200, 200], stderr.read_text()[-3000:]
    lines = _lines(out)
    # In either order: a line is written when its request ends, after its response
    # was sent (Django closes it then), so the next request's may come first.
    assert sorted((line["route"], line["status"], line["interface"]) for line in lines) == [
        ("/async/", 200, "asgi"),
        ("/sync/", 200, "asgi"),
    ]
