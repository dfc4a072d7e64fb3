"""The example site, served for the stress tests, plus endpoints whose hop count is a parameter.

Everything of ``example_site.settings`` (startproject's middleware with hopwatch
first, the shop app, its SQLite database in ``EXAMPLE_SITE_VAR``, hopwatch's
lines to the file named by ``HOPWATCH_LOG``), with the URLs of
``tests.stress.site_urls``: the example site's own, testapp's and ``/stress/...``.
"""

import os

from example_site.settings import *  # noqa: F403
from example_site.settings import INSTALLED_APPS, LOGGING

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
ROOT_URLCONF = "tests.stress.site_urls"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

if os.environ.get("HOPWATCH_STRESS_WITHOUT"):
    # The same site with no trace of hopwatch, to compare the app's behaviour.
    from example_site.settings import MIDDLEWARE

    INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "hopwatch"]
    MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("hopwatch.")]

# Every cause in the line, so the tests can check each one's count.
HOPWATCH = {"SITES_LIMIT": 64}
if os.environ.get("HOPWATCH_OUTPUT_BUFFER"):  # hopwatch's own file output, lines held
    HOPWATCH["OUTPUT"] = os.environ["HOPWATCH_LOG"]
    HOPWATCH["OUTPUT_BUFFER"] = int(os.environ["HOPWATCH_OUTPUT_BUFFER"])
    if os.environ.get("HOPWATCH_HOLD_SECONDS"):  # only the size and the exit write them
        from hopwatch import _emit

        _emit.HOLD_SECONDS = float(os.environ["HOPWATCH_HOLD_SECONDS"])
if os.environ.get("HOPWATCH_OTEL"):  # metrics and spans, through the SDK the test sets up
    HOPWATCH["OTEL_METRICS"] = HOPWATCH["OTEL_SPANS"] = True
if os.environ.get("HOPWATCH_PROCESS_LINE_SECONDS"):  # the threads test's process lines
    HOPWATCH["PROCESS_LINE_SECONDS"] = float(os.environ["HOPWATCH_PROCESS_LINE_SECONDS"])

# The server's own warnings (uvicorn, Django's 500s) stay out of the hopwatch log.
LOGGING = {**LOGGING, "loggers": {**LOGGING["loggers"], "django": {"level": "CRITICAL"}}}
