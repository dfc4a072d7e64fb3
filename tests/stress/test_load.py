"""Load: a real uvicorn server, 1,000 requests with at least 100 in flight, every line exact.

The server is the example site (startproject's middleware, hopwatch first) with
extra endpoints whose hop count is a request parameter. Each request carries its
own ``X-Request-ID``, which hopwatch puts in the line, so every line can be
matched to the one request it must describe.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import pytest

from tests.stress import client
from tests.stress.harness import BASE, EXAMPLE_ENDPOINTS, by_request_id, running, site_counts
from tests.stress.views import KINDS

pytestmark = pytest.mark.slow

REQUESTS = 1000
CONCURRENCY = 128
MIN_IN_FLIGHT = 100

#: the sites of the parameterised views' own hops (what cross-talk would move)
OWN_SITES = (
    "tests.stress.views.noop",
    "tests.stress.views._middle",
    "tests.stress.views._deepest",
    "tests.testapp.views._noop",
)


@dataclass
class Planned:
    request_id: str
    path: str
    status: int
    hops: int
    own: dict[str, int]  # expected counts of OWN_SITES (absent: 0)


def plan(seed: int = 1) -> list[Planned]:
    rng = random.Random(seed)
    planned = []
    example = sorted(EXAMPLE_ENDPOINTS)
    for i in range(REQUESTS):
        rid = f"load-{i:04d}"
        roll = rng.random()
        if roll < 0.45:
            n, kind = rng.randrange(0, 13), rng.choice(sorted(KINDS))
            sleep = rng.uniform(0.2, 0.6)
            path = f"/stress/load/?n={n}&kind={kind}&sleep={sleep:.3f}"
            if kind == "nested":
                own = {
                    "tests.stress.views._middle": n,
                    "tests.stress.views._deepest": n,
                    "tests.stress.views.noop": n,
                }
            else:
                own = {"tests.stress.views.noop": n}
            planned.append(Planned(rid, path, 200, BASE + KINDS[kind] * n, own))
        elif roll < 0.65:
            n = rng.randrange(0, 21)
            planned.append(
                Planned(rid, f"/hops/{n}/", 200, BASE + n, {"tests.testapp.views._noop": n})
            )
        elif roll < 0.75:
            pk = rng.randrange(1, 21)
            planned.append(Planned(rid, f"/products/{pk}/", 200, 16, {}))
        else:
            path = rng.choice(example)
            status = 500 if path == "/boom/" else 200
            planned.append(Planned(rid, path, status, EXAMPLE_ENDPOINTS[path], {}))
    return planned


async def send_all(port: int, planned: list[Planned]) -> tuple[dict[str, client.Response], int]:
    semaphore = asyncio.Semaphore(CONCURRENCY)
    responses: dict[str, client.Response] = {}
    in_flight = max_in_flight = 0

    async def one(item: Planned) -> None:
        nonlocal in_flight, max_in_flight
        async with semaphore:
            in_flight += 1
            max_in_flight = max(max_in_flight, in_flight)
            try:
                responses[item.request_id] = await client.get(
                    port, item.path, {"X-Request-ID": item.request_id}, timeout=60
                )
            finally:
                in_flight -= 1

    await asyncio.wait_for(asyncio.gather(*(one(item) for item in planned)), 150)
    return responses, max_in_flight


def test_thousand_concurrent_requests_each_logged_once_with_exact_counts(tmp_path, template_db):
    planned = plan()
    started = time.monotonic()
    with running(tmp_path / "server", template_db, lifetime=170) as server:
        responses, client_max = asyncio.run(send_all(server.port, planned))
        summary = server.stop()
    elapsed = time.monotonic() - started

    # Every request answered as the app answers it.
    assert len(responses) == REQUESTS
    for item in planned:
        assert responses[item.request_id].status == item.status, item
    # At least 100 requests were inside the application at once (counted by the server).
    assert client_max >= MIN_IN_FLIGHT
    assert summary["max_in_flight"] >= MIN_IN_FLIGHT, summary

    # Exactly one line per response, and none for anything else.
    lines = by_request_id(server.lines())
    assert sorted(lines) == sorted(item.request_id for item in planned)
    wrong = []
    for item in planned:
        line = lines[item.request_id]
        sites = site_counts(line)
        own = {site: sites.get(site, 0) for site in OWN_SITES}
        expected_own = {site: item.own.get(site, 0) for site in OWN_SITES}
        if (
            line["hops"] != item.hops
            or own != expected_own
            or sum(sites.values()) != line["hops"]  # every hop is in a listed site
            or "sites_dropped" in line
            or line["status"] != item.status
            or line["interface"] != "asgi"
        ):
            wrong.append((item, line["hops"], line["status"], own))
    assert wrong == [], f"{len(wrong)} lines wrong, first: {wrong[:3]}"
    # Parameterised endpoints were logged under their route, not the raw path.
    assert {lines[i.request_id]["route"] for i in planned if i.path.startswith("/hops/")} == {
        "/hops/<int:n>/"
    }
    assert all("?" not in line["route"] for line in lines.values())

    # The server process: every request it started it finished, closed and
    # logged; nothing dangling, no hop after its request, no internal error.
    assert summary["started"] == summary["finished"] == REQUESTS, summary
    assert summary["records_closed"] == {"asgi": REQUESTS}, summary
    assert summary["awaiting_close"] == 0 and summary["late_hops"] == 0, summary
    assert summary["internal_errors"] == 0 and summary["hopwatch_installed"], summary
    print(f"\n1,000 requests, max {summary['max_in_flight']} in flight, {elapsed:.1f}s")
