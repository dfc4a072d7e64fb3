"""What hopwatch's profile of an ASGI request leaves behind it.

* A task the request started (``asyncio.create_task`` copies the request's
  context) kept hopwatch's profiler as pyinstrument's one async-aware profiler
  of that context: after the request, ``with Profiler():`` in the task was
  refused ("There is already a profiler running"), as it is not without
  hopwatch, and hopwatch's profiler and its last session lived as long as the
  task. Now a stopped profile's target is recognised as no one's, and the
  profiler keeps no session.
* ``hopwatch.uninstall()`` while a profiled request was in flight put
  pyinstrument's own ``subscribe`` back at once: the request's view, starting
  its own profiler, was refused (500). Now it is put back when the last
  profile running stops.
"""

from __future__ import annotations

import asyncio
import gc
import logging

from django.http import HttpResponse
from django.test import AsyncClient, override_settings
from django.urls import path
from pyinstrument import Profiler
from pyinstrument.session import Session

from hopwatch import profiling
from hopwatch.conf import SETTINGS
from tests.helpers import logged

TOKEN = "t0k3n-for-the-after-the-request-tests"
HEADER = SETTINGS["PROFILE_HEADER"].default

gates: dict[str, asyncio.Event] = {}
results: list[str] = []
tasks: set[asyncio.Task] = set()


async def _job_profiling_itself() -> None:
    await gates["job"].wait()  # the request is over by then
    try:
        with Profiler():
            await asyncio.sleep(0.001)
        results.append("profiled")
    except Exception as exc:
        results.append(f"refused: {exc}")


async def starts_a_task(request):
    task = asyncio.create_task(_job_profiling_itself())
    tasks.add(task)
    return HttpResponse("started")


async def profiles_itself_later(request):
    await gates["view"].wait()
    with Profiler():
        await asyncio.sleep(0.001)
    return HttpResponse("profiled itself")


async def _job_making_a_profiled_request() -> None:
    await gates["job"].wait()  # the request is over by then
    response = await AsyncClient().get("/plain/", headers={HEADER: TOKEN})
    results.append(f"{response.status_code} {response.content.decode()}")


async def starts_a_requesting_task(request):
    task = asyncio.create_task(_job_making_a_profiled_request())
    tasks.add(task)
    return HttpResponse("started")


async def makes_a_profiled_request(request):
    response = await AsyncClient().get("/plain/", headers={HEADER: TOKEN})
    return HttpResponse(f"inner: {response.status_code} {response.content.decode()}")


async def plain(request):
    await asyncio.sleep(0.001)
    return HttpResponse("plain")


urlpatterns = [
    path("starts-a-task/", starts_a_task),
    path("profiles-itself-later/", profiles_itself_later),
    path("starts-a-requesting-task/", starts_a_requesting_task),
    path("makes-a-profiled-request/", makes_a_profiled_request),
    path("plain/", plain),
]


def options(tmp_path):
    profiling.rate_limiters.clear()
    return {"PROFILE_DIR": str(tmp_path), "PROFILE_TOKEN": TOKEN}


def sessions_alive() -> int:
    gc.collect()
    return sum(type(o) is Session for o in gc.get_objects())


@override_settings(ROOT_URLCONF=__name__)
def test_a_task_the_request_started_profiles_itself_after_it(tmp_path, log_lines):
    results.clear()

    async def scenario() -> tuple[int, int]:
        gates["job"] = asyncio.Event()
        before = sessions_alive()
        response = await AsyncClient().get("/starts-a-task/", headers={HEADER: TOKEN})
        assert profiling.written(timeout=30)
        alive = sessions_alive() - before  # the task waits still, its context copied
        gates["job"].set()
        await asyncio.gather(*tasks)
        tasks.clear()
        return response.status_code, alive

    with override_settings(HOPWATCH=options(tmp_path)):
        status, alive = asyncio.run(scenario())
    assert status == 200
    assert results == ["profiled"]  # as without hopwatch
    assert alive == 0  # no session of hopwatch's kept by the task
    (line,) = log_lines.parsed()
    assert line["profile"].endswith(".html")  # the request's own profile, written
    assert not profiling.running and profiling._slot_holders == {}


@override_settings(ROOT_URLCONF=__name__)
def test_uninstall_while_a_profiled_request_runs(tmp_path, log_lines):
    from pyinstrument.stack_sampler import StackSampler

    import hopwatch

    own = StackSampler.subscribe
    if own.__name__ == "subscribe_yielding":
        own = own.__wrapped__

    async def scenario() -> tuple[int, bytes, list[str]]:
        gates["view"] = asyncio.Event()

        async def meanwhile() -> list[str]:
            while not profiling.running:
                await asyncio.sleep(0.001)
            hopwatch.uninstall()
            names = [StackSampler.subscribe.__name__]  # kept while the profile runs
            gates["view"].set()
            return names

        response, names = await asyncio.gather(
            AsyncClient(raise_request_exception=False).get(
                "/profiles-itself-later/", headers={HEADER: TOKEN}
            ),
            meanwhile(),
        )
        return response.status_code, response.content, names

    try:
        with override_settings(HOPWATCH=options(tmp_path)):
            status, content, names = asyncio.run(scenario())
        assert (status, content) == (200, b"profiled itself")
        assert names == ["subscribe_yielding"]
        assert StackSampler.subscribe is own  # put back as the profile stopped
        assert not profiling.running and profiling._slot_holders == {}
    finally:
        hopwatch.install()


@override_settings(ROOT_URLCONF=__name__)
def test_a_task_the_request_started_makes_a_profiled_request_after_it(
    tmp_path, log_lines, monkeypatch
):
    """The task's context holds the stopped profile's target still: the in-process
    request it makes (its context copied from the task's) is profiled, with no
    "was already running" said (that target is no one's)."""
    results.clear()
    monkeypatch.setattr(profiling, "_given_up_said", profiling.RateLimiter())

    async def scenario() -> int:
        gates["job"] = asyncio.Event()
        response = await AsyncClient().get("/starts-a-requesting-task/", headers={HEADER: TOKEN})
        assert profiling.written(timeout=30)
        gates["job"].set()
        await asyncio.gather(*tasks)
        tasks.clear()
        return response.status_code

    with logged("hopwatch", logging.WARNING) as said, override_settings(
        HOPWATCH=options(tmp_path)
    ):
        status = asyncio.run(scenario())
        assert profiling.written(timeout=30)
    assert (status, results, said) == (200, ["200 plain"], [])
    lines = log_lines.parsed()
    assert [line["route"] for line in lines] == ["/starts-a-requesting-task/", "/plain/"]
    assert all(line["profile"].endswith(".html") for line in lines)  # each its own
    assert sorted(p.name for p in tmp_path.glob("*.html")) == sorted(
        line["profile"] for line in lines
    )
    assert not profiling.running and profiling._slot_holders == {}


@override_settings(ROOT_URLCONF=__name__)
def test_a_request_made_inside_a_profiled_one_is_not_said_given_up(
    tmp_path, log_lines, monkeypatch
):
    """The view makes a token-profiled in-process request: the outer request's profile
    holds the slot and shows the inner one, which takes none, and nothing is said (it
    was said that an app's profiler "was already running")."""
    monkeypatch.setattr(profiling, "_given_up_said", profiling.RateLimiter())

    async def scenario() -> tuple[int, bytes]:
        response = await AsyncClient().get("/makes-a-profiled-request/", headers={HEADER: TOKEN})
        return response.status_code, response.content

    with logged("hopwatch", logging.WARNING) as said, override_settings(
        HOPWATCH=options(tmp_path)
    ):
        assert asyncio.run(scenario()) == (200, b"inner: 200 plain")
        assert profiling.written(timeout=30)
    assert said == []
    inner, outer = log_lines.parsed()
    assert (inner["route"], outer["route"]) == ("/plain/", "/makes-a-profiled-request/")
    assert "profile" not in inner and outer["profile"].endswith(".html")
    assert [p.name for p in tmp_path.glob("*.html")] == [outer["profile"]]
    assert not profiling.running and profiling._slot_holders == {}
