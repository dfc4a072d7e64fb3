"""Building hopwatch lines for the report's tests (and the committed fixture).

``python -m tests.report.samples`` rewrites ``fixtures/mixed.log``; the golden
outputs are refreshed with ``HOPWATCH_UPDATE_GOLDEN=1 pytest tests/report``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"

# Field order as the emitter writes it (docs/log-schema.md).
BASE: dict[str, Any] = {
    "event": "hopwatch.request",
    "schema": 1,
    "timestamp": "2026-11-24T10:00:00.000000Z",
    "request_id": "0000000000000000",
    "method": "GET",
    "route": "/items/<int:pk>/",
    "view": "shop.views.item_detail",
    "status": 200,
    "interface": "asgi",
    "duration_ms": 6.412,
    "hops": 15,
    "hop_ms": 4.187,
    "wait_ms": 1.032,
    "sync_to_async": 15,
    "async_to_sync": 0,
    "threads": 2,
    "new_loops": 0,
    "max_depth": 1,
    "pinned_ms": 0.0,
    "pinned_by": None,
    "sites": [],
}
TAIL: dict[str, Any] = {"level": "info", "logger": "hopwatch"}

SESSION = "django.contrib.sessions.middleware.SessionMiddleware.process_request"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware.process_request"
CSRF = "django.middleware.csrf.CsrfViewMiddleware.process_view"


def site(
    name: str,
    kind: str = "middleware",
    count: int = 1,
    ms: float = 0.1,
    direction: str = "sync_to_async",
    call_site: str | None = None,
    overhead_ms: float | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "site": name,
        "kind": kind,
        "direction": direction,
        "count": count,
        "ms": ms,
    }
    if overhead_ms is not None:
        entry["overhead_ms"] = overhead_ms
    if call_site is not None:
        entry["call_site"] = call_site
    return entry


def record(tail: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A record dict in the emitter's key order; extra fields go after "sites".

    ``pinned=False`` leaves out pinned_ms and pinned_by (lines from before they existed).
    """
    rec = dict(BASE)
    if not fields.pop("pinned", True):
        del rec["pinned_ms"], rec["pinned_by"]
    extra = {}
    for key, value in fields.items():
        if key in rec:
            rec[key] = value
        else:
            extra[key] = value
    rec.update(extra)
    rec.update(TAIL if tail is None else tail)
    return rec


def line(tail: dict[str, Any] | None = None, **fields: Any) -> str:
    """One canonical hopwatch line (compact JSON), as the emitter writes it."""
    return json.dumps(record(tail, **fields), separators=(",", ":"), ensure_ascii=False)


ENDPOINTS = [
    (
        "GET",
        "/items/<int:pk>/",
        "shop.views.item_detail",
        [SESSION, AUTH, "request_started", "request_finished"],
    ),
    ("POST", "/cart/", "shop.views.cart_add", [SESSION, AUTH, CSRF, "QuerySet.aget"]),
    ("GET", "/search/", "shop.views.search", [SESSION, "HttpResponse.close"]),
]
KINDS = {
    "request_started": "signal",
    "request_finished": "signal",
    "QuerySet.aget": "orm",
    "HttpResponse.close": "response",
}


def canonical_lines(count: int, seed: int = 7, overhead: bool = True) -> list[str]:
    """``count`` plausible canonical lines over a few endpoints (``overhead``: with
    overhead_ms and work_ms, as hopwatch writes them now; else as before it did)."""
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        method, route, view, names = ENDPOINTS[i % len(ENDPOINTS)]
        sites = []
        for name in names:
            kind = KINDS.get(name, "middleware")
            call_site = "shop/views.py:42 in cart_add" if kind == "orm" else None
            ms = round(rng.lognormvariate(-2, 0.6), 3)
            sites.append(
                site(
                    name,
                    kind,
                    rng.randint(1, 3),
                    ms,
                    call_site=call_site,
                    overhead_ms=round(ms * rng.uniform(0.2, 0.6), 3) if overhead else None,
                )
            )
        sites.sort(key=lambda s: -s["ms"])
        hop_ms = round(sum(s["ms"] for s in sites), 3)
        times = {}
        if overhead:  # no nesting: overhead + work is the whole crossings' time
            spent = round(sum(s["overhead_ms"] for s in sites), 3)
            times = {"overhead_ms": spent, "work_ms": round(hop_ms - spent, 3)}
        lines.append(
            line(
                timestamp=f"2026-11-24T10:{i // 60 % 60:02d}:{i % 60:02d}.{i * 7919 % 10**6:06d}Z",
                request_id=f"{rng.getrandbits(64):016x}",
                method=method,
                route=route,
                view=view,
                duration_ms=round(hop_ms + rng.uniform(1, 20), 3),
                hops=sum(s["count"] for s in sites),
                hop_ms=hop_ms,
                wait_ms=round(hop_ms * rng.uniform(0.05, 0.4), 3),
                sync_to_async=sum(s["count"] for s in sites),
                threads=rng.choice([2, 2, 3]),
                sites=sites,
                **times,
            )
        )
    return lines


def mixed_lines() -> list[bytes]:
    """The fixture: hopwatch lines mixed with everything a real log holds."""
    out: list[bytes] = [text.encode() for text in canonical_lines(24, overhead=False)]
    hostile_route = "/[bold red]boom[/] \x1b[31mred\x1b[0m |pipe| `tick` <b>*x*</b> _u_"
    extra = [
        # a container runtime prefix (CRI) and a timestamp prefix
        "2026-11-24T10:05:00.000000001Z stdout F "
        + line(request_id="cri1", route="/search/", method="GET", view="shop.views.search"),
        "[pod web-7f9c] "
        + line(request_id="pod1", route="/cart/", method="POST", view="shop.views.cart_add"),
        # not in canonical form: spaces, a later schema with unknown fields, escapes
        json.dumps(record(schema=2, request_id="pretty", future={"nested": [1, {"a": None}]})),
        line(request_id="esc", route="/caf\u00e9/\u00fc/", view="shop.views.cafe"),
        json.dumps(
            record(
                request_id="esc2",
                route=hostile_route,
                view="shop.views.hostile",
                status=500,
                new_loops=1,
                sites=[
                    site(
                        "<script>alert(1)</script>|`x`",
                        "other",
                        1,
                        2.5,
                        call_site="evil.py:1 in \x1b]8;;http://x\x07f",
                    )
                ],
            )
        ),
        # optional fields
        line(request_id="sampled", route="/search/", view="shop.views.search", sample_rate=0.25),
        line(
            request_id="pinned",
            pinned_ms=3.5,
            pinned_by="myproject.middleware.LegacyMiddleware",
            profile="hopwatch-pinned.html",
            hopwatch_errors=2,
            sites_dropped=3,
            sites=[site(SESSION, ms=1.5)],
        ),
        line(request_id="old", pinned=False),  # written before pinned_ms existed
        # two pods that measured their hop tax (MEASURE_HOP_TAX): different hosts, prices
        line(request_id="tax1", route="/search/", view="shop.views.search", hop_tax_us=212.5),
        line(
            request_id="tax2",
            route="/search/",
            view="shop.views.search",
            hops=4,
            duration_ms=2.0,
            hop_tax_us=301.0,
            hopwatch_errors=1,
        ),
        # view-less requests (unmatched paths) collapse into one row per method
        line(
            request_id="nf1", route="/wp-login.php", view=None, status=404, hop_ms=0.2, wait_ms=0.05
        ),
        line(request_id="nf2", route="/.env", view=None, status=404, hop_ms=0.3, wait_ms=0.1),
        line(
            request_id="gone",
            status=None,
            interface="wsgi",
            hop_ms=0.0,
            wait_ms=0.0,
            hops=0,
            sync_to_async=0,
            max_depth=0,
        ),
        # a log shipper's envelope
        json.dumps(
            {
                "log": line(request_id="wrapped", route="/search/", view="shop.views.search")
                + "\n",
                "stream": "stdout",
            }
        ),
        # other loggers and plain text
        json.dumps({"event": "GET /items/1/ 200", "level": "info", "logger": "django.request"}),
        'INFO:     127.0.0.1:5000 - "GET /items/1/ HTTP/1.1" 200 OK',
        "",
        "Traceback (most recent call last): mentions hopwatch.request but is not one",
        # broken hopwatch lines, each skipped with a reason
        line(request_id="cut")[:150],
        line(request_id="neg", duration_ms=-1),
        line(request_id="huge", hop_ms=1e12),
        line(request_id="str", hops="15"),
        line(request_id="bool", threads=True),
        line(request_id="nan").replace('"hop_ms":4.187', '"hop_ms":NaN'),
        json.dumps({k: v for k, v in record(request_id="nohops").items() if k != "hops"}),
        line(request_id="badts", timestamp="yesterday"),
        line(request_id="badsite", sites=[{"site": "x", "kind": "orm"}]),
        '{"event":"hopwatch.request","deep":' + "[" * 5000 + "]" * 5000 + "}",
    ]
    out.extend(text.encode() for text in extra)
    out.append(b'{"event":"hopwatch.request","route":"/\xff\xfe/"}')  # invalid UTF-8
    out.append(b"\x00\x01\x02binary\xff garbage")
    return out


def write_mixed(path: Path) -> None:
    path.write_bytes(b"\n".join(mixed_lines()) + b"\n")


if __name__ == "__main__":
    write_mixed(FIXTURES / "mixed.log")


PLAIN: dict[str, Any] = {
    "event": "hopwatch.request",
    "schema": 1,
    "timestamp": "2026-11-24T10:00:00.000000Z",
    "request_id": "r1",
    "method": "GET",
    "route": "/items/",
    "view": "shop.views.items",
    "status": 200,
    "interface": "asgi",
    "duration_ms": 10.0,
    "hops": 4,
    "hop_ms": 2.0,
    "wait_ms": 0.1,
    "sync_to_async": 4,
    "async_to_sync": 0,
    "threads": 2,
    "new_loops": 0,
    "max_depth": 1,
    "pinned_ms": 0.0,
    "pinned_by": None,
    "sites": [
        {
            "site": "request_started",
            "kind": "signal",
            "direction": "sync_to_async",
            "count": 4,
            "ms": 2.0,
        }
    ],
    "level": "info",
    "logger": "hopwatch",
}


def plain_line(*drop: str, **fields: Any) -> str:
    """One line of a GET /items/ request with 4 hops of 2.0 ms in all, all from
    request_started, and no overhead_ms (``fields`` replace, ``drop`` removes)."""
    obj = {**PLAIN, **fields}
    for name in drop:
        del obj[name]
    return json.dumps(obj)
