"""The audit's Django 6.2 preview (ticket #37177): what 6.2's flag change does to a stack.

6.2 sets ``async_capable = False`` on Django's own ``MiddlewareMixin``
subclasses. The preview's "after" must equal the audit's model of the same
stack declared that way (``tests/testapp/django62.py``: the same classes with
the flag set, read by the audit's own introspection), and what Django really
does with those flags, measured through ``ASGIHandler``.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware
from django.test import override_settings

from hopwatch import audit
from hopwatch.audit import ASGI, VIEW_KINDS, HopTax
from hopwatch.audit.facts import django_6_2_flag_changes
from tests.helpers import asgi_request, capture

HOPWATCH = "hopwatch.middleware.HopwatchMiddleware"
DEFAULT = list(settings.MIDDLEWARE)  # hopwatch + startproject's seven
STARTPROJECT = list(settings.DEFAULT_MIDDLEWARE)
AS_IN_6_2 = [f"tests.testapp.django62.{path.rsplit('.', 1)[1]}" for path in STARTPROJECT]
HERE = __name__


class MySessionMiddleware(SessionMiddleware):
    """A project's subclass: it inherits 6.2's flag."""


class KeptAsyncSessionMiddleware(SessionMiddleware):
    """A project's subclass that keeps today's behaviour on 6.2."""

    async_capable = True


def predicted(stack):
    with override_settings(MIDDLEWARE=stack):
        return audit.audit_settings()


def by_class_name(counts):
    """Sites keyed by the class's own name: Django's and the 6.2 stand-ins' agree."""
    renamed = {}
    for (kind, site), count in counts.items():
        parts = site.split(".")
        short = ".".join(p for p in parts if p[:1].isupper() or p.startswith("process_"))
        renamed[(kind, short or site)] = renamed.get((kind, short or site), 0) + count
    return renamed


def test_which_entries_6_2_changes():
    stack = [
        HOPWATCH,  # not a MiddlewareMixin
        *STARTPROJECT,  # Django's own
        f"{HERE}.MySessionMiddleware",  # inherits it from Django's class
        f"{HERE}.KeptAsyncSessionMiddleware",  # sets the flag itself
        "tests.testapp.django62.SessionMiddleware",  # already declares 6.2's value
        "tests.testapp.middleware.SyncOnlyMiddleware",  # not a mixin
        "tests.test_audit.DeliberatelySyncMixin",  # a project's mixin, flag set
        "tests.test_audit.AsyncViewHookMixin",  # a project's mixin: MiddlewareMixin's default
        "tests.test_audit.plain_function_middleware",
    ]
    assert django_6_2_flag_changes(stack) == (
        False, *[True] * 7, True, False, False, False, False, False, False,
    )  # fmt: skip


def test_the_preview_is_the_model_of_the_stack_as_6_2_declares_it():
    preview = predicted(DEFAULT).django_6_2
    assert preview is not None and preview.affected == tuple(STARTPROJECT)
    as_6_2 = predicted([HOPWATCH, *AS_IN_6_2])
    assert as_6_2.django_6_2 is None  # nothing left to change
    for kind in VIEW_KINDS:
        after, model = preview.after[kind], as_6_2.simulations[(ASGI, kind)]
        assert after.count == model.count
        assert by_class_name(after.sites()) == by_class_name(model.sites())
        assert after.adapters() == model.adapters()
        assert after.modes == model.modes
    assert [preview.before[k].count for k in VIEW_KINDS] == [15, 16]
    assert [preview.after[k].count for k in VIEW_KINDS] == [5, 6]
    # Before, no thread is held; after, one is, for the view and the hops below the chain.
    assert [audit.pinned_section(preview.before[k]) for k in VIEW_KINDS] == [None, None]
    pinned = {k: audit.pinned_section(preview.after[k]) for k in VIEW_KINDS}
    assert [hop.what for hop in pinned["async_view"]] == ["adaptation (below it)", "process_view"]
    assert [hop.what for hop in pinned["sync_view"]] == [
        "adaptation (below it)",
        "process_view",
        "the view",
    ]


@pytest.mark.parametrize(("kind", "path"), [("async_view", "/sleepy/"), ("sync_view", "/sync/")])
def test_the_preview_is_what_django_does_with_those_flags(kind, path, db):
    preview = predicted(DEFAULT).django_6_2
    with override_settings(MIDDLEWARE=[HOPWATCH, *AS_IN_6_2]), capture() as records:
        assert asgi_request(path, query="s=0.05").status == 200
    (record,) = records
    after = preview.after[kind]
    assert len(record) == after.count
    assert record.sync_to_async == after.adapters()["sync_to_async"]
    assert record.async_to_sync == after.adapters()["async_to_sync"]
    # The thread is held by the crossing the preview names, for the hops it lists.
    (bridge,) = [hop for hop in record.hops() if hop.direction == "async_to_sync"]
    assert record.pinned_ns == bridge.wall_ns > 0
    assert record.top_pinning_cause().site == "tests.testapp.django62.SecurityMiddleware"
    inside = [hop for hop in record.hops() if hop.depth >= bridge.depth]
    assert len(inside) == len(audit.pinned_section(after))
    if kind == "async_view":  # the view slept 50 ms while the thread waited
        assert record.pinned_ns >= 50_000_000


def test_the_preview_in_the_json_document_and_the_text():
    report = predicted(DEFAULT)
    report.hop_tax = HopTax(100.0, 50.0, 800.0, samples=10, instrumented=False)
    security = "django.middleware.security.SecurityMiddleware"
    assert audit.document(report)["django_6_2"] == {
        "affected": STARTPROJECT,
        "asgi": {
            "async_view": {
                "before": {"hops": 15, "hop_time_us": 1500.0, "pinned_by": None, "pinned_hops": None, "pinned_hop_time_us": None},
                # request_started, into the chain, process_view, close: 4 x 100; out to the view: 50
                "after": {"hops": 5, "hop_time_us": 450.0, "pinned_by": security, "pinned_hops": 2, "pinned_hop_time_us": 150.0},
            },
            "sync_view": {
                "before": {"hops": 16, "hop_time_us": 1600.0, "pinned_by": None, "pinned_hops": None, "pinned_hop_time_us": None},
                "after": {"hops": 6, "hop_time_us": 550.0, "pinned_by": security, "pinned_hops": 3, "pinned_hop_time_us": 250.0},
            },
        },
    }  # fmt: skip
    text = audit.render_to_string(report, "text")
    assert "Django 6.2 (ticket #37177)" in text and "7 entries here" in text
    assert "async view: 15 -> 5 hops (~1,500 µs -> ~450 µs); nothing pinned -> pinned:" in text
    assert "the view + 2 hops, ~150 µs (by SecurityMiddleware)" in text


def test_no_preview_when_6_2_changes_nothing():
    for stack in ([], [HOPWATCH], [HOPWATCH, *AS_IN_6_2], [HOPWATCH, "tests.testapp.middleware.SyncOnlyMiddleware"]):
        report = predicted(stack)
        assert report.django_6_2 is None
        assert audit.document(report)["django_6_2"] is None
        assert "Django 6.2" not in audit.render_to_string(report, "text")
