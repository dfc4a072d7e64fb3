"""What hops cost, as the report shows it: crossing overhead, work inside, nothing summed twice.

Lines built by hand with known overhead, work and nesting give exactly the
expected columns; the "follow the audit's advice" scenario (a sync-only last
middleware: fewer crossings, nested) reads as cheaper, not dearer; lines from
before overhead_ms read n/a and rank by what they carry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hopwatch.report import rank, render
from hopwatch.report.aggregate import Partial
from hopwatch.report.scan import Scanner
from tests.report.samples import SESSION, line, plain_line, site


def scan(texts: list[str]) -> Partial:
    scanner = Scanner(Partial())
    scanner.feed_lines([text.encode() for text in texts])
    return scanner.finish()


def document(texts: list[str], **options: Any) -> dict[str, Any]:
    return rank.build_document(scan(texts), rank.ReportOptions(top=0, **options), ["x"])


def request(route: str, **fields: Any) -> str:
    return line(route=route, view=f"shop.views.{route.strip('/') or 'home'}", **fields)


# Fifteen crossings, none nested: each 0.2 ms of overhead around 0.1 ms of work.
FLAT = {
    "duration_ms": 10.0,
    "hops": 15,
    "hop_ms": 4.5,
    "wait_ms": 1.5,
    "overhead_ms": 3.0,
    "work_ms": 1.5,
    "max_depth": 1,
    "sites": [site(SESSION, count=15, ms=4.5, overhead_ms=3.0)],
}
# The audit's advice taken (async_capable = False on the last middleware): five
# crossings, the first enclosing the view's async_to_sync and two more. hop_ms sums
# every crossing's whole time, nested ones again: 6.0 + 1.0 + 3 x 0.3 = 7.9 ms.
NESTED = {
    "duration_ms": 7.0,
    "hops": 5,
    "hop_ms": 7.9,
    "wait_ms": 0.4,
    "overhead_ms": 1.0,  # 0.2 per crossing, each counted once
    "work_ms": 5.9,  # 6.0 + 0.9 outermost wall, less the nested ones' overhead
    "max_depth": 2,
    "sites": [
        site("myproject.middleware.SyncLast", count=1, ms=6.0, overhead_ms=0.2),
        site("myproject.middleware.SyncLast", count=1, ms=1.0, overhead_ms=0.2,
             direction="async_to_sync"),
        site("request_started", "signal", count=1, ms=0.3, overhead_ms=0.2),
        site("HttpResponse.close", "response", count=1, ms=0.3, overhead_ms=0.2),
        site(SESSION, count=1, ms=0.3, overhead_ms=0.2),
    ],
}  # fmt: skip


def test_known_overhead_and_work_give_the_expected_columns():
    doc = document([request("/flat/", **FLAT)] * 4 + [request("/nested/", **NESTED)] * 2)
    flat, nested = (next(r for r in doc["rows"] if r["route"] == f"/{n}/") for n in ("flat", "nested"))
    overhead = flat["overhead_ms"]
    assert {k: overhead[k] for k in ("total", "mean", "max", "records", "per_hop_us")} == {
        "total": 12.0, "mean": 3.0, "max": 3.0, "records": 4, "per_hop_us": 200.0
    }  # fmt: skip
    for name in ("p50", "p95", "p99"):  # the sketch's bound: within 1%
        assert overhead[name] == pytest.approx(3.0, rel=0.01)
    assert flat["work_ms"] == {"total": 6.0, "mean": 1.5}
    assert flat["overhead_share"] == 0.3 and flat["wait_of_overhead"] == 0.5
    assert nested["overhead_ms"]["total"] == 2.0 and nested["overhead_ms"]["per_hop_us"] == 200.0
    assert nested["work_ms"] == {"total": 11.8, "mean": 5.9}
    # overhead and work never exceed the request: nothing is summed twice
    assert nested["overhead_share"] == round(1.0 / 7.0, 4)
    assert nested["hop_share"] > 1  # the old headline: 7.9 ms of "hops" in a 7 ms request
    # the default sort: overhead in all, not hop time (nested has more hop time per request)
    assert doc["sort"] == "overhead" and [r["route"] for r in doc["rows"]] == ["/flat/", "/nested/"]
    (causes_flat,) = flat["causes"]
    assert causes_flat["overhead_ms"] == 12.0 and causes_flat["overhead_per_request"] == 3.0
    assert causes_flat["overhead_share"] == 1.0


def test_following_the_advice_reads_cheaper_not_dearer():
    """Before: 15 flat crossings. After the audit's advice: 5, nested. hop total used to
    triple and hop % pass 100% (nested crossings summed): the user would revert a good
    change. Overhead, and overhead + work, go down."""
    before = document([request("/page/", **FLAT)] * 10)["rows"][0]
    after = document([request("/page/", **NESTED)] * 10)["rows"][0]
    assert after["hop_ms"]["total"] > before["hop_ms"]["total"]  # what misled
    assert after["overhead_ms"]["total"] < before["overhead_ms"]["total"]
    assert after["overhead_ms"]["mean"] < before["overhead_ms"]["mean"]
    assert after["hops"]["mean"] < before["hops"]["mean"]
    assert after["overhead_share"] < before["overhead_share"] <= 1


def test_the_work_inside_crossings_is_not_what_ranks():
    """A sync view hashing a password inside its crossing: much work, little overhead.
    It used to top the report (hop % 94.7%); the crossings themselves cost little."""
    hashing = dict(FLAT, hops=1, hop_ms=300.0, overhead_ms=0.2, work_ms=299.8, duration_ms=310.0,
                   sites=[site("shop.views.login", "view", 1, 300.0, overhead_ms=0.2)])  # fmt: skip
    doc = document([request("/login/", **hashing)] * 5 + [request("/flat/", **FLAT)] * 5)
    assert [row["route"] for row in doc["rows"]] == ["/flat/", "/login/"]
    by_hop_time = document([request("/login/", **hashing)] * 5 + [request("/flat/", **FLAT)] * 5,
                           sort="total")  # fmt: skip
    assert by_hop_time["rows"][0]["route"] == "/login/"


def test_lines_without_overhead_read_n_a_and_rank_by_hop_time():
    old = {k: v for k, v in FLAT.items() if k not in ("overhead_ms", "work_ms")}
    old["sites"] = [site(SESSION, count=15, ms=4.5)]
    doc = document([request("/old/", **old), request("/older/", **dict(old, hop_ms=9.0))])
    assert doc["sort"] == "total"  # the documented fallback
    assert [row["route"] for row in doc["rows"]] == ["/older/", "/old/"]
    assert all(row["overhead_ms"] is None and row["work_ms"] is None for row in doc["rows"])
    text = render.render_to_string(doc, "text")
    assert "ovh/req" not in text and "hop total" in text
    assert "2 of 2 records carry no overhead_ms" in text


def test_old_and_new_lines_together():
    old = {k: v for k, v in FLAT.items() if k not in ("overhead_ms", "work_ms")}
    old["sites"] = [site(SESSION, count=15, ms=4.5)]
    doc = document([request("/a/", **FLAT), request("/a/", **old)])
    (row,) = doc["rows"]
    assert row["overhead_ms"]["records"] == 1 and row["overhead_ms"]["mean"] == 3.0
    assert doc["summary"]["overhead_records"] == 1
    assert "1 of 2 records carry no overhead_ms" in render.render_to_string(doc, "text")


def test_a_rolling_upgrade_shows_the_hop_columns_in_every_table_format():
    """Old lines (no overhead_ms) and new ones in the same row: some lines carry no
    overhead_ms, so the hop columns (what every line carries) are shown, as the docs
    say; they were shown only when a whole row lacked it."""
    old = {k: v for k, v in FLAT.items() if k not in ("overhead_ms", "work_ms")}
    old["sites"] = [site(SESSION, count=15, ms=4.5)]
    lines = [request("/a/", **FLAT), request("/a/", **old), request("/b/", **FLAT)]

    def header(text: str) -> str:
        return next(line for line in text.splitlines() if "ovh/req" in line)

    for by in ("route", "view", "site"):
        doc = document(lines, by=by)
        assert all(row["overhead_ms"] is not None for row in doc["rows"])  # each row has some
        for format_name, options in (("text", {}), ("markdown", {}), ("rich", {"width": 300})):
            shown = header(render.render_to_string(doc, format_name, **options))
            assert "hop/req" in shown and "hop total" in shown, (by, format_name, shown)
    # every line carrying overhead_ms: nothing for them to say
    new = render.render_to_string(document([request("/a/", **FLAT)] * 2), "text")
    assert "hop/req" not in header(new) and "carry no overhead_ms" not in new
    # the note says what the overhead columns are over, not that they read n/a
    note = render.render_to_string(document(lines), "text")
    assert "1 of 3 records carry no overhead_ms" in note and "reads n/a" not in note
    assert "count only the 2 that carry it" in note


def test_a_rolling_upgrade_shows_the_hop_column_of_one_endpoints_causes():
    """--endpoint in a rolling upgrade: a cause's row has overhead when one of its lines
    carries it, so the rows alone cannot show that others do not; the report's lines
    can. Its causes' hop/req is shown in every table format, and the note under it names
    that column, not hop total (which that table has not)."""
    old = {k: v for k, v in FLAT.items() if k not in ("overhead_ms", "work_ms")}
    old["sites"] = [site(SESSION, count=15, ms=4.5)]
    lines = [request("/a/", **FLAT), request("/a/", **old), request("/b/", **FLAT)]
    doc = document(lines, endpoint="GET /a/")
    assert all(cause["overhead_ms"] is not None for cause in doc["rows"][0]["causes"])
    for format_name, options in (("text", {}), ("markdown", {}), ("rich", {"width": 300})):
        text = render.render_to_string(doc, format_name, **options)
        header = next(line for line in text.splitlines() if "ovh/req" in line)
        assert "hop/req" in header, (format_name, header)
        assert "1 of 3 records carry no overhead" in text
        assert "hop/req is whole crossings" in text and "hop total" not in text, format_name


def test_the_summarys_cost_per_crossing_is_the_rows_with_sampled_lines():
    """overhead over crossings, both from the same lines: a sampled line's weight
    must not count in the overhead and not in the crossings (it read twice the cost)."""
    sampled = dict(FLAT, hops=10, overhead_ms=10.0, sample_rate=0.5)  # 1,000 us a crossing
    doc = document([request("/a/", **sampled)])
    assert doc["rows"][0]["overhead_ms"]["per_hop_us"] == 1000.0
    assert doc["summary"]["overhead_ms"] == 20.0  # the total stays weighted
    assert doc["summary"]["overhead_per_hop_us"] == 1000.0
    # one line at 0.5 and one unsampled, in one endpoint and then in two: 40 ms / 20 hops
    whole = dict(FLAT, hops=10, overhead_ms=30.0)
    one = document([request("/a/", **sampled), request("/a/", **whole)])
    assert one["rows"][0]["overhead_ms"]["per_hop_us"] == 2000.0
    assert one["summary"]["overhead_per_hop_us"] == 2000.0
    two = document([request("/a/", **sampled), request("/b/", **whole)])
    assert two["summary"]["overhead_per_hop_us"] == 2000.0


def test_every_crossing_reaches_the_report_when_the_line_left_causes_out():
    """SITES_LIMIT: a line lists its top causes; the rest are never lost silently."""
    sites = [site(f"app.middleware.M{i}.process_request", count=1, ms=0.3, overhead_ms=0.2)
             for i in range(10)]  # fmt: skip
    full = dict(FLAT, hops=15, overhead_ms=3.0, hop_ms=4.5, sites_dropped=5, sites=sites)
    doc = document([request("/busy/", **full)] * 3)
    (row,) = doc["rows"]
    listed = sum(cause["count"] for cause in row["causes"]) + (row["other_causes"] or {}).get(
        "count", 0
    )
    assert row["left_out"] == {
        "requests": 3, "count": 15, "ms": 4.5, "overhead_ms": 3.0, "share": 1 / 3,
        "overhead_share": round(3.0 / 9.0, 4),
    } | {"share": round(15 / 45, 4)}  # fmt: skip
    assert listed + row["left_out"]["count"] == 45  # every crossing, exactly
    assert doc["summary"]["left_out"]["count"] == 15
    text = render.render_to_string(doc, "text")
    assert "left out of the lines: 15 crossings (33.3% of all)" in text
    site_doc = document([request("/busy/", **full)] * 3, by="site")
    assert "(left out of the lines: SITES_LIMIT)" in render.render_to_string(site_doc, "text")


def test_what_to_change_first_names_fixable_causes_with_their_advice():
    texts = [request("/page/", **NESTED)] * 4
    doc = document(texts)
    fixable = [(cause["site"], cause["direction"]) for cause in doc["fixable"]]
    # Django's response close and request_started are not the project's to remove
    assert ("HttpResponse.close", "sync_to_async") not in fixable
    assert ("request_started", "sync_to_async") not in fixable
    assert ("myproject.middleware.SyncLast", "sync_to_async") in fixable
    first = doc["fixable"][0]
    assert first["overhead_per_request"] == 0.2 and first["advice"]["summary"]
    text = render.render_to_string(doc, "text")
    assert "what to change first (ranked by crossing overhead, over the 4 requests logged):" in text
    # the sync-only middleware's advice: a trade, not a saving (docs/causes.md)
    assert "as low in `MIDDLEWARE` as its semantics allow" in text
    assert "a trade, not a saving" in text


def test_what_to_change_first_says_which_requests_it_is_ranked_over():
    """--endpoint ranks its own causes over its own requests; --top and --min-requests
    hide rows, not the causes of their requests: the heading says which, in numbers."""
    texts = [request("/page/", **NESTED)] * 3 + [request("/flat/", **FLAT)] * 2

    def heading(**options: Any) -> str:
        doc = rank.build_document(scan(texts), rank.ReportOptions(**options), ["x"])
        text = render.render_to_string(doc, "text")
        (line,) = [line for line in text.splitlines() if line.startswith("what to change")]
        return line.removeprefix("what to change first (ranked by crossing overhead, ")

    assert heading() == "over the 5 requests logged):"
    assert heading(endpoint="GET /page/") == "over the 3 requests of GET /page/):"
    assert heading(endpoint="GET /flat/") == "over the 2 requests of GET /flat/):"
    every = "over all 5 requests logged, the 1 endpoint not shown included):"
    assert heading(top=1) == every
    assert heading(min_requests=3) == every
    assert heading(by="view", top=1) == every.replace("endpoint", "view")
    assert heading(by="site", top=1) == "over the 5 requests logged):"  # every cause


def test_one_endpoints_causes_never_read_alike_at_any_width():
    """One view's QuerySet.aget at three lines is three causes, and a sync-only
    middleware crosses both ways: each row's name says which, whether the call site
    and direction columns have room or not, and the call site keeps its line. The list
    of what to change first tells the middleware's two hops apart too."""
    where = "shop/views.py:{} in handler"
    sites = [
        *(site("QuerySet.aget", "orm", count=1, ms=0.3, overhead_ms=0.3 - n / 100,
               call_site=where.format(70 + n)) for n in range(3)),
        site("myproject.middleware.SyncLast", count=1, ms=6.0, overhead_ms=0.2),
        site("myproject.middleware.SyncLast", count=1, ms=1.0, overhead_ms=0.1,
             direction="async_to_sync"),
    ]  # fmt: skip
    texts = [request("/page/", hops=5, overhead_ms=1.2, work_ms=6.0, sites=sites)] * 2
    doc = document(texts, endpoint="GET /page/")

    def table_rows(width: int | None) -> list[str]:
        text = render.render_to_string(doc, "text", width=width)
        rows = text.split("\n\n")[2].splitlines()  # the title, the endpoint, the table
        assert rows[0].split()[:2] == ["#", "cause"] and len(rows) == 6
        assert width is None or max(len(row) for row in text.splitlines()) <= width
        return [row.split("  ")[1].strip() if width else row for row in rows[1:]]

    narrow = table_rows(80)  # no room for the direction or the call site
    assert narrow == [
        "QuerySet.aget (views.py:70)",
        "QuerySet.aget (views.py:71)",
        "QuerySet.aget (views.py:72)",
        "middleware.SyncLast (sync_to_async)",
        "middleware.SyncLast (async_to_sync)",
    ]
    wide = table_rows(None)  # every column: the direction is its own, not in the name
    assert [row.split()[1:3] for row in wide] == [
        ["QuerySet.aget", "(views.py:70)"],
        ["QuerySet.aget", "(views.py:71)"],
        ["QuerySet.aget", "(views.py:72)"],
        ["middleware.SyncLast", "middleware"],
        ["middleware.SyncLast", "middleware"],
    ]
    assert "sync_to_async  shop/views.py:70 in handler" in wide[0]
    assert "async_to_sync  -" in wide[4]
    advice = render.render_to_string(doc, "text", width=80).split("what to change first")[1]
    assert "4. middleware.SyncLast (middleware, sync_to_async): 0.200 ms" in advice
    assert "5. middleware.SyncLast (middleware, async_to_sync): 0.100 ms" in advice
    assert "1. QuerySet.aget (orm at shop/views.py:70 in handler)" in advice  # one way only
    for width in (90, 100, 120):  # the call site cut to fit: its file and line kept
        table = render.render_to_string(doc, "text", width=width).split("\n\n")[2]
        assert "call site" in table and " in handler" not in table
        assert table.splitlines()[1].count("shop/views.py:70") == 1, table


def test_by_site_names_a_cause_seen_both_ways_by_its_direction():
    """--by site has no direction column: a sync-only middleware's hop in and its hop
    back out are two rows, and their names say which is which (they read alike)."""
    doc = document([request("/page/", **NESTED)] * 2, by="site")
    for width in (None, 80):
        text = render.render_to_string(doc, "text", width=width)
        names = [
            row.split("  ")[1].strip()
            for row in text.split("\n\n")[1].splitlines()[1:]
            if "SyncLast" in row
        ]
        assert names == [
            "middleware.SyncLast (sync_to_async)",
            "middleware.SyncLast (async_to_sync)",
        ], text
    markdown = render.render_to_string(doc, "markdown")
    assert "SyncLast (async\\_to\\_sync)" in markdown
    assert "| 5 | request\\_started |" in markdown  # seen one way: no direction


def test_one_endpoint_in_detail():
    texts = [request("/page/", **NESTED)] * 3 + [request("/flat/", **FLAT)]
    doc = document(texts, endpoint="GET /page/")
    assert doc["endpoint"] == "GET /page/" and len(doc["rows"]) == 1
    assert len(doc["rows"][0]["causes"]) == 5
    text = render.render_to_string(doc, "text")
    assert "hopwatch report: GET /page/, cause by cause" in text
    assert "crossing overhead: 1.000 ms per request" in text
    assert "direction" in text and "SyncLast" in text
    # by its route alone when only one method has it
    assert document(texts, endpoint="/flat/")["rows"][0]["route"] == "/flat/"
    with pytest.raises(rank.NoSuchEndpoint, match=r"no endpoint 'GET /pag/' .*closest: GET /page/"):
        document(texts, endpoint="GET /pag/")


STARTPROJECT_HOOKS = [
    f"django.middleware.security.SecurityMiddleware.{hook}"
    for hook in ("process_request", "process_response")
] + [
    f"django.contrib.sessions.middleware.SessionMiddleware.{hook}"
    for hook in ("process_request", "process_response")
] + [
    f"django.middleware.common.CommonMiddleware.{hook}"
    for hook in ("process_request", "process_response")
] + [
    f"django.middleware.csrf.CsrfViewMiddleware.{hook}"
    for hook in ("process_request", "process_view", "process_response")
] + [
    "django.contrib.auth.middleware.AuthenticationMiddleware.process_request",
    "django.contrib.messages.middleware.MessageMiddleware.process_request",
    "django.contrib.messages.middleware.MessageMiddleware.process_response",
    "django.middleware.clickjacking.XFrameOptionsMiddleware.process_response",
]  # fmt: skip


def test_djangos_own_hooks_count_the_most_listed_hooks_requests_with_sampled_lines(
    implementation: str,
) -> None:
    """The hooks' item's requests are the most-listed hook's, weighted: one line at
    sample_rate 0.25 listing CsrfViewMiddleware.process_view (4 requests) outweighs
    three unsampled lines listing SessionMiddleware.process_request (3). A cause counts
    its lines and its sampled lines' excess apart: both come from that one hook (3 lines
    of one and the excess of the other would make 6)."""
    csrf = "django.middleware.csrf.CsrfViewMiddleware.process_view"
    plain = dict(FLAT, hops=1, sites=[site(SESSION, ms=0.3, overhead_ms=0.2)])
    sampled = dict(FLAT, hops=1, sample_rate=0.25, sites=[site(csrf, ms=0.3, overhead_ms=0.2)])
    doc = document([request("/a/", **plain)] * 3 + [request("/a/", **sampled)])
    (hooks,) = [cause for cause in doc["fixable"] if cause["site"] == rank.DJANGO_HOOKS]
    assert (hooks["hooks"], hooks["requests"], hooks["count"]) == (2, 4, 7)
    assert (hooks["overhead_ms"], hooks["overhead_per_request"]) == (1.4, 0.35)


def test_djangos_own_middleware_hooks_are_one_item_and_leave_room_for_the_projects():
    """startproject's stack makes 13 hook crossings, each its own cause, and each more
    overhead than any one of the project's: the list was five of them ("The same change as
    1"), the ten ``aget`` a request made nowhere. They are one change (docs/causes.md),
    ranked by their overhead summed; the project's own causes follow."""
    hooks = [site(name, overhead_ms=0.2, ms=0.3) for name in STARTPROJECT_HOOKS]
    mine = [
        site("QuerySet.aget", "orm", count=10, ms=1.5, overhead_ms=1.0,
             call_site="shop/views.py:24 in one_by_one"),
        site("shop.middleware.Timing.process_request", overhead_ms=0.15, ms=0.2),
    ]  # fmt: skip
    busy = dict(FLAT, hops=25, overhead_ms=3.6, hop_ms=5.6, sites=hooks + mine)
    doc = document([request("/one-by-one/", **busy)] * 4 + [request("/hello/", **FLAT)])
    first, *rest = doc["fixable"]
    assert first["site"] == "Django's own middleware hooks" and first["hooks"] == 13
    assert sorted(first["sites"]) == sorted(STARTPROJECT_HOOKS)
    assert first["advice"]["key"] == "middleware-hook"
    # /hello/'s line adds SessionMiddleware's 15 crossings (3 ms); requests: the
    # most-listed hook's (SessionMiddleware.process_request: all 5), the per-request figure
    # over them
    assert (first["count"], first["overhead_ms"], first["requests"]) == (67, 13.4, 5)
    assert first["overhead_per_request"] == 2.68
    assert [(cause["site"], cause["advice"]["key"]) for cause in rest] == [
        ("QuerySet.aget", "orm"),
        ("shop.middleware.Timing.process_request", "middleware-own-hook"),
    ]
    # SESSION in FLAT's lines, from "django.": summed in, not a second item
    assert SESSION in first["sites"] and first["endpoints"] == 2
    text = render.render_to_string(doc, "text")
    assert (
        "1. Django's own middleware hooks (middleware, 13 hooks: SessionMiddleware.process_request,"
        in " ".join(text.split())
    )
    assert "The same change as 1." not in text


def test_one_new_event_loop_is_singular():
    """``--endpoint`` said "1 new event loops"."""
    for loops, words in ((1, "1 new event loop ("), (2, "2 new event loops (")):
        doc = document([request("/a/", new_loops=loops)], endpoint="GET /a/")
        assert words in render.render_to_string(doc, "text")


def test_work_inside_sampled_lines_is_weighted_like_their_hops(
    implementation: str, run_cli: Any, tmp_path: Path
) -> None:
    # 3 lines sampled at 1/2 stand for 6 requests: each carries 1.5 ms of work, so
    # 6 x 1.5 = 9.0 ms of work in all (weighted by the sample rate as overhead is).
    log = tmp_path / "sampled.log"
    lines = [
        plain_line(request_id=f"r{i}", sample_rate=0.5, overhead_ms=0.5, work_ms=1.5)
        for i in range(3)
    ]
    log.write_text("\n".join(lines) + "\n")
    row = json.loads(run_cli(log, "--format", "json").out)["rows"][0]
    assert row["requests"] == 6
    assert row["overhead_ms"]["total"] == 3.0
    assert row["work_ms"]["total"] == 9.0
