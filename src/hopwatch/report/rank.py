"""From a merged :class:`~hopwatch.report.aggregate.Partial` to the report document.

The document is a plain dict and *is* the ``--format json`` output (its shape is
documented in docs/report.md and versioned by ``REPORT_VERSION``); every other
renderer formats the same dict, so all formats always agree.

Sampled logs: each line stands for ``1 / sample_rate`` requests, so
``requests`` and every total (hop time; a cause's requests, crossings and time)
are weighted by it; means and percentiles describe the logged requests as
they are.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from hopwatch._advice import MIDDLEWARE_HOOK, advice_for, site_advice
from hopwatch.report import threads
from hopwatch.report.aggregate import (
    A_DURATION,
    A_HOP_MS,
    A_HOPS,
    A_HOPS_MAX,
    A_OVERHEAD,
    A_RECORDS,
    A_WAIT,
    A_WORK,
    C_ASYNC_TO_SYNC,
    C_DEPTH_MAX,
    C_NEW_LOOP_RECORDS,
    C_NEW_LOOPS,
    C_SYNC_TO_ASYNC,
    C_THREADS,
    C_THREADS_MAX,
    NORMAL,
    OVERFLOW,
    S_COUNT,
    S_EXTRA_REQUESTS,
    S_MS,
    S_OVERHEAD,
    S_OVH_REQUESTS,
    S_REQUESTS,
    SITE_CAP,
    SITE_FIELDS,
    T_DURATION,
    T_HOPS,
    T_MAX,
    T_MIN,
    T_PRICED_US,
    T_PRICED_US_TOTAL,
    T_RECORDS,
    EndpointKey,
    EndpointStats,
    Partial,
    SiteKey,
    at_resolution,
    site_order,
    site_requests,
)
from hopwatch.report.sketch import ALPHA
from hopwatch.report.text import clean
from hopwatch.schema import SYNC_INTERFACES

REPORT_VERSION: Final = 1
#: --hop-tax above this (one second per hop) is a unit mistake, not a host.
MAX_HOP_TAX_US: Final = 1_000_000
BY_CHOICES: Final = ("route", "view", "site")
#: Causes listed per endpoint in the document (renderers show fewer).
CAUSES_LISTED: Final = 10
#: pinned_by sites listed per endpoint.
PINNED_BY_LISTED: Final = 3
#: Endpoints listed per cause with --by site.
ENDPOINTS_PER_SITE: Final = 3
#: Causes listed under the table as what to change first.
FIXABLE_LISTED: Final = 5
#: The one what-to-change-first item that stands for every hook of Django's own middleware
#: (the same change removes any of them: docs/causes.md); one item per hook (13 with
#: startproject's stack) crowded the project's own causes out of the list.
DJANGO_HOOKS: Final = "Django's own middleware hooks"
#: Hooks named in that item (``sites``); it counts them all.
DJANGO_HOOKS_NAMED: Final = 64

NO_VIEW_LABEL: Final = "(no view)"
OVERFLOW_LABEL: Final = "(other endpoints)"


def _r(value: float, digits: int = 3) -> float:
    return round(value, digits) + 0.0  # + 0.0: no "-0.0" in the output


def _count(value: float) -> float | int:
    """An estimated count: an int when it is whole (always, for unsampled logs)."""
    rounded = round(value, 3)
    return int(rounded) if rounded == int(rounded) else rounded


#: A denominator below this (a total of hop or request time under a nanosecond) makes
#: no meaningful share: the log itself resolves 0.001 ms. Guards against 5e-324.
_SMALLEST_WHOLE: Final = 1e-6


def _ratio(part: float, whole: float) -> float | None:
    if whole < _SMALLEST_WHOLE:
        return None
    share = part / whole
    return _r(share, 4) if math.isfinite(share) else None


# --- sort keys -------------------------------------------------------------------------
Row = dict[str, Any]


def _get(*path: str) -> Callable[[Row], float]:
    def key(row: Row) -> float:
        value: Any = row
        for name in path:
            value = value.get(name) if isinstance(value, dict) else None
        return float(value) if value is not None else float("-inf")

    return key


ENDPOINT_SORTS: Final[dict[str, Callable[[Row], float]]] = {
    "overhead": _get("overhead_ms", "total"),
    "overhead-mean": _get("overhead_ms", "mean"),
    "overhead-p95": _get("overhead_ms", "p95"),
    "work": _get("work_ms", "total"),
    "total": _get("hop_ms", "total"),
    "requests": _get("requests"),
    "mean": _get("hop_ms", "mean"),
    "p50": _get("hop_ms", "p50"),
    "p95": _get("hop_ms", "p95"),
    "p99": _get("hop_ms", "p99"),
    "hops": _get("hops", "mean"),
    "max-hops": _get("hops", "max"),
    "hop-share": _get("hop_share"),
    # the "wait %" column: queue wait over overhead (wait_share, over hop time, is
    # in the JSON and CSV only)
    "wait-share": _get("wait_of_overhead"),
    "threads": _get("threads", "mean"),
    "loops": _get("new_loops", "total"),
    "pinned": _get("pinned_ms", "mean"),
    "hop-tax": _get("hop_tax_ms", "total"),
}
SITE_SORTS: Final[dict[str, Callable[[Row], float]]] = {
    "overhead": _get("overhead_ms"),
    "overhead-mean": _get("overhead_per_request"),
    "total": _get("ms"),
    "requests": _get("requests"),
    "mean": _get("ms_per_request"),
    "count": _get("count"),
    "endpoints": _get("endpoints"),
}
SORT_CHOICES: Final = tuple(dict.fromkeys([*ENDPOINT_SORTS, *SITE_SORTS]))


class OptionError(ValueError):
    """Options that do not go together (exit status 2)."""


#: The default sort: crossing overhead over the logged traffic (what removing hops saves).
DEFAULT_SORT: Final = "overhead"
#: ... and what it falls back to when no line carries overhead_ms (hopwatch before it).
FALLBACK_SORT: Final = "total"


class NoSuchEndpoint(LookupError):
    """``--endpoint`` names no row of the report (exit status 1)."""


@dataclass(frozen=True)
class ReportOptions:
    by: str = "route"
    sort: str = DEFAULT_SORT
    top: int = 20  # 0: all
    min_requests: int = 1
    filters: dict[str, Any] | None = None  # echoed in the document
    #: --hop-tax: price every hop at this many microseconds instead of the lines' hop_tax_us
    hop_tax_us: float | None = None
    #: --endpoint: one row's label ("GET /x/", a view's path) or route, in detail
    endpoint: str | None = None

    def check(self) -> None:
        if self.by not in BY_CHOICES:
            raise OptionError(f"unknown --by {self.by!r} (choose from {', '.join(BY_CHOICES)})")
        sorts = SITE_SORTS if self.by == "site" else ENDPOINT_SORTS
        if self.sort not in sorts:
            raise OptionError(
                f"--sort {self.sort} does not apply to --by {self.by} "
                f"(choose from {', '.join(sorts)})"
            )
        if self.top < 0:
            raise OptionError("--top must be 0 (all) or more")
        if self.min_requests < 0:
            raise OptionError("--min-requests must be 0 or more")
        if self.hop_tax_us is not None and not 0 < self.hop_tax_us < MAX_HOP_TAX_US:
            raise OptionError(
                f"--hop-tax must be above 0 and below {MAX_HOP_TAX_US:,} microseconds"
            )
        if self.endpoint is not None and self.by == "site":
            raise OptionError("--endpoint names a route or a view: use it with --by route or view")


# --- regrouping --------------------------------------------------------------------------
GroupKey = tuple[Any, ...]


def _group_key(key: EndpointKey, by: str) -> GroupKey:
    kind, method, route, view = key
    if kind == OVERFLOW:
        return (OVERFLOW,)
    if by == "view":
        return (kind, view)
    return (kind, method, route)


def _dominant(counts: dict[Any, float]) -> Any:
    """The key seen most often; a tie goes to the one whose name sorts last."""
    return max(counts.items(), key=lambda item: (item[1], str(item[0])))[0] if counts else None


def _regroup(partial: Partial, by: str) -> list[tuple[GroupKey, EndpointStats, Row]]:
    """Merge fine-grained endpoints into the report's groups (route + method, or view)."""
    groups: dict[GroupKey, tuple[EndpointStats, dict[Any, float], dict[Any, float]]] = {}
    for key, stats in sorted(partial.endpoints.items(), key=lambda item: repr(item[0])):
        group = _group_key(key, by)
        records = stats.acc[A_RECORDS]
        entry = groups.get(group)
        if entry is None:
            entry = groups[group] = (stats.copy_as(key), {}, {})
        else:
            entry[0].merge(stats)
        entry[1][key[2] if key[0] == NORMAL else None] = (
            entry[1].get(key[2] if key[0] == NORMAL else None, 0) + records
        )
        entry[2][key[3]] = entry[2].get(key[3], 0) + records
    result = []
    for group, (stats, routes, views) in groups.items():
        kind = group[0]
        identity: Row
        if kind == OVERFLOW:
            identity = {
                "kind": "overflow",
                "method": None,
                "route": None,
                "view": None,
                "label": OVERFLOW_LABEL,
            }
        elif by == "view":
            view = group[1]
            identity = {
                "kind": "endpoint" if kind == NORMAL else "no_view",
                "method": None,
                "route": _dominant(routes),
                "view": view,
                "label": view if view is not None else NO_VIEW_LABEL,
            }
        else:
            method = group[1]
            route = group[2] if kind == NORMAL else None
            identity = {
                "kind": "endpoint" if kind == NORMAL else "no_view",
                "method": method,
                "route": route,
                "view": _dominant(views),
                "label": f"{method} {route if route is not None else NO_VIEW_LABEL}",
            }
        result.append((group, stats, identity))
    return result


# --- rows ----------------------------------------------------------------------------------
def _site_dict(key: SiteKey) -> Row:
    site, kind, direction, call_site = key
    return {"site": site, "kind": kind, "direction": direction, "call_site": call_site}


def _hop_tax(stats: EndpointStats, hop_tax_us: float | None) -> Row | None:
    """The endpoint's hops priced at the host's hop tax (see docs/report.md)."""
    acc = stats.acc
    if hop_tax_us is not None:  # --hop-tax: every record, at one price
        records = acc[A_RECORDS]
        return {
            "mean": _r(acc[A_HOPS] * hop_tax_us / records / 1000),
            "total": _r(stats.hops_total * hop_tax_us / 1000),
            "share": _ratio(acc[A_HOPS] * hop_tax_us / 1000, acc[A_DURATION]),
            "per_hop_us": _r(hop_tax_us, 1),
            "records": int(records),
            "source": "option",
        }
    tax = stats.tax
    records = tax[T_RECORDS]
    if not records:
        return None
    if tax[T_HOPS]:
        per_hop: float | None = _r(tax[T_PRICED_US] / tax[T_HOPS], 1)
    else:  # no hops to weigh the price by
        per_hop = tax[T_MIN] if tax[T_MIN] == tax[T_MAX] else None
    return {
        "mean": _r(tax[T_PRICED_US] / records / 1000),
        "total": _r(tax[T_PRICED_US_TOTAL] / 1000),
        "share": _ratio(tax[T_PRICED_US] / 1000, tax[T_DURATION]),
        "per_hop_us": per_hop,
        "records": int(records),
        "source": "lines",
    }


def fixable(kind: str, site: str, direction: str | None = None) -> bool:
    """Whether a cause's hops are the project's to remove. Not: Django closing every
    response under ASGI, its own receivers of ``request_started`` /
    ``request_finished`` run through ``sync_to_async`` (docs/causes.md: nothing to do while
    Django's receivers are sync; an ``async def`` receiver of the project's run through
    ``async_to_sync`` under WSGI is its to change), and the causes whose section of
    docs/causes.md says to keep them (``Advice.keep``: ``acheck_password``)."""
    named = site_advice(kind, site)
    if named is not None and named.keep:
        return False
    if kind == "response":
        return not site.endswith(".close")
    return not (
        kind == "signal"
        and site in ("request_started", "request_finished")
        and direction != "async_to_sync"
    )


def sync_handler(interfaces: Iterable[str]) -> bool:
    """Whether requests served through ``interfaces`` (an endpoint's) all ran under a sync
    handler (WSGI, the sync test Client), where a middleware Django adapts is an async-only
    one (docs/causes.md). None known, or any other: not (the sync-only advice)."""
    names = set(interfaces)
    return bool(names) and names <= SYNC_INTERFACES


def _advice_dict(key: SiteKey, *, summary: bool = False, sync: bool = False) -> Row:
    """Which advice of docs/causes.md applies (its text too in the what-to-change list);
    ``sync``: the cause was listed under sync handlers only (:func:`sync_handler`)."""
    site, kind, direction, call_site = key
    advice = advice_for(kind, site, direction, sync_handler=sync, call_site=call_site)
    found: Row = {
        "key": advice.key,
        "title": advice.title,
        "fixable": fixable(kind, site, direction),
    }
    if summary:
        found["summary"] = advice.summary
    return found


def _cause(
    key: SiteKey, entry: list[float], row_ms: float, row_overhead: float, sync: bool = False
) -> Row:
    requests = site_requests(entry)
    overhead_requests = entry[S_OVH_REQUESTS]
    return {
        **_site_dict(key),
        "requests": _count(requests),
        "count": _count(entry[S_COUNT]),
        "ms": _r(entry[S_MS]),
        "ms_per_request": _r(entry[S_MS] / requests) if requests else 0.0,
        "share": _ratio(entry[S_MS], row_ms),
        # None: no line that listed it carried overhead_ms (written before it existed)
        "overhead_ms": _r(entry[S_OVERHEAD]) if overhead_requests else None,
        "overhead_per_request": (
            _r(entry[S_OVERHEAD] / overhead_requests) if overhead_requests else None
        ),
        "overhead_share": _ratio(entry[S_OVERHEAD], row_overhead) if overhead_requests else None,
        "advice": _advice_dict(key, sync=sync),
    }


def _left_out(entry: list[float], hops_total: float, overhead_total: float) -> Row | None:
    """Crossings in causes the lines left out (SITES_LIMIT): never silently lost."""
    if not entry[S_COUNT]:
        return None
    return {
        "requests": _count(site_requests(entry)),
        "count": _count(entry[S_COUNT]),
        "ms": _r(entry[S_MS]),
        "overhead_ms": _r(entry[S_OVERHEAD]) if entry[S_OVH_REQUESTS] else None,
        "share": _ratio(entry[S_COUNT], hops_total),
        "overhead_share": (
            _ratio(entry[S_OVERHEAD], overhead_total) if entry[S_OVH_REQUESTS] else None
        ),
    }


def endpoint_row(
    stats: EndpointStats,
    identity: Row,
    hop_tax_us: float | None = None,
    causes_listed: int = CAUSES_LISTED,
) -> Row:
    acc, counters = stats.acc, stats.counters
    records = acc[A_RECORDS]
    hop_total = stats.hop_ms_total
    overhead_total = stats.overhead_total
    overhead_records = stats.overhead_records
    overhead_hops = stats.overhead_hops
    p50, p95, p99 = stats.sketch.quantiles((0.5, 0.95, 0.99))
    ranked = sorted(stats.sites.items(), key=site_order)
    sync = sync_handler(stats.interfaces)
    causes = [
        _cause(key, entry, hop_total, overhead_total, sync) for key, entry in ranked[:causes_listed]
    ]
    other = list(stats.other_site)
    for _key, entry in ranked[causes_listed:]:
        for index in range(SITE_FIELDS):
            other[index] += entry[index]
    pinned_sum, _missing, pinned_total = stats.pinned
    pinned_records = stats.pinned_records
    pinned_by = sorted(stats.pinned_by.items(), key=lambda item: (-item[1], item[0]))
    overhead: Row | None = None
    if overhead_records:
        o50, o95, o99 = stats.overhead_sketch.quantiles((0.5, 0.95, 0.99))
        overhead = {
            "total": _r(overhead_total),
            "mean": _r(acc[A_OVERHEAD] / overhead_records),
            "p50": o50,
            "p95": o95,
            "p99": o99,
            "max": _r(stats.overhead_sketch.max),
            "records": int(overhead_records),
            # what one crossing cost here, measured: overhead over crossings
            "per_hop_us": (
                _r(acc[A_OVERHEAD] / overhead_hops * 1000, 1) if overhead_hops else None
            ),
        }
    row: Row = {
        **identity,
        "requests": _count(stats.requests),
        "records": int(records),
        "hops": {"mean": _r(acc[A_HOPS] / records), "max": int(acc[A_HOPS_MAX])},
        "overhead_ms": overhead,
        "work_ms": (
            {"total": _r(stats.work_total), "mean": _r(acc[A_WORK] / overhead_records)}
            if overhead_records
            else None
        ),
        "overhead_share": (
            _ratio(acc[A_OVERHEAD], stats.overhead_duration) if overhead_records else None
        ),
        "wait_of_overhead": (
            _ratio(stats.overhead_wait, acc[A_OVERHEAD]) if overhead_records else None
        ),
        "hop_ms": {
            "total": _r(hop_total),
            "mean": _r(acc[A_HOP_MS] / records),
            "p50": p50,
            "p95": p95,
            "p99": p99,
            "max": _r(stats.sketch.max),
        },
        "duration_ms": {"mean": _r(acc[A_DURATION] / records)},
        "wait_ms": {"mean": _r(acc[A_WAIT] / records)},
        "hop_share": _ratio(acc[A_HOP_MS], acc[A_DURATION]),
        "wait_share": _ratio(acc[A_WAIT], acc[A_HOP_MS]),
        "threads": {"mean": _r(counters[C_THREADS] / records), "max": counters[C_THREADS_MAX]},
        "new_loops": {"total": counters[C_NEW_LOOPS], "requests": counters[C_NEW_LOOP_RECORDS]},
        "max_depth": counters[C_DEPTH_MAX],
        "directions": {
            "sync_to_async": counters[C_SYNC_TO_ASYNC],
            "async_to_sync": counters[C_ASYNC_TO_SYNC],
        },
        "pinned_ms": (
            {
                "mean": _r(pinned_sum / pinned_records),
                "total": _r(pinned_total),
                "records": int(pinned_records),
                "by": [
                    {"site": site, "requests": _count(requests)}
                    for site, requests in pinned_by[:PINNED_BY_LISTED]
                ],
            }
            if pinned_records
            else None
        ),
        "hop_tax_ms": _hop_tax(stats, hop_tax_us),
        # requests, weighted as "requests" is: whole for unsampled logs
        "statuses": {name: _count(n) for name, n in sorted(stats.statuses.items())},
        "interfaces": {name: _count(n) for name, n in sorted(stats.interfaces.items())},
        "causes": causes,
        "other_causes": (
            {
                "count": _count(other[S_COUNT]),
                "ms": _r(other[S_MS]),
                "share": _ratio(other[S_MS], hop_total),
                "overhead_ms": _r(other[S_OVERHEAD]) if other[S_OVH_REQUESTS] else None,
            }
            if other[S_COUNT] or other[S_MS]
            else None
        ),
        "sites_dropped": stats.sites_dropped,
        "left_out": _left_out(stats.unattributed, stats.hops_total, overhead_total),
        "slowest": [
            {"request_id": rid, "timestamp": ts, "hop_ms": hop} for hop, rid, ts in stats.slowest
        ],
        "profiles": [
            {"request_id": rid, "timestamp": ts, "hop_ms": hop, "profile": profile}
            for hop, rid, ts, profile in stats.profiles
        ],
    }
    row["concurrency"] = threads.endpoint_fields(stats)
    return row


def _round_quantiles(row: Row) -> Row:
    for part in ("hop_ms", "overhead_ms"):
        values = row[part]
        if values is None:
            continue
        for name in ("p50", "p95", "p99"):
            if values[name] is not None:
                values[name] = _r(values[name])
    return row


def _sites_across(
    partial: Partial, endpoints: list[tuple[GroupKey, EndpointStats, Row]] | None = None
) -> tuple[dict[SiteKey, list[Any]], list[float], list[float], float, float]:
    """Every cause summed over endpoints: site -> [entry, [(overhead or ms, identity)],
    whether every endpoint that listed it ran under a sync handler (:func:`sync_handler`)];
    the summed "other" and left-out entries; all hop time; all overhead."""
    sites: dict[SiteKey, list[Any]] = {}
    other = [0.0] * SITE_FIELDS
    left = [0.0] * SITE_FIELDS
    total_ms = total_overhead = 0.0
    groups = endpoints if endpoints is not None else _regroup(partial, "route")
    for _group, stats, identity in groups:
        total_ms += stats.hop_ms_total
        total_overhead += stats.overhead_total
        for index in range(SITE_FIELDS):
            other[index] += stats.other_site[index]
            left[index] += stats.unattributed[index]
        sync = sync_handler(stats.interfaces)
        for key, entry in stats.sites.items():
            summed = sites.get(key)
            if summed is None:
                summed = sites[key] = [[0.0] * SITE_FIELDS, [], True]
            for index in range(SITE_FIELDS):
                summed[0][index] += entry[index]
            summed[1].append((entry[S_OVERHEAD] or entry[S_MS], identity))
            summed[2] = summed[2] and sync
    return sites, other, left, total_ms, total_overhead


def sync_handler_causes(partial: Partial) -> frozenset[SiteKey]:
    """The causes :func:`site_rows` advises as a sync handler's (:func:`_sites_across`'s
    flag), for the HTML page, which counts the causes apart (picture.Picture)."""
    sites = _sites_across(partial)[0]
    return frozenset(key for key, (_entry, _endpoints, sync) in sites.items() if sync)


def site_rows(partial: Partial) -> tuple[list[Row], Row | None, Row | None]:
    """Causes across all endpoints (--by site), the sum of every endpoint's "other",
    and the crossings in causes the lines left out."""
    sites, other, left, total_hop_ms, total_overhead = _sites_across(partial)
    hops_total = sum(stats.hops_total for stats in partial.endpoints.values())
    rows = []
    for key, (entry, endpoints, sync) in sites.items():
        endpoints.sort(key=lambda item: (-at_resolution(item[0]), item[1]["label"]))
        requests, count = entry[S_REQUESTS], entry[S_COUNT]
        cause = _cause(key, entry, total_hop_ms, total_overhead, sync)
        rows.append(
            {
                **_site_dict(key),
                "requests": cause["requests"],
                "records": _count(requests),  # as logged: what --min-requests counts
                "endpoints": len(endpoints),
                "count": cause["count"],
                "ms": cause["ms"],
                "ms_per_request": cause["ms_per_request"],
                "count_per_request": _r(count / site_requests(entry)) if requests else 0.0,
                "share": cause["share"],
                "overhead_ms": cause["overhead_ms"],
                "overhead_per_request": cause["overhead_per_request"],
                "overhead_share": cause["overhead_share"],
                "advice": cause["advice"],
                "top_endpoints": [
                    {
                        "label": identity["label"],
                        "method": identity["method"],
                        "route": identity["route"],
                        "view": identity["view"],
                        "ms": _r(share),
                    }
                    for share, identity in endpoints[:ENDPOINTS_PER_SITE]
                ],
            }
        )
    other_row = (
        {
            "count": _count(other[S_COUNT]),
            "ms": _r(other[S_MS]),
            "share": _ratio(other[S_MS], total_hop_ms),
            "overhead_ms": _r(other[S_OVERHEAD]) if other[S_OVH_REQUESTS] else None,
        }
        if other[S_COUNT] or other[S_MS]
        else None
    )
    return rows, other_row, _left_out(left, hops_total, total_overhead)


def fixable_causes(
    partial: Partial,
    endpoints: list[tuple[GroupKey, EndpointStats, Row]] | None = None,
    limit: int = FIXABLE_LISTED,
) -> list[Row]:
    """The causes to change first: fixable ones, by crossing overhead over the logged
    traffic (by hop time when no line carries overhead), with the advice for each."""
    sites, _other, _left, total_ms, total_overhead = _sites_across(partial, endpoints)
    found: list[tuple[SiteKey, list[float], Row]] = []
    hooks: list[tuple[SiteKey, list[float], list[Any]]] = []
    for key, (entry, endpoints_of, sync) in sites.items():
        site, kind, direction, _call_site = key
        if not fixable(kind, site, direction):
            continue
        if advice_for(kind, site, direction, sync_handler=sync) is MIDDLEWARE_HOOK:
            hooks.append((key, entry, endpoints_of))  # Django's own: one item for them all
            continue
        cause = _cause(key, entry, total_ms, total_overhead)
        cause["endpoints"] = len(endpoints_of)
        cause["advice"] = _advice_dict(key, summary=True, sync=sync)
        found.append((key, entry, cause))
    if hooks:
        cause, key, entry = _django_hooks(hooks, total_ms, total_overhead)
        found.append((key, entry, cause))
    # as a row's causes: most overhead, then most time, at the log's resolution, then name
    found.sort(key=lambda item: site_order((item[0], item[1])))
    return [cause for _key, _entry, cause in found[:limit]]


def _django_hooks(
    hooks: list[tuple[SiteKey, list[float], list[Any]]], total_ms: float, total_overhead: float
) -> tuple[Row, SiteKey, list[float]]:
    """Django's own middleware hooks as one cause: their crossings, time and overhead
    summed; ``requests`` (and the per-request figures) over the requests that listed the
    most-listed hook, those every request passes; ``sites``, each hook, most overhead
    first (:func:`site_order`); ``endpoints``, the endpoints that listed any. With the
    item's key and summed entry, which rank it among the other causes."""
    summed = [0.0] * SITE_FIELDS
    # its requests as logged and its sampled lines' excess: both of the same hook
    most = max((entry for _key, entry, _endpoints in hooks), key=site_requests)
    for _key, entry, _endpoints in hooks:
        for index in range(SITE_FIELDS):
            if index in (S_REQUESTS, S_EXTRA_REQUESTS):
                summed[index] = most[index]
            elif index == S_OVH_REQUESTS:
                summed[index] = max(summed[index], entry[index])
            else:
                summed[index] += entry[index]
    hooks.sort(key=lambda hook: site_order((hook[0], hook[1])))
    first = hooks[0][0]
    key: SiteKey = (DJANGO_HOOKS, first[1], first[2], None)
    cause = _cause(key, summed, total_ms, total_overhead)
    cause["sites"] = [key[0] for key, _entry, _endpoints in hooks[:DJANGO_HOOKS_NAMED]]
    cause["hooks"] = len(hooks)
    cause["endpoints"] = len(
        {id(identity) for _key, _entry, endpoints in hooks for _value, identity in endpoints}
    )
    cause["advice"] = {
        "key": MIDDLEWARE_HOOK.key,
        "title": MIDDLEWARE_HOOK.title,
        "fixable": True,
        "summary": MIDDLEWARE_HOOK.summary,
    }
    return cause, key, summed


def _summary_hop_tax(partial: Partial, hop_tax_us: float | None) -> Row | None:
    if hop_tax_us is not None:
        return {"source": "option", "min_us": hop_tax_us, "max_us": hop_tax_us, "records": None}
    records = 0.0
    low, high = math.inf, 0.0
    for stats in partial.endpoints.values():
        tax = stats.tax
        if tax[T_RECORDS]:
            records += tax[T_RECORDS]
            low = min(low, tax[T_MIN])
            high = max(high, tax[T_MAX])
    if not records:
        return None
    return {"source": "lines", "min_us": low, "max_us": high, "records": int(records)}


def _summary(partial: Partial, sources: list[str], hop_tax_us: float | None = None) -> Row:
    skipped = sum(partial.skipped.values())
    filtered = sum(partial.filtered.values())
    return {
        "files": sum(1 for name in sources if name != "<stdin>"),
        "stdin": "<stdin>" in sources,
        "bytes": partial.bytes,
        "lines": partial.lines,
        "records": partial.records,
        "other_lines": partial.other_lines,
        "skipped": skipped,
        "skipped_by_reason": dict(sorted(partial.skipped.items())),
        # records counted without a malformed part (sites, an optional field): part -> records
        "parts_lost": dict(sorted(partial.parts_lost.items())),
        "filtered": filtered,
        "filtered_by_reason": dict(sorted(partial.filtered.items())),
        "reported": partial.records - filtered,
        "hopwatch_errors": partial.hopwatch_errors,
        "first_timestamp": partial.first_timestamp or None,
        "last_timestamp": partial.last_timestamp or None,
        "truncated_inputs": sorted(partial.truncated_inputs),
        "hop_tax": _summary_hop_tax(partial, hop_tax_us),
        **_summary_overhead(partial),
    }


def _summary_overhead(partial: Partial) -> Row:
    """Crossing overhead over the whole report, and what the lines left out."""
    overhead = logged_overhead = hops = records = requests = 0.0
    left = [0.0] * SITE_FIELDS
    hops_total = 0.0
    for stats in partial.endpoints.values():
        overhead += stats.overhead_total
        logged_overhead += stats.acc[A_OVERHEAD]
        hops += stats.overhead_hops
        records += stats.overhead_records
        requests += stats.requests
        hops_total += stats.hops_total
        for index in range(SITE_FIELDS):
            left[index] += stats.unattributed[index]
    return {
        # records that carry overhead_ms (the others: hopwatch before it; their overhead n/a)
        "overhead_records": int(records),
        "overhead_ms": _r(overhead) if records else None,
        # as each row's per_hop_us: the logged lines' overhead over their crossings (a
        # ratio, so unweighted on both sides, as means and shares are)
        "overhead_per_hop_us": _r(logged_overhead / hops * 1000, 1) if hops else None,
        "requests": _count(requests),
        "sites_dropped": sum(stats.sites_dropped for stats in partial.endpoints.values()),
        "left_out": _left_out(left, hops_total, overhead),
    }


def _sort_and_cut(rows: list[Row], key: Callable[[Row], float], top: int) -> list[Row]:
    """Largest ``key`` first (the rows' figures are rounded as shown: a tie in the table
    is a tie here), then an endpoint by its label, a cause as a row's causes rank
    (:func:`site_order`: most overhead, then most time, then by name; one site at two
    call sites or in two directions is two rows), the same for every --jobs."""

    def order(row: Row) -> tuple[Any, ...]:
        if "label" in row:
            return (-key(row), str(row["label"]))
        call_site = row["call_site"]
        return (
            -key(row),
            -(row["overhead_ms"] or 0.0),
            -row["ms"],
            row["site"],
            row["kind"],
            row["direction"],
            call_site is not None,
            call_site or "",
        )

    rows.sort(key=order)
    return rows[:top] if top else rows


def _any_overhead(partial: Partial) -> bool:
    return any(stats.overhead_records for stats in partial.endpoints.values())


def _find(
    groups: list[tuple[GroupKey, EndpointStats, Row]], wanted: str
) -> tuple[GroupKey, EndpointStats, Row]:
    """The row ``--endpoint`` names: its label (``GET /x/``, a view), else its route if
    only one row has it. NoSuchEndpoint says which labels come close."""
    exact = [group for group in groups if group[2]["label"] == wanted]
    if not exact:
        exact = [group for group in groups if group[2]["route"] == wanted]
    if len(exact) == 1:
        return exact[0]
    labels = sorted(group[2]["label"] for group in groups)
    # the labels come from the logs: escaped as the tables escape them (text.clean)
    if exact:
        choices = ", ".join(map(clean, sorted(group[2]["label"] for group in exact)))
        raise NoSuchEndpoint(f"--endpoint {wanted!r} matches several rows: {choices}")
    import difflib

    close = difflib.get_close_matches(wanted, labels, n=3, cutoff=0.5)
    hint = f" (closest: {', '.join(map(clean, close))})" if close else ""
    raise NoSuchEndpoint(f"no endpoint {wanted!r} in the logs read{hint}")


def build_document(partial: Partial, options: ReportOptions, sources: list[str]) -> Row:
    """The report as a dict: the JSON output, and the input of every renderer."""
    options.check()
    sort = options.sort
    if sort == DEFAULT_SORT and not _any_overhead(partial):
        sort = FALLBACK_SORT  # lines from before overhead_ms: rank by what they have
    document: Row = {
        "report": "hopwatch",
        "version": REPORT_VERSION,
        "by": options.by,
        "sort": sort,
        "top": options.top,
        "min_requests": options.min_requests,
        "filters": options.filters or {},
        "relative_accuracy": ALPHA,
        "summary": _summary(partial, sources, options.hop_tax_us),
    }
    if options.by == "site":
        rows, other, _left = site_rows(partial)
        shown = [row for row in rows if row["records"] >= options.min_requests]
        document["groups"] = {"total": len(rows), "below_min_requests": len(rows) - len(shown)}
        document["rows"] = _sort_and_cut(shown, SITE_SORTS[sort], options.top)
        document["other_causes"] = other
        document["fixable"] = fixable_causes(partial)
    elif options.endpoint is not None:
        groups = _regroup(partial, options.by)
        chosen = _find(groups, options.endpoint)
        _group, stats, identity = chosen
        # every cause kept for it (up to SITE_CAP), not only the first CAUSES_LISTED
        row = _round_quantiles(endpoint_row(stats, identity, options.hop_tax_us, SITE_CAP))
        document["endpoint"] = options.endpoint
        document["groups"] = {"total": len(groups), "below_min_requests": 0}
        document["rows"] = [row]
        document["fixable"] = fixable_causes(partial, [chosen])
    else:
        groups = _regroup(partial, options.by)
        rows = [
            _round_quantiles(endpoint_row(stats, identity, options.hop_tax_us))
            for _group, stats, identity in groups
        ]
        shown = [row for row in rows if row["records"] >= options.min_requests]
        document["groups"] = {"total": len(rows), "below_min_requests": len(rows) - len(shown)}
        document["rows"] = _sort_and_cut(shown, ENDPOINT_SORTS[sort], options.top)
        document["fixable"] = fixable_causes(partial, groups)
    for rank, row in enumerate(document["rows"], 1):
        row["rank"] = rank
    document["rows"] = [{"rank": row.pop("rank"), **row} for row in document["rows"]]
    document["pool_over_time"] = threads.pool_document(partial.pool)
    finite: Row = _finite(document)  # every value is finite by construction; never trust that
    return finite


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value
