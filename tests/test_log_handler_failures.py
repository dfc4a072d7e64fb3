"""OUTPUT "logging" with real requests: handlers whose methods were replaced on the
handler itself (``handler.format = ...``) get the line through those.

Each test runs on the C accelerator and on the pure-Python reference (the delivery:
``_hotpath.deliver_line``).
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from django.test import override_settings

from hopwatch import _emit, _hotpath, _hotpath_py
from tests.helpers import wsgi_request

HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]
_names = iter(range(1_000_000))


@pytest.fixture(params=["accelerated", "reference"])
def delivery(request, monkeypatch):
    if request.param == "reference":
        monkeypatch.setattr(_emit, "_deliver_line", _hotpath_py.deliver_line)
    elif _hotpath.IMPLEMENTATION != "c":
        pytest.skip("the C accelerator is not in use (HOPWATCH_PURE_PYTHON)")
    return request.param


@pytest.fixture
def line_logger(db):
    """A logger of the test's own for the request lines (LOGGER_NAME), taken down after
    (db: a WSGI request closes the database connections an earlier test opened)."""
    logger = logging.getLogger(f"hopwatch_failures_{next(_names)}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    with override_settings(
        MIDDLEWARE=HOPWATCH_ONLY, HOPWATCH={"OUTPUT": "logging", "LOGGER_NAME": logger.name}
    ):
        yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.filters.clear()


def _bare(handler: logging.Handler) -> logging.Handler:
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


# --- handler methods replaced on the handler itself -------------------------------


def _replace(handler: logging.StreamHandler, method: str, calls: list[str]) -> None:
    stream = handler.stream

    def format(record: logging.LogRecord) -> str:
        calls.append("format")
        return "WRAPPED " + logging.Formatter.format(handler.formatter, record)  # type: ignore[arg-type]

    def emit(record: logging.LogRecord) -> None:
        calls.append("emit")
        stream.write("EMITTED " + record.getMessage() + "\n")

    def handle(record: logging.LogRecord) -> bool:
        calls.append("handle")
        stream.write("HANDLED " + record.getMessage() + "\n")
        return True

    def filter(record: logging.LogRecord) -> bool:
        if not record.getMessage():  # the check for lost lines asks about a probe (W004)
            return True
        calls.append("filter")
        record.msg = "FILTERED " + record.getMessage()
        return True

    def flush() -> None:
        calls.append("flush")
        stream.flush()

    setattr(handler, method, locals()[method])


@pytest.mark.parametrize("method", ["format", "emit", "handle", "filter", "flush"])
@pytest.mark.parametrize("dict_made", [False, True])
def test_a_method_replaced_on_the_handler_itself_writes_the_line(
    delivery, line_logger, method, dict_made
):
    buffer = io.StringIO()
    handler = _bare(logging.StreamHandler(buffer))
    if dict_made:
        handler.__dict__  # its attributes in a dict (Python 3.11, 3.12: no longer inline)  # noqa: B018
    calls: list[str] = []
    _replace(handler, method, calls)  # type: ignore[arg-type]
    line_logger.addHandler(handler)
    assert wsgi_request("/sync/")[0].startswith("200")
    (text,) = buffer.getvalue().splitlines()
    prefix = {"format": "WRAPPED ", "emit": "EMITTED ", "handle": "HANDLED ", "filter": "FILTERED "}
    assert text.startswith(prefix.get(method, "") + '{"event":"hopwatch.request","schema":1,')
    line: dict[str, Any] = json.loads(text.removeprefix(prefix.get(method, "")))
    assert (line["route"], line["status"]) == ("/sync/", 200)
    assert calls == [method]
    # and the same handler with the method its class's again: the plain line
    delattr(handler, method)
    buffer.seek(0)
    buffer.truncate()
    assert wsgi_request("/sync/")[0].startswith("200")
    (text,) = buffer.getvalue().splitlines()
    assert text.startswith('{"event":"hopwatch.request","schema":1,')
    assert calls == [method]
