"""No instrumentation: the example site without hopwatch's app and middleware."""

from example_site.settings import *  # noqa: F403
from example_site.settings import INSTALLED_APPS, MIDDLEWARE

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "hopwatch"]
MIDDLEWARE = [mw for mw in MIDDLEWARE if not mw.startswith("hopwatch.")]
HOPWATCH = {"ENABLED": False}
