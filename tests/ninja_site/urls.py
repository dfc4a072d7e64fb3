import functools

from django.http import HttpResponse
from django.urls import path, re_path

from tests.ninja_site.api import api
from tests.testapp import views


async def paged(request, pk, page=None):
    return HttpResponse(f"{pk} {page}")


urlpatterns = [
    path("api/", api.urls),
    re_path(r"^regex/(?P<pk>[0-9]+)/(?:page-(?P<page>\d+)/)?$", paged),
    path("partial/", functools.partial(views.sync_view)),
    path("class/", views.AsyncClassView.as_view()),
    path("plain/", views.async_view),
]
