"""The request scope on Django's ASGIHandler, before and since 6.1.

Before 6.1 the handler runs the view in a task of its own next to a
disconnect listener; 6.1 runs it in the handler's own task, in a TaskGroup
with the listener (a disconnect cancels the handler's task). hopwatch opens
the request's record in the handler's ``__call__``: these tests check, on each
version, that the view's hops, the hops of tasks it spawns, a client
disconnect (on the loop, in a sync hop, mid-stream), the error response Django
makes before the view, and ``response.close()`` are counted exactly, in the
one record of the request.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import weakref

import django
import pytest
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers import asgi as handlers_asgi
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse
from django.test import AsyncClient, override_settings
from django.urls import path

from hopwatch import _django, _django_scope, _errors, _hotpath
from hopwatch._recorder import (
    RequestContext,
    add_sink,
    after_close,
    handed_over,
    late,
    remove_sink,
    unscoped,
)
from hopwatch.apps import activate, deactivate
from hopwatch.testing import count_hops
from tests.helpers import asgi_call, asgi_request, asgi_scope, capture, sites
from tests.testapp import views

HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]
VIEW_IN_THE_HANDLER_TASK = django.VERSION >= (6, 1)


@pytest.fixture(autouse=True)
def _hopwatch_only():
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY):
        yield


def one(records):
    assert len(records) == 1, records
    (record,) = records
    assert record.closed
    return record


def test_where_the_view_runs():
    # What the other tests rely on: the view runs in the server's task (here
    # asgi_call's, which awaits the handler) on 6.1, in one of Django's before.
    with capture() as records:
        result = asgi_request("/task/")
    one(records)
    expected = "asgi_call" if VIEW_IN_THE_HANDLER_TASK else "ASGIHandler.handle.<locals>.process_request"
    assert result.body.decode() == expected


def _receive_once():
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Future()

    return receive


def test_hops_of_tasks_the_view_spawns_are_the_requests():
    with capture() as records:
        assert asgi_request("/child-tasks/").body == b"children"
    record = one(records)
    assert len(record) == 2 + 2 and record.status == 200
    assert sites(record)[("other", "tests.testapp.views._noop")] == 2


def _streamed(at_least):
    """True once the counted stream has started ``at_least`` hops."""
    return lambda: bool(views.STREAM_HOPS_STARTED) and views.STREAM_HOPS_STARTED[0] >= at_least


def test_disconnect_while_the_view_awaits_on_the_loop():
    views.REACHED.clear()
    with capture() as records:
        result = asgi_request("/sleepy/", query="s=0.5", disconnect_when=lambda: views.REACHED["sleepy"])
    record = one(records)
    assert result.status is None and record.status is None
    # The view is cancelled; Django sends request_finished itself (no response to close).
    assert sites(record) == {("signal", "request_started"): 1, ("signal", "request_finished"): 1}


def test_disconnect_in_the_middle_of_a_stream_closes_the_response_once():
    views.STREAM_HOPS_STARTED.clear()
    with capture() as records:
        result = asgi_request("/stream/counted/", disconnect_when=_streamed(3))
    record = one(records)
    (started,) = views.STREAM_HOPS_STARTED
    assert result.status == 200 and 3 <= started < 20  # cut off mid-stream
    assert sites(record) == {
        ("signal", "request_started"): 1,
        ("other", "tests.testapp.views._noop"): started,
        ("response", "StreamingHttpResponse.close"): 1,
    }
    outcomes = [hop.outcome for hop in record.hops()]
    assert outcomes.count("cancelled") <= 1  # at most the hop the disconnect cut


def test_a_stream_that_completes():
    views.STREAM_HOPS_STARTED.clear()
    with capture() as records:
        result = asgi_request("/stream/counted/")
    record = one(records)
    assert result.body == b"chunk\n" * 20 and views.STREAM_HOPS_STARTED == [20]
    assert len(record) == 1 + 20 + 1 and all(hop.outcome == "ok" for hop in record.hops())


def test_the_error_response_made_before_the_view_is_closed_and_counted():
    # A query string that is not UTF-8: Django answers 400 without running the
    # middleware or the view, then closes that response through sync_to_async.
    sent = []

    async def send(message):
        sent.append(message.get("status"))

    scope = {**asgi_scope("/async/"), "query_string": b"\xff"}
    with capture() as records:
        asyncio.run(ASGIHandler()(scope, _receive_once(), send))
    record = one(records)
    assert sent[0] == 400
    assert sites(record) == {("signal", "request_started"): 1, ("response", "HttpResponseBadRequest.close"): 1}


def test_concurrent_requests_on_one_handler_keep_their_own_hops():
    async def main():
        app = ASGIHandler()
        cut = asgi_call(app, "/stream/counted/", headers=[(b"x-request-id", b"cut")], disconnect_when=_streamed(3))
        full = [asgi_call(app, f"/hops/{n}/", headers=[(b"x-request-id", f"full-{n}".encode())]) for n in range(5)]
        return await asyncio.gather(cut, *full)

    views.STREAM_HOPS_STARTED.clear()
    with capture() as records:
        results = asyncio.run(main())
    assert [r.body for r in results[1:]] == [str(n).encode() for n in range(5)]
    by_id = {record.request_id: record for record in records}
    assert sorted(by_id) == sorted(["cut", *(f"full-{n}" for n in range(5))])
    for n in range(5):
        assert len(by_id[f"full-{n}"]) == 2 + n
    (started,) = views.STREAM_HOPS_STARTED
    assert 3 <= started < 20 and len(by_id["cut"]) == 1 + started + 1


def test_the_handler_is_still_an_asgi3_coroutine_function_for_servers():
    # Servers tell ASGI 3 from ASGI 2 by asking whether the app's __call__ is a
    # coroutine function; what it returns is awaited, or made a task.
    from asgiref.compatibility import is_double_callable

    handler = ASGIHandler()
    assert asyncio.iscoroutinefunction(handler.__call__)
    assert not is_double_callable(handler)

    async def as_a_task():
        return await asyncio.ensure_future(asgi_call(handler, "/async/"))

    with capture() as records:
        result = asyncio.run(as_a_task())
    assert result.status == 200
    assert one(records).route == "/async/"


def test_calling_the_handler_opens_nothing_in_the_callers_context():
    # The record opens when the handler's awaitable is first driven, in the task
    # that drives it: an app called in one context and run in a task (as
    # asgiref's ApplicationCommunicator and daphne do) leaves the caller's alone.
    from hopwatch._recorder import current_scope

    handler = ASGIHandler()
    sent = []
    received = []

    async def receive():
        if not received:
            received.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Future()  # connected until cancelled

    async def send(message):
        sent.append(message)

    async def main():
        awaitable = handler(asgi_scope("/async/"), receive, send)
        assert current_scope.get() is None
        await asyncio.ensure_future(awaitable)
        assert current_scope.get() is None

    with capture() as records:
        asyncio.run(main())
    assert sent[0]["status"] == 200
    record = one(records)
    assert record.route == "/async/" and len(record) == 2  # request_started, close


def test_the_record_rides_on_the_thread_sensitive_context_django_enters():
    """asgiref 3.13 passes over every variable of the context, in Python, on both sides
    of every crossing. Under Django's ASGIHandler the request's context holds no
    variable of hopwatch's: the crossings find the record through the
    ThreadSensitiveContext Django enters for the request (hopwatch's RequestContext),
    on the loop and in asgiref's threads."""
    with capture() as records:
        result = asgi_request("/context/")
    record = one(records)
    body = json.loads(result.body)
    assert body["context"] == "RequestContext"
    for side in ("loop", "thread"):
        assert body[side]["ledger"] == id(record), side
        assert not [name for name in body[side]["variables"] if "hopwatch" in name], body
    assert sites(record) == {
        ("signal", "request_started"): 1,
        ("other", "tests.testapp.views.context_view.<locals>.seen"): 1,
        ("response", "HttpResponse.close"): 1,
    }


def test_a_task_left_running_keeps_no_record_and_crosses_into_late():
    """A task the view starts and does not wait for holds the request's context,
    and with it the ThreadSensitiveContext the record rides on, after the request
    (so does the reference cycle Django's disconnect listener can end in, under a
    server). The record leaves that context when its request closes: it is freed
    then, not when the task ends. The task's crossing after that is counted in
    ``late``, not in the request's line, nor as unscoped."""
    views.DETACHED.clear()
    closed = []

    def sink(record):
        closed.append((weakref.ref(record), len(record)))

    async def main():
        result = await asgi_call(ASGIHandler(), "/detached/")
        ((task, go, context),) = views.DETACHED
        ((record, hops),) = closed
        assert hops == 2  # request_started, close
        assert record() is None
        assert type(context) is RequestContext and context.record is after_close
        go.set()
        await task
        views.DETACHED.clear()
        return result

    key = ("other", "tests.testapp.views._noop")
    late_before, unscoped_before, noop_before = len(late), len(unscoped), sites(late).get(key, 0)
    add_sink(sink)
    try:
        assert asyncio.run(main()).body == b"detached"
    finally:
        remove_sink(sink)
    assert len(late) == late_before + 1
    assert sites(late).get(key, 0) == noop_before + 1
    assert len(unscoped) == unscoped_before


def test_the_variables_asgiref_passes_over_are_the_bare_requests():
    """The same request without hopwatch: the same variables at its crossings."""
    with_hopwatch = json.loads(asgi_request("/context/").body)
    deactivate()
    try:
        with override_settings(MIDDLEWARE=[]):  # hopwatch's would install it again
            bare = json.loads(asgi_request("/context/").body)
    finally:
        activate()
    assert bare["context"] == "ThreadSensitiveContext"
    assert bare["loop"]["ledger"] is None and bare["thread"]["ledger"] is None
    for side in ("loop", "thread"):
        assert with_hopwatch[side]["variables"] == bare[side]["variables"], side


#: What the hops late_view starts wait for (the test sets it when the request is over),
#: and the tasks awaiting them.
LATE_GO = threading.Event()
LATE_TASKS: list[asyncio.Future] = []


def _wait_for_go() -> None:
    assert LATE_GO.wait(5)


async def late_view(request):
    """Starts two crossings it does not wait for: both are under way while the request
    is, and finish after its record closed."""
    for _ in range(2):
        LATE_TASKS.append(
            asyncio.ensure_future(sync_to_async(_wait_for_go, thread_sensitive=False)())
        )
    return HttpResponse("late")


#: Weak references to the requests running_view was given.
RUNNING_REQUESTS: list[weakref.ref] = []


async def running_view(request):
    """Starts a crossing it does not wait for (it waits for LATE_GO): under way when the
    response is sent, and after."""
    RUNNING_REQUESTS.append(weakref.ref(request))
    LATE_TASKS.append(asyncio.ensure_future(sync_to_async(_wait_for_go, thread_sensitive=False)()))
    return HttpResponse("running")


urlpatterns = [path("late/", late_view), path("running/", running_view)]


def test_two_crossings_of_one_request_finishing_after_it_closed_go_to_late():
    """Two crossings started in the request and finished after its record closed: the
    record refuses each (it is closed) and they are counted in ``late``; the event loop
    goes on. A refusal that kept the record's lock held hung the loop at the second:
    the loop runs in a thread here, so that shows as a thread still running."""
    LATE_GO.clear()
    LATE_TASKS.clear()

    async def main():
        result = await asgi_call(ASGIHandler(), "/late/")
        LATE_GO.set()
        await asyncio.wait_for(asyncio.gather(*LATE_TASKS), 5)
        return result

    finished = []
    key = ("other", f"{__name__}._wait_for_go")
    late_before, unscoped_before, key_before = len(late), len(unscoped), sites(late).get(key, 0)
    with override_settings(ROOT_URLCONF=__name__), capture() as records:
        loop = threading.Thread(target=lambda: finished.append(asyncio.run(main())), daemon=True)
        loop.start()
        loop.join(10)
    LATE_GO.set()  # (a hung loop's threads go on)
    assert not loop.is_alive(), "the event loop hung"
    ((result,),) = (finished,)
    assert (result.status, result.body) == (200, b"late")
    record = one(records)
    assert sites(record) == {
        ("signal", "request_started"): 1,
        ("response", "HttpResponse.close"): 1,
    }
    assert len(late) == late_before + 2
    assert sites(late).get(key, 0) == key_before + 2
    assert len(unscoped) == unscoped_before


def test_a_crossing_left_running_keeps_its_record_but_not_the_request():
    """A crossing the view left running holds the request's record (its hop's scope,
    and here the task's context: the test client's request is entered in hopwatch's
    variable) after the request. The record lets go of the request when it closes:
    the request (its body, session, user) is freed with the response while the
    crossing is under way, as without hopwatch, and stays freed once it ended, the
    task still referenced (as an app keeps the tasks it starts)."""
    LATE_GO.clear()
    LATE_TASKS.clear()
    RUNNING_REQUESTS.clear()
    closed = []

    def sink(record):
        closed.append((weakref.ref(record), len(record)))

    async def main():
        response = await AsyncClient().get("/running/")
        assert (response.status_code, response.content) == (200, b"running")
        del response
        ((record, hops),) = closed
        (request,) = RUNNING_REQUESTS
        gc.collect()
        assert not any(task.done() for task in LATE_TASKS)  # the crossing is under way
        while_running = (hops, record() is not None, request() is not None)
        LATE_GO.set()
        await asyncio.wait_for(asyncio.gather(*LATE_TASKS), 5)
        gc.collect()
        return while_running, request() is not None

    key = ("other", f"{__name__}._wait_for_go")
    late_before, key_before = len(late), sites(late).get(key, 0)
    add_sink(sink)
    try:
        with override_settings(ROOT_URLCONF=__name__):
            while_running, after = asyncio.run(main())
    finally:
        remove_sink(sink)
        LATE_GO.set()  # (a failed test's crossing goes on)
    LATE_TASKS.clear()
    # request_started, close; the record alive, the request not.
    assert while_running == (2, True, False)
    assert after is False
    assert len(late) == late_before + 1
    assert sites(late).get(key, 0) == key_before + 1


def test_uninstalling_gives_django_its_thread_sensitive_context_back():
    assert handlers_asgi.ThreadSensitiveContext is RequestContext
    _django.uninstall()
    try:
        assert handlers_asgi.ThreadSensitiveContext is ThreadSensitiveContext
        assert not _django_scope.on_request_context
    finally:
        _django.install()
    _django.install()  # idempotent
    assert handlers_asgi.ThreadSensitiveContext is RequestContext
    assert _django_scope.on_request_context


def test_inside_a_hop_budget_the_request_is_entered_in_hopwatchs_variable():
    """A scope current already (a hopwatch.testing block): Django's context is not
    where the request begins, and its hops count in the block too."""
    with count_hops() as block, capture() as records:
        asgi_request("/context/")
    record = one(records)
    assert record.parent is block.ledger
    assert len(block) == record.count == 3


@pytest.mark.parametrize("kind", ["lifespan", "websocket"])
def test_a_scope_other_than_http_is_left_to_django(kind):
    """What uvicorn's ``--lifespan auto`` sends first, or a websocket routed to Django:
    Django refuses it as ever; hopwatch opens no record, reports no internal error and
    keeps its hand-over for the next request (a lifespan scope once switched it off)."""

    async def receive():
        return {"type": f"{kind}.startup" if kind == "lifespan" else "websocket.connect"}

    async def send(message):
        raise AssertionError(message)

    scope = {"type": kind, "asgi": {"version": "3.0"}}
    if kind == "websocket":
        scope.update(path="/context/", headers=[], query_string=b"")
    with capture() as records:
        with pytest.raises(ValueError, match=f"not {kind}"):
            asyncio.run(ASGIHandler()(scope, receive, send))
        assert records == []
        asgi_request("/context/")
    assert _django_scope.on_request_context
    record = one(records)
    assert record.count == 3 and not record.extra


@pytest.mark.internal_errors
def test_a_hand_over_django_does_not_take_is_reported_once_and_not_used_again(monkeypatch):
    """A Django whose handler does not enter its ThreadSensitiveContext where hopwatch
    expects it (here: asgiref's own class under the name, so nothing takes the record).
    That request is counted by the middleware's own record (the chain's crossings only,
    as without the handler's), which is said once. From then on the handler's records
    are entered in hopwatch's variable and count every crossing again."""
    monkeypatch.setattr(handlers_asgi, "ThreadSensitiveContext", ThreadSensitiveContext)
    before = _errors.total()
    try:
        with capture() as records:
            asgi_request("/context/")
            asgi_request("/context/")
        first, second = records
        assert first.extra == {"scope": "middleware"} and handed_over() is None
        assert sites(first) == {("other", "tests.testapp.views.context_view.<locals>.seen"): 1}
        assert _errors.total() == before + 1
        assert not _django_scope.on_request_context
        assert second.count == 3 and not second.extra
    finally:
        _errors.take_for_line()  # not for the next test's line
        _django_scope.on_request_context = True


@pytest.mark.skipif(
    _hotpath.IMPLEMENTATION != "c",
    reason="the pure-Python path's handler is an async def around Django's (docs/how-it-works.md)",
)
def test_the_handlers_coroutine_behaves_as_djangos_before_it_starts(recwarn):
    """The C path's ``ASGIHandler.__call__`` gives back hopwatch's awaitable around
    Django's coroutine. It could not be weakly referenced, and closing it before it
    started left Django's coroutine unclosed ("coroutine 'ASGIHandler.__call__' was
    never awaited"), which the app's own close() never causes."""
    import gc
    import warnings

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        raise AssertionError(message)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        handler = ASGIHandler()
        closed = handler(asgi_scope("/async/"), receive, send)
        assert weakref.ref(closed)() is closed
        assert closed.__qualname__ == "ASGIHandler.__call__"
        closed.close()
        thrown = handler(asgi_scope("/async/"), receive, send)
        with pytest.raises(ValueError, match="before it started"):
            thrown.throw(ValueError("before it started"))
        del closed, thrown
        gc.collect()
    assert [str(w.message) for w in recwarn if issubclass(w.category, RuntimeWarning)] == []
