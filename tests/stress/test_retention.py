"""Nothing hopwatch keeps after a request may keep the request alive, or stay in scope.

hopwatch keeps a few hops after their request is over: the ``late`` ledger
(hops that finished after their request closed, e.g. in a task the view
started and did not wait for) and the ``unscoped`` one keep up to 200 each,
for the record. Those must not pin the request: its ``RequestRecord`` (with
its up to 1,000 kept hops) and Django's ``HttpRequest`` (body, session, user).
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import weakref
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.test import override_settings

import hopwatch
from hopwatch import _django
from hopwatch._recorder import current_scope, late
from tests.helpers import asgi_call, capture, wait_until, wsgi_environ
from tests.stress import views

HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]


def test_a_late_hop_does_not_keep_its_request_alive():
    async def main() -> None:
        result = await asgi_call(ASGIHandler(), "/stress/fire-and-forget/")
        assert result.status == 200
        # the view's task makes its hop after the request closed: wait for it to end
        await wait_until(lambda: not views._background)

    late_before = len(late)
    views.served.clear()
    with (
        override_settings(ROOT_URLCONF="tests.stress.urls", MIDDLEWARE=HOPWATCH_ONLY),
        capture() as records,
    ):
        asyncio.run(main())
    assert len(late) == late_before + 1  # the hop was counted, as late
    (record,) = records
    assert len(record) == 2  # request_started and close; the late hop is not in it
    (request,) = views.served
    views.served.clear()
    kept = weakref.ref(record)
    del record, records
    gc.collect()
    assert kept() is None, "the late ledger keeps the request's record alive"
    assert request() is None, "the late ledger keeps Django's HttpRequest alive"


def test_a_response_closed_from_another_context_does_not_stay_in_scope(db):
    """A WSGI response closed in another context than the request's (another
    thread's, a ``copy_context().run``, an event loop's task: Django's sync test
    client closes an async streaming response that way) cannot reset the
    request's scope in the context that served it. The next request served
    there must then neither hang its record below the closed one (its hops
    would be added to it, and it would be kept alive for good) nor leave it
    in scope afterwards.
    """
    seen: dict[str, Any] = {}

    def server_thread() -> None:  # a thread of its own: its context is its own
        start_response = lambda status, headers, exc_info=None: None  # noqa: E731
        with capture() as records:
            response = WSGIHandler()(wsgi_environ("/sync/"), start_response)
            b"".join(response)
            contextvars.copy_context().run(response.close)  # closed elsewhere
        first = weakref.ref(records[0])
        del records
        with capture() as records:
            response = WSGIHandler()(wsgi_environ("/hops/2/"), start_response)
            b"".join(response)
            response.close()  # closed here, as a WSGI server does
        seen["next record's parent"] = records[0].parent
        seen["scope after the next request"] = current_scope.get()
        del records
        gc.collect()
        seen["first record still alive"] = first() is not None

    with override_settings(MIDDLEWARE=HOPWATCH_ONLY):
        thread = threading.Thread(target=server_thread)
        thread.start()
        thread.join()
    assert seen == {
        "next record's parent": None,
        "scope after the next request": None,
        "first record still alive": False,
    }


def _serve_and_keep_the_records(installed: bool) -> tuple[bool, list[Any]]:
    """Serve /stress/remember/ through Django's WSGIHandler, as a WSGI server
    does, keeping the records closed meanwhile (as a sink may): whether the
    request is still alive after a full collection, and the records."""
    views.served.clear()
    middleware = [m for m in settings.MIDDLEWARE if installed or not m.startswith("hopwatch.")]
    if not installed:  # the Django layer, then asgiref's patch
        _django.uninstall()
        hopwatch.uninstall()
    try:
        with (
            override_settings(ROOT_URLCONF="tests.stress.urls", MIDDLEWARE=middleware),
            capture() as records,
        ):
            start_response = lambda status, headers, exc_info=None: None  # noqa: E731
            response = WSGIHandler()(wsgi_environ("/stress/remember/"), start_response)
            assert b"".join(response) == b"remembered\n"
            response.close()
            del response
    finally:
        _django.install()
    gc.collect()
    (request,) = views.served
    views.served.clear()
    return request() is not None, records


def test_a_kept_record_does_not_keep_its_request_alive(db):
    """A sink may keep the records it is given (a test's capture, a debug panel,
    an extra-fields hook's author). A kept record must not keep Django's
    request (its body, session, user) alive: the request goes when Django is
    done with it, as it does without hopwatch."""
    alive, records = _serve_and_keep_the_records(installed=False)
    assert (alive, records) == (False, []), "without hopwatch, the request is freed"
    alive, records = _serve_and_keep_the_records(installed=True)
    assert len(records) == 1, "the request was recorded"
    assert not alive, "the kept record keeps Django's request alive"
