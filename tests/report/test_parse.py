"""Finding and decoding hopwatch lines: the fast path, the general decoder, skip reasons."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hopwatch.report import parse, rank
from hopwatch.report.aggregate import Partial
from hopwatch.report.parse import Record, decode_line
from hopwatch.report.scan import Scanner
from tests.report.samples import SESSION, canonical_lines, line, record, site


def decode(text: str | bytes) -> Record | str | None:
    return decode_line(text.encode() if isinstance(text, str) else text)


def test_the_documented_example_decodes() -> None:
    example = (
        '{"event":"hopwatch.request","schema":1,"timestamp":"2026-11-24T23:59:01.123456Z",'
        '"request_id":"6f1c0e0a9b2d4e55","method":"GET","route":"/items/<int:pk>/",'
        '"view":"shop.views.item_detail","status":200,"interface":"asgi","duration_ms":6.412,'
        '"hops":15,"hop_ms":4.187,"wait_ms":1.032,"sync_to_async":15,"async_to_sync":0,'
        '"threads":2,"new_loops":0,"max_depth":1,"sites":[{"site":"django.contrib.sessions.'
        'middleware.SessionMiddleware.process_request","kind":"middleware","direction":'
        '"sync_to_async","count":1,"ms":0.41}],"level":"info","logger":"hopwatch"}'
    )
    assert parse.FAST_LINE.match(example.encode())
    result = decode(example)
    assert isinstance(result, Record)
    assert (result.method, result.route, result.hops, result.hop_ms) == (
        "GET",
        "/items/<int:pk>/",
        15,
        4.187,
    )
    assert result.sites[0].site.endswith("SessionMiddleware.process_request")
    assert result.sites[0].count == 1 and result.sites[0].ms == 0.41


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(record()),  # spaces after separators
        json.dumps(dict(reversed(list(record().items()))), separators=(",", ":")),  # key order
        line(route="/caf\\u00e9/"),  # an escape in a string
        line(route="/café/"),  # raw UTF-8
        line(schema=2, future={"nested": [1, 2]}),  # a later schema, an unknown nested field
        line(sites=[site(f"s{i}") for i in range(12)]),  # more sites than the fast path's slots
        line(sites=[{**site("QuerySet.aget", "orm"), "call_site": None}]),
        line(timestamp="2026-11-24T10:00:00Z"),  # no fraction
        line(timestamp="2026-11-24T11:00:00.5+01:00"),  # an offset
        line(hop_ms=1.5e1),  # an exponent (json.dumps writes 15.0 here; see below)
        line(hop_ms=4.1234567),  # more decimals than the fast path reads
    ],
)
def test_non_canonical_lines_decode_through_the_general_path(text: str) -> None:
    assert isinstance(decode(text), Record)


def test_exponents_and_offsets_are_normalised() -> None:
    result = decode(line().replace('"hop_ms":4.187', '"hop_ms":4187e-3'))
    assert isinstance(result, Record) and result.hop_ms == pytest.approx(4.187)
    result = decode(line(timestamp="2026-11-24T11:00:00.5+01:00"))
    assert isinstance(result, Record) and result.timestamp == "2026-11-24T10:00:00.500000Z"


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
        (line(sites={"a": 1}), "invalid:sites"),
        (line(sites=[site("x", ms=-0.5)]), "invalid:sites"),
        (line(sample_rate=0), "invalid:sample_rate"),
        (line(sample_rate=2), "invalid:sample_rate"),
        (line(sample_rate=1e-9), "invalid:sample_rate"),
        (line(pinned_ms=-3), "invalid:pinned_ms"),
        (line(profile=12), "invalid:profile"),
        (json.dumps({k: v for k, v in record().items() if k != "hop_ms"}), "missing:hop_ms"),
        (line()[:-40], "truncated"),
        (line().replace('"hops":15', '"hops":15,,'), "malformed_json"),
        (line() + " trailing", "malformed_json"),
        # deeper than MAX_DEPTH: malformed whatever the interpreter's own limit
        (line()[:-1] + ',"deep":' + "[" * 600 + "]" * 600 + "}", "malformed_json"),
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


def test_invalid_utf8_is_a_skip_reason_not_an_error() -> None:
    raw = line(route="/x/").encode().replace(b"/x/", b"/\xff\xfe/")
    assert decode(raw) == "invalid_utf8"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain text mentioning hopwatch.request",
        '{"event":"django.request","message":"hopwatch.request was slow"}',
        "{not json but mentions hopwatch.request",
        '["hopwatch.request"]',
        '{"log":"no object in here: hopwatch.request"}',
    ],
)
def test_lines_that_are_not_hopwatch_records_are_other(text: str) -> None:
    assert decode(text) is None


def test_a_prefix_before_the_object_is_ignored() -> None:
    text = "2026-11-24T10:05:00.000000001Z stdout F " + line()
    assert isinstance(decode(text), Record)
    partial = _scan([text.encode()])
    assert partial.records == 1


def test_the_object_is_found_at_the_first_brace_as_documented() -> None:
    text = "[pod {web}] " + line()
    assert decode(text) is None or decode(text) == "malformed_json"
    assert _scan([text.encode()]).records == 0


def test_a_log_shippers_envelope_is_unwrapped() -> None:
    wrapped = json.dumps({"log": line(request_id="inner") + "\n", "stream": "stdout"})
    result = decode(wrapped)
    assert isinstance(result, Record) and result.request_id == "inner"
    assert decode(json.dumps({"message": "x " + line()[:-5]})) == "truncated"


def test_a_duplicate_documented_key_after_sites_means_the_last_one_wins() -> None:
    text = line()[:-1] + ',"hops":3}'
    result = decode(text)
    assert isinstance(result, Record) and result.hops == 3
    partial = _scan([text.encode()])
    assert partial.endpoints and next(iter(partial.endpoints.values())).acc[5] == 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-24T10:00:00.123456Z", "2026-11-24T10:00:00.123456Z"),
        ("2026-11-24T10:00", "2026-11-24T10:00:00.000000Z"),
        ("2026-11-24 10:00:00", "2026-11-24T10:00:00.000000Z"),
        ("2026-11-24T12:00:00+02:00", "2026-11-24T10:00:00.000000Z"),
        ("2026-11-24T10:00:00.123456789Z", "2026-11-24T10:00:00.123456Z"),
        ("2026-13-24T10:00:00Z", None),
        ("tomorrow", None),
    ],
)
def test_canonical_timestamp(value: str, expected: str | None) -> None:
    assert parse.canonical_timestamp(value) == expected


# --- the fast path reads exactly what the general decoder reads ---------------------------
def _scan(lines: list[bytes], *, slow: bool = False) -> Partial:
    scanner = Scanner(Partial())
    if slow:
        for raw in lines:
            scanner.partial.lines += 1
            if not scanner.add_slow_line(raw):
                scanner.partial.other_lines += 1
    else:
        scanner.feed_lines(lines)
    return scanner.finish()


def _document(partial: Partial) -> dict[str, Any]:
    return rank.build_document(partial, rank.ReportOptions(top=0), ["x"])


def test_canonical_lines_take_the_fast_path() -> None:
    lines = [text.encode() for text in canonical_lines(50)]
    lines += [line(pinned=False).encode(), line(pinned_ms=2.5, pinned_by="m.Legacy").encode()]
    # the optional fields the emitter appends after "sites"
    tail = {"sites_dropped": 2, "profile": "p.html", "scope": "middleware",
            "response_closed": False, "sample_rate": 0.5, "hop_tax_us": 41.3,
            "hopwatch_errors": 1, "level": "info", "logger": "hopwatch"}  # fmt: skip
    lines += [line(tail).encode()]
    scanner = Scanner(Partial())
    scanner.feed_lines(lines)
    assert scanner.slow_lines == 0 and scanner.partial.records == 53


def test_fast_and_general_paths_agree_on_canonical_lines() -> None:
    lines = [text.encode() for text in canonical_lines(60)]
    assert _document(_scan(lines)) == _document(_scan(lines, slow=True))


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
            ]
        )
    )
    return line(tail, **fields)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_records(), min_size=1, max_size=8))
def test_fast_and_general_paths_agree_on_any_record(texts: list[str]) -> None:
    lines = [text.encode() for text in texts]
    fast, slow = _scan(lines), _scan(lines, slow=True)
    assert (fast.lines, fast.records, fast.other_lines, fast.skipped) == (
        slow.lines,
        slow.records,
        slow.other_lines,
        slow.skipped,
    )
    assert _document(fast) == _document(slow)


def test_the_fast_path_matches_a_line_with_many_fields_quickly() -> None:
    # possessive quantifiers: a near-miss must not backtrack for long
    text = line(sites=[site("s" * 1000, ms=1.0)] * 10).encode()
    hostile = text[:-1] + b"," + b'"k":1,' * 20_000 + b"x}"
    assert parse.FAST_LINE.match(text)
    assert parse.FAST_LINE.match(hostile) is None


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
