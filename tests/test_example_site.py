"""The example site and the demo, end to end: real servers on 127.0.0.1, real traffic.

Runs the demo shortened (3 requests per endpoint), then checks that the report
ranks first the endpoint the example site makes worst, and pins every example
endpoint's hop count from the captured log lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import django
import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        django.VERSION < (5, 0),
        reason="the example site's signal endpoints use Signal.asend (Django 5.0+)",
    ),
]

#: (interface, route) -> hops per request, measured on Django 5.2.
EXPECTED_HOPS = {
    ("asgi", "/hello/"): 15,  # startproject's 13 MiddlewareMixin hooks + request_started + close
    ("asgi", "/hello-sync/"): 16,  # + the sync view in a thread
    ("asgi", "/products/one-by-one/"): 36,  # 15 + the id list + 20 aget()
    ("asgi", "/products/"): 16,  # 15 + one query
    ("asgi", "/products/<int:pk>/"): 16,  # 15 + afirst()
    ("asgi", "/mw/legacy/"): 5,  # the chain runs sync: in, out to the view, process_view
    ("asgi", "/mw/rewrite/"): 15,  # the async-capable rewrite adds nothing
    ("asgi", "/export/sync-iterator/"): 17,  # sync view + the sync iterator
    ("asgi", "/export/"): 16,  # 15 + the async iterator's query
    ("asgi", "/orders/sync-receiver/"): 16,  # 15 + the sync receiver
    ("asgi", "/orders/"): 15,  # an async receiver: no hop
    ("asgi", "/boom/"): 18,  # 15 + process_exception_by_middleware, response_for_exception, log_response
    ("wsgi", "/under-wsgi/"): 1,  # async view under WSGI: one async_to_sync, a new event loop
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    var = tmp_path_factory.mktemp("demo-var")
    command = [sys.executable, "-m", "example_site.demo", "--requests", "3", "--concurrency", "4"]
    command += ["--var", str(var), "--format", "json", "--lifetime", "120"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout[result.stdout.index("{") :])
    lines = []
    for name in ("asgi.log", "wsgi.log"):
        lines += [json.loads(line) for line in (var / name).read_text().splitlines()]
    return report, lines


def test_every_example_endpoint_makes_its_pinned_number_of_hops(demo):
    _report, lines = demo
    seen = defaultdict(set)
    for line in lines:
        seen[(line["interface"], line["route"])].add(line["hops"])
    # 3 requests per endpoint, plus the readiness probe of each server
    assert {key: hops for key, hops in seen.items()} == {
        key: {hops} for key, hops in EXPECTED_HOPS.items()
    }
    under_wsgi = [line for line in lines if line["route"] == "/under-wsgi/"]
    assert all(line["new_loops"] == 1 for line in under_wsgi)
    legacy = [line for line in lines if line["route"] == "/mw/legacy/"]
    assert all(line["pinned_ms"] > 0 for line in legacy)
    assert {line["pinned_by"] for line in legacy} == {"example_site.shop.middleware.LegacyAuditMiddleware"}
    assert all(line["pinned_ms"] == 0 for line in lines if line["route"] == "/mw/rewrite/")


def test_the_report_ranks_the_n_plus_one_endpoint_worst(demo):
    report, lines = demo
    assert report["summary"]["records"] == len(lines)
    assert report["summary"]["skipped"] == 0
    worst = report["rows"][0]
    assert (worst["method"], worst["route"]) == ("GET", "/products/one-by-one/")
    assert worst["hops"]["mean"] == 36


def test_the_report_prices_hops_at_the_hop_tax_the_servers_measured(demo):
    report, lines = demo
    priced = [line for line in lines if "hop_tax_us" in line]
    # measured in a background thread at start-up: the first lines may come before it
    assert len(priced) >= len(lines) // 2 and all(line["hop_tax_us"] > 0 for line in priced)
    taxes = [line["hop_tax_us"] for line in priced]
    assert report["summary"]["hop_tax"] == {
        "source": "lines",
        "min_us": min(taxes),
        "max_us": max(taxes),
        "records": len(priced),
    }
    for row in report["rows"]:
        if row["kind"] != "endpoint":  # "(no view)" rows have no route to match
            continue
        mine = [line for line in priced if (line["method"], line["route"]) == (row["method"], row["route"])]
        if not mine:
            assert row["hop_tax_ms"] is None
            continue
        expected = sum(line["hops"] * line["hop_tax_us"] for line in mine) / len(mine) / 1000
        assert row["hop_tax_ms"]["records"] == len(mine)
        assert row["hop_tax_ms"]["mean"] == pytest.approx(expected, abs=0.0011)


def test_the_demo_leaves_no_server_running(demo):
    result = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert "example_site.servers" not in result.stdout
