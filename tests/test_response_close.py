"""Django closes every response it sent, and under ASGI through ``sync_to_async``:
that hop is kind ``response``, named ``<the response's class>.close``, whichever
class's ``close`` runs (docs/causes.md).

The rule was registered on ``HttpResponseBase.close``'s own code only: a
subclass overriding ``close`` (calling ``super().close()`` or not) fell through to
the fallback, kind ``other``, where the report counts it as the project's to fix.
Each request goes through Django's real ASGIHandler or the AsyncClient, with
hopwatch's middleware only, and its causes are compared whole.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.test import AsyncClient, override_settings
from django.urls import path

from hopwatch._advice import RESPONSE, advice_for
from hopwatch.report.rank import fixable
from tests.helpers import asgi_request, capture, causes

CLOSED: list[str] = []


class ClosingResponse(HttpResponse):
    def close(self):
        CLOSED.append(type(self).__name__)
        super().close()


class InheritedClose(ClosingResponse):
    """Runs ClosingResponse's close: named after its own class, as HttpResponse's is."""


class ClosingStream(StreamingHttpResponse):
    def close(self):
        CLOSED.append(type(self).__name__)
        super().close()


class Resource:
    def close(self):
        CLOSED.append("Resource")


async def _chunks():
    yield b"a"
    yield b"b"


async def closing_view(request):
    return ClosingResponse("ok")


async def inherited_view(request):
    return InheritedClose("ok")


async def stream_view(request):
    return ClosingStream(_chunks())


async def file_view(request):
    return FileResponse(Path(__file__).open("rb"))


async def resource_view(request):
    await sync_to_async(Resource().close)()  # a resource's close
    return HttpResponse("ok")


urlpatterns = [
    path("closing/", closing_view),
    path("inherited/", inherited_view),
    path("stream/", stream_view),
    path("file/", file_view),
    path("resource/", resource_view),
]

SETTINGS = {"ROOT_URLCONF": __name__, "MIDDLEWARE": ["hopwatch.middleware.HopwatchMiddleware"]}
STARTED = ("signal", "request_started", None)


def asgi(path):
    CLOSED.clear()
    with override_settings(**SETTINGS), capture() as records:
        result = asgi_request(path)
    assert result.status == 200
    assert len(records) == 1, records
    return causes(records[0])


def test_an_overriding_close_is_the_response_hop():
    assert asgi("/closing/") == {STARTED: 1, ("response", "ClosingResponse.close", None): 1}
    assert CLOSED == ["ClosingResponse"]


def test_an_inherited_override_is_named_after_the_responses_class():
    assert asgi("/inherited/") == {STARTED: 1, ("response", "InheritedClose.close", None): 1}
    assert CLOSED == ["InheritedClose"]


def test_a_streaming_responses_overriding_close_is_the_response_hop():
    assert asgi("/stream/") == {STARTED: 1, ("response", "ClosingStream.close", None): 1}
    assert CLOSED == ["ClosingStream"]


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume")
def test_a_file_response_is_closed_as_every_response():
    """(Its file is a sync iterator: under ASGI Django reads it in a thread.)"""
    assert asgi("/file/") == {
        STARTED: 1,
        ("stream", "StreamingHttpResponse (sync iterator)", None): 1,
        ("response", "FileResponse.close", None): 1,
    }


def test_another_objects_close_is_not_a_response_hop():
    """The rule asks whether ``close`` is bound to a response: a resource's is the
    user's own call, named with its call site."""
    lines = Path(__file__).read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.endswith("# a resource's close"))
    assert asgi("/resource/") == {
        STARTED: 1,
        (
            "other",
            f"{__name__}.Resource.close",
            f"tests/test_response_close.py:{line} in resource_view",
        ): 1,
        ("response", "HttpResponse.close", None): 1,
    }


def test_an_overriding_close_under_the_async_client():
    """The AsyncClient closes a response the way the ASGIHandler does."""
    CLOSED.clear()
    with override_settings(**SETTINGS), capture() as records:
        assert asyncio.run(AsyncClient().get("/closing/")).content == b"ok"
    (record,) = records
    assert causes(record) == {STARTED: 1, ("response", "ClosingResponse.close", None): 1}
    assert CLOSED == ["ClosingResponse"]


def test_what_the_report_says_of_an_overriding_close():
    """Django's close of every response: the report's advice for kind response, and
    not the project's to remove (as HttpResponse.close)."""
    for site in ("ClosingResponse.close", "ClosingStream.close", "HttpResponse.close"):
        assert advice_for("response", site, "sync_to_async") is RESPONSE
        assert not fixable("response", site)
