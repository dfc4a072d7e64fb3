"""A function-based middleware's cause site is its factory's dotted path
(``module.factory``), as a class-based one's is its class's: never the closure's
``module.factory.<locals>.middleware``."""

from __future__ import annotations

from django.test import override_settings

from tests.helpers import asgi_request, capture, sites

FACTORY = "tests.testapp.middleware_functions.legacy_stamp"
MIDDLEWARE = ["hopwatch.middleware.HopwatchMiddleware", FACTORY]


def test_a_sync_only_function_middleware_is_named_by_its_factory(log_lines):
    with override_settings(MIDDLEWARE=MIDDLEWARE), capture() as records:
        result = asgi_request("/async/")
    assert result.status == 200 and (b"X-Legacy-Stamp", b"1") in result.headers
    (record,) = records
    middleware = {key: n for key, n in sites(record).items() if key[0] == "middleware"}
    # One crossing into the sync chain, one back to the async view (docs/causes.md).
    assert middleware == {("middleware", FACTORY): 2}
    (line,) = log_lines.parsed()
    assert line["pinned_by"] == FACTORY
