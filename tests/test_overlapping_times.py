"""Times of crossings that overlap or nest on one thread: work and pinned time stay
within the request they describe.

Real requests through Django's ``ASGIHandler`` and ``WSGIHandler`` (views in
tests/testapp/views_threads.py). The views sleep known amounts, so each figure
has a floor (a sleep lasts at least its length) and a ceiling (the request's
own duration): bounds that hold on a loaded machine.
"""

from __future__ import annotations

import pytest
from django.test import override_settings

from tests.helpers import asgi_request, wsgi_request
from tests.testapp.views_threads import GATHERED, NAP

HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]
SYNC_ONLY_LAST = [*HOPWATCH_ONLY, "tests.testapp.middleware.SyncOnlyMiddleware"]

pytestmark = pytest.mark.django_db(transaction=True)


def one_line(log_lines):
    (line,) = log_lines.parsed()
    return line


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_gathered_calls_work_is_their_code(log_lines, interface):
    # Five thread-sensitive calls gathered run one after another on one thread, each
    # queued behind the others: under WSGI inside the view's own crossing (a new
    # loop), whose run held them. Each call's wait counts as its own overhead; the
    # work is what ran, never less than the five sleeps, never more than the request.
    with override_settings(MIDDLEWARE=HOPWATCH_ONLY):
        if interface == "asgi":
            assert asgi_request("/threads/gather-sleep/").body == b"slept"
        else:
            assert wsgi_request("/threads/gather-sleep/")[1] == b"slept"
    line = one_line(log_lines)
    assert line["sync_to_async"] == GATHERED + (2 if interface == "asgi" else 0)
    assert GATHERED * NAP * 1000 <= line["work_ms"] <= line["duration_ms"]
    gathered = next(site for site in line["sites"] if site["site"] == "time.sleep")
    assert gathered["count"] == GATHERED
    # the queueing is there, as each crossing's own wait: at least 1 + 2 + 3 + 4 naps
    assert gathered["overhead_ms"] >= 10 * NAP * 1000


def test_a_thread_held_again_is_pinned_once(log_lines):
    # The sync-only middleware's crossing holds its thread while the async view runs;
    # the view's thread-sensitive call runs on that same thread and goes async again.
    # One thread, held once: pinned for the view's time, not that plus the inner hold.
    with override_settings(MIDDLEWARE=SYNC_ONLY_LAST):
        assert asgi_request("/threads/pinned-again/").body == b"pinned"
    line = one_line(log_lines)
    assert line["async_to_sync"] == 2  # the middleware's, then the call's
    assert line["pinned_by"] == "tests.testapp.middleware.SyncOnlyMiddleware"
    assert 5 * NAP * 1000 <= line["pinned_ms"] <= line["duration_ms"]
    held = next(site for site in line["sites"] if site["direction"] == "async_to_sync")
    assert line["pinned_ms"] <= held["ms"]  # the middleware's hold, whichever is listed first
