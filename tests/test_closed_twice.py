"""A request record closed twice is handed to the sinks (its line written) once."""

from __future__ import annotations

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.test import override_settings

from hopwatch._django_scope import finish_request
from hopwatch._recorder import close_request
from tests.helpers import asgi_request, capture, wsgi_environ

# Django closes old database connections as a request starts and ends (a WSGI
# request, or a sync receiver on the test's own thread): with the test database set up
# by another test, that is database access.
pytestmark = pytest.mark.django_db

HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]


def test_a_wsgi_response_closed_twice_is_one_line(log_lines):
    """A server that closes the response twice (PEP 3333 asks for once)."""
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        response = WSGIHandler()(wsgi_environ("/sync/"), lambda *args: (lambda data: None))
        assert b"".join(response) == b"sync"
        response.close()
        response.close()
    assert len(records) == 1 and records[0].closed
    assert len(log_lines.parsed()) == 1


def test_closing_a_closed_record_again_hands_it_to_no_sink(log_lines):
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        assert asgi_request("/async/").status == 200
        (record,) = records
        ended = record.ended_ns
        close_request(record)
        finish_request(record)
    assert records == [record] and record.ended_ns == ended
    assert len(log_lines.parsed()) == 1
