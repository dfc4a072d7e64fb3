"""Turning a finished request record into one ``hopwatch.request`` line, with structlog.

The line's fields are documented in ``docs/log-schema.md`` and listed in
:mod:`hopwatch.schema` (a contract: the report reads only those).
:func:`build_event` is a pure function from a record to an ordered dict;
:class:`Emitter` decides whether to log it (sampling, thresholds) and writes it
through a structlog logger of its own.

hopwatch never calls ``structlog.configure()``: its logger is made with
``structlog.wrap_logger`` and every option given explicitly, so the project's
own structlog configuration (or its absence) neither affects hopwatch's lines
nor is affected by them.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import random
import re
import select
import stat
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any, Final, TextIO, cast

import orjson
import structlog

from hopwatch import _connections, _errors, _executors, _hotpath
from hopwatch._cli import writes_utf8
from hopwatch._recorder import Hop, RequestRecord, new_request_id
from hopwatch.conf import lines_lost_to, resolve_hook, silenced
from hopwatch.schema import EVENT, NAMES, SCHEMA_VERSION

#: The route of a request no URL pattern resolved (LOG_RAW_PATHS off): never its raw path.
UNRESOLVED: Final = "(unresolved)"

#: Fields the extra-fields hook may not replace: every documented one.
RESERVED: Final = NAMES

# What became of a request's line (RequestRecord.line, set by Emitter.__call__): handed
# to the output, left out by a filter (the setting's name), or the output raised.
# "written" means handed over, not that it reached a log: with OUTPUT "logging" the
# logger's level, its handlers and their filters decide that after (W004 warns of
# none), and OUTPUT_BUFFER holds the line before writing it; hopwatch does not ask.
LINE_WRITTEN: Final = "written"
LINE_MIN_HOPS: Final = "MIN_HOPS"
LINE_MIN_HOP_MS: Final = "MIN_HOP_MS"
LINE_SAMPLED_OUT: Final = "SAMPLE_RATE"
LINE_FAILED: Final = "failed"
LINE_OUTCOMES: Final = (LINE_WRITTEN, LINE_MIN_HOPS, LINE_MIN_HOP_MS, LINE_SAMPLED_OUT, LINE_FAILED)

# C0, DEL, C1, and U+2028/U+2029: str.splitlines() and JavaScript read those two as
# line breaks, so a path carrying them could split one log line in two downstream
_CONTROL = dict.fromkeys([*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029])


def _ms(ns: int) -> float:
    """Nanoseconds as milliseconds to the microsecond (integer rounding: a float
    ``round()`` runs the correctly-rounded decimal algorithm, ten times slower)."""
    return ((ns + 500) // 1000) / 1000


# (second, "YYYY-MM-DDTHH:MM:SS") of the last line: the date part is formatted
# once a second, the microseconds every line.
_second_text: tuple[int, str] = (0, "")


def _timestamp(now: datetime | None) -> str:
    global _second_text
    if now is not None:
        return now.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    second, micro = divmod(time.time_ns() // 1000, 1_000_000)
    cached = _second_text
    if cached[0] != second:
        cached = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        _second_text = cached
    return f"{cached[1]}.{micro:06d}Z"


def clean_path(path: str | None, limit: int) -> str:
    """A raw path fit for a log: no query string, no control characters, bounded."""
    if not path:
        return "/"
    path = path.split("?", 1)[0].translate(_CONTROL)
    if len(path) > limit:
        path = path[:limit] + "..."
    return path


def _hop_detail(
    hop: Hop, start_ns: int, positions: dict[int, int], handler_thread: int
) -> dict[str, Any]:
    cause = hop.cause
    parent = hop.parent
    return {
        "direction": hop.direction,
        "kind": cause.kind,
        "site": cause.site,
        "call_site": cause.call_site,
        "depth": hop.depth,
        "thread_sensitive": hop.thread_sensitive,
        "new_loop": hop.new_loop,
        "thread": hop.thread_id,
        "wait_ms": _ms(hop.wait_ns),
        "run_ms": _ms(hop.run_ns),
        "resume_ms": _ms(hop.resume_ns),
        "outcome": hop.outcome,
        # Where the crossing sits in the request, for a timeline: when it was called,
        # the entry it was made inside (its code called this one), and from which thread.
        "at_ms": _ms(max(0, hop.called_ns - start_ns)),
        "parent": positions.get(id(parent)) if parent is not None else None,
        "caller_thread": parent.thread_id if parent is not None else handler_thread,
    }


#: The methods a line usually has, as logged (others are cleaned on each line).
_METHODS: Final = {m: m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}


def _request_fields(
    record: RequestRecord, path_limit: int, raw_paths: bool
) -> tuple[str, str, str, str | None, int | None, str, int]:
    """request_id, method, route, view, status, interface and duration_ns, as logged.

    A request the middleware never saw (its body cut short by the client,
    ``RequestAborted`` before the middleware chain) is given its id here."""
    if not record.request_id:
        record.request_id = new_request_id()
    route = record.route or (clean_path(record.path, path_limit) if raw_paths else UNRESOLVED)
    method = _METHODS.get(record.method)  # type: ignore[arg-type]
    if method is None:
        method = (record.method or "").upper()[:16].translate(_CONTROL)
    return (
        record.request_id,
        method,
        route,
        record.view,
        record.status,
        record.interface,
        record.duration_ns,
    )


def _pinned_site(record: RequestRecord) -> str | None:
    pinning = record.top_pinning_cause()
    return pinning.site if pinning is not None else None


def _add_tail(
    record: RequestRecord,
    event: dict[str, Any],
    detail_limit: int | None,
    classifier: _executors.Classifier | None,
) -> None:
    """The fields after ``sites``: the kept hops in detail mode, then the Django layer's."""
    if detail_limit is not None:
        kept = record.details[:detail_limit]
        # ids of live objects (every kept hop, and each one's parent) are unique
        positions = {id(hop): index for index, hop in enumerate(kept)}
        start, handler = record.started_ns, record.handler_thread_id
        event["detail"] = details = [_hop_detail(hop, start, positions, handler) for hop in kept]
        event["detail_dropped"] = record.count - len(kept)
        _executors.annotate_detail(classifier, details)
    extra = record.extra
    if extra:
        for key in ("profile", "scope", "response_closed"):
            if key in extra:
                event[key] = extra[key]


def build_event(
    record: RequestRecord,
    sites_limit: int = 10,
    detail_limit: int | None = None,
    path_limit: int = 200,
    raw_paths: bool = False,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The documented fields of one request line, in schema order.

    The reference for :func:`encode_head`, which writes the same line's head
    as text in C (the emitter's path when the accelerator is built)."""
    request_id, method, route, view, status, interface, duration_ns = _request_fields(
        record, path_limit, raw_paths
    )
    sites, causes = record.line_sites(sites_limit)
    event: dict[str, Any] = {
        "event": EVENT,
        "schema": SCHEMA_VERSION,
        "timestamp": _timestamp(now),
        "request_id": request_id,
        "method": method,
        "route": route,
        "view": view,
        "status": status,
        "interface": interface,
        "duration_ms": _ms(duration_ns),
        "hops": record.count,
        "hop_ms": _ms(record.wall_ns),
        "wait_ms": _ms(record.wait_ns),
        "overhead_ms": _ms(record.overhead_ns),
        "work_ms": _ms(record.work_ns),
        "sync_to_async": record.sync_to_async,
        "async_to_sync": record.async_to_sync,
        "threads": record.thread_count,
        "new_loops": record.new_loops,
        "max_depth": record.max_depth,
        "pinned_ms": _ms(record.pinned_ns),
        "pinned_by": _pinned_site(record),
    }
    classifier = _executors.thread_fields(record, event)
    event["sites"] = sites
    if causes > sites_limit:
        event["sites_dropped"] = causes - sites_limit
    _add_tail(record, event, detail_limit, classifier)
    return event


#: What LedgerCore.encode_usual needs of the Python side, once: the usual methods,
#: the interfaces whose handler runs on the request's thread, the executor kinds a
#: usual request's thread can be, and where the record keeps its database
#: connections' threads.
_USUAL: Final = (
    _METHODS,
    _executors.SYNC_INTERFACES,
    _executors.SINGLE_THREAD,
    _executors.CALLER_THREAD,
    _executors.CONTEXT_THREAD,
    _executors.OWN_EXECUTOR,
    _executors.DEFAULT_POOL,
    _connections.EXTRA_KEY,
)

#: The line's first two fields, as encode_line starts it.
_HEAD_PREFIX: Final = orjson.dumps({"event": EVENT, "schema": SCHEMA_VERSION}).decode()[:-1]


def encode_head(
    record: RequestRecord,
    sites_limit: int = 10,
    detail_limit: int | None = None,
    path_limit: int = 200,
    raw_paths: bool = False,
) -> tuple[str, dict[str, Any]] | None:
    """The line as :func:`build_event` makes it, split in two: its head up to
    ``sites`` as JSON text (written in C, from the record's ledger), and the
    fields after it as a dict. None without the C accelerator."""
    encode = getattr(record, "encode_line", None)
    if encode is None:
        return None
    tail: dict[str, Any] = {}
    if detail_limit is None:
        # The usual request (one thread, no crossing inside another, or no crossing
        # at all; a resolved route, a usual method): the fields below worked out in
        # C. None otherwise.
        usual = record.encode_usual(
            _HEAD_PREFIX,
            _USUAL,
            _executors.known_single_ids or _executors.single_thread_ids(),
            sites_limit,
        )
        if usual is not None:
            if record.extra:
                _add_tail(record, tail, None, None)
            return usual, tail
    facts = _executors.thread_facts(record)
    head = encode(
        _HEAD_PREFIX,
        *_request_fields(record, path_limit, raw_paths),
        record.thread_count,
        _pinned_site(record),
        facts.executors,
        facts.max_in_flight,
        facts.concurrent_ns,
        facts.db_connections,
        sites_limit,
    )
    _add_tail(record, tail, detail_limit, facts.classifier)
    return head, tail


_ORJSON_OPTIONS: Final = orjson.OPT_NON_STR_KEYS

#: Where structlog's event dict holds the whole request line (see _renderer): the
#: event itself, passed positionally (no keyword dict to build and merge per line).
_WHOLE_LINE: Final = "event"


def _json_default(value: Any) -> Any:
    return str(value)


_LEFT_OUT: Final = object()
_AS_IS: Final = (str, bool, float, type(None))


def _encoded_extra(key: str, value: Any) -> Any:
    """An extra field's value, encoded here and now (an ``orjson.Fragment``), or
    ``_LEFT_OUT``: a value that cannot be written (its ``str()`` raises: a lazy user
    read on the event loop; an int past 64 bits is written as text) is left out of
    the line and counted, and the line is written. Encoded at render time instead,
    such a value lost the whole line."""
    if type(value) in _AS_IS:
        if type(value) is not str or value.isascii() or _writable(value):
            return value
        _errors.report(f"HOPWATCH['EXTRA_FIELDS'] field {key!r}", _NOT_UTF8)
        return _LEFT_OUT
    try:
        return orjson.Fragment(orjson.dumps(value, default=_json_default, option=_ORJSON_OPTIONS))
    except Exception as exc:
        if issubclass(type(value), int):  # past 64 bits (type(): a lazy object is not asked)
            return str(value)
        _errors.report(f"HOPWATCH['EXTRA_FIELDS'] field {key!r}", exc)
        return _LEFT_OUT


def _writable(text: str) -> bool:
    """Whether UTF-8 can write ``text``: not when it holds a lone surrogate (text decoded
    with ``surrogateescape``, or ``"\\ud800"`` itself), which no JSON encoder of the line
    writes (orjson refuses the whole line)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_NOT_UTF8: Final = ValueError("a str with a lone surrogate, which UTF-8 cannot write")


_NON_ASCII: Final = re.compile("[^\x00-\x7f]")


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}"


def ascii_line(line: str) -> str:
    """A JSON line with every non-ASCII character written as JSON's ``\\uXXXX`` escape
    (a pair of them past U+FFFF): the same JSON, read back to the same values, that any
    stream encoding writes as is. Non-ASCII characters are only ever inside the line's
    strings, where the escape means the character itself."""
    return _NON_ASCII.sub(_json_escape, line)


def _renderer(logger_name: str, escape: bool = False) -> Callable[..., str]:
    """structlog's last processor. The emitter hands structlog each line whole and in
    order (the event first: the schema and grep want it there; structlog would put it
    last), as the event itself; it is encoded once, with level and logger added last.
    Compact JSON; non-finite floats become null, other objects str(). ``escape``: a
    line with non-ASCII characters has them escaped (:func:`ascii_line`), for an output
    that may not write UTF-8 (an ASCII line, the usual one, pays one ``isascii()``,
    which CPython answers from a flag of the string)."""

    ending = orjson.dumps({"logger": logger_name}).decode()[1:]

    def render(_logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        line = event_dict[_WHOLE_LINE]
        if isinstance(line, tuple):  # (head text, the fields after it): encode_head's
            head, tail = line
            if tail:
                fields = orjson.dumps(tail, default=_json_default, option=_ORJSON_OPTIONS)
                head = f"{head},{fields.decode()[1:-1]}"
            text = f'{head},"level":"{method}",{ending}'
        else:
            line["level"] = method
            line["logger"] = logger_name
            text = orjson.dumps(line, default=_json_default, option=_ORJSON_OPTIONS).decode()
        if escape and not text.isascii():
            return ascii_line(text)
        return text

    return render


class _StdlibLine:
    """A structlog logger for a stdlib logger: one line, delivered as
    ``logger.info(line)`` would deliver it, for less.

    **The record.** It is ``logging.LogRecord``'s own, with the very fields,
    values and order ``LogRecord.__init__`` gives it, without ``findCaller()``'s
    walk over the stack (the line has no caller worth naming). While the record
    factory and ``makeRecord`` are the stdlib's, the fields that are the same on
    every line (the logger's name, the level, the path and the file and module
    names derived from it) are copied from a record the factory made once, and
    only the others (the time, thread, process and task) are read per line, as
    ``__init__`` reads them (``_hotpath.fill_log_record``: in C when it is
    built). Measured with callgrind: 11,100 instructions a record against
    ``makeRecord``'s 22,900 on Python 3.11, 15,600 against 23,100 on 3.13.
    (``tests/test_log.py`` holds the two to the same ``__dict__`` on every
    supported Python.) A custom factory or ``makeRecord`` gets called as usual.

    **The delivery** is ``Logger.handle``'s, without the record where nothing
    reads it (``_hotpath.deliver_line``, in C when it is built; its reference
    says how): a handler of the configuration the docs give (a
    ``logging.FileHandler`` or ``StreamHandler`` itself, no filters, the plain
    ``"%(message)s"`` formatter or none, none of its methods replaced on the
    handler itself) has the line written to its stream, under its lock, and
    flushed, as its ``emit`` would; any other handler gets
    ``handle(record)``, and a logger with filters, of a class of its own or with
    a logging method patched (Sentry's ``callHandlers``) gets ``handle(record)``
    itself. ``tests/test_log_delivery.py`` holds both to ``logger.info``'s output
    for each of those. Measured with callgrind (per line, Django's ASGI handler,
    Python 3.12): 55,300 instructions through a plain ``FileHandler`` before
    (record 14,100, ``Logger.handle`` 36,100), 18,500 now, of which 14,100 in
    ``deliver_line``, most of that the write and flush themselves.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        made = logging.LogRecord(logger.name, logging.INFO, __file__, _LINE, "", (), None, "emit")
        self._constant = dict(made.__dict__)

    def info(self, message: str, carried: tuple[int, int] | None = None) -> None:
        logger = self._logger
        if logger.isEnabledFor(logging.INFO):
            if (
                logging.getLogRecordFactory() is logging.LogRecord
                and type(logger).makeRecord is _MAKE_RECORD
            ):
                _deliver_line(logger, message, self._record, logging)
            else:
                logger.handle(
                    logger.makeRecord(
                        logger.name, logging.INFO, __file__, _LINE, message, (), None, "emit"
                    )
                )

    msg = info

    def _record(self, message: str) -> logging.LogRecord:
        record = _new_record(logging.LogRecord)
        _fill_record(
            record, self._constant, message, _time_ns() if _NS_CLOCK else _time(), logging
        )
        return record


_MAKE_RECORD: Final = logging.Logger.makeRecord
#: The records' ``lineno``: where ``info`` writes the line (a formatter's
#: ``%(lineno)d`` read 0, pytest's log capture ``_emit.py:0``).
_LINE: Final = _StdlibLine.info.__code__.co_firstlineno
_new_record: Final = object.__new__
#: The per-line fields and the delivery (the C accelerator's when it is built: hopwatch._hotpath).
_fill_record = _hotpath.fill_log_record
_deliver_line = _hotpath.deliver_line
#: LogRecord.__init__ reads time.time_ns() from Python 3.13 on, time.time() before.
_NS_CLOCK: Final = sys.version_info >= (3, 13)
#: The clocks a record's time is read from (tests hold them and logging's to one value).
_time_ns = time.time_ns
_time = time.time


class _LineWriter:
    """A structlog logger writing one line per event to a file ``OUTPUT``
    (:class:`_LineFile`: the line goes to the file whole, or is lost and raises)."""

    def __init__(self, stream: TextIO, *, close: bool = False) -> None:
        self._stream = stream
        self._close = close
        self._lock = threading.Lock()

    def msg(self, message: str, carried: tuple[int, int] | None = None) -> None:
        with self._lock:
            self._stream.write(message + "\n")

    info = msg

    def reopen_if_moved(self, path: str) -> None:
        """Reopen ``path`` when it is no longer the file written to (see :class:`_Rotation`)."""
        with self._lock:
            old = _reopened(path, self._stream)
            if old is None:
                return
            self._stream, old = old, self._stream
        old.close()

    def close(self) -> None:
        if self._close:
            # under the lock: a line being written finishes first (its descriptor,
            # once closed, may be the number of the next file the app opens)
            with self._lock:
                self._stream.close()

    def close_at_exit(self, path: str) -> None:
        """Close the file; a line written after this opens ``path`` for itself
        (see :class:`_AppendEachWrite`)."""
        with self._lock:
            old, self._stream = self._stream, _append_each_write(path)
        old.close()


def _no_stream() -> None:
    """The dead reference of a stream never seen (or not weakly referenceable)."""
    return None


def _weak_stream(stream: TextIO) -> Callable[[], TextIO | None]:
    """A weak reference to ``stream``: hopwatch keeps no capture (``redirect_stdout``'s
    buffer, pytest's) alive once its owner drops it. A stream that cannot be weakly
    referenced (a class with ``__slots__`` and no ``__weakref__``) is not kept at all:
    it is looked at again at each line (its encoding read again), never held."""
    try:
        return weakref.ref(stream)
    except TypeError:
        return _no_stream


class _StdoutLines(_LineWriter):
    """``OUTPUT`` ``"stdout"``: each line to ``sys.stdout`` as it is when the line is
    written, as logging's last-resort handler writes to ``sys.stderr`` as it is then.
    Not the stream of the first line: a test's capture (pytest's ``capsys``,
    ``contextlib.redirect_stdout``) around a process's first request would otherwise
    get every later line, and once closed, make each a failed write. A line pays one
    read of ``sys.stdout``, a weak reference's call and an identity test; a new stream,
    one look at its encoding (its escaping, :func:`ascii_line`, is decided here, not by
    the renderer). No stream is referenced strongly: the last one is held weakly."""

    def __init__(self) -> None:  # no stream of its own (_LineWriter's is never set)
        self._close = False
        self._lock = threading.Lock()
        #: A weak reference to the stream the last line went to, and whether it needs
        #: the escapes (not UTF-8: :func:`~hopwatch._cli.writes_utf8`); one tuple, read
        #: and set whole.
        self._seen: tuple[Callable[[], TextIO | None], bool] = (_no_stream, False)

    def msg(self, message: str, carried: tuple[int, int] | None = None) -> None:
        seen = self._seen
        stream = sys.stdout
        if stream is not seen[0]():
            seen = self._seen = (_weak_stream(stream), not writes_utf8(stream))
        if seen[1] and not message.isascii():
            message = ascii_line(message)
        with self._lock:
            stream.write(message + "\n")
            stream.flush()

    info = msg

    def close(self) -> None:
        pass


class _AppendEachWrite:
    """The stream of a file ``OUTPUT`` once the interpreter's exit has closed the file:
    each write opens ``path``, appends and closes it. For a line finished after the
    atexit handlers: a request the garbage collector ends as the interpreter finalizes
    (a test client's streaming response left unread in a reference cycle, its
    ``close()`` run by the collector). No file is held open (no ``ResourceWarning``)."""

    #: It holds no file open: a rotation check has nothing to reopen (each write
    #: opens the path as it is then).
    closed = True

    def __init__(self, path: str) -> None:
        self._path = path

    #: After a write that raised: how many bytes of its text reached the file.
    taken = 0

    def write(self, text: str) -> int:
        self.taken = 0
        file = _LineFile(self._path)
        try:
            return file.write(text)
        except BaseException:
            self.taken = file.taken
            raise
        finally:
            file.close()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class _LineFile:
    """A file ``OUTPUT``'s stream: each ``write`` goes to the file at once, encoded as
    UTF-8 here and written with ``os.write`` on a descriptor of its own, unbuffered,
    opened to append (as ``open(path, "a")`` opens it). Nothing is kept for later: a
    write that fails leaves no bytes behind. (A ``TextIOWrapper``'s ``BufferedWriter``
    kept the bytes a full disk refused and wrote them with the next line that fitted:
    a line counted as lost was written after all, its errors reported twice, and once
    its 8 KiB buffer was full, later lines were the ones lost.)

    A write the disk cuts short (it filled up during the write: ``ENOSPC``, or
    ``EFBIG`` at ``RLIMIT_FSIZE``) leaves the start of its text in the file: the rest
    is dropped and the write raises (its line, or the held lines it did not write
    whole, lost and counted by the caller). The next write starts with a newline,
    which ends that fragment, so the lines after it start whole on lines of their own
    (``hopwatch report`` skips the fragment and counts it). Removing the fragment
    instead (``ftruncate``) could cut another process's line appended after it."""

    encoding = "utf-8"

    #: After a write that raised: how many bytes of its text reached the file (the
    #: held lines before them were written whole: :meth:`_HeldLines.write_held`).
    taken = 0

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._fd = -1  # (for __del__ when the open fails)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        #: The last write stopped inside a line: the next one ends that line first. So
        #: does the first, when the file ends inside a line (one a full disk cut before
        #: the file was opened again: a change of the settings, a rotation's check).
        self._torn = _ends_inside_a_line(path, self._fd)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError("I/O operation on closed file")
        return self._fd

    def write(self, text: str) -> int:
        data = text.encode()
        if self._torn:
            self._write_from(b"\n" + data, 0, 1)
        else:
            try:
                # (a closed file's descriptor is -1: EBADF, never another file's)
                written = os.write(self._fd, data)
            except BaseException:
                self.taken = 0
                raise
            if written != len(data):
                self._write_from(data, written, 0)
        return len(text)

    def _write_from(self, data: bytes, written: int, lead: int) -> None:
        """The rest of ``data`` from ``written`` on (a pipe may take a write in parts);
        when a write fails, what was written stays, and whether it ended a line is kept.
        ``lead``: the bytes before the text (the newline ending a torn line)."""
        try:
            while written < len(data):
                done = os.write(self._fd, memoryview(data)[written:])
                if not done:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                written += done
        finally:
            self.taken = max(written - lead, 0)
            if written:
                self._torn = data[written - 1] != 0x0A  # 0x0A: "\n"

    def flush(self) -> None:
        pass

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    #: Dropped unclosed (an output never closed): its descriptor closed, as a file's.
    __del__ = close


def _ends_inside_a_line(path: str | os.PathLike[str], fd: int) -> bool:
    """Whether the regular file ``path``, open as ``fd``, ends inside a line: its last
    byte is not a newline. A file hopwatch writes ends inside one only when a disk cut a
    write short (see :class:`_LineFile`). Read once per opening: an ``fstat``, and for a
    file that is not empty, an ``open`` to read its last byte (``fd`` is for writing
    only). A file that cannot be read is taken to end a line."""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
            return False
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            return os.pread(reader, 1, info.st_size - 1) not in (b"\n", b"")
        finally:
            os.close(reader)
    except OSError:
        return False


def _open_lines(path: str | os.PathLike[str]) -> TextIO:
    return cast(TextIO, _LineFile(path))


def _append_each_write(path: str) -> TextIO:
    return cast(TextIO, _AppendEachWrite(path))


#: How often a file OUTPUT is checked for a rotation, at most (nanoseconds).
ROTATION_CHECK_NS = 1_000_000_000


def _reopened(path: str, stream: TextIO) -> TextIO | None:
    """``path`` opened anew when it no longer names the file ``stream`` writes to (it was
    renamed or removed, as by logrotate), else None. One ``stat`` and one ``fstat``."""
    if stream.closed:
        return None
    try:
        named = os.stat(path)
    except FileNotFoundError:
        named = None
    if named is not None:
        open_now = os.fstat(stream.fileno())
        if (named.st_dev, named.st_ino) == (open_now.st_dev, open_now.st_ino):
            return None
    return _open_lines(path)  # closed by its output


class _Rotation:
    """Follows a file ``OUTPUT`` across a rotation (logrotate's rename and create, a
    removed file): when a line is written, at most once a second, by the clock the
    request already read (its record's ``ended_ns``, ``perf_counter_ns``), the path is
    compared with the open file (``stat`` against ``fstat``, device and inode) and
    reopened when they differ. The request pays an attribute read and a comparison;
    the check, once a second, two system calls. Lines written between the rename and
    the check (at most a second's, after the first request that follows the rename) go
    to the renamed file."""

    __slots__ = ("_output", "_path", "due_ns")

    def __init__(self, output: _LineWriter | _HeldLines, path: str) -> None:
        self._output = output
        self._path = path
        self.due_ns = 0

    def check(self, now_ns: int) -> None:
        self.due_ns = now_ns + ROTATION_CHECK_NS
        try:
            self._output.reopen_if_moved(self._path)
        except Exception as exc:  # the directory gone, no permission: said, never raised
            _errors.report("reopening the request lines' file after a rotation", exc)


#: The longest a line held by OUTPUT_BUFFER waits before it is written, in seconds
#: (read each time the thread waits: the tests lengthen it).
HOLD_SECONDS = 1.0


class _HeldLines:
    """A structlog logger for ``OUTPUT_BUFFER``: lines held in memory and written
    together, one ``write`` and ``flush`` of the stream for many lines (inside a
    request, the ``write`` system call alone costs about 15 µs on a 2 KB line;
    docs/faq.md, "How do I make it cheaper under load?").

    The held lines are written, whole and in the order they were held:

    * when they reach ``limit`` characters, by the request that adds the last one;
    * at most :data:`HOLD_SECONDS` after the first of them was held, by a daemon
      thread (started when the process first holds a line, so a forked worker
      starts its own; it sleeps while nothing is held);
    * for ``"stdout"``, before a line made under another ``sys.stdout`` is held: each
      line goes to the ``sys.stdout`` of when it was made (a test's capture), not to
      the one of when it is written (a later test's);
    * when the output is closed: ``OUTPUT``, ``OUTPUT_BUFFER`` or ``LOGGER_NAME``
      changed (:meth:`Emitter._settings_changed`, as ``override_settings`` enters or
      exits);
    * when the process begins to end (:func:`_process_ends`); from then on each
      line is written as it comes, so a thread that finishes a request while the
      process waits for it loses nothing.

    Into a regular file the held lines go in one ``write``. Into a pipe, a socket or
    a terminal (stdout in a container, which a server's worker processes share) they
    go in pieces of whole lines of at most ``PIPE_BUF`` bytes, one ``write`` each:
    the kernel keeps such a write whole, where a longer one can be interleaved with
    another process's write, tearing lines (a line longer than that goes alone).

    A process that is killed without exiting (``SIGKILL``, the OOM killer,
    ``os._exit`` before its exit hooks, a signal's default action) loses what it
    holds; a forked child drops what its parent held (the parent writes it). A
    write that fails loses the lines it did not write whole (a file's:
    :class:`_LineFile`), and counts as one internal error. For ``"stdout"``, lines
    whose stream was closed before they were written (pytest's ``capsys``, closed at
    its test's end) are dropped, not an error. The internal errors a lost or dropped
    line was to report (its ``hopwatch_errors``, handed in with it: :meth:`msg`'s
    ``carried``) are given back, for the next line written to report, as the
    emitter does for a line lost at once (a write that stopped inside the held
    lines: the ones after the last whole line).
    """

    def __init__(self, stream: TextIO | None, limit: int, *, close: bool = False) -> None:
        #: The file written to; None for ``"stdout"``: the ``sys.stdout`` of the moment
        #: the held lines were made (:meth:`msg`, :meth:`_target`).
        self._stream = stream
        self._limit = limit
        self._close = close
        self._piece = 0 if stream is None else _piece_bytes(stream)
        #: For ``"stdout"``: a weak reference to the last stream written to, its escaping
        #: and its pieces (see :func:`_weak_stream`).
        self._stdout: tuple[Callable[[], TextIO | None], bool, int] = (_no_stream, False, 0)
        self._closed = False
        self._reset()
        _held_outputs.add(self)

    def _reset(self) -> None:
        """An empty hold and new locks (at start, and in a forked child)."""
        self._held: list[str] = []
        #: The held lines that report internal errors: (the line's index in _held, its
        #: errors, and how many of them were given back before: _errors.take_for_line).
        #: Changed with _held, under _hold_lock.
        self._carried: list[tuple[int, int, int]] = []
        self._size = 0
        #: For ``"stdout"``: the ``sys.stdout`` the held lines were made under (they are
        #: written there, not to a later test's capture); None while none are held.
        self._held_for: TextIO | None = None
        #: Guards _held and _size. Never held while writing.
        self._hold_lock = threading.Lock()
        #: Guards the stream; taken before _hold_lock, so lines are written in order.
        self._write_lock = threading.Lock()
        #: Set while lines are held (changed under _hold_lock).
        self._pending = threading.Event()
        #: Set when the output is closed: the thread ends at once.
        self._ended = threading.Event()
        if self._closed:
            self._ended.set()
        self._thread: threading.Thread | None = None

    def msg(self, message: str, carried: tuple[int, int] | None = None) -> bool:
        """Hold ``message``; ``carried``: the internal errors it reports (and how many
        of them were given back before), given back if it is lost. Raises only when the
        line was not held (the output is closed); False when the write this line made
        (the held lines reached the limit) failed: reported here, as one internal error."""
        # "stdout": the lines held are all of one sys.stdout, the one of when they were
        # made (a test's capture). A line made under another one has those written out
        # first (to theirs), then starts a new hold. A file: made_for is always None.
        made_for = sys.stdout if self._stream is None else None
        while True:
            with self._hold_lock:
                if self._closed:
                    raise ValueError("write to a closed hopwatch output")
                held = self._held
                if not held or made_for is self._held_for:
                    self._held_for = made_for
                    held.append(message)
                    if carried is not None:
                        self._carried.append((len(held) - 1, *carried))
                    self._size += len(message) + 1
                    full = self._size >= self._limit
                    if len(held) == 1 and not full:
                        self._pending.set()
                        if self._thread is None:
                            self._thread = threading.Thread(
                                target=self._run, name="hopwatch-held-lines", daemon=True
                            )
                            self._thread.start()
                    break
            try:
                self.write_held()
            except Exception as exc:  # the other stream's lines are lost, not this one
                _errors.report("writing held request lines", exc)
        if full:
            try:
                self.write_held()
            except Exception as exc:  # the held lines, this one among them, are lost
                _errors.report("writing held request lines", exc)
                return False
        return True

    info = msg

    def write_held(self, *, closing: bool = False, ending: bool = False) -> None:
        """Write what is held now (the write lock keeps concurrent writes in order);
        ``closing``: and refuse lines from now on; ``ending``: and hold none from now
        on (the process is ending)."""
        with self._write_lock:
            with self._hold_lock:
                held, self._held, self._size = self._held, [], 0
                carried, self._carried = self._carried, []
                held_for, self._held_for = self._held_for, None
                self._pending.clear()
                if ending:
                    self._limit = 0
                if closing:
                    self._closed = True
                    self._ended.set()
                    self._pending.set()  # the thread wakes, sees it closed, and ends
            if held:
                if held_for is not None and getattr(held_for, "closed", False):
                    # "stdout": the capture they were made in ended before they were
                    # written (pytest's capsys closes its own): no one can read them
                    # there, and no other stream is theirs. Dropped, not an error
                    # (the errors they were to report are reported by the next line).
                    _give_back_lost(carried, 0)
                    return
                stream, escape, piece = self._target(held_for)
                if escape:
                    held = [line if line.isascii() else ascii_line(line) for line in held]
                whole = 0  # lines written whole
                part: list[str] = []
                try:
                    if piece:
                        stream.flush()  # nothing of the stream's own buffer joins a piece
                    for part in _pieces(held, piece) if piece else (held,):
                        count = len(part)
                        _write_lines(stream, part)
                        whole += count
                except BaseException:
                    if carried:  # the errors of the lines lost, for the next line
                        _give_back_lost(carried, whole + _whole_lines(stream, part))
                    raise

    def _target(self, held_for: TextIO | None) -> tuple[TextIO, bool, int]:
        """The stream to write to, whether the lines need their non-ASCII characters
        escaped for it, and its pieces' size (0: one write). For ``"stdout"``,
        ``held_for``: the ``sys.stdout`` the lines were made under (see
        :class:`_StdoutLines`); a new stream is looked at once."""
        stream = self._stream
        if stream is not None:
            return stream, False, self._piece
        stream = cast(TextIO, held_for)  # not None: set with the first line held
        seen = self._stdout
        if stream is not seen[0]():
            seen = self._stdout = (
                _weak_stream(stream), not writes_utf8(stream), _piece_bytes(stream)
            )
        return stream, seen[1], seen[2]

    def reopen_if_moved(self, path: str) -> None:
        """Reopen ``path`` when it is no longer the file written to (see :class:`_Rotation`);
        what is held is written to the new one."""
        with self._write_lock:
            if self._closed or self._stream is None:
                return
            old = _reopened(path, self._stream)
            if old is None:
                return
            self._stream, old = old, self._stream
        old.close()

    def _run(self) -> None:
        pending, ended = self._pending, self._ended
        while True:
            pending.wait()
            if ended.wait(HOLD_SECONDS):
                return
            try:
                self.write_held()
            except Exception as exc:  # a full disk: the lines held are lost, said once
                _errors.report("writing held request lines", exc)

    def close(self) -> None:
        """Write what is held, then close the stream (when it is hopwatch's own)."""
        try:
            self.write_held(closing=True)
        finally:
            _held_outputs.discard(self)
            if self._close and self._stream is not None:
                with self._write_lock:  # as _LineWriter.close
                    self._stream.close()

    def close_at_exit(self, path: str) -> None:
        """Write what is held and close the file; from now on each line is written as
        it comes (:func:`_process_ends`), opening ``path`` for itself (see
        :class:`_AppendEachWrite`)."""
        self.write_held(ending=True)
        with self._write_lock:
            old, self._stream = self._stream, _append_each_write(path)
            self._piece = 0  # one write a line, each to the file opened for it
        if old is not None:  # (a file's: "stdout" is not among hopwatch's own files)
            old.close()


def _pieces(lines: list[str], most: int) -> Iterator[list[str]]:
    """``lines`` cut into pieces of whole lines, each at most ``most`` bytes (a line
    longer than that goes alone), for a write each."""
    piece: list[str] = []
    size = 0
    for line in lines:
        length = (len(line) if line.isascii() else len(line.encode())) + 1
        if piece and size + length > most:
            yield piece
            piece, size = [], 0
        piece.append(line)
        size += length
    yield piece


def _whole_lines(stream: TextIO, lines: list[str]) -> int:
    """How many of ``lines`` a failed write of them left in the file whole: from what
    the file took of the write (:attr:`_LineFile.taken`); 0 for a stream that does not
    say (``"stdout"``: all of them are taken as lost)."""
    if not isinstance(stream, (_LineFile, _AppendEachWrite)):
        return 0
    taken = stream.taken
    end = whole = 0
    for line in lines:
        end += (len(line) if line.isascii() else len(line.encode())) + 1
        if end > taken:
            break
        whole += 1
    return whole


def _give_back_lost(carried: list[tuple[int, int, int]], whole: int) -> None:
    """The internal errors the lost held lines were to report (the lines from index
    ``whole`` on), for the next line written to report (``_errors.give_back``)."""
    errors = again = 0
    for index, count, before in carried:
        if index >= whole:
            errors += count
            again += before
    if errors:
        _errors.give_back(errors, again)


def _write_lines(stream: TextIO, lines: list[str]) -> None:
    """``lines``, each ended by a newline, in one ``write`` of ``stream`` and a flush."""
    lines.append("")
    stream.write("\n".join(lines))
    stream.flush()


def _piece_bytes(stream: TextIO) -> int:
    """0 when ``stream`` is a regular file or no file descriptor (one write holds any
    number of lines whole); else ``PIPE_BUF``, the most bytes a pipe write keeps whole."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return 0
    return 0 if stat.S_ISREG(mode) else getattr(select, "PIPE_BUF", 512)


#: Every open _HeldLines of this process, for exit and fork.
_held_outputs: weakref.WeakSet[_HeldLines] = weakref.WeakSet()


def flush() -> None:
    """Write now the request lines this process holds for ``OUTPUT_BUFFER`` (without
    it, there are none). For a shutdown hook that runs before a server ends its process
    without exiting: uvicorn's lifespan shutdown (docs/faq.md). Never raises: a failed
    write counts as one internal error."""
    _write_every_output(ending=False)


def _process_ends() -> None:
    """The process is ending: write what every output holds, and hold nothing more."""
    _write_every_output(ending=True)


def _write_every_output(*, ending: bool) -> None:
    for output in list(_held_outputs):
        try:
            output.write_held(ending=ending)
        except Exception as exc:
            _errors.report("writing held request lines", exc)


def _drop_parents_held() -> None:
    for output in list(_held_outputs):
        output._reset()


#: hopwatch's own files (an ``OUTPUT`` path, absolute), for the interpreter's exit.
_own_files: weakref.WeakKeyDictionary[_LineWriter | _HeldLines, str] = (
    weakref.WeakKeyDictionary()
)


def _interpreter_ends() -> None:
    """The interpreter is ending (atexit: its threads that are not daemons are done):
    write what is held, then close hopwatch's own files. A file left open for the
    collector is a ``ResourceWarning`` at every exit (``python -X dev``). A line
    written after this (a daemon thread's, or a request's the collector ends as the
    interpreter finalizes) opens the file for itself: it is written, not lost."""
    _process_ends()
    for output, path in list(_own_files.items()):
        try:
            output.close_at_exit(path)
        except Exception as exc:  # a full disk refusing the final flush
            _errors.report("closing the request lines' file", exc)


# When the process ends. threading's exit hook runs first: at the interpreter's exit,
# before it waits for the threads that are not daemons (whose last lines are then
# written as they come), and at the end of a multiprocessing child, where atexit does
# not run for a forked one (it ends with os._exit; Python 3.13 runs only the handlers
# registered in the child): granian's workers. It is CPython's own hook for this
# (concurrent.futures waits for its workers through it), present on every Python
# hopwatch supports. atexit as well, for an embedding interpreter that skips the first
# (whichever runs second finds nothing held); atexit alone closes the files, once the
# threads it waited for have written their last lines.
threading._register_atexit(_process_ends)  # type: ignore[attr-defined]
atexit.register(_interpreter_ends)
os.register_at_fork(after_in_child=_drop_parents_held)


class _LineLogger(structlog.BoundLoggerBase):
    """structlog's bound logger for hopwatch's lines: ``info`` only, a method of
    its own (a custom wrapper class, as structlog's docs describe it), not the
    generic ``BoundLogger``'s ``partial`` per method name and its proxy call."""

    def info(self, event: Any, carried: tuple[int, int] | None = None) -> Any:
        """Write ``event``; ``carried``: the internal errors it reports (its
        ``hopwatch_errors``, and how many of them were given back before), for an
        output that writes it later (``OUTPUT_BUFFER``) to give back if it is lost."""
        args, kw = self._process_event("info", event, {})
        if carried is None:
            return self._logger.info(*args, **kw)
        return self._logger.info(*args, carried=carried, **kw)


_lost_warned: set[str] = set()


def _warn_if_lost(logger_name: str) -> None:
    """Once per process and logger, as the first line goes out: the logger has no handler
    at INFO, so every line is dropped (check hopwatch.W004 says so too, but a server runs
    no system checks; ``SILENCED_SYSTEM_CHECKS`` silences both). Said on hopwatch's own
    logger, at WARNING: with no handler either, Python's last-resort handler prints it to
    stderr."""
    if logger_name in _lost_warned or silenced("hopwatch.W004"):
        return
    lost = lines_lost_to(logger_name)
    if lost is None:
        return
    _lost_warned.add(logger_name)
    logging.getLogger("hopwatch").warning(
        "%s Add a handler for it to LOGGING, or set HOPWATCH[\"OUTPUT\"] to \"stdout\" or a"
        " file (hopwatch.W004).",
        lost,
    )


def make_logger(
    output: str | os.PathLike[str], logger_name: str, buffer: int = 0
) -> tuple[Any, Callable[[], None], _Rotation | None]:
    """A structlog logger for ``output`` ("logging", "stdout" or a path), its closer, and
    for a path, what follows the file across a rotation; ``buffer`` > 0 (stdout or a
    path): lines held up to that many characters."""
    target: Any
    closer: Callable[[], None] = lambda: None  # noqa: E731
    rotation = None
    if output == "logging":
        # Non-ASCII escaped: the handlers' streams are the project's, of any encoding (a
        # StreamHandler on a C locale's stderr writes "\xe9", a FileHandler without an
        # encoding the locale's), and may change after this.
        escape = True
        _warn_if_lost(logger_name)
        target = _StdlibLine(logging.getLogger(logger_name))
    else:
        own = output != "stdout"  # a path: hopwatch's own stream, closed with the output
        # "stdout": sys.stdout as it is at each write, its escaping decided there
        escape = False
        if not own:
            target = _HeldLines(None, buffer) if buffer else _StdoutLines()
        else:
            stream = _open_lines(output)  # UTF-8: escape stays False
            target = (
                _HeldLines(stream, buffer, close=True)
                if buffer
                else _LineWriter(stream, close=True)
            )
        closer = target.close
        if own:
            path = os.path.abspath(output)
            rotation = _Rotation(target, path)
            _own_files[target] = path  # closed at the interpreter's exit (or by closer)
    processors: list[Any] = [_renderer(logger_name, escape)]
    # bind(): the bound logger itself, not the lazy proxy (which would re-resolve
    # the method on every line)
    bound = structlog.wrap_logger(
        target,
        processors=processors,
        wrapper_class=_LineLogger,
        context_class=dict,
        cache_logger_on_first_use=True,
    ).bind()
    return bound, closer, rotation


def _written_before(exc: BaseException, settings: Mapping[str, Any]) -> bool | None:
    """Whether a handler got the request line before ``exc`` was raised writing it
    (as ``deliver_line`` found: a handler whose filters dropped it, a ``NullHandler``
    did not): False when none did, None when that is not known (the line went through
    the logger's own ``handle``, or the handlers before were ones with a ``handle``
    of their own). Only when the line failed."""
    failure = _hotpath.take_failure()
    if settings["OUTPUT"] != "logging":
        return False  # hopwatch's own stream: the line was not written
    if failure is None or failure[0] is not exc:
        return None
    written: bool | None = failure[1]
    return written


class Emitter:
    """The request sink: filters, builds and writes one line per request."""

    def __init__(self, settings: Any, hop_tax_us: Callable[[], float | None]) -> None:
        self._settings = settings
        #: This host's hop tax in µs once measured (MEASURE_HOP_TAX), else None.
        self.hop_tax_us = hop_tax_us
        self._logger: Any = None
        #: The file output's rotation check (None for "logging" and "stdout").
        self._rotation: _Rotation | None = None
        self._logger_key: tuple[str, str, int] | None = None
        self._closer: Callable[[], None] = lambda: None
        self._lock = threading.Lock()
        #: _plan_for's answer for the last settings snapshot (None: none yet, or closed).
        self._plan: tuple[Any, ...] | None = None
        follow = getattr(settings, "follow", None)
        if follow is not None:
            follow(self._settings_changed)

    def _settings_changed(self, settings: dict[str, Any]) -> None:
        """The settings changed (hopwatch.conf.Settings.follow: once per change, read as
        ``override_settings`` enters and exits): an output they no longer name is closed
        now, so the lines it holds (``OUTPUT_BUFFER``) are written at the change, not at
        the next line. The next line opens the new one."""
        key = (settings["OUTPUT"], settings["LOGGER_NAME"], settings["OUTPUT_BUFFER"])
        if self._logger_key is None or key == self._logger_key:
            return
        with self._lock:
            if self._logger_key is not None and key != self._logger_key:
                self._plan = None
                self._close_quietly()
                self._logger_key = None

    def _get_logger(self, settings: dict[str, Any]) -> Any:
        key = (settings["OUTPUT"], settings["LOGGER_NAME"], settings["OUTPUT_BUFFER"])
        if key != self._logger_key:
            with self._lock:
                if key != self._logger_key:
                    self._close_quietly()
                    self._logger, self._closer, self._rotation = make_logger(*key)
                    self._logger_key = key
        return self._logger

    def _close_quietly(self) -> None:
        closer, self._closer = self._closer, lambda: None
        try:
            closer()
        except Exception as exc:  # a full disk refusing the final flush
            _errors.report("closing the previous output", exc)

    def close(self) -> None:
        with self._lock:
            self._plan = None
            self._close_quietly()
            self._logger_key = None

    def _plan_for(self, settings: dict[str, Any]) -> tuple[Any, ...]:
        """What each line needs of a settings snapshot, read once per snapshot:
        (the snapshot, the logger, the filters, the encoding options, the extra-fields
        hook, the file output's rotation check). ``ENABLED`` is not among them: it is
        read once, at start-up (off, there is no emitter: ``hopwatch.apps.activate``)."""
        options = (
            settings["SITES_LIMIT"],
            settings["DETAIL_LIMIT"] if settings["DETAIL"] else None,
            settings["PATH_MAX_LENGTH"],
            settings["LOG_RAW_PATHS"],
        )
        plan = (
            settings,
            self._get_logger(settings),
            settings["MIN_HOPS"],
            settings["MIN_HOP_MS"] * 1_000_000,
            settings["SAMPLE_RATE"],
            options,
            self._hook(settings["EXTRA_FIELDS"]),
            self._rotation,
        )
        self._plan = plan
        return plan

    def __call__(self, record: RequestRecord) -> None:
        settings = self._settings.merged()  # one snapshot per line
        plan = self._plan
        if plan is None or plan[0] is not settings:
            try:
                plan = self._plan_for(settings)
            except BaseException:  # the output would not open
                record.line = LINE_FAILED
                raise
        _, logger, min_hops, min_hop_ns, rate, options, hook, rotation = plan
        # record.line: what became of the line (LINE_OUTCOMES), one store per request,
        # for the debug toolbar's panel (its sink runs after this one).
        if record.count < min_hops or record.wall_ns < min_hop_ns:
            record.line = LINE_MIN_HOPS if record.count < min_hops else LINE_MIN_HOP_MS
            return
        if rate < 1.0 and random.random() >= rate:
            record.line = LINE_SAMPLED_OUT
            return
        line: Any = None
        try:
            line = encode_head(record, *options)
        except Exception:  # a value of a type the C encoder does not write: the reference
            line = None
        # `event`: the fields to add after the head (or the whole line, on the reference path)
        event = line[1] if line is not None else build_event(record, *options)
        if rate < 1.0:
            event["sample_rate"] = rate
        extra = self._extra_fields(record, hook) if hook is not None else None
        if extra:
            for key, value in extra.items():
                if isinstance(key, str) and key not in RESERVED:
                    if not (key.isascii() or _writable(key)):
                        _errors.report("HOPWATCH['EXTRA_FIELDS'] field name", _NOT_UTF8)
                        continue
                    value = _encoded_extra(key, value)
                    if value is not _LEFT_OUT:
                        event[key] = value
        tax = self.hop_tax_us()
        if tax is not None:
            event["hop_tax_us"] = tax
        # (take_for_line's own test, read here: no call on the usual line)
        if _errors._total != _errors._reported:
            errors, again = _errors.take_for_line()
            if errors:
                event["hopwatch_errors"] = errors
        else:
            errors = again = 0
        if rotation is not None and record.ended_ns >= rotation.due_ns:  # once a second
            rotation.check(record.ended_ns)
        try:
            # (False: OUTPUT_BUFFER's held lines, this one among them, failed to be
            # written, reported by the output; their errors given back there)
            if errors:
                held = logger.info(line or event, (errors, again))
            else:
                held = logger.info(line or event)
        except BaseException as exc:
            record.line = LINE_FAILED
            written = _written_before(exc, settings)  # (taking what the walk left)
            if errors and written is None:
                # logger.handle took the line (logger filters, a patched logging
                # method), or the handlers before the one that raised have a handle
                # of their own: whether one got it before the failure is not known.
                # Given back, but each error once: a handler that writes every line
                # before another that fails on every line has each one reported twice
                # at most, not on every later line.
                _errors.give_back(errors - again, errors - again)
            elif errors and not written:  # no handler got it: the next line written
                _errors.give_back(errors, again)  # reports them
            raise
        record.line = LINE_WRITTEN if held is not False else LINE_FAILED

    def write_event(self, fields: Mapping[str, Any]) -> None:
        """Write another hopwatch event (``hopwatch.process``) to the request lines' output:
        its ``event`` and ``schema``, the time, then the other fields."""
        settings = self._settings.merged()
        line = {"event": fields["event"], "schema": fields["schema"], "timestamp": _timestamp(None)}
        line.update((k, v) for k, v in fields.items() if k not in line)
        try:
            self._get_logger(settings).info(line)
        finally:
            _hotpath.take_failure()  # (if it failed: what it left is not for a request line)

    @staticmethod
    def _hook(hook: Any) -> Any:
        """The EXTRA_FIELDS callable, its dotted path imported once per settings snapshot
        (start-up refused a path that does not import: conf.problems)."""
        if hook is None:
            return None
        try:
            return resolve_hook(hook)
        except Exception as exc:
            _errors.report("HOPWATCH['EXTRA_FIELDS'] hook", exc)
            return None

    def _extra_fields(self, record: RequestRecord, hook: Any) -> Mapping[str, Any] | None:
        """The EXTRA_FIELDS hook's fields for this line (the caller checks it is set)."""
        try:
            result = hook(record.request, record)
            if result is None or isinstance(result, Mapping):
                return result
            raise TypeError(f"it returned a {type(result).__name__}, not a dict (or None)")
        except Exception as exc:
            _errors.report("HOPWATCH['EXTRA_FIELDS'] hook", exc)
            return None


__all__ = ["EVENT", "SCHEMA_VERSION", "UNRESOLVED", "Emitter", "build_event", "clean_path"]
