"""Profiles of chosen requests: triggers, the whole request across threads, safe output."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.test import AsyncClient, override_settings

from hopwatch import profiling
from hopwatch._recorder import RequestRecord
from tests.helpers import asgi_request, capture, wsgi_request

TOKEN = "t0k3n-for-the-profiling-tests"
HW = "hopwatch.middleware.HopwatchMiddleware"


@pytest.fixture(autouse=True)
def _fresh_rate_limit():
    profiling.rate_limiter = profiling.RateLimiter()
    yield


@pytest.fixture
def profile_dir(tmp_path):
    return tmp_path / "profiles"


def profiled(profile_dir, **options):
    return override_settings(
        HOPWATCH={
            "PROFILE_DIR": str(profile_dir),
            "PROFILE_TOKEN": TOKEN,
            "PROFILE_INTERVAL": 0.0005,
            **options,
        }
    )


def files(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def token_header(value=TOKEN):
    return [(b"x-hopwatch-profile", value.encode())]


def test_a_sync_views_frames_and_orm_calls_appear_in_an_asgi_profile(profile_dir, transactional_db):
    with profiled(profile_dir), capture() as records:
        assert asgi_request("/sync-orm/", headers=token_header()).status == 200
    (record,) = records
    html, speedscope = files(profile_dir)
    assert html.endswith(".html") and speedscope.endswith(".speedscope.json")
    assert record.extra["profile"] == html
    frames = {frame["name"] for frame in json.loads((profile_dir / speedscope).read_text())["shared"]["frames"]}
    assert "sync_orm_view" in frames  # the view ran in a worker thread, and is in the profile
    assert "_burn_cpu" in frames
    assert "sync_to_async_hop" in frames  # the hop boundary
    assert {"count", "get_count", "get_aggregation"} <= frames  # the ORM calls inside the view


def test_the_log_line_names_the_profile(profile_dir, log_lines):
    with profiled(profile_dir):
        asgi_request("/async/", headers=token_header())
        asgi_request("/async/")
    first, second = log_lines.parsed()
    assert first["profile"] == files(profile_dir)[0]
    assert "profile" not in second


@pytest.mark.parametrize(
    "headers",
    [[], token_header("wrong-token-of-the-same-kind!!"), token_header(TOKEN[:-1]), token_header("")],
    ids=["missing", "wrong", "prefix", "empty"],
)
def test_no_profile_without_the_right_token(profile_dir, headers):
    with profiled(profile_dir):
        assert asgi_request("/async/", headers=headers).status == 200
    assert files(profile_dir) == []


def test_nothing_happens_when_profiling_is_not_configured(tmp_path):
    with override_settings(HOPWATCH={"PROFILE_TOKEN": TOKEN}):
        asgi_request("/async/", headers=token_header())
    assert list(tmp_path.iterdir()) == []


def test_the_rate_limit_holds(profile_dir):
    with profiled(profile_dir, PROFILE_RATE_LIMIT=2):
        for _ in range(5):
            assert asgi_request("/async/", headers=token_header()).status == 200
    assert len(files(profile_dir)) == 4  # 2 profiles, 2 files each


def test_rate_limiter_window():
    limiter = profiling.RateLimiter()
    assert [limiter.allow(2, now=t) for t in (0, 1, 2, 59.9, 60.0, 61.0, 61.5)] == [
        True, True, False, False, True, True, False,
    ]  # fmt: skip


def test_inline_only_for_an_authorised_request(profile_dir):
    with profiled(profile_dir):
        shown = asgi_request("/async/", query="hopwatch-profile-inline", headers=token_header())
        plain = asgi_request("/async/", query="hopwatch-profile-inline")
    assert b"<html" in shown.body.lower() and b"pyinstrument" in shown.body.lower()
    assert plain.body == b"async"


@pytest.mark.django_db(transaction=True)
def test_staff_parameter_profiles_staff_only(profile_dir):
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    user = User.objects.create_user("user", password="pw")

    async def get_as(person):
        client = AsyncClient()
        if person is not None:
            await client.aforce_login(person) if hasattr(client, "aforce_login") else await _login(client, person)
        return await client.get("/async/", {"hopwatch-profile": ""})

    with profiled(profile_dir, PROFILE_STAFF_PARAM="hopwatch-profile", PROFILE_TOKEN=None):
        for person in (None, user):
            assert asyncio.run(get_as(person)).status_code == 200
        assert files(profile_dir) == []  # anonymous and non-staff: nothing written
        assert asyncio.run(get_as(staff)).status_code == 200
    assert len(files(profile_dir)) == 2


async def _login(client, person):
    from asgiref.sync import sync_to_async

    await sync_to_async(client.force_login)(person)


def test_auto_capture_keeps_only_slow_requests(profile_dir):
    # Margins a loaded machine keeps: a 2-hop request stays far below 1 s, the
    # slow one sleeps past it.
    with profiled(profile_dir, PROFILE_TOKEN=None, PROFILE_AUTO_SAMPLE=1.0, PROFILE_AUTO_MIN_DURATION_MS=1000):
        asgi_request("/async/")
        assert files(profile_dir) == []
        asgi_request("/sleepy/", query="s=1.2")
    assert len(files(profile_dir)) == 2


@pytest.mark.parametrize(
    ("route", "request_id", "method"),
    [
        ("/../../etc/passwd", "../../../../tmp/x", "GET"),
        ("/a/<int:pk>/b/", "..\\..\\evil", "PO/ST"),
        (None, "/absolute/path", "GET"),
        ("/" + "x" * 500, "\x00\x1b[31m", "GET"),
    ],
)
def test_file_names_cannot_escape_the_directory(route, request_id, method, tmp_path):
    record = RequestRecord("asgi")
    record.route, record.request_id, record.method = route, request_id, method
    stem = profiling.safe_stem(record, now=datetime(2026, 1, 2, tzinfo=UTC))
    assert "/" not in stem and "\\" not in stem and ".." not in stem and "\x00" not in stem
    assert len(stem) < 140
    target = tmp_path / "profiles"
    with override_settings(HOPWATCH={"PROFILE_DIR": str(target)}):
        from pyinstrument import Profiler

        with Profiler() as profiler:
            sum(range(1000))
        name = profiling.write(profiler.last_session, record)
    assert (target / name).is_file()
    assert {p.parent for p in target.rglob("*")} == {target}


def test_an_existing_file_or_link_is_never_overwritten(tmp_path):
    record = RequestRecord("asgi")
    record.route, record.request_id, record.method = "/a/", "rid", "GET"
    target = tmp_path / "profiles"
    target.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    now = datetime(2026, 1, 2, tzinfo=UTC)
    stem = profiling.safe_stem(record, now=now)
    os.symlink(victim, target / f"{stem}.html")
    with pytest.raises(FileExistsError):
        profiling._open_exclusive(target, f"{stem}.html")
    assert victim.read_text() == "keep me"


def test_profile_files_are_named_after_the_route(profile_dir):
    with profiled(profile_dir), capture() as records:
        assert asgi_request("/sync/", headers=token_header()).status == 200
    (record,) = records
    html, _speedscope = files(profile_dir)
    assert record.route == "/sync/"
    assert "-GET-sync-" in html and "unmatched" not in html


def test_enabled_false_means_off_no_line_no_record_no_profile(profile_dir, log_lines, db):
    with profiled(profile_dir, ENABLED=False), capture() as records:
        assert asgi_request("/sync/", headers=token_header()).status == 200
        assert wsgi_request("/sync/")[0].startswith("200")
    assert files(profile_dir) == []
    assert log_lines.parsed() == []
    # The handler's scope is hopwatch's own bookkeeping; nothing of the request
    # was named, timed or written.
    assert all(r.route is None and r.request_id is None for r in records)


def test_an_async_request_writes_its_profile_off_the_event_loop(profile_dir, monkeypatch):
    """Rendering pyinstrument's HTML takes tens of ms of CPU: on the loop it stalls every
    other request of the worker."""
    import threading

    written_on: list[int] = []
    loop_thread: list[int] = []
    write = profiling.write

    def spying_write(session, record):
        written_on.append(threading.get_ident())
        return write(session, record)

    monkeypatch.setattr(profiling, "write", spying_write)

    async def request(headers: dict[str, str]) -> int:
        loop_thread.append(threading.get_ident())
        response = await AsyncClient().get("/async/", headers=headers)
        return response.status_code

    with profiled(profile_dir), capture() as records:
        assert asyncio.run(request({"X-Hopwatch-Profile": TOKEN})) == 200
        assert asyncio.run(request({})) == 200
    profiled_record, plain_record = records
    assert profiled_record.extra["profile"] == files(profile_dir)[0]
    assert len(written_on) == 1 and written_on[0] != loop_thread[0]
    # the thread it was written in is not a hop of the request
    assert len(profiled_record) == len(plain_record)
    assert profiling._profiles == {}  # nothing of the request kept
