"""The asgiref instrumentation: the only module that touches asgiref internals.

``install()`` replaces ``SyncToAsync.__call__`` and ``AsyncToSync.__call__`` at
class level, so every instance is seen, including instances Django and
third-party code created at import time. ``uninstall()`` puts the original
functions back.

How one crossing is measured, the same way in every asgiref version from 3.6
(Django 4.2's oldest) to 3.13:

* The patched ``__call__`` makes a **per-call shadow** of the adapter instance
  (a shallow copy of its ``__dict__``) with one extra instance attribute, a
  thin timing wrapper around the method asgiref calls on the other side
  (``thread_handler`` in the worker thread for ``SyncToAsync``, ``main_wrap``
  on the target loop for ``AsyncToSync``), and runs the *original*
  ``__call__`` on the shadow. asgiref therefore does all its own work
  (executor choice, thread-sensitivity, deadlock detection, context copying,
  cancellation) exactly as it would; the wrapped callable (``func`` /
  ``awaitable``) is untouched, and the wrapper calls whatever ``thread_handler``
  / ``main_wrap`` the class has at call time, so subclass overrides and other
  agents' class-level wrappers (APMs do this) see exactly what they would see
  without hopwatch. A shadow rather than a mutation of the shared instance,
  because one adapter is routinely called from many requests at once.
* asgiref 3.8-3.11 caches ``main_event_loop`` on the instance during
  ``AsyncToSync.__call__``; that one attribute is written back from the shadow
  so the instance ends up exactly as it would have.
* The hop being made is put in the ``current_hop`` contextvar *before* the
  original call, in the caller's context. asgiref copies the context to the
  other side, so a hop made from inside the wrapped code sees its parent
  (nesting depth) and the request scope; the value is unchanged when asgiref
  copies the context back, and the token is reset afterwards.

The hot path takes no lock, does no logging and no I/O; any error inside
hopwatch is reported once (``_errors``) and the call proceeds unpatched.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import AsyncToSync, SyncToAsync

from hopwatch import _errors, _recorder
from hopwatch._causes import attribute
from hopwatch._recorder import (
    ASYNC_TO_SYNC,
    CANCELLED,
    ERROR,
    SYNC_TO_ASYNC,
    Hop,
    current_hop,
    current_scope,
    finish_hop,
)

__all__ = ["install", "is_installed", "uninstall"]

_now = time.perf_counter_ns
_get_ident = threading.get_ident
_getframe = sys._getframe
_new = object.__new__
_CancelledError = asyncio.CancelledError

_lock = threading.Lock()
_installed = False
# Our functions stay callable after uninstall() if someone else wrapped them
# meanwhile; then they pass straight through.
_active = False
_original_s2a_call: Any = None
_original_a2s_call: Any = None


def _end_hop(hop: Hop, token: Any) -> None:
    try:
        current_hop.reset(token)
    except ValueError:
        # The token belongs to another context (the caller's context was
        # swapped under us); leave the variable as asgiref left it.
        pass
    finish_hop(hop)


# --- SyncToAsync --------------------------------------------------------------


def _timed_sync(real: Callable[..., Any], hop: Hop) -> Callable[..., Any]:
    """``thread_handler`` (bound to the shadow), timed; runs in the worker thread."""

    def thread_handler(*args: Any, **kwargs: Any) -> Any:
        __traceback_hide__ = True
        __tracebackhide__ = True
        hop.thread_id = _get_ident()
        hop.started_ns = _now()
        try:
            return real(*args, **kwargs)
        finally:
            hop.ended_ns = _now()

    return thread_handler


async def _sync_to_async_call(self: Any, *args: Any, **kwargs: Any) -> Any:
    __traceback_hide__ = True
    __tracebackhide__ = True
    called_ns = _now()
    if not _active:
        return await _original_s2a_call(self, *args, **kwargs)
    # Kept inline, without helper functions: this runs on every hop.
    try:
        func = self.func
        hop = Hop(
            SYNC_TO_ASYNC,
            attribute(self, func, _getframe(1)),
            self._thread_sensitive,
            current_hop.get(),
            current_scope.get(),
            called_ns,
        )
        cls = type(self)
        shadow = _new(cls)
        state = self.__dict__.copy()
        handler = cls.thread_handler.__get__(shadow, cls)  # the class's, at call time
        if _recorder.profiles_active and hop.scope is not None and hop.scope.profile:
            state["thread_handler"] = hop.scope.profile.wrap_sync(handler, hop)
        else:
            state["thread_handler"] = _timed_sync(handler, hop)
        shadow.__dict__ = state
        token = current_hop.set(hop)
    except Exception as exc:
        _errors.report("SyncToAsync.__call__", exc)
        return await _original_s2a_call(self, *args, **kwargs)
    try:
        return await _original_s2a_call(shadow, *args, **kwargs)
    except _CancelledError:
        hop.outcome = CANCELLED
        raise
    except BaseException:
        hop.outcome = ERROR
        raise
    finally:
        hop.resumed_ns = _now()
        try:
            _end_hop(hop, token)
        except Exception as exc:
            _errors.report("SyncToAsync.__call__ (finish)", exc)


# --- AsyncToSync --------------------------------------------------------------


async def _timed_await(hop: Hop, awaitable: Any) -> Any:
    """Await the wrapped awaitable, timed; runs on the target event loop."""
    __traceback_hide__ = True
    __tracebackhide__ = True
    hop.thread_id = _get_ident()
    hop.started_ns = _now()
    hop.new_loop = asyncio.get_running_loop() is not hop.expected_loop
    try:
        return await awaitable
    finally:
        hop.ended_ns = _now()


def _timed_async(main_wrap: Callable[..., Any], hop: Hop) -> Callable[..., Any]:
    """``main_wrap`` (bound to the shadow), timed: its coroutine runs on the target loop."""

    def timed_main_wrap(*args: Any, **kwargs: Any) -> Any:
        return _timed_await(hop, main_wrap(*args, **kwargs))

    return timed_main_wrap


def _loop_asgiref_will_use(adapter: Any) -> object:
    """The running loop asgiref will schedule onto, or None for a new loop."""
    if adapter.__dict__.get("force_new_loop"):
        return None
    cached = adapter.__dict__.get("main_event_loop")  # asgiref < 3.12
    if cached is not None:
        return cached
    local = SyncToAsync.threadlocal
    if getattr(local, "main_event_loop_pid", None) == os.getpid():
        return getattr(local, "main_event_loop", None)
    return None


def _async_to_sync_call(self: Any, *args: Any, **kwargs: Any) -> Any:
    __traceback_hide__ = True
    __tracebackhide__ = True
    called_ns = _now()
    if not _active:
        return _original_a2s_call(self, *args, **kwargs)
    try:
        awaitable = self.awaitable
        hop = Hop(
            ASYNC_TO_SYNC,
            attribute(self, awaitable, _getframe(1)),
            None,
            current_hop.get(),
            current_scope.get(),
            called_ns,
        )
        hop.expected_loop = _loop_asgiref_will_use(self)
        cls = type(self)
        shadow = _new(cls)
        state = self.__dict__.copy()
        state["main_wrap"] = _timed_async(cls.main_wrap.__get__(shadow, cls), hop)
        shadow.__dict__ = state
        token = current_hop.set(hop)
    except Exception as exc:
        _errors.report("AsyncToSync.__call__", exc)
        return _original_a2s_call(self, *args, **kwargs)
    try:
        return _original_a2s_call(shadow, *args, **kwargs)
    except _CancelledError:
        hop.outcome = CANCELLED
        raise
    except BaseException:
        hop.outcome = ERROR
        raise
    finally:
        hop.resumed_ns = _now()
        hop.expected_loop = None  # do not keep a loop alive through the record
        try:
            # asgiref < 3.12 caches the loop it found on the instance.
            loop = shadow.__dict__.get("main_event_loop")
            if loop is not None and self.__dict__.get("main_event_loop") is not loop:
                self.main_event_loop = loop
            _end_hop(hop, token)
        except Exception as exc:
            _errors.report("AsyncToSync.__call__ (finish)", exc)


# --- install / uninstall ------------------------------------------------------


def install() -> None:
    """Instrument asgiref. Idempotent and thread-safe."""
    global _installed, _active, _original_s2a_call, _original_a2s_call
    with _lock:
        if _installed:
            return
        _original_s2a_call = SyncToAsync.__dict__["__call__"]
        _original_a2s_call = AsyncToSync.__dict__["__call__"]
        for patched, original in (
            (_sync_to_async_call, _original_s2a_call),
            (_async_to_sync_call, _original_a2s_call),
        ):
            patched.__wrapped__ = original  # type: ignore[union-attr]
            patched.__doc__ = original.__doc__
        SyncToAsync.__call__ = _sync_to_async_call  # type: ignore[method-assign]
        AsyncToSync.__call__ = _async_to_sync_call  # type: ignore[method-assign]
        _active = True
        _installed = True


def uninstall() -> None:
    """Put asgiref back exactly as it was. Idempotent and thread-safe."""
    global _installed, _active
    with _lock:
        if not _installed:
            return
        _active = False
        for cls, patched, original in (
            (SyncToAsync, _sync_to_async_call, _original_s2a_call),
            (AsyncToSync, _async_to_sync_call, _original_a2s_call),
        ):
            if cls.__dict__.get("__call__") is patched:
                cls.__call__ = original  # type: ignore[method-assign]
            else:
                # Someone wrapped our patch since; removing it would remove
                # theirs. Our function now passes through (_active is False).
                _errors.logger.warning(
                    "hopwatch.uninstall(): %s.__call__ was replaced by other code after"
                    " hopwatch installed; left in place, hopwatch's layer is now inert.",
                    cls.__name__,
                )
        _installed = False


def is_installed() -> bool:
    return _installed


def owns_call(cls: type) -> bool:
    """Whether ``cls.__call__`` is hopwatch's patch itself (nothing wrapped over it)."""
    return cls.__dict__.get("__call__") in (_sync_to_async_call, _async_to_sync_call)
