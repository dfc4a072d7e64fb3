"""Hostile input: whatever the lines hold, no exception, and every line accounted for."""

from __future__ import annotations

import io
import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hopwatch.report import rank, render
from hopwatch.report.aggregate import Partial
from hopwatch.report.scan import Scanner
from tests.report.samples import canonical_lines, line, site

CANONICAL = canonical_lines(5)
NUMBERS = [
    "-1",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "1e-999",
    "9" * 5000,
    "0.0000001",
    "true",
    "null",
    '"7"',
    "[]",
    "{}",
    "1.5",
    "-0",
    "007",
    "1e9",
    "999999999",
]
FIELDS = [
    "duration_ms",
    "hops",
    "hop_ms",
    "wait_ms",
    "sync_to_async",
    "async_to_sync",
    "threads",
    "new_loops",
    "max_depth",
    "status",
    "schema",
    "count",
    "ms",
]
NASTY = [
    "[bold red]",
    "\x1b[31m",
    "\x00",
    "\u202e",
    "|",
    "`",
    "\\",
    '\\"',
    "\\u0000",
    "\ud800",
    "{",
    "}",
    "[",
    "]",
    '"',
    ",",
    ":",
    "\t",
    "\r",
]


def _mutations(rng: random.Random) -> str | bytes:
    base = rng.choice(CANONICAL)
    kind = rng.randrange(9)
    if kind == 0:  # cut anywhere
        return base[: rng.randrange(len(base))]
    if kind == 1:  # a number replaced by something hostile
        field = rng.choice(FIELDS)
        return base.replace(f'"{field}":', f'"{field}":{rng.choice(NUMBERS)},"x{field}":', 1)
    if kind == 2:  # a nasty character inserted anywhere
        at = rng.randrange(len(base))
        return base[:at] + rng.choice(NASTY) + base[at:]
    if kind == 3:  # deep nesting
        depth = rng.choice([10, 1000, 50_000])
        return base[:-1] + ',"deep":' + "[" * depth + "]" * rng.choice([0, depth]) + "}"
    if kind == 4:  # invalid UTF-8 / binary
        raw = base.encode()
        at = rng.randrange(len(raw))
        return raw[:at] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8))) + raw[at:]
    if kind == 5:  # a very long string
        return line(route="/" + "r" * rng.choice([10_000, 300_000]))
    if kind == 6:  # many sites, raw control characters inside strings
        return line(sites=[site(f"s{i}\x1b[0m") for i in range(rng.choice([3, 11, 400]))])
    if kind == 7:  # a prefix
        return rng.choice(["", "x ", "{", "}", "\x1b[2J ", "2026 stdout F "]) + base
    return base


def _check(lines: list[bytes]) -> None:
    lines = [line.replace(b"\n", b" ") for line in lines]  # one line each
    scanner = Scanner(Partial())
    scanner.feed_lines(lines)
    partial = scanner.finish()
    skipped = sum(partial.skipped.values())
    assert partial.lines == len(lines) == partial.records + partial.other_lines + skipped
    for by in ("route", "view", "site"):
        document = rank.build_document(partial, rank.ReportOptions(by=by, top=0), ["x"])
        for format_name in ("text", "markdown", "csv", "json"):
            render.render_to_string(document, format_name)
        render.render_rich(document, io.StringIO(), width=200)
        json.dumps(document, allow_nan=False)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.integers(1, 12))
def test_mutated_lines_never_crash_and_are_all_counted(rng: random.Random, count: int) -> None:
    lines = []
    for _ in range(count):
        mutated = _mutations(rng)
        lines.append(
            mutated if isinstance(mutated, bytes) else mutated.encode("utf-8", "surrogatepass")
        )
    _check(lines)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=10))
def test_random_bytes_never_crash(chunks: list[bytes]) -> None:
    _check([chunk.replace(b"\n", b"") for chunk in chunks])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=100), max_size=6))
def test_text_after_the_hopwatch_marker_never_crashes(texts: list[str]) -> None:
    lines = [
        ('{"event":"hopwatch.request",' + text).encode("utf-8", "surrogatepass") for text in texts
    ]
    _check(lines)
