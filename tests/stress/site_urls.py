"""The served stress site: the example site's URLs plus ``tests.stress.urls``."""

from django.urls import include, path

urlpatterns = [
    path("", include("tests.stress.urls")),
    path("", include("example_site.urls")),
]
