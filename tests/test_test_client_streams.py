"""A streaming response read through the test clients: the line counts the hops its
iterator makes while the test reads it, as a server's line does.

The test clients return a streaming response unread; the test reads
``streaming_content`` after the handler returned, and Django's wrapper closes the
response when it runs out. The sync ``Client``'s record waited for that close
but took the test's reading out of the request's scope (its hops were counted
nowhere: ``hops: 0`` where gunicorn's line said 4); the ``AsyncClient``'s record
was closed as the handler returned, before the body was read. Each view here is
also requested through Django's real handler, as a server drives it, and the
two lines are compared whole.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from asgiref.sync import async_to_sync
from django.http import HttpResponse, StreamingHttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path

from hopwatch.testing import count_hops
from tests.helpers import asgi_request, capture, causes, wsgi_request
from tests.testapp.models import Item


async def _anoop():
    return None


def _sync_chunks():
    for chunk in (b"a", b"b"):
        async_to_sync(_anoop)()  # a hop per chunk
        yield chunk


async def _async_chunks():
    for chunk in (b"a", b"b"):
        await Item.objects.acount()  # an orm hop per chunk
        yield chunk


def sync_stream_view(request):
    return StreamingHttpResponse(_sync_chunks())


async def async_stream_view(request):
    return StreamingHttpResponse(_async_chunks())


def plain_view(request):
    return HttpResponse(b"plain")


async def closed_stream_view(request):
    response = StreamingHttpResponse(iter([b"a", b"b"]))
    response.close()  # as a view or middleware that released its resources already
    return response


urlpatterns = [
    path("sync/", sync_stream_view),
    path("async/", async_stream_view),
    path("plain/", plain_view),
    path("closed/", closed_stream_view),
]

SETTINGS = {"ROOT_URLCONF": __name__, "MIDDLEWARE": ["hopwatch.middleware.HopwatchMiddleware"]}


def _site_of(marker, function):
    lines = Path(__file__).read_text().splitlines()
    number = next(i for i, line in enumerate(lines, 1) if line.endswith(f"# {marker}"))
    return f"tests/test_test_client_streams.py:{number} in {function}"


SYNC_CHUNK_HOPS = {("other", f"{__name__}._anoop", _site_of("a hop per chunk", "_sync_chunks")): 2}
ASYNC_CHUNK_HOPS = {
    ("orm", "QuerySet.acount", _site_of("an orm hop per chunk", "_async_chunks")): 2
}
STARTED = ("signal", "request_started", None)
#: The ASGIHandler closes the response through sync_to_async; the AsyncClient's
#: wrapper calls close() when the content runs out (no crossing).
ASGI_CLOSE = ("response", "StreamingHttpResponse.close", None)


def test_the_test_clients_line_counts_a_sync_streams_hops_as_the_wsgi_handlers(db):
    """(db: closing a response sends request_finished, whose receiver closes connections.)"""
    with override_settings(**SETTINGS), capture() as records:
        assert wsgi_request("/sync/") == ("200 OK", b"ab")
        response = Client().get("/sync/")
        assert len(records) == 1  # the test client's waits for its response's close
        async_to_sync(_anoop)()  # the test's own hop, not the request's
        assert b"".join(response.streaming_content) == b"ab"
    wsgi, client = records
    assert (wsgi.interface, client.interface) == ("wsgi", "test-client")
    assert causes(wsgi) == causes(client) == SYNC_CHUNK_HOPS
    assert len(client) == 2 and "response_closed" not in (client.extra or {})


def test_a_stream_the_test_reads_after_another_request_keeps_its_hops(db):
    """A request is finished by its response's close, never by another request: the
    test client's stream, read after the test made another request, is still open
    and its line counts the 2 hops its reading made."""
    with override_settings(**SETTINGS), capture() as records:
        client = Client()
        stream = client.get("/sync/")
        assert client.get("/plain/").content == b"plain"
        assert [record.path for record in records] == ["/plain/"]
        assert b"".join(stream.streaming_content) == b"ab"
    plain, streamed = records
    assert (plain.path, streamed.path) == ("/plain/", "/sync/")
    assert causes(plain) == {}
    assert causes(streamed) == SYNC_CHUNK_HOPS
    assert len(streamed) == 2 and "response_closed" not in (streamed.extra or {})


async def _read_through_the_async_client(records):
    response = await AsyncClient().get("/async/")
    assert records == []  # not read yet: the request is not over
    await Item.objects.acount()  # the test's own hop, not the request's
    return b"".join([chunk async for chunk in response.streaming_content])


def test_the_async_clients_line_counts_an_async_streams_hops_as_the_asgi_handlers(
    transactional_db,
):
    with override_settings(**SETTINGS), capture() as records:
        assert asyncio.run(_read_through_the_async_client(records)) == b"ab"
        assert asgi_request("/async/").body == b"ab"
    client, asgi = records
    assert (client.interface, asgi.interface) == ("test-async-client", "asgi")
    assert causes(asgi) == {STARTED: 1, **ASYNC_CHUNK_HOPS, ASGI_CLOSE: 1}
    assert causes(client) == {STARTED: 1, **ASYNC_CHUNK_HOPS}
    assert "response_closed" not in (client.extra or {})


def test_a_hop_budget_around_the_test_client_and_its_reading(db):
    """A block around the request and the reading counts the stream's hops once (the
    request's, forwarded to the block) and the test's own hop between reads."""
    with override_settings(**SETTINGS), capture() as records, count_hops() as hops:
        response = Client().get("/sync/")
        chunks = iter(response.streaming_content)
        assert next(chunks) == b"a"
        async_to_sync(_anoop)()  # the test's own hop, between two chunks
        assert list(chunks) == [b"b"]
    (record,) = records
    assert len(record) == 2 and len(hops) == 3


def test_an_async_stream_the_test_closes_unread_is_written_when_closed(transactional_db):
    async def get():
        return await AsyncClient().get("/async/")

    with override_settings(**SETTINGS), capture() as records:
        response = asyncio.run(get())
        assert records == []
        response.close()
    (record,) = records
    assert causes(record) == {STARTED: 1}
    assert "response_closed" not in (record.extra or {})


def test_an_async_stream_closed_before_the_async_client_returned_is_written_then(db):
    """An async view returns a streaming response it closed already: nothing will close
    it again, so the request is over when the AsyncClient returns. Its line is written
    by then, closed as usual, and does not time the test's code after it."""

    async def get():
        response = await AsyncClient().get("/closed/")
        returned = time.perf_counter_ns()
        written = list(records)
        await asyncio.sleep(0.05)  # the test's own code, after the request
        return response, returned, written

    with override_settings(**SETTINGS), capture() as records:
        response, returned, written = asyncio.run(get())
        assert response.closed
    (record,) = written
    assert records == written  # and none later
    assert (record.interface, record.path, record.status) == ("test-async-client", "/closed/", 200)
    assert causes(record) == {STARTED: 1}
    assert "response_closed" not in (record.extra or {})
    assert record.started_ns < record.ended_ns <= returned
