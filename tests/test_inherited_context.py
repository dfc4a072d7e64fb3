"""A request whose task inherits another request's context, under a real server.

uvicorn pauses reading a connection while a large request body waits in its buffer
(flow control) and resumes from inside the request's own task, in ``receive()``.
asyncio's reader callback made then copies that task's context, and the next request
on the connection is started from that callback: it begins inside the upload's
context, asgiref's ThreadSensitiveContext and hopwatch's record with it. hopwatch
took the upload's record for an enclosing scope, and the upload's line counted the
next request's crossings too (``request_started: 2``, another view's ORM call).

The same in process, without the server: Django's ASGIHandler starts the next request
from inside the first one's ``receive()``, as uvicorn's callback does.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import pytest
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.test import override_settings

from hopwatch._recorder import unscoped
from tests.helpers import asgi_call, asgi_scope, capture
from tests.helpers import sites as sites_of
from tests.test_lifecycle import ROOT, _env, _lines

HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]


def test_a_request_started_inside_another_requests_receive_has_its_own_line():
    """A request begun in a task that inherited an open request's context (the
    ThreadSensitiveContext the first rides on): it is no child of the first, and each
    line counts its own request's crossings. Taken for an enclosing scope, the first's
    line counted both requests' crossings (5 hops, ``request_started`` twice); entered
    nowhere, the second's line was empty (0 hops, no route)."""

    async def main() -> None:
        read = False

        async def receive() -> dict:
            nonlocal read
            if read:
                await asyncio.Future()  # connected until cancelled
            read = True
            # The connection's next request, started from inside this one's task.
            following = await asyncio.create_task(asgi_call(ASGIHandler(), "/sync/"))
            assert following.status == 200
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            return None

        await ASGIHandler()(asgi_scope("/async/"), receive, send)

    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        asyncio.run(main())
    following, first = records
    assert (following.route, following.count, following.parent) == ("/sync/", 3, None)
    assert sites_of(following) == {
        ("signal", "request_started"): 1,
        ("view", "tests.testapp.views.sync_view"): 1,
        ("response", "HttpResponse.close"): 1,
    }
    assert (first.route, first.count, first.parent) == ("/async/", 2, None)
    assert sites_of(first) == {("signal", "request_started"): 1, ("response", "HttpResponse.close"): 1}

def test_another_apps_request_started_inside_receive_or_send_is_in_no_line():
    """A request of another app the server serves (FastAPI with Django mounted,
    a hand-written ASGI router), started from inside the Django request's
    ``receive`` (uvicorn resuming a connection after a large body) and ``send``
    (a pipelined request): its task inherits the Django request's context. Its
    crossings are outside any request, and the Django line counts its own only
    (it had 5 hops: the other app's 3 as kind ``other``)."""

    def noop() -> None:
        return None

    async def other_apps_request(hops: int) -> None:
        for _ in range(hops):
            await sync_to_async(noop)()

    async def main() -> None:
        read = False

        async def receive() -> dict:
            nonlocal read
            if read:
                await asyncio.Future()  # connected until cancelled
            read = True
            await asyncio.create_task(other_apps_request(2))
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                await asyncio.create_task(other_apps_request(1))

        await ASGIHandler()(asgi_scope("/async/"), receive, send)

    unscoped_before = len(unscoped)
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        asyncio.run(main())
    (first,) = records
    assert (first.route, first.count, first.parent) == ("/async/", 2, None)
    assert sites_of(first) == {("signal", "request_started"): 1, ("response", "HttpResponse.close"): 1}
    assert len(unscoped) - unscoped_before == 3


class _NextOnly:
    """A server's awaitable whose iterator has ``__next__`` only, no ``throw`` or
    ``close`` (granian's ``PyFutureAwaitable``)."""

    def __init__(self, future: asyncio.Future) -> None:
        self.future = future

    def __await__(self) -> _NextOnly:
        return self

    def __iter__(self) -> _NextOnly:
        return self

    def __next__(self) -> asyncio.Future:
        if not self.future.done():
            self.future._asyncio_future_blocking = True
            return self.future
        raise StopIteration(self.future.result())


@pytest.mark.parametrize("by_name", [False, True], ids=["positional", "keywords"])
def test_a_servers_awaitables_without_throw_and_its_keywords_are_taken_as_they_are(by_name):
    """A server whose ``receive`` returns an awaitable with no ``throw`` or ``close``
    (granian): Django cancels its disconnect listener, waiting in ``receive()``, after
    every response, and the handler returns as without hopwatch (awaited through C's
    ``then`` it raised AttributeError: no ``throw``). Daphne passes ``receive`` and
    ``send`` by name: a request started inside them is outside this one too."""

    def noop() -> None:
        return None

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        sent: list[str] = []
        calls = 0

        def receive() -> _NextOnly:
            nonlocal calls
            calls += 1
            future = loop.create_future()
            if calls == 1:
                future.set_result({"type": "http.request", "body": b"", "more_body": False})
            future._asyncio_future_blocking = False
            return _NextOnly(future)

        async def send(message: dict) -> None:
            sent.append(message["type"])
            if message["type"] == "http.response.start":
                await asyncio.create_task(sync_to_async(noop)())  # another app's request

        if by_name:
            await ASGIHandler()(scope=asgi_scope("/async/"), receive=receive, send=send)
        else:
            await ASGIHandler()(asgi_scope("/async/"), receive, send)
        return sent

    unscoped_before = len(unscoped)
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        sent = asyncio.run(main())
    assert sent == ["http.response.start", "http.response.body"]
    (record,) = records
    assert (record.route, record.count) == ("/async/", 2)
    assert len(unscoped) - unscoped_before == 1


_URLS = """
from django.contrib.auth.models import User
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt


async def one_query(request):
    return JsonResponse({"n": await User.objects.acount()})


@csrf_exempt
async def upload(request):
    return JsonResponse({"n": len(request.body)})


urlpatterns = [path("q/", one_query), path("upload/", upload)]
"""

#: A uvicorn server of APPLICATION on 127.0.0.1 and its client thread (CLIENT), in a
#: process of its own; it prints what the client gathered in ``result``.
_SERVER = """
import http.client, json, socket, threading, time
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0, run_syncdb=True)
import uvicorn
APPLICATION_IMPORT

server = uvicorn.Server(uvicorn.Config(
    APPLICATION, host="127.0.0.1", port=0, lifespan="off", log_level="warning",
    http="h11", timeout_graceful_shutdown=5,
))
result = []

def client():
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
CLIENT
    finally:
        server.should_exit = True

threading.Thread(target=client, daemon=True).start()
timer = threading.Timer(90, lambda: setattr(server, "should_exit", True))
timer.daemon = True  # a lifetime, not a wait: the process ends when the server does
timer.start()
server.run()
print(json.dumps(result))
"""


def _server(application_import: str, application: str, client: str) -> str:
    """:data:`_SERVER` with its application and its client's body (indented 8)."""
    return (
        _SERVER.replace("APPLICATION_IMPORT", application_import)
        .replace("APPLICATION", application)
        .replace("CLIENT", textwrap.indent(textwrap.dedent(client), " " * 8))
    )


_SERVE = _server(
    "from django.core.asgi import get_asgi_application",
    "get_asgi_application()",
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # keep-alive
    try:
        for _ in range(12):
            for method, url, body in (("GET", "/q/", None), ("POST", "/upload/", b"x" * 200_000)):
                connection.request(method, url, body=body)
                response = connection.getresponse()
                response.read()
                result.append(response.status)
    finally:
        connection.close()
    """,
)


def _sites(line: dict) -> dict[str, int]:
    return {site["site"]: site["count"] for site in line["sites"]}


def _serve(tmp_path, pure: bool, script: str, printed: list[int]) -> list[dict]:
    """Run ``script`` (a uvicorn server and its client, in a process of its own) on
    ``_URLS`` with a SQLite database; it must print ``printed``. The lines written."""
    pytest.importorskip("uvicorn")
    out = tmp_path / "lines.log"
    env = _env(tmp_path, {"OUTPUT": str(out), "SITES_LIMIT": 100})
    (tmp_path / "inherit_urls.py").write_text(_URLS)
    (tmp_path / "inherit_settings.py").write_text(
        "from lifecycle_settings import *  # noqa: F403\n"
        "ROOT_URLCONF = 'inherit_urls'\n"
        f"DATABASES = {{'default': {{'ENGINE': 'django.db.backends.sqlite3',"
        f" 'NAME': {str(tmp_path / 'db.sqlite3')!r}}}}}\n"
    )
    env["DJANGO_SETTINGS_MODULE"] = "inherit_settings"
    if pure:
        env["HOPWATCH_PURE_PYTHON"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == printed
    return _lines(out)


@pytest.mark.slow
@pytest.mark.parametrize("pure", [False, True], ids=["c", "pure"])
def test_the_request_after_an_upload_on_a_kept_alive_connection_has_its_own_line(
    tmp_path, pure
):
    """12 rounds of a GET with one async ORM call and a 200 KB POST on one kept-alive
    connection under uvicorn: each line counts its own request's crossings only (the
    upload's line had ``request_started`` twice and the GET's ``QuerySet.acount`` in
    10 of 20 rounds on Python 3.13)."""
    lines = _serve(tmp_path, pure, _SERVE, [200] * 24)
    assert len(lines) == 24
    gets = [_sites(line) for line in lines if line["route"] == "/q/"]
    uploads = [_sites(line) for line in lines if line["route"] == "/upload/"]
    assert len(gets) == len(uploads) == 12
    # Every request once: its own request_started, its own response's close.
    for sites in [*gets, *uploads]:
        assert sites.get("request_started") == 1, sites
    assert all(sites.get("QuerySet.acount") == 1 for sites in gets), gets
    assert not any("QuerySet.acount" in sites for sites in uploads), uploads
    # Each endpoint's lines alike: the same crossings, round after round.
    assert len({json.dumps(sites, sort_keys=True) for sites in gets}) == 1, gets
    assert len({json.dumps(sites, sort_keys=True) for sites in uploads}) == 1, uploads


_ROUTER = """
from asgiref.sync import sync_to_async
from django.core.asgi import get_asgi_application

django_application = get_asgi_application()


def api_work():
    return None


async def application(scope, receive, send):
    # Another app beside Django (as FastAPI with Django mounted under it).
    if scope["type"] == "http" and scope["path"].startswith("/api/"):
        await sync_to_async(api_work)()
        await sync_to_async(api_work)()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"api"})
        return
    await django_application(scope, receive, send)
"""

_SERVE_PIPELINED = _server(
    "from router import application",
    "application",
    """
    for _ in range(6):
        # Two requests in one write: the second is started from the first's send.
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            connection.sendall(
                b"GET /q/ HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n"
                b"GET /api/ HTTP/1.1\\r\\nHost: t\\r\\nConnection: close\\r\\n\\r\\n"
            )
            data = b""
            while chunk := connection.recv(65536):
                data += chunk
        result.append(data.count(b"HTTP/1.1 200"))
    """,
)


@pytest.mark.slow
@pytest.mark.parametrize("pure", [False, True], ids=["c", "pure"])
def test_another_apps_pipelined_request_is_not_counted_in_the_django_line(tmp_path, pure):
    """uvicorn serving Django beside another ASGI app (a router sending ``/api/`` to
    its own endpoint, as FastAPI does with Django mounted under it); each
    connection's two requests arrive in one write, and uvicorn starts the second
    from inside the first's ``send``: 6 Django lines, each with its own crossings
    only (each had the other app's two ``api_work`` crossings, kind ``other``)."""
    (tmp_path / "router.py").write_text(_ROUTER)
    lines = _serve(tmp_path, pure, _SERVE_PIPELINED, [2] * 6)
    assert [line["route"] for line in lines] == ["/q/"] * 6
    for line in lines:
        sites = _sites(line)
        assert "api_work" not in json.dumps(line), sites
        assert sites.get("request_started") == 1 and sites.get("QuerySet.acount") == 1, sites
    assert len({json.dumps(_sites(line), sort_keys=True) for line in lines}) == 1
