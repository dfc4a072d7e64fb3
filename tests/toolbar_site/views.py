"""Pages for the toolbar to show: each makes hops of known kinds."""

from asgiref.sync import async_to_sync, sync_to_async
from django.dispatch import Signal
from django.http import HttpResponse

from tests.testapp.models import Item

PAGE = (
    "<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
)


async def page(request):
    """An async view behind startproject's middleware: 15 hops under ASGI."""
    return HttpResponse(PAGE.format(title="page"))


#: A signal of the site's own, sent with send() by signal_page.
page_shown = Signal()


def signal_page(request):
    """A sync view sending a signal with send(): an async receiver of it is one hop."""
    page_shown.send(sender=None)
    return HttpResponse(PAGE.format(title="signal"))


async def orm_page(request):
    """Two async ORM calls, each a hop with this file's call site."""
    await Item.objects.acount()
    await Item.objects.filter(name="x").aexists()
    return HttpResponse(PAGE.format(title="orm"))


def _hostile():
    return None


# A callable whose name is markup: the panel must print it as text.
_hostile.__qualname__ = "<script>alert('hop')</script>"


async def hostile_page(request, name):
    await sync_to_async(_hostile)()
    return HttpResponse(PAGE.format(title="hostile"))


def _noop():
    return None


async def many_hops_page(request):
    """Ten hops of its own, in a record that keeps only 5 hops one by one (the real
    limit is 1000): beyond it, hops are counted but not listed."""
    from hopwatch._django import current_request

    current_request().detail_limit = 5
    for _ in range(10):
        await sync_to_async(_noop)()
    return HttpResponse(PAGE.format(title="many"))


async def nested_dropped_page(request):
    """The crossings of /nested/ (depths 1, 2, 3), in a record that keeps only two
    more hops one by one: the outermost of them finishes last and is not kept."""
    from hopwatch._django import current_request
    from tests.testapp.views import _middle

    record = current_request()
    record.detail_limit = len(record.details) + 2
    await sync_to_async(_middle)()
    return HttpResponse(PAGE.format(title="nested, dropped"))


async def serves_a_request(request):
    """A view that serves another request inside this one (the AsyncClient, as a test
    or a proxy view might): /page/, its request id "inner-1"."""
    from django.test import AsyncClient

    inner = await AsyncClient().get("/page/", headers={"X-Request-ID": "inner-1"})
    return HttpResponse(PAGE.format(title=f"served inside: {inner.status_code}"))


def sync_page(request):
    return HttpResponse(PAGE.format(title="sync"))


def show_toolbar(request):
    """A SHOW_TOOLBAR_CALLBACK of the project's own (sync: the toolbar calls it in a thread)."""
    return True


async def _anoop():
    return None


def show_toolbar_after_a_hop(request):
    """A SHOW_TOOLBAR_CALLBACK that crosses back to async inside the toolbar's crossing."""
    async_to_sync(_anoop)()
    return True


async def show_toolbar_async(request):
    """An async SHOW_TOOLBAR_CALLBACK that asks the database (the toolbar awaits it as
    it is, in no crossing of its own): the async ORM call is one hop."""
    return not await Item.objects.filter(name="hide the toolbar").aexists()


async def _show_toolbar_asks_the_database():
    return not await Item.objects.filter(name="hide the toolbar").aexists()


async def show_toolbar_async_through_a_helper(request):
    """The same, the ORM call made in a helper of its own (its call site is the helper's)."""
    return await _show_toolbar_asks_the_database()
