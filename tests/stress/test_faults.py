"""Faults in-process, through Django's real handlers: the app behaves as without hopwatch,
and no request record is lost silently or left open.

Cancelled request tasks, view exceptions (also in the middle of a stream),
WSGI responses a server never closes, a failing log handler, a full disk under
the file output. The real-server faults (clients hanging up, shutdown
mid-traffic) are in test_server_faults.py.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
import textwrap
import threading
from collections.abc import Callable
from typing import Any

import django
import pytest
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.test import override_settings

import hopwatch
from hopwatch import _errors
from hopwatch._django_scope import _awaiting_close
from hopwatch._recorder import late
from hopwatch.apps import activate, deactivate
from tests.helpers import (
    asgi_scope,
    capture,
    wait_until,
    without_pytests_log_capture,
    wsgi_environ,
)
from tests.stress import views
from tests.testapp import views as testapp_views
from tests.transparency.helpers import both, signal_log, without_hopwatch

# Before Django 6.1, ASGIHandler runs the view in a task of its own, which a
# cancelled handler leaves running; 6.1 runs it in the handler's own task
# (a TaskGroup with the disconnect listener), so cancelling the handler
# cancels the view.
VIEW_OUTLIVES_THE_HANDLER = django.VERSION < (6, 1)
HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]


@pytest.fixture(autouse=True)
def _stress_urls():
    with override_settings(ROOT_URLCONF="tests.stress.urls", MIDDLEWARE=HOPWATCH_ONLY):
        yield


def hopwatch_settings(**options: Any):
    return override_settings(HOPWATCH={"OUTPUT": "logging", **options})


# --- cancelled request tasks ----------------------------------------------------------------


async def _cancel_during(
    app: Any, path: str, rid: str, cancel_when: Callable[[], bool]
) -> dict[str, Any]:
    """Start a request, cancel its task from outside (a server giving up on it) once
    ``cancel_when()`` is true, and wait."""
    path, _, query = path.partition("?")
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        if not sent:
            sent.append("<received body>")
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Future()  # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    scope = asgi_scope(path, query=query, headers=[(b"x-request-id", rid.encode())])
    task = asyncio.ensure_future(app(scope, receive, send))
    await wait_until(cancel_when)
    task.cancel()
    try:
        await task
        outcome = "finished"
    except asyncio.CancelledError:
        outcome = "cancelled"
    return {"outcome": outcome, "sent": sent}


# Where the request is when its task is cancelled: in a sync hop's thread;
# awaiting on the loop; between and in hops (the third unit of 20 started). Each
# is a point in the request's progress, not a delay: on a loaded machine a
# delay lands anywhere (before the view, or after it).
CANCELLED = {
    "/slow/": lambda rid: testapp_views.REACHED[rid] > 0,
    "/sleepy/?s=0.5": lambda rid: testapp_views.REACHED[rid] > 0,
    "/stress/load/?n=20&gap=0.01": lambda rid: views.UNITS_STARTED[rid] >= 3,
    "/stress/load/?n=20&gap=0.01&kind=nested": lambda rid: views.UNITS_STARTED[rid] >= 3,
}


def _asgiref_version() -> tuple[int, ...]:
    import asgiref

    return tuple(int(part) for part in asgiref.__version__.split(".")[:2])


@pytest.mark.parametrize("path", CANCELLED)
def test_cancelled_request_task(path, log_lines):
    if "kind=nested" in path and _asgiref_version() < (3, 12):
        pytest.skip(
            "asgiref < 3.12 can deadlock the event loop when a request task is cancelled"
            " while its sync code is parked in async_to_sync (asgiref #535, fixed in 3.12),"
            " with or without hopwatch: it hung CI here once"
        )
    rid = f"cancel-{list(CANCELLED).index(path)}"

    def scenario() -> dict[str, Any]:
        views.UNITS_STARTED.clear()
        views.HOPS_STARTED.clear()
        views.ENDED.clear()
        testapp_views.REACHED.clear()

        async def main() -> dict[str, Any]:
            app = ASGIHandler()
            bystander = asyncio.ensure_future(_bystander(app))
            seen = await _cancel_during(app, path, rid, lambda: CANCELLED[path](rid))
            seen["bystander"] = await bystander
            if "nested" in path:  # every hop the view started has ended, however slow
                await wait_until(lambda: len(views.ENDED[rid]) == views.HOPS_STARTED[rid])
            await asyncio.sleep(0.8)  # whatever Django left running finishes
            return seen

        with signal_log() as signals:
            seen = asyncio.run(main())
        seen["signals"] = sorted(signals)
        seen["units"] = views.UNITS_STARTED[rid]
        seen["hops_started"] = views.HOPS_STARTED[rid]
        seen["ended"] = list(views.ENDED[rid])
        return seen

    late_before = len(late)
    with capture() as records:
        with_, without = both(scenario)
    late_hops = len(late) - late_before
    # The app behaves as without hopwatch: the task ends cancelled, the same
    # messages are sent (before 6.1 Django finishes the response in a task of
    # its own), the same signals.
    assert with_["outcome"] == without["outcome"] == "cancelled"
    for key in ("sent", "bystander", "signals"):
        assert with_[key] == without[key], key
    units_with = with_["units"]  # compared to the count, not across runs

    # Exactly two records: the cancelled request's and the bystander's, closed.
    by_id = {record.request_id: record for record in records}
    assert sorted(by_id) == sorted([rid, "bystander"]) and len(records) == 2
    assert all(record.closed for record in records)
    assert len(by_id["bystander"]) == 2 + 7  # request_started, 7 hops, close: untouched
    cancelled = by_id[rid]
    # Its line was written when the task was cancelled: no response, no status.
    # (asgiref 3.13 waits for a sync hop's thread while the cancelled handler
    # exits, so /slow/ may still answer in full before Django 6.1.)
    (line,) = [line for line in log_lines.parsed() if line["request_id"] == rid]
    assert line["status"] in (None, 200) and line["hops"] == len(cancelled)
    if not VIEW_OUTLIVES_THE_HANDLER:  # the view was cancelled: no response at all
        assert line["status"] is None and with_["sent"] == ["<received body>"]
    # Nothing lost: every hop the request made is in its record or, when it
    # finished after the record closed (before 6.1 Django leaves the view
    # running in a task of its own), in the ``late`` ledger; never in the
    # bystander's.
    view_hops = {"/slow/": 1, "/sleepy/?s=0.5": 0}.get(path)
    if view_hops is None:
        # What the view started, counted by the view: a nested unit cancelled
        # before its thread ran makes 1 hop of its 3.
        view_hops = with_["hops_started"]
        per_unit = 3 if "nested" in path else 1
        assert per_unit * (units_with - 1) < view_hops <= per_unit * units_with
        # Before 6.1 the view runs on (to the end); 6.1 cancels it with the handler.
        assert units_with == 20 if VIEW_OUTLIVES_THE_HANDLER else 3 <= units_with < 20
    assert len(cancelled) + late_hops == 1 + view_hops
    # The hops ended cancelled are one chain from the view down: the crossing
    # the cancel reached and, when that was a nested unit's outer hop with its
    # inner hops in flight, those (asgiref cancels the async_to_sync's task and
    # so the sync_to_async it awaits). The app saw each of them end so.
    chain = _cancelled_chain(cancelled)
    assert len(chain) <= (3 if "nested" in path else 1)
    if "nested" in path:
        app_saw = sorted(depth for depth, how in with_["ended"] if how == "CancelledError")
        assert app_saw == [hop.depth for hop in chain]


def _cancelled_chain(record: Any) -> list[Any]:
    """The record's hops that ended cancelled, outermost first, checked to be one chain
    from depth 1 down, each the parent of the next."""
    chain = sorted(
        (hop for hop in record.hops() if hop.outcome == "cancelled"), key=lambda h: h.depth
    )
    assert [hop.depth for hop in chain] == list(range(1, len(chain) + 1))
    assert all(inner.parent is outer for outer, inner in itertools.pairwise(chain))
    return chain


def test_a_request_cancelled_three_hops_deep(log_lines):
    """The request's task is cancelled while its view is three hops deep (``sync_to_async``,
    then ``async_to_sync`` in that thread, then ``sync_to_async``, whose code is running).

    Django 6.1 cancels the view with the handler, and asgiref passes the cancel down the
    chain: it cancels the ``async_to_sync``'s task, and so the ``sync_to_async`` it awaits.
    All three hops end cancelled, as the app itself sees them. Before 6.1 the view runs on
    to the end: nothing is cancelled and its hops finish after the record closed.
    """
    if _asgiref_version() < (3, 12):
        pytest.skip("asgiref < 3.12 can deadlock here (asgiref #535); see above")
    rid = "cancel-deep"

    def scenario() -> dict[str, Any]:
        views.HELD.clear()
        views.ENDED.clear()

        async def main() -> dict[str, Any]:
            app = ASGIHandler()
            path = "/stress/load/?n=1&kind=nested&hold=0.5"
            seen = await _cancel_during(app, path, rid, lambda: views.HELD[rid] > 0)
            await wait_until(lambda: len(views.ENDED[rid]) == 3)  # the held code returned
            return seen

        seen = asyncio.run(main())
        seen["ended"] = list(views.ENDED[rid])
        return seen

    late_before = len(late)
    with capture() as records:
        with_, without = both(scenario)
    assert with_ == without  # the same messages sent, the same ends seen by the app
    assert with_["outcome"] == "cancelled"
    (record,) = records
    (line,) = [line for line in log_lines.parsed() if line["request_id"] == rid]
    if VIEW_OUTLIVES_THE_HANDLER:
        assert with_["ended"] == [(3, "ok"), (2, "ok"), (1, "ok")]
        assert len(record) + len(late) - late_before == 1 + 3
        assert all(hop.outcome == "ok" for hop in record.hops())
        return
    assert with_["ended"] == [(3, "CancelledError"), (2, "CancelledError"), (1, "CancelledError")]
    assert line["status"] is None and line["hops"] == len(record) == 1 + 3
    chain = _cancelled_chain(record)
    assert [hop.direction for hop in chain] == ["sync_to_async", "async_to_sync", "sync_to_async"]
    # The innermost code ran on to its end after its caller was cancelled (its own
    # end is kept, ended_ns); as a crossing, its run ended when the caller resumed:
    # what the code did after that is no part of the crossing (Hop.end_ns).
    assert chain[2].called_ns < chain[2].started_ns < chain[2].resumed_ns < chain[2].ended_ns
    assert chain[2].end_ns == chain[2].resumed_ns
    assert chain[2].run_ns == chain[2].resumed_ns - chain[2].started_ns
    assert chain[2].resume_ns == 0
    assert chain[2].wait_ns + chain[2].run_ns == chain[2].wall_ns


async def _bystander(app: Any) -> tuple[int | None, bytes]:
    from tests.helpers import asgi_call

    result = await asgi_call(app, "/hops/7/", headers=[(b"x-request-id", b"bystander")])
    return result.status, result.body


# --- view exceptions ----------------------------------------------------------------------------


def wsgi_serve(path: str, *, close: bool = True) -> dict[str, Any]:
    """Serve one request as a WSGI server does: iterate the body, then close() (PEP 3333)."""
    seen: dict[str, Any] = {"body": b""}

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        seen["status"] = status
        return lambda data: None

    response = WSGIHandler()(wsgi_environ(path), start_response)
    try:
        for chunk in response:
            seen["body"] += chunk
    except Exception as exc:
        seen["raised"] = f"{type(exc).__name__}: {exc}"
    finally:
        if close:
            response.close()
    return seen


def asgi_serve(path: str) -> dict[str, Any]:
    from tests.helpers import asgi_call

    async def main() -> dict[str, Any]:
        result = await asgi_call(ASGIHandler(), path)
        return {"status": result.status, "body": result.body}

    try:
        return asyncio.run(main())
    except Exception as exc:
        return {"raised": f"{type(exc).__name__}: {exc}"}


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")
@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
@pytest.mark.parametrize(
    "path", ["/error/", "/sync-error/", "/stress/stream-error/", "/stress/sync-stream-error/"]
)
def test_view_exceptions(interface, path, db):
    serve = asgi_serve if interface == "asgi" else wsgi_serve

    def scenario() -> dict[str, Any]:
        with signal_log() as signals:
            seen = serve(path)
        seen["signals"] = signals
        seen.pop("body", None) if "raised" in seen else None
        return seen

    with capture() as records:
        with_, without = both(scenario)
    assert with_ == without
    if path.endswith("stream-error/"):
        # The stream breaks after its first chunk: the error reaches the server.
        assert "the stress suite's deliberate error mid-stream" in with_["raised"]
    else:
        assert with_.get("status") in (500, "500 Internal Server Error")
    (record,) = records  # one record, closed, even when the error escaped Django
    assert record.closed and record.interface == interface
    assert "response_closed" not in (record.extra or {})  # the server did close the response
    assert not _awaiting_close


# --- WSGI responses that are never closed -----------------------------------------------------


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")
@pytest.mark.parametrize(
    "path", ["/sync/", "/async/", "/stream/sync/", "/stress/sync-stream-error/"]
)
def test_wsgi_response_never_closed_is_logged_when_collected(path, db, log_lines):
    def scenario() -> dict[str, Any]:
        seen = wsgi_serve(path, close=False)  # a server that forgets close()
        gc.collect()
        return seen

    with_, without = both(scenario)
    assert with_ == without
    (line,) = log_lines.parsed()
    assert line["response_closed"] is False and line["interface"] == "wsgi"
    assert not _awaiting_close


def test_wsgi_response_kept_unclosed_waits_for_its_close_or_collection(db, log_lines):
    """A server thread that iterates each response and keeps it, closing none while it
    serves its next requests: each request waits for its own response (the thread's
    next request used to finish it with ``response_closed: false``, a single-threaded
    server's too, which calls the application for one connection before it closes
    another's response). Closed late, its line is written then; collected unclosed,
    with ``response_closed: false``."""
    kept = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return lambda data: None

    def leaky_server() -> None:  # iterates, keeps the response, closes none yet
        for path in ("/sync/", "/hops/2/", "/sync/"):
            response = WSGIHandler()(wsgi_environ(path), start_response)
            b"".join(response)
            kept.append(response)

    thread = threading.Thread(target=leaky_server)
    thread.start()
    thread.join()
    assert log_lines.parsed() == []  # was: the first two, finished by the next request
    assert len(_awaiting_close) == 3
    for response in kept[:2]:
        response.close()  # the server closes two of them at last: their lines are written
    lines = log_lines.parsed()
    assert [(line["route"], line["hops"], line.get("response_closed")) for line in lines] == [
        ("/sync/", 0, None),
        ("/hops/<int:n>/", 3, None),  # the async view's async_to_sync, its two sync_to_async
    ]
    assert len(_awaiting_close) == 1
    del kept[:]  # and drops the last one unclosed: written when it is collected
    gc.collect()
    lines = log_lines.parsed()
    assert len(lines) == 3 and not _awaiting_close
    assert (lines[2]["route"], lines[2]["response_closed"]) == ("/sync/", False)


# --- a failing log handler ------------------------------------------------------------------


class DoomedLinesHandler(logging.Handler):
    """Raises out of emit() for the request lines whose request id is in ``doomed``."""

    def __init__(self, doomed: set[str]) -> None:
        super().__init__(logging.INFO)
        self.doomed = doomed
        self.written: list[dict[str, Any]] = []  # emit() runs under the handler's lock

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not message.startswith('{"event":"hopwatch.request"'):
            return
        line = json.loads(message)
        if line["request_id"] in self.doomed:
            raise OSError("the log shipper is down")
        self.written.append(line)


@pytest.mark.internal_errors
def test_a_failing_log_handler_loses_lines_but_never_silently(db):
    rids = [f"req-{i:02d}" for i in range(60)]
    doomed = {rid for i, rid in enumerate(rids) if i % 3 == 0}
    handler = DoomedLinesHandler(doomed)
    logger = logging.getLogger("hopwatch")

    async def asgi_traffic() -> list[int | None]:
        from tests.helpers import asgi_call

        app = ASGIHandler()
        results = await asyncio.gather(
            *(
                asgi_call(app, f"/hops/{i % 5}/", headers=[(b"x-request-id", rid.encode())])
                for i, rid in enumerate(rids[:40])
            )
        )
        return [r.status for r in results]

    def wsgi_traffic(rid: str) -> None:
        environ = {**wsgi_environ("/sync/"), "HTTP_X_REQUEST_ID": rid}
        response = WSGIHandler()(environ, lambda status, headers, exc_info=None: None)
        b"".join(response)
        response.close()

    _errors.reset_for_tests()
    without_pytests_log_capture("hopwatch")  # the doomed handler is the line's only one
    logger.addHandler(handler)
    try:
        with hopwatch_settings():
            statuses = asyncio.run(asgi_traffic())
            threads = [threading.Thread(target=wsgi_traffic, args=(rid,)) for rid in rids[40:]]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert statuses == [200] * 40  # the app never noticed
            lost = _errors.total()
            # One more request, after the shipper recovered: its line reports the rest.
            wsgi_traffic("after")
    finally:
        logger.removeHandler(handler)

    written = {line["request_id"]: line for line in handler.written}
    assert set(written) == (set(rids) - doomed) | {"after"}  # every other line arrived, once
    assert lost == len(doomed)  # each lost line was counted as an internal error
    # ... and every one of those errors was reported in a line that was written.
    reported = sum(line.get("hopwatch_errors", 0) for line in handler.written)
    assert reported == len(doomed), (
        f"{len(doomed)} lines were lost, the written lines report {reported}"
    )


# --- hopwatch's own awaitable not made (memory exhausted) ---------------------------------


@pytest.mark.internal_errors
@pytest.mark.parametrize("where", ["handler", "middleware", "both"])
def test_a_then_that_cannot_be_made_leaves_the_request_as_without_hopwatch(
    where, tmp_path, monkeypatch, db
):
    """``then`` (the awaitable hopwatch wraps the ASGI handler's coroutine and the next
    middleware's awaitable in) fails to allocate, as under memory exhaustion: the
    request goes on without it, as without hopwatch (Django's coroutine was dropped
    unawaited, the middleware's record left open, and the app got the MemoryError),
    and the next request's line is exact. Each failure is one internal error. (Made
    to fail here by hopwatch's own ``then`` replaced, as its allocation fails under an
    allocator that refuses it: the C ``then`` and the Python one raise MemoryError.)"""
    import gc
    import warnings

    from hopwatch import _django_scope
    from hopwatch import middleware as hopwatch_middleware
    from tests.helpers import asgi_request

    modules = {"handler": [_django_scope], "middleware": [hopwatch_middleware]}
    modules["both"] = modules["handler"] + modules["middleware"]

    def serve(rid: str) -> Any:
        return asgi_request("/hops/3/", headers=[(b"x-request-id", rid.encode())])

    log = tmp_path / "hops.log"
    with without_hopwatch():
        expected = serve("without")
    _errors.reset_for_tests()
    for module in modules[where]:
        made = module.then
        calls: list[int] = []

        def then_out_of_memory_once(*args: Any, made: Any = made, calls: Any = calls) -> Any:
            calls.append(len(args))
            if len(calls) == 1:
                raise MemoryError
            return made(*args)

        monkeypatch.setattr(module, "then", then_out_of_memory_once)
    with hopwatch_settings(OUTPUT=str(log)), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with capture() as records:
            got = serve("no-then")
            after = serve("after")
        gc.collect()  # (a coroutine dropped unawaited says so when it is collected)
    assert got == expected and after == expected
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []
    failures = len(modules[where])
    assert _errors.total() == failures
    assert [record.closed for record in records] == [True, True]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    seen = [
        (line["request_id"], line["route"], line["hops"], line["status"],
         line.get("hopwatch_errors"))
        for line in lines
    ]  # fmt: skip
    no_then = {
        # no handler record: the middleware opens its own, without the crossings
        # outside the middleware chain (request_started, the response's close)
        "handler": ("no-then", "/hops/<int:n>/", 3, 200, 1),
        # the handler's record, never named (the middleware's naming runs after the
        # response): its crossings, but no route or status
        "middleware": ("no-then", "(unresolved)", 5, None, 1),
        # the middleware's own record, finished as the chain begins
        "both": ("no-then", "(unresolved)", 0, None, 2),
    }[where]
    # the next request exact; the errors reported once, by the first line written after
    assert seen == [no_then, ("after", "/hops/<int:n>/", 5, 200, None)]


# --- a full disk under the file output ----------------------------------------------------------

FULL = "/dev/full"  # Linux: every write fails with ENOSPC


@pytest.fixture
def full_disk():
    import os

    if not os.path.exists(FULL):
        pytest.skip("needs Linux's /dev/full")
    _errors.reset_for_tests()
    yield FULL
    discard_broken_writer()  # leave no broken writer behind for the next test


def discard_broken_writer() -> None:
    """Close the emitter's file; a full disk makes the first close() raise, once."""
    from hopwatch import apps

    if apps._emitter is not None:
        try:
            apps._emitter.close()
        except OSError:
            pass


@pytest.mark.internal_errors
def test_a_full_disk_never_fails_a_request_and_every_lost_line_is_counted(full_disk, db):
    warnings: list[logging.LogRecord] = []
    collector = logging.Handler(logging.WARNING)
    collector.emit = warnings.append  # type: ignore[method-assign]
    logging.getLogger("hopwatch").addHandler(collector)

    def scenario() -> list[Any]:
        return [
            result
            for _ in range(3)
            for result in (asgi_serve("/hops/3/"), wsgi_serve("/sync/"), asgi_serve("/error/"))
        ]

    try:
        with hopwatch_settings(OUTPUT=full_disk):
            with_ = scenario()
    finally:
        logging.getLogger("hopwatch").removeHandler(collector)
    assert _errors.total() == 9  # one per line that could not be written
    discard_broken_writer()  # (closing it raises: see the test on deactivate below)
    with without_hopwatch(), hopwatch_settings(OUTPUT=full_disk):
        without = scenario()
    assert with_ == without
    assert len([w for w in warnings if "internal error" in w.getMessage()]) == 1


@pytest.mark.internal_errors
def test_lines_lost_to_a_full_disk_are_reported_when_the_disk_has_room_again(tmp_path, db):
    """A log handler that fails ("disk full") for a while, then works again.

    Each lost line is counted, and the next line that is written must report
    all of them: a line that could not be written must not take the error
    count it carried down with it.
    """
    _errors.reset_for_tests()
    handler = DoomedLinesHandler({f"full-{i}" for i in range(5)})
    logger = logging.getLogger("hopwatch")
    without_pytests_log_capture("hopwatch")  # the failing handler is the line's only one
    logger.addHandler(handler)
    try:
        with hopwatch_settings():
            for i in range(5):
                asgi_serve_with_id("/async/", f"full-{i}")
            asgi_serve_with_id("/async/", "room-again")
    finally:
        logger.removeHandler(handler)
    (line,) = handler.written
    assert line["request_id"] == "room-again"
    assert line.get("hopwatch_errors") == 5, line.get("hopwatch_errors")


def asgi_serve_with_id(path: str, rid: str) -> int | None:
    from tests.helpers import asgi_request

    return asgi_request(path, headers=[(b"x-request-id", rid.encode())]).status


@pytest.mark.internal_errors
def test_switching_the_file_output_away_from_a_full_disk_loses_no_line(full_disk, tmp_path, db):
    target = tmp_path / "hops.log"
    with hopwatch_settings(OUTPUT=full_disk):
        asgi_serve("/async/")
    with hopwatch_settings(OUTPUT=str(target)):
        for i in range(3):
            asgi_serve_with_id("/async/", f"after-{i}")
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [line["request_id"] for line in lines] == ["after-0", "after-1", "after-2"]


@pytest.mark.internal_errors
def test_deactivate_with_a_full_disk_file_output_still_uninstalls(full_disk, db):
    with hopwatch_settings(OUTPUT=full_disk):
        asgi_serve("/async/")  # the line is stuck in the file's buffer
        try:
            deactivate()  # must neither raise nor leave hopwatch half-installed
            assert not hopwatch.is_installed()
        finally:
            activate()
    assert hopwatch.is_installed()


_FILLS_UP = textwrap.dedent(
    """
    import json, os, resource, signal, sys
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django
    django.setup()
    from django.test import override_settings
    import hopwatch
    from hopwatch import _errors
    from tests.helpers import asgi_request

    log, buffer, room = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    override_settings(
        MIDDLEWARE=["hopwatch.middleware.HopwatchMiddleware"],
        HOPWATCH={"OUTPUT": log, "OUTPUT_BUFFER": buffer},
    ).enable()
    statuses = []

    def serve(*ids):
        for rid in ids:
            statuses.append(asgi_request("/async/", headers=[(b"x-request-id", rid.encode())]).status)
        if buffer:
            hopwatch.flush()  # (a failed write of what is held: one internal error)

    serve("before-0")
    # The disk fills up: the file may grow by `room` bytes more, then writes fail (EFBIG)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(log) + room, hard))
    serve("full-0", "full-1", "full-2")
    errors_while_full = _errors.total()
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # and has room again
    serve("after-0", "after-1")
    print(json.dumps({"statuses": statuses, "errors_while_full": errors_while_full,
                      "errors": _errors.total()}))
    """
)


@pytest.mark.parametrize("buffer", [0, 1 << 20], ids=["each-line", "OUTPUT_BUFFER"])
def test_a_line_lost_to_a_disk_that_filled_up_is_never_written_once_it_has_room(
    tmp_path, capsys, buffer
):
    """A file OUTPUT whose disk fills up in the middle of a line, then has room again
    (RLIMIT_FSIZE in a child process: writes past it fail with EFBIG, as ENOSPC on a
    full disk). The lines that failed are lost and counted, never written later as
    well (Python's buffered file kept their bytes, and wrote them, and the lines after,
    with the next line that fitted); the start of the line the disk cut is ended by a
    newline, so the lines after it are whole."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    log = tmp_path / "hops.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(root / "src")])
    done = subprocess.run(
        [sys.executable, "-c", _FILLS_UP, str(log), str(buffer), "60"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["statuses"] == [200] * 6  # the app never noticed
    # one error per failed write: each line's own, or the one flush of the held lines
    lost = 1 if buffer else 3
    assert seen["errors_while_full"] == seen["errors"] == lost
    raw = log.read_bytes()
    first, fragment, *rest = raw.split(b"\n")
    assert json.loads(first)["request_id"] == "before-0"
    # the 60 bytes the disk took of full-0's line, ended by the next write's newline
    assert len(fragment) == 60 and fragment.startswith(b'{"event":"hopwatch.request",')
    assert rest[-1] == b""  # the file ends with a whole line
    lines = [json.loads(line) for line in rest[:-1]]
    assert [line["request_id"] for line in lines] == ["after-0", "after-1"]
    # the errors reported once, by the first line written after them
    assert [line.get("hopwatch_errors") for line in lines] == [lost, None]
    # What a reader sees: the three records, the fragment skipped as a cut line
    from hopwatch.cli import main

    assert main(["report", str(log), "--format", "json", "--jobs", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert (summary["lines"], summary["records"], summary["skipped_by_reason"]) == (
        4, 3, {"truncated": 1}
    )
    assert summary["hopwatch_errors"] == lost


def test_without_hopwatch_helper_really_uninstalls():
    """The comparisons above are only worth something if 'without' is really without."""
    from asgiref.sync import SyncToAsync

    from hopwatch import _patch

    with without_hopwatch():
        assert SyncToAsync.__dict__["__call__"] is not _patch.patched(SyncToAsync)
        assert not hopwatch.is_installed()
    assert SyncToAsync.__dict__["__call__"] is _patch.patched(SyncToAsync)
