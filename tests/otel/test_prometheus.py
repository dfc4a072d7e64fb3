"""End to end: a real server, OpenTelemetry's Prometheus exporter, scraped over HTTP.

uvicorn serves the test app on 127.0.0.1 (``tests.otel.prometheus_server``) with
OTEL_METRICS on from start-up; the exporter's endpoint (prometheus_client's
server, 127.0.0.1 too) is scraped as Prometheus would, and what it says per
route equals the request lines the same server logged. Not marked slow (about
3 s): it runs on every environment, the oldest exporter (dev.py's django52) too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.stress.harness import free_port

ROOT = Path(__file__).resolve().parents[2]

REQUESTS = ["/async/"] * 3 + ["/sync/"] * 2 + ["/hops/3/"] * 2 + ["/nested/", "/nope/", "/nope/"]


class Server:
    def __init__(self, directory: Path) -> None:
        self.log = directory / "hopwatch.log"
        self.stderr_file = directory / "server.stderr"
        self.port = self.metrics_port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        for _attempt in range(3):  # a free port can be taken before the server binds it
            self.port, self.metrics_port = free_port(), free_port()
            command = [sys.executable, "-m", "tests.otel.prometheus_server"]
            command += ["--port", str(self.port), "--metrics-port", str(self.metrics_port)]
            command += ["--lifetime", "120"]
            env = {"PATH": "/usr/bin:/bin", "HOPWATCH_LOG": str(self.log)}
            env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src")])
            with self.stderr_file.open("ab") as stderr:
                self.process = subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr
                )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    for port in (self.port, self.metrics_port):
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return
                except OSError:
                    time.sleep(0.1)
            self.stop()
        raise RuntimeError(f"the server did not start: {self.stderr_file.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as error:
            return error.code

    def lines(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def scrape(self) -> dict[str, list]:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=30) as response:
            text = response.read().decode()
        return {family.name: family.samples for family in text_string_to_metric_families(text)}


@contextlib.contextmanager
def running(directory: Path) -> Iterator[Server]:
    server = Server(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _route(labels: dict[str, str]) -> tuple[str, str, str]:
    # A data point without http.route (a 404) is exposed without the label by the
    # exporter 0.52b0 to 0.60b0, with http_route="" from 0.61b0: one series to
    # Prometheus, which reads a missing label as "". Before 0.52b0 the exporter gave
    # every series of a family the last point's label names: all lost http_route.
    return (
        labels.get("http_route", ""),
        labels["http_request_method"],
        labels["http_response_status_code"],
    )


def _line_route(line: dict) -> tuple[str, str, str]:
    # Prometheus has no absent label: an unmatched path's missing http.route reads "".
    # http.route is Django's own pattern: the line's route without its leading "/".
    return (line["route"][1:] if line["view"] else "", line["method"], str(line["status"]))


def test_scraped_histograms_and_counter_equal_the_logged_lines(tmp_path):
    with running(tmp_path) as server:
        statuses = [server.get(path) for path in REQUESTS]
        assert statuses == [200] * 8 + [404, 404]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            samples = server.scrape()
            counts = [
                s for s in samples.get("hopwatch_request_hops", []) if s.name.endswith("_count")
            ]
            if len(server.lines()) == len(REQUESTS) and sum(s.value for s in counts) == len(
                REQUESTS
            ):
                break
            time.sleep(0.1)
        lines = server.lines()
    assert len(lines) == len(REQUESTS)

    expected: dict[tuple, list[int]] = defaultdict(list)
    for line in lines:
        expected[_line_route(line)].append(line["hops"])
    hops = samples["hopwatch_request_hops"]
    count = {_route(s.labels): s.value for s in hops if s.name == "hopwatch_request_hops_count"}
    total = {_route(s.labels): s.value for s in hops if s.name == "hopwatch_request_hops_sum"}
    assert count == {key: len(values) for key, values in expected.items()}
    assert total == {key: sum(values) for key, values in expected.items()}
    assert ("hops/<int:n>/", "GET", "200") in count and ("", "GET", "404") in count
    assert not any("/nope/" in key[0] for key in count)  # never the raw path

    by_site: dict[tuple, int] = defaultdict(int)
    for line in lines:
        for site in line["sites"]:
            by_site[(*_line_route(line), site["kind"], site["site"], site["direction"])] += site[
                "count"
            ]
    counter = {
        (
            *_route(s.labels),
            s.labels["hopwatch_cause_kind"],
            s.labels["hopwatch_cause_site"],
            s.labels["hopwatch_direction"],
        ): s.value
        for s in samples["hopwatch_hops"]
        if s.name == "hopwatch_hops_total"
    }
    assert counter == dict(by_site)

    # Seconds, with the unit in the name; one observation per request in each.
    for name in (
        "hopwatch_request_hop_overhead_seconds",
        "hopwatch_request_hop_duration_seconds",
        "hopwatch_request_pinned_seconds",
    ):
        observed = sum(s.value for s in samples[name] if s.name == f"{name}_count")
        assert observed == len(REQUESTS), name
    pinned = {
        _route(s.labels): s.value
        for s in samples["hopwatch_request_pinned_seconds"]
        if s.name.endswith("_sum")
    }
    assert pinned[("nested/", "GET", "200")] > 0
    assert pinned[("async/", "GET", "200")] == 0
