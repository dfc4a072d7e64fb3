"""OUTPUT "logging" with real requests: what the request lines say when a handler of
the logger raises (``hopwatch_errors``), and handlers whose methods were replaced on
the handler itself (``handler.format = ...``) get the line through those.

Each test runs on the C accelerator and on the pure-Python reference (the delivery
and what it leaves when a handler raises: ``_hotpath.deliver_line``, ``take_failure``).
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from hopwatch import _emit, _errors, _hotpath, _hotpath_py
from tests.helpers import asgi_request, wsgi_request

HOPWATCH_ONLY = ["hopwatch.middleware.HopwatchMiddleware"]
_names = iter(range(1_000_000))


@pytest.fixture(params=["accelerated", "reference"])
def delivery(request, monkeypatch):
    if request.param == "reference":
        monkeypatch.setattr(_emit, "_deliver_line", _hotpath_py.deliver_line)
        monkeypatch.setattr(_hotpath, "take_failure", _hotpath_py.take_failure)
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


class ShipperDown(logging.Handler):
    """A handler whose every emit raises (a log shipper that is down)."""

    def emit(self, record: logging.LogRecord) -> None:
        raise OSError("shipper down")


def _errors_per_line(path: Path) -> list[int]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [
        json.loads(line).get("hopwatch_errors", 0)
        for line in lines
        if line.startswith('{"event":"hopwatch.request"')
    ]


def _requests(count: int) -> None:
    for i in range(count):
        if i % 2:
            assert asgi_request("/sync/").status == 200
        else:
            assert wsgi_request("/sync/")[0].startswith("200")


# --- hopwatch_errors when a handler raises ----------------------------------------


@pytest.mark.internal_errors
@pytest.mark.parametrize("order", ["file first", "raising first"])
def test_each_failure_is_reported_once_not_on_every_later_line(
    tmp_path, delivery, line_logger, order
):
    _errors.reset_for_tests()
    file = _bare(logging.FileHandler(tmp_path / "lines.log", encoding="utf-8"))
    down = ShipperDown()
    for handler in (file, down) if order == "file first" else (down, file):
        line_logger.addHandler(handler)
    _requests(6)
    assert _errors.total() == 6  # each line's failure, once
    if order == "file first":
        # each line written before the shipper failed: the failure before it, once
        assert _errors_per_line(tmp_path / "lines.log") == [0, 1, 1, 1, 1, 1]
    else:
        # the shipper failed before the file got any line: every line lost
        assert _errors_per_line(tmp_path / "lines.log") == []
    line_logger.removeHandler(down)
    _requests(1)
    expected = [0, 1, 1, 1, 1, 1, 1] if order == "file first" else [6]
    assert _errors_per_line(tmp_path / "lines.log") == expected
    assert _errors.total() == 6


@pytest.mark.internal_errors
def test_the_first_line_after_an_outage_of_the_only_handler_reports_all_of_it(
    tmp_path, delivery, line_logger
):
    _errors.reset_for_tests()
    line_logger.addHandler(logging.NullHandler())  # it writes nothing: no line got out
    down = ShipperDown()
    line_logger.addHandler(down)
    _requests(5)
    assert _errors.total() == 5
    line_logger.removeHandler(down)
    line_logger.addHandler(_bare(logging.FileHandler(tmp_path / "lines.log", encoding="utf-8")))
    _requests(2)
    assert _errors_per_line(tmp_path / "lines.log") == [5, 0]
    assert _errors.total() == 5


@pytest.mark.internal_errors
def test_through_the_logger_s_own_handle_an_error_is_given_back_once(
    tmp_path, delivery, line_logger
):
    # A logger filter: the line goes through logger.handle, and which handlers got it
    # before the failure is not known. Each error is given back once: reported on
    # two lines at most, never on every later line.
    _errors.reset_for_tests()
    line_logger.addFilter(lambda record: True)
    line_logger.addHandler(_bare(logging.FileHandler(tmp_path / "lines.log", encoding="utf-8")))
    down = ShipperDown()
    line_logger.addHandler(down)
    _requests(6)
    assert _errors.total() == 6
    assert _errors_per_line(tmp_path / "lines.log") == [0, 1, 2, 2, 2, 2]
    line_logger.removeHandler(down)
    _requests(1)
    assert _errors_per_line(tmp_path / "lines.log") == [0, 1, 2, 2, 2, 2, 2]


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
