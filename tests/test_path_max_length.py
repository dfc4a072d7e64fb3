"""``PATH_MAX_LENGTH`` at its boundary (docs/settings.md): with ``LOG_RAW_PATHS``, an
unresolved request's raw path of exactly the limit is logged whole; one character
more is cut to the limit and ``...`` added."""

from __future__ import annotations

import pytest
from django.test import override_settings

from tests.helpers import asgi_request, wsgi_request

# Django closes old database connections as a request starts and ends (a WSGI
# request, or a sync receiver on the test's own thread): with the test database set up
# by another test, that is database access.
pytestmark = pytest.mark.django_db

LIMIT = 20
SETTINGS = {"OUTPUT": "logging", "LOG_RAW_PATHS": True, "PATH_MAX_LENGTH": LIMIT}


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
@pytest.mark.parametrize(
    ("length", "route"),
    [
        (LIMIT - 1, "/nope-" + "x" * (LIMIT - 7)),
        (LIMIT, "/nope-" + "x" * (LIMIT - 6)),
        (LIMIT + 1, "/nope-" + "x" * (LIMIT - 6) + "..."),
        (LIMIT + 2, "/nope-" + "x" * (LIMIT - 6) + "..."),
    ],
)
def test_a_raw_path_at_the_limit_is_whole_and_one_past_it_is_cut(
    interface, length, route, log_lines
):
    path = "/nope-" + "x" * (length - 6)
    assert len(path) == length
    with override_settings(HOPWATCH=SETTINGS):
        if interface == "asgi":
            assert asgi_request(path).status == 404
        else:
            assert wsgi_request(path)[0].startswith("404")
    (line,) = log_lines.parsed()
    assert line["route"] == route
    assert len(line["route"]) == (length if length <= LIMIT else LIMIT + 3)
