"""Views whose hop count is set by the request: ``hops = 15 (the middleware stack) + f(params)``."""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.http import HttpResponse, StreamingHttpResponse


def noop() -> None:
    return None


def _held() -> None:
    """The innermost code of a held nested unit: marks that it runs, then takes ``hold`` s."""
    HELD[_request_id.get()] += 1
    time.sleep(_hold.get())


@contextlib.contextmanager
def _ending(depth: int) -> Iterator[None]:
    """Records in ``ENDED`` how the hop made inside the block ended, as its caller saw it."""
    rid = _request_id.get()
    try:
        yield
    except BaseException as exc:
        ENDED[rid].append((depth, type(exc).__name__))
        raise
    ENDED[rid].append((depth, "ok"))


async def _deepest() -> None:
    HOPS_STARTED[_request_id.get()] += 1
    with _ending(3):
        await sync_to_async(_held if _hold.get() else noop)()


def _middle() -> None:
    HOPS_STARTED[_request_id.get()] += 1
    with _ending(2):
        async_to_sync(_deepest)()


#: hops per unit of ``n`` for each ``kind``
KINDS = {"ts": 1, "pool": 1, "nested": 3}

#: units started per X-Request-ID, counted by the view itself (an oracle independent of hopwatch)
UNITS_STARTED: Counter[str] = Counter()
#: hops started per X-Request-ID, at every depth, counted just before each one: a
#: cancelled unit may not make all of its hops (its thread may never start), so
#: units x hops per unit is not always what ran
HOPS_STARTED: Counter[str] = Counter()
#: how each hop of a nested unit ended, per X-Request-ID, as its caller saw it:
#: (depth, "ok" or the exception's class name), innermost first. The app's own
#: account, independent of hopwatch.
ENDED: defaultdict[str, list[tuple[int, str]]] = defaultdict(list)
#: held nested units whose innermost code started, per X-Request-ID
HELD: Counter[str] = Counter()
#: the X-Request-ID, for the nested unit's code (asgiref carries it across hops)
_request_id: ContextVar[str] = ContextVar("stress_request_id", default="")
#: seconds the innermost code of a nested unit takes (``?hold=``; 0: it is ``noop``)
_hold: ContextVar[float] = ContextVar("stress_hold", default=0.0)


async def _unit(kind: str) -> None:
    if kind == "ts":  # the request's own thread (ThreadSensitiveContext)
        await sync_to_async(noop)()
    elif kind == "pool":  # the loop's shared default executor: threads shared by requests
        await sync_to_async(noop, thread_sensitive=False)()
    else:  # sync_to_async -> async_to_sync -> sync_to_async: 3 hops, depths 1-3
        with _ending(1):
            await sync_to_async(_middle)()


async def load(request):
    """``?n=N&kind=ts|pool|nested&sleep=S&gap=G&hold=H``: sleeps S s, then ``KINDS[kind] * n`` hops.

    The units yield to the loop between hops (for G seconds, default 0), so
    concurrent requests interleave their hops as much as possible. A nested
    unit's innermost code takes H s (default 0: it returns at once).
    """
    n = int(request.GET.get("n", "0"))
    kind = request.GET.get("kind", "ts")
    gap = float(request.GET.get("gap", "0"))
    rid = request.headers.get("X-Request-ID", "")
    _request_id.set(rid)
    _hold.set(float(request.GET.get("hold", "0")))
    await asyncio.sleep(float(request.GET.get("sleep", "0")))
    for _ in range(n):
        UNITS_STARTED[rid] += 1
        HOPS_STARTED[rid] += 1
        await _unit(kind)
        await asyncio.sleep(gap)
    return HttpResponse(f"{kind} {n}\n")


async def slow_stream(request):
    """``?chunks=C&delay=S``: C chunks, S seconds apart, one hop before each chunk."""
    chunks = int(request.GET.get("chunks", "5"))
    delay = float(request.GET.get("delay", "0.05"))

    async def body():
        for i in range(chunks):
            await sync_to_async(noop)()
            yield f"chunk {i}\n".encode()
            await asyncio.sleep(delay)

    return StreamingHttpResponse(body(), content_type="text/plain")


async def stream_error(request):
    """One chunk, one hop, then the iterator raises: the response is cut short."""

    async def body():
        await sync_to_async(noop)()
        yield b"first chunk\n"
        raise RuntimeError("the stress suite's deliberate error mid-stream")

    return StreamingHttpResponse(body(), content_type="text/plain")


async def hang(request):
    """``?n=N``: N hops, then waits (far longer than any test) until cancelled."""
    for _ in range(int(request.GET.get("n", "0"))):
        await sync_to_async(noop)()
    await asyncio.sleep(3600)
    return HttpResponse("never\n")


def sync_stream_error(request):
    """A sync view whose sync iterator raises after one chunk (WSGI's streaming shape)."""

    def body():
        yield b"first chunk\n"
        raise RuntimeError("the stress suite's deliberate error mid-stream")

    return StreamingHttpResponse(body(), content_type="text/plain")


async def fire_and_forget(request):
    """Starts a task that makes a hop after the response: that hop finishes 'late'."""
    served.append(weakref.ref(request))

    async def later() -> None:
        await asyncio.sleep(0.05)
        await sync_to_async(noop)()

    _background.add(task := asyncio.get_running_loop().create_task(later()))
    task.add_done_callback(_background.discard)
    return HttpResponse("started\n")


_background: set[asyncio.Task[None]] = set()


async def session_view(request):
    """Stores something in the session: Django creates a session and sets its cookie."""
    if hasattr(request.session, "aset"):  # Django 5.0+
        await request.session.aset("seen", True)
    else:
        await sync_to_async(request.session.__setitem__)("seen", True)
    return HttpResponse("session\n")


#: Weak references to the requests ``remember_request`` served.
served: list[weakref.ref[Any]] = []


def remember_request(request):
    """Keeps a weak reference to its request (does the request outlive the call?)."""
    served.append(weakref.ref(request))
    return HttpResponse("remembered\n")
