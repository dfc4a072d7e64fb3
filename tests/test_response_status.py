"""The line's ``status`` is what the client got, where hopwatch's middleware cannot say it.

* A WSGI streaming response whose content raises before its first chunk: a PEP 3333
  server sends the headers with the first chunk only, so it answers a 500 of its own
  (gunicorn, runserver's wsgiref). The line said the response's 200. An async
  iterator's content under WSGI is read whole (Django's ``__iter__``) before the server
  gets the first chunk: any error in it is the server's 500 too. Once a chunk is out,
  or under ASGI (the headers go out first), the response's status is what the client
  got.
* A middleware above hopwatch's (``hopwatch.W002``) that answers itself: under WSGI
  the line had the response's status, under ASGI null (the docs' "client went away").
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import socket
import sys
import textwrap
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse, StreamingHttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path

from hopwatch import _errors, _hotpath
from tests.helpers import asgi_request, capture, start_server, stop_server, wsgi_request
from tests.test_lifecycle import _free_port

ROOT = Path(__file__).resolve().parent.parent
HW = "hopwatch.middleware.HopwatchMiddleware"


def _fails_at_once():
    raise ValueError("the export's first query failed")
    yield b"a"  # pragma: no cover


def _fails_after_a_chunk():
    yield b"a"
    raise ValueError("the export's second query failed")


async def _async_fails_after_a_chunk():
    yield b"a"
    raise ValueError("the export's second query failed")


def _whole():
    yield b"a"
    yield b"b"


def first_fails(request):
    return StreamingHttpResponse(_fails_at_once())


def later_fails(request):
    return StreamingHttpResponse(_fails_after_a_chunk())


def async_fails(request):
    return StreamingHttpResponse(_async_fails_after_a_chunk())


def whole(request):
    return StreamingHttpResponse(_whole())


def created(request):
    return HttpResponse("made", status=201)


class Gate:
    """A middleware that answers some requests itself (maintenance mode, a CORS
    preflight) and marks the others' responses afterwards."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/closed/"):
            return HttpResponse("closed", status=418)
        response = self.get_response(request)
        response.status_code = 203  # after hopwatch's middleware named the request
        return response


urlpatterns = [
    path("first-fails/", first_fails),
    path("later-fails/", later_fails),
    path("async-fails/", async_fails),
    path("whole/", whole),
    path("created/", created),
]


# --- a streaming response that fails, under real servers -------------------------------------

_SETTINGS = """
    import os, warnings
    from tests.settings import *  # noqa: F403
    ROOT_URLCONF = "tests.test_response_status"
    MIDDLEWARE = ["hopwatch.middleware.HopwatchMiddleware"]
    HOPWATCH = {"OUTPUT": os.environ["STATUS_LOG"]}
    LOGGING_CONFIG = None
    warnings.filterwarnings("ignore", "StreamingHttpResponse must consume")
"""

_APP = """
    from django.core.asgi import get_asgi_application
    from django.core.wsgi import get_wsgi_application
    application = get_wsgi_application()
    asgi_application = get_asgi_application()
"""

_RUNSERVER = """
    import sys
    import django
    django.setup()
    from django.core.servers.basehttp import run
    from status_app import application
    run("127.0.0.1", int(sys.argv[1]), application)
"""

SERVERS = {
    "gunicorn": ["-m", "gunicorn", "status_app:application", "--bind", "127.0.0.1:{port}"],
    "runserver": ["-c", textwrap.dedent(_RUNSERVER), "{port}"],
    "uvicorn": ["-m", "uvicorn", "status_app:asgi_application", "--port", "{port}"],
}

PATHS = ["/first-fails/", "/later-fails/", "/async-fails/", "/whole/"]

#: (what the client's status line said, the line's status) for each of PATHS.
EXPECTED = {
    # The headers go with the first chunk: before it, the server's own 500.
    "gunicorn": [(500, 500), (200, 200), (500, 500), (200, 200)],
    "runserver": [(500, 500), (200, 200), (500, 500), (200, 200)],
    # The headers go first: the response's status, whatever follows.
    "uvicorn": [(200, 200), (200, 200), (200, 200), (200, 200)],
}


def _status_line(port: int, url_path: str) -> int:
    """The status of a GET of ``url_path``: the first line of what the server sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(f"GET {url_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_a_streaming_response_that_fails_logs_what_the_server_answered(tmp_path, server):
    if server != "runserver" and importlib.util.find_spec(server) is None:
        pytest.skip(f"{server} not installed")
    (tmp_path / "status_settings.py").write_text(textwrap.dedent(_SETTINGS))
    (tmp_path / "status_app.py").write_text(textwrap.dedent(_APP))
    log = tmp_path / "lines.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT), str(ROOT / "src")])
    env["DJANGO_SETTINGS_MODULE"] = "status_settings"
    env["STATUS_LOG"] = str(log)
    port = _free_port()
    command = [sys.executable, *(part.format(port=port) for part in SERVERS[server])]
    stderr = tmp_path / "server.stderr"
    process = start_server(command, env, stderr, tmp_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, stderr.read_text()[-3000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, stderr.read_text()[-3000:]
                time.sleep(0.1)
        got: list[tuple[int, int]] = []
        for url_path in PATHS:  # one at a time: each line is written before the next
            client = _status_line(port, url_path)
            lines: list[dict[str, Any]] = []
            while time.monotonic() < deadline:
                lines = [json.loads(line) for line in log.read_text().splitlines(True)
                         if line.endswith("\n")] if log.exists() else []
                if len(lines) == len(got) + 1:
                    break
                time.sleep(0.05)
            assert len(lines) == len(got) + 1, stderr.read_text()[-3000:]
            assert lines[-1]["route"] == url_path
            got.append((client, lines[-1]["status"]))
    finally:
        stop_server(process, 20)
    assert got == EXPECTED[server]


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")
def test_the_test_clients_get_the_responses_status_and_so_does_the_line(db):
    """The test clients hand the response to the test, status and all; its content
    raises when the test reads it."""
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[HW]), capture() as records:
        for url_path in ("/first-fails/", "/async-fails/"):
            response = Client().get(url_path)
            assert response.status_code == 200
            with pytest.raises(ValueError):
                b"".join(response)
            response.close()
    assert [record.status for record in records] == [200, 200]


_VAR: ContextVar[Any] = ContextVar("status_test_var")


@pytest.mark.internal_errors
def test_steps_in_scope_calls_first_failed_only_for_an_error_at_the_first_step():
    calls: list[Any] = []
    hook = calls.append

    def scoped(*items: Any) -> Any:
        for item in items:
            yield (item, _VAR.get(None))
        raise ValueError("failed")

    steps = _hotpath.steps_in_scope(_VAR, scoped(), "scope", hook)
    with pytest.raises(ValueError):
        next(steps)
    assert calls == ["scope"] and _VAR.get(None) is None
    assert list(steps) == []  # ended
    steps = _hotpath.steps_in_scope(_VAR, scoped(1), "scope", hook)
    assert next(steps) == (1, "scope")
    with pytest.raises(ValueError):
        next(steps)
    assert calls == ["scope"]  # not for a later step
    assert list(_hotpath.steps_in_scope(_VAR, iter([]), "scope", hook)) == []
    assert list(_hotpath.steps_in_scope(_VAR, iter([1, 2]), "scope", hook)) == [1, 2]
    assert list(_hotpath.steps_in_scope(_VAR, iter([1, 2]), "scope", None)) == [1, 2]
    assert calls == ["scope"]

    def broken(value: Any) -> None:
        raise RuntimeError("hook failed")

    before = _errors.total()
    steps = _hotpath.steps_in_scope(_VAR, scoped(), "scope", broken)
    with pytest.raises(ValueError, match="failed"):  # the body's error, not the hook's
        next(steps)
    assert _errors.total() == before + 1
    _errors.take_for_line()  # not for the next test's line


# --- a middleware above hopwatch's answers itself (hopwatch.W002) ---------------------------

GATE = f"{__name__}.Gate"
GATED = {"ROOT_URLCONF": __name__, "MIDDLEWARE": [GATE, HW]}


def test_a_middleware_above_answering_logs_its_status_under_every_interface(db):
    with override_settings(**GATED), capture() as records:
        asgi = asgi_request("/closed/")
        async_client = asyncio.run(AsyncClient().get("/closed/"))
        wsgi_status, _body = wsgi_request("/closed/")
        client = Client().get("/closed/")
    assert (asgi.status, async_client.status_code, wsgi_status, client.status_code) == (
        418,
        418,
        "418 I'm a Teapot",
        418,
    )
    assert [(record.interface, record.status) for record in records] == [
        ("asgi", 418),
        ("test-async-client", 418),
        ("wsgi", 418),
        ("test-client", 418),
    ]


def test_below_it_the_middlewares_status_stays_under_every_interface(db):
    """What hopwatch's middleware named is kept, as under WSGI (the middleware above
    changes the response afterwards: hopwatch.W002's "not covered")."""
    with override_settings(**GATED), capture() as records:
        asgi = asgi_request("/created/")
        async_client = asyncio.run(AsyncClient().get("/created/"))
        wsgi_status, _body = wsgi_request("/created/")
    assert (asgi.status, async_client.status_code, wsgi_status) == (
        203,
        203,
        "203 Non-Authoritative Information",
    )
    assert [(record.interface, record.status) for record in records] == [
        ("asgi", 201),
        ("test-async-client", 201),
        ("wsgi", 201),
    ]


def test_with_hopwatch_first_the_handler_is_left_as_it_is():
    """Only where a middleware stands above hopwatch's does the handler look at the
    response its chain returns: first, the middleware names the status itself."""
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[HW]):
        assert "get_response_async" not in vars(ASGIHandler())
    with override_settings(**GATED):
        assert "get_response_async" in vars(ASGIHandler())


def test_under_opentelemetrys_middleware_the_handler_is_left_as_it_is():
    """OpenTelemetry's middleware may stand above hopwatch's (OTEL_SPANS needs it
    there; hopwatch.W002 does not count it): it calls the next middleware always."""
    pytest.importorskip("opentelemetry.instrumentation.django")
    from hopwatch.checks import OTEL_MIDDLEWARE_PATH

    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[OTEL_MIDDLEWARE_PATH, HW]):
        assert "get_response_async" not in vars(ASGIHandler())
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[OTEL_MIDDLEWARE_PATH, GATE, HW]):
        assert "get_response_async" in vars(ASGIHandler())


def test_a_body_stepping_its_own_iterator_is_refused_as_without_hopwatch(db):
    """A streaming body that steps its own response's iterator from within a step
    gets "generator already executing", as without hopwatch (Django's iterator is a
    generator), and goes on: its chunks all sent, and the line's status the 200 the
    client got. The C wrapper stepped the body again: the body ended at that error
    (its second chunk lost) and, the first step having raised, the line said 500."""
    _errors.reset_for_tests()
    with capture() as records:
        status, body = wsgi_request("/stream/reentrant/")
    assert (status, body) == ("200 OK", b"caught: generator already executing|second")
    assert [record.status for record in records] == [200]
    assert _errors.total() == 0


def test_an_empty_streaming_body_is_logged_with_its_status(db):
    """A class-based iterator whose first step ends it (StopIteration at once): an
    empty body, not a failed one; the client gets 200, and so does the line."""
    with capture() as records:
        status, body = wsgi_request("/stream/empty/")
    assert (status, body) == ("200 OK", b"")
    assert [record.status for record in records] == [200]
