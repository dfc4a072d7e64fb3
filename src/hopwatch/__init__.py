"""hopwatch: see what sync/async thread hops cost your Django app.

The core (this package's top level) needs only asgiref::

    import hopwatch

    hopwatch.install()      # patch asgiref's SyncToAsync / AsyncToSync
    ...
    hopwatch.uninstall()    # put asgiref back exactly as it was

In a Django project add ``"hopwatch"`` to ``INSTALLED_APPS`` and
``"hopwatch.middleware.HopwatchMiddleware"`` first in ``MIDDLEWARE``; the app
installs the patch and logs one line per request. There ``uninstall()`` removes
everything the app installed (Django's handlers and asgiref as they were, no
more request lines), and ``install()`` puts it back.

The names below are loaded on first use: importing a part of hopwatch that
needs none of them (``hopwatch.report``, which reads logs only) loads neither
the instrumentation nor asgiref.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from hopwatch._emit import flush
    from hopwatch._patch import is_installed
    from hopwatch._recorder import ASYNC_TO_SYNC, KINDS, SYNC_TO_ASYNC, Cause, Hop, RequestRecord

# What docs/how-it-works.md ("The Python API") describes, and nothing else:
# name -> (module, attribute).
_EXPORTS: dict[str, tuple[str, str]] = {
    "flush": ("hopwatch._emit", "flush"),
    "is_installed": ("hopwatch._patch", "is_installed"),
    **{
        name: ("hopwatch._recorder", name)
        for name in ("ASYNC_TO_SYNC", "KINDS", "SYNC_TO_ASYNC", "Cause", "Hop", "RequestRecord")
    },
}


def install() -> None:
    """Install hopwatch. Idempotent and thread-safe.

    Patches asgiref's adapters; in a process where hopwatch's Django app (or its
    middleware, without the app) started hopwatch, also puts back everything
    :func:`uninstall` removed: Django's request scopes, the request lines, and the
    rest of what the app installs at start-up.
    """
    apps = sys.modules.get("hopwatch.apps")
    if apps is not None and apps.reinstall():
        return
    importlib.import_module("hopwatch._patch").install()


def uninstall() -> None:
    """Undo everything hopwatch installed in this process. Idempotent and thread-safe.

    asgiref's adapters are put back exactly as they were and, in a Django process,
    Django's too (the handlers, ``load_middleware``, ``response.close``, the name
    ``ThreadSensitiveContext`` in ``django.core.handlers.asgi``, the test client's
    import hook), and pyinstrument's ``StackSampler.subscribe`` once a request was
    profiled under ASGI (docs/profiling.md; when the last profile running then stops);
    no request line is written from then on.
    :func:`install` puts it back.
    """
    profiling = sys.modules.get("hopwatch.profiling")
    if profiling is not None:  # its hand-over to an app's own pyinstrument profiler
        profiling.uninstall_yielding()
    apps = sys.modules.get("hopwatch.apps")
    if apps is not None:  # the Django app's module: what it installed, and the rest
        apps.deactivate()
        return
    django_layer = sys.modules.get("hopwatch._django")
    if django_layer is not None:  # hopwatch.testing installs Django's scopes without the app
        django_layer.uninstall()  # (and asgiref's patch)
    else:
        importlib.import_module("hopwatch._patch").uninstall()


if not TYPE_CHECKING:  # for type checkers the imports above define the names

    def __getattr__(name: str) -> Any:
        try:
            module, attribute = _EXPORTS[name]
        except KeyError:
            raise AttributeError(f"module 'hopwatch' has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value  # once loaded, a plain module attribute
        return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "ASYNC_TO_SYNC",
    "KINDS",
    "SYNC_TO_ASYNC",
    "Cause",
    "Hop",
    "RequestRecord",
    "__version__",
    "flush",
    "install",
    "is_installed",
    "uninstall",
]
