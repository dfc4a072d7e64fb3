"""Request lines as four platforms export them, read by ``hopwatch report`` (and the
audit) as the plain lines are (docs/report.md, first section):

* Google Cloud Logging (a log sink's file, one LogEntry per line): the line the app wrote
  to stdout parsed into ``jsonPayload``, an object (structlog's object when structlog
  rendered the line, hopwatch's line its ``event`` or ``message``);
* a Datadog log archive (one JSON per line): the line under ``message``, or parsed into
  ``attributes`` (an object, as above);
* Loki's ``logcli query -o jsonl``: the line, a string, under ``line`` (Go's encoding:
  ``<`` and ``>`` escaped as ``\\u003c`` and ``\\u003e``);
* Fluent Bit's ``out_file`` output in its default format, ``<tag>: [<time>, {record}]``:
  the record a docker envelope (the line under ``log``) or the line's own fields (its
  ``json`` parser).

None of these platforms runs here: the lines are wrapped as their documentation says
they write them. The lines themselves are real: requests through Django's
``ASGIHandler``, hopwatch's lines caught by real logging handlers (the plain line, and
structlog's ``ProcessorFormatter`` with a ``JSONRenderer``); the real command, by the C
loop and the Python one, in one process and in two, plain and gzip.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hopwatch.audit import traffic
from hopwatch.report import scan
from hopwatch.report.aggregate import Partial
from hopwatch.report.picture import decode_extras
from tests.report.conftest import Run
from tests.report.test_wrapped_lines import (
    LABELS,
    ROUTES,
    _document,
    _reference,
    _rows,
    _write,
    detailed,
    served,
)

__all__ = ["detailed", "served"]  # (the fixtures, shared with test_wrapped_lines)

RunCli = Callable[..., Run]
TIME = "2026-12-07T00:30:00.123456789Z"


# --- how each platform writes a line -------------------------------------------------------
def cloud_logging(line: str) -> str:
    """A LogEntry as a log sink writes it: the JSON line parsed into ``jsonPayload``."""
    entry = {
        "insertId": "1q2w3e4r5t6y7",
        "jsonPayload": json.loads(line),
        "resource": {
            "type": "k8s_container",
            "labels": {"cluster_name": "prod", "namespace_name": "shop", "pod_name": "web-7d9f"},
        },
        "timestamp": TIME,
        "severity": "INFO",
        "labels": {"k8s-pod/app": "web"},
        "logName": "projects/shop/logs/stdout",
        "receiveTimestamp": "2026-12-07T00:30:01.5Z",
    }
    return json.dumps(entry, separators=(",", ":"))


def _datadog(**fields: Any) -> str:
    """A log in a Datadog archive: its reserved attributes, then ``fields``."""
    entry = {
        "_id": "AQAAAZMBk2jYbQ",
        "date": "2026-12-07T00:30:00.123Z",
        "host": "web-7d9f",
        "source": "python",
        "service": "shop",
        "status": "info",
        **fields,
        "tags": ["env:prod"],
    }
    return json.dumps(entry)


def datadog_attributes(line: str) -> str:
    """A Datadog archive's log: the JSON line parsed into ``attributes``."""
    return _datadog(message="", attributes=json.loads(line))


def datadog_message(line: str) -> str:
    """A Datadog archive's log: the line kept as its ``message``."""
    return _datadog(message=line, attributes={"container_name": "web"})


def loki(line: str) -> str:
    """``logcli query -o jsonl``: Go's json.Marshal of {timestamp, line, labels}: keys
    sorted, no spaces, ``<``, ``>`` and ``&`` escaped."""
    entry = {"labels": {"app": "web", "namespace": "shop"}, "line": line, "timestamp": TIME}
    text = json.dumps(entry, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _out_file(record: dict[str, Any]) -> str:
    body = json.dumps(record, separators=(",", ":")).replace("/", "\\/")
    return f"kube.var.log.containers.web: [1765067400.123456789, {body}]"


def fluent_bit_docker(line: str) -> str:
    """Fluent Bit's ``out_file``: the record its docker parser made (the line under ``log``)."""
    return _out_file({"log": line + "\n", "stream": "stderr", "time": TIME})


def fluent_bit_json(line: str) -> str:
    """Fluent Bit's ``out_file``: the record its json parser made (the line's fields)."""
    return _out_file(json.loads(line))


PLATFORMS = {
    "cloud-logging": cloud_logging,
    "datadog-attributes": datadog_attributes,
    "datadog-message": datadog_message,
    "loki": loki,
    "fluent-bit-docker": fluent_bit_docker,
    "fluent-bit-json": fluent_bit_json,
}


def _gzip(path: Path) -> Path:
    packed = path.with_name(path.name + ".gz")
    packed.write_bytes(gzip.compress(path.read_bytes()))
    return packed


def _exports(tmp_path: Path, served: tuple[list[str], list[str]]) -> dict[str, Path]:
    plain, rendered = served
    files = {}
    for name, export in PLATFORMS.items():
        for kind, lines in (("plain", plain), ("structlog", rendered)):
            files[f"{name}-{kind}"] = _write(
                tmp_path / f"{name}-{kind}.log", [export(line) for line in lines]
            )
    return files


# --- the report ----------------------------------------------------------------------------
def test_each_platforms_export_reads_as_the_plain_lines(
    run_cli: RunCli, tmp_path: Path, implementation: str, served: tuple[list[str], list[str]]
) -> None:
    reference = _reference(run_cli, tmp_path / "plain.log", served[0])
    files = _exports(tmp_path, served)
    for name, path in files.items():
        for read in (path, _gzip(path)):
            document = _document(run_cli, read, "--jobs", "1")
            summary = document["summary"]
            assert (summary["lines"], summary["records"], summary["other_lines"]) == (
                len(ROUTES),
                len(ROUTES),
                0,
            ), name
            assert summary["skipped"] == 0, (name, summary["skipped_by_reason"])
            # the endpoints' figures are the plain lines' own, to the last digit
            assert document["rows"] == reference["rows"], name
            assert summary["first_timestamp"] == reference["summary"]["first_timestamp"], name
    # all of them, gzip'd, with the plain lines, by one reader and by two
    inputs = [_gzip(path) for path in files.values()] + [tmp_path / "plain.log"]
    for jobs in ("1", "2"):
        document = _document(run_cli, *inputs, "--jobs", jobs)
        summary = document["summary"]
        assert summary["records"] == len(ROUTES) * len(inputs), jobs
        assert (summary["other_lines"], summary["skipped"]) == (0, 0), jobs
        assert {label: row["records"] for label, row in _rows(document).items()} == {
            label: count * len(inputs) for label, count in LABELS.items()
        }


def _deep(line: str, depth: int = 600) -> str:
    """The line with one more field, a list nested ``depth`` deep: past the general
    decoder's 512 levels, which the typed one reads."""
    return line[:-1] + ',"deep":' + "[" * depth + "]" * depth + "}"


def test_records_nested_past_the_general_decoders_depth_read_in_each_platforms_export(
    run_cli: RunCli, tmp_path: Path, implementation: str, served: tuple[list[str], list[str]]
) -> None:
    """A record with a field nested 600 deep, as an export's object (Cloud Logging's
    ``jsonPayload``, Datadog's ``attributes``, Fluent Bit's ``out_file`` record) or as
    its line, with ``\\n`` or ``\\r\\n`` endings, is read as the plain line is: the
    general decoder refuses it, the report peels the export and reads it with the typed
    one."""
    reference = _reference(run_cli, tmp_path / "plain.log", served[0])
    lines = [_deep(line) for line in served[0]]
    for name, export in {"plain": str, **PLATFORMS}.items():
        exported = [export(line) for line in lines]
        assert all("[" * 600 + "]" * 600 in text for text in exported), name
        for ending in ("\n", "\r\n"):
            path = tmp_path / f"{name}.log"
            path.write_bytes("".join(text + ending for text in exported).encode())
            result = run_cli(path, "--format", "json", "--top", "0", "--jobs", "1")
            assert (result.status, result.err) == (0, ""), (name, ending)
            document = json.loads(result.out)
            summary = document["summary"]
            assert (summary["lines"], summary["records"], summary["other_lines"]) == (
                len(ROUTES),
                len(ROUTES),
                0,
            ), (name, ending)
            assert summary["skipped"] == 0, (name, ending, summary["skipped_by_reason"])
            assert document["rows"] == reference["rows"], (name, ending)
            assert summary["first_timestamp"] == reference["summary"]["first_timestamp"]


def test_the_audit_reads_each_platforms_export(
    tmp_path: Path, implementation: str, served: tuple[list[str], list[str]]
) -> None:
    """``hopwatch audit --logs`` reads the logs with the report's reader."""
    plain, _ = served
    expected = traffic.from_logs([str(_write(tmp_path / "plain.log", plain))])
    assert expected.requests == len(ROUTES) and expected.price_us is not None
    for name, path in _exports(tmp_path, served).items():
        found = traffic.from_logs([str(path)])
        assert dataclasses.replace(found, files=expected.files) == expected, name


def _broken(plain: list[str]) -> list[str]:
    """The lines, two of them broken as a record can be: a count out of range, and a
    required field missing."""
    first, second = json.loads(plain[0]), json.loads(plain[1])
    first["hops"] = -1
    del second["route"]
    return [json.dumps(first, separators=(",", ":")), json.dumps(second), *plain[2:]]


def test_broken_records_in_each_platforms_export_are_skipped_as_plain_ones_are(
    run_cli: RunCli, tmp_path: Path, implementation: str, served: tuple[list[str], list[str]]
) -> None:
    plain, _ = served
    lines = _broken(plain)
    reference = _document(run_cli, _write(tmp_path / "plain.log", lines))
    reasons = {"invalid:hops": 1, "missing:route": 1}
    assert reference["summary"]["skipped_by_reason"] == reasons
    for name, export in PLATFORMS.items():
        path = _write(tmp_path / f"{name}.log", [export(line) for line in lines])
        document = _document(run_cli, path)
        summary = document["summary"]
        assert (summary["records"], summary["skipped"]) == (len(ROUTES) - 2, 2), name
        assert summary["skipped_by_reason"] == reasons, name
        assert document["rows"] == reference["rows"], name


def test_a_nan_in_each_platforms_export_is_skipped_as_an_invalid_value(
    run_cli: RunCli, tmp_path: Path, implementation: str, served: tuple[list[str], list[str]]
) -> None:
    """``"hop_ms":NaN`` (Python's json writes it; it is no JSON) in an export's object:
    Cloud Logging's ``jsonPayload``, Datadog's ``attributes``, Fluent Bit's ``out_file``
    record. The report skips the record as ``invalid hop_ms``, as it does the plain line,
    reads the good lines beside it and exits 0, no traceback."""
    plain, _ = served
    nan = []
    for line in plain:
        fields = json.loads(line)
        fields["hop_ms"] = float("nan")
        nan.append(json.dumps(fields, separators=(",", ":")))
    assert all('"hop_ms":NaN' in line for line in nan)
    exports = (cloud_logging, datadog_attributes, fluent_bit_json)
    lines = [export(line) for export in exports for line in nan] + plain
    assert sum("NaN" in line for line in lines) == 3 * len(ROUTES)
    path = _write(tmp_path / "nan.log", lines)
    bad, good = 3 * len(ROUTES), len(ROUTES)
    result = run_cli(path, "--jobs", "1")
    assert (result.status, result.err) == (0, "")
    assert (
        f"{bad + good} lines, {good} hopwatch records, 0 other lines, "
        f"{bad} skipped ({bad} invalid hop_ms);"
    ) in result.out
    document = _document(run_cli, path)
    assert document["summary"]["skipped_by_reason"] == {"invalid:hop_ms": bad}
    assert document["rows"] == _reference(run_cli, tmp_path / "plain.log", plain)["rows"]


def test_the_page_draws_the_detail_of_each_platforms_export(
    run_cli: RunCli, tmp_path: Path, implementation: str, detailed: tuple[str, str]
) -> None:
    """The HTML page reads a record's ``detail`` (its extras) through the same layers."""
    line, outer = detailed
    expected = decode_extras(line.encode())
    record = json.loads(line)
    assert expected.detail is not None and len(expected.detail) == len(record["detail"])
    drawn = f"request {record['request_id']}: {len(record['detail'])} crossings"
    for name, export in PLATFORMS.items():
        for kind, text in (("plain", line), ("structlog", outer)):
            exported = export(text)
            found = decode_extras(exported[exported.index("{") :].encode())
            assert found == expected, (name, kind)
            path = _write(tmp_path / f"{name}-{kind}.log", [exported])
            page = run_cli(path, "--format", "html", "--jobs", "1")
            assert page.status == 0, page.err
            assert drawn in page.out, (name, kind)


def test_the_c_loop_reads_lokis_lines_with_its_own_parser(
    implementation: str, log_lines: Any
) -> None:
    """``line`` is one of the C loop's envelope keys: it reads the lines in Loki's export
    with its own parser, as it reads the plain ones (those its parser takes: without
    optional values, so without ``sites_dropped``, which the test app's requests have)."""
    from tests.helpers import asgi_request

    for route in ROUTES:
        asgi_request(route)
    lines = []
    for line in log_lines.raw:
        fields = json.loads(line)
        fields.pop("sites_dropped", None)
        lines.append(json.dumps(fields, separators=(",", ":")))
    found = {}
    for name, export in (("plain", str), ("loki", loki)):
        scanner = scan.Scanner(Partial())
        scanner.feed_lines([export(line).encode() for line in lines])
        assert scanner.partial.records == len(ROUTES), name
        found[name] = (scanner.parsed_lines, scanner.enveloped)
    parsed = len(ROUTES) if implementation == "c" else 0
    assert found == {"plain": (parsed, 0), "loki": (parsed, len(ROUTES))}
