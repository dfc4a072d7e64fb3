"""The hot loop: buffers of raw lines in, a :class:`~hopwatch.report.aggregate.Partial` out.

Lines are walked by offset within the buffer the reader filled (no object per
line). Per line, in order of cost:

1. a prefix test (``{"event":"hopwatch.request",`` at the line's start) and,
   failing that, a substring test for ``hopwatch.request``: every other line
   is dismissed here without being decoded;
2. a backslash test, and an ASCII test (one per buffer; per line only when the
   buffer has other bytes), so that :data:`~hopwatch.report.parse.FAST_LINE`
   can read strings as ``"[^"]*"``;
3. one match of ``FAST_LINE``, which validates the whole line and captures
   every field, and the accumulation inlined below (floats are converted,
   low-cardinality spans such as the five counters are counted as raw bytes
   and decoded once per distinct value when the endpoint is folded);
4. anything else goes to the general decoder (:func:`~hopwatch.report.parse.decode_line`).

Keeping this one function long and flat is deliberate: attribute lookups and
calls cost as much as the work itself at a few microseconds per line.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import log
from typing import Any, Final

from hopwatch.report import parse
from hopwatch.report.aggregate import (
    A_DURATION,
    A_EXTRA_HOP_MS,
    A_EXTRA_HOPS,
    A_EXTRA_REQUESTS,
    A_HOP_MS,
    A_HOPS,
    A_HOPS_MAX,
    A_RECORDS,
    A_SLOWEST_FLOOR,
    A_WAIT,
    T_DURATION,
    T_HOPS,
    T_MAX,
    T_MIN,
    T_PRICED_US,
    T_PRICED_US_TOTAL,
    T_RECORDS,
    EndpointStats,
    Partial,
    _status_interface,
    endpoint_key,
)
from hopwatch.report.parse import Record
from hopwatch.report.sketch import INV_LN_GAMMA, MIN_VALUE, SHIFT

#: Scanner caches keyed by raw spans stop growing here (lookups still work).
_SPAN_CACHE_LIMIT: Final = 8000
_TAIL_CACHE_LIMIT: Final = 256
#: Fold endpoints' raw dicts every this many blocks (bounds their growth).
_FOLD_EVERY_BLOCKS: Final = 16

# m.groups() is 0-based: subtract one from parse's group numbers.
_TS = parse.G_TIMESTAMP - 1
_RID = parse.G_REQUEST_ID - 1
_ENDPOINT = parse.G_ENDPOINT - 1
_STATUS = parse.G_STATUS_INTERFACE - 1
_DURATION = parse.G_DURATION - 1
_HOPS = parse.G_HOPS - 1
_HOP_MS = parse.G_HOP_MS - 1
_WAIT = parse.G_WAIT - 1
_COUNTERS = parse.G_COUNTERS - 1
_PINNED_MS = parse.G_PINNED_MS - 1
_PINNED_BY = parse.G_PINNED_BY - 1
_SITES_START = parse.G_FIRST_SITE - 1
_SITES_STOP = _SITES_START + parse.GROUPS_PER_SITE * parse.FAST_SITE_SLOTS
_TAIL = parse.G_TAIL - 1

#: The tail info of a line whose tail the general decoder must read.
_FALLBACK: Final = ""
# Tail info: (weight, sites_dropped, hopwatch_errors, pinned_ms, pinned_by, profile, plain,
# hop_tax_us). "plain": nothing that differs from request to request (hop_tax_us is the
# same on every line of a process), so the info is cached and add_optional is not needed.
TailInfo = tuple[float, int, int, float | None, str | None, str | None, bool, float | None]
(
    _T_WEIGHT,
    _T_DROPPED,
    _T_ERRORS,
    _T_PINNED_MS,
    _T_PINNED_BY,
    _T_PROFILE,
    _T_PLAIN,
    _T_TAX,
) = range(8)


@dataclass(frozen=True)
class StatusFilter:
    """``--status``: codes (``404``), classes (``5xx``), ``none``; ``!`` excludes."""

    include: frozenset[str]
    exclude: frozenset[str]
    text: str = ""  # as given on the command line

    @staticmethod
    def _names(status: int | None) -> tuple[str, str]:
        if status is None:
            return "none", "none"
        text = str(status)
        return text, text[0] + "xx"

    def allows(self, status: int | None) -> bool:
        code, klass = self._names(status)
        if code in self.exclude or klass in self.exclude:
            return False
        return not self.include or code in self.include or klass in self.include


@dataclass(frozen=True)
class Filters:
    """Which records count. Times are canonical (see parse.canonical_timestamp)."""

    since: str | None = None  # inclusive
    until: str | None = None  # exclusive
    status: StatusFilter | None = None
    interfaces: frozenset[str] | None = None

    def reject_reason(self, timestamp: str, status: int | None, interface: str) -> str | None:
        if self.since is not None and timestamp < self.since:
            return "time"
        if self.until is not None and timestamp >= self.until:
            return "time"
        return self.status_reason(status, interface)

    def status_reason(self, status: int | None, interface: str) -> str | None:
        if self.status is not None and not self.status.allows(status):
            return "status"
        if self.interfaces is not None and interface not in self.interfaces:
            return "interface"
        return None


def _is_text(line: bytes) -> bool:
    """ASCII, or valid UTF-8 (the general decoder reports anything else)."""
    if line.isascii():
        return True
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class Scanner:
    """Feeds blocks of lines into one :class:`Partial`."""

    def __init__(self, partial: Partial, filters: Filters | None = None) -> None:
        self.partial = partial
        self.filters = filters if filters is not None else Filters()
        self._by_span: dict[bytes, EndpointStats] = {}
        self._tails: dict[bytes, TailInfo | str] = {}
        self._status_verdicts: dict[bytes, str] = {}  # "" when the filters let it through
        self._blocks = 0
        #: Lines the general decoder had to read (a measure of the fast path's coverage).
        self.slow_lines = 0
        f = self.filters
        self._since = f.since.encode() if f.since is not None else None
        self._until = f.until.encode() if f.until is not None else None
        self._checks_status = f.status is not None or f.interfaces is not None

    # --- the general path -----------------------------------------------------------
    def add_slow_line(self, line: bytes) -> bool:
        """Decode one line with the general decoder; True when it was a hopwatch line."""
        result = parse.decode_line(line)
        if result is None:
            return False
        if isinstance(result, str):
            self.partial.skip(result)
        else:
            self.add_record(result)
        return True

    def add_record(self, record: Record) -> None:
        part = self.partial
        part.records += 1
        part.hopwatch_errors += record.hopwatch_errors
        reason = self.filters.reject_reason(record.timestamp, record.status, record.interface)
        if reason is not None:
            part.filter_out(reason)
            return
        part.see_timestamp(record.timestamp)
        part.endpoint(endpoint_key(record.method, record.route, record.view)).add_record(record)

    def _endpoint(self, span: bytes) -> EndpointStats:
        method, route, view = parse.decode_endpoint_span(span)
        stats = self.partial.endpoint(endpoint_key(method, route, view))
        if len(self._by_span) < _SPAN_CACHE_LIMIT:
            self._by_span[span] = stats
        return stats

    def _tail_info(self, tail: bytes) -> TailInfo | str:
        """What the fields after "sites" say: a TailInfo, a skip reason, or _FALLBACK."""
        fields = parse.decode_tail(tail)
        if fields is None:
            return _FALLBACK
        probe = Record("", "", "", "", None, None, "", 0.0, 0, 0.0, 0.0, 0, 0, 0, 0, 0)
        try:
            parse.read_optional_fields(fields, probe)
        except parse.Invalid as exc:
            info: TailInfo | str = exc.reason
        else:
            plain = (
                probe.hopwatch_errors == 0
                and probe.pinned_ms is None
                and probe.pinned_by is None
                and probe.profile is None
            )
            info = (
                1.0 / probe.sample_rate,
                probe.sites_dropped,
                probe.hopwatch_errors,
                probe.pinned_ms,
                probe.pinned_by,
                probe.profile,
                plain,
                probe.hop_tax_us,
            )
            if not plain:  # per-request values: not worth caching
                return info
        if len(self._tails) < _TAIL_CACHE_LIMIT:
            self._tails[tail] = info
        return info

    def _status_verdict(self, span: bytes) -> str:
        status, interface = _status_interface(span)
        verdict = self.filters.status_reason(status, interface) or ""
        if len(self._status_verdicts) < _SPAN_CACHE_LIMIT:
            self._status_verdicts[span] = verdict
        return verdict

    # --- the hot loop --------------------------------------------------------------------
    def feed_lines(self, lines: list[bytes]) -> None:
        """Feed separate lines (each without its newline)."""
        if lines:
            self.feed(b"\n".join(lines) + b"\n")

    def feed(self, buffer: bytes, end: int | None = None) -> None:
        """Scan the complete lines in ``buffer[:end]`` (see inputs.LineBlocks).

        Lines are walked by offset: a bytes object is made only for the few
        lines the general decoder has to read.
        """
        end = len(buffer) if end is None else end
        part = self.partial
        match = parse.FAST_LINE.match
        start = parse.LINE_START
        marker = parse.MARKER
        max_line = parse.MAX_LINE_BYTES
        find = buffer.find
        startswith = buffer.startswith
        # one C pass over the buffer spares an ASCII test per line, almost always
        plain_ascii = buffer.isascii()
        by_span = self._by_span
        tails = self._tails
        since, until = self._since, self._until
        checks_status = self._checks_status
        verdicts = self._status_verdicts
        windowed = since is not None or until is not None
        first, last = b"~", b""  # "~" sorts after every digit
        fast = 0  # hopwatch lines the fast path read (records)
        dropped = 0  # hopwatch lines the fast path skipped
        too_long = 0
        slow: list[bytes] = []
        errors = 0

        position = 0
        while position < end:
            line_start = position
            line_end = find(b"\n", position, end)
            if line_end == -1:  # the input's last line, without a newline
                line_end = end
            position = line_end + 1
            if line_end - line_start > max_line:
                too_long += 1
                continue
            if not startswith(start, line_start):
                if find(marker, line_start, line_end) == -1:
                    continue
                brace = find(b"{", line_start, line_end)
                if brace > line_start and startswith(start, brace):
                    line_start = brace  # a prefix (container timestamp, pod name) before it
                else:
                    slow.append(buffer[line_start:line_end])
                    continue
            if find(b"\\", line_start, line_end) != -1 or (
                not plain_ascii and not _is_text(buffer[line_start:line_end])
            ):
                slow.append(buffer[line_start:line_end])
                continue
            found = match(buffer, line_start, line_end)
            if found is None:
                slow.append(buffer[line_start:line_end])
                continue
            g = found.groups()

            info: Any = tails.get(g[_TAIL])
            if info is None:
                info = self._tail_info(g[_TAIL])
            if info.__class__ is str:
                if info:
                    dropped += 1
                    part.skip(info)
                else:
                    slow.append(buffer[line_start:line_end])
                continue
            if not info[_T_PLAIN]:
                if g[_PINNED_MS] is not None and (
                    info[_T_PINNED_MS] is not None or info[_T_PINNED_BY] is not None
                ):
                    # pinned fields twice: JSON's last-one-wins decides
                    slow.append(buffer[line_start:line_end])
                    continue
                errors += info[_T_ERRORS]
            fast += 1
            ts = g[_TS]
            if windowed and (
                (since is not None and ts < since) or (until is not None and ts >= until)
            ):
                part.filter_out("time")
                continue
            if checks_status:
                verdict = verdicts.get(g[_STATUS])
                if verdict is None:
                    verdict = self._status_verdict(g[_STATUS])
                if verdict:
                    part.filter_out(verdict)
                    continue
            if ts < first:
                first = ts
            if ts > last:
                last = ts

            stats = by_span.get(g[_ENDPOINT])
            if stats is None:
                stats = self._endpoint(g[_ENDPOINT])
            acc = stats.acc
            hop_ms = float(g[_HOP_MS])
            weight = info[_T_WEIGHT]  # 1 / sample_rate; 1.0 unless the log is sampled
            hops = int(g[_HOPS])
            duration_ms = float(g[_DURATION])
            acc[A_RECORDS] += 1
            if weight != 1.0:
                acc[A_EXTRA_REQUESTS] += weight - 1.0
                acc[A_EXTRA_HOP_MS] += hop_ms * (weight - 1.0)
                acc[A_EXTRA_HOPS] += hops * (weight - 1.0)
            acc[A_DURATION] += duration_ms
            acc[A_HOP_MS] += hop_ms
            acc[A_WAIT] += float(g[_WAIT])
            acc[A_HOPS] += hops
            if hops > acc[A_HOPS_MAX]:
                acc[A_HOPS_MAX] = hops
            sketch = stats.sketch
            if hop_ms >= MIN_VALUE:
                sketch.bins[int(log(hop_ms) * INV_LN_GAMMA + SHIFT)] += 1
                if hop_ms > sketch.max:
                    sketch.max = hop_ms
            else:
                sketch.zeros += 1
            raw = stats.raw_counters
            span = g[_COUNTERS]
            raw[span] = raw.get(span, 0) + 1
            raw = stats.raw_status
            span = g[_STATUS]
            raw[span] = raw.get(span, 0) + 1
            if hop_ms > acc[A_SLOWEST_FLOOR]:
                stats.offer_slowest(hop_ms, g[_RID], ts)
            pinned = g[_PINNED_MS]
            if pinned is None:
                if info[_T_PLAIN] or info[_T_PINNED_MS] is None:
                    stats.pinned[1] += 1  # a line from before pinned_ms existed
            elif pinned != b"0.0":  # the usual value needs no work
                pin = stats.pinned
                pinned_ms = float(pinned)
                pin[0] += pinned_ms
                pin[2] += pinned_ms * weight
                pinned_by = g[_PINNED_BY]
                if pinned_by is not None:
                    raw_by = stats.raw_pinned_by
                    raw_by[pinned_by] = raw_by.get(pinned_by, 0.0) + weight
            elif g[_PINNED_BY] is not None:
                raw_by = stats.raw_pinned_by
                raw_by[g[_PINNED_BY]] = raw_by.get(g[_PINNED_BY], 0.0) + weight
            hop_tax_us = info[_T_TAX]
            if hop_tax_us is not None:  # stats.add_tax, inlined
                tax = stats.tax
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

            sites = stats.raw_sites
            if weight == 1.0:
                for slot in range(_SITES_START, _SITES_STOP, 3):
                    key = g[slot]
                    if key is None:
                        break
                    call_site = g[slot + 2]
                    if call_site is not None:
                        key = key + parse.CALL_SITE_OPEN + call_site + b'"'
                    entry = sites.get(key)
                    if entry is None:
                        entry = sites[key] = [0.0, 0.0]
                    entry[0] += 1.0
                    entry[1] += float(g[slot + 1])
            else:  # the same, weighted (a sampled log)
                for slot in range(_SITES_START, _SITES_STOP, 3):
                    key = g[slot]
                    if key is None:
                        break
                    call_site = g[slot + 2]
                    if call_site is not None:
                        key = key + parse.CALL_SITE_OPEN + call_site + b'"'
                    entry = sites.get(key)
                    if entry is None:
                        entry = sites[key] = [0.0, 0.0]
                    entry[0] += weight
                    entry[1] += float(g[slot + 1]) * weight

            if not info[_T_PLAIN]:
                stats.add_optional(
                    hop_ms,
                    g[_RID],
                    ts,
                    weight,
                    info[_T_DROPPED],
                    info[_T_PINNED_MS],
                    info[_T_PINNED_BY],
                    info[_T_PROFILE],
                )
            elif info[_T_DROPPED]:
                stats.sites_dropped += info[_T_DROPPED]

        lines = buffer.count(b"\n", 0, end)
        if end and buffer[end - 1] != 0x0A:
            lines += 1
        part.lines += lines
        if too_long:
            part.skip("line_too_long", too_long)
        other = lines - fast - dropped - too_long - len(slow)
        part.records += fast
        part.hopwatch_errors += errors
        if last:
            part.see_timestamp(first.decode())
            part.see_timestamp(last.decode())
        self.slow_lines += len(slow)
        for line in slow:
            if not self.add_slow_line(line):
                other += 1
        part.other_lines += other

        self._blocks += 1
        if self._blocks % _FOLD_EVERY_BLOCKS == 0:
            for stats in part.endpoints.values():
                if stats.needs_fold():
                    stats.fold()

    def skip_lines(self, reason: str, count: int = 1) -> None:
        """Lines the reader dropped unread (e.g. longer than MAX_LINE_BYTES)."""
        self.partial.lines += count
        self.partial.skip(reason, count)

    def finish(self) -> Partial:
        self.partial.fold()
        return self.partial
