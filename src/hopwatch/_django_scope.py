"""Where a Django request begins and ends: the request scope hops are counted in.

The handlers' ``__call__`` (``ASGIHandler``, ``WSGIHandler`` and the test
clients' handlers, replaced by :func:`hopwatch._django.install`) open a
:class:`~hopwatch._recorder.RequestRecord` in a contextvar before Django does
anything, so the ``request_started`` receivers and ``response.close()`` that run
outside the middleware chain are counted. An async handler closes the record
when it returns (Django has closed the response by then). A sync handler
returns the response *before* the server iterates and closes it, so the record
stays open until ``response.close()``, but leaves the calling context's scope
when the handler returns: what runs there next (the server's own code, another
request, a test's) is not the request's. What the server does with the
response is taken in the request's scope again: each step of a streaming
response's iteration (:func:`_read_steps_in_scope`), the iteration of an async
iterator's content, which Django's ``StreamingHttpResponse.__iter__`` consumes
at once in one ``async_to_sync`` (:func:`patched_iter`), and ``close()``
(:func:`patched_close`).

The test clients' handlers return a streaming response unread, and the test
reads it (or not) whenever it likes; Django's wrapper closes the response when
the content runs out. Their records wait for that close too, and the test's
reading is taken in the request's scope the same way, while the test's own
code stays outside it.
"""

from __future__ import annotations

import functools
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from types import MethodType
from typing import Any

from asgiref.sync import AsyncToSync, SyncToAsync, markcoroutinefunction
from django.http import response as http_response

from hopwatch import _errors
from hopwatch._hotpath import Hop, around, scope_value, start_request, steps_in_scope, then
from hopwatch._hotpath import enter_scope as _enter_scope
from hopwatch._hotpath_py import REQUEST_ID_OK
from hopwatch._recorder import (
    Ledger,
    RequestRecord,
    close_request,
    current_ledger,
    current_scope,
    find_scope,
    hand_over,
    handed_over,
    unscoped,
    value_outside,
)
from hopwatch.conf import hopwatch_settings, meta_key, request_id_meta_key

INTERFACE_ASGI = "asgi"
INTERFACE_WSGI = "wsgi"
INTERFACE_TEST_CLIENT = "test-client"
INTERFACE_TEST_ASYNC_CLIENT = "test-async-client"

#: Set by ``hopwatch._django.install()``; the replaced handlers do nothing extra when off.
active = False

_HttpResponseBase = http_response.HttpResponseBase
_partial = functools.partial


def finish_request(record: RequestRecord, _scope: Any = None, _result: Any = None) -> None:
    """Close ``record`` (its line is written) and leave its scope. Never raises.
    (An async handler's ``then`` calls it with the ASGI scope and the result too.)"""
    try:
        if _scope is not None and not record.request_id:
            # The middleware never saw it (RequestAborted before the chain): the
            # id from the ASGI scope's header, as the middleware would have read it.
            record.request_id = _scope_request_id(_scope)
        if on_request_context and handed_over() is record:
            # Never in scope: no line of its own (the middleware's record, if
            # it opened one, is the request's).
            _handover_failed()
            return
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
                    current_scope.set(value_outside(record))
    except Exception as exc:
        _errors.report("closing a request record", exc)


def _scope_request_id(scope: Any) -> str:
    """``REQUEST_ID_HEADER``'s value in an ASGI ``scope``'s headers when it is a
    usable id, read as the middleware reads it from ``request.META``: the header
    Django files under the setting's key (``conf.request_id_meta_key``), else ""."""
    key = request_id_meta_key(hopwatch_settings.REQUEST_ID_HEADER or "")
    if key is None:
        return ""
    # Repeated, Django joins the values with "," (no usable id then).
    headers = scope.get("headers") or ()
    values = [bytes(raw).decode("latin-1") for name, raw in headers if _meta_key_of(name) == key]
    value = ",".join(values)
    return value if REQUEST_ID_OK.fullmatch(value) else ""


def _meta_key_of(name: Any) -> str:
    """The ``request.META`` key Django's ASGIRequest files an ASGI header ``name``
    under (``django.core.handlers.asgi.ASGIRequest.__init__``), or "" for one it
    ignores: since 5.2.13 and 6.0.4 (CVE-2026-3902), a name with an underscore."""
    text = bytes(name).decode("latin-1")
    if "_" in text:
        return ""
    if text in ("content-length", "content-type"):
        return text.upper().replace("-", "_")
    return meta_key(text)


#: An async handler's request begins: its record, opened in the handler's context
#: (``_handler_started(interface, scope)``; ``_hotpath.start_request``, in C when it
#: is built). None, the error reported, if that failed.
_handler_started = functools.partial(start_request, current_scope, RequestRecord)
#: The same record, entered nowhere (Django's ThreadSensitiveContext takes it).
_record_started = functools.partial(start_request, None, RequestRecord)


_thread_sensitive_context = SyncToAsync.thread_sensitive_context

#: Whether Django's ASGIHandler requests ride on its ThreadSensitiveContext
#: (RequestContext); set by hopwatch._django.install when Django's handler module
#: uses asgiref's, turned off for good if a hand-over is ever not taken.
on_request_context = False


def _asgi_started(interface: str, scope: Any) -> RequestRecord | None:
    """Django's ASGIHandler: a request begins. Its record rides on the
    ThreadSensitiveContext Django enters for it (a RequestContext, made in the
    coroutine step that follows at once), not on hopwatch's variable: asgiref
    3.13 passes over every variable of the context in Python on both sides of
    every crossing. Where a scope or a ThreadSensitiveContext is current already
    (a hopwatch.testing block, a server's or an enclosing request's), Django's
    would not be entered, and the record goes in hopwatch's variable, as for the
    other handlers.

    A server calls the application afresh for each request, so another request's
    record current here, not through a crossing, is not an enclosing scope: this
    task inherited that request's context. (uvicorn resumes reading a connection
    from inside the request that read a large body; the reader callback asyncio
    makes then keeps a copy of that request's context, and the connection's next
    request is started from it.) This request then begins at the top, or its
    crossings would be counted in that request's line too. (Begun inside the server's
    ``receive`` or ``send``, it finds ``unscoped`` here: :func:`_outside_requests`.)"""
    if (
        not on_request_context
        or current_scope.get() is not None
        or _thread_sensitive_context.get(None) is not None
    ):
        inherited = scope_value(current_scope)
        if inherited is not unscoped and (
            type(inherited) is Hop or not isinstance(inherited, RequestRecord)
        ):
            return _handler_started(interface, scope)  # type: ignore[no-any-return]
        record: RequestRecord | None = _record_started(interface, scope)
        if record is not None:
            record.scope_token = current_scope.set(record)
        return record
    record = _record_started(interface, scope)
    if record is not None:
        hand_over(record)
    return record


def _handover_failed() -> None:
    """Django's handler made no ThreadSensitiveContext in the step after the record
    was handed over (a Django version that does it later, or not at all): the
    crossings outside the middleware chain went uncounted. Say so and use hopwatch's
    variable from now on."""
    global on_request_context
    hand_over(None)
    on_request_context = False
    _errors.report(
        "ASGI handler",
        RuntimeError(
            "Django's ASGIHandler did not enter its ThreadSensitiveContext when hopwatch"
            " expected it: this request's crossings outside the middleware chain were not"
            " counted; hopwatch keeps ASGI requests in a context variable of its own from"
            " now on"
        ),
    )


def async_handler(original: Callable[..., Any], interface: str) -> Callable[..., Any]:
    # Not a coroutine function: the handler's own coroutine, given back in
    # _hotpath.then, which opens the record when it is first driven (in the
    # awaiting task's context, as the coroutine's body would) and finishes it
    # when it has ended. In C that adds no frame to the awaiting chain (from
    # Django 6.1 on, the middleware chain runs in the handler's own task).
    def __call__(self: Any, scope: Any, *args: Any, **kwargs: Any) -> Any:
        if not active or scope.get("type") != "http":
            return original(self, scope, *args, **kwargs)
        if server_calls:
            if len(args) == 2:
                args = (_outside_requests(args[0]), _outside_requests(args[1]))
            elif "receive" in kwargs and "send" in kwargs:  # Daphne names them
                kwargs["receive"] = _outside_requests(kwargs["receive"])
                kwargs["send"] = _outside_requests(kwargs["send"])
        awaitable = original(self, scope, *args, **kwargs)
        try:
            return then(awaitable, finish, interface, scope, started)
        except Exception as exc:
            # then's wrapper not made (memory exhausted): the handler's own coroutine,
            # as without hopwatch; no record was opened (``started`` runs when it is
            # first driven), so this request has no line. (No cost when it is made.)
            _errors.report("ASGI handler", exc)
            return awaitable

    # Only Django's ASGIHandler enters a ThreadSensitiveContext for each request
    # itself; the async test client's handler does not, and must not get one.
    started = _asgi_started if interface == INTERFACE_ASGI else _handler_started
    # A server's receive and send run outside the request (a test client's are
    # the test's own: no task is started from them).
    server_calls = interface == INTERFACE_ASGI
    # The ASGIHandler has sent and closed the response when it returns; the
    # AsyncClient's handler returns a streaming response unread.
    finish = finish_request if interface == INTERFACE_ASGI else finish_unless_streaming

    handler = _coroutine_function(__call__, original) if sys.version_info < (3, 12) else __call__
    handler.__wrapped__ = original  # type: ignore[attr-defined]
    return markcoroutinefunction(handler)


async def _outside(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The server's ``receive`` or ``send`` (``call``), awaited with hopwatch's
    variable set to ``unscoped`` (hops outside any request) until it returns.
    What a server starts from inside them copies the request's context: uvicorn
    resumes reading a connection from ``receive`` (asyncio's reader callback keeps
    a copy of the context) and starts a pipelined request from ``send``; that
    request's task inherits Django's ThreadSensitiveContext and the record on it.
    A request of another app the server serves (FastAPI with Django mounted under
    it, a hand-written ASGI router) made its crossings there and they were counted
    in the Django request's line; they are now outside any request, as elsewhere.
    The server's own code and an outer ASGI middleware's around these calls are
    not the request's either. Per request: two bound methods (the least the
    collector can be left with: Django's own cycles hold them under ASGI); per
    call: a coroutine, a set and a reset."""
    __traceback_hide__ = True  # Django's debug page leaves this frame out
    token = current_scope.set(unscoped)
    try:
        return await call(*args, **kwargs)
    finally:
        try:
            current_scope.reset(token)
        except ValueError:  # closed by the collector in another context: not ours
            pass


def _outside_requests(call: Callable[..., Any]) -> Callable[..., Any]:
    """The server's ``call`` awaited by :func:`_outside` (a bound method: one object,
    no closure, its cell and its tuple)."""
    return MethodType(_outside, call)


def _coroutine_function(plain: Callable[..., Any], original: Any) -> Callable[..., Any]:
    """``plain`` as an ``async def``, named as ``original`` (its coroutines too).
    Before 3.12 asgiref's mark satisfies asyncio.iscoroutinefunction only, and
    servers that ask inspect's (Hypercorn) took the handler for a WSGI app: every
    request failed. Only a coroutine function's own code satisfies it there: one
    frame more per request."""

    async def __call__(self: Any, scope: Any, *args: Any, **kwargs: Any) -> Any:
        return await plain(self, scope, *args, **kwargs)

    __call__.__name__, __call__.__qualname__ = original.__name__, original.__qualname__
    return __call__


# Sync handlers whose response has not been closed yet: id(response) -> a list of
# (weak reference to the response, its record), one per request that returned that
# very object (a view may return one shared response to several requests). Closed
# by the patched HttpResponseBase.close(), or when the response is collected unclosed.
_awaiting_close: dict[int, list[tuple[weakref.ref[Any], RequestRecord]]] = {}


def _forget(record: RequestRecord) -> None:
    for key, entries in list(_awaiting_close.items()):
        kept = [entry for entry in entries if entry[1] is not record]
        if len(kept) != len(entries):
            if kept:
                _awaiting_close[key] = kept
            else:
                _awaiting_close.pop(key, None)


def _drop_closed_scope() -> None:
    """A closed scope left current in this context (one finished where its token
    could not be reset): drop it, back to the first open one outside it, so it is
    not kept alive or taken for the next request's parent."""
    stale = current_scope.get()
    if isinstance(stale, Ledger) and stale.closed:
        outside = value_outside(stale)
        while isinstance(outside, Ledger) and outside.closed:
            outside = value_outside(outside)
        current_scope.set(outside)


class _Waiting(weakref.ref):  # type: ignore[type-arg]
    """The weak reference to a response a request waits for: it keeps the response's
    ``id`` (its key in ``_awaiting_close``) for :func:`_collected`, one callback for
    every request (no function made per request)."""

    __slots__ = ("key",)
    key: int


def _collected(ref: _Waiting) -> None:
    """A response was collected unclosed: finish the requests that waited for it."""
    # Only entries whose reference this is: the id may be reused by now.
    key = ref.key
    entries = _awaiting_close.pop(key, [])
    kept = [entry for entry in entries if entry[0] is not ref]
    if kept:
        _awaiting_close[key] = kept
    for entry in entries:
        if entry[0] is ref:
            entry[1].notes()["response_closed"] = False
            finish_request(entry[1])


def _await_close(response: Any, record: RequestRecord) -> None:
    """Keep ``record`` open until ``response`` is closed (or collected unclosed).
    (``sync_handler`` does the same inline.)"""
    ref = _Waiting(response, _collected)
    ref.key = key = id(response)
    _awaiting_close.setdefault(key, []).append((ref, record))


def _spied_file_wrapper(
    server_wrapper: Any, wrapped: list[Any], filelike: Any, *args: Any, **kwargs: Any
) -> Any:
    """The server's ``wsgi.file_wrapper`` as ``sync_handler`` lends it to Django for
    one call (a ``functools.partial`` of this): the response whose file it wraps is
    noted in ``wrapped``."""
    # Django set filelike.close = response.close before calling this
    wrapped.append(getattr(getattr(filelike, "close", None), "__self__", None))
    return server_wrapper(filelike, *args, **kwargs)


def _read_steps_in_scope(iterator: Iterator[Any], record: RequestRecord) -> Iterator[Any]:
    """A streaming response's content as the server or the test reads it: each step
    taken with its request's record as the scope, so the hops its iterator makes,
    and the response's close at the end where the reader's wrapper closes it (Django's
    test client does when the content runs out), are the request's. Between steps
    the reader's own code runs in its own scope. (``_hotpath.steps_in_scope``: in C,
    the variable set and reset around each step without a Python frame.) Under a
    WSGI server, content that raises at its first step is the server's 500
    (:func:`_failed_before_sending`)."""
    if record.interface == INTERFACE_WSGI:
        return steps_in_scope(current_scope, iterator, record, _failed_before_sending)  # type: ignore[no-any-return]
    return steps_in_scope(current_scope, iterator, record)  # type: ignore[no-any-return]


#: What a PEP 3333 server answers when the response's content raises before anything
#: of the body was sent: it sends the headers with the first chunk only, so it can
#: still answer an error of its own (gunicorn, waitress and wsgiref, runserver's,
#: all send "500 Internal Server Error").
SERVER_ERROR_STATUS = 500


def _failed_before_sending(record: RequestRecord) -> None:
    """A WSGI response's content raised before its first chunk (or, an async
    iterator's, anywhere: Django reads it all before the server gets the first):
    the client got the server's 500, not the response's status."""
    record.status = SERVER_ERROR_STATUS


class _AsyncReadInScope:
    """:func:`_read_steps_in_scope` for an async iterator (``async for`` in the test,
    the AsyncClient's ``finish_unless_streaming``). A sync reader (a WSGI server, the
    test ``Client``) reads it through Django's ``StreamingHttpResponse.__iter__``, in
    one ``async_to_sync`` that :func:`patched_iter` makes in the request's scope: there
    the step runs inside that crossing, the scope is already the request's (its hop),
    and is left alone, or the crossings the step makes would be the request's
    outermost, not nested in the one they run in."""

    __slots__ = ("_iterator", "_record")

    def __init__(self, content: Any, record: RequestRecord) -> None:
        self._iterator = aiter(content)
        self._record = record

    def __aiter__(self) -> _AsyncReadInScope:
        return self

    async def __anext__(self) -> Any:
        record = self._record
        value = current_scope.get()
        try:
            if value is record or (type(value) is Hop and value.scope is record):
                return await anext(self._iterator)
            token = current_scope.set(record)
            try:
                return await anext(self._iterator)
            finally:
                current_scope.reset(token)
        except StopAsyncIteration:
            raise
        except Exception:
            # Under a WSGI server Django's __iter__ reads the whole content before
            # the server gets its first chunk: any error is before it.
            if record.interface == INTERFACE_WSGI:
                _failed_before_sending(record)
            raise


def _read_in_scope(response: Any, record: RequestRecord) -> None:
    """A streaming response a sync handler or a test client returned: its content
    read in ``record``'s scope. Django's iterator (``_iterator``, what
    ``streaming_content`` maps to bytes) is wrapped where it is there, so the
    reading maps each chunk once and a ``FileResponse`` keeps its file; else the
    public ``streaming_content``. Never raises (an error is reported; the content
    is then read as it was)."""
    try:
        if not getattr(response, "streaming", False):
            return
        iterator = response.__dict__.get("_iterator")
        if iterator is None:
            content = response.streaming_content  # what the reader would get, as bytes
            if response.is_async:
                response.streaming_content = _AsyncReadInScope(content, record)
            else:
                response.streaming_content = _read_steps_in_scope(iter(content), record)
        elif response.is_async:
            response._iterator = _AsyncReadInScope(iterator, record)
        else:
            response._iterator = _read_steps_in_scope(iterator, record)
    except Exception as exc:
        _errors.report(f"{record.interface} handler (streaming content)", exc)


def finish_unless_streaming(
    record: RequestRecord, _scope: Any = None, response: Any = None
) -> None:
    """The AsyncClient's handler returned ``response``. Closed (Django's test client
    closes every other response before returning): the request is finished. A
    streaming one is not read yet: the record leaves the test's scope and waits
    for the response's close, its content read in the request's scope. Never raises."""
    if (
        not isinstance(response, http_response.HttpResponseBase)
        or not response.streaming
        or getattr(response, "closed", False)
    ):
        finish_request(record)
        return
    try:
        _await_close(response, record)
    except Exception as exc:
        _errors.report(f"{INTERFACE_TEST_ASYNC_CLIENT} handler", exc)
        _forget(record)
        finish_request(record)
        return
    _read_in_scope(response, record)
    token = record.scope_token
    record.scope_token = None
    try:
        if token is not None:
            current_scope.reset(token)
    except ValueError:  # left in another context than it was entered in
        if current_scope.get() is record:
            current_scope.set(value_outside(record))
    except Exception as exc:
        _errors.report(f"{INTERFACE_TEST_ASYNC_CLIENT} handler", exc)


def sync_handler(original: Callable[..., Any], interface: str) -> Callable[..., Any]:
    # The response is returned to the caller (a server, a test), which reads it
    # later: the caller's own code must not run in the request's scope, its reading
    # and closing of the response does. The request is over when its response is
    # closed (on any thread), or collected unclosed; never by another request: a
    # single-threaded event-loop server (bjoern, meinheld) calls the application
    # for its other connections' requests before it closes this one's response,
    # and a test may read a stream much later, between other requests.

    def __call__(self: Any, environ: Any, *args: Any, **kwargs: Any) -> Any:
        __traceback_hide__ = True
        if not active:
            return original(self, environ, *args, **kwargs)
        try:
            if current_scope.get() is not None:
                _drop_closed_scope()
            # (_recorder.open_request, inline)
            record = RequestRecord(interface)
            record.scope_token = token = _enter_scope(current_scope, record)
            record.method = environ.get("REQUEST_METHOD")
            record.path = environ.get("PATH_INFO")
        except Exception as exc:
            _errors.report(f"{interface} handler", exc)
            return original(self, environ, *args, **kwargs)
        # The handler called; what it returned, and the HttpResponse to wait for.
        # With ``wsgi.file_wrapper`` (a ``FileResponse`` under a server that offers
        # it) Django returns the server's wrapper around the file, not the response;
        # the response's ``close`` is then the file's, and the server calls it after
        # sending the body. The wrapper is seen on its way in, for this call only.
        try:
            server_wrapper = environ.get("wsgi.file_wrapper") if isinstance(environ, dict) else None
            if server_wrapper is None:
                result = original(self, environ, *args, **kwargs)
                response = result if isinstance(result, _HttpResponseBase) else None
            else:
                wrapped: list[Any] = []
                environ["wsgi.file_wrapper"] = _partial(
                    _spied_file_wrapper, server_wrapper, wrapped
                )
                try:
                    result = original(self, environ, *args, **kwargs)
                finally:
                    environ["wsgi.file_wrapper"] = server_wrapper
                if isinstance(result, _HttpResponseBase):
                    response = result
                else:
                    owner = wrapped[-1] if wrapped else None
                    response = owner if isinstance(owner, _HttpResponseBase) else None
        except BaseException:
            finish_request(record)
            raise
        try:
            if response is not None and record.status is None:
                # A response made outside the middleware chain (runserver's
                # static files: StaticFilesHandler serves them before it).
                record.status = response.status_code
            if response is not None and not getattr(response, "closed", False):
                # The server closes it later (after sending the body): stay open
                # until then, but out of this context's scope (what runs here
                # next is not the request's); its iteration and close are taken
                # in the request's scope (_read_in_scope, patched_iter, patched_close).
                # (_await_close, inline)
                ref = _Waiting(response, _collected)
                ref.key = key = id(response)
                _awaiting_close.setdefault(key, []).append((ref, record))
                record.scope_token = None
                current_scope.reset(token)
                if result is response and response.streaming:  # not a file wrapper
                    _read_in_scope(response, record)
            else:
                finish_request(record)
        except Exception as exc:
            _errors.report(f"{interface} handler", exc)
            finish_request(record)
        return result

    __call__.__wrapped__ = original  # type: ignore[attr-defined]
    return __call__


def _wrapper_codes() -> tuple[Any, Any]:
    """The code of Django's exception-to-response wrapper around a middleware
    (what ``convert_exception_to_response`` makes): async, sync."""
    from django.core.handlers.exception import convert_exception_to_response

    async def async_next(request: Any) -> None:
        return None

    def sync_next(request: Any) -> None:
        return None

    return (
        convert_exception_to_response(async_next).__code__,
        convert_exception_to_response(sync_next).__code__,
    )


def patched_load_middleware(original: Callable[..., Any]) -> Callable[..., Any]:
    """``BaseHandler.load_middleware``, then hopwatch's middleware at the top of the
    chain without Django's wrapper around it (see :func:`without_wrapper`)."""

    def load_middleware(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        if active:
            try:
                self._middleware_chain = chain = without_wrapper(self._middleware_chain)
                is_async = args[0] if args else kwargs.get("is_async", False)
                if is_async and _answered_above(chain):
                    own = type(self).get_response_async.__get__(self)  # loaded again: not twice
                    self.get_response_async = _partial(_get_response_async, own)
            except Exception as exc:
                _errors.report("loading the middleware", exc)
        return result

    load_middleware.__wrapped__ = original  # type: ignore[attr-defined]
    load_middleware.__doc__ = original.__doc__
    return load_middleware


def _answered_above(chain: Any) -> bool:
    """Whether middleware above hopwatch's may answer a request without it (the
    hopwatch.W002 configuration): hopwatch's middleware is in MIDDLEWARE, but another
    (not OpenTelemetry's, which calls the next one always) is the top of ``chain``."""
    from django.conf import settings

    from hopwatch.checks import MIDDLEWARE_PATH, OTEL_MIDDLEWARE_PATH
    from hopwatch.middleware import HopwatchMiddleware

    if MIDDLEWARE_PATH not in (getattr(settings, "MIDDLEWARE", None) or ()):
        return False
    top = _unwrapped(chain)
    if type(top) is not HopwatchMiddleware and _path_of(top) == OTEL_MIDDLEWARE_PATH:
        top = _unwrapped(getattr(top, "get_response", None))
    return type(top) is not HopwatchMiddleware


def _unwrapped(link: Any) -> Any:
    """A link of a middleware chain without Django's wrappers around it (the
    exception-to-response one, and asgiref's adapters to the chain's mode)."""
    for _ in range(8):
        inner = getattr(link, "__wrapped__", None)
        if inner is None and isinstance(link, AsyncToSync):
            inner = link.awaitable
        elif inner is None and isinstance(link, SyncToAsync):
            inner = link.func
        if inner is None:
            break
        link = inner
    return link


def _path_of(middleware: Any) -> str:
    kind = type(middleware)
    return f"{kind.__module__}.{kind.__qualname__}"


def _get_response_async(original: Callable[..., Any], request: Any) -> Any:
    """An async handler's ``get_response_async`` where middleware above hopwatch's
    may answer without it (:func:`_answered_above`; set on the handler for that
    configuration only): the status of the response the chain returns is the
    request's when hopwatch's middleware did not name one, as a sync handler reads
    it (``sync_handler``). ``_hotpath.then``: in C no frame of hopwatch's in the
    request's awaiting chain."""
    if not active:
        return original(request)
    return then(original(request), _note_status, None, None, _request_of)


def _request_of(_a: Any, _b: Any) -> RequestRecord | None:
    return find_scope(RequestRecord)


def _note_status(record: RequestRecord, _b: Any, response: Any) -> None:
    if record.status is None and isinstance(response, _HttpResponseBase):
        record.status = response.status_code


def without_wrapper(chain: Any) -> Any:
    """``chain`` (a handler's middleware chain), or, where its top is Django's
    exception-to-response wrapper around hopwatch's middleware (first in
    MIDDLEWARE), the middleware itself.

    The wrapper turns an exception out of its middleware into a response. Below
    hopwatch's middleware every middleware and the view have a wrapper of their
    own, so the chain it calls gives back a response, never an exception, and
    hopwatch's middleware raises none of its own (an error of hopwatch's is
    reported, never raised): the wrapper has nothing to convert. Left in place,
    it is one more coroutine frame in the request's awaiting chain, which Python
    passes through twice on every crossing (suspended, resumed): about 6,500
    instructions on a request of startproject's middleware (callgrind, paired;
    docs/performance-history.md, 2026-12-04, late morning).
    """
    from hopwatch.middleware import HopwatchMiddleware

    inner = getattr(chain, "__wrapped__", None)
    if type(inner) is HopwatchMiddleware and getattr(chain, "__code__", None) in _wrapper_codes():
        return inner
    return chain


def _waiting_entry(response: Any) -> tuple[weakref.ref[Any], RequestRecord] | None:
    """The entry of the request whose record waits for ``response``'s close, if any.

    One response object returned to several requests is closed once per request,
    each time by the server thread that sent it: the request whose scope is
    current, else the one that thread's handler returned it to, else the oldest.
    """
    entries = _awaiting_close.get(id(response))
    if not entries:
        return None
    if len(entries) == 1:
        return entries[0] if entries[0][0]() is response else None
    live = [entry for entry in entries if entry[0]() is response]
    if not live:
        return None
    current = current_ledger()
    thread = threading.get_ident()
    return (
        next((entry for entry in live if entry[1] is current), None)
        or next((entry for entry in live if entry[1].handler_thread_id == thread), None)
        or live[0]
    )


def _take(response: Any, entry: tuple[weakref.ref[Any], RequestRecord]) -> None:
    """``entry`` no longer waits for ``response``'s close."""
    key = id(response)
    entries = _awaiting_close.pop(key, None)
    if entries is None or (len(entries) == 1 and entries[0] is entry):
        return
    remaining = [other for other in entries if other is not entry]
    if remaining:
        _awaiting_close[key] = remaining


def patched_close(original: Callable[..., Any]) -> Callable[..., Any]:
    def close(self: Any) -> Any:
        # A response a sync handler returned: closed in its request's scope.
        if not _awaiting_close:  # no request waits (under ASGI, none ever does)
            return original(self)
        # (_waiting_entry's usual case inline: one request waits for this response)
        entries = _awaiting_close.get(id(self))
        if not entries:
            return original(self)
        entry = entries[0]
        if len(entries) != 1 or entry[0]() is not self:
            found = _waiting_entry(self)
            if found is None:
                return original(self)
            entry = found
        token = current_scope.set(entry[1])
        try:
            return original(self)
        finally:
            current_scope.reset(token)
            _closed(self, entry)

    close.__wrapped__ = original  # type: ignore[attr-defined]
    close.__doc__ = original.__doc__
    return close


def _closed(response: Any, entry: tuple[weakref.ref[Any], RequestRecord]) -> None:
    """``response`` was closed: finish the request of ``entry``, which waited for it."""
    # (_take, inline)
    key = id(response)
    entries = _awaiting_close.pop(key, None)
    if entries is not None and (len(entries) != 1 or entries[0] is not entry):
        remaining = [other for other in entries if other is not entry]
        if remaining:
            _awaiting_close[key] = remaining
    record = entry[1]
    if record.scope_token is not None:
        finish_request(record)
        return
    # finish_request with nothing of its to do but close the record: a sync
    # handler's record left its scope when the handler returned (no token), and
    # no record that waits for a close was ever handed over (an ASGIHandler's).
    try:
        close_request(record)
    except Exception as exc:
        _errors.report("closing a request record", exc)


def _iter_begin(response: Any) -> Any:
    """Before ``StreamingHttpResponse.__iter__``: None (nothing to do) unless the
    response streams an async iterator and its request waits for its close; then
    the request's scope is entered: (its entry, the token)."""
    if not _awaiting_close or not getattr(response, "is_async", False):
        return None
    entry = _waiting_entry(response)
    if entry is None:
        return None
    _take(response, entry)  # a close inside the hop leaves the request open
    return entry, current_scope.set(entry[1])


def _iter_end(response: Any, state: Any) -> None:
    """After it (returned or raised): the scope left; the request finished if the
    response was closed inside (the test Client's wrapper), else waiting again."""
    entry, token = state
    try:
        current_scope.reset(token)
        if getattr(response, "closed", False):
            _closed(response, entry)
        else:
            _awaiting_close.setdefault(id(response), []).append(entry)
    except Exception as exc:
        _errors.report("StreamingHttpResponse.__iter__", exc)


def patched_iter(original: Callable[..., Any]) -> Callable[..., Any]:
    """``StreamingHttpResponse.__iter__``: a sync reader (a WSGI server, the test
    ``Client``'s test) of an async iterator's content. Django consumes it here, at
    once, in one ``async_to_sync``: that hop, and the iterator's own, are the
    request's. The test Client's wrapper closes the response when the content runs
    out, inside that hop: the request is finished when the hop has ended (else the
    hop would end after its request, counted as late). ``_hotpath.around``: in C
    there is no frame of hopwatch's between Django's ``__iter__`` and its caller,
    so Django's warning about an async iterator (``stacklevel=2``) names the
    caller's line, as without hopwatch."""
    return around(_iter_begin, original, _iter_end)  # type: ignore[no-any-return]


def current_request() -> RequestRecord | None:
    """The request record of the current context, if any."""
    return find_scope(RequestRecord)
