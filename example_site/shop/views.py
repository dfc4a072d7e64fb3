"""One endpoint per kind of hop, with its fixed twin where there is one."""

import asyncio
import json

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse

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
