"""``pinned_by`` names the crossing that pinned a thread the longest
(docs/log-schema.md), of several that pinned threads for different times."""

from __future__ import annotations

from django.test import override_settings

from hopwatch import _hotpath
from tests.helpers import asgi_request, capture
from tests.testapp import views_pinning

HERE = "tests.testapp.views_pinning"


def test_pinned_by_is_the_cause_that_pinned_longest(log_lines):
    with (
        override_settings(
            ROOT_URLCONF="tests.testapp.views_pinning",
            MIDDLEWARE=["hopwatch.middleware.HopwatchMiddleware"],
        ),
        capture() as records,
    ):
        assert asgi_request("/two-pins/").status == 200
    (record,) = records
    by_site = {cause.site: ns for cause, ns in record.pinned_by.items()}
    assert set(by_site) == {f"{HERE}.pins_briefly", f"{HERE}.pins_long"}
    # The long one held its thread longer than the two short ones together.
    assert by_site[f"{HERE}.pins_long"] >= views_pinning.LONG * 1e9
    assert by_site[f"{HERE}.pins_long"] > by_site[f"{HERE}.pins_briefly"]
    assert record.top_pinning_cause().site == f"{HERE}.pins_long", _hotpath.IMPLEMENTATION
    (line,) = log_lines.parsed()
    assert line["pinned_by"] == f"{HERE}.pins_long"
