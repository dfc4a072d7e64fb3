"""One endpoint per kind of hop, with its fixed twin where there is one."""

import asyncio
import json

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils.html import format_html, format_html_join

from example_site.shop.models import Product
from example_site.shop.signals import order_placed, order_placed_async


async def hello(request):
    return HttpResponse("hello\n")


def hello_sync(request):
    return HttpResponse("hello from a thread\n")


async def products_one_by_one(request):
    """N+1: one query for the ids, then one aget() (one hop) per product."""
    ids = [pk async for pk in Product.objects.values_list("pk", flat=True)]
    products = [await Product.objects.aget(pk=pk) for pk in ids]
    return JsonResponse({"products": [p.name for p in products]})


async def products_batch(request):
    """The fix: one query, one hop."""
    products = [p async for p in Product.objects.all()]
    return JsonResponse({"products": [p.name for p in products]})


async def product_detail(request, pk):
    product = await Product.objects.filter(pk=pk).afirst()
    if product is None:
        return JsonResponse({"error": "no such product"}, status=404)
    return JsonResponse({"name": product.name, "price_cents": product.price_cents})


def _csv_rows():
    yield "name,price_cents\n"
    for product in Product.objects.all():
        yield f"{product.name},{product.price_cents}\n"


async def _acsv_rows():
    yield "name,price_cents\n"
    async for product in Product.objects.all():
        yield f"{product.name},{product.price_cents}\n"


def export_sync_iterator(request):
    """A sync view streaming a sync iterator: under ASGI, Django consumes the
    iterator through sync_to_async (one hop) and buffers it."""
    return StreamingHttpResponse(_csv_rows(), content_type="text/csv")


async def export_async_iterator(request):
    """The fix: an async view with an async iterator streams on the loop."""
    return StreamingHttpResponse(_acsv_rows(), content_type="text/csv")


async def place_order_sync_receiver(request):
    await asyncio.sleep(0)  # "save the order"
    await order_placed.asend(sender=None, order_id=42)
    return HttpResponse(json.dumps({"order": 42}), content_type="application/json")


async def place_order_async_receiver(request):
    await asyncio.sleep(0)
    await order_placed_async.asend(sender=None, order_id=42)
    return HttpResponse(json.dumps({"order": 42}), content_type="application/json")


async def boom(request):
    raise RuntimeError("the example site's deliberate error")


#: The endpoints the index page lists (debug mode), with what each shows.
INDEX = [
    ("/hello/", "an async view behind startproject's middleware"),
    ("/hello-sync/", "a sync view under ASGI"),
    ("/products/one-by-one/", "N+1: one aget() per product"),
    ("/products/", "its fix: one query"),
    ("/products/1/", "one afirst()"),
    ("/mw/legacy/", "a sync-only middleware: fewer hops, a pinned thread"),
    ("/mw/rewrite/", "its async-capable rewrite"),
    ("/export/sync-iterator/", "a sync iterator streamed under ASGI"),
    ("/export/", "its fix: an async iterator"),
    ("/orders/sync-receiver/", "a sync signal receiver"),
    ("/orders/", "its fix: an async receiver"),
    ("/boom/", "an unhandled exception"),
]


async def index(request):
    """Debug mode's start page: the toolbar's Hops panel shows this page's hops; each
    button fetches an endpoint, and the toolbar switches to that request."""
    rows = format_html_join(
        "\n",
        '<tr><td><a href="{0}">{0}</a></td><td>{1}</td>'
        '<td><button type="button" data-fetch="{0}">fetch</button></td></tr>',
        INDEX,
    )
    page = format_html(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<title>hopwatch example site</title></head><body>"
        "<h1>hopwatch example site</h1>"
        "<p>Open the toolbar's <b>Hops</b> panel. A fetch button requests an endpoint;"
        " the toolbar then shows that request (its History panel lists them all).</p>"
        "<table>{}</table>"
        "<script>document.addEventListener('click', (event) => {{"
        " const url = event.target.dataset.fetch; if (url) fetch(url); }});</script>"
        "</body></html>",
        rows,
    )
    return HttpResponse(page)
