"""Reading the sources, in one process or split across cores.

Small input is read in this process. Large input (:data:`PARALLEL_MIN_BYTES` of
files or more, and more than one usable core) is cut into pieces: plain files
into byte ranges (a process reads the lines that *start* in its range, so no
line is lost or read twice), compressed files (gzip, bzip2, xz) whole (a
compressed stream cannot be entered in the middle). There are a few pieces per
process, and each process claims the next unread piece from a shared counter
when it is done with one, so a process slowed down by a busy machine simply
reads fewer pieces. The main process
reads stdin and other streams (FIFOs: they cannot be split or reopened) and
claims pieces too; the others are
child processes that send back a folded
:class:`~hopwatch.report.aggregate.Partial`. Each piece counts as read into a partial of
its own, merged into its process's as soon as it is read (while a process has seen
fewer endpoints than the cap, one partial for its pieces is the same, and that is what
it reads them into: _claim_and_read). Partials merge exactly (counts,
sketches, maxima, an endpoint's causes below its cap, the slowest requests with
their ties); only floating-point sums may differ in their last bits, added in
another order, and the merged partial's sums are put on the log's grid
(:meth:`~hopwatch.report.aggregate.Partial.settle`), as one process's are: the
same numbers, bit for bit, for logged figures (docs/report.md, "Memory and speed").
Which process reads which piece changes from run to run; everything else in the
report stays the same because every other merge is exact, and
the pieces depend only on the input and the number of processes. Past ENDPOINT_CAP
each piece sums the endpoints it leaves out as it comes, and merging keeps the
endpoints first in key order (Partial.merge): there a split read differs from a single
one, but alike in every run with the same pieces. Past twice aggregate.SITE_CAP causes
of one endpoint, which it keeps depends on the order partials merge in: there two
runs can differ.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Final

from hopwatch._cli import to_devnull
from hopwatch.report.aggregate import OVERFLOW_KEY, Partial
from hopwatch.report.inputs import InputError, Source, TruncatedInput, read_source
from hopwatch.report.scan import Filters, Scanner

#: Below this many bytes of files, starting processes costs more than it saves.
PARALLEL_MIN_BYTES: Final = 32 * 1024 * 1024
#: Decompressing and reading a compressed byte costs about this many plain bytes.
GZIP_COST: Final = 8
COMPRESSED_COST: Final = {"gzip": GZIP_COST, "bzip2": 40, "xz": 20}
#: Pieces per process: enough for a slowed process to fall behind gracefully.
PIECES_PER_PROCESS: Final = 6
MIN_PIECE_BYTES: Final = 4 * 1024 * 1024


#: Makes a Partial's extra account (picklable, for processes started by spawn).
Extra = Callable[[], Any] | None


@dataclass(frozen=True)
class Piece:
    """Part of one source: the lines that start in [start, end) (end None: to the end)."""

    source: Source
    start: int = 0
    end: int | None = None


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _read_piece(piece: Piece, scanner: Scanner) -> None:
    partial = scanner.partial

    def too_long(count: int) -> None:
        scanner.skip_lines("line_too_long", count)

    if piece.start == 0:
        partial.files += int(piece.source.path is not None)
    scanner.source = piece.source.name
    blocks, close = read_source(piece.source, too_long, piece.start, piece.end)
    try:
        for buffer, end in blocks:
            partial.bytes += end
            scanner.feed(buffer, end)
    except TruncatedInput:
        partial.truncated_inputs.append(piece.source.name)
    finally:
        close()


def read_pieces(pieces: list[Piece], filters: Filters, extra: Extra = None) -> Partial:
    """One process's work: every piece, in order, into one folded Partial."""
    scanner = Scanner(_partial(extra), filters)
    for piece in pieces:
        _read_piece(piece, scanner)
    return scanner.finish()


def plan(sources: list[Source], processes: int) -> tuple[list[Piece], list[Piece]]:
    """(what only the main process can read: stdin, pieces for any process, costliest first)."""
    own = [Piece(source) for source in sources if source.stream is not None]
    shared = [Piece(source) for source in sources if source.compression and source.stream is None]
    plain = [source for source in sources if source.splittable]
    total = sum(_weight(s) for s in sources if s.compression) + sum(s.size for s in plain)
    piece_bytes = max(MIN_PIECE_BYTES, math.ceil(total / (processes * PIECES_PER_PROCESS)))
    for source in plain:
        count = max(1, math.ceil(source.size / piece_bytes))
        cuts = [source.size * i // count for i in range(count + 1)]
        for start, end in itertools.pairwise(cuts):
            shared.append(Piece(source, start, None if end >= source.size else end))

    def cost(piece: Piece) -> int:
        if piece.source.compression:
            return _weight(piece.source)
        return (piece.source.size if piece.end is None else piece.end) - piece.start

    shared.sort(key=cost, reverse=True)  # the big ones first: the last claims are short
    return own, shared


def _partial(extra: Extra) -> Partial:
    """An empty Partial, with what ``extra`` makes for its ``extra``."""
    return Partial(extra() if extra else None)


def _weight(source: Source) -> int:
    """A file's size in plain bytes' worth of reading (compressed bytes cost more)."""
    return source.size * COMPRESSED_COST.get(source.compression, 1)


def _read_alone(piece: Piece, scanner: Scanner, extra: Extra, into: Partial) -> None:
    """Read one piece into a Partial of its own, and merge that into ``into``: which
    endpoints a piece's partial keeps past the cap depends on the piece alone, and
    partials merge alike in any order (Partial.merge), so the report does not depend on
    which process read which piece."""
    _read_piece(piece, scanner)
    into.merge(scanner.restart(_partial(extra)))


def _claim_and_read(
    pieces: list[Piece], counter: Any, scanner: Scanner, extra: Extra, into: Partial
) -> None:
    """Read the pieces this process claims, as if each were read alone (_read_alone).

    While no endpoint went past the cap, one partial for all of them is the same as one
    per piece merged (no piece can have more endpoints than all of them), and cheaper (a
    merge per piece cost a tenth of the main process's time): they are read into one.
    When the cap is passed, the pieces read so far (plain files or compressed files,
    never a stream: those are read alone) are read again, each alone, and so are the rest.
    """
    claimed: list[Piece] = []
    alone = False
    while True:
        with counter.get_lock():
            index = counter.value
            counter.value = index + 1
        if index >= len(pieces):
            break
        piece = pieces[index]
        if alone:
            _read_alone(piece, scanner, extra, into)
            continue
        claimed.append(piece)
        _read_piece(piece, scanner)
        if OVERFLOW_KEY in scanner.partial.endpoints:  # past ENDPOINT_CAP
            scanner.restart(_partial(extra))  # dropped
            for again in claimed:
                _read_alone(again, scanner, extra, into)
            alone = True
    if not alone:
        into.merge(scanner.restart(_partial(extra)))


def _child(
    pieces: list[Piece],
    counter: Any,
    filters: Filters,
    connection: Connection,
    extra: Extra,
    inherited: tuple[Connection, ...] = (),
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # its terminate(), not the CLI's handler
    # The read ends of the result pipes a fork copied from the parent (this one's own
    # and earlier readers'): with them open here, a parent ended by a signal leaves this
    # process blocked for ever sending its result. Closed, sending fails, and it ends.
    for receiver in inherited:
        receiver.close()
    to_devnull(1)  # no output here: a pipeline reading the report ends when the report does
    try:
        partial = _partial(extra)
        scanner = Scanner(_partial(extra), filters)
        _claim_and_read(pieces, counter, scanner, extra, partial)
        result: Any = ("ok", partial)
    except InputError as exc:
        result = ("error", str(exc))
    except Exception as exc:
        result = ("error", f"internal error in a reader process: {exc!r}")
    try:
        connection.send(result)
        connection.close()
    except OSError:  # the parent is gone (ended by a signal): nobody to tell
        pass


def _context() -> Any:
    # fork starts a reader in milliseconds and re-imports nothing; elsewhere spawn.
    if sys.platform == "linux":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def read_all(
    sources: list[Source],
    filters: Filters,
    jobs: int | None = None,
    extra: Extra = None,
) -> Partial:
    """Read every source into one Partial, in parallel when it is worth it; ``extra``
    makes each process's ``Partial.extra`` (see aggregate.Partial)."""
    file_bytes = sum(_weight(s) for s in sources if s.stream is None)
    processes = jobs if jobs is not None else usable_cpus()
    if jobs is None and file_bytes < PARALLEL_MIN_BYTES:
        processes = 1
    own, shared = plan(sources, max(1, processes))
    processes = min(processes, len(shared) + (1 if own else 0))
    if processes <= 1:
        partial = read_pieces([Piece(source) for source in sources], filters, extra)
        partial.settle()
        return partial
    context = _context()
    counter = context.Value("q", 0)  # the next piece to claim, shared by every process
    children: list[tuple[Any, Connection]] = []
    try:
        for _ in range(processes - 1):
            receiver, sender = context.Pipe(duplex=False)
            # a forked reader closes the read ends it got (spawn passes none)
            forked = context.get_start_method() == "fork"
            inherited = (receiver, *(other for _, other in children)) if forked else ()
            process = context.Process(
                target=_child,
                args=(shared, counter, filters, sender, extra, inherited),
                daemon=True,
            )
            process.start()
            sender.close()
            children.append((process, receiver))
        merged = _partial(extra)
        scanner = Scanner(_partial(extra), filters)
        for piece in own:
            _read_alone(piece, scanner, extra, merged)
        _claim_and_read(shared, counter, scanner, extra, merged)
        for process, receiver in children:
            try:
                status, payload = receiver.recv()
            except EOFError:
                raise InputError("a reader process died (out of memory?)") from None
            if status != "ok":
                raise InputError(payload)
            merged.merge(payload)
            process.join()
        merged.settle()  # the same sums as one process's, bit for bit
        return merged
    finally:
        for process, receiver in children:
            receiver.close()
            if process.is_alive():
                process.terminate()
                process.join()
