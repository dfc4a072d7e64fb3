"""ASGI entry point.

Two extra Django handlers serve ``/mw/legacy/`` and ``/mw/rewrite/`` with one
more middleware each, so one server shows both: a sync-only "third-party"
middleware that forces Django to adapt the chain, and its async-capable
rewrite. (In your project there is one ``get_asgi_application()``.)
"""

import os

from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_site.settings")

django_application = get_asgi_application()
if settings.DEBUG:  # debug mode: serve the toolbar's CSS and JavaScript too
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    django_application = ASGIStaticFilesHandler(django_application)


class MiddlewareVariantHandler(ASGIHandler):
    """An ASGIHandler whose chain has ``extra`` appended to settings.MIDDLEWARE."""

    def __init__(self, extra: str) -> None:
        self.extra = extra
        super().__init__()

    def load_middleware(self, is_async: bool = False) -> None:
        default = settings.MIDDLEWARE
        settings.MIDDLEWARE = [*default, self.extra]  # at start-up, one thread
        try:
            super().load_middleware(is_async=is_async)
        finally:
            settings.MIDDLEWARE = default


legacy_application = MiddlewareVariantHandler("example_site.shop.middleware.LegacyAuditMiddleware")
rewrite_application = MiddlewareVariantHandler("example_site.shop.middleware.AuditMiddleware")


async def application(scope, receive, send):
    path = scope.get("path", "") if scope["type"] == "http" else ""
    if path.startswith("/mw/legacy/"):
        return await legacy_application(scope, receive, send)
    if path.startswith("/mw/rewrite/"):
        return await rewrite_application(scope, receive, send)
    return await django_application(scope, receive, send)
