"""testapp's URLs (``/hops/<n>/``, ``/slow/``, ...) plus the stress views (``/stress/...``)."""

from django.urls import include, path

from tests.stress import views

urlpatterns = [
    path("stress/load/", views.load),
    path("stress/stream/", views.slow_stream),
    path("stress/stream-error/", views.stream_error),
    path("stress/sync-stream-error/", views.sync_stream_error),
    path("stress/hang/", views.hang),
    path("stress/fire-and-forget/", views.fire_and_forget),
    path("stress/session/", views.session_view),
    path("stress/remember/", views.remember_request),
    path("", include("tests.testapp.urls")),
]
