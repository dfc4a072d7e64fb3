"""What a sync handler's request counts after the handler returned: the server's
reading and closing of the response, nothing else.

The WSGI handler returns the response before the server sends it; the request's
record waits for its close. It used to stay the current scope of the calling
context until then: whatever ran there next was counted in the request (a test
that calls ``WSGIHandler()`` and leaves the response unclosed, then an ``async``
test's ``AsyncClient`` request: the WSGI line counted the harness's
``async_to_sync`` and all the other request's hops, which its own line counted
too). The sync test ``Client`` left the scope, but took only each step of an
async iterator's content in the request's scope, not Django's
``StreamingHttpResponse.__iter__``, whose one ``async_to_sync`` consumes it: the
line said 0 hops where a WSGI server's said 1.
"""

from __future__ import annotations

import contextvars
import gc
import inspect
import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
import warnings
import weakref
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished
from django.http import HttpResponse, StreamingHttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path

from hopwatch import _hotpath, _hotpath_py
from hopwatch._django_scope import _awaiting_close
from hopwatch._recorder import current_scope
from hopwatch.testing import count_hops
from tests.helpers import capture, ends_with_this_process, sites, stop_server, wsgi_environ
from tests.test_lifecycle import _free_port

ROOT = Path(__file__).resolve().parent.parent


def _noop() -> None:
    return None


async def _anoop() -> None:
    return None


async def _achunks():
    yield b"a"
    yield b"b"


def _sync_chunks():
    for chunk in (b"a", b"b"):
        async_to_sync(_anoop)()  # a hop per chunk
        yield chunk


def plain_view(request):
    return HttpResponse("plain")


def two_hops_view(request):
    async_to_sync(_anoop)()
    async_to_sync(_anoop)()
    return HttpResponse("two")


def async_iterator_view(request):
    return StreamingHttpResponse(_achunks())


def sync_iterator_view(request):
    return StreamingHttpResponse(_sync_chunks())


def _including_chunks():
    """A body that includes a sub-request's response (an ESI-style include): the
    WSGI application called from inside the body, then a hop of its own."""
    yield b"a"
    included = WSGIHandler()(wsgi_environ("/two-hops/"), _start_response)
    yield b"".join(included)
    included.close()
    async_to_sync(_anoop)()
    yield b"b"


def including_view(request):
    return StreamingHttpResponse(_including_chunks())


urlpatterns = [
    path("including/", including_view),
    path("plain/", plain_view),
    path("two-hops/", two_hops_view),
    path("async-iterator/", async_iterator_view),
    path("sync-iterator/", sync_iterator_view),
]

SETTINGS = {"ROOT_URLCONF": __name__, "MIDDLEWARE": ["hopwatch.middleware.HopwatchMiddleware"]}

ASYNC_ITERATOR = ("stream", "StreamingHttpResponse (async iterator)")
OWN = ("other", f"{__name__}._anoop")
CLOSE = ("signal", "request_finished")


def _start_response(status, headers, exc_info=None):
    return lambda data: None


async def _receiver(sender, **kwargs):  # an async receiver: a hop under a sync handler
    return None


async def _an_async_test() -> int:
    """An ``async def`` test, as Django's runner runs it (through async_to_sync)."""
    response = await AsyncClient().get("/two-hops/")
    return int(response.status_code)


# --- fault 1: the WSGI request's line took later, unrelated hops ----------------------------


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")
def test_a_wsgi_response_left_unclosed_counts_none_of_what_runs_after_the_handler(db):
    """Django's handlers tests call WSGIHandler() and leave the response unclosed;
    the next test, an async one, makes an AsyncClient request. Its line counted its
    own hops; the WSGI line counted them again, with the harness's async_to_sync."""
    request_finished.connect(_receiver)
    try:
        with override_settings(**SETTINGS), capture() as records:
            held = WSGIHandler()(wsgi_environ("/plain/"), _start_response)
            assert async_to_sync(_an_async_test)() == 200
            assert [record.interface for record in records] == ["test-async-client"]
            assert b"".join(held) == b"plain"
            held.close()  # as the server would, late: its hops are the request's
    finally:
        request_finished.disconnect(_receiver)
    client, wsgi = records
    assert (wsgi.interface, wsgi.route) == ("wsgi", "/plain/")
    assert sites(wsgi) == {CLOSE: 1}  # was: the harness's hop and all of the other request's too
    assert sites(client) == {
        ("signal", "request_started"): 1,
        ("view", f"{__name__}.two_hops_view"): 1,
        OWN: 2,
        ("response", "HttpResponse.close"): 1,
        CLOSE: 1,
    }
    assert len(wsgi) == 1 and len(client) == 6
    assert not _awaiting_close


def test_a_wsgi_response_iterated_and_closed_after_other_work_counts_only_its_own(db):
    """A streaming response's chunks and close, taken by the caller after it did
    other work in the same context: the chunks' hops and the close's are the
    request's, the work in between is not."""
    request_finished.connect(_receiver)
    try:
        with override_settings(**SETTINGS), capture() as records:
            response = WSGIHandler()(wsgi_environ("/sync-iterator/"), _start_response)
            async_to_sync(_anoop)()  # the caller's own hop
            chunks = iter(response)
            assert next(chunks) == b"a"
            async_to_sync(_anoop)()  # the caller's, between two chunks
            assert list(chunks) == [b"b"]
            async_to_sync(_anoop)()  # the caller's, before the close
            assert records == []
            response.close()
            async_to_sync(_anoop)()  # the caller's, after the close
    finally:
        request_finished.disconnect(_receiver)
    (record,) = records
    assert sites(record) == {OWN: 2, CLOSE: 1}
    assert not _awaiting_close


def test_a_wsgi_response_left_open_across_the_threads_next_request_is_finished_by_its_close(db):
    """The record of a response the caller has not closed yet does not ride in the
    context, and the thread's next sync request (here the test Client's) leaves it
    open: it used to finish it there (``response_closed: false``, the late close's
    hop lost). It is finished by its own close and counts none of the other's hops."""
    request_finished.connect(_receiver)
    try:
        with override_settings(**SETTINGS), capture() as records:
            first = WSGIHandler()(wsgi_environ("/plain/"), _start_response)
            assert Client().get("/two-hops/").status_code == 200
            assert [record.route for record in records] == ["/two-hops/"]
            first.close()  # late: its close's hop is still the request's
    finally:
        request_finished.disconnect(_receiver)
    client, first_line = records
    assert (first_line.route, first_line.interface) == ("/plain/", "wsgi")
    assert sites(first_line) == {CLOSE: 1}
    assert "response_closed" not in (first_line.extra or {})
    assert (client.route, client.interface, sites(client)) == (
        "/two-hops/",
        "test-client",
        {OWN: 2, CLOSE: 1},
    )
    assert not _awaiting_close


# --- a single-threaded event-loop server (bjoern, meinheld) ----------------------------------
#
# It serves every connection in one thread and calls the application for one
# connection's request before it closes another's response: A called, B called,
# B closed, A closed. A's next request in the thread (B) used to finish A as a
# response its server never closed: A's line was written at B's start with
# ``response_closed: false``, its duration stopped there, and every hop A made
# after it (its close's, its later chunks') went to no line.


def test_a_single_threaded_servers_request_lasts_until_its_own_close(db):
    """bjoern's order, one thread, Django's WSGIHandler: A's close, after B's, is A's:
    its async ``request_finished`` receiver's hop counted, no ``response_closed``,
    and its duration runs to its close."""
    request_finished.connect(_receiver)
    handler = WSGIHandler()
    try:
        with override_settings(**SETTINGS), capture() as records:
            first = handler(wsgi_environ("/plain/"), _start_response)  # A
            second = handler(wsgi_environ("/two-hops/"), _start_response)  # B
            assert records == []  # was: A's line, written here
            assert b"".join(second) == b"two"
            second.close()
            assert [record.route for record in records] == ["/two-hops/"]
            assert b"".join(first) == b"plain"
            time.sleep(0.3)
            first.close()
            closed_ns = time.perf_counter_ns()
    finally:
        request_finished.disconnect(_receiver)
    b_line, a_line = records
    assert (a_line.route, a_line.interface) == ("/plain/", "wsgi")
    assert (b_line.route, b_line.interface) == ("/two-hops/", "wsgi")
    assert sites(a_line) == {CLOSE: 1} and len(a_line) == 1  # was: {} and 0
    assert sites(b_line) == {OWN: 2, CLOSE: 1} and len(b_line) == 3
    assert "response_closed" not in (a_line.extra or {})  # was: False
    assert "response_closed" not in (b_line.extra or {})
    assert a_line.duration_ns >= 300_000_000  # was: stopped at B's start
    assert b_line.ended_ns <= a_line.ended_ns <= closed_ns
    assert not _awaiting_close


def _three_sync_chunks():
    for chunk in (b"a", b"b", b"c"):
        async_to_sync(_anoop)()  # a hop per chunk
        yield chunk


def three_chunks_view(request):
    return StreamingHttpResponse(_three_sync_chunks())


urlpatterns.append(path("three-chunks/", three_chunks_view))


def test_a_single_threaded_servers_stream_keeps_the_chunks_read_after_another_request(db):
    """bjoern's order, one thread, Django's WSGIHandler: A, a sync stream whose chunks
    each make an async_to_sync hop, read one chunk; B served whole in between; then
    A read to its end and closed. A's line counts its three chunks' hops and its
    close's, B's only its own."""
    request_finished.connect(_receiver)
    handler = WSGIHandler()
    try:
        with override_settings(**SETTINGS), capture() as records:
            stream = handler(wsgi_environ("/three-chunks/"), _start_response)  # A
            chunks = iter(stream)
            assert next(chunks) == b"a"
            second = handler(wsgi_environ("/two-hops/"), _start_response)  # B
            assert b"".join(second) == b"two"
            second.close()
            assert [record.route for record in records] == ["/two-hops/"]
            assert list(chunks) == [b"b", b"c"]
            stream.close()
    finally:
        request_finished.disconnect(_receiver)
    b_line, a_line = records
    assert (a_line.route, a_line.interface) == ("/three-chunks/", "wsgi")
    assert sites(a_line) == {OWN: 3, CLOSE: 1} and len(a_line) == 4  # was: {OWN: 1}
    assert sites(b_line) == {OWN: 2, CLOSE: 1} and len(b_line) == 3
    assert "response_closed" not in (a_line.extra or {})  # was: False
    assert b_line.ended_ns <= a_line.ended_ns
    assert not _awaiting_close


# --- fault 2: an async iterator's one hop, read by the sync test Client -----------------------


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")
def test_the_test_clients_line_counts_an_async_iterators_hop_as_the_wsgi_handlers(db):
    """Django's StreamingHttpResponse.__iter__ consumes an async iterator at once, in
    one async_to_sync: the test Client's line counted 0, the WSGI handler's 1."""
    with override_settings(**SETTINGS), capture() as records:
        wsgi = WSGIHandler()(wsgi_environ("/async-iterator/"), _start_response)
        assert b"".join(wsgi) == b"ab"
        wsgi.close()
        response = Client().get("/async-iterator/")
        assert len(records) == 1  # waits for its response's close
        async_to_sync(_anoop)()  # the test's own hop, not the request's
        assert b"".join(response) == b"ab"  # Django's wrapper closes it at the end
    served, client = records
    assert (served.interface, client.interface) == ("wsgi", "test-client")
    assert sites(served) == sites(client) == {ASYNC_ITERATOR: 1}
    assert "response_closed" not in (client.extra or {})
    assert not _awaiting_close


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")
def test_a_wsgi_servers_close_of_an_async_iterators_response_is_the_requests(db):
    """A WSGI server reads an async iterator's content (Django consumes it at once,
    in one async_to_sync) and closes the response later: the request was not
    finished by the reading, so the close's hop (an async request_finished
    receiver) is counted, and the line lasts until the close."""
    request_finished.connect(_receiver)
    try:
        with override_settings(**SETTINGS), capture() as records:
            response = WSGIHandler()(wsgi_environ("/async-iterator/"), _start_response)
            assert b"".join(response) == b"ab"
            assert records == []  # read, not closed: the request is not over
            time.sleep(0.3)
            response.close()
    finally:
        request_finished.disconnect(_receiver)
    (record,) = records
    assert (record.interface, record.route) == ("wsgi", "/async-iterator/")
    assert sites(record) == {ASYNC_ITERATOR: 1, CLOSE: 1}
    assert record.duration_ns >= 300_000_000
    assert "response_closed" not in (record.extra or {})
    assert not _awaiting_close


# --- under a real WSGI server ----------------------------------------------------------------

_SERVER = """
    import sys
    import django
    django.setup()
    from wsgiref.simple_server import WSGIRequestHandler, make_server
    from django.core.wsgi import get_wsgi_application

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", int(sys.argv[1]), get_wsgi_application(), handler_class=Quiet)
    print("serving", flush=True)
    server.serve_forever()
"""

_SERVER_SETTINGS = """
    import json, os, warnings
    from tests.settings import *  # noqa: F403
    ROOT_URLCONF = "tests.test_wsgi_scope"
    MIDDLEWARE = ["hopwatch.middleware.HopwatchMiddleware"]
    HOPWATCH = {"OUTPUT": os.environ["SCOPE_LOG"]}
    warnings.filterwarnings("ignore", "StreamingHttpResponse must consume")
"""


def _serve(tmp_path: Path, paths: list[str]) -> list[dict[str, Any]]:
    """``paths`` requested from wsgiref on 127.0.0.1 in a process of its own: the
    bodies checked, the lines it wrote."""
    (tmp_path / "scope_settings.py").write_text(textwrap.dedent(_SERVER_SETTINGS))
    log = tmp_path / "hops.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT), str(ROOT / "src")])
    env["DJANGO_SETTINGS_MODULE"] = "scope_settings"
    env["SCOPE_LOG"] = str(log)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_SERVER), str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ends_with_this_process(),
    )
    try:
        assert server.stdout is not None and server.stdout.readline() == "serving\n"
        for url_path in paths:
            url = f"http://127.0.0.1:{port}{url_path}"
            with urllib.request.urlopen(url, timeout=20) as answer:
                assert answer.read() == b"ab"
        deadline = time.monotonic() + 20
        lines: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            lines = [json.loads(line) for line in log.read_text().splitlines()]
            if len(lines) == len(paths):
                break
            time.sleep(0.05)
        return lines
    finally:
        stop_server(server, 20)


def _line_sites(line: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {(site["kind"], site["site"]): site["count"] for site in line["sites"]}


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")
def test_a_real_wsgi_servers_lines_and_the_test_clients_count_alike(tmp_path, db):
    """wsgiref on 127.0.0.1: the async iterator's hop and each sync chunk's hop are
    the request's, as the server reads the body; the test Client's lines the same."""
    lines = _serve(tmp_path, ["/async-iterator/", "/sync-iterator/"])
    assert [(line["interface"], line["route"], line["hops"]) for line in lines] == [
        ("wsgi", "/async-iterator/", 1),
        ("wsgi", "/sync-iterator/", 2),
    ]
    assert [_line_sites(line) for line in lines] == [{ASYNC_ITERATOR: 1}, {OWN: 2}]
    with override_settings(**SETTINGS), capture() as records:
        for url_path in ("/async-iterator/", "/sync-iterator/"):
            assert b"".join(Client().get(url_path)) == b"ab"
    assert [sites(record) for record in records] == [{ASYNC_ITERATOR: 1}, {OWN: 2}]


# --- the iteration's wrappers: no frame of hopwatch's, nothing kept ---------------------------


def test_djangos_async_iterator_warning_names_the_line_that_read_the_response(db):
    """Django warns (``stacklevel=2``) that a StreamingHttpResponse consumes an async
    iterator. hopwatch's ``__iter__`` is a C wrapper with no frame of its own: the
    warning names the line that iterated the response, as it does without hopwatch
    (a filter by module, or ``-W error`` for the project's own code, still applies).
    The pure-Python path adds a frame: its warning names hopwatch (docs/faq.md)."""
    with override_settings(**SETTINGS), capture() as records:
        response = WSGIHandler()(wsgi_environ("/async-iterator/"), _start_response)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
            body = b"".join(response)
        response.close()
    assert body == b"ab"
    assert sites(records[0]) == {ASYNC_ITERATOR: 1}
    [warning] = [w for w in caught if "must consume" in str(w.message)]
    if _hotpath.IMPLEMENTATION == "c":
        assert (warning.filename, warning.lineno) == (__file__, line)
    else:
        assert warning.filename == _hotpath_py.__file__


def test_the_patched_iter_reads_as_djangos():
    patched = StreamingHttpResponse.__dict__["__iter__"]
    original = patched.__wrapped__
    assert original.__module__ == "django.http.response"
    assert (patched.__name__, patched.__qualname__, patched.__doc__) == (
        "__iter__",
        "StreamingHttpResponse.__iter__",
        original.__doc__,
    )
    response = StreamingHttpResponse([b"a", b"b"])
    assert b"".join(iter(response)) == b"ab"  # no request waits: Django's own, as is


class _Kept:
    pass


def test_a_bodys_steps_each_run_in_the_scope_and_the_end_lets_go_of_both():
    """``_hotpath.steps_in_scope`` (how a streaming body is read in its request's
    scope): each step sees the value, the reader's code between steps does not;
    an error ends it as a generator's does; once it ended it keeps neither the
    iterator nor the value."""
    var: ContextVar[Any] = ContextVar("hopwatch_test_steps", default=None)
    seen: list[str] = []

    class Body:
        def __init__(self) -> None:
            self.steps = 0

        def __iter__(self) -> Body:
            return self

        def __next__(self) -> bytes:
            seen.append(type(var.get()).__name__)
            self.steps += 1
            if self.steps == 3:
                raise ValueError("mid-stream")
            return b"x"

    value, body = _Kept(), Body()
    kept, body_kept = weakref.ref(value), weakref.ref(body)
    steps = _hotpath.steps_in_scope(var, body, value)
    assert iter(steps) is steps
    assert next(steps) == b"x"
    assert var.get() is None
    assert next(steps) == b"x"
    with pytest.raises(ValueError, match="mid-stream"):
        next(steps)
    assert var.get() is None
    assert list(steps) == []
    assert seen == ["_Kept", "_Kept", "_Kept"]
    del value, body
    gc.collect()
    assert kept() is None and body_kept() is None
    ended = _hotpath.steps_in_scope(var, iter([b"a"]), _Kept())
    assert list(ended) == [b"a"] and list(ended) == []


def test_a_sub_request_made_inside_a_streaming_body_leaves_the_outer_request_open(db):
    """The body calls the WSGI application for an include, then makes a hop of its
    own. The include's handler used to finish the outer request as a stale one left
    unclosed by the thread's last request: its line said 0 hops and
    ``response_closed: false`` though the server closed it after the last chunk."""
    with override_settings(**SETTINGS), capture() as records:
        response = WSGIHandler()(wsgi_environ("/including/"), _start_response)
        assert b"".join(response) == b"atwob"
        assert [record.route for record in records] == ["/two-hops/"]
        response.close()
    included, outer = records
    assert (included.route, outer.route) == ("/two-hops/", "/including/")
    assert sites(included) == {OWN: 2}
    # its own hop, and the include's two: an enclosing request receives the hops of
    # one made inside it, as when a view calls the application (Ledger.parent)
    assert sites(outer) == {OWN: 3}
    assert "response_closed" not in (outer.extra or {})
    assert outer.ended_ns >= included.ended_ns
    assert not _awaiting_close


_kept_records: list[weakref.ref[Any]] = []


def remembering_view(request):
    """Notes its own request record, weakly."""
    from hopwatch._django_scope import current_request

    _kept_records.append(weakref.ref(current_request()))
    return StreamingHttpResponse(iter([b"a", b"b"]))


urlpatterns.append(path("remembering/", remembering_view))


def test_a_wsgi_requests_record_is_let_go_once_its_response_is_closed_or_collected(db):
    """Once the response is closed (by the server, on the serving thread) or collected
    unclosed, hopwatch keeps nothing of the request, before the thread's next request
    as after it."""
    _kept_records.clear()
    with override_settings(**SETTINGS):
        response = WSGIHandler()(wsgi_environ("/remembering/"), _start_response)
        assert b"".join(response) == b"ab"
        response.close()
        del response
        gc.collect()
        [closed] = _kept_records
        assert closed() is None  # before this thread's next request
        with capture() as records:
            unclosed = WSGIHandler()(wsgi_environ("/remembering/"), _start_response)
            assert b"".join(unclosed) == b"ab"
            del unclosed  # collected, never closed
            gc.collect()
        assert [record.extra for record in records] == [{"response_closed": False}]
        del records
        gc.collect()
    assert [ref() for ref in _kept_records] == [None, None]
    assert not _awaiting_close


#: The copy of its context the innermost request of /nesting/<depth>/ kept (as code
#: that hands its context to a thread of its own does), its scope that request's record.
_kept_contexts: list[contextvars.Context] = []


def _nested_chunks(depth: int):
    """A body that includes the next level's response (an ESI-style include)."""
    included = WSGIHandler()(wsgi_environ(f"/nesting/{depth - 1}/"), _start_response)
    yield b"".join(included)
    included.close()
    yield b"%d" % depth


def nesting_view(request, depth):
    """Nested ``depth`` requests deep, each in the body of the one above it; the
    innermost keeps a copy of its context."""
    if depth:
        return StreamingHttpResponse(_nested_chunks(depth))
    _kept_contexts.append(contextvars.copy_context())
    return HttpResponse("0")


urlpatterns.append(path("nesting/<int:depth>/", nesting_view))


def test_a_wsgi_request_in_a_context_its_closed_requests_left_current_lets_them_go(db):
    """A context copied in a request (handed to a thread of its own, say) outlives it:
    its scope is that request's record, closed with its response, and (the request
    made inside the body of another, and that one in a third) the records around it,
    all closed. A WSGI request made later in that context is not one of theirs: it is
    made inside the first scope still open around them (here a test's ``count_hops()``
    block, which counts its hops), and the closed records are let go, not kept alive
    by that context or the new request."""
    _kept_contexts.clear()
    with override_settings(**SETTINGS), count_hops() as block:
        with capture() as records:
            response = WSGIHandler()(wsgi_environ("/nesting/2/"), _start_response)
            assert b"".join(response) == b"012"
            response.close()
        assert [record.path for record in records] == ["/nesting/0/", "/nesting/1/", "/nesting/2/"]
        assert all(record.closed for record in records)
        kept = [weakref.ref(record) for record in records]
        del records
        (context,) = _kept_contexts
        _kept_contexts.clear()
        assert context.get(current_scope) is kept[0]()  # the innermost, closed
        before = len(block)
        with capture() as records:
            later = context.run(WSGIHandler(), wsgi_environ("/two-hops/"), _start_response)
            assert b"".join(later) == b"two"
            context.run(later.close)
        (record,) = records
        assert (record.path, sites(record), record.extra) == ("/two-hops/", {OWN: 2}, None)
        assert len(block) == before + 2  # the block around the closed ones counts them
        del records, record, later
        gc.collect()
        assert [ref() for ref in kept] == [None, None, None]
    assert not _awaiting_close
