"""Reading the sources, in one process or split across cores.

Small input is read in this process. Large input (:data:`PARALLEL_MIN_BYTES` of
files or more, and more than one usable core) is cut into one share per
process: plain files by byte ranges (each process reads the lines that *start*
in its range, so no line is lost or read twice), gzip files whole (a gzip
stream cannot be entered in the middle). The main process reads one share
itself (and stdin, which cannot be split); the others run in child processes
that send back a folded :class:`~hopwatch.report.aggregate.Partial`, merged in
share order so the result does not depend on which process finished first.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Final

from hopwatch.report.aggregate import Partial
from hopwatch.report.inputs import InputError, Source, TruncatedInput, read_source
from hopwatch.report.scan import Filters, Scanner

#: Below this many bytes of files, starting processes costs more than it saves.
PARALLEL_MIN_BYTES: Final = 32 * 1024 * 1024
#: Decompressing and reading a gzip byte costs about this many plain bytes.
GZIP_COST: Final = 8


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


def read_pieces(pieces: list[Piece], filters: Filters) -> Partial:
    """One process's work: every piece, in order, into one folded Partial."""
    partial = Partial()
    scanner = Scanner(partial, filters)

    def too_long(count: int) -> None:
        scanner.skip_lines("line_too_long", count)

    for piece in pieces:
        if piece.start == 0:
            partial.files += int(piece.source.path is not None)
        blocks, close = read_source(piece.source, too_long, piece.start, piece.end)
        try:
            for buffer, end in blocks:
                partial.bytes += end
                scanner.feed(buffer, end)
        except TruncatedInput:
            partial.truncated_inputs.append(piece.source.name)
        finally:
            close()
    return scanner.finish()


def plan(sources: list[Source], processes: int) -> list[list[Piece]]:
    """Shares of about equal cost; the first one (the main process's) gets stdin."""
    shares: list[list[Piece]] = [[] for _ in range(processes)]
    loads = [0] * processes
    for source in sources:
        if source.path is None:
            shares[0].append(Piece(source))
    for source in sorted((s for s in sources if s.gzip), key=lambda s: -s.size):
        share = loads.index(min(loads))  # largest first, each to the least loaded share
        shares[share].append(Piece(source))
        loads[share] += source.size * GZIP_COST
    plain = [s for s in sources if s.path is not None and not s.gzip]
    target = (sum(loads) + sum(s.size for s in plain)) / processes
    share = 0
    for source in plain:
        if source.size == 0:
            shares[share].append(Piece(source))
            continue
        start = 0
        while start < source.size:
            while share < processes - 1 and loads[share] >= target:
                share += 1
            last = share == processes - 1
            room = source.size - start if last else max(1, math.ceil(target - loads[share]))
            end = min(source.size, start + room)
            shares[share].append(Piece(source, start, None if end >= source.size else end))
            loads[share] += end - start
            start = end
    return shares


def _child(pieces: list[Piece], filters: Filters, connection: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    try:
        result: Any = ("ok", read_pieces(pieces, filters))
    except InputError as exc:
        result = ("error", str(exc))
    except Exception as exc:
        result = ("error", f"internal error in a reader process: {exc!r}")
    connection.send(result)
    connection.close()


def _context() -> Any:
    # fork starts a reader in milliseconds and re-imports nothing; elsewhere spawn.
    if sys.platform == "linux":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def read_all(
    sources: list[Source],
    filters: Filters,
    jobs: int | None = None,
) -> Partial:
    """Read every source into one Partial, in parallel when it is worth it."""
    file_bytes = sum(s.size * (GZIP_COST if s.gzip else 1) for s in sources if s.path)
    processes = jobs if jobs is not None else usable_cpus()
    if jobs is None and file_bytes < PARALLEL_MIN_BYTES:
        processes = 1
    shares = [share for share in plan(sources, max(1, processes)) if share]
    if len(shares) <= 1:
        return read_pieces([Piece(source) for source in sources], filters)
    context = _context()
    children = []
    try:
        for share in shares[1:]:
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=_child, args=(share, filters, sender), daemon=True)
            process.start()
            sender.close()
            children.append((process, receiver))
        merged = read_pieces(shares[0], filters)
        for process, receiver in children:
            try:
                status, payload = receiver.recv()
            except EOFError:
                raise InputError("a reader process died (out of memory?)") from None
            if status != "ok":
                raise InputError(payload)
            merged.merge(payload)
            process.join()
        return merged
    finally:
        for process, receiver in children:
            receiver.close()
            if process.is_alive():
                process.terminate()
                process.join()
