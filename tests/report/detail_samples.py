"""Detail-mode lines for the page's and the trace's tests: built by hand, or logged by
real Django requests (through Django's real ASGI and WSGI handlers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.report.samples import line, site

#: Thread ids as the emitter writes them (any integers will do).
LOOP, SYNC, POOL_1, POOL_2, NEW_LOOP, WORKER = 1001, 1002, 1003, 1004, 1005, 1006


def crossing(
    site_name: str,
    at: float,
    wait: float,
    run: float,
    resume: float,
    *,
    thread: int = SYNC,
    caller: int = LOOP,
    parent: int | None = None,
    depth: int = 1,
    kind: str = "other",
    direction: str = "sync_to_async",
    thread_sensitive: bool | None = True,
    new_loop: bool = False,
    outcome: str = "ok",
    call_site: str | None = None,
) -> dict[str, Any]:
    """One ``detail`` entry in the emitter's key order."""
    return {
        "direction": direction,
        "kind": kind,
        "site": site_name,
        "call_site": call_site,
        "depth": depth,
        "thread_sensitive": thread_sensitive if direction == "sync_to_async" else None,
        "new_loop": new_loop,
        "thread": thread,
        "wait_ms": wait,
        "run_ms": run,
        "resume_ms": resume,
        "outcome": outcome,
        "at_ms": at,
        "parent": parent,
        "caller_thread": caller,
    }


def detailed_line(detail: list[dict[str, Any]], **fields: Any) -> str:
    """A line whose counts, sites, overhead and work agree with ``detail``."""
    outer = [c for c in detail if c["depth"] == 1]
    overhead = sum(c["wait_ms"] + c["resume_ms"] for c in detail)
    outer_run = sum(c["run_ms"] for c in outer)
    nested_overhead = sum(c["wait_ms"] + c["resume_ms"] for c in detail if c["depth"] > 1)
    sites: dict[tuple[str, str, str | None], dict[str, Any]] = {}
    for c in detail:
        entry = sites.setdefault(
            (c["site"], c["direction"], c["call_site"]),
            {
                **site(c["site"], c["kind"], 0, 0.0, c["direction"], c["call_site"]),
                "overhead_ms": 0.0,
            },
        )
        entry["count"] += 1
        entry["ms"] = round(entry["ms"] + c["wait_ms"] + c["run_ms"] + c["resume_ms"], 3)
        entry["overhead_ms"] = round(entry["overhead_ms"] + c["wait_ms"] + c["resume_ms"], 3)
    hop_ms = round(sum(c["wait_ms"] + c["run_ms"] + c["resume_ms"] for c in detail), 3)
    end = max((c.get("at_ms", 0.0) + c["wait_ms"] + c["run_ms"] + c["resume_ms"] for c in detail), default=0)
    values: dict[str, Any] = {
        "hops": len(detail),
        "hop_ms": hop_ms,
        "wait_ms": round(sum(c["wait_ms"] for c in detail), 3),
        "overhead_ms": round(overhead, 3),
        "work_ms": round(max(0.0, outer_run - nested_overhead), 3),
        "sync_to_async": sum(c["direction"] == "sync_to_async" for c in detail),
        "async_to_sync": sum(c["direction"] == "async_to_sync" for c in detail),
        "duration_ms": round(end + 0.5, 3),
        "max_depth": max((c["depth"] for c in detail), default=0),
        "sites": sorted(sites.values(), key=lambda s: -s["ms"]),
        "detail": detail,
        "detail_dropped": 0,
    }
    values.update(fields)
    return line(**values)


def nested_wsgi_detail() -> list[dict[str, Any]]:
    """An async view under WSGI calling sync code calling async code calling sync code,
    as the emitter lists it (finish order: the innermost first)."""
    return [
        crossing("app.noop", 1.40, 0.02, 0.10, 0.03, thread=WORKER, caller=NEW_LOOP, parent=1,
                 depth=4),
        crossing("app.deepest", 1.30, 0.05, 0.30, 0.10, thread=NEW_LOOP, caller=WORKER,
                 parent=2, depth=3, direction="async_to_sync"),
        crossing("app.middle", 1.10, 0.08, 0.60, 0.05, thread=WORKER, caller=NEW_LOOP,
                 parent=3, depth=2),
        crossing("app.views.nested", 0.40, 0.60, 1.50, 0.20, thread=NEW_LOOP, caller=WORKER,
                 direction="async_to_sync", kind="view", new_loop=True),
    ]  # fmt: skip


def gathered_detail() -> list[dict[str, Any]]:
    """Three sync_to_async calls gathered at once on the request's sync thread: they run
    one after another (each queued behind the one before); then two on pool threads."""
    return [
        crossing("QuerySet.aget", 1.0, 0.05, 1.0, 0.05, kind="orm", call_site="app.py:1 in v"),
        crossing("QuerySet.aget", 1.0, 1.05, 1.0, 0.05, kind="orm", call_site="app.py:1 in v"),
        crossing("QuerySet.aget", 1.0, 2.05, 1.0, 0.05, kind="orm", call_site="app.py:1 in v"),
        crossing("app.fetch", 4.5, 0.1, 2.0, 0.1, thread=POOL_1, thread_sensitive=False),
        crossing("app.fetch", 4.5, 0.1, 2.0, 0.1, thread=POOL_2, thread_sensitive=False),
    ]


def log_detail_requests(path: Path, asgi: list[str], wsgi: list[str] = ()) -> list[dict]:
    """Real requests through Django's ASGI and WSGI handlers, with detail mode on, their
    lines written by hopwatch to ``path``; returns the lines, parsed."""
    from django.test import override_settings

    from tests.helpers import asgi_request, wsgi_request

    with override_settings(HOPWATCH={"OUTPUT": str(path), "DETAIL": True, "SITES_LIMIT": 50}):
        for route in asgi:
            asgi_request(route)
        for route in wsgi:
            wsgi_request(route)
    return [json.loads(text) for text in path.read_text().splitlines()]
