"""Faults under a real uvicorn server: clients hanging up, slow streams, shutdown mid-traffic.

Each scenario runs twice, against the same site with hopwatch and without it
(not installed, not in the middleware): what the clients observe and what the
server counted must be the same. Then the hopwatch log must have exactly one
line per request the application saw, with exact counts, and the server
process must have closed every record and exited by itself.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.stress import client
from tests.stress.harness import BASE, Server, by_request_id, running, site_counts

pytestmark = pytest.mark.slow

WITHOUT = {"HOPWATCH_STRESS_WITHOUT": "1"}


def both(tmp_path: Path, template_db: Path, scenario: Any, **options: Any) -> tuple[Any, Any]:
    """(observations with hopwatch, observations without), each from a fresh server."""
    results = []
    for name, env in (("with", {}), ("without", WITHOUT)):
        with running(tmp_path / name, template_db, env=env, **options) as server:
            results.append((server, scenario(server)))
    (with_server, with_seen), (_without_server, without_seen) = results
    assert with_seen == without_seen
    return with_server, with_seen


def assert_server_clean(summary: dict[str, Any], requests: int) -> None:
    assert summary["started"] == summary["finished"] == requests, summary
    assert summary["records_closed"] == {"asgi": requests}, summary
    assert summary["awaiting_close"] == 0, summary
    assert summary["internal_errors"] == 0 and summary["hopwatch_installed"], summary


# --- clients hanging up, slow streams -----------------------------------------------------


async def _read_stream_in_two_halves(server: Server, rid: str, chunks: int) -> tuple[bool, bytes]:
    """Read the head and first chunk; note whether a line exists yet; read the rest."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        path = f"/stress/stream/?chunks={chunks}&delay=0.1"
        writer.write(client.request_bytes(path, {"X-Request-ID": rid}))
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b"chunk 0\n"), 10)
        logged_mid_stream = any(f'"request_id":"{rid}"' in line for line in server.raw_lines())
        rest = await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()
    return logged_mid_stream, client.parse_response(first + rest).body


def disconnects_and_streams(server: Server) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        ok = [
            client.get(
                server.port, f"/stress/load/?n={i % 5}&sleep=0.2", {"X-Request-ID": f"ok-{i}"}
            )
            for i in range(20)
        ]
        gone = [
            client.get_and_hang_up(
                server.port, "/stress/load/?n=4&sleep=0.5", {"X-Request-ID": f"gone-{i}"}, 0.1
            )
            for i in range(10)
        ]
        gone_in_thread = [
            client.get_and_hang_up(server.port, "/slow/", {"X-Request-ID": f"thread-{i}"}, 0.1)
            for i in range(3)
        ]
        mid_stream = [
            client.get_and_hang_up(
                server.port,
                "/stress/stream/?chunks=20&delay=0.05",
                {"X-Request-ID": f"cut-{i}"},
                after=0.1,
                read_first=1,
            )
            for i in range(5)
        ]
        streams = [_read_stream_in_two_halves(server, f"stream-{i}", 8) for i in range(5)]
        results = await asyncio.gather(*ok, *gone, *gone_in_thread, *mid_stream, *streams)
        ok_results, streamed = results[:20], results[-5:]
        # The server is still healthy afterwards.
        after = [
            await client.get(server.port, "/hops/3/", {"X-Request-ID": f"after-{i}"})
            for i in range(3)
        ]
        return {
            "ok": [(r.status, r.body) for r in ok_results],
            "streams": [body for _logged, body in streamed],
            "logged_mid_stream": [logged for logged, _body in streamed],
            "after": [(r.status, r.body) for r in after],
        }

    seen = asyncio.run(main())
    summary = server.stop()
    seen["summary"] = {k: summary[k] for k in ("started", "finished", "raised", "cancelled")}
    return seen


def test_clients_hanging_up_and_slow_streams(tmp_path, template_db):
    server, seen = both(tmp_path, template_db, disconnects_and_streams)
    assert seen["ok"] == [(200, f"ts {i % 5}\n".encode()) for i in range(20)]
    assert seen["streams"] == [b"".join(b"chunk %d\n" % i for i in range(8))] * 5
    assert seen["after"] == [(200, b"3")] * 3
    assert seen["logged_mid_stream"] == [False] * 5  # not closed while still streaming
    requests = 20 + 10 + 3 + 5 + 5 + 3
    assert seen["summary"]["started"] == requests
    assert_server_clean(server.summary(), requests)

    lines = by_request_id(server.lines())
    assert len(lines) == requests
    for i in range(20):
        assert lines[f"ok-{i}"]["hops"] == BASE + i % 5
    for i in range(3):
        assert lines[f"after-{i}"]["hops"] == BASE + 3
    for i in range(5):
        line = lines[f"stream-{i}"]
        assert line["hops"] == BASE + 8 and line["status"] == 200
        assert line["duration_ms"] >= 700  # the record covers the whole stream
    for rid in [f"gone-{i}" for i in range(10)] + [f"thread-{i}" for i in range(3)]:
        # Django cancels the request when the client goes, wherever it is
        # (under load, often still in the middleware): the line counts what
        # ran until then, plus the request_finished Django sends.
        assert_cancelled_before_the_response(lines[rid])
    for i in range(5):
        line = lines[f"cut-{i}"]
        streamed = site_counts(line)["tests.stress.views.noop"]
        assert line["hops"] == BASE + streamed
        assert 1 <= streamed < 20  # the stream is cancelled a few chunks in


BEFORE_THE_VIEW = [
    "django.middleware.security.SecurityMiddleware.process_request",
    "django.contrib.sessions.middleware.SessionMiddleware.process_request",
    "django.middleware.common.CommonMiddleware.process_request",
    "django.middleware.csrf.CsrfViewMiddleware.process_request",
    "django.contrib.auth.middleware.AuthenticationMiddleware.process_request",
    "django.contrib.messages.middleware.MessageMiddleware.process_request",
    "django.middleware.csrf.CsrfViewMiddleware.process_view",
]


def assert_cancelled_before_the_response(line: dict[str, Any]) -> None:
    """The hooks that ran are the chain's first k, once each: no other request's hops."""
    sites = site_counts(line)
    assert line["status"] is None
    assert sites.pop("request_started") == 1 and sites.pop("request_finished") == 1
    view_hops = sites.pop("time.sleep", 0) + sites.pop("tests.stress.views.noop", 0)
    ran = [hook for hook in BEFORE_THE_VIEW if hook in sites]
    assert ran == BEFORE_THE_VIEW[: len(ran)], ran
    assert sites == dict.fromkeys(ran, 1), sites
    assert view_hops <= 4 and (view_hops == 0 or len(ran) == len(BEFORE_THE_VIEW))
    assert line["hops"] == 2 + len(ran) + view_hops


# --- shutdown mid-traffic --------------------------------------------------------------------


def graceful_shutdown(server: Server) -> dict[str, Any]:
    """SIGTERM while ~60 slow requests are in flight and new ones keep arriving."""
    outcomes: dict[str, Any] = {}

    async def one(rid: str, path: str) -> None:
        try:
            response = await client.get(server.port, path, {"X-Request-ID": rid}, timeout=20)
            outcomes[rid] = (response.status, response.body)
        except (OSError, client.IncompleteResponse, asyncio.IncompleteReadError) as exc:
            outcomes[rid] = type(exc).__name__

    async def main() -> float:
        tasks = []
        for i in range(60):  # slow: 0.6-1.5 s each, all in flight when SIGTERM comes
            path = f"/stress/load/?n={i % 7}&kind=pool&sleep={0.6 + (i % 10) / 10}"
            tasks.append(asyncio.ensure_future(one(f"slow-{i:02d}", path)))
        await asyncio.sleep(0.5)
        server.terminate()
        signalled = time.monotonic()
        for i in range(40):  # and traffic keeps coming while the server shuts down
            tasks.append(asyncio.ensure_future(one(f"late-{i:02d}", f"/hops/{i % 5}/")))
            await asyncio.sleep(0.02)
        await asyncio.gather(*tasks)
        return signalled

    signalled = asyncio.run(main())
    code = server.wait(30)
    exited_after = time.monotonic() - signalled
    summary = server.summary()
    slow = {rid: v for rid, v in outcomes.items() if rid.startswith("slow-")}
    return {
        "code": code,
        "exited_within_5s": exited_after < 5,
        # every request in flight at SIGTERM was answered in full
        "slow": sorted(slow.items()),
        "outcomes": outcomes,  # compared below, not across runs (timing)
        "summary": summary,
    }


def test_graceful_shutdown_mid_traffic(tmp_path, template_db):
    results = []
    for name, env in (("with", {}), ("without", WITHOUT)):
        with running(tmp_path / name, template_db, env=env) as server:
            results.append((server, graceful_shutdown(server)))
    (server, seen), (_, seen_without) = results
    for observed in (seen, seen_without):
        assert observed["code"] == 0 and observed["exited_within_5s"]
        assert [rid for rid, _ in observed["slow"]] == [f"slow-{i:02d}" for i in range(60)]
    assert seen["slow"] == seen_without["slow"]
    assert seen["slow"] == [(f"slow-{i:02d}", (200, f"pool {i % 7}\n".encode())) for i in range(60)]
    # Requests after SIGTERM were refused or answered, with or without hopwatch alike.
    for observed in (seen, seen_without):
        for rid, outcome in observed["outcomes"].items():
            if rid.startswith("late-"):
                assert outcome in ((200, str(int(rid[5:]) % 5).encode()),) or isinstance(
                    outcome, str
                ), (rid, outcome)

    answered = {rid for rid, outcome in seen["outcomes"].items() if not isinstance(outcome, str)}
    summary = seen["summary"]
    assert_server_clean(summary, summary["started"])
    lines = by_request_id(server.lines())
    # Exactly the answered requests were logged: no line lost, none left dangling.
    assert set(lines) == answered
    for rid, line in lines.items():
        n = int(rid[5:]) % (7 if rid.startswith("slow-") else 5)
        assert line["hops"] == BASE + n and line["status"] == 200, (rid, line["hops"])


def hard_shutdown(server: Server) -> dict[str, Any]:
    """SIGTERM with requests that never finish: uvicorn cancels them after 1 s."""

    async def main() -> list[Any]:
        hanging = [
            client.get(server.port, "/stress/hang/?n=3", {"X-Request-ID": f"hang-{i}"})
            for i in range(5)
        ]
        quick = [
            client.get(server.port, "/stress/load/?n=2&sleep=0.3", {"X-Request-ID": f"quick-{i}"})
            for i in range(5)
        ]
        tasks = [asyncio.ensure_future(c) for c in [*hanging, *quick]]
        await asyncio.sleep(0.5)
        server.terminate()
        return [(r.status, r.body) for r in await asyncio.gather(*tasks)]

    responses = asyncio.run(main())
    code = server.wait(30)
    summary = server.summary()
    return {
        "code": code,
        "responses": responses,
        "summary": {k: summary[k] for k in ("started", "finished", "raised", "cancelled")},
    }


def test_shutdown_cancelling_requests_in_flight(tmp_path, template_db):
    server, seen = both(tmp_path, template_db, hard_shutdown, graceful_timeout=1)
    assert seen["code"] == 0
    # uvicorn answers 500 for a request it had to cancel before it responded.
    assert seen["responses"] == [(500, b"Internal Server Error")] * 5 + [(200, b"ts 2\n")] * 5
    assert seen["summary"] == {"started": 10, "finished": 10, "raised": 0, "cancelled": 5}
    assert_server_clean(server.summary(), 10)
    lines = by_request_id(server.lines())
    assert len(lines) == 10
    for i in range(5):
        # The cancelled requests are logged: request_started, the seven hooks
        # before the view, the view's three hops; no response, no status.
        assert (lines[f"hang-{i}"]["hops"], lines[f"hang-{i}"]["status"]) == (11, None)
        assert site_counts(lines[f"hang-{i}"])["tests.stress.views.noop"] == 3
        assert (lines[f"quick-{i}"]["hops"], lines[f"quick-{i}"]["status"]) == (BASE + 2, 200)
