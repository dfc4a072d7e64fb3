"""Django's real handlers behave exactly as without hopwatch.

Each scenario goes through a fresh ``ASGIHandler`` or ``WSGIHandler`` (and the
test clients) twice: with hopwatch, and with hopwatch uninstalled and its
middleware taken out. Everything the server, the client and the app can see is
compared: every ASGI message (status, headers, each body chunk and its
``more_body``), the WSGI status, headers and chunks, exceptions that escape
the handler, the request signals, Django's own error logging, and what the
probe views observe around their hops (threads, event loops, context
variables, ``asgiref.local.Local``, the database connection).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.test import AsyncClient, Client, override_settings

from tests.helpers import asgi_scope, capture, logged, wait_until, wsgi_environ
from tests.testapp import views
from tests.transparency.helpers import both, signal_log

HOPWATCH = "hopwatch.middleware.HopwatchMiddleware"
SYNC_ONLY = "tests.testapp.middleware.SyncOnlyMiddleware"
STACKS = {
    "startproject": list(settings.MIDDLEWARE),  # hopwatch first, then startproject's seven
    "hopwatch-only": [HOPWATCH],
    "sync-only-middleware": [HOPWATCH, SYNC_ONLY, *settings.DEFAULT_MIDDLEWARE[:3]],
}

#: (method, path, query, extra headers)
REQUESTS: list[tuple[str, str, str, tuple[tuple[bytes, bytes], ...]]] = [
    ("GET", "/async/", "", ()),
    ("GET", "/sync/", "", ()),
    ("GET", "/class/", "", ()),
    ("GET", "/hops/3/", "", ()),
    ("GET", "/nested/", "", ()),
    ("GET", "/decorated/", "", ()),
    ("GET", "/sleepy/", "s=0.01", ()),
    ("GET", "/stream/sync/", "", ()),
    ("GET", "/stream/async/", "", ()),
    ("GET", "/stress/stream/", "chunks=3&delay=0", ()),
    ("GET", "/stress/load/", "n=3&kind=nested", ()),
    ("GET", "/orm/loop/", "", ()),
    ("GET", "/orm/batch/", "", ()),
    ("GET", "/orm/count/", "", ()),
    ("GET", "/probe/async/", "", ()),
    ("GET", "/probe/sync/", "", ()),
    ("GET", "/error/", "", ()),
    ("GET", "/sync-error/", "", ()),
    ("GET", "/probe/raise-in-thread/", "", ()),
    ("GET", "/stress/stream-error/", "", ()),
    ("GET", "/stress/sync-stream-error/", "", ()),
    ("GET", "/no/such/page/", "", ()),
    ("GET", "/async", "q=1", ()),  # APPEND_SLASH redirect (CommonMiddleware)
    ("HEAD", "/async/", "", ()),
    ("POST", "/async/", "", ((b"content-type", b"application/x-www-form-urlencoded"),)),
    ("GET", "/async/", "", ((b"cookie", b"sessionid=not-a-session; csrftoken=x"),)),
]


@pytest.fixture(autouse=True)
def _urls_and_items(transactional_db):
    from tests.testapp.models import Item

    Item.objects.bulk_create([Item(name=n) for n in ("a", "b", "c")])
    with override_settings(ROOT_URLCONF="tests.transparency.urls"):
        yield


@contextmanager
def django_request_log() -> Iterator[list[tuple[str, str]]]:
    """What Django logs about requests (``django.request``: 4xx/5xx), as (level, message)."""
    with logged(
        "django.request", logging.DEBUG, lambda record: (record.levelname, record.getMessage())
    ) as seen:
        yield seen


_RANDOM_COOKIE_PARTS = re.compile(r"(csrftoken=|expires=)[^;]*")


def normal_headers(headers: Any) -> list[tuple[str, str]]:
    """Headers sorted, with the parts that differ on every response (a new CSRF token
    and its expiry date) replaced by a placeholder."""
    normal = []
    for name, value in headers:
        name = name.decode("latin-1") if isinstance(name, bytes) else name
        value = value.decode("latin-1") if isinstance(value, bytes) else value
        if name.lower() == "set-cookie":
            value = _RANDOM_COOKIE_PARTS.sub(r"\1<varies>", value)
        normal.append((name, value))
    return sorted(normal)


async def asgi_exchange(
    app: Any,
    method: str,
    path: str,
    query: str,
    headers: tuple[tuple[bytes, bytes], ...],
    disconnect_when: Callable[[list[Any]], bool] | None = None,
) -> dict[str, Any]:
    """One exchange; the client disconnects once ``disconnect_when(messages)`` is true."""
    messages: list[Any] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": b"", "more_body": False}
        if disconnect_when is not None:
            await wait_until(lambda: disconnect_when(messages))
            return {"type": "http.disconnect"}
        await asyncio.Future()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        messages.append(
            (
                message["type"],
                message.get("status"),
                normal_headers(message.get("headers", [])),
                message.get("body"),
                message.get("more_body"),
            )
        )

    raised = None
    try:
        await app(asgi_scope(path, method, query, headers), receive, send)
    except Exception as exc:
        raised = f"{type(exc).__name__}: {exc}"
    return {"messages": messages, "raised": raised}


def wsgi_exchange(
    method: str, path: str, query: str, headers: tuple[tuple[bytes, bytes], ...]
) -> dict[str, Any]:
    environ = wsgi_environ(path, method, query, {"Host": "testserver"})
    for name, value in headers:
        key = name.decode().upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = (
            value.decode()
        )
    seen: dict[str, Any] = {"chunks": [], "raised": None}

    def start_response(status: str, response_headers: Any, exc_info: Any = None) -> Any:
        seen["status"] = status
        seen["headers"] = normal_headers(response_headers)
        return lambda data: None

    response = WSGIHandler()(environ, start_response)
    try:
        for chunk in response:
            seen["chunks"].append(chunk)
    except Exception as exc:
        seen["raised"] = f"{type(exc).__name__}: {exc}"
    finally:
        response.close()
    return seen


def observe(interface: str, stack: str) -> dict[str, Any]:
    """Every request of REQUESTS through a fresh handler; everything observable."""
    observed: dict[str, Any] = {}
    with override_settings(MIDDLEWARE=STACKS[stack]) if stack else _nothing():
        for method, path, query, headers in REQUESTS:
            with signal_log() as signals, django_request_log() as logged:
                if interface == "asgi":
                    seen = asyncio.run(asgi_exchange(ASGIHandler(), method, path, query, headers))
                else:
                    seen = wsgi_exchange(method, path, query, headers)
            seen["signals"] = signals
            seen["django.request"] = logged
            observed[f"{method} {path}?{query}"] = seen
    return observed


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _strip_hopwatch(stack: list[str]) -> list[str]:
    return [m for m in stack if m != HOPWATCH]


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")
@pytest.mark.parametrize("stack", sorted(STACKS))
@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_handlers_behave_as_without_hopwatch(interface, stack):
    def scenario() -> dict[str, Any]:
        # Inside without_hopwatch() the settings' MIDDLEWARE has no hopwatch;
        # apply the same removal to the stack under test.
        middleware = STACKS[stack] if _hopwatch_on() else _strip_hopwatch(STACKS[stack])
        with override_settings(MIDDLEWARE=middleware):
            return observe(interface, "")

    with capture() as records:
        with_, without = both(scenario)
    differing = [key for key in with_ if with_[key] != without[key]]
    assert not differing, (
        f"{differing[0]}:\n with    {with_[differing[0]]}\n without {without[differing[0]]}"
    )
    assert with_ == without
    # The runs did something: every request answered or raised as expected...
    assert with_["GET /async/?"]["raised"] is None
    assert with_["GET /stress/stream-error/?"]["raised"].startswith("RuntimeError")
    # ... and hopwatch saw every request of the run with it, once.
    assert len(records) == len(REQUESTS)
    assert all(record.closed for record in records)


def _hopwatch_on() -> bool:
    import hopwatch

    return hopwatch.is_installed()


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")
def test_probes_see_the_same_threads_loops_and_context():
    """The probes' own reports, spelled out (the comparison above only says 'equal')."""

    def scenario() -> tuple[Any, Any]:
        with override_settings(MIDDLEWARE=settings.MIDDLEWARE):
            asgi = asyncio.run(asgi_exchange(ASGIHandler(), "GET", "/probe/async/", "", ()))
        return asgi["messages"][1][3], wsgi_exchange("GET", "/probe/sync/", "", ())["chunks"]

    with_, without = both(scenario)
    assert with_ == without
    import json

    report = json.loads(with_[0])
    assert report == {
        "thread_sensitive_same_thread": True,
        "off_the_loop": True,
        "pool_elsewhere": True,
        "same_db_connection": True,
        "in_thread": {
            "var": "set by the view",
            "local": "set by the view",
            "nested": {"same_loop": True, "loop_thread": True, "var": "set in the thread"},
        },
        "var_after": "set in the thread",
        "local_after": "set in the thread",
        "task": True,
    }
    assert json.loads(b"".join(with_[1])) == {
        "first": {"loop_thread_is_caller": False, "back_in_caller": True},
        "var": "set by the sync view",
    }


def _answered(messages: list[Any]) -> bool:
    return any(m[0] == "http.response.body" and not m[4] for m in messages)


# The client goes at the same point of the request in both runs (a delay would
# not be: a loaded machine runs one slower than the other): while the view's
# sync hop runs, while it awaits on the loop, after the whole response.
DISCONNECTS = {
    "/slow/": lambda messages: views.REACHED["slow"] > 0,
    "/sleepy/": lambda messages: views.REACHED["sleepy"] > 0,
    "/hops/2/": _answered,
}


@pytest.mark.parametrize(
    ("path", "query"), [("/slow/", ""), ("/sleepy/", "s=0.5"), ("/hops/2/", "")]
)
def test_client_disconnect_behaves_as_without_hopwatch(path, query):
    def scenario() -> dict[str, Any]:
        views.REACHED.clear()
        with signal_log() as signals:
            seen = asyncio.run(
                asgi_exchange(
                    ASGIHandler(), "GET", path, query, (), disconnect_when=DISCONNECTS[path]
                )
            )
        seen["signals"] = signals
        return seen

    with capture() as records:
        with_, without = both(scenario)
    assert with_ == without
    assert len(records) == 1 and records[0].closed


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")
def test_test_clients_behave_as_without_hopwatch():
    paths = [p for m, p, q, h in REQUESTS if m == "GET" and not h and "stream-error" not in p]

    def scenario() -> list[Any]:
        seen = []
        client, async_client = (
            Client(raise_request_exception=False),
            AsyncClient(raise_request_exception=False),
        )
        for path in paths:
            for response in (client.get(path), asyncio.run(async_client.get(path))):
                body = _content(response)
                seen.append((path, response.status_code, normal_headers(response.items()), body))
        return seen

    # In a thread of its own: the sync client closes an async streaming
    # response from another context, which leaves hopwatch's request scope set
    # in the calling context (see test_retention.py); keep that out of the
    # test process's main context.
    with capture() as records:
        with_, without = in_a_thread(lambda: both(scenario))
    assert with_ == without
    assert len(records) == 2 * len(paths)


def in_a_thread(function: Any) -> Any:
    result: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(function())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def _content(response: Any) -> bytes:
    if not response.streaming:
        return bytes(response.content)
    if getattr(response, "is_async", False):

        async def collect() -> bytes:
            return b"".join([chunk async for chunk in response.streaming_content])

        return asyncio.run(collect())
    return b"".join(response.streaming_content)
