"""Decoding hopwatch lines: the typed and general decoders, skip reasons, malformed parts."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hopwatch.report import parse, rank
from hopwatch.report.aggregate import Partial
from hopwatch.report.parse import Record, decode_general, decode_line
from hopwatch.report.scan import Scanner
from tests.helpers import asgi_request
from tests.report.conftest import Run
from tests.report.samples import SESSION, canonical_lines, line, record, site


def decode(text: str | bytes) -> Record | str | None:
    """The record (dropping which parts it lost), the skip reason, or None."""
    result = decode_line(text.encode() if isinstance(text, str) else text)
    return result[0] if isinstance(result, tuple) else result


def values(rec: Record) -> dict[str, Any]:
    """A record's fields as plain data (the learning decoder's records are subclasses)."""
    fields = msgspec.structs.asdict(rec)
    fields["sites"] = [msgspec.structs.asdict(s) for s in rec.sites]
    return fields


EXAMPLE = (
    '{"event":"hopwatch.request","schema":1,"timestamp":"2026-11-24T23:59:01.123456Z",'
    '"request_id":"6f1c0e0a9b2d4e55","method":"GET","route":"/items/<int:pk>/",'
    '"view":"shop.views.item_detail","status":200,"interface":"asgi","duration_ms":6.412,'
    '"hops":15,"hop_ms":4.187,"wait_ms":1.032,"sync_to_async":15,"async_to_sync":0,'
    '"threads":2,"new_loops":0,"max_depth":1,"sites":[{"site":"django.contrib.sessions.'
    'middleware.SessionMiddleware.process_request","kind":"middleware","direction":'
    '"sync_to_async","count":1,"ms":0.41}],"level":"info","logger":"hopwatch"}'
)


def test_the_documented_example_decodes() -> None:
    result = decode(EXAMPLE)
    assert isinstance(result, Record)
    assert (result.method, result.route, result.hops, result.hop_ms) == (
        "GET",
        "/items/<int:pk>/",
        15,
        4.187,
    )
    assert parse.timestamp_text(result.timestamp) == "2026-11-24T23:59:01.123456Z"
    assert result.sites[0].site.endswith("SessionMiddleware.process_request")
    assert result.sites[0].count == 1 and result.sites[0].ms == 0.41
    assert result.pinned_ms is None and result.sample_rate == 1.0  # optional: the defaults


def _renderings(rec: dict[str, Any]) -> list[str]:
    """The same record as different emitters and shippers write it."""
    reordered = {k: v for k, v in rec.items() if k != "event"} | {"event": rec["event"]}
    return [
        json.dumps(rec, separators=(",", ":"), ensure_ascii=False),  # hopwatch's own
        json.dumps(reordered),  # structlog's JSONRenderer: ", " and ": ", event last
        json.dumps(rec, sort_keys=True),  # sorted, every non-ASCII character escaped
        "{ " + json.dumps(dict(reversed(rec.items())), separators=(" , ", " : "))[1:-1] + " }\t",
        json.dumps({"tenant": {"id": [1, {"x": None}]}, **rec, "extra": "x"}),  # extra keys
        json.dumps({"log": json.dumps(rec) + "\n", "stream": "stdout"}),  # docker json-file
        json.dumps({"levelname": "INFO", "message": json.dumps(rec)}),  # a logging formatter
        "2026-11-24T10:00:00.123456789Z stdout F " + json.dumps(rec),  # CRI
        "[pod/web-1/web] " + json.dumps(rec, separators=(",", ":")),  # kubectl --prefix
        json.dumps({**rec, "detail": [{"direction": "sync_to_async", "depth": 1}] * 3}),
        json.dumps({**rec, "schema": 2, "future_ms": 1.5, "future": {"nested": [1]}}),
    ]


def test_every_rendering_of_a_record_reads_the_same() -> None:
    rec = record(
        route="/café/直播/",
        view="shop.views.café",
        sites=[
            site(SESSION, ms=1.25),
            site("QuerySet.aget", "orm", 3, 0.5, call_site="shop/views.py:42 in détail"),
        ],
        pinned_ms=0.75,
        pinned_by=SESSION,
    )
    expected = decode(_renderings(rec)[0])
    assert isinstance(expected, Record)
    for text in _renderings(rec)[1:]:
        got = decode(text)
        assert isinstance(got, Record), text
        if '"schema": 2' in text:
            got.schema = 1
        assert values(got) == values(expected), text


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        (line(route="/café/").replace("é", "\\u00e9"), "route", "/café/"),  # an escape
        (line(timestamp="2026-11-24T10:00:00Z"), "timestamp", "2026-11-24T10:00:00.000000Z"),
        (line(timestamp="2026-11-24T11:00:00.5+01:00"), "timestamp", "2026-11-24T10:00:00.500000Z"),
        (line(timestamp="2026-11-24T10:00:00.5"), "timestamp", "2026-11-24T10:00:00.500000Z"),
        (line(timestamp="2026-11-24 10:00"), "timestamp", "2026-11-24T10:00:00.000000Z"),
        (line().replace('"hop_ms":4.187', '"hop_ms":4187e-3'), "hop_ms", 4.187),
        (line(hop_ms=4), "hop_ms", 4.0),
        (line(hop_ms=4.1234567), "hop_ms", 4.1234567),
        (line(sites=[site(f"s{i}") for i in range(12)]), "sites", 12),
        (line(sites=[{**site("QuerySet.aget", "orm"), "call_site": None}]), "sites", 1),
        (line(view=None, status=None), "view", None),
        (line(sample_rate=None, profile=None), "sample_rate", 1.0),  # null: absent
    ],
)
def test_values_are_read_as_documented(text: str, field: str, value: Any) -> None:
    result = decode(text)
    assert isinstance(result, Record)
    got = getattr(result, field)
    if field == "timestamp":
        got = parse.timestamp_text(got)
    elif field == "sites":
        got = len(got)
    assert got == value


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (line(duration_ms=-1), "invalid:duration_ms"),
        (line(hop_ms=1e9), "invalid:hop_ms"),
        (line(hops=10**12), "invalid:hops"),
        (line(hops="15"), "invalid:hops"),
        (line(hops=15.0), "invalid:hops"),
        (line(threads=True), "invalid:threads"),
        (line().replace('"wait_ms":1.032', '"wait_ms":NaN'), "invalid:wait_ms"),
        (line().replace('"wait_ms":1.032', '"wait_ms":Infinity'), "invalid:wait_ms"),
        (line().replace('"wait_ms":1.032', '"wait_ms":1e999'), "invalid:wait_ms"),
        (line(status=42), "invalid:status"),
        (line(status="200"), "invalid:status"),
        (line(view=7), "invalid:view"),
        (line(schema=0), "invalid:schema"),
        (line(timestamp="yesterday"), "invalid:timestamp"),
        (line(timestamp="0001-01-01T00:00:00+01:00"), "invalid:timestamp"),  # before year 1
        (line(request_id=None), "invalid:request_id"),
        (line(sample_rate=0), "invalid:sample_rate"),  # it weighs the counts: no guessing
        (line(sample_rate=2), "invalid:sample_rate"),
        (line(sample_rate=1e-9), "invalid:sample_rate"),
        (line(sample_rate="0.5"), "invalid:sample_rate"),
        (json.dumps({k: v for k, v in record().items() if k != "hop_ms"}), "missing:hop_ms"),
        (line()[:-40], "truncated"),
        (line().replace('"hops":15', '"hops":15,,'), "malformed_json"),
        (line() + " trailing", "malformed_json"),
        # deeper than either decoder goes: malformed whatever the interpreter's own limit
        (line()[:-1] + ',"deep":' + "[" * 100_000 + "]" * 100_000 + "}", "malformed_json"),
        (
            '{"event":"hopwatch.request","x":' + "[" * 100_000 + "]" * 100_000 + "}",
            "malformed_json",
        ),
        ('{"event":"hopwatch.request","n":' + "9" * 10_000 + "}", "malformed_json"),
    ],
)
def test_bad_records_are_skipped_with_a_reason(text: str, reason: str) -> None:
    assert decode(text) == reason
    assert _scan([text.encode()]).skipped == {reason: 1}


@pytest.mark.parametrize(
    ("fields", "lost", "sites_kept"),
    [
        ({"sites": {"a": 1}}, ["sites"], 0),
        ({"sites": "x"}, ["sites"], 0),
        ({"sites": [site("ok", ms=1.0), site("x", ms=-0.5), {"site": "y"}, 7]}, ["sites"], 1),
        ({"sites": [site("ok"), {**site("x"), "call_site": 5}]}, ["sites"], 1),
        ({"pinned_ms": -3}, ["pinned_ms"], 1),
        ({"pinned_by": 5, "profile": 12}, ["pinned_by", "profile"], 1),
        ({"hop_tax_us": "fast", "sites_dropped": -1}, ["sites_dropped", "hop_tax_us"], 1),
        ({"hopwatch_errors": 1.5}, ["hopwatch_errors"], 1),
    ],
)
def test_a_malformed_part_is_left_out_and_the_record_counted(
    fields: dict[str, Any], lost: list[str], sites_kept: int
) -> None:
    fields = {"sites": [site(SESSION, ms=0.5)], **fields}
    text = line(**fields)
    result = decode_line(text.encode())
    assert isinstance(result, tuple)
    rec, parts = result
    assert list(parts) == lost and len(rec.sites) == sites_kept
    assert (rec.hops, rec.hop_ms, rec.route) == (15, 4.187, "/items/<int:pk>/")
    partial = _scan([text.encode()])
    assert (
        partial.records == 1
        and partial.skipped == {}
        and partial.parts_lost == dict.fromkeys(lost, 1)
    )
    (row,) = _document(partial)["rows"]
    assert row["requests"] == 1 and row["hop_ms"]["total"] == 4.187
    assert len(row["causes"]) == sites_kept


def test_a_record_without_sites_is_counted_and_says_so() -> None:
    text = json.dumps({k: v for k, v in record().items() if k != "sites"})
    partial = _scan([text.encode()])
    assert partial.records == 1 and partial.parts_lost == {"sites": 1}


def test_hops_without_sites_are_left_out_in_both_loops(
    run_cli: Callable[..., Run], tmp_path: Path, implementation: str
) -> None:
    """A record of hops that lists no site (an empty "sites"): its hops and time are
    the report's left-out ones, by both loops. (The C parser hands such a line to
    add_record; mutant M21 read it itself and lost them: no left_out at all.)"""
    log = tmp_path / "app.log"
    bare = line(route="/bare/", hops=6, hop_ms=0.748)
    assert '"sites":[]' in bare
    log.write_text(bare + "\n" + line(route="/good/", sites=[site(SESSION, ms=0.5)]) + "\n")
    run = run_cli(log, "--format", "json", "--top", "0")
    assert (run.status, run.err) == (0, "")
    report = json.loads(run.out)
    summary = report["summary"]
    assert (summary["records"], summary["skipped"], summary["parts_lost"]) == (2, 0, {})
    left_out = {"requests": 1, "count": 6, "ms": 0.748, "overhead_ms": None}
    assert summary["left_out"] == {**left_out, "share": 0.2857, "overhead_share": None}
    rows = {row["route"]: row for row in report["rows"]}
    assert rows["/bare/"]["left_out"] == {**left_out, "share": 1.0, "overhead_share": None}
    assert (rows["/bare/"]["causes"], rows["/good/"]["left_out"]) == ([], None)


def test_detail_and_fields_the_report_does_not_read_never_cost_a_record() -> None:
    texts = [
        line(detail="not a list", detail_dropped="x", scope=7, response_closed="maybe"),
        line(future_ms={"not": "a number"}, tags=[None]),
    ]
    partial = _scan([t.encode() for t in texts])
    assert partial.records == 2 and partial.skipped == {} and partial.parts_lost == {}


def test_an_optional_field_is_one_edit() -> None:
    """Every optional field of Record is separable and read by both decoders."""
    optional = {f.name for f in msgspec.structs.fields(Record) if not f.required}
    assert set(parse.SEPARABLE) == optional | {"sites"}
    assert optional >= parse.WEIGHING
    for name in optional - parse.WEIGHING:
        result = decode_line(line(**{name: {"malformed": True}}).encode())
        assert isinstance(result, tuple) and result[1] == (name,), name


def test_invalid_utf8_is_a_skip_reason_not_an_error() -> None:
    raw = line(route="/x/").encode().replace(b"/x/", b"/\xff\xfe/")
    assert decode(raw) == "invalid_utf8"


def test_invalid_utf8_in_an_enveloped_line_is_a_skip_reason_too(
    run_cli: Callable[..., Run], tmp_path: Path, implementation: str
) -> None:
    """A hopwatch line in docker's envelope holds the event only escaped (no
    '"hopwatch.request"' in its bytes): a byte of it not UTF-8 is still hopwatch's line."""
    docker = json.dumps({"log": line(route="/x/") + "\n", "stream": "stdout"})
    raw = docker.encode().replace(b"/x/", b"/\xff\xfe/")
    assert decode(raw) == "invalid_utf8"
    log = tmp_path / "app.log"
    log.write_bytes(raw + b"\n")
    summary = json.loads(run_cli(log, "--format", "json").out)["summary"]
    assert (summary["records"], summary["other_lines"]) == (0, 0)
    assert summary["skipped_by_reason"] == {"invalid_utf8": 1}


@pytest.mark.parametrize(
    "bad",
    [b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xed\xa0\x80"],
    ids=["overlong-form", "past-U+10FFFF", "encoded-surrogate"],
)
def test_no_utf8_in_a_field_not_read_of_an_enveloped_line_is_a_skip_reason(
    run_cli: Callable[..., Run], tmp_path: Path, implementation: str, bad: bytes
) -> None:
    """Bytes no UTF-8 decoder takes (an overlong form from 0xC0, a code point past
    U+10FFFF, a surrogate encoded) in a field the report does not read, in a line in
    docker's envelope: skipped as invalid_utf8, as msgspec refuses the envelope; the line
    after it is read. (The C loop's unwrap checks the bytes of the line it unwraps;
    mutants M05 M06 M07 let each of these through, and counted the record.)"""
    sites = [site(SESSION, ms=0.5)]  # (a record of hops and no sites is msgspec's)
    docker = json.dumps({"log": line(sites=sites, note="@@") + "\n", "stream": "stdout"})
    raw = docker.encode().replace(b"@@", bad)
    assert decode(raw) == "invalid_utf8"
    good = json.dumps({"log": line(route="/good/", sites=sites) + "\n", "stream": "stdout"})
    log = tmp_path / "app.log"
    log.write_bytes(raw + b"\n" + good.encode() + b"\n")
    run = run_cli(log, "--format", "json", "--top", "0")
    assert (run.status, run.err) == (0, "")
    report = json.loads(run.out)
    summary = report["summary"]
    assert (summary["lines"], summary["records"], summary["other_lines"]) == (2, 1, 0)
    assert summary["skipped_by_reason"] == {"invalid_utf8": 1}
    assert [row["route"] for row in report["rows"]] == ["/good/"]


@pytest.mark.parametrize(
    "number",
    [
        "9.0",
        "0.000000000000000009e18",  # 19 digits
        "0.0000000000000000009e19",  # 20
        "0.00000000000000000009e20",  # 21
        "90000000000000000000e-19",  # 20, the 9 first
        "9.0000000000000000000",
    ],
)
def test_a_number_of_many_digits_reads_its_value(
    run_cli: Callable[..., Run], tmp_path: Path, implementation: str, number: str
) -> None:
    """A time written with 19, 20 or 21 significant digits reads as its value. (The C
    parser keeps 19 digits exactly, and sends a longer number to strtod; mutant M10 took
    20 as exact, dropped the twentieth digit and read 0.0000000000000000009e19 as 0.0.)"""
    text = line(sites=[site(SESSION, ms=0.5)], duration_ms=1.5)
    log = tmp_path / "app.log"
    log.write_text(text.replace('"duration_ms":1.5', f'"duration_ms":{number}') + "\n")
    run = run_cli(log, "--format", "json", "--top", "0")
    assert (run.status, run.err) == (0, "")
    report = json.loads(run.out)
    assert (report["summary"]["records"], report["summary"]["skipped"]) == (1, 0)
    (row,) = report["rows"]
    assert row["duration_ms"] == {"mean": 9.0}
    assert row["hop_share"] == round(4.187 / 9.0, 4)


@pytest.mark.parametrize(
    ("moment", "utc"),
    [
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),  # the last moment
        ("9999-12-31T23:00:00-01:00", None),  # 10000-01-01T00:00Z: the first one after
        ("0001-01-01T01:00:00+01:00", "0001-01-01T00:00:00.000000Z"),  # the first moment
        ("0001-01-01T00:59:59.999999+01:00", None),  # a microsecond before it
        ("2026-11-25t10:00:00z", "2026-11-25T10:00:00.000000Z"),  # RFC 3339's separators
        ("2026-11-25 10:00:00Z", "2026-11-25T10:00:00.000000Z"),
        ("2026-11-25_10:00:00Z", None),  # and no other
        ("2026-11-25x10:00:00Z", None),
    ],
)
def test_a_timestamp_is_read_in_utc_or_skipped(
    run_cli: Callable[..., Run],
    tmp_path: Path,
    implementation: str,
    moment: str,
    utc: str | None,
) -> None:
    """A timestamp in range as written but out of years 1 to 9999 once in UTC is skipped
    as invalid:timestamp, by both loops; the ends of the range are read. (Mutant M17 took
    10000-01-01T00:00Z in C, and the report ended with a ValueError: year 10000.) The
    date and the time are separated by "T", "t" or a space, as msgspec reads RFC 3339;
    any other is invalid (mutant M48 took "_" in C)."""
    sites = [site(SESSION, ms=0.5)]
    text = line(timestamp=moment, request_id="edge", sites=sites)
    log = tmp_path / "app.log"
    log.write_text(text + "\n" + line(sites=sites) + "\n")
    run = run_cli(log, "--format", "json", "--top", "0")
    assert (run.status, run.err) == (0, "")
    summary = json.loads(run.out)["summary"]
    usual = "2026-11-24T10:00:00.000000Z"
    moments = sorted([usual] if utc is None else [usual, utc])
    skipped = {} if utc else {"invalid:timestamp": 1}
    assert (summary["lines"], summary["records"], summary["skipped_by_reason"]) == (
        2,
        len(moments),
        skipped,
    )
    assert (summary["first_timestamp"], summary["last_timestamp"]) == (moments[0], moments[-1])


def _malformed() -> list[Any]:
    base = line(sites=[site(SESSION, ms=0.5)])
    docker = json.dumps({"log": base + "\n", "stream": "stdout"}, separators=(",", ":"))
    cases = {
        # a form feed is no JSON space (mutant M37)
        "ff-after-comma": base.replace('"hops":15,', '"hops":15,\f'),
        "ff-before-value": base.replace('"hops":15,', '"hops":\f15,'),
        "ff-after-object": base + "\f",
        "ff-envelope-after-comma": docker.replace(',"stream"', ',\f"stream"'),
        "ff-envelope-before-value": docker.replace('"log":', '"log":\f'),
        "ff-after-envelope": docker + "\f",
        # text after the object (mutant M20)
        "brace-after-object": base + "}",
        "text-after-object": base + " x",
        "comma-after-object": base + ",",
        # a decimal point with no digit after it (mutant M40)
        "bare-point": base.replace('"hop_ms":4.187', '"hop_ms":3.'),
        "bare-point-exponent": base.replace('"hop_ms":4.187', '"hop_ms":3.e1'),
    }
    return [pytest.param(text, id=name) for name, text in cases.items()]


@pytest.mark.parametrize("text", _malformed())
def test_lines_msgspec_refuses_are_malformed_json_in_both_loops(
    run_cli: Callable[..., Run], tmp_path: Path, implementation: str, text: str
) -> None:
    """JSON's spaces are space, tab, line feed and carriage return: a form feed between
    the tokens of a line, or of its envelope, makes it malformed_json for both loops, as
    text after the object does, and a number with a decimal point and no digit after it.
    (Mutants of the C parser took each and counted the record: M37 skipped a form feed
    as a space, M20 read no further than the object, M40 read "3." as 3.0.)"""
    log = tmp_path / "app.log"
    log.write_text(text + "\n" + line(route="/good/", sites=[site(SESSION)]) + "\n")
    run = run_cli(log, "--format", "json", "--top", "0")
    assert (run.status, run.err) == (0, "")
    report = json.loads(run.out)
    summary = report["summary"]
    assert (summary["lines"], summary["records"], summary["other_lines"]) == (2, 1, 0)
    assert summary["skipped_by_reason"] == {"malformed_json": 1}
    assert [row["route"] for row in report["rows"]] == ["/good/"]


def _utf8_first(decode: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``decode`` as msgspec before 0.23 read bytes (the floor was 0.19): a byte not UTF-8
    in a string raised UnicodeDecodeError (0.23 raises its DecodeError)."""

    def strict(data: Any) -> Any:
        if not isinstance(data, str):
            bytes(data).decode("utf-8")
        return decode(data)

    return strict


def test_a_decoder_raising_unicode_decode_error_skips_the_line(
    run_cli: Callable[..., Run],
    tmp_path: Path,
    implementation: str,
    log_lines: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real request's line with one byte 0xff in its route, read by typed decoders that
    raise UnicodeDecodeError for it as msgspec 0.19 to 0.22 did: a skip reason, as with
    0.23; the report ended with that error's traceback (exit 1)."""
    asgi_request("/sync/")
    (good,) = log_lines.raw
    bad = good.encode().replace(b'"route":"/sync/"', b'"route":"/sy\xffnc/"')
    assert b"\xff" in bad
    monkeypatch.setattr(parse, "decode_record", _utf8_first(parse.decode_record))
    build = parse.LearningDecoder._build
    monkeypatch.setattr(parse.LearningDecoder, "_build", lambda self: _utf8_first(build(self)))
    with pytest.raises(UnicodeDecodeError):
        parse.decode_record(bad)
    assert decode(bad) == "invalid_utf8"
    log = tmp_path / "app.log"
    log.write_bytes(good.encode() + b"\n" + bad + b"\n" + good.encode() + b"\n")
    run = run_cli(log, "--format", "json")
    assert (run.status, run.err) == (0, "")
    summary = json.loads(run.out)["summary"]
    assert (summary["lines"], summary["records"], summary["other_lines"]) == (3, 2, 0)
    assert summary["skipped_by_reason"] == {"invalid_utf8": 1}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain text mentioning hopwatch.request",
        '{"event":"django.request","message":"hopwatch.request was slow"}',
        "{not json but mentions hopwatch.request",
        '["hopwatch.request"]',
        '{"log":"no object in here: hopwatch.request"}',
        '{"event": "hopwatch.request logging enabled", "level": "debug"}',
    ],
)
def test_lines_that_are_not_hopwatch_records_are_other(text: str) -> None:
    assert decode(text) is None
    partial = _scan([text.encode()])
    assert partial.other_lines == 1 and partial.records == 0


@pytest.mark.parametrize("ending", ["\n", "\r\n", " \r\n", "\r\t\n"])
def test_the_tail_of_a_torn_line_is_torn_whatever_the_line_ending(
    run_cli: Callable[..., Run], tmp_path: Path, implementation: str, ending: str
) -> None:
    """The tail of a torn hopwatch line (no marker, no brace, the emitter's ending) is
    skipped as torn by both loops, in a log of CRLF line endings too: the carriage
    return and blanks after the ending are not part of the line. (Mutant M35 kept the
    "\r" in C and counted the tail as another logger's line.)"""
    sites = [site(SESSION, ms=0.5)]
    torn = line(request_id="torn")
    tail = torn[torn.index('"threads"') :]
    assert tail.endswith(parse.LINE_ENDING.decode()) and "{" not in tail
    lines = [line(request_id="a", sites=sites), tail, line(request_id="b", sites=sites)]
    log = tmp_path / "app.log"
    log.write_bytes("".join(text + ending for text in lines).encode())
    run = run_cli(log, "--format", "json", "--top", "0")
    assert (run.status, run.err) == (0, "")
    summary = json.loads(run.out)["summary"]
    assert (summary["lines"], summary["records"], summary["other_lines"]) == (3, 2, 0)
    assert summary["skipped_by_reason"] == {"torn": 1}


@pytest.mark.parametrize(
    "event", ["\\u0068opwatch.requesx", "hopwatch\\u002eprocess", "hopwatch.request\\u0020"]
)
def test_an_escaped_event_that_is_another_is_another_line(
    run_cli: Callable[..., Run], tmp_path: Path, implementation: str, event: str
) -> None:
    """A line whose "event" is escaped and, unescaped, is not hopwatch.request (the
    marker elsewhere in the line) is another logger's line for both loops. (Mutant M44
    let the C parser take any escaped event, and counted it as a request.)"""
    sites = [site(SESSION, ms=0.5)]
    other = line(route="/other/", sites=sites).replace(
        '"event":"hopwatch.request"', f'"x":"hopwatch.request","event":"{event}"'
    )
    assert '"x":"hopwatch.request"' in other
    log = tmp_path / "app.log"
    log.write_text(other + "\n" + line(route="/good/", sites=sites) + "\n")
    run = run_cli(log, "--format", "json", "--top", "0")
    assert (run.status, run.err) == (0, "")
    report = json.loads(run.out)
    summary = report["summary"]
    assert (summary["lines"], summary["records"], summary["other_lines"]) == (2, 1, 1)
    assert summary["skipped_by_reason"] == {}
    assert [row["route"] for row in report["rows"]] == ["/good/"]


def test_raw_control_characters_in_strings_are_accepted() -> None:
    text = line(route="/a\x01b/", view="v\x1b[31m")
    result = decode(text)
    assert isinstance(result, Record) and result.route == "/a\x01b/"


def test_a_prefix_before_the_object_is_ignored() -> None:
    text = "2026-11-24T10:05:00.000000001Z stdout F " + line()
    assert isinstance(decode(text), Record)
    partial = _scan([text.encode()])
    assert partial.records == 1


def test_the_object_is_found_at_the_first_brace_as_documented() -> None:
    text = "[pod {web}] " + line()
    assert decode(text) == "malformed_json"
    assert _scan([text.encode()]).records == 0


def test_a_log_shippers_envelope_is_unwrapped() -> None:
    wrapped = json.dumps({"log": line(request_id="inner") + "\n", "stream": "stdout"})
    result = decode(wrapped)
    assert isinstance(result, Record) and result.request_id == "inner"
    assert decode(json.dumps({"message": "x " + line()[:-5]})) == "truncated"
    assert decode(json.dumps({"msg": line(hops=-1)})) == "invalid:hops"


def test_a_duplicate_key_means_the_last_one_wins_in_both_decoders() -> None:
    text = line()[:-1] + ',"hops":3}'
    result = decode(text)
    assert isinstance(result, Record) and result.hops == 3
    general = decode_general(text.encode())
    assert isinstance(general, tuple) and general[0].hops == 3
    partial = _scan([text.encode()])
    assert partial.endpoints and next(iter(partial.endpoints.values())).acc[5] == 3


@pytest.mark.parametrize("where", ["line", "site"])
def test_a_duplicate_key_whose_last_value_is_null_reads_null(
    run_cli: Callable[..., Run], tmp_path: Path, implementation: str, where: str
) -> None:
    """msgspec keeps a duplicate key's last value, null too: "pinned_ms":0.5,
    "pinned_ms":null is no pinned time, a site's "overhead_ms":0.1,"overhead_ms":null no
    overhead, by both loops. (Mutants M18 M19 let the C parser read such lines, line
    and site, and it kept the 0.5 and the 0.1.)"""
    sites = [site(SESSION, ms=0.5, overhead_ms=0.1)]
    text = line(route="/dup/", sites=sites)
    if where == "line":
        text = text.replace('"pinned_ms":0.0', '"pinned_ms":0.5,"pinned_ms":null')
    else:
        text = text.replace('"overhead_ms":0.1', '"overhead_ms":0.1,"overhead_ms":null')
    log = tmp_path / "app.log"
    log.write_text(text + "\n" + line(route="/good/", sites=sites) + "\n")
    run = run_cli(log, "--format", "json", "--top", "0")
    assert (run.status, run.err) == (0, "")
    report = json.loads(run.out)
    assert (report["summary"]["records"], report["summary"]["skipped"]) == (2, 0)
    rows = {row["route"]: row for row in report["rows"]}
    expected = {"mean": 0.0, "total": 0.0, "records": 1, "by": []}
    assert rows["/good/"]["pinned_ms"] == expected
    assert rows["/dup/"]["pinned_ms"] == (None if where == "line" else expected)
    [cause] = rows["/dup/"]["causes"]
    assert (cause["ms"], cause["overhead_ms"]) == (0.5, 0.1 if where == "line" else None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-24T10:00:00.123456Z", "2026-11-24T10:00:00.123456Z"),
        ("2026-11-24T10:00", "2026-11-24T10:00:00.000000Z"),
        ("2026-11-24 10:00:00", "2026-11-24T10:00:00.000000Z"),
        ("2026-11-24T12:00:00+02:00", "2026-11-24T10:00:00.000000Z"),
        ("2026-11-24T12:00:00+0200", "2026-11-24T10:00:00.000000Z"),
        # beyond microseconds: rounded half up, by both decoders alike
        ("2026-11-24T10:00:00.123456789Z", "2026-11-24T10:00:00.123457Z"),
        ("2026-11-24T10:00:00.1234565", "2026-11-24T10:00:00.123457Z"),
        ("2026-11-24T10:00:00.9999999", "2026-11-24T10:00:01.000000Z"),
        ("0999-01-01T00:00:00Z", "0999-01-01T00:00:00.000000Z"),
        ("2026-13-24T10:00:00Z", None),
        ("2026-02-30T10:00:00", None),
        ("tomorrow", None),
    ],
)
def test_canonical_timestamp(value: str, expected: str | None) -> None:
    assert parse.canonical_timestamp(value) == expected


# --- the learning decoder ----------------------------------------------------------------
def test_the_learning_decoder_refuses_new_values_then_reads_them() -> None:
    typed = parse.LearningDecoder()
    text = line(sites=[site(SESSION, call_site="a.py:1 in f")]).encode()
    with pytest.raises(msgspec.ValidationError):
        typed.decode(text)  # the route is new
    plain = parse.decode_record(text)
    assert typed.learn(plain)
    typed.rebuild()
    learned = typed.decode(text)
    assert isinstance(learned, Record) and values(learned) == values(plain)
    again = typed.decode(text)
    assert again.route is learned.route and again.sites[0].site is learned.sites[0].site
    assert not typed.learn(learned)  # nothing new


def test_a_field_with_too_many_values_is_read_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse, "VOCABULARY_LIMIT", 3)
    texts = [line(route=f"/probe/{i}", view=None, request_id=str(i)) for i in range(40)]
    scanner = Scanner(Partial())
    scanner.feed_lines([t.encode() for t in texts])
    assert scanner.partial.records == 40
    assert scanner.slow_lines == 0  # misses are read by the plain typed decoder
    typed = scanner._typed
    assert typed.decode(line(route="/probe/999", view=None).encode()).route == "/probe/999"


# --- the scanner reads what the decoders read ----------------------------------------------
def _scan(lines: list[bytes], *, general: bool = False) -> Partial:
    scanner = Scanner(Partial())
    if general:  # every line through the general decoder, record by record
        for raw in lines:
            scanner.partial.lines += 1
            result = decode_general(raw)
            if result is None:
                scanner.partial.other_lines += 1
            elif isinstance(result, str):
                scanner.partial.skip(result)
            else:
                for part in result[1]:
                    scanner.partial.lose_part(part)
                scanner.add_record(result[0])
    else:
        scanner.feed_lines(lines)
    return scanner.finish()


def _document(partial: Partial) -> dict[str, Any]:
    return rank.build_document(partial, rank.ReportOptions(top=0), ["x"])


def test_typed_and_general_decoders_agree_on_canonical_lines() -> None:
    lines = [text.encode() for text in canonical_lines(60)]
    assert _document(_scan(lines)) == _document(_scan(lines, general=True))


_names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_ms = st.one_of(st.integers(0, 10**6), st.floats(0, 1e6).map(lambda v: round(v, 3)))
_count = st.integers(0, 10**6)


@st.composite
def _records(draw: st.DrawFn) -> str:
    sites = draw(
        st.lists(
            st.builds(site, _names, _names, _count, _ms, _names, st.one_of(st.none(), _names)),
            max_size=12,
        )
    )
    fields = {
        "timestamp": draw(
            st.sampled_from(
                [
                    "2026-11-24T10:00:00.000001Z",
                    "2026-11-24T10:00:00Z",
                    "2026-11-24T09:00:00.250000-01:00",
                    "2026-11-24T10:00:00.1234567",
                ]
            )
        ),
        "request_id": draw(_names),
        "method": draw(st.sampled_from(["GET", "POST", "", "M-SEARCH"])),
        "route": draw(_names),
        "view": draw(st.one_of(st.none(), _names)),
        "status": draw(st.one_of(st.none(), st.integers(100, 999))),
        "interface": draw(st.sampled_from(["asgi", "wsgi", "test-client"])),
        "duration_ms": draw(_ms),
        "hops": draw(_count),
        "hop_ms": draw(_ms),
        "wait_ms": draw(_ms),
        "sync_to_async": draw(_count),
        "async_to_sync": draw(_count),
        "threads": draw(_count),
        "new_loops": draw(_count),
        "max_depth": draw(_count),
        "sites": sites,
        "pinned": draw(st.booleans()),
        "pinned_ms": draw(_ms),
        "pinned_by": draw(st.one_of(st.none(), _names)),
    }
    tail = draw(
        st.sampled_from(
            [
                None,
                {},
                {"level": "info", "logger": "x", "sites_dropped": 2},
                {"sample_rate": 0.5},
                {"pinned_ms": 1.5, "profile": "p.html"},
                {"hopwatch_errors": 1},
                {"pinned_ms": 2.0, "pinned_by": "late"},
                {"extra": {"a": 1}},
                {"hop_tax_us": 212.5, "level": "info"},
                {"sample_rate": 0.5, "hop_tax_us": 99.9},
                {"hop_tax_us": 0.0, "hopwatch_errors": 2},
                {"pinned_ms": "bad", "profile": 3},
            ]
        )
    )
    text = line(tail, **fields)
    rendering = draw(st.integers(0, 3))
    if rendering == 1:
        return json.dumps(json.loads(text))  # spaces, escaped non-ASCII
    if rendering == 2:
        return json.dumps(json.loads(text), sort_keys=True)
    if rendering == 3:
        return json.dumps({"log": text + "\n"})
    return text


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_records(), min_size=1, max_size=8))
def test_typed_and_general_decoders_agree_on_any_record(texts: list[str]) -> None:
    lines = [text.encode() for text in texts]
    typed, general = _scan(lines), _scan(lines, general=True)
    assert (typed.lines, typed.records, typed.other_lines, typed.skipped, typed.parts_lost) == (
        general.lines,
        general.records,
        general.other_lines,
        general.skipped,
        general.parts_lost,
    )
    assert _document(typed) == _document(general)


def test_lines_in_any_order_and_mix_read_the_same() -> None:
    lines = [text.encode() for text in canonical_lines(40)]
    lines += [text.encode() for rec in map(json.loads, canonical_lines(10, seed=3))
              for text in _renderings(rec)]  # fmt: skip
    shuffled = list(lines)
    random.Random(5).shuffle(shuffled)
    assert _document(_scan(lines)) == _document(_scan(shuffled))


def test_sites_are_decoded_with_their_call_site() -> None:
    text = line(
        sites=[
            site("QuerySet.aget", "orm", 2, 0.5, call_site="a.py:1 in f"),
            site(SESSION, ms=0.25),
        ]
    )
    document = _document(_scan([text.encode()]))
    causes = document["rows"][0]["causes"]
    assert causes[0]["site"] == "QuerySet.aget" and causes[0]["call_site"] == "a.py:1 in f"
    assert causes[0]["count"] == 2 and causes[0]["ms"] == 0.5
    assert causes[1]["call_site"] is None
