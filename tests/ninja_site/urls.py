import functools

from django.http import HttpResponse
from django.urls import path, re_path
from django.utils.functional import SimpleLazyObject

from tests.ninja_site.api import api
from tests.testapp import views


async def paged(request, pk, page=None):
    return HttpResponse(f"{pk} {page}")


#: How often the lazy object ``closure_view`` closes over was evaluated.
evaluated: list[str] = []


def _lazy_value() -> str:
    evaluated.append("evaluated")
    return "value"


def _closure_view_factory():
    lazy = SimpleLazyObject(_lazy_value)  # the app's: evaluated only when used

    def closure_view(request):  # sync: under ASGI, a hop named after the view
        return HttpResponse(str(lazy) if "use" in request.GET else "closure")

    return closure_view


urlpatterns = [
    path("api/", api.urls),
    re_path(r"^regex/(?P<pk>[0-9]+)/(?:page-(?P<page>\d+)/)?$", paged),
    path("partial/", functools.partial(views.sync_view)),
    path("class/", views.AsyncClassView.as_view()),
    path("plain/", views.async_view),
    path("closure/", _closure_view_factory()),
    path("lazy-closure/", _closure_view_factory()),  # its lazy object used by no request
]
