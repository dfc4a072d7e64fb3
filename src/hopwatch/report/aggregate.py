"""Per-endpoint accumulation with bounded memory, and mergeable partial results.

A :class:`Partial` is what one process makes of its share of the input; partials
from several processes merge into one (:meth:`Partial.merge`), and
:mod:`hopwatch.report.rank` turns the merged result into report rows.

Endpoints are kept at the finest grain, (method, route, view), so that the
report can be regrouped by route, by view or by site without reading the logs
again. Everything that could grow with hostile input is capped:

* at most :data:`ENDPOINT_CAP` endpoints; later ones go to one overflow endpoint. A
  reader keeps the first ones it reads; :meth:`Partial.merge` keeps, of the endpoints of
  both partials, the ENDPOINT_CAP first in key order (:func:`endpoint_order`), so that
  partials merge to the same result in any order and grouping;
* at most twice :data:`SITE_CAP` causes per endpoint: one more makes it keep the
  :data:`SITE_CAP` largest (by overhead, then time) and sum the rest into that
  endpoint's "other" cause. Folding and merging never trim, so an endpoint with no
  more distinct causes than that in all the input has every one exact, however the
  input was split between processes and in whatever order their partials merge;
* the hop time distribution is a fixed-size :class:`~hopwatch.report.sketch.Sketch`;
* a few slowest requests and profiled requests per endpoint.

The scanner's hot loop counts its records by (status, interface, pinned_by) in
``raw_status`` and
appends each site's ``ms`` to a list under its full key, count included, in
``raw_sites`` (one dict lookup and one append per site); :meth:`EndpointStats.fold` turns those
into the canonical fields. Partials are always folded before they are merged or
pickled.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import Any, Final

from hopwatch.report.parse import Record, micros_of, timestamp_text
from hopwatch.report.sketch import Sketch

ENDPOINT_CAP: Final = 2000
SITE_CAP: Final = 64
#: A raw dict past this many keys is folded (checked once per block of lines).
RAW_CAP: Final = 512
SLOWEST_KEPT: Final = 3
PROFILES_KEPT: Final = 20
#: Distinct interface names and pinned_by sites kept per endpoint; others are "(other)".
INTERFACE_CAP: Final = 16
PINNED_BY_CAP: Final = 16

# Endpoint keys: (kind, method, route, view). Requests without a resolved view
# (unmatched paths, requests answered by middleware) would make one endpoint per
# raw path, so they are collapsed into one "no view" endpoint per method.
NORMAL: Final = 0
NO_VIEW: Final = 1
OVERFLOW: Final = 2
EndpointKey = tuple[int, str, str, str | None]
OVERFLOW_KEY: Final[EndpointKey] = (OVERFLOW, "", "", None)

# SiteKey: (site, kind, direction, call_site)
SiteKey = tuple[str, str, str, str | None]

# Indices into EndpointStats.acc, the hot accumulator the scanner updates inline.
A_RECORDS: Final = 0  # lines read for this endpoint
# Sampled lines stand for 1 / sample_rate requests each. Unsampled logs are the
# norm, so only the excess over 1 is accumulated: requests = records + extra.
A_EXTRA_REQUESTS: Final = 1  # sum of (1 / sample_rate - 1)
A_DURATION: Final = 2  # sum of duration_ms
A_HOP_MS: Final = 3  # sum of hop_ms
A_WAIT: Final = 4  # sum of wait_ms
A_HOPS: Final = 5  # sum of hops
A_HOPS_MAX: Final = 6
A_SLOWEST_FLOOR: Final = 7  # hop_ms a request must beat to enter the slowest list
A_EXTRA_HOP_MS: Final = 8  # sum of hop_ms * (1 / sample_rate - 1)
A_EXTRA_HOPS: Final = 9  # sum of hops * (1 / sample_rate - 1)
# Crossing overhead and the work inside crossings, over the records that carry them
# (lines from before hopwatch wrote overhead_ms do not: their overhead is unknown).
# The hot loop adds only the overhead and work of a record that has them; the few
# that lack them (older lines) are counted apart, and the totals of the records that
# carry overhead are derived (see EndpointStats.overhead_records and friends).
A_OVERHEAD: Final = 10  # sum of overhead_ms
A_WORK: Final = 11  # sum of work_ms
A_NO_OVH_RECORDS: Final = 12  # records without overhead_ms
A_NO_OVH_DURATION: Final = 13  # their sum of duration_ms
A_NO_OVH_WAIT: Final = 14  # their sum of wait_ms
A_EXTRA_OVERHEAD: Final = 15  # sum of overhead_ms * (1 / sample_rate - 1)
A_EXTRA_WORK: Final = 16  # sum of work_ms * (1 / sample_rate - 1)
A_NO_OVH_HOPS: Final = 17  # their sum of hops
#: the floor request's timestamp (µs since 1970, UTC): as slow as the floor and no
#: later also enters, as the list's order (slowest, earliest, id) has it
A_SLOWEST_FLOOR_AT: Final = 18

# Indices into EndpointStats.tax: the records that carry hop_tax_us (the host's
# price of one hop), and their hops priced at it.
T_PRICED_US: Final = 0  # sum of hops * hop_tax_us
T_RECORDS: Final = 1
T_PRICED_US_TOTAL: Final = 2  # the same, weighted by 1 / sample_rate
T_HOPS: Final = 3  # sum of hops
T_DURATION: Final = 4  # sum of duration_ms
T_MIN: Final = 5  # the lowest and highest hop_tax_us seen
T_MAX: Final = 6

# Indices into EndpointStats.counters, folded from the raw counter spans.
C_SYNC_TO_ASYNC: Final = 0
C_ASYNC_TO_SYNC: Final = 1
C_THREADS: Final = 2
C_THREADS_MAX: Final = 3
C_NEW_LOOPS: Final = 4
C_NEW_LOOP_RECORDS: Final = 5  # records with at least one new loop
C_DEPTH_MAX: Final = 6

# Indices into a site accumulator list; every value but S_REQUESTS is weighted by
# 1 / sample_rate. As for an endpoint (A_RECORDS, A_EXTRA_REQUESTS), the requests that
# listed the site are counted as logged (each line one) and the excess of sampled lines
# apart, so that the C accumulation adds 1 and never touches S_EXTRA_REQUESTS: the
# weighted requests are site_requests(entry); --min-requests counts S_REQUESTS.
S_REQUESTS: Final = 0  # logged requests that listed the site (lines; not weighted)
S_COUNT: Final = 1  # crossings
S_MS: Final = 2
S_OVERHEAD: Final = 3  # their crossing overhead, from the entries that carry it
S_OVH_REQUESTS: Final = 4  # requests whose entry carried overhead_ms
S_EXTRA_REQUESTS: Final = 5  # sum of (1 / sample_rate - 1) over the lines that listed it
SITE_FIELDS: Final = 6


def site_requests(entry: list[float]) -> float:
    """The requests (weighted by 1 / sample_rate) that listed a site entry's cause."""
    return entry[S_REQUESTS] + entry[S_EXTRA_REQUESTS]



def new_site() -> list[float]:
    return [0.0] * SITE_FIELDS


#: The log's resolution: its ms figures have 3 decimals (microseconds).
MS_DIGITS: Final = 3


def at_resolution(ms: float) -> float:
    """A sum of logged ms as the log resolves it, and the report shows it. The same
    figures summed in another order (the C accumulation adds each in turn, the Python
    one folds them with fsum; --jobs merges partial sums in whatever order its readers
    finish) can differ in their last bits: 0.1 + 0.2 + 0.3 is 0.6000000000000001. Ranks
    compare sums through this, so that what ties in the log ties in the ranking, and the
    next key decides, the same way for every path and every --jobs. Sums of logged
    figures lie on the microsecond grid, so they round alike whatever the order; a
    sampled log's weighted sum (a rate of 0.4 weighs 2.5) can lie exactly on a half
    microsecond, and that one can round either way between split reads (docs/report.md,
    "Sort keys")."""
    return round(ms, MS_DIGITS)


def site_order(
    item: tuple[SiteKey, list[float]],
) -> tuple[float, float, str, str, str, bool, str]:
    """Largest overhead first, then largest time (both at the log's resolution:
    :func:`at_resolution`), then by name (site, kind, direction, call site): a total
    order (call_site may be None), the same however the sums were added up. Causes from
    lines without overhead have none and rank by time. Once per sort of a row's causes,
    never per line."""
    (site, kind, direction, call_site), entry = item
    return (
        -at_resolution(entry[S_OVERHEAD]),
        -at_resolution(entry[S_MS]),
        site,
        kind,
        direction,
        call_site is not None,
        call_site or "",
    )


def endpoint_key(method: str, route: str, view: str | None) -> EndpointKey:
    if view is None:
        return (NO_VIEW, method, "", None)
    return (NORMAL, method, route, view)


# A site's key with its count, as the scanner counts it: (site, kind, direction,
# call_site, count).
RawSiteKey = tuple[str, str, str, str | None, int]


def _profile_order(entry: tuple[float, str, str, str]) -> tuple[float, str, str, str]:
    hop_ms, request_id, timestamp, profile = entry
    return (-hop_ms, timestamp, request_id, profile)


def joins_slowest(acc: list[float], hop_ms: float, moment: datetime) -> bool:
    """Whether a request is offered to its endpoint's slowest list: slower than the
    floor, or as slow and no later (a tie then goes by time and id, as in a merge, so
    the list is the same however the input is split; the scanners inline this)."""
    floor = acc[A_SLOWEST_FLOOR]
    return hop_ms > floor or (hop_ms == floor and micros_of(moment) <= acc[A_SLOWEST_FLOOR_AT])


class EndpointStats:
    """Everything the report needs about one (method, route, view)."""

    __slots__ = (
        "acc",
        "concurrency",
        "counters",
        "interfaces",
        "key",
        "other_site",
        "overhead_sketch",
        "pinned",
        "pinned_by",
        "profiles",
        "raw_sites",
        "raw_status",
        "sites",
        "sites_dropped",
        "sketch",
        "slowest",
        "statuses",
        "tax",
        "unattributed",
    )

    def __init__(self, key: EndpointKey) -> None:
        self.key = key
        # A_RECORDS to A_NO_OVH_HOPS, then A_SLOWEST_FLOOR_AT (none until the list is full)
        self.acc: list[float] = [0, 0.0, 0.0, 0.0, 0.0, 0, 0, -1.0] + [0.0] * 10 + [math.inf]
        self.sketch = Sketch()  # hop_ms per request
        self.overhead_sketch = Sketch()  # overhead_ms per request that carries it
        # (status, interface, pinned_by) -> records the scanner added (acc[A_RECORDS] too)
        self.raw_status: dict[tuple[int | None, str, str | None], int] = {}
        # -> the ms and overhead_ms (or None) of each unweighted request that listed it,
        # in turn: [ms, overhead, ms, overhead, ...] (requests: half the list's length)
        self.raw_sites: defaultdict[RawSiteKey, list[float | None]] = defaultdict(list)
        self.counters: list[int] = [0, 0, 0, 0, 0, 0, 0]
        # requests (weighted by 1 / sample_rate, as requests are) per status ("200", or
        # "none" when no response) and per interface
        self.statuses: dict[str, float] = {}
        self.interfaces: dict[str, float] = {}
        self.sites: dict[SiteKey, list[float]] = {}
        self.other_site: list[float] = new_site()
        # crossings in causes the lines themselves left out (SITES_LIMIT): a site entry
        self.unattributed: list[float] = new_site()
        self.slowest: list[tuple[float, str, str]] = []  # (hop_ms, request_id, timestamp)
        self.profiles: list[tuple[float, str, str, str]] = []  # ... plus the profile name
        # pinned_ms: sum, records *without* the field (lines from before it existed; counting
        # those spares the hot loop any work for the usual 0.0), weighted sum (the total)
        self.pinned: list[float] = [0.0, 0, 0.0]
        self.pinned_by: dict[str, float] = {}  # site -> requests it pinned (weighted)
        self.sites_dropped = 0
        self.tax: list[float] = [0.0, 0, 0.0, 0, 0.0, math.inf, 0.0]
        # records with db_connections, their sum and max; records with max_in_flight,
        # its sum and max, and the sum of concurrent_ms (hopwatch.report.threads reads it)
        self.concurrency: list[float] = [0, 0, 0, 0, 0, 0, 0.0]

    def add_concurrency(
        self, db_connections: int, max_in_flight: int | None, concurrent_ms: float | None
    ) -> None:
        """A record that carries the thread fields (the scanner calls this too)."""
        c = self.concurrency
        c[0] += 1
        c[1] += db_connections
        if db_connections > c[2]:
            c[2] = db_connections
        if max_in_flight is not None:
            c[3] += 1
            c[4] += max_in_flight
            if max_in_flight > c[5]:
                c[5] = max_in_flight
            c[6] += concurrent_ms or 0.0

    # --- adding ------------------------------------------------------------------
    def add_record(self, record: Record) -> None:
        """Add any record (the scanner inlines this for records without optional values)."""
        acc = self.acc
        hop_ms = record.hop_ms
        weight = 1.0 / record.sample_rate
        acc[A_RECORDS] += 1
        acc[A_EXTRA_REQUESTS] += weight - 1.0
        acc[A_EXTRA_HOP_MS] += hop_ms * (weight - 1.0)
        acc[A_EXTRA_HOPS] += record.hops * (weight - 1.0)
        acc[A_DURATION] += record.duration_ms
        acc[A_HOP_MS] += hop_ms
        acc[A_WAIT] += record.wait_ms
        acc[A_HOPS] += record.hops
        if record.hops > acc[A_HOPS_MAX]:
            acc[A_HOPS_MAX] = record.hops
        self.sketch.add(hop_ms)
        overhead = record.overhead_ms
        if overhead is not None:
            work = record.work_ms or 0.0
            acc[A_OVERHEAD] += overhead
            acc[A_WORK] += work
            acc[A_EXTRA_OVERHEAD] += overhead * (weight - 1.0)
            acc[A_EXTRA_WORK] += work * (weight - 1.0)
            self.overhead_sketch.add(overhead)
        else:
            self.lacks_overhead(record.duration_ms, record.wait_ms, record.hops)
        self._add_counters(
            1,
            record.sync_to_async,
            record.async_to_sync,
            record.threads,
            record.new_loops,
            record.max_depth,
        )
        self._add_status(weight, record.status, record.interface)
        counted = 0
        for site in record.sites:
            site_overhead = site.overhead_ms
            self._add_site(
                (site.site, site.kind, site.direction, site.call_site),
                1.0,
                site.count * weight,
                site.ms * weight,
                0.0 if site_overhead is None else site_overhead * weight,
                0.0 if site_overhead is None else weight,
                weight - 1.0,
            )
            counted += site.count
        # a line that left causes out (SITES_LIMIT) or lost its sites: the rest of its hops
        if (record.sites_dropped or not record.sites) and record.hops > counted:
            self.add_left_out(record, counted, weight)
        timestamp = timestamp_text(record.timestamp)
        if joins_slowest(acc, hop_ms, record.timestamp):
            self.offer_slowest(hop_ms, record.request_id, timestamp)
        if record.pinned_ms is None:
            self.pinned[1] += 1
        if record.hop_tax_us is not None:
            self.add_tax(record.hops, record.hop_tax_us, weight, record.duration_ms)
        if record.db_connections is not None:
            self.add_concurrency(record.db_connections, record.max_in_flight, record.concurrent_ms)
        self.add_optional(
            hop_ms,
            record.request_id,
            timestamp,
            weight,
            record.sites_dropped,
            record.pinned_ms,
            record.pinned_by,
            record.profile,
        )

    def add_optional(
        self,
        hop_ms: float,
        request_id: str,
        timestamp: str,
        weight: float,
        sites_dropped: int,
        pinned_ms: float | None,
        pinned_by: str | None,
        profile: str | None,
    ) -> None:
        self.sites_dropped += sites_dropped
        if pinned_ms is not None:
            self.pinned[0] += pinned_ms
            self.pinned[2] += pinned_ms * weight
        if pinned_by is not None:
            self.add_pinned_by(pinned_by, weight)
        if profile is not None:
            profiles = self.profiles
            entry = (hop_ms, request_id, timestamp, profile)
            # slowest first; ties by time, id, name: the same choice however the input is split
            if len(profiles) < PROFILES_KEPT or _profile_order(entry) < _profile_order(
                profiles[-1]
            ):
                profiles.append(entry)
                profiles.sort(key=_profile_order)
                del profiles[PROFILES_KEPT:]

    def lacks_overhead(self, duration_ms: float, wait_ms: float, hops: int) -> None:
        """A record from before overhead_ms (the scanner calls this too)."""
        acc = self.acc
        acc[A_NO_OVH_RECORDS] += 1
        acc[A_NO_OVH_DURATION] += duration_ms
        acc[A_NO_OVH_WAIT] += wait_ms
        acc[A_NO_OVH_HOPS] += hops

    @property
    def overhead_records(self) -> float:
        """Records that carry overhead_ms (call after folding: A_RECORDS is folded in)."""
        return self.acc[A_RECORDS] - self.acc[A_NO_OVH_RECORDS]

    @property
    def overhead_duration(self) -> float:
        return self.acc[A_DURATION] - self.acc[A_NO_OVH_DURATION]

    @property
    def overhead_wait(self) -> float:
        return self.acc[A_WAIT] - self.acc[A_NO_OVH_WAIT]

    @property
    def overhead_hops(self) -> float:
        return self.acc[A_HOPS] - self.acc[A_NO_OVH_HOPS]

    def add_left_out(self, record: Record, counted: int, weight: float) -> None:
        """A record whose sites list fewer crossings than it made: the causes the line
        left out (SITES_LIMIT, or a malformed part), counted here, never lost."""
        left = self.unattributed
        left[S_REQUESTS] += 1.0
        left[S_EXTRA_REQUESTS] += weight - 1.0
        left[S_COUNT] += (record.hops - counted) * weight
        listed_ms = math.fsum(site.ms for site in record.sites)
        left[S_MS] += max(record.hop_ms - listed_ms, 0.0) * weight
        overhead = record.overhead_ms
        if overhead is not None:
            listed = math.fsum(site.overhead_ms or 0.0 for site in record.sites)
            left[S_OVERHEAD] += max(overhead - listed, 0.0) * weight
            left[S_OVH_REQUESTS] += weight

    def add_tax(self, hops: int, hop_tax_us: float, weight: float, duration_ms: float) -> None:
        """A record that carries hop_tax_us (the scanner inlines this)."""
        tax = self.tax
        priced = hops * hop_tax_us
        tax[T_PRICED_US] += priced
        tax[T_RECORDS] += 1
        tax[T_PRICED_US_TOTAL] += priced * weight
        tax[T_HOPS] += hops
        tax[T_DURATION] += duration_ms
        if hop_tax_us < tax[T_MIN]:
            tax[T_MIN] = hop_tax_us
        if hop_tax_us > tax[T_MAX]:
            tax[T_MAX] = hop_tax_us

    def offer_slowest(self, hop_ms: float, request_id: str, timestamp: str) -> None:
        slowest = self.slowest
        slowest.append((hop_ms + 0.0, request_id, timestamp))  # + 0.0: no -0.0 shown
        slowest.sort(key=lambda entry: (-entry[0], entry[2], entry[1]))
        del slowest[SLOWEST_KEPT:]
        if len(slowest) == SLOWEST_KEPT:
            hop_floor, _request_id, at = slowest[-1]
            self.acc[A_SLOWEST_FLOOR] = hop_floor
            self.acc[A_SLOWEST_FLOOR_AT] = float(micros_of(datetime.fromisoformat(at)))

    def _add_counters(
        self, records: int, s2a: int, a2s: int, threads: int, loops: int, depth: int
    ) -> None:
        c = self.counters
        c[C_SYNC_TO_ASYNC] += s2a * records
        c[C_ASYNC_TO_SYNC] += a2s * records
        c[C_THREADS] += threads * records
        if threads > c[C_THREADS_MAX]:
            c[C_THREADS_MAX] = threads
        c[C_NEW_LOOPS] += loops * records
        if loops:
            c[C_NEW_LOOP_RECORDS] += records
        if depth > c[C_DEPTH_MAX]:
            c[C_DEPTH_MAX] = depth

    def add_pinned_by(self, site: str, requests: float) -> None:
        pinned_by = self.pinned_by
        if site not in pinned_by and len(pinned_by) >= PINNED_BY_CAP:
            site = "(other)"
        pinned_by[site] = pinned_by.get(site, 0.0) + requests

    def _add_status(self, requests: float, status: int | None, interface: str) -> None:
        name = "none" if status is None else str(status)
        self.statuses[name] = self.statuses.get(name, 0) + requests
        interfaces = self.interfaces
        if interface not in interfaces and len(interfaces) >= INTERFACE_CAP:
            interface = "(other)"
        interfaces[interface] = interfaces.get(interface, 0) + requests

    def _add_site(
        self,
        key: SiteKey,
        requests: float,
        count: float,
        ms: float,
        overhead: float = 0.0,
        overhead_requests: float = 0.0,
        extra_requests: float = 0.0,
    ) -> None:
        """``requests`` as logged, ``extra_requests`` the excess of sampled lines, the
        other figures weighted (a site entry's fields, in their order)."""
        entry = self.sites.get(key)
        if entry is None:
            if len(self.sites) >= 2 * SITE_CAP:
                self._trim_sites()
            entry = self.sites[key] = new_site()
        entry[S_REQUESTS] += requests
        entry[S_COUNT] += count
        entry[S_MS] += ms
        entry[S_OVERHEAD] += overhead
        entry[S_OVH_REQUESTS] += overhead_requests
        entry[S_EXTRA_REQUESTS] += extra_requests

    def _trim_sites(self) -> None:
        """Keep the SITE_CAP largest causes (:func:`site_order`); sum the rest into "other"."""
        if len(self.sites) <= SITE_CAP:
            return
        ranked = sorted(self.sites.items(), key=site_order)
        self.sites = dict(ranked[:SITE_CAP])
        other = self.other_site
        for _key, entry in ranked[SITE_CAP:]:
            for index in range(SITE_FIELDS):
                other[index] += entry[index]

    # --- folding and merging -----------------------------------------------------------
    def needs_fold(self) -> bool:
        return len(self.raw_sites) > RAW_CAP or len(self.raw_status) > RAW_CAP

    def fold(self) -> None:
        """Turn the scanner's raw counts into the canonical fields."""
        if self.raw_status:
            for (status, interface, pinned_by), records in self.raw_status.items():
                self.acc[A_RECORDS] += records
                self._add_status(records, status, interface)
                if pinned_by is not None:
                    self.add_pinned_by(pinned_by, records)
            self.raw_status = {}
        if self.raw_sites:
            for (site, kind, direction, call_site, count), values in self.raw_sites.items():
                requests = len(values) // 2
                overheads = values[1::2]
                if None in overheads:  # lines from before overhead_ms: rare, so checked first
                    overheads = [value for value in overheads if value is not None]
                # (no None left in overheads, nor ever in values[0::2])
                # fsum: correctly rounded, so the same on every Python (3.12's
                # sum() of floats compensates, 3.11's does not).
                self._add_site(
                    (site, kind, direction, call_site),
                    requests,
                    requests * count,
                    math.fsum(values[0::2]),  # type: ignore[arg-type]
                    math.fsum(overheads),  # type: ignore[arg-type]
                    len(overheads),
                )
            self.raw_sites.clear()

    @property
    def pinned_records(self) -> float:
        """Records that had a pinned_ms field."""
        return self.acc[A_RECORDS] - self.pinned[1]

    @property
    def hops_total(self) -> float:
        """Summed hops of the requests the records stand for."""
        return self.acc[A_HOPS] + self.acc[A_EXTRA_HOPS]

    @property
    def requests(self) -> float:
        """The requests the records stand for (sampled lines count 1 / sample_rate)."""
        return self.acc[A_RECORDS] + self.acc[A_EXTRA_REQUESTS]

    @property
    def hop_ms_total(self) -> float:
        """Summed hop time of those requests."""
        return self.acc[A_HOP_MS] + self.acc[A_EXTRA_HOP_MS]

    @property
    def overhead_total(self) -> float:
        """Summed crossing overhead of the requests whose lines carry it (weighted)."""
        return self.acc[A_OVERHEAD] + self.acc[A_EXTRA_OVERHEAD]

    @property
    def work_total(self) -> float:
        return self.acc[A_WORK] + self.acc[A_EXTRA_WORK]

    def merge(self, other: EndpointStats) -> None:
        """Add another (folded) endpoint's numbers to this one's."""
        self.fold()
        other.fold()
        acc, theirs = self.acc, other.acc
        for index in (
            A_RECORDS,
            A_EXTRA_REQUESTS,
            A_DURATION,
            A_HOP_MS,
            A_WAIT,
            A_HOPS,
            A_EXTRA_HOP_MS,
            A_EXTRA_HOPS,
            *range(A_OVERHEAD, A_NO_OVH_HOPS + 1),
        ):
            acc[index] += theirs[index]
        acc[A_HOPS_MAX] = max(acc[A_HOPS_MAX], theirs[A_HOPS_MAX])
        self.sketch.merge(other.sketch)
        self.overhead_sketch.merge(other.overhead_sketch)
        c, oc = self.counters, other.counters
        for index in (C_SYNC_TO_ASYNC, C_ASYNC_TO_SYNC, C_THREADS, C_NEW_LOOPS, C_NEW_LOOP_RECORDS):
            c[index] += oc[index]
        for index in (C_THREADS_MAX, C_DEPTH_MAX):
            c[index] = max(c[index], oc[index])
        for name, requests in other.statuses.items():
            self.statuses[name] = self.statuses.get(name, 0) + requests
        for interface, requests in other.interfaces.items():
            if interface not in self.interfaces and len(self.interfaces) >= INTERFACE_CAP:
                interface = "(other)"
            self.interfaces[interface] = self.interfaces.get(interface, 0) + requests
        for key, entry in other.sites.items():
            self._add_site(key, *entry)
        for index in range(SITE_FIELDS):
            self.other_site[index] += other.other_site[index]
            self.unattributed[index] += other.unattributed[index]
        for hop_ms, request_id, timestamp in other.slowest:
            # a tie with the floor too: offer_slowest's order (time, then id) decides it,
            # not which partial merged first
            if hop_ms >= acc[A_SLOWEST_FLOOR]:
                self.offer_slowest(hop_ms, request_id, timestamp)
        for hop_ms, request_id, timestamp, profile in other.profiles:
            self.add_optional(hop_ms, request_id, timestamp, 1.0, 0, None, None, profile)
        for index in range(3):
            self.pinned[index] += other.pinned[index]
        for site, requests in other.pinned_by.items():
            self.add_pinned_by(site, requests)
        self.sites_dropped += other.sites_dropped
        tax, theirs_tax = self.tax, other.tax
        for index in (T_PRICED_US, T_RECORDS, T_PRICED_US_TOTAL, T_HOPS, T_DURATION):
            tax[index] += theirs_tax[index]
        tax[T_MIN] = min(tax[T_MIN], theirs_tax[T_MIN])
        tax[T_MAX] = max(tax[T_MAX], theirs_tax[T_MAX])
        mine, theirs_c = self.concurrency, other.concurrency
        for index in (0, 1, 3, 4, 6):
            mine[index] += theirs_c[index]
        for index in (2, 5):
            mine[index] = max(mine[index], theirs_c[index])

    def settle(self) -> None:
        """Every sum of logged figures put on the log's grid (:func:`at_resolution`), once
        the input is read (:meth:`Partial.settle`)."""
        self.fold()
        acc = self.acc
        for index in _ACC_SUMS:
            acc[index] = at_resolution(acc[index])
        for entry in (*self.sites.values(), self.other_site, self.unattributed):
            entry[:] = [at_resolution(value) for value in entry]
        for weighted in (self.statuses, self.interfaces, self.pinned_by):
            for name, requests in weighted.items():
                weighted[name] = at_resolution(requests)
        sums = ((self.pinned, (0, 2)), (self.tax, _TAX_SUMS), (self.concurrency, (6,)))
        for fields, indices in sums:
            for index in indices:
                fields[index] = at_resolution(fields[index])

    def copy_as(self, key: EndpointKey) -> EndpointStats:
        """A folded copy under another key (to regroup endpoints without changing them)."""
        twin = EndpointStats(key)
        twin.merge(self)
        return twin

    def __getstate__(self) -> dict[str, object]:
        self.fold()
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            setattr(self, name, value)


#: The sums of EndpointStats.acc and .tax that are not counts (:meth:`EndpointStats.settle`).
_ACC_SUMS: Final = (
    A_EXTRA_REQUESTS,
    A_DURATION,
    A_HOP_MS,
    A_WAIT,
    A_EXTRA_HOP_MS,
    A_EXTRA_HOPS,
    A_OVERHEAD,
    A_WORK,
    A_NO_OVH_DURATION,
    A_NO_OVH_WAIT,
    A_EXTRA_OVERHEAD,
    A_EXTRA_WORK,
)
_TAX_SUMS: Final = (T_PRICED_US, T_PRICED_US_TOTAL, T_DURATION)


def endpoint_order(key: EndpointKey) -> str:
    """The order of endpoints past the cap when partials merge: a total order on keys."""
    return repr(key)


class Partial:
    """What one reader made of its share of the input: endpoints and counts."""

    def __init__(self, extra: Any = None) -> None:
        self.endpoints: dict[EndpointKey, EndpointStats] = {}
        #: An extra account the scanner feeds every counted record to, with its endpoint
        #: key and its line, ``buffer[start:stop]``: ``extra.add(key, record, buffer, start,
        #: stop)``, merged by ``extra.merge`` (the HTML page's, see report/picture.py).
        #: None: nothing more is read.
        self.extra = extra
        self.files = 0
        self.bytes = 0
        self.lines = 0
        self.records = 0
        self.other_lines = 0
        self.skipped: dict[str, int] = {}
        # records kept without a malformed separable part: part name -> records
        self.parts_lost: dict[str, int] = {}
        self.filtered: dict[str, int] = {}
        self.hopwatch_errors = 0
        self.first_timestamp = ""  # canonical, so text order is time order
        self.last_timestamp = ""
        self.truncated_inputs: list[str] = []  # e.g. a .gz file cut short
        #: hopwatch.process lines, by minute (hopwatch.report.threads.PoolSeries)
        self.pool: Any = None

    def endpoint(self, key: EndpointKey) -> EndpointStats:
        stats = self.endpoints.get(key)
        if stats is None:
            if len(self.endpoints) >= ENDPOINT_CAP and key != OVERFLOW_KEY:
                return self.endpoint(OVERFLOW_KEY)
            stats = self.endpoints[key] = EndpointStats(key)
        return stats

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    def lose_part(self, part: str, count: int = 1) -> None:
        self.parts_lost[part] = self.parts_lost.get(part, 0) + count

    def filter_out(self, reason: str, count: int = 1) -> None:
        self.filtered[reason] = self.filtered.get(reason, 0) + count

    def see_timestamp(self, timestamp: str) -> None:
        if not self.first_timestamp or timestamp < self.first_timestamp:
            self.first_timestamp = timestamp
        if timestamp > self.last_timestamp:
            self.last_timestamp = timestamp

    def fold(self) -> None:
        for stats in self.endpoints.values():
            stats.fold()

    def settle(self) -> None:
        """The input is read: every sum of logged figures put on the log's grid, the
        microsecond (:func:`at_resolution`). Summed in another order (pieces read by
        several processes, merged in the order they finish: --jobs), the same figures
        can differ in their last bits, and a figure made from a sum (a mean, a share)
        then read one unit apart in its last digit when its exact value lay at a
        rounding boundary. A sum of logged figures lies on the grid, and no order of
        adding them strays anywhere near half a microsecond from it: on the grid, each
        sum is the same double whatever the order, and so is every figure made from it.
        (A sampled log's weighted sums lie between grid points when a weight, 1 /
        sample_rate - 1, has more than three decimals: those are rounded to the grid
        too, and one that lies exactly half-way, as a weight of 1.5 can put it, can
        still round either way.)"""
        for stats in self.endpoints.values():
            stats.settle()

    def merge(self, other: Partial) -> None:
        """Add another (folded) partial. Past ENDPOINT_CAP endpoints in both, the first
        ENDPOINT_CAP in endpoint_order keep their own, and the others' numbers go to the
        overflow endpoint: merging is then commutative and associative (but for the order
        floating-point sums are added in), so partials merged in any order, in any
        grouping, give the same endpoints and overflow."""
        for key, stats in other.endpoints.items():
            mine = self.endpoints.get(key)
            if mine is None:
                self.endpoints[key] = stats
            else:
                mine.merge(stats)
        named = len(self.endpoints) - (OVERFLOW_KEY in self.endpoints)
        if named > ENDPOINT_CAP:
            keys = sorted((k for k in self.endpoints if k != OVERFLOW_KEY), key=endpoint_order)
            overflow = self.endpoint(OVERFLOW_KEY)
            for key in keys[ENDPOINT_CAP:]:
                overflow.merge(self.endpoints.pop(key))
        self.files += other.files
        self.bytes += other.bytes
        self.lines += other.lines
        self.records += other.records
        self.other_lines += other.other_lines
        for reason, count in other.skipped.items():
            self.skip(reason, count)
        for part, count in other.parts_lost.items():
            self.lose_part(part, count)
        for reason, count in other.filtered.items():
            self.filter_out(reason, count)
        self.hopwatch_errors += other.hopwatch_errors
        if other.first_timestamp:
            self.see_timestamp(other.first_timestamp)
            self.see_timestamp(other.last_timestamp)
        self.truncated_inputs.extend(other.truncated_inputs)
        if other.pool is not None:
            from hopwatch.report.threads import PoolSeries

            self.pool = self.pool or PoolSeries()
            self.pool.merge(other.pool)
        if self.extra is not None and other.extra is not None:
            self.extra.merge(other.extra)
