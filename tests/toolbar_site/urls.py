from django.urls import include, path

from tests.testapp.views import (
    nested_serving_view,
    nested_view,
    sleepy_async_view,
    stream_sync_view,
)
from tests.toolbar_site import views

urlpatterns = [
    path("page/", views.page),
    path("serves-a-request/", views.serves_a_request),
    path("orm/", views.orm_page),
    path("sync/", views.sync_page),
    path("stream/", stream_sync_view),
    path("signal/", views.signal_page),
    path("nested/", nested_view),
    path("many/", views.many_hops_page),
    path("nested-dropped/", views.nested_dropped_page),
    # A sync view that serves /sleepy/ inside itself through the test Client.
    path("serving/", nested_serving_view),
    path("sleepy/", sleepy_async_view),
    # The route pattern itself is markup-like: "<str:name>" must be escaped.
    path("hostile/<str:name>/", views.hostile_page),
    # Unconditionally (debug_toolbar_urls() is empty unless DEBUG was on at import).
    path("__debug__/", include("debug_toolbar.urls")),
]
