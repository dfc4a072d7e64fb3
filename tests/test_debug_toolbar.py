"""hopwatch's django-debug-toolbar panel, driven through the toolbar as a developer uses it.

Real requests (the test ``Client``, ``AsyncClient`` and Django's ``ASGIHandler``)
with the toolbar on; the panel is read back through the toolbar's own API (its
store, its ``render_panel`` and ``history_sidebar`` views) and checked against
hopwatch's log line for the same request. The browser test is in
``test_debug_toolbar_browser.py``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.test import AsyncClient, override_settings

from hopwatch import _errors
from hopwatch._advice import MIDDLEWARE_ASYNC_ONLY, SIGNAL, SIGNAL_ASYNC_RECEIVER, code_spans
from hopwatch.apps import activate, deactivate
from hopwatch.contrib import _hop_table
from tests.helpers import asgi_request

pytest.importorskip("debug_toolbar", reason="django-debug-toolbar is not installed")

from tests.toolbar_site.settings import TOOLBAR

ROOT = Path(__file__).resolve().parent.parent
PANEL = "HopsPanel"
TOOLBAR_PANELS_WITHOUT_HOPWATCH = [
    p for p in TOOLBAR["DEBUG_TOOLBAR_PANELS"] if "hopwatch" not in p
]

#: startproject's middleware under ASGI: 13 MiddlewareMixin hooks, request_started, close.
PAGE_HOPS_ASGI = 15
#: What the toolbar itself adds under ASGI: sync_to_async(show_toolbar) and the SQL
#: panel's enable_instrumentation.
TOOLBAR_HOPS_ASGI = 2


def get_store() -> Any:
    # Imported once the toolbar is in INSTALLED_APPS (its store module defines a model).
    from debug_toolbar.store import get_store

    return get_store()


@pytest.fixture
def toolbar(db):
    with override_settings(**TOOLBAR):
        get_store().clear()
        yield
        get_store().clear()


# --- reading the toolbar -----------------------------------------------------------


def stored_stats(toolbar_request_id: str) -> dict[str, Any]:
    """The panel's data as the toolbar's store holds it (what history and render_panel use)."""
    from debug_toolbar.toolbar import DebugToolbar

    stored = DebugToolbar.fetch(toolbar_request_id, PANEL)
    assert stored is not None, "the toolbar's store has no such request"
    return stored.get_panel_by_id(PANEL).get_stats()


def render_panel(client: Any, toolbar_request_id: str) -> str:
    """The panel's HTML through the toolbar's render_panel view, as its JavaScript fetches it."""
    response = client.get(
        "/__debug__/render_panel/", {"request_id": toolbar_request_id, "panel_id": PANEL}
    )
    assert response.status_code == 200
    return json.loads(response.content)["content"]


def sidebar_subtitle(html: str) -> str:
    match = re.search(r'id="djdt-HopsPanel".*?<small>(.*?)</small>', html, re.DOTALL)
    assert match, "the toolbar's sidebar has no subtitle for the hops panel"
    return match.group(1)


class _Tables(HTMLParser):
    """Rows of cell text of every ``<table class=...>``, by class."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("class") or "", [])
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self._table.append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables(html: str) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def line_for(log_lines: Any, request_id: str) -> dict[str, Any]:
    (line,) = [line for line in log_lines.parsed() if line["request_id"] == request_id]
    assert "sites_dropped" not in line
    return line


def causes(rows: list[dict[str, Any]]) -> Counter:
    return Counter((r["kind"], r["site"], r["call_site"], r["direction"]) for r in rows)


def line_causes(line: dict[str, Any]) -> Counter:
    return Counter(
        {
            (s["kind"], s["site"], s.get("call_site"), s["direction"]): s["count"]
            for s in line["sites"]
        }
    )


def assert_matches_line(stats: dict[str, Any], line: dict[str, Any]) -> None:
    """The panel's rows plus the toolbar's own hops are exactly the line's hops, cause by cause."""
    assert stats["complete"] is True
    assert stats["line_hops"] == line["hops"]
    assert len(stats["rows"]) + len(stats["tool_rows"]) == line["hops"]
    assert causes(stats["rows"]) + causes(stats["tool_rows"]) == line_causes(line)
    summary = stats["summary"]
    assert summary["hops"] == len(stats["rows"])
    assert summary["sync_to_async"] == sum(r["direction"] == "sync_to_async" for r in stats["rows"])
    assert summary["async_to_sync"] == sum(r["direction"] == "async_to_sync" for r in stats["rows"])
    assert stats["request_id"] == line["request_id"]
    assert (stats["route"], stats["view"], stats["status"]) == (
        line["route"],
        line["view"],
        line["status"],
    )


def assert_plain(value: Any) -> None:
    """Only JSON's types: the toolbar may serialise panel data (no live Hop or record)."""
    if isinstance(value, dict):
        assert all(isinstance(k, str) for k in value)
        for item in value.values():
            assert_plain(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain(item)
    else:
        assert value is None or isinstance(value, str | int | float | bool), repr(value)


# --- the request's hops, three ways in ----------------------------------------------


def test_test_client_request(toolbar, client, log_lines):
    """Under the sync test Client an async view is one async_to_sync hop on a new loop."""
    response = client.get("/page/", headers={"X-Request-ID": "client-1"})
    assert response.status_code == 200
    toolbar_id = response.headers["djdt-request-id"]
    stats = stored_stats(toolbar_id)
    line = line_for(log_lines, "client-1")
    assert_matches_line(stats, line)
    assert line["hops"] == 1
    (row,) = stats["rows"]
    assert (row["direction"], row["kind"], row["site"]) == (
        "async_to_sync",
        "view",
        "tests.toolbar_site.views.page",
    )
    assert row["new_loop"] is True and row["depth"] == 1 and stats["tool_rows"] == []
    assert stats["summary"]["new_loops"] == line["new_loops"] == 1
    assert stats["summary"]["threads"] == line["threads"]
    # Drawn before the response was closed, but no hop came after: the same figure.
    assert sidebar_subtitle(response.content.decode()).startswith("1 hop so far, ")

    html = render_panel(client, toolbar_id)
    (html_row,) = tables(html)["hopwatch-hops"]
    assert html_row[1:5] == ["async_to_sync", "view", "tests.toolbar_site.views.page", ""]
    assert html_row[8] == "1 (new loop)"


def test_async_client_request(toolbar, log_lines):
    response = asyncio.run(AsyncClient().get("/page/", headers={"X-Request-ID": "async-1"}))
    assert response.status_code == 200
    stats = stored_stats(response.headers["djdt-request-id"])
    line = line_for(log_lines, "async-1")
    assert_matches_line(stats, line)
    assert line["hops"] == PAGE_HOPS_ASGI + TOOLBAR_HOPS_ASGI
    assert len(stats["rows"]) == PAGE_HOPS_ASGI
    assert {r["site"] for r in stats["tool_rows"]} == {
        "debug_toolbar.middleware.show_toolbar",
        "debug_toolbar.panels.sql.panel.SQLPanel.enable_instrumentation",
    }


@pytest.mark.parametrize(
    ("callback", "tool_sites"),
    [
        (
            "tests.toolbar_site.views.show_toolbar",
            ["tests.toolbar_site.views.show_toolbar"],
        ),
        # A crossing made inside the toolbar's crossing is the toolbar's too.
        (
            "tests.toolbar_site.views.show_toolbar_after_a_hop",
            [
                "tests.toolbar_site.views.show_toolbar_after_a_hop",
                "tests.toolbar_site.views._anoop",
            ],
        ),
        # An async one is awaited as it is: its crossings are the toolbar's all the same.
        ("tests.toolbar_site.views.show_toolbar_async", ["QuerySet.aexists"]),
        ("tests.toolbar_site.views.show_toolbar_async_through_a_helper", ["QuerySet.aexists"]),
    ],
)
def test_a_show_toolbar_callback_of_yours_is_the_toolbar_hop(
    toolbar, log_lines, callback, tool_sites
):
    config = {**TOOLBAR["DEBUG_TOOLBAR_CONFIG"], "SHOW_TOOLBAR_CALLBACK": callback}
    from debug_toolbar.middleware import show_toolbar_func_or_path

    from hopwatch.contrib.debug_toolbar import HopsPanel

    HopsPanel.ready()  # as the toolbar's app calls it at start-up (the tests add the panel later)
    show_toolbar_func_or_path.cache_clear()  # the toolbar caches the callback
    try:
        with override_settings(DEBUG_TOOLBAR_CONFIG=config):
            result = asgi_request("/page/", headers=[(b"x-request-id", b"callback-1")])
    finally:
        show_toolbar_func_or_path.cache_clear()
    stats = stored_stats(dict(result.headers)[b"djdt-request-id"].decode())
    assert_matches_line(stats, line_for(log_lines, "callback-1"))
    assert len(stats["rows"]) == PAGE_HOPS_ASGI
    assert [r["site"] for r in stats["tool_rows"]] == [
        *tool_sites,
        "debug_toolbar.panels.sql.panel.SQLPanel.enable_instrumentation",
    ]
    assert [r["depth"] for r in stats["rows"]] == [1] * PAGE_HOPS_ASGI


def test_made_by_toolbar():
    """By site; by call site only before the toolbar handed the request on."""
    from hopwatch._recorder import SYNC_TO_ASYNC, Cause, Hop
    from hopwatch.contrib.debug_toolbar import made_by_toolbar

    def hop(site: str, call_site: str | None, called_ns: int) -> Hop:
        return Hop(SYNC_TO_ASYNC, Cause("other", site, call_site), True, None, None, called_ns)

    toolbar_frame = "debug_toolbar/middleware.py:166 in __acall__"
    assert made_by_toolbar(hop("debug_toolbar.middleware.show_toolbar", None, 5), 1)
    assert made_by_toolbar(hop("myproject.show_toolbar", toolbar_frame, 5), 10)
    assert not made_by_toolbar(hop("django.contrib.auth.aget_user", toolbar_frame, 15), 10)
    assert made_by_toolbar(hop("myproject.show_toolbar", toolbar_frame, 15), None)
    assert not made_by_toolbar(hop("myproject.views.load", "myproject/views.py:3 in v", 5), 10)
    assert not made_by_toolbar(hop("debug_toolbarish.x", "debug_toolbarish/x.py:1 in f", 5), 10)
    assert made_by_toolbar(hop("x.y", "debug_toolbar\\panels\\sql\\panel.py:204 in f", 5), 10)
    # Called after the toolbar's middleware began the request (3) and before it handed
    # it on (10): an async callback's own crossing, whatever its site and call site.
    orm = ("QuerySet.aexists", "myproject/toolbar.py:7 in show")
    assert made_by_toolbar(hop(*orm, 3), 10, 3) and made_by_toolbar(hop(*orm, 9), 10, 3)
    assert not made_by_toolbar(hop(*orm, 2), 10, 3)  # before it: a middleware above it
    assert not made_by_toolbar(hop(*orm, 10), 10, 3)  # after it: the app's
    assert not made_by_toolbar(hop(*orm, 5), None, 3)  # not handed on (yet): not known


def test_asgi_request(toolbar, client, log_lines):
    """Django's real ASGIHandler: the response is closed (one more hop) after the toolbar drew."""
    result = asgi_request("/page/", headers=[(b"x-request-id", b"asgi-1")])
    assert result.status == 200
    toolbar_id = dict(result.headers)[b"djdt-request-id"].decode()
    stats = stored_stats(toolbar_id)
    line = line_for(log_lines, "asgi-1")
    assert_matches_line(stats, line)
    assert line["interface"] == "asgi"
    assert len(stats["rows"]) == PAGE_HOPS_ASGI
    assert len(stats["tool_rows"]) == TOOLBAR_HOPS_ASGI

    # The sidebar was drawn before HttpResponse.close: it said one hop fewer, and said so.
    after = [r for r in stats["rows"] if r["after_render"]]
    assert [(r["kind"], r["site"]) for r in after] == [("response", "HttpResponse.close")]
    subtitle = sidebar_subtitle(result.body.decode())
    assert subtitle.startswith(f"{PAGE_HOPS_ASGI - 1} hops so far, ")

    # The panel, as the toolbar's JavaScript loads it: one row per hop, in call order.
    html = render_panel(client, toolbar_id)
    found = tables(html)
    assert len(found["hopwatch-hops"]) == PAGE_HOPS_ASGI
    assert len(found["hopwatch-tool-hops"]) == TOOLBAR_HOPS_ASGI
    assert [row[0] for row in found["hopwatch-hops"]] == [str(n) for n in range(1, 16)]
    first, last = found["hopwatch-hops"][0], found["hopwatch-hops"][-1]
    assert first[2:4] == ["signal", "request_started"]
    assert last[2:4] == ["response", "HttpResponse.close after the toolbar"]
    (summary_row,) = found["hopwatch-summary"]
    assert summary_row[0] == "15"
    assert summary_row[1] == f"{_hop_table.ms(stats['summary']['overhead_ns'])} ms"
    assert (
        'Its log line, as handed to HOPWATCH["OUTPUT"], counts 17 hops: these 15, and 2'
        " made by django-debug-toolbar" in " ".join(html.split())
    )
    assert stats["line"] == "written"
    # Causes grouped with their advice; their rows add up to the request's hops.
    groups = re.findall(r'<h5 class="hopwatch-group"[^>]*>(.*?)</h5>', html)
    assert [g.split(":")[0] for g in groups if "13 hops" in g] == ["MiddlewareMixin hooks"]
    assert sum(int(row[4]) for row in found["hopwatch-causes"]) == PAGE_HOPS_ASGI


ASYNC_ONLY = "tests.testapp.middleware.AsyncOnlyMiddleware"


def test_an_async_only_middleware_under_the_test_client_gets_the_async_only_advice(
    toolbar, client, log_lines
):
    """The sync test Client's handler runs sync, as WSGI's: the middleware Django adapts
    there is async-only, and the panel says so (it said "A sync-only middleware")."""
    hopwatch, toolbar_middleware, *rest = TOOLBAR["MIDDLEWARE"]
    stack = [hopwatch, ASYNC_ONLY, toolbar_middleware, *rest]
    with override_settings(MIDDLEWARE=stack):
        response = client.get("/sync/", headers={"X-Request-ID": "async-only-1"})
    assert response.status_code == 200
    stats = stored_stats(response.headers["djdt-request-id"])
    line = line_for(log_lines, "async-only-1")
    assert_matches_line(stats, line)
    assert (line["interface"], line["hops"], line["new_loops"]) == ("test-client", 2, 1)
    (group,) = _hop_table.display(stats)["groups"]
    assert (group["key"], group["title"], group["count"]) == (
        "middleware-async-only",
        "An async-only middleware under WSGI",
        2,
    )
    assert group["advice"] == code_spans(MIDDLEWARE_ASYNC_ONLY.summary)
    assert sorted((cause["site"], cause["direction"]) for cause in group["causes"]) == [
        (ASYNC_ONLY, "async_to_sync"),
        (ASYNC_ONLY, "sync_to_async"),
    ]
    html = " ".join(render_panel(client, response.headers["djdt-request-id"]).split())
    assert "An async-only middleware under WSGI: 2 hops" in html
    assert "A sync-only middleware" not in html


async def _on_page_shown(sender, **kwargs):
    return None


def test_an_async_receiver_of_a_signal_sent_with_send_gets_the_advice_to_make_it_sync(
    toolbar, client, log_lines
):
    """``send()`` runs an ``async def`` receiver through ``async_to_sync`` (on a new loop
    under the sync test Client); the panel gave it the advice for sync receivers of a
    signal sent with ``asend()`` ("write receivers as `async def`")."""
    from tests.toolbar_site.views import page_shown

    page_shown.connect(_on_page_shown)
    try:
        response = client.get("/signal/", headers={"X-Request-ID": "signal-1"})
    finally:
        page_shown.disconnect(_on_page_shown)
    assert response.status_code == 200
    stats = stored_stats(response.headers["djdt-request-id"])
    line = line_for(log_lines, "signal-1")
    assert_matches_line(stats, line)
    assert (line["interface"], line["hops"], line["new_loops"]) == ("test-client", 1, 1)
    (group,) = _hop_table.display(stats)["groups"]
    assert (group["key"], group["title"], group["count"]) == (
        "signal-async-receiver",
        "Async receivers of a signal sent with send()",
        1,
    )
    assert group["advice"] == code_spans(SIGNAL_ASYNC_RECEIVER.summary)
    assert [(cause["site"], cause["direction"]) for cause in group["causes"]] == [
        ("tests.toolbar_site.views.page_shown", "async_to_sync")
    ]
    html = " ".join(render_panel(client, response.headers["djdt-request-id"]).split())
    assert "Async receivers of a signal sent with send(): 1 hop" in html
    assert SIGNAL.title not in html


def test_history_keeps_each_request(toolbar, client, log_lines):
    """Past requests stay readable from the toolbar's store: the history panel's use."""
    first = asgi_request("/page/", headers=[(b"x-request-id", b"hist-1")])
    second = asgi_request("/orm/", headers=[(b"x-request-id", b"hist-2")])
    first_id = dict(first.headers)[b"djdt-request-id"].decode()
    second_id = dict(second.headers)[b"djdt-request-id"].decode()
    assert {first_id, second_id} <= set(get_store().request_ids())

    first_stats, second_stats = stored_stats(first_id), stored_stats(second_id)
    assert_matches_line(first_stats, line_for(log_lines, "hist-1"))
    assert_matches_line(second_stats, line_for(log_lines, "hist-2"))
    orm = [r for r in second_stats["rows"] if r["kind"] == "orm"]
    assert [r["site"] for r in orm] == ["QuerySet.acount", "QuerySet.aexists"]
    views_file = os.path.join("tests", "toolbar_site", "views.py")
    assert all(r["call_site"].startswith(views_file + ":") for r in orm)
    assert not any(r["kind"] == "orm" for r in first_stats["rows"])

    # Switching to the first request in the history: its sidebar, from the store, complete.
    response = client.get(
        "/__debug__/history_sidebar/", {"request_id": first_id, "exclude_history": "true"}
    )
    button = json.loads(response.content)[PANEL]["button"]
    assert sidebar_subtitle(button).startswith(f"{PAGE_HOPS_ASGI} hops, ")
    html = render_panel(client, first_id)
    assert len(tables(html)["hopwatch-hops"]) == PAGE_HOPS_ASGI
    # The call site, file:line, in the second request's panel.
    second_html = render_panel(client, second_id)
    call_sites = [row[4] for row in tables(second_html)["hopwatch-hops"] if row[2] == "orm"]
    assert len(call_sites) == 2
    assert all(re.fullmatch(re.escape(views_file) + r":\d+ in orm_page", c) for c in call_sites)


def test_nested_hops_figures(toolbar, log_lines):
    """Depth, pinned time, threads and the overhead/work split on nested crossings."""
    result = asgi_request("/nested/", headers=[(b"x-request-id", b"nested-1")])
    assert result.status == 200
    stats = stored_stats(dict(result.headers)[b"djdt-request-id"].decode())
    line = line_for(log_lines, "nested-1")
    assert_matches_line(stats, line)
    rows, summary = stats["rows"], stats["summary"]
    assert [r["depth"] for r in rows if r["site"].startswith("tests.")] == [1, 2, 3]
    assert summary["max_depth"] == line["max_depth"] == 3
    assert summary["threads"] == line["threads"]
    assert round(summary["pinned_ns"] / 1e6, 3) == line["pinned_ms"] > 0
    assert summary["overhead_ns"] == sum(r["wait_ns"] + r["resume_ns"] for r in rows)
    assert summary["overhead_ns"] == summary["wait_ns"] + summary["resume_ns"]
    # overhead + work = the outermost hops' wall time: nothing counted twice.
    outermost = [r for r in rows if r["depth"] == 1]
    assert summary["overhead_ns"] + summary["work_ns"] == sum(r["wall_ns"] for r in outermost)
    assert summary["work_ns"] < sum(r["run_ns"] for r in rows)


def test_a_request_served_inside_the_request_has_its_rows_marked(toolbar, client, log_lines):
    """A view that serves /page/ with the AsyncClient: hopwatch counts the inner request's
    hops in the outer one (its line and the panel's figures), and the panel marks those
    rows as the inner request's (they looked like the outer request's own)."""
    result = asgi_request("/serves-a-request/", headers=[(b"x-request-id", b"outer-1")])
    assert result.status == 200
    toolbar_id = dict(result.headers)[b"djdt-request-id"].decode()
    stats = stored_stats(toolbar_id)
    outer, inner = line_for(log_lines, "outer-1"), line_for(log_lines, "inner-1")
    assert_matches_line(stats, outer)
    assert inner["hops"] == PAGE_HOPS_ASGI + TOOLBAR_HOPS_ASGI
    assert outer["hops"] == 2 * (PAGE_HOPS_ASGI + TOOLBAR_HOPS_ASGI)
    marked = [r for r in stats["rows"] if r["nested"] is not None]
    marked_tool = [r for r in stats["tool_rows"] if r["nested"] is not None]
    assert {r["nested"] for r in marked + marked_tool} == {"GET /page/"}
    assert (len(marked), len(marked_tool)) == (PAGE_HOPS_ASGI, TOOLBAR_HOPS_ASGI)
    assert causes(marked) + causes(marked_tool) == line_causes(inner)
    own = [r for r in stats["rows"] if r["nested"] is None]
    assert len(own) == PAGE_HOPS_ASGI
    assert [r["site"] for r in own].count("request_started") == 1

    html = render_panel(client, toolbar_id)
    sites = [row[3] for row in tables(html)["hopwatch-hops"]]
    assert sum(s.endswith(" of GET /page/, served inside this request") for s in sites) == 15
    assert len(sites) == 2 * PAGE_HOPS_ASGI
    text = " ".join(html.split())
    assert (
        "Rows marked <em>served inside this request</em> are another request's, served while"
        " this one ran (a test client called from the view): 15 hops of"
        ' <code data-djdt-styles="display:inline">GET /page/</code>.' in text
    )


def test_work_leaves_out_the_nested_overhead_of_an_outer_hop_not_kept(toolbar, log_lines):
    """Past the record's limit the outermost crossing (it finishes last) is not kept:
    its nested crossings' overhead is not taken from the kept outer hops' run time
    (it was: "Work in hops 0.000 ms" once they outweighed it)."""
    result = asgi_request("/nested-dropped/", headers=[(b"x-request-id", b"dropped-1")])
    assert result.status == 200
    stats = stored_stats(dict(result.headers)[b"djdt-request-id"].decode())
    rows, summary = stats["rows"], stats["summary"]
    line = line_for(log_lines, "dropped-1")
    assert line["hops"] == PAGE_HOPS_ASGI + TOOLBAR_HOPS_ASGI + 3
    assert len(rows) + len(stats["tool_rows"]) + stats["dropped"] == line["hops"]
    nested = [r for r in rows if r["site"].startswith("tests.")]
    assert [r["depth"] for r in nested] == [2, 3]  # the outermost (depth 1) not kept
    assert summary["work_ns"] == sum(r["run_ns"] for r in rows if r["depth"] == 1)


def test_a_request_served_inside_the_view_is_in_work_once(toolbar, log_lines):
    """A sync view serves another request inside itself (the test Client, an async view
    that sleeps): the inner request's crossing is nested in the view's, in the panel
    and in the line. Its overhead is left out of the view's work once and its run is
    not added again: the panel's work (with the toolbar's own hops) is the line's, and
    overhead + work is the outermost hops' wall time."""
    result = asgi_request("/serving/", headers=[(b"x-request-id", b"serving-1")])
    assert result.status == 200 and result.body == b"served slept"
    stats = stored_stats(dict(result.headers)[b"djdt-request-id"].decode())
    line = line_for(log_lines, "serving-1")
    assert_matches_line(stats, line)
    rows, tool_rows, summary = stats["rows"], stats["tool_rows"], stats["summary"]
    view_rows = [r for r in rows if r["kind"] == "view"]
    assert [(r["depth"], r["direction"]) for r in view_rows] == [
        (1, "sync_to_async"),  # /serving/'s own view
        (2, "async_to_sync"),  # /sleepy/'s, in the Client's request, inside it
    ]
    outermost = [r for r in rows if r["depth"] == 1]
    assert summary["overhead_ns"] + summary["work_ns"] == sum(r["wall_ns"] for r in outermost)
    # The toolbar's own hops (listed apart) are outermost and nest nothing.
    assert all(r["depth"] == 1 for r in tool_rows)
    work_ns = summary["work_ns"] + sum(r["run_ns"] for r in tool_rows)
    overhead_ns = summary["overhead_ns"] + sum(r["wait_ns"] + r["resume_ns"] for r in tool_rows)
    # (to the microsecond, as the line writes them)
    assert line["work_ms"] == ((work_ns + 500) // 1000) / 1000
    assert line["overhead_ms"] == ((overhead_ns + 500) // 1000) / 1000


# --- what the panel must not do -----------------------------------------------------


def _line_shape(line: dict[str, Any]) -> tuple:
    """What a line says, apart from times and ids."""
    timed = {"timestamp", "request_id", "duration_ms", "hop_ms", "wait_ms", "overhead_ms", "work_ms", "pinned_ms", "sites"}
    sites = sorted(
        (s["kind"], s["site"], s.get("call_site"), s["direction"], s["count"])
        for s in line["sites"]
    )
    return tuple(sorted((k, json.dumps(v)) for k, v in line.items() if k not in timed)), tuple(
        sites
    )


@pytest.mark.parametrize("path", ["/page/", "/orm/", "/nested/"])
def test_the_panel_adds_no_hop_and_leaves_the_line_as_it_was(toolbar, log_lines, path):
    asgi_request(path, headers=[(b"x-request-id", b"with-panel")])
    with override_settings(DEBUG_TOOLBAR_PANELS=TOOLBAR_PANELS_WITHOUT_HOPWATCH):
        asgi_request(path, headers=[(b"x-request-id", b"without-panel")])
    with_panel = line_for(log_lines, "with-panel")
    without_panel = line_for(log_lines, "without-panel")
    assert _line_shape(with_panel) == _line_shape(without_panel)


def test_the_toolbar_own_requests_make_no_panel_and_rendering_makes_no_hop(
    toolbar, client, log_lines
):
    result = asgi_request("/page/")
    toolbar_id = dict(result.headers)[b"djdt-request-id"].decode()
    before = set(get_store().request_ids())
    rendered = asgi_request(
        "/__debug__/render_panel/", query=f"request_id={toolbar_id}&panel_id={PANEL}"
    )
    assert rendered.status == 200 and b"hopwatch-hops" in rendered.body
    response = client.get(
        "/__debug__/render_panel/",
        {"request_id": toolbar_id, "panel_id": PANEL},
        headers={"X-Request-ID": "render-1"},
    )
    assert response.status_code == 200
    assert set(get_store().request_ids()) == before  # the toolbar skips its own views
    # Rendering the panel (sync view, sync client) crossed nothing.
    assert line_for(log_lines, "render-1")["hops"] == 0


def test_hops_beyond_the_record_limit_are_counted_and_said(toolbar, client, log_lines):
    result = asgi_request("/many/", headers=[(b"x-request-id", b"many-1")])
    toolbar_id = dict(result.headers)[b"djdt-request-id"].decode()
    stats = stored_stats(toolbar_id)
    line = line_for(log_lines, "many-1")
    assert line["hops"] == PAGE_HOPS_ASGI + TOOLBAR_HOPS_ASGI + 10
    assert len(stats["rows"]) + len(stats["tool_rows"]) == 5
    assert stats["dropped"] == line["hops"] - 5
    # The sidebar's count is every hop so far, not the 5 listed (it read "5 hops so far").
    subtitle = sidebar_subtitle(result.body.decode())
    shown = len(stats["rows"])
    drawn = line["hops"] - TOOLBAR_HOPS_ASGI - 1  # drawn before the response's close
    assert subtitle.startswith(f"{drawn} hops so far, {shown} listed: "), subtitle
    html = " ".join(render_panel(client, toolbar_id).split())
    assert f"{line['hops'] - 5} hops of this request were counted but not kept one by one" in html


def test_stored_data_is_plain(toolbar):
    result = asgi_request("/nested/")
    toolbar_id = dict(result.headers)[b"djdt-request-id"].decode()
    stats = stored_stats(toolbar_id)
    assert_plain(stats)
    assert stats["schema"] == _hop_table.SCHEMA and stats["rows"]


# --- escaping -----------------------------------------------------------------------

HOSTILE_SITE = "tests.toolbar_site.views.<script>alert('hop')</script>"


@pytest.mark.parametrize("autoescape", [True, False])
def test_everything_rendered_is_escaped(toolbar, client, settings, autoescape):
    """A site and a route that are markup come out as text, even if the project turned
    autoescaping off (the panel renders with its own engine)."""
    templates = [
        {
            **settings.TEMPLATES[0],
            "OPTIONS": {**settings.TEMPLATES[0]["OPTIONS"], "autoescape": autoescape},
        }
    ]
    with override_settings(TEMPLATES=templates):
        result = asgi_request("/hostile/%3Cb%3Ename%3C%2Fb%3E/")
        assert result.status == 200
        toolbar_id = dict(result.headers)[b"djdt-request-id"].decode()
        stats = stored_stats(toolbar_id)
        assert [r["site"] for r in stats["rows"] if r["kind"] == "other"] == [HOSTILE_SITE]
        assert stats["route"] == "/hostile/<str:name>/"
        html = render_panel(client, toolbar_id)
    assert "<script>" not in html and "<str:name>" not in html
    assert "&lt;script&gt;alert(&#x27;hop&#x27;)&lt;/script&gt;" in html
    assert "/hostile/&lt;str:name&gt;/" in html
    # Read as text, the markup is exactly what the record holds.
    texts = [row[3] for row in tables(html)["hopwatch-hops"]]
    assert HOSTILE_SITE in texts


#: A name that would drive a terminal or reorder text: bidi override, ANSI colour, NUL.
INVISIBLE = "x\u202e<b>\x1b[31my\x00"
#: ... as ``hopwatch report`` prints it (hopwatch.report.text.clean), before HTML escaping.
INVISIBLE_SHOWN = "x\\u202e<b>\\x1b[31my\\x00"


def test_names_are_cleaned_as_the_report_cleans_them(toolbar, client, monkeypatch):
    """A sync_to_async callable whose name holds bidi or control characters: the panel
    prints them as the visible escapes ``hopwatch report`` prints (the view's name, the
    route, the request's other names: the next test)."""
    from tests.toolbar_site import views

    monkeypatch.setattr(views._hostile, "__qualname__", f"hop{INVISIBLE}")
    result = asgi_request("/hostile/a/")
    assert result.status == 200
    toolbar_id = dict(result.headers)[b"djdt-request-id"].decode()
    stats = stored_stats(toolbar_id)
    site = f"tests.toolbar_site.views.hop{INVISIBLE}"
    assert [r["site"] for r in stats["rows"] if r["kind"] == "other"] == [site]  # stored raw
    html = render_panel(client, toolbar_id)
    assert not any(char in html for char in "\u202e\x1b\x00")
    shown = f"tests.toolbar_site.views.hop{INVISIBLE_SHOWN}"
    assert [row[3] for row in tables(html)["hopwatch-hops"] if row[2] == "other"] == [shown]
    assert shown in [row[1] for row in tables(html)["hopwatch-causes"]]


def test_every_name_the_panel_prints_is_cleaned():
    """The request's names and each hop's, from captured data (as the store keeps it)."""
    row = {
        "direction": f"sync_to_async{INVISIBLE}",
        "kind": f"other{INVISIBLE}",
        "site": f"app.f{INVISIBLE}",
        "call_site": f"app.py:1 in f{INVISIBLE}",
        "wait_ns": 1000,
        "run_ns": 2000,
        "resume_ns": 3000,
        "wall_ns": 6000,
        "thread": "1",
        "depth": 1,
        "new_loop": False,
        "outcome": f"error{INVISIBLE}",
        "after_render": False,
        "nested": None,
    }
    stats = {
        "schema": _hop_table.SCHEMA,
        "recorded": True,
        "complete": True,
        "request_id": f"r{INVISIBLE}",
        "method": f"GET{INVISIBLE}",
        "route": f"/a{INVISIBLE}/",
        "view": f"app.v{INVISIBLE}",
        "status": 200,
        "interface": f"asgi{INVISIBLE}",
        "line_hops": 1,
        "line": "written",
        "dropped": 0,
        "rows": [row],
        "tool_rows": [row],
        "summary": {
            "hops": 1, "sync_to_async": 1, "async_to_sync": 0, "overhead_ns": 4000,
            "wait_ns": 1000, "resume_ns": 3000, "work_ns": 2000, "pinned_ns": 0,
            "threads": 2, "new_loops": 0, "max_depth": 1,
        },
    }  # fmt: skip
    context = _hop_table.display(stats)
    assert context["request"] == {
        "request_id": f"r{INVISIBLE_SHOWN}",
        "method": f"GET{INVISIBLE_SHOWN}",
        "route": f"/a{INVISIBLE_SHOWN}/",
        "view": f"app.v{INVISIBLE_SHOWN}",
        "status": 200,
        "interface": f"asgi{INVISIBLE_SHOWN}",
    }
    names = ("direction", "kind", "site", "call_site", "outcome")
    cleaned = {name: row[name].replace(INVISIBLE, INVISIBLE_SHOWN) for name in names}
    for shown in (context["rows"][0], context["tool_rows"][0]):
        assert {name: shown[name] for name in names} == cleaned
    (group,) = context["groups"]
    (cause,) = group["causes"]
    assert {name: cause[name] for name in names[:4]} == {n: cleaned[n] for n in names[:4]}
    # the stored data is left as it was
    assert stats["rows"][0]["site"] == f"app.f{INVISIBLE}" and stats["view"] == f"app.v{INVISIBLE}"


# --- other set-ups ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ({"SAMPLE_RATE": 0.0}, 'HOPWATCH["SAMPLE_RATE"] left it out.'),
        ({"MIN_HOPS": 100}, 'it made fewer hops than HOPWATCH["MIN_HOPS"].'),
        ({"MIN_HOP_MS": 60_000.0}, 'its hops took less time in all than HOPWATCH["MIN_HOP_MS"].'),
    ],
)
def test_a_request_without_a_log_line_is_said_to_have_none(
    toolbar, client, log_lines, setting, said
):
    """SAMPLE_RATE, MIN_HOPS or MIN_HOP_MS left the line out: the panel says so (it said
    "Its log line counts 17 hops" of a line that was never written)."""
    # hopwatch installed again: its line sink now comes after the panel's (as when
    # "debug_toolbar" is above "hopwatch" in INSTALLED_APPS): the panel must still
    # read what became of the line.
    from hopwatch.contrib.debug_toolbar import HopsPanel

    HopsPanel.ready()
    deactivate()
    activate()
    with override_settings(HOPWATCH={**TOOLBAR["HOPWATCH"], **setting}):
        response = asyncio.run(AsyncClient().get("/page/", headers={"X-Request-ID": "no-line-1"}))
    assert [line["request_id"] for line in log_lines.parsed()] == []
    toolbar_id = response.headers["djdt-request-id"]
    stats = stored_stats(toolbar_id)
    assert (stats["complete"], stats["line"], stats["line_hops"]) == (
        True,
        next(iter(setting)),
        PAGE_HOPS_ASGI + TOOLBAR_HOPS_ASGI,
    )
    html = " ".join(render_panel(client, toolbar_id).split())
    assert "Its log line" not in html
    expected = (
        f"No log line was written for it: {said} hopwatch counted 17 hops: these 15, and 2 made"
        " by django-debug-toolbar itself, listed apart at the end."
    )
    assert expected.replace('"', "&quot;") in html


@pytest.mark.internal_errors
def test_a_log_line_that_failed_is_said_to_have_failed(toolbar, client, tmp_path):
    output = str(tmp_path / "missing-dir" / "hops.log")
    with override_settings(HOPWATCH={**TOOLBAR["HOPWATCH"], "OUTPUT": output}):
        response = client.get("/page/")
    assert _errors.total() == 1
    _errors.reset_for_tests()
    toolbar_id = response.headers["djdt-request-id"]
    assert stored_stats(toolbar_id)["line"] == "failed"
    html = " ".join(render_panel(client, toolbar_id).split())
    assert (
        "Writing its log line failed: the line may be missing from your log."
        " hopwatch counted 1 hop." in html
    )


def test_render_panels_inline_counts_the_hops_so_far_not_the_line(toolbar, log_lines):
    """RENDER_PANELS: drawn before the response's close, the panel's count is the hops so
    far, and says so (it said "Its log line counts 16 hops" of a line that counts 17)."""
    config = {**TOOLBAR["DEBUG_TOOLBAR_CONFIG"], "RENDER_PANELS": True}
    with override_settings(DEBUG_TOOLBAR_CONFIG=config):
        result = asgi_request("/page/", headers=[(b"x-request-id", b"inline-1")])
    html = result.body.decode()
    content = " ".join(html[html.index('id="HopsPanel"') :].split())
    assert "Its log line" not in content
    assert (
        "hopwatch has counted 16 hops so far: these 14, and 2 made by django-debug-toolbar"
        " itself, listed apart at the end. Whether its log line is handed to"
        ' HOPWATCH["OUTPUT"], and the hops it counts, is settled when the request ends.' in content
    )
    assert line_for(log_lines, "inline-1")["hops"] == PAGE_HOPS_ASGI + TOOLBAR_HOPS_ASGI


def test_render_panels_inline_shows_the_hops_so_far(toolbar, log_lines):
    """RENDER_PANELS: the content is drawn during the request, so it says it is partial."""
    config = {**TOOLBAR["DEBUG_TOOLBAR_CONFIG"], "RENDER_PANELS": True}
    with override_settings(DEBUG_TOOLBAR_CONFIG=config):
        result = asgi_request("/page/")
    html = result.body.decode()
    assert "The request was still running when this was drawn" in " ".join(html.split())
    content = html[html.index('id="HopsPanel"') :]
    assert len(tables(content)["hopwatch-hops"]) == PAGE_HOPS_ASGI - 1  # all but the close


def test_cache_store(toolbar, client, log_lines):
    """The toolbar's CacheStore (JSON in Django's cache) works like its memory store."""
    # (its store module imports the toolbar's models: only once the apps are ready)
    if not hasattr(importlib.import_module("debug_toolbar.store"), "CacheStore"):
        pytest.skip("this django-debug-toolbar has no CacheStore (added in 6.3.0)")
    config = {
        **TOOLBAR["DEBUG_TOOLBAR_CONFIG"],
        "TOOLBAR_STORE_CLASS": "debug_toolbar.store.CacheStore",
    }
    with override_settings(DEBUG_TOOLBAR_CONFIG=config):
        result = asgi_request("/page/", headers=[(b"x-request-id", b"cache-1")])
        toolbar_id = dict(result.headers)[b"djdt-request-id"].decode()
        stats = stored_stats(toolbar_id)
        html = render_panel(client, toolbar_id)
    assert_matches_line(stats, line_for(log_lines, "cache-1"))
    assert len(tables(html)["hopwatch-hops"]) == PAGE_HOPS_ASGI


DATABASE_STORE_SCRIPT = """
import json, os, sys
import django
django.setup()
from django.core.management import call_command
from django.test import Client
call_command("migrate", run_syncdb=True, verbosity=0)
client = Client()
response = client.get("/orm/", headers={"X-Request-ID": "db-1"})
from debug_toolbar.toolbar import DebugToolbar
stored = DebugToolbar.fetch(response.headers["djdt-request-id"], "HopsPanel")
stats = stored.get_panel_by_id("HopsPanel").get_stats()
print(json.dumps({"status": response.status_code, "stats": stats}))
"""


def test_database_store_under_wsgi(tmp_path):
    """The toolbar's DatabaseStore (WSGI only: the toolbar's own panels need a sync
    context to write to it) gets the complete request when hopwatch closes it."""
    (tmp_path / "db_store_settings.py").write_text(
        "from tests.toolbar_site.settings import *  # noqa\n"
        'DEBUG_TOOLBAR_CONFIG = {"IS_RUNNING_TESTS": False,'
        ' "TOOLBAR_STORE_CLASS": "debug_toolbar.store.DatabaseStore"}\n'
        f'DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {str(tmp_path / "db.sqlite3")!r}}}}}\n'
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "db_store_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }
    result = subprocess.run(
        [sys.executable, "-c", DATABASE_STORE_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    stats = out["stats"]
    assert out["status"] == 200 and stats["complete"] is True
    # The sync test Client: the async view is one async_to_sync hop, its two ORM calls
    # two sync_to_async hops inside it.
    assert [(r["kind"], r["depth"]) for r in stats["rows"]] == [("view", 1), ("orm", 2), ("orm", 2)]
    assert stats["line_hops"] == 3


def test_a_request_pushed_out_of_the_store_while_it_ran_stays_out(toolbar, client, log_lines):
    """A streaming response still being read while three later requests fill the store
    (RESULTS_CACHE_SIZE 3): when it ends, the panel does not put it back (it did: an
    empty row in the History, and the oldest request still there pushed out)."""
    config = {**TOOLBAR["DEBUG_TOOLBAR_CONFIG"], "RESULTS_CACHE_SIZE": 3}
    with override_settings(DEBUG_TOOLBAR_CONFIG=config):
        streaming = client.get("/stream/", headers={"X-Request-ID": "evicted-1"})
        stream_id = streaming.headers["djdt-request-id"]
        assert list(get_store().request_ids()) == [stream_id]
        others = [client.get("/sync/").headers["djdt-request-id"] for _ in range(3)]
        assert list(get_store().request_ids()) == others
        assert b"".join(streaming.streaming_content) == b"ab"
        streaming.close()  # hopwatch closes the request: the panel's sink runs
        assert list(get_store().request_ids()) == others
        assert dict(get_store().panels(stream_id)) == {}
        assert stored_stats(others[0])["complete"] is True
    assert line_for(log_lines, "evicted-1")["hops"] == 0


DATABASE_STORE_EVICTION_SCRIPT = """
import json
import uuid
import django
django.setup()
from django.core.management import call_command
from django.test import Client
call_command("migrate", run_syncdb=True, verbosity=0)
from debug_toolbar.store import get_store
def ids(values):  # the header's hex, the store's UUIDs: one spelling
    return sorted(uuid.UUID(str(value)).hex for value in values)
client = Client()
streaming = client.get("/stream/")
stream_id = streaming.headers["djdt-request-id"]
others = [client.get("/sync/").headers["djdt-request-id"] for _ in range(3)]
before = ids(get_store().request_ids())
b"".join(streaming.streaming_content)
streaming.close()
print(json.dumps({
    "others": ids(others),
    "before": before,
    "after": ids(get_store().request_ids()),
    "stream_exists": get_store().exists(stream_id),
}))
"""


def test_a_request_pushed_out_of_the_database_store_while_it_ran_stays_out(tmp_path):
    """As above, with the toolbar's DatabaseStore (under WSGI, where it works)."""
    (tmp_path / "db_evict_settings.py").write_text(
        "from tests.toolbar_site.settings import *  # noqa\n"
        'DEBUG_TOOLBAR_CONFIG = {"IS_RUNNING_TESTS": False, "RESULTS_CACHE_SIZE": 3,'
        ' "TOOLBAR_STORE_CLASS": "debug_toolbar.store.DatabaseStore"}\n'
        f'DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {str(tmp_path / "db.sqlite3")!r}}}}}\n'
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "db_evict_settings",
        # (the caller's path after: the hopwatch under test, where it put one first)
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", DATABASE_STORE_EVICTION_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["before"] == out["after"] == out["others"]
    assert out["stream_exists"] is False


def test_a_failing_store_never_fails_the_request(toolbar, log_lines):
    """Saving the complete request is hopwatch's work: an error there is counted, not raised."""
    before = _errors.total()
    config = {
        **TOOLBAR["DEBUG_TOOLBAR_CONFIG"],
        "TOOLBAR_STORE_CLASS": "tests.toolbar_site.stores.RefusingStore",
    }
    with override_settings(DEBUG_TOOLBAR_CONFIG=config):
        result = asgi_request("/page/", headers=[(b"x-request-id", b"refused-1")])
    assert result.status == 200
    assert _errors.total() == before + 1
    _errors.reset_for_tests()
    assert line_for(log_lines, "refused-1")["hops"] == PAGE_HOPS_ASGI + TOOLBAR_HOPS_ASGI


def test_without_hopwatch_the_panel_says_why(toolbar, client):
    middleware = [m for m in TOOLBAR["MIDDLEWARE"] if not m.startswith("hopwatch.")]
    deactivate()
    try:
        with override_settings(MIDDLEWARE=middleware):
            response = client.get("/page/")
            toolbar_id = response.headers["djdt-request-id"]
            stats = stored_stats(toolbar_id)
            html = render_panel(client, toolbar_id)
    finally:
        activate()
    assert stats == _hop_table.not_recorded(stats["reason"])
    assert "it is not installed" in stats["reason"]
    assert sidebar_subtitle(response.content.decode()) == "not recorded"
    assert "hopwatch recorded nothing: it is not installed." in html


def test_off_at_start_up_the_panel_says_so_whatever_the_settings_say_now(
    toolbar, client, monkeypatch
):
    # ENABLED is read once, at start-up: a process that started with it off records
    # nothing even when a test's settings say True, and the panel says why.
    from hopwatch import apps as hopwatch_apps

    middleware = [m for m in TOOLBAR["MIDDLEWARE"] if not m.startswith("hopwatch.")]
    deactivate()
    monkeypatch.setattr(hopwatch_apps, "enabled", False)  # as after a start-up with it off
    try:
        with override_settings(MIDDLEWARE=middleware, HOPWATCH={"ENABLED": True}):
            response = client.get("/page/")
            toolbar_id = response.headers["djdt-request-id"]
            html = render_panel(client, toolbar_id)
    finally:
        monkeypatch.setattr(hopwatch_apps, "enabled", True)
        activate()
    said = 'hopwatch recorded nothing: HOPWATCH["ENABLED"] was False at start-up.'
    assert said.replace('"', "&quot;") in html


def test_check_without_the_app(toolbar):
    from hopwatch.contrib.debug_toolbar import HopsPanel

    assert HopsPanel.run_checks() == []
    apps = [a for a in TOOLBAR["INSTALLED_APPS"] if a != "hopwatch"]
    with override_settings(INSTALLED_APPS=apps):
        (warning,) = HopsPanel.run_checks()
        middleware = [m for m in TOOLBAR["MIDDLEWARE"] if not m.startswith("hopwatch.")]
        with override_settings(MIDDLEWARE=middleware):
            (without_middleware,) = HopsPanel.run_checks()
    assert warning.id == without_middleware.id == "hopwatch.W020"
    # The middleware installs hopwatch itself: the panel has hops, the checks are missing.
    assert warning.msg.endswith("the panel shows hops, but hopwatch's system checks are not run.")
    assert without_middleware.msg.endswith("the panel will have no hops to show.")


# --- an optional extra ------------------------------------------------------------------

NOT_CONFIGURED_SCRIPT = """
import sys
import django
django.setup()
from django.test import AsyncClient, Client
import asyncio
assert Client().get("/async/").status_code == 200
assert asyncio.run(AsyncClient().get("/async/")).status_code == 200
loaded = sorted(m for m in sys.modules if m.startswith(("debug_toolbar", "hopwatch.contrib")))
print(loaded)
"""


def test_never_imported_when_not_configured():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", NOT_CONFIGURED_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"


def test_configured_without_the_toolbar_says_how_to_install_it():
    script = (
        "import sys; sys.modules['debug_toolbar'] = None\nimport hopwatch.contrib.debug_toolbar\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "pip install 'hopwatch[debug-toolbar]'" in result.stderr.splitlines()[-1]
