"""What a user would reach for instead of ``hopwatch report``, on the same log.

    python -m bench.report_peers NAME LOG OUT.json

Each peer computes, per (method, route), the request count, the mean hop time
and its p50/p95/p99 (the msgspec loop with sites also totals each route's
causes), and writes ``{"METHOD route": count}`` to OUT.json so that the
benchmark can check the counts against the ground truth. Every peer finds the
JSON object at the line's first ``{`` (as docs/log-schema.md says) and keeps
only ``"event": "hopwatch.request"`` records. Written as a user fluent in each
tool would write it, not tuned against hopwatch:

* ``msgspec``: msgspec's typed decoder (the fields it needs only) in a loop
  over the lines, with a substring prefilter, on 2 processes that split the
  file by byte ranges; per-route lists of hop times for exact quantiles.
* ``msgspec-sites``: the same, plus per-route totals of every cause in ``sites``
  (the part of hopwatch's report that costs the most to compute).
* ``polars``: the file as one text column (``scan_csv`` with a separator that
  never occurs), ``str.slice`` from ``str.find("{")``, ``str.json_decode`` with
  the needed fields, ``group_by``.
* ``duckdb``: the same in SQL (``read_csv`` of one column, ``substr`` from
  ``strpos(line, '{')``, ``from_json``, ``GROUP BY``, ``quantile_cont``).
* ``jq``: ``jq -R`` with ``fromjson?`` per line (in bench.report_bench).

The peers are installed into the bench virtualenv only (see bench/__main__.py).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import sys
from collections import defaultdict
from typing import Any

MARKER = b"hopwatch.request"
QUANTILES = (0.5, 0.95, 0.99)

JQ_PROGRAM = (
    'reduce (inputs | .[(index("{") // 0):] | fromjson? '
    '| select(type == "object" and .event == "hopwatch.request")) as $r ({}; '
    '.["\\($r.method) \\($r.route)"] |= {n: ((.n // 0) + 1), s: ((.s // 0) + $r.hop_ms)}) '
    "| map_values(.n)"
)


# --- msgspec ---------------------------------------------------------------------------
try:
    import msgspec
except ImportError:  # not in this environment: the peer is skipped
    msgspec = None
else:

    class Site(msgspec.Struct):
        site: str
        kind: str
        direction: str
        count: int
        ms: float
        call_site: str | None = None

    class Request(msgspec.Struct):
        event: str
        method: str
        route: str
        hop_ms: float
        sites: list[Site] = []

    class Lean(msgspec.Struct):
        event: str
        method: str
        route: str
        hop_ms: float


def _msgspec_part(args: tuple[str, int, int, bool]) -> tuple[dict[Any, Any], dict[Any, Any]]:
    path, start, end, with_sites = args
    decode = msgspec.json.Decoder(Request if with_sites else Lean).decode
    errors = (msgspec.DecodeError, msgspec.ValidationError)
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    sites: dict[tuple[str, str], dict[tuple[Any, ...], list[float]]] = defaultdict(dict)
    with open(path, "rb") as handle:
        if start:
            handle.seek(start - 1)
            handle.readline()  # the line through `start` belongs to the range before
        position = handle.tell()
        for line in handle:
            if position >= end:
                break
            position += len(line)
            if MARKER not in line:
                continue
            brace = line.find(b"{")
            try:
                record = decode(line[brace:] if brace > 0 else line)
            except errors:
                continue
            if record.event != "hopwatch.request":
                continue
            key = (record.method, record.route)
            values[key].append(record.hop_ms)
            if with_sites:
                totals = sites[key]
                for site in record.sites:
                    cause = (site.site, site.kind, site.direction, site.call_site)
                    entry = totals.get(cause)
                    if entry is None:
                        entry = totals[cause] = [0, 0, 0.0]
                    entry[0] += 1
                    entry[1] += site.count
                    entry[2] += site.ms
    return dict(values), dict(sites)


def run_msgspec(path: str, with_sites: bool, processes: int = 2) -> dict[str, int]:
    size = os.path.getsize(path)
    cuts = [size * i // processes for i in range(processes + 1)]
    jobs = [(path, cuts[i], cuts[i + 1], with_sites) for i in range(processes)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        parts = pool.map(_msgspec_part, jobs)
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    causes: dict[tuple[str, str], dict[Any, list[float]]] = defaultdict(dict)
    for part_values, part_sites in parts:
        for key, hop_ms in part_values.items():
            values[key].extend(hop_ms)
        for key, totals in part_sites.items():
            for cause, entry in totals.items():
                mine = causes[key].setdefault(cause, [0, 0, 0.0])
                for i in range(3):
                    mine[i] += entry[i]
    summary = {}
    for key, hop_ms in values.items():
        hop_ms.sort()
        cuts_q = statistics.quantiles(hop_ms, n=100) if len(hop_ms) > 1 else hop_ms * 99
        summary[key] = (len(hop_ms), sum(hop_ms) / len(hop_ms), cuts_q[49], cuts_q[94], cuts_q[98])
    return {f"{method} {route}": row[0] for (method, route), row in summary.items()}


# --- polars ----------------------------------------------------------------------------
def run_polars(path: str) -> dict[str, int]:
    import polars as pl

    fields = pl.Struct(
        {"event": pl.String, "method": pl.String, "route": pl.String, "hop_ms": pl.Float64}
    )
    frame = (
        pl.scan_csv(
            path,
            has_header=False,
            separator="\x01",
            quote_char=None,
            schema={"line": pl.String},
        )
        .filter(pl.col("line").str.contains("hopwatch.request", literal=True))
        .select(  # from the first "{": str.find and str.slice (a regex is 8x slower here)
            pl.col("line")
            .str.slice(pl.col("line").str.find("{", literal=True))
            .str.json_decode(fields)
            .alias("r")
        )
        .unnest("r")
        .filter(pl.col("event") == "hopwatch.request")
        .group_by("method", "route")
        .agg(
            pl.len().alias("requests"),
            pl.col("hop_ms").mean().alias("mean"),
            *(pl.col("hop_ms").quantile(q).alias(f"p{int(q * 100)}") for q in QUANTILES),
        )
        .collect()
    )
    return {f"{m} {r}": n for m, r, n in frame.select("method", "route", "requests").iter_rows()}


# --- duckdb ----------------------------------------------------------------------------
def run_duckdb(path: str) -> dict[str, int]:
    import duckdb

    query = """
        SELECT r.method, r.route, count(*) AS requests, avg(r.hop_ms) AS mean,
               quantile_cont(r.hop_ms, [0.5, 0.95, 0.99]) AS quantiles
        FROM (
            SELECT from_json(substr(line, strpos(line, '{')),
                   '{"event": "VARCHAR", "method": "VARCHAR", "route": "VARCHAR",
                     "hop_ms": "DOUBLE"}') AS r
            FROM read_csv(?, columns = {'line': 'VARCHAR'}, delim = '\x01', quote = '',
                          escape = '', header = false, auto_detect = false,
                          max_line_size = 4194304)
            WHERE contains(line, 'hopwatch.request')
        )
        WHERE r.event = 'hopwatch.request'
        GROUP BY ALL
    """
    connection = duckdb.connect()
    rows = connection.execute(query, [path]).fetchall()
    return {f"{method} {route}": requests for method, route, requests, _, _ in rows}


PEERS = {
    "msgspec": lambda path: run_msgspec(path, with_sites=False),
    "msgspec-sites": lambda path: run_msgspec(path, with_sites=True),
    "polars": run_polars,
    "duckdb": run_duckdb,
}


def main() -> None:
    name, path, out = sys.argv[1:4]
    counts = PEERS[name](path)
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(counts, handle, ensure_ascii=False)


if __name__ == "__main__":
    main()
