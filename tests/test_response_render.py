"""Under ASGI Django renders a template response after the view through
``sync_to_async`` (``BaseHandler._get_response_async``, whatever the view): that
hop is kind ``response``, named ``<the response's class>.render``, whichever
class's ``render`` runs (docs/causes.md), as every response's ``close`` is.

The rule was registered on ``SimpleTemplateResponse.render``'s own code only: a
subclass overriding ``render`` fell to the caller rule of the handler's view call,
named as a view (``<its module>.render``), where the audit counted the async view
that returned it as a sync one. Each request goes through Django's real
ASGIHandler, with hopwatch's middleware only, and its causes are compared whole.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import override_settings

from hopwatch._advice import RESPONSE, advice_for
from hopwatch.audit.traffic import from_logs
from hopwatch.report.rank import fixable
from tests.helpers import asgi_request, capture, causes
from tests.testapp import views_render
from tests.testapp.views_render import RENDERED

SETTINGS = {"MIDDLEWARE": ["hopwatch.middleware.HopwatchMiddleware"]}
STARTED = ("signal", "request_started", None)


def asgi(path):
    RENDERED.clear()
    with override_settings(**SETTINGS), capture() as records:
        result = asgi_request(path)
    assert (result.status, result.body) == (200, b"ok")
    assert len(records) == 1, records
    return causes(records[0])


@pytest.mark.parametrize(
    ("path", "name", "rendered"),
    [
        ("/render/template/", "TemplateResponse", []),
        ("/render/overriding/", "RenderingResponse", ["RenderingResponse"]),
        # runs RenderingResponse's render: named after its own class, as close is
        ("/render/inherited/", "InheritedRender", ["InheritedRender"]),
        ("/render/simple/", "SimpleRendering", ["SimpleRendering"]),
    ],
)
def test_a_template_responses_render_is_the_response_hop(path, name, rendered):
    assert asgi(path) == {
        STARTED: 1,
        ("response", f"{name}.render", None): 1,
        ("response", f"{name}.close", None): 1,
    }
    assert rendered == RENDERED


def test_a_sync_views_overriding_render_is_not_a_second_view_hop():
    """A sync view under ASGI: one hop calls it, another renders what it returned."""
    assert asgi("/render/sync-view/") == {
        STARTED: 1,
        ("view", "tests.testapp.views_render.sync_rendering_view", None): 1,
        ("response", "RenderingResponse.render", None): 1,
        ("response", "RenderingResponse.close", None): 1,
    }
    assert RENDERED == ["RenderingResponse"]


def test_a_render_replaced_on_the_instance_is_the_response_hop(log_lines):
    """Wagtail's admin sets ``response.render = MethodType(overridden_render, response)``:
    the hop Django's handler makes to render it is still the response's, not a view's
    (a second ``view`` hop made the report and the audit read the async view as sync)."""
    assert asgi("/render/replaced/") == {
        STARTED: 1,
        ("response", "TemplateResponse.render", None): 1,
        ("response", "TemplateResponse.close", None): 1,
    }
    assert RENDERED == ["overridden_render"]
    (line,) = log_lines.parsed()
    assert sorted((s["kind"], s["site"], s["count"]) for s in line["sites"]) == [
        ("response", "TemplateResponse.close", 1),
        ("response", "TemplateResponse.render", 1),
        ("signal", "request_started", 1),
    ]


@pytest.mark.parametrize(
    ("path", "rendered"), [("/render/lambda/", ["lambda"]), ("/render/partial/", [])]
)
def test_a_render_replaced_by_a_lambda_or_a_partial_is_the_response_hop(path, rendered):
    """What Django's handler renders is the response's hop whatever ``render`` is
    (a lambda or a partial has no response bound to it): it was named a view, by the
    lambda's or the partial's function."""
    assert asgi(path) == {
        STARTED: 1,
        ("response", "TemplateResponse.render", None): 1,
        ("response", "TemplateResponse.close", None): 1,
    }
    assert rendered == RENDERED


def test_one_lambda_render_on_responses_of_two_classes_names_each_class():
    """The same lambda, set as render on a TemplateResponse and then on a subclass:
    the name comes from each response (the handler's frame), not the first one's."""
    for kind, name in [
        ("template", "TemplateResponse"),
        ("subclass", "PlainSubclass"),
        ("template", "TemplateResponse"),
        ("subclass", "PlainSubclass"),
    ]:
        assert asgi(f"/render/lambda-of/{kind}/") == {
            STARTED: 1,
            ("response", f"{name}.render", None): 1,
            ("response", f"{name}.close", None): 1,
        }


def test_a_sync_views_render_replaced_by_a_lambda_is_one_view_and_one_render():
    assert asgi("/render/sync-lambda/") == {
        STARTED: 1,
        ("view", "tests.testapp.views_render.sync_lambda_render_view", None): 1,
        ("response", "TemplateResponse.render", None): 1,
        ("response", "TemplateResponse.close", None): 1,
    }


def test_another_objects_render_is_not_a_response_hop():
    """The rule asks whether ``render`` is bound to a template response: a template's
    is the user's own call, named with its call site."""
    source = Path(views_render.__file__)
    lines = source.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.endswith("# a template's render"))
    assert asgi("/render/template-render/") == {
        STARTED: 1,
        (
            "other",
            "django.template.backends.django.Template.render",
            f"tests/testapp/views_render.py:{line} in template_render_view",
        ): 1,
        ("response", "HttpResponse.close", None): 1,
    }


def test_the_audit_reads_an_async_view_whose_response_overrides_render_as_async(
    tmp_path, log_lines
):
    """``hopwatch audit --logs`` tells a sync view under ASGI by its ``view`` hop: an
    overriding render named as a view made these async views read as sync ones."""
    with override_settings(**SETTINGS):
        for path in (
            "/render/overriding/",
            "/render/inherited/",
            "/render/replaced/",
            "/render/sync-view/",
        ):
            asgi_request(path)
    log = tmp_path / "app.log"
    log.write_text("\n".join(log_lines.raw) + "\n")
    traffic = from_logs([str(log)])
    assert traffic.requests == 4
    assert traffic.mix == {
        ("asgi", "async_view"): pytest.approx(3 / 4),
        ("asgi", "sync_view"): pytest.approx(1 / 4),
    }


def test_what_the_report_says_of_an_overriding_render():
    """The report's advice for kind response; unlike close, the project's to save
    (return a plain HttpResponse: rendering the template response early saves nothing)."""
    for site in ("RenderingResponse.render", "TemplateResponse.render"):
        assert advice_for("response", site, "sync_to_async") is RESPONSE
        assert fixable("response", site)
