"""What caused a Django hop: the attribution rules for the crossings Django makes.

Registered once by :func:`hopwatch._django.install` (see ``_causes`` for how
rules are looked up): middleware adaptation (a tag set in
``BaseHandler.adapt_method_mode``, whose patch is here), ``MiddlewareMixin``
hooks, views, async ORM methods, signals, ``response.close()``/``render()``,
streaming, exception handling. Also how causes name a middleware and a view.
"""

from __future__ import annotations

import ast
import functools
import inspect
import os
import sys
import textwrap
import types
from collections.abc import Callable
from types import CodeType, FrameType, MethodType
from typing import Any

import django
from asgiref.sync import AsyncToSync, SyncToAsync
from django.core.handlers import base as handlers_base
from django.core.handlers.exception import response_for_exception
from django.dispatch import Signal
from django.http import response as http_response
from django.template.response import SimpleTemplateResponse
from django.utils.deprecation import MiddlewareMixin
from django.utils.log import log_response

from hopwatch import _causes, _errors
from hopwatch._django_names import named_by_instance, names_of, view_class_path, view_name
from hopwatch._recorder import Cause, intern_cause

# --- naming -----------------------------------------------------------------


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def middleware_site(instance: Any) -> str:
    """How causes name a middleware: its class path or, for a function-based
    middleware (the closure its factory returned), the factory's dotted path."""
    if isinstance(instance, types.FunctionType):
        return f"{instance.__module__}.{instance.__qualname__.split('.<locals>', 1)[0]}"
    return class_path(type(instance))


def view_path(view: Any) -> str:
    """A view's dotted path, as the request's line names its view
    (``_django_names``: Django's ``ResolverMatch._func_path`` rule, a partial
    named after the function it calls); else its own dotted path."""
    name = view_name(view)
    if name is not None:
        return name
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        return view_class_path(view_class)
    if not hasattr(view, "__name__"):
        return class_path(type(view))
    return f"{view.__module__}.{getattr(view, '__qualname__', view.__name__)}"


_SIGNAL_SHORT_NAMES = (
    "django.core.signals",
    "django.db.models.signals",
    "django.db.backends.signals",
    "django.test.signals",
)
# Signals are long-lived module globals; keep a strong reference with the name
# so an id can never be reused by another object while cached.
_signal_causes: dict[int, tuple[Signal, Cause]] = {}


def _signal_name(signal: Signal) -> str:
    fallback = None
    for module_name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for attr, value in list(namespace.items()):
            if value is signal:
                if module_name in _SIGNAL_SHORT_NAMES:
                    return str(attr)
                dotted = f"{module_name}.{attr}"
                if module_name.rsplit(".", 1)[-1] == "signals":
                    return dotted
                fallback = fallback or dotted
    return fallback or "unnamed signal"


def signal_cause(signal: object) -> Cause | None:
    if not isinstance(signal, Signal):
        return None
    entry = _signal_causes.get(id(signal))
    if entry is None or entry[0] is not signal:
        entry = (signal, intern_cause("signal", _signal_name(signal)))
        if len(_signal_causes) > 10_000:
            _signal_causes.clear()
        _signal_causes[id(signal)] = entry
    return entry[1]


# --- rules --------------------------------------------------------------------


@_causes.per_instance  # which Signal: the instance, not the code
def _signal_bound_rule(target: object, frame: FrameType | None) -> Cause | None:
    # async_to_sync(signal.asend), sync_to_async(signal.send) in user code
    return signal_cause(getattr(target, "__self__", None))


def _signal_closure_rule(code: CodeType) -> _causes.Rule | None:
    """The rule for hops running ``code``, a function nested in a ``Signal``
    method that closes over the signal (Django 5's ``Signal.asend`` wraps its sync
    receivers in a local ``sync_send``, ``Signal.send`` its async ones in a local
    ``asend``): the signal is the closure's ``self``, its cell found once here."""
    if "self" not in code.co_freevars:
        return None
    cell = code.co_freevars.index("self")

    @_causes.per_instance
    def rule(target: object, frame: FrameType | None) -> Cause | None:
        closure = getattr(target, "__closure__", None)
        return signal_cause(closure[cell].cell_contents) if closure else None

    return rule


def _response_method_rule(verb: str, base: type) -> _causes.Rule:
    """A response's ``verb`` (a method Django calls on the response it got, under ASGI
    through ``sync_to_async``), whichever class's code it runs: ``<its class>.<verb>``
    when the method is bound to a ``base``. (The answer depends on the instance's class
    only, which the hop path's cache key holds for a bound method.)"""

    def rule(target: object, frame: FrameType | None) -> Cause | None:
        owner = getattr(target, "__self__", None)
        if not isinstance(owner, base):
            return None  # a function of that name, or another object's: not this rule
        return intern_cause("response", f"{type(owner).__name__}.{verb}")

    return rule


#: What the handler's view-calling methods call that is bound to a response: the
#: handler rendering the response the view returned (``sync_to_async(response.render)``
#: in ``_get_response_async``), whatever the bound function is called. A project's
#: ``render`` set on the instance (Wagtail's admin sets ``response.render =
#: MethodType(overridden_render, response)``) runs code the target rules do not know
#: by its name, and was named as the view.
_handler_render = _response_method_rule("render", http_response.HttpResponseBase)


#: The methods Django calls on a response after the view, by name, each with the
#: class the response must be: it closes every response it sent, and renders a
#: template response (``BaseHandler._get_response_async``).
_RESPONSE_METHODS: dict[str, _causes.Rule] = {
    "close": _response_method_rule("close", http_response.HttpResponseBase),
    "render": _response_method_rule("render", SimpleTemplateResponse),
}


def _classify_target(code: CodeType) -> _causes.Rule | None:
    """Target rules derived from a code object on first sight (cached by _causes):
    any method named ``close`` or ``render`` is asked whether it is bound to a
    response (a template response for ``render``).

    ``HttpResponseBase.close``, hopwatch's wrapper around it,
    ``SimpleTemplateResponse.render`` and a subclass's override of either
    (``FileResponse``, a ``StreamingHttpResponse`` or a ``TemplateResponse`` of the
    project's) alike. Keyed
    by the code's name, not by Django's code objects, so an override is not left to
    the other rules (an overriding ``render`` was named as the view, its caller being
    the handler's view call)."""
    return _RESPONSE_METHODS.get(code.co_name)


def _fixed(kind: str, site: str) -> _causes.Rule:
    cause = intern_cause(kind, site)
    return lambda target, frame: cause


def _render_call_lines(function: Any) -> tuple[CodeType | None, frozenset[int]]:
    """The code of ``function`` (``BaseHandler._get_response_async``) and the lines
    where it renders the response through a crossing, ``sync_to_async(response.render,
    ...)()``: read from its source once, at registration."""
    code = getattr(function, "__code__", None)
    try:
        source, first = inspect.getsourcelines(function)
        tree = ast.parse(textwrap.dedent("".join(source)))
    except (OSError, TypeError, SyntaxError):
        return code, frozenset()
    lines = set()
    for node in ast.walk(tree):
        # the outer call of sync_to_async(<x>.render, ...)(): the crossing's own line
        inner = node.func if isinstance(node, ast.Call) else None
        if (
            isinstance(node, ast.Call)
            and isinstance(inner, ast.Call)
            and isinstance(inner.func, ast.Name)
            and inner.func.id == "sync_to_async"
            and inner.args
            and isinstance(inner.args[0], ast.Attribute)
            and inner.args[0].attr == "render"
        ):
            lines.add(first + node.lineno - 1)
    return code, frozenset(lines)


#: Where the handler renders: a ``render`` that is no method bound to a response (a
#: lambda or a partial set on the instance) is told from the view by its line.
_render_calls: tuple[CodeType | None, frozenset[int]] = (None, frozenset())


def _render_by_line(frame: FrameType) -> Cause | None:
    code, lines = _render_calls
    if frame.f_code is not code or frame.f_lineno not in lines:
        return None
    # The response's class, from the handler's frame: an answer for this response
    # only (the same lambda may be set on responses of other classes).
    _causes.reads_instance()
    response = frame.f_locals.get("response")
    return intern_cause("response", f"{type(response).__name__}.render")


def _view_rule(target: object, frame: FrameType | None) -> Cause | None:
    if type(target) is MethodType:
        rendering = _handler_render(target, frame)
        if rendering is not None:
            return rendering
    if frame is not None:
        local = frame.f_locals
        callback = local.get("callback")  # the view the handler resolved
        if callback is not None and (target is callback or _wraps(target, callback)):
            return intern_cause("view", _request_view(target, callback, local.get("request")))
        rendering = _render_by_line(frame)
        if rendering is not None:
            return rendering
    return intern_cause("view", view_path(target))


def _request_view(target: Any, callback: Any, request: Any) -> str:
    """The site of the view's own call: the line's ``view``, by the function that names
    it (``names_of``) with the same inputs (the request's ``resolver_match`` and
    method). When that name is read from the view callable itself
    (``named_by_instance``: as_view()'s closures, a django-ninja path's dispatcher,
    each one code and name for many views), or from another view than the one called
    (a ``resolver_match`` replaced since), the answer is this request's, never cached
    by the code: the hop path asks again at each such hop (the frame's locals and two
    dict lookups)."""
    match = getattr(request, "resolver_match", None)
    if match is not None:
        if named_by_instance(callback) or getattr(match, "func", None) is not callback:
            _causes.reads_instance()
        name = names_of(match, getattr(request, "method", None))[1]
        if name is not None:
            return name
    return view_path(target)


def _wraps(target: Any, view: Any) -> bool:
    """Whether ``target`` is a wrapper of ``view`` (``transaction.atomic``'s, one per
    database with ``ATOMIC_REQUESTS``: ``functools.wraps`` sets ``__wrapped__``)."""
    for _ in range(8):  # bounded: a __wrapped__ chain is short and never a loop
        target = _causes.wrapped_by(target)
        if target is None:
            return False
        if target is view:
            return True
    return False


# (id(class), id(function)) -> (class, function, cause)
_hook_causes: dict[tuple[int, int], tuple[type, Any, Cause]] = {}


def _hook_cause(method: MethodType) -> Cause:
    """``<middleware class path>.<hook>`` for a bound middleware hook, cached."""
    cls = type(method.__self__)
    function = method.__func__
    key = (id(cls), id(function))
    entry = _hook_causes.get(key)
    if entry is not None and entry[0] is cls and entry[1] is function:
        return entry[2]
    cause = intern_cause("middleware", f"{class_path(cls)}.{function.__name__}")
    _hook_causes[key] = (cls, function, cause)
    return cause


def _mixin_hook_rule(target: object, frame: FrameType | None) -> Cause | None:
    return _hook_cause(target) if type(target) is MethodType else None


#: The site of the 6.0+ hops that write an upload's body chunks to disk.
REQUEST_BODY_TO_DISK = "request body (written to disk)"
_STREAM_SYNC = intern_cause("stream", "StreamingHttpResponse (sync iterator)")
_STREAM_ASYNC = intern_cause("stream", "StreamingHttpResponse (async iterator)")


def _async_api_rule(kind: str, site: str) -> _causes.Rule:
    """``QuerySet.aget`` and friends: the async method plus the user's call site."""

    def rule(target: object, frame: FrameType | None) -> Cause | None:
        return intern_cause(kind, site, _causes.call_site(frame))

    return rule


_DJANGO_ROOT = ""
_RESPONSE_FILE = http_response.__file__

#: Django functions that make a hop the generic rules below would misname, by
#: (file under django/, qualname). Matched by name, not imported: nothing is
#: loaded for them, and a version without one simply never matches it.
_KNOWN_CALLERS: dict[tuple[str, str], _causes.Rule] = {
    # QuerySet.aiterator() runs BaseIterable's generic async generator, which
    # fetches each chunk through sync_to_async(next_slice): ORM work.
    ("db/models/query.py", "BaseIterable._async_generator"): _async_api_rule(
        "orm", "QuerySet.aiterator"
    ),
    # 6.0+: once an upload spools to disk (FILE_UPLOAD_MAX_MEMORY_SIZE), each
    # further body chunk is written through sync_to_async(body_file.write).
    # Handler code: no call site (the walk stops at the handler: _APPLICATION_ENTRIES).
    ("core/handlers/asgi.py", "ASGIHandler.read_body"): _fixed("stream", REQUEST_BODY_TO_DISK),
    # ASGIStaticFilesHandler (runserver's, and the toolbar docs' advice under
    # uvicorn) buffers a static file's FileResponse, a sync iterator, through
    # sync_to_async(list): the stream buffering, not an async API ("awrapper").
    (
        "contrib/staticfiles/handlers.py",
        "ASGIStaticFilesHandler.get_response_async.<locals>.awrapper",
    ): lambda target, frame: _STREAM_SYNC,
    # 6.1: aauthenticate() with an unknown username still hashes the password
    # once (so it takes as long as a wrong password), in a thread.
    ("contrib/auth/__init__.py", "acheck_password_with_timing_attack_mitigation"): (
        _async_api_rule("other", "acheck_password (unknown user)")
    ),
}


#: Where a server or a test client enters the application, by (file under django/,
#: qualname): a call site is never looked for above these (``_causes.user_frame``).
#: Matched by name, as ``_KNOWN_CALLERS``: ``django.test.client`` is not imported
#: for it, and hopwatch's replacements of the handlers' ``__call__`` call these.
_APPLICATION_ENTRIES = frozenset(
    {
        ("core/handlers/asgi.py", "ASGIHandler.__call__"),
        ("core/handlers/asgi.py", "ASGIHandler.handle"),
        ("core/handlers/wsgi.py", "WSGIHandler.__call__"),
        ("test/client.py", "ClientHandler.__call__"),
        ("test/client.py", "AsyncClientHandler.__call__"),
    }
)


def _application_entry(code: CodeType) -> bool:
    """Whether ``code`` is a Django handler's entry (once per code object: cached)."""
    filename = code.co_filename
    if not filename.startswith(_DJANGO_ROOT):
        return False
    relative = filename[len(_DJANGO_ROOT) :].replace(os.sep, "/")
    return (relative, code.co_qualname) in _APPLICATION_ENTRIES


def _classify_django_caller(code: CodeType) -> _causes.Rule | None:
    """Caller rules derived from a code object on first sight (cached by _causes)."""
    filename = code.co_filename
    if not filename.startswith(_DJANGO_ROOT):
        return None
    qualname = code.co_qualname
    known = _KNOWN_CALLERS.get((filename[len(_DJANGO_ROOT) :].replace(os.sep, "/"), qualname))
    if known is not None:
        return known
    if filename == _RESPONSE_FILE and qualname.startswith("StreamingHttpResponse."):
        if qualname.startswith("StreamingHttpResponse.__aiter__"):
            return lambda target, frame: _STREAM_SYNC
        if qualname.startswith("StreamingHttpResponse.__iter__"):
            return lambda target, frame: _STREAM_ASYNC
        return None
    # Django's async APIs that are sync_to_async of the sync method:
    # QuerySet.aget, Model.asave, RelatedManager.acreate, QuerySet.__aiter__,
    # BaseCache.aget, SessionBase.aget, auth's aauthenticate, ...
    parts = [p for p in qualname.split(".") if p != "<locals>"]
    api = next((p for p in parts if p.startswith("a") or p == "__aiter__"), None)
    if api is None:
        return None
    owner_index = parts.index(api)
    site = ".".join(parts[max(0, owner_index - 1) : owner_index + 1])
    relative = filename[len(_DJANGO_ROOT) :]
    kind = "orm" if relative.startswith(f"db{os.sep}") else "other"
    return _async_api_rule(kind, site)


@_causes.per_instance  # which operation: the request's, not the dispatcher's code
def _dispatched_view_rule(target: object, frame: FrameType | None) -> Cause | None:
    """A hop a framework's own dispatcher makes into the view it dispatches to: the
    view's, named as the line names its view (``names_of``, with the request the
    dispatcher holds). django-ninja's async ``PathView._async_view``, on a path with an
    async operation and a sync one, calls the sync one through ``sync_to_async`` of
    its own (the handler calls the dispatcher itself: no hop of the handler's)."""
    request = frame.f_locals.get("request") if frame is not None else None
    match = getattr(request, "resolver_match", None)
    if match is None:
        return None  # no request the line names a view for: the fallback's name
    name = names_of(match, getattr(request, "method", None))[1]
    return None if name is None else intern_cause("view", name)


#: Third-party frameworks' dispatchers that call the view's own code through a crossing
#: of their own, by module and qualified name, each with its rule. Looked up in
#: ``sys.modules`` when a caller's code is first seen (never imported: an app without
#: the framework pays nothing per hop), and matched by code object.
_FRAMEWORK_CALLERS: dict[str, tuple[str, _causes.Rule]] = {
    "PathView._async_view": ("ninja.operation", _dispatched_view_rule),
}


def _classify_framework_caller(code: CodeType) -> _causes.Rule | None:
    """Caller rules for a framework's dispatcher (``_FRAMEWORK_CALLERS``), once per
    caller code object (cached by _causes)."""
    known = _FRAMEWORK_CALLERS.get(code.co_qualname)
    if known is None:
        return None
    module_name, rule = known
    owner: Any = sys.modules.get(module_name)
    for part in code.co_qualname.split("."):
        owner = getattr(owner, part, None)
    function = _causes.unwrapped(owner)
    return rule if getattr(function, "__code__", None) is code else None


def _nested_codes(code: CodeType) -> list[CodeType]:
    found = []
    for const in code.co_consts:
        if isinstance(const, CodeType):
            found.append(const)
            found.extend(_nested_codes(const))
    return found


def _register(where: str, register: Callable[[], None]) -> None:
    """One rule's registration. A Django that renamed what it names (a version
    hopwatch was not tested on) loses that rule, not hopwatch: its hops are
    still counted, named by the fallback."""
    try:
        register()
    except Exception as exc:
        _errors.report(f"registering the cause rule for {where}", exc)


def _register_view_caller(name: str) -> None:
    global _render_calls

    function = getattr(handlers_base.BaseHandler, name)
    if name == "_get_response_async":
        _render_calls = _render_call_lines(function)
    _causes.register_caller(function, _view_rule)


def register_rules() -> None:
    """Register every rule (once, from ``install()``)."""
    global _DJANGO_ROOT

    _DJANGO_ROOT = os.path.dirname(django.__file__ or "") + os.sep
    _causes.add_library_package(django.__file__ or "")

    for name in ("send", "send_robust", "asend", "asend_robust"):
        # Django's own: an agent may have wrapped it before hopwatch installed
        method = _causes.unwrapped(getattr(Signal, name, None))
        if method is None:
            continue
        _causes.register_target(method, _signal_bound_rule)
        for nested in _nested_codes(method.__code__):
            rule = _signal_closure_rule(nested)
            if rule is not None:
                _causes.register_target(nested, rule)

    _causes.register_target_classifier(_classify_target)  # every response's close, render
    _causes.register_target(response_for_exception, _fixed("exception", "response_for_exception"))
    _causes.register_target(log_response, _fixed("exception", "log_response"))
    _register(
        "process_exception_by_middleware",
        lambda: _causes.register_target(
            handlers_base.BaseHandler.process_exception_by_middleware,
            _fixed("exception", "process_exception_by_middleware"),
        ),
    )
    for get_response in ("_get_response_async", "_get_response"):
        _register(
            f"BaseHandler.{get_response}",
            functools.partial(_register_view_caller, get_response),
        )
    _causes.register_caller(MiddlewareMixin.__acall__, _mixin_hook_rule)
    _causes.register_caller_classifier(_classify_django_caller)
    _causes.register_caller_classifier(_classify_framework_caller)
    _causes.register_boundary_classifier(_application_entry)


# --- middleware adaptation tags -----------------------------------------------


def _unwrap_handler(handler: Any) -> Any:
    """The middleware instance behind ``convert_exception_to_response``'s wrapper."""
    return getattr(handler, "__wrapped__", handler)


def _sync_only_below(middleware: Any) -> Any:
    """The first sync-only middleware at or below ``middleware`` in the chain, or None.

    An async-capable middleware runs sync only because the handler below it is
    sync; follow ``get_response`` down to the middleware that is the reason.
    """
    for _ in range(1000):  # a chain is finite; guard against odd get_response graphs
        if middleware is None or isinstance(middleware, MethodType):
            return None  # reached the view-calling handler
        if isinstance(middleware, types.FunctionType):
            # A function-based middleware's flags are on its factory, out of
            # reach here; an async closure is running async, a sync one is
            # the reason the chain is sync.
            if not inspect.iscoroutinefunction(middleware):
                return middleware
        elif not getattr(type(middleware), "async_capable", False):
            return middleware
        middleware = _unwrap_handler(getattr(middleware, "get_response", None))
    return None


def _async_only_below(middleware: Any) -> Any:
    """The first async-only middleware at or below ``middleware`` in the chain, or None.

    Under WSGI the chain is sync at its bottom; a middleware that cannot run sync
    makes it async from there up, and Django adapts the top of the chain back
    (``async_to_sync``, a new event loop per request): that middleware is the
    reason. A function-based middleware's flags are on its factory, out of reach:
    the first async one is named when no class-based one is found.
    """
    first_async_function = None
    for _ in range(1000):  # a chain is finite; guard against odd get_response graphs
        if middleware is None or isinstance(middleware, MethodType):
            break  # reached the view-calling handler
        if isinstance(middleware, types.FunctionType):
            if first_async_function is None and inspect.iscoroutinefunction(middleware):
                first_async_function = middleware
        elif not getattr(type(middleware), "sync_capable", True):
            return middleware
        middleware = _unwrap_handler(getattr(middleware, "get_response", None))
    return first_async_function


#: Django's handlers, by module and class, and the mode each loads its chain in
#: (``load_middleware(is_async=...)``). Looked up in ``sys.modules``: the test
#: client's module is never imported for this.
_HANDLER_MODES: tuple[tuple[str, str, bool], ...] = (
    ("django.core.handlers.asgi", "ASGIHandler", True),
    ("django.test.client", "AsyncClientHandler", True),
    ("django.core.handlers.wsgi", "WSGIHandler", False),
    ("django.test.client", "ClientHandler", False),
)


def _handler_is_async(handler: Any) -> bool | None:
    """Whether ``handler`` (the ``BaseHandler`` loading its middleware) runs its chain
    async: True for Django's ASGI handlers, False for its WSGI ones, None for others."""
    for module_name, class_name, is_async in _HANDLER_MODES:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if cls is not None and isinstance(handler, cls):
            return is_async
    return None


def _adaptation_cause(
    method: Any, name: str | None, adapter: Any, handler_is_async: bool | None = None
) -> Cause:
    """The middleware to blame for an adapter ``adapt_method_mode`` made.

    The middleware out of the handler's mode is the reason: a sync-only one
    under an async handler (ASGI), an async-only one under a sync handler
    (WSGI). ``name`` is Django's ``"middleware <path>"`` for the middleware
    being loaded when the handler below it needed adapting; the adapter is
    ``sync_to_async`` when the handler below is sync, ``async_to_sync`` when it
    is async. When the chain below is the one in the other mode (sync below an
    async handler, async below a sync one), blame the first middleware below
    that is the reason (``_sync_only_below`` / ``_async_only_below``: a
    middleware that can run both ways runs in its neighbour's mode); otherwise
    the middleware being loaded is out of mode: blame it. The top of the
    chain is adapted without a name. For a handler that is none of Django's
    (``handler_is_async`` None), the usual reading of each case: ``sync_to_async``
    and a named ``async_to_sync`` as under ASGI, the top's ``async_to_sync`` as
    under WSGI.
    """
    if type(method) is MethodType:  # process_view / process_template_response / ...
        return _hook_cause(method)
    below = _unwrap_handler(method)
    into_sync = isinstance(adapter, SyncToAsync)
    if not into_sync and not isinstance(adapter, AsyncToSync):
        handler_is_async = None  # an adapter of another kind: blame by name below
    elif handler_is_async is None:
        handler_is_async = into_sync or bool(name)
    if handler_is_async is not None and into_sync == handler_is_async:
        culprit = _sync_only_below(below) if into_sync else _async_only_below(below)
        if culprit is not None:
            return intern_cause("middleware", middleware_site(culprit))
    if name and name.startswith("middleware "):
        return intern_cause("middleware", name[len("middleware ") :])
    if below is not method and not isinstance(below, MethodType):
        return intern_cause("middleware", middleware_site(below))
    return intern_cause("middleware", name or _causes.dotted_name(method))


def patched_adapt_method_mode(original: Callable[..., Any]) -> Callable[..., Any]:
    def adapt_method_mode(
        self: Any,
        is_async: Any,
        method: Any,
        method_is_async: Any = None,
        debug: Any = False,
        name: Any = None,
    ) -> Any:
        adapted = original(self, is_async, method, method_is_async, debug, name)
        if adapted is not method:
            try:
                _causes.tag(
                    adapted, _adaptation_cause(method, name, adapted, _handler_is_async(self))
                )
            except Exception as exc:
                _errors.report("adapt_method_mode", exc)
        return adapted

    adapt_method_mode.__wrapped__ = original  # type: ignore[attr-defined]
    adapt_method_mode.__doc__ = original.__doc__
    return adapt_method_mode


def register_close_rule() -> None:
    """``response.close`` is hopwatch's wrapper once installed: nothing to register,
    the target classifier names every response's ``close`` (``_classify_target``).
    Kept for ``_django.install``, which calls it after replacing ``close``."""
