from django.conf import settings
from django.urls import path

from example_site.shop import views

urlpatterns = [
    # An async view behind startproject's default middleware: 15 hops.
    path("hello/", views.hello),
    # A sync view under ASGI: one more hop, to run the view in a thread.
    path("hello-sync/", views.hello_sync),
    # The N+1 shape: one aget() per product, and its fix, one query.
    path("products/one-by-one/", views.products_one_by_one),
    path("products/", views.products_batch),
    path("products/<int:pk>/", views.product_detail),
    # A sync-only middleware in the chain, and its async-capable rewrite
    # (served by their own handlers, see asgi.py).
    path("mw/legacy/", views.hello),
    path("mw/rewrite/", views.hello),
    # StreamingHttpResponse: a sync iterator under ASGI, and an async one.
    path("export/sync-iterator/", views.export_sync_iterator),
    path("export/", views.export_async_iterator),
    # A sync signal receiver, and an async one.
    path("orders/sync-receiver/", views.place_order_sync_receiver),
    path("orders/", views.place_order_async_receiver),
    # An async view, meant to be served under WSGI: a new event loop per call.
    path("under-wsgi/", views.hello),
    # An unhandled exception.
    path("boom/", views.boom),
]

if settings.DEBUG:  # debug mode: an index page to start from, and the toolbar's views
    from debug_toolbar.toolbar import debug_toolbar_urls

    urlpatterns += [path("", views.index), *debug_toolbar_urls()]
