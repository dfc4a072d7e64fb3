"""Diagnostic, not a peer and not hopwatch: the example site without hopwatch, with
a hand-written access log first in ``MIDDLEWARE`` (``bench.access_log``: one JSON
line per request, padded to about the length of hopwatch's line on these
endpoints). The floor under hopwatch's per-request line: what any line per
request costs."""

from bench import access_log
from bench.peers.baseline import *  # noqa: F403
from bench.peers.baseline import LOGGING, MIDDLEWARE
from bench.peers.with_hopwatch import evidence  # noqa: F401  (lines in the log file)

#: About hopwatch's line on /hello/ and /products/ in the example site (SITES_LIMIT 8).
access_log.PAD_TO = 1800

MIDDLEWARE = ["bench.access_log.AccessLogMiddleware", *MIDDLEWARE]
# The example site's handler for hopwatch's lines (a FileHandler, one line each, to
# the file named by HOPWATCH_LOG) takes the access log's lines instead.
LOGGING = {
    **LOGGING,
    "loggers": {
        **{name: config for name, config in LOGGING["loggers"].items() if name != "hopwatch"},
        access_log.LOGGER_NAME: {"handlers": ["hopwatch"], "level": "INFO", "propagate": False},
    },
}
