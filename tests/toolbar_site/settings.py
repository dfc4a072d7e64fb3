"""tests.settings plus django-debug-toolbar with hopwatch's HopsPanel (a debug set-up)."""

import os

from debug_toolbar.settings import PANELS_DEFAULTS

from tests.settings import *  # noqa: F403
from tests.settings import DEFAULT_MIDDLEWARE, INSTALLED_APPS

#: What the toolbar tests override in tests.settings (the documented set-up).
TOOLBAR = {
    "DEBUG": True,
    "INTERNAL_IPS": ["127.0.0.1"],
    "INSTALLED_APPS": [*INSTALLED_APPS, "django.contrib.staticfiles", "debug_toolbar"],
    # hopwatch first, the toolbar right after it (as early as its docs say).
    "MIDDLEWARE": [
        "hopwatch.middleware.HopwatchMiddleware",
        "debug_toolbar.middleware.DebugToolbarMiddleware",
        *DEFAULT_MIDDLEWARE,
    ],
    "ROOT_URLCONF": "tests.toolbar_site.urls",
    # Every default panel (so the toolbar's own hops are there), plus hopwatch's.
    "DEBUG_TOOLBAR_PANELS": [*PANELS_DEFAULTS, "hopwatch.contrib.debug_toolbar.HopsPanel"],
    "DEBUG_TOOLBAR_CONFIG": {"IS_RUNNING_TESTS": False},
    # Every cause in the line, so the panel's groups can be checked against it.
    "HOPWATCH": {"OUTPUT": "logging", "SITES_LIMIT": 1000},
}

globals().update(TOOLBAR)

# A server of its own (the browser test): the request lines go to this file.
if os.environ.get("HOPWATCH_LOG"):
    HOPWATCH = {**TOOLBAR["HOPWATCH"], "OUTPUT": os.environ["HOPWATCH_LOG"]}
