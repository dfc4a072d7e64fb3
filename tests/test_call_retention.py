"""No object of a call outlives the call because of hopwatch.

What a hop is made with (a partial over a request, a callable instance, a file's
bound ``read``, a bound method) must be freed when the call is over, exactly as
without hopwatch: attribution caches key on code objects, names and types,
never on the callable or its instance. Checked with weak references and with
file descriptors, in both directions, on whichever hop path this run uses (the
test command runs the suite on the C accelerator and on the pure-Python path).
The same for what a request is made with: its database connections, its record
and hops (freed by reference counting, the cyclic collector off).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import sqlite3
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection
from django.http import HttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path

import hopwatch
from hopwatch._recorder import Ledger, add_sink, current_scope, remove_sink


def _settled() -> None:
    """Wait until asgiref's sync thread has let go of its last call. The thread pool
    sets a call's result before it drops the work item that holds the callable
    (concurrent.futures' ``_worker``): on a busy machine the test could look in
    between, and find the last call's objects alive without hopwatch having kept them.
    The next item starts only once the last is dropped."""
    from asgiref.sync import SyncToAsync

    SyncToAsync.single_thread_executor.submit(lambda: None).result(timeout=30)


class Payload:
    """Stands for a request: what must not be kept."""

    def method(self) -> int:
        return 1

    async def amethod(self) -> int:
        return 2


class CallableThing:
    def __init__(self, payload: Payload) -> None:
        self.payload = payload

    def __call__(self) -> int:
        return 3


class AsyncCallableThing:
    def __init__(self, payload: Payload) -> None:
        self.payload = payload

    async def __call__(self) -> int:
        return 4


def _use(payload: Payload) -> int:
    return 5


async def _ause(payload: Payload) -> int:
    return 6


SYNC_TARGETS: dict[str, Callable[[Payload], Callable[[], Any]]] = {
    "partial": lambda p: functools.partial(_use, p),
    "callable instance": CallableThing,
    "bound method": lambda p: p.method,
    "lambda closure": lambda p: lambda: _use(p),
}
ASYNC_TARGETS: dict[str, Callable[[Payload], Callable[[], Any]]] = {
    "partial": lambda p: functools.partial(_ause, p),
    "callable instance": AsyncCallableThing,
    "bound method": lambda p: p.amethod,
}


@contextlib.contextmanager
def recording() -> Iterator[Ledger]:
    assert hopwatch.is_installed()
    scope = Ledger()
    token = current_scope.set(scope)
    try:
        yield scope
    finally:
        current_scope.reset(token)


@pytest.mark.parametrize("kind", list(SYNC_TARGETS))
def test_sync_to_async_keeps_nothing_of_the_call(kind: str) -> None:
    refs = []

    async def main() -> None:
        for _ in range(3):  # the second and third calls hit the caches
            payload = Payload()
            refs.append(weakref.ref(payload))
            await sync_to_async(SYNC_TARGETS[kind](payload))()
            del payload

    with recording() as scope:
        asyncio.run(main())
    assert len(scope) == 3
    _settled()
    gc.collect()
    assert [ref() for ref in refs] == [None, None, None]


@pytest.mark.parametrize("kind", list(ASYNC_TARGETS))
def test_async_to_sync_keeps_nothing_of_the_call(kind: str) -> None:
    refs = []

    def in_thread() -> None:
        for _ in range(3):
            payload = Payload()
            refs.append(weakref.ref(payload))
            async_to_sync(ASYNC_TARGETS[kind](payload))()
            del payload

    async def main() -> None:
        await sync_to_async(in_thread)()

    with recording() as scope:
        asyncio.run(main())
    assert len(scope) == 4  # the outer sync_to_async and three async_to_sync
    _settled()
    gc.collect()
    assert [ref() for ref in refs] == [None, None, None]


def test_cold_async_to_sync_keeps_nothing_of_the_call() -> None:
    refs = []
    with recording() as scope:
        for _ in range(3):  # no running loop: a new loop per call
            payload = Payload()
            refs.append(weakref.ref(payload))
            async_to_sync(functools.partial(_ause, payload))()
            del payload
    assert len(scope) == 3
    gc.collect()
    assert [ref() for ref in refs] == [None, None, None]


# What a call may make anew each time: a class (a form or serializer factory's), a
# callable instance of one, code compiled for it. Attribution keys on classes and
# code objects: it must not keep them either.
def _made_class(n: int, callable_async: bool = False) -> type:
    def save(self: Any) -> int:
        return n

    async def asave(self: Any) -> int:
        return n

    namespace: dict[str, Any] = {"save": save, "asave": asave}
    if callable_async:
        namespace["__call__"] = asave
    return type(f"Form{n}", (), namespace)


def _compiled(n: int, prefix: str = "") -> Callable[[], Any]:
    namespace: dict[str, Any] = {}
    exec(compile(f"{prefix}def made():\n    return {n}\n", f"<made {n}>", "exec"), namespace)
    return namespace["made"]


MADE_SYNC: dict[str, Callable[[int], tuple[Any, Callable[[], Any]]]] = {
    "method of a class made for the call": lambda n: (cls := _made_class(n), cls().save),
    "class made for the call": lambda n: (cls := _made_class(n), cls),
    "code compiled for the call": lambda n: ((fn := _compiled(n)).__code__, fn),
}
MADE_ASYNC: dict[str, Callable[[int], tuple[Any, Callable[[], Any]]]] = {
    "method of a class made for the call": lambda n: (cls := _made_class(n), cls().asave),
    "instance of a class made for the call": lambda n: (cls := _made_class(n, True), cls()),
    "code compiled for the call": lambda n: ((fn := _compiled(n, "async ")).__code__, fn),
}


def _names(scope: Ledger) -> list[str]:
    return sorted(cause.site for cause, _direction in scope.causes)


@pytest.mark.parametrize("kind", list(MADE_SYNC))
def test_sync_to_async_keeps_no_class_or_code_made_for_the_call(kind: str) -> None:
    refs = []

    async def main() -> None:
        for n in range(3):
            made, target = MADE_SYNC[kind](n)
            refs.append(weakref.ref(made))
            await sync_to_async(target)()
            del made, target

    with recording() as scope:
        asyncio.run(main())
    assert len(scope) == 3
    _settled()
    gc.collect()
    assert [ref() for ref in refs] == [None, None, None]
    if kind != "code compiled for the call":  # each named after its own class
        assert all(f"Form{n}" in " ".join(_names(scope)) for n in range(3))


def test_a_crossing_made_from_code_compiled_for_the_call_keeps_no_code() -> None:
    # The call site's code (the user frame a cause is named after) is cached too.
    refs = []

    async def main() -> None:
        for n in range(3):
            namespace: dict[str, Any] = {"sync_to_async": sync_to_async, "_use": _use}
            source = "async def made():\n    return await sync_to_async(_use)(None)\n"
            exec(compile(source, f"/srv/app/made_{n}.py", "exec"), namespace)
            refs.append(weakref.ref(namespace["made"].__code__))
            await namespace.pop("made")()
            del namespace

    with recording() as scope:
        asyncio.run(main())
    assert len(scope) == 3
    _settled()
    gc.collect()
    assert [ref() for ref in refs] == [None, None, None]
    assert sorted(cause.call_site for cause, _direction in scope.causes) == [
        f"/srv/app/made_{n}.py:2 in made" for n in range(3)
    ]


@pytest.mark.parametrize("kind", list(MADE_ASYNC))
def test_async_to_sync_keeps_no_class_or_code_made_for_the_call(kind: str) -> None:
    refs = []

    def in_thread() -> None:
        for n in range(3):
            made, target = MADE_ASYNC[kind](n)
            refs.append(weakref.ref(made))
            async_to_sync(target)()
            del made, target

    async def main() -> None:
        await sync_to_async(in_thread)()

    with recording() as scope:
        asyncio.run(main())
    assert len(scope) == 4
    gc.collect()
    assert [ref() for ref in refs] == [None, None, None]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_bound_builtin_methods_of_files_are_not_kept_open() -> None:
    # The reported case: `await sync_to_async(fh.read)()` 200 times left 200
    # file descriptors open, because the bound method was a cache key.
    with tempfile.NamedTemporaryFile("wb", delete=False) as data:
        data.write(b"x" * 100)
    try:

        async def main() -> None:
            for _ in range(200):
                handle = open(data.name, "rb")  # noqa: SIM115
                await sync_to_async(handle.read)()
                handle = None  # no close(): freeing it must close it

        gc.collect()
        before = _open_fds()
        with recording() as scope:
            asyncio.run(main())
        _settled()
        gc.collect()
        assert len(scope) == 200
        assert _open_fds() - before <= 2  # the loop's own, if any
    finally:
        os.unlink(data.name)


def test_hops_keep_no_adapter_or_loop() -> None:
    with recording() as scope:

        async def main() -> None:
            await sync_to_async(Payload().method)()

        asyncio.run(main())
    (hop,) = scope.hops()
    # What a kept hop references: its cause, parent and scope; no adapter,
    # no loop, no callable.
    referents = gc.get_referents(hop)
    assert all(
        type(r).__name__ in {"Cause", "Ledger", "str", "bool", "NoneType", "int", "type"}
        for r in referents
    ), referents


# What a request is made with: real requests through Django's handlers.


def select_one_view(request: Any) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("select 1")
        ((one,),) = cursor.fetchall()
    return HttpResponse(str(one))


async def plain_view(request: Any) -> HttpResponse:
    return HttpResponse("plain")


urlpatterns = [path("select-one/", select_one_view), path("plain/", plain_view)]


def _sqlite_connections_alive() -> int:
    gc.collect()
    # type(), not isinstance(): that asks a lazy object (SimpleLazyObject) its __class__,
    # which sets up what it wraps.
    return sum(1 for o in gc.get_objects() if type(o) is sqlite3.Connection)


@pytest.mark.django_db
def test_database_connections_requests_opened_are_not_kept(log_lines: Any) -> None:
    """Each request on a thread of its own, as a threaded WSGI server serves them: the
    thread opens its own connection (Django's connections are per thread), counted
    on the line, and frees it when it ends (the thread's connections go with it).
    hopwatch remembers the DB-API connections it saw (a pool's, checked out again)
    weakly: it keeps none of them alive. sqlite3's cannot be weakly referenced, so it
    is not remembered at all; a strong set kept all 20."""
    served = []

    def serve() -> None:
        response = Client().get("/select-one/")
        served.append((response.status_code, response.content))

    before = _sqlite_connections_alive()
    with override_settings(ROOT_URLCONF=__name__):
        for _ in range(20):
            thread = threading.Thread(target=serve)
            thread.start()
            thread.join()
    assert served == [(200, b"1")] * 20
    assert [line["db_connections"] for line in log_lines.parsed()] == [1] * 20
    assert _sqlite_connections_alive() - before == 0


def test_a_requests_record_and_hops_are_freed_without_the_cyclic_collector() -> None:
    """A finished hop drops its link to its record (finish_hop): a request's record and
    the hops it keeps form no reference cycle, and are freed as soon as the request is
    done with, the cyclic collector off, on either hop path. A hop that kept its link
    made a cycle with the record's list of hops: all 50 records (and their hops) were
    left for the collector."""
    records: list[tuple[weakref.ref[Any], int]] = []

    def sink(record: Any) -> None:
        records.append((weakref.ref(record), len(record)))

    async def main() -> list[int]:
        statuses = []
        for _ in range(50):
            response = await AsyncClient().get("/plain/")
            statuses.append(response.status_code)
        return statuses

    gc.collect()
    add_sink(sink)
    gc.disable()
    try:
        with override_settings(ROOT_URLCONF=__name__):  # startproject's middleware
            statuses = asyncio.run(main())
        alive = [ref() is not None for ref, _hops in records]
    finally:
        gc.enable()
        remove_sink(sink)
    assert statuses == [200] * 50
    # request_started, the chain's 13 middleware hooks (each a hop), the response's close.
    assert [hops for _ref, hops in records] == [15] * 50
    assert alive == [False] * 50
