"""Memory: 20,000 requests keep resident memory flat; 100,000 hops in one request stay bounded.

Both run in-process through Django's real ``ASGIHandler`` (a fresh
``ThreadSensitiveContext`` and worker thread per request, as under uvicorn),
with hopwatch writing every line to a file, so the whole path is exercised:
the asgiref patch, the request record, the line, the file output.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.test import override_settings

from hopwatch import Hop, RequestRecord
from hopwatch._django_scope import _awaiting_close
from hopwatch._recorder import late, unscoped
from tests.helpers import asgi_call, capture, without_pytests_log_capture

pytestmark = pytest.mark.slow

HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]
PAGE = os.sysconf("SC_PAGE_SIZE")

REQUESTS = 20_000
WARM_UP = 2_000
SAMPLE_EVERY = 2_000
#: allowed growth of resident memory after warm-up: 1.1 MiB of ~75 (measured: +0.1);
#: a leak of 64 bytes a request grows it 1.2 MiB, checked
TOLERANCE = 0.015


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def live(cls: type) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is cls)


def path_for(i: int) -> str:
    """A mix: plain async and sync views, hop counts by parameter, errors, unique 404s."""
    kind = i % 10
    if kind < 4:
        return "/async/"
    if kind < 6:
        return "/sync/"
    if kind < 8:
        return f"/hops/{i % 7}/"
    if kind == 8:
        return "/error/"
    return f"/no/such/page/{i}/"  # a new path every time: nothing may grow per path


def test_twenty_thousand_requests_keep_memory_flat(tmp_path):
    # pytest 9.2 puts its log-capture handler on every logger that does not propagate,
    # django.request among them (tests/settings.py): it would keep the LogRecord of
    # each 404 and 500 below for the test's report, 3.3 KB a request of the test's own.
    without_pytests_log_capture("django.request")
    log = tmp_path / "hopwatch.log"
    samples: list[tuple[int, int]] = []

    async def main() -> None:
        app = ASGIHandler()
        for i in range(REQUESTS):
            rid = f"m{i}".encode()
            result = await asgi_call(app, path_for(i), headers=[(b"x-request-id", rid)])
            assert result.status is not None
            if i + 1 == WARM_UP or (i + 1) % SAMPLE_EVERY == 0:
                gc.collect()
                samples.append((i + 1, rss()))

    records_before, hops_before = live(RequestRecord), live(Hop)
    started = time.monotonic()
    with override_settings(
        MIDDLEWARE=HOPWATCH_ONLY, HOPWATCH={"OUTPUT": str(log), "SITES_LIMIT": 10}
    ):
        asyncio.run(main())
    elapsed = time.monotonic() - started

    baseline = dict(samples)[WARM_UP]
    after = [value for count, value in samples if count > WARM_UP]
    growth = max(after) - baseline
    report = ", ".join(f"{count}: {value / 2**20:.1f} MiB" for count, value in samples)
    print(f"\n{REQUESTS} requests in {elapsed:.0f}s; RSS {report}")
    assert growth <= TOLERANCE * baseline, f"RSS grew {growth / 2**20:.1f} MiB: {report}"

    # Nothing is kept per request: no record, no hop, nothing waiting to close.
    # (Earlier tests may have left records alive: see test_a_late_hop_does_not_keep_its_request_alive.)
    assert live(RequestRecord) <= records_before
    assert live(Hop) <= hops_before + len(late.details) + len(unscoped.details)
    assert not _awaiting_close
    # Nothing lost either: one line per request, each with its exact count.
    count = 0
    with log.open(encoding="utf-8") as lines:
        for raw in lines:
            count += 1
            line = json.loads(raw)
            i = int(line["request_id"][1:])
            path = path_for(i)
            if path.startswith("/hops/"):
                assert line["hops"] == 2 + i % 7, line
            elif path == "/async/":
                assert line["hops"] == 2, line
    assert count == REQUESTS


class PeakRSS:
    """Samples resident memory every few milliseconds in a thread; keeps the peak."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            self._stop.wait(0.002)

    def __enter__(self) -> PeakRSS:
        self.peak = rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def one_request(n: int, log: Path) -> tuple[RequestRecord, dict[str, Any], int]:
    """/hops/<n>/ through the ASGI handler: its record, its line, and the peak RSS growth."""
    log.unlink(missing_ok=True)
    gc.collect()
    before = rss()
    with (
        override_settings(
            MIDDLEWARE=HOPWATCH_ONLY,
            HOPWATCH={"OUTPUT": str(log), "DETAIL": True, "DETAIL_LIMIT": 100},
        ),
        capture() as records,
        PeakRSS() as peak,
    ):
        result = asyncio.run(asgi_call(ASGIHandler(), f"/hops/{n}/"))
    assert result.body == str(n).encode()
    (record,) = records
    (line,) = [json.loads(raw) for raw in log.read_text().splitlines()]
    return record, line, peak.peak - before


def test_a_request_with_a_hundred_thousand_hops_keeps_memory_bounded(tmp_path):
    one_request(1_000, tmp_path / "warm.log")  # warm up: threads, imports, caches
    hops_before = live(Hop)
    _, _, small_peak = one_request(10_000, tmp_path / "small.log")
    record, line, big_peak = one_request(100_000, tmp_path / "big.log")
    print(
        f"\npeak RSS growth: {small_peak / 2**20:.1f} MiB for 10,000 hops,"
        f" {big_peak / 2**20:.1f} MiB for 100,000"
    )
    # Counts exact...
    assert len(record) == line["hops"] == 100_002  # request_started, 100,000, close
    assert line["sync_to_async"] == 100_002 and line["async_to_sync"] == 0
    sites = {site["site"]: site["count"] for site in line["sites"]}
    assert sites["tests.testapp.views._noop"] == 100_000
    assert sum(sites.values()) == 100_002
    # ... detail capped: in the record (the ledger's limit) and in the line.
    assert len(record.details) == record.detail_limit == 1000
    assert record.detail_dropped == 100_002 - 1000
    assert len(line["detail"]) == 100 and line["detail_dropped"] == 100_002 - 100
    # Ten times the hops, not ten times the memory: keeping every Hop would
    # take tens of MiB here.
    assert big_peak - small_peak < 4 * 2**20, (small_peak, big_peak)
    del record
    assert live(Hop) <= hops_before + len(late.details) + len(unscoped.details)
