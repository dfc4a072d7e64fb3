"""The report's own line parser (``parse_line`` in hopwatch/report/_accumulate.c) against
msgspec, line for line.

The C loop reads the usual request line with a parser of its own and hands every line it
is not sure of to msgspec, as before. These are differential tests: the same lines are
scanned with the parser, without it (msgspec's typed decode, then the same C
accumulation) and by the pure-Python reference. The first two must give the same
partial bit for bit (the same additions in the same order: every float's repr, -0.0 and
int-or-float included); the pure-Python one the same but for the last bits of the
per-cause sums (it sums those with math.fsum). A line the parser takes that msgspec
would refuse, or would read to other values, makes the partials differ (its skip
reason, its lost part, a sum); ``parsed_lines`` says which lines the parser took, so a
test also fails when it stops taking the usual lines. Lines in a log shipper's envelope
are unwrapped in C too: the records counted as enveloped, and the scanner's mode they
set block by block, must be the same every way.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any

import msgspec
import pytest
from bench.captured_logs import RENDERINGS, generate

from hopwatch.report import parse, scan
from hopwatch.report.aggregate import EndpointStats, Partial
from hopwatch.report.parse import Record, Site, decode_record, in_utc
from hopwatch.report.scan import Scanner
from hopwatch.report.sketch import Sketch
from tests.report.samples import AUTH, SESSION, line, record, site
from tests.report.test_aggregate import close

C = scan.load_accelerator()
pytestmark = pytest.mark.skipif(
    C is None and not os.environ.get("HOPWATCH_REQUIRE_C"),
    reason="the report's C accelerator is not built here",
)
MODES = ("parser", "msgspec", "python")
#: Bytes no UTF-8 decoder takes: an overlong form from 0xC0, a code point past U+10FFFF
#: (0xF4 0x90), an encoded surrogate (U+D800).
NOT_UTF8 = (b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xed\xa0\x80")
SITES = [site(SESSION, ms=0.4, overhead_ms=0.1), site(AUTH, ms=0.3, overhead_ms=0.2)]
PLAIN: dict[str, Any] = {"sites": SITES, "overhead_ms": 0.3, "work_ms": 0.4, "db_connections": 1}


def _scan(lines: list[bytes], mode: str, block: int = 40) -> Scanner:
    """The lines scanned in blocks (the scanner's modes adapt per block)."""
    scanner = Scanner(Partial())
    if mode == "python":
        scanner.accumulate = scanner.scan = None
    else:
        assert C is not None, "the report's C accelerator was not built"
        scanner.accumulate, scanner.scan = C.add, C.scan
        scanner.parser = mode == "parser"
    modes = []  # the wrapped mode each block left (it picks the next block's path)
    for start in range(0, len(lines), block):
        scanner.feed_lines(lines[start : start + block])
        modes.append(scanner._wrapped)
    scanner.finish()
    scanner.modes = modes  # type: ignore[attr-defined]
    return scanner


def _state(partial: Partial) -> dict[str, Any]:
    """Everything a partial holds, as plain values (dicts keyed by repr, sorted)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Sketch):
            return [bytes(value.bins), value.zeros, value.max]
        if isinstance(value, dict):
            return {repr(k): plain(v) for k, v in sorted(value.items(), key=repr)}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    summary = {
        name: plain(getattr(partial, name))
        for name in (
            "lines", "records", "other_lines", "skipped", "parts_lost", "filtered",
            "hopwatch_errors", "first_timestamp", "last_timestamp",
        )
    }  # fmt: skip
    endpoints = {
        repr(key): {name: plain(getattr(stats, name)) for name in EndpointStats.__slots__}
        for key, stats in partial.endpoints.items()
    }
    return {"summary": summary, "endpoints": dict(sorted(endpoints.items()))}


def differential(lines: list[bytes | str], block: int = 40) -> Scanner:
    """Scan ``lines`` the three ways; check they agree; the parser's scanner."""
    data = [text.encode() if isinstance(text, str) else text for text in lines]
    assert all(b"\n" not in text for text in data)
    taken = sum(_same_as_msgspec(text) for text in data)
    found = {mode: _scan(data, mode, block) for mode in MODES}
    parsed, plain = _state(found["parser"].partial), _state(found["msgspec"].partial)
    if repr(parsed) != repr(plain):  # bit for bit; on failure, show where
        assert parsed == plain
        for key in parsed["endpoints"]:
            assert repr(parsed["endpoints"][key]) == repr(plain["endpoints"][key]), key
        raise AssertionError("the partials' reprs differ")
    reference = _state(found["python"].partial)
    _trim(parsed, reference)
    assert close(parsed, reference)
    assert found["msgspec"].parsed_lines == found["python"].parsed_lines == 0
    assert found["parser"].parsed_lines <= taken
    enveloped = {mode: (found[mode].enveloped, found[mode].modes) for mode in MODES}  # type: ignore[attr-defined]
    assert enveloped["parser"] == enveloped["msgspec"] == enveloped["python"], enveloped
    assert found["parser"].slow_lines <= found["msgspec"].slow_lines
    return found["parser"]


#: What the parser reads of a line, in parse.Record's terms (see parse() in the C source).
READ = (
    "timestamp", "request_id", "method", "route", "view", "status", "interface",
    "duration_ms", "hops", "hop_ms", "wait_ms", "sync_to_async", "async_to_sync", "threads",
    "new_loops", "max_depth", "pinned_ms", "pinned_by", "hop_tax_us", "max_in_flight",
    "concurrent_ms", "db_connections", "overhead_ms", "work_ms", "sites_dropped",
)  # fmt: skip
SITE_READ = ("site", "kind", "direction", "count", "ms", "call_site", "overhead_ms")


def _same_as_msgspec(text: bytes) -> bool:
    """Whether the parser takes the line (or the line in its envelope); when it does,
    msgspec must decode it to the same values (repr for repr: -0.0, int or float) as a
    record add_plain takes."""
    assert C is not None
    found = C.parse(text)
    if found is None:
        inner = _same_envelope(text)
        return inner is not None and _same_as_msgspec(inner)
    decoded = in_utc(decode_record(text[text.index(b"{") :]))  # raises: wrongly taken
    assert not isinstance(decoded, str), (decoded, text)
    rec = decoded[0]
    optional = (rec.sample_rate, rec.hopwatch_errors, rec.profile)  # (sites_dropped: any)
    assert optional == (1.0, 0, None), text
    assert rec.sites or not rec.hops
    expected = {name: getattr(rec, name) for name in READ}
    expected["sites"] = [{name: getattr(s, name) for name in SITE_READ} for s in rec.sites]
    assert repr(sorted(found.items())) == repr(sorted(expected.items())), text
    return True


def _same_envelope(text: bytes) -> bytes | None:
    """The line C's unwrap finds in ``text``'s envelope (None: none, or not sure); the
    same as parse.envelope_line(parse.decode_envelope(...)) finds, when it is sure."""
    assert C is not None
    found = C.unwrap(text)
    if found is False:  # not sure: the Python loop's
        return None
    brace = text.find(b"{")
    try:
        expected = parse.envelope_line(parse.decode_envelope(text[brace:]))
    except parse.DECODE_ERRORS:
        expected = None
    if found is None:
        assert expected is None or brace == -1, text
        return None
    assert expected is not None and expected.encode() == found, (text, found)
    return bytes(found)


def _trim(*states: dict[str, Any]) -> None:
    """An endpoint with more causes than it keeps (SITE_CAP) sums the rest into "other";
    which ones depends on when it trims: as they come in C, per fold in Python. So there
    the causes are compared as totals (what they add up to is the same either way)."""
    for key in states[0]["endpoints"]:
        found = [state["endpoints"].get(key) for state in states]
        if any(stats and any(stats["other_site"]) for stats in found):
            for stats in found:
                if stats is not None:
                    causes = [*stats.pop("sites").values(), stats.pop("other_site")]
                    stats["cause_totals"] = [math.fsum(c[i] for c in causes) for i in range(5)]


def _encoded(rec: dict[str, Any], **options: Any) -> str:
    return json.dumps(rec, **options)


# --- what the parser reads is parse.Record --------------------------------------------------
def test_the_parser_reads_the_fields_of_record_and_site() -> None:
    """A field added to Record or Site must be added to the parser too (or the parser would
    skip it as an unknown key where msgspec reads it)."""
    assert C is not None
    for struct, names in ((Record, C.RECORD_FIELDS), (Site, C.SITE_FIELDS)):
        fields = msgspec.structs.fields(struct)
        assert names == tuple(f.name for f in fields)
        required = [f.name for f in fields if f.required]
        assert list(names[: len(required)]) == required  # the parser's required ones


# --- the renderings of bench/captured_logs.py ---------------------------------------------
@pytest.mark.parametrize("rendering", RENDERINGS)
@pytest.mark.parametrize("malformed", [0.0, 0.2])
def test_every_rendering_reads_the_same(tmp_path: Path, rendering: str, malformed: float) -> None:
    path = tmp_path / "log"
    truth = generate(path, 600, rendering, seed=31, malformed=malformed)
    scanner = differential(path.read_bytes().split(b"\n")[:-1])
    assert scanner.partial.records == truth["records"]
    assert scanner.partial.parts_lost == truth["parts_lost"]
    if malformed:  # msgspec's: a malformed part
        assert truth["records"] // 2 < scanner.parsed_lines < truth["records"]
    else:
        assert scanner.parsed_lines == truth["records"]


def test_the_usual_line_is_read_by_the_parser() -> None:
    lines = [line(request_id=f"r{i}", hop_ms=0.5 + i, status=200 + i, **PLAIN) for i in range(50)]
    scanner = differential(lines)
    assert scanner.parsed_lines == 50 and scanner.partial.records == 50


# --- JSON's freedoms: the parser reads them as msgspec does -------------------------------
def _variants() -> list[str]:
    rec = record(**PLAIN)
    base = json.dumps(rec)
    return [
        _encoded(rec, separators=(",", ":")),
        _encoded(rec, indent=None, separators=(" , ", " : ")),
        "{ \t" + base[1:-1].replace(", ", " ,\t\r") + " \r}",  # every JSON space but \n
        base + " \t\r",  # trailing spaces
        # a form feed, a vertical tab: no JSON space (mutant M37)
        base.replace('"hops": 15,', '"hops": 15,\f'),
        base.replace('"hops": 15,', '"hops":\f15,'),
        base.replace('"hops": 15,', '"hops": 15\f,'),
        "{\f" + base[1:],
        base + "\f",
        base.replace('"hops": 15,', '"hops": 15,\v'),
        # text after the object (mutant M20)
        base + "}",
        base + " x",
        base + ",",
        base + " {}",
        _encoded(dict(reversed(rec.items()))),
        _encoded(rec, sort_keys=True),
        _encoded({"a": [1, {"b": [[], {}, "x\\"]}], **rec, "z": {"y": None, "t": True}}),
        _encoded({**rec, "deep": [[[[[[[[1]]]]]]]]}),
        base.replace('"hops"', '"\\u0068ops"'),  # an escaped key
        base.replace('"hopwatch.request"', '"hopwatch\\u002erequest"'),  # an escaped event
        # an escaped event that is another, the marker elsewhere (mutant M44)
        base.replace('"event": "hopwatch.request"', '"x": "hopwatch.request", "event": "\\u0068opwatch.requesx"'),
        base.replace('"event": "hopwatch.request"', '"event": "hopwatch\\u002eprocess", "x": "hopwatch.request"'),
        base.replace('"/items/', '"\\/items\\/'),  # escaped solidus
        base.replace('"sites": [', '"sites" : [ '),
        base.replace('"GET"', '"\\u0047ET"'),
        # numbers in every JSON form for the float fields, ints as floats' values
        base.replace('"hop_ms": 4.187', '"hop_ms": 4187e-3'),
        base.replace('"hop_ms": 4.187', '"hop_ms": 0.4187E1'),
        base.replace('"hop_ms": 4.187', '"hop_ms": 4.187000000000000000000001'),
        base.replace('"hop_ms": 4.187', '"hop_ms": 4'),
        base.replace('"hop_ms": 4.187', '"hop_ms": 3.'),  # no digit after the point (M40)
        base.replace('"hop_ms": 4.187', '"hop_ms": 3.e1'),
        base.replace('"hop_ms": 4.187', '"hop_ms": .5'),
        base.replace('"hop_ms": 4.187', '"hop_ms": -0'),
        base.replace('"hop_ms": 4.187', '"hop_ms": -0.0'),
        base.replace('"hop_ms": 4.187', '"hop_ms": 0e400'),
        base.replace('"hop_ms": 4.187', '"hop_ms": 1e-400'),
        base.replace('"hop_ms": 4.187', '"hop_ms": 1e-300'),
        base.replace('"hop_ms": 4.187', '"hop_ms": 1e400'),
        base.replace('"hop_ms": 4.187', '"hop_ms": 999999999.99999999'),
        base.replace('"hop_ms": 4.187', '"hop_ms": 9007199254740993'),
        base.replace('"hop_ms": 4.187', '"hop_ms": 1.7976931348623157e308'),
        base.replace('"hop_ms": 4.187', '"hop_ms": 123456789012345678901234567890e-25'),
        base.replace('"duration_ms": 6.412', '"duration_ms": 1e22'),
        base.replace('"duration_ms": 6.412', '"duration_ms": 0.1e-22'),
        # 19, 20 and 21 digits (the parser holds 19 exactly): 9.0 each (mutant M10)
        base.replace('"duration_ms": 6.412', '"duration_ms": 0.000000000000000009e18'),
        base.replace('"duration_ms": 6.412', '"duration_ms": 0.0000000000000000009e19'),
        base.replace('"duration_ms": 6.412', '"duration_ms": 0.00000000000000000009e20'),
        base.replace('"duration_ms": 6.412', '"duration_ms": 90000000000000000000e-19'),
        base.replace('"wait_ms": 1.032', '"wait_ms": 0.000000000000000000000000001032e27'),
        base.replace('"hops": 15', '"hops": 15.0'),
        base.replace('"hops": 15', '"hops": 1.5e1'),
        base.replace('"hops": 15', '"hops": -0'),
        base.replace('"hops": 15', '"hops": -1'),
        base.replace('"hops": 15', '"hops": 999999999'),
        base.replace('"hops": 15', '"hops": 1000000000'),
        base.replace('"hops": 15', '"hops": 123456789012345678901234567890'),
        base.replace('"hops": 15', '"hops": 015'),
        base.replace('"hops": 15', '"hops": +15'),
        base.replace('"status": 200', '"status": 99'),
        base.replace('"status": 200', '"status": 999'),
        base.replace('"status": 200', '"status": 1000'),
        base.replace('"status": 200', '"status": null'),
        base.replace('"schema": 1', '"schema": 0'),
        base.replace('"schema": 1', '"schema": 2'),
        base.replace('"view": "shop.views.item_detail"', '"view": null'),
        base.replace('"method": "GET"', '"method": null'),
        base.replace('"route": "/items/<int:pk>/"', '"route": 7'),
        base.replace('"sites": [', '"sites": [{"site": "x", "kind": "y", "direction": "z",'
                     ' "count": 1, "ms": 0.1, "call_site": null, "overhead_ms": null},'),
        base.replace('"sites": [', '"sites": [null, '),
        base.replace('"sites": [', '"sites": [{}, '),
        base.replace('"sites": [', '"sites": [{"extra": [1, 2], "site": "a", "kind": "b",'
                     ' "direction": "c", "count": 2, "ms": 1}, '),
        base.replace('}]', '},]'),
        base.replace(', "level"', ',, "level"'),
        base.replace('{"event"', '{,"event"'),
        base[:-1] + ",}",
        base + "}",
        base + "x",
        base.replace(": ", ":", 1),
        base.replace('"event": ', '"event" '),
        base.replace("true", "tru") if "true" in base else base + " ",
        base.replace('"pinned_by": null', '"pinned_by": nul'),
        base.replace('"pinned_by": null', '"pinned_by": NULL'),
    ]  # fmt: skip


def test_json_variants_read_the_same() -> None:
    variants = _variants()
    scanner = differential(variants + variants[:5])
    assert scanner.parsed_lines >= 30  # the valid ones (most of them)


# --- strings: escapes, Unicode, hostile bytes ----------------------------------------------
HOSTILE = [
    'quote " and backslash \\ and slash /',
    "control \x00\x01\x1f \b\f\n\r\t",
    "café 直播 ünïcödé",
    "astral \U0001f600 \U00010348",
    "\u2028\u2029 separators",
    "",
    "x" * 600,  # past the cache's value limit
    "\\u0041 looks like an escape",
]


@pytest.mark.parametrize("ascii_only", [True, False])
def test_hostile_strings_read_the_same(ascii_only: bool) -> None:
    lines = []
    for i, text in enumerate(HOSTILE):
        named = [site(text, ms=0.2, overhead_ms=0.1), site(SESSION, call_site=text)]
        fields = {**PLAIN, "sites": named, "route": f"/{text}/", "view": f"v.{text}"}
        rec = record(request_id=f"{text}{i}", interface=text or "asgi", pinned_by=text, **fields)
        rec[text] = text  # as an unknown key too
        lines.append(json.dumps(rec, ensure_ascii=ascii_only))
    scanner = differential(lines + lines)
    assert scanner.parsed_lines == 2 * len(lines)


def test_strings_msgspec_refuses_are_left_to_it() -> None:
    base = line(**PLAIN)
    bad = [
        base.replace('"/items/', '"/\\ud800items/'),  # a lone high surrogate
        base.replace('"/items/', '"/\\udc00items/'),  # a lone low one
        base.replace('"/items/', '"/\\ud83d\\u0041items/'),  # a high one, then no low one
        base.replace('"/items/', '"/\\ud83d'),  # cut inside the pair
        base.replace('"/items/', '"/\\u12'),
        base.replace('"/items/', '"/\\u12G4'),
        base.replace('"/items/', '"/\\x41'),
        base.replace('"/items/', '"/\titems/'),  # a raw control character
        base.replace('"/items/', '"/\x7fitems/'),  # DEL is allowed
        base.replace('"info"', '"\\udc00info"'),  # a lone surrogate in a value not read
        base.replace('"info"', '"\\ud800"'),
        base.replace('"level"', '"\\udfffx"'),  # and in a key
    ]
    raw = base.encode()
    bad_bytes = [
        raw.replace(b"/items/", b"/\xffitems/"),  # not UTF-8: in a route
        raw.replace(b"/items/", b"/\xc3items/"),  # a sequence cut short
        raw.replace(b"/items/", b"/\xed\xa0\x80items/"),  # an encoded surrogate
        raw.replace(b"/items/", b"/\xc0\xafitems/"),  # an overlong form
        raw.replace(b"/items/", b"/\xf4\x90\x80\x80items/"),  # past U+10FFFF
        raw.replace(b'"0000000000000000"', b'"\xff000000000000000"'),  # in request_id
        raw.replace(b'"level"', b'"\xfflevel"'),  # in an unknown key
        raw.replace(b'"info"', b'"\xffinfo"'),  # in an unknown value
        *(raw.replace(b'"info"', b'"' + bad + b'"') for bad in NOT_UTF8),
        raw.replace(b'"info"', b'"caf\xc3\xa9"'),  # valid UTF-8 in an unknown value
    ]
    scanner = differential([*bad, *bad_bytes, base])
    # taken: DEL, the valid UTF-8 in an unknown value, and the plain line
    assert scanner.parsed_lines == 3


def test_many_distinct_values_fill_the_string_cache() -> None:
    """More distinct routes and causes than the cache holds: it stops growing, the values
    are made each time, the numbers stay the same."""
    lines = []
    for i in range(5000):
        named = [site(f"cause.{i % 2500}", ms=0.1, overhead_ms=0.05), site(SESSION)]
        fields = {**PLAIN, "sites": named}
        lines.append(line(route=f"/r/{i}/", view=f"v.{i % 3000}", **fields))
    scanner = differential(lines, block=500)
    assert scanner.parsed_lines == 5000


# --- timestamps ------------------------------------------------------------------------
TIMESTAMPS = [
    "2026-11-24T10:00:00Z",
    "2026-11-24T10:00:00.1Z",
    "2026-11-24T10:00:00.123456Z",
    "2026-11-24T10:00:00.1234567Z",  # rounded by msgspec
    "2026-11-24T10:00:00.9999995Z",  # rounded up to the next second
    "2026-11-24t10:00:00z",
    "2026-11-24 10:00:00Z",
    "2026-11-24_10:00:00Z",  # no other separator (mutant M48)
    "2026-11-24x10:00:00Z",
    "2026-11-24T10:00:00+00:00",
    "2026-11-24T10:00:00-00:00",
    "2026-11-24T10:00:00.5+01:00",
    "2026-11-24T01:00:00.5+0130",
    "2026-11-24T23:59:59.999999-23:59",
    "2024-02-29T12:00:00Z",
    "2023-02-29T12:00:00Z",  # no such day
    "2026-11-31T12:00:00Z",
    "2026-13-01T12:00:00Z",
    "2026-11-24T24:00:00Z",
    "2026-11-24T10:60:00Z",
    "2026-11-24T10:00:60Z",
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:30:00+01:00",  # before year 1 in UTC: skipped
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:30:00-01:00",  # after year 9999 in UTC: skipped
    "9999-12-31T23:00:00-01:00",  # 10000-01-01T00:00Z, the first moment after: skipped
    "0001-01-01T01:00:00+01:00",  # 0001-01-01T00:00Z, the first moment: taken
    "0001-01-01T00:59:59.999999+01:00",  # a microsecond before it: skipped
    "2026-11-24T10:00:00",  # no zone
    "2026-11-24T10:00:00.Z",
    "2026-11-24T10:00:00+24:00",
    "2026-11-24T10:00:00+01:60",
    "2026-11-24T10:00:00+1:00",
    "2026-11-24T10:00Z",
    "2026-11-24",
    "2026-11-24T10:00:00Z ",
    "\uff12\uff10\uff12\uff16-11-24T10:00:00Z",  # fullwidth digits
    "2026-11-24T10:00:00\\u005a",
]


def test_timestamps_read_the_same() -> None:
    lines = [line(timestamp=moment, request_id=moment, **PLAIN) for moment in TIMESTAMPS]
    scanner = differential([*lines, line(**PLAIN)], block=7)
    # RFC 3339 with a zone and at most microseconds, in range once in UTC (and the last)
    assert scanner.parsed_lines == 15


# --- what makes a record go through add_record, or be refused -------------------------------
def test_optional_values_and_nulls_read_the_same() -> None:
    cases: list[dict[str, Any]] = [
        {"sample_rate": 1}, {"sample_rate": 1.0}, {"sample_rate": 0.5},
        {"sample_rate": 1e-7}, {"sample_rate": None}, {"sites_dropped": 0},
        {"sites_dropped": 3}, {"sites_dropped": None}, {"hopwatch_errors": 0},
        {"hopwatch_errors": 2}, {"profile": None}, {"profile": "p.html"}, {"profile": 3},
        {"pinned_ms": None}, {"pinned_ms": 0.0}, {"pinned_ms": 2.5, "pinned_by": AUTH},
        {"pinned_by": 7}, {"overhead_ms": None, "work_ms": None}, {"overhead_ms": "n/a"},
        {"work_ms": 0.0}, {"work_ms": -0.0}, {"work_ms": 0}, {"db_connections": None},
        {"max_in_flight": 2, "concurrent_ms": 1.5}, {"max_in_flight": 1, "concurrent_ms": None},
        {"max_in_flight": 1, "concurrent_ms": -0.0}, {"max_in_flight": 1, "concurrent_ms": 0},
        {"hop_tax_us": 210.0}, {"hop_tax_us": None}, {"new_loops": 2, "threads": 5},
        {"max_depth": 3}, {"hops": 0, "sites": []}, {"hops": 4, "sites": []},
        {"sites": None}, {"sites": {}}, {"sites": [7]}, {"detail": "not a list"},
        {"detail": [{"depth": 1}]}, {"executors": {"loop": 1}}, {"event": "hopwatch.process"},
        {"status": None}, {"view": None, "route": "/wp-login.php", "status": 404},
        {"interface": "wsgi"}, {"hop_ms": 0.0005, "overhead_ms": 0.0},
    ]  # fmt: skip
    lines = []
    for i, extra in enumerate(cases):
        fields = {**PLAIN, **extra}
        fields.setdefault("hop_ms", 1.0 + i)
        lines.append(line(request_id=f"c{i}", **fields))
    lines.append(json.dumps(record(pinned=False, sites=SITES)))  # from before pinned_ms
    lines.append(line(**{**PLAIN, "sites": [{**SITES[0], "overhead_ms": None}]}))
    lines.append(line().replace('"hops":15,', ""))  # a required field missing
    lines.append(line().replace('"sites":[],', ""))  # sites missing
    scanner = differential(lines + lines, block=9)
    assert scanner.parsed_lines > 40


def test_lines_that_left_causes_out_are_read_by_the_parser() -> None:
    """``sites_dropped`` (SITES_LIMIT left causes out: every typical line of a default
    configured async view) no longer sends a line to add_record: the parser reads it, and
    its left-out hops and times (hop_ms and overhead_ms less the listed sites' math.fsum)
    are the same bit for bit with msgspec's decode, and with the pure-Python loop."""
    many = [site(f"app.mw{i}.process_request", ms=0.1 * (i + 1) + 1e-3 / 3, overhead_ms=0.07 * i)
            for i in range(12)]  # fmt: skip
    cases: list[dict[str, Any]] = [
        {"sites_dropped": 5, "hops": 15},  # the usual: hops left out
        {"sites_dropped": 1, "hops": 2},  # as many listed as it made: nothing left out
        {"sites_dropped": 2, "hops": 1},  # fewer hops than listed (a malformed line's)
        {"sites_dropped": 7, "hops": 15, "overhead_ms": None, "work_ms": None},
        {"sites_dropped": 3, "hops": 9, "sites": [{**SITES[0], "overhead_ms": None}, SITES[1]]},
        {"sites_dropped": 3, "hops": 9, "sites": [{**SITES[0], "overhead_ms": -0.0}, SITES[1]]},
        {"sites_dropped": 4, "hops": 30, "hop_ms": 0.2, "overhead_ms": 0.1},  # less than listed
        {"sites_dropped": 999_999_999, "hops": 999_999_999},
        {"sites_dropped": 3, "hops": 40, "sites": many, "hop_ms": 9.75, "overhead_ms": 4.5},
        {"sites_dropped": 3, "hops": 0, "sites": []},
        {"sites_dropped": 3, "hops": 6, "sites": []},  # no sites: add_record's, as before
        {"sites_dropped": 2, "hops": 9, "sample_rate": 0.5},  # sampled: add_record's
        {"sites_dropped": 2, "hops": 9, "hopwatch_errors": 1},
        {"sites_dropped": 1_000_000_000, "hops": 9},  # out of range: msgspec's (refused)
        {"sites_dropped": -1, "hops": 9},
        {"sites_dropped": 2.0, "hops": 9},
        {"sites_dropped": True, "hops": 9},
    ]
    lines = []
    for i, extra in enumerate(cases):
        lines.append(line(request_id=f"d{i}", **{**PLAIN, "hop_ms": 1.0 + i / 7, **extra}))
    lines += [line(request_id=f"p{i}", hop_ms=0.5 + i, **PLAIN) for i in range(5)]
    scanner = differential(lines + lines, block=7)
    assert scanner.parsed_lines == 2 * (10 + 5)
    python = _scan([text.encode() for text in lines], "python")
    (stats,) = [s for s in python.partial.endpoints.values() if s.sites_dropped]
    assert stats.sites_dropped == 5 + 1 + 2 + 7 + 3 + 3 + 4 + 999_999_999 + 3 + 3 + 3 + 2 + 2


def test_the_parsers_fsum_is_math_fsum() -> None:
    """A left-out time is hop_ms less math.fsum of the listed sites' ms; C sums them as
    math.fsum does (correctly rounded), so that the parser's partial is msgspec's."""
    assert C is not None
    rng = random.Random(85)
    for _ in range(20_000):
        scale = 10.0 ** rng.randint(-20, 8)
        values = [rng.choice([rng.random() * scale, round(rng.uniform(0, 50), 3), 0.0, -0.0,
                              1e-16, 1e16 / 3, 0.1, 2.5e-308])
                  for _ in range(rng.randint(0, 64))]  # fmt: skip
        assert repr(C.fsum(values)) == repr(math.fsum(values)), values


def test_duplicate_fields_are_left_to_msgspec() -> None:
    """msgspec keeps a duplicate field's last value; the parser does not take such lines."""
    base = line(**PLAIN)
    lines = [
        base.replace('"hops":15', '"hops":15,"hops":3'),
        base.replace('"route":', '"route":"/first/","route":'),
        base.replace('"ms":0.4', '"ms":0.4,"ms":9.0'),
        base.replace('"level":"info"', '"level":"info","level":"debug"'),  # unknown: taken
        base.replace('"event":', '"event":"hopwatch.request","event":'),
        # the last one null: msgspec's is null (mutants M18 M19 kept the first)
        base.replace('"pinned_ms":0.0', '"pinned_ms":0.5,"pinned_ms":null'),
        base.replace('"overhead_ms":0.1', '"overhead_ms":0.1,"overhead_ms":null', 1),
    ]
    scanner = differential(lines)
    assert scanner.parsed_lines == 1


def test_nesting_deeper_than_the_parser_goes_is_left_to_msgspec() -> None:
    assert C is not None
    base = line(**PLAIN)[:-1]
    lines = [
        f'{base},"deep":{"[" * depth}{"]" * depth}}}' for depth in (1, C.MAX_DEPTH - 1, C.MAX_DEPTH + 2, 2000)
    ]  # fmt: skip
    scanner = differential(lines)
    assert scanner.parsed_lines == 2


def test_more_causes_than_the_parser_holds_are_left_to_msgspec() -> None:
    assert C is not None
    many = [site(f"c{i}", ms=0.01) for i in range(C.MAX_SITES + 1)]
    enough = many[: C.MAX_SITES]
    lines = [line(hops=len(s), sites=s) for s in (many, enough)]
    scanner = differential(lines)
    assert scanner.parsed_lines == 1


# --- every truncation, and random damage ----------------------------------------------------
PLAIN_RENDERINGS = ("hopwatch", "structlog", "sorted", "spaced", "extra", "cri", "detail")


def _real_lines(
    tmp_path: Path, renderings: tuple[str, ...] = PLAIN_RENDERINGS, each: int = 2, seed: int = 5
) -> list[bytes]:
    """The first ``each`` lines of a small generated log in each rendering."""
    found = []
    for rendering in renderings:
        path = tmp_path / rendering
        generate(path, each + 1, rendering, seed=seed, foreign=0.0)
        found += path.read_bytes().split(b"\n")[:each]
    return found


def test_every_truncation_of_real_lines_reads_the_same(tmp_path: Path) -> None:
    real = _real_lines(tmp_path)
    lines = [text[:cut] for text in real for cut in range(0, len(text) + 1, 3)]
    lines += [text[:cut] for text in real[:4] for cut in range(len(text) - 40, len(text))]
    scanner = differential(lines, block=300)
    # (a cut in the whitespace after a line's object leaves it whole: spaced's "} ")
    complete = {text.rstrip() for text in real}
    whole = sum(1 for text in lines if text.rstrip() in complete)
    assert scanner.parsed_lines == whole
    assert scanner.partial.skipped.get("truncated", 0) > len(lines) // 2


ALPHABET = b'{}[],:"\\ \t\r\f0123456789.eE+-nultrfasx/u' + bytes([0, 0x1F, 0x7F, 0x80, 0xC3, 0xFF])


def _mutate(rng: random.Random, text: bytes) -> bytes:
    data = bytearray(text)
    for _ in range(rng.randint(1, 3)):
        how = rng.randrange(5)
        at = rng.randrange(len(data) + 1)
        if how == 0 and at < len(data):
            data[at] = rng.choice(ALPHABET)
        elif how == 1 and at < len(data):
            del data[at]
        elif how == 2:
            data.insert(at, rng.choice(ALPHABET))
        elif how == 3:  # a copy of a piece elsewhere (duplicate keys, nesting)
            start = rng.randrange(len(data))
            piece = data[start : start + rng.randint(1, 40)]
            data[at:at] = piece
        else:  # a digit changed (numbers: ranges, forms)
            digits = [i for i, c in enumerate(data) if 0x30 <= c <= 0x39]
            if digits:
                data[rng.choice(digits)] = rng.choice(b"0123456789")
    return bytes(data).replace(b"\n", b" ")


def test_random_damage_to_real_lines_reads_the_same(tmp_path: Path) -> None:
    """A seeded fuzz loop: a few thousand real lines with one to three random edits."""
    rng = random.Random(20261130)
    real = _real_lines(tmp_path)
    lines = [_mutate(rng, rng.choice(real)) for _ in range(4000)]
    scanner = differential(lines + real, block=250)
    # the edits that leave a valid record (a digit, a space, an unknown key's text) are taken
    assert len(real) < scanner.parsed_lines < len(lines)


# --- envelopes: the line inside a log shipper's wrapper -------------------------------------
def _docker(inner: str, **extra: Any) -> str:
    fields = {"log": inner + "\n", "stream": "stdout", "time": "2026-11-24T00:00:00.1Z", **extra}
    return json.dumps(fields, separators=(",", ":"))


def _logging(inner: str, **extra: Any) -> str:
    return json.dumps({"asctime": "2026-11-24", "levelname": "INFO", "message": inner, **extra})


def _padded(lines: list[str | bytes], good: list[str]) -> list[str | bytes]:
    """Each line after two usual enveloped ones: most records of every block come in an
    envelope, so the scanner reads them in its wrapped mode after the first block."""
    return [text for i, line in enumerate(lines) for text in (good[i % 2], good[1 - i % 2], line)]


def test_the_c_loop_knows_the_envelopes_keys() -> None:
    assert C is not None
    assert C.WRAPPER_KEYS == parse.WRAPPER_KEYS
    assert C.ESCAPED_MARKER == scan.ESCAPED_MARKER


def test_enveloped_usual_lines_are_read_by_the_parser() -> None:
    inner = [line(request_id=f"r{i}", hop_ms=0.5 + i, **PLAIN) for i in range(60)]
    lines = [(_docker if i % 3 else _logging)(text) for i, text in enumerate(inner)]
    scanner = differential(lines, block=20)
    assert scanner.parsed_lines == scanner.enveloped == scanner.partial.records == 60
    assert scanner.modes == [True, True, True]  # type: ignore[attr-defined]


def _envelope_variants() -> list[str | bytes]:
    base = line(**PLAIN)
    spaced = json.dumps(record(**PLAIN))
    wide = line(**{**PLAIN, "route": "/café/直播/\U0001f600/"})
    rec = record(**PLAIN)
    quoted = json.dumps(base)

    def fresh(k: int) -> str:  # a route the learning decoder has not seen: refused by it
        return _docker(line(**{**PLAIN, "route": f"/fresh/{k}/"}))

    return [
        _docker(base),
        _docker(spaced),
        _logging(base),
        _logging(spaced),
        json.dumps({"log": base}),  # no newline
        json.dumps({"log": base + "\n\n\n"}),  # several
        json.dumps({"log": base + "\r\n"}),  # \r stays: JSON space for the inner line
        json.dumps({"log": base + " \n"}),
        json.dumps({"log": "\n" + base + "\n"}),
        json.dumps({"log": "2026-11-24 INFO " + base}),  # a prefix inside
        json.dumps({"log": base + "x"}),  # trailing text inside
        json.dumps({"stream": "stdout", "log": base + "\n"}),  # key orders
        json.dumps({"time": "t", "stream": "stdout", "log": base + "\n", "z": [1, {"a": None}]}),
        json.dumps({"msg": base}),
        json.dumps({"MESSAGE": base}),
        json.dumps({"Message": base}),  # not a wrapper key
        json.dumps({"log": "plain text", "message": base}),  # the first one with the event
        json.dumps({"log": "hopwatch.request, no brace", "message": base}),
        json.dumps({"log": "{hopwatch.request}", "message": base}),  # inner line broken
        json.dumps({"message": base, "log": "{}"}),  # log first by key order, no event
        json.dumps({"log": None, "message": base}),
        json.dumps({"log": 7, "message": base}),  # a value that is not a string
        json.dumps({"log": {"event": "hopwatch.request"}, "message": base}),
        json.dumps({"log": [base]}),
        json.dumps({"log": True}),
        f'{{"log": 1e400, "message": {quoted}}}',  # msgspec refuses these values
        f'{{"log": 1{"0" * 5000}, "message": {quoted}}}',
        f'{{"log": {"[" * 600}{"]" * 600}, "message": {quoted}}}',
        json.dumps({"log": base, "log2": base}),
        f'{{"log": {quoted}, "log": {quoted}}}',  # duplicates
        f'{{"log": {quoted}, "log": "x"}}',
        f'{{"\\u006cog": {quoted}}}',  # an escaped key
        f'{{"lo\\u0067": {quoted}, "stream": "\\u00e9"}}',
        json.dumps({"log": base, "event": "not ours"}),  # an "event" key outside
        json.dumps({**rec, "log": base}),  # the outer line is a record too
        json.dumps({**rec, "message": line(**{**PLAIN, "route": "/inner/"})}),
        f'{{"\\u0065vent": "x", "log": {quoted}}}',
        _docker(wide),  # escaped Unicode (\\u00e9, surrogate pairs) in the envelope
        json.dumps({"log": wide}, ensure_ascii=False),
        json.dumps({"log": json.dumps(record(**{**PLAIN, "route": "/é/\U0001f600/"}))}),
        _docker(base).replace('"log":"{', '"log":"\\ud800{'),  # a lone surrogate
        _docker(base).replace('"log":"{', '"log":"\\udc00{'),
        _docker(base).replace('GET', '\\ud83d\\ude00'),  # a pair where the method is
        _docker(base).replace('"log":"{', '"log":"\\u007b', 1),  # the brace escaped
        _docker(base).replace('\\"event\\"', '\\"\\u0065vent\\"'),
        _docker(base).replace('\\"hopwatch.request\\"', '\\u0022hopwatch.request\\u0022'),
        _docker(base).replace("hopwatch.request", "hopwatch\\u002erequest"),
        _docker(base).replace("hopwatch.request", "hopwatch\\\\u002erequest"),
        # the marker not in its escaped quotes: the Python loop's fallback does not look in
        # the envelope when its learning decoder refuses the line inside
        fresh(1).replace('\\"hopwatch.request\\"', '\\u0022hopwatch.request\\u0022'),
        fresh(2).replace('\\"hopwatch.request\\"', '\\"hopwatch.request\\u0022'),
        fresh(3).replace("hopwatch.request", "hopwatch\\u002erequest"),
        fresh(4).replace('"stream":"stdout"', '"stream":"\\"hopwatch.request\\""'),
        _docker(base).replace('\\"hops\\"', '\\"hops\\" '),
        _docker(base.replace('"hops":15', '"hops":"15"')),  # the inner line: invalid
        _docker(base.replace('"sites":[', '"sites":7,"x":[')),  # a malformed part
        _docker(line(**{**PLAIN, "sample_rate": 0.5})),  # add_record's
        _docker(line(**{**PLAIN, "timestamp": "0001-01-01T00:30:00+01:00"})),  # out of range
        _docker(base[:-20]),  # truncated
        _docker(json.dumps({"event": "hopwatch.request", "level": "info"})),  # not a record
        _docker(json.dumps({"event": "hopwatch.process", "pid": 1})),
        _docker("GET /items/ 200"),  # another line in an envelope
        _docker(_docker(base)),  # nested envelopes
        _logging(_docker(base)),
        "2026-11-24T00:00:00Z stdout F " + _docker(base),  # a prefix outside
        _docker(base) + "  \t",
        _docker(base) + "\f",
        _docker(base).replace(',"stream"', ',\f"stream"'),
        _docker(base).replace('"log":', '"log":\f'),
        _docker(base) + "x",
        _docker(base)[:-1] + ",}",
        _docker(base).replace(',"stream"', ',,"stream"'),
        _docker(base).replace('"stream":"stdout"', '"stream":[[[[[[1]]]]]]'),
        _docker(base).encode().replace(b'"stdout"', b'"\xffstdout"'),  # not UTF-8 outside
        _docker(base).encode().replace(b"/items/", b"/\xc3\xa9items/"),  # UTF-8 inside
        _docker(base).encode().replace(b"/items/", b"/\xffitems/"),  # not UTF-8 inside
        _docker(base).encode().replace(b'"stream"', b'"\xff"'),  # in a key
        # no UTF-8 in a field of the inner line the report does not read: an overlong form
        # (0xC0), a code point past U+10FFFF, an encoded surrogate (mutants M05 M06 M07)
        *(_docker(line(**PLAIN, note="@@")).encode().replace(b"@@", bad) for bad in NOT_UTF8),
        _docker(base).replace("\\n", "\\u000a"),
        _docker(base).replace("\\n", "\\r"),
        "{}",
        '{"log": "\\\\"}',
    ]  # fmt: skip


def test_envelope_variants_read_the_same() -> None:
    good = [_docker(line(request_id=f"g{i}", **PLAIN)) for i in range(2)]
    variants = _envelope_variants()
    for block in (len(variants) * 3, 12):  # all in one block (not wrapped yet), and wrapped
        scanner = differential(_padded(variants, good) + variants, block=block)
        assert scanner.parsed_lines >= 2 * len(variants) + 30
    for found in variants[:4]:  # each usual form, on its own
        assert differential([found, found]).parsed_lines == 2


def _enveloped_real_lines(tmp_path: Path) -> list[bytes]:
    return _real_lines(tmp_path, ("docker", "logging"), each=3, seed=7)


def test_every_truncation_of_enveloped_lines_reads_the_same(tmp_path: Path) -> None:
    real = _enveloped_real_lines(tmp_path)
    cuts = [text[:cut] for text in real for cut in range(len(text) + 1)]
    good = [real[0].decode(), real[-1].decode()]
    scanner = differential(_padded(cuts, good), block=600)
    whole = sum(1 for text in cuts if text in real) + 2 * len(cuts)
    assert scanner.parsed_lines == whole
    assert scanner.modes[-1]  # type: ignore[attr-defined]


def test_random_damage_to_enveloped_lines_reads_the_same(tmp_path: Path) -> None:
    """The seeded fuzz loop on enveloped lines: the edits land in the envelope or in the
    escaped line inside it."""
    rng = random.Random(20261201)
    real = _enveloped_real_lines(tmp_path)
    lines = [_mutate(rng, rng.choice(real)) for _ in range(4000)]
    scanner = differential(lines + real, block=250)
    assert len(real) < scanner.parsed_lines < len(lines)
    assert all(scanner.modes)  # type: ignore[attr-defined]
