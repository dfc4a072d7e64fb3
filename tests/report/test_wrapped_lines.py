"""Request lines as shippers and the project's structlog set-up hand them over, read by
``hopwatch report`` as docs/report.md says:

* a line structlog rendered again (django-structlog: ``{"event": "<line>", ...}``) and a
  shipper then wrapped (docker's json-file driver, Fluent Bit, Vector, journald's JSON
  export: ``{"log"|"message"|"MESSAGE": "<rendered line>", ...}``) is a record;
* such a line cut short (a shipper's or a pipeline's size limit) is skipped as
  ``truncated``, as the plain line cut short is, never an other line;
* the first parts of a line a container runtime split, whose last part was lost (the
  container killed in the middle of the write, the restarted one writing on), are counted
  as they come, the first as truncated, and the whole records after them are read.

Real requests through Django's ``ASGIHandler``, hopwatch's lines caught by real logging
handlers (the plain line, and structlog's ``ProcessorFormatter`` with a ``JSONRenderer``),
written as those runtimes and shippers write them; the real command, by the C loop and
the Python one, in one process (``--jobs 1``) and in two.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from hopwatch.audit import traffic
from hopwatch.report.parse import PART_BYTES
from hopwatch.report.picture import decode_extras
from tests.helpers import asgi_request
from tests.report.conftest import Run
from tests.test_report_structlog_lines import structlog_json_handler

RunCli = Callable[..., Run]
TIME = "2026-12-07T00:30:00.000000001Z"  # the runtime's or the shipper's own time
ROUTES = ["/async/", "/async/", "/sync/", "/hops/3/"]
LABELS = {"GET /async/": 2, "GET /sync/": 1, "GET /hops/<int:n>/": 1}


# --- how the lines reach the file ------------------------------------------------------
def docker(line: str) -> str:
    """docker's json-file driver (and Fluent Bit's tail of it): compact, with the newline."""
    record = {"log": line + "\n", "stream": "stderr", "time": TIME}
    return json.dumps(record, separators=(",", ":"))


def fluent_bit(line: str) -> str:
    """Fluent Bit's kubernetes filter, forwarding the line under ``log``."""
    pod = {"pod_name": "web-7d9f", "namespace_name": "shop", "container_name": "web"}
    return json.dumps({"date": 1765067400.0, "log": line, "kubernetes": pod})


def vector(line: str) -> str:
    """Vector's kubernetes_logs source, its event as JSON: the line under ``message``."""
    pod = {"pod_name": "web-7d9f", "pod_namespace": "shop"}
    return json.dumps({"message": line, "source_type": "kubernetes_logs", "kubernetes": pod})


def journald(line: str) -> str:
    """``journalctl -o json``: the line under ``MESSAGE``, among journald's fields."""
    return json.dumps(
        {
            "__REALTIME_TIMESTAMP": "1765067400000001",
            "_PID": "1",
            "_SYSTEMD_UNIT": "web.service",
            "SYSLOG_IDENTIFIER": "web",
            "MESSAGE": line,
        },
        separators=(",", ":"),
    )


def cri(line: str) -> str:
    return f"{TIME} stderr F {line}"


SHIPPERS = {"docker": docker, "fluent-bit": fluent_bit, "vector": vector, "journald": journald}


@pytest.fixture(params=["event", "message"])
def served(request: Any, tmp_path: Path, log_lines: Any) -> tuple[list[str], list[str]]:
    """(hopwatch's lines, the same lines as structlog rendered them) of real requests:
    the line as the rendering's ``event``, or under ``message`` (structlog's
    ``EventRenamer("message")``, a common set-up)."""
    path = tmp_path / "structlog.log"
    handler = structlog_json_handler(path, request.param)
    logger = logging.getLogger("hopwatch")
    logger.addHandler(handler)
    try:
        for route in ROUTES:
            asgi_request(route)
    finally:
        logger.removeHandler(handler)
        handler.close()
    plain = log_lines.raw
    rendered = path.read_text(encoding="utf-8").splitlines()
    assert len(plain) == len(ROUTES)
    assert [json.loads(outer)[request.param] for outer in rendered] == plain  # the very lines
    return plain, rendered


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(text + "\n" for text in lines), encoding="utf-8")
    return path


def _document(run_cli: RunCli, *args: Any) -> dict[str, Any]:
    result = run_cli(*args, "--format", "json", "--top", "0")
    assert result.status == 0, result.err
    document: dict[str, Any] = json.loads(result.out)
    return document


def _rows(document: dict[str, Any]) -> dict[str, Any]:
    return {row["label"]: row for row in document["rows"]}


def _reference(run_cli: RunCli, path: Path, plain: list[str]) -> dict[str, Any]:
    """The report of the plain lines (written to ``path``): the rows the wrapped ones match."""
    reference = _document(run_cli, _write(path, plain))
    assert {label: row["records"] for label, row in _rows(reference).items()} == LABELS
    return reference


# --- a structlog-rendered line in a shipper's envelope -----------------------------------
def test_structlog_lines_in_a_shippers_envelope_are_read(
    run_cli: RunCli, tmp_path: Path, implementation: str, served: tuple[list[str], list[str]]
) -> None:
    plain, rendered = served
    reference = _reference(run_cli, tmp_path / "plain.log", plain)
    files = []
    for name, ship in SHIPPERS.items():
        path = _write(tmp_path / f"{name}-structlog.log", [ship(outer) for outer in rendered])
        files.append(path)
        document = _document(run_cli, path, "--jobs", "1")
        summary = document["summary"]
        assert (summary["lines"], summary["records"], summary["other_lines"]) == (4, 4, 0), name
        assert summary["skipped"] == 0, (name, summary["skipped_by_reason"])
        # the endpoints' figures are the plain lines' own, to the last digit
        assert document["rows"] == reference["rows"], name
        hops = {json.loads(line)["route"]: json.loads(line)["hops"] for line in plain}
        assert _rows(document)["GET /hops/<int:n>/"]["hops"]["max"] == hops["/hops/<int:n>/"]
    # all of them, with the plain, the rendered and the CRI-prefixed rendered lines, by
    # one reader and by two
    files += [
        _write(tmp_path / "structlog.log", rendered),
        _write(tmp_path / "cri-structlog.log", [cri(outer) for outer in rendered]),
        tmp_path / "plain.log",
    ]
    for jobs in ("1", "2"):
        document = _document(run_cli, *files, "--jobs", jobs)
        assert document["summary"]["records"] == 4 * len(files), jobs
        assert document["summary"]["other_lines"] == 0 and document["summary"]["skipped"] == 0
        assert {label: row["records"] for label, row in _rows(document).items()} == {
            label: count * len(files) for label, count in LABELS.items()
        }


def test_the_audit_reads_structlog_lines_in_a_shippers_envelope(
    tmp_path: Path, implementation: str, served: tuple[list[str], list[str]]
) -> None:
    """``hopwatch audit --logs`` reads the logs with the report's reader: the traffic it
    ranks its changes for is the plain lines' own."""
    plain, rendered = served
    expected = traffic.from_logs([str(_write(tmp_path / "plain.log", plain))])
    assert expected.requests == len(ROUTES) and expected.price_us is not None
    for name, ship in SHIPPERS.items():
        path = _write(tmp_path / f"{name}-structlog.log", [ship(outer) for outer in rendered])
        found = traffic.from_logs([str(path)])
        assert dataclasses.replace(found, files=expected.files) == expected, name


# --- a wrapped line cut short --------------------------------------------------------------
def _cut(text: str) -> str:
    """``text`` cut in its middle, as a shipper's or a pipeline's size limit cuts it (not
    right after a "}": that is ``malformed_json``, see docs/report.md)."""
    cut = len(text) // 2
    while text[:cut].rstrip().endswith("}"):
        cut -= 1
    return text[:cut]


def test_wrapped_lines_cut_short_are_skipped_as_truncated(
    run_cli: RunCli, tmp_path: Path, implementation: str, served: tuple[list[str], list[str]]
) -> None:
    plain, rendered = served
    forms: dict[str, list[str]] = {
        "plain": plain,
        "structlog": rendered,
        **{name: [ship(line) for line in plain] for name, ship in SHIPPERS.items()},
        **{f"{name}-structlog": [ship(o) for o in rendered] for name, ship in SHIPPERS.items()},
        # the rendered line cut before the shipper wrapped it (a logging pipeline's limit)
        "docker-cut-structlog": [docker(_cut(outer)) for outer in rendered],
    }
    files = []
    for name, lines in forms.items():
        cut = [line if name.endswith("cut-structlog") else _cut(line) for line in lines]
        whole = [docker(line) for line in plain[:2]]  # a whole record before and after
        path = _write(tmp_path / f"{name}.log", [whole[0], *cut, whole[1]])
        files.append(path)
        summary = _document(run_cli, path, "--jobs", "1")["summary"]
        assert summary["lines"] == 6, name
        assert summary["records"] == 2, name
        assert summary["other_lines"] == 0, name
        assert summary["skipped_by_reason"] == {"truncated": 4}, name
    for jobs in ("1", "2"):
        summary = _document(run_cli, *files, "--jobs", jobs)["summary"]
        assert (summary["records"], summary["other_lines"]) == (2 * len(files), 0), jobs
        assert summary["skipped_by_reason"] == {"truncated": 4 * len(files)}, jobs


@pytest.fixture
def detailed(tmp_path: Path, log_lines: Any) -> tuple[str, str]:
    """(hopwatch's line, structlog's rendering of it) of a real request with DETAIL on."""
    path = tmp_path / "structlog-detail.log"
    handler = structlog_json_handler(path)
    logger = logging.getLogger("hopwatch")
    logger.addHandler(handler)
    try:
        with override_settings(HOPWATCH={"OUTPUT": "logging", "DETAIL": True}):
            asgi_request("/hops/3/")
    finally:
        logger.removeHandler(handler)
        handler.close()
    (line,) = log_lines.raw
    (outer,) = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(outer)["event"] == line and len(json.loads(line)["detail"]) >= 3
    return line, outer


def test_the_page_draws_the_detail_of_structlog_lines_in_a_shippers_envelope(
    run_cli: RunCli, tmp_path: Path, implementation: str, detailed: tuple[str, str]
) -> None:
    line, outer = detailed
    expected = decode_extras(line.encode())
    assert expected.detail is not None and len(expected.detail) == len(json.loads(line)["detail"])
    record = json.loads(line)
    # the page's timeline of the request, named by it and its crossings (as test_html's)
    drawn = f"request {record['request_id']}: {len(record['detail'])} crossings"
    page = run_cli(_write(tmp_path / "app.log", [line]), "--format", "html", "--jobs", "1")
    assert page.status == 0 and drawn in page.out, page.err
    for name, ship in SHIPPERS.items():
        shipped = ship(outer)
        assert decode_extras(shipped[shipped.index("{") :].encode()) == expected, name
        path = _write(tmp_path / f"{name}.log", [shipped])
        result = run_cli(path, "--format", "html", "--jobs", "1")
        assert result.status == 0, result.err
        assert drawn in result.out, name


# --- a split line whose last part was lost -------------------------------------------------
@pytest.fixture
def long_line(served: tuple[list[str], list[str]], log_lines: Any) -> str:
    """A real hopwatch line over two of a runtime's parts long (DETAIL on, 80 hops),
    logged after ``served``'s."""
    with override_settings(HOPWATCH={"OUTPUT": "logging", "DETAIL": True, "DETAIL_LIMIT": 2000}):
        asgi_request("/hops/80/")
    line = log_lines.raw[-1]
    assert len(log_lines.raw) == len(ROUTES) + 1 and line not in served[0]
    assert 2 * PART_BYTES < len(line.encode()) + 1 < 4 * PART_BYTES
    return line


def docker_parts(line: str) -> list[str]:
    """docker's json-file driver's lines for one line: 16 KB of it per ``log``, only the
    last ending with the newline."""
    data = (line + "\n").encode()
    return [
        json.dumps(
            {"log": data[i : i + PART_BYTES].decode(), "stream": "stderr", "time": TIME},
            separators=(",", ":"),
        )
        for i in range(0, len(data), PART_BYTES)
    ]


def cri_parts(line: str) -> list[str]:
    data = line.encode()
    pieces = [data[i : i + PART_BYTES].decode() for i in range(0, len(data), PART_BYTES)]
    last = len(pieces) - 1
    return [f"{TIME} stderr {'F' if i == last else 'P'} {p}" for i, p in enumerate(pieces)]


@pytest.mark.parametrize("runtime", ["docker", "cri"])
def test_a_line_whose_last_part_was_lost_swallows_no_record(
    run_cli: RunCli,
    tmp_path: Path,
    implementation: str,
    runtime: str,
    long_line: str,
    served: tuple[list[str], list[str]],
) -> None:
    plain, _rendered = served
    split = docker_parts if runtime == "docker" else cri_parts
    whole = docker if runtime == "docker" else cri
    parts = split(long_line)
    assert len(parts) == 3  # (the line is ASCII: its parts cut no character)
    killed = parts[:-1]  # the container was killed before it wrote the last part
    # the restarted container's lines: whole short ones, then the long line whole
    after = [whole(line) for line in plain]
    lost = _write(tmp_path / f"{runtime}-lost.log", [*killed, *after])
    summary = _document(run_cli, lost, "--jobs", "1")["summary"]
    assert summary["records"] == 4
    assert summary["skipped_by_reason"] == {"truncated": 1}  # the first part
    assert (summary["lines"], summary["other_lines"]) == (6, 1)  # the second part
    # the restarted container's first line is the long one: its parts are joined
    again = _write(tmp_path / f"{runtime}-lost-again.log", [*killed, *parts, *after])
    document = _document(run_cli, again, "--jobs", "1")
    summary = document["summary"]
    assert summary["records"] == 5
    assert summary["skipped_by_reason"] == {"truncated": 1}
    assert (summary["lines"], summary["other_lines"]) == (7, 1)  # the joined line is one
    assert _rows(document)["GET /hops/<int:n>/"]["records"] == 2
    for jobs in ("1", "2"):
        summary = _document(run_cli, lost, again, "--jobs", jobs)["summary"]
        assert summary["records"] == 9, jobs
        assert summary["skipped_by_reason"] == {"truncated": 2}, jobs
    # killed after its first part: the restarted container's line is from the next part on
    once = _write(tmp_path / f"{runtime}-lost-once.log", [parts[0], *parts, *after])
    document = _document(run_cli, once, "--jobs", "1")
    summary = document["summary"]
    assert summary["records"] == 5
    assert summary["skipped_by_reason"] == {"truncated": 1}
    assert (summary["lines"], summary["other_lines"]) == (6, 0)
    assert _rows(document)["GET /hops/<int:n>/"]["records"] == 2


def _cut_after_a_brace(line: str) -> str:
    """``line`` with its ``request_id`` lengthened so that its first part (its first
    PART_BYTES bytes) ends with a "}" (the end of a ``detail`` entry): the cut a killed
    container's first part may happen to end with, which a whole line cut short there
    would be ``malformed_json`` for."""
    record = json.loads(line)
    data = line.encode()
    after_id = data.index(b'"request_id":') + len(b'"request_id":')
    brace = data.rindex(b"}", after_id, PART_BYTES)
    field = f'"request_id":{json.dumps(record["request_id"])}'
    longer = f'"request_id":{json.dumps(record["request_id"] + "x" * (PART_BYTES - 1 - brace))}'
    assert line.count(field) == 1
    cut = line.replace(field, longer)
    assert cut.encode()[PART_BYTES - 1 : PART_BYTES] == b"}"
    assert json.loads(cut) == {**record, "request_id": json.loads(longer.split(":", 1)[1])}
    return cut


@pytest.mark.parametrize("runtime", ["docker", "cri"])
def test_a_first_part_cut_right_after_a_brace_is_truncated(
    run_cli: RunCli,
    tmp_path: Path,
    implementation: str,
    runtime: str,
    long_line: str,
    served: tuple[list[str], list[str]],
) -> None:
    """A runtime's part that a later part continues is never a whole line: read alone
    (its last part lost), it is skipped as ``truncated``, whatever its last character."""
    plain, _rendered = served
    split = docker_parts if runtime == "docker" else cri_parts
    whole = docker if runtime == "docker" else cri
    parts = split(_cut_after_a_brace(long_line))
    assert len(parts) == 3
    after = [whole(line) for line in plain]
    lost = _write(tmp_path / f"{runtime}-lost.log", [*parts[:-1], *after])
    for jobs in ("1", "2"):
        summary = _document(run_cli, lost, "--jobs", jobs)["summary"]
        assert summary["records"] == 4, jobs
        assert summary["skipped_by_reason"] == {"truncated": 1}, jobs  # the first part
        assert (summary["lines"], summary["other_lines"]) == (6, 1), jobs
    # its last part in another file: its parts cannot be joined, the first is truncated
    first = _write(tmp_path / f"{runtime}-first.log", [*parts[:-1], *after])
    last = _write(tmp_path / f"{runtime}-last.log", parts[-1:])
    summary = _document(run_cli, first, last, "--jobs", "1")["summary"]
    assert summary["records"] == 4
    assert summary["skipped_by_reason"]["truncated"] == 1
    assert "malformed_json" not in summary["skipped_by_reason"]


def test_a_cri_first_part_cut_inside_a_character_is_truncated(
    run_cli: RunCli,
    tmp_path: Path,
    implementation: str,
    long_line: str,
    served: tuple[list[str], list[str]],
) -> None:
    """A CRI runtime cuts a line's bytes: a first part may end with half a character (its
    lines are not JSON strings, as docker's are). Read alone, it is cut short, not a line
    that was never UTF-8: ``truncated``, as a part ending anywhere else is."""
    plain, _rendered = served
    record = json.loads(long_line)
    field = f'"request_id":{json.dumps(record["request_id"])}'
    start = long_line.encode().index(field.encode()) + len(field) - 1  # before its last quote
    longer = record["request_id"] + "x" * (PART_BYTES - 1 - start) + "é"  # é: 2 bytes
    line = long_line.replace(field, f'"request_id":{json.dumps(longer, ensure_ascii=False)}')
    data = line.encode()
    assert data[PART_BYTES - 1 : PART_BYTES + 1] == "é".encode()  # cut between its bytes
    pieces = [data[i : i + PART_BYTES] for i in range(0, len(data), PART_BYTES)]
    last = len(pieces) - 1
    assert last in (2, 3) and b"".join(pieces) == data
    parts = [f"{TIME} stderr {'PF'[i == last]} ".encode() + p for i, p in enumerate(pieces)]
    lost = tmp_path / "cri-lost.log"
    lost.write_bytes(b"".join(p + b"\n" for p in [*parts[:-1], *(cri(x).encode() for x in plain)]))
    summary = _document(run_cli, lost, "--jobs", "1")["summary"]
    assert summary["records"] == 4
    assert summary["skipped_by_reason"] == {"truncated": 1}  # the first part
    assert (summary["lines"], summary["other_lines"]) == (last + 4, last - 1)  # the others
    # whole, the line is read (its parts joined make the character again)
    whole = tmp_path / "cri-whole.log"
    whole.write_bytes(b"".join(p + b"\n" for p in parts))
    summary = _document(run_cli, whole, "--jobs", "1")["summary"]
    assert (summary["lines"], summary["records"], summary["skipped"]) == (1, 1, 0)
