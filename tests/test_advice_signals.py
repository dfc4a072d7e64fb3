"""The advice for a signal's hops follows their direction: a sync receiver of a signal sent
with ``asend()`` (``sync_to_async``) is not an ``async def`` receiver of one sent with
``send()`` (``async_to_sync``), whose fix is the other way round.

Real requests through the test Client, Django's WSGIHandler and ASGIHandler; the report
built from the lines they logged, its text read as ``hopwatch report`` prints it.
"""

from __future__ import annotations

import json

import django
import pytest
from django.dispatch import Signal
from django.http import HttpResponse
from django.test import Client, override_settings
from django.urls import path

from hopwatch import _advice
from hopwatch.cli import main
from tests.helpers import asgi_request, capture, wsgi_request

HOPWATCH = "hopwatch.middleware.HopwatchMiddleware"
ORDER_PLACED = f"{__name__}.order_placed"

order_placed = Signal()


async def on_order_placed(sender, **kwargs):
    """An async receiver: Signal.send() runs it through async_to_sync."""


def on_order_placed_sync(sender, **kwargs):
    """A sync receiver: Signal.asend() runs it through sync_to_async."""


def place_order(request):
    """A sync view sending a signal of its own with send()."""
    order_placed.send(sender=None)
    return HttpResponse("placed")


async def place_order_async(request):
    await order_placed.asend(sender=None)
    return HttpResponse("placed")


def signup(request):
    """A sync view enqueueing a task on ImmediateBackend: task_finished is sent with send()."""
    from tests.testapp.tasks import double

    return HttpResponse(str(double.enqueue(21).return_value))


urlpatterns = [
    path("place/", place_order),
    path("place-async/", place_order_async),
    path("signup/", signup),
]


@pytest.fixture
def site(db):
    with override_settings(
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[HOPWATCH],
        TASKS={"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}},
    ):
        yield


@pytest.fixture
def async_receiver():
    order_placed.connect(on_order_placed)
    try:
        yield
    finally:
        order_placed.disconnect(on_order_placed)


def report_text(log_lines, tmp_path, capsys) -> str:
    log = tmp_path / "app.log"
    log.write_text("\n".join(log_lines.raw) + "\n", encoding="utf-8")
    assert main(["report", str(log), "--format", "text", "--jobs", "1"]) == 0
    return " ".join(capsys.readouterr().out.split())


def signal_hops(record) -> list[tuple[str, str, str]]:
    return [
        (hop.cause.kind, hop.cause.site, hop.direction)
        for hop in record.hops()
        if hop.cause.kind == "signal"
    ]


def _test_client():
    response = Client().get("/place/")
    return response.status_code, response.content


def _wsgi():
    status, body = wsgi_request("/place/")
    return int(status.split()[0]), body


def _asgi():
    result = asgi_request("/place/")
    return result.status, result.body


SENT = ("signal", ORDER_PLACED, "async_to_sync")
#: how the sync view was served -> (hops, async_to_sync, new event loops), signal hops
SERVED = {
    "test-client": (_test_client, (1, 1, 1), [SENT]),
    "wsgi": (_wsgi, (1, 1, 1), [SENT]),
    # request_started, the view's own sync_to_async, the signal's async_to_sync back
    # onto the request's loop (no new one), the response's close
    "asgi": (_asgi, (4, 1, 0), [("signal", "request_started", "sync_to_async"), SENT]),
}


@pytest.mark.parametrize(("serve", "counts", "signals"), SERVED.values(), ids=SERVED.keys())
def test_an_async_receiver_of_a_signal_sent_with_send_gets_the_advice_to_make_it_sync(
    site, async_receiver, log_lines, tmp_path, capsys, serve, counts, signals
):
    """The report gave it the advice for the opposite case ("Sync receivers of a signal
    sent with `asend()` ... write receivers as `async def`"): the receiver is async
    already, and that is why the hop is there."""
    with capture() as records:
        assert serve() == (200, b"placed")
    (record,) = records
    assert (len(record), record.async_to_sync, record.new_loops) == counts
    assert signal_hops(record) == signals
    text = report_text(log_lines, tmp_path, capsys)
    assert _advice.SIGNAL_ASYNC_RECEIVER.summary in text
    assert _advice.SIGNAL.summary not in text
    assert "make such a receiver a plain `def`" in _advice.SIGNAL_ASYNC_RECEIVER.summary


def test_a_sync_receiver_of_a_signal_sent_with_asend_keeps_the_signal_advice(
    site, log_lines, tmp_path, capsys
):
    order_placed.connect(on_order_placed_sync)
    try:
        with capture() as records:
            result = asgi_request("/place-async/")
    finally:
        order_placed.disconnect(on_order_placed_sync)
    assert (result.status, result.body) == (200, b"placed")
    (record,) = records
    assert signal_hops(record) == [
        ("signal", "request_started", "sync_to_async"),
        ("signal", ORDER_PLACED, "sync_to_async"),
    ]
    text = report_text(log_lines, tmp_path, capsys)
    assert _advice.SIGNAL.summary in text
    assert _advice.SIGNAL_ASYNC_RECEIVER.summary not in text


@pytest.mark.skipif(django.VERSION < (6, 0), reason="django.tasks is Django 6.0+")
def test_an_async_receiver_of_a_task_signal_gets_the_advice_to_make_it_sync(
    site, log_lines, tmp_path, capsys
):
    """ImmediateBackend sends task_enqueued, task_started and task_finished with send()
    (the probe's case: the receiver of a task signal under the sync test Client)."""
    from django.tasks.signals import task_finished

    async def on_task_finished(sender, task_result, **kwargs):
        pass

    task_finished.connect(on_task_finished)
    try:
        with capture() as records:
            response = Client().get("/signup/")
    finally:
        task_finished.disconnect(on_task_finished)
    assert (response.status_code, response.content) == (200, b"42")
    (record,) = records
    assert (len(record), record.async_to_sync, record.new_loops) == (1, 1, 1)
    assert signal_hops(record) == [
        ("signal", "django.tasks.signals.task_finished", "async_to_sync")
    ]
    text = report_text(log_lines, tmp_path, capsys)
    assert (
        "signals.task_finished (signal): " in text
    ), text  # the report's short name for Django's own signal
    assert _advice.SIGNAL_ASYNC_RECEIVER.summary in text
    assert _advice.SIGNAL.summary not in text


def test_an_async_receiver_of_request_started_under_wsgi_is_the_projects_to_change(
    site, log_lines, tmp_path, capsys
):
    """Django's own receivers of request_started are sync, so under ASGI (asend()) their
    sync_to_async stays whatever the project does, and the report leaves it out of "what
    to change first". An ``async def`` receiver of the project's under WSGI (send()) is
    the project's own async_to_sync, a new event loop a request: it was left out too,
    though its advice said to make it a plain ``def``."""
    from django.core.signals import request_started

    async def on_request_started(sender, **kwargs):
        pass

    request_started.connect(on_request_started)
    try:
        with capture() as records:
            status, body = wsgi_request("/place/")
    finally:
        request_started.disconnect(on_request_started)
    assert (int(status.split()[0]), body) == (200, b"placed")
    (record,) = records
    assert signal_hops(record) == [("signal", "request_started", "async_to_sync")]
    log = tmp_path / "app.log"
    log.write_text("\n".join(log_lines.raw) + "\n", encoding="utf-8")
    assert main(["report", str(log), "--format", "json", "--jobs", "1"]) == 0
    document = json.loads(capsys.readouterr().out)
    ((cause,),) = [row["causes"] for row in document["rows"]]
    assert (cause["site"], cause["advice"]["key"], cause["advice"]["fixable"]) == (
        "request_started",
        _advice.SIGNAL_ASYNC_RECEIVER.key,
        True,
    )
    assert [item["site"] for item in document["fixable"]] == ["request_started"]
