"""Only an *active* staff user is authorised for the threads page (docs/threads.md) and
the staff profiling trigger (docs/profiling.md): an inactive staff user is not, even
where the authentication backend lets inactive users log in
(``AllowAllUsersModelBackend``, so ``request.user`` is that user)."""

from __future__ import annotations

import asyncio

import pytest
from django.contrib.auth.models import User
from django.test import AsyncClient, override_settings
from django.urls import include, path

from hopwatch import profiling
from tests.testapp import urls

ALLOW_ALL = ["django.contrib.auth.backends.AllowAllUsersModelBackend"]
STACK = [
    "hopwatch.middleware.HopwatchMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]


def _threads_urls():
    module = type(urls)("inactive_staff_urls")
    module.urlpatterns = [*urls.urlpatterns, path("hopwatch/", include("hopwatch.urls"))]
    return module


def _logged_in(is_active: bool) -> AsyncClient:
    user = User.objects.create_user(
        f"staff-{is_active}", password="x", is_staff=True, is_active=is_active
    )
    client = AsyncClient()
    client.force_login(user, backend=ALLOW_ALL[0])
    return client


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("is_active", "status"), [(True, 200), (False, 404)])
def test_the_threads_page_is_for_active_staff_only(is_active, status):
    with override_settings(
        ROOT_URLCONF=_threads_urls(), MIDDLEWARE=STACK, AUTHENTICATION_BACKENDS=ALLOW_ALL
    ):
        client = _logged_in(is_active)
        response = asyncio.run(client.get("/hopwatch/threads/"))
    assert response.status_code == status


@pytest.fixture(autouse=True)
def _fresh_rate_limit():
    profiling.rate_limiters.clear()
    yield


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("is_active", "kept"), [(True, 1), (False, 0)])
def test_the_staff_profile_trigger_is_for_active_staff_only(is_active, kept, tmp_path):
    profile_dir = tmp_path / "profiles"
    options = {
        "PROFILE_DIR": str(profile_dir),
        "PROFILE_TOKEN": None,
        "PROFILE_INTERVAL": 0.0005,
        "PROFILE_STAFF_PARAM": "hopwatch-profile",
    }
    with override_settings(
        MIDDLEWARE=STACK, AUTHENTICATION_BACKENDS=ALLOW_ALL, HOPWATCH=options
    ):
        user = User.objects.create_user(
            "staff", password="x", is_staff=True, is_active=is_active
        )

        async def get_as_user():
            client = AsyncClient()
            await client.aforce_login(user, backend=ALLOW_ALL[0])
            return await client.get("/async/", {"hopwatch-profile": ""})

        response = asyncio.run(get_as_user())
    assert response.status_code == 200
    assert profiling.written(timeout=30)
    written = sorted(profile_dir.iterdir()) if profile_dir.exists() else []
    assert len(written) == 2 * kept, written  # a staff profile: its two files
