import functools

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpResponse
from django.urls import path, re_path
from django.utils.functional import SimpleLazyObject
from django.views import View

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


def api_view(func):
    """A class-based view made per function, as DRF's and adrf's ``@api_view`` make
    one: a ``WrappedAPIView`` class whose ``__name__`` and ``__module__`` are the
    function's (its ``__qualname__`` stays ``WrappedAPIView``)."""
    from django.views import View

    def get(self, request):
        return func(request)

    wrapped = type("WrappedAPIView", (View,), {"get": get})
    wrapped.__name__ = func.__name__
    wrapped.__module__ = func.__module__
    return wrapped.as_view()


@api_view
def drf_style_one(request):
    return HttpResponse("one")


@api_view
def drf_style_two(request):
    return HttpResponse("two")


def renamed(view):
    """A decorator giving its wrapper the view's name through ``__name__`` alone (no
    ``functools.wraps``): every view it wraps is one code, qualified name and module."""

    def wrapper(request, *args, **kwargs):
        return view(request, *args, **kwargs)

    wrapper.__name__ = view.__name__
    return wrapper


@renamed
def renamed_one(request):
    return HttpResponse("one")


@renamed
def renamed_two(request):
    return HttpResponse("two")


class Traced:
    """An agent's wrapper of a view, a callable instance (as wrapt's ``FunctionWrapper``,
    which ddtrace puts over every view): named after its view (``__wrapped__``, and the
    view's names copied), while every instance of its class is one key of the hop path."""

    def __init__(self, view):
        functools.update_wrapper(self, view)
        if iscoroutinefunction(view):
            markcoroutinefunction(self)

    def __call__(self, request, *args, **kwargs):
        return self.__wrapped__(request, *args, **kwargs)


def _async_partial(view):
    """``functools.partial(view)``, marked a coroutine function when ``view`` is one
    (Django tells an async view by that mark; a partial does not forward it)."""
    wrapped = functools.partial(view)
    return markcoroutinefunction(wrapped) if iscoroutinefunction(view) else wrapped


def traced_one(request):
    return HttpResponse("one")


def traced_two(request):
    return HttpResponse("two")


async def traced_async_one(request):
    return HttpResponse("one")


async def traced_async_two(request):
    return HttpResponse("two")


#: Two sync and two async views, each wrapped the same way: by ``Traced``, by a
#: ``functools.partial`` of ``Traced``, and by wrapt's ``FunctionWrapper`` (when installed).
_WRAPPINGS = {"traced": Traced, "partial": lambda view: _async_partial(Traced(view))}
try:
    import wrapt
except ImportError:  # pragma: no cover - wrapt is installed with the agents' tests
    pass
else:

    def _passthrough(wrapped, instance, args, kwargs):
        return wrapped(*args, **kwargs)

    _WRAPPINGS["wrapt"] = lambda view: wrapt.FunctionWrapper(view, _passthrough)

_wrapped_views = [
    path(f"{how}/{view.__name__}/", wrap(view))
    for how, wrap in _WRAPPINGS.items()
    for view in (traced_one, traced_two, traced_async_one, traced_async_two)
]


def shared(request, *args, **kwargs):
    """One view mounted at several routes below: each request's line names its own."""
    return HttpResponse("shared")


class ViewA(View):  # two sync class-based views: as_view()'s closures share one code
    def get(self, request):
        return HttpResponse("a")


class ViewB(View):
    def get(self, request):
        return HttpResponse("b")


urlpatterns = [
    path("api/", api.urls),
    re_path(r"^regex/(?P<pk>[0-9]+)/(?:page-(?P<page>\d+)/)?$", paged),
    path("partial/", functools.partial(views.sync_view)),
    path("class/", views.AsyncClassView.as_view()),
    path("plain/", views.async_view),
    path("wrapped-one/", drf_style_one),
    path("wrapped-two/", drf_style_two),
    path("closure/", _closure_view_factory()),
    path("lazy-closure/", _closure_view_factory()),  # its lazy object used by no request
    path("one/<int:pk>/", shared),
    path("other/<slug:s>/", shared),
    re_path(r"\Aitems/(?P<pk>[0-9]+)/\Z", shared),  # \A and \Z: Python's own anchors
    path("a/", ViewA.as_view()),
    path("b/", ViewB.as_view()),
    path("renamed-one/", renamed_one),
    path("renamed-two/", renamed_two),
    *_wrapped_views,
]
