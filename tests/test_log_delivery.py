"""A line's delivery through the stdlib logger (``_StdlibLine.info``) is
``logger.info(line)``'s, for every logging configuration: the same text in every
file and stream, the same records to every handler that reads one, the same
error output; a record is made only where one is read.

Each case is run twice on a fresh logging tree of its own (a logger named per
test, under a parent of its own): once with ``logger.info``, once with
hopwatch's delivery, on the C accelerator and on the pure-Python reference.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hopwatch import _emit, _hotpath, _hotpath_py

LINE = '{"event":"hopwatch.request","route":"/a/ü/"}'


@pytest.fixture(params=["accelerated", "reference"])
def delivery(request, monkeypatch):
    if request.param == "reference":
        monkeypatch.setattr(_emit, "_deliver_line", _hotpath_py.deliver_line)
    elif _hotpath.IMPLEMENTATION != "c":
        pytest.skip("the C accelerator is not in use (HOPWATCH_PURE_PYTHON)")
    return request.param


class Tree:
    """A logger ``<name>.parent.line`` whose parent and the line logger are set
    up by ``configure``; everything is taken down afterwards."""

    def __init__(self, tmp_path: Path, base: str):
        self.parent = logging.getLogger(base)
        self.logger = logging.getLogger(f"{base}.line")
        self.tmp_path = tmp_path
        self.handlers: list[logging.Handler] = []

    def add(self, logger: logging.Logger, handler: logging.Handler) -> logging.Handler:
        logger.addHandler(handler)
        self.handlers.append(handler)
        return handler

    def close(self) -> None:
        for logger in (self.logger, self.parent):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.filters.clear()
            logger.propagate = True
            logger.setLevel(logging.NOTSET)
        for handler in self.handlers:
            handler.close()


class Seen(logging.Handler):
    """A handler of the app's own: it reads the record."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _run(
    base: str,
    tmp_path: Path,
    configure: Callable[[Tree, str], None],
    deliver: Callable[[logging.Logger, str], None],
    tag: str,
) -> tuple[Tree, dict[str, Any]]:
    tree = Tree(tmp_path, base)
    tree.parent.propagate = False  # the test's tree only, not the root's handlers
    tree.logger.setLevel(logging.INFO)
    configure(tree, tag)
    stderr = io.StringIO()
    saved = sys.stderr
    sys.stderr = stderr
    try:
        deliver(tree.logger, LINE)
        deliver(tree.logger, LINE + "2")
    finally:
        sys.stderr = saved
    for handler in tree.handlers:
        handler.flush()
    out: dict[str, Any] = {"stderr": _scrub(stderr.getvalue())}
    for handler in tree.handlers:
        key = f"{type(handler).__name__}{tree.handlers.index(handler)}"
        if isinstance(handler, Seen):
            out[key] = [(r.name, r.levelno, r.getMessage()) for r in handler.records]
            out[key + " same records as Seen1"] = handler.records == tree.handlers[1].records
        elif isinstance(handler, logging.FileHandler):
            path = Path(handler.baseFilename)
            out[key] = path.read_text(encoding="utf-8") if path.exists() else None
        elif isinstance(handler, logging.StreamHandler) and isinstance(
            handler.stream, io.StringIO
        ):
            out[key] = handler.stream.getvalue()
    return tree, out


def _scrub(text: str) -> str:
    """Logging's error report names the frames it came through: keep its lines
    that are the same for any caller (the header, the exception, the message)."""
    keep = ("--- Logging error ---", "OSError", "Message:", "Arguments:", "No handlers")
    return "\n".join(line for line in text.splitlines() if line.startswith(keep))


_trees = iter(range(1_000_000))


def _both(tmp_path: Path, configure: Callable[[Tree, str], None]) -> tuple[dict, dict, int]:
    """The outputs of the two deliveries, on the same logger names (the tree is
    taken down in between), and how many records hopwatch's made."""
    base = f"hopwatch_delivery_{next(_trees)}"
    made: list[str] = []

    def stdlib(logger: logging.Logger, message: str) -> None:
        logger.info(message)

    def hopwatch(logger: logging.Logger, message: str) -> None:
        line = _emit._StdlibLine(logger)
        record = line._record

        def counting(text: str) -> logging.LogRecord:
            made.append(text)
            return record(text)

        line._record = counting  # type: ignore[method-assign]
        line.info(message)

    tree, expected = _run(base, tmp_path / "stdlib", configure, stdlib, "stdlib")
    tree.close()
    tree, got = _run(base, tmp_path / "hopwatch", configure, hopwatch, "hopwatch")
    tree.close()
    return expected, got, len(made)


def _file(tree: Tree, tag: str, name: str = "line.log", **kwargs: Any) -> logging.FileHandler:
    tree.tmp_path.mkdir(parents=True, exist_ok=True)
    return logging.FileHandler(tree.tmp_path / name, encoding="utf-8", **kwargs)


def _bare(handler: logging.Handler) -> logging.Handler:
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


# --- plain handlers: the text, and no record ------------------------------------


def test_the_documented_file_handler_gets_the_text_and_no_record_is_made(tmp_path, delivery):
    def configure(tree, tag):
        tree.add(tree.logger, _bare(_file(tree, tag)))
        tree.logger.propagate = False

    expected, got, made = _both(tmp_path, configure)
    assert got == expected
    assert expected["FileHandler0"] == LINE + "\n" + LINE + "2\n"
    assert made == 0


def test_stream_handlers_with_no_formatter_a_terminator_and_ancestors(tmp_path, delivery):
    def configure(tree, tag):
        tree.add(tree.logger, logging.StreamHandler(io.StringIO()))  # the default formatter
        crlf = tree.add(tree.parent, _bare(logging.StreamHandler(io.StringIO())))
        crlf.terminator = "\r\n"  # type: ignore[attr-defined]
        tree.add(tree.parent, _bare(_file(tree, tag)))

    expected, got, made = _both(tmp_path, configure)
    assert got == expected
    assert expected["StreamHandler1"] == LINE + "\r\n" + LINE + "2\r\n"
    assert made == 0


def test_levels_and_propagation_choose_the_same_handlers(tmp_path, delivery):
    def configure(tree, tag):
        quiet = tree.add(tree.logger, _bare(logging.StreamHandler(io.StringIO())))
        quiet.setLevel(logging.WARNING)
        tree.add(tree.logger, _bare(logging.StreamHandler(io.StringIO())))
        tree.add(tree.parent, _bare(logging.StreamHandler(io.StringIO())))
        tree.logger.propagate = False

    expected, got, made = _both(tmp_path, configure)
    assert got == expected
    assert expected["StreamHandler0"] == "" and expected["StreamHandler2"] == ""
    assert made == 0


# --- handlers that read the record -----------------------------------------------


@pytest.mark.parametrize(
    "variant",
    ["app-handler", "formatter-with-fields", "handler-filter", "rejecting-filter", "plain-lock"],
)
def test_a_handler_that_reads_the_record_gets_one_record_per_line(tmp_path, delivery, variant):
    def configure(tree, tag):
        tree.add(tree.logger, _bare(logging.StreamHandler(io.StringIO())))
        if variant == "app-handler":
            tree.add(tree.parent, Seen())
            tree.add(tree.parent, Seen())
        elif variant == "formatter-with-fields":
            handler = tree.add(tree.parent, logging.StreamHandler(io.StringIO()))
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        elif variant == "handler-filter":
            handler = tree.add(tree.parent, _bare(logging.StreamHandler(io.StringIO())))
            handler.addFilter(lambda record: setattr(record, "msg", "[f] " + record.msg) or True)
        elif variant == "rejecting-filter":
            handler = tree.add(tree.parent, _bare(logging.StreamHandler(io.StringIO())))
            handler.addFilter(lambda record: False)
        else:  # a lock that is not the RLock logging makes (threading's Python one)
            handler = tree.add(tree.parent, _bare(logging.StreamHandler(io.StringIO())))
            handler.lock = threading._PyRLock()  # type: ignore[assignment,attr-defined]

    expected, got, made = _both(tmp_path, configure)
    assert got == expected
    assert made == 2  # one record per line, shared by every handler that reads it
    if variant == "app-handler":
        assert expected["Seen1"] == expected["Seen2"] != []


def test_a_logger_filter_sees_the_record(tmp_path, delivery):
    def configure(tree, tag):
        tree.add(tree.logger, _bare(logging.StreamHandler(io.StringIO())))
        tree.logger.addFilter(lambda record: record.getMessage().endswith("2"))

    expected, got, made = _both(tmp_path, configure)
    assert got == expected
    assert expected["StreamHandler0"] == LINE + "2\n"
    assert made == 2


# --- the stream's own cases --------------------------------------------------------


def test_a_delayed_or_closed_file_handler_opens_its_file_as_logging_does(tmp_path, delivery):
    def configure(tree, tag):
        tree.add(tree.logger, _bare(_file(tree, tag, "delayed.log", delay=True)))
        closed = tree.add(tree.logger, _bare(_file(tree, tag, "closed.log")))
        closed.close()

    expected, got, made = _both(tmp_path, configure)
    assert got == expected
    assert expected["FileHandler0"] == LINE + "\n" + LINE + "2\n"
    assert made == 1  # for the first line's emit() (the files are open for the second)


class Broken(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("disk full")


@pytest.mark.parametrize("raise_exceptions", [True, False])
def test_a_failing_stream_reports_through_handle_error(
    tmp_path, delivery, monkeypatch, raise_exceptions
):
    monkeypatch.setattr(logging, "raiseExceptions", raise_exceptions)

    def configure(tree, tag):
        tree.add(tree.logger, _bare(logging.StreamHandler(Broken())))
        tree.add(tree.logger, _bare(logging.StreamHandler(io.StringIO())))

    expected, got, made = _both(tmp_path, configure)
    assert got == expected
    if raise_exceptions:
        assert expected["stderr"].count("--- Logging error ---") == 2
        assert "OSError: disk full" in expected["stderr"]
    else:
        assert expected["stderr"] == ""
    assert expected["StreamHandler1"] == LINE + "\n" + LINE + "2\n"
    assert made == 2  # for handleError


@pytest.mark.parametrize("last_resort", ["default", "none"])
def test_no_handler_at_all_is_logging_s_own_case(tmp_path, delivery, monkeypatch, last_resort):
    if last_resort == "none":
        monkeypatch.setattr(logging, "lastResort", None)
    manager = logging.Logger.manager
    monkeypatch.setattr(manager, "emittedNoHandlerWarning", False)

    def configure(tree, tag):
        manager.emittedNoHandlerWarning = False

    expected, got, made = _both(tmp_path, configure)
    assert got == expected
    if last_resort == "none":
        assert "No handlers could be found" in expected["stderr"]
    assert made == 2  # for callHandlers


# --- logging methods that are not logging's own -----------------------------------


@pytest.mark.parametrize(
    ("owner", "name"),
    [
        ("Logger", "callHandlers"),  # as Sentry's logging integration does
        ("Logger", "handle"),
        ("Handler", "handle"),
        ("StreamHandler", "emit"),
        ("StreamHandler", "flush"),
        ("Formatter", "format"),
        ("LogRecord", "getMessage"),
    ],
)
def test_a_patched_logging_method_is_called(tmp_path, delivery, monkeypatch, owner, name):
    cls = getattr(logging, owner)
    original = getattr(cls, name)
    calls: list[str] = []

    def patched(self, *args, **kwargs):
        calls.append(name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, patched)
    started: dict[str, int] = {}

    def configure(tree, tag):
        started[tag] = len(calls)
        tree.add(tree.logger, _bare(_file(tree, tag)))

    expected, got, made = _both(tmp_path, configure)
    assert got == expected
    by_logging = started["hopwatch"] - started["stdlib"]
    assert by_logging > 0 and len(calls) - started["hopwatch"] == by_logging
    monkeypatch.undo()
    # and, the patch gone, the plain delivery again
    expected, got, made = _both(tmp_path / "after", configure)
    assert got == expected and made == 0


def test_a_logger_class_of_the_app_handles_the_record(tmp_path, delivery):
    handled: list[str] = []

    class AppLogger(logging.Logger):
        def handle(self, record):
            handled.append(record.getMessage())
            super().handle(record)

    def configure(tree, tag):
        tree.logger.__class__ = AppLogger
        tree.add(tree.logger, _bare(_file(tree, tag)))

    expected, got, made = _both(tmp_path, configure)
    assert got == expected
    assert handled == [LINE, LINE + "2"] * 2
    assert made == 2
