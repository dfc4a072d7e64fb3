"""Lines a project's structlog set-up renders again: ``hopwatch report`` reads them.

structlog's stdlib integration (a ``ProcessorFormatter`` with a ``JSONRenderer`` on
the handler, as django-structlog sets it up) renders every stdlib record it gets,
hopwatch's included: the line hopwatch hands over becomes the ``event`` of an outer
JSON object. Real requests through Django's ``ASGIHandler``, the real formatter, the
real report command.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import structlog

from tests.helpers import asgi_request

ROOT = Path(__file__).resolve().parents[1]


def structlog_json_handler(path: Path, event_key: str = "event") -> logging.Handler:
    """structlog's stdlib formatter rendering each record as JSON, the line under
    ``event_key`` (structlog's ``EventRenamer`` moves it from ``event``)."""
    renamer = [] if event_key == "event" else [structlog.processors.EventRenamer(event_key)]
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso"),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *renamer,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    return handler


def test_lines_rendered_again_by_structlogs_stdlib_formatter_are_read(tmp_path, log_lines):
    path = tmp_path / "app.log"
    handler = structlog_json_handler(path)
    logger = logging.getLogger("hopwatch")
    logger.addHandler(handler)
    try:
        for route in ["/async/", "/async/", "/sync/"]:
            asgi_request(route)
    finally:
        logger.removeHandler(handler)
        handler.close()
    written = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [outer["logger"] for outer in written] == ["hopwatch"] * 3
    assert all(outer["event"].startswith('{"event":"hopwatch.request"') for outer in written)
    plain = {line["route"]: line for line in log_lines.parsed()}

    result = subprocess.run(
        [sys.executable, "-m", "hopwatch", "report", str(path), "--format", "json", "--top", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["summary"]["records"] == 3
    rows = {row["label"]: row for row in document["rows"]}
    assert rows.keys() == {"GET /async/", "GET /sync/"}
    assert rows["GET /async/"]["records"] == 2
    for route in ["/async/", "/sync/"]:
        assert rows[f"GET {route}"]["hops"]["max"] == plain[route]["hops"]
