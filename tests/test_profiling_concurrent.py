"""hopwatch's profiles of concurrent ASGI requests show each request's own code only.

Under ASGI hopwatch's main profiler is pyinstrument's async-aware one, bound to the
request's async context. With ``async_mode="enabled"`` pyinstrument records
whatever the event loop runs while the request is switched out and it cannot tell
what the request awaits as the request's own frames: another request's view code
showed up in the profile (tens of ms of it, below the request's own stack). In
``"strict"`` mode that time is an ``[out-of-context]`` frame. A request's own
awaits still read as ``[await]``, and its ``sync_to_async`` hops' frames are there.
"""

from __future__ import annotations

import asyncio
import json
import time

from django.http import HttpResponse
from django.test import AsyncClient, override_settings
from django.urls import path

from hopwatch import profiling
from hopwatch.conf import SETTINGS

TOKEN = "t0k3n-for-the-concurrent-profile-tests"
HEADER = SETTINGS["PROFILE_HEADER"].default


def _busy(ms: float) -> None:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


def code_of_the_sync_view(ms: float) -> None:
    _busy(ms)


def code_of_the_async_view(ms: float) -> None:
    _busy(ms)


def sync_view(request):
    code_of_the_sync_view(20)  # in the hop's worker thread, while the loop runs others
    return HttpResponse("sync")


async def async_view(request):
    code_of_the_async_view(15)  # on the event loop
    await asyncio.sleep(0.005)
    code_of_the_async_view(5)
    return HttpResponse("async")


urlpatterns = [path("sync/", sync_view), path("async/", async_view)]

OWN = {"/sync/": "code_of_the_sync_view", "/async/": "code_of_the_async_view"}


def frame_names(profile_dir, line):
    """The functions in a request's profile: its speedscope file's frames, and every
    frame sampled as its HTML page's session data holds them. The speedscope file
    leaves out a frame under 1% of the profile (pyinstrument's
    remove_irrelevant_nodes): a request a loaded machine kept waiting 5.8 s had its
    view's own 20 ms there only. The page's data is unfiltered (its script filters
    what it shows), so other requests' code is looked for there too."""
    speedscope = profile_dir / line["profile"].replace(".html", ".speedscope.json")
    names = {frame["name"] for frame in json.loads(speedscope.read_text())["shared"]["frames"]}
    page = (profile_dir / line["profile"]).read_text()
    start = page.rindex(profiling._SESSION_DATA) + len(profiling._SESSION_DATA)
    data, _end = json.JSONDecoder().raw_decode(page, start)
    # pyinstrument 5: "frame_tree", each frame's "identifier" (function NUL file NUL
    # line); 4.x: "root_frame", each frame's "function", filtered as the speedscope file
    # is (its page renders the processed tree: there the loaded-machine case can recur)
    frames = [data["frame_tree"] if "frame_tree" in data else data["root_frame"]]
    while frames:
        frame = frames.pop()
        if frame is None:
            continue
        names.add(frame["identifier"].split("\x00")[0] if "identifier" in frame else frame["function"])
        frames.extend(frame.get("children", ()))
    return names


@override_settings(ROOT_URLCONF=__name__)
def test_a_profile_shows_no_other_requests_code(tmp_path, log_lines):
    """40 token-profiled requests, 8 at a time, sync and async views alternating:
    no profile has the other view's function in it; each has its own."""
    profile_dir = tmp_path / "profiles"
    options = {
        "PROFILE_DIR": str(profile_dir),
        "PROFILE_TOKEN": TOKEN,
        "PROFILE_RATE_LIMIT": 1000,
        "PROFILE_INTERVAL": 0.0005,
    }
    profiling.rate_limiters.clear()

    async def requests() -> list[int]:
        gate = asyncio.Semaphore(8)

        async def one(i: int) -> int:
            async with gate:
                url = "/sync/" if i % 2 else "/async/"
                response = await AsyncClient().get(url, headers={HEADER: TOKEN})
                return response.status_code

        return await asyncio.gather(*(one(i) for i in range(40)))

    with override_settings(HOPWATCH=options):
        assert asyncio.run(requests()) == [200] * 40
    assert profiling.written(timeout=60)
    lines = log_lines.parsed()
    assert len(lines) == 40 and all("profile" in line for line in lines)
    foreign = []
    for line in lines:
        names = frame_names(profile_dir, line)
        assert OWN[line["route"]] in names
        if line["route"] == "/sync/":
            assert "sync_to_async_hop" in names  # the hop's thread, combined
        else:
            assert "[await]" in names  # its asyncio.sleep, as time awaited
        other = OWN["/async/" if line["route"] == "/sync/" else "/sync/"]
        if other in names:
            foreign.append(line["route"])
    assert foreign == []
    assert not profiling.running and profiling._slot_holders == {}
