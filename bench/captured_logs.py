"""Realistic captured logs for ``hopwatch report``, with the ground truth beside them.

    python -m bench.captured_logs OUT.log [--lines N] [--rendering NAME] [--seed S]

A captured log is rarely the exact bytes hopwatch's emitter writes: a project
renders hopwatch's event through its own structlog or logging JSON formatter
(``json.dumps``' default separators, another key order, ``ensure_ascii``
escapes), an extra-fields hook adds keys, container runtimes wrap or prefix the
line, and other loggers write in between. Each rendering below is one of those;
``captured`` (the benchmark's) mixes the common ones the way a Kubernetes log
looks: structlog's default rendering, a fifth of the lines behind a CRI prefix,
a few extra keys, some escaped Unicode, 5% foreign lines.

The ground truth (``OUT.log.truth.json``) holds what a correct reader must find:
the line count, the records, and per endpoint (method, route, view) the exact
request count, summed hops, and summed ``hop_ms`` and ``overhead_ms`` in integer
microseconds; per cause the requests, crossings, microseconds and overhead
microseconds. Records carry the current schema's fields (``overhead_ms``,
``work_ms``, ``sites[].overhead_ms``, ``executors``, the thread fields) and, as
default settings write them, ``sites_dropped``: most requests are an async view
behind startproject's middleware, whose 11 to 16 causes the default SITES_LIMIT
(10) cuts to 10 listed (the totals count them all; the truth's causes are the
listed ones, as the report's are, the rest being left out). It is
computed from the values the generator drew, never by parsing the log back.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Written into the ground truth: a log made by another version of this generator (other
#: fields, other spoils) is made again by the benchmark rather than reused.
GENERATOR_VERSION = 3

# Every rendering this module can write; "captured" mixes several, "all" every one.
RENDERINGS = (
    "hopwatch",  # the emitter's own bytes: compact, schema order
    "structlog",  # json.dumps defaults (", " and ": "), event/level/logger/timestamp last
    "sorted",  # sort_keys=True, ensure_ascii=True (every non-ASCII character escaped)
    "spaced",  # indent-free but with spaces everywhere JSON allows them, reversed key order
    "extra",  # an extra-fields hook: keys (nested too) before, among and after the fields
    "docker",  # docker's json-file driver: {"log": "<line>\n", "stream": ..., "time": ...}
    "logging",  # a stdlib logging JSON formatter: {"message": "<line>", "levelname": ...}
    "cri",  # containerd/CRI-O prefix: "<time> stdout F <line>"
    "kubectl",  # kubectl logs --prefix: "[pod/NAME/container] <line>"
    "detail",  # DETAIL mode: a "detail" array of every crossing
    "captured",  # the benchmark's mix (see the module docstring)
    "all",  # every rendering above, line by line
)

SITES = [
    ("django.middleware.security.SecurityMiddleware.process_request", "middleware"),
    ("django.middleware.security.SecurityMiddleware.process_response", "middleware"),
    ("django.middleware.common.CommonMiddleware.process_request", "middleware"),
    ("django.middleware.common.CommonMiddleware.process_response", "middleware"),
    ("django.middleware.clickjacking.XFrameOptionsMiddleware.process_response", "middleware"),
    ("django.contrib.sessions.middleware.SessionMiddleware.process_response", "middleware"),
    ("django.contrib.sessions.middleware.SessionMiddleware.process_request", "middleware"),
    ("django.contrib.auth.middleware.AuthenticationMiddleware.process_request", "middleware"),
    ("django.middleware.csrf.CsrfViewMiddleware.process_view", "middleware"),
    ("django.contrib.messages.middleware.MessageMiddleware.process_response", "middleware"),
    ("myproject.middleware.LegacyTenantMiddleware", "middleware"),
    ("request_started", "signal"),
    ("request_finished", "signal"),
    ("HttpResponse.close", "response"),
    ("QuerySet.aget", "orm"),
    ("Model.asave", "orm"),
    ("shop.views.legacy_sync_view", "view"),
    ("boutique.vues.café_détail", "view"),  # non-ASCII: escaped by ensure_ascii renderings
]
LEGACY = "myproject.middleware.LegacyTenantMiddleware"
#: hopwatch's default SITES_LIMIT: the line lists this many causes, the rest in sites_dropped
SITES_LIMIT = 10
#: The share of requests that are an async view behind startproject's middleware (11 to 16
#: causes: the default leaves 1 to 6 out of the line, docs/settings.md); the rest make 4 to 8.
STARTPROJECT_SHARE = 0.8
ROUTES = [f"/api/v1/{name}/<int:pk>/" for name in ("items", "orders", "users", "carts")] + [
    f"/shop/{name}/" for name in ("search", "checkout", "basket", "account", "help", "promo")
] + ["/boutique/café/", "/直播/<slug:room>/"]  # fmt: skip
# what scanners ask for: unmatched paths, logged raw (no view)
PROBES = [
    f"/{name}"
    for name in ("wp-login.php", ".env", ".git/config", "admin.php", "xmlrpc.php", "phpmyadmin/",
                 "cgi-bin/luci", "boaform/admin", "actuator/health", "vendor/phpunit/eval.php")
]  # fmt: skip
PODS = [f"web-7d9f8c6b5-{suffix}" for suffix in ("4xq2z", "b8k1m", "zz9p0")]


def _view(route: str) -> str:
    return "shop.views." + route.strip("/").replace("/", "_").replace("<", "").replace(">", "")


def draw_record(rng: random.Random, i: int, *, detail: bool = False) -> dict[str, Any]:
    """One request's fields in the emitter's order (docs/log-schema.md)."""
    route = rng.choice(ROUTES)
    many = rng.random() < STARTPROJECT_SHARE
    chosen = rng.sample(SITES, rng.randint(11, 16) if many else rng.randint(4, 8))
    sites = []
    for name, kind in chosen:
        entry: dict[str, Any] = {
            "site": name,
            "kind": kind,
            "direction": "sync_to_async" if rng.random() < 0.9 else "async_to_sync",
            "count": 1 if kind != "orm" else rng.randint(1, 6),
            "ms": round(rng.lognormvariate(-2.2, 0.7), 3),
        }
        # the crossings' own cost: a share of their wall time (the rest ran inside them)
        entry["overhead_ms"] = _us(entry["ms"] * rng.uniform(0.1, 0.6)) / 1000
        if kind == "orm":  # a view makes its ORM calls from a few lines of its code
            line_number = 40 + 10 * ROUTES.index(route) + rng.randint(0, 2)
            entry["call_site"] = f"shop/views.py:{line_number} in handler"
        sites.append(entry)
    sites.sort(key=lambda e: -e["ms"])
    crossed = sites  # every cause (the totals and the detail hold them all)
    # SITES_LIMIT: the largest causes, the view's crossing always among them
    views = [e for e in sites[SITES_LIMIT:] if e["kind"] == "view"][:1]
    sites = sorted(sites[: SITES_LIMIT - len(views)] + views, key=lambda e: -e["ms"])
    hop_us = sum(_us(e["ms"]) for e in crossed)
    overhead_us = sum(_us(e["overhead_ms"]) for e in crossed)
    hops = sum(e["count"] for e in crossed)
    s2a = sum(e["count"] for e in crossed if e["direction"] == "sync_to_async")
    pinned = any(name == LEGACY for name, _ in chosen)
    orm = any(kind == "orm" for _, kind in chosen)
    view = None if rng.random() < 0.01 else _view(route)
    record: dict[str, Any] = {
        "event": "hopwatch.request",
        "schema": 1,
        "timestamp": f"2026-11-24T{i // 3_600_000 % 24:02d}:{i // 60_000 % 60:02d}:"
        f"{i // 1000 % 60:02d}.{i % 1000:03d}{rng.randint(0, 999):03d}Z",
        "request_id": f"{rng.getrandbits(64):016x}",
        "method": rng.choice(("GET", "GET", "GET", "POST")),
        "route": route if view else rng.choice(PROBES),
        "view": view,
        "status": rng.choice((200, 200, 200, 200, 201, 302, 404, 500)),
        "interface": "asgi",
        "duration_ms": (hop_us + _us(round(rng.lognormvariate(2, 0.8), 3))) / 1000,
        "hops": hops,
        "hop_ms": hop_us / 1000,
        "wait_ms": round(overhead_us * rng.uniform(0.3, 0.9) / 1000, 3),
        "overhead_ms": overhead_us / 1000,
        "work_ms": (hop_us - overhead_us) / 1000,
        "sync_to_async": s2a,
        "async_to_sync": hops - s2a,
        "threads": rng.choice((2, 2, 2, 3)),
        "new_loops": 1 if rng.random() < 0.001 else 0,
        "max_depth": 1,
        "pinned_ms": round(hop_us * 0.4 / 1000, 3) if pinned else 0.0,
        "pinned_by": LEGACY if pinned else None,
        # the thread fields (docs/threads.md): crossings per executor, concurrency, connections
        "executors": _executors(rng, s2a, hops - s2a),
        "max_in_flight": 1,
        "concurrent_ms": 0.0,
        "db_connections": 1 if orm else 0,
        "sites": sites,
    }
    if len(crossed) > len(sites):
        record["sites_dropped"] = len(crossed) - len(sites)
    if detail:
        record["detail"] = [
            {
                "direction": e["direction"],
                "kind": e["kind"],
                "site": e["site"],
                "call_site": e.get("call_site"),
                "depth": 1,
                "thread_sensitive": True if e["direction"] == "sync_to_async" else None,
                "new_loop": False,
                "thread": 140_000_000_000_000 + rng.getrandbits(20),
                "wait_ms": round(e["ms"] * 0.2 / e["count"], 3),
                "run_ms": round(e["ms"] * 0.7 / e["count"], 3),
                "resume_ms": round(e["ms"] * 0.1 / e["count"], 3),
                "outcome": "ok",
                "at_ms": round(rng.uniform(0, 5), 3),
                "parent": None,
                "caller_thread": 140_000_000_000_000 + rng.getrandbits(20),
                "executor": "context_thread" if e["direction"] == "sync_to_async" else "loop",
                "thread_started": None,
            }
            for e in crossed
            for _ in range(e["count"])
        ]
        record["detail_dropped"] = 0
    return record


def _us(ms: float) -> int:
    return round(ms * 1000)


def _executors(rng: random.Random, s2a: int, a2s: int) -> dict[str, int]:
    """``executors``: the request's crossings by what ran them (kinds with none left out)."""
    pool = rng.randint(0, min(1, s2a))  # a thread_sensitive=False call now and then
    counts = {"context_thread": s2a - pool, "default_pool": pool, "loop": a2s}
    return {kind: count for kind, count in counts.items() if count}


# --- renderings: a record in, one line out ------------------------------------------------
def _compact(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def hopwatch_line(record: dict[str, Any], rng: random.Random) -> str:
    return _compact({**record, "level": "info", "logger": "hopwatch"})


def structlog_line(record: dict[str, Any], rng: random.Random) -> str:
    # structlog sets "event" after the keyword fields; add_log_level, add_logger_name and
    # TimeStamper(fmt="iso") append theirs; JSONRenderer is json.dumps with its defaults
    fields = {k: v for k, v in record.items() if k not in ("event", "timestamp")}
    fields.update(
        event=record["event"], level="info", logger="hopwatch", timestamp=record["timestamp"]
    )
    return json.dumps(fields)


def sorted_line(record: dict[str, Any], rng: random.Random) -> str:
    return json.dumps({**record, "level": "INFO"}, sort_keys=True)


def spaced_line(record: dict[str, Any], rng: random.Random) -> str:
    text = json.dumps(dict(reversed(record.items())), separators=(" , ", " : "))
    return "{ " + text[1:-1] + " }\t"


def extra_line(record: dict[str, Any], rng: random.Random) -> str:
    fields = {"service": "shop", "deploy": {"sha": f"{rng.getrandbits(28):07x}", "canary": False}}
    for key, value in record.items():
        fields[key] = value
        if key == "status":
            fields["tenant"] = rng.choice(("acme", "globex", None))
    fields["tags"] = ["web", {"region": "eu-west-1", "zones": [1, 2]}]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


def docker_line(record: dict[str, Any], rng: random.Random) -> str:
    inner = hopwatch_line(record, rng) + "\n"
    return json.dumps(
        {"log": inner, "stream": "stdout", "time": record["timestamp"][:-1] + "123Z"},
        separators=(",", ":"),
    )


def logging_line(record: dict[str, Any], rng: random.Random) -> str:
    return json.dumps(
        {
            "asctime": record["timestamp"],
            "levelname": "INFO",
            "name": "hopwatch",
            "message": hopwatch_line(record, rng),
        }
    )


def cri_line(record: dict[str, Any], rng: random.Random) -> str:
    return f"{record['timestamp'][:-1]}123Z stdout F {structlog_line(record, rng)}"


def kubectl_line(record: dict[str, Any], rng: random.Random) -> str:
    return f"[pod/{rng.choice(PODS)}/web] {hopwatch_line(record, rng)}"


def detail_line(record: dict[str, Any], rng: random.Random) -> str:
    return hopwatch_line(record, rng)


Render = Callable[[dict[str, Any], random.Random], str]
RENDER: dict[str, Render] = {
    "hopwatch": hopwatch_line,
    "structlog": structlog_line,
    "sorted": sorted_line,
    "spaced": spaced_line,
    "extra": extra_line,
    "docker": docker_line,
    "logging": logging_line,
    "cri": cri_line,
    "kubectl": kubectl_line,
    "detail": detail_line,
}


def _captured(record: dict[str, Any], rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.20:
        return cri_line(record, rng)
    if roll < 0.25:
        fields = {k: v for k, v in record.items() if k != "event"}
        fields.update(event=record["event"], level="info", logger="hopwatch", tenant="acme")
        return json.dumps(fields)  # an extra key
    if roll < 0.30:
        return json.dumps({**record, "level": "info"})  # ensure_ascii, emitter order
    return structlog_line(record, rng)


# --- lines that are not hopwatch records -----------------------------------------------
def foreign_line(rng: random.Random, i: int) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return json.dumps(
            {
                "event": f"GET /shop/search/?q={rng.getrandbits(40):x} 200",
                "level": "info",
                "logger": "django.request",
                "timestamp": "2026-11-24T10:00:00Z",
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) " + "x" * rng.randint(300, 600),
            }
        )
    if kind == 1:
        return f'INFO:     10.0.0.{i % 250}:5{i % 1000:03d} - "GET /shop/ HTTP/1.1" 200 OK'
    if kind == 2:
        return '  File "/app/shop/views.py", line 42, in handler'
    if kind == 3:  # mentions the event, but is not a record
        return json.dumps({"event": "hopwatch.request logging enabled", "level": "debug"})
    return ""


# --- records with a malformed part ----------------------------------------------------
#: How a record is spoiled, in turn, and the part the report must say it lost (None:
#: nothing it reads: the record is read whole).
SPOILS = (
    ("site_ms", "sites"),  # one sites entry's ms is text: that entry is left out
    ("site_shape", "sites"),  # one sites entry is not an object at all
    ("overhead_ms", "overhead_ms"),  # the record's overhead is text: its overhead unknown
    ("pinned_by", "pinned_by"),  # a number where a site name belongs
    ("detail", None),  # a detail that is not a list (the table never reads it)
    ("later_schema", None),  # a later schema: its version, and fields this one lacks
)


def spoil(record: dict[str, Any], how: str) -> None:
    """Make one part of ``record`` malformed, in place (see SPOILS)."""
    if how == "site_ms":
        record["sites"][0]["ms"] = "slow"
    elif how == "site_shape":
        record["sites"].insert(1, ["not", "an", "object"])
    elif how == "overhead_ms":
        record["overhead_ms"] = "n/a"
    elif how == "pinned_by":
        record["pinned_by"] = 7
    elif how == "detail":
        record["detail"] = "not a list"
    elif how == "later_schema":
        record["schema"] = 2
        record["queue_depth"] = {"p95": 3, "by_executor": [1, 2]}
        record["sites"][0]["inline"] = True


def generate(
    path: Path,
    lines: int,
    rendering: str = "captured",
    seed: int = 1,
    foreign: float = 0.05,
    malformed: float = 0.0,
) -> dict[str, Any]:
    """Write ``lines`` lines to ``path`` and the ground truth beside it; return the truth.

    ``malformed``: the share of records given a malformed part (see SPOILS, in turn);
    the truth then says which parts the report must count as lost, and leaves out
    of the causes and overheads exactly what those records lost.

    Both files are written atomically (a temporary file, then a rename): runs may share /tmp.
    """
    if rendering not in RENDERINGS:
        raise ValueError(f"unknown rendering {rendering!r}")
    rng = random.Random(seed)
    names = [name for name in RENDER if name != "detail"]
    endpoints: dict[str, dict[str, Any]] = {}
    by_route: dict[str, int] = {}
    parts_lost: dict[str, int] = {}
    spoiled = 0
    records = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(partial, "w", encoding="utf-8") as out:
        for i in range(lines):
            if rng.random() < foreign:
                out.write(foreign_line(rng, i) + "\n")
                continue
            name = names[i % len(names)] if rendering == "all" else rendering
            record = draw_record(
                rng, i, detail=name == "detail" or (rendering == "all" and i % 7 == 0)
            )
            if malformed and rng.random() < malformed:
                how, lost = SPOILS[spoiled % len(SPOILS)]
                spoiled += 1
                spoil(record, how)
                if lost is not None:
                    parts_lost[lost] = parts_lost.get(lost, 0) + 1
            render = _captured if name == "captured" else RENDER[name]
            out.write(render(record, rng) + "\n")
            records += 1
            _count(endpoints, record)
            route_key = f"{record['method']} {record['route']}"
            by_route[route_key] = by_route.get(route_key, 0) + 1
    truth = {
        "generator": GENERATOR_VERSION,
        "rendering": rendering,
        "seed": seed,
        "lines": lines,
        "records": records,
        "other_lines": lines - records,
        # records counted without a malformed part: part -> records (the report's parts_lost)
        "parts_lost": dict(sorted(parts_lost.items())),
        # what a tool grouping by the line's method and route must count (raw 404 paths too)
        "requests_by_route": dict(sorted(by_route.items())),
        "endpoints": [endpoints[key] for key in sorted(endpoints)],
    }
    truth_path = path.with_name(path.name + ".truth.json")
    partial_truth = truth_path.with_name(f".{truth_path.name}.{os.getpid()}.tmp")
    partial_truth.write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n")
    os.replace(partial, path)
    os.replace(partial_truth, truth_path)
    return truth


def _count(endpoints: dict[str, dict[str, Any]], record: dict[str, Any]) -> None:
    view = record["view"]
    # the report's grouping: requests without a view are one row per method
    route = record["route"] if view is not None else None
    key = json.dumps([record["method"], route, view])
    entry = endpoints.get(key)
    if entry is None:
        entry = endpoints[key] = {
            "method": record["method"],
            "route": route,
            "view": view,
            "requests": 0,
            "hops": 0,
            "hop_us": 0,
            "overhead_us": 0,
            "causes": {},
        }
    entry["requests"] += 1
    entry["hops"] += record["hops"]
    entry["hop_us"] += _us(record["hop_ms"])
    if isinstance(record["overhead_ms"], float):  # else malformed: the overhead is unknown
        entry["overhead_us"] += _us(record["overhead_ms"])
    causes = entry["causes"]
    for site in record["sites"]:
        if not isinstance(site, dict) or not isinstance(site["ms"], float):
            continue  # a malformed entry: left out, the record's other causes kept
        cause = json.dumps([site["site"], site["kind"], site["direction"], site.get("call_site")])
        totals = causes.setdefault(
            cause, {"requests": 0, "count": 0, "us": 0, "overhead_us": 0}
        )
        totals["requests"] += 1
        totals["count"] += site["count"]
        totals["us"] += _us(site["ms"])
        totals["overhead_us"] += _us(site["overhead_ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--rendering", choices=RENDERINGS, default="captured")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--foreign", type=float, default=0.05, help="share of foreign lines")
    parser.add_argument(
        "--malformed", type=float, default=0.0, help="share of records with a malformed part"
    )
    args = parser.parse_args()
    truth = generate(
        args.path, args.lines, args.rendering, args.seed, args.foreign, args.malformed
    )
    print(f"{args.path}: {truth['lines']:,} lines, {truth['records']:,} records")


if __name__ == "__main__":
    main()
