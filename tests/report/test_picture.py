"""What the page reads beyond the report: exact sums, the histogram, the kept timelines,
causes by overhead; the same however the input is split across processes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hopwatch.report import inputs, parallel
from hopwatch.report.aggregate import ENDPOINT_CAP, OVERFLOW_KEY, Partial
from hopwatch.report.picture import (
    CAUSE_CAP,
    CROSSINGS_KEPT,
    HOP_BIN_EDGES,
    K_COUNT,
    K_MEASURED,
    K_MS,
    K_OVERHEAD,
    K_REQUESTS,
    Picture,
    bin_label,
    decode_extras,
    hop_bin,
)
from hopwatch.report.scan import Filters, Scanner
from tests.report.detail_samples import crossing, detailed_line, gathered_detail, nested_wsgi_detail
from tests.report.samples import line, site

ITEM = ("GET", "/items/<int:pk>/", "shop.views.item_detail")
ITEM_KEY = (0, *ITEM)


def scan(lines: list[str], picture: Picture | None = None) -> Picture:
    scanner = Scanner(Partial(picture or Picture()))
    scanner.feed_lines([text.encode() for text in lines])
    partial = scanner.finish()
    result: Picture = partial.extra
    result.reconcile(set(partial.endpoints))
    return result


# --- decoding ----------------------------------------------------------------------------
def test_detail_is_read_from_plain_prefixed_and_enveloped_lines():
    text = detailed_line(gathered_detail())
    expected = decode_extras(text.encode())
    assert len(expected.detail or []) == 5 and expected.detail[1].wait_ms == 1.05
    assert expected.detail[3].thread_sensitive is False and expected.detail[3].at_ms == 4.5
    enveloped = json.dumps({"log": "stdout F " + text + "\n", "stream": "stdout"})
    assert decode_extras(enveloped.encode()) == expected
    assert decode_extras(memoryview(text.encode())) == expected
    # a raw control character inside a string: msgspec refuses it, the lenient path reads it
    raw = text.replace('"app.fetch"', '"app.\x01fetch"')
    lenient = decode_extras(raw.encode())
    assert len(lenient.detail or []) == 5 and lenient.detail[3].site == "app.\x01fetch"


def test_a_malformed_detail_is_left_out_alone():
    obj = json.loads(detailed_line(gathered_detail(), request_id="bad"))
    obj["detail"][2]["wait_ms"] = "soon"  # one bad entry: the detail cannot be drawn
    assert decode_extras(json.dumps(obj).encode()).detail is None
    picture = scan([json.dumps(obj)])
    stats = picture.endpoints[ITEM_KEY]
    assert (stats.records, stats.split, stats.timeline) == (1, 1, None)
    assert stats.overhead == 3.7 and stats.work == 7.0  # read with the record


def test_the_detail_of_an_enveloped_line_is_found():
    text = detailed_line(gathered_detail(), request_id="wrapped")
    enveloped = json.dumps({"log": text + "\n", "stream": "stdout"})
    stats = scan([enveloped]).endpoints[ITEM_KEY]
    assert stats.timeline is not None and stats.timeline.request_id == "wrapped"
    assert len(stats.timeline.decode()) == 5


def test_older_lines_have_none_of_the_extras():
    extras = decode_extras(line().encode())
    assert (extras.detail, extras.detail_dropped) == (None, 0)


# --- accumulating ---------------------------------------------------------------------------
def test_sums_histogram_and_slowest_drawable_request_per_endpoint():
    fast = detailed_line(gathered_detail(), request_id="fast", hop_ms=3.0)
    slow = detailed_line(nested_wsgi_detail(), request_id="slow", hop_ms=9.0, interface="wsgi")
    # slower still, but from before at_ms: its detail cannot be placed in time
    old_detail = [dict(c) for c in gathered_detail()]
    for entry in old_detail:
        del entry["at_ms"], entry["parent"], entry["caller_thread"]
    older = detailed_line(old_detail, request_id="older", hop_ms=20.0)
    plain = line(request_id="plain", hops=40, hop_ms=50.0)  # no overhead, no detail
    picture = scan([fast, slow, older, plain])
    stats = picture.endpoints[ITEM_KEY]
    assert (stats.records, stats.split) == (4, 3)
    assert math.isclose(stats.overhead, 3.7 + 1.13 + 3.7)
    assert math.isclose(stats.work, 7.0 + 1.17 + 7.0)
    assert stats.hop_bins[hop_bin(5)] == 2 and stats.hop_bins[hop_bin(4)] == 1
    assert stats.hop_bins[hop_bin(40)] == 1 and sum(stats.hop_bins) == 4
    assert stats.timeline is not None and stats.timeline.request_id == "slow"
    assert [c.site for c in stats.timeline.decode()] == [c["site"] for c in nested_wsgi_detail()]
    assert (picture.detail_lines, picture.undrawable_lines) == (3, 1)


def test_causes_are_weighted_like_the_report_and_ranked_by_overhead():
    lines = [
        line(sites=[{**site("a.hook", ms=1.0), "overhead_ms": 0.2}]),
        line(sample_rate=0.5, sites=[{**site("a.hook", count=2, ms=1.0), "overhead_ms": 0.4}]),
        line(sites=[{**site("b.slow_work", ms=9.0), "overhead_ms": 0.1}]),
        line(sites=[site("b.slow_work", ms=9.0)]),  # from before sites[].overhead_ms
    ]
    picture = scan(lines)
    a = picture.causes[("a.hook", "middleware", "sync_to_async", None)]
    b = picture.causes[("b.slow_work", "middleware", "sync_to_async", None)]
    assert a[K_REQUESTS] == 3 and a[K_COUNT] == 5 and a[K_MS] == 3.0
    assert a[K_OVERHEAD] == pytest.approx(1.0) and a[K_MEASURED] == 3
    assert b[K_REQUESTS] == 2 and b[K_OVERHEAD] == pytest.approx(0.1) and b[K_MEASURED] == 1
    first = sorted(picture.causes.items(), key=lambda item: -item[1][K_OVERHEAD])[0][0][0]
    assert first == "a.hook"  # b's crossings take longer, but cost less to cross


def test_causes_past_the_cap_keep_the_costliest_and_sum_the_rest():
    count = 2 * CAUSE_CAP + 10
    costs = [(i * 7919) % count for i in range(count)]  # a shuffled order
    lines = [  # seven causes per line: the cap is passed in the middle of a line
        line(sites=[{**site(f"s{c:04d}", ms=1.0), "overhead_ms": c / 1000} for c in costs[i : i + 7]])
        for i in range(0, count, 7)
    ]
    picture = scan(lines)
    picture._trim_causes()
    assert len(picture.causes) == CAUSE_CAP
    kept = sorted(key[0] for key in picture.causes)
    assert kept == [f"s{i:04d}" for i in range(CAUSE_CAP + 10, count)]
    # nothing lost: every cause of every line is kept or in the remainder
    requests = sum(entry[K_REQUESTS] for entry in picture.causes.values())
    assert requests + picture.other_causes[K_REQUESTS] == count
    assert picture.other_causes[K_REQUESTS] == CAUSE_CAP + 10


def test_a_long_detail_keeps_the_first_crossings_called_with_their_parents_renumbered():
    detail = [
        crossing(f"c{i}", at=float(300 - i), wait=0.1, run=0.5, resume=0.1, parent=None)
        for i in range(CROSSINGS_KEPT + 100)
    ]
    detail[0]["parent"], detail[0]["depth"] = 299, 2  # c0 (called last) inside c299 (first)
    detail[250]["parent"], detail[250]["depth"] = 299, 2  # c250 inside c299: both kept
    stats = scan([detailed_line(detail)]).endpoints[ITEM_KEY]
    kept = stats.timeline.decode()
    assert stats.timeline.crossings_total == CROSSINGS_KEPT + 100
    assert len(kept) == CROSSINGS_KEPT
    assert {c.site for c in kept} == {f"c{i}" for i in range(100, 300)}
    by_site = {c.site: c for c in kept}
    assert kept[by_site["c250"].parent].site == "c299"
    assert "c0" not in by_site


def test_request_id_keeps_that_request_whole():
    detail = [crossing(f"c{i}", at=float(i), wait=0.1, run=0.5, resume=0.1) for i in range(300)]
    lines = [detailed_line(detail, request_id="chosen"), detailed_line(detail, request_id="x")]
    picture = scan(lines, Picture(request_id="chosen"))
    assert picture.chosen is not None and picture.chosen.request_id == "chosen"
    assert len(picture.chosen.decode()) == 300 and picture.chosen_lines == 1


# --- merging --------------------------------------------------------------------------------
def summary(picture: Picture) -> dict:
    return {
        "endpoints": {
            key: (s.records, s.split, round(s.overhead, 6), round(s.work, 6), s.hop_bins,
                  s.timeline.request_id if s.timeline else None)
            for key, s in sorted(picture.endpoints.items(), key=repr)
        },
        "causes": {key: [round(v, 6) for v in e] for key, e in sorted(picture.causes.items())},
        "counts": (picture.detail_lines, picture.undrawable_lines, picture.sites_dropped_lines),
    }


def varied_lines(count: int) -> list[str]:
    lines = []
    for i in range(count):
        detail = gathered_detail() if i % 2 else nested_wsgi_detail()
        lines.append(
            detailed_line(
                detail,
                request_id=f"r{i:03d}",
                route=f"/r{i % 4}/",
                hop_ms=float(i % 7),
                timestamp=f"2026-11-24T10:00:{i % 60:02d}.000000Z",
            )
        )
    return lines


def test_merging_in_any_order_gives_the_same_picture():
    lines = varied_lines(40)
    whole = scan(lines)
    for cut in (1, 13, 27):
        left, right = scan(lines[:cut]), scan(lines[cut:])
        right.merge(left)
        assert summary(right) == summary(whole)


def test_parallel_reading_gives_the_same_picture(tmp_path: Path):
    lines = varied_lines(60)
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_text("\n".join(lines[:25]) + "\n")
    second.write_text("\n".join(lines[25:]) + "\n")
    sources = inputs.resolve([str(first), str(second)])
    one = parallel.read_all(sources, Filters(), 1, Picture)
    two = parallel.read_all(sources, Filters(), 2, Picture)
    assert summary(one.extra) == summary(two.extra) == summary(scan(lines))


def test_endpoints_past_the_report_cap_go_to_its_overflow_row():
    lines = [line(route=f"/r{i}/", request_id=f"{i}") for i in range(ENDPOINT_CAP + 5)]
    picture = scan(lines)
    assert len(picture.endpoints) == ENDPOINT_CAP + 1
    assert picture.endpoints[OVERFLOW_KEY].records == 5


def test_histogram_bins():
    assert [hop_bin(n) for n in (0, 1, 16, 17, 24, 25, 10_000, 10_001)] == [
        0, 1, 16, 17, 17, 18, len(HOP_BIN_EDGES) - 2, len(HOP_BIN_EDGES) - 1,
    ]  # fmt: skip
    assert [bin_label(i) for i in (0, 7, 17, 18)] == ["0", "7", "17-24", "25-32"]
    assert bin_label(len(HOP_BIN_EDGES) - 1) == "10001+"


def test_a_line_that_passes_the_cause_cap_counts_its_later_causes_too():
    """Trimming in the middle of a line's causes: the causes after it still count."""
    fill = [
        line(sites=[{**site(f"s{i:04d}", ms=1.0), "overhead_ms": 1.0}])
        for i in range(2 * CAUSE_CAP - 1)
    ]
    cheap = {**site("cheap", ms=1.0), "overhead_ms": 0.0}  # the first to be trimmed
    first = line(sites=[cheap])
    passing = line(sites=[{**site("new", ms=1.0), "overhead_ms": 1.0}, cheap])
    picture = scan([first, *fill, passing])
    entry = picture.causes[("cheap", "middleware", "sync_to_async", None)]
    assert entry[K_REQUESTS] == 1  # counted afresh after its first request was trimmed
    total = sum(e[K_REQUESTS] for e in picture.causes.values()) + picture.other_causes[K_REQUESTS]
    assert total == 2 * CAUSE_CAP + 2
