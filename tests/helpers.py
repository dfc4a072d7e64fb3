"""Drive Django's real handlers in-process and capture hopwatch's request records."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib
import io
import json
import logging
import os
import pty
import struct
import subprocess
import sys
import termios
import textwrap
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler

from hopwatch._recorder import RequestRecord, add_sink, remove_sink


@contextlib.contextmanager
def logged(
    name: str, level: int, item: Callable[[logging.LogRecord], Any] = logging.LogRecord.getMessage
) -> Iterator[list[Any]]:
    """What the logger ``name`` logs at ``level`` or above inside the block, each record
    as ``item`` makes it (its message, by default)."""
    seen: list[Any] = []
    handler = logging.Handler(level)
    handler.emit = lambda record: seen.append(item(record))  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)


#: A package's MiddlewareMixin subclass with a sync process_request (``.format(name=…)``).
MIXIN_MODULE = (
    "from django.utils.deprecation import MiddlewareMixin\n\n\n"
    "class {name}(MiddlewareMixin):\n"
    "    def process_request(self, request):\n"
    "        return None\n"
)


@contextlib.contextmanager
def package_on_path(root: Path, name: str, modules: Mapping[str, str]) -> Iterator[None]:
    """A package ``name`` of ``modules`` (module name -> source) written under ``root``
    and importable inside the block (``root`` first on sys.path); its modules forgotten
    after. ``root`` a ``site-packages`` directory: the audit counts it third-party."""
    package = root / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for module, source in modules.items():
        (package / f"{module}.py").write_text(source)
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for loaded in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            del sys.modules[loaded]


@contextlib.contextmanager
def capture() -> Iterator[list[RequestRecord]]:
    """Collect every request record closed inside the block."""
    records: list[RequestRecord] = []
    add_sink(records.append)
    try:
        yield records
    finally:
        remove_sink(records.append)


@dataclass
class AsgiResult:
    status: int | None = None
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def asgi_scope(path: str, method: str = "GET", query: str = "", headers: Any = ()) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }


async def asgi_call(
    app: Any,
    path: str,
    method: str = "GET",
    query: str = "",
    headers: Any = (),
    disconnect_after: float | None = None,
    body: Sequence[bytes] = (),
    disconnect_when: Callable[[], bool] | None = None,
) -> AsgiResult:
    """One request through an ASGI app, as a server would make it.

    ``body``: the request body's chunks, one ``http.request`` message each.
    The client disconnects ``disconnect_after`` seconds after Django starts
    listening for it, or as soon as ``disconnect_when()`` is true.
    """
    result = AsgiResult()
    chunks = list(body) or [b""]
    sent_body = False

    async def receive() -> dict:
        nonlocal sent_body
        if not sent_body:
            chunk = chunks.pop(0)
            sent_body = not chunks
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        if disconnect_after is not None:
            await asyncio.sleep(disconnect_after)
            return {"type": "http.disconnect"}
        if disconnect_when is not None:
            await wait_until(disconnect_when)
            return {"type": "http.disconnect"}
        await asyncio.Future()  # a client that stays connected until cancelled
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            result.status = message["status"]
            result.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            result.body += message.get("body", b"")

    await app(asgi_scope(path, method, query, headers), receive, send)
    return result


async def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``condition`` on the loop until it is true (AssertionError after ``timeout``).

    For tests that must act at a point in a request's progress: a fixed delay
    is a guess a loaded machine does not keep to.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {condition!r}")
        await asyncio.sleep(0.002)


def asgi_request(path: str, **kwargs: Any) -> AsgiResult:
    """One request through a fresh ``ASGIHandler`` (it reads MIDDLEWARE when made)."""
    return asyncio.run(asgi_call(ASGIHandler(), path, **kwargs))


def wsgi_environ(
    path: str, method: str = "GET", query: str = "", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A WSGI environ as a server builds it; ``headers`` by their HTTP names."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in (headers or {}).items():
        environ[f"HTTP_{name.upper().replace('-', '_')}"] = value
    return environ


def wsgi_request(path: str, method: str = "GET", query: str = "") -> tuple[str, bytes]:
    """One request through a fresh ``WSGIHandler``, iterated and closed like a server."""
    status, _headers, body = wsgi_call(wsgi_environ(path, method, query))
    return status, body


def wsgi_call(environ: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    """``environ`` through a fresh ``WSGIHandler``, iterated and closed like a server:
    the status line, the headers (names in lower case) and the body."""
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        started.append((status, headers))
        return lambda data: None

    response = WSGIHandler()(environ, start_response)
    try:
        body = b"".join(response)
    finally:
        response.close()
    status, headers = started[0]
    return status, {name.lower(): value for name, value in headers}, body


def causes(record: RequestRecord) -> dict[tuple[str, str, str | None], int]:
    """{(kind, site, call_site): count} of a record, both directions summed."""
    counts: dict[tuple[str, str, str | None], int] = {}
    for cause, stats in record.top_causes():
        key = (cause.kind, cause.site, cause.call_site)
        counts[key] = counts.get(key, 0) + stats.count
    return counts


def sites(record: RequestRecord) -> dict[tuple[str, str], int]:
    """{(kind, site): count} of a record, both directions summed."""
    counts: dict[tuple[str, str], int] = {}
    for cause, stats in record.top_causes():
        key = (cause.kind, cause.site)
        counts[key] = counts.get(key, 0) + stats.count
    return counts


def in_terminal(
    command: Sequence[str], env: dict[str, str], columns: int | None = None
) -> tuple[int, bytes, str]:
    """Run ``command`` with its stdout on a real terminal (a pty), ``columns`` wide if
    given: (exit status, what it wrote to the terminal, its stderr)."""
    main, secondary = pty.openpty()
    if columns is not None:
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    process = subprocess.Popen(
        list(command), stdin=subprocess.DEVNULL, stdout=secondary, stderr=subprocess.PIPE, env=env
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    status = process.wait(timeout=120)
    stderr = process.stderr.read().decode() if process.stderr else ""
    return status, b"".join(chunks), stderr


# --- stepping an awaitable every way Python does --------------------------------------


@types.coroutine
def delegated(awaitable: Any) -> Any:
    """``yield from`` its ``__await__()``: what ``await`` does, written out."""
    return (yield from awaitable.__await__())


@types.coroutine
def stop_of(awaitable: Any, step: Callable[[Any], Any]) -> Any:
    """Its ``__await__()`` stepped with ``step`` (each yield passed on to the loop),
    to the StopIteration it ends with, returned (not raised)."""
    iterator = awaitable.__await__()
    while True:
        try:
            yielded = step(iterator)
        except StopIteration as stop:
            return stop
        yield yielded


@types.coroutine
def stepped_by_hand(awaitable: Any, step: Callable[[Any], Any]) -> Any:
    """:func:`stop_of`, as ("stopped", its value, its args)."""
    stop = yield from stop_of(awaitable, step)
    return "stopped", stop.value, stop.args


#: The ways to step an iterator by hand: ``__next__()``, ``next()``, ``send(None)``.
STEPS: list[Callable[[Any], Any]] = [lambda it: it.__next__(), next, lambda it: it.send(None)]


def check_and_one_request(
    prelude: str, seen: str, pythonpath: Sequence[str], cwd: Any, **env: str
) -> tuple[dict[str, Any], str]:
    """In a new interpreter (tests.settings): ``prelude``, django.setup(),
    ``manage.py check`` (its messages on stderr), then one request through hopwatch's
    middleware. Returns ({"seen": eval of ``seen``, "status", "hops"}, stderr)."""
    script = textwrap.dedent(
        f"""
        import asyncio, json
        {prelude}
        import django
        django.setup()
        from django.core.management import call_command
        from django.test import AsyncClient, override_settings
        from tests.helpers import capture

        call_command("check")
        with override_settings(MIDDLEWARE=["hopwatch.middleware.HopwatchMiddleware"]):
            with capture() as records:
                status = asyncio.run(AsyncClient().get("/async/")).status_code
        print(json.dumps({{"seen": {seen}, "status": status,
                          "hops": [len(r) for r in records]}}))
        """
    )
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(pythonpath),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=environ, cwd=cwd, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def into_a_full_file(command: list[str], stdout_path: Any, **kwargs: Any) -> Any:
    """Run ``command`` with its standard output a file that stops at 100 bytes, as on a
    full disk (a write fails with EFBIG: SIGXFSZ ignored, RLIMIT_FSIZE set in the child)."""
    import resource
    import signal
    import subprocess

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))

    with open(stdout_path, "wb") as stdout:
        return subprocess.run(
            command, stdout=stdout, stderr=subprocess.PIPE, preexec_fn=limit, check=False, **kwargs
        )


def ends_with_this_process() -> Callable[[], None] | None:
    """``preexec_fn`` for a server a test starts: the server gets SIGTERM when this
    process ends, however it ends (Linux's parent-death signal), so a test run killed
    with SIGTERM or SIGKILL leaves no server behind (one was found running 90 minutes
    after). None where there is no such signal."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import signal

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the test process ended before the call
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def start_server(command: list[str], env: dict[str, str], stderr: Any, cwd: Any) -> Any:
    """A server process for a test: stdout dropped, stderr to the file ``stderr``
    (read it when the server fails), ended with this process
    (:func:`ends_with_this_process`). Stop it with :func:`stop_server`."""
    with open(stderr, "wb") as err:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=ends_with_this_process(),
        )


def stop_server(server: Any, wait: float = 20) -> None:
    """End a server a test started: SIGTERM, up to ``wait`` seconds to shut down, then
    SIGKILL."""
    server.terminate()
    try:
        server.wait(wait)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(10)


def with_the_reader_gone(command: list[str], timeout: float, **kwargs: Any) -> tuple[int, str]:
    """Run ``command`` with its standard output a pipe whose reader has left, as under
    ``| head -1`` once it has its line (every write fails): its status and stderr."""
    import subprocess

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    err = process.stderr.read().decode()
    return process.wait(timeout=timeout), err


def without_pytests_log_capture(*names: str) -> None:
    """Take pytest's log-capture handler off the loggers ``names`` and the ancestors they
    propagate to, for the rest of the test's phase. pytest 9.2 adds it to every logger
    that does not propagate, as each test starts: on hopwatch's line logger a handler
    before the test's own, which writes every line (so a line the test's handler fails
    on was written, and is no error) and keeps each line's LogRecord (objects for the
    collector); on the ``hopwatch`` logger it keeps the records of hopwatch's warnings,
    their exceptions with them."""
    for name in names:
        logger: logging.Logger | None = logging.getLogger(name)
        while logger is not None:
            for handler in list(logger.handlers):
                if type(handler).__module__.startswith("_pytest."):
                    logger.removeHandler(handler)  # (pytest's own removal: a no-op)
            logger = logger.parent if logger.propagate else None
