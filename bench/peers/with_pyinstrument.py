"""pyinstrument's Django middleware profiling every request.

``pyinstrument.middleware.ProfilerMiddleware`` profiles a request when
``PYINSTRUMENT_PROFILE_DIR`` is set (or the URL has ``?profile``), and with the
directory set it renders each profile (HTML, its default renderer) and writes
it there. The file name here has no timestamp, so each route's profile is
overwritten instead of filling the disk: the render and the write still happen
on every request. Placed first in the chain, as pyinstrument's docs suggest.
"""

import os

from bench.peers.baseline import *  # noqa: F403
from bench.peers.baseline import MIDDLEWARE, VAR_DIR

MIDDLEWARE = ["pyinstrument.middleware.ProfilerMiddleware", *MIDDLEWARE]
PYINSTRUMENT_PROFILE_DIR = os.environ.get("BENCH_PROFILE_DIR", str(VAR_DIR / "pyinstrument"))
PYINSTRUMENT_FILENAME = "{path}.{ext}"


def evidence() -> dict[str, object]:
    try:
        files = len(os.listdir(PYINSTRUMENT_PROFILE_DIR))
    except OSError:
        files = 0
    return {"profile files (one per route, overwritten)": files}
