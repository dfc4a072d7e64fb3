"""The debug-toolbar panel's figures, order and notes, pinned to exact text.

Real requests with the toolbar on (Django's ASGIHandler, the AsyncClient), read
back through the toolbar's own views (``render_panel``, ``history_sidebar``). Where
a figure must be known exactly, the request's stored panel data is given known
durations in the toolbar's store (as the store would hold them) before the panel
is drawn from it.
"""

from __future__ import annotations

import json
import re
from html import unescape
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, override_settings

from tests.helpers import asgi_request

pytest.importorskip("debug_toolbar", reason="django-debug-toolbar is not installed")

from tests.test_debug_toolbar import (
    PAGE_HOPS_ASGI,
    PANEL,
    assert_matches_line,
    get_store,
    line_for,
    render_panel,
    sidebar_subtitle,
    stored_stats,
    tables,
)
from tests.toolbar_site.settings import TOOLBAR


@pytest.fixture
def toolbar(db):
    with override_settings(**TOOLBAR):
        get_store().clear()
        yield
        get_store().clear()


def _served(path: str, request_id: str, *headers: tuple[bytes, bytes]) -> str:
    """``path`` through Django's ASGIHandler with the toolbar on: the toolbar's request id."""
    result = asgi_request(path, headers=[(b"x-request-id", request_id.encode()), *headers])
    assert result.status == 200
    return dict(result.headers)[b"djdt-request-id"].decode()


def _groups(html: str) -> list[str]:
    return re.findall(r'<h5 class="hopwatch-group"[^>]*>(.*?)</h5>', html)


def _text(html: str) -> str:
    return " ".join(html.split())


def _sidebar(client: Any, toolbar_id: str) -> str:
    """The panel's sidebar entry as the History panel's switch draws it from the store."""
    response = client.get(
        "/__debug__/history_sidebar/", {"request_id": toolbar_id, "exclude_history": "true"}
    )
    assert response.status_code == 200
    return sidebar_subtitle(json.loads(response.content)[PANEL]["button"])


def test_every_figure_has_three_decimals_as_the_log_line_writes_them(toolbar, client):
    """The request's stored rows given known durations: each figure is printed as the line
    prints milliseconds (31785000 ns: "31.785 ms"), never rounded to two decimals."""
    toolbar_id = _served("/page/", "pin-ms")
    stats = stored_stats(toolbar_id)
    assert len(stats["rows"]) == PAGE_HOPS_ASGI
    for row in stats["rows"]:
        row.update(wait_ns=1_234_567, run_ns=31_785_000, resume_ns=2_000_499)
        row["wall_ns"] = row["wait_ns"] + row["run_ns"] + row["resume_ns"]
    stats["summary"].update(
        overhead_ns=3_235_066,
        wait_ns=1_234_567,
        resume_ns=2_000_499,
        work_ns=31_785_000,
        pinned_ns=7_001,
    )
    get_store().save_panel(toolbar_id, PANEL, stats)

    html = render_panel(client, toolbar_id)
    found = tables(html)
    (summary,) = found["hopwatch-summary"]
    assert summary[1:6] == ["3.235 ms", "1.235 ms", "2.000 ms", "31.785 ms", "0.007 ms"]
    for row in found["hopwatch-hops"]:
        assert row[5:8] == ["1.235 ms", "31.785 ms", "2.000 ms"]
    # Causes: 13 middleware hooks, the request_started signal, the response's close.
    causes = {row[1]: row[4:] for row in found["hopwatch-causes"]}
    assert causes["HttpResponse.close"] == ["1", "3.235 ms", "35.020 ms"]
    assert causes["request_started"] == ["1", "3.235 ms", "35.020 ms"]
    assert sorted(_groups(html)) == [
        "Closing and rendering the response: 1 hop, 3.235 ms overhead, 35.020 ms in all",
        "MiddlewareMixin hooks: 13 hops, 42.056 ms overhead, 455.261 ms in all",
        "Sync signal receivers: 1 hop, 3.235 ms overhead, 35.020 ms in all",
    ]


def test_cause_groups_come_largest_crossing_time_first(toolbar, client):
    """Groups by their time in all, largest first, not in the order their hops were made
    (request_started, the middleware hooks, the response's close)."""
    toolbar_id = _served("/page/", "pin-order")
    stats = stored_stats(toolbar_id)
    for row in stats["rows"]:
        run = {"HttpResponse.close": 5_000_000, "request_started": 3_000_000}.get(
            row["site"], 100_000
        )
        row.update(wait_ns=0, run_ns=run, resume_ns=0, wall_ns=run)
    get_store().save_panel(toolbar_id, PANEL, stats)

    assert _groups(render_panel(client, toolbar_id)) == [
        "Closing and rendering the response: 1 hop, 0.000 ms overhead, 5.000 ms in all",
        "Sync signal receivers: 1 hop, 0.000 ms overhead, 3.000 ms in all",
        "MiddlewareMixin hooks: 13 hops, 0.000 ms overhead, 1.300 ms in all",
    ]


def test_cause_groups_of_a_real_request_are_in_descending_time(toolbar, client):
    """The same order on a request's own figures: each group's time in all is at least the next's."""
    html = render_panel(client, _served("/page/", "pin-order-real"))
    totals = [float(re.search(r", ([\d.]+) ms in all$", g).group(1)) for g in _groups(html)]
    assert len(totals) == 3
    assert totals == sorted(totals, reverse=True)


def test_the_note_counts_the_hop_made_after_the_toolbar(toolbar, client):
    """Under ASGI the response is closed after the sidebar is drawn: the panel says so."""
    html = _text(render_panel(client, _served("/page/", "pin-after")))
    assert (
        "The toolbar's sidebar is drawn before the response is closed: its figure does not"
        " count the 1 hop marked <em>after the toolbar</em> below." in html
    )
    last = tables(html)["hopwatch-hops"][-1]
    assert last[2:4] == ["response", "HttpResponse.close after the toolbar"]


def test_a_request_served_inside_a_crossing_counts_depth_from_its_own(toolbar, client, log_lines):
    """The AsyncClient called through async_to_sync from sync code (a sync test's way):
    the request runs inside that crossing, but its own crossings are depth 1 in the panel
    ("depth within the request"), and so is its Max depth."""
    response = async_to_sync(AsyncClient().get)("/page/", headers={"X-Request-ID": "pin-depth"})
    assert response.status_code == 200
    toolbar_id = response.headers["djdt-request-id"]
    assert line_for(log_lines, "pin-depth")["hops"] == PAGE_HOPS_ASGI + 2

    found = tables(render_panel(client, toolbar_id))
    assert len(found["hopwatch-hops"]) == PAGE_HOPS_ASGI
    assert [row[9] for row in found["hopwatch-hops"]] == ["1"] * PAGE_HOPS_ASGI
    assert [row[9] for row in found["hopwatch-tool-hops"]] == ["1", "1"]
    (summary,) = found["hopwatch-summary"]
    assert summary[10] == "1"  # Max depth


# Panel data stored by hopwatch 0.x before the panel said whether the line was written
# (schema 1: no "line"), and by a later version of another shape (after a downgrade).


def _another_version(stats: dict[str, Any], schema: int) -> dict[str, Any]:
    stats = {**stats, "schema": schema}
    if schema == 1:
        del stats["line"]
    else:  # a shape this version does not know
        stats["summary"] = {"hop_count": stats["summary"]["hops"]}
        del stats["complete"]
    return stats


@pytest.mark.parametrize("schema", [1, 99])
def test_data_from_another_hopwatch_version_is_said_to_be(toolbar, client, schema):
    """The toolbar's store outlives an upgrade (its database store, a persistent cache):
    a request it kept from another hopwatch version is named as such, in the panel and
    in the History panel's sidebar, and never fails the toolbar."""
    toolbar_id = _served("/page/", f"pin-schema-{schema}")
    stats = stored_stats(toolbar_id)
    get_store().save_panel(toolbar_id, PANEL, _another_version(stats, schema))

    html = _text(unescape(render_panel(client, toolbar_id)))
    assert html == "<p>This panel's data is from another hopwatch version.</p>"
    assert _sidebar(client, toolbar_id) == "from another hopwatch version"


def test_django_code_below_the_toolbar_has_its_frame_as_call_site_and_is_the_requests(
    toolbar, log_lines
):
    """Django's RemoteUserMiddleware below the toolbar (its async path, with
    RemoteUserBackend) logs the user in: its crossings are made by Django's code with no
    code of yours in between, so their call site is the toolbar's frame. They are made
    after the toolbar handed the request on: the request's rows, not the toolbar's."""
    middleware = [*TOOLBAR["MIDDLEWARE"], "django.contrib.auth.middleware.RemoteUserMiddleware"]
    with override_settings(
        MIDDLEWARE=middleware,
        AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.RemoteUserBackend"],
    ):
        toolbar_id = _served("/page/", "pin-remote-user", (b"remote-user", b"ada"))
    stats = stored_stats(toolbar_id)
    assert_matches_line(stats, line_for(log_lines, "pin-remote-user"))
    below = [r for r in stats["rows"] if (r["call_site"] or "").startswith("debug_toolbar/")]
    assert [(r["kind"], r["site"]) for r in below] == [
        ("orm", "QuerySet.aget_or_create"),
        ("other", "RemoteUserBackend.aconfigure_user"),
        ("orm", "QuerySet.aexists"),
        ("other", "SessionStore.asave"),
    ]
    assert all(
        re.fullmatch(r"debug_toolbar/middleware\.py:\d+ in __acall__", r["call_site"])
        for r in below
    )
    assert [r["site"] for r in stats["tool_rows"]] == [
        "debug_toolbar.middleware.show_toolbar",
        "debug_toolbar.panels.sql.panel.SQLPanel.enable_instrumentation",
    ]
