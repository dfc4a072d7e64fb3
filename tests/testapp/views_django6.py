"""Views for the hop causes Django 6.x added (and QuerySet.aiterator), one per cause.

Django 6.x APIs are imported inside the views, so the module imports on 5.2
too (the tests skip what a version does not have).
"""

from django.contrib.auth import aauthenticate, get_user_model
from django.core.cache import caches
from django.http import HttpResponse

from tests.testapp.models import Item


async def upload_view(request):
    """The body was read by the handler before the view: its length proves it arrived."""
    return HttpResponse(str(len(request.body)))


async def check_password_view(request):
    """``?ok=1``: the right password; else a wrong one. No database: an unsaved user."""
    user = get_user_model()(username="someone")
    user.set_password("right")  # the test settings' hasher is fast: fine on the loop
    password = "right" if request.GET.get("ok") else "wrong"
    return HttpResponse(str(await user.acheck_password(password)))


async def login_view(request):
    """``?username=``: an existing user (``alice``) or an unknown one, a wrong password."""
    user = await aauthenticate(request, username=request.GET["username"], password="wrong")
    return HttpResponse(str(user))


async def paginate_view(request):
    """``?of=tuple|list|queryset``: page 2 of 3 items per page."""
    from django.core.paginator import AsyncPaginator

    kind = request.GET["of"]
    if kind == "queryset":
        objects = Item.objects.order_by("pk")
    else:
        objects = tuple(range(10)) if kind == "tuple" else list(range(10))
    page = await AsyncPaginator(objects, 3).apage(2)
    items = await page.aget_object_list()
    return HttpResponse(",".join(str(getattr(item, "name", item)) for item in items))


async def enqueue_view(request):
    """``?task=sync|async``: enqueue one task, then read its result back."""
    from tests.testapp import tasks

    task = tasks.double if request.GET["task"] == "sync" else tasks.async_double
    result = await task.aenqueue(21)
    again = await task.aget_result(result.id)
    return HttpResponse(f"{result.status} {again.return_value}")


async def cache_view(request):
    """``?cache=alias&op=set_many|get_many|delete_many|has_key|close``: one bulk call;
    ``op=get_each``: an ``aget`` per key instead."""
    cache = caches[request.GET["cache"]]
    op = request.GET["op"]
    keys = ["a", "b", "c"]
    if op == "set_many":
        outcome = await cache.aset_many(dict.fromkeys(keys, 1))
    elif op == "get_many":
        outcome = sorted(await cache.aget_many(keys))
    elif op == "get_each":
        outcome = [key for key in keys if await cache.aget(key) is not None]
    elif op == "delete_many":
        outcome = await cache.adelete_many(keys)
    elif op == "has_key":
        outcome = await cache.ahas_key("a")
    else:
        outcome = await cache.aclose()
    return HttpResponse(str(outcome))


async def aiterator_view(request):
    """``?chunk=N``: every item through ``aiterator``, N rows per fetch."""
    chunk = int(request.GET["chunk"])
    names = [item.name async for item in Item.objects.order_by("pk").aiterator(chunk_size=chunk)]
    return HttpResponse(",".join(names))
