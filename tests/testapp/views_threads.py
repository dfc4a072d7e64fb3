"""Views for the thread and executor facts (tests/test_threads.py): known answers."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import SyncToAsync, async_to_sync, sync_to_async
from django.db import connection
from django.http import HttpResponse, JsonResponse

#: How many calls the gathering views make at once.
GATHERED = 5


def _connect():
    """Open this thread's database connection if it has none (Django's are per thread)."""
    connection.ensure_connection()
    return threading.get_ident()


def _connect_together(barrier):
    # Every call waits here until all of them run: they are in flight together by
    # construction, so the expected concurrency is exact, not a race.
    ident = _connect()
    barrier.wait()
    return ident


async def gather_view(request):
    """Five thread-sensitive calls gathered: all awaited at once, run one after another."""
    threads = await asyncio.gather(*(sync_to_async(_connect)() for _ in range(GATHERED)))
    return HttpResponse(str(len(set(threads))))


async def gather_pool_view(request):
    """Five thread_sensitive=False calls gathered: they run side by side, a thread each."""
    barrier = threading.Barrier(GATHERED, timeout=30)
    calls = (
        sync_to_async(_connect_together, thread_sensitive=False)(barrier) for _ in range(GATHERED)
    )
    threads = await asyncio.gather(*calls)
    return HttpResponse(str(len(set(threads))))


_OWN = ThreadPoolExecutor(max_workers=2, thread_name_prefix="own")


def _noop():
    return None


async def own_executor_view(request):
    """One call on an executor the view gives, one in the loop's default pool."""
    await sync_to_async(_noop, thread_sensitive=False, executor=_OWN)()
    await sync_to_async(_noop, thread_sensitive=False)()
    return HttpResponse("own")


async def _back_to_sync():
    await sync_to_async(_noop)()


def _sync_then_async():
    async_to_sync(_back_to_sync)()


async def nested_view(request):
    """async -> thread-sensitive sync -> async on the request's loop -> sync, back on that thread."""
    await sync_to_async(_sync_then_async)()
    return HttpResponse("nested")


def sync_cold_loop_view(request):
    """A sync view that calls async code: under WSGI a new event loop in a new thread."""
    async_to_sync(_back_to_sync)()
    return HttpResponse("cold")


def _wait_for(release):
    if not release.wait(timeout=30):
        raise TimeoutError("never released")


async def saturate_view(request):
    """Five pool calls at once, held until all five are queued: a pool of 2 saturates."""
    release = threading.Event()
    calls = [
        asyncio.ensure_future(sync_to_async(_wait_for, thread_sensitive=False)(release))
        for _ in range(GATHERED)
    ]
    await asyncio.sleep(0)  # each task runs to its crossing's call: all five are submitted
    release.set()
    await asyncio.gather(*calls)
    return HttpResponse("saturated")


#: Threads of hold_pool_view's pool calls running now, and what lets them return
#: (a test reads the pool meanwhile, then sets it).
HOLDING: list[int] = []
HOLD_RELEASE = threading.Event()


def _hold():
    HOLDING.append(threading.get_ident())
    if not HOLD_RELEASE.wait(timeout=30):
        raise TimeoutError("never released")


async def hold_pool_view(request):
    """Two pool calls that run until HOLD_RELEASE is set: the pool busy, for a while."""
    await asyncio.gather(*(sync_to_async(_hold, thread_sensitive=False)() for _ in range(2)))
    return HttpResponse("held")


#: What each of the gathered sleeping calls sleeps, in seconds.
NAP = 0.01


async def gather_sleep_view(request):
    """Five thread-sensitive calls of NAP each, gathered: they run one after another
    on one thread, each queued behind the ones before it."""
    await asyncio.gather(*(sync_to_async(time.sleep)(NAP) for _ in range(GATHERED)))
    return HttpResponse("slept")


async def _sleep_there():
    await sync_to_async(time.sleep)(3 * NAP)


def _sleep_then_async():
    time.sleep(2 * NAP)
    async_to_sync(_sleep_there)()


async def pinned_again_view(request):
    """Behind a sync-only middleware (which holds its thread for the view): a
    thread-sensitive call, on that same thread, that goes async again."""
    await sync_to_async(_sleep_then_async)()
    return HttpResponse("pinned")


#: How many cold async_to_sync calls the cold-loops views make, one after another.
COLD_CALLS = 3


def sync_cold_loops_view(request):
    """A sync view that calls async code three times: under WSGI each call makes a new
    event loop in a new thread, which ends before the next starts (and may leave the
    next one its id)."""
    for _ in range(COLD_CALLS):
        async_to_sync(_noop_async)()
    return HttpResponse("cold")


def sync_cold_loops_one_thread_view(request):
    """The same inside asgiref's AsyncSingleThreadContext (3.13): one thread for all."""
    from asgiref.sync import AsyncSingleThreadContext

    with AsyncSingleThreadContext():
        for _ in range(COLD_CALLS):
            async_to_sync(_noop_async)()
    return HttpResponse("cold")


async def _noop_async():
    return None


#: How many pool calls the outliving-task views' tasks make.
LATE_CALLS = 3


def _pool_nap():
    time.sleep(NAP)


def _outliving_task(n: int, after: threading.Event, done: threading.Event):
    """A coroutine for async_to_sync that starts a task and returns at once: the task
    waits until ``after`` is set (the async_to_sync has returned), makes ``n`` pool
    calls of NAP each, then sets ``done``."""
    tasks = set()

    async def late():
        try:
            while not after.is_set():
                await asyncio.sleep(0.001)
            for _ in range(n):
                await sync_to_async(_pool_nap, thread_sensitive=False)()
        finally:
            done.set()

    async def start():
        task = asyncio.get_running_loop().create_task(late())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return start


def outliving_task_view(request):
    """A sync view whose async_to_sync starts a task that outlives it: the task's
    crossings are made after that async_to_sync returned, while the view still runs."""
    after, done = threading.Event(), threading.Event()
    async_to_sync(_outliving_task(LATE_CALLS, after, done))()
    after.set()
    if not done.wait(timeout=30):
        raise TimeoutError("the task never finished")
    time.sleep(NAP)
    return HttpResponse("outlived")


def _running_tasks(n: int, started: threading.Event, done: threading.Event):
    tasks = set()

    def ended(task):
        tasks.discard(task)
        if not tasks:
            done.set()

    async def start():
        for _ in range(n):
            task = asyncio.get_running_loop().create_task(
                sync_to_async(_pool_nap, thread_sensitive=False)()
            )
            tasks.add(task)
            task.add_done_callback(ended)
        await asyncio.sleep(0)  # each task makes its crossing, then this returns
        started.set()

    return start


def tasks_still_running_view(request):
    """A sync view whose async_to_sync starts pool calls and returns while they run:
    they end after it, inside the view's own run, which waits for them and then runs
    on longer than their runs together. (The calls run at the same time: where their
    runs add up to more than the view's, the view's work is bounded and no longer
    adds up with the overhead to its wall time, docs/how-it-works.md. A fixed sleep
    did not always outlast them on a loaded machine.)"""
    started, done = threading.Event(), threading.Event()
    began = time.monotonic()
    async_to_sync(_running_tasks(LATE_CALLS, started, done))()
    assert started.is_set()
    if not done.wait(timeout=30):  # the calls end during this
        raise TimeoutError("the pool calls never ended")
    time.sleep((LATE_CALLS + 1) * (time.monotonic() - began) + NAP)
    return HttpResponse("ran")


async def timed_out_call_view(request):
    """A pool call that outlasts the wait_for around it: the caller resumes (timed
    out) while its code still runs."""
    release = threading.Event()
    try:
        await asyncio.wait_for(
            sync_to_async(_wait_for, thread_sensitive=False)(release), timeout=5 * NAP
        )
    except TimeoutError:
        pass
    finally:
        release.set()
    return HttpResponse("timed out")


async def refused_async_to_sync_view(request):
    """async_to_sync called on the loop's own thread: asgiref refuses it (RuntimeError)
    before anything crosses. Then one thread-sensitive call."""
    try:
        async_to_sync(_noop_async)()
    except RuntimeError:
        pass
    else:
        raise AssertionError("asgiref did not refuse")
    await sync_to_async(_noop)()
    return HttpResponse("refused")


class OwnHandlerSyncToAsync(SyncToAsync):
    """A SyncToAsync with a thread_handler of its own that calls asgiref's through
    super(), as channels' ``database_sync_to_async`` (DatabaseSyncToAsync) does."""

    def thread_handler(self, loop, *args, **kwargs):
        threading.current_thread()  # its own work around asgiref's (channels: close_old_connections)
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            threading.current_thread()


def _nap_then_async():
    time.sleep(2 * NAP)
    async_to_sync(_noop_async)()


async def own_handler_view(request):
    """A crossing through a SyncToAsync subclass's own thread_handler that naps, then
    goes async again (a nested async_to_sync)."""
    await OwnHandlerSyncToAsync(_nap_then_async)()
    return HttpResponse("own handler")


async def cancelled_view(request):
    """One crossing at a time: a timeout cancels a pool call that sleeps on after it,
    and ends during the next crossing."""
    try:
        await asyncio.wait_for(sync_to_async(time.sleep, thread_sensitive=False)(2 * NAP), NAP / 2)
    except TimeoutError:
        pass
    await sync_to_async(time.sleep, thread_sensitive=False)(5 * NAP)
    return HttpResponse("cancelled")


def _own_nap(seconds, together=None):
    """Sleeps ``seconds``, once every call in ``together`` (a barrier) has started;
    returns its thread."""
    if together is not None:
        together.wait()
    time.sleep(seconds)
    return threading.get_ident()


#: One adapter for every call, as ``@database_sync_to_async`` on a module-level
#: function makes it: calls awaited at once share it. Thread-sensitive (channels'
#: default), and on the loop's pool.
own_nap = OwnHandlerSyncToAsync(_own_nap)
own_nap_pool = OwnHandlerSyncToAsync(_own_nap, thread_sensitive=False)
#: The two calls' sleeps, in seconds, in the order each pair is gathered.
OWN_NAPS = (10 * NAP, 20 * NAP)


async def own_handler_gather_view(request):
    """Each module-level adapter awaited twice at once (gather): on the pool, side by
    side on a thread each (both in flight together by construction), then
    thread-sensitive, one after the other on the request's thread. Answers each
    call's thread, in the same order."""
    together = threading.Barrier(2, timeout=30)
    pool = await asyncio.gather(*(own_nap_pool(seconds, together) for seconds in OWN_NAPS))
    sensitive = await asyncio.gather(*(own_nap(seconds) for seconds in OWN_NAPS))
    return JsonResponse({"pool": pool, "sensitive": sensitive})
