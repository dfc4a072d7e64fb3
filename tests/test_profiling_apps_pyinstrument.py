"""hopwatch's profile of a request whose app profiles with pyinstrument itself.

pyinstrument runs one async-aware profiler per async context, and refuses a
second. Under ASGI hopwatch's main profiler is that one, in the request's
context: an app's own ``pyinstrument.middleware.ProfilerMiddleware`` or
``with Profiler():`` in a view (both async-aware, pyinstrument's default) used
to be refused there, and the request failed (500). The app comes first: its
profiler runs and writes its profile as without hopwatch, and hopwatch gives
its own profile of that request up (the line has no ``profile``; a token or
staff profile given up is said on the ``hopwatch`` logger). Under WSGI
hopwatch's profiler is not async-aware: both profiles are taken.
"""

from __future__ import annotations

import json
import logging

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client, override_settings

from hopwatch import profiling
from hopwatch.conf import SETTINGS
from tests.helpers import logged
from tests.settings import DEFAULT_MIDDLEWARE

TOKEN = "t0k3n-for-the-app-pyinstrument-tests"
HEADER = SETTINGS["PROFILE_HEADER"].default
HW = "hopwatch.middleware.HopwatchMiddleware"
PYI = "pyinstrument.middleware.ProfilerMiddleware"
GIVEN_UP = (
    "hopwatch: a token profile was given up: a pyinstrument profiler of the app's {when} in"
    " the request, and pyinstrument runs one async-aware profiler per async context"
    " (the app's ran as without hopwatch); said once a minute"
)


@pytest.fixture(autouse=True)
def _fresh_limits(monkeypatch):
    profiling.rate_limiters.clear()
    monkeypatch.setattr(profiling, "_given_up_said", profiling.RateLimiter(), raising=False)


@pytest.fixture
def said():
    with logged("hopwatch", logging.WARNING) as messages:
        yield messages


def hopwatch_settings(profile_dir, trigger):
    options = {"PROFILE_DIR": str(profile_dir), "PROFILE_INTERVAL": 0.0005}
    if trigger == "token":
        options["PROFILE_TOKEN"] = TOKEN
    else:  # every request sampled, and kept however fast
        options.update(PROFILE_AUTO_SAMPLE=1.0, PROFILE_AUTO_MIN_DURATION_MS=0.001)
    return options


def get(interface, path, trigger):
    headers = {HEADER: TOKEN} if trigger == "token" else {}
    if interface == "asgi":
        return async_to_sync(AsyncClient().get)(path, headers=headers)
    return Client().get(path, headers=headers)


def hopwatch_files(profile_dir):
    assert profiling.written(timeout=30)
    return sorted(p.name for p in profile_dir.iterdir()) if profile_dir.exists() else []


def check_hopwatch_profile(interface, trigger, line, profile_dir, said, when):
    """ASGI: hopwatch gave its profile up (no file, no ``profile``; a token's said
    once). WSGI: it took its profile beside the app's."""
    if interface == "asgi":
        assert "profile" not in line
        assert hopwatch_files(profile_dir) == []
        assert said == ([GIVEN_UP.format(when=when)] if trigger == "token" else [])
    else:
        html = line["profile"]
        assert hopwatch_files(profile_dir) == [html, html.replace(".html", ".speedscope.json")]
        assert said == []
    assert not profiling.running and getattr(profiling, "_slot_holders", {}) == {}


INTERFACES = pytest.mark.parametrize("interface", ["asgi", "wsgi"])
TRIGGERS = pytest.mark.parametrize("trigger", ["token", "auto"])


@INTERFACES
@TRIGGERS
@pytest.mark.parametrize("view", ["async", "sync"])
@pytest.mark.parametrize("place", ["inside", "outside"])
def test_the_apps_profiler_middleware_writes_its_profile(
    tmp_path, log_lines, said, interface, trigger, view, place
):
    """pyinstrument's ProfilerMiddleware (PYINSTRUMENT_PROFILE_DIR: every request),
    inside hopwatch's middleware or outside it (first, as pyinstrument's docs suggest)."""
    profile_dir, app_dir = tmp_path / "hopwatch", tmp_path / "pyinstrument"
    app_dir.mkdir()
    chain = [HW, PYI] if place == "inside" else [PYI, HW]
    with override_settings(
        MIDDLEWARE=[*chain, *DEFAULT_MIDDLEWARE],
        PYINSTRUMENT_PROFILE_DIR=str(app_dir),
        HOPWATCH=hopwatch_settings(profile_dir, trigger),
    ):
        response = get(interface, f"/{view}/", trigger)
    assert response.status_code == 200
    assert response.content == view.encode()  # the app's response, unchanged
    (app_profile,) = app_dir.iterdir()  # the app's profile, written
    assert f" _{view}_ " in app_profile.name and app_profile.name.endswith(".html")
    assert "pyinstrument" in app_profile.read_text()
    (line,) = log_lines.parsed()
    assert line["status"] == 200
    when = "started" if place == "inside" else "was already running"
    check_hopwatch_profile(interface, trigger, line, profile_dir, said, when)


@INTERFACES
@TRIGGERS
@pytest.mark.parametrize("view", ["async", "sync"])
def test_a_view_profiling_a_block_of_its_own(tmp_path, log_lines, said, interface, trigger, view):
    """``with pyinstrument.Profiler():`` in a sync or an async view."""
    profile_dir, app_dir = tmp_path / "hopwatch", tmp_path / "app"
    app_dir.mkdir()
    with override_settings(
        APP_PROFILE_DIR=str(app_dir), HOPWATCH=hopwatch_settings(profile_dir, trigger)
    ):
        response = get(interface, f"/app-profiler/{view}/", trigger)
    assert response.status_code == 200
    assert response.content == f"{view}, profiled by the app".encode()
    # the app's profile, written, with the block's frame in it
    assert "_app_profiled_work" in (app_dir / f"{view}.txt").read_text()
    (line,) = log_lines.parsed()
    assert line["status"] == 200
    check_hopwatch_profile(interface, trigger, line, profile_dir, said, "started")
    if interface == "wsgi" and view == "sync":
        # Both profiles are true: hopwatch's saw the block too. (An async view
        # under WSGI runs on a new event loop, in a thread hopwatch's profile
        # does not see: docs/profiling.md, "Limits".)
        speedscope = json.loads(
            (profile_dir / line["profile"].replace(".html", ".speedscope.json")).read_text()
        )
        assert "_app_profiled_work" in {frame["name"] for frame in speedscope["shared"]["frames"]}


@pytest.mark.parametrize("view", ["async", "sync"])
def test_the_next_request_is_profiled_as_before(tmp_path, log_lines, said, view):
    """A profile given up leaves nothing behind: the next profiled request of the
    same ASGI app, whose view does not profile, has its profile (and the one
    after that gives up again)."""
    profile_dir, app_dir = tmp_path / "hopwatch", tmp_path / "app"
    app_dir.mkdir()
    with override_settings(
        APP_PROFILE_DIR=str(app_dir), HOPWATCH=hopwatch_settings(profile_dir, "token")
    ):
        statuses = [
            get("asgi", f"/app-profiler/{view}/", "token").status_code,
            get("asgi", "/async/", "token").status_code,
            get("asgi", f"/app-profiler/{view}/", "token").status_code,
        ]
    assert statuses == [200, 200, 200]
    first, second, third = log_lines.parsed()
    assert "profile" not in first and "profile" not in third
    html = second["profile"]
    assert hopwatch_files(profile_dir) == [html, html.replace(".html", ".speedscope.json")]
    assert said == [GIVEN_UP.format(when="started")]  # once a minute
    assert not profiling.running and getattr(profiling, "_slot_holders", {}) == {}


def test_pyinstrument_4_6s_profiler_start_takes_no_target_description(
    tmp_path, log_lines, monkeypatch
):
    """pyinstrument 4.6, the oldest pyproject.toml allows, has ``Profiler.start(self,
    caller_frame=None)``: hopwatch profiled nothing with it (every start was an
    internal error, "unexpected keyword argument 'target_description'"). Its
    signature, in front of the installed pyinstrument's start."""
    import pyinstrument

    start = pyinstrument.Profiler.start

    def start_of_4_6(self, caller_frame=None):
        return start(self, caller_frame=caller_frame)

    monkeypatch.setattr(pyinstrument.Profiler, "start", start_of_4_6)
    monkeypatch.setattr(profiling, "_names_targets", None, raising=False)
    profile_dir = tmp_path / "hopwatch"
    with override_settings(HOPWATCH=hopwatch_settings(profile_dir, "token")):
        assert get("asgi", "/busy/sync/", "token").status_code == 200
        assert get("wsgi", "/busy/sync/", "token").status_code == 200
    lines = log_lines.parsed()
    names = sorted(
        name
        for line in lines
        for name in (line["profile"], line["profile"].replace(".html", ".speedscope.json"))
    )
    assert hopwatch_files(profile_dir) == names and len(names) == 4
    # the ASGI one has the sync view in it, profiled in its hop's worker thread
    speedscope = json.loads(
        (profile_dir / lines[0]["profile"].replace(".html", ".speedscope.json")).read_text()
    )
    assert {"sync_to_async_hop", "sync_busy_view", "_app_profiled_work"} <= {
        frame["name"] for frame in speedscope["shared"]["frames"]
    }


def test_uninstall_gives_pyinstrument_its_subscribe_back(tmp_path, log_lines):
    """The hand-over wraps pyinstrument's ``StackSampler.subscribe`` when a request is
    first profiled under ASGI; ``hopwatch.uninstall()`` puts pyinstrument's own back,
    and the next request profiled after ``install()`` wraps it again."""
    from pyinstrument.stack_sampler import StackSampler

    import hopwatch

    with override_settings(HOPWATCH=hopwatch_settings(tmp_path, "token")):
        assert get("asgi", "/async/", "token").status_code == 200
        assert StackSampler.subscribe.__name__ == "subscribe_yielding"
        own = StackSampler.subscribe.__wrapped__
        try:
            hopwatch.uninstall()
            hopwatch.uninstall()  # idempotent
            assert StackSampler.subscribe is own
        finally:
            hopwatch.install()
        assert StackSampler.subscribe is own  # until a request is profiled again
        assert get("asgi", "/async/", "token").status_code == 200
        assert StackSampler.subscribe.__wrapped__ is own
    assert [("profile" in line) for line in log_lines.parsed()] == [True, True]


def test_uninstall_leaves_another_packages_wraps_wrapper_and_install_adds_no_layer(
    tmp_path, log_lines
):
    """Another package wraps ``StackSampler.subscribe`` with ``functools.wraps``
    after hopwatch's hand-over did (the copy takes its name, ``__dict__`` and so
    ``__wrapped__``'s target one layer down): ``hopwatch.uninstall()`` leaves that
    wrapper, and hopwatch's under it, in place (it took the other package's off,
    and left its own), and ``install()`` and the next profiled request wrap
    nothing again (there were two hopwatch layers)."""
    import functools

    from pyinstrument.stack_sampler import StackSampler

    import hopwatch

    with override_settings(HOPWATCH=hopwatch_settings(tmp_path, "token")):
        assert get("asgi", "/async/", "token").status_code == 200
        ours = StackSampler.subscribe
        assert ours.__module__ == "hopwatch.profiling"
        own = ours.__wrapped__
        calls: list[int] = []

        @functools.wraps(ours)
        def other_packages_subscribe(self, *args, **kwargs):
            calls.append(1)
            return ours(self, *args, **kwargs)

        assert other_packages_subscribe.__name__ == "subscribe_yielding"
        StackSampler.subscribe = other_packages_subscribe
        try:
            try:
                hopwatch.uninstall()
                assert StackSampler.subscribe is other_packages_subscribe
                assert other_packages_subscribe.__wrapped__ is ours
                assert ours.__wrapped__ is own
            finally:
                hopwatch.install()
            assert get("asgi", "/async/", "token").status_code == 200
            assert StackSampler.subscribe is other_packages_subscribe
            assert other_packages_subscribe.__wrapped__ is ours
            assert ours.__wrapped__ is own and not hasattr(own, "__wrapped__")
            assert calls  # the profile's profilers subscribed through both
        finally:
            StackSampler.subscribe = ours
    assert [("profile" in line) for line in log_lines.parsed()] == [True, True]


@pytest.mark.parametrize("view", ["async", "sync"])
def test_an_anonymous_staff_parameter_profile_given_up_is_not_called_staff(
    tmp_path, log_lines, said, view
):
    """The staff parameter's profile is tentative (the staff check comes after it
    stops): given up for an anonymous request, it was said as "a staff profile"."""
    profile_dir, app_dir = tmp_path / "hopwatch", tmp_path / "app"
    app_dir.mkdir()
    options = {"PROFILE_DIR": str(profile_dir), "PROFILE_STAFF_PARAM": "hopwatch-profile"}
    with override_settings(APP_PROFILE_DIR=str(app_dir), HOPWATCH=options):
        response = async_to_sync(AsyncClient().get)(f"/app-profiler/{view}/?hopwatch-profile")
    assert response.status_code == 200
    assert response.content == f"{view}, profiled by the app".encode()
    (line,) = log_lines.parsed()
    assert "profile" not in line
    assert hopwatch_files(profile_dir) == []
    assert said == [
        "hopwatch: a profile asked for with the staff parameter (kept for active staff only)"
        " was given up: a pyinstrument profiler of the app's started in the request, and"
        " pyinstrument runs one async-aware profiler per async context (the app's ran as"
        " without hopwatch); said once a minute"
    ]
