"""The staff profiling trigger (docs/profiling.md) when the user cannot be checked: the
user's lookup fails (its database is down), so ``request.user`` and ``request.auser()``
raise after the view has answered. Not known to be staff is not staff: the profile is
discarded, ``?hopwatch-profile-inline`` leaves the app's page as it is, and the failure
is one hopwatch internal error, sync (``_profiled``) and async (``_aprofiled``) alike."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user
from django.contrib.auth.backends import ModelBackend
from django.db import OperationalError
from django.test import AsyncClient, Client, override_settings
from django.utils.functional import SimpleLazyObject

from hopwatch import _errors, profiling

BACKEND = f"{__name__}.DatabaseDownBackend"
HW = "hopwatch.middleware.HopwatchMiddleware"
SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"
DJANGO_AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
#: Authentication as written before Django 5: a lazy request.user, no request.auser.
#: Sync-only, it makes the chain above it sync under ASGI too (hopwatch's _profiled).
LAZY_USER = "tests.testapp.middleware.LazyUserMiddleware"
#: The same, async-capable: under ASGI hopwatch reads request.user in a thread.
ASYNC_LAZY_USER = f"{__name__}.AsyncLazyUserMiddleware"


class DatabaseDownBackend(ModelBackend):
    """The session names a user, and loading that user fails as a query does when the
    database is unreachable."""

    lookups = 0

    def get_user(self, user_id):
        type(self).lookups += 1
        raise OperationalError("could not connect to server: Connection refused")

    async def aget_user(self, user_id):
        type(self).lookups += 1
        raise OperationalError("could not connect to server: Connection refused")


class AsyncLazyUserMiddleware:
    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        request.user = SimpleLazyObject(lambda: get_user(request))
        return await self.get_response(request)


def _logged_in(client):
    """A session cookie for user 1 through DatabaseDownBackend: a signed cookie,
    so that reading the session needs no database."""
    from django.contrib.sessions.backends.signed_cookies import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = "1"
    session[BACKEND_SESSION_KEY] = BACKEND
    session[HASH_SESSION_KEY] = "0" * 64
    session.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = session.session_key
    return client


@pytest.fixture(autouse=True)
def _fresh_rate_limit():
    profiling.rate_limiters.clear()
    DatabaseDownBackend.lookups = 0
    yield


@pytest.mark.internal_errors
@pytest.mark.parametrize(
    ("client_class", "auth", "path", "body"),
    [
        (Client, DJANGO_AUTH, "/sync/", b"sync"),
        (AsyncClient, DJANGO_AUTH, "/async/", b"async"),
        (Client, LAZY_USER, "/sync/", b"sync"),
        (AsyncClient, LAZY_USER, "/async/", b"async"),
        (AsyncClient, ASYNC_LAZY_USER, "/async/", b"async"),
    ],
    ids=["wsgi", "asgi-auser", "wsgi-lazy-user", "asgi-sync-chain", "asgi-lazy-user"],
)
def test_a_user_that_cannot_be_loaded_gets_no_profile(
    client_class, auth, path, body, tmp_path, log_lines
):
    profile_dir = tmp_path / "profiles"
    options = {
        "OUTPUT": "logging",
        "PROFILE_DIR": str(profile_dir),
        "PROFILE_TOKEN": None,
        "PROFILE_INTERVAL": 0.0005,
        "PROFILE_STAFF_PARAM": "hopwatch-profile",
    }
    before = _errors.total()
    with override_settings(
        MIDDLEWARE=[HW, SESSIONS, auth],
        SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
        AUTHENTICATION_BACKENDS=[BACKEND],
        HOPWATCH=options,
    ):
        client = _logged_in(client_class())
        response = client.get(path, {"hopwatch-profile": "", "hopwatch-profile-inline": ""})
        if client_class is AsyncClient:
            response = asyncio.run(response)
    # The app's page, as the app made it: no profile shown in its place.
    assert response.status_code == 200
    assert response.content == body
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert "Cache-Control" not in response
    assert DatabaseDownBackend.lookups == 1  # hopwatch asked, and the lookup failed
    assert _errors.total() == before + 1  # said once, as "checking the profiling user"
    # No profile written, and the request's line names none.
    assert profiling.written(timeout=30)
    assert not profile_dir.exists() or sorted(profile_dir.iterdir()) == []
    (line,) = log_lines.parsed()
    assert (line["route"], line["status"], line["hopwatch_errors"]) == (path, 200, 1)
    assert "profile" not in line
