"""A third-party-style middleware, as many are written, and its async-capable rewrite."""

import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction


class LegacyAuditMiddleware:
    """A plain class with no capability flags: Django treats it as sync-only.

    In an async project Django adapts the chain around it: the request enters
    it through sync_to_async, leaves it through async_to_sync, and the
    middleware above it run sync too. The request holds a worker thread all
    the way through.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.monotonic()
        response = self.get_response(request)
        response["X-Audit-Ms"] = f"{(time.monotonic() - started) * 1000:.1f}"
        return response


class AuditMiddleware:
    """The rewrite: sync and async capable, so Django never adapts it."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        started = time.monotonic()
        response = self.get_response(request)
        response["X-Audit-Ms"] = f"{(time.monotonic() - started) * 1000:.1f}"
        return response

    async def __acall__(self, request):
        started = time.monotonic()
        response = await self.get_response(request)
        response["X-Audit-Ms"] = f"{(time.monotonic() - started) * 1000:.1f}"
        return response
