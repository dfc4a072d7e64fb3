"""What docs/settings.md, docs/log-schema.md and the checks' messages say of the lines,
checked against real lines."""

from __future__ import annotations

import asyncio

from django.test import AsyncClient, Client, override_settings

from hopwatch import schema
from hopwatch.checks import check_middleware
from hopwatch.conf import SETTINGS
from tests.helpers import asgi_request


def test_startproject_middleware_alone_drops_five_causes_at_the_default_limit(log_lines, db):
    asyncio.run(AsyncClient().get("/async/"))
    (line,) = log_lines.parsed()
    assert (line["hops"], len(line["sites"]), line["sites_dropped"]) == (15, 10, 5)
    assert "makes 15 crossings of 15 causes" in SETTINGS["SITES_LIMIT"].meaning
    assert "(`sites_dropped: 5`)" in SETTINGS["SITES_LIMIT"].meaning


def test_a_cut_raw_path_is_the_limit_plus_the_dots(log_lines, db):
    with override_settings(HOPWATCH={"LOG_RAW_PATHS": True, "PATH_MAX_LENGTH": 12}):
        Client().get("/no-such-page/at-all/")
    (line,) = log_lines.parsed()
    assert line["route"] == "/no-such-pag..." and len(line["route"]) == 12 + 3
    assert "(so the route is at most this many plus 3)" in SETTINGS["PATH_MAX_LENGTH"].meaning


def test_what_w001_says_of_lines_without_the_middleware(log_lines, db):
    from tests.settings import DEFAULT_MIDDLEWARE

    with override_settings(MIDDLEWARE=DEFAULT_MIDDLEWARE):
        (message,) = check_middleware()
        Client().get("/sync/", headers={"X-Request-ID": "given-id"})
        asgi_request("/sync/", headers=[(b"x-request-id", b"given-id")])
    test_client, asgi = log_lines.parsed()
    assert (test_client["route"], test_client["view"], test_client["status"]) == ("(unresolved)", None, 200)
    assert (asgi["route"], asgi["view"], asgi["status"]) == ("(unresolved)", None, None)
    assert test_client["request_id"] != "given-id" and test_client["request_id"]
    assert asgi["request_id"] == "given-id"  # read from the ASGI scope, as the handler closes
    assert "no route or view; under WSGI a generated request_id" in message.msg
    assert "under ASGI status null" in message.msg


def test_max_in_flight_and_concurrent_ms_are_on_every_line_after_executors(log_lines, db):
    """log-schema.md listed them as present only when a setting is on, in table order."""
    from pathlib import Path

    Client().get("/sync/")
    (line,) = log_lines.parsed()
    keys = list(line)
    at = keys.index("executors")
    assert keys[at : at + 4] == ["executors", "max_in_flight", "concurrent_ms", "db_connections"]
    assert {"max_in_flight", "concurrent_ms"} <= {f.name for f in schema.OPTIONAL}
    text = " ".join((Path(__file__).resolve().parent.parent / "docs" / "log-schema.md").read_text().split())
    assert "except `max_in_flight` and `concurrent_ms`" in text
