"""hopwatch's Django integration: installing and removing it.

Installed once by :class:`hopwatch.apps.HopwatchConfig` (``install()``), and
reversible (``uninstall()``), all at class level. Two modules do the work:

* :mod:`hopwatch._django_causes`: what caused a Django hop (the attribution
  rules, and the tag ``BaseHandler.adapt_method_mode`` leaves on the adapters it
  makes);
* :mod:`hopwatch._django_scope`: where a request begins and ends (the
  handlers' ``__call__`` and ``response.close()``; and, for
  ``ASGIHandler``, the ``ThreadSensitiveContext`` its module enters per request:
  see :class:`hopwatch._recorder.RequestContext`).

The test client handlers are patched when ``django.test.client`` is imported (a
post-import hook), never by importing it: production processes do not load
Django's test machinery because of hopwatch.
"""

from __future__ import annotations

import importlib.machinery
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers import asgi as handlers_asgi
from django.core.handlers import base as handlers_base
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.http import response as http_response

from hopwatch import _django_causes as causes
from hopwatch import _django_scope as scope
from hopwatch import _errors, _patch
from hopwatch._django_scope import (
    INTERFACE_ASGI,
    INTERFACE_TEST_ASYNC_CLIENT,
    INTERFACE_TEST_CLIENT,
    INTERFACE_WSGI,
    current_request,
    finish_request,
)
from hopwatch._recorder import RequestContext

_lock = threading.Lock()
_installed = False
# (owner, attribute name, original value, ours) for everything we replaced.
_replaced: list[tuple[object, str, Any, Any]] = []
# The same for what uninstall() left in place because other code had wrapped it
# since (Sentry's ASGIHandler.__call__, say): ours passes through while
# uninstalled, and install() makes it work again rather than wrap theirs.
_left: list[tuple[object, str, Any, Any]] = []


def _patch_test_client(module: types.ModuleType) -> None:
    with _lock:
        if not _installed:
            return
        _replace(module.ClientHandler, "__call__", scope.sync_handler, INTERFACE_TEST_CLIENT)
        _replace(
            module.AsyncClientHandler,
            "__call__",
            scope.async_handler,
            INTERFACE_TEST_ASYNC_CLIENT,
        )


# The hook and its loader are what the import system calls (``find_spec``;
# ``create_module`` and ``exec_module``), not subclasses of importlib.abc's: that
# module imports importlib.resources (six modules, some 400 objects for the
# collector to walk in every full collection of the app's process).
class _TestClientImportHook:
    """Patches ``django.test.client`` right after it is first imported."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "django.test.client":
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None and spec.loader is not None:
                loader = spec.loader
                original_exec = loader.exec_module

                def exec_module(
                    module: types.ModuleType, original_exec: Any = original_exec
                ) -> None:
                    original_exec(module)
                    try:
                        _patch_test_client(module)
                    except Exception as exc:
                        _errors.report("patching django.test.client", exc)

                spec.loader = _LoaderProxy(loader, exec_module)
                return spec
        return None


class _LoaderProxy:
    def __init__(self, loader: Any, exec_module: Callable[[types.ModuleType], None]) -> None:
        self._loader = loader
        self.exec_module = exec_module

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


_hook = _TestClientImportHook()


def _replace(owner: object, name: str, factory: Callable[..., Any], *args: Any) -> None:
    original = owner.__dict__.get(name)
    if original is None or any(o is owner and n == name for o, n, _, _ in _replaced):
        return
    for entry in _left:
        if entry[0] is owner and entry[1] == name:
            _left.remove(entry)
            if original is not entry[2]:  # ours is still there, under theirs
                _replaced.append(entry)
                return
            break
    ours = factory(_unbound(owner, original), *args)
    setattr(owner, name, ours)
    _replaced.append((owner, name, original, ours))


def _unbound(owner: object, original: Any) -> Any:
    """``original`` as a function called with the instance first, as the factories
    call it. Another agent's wrapper in the class (New Relic's, a ``wrapt``
    FunctionWrapper) is bound through its own ``__get__`` first: called with the
    instance as an argument, it took the instance for the ASGI scope."""
    # type(), not isinstance(): a wrapt proxy claims its wrapped function's class.
    if type(original) is types.FunctionType or not isinstance(owner, type):
        return original
    if not hasattr(type(original), "__get__"):
        return original

    def unbound(self: Any, *args: Any, **kwargs: Any) -> Any:
        return original.__get__(self, type(self))(*args, **kwargs)

    unbound.__wrapped__ = original  # type: ignore[attr-defined]
    unbound.__doc__ = getattr(original, "__doc__", None)
    return unbound


def install() -> None:
    """Install the asgiref patch and Django's rules and scopes. Idempotent."""
    global _installed
    _patch.install()
    with _lock:
        if _installed:
            return
        causes.register_rules()
        _replace(
            handlers_base.BaseHandler, "adapt_method_mode", causes.patched_adapt_method_mode
        )
        _replace(handlers_base.BaseHandler, "load_middleware", scope.patched_load_middleware)
        _replace(ASGIHandler, "__call__", scope.async_handler, INTERFACE_ASGI)
        if handlers_asgi.__dict__.get("ThreadSensitiveContext") is ThreadSensitiveContext:
            # The handler's per-request ThreadSensitiveContext carries the
            # request's record (see hopwatch._recorder.RequestContext).
            _replace(handlers_asgi, "ThreadSensitiveContext", lambda _original: RequestContext)
            scope.on_request_context = True
        _replace(WSGIHandler, "__call__", scope.sync_handler, INTERFACE_WSGI)
        _replace(http_response.HttpResponseBase, "close", scope.patched_close)
        _replace(http_response.StreamingHttpResponse, "__iter__", scope.patched_iter)
        # response.close is now our wrapper: attribute it like the original.
        causes.register_close_rule()
        _installed = scope.active = True
    module = sys.modules.get("django.test.client")
    if module is not None:
        _patch_test_client(module)
    elif _hook not in sys.meta_path:
        sys.meta_path.insert(0, _hook)


def uninstall() -> None:
    """Undo :func:`install` (handlers, tags' source, asgiref). Idempotent."""
    global _installed
    with _lock:
        if _hook in sys.meta_path:
            sys.meta_path.remove(_hook)
        while _replaced:
            entry = _replaced.pop()
            owner, name, original, ours = entry
            if owner.__dict__.get(name) is ours:
                setattr(owner, name, original)
                continue
            # Wrapped by other code since: removing ours would remove theirs.
            _left.append(entry)
            _errors.logger.warning(
                "hopwatch.uninstall(): %s.%s was replaced by other code after hopwatch"
                " installed; left in place, hopwatch's layer is now inert.",
                getattr(owner, "__name__", owner),
                name,
            )
        _installed = scope.active = scope.on_request_context = False
    _patch.uninstall()


def is_installed() -> bool:
    return _installed


def active_staff(user: Any) -> bool:
    """Whether ``user`` is an active staff user (None, anonymous: no)."""
    return bool(getattr(user, "is_active", False) and getattr(user, "is_staff", False))


async def is_active_staff(request: Any) -> bool:
    """Whether the request's user is active staff, asked as an async view may ask:
    ``request.auser()`` (Django's AuthenticationMiddleware), else ``request.user``
    read in a thread (another authentication middleware's: it may be lazy and
    query, which Django refuses on the event loop). The profiles' staff trigger
    and the threads page both ask this."""
    auser = getattr(request, "auser", None)
    if auser is not None:
        return active_staff(await auser())
    if not hasattr(request, "user"):
        return False
    from asgiref.sync import sync_to_async

    return await sync_to_async(lambda: active_staff(request.user))()


__all__ = [
    "INTERFACE_ASGI",
    "INTERFACE_TEST_ASYNC_CLIENT",
    "INTERFACE_TEST_CLIENT",
    "INTERFACE_WSGI",
    "active_staff",
    "current_request",
    "finish_request",
    "install",
    "is_active_staff",
    "is_installed",
    "uninstall",
]
