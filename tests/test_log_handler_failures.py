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
from django.conf import settings
from django.test import override_settings

from hopwatch import _emit, _errors, _hotpath, _hotpath_py
from tests.helpers import asgi_request, without_pytests_log_capture, wsgi_request

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
    # each test here says which handlers the line logger has
    without_pytests_log_capture(settings.HOPWATCH["LOGGER_NAME"], "hopwatch")
    for i in range(count):
        if i % 2:
            assert asgi_request("/sync/").status == 200
        else:
            assert wsgi_request("/sync/")[0].startswith("200")


def _through_an_outage(logger: logging.Logger, *handlers: logging.Handler) -> None:
    """``handlers`` on ``logger``, in this order, one of them a :class:`ShipperDown`: 6
    requests while it is down (each line's failure counted once), then it is taken
    off and 1 request more."""
    for handler in handlers:
        logger.addHandler(handler)
    _requests(6)
    assert _errors.total() == 6
    for handler in handlers:
        if isinstance(handler, ShipperDown):
            logger.removeHandler(handler)
    _requests(1)


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


@pytest.mark.internal_errors
def test_a_handler_at_level_info_before_the_raising_one_wrote_the_line(
    tmp_path, delivery, line_logger
):
    # ("level": "INFO" on the handler, as LOGGING configurations often have it: INFO
    # lines pass a handler whose level is INFO itself)
    _errors.reset_for_tests()
    file = _bare(logging.FileHandler(tmp_path / "lines.log", encoding="utf-8"))
    file.setLevel(logging.INFO)
    _through_an_outage(line_logger, file, ShipperDown())
    assert _errors_per_line(tmp_path / "lines.log") == [0, 1, 1, 1, 1, 1, 1]
    assert _errors.total() == 6


@pytest.mark.internal_errors
def test_handlers_on_an_ancestor_of_the_logger_count_as_its_own(tmp_path, delivery, db):
    # LOGGER_NAME "<app>.requests", the handlers on "<app>": the line propagates to
    # them, and the file handler there wrote each line before the shipper raised
    _errors.reset_for_tests()
    parent = logging.getLogger(f"hopwatch_failures_{next(_names)}")
    parent.setLevel(logging.INFO)
    parent.propagate = False
    file = _bare(logging.FileHandler(tmp_path / "lines.log", encoding="utf-8"))
    down = ShipperDown()
    parent.addHandler(file)
    parent.addHandler(down)
    try:
        with override_settings(
            MIDDLEWARE=HOPWATCH_ONLY,
            HOPWATCH={"OUTPUT": "logging", "LOGGER_NAME": f"{parent.name}.requests"},
        ):
            _requests(6)
            parent.removeHandler(down)
            _requests(1)
    finally:
        parent.removeHandler(down)
        parent.removeHandler(file)
        file.close()
    assert _errors_per_line(tmp_path / "lines.log") == [0, 1, 1, 1, 1, 1, 1]
    assert _errors.total() == 6


@pytest.mark.internal_errors
def test_a_handler_above_info_first_does_not_shift_which_handler_raised(
    tmp_path, delivery, line_logger
):
    # a handler at WARNING (mail_admins-like) first: the walk counts it too, so the
    # file handler after it is known to have written each line before the shipper
    _errors.reset_for_tests()
    warnings = logging.StreamHandler(io.StringIO())
    warnings.setLevel(logging.WARNING)
    file = _bare(logging.FileHandler(tmp_path / "lines.log", encoding="utf-8"))
    _through_an_outage(line_logger, warnings, file, ShipperDown())
    assert _errors_per_line(tmp_path / "lines.log") == [0, 1, 1, 1, 1, 1, 1]
    assert _errors.total() == 6
    assert warnings.stream.getvalue() == ""


def _annotate(record: logging.LogRecord) -> bool:
    record.service = "web"  # a field for the formatter, the record let through
    return True


@pytest.mark.parametrize("kind", ["drops", "lets through", "adds a field"])
@pytest.mark.internal_errors
def test_a_handler_with_filters_before_the_raising_one_wrote_the_line_if_they_let_it_through(
    tmp_path, delivery, line_logger, kind
):
    # Django's require_debug_true on a console handler, DEBUG off: its filter drops
    # every line, so no handler got the lines the shipper failed on, and the first
    # line after the outage reports them all (they counted as written: it reported
    # 1 of 6). A filter that lets the line through (require_debug_false, a
    # CallbackFilter that adds a field): the console wrote each line before the
    # shipper failed, each failure reported once (not known, each was reported twice).
    from django.utils.log import CallbackFilter, RequireDebugFalse, RequireDebugTrue

    _errors.reset_for_tests()
    console = logging.StreamHandler(io.StringIO())
    console.addFilter(
        {
            "drops": RequireDebugTrue,
            "lets through": RequireDebugFalse,
            "adds a field": lambda: CallbackFilter(_annotate),
        }[kind]()
    )
    file = _bare(logging.FileHandler(tmp_path / "lines.log", encoding="utf-8"))
    _through_an_outage(line_logger, console, ShipperDown(), file)
    shown = [
        json.loads(line).get("hopwatch_errors", 0)
        for line in console.stream.getvalue().splitlines()
    ]
    if kind == "drops":
        assert _errors_per_line(tmp_path / "lines.log") == [6]
        assert shown == []
    else:
        assert _errors_per_line(tmp_path / "lines.log") == [1]
        assert shown == [0, 1, 1, 1, 1, 1, 1]
    assert _errors.total() == 6


class OwnHandle(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler class with a ``handle`` of its own (what it returns says nothing)."""

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        super().handle(record)
        return False


@pytest.mark.parametrize("where", ["its class", "the handler itself"])
@pytest.mark.internal_errors
def test_a_handler_with_a_handle_of_its_own_before_the_raising_one_is_not_known(
    tmp_path, delivery, line_logger, where
):
    # Whether it wrote the line is not known: as through the logger's own handle,
    # each error is given back once (reported on two lines at most)
    _errors.reset_for_tests()
    if where == "its class":
        own = _bare(OwnHandle(io.StringIO()))
    else:
        own = _bare(logging.StreamHandler(io.StringIO()))
        handle = own.handle
        own.handle = lambda record: not handle(record)  # type: ignore[method-assign]
    _through_an_outage(line_logger, own, ShipperDown())
    shown = [
        json.loads(line).get("hopwatch_errors", 0) for line in own.stream.getvalue().splitlines()
    ]
    assert shown == [0, 1, 2, 2, 2, 2, 2]
    assert _errors.total() == 6


@pytest.mark.internal_errors
def test_a_handler_known_to_have_written_after_one_not_known_settles_it(
    tmp_path, delivery, line_logger
):
    # a handler with a handle of its own, then a file handler that wrote each line,
    # then the shipper: each failure is reported once
    _errors.reset_for_tests()
    own = _bare(OwnHandle(io.StringIO()))
    file = _bare(logging.FileHandler(tmp_path / "lines.log", encoding="utf-8"))
    _through_an_outage(line_logger, own, file, ShipperDown())
    assert _errors_per_line(tmp_path / "lines.log") == [0, 1, 1, 1, 1, 1, 1]
    assert _errors.total() == 6


@pytest.mark.internal_errors
def test_a_line_lost_on_a_failing_stdout_passes_its_count_on(monkeypatch, db):
    """OUTPUT "stdout" whose writes fail for 5 lines (a full disk), then work: the
    first line written reports the 5 errors."""
    from hopwatch import apps

    class Flaky(io.StringIO):
        failing = True

        def write(self, text: str) -> int:
            if self.failing:
                raise OSError(28, "No space left on device")
            return super().write(text)

    _errors.reset_for_tests()
    flaky = Flaky()
    monkeypatch.setattr("sys.stdout", flaky)
    with override_settings(
        MIDDLEWARE=HOPWATCH_ONLY,
        # (a logger name of its own: the output is made again, on this stdout)
        HOPWATCH={"OUTPUT": "stdout", "LOGGER_NAME": f"hopwatch_failures_{next(_names)}"},
    ):
        try:
            _requests(5)
            assert _errors.total() == 5
            flaky.failing = False
            _requests(2)
        finally:
            apps._emitter.close()
    lines = [json.loads(line) for line in flaky.getvalue().splitlines()]
    assert [line.get("hopwatch_errors", 0) for line in lines] == [5, 0]
    assert _errors.total() == 5


@pytest.mark.internal_errors
def test_the_exception_of_a_failed_line_is_not_kept(tmp_path, delivery, line_logger):
    """What a failed walk leaves (take_failure) is taken by its line: the exception,
    and the request's frames in its traceback, are not kept until the next failure."""
    import gc
    import weakref

    raised: list[weakref.ref[BaseException]] = []

    class Boom(OSError):
        pass

    class ShipperDownOnce(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            exc = Boom("shipper down")
            raised.append(weakref.ref(exc))
            raise exc

    _errors.reset_for_tests()
    down = ShipperDownOnce()
    line_logger.addHandler(down)
    _requests(1)
    line_logger.removeHandler(down)
    line_logger.addHandler(_bare(logging.FileHandler(tmp_path / "lines.log", encoding="utf-8")))
    _requests(3)
    gc.collect()
    assert len(raised) == 1 and raised[0]() is None
    assert _errors_per_line(tmp_path / "lines.log") == [1, 0, 0]


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


class _FullDisk(io.StringIO):
    def write(self, s: str) -> int:
        raise OSError(28, "No space left on device")


@pytest.mark.internal_errors
def test_a_handler_whose_write_failed_did_not_write_the_line(
    tmp_path, delivery, line_logger, monkeypatch
):
    # a console on a full disk (its write fails: handleError has it), the shipper
    # down, then the file: no handler got the lines, so the first one written after
    # the outage reports all 6
    monkeypatch.setattr(logging, "raiseExceptions", False)  # (handleError quiet)
    _errors.reset_for_tests()
    file = _bare(logging.FileHandler(tmp_path / "lines.log", encoding="utf-8"))
    _through_an_outage(line_logger, _bare(logging.StreamHandler(_FullDisk())), ShipperDown(), file)
    assert _errors_per_line(tmp_path / "lines.log") == [6]


@pytest.mark.internal_errors
def test_a_delayed_file_handler_opened_by_the_line_wrote_it(tmp_path, delivery, line_logger):
    # a FileHandler(delay=True) put first while the shipper is down: its first line
    # goes through FileHandler.emit (which opens the file), and it wrote each line:
    # the 3 failures before it on its first line, then each once
    _errors.reset_for_tests()
    down = ShipperDown()
    line_logger.addHandler(down)
    _requests(3)
    file = _bare(logging.FileHandler(tmp_path / "lines.log", encoding="utf-8", delay=True))
    line_logger.handlers.insert(0, file)
    _requests(3)
    line_logger.removeHandler(down)
    _requests(1)
    assert _errors_per_line(tmp_path / "lines.log") == [3, 1, 1, 1]


@pytest.mark.internal_errors
def test_a_handler_known_to_have_written_before_one_not_known_settles_it(
    tmp_path, delivery, line_logger
):
    # the file first (it wrote each line), then a handler with a handle of its own,
    # then the shipper: each failure reported once
    _errors.reset_for_tests()
    file = _bare(logging.FileHandler(tmp_path / "lines.log", encoding="utf-8"))
    _through_an_outage(line_logger, file, _bare(OwnHandle(io.StringIO())), ShipperDown())
    assert _errors_per_line(tmp_path / "lines.log") == [0, 1, 1, 1, 1, 1, 1]


@pytest.mark.internal_errors
def test_a_handle_set_in_the_handlers_dict_after_it_was_read_is_not_known(
    tmp_path, delivery, line_logger
):
    # handle set on the handler itself once its __dict__ exists (vars() made it):
    # found there, as in the inline values, so not known (each error on two lines)
    _errors.reset_for_tests()
    own = _bare(logging.StreamHandler(io.StringIO()))
    vars(own)
    handle = own.handle
    own.__dict__["handle"] = lambda record: not handle(record)
    _through_an_outage(line_logger, own, ShipperDown())
    shown = [
        json.loads(line).get("hopwatch_errors", 0) for line in own.stream.getvalue().splitlines()
    ]
    assert shown == [0, 1, 2, 2, 2, 2, 2]
