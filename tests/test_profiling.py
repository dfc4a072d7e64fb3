"""Profiles of chosen requests: triggers, the whole request across threads, safe output."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.handlers.asgi import ASGIHandler
from django.test import AsyncClient, Client, override_settings

import hopwatch
from hopwatch import profiling
from hopwatch._recorder import RequestRecord, own_work
from hopwatch.conf import SETTINGS
from hopwatch.testing import count_hops
from tests.helpers import asgi_call, asgi_request, capture, wsgi_call, wsgi_environ
from tests.settings import DEFAULT_MIDDLEWARE
from tests.testapp import views
from tests.testapp.middleware import StalledUserLookupMiddleware

ROOT = Path(__file__).resolve().parent.parent

TOKEN = "t0k3n-for-the-profiling-tests"
#: The header the token is sent in: PROFILE_HEADER's default, X-Hopwatch-Profile-Token.
HEADER = SETTINGS["PROFILE_HEADER"].default
HW = "hopwatch.middleware.HopwatchMiddleware"


@pytest.fixture(autouse=True)
def _fresh_rate_limit():
    profiling.rate_limiters.clear()
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
    """The profile files written (once the writer thread has written them all)."""
    assert profiling.written(timeout=30)
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def token_header(value=TOKEN):
    return [(HEADER.lower().encode(), value.encode())]


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


def test_no_profile_while_hopwatch_is_uninstalled(profile_dir, log_lines):
    """hopwatch.uninstall() with the middleware left in MIDDLEWARE: an authorised
    request is not profiled (it was, though it wrote no line); after install() it is."""
    with profiled(profile_dir):
        try:
            hopwatch.uninstall()
            assert asgi_request("/async/", headers=token_header()).status == 200
            assert Client().get("/sync/", headers={HEADER: TOKEN}).status_code == 200
            assert files(profile_dir) == [] and log_lines.parsed() == []
        finally:
            hopwatch.install()
        asgi_request("/async/", headers=token_header())
    (line,) = log_lines.parsed()
    assert files(profile_dir) == sorted([line["profile"], line["profile"].replace(".html", ".speedscope.json")])


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


def test_an_auto_sampled_request_asking_inline_gets_the_apps_response(profile_dir, log_lines, db):
    """Automatic capture profiles anyone's request; only an authorised one may see its
    profile inline. An anonymous request sampled and kept (every request lasts past
    1 µs) that adds ?hopwatch-profile-inline is served the app's own response, on ASGI
    and WSGI, and its profile is written to PROFILE_DIR as any kept one is."""
    with profiled(profile_dir, PROFILE_TOKEN=None, PROFILE_AUTO_SAMPLE=1.0, PROFILE_AUTO_MIN_DURATION_MS=0.001):
        shown = asgi_request("/async/", query="hopwatch-profile-inline")
        wsgi_status, _headers, wsgi_body = wsgi_call(wsgi_environ("/sync/", query="hopwatch-profile-inline"))
        client = Client().get("/sync/", {"hopwatch-profile-inline": ""})
    assert (shown.status, shown.body) == (200, b"async")
    assert (wsgi_status, wsgi_body) == ("200 OK", b"sync")
    assert (client.status_code, client.content) == (200, b"sync")
    lines = log_lines.parsed()
    assert len(lines) == 3 and all(line["profile"].endswith(".html") for line in lines)
    assert files(profile_dir) == sorted(
        name for line in lines for name in (line["profile"], line["profile"].replace(".html", ".speedscope.json"))
    )


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


def test_auto_capture_by_hop_time_alone_ignores_the_duration(profile_dir, log_lines, db):
    """PROFILE_AUTO_MIN_DURATION_MS left at 0 is not used (docs/settings.md): with only
    PROFILE_AUTO_MIN_HOP_MS set, a request that hops for 500 ms (its view's sleep in a
    sync_to_async) is kept; one that sleeps 500 ms on the event loop, its few hops
    Django's own, is not, nor is one that does not hop at all."""
    with override_settings(MIDDLEWARE=[HW]), profiled(
        profile_dir, PROFILE_TOKEN=None, PROFILE_AUTO_SAMPLE=1.0, PROFILE_AUTO_MIN_HOP_MS=300
    ):
        for path, query in (("/sleepy/", "s=0.5"), ("/async/", ""), ("/slow/", "")):
            assert asgi_request(path, query=query).status == 200
        assert Client().get("/sync/").status_code == 200
    lines = log_lines.parsed()
    assert [line.get("profile") is not None for line in lines] == [False, False, True, False], [
        (line["route"], line["hop_ms"], line["duration_ms"]) for line in lines
    ]
    assert lines[0]["duration_ms"] >= 500 and lines[2]["hop_ms"] >= 500
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


def test_an_async_request_writes_its_profile_off_the_event_loop(profile_dir, monkeypatch):
    """Rendering pyinstrument's HTML takes tens of ms of CPU: on the loop it stalls every
    other request of the worker."""
    import threading

    written_on: list[int] = []
    loop_thread: list[int] = []
    fill = profiling._fill

    def spying_fill(*args):
        written_on.append(threading.get_ident())
        return fill(*args)

    monkeypatch.setattr(profiling, "_fill", spying_fill)

    async def request(headers: dict[str, str], query: str = "") -> int:
        loop_thread.append(threading.get_ident())
        response = await AsyncClient().get("/async/", QUERY_STRING=query, headers=headers)
        return response.status_code

    with profiled(profile_dir), capture() as records:
        assert asyncio.run(request({HEADER: TOKEN})) == 200
        assert asyncio.run(request({})) == 200
        # shown inline: rendered in the request, in a thread of the loop's executor
        assert asyncio.run(request({HEADER: TOKEN}, "hopwatch-profile-inline")) == 200
    profiled_record, plain_record, inline_record = records
    assert profiled_record.extra["profile"] == files(profile_dir)[0]
    assert inline_record.extra["profile"] == files(profile_dir)[2]
    assert len(written_on) == 2 and loop_thread[0] not in written_on
    # the thread it was written in is not a hop of the request
    assert len(profiled_record) == len(plain_record)
    assert profiling._profiles == {}  # nothing of the request kept


def test_each_trigger_has_its_own_rate_limit(profile_dir):
    """Samples that use up the minute's profiles leave a token's alone; a token
    refused by its own limit is said, once a minute."""
    said: list[logging.LogRecord] = []
    collector = logging.Handler(logging.WARNING)
    collector.emit = said.append  # type: ignore[method-assign]
    logging.getLogger("hopwatch").addHandler(collector)
    sampling = {"PROFILE_AUTO_SAMPLE": 1.0, "PROFILE_AUTO_MIN_DURATION_MS": 60_000}
    try:
        with profiled(profile_dir, PROFILE_RATE_LIMIT=2, **sampling):
            for _ in range(4):  # sampled (2 taken, 2 refused), all too fast to keep
                asgi_request("/async/")
            assert files(profile_dir) == [] and said == []
            for _ in range(4):  # 2 taken, 2 refused
                asgi_request("/async/", headers=token_header())
    finally:
        logging.getLogger("hopwatch").removeHandler(collector)
    assert len(files(profile_dir)) == 4  # the token's 2 profiles, 2 files each
    assert [record.getMessage() for record in said] == [
        "hopwatch: a token profile was not taken: PROFILE_RATE_LIMIT (2 a minute for each"
        " trigger) was reached; said once a minute"
    ]


def test_a_refusal_is_said_once_a_minute():
    limiter = profiling.RateLimiter()
    assert [limiter.first_refusal_this_minute(now=t) for t in (0, 1, 59.9, 60.0, 61.0)] == [
        True, False, False, True, False,
    ]  # fmt: skip


def test_the_staff_check_is_not_counted_in_the_request(profile_dir, transactional_db):
    """Under ASGI the check asks ``request.auser()``, which reads the session and the
    user with the async ORM: hopwatch's own hops, not the request's."""
    staff = User.objects.create_user("staff", password="pw", is_staff=True)

    async def get(query):
        client = AsyncClient()
        await client.aforce_login(staff)
        with count_hops() as counted:
            response = await client.get("/async/", query)
        assert response.status_code == 200
        return counted.count

    with (
        profiled(profile_dir, PROFILE_STAFF_PARAM="hopwatch-profile", PROFILE_TOKEN=None),
        capture() as records,
    ):
        plain = asyncio.run(get({}))
        before = own_work.count
        profiled_hops = asyncio.run(get({"hopwatch-profile": ""}))
        checked = own_work.count - before
    assert len(files(profile_dir)) == 2  # staff: kept
    assert profiled_hops == plain == 15
    assert [len(record) for record in records] == [15, 15]
    assert checked == 2  # the session's and the user's aget, outside the request


def test_a_request_cancelled_during_the_staff_check_leaves_no_profile_running(profile_dir, db):
    """The client goes away while the check waits for the user: Django cancels the
    request's task. The profile was stopped before the check, so it cannot be left
    running (its sampler on the loop, every later hop through the profiling path)."""
    middleware = ["hopwatch.middleware.HopwatchMiddleware", *DEFAULT_MIDDLEWARE]
    middleware.append("tests.testapp.middleware.StalledUserLookupMiddleware")
    with (
        profiled(profile_dir, PROFILE_STAFF_PARAM="hopwatch-profile", PROFILE_TOKEN=None),
        override_settings(MIDDLEWARE=middleware),
        capture() as records,
    ):
        result = asyncio.run(
            asgi_call(
                ASGIHandler(),
                "/async/",
                query="hopwatch-profile",
                disconnect_when=lambda: StalledUserLookupMiddleware.waiting > 0,
            )
        )
    assert result.status is None  # cancelled: nothing sent
    assert StalledUserLookupMiddleware.waiting == 0
    assert profiling._profiles == {} and profiling._active_count == 0
    assert sys.getprofile() is None  # pyinstrument's sampler is off the loop's thread
    assert files(profile_dir) == []
    assert len(records) == 1  # the request's line is still written


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators")
def test_a_profile_shown_inline_keeps_the_apps_cookies_and_closes_its_response(profile_dir):
    """The page replaces the response's body only: the cookies the app set and its
    security headers are kept, it is never cached, and the response it replaces is
    closed as Django would have closed it."""
    views.served_files.clear()
    with profiled(profile_dir):
        plain = asgi_request("/kept-file/")
        shown = asgi_request("/kept-file/", query="hopwatch-profile-inline", headers=token_header())
    assert plain.body == b"file body"
    assert b"pyinstrument" in shown.body.lower()
    plain_headers, shown_headers = dict(plain.headers), dict(shown.headers)
    kept = (b"X-Frame-Options", b"X-Content-Type-Options", b"Referrer-Policy", b"Cross-Origin-Opener-Policy")
    for name in kept:
        assert shown_headers[name] == plain_headers[name]
    assert shown_headers[b"Content-Type"] == b"text/html; charset=utf-8"
    cache_control = set(shown_headers[b"Cache-Control"].decode().replace(" ", "").split(","))
    assert {"no-store", "no-cache", "private", "max-age=0"} <= cache_control
    cookies = [value for name, value in shown.headers if name == b"Set-Cookie"]
    assert cookies == [value for name, value in plain.headers if name == b"Set-Cookie"]
    assert [c.split(b";")[0] for c in cookies] == [b"app_state=kept"]
    assert [f.closed for f in views.served_files] == [True, True]


def test_a_kept_profile_is_written_after_its_request(profile_dir):
    """Rendering a profile takes tens of milliseconds: neither the response nor the
    request's duration_ms waits for it. The line names the file at once; the
    writer thread fills it. Here the writer is held busy until the request is over."""
    import threading

    gate = threading.Event()
    with profiled(profile_dir), capture() as records:
        assert asgi_request("/async/", headers=token_header()).status == 200  # starts the writer
        assert profiling.written(timeout=30)
        profiling._writer.submit(gate.wait, 30)  # the writer is busy
        try:
            assert asgi_request("/async/", headers=token_header()).status == 200
            name = records[1].extra["profile"]
            assert (profile_dir / name).read_bytes() == b""  # named, not written yet
        finally:
            gate.set()
    assert profiling.written(timeout=30)
    assert b"pyinstrument" in (profile_dir / name).read_bytes().lower()
    assert (profile_dir / name.replace(".html", ".speedscope.json")).stat().st_size > 0


@pytest.mark.parametrize("accept", ["text/html", "text/plain"], ids=["debug-page", "e-mail-text"])
def test_the_profile_token_is_hidden_in_djangos_error_reports(profile_dir, accept, db):
    """A token-profiled request that fails: Django's DEBUG page, and the text report
    e-mailed to ADMINS, list the request's META, hiding only keys that look secret.
    The default header used to be X-Hopwatch-Profile (HTTP_X_HOPWATCH_PROFILE): shown."""
    from django.test import Client

    with profiled(profile_dir), override_settings(DEBUG=True), capture() as records:
        response = Client(raise_request_exception=False).get(
            "/sync-error/", headers={HEADER: TOKEN, "Accept": accept}
        )
    assert response.status_code == 500
    report = response.content.decode()
    meta_key = "HTTP_" + HEADER.upper().replace("-", "_")  # HTTP_X_HOPWATCH_PROFILE_TOKEN
    assert meta_key in report and "ValueError at /sync-error/" in report
    assert TOKEN not in report
    (record,) = records
    assert record.extra["profile"] == files(profile_dir)[0]  # the token was read: profiled


def test_the_profile_token_is_never_the_request_id(profile_dir, log_lines):
    """REQUEST_ID_HEADER naming PROFILE_HEADER (in any spelling) logged the token as
    request_id and put it in the profile's file names. Refused, the default is read."""
    from hopwatch import middleware

    spelt = HEADER.lower().replace("-", "_")  # x_hopwatch_profile_token: the same META key
    with profiled(profile_dir, REQUEST_ID_HEADER=spelt):
        asgi_request("/async/", headers=[*token_header(), (b"x-request-id", b"rid-1")])
    (line,) = log_lines.parsed()
    assert line["request_id"] == "rid-1"
    html, speedscope = files(profile_dir)
    assert line["profile"] == html and html.endswith("-GET-async-rid-1.html")
    assert speedscope == html.replace(".html", ".speedscope.json")
    assert middleware._new_meta_key(spelt) is None  # the middleware's own guard agrees


def test_profiles_are_this_users_only(profile_dir):
    """Files were created 0640 (and took a setgid directory's group); the directory
    hopwatch made, 0755."""
    with profiled(profile_dir):
        assert asgi_request("/async/", headers=token_header()).status == 200
    names = files(profile_dir)
    assert stat.S_IMODE(profile_dir.stat().st_mode) == 0o700
    assert [stat.S_IMODE((profile_dir / name).stat().st_mode) for name in names] == [0o600, 0o600]


def _unsafe(profile_dir, mode=0o755, owner=None):
    profile_dir.mkdir()
    os.chmod(profile_dir, mode)
    if owner is not None:
        os.chown(profile_dir, owner, -1)


def _warnings_while(run):
    said: list[str] = []
    collector = logging.Handler(logging.WARNING)
    collector.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("hopwatch").addHandler(collector)
    try:
        run()
    finally:
        logging.getLogger("hopwatch").removeHandler(collector)
    return said


@pytest.mark.parametrize("inline", [False, True], ids=["written-later", "inline"])
def test_a_directory_others_may_write_to_is_refused(profile_dir, log_lines, inline):
    """Another local user could read the profiles there, or swap one for a page of
    theirs: nothing is written, the request is unchanged, and it is said once."""
    _unsafe(profile_dir, mode=0o777)
    query = "hopwatch-profile-inline" if inline else ""

    def run():
        with profiled(profile_dir):
            for _ in range(2):
                response = asgi_request("/async/", query=query, headers=token_header())
                assert (response.status, response.body) == (200, b"async")

    said = _warnings_while(run)
    assert os.listdir(profile_dir) == []
    assert [line.get("profile") for line in log_lines.parsed()] == [None, None]
    assert said == [
        f"hopwatch: no profile is written to PROFILE_DIR {str(profile_dir)!r}: it may be"
        " written to by its group or by others (mode 0777), so other local users could read"
        " the profiles or replace them. Use a directory of this user's that only it may write"
        " to (a missing one is made with mode 0700); said once"
    ]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root")
def test_a_directory_another_user_owns_is_refused(profile_dir, log_lines):
    """Run as root with PROFILE_DIR made by nobody: root's profiles went into a
    directory its owner reads (and may replace files in)."""
    nobody = 65534
    _unsafe(profile_dir, mode=0o755, owner=nobody)
    said = _warnings_while(lambda: _token_request(profile_dir))
    assert os.listdir(profile_dir) == []
    assert said == [
        f"hopwatch: no profile is written to PROFILE_DIR {str(profile_dir)!r}: it is owned by"
        f" uid {nobody}, not by this process's user (uid 0), so other local users could read"
        " the profiles or replace them. Use a directory of this user's that only it may write"
        " to (a missing one is made with mode 0700); said once"
    ]
    # made this user's own and closed to others, it is used
    os.chown(profile_dir, 0, -1)
    _token_request(profile_dir)
    assert len(files(profile_dir)) == 2


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="lchown to another user needs root")
def test_a_profile_dir_that_is_a_link_another_user_owns_is_refused(tmp_path, log_lines):
    """Run as root with PROFILE_DIR a link owned by nobody to a directory of root's
    own, closed to others: the link's owner may point it anywhere (at a directory
    they read), so nothing is written through it; the link made root's, it is used."""
    nobody = 65534
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    os.lchown(link, nobody, -1)
    said = _warnings_while(lambda: _token_request(link))
    assert os.listdir(real) == []
    assert [line.get("profile") for line in log_lines.parsed()] == [None]
    assert said == [
        f"hopwatch: no profile is written to PROFILE_DIR {str(link)!r}: it is a link owned by"
        f" uid {nobody}, not by this process's user (uid 0), so other local users could read"
        " the profiles or replace them. Use a directory of this user's that only it may write"
        " to (a missing one is made with mode 0700); said once"
    ]
    os.lchown(link, 0, -1)
    _token_request(link)
    assert len(files(real)) == 2


def _token_request(profile_dir):
    with profiled(profile_dir):
        assert asgi_request("/async/", headers=token_header()).status == 200


def test_an_existing_directory_of_this_users_own_is_used(profile_dir):
    _unsafe(profile_dir, mode=0o750)  # readable by its group: the files are not
    _token_request(profile_dir)
    assert len(files(profile_dir)) == 2
    assert stat.S_IMODE(profile_dir.stat().st_mode) == 0o750  # left as it was


class _Scripts(HTMLParser):
    """The ``<script>`` elements of a page, as a browser's parser finds them."""

    def __init__(self, page):
        super().__init__()
        self.scripts: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.scripts.append("")

    def handle_data(self, data):
        if self.scripts and self.lasttag == "script":
            self.scripts[-1] += data


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_markup_in_a_frames_name_or_file_stays_in_the_profiles_json(profile_dir):
    """pyinstrument embeds the profile's JSON in its page's <script> as it is: a
    function named ``</script><script>alert('fn')</script><!--`` (or a file so
    named) ended that script and added its own, in the file written and in the
    page shown inline on the app's origin. Its JSON's <, >, & and U+2028/2029 are
    written as JSON escapes: the page has pyinstrument's two scripts only, and its
    data decodes to the same names."""
    with profiled(profile_dir):
        shown = asgi_request("/markup-named/", query="hopwatch-profile-inline", headers=token_header())
    html, _speedscope = files(profile_dir)
    written = (profile_dir / html).read_text(encoding="utf-8")
    for page in (shown.body.decode(), written):
        scripts = _Scripts(page).scripts
        assert len(scripts) == 2  # pyinstrument's app, and the one that shows the profile
        assert "const sessionData = " in scripts[1]
        assert "<script>alert(" not in page and "<!--" not in page
        assert "\\u003c/script\\u003e\\u003cscript\\u003ealert('fn')\\u003c/script\\u003e\\u003c!--" in page
        assert "\u2028" not in page and "\\u0026\\u2028.py" in page
        data, _end = json.JSONDecoder().raw_decode(page.rsplit("const sessionData = ", 1)[1])
        names = list(_strings(data))
        assert any(views.MARKUP_FUNCTION in name for name in names)
        assert any(views.MARKUP_FILE in name for name in names)
    assert shown.body.decode() == written


@pytest.mark.parametrize("path", ["/async/", "/query-fields/"], ids=["view-ignores-it", "view-reads-it"])
def test_a_query_string_django_refuses_to_read_asks_for_no_profile(profile_dir, log_lines, path):
    """More query fields than DATA_UPLOAD_MAX_NUMBER_FIELDS (1000): Django refuses to
    read request.GET (TooManyFieldsSent). hopwatch reading it for PROFILE_STAFF_PARAM
    counted that as its own internal error, with a traceback, for any anonymous
    client. It asks for no profile; the view sees what it would without hopwatch
    (a view that reads the query gets Django's 400, one that does not its page)."""
    query = "&".join(f"f{k}=1" for k in range(1001)) + "&hopwatch-profile&hopwatch-profile-inline"
    status = {"/async/": 200, "/query-fields/": 400}[path]

    def run():
        with override_settings(HOPWATCH={}):  # not profiling: what the app answers
            plain = asgi_request(path, query=query)
            plain_wsgi = Client().get(f"{path}?{query}")
        assert plain.status == plain_wsgi.status_code == status
        assert plain.body == plain_wsgi.content
        assert (b"<h1>Bad Request (400)</h1>" in plain.body) == (status == 400)
        with profiled(profile_dir, PROFILE_STAFF_PARAM="hopwatch-profile"):
            for _ in range(2):
                response = asgi_request(path, query=query)
                assert (response.status, response.body) == (status, plain.body)
                response_wsgi = Client().get(f"{path}?{query}")
                assert (response_wsgi.status_code, response_wsgi.content) == (status, plain.body)

    said = _warnings_while(run)
    assert said == []
    lines = log_lines.parsed()
    assert [(line["status"], line.get("hopwatch_errors", 0), line.get("profile")) for line in lines] == [
        (status, 0, None)
    ] * 6
    assert files(profile_dir) == []


def _refusal(profile_dir, why):
    return (
        f"hopwatch: no profile is written to PROFILE_DIR {str(profile_dir)!r}: it {why}, so"
        " other local users could read the profiles or replace them. Use a directory of this"
        " user's that only it may write to (a missing one is made with mode 0700); said once"
    )


@pytest.mark.parametrize("made", [False, True], ids=["missing", "made-already"])
def test_a_directory_inside_one_others_may_write_to_is_refused(tmp_path, log_lines, made):
    """PROFILE_DIR itself this user's and 0700, in a directory others may write to (not
    sticky): they can rename it away and put theirs in its place. Only the directory
    itself was checked: W008 was silent and profiles were written. Now refused, by the
    check and by each profile; in a sticky one (/tmp's mode) or a closed one, used."""
    from hopwatch.checks import check_profile_dir

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    profile_dir = shared / "profiles"
    if made:
        profile_dir.mkdir(mode=0o700)
    why = f"is inside {str(shared)!r}, which its group or others may write to (mode 0777, not sticky)"
    with profiled(profile_dir):
        (warning,) = check_profile_dir()
    assert (warning.id, warning.msg) == (
        "hopwatch.W008",
        f'HOPWATCH["PROFILE_DIR"] {str(profile_dir)!r} {why}: no profile would be written there'
        " (the requests are served, their lines name no profile).",
    )
    said = _warnings_while(lambda: [_token_request(profile_dir) for _ in range(2)])
    assert said == [_refusal(profile_dir, why)]
    assert os.listdir(profile_dir) == []
    assert [line.get("profile") for line in log_lines.parsed()] == [None, None]
    for mode in (0o1777, 0o755):  # sticky, as /tmp; or closed to others
        shared.chmod(mode)
        with profiled(profile_dir):
            assert check_profile_dir() == []
        _token_request(profile_dir)
    assert len(files(profile_dir)) == 4
    if os.geteuid() == 0:  # only root can give a directory away
        shared.chmod(0o755)
        os.chown(shared, 65534, 65534)
        with profiled(profile_dir):
            (warning,) = check_profile_dir()
        assert f"is inside {str(shared)!r}, owned by uid 65534, neither this process's user (uid 0) nor root:" in warning.msg


def test_the_directories_made_above_a_missing_profile_dir_are_0700(tmp_path, log_lines):
    """Under umask 002 ``mkdir(mode=0o700, parents=True)`` made only PROFILE_DIR 0700, the
    directories above it 0775: W008 passed (they were missing), then each profile was
    refused for the group-writable parents hopwatch had made itself. Each is made 0700."""
    from hopwatch.checks import check_profile_dir

    profile_dir = tmp_path / "var" / "hopwatch" / "profiles"
    before = os.umask(0o002)
    try:
        with profiled(profile_dir):
            assert check_profile_dir() == []
        said = _warnings_while(lambda: _token_request(profile_dir))
    finally:
        os.umask(before)
    assert said == []
    modes = [stat.S_IMODE(path.stat().st_mode) for path in (profile_dir.parent.parent, profile_dir.parent, profile_dir)]
    assert modes == [0o700, 0o700, 0o700]
    assert len(files(profile_dir)) == 2
    assert [bool(line.get("profile")) for line in log_lines.parsed()] == [True]


# Run with a private group as its effective group, under umask 002 (as a Debian or Ubuntu
# login runs): W008's messages, then the profile files one token request left and the
# warnings said.
_WITH_GROUP = textwrap.dedent(
    """
    import json, logging, os, sys
    from django.conf import settings
    settings.configure(
        DEBUG=False, ALLOWED_HOSTS=["*"], SECRET_KEY="x" * 50, ROOT_URLCONF="__main__",
        INSTALLED_APPS=["hopwatch"], MIDDLEWARE=["hopwatch.middleware.HopwatchMiddleware"],
        HOPWATCH={"PROFILE_DIR": sys.argv[1], "PROFILE_TOKEN": sys.argv[2]}, LOGGING_CONFIG=None,
    )
    import django
    django.setup()
    from django.http import HttpResponse
    from django.test import Client
    from django.urls import path
    from hopwatch import profiling
    from hopwatch.checks import check_profile_dir

    urlpatterns = [path("ok/", lambda request: HttpResponse("ok"))]
    said, profiles = [], []
    collector = logging.Handler(logging.INFO)
    collector.emit = lambda record: (said if record.levelno >= logging.WARNING else profiles).append(
        json.loads(record.getMessage()).get("profile")
        if record.levelno < logging.WARNING
        else record.getMessage()
    )
    logging.getLogger("hopwatch").addHandler(collector)
    logging.getLogger("hopwatch").setLevel(logging.INFO)
    checks = [message.msg for message in check_profile_dir()]
    status = Client().get("/ok/", HTTP_X_HOPWATCH_PROFILE_TOKEN=sys.argv[2]).status_code
    profiling.written(30)
    files = len(os.listdir(sys.argv[1]))
    print(json.dumps({"checks": checks, "status": status, "files": files, "said": said, "profiled": [bool(p) for p in profiles]}))
    """
)


@pytest.fixture
def private_group():
    """A group made with ``groupadd``, no one's primary group and with no member, and a
    user made with ``useradd`` outside it (``usermod -a -G`` adds them); removed after."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("groupadd"):
        pytest.skip("making groups and users needs root and groupadd")
    import grp

    group, other = f"hwg{os.getpid() % 100000}", f"hwu{os.getpid() % 100000}"
    try:
        subprocess.run(["groupadd", group], check=True, capture_output=True)
        subprocess.run(["useradd", "-M", "-N", "-s", "/bin/false", other], check=True, capture_output=True)
        yield grp.getgrnam(group).gr_gid, group, other
    finally:
        subprocess.run(["userdel", other], capture_output=True)
        subprocess.run(["groupdel", group], capture_output=True)


def _with_group(gid, profile_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env["PYTHONPATH"] = str(ROOT / "src")
    done = subprocess.run(
        [sys.executable, "-c", _WITH_GROUP, str(profile_dir), TOKEN],
        cwd=profile_dir.parent, env=env, capture_output=True, text=True, timeout=120,
        group=gid, extra_groups=[], umask=0o002,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("made", [False, True], ids=["missing", "made-already"])
def test_a_directory_group_writable_by_the_users_private_group_is_used(tmp_path, private_group, made):
    """A project directory made under umask 002 with user private groups (Debian's and
    Ubuntu's logins) is 0775, its group the user's own, which no one else is in: no one
    else may write there. The ancestor check refused it, and BASE_DIR / "profiles" got
    no profile. Used (by W008's judgement and at run time), as is PROFILE_DIR made 0775
    there; refused once another user is in the group."""
    gid, group, other = private_group
    project = tmp_path / "project"
    project.mkdir()
    os.chown(project, -1, gid)
    project.chmod(0o775)
    profile_dir = project / "profiles"
    if made:
        profile_dir.mkdir()
        os.chown(profile_dir, -1, gid)
        profile_dir.chmod(0o775)
    assert _with_group(gid, profile_dir) == {
        "checks": [], "status": 200, "files": 2, "said": [], "profiled": [True]
    }
    assert stat.S_IMODE(profile_dir.stat().st_mode) == (0o775 if made else 0o700)
    # Another user in the group may write there: refused, by W008 and at run time.
    subprocess.run(["usermod", "-a", "-G", group, other], check=True, capture_output=True)
    why = (
        "may be written to by its group or by others (mode 0775)"
        if made
        else f"is inside {str(project)!r}, which its group or others may write to (mode 0775, not sticky)"
    )
    assert _with_group(gid, profile_dir) == {
        "checks": [
            f'HOPWATCH["PROFILE_DIR"] {str(profile_dir)!r} {why}: no profile would be'
            " written there (the requests are served, their lines name no profile)."
        ],
        "status": 200,
        "files": 2,  # the first run's, none more
        "said": [_refusal(profile_dir, why)],
        "profiled": [False],
    }


def _swapped(profile_dir, theirs):
    """Rename PROFILE_DIR away (to ``…-checked``) and put ``theirs`` in its place."""
    checked = profile_dir.with_name(profile_dir.name + "-checked")
    os.rename(profile_dir, checked)
    os.rename(theirs, profile_dir)
    return checked


@pytest.mark.parametrize("when", ["after-the-check", "before-the-files"])
def test_a_directory_swapped_after_the_check_receives_no_profile(tmp_path, monkeypatch, when):
    """The directory was checked by its path, then each file created by its path: one
    put in its place in between (by whoever may write to the directory above it; here
    this test, between hopwatch's own steps) received the profile. The files are
    created in the directory opened and checked, or not at all."""
    profile_dir = tmp_path / "profiles"
    profile_dir.mkdir(mode=0o700)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    theirs.chmod(0o777)
    moved: list = []
    step = "_unsafe_directory" if when == "after-the-check" else "_open_exclusive"
    original = getattr(profiling, step)

    def then_swap(*args, **kwargs):
        if when == "after-the-check":
            result = original(*args, **kwargs)
        if not moved:
            moved.append(_swapped(profile_dir, theirs))
        return result if when == "after-the-check" else original(*args, **kwargs)

    monkeypatch.setattr(profiling, step, then_swap)
    said = _warnings_while(lambda: _token_request(profile_dir))
    (checked,) = moved
    assert os.listdir(profile_dir) == []  # theirs, now at the path: nothing
    if when == "after-the-check":  # what was opened is not what was checked: refused
        assert said == [_refusal(profile_dir, "may be written to by its group or by others (mode 0777)")]
        assert os.listdir(checked) == []
    else:  # the files are made in the directory opened and checked
        assert said == []
        assert len(files(checked)) == 2


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/error/", 500),
        ("/sync-error/", 500),
        ("/no-such-page/", 404),
        ("/bad-request/", 400),
        ("/async", 301),
    ],
    ids=["async-view-raising", "sync-view-raising", "not-found", "bad-request", "redirect"],
)
def test_a_profile_shown_inline_keeps_an_errors_status(profile_dir, path, status, db):
    """The page shown inline keeps an error's status, and Django logs the error
    once, as without the page (its outer log_response, one hop under ASGI, runs
    as it would): the client, the logs and the line agree. A redirect's status
    could not carry the page: it is sent as 200, and the line keeps the app's."""
    shown_status = status if status >= 400 else 200

    class Kept(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    django_request = logging.getLogger("django.request")
    with profiled(profile_dir), capture() as records:
        for query, headers in (("", ()), ("hopwatch-profile-inline", token_header())):
            kept = Kept()
            django_request.addHandler(kept)
            try:
                result = asgi_request(path, query=query, headers=headers)
            finally:
                django_request.removeHandler(kept)
            if query:
                shown, shown_logged = result, kept.messages
            else:
                plain, plain_logged = result, kept.messages
        environ = wsgi_environ(path, query="hopwatch-profile-inline")
        environ["HTTP_" + HEADER.upper().replace("-", "_")] = TOKEN
        wsgi_status, _headers, wsgi_body = wsgi_call(environ)
    assert plain.status == status and shown.status == shown_status
    assert b"pyinstrument" in shown.body.lower() and b"pyinstrument" in wsgi_body.lower()
    assert int(wsgi_status.split()[0]) == shown_status
    assert shown_logged == plain_logged and len(plain_logged) == (1 if status >= 400 else 0)
    plain_record, shown_record, _wsgi_record = records
    assert [r.status for r in records] == [status, status, status]
    assert len(shown_record) == len(plain_record)


def test_a_profile_dir_reached_through_a_link_into_a_directory_others_may_write_to_is_refused(
    tmp_path,
):
    """The directories above PROFILE_DIR are checked on its path as resolved too: a
    link in a safe directory to one inside a directory anyone may write to (not
    sticky) is refused, though every directory on the path as written is safe."""
    shared = tmp_path / "shared"
    (shared / "sub").mkdir(parents=True)
    shared.chmod(0o777)
    (shared / "sub").chmod(0o700)
    safe = tmp_path / "safe"
    safe.mkdir(mode=0o700)
    (safe / "link").symlink_to(shared / "sub")
    assert profiling._unsafe_ancestor(safe / "link" / "profiles") == (
        f"is inside {str(shared)!r}, which its group or others may write to"
        " (mode 0777, not sticky)"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory another group needs root")
def test_a_directory_writable_by_a_group_not_the_users_own_is_refused(tmp_path):
    """A group with no members that is nobody's primary group is still not this
    user's private group unless it is the process's or the user's own group."""
    import grp
    import pwd

    own = {os.getegid(), pwd.getpwuid(os.geteuid()).pw_gid}
    primary = {user.pw_gid for user in pwd.getpwall()}
    other = next(
        (g for g in grp.getgrall() if g.gr_gid not in own and not g.gr_mem and g.gr_gid not in primary),
        None,
    )
    if other is None:
        pytest.skip("no group without members that is nobody's primary group")
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chown(shared, os.geteuid(), other.gr_gid)
    shared.chmod(0o770)
    profiling._private_groups.pop(other.gr_gid, None)
    assert profiling._unsafe_ancestor(shared / "profiles") == (
        f"is inside {str(shared)!r}, which its group or others may write to"
        " (mode 0770, not sticky)"
    )
