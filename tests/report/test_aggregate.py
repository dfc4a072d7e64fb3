"""Bounded accumulation, merging partial results, sampled logs, optional fields."""

from __future__ import annotations

import itertools
import json
import pickle
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hopwatch.report import aggregate, rank, render
from hopwatch.report.aggregate import Partial
from hopwatch.report.scan import Filters, Scanner, StatusFilter
from tests.report.samples import SESSION, canonical_lines, line, plain_line, site

ROOT = Path(__file__).resolve().parents[2]


def scan(texts: list[str], filters: Filters | None = None) -> Partial:
    scanner = Scanner(Partial(), filters)
    scanner.feed_lines([text.encode() for text in texts])
    return scanner.finish()


def document(partial: Partial, **options: Any) -> dict[str, Any]:
    return rank.build_document(partial, rank.ReportOptions(top=0, **options), ["x"])


def merged_thirds(texts: list[str]) -> Iterator[tuple[list[int], Partial]]:
    """Every third line read apart, as the parallel reader's pieces are, and the three
    partials merged in three orders: (the order, the merged partial)."""
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        merged = Partial()
        parts = [scan(texts[i::3]) for i in range(3)]
        for index in order:
            merged.merge(parts[index])
        yield order, merged


def close(a: Any, b: Any) -> bool:
    """Equal, with float sums allowed to differ in their last bits (addition order): after
    rounding to 0.001, that can be one unit of the last decimal."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-3 + 1e-9)
    return bool(a == b)


def test_merged_partials_equal_one_pass() -> None:
    texts = canonical_lines(300)
    whole = scan(texts)
    merged = Partial()
    for start in range(0, 300, 70):
        merged.merge(pickle.loads(pickle.dumps(scan(texts[start : start + 70]))))
    assert close(document(merged), document(whole))
    assert close(document(merged, by="site"), document(whole, by="site"))


def test_endpoints_beyond_the_cap_share_one_overflow_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aggregate, "ENDPOINT_CAP", 5)
    partial = scan([line(route=f"/r{i}/") for i in range(20)])
    assert len(partial.endpoints) == 6
    rows = document(partial)["rows"]
    overflow = [row for row in rows if row["kind"] == "overflow"]
    assert overflow and overflow[0]["records"] == 15 and overflow[0]["label"] == "(other endpoints)"


def test_partials_past_the_endpoint_cap_merge_alike_in_any_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aggregate, "ENDPOINT_CAP", 5)
    texts = [line(route=f"/r{i:02d}/") for i in range(12)]
    parts = [texts[8:], texts[4:8], texts[:4], texts[2:6]]
    documents = []
    for order in itertools.permutations(range(len(parts))):
        merged = Partial()
        for index in order:
            merged.merge(scan(parts[index]))
        documents.append(document(merged))
    assert all(doc == documents[0] for doc in documents)
    kept = [row["label"] for row in documents[0]["rows"] if row["kind"] == "endpoint"]
    assert sorted(kept) == [f"GET /r{i:02d}/" for i in range(5)]


def test_partials_with_exactly_the_endpoint_cap_between_them_merge_without_overflow() -> None:
    """Two readers' partials with ENDPOINT_CAP endpoints between them (`--jobs 2` over two
    big logs): every endpoint keeps its row and there is no overflow row (an empty one,
    made when the cap was reached rather than passed, broke the report: ZeroDivisionError)."""
    cap = aggregate.ENDPOINT_CAP
    texts = [line(route=f"/e{i:04d}/", request_id=f"r{i}") for i in range(cap)]
    halves = [scan(texts[: cap // 2]), scan(texts[cap // 2 :])]
    merged = Partial()
    for half in halves:
        merged.merge(half)
    assert len(merged.endpoints) == cap and aggregate.OVERFLOW_KEY not in merged.endpoints
    rows = document(merged)["rows"]
    assert len(rows) == cap and {row["kind"] for row in rows} == {"endpoint"}
    assert sorted(row["label"] for row in rows) == [f"GET /e{i:04d}/" for i in range(cap)]
    assert {row["requests"] for row in rows} == {1}


def test_causes_beyond_the_cap_are_summed_into_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """An endpoint keeps up to twice SITE_CAP causes; the next new one makes it keep the
    SITE_CAP largest so far and sum the rest into "other"."""
    monkeypatch.setattr(aggregate, "SITE_CAP", 4)
    texts = [line(sites=[site(f"cause{i}", ms=float(i + 1))]) for i in range(10)]
    row = document(scan(texts))["rows"][0]
    # cause8, the ninth, found eight: cause7 to cause4 kept, cause3 to cause0 summed
    kept = ["cause9", "cause8", "cause7", "cause6", "cause5", "cause4"]
    assert [c["site"] for c in row["causes"]] == kept
    assert row["other_causes"] == {
        "count": 4, "ms": 10.0, "share": round(10 / (10 * 4.187), 4), "overhead_ms": None
    }


@pytest.mark.parametrize("by", ["route", "site"])
def test_causes_are_exact_however_the_input_is_split_below_twice_the_cap(by: str) -> None:
    """An endpoint with 100 distinct causes (SITE_CAP is 64: fewer than twice it) has
    every one exact whether one process reads its lines or three, and in whatever order
    their partials merge: neither folding nor merging sums a cause into "other". (Each
    reader once kept only its own 64 largest, so a run of `hopwatch report` on two
    cores could give a cause other counts than the run before.)"""
    texts = [
        line(request_id=f"r{n}", hops=1, sites=[site(f"cause{(n * 7) % 100}", ms=1 + n % 13)])
        for n in range(600)
    ]
    options = rank.ReportOptions(by=by, top=0)
    whole = rank.build_document(scan(texts), options, ["x"])
    for order, merged in merged_thirds(texts):
        assert close(rank.build_document(merged, options, ["x"]), whole), order
    causes = whole["rows"] if by == "site" else whole["rows"][0]["causes"]
    if by == "route":
        assert whole["rows"][0]["other_causes"]["count"] == 600 - sum(
            c["count"] for c in causes
        )  # the ones past the ten listed, not lost
    else:
        assert len(causes) == 100 and sum(c["count"] for c in causes) == 600


@pytest.mark.parametrize("escaped", [False, True])
def test_the_slowest_requests_are_the_same_however_the_input_is_split(escaped: bool) -> None:
    """60 requests as slow as each other (a WSGI view's: no hops, hop_ms 0.0), their
    timestamps out of order (logs of several pods, one after the other): the slowest
    list is the earliest three, read whole or in three interleaved thirds merged in any
    order. A reader once kept the first three it read and only a merge went by time,
    so `--jobs 2` listed other requests than `--jobs 1`, and one run than the next.
    ``escaped``: the timestamps' dot written ``\\u002e``, which the C scanner's own
    parser leaves to msgspec (its other path)."""
    rng = random.Random(3)
    texts = []
    for n in range(60):
        at = f"2026-12-01T10:00:{rng.randrange(50):02d}.{rng.randrange(4):06d}Z"
        text = line(request_id=f"r{n:03d}", timestamp=at, hops=0, hop_ms=0.0, sites=[])
        texts.append(text.replace(at, at.replace(".", "\\u002e")) if escaped else text)
    expected = sorted(
        (json.loads(text)["timestamp"], json.loads(text)["request_id"]) for text in texts
    )[:3]
    whole = document(scan(texts))["rows"][0]["slowest"]
    assert [(entry["timestamp"], entry["request_id"]) for entry in whole] == expected
    for order, merged in merged_thirds(texts):
        assert document(merged)["rows"][0]["slowest"] == whole, order
    # a request slower than the floor still enters, whatever its time
    later = line(request_id="late", timestamp="2026-12-01T11:00:00Z", hops=1, hop_ms=0.5)
    assert document(scan([*texts, later]))["rows"][0]["slowest"][0]["request_id"] == "late"


def test_the_profiles_kept_are_the_same_however_the_input_is_split() -> None:
    """More profiled requests of equal hop time than an endpoint keeps (20): the earliest
    are kept, whole or split. A full list took a newcomer only when it was slower, so a
    merge kept whichever partial's list came first."""
    rng = random.Random(5)
    texts = [
        line(
            request_id=f"r{n:03d}",
            timestamp=f"2026-12-01T10:{rng.randrange(60):02d}:00Z",
            hop_ms=2.0,
            profile=f"p{n}.html",
        )
        for n in range(90)
    ]
    expected = sorted((json.loads(t)["timestamp"], json.loads(t)["request_id"]) for t in texts)
    whole = document(scan(texts))["rows"][0]["profiles"]
    assert len(whole) == aggregate.PROFILES_KEPT
    kept = [(p["timestamp"].replace(".000000", ""), p["request_id"]) for p in whole]
    assert kept == expected[: aggregate.PROFILES_KEPT]
    for order, merged in merged_thirds(texts):
        assert document(merged)["rows"][0]["profiles"] == whole, order


def test_raw_spans_are_folded_before_they_grow_large() -> None:
    scanner = Scanner(Partial())
    for block in range(40):
        scanner.feed_lines(
            [
                line(sites=[site(f"s{block}-{i}")], threads=block * 50 + i).encode()
                for i in range(50)
            ]
        )
    stats = next(iter(scanner.partial.endpoints.values()))
    assert len(stats.raw_sites) <= 50 * 16  # folded every 16 blocks
    assert sum(map(len, stats.raw_sites.values())) <= 50 * 16
    assert len(stats.raw_status) <= 1
    assert len(stats.sites) <= 2 * aggregate.SITE_CAP


def test_a_split_read_changes_a_rounded_sum_at_a_boundary_and_nothing_else() -> None:
    """What docs/report.md says a parallel read may change: hop times that sum to exactly
    6.6985 ms add up to one side of the rounding boundary in one pass and to the other
    when read in thirds and merged, so hop_ms.total reads 6.699 or 6.698 (one unit in
    the last digit). Counts, percentiles, maxima and the slowest requests are exact."""
    hops = [1.0464, 1.4825, 1.3428, 0.1281, 1.5165, 1.1822]
    texts = [line(request_id=f"r{i}", hop_ms=ms, duration_ms=10.0) for i, ms in enumerate(hops)]
    (one,) = document(scan(texts))["rows"]
    assert one["hop_ms"]["total"] == 6.699
    for _order, merged in merged_thirds(texts):
        (split,) = document(merged)["rows"]
        assert split["hop_ms"]["total"] == 6.698  # the boundary read from the other side
        for name in ("p50", "p95", "p99", "max"):
            assert split["hop_ms"][name] == one["hop_ms"][name]
        for name in ("requests", "records", "hops", "statuses", "interfaces", "slowest"):
            assert split[name] == one[name]
    documented = " ".join((ROOT / "docs" / "report.md").read_text().split())
    assert "invisible after rounding" not in documented
    assert "`hop_ms.total` 6.699 in one process, 6.698 in three" in documented


def test_view_less_requests_collapse_into_one_row_per_method() -> None:
    texts = [line(route=f"/probe/{i}", view=None, status=404) for i in range(50)]
    rows = document(scan(texts))["rows"]
    assert len(rows) == 1
    assert rows[0]["label"] == "GET (no view)" and rows[0]["route"] is None
    assert rows[0]["kind"] == "no_view" and rows[0]["statuses"] == {"404": 50}


def test_sampled_lines_stand_for_more_requests() -> None:
    texts = [line(sample_rate=0.25, hop_ms=2.0, sites=[site(SESSION, ms=1.0)])] * 4
    row = document(scan(texts))["rows"][0]
    assert row["records"] == 4 and row["requests"] == 16
    assert row["hop_ms"]["total"] == 32.0 and row["hop_ms"]["mean"] == 2.0
    assert row["causes"][0]["requests"] == 16 and row["causes"][0]["ms"] == 16.0


def test_min_requests_counts_a_causes_logged_requests_as_it_does_an_endpoints(
    implementation: str, run_cli: Any, tmp_path: Path
) -> None:
    """--min-requests leaves out rows with fewer logged requests, lines, whatever their
    sample_rate: a cause one line at 0.1 listed is left out at 2 under --by site as its
    endpoint is under --by route (it was shown, its 10 weighted requests counted), in
    one pass and merged from partials (as --jobs merges them); its requests stay weighted."""
    texts = [
        line(route="/a/", sample_rate=0.1, hops=2, sites=[site("m.Sampled", count=2, ms=1.0)]),
        line(route="/b/", hops=1, sites=[site("m.Plain", ms=0.5)]),
        line(route="/b/", hops=1, sites=[site("m.Plain", ms=0.5)]),
    ]
    log = tmp_path / "sampled.log"
    log.write_text("\n".join(texts) + "\n")
    documents = {
        (by, least): json.loads(
            run_cli(log, "--format", "json", "--by", by, "--min-requests", least).out
        )
        for by in ("route", "site")
        for least in ("1", "2")
    }
    for by, key, kept in (("route", "label", "GET /b/"), ("site", "site", "m.Plain")):
        assert documents[by, "2"]["groups"] == {"total": 2, "below_min_requests": 1}
        rows = documents[by, "2"]["rows"]
        assert [(row[key], row["requests"], row["records"]) for row in rows] == [(kept, 2, 2)]
    assert documents["site", "1"]["groups"] == {"total": 2, "below_min_requests": 0}
    assert [
        (row["site"], row["requests"], row["records"], row["count"], row["count_per_request"])
        for row in documents["site", "1"]["rows"]
    ] == [("m.Sampled", 10, 1, 20, 2.0), ("m.Plain", 2, 2, 2, 1.0)]
    for partial in (scan(texts), *(merged for _order, merged in merged_thirds(texts))):
        doc = document(partial, by="site", min_requests=2)
        assert [row["site"] for row in doc["rows"]] == ["m.Plain"]


def test_statuses_and_interfaces_count_requests_as_requests_does() -> None:
    """A line sampled at 0.4 stands for 2.5 requests in every count beside "requests",
    whether one process read it or it merged in from another; --endpoint prints them
    as it prints the requests."""
    texts = [
        line(sample_rate=0.4, status=200, interface="asgi"),
        line(status=200, interface="asgi"),
        line(status=None, interface="wsgi"),
    ]
    for partial in (scan(texts), *(merged for _order, merged in merged_thirds(texts))):
        row = document(partial)["rows"][0]
        assert row["requests"] == 4.5 and row["records"] == 3
        assert row["statuses"] == {"200": 3.5, "none": 1}
        assert row["interfaces"] == {"asgi": 3.5, "wsgi": 1}
    assert sum(row["statuses"].values()) == sum(row["interfaces"].values()) == row["requests"]
    doc = document(scan(texts), endpoint=row["label"])
    assert "  4.5 requests (asgi x3.5, wsgi x1; statuses 200 x3.5, none x1);" in (
        render.render_to_string(doc, "text")
    )
    # whole counts print whole, as requests do: one line at 0.5 is 2 requests
    doc = document(scan([line(sample_rate=0.5)]), endpoint=row["label"])
    assert doc["rows"][0]["statuses"] == {"200": 2} and doc["rows"][0]["interfaces"] == {"asgi": 2}
    assert "  2 requests (asgi x2; statuses 200 x2);" in render.render_to_string(doc, "text")


def test_pinned_profile_and_slowest_are_kept() -> None:
    texts = [
        line(
            request_id=f"r{i}",
            hop_ms=float(i),
            pinned_ms=1.0,
            profile=f"p{i}.html" if i % 2 else None,
        )
        for i in range(1, 50)
    ]
    row = document(scan(texts))["rows"][0]
    assert row["pinned_ms"] == {"mean": 1.0, "total": 49.0, "records": 49, "by": []}
    assert [s["request_id"] for s in row["slowest"]] == ["r49", "r48", "r47"]
    assert len(row["profiles"]) == aggregate.PROFILES_KEPT
    assert row["profiles"][0] == {
        "request_id": "r49",
        "timestamp": "2026-11-24T10:00:00.000000Z",
        "hop_ms": 49.0,
        "profile": "p49.html",
    }


def test_filters_count_what_they_leave_out() -> None:
    texts = [
        line(timestamp="2026-11-24T09:59:59.999999Z"),
        line(timestamp="2026-11-24T10:00:00.000000Z"),
        line(timestamp="2026-11-24T10:30:00.000000Z", status=500),
        line(timestamp="2026-11-24T10:30:00.000000Z", interface="wsgi"),
        line(timestamp="2026-11-24T11:00:00.000000Z"),
    ]
    filters = Filters(
        since="2026-11-24T10:00:00.000000Z",
        until="2026-11-24T11:00:00.000000Z",
        status=StatusFilter(frozenset(), frozenset({"5xx"})),
        interfaces=frozenset({"asgi"}),
    )
    for partial in (scan(texts, filters), _slow(texts, filters)):
        assert partial.records == 5
        assert partial.filtered == {"time": 2, "status": 1, "interface": 1}
        assert document(partial)["summary"]["reported"] == 1


def _slow(texts: list[str], filters: Filters) -> Partial:
    scanner = Scanner(Partial(), filters)
    for text in texts:
        scanner.add_slow_line(text.encode())
    return scanner.finish()


def test_status_filter_classes_codes_and_none() -> None:
    only = StatusFilter(frozenset({"2xx", "404", "none"}), frozenset({"204"}))
    assert only.allows(200) and only.allows(404) and only.allows(None)
    assert not only.allows(204) and not only.allows(500)


def test_grouping_by_view_merges_routes_and_methods() -> None:
    texts = [
        line(method="GET", route="/a/", view="v.a"),
        line(method="POST", route="/a/", view="v.a"),
        line(method="GET", route="/b/", view="v.b"),
    ]
    rows = document(scan(texts), by="view")["rows"]
    assert sorted((row["view"], row["records"]) for row in rows) == [("v.a", 2), ("v.b", 1)]
    assert all(row["method"] is None for row in rows)


def test_by_site_ranks_causes_across_endpoints() -> None:
    texts = [
        line(route=f"/r{i}/", sites=[site(SESSION, ms=1.0), site("other", ms=0.1)])
        for i in range(4)
    ]
    rows = document(scan(texts), by="site")["rows"]
    assert rows[0]["site"] == SESSION and rows[0]["endpoints"] == 4 and rows[0]["requests"] == 4
    assert rows[0]["ms_per_request"] == 1.0 and rows[0]["ms"] == 4.0
    assert len(rows[0]["top_endpoints"]) == rank.ENDPOINTS_PER_SITE


def test_hops_are_priced_at_the_hop_tax_the_lines_carry() -> None:
    # two pods on different hosts, and one line from a pod that did not measure it
    texts = [
        line(hops=15, duration_ms=10.0, hop_tax_us=200.0),
        line(hops=15, duration_ms=10.0, hop_tax_us=200.0),
        line(hops=5, duration_ms=5.0, hop_tax_us=320.0, sample_rate=0.5),
        line(hops=15, duration_ms=10.0),
    ]
    doc = document(scan(texts))
    (row,) = doc["rows"]
    # per record that carries it: (3000 + 3000 + 1600) us / 3; the total weighs the
    # sampled line twice; the share is of those records' request time (25 ms)
    assert row["hop_tax_ms"] == {
        "mean": 2.533,
        "total": 9.2,
        "share": round(7.6 / 25.0, 4),
        "per_hop_us": round(7600 / 35, 1),
        "records": 3,
        "source": "lines",
    }
    assert doc["summary"]["hop_tax"] == {
        "source": "lines",
        "min_us": 200.0,
        "max_us": 320.0,
        "records": 3,
    }
    text = render.render_to_string(doc, "text")
    assert "hops priced at 200 µs to 320 µs (hop_tax_us of 3 records)" in text
    assert "tax/req" in text and " 2.533 " in text


def test_the_hop_tax_option_prices_every_hop() -> None:
    texts = [
        line(hops=15, duration_ms=10.0, hop_tax_us=200.0),
        line(hops=5, duration_ms=5.0, sample_rate=0.5),
    ]
    doc = document(scan(texts), hop_tax_us=250.0)
    (row,) = doc["rows"]
    # every record, at 250 us: (15 + 5) x 250 / 2 records; the total weighs the sampled line
    assert row["hop_tax_ms"] == {
        "mean": 2.5,
        "total": 6.25,
        "share": round(5.0 / 15.0, 4),
        "per_hop_us": 250.0,
        "records": 2,
        "source": "option",
    }
    assert doc["summary"]["hop_tax"]["source"] == "option"
    assert "hops priced at 250 µs (--hop-tax)" in render.render_to_string(doc, "text")


def test_without_a_hop_tax_there_is_no_tax_column() -> None:
    doc = document(scan([line(hops=15)]))
    assert doc["rows"][0]["hop_tax_ms"] is None and doc["summary"]["hop_tax"] is None
    text = render.render_to_string(doc, "text")
    assert "tax/req" not in text and "priced" not in text
    # csv keeps its columns, empty
    header, values = render.render_to_string(doc, "csv").splitlines()
    names = header.split(",")
    start = names.index("hop_tax_ms_mean")
    assert names[start : start + 4] == [
        "hop_tax_ms_mean", "hop_tax_ms_total", "hop_tax_share", "hop_tax_per_hop_us"
    ]
    assert values.split(",")[start : start + 4] == ["", "", "", ""]


def test_hop_tax_survives_merging_and_the_general_decoder() -> None:
    texts = [
        line(request_id=f"r{i}", hops=i % 7, hop_tax_us=100.0 + i % 3, sample_rate=0.5)
        for i in range(90)
    ]
    whole = scan(texts)
    merged = Partial()
    for start in range(0, 90, 25):
        merged.merge(pickle.loads(pickle.dumps(scan(texts[start : start + 25]))))
    slow = Scanner(Partial())
    for text in texts:  # a space after each comma: not the canonical form
        assert slow.add_slow_line(text.replace(',"', ', "').encode())
    assert slow.slow_lines == 0 and whole.records == 90
    slow.partial.lines = whole.lines  # add_slow_line reads lines, it does not count them
    for other in (merged, slow.finish()):
        assert close(document(other), document(whole))
        assert close(document(other, sort="hop-tax"), document(whole, sort="hop-tax"))
    assert document(whole)["rows"][0]["hop_tax_ms"]["records"] == 90


# --- through the CLI, with either scanner ---------------------------------------------------


def cli_rows(run_cli: Any, tmp_path: Path, texts: list[str], *args: str) -> list[dict[str, Any]]:
    """``hopwatch report LOG --format json`` over ``texts``: its rows."""
    log = tmp_path / "app.log"
    log.write_text("\n".join(texts) + "\n", encoding="utf-8")
    result = run_cli(log, "--format", "json", "--top", "0", "--jobs", "1", *args)
    assert result.status == 0 and result.err == ""
    rows: list[dict[str, Any]] = json.loads(result.out)["rows"]
    return rows


ONE_SITE = [site(SESSION, ms=0.4, overhead_ms=0.1)]


def test_by_view_a_row_names_the_route_seen_most_often(
    run_cli: Any, tmp_path: Path, implementation: str
) -> None:
    texts = [
        line(request_id=f"{i:016x}", route="/a/" if i < 3 else "/b/", sites=ONE_SITE)
        for i in range(4)
    ]
    (row,) = cli_rows(run_cli, tmp_path, texts, "--by", "view")
    assert (row["label"], row["route"], row["requests"]) == ("shop.views.item_detail", "/a/", 4)


def test_new_loops_requests_counts_requests_not_loops(
    run_cli: Any, tmp_path: Path, implementation: str
) -> None:
    """One request that started two event loops: 2 loops, 1 request (the counter the
    general accumulation keeps, and the one the fast path keeps, alike)."""
    texts = [
        line(request_id="0000000000000000", new_loops=2, sites=ONE_SITE),
        line(request_id="0000000000000001", sites=ONE_SITE),
        line(request_id="0000000000000002", new_loops=2, sites=ONE_SITE, sample_rate=0.5),
    ]
    (row,) = cli_rows(run_cli, tmp_path, texts[:2])
    assert row["new_loops"] == {"total": 2, "requests": 1}
    (row,) = cli_rows(run_cli, tmp_path, texts)  # a sampled line goes the general way
    assert row["new_loops"] == {"total": 4, "requests": 2}


def test_pinned_by_lists_the_site_that_pinned_most_requests_first(
    run_cli: Any, tmp_path: Path, implementation: str
) -> None:
    texts = [
        line(
            request_id=f"{i:016x}",
            pinned_ms=1.0,
            pinned_by="a.Middleware" if i == 0 else "b.Middleware",
            sites=ONE_SITE,
        )
        for i in range(3)
    ]
    (row,) = cli_rows(run_cli, tmp_path, texts)
    assert row["pinned_ms"]["by"] == [
        {"site": "b.Middleware", "requests": 2},
        {"site": "a.Middleware", "requests": 1},
    ]


def test_the_cost_per_crossing_is_over_the_crossings_of_lines_that_carry_overhead(
    run_cli: Any, tmp_path: Path, implementation: str
) -> None:
    """1.5 ms over the 15 crossings of the one line with overhead_ms: 100 µs, not 50 µs
    over the 30 crossings of both (the other line is from before overhead_ms)."""
    texts = [
        line(request_id="0000000000000000", hops=15, overhead_ms=1.5, work_ms=0.0, sites=ONE_SITE),
        line(request_id="0000000000000001", hops=15, sites=ONE_SITE),
    ]
    (row,) = cli_rows(run_cli, tmp_path, texts)
    assert (row["overhead_ms"]["records"], row["overhead_ms"]["per_hop_us"]) == (1, 100.0)


def test_a_sampled_lines_site_counts_its_crossings_as_requests(
    run_cli: Any, tmp_path: Path, implementation: str
) -> None:
    texts = [line(sample_rate=0.5, hops=1, sites=[site(SESSION, count=1, ms=0.4, overhead_ms=0.1)])]
    (row,) = cli_rows(run_cli, tmp_path, texts)
    (cause,) = row["causes"]
    assert row["requests"] == 2
    assert (cause["requests"], cause["count"], cause["ms"], cause["overhead_ms"]) == (
        2,
        2,
        0.8,
        0.2,
    )


def test_a_hop_tax_on_lines_without_hops_keeps_its_price_through_regrouping(
    run_cli: Any, tmp_path: Path, implementation: str
) -> None:
    """Lines with 0 hops price nothing, but say the price: regrouping merges the endpoint
    into an empty one, whose lowest price is none yet (the smaller of the two is theirs)."""
    texts = [
        line(
            request_id=f"{i:016x}",
            hops=0,
            hop_ms=0.0,
            wait_ms=0.0,
            overhead_ms=0.0,
            work_ms=0.0,
            sync_to_async=0,
            hop_tax_us=50.0,
        )
        for i in range(3)
    ]
    for by in ("route", "view"):
        (row,) = cli_rows(run_cli, tmp_path, texts, "--by", by)
        assert row["hop_tax_ms"] == {
            "mean": 0.0,
            "total": 0.0,
            "share": 0.0,
            "per_hop_us": 50.0,
            "records": 3,
            "source": "lines",
        }


def test_what_a_line_left_out_is_never_negative_when_its_sites_round_above_its_total(
    run_cli: Any, tmp_path: Path, implementation: str
) -> None:
    """A line that left a cause out (sites_dropped) whose listed sites' rounded ms sum
    above its hop_ms: the rest is 0 ms, not -0.1."""
    texts = [
        line(
            hops=3,
            hop_ms=0.5,
            overhead_ms=0.3,
            work_ms=0.0,
            sites=[site(SESSION, count=1, ms=0.6, overhead_ms=0.4)],
            sites_dropped=1,
        )
    ]
    (row,) = cli_rows(run_cli, tmp_path, texts)
    assert row["left_out"] == {
        "requests": 1,
        "count": 2,
        "ms": 0.0,
        "overhead_ms": 0.0,
        "share": 0.6667,
        "overhead_share": 0.0,
    }


def test_an_endpoint_lists_three_pinning_sites_and_ten_causes(
    run_cli: Any, tmp_path: Path, implementation: str
) -> None:
    """docs/report.md: ``pinned_ms.by`` lists up to 3 sites, most requests first, and
    ``causes`` up to 10 (most overhead, then most time); the eleventh is summed into
    ``other_causes``."""
    pinning = [f"app.middleware.Pin{n}" for n in range(4)]
    sites = [site(f"app.middleware.M{n:02}.process_request", ms=1.1 - n / 10) for n in range(11)]
    texts = [
        line(
            request_id=f"{i:016x}",
            hops=11,
            hop_ms=6.05,
            pinned_ms=1.0,
            pinned_by=pinning[0 if i < 4 else 1 if i < 7 else 2 if i < 9 else 3],
            sites=sites,
        )
        for i in range(10)
    ]
    (row,) = cli_rows(run_cli, tmp_path, texts)
    assert row["pinned_ms"]["by"] == [
        {"site": pinning[0], "requests": 4},
        {"site": pinning[1], "requests": 3},
        {"site": pinning[2], "requests": 2},
    ]
    assert [cause["site"] for cause in row["causes"]] == [entry["site"] for entry in sites[:10]]
    assert row["other_causes"] == {"count": 10, "ms": 1.0, "share": 0.0165, "overhead_ms": None}


def test_p95_is_the_95th_percentile_of_hop_time(
    run_cli: Any, tmp_path: Path, implementation: str
) -> None:
    # hop_ms 1..100: the 50th and 95th values, as the sketch (1% accuracy) reads them
    texts = [
        plain_line(request_id=f"q{i}", hop_ms=float(i), duration_ms=200.0)
        for i in range(1, 101)
    ]
    (row,) = cli_rows(run_cli, tmp_path, texts)
    assert (row["hop_ms"]["p50"], row["hop_ms"]["p95"]) == (49.903, 94.642)


def test_a_tie_between_views_names_the_last_in_name_order(
    run_cli: Any, tmp_path: Path, implementation: str
) -> None:
    # one request each: the view seen most often is a tie, broken by the greater name
    texts = [plain_line(request_id=v, view=f"shop.views.{v}") for v in ("v1", "v2")]
    (row,) = cli_rows(run_cli, tmp_path, texts)
    assert (row["label"], row["view"], row["requests"]) == ("GET /items/", "shop.views.v2", 2)
