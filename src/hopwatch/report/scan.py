"""The hot loop: buffers of raw lines in, a :class:`~hopwatch.report.aggregate.Partial` out.

Per buffer, the lines are found by offset (no object per line). Per hopwatch
line:

1. the JSON object at its first ``{`` (after a container runtime's prefix) goes
   to msgspec's typed decoder (:class:`~hopwatch.report.parse.LearningDecoder`),
   which validates it and builds a Record in C; a line it refuses goes to the
   general decoder (:func:`~hopwatch.report.parse.decode_general`), which
   unwraps envelopes, names the skip reason, or keeps the record without a
   malformed part;
2. the record is accumulated inline into the endpoint's lists and small dicts. A
   record with optional values (sampled, profiled, ...) goes through
   :meth:`EndpointStats.add_record` instead, which reads the same fields (a record
   that left causes out, ``sites_dropped``, is accumulated inline, its left-out hops
   through :meth:`EndpointStats.add_left_out`, as add_record counts them).

Most of a realistic log's lines take the same path, and at a few microseconds
per line every attribute read and call shows. So that path has a C version,
``hopwatch/report/_accumulate.c`` (built by the install like the hop path's
accelerator; :data:`IMPLEMENTATION` says which is used, ``HOPWATCH_PURE_PYTHON=1``
forces Python): ``scan`` runs the loop over a buffer while no filter or extra
account is in play, and hands any line it does not take (too long,
refused by the decoder while it mentions ``hopwatch.``, a timestamp out of
range, a process line, a line that is no record but ends as hopwatch's lines end: a torn
line's tail, :func:`~hopwatch.report.parse.torn_tail`) to the Python loop below, which
carries on from there;
``add`` is the accumulation block. ``scan`` reads the usual request line with a
JSON parser of its own (no Record, no Site objects: its numbers go straight into
the accumulators) and leaves every line it is not sure of to msgspec, as above;
:attr:`Scanner.parsed_lines` counts the ones it read. It unwraps a log shipper's
envelope (docker's ``{"log": ...}``, a logging formatter's ``{"message": ...}``)
where this loop would, and reads the inner line the same way; an envelope it is
not sure of is this loop's. The Python code is the
reference: the C one updates the same objects with the same operations, tests
run all of them side by side (tests/report/test_report_parser.py), and the
per-cause sums (summed as they come in C, in batches with ``math.fsum`` in
Python) may differ only in their last bits, which the report drops: it puts every sum
on the log's grid, the microsecond (:meth:`~hopwatch.report.aggregate.Partial.settle`).

Keeping the Python loop one long flat function is deliberate too: attribute
lookups and calls cost as much as the work itself there.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from math import log
from operator import attrgetter
from typing import Any, Final

from hopwatch.report import parse
from hopwatch.report.aggregate import (
    A_DURATION,
    A_HOP_MS,
    A_HOPS,
    A_HOPS_MAX,
    A_OVERHEAD,
    A_SLOWEST_FLOOR,
    A_SLOWEST_FLOOR_AT,
    A_WAIT,
    A_WORK,
    C_ASYNC_TO_SYNC,
    C_DEPTH_MAX,
    C_NEW_LOOP_RECORDS,
    C_NEW_LOOPS,
    C_SYNC_TO_ASYNC,
    C_THREADS,
    C_THREADS_MAX,
    EndpointStats,
    Partial,
    endpoint_key,
)
from hopwatch.report.parse import Record, micros_of, timestamp_text
from hopwatch.report.sketch import INV_LN_GAMMA, MIN_VALUE, SHIFT

#: The scanner's caches stop growing here (lookups still work, just slower).
_CACHE_LIMIT: Final = 8000
#: Fold the endpoints' raw counts every this many buffers (bounds their memory).
_FOLD_EVERY_BLOCKS: Final = 16
#: The process line's event (docs/log-schema.md); read by hopwatch.report.threads.
PROCESS_MARKER: Final = b"hopwatch.process"
#: How the marker reads inside an envelope's string value (its quotes escaped).
ESCAPED_MARKER: Final = b'\\"hopwatch.request\\"'
#: Look for the marker in each line first when fewer than 1 / this of the lines are
#: hopwatch lines (decided per buffer, from the one before).
_PREFILTER_BELOW: Final = 1.25
#: Rebuild the learning decoder as soon as it learns, this many times; then at the
#: end of a buffer only (hostile input must not make it rebuild for every line).
_EAGER_REBUILDS: Final = 64

# Optional fields that make a record go through EndpointStats.add_record, and
# their values when absent: a record equal to _PLAIN is accumulated inline.
# (sites_dropped does not: a line that left causes out (SITES_LIMIT; every typical line of
# a default-configured async view) is accumulated inline, its left-out hops as add_record
# counts them.)
_OPTIONAL = attrgetter("sample_rate", "hopwatch_errors", "profile")
_PLAIN: Final = (1.0, 0, None)
_LATEST = datetime.max.replace(tzinfo=UTC)
_EARLIEST = datetime.min.replace(tzinfo=UTC)


def load_accelerator() -> Any:
    """The C module (``_accumulate``), configured: the hot loop's accumulation block
    (``add``) and the loop itself for the usual case (``scan``); None when it is not
    built (an install without a C compiler). Both update the same objects the same way
    as the Python code in :meth:`Scanner.feed`."""
    global UNAVAILABLE
    try:
        # (as hopwatch._hotpath: "No module named ..." when it was not built)
        _accumulate = importlib.import_module("hopwatch.report._accumulate")
    except ImportError as exc:  # not built (an install without a compiler): the Python loop
        UNAVAILABLE = str(exc) or type(exc).__name__
        return None
    from hopwatch.report import aggregate

    names = [name for name in dir(aggregate) if name.startswith(("A_", "C_", "S_"))]
    indices = {name: getattr(aggregate, name) for name in names}
    _accumulate.configure(indices, MIN_VALUE, INV_LN_GAMMA, float(SHIFT), timestamp_text)
    return _accumulate


#: Why the C module is not used although nobody asked for pure Python (not built,
#: or built and not loadable), for ``hopwatch --version``; None when it is used or
#: ``HOPWATCH_PURE_PYTHON`` chose the Python loop.
UNAVAILABLE: str | None = None
#: The C module, unless ``HOPWATCH_PURE_PYTHON`` is set (the test command runs both).
_C: Any = (
    load_accelerator() if os.environ.get("HOPWATCH_PURE_PYTHON", "") in ("", "0") else None
)
#: ``add(stats, record)``: the accumulation block in C, or None (the Python block).
ACCUMULATE: Any = None if _C is None else _C.add
#: ``scan(...)``: the loop in C for the usual case, or None (the Python loop).
SCAN: Any = None if _C is None else _C.scan
#: Which one this process uses ("c" or "python").
IMPLEMENTATION: Final = "python" if _C is None else "c"


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


class Scanner:
    """Feeds blocks of lines into one :class:`Partial`."""

    def __init__(self, partial: Partial, filters: Filters | None = None) -> None:
        self.partial = partial
        self.filters = filters if filters is not None else Filters()
        self._by_key: dict[tuple[str, str, str | None], EndpointStats] = {}
        self._verdicts: dict[tuple[int | None, str], str] = {}  # "": the filters let it through
        self._blocks = 0
        self._typed = parse.LearningDecoder()
        self._prefilter = True  # look for the marker before decoding (see feed)
        self._wrapped = False  # unwrap a shipper's envelope before decoding (see feed)
        #: The accumulation block and the loop in C, or None (Python's); tests set them.
        self.accumulate = ACCUMULATE
        self.scan = SCAN
        #: Whether the C loop reads the usual line with its own parser (False: msgspec reads
        #: every line; tests compare the two).
        self.parser = True
        #: Lines the general decoder had to read (a measure of the typed decoder's coverage).
        self.slow_lines = 0
        #: Records the C loop's own parser read (the rest went through msgspec).
        self.parsed_lines = 0
        #: Records that came in a log shipper's envelope (their count sets the wrapped mode).
        self.enveloped = 0
        #: The input being read (its name; parallel._read_piece sets it): the pids of
        #: process lines without a ``process_id`` (older versions) are told apart per input.
        self.source = ""
        f = self.filters
        self._since = _bound(f.since)
        self._until = _bound(f.until)
        self._checks_status = f.status is not None or f.interfaces is not None

    # --- single lines and records (tests, and the same path as the hot loop) -------------
    def add_slow_line(self, line: bytes) -> bool:
        """Decode and add one line; True when it was a hopwatch line."""
        before = self.partial.other_lines
        self.feed(line)
        self.partial.lines -= 1  # feed() counted it; the caller counts lines
        if self.partial.other_lines != before:
            self.partial.other_lines -= 1
            return False
        return True

    def add_record(self, record: Record) -> None:
        """Add one decoded record, as the hot loop does (filters included)."""
        part = self.partial
        part.records += 1
        part.hopwatch_errors += record.hopwatch_errors
        timestamp = timestamp_text(record.timestamp)
        reason = self.filters.reject_reason(timestamp, record.status, record.interface)
        if reason is not None:
            part.filter_out(reason)
            return
        part.see_timestamp(timestamp)
        self._endpoint((record.method, record.route, record.view)).add_record(record)

    def _endpoint(self, key: tuple[str, str, str | None]) -> EndpointStats:
        stats = self.partial.endpoint(endpoint_key(*key))
        if len(self._by_key) < _CACHE_LIMIT:
            self._by_key[key] = stats
        return stats

    def _fallback(self, line: memoryview, enveloped: bool) -> Any:
        """A line the learning decoder refused: a Record, (Record,) when it came in an
        envelope, a skip reason, or None (not a hopwatch record). ``enveloped``: the line
        holds parse.NESTED_MARKER (parse.peel looks inside it)."""
        if enveloped:  # its quotes are escaped: a shipper's envelope, structlog's rendering
            found = _peeled(line)
            if found is not None:
                return found
        try:  # a value the learning decoder has not seen yet?
            return parse.decode_record(line)
        except parse.DECODE_ERRORS:
            pass
        if not enveloped and parse.EXPORTED.search(line):
            # the record as an object in an exported entry, or Fluent Bit's out_file line
            found = _peeled(line)
            if found is not None:
                return found
        self.slow_lines += 1
        result = parse.decode_general(bytes(line))
        if result is None or isinstance(result, str):
            return result
        record, lost = result
        for name in lost:
            self.partial.lose_part(name)
        return record

    def _process_line(self, line: memoryview) -> None:
        """A ``hopwatch.process`` line (rare: one per process per interval)."""
        from hopwatch.report import threads

        if self.partial.pool is None:
            self.partial.pool = threads.PoolSeries()
        self.partial.pool.add_line(bytes(line), self.filters, self.source)

    def _verdict(self, key: tuple[int | None, str]) -> str:
        verdict = self.filters.status_reason(*key) or ""
        if len(self._verdicts) < _CACHE_LIMIT:
            self._verdicts[key] = verdict
        return verdict

    # --- the hot loop --------------------------------------------------------------------
    def feed_lines(self, lines: list[bytes]) -> None:
        """Feed separate lines (each without its newline)."""
        if lines:
            self.feed(b"\n".join(lines) + b"\n")

    def feed(self, buffer: bytes | bytearray, end: int | None = None) -> None:
        """Scan the complete lines in ``buffer[:end]`` (see inputs.LineBlocks)."""
        end = len(buffer) if end is None else end
        part = self.partial
        find = buffer.find
        marker = parse.MARKER
        process_marker = PROCESS_MARKER
        torn_tail = parse.torn_tail  # (for the lines that are no record only)
        max_line = parse.MAX_LINE_BYTES
        typed = self._typed
        decode = typed.decode
        decode_errors = parse.DECODE_ERRORS
        decode_envelope = parse.decode_envelope
        envelope_line = parse.envelope_line
        nested = parse.NESTED_MARKER  # (ESCAPED_MARKER's start, at any depth)
        wrapped = self._wrapped
        enveloped = 0  # records that came in an envelope
        by_key = self._by_key
        since, until = self._since, self._until
        windowed = since is not None or until is not None
        checks_status = self._checks_status
        verdicts = self._verdicts
        optional_of = _OPTIONAL
        plain = _PLAIN
        utc = UTC
        a_overhead, a_work = A_OVERHEAD, A_WORK
        least, to_bin, shift = MIN_VALUE, INV_LN_GAMMA, SHIFT
        first, last = _LATEST, _EARLIEST
        records = 0  # hopwatch records (filtered ones included)
        dropped = 0  # hopwatch lines skipped with a reason
        errors = 0  # hopwatch_errors the records carry

        extra = part.extra
        tap = extra.add if extra is not None else None  # the HTML page's reader, if any
        accumulate = self.accumulate
        prefilter = self._prefilter
        view = memoryview(buffer)  # slices of it are not copies
        count = 0  # lines
        too_long = 0
        position = 0
        # The loop in C while nothing unusual is asked for: it counts lines and records
        # until a line it leaves to the loop below (see _accumulate.c's scan).
        fast = self.scan
        own_parser = self.parser
        if (wrapped and not own_parser) or tap is not None or windowed or checks_status:
            fast = None  # (the C loop unwraps envelopes with its parser only)
        bounds: list[Any] = [first, last, 0]  # what fast saw: first, last timestamp, errors
        to_utc = parse.to_utc
        new_endpoint = self._endpoint
        # A line as long as a container runtime's part (parse.PART_BYTES) is this loop's
        # (the C loop leaves it here): the first part of a line the runtime split is joined
        # with the rest of its stream's parts below; any other is handed back to C.
        part_bytes = parse.PART_BYTES
        line_part = parse.line_part
        joined: set[int] = set()  # where the later parts of lines joined already start
        unjoined: set[bytes] = set()  # streams whose part could not be joined: read as is
        loose: set[int] = set()  # where parts start that are read as is (see _read_split)
        while position < end:
            if fast is not None and not joined:
                position, lines, found, parsed, unwrapped = fast(
                    buffer, position, end, decode, decode_errors, by_key, bounds, to_utc,
                    new_endpoint, utc, part_bytes - 1, own_parser, prefilter, wrapped,
                )  # fmt: skip
                count += lines
                records += found
                enveloped += unwrapped
                self.parsed_lines += parsed
                if position >= end:
                    break
            start = position
            stop = find(b"\n", start, end)
            if stop == -1:  # the input's last line, without a newline
                stop = end
            position = stop + 1
            if joined and start in joined:  # a later part of a line already read whole
                joined.discard(start)
                continue
            if stop - start >= part_bytes and stop - start <= max_line:
                shape = line_part(buffer, start, stop)
                if loose and start in loose:
                    loose.discard(start)
                elif shape is not None and shape[1] and shape[0] not in unjoined:
                    read = self._read_split(buffer, start, stop, shape, end, joined, loose)
                    if read:  # read as one line
                        continue
                    if read is None:
                        unjoined.add(shape[0])  # its later parts are not first parts either
                if fast is not None and not joined:  # an unsplit long line: C reads it
                    after, lines, found, parsed, unwrapped = fast(
                        buffer, start, min(position, end), decode, decode_errors, by_key,
                        bounds, to_utc, new_endpoint, utc, max_line, own_parser, prefilter,
                        wrapped,
                    )  # fmt: skip
                    count += lines
                    records += found
                    enveloped += unwrapped
                    self.parsed_lines += parsed
                    if after != start:
                        continue
                    # C left the line to this loop, as it would have
            count += 1
            if stop - start > max_line:
                too_long += 1
                continue
            if prefilter and find(marker, start, stop) == -1:
                if find(process_marker, start, stop) != -1:
                    self._process_line(view[start:stop])
                elif torn_tail(buffer, start, stop):
                    dropped += 1
                    part.skip("torn")
                continue  # (else an other line)
            if buffer[start] != 0x7B:  # "{": a prefix (container runtime, pod name) first
                brace = find(b"{", start, stop)
                if brace == -1:
                    if (
                        torn_tail(buffer, start, stop)
                        and find(marker, start, stop) == -1
                        and find(process_marker, start, stop) == -1
                    ):
                        dropped += 1
                        part.skip("torn")
                    continue  # an other line
                start = brace
            line = view[start:stop]
            record = None
            if wrapped:  # most lines came in a log shipper's envelope: unwrap first
                try:
                    inner = envelope_line(decode_envelope(line))
                    if inner is not None:
                        record = decode(inner)
                        enveloped += 1
                except decode_errors:
                    record = None  # the paths below decide
            if record is None:
                try:
                    record = decode(line)
                except decode_errors:
                    if not prefilter and find(marker, start, stop) == -1:
                        if find(process_marker, start, stop) != -1:
                            self._process_line(line)
                        elif torn_tail(buffer, start, stop):
                            dropped += 1
                            part.skip("torn")
                        continue  # another logger's JSON
                    record = self._fallback(line, find(nested, start, stop) != -1)
                    if record is None:
                        continue
                    if record.__class__ is str:
                        # (from the line's own start: a runtime's part read alone?)
                        line_start = buffer.rfind(b"\n", 0, start) + 1
                        record = parse.reason_of_part(record, buffer, line_start, stop)
                        dropped += 1
                        part.skip(record)
                        continue
                    if record.__class__ is tuple:  # an enveloped line
                        record = record[0]
                        enveloped += 1
                    if typed.learn(record) and typed.rebuilds < _EAGER_REBUILDS:
                        typed.rebuild()  # so that the next line with these values is fast
                        decode = typed.decode
            ts = record.timestamp
            if ts.tzinfo is not utc:  # an offset: the same instant in UTC
                ts = parse.to_utc(ts)
                if ts is None:
                    dropped += 1
                    part.skip("invalid:timestamp")
                    continue
                record.timestamp = ts
            records += 1
            optional = optional_of(record)
            if optional != plain:
                errors += record.hopwatch_errors
            if windowed and (
                (since is not None and ts < since) or (until is not None and ts >= until)
            ):
                part.filter_out("time")
                continue
            if checks_status:
                status_key = (record.status, record.interface)
                verdict = verdicts.get(status_key)
                if verdict is None:
                    verdict = self._verdict(status_key)
                if verdict:
                    part.filter_out(verdict)
                    continue
            if ts < first:
                first = ts
            if ts > last:
                last = ts

            key = (record.method, record.route, record.view)
            stats = by_key.get(key)
            if stats is None:
                stats = self._endpoint(key)
            if tap is not None:
                tap(stats.key, record, buffer, start, stop)
            sites = record.sites
            hops = record.hops
            if optional != plain or (hops and not sites):
                # sampled, profiled, sites lost: the general accumulation
                stats.add_record(record)
                continue
            left_out = record.sites_dropped
            if left_out:  # causes left out (SITES_LIMIT): as add_record counts them
                stats.sites_dropped += left_out
                counted = 0
                for site in sites:
                    counted += site.count
                if hops > counted:
                    stats.add_left_out(record, counted, 1.0)
            if accumulate is not None:  # the C version of the block below
                accumulate(stats, record)
                continue
            # EndpointStats.add_record, inlined for a record without optional values
            acc = stats.acc
            hop_ms = record.hop_ms
            duration = record.duration_ms
            wait = record.wait_ms
            acc[A_DURATION] += duration
            acc[A_HOP_MS] += hop_ms
            acc[A_WAIT] += wait
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
            overhead = record.overhead_ms
            if overhead is None:  # a line from before overhead_ms was written
                stats.lacks_overhead(duration, wait, hops)
            else:
                acc[a_overhead] += overhead
                work = record.work_ms
                if work:
                    acc[a_work] += work
                sketch = stats.overhead_sketch
                if overhead >= least:
                    sketch.bins[int(log(overhead) * to_bin + shift)] += 1
                    if overhead > sketch.max:
                        sketch.max = overhead
                else:
                    sketch.zeros += 1
            c = stats.counters
            c[C_SYNC_TO_ASYNC] += record.sync_to_async
            c[C_ASYNC_TO_SYNC] += record.async_to_sync
            value = record.threads
            c[C_THREADS] += value
            if value > c[C_THREADS_MAX]:
                c[C_THREADS_MAX] = value
            value = record.new_loops
            if value:
                c[C_NEW_LOOPS] += value
                c[C_NEW_LOOP_RECORDS] += 1
            value = record.max_depth
            if value > c[C_DEPTH_MAX]:
                c[C_DEPTH_MAX] = value
            raw = stats.raw_status  # the records are counted here (see EndpointStats.fold)
            status = (record.status, record.interface, record.pinned_by)
            raw[status] = raw.get(status, 0) + 1
            pinned = record.pinned_ms
            if pinned is None:
                stats.pinned[1] += 1  # a line from before pinned_ms existed
            elif pinned:
                pin = stats.pinned
                pin[0] += pinned
                pin[2] += pinned
            if hop_ms > acc[A_SLOWEST_FLOOR] or (
                hop_ms == acc[A_SLOWEST_FLOOR] and micros_of(ts) <= acc[A_SLOWEST_FLOOR_AT]
            ):  # aggregate.joins_slowest
                stats.offer_slowest(hop_ms, record.request_id, timestamp_text(ts))
            if record.hop_tax_us is not None:
                stats.add_tax(hops, record.hop_tax_us, 1.0, record.duration_ms)
            if record.db_connections is not None:
                stats.add_concurrency(
                    record.db_connections, record.max_in_flight, record.concurrent_ms
                )
            raw_sites = stats.raw_sites  # a defaultdict(list): each site's ms and overhead
            for site in sites:
                values = raw_sites[site.site, site.kind, site.direction, site.call_site, site.count]
                values.append(site.ms)
                values.append(site.overhead_ms)

        if bounds[0] < first:
            first = bounds[0]
        if bounds[1] > last:
            last = bounds[1]
        errors += bounds[2]
        if too_long:
            part.skip("line_too_long", too_long)
        # Most lines are records: msgspec refuses another logger's line about as fast
        # as bytes.find would look for the marker in it, so only look when it pays.
        self._prefilter = (records + dropped) * _PREFILTER_BELOW < count
        self._wrapped = enveloped * 2 > records  # try the envelope first in the next buffer
        self.enveloped += enveloped
        part.lines += count
        part.records += records
        part.other_lines += count - records - dropped - too_long
        part.hopwatch_errors += errors
        if first is not _LATEST:
            part.see_timestamp(timestamp_text(first))
            part.see_timestamp(timestamp_text(last))

        typed.rebuild()
        self._blocks += 1
        if self._blocks % _FOLD_EVERY_BLOCKS == 0:
            part.fold()

    def _read_split(
        self,
        buffer: bytes | bytearray,
        start: int,
        stop: int,
        part: parse.Part,
        end: int,
        joined: set[int],
        loose: set[int],
    ) -> bool | None:
        """Read the line whose first part is ``buffer[start:stop]`` joined with its stream's
        later parts in ``buffer[:end]`` (lines of other streams may come in between): True
        when it was read as one line (the later parts' starts go into ``joined``), None when
        it cannot be joined (its last part is not there, or it would be longer than
        MAX_LINE_BYTES: the parts are then read as they are, the stream's later ones too),
        False when the first part's own last part was lost.

        A container killed in the middle of writing a line leaves its first parts without
        their last one; the restarted container's lines follow in the same stream, so the
        next last part is another line's. Then the joined line is broken (a hopwatch line
        skipped) while a line made of the later parts alone, from one of them on, is a
        record: such a record is never lost. The first part and the parts before that one
        are read as they come (the first part, cut, as truncated; see ``loose``), and the
        rest is read from that part on (joined again when it is a first part itself). The
        check costs nothing for the joined lines that are read (one comparison of the
        skip counts); memory stays bounded by MAX_LINE_BYTES per line built."""
        found = self._join(buffer, start, stop, part, end)
        if found is None:
            return None
        head, shares, tail, later = found
        partial = self.partial
        skipped, lines = partial.skipped.copy(), partial.lines
        self._feed_joined(b"".join((head, *shares, tail)))
        if partial.skipped != skipped:  # a broken line: did it swallow a whole one?
            for index in range(1, len(shares)):
                result = parse.decode_line(b"".join((head, *shares[index:], tail)))
                if result is not None and not isinstance(result, str):  # a record
                    partial.skipped.clear()  # the joined line was never read
                    partial.skipped.update(skipped)
                    partial.lines = lines
                    loose.update(later[: index - 1])
                    return False
        joined.update(later)
        return True

    def _join(
        self,
        buffer: bytes | bytearray,
        start: int,
        stop: int,
        part: parse.Part,
        end: int,
    ) -> tuple[bytes, list[bytes | bytearray], bytes, list[int]] | None:
        """The line whose first part is ``buffer[start:stop]``, joined with its stream's
        later parts in ``buffer[:end]``, as (the last part's line before its share, the
        parts' shares, the last part's line after its share, where the later parts' lines
        start); None when its last part is not there or it would be longer than
        MAX_LINE_BYTES."""
        stream, _partial, share_start, share_stop = part
        shares = [buffer[share_start:share_stop]]
        size = share_stop - share_start
        later: list[int] = []
        position = stop + 1
        while position < end:
            line_start = position
            line_stop = buffer.find(b"\n", line_start, end)
            if line_stop == -1:
                line_stop = end
            position = line_stop + 1
            other = parse.line_part(buffer, line_start, line_stop)
            if other is None or other[0] != stream:
                continue
            later.append(line_start)
            shares.append(buffer[other[2] : other[3]])
            size += other[3] - other[2]
            if size > parse.MAX_LINE_BYTES:
                return None
            if not other[1]:  # the last part: the line is whole
                head = bytes(buffer[line_start : other[2]])
                return head, shares, bytes(buffer[other[3] : line_stop]), later
        return None

    def _feed_joined(self, line: bytes) -> None:
        """One line joined from its parts, read as feed reads a buffer (without changing
        the mode feed chose for the next buffer, or when it folds)."""
        saved = self._prefilter, self._wrapped, self._blocks
        self._blocks = 0
        self.feed(line + b"\n")
        self._prefilter, self._wrapped, self._blocks = saved

    def skip_lines(self, reason: str, count: int = 1) -> None:
        """Lines the reader dropped unread (e.g. longer than MAX_LINE_BYTES)."""
        self.partial.lines += count
        self.partial.skip(reason, count)

    def finish(self) -> Partial:
        self.partial.fold()
        return self.partial

    def restart(self, partial: Partial) -> Partial:
        """Finish the partial read so far and go on into ``partial``, keeping what the
        scanner learned (the decoder's strings, its modes): a piece of the input per
        partial (parallel.py) without a new scanner per piece."""
        done = self.finish()
        self.partial = partial
        self._by_key = {}
        return done


def _peeled(line: memoryview) -> Any:
    """The record inside ``line``'s layers (parse.peel) as the typed decoder reads it:
    (Record,) when it came in an envelope, a Record, or None (none, or not one it reads)."""
    inner, peeled = parse.peel(line)
    if inner is None:
        return None
    try:
        record = parse.decode_record(inner)
    except parse.DECODE_ERRORS:
        return None
    return (record,) if peeled else record


def _bound(text: str | None) -> datetime | None:
    """A --since / --until bound (canonical text) as the datetime records are compared with."""
    return None if text is None else parse.parse_timestamp(text)
