"""Views, each making a known number of hops of a known kind."""

import asyncio
import contextvars
import io
import json
import time
from collections import Counter

from asgiref.sync import SyncToAsync, async_to_sync, sync_to_async
from django.http import FileResponse, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.views import View

from hopwatch._recorder import current_ledger
from tests.testapp.models import Item


async def async_view(request):
    return HttpResponse("async")


def sync_view(request):
    return HttpResponse("sync")


def file_view(request):
    return FileResponse(io.BytesIO(b"file body"))


#: The files ``kept_file_view`` served, to see whether each was closed.
served_files: list[io.BytesIO] = []


async def kept_file_view(request):
    """A FileResponse with a cookie set: what the app's response holds and sets."""
    body = io.BytesIO(b"file body")
    served_files.append(body)
    response = FileResponse(body)
    response.set_cookie("app_state", "kept")
    return response


#: One response object returned to every request (a cached page): a shared object.
SHARED_RESPONSE = HttpResponse("shared")


def shared_response_view(request):
    return SHARED_RESPONSE


class AsyncClassView(View):
    async def get(self, request):
        return HttpResponse("class")


def _noop():
    return None


async def hops_view(request, n):
    """n extra sync_to_async hops, for concurrency tests."""
    for _ in range(n):
        await sync_to_async(_noop)()
    return HttpResponse(str(n))


async def _deepest():
    return await sync_to_async(_noop)()


def _middle():
    async_to_sync(_deepest)()


async def nested_view(request):
    """async view -> sync_to_async -> async_to_sync -> sync_to_async: depths 1, 2, 3."""
    await sync_to_async(_middle)()
    return HttpResponse("nested")


async def orm_loop_view(request):
    """The N+1 shape: one aget per item."""
    ids = [pk async for pk in Item.objects.order_by("pk").values_list("pk", flat=True)]
    names = [(await Item.objects.aget(pk=pk)).name for pk in ids]
    return HttpResponse(",".join(names))


async def orm_batch_view(request):
    names = [item.name async for item in Item.objects.order_by("pk")]
    return HttpResponse(",".join(names))


async def orm_count_view(request):
    count = await Item.objects.acount()
    return HttpResponse(str(count))


def _chunks():
    yield b"a"
    yield b"b"


async def _achunks():
    yield b"a"
    yield b"b"


def stream_sync_view(request):
    return StreamingHttpResponse(_chunks())


async def stream_async_view(request):
    return StreamingHttpResponse(_achunks())


class _EmptyBody:
    """A class-based iterator with nothing in it: its first step ends it."""

    def __iter__(self):
        return self

    def __next__(self):
        raise StopIteration


def empty_stream_view(request):
    return StreamingHttpResponse(_EmptyBody())


def bad_request_view(request):
    return HttpResponseBadRequest("bad input")


def reentrant_stream_view(request):
    """A body that steps its own response's iterator from within a step: refused
    ("generator already executing"), then two chunks."""
    response = None

    def chunks():
        try:
            first = next(response._iterator)
        except ValueError as exc:
            first = b"caught: " + str(exc).encode()
        yield first
        yield b"|second"

    response = StreamingHttpResponse(chunks())
    return response


async def error_view(request):
    raise ValueError("boom")


def sync_error_view(request):
    raise ValueError("boom")


#: Views that reached their slow part, by X-Request-ID (else the view's name): a
#: test cancels or disconnects at that point instead of after a guessed delay,
#: which a loaded machine may not keep to.
REACHED: Counter[str] = Counter()


def _reached(request, name):
    REACHED[request.headers.get("X-Request-ID") or name] += 1


async def slow_view(request):
    _reached(request, "slow")
    await sync_to_async(time.sleep)(0.5)  # the marker is seen once this hop is awaited
    return HttpResponse("slow")


async def sleepy_async_view(request):
    _reached(request, "sleepy")
    await asyncio.sleep(float(request.GET.get("s", "0.05")))
    return HttpResponse("slept")


#: How long the request served inside another's view sleeps (nested_serving_view).
INNER_NAP = 0.02


def napping_view(request):
    time.sleep(INNER_NAP)
    return HttpResponse("napped")


def nested_serving_view(request):
    """A sync view that serves another request inside itself through the test Client:
    an async view that sleeps, whose crossing (async_to_sync) is made in this view's
    run, in the inner request's scope."""
    from django.test import Client

    inner = Client().get("/sleepy/", {"s": str(INNER_NAP)})
    return HttpResponse(b"served " + inner.content)


async def async_nested_serving_view(request):
    """An async view that serves another request inside itself through the AsyncClient:
    a sync view that sleeps, whose crossing (sync_to_async) is made in this view's run
    (an async_to_sync under WSGI), in the inner request's scope."""
    from django.test import AsyncClient

    inner = await AsyncClient().get("/napping/")
    return HttpResponse(b"served " + inner.content)


@sync_to_async
def _decorated_helper():
    return 1


async def decorated_view(request):
    await _decorated_helper()
    return HttpResponse("decorated")


def _burn_cpu(seconds):
    """Busy work the sampling profiler can see."""
    end = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < end:
        total += sum(range(200))
    return total


def sync_orm_view(request):
    """A sync view that queries the database and burns CPU (for profiles under ASGI)."""
    names = [item.name for item in Item.objects.all()]
    # Enough ORM work for the sampler to see, in one line: consecutive samples
    # then fall in the same count() frame, which the profile keeps whole (a
    # loop alternating two lines splits it into nodes too small to be kept).
    query = Item.objects.filter(name__startswith="x")
    for _ in range(300):
        query.count()
    _burn_cpu(0.05)
    return HttpResponse(",".join(names) or "none")


#: Hops started by each counted_stream_view response's iterator, in request order (an
#: oracle independent of hopwatch).
STREAM_HOPS_STARTED: list[int] = []


async def counted_stream_view(request):
    """20 chunks, 20 ms apart, one hop before each; counts the hops it starts."""
    started = len(STREAM_HOPS_STARTED)
    STREAM_HOPS_STARTED.append(0)

    async def body():
        for _ in range(20):
            STREAM_HOPS_STARTED[started] += 1
            await sync_to_async(_noop)()
            yield b"chunk\n"
            await asyncio.sleep(0.02)

    return StreamingHttpResponse(body())


async def child_task_view(request):
    """A hop in a task the view spawns, and one in a TaskGroup's task."""
    await asyncio.create_task(sync_to_async(_noop)())
    async with asyncio.TaskGroup() as group:
        group.create_task(sync_to_async(_noop)())
    return HttpResponse("children")


async def context_view(request):
    """What asgiref passes over at a crossing: the context variables on the loop and in
    a thread-sensitive sync_to_async's thread; where hopwatch finds the request there;
    and the class of the ThreadSensitiveContext the handler entered."""

    def seen() -> dict[str, object]:
        ledger = current_ledger()
        return {
            "variables": sorted(variable.name for variable in contextvars.copy_context()),
            "ledger": None if ledger is None else id(ledger),
        }

    context = SyncToAsync.thread_sensitive_context.get(None)
    body = {
        "loop": seen(),
        "thread": await sync_to_async(seen)(),
        "context": None if context is None else type(context).__name__,
    }
    return HttpResponse(json.dumps(body), content_type="application/json")


async def task_view(request):
    """The qualified name of the coroutine of the task the view runs in."""
    return HttpResponse(asyncio.current_task().get_coro().__qualname__)


#: The task detached_view starts and leaves running, what it waits for, and the
#: ThreadSensitiveContext it holds (the request's).
DETACHED: list[tuple[asyncio.Task, asyncio.Event, object]] = []


async def detached_view(request):
    """Starts a task the view does not wait for: one crossing, once ``go`` is set
    (the test sets it when the request is over)."""
    go = asyncio.Event()

    async def straggler():
        await go.wait()
        await sync_to_async(_noop, thread_sensitive=False)()

    task = asyncio.create_task(straggler())
    DETACHED.append((task, go, SyncToAsync.thread_sensitive_context.get(None)))
    return HttpResponse("detached")


# The app profiling a block of its own with pyinstrument (async-aware, its default),
# written where settings.APP_PROFILE_DIR says.


def _app_profiled_work():
    # 20 ms of Python: plenty of the profilers' samples land in this frame.
    deadline = time.perf_counter() + 0.02
    n = 0
    while time.perf_counter() < deadline:
        n += 1
    return n


def _write_app_profile(profiler, name):
    from pathlib import Path

    from django.conf import settings

    (Path(settings.APP_PROFILE_DIR) / f"{name}.txt").write_text(profiler.output_text())


def sync_app_profiler_view(request):
    from pyinstrument import Profiler

    with Profiler(interval=0.0001) as profiler:
        _app_profiled_work()
    _write_app_profile(profiler, "sync")
    return HttpResponse("sync, profiled by the app")


async def async_app_profiler_view(request):
    from pyinstrument import Profiler

    with Profiler(interval=0.0001) as profiler:
        _app_profiled_work()
    _write_app_profile(profiler, "async")
    return HttpResponse("async, profiled by the app")


def sync_busy_view(request):
    """The same work, with no profiler of the app's."""
    _app_profiled_work()
    return HttpResponse("sync, busy")


#: A function whose name and file carry markup (code an app may run: a name or a
#: path is not chosen with HTML in mind), to show how a profile embeds them.
MARKUP_FUNCTION = "</script><script>alert('fn')</script><!--"
MARKUP_FILE = "/srv/</script><script>alert('file')</script>&\u2028.py"
_markup_code = compile("def f(seconds):\n    return _burn_cpu(seconds)\n", MARKUP_FILE, "exec")
_markup_namespace = {"_burn_cpu": _burn_cpu}
exec(_markup_code, _markup_namespace)
_markup_named = type(_burn_cpu)(
    _markup_namespace["f"].__code__.replace(co_name=MARKUP_FUNCTION, co_qualname=MARKUP_FUNCTION),
    _markup_namespace,
)


def markup_named_view(request):
    _markup_named(0.05)
    return HttpResponse("markup")


def query_fields_view(request):
    """Reads the query string (Django refuses one of too many fields: a 400)."""
    return HttpResponse(f"{len(request.GET)} fields")
