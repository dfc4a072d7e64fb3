"""Internal errors: never raised into the app, logged once, then counted.

Every place where hopwatch runs inside a request catches its own exceptions
and calls :func:`report`. The first one is logged with its traceback on the
``hopwatch`` logger; later ones only increment the counter, which the request
log line reports (``hopwatch_errors``) so they are not silent.
"""

from __future__ import annotations

import itertools
import logging
import threading

logger = logging.getLogger("hopwatch")

_count = itertools.count(1)  # next() is atomic in CPython: no lock on the error path
_total = 0
_reported = 0
#: Of the errors not yet reported, how many a line that may have been written gave
#: back (give_back's ``again``): such a line does not give them back a second time.
_given_back = 0
_first_logged = False
_lock = threading.Lock()


def report(where: str, exc: BaseException) -> None:
    global _total, _first_logged
    _total = next(_count)
    if _first_logged:
        return
    with _lock:
        if _first_logged:
            return
        _first_logged = True
    try:
        logger.warning(
            "hopwatch internal error in %s; the request was not affected. Further errors"
            " are counted in the hopwatch_errors field of the request log line.",
            where,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
    except RecursionError:
        # The stack at its limit (the app deep in a recursion): nothing was said, and
        # the next error says it, else none ever would be. (A handler that raises is
        # broken for every record: it is not asked again.)
        _first_logged = False
    except Exception:  # a broken log handler must not turn this into an app error
        pass


def total() -> int:
    """Internal errors since the process started."""
    return _total


def take_for_line() -> tuple[int, int]:
    """Errors not yet reported in a log line, and how many of them a line that may
    have been written gave back already; marks them reported. (The request line's
    path, ``Emitter.__call__``, calls it only when ``_total != _reported``: no call
    on the usual line.)"""
    global _reported, _given_back
    with _lock:  # (give_back may run on another thread: the held lines' writer)
        total_now = _total
        fresh = total_now - _reported
        _reported = total_now
        again, _given_back = _given_back, 0
    return fresh, min(again, fresh)


def give_back(count: int, again: int = 0) -> None:
    """A line that was to report ``count`` errors was lost, or may have been: report
    them later. ``again``: how many of them the next line that may have been written
    is not to give back again (see ``Emitter.__call__``). From a request's thread or
    from ``OUTPUT_BUFFER``'s writer (``_emit._HeldLines``): under the lock, as
    :func:`take_for_line`, so neither loses the other's change."""
    global _reported, _given_back
    with _lock:
        _reported -= count
        _given_back += again


def reset_for_tests() -> None:
    global _count, _total, _reported, _given_back, _first_logged
    _count = itertools.count(1)
    _total = 0
    _reported = 0
    _given_back = 0
    _first_logged = False
