"""Views returning template responses, which Django renders after the view: under
ASGI through ``sync_to_async`` (``BaseHandler._get_response_async``, Django 5.2 to
6.1), whether the view is async or sync. Some responses override ``render``."""

import functools
import types

from asgiref.sync import sync_to_async
from django.http import HttpResponse
from django.template import engines
from django.template.response import SimpleTemplateResponse, TemplateResponse

RENDERED: list[str] = []


def _template():
    return engines["django"].from_string("{{ word }}")


class RenderingResponse(TemplateResponse):
    """Overrides ``render``, as a project's response class that adds to every page does."""

    def render(self):
        RENDERED.append(type(self).__name__)
        return super().render()


class InheritedRender(RenderingResponse):
    """Runs RenderingResponse's render: named after its own class, as TemplateResponse's is."""


class PlainSubclass(TemplateResponse):
    """A subclass that overrides nothing."""


class SimpleRendering(SimpleTemplateResponse):
    """A ``SimpleTemplateResponse`` (no request) that overrides ``render``."""

    def render(self):
        RENDERED.append(type(self).__name__)
        return super().render()


async def template_view(request):
    return TemplateResponse(request, _template(), {"word": "ok"})


async def rendering_view(request):
    return RenderingResponse(request, _template(), {"word": "ok"})


async def inherited_view(request):
    return InheritedRender(request, _template(), {"word": "ok"})


async def simple_view(request):
    return SimpleRendering(_template(), {"word": "ok"})


async def replaced_render_view(request):
    """Replaces ``render`` on the instance, as Wagtail's admin does
    (``wagtail.admin.localization``): a function of another name bound to the response."""
    response = TemplateResponse(request, _template(), {"word": "ok"})
    render = response.render

    def overridden_render(response):
        RENDERED.append("overridden_render")
        return render()

    response.render = types.MethodType(overridden_render, response)
    return response


async def lambda_render_view(request):
    """Replaces ``render`` on the instance with a lambda (no response bound to it)."""
    response = TemplateResponse(request, _template(), {"word": "ok"})
    render = response.render

    def rendered():
        RENDERED.append("lambda")
        return render()

    response.render = lambda: rendered()
    return response


async def lambda_render_of_view(request, kind):
    """One lambda set as ``render`` on a TemplateResponse or on a subclass, by ``kind``."""
    cls = PlainSubclass if kind == "subclass" else TemplateResponse
    response = cls(request, _template(), {"word": "ok"})
    render = response.render
    response.render = lambda: render()
    return response


async def partial_render_view(request):
    """Replaces ``render`` on the instance with a partial of the class's own."""
    response = TemplateResponse(request, _template(), {"word": "ok"})
    response.render = functools.partial(SimpleTemplateResponse.render, response)
    return response


def sync_lambda_render_view(request):
    """A sync view whose response's ``render`` is a lambda: two hops, a view and a render."""
    response = TemplateResponse(request, _template(), {"word": "ok"})
    render = response.render
    response.render = lambda: render()
    return response


def sync_rendering_view(request):
    """A sync view: under ASGI it runs in a thread, and its response is rendered in another."""
    return RenderingResponse(request, _template(), {"word": "ok"})


async def template_render_view(request):
    html = await sync_to_async(_template().render)({"word": "ok"})  # a template's render
    return HttpResponse(html)
