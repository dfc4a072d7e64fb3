"""The quantile sketch: every estimate within its relative-error bound of the exact value."""

from __future__ import annotations

import json
import math
import pickle
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hopwatch.report.sketch import ALPHA, BUCKETS, MIN_VALUE, Sketch
from tests.report.samples import SESSION, line, site

QUANTILES = (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)
# log() rounding at a bucket edge may add a hair to the bound
TOLERANCE = ALPHA * (1 + 1e-9)


def exact(values: list[float], q: float) -> float:
    """The value of rank floor(q * (n - 1)), the rank the sketch answers for."""
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def assert_within_bound(values: list[float]) -> None:
    sketch = Sketch()
    for value in values:
        sketch.add(value)
    for q, estimate in zip(QUANTILES, sketch.quantiles(QUANTILES), strict=True):
        truth = exact(values, q)
        assert estimate is not None
        if truth < MIN_VALUE:
            assert estimate == 0.0
        else:
            assert abs(estimate - truth) <= TOLERANCE * truth, (q, estimate, truth)


@pytest.mark.parametrize(
    "values",
    [
        [random.Random(1).lognormvariate(0, 1.5) for _ in range(20_000)],
        [random.Random(2).uniform(0, 50) for _ in range(5_000)],
        [round(random.Random(3).expovariate(0.3), 3) for _ in range(5_000)],
        [4.187] * 1000,
        [0.0] * 300 + [0.001, 0.002, 999_999_999.999],
        [0.0005, 0.0009, 1.0],
        [7.0],
    ],
)
def test_percentiles_are_within_the_documented_bound(values: list[float]) -> None:
    assert_within_bound(values)


@given(st.lists(st.floats(0, 999_999_999.999).map(lambda v: round(v, 3)), min_size=1, max_size=300))
def test_percentiles_are_within_the_bound_for_any_input(values: list[float]) -> None:
    assert_within_bound(values)


def test_the_estimate_never_exceeds_the_maximum() -> None:
    sketch = Sketch()
    for value in (1.0, 2.0, 3.0):
        sketch.add(value)
    assert sketch.quantile(1.0) == 3.0
    assert sketch.max == 3.0


def test_merging_equals_adding_everything_to_one_sketch() -> None:
    rng = random.Random(5)
    values = [rng.lognormvariate(1, 2) for _ in range(3000)]
    whole, left, right = Sketch(), Sketch(), Sketch()
    for i, value in enumerate(values):
        whole.add(value)
        (left if i % 3 else right).add(value)
    left.merge(right)
    assert left.bins == whole.bins and left.zeros == whole.zeros and left.max == whole.max
    assert left.quantiles(QUANTILES) == whole.quantiles(QUANTILES)


def test_merging_adds_the_zeros_of_both_sketches() -> None:
    """Values below MIN_VALUE (0 included) are counted apart, in ``zeros``: a merge adds
    both sketches' (it once kept only the other's, mutant sk9)."""
    whole, left, right = Sketch(), Sketch(), Sketch()
    for value in [0.0, 0.0, 0.0, 5.0]:
        left.add(value)
        whole.add(value)
    for value in [0.0, 0.0005, 5.0, 5.0, 5.0]:
        right.add(value)
        whole.add(value)
    left.merge(right)
    assert (left.zeros, right.zeros, whole.zeros) == (5, 2, 5)
    assert left.count == whole.count == 9
    assert left.bins == whole.bins and left.max == whole.max == 5.0
    # ranks 0 to 4 are the zeros, 5 to 8 the fives (rank floor(q * 8))
    assert left.quantiles((0.5, 0.625, 0.95)) == [0.0, 5.0, 5.0]


def test_the_size_is_fixed_and_it_pickles() -> None:
    sketch = Sketch()
    for value in (0.001, 1e8, 5.5):
        sketch.add(value)
    assert len(sketch.bins) == BUCKETS < 1500
    twin = pickle.loads(pickle.dumps(sketch))
    assert twin.bins == sketch.bins and twin.quantile(0.5) == sketch.quantile(0.5)


def test_an_empty_sketch_has_no_quantiles() -> None:
    assert Sketch().quantiles((0.5, 0.99)) == [None, None]


def _only_row(run_cli: Any, tmp_path: Path, texts: list[str]) -> dict[str, Any]:
    """The one endpoint row ``hopwatch report --format json`` gives for ``texts``."""
    log = tmp_path / "app.log"
    log.write_text("\n".join(texts) + "\n", encoding="utf-8")
    result = run_cli(log, "--format", "json", "--jobs", "1")
    assert result.status == 0
    (row,) = json.loads(result.out)["rows"]
    return dict(row)


def test_the_reports_percentiles_are_never_above_the_maximum(
    run_cli: Any, tmp_path: Path, implementation: str
) -> None:
    """Three requests of exactly 1 ms: every percentile is 1.0, not the value the bucket
    holding 1.0 stands for (a hair above it)."""
    texts = [
        line(request_id=f"{i:016x}", hop_ms=1.0, overhead_ms=1.0, work_ms=0.0,
             sites=[site(SESSION, ms=0.4, overhead_ms=0.1)])
        for i in range(3)
    ]  # fmt: skip
    row = _only_row(run_cli, tmp_path, texts)
    every = {"p50": 1.0, "p95": 1.0, "p99": 1.0, "max": 1.0}
    assert row["hop_ms"] == {"total": 3.0, "mean": 1.0, **every}
    assert row["overhead_ms"] == {
        "total": 3.0, "mean": 1.0, **every, "records": 3, "per_hop_us": 66.7
    }  # fmt: skip


@pytest.mark.parametrize("sample_rate", [None, 0.5])
def test_the_smallest_value_kept_is_not_read_as_zero(
    run_cli: Any, tmp_path: Path, implementation: str, sample_rate: float | None
) -> None:
    """hop_ms 0.001 (MIN_VALUE, the smallest a line writes above 0) is a value, not a
    zero: its percentiles and maximum are 0.001, whether the scanner's fast path reads
    the line or (sampled) the general accumulation, Sketch.add, does."""
    assert MIN_VALUE == 0.001
    extra = {} if sample_rate is None else {"sample_rate": sample_rate}
    texts = [
        line(request_id=f"{i:016x}", hop_ms=0.001, overhead_ms=0.001, work_ms=0.0,
             sites=[site(SESSION, ms=0.001, overhead_ms=0.001)], **extra)
        for i in range(3)
    ]  # fmt: skip
    row = _only_row(run_cli, tmp_path, texts)
    total = 0.003 if sample_rate is None else 0.006
    every = {"p50": 0.001, "p95": 0.001, "p99": 0.001, "max": 0.001}
    assert row["hop_ms"] == {"total": total, "mean": 0.001, **every}
    assert {key: row["overhead_ms"][key] for key in every} == every


def test_a_view_row_counts_the_zero_hop_requests_of_every_route_it_serves(
    run_cli: Any, tmp_path: Path, implementation: str
) -> None:
    """``--by view`` merges the view's endpoints (one per route): the requests without
    hop time (0.0) of both routes are counted, so its percentiles are over all 8
    requests, 4 of them 0.0 (with one route's zeros only, p50 was 5.0)."""
    view = "shop.views.shared"
    texts = [
        line(request_id=f"{i:016x}", route=route, view=view, hops=1, hop_ms=hop_ms,
             sites=[site(SESSION, ms=hop_ms)])
        for i, (route, hop_ms) in enumerate(
            [("/a/", 0.0)] * 3 + [("/a/", 5.0)] + [("/b/", 0.0)] + [("/b/", 5.0)] * 3
        )
    ]  # fmt: skip
    log = tmp_path / "app.log"
    log.write_text("\n".join(texts) + "\n", encoding="utf-8")
    result = run_cli(log, "--format", "json", "--jobs", "1", "--by", "view")
    assert result.status == 0
    (row,) = json.loads(result.out)["rows"]
    assert (row["label"], row["records"]) == (view, 8)
    # ranks floor(q * 7): 0 to 3 are the zeros, 4 to 7 the fives
    assert row["hop_ms"] == {
        "total": 20.0, "mean": 2.5, "p50": 0.0, "p95": 5.0, "p99": 5.0, "max": 5.0
    }  # fmt: skip
