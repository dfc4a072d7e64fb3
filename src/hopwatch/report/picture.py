"""What the HTML page and the trace need beyond the report document, read in the same pass.

The page also draws, per endpoint, the split of the crossings' time into crossing
overhead and work (``overhead_ms``, ``work_ms``), the distribution of hops per
request, the causes ranked by their overhead (``sites[].overhead_ms``), and one
request's crossings on a timeline (``detail``, logged in detail mode). With
``--format html`` or ``trace`` the scanner hands every record it counts, with its
line, to a :class:`Picture` (``Partial.extra``). The record already holds all but
``detail``; a line with a ``detail`` list is decoded once more for it
(:func:`decode_extras`), the others are not. The picture is bounded and mergeable:

* per endpoint (the scanner's fine-grained key): sums, a fixed-size histogram
  of hops, and the slowest request (by ``hop_ms``) whose ``detail`` can be
  drawn, its crossings kept as compact JSON, at most :data:`CROSSINGS_KEPT`;
* across endpoints: the causes, at most :data:`CAUSE_CAP` (the largest by
  overhead are kept, the rest summed into one remainder);
* the request chosen with ``--request-id``, whole.

Lines from before a field existed simply lack it: the page says over how many
lines each figure was measured.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta, Struct

from hopwatch.report import parse, rank
from hopwatch.report.aggregate import (
    NO_VIEW,
    NORMAL,
    OVERFLOW,
    OVERFLOW_KEY,
    S_MS,
    S_OVERHEAD,
    EndpointKey,
    SiteKey,
    site_order,
)
from hopwatch.report.parse import Count, Millis, Record, timestamp_text
from hopwatch.report.text import clean

#: Crossings kept per endpoint's timeline (the first ones called); a request chosen
#: with --request-id keeps all of its own.
CROSSINGS_KEPT: Final = 200
#: Causes kept across the report (the largest by overhead; the rest are summed).
CAUSE_CAP: Final = 256
#: Timelines drawn (the page) or exported (the trace): one per endpoint, in rank order.
TIMELINES_SHOWN: Final = 10

#: Upper edges (inclusive) of the hops-per-request histogram's bins: one bin per count
#: up to 16, then bins growing by about half; the last holds everything above.
HOP_BIN_EDGES: Final = (
    *range(17),
    24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048, 4096, 10_000,
    math.inf,
)  # fmt: skip

ThreadId = Annotated[int, Meta(ge=0)]
Index = Annotated[int, Meta(ge=0, lt=1_000_000_000)]


def hop_bin(hops: int) -> int:
    """The histogram bin of a request with ``hops`` crossings."""
    return bisect.bisect_left(HOP_BIN_EDGES, hops)


def bin_label(index: int) -> str:
    """``7``, ``17-24``, ``10000+``."""
    high = HOP_BIN_EDGES[index]
    low = HOP_BIN_EDGES[index - 1] + 1 if index else 0
    if high == math.inf:
        return f"{int(low)}+"
    return f"{int(high)}" if low == high else f"{int(low)}-{int(high)}"


# --- the fields read from a line --------------------------------------------------------
class Crossing(Struct, gc=False, omit_defaults=True):
    """One entry of ``detail`` (docs/log-schema.md)."""

    direction: str
    kind: str
    site: str
    call_site: str | None = None
    depth: Count = 1
    thread_sensitive: bool | None = None
    new_loop: bool = False
    thread: ThreadId = 0
    wait_ms: Millis = 0.0
    run_ms: Millis = 0.0
    resume_ms: Millis = 0.0
    outcome: str = "ok"
    # joined the entry later: without at_ms a crossing cannot be placed in time
    at_ms: Millis | None = None
    parent: Index | None = None
    caller_thread: ThreadId | None = None


class Extras(Struct, gc=False):
    """The fields of a line the page reads beyond :class:`~hopwatch.report.parse.Record`."""

    event: str | None = None  # None: not a record (an envelope, see decode_extras)
    detail: list[Crossing] | None = None
    detail_dropped: Count = 0


_decode_extras = msgspec.json.Decoder(Extras).decode
_decode_any = json.JSONDecoder(strict=False).decode  # raw control characters, as parse does
_encode = msgspec.json.Encoder().encode
_decode_crossings = msgspec.json.Decoder(list[Crossing]).decode
_EMPTY: Final = Extras()
#: The separable parts of Extras and their types, for a line the typed decoder refused.
_PARTS: Final[dict[str, Any]] = {"detail": list[Crossing], "detail_dropped": Count}
#: How the key of ``detail`` reads in a line, and how it starts in a line inside an
#: envelope, structlog's rendering or both (its closing quote escaped at any depth, as
#: parse.NESTED_MARKER).
_DETAIL_KEYS: Final = (b'"detail"', b'\\"detail\\')


def decode_extras(line: Any, *, unwrapped: bool = False) -> Extras:
    """The extras of one record's line (bytes, memoryview or str, from its first ``{``).

    A line in a shipper's envelope, structlog's rendering or both is unwrapped as the
    scanner unwraps it (parse.unwrap), once (``unwrapped``: the line is the inner one).
    Never raises: a line the scanner accepted but whose extras are malformed
    gives the parts that are well formed (a malformed ``detail`` is left out whole;
    a ``parent`` that cannot be one is dropped, see _sound_parents).
    """
    extras = _decode_any_extras(line, unwrapped)
    if extras.detail:
        _sound_parents(extras.detail)
    return extras


def _decode_any_extras(line: Any, unwrapped: bool) -> Extras:
    try:
        extras = _decode_extras(line)
    except parse.DECODE_ERRORS:
        return _decode_leniently(line, unwrapped)
    if extras.event != parse.EVENT and not unwrapped:  # the record is inside
        inner = parse.unwrap(line)
        return _EMPTY if inner is None else _decode_any_extras(inner, unwrapped=True)
    return extras


def _sound_parents(detail: list[Crossing]) -> None:
    """Drop (to None) each ``parent`` that cannot be one, in place: out of range, the
    crossing's own index, or on a loop of parents (1 -> 2 -> 1), as only a damaged or
    hand-edited line holds. The crossing is then drawn as an outermost one, and
    everything that walks up the parents (the timeline's rows, the trace) ends."""
    count = len(detail)
    state = [0] * count  # 0: not seen, 1: on the walk under way, 2: done
    for first in range(count):
        walk = []
        index: int | None = first
        while index is not None and state[index] == 0:
            state[index] = 1
            walk.append(index)
            parent = detail[index].parent
            if parent is not None and not 0 <= parent < count:
                detail[index].parent = parent = None
            index = parent
        if index is not None and state[index] == 1:  # the walk came back: a loop
            for on_loop in walk[walk.index(index) :]:
                detail[on_loop].parent = None
        for seen in walk:
            state[seen] = 2


def _decode_leniently(line: Any, unwrapped: bool) -> Extras:
    try:
        text = line if isinstance(line, str) else bytes(line).decode("utf-8")
        obj = _decode_any(text)
    except (ValueError, RecursionError):
        # not one object: Fluent Bit's out_file line (the object, then "]") is unwrapped
        inner = None if unwrapped else parse.unwrap(line)
        return _EMPTY if inner is None else _decode_any_extras(inner, unwrapped=True)
    if not isinstance(obj, dict):
        return _EMPTY
    if obj.get("event") != parse.EVENT:
        inner = None if unwrapped else parse.unwrap_object(obj)
        return _EMPTY if inner is None else _decode_any_extras(inner, unwrapped=True)
    fields: dict[str, Any] = {"event": parse.EVENT}
    for name, kind in _PARTS.items():
        try:
            if obj.get(name) is not None:
                fields[name] = msgspec.convert(obj[name], kind)
        except parse.CONVERT_ERRORS:
            pass  # that part is left out
    return Extras(**fields)


# --- what is kept -----------------------------------------------------------------------
@dataclass
class Kept:
    """One request to draw: its line's facts and its crossings (compact JSON)."""

    hop_ms: float
    timestamp: str
    request_id: str
    method: str
    route: str
    view: str | None
    status: int | None
    interface: str
    duration_ms: float
    hops: int
    overhead_ms: float | None
    work_ms: float | None
    pinned_ms: float | None
    detail_dropped: int
    crossings: bytes  # msgspec JSON of list[Crossing]
    crossings_total: int  # in the line's detail (more than kept when cut)

    def order(self) -> tuple[float, str, str]:
        """Slowest first; ties by time, then id: the same choice in any merge order."""
        return (-self.hop_ms, self.timestamp, self.request_id)

    def decode(self) -> list[Crossing]:
        return _decode_crossings(self.crossings)

    def label(self) -> str:
        """The request's endpoint as the tables name it: ``GET /items/<int:pk>/``, or
        ``GET (no view)`` for a request no URL pattern resolved (its route, then the raw
        path with its query string, is not kept: see _keep)."""
        return f"{self.method} {self.route if self.view is not None else rank.NO_VIEW_LABEL}"


def _drawable(detail: list[Crossing] | None) -> bool:
    return bool(detail) and all(c.at_ms is not None for c in detail or ())


def _keep(record: Record, extras: Extras, limit: int | None) -> Kept:
    detail = extras.detail or []
    kept = detail
    if limit is not None and len(detail) > limit:
        # the first crossings called, with their indices remapped (the rest are left out)
        order = sorted(range(len(detail)), key=lambda i: (detail[i].at_ms or 0.0, i))[:limit]
        order.sort()
        new_index = {old: new for new, old in enumerate(order)}
        kept = []
        for old in order:
            crossing = detail[old]
            parent = crossing.parent
            kept.append(
                msgspec.structs.replace(
                    crossing, parent=new_index.get(parent) if parent is not None else None
                )
            )
    return Kept(
        hop_ms=record.hop_ms,
        timestamp=timestamp_text(record.timestamp),
        request_id=record.request_id,
        method=record.method,
        # without a view the route is the raw path (query string and all): left out, as
        # the tables fold such requests into (no view) (aggregate.endpoint_key)
        route=record.route if record.view is not None else "",
        view=record.view,
        status=record.status,
        interface=record.interface,
        duration_ms=record.duration_ms,
        hops=record.hops,
        overhead_ms=record.overhead_ms,
        work_ms=record.work_ms,
        pinned_ms=record.pinned_ms,
        detail_dropped=extras.detail_dropped,
        crossings=_encoded(kept),
        crossings_total=len(detail),
    )


def _encoded(crossings: list[Crossing]) -> bytes:
    """``crossings`` as compact JSON. A name holding a lone surrogate (a ``"\\ud800"``
    escape in the line) cannot be UTF-8: the names are then kept as the report shows
    them, escaped (text.clean: ``\\ud800``), which the renderers leave as it is."""
    try:
        return _encode(crossings)
    except UnicodeEncodeError:
        return _encode([_escaped(crossing) for crossing in crossings])


def _escaped(c: Crossing) -> Crossing:
    return msgspec.structs.replace(
        c,
        direction=clean(c.direction),
        kind=clean(c.kind),
        site=clean(c.site),
        call_site=None if c.call_site is None else clean(c.call_site),
        outcome=clean(c.outcome),
    )


class EndpointPicture:
    """One endpoint's share of the picture (mergeable)."""

    __slots__ = ("hop_bins", "overhead", "records", "split", "timeline", "work")

    def __init__(self) -> None:
        self.records = 0  # lines counted
        self.split = 0  # ... of which carry overhead_ms and work_ms
        self.overhead = 0.0  # their sums
        self.work = 0.0
        self.hop_bins = [0] * len(HOP_BIN_EDGES)
        self.timeline: Kept | None = None

    def offer(self, kept: Kept) -> None:
        if self.timeline is None or kept.order() < self.timeline.order():
            self.timeline = kept

    def merge(self, other: EndpointPicture) -> None:
        self.records += other.records
        self.split += other.split
        self.overhead += other.overhead
        self.work += other.work
        self.hop_bins = [a + b for a, b in zip(self.hop_bins, other.hop_bins, strict=True)]
        if other.timeline is not None:
            self.offer(other.timeline)


# Indices into a cause's accumulator (every value weighted by 1 / sample_rate).
K_REQUESTS: Final = 0  # requests that listed the cause
K_COUNT: Final = 1  # its crossings
# Time and overhead sit where a site entry's do (aggregate.S_MS, S_OVERHEAD), so that
# one order ranks both: cause_order is aggregate.site_order.
K_MS: Final = S_MS  # their wall time
K_OVERHEAD: Final = S_OVERHEAD  # their overhead, over the requests whose entry carries it
K_MEASURED: Final = 4  # those requests


class Picture:
    """The page's extra account of the records the scanner counted (see the module doc)."""

    def __init__(self, request_id: str | None = None) -> None:
        self.request_id = request_id
        self.endpoints: dict[EndpointKey, EndpointPicture] = {}
        self.causes: dict[SiteKey, list[float]] = {}
        self.other_causes = [0.0] * 5  # the remainder past CAUSE_CAP
        self.sites_dropped_lines = 0  # lines whose sites were cut by SITES_LIMIT
        self.detail_lines = 0  # lines with a detail list
        self.undrawable_lines = 0  # ... from before at_ms (no timeline possible)
        self.chosen: Kept | None = None  # the --request-id request
        self.chosen_lines = 0  # lines with that id

    # --- adding (the scanner calls this for every record it counts) ----------------------
    def add(self, key: EndpointKey, record: Record, buffer: bytes, start: int, stop: int) -> None:
        """A record the scanner counted, and its line: ``buffer[start:stop]``."""
        stats = self.endpoints.get(key)
        if stats is None:
            stats = self.endpoints[key] = EndpointPicture()
        stats.records += 1
        hops = record.hops
        stats.hop_bins[hops if hops < 17 else hop_bin(hops)] += 1
        if record.overhead_ms is not None and record.work_ms is not None:
            stats.split += 1
            stats.overhead += record.overhead_ms
            stats.work += record.work_ms
        if record.sites_dropped:
            self.sites_dropped_lines += 1
        weight = 1.0 / record.sample_rate
        causes = self.causes
        for site in record.sites:  # inline: this runs for every cause of every line
            cause = (site.site, site.kind, site.direction, site.call_site)
            entry = causes.get(cause)
            if entry is None:
                entry = self._new_cause(cause)
                causes = self.causes  # a new dict if that trimmed
            entry[K_REQUESTS] += weight
            entry[K_COUNT] += site.count * weight
            entry[K_MS] += site.ms * weight
            if site.overhead_ms is not None:
                entry[K_OVERHEAD] += site.overhead_ms * weight
                entry[K_MEASURED] += weight
        chosen = self.request_id is not None and record.request_id == self.request_id
        self.chosen_lines += chosen
        # Most lines have no detail list (detail mode is for staging): a look for its key
        # spares them a second decode. The key cannot appear unescaped inside a string.
        find = buffer.find
        if find(_DETAIL_KEYS[0], start, stop) != -1 or find(_DETAIL_KEYS[1], start, stop) != -1:
            extras = decode_extras(memoryview(buffer)[start:stop])
        else:
            extras = _EMPTY
        detail = extras.detail
        drawable = _drawable(detail)
        if detail is not None:
            self.detail_lines += 1
            self.undrawable_lines += not drawable
        if chosen and drawable:
            kept = _keep(record, extras, None)
            if self.chosen is None or kept.order() < self.chosen.order():
                self.chosen = kept
        if drawable and (stats.timeline is None or record.hop_ms >= stats.timeline.hop_ms):
            stats.offer(_keep(record, extras, CROSSINGS_KEPT))

    def _new_cause(self, key: SiteKey) -> list[float]:
        if len(self.causes) >= 2 * CAUSE_CAP:
            self._trim_causes()
        entry: list[float] = [0.0] * 5
        self.causes[key] = entry
        return entry

    def _trim_causes(self) -> None:
        """Keep the CAUSE_CAP causes with the most overhead (then time); sum the rest."""
        if len(self.causes) <= CAUSE_CAP:
            return
        ranked = sorted(self.causes.items(), key=cause_order)
        self.causes = dict(ranked[:CAUSE_CAP])
        for _key, entry in ranked[CAUSE_CAP:]:
            for index, value in enumerate(entry):
                self.other_causes[index] += value

    # --- merging (partials from several processes) ---------------------------------------
    def merge(self, other: Picture) -> None:
        for key, theirs in other.endpoints.items():
            mine = self.endpoints.get(key)
            if mine is None:
                self.endpoints[key] = theirs
            else:
                mine.merge(theirs)
        for cause, counts in other.causes.items():
            entry = self.causes.get(cause) or self._new_cause(cause)
            for index, value in enumerate(counts):
                entry[index] += value
        self._trim_causes()
        self.other_causes = [
            a + b for a, b in zip(self.other_causes, other.other_causes, strict=True)
        ]
        self.sites_dropped_lines += other.sites_dropped_lines
        self.detail_lines += other.detail_lines
        self.undrawable_lines += other.undrawable_lines
        self.chosen_lines += other.chosen_lines
        if other.chosen is not None and (
            self.chosen is None or other.chosen.order() < self.chosen.order()
        ):
            self.chosen = other.chosen

    def reconcile(self, known: set[EndpointKey]) -> None:
        """Endpoints the merged report put in its overflow row go there here too."""
        for key in [key for key in self.endpoints if key not in known]:
            stats = self.endpoints.pop(key)
            target = self.endpoints.get(OVERFLOW_KEY)
            if target is None:
                self.endpoints[OVERFLOW_KEY] = stats
            else:
                target.merge(stats)


#: Most overhead first, then most time (at the log's resolution), then by name: a total
#: order, the one the report's rows rank their causes by.
cause_order: Final = site_order


# --- grouped like the report's rows ------------------------------------------------------
GroupKey = tuple[Any, ...]
Row = dict[str, Any]


def groups_by(picture: Picture, by: str) -> dict[GroupKey, EndpointPicture]:
    groups: dict[GroupKey, EndpointPicture] = {}
    for key, stats in picture.endpoints.items():
        group = rank._group_key(key, by)
        merged = groups.get(group)
        if merged is None:
            merged = groups[group] = EndpointPicture()
        merged.merge(stats)
    return groups


def row_group(row: Row, by: str) -> GroupKey:
    """The group key of a document row (rank._group_key of its endpoints)."""
    if row["kind"] == "overflow":
        return (OVERFLOW,)
    kind = NORMAL if row["kind"] == "endpoint" else NO_VIEW
    if by == "view":
        return (kind, row["view"])
    return (kind, row["method"], row["route"] if kind == NORMAL else "")


def chosen_timelines(
    document: Row, picture: Picture, groups: dict[GroupKey, EndpointPicture]
) -> list[tuple[str, Kept, str]]:
    """(heading, request, why it was chosen) for each timeline to draw, at most
    TIMELINES_SHOWN: the --request-id request, else each shown row's slowest."""
    if picture.request_id is not None:
        if picture.chosen is None:
            return []
        kept = picture.chosen
        return [(kept.label(), kept, "the request chosen with --request-id")]
    why = "its slowest request (hop time) with a detail list"
    if document["by"] == "site":
        every = [stats.timeline for stats in picture.endpoints.values() if stats.timeline]
        every.sort(key=Kept.order)
        return [(k.label(), k, why) for k in every[:TIMELINES_SHOWN]]
    found = []
    for row in document["rows"]:
        stats = groups.get(row_group(row, document["by"]))
        if stats is not None and stats.timeline is not None:
            found.append((row["label"], stats.timeline, why))
            if len(found) >= TIMELINES_SHOWN:
                break
    return found
