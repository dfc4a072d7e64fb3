"""Diagnostic, not a peer and not hopwatch: the example site without hopwatch, with
a hand-written access log first in ``MIDDLEWARE`` (``bench.access_log``: one JSON
line per request, padded to about the length of hopwatch's line on these
endpoints, through a ``FileHandler`` to the file named by ``HOPWATCH_LOG``). The
floor under hopwatch's per-request line: what any line per request costs."""

import os

from example_site.settings import VAR_DIR

from bench import access_log
from bench.peers.baseline import *  # noqa: F403
from bench.peers.baseline import MIDDLEWARE
from bench.peers.with_hopwatch import evidence  # noqa: F401  (lines in the log file)

#: About hopwatch's line on /hello/ and /products/ in the example site (SITES_LIMIT 8).
access_log.PAD_TO = 1800

MIDDLEWARE = ["bench.access_log.AccessLogMiddleware", *MIDDLEWARE]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"bare": {"format": "%(message)s"}},
    "handlers": {
        "access": {
            "class": "logging.FileHandler",
            "filename": os.environ.get("HOPWATCH_LOG", str(VAR_DIR / "access.log")),
            "formatter": "bare",
            "delay": True,
        },
    },
    "loggers": {
        access_log.LOGGER_NAME: {"handlers": ["access"], "level": "INFO", "propagate": False},
        "django.request": {"level": "CRITICAL"},
    },
}
