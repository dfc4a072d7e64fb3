"""hopwatch: see what sync/async thread hops cost your Django app.

The core (this package's top level) needs only asgiref::

    import hopwatch

    hopwatch.install()      # patch asgiref's SyncToAsync / AsyncToSync
    ...
    hopwatch.uninstall()    # put asgiref back exactly as it was

In a Django project add ``"hopwatch"`` to ``INSTALLED_APPS`` and
``"hopwatch.middleware.HopwatchMiddleware"`` first in ``MIDDLEWARE``; the app
installs the patch and logs one line per request.

The names below are loaded on first use: importing a part of hopwatch that
needs none of them (``hopwatch.report``, which reads logs only) loads neither
the instrumentation nor asgiref.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from hopwatch._emit import flush
    from hopwatch._patch import install, is_installed, uninstall
    from hopwatch._recorder import ASYNC_TO_SYNC, KINDS, SYNC_TO_ASYNC, Cause, Hop, RequestRecord

# What docs/how-it-works.md ("The Python API") describes, and nothing else:
# name -> (module, attribute).
_EXPORTS: dict[str, tuple[str, str]] = {
    "flush": ("hopwatch._emit", "flush"),
    "install": ("hopwatch._patch", "install"),
    "is_installed": ("hopwatch._patch", "is_installed"),
    "uninstall": ("hopwatch._patch", "uninstall"),
    **{
        name: ("hopwatch._recorder", name)
        for name in ("ASYNC_TO_SYNC", "KINDS", "SYNC_TO_ASYNC", "Cause", "Hop", "RequestRecord")
    },
}


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
