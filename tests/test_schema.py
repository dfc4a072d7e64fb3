"""One schema: hopwatch.schema, docs/log-schema.md, the emitter and the report agree on it."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
from django.test import override_settings

from hopwatch import _recorder, schema
from hopwatch._emit import RESERVED
from hopwatch.report import parse
from tests.helpers import asgi_request

ROOT = Path(__file__).resolve().parent.parent
_ROW = re.compile(r"^\| (?P<names>`[^|]+`) \| (?P<type>[^|]+) \| .* \|$")


def _table(section: str) -> list[tuple[str, str]]:
    """(name, type) rows of the first table under ``## section`` in docs/log-schema.md."""
    text = (ROOT / "docs" / "log-schema.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1]
    rows = []
    started = False
    for line in body.splitlines():
        found = _ROW.match(line)
        if found is None:
            if started and not line.startswith("|"):
                break
            continue
        started = True
        for name in found["names"].split(", "):
            rows.append((name.strip("`"), found["type"].strip()))
    return rows


def test_the_docs_fields_table_is_the_schema():
    expected = []
    for field in schema.LINE:
        if field.name in ("level", "logger"):
            continue  # one row for both, below
        expected.append((field.name, field.type))
        if field.name == "sites":
            expected += [(f"sites[].{site.name}", site.type) for site in schema.SITE]
    expected += [("level", "string"), ("logger", "string")]
    assert _table("Fields") == expected


def test_the_docs_optional_fields_table_is_the_schema():
    assert _table("Optional fields") == [(f.name, f.type) for f in schema.OPTIONAL]


def test_the_docs_detail_entry_is_the_schema():
    text = (ROOT / "docs" / "log-schema.md").read_text()
    documented = re.findall(r"^\| `detail\[\]\.(\w+)` \|", text, re.M)
    assert sorted(documented) == sorted(schema.DETAIL)


def test_the_emitter_writes_the_schema_in_its_order(log_lines):
    hopwatch = {"OUTPUT": "logging", "DETAIL": True, "SITES_LIMIT": 1, "SAMPLE_RATE": 0.999999}
    with override_settings(HOPWATCH=hopwatch):
        while not log_lines.parsed():  # sampled at 0.999999: written almost always
            asgi_request("/async/")
    (line,) = log_lines.parsed()[:1]
    keys = list(line)
    assert set(keys) <= schema.NAMES
    order = [field.name for field in schema.LINE]
    in_line = [key for key in keys if key in order]
    assert in_line == sorted(in_line, key=order.index)
    assert set(order) - set(keys) == set()  # sites_dropped: the limit of 1 left one out
    assert {"detail", "detail_dropped", "sample_rate"} <= set(keys)
    site_order = [field.name for field in schema.SITE]
    for site in line["sites"]:
        assert list(site) == [name for name in site_order if name in site]
    assert [list(entry) for entry in line["detail"]] == [list(schema.DETAIL)] * len(line["detail"])
    assert RESERVED == schema.NAMES


def _top_level_keys(example: str) -> list[str]:
    """The keys of an example line's outer object, in order, with "..." where the example
    leaves some out at that level (an elision inside a value, ``[...]``, is the value's)."""
    tokens, depth, i = [], 0, 0
    while i < len(example):
        if example[i] == '"':
            end = i + 1
            while example[end] != '"':
                end += 2 if example[end] == "\\" else 1
            if depth == 1 and example[end + 1] == ":":
                tokens.append(example[i + 1 : end])
            i = end + 1
            continue
        if example.startswith("...", i):
            if depth == 1:
                tokens.append("...")
            i += 3
            continue
        depth += {"{": 1, "[": 1, "}": -1, "]": -1}.get(example[i], 0)
        i += 1
    return tokens


@override_settings(HOPWATCH={"OUTPUT": "logging"})
def test_the_docs_example_lines_have_every_field_a_real_line_has(log_lines):
    """README.md, docs/log-schema.md and docs/getting-started.md show the line of an async
    view behind startproject's middleware under ASGI; they left out executors,
    max_in_flight, concurrent_ms and db_connections, which every such line has. Each
    example has the real line's keys in its order, but where it writes "..." for some."""
    asgi_request("/async/")
    (line,) = log_lines.parsed()
    real = ",".join(line) + ","
    assert {"executors", "max_in_flight", "concurrent_ms", "db_connections"} < set(line)
    for doc in ("README.md", "docs/log-schema.md", "docs/getting-started.md"):
        text = (ROOT / doc).read_text()
        example = re.search(r'```json\n(\{"event":"hopwatch\.request".*?)\n```', text, re.S)
        assert example is not None, doc
        keys = _top_level_keys(example[1])
        pattern = "".join("(?:[^,]+,)+" if key == "..." else re.escape(key) + "," for key in keys)
        assert re.fullmatch(pattern, real), (doc, keys, list(line))


def test_the_report_reads_only_documented_fields():
    record_fields = {info.name for info in msgspec.structs.fields(parse.Record)}
    site_fields = {info.name for info in msgspec.structs.fields(parse.Site)}
    assert record_fields <= schema.NAMES
    assert site_fields <= schema.SITE_NAMES
    assert parse.EVENT == schema.EVENT


def test_the_recorder_names_what_the_schema_names():
    assert _recorder.KINDS == schema.KINDS
    assert (_recorder.SYNC_TO_ASYNC, _recorder.ASYNC_TO_SYNC) == schema.DIRECTIONS
    assert (_recorder.OK, _recorder.ERROR, _recorder.CANCELLED) == schema.OUTCOMES


def test_import_hopwatch_gives_what_the_docs_describe_and_nothing_else():
    import hopwatch

    text = (ROOT / "docs" / "how-it-works.md").read_text()
    section = text.split("## The Python API\n", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for line in section.splitlines():
        if line.startswith("| `"):  # a row: the names are in its first cell
            first = line.split(" | ", 1)[0]
            documented.update(re.findall(r"`(\w+)(?:\(\))?`", first))
    assert set(hopwatch.__all__) - {"__version__"} == documented
    for name in hopwatch.__all__:
        assert getattr(hopwatch, name) is not None  # each one loads
