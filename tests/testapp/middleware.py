"""Middleware shapes whose hop cost the tests pin."""

import asyncio

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.utils.deprecation import MiddlewareMixin


class SyncOnlyMiddleware:
    """A plain class: Django treats it as sync-only (no capability flags)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)


class AsyncOnlyMiddleware:
    """Async-only: under WSGI, Django runs the chain above it async and adapts its
    top back to sync (a new event loop per request)."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        return await self.get_response(request)


class AsyncCapableMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        return self.get_response(request)

    async def _acall(self, request):
        return await self.get_response(request)


class AsyncProcessViewMiddleware(AsyncCapableMiddleware):
    """Sync and async capable, with an ``async def`` process_view: Django's handler adapts
    it to the handler's mode, so under WSGI it is one ``async_to_sync`` per request."""

    async def process_view(self, request, view_func, view_args, view_kwargs):
        return None


try:
    from django.middleware.clickjacking import XFrameOptionsMiddleware
except ImportError:  # pragma: no cover
    XFrameOptionsMiddleware = None


class SyncLastXFrameOptionsMiddleware(XFrameOptionsMiddleware):
    """The audit's advice for startproject's stack: a sync-only subclass of the last
    middleware makes the whole chain run sync (15 hops -> 5 per async-view request)."""

    async_capable = False


class StalledUserLookupMiddleware:
    """After AuthenticationMiddleware: ``request.auser()`` never answers (a user
    store that stalls) until the request is cancelled; ``waiting`` counts the
    lookups under way."""

    sync_capable = False
    async_capable = True
    waiting = 0

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        async def auser():
            cls = type(self)
            cls.waiting += 1
            try:
                await asyncio.Future()
            finally:
                cls.waiting -= 1

        request.auser = auser
        return await self.get_response(request)


class LazyUserMiddleware:
    """Authentication as a middleware written before Django 5 does it: a lazy
    ``request.user`` (it queries when first read), and no ``request.auser``."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from django.contrib.auth import get_user
        from django.utils.functional import SimpleLazyObject

        request.user = SimpleLazyObject(lambda: get_user(request))
        return self.get_response(request)


class AsyncProcessRequestMixin(MiddlewareMixin):
    """An app's bug: an ``async def process_request`` on a ``MiddlewareMixin`` that runs
    sync (WSGI): Django's mixin returns the coroutine as the response, and Django's
    handler fails on it."""

    async def process_request(self, request):
        return None
