"""Where a Django request begins and ends: the request scope hops are counted in.

The handlers' ``__call__`` (``ASGIHandler``, ``WSGIHandler`` and the test
clients' handlers, replaced by :func:`hopwatch._django.install`) open a
:class:`~hopwatch._recorder.RequestRecord` in a contextvar before Django does
anything, so the ``request_started`` receivers and ``response.close()`` that run
outside the middleware chain are counted. An async handler closes the record
when it returns (Django has closed the response by then). A sync handler
returns the response *before* the server iterates and closes it, so the record
stays open in the calling context until ``response.close()``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from django.http import response as http_response

from hopwatch import _errors
from hopwatch._recorder import (
    Ledger,
    RequestRecord,
    close_request,
    current_scope,
    open_request,
)

INTERFACE_ASGI = "asgi"
INTERFACE_WSGI = "wsgi"
INTERFACE_TEST_CLIENT = "test-client"
INTERFACE_TEST_ASYNC_CLIENT = "test-async-client"

#: Set by ``hopwatch._django.install()``; the replaced handlers do nothing extra when off.
active = False


def finish_request(record: RequestRecord) -> None:
    """Close ``record`` (its line is written) and leave its scope. Never raises."""
    try:
        token = record.scope_token
        record.scope_token = None
        close_request(record)
        if token is not None:
            try:
                current_scope.reset(token)
            except ValueError:
                # Closed from another context than the one that opened it
                # (a server closing the response on another thread).
                if current_scope.get() is record:
                    current_scope.set(record.parent)
    except Exception as exc:
        _errors.report("closing a request record", exc)


def async_handler(original: Callable[..., Any], interface: str) -> Callable[..., Any]:
    async def __call__(self: Any, scope: Any, *args: Any, **kwargs: Any) -> Any:
        __traceback_hide__ = True
        if not active or scope.get("type") != "http":
            return await original(self, scope, *args, **kwargs)
        try:
            record, _token = open_request(interface)
            record.method = scope.get("method")
            record.path = scope.get("path")
        except Exception as exc:
            _errors.report(f"{interface} handler", exc)
            return await original(self, scope, *args, **kwargs)
        try:
            return await original(self, scope, *args, **kwargs)
        finally:
            finish_request(record)

    __call__.__wrapped__ = original  # type: ignore[attr-defined]
    return __call__


# Sync handlers whose response has not been closed yet: id(response) ->
# (weak reference to the response, its record). Closed by the patched
# HttpResponseBase.close(), or when the response is garbage collected unclosed.
_awaiting_close: dict[int, tuple[weakref.ref[Any], RequestRecord]] = {}


def _close_stale_scope() -> None:
    """Clean up after a previous sync request in this context (a WSGI server thread).

    Its response was never closed (finish it now), or it was closed from
    another context, which could not reset this one (drop it, so it is not
    kept alive or taken for the next request's parent).
    """
    stale = current_scope.get()
    if stale is not None and stale.closed:
        parent = stale.parent
        while parent is not None and parent.closed:
            parent = parent.parent
        current_scope.set(parent)
        return
    if isinstance(stale, RequestRecord) and stale.extra.get("awaiting_close"):
        for key, (_ref, record) in list(_awaiting_close.items()):
            if record is stale:
                _awaiting_close.pop(key, None)
        stale.extra["response_closed"] = False
        finish_request(stale)


def sync_handler(original: Callable[..., Any], interface: str) -> Callable[..., Any]:
    def __call__(self: Any, environ: Any, *args: Any, **kwargs: Any) -> Any:
        __traceback_hide__ = True
        if not active:
            return original(self, environ, *args, **kwargs)
        try:
            _close_stale_scope()
            record, _token = open_request(interface)
            record.method = environ.get("REQUEST_METHOD")
            record.path = environ.get("PATH_INFO")
        except Exception as exc:
            _errors.report(f"{interface} handler", exc)
            return original(self, environ, *args, **kwargs)
        try:
            response = original(self, environ, *args, **kwargs)
        except BaseException:
            finish_request(record)
            raise
        try:
            if isinstance(response, http_response.HttpResponseBase) and not getattr(
                response, "closed", False
            ):
                # The server closes it later (after sending the body): stay
                # open in this context until then.
                record.extra["awaiting_close"] = True
                key = id(response)

                def collected(_ref: Any, key: int = key, record: RequestRecord = record) -> None:
                    if _awaiting_close.get(key, (None, None))[1] is record:
                        _awaiting_close.pop(key, None)
                        record.extra["response_closed"] = False
                        finish_request(record)

                _awaiting_close[key] = (weakref.ref(response, collected), record)
            else:
                finish_request(record)
        except Exception as exc:
            _errors.report(f"{interface} handler", exc)
            finish_request(record)
        return response

    __call__.__wrapped__ = original  # type: ignore[attr-defined]
    return __call__


def patched_close(original: Callable[..., Any]) -> Callable[..., Any]:
    def close(self: Any) -> Any:
        try:
            return original(self)
        finally:
            if _awaiting_close:
                entry = _awaiting_close.pop(id(self), None)
                if entry is not None and entry[0]() is self:
                    entry[1].extra.pop("awaiting_close", None)
                    finish_request(entry[1])

    close.__wrapped__ = original  # type: ignore[attr-defined]
    close.__doc__ = original.__doc__
    return close


def current_request() -> RequestRecord | None:
    """The request record of the current context, if any."""
    scope: Ledger | None = current_scope.get()
    while scope is not None and not isinstance(scope, RequestRecord):
        scope = scope.parent
    return scope
