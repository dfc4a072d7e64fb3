"""hopwatch: see what sync/async thread hops cost your Django app.

The core (this package's top level) needs only asgiref::

    import hopwatch

    hopwatch.install()      # patch asgiref's SyncToAsync / AsyncToSync
    ...
    hopwatch.uninstall()    # put asgiref back exactly as it was

In a Django project add ``"hopwatch"`` to ``INSTALLED_APPS`` and
``"hopwatch.middleware.HopwatchMiddleware"`` first in ``MIDDLEWARE``; the app
installs the patch and logs one line per request.
"""

from hopwatch._errors import total as internal_errors
from hopwatch._patch import install, is_installed, uninstall
from hopwatch._recorder import (
    ASYNC_TO_SYNC,
    KINDS,
    SYNC_TO_ASYNC,
    Cause,
    CauseStats,
    Hop,
    Ledger,
    RequestRecord,
    add_sink,
    remove_sink,
)

__version__ = "0.1.0"

__all__ = [
    "ASYNC_TO_SYNC",
    "KINDS",
    "SYNC_TO_ASYNC",
    "Cause",
    "CauseStats",
    "Hop",
    "Ledger",
    "RequestRecord",
    "__version__",
    "add_sink",
    "install",
    "internal_errors",
    "is_installed",
    "remove_sink",
    "uninstall",
]
