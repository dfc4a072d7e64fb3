"""Finding and decoding ``hopwatch.request`` lines (schema 1, see docs/log-schema.md).

Two decoders share one definition of a valid record:

* :data:`FAST_LINE`, a single compiled regular expression for the line exactly
  as hopwatch writes it (compact JSON, documented key order, no string escapes,
  at most :data:`FAST_SITE_SLOTS` sites, only scalar fields after ``sites``).
  It validates the whole line and captures the fields in one pass, which is
  several times cheaper than a JSON parse. It is only an accelerator: a line
  it does not match goes to the general decoder.
* :func:`decode_line`, the general decoder: the JSON object at the first ``{``
  of the line, in any key order, with escapes, extra fields anywhere, later
  schema versions, and lines wrapped by a log shipper (``{"log": "<line>"}``).

The fast path accepts a subset of what the general decoder accepts and reads
the same values from it (a property the tests check on generated lines), so
which decoder handled a line never changes the report.

Values must be finite, non-negative and below :data:`MAX_VALUE`; anything else
makes the record *skipped* with a reason such as ``invalid:hop_ms``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

#: Cheap byte-level prefilter: a line without it is not a hopwatch line. Unquoted
#: so that lines wrapped by a log shipper (``\"hopwatch.request\"``) still pass.
MARKER: Final = b"hopwatch.request"
#: A line containing this, whose JSON is broken, was a hopwatch line: counted as skipped.
QUOTED_MARKER: Final = b'"hopwatch.request"'
#: How every line written by hopwatch starts.
LINE_START: Final = b'{"event":"hopwatch.request",'
EVENT: Final = "hopwatch.request"

#: Numbers at or above this (1e9 ms is 11.6 days; 1e9 hops is absurd) are rejected.
MAX_VALUE: Final = 1e9
#: The smallest sample_rate accepted (one request in a million logged).
MIN_SAMPLE_RATE: Final = 1e-6
#: Lines longer than this are skipped unread (``line_too_long``); bounds memory.
MAX_LINE_BYTES: Final = 1 << 20
#: How many sites the fast path reads (hopwatch's default SITES_LIMIT is 10).
FAST_SITE_SLOTS: Final = 10
#: Keys of a log shipper's wrapper object that may hold the original line.
WRAPPER_KEYS: Final = ("log", "message", "msg", "MESSAGE")

#: The documented fields the report reads when present (read_optional_fields).
OPTIONAL_KEYS: Final = frozenset(
    {
        "sites_dropped",
        "sample_rate",
        "hopwatch_errors",
        "pinned_ms",
        "pinned_by",
        "profile",
        "hop_tax_us",
    }
)
#: Every field of the documented record. One of them repeated after "sites"
#: (JSON lets the last one win) makes the fast path hand the line over.
DOCUMENTED_KEYS: Final = OPTIONAL_KEYS | frozenset(
    {
        "event",
        "schema",
        "timestamp",
        "request_id",
        "method",
        "route",
        "view",
        "status",
        "interface",
        "duration_ms",
        "hops",
        "hop_ms",
        "wait_ms",
        "sync_to_async",
        "async_to_sync",
        "threads",
        "new_loops",
        "max_depth",
        "sites",
    }
)

# --- the fast path -------------------------------------------------------------
# Only lines without a backslash reach FAST_LINE, so every '"' is a string
# delimiter and '[^"]*' reads a whole string (sre runs that as a tight loop;
# character classes with several members cost five times more per byte).
# Every quantifier is possessive ('*+', '?+', Python 3.11+): the grammar never
# needs to give back what a quantifier took, and not recording backtracking
# points makes the match almost twice as fast.
_INT = rb"(?:0|[1-9]\d{0,8}+)"  # a JSON integer in 0 .. 999,999,999
_NUM = rb"(?:0|[1-9]\d{0,8}+)(?:\.\d{1,6}+)?+"  # a non-negative JSON number below 1e9
_SCALAR = rb'(?:"[^"]*+"|-?+(?:0|[1-9]\d*+)(?:\.\d++)?+(?:[eE][+-]?+\d++)?+|true|false|null)'
# A site's key group runs from "site" to "count" (count included: it takes few
# values per site, and keying by it spares an int() per site in the hot loop).
_SITE = (
    rb'\{("site":"[^"]*+","kind":"[^"]*+","direction":"[^"]*+","count":' + _INT + rb"),"
    rb'"ms":(' + _NUM + rb')(?:,"call_site":"([^"]*+)")?+\}'
)


def _site_slots(n: int) -> bytes:
    # SITE(?:,SITE(?:,SITE ...)?)? : each slot has its own groups, so one match
    # captures every site without a second pass over the array.
    inner = _SITE
    for _ in range(n - 1):
        inner = _SITE + rb"(?:," + inner + rb")?+"
    return rb"(?:" + inner + rb")?+"


_COUNTERS = b",".join(
    b'"' + name + b'":' + _INT
    for name in (b"sync_to_async", b"async_to_sync", b"threads", b"new_loops", b"max_depth")
)

#: The canonical hopwatch line. Groups: see the G_* indices below.
FAST_LINE: Final = re.compile(
    rb'\{"event":"hopwatch\.request","schema":[1-9]\d{0,3}+'
    rb',"timestamp":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)"'
    rb',"request_id":"([^"]*+)"'
    rb',("method":"[^"]*+","route":"[^"]*+","view":(?:"[^"]*+"|null))'
    rb',("status":(?:null|[1-9]\d\d),"interface":"[^"]*+")'
    rb',"duration_ms":(' + _NUM + rb'),"hops":(' + _INT + rb'),"hop_ms":(' + _NUM + rb")"
    rb',"wait_ms":(' + _NUM + rb")"
    rb",(" + _COUNTERS + rb")"
    # pinned_ms and pinned_by joined the line after max_depth; lines without them match too
    rb'(?:,"pinned_ms":(' + _NUM + rb'),"pinned_by":(?:"([^"]*+)"|null))?+'
    rb',"sites":\[' + _site_slots(FAST_SITE_SLOTS) + rb"\]"
    rb'((?:,"[^"]*+":' + _SCALAR + rb")*+)"
    rb"\}[ \t\r]*+\Z"
)
# Group numbers (1-based, as m.groups() is 0-based subtract one: see scan.py).
G_TIMESTAMP: Final = 1
G_REQUEST_ID: Final = 2
G_ENDPOINT: Final = 3  # the raw '"method":..,"route":..,"view":..' span
G_STATUS_INTERFACE: Final = 4  # the raw '"status":..,"interface":..' span
G_DURATION: Final = 5
G_HOPS: Final = 6
G_HOP_MS: Final = 7
G_WAIT: Final = 8
G_COUNTERS: Final = 9  # the raw span of sync_to_async .. max_depth
G_PINNED_MS: Final = 10  # None when the line has no pinned_ms
G_PINNED_BY: Final = 11  # None when null (or absent)
G_FIRST_SITE: Final = 12  # then (site key, ms, call_site) per slot
GROUPS_PER_SITE: Final = 3
G_TAIL: Final = G_FIRST_SITE + GROUPS_PER_SITE * FAST_SITE_SLOTS
assert FAST_LINE.groups == G_TAIL

#: The raw span of the five counters, decoded when a partial result is folded.
COUNTERS_SPAN: Final = re.compile(
    rb'"sync_to_async":(\d+),"async_to_sync":(\d+),"threads":(\d+),"new_loops":(\d+)'
    rb',"max_depth":(\d+)\Z'
)
#: A site with a call site is keyed by raw key + CALL_SITE_OPEN + call site + b'"'.
CALL_SITE_OPEN: Final = b',"call_site":"'

# --- timestamps ------------------------------------------------------------------
#: What hopwatch writes: microseconds and "Z". Such strings compare correctly as text.
CANONICAL_TIMESTAMP: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")
_ISO_LIKE: Final = re.compile(
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d{1,9})?)?(Z|[+-]\d\d:?\d\d)?\Z"
)


def canonical_timestamp(value: str) -> str | None:
    """``value`` as hopwatch's own UTC form (``2026-11-24T23:59:01.123456Z``), or None.

    Naive times are taken as UTC. Fractions beyond microseconds are cut.
    """
    if CANONICAL_TIMESTAMP.match(value):
        return value
    if not _ISO_LIKE.match(value):
        return None
    text = value
    dot = text.find(".")
    if dot != -1:  # fromisoformat takes at most 6 fraction digits (3.11)
        end = dot + 1
        while end < len(text) and text[end].isdigit():
            end += 1
        text = text[: min(end, dot + 7)] + text[end:]
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):  # not a date; or year 1 moved out of range
        return None
    # not strftime: %Y does not pad years below 1000 to four digits everywhere
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}Z"
    )


# --- the general decoder -----------------------------------------------------------
# strict=False: raw control characters inside strings are accepted, as the fast
# path cannot afford to look for them; every renderer escapes them instead.
_DECODER: Final = json.JSONDecoder(strict=False)
_JSON_SPACE: Final = " \t\r\n"
#: Deeper JSON is malformed for the report, whatever the interpreter's own limit
#: (3.11 stops near 1,000 levels, 3.13 allows more): a record is 3 levels deep.
MAX_DEPTH: Final = 512
_STRUCTURE: Final = re.compile(r'"(?:[^"\\]|\\.)*+"|[\[\]{}]')


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


@dataclass(slots=True)
class Site:
    site: str
    kind: str
    direction: str
    call_site: str | None
    count: int
    ms: float


@dataclass(slots=True)
class Record:
    """The documented fields of one request line that the report uses."""

    timestamp: str  # canonical, see canonical_timestamp()
    request_id: str
    method: str
    route: str
    view: str | None
    status: int | None
    interface: str
    duration_ms: float
    hops: int
    hop_ms: float
    wait_ms: float
    sync_to_async: int
    async_to_sync: int
    threads: int
    new_loops: int
    max_depth: int
    sites: list[Site] = field(default_factory=list)
    sites_dropped: int = 0
    sample_rate: float = 1.0
    hopwatch_errors: int = 0
    pinned_ms: float | None = None
    pinned_by: str | None = None
    profile: str | None = None
    hop_tax_us: float | None = None


class Invalid(Exception):
    """A record field is missing or unusable; ``reason`` names it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _get(obj: dict[str, Any], key: str) -> Any:
    try:
        return obj[key]
    except KeyError:
        raise Invalid(f"missing:{key}") from None


def _integer(value: Any, key: str) -> int:
    # bool is an int subclass; JSON true is not a count.
    if type(value) is not int or not 0 <= value < MAX_VALUE:
        raise Invalid(f"invalid:{key}")
    return value


def _number(value: Any, key: str) -> float:
    if type(value) is int:
        if 0 <= value < MAX_VALUE:
            return float(value)
    elif type(value) is float and math.isfinite(value) and 0.0 <= value < MAX_VALUE:
        return value + 0.0  # -0.0 becomes 0.0
    raise Invalid(f"invalid:{key}")


def _string(value: Any, key: str) -> str:
    if type(value) is not str:
        raise Invalid(f"invalid:{key}")
    return value


def _sites(value: Any) -> list[Site]:
    if type(value) is not list:
        raise Invalid("invalid:sites")
    sites = []
    for entry in value:
        if type(entry) is not dict:
            raise Invalid("invalid:sites")
        try:
            call_site = entry.get("call_site")
            if call_site is not None and type(call_site) is not str:
                raise Invalid("invalid:sites")
            sites.append(
                Site(
                    site=_string(_get(entry, "site"), "sites"),
                    kind=_string(_get(entry, "kind"), "sites"),
                    direction=_string(_get(entry, "direction"), "sites"),
                    call_site=call_site,
                    count=_integer(_get(entry, "count"), "sites"),
                    ms=_number(_get(entry, "ms"), "sites"),
                )
            )
        except Invalid:
            raise Invalid("invalid:sites") from None
    return sites


def record_from_object(obj: dict[str, Any]) -> Record:
    """Validate a decoded ``hopwatch.request`` object; raise :class:`Invalid`.

    ``pinned_ms`` and ``pinned_by`` are read as optional: lines written before
    they joined the schema do not have them.
    """
    schema = _get(obj, "schema")
    if type(schema) is not int or not 1 <= schema < MAX_VALUE:
        raise Invalid("invalid:schema")
    timestamp = canonical_timestamp(_string(_get(obj, "timestamp"), "timestamp"))
    if timestamp is None:
        raise Invalid("invalid:timestamp")
    view = _get(obj, "view")
    if view is not None and type(view) is not str:
        raise Invalid("invalid:view")
    status = _get(obj, "status")
    if status is not None and (type(status) is not int or not 100 <= status <= 999):
        raise Invalid("invalid:status")
    record = Record(
        timestamp=timestamp,
        request_id=_string(_get(obj, "request_id"), "request_id"),
        method=_string(_get(obj, "method"), "method"),
        route=_string(_get(obj, "route"), "route"),
        view=view,
        status=status,
        interface=_string(_get(obj, "interface"), "interface"),
        duration_ms=_number(_get(obj, "duration_ms"), "duration_ms"),
        hops=_integer(_get(obj, "hops"), "hops"),
        hop_ms=_number(_get(obj, "hop_ms"), "hop_ms"),
        wait_ms=_number(_get(obj, "wait_ms"), "wait_ms"),
        sync_to_async=_integer(_get(obj, "sync_to_async"), "sync_to_async"),
        async_to_sync=_integer(_get(obj, "async_to_sync"), "async_to_sync"),
        threads=_integer(_get(obj, "threads"), "threads"),
        new_loops=_integer(_get(obj, "new_loops"), "new_loops"),
        max_depth=_integer(_get(obj, "max_depth"), "max_depth"),
        sites=_sites(_get(obj, "sites")),
    )
    read_optional_fields(obj, record)
    return record


def read_optional_fields(obj: dict[str, Any], record: Record) -> None:
    """The optional fields the report uses; absent or null means "not there"."""
    value = obj.get("sites_dropped")
    if value is not None:
        record.sites_dropped = _integer(value, "sites_dropped")
    value = obj.get("hopwatch_errors")
    if value is not None:
        record.hopwatch_errors = _integer(value, "hopwatch_errors")
    value = obj.get("sample_rate")
    if value is not None:
        rate = _number(value, "sample_rate")
        if not MIN_SAMPLE_RATE <= rate <= 1.0:  # its inverse weighs every total
            raise Invalid("invalid:sample_rate")
        record.sample_rate = rate
    value = obj.get("pinned_ms")
    if value is not None:
        record.pinned_ms = _number(value, "pinned_ms")
    value = obj.get("pinned_by")
    if value is not None:
        record.pinned_by = _string(value, "pinned_by")
    value = obj.get("profile")
    if value is not None:
        record.profile = _string(value, "profile")
    value = obj.get("hop_tax_us")
    if value is not None:
        record.hop_tax_us = _number(value, "hop_tax_us")


#: What decode_line() returns for a line that is not a hopwatch record at all.
OTHER: Final = None


def decode_line(line: bytes) -> Record | str | None:
    """The general decoder: a :class:`Record`, a skip reason, or None (not hopwatch).

    Never raises for any input.
    """
    brace = line.find(b"{")
    if brace == -1:
        return OTHER
    try:
        text = line[brace:].decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8" if QUOTED_MARKER in line else OTHER
    return _decode_text(text, QUOTED_MARKER in line, unwrap=True)


def _decode_text(text: str, looks_like_ours: bool, *, unwrap: bool) -> Record | str | None:
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
    if text[end:].strip(" \t\r"):
        return "malformed_json" if looks_like_ours else OTHER
    if type(obj) is not dict:
        return OTHER
    if obj.get("event") == EVENT:
        try:
            return record_from_object(obj)
        except Invalid as exc:
            return exc.reason
    if unwrap:  # a log shipper's envelope: {"log": "<the original line>\n", ...}
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if type(inner) is str and EVENT in inner:
                brace = inner.find("{")
                if brace != -1:
                    body = inner[brace:].rstrip("\n")
                    return _decode_text(body, f'"{EVENT}"' in body, unwrap=False)
    return OTHER


def decode_endpoint_span(span: bytes) -> tuple[str, str, str | None]:
    """(method, route, view) from the fast path's raw endpoint span."""
    obj = _DECODER.decode("{" + span.decode("utf-8") + "}")
    return obj["method"], obj["route"], obj["view"]


def decode_site_key(key: bytes) -> tuple[tuple[str, str, str, str | None], int]:
    """((site, kind, direction, call_site), count) from the scanner's raw site key."""
    obj = _DECODER.decode("{" + key.decode("utf-8") + "}")
    return (obj["site"], obj["kind"], obj["direction"], obj.get("call_site")), obj["count"]


def decode_status_interface(span: bytes) -> tuple[int | None, str]:
    obj = _DECODER.decode("{" + span.decode("utf-8") + "}")
    return obj["status"], obj["interface"]


def decode_tail(tail: bytes) -> dict[str, Any] | None:
    """The scalar fields after "sites" as a dict, or None when the general decoder must decide."""
    if not tail:
        return {}
    try:
        obj = _DECODER.decode("{" + tail[1:].decode("utf-8") + "}")
    except ValueError:
        return None
    if type(obj) is not dict or not DOCUMENTED_KEYS.isdisjoint(obj.keys() - OPTIONAL_KEYS):
        return None  # repeats a documented key: JSON says the last one wins
    # a key repeated within the tail itself is resolved by json (last wins) too
    return obj
