"""A request closed from another context than the one that opened it: a server that
closes the response on another thread, in a copy of the request's context. The
request is not in that context (the handler left it as it returned): a crossing the server makes there afterwards is outside
any request (hopwatch's ``unscoped`` ledger), not the finished request's, nor one
of its late crossings."""

from __future__ import annotations

import contextvars
import threading

import pytest
from asgiref.sync import async_to_sync
from django.core.handlers.wsgi import WSGIHandler
from django.test import override_settings

from hopwatch._django_scope import _awaiting_close
from hopwatch._recorder import current_scope, late, unscoped
from tests.helpers import capture, wsgi_environ

# Django closes old database connections as a request starts and ends (a WSGI
# request, or a sync receiver on the test's own thread): with the test database set up
# by another test, that is database access.
pytestmark = pytest.mark.django_db

HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]


async def _server_work():
    return None


def test_a_response_closed_in_a_copy_of_its_context_on_another_thread():
    started: list[str] = []
    seen: dict[str, object] = {}

    def start_response(status, headers, exc_info=None):
        started.append(status)
        return lambda data: None

    def close_then_cross(response):
        # The server's context: a copy of the request's, made on its thread.
        response.close()
        seen["scope after close"] = current_scope.get()
        seen["late"], seen["unscoped"] = late.count, unscoped.count
        async_to_sync(_server_work)()  # a crossing the server makes there afterwards
        seen["late after"], seen["unscoped after"] = late.count, unscoped.count

    with override_settings(MIDDLEWARE=HOPWATCH_ONLY), capture() as records:
        request_context = contextvars.copy_context()
        response = request_context.run(WSGIHandler(), wsgi_environ("/sync/"), start_response)
        assert b"".join(response) == b"sync" and started == ["200 OK"]
        # The handler left the request's scope as it returned: what the server
        # runs there next is not the request's (was: still the request's record).
        assert request_context.get(current_scope) is None
        ((_ref, record),) = [entry for entries in _awaiting_close.values() for entry in entries]
        assert not record.closed
        server_context = request_context.copy()
        thread = threading.Thread(target=server_context.run, args=(close_then_cross, response))
        thread.start()
        thread.join(30)
        assert not thread.is_alive()
    assert records == [record] and record.closed
    hops = record.count
    assert seen["late after"] == seen["late"]
    assert seen["unscoped after"] == seen["unscoped"] + 1
    assert record.count == hops
    assert seen["scope after close"] is None
