"""testapp's and the stress views' URLs, plus the transparency probes."""

from django.urls import include, path

from tests.transparency import views

urlpatterns = [
    path("probe/async/", views.async_probe),
    path("probe/sync/", views.sync_probe),
    path("probe/raise-in-thread/", views.raise_in_thread),
    path("", include("tests.stress.urls")),
]
