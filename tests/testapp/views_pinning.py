"""Views that pin worker threads for known, different times (tests/test_pinned_by.py)."""

import asyncio

from asgiref.sync import async_to_sync, sync_to_async
from django.http import HttpResponse
from django.urls import path

#: How long each sync function holds its thread while async work runs.
SHORT, LONG = 0.005, 0.15


async def _nap(seconds):
    await asyncio.sleep(seconds)


def pins_briefly():
    async_to_sync(_nap)(SHORT)


def pins_long():
    async_to_sync(_nap)(LONG)


async def two_pins_view(request):
    """The long pin first (what a first crossing costs more goes to it), then two short
    ones: the cause seen last, and the one with more crossings, is not the answer."""
    await sync_to_async(pins_long)()
    await sync_to_async(pins_briefly)()
    await sync_to_async(pins_briefly)()
    return HttpResponse("pinned twice")


urlpatterns = [path("two-pins/", two_pins_view)]
