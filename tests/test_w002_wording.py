"""hopwatch.W002 names the middleware above hopwatch's: up to ABOVE_NAMED (3) in full,
past that the first three and how many more, at the boundary."""

from __future__ import annotations

import pytest
from django.test import override_settings

from hopwatch.checks import ABOVE_NAMED, MIDDLEWARE_PATH, check_middleware

HW = MIDDLEWARE_PATH
SECURITY = "django.middleware.security.SecurityMiddleware"
SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
COMMON = "django.middleware.common.CommonMiddleware"
CSRF = "django.middleware.csrf.CsrfViewMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"


@pytest.mark.parametrize(
    ("above", "named"),
    [
        ([SECURITY, SESSION, COMMON], f"{SECURITY}, {SESSION} and {COMMON}"),
        ([SECURITY, SESSION, COMMON, CSRF], f"{SECURITY}, {SESSION}, {COMMON} and 1 more"),
        ([SECURITY, SESSION, COMMON, CSRF, AUTH], f"{SECURITY}, {SESSION}, {COMMON} and 2 more"),
    ],
    ids=["exactly-named", "one-past", "two-past"],
)
def test_w002_names_three_in_full_and_counts_the_rest(above, named):
    assert ABOVE_NAMED == 3
    below = "django.middleware.clickjacking.XFrameOptionsMiddleware"
    with override_settings(MIDDLEWARE=[*above, HW, below]):
        (message,) = check_middleware()
    assert message.id == "hopwatch.W002"
    assert message.msg == (
        f"{HW} is not first in MIDDLEWARE: middleware above it ({named}) is not covered"
        " and may change what it sees."
    )
