"""Finding and decoding ``hopwatch.request`` lines (schema 1: :mod:`hopwatch.schema`).

One definition of a record, :class:`Record` (a msgspec ``Struct``: every field
the report reads, with its type and its limits), serves two decoders:

* :data:`decode_record`, msgspec's typed JSON decoder: it reads the object
  straight into a Record, in any key order, with any whitespace and escapes,
  skipping fields it does not know (extra keys, ``detail``, a later schema's
  fields) without building them. It validates as it goes, and refuses the
  whole line at the first problem. Almost every line is read here.
* :func:`decode_general`, for the lines it refuses: the object at the first
  ``{`` of the line, decoded by the standard library (which accepts raw control
  characters inside strings, and NaN, so that they are reported as invalid
  values rather than as broken JSON), unwrapped (:func:`unwrap`: a log shipper's
  envelope, ``{"log": "<line>"}``, or an exported entry's object, ``{"jsonPayload":
  {...}}``, then structlog's rendering, ``{"event": "<line>"}``),
  its timestamp normalised to UTC, then checked field by
  field against the same Record definition. It decides why a line is skipped
  (``missing:hops``, ``invalid:hop_ms``) and keeps a record whose *separable*
  part is malformed: such a part (``sites``, or an optional field) is dropped
  and named, the record's counts are kept.

Adding a documented optional field is one edit: a field with a default in
:class:`Record` (its type says what is valid). Both decoders then read it, and
a malformed value of it drops only that field.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta, Struct

import hopwatch.schema as schema

#: Cheap byte-level prefilter: a line without it is not a hopwatch line. Unquoted
#: so that lines wrapped by a log shipper (``\"hopwatch.request\"``) still pass.
MARKER: Final = b"hopwatch.request"
#: A line containing this (or :data:`NESTED_MARKER`), whose JSON is broken, was a
#: hopwatch line: counted as skipped.
QUOTED_MARKER: Final = b'"hopwatch.request"'
#: How the quoted marker starts once the line is a string value inside another line (a
#: shipper's envelope or structlog's rendering: ``\"hopwatch.request\"``; both:
#: ``\\\"hopwatch.request\\\"``), its closing quote escaped at any depth. A broken line with
#: it was hopwatch's, and a line with it is looked into (:func:`unwrap`).
NESTED_MARKER: Final = b'\\"hopwatch.request\\'
_QUOTED_TEXT: Final = QUOTED_MARKER.decode()
_NESTED_TEXT: Final = NESTED_MARKER.decode()
EVENT: Final = schema.EVENT
#: How the emitter ends every line it writes (its renderer adds the level and the logger
#: last; ``LOGGER_NAME``'s default), with ``OUTPUT`` ``"stdout"``, a file, or ``"logging"``
#: through a handler that writes the message as it is. A line that ends so but is no
#: record and holds neither marker is the tail of a hopwatch line another process's
#: write cut in two (a pipe keeps a write whole only up to ``PIPE_BUF``): skipped as
#: ``torn`` (:func:`torn_tail`).
LINE_ENDING: Final = b',"level":"info","logger":"hopwatch"}'
#: What may follow the ending on a line (a CRLF log's carriage return).
_TRAILING: Final = b" \t\r"

#: Numbers at or above this (1e9 ms is 11.6 days; 1e9 hops is absurd) are rejected.
MAX_VALUE: Final = 1e9
#: The smallest sample_rate accepted (one request in a million logged).
MIN_SAMPLE_RATE: Final = 1e-6
#: Lines longer than this are skipped unread (``line_too_long``); bounds memory.
MAX_LINE_BYTES: Final = 1 << 20
#: Keys of a log shipper's wrapper object that may hold the original line (``line``:
#: Loki's ``logcli query -o jsonl``).
WRAPPER_KEYS: Final = ("log", "message", "msg", "MESSAGE", "line")
#: Keys of an exported log entry that may hold the line as an object, parsed already by
#: the platform: ``jsonPayload`` (Google Cloud Logging's LogEntry), ``attributes`` (a
#: Datadog log archive or export). The object is the record itself, or structlog's
#: rendering holding the line (see :func:`peel`).
PAYLOAD_KEYS: Final = ("jsonPayload", "attributes")
#: Whether a line may be an exported entry (a key of :data:`PAYLOAD_KEYS`) or Fluent Bit's
#: ``out_file`` line (a "]" last): the lines, without the escaped marker, that the scanner
#: looks into when its decoder refuses them (:func:`peel`).
EXPORTED: Final = re.compile(rb'"(?:jsonPayload|attributes)"|\][ \t\r]*\Z')

#: A container runtime writes a line longer than this in parts, each (but the last) of
#: exactly this many bytes of the line: docker's json-file driver as several
#: ``{"log":"<part>","stream":"stdout","time":...}`` objects, only the last one's ``log``
#: ending with ``\n``; a CRI runtime (containerd, CRI-O: ``/var/log/pods/``) as
#: ``<time> stdout P <part>`` lines, then ``<time> stdout F <last part>``.
PART_BYTES: Final = 16 * 1024
_CRI_PART: Final = re.compile(rb"[0-9][^ \n]{0,63} (stdout|stderr) ([PF]) ")
_DOCKER_HEAD: Final = b'{"log":"'
_DOCKER_STREAM: Final = b'","stream":"'

#: (stream, whether the line is a part that a later one continues, where its share of the
#: line starts and ends in the buffer); see :func:`line_part`.
Part = tuple[bytes, bool, int, int]


def line_part(buffer: bytes | bytearray, start: int, stop: int) -> Part | None:
    """``buffer[start:stop]`` (one line, without its newline) as a container runtime's
    part of a line (see :data:`PART_BYTES`), or None when it is not in either form.

    The stream is per runtime and per stdout/stderr: the parts of one line are joined
    in their stream. A docker part's share is its ``log`` string as it is escaped in the
    JSON, so the shares of one line laid end to end make the string of the whole line.
    """
    if buffer.startswith(_DOCKER_HEAD, start):
        first = start + len(_DOCKER_HEAD)
        end = buffer.find(_DOCKER_STREAM, first, stop)  # no quote in the string is bare
        if end == -1:
            return None
        name = end + len(_DOCKER_STREAM)
        stream = bytes(buffer[name : buffer.find(b'"', name, stop)])
        # the last part's log ends with the escape \n (after an even run of backslashes)
        slash = end - 1
        if buffer[slash] == 0x6E:  # n
            slash -= 1
            while slash >= first and buffer[slash] == 0x5C:
                slash -= 1
            escaped = (end - 2 - slash) % 2 == 1
        else:
            escaped = False
        return b"docker " + stream, not escaped, first, end
    found = _CRI_PART.match(buffer, start, stop)
    if found is None:
        return None
    return b"cri " + found.group(1), found.group(2) == b"P", found.end(), stop


#: The skip reasons of a line that did not decode: a runtime's part that a later part
#: continues has them as ``truncated`` (see :func:`reason_of_part`).
_UNDECODED: Final = frozenset(("malformed_json", "invalid_utf8"))


def reason_of_part(reason: str, buffer: bytes | bytearray, start: int, stop: int) -> str:
    """``reason``, why the line ``buffer[start:stop]`` (without its newline) was skipped,
    as it stands when the line is read as it is: a runtime's part that a later part
    continues (see :func:`line_part`), read alone (its last part lost, or in another
    file), is a line cut short whatever it ends with (a "}", the end of a ``detail``
    entry; a character cut in two), so a part that did not decode is ``truncated``."""
    if reason not in _UNDECODED or stop - start < PART_BYTES:
        return reason
    shape = line_part(buffer, start, stop)
    return "truncated" if shape is not None and shape[1] else reason


# --- the record -------------------------------------------------------------------------
Count = Annotated[int, Meta(ge=0, lt=1_000_000_000)]
Millis = Annotated[float, Meta(ge=0.0, lt=MAX_VALUE)]
Version = Annotated[int, Meta(ge=1, lt=1_000_000_000)]
StatusCode = Annotated[int, Meta(ge=100, le=999)]
SampleRate = Annotated[float, Meta(ge=MIN_SAMPLE_RATE, le=1.0)]
#: RFC 3339 with a zone (``Z`` or an offset); other ISO 8601 forms (no zone, no
#: seconds) are read by the general decoder. Fractions beyond microseconds are rounded.
Timestamp = Annotated[datetime, Meta(tz=True)]


class Site(Struct, gc=False):
    """One entry of ``sites``: a cause of crossings in the request."""

    site: str
    kind: str
    direction: str
    count: Count
    ms: Millis
    call_site: str | None = None
    # Their crossing overhead; lines from before it was written lack it (None).
    overhead_ms: Millis | None = None


class Record(Struct, gc=False):
    """The documented fields of one request line that the report reads.

    Fields without a default are required. ``sites`` is required too, but
    separable: a record whose ``sites`` is missing or malformed keeps its
    counts (see :data:`SEPARABLE`). gc=False: a record holds no cycles, and the
    collector need not visit the millions that pass through the scanner.
    """

    event: Literal["hopwatch.request"]
    schema: Version
    timestamp: Timestamp
    request_id: str
    method: str
    route: str
    view: str | None
    status: StatusCode | None
    interface: str
    duration_ms: Millis
    hops: Count
    hop_ms: Millis
    wait_ms: Millis
    sync_to_async: Count
    async_to_sync: Count
    threads: Count
    new_loops: Count
    max_depth: Count
    sites: list[Site]
    # Optional: absent, or null, means the default. pinned_ms and pinned_by joined
    # the line after max_depth; older lines do not have them.
    pinned_ms: Millis | None = None
    pinned_by: str | None = None
    sites_dropped: Count = 0
    sample_rate: SampleRate = 1.0
    hopwatch_errors: Count = 0
    profile: str | None = None
    hop_tax_us: Millis | None = None
    # Threads and executors (docs/threads.md): newer lines only.
    max_in_flight: Count | None = None
    concurrent_ms: Millis | None = None
    db_connections: Count | None = None
    # The crossings' own cost and the code run inside them; lines from before they were
    # written lack them (None), and the report shows their overhead as n/a.
    overhead_ms: Millis | None = None
    work_ms: Millis | None = None


_FIELDS: Final = {info.name: info for info in msgspec.structs.fields(Record)}
#: Fields whose problem skips the record (``missing:X`` / ``invalid:X``).
REQUIRED: Final = tuple(name for name, info in _FIELDS.items() if info.required and name != "sites")
#: Optional fields whose value weighs the record's counts: a malformed one skips the record.
WEIGHING: Final = frozenset({"sample_rate"})
#: Parts a record can lose without losing its counts: sites and the optional fields.
SEPARABLE: Final = ("sites", *(n for n, info in _FIELDS.items() if not info.required))
#: Every field of Record: what the report reads (the rest of a line is skipped unread).
READ_FIELDS: Final = frozenset(_FIELDS)

#: The typed decoder for :class:`Record`: bytes (or str) of one JSON object in, a Record
#: out; raises one of DECODE_ERRORS (RecursionError: nesting too deep for it;
#: UnicodeEncodeError: a str holding a lone surrogate, see CONVERT_ERRORS;
#: UnicodeDecodeError: a string of bytes not UTF-8, as msgspec before 0.23 raised it, where
#: 0.23 raises DecodeError). Every path that decodes a line catches these: a line that
#: raises one is a skip reason (or another logger's), never the report's end.
decode_record: Final = msgspec.json.Decoder(Record).decode
DECODE_ERRORS: Final = (
    msgspec.ValidationError,
    msgspec.DecodeError,
    RecursionError,
    UnicodeError,  # UnicodeEncodeError and UnicodeDecodeError
)
#: What ``msgspec.convert`` raises for a value that does not fit its type. msgspec reads
#: a str as UTF-8 for any type but str, and a str holding a lone surrogate (a ``"\ud800"``
#: escape, which msgspec refuses and the standard json module lets through) cannot be
#: encoded: such a value does not fit, like any other string that is no number.
CONVERT_ERRORS: Final = (msgspec.ValidationError, UnicodeEncodeError)

# --- the learning decoder --------------------------------------------------------------------
#: String fields whose values repeat from line to line: (struct, field, nullable).
REPEATING: Final = (
    (Record, "method", False),
    (Record, "route", False),
    (Record, "view", True),
    (Record, "interface", False),
    (Record, "pinned_by", True),
    (Site, "site", False),
    (Site, "kind", False),
    (Site, "direction", False),
    (Site, "call_site", True),
)
#: Values known before any line is read (the documented ones).
SEEDS: Final = {
    "method": ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"),
    "interface": schema.INTERFACES,
    "kind": schema.KINDS,
    "direction": schema.DIRECTIONS,
}
#: A field with more distinct values than this is read as plain text from then on.
VOCABULARY_LIMIT: Final = 256
#: A field with a value longer than this is read as plain text from then on.
VALUE_LIMIT: Final = 1000
#: Never matches: a Literal needs at least one value.
_NOTHING: Final = "\x00"


class LearningDecoder:
    """:data:`decode_record`, faster on the values a log repeats.

    msgspec returns the same string object for every occurrence of a ``Literal``
    value, where a ``str`` field makes a new string each time: no allocation,
    and a hash computed once, which makes every dict lookup keyed by it
    (endpoints, sites) cheaper. So this decodes the :data:`REPEATING` fields as
    ``Literal`` of the values seen so far. A line with a value not seen yet is
    refused (the general decoder reads it, see :meth:`learn`), and the value
    joins the vocabulary. A field past :data:`VOCABULARY_LIMIT` values (raw 404
    paths from a scanner), or with a value that cannot be learned, goes back to
    plain text. The records it makes are
    instances of subclasses of :class:`Record` and :class:`Site`, read the same way.
    """

    def __init__(self) -> None:
        self._values: dict[str, set[str]] = {
            field: set(SEEDS.get(field, ())) for _, field, _ in REPEATING
        }
        self._plain: set[str] = set()  # fields past the limit
        self._dirty = False
        self.rebuilds = 0
        self.decode = self._build()

    def learn(self, record: Record) -> bool:
        """Add ``record``'s values; True when the decoder changed (call :meth:`rebuild`)."""
        for struct, field, _ in REPEATING:
            if field in self._plain:
                continue
            values = self._values[field]
            items = record.sites if struct is Site else (record,)
            for item in items:
                value = getattr(item, field)
                if value is None or value in values:
                    continue
                self._dirty = True
                if len(values) < VOCABULARY_LIMIT and _learnable(value):
                    values.add(value)
                else:
                    self._plain.add(field)
                    values.clear()
                    break
        return self._dirty

    def rebuild(self) -> None:
        if self._dirty:
            self._dirty = False
            self.rebuilds += 1
            self.decode = self._build()

    def _type(self, field: str, nullable: bool) -> Any:
        if field in self._plain:
            kind: Any = str
        else:
            kind = Literal[tuple(sorted(self._values[field])) or (_NOTHING,)]
        return kind | None if nullable else kind

    def _build(self) -> Any:
        types = {field: self._type(field, nullable) for _, field, nullable in REPEATING}
        site_fields = {field for struct, field, _ in REPEATING if struct is Site}
        site = _subclass(Site, "LearnedSite", types, site_fields)
        types["sites"] = list[site]  # type: ignore[valid-type]
        record = _subclass(Record, "LearnedRecord", types, {*types} - site_fields)
        return msgspec.json.Decoder(record).decode


def _learnable(value: str) -> bool:
    if len(value) > VALUE_LIMIT:
        return False
    try:
        value.encode("utf-8")  # a lone surrogate cannot be a Literal
    except UnicodeEncodeError:
        return False
    return True


def _subclass(base: type[Struct], name: str, types: dict[str, Any], fields: set[str]) -> Any:
    """``base`` with the types of ``fields`` replaced (defaults and order kept)."""
    specs: list[Any] = []
    for info in msgspec.structs.fields(base):
        if info.name not in fields:
            continue
        kind = types[info.name]
        specs.append((info.name, kind) if info.required else (info.name, kind, info.default))
    return msgspec.defstruct(name, specs, bases=(base,), gc=False)


class Envelope(Struct, gc=False):
    """A log shipper's wrapper: the original line is in one of these keys."""

    log: Any = None
    message: Any = None
    msg: Any = None
    MESSAGE: Any = None
    line: Any = None


decode_envelope: Final = msgspec.json.Decoder(Envelope).decode
assert tuple(field.name for field in msgspec.structs.fields(Envelope)) == WRAPPER_KEYS


class Payloads(Struct, gc=False):
    """An exported log entry: the line as an object, under one of :data:`PAYLOAD_KEYS`
    (its JSON text as it is in the entry: empty when the key is absent)."""

    jsonPayload: msgspec.Raw = msgspec.Raw()  # (Cloud Logging's name)
    attributes: msgspec.Raw = msgspec.Raw()


decode_payloads: Final = msgspec.json.Decoder(Payloads).decode
assert tuple(field.name for field in msgspec.structs.fields(Payloads)) == PAYLOAD_KEYS

# --- timestamps ------------------------------------------------------------------------
_ISO_LIKE: Final = re.compile(
    r"(\d{4}-\d\d-\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?(Z|[+-]\d\d:?\d\d)?\Z",
    re.IGNORECASE,
)


def parse_timestamp(value: str) -> datetime | None:
    """An aware UTC datetime from ISO 8601 (naive means UTC), or None.

    The same instant as msgspec reads for the forms it accepts (fractions beyond
    microseconds rounded), so which decoder read a line never changes a time.
    """
    try:
        moment = msgspec.convert(value, Timestamp)
    except CONVERT_ERRORS:
        found = _ISO_LIKE.match(value)
        if found is None:
            return None
        date, hour, minute, second, fraction, zone = found.groups()
        # half up, like msgspec
        micros = (int(fraction.ljust(9, "0")) + 500) // 1000 if fraction else 0
        zone = (zone or "+00:00").upper().replace("Z", "+00:00")
        if ":" not in zone:
            zone = zone[:3] + ":" + zone[3:]
        try:
            moment = datetime.fromisoformat(f"{date}T{hour}:{minute}:{second or '00'}{zone}")
            moment += timedelta(microseconds=micros)
        except (ValueError, OverflowError):
            return None
    return to_utc(moment)


def to_utc(moment: datetime) -> datetime | None:
    """``moment`` in UTC, or None when that is out of datetime's range (year 1 with +01:00)."""
    if moment.tzinfo is UTC:
        return moment
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def timestamp_text(moment: datetime) -> str:
    """hopwatch's own UTC form, ``2026-11-24T23:59:01.123456Z`` (text order is time order).

    Not strftime: %Y does not pad years below 1000 to four digits everywhere.
    """
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}Z"
    )


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def micros_of(moment: datetime) -> int:
    """An aware datetime as microseconds since 1970 in UTC (the C scanner's measure)."""
    return (moment - _EPOCH) // _MICROSECOND


def canonical_timestamp(value: str) -> str | None:
    """``value`` as hopwatch's own UTC form, or None when it is not ISO 8601."""
    moment = parse_timestamp(value)
    return None if moment is None else timestamp_text(moment)


# --- the general decoder ---------------------------------------------------------------
# strict=False: raw control characters inside strings are accepted, as msgspec
# refuses them; every renderer escapes them instead.
_DECODER: Final = json.JSONDecoder(strict=False)
_JSON_SPACE: Final = " \t\r\n"
#: Deeper JSON is malformed for the general decoder, whatever the interpreter's own
#: limit: a record is 3 levels deep.
MAX_DEPTH: Final = 512
_STRUCTURE: Final = re.compile(r'"(?:[^"\\]|\\.)*+"|[\[\]{}]')

#: What the decoders return for a line that is not a hopwatch record at all.
OTHER: Final = None
#: A record read by the general decoder, and the separable parts it lost.
Decoded = tuple[Record, tuple[str, ...]]


def _too_deep(text: str) -> bool:
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False  # the usual case: no need to look closer
    depth = 0
    for token in _STRUCTURE.finditer(text):  # strings are matched whole, so skipped
        bracket = token.group()
        if bracket in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif bracket in "]}":
            depth -= 1
    return False


def torn_tail(buffer: bytes | bytearray, start: int, stop: int) -> bool:
    """Whether ``buffer[start:stop]``, a line that is no record and holds no marker, is
    the tail of a torn hopwatch line: it ends as the emitter ends its lines
    (:data:`LINE_ENDING`, then only blanks). Only such lines are looked at, so a log's
    records pay nothing for it (the C loop's ``torn_tail`` is the same test)."""
    while stop > start and buffer[stop - 1] in _TRAILING:
        stop -= 1
    return buffer.endswith(LINE_ENDING, start, stop)


def decode_line(line: bytes) -> Decoded | str | None:
    """Any line: (Record, lost parts), a skip reason, or None (not a hopwatch record).

    The typed decoder first, then the general one. Never raises for any input.
    """
    start = line.find(b"{")
    if start == -1:
        return OTHER
    try:
        record = decode_record(line[start:] if start else line)
    except DECODE_ERRORS:
        return decode_general(line)
    return in_utc(record)


def in_utc(record: Record) -> Decoded | str:
    """A typed decoder's record with its timestamp in UTC (the scanner inlines this)."""
    if record.timestamp.tzinfo is not UTC:
        moment = to_utc(record.timestamp)
        if moment is None:
            return "invalid:timestamp"
        record.timestamp = moment
    return record, ()


def decode_general(line: bytes) -> Decoded | str | None:
    """The general decoder (see the module docstring). Never raises for any input."""
    brace = line.find(b"{")
    if brace == -1:
        return OTHER
    try:
        text = line[brace:].decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8" if mentions_event(line) else OTHER
    return _decode_text(text, QUOTED_MARKER in line, NESTED_MARKER in line)


def mentions_event(line: bytes) -> bool:
    """Whether ``line`` holds the event as a record's value (:data:`QUOTED_MARKER`), or as
    it reads once the record is a string inside another line (:data:`NESTED_MARKER`: a
    shipper's envelope, structlog's rendering, or both): a broken such line was hopwatch's."""
    return QUOTED_MARKER in line or NESTED_MARKER in line


def _mentions(text: str) -> bool:
    return _QUOTED_TEXT in text or _NESTED_TEXT in text


def _decode_text(text: str, quoted: bool, escaped: bool) -> Decoded | str | None:
    """``text`` (a line from its first "{"): ``quoted``/``escaped``: whether it holds
    :data:`QUOTED_MARKER` / :data:`NESTED_MARKER`."""
    if not quoted:
        # the record inside a shipper's envelope, structlog's rendering or both (unwrap);
        # the typed decoder reads it first, as most lines of such a log are wrapped
        inner = unwrap(text)
        if inner is not None:
            return _decode_inner(inner)
    return _decode_object(text, quoted or escaped, unwrap_again=quoted)


def _decode_inner(inner: str) -> Decoded | str | None:
    try:
        return in_utc(decode_record(inner))
    except DECODE_ERRORS:
        return _decode_object(inner, _mentions(inner), unwrap_again=False)


def _decode_object(text: str, looks_like_ours: bool, *, unwrap_again: bool) -> Decoded | str | None:
    """The object in ``text`` checked as a record, or why it is skipped (when it
    ``looks_like_ours``); ``unwrap_again``: look inside it when it is no record."""
    if _too_deep(text):
        return "malformed_json" if looks_like_ours else OTHER
    try:
        obj, end = _DECODER.raw_decode(text)
    except RecursionError:  # not expected below MAX_DEPTH, but never a traceback
        return "malformed_json" if looks_like_ours else OTHER
    except ValueError:  # JSONDecodeError, or an integer too long to convert
        if not looks_like_ours:
            return OTHER
        # a line cut short (a crash, a size limit, a partial write) lost its last "}"
        return "malformed_json" if text.rstrip(_JSON_SPACE).endswith("}") else "truncated"
    rest = text[end:].strip(" \t\r")
    if rest and rest != "]":  # (after the object, "]" ends Fluent Bit's out_file line)
        return "malformed_json" if looks_like_ours else OTHER
    if type(obj) is not dict:
        return OTHER
    if obj.get("event") == EVENT:
        return record_from_object(obj)
    if unwrap_again:
        # a line with the quoted marker that is no record itself: an envelope or
        # structlog's rendering around a record, with a value holding the marker too
        inner = unwrap_object(obj)
        if inner is not None:
            return _decode_inner(inner)
    return OTHER


# --- the layers around a line ----------------------------------------------------------
# A hopwatch line can reach the log inside at most two layers, peeled in this order:
#
# 1. a log shipper's envelope, the outer one: docker's json-file driver, a CRI runtime's
#    collector, Vector, Fluent Bit, journald's JSON export, Loki's ``logcli -o jsonl``
#    (``{"log": "<line>"}``, or under ``message``, ``msg``, ``MESSAGE``, ``line``:
#    :data:`WRAPPER_KEYS`); or an exported log entry holding the line as an object the
#    platform parsed (Cloud Logging's ``jsonPayload``, Datadog's ``attributes``:
#    :data:`PAYLOAD_KEYS`), the record itself or structlog's rendering; the envelope may
#    be the record of Fluent Bit's ``out_file`` line, ``<tag>: [<time>, {...}]`` (its
#    ``]`` after the object: :func:`listed_object`);
# 2. the project's structlog set-up rendering the line again, the inner one: a
#    ``ProcessorFormatter`` with a ``JSONRenderer`` (as django-structlog sets it up) keeps
#    the line as the ``event`` of its own object (``{"event": "<line>", "level": ...}``),
#    or under ``message`` (or another of :data:`WRAPPER_KEYS`) where an ``EventRenamer``
#    renamed the event.
#
# The shipper wraps whatever the process wrote, so the envelope is always outside the
# rendering; a line wrapped twice by shippers, or rendered twice, is not looked into.


class Rendered(Struct, gc=False):
    """structlog's rendering of a line: the line is its ``event``."""

    event: Any = None


decode_rendered: Final = msgspec.json.Decoder(Rendered).decode


def unwrap(text: bytes | bytearray | memoryview | str, event: str = EVENT) -> str | None:
    """The line of hopwatch's ``event`` inside ``text`` (a line from its first "{"), from
    the line's own first "{": a shipper's envelope peeled, then structlog's rendering (see
    above), either or both; None when ``text`` holds neither around such a line. Typed
    decoders first; a line they refuse (a lone surrogate in the line it wraps) is read by
    the standard library. The one routine for every reader of the log: request lines,
    process lines, the HTML page's extras; the audit and ``--jobs`` read through them."""
    return peel(text, event)[0]


def peel(text: bytes | bytearray | memoryview | str, event: str = EVENT) -> tuple[str | None, bool]:
    """:func:`unwrap`'s line, and whether an envelope was peeled (a shipper's)."""
    try:
        inner = envelope_line(decode_envelope(text), event)
    except DECODE_ERRORS:
        obj = _object(text)
        if obj is not None:
            return _peel_object(obj, event)
        listed = listed_object(text)  # Fluent Bit's out_file line: the object before "]"
        if listed is None:
            return None, False
        inner = _record_text(listed, event) or peel(listed, event)[0]
        return inner, inner is not None
    if inner is not None:
        return _rendered_line(inner, event) or inner, True
    rendered = _rendered_line(text, event)
    if rendered is not None:
        return rendered, False
    inner = _payload_line(text, event)
    return inner, inner is not None


def unwrap_object(obj: dict[str, Any], event: str = EVENT) -> str | None:
    """:func:`unwrap` for a line the standard library decoded already."""
    return _peel_object(obj, event)[0]


def _peel_object(obj: dict[str, Any], event: str) -> tuple[str | None, bool]:
    inner = envelope_line(Envelope(**{key: obj.get(key) for key in WRAPPER_KEYS}), event)
    if inner is not None:
        return _rendered_line(inner, event) or inner, True
    rendered = rendered_again(obj, event)
    if rendered is not None:
        return rendered, False
    for key in PAYLOAD_KEYS:
        payload = obj.get(key)
        if type(payload) is dict:
            inner = _payload_object(payload, event)
            if inner is not None:
                return inner, True
    return None, False


def listed_object(text: bytes | bytearray | memoryview | str) -> bytes | str | None:
    """The object of Fluent Bit's ``out_file`` line (its default format, ``<tag>:
    [<time>, {<record>}]``) from its "{": ``text`` without the list's closing "]" (and
    what follows it: spaces, ``\r``), or None when ``text`` does not end so."""
    if isinstance(text, str):
        end = text.rstrip(" \t\r\n")
        return end[:-1] if end.endswith("}]") else None
    data = bytes(text).rstrip(b" \t\r\n")
    return data[:-1] if data.endswith(b"}]") else None


def _record_text(text: bytes | bytearray | memoryview | str, event: str) -> str | None:
    """``text`` itself when it is an object whose ``event`` is ``event`` (a record), else
    None."""
    try:
        if decode_rendered(text).event != event:
            return None
        return text if isinstance(text, str) else bytes(text).decode("utf-8")
    except DECODE_ERRORS:
        obj = _object(text)
    except UnicodeDecodeError:
        return None
    return None if obj is None or obj.get("event") != event else _encode_object(obj)


def _payload_line(text: bytes | bytearray | memoryview | str, event: str) -> str | None:
    """The line in an exported log entry's object (:data:`PAYLOAD_KEYS`): the record
    itself, or the line in structlog's rendering of it; None when there is none."""
    try:
        payloads = decode_payloads(text)
    except DECODE_ERRORS:
        return None
    for raw in (payloads.jsonPayload, payloads.attributes):
        if len(raw) < 2 or memoryview(raw)[0] != 0x7B:  # absent, or not an object
            continue
        inner = _record_text(raw, event) or _rendered_line(raw, event)
        if inner is not None:
            return inner
    return None


def _payload_object(payload: dict[str, Any], event: str) -> str | None:
    """:func:`_payload_line` for an object the standard library decoded already."""
    if payload.get("event") == event:
        return _encode_object(payload)
    inner = rendered_again(payload, event)
    if inner is not None:
        return inner
    return envelope_line(Envelope(**{key: payload.get(key) for key in WRAPPER_KEYS}), event)


def _encode_object(obj: dict[str, Any]) -> str:
    """A record the standard library decoded as the decoders read it (a rare line: one
    that msgspec refused), its values as they were (NaN included, see _DECODER)."""
    return json.dumps(obj)


def _rendered_line(text: bytes | bytearray | memoryview | str, event: str) -> str | None:
    """The line in structlog's rendering ``text``, or None (not a rendering of one).
    The line is its ``event``, or, when it has none, under the key structlog's
    ``EventRenamer`` moved it to (``message``, or another of :data:`WRAPPER_KEYS`)."""
    try:
        outer = decode_rendered(text).event
    except DECODE_ERRORS:
        obj = _object(text)
        if obj is None:
            return None
        if "event" in obj:
            return rendered_again(obj, event)
        return envelope_line(Envelope(**{key: obj.get(key) for key in WRAPPER_KEYS}), event)
    if outer is not None:  # (a hopwatch line has its event: this is one, not a rendering)
        return rendered_again({"event": outer}, event)
    try:
        return envelope_line(decode_envelope(text), event)
    except DECODE_ERRORS:
        return None


def _object(text: bytes | bytearray | memoryview | str) -> dict[str, Any] | None:
    """The standard library's reading of a JSON object, or None."""
    try:
        decoded = text if isinstance(text, str) else bytes(text).decode("utf-8")
        obj = None if _too_deep(decoded) else _DECODER.decode(decoded)
    except (ValueError, RecursionError):  # (UnicodeDecodeError is a ValueError)
        return None
    return obj if type(obj) is dict else None


def rendered_again(obj: dict[str, Any], event: str = EVENT) -> str | None:
    """The line inside a record another JSON renderer made of it, keeping the line as
    its ``event``, or None. structlog's stdlib integration does this (a
    ``ProcessorFormatter`` with a ``JSONRenderer`` on the handler hopwatch's logger
    reaches, as django-structlog sets up): ``{"event": "<the line>", "level": ...}``.
    ``event``: the hopwatch event the line must hold (``hopwatch.process`` for the
    process lines)."""
    outer = obj.get("event")
    if type(outer) is str and event in outer:
        brace = outer.find("{")
        if brace != -1:
            return outer[brace:].rstrip("\n")
    return None


def envelope_line(envelope: Envelope, event: str = EVENT) -> str | None:
    """The wrapped line in an envelope, from its first "{", or None (``event``: as for
    :func:`rendered_again`)."""
    for key in WRAPPER_KEYS:
        inner = getattr(envelope, key)
        if type(inner) is str and event in inner:
            brace = inner.find("{")
            if brace != -1:
                return inner[brace:].rstrip("\n")
    return None


def wrapped_line(line: bytes, event: str) -> str | None:
    """The line of hopwatch's ``event`` inside ``line`` (after any prefix), as
    :func:`unwrap` finds it, or None. For the other events' readers (``hopwatch.process``:
    hopwatch.report.threads)."""
    brace = line.find(b"{")
    return None if brace == -1 else unwrap(line[brace:], event)


def record_from_object(obj: dict[str, Any]) -> Decoded | str:
    """Check a decoded ``hopwatch.request`` object against :class:`Record`.

    A required field missing or invalid, or a weighing one invalid, is a skip
    reason; a separable part that is malformed is left out and named.
    """
    fields: dict[str, Any] = {}
    for name in REQUIRED:
        if name not in obj:
            return f"missing:{name}"
    for name in REQUIRED:
        value = obj[name]
        if name == "timestamp":
            moment = parse_timestamp(value) if type(value) is str else None
            if moment is None:
                return "invalid:timestamp"
            fields[name] = moment
            continue
        try:
            fields[name] = msgspec.convert(value, _FIELDS[name].type)
        except CONVERT_ERRORS:
            return f"invalid:{name}"
    lost: list[str] = []
    sites = _sites(obj.get("sites"))
    if sites is None:
        sites = []
        lost.append("sites")
    elif len(sites) != len(obj["sites"]):
        lost.append("sites")
    fields["sites"] = sites
    for name in SEPARABLE[1:]:
        value = obj.get(name)
        if value is None:  # absent or null: the default
            continue
        try:
            fields[name] = msgspec.convert(value, _FIELDS[name].type)
        except CONVERT_ERRORS:
            if name in WEIGHING:
                return f"invalid:{name}"
            lost.append(name)
    return Record(**fields), tuple(lost)


def _sites(value: Any) -> list[Site] | None:
    """The well-formed entries of ``sites`` (None when it is not a list at all)."""
    if type(value) is not list:
        return None
    sites = []
    for entry in value:
        try:
            sites.append(msgspec.convert(entry, Site))
        except CONVERT_ERRORS:
            pass
    return sites
